//! The hooks' cost and the monitor under a drop storm, as paired samples of
//! the bench's UDP rate test (64-byte datagrams, a to b, sender on CPU A):
//!
//! - c2c and nat: the build with hooks (no monitor attached) against the
//!   build without, each on its own node;
//! - storm: the node with hooks while container s floods spoofed frames,
//!   with `ebridge monitor --json` attached against not attached;
//!
//! each two pairs per rep, ABBA then BAAB the next rep, so a drift of the
//! machine within a rep cancels.
//!
//! Each sample is taken as the rounds take theirs (rounds.rs: evidence,
//! loss, disturbed samples measured again), with the other node's agent
//! stopped, after the monitor lease of an earlier sample ran out, and with
//! two more checks: the program on a's host veth is the one proven for
//! the node's build (proof.rs), and a sample without a monitor leaves the
//! per-CPU event budget untouched (the event path was never entered).
use std::{thread, time::Duration};

use anyhow::Result;
use serde_json::{json, Value};

use super::{
    node::{self, Node},
    probe::{self, Identity},
    storm::{self, Attached},
};
use crate::bench::{
    evidence,
    measure::{Ctx, Measurement, Outcome},
    metric::fmt_num,
    rounds::{self, Patience},
    signal,
    topology::Topology,
};

/// Spoofed frames per second during the storm samples: 50 times the
/// per-CPU event budget (2000/s), so the monitor prints at its limit and
/// nearly every drop takes the path that counts a loss.
pub const STORM_PPS: u64 = 100_000;
/// The storm's achieved rate must be at least this share of STORM_PPS,
/// the same in both variants, or the comparison is not fair.
const STORM_RATE_SHARE: f64 = 0.95;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    C2c,
    Nat,
    Storm,
}

impl Part {
    pub const ALL: [Part; 3] = [Part::C2c, Part::Nat, Part::Storm];

    pub fn key(self) -> &'static str {
        match self {
            Part::C2c => "c2c",
            Part::Nat => "nat",
            Part::Storm => "storm",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Part::C2c => "container -> container",
            Part::Nat => "container -> outside (masquerade)",
            Part::Storm => "a -> b during a drop storm",
        }
    }

    /// (a, b): the ratio is a / b.
    pub fn sides(self) -> [Side; 2] {
        match self {
            Part::C2c | Part::Nat => [Side::hooks(), Side::no_hooks()],
            Part::Storm => [
                Side {
                    node: 0,
                    storm: true,
                    monitor: true,
                },
                Side {
                    node: 0,
                    storm: true,
                    monitor: false,
                },
            ],
        }
    }

    pub fn side_keys(self) -> [&'static str; 2] {
        match self {
            Part::C2c | Part::Nat => ["ebridge", "no-monitor-build"],
            Part::Storm => ["monitor-attached", "no-monitor-attached"],
        }
    }

    /// The bound on a / b.
    pub fn bound(self) -> f64 {
        match self {
            Part::C2c | Part::Nat => 0.97,
            Part::Storm => 0.9,
        }
    }

    /// Two, ABBA then BAAB the next rep: a drift within a rep cancels.
    fn pairs_per_rep(self) -> u32 {
        2
    }

    fn view(self, n: &Node) -> &Topology {
        let v = match self {
            Part::Nat => &n.nat,
            _ => &n.c2c,
        };
        v.as_ref().expect("the hooks nodes have views")
    }
}

#[derive(Clone, Copy)]
pub struct Side {
    /// Index into the nodes: 0 with hooks, 1 without.
    pub node: usize,
    pub storm: bool,
    pub monitor: bool,
}

impl Side {
    fn hooks() -> Self {
        Side {
            node: 0,
            storm: false,
            monitor: false,
        }
    }

    fn no_hooks() -> Self {
        Side {
            node: 1,
            ..Self::hooks()
        }
    }
}

/// One kept sample.
pub struct Taken {
    pub part: Part,
    /// 0: side a, 1: side b.
    pub side: usize,
    pub pair: u32,
    /// Packets/s; None when the sample is invalid.
    pub pps: Option<f64>,
    pub raw: Value,
}

pub struct Paired {
    pub taken: Vec<Taken>,
    pub runs: Vec<Value>,
    pub invalid: Vec<String>,
}

/// Undisturbed seconds it takes.
pub fn nominal_secs(reps: u32, secs: u32) -> u64 {
    let per_rep: u64 = Part::ALL
        .iter()
        .map(|p| {
            let each = u64::from(secs) + if *p == Part::Storm { 6 } else { 1 };
            2 * u64::from(p.pairs_per_rep()) * each
        })
        .sum();
    per_rep * u64::from(reps + 1)
}

