//! Outside → container over IPv6: replies to masqueraded flows arriving on
//! the uplink are un-NATed and delivered straight into the container.
use aya_ebpf::{
    bindings::TC_ACT_REDIRECT, helpers::generated::bpf_redirect_peer, programs::TcContext,
};
use ebridge_common::{
    config::{BridgeConfig, CONFIG_F_IPV6, CONFIG_F_IPV6_MASQUERADE},
    nat::{NatKeyOf, DIR_REPLY, OWNER_CONTAINER, OWNER_OTHER_BRIDGE},
    stats::*,
};

use crate::{
    conntrack, frag6, icmp6_error,
    ipv4::{Frag, L4Csum},
    ipv6::{self, Ipv6, IP6_DADDR_OFF},
    l4,
    maps::{ENDPOINTS, ENDPOINT_BY_IP6, NAT6},
    masquerade6::is_icmp6_error,
    revnat::Delivery,
    stats::{count, drop, pass},
};

#[inline(always)]
pub fn from_uplink(ctx: &TcContext, cfg: &BridgeConfig, now: u64) -> i32 {
    if cfg.flags & CONFIG_F_IPV6 == 0 {
        return pass(ctx, PASS_UPLINK_HOST);
    }
    // Not ours to judge: malformed or foreign traffic is the host's.
    let Ok(ip) = ipv6::parse(ctx) else {
        return pass(ctx, PASS_UPLINK_HOST);
    };
    if ipv6::in_subnet(&ip.daddr, cfg) && !ipv6::ipv6_eq(&ip.daddr, &cfg.gateway_ipv6) {
        // As for IPv4: with masquerade on, containers are reachable from
        // outside only through published ports; routed, the packet goes
        // straight in.
        if cfg.flags & CONFIG_F_IPV6_MASQUERADE != 0 {
            return drop(ctx, DROP_NOT_PUBLISHED);
        }
        return to_pod(ctx, cfg, &ip);
    }
    if !ipv6::ipv6_eq(&ip.daddr, &cfg.uplink_ipv6) {
        return pass(ctx, PASS_UPLINK_HOST);
    }
    if ip.frag == Frag::Later {
        return match later_fragment(ctx, &ip) {
            Ok(Some(delivery)) => deliver(ctx, cfg, &ip, &delivery, FWD_REVNAT),
            Ok(None) => pass(ctx, PASS_UPLINK_HOST),
            Err(reason) => drop(ctx, reason),
        };
    }
    if is_icmp6_error(ctx, &ip) {
        return match icmp6_error::to_container(ctx, cfg, &ip) {
            Ok(Some(delivery)) => deliver(ctx, cfg, &ip, &delivery, FWD_REVNAT_ICMP_ERROR),
            Ok(None) => pass(ctx, PASS_UPLINK_HOST),
            Err(reason) => drop(ctx, reason),
        };
    }
    match reply(ctx, &ip, now) {
        Ok(Some(delivery)) => deliver(ctx, cfg, &ip, &delivery, FWD_REVNAT),
        Ok(None) => pass(ctx, PASS_UPLINK_HOST),
        Err(reason) => drop(ctx, reason),
    }
}

/// A reply: conntrack, then destination address and port back to the
/// container's. `None`: not a container flow's (the node's own).
#[inline(always)]
fn reply(ctx: &TcContext, ip: &Ipv6, now: u64) -> Result<Option<Delivery>, u32> {
    let Ok(ports) = l4::parse_at(ctx, ip.proto, ip.l4_off, ip.end) else {
        return Ok(None);
    };
    let key = NatKeyOf {
        saddr: ip.saddr,
        daddr: ip.daddr,
        sport: ports.sport,
        dport: ports.dport,
        proto: ip.proto,
        dir: DIR_REPLY,
        _pad: [0; 2],
    };
    let Some(entry) = NAT6.get_ptr_mut(key) else {
        return Ok(None);
    };
    let owner = unsafe { (*entry).owner };
    if owner == OWNER_OTHER_BRIDGE || owner != OWNER_CONTAINER {
        return Ok(None);
    }
    if ip.hop_limit <= 1 {
        return Err(DROP_TTL_EXCEEDED);
    }
    conntrack::on_reply(&key, entry, now, ports.tcp_flags, ctx.len());
    let (addr, port, ifindex, mac) =
        unsafe { ((*entry).addr, (*entry).port, (*entry).ifindex, (*entry).mac) };
    let csum = ipv6::l4_csum(ip.proto, ip.l4_off);
    crate::ipv4::set_port(ctx, ports.dport_off, ports.dport, port, csum)?;
    ipv6::set_addr(ctx, IP6_DADDR_OFF, &ip.daddr, &addr, csum)?;
    let to = Delivery { ifindex, mac };
    if ip.frag == Frag::First {
        frag6::remember(ip, DIR_REPLY, &addr, &to);
    }
    Ok(Some(to))
}

/// A fragment without the transport header, delivered where its first
/// fragment went. `None`: no first fragment seen, so the node's own.
#[inline(always)]
fn later_fragment(ctx: &TcContext, ip: &Ipv6) -> Result<Option<Delivery>, u32> {
    let Some(entry) = frag6::find(ip, DIR_REPLY) else {
        return Ok(None);
    };
    if ip.hop_limit <= 1 {
        return Err(DROP_TTL_EXCEEDED);
    }
    let (ifindex, mac) = unsafe { ((*entry).ifindex, (*entry).mac) };
    let addr = unsafe { &(*entry).addr };
    ipv6::set_addr(ctx, IP6_DADDR_OFF, &ip.daddr, addr, L4Csum::None)?;
    Ok(Some(Delivery { ifindex, mac }))
}

/// Routed mode: a packet for a container's own address, delivered as is.
/// No such container: the kernel answers (address unreachable).
#[inline(always)]
fn to_pod(ctx: &TcContext, cfg: &BridgeConfig, ip: &Ipv6) -> i32 {
    let Some(ifindex) = (unsafe { ENDPOINT_BY_IP6.get(ip.daddr) }).copied() else {
        return pass(ctx, PASS_NO_SUCH_POD);
    };
    let Some(ep) = (unsafe { ENDPOINTS.get(ifindex) }) else {
        return pass(ctx, PASS_NO_SUCH_POD);
    };
    let to = Delivery {
        ifindex,
        mac: ep.mac,
    };
    deliver(ctx, cfg, ip, &to, FWD_ROUTED_IN)
}

/// Decrement the hop limit, set the MACs and enter the container's netns.
#[inline(always)]
pub fn deliver(ctx: &TcContext, cfg: &BridgeConfig, ip: &Ipv6, to: &Delivery, reason: u32) -> i32 {
    if ip.hop_limit <= 1 {
        return drop(ctx, DROP_TTL_EXCEEDED);
    }
    if ipv6::decrement_hop_limit(ctx, ip).is_err()
        || ctx.store(0, &to.mac, 0).is_err()
        || ctx.store(6, &cfg.bridge_mac, 0).is_err()
    {
        return drop(ctx, DROP_REWRITE_FAILED);
    }
    let rc = unsafe { bpf_redirect_peer(to.ifindex, 0) };
    if rc != TC_ACT_REDIRECT as i64 {
        return drop(ctx, DROP_REDIRECT_FAILED);
    }
    count(ctx, reason);
    TC_ACT_REDIRECT
}
