//! NAT connection tracking: find or create the two entries of a flow, pick
//! a free port, and follow TCP state. As vtether does, the reply entry is
//! inserted first with BPF_NOEXIST, so two CPUs can never hand out the same
//! port; the original entry follows, and a failure rolls the reply back.
use core::num::NonZeroU32;

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    cty::c_void,
    helpers::generated::{bpf_get_prandom_u32, bpf_loop},
};
use ebridge_common::{
    config::{BridgeConfig, CONFIG_F_NAT_PORTS_GIVEN},
    endpoint::Endpoint,
    monitor::{EVENT_NAT_NEW, EVENT_PUBLISH_HIT},
    nat::*,
    stats::*,
};

use crate::{family::Addr, ipv4::Ipv4, l4::*, monitor};

const EEXIST: i32 = 17;

/// A flow as the packet names it (network order), of either family.
#[derive(Clone, Copy)]
pub struct FlowOf<A> {
    pub proto: u8,
    pub saddr: A,
    pub daddr: A,
    pub sport: u16,
    pub dport: u16,
}

pub type Flow = FlowOf<[u8; 4]>;

impl Flow {
    /// The flow a parsed IPv4 packet names.
    #[inline(always)]
    pub fn of(ip: &Ipv4, ports: &L4) -> Self {
        Self {
            proto: ip.proto,
            saddr: ip.saddr,
            daddr: ip.daddr,
            sport: ports.sport,
            dport: ports.dport,
        }
    }
}

impl<A: Addr> FlowOf<A> {
    #[inline(always)]
    pub fn key(&self, dir: u8) -> NatKeyOf<A> {
        NatKeyOf {
            saddr: self.saddr,
            daddr: self.daddr,
            sport: self.sport,
            dport: self.dport,
            proto: self.proto,
            dir,
            _pad: [0; 2],
        }
    }
}

/// Plain increments: a flow's packets are almost always handled on one CPU
/// at a time, and a rare lost update only blurs `show nat` counters.
#[inline(always)]
pub fn account<A>(entry: *mut NatEntryOf<A>, now: u64, bytes: u32) {
    unsafe {
        (*entry).last_seen_ns = now;
        (*entry).packets += 1;
        (*entry).bytes += u64::from(bytes);
    }
}

/// The entry keyed by what a container sent, if the flow is known.
#[inline(always)]
pub fn from_container<A: Addr>(
    flow: &FlowOf<A>,
    now: u64,
    tcp_flags: u8,
    bytes: u32,
) -> Option<*mut NatEntryOf<A>> {
    let entry = A::nat().get_ptr_mut(flow.key(DIR_ORIGINAL))?;
    if flow.proto == IPPROTO_TCP {
        unsafe { track_original(&mut *entry, tcp_flags) };
    }
    account(entry, now, bytes);
    Some(entry)
}

#[inline(always)]
pub fn blank<A: Addr>(now: u64) -> NatEntryOf<A> {
    NatEntryOf {
        created_ns: now,
        last_seen_ns: now,
        state: CT_NEW,
        owner: OWNER_CONTAINER,
        ..NatEntryOf::default()
    }
}

#[inline(always)]
pub fn initial_state<A>(flow: &FlowOf<A>, tcp_flags: u8) -> u8 {
    if flow.proto == IPPROTO_TCP && tcp_flags & TCP_SYN != 0 {
        CT_SYN_SENT
    } else {
        CT_NEW
    }
}

/// The ports a flow whose own source port is `own` (host order) may be
/// given: the configured range, or without `--nat-ports` MASQUERADE's
/// rule that a privileged port stays privileged.
#[inline(always)]
fn port_range(own: u32, cfg: &BridgeConfig) -> (u32, u32) {
    if cfg.flags & CONFIG_F_NAT_PORTS_GIVEN == 0 && own < 1024 {
        if own < 512 {
            return (1, 511);
        }
        return (600, 1023);
    }
    (u32::from(cfg.nat_port_min), u32::from(cfg.nat_port_max))
}

