//! The measuring schedule: a warm-up round, then the repetitions, each
//! running every measurement on every setup back to back; samples that
//! other processes disturbed are taken again. Around every sample the
//! datapath's counters are read and checked against what the tools
//! counted (evidence.rs); a sample that fails that check, or whose loss
//! hides its figure, is kept out of the statistics and fails the scenario.
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde_json::{json, Map, Value};

use super::{
    agent, cpu, evidence,
    measure::{self, Ctx, Measurement},
    metric::fmt_num,
    scenario::Scenario,
    signal,
    stats::Results,
    topology::Topology,
};

/// A sample taken while other processes used more than this share of the
/// machine's CPU is taken again (on the idle box the bench alone shows 0%).
pub const DISTURBED_SHARE: f64 = 0.03;
pub const MAX_ATTEMPTS: u32 = 3;
/// How long to wait for other processes to calm down before measuring again.
pub const QUIET_WAIT: Duration = Duration::from_secs(5);

/// Extra time (waiting and measuring again) a run may spend on disturbed
/// samples: a quarter of the nominal run time. After that, disturbed samples are
/// kept and flagged in the report.
pub struct Patience {
    left: Duration,
}

impl Patience {
    /// A quarter of `nominal`, the undisturbed time of what it covers.
    pub fn new(nominal: Duration) -> Self {
        Patience { left: nominal / 4 }
    }

    /// What is left to spend on measuring again.
    pub fn left(&self) -> Duration {
        self.left
    }

    /// Takes the time a wait and another attempt cost.
    pub fn spend(&mut self, d: Duration) {
        self.left = self.left.saturating_sub(d);
    }
}

/// Measurements of one round: (measurement, setup) pairs the scenario
/// takes.
pub fn per_round(scenario: Scenario) -> usize {
    scenario
        .measurements()
        .iter()
        .map(|&m| {
            scenario
                .setups()
                .iter()
                .filter(|&&s| scenario.takes(s, m))
                .count()
        })
        .sum()
}

/// One discarded warm-up round (ARP, FDB, conntrack, TIME_WAIT state and
/// caches reach their steady state), then `reps` rounds. Nothing is
/// cleared between them: each measurement finds the tables as the traffic
/// before it and the agents' expiry left them. Within a round
/// each measurement runs on every setup back to back, so the setups see
/// the same machine conditions; the setup order rotates every round.
pub fn measure_all(
    scenario: Scenario,
    topologies: &[Topology],
    ctx: &Ctx,
    reps: u32,
) -> Result<(Results, Vec<Value>, Vec<String>)> {
    let mut results = Results::default();
    let mut invalid = Vec::new();
    let nominal =
        Duration::from_secs(u64::from(ctx.secs) + 1) * (reps * per_round(scenario) as u32);
    let mut patience = Patience::new(nominal);
    let mut runs = Vec::new();
    for round in 0..=reps {
        let warmup = round == 0;
        for &m in scenario.measurements() {
            for i in 0..topologies.len() {
                let t = &topologies[(i + round as usize) % topologies.len()];
                if !scenario.takes(t.setup, m) {
                    continue;
                }
                signal::check()?;
                let tag = if warmup {
                    "warm-up".to_string()
                } else {
                    format!("rep {round}/{reps}")
                };
                let sample = {
                    let _others = agent::stop_others(
                        topologies.iter().filter_map(|o| o.agent.as_deref()),
                        t.agent.as_deref(),
                    );
                    measure_undisturbed(m, t, ctx, warmup, &mut patience)?
                };
                if let Some(a) = &t.agent {
                    a.check_running()?;
                }
                let shown: Vec<String> = sample
                    .outcome
                    .values
                    .iter()
                    .map(|(metric, v)| {
                        format!(
                            "{} {}",
                            fmt_num(metric.to_table_unit(*v)),
                            metric.table_unit()
                        )
                    })
                    .collect();
                println!(
                    "  {tag:<9} {:<11} {:<17} {:<32} (others used {:.1}% CPU)",
                    m.key(),
                    t.setup.key(),
                    shown.join(", "),
                    sample.foreign_share * 100.0
                );
                for p in &sample.problems {
                    println!("  INVALID {tag} {} {}: {p}", m.key(), t.setup.key());
                }
                // The warm-up round's samples count for the evidence too:
                // a path not taken is not taken in any round.
                invalid.extend(
                    sample
                        .problems
                        .iter()
                        .map(|p| format!("{tag} {} {}: {p}", m.key(), t.setup.key())),
                );
                if warmup {
                    continue;
                }
                let mut values = Map::new();
                for (metric, v) in &sample.outcome.values {
                    if sample.problems.is_empty() {
                        results.add(*metric, t.setup, round, *v);
                    }
                    values.insert(metric.key().into(), json!(v));
                }
                runs.push(json!({
                    "rep": round,
                    "measurement": m.key(),
                    "setup": t.setup.key(),
                    "values": values,
                    "foreign_cpu_share": sample.foreign_share,
                    "attempts": sample.attempts,
                    "agent_cpu_secs": sample.agent_cpu_secs,
                    "evidence": sample.evidence,
                    "problems": sample.problems,
                    "raw": sample.outcome.raw,
                }));
            }
        }
    }
    Ok((results, runs, invalid))
}

