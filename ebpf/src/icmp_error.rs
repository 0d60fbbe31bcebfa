//! RFC 5508: an ICMP error quotes the packet that caused it, so NAT must
//! translate the quoted header as well as the outer one — otherwise path
//! MTU discovery and traceroute break behind the NAT. Both the quote's IPv4
//! checksum and the ICMP checksum are fixed; the quote's own L4 checksum is
//! left as is (no receiver checks it, and it is often cut off).
use aya_ebpf::programs::TcContext;
use ebridge_common::{
    config::BridgeConfig,
    nat::{
        NatKey, DIR_ORIGINAL, DIR_REPLY, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, OWNER_CONTAINER,
        OWNER_NODE,
    },
    stats::*,
};
use network_types::ip::Ipv4Hdr;

use crate::{
    ipv4::{self, ipv4_eq, Ipv4, L4Csum, IP_DADDR_OFF, IP_SADDR_OFF},
    l4::{IcmpHead, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST},
    maps::NAT,
    packet::header_at,
    publish,
    revnat::{Delivery, Outcome},
};

/// The quoted packet inside an ICMP error.
struct Quote {
    ip_off: usize,
    proto: u8,
    saddr: [u8; 4],
    daddr: [u8; 4],
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
fn parse_quote(ctx: &TcContext, ip: &Ipv4) -> Result<Quote, u32> {
    let ip_off = ip.l4_off + 8;
    let inner = header_at::<Ipv4Hdr>(ctx, ip_off).map_err(|_| DROP_TRUNCATED)?;
    let inner = unsafe { &*inner };
    let ihl = ((inner.vihl & 0x0f) as usize) * 4;
    if ihl < 20 {
        return Err(DROP_MALFORMED_IP);
    }
    let l4_off = ip_off + ihl;
    let (sport, dport, sport_off, dport_off) = match inner.proto {
        // Within the error's payload: bytes past it are not the quote's
        // (and the checksum does not cover them).
        IPPROTO_TCP | IPPROTO_UDP if l4_off + 4 > ip.end => return Err(DROP_TRUNCATED),
        IPPROTO_TCP | IPPROTO_UDP => {
            let p = header_at::<Ports>(ctx, l4_off).map_err(|_| DROP_TRUNCATED)?;
            let p = unsafe { &*p };
            (p.src, p.dst, l4_off, l4_off + 2)
        }
        IPPROTO_ICMP if l4_off + 8 > ip.end => return Err(DROP_TRUNCATED),
        IPPROTO_ICMP => {
            let icmp = header_at::<IcmpHead>(ctx, l4_off).map_err(|_| DROP_TRUNCATED)?;
            let icmp = unsafe { &*icmp };
            match icmp.ty {
                ICMP_ECHO_REQUEST => (icmp.id, 0, l4_off + 4, l4_off + 4),
                ICMP_ECHO_REPLY => (0, icmp.id, l4_off + 4, l4_off + 4),
                _ => return Err(DROP_NAT_UNSUPPORTED),
            }
        }
        _ => return Err(DROP_NAT_UNSUPPORTED),
    };
    Ok(Quote {
        ip_off,
        proto: inner.proto,
        saddr: inner.src_addr,
        daddr: inner.dst_addr,
        sport,
        dport,
        sport_off,
        dport_off,
    })
}

/// An error from outside about a masqueraded packet: the quote names the
/// uplink address and NAT port; both become the container's again. An
/// error about a node flow goes to the node (its port put back if it was
/// moved), one about another bridge's flow on to that bridge's program.
#[inline(always)]
pub fn to_container(ctx: &TcContext, cfg: &BridgeConfig, ip: &Ipv4) -> Result<Outcome, u32> {
    let Ok(q) = parse_quote(ctx, ip) else {
        return Ok(Outcome::Pass(PASS_UPLINK_HOST));
    };
    // Masqueraded flows quote the uplink address; published ones may quote
    // any node address they were reached on.
    if !ipv4_eq(&q.saddr, &cfg.uplink_ipv4) && !publish::is_node_addr(&q.saddr) {
        return Ok(Outcome::Pass(PASS_UPLINK_HOST));
    }
    let key = NatKey {
        saddr: q.daddr,
        daddr: q.saddr,
        sport: q.dport,
        dport: q.sport,
        proto: q.proto,
        dir: DIR_REPLY,
        _pad: [0; 2],
    };
    let Some(entry) = NAT.get_ptr(key) else {
        return Ok(Outcome::Pass(PASS_UPLINK_HOST));
    };
    let (addr, port, ifindex, mac, owner) = unsafe {
        (
            (*entry).addr,
            (*entry).port,
            (*entry).ifindex,
            (*entry).mac,
            (*entry).owner,
        )
    };
    let node = match owner {
        OWNER_CONTAINER => false,
        OWNER_NODE => true,
        _ => return Ok(Outcome::Pass(PASS_OTHER_BRIDGE)),
    };
    if node && port == q.sport {
        return Ok(Outcome::Pass(PASS_NODE_FLOW_IN));
    }
    // A node flow's error stays addressed to the node; only the port it
    // quotes was moved.
    let to = if node { q.saddr } else { addr };
    if !node {
        ipv4::set_addr(ctx, IP_DADDR_OFF, ip.daddr, addr, L4Csum::None)?;
    }
    rewrite_quote(
        ctx,
        ip.l4_off + 2,
        q.ip_off,
        q.ip_off + 12,
        q.saddr,
        to,
        q.sport_off,
        q.sport,
        port,
    )?;
    if node {
        return Ok(Outcome::Pass(PASS_NODE_FLOW_IN));
    }
    Ok(Outcome::Deliver(
        Delivery { ifindex, mac },
        FWD_REVNAT_ICMP_ERROR,
    ))
}

/// An error a container sends about a packet of a masqueraded flow (say,
/// port unreachable for a late reply): the quote names the container; both
/// it and the outer source become the uplink address and NAT port.
#[inline(always)]
pub fn from_container(ctx: &TcContext, _cfg: &BridgeConfig, ip: &Ipv4) -> Result<(), u32> {
    let q = parse_quote(ctx, ip).map_err(|_| DROP_ICMP_ERROR_UNTRACKED)?;
    if !ipv4_eq(&q.daddr, &ip.saddr) {
        return Err(DROP_ICMP_ERROR_UNTRACKED);
    }
    let key = NatKey {
        saddr: q.daddr,
        daddr: q.saddr,
        sport: q.dport,
        dport: q.sport,
        proto: q.proto,
        dir: DIR_ORIGINAL,
        _pad: [0; 2],
    };
    let Some(entry) = NAT.get_ptr(key) else {
        return Err(DROP_ICMP_ERROR_UNTRACKED);
    };
    let (addr, port) = unsafe { ((*entry).addr, (*entry).port) };
    ipv4::set_addr(ctx, IP_SADDR_OFF, ip.saddr, addr, L4Csum::None)?;
    rewrite_quote(
        ctx,
        ip.l4_off + 2,
        q.ip_off,
        q.ip_off + 16,
        q.daddr,
        addr,
        q.dport_off,
        q.dport,
        port,
    )
}

/// Rewrites one address and one port of the quote. Every changed byte is
/// inside the ICMP message, so each change is mirrored in its checksum,
/// including the change the quote's own header checksum goes through.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn rewrite_quote(
    ctx: &TcContext,
    icmp_csum_off: usize,
    quote_off: usize,
    addr_off: usize,
    old_addr: [u8; 4],
    new_addr: [u8; 4],
    port_off: usize,
    old_port: u16,
    new_port: u16,
) -> Result<(), u32> {
    let fail = |_| DROP_REWRITE_FAILED;
    let (from, to) = (
        u32::from_ne_bytes(old_addr) as u64,
        u32::from_ne_bytes(new_addr) as u64,
    );
    let quote_csum_off = quote_off + 10;
    let before: u16 = ctx.load(quote_csum_off).map_err(fail)?;
    ctx.l3_csum_replace(quote_csum_off, from, to, 4)
        .map_err(fail)?;
    let after: u16 = ctx.load(quote_csum_off).map_err(fail)?;
    ctx.l4_csum_replace(icmp_csum_off, before as u64, after as u64, 2)
        .map_err(fail)?;
    ctx.l4_csum_replace(icmp_csum_off, from, to, 4)
        .map_err(fail)?;
    ctx.store(addr_off, &new_addr, 0).map_err(fail)?;
    if old_port != new_port {
        ctx.l4_csum_replace(icmp_csum_off, old_port as u64, new_port as u64, 2)
            .map_err(fail)?;
        ctx.store(port_off, &new_port, 0).map_err(fail)?;
    }
    Ok(())
}
