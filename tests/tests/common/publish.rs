//! Published ports in the packet tests: the `publish` and `node_addrs` maps
//! written the way `ebridge publish add` / `endpoint add -p` and `up` (or
//! the agent) write them, frames from outside to a published port, and
//! checks of the conntrack pairs that inbound (DNAT) and hairpin flows make.
//!
//! Inbound flow `REMOTE:rport → NODE:hostport` published to `CTR:ctrport`:
//!
//! ```text
//! DIR_REPLY    (REMOTE, NODE, rport, hostport)  → CTR:ctrport, veth, MAC    (outside side)
//! DIR_ORIGINAL (CTR, REMOTE, ctrport, rport)    → NODE:hostport             (container side)
//! ```
//!
//! Hairpin flow `CLIENT:cport → NODE:hostport` published to `TGT:tport`,
//! NAT port P on the gateway:
//!
//! ```text
//! DIR_ORIGINAL (CLIENT, NODE, cport, hostport)  → src GW:P, dst TGT:tport, target's veth
//! DIR_ORIGINAL (TGT, GW, tport, P)  [BACK]      → src NODE:hostport, dst CLIENT:cport, client's veth
//! ```
use aya::maps::HashMap;
use ebridge_common::{
    maps::{MAP_NODE_ADDRS, MAP_PUBLISH},
    nat::{
        NatEntry, NatKey, PublishKey, PublishTarget, DIR_REPLY, NAT_F_BACK, NAT_F_DNAT,
        NAT_F_HAIRPIN, NAT_F_INBOUND,
    },
};

use super::{frame::*, nat::*, packet_test::*};

/// A second address of the node (on the uplink, `/32`), for publishes bound
/// to one address.
pub const NODE_IP2: [u8; 4] = [198, 51, 100, 7];

/// A container a port is published to: host veth, MAC, address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ctr {
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub ip: [u8; 4],
}

impl Datapath {
    fn publish_map(&mut self) -> HashMap<&mut aya::maps::MapData, PublishKey, PublishTarget> {
        self.ebpf_mut()
            .map_mut(MAP_PUBLISH)
            .expect("publish map")
            .try_into()
            .expect("publish is a HashMap<PublishKey, PublishTarget>")
    }

    /// Installs `-p spec` (`[HOSTIP:]HOSTPORT[-END]:CTRPORT[-END][/proto]`,
    /// parsed by the CLI's own parser) for `to` as `ebridge publish add`
    /// does: one entry per host port, host IP 0.0.0.0 for "every address".
    /// Returns the entries written.
    pub fn publish(&mut self, spec: &str, to: Ctr) -> Vec<(PublishKey, PublishTarget)> {
        let spec = ebridge::publish::parse(spec)
            .unwrap_or_else(|e| panic!("test setup: bad publish spec {spec}: {e:#}"));
        let addr = spec
            .host_ip
            .bindings()
            .into_iter()
            .find_map(|a| match a {
                std::net::IpAddr::V4(a) => Some(a.octets()),
                std::net::IpAddr::V6(_) => None,
            })
            .expect("test setup: an IPv4 publish");
        let entries: Vec<_> = spec
            .ports()
            .map(|(host, ctr)| {
                (
                    PublishKey {
                        addr,
                        port: host.to_be(),
                        proto: spec.proto,
                        _pad: 0,
                    },
                    PublishTarget {
                        addr: to.ip,
                        port: ctr.to_be(),
                        _pad: [0; 2],
                        ifindex: to.ifindex,
                        mac: to.mac,
                        _pad2: [0; 2],
                    },
                )
            })
            .collect();
        let mut map = self.publish_map();
        for (key, target) in &entries {
            map.insert(*key, *target, 0).expect("insert publish entry");
        }
        entries
    }

    /// Every entry of the `publish` map.
    pub fn publish_entries(&self) -> Vec<(PublishKey, PublishTarget)> {
        let map: HashMap<_, PublishKey, PublishTarget> = self
            .ebpf()
            .map(MAP_PUBLISH)
            .expect("publish map")
            .try_into()
            .expect("publish is a HashMap<PublishKey, PublishTarget>");
        map.iter().map(|kv| kv.expect("read publish")).collect()
    }

