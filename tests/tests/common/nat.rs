//! Masquerade test bench: an uplink in the test's private namespace, a
//! config with CONFIG_F_MASQUERADE, the uplink programs loaded, and views
//! of output frames that recompute every checksum independently of the
//! datapath (RFC 1071 over the bytes, pseudo header included).
//!
//! The namespace gets, besides [`TestNet`]'s devices:
//!
//! ```text
//! ebt-up0 (UPLINK_MAC, 198.51.100.1/24, up) ══ veth ══ ebt-up0-peer (up)
//! default via 198.51.100.2 (NEXT_HOP_MAC, permanent neighbour)
//! /proc/sys/net/ipv4/conf/ebt-br0/forwarding = 1
//! ```
//!
//! so `bpf_fib_lookup` from the bridge towards REMOTE_IP returns SUCCESS
//! with ifindex = ebt-up0, smac = UPLINK_MAC, dmac = NEXT_HOP_MAC.
use ebridge_common::{
    config::{BridgeConfig, CONFIG_F_ICC, CONFIG_F_MASQUERADE},
    maps::{PROG_UPLINK_EGRESS, PROG_UPLINK_INGRESS},
    nat::{bridge_mark, NatEntry, NatKey, DIR_ORIGINAL, DIR_REPLY},
};

use super::{frame::*, packet_test::*};

pub const UPLINK: &str = "ebt-up0";
pub const UPLINK_IP: [u8; 4] = [198, 51, 100, 1];
pub const UPLINK_MAC: [u8; 6] = [0x02, 0x00, 0xc6, 0x33, 0x64, 0x01];
/// The default gateway on the uplink (a permanent neighbour).
pub const NEXT_HOP_IP: [u8; 4] = [198, 51, 100, 2];
pub const NEXT_HOP_MAC: [u8; 6] = [0x02, 0x00, 0xc6, 0x33, 0x64, 0x02];
/// A server on the internet, reached through the default route.
pub const REMOTE_IP: [u8; 4] = [203, 0, 113, 10];
/// A router on the path that sends ICMP errors.
pub const ROUTER_IP: [u8; 4] = [203, 0, 113, 254];
/// Docker's default ephemeral range, as `ebridge up` uses.
pub const NAT_PORTS: (u16, u16) = (32768, 60999);

/// Adds the uplink of the module docs to the calling thread's namespace
/// and enables forwarding on the bridge. Returns the uplink's ifindex.
pub fn add_uplink() -> u32 {
    let mac = fmt_mac(UPLINK_MAC);
    let peer_mac = fmt_mac(NEXT_HOP_MAC);
    ip(&[
        "link",
        "add",
        UPLINK,
        "address",
        &mac,
        "type",
        "veth",
        "peer",
        "name",
        "ebt-up0-peer",
    ]);
    ip(&["addr", "add", "198.51.100.1/24", "dev", UPLINK]);
    ip(&["link", "set", UPLINK, "up"]);
    ip(&["link", "set", "ebt-up0-peer", "up"]);
    ip(&[
        "route",
        "add",
        "default",
        "via",
        "198.51.100.2",
        "dev",
        UPLINK,
    ]);
    ip(&[
        "neigh",
        "add",
        "198.51.100.2",
        "lladdr",
        &peer_mac,
        "dev",
        UPLINK,
        "nud",
        "permanent",
    ]);
    set_bridge_forwarding(true);
    ifindex(UPLINK)
}

/// `/proc/sys/net/ipv4/conf/ebt-br0/forwarding` of the calling thread's
/// namespace (`/proc/sys/net` resolves per thread), as `ebridge up` sets it.
pub fn set_bridge_forwarding(on: bool) {
    let path = "/proc/sys/net/ipv4/conf/ebt-br0/forwarding";
    std::fs::write(path, if on { "1" } else { "0" })
        .unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
}

