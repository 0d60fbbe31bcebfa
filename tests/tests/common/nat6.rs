//! IPv6 masquerade test bench (issue 11): [`NatLab`]'s uplink given a
//! global IPv6 address, an IPv6 default route and a permanent next-hop
//! neighbour, IPv6 forwarding on the bridge (as `ebridge up` sets it, so
//! `bpf_fib_lookup` answers for IPv6), a config with IPv6 and IPv6
//! masquerade on, and views of IPv6 output frames whose transport
//! checksums are recomputed here from the bytes with the IPv6
//! pseudo-header (RFC 8200 8.1), independently of the datapath and of the
//! frame builders.
//!
//! The namespace gets, besides [`TestNet`]'s devices and [`add_uplink`]'s
//! IPv4 setup:
//!
//! ```text
//! ebt-up0 (UPLINK_MAC, 2001:db8:1::1/64 nodad)
//! default via 2001:db8:1::2 (NEXT_HOP_MAC, permanent neighbour)
//! /proc/sys/net/ipv6/conf/ebt-br0/forwarding = 1
//! ```
use aya::maps::{HashMap, MapData, MapError};
use ebridge_common::{
    config::{BridgeConfig, CONFIG_F_IPV6, CONFIG_F_IPV6_MASQUERADE},
    maps::{MAP_ENDPOINT_BY_IP6, MAP_FRAGS6, MAP_NAT6, PROG_UPLINK_EGRESS, PROG_UPLINK_INGRESS},
    nat::{bridge_mark, Frag6Entry, Frag6Key, Nat6Entry, Nat6Key, DIR_ORIGINAL, DIR_REPLY},
};

use super::{frame::*, frame6::*, nat::*, packet_test::*};

/// 2001:db8:1::1, the uplink's global address: the masquerade source.
pub const UPLINK_IP6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
/// 2001:db8:1::2, the IPv6 default gateway on the uplink.
pub const NEXT_HOP_IP6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
/// 2001:db8:ff::10, a server reached through the default route.
pub const REMOTE_IP6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];
/// 2001:db8:ff::fe, a router on the path that sends ICMPv6 errors.
pub const ROUTER_IP6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfe,
];

pub const ICMPV6_DEST_UNREACH: u8 = 1;
pub const ICMPV6_PKT_TOO_BIG: u8 = 2;
pub const ICMPV6_TIME_EXCEEDED: u8 = 3;
pub const ICMPV6_PARAM_PROBLEM: u8 = 4;
pub const ICMPV6_ECHO_REPLY: u8 = 129;
/// Destination unreachable, code 4: port unreachable.
pub const ICMPV6_PORT_UNREACH: u8 = 4;

/// [`add_uplink`] plus the IPv6 setup of the module docs. Returns the
/// uplink's ifindex.
pub fn add_uplink6() -> u32 {
    let uplink = add_uplink();
    write_sysctl(
        &format!("/proc/sys/net/ipv6/conf/{UPLINK}/disable_ipv6"),
        "0",
    );
    ip(&[
        "-6",
        "addr",
        "add",
        "2001:db8:1::1/64",
        "dev",
        UPLINK,
        "nodad",
    ]);
    ip(&[
        "-6",
        "neigh",
        "add",
        "2001:db8:1::2",
        "lladdr",
        &fmt_mac(NEXT_HOP_MAC),
        "dev",
        UPLINK,
        "nud",
        "permanent",
    ]);
    ip(&[
        "-6",
        "route",
        "add",
        "default",
        "via",
        "2001:db8:1::2",
        "dev",
        UPLINK,
    ]);
    set_bridge_forwarding6(true);
    uplink
}

/// `/proc/sys/net/ipv6/conf/ebt-br0/forwarding` of the calling thread's
/// namespace, as `ebridge up` sets it on an IPv6 bridge.
pub fn set_bridge_forwarding6(on: bool) {
    write_sysctl(
        "/proc/sys/net/ipv6/conf/ebt-br0/forwarding",
        if on { "1" } else { "0" },
    );
}

fn write_sysctl(path: &str, value: &str) {
    std::fs::write(path, value).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
}

