//! Names and sizes of the pinned maps. A map's name is also its file name
//! under `/sys/fs/bpf/ebridge/<bridge>/`.

pub const MAP_CONFIG: &str = "config";
pub const MAP_ENDPOINTS: &str = "endpoints";
pub const MAP_ENDPOINT_BY_IP: &str = "endpoint_by_ip";
pub const MAP_ENDPOINT_BY_IP6: &str = "endpoint_by_ip6";
pub const MAP_FDB: &str = "fdb";
pub const MAP_STATS: &str = "stats";
pub const MAP_NAT: &str = "nat";
pub const MAP_NAT6: &str = "nat6";
pub const MAP_NAT_NO_PORT6: &str = "nat_no_port6";
pub const MAP_FRAGS: &str = "frags";
pub const MAP_FRAGS6: &str = "frags6";
pub const MAP_PUBLISH: &str = "publish";
pub const MAP_PUBLISH6: &str = "publish6";
pub const MAP_NODE_ADDRS: &str = "node_addrs";
pub const MAP_NODE_ADDRS6: &str = "node_addrs6";
pub const MAP_SOCK_REWRITES: &str = "sock_rewrites";
pub const MAP_SOCK_REWRITES6: &str = "sock_rewrites6";
pub const MAP_NAT_NO_PORT: &str = "nat_no_port";
pub const MAP_NATIVE_NETS: &str = "native_nets";
pub const MAP_EVENTS: &str = "events";
pub const MAP_MONITOR: &str = "monitor";
pub const MAP_MONITOR_BUDGET: &str = "monitor_budget";

/// All maps the datapath pins.
pub const PINNED_MAPS: [&str; 22] = [
    MAP_CONFIG,
    MAP_ENDPOINTS,
    MAP_ENDPOINT_BY_IP,
    MAP_ENDPOINT_BY_IP6,
    MAP_FDB,
    MAP_STATS,
    MAP_NAT,
    MAP_NAT6,
    MAP_FRAGS,
    MAP_FRAGS6,
    MAP_PUBLISH,
    MAP_PUBLISH6,
    MAP_NODE_ADDRS,
    MAP_NODE_ADDRS6,
    MAP_SOCK_REWRITES,
    MAP_SOCK_REWRITES6,
    MAP_NAT_NO_PORT,
    MAP_NAT_NO_PORT6,
    MAP_NATIVE_NETS,
    MAP_EVENTS,
    MAP_MONITOR,
    MAP_MONITOR_BUDGET,
];

/// Program names as they appear in the object file and under the pin dir.
pub const PROG_ENDPOINT: &str = "endpoint_ingress";
pub const PROG_UPLINK_INGRESS: &str = "uplink_ingress";
pub const PROG_UPLINK_EGRESS: &str = "uplink_egress";
pub const PROG_UPLINK_XDP: &str = "uplink_xdp";
pub const PROG_CONNECT4: &str = "host_connect4";
pub const PROG_SENDMSG4: &str = "host_sendmsg4";
pub const PROG_RECVMSG4: &str = "host_recvmsg4";
pub const PROG_CONNECT6: &str = "host_connect6";
pub const PROG_SENDMSG6: &str = "host_sendmsg6";
pub const PROG_RECVMSG6: &str = "host_recvmsg6";
/// The cgroup programs that send node processes to published ports.
pub const HOST_PROGS: [&str; 6] = [
    PROG_CONNECT4,
    PROG_SENDMSG4,
    PROG_RECVMSG4,
    PROG_CONNECT6,
    PROG_SENDMSG6,
    PROG_RECVMSG6,
];

/// Most endpoints one bridge can hold (a /16 has 65534 host addresses, but a
/// node never runs that many containers; Linux bridges allow 1024 ports).
pub const MAX_ENDPOINTS: usize = 4096;
/// FDB size: endpoints plus the bridge's and host veths' own local entries.
pub const MAX_FDB_ENTRIES: usize = 2 * MAX_ENDPOINTS + 64;

/// Default NAT table size (entries; every flow takes two). Overridden at
/// load time by `ebridge up --nat-entries`.
pub const DEFAULT_NAT_ENTRIES: usize = 262_144;
/// In-flight fragmented datagrams remembered at once (LRU).
pub const MAX_FRAG_ENTRIES: usize = 8192;
/// Published (address, port, protocol) entries.
pub const MAX_PUBLISHED: usize = 65_536;
/// Addresses the node owns (for "every address" publishes).
pub const MAX_NODE_ADDRS: usize = 256;
/// Destinations with dropped new flows between two agent passes (LRU).
pub const MAX_NAT_NO_PORT: usize = 256;
/// Native-routing CIDRs and the node's networks, together.
pub const MAX_NATIVE_NETS: usize = 64;
/// The monitor's ring buffer, in bytes (a power of two): a few thousand
/// events between two reads.
pub const EVENTS_RING_BYTES: usize = 256 * 1024;
/// Host UDP sockets talking to a published port at once (LRU).
pub const MAX_SOCK_REWRITES: usize = 16_384;
