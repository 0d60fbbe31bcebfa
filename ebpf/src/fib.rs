//! Next-hop resolution with the kernel's FIB, and sending out of the uplink.
use core::mem::{size_of, zeroed};

use aya_ebpf::{
    bindings::{
        bpf_fib_lookup, bpf_redir_neigh, BPF_FIB_LKUP_RET_NOT_FWDED, BPF_FIB_LKUP_RET_NO_NEIGH,
        BPF_FIB_LKUP_RET_SUCCESS, TC_ACT_REDIRECT,
    },
    helpers::generated::{bpf_fib_lookup as fib_lookup, bpf_redirect, bpf_redirect_neigh},
    programs::TcContext,
    EbpfContext,
};
use ebridge_common::stats::*;

use crate::{ipv4::Ipv4, ipv6::Ipv6};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

pub enum Route {
    /// Leaves by `ifindex`; MACs known.
    Out {
        ifindex: u32,
        smac: [u8; 6],
        dmac: [u8; 6],
    },
    /// Leaves by `ifindex`; the next hop `nh` needs neighbour resolution.
    OutNoNeigh { ifindex: u32, nh: u32 },
    /// The same for an IPv6 next hop.
    OutNoNeigh6 { ifindex: u32, nh: [u32; 4] },
    /// Addressed to the node itself.
    Local,
    /// Anything else (unreachable, forwarding off, too big): the kernel's.
    Slow,
}

/// Looks the destination up as if the packet had arrived on the bridge, the
/// way the kernel would route it (forwarding is enabled on the bridge by
/// `ebridge up`). A zero `tot_len` makes the kernel check this skb, GSO
/// included, against the egress MTU.
#[inline(always)]
pub fn lookup(ctx: &TcContext, ip: &Ipv4, in_ifindex: u32) -> Route {
    let mut p = core::mem::MaybeUninit::<bpf_fib_lookup>::uninit();
    // SAFETY: every byte written by zero() before it is read.
    let p = unsafe {
        crate::mem::zero(p.as_mut_ptr());
        p.assume_init_mut()
    };
    p.family = AF_INET;
    p.l4_protocol = ip.proto;
    p.ifindex = in_ifindex;
    p.__bindgen_anon_2.tos = ip.tos;
    p.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(ip.saddr);
    p.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(ip.daddr);
    let rc = unsafe { fib_lookup(ctx.as_ptr(), p, size_of::<bpf_fib_lookup>() as i32, 0) };
    match rc as u32 {
        BPF_FIB_LKUP_RET_SUCCESS => Route::Out {
            ifindex: p.ifindex,
            smac: p.smac,
            dmac: p.dmac,
        },
        BPF_FIB_LKUP_RET_NO_NEIGH => Route::OutNoNeigh {
            ifindex: p.ifindex,
            nh: unsafe { p.__bindgen_anon_4.ipv4_dst },
        },
        BPF_FIB_LKUP_RET_NOT_FWDED => Route::Local,
        _ => Route::Slow,
    }
}

/// `lookup` for IPv6, with the parameters in `p` (a per-CPU work area:
/// 64 bytes the IPv6 paths' stack cannot spare).
#[inline(always)]
pub fn lookup6(ctx: &TcContext, ip: &Ipv6, in_ifindex: u32, p: &mut bpf_fib_lookup) -> Route {
    unsafe { crate::mem::zero(p) };
    p.family = AF_INET6;
    p.l4_protocol = ip.proto;
    p.ifindex = in_ifindex;
    p.__bindgen_anon_3.ipv6_src = words(&ip.saddr);
    p.__bindgen_anon_4.ipv6_dst = words(&ip.daddr);
    let rc = unsafe { fib_lookup(ctx.as_ptr(), p, size_of::<bpf_fib_lookup>() as i32, 0) };
    match rc as u32 {
        BPF_FIB_LKUP_RET_SUCCESS => Route::Out {
            ifindex: p.ifindex,
            smac: p.smac,
            dmac: p.dmac,
        },
        BPF_FIB_LKUP_RET_NO_NEIGH => Route::OutNoNeigh6 {
            ifindex: p.ifindex,
            nh: unsafe { p.__bindgen_anon_4.ipv6_dst },
        },
        BPF_FIB_LKUP_RET_NOT_FWDED => Route::Local,
        _ => Route::Slow,
    }
}

#[inline(always)]
fn words(a: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([a[0], a[1], a[2], a[3]]),
        u32::from_ne_bytes([a[4], a[5], a[6], a[7]]),
        u32::from_ne_bytes([a[8], a[9], a[10], a[11]]),
        u32::from_ne_bytes([a[12], a[13], a[14], a[15]]),
    ]
}

/// Transmits on the route's device: with the MACs set when the neighbour is
/// known, otherwise through the kernel's neighbour resolution.
#[inline(always)]
pub fn send(ctx: &TcContext, route: &Route) -> Result<i32, u32> {
    match *route {
        Route::Out {
            ifindex,
            smac,
            dmac,
        } => {
            ctx.store(0, &dmac, 0).map_err(|_| DROP_REWRITE_FAILED)?;
            ctx.store(6, &smac, 0).map_err(|_| DROP_REWRITE_FAILED)?;
            let rc = unsafe { bpf_redirect(ifindex, 0) };
            Ok(rc as i32)
        }
        Route::OutNoNeigh { ifindex, nh } => {
            let mut params: bpf_redir_neigh = unsafe { zeroed() };
            params.nh_family = u32::from(AF_INET);
            params.__bindgen_anon_1.ipv4_nh = nh;
            redirect_neigh(ifindex, &mut params)
        }
        Route::OutNoNeigh6 { ifindex, nh } => {
            let mut params: bpf_redir_neigh = unsafe { zeroed() };
            params.nh_family = u32::from(AF_INET6);
            params.__bindgen_anon_1.ipv6_nh = nh;
            redirect_neigh(ifindex, &mut params)
        }
        _ => Err(DROP_REDIRECT_FAILED),
    }
}

#[inline(always)]
fn redirect_neigh(ifindex: u32, params: &mut bpf_redir_neigh) -> Result<i32, u32> {
    let rc = unsafe { bpf_redirect_neigh(ifindex, params, size_of::<bpf_redir_neigh>() as i32, 0) };
    if rc != TC_ACT_REDIRECT as i64 {
        return Err(DROP_REDIRECT_FAILED);
    }
    Ok(rc as i32)
}