/// Inserts `s.back` under `s.key` with a free port written into its
/// `dport` — the original port `own` if free and in range, then random
/// probes. BPF_NOEXIST makes the insert itself the claim on the port, so
/// two CPUs can never take the same one. The port (network order) comes
/// back widened: a `Result<u16, _>` leaves half its register undefined on
/// the error path, which the verifier refuses to see read. `s.key.dport`
/// holds the claimed port after.
#[inline(always)]
pub fn claim_port<A: Addr>(
    s: &mut NatScratch<A>,
    own: u16,
    cfg: &BridgeConfig,
) -> Result<u32, u32> {
    let own_port = u32::from(u16::from_be(own));
    let (min, max) = port_range(own_port, cfg);
    if max < min {
        return Err(DROP_NAT_NO_PORT);
    }
    if (min..=max).contains(&own_port) {
        s.key.dport = own;
        match insert_claim(s) {
            Ok(()) => return Ok(u32::from(own)),
            Err(e) if e == -EEXIST => {}
            Err(_) => return Err(DROP_NAT_TABLE_FULL),
        }
    }
    let mut search = PortSearch {
        min,
        size: max - min + 1,
        outcome: PROBE_NONE_FREE,
    };
    // bpf_loop: the verifier checks the probe once, not once per probe and
    // per path into it, which would not fit its budget at this count.
    unsafe {
        bpf_loop(
            NAT_PORT_PROBES,
            probe::<A> as *mut c_void,
            &mut search as *mut PortSearch as *mut c_void,
            0,
        )
    };
    match search.outcome {
        PROBE_CLAIMED => Ok(u32::from(s.key.dport)),
        PROBE_TABLE_FULL => Err(DROP_NAT_TABLE_FULL),
        _ => {
            record_no_port(&s.key, s.back.created_ns);
            Err(DROP_NAT_NO_PORT)
        }
    }
}

/// Inserts `s.back` under `s.key` if the key is free, straight from the
/// scratch map (by value, both would be copied onto the stack first).
#[inline(always)]
fn insert_claim<A: Addr>(s: &NatScratch<A>) -> Result<(), i32> {
    let (key, back): (&NatKeyOf<A>, &NatEntryOf<A>) = (&s.key, &s.back);
    A::nat().insert(key, back, u64::from(BPF_NOEXIST))
}

const PROBE_NONE_FREE: u32 = 0;
const PROBE_CLAIMED: u32 = 1;
const PROBE_TABLE_FULL: u32 = 2;

/// One random port search, shared with `probe` through `bpf_loop` (whose
/// context must live on the stack; the entries stay in the scratch map).
#[repr(C)]
struct PortSearch {
    min: u32,
    size: u32,
    outcome: u32,
}

/// One probe: a random port of the range; 1 stops the loop.
#[inline(never)]
extern "C" fn probe<A: Addr>(_index: u64, ctx: *mut c_void) -> i64 {
    let search = unsafe { &mut *(ctx as *mut PortSearch) };
    // Same CPU as the caller: the same scratch slot.
    let Some(s) = A::scratch() else {
        search.outcome = PROBE_TABLE_FULL;
        return 1;
    };
    let s = unsafe { &mut *s };
    // NonZero: a plain `%` would carry a division-by-zero panic path, which
    // the verifier rejects.
    let Some(size) = NonZeroU32::new(search.size) else {
        return 1;
    };
    let candidate = search.min + unsafe { bpf_get_prandom_u32() } % size;
    s.key.dport = (candidate as u16).to_be();
    match insert_claim(s) {
        Ok(()) => {
            search.outcome = PROBE_CLAIMED;
            1
        }
        Err(e) if e == -EEXIST => 0,
        Err(_) => {
            search.outcome = PROBE_TABLE_FULL;
            1
        }
    }
}

/// Remembers which destination ran out of ports, for the agent to log.
#[inline(always)]
fn record_no_port<A: Addr>(template: &NatKeyOf<A>, now: u64) {
    let key = NoPortKeyOf {
        daddr: template.saddr,
        dport: template.sport,
        proto: template.proto,
        _pad: 0,
    };
    A::record_no_port(&key, now);
}

/// Inserts the flow's second entry; on failure the first one is rolled back
/// so no half pair holds a port. If another CPU created the same flow
/// meanwhile, its entry wins and ours goes.
#[inline(always)]
fn complete_pair<A: Addr>(
    key: &NatKeyOf<A>,
    entry: &NatEntryOf<A>,
    first: &NatKeyOf<A>,
) -> Result<*mut NatEntryOf<A>, u32> {
    let nat = A::nat();
    match nat.insert(key, entry, u64::from(BPF_NOEXIST)) {
        Ok(()) => {}
        Err(e) if e == -EEXIST => {
            let _ = nat.remove(first);
        }
        Err(_) => {
            let _ = nat.remove(first);
            return Err(DROP_NAT_TABLE_FULL);
        }
    }
    nat.get_ptr_mut(key).ok_or(DROP_NAT_TABLE_FULL)
}

/// This CPU's scratch entries for a new flow, both blank as of `now`
/// (cleared in place: a blank entry built on the stack and copied would
/// cost the stack the scratch map is there to save).
#[inline(always)]
pub fn scratch<A: Addr>(now: u64) -> Result<&'static mut NatScratch<A>, u32> {
    let s = A::scratch().ok_or(DROP_REWRITE_FAILED)?;
    unsafe { crate::mem::zero(s) };
    let s = unsafe { &mut *s };
    for e in [&mut s.back, &mut s.forward] {
        e.created_ns = now;
        e.last_seen_ns = now;
        e.state = CT_NEW;
        e.owner = OWNER_CONTAINER;
    }
    Ok(s)
}

