//! A scenario's tables on stdout and its JSON under target/bench/.
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde_json::{json, Map, Value};

use super::{
    metric::{fmt_num, Metric},
    scenario::{Scenario, Setup},
    stats::{Extra, Results},
    topology::Topology,
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
    /// The commit ebridge was built from.
    pub source: String,
    /// Samples taken while other processes used more than
    /// `disturbed_share` of the CPU (after the retries).
    pub disturbed_samples: usize,
    pub samples: usize,
    pub disturbed_share: f64,
}

const LABEL_W: usize = 34;
const CELL_W: usize = 24;
const RATIO_W: usize = 30;

fn label(m: Metric) -> String {
    format!("{} [{}]", m.label(), m.table_unit())
}

fn spread_cell(r: &Results, m: Metric, s: Setup) -> String {
    match r.spread(m, s) {
        Some(sp) => format!(
            "{} [{} - {}]",
            fmt_num(m.to_table_unit(sp.median)),
            fmt_num(m.to_table_unit(sp.min)),
            fmt_num(m.to_table_unit(sp.max))
        ),
        None => "-".into(),
    }
}

fn ratio_cell(r: &Results, m: Metric, a: Setup, b: Setup) -> String {
    match (r.ratio(m, a, b), r.paired_ratios(m, a, b)) {
        (Some(x), Some(p)) => format!("{x:.2}x [{:.2}-{:.2}]", p.min, p.max),
        (Some(x), None) => format!("{x:.2}x"),
        _ => "-".into(),
    }
}

pub fn print_table(scenario: Scenario, info: &RunInfo, r: &Results, extras: &[Extra]) {
    println!(
        "\n{} benchmark ({}): {} reps x {} s per measurement, setups interleaved; median [min - max]",
        scenario.key(),
        scenario.title(),
        info.reps,
        info.secs
    );
    print!("{:<LABEL_W$}", "metric");
    for s in scenario.setups() {
        print!("{:<CELL_W$}", s.key());
    }
    println!();
    for m in scenario.metrics() {
        print!("{:<LABEL_W$}", label(m));
        for &s in scenario.setups() {
            print!("{:<CELL_W$}", spread_cell(r, m, s));
        }
        println!();
    }

    println!(
        "\nratios: of the medians [min - max of the ratios within each rep]; latency: lower is better"
    );
    print!("{:<LABEL_W$}", "metric");
    for (a, b) in scenario.ratio_pairs() {
        print!("{:<RATIO_W$} ", format!("{}/{}", a.key(), b.key()));
    }
    println!("target");
    let targets = scenario.targets();
    for m in scenario.metrics() {
        print!("{:<LABEL_W$}", m.label());
        for &(a, b) in scenario.ratio_pairs() {
            print!("{:<RATIO_W$} ", ratio_cell(r, m, a, b));
        }
        let verdicts: Vec<String> = targets
            .iter()
            .filter(|t| t.metric == m)
            .map(|t| match t.check(r) {
                Some(v) => format!("{}: {}", t.describe(), v.describe()),
                None => format!("{}: no data", t.describe()),
            })
            .collect();
        println!(
            "{}",
            if verdicts.is_empty() {
                "(none)".to_string()
            } else {
                verdicts.join("; ")
            }
        );
    }
    if scenario == Scenario::Cni {
        println!(
            "\nnote: the UDP packet rate is a one-way stream (64-byte datagrams, sender on CPU A, receiver on B); request/response and connections carry replies. The chain's bridged traffic passes iptables through br_netfilter when the node's bridge-nf-call-iptables is 1 (recorded per setup); the chain has no filter rules, so only a flow's first packet walks its nat rules."
        );
    }
    if scenario.base() == Scenario::Publish {
        println!(
            "\nnote: the UDP packet rate is a one-way stream: conntrack never sees a reply, so every packet stays ctstate NEW and walks Docker's DOCKER chain to its ACCEPT (Docker's worst case, position-dependent). Traffic that carries replies: UDP req/resp and TCP connections/s."
        );
    }
    if scenario == Scenario::Routing {
        println!(
            "\nnote: the UDP packet rate is a one-way stream: on the host-gw server node conntrack never sees a reply, so its packets stay ctstate NEW and are accepted by -d 10.244.0.0/16; request/response and connections carry replies. ebridge's nodes keep ip_forward=0 (the node's IP stack forwards nothing; ForwDatagrams above)."
        );
    }
    print_extras(extras);
    let met = targets
        .iter()
        .filter(|t| t.check(r).is_some_and(|v| v.met))
        .count();
    let what = if scenario == Scenario::Cni {
        "cni datapath"
    } else {
        scenario.key()
    };
    println!("\n{what} targets met: {met} of {}", targets.len());
    if info.disturbed_samples > 0 {
        println!(
            "note: {} of {} samples were measured while other processes used more than {:.0}% of the CPU (foreign_cpu_share in the JSON)",
            info.disturbed_samples,
            info.samples,
            info.disturbed_share * 100.0
        );
    }
}

