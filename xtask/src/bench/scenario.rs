//! What is compared: three scenarios, each a set of setups measured on a
//! set of measurements, with its own targets.
//!
//! - c2c: container to container on one node;
//! - nat: container to a host outside the node (masquerade);
//! - publish: outside host to a container's published port (DNAT);
//! - cni: podman's containers on the reference CNI chain and on ebridge
//!   as its CNI plugin, both paths (container to container, outside to a
//!   published port) side by side; its lifecycle part lives in cni/;
//! - routing: pod to pod across two nodes (native routing, issue 9); its
//!   two-node topologies and evidence live in routing/;
//! - c2c6, nat6, publish6: the first three over IPv6 (issue 11), each
//!   setup built as its IPv4 twin plus IPv6 (ipv6.rs), measured by the
//!   same code on IPv6 addresses and sockets.
use super::{measure::Measurement, metric::Metric, stats::Target, targets};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scenario {
    C2c,
    Nat,
    Publish,
    Cni,
    Routing,
    /// c2c over IPv6.
    C2c6,
    /// nat over IPv6 (masquerade behind the uplink's global address).
    Nat6,
    /// publish over IPv6 (the node's global address, `[::]` ports).
    Publish6,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Setup {
    BareVeth,
    DockerBridge,
    BridgeNfOff,
    DockerNat,
    DockerDnat,
    /// docker-dnat with the measured container's rules first.
    DockerDnatFirst,
    Ebridge,
    /// ebridge whose NAT table holds a million synthetic live flows.
    EbridgeFullNat,
    /// ebridge with only the measured port published.
    EbridgeOnePort,
    /// ebridge with the measured port and 1,000 more published.
    EbridgeThousandPorts,
    /// podman on the reference chain (bridge + host-local + portmap),
    /// container to container.
    ChainC2c,
    /// podman on ebridge's CNI plugin, container to container.
    CniC2c,
    /// The reference chain, outside host to a published port.
    ChainPublish,
    /// ebridge's CNI plugin, outside host to a published port.
    CniPublish,
    /// routing: a host-gw / kube-router node's Linux routing (bridge with
    /// br_netfilter, FORWARD rules, conntrack, ip_forward).
    HostGw,
    /// routing: the kernel's IP forwarding and nothing else (routed veth,
    /// no netfilter).
    PlainRouting,
}

/// Synthetic live flows in `ebridge-1m-flows`' NAT table.
pub const FILL_FLOWS: u32 = 1_000_000;
/// Ports published in bulk: on `ebridge-1k-ports`, and in the cost test.
pub const BULK_PORTS: u16 = 1000;

impl Scenario {
    pub const ALL: [Scenario; 8] = [
        Scenario::C2c,
        Scenario::Nat,
        Scenario::Publish,
        Scenario::Cni,
        Scenario::Routing,
        Scenario::C2c6,
        Scenario::Nat6,
        Scenario::Publish6,
    ];

    /// The IPv6 scenarios.
    pub const IPV6: [Scenario; 3] = [Scenario::C2c6, Scenario::Nat6, Scenario::Publish6];

    /// Whether it runs over IPv6.
    pub fn is_v6(self) -> bool {
        matches!(self, Scenario::C2c6 | Scenario::Nat6 | Scenario::Publish6)
    }

    /// The IPv4 scenario whose path and setups an IPv6 one repeats
    /// (itself for the others).
    pub fn base(self) -> Scenario {
        match self {
            Scenario::C2c6 => Scenario::C2c,
            Scenario::Nat6 => Scenario::Nat,
            Scenario::Publish6 => Scenario::Publish,
            s => s,
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Scenario::C2c => "c2c",
            Scenario::Nat => "nat",
            Scenario::Publish => "publish",
            Scenario::Cni => "cni",
            Scenario::Routing => "routing",
            Scenario::C2c6 => "c2c6",
            Scenario::Nat6 => "nat6",
            Scenario::Publish6 => "publish6",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Scenario::C2c => "container to container on one node",
            Scenario::Nat => "container to a host outside the node (masquerade)",
            Scenario::Publish => "outside host to a published container port (DNAT)",
            Scenario::Cni => "podman on the reference CNI chain vs on ebridge's CNI plugin",
            Scenario::Routing => "pod to pod across two nodes (native routing)",
            Scenario::C2c6 => "container to container on one node, IPv6",
            Scenario::Nat6 => "container to a host outside the node over IPv6 (masquerade)",
            Scenario::Publish6 => "outside host to a published container port over IPv6 (DNAT)",
        }
    }

    pub fn setups(self) -> &'static [Setup] {
        match self {
            Scenario::C2c => &[
                Setup::BareVeth,
                Setup::DockerBridge,
                Setup::BridgeNfOff,
                Setup::Ebridge,
            ],
            Scenario::Nat => &[
                Setup::BareVeth,
                Setup::DockerNat,
                Setup::Ebridge,
                Setup::EbridgeFullNat,
            ],
            Scenario::Publish => &[
                Setup::BareVeth,
                Setup::DockerDnat,
                Setup::DockerDnatFirst,
                Setup::Ebridge,
                Setup::EbridgeOnePort,
                Setup::EbridgeThousandPorts,
            ],
            Scenario::Cni => &[
                Setup::ChainC2c,
                Setup::CniC2c,
                Setup::ChainPublish,
                Setup::CniPublish,
            ],
            Scenario::Routing => &[
                Setup::BareVeth,
                Setup::HostGw,
                Setup::PlainRouting,
                Setup::Ebridge,
            ],
            Scenario::C2c6 => &[Setup::BareVeth, Setup::DockerBridge, Setup::Ebridge],
            Scenario::Nat6 => &[Setup::BareVeth, Setup::DockerNat, Setup::Ebridge],
            Scenario::Publish6 => &[Setup::BareVeth, Setup::DockerDnat, Setup::Ebridge],
        }
    }

    /// The traffic path a setup of this scenario carries: the cni
    /// scenario measures two (its setups say which), the others one; an
    /// IPv6 scenario's is its IPv4 twin's (`is_v6` says the family).
    pub fn path(self, setup: Setup) -> Scenario {
        match (self, setup) {
            (Scenario::Cni, Setup::ChainC2c | Setup::CniC2c) => Scenario::C2c,
            (Scenario::Cni, _) => Scenario::Publish,
            (s, _) => s.base(),
        }
    }

    pub fn measurements(self) -> &'static [Measurement] {
        match self {
            Scenario::C2c | Scenario::Nat | Scenario::Routing => &Measurement::ALL,
            Scenario::Publish | Scenario::Cni => &[
                Measurement::UdpRate,
                Measurement::UdpRr,
                Measurement::TcpCrr,
            ],
            Scenario::C2c6 | Scenario::Nat6 | Scenario::Publish6 => self.base().measurements(),
        }
    }

    /// Whether `setup` is measured on `m`. The variants of ebridge that
    /// only exist to compare table sizes take the measurements their
    /// targets need: the full NAT table the packet rate, the round trip
    /// and the connection rate (new flows claiming ports beside the
    /// million).
    pub fn takes(self, setup: Setup, m: Measurement) -> bool {
        match setup {
            Setup::EbridgeFullNat => matches!(
                m,
                Measurement::UdpRate | Measurement::UdpRr | Measurement::TcpCrr
            ),
            Setup::EbridgeOnePort | Setup::EbridgeThousandPorts | Setup::DockerDnatFirst => {
                m == Measurement::UdpRate
            }
            _ => self.measurements().contains(&m),
        }
    }

    /// Metrics in table order.
    pub fn metrics(self) -> Vec<Metric> {
        Metric::ALL
            .into_iter()
            .filter(|metric| {
                self.measurements()
                    .iter()
                    .any(|m| m.metrics().contains(metric))
            })
            .collect()
    }

    /// Two-letter code: with the run id it names the setup's namespaces
    /// and, for ebridge, its bridge and pin directory (at most 15 bytes).
    pub fn code(self, setup: Setup) -> String {
        let scenario = match self {
            Scenario::C2c => 'c',
            Scenario::Nat => 'n',
            Scenario::Publish => 'p',
            Scenario::Cni => 'i',
            Scenario::Routing => 'r',
            Scenario::C2c6 => 'x',
            Scenario::Nat6 => 'y',
            Scenario::Publish6 => 'z',
        };
        let setup = match setup {
            Setup::BareVeth => 'b',
            Setup::DockerBridge | Setup::DockerNat | Setup::DockerDnat => 'd',
            Setup::DockerDnatFirst => 'a',
            Setup::BridgeNfOff => 'n',
            Setup::Ebridge => 'e',
            Setup::EbridgeFullNat => 'f',
            Setup::EbridgeOnePort => '1',
            Setup::EbridgeThousandPorts => 'k',
            Setup::ChainC2c => 'r',
            Setup::CniC2c => 'e',
            Setup::ChainPublish => 's',
            Setup::CniPublish => 'f',
            Setup::HostGw => 'h',
            Setup::PlainRouting => 'k',
        };
        format!("{scenario}{setup}")
    }

    /// The code of a two-node setup's second node (routing: the server's
    /// node and pod), distinct from every setup's own code in the
    /// scenario; its names follow `code`'s rules.
    pub fn second_code(self, setup: Setup) -> String {
        let mut code = self.code(setup);
        let second = match code.pop() {
            Some('b') => 'c',
            Some('h') => 'i',
            Some('k') => 'l',
            Some('e') => 'f',
            Some(c) => c.to_ascii_uppercase(),
            None => 'z',
        };
        code.push(second);
        code
    }

    /// (a, b) pairs whose ratio a/b the ratio table shows.
    pub fn ratio_pairs(self) -> &'static [(Setup, Setup)] {
        match self {
            Scenario::C2c => &[
                (Setup::Ebridge, Setup::DockerBridge),
                (Setup::Ebridge, Setup::BridgeNfOff),
                (Setup::Ebridge, Setup::BareVeth),
            ],
            Scenario::Nat => &[
                (Setup::Ebridge, Setup::DockerNat),
                (Setup::Ebridge, Setup::BareVeth),
                (Setup::EbridgeFullNat, Setup::Ebridge),
            ],
            Scenario::Publish => &[
                (Setup::Ebridge, Setup::DockerDnat),
                (Setup::Ebridge, Setup::DockerDnatFirst),
                (Setup::Ebridge, Setup::BareVeth),
                (Setup::EbridgeThousandPorts, Setup::EbridgeOnePort),
            ],
            Scenario::Cni => &[
                (Setup::CniC2c, Setup::ChainC2c),
                (Setup::CniPublish, Setup::ChainPublish),
            ],
            Scenario::Routing => &[
                (Setup::Ebridge, Setup::HostGw),
                (Setup::Ebridge, Setup::PlainRouting),
                (Setup::Ebridge, Setup::BareVeth),
            ],
            Scenario::C2c6 => &[
                (Setup::Ebridge, Setup::DockerBridge),
                (Setup::Ebridge, Setup::BareVeth),
            ],
            Scenario::Nat6 => &[
                (Setup::Ebridge, Setup::DockerNat),
                (Setup::Ebridge, Setup::BareVeth),
            ],
            Scenario::Publish6 => &[
                (Setup::Ebridge, Setup::DockerDnat),
                (Setup::Ebridge, Setup::BareVeth),
            ],
        }
    }

    pub fn targets(self) -> &'static [Target] {
        match self {
            Scenario::C2c => &targets::C2C,
            Scenario::Nat => &targets::NAT,
            Scenario::Publish => &targets::PUBLISH,
            Scenario::Cni => &targets::CNI,
            Scenario::Routing => &targets::ROUTING,
            Scenario::C2c6 => &targets::C2C6,
            Scenario::Nat6 => &targets::NAT6,
            Scenario::Publish6 => &targets::PUBLISH6,
        }
    }
}

