//! The ebridge setups: a node namespace with an uplink veth to an outside
//! namespace, `ebridge up`, and the containers made by `ebridge endpoint
//! add` (with `-p` for the publish scenario), then `ebridge agent` for
//! the rest of the scenario. Every setting is ebridge's default except
//! the NAT table of `ebridge-1m-flows`, which is about table size and
//! says so. The bridge is named after the setup (`<run id><code>`), so
//! its pin directory is unique to the run. In the IPv6 scenarios the node
//! is dual stack: the uplink's global IPv6 address is there before `up`
//! (IPv6 masquerade takes it then), `up --subnet-v6`, and every endpoint
//! gets `--ip6` with the IPv6 twin of its IPv4 address (ipv6.rs).
use std::{path::Path, time::Instant};

use anyhow::{Context as _, Result};
use serde_json::Value;

use super::{
    agent::Agent,
    aim::{self, CLIENT_IP, CONTAINER_IP, SERVER_IP, SUBNET},
    ipv6, mapmem, natmap,
    scenario::{Scenario, Setup, BULK_PORTS, FILL_FLOWS},
    topology::Topology,
    uplink::{self, UPLINK},
};
use crate::util::{ebridge_release_bin, sh};

/// ebridge's default NAT table size (`up` without `--nat-entries`); the
/// table `show config` reports is recorded with each setup.
const DEFAULT_NAT_ENTRIES: u32 = 262_144;

/// `--nat-entries` of `ebridge-1m-flows`: the million synthetic flows
/// (two entries each) plus the default table's room for the measured
/// traffic. Every other setup keeps the default.
fn full_table_entries() -> u32 {
    2 * FILL_FLOWS + DEFAULT_NAT_ENTRIES
}

pub fn build(t: &mut Topology) -> Result<()> {
    let bridge = t.base.clone();
    let node = format!("{bridge}-node");
    let outside = t.outside_ns();
    t.add_netns(&node)?;
    t.node_ns = Some(node.clone());
    t.add_netns(&outside)?;
    uplink::build(&node, &outside)?;
    if t.scenario.is_v6() {
        ipv6::uplink(&node, &outside)?;
    }

    // Recorded before `up` so the guard runs `ebridge down` even if `up`
    // fails half-way.
    t.ebridge_bridge = Some(bridge.clone());
    let mut up = vec!["up", "--subnet", SUBNET, "--uplink", UPLINK];
    let entries_arg = full_table_entries().to_string();
    if t.setup == Setup::EbridgeFullNat {
        up.extend(["--nat-entries", &entries_arg]);
    }
    if t.scenario.is_v6() {
        up.extend(["--subnet-v6", ipv6::SUBNET6]);
    }
    t.notes.insert("up".into(), up.join(" ").into());
    ebridge(&node, &bridge, &up)?;

    match t.scenario.base() {
        Scenario::C2c => {
            let (c1, c2) = (t.client_ns.clone(), t.server_ns.clone());
            endpoint(t, &node, &c1, CLIENT_IP, &[])?;
            endpoint(t, &node, &c2, SERVER_IP, &[])?;
        }
        Scenario::Nat => {
            let c1 = t.container_ns.clone();
            endpoint(t, &node, &c1, CONTAINER_IP, &[])?;
        }
        Scenario::Publish => publish_endpoints(t, &node)?,
        Scenario::Cni => anyhow::bail!("podman makes the cni scenario's endpoints"),
        Scenario::Routing => anyhow::bail!("the routing scenario builds its own nodes (routing/)"),
        s => anyhow::bail!("{} is an IPv6 scenario, not a base", s.key()),
    }
    if t.setup == Setup::EbridgeFullNat {
        let filled = natmap::fill(&bridge, FILL_FLOWS)?;
        println!(
            "  filled {}'s nat map with {} flows ({} entries) in {:.2} s",
            t.setup.key(),
            filled.flows,
            filled.entries,
            filled.secs
        );
        t.notes.insert("fill".into(), filled.to_json());
    }
    if let Ok(cfg) = ebridge(&node, &bridge, &["show", "config", "--json"]) {
        if let Ok(cfg) = serde_json::from_str::<Value>(&cfg) {
            t.notes.insert("config".into(), cfg);
        }
    }
    t.notes
        .insert("map_memory".into(), mapmem::of_bridge(&bridge).into());
    t.agent = Some(std::rc::Rc::new(Agent::start(&node, &bridge)?));
    Ok(())
}

