//! IPv4 a container sends to the gateway's MAC: to the node itself, to a
//! published port of the node (hairpin), or out of the uplink — Docker's
//! `MASQUERADE -s <subnet> ! -o <bridge>` done on the container's own veth.
use aya_ebpf::programs::TcContext;
use ebridge_common::{
    config::{BridgeConfig, CONFIG_F_MASQUERADE},
    endpoint::Endpoint,
    nat::{FragEntry, FragKey, NatEntry, DIR_ORIGINAL, IPPROTO_ICMP, NAT_F_DNAT, NAT_F_HAIRPIN},
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
    if ip.frag == Frag::Later {
        if to_gateway {
            return pass(ctx, PASS_TO_HOST);
        }
        return send_out(ctx, cfg, &ip, later_fragment(ctx, &ip));
    }
    if ip.proto == IPPROTO_ICMP && l4::icmp_type(ctx, &ip).is_ok_and(l4::is_icmp_error) {
        if to_gateway {
            return pass(ctx, PASS_TO_HOST);
        }
        return send_out(
            ctx,
            cfg,
            &ip,
            icmp_error::from_container(ctx, cfg, &ip).map(|_| FWD_SNAT_ICMP_ERROR),
        );
    }
    let ports = match l4::parse(ctx, &ip) {
        Ok(ports) => ports,
        // Anything but TCP/UDP/echo to the node is the node's; going out it
        // cannot be masqueraded and must not leak.
        Err(_) if to_gateway => return pass(ctx, PASS_TO_HOST),
        Err(reason) => return drop(ctx, reason),
    };
    let flow = Flow {
        proto: ip.proto,
        saddr: ip.saddr,
        daddr: ip.daddr,
        sport: ports.sport,
        dport: ports.dport,
    };
    if let Some(entry) = conntrack::from_container(&flow, now, ports.tcp_flags, ctx.len()) {
        let entry = unsafe { *entry };
        if entry.flags & NAT_F_HAIRPIN != 0 {
            return turn_around(ctx, cfg, &ip, &ports, &entry);
        }
        return send_out(ctx, cfg, &ip, rewrite_source(ctx, &ip, &ports, &entry));
    }
    if to_gateway {
        return pass(ctx, PASS_TO_HOST);
    }
    new_flow(ctx, cfg, ep, &ip, &ports, &flow, now)
}

/// First packet of a flow: to the node (a published port, or the node's
/// own business), or out of the uplink (masqueraded), or routed elsewhere.
#[inline(always)]
fn new_flow(
    ctx: &TcContext,
    cfg: &BridgeConfig,
    ep: &Endpoint,
    ip: &Ipv4,
    ports: &L4,
    flow: &Flow,
    now: u64,
) -> i32 {
    match fib::lookup(ctx, ip, cfg.bridge_ifindex) {
        Route::Local => {
            let Some(target) = publish::lookup(&ip.daddr, ports.dport, ip.proto) else {
                return pass(ctx, PASS_TO_HOST);
            };
            match conntrack::hairpin(flow, ep, &target, cfg, now, ports.tcp_flags, ctx.len()) {
                Ok(entry) => turn_around(ctx, cfg, ip, ports, unsafe { &*entry }),
                Err(reason) => drop(ctx, reason),
            }
        }
        Route::Slow => pass(ctx, PASS_FIB_SLOW_PATH),
        Route::Out { ifindex, .. } | Route::OutNoNeigh { ifindex, .. }
            if ifindex != cfg.uplink_ifindex =>
        {
            pass(ctx, PASS_ROUTED)
        }
        _ if cfg.flags & CONFIG_F_MASQUERADE == 0 => pass(ctx, PASS_ROUTED),
        _ => {
            let translated = conntrack::masquerade(flow, ep, cfg, now, ports.tcp_flags, ctx.len())
                .and_then(|entry| rewrite_source(ctx, ip, ports, unsafe { &*entry }));
            send_out(ctx, cfg, ip, translated)
        }
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
fn send_out(ctx: &TcContext, cfg: &BridgeConfig, ip: &Ipv4, translated: Result<u32, u32>) -> i32 {
    let reason = match translated {
        Ok(reason) => reason,
        Err(reason) => return drop(ctx, reason),
    };
    if ip.ttl <= 1 {
        // Only reached for known flows; the kernel answers time-exceeded
        // for the original packet, which we have already rewritten: drop.
        return drop(ctx, DROP_TTL_EXCEEDED);
    }
    let Ok(rewritten) = ipv4::parse(ctx) else {
        return drop(ctx, DROP_REWRITE_FAILED);
    };
    let route = fib::lookup(ctx, &rewritten, cfg.bridge_ifindex);
    match route {
        Route::Out { ifindex, .. } | Route::OutNoNeigh { ifindex, .. }
            if ifindex == cfg.uplink_ifindex => {}
        // Translated but not leaving by the uplink: nowhere right to go.
        _ => return drop(ctx, DROP_REDIRECT_FAILED),
    }
    if let Err(reason) = ipv4::decrement_ttl(ctx, ip) {
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
