//! Outside → container: replies to masqueraded flows arriving on the uplink
//! are un-NATed and delivered straight into the container.
use aya_ebpf::{
    bindings::TC_ACT_REDIRECT, helpers::generated::bpf_redirect_peer, programs::TcContext,
};
use ebridge_common::{
    config::{BridgeConfig, CONFIG_F_MASQUERADE},
    nat::{
        FragEntry, FragKey, NatKey, DIR_REPLY, IPPROTO_ICMP, OWNER_CONTAINER, OWNER_OTHER_BRIDGE,
    },
    stats::*,
};

use crate::{
    conntrack::{self, Flow},
    icmp_error,
    icmp_reply::{self, Refusal},
    ipv4::{self, Frag, Ipv4, L4Csum, IP_DADDR_OFF},
    l4,
    maps::{FRAGS, NAT},
    node_flow, publish, routing,
    stats::{count, drop, pass},
};

/// Where a translated packet goes: the container's veth and MAC.
pub struct Delivery {
    pub ifindex: u32,
    pub mac: [u8; 6],
}

/// What becomes of a packet that arrived on the uplink for a node address.
pub enum Outcome {
    /// Translated, into a container.
    Deliver(Delivery, u32),
    /// For a container but not forwardable: answered with an ICMP error.
    Refuse(Refusal),
    /// Not a container's: on to the next program or the node's stack.
    Pass(u32),
}

#[inline(always)]
pub fn from_uplink(ctx: &TcContext, cfg: &BridgeConfig, now: u64) -> i32 {
    // Not ours to judge: malformed or foreign traffic is the host's.
    let Ok(ip) = ipv4::parse(ctx) else {
        return pass(ctx, PASS_UPLINK_HOST);
    };
    let icmp_error =
        ip.proto == IPPROTO_ICMP && l4::icmp_type(ctx, &ip).is_ok_and(l4::is_icmp_error);
    // A pod's own address (the gateway is the node's).
    let outcome = if ipv4::in_subnet(&ip.daddr, cfg) && !ipv4::ipv4_eq(&ip.daddr, &cfg.gateway_ipv4)
    {
        if routing::may_enter(cfg, &ip.saddr) {
            Ok(routing::to_pod(ctx, cfg, &ip, icmp_error))
        } else if cfg.flags & CONFIG_F_MASQUERADE != 0 {
            // Docker's FORWARD chain: containers are reachable from outside
            // only through published ports.
            return drop(ctx, DROP_NOT_PUBLISHED);
        } else {
            // Routed mode: the kernel forwards it.
            return pass(ctx, PASS_UPLINK_HOST);
        }
    } else if !ipv4::ipv4_eq(&ip.daddr, &cfg.uplink_ipv4) && !publish::is_node_addr(&ip.daddr) {
        return pass(ctx, PASS_UPLINK_HOST);
    } else if ip.frag == Frag::Later {
        later_fragment(ctx, &ip)
    } else if icmp_error {
        icmp_error::to_container(ctx, cfg, &ip)
    } else {
        reply(ctx, cfg, &ip, now)
    };
    match outcome {
        Ok(Outcome::Deliver(delivery, reason)) => deliver(ctx, cfg, &ip, &delivery, reason),
        Ok(Outcome::Refuse(why)) => icmp_reply::send(ctx, cfg, &ip, why),
        Ok(Outcome::Pass(reason)) => pass(ctx, reason),
        Err(reason) => drop(ctx, reason),
    }
}

