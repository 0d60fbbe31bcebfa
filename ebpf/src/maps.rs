use aya_ebpf::{
    btf_maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
    macros::btf_map,
};
use ebridge_common::{
    config::BridgeConfig,
    endpoint::Endpoint,
    fdb::{FdbEntry, MacAddr},
    maps::{
        DEFAULT_NAT_ENTRIES, EVENTS_RING_BYTES, MAX_ENDPOINTS, MAX_FDB_ENTRIES, MAX_FRAG_ENTRIES,
        MAX_NATIVE_NETS, MAX_NAT_NO_PORT, MAX_NODE_ADDRS, MAX_PUBLISHED, MAX_SOCK_REWRITES,
    },
    monitor::{MonitorBudget, MonitorEvent},
    nat::{
        Frag6Entry, Frag6Key, FragEntry, FragKey, Nat6Entry, Nat6Key, NatEntry, NatKey, NatScratch,
        NoPort6Key, NoPortCount, NoPortKey, Publish6Key, Publish6Target, PublishKey, PublishTarget,
        SockRewrite, SockRewrite6,
    },
    stats::{Counter, MAX_REASONS},
};

#[btf_map(name = "config")]
pub static CONFIG: Array<BridgeConfig, 1> = Array::new();

/// Host veth ifindex → endpoint.
#[btf_map(name = "endpoints")]
pub static ENDPOINTS: HashMap<u32, Endpoint, MAX_ENDPOINTS> = HashMap::new();

/// Endpoint IPv4 (network order) → host veth ifindex. Read by the NAT paths,
/// written by userspace only.
#[btf_map(name = "endpoint_by_ip")]
pub static ENDPOINT_BY_IP: HashMap<[u8; 4], u32, MAX_ENDPOINTS> = HashMap::new();

/// Endpoint IPv6 (network order) → host veth ifindex.
#[btf_map(name = "endpoint_by_ip6")]
pub static ENDPOINT_BY_IP6: HashMap<[u8; 16], u32, MAX_ENDPOINTS> = HashMap::new();

#[btf_map(name = "fdb")]
pub static FDB: HashMap<MacAddr, FdbEntry, MAX_FDB_ENTRIES> = HashMap::new();

#[btf_map(name = "stats")]
pub static STATS: PerCpuArray<Counter, MAX_REASONS> = PerCpuArray::new();

/// Masquerade conntrack: original and reply tuple of every flow. A plain
/// hash (not LRU) so a full table drops new flows instead of silently
/// evicting live ones. Resized by userspace at load time.
#[btf_map(name = "nat")]
pub static NAT: HashMap<NatKey, NatEntry, DEFAULT_NAT_ENTRIES> = HashMap::new();

/// The same for IPv6 flows (sized like `nat` at load time).
#[btf_map(name = "nat6")]
pub static NAT6: HashMap<Nat6Key, Nat6Entry, DEFAULT_NAT_ENTRIES> = HashMap::new();

/// Fragments in flight; LRU because a lost fragment must not pin an entry.
#[btf_map(name = "frags")]
pub static FRAGS: LruHashMap<FragKey, FragEntry, MAX_FRAG_ENTRIES> = LruHashMap::new();

/// The same for IPv6 fragments (16 entries on bridges without IPv6).
#[btf_map(name = "frags6")]
pub static FRAGS6: LruHashMap<Frag6Key, Frag6Entry, MAX_FRAG_ENTRIES> = LruHashMap::new();

/// Published ports: (node address or 0.0.0.0, port, proto) → endpoint.
#[btf_map(name = "publish")]
pub static PUBLISH: HashMap<PublishKey, PublishTarget, MAX_PUBLISHED> = HashMap::new();

/// The same for IPv6: (node address or ::, port, proto) → endpoint.
#[btf_map(name = "publish6")]
pub static PUBLISH6: HashMap<Publish6Key, Publish6Target, MAX_PUBLISHED> = HashMap::new();

/// The node's own IPv4 addresses (value unused), for 0.0.0.0 publishes.
#[btf_map(name = "node_addrs")]
pub static NODE_ADDRS: HashMap<[u8; 4], u8, MAX_NODE_ADDRS> = HashMap::new();

/// The node's own IPv6 addresses, for [::] publishes.
#[btf_map(name = "node_addrs6")]
pub static NODE_ADDRS6: HashMap<[u8; 16], u8, MAX_NODE_ADDRS> = HashMap::new();

/// Host sockets whose destination `connect4`/`sendmsg4` rewrote, by cookie.
#[btf_map(name = "sock_rewrites")]
pub static SOCK_REWRITES: LruHashMap<u64, SockRewrite, MAX_SOCK_REWRITES> = LruHashMap::new();

/// The same for `connect6`/`sendmsg6`.
#[btf_map(name = "sock_rewrites6")]
pub static SOCK_REWRITES6: LruHashMap<u64, SockRewrite6, MAX_SOCK_REWRITES> = LruHashMap::new();

/// Destinations that ran out of NAT ports since the agent last looked.
#[btf_map(name = "nat_no_port")]
pub static NAT_NO_PORT: LruHashMap<NoPortKey, NoPortCount, MAX_NAT_NO_PORT> = LruHashMap::new();

/// Per-CPU room for a new flow's entries while its port is claimed.
#[btf_map(name = "nat_scratch")]
pub static NAT_SCRATCH: PerCpuArray<NatScratch<[u8; 4]>, 1> = PerCpuArray::new();

#[btf_map(name = "nat_scratch6")]
pub static NAT_SCRATCH6: PerCpuArray<NatScratch<[u8; 16]>, 1> = PerCpuArray::new();

#[btf_map(name = "nat_no_port6")]
pub static NAT_NO_PORT6: LruHashMap<NoPort6Key, NoPortCount, MAX_NAT_NO_PORT> = LruHashMap::new();

/// Native-routing CIDRs and the node's networks (`common::routing`).
#[btf_map(name = "native_nets")]
pub static NATIVE_NETS: LpmTrie<[u8; 4], u32, MAX_NATIVE_NETS> = LpmTrie::new();

/// `ebridge monitor`'s events (`common::monitor`).
#[btf_map(name = "events")]
pub static EVENTS: RingBuf<MonitorEvent, EVENTS_RING_BYTES> = RingBuf::new();

/// Until when (`bpf_ktime_get_ns`) a monitor is attached; 0: none.
#[btf_map(name = "monitor")]
pub static MONITOR: Array<u64, 1> = Array::new();

#[btf_map(name = "monitor_budget")]
pub static MONITOR_BUDGET: PerCpuArray<MonitorBudget, 1> = PerCpuArray::new();