impl Setup {
    pub fn key(self) -> &'static str {
        match self {
            Setup::BareVeth => "bare-veth",
            Setup::DockerBridge => "docker-bridge",
            Setup::BridgeNfOff => "bridge-nf-off",
            Setup::DockerNat => "docker-nat",
            Setup::DockerDnat => "docker-dnat",
            Setup::DockerDnatFirst => "docker-dnat-first",
            Setup::Ebridge => "ebridge",
            Setup::EbridgeFullNat => "ebridge-1m-flows",
            Setup::EbridgeOnePort => "ebridge-1-port",
            Setup::EbridgeThousandPorts => "ebridge-1k-ports",
            Setup::ChainC2c => "chain-c2c",
            Setup::CniC2c => "ebridge-c2c",
            Setup::ChainPublish => "chain-publish",
            Setup::CniPublish => "ebridge-publish",
            Setup::HostGw => "host-gw",
            Setup::PlainRouting => "plain-routing",
        }
    }

    pub fn is_ebridge(self) -> bool {
        matches!(
            self,
            Setup::Ebridge
                | Setup::EbridgeFullNat
                | Setup::EbridgeOnePort
                | Setup::EbridgeThousandPorts
        )
    }

    /// A podman node of the cni scenario running ebridge's plugin.
    pub fn is_ebridge_cni(self) -> bool {
        matches!(self, Setup::CniC2c | Setup::CniPublish)
    }

    pub fn is_docker(self) -> bool {
        matches!(
            self,
            Setup::DockerBridge | Setup::DockerNat | Setup::DockerDnat | Setup::DockerDnatFirst
        )
    }

    pub fn describe(self, scenario: Scenario) -> String {
        let s = match (scenario, self) {
            (Scenario::C2c6, Setup::BareVeth) => "one veth pair straight between the two container namespaces, fd00:17::2/64 and fd00:17::3/64 on it beside the IPv4 addresses (the physical limit)",
            (Scenario::C2c6, Setup::DockerBridge) => "Docker 27's default bridge with IPv6 (--ipv6 --fixed-cidr-v6 fd00:17::/64): docker0 with 172.17.0.1/16 and fd00:17::1/64, containers with both families and default routes via them; in the node namespace only bridge-nf-call-iptables=1 and bridge-nf-call-ip6tables=1, net.ipv4.ip_forward=1 and net.ipv6.conf.all.forwarding=1; dockerd's iptables rules and the same in ip6tables (filter FORWARD policy DROP, DOCKER-USER, DOCKER-ISOLATION-STAGE-1/2, -o docker0 ctstate RELATED,ESTABLISHED ACCEPT, -o docker0 -j DOCKER, -i docker0 ! -o docker0 ACCEPT, -i docker0 -o docker0 ACCEPT; nat PREROUTING/OUTPUT ! -d ::1/128 addrtype LOCAL -j DOCKER, POSTROUTING -s fd00:17::/64 ! -o docker0 -j MASQUERADE)",
            (Scenario::Nat6 | Scenario::Publish6, Setup::BareVeth) => "one veth pair straight between the container namespace and the outside namespace, fd00:17::2/64 and 2001:db8:51::2/64 on it (beside the IPv4 addresses), each routing the other's IPv6 subnet on-link (the physical limit)",
            (Scenario::Nat6, Setup::DockerNat) => "the docker-nat node with IPv6 as Docker 27 sets it up: docker0 also holds fd00:17::1/64, the container fd00:17::2/64 with its default route via it, the uplink 2001:db8:51::1/64 with the node's IPv6 default route via the outside (2001:db8:51::2); net.ipv6.conf.all.forwarding=1 and bridge-nf-call-ip6tables=1 in the node namespace only; dockerd's rules in iptables and ip6tables, ip6tables nat POSTROUTING -s fd00:17::/64 ! -o docker0 -j MASQUERADE; the kernel's conntrack size",
            (Scenario::Publish6, Setup::DockerDnat) => "the IPv6 docker-nat node plus what dockerd writes in ip6tables per published port: nat DOCKER (from PREROUTING and OUTPUT ! -d ::1/128, addrtype LOCAL) -p P --dport HOST -j DNAT --to-destination [fd00:17::2]:CTR, filter DOCKER -d fd00:17::2/128 ! -i docker0 -o docker0 --dport CTR ACCEPT, nat POSTROUTING hairpin MASQUERADE; 100 ports of 10 other containers (fd00:17::a-13), the measured container's rules after 5 of them (50 other ports' rules before, 50 after)",
            (Scenario::C2c6, Setup::Ebridge) => "ebridge up --subnet-v6 fd00:17::/64 + two ebridge endpoint add --ip6 in a node namespace with an uplink veth (198.51.100.1/24, 2001:db8:51::1/64) to an outside namespace, ebridge agent running; node sysctls left at their defaults, no iptables or ip6tables rules",
            (Scenario::Nat6, Setup::Ebridge) => "ebridge up --subnet-v6 fd00:17::/64 with every other default (IPv6 masquerade on, behind the uplink's 2001:db8:51::1) + ebridge endpoint add --ip6 fd00:17::2, ebridge agent running; masquerade in eBPF (nat6), no ip6tables rules, IPv6 forwarding untouched",
            (Scenario::Publish6, Setup::Ebridge) => "ebridge up --subnet-v6 fd00:17::/64 + ebridge endpoint add --ip6 fd00:17::2 -p for the measured ports (both families, as Docker publishes on 0.0.0.0 and [::]), and 10 other endpoints (fd00:17::a-13) publishing 10 ports each, ebridge agent running; the outside reaches [2001:db8:51::1]:PORT; DNAT in eBPF, no ip6tables rules",
            (Scenario::C2c, Setup::BareVeth) => "one veth pair straight between the two container namespaces (the physical limit)",
            (Scenario::Routing, Setup::BareVeth) => "one veth pair straight between the two pod namespaces, 10.244.1.2/16 and 10.244.2.2/16 on-link: no node at all (the limit)",
            (_, Setup::BareVeth) => "one veth pair straight between the container namespace and the outside namespace, each routing the other's subnet on-link (the physical limit)",
            (_, Setup::DockerBridge) => "Linux bridge docker0 in a node namespace with bridge-nf-call-iptables=1, Docker's filter FORWARD chains, conntrack and nat MASQUERADE rules",
            (_, Setup::BridgeNfOff) => "the same Linux bridge with bridge-nf-call-iptables=0 and no rules",
            (_, Setup::DockerNat) => "Linux bridge docker0 in a node namespace with an uplink veth to the outside namespace; ip_forward=1 and bridge-nf-call-iptables=1 in the node namespace; dockerd's filter and nat rules, nat POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
            (_, Setup::DockerDnat) => "the docker-nat node plus what dockerd writes for published ports: nat DOCKER chain (from PREROUTING/OUTPUT with -m addrtype --dst-type LOCAL) with one DNAT rule per port, filter DOCKER ACCEPT and nat POSTROUTING hairpin MASQUERADE per port; 100 ports of 10 other containers, the measured container's rules after 5 of them (50 other ports' rules before, 50 after)",
            (_, Setup::DockerDnatFirst) => "docker-dnat with the measured container's rules first in the DOCKER chains (the container was started before the 10 others): Docker's best case, measured on the packet rate only",
            (Scenario::Routing, Setup::Ebridge) => "two node namespaces on a veth underlay (192.168.77.1-2/24, static route to the other node's pod /24 via its underlay address), each running ebridge up --subnet 10.244.N.0/24 --native-routing-cidr 10.244.0.0/16 --uplink under0 + ebridge endpoint add for its pod (10.244.N.2) and ebridge agent; node sysctls left at their defaults (ip_forward 0), no iptables rules",
            (Scenario::C2c, Setup::Ebridge) => "ebridge up + two ebridge endpoint add in a node namespace with an uplink veth to an outside namespace, ebridge agent running; node sysctls left at their defaults, no iptables rules",
            (Scenario::Nat, Setup::Ebridge) => "ebridge up with every default (NAT table size and port range) + ebridge endpoint add in a node namespace with an uplink veth to the outside namespace, ebridge agent running for the whole scenario; masquerade in eBPF, no iptables rules, ip_forward untouched",
            (_, Setup::Ebridge) => "ebridge up + ebridge endpoint add -p for the measured ports, and 10 other endpoints publishing 10 ports each (100 more, like docker-dnat), ebridge agent running; DNAT in eBPF, no iptables rules",
            (_, Setup::EbridgeFullNat) => "about table size: ebridge up --nat-entries 2262144 (2,000,000 for a million synthetic flows + the default 262,144), agent running, with 1,000,000 synthetic live flows (TCP ESTABLISHED, last seen at fill time, to peers no test uses) written into its pinned nat map before the first round",
            (_, Setup::EbridgeOnePort) => "ebridge with one published port: the measured UDP port, nothing else",
            (_, Setup::EbridgeThousandPorts) => "ebridge with the measured UDP port plus 1,000 more (one endpoint add -p 20000-20999:20000-20999/udp)",
            (_, Setup::ChainC2c) => "podman 4.3 (CNI backend, private config and storage) in a node namespace, network = the reference chain: bridge (isGateway, ipMasq, hairpinMode) with host-local IPAM, then portmap; two of the containers the lifecycle part leaves running (99 at the default levels), each publishing ports; client container to server container",
            (_, Setup::CniC2c) => "the same podman, image and node layout, network installed by ebridge cni install (own allocator, every default), ebridge agent running; two of the containers the lifecycle part leaves running (99 at the default levels), each publishing ports; client container to server container",
            (_, Setup::ChainPublish) => "the reference chain's node: outside host to the node's uplink address, ports published by podman run -p (portmap DNAT) into the server container",
            (_, Setup::HostGw) => "host-gw / kube-router node, twice on a veth underlay: Linux bridge cni0 with the gateway 10.244.N.1/24 and the pod's veth on it, bridge-nf-call-iptables=1 (br_netfilter), ip_forward=1, static route to the other node's pod /24 via its underlay address; filter FORWARD policy DROP with -o cni0 ctstate RELATED,ESTABLISHED ACCEPT, -i cni0 ACCEPT, -d 10.244.0.0/16 ACCEPT; nat POSTROUTING pod network RETURN, pods to elsewhere MASQUERADE; conntrack active",
            (_, Setup::PlainRouting) => "the kernel's routing and nothing else, twice on the same underlay: the pod's veth routed directly (no bridge; the node side holds the gateway 10.244.N.1/24), ip_forward=1, static route to the other node's pod /24; no iptables rule, so no netfilter hook and no conntrack in the node",
            (_, Setup::CniPublish) => "ebridge's node: outside host to the node's uplink address, ports published by podman run -p (ebridge's DNAT) into the server container",
        };
        s.to_string()
    }
}
