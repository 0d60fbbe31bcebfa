//! Events for `ebridge monitor`, written only while one is attached (the
//! `monitor` deadline) and within a per-CPU budget; otherwise each hook
//! costs one array lookup, and only on paths that are not the fast path
//! (drops, new flows).
use aya_ebpf::{
    helpers::generated::bpf_ktime_get_ns, maps::ring_buf::RingBufEntry, programs::TcContext,
};
use ebridge_common::{
    monitor::{MonitorEvent, EVENT_DROP, MONITOR_EVENTS_PER_SEC},
    nat::{IPPROTO_TCP, IPPROTO_UDP},
};

use crate::{
    conntrack::FlowOf,
    family::Addr,
    ipv6::IPV6_HDR_LEN,
    maps::{EVENTS, MONITOR, MONITOR_BUDGET},
    packet::{self, header_at, ETH_LEN, ETH_P_IPV4, ETH_P_IPV6},
};

const SECOND_NS: u64 = 1_000_000_000;

/// False in a datapath built with `EBRIDGE_NO_MONITOR` set: the hooks are
/// compiled out, the baseline `cargo xtask bench` measures their cost
/// against.
const HOOKS: bool = option_env!("EBRIDGE_NO_MONITOR").is_none();

/// Whether an event may be written now (a monitor is attached and this
/// CPU's budget for the second is not spent); counts what is not.
#[inline(always)]
fn admit(now: u64) -> bool {
    let Some(until) = MONITOR.get(0) else {
        return false;
    };
    if now >= *until {
        return false;
    }
    let Some(budget) = MONITOR_BUDGET.get_ptr_mut(0) else {
        return false;
    };
    // Per-CPU slot: no other writer.
    let b = unsafe { &mut *budget };
    if now.wrapping_sub(b.window_ns) >= SECOND_NS {
        b.window_ns = now;
        b.used = 0;
    }
    if b.used >= MONITOR_EVENTS_PER_SEC {
        b.lost += 1;
        return false;
    }
    b.used += 1;
    true
}

/// A zeroed event written straight into the ring buffer (a 72-byte event
/// on the stack would not fit beside the callers' frames), or `None`,
/// counted as lost, when the ring is full.
#[inline(always)]
fn reserve() -> Option<RingBufEntry<MonitorEvent>> {
    match EVENTS.reserve(0) {
        Some(mut slot) => {
            unsafe { core::ptr::write_bytes(slot.as_mut_ptr(), 0, 1) };
            Some(slot)
        }
        None => {
            if let Some(budget) = MONITOR_BUDGET.get_ptr_mut(0) {
                unsafe { (*budget).lost += 1 };
            }
            None
        }
    }
}

#[repr(C)]
struct Ports {
    src: u16,
    dst: u16,
}

/// A dropped packet with its reason and, when it is IPv4, its 5-tuple.
#[inline(always)]
pub fn dropped(ctx: &TcContext, reason: u32) {
    if HOOKS {
        drop_event(ctx, reason);
    }
}

/// Out of line: called from every drop site, it stays one copy.
#[inline(never)]
fn drop_event(ctx: &TcContext, reason: u32) {
    let now = unsafe { bpf_ktime_get_ns() };
    if !admit(now) {
        return;
    }
    let Some(mut slot) = reserve() else {
        return;
    };
    let ev = unsafe { &mut *slot.as_mut_ptr() };
    ev.ts_ns = now;
    ev.kind = EVENT_DROP;
    ev.reason = reason as u16;
    ev.ifindex = unsafe { (*ctx.skb.skb).ifindex };
    if let Ok(eth) = packet::eth(ctx) {
        match packet::ether_type(eth) {
            ETH_P_IPV4 => describe_ipv4(ctx, ev),
            ETH_P_IPV6 => describe_ipv6(ctx, ev),
            _ => {}
        }
    }
    slot.submit(0);
}

#[inline(always)]
fn describe_ipv4(ctx: &TcContext, ev: &mut MonitorEvent) {
    let Ok(ip) = packet::ipv4(ctx) else {
        return;
    };
    let ip = unsafe { &*ip };
    ev.family = 4;
    ev.proto = ip.proto;
    ev.saddr = ip.src_addr.widen();
    ev.daddr = ip.dst_addr.widen();
    let ihl = usize::from(ip.vihl & 0x0f) * 4;
    let first = u16::from_be_bytes(ip.frags) & 0x1fff == 0;
    if first {
        ports_at(ctx, ev, ETH_LEN + (ihl & 0x3c));
    }
}

/// The fixed header only: ports when no extension header comes first.
#[inline(always)]
fn describe_ipv6(ctx: &TcContext, ev: &mut MonitorEvent) {
    let Ok(ip) = packet::ipv6(ctx) else {
        return;
    };
    let ip = unsafe { &*ip };
    ev.family = 6;
    ev.proto = ip.next_hdr;
    ev.saddr = ip.src_addr;
    ev.daddr = ip.dst_addr;
    ports_at(ctx, ev, ETH_LEN + IPV6_HDR_LEN);
}

#[inline(always)]
fn ports_at(ctx: &TcContext, ev: &mut MonitorEvent, off: usize) {
    if ev.proto == IPPROTO_TCP || ev.proto == IPPROTO_UDP {
        if let Ok(p) = header_at::<Ports>(ctx, off) {
            ev.sport = unsafe { (*p).src };
            ev.dport = unsafe { (*p).dst };
        }
    }
}

/// A new flow: masqueraded (`EVENT_NAT_NEW`) or through a published port
/// (`EVENT_PUBLISH_HIT`), with the address and port it was given.
#[inline(always)]
pub fn new_flow<A: Addr>(kind: u8, flow: &FlowOf<A>, nat_addr: A, nat_port: u16, ifindex: u32) {
    if HOOKS {
        flow_event(
            kind,
            flow.proto,
            &[flow.saddr.widen(), flow.daddr.widen(), nat_addr.widen()],
            [flow.sport, flow.dport, nat_port],
            ifindex | (u32::from(A::FAMILY) << 28),
        );
    }
}

/// Out of line, one copy for both families (addresses widened to 16
/// bytes; the family rides in the top bits of `ifindex_family`, as eBPF
/// calls take five arguments at most).
#[inline(never)]
fn flow_event(kind: u8, proto: u8, addrs: &[[u8; 16]; 3], ports: [u16; 3], ifindex_family: u32) {
    let now = unsafe { bpf_ktime_get_ns() };
    if !admit(now) {
        return;
    }
    let Some(mut slot) = reserve() else {
        return;
    };
    let ev = unsafe { &mut *slot.as_mut_ptr() };
    ev.ts_ns = now;
    ev.kind = kind;
    ev.proto = proto;
    ev.ifindex = ifindex_family & 0x0fff_ffff;
    ev.saddr = addrs[0];
    ev.daddr = addrs[1];
    ev.nat_addr = addrs[2];
    ev.sport = ports[0];
    ev.dport = ports[1];
    ev.nat_port = ports[2];
    ev.family = (ifindex_family >> 28) as u8;
    slot.submit(0);
}
