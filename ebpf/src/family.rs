//! What NAT connection tracking needs to know about an address family,
//! implemented on the address type itself (`[u8; 4]`, `[u8; 16]`) so the
//! generic code in `conntrack.rs` infers the family from the flow it is
//! given: the family's NAT table, the node's addresses to translate to,
//! where exhaustion is recorded, and how monitor events carry addresses.
use aya_ebpf::btf_maps::HashMap;
use ebridge_common::{
    config::BridgeConfig,
    maps::{DEFAULT_NAT_ENTRIES, MAX_NODE_ADDRS, MAX_PUBLISHED},
    nat::{
        NatEntryOf, NatKeyOf, NatScratch, NoPortCount, NoPortKeyOf, PublishKeyOf, PublishTargetOf,
    },
};

use crate::maps::{
    NAT, NAT6, NAT_NO_PORT, NAT_NO_PORT6, NAT_SCRATCH, NAT_SCRATCH6, NODE_ADDRS, NODE_ADDRS6,
    PUBLISH, PUBLISH6,
};

pub type PublishMap<A> = HashMap<PublishKeyOf<A>, PublishTargetOf<A>, MAX_PUBLISHED>;

pub trait Addr: Copy + Default + 'static {
    fn nat() -> &'static HashMap<NatKeyOf<Self>, NatEntryOf<Self>, DEFAULT_NAT_ENTRIES>;
    /// The masquerade source: the uplink's address of this family.
    fn uplink(cfg: &BridgeConfig) -> Self;
    /// The bridge's own address of this family (hairpin's source).
    fn gateway(cfg: &BridgeConfig) -> Self;
    /// Published ports of this family.
    fn publish() -> &'static PublishMap<Self>;
    /// The node's addresses of this family.
    fn node_addrs() -> &'static HashMap<Self, u8, MAX_NODE_ADDRS>;
    /// Counts a new flow dropped for want of a free port, by destination.
    fn record_no_port(key: &NoPortKeyOf<Self>, now: u64);
    /// This CPU's room for a new flow's entries (the array always has it).
    fn scratch() -> Option<*mut NatScratch<Self>>;
    /// 4 or 6, as monitor events carry it.
    const FAMILY: u8;
    /// The address in 16 bytes (IPv4 in the first four), as monitor
    /// events carry it.
    fn widen(self) -> [u8; 16];
}

impl Addr for [u8; 4] {
    #[inline(always)]
    fn nat() -> &'static HashMap<NatKeyOf<Self>, NatEntryOf<Self>, DEFAULT_NAT_ENTRIES> {
        &NAT
    }
    #[inline(always)]
    fn uplink(cfg: &BridgeConfig) -> Self {
        cfg.uplink_ipv4
    }
    #[inline(always)]
    fn gateway(cfg: &BridgeConfig) -> Self {
        cfg.gateway_ipv4
    }
    #[inline(always)]
    fn publish() -> &'static PublishMap<Self> {
        &PUBLISH
    }
    #[inline(always)]
    fn node_addrs() -> &'static HashMap<Self, u8, MAX_NODE_ADDRS> {
        &NODE_ADDRS
    }
    #[inline(always)]
    fn record_no_port(key: &NoPortKeyOf<Self>, now: u64) {
        count_no_port(&NAT_NO_PORT, key, now)
    }
    #[inline(always)]
    fn scratch() -> Option<*mut NatScratch<Self>> {
        NAT_SCRATCH.get_ptr_mut(0)
    }
    const FAMILY: u8 = 4;
    #[inline(always)]
    fn widen(self) -> [u8; 16] {
        // Not `[0; 16]`: its twelve zero bytes would be a memset call
        // (see mem.rs) on every new flow and every drop.
        let mut words = core::mem::MaybeUninit::<[u32; 4]>::uninit();
        let mut words = unsafe {
            crate::mem::zero(words.as_mut_ptr());
            words.assume_init()
        };
        words[0] = u32::from_ne_bytes(self);
        unsafe { core::mem::transmute::<[u32; 4], [u8; 16]>(words) }
    }
}

impl Addr for [u8; 16] {
    #[inline(always)]
    fn nat() -> &'static HashMap<NatKeyOf<Self>, NatEntryOf<Self>, DEFAULT_NAT_ENTRIES> {
        &NAT6
    }
    #[inline(always)]
    fn uplink(cfg: &BridgeConfig) -> Self {
        cfg.uplink_ipv6
    }
    #[inline(always)]
    fn gateway(cfg: &BridgeConfig) -> Self {
        cfg.gateway_ipv6
    }
    #[inline(always)]
    fn publish() -> &'static PublishMap<Self> {
        &PUBLISH6
    }
    #[inline(always)]
    fn node_addrs() -> &'static HashMap<Self, u8, MAX_NODE_ADDRS> {
        &NODE_ADDRS6
    }
    #[inline(always)]
    fn record_no_port(key: &NoPortKeyOf<Self>, now: u64) {
        count_no_port(&NAT_NO_PORT6, key, now)
    }
    #[inline(always)]
    fn scratch() -> Option<*mut NatScratch<Self>> {
        NAT_SCRATCH6.get_ptr_mut(0)
    }
    const FAMILY: u8 = 6;
    #[inline(always)]
    fn widen(self) -> [u8; 16] {
        self
    }
}

#[inline(always)]
fn count_no_port<A: Copy>(
    map: &aya_ebpf::btf_maps::LruHashMap<
        NoPortKeyOf<A>,
        NoPortCount,
        { ebridge_common::maps::MAX_NAT_NO_PORT },
    >,
    key: &NoPortKeyOf<A>,
    now: u64,
) {
    match map.get_ptr_mut(*key) {
        Some(count) => unsafe {
            (*count).drops += 1;
            (*count).last_ns = now;
        },
        None => {
            let _ = map.insert(
                *key,
                NoPortCount {
                    drops: 1,
                    last_ns: now,
                },
                0,
            );
        }
    }
}
