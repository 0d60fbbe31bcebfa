//! Learning and looking up MAC → port, the job the Linux bridge's FDB does.
use aya_ebpf::programs::TcContext;
use aya_log_ebpf::info;
use ebridge_common::fdb::{FdbEntry, MacAddr, FDB_F_LOCAL, FDB_REFRESH_NS};

use crate::maps::FDB;

pub enum Port {
    /// A live entry learned from this host veth.
    Endpoint(u32),
    /// The node's own MAC (bridge or host veth).
    Local,
    /// Learned, but older than the ageing time.
    Expired,
    Unknown,
}

#[inline(always)]
pub fn learn(ctx: &TcContext, src: &[u8; 6], ifindex: u32, now: u64, ageing_ns: u64) {
    let key = MacAddr { octets: *src };
    if let Some(entry) = FDB.get_ptr_mut(key) {
        let entry = unsafe { &mut *entry };
        if entry.flags & FDB_F_LOCAL != 0 {
            return;
        }
        if entry.ifindex == ifindex {
            // Refresh well within the ageing time, however short it is.
            let refresh = if ageing_ns / 2 < FDB_REFRESH_NS {
                ageing_ns / 2
            } else {
                FDB_REFRESH_NS
            };
            if now.wrapping_sub(entry.last_seen_ns) > refresh {
                entry.last_seen_ns = now;
            }
            return;
        }
    }
    let entry = FdbEntry {
        ifindex,
        flags: 0,
        last_seen_ns: now,
    };
    if FDB.insert(key, entry, 0).is_ok() {
        // Rare by construction: once per MAC (or per move).
        info!(ctx, "fdb: learned {:mac} on ifindex {}", *src, ifindex);
    }
}

#[inline(always)]
pub fn lookup(dst: &[u8; 6], ageing_ns: u64, now: u64) -> Port {
    let key = MacAddr { octets: *dst };
    let Some(entry) = FDB.get_ptr(key) else {
        return Port::Unknown;
    };
    let entry = unsafe { &*entry };
    if entry.flags & FDB_F_LOCAL != 0 {
        return Port::Local;
    }
    if now.wrapping_sub(entry.last_seen_ns) > ageing_ns {
        return Port::Expired;
    }
    Port::Endpoint(entry.ifindex)
}
