//! Proof, on every sample, that the packets crossed both nodes the way
//! the setup says. Counters are read on both nodes and named
//! `<client-node|server-node> <counter>`; what the tools carried from
//! client to server must show on each node:
//!
//! - ebridge: the client node's `routed-out` (its endpoint program routed
//!   the pod's packets out of the underlay) and the server node's
//!   `routed-in` (its uplink program delivered them into the pod), from
//!   `ebridge show stats --json`, packets and bytes;
//! - host-gw: the client node's `-A FORWARD -i cni0 -j ACCEPT`, and the
//!   server node's `-o cni0 ... RELATED,ESTABLISHED` + `-d 10.244.0.0/16`
//!   ACCEPT rules (iptables-save -c), packets and bytes; for the
//!   connection test also, per connection, the server node's
//!   `-d 10.244.0.0/16` rule (the SYN, conntrack state NEW) and the client
//!   node's nat `-s 10.244.0.0/16 -d 10.244.0.0/16 -j RETURN` (nat sees the
//!   first packet of each new conntrack entry only): conntrack tracked
//!   every connection;
//! - plain-routing: `ForwDatagrams` of both nodes (/proc/net/snmp): the
//!   kernel forwarded them; it has no netfilter counter (none is
//!   registered), and observe.rs checks that nothing was tracked.
//!
//! Every node setup's `ForwDatagrams` is read too, so the report shows
//! ebridge's nodes forwarding nothing themselves.
use std::collections::BTreeMap;

use anyhow::{Context as _, Result};

use super::{kernel, nodes};
use crate::{
    bench::{
        ebridge_node, evidence::parse_save, evidence::Need, scenario::Setup, topology::Topology,
    },
    util::sh,
};

pub const FORWARDED: &str = "ip ForwDatagrams";

pub fn snapshot(t: &Topology) -> Result<BTreeMap<String, (u64, u64)>> {
    let mut out = BTreeMap::new();
    for n in nodes(t) {
        let mut add = |name: String, v: (u64, u64)| {
            out.insert(format!("{} {name}", n.role), v);
        };
        add(FORWARDED.into(), (forwarded(n.ns)?, 0));
        if let Some(bridge) = n.ebridge_bridge {
            let stats = ebridge_node::stats_of(n.ns, bridge)?;
            for row in stats.as_array().into_iter().flatten() {
                let reason = row["reason"].as_str().unwrap_or("?").to_string();
                let packets = row["packets"].as_u64().unwrap_or(0);
                let bytes = row["bytes"].as_u64().unwrap_or(0);
                add(reason, (packets, bytes));
            }
        }
        if t.setup == Setup::HostGw {
            let net = format!("--net=/run/netns/{}", n.ns);
            let text = sh("nsenter", &[&net, "--", "iptables-save", "-c"])?;
            for (rule, v) in parse_save(&text) {
                add(rule, v);
            }
        }
    }
    Ok(out)
}

/// `ForwDatagrams` of a namespace's IP stack.
pub fn forwarded(ns: &str) -> Result<u64> {
    let net = format!("--net=/run/netns/{ns}");
    let snmp = sh("nsenter", &[&net, "--", "cat", "/proc/net/snmp"])?;
    let mut lines = snmp.lines().filter(|l| l.starts_with("Ip:"));
    let (names, values) = (
        lines.next().context("no Ip: line in /proc/net/snmp")?,
        lines.next().context("no Ip: values in /proc/net/snmp")?,
    );
    let i = names
        .split_whitespace()
        .position(|n| n == "ForwDatagrams")
        .context("no ForwDatagrams in /proc/net/snmp")?;
    values
        .split_whitespace()
        .nth(i)
        .and_then(|v| v.parse().ok())
        .context("ForwDatagrams is not a number")
}

fn rule((table, rule): (&str, &str)) -> String {
    format!("{table} {rule}")
}

pub fn needs(t: &Topology, new_flows: bool, packets: u64, bytes: Option<u64>) -> Vec<Need> {
    let on = |role: &str, names: &[String], bytes: Option<u64>| Need {
        counters: names.iter().map(|c| format!("{role} {c}")).collect(),
        packets,
        bytes,
    };
    match t.setup {
        Setup::Ebridge => vec![
            on("client-node", &["routed-out".into()], bytes),
            on("server-node", &["routed-in".into()], bytes),
        ],
        Setup::HostGw => {
            let mut out = vec![
                on("client-node", &[rule(kernel::FROM_PODS)], bytes),
                on(
                    "server-node",
                    &[rule(kernel::REPLIES_TO_PODS), rule(kernel::TO_POD_NETWORK)],
                    bytes,
                ),
            ];
            if new_flows {
                out.push(on("server-node", &[rule(kernel::TO_POD_NETWORK)], None));
                out.push(on(
                    "client-node",
                    &[rule(kernel::POD_NETWORK_UNMASQUERADED)],
                    None,
                ));
            }
            out
        }
        // ForwDatagrams counts packets only.
        Setup::PlainRouting => vec![
            on("client-node", &[FORWARDED.into()], None),
            on("server-node", &[FORWARDED.into()], None),
        ],
        _ => Vec::new(),
    }
}
