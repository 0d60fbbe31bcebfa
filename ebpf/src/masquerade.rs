//! Container → outside: Docker's `MASQUERADE -s <subnet> ! -o <bridge>`
//! done on the container's own veth, then straight out of the uplink.
use aya_ebpf::programs::TcContext;
use ebridge_common::{
    config::{BridgeConfig, CONFIG_F_MASQUERADE},
    endpoint::Endpoint,
    nat::{FragEntry, FragKey, DIR_ORIGINAL, IPPROTO_ICMP},
    stats::*,
};

use crate::{
    conntrack::{self, Flow},
    fib::{self, Route},
    icmp_error,
    ipv4::{self, Frag, Ipv4, L4Csum, IP_SADDR_OFF},
    l4,
    maps::FRAGS,
    stats::{count, drop, pass},
};

/// An IPv4 frame from a container addressed to the gateway's MAC: to the
/// node itself, or to be routed out.
#[inline(always)]
pub fn route_from_container(ctx: &TcContext, cfg: &BridgeConfig, ep: &Endpoint, now: u64) -> i32 {
    let ip = match ipv4::parse(ctx) {
        Ok(ip) => ip,
        Err(reason) => return drop(ctx, reason),
    };
    if ipv4::in_subnet(&ip.daddr, cfg) || ipv4::is_special(&ip.daddr) {
        return pass(ctx, PASS_TO_HOST);
    }
    if cfg.flags & CONFIG_F_MASQUERADE == 0 {
        return pass(ctx, PASS_ROUTED);
    }
    let route = fib::lookup(ctx, &ip, cfg.bridge_ifindex);
    match route {
        Route::Local => return pass(ctx, PASS_TO_HOST),
        Route::Slow => return pass(ctx, PASS_FIB_SLOW_PATH),
        Route::Out { ifindex, .. } | Route::OutNoNeigh { ifindex, .. }
            if ifindex != cfg.uplink_ifindex =>
        {
            return pass(ctx, PASS_ROUTED);
        }
        _ => {}
    }
    if ip.ttl <= 1 {
        return pass(ctx, PASS_TTL_EXPIRING);
    }
    let translated = if ip.frag == Frag::Later {
        later_fragment(ctx, &ip)
    } else if ip.proto == IPPROTO_ICMP && l4::icmp_type(ctx, &ip).is_ok_and(l4::is_icmp_error) {
        icmp_error::from_container(ctx, cfg, &ip).map(|_| FWD_SNAT_ICMP_ERROR)
    } else {
        snat(ctx, cfg, ep, &ip, now)
    };
    let reason = match translated {
        Ok(reason) => reason,
        Err(reason) => return drop(ctx, reason),
    };
    if let Err(reason) = ipv4::decrement_ttl(ctx, &ip) {
        return drop(ctx, reason);
    }
    match fib::send(ctx, &route) {
        Ok(verdict) => {
            count(ctx, reason);
            verdict
        }
        Err(reason) => drop(ctx, reason),
    }
}

/// TCP, UDP or ICMP echo with its L4 header: conntrack, then rewrite the
/// source address and port.
#[inline(always)]
fn snat(
    ctx: &TcContext,
    cfg: &BridgeConfig,
    ep: &Endpoint,
    ip: &Ipv4,
    now: u64,
) -> Result<u32, u32> {
    let ports = l4::parse(ctx, ip)?;
    let flow = Flow {
        proto: ip.proto,
        saddr: ip.saddr,
        daddr: ip.daddr,
        sport: ports.sport,
        dport: ports.dport,
    };
    let entry = conntrack::egress(&flow, ep, cfg, now, ports.tcp_flags, ctx.len())?;
    let (addr, port) = unsafe { ((*entry).addr, (*entry).port) };
    let csum = L4Csum::for_proto(ip.proto, ip.l4_off);
    ipv4::set_port(ctx, ports.sport_off, ports.sport, port, csum)?;
    ipv4::set_addr(ctx, IP_SADDR_OFF, ip.saddr, addr, csum)?;
    if ip.frag == Frag::First {
        remember_fragments(ip, addr);
    }
    Ok(FWD_SNAT)
}

#[inline(always)]
fn remember_fragments(ip: &Ipv4, addr: [u8; 4]) {
    let key = FragKey {
        saddr: ip.saddr,
        daddr: ip.daddr,
        id: ip.id,
        proto: ip.proto,
        dir: DIR_ORIGINAL,
    };
    let entry = FragEntry {
        addr,
        ifindex: 0,
        mac: [0; 6],
        _pad: [0; 2],
    };
    let _ = FRAGS.insert(key, entry, 0);
}

/// No L4 header: translated as its first fragment was, or dropped.
#[inline(always)]
fn later_fragment(ctx: &TcContext, ip: &Ipv4) -> Result<u32, u32> {
    let key = FragKey {
        saddr: ip.saddr,
        daddr: ip.daddr,
        id: ip.id,
        proto: ip.proto,
        dir: DIR_ORIGINAL,
    };
    let addr = match FRAGS.get_ptr(key) {
        Some(entry) => unsafe { (*entry).addr },
        None => return Err(DROP_FRAG_NO_FIRST),
    };
    ipv4::set_addr(ctx, IP_SADDR_OFF, ip.saddr, addr, L4Csum::None)?;
    Ok(FWD_SNAT)
}
