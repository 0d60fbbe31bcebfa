//! IPv4 a container sends to the gateway's MAC: to the node itself, to a
//! published port of the node (hairpin), or out of the uplink — Docker's
//! `MASQUERADE -s <subnet> ! -o <bridge>` done on the container's own veth.
use aya_ebpf::programs::TcContext;
use ebridge_common::{
    config::{BridgeConfig, CONFIG_F_MASQUERADE},
    endpoint::Endpoint,
    nat::{
        bridge_mark, FragEntry, FragKey, NatEntry, DIR_ORIGINAL, IPPROTO_ICMP, NAT_F_DNAT,
        NAT_F_HAIRPIN,
    },
    stats::*,
};

use crate::{
    conntrack::{self, Flow},
    fib::{self, Route},
    icmp_error,
    ipv4::{self, Frag, Ipv4, L4Csum, IP_DADDR_OFF, IP_SADDR_OFF},
    l4::{self, L4},
    maps::FRAGS,
    publish,
    revnat::{self, Delivery},
    routing,
    stats::{count, drop, pass},
};

#[inline(always)]
pub fn route_from_container(ctx: &TcContext, cfg: &BridgeConfig, ep: &Endpoint, now: u64) -> i32 {
    let ip = match ipv4::parse(ctx) {
        Ok(ip) => ip,
        Err(reason) => return drop(ctx, reason),
    };
    if ipv4::is_special(&ip.daddr) {
        return pass(ctx, PASS_TO_HOST);
    }
    let to_gateway = ipv4::ipv4_eq(&ip.daddr, &cfg.gateway_ipv4);
    // The gateway may be a hairpin flow's far end; the rest of the subnet
    // is the bridge's business.
    if ipv4::in_subnet(&ip.daddr, cfg) && !to_gateway {
        return pass(ctx, PASS_TO_HOST);
    }
    // Expiring here: the kernel sends time-exceeded from the gateway, which
    // makes the node show up in a container's traceroute.
    if !to_gateway && ip.ttl <= 1 {
        return pass(ctx, PASS_TTL_EXPIRING);
    }
    let icmp_error =
        ip.proto == IPPROTO_ICMP && l4::icmp_type(ctx, &ip).is_ok_and(l4::is_icmp_error);
    // Known flows first: replies of published ports are un-DNATed whether or
    // not masquerade is on.
    let ports = if ip.frag == Frag::Later || icmp_error {
        Err(DROP_NAT_UNSUPPORTED)
    } else {
        l4::parse(ctx, &ip)
    };
    if let Ok(ports) = &ports {
        let flow = Flow::of(&ip, ports);
        if let Some(entry) = conntrack::from_container(&flow, now, ports.tcp_flags, ctx.len()) {
            let entry = unsafe { *entry };
            if entry.flags & NAT_F_HAIRPIN != 0 {
                return turn_around(ctx, cfg, &ip, ports, &entry);
            }
            return send_out(ctx, cfg, &ip, None, rewrite_source(ctx, &ip, ports, &entry));
        }
    }
    if to_gateway {
        // The gateway is a node address too (Docker's host-gateway).
        return match &ports {
            Ok(ports) => to_node(ctx, cfg, ep, &ip, ports, now),
            Err(_) => pass(ctx, PASS_TO_HOST),
        };
    }
    let route = fib::lookup(ctx, &ip, cfg.bridge_ifindex);
    match route {
        Route::Local => {
            return match &ports {
                Ok(ports) => to_node(ctx, cfg, ep, &ip, ports, now),
                Err(_) => pass(ctx, PASS_TO_HOST),
            }
        }
        Route::Slow => return pass(ctx, PASS_FIB_SLOW_PATH),
        _ if routing::routes_natively(cfg, &ip.daddr) => {
            return routing::forward_out(ctx, &ip, route);
        }
        Route::Out { ifindex, .. } | Route::OutNoNeigh { ifindex, .. }
            if ifindex != cfg.uplink_ifindex =>
        {
            return pass(ctx, PASS_ROUTED);
        }
        _ => {}
    }
    // Leaving by the uplink: translated or, with masquerade on, dropped —
    // never passed on with a container address. With masquerade off, what
    // belongs to no flow (published-port replies do) is routed as is.
    let masquerading = cfg.flags & CONFIG_F_MASQUERADE != 0;
    let translated = if ip.frag == Frag::Later {
        match later_fragment(ctx, &ip) {
            Err(DROP_FRAG_NO_FIRST) if !masquerading => return pass(ctx, PASS_ROUTED),
            other => other,
        }
    } else if icmp_error {
        match icmp_error::from_container(ctx, cfg, &ip) {
            Err(DROP_ICMP_ERROR_UNTRACKED) if !masquerading => return pass(ctx, PASS_ROUTED),
            other => other.map(|_| FWD_SNAT_ICMP_ERROR),
        }
    } else if !masquerading {
        return pass(ctx, PASS_ROUTED);
    } else {
        match ports {
            // A container answering a ping from outside has no flow to be
            // translated by: nothing outside could have reached it.
            Ok(ports) if ports.echo_reply => Err(DROP_NAT_UNSUPPORTED),
            Ok(ports) => {
                let flow = Flow::of(&ip, &ports);
                conntrack::masquerade(&flow, ep, cfg, now, ports.tcp_flags, ctx.len())
                    .and_then(|entry| rewrite_source(ctx, &ip, &ports, unsafe { &*entry }))
            }
            Err(reason) => Err(reason),
        }
    };
    send_out(ctx, cfg, &ip, Some(route), translated)
}

