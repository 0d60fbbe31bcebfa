//! A node of the monitor scenario, made entirely from one build: a node
//! namespace with an uplink veth to an outside namespace (as every ebridge
//! setup of the bench), `ebridge up`, containers made by `ebridge endpoint
//! add`, and `ebridge agent` running from then on. Names follow the
//! bench's (`<run id><code>`, node `<bridge>-node`), so a run killed
//! outright is reaped like any other; the guard removes everything when
//! dropped (agent first, then `ebridge down`, then the namespaces).
//!
//! The measurements see the node through `Topology` views (adopted: the
//! views never remove anything): container a to container b (c2c, when b
//! exists), and container a to the outside host, masqueraded (nat).
use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    thread,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use super::builds::Build;
use crate::{
    bench::{
        aim::{Aim, CLIENT_IP, SERVER_IP, SUBNET},
        ebridge_node,
        proc::{self, Proc},
        scenario::{Scenario, Setup},
        topology::{Adopted, Topology},
        uplink::{self, UPLINK},
    },
    util::{sh, sh_quiet},
};

/// The third container, which floods spoofed frames.
pub const STORM_IP: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 4);

/// `nsenter --net=/run/netns/NODE BIN ARGS --bridge BRIDGE`
pub fn ebridge_with(bin: &Path, node: &str, bridge: &str, args: &[&str]) -> Result<String> {
    let bin = bin.display().to_string();
    let net = format!("--net=/run/netns/{node}");
    let mut full = vec![net.as_str(), bin.as_str()];
    full.extend_from_slice(args);
    full.extend(["--bridge", bridge]);
    sh("nsenter", &full).with_context(|| format!("ebridge {}", args.join(" ")))
}

/// Removes what was made, in reverse; the bridge once `up` may have run.
struct Guard {
    node: String,
    bridge: Option<String>,
    namespaces: Vec<String>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(bridge) = &self.bridge {
            ebridge_node::teardown(&self.node, bridge);
        }
        for ns in self.namespaces.iter().rev() {
            sh_quiet("ip", &["netns", "del", ns]);
        }
    }
}

pub struct Node {
    // Dropped in this order: the views, the agent, then the guard.
    pub c2c: Option<Topology>,
    pub nat: Option<Topology>,
    agent: Option<Proc>,
    guard: Guard,
    /// What the agent runs with after `agent --bridge B`.
    pub agent_args: Vec<String>,
    pub bin: PathBuf,
    pub node_ns: String,
    pub bridge: String,
    /// Container namespaces: a (client), b (server), s (storm), if made.
    pub containers: Vec<String>,
    /// a's host-side veth, whose program says which build runs.
    pub client_veth: String,
    /// `ebridge up` as run, `show config`.
    pub up: String,
    pub config: Value,
}