fn print_extras(extras: &[Extra]) {
    if extras.is_empty() {
        return;
    }
    println!("\ncosts: median [min - max] over the samples");
    for e in extras {
        if let Some(sp) = e.spread() {
            println!(
                "{:<44}{} {} [{} - {}] ({} samples)",
                e.label,
                fmt_num(sp.median),
                e.unit,
                fmt_num(sp.min),
                fmt_num(sp.max),
                sp.samples.len()
            );
        }
    }
}

fn spread_json(sp: &super::stats::Spread) -> Value {
    json!({"median": sp.median, "min": sp.min, "max": sp.max, "samples": sp.samples})
}

pub struct Report<'a> {
    pub scenario: Scenario,
    pub info: &'a RunInfo,
    pub results: &'a Results,
    pub runs: Vec<Value>,
    pub observations: Value,
    pub extras: &'a [Extra],
    /// What building each setup measured or set (setup key -> notes).
    pub notes: Map<String, Value>,
    /// The nat scenario's churn test (churn_report.rs).
    pub churn: Option<Value>,
    /// The cni scenario's podman and plugin timings, with their targets
    /// (cni/lifecycle_report.rs).
    pub lifecycle: Option<Value>,
    /// Samples that failed their evidence or loss checks.
    pub invalid: &'a [String],
}

pub fn setup_notes(topologies: &[Topology]) -> Map<String, Value> {
    topologies
        .iter()
        .map(|t| (t.setup.key().to_string(), Value::Object(t.notes.clone())))
        .collect()
}

