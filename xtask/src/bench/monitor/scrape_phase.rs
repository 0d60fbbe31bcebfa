//! One phase of scrapes: `bench-load metrics-scrape` in the node (CPU B)
//! GETs /metrics every 25 ms for a while, open loop, each timed from
//! connect to the end of the body; the phase is taken again while others
//! use the CPU, as every sample of the bench is.
//!
//! Each body carries the last GC pass (its number, end and duration), the
//! NAT entries it counted and the datapath's `snat-out` counter. From the
//! passes the phase's bodies report, and the pass still running when it
//! ended (waited for), each scrape is classed as between passes or during
//! one (its own interval meets a pass's). And each is checked against the
//! datapath: the counter it reports must be what `ebridge show stats`
//! reads around the phase, its entries at least the table's fill.
use std::{
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};

use super::node::Node;
use crate::bench::{
    cpu, evidence,
    measure::{self, Ctx},
    rounds::{Patience, DISTURBED_SHARE, MAX_ATTEMPTS, QUIET_WAIT},
    signal,
};

pub const METRICS_ADDR: &str = "127.0.0.1:9965";
pub const EVERY_MS: u64 = 25;

const ENTRIES: &str = "ebridge_nat_entries";
const RUNS: &str = "ebridge_gc_runs_total";
const LAST_AT: &str = "ebridge_gc_last_run_timestamp_seconds";
const LAST_SECS: &str = "ebridge_gc_last_duration_seconds";
/// The datapath's per-CPU counter of the node's traffic, as scraped.
const SNAT_OUT: &str = "ebridge_packets_total{reason=\"snat-out\",";

/// A GC pass as the agent reports it: its number, end (Unix time) and
/// duration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pass {
    pub runs: u64,
    pub end: f64,
    pub secs: f64,
}

impl Pass {
    fn meets(&self, from: f64, to: f64) -> bool {
        from < self.end && to > self.end - self.secs
    }

    fn to_json(self) -> Value {
        json!({"gc_runs": self.runs, "end": self.end, "secs": self.secs})
    }
}

pub struct Scrape {
    /// Unix time it started.
    pub at: f64,
    pub ms: f64,
    /// Why it failed (no answer, not 200).
    pub error: Option<String>,
    pub entries: Option<f64>,
    /// The last pass its body reports.
    pub gc: Option<Pass>,
    pub snat_out: Option<f64>,
}

impl Scrape {
    fn parse(v: &Value) -> Self {
        let val = |n: &str| v["values"][n].as_f64();
        let error = match (v["error"].as_str(), v["status"].as_u64()) {
            (Some(e), _) => Some(e.to_string()),
            (None, Some(200)) => None,
            (None, s) => Some(format!("HTTP status {}", s.unwrap_or(0))),
        };
        let gc = match (val(RUNS), val(LAST_AT), val(LAST_SECS)) {
            (Some(r), Some(end), Some(secs)) if r >= 1.0 => Some(Pass {
                runs: r as u64,
                end,
                secs,
            }),
            _ => None,
        };
        Scrape {
            at: v["at"].as_f64().unwrap_or(0.0),
            ms: v["ms"].as_f64().unwrap_or(f64::NAN),
            error,
            entries: val(ENTRIES),
            gc,
            snat_out: val(SNAT_OUT),
        }
    }
}

pub struct Phase {
    pub key: &'static str,
    pub label: &'static str,
    pub agent: String,
    pub scrapes: Vec<Scrape>,
    /// Every pass the phase saw, in order, the one running at its end last.
    pub passes: Vec<Pass>,
    pub foreign_share: f64,
    pub attempts: u32,
    pub agent_cpu_secs: f64,
    /// `snat-out` packets from `ebridge show stats` before and after.
    pub stats_snat_out: (u64, u64),
    /// Scrapes that failed or disagree with the datapath.
    pub problems: Vec<String>,
}

impl Phase {
    /// The scrape's interval meets one of the phase's GC passes.
    pub fn during_gc(&self, s: &Scrape) -> bool {
        self.passes.iter().any(|p| p.meets(s.at, s.at + s.ms / 1e3))
    }

    pub fn to_json(&self) -> Value {
        json!({
            "key": self.key,
            "label": self.label,
            "agent_args": self.agent,
            "every_ms": EVERY_MS,
            "foreign_cpu_share": self.foreign_share,
            "attempts": self.attempts,
            "agent_cpu_secs": self.agent_cpu_secs,
            "show_stats_snat_out": [self.stats_snat_out.0, self.stats_snat_out.1],
            "gc_passes": self.passes.iter().map(|p| p.to_json()).collect::<Vec<_>>(),
            "problems": self.problems,
            "scrapes": self.scrapes.iter().map(|s| json!({
                "at": s.at,
                "ms": s.ms,
                "error": s.error,
                "nat_entries": s.entries,
                "snat_out": s.snat_out,
                "gc_runs": s.gc.map(|g| g.runs),
                "during_gc": self.during_gc(s),
            })).collect::<Vec<_>>(),
        })
    }
}

