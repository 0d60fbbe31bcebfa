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
}

/// Size of the stats array; codes above leave room for NAT reasons.
pub const MAX_REASONS: usize = 64;

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
