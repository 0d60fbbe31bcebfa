//! Addresses and ports: where each measurement's client sends and where
//! its server binds, per scenario and setup. Every setup of a scenario
//! uses the same addresses, except that the bare veth has no node, so the
//! publish scenario's client reaches the container directly there. The
//! IPv6 scenarios use the IPv6 twins of the same addresses (ipv6.rs).
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use super::{
    ipv6,
    measure::Measurement,
    routing,
    scenario::{Scenario, Setup},
};

/// Docker's default bridge addressing, used by every setup.
pub const SUBNET: &str = "172.17.0.0/16";
pub const PREFIX_LEN: u8 = 16;
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 1);
/// c2c: the client's container; nat and publish: the one container.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 2);
/// c2c: the server's container.
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 3);
pub const CONTAINER_IP: Ipv4Addr = CLIENT_IP;

/// The node's uplink and the outside namespace behind it.
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const OUTSIDE_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
pub const OUTSIDE_NET: &str = "198.51.100.0/24";

pub const PORT_UDP_RATE: u16 = 9001;
pub const PORT_UDP_RR: u16 = 9002;
pub const PORT_TCP_CRR: u16 = 9003;
pub const PORT_IPERF: u16 = 5201;
/// The churn test's HTTP server (nginx) on OUTSIDE_IP.
pub const PORT_HTTP: u16 = 80;
/// The node's own request/response during the churn test, to OUTSIDE_IP.
pub const PORT_NODE_RR: u16 = 9004;
/// Published host port = container port - PUBLISH_OFFSET (`-p 8001:9001`).
pub const PUBLISH_OFFSET: u16 = 1000;

#[derive(Clone, Copy, Debug)]
pub struct Pair {
    /// What the client sends to.
    pub to: SocketAddr,
    /// What the server binds.
    pub bind: SocketAddr,
}

impl Pair {
    /// The same ports on the addresses' IPv6 twins.
    fn v6(self) -> Pair {
        let twin = |a: SocketAddr| SocketAddr::new(ipv6::mirror_addr(a.ip()), a.port());
        Pair {
            to: twin(self.to),
            bind: twin(self.bind),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Aim {
    udp_rate: Pair,
    udp_rr: Pair,
    tcp_crr: Pair,
    tcp_stream: Pair,
}

fn pair(to: Ipv4Addr, to_port: u16, bind: Ipv4Addr, bind_port: u16) -> Pair {
    Pair {
        to: SocketAddrV4::new(to, to_port).into(),
        bind: SocketAddrV4::new(bind, bind_port).into(),
    }
}

impl Aim {
    pub fn of(&self, m: Measurement) -> Pair {
        match m {
            Measurement::UdpRate => self.udp_rate,
            Measurement::UdpRr => self.udp_rr,
            Measurement::TcpCrr => self.tcp_crr,
            Measurement::TcpStream => self.tcp_stream,
        }
    }

    /// The addresses of a topology this bench builds; the cni scenario's
    /// come from podman (`c2c`, `published`) once its containers run, and
    /// get these fixed ones only as placeholders. An IPv6 scenario's are
    /// its IPv4 twin's, mirrored.
    pub fn new(scenario: Scenario, setup: Setup) -> Self {
        let aim = Self::new_v4(scenario, setup);
        if !scenario.is_v6() {
            return aim;
        }
        Aim {
            udp_rate: aim.udp_rate.v6(),
            udp_rr: aim.udp_rr.v6(),
            tcp_crr: aim.tcp_crr.v6(),
            tcp_stream: aim.tcp_stream.v6(),
        }
    }

    fn new_v4(scenario: Scenario, setup: Setup) -> Self {
        match scenario.path(setup) {
            Scenario::Nat => {
                let same = |port| pair(OUTSIDE_IP, port, OUTSIDE_IP, port);
                Aim {
                    udp_rate: same(PORT_UDP_RATE),
                    udp_rr: same(PORT_UDP_RR),
                    tcp_crr: same(PORT_TCP_CRR),
                    tcp_stream: same(PORT_IPERF),
                }
            }
            // No node on the bare veth: the client reaches the container
            // directly.
            Scenario::Publish if setup == Setup::BareVeth => Self::c2c(CONTAINER_IP),
            Scenario::Publish => Self::published(CONTAINER_IP),
            // The server pod on the other node, by its own address.
            Scenario::Routing => Self::c2c(routing::pod_ip(routing::SERVER_NODE)),
            _ => Self::c2c(SERVER_IP),
        }
    }

    /// The server is the container at `server`, reached directly.
    pub fn c2c(server: Ipv4Addr) -> Self {
        let same = |port| pair(server, port, server, port);
        Aim {
            udp_rate: same(PORT_UDP_RATE),
            udp_rr: same(PORT_UDP_RR),
            tcp_crr: same(PORT_TCP_CRR),
            tcp_stream: same(PORT_IPERF),
        }
    }

    /// The server is the container at `container`, reached through the
    /// node's published ports.
    pub fn published(container: Ipv4Addr) -> Self {
        let published = |port: u16| pair(NODE_IP, port - PUBLISH_OFFSET, container, port);
        Aim {
            udp_rate: published(PORT_UDP_RATE),
            udp_rr: published(PORT_UDP_RR),
            tcp_crr: published(PORT_TCP_CRR),
            tcp_stream: published(PORT_IPERF),
        }
    }
}

/// `-p` specs of the measured ports (ebridge syntax; Docker's rules mirror
/// them).
pub fn measured_publishes(setup: Setup) -> Vec<(u16, u16, &'static str)> {
    let all = [
        (PORT_UDP_RATE, "udp"),
        (PORT_UDP_RR, "udp"),
        (PORT_TCP_CRR, "tcp"),
    ];
    let ports: &[(u16, &str)] = match setup {
        Setup::EbridgeOnePort | Setup::EbridgeThousandPorts => &all[..1],
        _ => &all,
    };
    ports
        .iter()
        .map(|&(ctr, proto)| (ctr - PUBLISH_OFFSET, ctr, proto))
        .collect()
}

/// The other containers of the publish scenario's busy node: 10
/// endpoints with 10 published TCP ports each.
pub const OTHER_ENDPOINTS: u8 = 10;
pub const OTHER_PORTS_EACH: u16 = 10;
pub const OTHER_HOST_PORT_BASE: u16 = 30000;
pub const OTHER_CTR_PORT_BASE: u16 = 80;

pub fn other_endpoint_ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(172, 17, 0, 10 + i)
}

/// Address of the endpoint that holds the bulk-published ports.
pub const BULK_ENDPOINT_IP: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 200);
pub const BULK_FIRST_PORT: u16 = 20000;
/// The publish-cost test's ports (a range no setup publishes otherwise).
pub const COST_FIRST_PORT: u16 = 21000;
pub const COST_ENDPOINT_IP: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 201);
