//! IPv6 a container sends to the gateway's MAC: to the node itself, or out
//! of the uplink masqueraded behind its global address (Docker 27's
//! ip6tables MASQUERADE), or — with `--ipv6-masquerade off` — routed by
//! the kernel with the container's own address (Docker's routed mode).
use aya_ebpf::{
    bindings::bpf_fib_lookup, btf_maps::PerCpuArray, helpers::generated::bpf_ktime_get_ns,
    macros::btf_map, programs::TcContext,
};
use ebridge_common::{
    config::{BridgeConfig, CONFIG_F_IPV6_MASQUERADE},
    endpoint::Endpoint,
    nat::{bridge_mark, Nat6Entry},
    stats::*,
};

use crate::{
    conntrack::{self, FlowOf},
    fib::{self, Route},
    ipv4::Frag,
    ipv6::{self, Ipv6, IP6_SADDR_OFF, IPPROTO_ICMPV6},
    l4::{self, ICMPV6_INFO_MIN, L4},
    maps::{CONFIG, ENDPOINTS},
    packet::header_at,
    stats::{count, drop, pass},
};

pub type Flow6 = FlowOf<[u8; 16]>;

/// Per-CPU room for what the IPv6 paths keep while they work: the parsed
/// header and the route lookup's parameters (the endpoint program's stack
/// holds the IPv4 NAT path's frame already).
pub struct Work6 {
    pub ip: Ipv6,
    pub fib: bpf_fib_lookup,
}

#[btf_map(name = "work6")]
pub static WORK6: PerCpuArray<Work6, 1> = PerCpuArray::new();

#[inline(always)]
pub fn flow_of(ip: &Ipv6, ports: &L4) -> Flow6 {
    FlowOf {
        proto: ip.proto,
        saddr: ip.saddr,
        daddr: ip.daddr,
        sport: ports.sport,
        dport: ports.dport,
    }
}

/// An ICMPv6 error (types below 128): it quotes another packet.
#[inline(always)]
pub fn is_icmp6_error(ctx: &TcContext, ip: &Ipv6) -> bool {
    ip.proto == IPPROTO_ICMPV6
        && header_at::<[u8; 2]>(ctx, ip.l4_off).is_ok_and(|h| unsafe { (*h)[0] } < ICMPV6_INFO_MIN)
}

/// An IPv6 packet the endpoint program let through to the gateway's MAC
/// (source checked, FDB learned). Out of line, called by the entry
/// program after the checks returned: eBPF's 512 bytes of stack hold one
/// call chain, and this one is long.
#[inline(never)]
pub fn from_container(ctx: TcContext) -> i32 {
    let ctx = &ctx;
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let (Some(cfg), Some(ep)) = (CONFIG.get(0), unsafe { ENDPOINTS.get(ifindex) }) else {
        return drop(ctx, DROP_NO_CONFIG);
    };
    let now = unsafe { bpf_ktime_get_ns() };
    route_from_container(ctx, cfg, ep, now)
}

#[inline(always)]
fn route_from_container(ctx: &TcContext, cfg: &BridgeConfig, ep: &Endpoint, now: u64) -> i32 {
    let Some(work) = WORK6.get_ptr_mut(0) else {
        return drop(ctx, DROP_NO_CONFIG);
    };
    let work = unsafe { &mut *work };
    if let Err(reason) = ipv6::parse_into(ctx, &mut work.ip) {
        return drop(ctx, reason);
    }
    let ip = &work.ip;
    // The node's own business: its addresses, multicast, link-local, the
    // containers' subnet (the bridge forwards within it).
    if ipv6::is_special(&ip.daddr)
        || ipv6::is_link_local(&ip.daddr)
        || ipv6::in_subnet(&ip.daddr, cfg)
    {
        return pass(ctx, PASS_TO_HOST);
    }
    if ip.hop_limit <= 1 {
        return pass(ctx, PASS_TTL_EXPIRING);
    }
    let ports = if ip.frag == Frag::Later || is_icmp6_error(ctx, ip) {
        Err(DROP_NAT_UNSUPPORTED)
    } else {
        l4::parse_at(ctx, ip.proto, ip.l4_off, ip.end)
    };
    if let Ok(ports) = &ports {
        let flow = flow_of(ip, ports);
        if let Some(entry) = conntrack::from_container(&flow, now, ports.tcp_flags, ctx.len()) {
            let translated = rewrite_source(ctx, ip, ports, unsafe { &*entry });
            return send_out(ctx, cfg, work, None, translated);
        }
    }
    let route = fib::lookup6(ctx, ip, cfg.bridge_ifindex, &mut work.fib);
    match route {
        Route::Local => return pass(ctx, PASS_TO_HOST),
        Route::Slow => return pass(ctx, PASS_FIB_SLOW_PATH),
        _ if cfg.flags & CONFIG_F_IPV6_MASQUERADE == 0 => return routed_out(ctx, ip, &route),
        Route::Out { ifindex, .. } | Route::OutNoNeigh6 { ifindex, .. }
            if ifindex != cfg.uplink_ifindex =>
        {
            return pass(ctx, PASS_ROUTED);
        }
        _ => {}
    }
    if ipv6::is_unspecified(&cfg.uplink_ipv6) {
        return drop(ctx, DROP_NO_UPLINK_IPV6);
    }
    let translated = match ports {
        // A container answering a ping from outside has no flow to be
        // translated by: nothing outside could have reached it.
        Ok(ports) if ports.echo_reply => Err(DROP_NAT_UNSUPPORTED),
        Ok(ports) => match new_flow(ctx, &work.ip, &ports, ep, now) {
            0 => Ok(FWD_SNAT),
            reason => Err(reason),
        },
        Err(reason) => Err(reason),
    };
    send_out(ctx, cfg, work, Some(route), translated)
}