/// A reply (or its first fragment): conntrack, then rewrite destination
/// address and port back to the container's. A packet for the node itself
/// (a node flow's reply, or no flow at all) passes whatever its TTL or
/// size; one for a container is checked as a router would first, before
/// any flow is created or accounted.
#[inline(always)]
fn reply(ctx: &TcContext, cfg: &BridgeConfig, ip: &Ipv4, now: u64) -> Result<Outcome, u32> {
    let Ok(ports) = l4::parse(ctx, ip) else {
        return Ok(Outcome::Pass(PASS_UPLINK_HOST));
    };
    let key = NatKey {
        saddr: ip.saddr,
        daddr: ip.daddr,
        sport: ports.sport,
        dport: ports.dport,
        proto: ip.proto,
        dir: DIR_REPLY,
        _pad: [0; 2],
    };
    let (entry, reason) = match NAT.get_ptr_mut(key) {
        Some(entry) => {
            let owner = unsafe { (*entry).owner };
            if owner != OWNER_CONTAINER {
                conntrack::on_reply(&key, entry, now, ports.tcp_flags, ctx.len());
                if owner == OWNER_OTHER_BRIDGE {
                    return Ok(Outcome::Pass(PASS_OTHER_BRIDGE));
                }
                let csum = L4Csum::for_proto(ip.proto, ip.l4_off);
                if !node_flow::restore(ctx, csum, &ports, unsafe { (*entry).port }) {
                    return Err(DROP_REWRITE_FAILED);
                }
                return Ok(Outcome::Pass(PASS_NODE_FLOW_IN));
            }
            if let Some(why) = icmp_reply::refusal(ctx, cfg, ip, unsafe { (*entry).ifindex }) {
                return Ok(Outcome::Refuse(why));
            }
            conntrack::on_reply(&key, entry, now, ports.tcp_flags, ctx.len());
            (entry, FWD_REVNAT)
        }
        None => {
            let Some(target) = publish::lookup(&ip.daddr, ports.dport, ip.proto) else {
                return Ok(Outcome::Pass(PASS_UPLINK_HOST));
            };
            if let Some(why) = icmp_reply::refusal(ctx, cfg, ip, target.ifindex) {
                return Ok(Outcome::Refuse(why));
            }
            let flow = Flow::of(ip, &ports);
            let entry = conntrack::inbound(&flow, &target, now, ports.tcp_flags, ctx.len())?;
            (entry, FWD_DNAT)
        }
    };
    let (addr, port, ifindex, mac) =
        unsafe { ((*entry).addr, (*entry).port, (*entry).ifindex, (*entry).mac) };
    let csum = L4Csum::for_proto(ip.proto, ip.l4_off);
    ipv4::set_port(ctx, ports.dport_off, ports.dport, port, csum)?;
    ipv4::set_addr(ctx, IP_DADDR_OFF, ip.daddr, addr, csum)?;
    if ip.frag == Frag::First {
        let key = FragKey {
            saddr: ip.saddr,
            daddr: ip.daddr,
            id: ip.id,
            proto: ip.proto,
            dir: DIR_REPLY,
        };
        let _ = FRAGS.insert(
            key,
            FragEntry {
                addr,
                ifindex,
                mac,
                _pad: [0; 2],
            },
            0,
        );
    }
    Ok(Outcome::Deliver(Delivery { ifindex, mac }, reason))
}

#[inline(always)]
fn later_fragment(ctx: &TcContext, ip: &Ipv4) -> Result<Outcome, u32> {
    let key = FragKey {
        saddr: ip.saddr,
        daddr: ip.daddr,
        id: ip.id,
        proto: ip.proto,
        dir: DIR_REPLY,
    };
    // Unknown: a fragment for the node itself.
    let Some(entry) = FRAGS.get_ptr(key) else {
        return Ok(Outcome::Pass(PASS_UPLINK_HOST));
    };
    let (addr, ifindex, mac) = unsafe { ((*entry).addr, (*entry).ifindex, (*entry).mac) };
    if ip.ttl <= 1 {
        return Err(DROP_TTL_EXCEEDED);
    }
    ipv4::set_addr(ctx, IP_DADDR_OFF, ip.daddr, addr, L4Csum::None)?;
    Ok(Outcome::Deliver(Delivery { ifindex, mac }, FWD_REVNAT))
}

/// Decrement TTL, set the MACs and enter the container's netns.
#[inline(always)]
pub fn deliver(ctx: &TcContext, cfg: &BridgeConfig, ip: &Ipv4, to: &Delivery, reason: u32) -> i32 {
    if ip.ttl <= 1 {
        return drop(ctx, DROP_TTL_EXCEEDED);
    }
    if ipv4::decrement_ttl(ctx, ip).is_err()
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
