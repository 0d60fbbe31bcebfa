//! RFC 5508 for IPv6: an ICMPv6 error (packet too big, time exceeded,
//! destination unreachable, parameter problem) quotes the packet that
//! caused it, so NAT translates the quote as well as the outer header —
//! otherwise path MTU discovery (packet too big is IPv6's only way to
//! learn it) and traceroute break behind the NAT. The ICMPv6 checksum
//! (which covers the pseudo-header) follows every change; the quote's own
//! transport checksum is left as is, as for IPv4.
use aya_ebpf::programs::TcContext;
use ebridge_common::{
    config::BridgeConfig,
    nat::{
        NatKeyOf, DIR_ORIGINAL, DIR_REPLY, IPPROTO_TCP, IPPROTO_UDP, OWNER_CONTAINER, OWNER_NODE,
    },
    stats::*,
};
use network_types::ip::Ipv6Hdr;

use crate::{
    ipv4::L4Csum,
    ipv6::{
        self, Ipv6, IP6_DADDR_OFF, IP6_SADDR_OFF, IPPROTO_ICMPV6, IPV6_HDR_LEN, NEXTHDR_FRAGMENT,
    },
    l4::{IcmpHead, ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST},
    maps::NAT6,
    packet::header_at,
    publish,
    revnat::{Delivery, Outcome},
};

/// The packet an ICMPv6 error quotes: its fixed header, then the upper
/// layer, or a fragment header before it (a datagram's first fragment:
/// Packet Too Big about fragmented UDP quotes one). Other extension
/// headers, or a later fragment, are not translated.
struct Quote {
    ip_off: usize,
    proto: u8,
    saddr: [u8; 16],
    daddr: [u8; 16],
    sport: u16,
    dport: u16,
    sport_off: usize,
    dport_off: usize,
}

#[repr(C)]
struct Ports {
    src: u16,
    dst: u16,
}

#[inline(always)]
fn parse_quote(ctx: &TcContext, ip: &Ipv6) -> Result<Quote, u32> {
    let ip_off = ip.l4_off + 8;
    let inner = header_at::<Ipv6Hdr>(ctx, ip_off).map_err(|_| DROP_TRUNCATED)?;
    let inner = unsafe { &*inner };
    let (proto, l4_off) = quoted_upper_layer(ctx, inner.next_hdr, ip_off + IPV6_HDR_LEN)?;
    let (sport, dport, sport_off, dport_off) = match proto {
        // Within the error's payload: bytes past it are not the quote's
        // (and the checksum does not cover them).
        IPPROTO_TCP | IPPROTO_UDP if l4_off + 4 > ip.end => return Err(DROP_TRUNCATED),
        IPPROTO_TCP | IPPROTO_UDP => {
            let p = header_at::<Ports>(ctx, l4_off).map_err(|_| DROP_TRUNCATED)?;
            let p = unsafe { &*p };
            (p.src, p.dst, l4_off, l4_off + 2)
        }
        IPPROTO_ICMPV6 if l4_off + 8 > ip.end => return Err(DROP_TRUNCATED),
        IPPROTO_ICMPV6 => {
            let icmp = header_at::<IcmpHead>(ctx, l4_off).map_err(|_| DROP_TRUNCATED)?;
            let icmp = unsafe { &*icmp };
            match icmp.ty {
                ICMPV6_ECHO_REQUEST => (icmp.id, 0, l4_off + 4, l4_off + 4),
                ICMPV6_ECHO_REPLY => (0, icmp.id, l4_off + 4, l4_off + 4),
                _ => return Err(DROP_NAT_UNSUPPORTED),
            }
        }
        _ => return Err(DROP_NAT_UNSUPPORTED),
    };
    Ok(Quote {
        ip_off,
        proto,
        saddr: inner.src_addr,
        daddr: inner.dst_addr,
        sport,
        dport,
        sport_off,
        dport_off,
    })
}

/// The quoted packet's upper-layer protocol and where it starts, past a
/// first fragment's fragment header.
#[inline(always)]
fn quoted_upper_layer(ctx: &TcContext, next: u8, off: usize) -> Result<(u8, usize), u32> {
    if next != NEXTHDR_FRAGMENT {
        return Ok((next, off));
    }
    let f = header_at::<[u8; 4]>(ctx, off).map_err(|_| DROP_TRUNCATED)?;
    let f = unsafe { &*f };
    if u16::from_be_bytes([f[2], f[3]]) & 0xfff8 != 0 {
        // A later fragment: no ports to find its flow by.
        return Err(DROP_NAT_UNSUPPORTED);
    }
    Ok((f[0], off + 8))
}

