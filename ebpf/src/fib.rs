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

use crate::ipv4::Ipv4;

const AF_INET: u8 = 2;

pub enum Route {
    /// Leaves by `ifindex`; MACs known.
    Out {
        ifindex: u32,
        smac: [u8; 6],
        dmac: [u8; 6],
    },
    /// Leaves by `ifindex`; the next hop `nh` needs neighbour resolution.
    OutNoNeigh { ifindex: u32, nh: u32 },
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
    let mut p: bpf_fib_lookup = unsafe { zeroed() };
    p.family = AF_INET;
    p.l4_protocol = ip.proto;
    p.ifindex = in_ifindex;
    p.__bindgen_anon_2.tos = ip.tos;
    p.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(ip.saddr);
    p.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(ip.daddr);
    let rc = unsafe { fib_lookup(ctx.as_ptr(), &mut p, size_of::<bpf_fib_lookup>() as i32, 0) };
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
            let rc = unsafe {
                bpf_redirect_neigh(ifindex, &mut params, size_of::<bpf_redir_neigh>() as i32, 0)
            };
            if rc != TC_ACT_REDIRECT as i64 {
                return Err(DROP_REDIRECT_FAILED);
            }
            Ok(rc as i32)
        }
        _ => Err(DROP_REDIRECT_FAILED),
    }
}
