//! The two-container topology, built four ways. Every namespace is made
//! here with a per-run name and removed by the guard's Drop, so a failure,
//! a panic or Ctrl-C leaves nothing behind. The root namespace is never
//! touched: no address, route, rule or sysctl outside the namespaces made
//! here.
use std::net::Ipv4Addr;

use anyhow::{Context as _, Result};

use super::{ebridge_node, linux_bridge};
use crate::util::{sh, sh_quiet};

/// Docker's default bridge addressing, used by every setup.
pub const SUBNET: &str = "172.17.0.0/16";
pub const PREFIX_LEN: u8 = 16;
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 1);
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 2);
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 3);

/// Namespaces of a run are named `<RUN_PREFIX><pid>-...`.
pub const RUN_PREFIX: &str = "ebench";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Setup {
    BareVeth,
    DockerBridge,
    BridgeNfOff,
    Ebridge,
}

impl Setup {
    pub const ALL: [Setup; 4] = [
        Setup::BareVeth,
        Setup::DockerBridge,
        Setup::BridgeNfOff,
        Setup::Ebridge,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Setup::BareVeth => "bare-veth",
            Setup::DockerBridge => "docker-bridge",
            Setup::BridgeNfOff => "bridge-nf-off",
            Setup::Ebridge => "ebridge",
        }
    }

    /// Short tag for namespace names.
    fn tag(self) -> &'static str {
        match self {
            Setup::BareVeth => "bare",
            Setup::DockerBridge => "docker",
            Setup::BridgeNfOff => "nfoff",
            Setup::Ebridge => "ebr",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Setup::BareVeth => "one veth pair straight between the two container namespaces (the physical limit)",
            Setup::DockerBridge => "Linux bridge docker0 in a node namespace with bridge-nf-call-iptables=1, Docker's filter FORWARD chains, conntrack and nat MASQUERADE rules",
            Setup::BridgeNfOff => "the same Linux bridge with bridge-nf-call-iptables=0 and no rules",
            Setup::Ebridge => "ebridge up + two ebridge endpoint add in a node namespace with an uplink veth to an outside namespace; node sysctls left at their defaults, no iptables rules",
        }
    }
}

/// A built topology; dropping it removes it.
pub struct Topology {
    pub setup: Setup,
    pub client_ns: String,
    pub server_ns: String,
    pub node_ns: Option<String>,
    /// The ebridge bridge name once `ebridge up` may have run.
    pub ebridge_bridge: Option<String>,
    /// Every namespace this run made or had made, in creation order.
    namespaces: Vec<String>,
}

impl Topology {
    pub fn build(setup: Setup, run_id: &str) -> Result<Self> {
        let base = format!("{run_id}-{}", setup.tag());
        let mut t = Topology {
            setup,
            client_ns: format!("{base}-c1"),
            server_ns: format!("{base}-c2"),
            node_ns: None,
            ebridge_bridge: None,
            namespaces: Vec::new(),
        };
        match setup {
            Setup::BareVeth => build_bare(&mut t)?,
            Setup::DockerBridge => linux_bridge::build(&mut t, &base, true)?,
            Setup::BridgeNfOff => linux_bridge::build(&mut t, &base, false)?,
            // The bridge name also names the pin directory: unique per run.
            Setup::Ebridge => ebridge_node::build(&mut t, &base, run_id)?,
        }
        t.tune_client()?;
        t.check_reachable()
            .with_context(|| format!("{}: the client cannot reach the server", setup.key()))?;
        Ok(t)
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
    /// and closes first, so its ports sit in TIME_WAIT: let it reuse them
    /// (per-namespace sysctls, the same in every setup).
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

    /// Also resolves ARP and, for ebridge, lets the FDB learn both MACs.
    fn check_reachable(&self) -> Result<()> {
        let server = SERVER_IP.to_string();
        self.exec(
            &self.client_ns,
            &["ping", "-c", "3", "-i", "0.2", "-w", "5", "-q", &server],
        )?;
        Ok(())
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if let (Some(node), Some(bridge)) = (&self.node_ns, &self.ebridge_bridge) {
            ebridge_node::teardown(node, bridge);
        }
        for ns in self.namespaces.iter().rev() {
            sh_quiet("ip", &["netns", "del", ns]);
        }
    }
}

/// Addresses the container end `eth0` of a veth the way Docker does:
/// 172.17.0.x/16, MAC 02:42 + the address, default route via the gateway.
pub fn configure_container(ns: &str, ip: Ipv4Addr, gateway: Option<Ipv4Addr>) -> Result<()> {
    let o = ip.octets();
    let mac = format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3]);
    let cidr = format!("{ip}/{PREFIX_LEN}");
    sh("ip", &["-n", ns, "link", "set", "eth0", "address", &mac])?;
    sh("ip", &["-n", ns, "addr", "add", &cidr, "dev", "eth0"])?;
    sh("ip", &["-n", ns, "link", "set", "eth0", "up"])?;
    if let Some(gw) = gateway {
        let gw = gw.to_string();
        sh("ip", &["-n", ns, "route", "add", "default", "via", &gw])?;
    }
    Ok(())
}

fn build_bare(t: &mut Topology) -> Result<()> {
    let (c1, c2) = (t.client_ns.clone(), t.server_ns.clone());
    t.add_netns(&c1)?;
    t.add_netns(&c2)?;
    sh(
        "ip",
        &[
            "-n", &c1, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &c2,
        ],
    )?;
    configure_container(&c1, CLIENT_IP, None)?;
    configure_container(&c2, SERVER_IP, None)?;
    Ok(())
}

/// Removes what an earlier run left behind when it was killed outright
/// (SIGKILL skips the guards): only namespaces and ebridge pin directories
/// named by this tool whose process is gone.
pub fn reap_stale_runs() {
    let namespaces = sh("ip", &["netns", "list"]).unwrap_or_default();
    let namespaces: Vec<&str> = namespaces
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let pins: Vec<String> = std::fs::read_dir("/sys/fs/bpf/ebridge")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    let mut dead: Vec<String> = namespaces
        .iter()
        .copied()
        .chain(pins.iter().map(String::as_str))
        .filter_map(dead_run_id)
        .collect();
    dead.sort();
    dead.dedup();
    for run_id in &dead {
        ebridge_node::teardown(&format!("{run_id}-ebr-node"), run_id);
        let mine: Vec<&str> = namespaces
            .iter()
            .copied()
            .filter(|n| n.starts_with(&format!("{run_id}-")))
            .collect();
        for ns in &mine {
            sh_quiet("ip", &["netns", "del", ns]);
        }
        eprintln!(
            "bench: cleaned up after killed run {run_id}: {}",
            mine.join(" ")
        );
    }
}

/// `ebench<pid>` of a name made by a run whose process no longer exists.
fn dead_run_id(name: &str) -> Option<String> {
    let rest = name.strip_prefix(RUN_PREFIX)?;
    let pid = rest.split('-').next()?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if std::path::Path::new("/proc").join(pid).exists() {
        return None;
    }
    Some(format!("{RUN_PREFIX}{pid}"))
}
