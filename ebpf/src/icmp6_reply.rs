//! What an IPv6 router answers when it cannot deliver a packet into a
//! container (RFC 4443): Time Exceeded when the hop limit runs out here,
//! Packet Too Big (with the container's MTU) when the packet does not fit
//! its link — IPv6 routers never fragment. As `icmp_reply.rs` does for
//! IPv4, the packet itself becomes the error: trimmed to what is quoted
//! (its IPv6 header, extension headers and 8 bytes of the upper layer),
//! new headers written in front, sent back out of the uplink. The error
//! is built in a per-CPU buffer: the IPv6 paths that call this have no
//! stack left for it.
use aya_ebpf::{
    btf_maps::PerCpuArray,
    helpers::generated::{
        bpf_check_mtu, bpf_csum_diff, bpf_skb_change_tail, bpf_skb_load_bytes, bpf_skb_store_bytes,
    },
    macros::btf_map,
    programs::TcContext,
    EbpfContext,
};
use ebridge_common::{config::BridgeConfig, stats::*};

use crate::{
    icmp_reply,
    ipv6::{self, Ipv6, IPPROTO_ICMPV6, IPV6_HDR_LEN},
    maps::CONFIG,
    packet::ETH_LEN,
    stats::drop,
};

const ICMPV6_TOO_BIG: u8 = 2;
const ICMPV6_TIME_EXCEEDED: u8 = 3;
/// `BPF_MTU_CHK_SEGS`: a GSO packet is too big only if its segments are.
const MTU_CHECK_SEGMENTS: u64 = 1;
const ICMP_LEN: usize = 8;
/// Longest quote: the IPv6 header, 80 bytes of extension headers and 8 of
/// the upper layer (far below the 1280 bytes an error may carry).
const QUOTE_MAX: usize = IPV6_HDR_LEN + 88;
const HEADERS_LEN: usize = ETH_LEN + IPV6_HDR_LEN + ICMP_LEN;

/// Why a packet for a container cannot be forwarded: `TOO_BIG` carries
/// the MTU of the container's link.
pub const TIME_EXCEEDED: u32 = 0;

/// Checks a packet about to be forwarded into the container behind host
/// veth `ifindex` as an IPv6 router would: `Some(TIME_EXCEEDED)`, or
/// `Some(mtu)` when too big. The usual packet costs two comparisons.
#[inline(always)]
pub fn refusal(ctx: &TcContext, cfg: &BridgeConfig, ip: &Ipv6, ifindex: u32) -> Option<u32> {
    if ip.hop_limit <= 1 {
        return Some(TIME_EXCEEDED);
    }
    if ctx.len() <= ETH_LEN as u32 + cfg.mtu {
        return None;
    }
    let mut mtu: u32 = 0;
    let rc = unsafe { bpf_check_mtu(ctx.as_ptr(), ifindex, &mut mtu, 0, MTU_CHECK_SEGMENTS) };
    // rc < 0: no such device; the delivery will fail and say so.
    (rc > 0 && mtu >= 1280).then_some(mtu)
}

struct Reply {
    bytes: [u8; HEADERS_LEN + QUOTE_MAX],
    /// The pseudo-header's length and next-header words.
    tail: [u8; 8],
}

#[btf_map(name = "icmp6_reply")]
static REPLY: PerCpuArray<Reply, 1> = PerCpuArray::new();

/// Turns the packet into the error `why` (`TIME_EXCEEDED` or an MTU) and
/// sends it back out of the device it arrived on. Never called for an
/// ICMPv6 error (RFC 4443 2.4 e).
#[inline(never)]
pub fn send(ctx: &TcContext, ip: &Ipv6, why: u32) -> i32 {
    let Some(cfg) = CONFIG.get(0) else {
        return drop(ctx, DROP_NO_CONFIG);
    };
    let reason = if why == TIME_EXCEEDED {
        FWD_ICMP_TIME_EXCEEDED
    } else {
        FWD_ICMP_FRAG_NEEDED
    };
    if let Err(reason) = build(ctx, cfg, ip, why) {
        return drop(ctx, reason);
    }
    icmp_reply::send_back(ctx, cfg, reason)
}