/// [`default_config`] with masquerade behind the uplink, as `ebridge up`
/// writes it.
pub fn nat_config(net: &TestNet, uplink: u32) -> BridgeConfig {
    BridgeConfig {
        uplink_ifindex: uplink,
        flags: CONFIG_F_ICC | CONFIG_F_MASQUERADE,
        nat_entries: NAT_TEST_ENTRIES,
        uplink_ipv4: UPLINK_IP,
        nat_port_min: NAT_PORTS.0,
        nat_port_max: NAT_PORTS.1,
        bridge_mac: BRIDGE_MAC,
        ..default_config(net)
    }
}

/// The usual [`Fixture`] plus an uplink, masquerade on and all three
/// programs loaded.
pub struct NatLab {
    pub fx: Fixture,
    pub uplink: u32,
}

impl NatLab {
    pub fn new(net: &TestNet) -> Self {
        Self::build(net, NAT_TEST_ENTRIES, |_| {})
    }

    /// With the config changed by `edit` before it is written.
    pub fn with(net: &TestNet, edit: impl FnOnce(&mut BridgeConfig)) -> Self {
        Self::build(net, NAT_TEST_ENTRIES, edit)
    }

    pub fn build(net: &TestNet, nat_entries: u32, edit: impl FnOnce(&mut BridgeConfig)) -> Self {
        let uplink = add_uplink();
        let mut cfg = nat_config(net, uplink);
        cfg.nat_entries = nat_entries;
        edit(&mut cfg);
        let mut dp = Datapath::load_with_nat_entries(nat_entries);
        dp.load_program(PROG_UPLINK_INGRESS);
        dp.load_program(PROG_UPLINK_EGRESS);
        Self {
            fx: Fixture::with_datapath(net, dp, &cfg),
            uplink,
        }
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

    /// `frame` leaving by the uplink (TC egress), as the node's stack
    /// sends it (no mark).
    pub fn uplink_sends(&self, frame: &[u8]) -> Run {
        self.fx.dp.run_prog(PROG_UPLINK_EGRESS, self.uplink, frame)
    }

    /// `frame` leaving by the uplink with `skb->mark` = `mark`: what a
    /// bridge's endpoint program redirected there (its `bridge_mark`).
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

    /// Writes a conntrack entry as the datapath (or a test's setup) would.
    pub fn nat_insert(&mut self, key: &NatKey, entry: &NatEntry) {
        self.nat_map_mut()
            .insert(key, entry, 0)
            .unwrap_or_else(|e| panic!("insert nat entry {key:?}: {e:?}"));
    }

    /// Removes a conntrack entry, as the agent's GC does.
    pub fn nat_remove(&mut self, key: &NatKey) {
        self.nat_map_mut()
            .remove(key)
            .unwrap_or_else(|e| panic!("remove nat entry {key:?}: {e:?}"));
    }

    fn nat_map_mut(&mut self) -> aya::maps::HashMap<&mut aya::maps::MapData, NatKey, NatEntry> {
        self.fx
            .dp
            .ebpf_mut()
            .map_mut(ebridge_common::maps::MAP_NAT)
            .expect("nat map")
            .try_into()
            .expect("nat is a HashMap<NatKey, NatEntry>")
    }

    /// The mark this lab's bridge puts on what it sends out of the uplink.
    pub fn own_mark(&self) -> u32 {
        bridge_mark(self.fx.net.bridge)
    }

    /// Sends `frame` from the container on host veth `from` and returns the
    /// translated output and the NAT port (or ICMP identifier) it got.
    pub fn open_flow(&self, from: u32, frame: &[u8]) -> (Vec<u8>, u16) {
        let run = self.fx.dp.run(from, frame);
        assert_eq!(
            run.ret,
            TC_ACT_REDIRECT,
            "SNAT of the flow's first packet failed: {}",
            self.dp().stats_summary()
        );
        let ip = Pkt(&run.out).ip();
        assert_eq!(ip.saddr(), UPLINK_IP, "first packet not masqueraded");
        let port = if ip.proto() == IPPROTO_ICMP {
            ip.icmp_id()
        } else {
            ip.sport()
        };
        (run.out, port)
    }

    /// Both conntrack entries of a flow `saddr:sport → daddr:dport` that
    /// was masqueraded to `UPLINK_IP:nat_port`, checked to mirror each
    /// other; returns (original, reply).
    #[allow(clippy::too_many_arguments)]
    pub fn assert_flow(
        &self,
        proto: u8,
        (saddr, sport): ([u8; 4], u16),
        (daddr, dport): ([u8; 4], u16),
        nat_port: u16,
        container: (u32, [u8; 6]),
    ) -> (NatEntry, NatEntry) {
        let okey = orig_key(proto, (saddr, sport), (daddr, dport));
        let rkey = reply_key(proto, (daddr, dport), nat_port);
        let orig = self.dp().nat_get(&okey).unwrap_or_else(|| {
            panic!(
                "no original entry {okey:?}; nat map: {:#?}",
                self.dp().nat_entries()
            )
        });
        let reply = self.dp().nat_get(&rkey).unwrap_or_else(|| {
            panic!(
                "no reply entry {rkey:?}; nat map: {:#?}",
                self.dp().nat_entries()
            )
        });
        assert_eq!(orig.addr, UPLINK_IP, "original entry: new source address");
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
        assert_eq!(orig.ifindex, 0, "original entry: ifindex");
        assert_eq!(orig.mac, [0; 6], "original entry: MAC");
        assert_eq!(
            reply.created_ns, orig.created_ns,
            "both entries are made at the same moment"
        );
        (orig, reply)
    }

    /// The nat map holds exactly `n` entries.
    pub fn assert_nat_len(&self, n: usize) {
        let entries = self.dp().nat_entries();
        assert_eq!(entries.len(), n, "nat map: {entries:#?}");
    }
}

/// Key of a flow's original direction: container → outside. For ICMP echo
/// `sport` is the identifier and `dport` 0.
pub fn orig_key(
    proto: u8,
    (saddr, sport): ([u8; 4], u16),
    (daddr, dport): ([u8; 4], u16),
) -> NatKey {
    NatKey {
        saddr,
        daddr,
        sport: sport.to_be(),
        dport: dport.to_be(),
        proto,
        dir: DIR_ORIGINAL,
        _pad: [0; 2],
    }
}

/// Key of the reply direction: outside (`remote`) → UPLINK_IP:`nat_port`.
pub fn reply_key(proto: u8, (raddr, rport): ([u8; 4], u16), nat_port: u16) -> NatKey {
    NatKey {
        saddr: raddr,
        daddr: UPLINK_IP,
        sport: rport.to_be(),
        dport: nat_port.to_be(),
        proto,
        dir: DIR_REPLY,
        _pad: [0; 2],
    }
}

// ---- frames to and from the outside ----------------------------------------

/// UDP `src:sport → dst:dport` as container A sends it (to the gateway MAC).
pub fn udp_out(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, src_mac: [u8; 6]) -> Vec<u8> {
    let l4 = udp(src, dst, sport, dport, b"masquerade me");
    ethernet(
        BRIDGE_MAC,
        src_mac,
        ETH_P_IPV4,
        &ipv4(src, dst, IPPROTO_UDP, &l4),
    )
}

/// TCP `src:sport → dst:dport` with `flags`, to the gateway MAC.
pub fn tcp_out(
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    flags: u8,
    src_mac: [u8; 6],
) -> Vec<u8> {
    let l4 = tcp(
        src,
        dst,
        sport,
        dport,
        flags,
        1000,
        0,
        b"GET / HTTP/1.0\r\n\r\n",
    );
    ethernet(
        BRIDGE_MAC,
        src_mac,
        ETH_P_IPV4,
        &ipv4(src, dst, IPPROTO_TCP, &l4),
    )
}

/// A packet from `src` arriving on the uplink for `dst` (MACs as the next
/// hop would send it).
pub fn inbound(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
    inbound_with(&Ipv4Opts::default(), src, dst, proto, l4)
}

pub fn inbound_with(opts: &Ipv4Opts, src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
    ethernet(
        UPLINK_MAC,
        NEXT_HOP_MAC,
        ETH_P_IPV4,
        &ipv4_with(opts, src, dst, proto, l4),
    )
}

/// Splits the L4 message `l4` into two IPv4 fragments after `split` bytes
/// (a multiple of 8): the first with MF set, the second at offset `split`.
pub fn fragments(
    opts: &Ipv4Opts,
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    l4: &[u8],
    split: usize,
) -> (Vec<u8>, Vec<u8>) {
    assert_eq!(split % 8, 0, "fragment offsets count 8-byte units");
    let first = Ipv4Opts {
        frag: IP_MF,
        ..opts.clone()
    };
    let later = Ipv4Opts {
        frag: (split / 8) as u16,
        ..opts.clone()
    };
    (
        ipv4_with(&first, src, dst, proto, &l4[..split]),
        ipv4_with(&later, src, dst, proto, &l4[split..]),
    )
}

// ---- looking at output frames ----------------------------------------------

/// An Ethernet frame carrying IPv4.
#[derive(Clone, Copy)]
pub struct Pkt<'a>(pub &'a [u8]);

