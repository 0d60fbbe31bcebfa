//! The node's own flows through the uplink address share the port space
//! with masqueraded containers, as MASQUERADE's flows share the kernel's
//! conntrack with the node's. Every flow the node starts from the uplink
//! address is held in the `nat` table by its reply tuple (a reservation),
//! so no container flow can claim it and its replies go to the node's
//! stack. A node flow that finds its tuple already held by a container
//! flow has its source port moved to a free one on the way out and back
//! on the way in (Cilium tracks host flows in its SNAT table the same way).
//! Flows of another ebridge bridge on the same uplink are held the same
//! way, by the mark that bridge put on them, but never moved.
use aya_ebpf::{bindings::BPF_NOEXIST, programs::TcContext};
use ebridge_common::{
    config::BridgeConfig,
    nat::{NatEntryOf, NatKeyOf, DIR_NODE, DIR_REPLY, OWNER_NODE, OWNER_OTHER_BRIDGE},
    stats::*,
};

use crate::{
    conntrack::{self, FlowOf},
    family::Addr,
    ipv4::{self, Frag, Ipv4, L4Csum},
    ipv6::{self, Ipv6},
    l4::{self, L4},
    masquerade6,
    stats::pass,
};

/// An IPv4 packet leaving by the uplink from the masquerade address that
/// this bridge's endpoint program did not send: the node's (or, with
/// `other_bridge`, another bridge's). Always leaves; only its source port
/// may change.
#[inline(always)]
pub fn leaving(
    ctx: &TcContext,
    cfg: &BridgeConfig,
    ip: &Ipv4,
    other_bridge: bool,
    now: u64,
) -> i32 {
    // Later fragments carry no ports: the first one held the tuple.
    if ip.frag == Frag::Later {
        return pass(ctx, PASS_NODE_FLOW_OUT);
    }
    let Ok(ports) = l4::parse(ctx, ip) else {
        return pass(ctx, PASS_NODE_FLOW_OUT);
    };
    let flow = conntrack::Flow::of(ip, &ports);
    let csum = L4Csum::for_proto(ip.proto, ip.l4_off);
    hold(ctx, cfg, &flow, &ports, csum, other_bridge, now)
}

/// The same for IPv6, from the uplink's IPv6 masquerade address.
#[inline(always)]
pub fn leaving6(
    ctx: &TcContext,
    cfg: &BridgeConfig,
    ip: &Ipv6,
    other_bridge: bool,
    now: u64,
) -> i32 {
    if ip.frag == Frag::Later {
        return pass(ctx, PASS_NODE_FLOW_OUT);
    }
    let Ok(ports) = l4::parse_at(ctx, ip.proto, ip.l4_off, ip.end) else {
        return pass(ctx, PASS_NODE_FLOW_OUT);
    };
    let flow = masquerade6::flow_of(ip, &ports);
    let csum = ipv6::l4_csum(ip.proto, ip.l4_off);
    hold(ctx, cfg, &flow, &ports, csum, other_bridge, now)
}

/// Holds the flow's tuple, or moves its port off a container's.
#[inline(always)]
fn hold<A: Addr>(
    ctx: &TcContext,
    cfg: &BridgeConfig,
    flow: &FlowOf<A>,
    ports: &L4,
    csum: L4Csum,
    other_bridge: bool,
    now: u64,
) -> i32 {
    // An echo reply answers someone else's ping: no tuple of ours.
    if ports.echo_reply {
        return pass(ctx, PASS_NODE_FLOW_OUT);
    }
    let held = reply_key(flow, ports.sport);
    let owner = if other_bridge {
        OWNER_OTHER_BRIDGE
    } else {
        OWNER_NODE
    };
    let existing = A::nat().get_ptr_mut(held);
    if let Some(entry) = existing {
        // The usual packet: the flow's own reservation, one lookup.
        if unsafe { (*entry).owner == owner && (*entry).port == ports.sport } {
            seen(entry, ports, now, ctx.len());
            return pass(ctx, PASS_NODE_FLOW_OUT);
        }
    }
    if other_bridge {
        if existing.is_some() {
            return pass(ctx, PASS_OTHER_BRIDGE_CLASH);
        }
        return reserve(ctx, flow, &held, owner, ports, now);
    }
    // A node flow moved earlier keeps its port, whoever holds the tuple now.
    if let Some(entry) = A::nat().get_ptr_mut(flow.key(DIR_NODE)) {
        seen(entry, ports, now, ctx.len());
        let to = unsafe { (*entry).port };
        return move_port(ctx, ports, csum, to);
    }
    if existing.is_none() {
        return reserve(ctx, flow, &held, owner, ports, now);
    }
    match move_away(flow, cfg, ports, now, ctx.len()) {
        Ok(to) => move_port(ctx, ports, csum, to),
        Err(_) => pass(ctx, PASS_NODE_UNTRACKED),
    }
}

