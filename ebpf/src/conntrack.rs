//! NAT connection tracking: find or create the two entries of a flow, pick
//! a free port, and follow TCP state. As vtether does, the reply entry is
//! inserted first with BPF_NOEXIST, so two CPUs can never hand out the same
//! port; the original entry follows, and a failure rolls the reply back.
use core::num::NonZeroU32;

use aya_ebpf::bindings::BPF_NOEXIST;
use ebridge_common::{config::BridgeConfig, endpoint::Endpoint, nat::*, stats::*};

use crate::{l4::*, maps::NAT};

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
fn account(entry: *mut NatEntry, now: u64, bytes: u32) {
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
fn blank(now: u64) -> NatEntry {
    NatEntry {
        addr: [0; 4],
        port: 0,
        state: CT_NEW,
        flags: 0,
        ifindex: 0,
        mac: [0; 6],
        _pad: [0; 2],
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
fn initial_state(flow: &Flow, tcp_flags: u8) -> u8 {
    if flow.proto == IPPROTO_TCP && tcp_flags & TCP_SYN != 0 {
        CT_SYN_SENT
    } else {
        CT_NEW
    }
}

/// Inserts `first` under `template` with the free port found in the NAT
/// range written into its `dport` — the original port `own` if free, then
/// probes from a hash. BPF_NOEXIST makes the insert itself the claim on
/// the port, so two CPUs can never take the same one.
#[inline(always)]
fn claim_port(
    template: &NatKey,
    first: &NatEntry,
    own: u16,
    hash: u32,
    cfg: &BridgeConfig,
) -> Result<u16, u32> {
    let min = u32::from(cfg.nat_port_min);
    let max = u32::from(cfg.nat_port_max);
    if max < min {
        return Err(DROP_NAT_NO_PORT);
    }
    // NonZero: a plain `%` would carry a division-by-zero panic path, which
    // the verifier rejects.
    let Some(size) = NonZeroU32::new(max - min + 1) else {
        return Err(DROP_NAT_NO_PORT);
    };
    let own = u32::from(u16::from_be(own));
    let mut key = *template;
    let mut i: u32 = 0;
    while i <= NAT_PORT_PROBES {
        let candidate = if i == 0 {
            own
        } else {
            min + (hash.wrapping_add(i)) % size
        };
        i += 1;
        if candidate < min || candidate > max {
            continue;
        }
        key.dport = (candidate as u16).to_be();
        match NAT.insert(key, *first, u64::from(BPF_NOEXIST)) {
            Ok(()) => return Ok(key.dport),
            Err(e) if e == -EEXIST => continue,
            Err(_) => return Err(DROP_NAT_TABLE_FULL),
        }
    }
    Err(DROP_NAT_NO_PORT)
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
    let port = claim_port(template, back, flow.sport, flow_hash(flow), cfg)?;
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
    claim_and_pair(flow, &template, &back, out, cfg, now, tcp_flags, bytes)
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
    claim_and_pair(flow, &template, &back, there, cfg, now, tcp_flags, bytes)
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
    Ok(entry)
}

/// Jenkins-style mix of the tuple: spreads flows over the port range.
#[inline(always)]
fn flow_hash(flow: &Flow) -> u32 {
    let mut h = u32::from_ne_bytes(flow.saddr) ^ 0x9e37_79b9;
    h = (h ^ u32::from_ne_bytes(flow.daddr)).wrapping_mul(0x85eb_ca6b);
    h = (h ^ ((u32::from(flow.sport) << 16) | u32::from(flow.dport))).wrapping_mul(0xc2b2_ae35);
    h ^= u32::from(flow.proto);
    h ^ (h >> 16)
}

#[inline(always)]
fn track_original(entry: &mut NatEntry, flags: u8) {
    if flags & TCP_RST != 0 {
        entry.state = CT_CLOSED;
    } else if flags & TCP_FIN != 0 {
        entry.flags |= NAT_F_FIN_ORIGINAL;
        entry.state = if entry.flags & NAT_F_FIN_REPLY != 0 {
            CT_CLOSING
        } else {
            CT_FIN_WAIT
        };
    } else if flags & TCP_SYN != 0 && flags & TCP_ACK == 0 && entry.state == CT_CLOSED {
        // A new connection reusing the tuple.
        entry.state = CT_SYN_SENT;
        // Forget the old connection's FINs, not what kind of flow it is.
        entry.flags &= NAT_F_DNAT | NAT_F_INBOUND | NAT_F_HAIRPIN | NAT_F_BACK;
    }
}

/// The reply-direction entry for a packet arriving on the uplink. Updates
/// the original entry's state only when something changes (first reply,
/// FIN, RST), so the usual packet costs one lookup.
#[inline(always)]
pub fn ingress(key: &NatKey, now: u64, tcp_flags: u8, bytes: u32) -> Option<*mut NatEntry> {
    let entry = NAT.get_ptr_mut(*key)?;
    account(entry, now, bytes);
    let reply = unsafe { &mut *entry };
    let closing = tcp_flags & (TCP_FIN | TCP_RST) != 0;
    if reply.flags & NAT_F_REPLIED == 0 || closing {
        reply.flags |= NAT_F_REPLIED;
        let original = NatKey {
            saddr: reply.addr,
            daddr: key.saddr,
            sport: reply.port,
            dport: key.sport,
            proto: key.proto,
            dir: DIR_ORIGINAL,
            _pad: [0; 2],
        };
        if let Some(orig) = NAT.get_ptr_mut(original) {
            let orig = unsafe { &mut *orig };
            orig.flags |= NAT_F_REPLIED;
            if key.proto == IPPROTO_TCP {
                track_reply(orig, tcp_flags);
            }
        }
    }
    Some(entry)
}

#[inline(always)]
fn track_reply(orig: &mut NatEntry, flags: u8) {
    if flags & TCP_RST != 0 {
        orig.state = CT_CLOSED;
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
}