/// [`nat_config`] with the IPv6 subnet of [`ipv6_config`] (fd00::/64,
/// gateway fd00::1) and IPv6 masquerade behind [`UPLINK_IP6`], as
/// `ebridge up --subnet-v6 fd00::/64` writes it.
pub fn nat6_config(net: &TestNet, uplink: u32) -> BridgeConfig {
    let base = nat_config(net, uplink);
    let v6 = ipv6_config(net);
    BridgeConfig {
        flags: base.flags | CONFIG_F_IPV6 | CONFIG_F_IPV6_MASQUERADE,
        gateway_ipv6: v6.gateway_ipv6,
        subnet_ipv6: v6.subnet_ipv6,
        subnet6_prefix_len: v6.subnet6_prefix_len,
        uplink_ipv6: UPLINK_IP6,
        ..base
    }
}

/// The usual [`Fixture`] with IPv6 endpoints (A = fd00::2, B = fd00::3,
/// in both endpoint maps as `endpoint add` records them), the IPv6 uplink,
/// IPv6 masquerade on and all three programs loaded.
pub struct NatLab6 {
    pub fx: Fixture,
    pub uplink: u32,
}

impl NatLab6 {
    pub fn new(net: &TestNet) -> Self {
        Self::with(net, |_| {})
    }

    /// With the config changed by `edit` before it is written.
    pub fn with(net: &TestNet, edit: impl FnOnce(&mut BridgeConfig)) -> Self {
        Self::build(net, NAT_TEST_ENTRIES, edit)
    }

    /// With `nat` and `nat6` of `nat_entries` entries.
    pub fn build(net: &TestNet, nat_entries: u32, edit: impl FnOnce(&mut BridgeConfig)) -> Self {
        let uplink = add_uplink6();
        let mut cfg = nat6_config(net, uplink);
        cfg.nat_entries = nat_entries;
        edit(&mut cfg);
        let mut dp = Datapath::load_with_nat6_entries(nat_entries);
        dp.load_program(PROG_UPLINK_INGRESS);
        dp.load_program(PROG_UPLINK_EGRESS);
        let mut fx = Fixture::with_datapath(net, dp, &cfg);
        for (ifindex, mac, addr) in [(fx.a, MAC_A, IP6_A), (fx.b, MAC_B, IP6_B)] {
            fx.dp.set_endpoint_ipv6(ifindex, addr, link_local(mac));
            let mut by_ip6: HashMap<_, [u8; 16], u32> = fx
                .dp
                .ebpf_mut()
                .map_mut(MAP_ENDPOINT_BY_IP6)
                .expect("endpoint_by_ip6 map")
                .try_into()
                .expect("endpoint_by_ip6 is a HashMap<[u8; 16], u32>");
            by_ip6
                .insert(addr, ifindex, 0)
                .expect("insert endpoint_by_ip6");
        }
        Self { fx, uplink }
    }

    pub fn dp(&self) -> &Datapath {
        &self.fx.dp
    }

    /// `frame` sent by container A (the endpoint program on A's veth).
    pub fn a_sends(&self, frame: &[u8]) -> Run {
        self.fx.dp.run(self.fx.a, frame)
    }

    pub fn b_sends(&self, frame: &[u8]) -> Run {
        self.fx.dp.run(self.fx.b, frame)
    }

    /// `frame` arriving on the uplink (TC ingress).
    pub fn uplink_receives(&self, frame: &[u8]) -> Run {
        self.fx.dp.run_prog(PROG_UPLINK_INGRESS, self.uplink, frame)
    }

    /// `frame` leaving by the uplink (TC egress) with no mark: the node's
    /// stack (kernel forwarding included) sent it.
    pub fn uplink_sends(&self, frame: &[u8]) -> Run {
        self.fx.dp.run_prog(PROG_UPLINK_EGRESS, self.uplink, frame)
    }

    /// `frame` leaving by the uplink with `skb->mark` = `mark`.
    pub fn uplink_sends_marked(&self, frame: &[u8], mark: u32) -> Run {
        let ctx = SkBuff {
            mark,
            ..SkBuff::on(self.uplink)
        };
        self.fx
            .dp
            .try_run_prog(PROG_UPLINK_EGRESS, Some(&ctx), frame)
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN of uplink_egress: {e:?}"))
    }

    /// The mark this lab's bridge puts on what it sends out of the uplink.
    pub fn own_mark(&self) -> u32 {
        bridge_mark(self.fx.net.bridge)
    }

    fn nat6_map(&self) -> HashMap<&MapData, Nat6Key, Nat6Entry> {
        self.fx
            .dp
            .ebpf()
            .map(MAP_NAT6)
            .expect("nat6 map")
            .try_into()
            .expect("nat6 is a HashMap<Nat6Key, Nat6Entry>")
    }

