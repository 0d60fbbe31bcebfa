//! `ebridge agent` on every ebridge setup for the whole scenario, as a
//! node runs it: it expires NAT flows by state and idle time, so the table
//! a measurement finds is the one traffic and expiry left, never one the
//! bench cleared.
//!
//! The setups stand for separate nodes that here share two CPUs: during a
//! measurement only the measured setup's agent runs (the others are
//! stopped with SIGSTOP and continued right after), so one node's garbage
//! collection is not charged to another's figures. The measured agent's
//! CPU time is the product's own cost: it counts as the bench's (proc.rs),
//! not as a disturbance, and each sample reports it. A stopped agent still
//! dies of the SIGKILL its Proc sends when the setup is removed.
//!
//! A setup of two nodes (routing) runs one agent per node; they are its
//! `Agent` together: started, stopped, checked and charged as one.
use anyhow::{bail, Result};

use super::proc::{self, Proc};
use crate::util::ebridge_release_bin;

pub struct Agent {
    /// (node namespace, its agent process)
    procs: Vec<(String, Proc)>,
}

impl Agent {
    /// `nsenter --net=/run/netns/NODE ebridge agent --bridge BRIDGE`, with
    /// every default (GC every 5 s, the kernel's conntrack timeouts).
    pub fn start(node: &str, bridge: &str) -> Result<Self> {
        Self::start_on(&[(node, bridge)])
    }

    /// One agent per (node, bridge), as every node of a cluster runs it.
    pub fn start_on(nodes: &[(&str, &str)]) -> Result<Self> {
        let mut procs = Vec::new();
        for &(node, bridge) in nodes {
            let proc = Proc::spawn_in(
                node,
                "ebridge agent",
                ebridge_release_bin(),
                &["agent", "--bridge", bridge],
            )?;
            procs.push((node.to_string(), proc));
        }
        let agent = Agent { procs };
        // It opens the pinned maps first; a bad bridge makes it exit at once.
        std::thread::sleep(std::time::Duration::from_millis(300));
        agent.check_running()?;
        Ok(agent)
    }

    /// Fails if an agent exited (it must run for the whole scenario).
    pub fn check_running(&self) -> Result<()> {
        for (node, p) in &self.procs {
            if proc::state(p.pid()).is_none_or(|s| s == 'Z' || s == 'X') {
                bail!(
                    "ebridge agent (pid {}, node {node}) is not running: {}",
                    p.pid(),
                    p.stderr_so_far().trim()
                );
            }
        }
        Ok(())
    }

    /// User + system CPU seconds they used so far.
    pub fn cpu_secs(&self) -> f64 {
        self.procs
            .iter()
            .map(|(_, p)| proc::cpu_usec(p.pid()) as f64 / 1e6)
            .sum()
    }

    /// Their logs (GC reports, datapath log lines), each headed by its
    /// node when there are several.
    pub fn log(&self) -> String {
        match self.procs.as_slice() {
            [(_, p)] => p.stderr_so_far(),
            all => all
                .iter()
                .map(|(node, p)| format!("== {node}\n{}", p.stderr_so_far()))
                .collect(),
        }
    }

    fn signal(&self, sig: libc::c_int) {
        for (_, p) in &self.procs {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(p.pid() as libc::pid_t, sig) };
        }
    }
}

/// Keeps every agent but the measured one stopped; continues them when
/// dropped (also on an error or Ctrl-C).
pub struct OthersStopped<'a> {
    stopped: Vec<&'a Agent>,
}

pub fn stop_others<'a>(
    all: impl Iterator<Item = &'a Agent>,
    measured: Option<&Agent>,
) -> OthersStopped<'a> {
    let mut stopped: Vec<&Agent> = Vec::new();
    // Two setups can share a node, hence its agent: each is stopped once.
    for a in all {
        if measured.is_none_or(|m| !std::ptr::eq(a, m))
            && !stopped.iter().any(|s| std::ptr::eq(*s, a))
        {
            stopped.push(a);
        }
    }
    for a in &stopped {
        a.signal(libc::SIGSTOP);
    }
    OthersStopped { stopped }
}

impl Drop for OthersStopped<'_> {
    fn drop(&mut self) {
        for a in &self.stopped {
            a.signal(libc::SIGCONT);
        }
    }
}
