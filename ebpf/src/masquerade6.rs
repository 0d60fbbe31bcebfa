//! IPv6 a container sends to the gateway's MAC: to the node itself, or out
//! of the uplink masqueraded behind its global address (Docker 27's
//! ip6tables MASQUERADE), or — with `--ipv6-masquerade off` — routed with
//! the container's own address (Docker's routed mode).
//!
//! eBPF gives a whole call chain 512 bytes of stack, and IPv6's addresses
//! are four times IPv4's: the parsed header, the transport ports and the
//! route lookup's parameters live in a per-CPU work area, and each stage
//! (known flow, new flow, ICMPv6 error) is a function of its own, called
//! from a small dispatcher, so no two big frames are ever on one chain.
use aya_ebpf::{
    bindings::bpf_fib_lookup, btf_maps::PerCpuArray, helpers::generated::bpf_ktime_get_ns,
    macros::btf_map, programs::TcContext,
};
use ebridge_common::{
    config::{BridgeConfig, CONFIG_F_IPV6_MASQUERADE},
    nat::{bridge_mark, Nat6Entry, DIR_ORIGINAL, NAT_F_DNAT, NAT_F_HAIRPIN},
    stats::*,
};

use crate::{
    conntrack::{self, FlowOf},
    fib::{self, Route},
    frag6, icmp6_error,
    ipv4::{Frag, L4Csum},
    ipv6::{self, Ipv6, IP6_DADDR_OFF, IP6_SADDR_OFF, IPPROTO_ICMPV6},
    l4::{self, ICMPV6_INFO_MIN, L4},
    maps::{CONFIG, ENDPOINTS},
    packet::header_at,
    publish,
    revnat::Delivery,
    revnat6,
    stats::{count, drop, pass},
};

pub type Flow6 = FlowOf<[u8; 16]>;

/// Per-CPU room for what the IPv6 egress path keeps while it works.
pub struct Work6 {
    pub ip: Ipv6,
    pub ports: L4,
    pub fib: bpf_fib_lookup,
}

#[btf_map(name = "work6")]
pub static WORK6: PerCpuArray<Work6, 1> = PerCpuArray::new();

/// A stage's answer that is no verdict yet: go on to the next stage.
const GO_ON: i32 = i32::MIN;

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

#[inline(always)]
fn work() -> Option<&'static mut Work6> {
    WORK6.get_ptr_mut(0).map(|w| unsafe { &mut *w })
}