impl Node {
    /// `ebridge up --subnet 172.17.0.0/16 --uplink uplink0 [EXTRA]`,
    /// containers a, b and s (or only a), the agent with `agent_args`.
    pub fn build(
        run_id: &str,
        code: &str,
        build: &Build,
        up_extra: &[&str],
        all_containers: bool,
        agent_args: &[&str],
    ) -> Result<Self> {
        let bridge = format!("{run_id}{code}");
        let node_ns = format!("{bridge}-node");
        let outside = format!("{bridge}-out");
        let mut guard = Guard {
            node: node_ns.clone(),
            bridge: None,
            namespaces: Vec::new(),
        };
        for ns in [&node_ns, &outside] {
            guard.namespaces.push(ns.clone());
            sh("ip", &["netns", "add", ns])?;
            sh("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        }
        uplink::build(&node_ns, &outside)?;
        guard.bridge = Some(bridge.clone());
        let mut up = vec!["up", "--subnet", SUBNET, "--uplink", UPLINK];
        up.extend_from_slice(up_extra);
        ebridge_with(&build.bin, &node_ns, &bridge, &up)?;
        let mut wanted = vec![("a", CLIENT_IP)];
        if all_containers {
            wanted.extend([("b", SERVER_IP), ("s", STORM_IP)]);
        }
        let mut containers = Vec::new();
        for (suffix, ip) in wanted {
            let name = format!("{bridge}-{suffix}");
            guard.namespaces.push(name.clone());
            let ip = ip.to_string();
            ebridge_with(
                &build.bin,
                &node_ns,
                &bridge,
                &["endpoint", "add", &name, "--ip", &ip],
            )?;
            containers.push(name);
        }
        let listed = ebridge_with(&build.bin, &node_ns, &bridge, &["endpoint", "ls", "--json"])?;
        let listed: Value = serde_json::from_str(&listed).context("endpoint ls --json")?;
        let client_veth = listed
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == containers[0].as_str())
            .and_then(|e| e["host_veth"].as_str())
            .context("endpoint ls --json does not list the client's host veth")?
            .to_string();
        let config = ebridge_with(&build.bin, &node_ns, &bridge, &["show", "config", "--json"])
            .ok()
            .and_then(|c| serde_json::from_str(&c).ok())
            .unwrap_or(Value::Null);
        let mut node = Node {
            c2c: None,
            nat: None,
            agent: None,
            guard,
            bin: build.bin.clone(),
            node_ns,
            bridge,
            containers,
            client_veth,
            up: up.join(" "),
            config,
            agent_args: Vec::new(),
        };
        node.start_agent(agent_args)?;
        if all_containers {
            node.c2c = Some(node.view(Scenario::C2c, Aim::c2c(SERVER_IP))?);
        }
        node.nat = Some(node.view(Scenario::Nat, Aim::new(Scenario::Nat, Setup::Ebridge))?);
        Ok(node)
    }

    fn view(&self, path: Scenario, aim: Aim) -> Result<Topology> {
        let server_ns = match path {
            Scenario::Nat => self.guard.namespaces[1].clone(),
            _ => self.containers[1].clone(),
        };
        Topology::adopt(
            path,
            Setup::Ebridge,
            Adopted {
                node: self.node_ns.clone(),
                client_ns: self.containers[0].clone(),
                server_ns,
                ebridge_bridge: Some(self.bridge.clone()),
                aim,
                agent: None,
                chain: None,
            },
        )
    }

    /// `ebridge agent --bridge B ARGS` from this node's build, replacing
    /// the one running.
    fn start_agent(&mut self, args: &[&str]) -> Result<()> {
        self.agent = None;
        let mut full = vec!["agent", "--bridge", &self.bridge];
        full.extend_from_slice(args);
        let p = Proc::spawn_in(&self.node_ns, "ebridge agent", &self.bin, &full)?;
        // It opens the pinned maps first; a bad bridge makes it exit at once.
        thread::sleep(Duration::from_millis(300));
        self.agent = Some(p);
        self.agent_args = args.iter().map(|a| a.to_string()).collect();
        self.check_agent()
    }

    pub fn check_agent(&self) -> Result<()> {
        let Some(p) = &self.agent else {
            bail!("no ebridge agent on {}", self.node_ns);
        };
        if proc::state(p.pid()).is_none_or(|s| s == 'Z' || s == 'X') {
            bail!(
                "ebridge agent (pid {}, node {}) is not running: {}",
                p.pid(),
                self.node_ns,
                p.stderr_so_far().trim()
            );
        }
        Ok(())
    }

    pub fn agent_cpu_secs(&self) -> f64 {
        self.agent
            .as_ref()
            .map_or(0.0, |p| proc::cpu_usec(p.pid()) as f64 / 1e6)
    }

    pub fn agent_log(&self) -> String {
        self.agent
            .as_ref()
            .map(|p| p.stderr_so_far())
            .unwrap_or_default()
    }

    /// SIGSTOP / SIGCONT to the agent (another node is being measured).
    pub fn signal_agent(&self, sig: libc::c_int) {
        if let Some(p) = &self.agent {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(p.pid() as libc::pid_t, sig) };
        }
    }

    pub fn storm_ns(&self) -> &str {
        &self.containers[self.containers.len() - 1]
    }
}

/// Keeps every other node's agent stopped while one node is measured;
/// continues them when dropped (also on an error or Ctrl-C).
pub struct OthersStopped<'a>(Vec<&'a Node>);

pub fn stop_others<'a>(nodes: &'a [Node], measured: usize) -> OthersStopped<'a> {
    let others: Vec<&Node> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != measured)
        .map(|(_, n)| n)
        .collect();
    for n in &others {
        n.signal_agent(libc::SIGSTOP);
    }
    OthersStopped(others)
}

impl Drop for OthersStopped<'_> {
    fn drop(&mut self) {
        for n in &self.0 {
            n.signal_agent(libc::SIGCONT);
        }
    }
}
