//! `ebridge monitor`: events the datapath writes to the `events` ring
//! buffer while a monitor is attached (the `monitor` array holds the time
//! until which one is; the monitor keeps pushing it forward), at most
//! `MONITOR_EVENTS_PER_SEC` per CPU.

/// A packet dropped, with its reason.
pub const EVENT_DROP: u8 = 1;
/// A new masqueraded flow (and its NAT address and port).
pub const EVENT_NAT_NEW: u8 = 2;
/// A new flow through a published port (outside or hairpin).
pub const EVENT_PUBLISH_HIT: u8 = 3;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MonitorEvent {
    /// `bpf_ktime_get_ns()`.
    pub ts_ns: u64,
    /// `EVENT_*`.
    pub kind: u8,
    pub proto: u8,
    /// Drops: the reason code (`stats`).
    pub reason: u16,
    /// The device the packet came in on (a host veth for containers).
    pub ifindex: u32,
    /// Network order, as in the packet; IPv4 in the first four bytes.
    /// Zero when not IP or cut short.
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    /// NAT events: the translated address and port (network order).
    pub nat_addr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub nat_port: u16,
    /// 4 or 6; 0 when the packet is neither.
    pub family: u8,
    pub _pad: u8,
}

/// Per-CPU rate limiter state.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MonitorBudget {
    /// Start of the current one-second window.
    pub window_ns: u64,
    pub used: u32,
    pub _pad: u32,
    /// Events not written because the budget was spent or the ring full.
    pub lost: u64,
}

pub const MONITOR_EVENTS_PER_SEC: u32 = 2000;
/// How far ahead a monitor arms the datapath; it renews every second, so a
/// monitor that dies stops events within this.
pub const MONITOR_LEASE_NS: u64 = 3_000_000_000;