/// A warm-up pair of each part (checked, not counted), then `reps` reps.
pub fn measure(nodes: &[Node], proven: &[Identity], ctx: &Ctx, reps: u32) -> Result<Paired> {
    let mut out = Paired {
        taken: Vec::new(),
        runs: Vec::new(),
        invalid: Vec::new(),
    };
    let mut patience = Patience::new(Duration::from_secs(nominal_secs(reps, ctx.secs)));
    for rep in 0..=reps {
        let warmup = rep == 0;
        for part in Part::ALL {
            let pairs = if warmup { 1 } else { part.pairs_per_rep() };
            for k in 0..pairs {
                let pair = (rep.max(1) - 1) * part.pairs_per_rep() + k;
                let order = if (rep + k) % 2 == 0 { [0, 1] } else { [1, 0] };
                for side in order {
                    signal::check()?;
                    let s = part.sides()[side];
                    let tag = if warmup {
                        "warm-up".to_string()
                    } else {
                        format!("rep {rep}/{reps}")
                    };
                    let what = format!("{} {}", part.key(), part.side_keys()[side]);
                    let (sample, agent_cpu, problems) =
                        take(nodes, proven, part, s, ctx, warmup, &mut patience, &what)?;
                    let pps = sample
                        .outcome
                        .values
                        .first()
                        .map(|v| v.1)
                        .filter(|_| problems.is_empty());
                    println!(
                        "  {tag:<9} {:<6} {:<20} {:>10} kpps   (others used {:.1}% CPU)",
                        part.key(),
                        part.side_keys()[side],
                        sample
                            .outcome
                            .values
                            .first()
                            .map_or("-".into(), |v| fmt_num(v.1 / 1e3)),
                        sample.foreign_share * 100.0
                    );
                    for p in &problems {
                        println!("  INVALID {tag} {what}: {p}");
                        out.invalid.push(format!("{tag} {what}: {p}"));
                    }
                    if warmup {
                        continue;
                    }
                    out.runs.push(json!({
                        "rep": rep,
                        "pair": pair,
                        "part": part.key(),
                        "side": part.side_keys()[side],
                        "udp_64b_rate": sample.outcome.values.first().map(|v| v.1),
                        "foreign_cpu_share": sample.foreign_share,
                        "attempts": sample.attempts,
                        "agent_cpu_secs": agent_cpu,
                        "evidence": sample.evidence,
                        "problems": problems,
                        "raw": sample.outcome.raw,
                    }));
                    out.taken.push(Taken {
                        part,
                        side,
                        pair,
                        pps,
                        raw: out
                            .runs
                            .last()
                            .map(|r| r["raw"].clone())
                            .unwrap_or_default(),
                    });
                }
            }
        }
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn take(
    nodes: &[Node],
    proven: &[Identity],
    part: Part,
    side: Side,
    ctx: &Ctx,
    warmup: bool,
    patience: &mut Patience,
    what: &str,
) -> Result<(rounds::Sample, f64, Vec<String>)> {
    let n = &nodes[side.node];
    let t = part.view(n);
    let _stopped = node::stop_others(nodes, side.node);
    probe::wait_lease_gone(&n.bridge)?;
    let mut problems = Vec::new();
    let identity = probe::identity(&n.bridge, &n.client_veth)?;
    if identity != proven[side.node] {
        problems.push(format!(
            "cannot prove the build: the program on {} is {:?}, not the proven {:?}",
            n.client_veth, identity, proven[side.node]
        ));
    }
    let budget_before = probe::budget(&n.bridge)?;
    let agent_before = n.agent_cpu_secs();
    let sample =
        rounds::measure_undisturbed_with(what, t, false, warmup, patience, ctx.secs, || {
            if side.storm {
                storm_sample(n, t, ctx, side.monitor)
            } else {
                Measurement::UdpRate.run(t, ctx)
            }
        })?;
    let agent_cpu = n.agent_cpu_secs() - agent_before;
    n.check_agent()?;
    if !side.monitor && probe::budget(&n.bridge)? != budget_before {
        problems.push("the datapath entered its event path with no monitor attached".into());
    }
    problems.extend(sample.problems.iter().cloned());
    Ok((sample, agent_cpu, problems))
}

/// The storm from s (and the monitor, if attached) around one UDP rate
/// measurement; the storm's own figures and the monitor's output go into
/// the sample, and a storm short of its rate, drops short of the frames
/// sent or an attached monitor that printed none of them make it invalid.
fn storm_sample(n: &Node, t: &Topology, ctx: &Ctx, monitor: bool) -> Result<Outcome> {
    let mon = if monitor {
        let m = Attached::start(n, &[])?;
        storm::settle();
        Some(m)
    } else {
        None
    };
    let storm_secs = f64::from(ctx.secs) + 1.5;
    let budget_before = probe::budget(&n.bridge)?;
    let before = evidence::snapshot(t)?;
    let s = storm::start(n, ctx, STORM_PPS, storm_secs)?;
    thread::sleep(Duration::from_millis(500));
    let measured = Measurement::UdpRate.run(t, ctx);
    let report = storm::finish(s, storm_secs)?;
    let after = evidence::snapshot(t)?;
    let budget_after = probe::budget(&n.bridge)?;
    let printed = match mon {
        Some(m) => {
            storm::settle();
            Some(m.finish()?)
        }
        None => None,
    };
    let mut o = measured?;
    let sent = report["sent"].as_u64().unwrap_or(0);
    let pps = report["pps"].as_f64().unwrap_or(0.0);
    let dropped = after.packets_since(&before, "drop-spoofed-ip");
    let datapath_lost = probe::lost(&budget_after).saturating_sub(probe::lost(&budget_before));
    if pps < STORM_RATE_SHARE * STORM_PPS as f64 {
        o.problems.push(format!(
            "the storm reached {pps:.0} frames/s, short of {STORM_PPS}"
        ));
    }
    if dropped < sent {
        o.problems.push(format!(
            "drop-spoofed-ip moved by {dropped} for {sent} spoofed frames"
        ));
    }
    if let Some(p) = &printed {
        if p.storm_drops == 0 {
            o.problems
                .push("the attached monitor printed none of the storm's drops".into());
        }
    }
    o.raw["storm"] = json!({
        "report": report,
        "drop_spoofed_ip": dropped,
        "datapath_lost_events": datapath_lost,
        "storm_secs": report["secs"],
    });
    o.raw["monitor"] = printed.map_or(Value::Null, |p| p.to_json());
    Ok(o)
}
