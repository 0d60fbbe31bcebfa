//! IPv6 fragments through NAT. Only a datagram's first fragment carries
//! the ports its flow is found by; its translation is remembered under the
//! fragment header's identification so the fragments after it are
//! translated the same way. The key and entry are built in a per-CPU work
//! area: the IPv6 paths that call these have little of eBPF's 512-byte
//! stack left.
use aya_ebpf::{btf_maps::PerCpuArray, macros::btf_map};
use ebridge_common::nat::{Frag6Entry, Frag6Key};

use crate::{ipv6::Ipv6, maps::FRAGS6, revnat::Delivery};

pub struct Frag6Record {
    pub key: Frag6Key,
    pub entry: Frag6Entry,
}

#[btf_map(name = "frag6_work")]
static FRAG6_WORK: PerCpuArray<Frag6Record, 1> = PerCpuArray::new();

/// The work area with the key of `ip`'s fragment in direction `dir`.
#[inline(always)]
fn keyed(ip: &Ipv6, dir: u8) -> Option<&'static mut Frag6Record> {
    let r = unsafe { &mut *FRAG6_WORK.get_ptr_mut(0)? };
    r.key.saddr = ip.saddr;
    r.key.daddr = ip.daddr;
    r.key.id = ip.frag_id;
    // Not `proto`: a later fragment stops at the fragment header.
    r.key.proto = ip.frag_next;
    r.key.dir = dir;
    r.key._pad = [0; 2];
    Some(r)
}

/// A first fragment's translation: the address at `dir`'s end becomes
/// `addr`, and ingress delivers to `to`.
#[inline(never)]
pub fn remember(ip: &Ipv6, dir: u8, addr: &[u8; 16], to: &Delivery) {
    let Some(r) = keyed(ip, dir) else {
        return;
    };
    r.entry.addr = *addr;
    r.entry.ifindex = to.ifindex;
    r.entry.mac = to.mac;
    r.entry._pad = [0; 2];
    // Best effort: a full LRU evicts the oldest, which is what it is for.
    // By reference: by value they would be copied onto the stack.
    #[allow(clippy::needless_borrows_for_generic_args)]
    let _ = FRAGS6.insert(&r.key, &r.entry, 0);
}

/// What the first fragment of `ip`'s datagram left for the rest.
#[inline(never)]
pub fn find(ip: &Ipv6, dir: u8) -> Option<*const Frag6Entry> {
    let r = keyed(ip, dir)?;
    #[allow(clippy::needless_borrows_for_generic_args)]
    FRAGS6.get_ptr(&r.key)
}
