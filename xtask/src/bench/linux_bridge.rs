//! Docker's default bridge network rebuilt by hand inside a node
//! namespace: docker0 with the gateway address, one veth per container,
//! br_netfilter on and the rules dockerd writes. Everything here runs with
//! `-n NODE` / `nsenter --net=NODE`, so no rule or sysctl reaches the root
//! namespace.
use std::net::Ipv4Addr;

use anyhow::{Context as _, Result};

use super::{
    aim::{self, CLIENT_IP, CONTAINER_IP, GATEWAY, PREFIX_LEN, SERVER_IP},
    iptables::{self, Family, Published, BASE_RULES},
    scenario::Setup,
    topology::{configure_container, Topology},
    uplink,
};
use crate::util::sh;

/// c2c: two containers on docker0; `netfilter` = the docker-bridge setup
/// (br_netfilter on, dockerd's rules), otherwise bridge-nf-off.
pub fn build_c2c(t: &mut Topology, netfilter: bool) -> Result<()> {
    let node = format!("{}-node", t.base);
    t.add_netns(&node)?;
    t.node_ns = Some(node.clone());
    bridge(&node)?;
    let containers = [
        (t.client_ns.clone(), CLIENT_IP, "vethc1"),
        (t.server_ns.clone(), SERVER_IP, "vethc2"),
    ];
    for (ns, ip, host_veth) in containers {
        t.add_netns(&ns)?;
        attach(&node, &ns, ip, host_veth)?;
    }
    sysctls(t, &node, netfilter)?;
    if netfilter {
        iptables::apply_each(&node, BASE_RULES)?;
        note_conntrack_size(t);
    }
    Ok(())
}

/// nat and publish: one container on docker0 and an uplink to the outside
/// namespace; br_netfilter on, ip_forward=1 (node namespace only) and
/// dockerd's rules, plus the published ports' rules for docker-dnat.
pub fn build_uplinked(t: &mut Topology) -> Result<()> {
    let node = format!("{}-node", t.base);
    let outside = t.outside_ns();
    let container = t.container_ns.clone();
    t.add_netns(&node)?;
    t.node_ns = Some(node.clone());
    t.add_netns(&outside)?;
    uplink::build(&node, &outside)?;
    bridge(&node)?;
    t.add_netns(&container)?;
    attach(&node, &container, CONTAINER_IP, "vethc1")?;
    sysctls(t, &node, true)?;
    iptables::apply_each(&node, BASE_RULES)?;
    let measured_after = match t.setup {
        Setup::DockerDnat => Some(aim::OTHER_ENDPOINTS / 2),
        Setup::DockerDnatFirst => Some(0),
        _ => None,
    };
    if let Some(after) = measured_after {
        let ports = published_ports(after);
        let rules: Vec<(&str, String)> = ports.iter().flat_map(|p| p.rules()).collect();
        iptables::restore(&node, &iptables::restore_input(&rules), true)?;
        t.notes.insert("published_ports".into(), ports.len().into());
        t.notes
            .insert("measured_rules_after_containers".into(), after.into());
    }
    note_conntrack_size(t);
    Ok(())
}

/// The busy node's published ports in the order dockerd would have added
/// them: 10 other containers' 10 ports each, with the measured
/// container's ports after `after` of them (docker-dnat: in the middle;
/// docker-dnat-first: first). The position matters: an unreplied UDP
/// stream stays ctstate NEW, so every one of its packets walks the filter
/// DOCKER chain down to its ACCEPT.
pub fn published_ports(after: u8) -> Vec<Published> {
    let mut out = Vec::new();
    for i in 0..aim::OTHER_ENDPOINTS {
        if i == after {
            for (host_port, ctr_port, proto) in aim::measured_publishes(Setup::DockerDnat) {
                out.push(Published {
                    host_port,
                    ip: CONTAINER_IP.into(),
                    ctr_port,
                    proto,
                });
            }
        }
        for k in 0..aim::OTHER_PORTS_EACH {
            out.push(Published {
                host_port: aim::OTHER_HOST_PORT_BASE + u16::from(i) * aim::OTHER_PORTS_EACH + k,
                ip: aim::other_endpoint_ip(i).into(),
                ctr_port: aim::OTHER_CTR_PORT_BASE + k,
                proto: "tcp",
            });
        }
    }
    out
}

fn bridge(node: &str) -> Result<()> {
    bridge_named(node, "docker0", GATEWAY, PREFIX_LEN)
}