    pub fn nat6_get(&self, key: &Nat6Key) -> Option<Nat6Entry> {
        match self.nat6_map().get(key, 0) {
            Ok(entry) => Some(entry),
            Err(MapError::KeyNotFound) => None,
            Err(e) => panic!("read nat6 entry {key:?}: {e:?}"),
        }
    }

    /// Every IPv6 conntrack entry (two per flow).
    pub fn nat6_entries(&self) -> Vec<(Nat6Key, Nat6Entry)> {
        self.nat6_map()
            .iter()
            .map(|kv| kv.expect("read nat6 entry"))
            .collect()
    }

    pub fn assert_nat6_len(&self, n: usize) {
        let entries = self.nat6_entries();
        assert_eq!(entries.len(), n, "nat6 map: {entries:#?}");
    }

    /// Every remembered IPv6 fragment translation.
    pub fn frags6_entries(&self) -> Vec<(Frag6Key, Frag6Entry)> {
        let frags: HashMap<_, Frag6Key, Frag6Entry> = self
            .fx
            .dp
            .ebpf()
            .map(MAP_FRAGS6)
            .expect("frags6 map")
            .try_into()
            .expect("frags6 is a HashMap<Frag6Key, Frag6Entry>");
        frags
            .iter()
            .map(|kv| kv.expect("read frags6 entry"))
            .collect()
    }

    /// Sends `frame` from the container on host veth `from`, checks it was
    /// masqueraded behind [`UPLINK_IP6`], and returns the output and the
    /// NAT port (or ICMPv6 echo identifier) it got.
    pub fn open_flow(&self, from: u32, frame: &[u8]) -> (Vec<u8>, u16) {
        let run = self.fx.dp.run(from, frame);
        assert_eq!(
            run.ret,
            TC_ACT_REDIRECT,
            "masquerade of the flow's first packet failed: {}",
            self.dp().stats_summary()
        );
        let ip = Pkt6(&run.out).ip();
        assert_eq!(ip.saddr(), UPLINK_IP6, "first packet not masqueraded");
        let port = if ip.proto() == IPPROTO_ICMPV6 {
            ip.icmp_id()
        } else {
            ip.sport()
        };
        (run.out, port)
    }

    /// Both conntrack entries of a flow `saddr:sport → daddr:dport`
    /// masqueraded to `UPLINK_IP6:nat_port`, checked to mirror each other;
    /// returns (original, reply).
    pub fn assert_flow6(
        &self,
        proto: u8,
        (saddr, sport): ([u8; 16], u16),
        (daddr, dport): ([u8; 16], u16),
        nat_port: u16,
        container: (u32, [u8; 6]),
    ) -> (Nat6Entry, Nat6Entry) {
        let okey = orig_key6(proto, (saddr, sport), (daddr, dport));
        let rkey = reply_key6(proto, (daddr, dport), nat_port);
        let orig = self.nat6_get(&okey).unwrap_or_else(|| {
            panic!(
                "no original entry {okey:?}; nat6 map: {:#?}",
                self.nat6_entries()
            )
        });
        let reply = self.nat6_get(&rkey).unwrap_or_else(|| {
            panic!(
                "no reply entry {rkey:?}; nat6 map: {:#?}",
                self.nat6_entries()
            )
        });
        assert_eq!(orig.addr, UPLINK_IP6, "original entry: new source address");
        assert_eq!(
            u16::from_be(orig.port),
            nat_port,
            "original entry: NAT port"
        );
        assert_eq!(reply.addr, saddr, "reply entry: container address");
        assert_eq!(
            u16::from_be(reply.port),
            sport,
            "reply entry: container port"
        );
        assert_eq!(reply.ifindex, container.0, "reply entry: container veth");
        assert_eq!(reply.mac, container.1, "reply entry: container MAC");
        assert_eq!((orig.ifindex, orig.mac), (0, [0; 6]), "original entry");
        assert_eq!(orig.owner, ebridge_common::nat::OWNER_CONTAINER);
        assert_eq!(reply.owner, ebridge_common::nat::OWNER_CONTAINER);
        assert_eq!(
            reply.created_ns, orig.created_ns,
            "both entries are made at the same moment"
        );
        (orig, reply)
    }
}