/// `ebridge endpoint add NAME --ip IP [--ip6 IP6] [-p SPEC]...`; NAME is
/// also the namespace it creates, recorded first for removal. IPv6
/// scenarios: `--ip6` the IPv6 twin of IP.
fn endpoint(
    t: &mut Topology,
    node: &str,
    name: &str,
    ip: std::net::Ipv4Addr,
    publish: &[String],
) -> Result<()> {
    let bridge = t.base.clone();
    t.adopt_netns(name);
    let ip6 = t.scenario.is_v6().then(|| ipv6::mirror(ip).to_string());
    let ip = ip.to_string();
    let mut args = vec!["endpoint", "add", name, "--ip", &ip];
    if let Some(ip6) = &ip6 {
        args.extend(["--ip6", ip6]);
    }
    for p in publish {
        args.extend(["-p", p]);
    }
    ebridge(node, &bridge, &args)?;
    Ok(())
}

/// The container with the measured ports; for `ebridge`, 10 other
/// endpoints with 10 ports each (docker-dnat's busy node); for
/// `ebridge-1k-ports`, 1,000 more on one endpoint, timed.
fn publish_endpoints(t: &mut Topology, node: &str) -> Result<()> {
    let specs: Vec<String> = aim::measured_publishes(t.setup)
        .iter()
        .map(|(host, ctr, proto)| format!("{host}:{ctr}/{proto}"))
        .collect();
    let c1 = t.container_ns.clone();
    endpoint(t, node, &c1, CONTAINER_IP, &specs)?;
    match t.setup {
        Setup::Ebridge => {
            for i in 0..aim::OTHER_ENDPOINTS {
                let h0 = aim::OTHER_HOST_PORT_BASE + u16::from(i) * aim::OTHER_PORTS_EACH;
                let c0 = aim::OTHER_CTR_PORT_BASE;
                let n = aim::OTHER_PORTS_EACH - 1;
                let spec = format!("{h0}-{}:{c0}-{}/tcp", h0 + n, c0 + n);
                let name = format!("{}-o{i}", t.base);
                endpoint(t, node, &name, aim::other_endpoint_ip(i), &[spec])?;
            }
            let total = specs.len()
                + usize::from(aim::OTHER_ENDPOINTS) * usize::from(aim::OTHER_PORTS_EACH);
            t.notes.insert("published_ports".into(), total.into());
        }
        Setup::EbridgeThousandPorts => {
            let p0 = aim::BULK_FIRST_PORT;
            let p1 = p0 + BULK_PORTS - 1;
            let spec = format!("{p0}-{p1}:{p0}-{p1}/udp");
            let name = format!("{}-bulk", t.base);
            let started = Instant::now();
            endpoint(t, node, &name, aim::BULK_ENDPOINT_IP, &[spec])?;
            t.notes.insert(
                "bulk_endpoint_add_secs".into(),
                started.elapsed().as_secs_f64().into(),
            );
            t.notes.insert(
                "published_ports".into(),
                (specs.len() + usize::from(BULK_PORTS)).into(),
            );
        }
        _ => {
            t.notes.insert("published_ports".into(), specs.len().into());
        }
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
    stats_of(t.node_ns.as_deref()?, t.ebridge_bridge.as_deref()?).ok()
}

/// The same for any node's bridge.
pub fn stats_of(node: &str, bridge: &str) -> Result<Value> {
    let out = ebridge(node, bridge, &["show", "stats", "--json"])?;
    serde_json::from_str(&out).context("ebridge show stats --json: not JSON")
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