/// An IPv6 packet the endpoint program let through to the gateway's MAC
/// (source checked, FDB learned), called by the entry program after those
/// checks returned, so their frame is off this chain.
#[inline(never)]
pub fn from_container(ctx: TcContext) -> i32 {
    let ctx = &ctx;
    let (Some(cfg), Some(work)) = (CONFIG.get(0), work()) else {
        return drop(ctx, DROP_NO_CONFIG);
    };
    if let Err(reason) = ipv6::parse_into(ctx, &mut work.ip) {
        return drop(ctx, reason);
    }
    let ip = &work.ip;
    let to_gateway = ipv6::ipv6_eq(&ip.daddr, &cfg.gateway_ipv6);
    // The node's own business: multicast, link-local, the containers'
    // subnet (the bridge forwards within it). The gateway may be a hairpin
    // flow's far end.
    if ipv6::is_special(&ip.daddr)
        || ipv6::is_link_local(&ip.daddr)
        || (ipv6::in_subnet(&ip.daddr, cfg) && !to_gateway)
    {
        return pass(ctx, PASS_TO_HOST);
    }
    if !to_gateway && ip.hop_limit <= 1 {
        return pass(ctx, PASS_TTL_EXPIRING);
    }
    let icmp_error = ip.frag != Frag::Later && is_icmp6_error(ctx, ip);
    let has_ports = ip.frag != Frag::Later && !icmp_error;
    let ports = if has_ports {
        l4::parse_at(ctx, ip.proto, ip.l4_off, ip.end)
    } else {
        Err(DROP_NAT_UNSUPPORTED)
    };
    let ports_ok = match ports {
        Ok(p) => {
            work.ports = p;
            true
        }
        Err(_) => false,
    };
    if ports_ok {
        let verdict = known_flow(ctx);
        if verdict != GO_ON {
            return verdict;
        }
    }
    if to_gateway {
        // The gateway is a node address too (Docker's host-gateway).
        return if ports_ok {
            to_node(ctx)
        } else {
            pass(ctx, PASS_TO_HOST)
        };
    }
    let route = fib::lookup6(ctx, &work.ip, cfg.bridge_ifindex, &mut work.fib);
    match route {
        Route::Local if ports_ok => return to_node(ctx),
        Route::Local => return pass(ctx, PASS_TO_HOST),
        Route::Slow => return pass(ctx, PASS_FIB_SLOW_PATH),
        _ if cfg.flags & CONFIG_F_IPV6_MASQUERADE == 0 => return routed_out(ctx, &work.ip, &route),
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
    let reason = if icmp_error {
        icmp_error_out(ctx)
    } else if work.ip.frag == Frag::Later {
        later_fragment_out(ctx)
    } else if !ports_ok {
        ports.err().unwrap_or(DROP_NAT_UNSUPPORTED)
    } else if work.ports.echo_reply {
        // A container answering a ping from outside has no flow to be
        // translated by: nothing outside could have reached it.
        DROP_NAT_UNSUPPORTED
    } else {
        new_flow(ctx)
    };
    if reason != FWD_SNAT && reason != FWD_SNAT_ICMP_ERROR {
        return drop(ctx, reason);
    }
    send_out(ctx, cfg, &work.ip, &route, reason)
}

/// A packet of a flow already masqueraded: translated and sent, or `GO_ON`
/// when the flow is unknown.
#[inline(never)]
fn known_flow(ctx: &TcContext) -> i32 {
    let (Some(cfg), Some(work)) = (CONFIG.get(0), work()) else {
        return drop(ctx, DROP_NO_CONFIG);
    };
    let now = unsafe { bpf_ktime_get_ns() };
    let flow = flow_of(&work.ip, &work.ports);
    let Some(entry) = conntrack::from_container(&flow, now, work.ports.tcp_flags, ctx.len()) else {
        return GO_ON;
    };
    if unsafe { (*entry).flags } & NAT_F_HAIRPIN != 0 {
        return turn_around(ctx, entry);
    }
    let (addr, port) = unsafe { ((*entry).addr, (*entry).port) };
    if let Err(reason) = rewrite_source(ctx, &work.ip, &work.ports, &addr, port) {
        return drop(ctx, reason);
    }
    // The route is looked up again for every packet (neighbours change).
    let route = fib::lookup6(ctx, &work.ip, cfg.bridge_ifindex, &mut work.fib);
    send_out(ctx, cfg, &work.ip, &route, FWD_SNAT)
}

/// A new flow to one of the node's addresses: a published port is turned
/// around to its container (hairpin); anything else is the node's.
#[inline(never)]
fn to_node(ctx: &TcContext) -> i32 {
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let (Some(cfg), Some(ep), Some(work)) =
        (CONFIG.get(0), unsafe { ENDPOINTS.get(ifindex) }, work())
    else {
        return drop(ctx, DROP_NO_CONFIG);
    };
    let (ip, ports) = (&work.ip, &work.ports);
    let Some(target) = publish::lookup(&ip.daddr, ports.dport, ip.proto) else {
        return pass(ctx, PASS_TO_HOST);
    };
    let now = unsafe { bpf_ktime_get_ns() };
    let flow = flow_of(ip, ports);
    match conntrack::hairpin(&flow, ep, &target, cfg, now, ports.tcp_flags, ctx.len()) {
        Ok(entry) => turn_around(ctx, entry),
        Err(reason) => drop(ctx, reason),
    }
}

/// Hairpin: both ends rewritten as the flow's entry says, and the packet
/// handed to the other container (or back to the same one) without
/// leaving the node.
#[inline(never)]
fn turn_around(ctx: &TcContext, entry: *const Nat6Entry) -> i32 {
    let (Some(cfg), Some(work)) = (CONFIG.get(0), work()) else {
        return drop(ctx, DROP_NO_CONFIG);
    };
    let (ip, ports) = (&work.ip, &work.ports);
    let e = unsafe { &*entry };
    let csum = ipv6::l4_csum(ip.proto, ip.l4_off);
    let rewritten = crate::ipv4::set_port(ctx, ports.sport_off, ports.sport, e.port, csum)
        .and_then(|_| ipv6::set_addr(ctx, IP6_SADDR_OFF, &ip.saddr, &e.addr, csum))
        .and_then(|_| {
            if e.flags & NAT_F_DNAT == 0 {
                return Ok(());
            }
            crate::ipv4::set_port(ctx, ports.dport_off, ports.dport, e.dport, csum)?;
            ipv6::set_addr(ctx, IP6_DADDR_OFF, &ip.daddr, &e.daddr, csum)
        });
    if let Err(reason) = rewritten {
        return drop(ctx, reason);
    }
    let to = Delivery {
        ifindex: e.ifindex,
        mac: e.mac,
    };
    revnat6::deliver(ctx, cfg, ip, &to, FWD_HAIRPIN)
}

/// A new masqueraded flow: claims a port, then rewrites the source.
/// `FWD_SNAT` or the drop reason.
#[inline(never)]
fn new_flow(ctx: &TcContext) -> u32 {
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let (Some(cfg), Some(ep), Some(work)) =
        (CONFIG.get(0), unsafe { ENDPOINTS.get(ifindex) }, work())
    else {
        return DROP_NO_CONFIG;
    };
    let now = unsafe { bpf_ktime_get_ns() };
    let flow = flow_of(&work.ip, &work.ports);
    let made = conntrack::masquerade(&flow, ep, cfg, now, work.ports.tcp_flags, ctx.len())
        .and_then(|entry| {
            let (addr, port) = unsafe { ((*entry).addr, (*entry).port) };
            rewrite_source(ctx, &work.ip, &work.ports, &addr, port)
        });
    match made {
        Ok(()) => FWD_SNAT,
        Err(reason) => reason,
    }
}

/// A container's ICMPv6 error about a masqueraded flow, translated:
/// `FWD_SNAT_ICMP_ERROR` or the drop reason.
#[inline(never)]
fn icmp_error_out(ctx: &TcContext) -> u32 {
    let Some(work) = work() else {
        return DROP_NO_CONFIG;
    };
    match icmp6_error::from_container(ctx, &work.ip) {
        Ok(()) => FWD_SNAT_ICMP_ERROR,
        Err(reason) => reason,
    }
}

/// A fragment without the transport header, translated as its first
/// fragment was (`FWD_SNAT`), or dropped when that was never seen: it must
/// not leave with the container's address.
#[inline(never)]
fn later_fragment_out(ctx: &TcContext) -> u32 {
    let Some(work) = work() else {
        return DROP_NO_CONFIG;
    };
    let ip = &work.ip;
    let Some(entry) = frag6::find(ip, DIR_ORIGINAL) else {
        return DROP_FRAG_NO_FIRST;
    };
    // No transport header here, so no checksum to follow the address.
    let addr = unsafe { &(*entry).addr };
    match ipv6::set_addr(ctx, IP6_SADDR_OFF, &ip.saddr, addr, L4Csum::None) {
        Ok(()) => FWD_SNAT,
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

/// Rewrites the source to the NAT address and port.
#[inline(always)]
fn rewrite_source(
    ctx: &TcContext,
    ip: &Ipv6,
    ports: &L4,
    addr: &[u8; 16],
    port: u16,
) -> Result<(), u32> {
    let csum = ipv6::l4_csum(ip.proto, ip.l4_off);
    crate::ipv4::set_port(ctx, ports.sport_off, ports.sport, port, csum)?;
    ipv6::set_addr(ctx, IP6_SADDR_OFF, &ip.saddr, addr, csum)?;
    if ip.frag == Frag::First {
        let nowhere = Delivery {
            ifindex: 0,
            mac: [0; 6],
        };
        frag6::remember(ip, DIR_ORIGINAL, addr, &nowhere);
    }
    Ok(())
}

/// Out of the uplink after translation, the hop limit decremented; a
/// route that does not leave by the uplink has nowhere right to go.
#[inline(always)]
fn send_out(ctx: &TcContext, cfg: &BridgeConfig, ip: &Ipv6, route: &Route, reason: u32) -> i32 {
    match *route {
        Route::Out { ifindex, .. } | Route::OutNoNeigh6 { ifindex, .. }
            if ifindex == cfg.uplink_ifindex => {}
        _ => return drop(ctx, DROP_REDIRECT_FAILED),
    }
    if let Err(reason) = ipv6::decrement_hop_limit(ctx, ip) {
        return drop(ctx, reason);
    }
    ctx.set_mark(bridge_mark(cfg.bridge_ifindex));
    match fib::send(ctx, route) {
        Ok(verdict) => {
            count(ctx, reason);
            verdict
        }
        Err(reason) => drop(ctx, reason),
    }
}
