//! The lifecycle part's table, targets and JSON. Targets (issue 8): the
//! plugin's own ADD and DEL p50 at most 0.5x the reference chain's, at
//! every level; and flat from the first level to the top one — ebridge's
//! p50 at the top level at most FLAT x its p50 at the first.
use serde_json::{json, Map, Value};

use super::{
    lifecycle::{Op, Plan, Sample},
    node::Kind,
};
use crate::bench::{
    metric::fmt_num,
    rounds::{DISTURBED_SHARE, MAX_ATTEMPTS},
    stats::{spread_of, Spread},
};

pub const AT_MOST_VS_CHAIN: f64 = 0.5;
/// "Flat": the same noise allowance as the bench's other bounds on one
/// setup against itself (the nat scenario's node traffic, 0.9x).
pub const FLAT: f64 = 1.10;

fn of(samples: &[Sample], level: u32, kind: Kind, op: Op) -> Vec<&Sample> {
    samples
        .iter()
        .filter(|s| s.level == level && s.kind == kind && s.op == op)
        .collect()
}

fn spread(samples: &[Sample], level: u32, kind: Kind, op: Op) -> Option<Spread> {
    spread_of(
        of(samples, level, kind, op)
            .iter()
            .map(|s| s.secs)
            .collect(),
    )
}

/// ebridge/chain of the medians, and the ratios within each rep.
fn ratio(samples: &[Sample], level: u32, op: Op) -> Option<(f64, Spread)> {
    let e = spread(samples, level, Kind::Ebridge, op)?.median;
    let c = spread(samples, level, Kind::Chain, op)?.median;
    let chain = of(samples, level, Kind::Chain, op);
    let paired: Vec<f64> = of(samples, level, Kind::Ebridge, op)
        .iter()
        .filter_map(|s| {
            let c = chain.iter().find(|c| c.rep == s.rep)?;
            (c.secs > 0.0).then(|| s.secs / c.secs)
        })
        .collect();
    Some((e / c, spread_of(paired)?))
}

/// Median per plugin of the chain, in call order.
fn parts(samples: &[Sample], level: u32, kind: Kind, op: Op) -> Vec<(String, f64)> {
    let list = of(samples, level, kind, op);
    let names: Vec<String> = list
        .first()
        .map(|s| s.parts.iter().map(|p| p.0.clone()).collect())
        .unwrap_or_default();
    names
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let v: Vec<f64> = list
                .iter()
                .filter_map(|s| s.parts.get(i).map(|p| p.1))
                .collect();
            Some((name.clone(), spread_of(v)?.median))
        })
        .collect()
}

pub struct Verdict {
    pub key: String,
    pub label: String,
    pub ratio_of: String,
    pub threshold: f64,
    pub ratio: Option<f64>,
    /// Every rep's own ratio gives the same verdict (None: not paired).
    pub every_rep: Option<bool>,
}

impl Verdict {
    pub fn met(&self) -> bool {
        self.ratio.is_some_and(|r| r <= self.threshold)
    }

    fn describe(&self) -> String {
        let verdict = match (self.met(), self.every_rep) {
            (true, Some(false)) => "met (missed in some reps)",
            (true, _) => "met",
            (false, Some(false)) => "NOT MET (met in some reps)",
            (false, _) => "NOT MET",
        };
        format!(
            "{}: {} <= {:.2}: {verdict}",
            self.label,
            self.ratio.map_or("-".into(), |r| format!("{r:.2}x")),
            self.threshold
        )
    }

    fn to_json(&self) -> Value {
        json!({
            "metric": self.key,
            "label": self.label,
            "ratio_of": self.ratio_of,
            "op": "<=",
            "threshold": self.threshold,
            "ratio": self.ratio,
            "met": self.met(),
            "same_verdict_in_every_rep": self.every_rep,
        })
    }
}

pub fn verdicts(samples: &[Sample], plan: &Plan) -> Vec<Verdict> {
    let mut out = Vec::new();
    for &level in &plan.levels {
        for op in [Op::PluginAdd, Op::PluginDel] {
            let r = ratio(samples, level, op);
            out.push(Verdict {
                key: format!("{}_p50_at_{level}", op.key()),
                label: format!("{} p50 at {level}, ebridge/chain", short(op)),
                ratio_of: "ebridge/chain".into(),
                threshold: AT_MOST_VS_CHAIN,
                ratio: r.as_ref().map(|r| r.0),
                every_rep: r.map(|(x, p)| {
                    p.samples
                        .iter()
                        .all(|&y| (y <= AT_MOST_VS_CHAIN) == (x <= AT_MOST_VS_CHAIN))
                }),
            });
        }
    }
    let (first, top) = (plan.levels[0], *plan.levels.iter().max().unwrap_or(&1));
    for op in [Op::PluginAdd, Op::PluginDel] {
        let p = |level| spread(samples, level, Kind::Ebridge, op).map(|s| s.median);
        out.push(Verdict {
            key: format!("{}_p50_flat_{first}_to_{top}", op.key()),
            label: format!("ebridge {} p50 at {top} / at {first}", short(op)),
            ratio_of: format!("ebridge at {top} / ebridge at {first}"),
            threshold: FLAT,
            ratio: p(top).zip(p(first)).map(|(a, b)| a / b),
            every_rep: None,
        });
    }
    out
}

