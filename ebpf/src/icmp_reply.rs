//! What the kernel's forwarding would answer when it cannot deliver a
//! packet to a container: time-exceeded when the TTL runs out here, and
//! fragmentation-needed (with the container's MTU) when a DF packet is too
//! big for the container's link. The packet itself becomes the ICMP error:
//! trimmed to its IPv4 header and first 8 payload bytes (the quote), new
//! headers written in front, and sent back out of the device it came in
//! on. Only packets ebridge would forward get here; the node's own traffic
//! goes to its stack whatever its TTL or size.
use aya_ebpf::{
    bindings::TC_ACT_REDIRECT,
    helpers::generated::{
        bpf_check_mtu, bpf_csum_diff, bpf_redirect, bpf_skb_change_tail, bpf_skb_load_bytes,
        bpf_skb_store_bytes,
    },
    programs::TcContext,
    EbpfContext,
};
use ebridge_common::{
    config::BridgeConfig,
    nat::{bridge_mark, IPPROTO_ICMP},
    stats::*,
};

use crate::{
    ipv4::Ipv4,
    l4::{ICMP_DEST_UNREACH, ICMP_TIME_EXCEEDED},
    packet::ETH_LEN,
    stats::{count, drop},
};

const ICMP_FRAG_NEEDED: u8 = 4;
/// `BPF_MTU_CHK_SEGS`: a GSO packet is too big only if its segments are.
const MTU_CHECK_SEGMENTS: u64 = 1;
const IPV4_LEN: usize = 20;
const ICMP_LEN: usize = 8;
/// Longest quote: a 60-byte IPv4 header and 8 bytes of what follows.
const QUOTE_MAX: usize = 68;
const HEADERS_LEN: usize = ETH_LEN + IPV4_LEN + ICMP_LEN;

/// Why a packet for a container cannot be forwarded.
#[derive(Clone, Copy)]
pub enum Refusal {
    TimeExceeded,
    /// The MTU of the container's link.
    FragNeeded(u32),
}

/// Checks a packet about to be forwarded into the container behind host
/// veth `ifindex` the way `ip_forward` would. The usual packet costs one
/// comparison; only one longer than the bridge MTU asks the kernel, which
/// knows whether a GSO packet's segments fit.
#[inline(always)]
pub fn refusal(ctx: &TcContext, cfg: &BridgeConfig, ip: &Ipv4, ifindex: u32) -> Option<Refusal> {
    if ip.ttl <= 1 {
        return Some(Refusal::TimeExceeded);
    }
    if !ip.df || ctx.len() <= ETH_LEN as u32 + cfg.mtu {
        return None;
    }
    let mut mtu: u32 = 0;
    let rc = unsafe { bpf_check_mtu(ctx.as_ptr(), ifindex, &mut mtu, 0, MTU_CHECK_SEGMENTS) };
    match rc {
        0 => None,
        rc if rc > 0 => Some(Refusal::FragNeeded(mtu)),
        // No such device: the delivery will fail and say so.
        _ => None,
    }
}

/// The ICMP error as it will be written over the packet.
struct Reply {
    bytes: [u8; HEADERS_LEN + QUOTE_MAX],
}

/// Turns the packet into the ICMP error `why` and sends it back out of the
/// device it arrived on, from the address it was sent to. Callers only
/// refuse TCP, UDP and ICMP echo, never an ICMP error (RFC 1122 3.2.2).
#[inline(always)]
pub fn send(ctx: &TcContext, cfg: &BridgeConfig, ip: &Ipv4, why: Refusal) -> i32 {
    let reason = match why {
        Refusal::TimeExceeded => FWD_ICMP_TIME_EXCEEDED,
        Refusal::FragNeeded(_) => FWD_ICMP_FRAG_NEEDED,
    };
    if let Err(reason) = build(ctx, ip, why) {
        return drop(ctx, reason);
    }
    send_back(ctx, cfg, reason)
}

/// Sends the error now written over the packet back out of the device
/// it arrived on, counted under `reason` (both families).
#[inline(always)]
pub fn send_back(ctx: &TcContext, cfg: &BridgeConfig, reason: u32) -> i32 {
    // Ours, for the uplink's egress programs: not a node flow to hold.
    ctx.set_mark(bridge_mark(cfg.bridge_ifindex));
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let rc = unsafe { bpf_redirect(ifindex, 0) };
    if rc != i64::from(TC_ACT_REDIRECT) {
        return drop(ctx, DROP_REDIRECT_FAILED);
    }
    count(ctx, reason);
    TC_ACT_REDIRECT
}

