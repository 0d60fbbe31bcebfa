//! The IPv6 scenarios (issue 11): c2c6, nat6 and publish6 are c2c, nat
//! and publish over IPv6. Each setup is first built as its IPv4 twin (the
//! same code, so both families are there as on a dual-stack Docker or
//! ebridge node), then gets IPv6 the way its product sets it up:
//!
//! - bare-veth: the IPv6 addresses on the pair, the other side's subnet
//!   on-link;
//! - Docker (27, `--ipv6 --fixed-cidr-v6 fd00:17::/64`, ip6tables on):
//!   the gateway fd00:17::1/64 on docker0, containers with their address
//!   and default route via it, the uplink's global address and the node's
//!   IPv6 default route, `net.ipv6.conf.all.forwarding=1` in the node
//!   namespace only (br_netfilter's `bridge-nf-call-ip6tables=1` is set
//!   with the IPv4 switch, linux_bridge.rs), and dockerd's rules in
//!   ip6tables: the IPv4 rule set with `::1/128` and the IPv6 subnet in
//!   place of `127.0.0.0/8` and 172.17.0.0/16, and for docker-dnat the
//!   same busy node's published ports;
//! - ebridge (ebridge_node.rs): the uplink's global address before `up`
//!   (masquerade needs it then), `up --subnet-v6`, `endpoint add --ip6`.
//!
//! Every IPv4 address of the twin has an IPv6 mirror (`mirror`):
//! containers 172.17.A.B -> fd00:17::A:B (fd00:17::2, ::3, ::a...), the
//! node's uplink 198.51.100.1 -> 2001:db8:51::1, the outside
//! 198.51.100.2 -> 2001:db8:51::2. The aims, published ports and rules of
//! the IPv4 scenarios carry over through it, so both families measure the
//! same thing. Every address is added without DAD (usable at once).
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use anyhow::{bail, Context as _, Result};
use aya::maps::{HashMap, Map, MapData};
use ebridge_common::{
    maps::MAP_NAT6,
    nat::{Nat6Entry, Nat6Key},
};

use super::{
    aim::{self, CLIENT_IP, CONTAINER_IP, NODE_IP, OUTSIDE_IP, SERVER_IP},
    iptables::{self, Family, BASE_RULES},
    linux_bridge,
    scenario::{Scenario, Setup},
    topology::Topology,
    uplink::UPLINK,
};
use crate::util::sh;

/// Docker's `--fixed-cidr-v6` here, ebridge's `--subnet-v6`.
pub const SUBNET6: &str = "fd00:17::/64";
pub const PREFIX_LEN6: u8 = 64;
pub const GATEWAY6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x17, 0, 0, 0, 0, 0, 1);
/// The uplink's link (documentation prefix).
pub const NODE_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x51, 0, 0, 0, 0, 1);
pub const OUTSIDE_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x51, 0, 0, 0, 0, 2);
pub const OUTSIDE_NET6: &str = "2001:db8:51::/64";

/// The IPv6 twin of an IPv4 address the bench uses.
pub fn mirror(ip: Ipv4Addr) -> Ipv6Addr {
    if ip == NODE_IP {
        return NODE_IP6;
    }
    if ip == OUTSIDE_IP {
        return OUTSIDE_IP6;
    }
    let [a, b, c, d] = ip.octets();
    debug_assert_eq!((a, b), (172, 17), "{ip} is not a container address");
    Ipv6Addr::new(0xfd00, 0x17, 0, 0, 0, 0, c.into(), d.into())
}

/// `mirror` over either family (an IPv6 address stays as it is).
pub fn mirror_addr(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V6(mirror(v4)),
        v6 => v6,
    }
}

/// iptables or ip6tables, by the scenario's family.
pub fn family(scenario: Scenario) -> Family {
    if scenario.is_v6() {
        Family::V6
    } else {
        Family::V4
    }
}

