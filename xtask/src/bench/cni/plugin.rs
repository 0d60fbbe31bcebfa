//! The plugins' own ADD and DEL time: each network's plugins run directly,
//! one process per call as a runtime runs them, in the node namespace,
//! with what podman 4.3 hands them (/work/shared/PODMAN.md): the
//! conflist's plugin entry plus `name` and `cniVersion`, `prevResult` for
//! every plugin after the first, `runtimeConfig.portMappings` for the
//! plugins that declare the capability (one published TCP port, as every
//! container here has), `CNI_COMMAND`, `CNI_CONTAINERID` (64 hex digits),
//! `CNI_NETNS=/run/netns/<a namespace made for the call>`,
//! `CNI_IFNAME=eth0`, `CNI_PATH` = podman's plugin dirs, `CNI_ARGS =
//! IgnoreUnknown=1;K8S_POD_NAME=<name>`. The environment is otherwise
//! PATH only, what podman's cleanup process passes too.
//!
//! ADD is every plugin in order, each given the previous one's result
//! (the chain: bridge, which runs host-local itself, then portmap);
//! DEL is every plugin in reverse, each given the ADD's final result, as
//! libcni does. A call's time is from fork to the plugin's exit with its
//! output read, the way podman waits for it; the sum over the chain's
//! plugins is the network's ADD or DEL time.
use std::{
    fs::File,
    io::{Read as _, Write as _},
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::Instant,
};

use anyhow::{bail, Context as _, Result};
use ebridge_tests::podman::COMMAND_LIMIT;
use serde_json::{json, Value};

use super::node::Engine;
use crate::util::{sh, sh_quiet};

const REFERENCE_PLUGINS: &str = "/usr/lib/cni";
const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";
/// The published port of every timed ADD (podman's `-p 19998:80`).
const HOST_PORT: u16 = 19998;

/// One network's plugins as a runtime calls them.
pub struct Plugins {
    node: String,
    net: String,
    version: String,
    cni_path: String,
    list: Vec<Plugin>,
}

struct Plugin {
    kind: String,
    bin: PathBuf,
    entry: Value,
}

/// One ADD and its DEL.
pub struct Timed {
    pub add: f64,
    pub del: f64,
    /// Per plugin, in call order.
    pub add_parts: Vec<(String, f64)>,
    pub del_parts: Vec<(String, f64)>,
}

impl Plugins {
    /// The node's network: its conflist, the binaries found in podman's
    /// plugin dirs in podman's order.
    pub fn of(e: &Engine) -> Result<Self> {
        let dirs = [e.pm.plugin_dir().to_path_buf(), REFERENCE_PLUGINS.into()];
        let cni_path = dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        let mut list = Vec::new();
        for entry in e.conflist["plugins"].as_array().into_iter().flatten() {
            let kind = entry["type"]
                .as_str()
                .with_context(|| format!("plugin without a type in {}", e.conflist))?;
            let bin = dirs
                .iter()
                .map(|d| d.join(kind))
                .find(|p| p.exists())
                .with_context(|| format!("no plugin {kind} in {cni_path}"))?;
            list.push(Plugin {
                kind: kind.to_string(),
                bin,
                entry: entry.clone(),
            });
        }
        if list.is_empty() {
            bail!("no plugins in {}", e.conflist);
        }
        Ok(Self {
            node: e.lab.node.clone(),
            net: e.net.clone(),
            version: e.conflist["cniVersion"].as_str().unwrap_or("1.0.0").into(),
            cni_path,
            list,
        })
    }

    /// What plugin `p` reads on stdin.
    fn stdin(&self, p: &Plugin, prev: Option<&Value>) -> Value {
        let mut c = p.entry.clone();
        c["name"] = json!(self.net);
        c["cniVersion"] = json!(self.version);
        if let Some(prev) = prev {
            c["prevResult"] = prev.clone();
        }
        if p.entry["capabilities"]["portMappings"] == json!(true) {
            c["runtimeConfig"] = json!({"portMappings": [
                {"hostPort": HOST_PORT, "containerPort": 80, "protocol": "tcp"}
            ]});
        }
        c
    }