#[inline(always)]
fn build(ctx: &TcContext, ip: &Ipv4, why: Refusal) -> Result<(), u32> {
    let fail = |_| DROP_REWRITE_FAILED;
    // The IPv4 header and 8 bytes of what follows, all within the packet.
    if ip.l4_off + 8 > ip.end {
        return Err(DROP_TRUNCATED);
    }
    // black_box: the compiler knows the bound parse() checked and would
    // drop this test, which the verifier needs to see for the helpers'
    // variable lengths.
    let quote_len = core::hint::black_box(ip.l4_off - ETH_LEN + 8);
    if !(IPV4_LEN + 8..=QUOTE_MAX).contains(&quote_len) {
        return Err(DROP_MALFORMED_IP);
    }
    let mut r = Reply {
        bytes: [0; HEADERS_LEN + QUOTE_MAX],
    };
    let b = &mut r.bytes;
    // Ethernet: back where it came from.
    let macs: [u8; 12] = ctx.load(0).map_err(fail)?;
    b[0..6].copy_from_slice(&macs[6..12]);
    b[6..12].copy_from_slice(&macs[0..6]);
    b[12] = 0x08;
    let rc = unsafe {
        bpf_skb_load_bytes(
            ctx.as_ptr(),
            ETH_LEN as u32,
            b.as_mut_ptr().add(HEADERS_LEN) as *mut _,
            quote_len as u32,
        )
    };
    if rc != 0 {
        return Err(DROP_REWRITE_FAILED);
    }
    // IPv4: from the address the packet was sent to, as the kernel's
    // icmp_send() answers for the node.
    let iph = ETH_LEN;
    let tot_len = (IPV4_LEN + ICMP_LEN + quote_len) as u16;
    b[iph] = 0x45;
    b[iph + 1] = 0xc0;
    b[iph + 2..iph + 4].copy_from_slice(&tot_len.to_be_bytes());
    b[iph + 8] = 64;
    b[iph + 9] = IPPROTO_ICMP;
    b[iph + 12..iph + 16].copy_from_slice(&ip.daddr);
    b[iph + 16..iph + 20].copy_from_slice(&ip.saddr);
    let icmp = ETH_LEN + IPV4_LEN;
    match why {
        Refusal::TimeExceeded => b[icmp] = ICMP_TIME_EXCEEDED,
        Refusal::FragNeeded(mtu) => {
            b[icmp] = ICMP_DEST_UNREACH;
            b[icmp + 1] = ICMP_FRAG_NEEDED;
            b[icmp + 6..icmp + 8].copy_from_slice(&(mtu as u16).to_be_bytes());
        }
    }
    let ip_sum = csum(unsafe { b.as_mut_ptr().add(iph) }, IPV4_LEN as u32);
    b[iph + 10..iph + 12].copy_from_slice(&ip_sum.to_ne_bytes());
    let icmp_sum = csum(
        unsafe { b.as_mut_ptr().add(icmp) },
        (ICMP_LEN + quote_len) as u32,
    );
    b[icmp + 2..icmp + 4].copy_from_slice(&icmp_sum.to_ne_bytes());

    let new_len = (HEADERS_LEN + quote_len) as u32;
    if unsafe { bpf_skb_change_tail(ctx.as_ptr() as *mut _, new_len, 0) } != 0 {
        return Err(DROP_REWRITE_FAILED);
    }
    let rc = unsafe {
        bpf_skb_store_bytes(
            ctx.as_ptr() as *mut _,
            0,
            b.as_ptr() as *const _,
            new_len,
            0,
        )
    };
    if rc != 0 {
        return Err(DROP_REWRITE_FAILED);
    }
    Ok(())
}

/// The Internet checksum of `len` bytes (a multiple of 4) at `at`, as it
/// goes into the header (network order bytes, so native-endian store).
#[inline(always)]
fn csum(at: *mut u8, len: u32) -> u16 {
    let sum = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, at as *mut u32, len, 0) } as u32;
    let mut s = (sum & 0xffff) + (sum >> 16);
    s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}
