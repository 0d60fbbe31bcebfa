//! Connection tracking for masquerade: two entries per flow in the `nat`
//! map, one keyed by the original tuple (container → outside) and one by
//! the reply tuple (outside → uplink address), like `conntrack -L` shows.

/// Which way a key looks at the flow.
pub const DIR_ORIGINAL: u8 = 0;
pub const DIR_REPLY: u8 = 1;
/// A node flow whose source port was moved off a tuple a container flow
/// holds: keyed by what the node's socket sent (uplink address, its port).
pub const DIR_NODE: u8 = 2;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// A flow as seen by one direction. Addresses and ports are in network
/// byte order, as in the packet. For ICMP echo the identifier is the
/// "port": `sport` in the original direction, `dport` in the reply. One
/// layout for both families: `A` is `[u8; 4]` (the `nat` map) or
/// `[u8; 16]` (`nat6`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NatKeyOf<A> {
    pub saddr: A,
    pub daddr: A,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub dir: u8,
    pub _pad: [u8; 2],
}

pub type NatKey = NatKeyOf<[u8; 4]>;
pub type Nat6Key = NatKeyOf<[u8; 16]>;

/// What to rewrite a packet matching the key to, plus the flow's state.
/// The 8-byte counters come first so both families' layouts are free of
/// padding (64 and 88 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatEntryOf<A> {
    pub created_ns: u64,
    pub last_seen_ns: u64,
    pub packets: u64,
    pub bytes: u64,
    /// Original entry: the new source (uplink address). Reply entry: the new
    /// destination (the container).
    pub addr: A,
    /// With `NAT_F_DNAT`: the new destination as well (hairpin flows
    /// rewrite both ends).
    pub daddr: A,
    /// Network order: the NAT port (original) or the container's port (reply).
    pub port: u16,
    pub dport: u16,
    /// `CT_*` TCP state; UDP and ICMP stay `CT_NEW` until answered.
    pub state: u8,
    /// `NAT_F_*` bits.
    pub flags: u8,
    /// `OWNER_*`: whose flow this is; only container flows are ever
    /// delivered into a container.
    pub owner: u8,
    pub _pad: u8,
    /// Reply entry: host veth of the container, for `bpf_redirect_peer`.
    pub ifindex: u32,
    /// Reply entry: the container's MAC.
    pub mac: [u8; 6],
    pub _pad2: [u8; 2],
    pub _pad3: [u8; 4],
}

pub type NatEntry = NatEntryOf<[u8; 4]>;
pub type Nat6Entry = NatEntryOf<[u8; 16]>;

/// A new flow's entries while a port is claimed for it, kept in a per-CPU
/// map rather than on the 512-byte eBPF stack: `key` and `back` are the
/// entry that claims the port (its `dport` the port being tried), `forward`
/// the one keyed by what the initiator sent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NatScratch<A> {
    pub back: NatEntryOf<A>,
    pub forward: NatEntryOf<A>,
    pub key: NatKeyOf<A>,
}

/// A flow of a container on this bridge.
pub const OWNER_CONTAINER: u8 = 0;
/// A flow of the node itself through the uplink address: it owns its
/// tuple, so no container flow may claim it, and its replies go to the
/// node's stack. A lone `DIR_REPLY` entry whose `port` is the key's own
/// destination port is a reservation; with another `port` it pairs with a
/// `DIR_NODE` entry (the node's source port was moved).
pub const OWNER_NODE: u8 = 1;
/// A container flow of another ebridge bridge on the same uplink (seen
/// leaving with that bridge's mark): reserved here, its replies passed on
/// to the next program in the TCX chain.
pub const OWNER_OTHER_BRIDGE: u8 = 2;

pub fn owner_label(owner: u8) -> &'static str {
    match owner {
        OWNER_NODE => "node",
        OWNER_OTHER_BRIDGE => "other-bridge",
        _ => "container",
    }
}

/// `skb->mark` of packets a bridge's endpoint program translated and sent
/// out of the uplink: `MARK_MAGIC | (bridge ifindex & MARK_ID_MASK)`. The
/// uplink's egress programs tell their own, another bridge's and the
/// node's packets apart by it (as Cilium's `MARK_MAGIC_*` values do).
pub const MARK_MAGIC: u32 = 0xeb00_0000;
pub const MARK_MAGIC_MASK: u32 = 0xff00_0000;
pub const MARK_ID_MASK: u32 = 0x00ff_ffff;

#[inline(always)]
pub fn bridge_mark(bridge_ifindex: u32) -> u32 {
    MARK_MAGIC | (bridge_ifindex & MARK_ID_MASK)
}

pub const CT_NEW: u8 = 0;
pub const CT_SYN_SENT: u8 = 1;
pub const CT_ESTABLISHED: u8 = 2;
/// One side has sent FIN.
pub const CT_FIN_WAIT: u8 = 3;
/// Both sides have sent FIN (TIME_WAIT in the kernel's conntrack).
pub const CT_CLOSING: u8 = 4;
/// RST seen.
pub const CT_CLOSED: u8 = 5;