/// A Linux bridge `name` in `node` holding the gateway address.
pub fn bridge_named(node: &str, name: &str, gateway: Ipv4Addr, prefix_len: u8) -> Result<()> {
    let gw = format!("{gateway}/{prefix_len}");
    sh("ip", &["-n", node, "link", "add", name, "type", "bridge"])?;
    sh("ip", &["-n", node, "addr", "add", &gw, "dev", name])?;
    sh("ip", &["-n", node, "link", "set", name, "up"])?;
    Ok(())
}

fn attach(node: &str, ns: &str, ip: Ipv4Addr, host_veth: &str) -> Result<()> {
    host_veth_pair(node, ns, host_veth)?;
    enslave(node, host_veth, "docker0")?;
    link_up(node, host_veth)?;
    configure_container(ns, ip, Some(GATEWAY))
}

/// A veth from `node` (`host_veth`, still down) to `ns` (`eth0`,
/// unconfigured).
pub fn host_veth_pair(node: &str, ns: &str, host_veth: &str) -> Result<()> {
    sh(
        "ip",
        &[
            "-n", node, "link", "add", host_veth, "type", "veth", "peer", "name", "eth0", "netns",
            ns,
        ],
    )?;
    Ok(())
}

pub fn link_up(node: &str, dev: &str) -> Result<()> {
    sh("ip", &["-n", node, "link", "set", dev, "up"])?;
    Ok(())
}

/// Puts a port on a bridge of `node`.
pub fn enslave(node: &str, port: &str, bridge: &str) -> Result<()> {
    sh("ip", &["-n", node, "link", "set", port, "master", bridge])?;
    Ok(())
}

/// Per-namespace sysctls (br_netfilter is built in, so every netns has
/// them). Setting them fails loudly if br_netfilter is missing, which
/// would make the Docker numbers a lie.
pub fn sysctls(t: &Topology, node: &str, netfilter: bool) -> Result<()> {
    let nf = if netfilter { "1" } else { "0" };
    t.exec(
        node,
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
    Ok(())
}

/// The conntrack table Docker's side gets: the kernel's defaults, never
/// resized here (nf_conntrack_max is the flows it holds; ebridge's
/// --nat-entries counts two entries per flow), recorded for the report.
pub fn note_conntrack_size(t: &mut Topology) {
    let Some(node) = t.node_ns.clone() else {
        return;
    };
    for name in ["nf_conntrack_max", "nf_conntrack_buckets"] {
        let path = format!("/proc/sys/net/netfilter/{name}");
        if let Ok(v) = t.exec(&node, &["cat", &path]) {
            if let Ok(n) = v.trim().parse::<u64>() {
                t.notes.insert(name.into(), n.into());
            }
        }
    }
}

/// Conntrack entries in the node namespace: proof that the traffic really
/// went through conntrack.
pub fn conntrack_count(t: &Topology) -> Option<u64> {
    conntrack_count_in(t.node_ns.as_deref()?)
}

/// The same for any namespace.
pub fn conntrack_count_in(ns: &str) -> Option<u64> {
    let net = format!("--net=/run/netns/{ns}");
    sh(
        "nsenter",
        &[&net, "cat", "/proc/sys/net/netfilter/nf_conntrack_count"],
    )
    .ok()?
    .trim()
    .parse()
    .ok()
}

/// `conntrack -S` of the node summed over CPUs (insert, insert_failed,
/// drop, early_drop...): Docker's side of the NAT table's drop counters.
pub fn conntrack_stats(t: &Topology) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    let Some(node) = t.node_ns.as_deref() else {
        return out;
    };
    let Ok(text) = t.exec(node, &["conntrack", "-S"]) else {
        return out;
    };
    for field in text.split_whitespace() {
        if let Some((k, v)) = field.split_once('=') {
            if let Ok(n) = v.parse::<u64>() {
                if k != "cpu" {
                    *out.entry(k.to_string()).or_insert(0) += n;
                }
            }
        }
    }
    out
}

/// Rule listings with packet counters, for the JSON report (ip6tables'
/// in the IPv6 scenarios).
pub fn counters(t: &Topology, table: &str, chain: &str) -> Option<String> {
    let family = if t.scenario.is_v6() {
        Family::V6
    } else {
        Family::V4
    };
    counters_in_of(family, t.node_ns.as_deref()?, table, chain)
}

/// The same for any namespace.
pub fn counters_in(ns: &str, table: &str, chain: &str) -> Option<String> {
    counters_in_of(Family::V4, ns, table, chain)
}

/// The same with iptables or ip6tables.
pub fn counters_in_of(family: Family, ns: &str, table: &str, chain: &str) -> Option<String> {
    let net = format!("--net=/run/netns/{ns}");
    sh(
        "nsenter",
        &[&net, family.tool(), "-w", "5", "-t", table, "-nvxL", chain],
    )
    .ok()
}