/// `ip -n NS addr add IP/LEN dev DEV nodad`
fn address(ns: &str, dev: &str, ip: Ipv6Addr, prefix_len: u8) -> Result<()> {
    let cidr = format!("{ip}/{prefix_len}");
    sh("ip", &["-n", ns, "addr", "add", &cidr, "dev", dev, "nodad"])?;
    Ok(())
}

/// `ip -n NS -6 route add ARGS...`
fn route(ns: &str, args: &[&str]) -> Result<()> {
    let mut full = vec!["-n", ns, "-6", "route", "add"];
    full.extend_from_slice(args);
    sh("ip", &full)?;
    Ok(())
}

/// A container's `eth0`: its address (the mirror of `ip`) and, behind a
/// node, the default route via the gateway.
fn container(ns: &str, ip: Ipv4Addr, gateway: bool) -> Result<()> {
    address(ns, "eth0", mirror(ip), PREFIX_LEN6)?;
    if gateway {
        route(ns, &["default", "via", &GATEWAY6.to_string()])?;
    }
    Ok(())
}

/// The uplink's link: 2001:db8:51::1/64 on the node's `uplink0`,
/// ::2/64 on the outside's `eth0`, the node's IPv6 default route via the
/// outside. ebridge's IPv6 masquerade needs the global address at `up`.
pub fn uplink(node: &str, outside: &str) -> Result<()> {
    address(node, UPLINK, NODE_IP6, PREFIX_LEN6)?;
    address(outside, "eth0", OUTSIDE_IP6, PREFIX_LEN6)?;
    route(node, &["default", "via", &OUTSIDE_IP6.to_string()])
}

/// IPv6 on a bare-veth or Docker setup its IPv4 builder just made.
pub fn add(t: &mut Topology) -> Result<()> {
    match (t.scenario.base(), t.setup) {
        (Scenario::C2c, Setup::BareVeth) => {
            container(&t.client_ns, CLIENT_IP, false)?;
            container(&t.server_ns, SERVER_IP, false)
        }
        (Scenario::Nat | Scenario::Publish, Setup::BareVeth) => {
            let outside = t.outside_ns();
            container(&t.container_ns, CONTAINER_IP, false)?;
            route(&t.container_ns, &[OUTSIDE_NET6, "dev", "eth0"])?;
            address(&outside, "eth0", OUTSIDE_IP6, PREFIX_LEN6)?;
            route(&outside, &[SUBNET6, "dev", "eth0"])
        }
        (Scenario::C2c, Setup::DockerBridge) => {
            let containers = [
                (t.client_ns.clone(), CLIENT_IP),
                (t.server_ns.clone(), SERVER_IP),
            ];
            docker(t, &containers, false)
        }
        (Scenario::Nat | Scenario::Publish, Setup::DockerNat | Setup::DockerDnat) => {
            let containers = [(t.container_ns.clone(), CONTAINER_IP)];
            docker(t, &containers, true)
        }
        (s, setup) => bail!("{} has no IPv6 setup {}", s.key(), setup.key()),
    }
}

/// What dockerd writes in ip6tables for the default bridge with IPv6:
/// its iptables rules (iptables.rs) with the loopback and the subnet of
/// IPv6.
pub fn base_rules6() -> Vec<String> {
    BASE_RULES
        .iter()
        .map(|r| {
            r.replace("! -d 127.0.0.0/8", "! -d ::1/128")
                .replace(aim::SUBNET, SUBNET6)
        })
        .collect()
}

