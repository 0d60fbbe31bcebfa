//! A container may only send as itself: its endpoint's MAC, IPv4 address
//! and IPv6 addresses (its own and its link-local one).
use aya_ebpf::programs::TcContext;
use ebridge_common::{endpoint::Endpoint, stats::*};
use network_types::eth::EthHdr;

use crate::{
    ipv4::ipv4_eq,
    ipv4::Frag,
    ipv6::{self, ipv6_eq, is_unspecified, IPPROTO_ICMPV6},
    nd,
    packet::{self, mac_eq, ETH_P_ARP, ETH_P_IPV4},
};

/// `Ok` when the frame's source identity is the endpoint's, otherwise the
/// drop reason.
#[inline(always)]
pub fn check_source(ctx: &TcContext, eth: *const EthHdr, ep: &Endpoint) -> Result<(), u32> {
    if !mac_eq(unsafe { &(*eth).src_addr }, &ep.mac) {
        return Err(DROP_SPOOFED_MAC);
    }
    match packet::ether_type(eth) {
        ETH_P_IPV4 => check_ipv4(ctx, ep),
        ETH_P_ARP => check_arp(ctx, ep),
        _ => Ok(()),
    }
}

/// `check_source` for an IPv6 frame (the endpoint program's IPv6 copy).
#[inline(always)]
pub fn check_source6(ctx: &TcContext, eth: *const EthHdr, ep: &Endpoint) -> Result<(), u32> {
    if !mac_eq(unsafe { &(*eth).src_addr }, &ep.mac) {
        return Err(DROP_SPOOFED_MAC);
    }
    match ipv6_source(ctx, ep) {
        0 => Ok(()),
        reason => Err(reason),
    }
}

/// 0 or the drop reason. Out of line: the extension header walk and the
/// ND checks get a frame of their own, off the chain the IPv6 NAT path's
/// frames are on (eBPF allows 512 bytes for a whole call chain).
#[inline(never)]
fn ipv6_source(ctx: &TcContext, ep: &Endpoint) -> u32 {
    match check_ipv6(ctx, ep) {
        Ok(()) => 0,
        Err(reason) => reason,
    }
}

#[inline(always)]
fn check_ipv4(ctx: &TcContext, ep: &Endpoint) -> Result<(), u32> {
    let ip = packet::ipv4(ctx).map_err(|_| DROP_TRUNCATED)?;
    if !ipv4_eq(unsafe { &(*ip).src_addr }, &ep.ipv4) {
        return Err(DROP_SPOOFED_IP);
    }
    Ok(())
}

#[inline(always)]
fn check_arp(ctx: &TcContext, ep: &Endpoint) -> Result<(), u32> {
    let arp = packet::arp(ctx).map_err(|_| DROP_TRUNCATED)?;
    let (sha, spa) = unsafe { (&(*arp).sha, &(*arp).spa) };
    // 0.0.0.0 is a legitimate sender address: RFC 5227 address probes.
    if !mac_eq(sha, &ep.mac) || !(ipv4_eq(spa, &ep.ipv4) || ipv4_eq(spa, &[0; 4])) {
        return Err(DROP_SPOOFED_ARP);
    }
    Ok(())
}

#[inline(always)]
fn check_ipv6(ctx: &TcContext, ep: &Endpoint) -> Result<(), u32> {
    // No IPv6 subnet: the container's IPv6 is off, so nothing it sends
    // over IPv6 is legitimate.
    if is_unspecified(&ep.ipv6) {
        return Err(DROP_IPV6_OFF);
    }
    let pkt = ipv6::parse(ctx)?;
    let unspecified = is_unspecified(&pkt.saddr);
    if !unspecified && !ipv6_eq(&pkt.saddr, &ep.ipv6) && !ipv6_eq(&pkt.saddr, &ep.ipv6_ll) {
        return Err(DROP_SPOOFED_IP6);
    }
    if pkt.proto == IPPROTO_ICMPV6 && pkt.frag != Frag::Later {
        return nd::check(ctx, &pkt, ep, unspecified);
    }
    if unspecified {
        return Err(DROP_SPOOFED_IP6);
    }
    Ok(())
}
