//! The table on stdout and the JSON under target/bench/.
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde_json::{json, Map, Value};

use super::{
    measure::Measurement,
    metric::{fmt_num, Metric},
    stats::{Results, TARGETS},
    topology::Setup,
};
use crate::util::workspace_root;

pub struct RunInfo {
    pub started: String,
    pub finished: String,
    pub reps: u32,
    pub secs: u32,
    pub cpus: [usize; 2],
    pub kernel: String,
    pub iperf3: String,
    /// Samples taken while other processes used more than
    /// `disturbed_share` of the CPU (after the retries).
    pub disturbed_samples: usize,
    pub samples: usize,
    pub disturbed_share: f64,
}

const LABEL_W: usize = 34;
const CELL_W: usize = 24;
const RATIO_W: usize = 22;

fn label(m: Metric) -> String {
    format!("{} [{}]", m.label(), m.table_unit())
}

pub fn print_table(info: &RunInfo, r: &Results) {
    println!(
        "\nc2c benchmark: {} reps x {} s per measurement, setups interleaved; median [min - max]",
        info.reps, info.secs
    );
    print!("{:<LABEL_W$}", "metric");
    for s in Setup::ALL {
        print!("{:<CELL_W$}", s.key());
    }
    println!();
    for m in Metric::ALL {
        print!("{:<LABEL_W$}", label(m));
        for s in Setup::ALL {
            let cell = match r.spread(m, s) {
                Some(sp) => format!(
                    "{} [{} - {}]",
                    fmt_num(m.to_table_unit(sp.median)),
                    fmt_num(m.to_table_unit(sp.min)),
                    fmt_num(m.to_table_unit(sp.max))
                ),
                None => "-".into(),
            };
            print!("{cell:<CELL_W$}");
        }
        println!();
    }

    println!(
        "\nebridge / other: ratio of the medians [min - max of the ratios within each rep]; latency: lower is better"
    );
    let others = [Setup::DockerBridge, Setup::BridgeNfOff, Setup::BareVeth];
    print!("{:<LABEL_W$}", "metric");
    for s in others {
        print!("{:<RATIO_W$}", format!("vs {}", s.key()));
    }
    println!("target");
    for m in Metric::ALL {
        print!("{:<LABEL_W$}", m.label());
        for s in others {
            let cell = match (
                r.ratio(m, Setup::Ebridge, s),
                r.paired_ratios(m, Setup::Ebridge, s),
            ) {
                (Some(x), Some(p)) => format!("{x:.2}x [{:.2}-{:.2}]", p.min, p.max),
                (Some(x), None) => format!("{x:.2}x"),
                _ => "-".into(),
            };
            print!("{cell:<RATIO_W$}");
        }
        let targets: Vec<String> = TARGETS
            .iter()
            .filter(|t| t.metric == m)
            .map(|t| match t.check(r) {
                Some(v) => format!("{}: {}", t.describe(), v.describe()),
                None => format!("{}: no data", t.describe()),
            })
            .collect();
        println!(
            "{}",
            if targets.is_empty() {
                "(none)".to_string()
            } else {
                targets.join("; ")
            }
        );
    }
    let met = TARGETS
        .iter()
        .filter(|t| t.check(r).is_some_and(|v| v.met))
        .count();
    println!("\ntargets met: {met} of {}", TARGETS.len());
    if info.disturbed_samples > 0 {
        println!(
            "note: {} of {} samples were measured while other processes used more than {:.0}% of the CPU (foreign_cpu_share in the JSON)",
            info.disturbed_samples,
            info.samples,
            info.disturbed_share * 100.0
        );
    }
}

pub fn to_json(info: &RunInfo, r: &Results, runs: Vec<Value>, observations: Value) -> Value {
    let mut metrics = Map::new();
    for m in Metric::ALL {
        let mut per_setup = Map::new();
        for s in Setup::ALL {
            if let Some(sp) = r.spread(m, s) {
                per_setup.insert(
                    s.key().into(),
                    json!({"median": sp.median, "min": sp.min, "max": sp.max, "samples": sp.samples}),
                );
            }
        }
        let mut ratios = Map::new();
        for s in [Setup::DockerBridge, Setup::BridgeNfOff, Setup::BareVeth] {
            if let Some(x) = r.ratio(m, Setup::Ebridge, s) {
                let paired = r.paired_ratios(m, Setup::Ebridge, s).map(|p| {
                    json!({"median": p.median, "min": p.min, "max": p.max, "samples": p.samples})
                });
                ratios.insert(
                    format!("ebridge/{}", s.key()),
                    json!({"of_medians": x, "within_rep": paired}),
                );
            }
        }
        metrics.insert(
            m.key().into(),
            json!({
                "label": m.label(),
                "unit": m.unit(),
                "better": if m.higher_is_better() { "higher" } else { "lower" },
                "setups": per_setup,
                "ratios": ratios,
            }),
        );
    }
    let targets: Vec<Value> = TARGETS
        .iter()
        .map(|t| {
            let (op, threshold) = t.op();
            let checked = t.check(r);
            json!({
                "metric": t.metric.key(),
                "ratio_of": format!("ebridge/{}", t.against.key()),
                "op": op,
                "threshold": threshold,
                "ratio": checked.as_ref().map(|v| v.ratio),
                "met": checked.as_ref().is_some_and(|v| v.met),
                "same_verdict_in_every_rep": checked.as_ref().map(|v| v.every_rep),
            })
        })
        .collect();
    let all_met = targets.iter().all(|t| t["met"] == json!(true));
    json!({
        "benchmark": "c2c",
        "started": info.started,
        "finished": info.finished,
        "host": {"kernel": info.kernel, "cpus_used": info.cpus, "iperf3": info.iperf3},
        "config": {
            "reps": info.reps,
            "secs_per_measurement": info.secs,
            "order": "for each rep, for each measurement, every setup in turn; the setup order rotates by one each rep",
            "client": "172.17.0.2 (first container)",
            "server": "172.17.0.3 (second container), servers bind that address",
            "disturbed_share_threshold": info.disturbed_share,
            "disturbed_samples": info.disturbed_samples,
        },
        "setups": Setup::ALL.iter().map(|s| json!({"key": s.key(), "description": s.describe()})).collect::<Vec<_>>(),
        "measurements": Measurement::ALL.iter().map(|m| json!({"key": m.key(), "description": m.describe()})).collect::<Vec<_>>(),
        "metrics": metrics,
        "targets": targets,
        "all_targets_met": all_met,
        "observations": observations,
        "runs": runs,
    })
}

/// Writes target/bench/c2c-<stamp>.json and target/bench/latest.json.
pub fn write_json(report: &Value, stamp: &str) -> Result<PathBuf> {
    let dir = workspace_root().join("target/bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let text = serde_json::to_string_pretty(report)?;
    let path = dir.join(format!("c2c-{stamp}.json"));
    std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    let latest = dir.join("latest.json");
    std::fs::write(&latest, &text).with_context(|| format!("cannot write {}", latest.display()))?;
    Ok(path)
}
