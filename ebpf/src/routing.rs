//! Native routing (cluster mode, `up --native-routing-cidr`): a pod's
//! packet to a native-routing CIDR is routed with the pod's own address by
//! the endpoint program (FIB lookup, TTL, MACs, redirect — no bridge, no
//! node IP forwarding), and a packet from such a CIDR or from the node's
//! own networks for a local pod is delivered by the uplink program with
//! `bpf_redirect_peer`. Everything else keeps the single-node rules:
//! masquerade out, "not published" in.
use aya_ebpf::{btf_maps::lpm_trie::Key, programs::TcContext};
use ebridge_common::{
    config::{BridgeConfig, CONFIG_F_NATIVE_ROUTING},
    routing::NATIVE_CIDR,
    stats::*,
};

use crate::{
    fib::{self, Route},
    icmp_reply,
    ipv4::{self, Frag, Ipv4},
    maps::{ENDPOINTS, ENDPOINT_BY_IP, NATIVE_NETS},
    revnat::{Delivery, Outcome},
    stats::{count, drop, pass},
};

/// What `native_nets` says of `addr` (`common::routing` bits; 0: nothing).
#[inline(always)]
fn kinds(cfg: &BridgeConfig, addr: &[u8; 4]) -> u32 {
    if cfg.flags & CONFIG_F_NATIVE_ROUTING == 0 {
        return 0;
    }
    NATIVE_NETS.get(&Key::new(32, *addr)).copied().unwrap_or(0)
}

/// A destination pods reach with their own address.
#[inline(always)]
pub fn routes_natively(cfg: &BridgeConfig, daddr: &[u8; 4]) -> bool {
    kinds(cfg, daddr) & NATIVE_CIDR != 0
}

/// A source that may reach pods without NAT: a native-routing CIDR or a
/// network the node is on.
#[inline(always)]
pub fn may_enter(cfg: &BridgeConfig, saddr: &[u8; 4]) -> bool {
    kinds(cfg, saddr) != 0
}

/// A pod's packet to a native-routing CIDR, leaving as it is but for the
/// TTL (the caller already passed packets expiring here to the kernel).
/// A route change applies to the next packet: the route is looked up for
/// every one. No route, or one the fast path cannot take (unreachable —
/// `up` installs one for every native CIDR —, too big for the next hop):
/// the kernel answers the pod with the ICMP error.
#[inline(always)]
pub fn forward_out(ctx: &TcContext, ip: &Ipv4, route: Route) -> i32 {
    match route {
        Route::Out { .. } | Route::OutNoNeigh { .. } => {
            if let Err(reason) = ipv4::decrement_ttl(ctx, ip) {
                return drop(ctx, reason);
            }
            match fib::send(ctx, &route) {
                Ok(verdict) => {
                    count(ctx, FWD_ROUTED_OUT);
                    verdict
                }
                Err(reason) => drop(ctx, reason),
            }
        }
        _ => pass(ctx, PASS_FIB_SLOW_PATH),
    }
}

/// A packet for a local pod's own address from a source that may enter.
/// Checked as a router would first (TTL, MTU with DF); ICMP errors are
/// never answered with one.
#[inline(always)]
pub fn to_pod(ctx: &TcContext, cfg: &BridgeConfig, ip: &Ipv4, icmp_error: bool) -> Outcome {
    let Some(ifindex) = (unsafe { ENDPOINT_BY_IP.get(ip.daddr) }).copied() else {
        return Outcome::Pass(PASS_NO_SUCH_POD);
    };
    let Some(ep) = (unsafe { ENDPOINTS.get(ifindex) }) else {
        return Outcome::Pass(PASS_NO_SUCH_POD);
    };
    if ip.frag != Frag::Later && !icmp_error {
        if let Some(why) = icmp_reply::refusal(ctx, cfg, ip, ifindex) {
            return Outcome::Refuse(why);
        }
    }
    Outcome::Deliver(
        Delivery {
            ifindex,
            mac: ep.mac,
        },
        FWD_ROUTED_IN,
    )
}
