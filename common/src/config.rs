/// Datapath-wide settings: the single entry (index 0) of the `config` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BridgeConfig {
    /// Gateway address held by the bridge device, network byte order.
    pub gateway_ipv4: [u8; 4],
    /// Subnet network address, network byte order.
    pub subnet_ipv4: [u8; 4],
    pub subnet_prefix_len: u32,
    pub bridge_ifindex: u32,
    pub uplink_ifindex: u32,
    pub mtu: u32,
    /// `CONFIG_F_*` bits.
    pub flags: u32,
    /// Size the `nat` map was created with (informational).
    pub nat_entries: u32,
    /// FDB entries not refreshed for this long are ignored (and shown as
    /// expired), like the Linux bridge's `ageing_time`.
    pub fdb_ageing_ns: u64,
    /// Network namespace inode the bridge lives in; guards against two
    /// namespaces claiming the same bridge name on the shared bpffs.
    pub netns_inode: u64,
    /// Masquerade source: the uplink's primary IPv4 address.
    pub uplink_ipv4: [u8; 4],
    /// NAT port range, host order, inclusive.
    pub nat_port_min: u16,
    pub nat_port_max: u16,
    /// The bridge's own MAC: source of frames delivered to containers.
    pub bridge_mac: [u8; 6],
    pub _pad: [u8; 2],
    /// Network namespace cookie (`SO_NETNS_COOKIE`) of the node: the cgroup
    /// socket programs act only on sockets of this namespace.
    pub netns_cookie: u64,
    /// IPv6 (`CONFIG_F_IPV6`): the gateway address the bridge holds and
    /// the containers' subnet, network order.
    pub gateway_ipv6: [u8; 16],
    pub subnet_ipv6: [u8; 16],
    pub subnet6_prefix_len: u32,
    pub _pad6: u32,
    /// IPv6 masquerade source: the uplink's global address.
    pub uplink_ipv6: [u8; 16],
}

/// Containers on the bridge may talk to each other (Docker's `icc`).
pub const CONFIG_F_ICC: u32 = 1 << 0;
/// Outbound traffic is masqueraded to the uplink address.
pub const CONFIG_F_MASQUERADE: u32 = 1 << 1;
/// The uplink runs the `uplink_xdp` program in generic (skb) mode.
pub const CONFIG_F_XDP_GENERIC: u32 = 1 << 2;
/// The uplink runs the `uplink_xdp` program in native (driver) mode.
pub const CONFIG_F_XDP_NATIVE: u32 = 1 << 3;
/// Native-routing CIDRs are set: the datapath consults `native_nets`.
pub const CONFIG_F_NATIVE_ROUTING: u32 = 1 << 5;
/// The bridge has an IPv6 subnet (`up --subnet-v6`).
pub const CONFIG_F_IPV6: u32 = 1 << 6;
/// IPv6 from containers is masqueraded behind `uplink_ipv6` (the default
/// with an IPv6 subnet, like Docker 27; off: routed with its own address).
pub const CONFIG_F_IPV6_MASQUERADE: u32 = 1 << 7;
/// `--nat-ports` was given: every source port maps into that range (like
/// `MASQUERADE --to-ports`). Without it, ports below 1024 stay privileged.
pub const CONFIG_F_NAT_PORTS_GIVEN: u32 = 1 << 4;
