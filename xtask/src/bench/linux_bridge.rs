//! Docker's default bridge network rebuilt by hand inside a node
//! namespace: docker0 with the gateway address, one veth per container,
//! and — for the "docker-bridge" setup — br_netfilter on plus the rules
//! dockerd writes. Everything here runs with `-n NODE` / `ip netns exec
//! NODE`, so no rule or sysctl reaches the root namespace.
use anyhow::{Context as _, Result};

use super::topology::{configure_container, Topology, CLIENT_IP, GATEWAY, PREFIX_LEN, SERVER_IP};
use crate::util::sh;

/// What dockerd (iptables backend, default bridge, no published ports)
/// writes, in its order. FORWARD policy DROP is set because dockerd does
/// when it turns on ip_forward. The nat rules matter too: with
/// br_netfilter the first packet of every bridged flow walks nat
/// PREROUTING and POSTROUTING.
const DOCKER_RULES: &[&str] = &[
    "-t filter -P FORWARD DROP",
    "-t filter -N DOCKER",
    "-t filter -N DOCKER-ISOLATION-STAGE-1",
    "-t filter -N DOCKER-ISOLATION-STAGE-2",
    "-t filter -N DOCKER-USER",
    "-t filter -A FORWARD -j DOCKER-USER",
    "-t filter -A FORWARD -j DOCKER-ISOLATION-STAGE-1",
    "-t filter -A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    "-t filter -A FORWARD -o docker0 -j DOCKER",
    "-t filter -A FORWARD -i docker0 ! -o docker0 -j ACCEPT",
    "-t filter -A FORWARD -i docker0 -o docker0 -j ACCEPT",
    "-t filter -A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2",
    "-t filter -A DOCKER-ISOLATION-STAGE-1 -j RETURN",
    "-t filter -A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP",
    "-t filter -A DOCKER-ISOLATION-STAGE-2 -j RETURN",
    "-t filter -A DOCKER-USER -j RETURN",
    "-t nat -N DOCKER",
    "-t nat -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
    "-t nat -A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER",
    "-t nat -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
    "-t nat -A DOCKER -i docker0 -j RETURN",
];

pub fn build(t: &mut Topology, base: &str, netfilter: bool) -> Result<()> {
    let node = format!("{base}-node");
    t.add_netns(&node)?;
    t.node_ns = Some(node.clone());

    let gw = format!("{GATEWAY}/{PREFIX_LEN}");
    sh(
        "ip",
        &["-n", &node, "link", "add", "docker0", "type", "bridge"],
    )?;
    sh("ip", &["-n", &node, "addr", "add", &gw, "dev", "docker0"])?;
    sh("ip", &["-n", &node, "link", "set", "docker0", "up"])?;

    let containers = [
        (t.client_ns.clone(), CLIENT_IP, "vethc1"),
        (t.server_ns.clone(), SERVER_IP, "vethc2"),
    ];
    for (ns, ip, host_veth) in containers {
        t.add_netns(&ns)?;
        sh(
            "ip",
            &[
                "-n", &node, "link", "add", host_veth, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ],
        )?;
        sh(
            "ip",
            &["-n", &node, "link", "set", host_veth, "master", "docker0"],
        )?;
        sh("ip", &["-n", &node, "link", "set", host_veth, "up"])?;
        configure_container(&ns, ip, Some(GATEWAY))?;
    }

    // Per-namespace sysctls (br_netfilter is built in, so every netns has
    // them). Setting them fails loudly if br_netfilter is missing, which
    // would make the docker-bridge numbers a lie.
    let nf = if netfilter { "1" } else { "0" };
    t.exec(
        &node,
        &[
            "sysctl",
            "-q",
            "-w",
            &format!("net.bridge.bridge-nf-call-iptables={nf}"),
            &format!("net.bridge.bridge-nf-call-ip6tables={nf}"),
            "net.ipv4.ip_forward=1",
        ],
    )
    .context("cannot set the br_netfilter sysctls in the node namespace")?;

    if netfilter {
        for rule in DOCKER_RULES {
            let mut args = vec!["iptables", "-w", "5"];
            args.extend(rule.split_whitespace());
            t.exec(&node, &args)
                .with_context(|| format!("iptables {rule} in {node}"))?;
        }
    }
    Ok(())
}

/// Conntrack entries in the node namespace: proof that the docker-bridge
/// traffic really went through br_netfilter and conntrack.
pub fn conntrack_count(t: &Topology) -> Option<u64> {
    let node = t.node_ns.as_deref()?;
    t.exec(node, &["cat", "/proc/sys/net/netfilter/nf_conntrack_count"])
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `iptables -S`-style listing with packet counters, for the JSON report.
pub fn forward_counters(t: &Topology) -> Option<String> {
    let node = t.node_ns.as_deref()?;
    t.exec(node, &["iptables", "-w", "5", "-nvxL", "FORWARD"])
        .ok()
}
