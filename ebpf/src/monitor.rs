//! Events for `ebridge monitor`, written only while one is attached (the
//! `monitor` deadline) and within a per-CPU budget; otherwise each hook
//! costs one array lookup, and only on paths that are not the fast path
//! (drops, new flows).
use aya_ebpf::{helpers::generated::bpf_ktime_get_ns, programs::TcContext};
use ebridge_common::{
    monitor::{MonitorEvent, EVENT_DROP, MONITOR_EVENTS_PER_SEC},
    nat::{IPPROTO_TCP, IPPROTO_UDP},
};

use crate::{
    conntrack::Flow,
    maps::{EVENTS, MONITOR, MONITOR_BUDGET},
    packet::{self, header_at, ETH_LEN, ETH_P_IPV4},
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

#[inline(always)]
fn emit(ev: &MonitorEvent) {
    if EVENTS.output(ev, 0).is_err() {
        if let Some(budget) = MONITOR_BUDGET.get_ptr_mut(0) {
            unsafe { (*budget).lost += 1 };
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
    let mut ev = MonitorEvent {
        ts_ns: now,
        kind: EVENT_DROP,
        reason: reason as u16,
        ifindex: unsafe { (*ctx.skb.skb).ifindex },
        ..MonitorEvent::default()
    };
    if let Ok(eth) = packet::eth(ctx) {
        if packet::ether_type(eth) == ETH_P_IPV4 {
            if let Ok(ip) = packet::ipv4(ctx) {
                let ip = unsafe { &*ip };
                ev.proto = ip.proto;
                ev.saddr = ip.src_addr;
                ev.daddr = ip.dst_addr;
                let ihl = usize::from(ip.vihl & 0x0f) * 4;
                let first = u16::from_be_bytes(ip.frags) & 0x1fff == 0;
                if first && (ev.proto == IPPROTO_TCP || ev.proto == IPPROTO_UDP) {
                    if let Ok(p) = header_at::<Ports>(ctx, ETH_LEN + (ihl & 0x3c)) {
                        ev.sport = unsafe { (*p).src };
                        ev.dport = unsafe { (*p).dst };
                    }
                }
            }
        }
    }
    emit(&ev);
}

/// A new flow: masqueraded (`EVENT_NAT_NEW`) or through a published port
/// (`EVENT_PUBLISH_HIT`), with the address and port it was given.
#[inline(always)]
pub fn new_flow(kind: u8, flow: &Flow, nat_addr: [u8; 4], nat_port: u16, ifindex: u32) {
    if HOOKS {
        flow_event(kind, flow, nat_addr, nat_port, ifindex);
    }
}

#[inline(never)]
fn flow_event(kind: u8, flow: &Flow, nat_addr: [u8; 4], nat_port: u16, ifindex: u32) {
    let now = unsafe { bpf_ktime_get_ns() };
    if !admit(now) {
        return;
    }
    emit(&MonitorEvent {
        ts_ns: now,
        kind,
        proto: flow.proto,
        reason: 0,
        ifindex,
        saddr: flow.saddr,
        daddr: flow.daddr,
        sport: flow.sport,
        dport: flow.dport,
        nat_addr,
        nat_port,
        _pad: [0; 2],
    });
}
