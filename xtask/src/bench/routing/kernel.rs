//! The kernel's two ways of routing pods across nodes, built on the
//! underlay of underlay.rs:
//!
//! - host-gw: a host-gw / kube-router node. The pod's veth on a Linux
//!   bridge `cni0` holding the gateway 10.244.N.1/24, br_netfilter on for
//!   it (`bridge-nf-call-iptables=1`), `ip_forward=1` in the node, and the
//!   rules such a node has in iptables: filter FORWARD policy DROP (as
//!   dockerd sets it), Docker-style `-o cni0 ctstate RELATED,ESTABLISHED
//!   ACCEPT` and `-i cni0 ACCEPT`, the pod network accepted inbound (what
//!   flannel's FLANNEL-FWD and kube-router's forward chain add, without
//!   which the other node's new flows would meet the DROP policy), and in
//!   nat POSTROUTING the pod network exempt from the masquerade of pods'
//!   traffic elsewhere. The conntrack match keeps conntrack active.
//! - plain-routing: the kernel's IP forwarding and nothing else. The pod's
//!   veth is routed directly (no bridge: its node side holds the gateway
//!   10.244.N.1/24), `ip_forward=1`, `bridge-nf-call-iptables=0`, and no
//!   iptables rule or table, so no netfilter hook is registered in the
//!   node and nothing is tracked.
//!
//! Sysctls and rules are written inside the node namespaces only.
use anyhow::{bail, Result};

use super::{gateway, node_ns, pod_ip, pod_ns, CLIENT_NODE, POD_PREFIX_LEN, SERVER_NODE};
use crate::{
    bench::{
        iptables, linux_bridge,
        topology::{configure_pod, Topology},
    },
    util::sh,
};

/// The host-gw node's bridge, and the node side of every pod's veth.
pub const BRIDGE: &str = "cni0";
pub const HOST_VETH: &str = "veth0";

/// host-gw's rules as `iptables-save` prints them (the evidence reads
/// their counters by these names): (table, rule).
pub const REPLIES_TO_PODS: (&str, &str) = (
    "filter",
    "-A FORWARD -o cni0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
);
pub const FROM_PODS: (&str, &str) = ("filter", "-A FORWARD -i cni0 -j ACCEPT");
pub const TO_POD_NETWORK: (&str, &str) = ("filter", "-A FORWARD -d 10.244.0.0/16 -j ACCEPT");
pub const POD_NETWORK_UNMASQUERADED: (&str, &str) = (
    "nat",
    "-A POSTROUTING -s 10.244.0.0/16 -d 10.244.0.0/16 -j RETURN",
);
const MASQUERADE_ELSEWHERE: (&str, &str) = (
    "nat",
    "-A POSTROUTING -s 10.244.0.0/16 ! -d 224.0.0.0/4 -j MASQUERADE",
);

/// The rules in their order.
fn host_gw_rules() -> Vec<String> {
    let mut out = vec!["-t filter -P FORWARD DROP".to_string()];
    for (table, rule) in [
        REPLIES_TO_PODS,
        FROM_PODS,
        TO_POD_NETWORK,
        POD_NETWORK_UNMASQUERADED,
        MASQUERADE_ELSEWHERE,
    ] {
        out.push(format!("-t {table} {rule}"));
    }
    out
}

/// Both nodes of host-gw (`netfilter`) or plain-routing, each with its pod.
pub fn build(t: &mut Topology, netfilter: bool) -> Result<()> {
    let base2 = match &t.peer {
        Some(p) => p.base.clone(),
        None => bail!("a routing setup without its second node"),
    };
    for (base, n) in [(t.base.clone(), CLIENT_NODE), (base2, SERVER_NODE)] {
        let (node, pod) = (node_ns(&base), pod_ns(&base));
        t.add_netns(&pod)?;
        linux_bridge::host_veth_pair(&node, &pod, HOST_VETH)?;
        let gw = gateway(n);
        if netfilter {
            linux_bridge::bridge_named(&node, BRIDGE, gw, POD_PREFIX_LEN)?;
            linux_bridge::enslave(&node, HOST_VETH, BRIDGE)?;
        } else {
            let cidr = format!("{gw}/{POD_PREFIX_LEN}");
            sh("ip", &["-n", &node, "addr", "add", &cidr, "dev", HOST_VETH])?;
        }
        linux_bridge::link_up(&node, HOST_VETH)?;
        configure_pod(&pod, pod_ip(n), POD_PREFIX_LEN, Some(gw))?;
        linux_bridge::sysctls(t, &node, netfilter)?;
        if netfilter {
            let rules = host_gw_rules();
            let rules: Vec<&str> = rules.iter().map(String::as_str).collect();
            iptables::apply_each(&node, &rules)?;
        }
    }
    if netfilter {
        linux_bridge::note_conntrack_size(t);
    }
    Ok(())
}