/// Docker's IPv6 on the node its IPv4 builder made (linux_bridge.rs).
fn docker(t: &mut Topology, containers: &[(String, Ipv4Addr)], uplinked: bool) -> Result<()> {
    let node = t.node_ns.clone().context("Docker setup without a node")?;
    address(&node, "docker0", GATEWAY6, PREFIX_LEN6)?;
    for (ns, ip) in containers {
        container(ns, *ip, true)?;
    }
    if uplinked {
        uplink(&node, &t.outside_ns())?;
    }
    t.exec(
        &node,
        &["sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1"],
    )
    .context("cannot turn on IPv6 forwarding in the node namespace")?;
    iptables::apply_each_of(Family::V6, &node, &base_rules6())?;
    if t.setup == Setup::DockerDnat {
        let ports: Vec<_> = linux_bridge::published_ports(aim::OTHER_ENDPOINTS / 2)
            .into_iter()
            .map(|mut p| {
                p.ip = mirror_addr(p.ip);
                p
            })
            .collect();
        let rules: Vec<(&str, String)> = ports.iter().flat_map(|p| p.rules()).collect();
        iptables::restore_of(Family::V6, &node, &iptables::restore_input(&rules), true)?;
        t.notes
            .insert("published_ports_ip6tables".into(), ports.len().into());
    }
    t.notes.insert(
        "ip6tables_save".into(),
        save(&node).unwrap_or_default().into(),
    );
    Ok(())
}

/// `ip6tables-save` of the node (the rules as built, for the report).
fn save(node: &str) -> Result<String> {
    let net = format!("--net=/run/netns/{node}");
    sh("nsenter", &[&net, "--", "ip6tables-save"])
        .with_context(|| format!("ip6tables-save in {node}"))
}

/// The rule every IPv6 container flow to the outside takes its NAT
/// decision in (its first packet; conntrack the rest).
pub fn masquerade_rule6() -> String {
    format!("nat -A POSTROUTING -s {SUBNET6} ! -o docker0 -j MASQUERADE")
}

/// Entries in an ebridge setup's pinned `nat6` map (two per flow).
pub fn nat6_count(bridge: &str) -> Result<u64> {
    let path = Path::new("/sys/fs/bpf/ebridge").join(bridge).join(MAP_NAT6);
    let data = MapData::from_pin(&path)
        .with_context(|| format!("cannot open pinned map {}", path.display()))?;
    let map = Map::from_map_data(data)
        .with_context(|| format!("{} is not a map aya knows", path.display()))?;
    let map: HashMap<MapData, Nat6Key, Nat6Entry> = HashMap::try_from(map)
        .with_context(|| format!("{} is not the nat6 hash map", path.display()))?;
    let mut n = 0;
    for key in map.keys() {
        key.context("cannot read the nat6 map")?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::iptables::Published;

    #[test]
    fn mirrors_the_ipv4_addresses() {
        assert_eq!(mirror(CLIENT_IP).to_string(), "fd00:17::2");
        assert_eq!(mirror(SERVER_IP).to_string(), "fd00:17::3");
        assert_eq!(mirror(aim::other_endpoint_ip(0)).to_string(), "fd00:17::a");
        assert_eq!(mirror(NODE_IP), NODE_IP6);
        assert_eq!(mirror(OUTSIDE_IP), OUTSIDE_IP6);
    }

    #[test]
    fn docker_ip6tables_rules() {
        let base = base_rules6();
        assert!(base.contains(
            &"-t nat -A POSTROUTING -s fd00:17::/64 ! -o docker0 -j MASQUERADE".to_string()
        ));
        assert!(base.contains(
            &"-t nat -A OUTPUT ! -d ::1/128 -m addrtype --dst-type LOCAL -j DOCKER".to_string()
        ));
        let p = Published {
            host_port: 8003,
            ip: mirror_addr(CONTAINER_IP.into()),
            ctr_port: 9003,
            proto: "tcp",
        };
        assert_eq!(
            p.rules()[1].1,
            "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8003 -j DNAT --to-destination [fd00:17::2]:9003"
        );
        assert_eq!(
            p.rules()[2].1,
            "-A DOCKER -d fd00:17::2/128 ! -i docker0 -o docker0 -p tcp -m tcp --dport 9003 -j ACCEPT"
        );
    }
}