pub struct Sample {
    pub outcome: measure::Outcome,
    /// Of the kept attempt.
    pub foreign_share: f64,
    /// How many were made.
    pub attempts: u32,
    /// CPU the measured setup's agent used during the kept attempt.
    pub agent_cpu_secs: Option<f64>,
    /// Counter deltas against what the tools counted.
    pub evidence: Value,
    /// Why the kept attempt does not give its figure (empty: it does).
    pub problems: Vec<String>,
}

/// Measures until other processes stayed quiet (or MAX_ATTEMPTS, or the
/// run's patience is used up), keeping the least disturbed attempt.
fn measure_undisturbed(
    m: Measurement,
    t: &Topology,
    ctx: &Ctx,
    warmup: bool,
    patience: &mut Patience,
) -> Result<Sample> {
    let what = format!("{} on {}", m.key(), t.setup.key());
    let new_flows = m == Measurement::TcpCrr;
    measure_undisturbed_with(&what, t, new_flows, warmup, patience, ctx.secs, || {
        run_with_retry(m, t, ctx)
    })
}

/// The same for any way of taking a sample of `t` (`run`, which may do
/// more around a measurement: the monitor scenario's storm and monitor),
/// its evidence checked as every sample's; `new_flows`: each unit the
/// tools counted was a new connection. `secs`: what an attempt costs.
pub fn measure_undisturbed_with(
    what: &str,
    t: &Topology,
    new_flows: bool,
    warmup: bool,
    patience: &mut Patience,
    secs: u32,
    mut run: impl FnMut() -> Result<measure::Outcome>,
) -> Result<Sample> {
    let mut best: Option<Sample> = None;
    let mut made = 0;
    loop {
        made += 1;
        let counters_before = evidence::snapshot(t)?;
        let agent_before = t.agent.as_deref().map(|a| a.cpu_secs());
        let before = cpu::snapshot()?;
        let outcome = run();
        let foreign_share = cpu::foreign_share(&before, &cpu::snapshot()?);
        let agent_cpu_secs = t
            .agent
            .as_ref()
            .zip(agent_before)
            .map(|(a, b)| a.cpu_secs() - b);
        let outcome = outcome?;
        let counters_after = evidence::snapshot(t)?;
        let (evidence, mut problems) = evidence::check(
            t,
            new_flows,
            outcome.carried,
            outcome.carried_bytes,
            &counters_before,
            &counters_after,
        );
        // Loss or a stall can be another process's doing (the receiver
        // starved of CPU): such a sample is taken again like a disturbed
        // one, and only fails the run if every attempt shows it. A path
        // not taken is final.
        let lossy = !outcome.problems.is_empty();
        let path_missed = !problems.is_empty();
        problems.extend(outcome.problems.iter().cloned());
        let why = problems.join("; ");
        let better = best.as_ref().is_none_or(|b| {
            (problems.is_empty(), -foreign_share) > (b.problems.is_empty(), -b.foreign_share)
        });
        if better {
            best = Some(Sample {
                outcome,
                foreign_share,
                attempts: 0,
                agent_cpu_secs,
                evidence,
                problems,
            });
        }
        if path_missed
            || (foreign_share <= DISTURBED_SHARE && !lossy)
            || warmup
            || made >= MAX_ATTEMPTS
            || patience.left.is_zero()
        {
            break;
        }
        if lossy {
            eprintln!("  {what}: {why}; measuring again");
        } else {
            eprintln!(
                "  {what}: other processes used {:.0}% of the CPU meanwhile; measuring again",
                foreign_share * 100.0
            );
        }
        let waited = Instant::now();
        cpu::wait_for_quiet(DISTURBED_SHARE, QUIET_WAIT)?;
        // The wait and the next attempt come out of the run's patience.
        patience.spend(waited.elapsed() + Duration::from_secs(secs.into()));
    }
    let mut sample = best.context("no attempt was made")?;
    sample.attempts = made;
    Ok(sample)
}

/// A load tool can fail for reasons unrelated to the path (a server slow
/// to start on a busy box): one retry, then the run fails.
fn run_with_retry(m: Measurement, t: &Topology, ctx: &Ctx) -> Result<measure::Outcome> {
    match m.run(t, ctx) {
        Ok(o) => Ok(o),
        Err(e) => {
            signal::check()?;
            eprintln!(
                "  {} on {} failed, retrying once: {e:#}",
                m.key(),
                t.setup.key()
            );
            m.run(t, ctx)
                .with_context(|| format!("{} on {}", m.key(), t.setup.key()))
        }
    }
}
