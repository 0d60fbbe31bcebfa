//! The measuring schedule: a warm-up round, then the repetitions, each
//! running every measurement on every setup back to back; samples that
//! other processes disturbed are taken again.
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde_json::{json, Map, Value};

use super::{
    cpu,
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
const MAX_ATTEMPTS: u32 = 3;
/// How long to wait for other processes to calm down before measuring again.
const QUIET_WAIT: Duration = Duration::from_secs(5);

/// Extra time (waiting and measuring again) a run may spend on disturbed
/// samples: a quarter of the nominal run time. After that, disturbed samples are
/// kept and flagged in the report.
struct Patience {
    left: Duration,
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
/// caches reach their steady state), then `reps` rounds. Within a round
/// each measurement runs on every setup back to back, so the setups see
/// the same machine conditions; the setup order rotates every round.
pub fn measure_all(
    scenario: Scenario,
    topologies: &[Topology],
    ctx: &Ctx,
    reps: u32,
) -> Result<(Results, Vec<Value>)> {
    let mut results = Results::default();
    let nominal =
        Duration::from_secs(u64::from(ctx.secs) + 1) * (reps * per_round(scenario) as u32);
    let mut patience = Patience { left: nominal / 4 };
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
                let sample = measure_undisturbed(m, t, ctx, warmup, &mut patience)?;
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
                if warmup {
                    continue;
                }
                let mut values = Map::new();
                for (metric, v) in &sample.outcome.values {
                    results.add(*metric, t.setup, round, *v);
                    values.insert(metric.key().into(), json!(v));
                }
                runs.push(json!({
                    "rep": round,
                    "measurement": m.key(),
                    "setup": t.setup.key(),
                    "values": values,
                    "foreign_cpu_share": sample.foreign_share,
                    "attempts": sample.attempts,
                    "flow_entries_cleared_after": sample.cleared,
                    "raw": sample.outcome.raw,
                }));
            }
        }
    }
    Ok((results, runs))
}

struct Sample {
    outcome: measure::Outcome,
    /// Of the kept attempt.
    foreign_share: f64,
    /// How many were made.
    attempts: u32,
    /// Connection-tracking entries the attempts left and the bench
    /// removed (None: nothing to clear).
    cleared: Option<u64>,
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
    let mut best: Option<Sample> = None;
    let mut made = 0;
    let mut cleared: Option<u64> = None;
    loop {
        made += 1;
        let before = cpu::snapshot()?;
        let outcome = run_with_retry(m, t, ctx);
        let foreign_share = cpu::foreign_share(&before, &cpu::snapshot()?);
        // Cleared after every attempt (failed ones too), outside the
        // measured time, so no attempt starts with another's flows.
        if let Some(n) = t.forget_test_flows(m)? {
            cleared = Some(cleared.unwrap_or(0) + n);
        }
        let outcome = outcome?;
        if best
            .as_ref()
            .is_none_or(|b| foreign_share < b.foreign_share)
        {
            best = Some(Sample {
                outcome,
                foreign_share,
                attempts: 0,
                cleared: None,
            });
        }
        if foreign_share <= DISTURBED_SHARE
            || warmup
            || made >= MAX_ATTEMPTS
            || patience.left.is_zero()
        {
            break;
        }
        eprintln!(
            "  {} on {}: other processes used {:.0}% of the CPU meanwhile; measuring again",
            m.key(),
            t.setup.key(),
            foreign_share * 100.0
        );
        let waited = Instant::now();
        cpu::wait_for_quiet(DISTURBED_SHARE, QUIET_WAIT)?;
        // The wait and the next attempt come out of the run's patience.
        patience.left = patience
            .left
            .saturating_sub(waited.elapsed() + Duration::from_secs(ctx.secs.into()));
    }
    let mut sample = best.context("no attempt was made")?;
    sample.attempts = made;
    sample.cleared = cleared;
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
