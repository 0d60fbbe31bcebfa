//! The routing scenario (issue 9): pod to pod across two nodes, by the
//! pods' own addresses.
//!
//! ```text
//! pod 10.244.1.2 ─veth─ node 1 [datapath] under0 192.168.77.1 ═veth═ 192.168.77.2 under0 [datapath] node 2 ─veth─ pod 10.244.2.2
//! ```
//!
//! Every node setup is that picture (underlay.rs), each node routing the
//! other's pod /24 via the other's underlay address with a static route
//! (what a host-gw node, or BIRD on ebridge's nodes, puts in the main
//! table); only the datapath differs:
//! - host-gw: a host-gw / kube-router node's Linux routing — the pod on a
//!   bridge with br_netfilter, FORWARD rules with conntrack, ip_forward
//!   (kernel.rs);
//! - plain-routing: the kernel's IP forwarding alone, the pod's veth
//!   routed directly, no netfilter (kernel.rs);
//! - ebridge: `ebridge up --native-routing-cidr` on both nodes, the pods
//!   made by `ebridge endpoint add`, an agent on each node (ebridge.rs);
//! - bare-veth: the two pods on one veth pair, no node (the limit).
//!
//! The client runs in node 1's pod, the server in node 2's. Names: node N
//! of a setup is `<run id><code N>-node`, its pod `<run id><code N>-pod`,
//! its ebridge bridge `<run id><code N>` (code 1 is the setup's own,
//! code 2 `Scenario::second_code`), so the guards and the next run's
//! reaper (reap.rs, `<bridge>-node`) find them all.
pub mod evidence;
mod kernel;
pub mod observe;
mod underlay;

mod ebridge;

use std::net::Ipv4Addr;

use anyhow::Result;
use serde_json::{json, Value};

use super::{
    bare,
    scenario::{Scenario, Setup},
    topology::{PeerNode, Topology},
};
use crate::util::sh;

/// The cluster's pod network: every node's pod subnet is a /24 in it
/// (ebridge's native-routing CIDR).
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";
pub const POD_PREFIX_LEN: u8 = 24;
/// Node 1 holds the client's pod, node 2 the server's.
pub const CLIENT_NODE: u8 = 1;
pub const SERVER_NODE: u8 = 2;
/// The underlay device of every node.
pub const UNDERLAY: &str = "under0";

pub fn pod_subnet(n: u8) -> String {
    format!("10.244.{n}.0/{POD_PREFIX_LEN}")
}

pub fn gateway(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, n, 1)
}

pub fn pod_ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, n, 2)
}

pub fn underlay_ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 77, n)
}

/// The pod namespace of the node whose names start with `base`.
pub fn pod_ns(base: &str) -> String {
    format!("{base}-pod")
}

pub fn node_ns(base: &str) -> String {
    format!("{base}-node")
}

/// One node of a built setup, as the evidence and the report see it.
pub struct NodeView<'a> {
    /// "client-node" / "server-node": prefixes its counters' names.
    pub role: &'static str,
    pub ns: &'a str,
    pub ebridge_bridge: Option<&'a str>,
}

/// The setup's nodes, the client's first (none for the bare veth).
pub fn nodes(t: &Topology) -> Vec<NodeView<'_>> {
    let mut out = Vec::new();
    if let Some(ns) = t.node_ns.as_deref() {
        out.push(NodeView {
            role: "client-node",
            ns,
            ebridge_bridge: t.ebridge_bridge.as_deref(),
        });
    }
    if let Some(p) = &t.peer {
        out.push(NodeView {
            role: "server-node",
            ns: &p.node_ns,
            ebridge_bridge: p.ebridge_bridge.as_deref(),
        });
    }
    out
}

/// Builds `t`'s setup; every namespace is recorded before it is made.
pub fn build(t: &mut Topology, run_id: &str) -> Result<()> {
    if t.setup == Setup::BareVeth {
        return bare::pair_of(t, pod_ip(CLIENT_NODE), pod_ip(SERVER_NODE));
    }
    let base2 = format!("{run_id}{}", Scenario::Routing.second_code(t.setup));
    t.peer = Some(PeerNode {
        node_ns: node_ns(&base2),
        base: base2,
        ebridge_bridge: None,
    });
    underlay::build(t)?;
    match t.setup {
        Setup::HostGw => kernel::build(t, true)?,
        Setup::PlainRouting => kernel::build(t, false)?,
        Setup::Ebridge => ebridge::build(t)?,
        s => anyhow::bail!("routing has no setup {}", s.key()),
    }
    note_nodes(t);
    Ok(())
}

/// What each node was left with, for the report: its sysctls, routes and
/// iptables rules, and br_netfilter's state (a kernel-wide setting whose
/// switch, bridge-nf-call-iptables, is per namespace).
fn note_nodes(t: &mut Topology) {
    let mut per_node = serde_json::Map::new();
    for n in nodes(t) {
        let net = format!("--net=/run/netns/{}", n.ns);
        let read = |args: &[&str]| {
            let mut full = vec![net.as_str(), "--"];
            full.extend_from_slice(args);
            sh("nsenter", &full).ok().map(|s| s.trim().to_string())
        };
        per_node.insert(
            n.role.into(),
            json!({
                "namespace": n.ns,
                "ip_forward": read(&["sysctl", "-n", "net.ipv4.ip_forward"]),
                "bridge_nf_call_iptables": read(&["sysctl", "-n", "net.bridge.bridge-nf-call-iptables"]),
                "routes": read(&["ip", "route", "show"]),
                "iptables_save": read(&["iptables-save"]),
            }),
        );
    }
    t.notes.insert("nodes".into(), Value::Object(per_node));
    t.notes.insert("br_netfilter".into(), br_netfilter().into());
}

/// Whether the kernel has br_netfilter, and how.
pub fn br_netfilter() -> String {
    let module = std::path::Path::new("/sys/module/br_netfilter").exists();
    let sysctls = std::path::Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists();
    match (module, sysctls) {
        (true, _) => "loaded (/sys/module/br_netfilter)".into(),
        (false, true) => {
            "built into the kernel (no /sys/module/br_netfilter, net.bridge.bridge-nf-call-* present)"
                .into()
        }
        (false, false) => "absent".into(),
    }
}
