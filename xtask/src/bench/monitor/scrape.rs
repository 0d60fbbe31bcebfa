//! Scrape time of `ebridge agent --metrics-addr` with a million NAT
//! entries, on a node run as users run it: `ebridge up --nat-entries
//! 1262144` (the million plus the default table's room), one container,
//! and `ebridge agent --metrics-addr 127.0.0.1:9965` with every other
//! setting its default (GC every 5 s), never restarted, nothing cleared:
//!
//! 1. a phase of scrapes on the fresh node (empty table);
//! 2. natmap.rs writes 500,000 live flows (1,000,000 entries), a GC pass
//!    counts them; then the container's traffic through the node (the
//!    UDP rate and the connection test to the outside host, checked on
//!    `snat-out` as every nat sample) adds its own flows beside them;
//! 3. a phase of scrapes long enough to span several GC passes, each
//!    scrape classed as between passes or during one (scrape_phase.rs).
use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};

use super::{
    builds::Build,
    node::Node,
    scrape_phase::{self, Phase, METRICS_ADDR},
};
use crate::bench::{
    measure::{Ctx, Measurement},
    natmap,
    rounds::{self, Patience},
};

/// Flows written (two entries each): a million entries.
pub const FILL_FLOWS: u32 = 500_000;
pub const FILL_ENTRIES: u64 = 2 * FILL_FLOWS as u64;
/// The million plus ebridge's default table (262,144) for traffic.
pub const NAT_ENTRIES: &str = "1262144";

/// How long each phase scrapes: the empty table, and the million entries
/// (six GC passes of the agent's default 5 s; two and a half with --quick).
fn phase_secs(quick: bool) -> (u64, u64) {
    if quick {
        (3, 12)
    } else {
        (5, 30)
    }
}

/// Undisturbed seconds it takes, roughly (node, fill, passes waited for).
pub fn nominal_secs(secs: u32, quick: bool) -> u64 {
    let (empty, full) = phase_secs(quick);
    empty + full + 2 * (u64::from(secs) + 1) + 25
}

pub struct Scraped {
    pub phases: Vec<Phase>,
    pub fill: natmap::Filled,
    /// The container's traffic before the scrapes, with its evidence.
    pub traffic: Vec<Value>,
    pub up: String,
    pub config: Value,
    pub agent_args: String,
    pub agent_log: String,
    pub invalid: Vec<String>,
}

pub fn measure(run_id: &str, build: &Build, ctx: &Ctx, quick: bool) -> Result<Scraped> {
    let (empty_secs, full_secs) = phase_secs(quick);
    let mut patience = Patience::new(Duration::from_secs(nominal_secs(ctx.secs, quick)));
    let node = Node::build(
        run_id,
        "mf",
        build,
        &["--nat-entries", NAT_ENTRIES],
        false,
        &["--metrics-addr", METRICS_ADDR],
    )?;
    // The first pass runs as the agent starts.
    let first = scrape_phase::wait_for_pass(&node, ctx, 0, 0)?;
    let mut phases = vec![scrape_phase::take(
        &node,
        ctx,
        empty_secs,
        "empty",
        "empty table",
        0,
        &mut patience,
    )?];
    let fill = natmap::fill(&node.bridge, FILL_FLOWS)?;
    println!(
        "  filled {}'s nat map with {} flows ({} entries) in {:.2} s",
        node.bridge, fill.flows, fill.entries, fill.secs
    );
    let counted = scrape_phase::wait_for_pass(&node, ctx, FILL_ENTRIES, first.runs)?;
    println!(
        "  the agent's pass {} counted them in {:.2} s",
        counted.runs, counted.secs
    );
    let mut invalid = Vec::new();
    let traffic = traffic(&node, ctx, &mut patience, &mut invalid)?;
    let full = scrape_phase::take(
        &node,
        ctx,
        full_secs,
        "1m",
        "1M entries",
        FILL_ENTRIES,
        &mut patience,
    )?;
    phases.push(full);
    for p in &phases {
        invalid.extend(p.problems.iter().cloned());
    }
    Ok(Scraped {
        phases,
        fill,
        traffic,
        up: node.up.clone(),
        config: node.config.clone(),
        agent_args: node.agent_args.join(" "),
        agent_log: node.agent_log(),
        invalid,
    })
}

/// The container's UDP rate and connection test to the outside host
/// through the node, each checked on `snat-out` (rounds.rs).
fn traffic(
    node: &Node,
    ctx: &Ctx,
    patience: &mut Patience,
    invalid: &mut Vec<String>,
) -> Result<Vec<Value>> {
    let t = node.nat.as_ref().expect("the scrape node has a nat view");
    let mut out = Vec::new();
    for m in [Measurement::UdpRate, Measurement::TcpCrr] {
        let what = format!("{} on the scrape node", m.key());
        let s = rounds::measure_undisturbed_with(
            &what,
            t,
            m == Measurement::TcpCrr,
            false,
            patience,
            ctx.secs,
            || m.run(t, ctx),
        )?;
        for p in &s.problems {
            invalid.push(format!("{what}: {p}"));
        }
        println!(
            "  traffic {:<9} {} (others used {:.1}% CPU)",
            m.key(),
            s.outcome
                .values
                .iter()
                .map(|(metric, v)| format!("{} {v:.0}", metric.key()))
                .collect::<Vec<_>>()
                .join(", "),
            s.foreign_share * 100.0
        );
        out.push(json!({
            "measurement": m.key(),
            "values": s.outcome.values.iter().map(|(metric, v)| (metric.key().to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "carried": s.outcome.carried,
            "evidence": s.evidence,
            "foreign_cpu_share": s.foreign_share,
            "attempts": s.attempts,
            "problems": s.problems,
        }));
    }
    Ok(out)
}
