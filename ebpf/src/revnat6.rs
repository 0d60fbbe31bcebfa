//! Outside → container over IPv6: replies to masqueraded flows arriving on
//! the uplink are un-NATed and delivered straight into the container.
use aya_ebpf::{
    bindings::TC_ACT_REDIRECT, btf_maps::PerCpuArray, helpers::generated::bpf_redirect_peer,
    macros::btf_map, programs::TcContext,
};
use ebridge_common::{
    config::{BridgeConfig, CONFIG_F_IPV6, CONFIG_F_IPV6_MASQUERADE},
    nat::{NatKeyOf, DIR_REPLY, OWNER_CONTAINER, OWNER_OTHER_BRIDGE},
    stats::*,
};

use crate::{
    conntrack, frag6, icmp6_error, icmp6_reply,
    ipv4::{Frag, L4Csum},
    ipv6::{self, Ipv6, IP6_DADDR_OFF},
    l4,
    maps::{CONFIG, ENDPOINTS, ENDPOINT_BY_IP6, NAT6},
    masquerade6::{self, is_icmp6_error},
    node_flow, publish,
    revnat::{Delivery, Outcome},
    stats::{count, drop, pass},
};

/// The parsed header, per CPU: the stages below each have a frame of
/// their own, and none has room for another copy of it. `refusal` is
/// what a stage that answered `REFUSED` found (`icmp6_reply::refusal`).
pub struct In6 {
    ip: Ipv6,
    refusal: u32,
}

#[btf_map(name = "ip6_in")]
static IP6_IN: PerCpuArray<In6, 1> = PerCpuArray::new();

/// A stage's answer: the packet is to be answered with an ICMPv6 error
/// (sent from the dispatcher, so its frame is not on the stage's chain).
const REFUSED: i32 = i32::MIN;

#[inline(always)]
pub fn from_uplink(ctx: &TcContext, cfg: &BridgeConfig, now: u64) -> i32 {
    if cfg.flags & CONFIG_F_IPV6 == 0 {
        return pass(ctx, PASS_UPLINK_HOST);
    }
    let Some(work) = IP6_IN.get_ptr_mut(0).map(|p| unsafe { &mut *p }) else {
        return pass(ctx, PASS_UPLINK_HOST);
    };
    // Not ours to judge: malformed or foreign traffic is the host's.
    if ipv6::parse_into(ctx, &mut work.ip).is_err() {
        return pass(ctx, PASS_UPLINK_HOST);
    }
    let ip = &work.ip;
    if ipv6::in_subnet(&ip.daddr, cfg) && !ipv6::ipv6_eq(&ip.daddr, &cfg.gateway_ipv6) {
        // As for IPv4: with masquerade on, containers are reachable from
        // outside only through published ports; routed, the packet goes
        // straight in.
        if cfg.flags & CONFIG_F_IPV6_MASQUERADE != 0 {
            return drop(ctx, DROP_NOT_PUBLISHED);
        }
        return to_pod(ctx, cfg, ip);
    }
    // Replies come to the masquerade address; published ports answer on
    // every node address.
    if !ipv6::ipv6_eq(&ip.daddr, &cfg.uplink_ipv6) && !publish::is_node_addr(&ip.daddr) {
        return pass(ctx, PASS_UPLINK_HOST);
    }
    if ip.frag == Frag::Later {
        return match later_fragment(ctx, ip) {
            Ok(Some(delivery)) => deliver(ctx, cfg, ip, &delivery, FWD_REVNAT),
            Ok(None) => pass(ctx, PASS_UPLINK_HOST),
            Err(reason) => drop(ctx, reason),
        };
    }
    if is_icmp6_error(ctx, ip) {
        return icmp_error_in(ctx, ip);
    }
    match flow_in(ctx, ip, now) {
        REFUSED => icmp6_reply::send(ctx, ip, work.refusal),
        verdict => verdict,
    }
}

/// Records why the packet is refused, for the dispatcher to answer.
#[inline(always)]
fn refuse(why: u32) -> i32 {
    if let Some(work) = IP6_IN.get_ptr_mut(0) {
        unsafe { (*work).refusal = why };
    }
    REFUSED
}