/// Key of a flow's original direction (container → outside). For ICMPv6
/// echo `sport` is the identifier and `dport` 0.
pub fn orig_key6(
    proto: u8,
    (saddr, sport): ([u8; 16], u16),
    (daddr, dport): ([u8; 16], u16),
) -> Nat6Key {
    Nat6Key {
        saddr,
        daddr,
        sport: sport.to_be(),
        dport: dport.to_be(),
        proto,
        dir: DIR_ORIGINAL,
        _pad: [0; 2],
    }
}

/// Key of the reply direction: outside (`raddr:rport`) → UPLINK_IP6:`nat_port`.
pub fn reply_key6(proto: u8, (raddr, rport): ([u8; 16], u16), nat_port: u16) -> Nat6Key {
    Nat6Key {
        saddr: raddr,
        daddr: UPLINK_IP6,
        sport: rport.to_be(),
        dport: nat_port.to_be(),
        proto,
        dir: DIR_REPLY,
        _pad: [0; 2],
    }
}

// ---- frames ----------------------------------------------------------------

/// An IPv6 packet (`ipv6` bytes) sent by a container to the gateway's MAC.
pub fn to_gateway6(src_mac: [u8; 6], ipv6_packet: &[u8]) -> Vec<u8> {
    ethernet(BRIDGE_MAC, src_mac, ETH_P_IPV6, ipv6_packet)
}

/// UDP `src:sport → dst:dport` from a container, to the gateway's MAC.
pub fn udp6_out(src: [u8; 16], sport: u16, dst: [u8; 16], dport: u16, mac: [u8; 6]) -> Vec<u8> {
    let l4 = udp6(src, dst, sport, dport, b"masquerade me");
    to_gateway6(mac, &ipv6(src, dst, IPPROTO_UDP, &l4))
}

/// A TCP segment (20-byte header) with its IPv6 pseudo-header checksum.
#[allow(clippy::too_many_arguments)]
pub fn tcp6(
    src: [u8; 16],
    dst: [u8; 16],
    sport: u16,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut t = Vec::with_capacity(20 + payload.len());
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.push(5 << 4);
    t.push(flags);
    t.extend_from_slice(&64800u16.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]);
    t.extend_from_slice(payload);
    let csum = checksum(&[&pseudo6(src, dst, IPPROTO_TCP, t.len()), &t]);
    t[16..18].copy_from_slice(&csum.to_be_bytes());
    t
}

/// TCP `src:sport → dst:dport` with `flags` from a container.
pub fn tcp6_out(
    src: [u8; 16],
    sport: u16,
    dst: [u8; 16],
    dport: u16,
    flags: u8,
    mac: [u8; 6],
) -> Vec<u8> {
    let l4 = tcp6(
        src,
        dst,
        sport,
        dport,
        flags,
        1000,
        0,
        b"GET / HTTP/1.1\r\n\r\n",
    );
    to_gateway6(mac, &ipv6(src, dst, IPPROTO_TCP, &l4))
}

/// An ICMPv6 echo request or reply (`ty`) with its checksum.
pub fn echo6(src: [u8; 16], dst: [u8; 16], ty: u8, id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(4 + data.len());
    body.extend_from_slice(&id.to_be_bytes());
    body.extend_from_slice(&seq.to_be_bytes());
    body.extend_from_slice(data);
    icmp6(src, dst, ty, 0, &body)
}

/// `ping -6` from a container: echo request with identifier `id`.
pub fn ping6_out(src: [u8; 16], dst: [u8; 16], id: u16, mac: [u8; 6]) -> Vec<u8> {
    let l4 = echo6(src, dst, ICMPV6_ECHO_REQUEST, id, 1, &[0xab; 56]);
    to_gateway6(mac, &ipv6(src, dst, IPPROTO_ICMPV6, &l4))
}

/// An IPv6 packet arriving on the uplink from the next hop.
pub fn inbound6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
    ethernet(
        UPLINK_MAC,
        NEXT_HOP_MAC,
        ETH_P_IPV6,
        &ipv6(src, dst, next, payload),
    )
}

/// An IPv6 packet leaving by the uplink towards the next hop.
pub fn outbound6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
    ethernet(
        NEXT_HOP_MAC,
        UPLINK_MAC,
        ETH_P_IPV6,
        &ipv6(src, dst, next, payload),
    )
}

