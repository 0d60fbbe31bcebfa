//! Entry programs on the uplink: TC ingress does reverse NAT, TC egress is
//! the leak guard that iptables' MASQUERADE rule used to guarantee and
//! holds the node's own flows in the NAT table.
use aya_ebpf::{
    bindings::TC_ACT_UNSPEC, helpers::generated::bpf_ktime_get_ns, macros::classifier,
    programs::TcContext,
};
use ebridge_common::{
    config::{BridgeConfig, CONFIG_F_IPV6_MASQUERADE, CONFIG_F_MASQUERADE},
    nat::{bridge_mark, MARK_MAGIC, MARK_MAGIC_MASK},
    stats::*,
};

use crate::{
    ipv4, ipv6,
    maps::CONFIG,
    node_flow,
    packet::{self, ETH_P_IPV4, ETH_P_IPV6},
    revnat, revnat6, routing,
    stats::{drop, pass},
};

#[classifier]
pub fn uplink_ingress(ctx: TcContext) -> i32 {
    packet::ensure_linear(&ctx);
    if CONFIG.get(0).is_none() {
        return TC_ACT_UNSPEC;
    }
    let Ok(eth) = packet::eth(&ctx) else {
        return pass(&ctx, PASS_UPLINK_HOST);
    };
    match packet::ether_type(eth) {
        ETH_P_IPV4 => ingress4(ctx),
        ETH_P_IPV6 => ingress6(ctx),
        _ => pass(&ctx, PASS_UPLINK_HOST),
    }
}

/// One function per family, each out of line: eBPF's 512-byte stack is
/// shared by a call chain, and the IPv4 path fills most of it.
#[inline(never)]
fn ingress4(ctx: TcContext) -> i32 {
    let Some(cfg) = CONFIG.get(0) else {
        return TC_ACT_UNSPEC;
    };
    let now = unsafe { bpf_ktime_get_ns() };
    revnat::from_uplink(&ctx, cfg, now)
}

#[inline(never)]
fn ingress6(ctx: TcContext) -> i32 {
    let Some(cfg) = CONFIG.get(0) else {
        return TC_ACT_UNSPEC;
    };
    let now = unsafe { bpf_ktime_get_ns() };
    revnat6::from_uplink(&ctx, cfg, now)
}

/// Nothing with a container source address leaves un-NATed while
/// masquerade is on, whatever path (kernel forwarding included) got it here.
/// Everything else this bridge did not translate itself and that leaves
/// from the masquerade address is the node's (or another bridge's): its
/// tuple is held so no container flow takes it.
#[classifier]
pub fn uplink_egress(ctx: TcContext) -> i32 {
    let Some(cfg) = CONFIG.get(0) else {
        return TC_ACT_UNSPEC;
    };
    packet::ensure_linear(&ctx);
    let Ok(eth) = packet::eth(&ctx) else {
        return TC_ACT_UNSPEC;
    };
    match packet::ether_type(eth) {
        ETH_P_IPV4 if cfg.flags & CONFIG_F_MASQUERADE != 0 => egress4(ctx),
        ETH_P_IPV6 if cfg.flags & CONFIG_F_IPV6_MASQUERADE != 0 => egress6(ctx),
        _ => TC_ACT_UNSPEC,
    }
}

/// Out of line per family, as on ingress.
#[inline(never)]
fn egress4(ctx: TcContext) -> i32 {
    let Some(cfg) = CONFIG.get(0) else {
        return TC_ACT_UNSPEC;
    };
    let Ok(hdr) = packet::ipv4(&ctx) else {
        return TC_ACT_UNSPEC;
    };
    let (src, dst) = unsafe { ((*hdr).src_addr, (*hdr).dst_addr) };
    // A pod's own address leaves only towards a native-routing CIDR.
    if ipv4::in_subnet(&src, cfg) && !routing::routes_natively(cfg, &dst) {
        return drop(&ctx, DROP_LEAK);
    }
    if !ipv4::ipv4_eq(&src, &cfg.uplink_ipv4) {
        return TC_ACT_UNSPEC;
    }
    let Some(other_bridge) = node_or_other_bridge(&ctx, cfg) else {
        return TC_ACT_UNSPEC;
    };
    let Ok(ip) = ipv4::parse(&ctx) else {
        return TC_ACT_UNSPEC;
    };
    let now = unsafe { bpf_ktime_get_ns() };
    node_flow::leaving(&ctx, cfg, &ip, other_bridge, now)
}

/// IPv6 with a container source never leaves un-NATed while IPv6
/// masquerade is on; the node's flows from the IPv6 masquerade address
/// are held as IPv4's are.
#[inline(never)]
fn egress6(ctx: TcContext) -> i32 {
    let Some(cfg) = CONFIG.get(0) else {
        return TC_ACT_UNSPEC;
    };
    let Ok(hdr) = packet::ipv6(&ctx) else {
        return TC_ACT_UNSPEC;
    };
    let src = unsafe { &(*hdr).src_addr };
    if ipv6::in_subnet(src, cfg) {
        return drop(&ctx, DROP_LEAK);
    }
    if !ipv6::ipv6_eq(src, &cfg.uplink_ipv6) {
        return TC_ACT_UNSPEC;
    }
    let Some(other_bridge) = node_or_other_bridge(&ctx, cfg) else {
        return TC_ACT_UNSPEC;
    };
    let Ok(ip) = ipv6::parse(&ctx) else {
        return TC_ACT_UNSPEC;
    };
    let now = unsafe { bpf_ktime_get_ns() };
    node_flow::leaving6(&ctx, cfg, &ip, other_bridge, now)
}

/// Who sent a packet from the masquerade address: None for this bridge's
/// own translated packets (nothing to hold), else whether another bridge
/// (true) or the node (false).
#[inline(always)]
fn node_or_other_bridge(ctx: &TcContext, cfg: &BridgeConfig) -> Option<bool> {
    let mark = unsafe { (*ctx.skb.skb).mark };
    if mark == bridge_mark(cfg.bridge_ifindex) {
        return None;
    }
    Some(mark & MARK_MAGIC_MASK == MARK_MAGIC)
}