pub fn to_json(rep: Report) -> Value {
    let Report {
        scenario,
        info,
        results: r,
        runs,
        observations,
        extras,
        notes,
        churn,
        lifecycle,
        invalid,
    } = rep;
    let mut metrics = Map::new();
    for m in scenario.metrics() {
        let mut per_setup = Map::new();
        for &s in scenario.setups() {
            if let Some(sp) = r.spread(m, s) {
                per_setup.insert(s.key().into(), spread_json(&sp));
            }
        }
        let mut ratios = Map::new();
        for &(a, b) in scenario.ratio_pairs() {
            if let Some(x) = r.ratio(m, a, b) {
                let paired = r.paired_ratios(m, a, b).map(|p| spread_json(&p));
                ratios.insert(
                    format!("{}/{}", a.key(), b.key()),
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
    let targets: Vec<Value> = scenario
        .targets()
        .iter()
        .map(|t| {
            let (op, threshold) = t.op();
            let checked = t.check(r);
            json!({
                "metric": t.metric.key(),
                "ratio_of": t.ratio_of(),
                "op": op,
                "threshold": threshold,
                "ratio": checked.as_ref().map(|v| v.ratio),
                "met": checked.as_ref().is_some_and(|v| v.met),
                "same_verdict_in_every_rep": checked.as_ref().map(|v| v.every_rep),
            })
        })
        .collect();
    let mut targets = targets;
    for part in [&churn, &lifecycle].into_iter().flatten() {
        targets.extend(part["targets"].as_array().into_iter().flatten().cloned());
    }
    let all_met = targets.iter().all(|t| t["met"] == json!(true));
    let extras: Map<String, Value> = extras
        .iter()
        .filter_map(|e| {
            let sp = e.spread()?;
            Some((
                e.key.clone(),
                json!({
                    "label": e.label,
                    "unit": e.unit,
                    "how": e.how,
                    "median": sp.median,
                    "min": sp.min,
                    "max": sp.max,
                    "samples": sp.samples,
                }),
            ))
        })
        .collect();
    let measurements: Vec<Value> = scenario
        .measurements()
        .iter()
        .map(|m| {
            let setups: Vec<&str> = scenario
                .setups()
                .iter()
                .filter(|&&s| scenario.takes(s, *m))
                .map(|s| s.key())
                .collect();
            json!({"key": m.key(), "description": m.describe(), "setups": setups})
        })
        .collect();
    json!({
        "benchmark": scenario.key(),
        "title": scenario.title(),
        "started": info.started,
        "finished": info.finished,
        "host": {"kernel": info.kernel, "cpus_used": info.cpus, "iperf3": info.iperf3},
        "source": info.source,
        "config": {
            "reps": info.reps,
            "secs_per_measurement": info.secs,
            "order": "for each rep, for each measurement, every setup that takes it in turn; the setup order rotates by one each rep",
            "disturbed_share_threshold": info.disturbed_share,
            "disturbed_samples": info.disturbed_samples,
        },
        "setups": scenario.setups().iter().map(|s| json!({
            "key": s.key(),
            "description": s.describe(scenario),
            "built": notes.get(s.key()),
        })).collect::<Vec<_>>(),
        "measurements": measurements,
        "metrics": metrics,
        "targets": targets,
        "all_targets_met": all_met,
        "costs": extras,
        "observations": observations,
        "invalid_samples": invalid,
        "churn": churn,
        "lifecycle": lifecycle,
        "runs": runs,
    })
}

/// Writes target/bench/<scenario>-<stamp>.json and
/// target/bench/latest-<scenario>.json, and records the run in
/// target/bench/latest.json, the index of every scenario's latest run.
pub fn write_json(scenario: Scenario, report: &Value, stamp: &str) -> Result<PathBuf> {
    write_json_as(scenario.key(), report, stamp)
}

/// The same for a benchmark named `key` (the monitor scenario, which has
/// no setups to interleave).
pub fn write_json_as(key: &str, report: &Value, stamp: &str) -> Result<PathBuf> {
    let dir = workspace_root().join("target/bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let text = serde_json::to_string_pretty(report)?;
    let name = format!("{key}-{stamp}.json");
    let path = dir.join(&name);
    std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    let latest = dir.join(format!("latest-{key}.json"));
    std::fs::write(&latest, &text).with_context(|| format!("cannot write {}", latest.display()))?;

    let index_path = dir.join("latest.json");
    // The index from before the scenarios (a whole c2c report) is replaced.
    let mut index = std::fs::read_to_string(&index_path)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .filter(|v| v.get("scenarios").is_some())
        .unwrap_or_else(|| json!({"scenarios": {}}));
    index["about"] = json!("latest run of each scenario of cargo xtask bench; the full reports are the files named here");
    index["scenarios"][key] = json!({
        "file": name,
        "finished": report["finished"],
        "all_targets_met": report["all_targets_met"],
        "invalid_samples": report["invalid_samples"].as_array().map_or(0, Vec::len),
        "targets": report["targets"],
    });
    std::fs::write(&index_path, serde_json::to_string_pretty(&index)?)
        .with_context(|| format!("cannot write {}", index_path.display()))?;
    Ok(path)
}