    /// Adds `addr` to `node_addrs`, as `up` and the agent do for every IPv4
    /// address of the node.
    pub fn add_node_addr(&mut self, addr: [u8; 4]) {
        let mut map: HashMap<_, [u8; 4], u8> = self
            .ebpf_mut()
            .map_mut(MAP_NODE_ADDRS)
            .expect("node_addrs map")
            .try_into()
            .expect("node_addrs is a HashMap<[u8; 4], u8>");
        map.insert(addr, 1, 0).expect("insert node address");
    }
}

impl NatLab {
    /// Container A (the fixture's first endpoint) as a publish target.
    pub fn ctr_a(&self) -> Ctr {
        Ctr {
            ifindex: self.fx.a,
            mac: MAC_A,
            ip: IP_A,
        }
    }

    pub fn ctr_b(&self) -> Ctr {
        Ctr {
            ifindex: self.fx.b,
            mac: MAC_B,
            ip: IP_B,
        }
    }

    pub fn publish(&mut self, spec: &str, to: Ctr) -> Vec<(PublishKey, PublishTarget)> {
        self.fx.dp.publish(spec, to)
    }

    pub fn add_node_addr(&mut self, addr: [u8; 4]) {
        self.fx.dp.add_node_addr(addr);
    }

    /// Gives the node a second address, [`NODE_IP2`], on the uplink (so the
    /// FIB calls it local) and lists it in `node_addrs`.
    pub fn add_second_node_addr(&mut self) {
        configure_second_node_ip();
        self.add_node_addr(NODE_IP2);
    }

    fn entry(&self, key: &NatKey, what: &str) -> NatEntry {
        self.dp().nat_get(key).unwrap_or_else(|| {
            panic!(
                "no {what} entry {key:?}; nat map: {:#?}",
                self.dp().nat_entries()
            )
        })
    }

    /// Both entries of the inbound flow `remote → published` that was
    /// DNATed to `to`:`ctr_port`, checked against each other and the module
    /// docs' layout. Returns (outside side, container side).
    pub fn assert_inbound_pair(
        &self,
        proto: u8,
        remote: ([u8; 4], u16),
        published: ([u8; 4], u16),
        to: Ctr,
        ctr_port: u16,
    ) -> (NatEntry, NatEntry) {
        let outside = self.entry(&inbound_key(proto, remote, published), "outside-side");
        let inside = self.entry(
            &container_key(proto, (to.ip, ctr_port), remote),
            "container-side",
        );
        assert_eq!(
            (outside.addr, u16::from_be(outside.port)),
            (to.ip, ctr_port),
            "outside-side entry: new destination"
        );
        assert_eq!(
            (outside.ifindex, outside.mac),
            (to.ifindex, to.mac),
            "outside-side entry: the container's veth and MAC"
        );
        assert_eq!(
            (inside.addr, u16::from_be(inside.port)),
            published,
            "container-side entry: new source (the published address)"
        );
        assert_eq!(
            (inside.ifindex, inside.mac),
            (0, [0; 6]),
            "container-side entry: ifindex and MAC"
        );
        for (e, what) in [(&outside, "outside-side"), (&inside, "container-side")] {
            assert_ne!(
                e.flags & NAT_F_INBOUND,
                0,
                "{what} entry lacks NAT_F_INBOUND"
            );
            assert_eq!(
                e.flags & (NAT_F_DNAT | NAT_F_HAIRPIN | NAT_F_BACK),
                0,
                "{what} entry: inbound flows rewrite one end only: {e:?}"
            );
            assert_eq!((e.daddr, e.dport), ([0; 4], 0), "{what} entry: daddr");
        }
        assert_eq!(
            outside.created_ns, inside.created_ns,
            "both entries are made at the same moment"
        );
        (outside, inside)
    }

