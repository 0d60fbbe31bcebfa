//! The cni scenario's two nodes. Each is a test lab's node namespace
//! (uplink to an outside namespace, as every lab has) running podman from
//! the tests' fixture: private containers.conf and storage (vfs), the
//! busybox image, every container removed when the fixture goes. They
//! differ only in the network their containers join:
//!
//! - `chain`: the reference chain as a conflist, bridge (isGateway,
//!   ipMasq, hairpinMode) with host-local, then portmap — podman's own
//!   default network minus its firewall and tuning plugins;
//! - `ebridge`: what `ebridge cni install --bin-dir <podman's plugin dir>
//!   --conf-dir <its network dir> --name NET --bridge B --subnet S` writes,
//!   every other setting its default; after the first container brought
//!   the datapath up, `ebridge agent` runs for the rest of the scenario.
//!
//! Both use the same subnet (each node is its own world) and the same
//! `podman run` arguments.
use std::{
    fs::File,
    net::Ipv4Addr,
    path::PathBuf,
    process::Stdio,
    rc::Rc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use ebridge_tests::{
    lab::Lab,
    podman::{Podman, COMMAND_LIMIT, IMAGE},
};
use serde_json::{json, Value};

use crate::bench::{agent::Agent, signal};

/// Both networks' addresses (podman's default network's).
pub const SUBNET: &str = "10.88.0.0/16";
const GATEWAY: &str = "10.88.0.1";
/// The reference chain's Linux bridge (podman's default name).
const CHAIN_BRIDGE: &str = "cni-podman0";
/// What every container runs: nothing, until removed.
const SLEEP: [&str; 2] = ["sleep", "86400"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Chain,
    Ebridge,
}

impl Kind {
    pub const BOTH: [Kind; 2] = [Kind::Chain, Kind::Ebridge];

    pub fn key(self) -> &'static str {
        match self {
            Kind::Chain => "chain",
            Kind::Ebridge => "ebridge",
        }
    }
}

/// podman on one network: what the fill threads share (no agent).
pub struct Engine<'a> {
    pub kind: Kind,
    pub lab: &'a Lab,
    pub pm: &'a Podman<'a>,
    pub net: String,
    pub conflist: Value,
}

pub struct Node<'a> {
    pub engine: Engine<'a>,
    pub agent: Option<Rc<Agent>>,
}

impl<'a> Node<'a> {
    /// Installs the node's network into podman's config.
    pub fn new(kind: Kind, lab: &'a Lab, pm: &'a Podman<'a>) -> Result<Self> {
        let net = pm.name(kind.key());
        let conflist = match kind {
            Kind::Chain => {
                let conflist = json!({
                    "cniVersion": "1.0.0",
                    "name": net,
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": CHAIN_BRIDGE,
                            "isGateway": true,
                            "ipMasq": true,
                            "hairpinMode": true,
                            "ipam": {
                                "type": "host-local",
                                "routes": [{"dst": "0.0.0.0/0"}],
                                "ranges": [[{"subnet": SUBNET, "gateway": GATEWAY}]],
                            },
                        },
                        {"type": "portmap", "capabilities": {"portMappings": true}},
                    ],
                });
                pm.add_network(&conflist);
                conflist
            }
            Kind::Ebridge => {
                let bin_dir = utf8(pm.plugin_dir().to_path_buf())?;
                let conf_dir = utf8(pm.conf_dir())?;
                lab.ebridge_ok(&[
                    "cni",
                    "install",
                    "--bin-dir",
                    &bin_dir,
                    "--conf-dir",
                    &conf_dir,
                    "--name",
                    &net,
                    "--bridge",
                    &lab.bridge,
                    "--subnet",
                    SUBNET,
                ]);
                let path = pm.conf_dir().join(format!("10-{net}.conflist"));
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                serde_json::from_str(&text)
                    .with_context(|| format!("{} is not JSON", path.display()))?
            }
        };
        Ok(Node {
            engine: Engine {
                kind,
                lab,
                pm,
                net,
                conflist,
            },
            agent: None,
        })
    }

    /// One container started and removed, so podman, its storage and the
    /// network are warm; on ebridge that first ADD brings the datapath up,
    /// and the agent starts, as an operator runs it next to the runtime.
    pub fn warm_up(&mut self) -> Result<()> {
        let e = &self.engine;
        e.podman_timed(&e.run_args("warm-up", &["19999:80/tcp".into()]))?;
        e.podman_timed(&["rm", "-f", "-t", "0", "warm-up"])?;
        if e.kind == Kind::Ebridge {
            self.agent = Some(Rc::new(Agent::start(&e.lab.node, &e.lab.bridge)?));
        }
        Ok(())
    }
}

impl Engine<'_> {
    /// `podman run -d --name NAME --network NET -p P... IMAGE sleep 86400`
    pub fn run_args<'s>(&'s self, name: &'s str, ports: &'s [String]) -> Vec<&'s str> {
        let mut args = vec!["run", "-d", "--name", name, "--network", &self.net];
        for p in ports {
            args.extend(["-p", p.as_str()]);
        }
        args.push(IMAGE);
        args.extend(SLEEP);
        args
    }

    /// Runs `podman ARGS` in the node (through the fixture, with its
    /// config); returns the seconds it took. Output goes to files: a
    /// daemon it starts (conmon) would hold a pipe open.
    pub fn podman_timed(&self, args: &[&str]) -> Result<f64> {
        let dir = self.pm.dir();
        let (out, err) = (dir.join(".bench.out"), dir.join(".bench.err"));
        let mut cmd = self.pm.command(args);
        cmd.stdin(Stdio::null())
            .stdout(File::create(&out)?)
            .stderr(File::create(&err)?);
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start podman {}", args.join(" ")))?;
        // Polled every millisecond: the figures are hundreds of them.
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if started.elapsed() > COMMAND_LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                bail!("podman {} took over {COMMAND_LIMIT:?}", args.join(" "));
            }
            thread::sleep(Duration::from_millis(1));
        };
        let secs = started.elapsed().as_secs_f64();
        if !status.success() {
            bail!(
                "podman {} failed ({status}) on the {} node: {}",
                args.join(" "),
                self.kind.key(),
                std::fs::read_to_string(&err).unwrap_or_default().trim()
            );
        }
        Ok(secs)
    }

    /// Starts the named containers in order (filling the node up to a
    /// level); `ports` gives each one's `-p`.
    pub fn fill(&self, containers: &[(String, Vec<String>)]) -> Result<()> {
        for (name, ports) in containers {
            signal::check()?;
            self.podman_timed(&self.run_args(name, ports))?;
        }
        Ok(())
    }

    /// The container's network namespace (its name under /run/netns, where
    /// podman bind-mounts it) and address.
    pub fn sandbox(&self, name: &str) -> Result<(String, Ipv4Addr)> {
        let v = self.pm.inspect(name);
        let key = v["NetworkSettings"]["SandboxKey"].as_str().unwrap_or("");
        let ns = key
            .strip_prefix("/run/netns/")
            .with_context(|| format!("{name}: sandbox {key:?} is not under /run/netns"))?;
        let ip = self.pm.ip(name, &self.net);
        let ip = ip
            .parse()
            .with_context(|| format!("{name}: address {ip:?}"))?;
        Ok((ns.to_string(), ip))
    }
}

fn utf8(p: PathBuf) -> Result<String> {
    p.into_os_string()
        .into_string()
        .map_err(|p| anyhow::anyhow!("{p:?} is not UTF-8"))
}