/// The ICMPv6 error `ty`/`code` a router sends to `dst`: `rest` is the
/// second header word (MTU, pointer or unused), `quoted` the packet that
/// caused it, checksummed with the pseudo-header.
pub fn icmp6_error(
    src: [u8; 16],
    dst: [u8; 16],
    ty: u8,
    code: u8,
    rest: [u8; 4],
    quoted: &[u8],
) -> Vec<u8> {
    let mut body = rest.to_vec();
    body.extend_from_slice(quoted);
    icmp6(src, dst, ty, code, &body)
}

/// The upper-layer message `l4` of `proto` as two fragments' payloads
/// (fragment header first) split after `split` bytes (a multiple of 8):
/// the first with M set, the second at offset `split`.
pub fn fragments6(proto: u8, l4: &[u8], split: usize, id: u32) -> (Vec<u8>, Vec<u8>) {
    assert_eq!(split % 8, 0, "fragment offsets count 8-byte units");
    let mut first = frag_header(proto, 0, true, id);
    first.extend_from_slice(&l4[..split]);
    let mut later = frag_header(proto, (split / 8) as u16, false, id);
    later.extend_from_slice(&l4[split..]);
    (first, later)
}

/// Sets the hop limit of an Ethernet + IPv6 frame.
pub fn set_hop_limit(frame: &mut [u8], hop_limit: u8) {
    frame[ETH_HLEN + 7] = hop_limit;
}

// ---- looking at output frames ----------------------------------------------

/// An Ethernet frame carrying IPv6.
#[derive(Clone, Copy)]
pub struct Pkt6<'a>(pub &'a [u8]);

impl<'a> Pkt6<'a> {
    pub fn dst_mac(&self) -> [u8; 6] {
        self.0[0..6].try_into().unwrap()
    }
    pub fn src_mac(&self) -> [u8; 6] {
        self.0[6..12].try_into().unwrap()
    }
    pub fn ip(&self) -> Ip6<'a> {
        assert_eq!(
            u16::from_be_bytes([self.0[12], self.0[13]]),
            ETH_P_IPV6,
            "not an IPv6 frame"
        );
        Ip6(&self.0[ETH_HLEN..])
    }
}

/// The fragment header of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frag6 {
    /// In bytes.
    pub offset: usize,
    pub more: bool,
    pub id: u32,
}

/// An IPv6 packet (possibly a quote inside an ICMPv6 error, cut short).
#[derive(Clone, Copy)]
pub struct Ip6<'a>(pub &'a [u8]);

impl<'a> Ip6<'a> {
    pub fn payload_len(&self) -> usize {
        usize::from(u16::from_be_bytes([self.0[4], self.0[5]]))
    }
    pub fn next_header(&self) -> u8 {
        self.0[6]
    }
    pub fn hop_limit(&self) -> u8 {
        self.0[7]
    }
    pub fn saddr(&self) -> [u8; 16] {
        self.0[8..24].try_into().unwrap()
    }
    pub fn daddr(&self) -> [u8; 16] {
        self.0[24..40].try_into().unwrap()
    }
    /// Everything after the fixed header, up to the payload length (or
    /// the end of a quote).
    pub fn payload(&self) -> &'a [u8] {
        let end = (IPV6_HLEN + self.payload_len()).min(self.0.len());
        &self.0[IPV6_HLEN..end]
    }

    /// Walks hop-by-hop, routing, destination options and fragment
    /// headers to the upper layer: (protocol, where it starts in
    /// `payload()`, the fragment header if any).
    fn walk(&self) -> (u8, usize, Option<Frag6>) {
        let p = self.payload();
        let (mut next, mut off, mut frag) = (self.next_header(), 0, None);
        loop {
            match next {
                NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST => {
                    next = p[off];
                    off += (usize::from(p[off + 1]) + 1) * 8;
                }
                NEXTHDR_FRAGMENT => {
                    let word = u16::from_be_bytes([p[off + 2], p[off + 3]]);
                    let f = Frag6 {
                        offset: usize::from(word & 0xfff8),
                        more: word & 1 != 0,
                        id: u32::from_be_bytes(p[off + 4..off + 8].try_into().unwrap()),
                    };
                    next = p[off];
                    off += 8;
                    frag = Some(f);
                    if f.offset != 0 {
                        return (next, off, frag);
                    }
                }
                _ => return (next, off, frag),
            }
        }
    }

    /// The upper-layer protocol.
    pub fn proto(&self) -> u8 {
        self.walk().0
    }
    pub fn frag(&self) -> Option<Frag6> {
        self.walk().2
    }
    /// The upper-layer bytes (for a later fragment, its data).
    pub fn l4(&self) -> &'a [u8] {
        let (_, off, _) = self.walk();
        &self.payload()[off..]
    }
    fn u16_at(&self, off: usize) -> u16 {
        let l4 = self.l4();
        u16::from_be_bytes([l4[off], l4[off + 1]])
    }
    pub fn sport(&self) -> u16 {
        self.u16_at(0)
    }
    pub fn dport(&self) -> u16 {
        self.u16_at(2)
    }
    pub fn icmp_type(&self) -> u8 {
        self.l4()[0]
    }
    pub fn icmp_code(&self) -> u8 {
        self.l4()[1]
    }
    pub fn icmp_id(&self) -> u16 {
        self.u16_at(4)
    }
    /// The transport checksum field (TCP at 16, UDP at 6, ICMPv6 at 2).
    pub fn l4_checksum_field(&self) -> u16 {
        match self.proto() {
            IPPROTO_TCP => self.u16_at(16),
            IPPROTO_UDP => self.u16_at(6),
            _ => self.u16_at(2),
        }
    }
    /// The packet an ICMPv6 error quotes.
    pub fn quoted(&self) -> Ip6<'a> {
        assert_eq!(self.proto(), IPPROTO_ICMPV6, "only ICMPv6 errors quote");
        assert!(self.icmp_type() < 128, "not an ICMPv6 error");
        Ip6(&self.l4()[8..])
    }

    /// The transport checksum verifies over the whole upper layer with
    /// this packet's addresses, and equals the one computed here afresh.
    pub fn assert_l4_checksum(&self, what: &str) {
        assert!(self.frag().is_none(), "{what}: a fragment has no whole L4");
        assert_l4_checksum6(what, self.proto(), self.saddr(), self.daddr(), self.l4());
    }
}