/// An error from outside about a masqueraded or published flow: the
/// quote names a node address and port; both, and the outer destination,
/// become the container's again. An error about a node flow goes to the
/// node (its port put back if it was moved), one about another bridge's
/// flow on to that bridge's program, anything else to the host.
#[inline(always)]
pub fn to_container(ctx: &TcContext, cfg: &BridgeConfig, ip: &Ipv6) -> Result<Outcome, u32> {
    let Ok(q) = parse_quote(ctx, ip) else {
        return Ok(Outcome::Pass(PASS_UPLINK_HOST));
    };
    if !ipv6::ipv6_eq(&q.saddr, &cfg.uplink_ipv6) && !publish::is_node_addr(&q.saddr) {
        return Ok(Outcome::Pass(PASS_UPLINK_HOST));
    }
    let key = NatKeyOf {
        saddr: q.daddr,
        daddr: q.saddr,
        sport: q.dport,
        dport: q.sport,
        proto: q.proto,
        dir: DIR_REPLY,
        _pad: [0; 2],
    };
    let Some(entry) = NAT6.get_ptr(key) else {
        return Ok(Outcome::Pass(PASS_UPLINK_HOST));
    };
    let entry = unsafe { &*entry };
    let icmp_csum = ip.l4_off + 2;
    match entry.owner {
        OWNER_CONTAINER => {}
        // The node's flow: still addressed to the node, only the port it
        // quotes was moved.
        OWNER_NODE => {
            rewrite_port(ctx, icmp_csum, q.sport_off, q.sport, entry.port)?;
            return Ok(Outcome::Pass(PASS_NODE_FLOW_IN));
        }
        _ => return Ok(Outcome::Pass(PASS_OTHER_BRIDGE)),
    }
    ipv6::set_addr(
        ctx,
        IP6_DADDR_OFF,
        &ip.daddr,
        &entry.addr,
        L4Csum::Pseudo {
            off: icmp_csum,
            udp: false,
        },
    )?;
    rewrite_quote(ctx, icmp_csum, q.ip_off + 8, &q.saddr, &entry.addr)?;
    rewrite_port(ctx, icmp_csum, q.sport_off, q.sport, entry.port)?;
    let to = Delivery {
        ifindex: entry.ifindex,
        mac: entry.mac,
    };
    Ok(Outcome::Deliver(to, FWD_REVNAT_ICMP_ERROR))
}

/// An error a container sends about a packet of a masqueraded flow (port
/// unreachable for a late reply, say): the quote names the container;
/// both it and the outer source become the uplink address and NAT port.
#[inline(always)]
pub fn from_container(ctx: &TcContext, ip: &Ipv6) -> Result<(), u32> {
    let q = parse_quote(ctx, ip).map_err(|_| DROP_ICMP_ERROR_UNTRACKED)?;
    if !ipv6::ipv6_eq(&q.daddr, &ip.saddr) {
        return Err(DROP_ICMP_ERROR_UNTRACKED);
    }
    let key = NatKeyOf {
        saddr: q.daddr,
        daddr: q.saddr,
        sport: q.dport,
        dport: q.sport,
        proto: q.proto,
        dir: DIR_ORIGINAL,
        _pad: [0; 2],
    };
    let Some(entry) = NAT6.get_ptr(key) else {
        return Err(DROP_ICMP_ERROR_UNTRACKED);
    };
    let entry = unsafe { &*entry };
    let icmp_csum = ip.l4_off + 2;
    ipv6::set_addr(
        ctx,
        IP6_SADDR_OFF,
        &ip.saddr,
        &entry.addr,
        L4Csum::Pseudo {
            off: icmp_csum,
            udp: false,
        },
    )?;
    rewrite_quote(ctx, icmp_csum, q.ip_off + 24, &q.daddr, &entry.addr)?;
    rewrite_port(ctx, icmp_csum, q.dport_off, q.dport, entry.port)
}

/// One address of the quote: bytes inside the ICMPv6 message, so each
/// changed word is mirrored in its checksum (no pseudo-header part).
#[inline(always)]
fn rewrite_quote(
    ctx: &TcContext,
    icmp_csum: usize,
    addr_off: usize,
    old: &[u8; 16],
    new: &[u8; 16],
) -> Result<(), u32> {
    for i in 0..4 {
        let at = i * 4;
        let from = u32::from_ne_bytes([old[at], old[at + 1], old[at + 2], old[at + 3]]);
        let to = u32::from_ne_bytes([new[at], new[at + 1], new[at + 2], new[at + 3]]);
        if from != to {
            ctx.l4_csum_replace(icmp_csum, u64::from(from), u64::from(to), 4)
                .map_err(|_| DROP_REWRITE_FAILED)?;
        }
    }
    ctx.store(addr_off, new, 0).map_err(|_| DROP_REWRITE_FAILED)
}

#[inline(always)]
fn rewrite_port(
    ctx: &TcContext,
    icmp_csum: usize,
    off: usize,
    old: u16,
    new: u16,
) -> Result<(), u32> {
    if old == new {
        return Ok(());
    }
    ctx.l4_csum_replace(icmp_csum, u64::from(old), u64::from(new), 2)
        .map_err(|_| DROP_REWRITE_FAILED)?;
    ctx.store(off, &new, 0).map_err(|_| DROP_REWRITE_FAILED)
}