/// The shape every port-claiming flow shares: `s.back` claims a free port
/// under `s.key`, then `s.forward` (keyed by what the container sent)
/// records that port as its new source port.
#[inline(always)]
fn claim_and_pair<A: Addr>(
    flow: &FlowOf<A>,
    s: &mut NatScratch<A>,
    cfg: &BridgeConfig,
    now: u64,
    tcp_flags: u8,
    bytes: u32,
) -> Result<*mut NatEntryOf<A>, u32> {
    let port = claim_port(s, flow.sport, cfg)? as u16;
    s.forward.port = port;
    s.forward.state = initial_state(flow, tcp_flags);
    let entry = complete_pair(&flow.key(DIR_ORIGINAL), &s.forward, &s.key)?;
    account(entry, now, bytes);
    Ok(entry)
}

/// A new masqueraded flow: the reply entry (outside → uplink:port) claims
/// the port, then the original entry records the translation.
#[inline(always)]
pub fn masquerade<A: Addr>(
    flow: &FlowOf<A>,
    ep: &Endpoint,
    cfg: &BridgeConfig,
    now: u64,
    tcp_flags: u8,
    bytes: u32,
) -> Result<*mut NatEntryOf<A>, u32> {
    let uplink = A::uplink(cfg);
    let s = scratch::<A>(now)?;
    s.back.addr = flow.saddr;
    s.back.port = flow.sport;
    s.back.ifindex = ep.host_ifindex;
    s.back.mac = ep.mac;
    s.key = NatKeyOf {
        saddr: flow.daddr,
        daddr: uplink,
        sport: flow.dport,
        dport: 0,
        proto: flow.proto,
        dir: DIR_REPLY,
        _pad: [0; 2],
    };
    s.forward.addr = uplink;
    let entry = claim_and_pair(flow, s, cfg, now, tcp_flags, bytes)?;
    let port = unsafe { (*entry).port };
    monitor::new_flow(EVENT_NAT_NEW, flow, uplink, port, ep.host_ifindex);
    Ok(entry)
}

/// A container reaching a published port of the node (hairpin): the
/// client's packets go to the target with the gateway as source (on a
/// claimed port), so the target's replies come back through this program
/// and are turned around to the client.
#[inline(always)]
pub fn hairpin<A: Addr>(
    flow: &FlowOf<A>,
    client: &Endpoint,
    target: &PublishTargetOf<A>,
    cfg: &BridgeConfig,
    now: u64,
    tcp_flags: u8,
    bytes: u32,
) -> Result<*mut NatEntryOf<A>, u32> {
    let s = scratch::<A>(now)?;
    s.back.addr = flow.daddr;
    s.back.port = flow.dport;
    s.back.daddr = flow.saddr;
    s.back.dport = flow.sport;
    s.back.flags = NAT_F_DNAT | NAT_F_HAIRPIN | NAT_F_BACK;
    s.back.ifindex = client.host_ifindex;
    s.back.mac = client.mac;
    s.key = NatKeyOf {
        saddr: target.addr,
        daddr: A::gateway(cfg),
        sport: target.port,
        dport: 0,
        proto: flow.proto,
        dir: DIR_ORIGINAL,
        _pad: [0; 2],
    };
    s.forward.addr = A::gateway(cfg);
    s.forward.daddr = target.addr;
    s.forward.dport = target.port;
    s.forward.flags = NAT_F_DNAT | NAT_F_HAIRPIN;
    s.forward.ifindex = target.ifindex;
    s.forward.mac = target.mac;
    let entry = claim_and_pair(flow, s, cfg, now, tcp_flags, bytes)?;
    monitor::new_flow(
        EVENT_PUBLISH_HIT,
        flow,
        target.addr,
        target.port,
        client.host_ifindex,
    );
    Ok(entry)
}

/// A new flow from outside to a published port: the container-side entry
/// (for un-DNATing replies) first, then the outside-side one.
#[inline(always)]
pub fn inbound<A: Addr>(
    flow: &FlowOf<A>,
    target: &PublishTargetOf<A>,
    now: u64,
    tcp_flags: u8,
    bytes: u32,
) -> Result<*mut NatEntryOf<A>, u32> {
    let s = scratch::<A>(now)?;
    s.back.addr = flow.daddr;
    s.back.port = flow.dport;
    s.back.flags = NAT_F_INBOUND;
    s.back.state = initial_state(flow, tcp_flags);
    s.key = NatKeyOf {
        saddr: target.addr,
        daddr: flow.saddr,
        sport: target.port,
        dport: flow.sport,
        proto: flow.proto,
        dir: DIR_ORIGINAL,
        _pad: [0; 2],
    };
    match insert_claim(s) {
        Ok(()) => {}
        // The container already uses this tuple for a flow of its own.
        Err(e) if e == -EEXIST => return Err(DROP_NAT_CONFLICT),
        Err(_) => return Err(DROP_NAT_TABLE_FULL),
    }
    s.forward.addr = target.addr;
    s.forward.port = target.port;
    s.forward.flags = NAT_F_INBOUND;
    s.forward.ifindex = target.ifindex;
    s.forward.mac = target.mac;
    let entry = complete_pair(&flow.key(DIR_REPLY), &s.forward, &s.key)?;
    account(entry, now, bytes);
    monitor::new_flow(
        EVENT_PUBLISH_HIT,
        flow,
        target.addr,
        target.port,
        target.ifindex,
    );
    Ok(entry)
}