fn short(op: Op) -> &'static str {
    match op {
        Op::PluginAdd => "ADD",
        Op::PluginDel => "DEL",
        _ => op.key(),
    }
}

fn ms_cell(sp: Option<Spread>) -> String {
    match sp {
        Some(s) => format!(
            "{} [{} - {}]",
            fmt_num(s.median * 1e3),
            fmt_num(s.min * 1e3),
            fmt_num(s.max * 1e3)
        ),
        None => "-".into(),
    }
}

pub fn print(samples: &[Sample], plan: &Plan, verdicts: &[Verdict]) {
    println!(
        "\ncni lifecycle: one more container on a node running N-1 (each publishing a port); podman {} reps, plugins called directly {} times per level and node; ms, median [min - max]; ratio of the medians [min - max of the ratios within each rep]",
        plan.reps, plan.plugin_calls
    );
    println!(
        "{:<6}{:<26}{:<26}{:<26}{:<22}",
        "N", "what", "chain", "ebridge", "ebridge/chain"
    );
    for &level in &plan.levels {
        for op in Op::ALL {
            let r = ratio(samples, level, op).map_or("-".into(), |(x, p)| {
                format!("{x:.2}x [{:.2}-{:.2}]", p.min, p.max)
            });
            println!(
                "{:<6}{:<26}{:<26}{:<26}{:<22}",
                level,
                op.label(),
                ms_cell(spread(samples, level, Kind::Chain, op)),
                ms_cell(spread(samples, level, Kind::Ebridge, op)),
                r
            );
            if matches!(op, Op::PluginAdd | Op::PluginDel) {
                let p = parts(samples, level, Kind::Chain, op);
                if p.len() > 1 {
                    let shown: Vec<String> = p
                        .iter()
                        .map(|(n, v)| format!("{n} {}", fmt_num(v * 1e3)))
                        .collect();
                    println!("{:<6}{:<26}{}", "", "  chain by plugin", shown.join(" + "));
                }
            }
        }
    }
    let disturbed = samples
        .iter()
        .filter(|s| s.op != Op::ExecFloor && s.foreign_share > DISTURBED_SHARE)
        .count();
    let timed = samples.iter().filter(|s| s.op != Op::ExecFloor).count();
    if disturbed > 0 {
        println!(
            "note: {disturbed} of {timed} lifecycle samples were taken while other processes used more than {:.0}% of the CPU (after up to {MAX_ATTEMPTS} attempts; foreign_cpu_share in the JSON)",
            DISTURBED_SHARE * 100.0
        );
    }
    println!("\nplugin targets (judged on the medians):");
    for v in verdicts {
        println!("  {}", v.describe());
    }
    let (first, top) = (plan.levels[0], *plan.levels.iter().max().unwrap_or(&1));
    for op in [Op::PluginAdd, Op::PluginDel] {
        let p = |level| spread(samples, level, Kind::Chain, op).map(|s| s.median);
        if let (Some(a), Some(b)) = (p(top), p(first)) {
            println!(
                "  (chain {} p50 at {top} / at {first}: {:.2}x)",
                short(op),
                a / b
            );
        }
    }
}

pub fn to_json(samples: &[Sample], plan: &Plan, verdicts: &[Verdict]) -> Value {
    let mut levels = Map::new();
    for &level in &plan.levels {
        let mut ops = Map::new();
        for op in Op::ALL {
            let mut per = Map::new();
            for kind in Kind::BOTH {
                if let Some(s) = spread(samples, level, kind, op) {
                    let list = of(samples, level, kind, op);
                    let shares: Vec<f64> = list.iter().map(|s| s.foreign_share).collect();
                    let attempts: Vec<u32> = list.iter().map(|s| s.attempts).collect();
                    per.insert(
                        kind.key().into(),
                        json!({
                            "median_secs": s.median, "min_secs": s.min, "max_secs": s.max,
                            "samples_secs": s.samples,
                            "by_plugin_median_secs": parts(samples, level, kind, op),
                            "foreign_cpu_share": shares,
                            "attempts": attempts,
                        }),
                    );
                }
            }
            if let Some((x, p)) = ratio(samples, level, op) {
                per.insert(
                    "ebridge/chain".into(),
                    json!({"of_medians": x, "within_rep": {"min": p.min, "max": p.max, "samples": p.samples}}),
                );
            }
            ops.insert(op.key().into(), Value::Object(per));
        }
        levels.insert(level.to_string(), Value::Object(ops));
    }
    json!({
        "plan": {
            "levels": plan.levels,
            "podman_reps": plan.reps,
            "plugin_calls_per_level_and_node": plan.plugin_calls,
            "what": "level N: the node runs N-1 containers (podman run -d ... -p PORT:80 IMAGE sleep 86400), one more is started and removed (podman rm -f -t 0), timed as a whole command; the network's plugins are then run directly for an N-th attachment (ADD, then DEL), timed per process from fork to exit",
        },
        "levels": levels,
        "targets": verdicts.iter().map(Verdict::to_json).collect::<Vec<_>>(),
    })
}