/// An ICMPv6 error about a container's flow, translated and delivered.
/// Out of line, as every stage here: the IPv6 uplink path keeps its
/// parsed header on the stack, and eBPF gives a call chain 512 bytes.
#[inline(never)]
fn icmp_error_in(ctx: &TcContext, ip: &Ipv6) -> i32 {
    let Some(cfg) = CONFIG.get(0) else {
        return drop(ctx, DROP_NO_CONFIG);
    };
    match icmp6_error::to_container(ctx, cfg, ip) {
        Ok(Outcome::Deliver(delivery, reason)) => deliver(ctx, cfg, ip, &delivery, reason),
        Ok(Outcome::Pass(reason)) => pass(ctx, reason),
        // Never an answer to an ICMPv6 error.
        Ok(Outcome::Refuse(_)) => drop(ctx, DROP_TTL_EXCEEDED),
        Err(reason) => drop(ctx, reason),
    }
}

/// A reply to a container's flow, or a new flow to a published port:
/// destination address and port rewritten to the container's, delivered.
/// Neither: the node's own.
#[inline(never)]
fn flow_in(ctx: &TcContext, ip: &Ipv6, now: u64) -> i32 {
    let Some(cfg) = CONFIG.get(0) else {
        return drop(ctx, DROP_NO_CONFIG);
    };
    let Ok(ports) = l4::parse_at(ctx, ip.proto, ip.l4_off, ip.end) else {
        return pass(ctx, PASS_UPLINK_HOST);
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
    let (entry, reason) = match NAT6.get_ptr_mut(key) {
        Some(entry) => {
            let owner = unsafe { (*entry).owner };
            if owner != OWNER_CONTAINER {
                conntrack::on_reply(&key, entry, now, ports.tcp_flags, ctx.len());
                if owner == OWNER_OTHER_BRIDGE {
                    return pass(ctx, PASS_OTHER_BRIDGE);
                }
                // A node flow: its port back if it was moved, then the stack.
                let csum = ipv6::l4_csum(ip.proto, ip.l4_off);
                if !node_flow::restore(ctx, csum, &ports, unsafe { (*entry).port }) {
                    return drop(ctx, DROP_REWRITE_FAILED);
                }
                return pass(ctx, PASS_NODE_FLOW_IN);
            }
            // Checked as a router would, before the flow is accounted.
            if let Some(why) = icmp6_reply::refusal(ctx, cfg, ip, unsafe { (*entry).ifindex }) {
                return refuse(why);
            }
            conntrack::on_reply(&key, entry, now, ports.tcp_flags, ctx.len());
            (entry, FWD_REVNAT)
        }
        None => {
            let Some(target) = publish::lookup(&ip.daddr, ports.dport, ip.proto) else {
                return pass(ctx, PASS_UPLINK_HOST);
            };
            // Before any flow is created.
            if let Some(why) = icmp6_reply::refusal(ctx, cfg, ip, target.ifindex) {
                return refuse(why);
            }
            let flow = masquerade6::flow_of(ip, &ports);
            match conntrack::inbound(&flow, &target, now, ports.tcp_flags, ctx.len()) {
                Ok(entry) => (entry, FWD_DNAT),
                Err(reason) => return drop(ctx, reason),
            }
        }
    };
    let (port, ifindex, mac) = unsafe { ((*entry).port, (*entry).ifindex, (*entry).mac) };
    let addr = unsafe { &(*entry).addr };
    let csum = ipv6::l4_csum(ip.proto, ip.l4_off);
    let rewritten = crate::ipv4::set_port(ctx, ports.dport_off, ports.dport, port, csum)
        .and_then(|_| ipv6::set_addr(ctx, IP6_DADDR_OFF, &ip.daddr, addr, csum));
    if let Err(reason) = rewritten {
        return drop(ctx, reason);
    }
    let to = Delivery { ifindex, mac };
    if ip.frag == Frag::First {
        frag6::remember(ip, DIR_REPLY, addr, &to);
    }
    deliver(ctx, cfg, ip, &to, reason)
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
    // ICMPv6 errors are never answered with one.
    if !is_icmp6_error(ctx, ip) {
        if let Some(why) = icmp6_reply::refusal(ctx, cfg, ip, ifindex) {
            return icmp6_reply::send(ctx, ip, why);
        }
    }
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
