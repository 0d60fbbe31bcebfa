//! The one place where packet memory is touched: every header access goes
//! through `header_at`, which the verifier can prove in bounds.
use core::mem::size_of;

use aya_ebpf::programs::{TcContext, XdpContext};
use network_types::{
    arp::ArpHdr,
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
};

pub const ETH_LEN: usize = size_of::<EthHdr>();
/// Enough linear bytes for Ethernet + IPv4 with options + an L4 header.
const LINEAR_WANTED: u32 = (ETH_LEN + 60 + 20) as u32;

pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;

pub struct Truncated;

/// What the header accessors need from a program's context, so parsing is
/// shared by TC (an skb) and XDP (a frame buffer).
pub trait Frame {
    fn data(&self) -> usize;
    fn data_end(&self) -> usize;
    /// Length of the whole packet: `skb->len` for TC, the buffer for XDP.
    fn frame_len(&self) -> u32;
}

impl Frame for TcContext {
    #[inline(always)]
    fn data(&self) -> usize {
        TcContext::data(self)
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        TcContext::data_end(self)
    }
    #[inline(always)]
    fn frame_len(&self) -> u32 {
        self.len()
    }
}

impl Frame for XdpContext {
    #[inline(always)]
    fn data(&self) -> usize {
        XdpContext::data(self)
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        XdpContext::data_end(self)
    }
    #[inline(always)]
    fn frame_len(&self) -> u32 {
        (XdpContext::data_end(self) - XdpContext::data(self)) as u32
    }
}

/// Make the headers directly addressable. Frames from a veth are almost
/// always linear already; this only costs when they are not.
#[inline(always)]
pub fn ensure_linear(ctx: &TcContext) {
    let linear = (ctx.data_end() - ctx.data()) as u32;
    let total = ctx.len();
    if linear < LINEAR_WANTED && linear < total {
        let want = if total < LINEAR_WANTED {
            total
        } else {
            LINEAR_WANTED
        };
        let _ = ctx.pull_data(want);
    }
}

/// No header starts beyond this offset (a jumbo frame's worth): the bound
/// lets the verifier accept an offset read back from a map.
const MAX_HEADER_OFFSET: usize = 0x4000;

/// A pointer to a `T` at `offset`, or `Truncated` if the frame is shorter.
#[inline(always)]
pub fn header_at<T>(ctx: &impl Frame, offset: usize) -> Result<*mut T, Truncated> {
    let start = ctx.data();
    let end = ctx.data_end();
    if offset > MAX_HEADER_OFFSET || start + offset + size_of::<T>() > end {
        return Err(Truncated);
    }
    Ok((start + offset) as *mut T)
}

#[inline(always)]
pub fn eth(ctx: &impl Frame) -> Result<*mut EthHdr, Truncated> {
    header_at::<EthHdr>(ctx, 0)
}

#[inline(always)]
pub fn ipv4(ctx: &impl Frame) -> Result<*mut Ipv4Hdr, Truncated> {
    header_at::<Ipv4Hdr>(ctx, ETH_LEN)
}

#[inline(always)]
pub fn ipv6(ctx: &impl Frame) -> Result<*mut Ipv6Hdr, Truncated> {
    header_at::<Ipv6Hdr>(ctx, ETH_LEN)
}

#[inline(always)]
pub fn arp(ctx: &TcContext) -> Result<*mut ArpHdr, Truncated> {
    header_at::<ArpHdr>(ctx, ETH_LEN)
}

/// The EtherType in host order (network-types keeps it as the raw u16).
#[inline(always)]
pub fn ether_type(eth: *const EthHdr) -> u16 {
    u16::from_be(unsafe { (*eth).ether_type })
}

#[inline(always)]
pub fn is_multicast(mac: &[u8; 6]) -> bool {
    // Group bit; covers broadcast too.
    mac[0] & 1 == 1
}

/// Compared as integers: a `[u8; 6]` `==` may lower to `memcmp`, which eBPF
/// does not have.
#[inline(always)]
pub fn mac_eq(a: &[u8; 6], b: &[u8; 6]) -> bool {
    let a_hi = u32::from_ne_bytes([a[0], a[1], a[2], a[3]]);
    let b_hi = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
    let a_lo = u16::from_ne_bytes([a[4], a[5]]);
    let b_lo = u16::from_ne_bytes([b[4], b[5]]);
    a_hi == b_hi && a_lo == b_lo
}
