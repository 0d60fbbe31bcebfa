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
use anyhow::{bail, Result};

use super::proc::{self, Proc};
use crate::util::ebridge_release_bin;

pub struct Agent {
    proc: Proc,
}

impl Agent {
    /// `nsenter --net=/run/netns/NODE ebridge agent --bridge BRIDGE`, with
    /// every default (GC every 5 s, the kernel's conntrack timeouts).
    pub fn start(node: &str, bridge: &str) -> Result<Self> {
        let proc = Proc::spawn_in(
            node,
            "ebridge agent",
            ebridge_release_bin(),
            &["agent", "--bridge", bridge],
        )?;
        let agent = Agent { proc };
        // It opens the pinned maps first; a bad bridge makes it exit at once.
        std::thread::sleep(std::time::Duration::from_millis(300));
        agent.check_running()?;
        Ok(agent)
    }

    /// Fails if the agent exited (it must run for the whole scenario).
    pub fn check_running(&self) -> Result<()> {
        if proc::state(self.proc.pid()).is_none_or(|s| s == 'Z' || s == 'X') {
            bail!(
                "ebridge agent (pid {}) is not running: {}",
                self.proc.pid(),
                self.proc.stderr_so_far().trim()
            );
        }
        Ok(())
    }

    /// User + system CPU seconds it used so far.
    pub fn cpu_secs(&self) -> f64 {
        proc::cpu_usec(self.proc.pid()) as f64 / 1e6
    }

    /// Its log (GC reports, datapath log lines).
    pub fn log(&self) -> String {
        self.proc.stderr_so_far()
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.proc.pid() as libc::pid_t, sig) };
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
