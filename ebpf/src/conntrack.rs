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

use crate::{
    ipv4::Ipv4,
    l4::*,
    maps::{NAT, NAT_NO_PORT},
    monitor,
};

const EEXIST: i32 = 17;

/// A flow as the packet names it (network order).
#[derive(Clone, Copy)]
pub struct Flow {
    pub proto: u8,
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
    pub sport: u16,
    pub dport: u16,
}

impl Flow {
    /// The flow a parsed packet names.
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

    #[inline(always)]
    pub fn key(&self, dir: u8) -> NatKey {
        NatKey {
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
pub fn account(entry: *mut NatEntry, now: u64, bytes: u32) {
    unsafe {
        (*entry).last_seen_ns = now;
        (*entry).packets += 1;
        (*entry).bytes += u64::from(bytes);
    }
}

/// The entry keyed by what a container sent, if the flow is known.
#[inline(always)]
pub fn from_container(flow: &Flow, now: u64, tcp_flags: u8, bytes: u32) -> Option<*mut NatEntry> {
    let entry = NAT.get_ptr_mut(flow.key(DIR_ORIGINAL))?;
    if flow.proto == IPPROTO_TCP {
        unsafe { track_original(&mut *entry, tcp_flags) };
    }
    account(entry, now, bytes);
    Some(entry)
}

#[inline(always)]
pub fn blank(now: u64) -> NatEntry {
    NatEntry {
        addr: [0; 4],
        port: 0,
        state: CT_NEW,
        flags: 0,
        ifindex: 0,
        mac: [0; 6],
        owner: OWNER_CONTAINER,
        _pad: 0,
        _pad2: 0,
        created_ns: now,
        last_seen_ns: now,
        packets: 0,
        bytes: 0,
        daddr: [0; 4],
        dport: 0,
        _pad3: [0; 2],
    }
}

#[inline(always)]
pub fn initial_state(flow: &Flow, tcp_flags: u8) -> u8 {
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

/// Inserts `first` under `template` with the free port found written into
/// its `dport` — the original port `own` if free and in range, then random
/// probes. BPF_NOEXIST makes the insert itself the claim on the port, so
/// two CPUs can never take the same one. The port (network order) comes
/// back widened: a `Result<u16, _>` leaves half its register undefined on
/// the error path, which the verifier refuses to see read.
#[inline(always)]
pub fn claim_port(
    template: &NatKey,
    first: &NatEntry,
    own: u16,
    cfg: &BridgeConfig,
) -> Result<u32, u32> {
    let own_port = u32::from(u16::from_be(own));
    let (min, max) = port_range(own_port, cfg);
    if max < min {
        return Err(DROP_NAT_NO_PORT);
    }
    let mut key = *template;
    if (min..=max).contains(&own_port) {
        key.dport = own;
        match NAT.insert(key, *first, u64::from(BPF_NOEXIST)) {
            Ok(()) => return Ok(u32::from(own)),
            Err(e) if e == -EEXIST => {}
            Err(_) => return Err(DROP_NAT_TABLE_FULL),
        }
    }
    let mut search = PortSearch {
        key,
        entry: *first,
        min,
        size: max - min + 1,
        outcome: PROBE_NONE_FREE,
    };
    // bpf_loop: the verifier checks the probe once, not once per probe and
    // per path into it, which would not fit its budget at this count.
    unsafe {
        bpf_loop(
            NAT_PORT_PROBES,
            probe as *mut c_void,
            &mut search as *mut PortSearch as *mut c_void,
            0,
        )
    };
    match search.outcome {
        PROBE_CLAIMED => Ok(u32::from(search.key.dport)),
        PROBE_TABLE_FULL => Err(DROP_NAT_TABLE_FULL),
        _ => {
            record_no_port(template, first.created_ns);
            Err(DROP_NAT_NO_PORT)
        }
    }
}

const PROBE_NONE_FREE: u32 = 0;
const PROBE_CLAIMED: u32 = 1;
const PROBE_TABLE_FULL: u32 = 2;

/// One random port search, shared with `probe` through `bpf_loop`.
#[repr(C)]
struct PortSearch {
    /// `dport` holds the port being tried, and the claimed one after.
    key: NatKey,
    entry: NatEntry,
    min: u32,
    size: u32,
    outcome: u32,
}

/// One probe: a random port of the range; 1 stops the loop.
#[inline(never)]
extern "C" fn probe(_index: u64, ctx: *mut c_void) -> i64 {
    let search = unsafe { &mut *(ctx as *mut PortSearch) };
    // NonZero: a plain `%` would carry a division-by-zero panic path, which
    // the verifier rejects.
    let Some(size) = NonZeroU32::new(search.size) else {
        return 1;
    };
    let candidate = search.min + unsafe { bpf_get_prandom_u32() } % size;
    search.key.dport = (candidate as u16).to_be();
    match NAT.insert(search.key, search.entry, u64::from(BPF_NOEXIST)) {
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
fn record_no_port(template: &NatKey, now: u64) {
    let key = NoPortKey {
        daddr: template.saddr,
        dport: template.sport,
        proto: template.proto,
        _pad: 0,
    };
    match NAT_NO_PORT.get_ptr_mut(key) {
        Some(count) => unsafe {
            (*count).drops += 1;
            (*count).last_ns = now;
        },
        None => {
            let _ = NAT_NO_PORT.insert(
                key,
                NoPortCount {
                    drops: 1,
                    last_ns: now,
                },
                0,
            );
        }
    }
}

/// Inserts the flow's second entry; on failure the first one is rolled back
/// so no half pair holds a port. If another CPU created the same flow
/// meanwhile, its entry wins and ours goes.
#[inline(always)]
fn complete_pair(key: &NatKey, entry: &NatEntry, first: &NatKey) -> Result<*mut NatEntry, u32> {
    match NAT.insert(*key, *entry, u64::from(BPF_NOEXIST)) {
        Ok(()) => {}
        Err(e) if e == -EEXIST => {
            let _ = NAT.remove(*first);
        }
        Err(_) => {
            let _ = NAT.remove(*first);
            return Err(DROP_NAT_TABLE_FULL);
        }
    }
    NAT.get_ptr_mut(*key).ok_or(DROP_NAT_TABLE_FULL)
}

/// The shape every port-claiming flow shares: `back` claims a free port
/// under `template`, then `forward` (keyed by what the container sent)
/// records that port as its new source port.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn claim_and_pair(
    flow: &Flow,
    template: &NatKey,
    back: &NatEntry,
    mut forward: NatEntry,
    cfg: &BridgeConfig,
    now: u64,
    tcp_flags: u8,
    bytes: u32,
) -> Result<*mut NatEntry, u32> {
    let port = claim_port(template, back, flow.sport, cfg)? as u16;
    let claimed = NatKey {
        dport: port,
        ..*template
    };
    forward.port = port;
    forward.state = initial_state(flow, tcp_flags);
    let entry = complete_pair(&flow.key(DIR_ORIGINAL), &forward, &claimed)?;
    account(entry, now, bytes);
    Ok(entry)
}

/// A new masqueraded flow: the reply entry (outside → uplink:port) claims
/// the port, then the original entry records the translation.
#[inline(always)]
pub fn masquerade(
    flow: &Flow,
    ep: &Endpoint,
    cfg: &BridgeConfig,
    now: u64,
    tcp_flags: u8,
    bytes: u32,
) -> Result<*mut NatEntry, u32> {
    let mut back = blank(now);
    back.addr = flow.saddr;
    back.port = flow.sport;
    back.ifindex = ep.host_ifindex;
    back.mac = ep.mac;
    let template = NatKey {
        saddr: flow.daddr,
        daddr: cfg.uplink_ipv4,
        sport: flow.dport,
        dport: 0,
        proto: flow.proto,
        dir: DIR_REPLY,
        _pad: [0; 2],
    };
    let mut out = blank(now);
    out.addr = cfg.uplink_ipv4;
    let entry = claim_and_pair(flow, &template, &back, out, cfg, now, tcp_flags, bytes)?;
    let port = unsafe { (*entry).port };
    monitor::new_flow(EVENT_NAT_NEW, flow, cfg.uplink_ipv4, port, ep.host_ifindex);
    Ok(entry)
}

/// A container reaching a published port of the node (hairpin): the
/// client's packets go to the target with the gateway as source (on a
/// claimed port), so the target's replies come back through this program
/// and are turned around to the client.
#[inline(always)]
pub fn hairpin(
    flow: &Flow,
    client: &Endpoint,
    target: &PublishTarget,
    cfg: &BridgeConfig,
    now: u64,
    tcp_flags: u8,
    bytes: u32,
) -> Result<*mut NatEntry, u32> {
    let mut back = blank(now);
    back.addr = flow.daddr;
    back.port = flow.dport;
    back.daddr = flow.saddr;
    back.dport = flow.sport;
    back.flags = NAT_F_DNAT | NAT_F_HAIRPIN | NAT_F_BACK;
    back.ifindex = client.host_ifindex;
    back.mac = client.mac;
    let template = NatKey {
        saddr: target.addr,
        daddr: cfg.gateway_ipv4,
        sport: target.port,
        dport: 0,
        proto: flow.proto,
        dir: DIR_ORIGINAL,
        _pad: [0; 2],
    };
    let mut there = blank(now);
    there.addr = cfg.gateway_ipv4;
    there.daddr = target.addr;
    there.dport = target.port;
    there.flags = NAT_F_DNAT | NAT_F_HAIRPIN;
    there.ifindex = target.ifindex;
    there.mac = target.mac;
    let entry = claim_and_pair(flow, &template, &back, there, cfg, now, tcp_flags, bytes)?;
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
pub fn inbound(
    flow: &Flow,
    target: &PublishTarget,
    now: u64,
    tcp_flags: u8,
    bytes: u32,
) -> Result<*mut NatEntry, u32> {
    let mut back = blank(now);
    back.addr = flow.daddr;
    back.port = flow.dport;
    back.flags = NAT_F_INBOUND;
    back.state = initial_state(flow, tcp_flags);
    let back_key = NatKey {
        saddr: target.addr,
        daddr: flow.saddr,
        sport: target.port,
        dport: flow.sport,
        proto: flow.proto,
        dir: DIR_ORIGINAL,
        _pad: [0; 2],
    };
    match NAT.insert(back_key, back, u64::from(BPF_NOEXIST)) {
        Ok(()) => {}
        // The container already uses this tuple for a flow of its own.
        Err(e) if e == -EEXIST => return Err(DROP_NAT_CONFLICT),
        Err(_) => return Err(DROP_NAT_TABLE_FULL),
    }
    let mut there = blank(now);
    there.addr = target.addr;
    there.port = target.port;
    there.flags = NAT_F_INBOUND;
    there.ifindex = target.ifindex;
    there.mac = target.mac;
    let entry = complete_pair(&flow.key(DIR_REPLY), &there, &back_key)?;
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
fn reopen(entry: &mut NatEntry) {
    entry.state = CT_SYN_SENT;
    entry.flags &= KIND_FLAGS;
}

/// What the flow's initiator side sent (a container, or the node).
#[inline(always)]
pub fn track_original(entry: &mut NatEntry, flags: u8) {
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
pub fn on_reply(key: &NatKey, entry: *mut NatEntry, now: u64, tcp_flags: u8, bytes: u32) {
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
        let original = NatKey {
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
        match NAT.get_ptr_mut(original) {
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
fn track_reply(orig: &mut NatEntry, flags: u8) -> bool {
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