/// Something came back in the reply direction.
pub const NAT_F_REPLIED: u8 = 1 << 0;
pub const NAT_F_FIN_ORIGINAL: u8 = 1 << 1;
pub const NAT_F_FIN_REPLY: u8 = 1 << 2;
/// Rewrite the destination to (`daddr`, `dport`) too.
pub const NAT_F_DNAT: u8 = 1 << 3;
/// The flow came in through a published port.
pub const NAT_F_INBOUND: u8 = 1 << 4;
/// Container to a published port of the node: both ends rewritten,
/// delivered to `ifindex` without leaving the node.
pub const NAT_F_HAIRPIN: u8 = 1 << 5;
/// The hairpin entry keyed by the target's replies (pairs with the
/// client's entry the way a reply entry does).
pub const NAT_F_BACK: u8 = 1 << 6;

/// Bounded search for a free NAT port: the original port, then this many
/// probes, each at a random place in the range. Independent probes do not
/// fall into the long runs of taken ports that sequential client ports
/// leave, so a new flow fails only if about `fill^128` (one in 700,000 at
/// 90 % full; MASQUERADE gives up after 240 tries).
pub const NAT_PORT_PROBES: u32 = 128;

/// MASQUERADE's range for source ports 1024 and above when no range is
/// given; ports below 1024 stay below 1024 (1-511 or 600-1023, as the
/// kernel's `nf_nat_l4proto_unique_tuple` does).
pub const DEFAULT_NAT_PORT_MIN: u16 = 1024;
pub const DEFAULT_NAT_PORT_MAX: u16 = 65535;

/// New flows dropped for want of a free port, by destination: written on
/// the drop path only, read and cleared by the agent, which logs them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NoPortKeyOf<A> {
    pub daddr: A,
    pub dport: u16,
    pub proto: u8,
    pub _pad: u8,
}

pub type NoPortKey = NoPortKeyOf<[u8; 4]>;
pub type NoPort6Key = NoPortKeyOf<[u8; 16]>;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoPortCount {
    pub drops: u64,
    pub last_ns: u64,
}

/// Later fragments of a translated datagram, found by (src, dst, IP id,
/// proto) of the fragment as it arrives.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
    pub id: u16,
    pub proto: u8,
    pub dir: u8,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragEntry {
    /// Address to rewrite to (source on the way out, destination back in).
    pub addr: [u8; 4],
    /// Ingress: host veth to redirect to.
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// `FragKey` for IPv6: the fragment header's 32-bit identification.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Frag6Key {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    /// As it is in the fragment header (network order).
    pub id: u32,
    pub proto: u8,
    pub dir: u8,
    pub _pad: [u8; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Frag6Entry {
    /// Address to rewrite to (source on the way out, destination back in).
    pub addr: [u8; 16],
    /// Ingress: host veth to redirect to.
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

pub fn state_label(proto: u8, state: u8, flags: u8) -> &'static str {
    match proto {
        IPPROTO_TCP => match state {
            CT_SYN_SENT => "SYN_SENT",
            CT_ESTABLISHED => "ESTABLISHED",
            CT_FIN_WAIT => "FIN_WAIT",
            CT_CLOSING => "TIME_WAIT",
            CT_CLOSED => "CLOSE",
            _ => "NEW",
        },
        _ => {
            if flags & NAT_F_REPLIED != 0 {
                "ASSURED"
            } else {
                "UNREPLIED"
            }
        }
    }
}

pub fn proto_label(proto: u8) -> &'static str {
    match proto {
        IPPROTO_TCP => "tcp",
        IPPROTO_UDP => "udp",
        IPPROTO_ICMP => "icmp",
        _ => "?",
    }
}

/// A published port: (node address, port, protocol). The unspecified
/// address means every address of the node of that family (`-p 8080:80`
/// without a host IP publishes on both). `A` is `[u8; 4]` (`publish`) or
/// `[u8; 16]` (`publish6`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PublishKeyOf<A> {
    pub addr: A,
    /// Network order.
    pub port: u16,
    pub proto: u8,
    pub _pad: u8,
}

pub type PublishKey = PublishKeyOf<[u8; 4]>;
pub type Publish6Key = PublishKeyOf<[u8; 16]>;

/// Where a published port leads.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublishTargetOf<A> {
    pub addr: A,
    /// Network order.
    pub port: u16,
    pub _pad: [u8; 2],
    /// Host veth of the endpoint.
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub _pad2: [u8; 2],
}

pub type PublishTarget = PublishTargetOf<[u8; 4]>;
pub type Publish6Target = PublishTargetOf<[u8; 16]>;

/// What a host socket asked for before `connect4`/`sendmsg4` (or the `6`
/// hooks) sent it to a container, so `recvmsg4`/`recvmsg6` can make
/// replies look as if they came from there. Keyed by socket cookie.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockRewriteOf<A> {
    pub orig_addr: A,
    pub orig_port: u16,
    pub target_port: u16,
    pub target_addr: A,
}

pub type SockRewrite = SockRewriteOf<[u8; 4]>;
pub type SockRewrite6 = SockRewriteOf<[u8; 16]>;