    /// ADD then DEL of one attachment to the namespace `netns`, timed.
    pub fn add_del(&self, netns: &str, pod: &str) -> Result<Timed> {
        let node = File::open(format!("/run/netns/{}", self.node))
            .with_context(|| format!("cannot open the node namespace {}", self.node))?;
        let env = Env {
            container_id: container_id()?,
            netns: format!("/run/netns/{netns}"),
            args: format!("IgnoreUnknown=1;K8S_POD_NAME={pod}"),
            path: self.cni_path.clone(),
        };
        let mut t = Timed {
            add: 0.0,
            del: 0.0,
            add_parts: Vec::new(),
            del_parts: Vec::new(),
        };
        let mut result: Option<Value> = None;
        for p in &self.list {
            let input = self.stdin(p, result.as_ref());
            let (secs, out) = call(&node, &p.bin, "ADD", &env, &input)?;
            let parsed: Value = serde_json::from_slice(&out).with_context(|| {
                format!(
                    "{} ADD printed no result: {}",
                    p.kind,
                    String::from_utf8_lossy(&out)
                )
            })?;
            result = Some(parsed);
            t.add += secs;
            t.add_parts.push((p.kind.clone(), secs));
        }
        for p in self.list.iter().rev() {
            let input = self.stdin(p, result.as_ref());
            let (secs, _) = call(&node, &p.bin, "DEL", &env, &input)?;
            t.del += secs;
            t.del_parts.push((p.kind.clone(), secs));
        }
        Ok(t)
    }
}

/// The cost of starting any process the same way: `/bin/true` entering
/// the node namespace, the floor under every plugin call.
pub fn exec_floor(node: &str) -> Result<f64> {
    let node = File::open(format!("/run/netns/{node}"))?;
    let env = Env {
        container_id: String::new(),
        netns: String::new(),
        args: String::new(),
        path: String::new(),
    };
    Ok(call(&node, Path::new("/bin/true"), "VERSION", &env, &json!({}))?.0)
}

struct Env {
    container_id: String,
    netns: String,
    args: String,
    path: String,
}

/// Runs `bin` in the node's namespace with CNI_COMMAND=`command`; the
/// seconds from fork to exit (output read) and stdout, which must be a
/// success.
fn call(
    node: &File,
    bin: &Path,
    command: &str,
    env: &Env,
    input: &Value,
) -> Result<(f64, Vec<u8>)> {
    let fd = node.as_raw_fd();
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", PATH)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", &env.container_id)
        .env("CNI_NETNS", &env.netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_ARGS", &env.args)
        .env("CNI_PATH", &env.path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setns and prctl are async-signal-safe; `fd` stays open in
    // the parent until the child has exec'd.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0
                || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let input = serde_json::to_vec(input)?;
    let watchdog = Watchdog::start();
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    watchdog.arm(child.id());
    if let Some(mut stdin) = child.stdin.take() {
        // A plugin that fails before reading its config closes the pipe;
        // its answer says why.
        let _ = stdin.write_all(&input);
    }
    let out = child.wait_with_output();
    let secs = started.elapsed().as_secs_f64();
    watchdog.disarm();
    let out = out?;
    if !out.status.success() {
        bail!(
            "{} {command} failed ({}): {}{}",
            bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((secs, out.stdout))
}

/// Kills a call that hangs (a stuck plugin would stop the bench), from a
/// thread made before the clock starts.
struct Watchdog {
    pid: mpsc::Sender<u32>,
    done: mpsc::Sender<()>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Watchdog {
    fn start() -> Self {
        let (pid_tx, pid_rx) = mpsc::channel::<u32>();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let thread = thread::spawn(move || {
            let Ok(pid) = pid_rx.recv() else { return };
            if let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(COMMAND_LIMIT) {
                // SAFETY: kill(2) of our child, not reaped while we wait.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
        });
        Self {
            pid: pid_tx,
            done: done_tx,
            thread: Some(thread),
        }
    }

    fn arm(&self, pid: u32) {
        let _ = self.pid.send(pid);
    }

    fn disarm(mut self) {
        let _ = self.done.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.done.send(());
    }
}

fn container_id() -> Result<String> {
    let mut b = [0u8; 32];
    File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// A namespace for one timed attachment (podman makes one per
/// container), removed when dropped. Named after the run, so a run killed
/// outright has it reaped by the next.
pub struct Netns(String);

impl Netns {
    pub fn new(name: String) -> Result<Self> {
        let ns = Netns(name);
        sh("ip", &["netns", "add", &ns.0])?;
        sh("ip", &["-n", &ns.0, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.0
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        sh_quiet("ip", &["netns", "del", &self.0]);
    }
}
