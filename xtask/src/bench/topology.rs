//! One setup of one scenario, built in network namespaces. Every namespace
//! is made here with a per-run name and removed by the guard's Drop, so a
//! failure, a panic or Ctrl-C leaves nothing behind. The root namespace is
//! never touched: no address, route, rule or sysctl outside the namespaces
//! made here.
use std::{net::Ipv4Addr, rc::Rc};

use anyhow::{Context as _, Result};
use serde_json::{Map, Value};

use super::{
    agent::Agent,
    aim::{Aim, PREFIX_LEN},
    bare,
    cni::chain_evidence::ChainEvidence,
    ebridge_node, ipv6, linux_bridge,
    measure::Measurement,
    routing,
    scenario::{Scenario, Setup},
};
use crate::util::{sh, sh_quiet};

/// A built topology; dropping it removes it.
pub struct Topology {
    pub scenario: Scenario,
    pub setup: Setup,
    /// `<run id><code>`: prefix of every name this setup makes.
    pub base: String,
    /// Where the measurements' clients run.
    pub client_ns: String,
    /// Where their servers run.
    pub server_ns: String,
    /// The container namespace (c2c: the client's).
    pub container_ns: String,
    /// The node (routing: the client's node).
    pub node_ns: Option<String>,
    /// The ebridge bridge name once `ebridge up` may have run.
    pub ebridge_bridge: Option<String>,
    /// The server's node of a two-node setup (routing).
    pub peer: Option<PeerNode>,
    pub aim: Aim,
    /// `ebridge agent`, running from `up` until the setup is removed
    /// (shared by the cni scenario's two paths through one node).
    pub agent: Option<Rc<Agent>>,
    /// The reference CNI chain's counters that prove its path (cni).
    pub chain: Option<ChainEvidence>,
    /// What building measured or set up, for the report.
    pub notes: Map<String, Value>,
    /// Every namespace this run made or had made, in creation order.
    namespaces: Vec<String>,
    /// Whether dropping it removes what it names; the cni scenario's
    /// nodes and containers belong to podman and the test fixtures.
    owned: bool,
}

impl Topology {
    pub fn build(scenario: Scenario, setup: Setup, run_id: &str) -> Result<Self> {
        let base = format!("{run_id}{}", scenario.code(setup));
        let container = format!("{base}-c1");
        let outside = format!("{base}-out");
        let (client_ns, server_ns) = match scenario.base() {
            Scenario::C2c => (container.clone(), format!("{base}-c2")),
            Scenario::Nat => (container.clone(), outside),
            Scenario::Publish => (outside, container.clone()),
            Scenario::Cni => {
                anyhow::bail!("the cni scenario's paths are podman's (Topology::adopt)")
            }
            Scenario::Routing => (
                routing::pod_ns(&base),
                routing::pod_ns(&format!("{run_id}{}", scenario.second_code(setup))),
            ),
            s => anyhow::bail!("{} is an IPv6 scenario, not a base", s.key()),
        };
        let mut t = Topology {
            scenario,
            setup,
            base,
            client_ns,
            server_ns,
            container_ns: container,
            node_ns: None,
            ebridge_bridge: None,
            peer: None,
            aim: Aim::new(scenario, setup),
            agent: None,
            chain: None,
            notes: Map::new(),
            namespaces: Vec::new(),
            owned: true,
        };
        // An IPv6 scenario's setup is its IPv4 twin plus IPv6 (ipv6.rs;
        // ebridge's is built with it, ebridge_node.rs).
        match (scenario.base(), setup) {
            (Scenario::Routing, _) => routing::build(&mut t, run_id)?,
            (Scenario::C2c, Setup::BareVeth) => bare::pair(&mut t)?,
            (_, Setup::BareVeth) => bare::to_outside(&mut t)?,
            (Scenario::C2c, Setup::DockerBridge) => linux_bridge::build_c2c(&mut t, true)?,
            (Scenario::C2c, Setup::BridgeNfOff) => linux_bridge::build_c2c(&mut t, false)?,
            (_, Setup::DockerNat | Setup::DockerDnat | Setup::DockerDnatFirst) => {
                linux_bridge::build_uplinked(&mut t)?
            }
            (_, s) if s.is_ebridge() => ebridge_node::build(&mut t)?,
            (s, setup) => anyhow::bail!("{} has no setup {}", s.key(), setup.key()),
        }
        if scenario.is_v6() && !setup.is_ebridge() {
            ipv6::add(&mut t)?;
        }
        t.prepare()?;
        Ok(t)
    }

    /// A path through namespaces made by others (podman's containers in
    /// a test fixture's node): measured like the rest, never removed here.
    pub fn adopt(scenario: Scenario, setup: Setup, paths: Adopted) -> Result<Self> {
        let t = Topology {
            scenario,
            setup,
            base: paths.node.clone(),
            client_ns: paths.client_ns,
            server_ns: paths.server_ns.clone(),
            container_ns: paths.server_ns,
            node_ns: Some(paths.node),
            ebridge_bridge: paths.ebridge_bridge,
            peer: None,
            aim: paths.aim,
            agent: paths.agent,
            chain: paths.chain,
            notes: Map::new(),
            namespaces: Vec::new(),
            owned: false,
        };
        t.prepare()?;
        Ok(t)
    }