/// Flags that say what kind of flow an entry belongs to; a reopened
/// connection keeps them and forgets the rest (FINs, replied).
const KIND_FLAGS: u8 = NAT_F_DNAT | NAT_F_INBOUND | NAT_F_HAIRPIN | NAT_F_BACK;

/// A SYN on a tuple whose connection has ended starts a new one, as the
/// kernel's conntrack reopens TIME_WAIT and CLOSE entries.
#[inline(always)]
fn reopens(state: u8, flags: u8) -> bool {
    flags & TCP_SYN != 0 && flags & TCP_ACK == 0 && (state == CT_CLOSING || state == CT_CLOSED)
}

#[inline(always)]
fn reopen<A>(entry: &mut NatEntryOf<A>) {
    entry.state = CT_SYN_SENT;
    entry.flags &= KIND_FLAGS;
}

/// What the flow's initiator side sent (a container, or the node).
#[inline(always)]
pub fn track_original<A>(entry: &mut NatEntryOf<A>, flags: u8) {
    if flags & TCP_RST != 0 {
        entry.state = CT_CLOSED;
    } else if reopens(entry.state, flags) {
        reopen(entry);
    } else if flags & TCP_FIN != 0 {
        entry.flags |= NAT_F_FIN_ORIGINAL;
        entry.state = if entry.flags & NAT_F_FIN_REPLY != 0 {
            CT_CLOSING
        } else {
            CT_FIN_WAIT
        };
    }
}

/// Updates the state (kept in the entry keyed by the initiator's tuple)
/// only when something changes (first reply, SYN, FIN, RST), so the usual
/// packet costs one lookup.
#[inline(always)]
pub fn on_reply<A: Addr>(
    key: &NatKeyOf<A>,
    entry: *mut NatEntryOf<A>,
    now: u64,
    tcp_flags: u8,
    bytes: u32,
) {
    account(entry, now, bytes);
    let (owner, flags, addr, port) =
        unsafe { ((*entry).owner, (*entry).flags, (*entry).addr, (*entry).port) };
    if owner == OWNER_OTHER_BRIDGE {
        return;
    }
    if flags & NAT_F_REPLIED != 0 && tcp_flags & (TCP_FIN | TCP_RST | TCP_SYN) == 0 {
        return;
    }
    unsafe { (*entry).flags |= NAT_F_REPLIED };
    // A node's reservation is its own original entry; a moved node flow
    // and container flows have a partner.
    let orig = if owner == OWNER_NODE && port == key.dport {
        entry
    } else {
        let original = NatKeyOf {
            saddr: addr,
            daddr: key.saddr,
            sport: port,
            dport: key.sport,
            proto: key.proto,
            dir: if owner == OWNER_NODE {
                DIR_NODE
            } else {
                DIR_ORIGINAL
            },
            _pad: [0; 2],
        };
        match A::nat().get_ptr_mut(original) {
            Some(orig) => orig,
            None => return,
        }
    };
    let orig = unsafe { &mut *orig };
    orig.flags |= NAT_F_REPLIED;
    if key.proto == IPPROTO_TCP && track_reply(orig, tcp_flags) {
        // A new connection from this side: its next packet (the
        // handshake's last ACK) must be looked at again.
        unsafe { (*entry).flags &= !NAT_F_REPLIED };
    }
}

/// Returns whether the packet reopened the flow.
#[inline(always)]
fn track_reply<A>(orig: &mut NatEntryOf<A>, flags: u8) -> bool {
    if flags & TCP_RST != 0 {
        orig.state = CT_CLOSED;
    } else if reopens(orig.state, flags) {
        reopen(orig);
        return true;
    } else if flags & TCP_FIN != 0 {
        orig.flags |= NAT_F_FIN_REPLY;
        orig.state = if orig.flags & NAT_F_FIN_ORIGINAL != 0 {
            CT_CLOSING
        } else {
            CT_FIN_WAIT
        };
    } else if flags & TCP_ACK != 0 && orig.state < CT_ESTABLISHED {
        orig.state = CT_ESTABLISHED;
    }
    false
}