/// The IPv6 pseudo-header of an upper-layer checksum (RFC 8200 8.1):
/// source, destination, 32-bit upper-layer length, 3 zero bytes, next
/// header.
pub fn pseudo6(src: [u8; 16], dst: [u8; 16], proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&(len as u32).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, proto]);
    p
}

/// Where `proto`'s checksum field sits in its header.
fn checksum_offset(proto: u8) -> usize {
    match proto {
        IPPROTO_TCP => 16,
        IPPROTO_UDP => 6,
        IPPROTO_ICMPV6 => 2,
        other => panic!("no checksum rule for protocol {other}"),
    }
}

/// The checksum field a sender computing afresh would put in `l4` (its
/// own field taken as zero); UDP's 0 is sent as 0xffff (RFC 8200 8.1).
pub fn expected_l4_checksum6(proto: u8, saddr: [u8; 16], daddr: [u8; 16], l4: &[u8]) -> u16 {
    let at = checksum_offset(proto);
    let mut zeroed = l4.to_vec();
    zeroed[at..at + 2].copy_from_slice(&[0, 0]);
    let sum = checksum(&[&pseudo6(saddr, daddr, proto, l4.len()), &zeroed]);
    if proto == IPPROTO_UDP && sum == 0 {
        0xffff
    } else {
        sum
    }
}

/// The checksum of a whole upper-layer message (a reassembled datagram
/// for fragments) verifies and is what a fresh computation gives (0x0000
/// and 0xffff are the same one's-complement number for TCP and ICMPv6;
/// UDP over IPv6 must never carry 0).
pub fn assert_l4_checksum6(what: &str, proto: u8, saddr: [u8; 16], daddr: [u8; 16], l4: &[u8]) {
    let at = checksum_offset(proto);
    let field = u16::from_be_bytes([l4[at], l4[at + 1]]);
    if proto == IPPROTO_UDP {
        assert_ne!(field, 0, "{what}: a zero UDP checksum is invalid over IPv6");
    }
    let sum = checksum(&[&pseudo6(saddr, daddr, proto, l4.len()), l4]);
    let want = expected_l4_checksum6(proto, saddr, daddr, l4);
    assert!(
        sum == 0 && (field == want || [field, want] == [0, 0xffff] || [field, want] == [0xffff, 0]),
        "{what}: protocol {proto} checksum {field:#06x} does not verify over {} bytes with \
         the pseudo-header of {} → {} (want {want:#06x})",
        l4.len(),
        fmt_ip6(saddr),
        fmt_ip6(daddr)
    );
}

pub fn fmt_ip6(a: [u8; 16]) -> String {
    std::net::Ipv6Addr::from(a).to_string()
}
