use aya_ebpf::{
    btf_maps::{Array, HashMap, PerCpuArray},
    macros::btf_map,
};
use ebridge_common::{
    config::BridgeConfig,
    endpoint::Endpoint,
    fdb::{FdbEntry, MacAddr},
    maps::{MAX_ENDPOINTS, MAX_FDB_ENTRIES},
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

#[btf_map(name = "fdb")]
pub static FDB: HashMap<MacAddr, FdbEntry, MAX_FDB_ENTRIES> = HashMap::new();

#[btf_map(name = "stats")]
pub static STATS: PerCpuArray<Counter, MAX_REASONS> = PerCpuArray::new();
