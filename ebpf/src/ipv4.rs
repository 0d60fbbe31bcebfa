//! IPv4 header parsing and validation, and the rewrites NAT needs with
//! their checksum fix-ups (kernel helpers only).
use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    programs::TcContext,
};
use ebridge_common::{
    config::BridgeConfig,
    nat::{IPPROTO_TCP, IPPROTO_UDP},
    stats::*,
};

use crate::packet::{self, Frame, ETH_LEN};

pub const IP_TTL_OFF: usize = ETH_LEN + 8;
pub const IP_CSUM_OFF: usize = ETH_LEN + 10;
pub const IP_SADDR_OFF: usize = ETH_LEN + 12;
pub const IP_DADDR_OFF: usize = ETH_LEN + 16;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Frag {
    Whole,
    /// Offset 0 with more-fragments: carries the L4 header.
    First,
    /// Offset > 0: no L4 header.
    Later,
}

#[derive(Clone, Copy)]
pub struct Ipv4 {
    pub l4_off: usize,
    pub proto: u8,
    pub ttl: u8,
    pub tos: u8,
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
    /// Raw (network order) identification field.
    pub id: u16,
    pub frag: Frag,
    /// Don't Fragment: too big for the next link means ICMP, not fragments.
    pub df: bool,
    /// Offset just past the IPv4 payload (total length), where trailing
    /// padding starts: no header may be read beyond it.
    pub end: usize,
}

/// Parses the IPv4 header after Ethernet, rejecting what no host would
/// accept: a version other than 4, IHL < 5, a total length shorter than the
/// header or longer than the frame.
#[inline(always)]
pub fn parse(ctx: &impl Frame) -> Result<Ipv4, u32> {
    let ip = packet::ipv4(ctx).map_err(|_| DROP_TRUNCATED)?;
    let ip = unsafe { &*ip };
    if ip.vihl >> 4 != 4 {
        return Err(DROP_MALFORMED_IP);
    }
    let ihl = ((ip.vihl & 0x0f) as usize) * 4;
    if ihl < 20 {
        return Err(DROP_MALFORMED_IP);
    }
    let tot_len = u16::from_be_bytes(ip.tot_len) as usize;
    if tot_len < ihl || tot_len + ETH_LEN > ctx.frame_len() as usize {
        return Err(DROP_MALFORMED_IP);
    }
    let frags = u16::from_be_bytes(ip.frags);
    let frag = if frags & 0x1fff != 0 {
        Frag::Later
    } else if frags & 0x2000 != 0 {
        Frag::First
    } else {
        Frag::Whole
    };
    Ok(Ipv4 {
        l4_off: ETH_LEN + ihl,
        proto: ip.proto,
        ttl: ip.ttl,
        tos: ip.tos,
        saddr: ip.src_addr,
        daddr: ip.dst_addr,
        id: u16::from_ne_bytes(ip.id),
        frag,
        df: frags & 0x4000 != 0,
        end: ETH_LEN + tot_len,
    })
}

/// Compared as integers: a `[u8; N]` `==` may lower to `memcmp`, which
/// eBPF does not have.
#[inline(always)]
pub fn ipv4_eq(a: &[u8; 4], b: &[u8; 4]) -> bool {
    u32::from_ne_bytes(*a) == u32::from_ne_bytes(*b)
}

#[inline(always)]
pub fn in_subnet(addr: &[u8; 4], cfg: &BridgeConfig) -> bool {
    let len = cfg.subnet_prefix_len;
    if len == 0 {
        return true;
    }
    let mask = u32::MAX << (32 - len);
    u32::from_be_bytes(*addr) & mask == u32::from_be_bytes(cfg.subnet_ipv4) & mask
}

/// Multicast, limited broadcast or unspecified: never routed by us.
#[inline(always)]
pub fn is_special(addr: &[u8; 4]) -> bool {
    addr[0] >= 224 || addr[0] == 0
}

/// Where a packet's L4 checksum lives and how it covers the rewrite.
#[derive(Clone, Copy)]
pub enum L4Csum {
    /// TCP or UDP: the checksum covers the pseudo header (addresses).
    Pseudo { off: usize, udp: bool },
    /// ICMP: covers its own bytes only.
    Plain { off: usize },
    /// No L4 header in this packet (later fragment).
    None,
}

impl L4Csum {
    #[inline(always)]
    pub fn for_proto(proto: u8, l4_off: usize) -> Self {
        match proto {
            IPPROTO_TCP => L4Csum::Pseudo {
                off: l4_off + 16,
                udp: false,
            },
            IPPROTO_UDP => L4Csum::Pseudo {
                off: l4_off + 6,
                udp: true,
            },
            _ => L4Csum::Plain { off: l4_off + 2 },
        }
    }
}

/// Rewrites the address at `addr_off` (source or destination) and fixes
/// the IPv4 and L4 checksums.
#[inline(always)]
pub fn set_addr(
    ctx: &TcContext,
    addr_off: usize,
    old: [u8; 4],
    new: [u8; 4],
    l4: L4Csum,
) -> Result<(), u32> {
    let (from, to) = (
        u32::from_ne_bytes(old) as u64,
        u32::from_ne_bytes(new) as u64,
    );
    if let L4Csum::Pseudo { off, udp } = l4 {
        // MARK_MANGLED_0 keeps a zero UDP checksum ("none") zero.
        let extra = if udp { BPF_F_MARK_MANGLED_0 } else { 0 };
        ctx.l4_csum_replace(off, from, to, (BPF_F_PSEUDO_HDR | extra | 4) as u64)
            .map_err(|_| DROP_REWRITE_FAILED)?;
    }
    ctx.l3_csum_replace(IP_CSUM_OFF, from, to, 4)
        .map_err(|_| DROP_REWRITE_FAILED)?;
    ctx.store(addr_off, &new, 0)
        .map_err(|_| DROP_REWRITE_FAILED)
}

/// Rewrites a 16-bit port (or ICMP identifier) at `off` and fixes the L4
/// checksum.
#[inline(always)]
pub fn set_port(ctx: &TcContext, off: usize, old: u16, new: u16, l4: L4Csum) -> Result<(), u32> {
    if old == new {
        return Ok(());
    }
    let (from, to) = (old as u64, new as u64);
    match l4 {
        L4Csum::Pseudo { off: csum, udp } => {
            let extra = if udp { BPF_F_MARK_MANGLED_0 } else { 0 };
            ctx.l4_csum_replace(csum, from, to, (extra | 2) as u64)
                .map_err(|_| DROP_REWRITE_FAILED)?;
        }
        L4Csum::Plain { off: csum } => {
            ctx.l4_csum_replace(csum, from, to, 2)
                .map_err(|_| DROP_REWRITE_FAILED)?;
        }
        L4Csum::None => {}
    }
    ctx.store(off, &new, 0).map_err(|_| DROP_REWRITE_FAILED)
}

/// A router's TTL decrement, with the header checksum fixed.
#[inline(always)]
pub fn decrement_ttl(ctx: &TcContext, ip: &Ipv4) -> Result<(), u32> {
    let old = u16::from_ne_bytes([ip.ttl, ip.proto]);
    let new = u16::from_ne_bytes([ip.ttl - 1, ip.proto]);
    ctx.l3_csum_replace(IP_CSUM_OFF, old as u64, new as u64, 2)
        .map_err(|_| DROP_REWRITE_FAILED)?;
    ctx.store(IP_TTL_OFF, &(ip.ttl - 1), 0)
        .map_err(|_| DROP_REWRITE_FAILED)
}
