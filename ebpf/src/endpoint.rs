//! Entry program: TC ingress of each host-side container veth, i.e. every
//! frame a container sends.
use aya_ebpf::{
    bindings::TC_ACT_REDIRECT,
    helpers::generated::{bpf_ktime_get_ns, bpf_redirect_peer},
    macros::classifier,
    programs::TcContext,
};
use ebridge_common::{
    config::{BridgeConfig, CONFIG_F_ICC},
    stats::*,
};
use network_types::eth::EthHdr;

use crate::{
    antispoof,
    fdb::{self, Port},
    ipv4, ipv6,
    maps::{CONFIG, ENDPOINTS},
    masquerade, masquerade6,
    packet::{self, ETH_P_IPV4, ETH_P_IPV6},
    stats::{count, drop, pass},
};

#[classifier]
pub fn endpoint_ingress(ctx: TcContext) -> i32 {
    packet::ensure_linear(&ctx);
    let ipv6 = packet::eth(&ctx).is_ok_and(|eth| packet::ether_type(eth) == ETH_P_IPV6);
    if !ipv6 {
        return handle::<false>(ctx);
    }
    let skb = ctx.skb.skb;
    match handle::<true>(ctx) {
        // Routed after `handle` returned, so its frame is off the NAT
        // path's call chain.
        ROUTE_IPV6 => masquerade6::from_container(TcContext::new(skb)),
        verdict => verdict,
    }
}

/// `handle::<true>`'s answer for IPv6 to the gateway's MAC: not a verdict
/// yet, the caller routes it.
const ROUTE_IPV6: i32 = i32::MIN;

/// One copy per family, each out of line: eBPF's 512-byte stack is shared
/// by a call chain, and IPv4's NAT path already fills most of it, so
/// IPv6's extension header and ND checks must not share its frame.
#[inline(never)]
fn handle<const IPV6: bool>(ctx: TcContext) -> i32 {
    let ctx = &ctx;
    // The array always has its entry; a zero bridge index means `up` has
    // not written it (yet): fail closed.
    let Some(cfg) = CONFIG.get(0).filter(|c| c.bridge_ifindex != 0) else {
        return drop(ctx, DROP_NO_CONFIG);
    };
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let Some(ep) = (unsafe { ENDPOINTS.get(ifindex) }) else {
        return drop(ctx, DROP_UNKNOWN_ENDPOINT);
    };
    let Ok(eth) = packet::eth(ctx) else {
        return drop(ctx, DROP_TRUNCATED);
    };
    let checked = if IPV6 {
        antispoof::check_source6(ctx, eth, ep)
    } else {
        antispoof::check_source(ctx, eth, ep)
    };
    if let Err(reason) = checked {
        return drop(ctx, reason);
    }

    let now = unsafe { bpf_ktime_get_ns() };
    let (src, dst) = unsafe { ((*eth).src_addr, (*eth).dst_addr) };
    fdb::learn(ctx, &src, ifindex, now, cfg.fdb_ageing_ns);

    if cfg.flags & CONFIG_F_ICC == 0 && to_other_container::<IPV6>(ctx, eth, cfg) {
        return drop(ctx, DROP_ICC);
    }

    if packet::is_multicast(&dst) {
        return pass(ctx, PASS_MULTICAST);
    }
    match fdb::lookup(&dst, cfg.fdb_ageing_ns, now) {
        Port::Unknown => pass(ctx, PASS_UNKNOWN_DST),
        Port::Local if !IPV6 && packet::ether_type(eth) == ETH_P_IPV4 => {
            masquerade::route_from_container(ctx, cfg, ep, now)
        }
        Port::Local if IPV6 => ROUTE_IPV6,
        Port::Local => pass(ctx, PASS_TO_HOST),
        Port::Expired => pass(ctx, PASS_FDB_EXPIRED),
        Port::Endpoint(port) if port == ifindex => pass(ctx, PASS_SAME_PORT),
        Port::Endpoint(port) => to_peer(ctx, port, cfg.flags),
    }
}

/// With ICC off, IPv4 to any subnet address but the gateway is another
/// container's (or their broadcast), however it would get there: fast path,
/// bridge flooding, or routed back through the gateway. Docker's
/// `-i docker0 -o docker0 -j DROP` covers all three as well. For IPv6 the
/// same holds for the IPv6 subnet and for link-local unicast other than
/// the bridge's own; multicast (neighbor discovery with the gateway) goes.
#[inline(always)]
fn to_other_container<const IPV6: bool>(
    ctx: &TcContext,
    eth: *const EthHdr,
    cfg: &BridgeConfig,
) -> bool {
    match packet::ether_type(eth) {
        ETH_P_IPV4 if !IPV6 => {
            let Ok(ip) = packet::ipv4(ctx) else {
                return false;
            };
            let dst = unsafe { &(*ip).dst_addr };
            ipv4::in_subnet(dst, cfg) && !ipv4::ipv4_eq(dst, &cfg.gateway_ipv4)
        }
        ETH_P_IPV6 if IPV6 => {
            let Ok(ip) = packet::ipv6(ctx) else {
                return false;
            };
            let dst = unsafe { &(*ip).dst_addr };
            if ipv6::is_link_local(dst) {
                return !ipv6::ipv6_eq(dst, &ipv6::link_local_of(&cfg.bridge_mac));
            }
            ipv6::in_subnet(dst, cfg) && !ipv6::ipv6_eq(dst, &cfg.gateway_ipv6)
        }
        _ => false,
    }
}

/// Deliver straight into the other container's netns: skips the bridge and
/// the second veth's transmit path entirely.
#[inline(always)]
fn to_peer(ctx: &TcContext, host_ifindex: u32, flags: u32) -> i32 {
    if flags & CONFIG_F_ICC == 0 {
        return drop(ctx, DROP_ICC);
    }
    let ret = unsafe { bpf_redirect_peer(host_ifindex, 0) };
    if ret != TC_ACT_REDIRECT as i64 {
        return drop(ctx, DROP_REDIRECT_FAILED);
    }
    count(ctx, FWD_REDIRECT_PEER);
    TC_ACT_REDIRECT
}