/// A new flow to one of the node's addresses: a published port is turned
/// around to its container (hairpin); anything else is the node's.
#[inline(always)]
fn to_node(
    ctx: &TcContext,
    cfg: &BridgeConfig,
    ep: &Endpoint,
    ip: &Ipv4,
    ports: &L4,
    now: u64,
) -> i32 {
    let Some(target) = publish::lookup(&ip.daddr, ports.dport, ip.proto) else {
        return pass(ctx, PASS_TO_HOST);
    };
    let flow = Flow::of(ip, ports);
    match conntrack::hairpin(&flow, ep, &target, cfg, now, ports.tcp_flags, ctx.len()) {
        Ok(entry) => turn_around(ctx, cfg, ip, ports, unsafe { &*entry }),
        Err(reason) => drop(ctx, reason),
    }
}

/// Rewrites the source to the entry's address and port (masquerade, or the
/// published address for replies of an inbound flow).
#[inline(always)]
fn rewrite_source(ctx: &TcContext, ip: &Ipv4, ports: &L4, entry: &NatEntry) -> Result<u32, u32> {
    let csum = L4Csum::for_proto(ip.proto, ip.l4_off);
    ipv4::set_port(ctx, ports.sport_off, ports.sport, entry.port, csum)?;
    ipv4::set_addr(ctx, IP_SADDR_OFF, ip.saddr, entry.addr, csum)?;
    if ip.frag == Frag::First {
        let key = FragKey {
            saddr: ip.saddr,
            daddr: ip.daddr,
            id: ip.id,
            proto: ip.proto,
            dir: DIR_ORIGINAL,
        };
        let _ = FRAGS.insert(
            key,
            FragEntry {
                addr: entry.addr,
                ifindex: 0,
                mac: [0; 6],
                _pad: [0; 2],
            },
            0,
        );
    }
    Ok(FWD_SNAT)
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
    let Some(entry) = FRAGS.get_ptr(key) else {
        return Err(DROP_FRAG_NO_FIRST);
    };
    let addr = unsafe { (*entry).addr };
    ipv4::set_addr(ctx, IP_SADDR_OFF, ip.saddr, addr, L4Csum::None)?;
    Ok(FWD_SNAT)
}

/// Out of the uplink after translation: the route is looked up again for
/// every packet (neighbours change), TTL decremented as a router would.
#[inline(always)]
fn send_out(
    ctx: &TcContext,
    cfg: &BridgeConfig,
    ip: &Ipv4,
    route: Option<Route>,
    translated: Result<u32, u32>,
) -> i32 {
    let reason = match translated {
        Ok(reason) => reason,
        Err(reason) => return drop(ctx, reason),
    };
    if ip.ttl <= 1 {
        // Only reached for known flows; the kernel answers time-exceeded
        // for the original packet, which we have already rewritten: drop.
        return drop(ctx, DROP_TTL_EXCEEDED);
    }
    // Known flows look the route up now (neighbours change); new ones
    // already did. Only the source changed since, which the main table
    // does not route on.
    let route = match route {
        Some(route) => route,
        None => match ipv4::parse(ctx) {
            Ok(rewritten) => fib::lookup(ctx, &rewritten, cfg.bridge_ifindex),
            Err(_) => return drop(ctx, DROP_REWRITE_FAILED),
        },
    };
    match route {
        Route::Out { ifindex, .. } | Route::OutNoNeigh { ifindex, .. }
            if ifindex == cfg.uplink_ifindex => {}
        // Translated but not leaving by the uplink: nowhere right to go.
        _ => return drop(ctx, DROP_REDIRECT_FAILED),
    }
    if let Err(reason) = ipv4::decrement_ttl(ctx, ip) {
        return drop(ctx, reason);
    }
    // Tells the uplink's egress programs this is a translated container
    // packet of this bridge, not a node flow to hold.
    ctx.set_mark(bridge_mark(cfg.bridge_ifindex));
    match fib::send(ctx, &route) {
        Ok(verdict) => {
            count(ctx, reason);
            verdict
        }
        Err(reason) => drop(ctx, reason),
    }
}

/// Hairpin: rewrite both ends and hand the packet to the other container
/// (or back to the same one) without leaving the node.
#[inline(always)]
fn turn_around(
    ctx: &TcContext,
    cfg: &BridgeConfig,
    ip: &Ipv4,
    ports: &L4,
    entry: &NatEntry,
) -> i32 {
    let csum = L4Csum::for_proto(ip.proto, ip.l4_off);
    let rewritten = ipv4::set_port(ctx, ports.sport_off, ports.sport, entry.port, csum)
        .and_then(|_| ipv4::set_addr(ctx, IP_SADDR_OFF, ip.saddr, entry.addr, csum))
        .and_then(|_| {
            if entry.flags & NAT_F_DNAT == 0 {
                return Ok(());
            }
            ipv4::set_port(ctx, ports.dport_off, ports.dport, entry.dport, csum)?;
            ipv4::set_addr(ctx, IP_DADDR_OFF, ip.daddr, entry.daddr, csum)
        });
    if let Err(reason) = rewritten {
        return drop(ctx, reason);
    }
    revnat::deliver(
        ctx,
        cfg,
        ip,
        &Delivery {
            ifindex: entry.ifindex,
            mac: entry.mac,
        },
        FWD_HAIRPIN,
    )
}