fn scrape(node: &Node, ctx: &Ctx, count: usize) -> Result<Vec<Scrape>> {
    let max = (count as u64 * EVERY_MS) / 1000 + 30;
    let p = measure::load(
        &node.node_ns,
        "metrics-scrape",
        ctx,
        ctx.cpus[1],
        &measure::strings(&[
            "metrics-scrape",
            "--to",
            METRICS_ADDR,
            "--count",
            &count.to_string(),
            "--every-ms",
            &EVERY_MS.to_string(),
            "--metric",
            ENTRIES,
            "--metric",
            RUNS,
            "--metric",
            LAST_AT,
            "--metric",
            LAST_SECS,
            "--metric",
            SNAT_OUT,
        ]),
    )?;
    let out = measure::parse(&p.finish(Duration::from_secs(max))?, "metrics-scrape")?;
    Ok(out["scrapes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(Scrape::parse)
        .collect())
}

/// Scrapes once every 500 ms until one reports a pass after pass number
/// `after` that counted at least `entries`; that pass.
pub fn wait_for_pass(node: &Node, ctx: &Ctx, entries: u64, after: u64) -> Result<Pass> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        signal::check()?;
        node.check_agent()?;
        if let Some(s) = scrape(node, ctx, 1)?.first() {
            let counted = s.entries.unwrap_or(0.0) as u64;
            if let Some(p) = s.gc.filter(|p| p.runs > after && s.error.is_none()) {
                if counted >= entries {
                    return Ok(p);
                }
            }
        }
        if Instant::now() >= deadline {
            bail!("no GC pass after pass {after} counted {entries} NAT entries within 30 s");
        }
        thread::sleep(Duration::from_millis(500));
    }
}

fn stats_snat_out(node: &Node) -> Result<u64> {
    let t = node
        .nat
        .as_ref()
        .context("the scrape node has no nat view")?;
    let c = evidence::snapshot(t)?;
    Ok(c.0.get("snat-out").map_or(0, |v| v.0))
}

/// What each scrape should show, and the passes it saw.
fn check(p: &mut Phase, min_entries: u64) {
    let (lo, hi) = p.stats_snat_out;
    for s in &p.scrapes {
        let at = format!("scrape ({}) at {:.3}", p.key, s.at);
        if let Some(e) = &s.error {
            p.problems.push(format!("{at}: {e}"));
            continue;
        }
        let entries = s.entries.unwrap_or(-1.0);
        if entries < min_entries as f64 {
            p.problems.push(format!(
                "{at}: the agent reported {entries} NAT entries, not the {min_entries} the table holds"
            ));
        }
        match s.snat_out {
            Some(v) if v >= lo as f64 && v <= hi as f64 => {}
            v => p.problems.push(format!(
                "{at}: it reported snat-out {v:?} packets, ebridge show stats read {lo}..{hi}"
            )),
        }
        match s.gc {
            Some(g) if !p.passes.contains(&g) => p.passes.push(g),
            Some(_) => {}
            None => p.problems.push(format!("{at}: no GC pass reported")),
        }
    }
    p.passes.sort_by_key(|g| g.runs);
}

/// Scrapes for `secs` (one every EVERY_MS), again while other processes
/// use the CPU (at most MAX_ATTEMPTS, within `patience`); keeps the least
/// disturbed attempt.
pub fn take(
    node: &Node,
    ctx: &Ctx,
    secs: u64,
    key: &'static str,
    label: &'static str,
    min_entries: u64,
    patience: &mut Patience,
) -> Result<Phase> {
    let count = (secs * 1000 / EVERY_MS) as usize;
    let mut best: Option<Phase> = None;
    for attempt in 1..=MAX_ATTEMPTS {
        signal::check()?;
        let agent_before = node.agent_cpu_secs();
        let stats_before = stats_snat_out(node)?;
        let before = cpu::snapshot()?;
        let scrapes = scrape(node, ctx, count)?;
        let foreign_share = cpu::foreign_share(&before, &cpu::snapshot()?);
        let agent_cpu_secs = node.agent_cpu_secs() - agent_before;
        let stats_after = stats_snat_out(node)?;
        node.check_agent()?;
        let mut p = Phase {
            key,
            label,
            agent: node.agent_args.join(" "),
            scrapes,
            passes: Vec::new(),
            foreign_share,
            attempts: attempt,
            agent_cpu_secs,
            stats_snat_out: (stats_before, stats_after),
            problems: Vec::new(),
        };
        check(&mut p, min_entries);
        // The pass running when the phase ended, so scrapes during it count
        // as such.
        let last = p.passes.last().map_or(0, |g| g.runs);
        let next = wait_for_pass(node, ctx, min_entries, last)?;
        p.passes.push(next);
        let quiet = p.foreign_share <= DISTURBED_SHARE;
        if best
            .as_ref()
            .is_none_or(|b| p.foreign_share < b.foreign_share)
        {
            best = Some(p);
        }
        if quiet || attempt == MAX_ATTEMPTS || patience.left().is_zero() {
            break;
        }
        eprintln!(
            "  scrapes ({key}): other processes used {:.0}% of the CPU meanwhile; measuring again",
            foreign_share * 100.0
        );
        let waited = Instant::now();
        cpu::wait_for_quiet(DISTURBED_SHARE, QUIET_WAIT)?;
        // The wait and the next attempt come out of the run's patience.
        patience.spend(waited.elapsed() + Duration::from_secs(secs));
    }
    let p = best.context("no attempt was made")?;
    println!(
        "  scrapes {key:<11} {} scrapes, {} during a GC pass ({} passes seen), {} failed or disagreeing (others used {:.1}% CPU)",
        p.scrapes.len(),
        p.scrapes.iter().filter(|s| p.during_gc(s)).count(),
        p.passes.len(),
        p.problems.len(),
        p.foreign_share * 100.0
    );
    Ok(p)
}
