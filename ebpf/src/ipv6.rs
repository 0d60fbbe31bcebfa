//! IPv6 header parsing: the fixed header, then the extension header chain
//! (hop-by-hop, routing, destination options, fragment, AH) walked with a
//! bounded loop to the upper-layer header; address tests.
use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    programs::TcContext,
};
use ebridge_common::{
    config::BridgeConfig,
    nat::{IPPROTO_TCP, IPPROTO_UDP},
    stats::*,
};

use crate::{
    ipv4::{Frag, L4Csum},
    packet::{self, header_at, Frame, ETH_LEN},
};

pub const IPV6_HDR_LEN: usize = 40;
pub const IP6_HOP_LIMIT_OFF: usize = ETH_LEN + 7;
pub const IP6_SADDR_OFF: usize = ETH_LEN + 8;
pub const IP6_DADDR_OFF: usize = ETH_LEN + 24;

pub const NEXTHDR_HOP: u8 = 0;
pub const NEXTHDR_ROUTING: u8 = 43;
pub const NEXTHDR_FRAGMENT: u8 = 44;
pub const NEXTHDR_AUTH: u8 = 51;
pub const NEXTHDR_DEST: u8 = 60;
pub const IPPROTO_ICMPV6: u8 = 58;

/// Extension headers walked at most. Real traffic carries one or two; a
/// longer chain is refused rather than followed.
const MAX_EXT_HEADERS: usize = 8;
/// No extension header chain reaches past this offset (a 1500-byte frame).
const MAX_CHAIN_END: usize = 1514;

#[derive(Clone, Copy)]
pub struct Ipv6 {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub hop_limit: u8,
    /// The upper-layer protocol the chain ends in.
    pub proto: u8,
    /// Where the upper-layer header starts (for `Frag::Later`, where the
    /// fragment's data does).
    pub l4_off: usize,
    pub frag: Frag,
    /// The fragment header's identification (network order), when there
    /// is one.
    pub frag_id: u32,
    /// The fragment header's next header: the same in every fragment of a
    /// datagram (unlike `proto`, which a later fragment cannot reach).
    pub frag_next: u8,
    /// Offset just past the payload (payload length): nothing is read
    /// beyond it.
    pub end: usize,
}

#[repr(C)]
struct ExtHdr {
    next: u8,
    len: u8,
}

#[repr(C)]
struct FragHdr {
    next: u8,
    _reserved: u8,
    offset_flags: [u8; 2],
    id: [u8; 4],
}

/// Parses the IPv6 header after Ethernet and walks its extension headers,
/// rejecting a version other than 6, a payload length of zero (jumbograms)
/// or beyond the frame, and a chain that runs past the payload or is
/// longer than `MAX_EXT_HEADERS`.
#[inline(always)]
pub fn parse(ctx: &impl Frame) -> Result<Ipv6, u32> {
    let mut pkt = Ipv6 {
        saddr: [0; 16],
        daddr: [0; 16],
        hop_limit: 0,
        proto: 0,
        l4_off: 0,
        frag: Frag::Whole,
        frag_id: 0,
        frag_next: 0,
        end: 0,
    };
    parse_into(ctx, &mut pkt)?;
    Ok(pkt)
}

/// `parse` into `pkt` where it already lives (a per-CPU work area on
/// paths whose stack is tight).
#[inline(always)]
pub fn parse_into(ctx: &impl Frame, pkt: &mut Ipv6) -> Result<(), u32> {
    let ip = packet::ipv6(ctx).map_err(|_| DROP_TRUNCATED)?;
    let ip = unsafe { &*ip };
    if ip.vcf[0] >> 4 != 6 {
        return Err(DROP_MALFORMED_IP6);
    }
    let payload = u16::from_be_bytes(ip.payload_len) as usize;
    let end = ETH_LEN + IPV6_HDR_LEN + payload;
    if payload == 0 || end > ctx.frame_len() as usize {
        return Err(DROP_MALFORMED_IP6);
    }
    pkt.saddr = ip.src_addr;
    pkt.daddr = ip.dst_addr;
    pkt.hop_limit = ip.hop_limit;
    pkt.proto = ip.next_hdr;
    pkt.l4_off = ETH_LEN + IPV6_HDR_LEN;
    pkt.frag = Frag::Whole;
    pkt.frag_id = 0;
    pkt.frag_next = 0;
    pkt.end = end;
    for _ in 0..MAX_EXT_HEADERS {
        if !skip_extension(ctx, pkt)? {
            return Ok(());
        }
        if pkt.l4_off > end || pkt.l4_off > MAX_CHAIN_END {
            return Err(DROP_MALFORMED_IP6);
        }
    }
    Err(DROP_MALFORMED_IP6)
}