#[inline(always)]
fn build(ctx: &TcContext, cfg: &BridgeConfig, ip: &Ipv6, why: u32) -> Result<(), u32> {
    let fail = |_| DROP_REWRITE_FAILED;
    if ip.l4_off + 8 > ip.end {
        return Err(DROP_TRUNCATED);
    }
    // black_box: the verifier must see this bound for the helpers'
    // variable lengths, and the compiler would fold it away.
    let quote_len = core::hint::black_box(ip.l4_off - ETH_LEN + 8);
    if !(IPV6_HDR_LEN + 8..=QUOTE_MAX).contains(&quote_len) {
        return Err(DROP_MALFORMED_IP6);
    }
    // From the node: the address the packet was sent to, unless that is
    // a container's own (routed mode), then the uplink's.
    let from = if ipv6::in_subnet(&ip.daddr, cfg) {
        cfg.uplink_ipv6
    } else {
        ip.daddr
    };
    if ipv6::is_unspecified(&from) {
        return Err(DROP_NO_UPLINK_IPV6);
    }
    let Some(r) = REPLY.get_ptr_mut(0).map(|r| unsafe { &mut *r }) else {
        return Err(DROP_NO_CONFIG);
    };
    let b = &mut r.bytes;
    let macs: [u8; 12] = ctx.load(0).map_err(fail)?;
    b[0..6].copy_from_slice(&macs[6..12]);
    b[6..12].copy_from_slice(&macs[0..6]);
    b[12] = 0x86;
    b[13] = 0xdd;
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
    let iph = ETH_LEN;
    let payload = (ICMP_LEN + quote_len) as u16;
    b[iph..iph + 4].copy_from_slice(&[0x60, 0, 0, 0]);
    b[iph + 4..iph + 6].copy_from_slice(&payload.to_be_bytes());
    b[iph + 6] = IPPROTO_ICMPV6;
    b[iph + 7] = 64;
    b[iph + 8..iph + 24].copy_from_slice(&from);
    b[iph + 24..iph + 40].copy_from_slice(&ip.saddr);
    let icmp = iph + IPV6_HDR_LEN;
    b[icmp..icmp + 8].copy_from_slice(&[0; 8]);
    if why == TIME_EXCEEDED {
        b[icmp] = ICMPV6_TIME_EXCEEDED;
    } else {
        b[icmp] = ICMPV6_TOO_BIG;
        b[icmp + 4..icmp + 8].copy_from_slice(&why.to_be_bytes());
    }
    // The checksum covers the pseudo-header: both addresses (where they
    // are in the header), the length and the next header.
    r.tail = [0, 0, 0, 0, 0, 0, 0, IPPROTO_ICMPV6];
    r.tail[2..4].copy_from_slice(&payload.to_be_bytes());
    let addrs = sum(unsafe { r.bytes.as_mut_ptr().add(iph + 8) }, 32, 0);
    let pseudo = sum(r.tail.as_mut_ptr(), 8, addrs);
    let total = sum(
        unsafe { r.bytes.as_mut_ptr().add(icmp) },
        (ICMP_LEN + quote_len) as u32,
        pseudo,
    );
    let check = fold(total);
    r.bytes[icmp + 2..icmp + 4].copy_from_slice(&check.to_ne_bytes());

    let new_len = (HEADERS_LEN + quote_len) as u32;
    if unsafe { bpf_skb_change_tail(ctx.as_ptr() as *mut _, new_len, 0) } != 0 {
        return Err(DROP_REWRITE_FAILED);
    }
    let rc = unsafe {
        bpf_skb_store_bytes(
            ctx.as_ptr() as *mut _,
            0,
            r.bytes.as_ptr() as *const _,
            new_len,
            0,
        )
    };
    if rc != 0 {
        return Err(DROP_REWRITE_FAILED);
    }
    Ok(())
}

/// One's complement sum of `len` bytes (a multiple of 4) at `at`, on top
/// of `seed`.
#[inline(always)]
fn sum(at: *mut u8, len: u32, seed: u32) -> u32 {
    unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, at as *mut u32, len, seed) as u32 }
}

/// The folded, complemented checksum as it goes into the header (network
/// order bytes, so a native-endian store).
#[inline(always)]
fn fold(sum: u32) -> u16 {
    let mut s = (sum & 0xffff) + (sum >> 16);
    s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}
