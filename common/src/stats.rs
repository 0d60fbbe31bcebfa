//! Every verdict the datapath takes has a reason code and a per-CPU counter
//! in the `stats` map (index = reason), like `iptables -nvL` counters.

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// What became of a packet that carried a reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Redirected by the fast path.
    Redirect,
    /// Handed to the kernel bridge / stack (`TC_ACT_OK`).
    Pass,
    /// Dropped (`TC_ACT_SHOT`).
    Drop,
}

macro_rules! reasons {
    ($( $(#[$doc:meta])* $name:ident = $code:literal, $label:literal, $verdict:ident; )*) => {
        $( $(#[$doc])* pub const $name: u32 = $code; )*
        /// (code, label, verdict) for every reason, for the CLI and tests.
        pub const REASONS: &[(u32, &str, Verdict)] = &[
            $( ($code, $label, Verdict::$verdict), )*
        ];
    };
}

reasons! {
    /// Unicast to another endpoint, sent straight into its netns.
    FWD_REDIRECT_PEER = 0, "redirect-peer", Redirect;
    /// Broadcast or multicast: the bridge floods it.
    PASS_MULTICAST = 1, "pass-broadcast-multicast", Pass;
    /// Destination MAC not in the FDB.
    PASS_UNKNOWN_DST = 2, "pass-unknown-dst", Pass;
    /// Destination MAC is the bridge's or a host veth's own.
    PASS_TO_HOST = 3, "pass-to-host", Pass;
    /// Destination MAC known but older than the ageing time.
    PASS_FDB_EXPIRED = 4, "pass-fdb-expired", Pass;
    /// Destination is the sender's own port; the bridge decides (hairpin).
    PASS_SAME_PORT = 5, "pass-same-port", Pass;
    /// Masqueraded and sent straight out of the uplink.
    FWD_SNAT = 6, "snat-out", Redirect;
    /// Reply to a masqueraded flow, un-NATed and sent into the container.
    FWD_REVNAT = 7, "revnat-in", Redirect;
    /// ICMP error about a masqueraded flow, translated inside and out.
    FWD_REVNAT_ICMP_ERROR = 8, "revnat-icmp-error", Redirect;
    /// ICMP error from a container about a masqueraded flow, translated.
    FWD_SNAT_ICMP_ERROR = 9, "snat-icmp-error", Redirect;
    /// Masquerade is off, or the route does not leave by the uplink.
    PASS_ROUTED = 10, "pass-routed", Pass;
    /// TTL would expire here: the kernel answers with time-exceeded.
    PASS_TTL_EXPIRING = 11, "pass-ttl-expiring", Pass;
    /// Uplink traffic that is not a reply to a masqueraded flow.
    PASS_UPLINK_HOST = 12, "pass-uplink-host", Pass;
    /// The route lookup gave no fast-path answer (unreachable, too big for
    /// the next hop...): the kernel handles it and sends the ICMP error.
    PASS_FIB_SLOW_PATH = 13, "pass-fib-slow-path", Pass;
    /// Outside → published port, DNATed into the container.
    FWD_DNAT = 14, "dnat-in", Redirect;
    /// Container → published port of the node, turned around locally.
    FWD_HAIRPIN = 15, "hairpin", Redirect;
    /// Source MAC is not the endpoint's.
    DROP_SPOOFED_MAC = 16, "drop-spoofed-mac", Drop;
    /// IPv4 source address is not the endpoint's.
    DROP_SPOOFED_IP = 17, "drop-spoofed-ip", Drop;
    /// ARP sender hardware or protocol address is not the endpoint's.
    DROP_SPOOFED_ARP = 18, "drop-spoofed-arp", Drop;
    /// Frame too short for the headers its type announces.
    DROP_TRUNCATED = 19, "drop-truncated", Drop;
    /// Program runs on a veth that is not in the endpoints map.
    DROP_UNKNOWN_ENDPOINT = 20, "drop-unknown-endpoint", Drop;
    /// The config map has no entry: the datapath is not set up.
    DROP_NO_CONFIG = 21, "drop-no-config", Drop;
    /// Container-to-container traffic while ICC is off.
    DROP_ICC = 22, "drop-icc-disabled", Drop;
    /// `bpf_redirect_peer` refused the target.
    DROP_REDIRECT_FAILED = 23, "drop-redirect-failed", Drop;
    /// IPv4 header with a bad IHL or total length.
    DROP_MALFORMED_IP = 24, "drop-malformed-ip", Drop;
    /// No free NAT port for this destination within the probes.
    DROP_NAT_NO_PORT = 25, "drop-nat-no-port", Drop;
    /// The NAT table is full.
    DROP_NAT_TABLE_FULL = 26, "drop-nat-table-full", Drop;
    /// A protocol masquerade cannot translate (not TCP, UDP or ICMP echo).
    DROP_NAT_UNSUPPORTED = 27, "drop-nat-unsupported", Drop;
    /// A later fragment whose first fragment was not seen.
    DROP_FRAG_NO_FIRST = 28, "drop-frag-no-first", Drop;
    /// A container source address about to leave the uplink un-NATed.
    DROP_LEAK = 29, "drop-leak-guard", Drop;
    /// A reply whose TTL would expire on the way to the container.
    DROP_TTL_EXCEEDED = 30, "drop-ttl-exceeded", Drop;
    /// A checksum or store helper failed while rewriting.
    DROP_REWRITE_FAILED = 31, "drop-rewrite-failed", Drop;
    /// An ICMP error from a container about no flow we track.
    DROP_ICMP_ERROR_UNTRACKED = 32, "drop-icmp-error-untracked", Drop;
    /// Outside → a container address that no published port leads to.
    DROP_NOT_PUBLISHED = 33, "drop-not-published", Drop;
    /// A published-port flow whose return tuple is already taken.
    DROP_NAT_CONFLICT = 34, "drop-nat-conflict", Drop;
    /// Reply to a masqueraded (or published-port) flow, un-NATed by the
    /// uplink's XDP program and redirected into the container's host veth.
    FWD_XDP_REVNAT = 35, "xdp-revnat-in", Redirect;
    /// Not the XDP program's common case (no flow, first packet of a
    /// published port, ICMP error, fragment, TTL expiring, longer than the
    /// MTU, not IPv4): handed on to the uplink's TC program, which counts
    /// it again.
    PASS_XDP_TO_TC = 36, "xdp-pass-to-tc", Pass;
    /// A TCP/UDP reply whose checksum field holds only the pseudo-header
    /// sum (a local sender's CHECKSUM_PARTIAL, seen on veth uplinks): as an
    /// XDP frame it would reach the container without that state and be
    /// dropped as corrupt, so the TC program (which keeps it) handles it.
    PASS_XDP_CSUM_PARTIAL = 37, "xdp-pass-partial-csum", Pass;
    /// A packet the node itself sends from the uplink address: its tuple is
    /// held for it in the NAT table, so no container flow takes it.
    PASS_NODE_FLOW_OUT = 38, "node-flow-out", Pass;
    /// A node packet whose tuple a container flow already held: its source
    /// port was moved to a free one (and is moved back on the replies).
    PASS_NODE_PORT_MOVED = 39, "node-port-moved", Pass;
    /// A reply to a node flow: to the node's stack, never a container.
    PASS_NODE_FLOW_IN = 40, "node-flow-in", Pass;
    /// A node packet whose tuple could not be held (NAT table full); it
    /// still leaves.
    PASS_NODE_UNTRACKED = 41, "node-flow-untracked", Pass;
    /// A reply to another ebridge bridge's flow on the same uplink: handed
    /// to the next program in the TCX chain.
    PASS_OTHER_BRIDGE = 42, "pass-other-bridge", Pass;
    /// A packet for a container, larger than its MTU with DF set: answered
    /// with ICMP fragmentation-needed, as a router would.
    FWD_ICMP_FRAG_NEEDED = 43, "icmp-frag-needed", Redirect;
    /// A packet for a container whose TTL expires here: answered with ICMP
    /// time-exceeded, as a router would.
    FWD_ICMP_TIME_EXCEEDED = 44, "icmp-time-exceeded", Redirect;
    /// Another bridge's packet leaving with a tuple this bridge's container
    /// flow holds (two CPUs claimed it at once): it still leaves.
    PASS_OTHER_BRIDGE_CLASH = 45, "other-bridge-clash", Pass;
    /// A pod's packet to a native-routing CIDR, routed with the pod's own
    /// address by the endpoint program (FIB lookup, redirect).
    FWD_ROUTED_OUT = 46, "routed-out", Redirect;
    /// A packet from a native-routing CIDR or the node's networks for a
    /// local pod, delivered by the uplink program without NAT.
    FWD_ROUTED_IN = 47, "routed-in", Redirect;
    /// A packet for a pod address no endpoint has: the kernel answers.
    PASS_NO_SUCH_POD = 48, "pass-no-such-pod", Pass;
    /// IPv6 source address is neither the endpoint's address nor its
    /// link-local one (nor `::` where NDP and MLD allow it).
    DROP_SPOOFED_IP6 = 49, "drop-spoofed-ip6", Drop;
    /// A Neighbor Solicitation or Advertisement claiming an address or a
    /// link-layer address that is not the endpoint's.
    DROP_SPOOFED_ND = 50, "drop-spoofed-nd", Drop;
    /// A Router Advertisement from a container: it must not become the
    /// other containers' router.
    DROP_ROUTER_ADVERT = 51, "drop-router-advert", Drop;
    /// An ICMPv6 Redirect from a container.
    DROP_ICMP6_REDIRECT = 52, "drop-icmp6-redirect", Drop;
    /// IPv6 from a container on a bridge without an IPv6 subnet.
    DROP_IPV6_OFF = 53, "drop-ipv6-off", Drop;
    /// IPv6 header with a bad version or payload length, or an extension
    /// header chain that runs past the packet or is too long to walk.
    DROP_MALFORMED_IP6 = 54, "drop-malformed-ip6", Drop;
    /// IPv6 to masquerade, but the uplink has no global IPv6 address to
    /// masquerade behind.
    DROP_NO_UPLINK_IPV6 = 55, "drop-no-uplink-ipv6", Drop;
}

/// Size of the stats array; codes above leave room for more reasons.
pub const MAX_REASONS: usize = 96;

pub fn reason_label(code: u32) -> Option<&'static str> {
    let mut i = 0;
    while i < REASONS.len() {
        if REASONS[i].0 == code {
            return Some(REASONS[i].1);
        }
        i += 1;
    }
    None
}