/// One step of the chain: skips the extension header at `l4_off`, if that
/// is one. False when `proto` is already the upper layer (or a later
/// fragment, whose data has no headers).
#[inline(always)]
fn skip_extension(ctx: &impl Frame, pkt: &mut Ipv6) -> Result<bool, u32> {
    let off = pkt.l4_off;
    match pkt.proto {
        NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST => {
            let h = header_at::<ExtHdr>(ctx, off).map_err(|_| DROP_MALFORMED_IP6)?;
            let (next, len) = unsafe { ((*h).next, (*h).len) };
            pkt.proto = next;
            pkt.l4_off = off + (usize::from(len) + 1) * 8;
            Ok(true)
        }
        NEXTHDR_AUTH => {
            let h = header_at::<ExtHdr>(ctx, off).map_err(|_| DROP_MALFORMED_IP6)?;
            let (next, len) = unsafe { ((*h).next, (*h).len) };
            pkt.proto = next;
            pkt.l4_off = off + (usize::from(len) + 2) * 4;
            Ok(true)
        }
        NEXTHDR_FRAGMENT => {
            let f = header_at::<FragHdr>(ctx, off).map_err(|_| DROP_MALFORMED_IP6)?;
            let f = unsafe { &*f };
            let offset_flags = u16::from_be_bytes(f.offset_flags);
            pkt.proto = f.next;
            pkt.l4_off = off + 8;
            pkt.frag_id = u32::from_ne_bytes(f.id);
            pkt.frag_next = f.next;
            pkt.frag = if offset_flags & 0xfff8 != 0 {
                Frag::Later
            } else if offset_flags & 1 != 0 {
                Frag::First
            } else {
                // An atomic fragment (RFC 8021): a whole packet.
                Frag::Whole
            };
            // A later fragment's data carries no further headers.
            Ok(pkt.frag != Frag::Later)
        }
        _ => Ok(false),
    }
}

/// Compared as integers: `[u8; 16]` `==` may lower to `memcmp`, which eBPF
/// does not have.
#[inline(always)]
pub fn ipv6_eq(a: &[u8; 16], b: &[u8; 16]) -> bool {
    let (a0, a1) = halves(a);
    let (b0, b1) = halves(b);
    a0 == b0 && a1 == b1
}

#[inline(always)]
pub fn is_unspecified(a: &[u8; 16]) -> bool {
    let (hi, lo) = halves(a);
    hi == 0 && lo == 0
}

/// fe80::/10.
#[inline(always)]
pub fn is_link_local(a: &[u8; 16]) -> bool {
    a[0] == 0xfe && a[1] & 0xc0 == 0x80
}

/// Whether `addr` is in the bridge's IPv6 subnet.
#[inline(always)]
pub fn in_subnet(addr: &[u8; 16], cfg: &BridgeConfig) -> bool {
    let len = cfg.subnet6_prefix_len;
    let (a_hi, a_lo) = halves(addr);
    let (n_hi, n_lo) = halves(&cfg.subnet_ipv6);
    let (a_hi, a_lo) = (u64::from_be(a_hi), u64::from_be(a_lo));
    let (n_hi, n_lo) = (u64::from_be(n_hi), u64::from_be(n_lo));
    let mask_hi = prefix_mask(len.min(64));
    let mask_lo = prefix_mask(len.saturating_sub(64).min(64));
    a_hi & mask_hi == n_hi & mask_hi && a_lo & mask_lo == n_lo & mask_lo
}

/// The top `len` bits of a u64 (0 to 64).
#[inline(always)]
fn prefix_mask(len: u32) -> u64 {
    if len == 0 {
        0
    } else {
        u64::MAX << (64 - len)
    }
}

/// The link-local address the kernel forms from `mac` (modified EUI-64).
#[inline(always)]
pub fn link_local_of(mac: &[u8; 6]) -> [u8; 16] {
    [
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ]
}

#[inline(always)]
fn halves(a: &[u8; 16]) -> (u64, u64) {
    (
        u64::from_ne_bytes([a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]]),
        u64::from_ne_bytes([a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]]),
    )
}

/// Where the transport checksum sits; ICMPv6's, unlike ICMP's, covers the
/// pseudo-header, so an address rewrite changes it too.
#[inline(always)]
pub fn l4_csum(proto: u8, l4_off: usize) -> L4Csum {
    match proto {
        IPPROTO_TCP => L4Csum::Pseudo {
            off: l4_off + 16,
            udp: false,
        },
        IPPROTO_UDP => L4Csum::Pseudo {
            off: l4_off + 6,
            udp: true,
        },
        IPPROTO_ICMPV6 => L4Csum::Pseudo {
            off: l4_off + 2,
            udp: false,
        },
        _ => L4Csum::None,
    }
}

/// Rewrites the address at `addr_off` (source or destination) and fixes
/// the transport checksum word by word (IPv6 has no header checksum).
#[inline(always)]
pub fn set_addr(
    ctx: &TcContext,
    addr_off: usize,
    old: &[u8; 16],
    new: &[u8; 16],
    l4: L4Csum,
) -> Result<(), u32> {
    if let L4Csum::Pseudo { off, udp } = l4 {
        let extra = if udp { BPF_F_MARK_MANGLED_0 } else { 0 };
        for i in 0..4 {
            let at = i * 4;
            let from = u32::from_ne_bytes([old[at], old[at + 1], old[at + 2], old[at + 3]]);
            let to = u32::from_ne_bytes([new[at], new[at + 1], new[at + 2], new[at + 3]]);
            if from != to {
                ctx.l4_csum_replace(
                    off,
                    u64::from(from),
                    u64::from(to),
                    u64::from(BPF_F_PSEUDO_HDR | extra | 4),
                )
                .map_err(|_| DROP_REWRITE_FAILED)?;
            }
        }
    }
    ctx.store(addr_off, new, 0).map_err(|_| DROP_REWRITE_FAILED)
}

/// A router's hop limit decrement (no checksum covers it).
#[inline(always)]
pub fn decrement_hop_limit(ctx: &TcContext, ip: &Ipv6) -> Result<(), u32> {
    ctx.store(IP6_HOP_LIMIT_OFF, &(ip.hop_limit - 1), 0)
        .map_err(|_| DROP_REWRITE_FAILED)
}

/// Multicast (ff00::/8), unspecified or loopback: never routed by us.
#[inline(always)]
pub fn is_special(a: &[u8; 16]) -> bool {
    let (hi, lo) = halves(a);
    a[0] == 0xff || (hi == 0 && (lo == 0 || u64::from_be(lo) == 1))
}