/// A new masqueraded flow: claims a port, then rewrites the source. 0 or
/// the drop reason. Out of line: a new flow's keys and entries get a frame
/// of their own rather than adding to the caller's.
#[inline(never)]
fn new_flow(ctx: &TcContext, ip: &Ipv6, ports: &L4, ep: &Endpoint, now: u64) -> u32 {
    let Some(cfg) = CONFIG.get(0) else {
        return DROP_NO_CONFIG;
    };
    let flow = flow_of(ip, ports);
    let made = conntrack::masquerade(&flow, ep, cfg, now, ports.tcp_flags, ctx.len())
        .and_then(|entry| rewrite_source(ctx, ip, ports, unsafe { &*entry }));
    match made {
        Ok(_) => 0,
        Err(reason) => reason,
    }
}

/// `--ipv6-masquerade off` (Docker's routed mode): out as it is, routed
/// by the fast path along the kernel's routes, the hop limit decremented.
#[inline(always)]
fn routed_out(ctx: &TcContext, ip: &Ipv6, route: &Route) -> i32 {
    if let Err(reason) = ipv6::decrement_hop_limit(ctx, ip) {
        return drop(ctx, reason);
    }
    match fib::send(ctx, route) {
        Ok(verdict) => {
            count(ctx, FWD_ROUTED_OUT);
            verdict
        }
        Err(reason) => drop(ctx, reason),
    }
}

/// Rewrites the source to the entry's address and port.
#[inline(always)]
fn rewrite_source(ctx: &TcContext, ip: &Ipv6, ports: &L4, entry: &Nat6Entry) -> Result<u32, u32> {
    let csum = ipv6::l4_csum(ip.proto, ip.l4_off);
    crate::ipv4::set_port(ctx, ports.sport_off, ports.sport, entry.port, csum)?;
    ipv6::set_addr(ctx, IP6_SADDR_OFF, &ip.saddr, &entry.addr, csum)?;
    Ok(FWD_SNAT)
}

/// Out of the uplink after translation, the route looked up again for a
/// known flow (neighbours change), the hop limit decremented.
#[inline(always)]
fn send_out(
    ctx: &TcContext,
    cfg: &BridgeConfig,
    work: &mut Work6,
    route: Option<Route>,
    translated: Result<u32, u32>,
) -> i32 {
    let reason = match translated {
        Ok(reason) => reason,
        Err(reason) => return drop(ctx, reason),
    };
    let route = match route {
        Some(route) => route,
        None => fib::lookup6(ctx, &work.ip, cfg.bridge_ifindex, &mut work.fib),
    };
    let ip = &work.ip;
    match route {
        Route::Out { ifindex, .. } | Route::OutNoNeigh6 { ifindex, .. }
            if ifindex == cfg.uplink_ifindex => {}
        _ => return drop(ctx, DROP_REDIRECT_FAILED),
    }
    if let Err(reason) = ipv6::decrement_hop_limit(ctx, ip) {
        return drop(ctx, reason);
    }
    ctx.set_mark(bridge_mark(cfg.bridge_ifindex));
    match fib::send(ctx, &route) {
        Ok(verdict) => {
            count(ctx, reason);
            verdict
        }
        Err(reason) => drop(ctx, reason),
    }
}