impl<'a> Pkt<'a> {
    pub fn dst_mac(&self) -> [u8; 6] {
        self.0[0..6].try_into().unwrap()
    }
    pub fn src_mac(&self) -> [u8; 6] {
        self.0[6..12].try_into().unwrap()
    }
    pub fn ip(&self) -> Ip<'a> {
        assert_eq!(
            u16::from_be_bytes([self.0[12], self.0[13]]),
            ETH_P_IPV4,
            "not an IPv4 frame"
        );
        Ip(&self.0[ETH_HLEN..])
    }
}

/// An IPv4 packet (possibly a quote inside an ICMP error, cut short).
#[derive(Clone, Copy)]
pub struct Ip<'a>(pub &'a [u8]);

impl<'a> Ip<'a> {
    pub fn ihl(&self) -> usize {
        usize::from(self.0[0] & 0x0f) * 4
    }
    pub fn tot_len(&self) -> usize {
        usize::from(u16::from_be_bytes([self.0[2], self.0[3]]))
    }
    pub fn id(&self) -> u16 {
        u16::from_be_bytes([self.0[4], self.0[5]])
    }
    pub fn frag(&self) -> u16 {
        u16::from_be_bytes([self.0[6], self.0[7]])
    }
    pub fn ttl(&self) -> u8 {
        self.0[8]
    }
    pub fn proto(&self) -> u8 {
        self.0[9]
    }
    pub fn saddr(&self) -> [u8; 4] {
        self.0[12..16].try_into().unwrap()
    }
    pub fn daddr(&self) -> [u8; 4] {
        self.0[16..20].try_into().unwrap()
    }
    pub fn header(&self) -> &'a [u8] {
        &self.0[..self.ihl()]
    }
    /// Everything after the header, up to the total length (or the end of
    /// a quote).
    pub fn l4(&self) -> &'a [u8] {
        let end = self.tot_len().min(self.0.len());
        &self.0[self.ihl()..end]
    }
    fn u16_at(&self, off: usize) -> u16 {
        let l4 = self.l4();
        u16::from_be_bytes([l4[off], l4[off + 1]])
    }
    /// TCP/UDP source port.
    pub fn sport(&self) -> u16 {
        self.u16_at(0)
    }
    pub fn dport(&self) -> u16 {
        self.u16_at(2)
    }
    pub fn icmp_type(&self) -> u8 {
        self.l4()[0]
    }
    pub fn icmp_id(&self) -> u16 {
        self.u16_at(4)
    }
    /// The L4 checksum field (TCP at 16, UDP at 6, ICMP at 2).
    pub fn l4_checksum_field(&self) -> u16 {
        match self.proto() {
            IPPROTO_TCP => self.u16_at(16),
            IPPROTO_UDP => self.u16_at(6),
            _ => self.u16_at(2),
        }
    }
    /// The packet quoted by an ICMP error.
    pub fn quoted(&self) -> Ip<'a> {
        assert_eq!(self.proto(), IPPROTO_ICMP, "only ICMP errors quote");
        Ip(&self.l4()[8..])
    }

    pub fn assert_header_checksum(&self, what: &str) {
        assert_eq!(
            checksum(&[self.header()]),
            0,
            "{what}: IPv4 header checksum {:#06x} does not verify: {:02x?}",
            u16::from_be_bytes([self.0[10], self.0[11]]),
            self.header()
        );
    }

    /// IPv4 header checksum, then the L4 checksum over the whole L4 part
    /// (TCP and UDP with the pseudo header; a zero UDP checksum is "none"
    /// and must be asked for with [`Ip::assert_no_udp_checksum`]).
    pub fn assert_checksums(&self, what: &str) {
        self.assert_header_checksum(what);
        assert_l4_checksum(what, self.proto(), self.saddr(), self.daddr(), self.l4());
    }

    pub fn assert_no_udp_checksum(&self) {
        assert_eq!(self.proto(), IPPROTO_UDP);
        assert_eq!(self.l4_checksum_field(), 0, "UDP checksum must stay 0");
    }
}