/// The tuple replies to the flow will carry, with `port` as our side's.
#[inline(always)]
fn reply_key<A: Copy>(flow: &FlowOf<A>, port: u16) -> NatKeyOf<A> {
    NatKeyOf {
        saddr: flow.daddr,
        daddr: flow.saddr,
        sport: flow.dport,
        dport: port,
        proto: flow.proto,
        dir: DIR_REPLY,
        _pad: [0; 2],
    }
}

#[inline(always)]
fn seen<A>(entry: *mut NatEntryOf<A>, ports: &L4, now: u64, bytes: u32) {
    conntrack::account(entry, now, bytes);
    if ports.tcp_flags != 0 {
        unsafe { conntrack::track_original(&mut *entry, ports.tcp_flags) };
    }
}

/// Holds the tuple for the flow. A full table (or a racing insert) costs
/// the reservation, never the packet.
#[inline(always)]
fn reserve<A: Addr>(
    ctx: &TcContext,
    flow: &FlowOf<A>,
    held: &NatKeyOf<A>,
    owner: u8,
    ports: &L4,
    now: u64,
) -> i32 {
    let mut entry = conntrack::blank::<A>(now);
    entry.owner = owner;
    entry.addr = flow.saddr;
    entry.port = flow.sport;
    entry.state = conntrack::initial_state(flow, ports.tcp_flags);
    entry.packets = 1;
    entry.bytes = u64::from(ctx.len());
    if A::nat()
        .insert(*held, entry, u64::from(BPF_NOEXIST))
        .is_err()
        && A::nat().get_ptr(*held).is_none()
    {
        return pass(ctx, PASS_NODE_UNTRACKED);
    }
    pass(ctx, PASS_NODE_FLOW_OUT)
}

/// Claims a free port for a node flow whose tuple a container flow holds:
/// the reply entry (claiming the port) leads back to the node's own port,
/// the `DIR_NODE` entry (keyed by what the node sends) to the new one.
#[inline(always)]
fn move_away<A: Addr>(
    flow: &FlowOf<A>,
    cfg: &BridgeConfig,
    ports: &L4,
    now: u64,
    bytes: u32,
) -> Result<u16, u32> {
    let s = conntrack::scratch::<A>(now)?;
    s.back.owner = OWNER_NODE;
    s.back.addr = flow.saddr;
    s.back.port = flow.sport;
    s.key = reply_key(flow, 0);
    let port = conntrack::claim_port(s, flow.sport, cfg)? as u16;
    s.forward.owner = OWNER_NODE;
    s.forward.addr = flow.saddr;
    s.forward.port = port;
    s.forward.state = conntrack::initial_state(flow, ports.tcp_flags);
    s.forward.packets = 1;
    s.forward.bytes = u64::from(bytes);
    let forward: &NatEntryOf<A> = &s.forward;
    if A::nat()
        .insert(flow.key(DIR_NODE), forward, u64::from(BPF_NOEXIST))
        .is_err()
    {
        let _ = A::nat().remove(reply_key(flow, port));
        return Err(DROP_NAT_TABLE_FULL);
    }
    Ok(port)
}

#[inline(always)]
fn move_port(ctx: &TcContext, ports: &L4, csum: L4Csum, to: u16) -> i32 {
    if ipv4::set_port(ctx, ports.sport_off, ports.sport, to, csum).is_err() {
        // Unchanged, it still reaches its peer; the replies may not.
        return pass(ctx, PASS_NODE_UNTRACKED);
    }
    pass(ctx, PASS_NODE_PORT_MOVED)
}

/// A reply to a node flow (`entry` is its reply entry): the destination
/// port goes back to the node's own if it was moved. Returns false if the
/// rewrite failed.
#[inline(always)]
pub fn restore(ctx: &TcContext, csum: L4Csum, ports: &L4, port: u16) -> bool {
    if port == ports.dport {
        return true;
    }
    ipv4::set_port(ctx, ports.dport_off, ports.dport, port, csum).is_ok()
}
