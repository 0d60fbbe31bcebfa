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
    ipv4,
    maps::{CONFIG, ENDPOINTS},
    masquerade,
    packet::{self, ETH_P_IPV4},
    stats::{count, drop, pass},
};

#[classifier]
pub fn endpoint_ingress(ctx: TcContext) -> i32 {
    handle(&ctx)
}

#[inline(always)]
fn handle(ctx: &TcContext) -> i32 {
    packet::ensure_linear(ctx);
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
    if let Err(reason) = antispoof::check_source(ctx, eth, ep) {
        return drop(ctx, reason);
    }

    let now = unsafe { bpf_ktime_get_ns() };
    let (src, dst) = unsafe { ((*eth).src_addr, (*eth).dst_addr) };
    fdb::learn(ctx, &src, ifindex, now, cfg.fdb_ageing_ns);

    if cfg.flags & CONFIG_F_ICC == 0 && to_other_container(ctx, eth, cfg) {
        return drop(ctx, DROP_ICC);
    }

    if packet::is_multicast(&dst) {
        return pass(ctx, PASS_MULTICAST);
    }
    match fdb::lookup(&dst, cfg.fdb_ageing_ns, now) {
        Port::Unknown => pass(ctx, PASS_UNKNOWN_DST),
        Port::Local if packet::ether_type(eth) == ETH_P_IPV4 => {
            masquerade::route_from_container(ctx, cfg, ep, now)
        }
        Port::Local => pass(ctx, PASS_TO_HOST),
        Port::Expired => pass(ctx, PASS_FDB_EXPIRED),
        Port::Endpoint(port) if port == ifindex => pass(ctx, PASS_SAME_PORT),
        Port::Endpoint(port) => to_peer(ctx, port, cfg.flags),
    }
}

/// With ICC off, IPv4 to any subnet address but the gateway is another
/// container's (or their broadcast), however it would get there: fast path,
/// bridge flooding, or routed back through the gateway. Docker's
/// `-i docker0 -o docker0 -j DROP` covers all three as well.
#[inline(always)]
fn to_other_container(ctx: &TcContext, eth: *const EthHdr, cfg: &BridgeConfig) -> bool {
    if packet::ether_type(eth) != ETH_P_IPV4 {
        return false;
    }
    let Ok(ip) = packet::ipv4(ctx) else {
        return false;
    };
    let dst = unsafe { &(*ip).dst_addr };
    ipv4::in_subnet(dst, cfg) && !ipv4::ipv4_eq(dst, &cfg.gateway_ipv4)
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