/// Verifies the checksum of a whole L4 message (a reassembled datagram for
/// fragments).
pub fn assert_l4_checksum(what: &str, proto: u8, saddr: [u8; 4], daddr: [u8; 4], l4: &[u8]) {
    let sum = match proto {
        IPPROTO_TCP => checksum(&[&pseudo_header(saddr, daddr, proto, l4.len()), l4]),
        IPPROTO_UDP => {
            let field = u16::from_be_bytes([l4[6], l4[7]]);
            assert_ne!(field, 0, "{what}: UDP checksum unexpectedly absent (0)");
            checksum(&[&pseudo_header(saddr, daddr, proto, l4.len()), l4])
        }
        IPPROTO_ICMP => checksum(&[l4]),
        other => panic!("{what}: no checksum rule for protocol {other}"),
    };
    assert_eq!(
        sum,
        0,
        "{what}: protocol {proto} checksum does not verify over {} bytes",
        l4.len()
    );
}

/// Asserts that `run` turned `frame` (as it arrived on the uplink) into
/// the ICMP error `ty`/`code` a router would send: back to the frame's
/// source MAC and address, from the address it was sent to, quoting its
/// IPv4 header and first 8 payload bytes exactly, every checksum valid.
/// Returns the 4 bytes after the ICMP checksum (the next-hop MTU field).
pub fn assert_icmp_answer(run: &Run, frame: &[u8], ty: u8, code: u8) -> [u8; 4] {
    run.assert_verdict(TC_ACT_REDIRECT);
    let asked = Pkt(frame);
    let got = Pkt(&run.out);
    assert_eq!(
        got.dst_mac(),
        asked.src_mac(),
        "ICMP answer: back to the sender's MAC"
    );
    assert_eq!(
        got.src_mac(),
        asked.dst_mac(),
        "ICMP answer: from the MAC it reached"
    );
    let (asked, ip) = (asked.ip(), got.ip());
    assert_eq!(
        ip.saddr(),
        asked.daddr(),
        "ICMP answer: from the address asked for"
    );
    assert_eq!(ip.daddr(), asked.saddr(), "ICMP answer: to the sender");
    assert_eq!(ip.proto(), IPPROTO_ICMP);
    assert_eq!(ip.ttl(), 64);
    assert_eq!((ip.l4()[0], ip.l4()[1]), (ty, code), "ICMP type and code");
    let quoted = &asked.0[..asked.ihl() + 8];
    assert_eq!(
        &ip.l4()[8..],
        quoted,
        "the quote is the packet's header + 8 bytes"
    );
    assert_eq!(ip.tot_len(), 20 + 8 + quoted.len());
    assert_eq!(
        run.out.len(),
        ETH_HLEN + ip.tot_len(),
        "trimmed to the ICMP error"
    );
    ip.assert_checksums("ICMP answer");
    ip.l4()[4..8].try_into().unwrap()
}

pub fn in_nat_range(port: u16) -> bool {
    (NAT_PORTS.0..=NAT_PORTS.1).contains(&port)
}