    fn prepare(&self) -> Result<()> {
        self.tune_client()?;
        self.check_reachable()
            .with_context(|| format!("{}: the client cannot reach the server", self.setup.key()))
    }

    pub fn outside_ns(&self) -> String {
        format!("{}-out", self.base)
    }

    /// Creates a namespace, recording it for removal first.
    pub fn add_netns(&mut self, name: &str) -> Result<()> {
        self.namespaces.push(name.to_string());
        sh("ip", &["netns", "add", name])?;
        sh("ip", &["-n", name, "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// Records a namespace another tool creates (ebridge endpoint add).
    pub fn adopt_netns(&mut self, name: &str) {
        self.namespaces.push(name.to_string());
    }

    /// `ip netns exec NS args...`
    pub fn exec(&self, ns: &str, args: &[&str]) -> Result<String> {
        let mut full = vec!["netns", "exec", ns];
        full.extend_from_slice(args);
        sh("ip", &full)
    }

    /// The client opens tens of thousands of connections per measurement
    /// and, in the connection test, closes first, so its ports sit in
    /// TIME_WAIT: let it reuse them, over the whole port range (a common
    /// tuning, and the one the NAT port collapse of issue 7 was found
    /// with). Per-namespace sysctls, the same in every setup.
    fn tune_client(&self) -> Result<()> {
        self.exec(
            &self.client_ns,
            &[
                "sysctl",
                "-q",
                "-w",
                "net.ipv4.tcp_tw_reuse=1",
                "net.ipv4.ip_local_port_range=1024 65535",
            ],
        )?;
        Ok(())
    }

    /// Also resolves ARP (IPv6: neighbours) and, for ebridge, lets the
    /// FDB learn the MACs. The node answers ping on its own address, so
    /// for the publish scenario this proves the path to the node; the
    /// warm-up round proves the published ports. (nat: the outside host,
    /// where its servers run.)
    fn check_reachable(&self) -> Result<()> {
        let target = self.aim.of(Measurement::UdpRr).to.ip().to_string();
        self.exec(
            &self.client_ns,
            &["ping", "-c", "3", "-i", "0.2", "-w", "5", "-q", &target],
        )?;
        Ok(())
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // The agent holds the pinned maps open: it goes before `down`.
        self.agent = None;
        if !self.owned {
            return;
        }
        if let (Some(node), Some(bridge)) = (&self.node_ns, &self.ebridge_bridge) {
            ebridge_node::teardown(node, bridge);
        }
        if let Some(PeerNode {
            node_ns,
            ebridge_bridge: Some(bridge),
            ..
        }) = &self.peer
        {
            ebridge_node::teardown(node_ns, bridge);
        }
        for ns in self.namespaces.iter().rev() {
            sh_quiet("ip", &["netns", "del", ns]);
        }
    }
}

/// The second node of a two-node setup: the server's (routing).
pub struct PeerNode {
    /// `<run id><second code>`: prefix of the names made for it.
    pub base: String,
    pub node_ns: String,
    /// Its ebridge bridge once `ebridge up` may have run there.
    pub ebridge_bridge: Option<String>,
}

/// What a path through others' namespaces is made of (`Topology::adopt`).
pub struct Adopted {
    pub node: String,
    pub client_ns: String,
    pub server_ns: String,
    pub ebridge_bridge: Option<String>,
    pub aim: Aim,
    pub agent: Option<Rc<Agent>>,
    pub chain: Option<ChainEvidence>,
}

/// Addresses the container end `eth0` of a veth the way Docker does:
/// 172.17.0.x/16, MAC 02:42 + the address, default route via the gateway.
pub fn configure_container(ns: &str, ip: Ipv4Addr, gateway: Option<Ipv4Addr>) -> Result<()> {
    configure_pod(ns, ip, PREFIX_LEN, gateway)
}

/// The same with the prefix length of the pod's subnet (routing: a
/// node's /24).
pub fn configure_pod(
    ns: &str,
    ip: Ipv4Addr,
    prefix_len: u8,
    gateway: Option<Ipv4Addr>,
) -> Result<()> {
    let o = ip.octets();
    let mac = format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3]);
    let cidr = format!("{ip}/{prefix_len}");
    sh("ip", &["-n", ns, "link", "set", "eth0", "address", &mac])?;
    sh("ip", &["-n", ns, "addr", "add", &cidr, "dev", "eth0"])?;
    sh("ip", &["-n", ns, "link", "set", "eth0", "up"])?;
    if let Some(gw) = gateway {
        let gw = gw.to_string();
        sh("ip", &["-n", ns, "route", "add", "default", "via", &gw])?;
    }
    Ok(())
}
