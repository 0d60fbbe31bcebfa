//! The ebridge setup: a node namespace with an uplink veth to an outside
//! namespace (ebridge up needs an uplink), `ebridge up`, and the two
//! containers made by `ebridge endpoint add`.
use std::path::Path;

use anyhow::{Context as _, Result};
use serde_json::Value;

use super::topology::{Topology, CLIENT_IP, SERVER_IP, SUBNET};
use crate::util::{ebridge_release_bin, sh};

const UPLINK: &str = "uplink0";

pub fn build(t: &mut Topology, base: &str, bridge: &str) -> Result<()> {
    let node = format!("{base}-node");
    let outside = format!("{base}-out");
    t.add_netns(&node)?;
    t.node_ns = Some(node.clone());
    t.add_netns(&outside)?;
    sh(
        "ip",
        &[
            "-n", &node, "link", "add", UPLINK, "type", "veth", "peer", "name", "eth0", "netns",
            &outside,
        ],
    )?;
    sh(
        "ip",
        &["-n", &node, "addr", "add", "198.51.100.1/24", "dev", UPLINK],
    )?;
    sh("ip", &["-n", &node, "link", "set", UPLINK, "up"])?;
    sh(
        "ip",
        &[
            "-n",
            &outside,
            "addr",
            "add",
            "198.51.100.2/24",
            "dev",
            "eth0",
        ],
    )?;
    sh("ip", &["-n", &outside, "link", "set", "eth0", "up"])?;
    sh(
        "ip",
        &[
            "-n",
            &node,
            "route",
            "add",
            "default",
            "via",
            "198.51.100.2",
        ],
    )?;

    // Recorded before `up` so the guard runs `ebridge down` even if `up`
    // fails half-way.
    t.ebridge_bridge = Some(bridge.to_string());
    ebridge(
        &node,
        bridge,
        &["up", "--subnet", SUBNET, "--uplink", UPLINK],
    )?;
    for (ns, ip) in [
        (t.client_ns.clone(), CLIENT_IP),
        (t.server_ns.clone(), SERVER_IP),
    ] {
        t.adopt_netns(&ns);
        ebridge(
            &node,
            bridge,
            &["endpoint", "add", &ns, "--ip", &ip.to_string()],
        )?;
    }
    Ok(())
}

/// `nsenter --net=/run/netns/NODE ebridge ARGS --bridge BRIDGE`
pub fn ebridge(node: &str, bridge: &str, args: &[&str]) -> Result<String> {
    let bin = ebridge_release_bin();
    let bin = bin.display().to_string();
    let net = format!("--net=/run/netns/{node}");
    let mut full = vec![net.as_str(), bin.as_str()];
    full.extend_from_slice(args);
    full.extend(["--bridge", bridge]);
    sh("nsenter", &full).with_context(|| format!("ebridge {}", args.join(" ")))
}

/// `ebridge down`, then removes what a failed `down` could leave: the pin
/// and state directories of this run's bridge (its name is unique to the
/// run, so nothing else is touched).
pub fn teardown(node: &str, bridge: &str) {
    if Path::new("/run/netns").join(node).exists() {
        let _ = ebridge(node, bridge, &["down"]);
    }
    for dir in [
        Path::new("/sys/fs/bpf/ebridge").join(bridge),
        Path::new("/run/ebridge").join(bridge),
    ] {
        if dir.exists() {
            eprintln!("bench: removing leftover {}", dir.display());
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// The datapath's counters (`ebridge show stats --json`), to show which
/// path the packets took.
pub fn stats(t: &Topology) -> Option<Value> {
    let node = t.node_ns.as_deref()?;
    let bridge = t.ebridge_bridge.as_deref()?;
    let out = ebridge(node, bridge, &["show", "stats", "--json"]).ok()?;
    serde_json::from_str(&out).ok()
}

/// Packets per verdict ("redirect", "pass", "drop") from `stats`.
pub fn verdict_totals(stats: &Value) -> Vec<(String, u64)> {
    let mut totals: Vec<(String, u64)> = Vec::new();
    for row in stats.as_array().into_iter().flatten() {
        let verdict = row["verdict"].as_str().unwrap_or("?").to_string();
        let packets = row["packets"].as_u64().unwrap_or(0);
        match totals.iter_mut().find(|(v, _)| *v == verdict) {
            Some((_, n)) => *n += packets,
            None => totals.push((verdict, packets)),
        }
    }
    totals
}
