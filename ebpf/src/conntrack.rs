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

/// The original-direction entry for a packet leaving a container: found,
/// or created with a freshly allocated port.
#[inline(always)]
pub fn egress(
    flow: &Flow,
    ep: &Endpoint,
    cfg: &BridgeConfig,
    now: u64,
    tcp_flags: u8,
    bytes: u32,
) -> Result<*mut NatEntry, u32> {
    let key = flow.key(DIR_ORIGINAL);
    let entry = match NAT.get_ptr_mut(key) {
        Some(e) => e,
        None => create(flow, &key, ep, cfg, now, tcp_flags)?,
    };
    if flow.proto == IPPROTO_TCP {
        unsafe { track_original(&mut *entry, tcp_flags) };
    }
    account(entry, now, bytes);
    Ok(entry)
}

#[inline(always)]
fn create(
    flow: &Flow,
    key: &NatKey,
    ep: &Endpoint,
    cfg: &BridgeConfig,
    now: u64,
    tcp_flags: u8,
) -> Result<*mut NatEntry, u32> {
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
    let own = u32::from(u16::from_be(flow.sport));
    let hash = flow_hash(flow);

    let reply_entry = NatEntry {
        addr: flow.saddr,
        port: flow.sport,
        state: CT_NEW,
        flags: 0,
        ifindex: ep.host_ifindex,
        mac: ep.mac,
        _pad: [0; 2],
        _pad2: 0,
        created_ns: now,
        last_seen_ns: now,
        packets: 0,
        bytes: 0,
    };
    let mut chosen: u16 = 0;
    let mut found = false;
    let mut i: u32 = 0;
    // Probe 0 keeps the container's own port when it is in range.
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
        let port = (candidate as u16).to_be();
        let reply_key = NatKey {
            saddr: flow.daddr,
            daddr: cfg.uplink_ipv4,
            sport: flow.dport,
            dport: port,
            proto: flow.proto,
            dir: DIR_REPLY,
            _pad: [0; 2],
        };
        match NAT.insert(reply_key, reply_entry, u64::from(BPF_NOEXIST)) {
            Ok(()) => {
                chosen = port;
                found = true;
                break;
            }
            Err(e) if e == -EEXIST => continue,
            Err(_) => return Err(DROP_NAT_TABLE_FULL),
        }
    }
    if !found {
        return Err(DROP_NAT_NO_PORT);
    }
    let reply_key = NatKey {
        saddr: flow.daddr,
        daddr: cfg.uplink_ipv4,
        sport: flow.dport,
        dport: chosen,
        proto: flow.proto,
        dir: DIR_REPLY,
        _pad: [0; 2],
    };
    let state = if flow.proto == IPPROTO_TCP && tcp_flags & TCP_SYN != 0 {
        CT_SYN_SENT
    } else {
        CT_NEW
    };
    let original = NatEntry {
        addr: cfg.uplink_ipv4,
        port: chosen,
        state,
        flags: 0,
        ifindex: 0,
        mac: [0; 6],
        _pad: [0; 2],
        _pad2: 0,
        created_ns: now,
        last_seen_ns: now,
        packets: 0,
        bytes: 0,
    };
    match NAT.insert(*key, original, u64::from(BPF_NOEXIST)) {
        Ok(()) => {}
        Err(e) if e == -EEXIST => {
            // Another CPU created this flow meanwhile: use its entry.
            let _ = NAT.remove(reply_key);
        }
        Err(_) => {
            let _ = NAT.remove(reply_key);
            return Err(DROP_NAT_TABLE_FULL);
        }
    }
    NAT.get_ptr_mut(*key).ok_or(DROP_NAT_TABLE_FULL)
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
        entry.flags = 0;
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
