//! The targets of each scenario: a ratio of two setups' medians and the
//! bound it must meet.
use super::{
    metric::Metric,
    scenario::Setup,
    stats::{Bound, Target},
};

const fn target(metric: Metric, subject: Setup, against: Setup, bound: Bound) -> Target {
    Target {
        metric,
        subject,
        against,
        bound,
    }
}

/// From the issue: packet rate >= 1.5x Docker's bridge and >= 0.9x the
/// bare veth; p50 latency <= 0.85x Docker's; connections per second >=
/// 1.3x Docker's; TCP throughput not below Docker's.
pub const C2C: [Target; 5] = [
    target(
        Metric::UdpPps,
        Setup::Ebridge,
        Setup::DockerBridge,
        Bound::AtLeast(1.5),
    ),
    target(
        Metric::UdpPps,
        Setup::Ebridge,
        Setup::BareVeth,
        Bound::AtLeast(0.9),
    ),
    target(
        Metric::RttP50,
        Setup::Ebridge,
        Setup::DockerBridge,
        Bound::AtMost(0.85),
    ),
    target(
        Metric::TcpCps,
        Setup::Ebridge,
        Setup::DockerBridge,
        Bound::AtLeast(1.3),
    ),
    target(
        Metric::TcpBps,
        Setup::Ebridge,
        Setup::DockerBridge,
        Bound::AtLeast(1.0),
    ),
];

/// Masquerade against iptables MASQUERADE: packet rate >= 1.8x, new TCP
/// connections >= 1.5x, p50 <= 0.85x, throughput not below; and a table
/// of a million live flows still forwards an established flow, and opens
/// new ones (port claims beside the million), at >= 0.9x the default
/// table. The churn test's per-run targets are in churn_report.rs.
pub const NAT: [Target; 6] = [
    target(
        Metric::UdpPps,
        Setup::Ebridge,
        Setup::DockerNat,
        Bound::AtLeast(1.8),
    ),
    target(
        Metric::TcpCps,
        Setup::Ebridge,
        Setup::DockerNat,
        Bound::AtLeast(1.5),
    ),
    target(
        Metric::RttP50,
        Setup::Ebridge,
        Setup::DockerNat,
        Bound::AtMost(0.85),
    ),
    target(
        Metric::TcpBps,
        Setup::Ebridge,
        Setup::DockerNat,
        Bound::AtLeast(1.0),
    ),
    target(
        Metric::UdpPps,
        Setup::EbridgeFullNat,
        Setup::Ebridge,
        Bound::AtLeast(0.9),
    ),
    target(
        Metric::TcpCps,
        Setup::EbridgeFullNat,
        Setup::Ebridge,
        Bound::AtLeast(0.9),
    ),
];

/// Published ports against iptables DNAT: packet rate >= 1.8x, new TCP
/// connections >= 1.5x, p50 <= 0.85x; and the packet rate must not fall
/// when 1,000 ports are published instead of one.
pub const PUBLISH: [Target; 4] = [
    target(
        Metric::UdpPps,
        Setup::Ebridge,
        Setup::DockerDnat,
        Bound::AtLeast(1.8),
    ),
    target(
        Metric::TcpCps,
        Setup::Ebridge,
        Setup::DockerDnat,
        Bound::AtLeast(1.5),
    ),
    target(
        Metric::RttP50,
        Setup::Ebridge,
        Setup::DockerDnat,
        Bound::AtMost(0.85),
    ),
    target(
        Metric::UdpPps,
        Setup::EbridgeThousandPorts,
        Setup::EbridgeOnePort,
        Bound::AtLeast(1.0),
    ),
];

/// Issue 8: podman's datapath on ebridge's plugin against the reference
/// chain, at least the ratios the c2c and publish scenarios ask against
/// Docker (c2c: packet rate 1.5x, p50 0.85x, connections 1.3x; publish:
/// packet rate 1.8x, p50 0.85x, connections 1.5x). The plugin's ADD/DEL
/// targets are in cni/lifecycle.rs.
pub const CNI: [Target; 6] = [
    target(
        Metric::UdpPps,
        Setup::CniC2c,
        Setup::ChainC2c,
        Bound::AtLeast(1.5),
    ),
    target(
        Metric::RttP50,
        Setup::CniC2c,
        Setup::ChainC2c,
        Bound::AtMost(0.85),
    ),
    target(
        Metric::TcpCps,
        Setup::CniC2c,
        Setup::ChainC2c,
        Bound::AtLeast(1.3),
    ),
    target(
        Metric::UdpPps,
        Setup::CniPublish,
        Setup::ChainPublish,
        Bound::AtLeast(1.8),
    ),
    target(
        Metric::RttP50,
        Setup::CniPublish,
        Setup::ChainPublish,
        Bound::AtMost(0.85),
    ),
    target(
        Metric::TcpCps,
        Setup::CniPublish,
        Setup::ChainPublish,
        Bound::AtLeast(1.5),
    ),
];

/// Issue 9, pod to pod across two nodes: packet rate >= 1.5x the host-gw
/// node and >= 1.1x the kernel's plain routing; p50 <= 0.85x the host-gw
/// node; connections per second >= 1.3x; throughput not below.
pub const ROUTING: [Target; 5] = [
    target(
        Metric::UdpPps,
        Setup::Ebridge,
        Setup::HostGw,
        Bound::AtLeast(1.5),
    ),
    target(
        Metric::UdpPps,
        Setup::Ebridge,
        Setup::PlainRouting,
        Bound::AtLeast(1.1),
    ),
    target(
        Metric::RttP50,
        Setup::Ebridge,
        Setup::HostGw,
        Bound::AtMost(0.85),
    ),
    target(
        Metric::TcpCps,
        Setup::Ebridge,
        Setup::HostGw,
        Bound::AtLeast(1.3),
    ),
    target(
        Metric::TcpBps,
        Setup::Ebridge,
        Setup::HostGw,
        Bound::AtLeast(1.0),
    ),
];

/// Issue 11, the three paths over IPv6 against Docker's IPv6 setup
/// (ip6tables, br_netfilter): packet rate >= 1.5x, p50 <= 0.85x,
/// connections per second >= 1.3x on every path.
const fn ipv6(against: Setup) -> [Target; 3] {
    [
        target(Metric::UdpPps, Setup::Ebridge, against, Bound::AtLeast(1.5)),
        target(Metric::RttP50, Setup::Ebridge, against, Bound::AtMost(0.85)),
        target(Metric::TcpCps, Setup::Ebridge, against, Bound::AtLeast(1.3)),
    ]
}

pub const C2C6: [Target; 3] = ipv6(Setup::DockerBridge);
pub const NAT6: [Target; 3] = ipv6(Setup::DockerNat);
pub const PUBLISH6: [Target; 3] = ipv6(Setup::DockerDnat);
