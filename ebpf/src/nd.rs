//! Neighbor Discovery from a container (RFC 4861), checked before the
//! bridge or another container sees it: solicitations and advertisements
//! carry only the endpoint's own addresses and MAC, and router
//! advertisements and redirects are dropped — a container must not become
//! the others' router, nor steer their traffic.
use aya_ebpf::programs::TcContext;
use ebridge_common::{endpoint::Endpoint, stats::*};

use crate::{
    ipv6::{ipv6_eq, Ipv6},
    packet::{header_at, mac_eq},
};

const ND_ROUTER_SOLICIT: u8 = 133;
const ND_ROUTER_ADVERT: u8 = 134;
const ND_NEIGHBOR_SOLICIT: u8 = 135;
const ND_NEIGHBOR_ADVERT: u8 = 136;
const ND_REDIRECT: u8 = 137;
const MLD_REPORT: u8 = 131;
const MLD2_REPORT: u8 = 143;

const OPT_SOURCE_LL: u8 = 1;
const OPT_TARGET_LL: u8 = 2;
/// Options walked at most; a message with more is refused, so a forged
/// link-layer option cannot hide behind padding ones.
const MAX_ND_OPTIONS: usize = 8;

#[repr(C)]
struct NdOption {
    kind: u8,
    /// In units of 8 bytes, the type and length included.
    len: u8,
}

/// `Ok` when an ICMPv6 message from the endpoint may go on. `unspecified`:
/// its source is `::`, which only duplicate address detection and MLD
/// reports may use.
#[inline(always)]
pub fn check(ctx: &TcContext, pkt: &Ipv6, ep: &Endpoint, unspecified: bool) -> Result<(), u32> {
    // Type and code: a one-byte read at a variable offset gets a bounds
    // check the verifier cannot follow (LLVM folds `+ 1 >` into `>=`).
    let head = header_at::<[u8; 2]>(ctx, pkt.l4_off).map_err(|_| DROP_TRUNCATED)?;
    match unsafe { (*head)[0] } {
        ND_ROUTER_ADVERT => Err(DROP_ROUTER_ADVERT),
        ND_REDIRECT => Err(DROP_ICMP6_REDIRECT),
        ND_NEIGHBOR_SOLICIT => link_layer_options(ctx, pkt.l4_off + 24, pkt.end, ep, unspecified),
        ND_NEIGHBOR_ADVERT if unspecified => Err(DROP_SPOOFED_IP6),
        ND_NEIGHBOR_ADVERT => {
            advertised_target(ctx, pkt, ep)?;
            link_layer_options(ctx, pkt.l4_off + 24, pkt.end, ep, false)
        }
        ND_ROUTER_SOLICIT => link_layer_options(ctx, pkt.l4_off + 8, pkt.end, ep, unspecified),
        MLD_REPORT | MLD2_REPORT => Ok(()),
        _ if unspecified => Err(DROP_SPOOFED_IP6),
        _ => Ok(()),
    }
}

/// A Neighbor Advertisement speaks for its target address: it must be one
/// of the endpoint's.
#[inline(always)]
fn advertised_target(ctx: &TcContext, pkt: &Ipv6, ep: &Endpoint) -> Result<(), u32> {
    let target = header_at::<[u8; 16]>(ctx, pkt.l4_off + 8).map_err(|_| DROP_TRUNCATED)?;
    let target = unsafe { &*target };
    if ipv6_eq(target, &ep.ipv6) || ipv6_eq(target, &ep.ipv6_ll) {
        Ok(())
    } else {
        Err(DROP_SPOOFED_ND)
    }
}

/// Source and target link-layer address options must name the endpoint's
/// MAC; from `::` there may be none (RFC 4861 7.1.1).
#[inline(always)]
fn link_layer_options(
    ctx: &TcContext,
    start: usize,
    end: usize,
    ep: &Endpoint,
    unspecified: bool,
) -> Result<(), u32> {
    let mut off = start;
    for _ in 0..MAX_ND_OPTIONS {
        if off >= end {
            return Ok(());
        }
        let opt = header_at::<NdOption>(ctx, off).map_err(|_| DROP_MALFORMED_IP6)?;
        let (kind, len) = unsafe { ((*opt).kind, (*opt).len) };
        if len == 0 {
            return Err(DROP_MALFORMED_IP6);
        }
        if kind == OPT_SOURCE_LL || kind == OPT_TARGET_LL {
            if unspecified {
                return Err(DROP_SPOOFED_ND);
            }
            let mac = header_at::<[u8; 6]>(ctx, off + 2).map_err(|_| DROP_MALFORMED_IP6)?;
            if !mac_eq(unsafe { &*mac }, &ep.mac) {
                return Err(DROP_SPOOFED_ND);
            }
        }
        off += usize::from(len) * 8;
    }
    if off >= end {
        Ok(())
    } else {
        Err(DROP_MALFORMED_IP6)
    }
}
