/// Key of the `fdb` map: a MAC address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MacAddr {
    pub octets: [u8; 6],
}

/// Where a MAC was last seen, like one row of `brctl showmacs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FdbEntry {
    /// Host-side veth (or the bridge itself for local entries).
    pub ifindex: u32,
    /// `FDB_F_*` bits.
    pub flags: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) of the last frame from this MAC.
    pub last_seen_ns: u64,
}

/// The MAC belongs to the node itself (the bridge or a host veth): frames to
/// it go to the host stack, never redirected, and never age.
pub const FDB_F_LOCAL: u32 = 1 << 0;

/// Learned entries are rewritten at most this often, so a busy flow costs a
/// map read per packet rather than a write.
pub const FDB_REFRESH_NS: u64 = 1_000_000_000;