    /// Both entries of the hairpin flow `client → published` turned around
    /// to `to`:`tgt_port` on gateway port `nat_port` (the kind bits of their
    /// flags included; the TCP state bits are the caller's). Returns
    /// (client's, target's).
    #[allow(clippy::too_many_arguments)]
    pub fn assert_hairpin_pair(
        &self,
        proto: u8,
        (client, client_port): (Ctr, u16),
        published: ([u8; 4], u16),
        (to, tgt_port): (Ctr, u16),
        nat_port: u16,
    ) -> (NatEntry, NatEntry) {
        let there = self.entry(
            &container_key(proto, (client.ip, client_port), published),
            "client's",
        );
        let back = self.entry(
            &container_key(proto, (to.ip, tgt_port), (GATEWAY_IP, nat_port)),
            "target's",
        );
        assert_eq!(
            (there.addr, u16::from_be(there.port)),
            (GATEWAY_IP, nat_port),
            "client's entry: new source"
        );
        assert_eq!(
            (there.daddr, u16::from_be(there.dport)),
            (to.ip, tgt_port),
            "client's entry: new destination"
        );
        assert_eq!(
            (there.ifindex, there.mac),
            (to.ifindex, to.mac),
            "client's entry: the target's veth and MAC"
        );
        let kind = NAT_F_DNAT | NAT_F_HAIRPIN | NAT_F_BACK | NAT_F_INBOUND;
        assert_eq!(
            there.flags & kind,
            NAT_F_DNAT | NAT_F_HAIRPIN,
            "client's entry: {there:?}"
        );
        assert_eq!(
            (back.addr, u16::from_be(back.port)),
            published,
            "target's entry: new source (the published address)"
        );
        assert_eq!(
            (back.daddr, u16::from_be(back.dport)),
            (client.ip, client_port),
            "target's entry: new destination (the client)"
        );
        assert_eq!(
            (back.ifindex, back.mac),
            (client.ifindex, client.mac),
            "target's entry: the client's veth and MAC"
        );
        assert_eq!(
            back.flags & kind,
            NAT_F_DNAT | NAT_F_HAIRPIN | NAT_F_BACK,
            "target's entry: {back:?}"
        );
        assert_eq!(
            there.created_ns, back.created_ns,
            "both entries are made at the same moment"
        );
        (there, back)
    }
}

/// Puts [`NODE_IP2`] on the uplink (`/32`) without listing it in
/// `node_addrs`.
pub fn configure_second_node_ip() {
    let [a, b, c, d] = NODE_IP2;
    ip(&["addr", "add", &format!("{a}.{b}.{c}.{d}/32"), "dev", UPLINK]);
}

/// Outside-side key of an inbound flow: `remote → published`.
pub fn inbound_key(
    proto: u8,
    (raddr, rport): ([u8; 4], u16),
    (paddr, pport): ([u8; 4], u16),
) -> NatKey {
    NatKey {
        saddr: raddr,
        daddr: paddr,
        sport: rport.to_be(),
        dport: pport.to_be(),
        proto,
        dir: DIR_REPLY,
        _pad: [0; 2],
    }
}

/// A key of what a container sends: `src → dst`, original direction.
pub fn container_key(proto: u8, src: ([u8; 4], u16), dst: ([u8; 4], u16)) -> NatKey {
    orig_key(proto, src, dst)
}

/// TCP from REMOTE_IP:`sport` arriving on the uplink for `dst`:`dport`.
pub fn tcp_in(dst: [u8; 4], sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let l4 = tcp(
        REMOTE_IP,
        dst,
        sport,
        dport,
        flags,
        7000,
        if flags & TCP_ACK != 0 { 1001 } else { 0 },
        b"knock knock",
    );
    inbound(REMOTE_IP, dst, IPPROTO_TCP, &l4)
}

/// UDP from REMOTE_IP:`sport` arriving on the uplink for `dst`:`dport`.
pub fn udp_in(dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let l4 = udp(REMOTE_IP, dst, sport, dport, b"hello published port");
    inbound(REMOTE_IP, dst, IPPROTO_UDP, &l4)
}

/// The L4 payload of a TCP (20-byte header) or UDP packet.
pub fn payload<'a>(ip: &Ip<'a>) -> &'a [u8] {
    match ip.proto() {
        IPPROTO_TCP => &ip.l4()[20..],
        IPPROTO_UDP => &ip.l4()[8..],
        other => panic!("no payload rule for protocol {other}"),
    }
}
