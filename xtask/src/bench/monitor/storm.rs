//! The drop storm and the monitor watching it. The storm is `bench-load
//! raw-storm` in container s: 60-byte frames with s's own MAC and a source
//! address that is not s's (172.17.0.99 → b), which s's endpoint program
//! drops as `drop-spoofed-ip`, at a fixed rate, pinned to the CPU that
//! carries the measured stream (A), so what the hooks add per dropped
//! frame comes out of the forwarded rate. The monitor is `ebridge monitor
//! --json` as an operator runs it (every event type, unpinned), its
//! output going to a file instead of /dev/null so the bench can count
//! the events it printed and the losses it reported.
use std::{
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use serde_json::{json, Value};

use super::node::Node;
use crate::bench::{
    aim::SERVER_IP,
    measure::{self, Ctx},
    proc::{self, Proc},
    scratch::ScratchFile,
};

/// The spoofed source address.
pub const SPOOFED: &str = "172.17.0.99";

/// `bench-load raw-storm` from the node's storm container at `pps` for
/// `secs`, on CPU A.
pub fn start(node: &Node, ctx: &Ctx, pps: u64, secs: f64) -> Result<Proc> {
    let dst = SERVER_IP.to_string();
    measure::load(
        node.storm_ns(),
        "raw-storm",
        ctx,
        ctx.cpus[0],
        &measure::strings(&[
            "raw-storm",
            "--src",
            SPOOFED,
            "--dst",
            &dst,
            "--pps",
            &pps.to_string(),
            "--secs",
            &format!("{secs:.3}"),
        ]),
    )
}

/// What the storm reported (`sent`, `pps`, ...).
pub fn finish(storm: Proc, secs: f64) -> Result<Value> {
    let out = storm.finish(Duration::from_secs_f64(secs + 10.0))?;
    measure::parse(&out, "raw-storm")
}

pub struct Attached {
    proc: Proc,
    out: ScratchFile,
    started: Instant,
}

/// What one monitor printed.
#[derive(Debug, Default)]
pub struct Printed {
    /// Drop events of the storm's frames.
    pub storm_drops: u64,
    /// Every event line.
    pub events: u64,
    /// Losses it reported for the datapath.
    pub lost: u64,
    pub secs: f64,
    pub cpu_secs: f64,
}

impl Printed {
    pub fn to_json(&self) -> Value {
        json!({
            "events": self.events,
            "storm_drop_events": self.storm_drops,
            "lost_reported": self.lost,
            "attached_secs": self.secs,
            "monitor_cpu_secs": self.cpu_secs,
        })
    }
}

impl Attached {
    /// `ebridge monitor --bridge B --json [ARGS] > FILE` in the node, from
    /// the node's build.
    pub fn start(node: &Node, args: &[&str]) -> Result<Self> {
        let out = ScratchFile::new("monitor.jsonl", "")?;
        let path = out.path_str()?;
        let bin = node.bin.display().to_string();
        let mut full = vec![
            "-c".to_string(),
            format!("exec \"$0\" \"$@\" > {path}"),
            bin,
            "monitor".into(),
            "--bridge".into(),
            node.bridge.clone(),
            "--json".into(),
        ];
        full.extend(args.iter().map(|a| a.to_string()));
        let proc = Proc::spawn_in(&node.node_ns, "ebridge monitor", "sh", &full)?;
        Ok(Attached {
            proc,
            out,
            started: Instant::now(),
        })
    }

    /// Stops it as Ctrl-C would and counts what it printed.
    pub fn finish(self) -> Result<Printed> {
        let pid = self.proc.pid();
        let cpu_secs = proc::cpu_usec(pid) as f64 / 1e6;
        let secs = self.started.elapsed().as_secs_f64();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
        self.proc
            .finish(Duration::from_secs(5))
            .context("ebridge monitor did not end cleanly on SIGINT")?;
        let text = std::fs::read_to_string(self.out.path_str()?)?;
        let mut p = Printed {
            secs,
            cpu_secs,
            ..Printed::default()
        };
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).with_context(|| {
                format!("ebridge monitor printed a line that is not JSON: {line}")
            })?;
            match v["type"].as_str() {
                Some("lost") if v["source"] == "datapath" => {
                    p.lost += v["count"].as_u64().unwrap_or(0);
                }
                Some("lost") => {}
                Some(kind) => {
                    p.events += 1;
                    if kind == "drop" && v["src"] == SPOOFED && v["reason"] == "drop-spoofed-ip" {
                        p.storm_drops += 1;
                    }
                }
                None => {}
            }
        }
        Ok(p)
    }
}

/// Long enough for a monitor's lease to be taken and its first loss report
/// (every second) to come after what it should count.
pub const SETTLE: Duration = Duration::from_millis(1200);

pub fn settle() {
    thread::sleep(SETTLE);
}
