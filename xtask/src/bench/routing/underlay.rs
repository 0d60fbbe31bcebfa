//! The two nodes and their underlay: one veth between the node
//! namespaces (`under0` on both sides, 192.168.77.N/24), and in each node
//! a static route to the other node's pod /24 via the other's underlay
//! address — the route a host-gw node installs, and the one BIRD installs
//! on ebridge's nodes in the cluster tests. No default route: nothing
//! here leaves the two nodes.
use anyhow::Result;

use super::{node_ns, pod_subnet, underlay_ip, CLIENT_NODE, SERVER_NODE, UNDERLAY};
use crate::{bench::topology::Topology, util::sh};

pub fn build(t: &mut Topology) -> Result<()> {
    let node1 = node_ns(&t.base);
    let node2 = t
        .peer
        .as_ref()
        .map(|p| p.node_ns.clone())
        .ok_or_else(|| anyhow::anyhow!("a routing setup without its second node"))?;
    t.add_netns(&node1)?;
    t.node_ns = Some(node1.clone());
    t.add_netns(&node2)?;
    sh(
        "ip",
        &[
            "-n", &node1, "link", "add", UNDERLAY, "type", "veth", "peer", "name", UNDERLAY,
            "netns", &node2,
        ],
    )?;
    for (node, n, other) in [
        (&node1, CLIENT_NODE, SERVER_NODE),
        (&node2, SERVER_NODE, CLIENT_NODE),
    ] {
        let cidr = format!("{}/24", underlay_ip(n));
        sh("ip", &["-n", node, "addr", "add", &cidr, "dev", UNDERLAY])?;
        sh("ip", &["-n", node, "link", "set", UNDERLAY, "up"])?;
        let via = underlay_ip(other).to_string();
        sh(
            "ip",
            &["-n", node, "route", "add", &pod_subnet(other), "via", &via],
        )?;
    }
    Ok(())
}
