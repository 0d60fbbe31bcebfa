/// One container attachment, keyed by the host-side veth's ifindex in the
/// `endpoints` map. The endpoint program reads it for anti-spoofing.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// The container's address, network byte order.
    pub ipv4: [u8; 4],
    /// The container's MAC (its eth0 inside the netns).
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
    /// The host-side veth: `bpf_redirect_peer` on it enters the container.
    pub host_ifindex: u32,
    pub flags: u32,
    /// The container's IPv6 address, network order; all zero when the
    /// bridge has no IPv6 subnet.
    pub ipv6: [u8; 16],
    /// Its link-local address (EUI-64 from `mac`, as the kernel forms it
    /// with `addr_gen_mode` 0): NDP and router solicitations use it.
    pub ipv6_ll: [u8; 16],
}
