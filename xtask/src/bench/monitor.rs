//! The monitor scenario (issue 10): what `ebridge monitor`'s hooks cost
//! the datapath, and what a scrape of the agent's metrics costs with a
//! million NAT entries. Unlike the other scenarios it compares one product
//! with itself, so it has its own schedule (paired samples) and report:
//!
//! - builds.rs: the release build (hooks in) and the same source built with
//!   EBRIDGE_NO_MONITOR=1 (hooks out), each with its own node (node.rs);
//! - proof.rs: which build each node runs, shown at the start and the end
//!   (probe.rs reads the program and the monitor's maps);
//! - paired.rs: the 64-byte UDP rate a → b and a → outside, hooks against
//!   no hooks, and a → b during a drop storm from a third container with
//!   `ebridge monitor --json` attached against not (storm.rs);
//! - scrape.rs: GET /metrics timed with a million NAT entries, on a node
//!   whose agent runs with its defaults (scrape_phase.rs: a phase of
//!   scrapes, checked against the datapath, split into between GC passes
//!   and during them);
//! - summary.rs, scrape_summary.rs: the tables, the targets and the JSON.
mod builds;
mod node;
mod paired;
mod probe;
mod proof;
mod scrape;
mod scrape_phase;
mod scrape_summary;
mod storm;
mod summary;

use std::time::Instant;

use anyhow::{bail, Result};
use serde_json::{json, Map, Value};

use super::{measure::Ctx, report, rounds::DISTURBED_SHARE, signal};
use crate::util::sh;
use builds::Kind;
use node::Node;
use paired::Part;
use scrape_summary::ScrapeStats;
use summary::PartStats;

pub const KEY: &str = "monitor";
const TITLE: &str = "cost of ebridge monitor's hooks (no monitor, a monitor during a drop storm) and of a metrics scrape with 1M NAT entries";

/// Seconds it takes undisturbed, roughly (without the first build of the
/// binary without hooks, which takes minutes once).
pub fn nominal_secs(reps: u32, secs: u32, quick: bool) -> usize {
    let proofs = 4 * 5;
    (paired::nominal_secs(reps, secs) + scrape::nominal_secs(secs, quick)) as usize + proofs
}

pub fn run(ctx: &Ctx, reps: u32, run_id: &str, quick: bool) -> Result<()> {
    let started_at = super::utc_stamp("%Y-%m-%dT%H:%M:%SZ")?;
    let file_stamp = super::utc_stamp("%Y%m%dT%H%M%SZ")?;
    println!("\n== {KEY} ({TITLE})");
    let building = Instant::now();
    let builds = [builds::with_hooks()?, builds::without_hooks()?];
    let build_secs = building.elapsed().as_secs_f64();
    let started = Instant::now();

    let (measured, proofs, nodes_json) = {
        let mut nodes = Vec::new();
        for (b, code) in builds.iter().zip(["mh", "mn"]) {
            signal::check()?;
            println!(
                "building node {run_id}{code}: {} ({}), containers a, b and s, agent running",
                b.kind.key(),
                b.bin.display()
            );
            nodes.push(Node::build(run_id, code, b, &[], true, &[])?);
        }
        let mut proofs = Vec::new();
        for (n, b) in nodes.iter().zip(&builds) {
            let _others = node::stop_others(&nodes, if b.kind == Kind::Hooks { 0 } else { 1 });
            let p = proof::prove(n, b.kind, ctx)?;
            println!("proof at the start, {}", p.describe());
            proofs.push(("start", p));
        }
        let identities: Vec<_> = proofs.iter().map(|(_, p)| p.identity.clone()).collect();
        println!(
            "measuring: {} reps of {} s, pairs a/b back to back, storm {} frames/s",
            reps,
            ctx.secs,
            paired::STORM_PPS
        );
        let measured = paired::measure(&nodes, &identities, ctx, reps)?;
        for (i, (n, b)) in nodes.iter().zip(&builds).enumerate() {
            let _others = node::stop_others(&nodes, i);
            let p = proof::prove(n, b.kind, ctx)?;
            println!("proof at the end, {}", p.describe());
            proofs.push(("end", p));
        }
        let nodes_json: Vec<Value> = nodes
            .iter()
            .zip(&builds)
            .map(|(n, b)| {
                json!({
                    "build": b.to_json(),
                    "bridge": n.bridge,
                    "node": n.node_ns,
                    "up": n.up,
                    "config": n.config,
                    "agent_cpu_secs_total": n.agent_cpu_secs(),
                    "agent_log": n.agent_log(),
                })
            })
            .collect();
        (measured, proofs, nodes_json)
    };
    println!("removed the hooks nodes; scrape time with 1M NAT entries");
    let scraped = scrape::measure(run_id, &builds[0], ctx, quick)?;

    let mut invalid = measured.invalid;
    let mut taken = measured.taken;
    for (when, p) in &proofs {
        if p.problems.is_empty() {
            continue;
        }
        let node = if p.kind == Kind::Hooks { 0 } else { 1 };
        let mut dropped = 0;
        for t in taken.iter_mut() {
            if t.part.sides()[t.side].node == node && t.pps.take().is_some() {
                dropped += 1;
            }
        }
        invalid.push(format!(
            "proof at the {when}, {}: {}; its {dropped} samples cannot show which build they measured",
            p.kind.key(),
            p.problems.join("; ")
        ));
    }
    invalid.extend(scraped.invalid.iter().cloned());

    let parts: Vec<PartStats> = Part::ALL
        .iter()
        .map(|&p| PartStats::of(&taken, p))
        .collect();
    let storm_figures = summary::storm_figures(&taken);
    let scrape_stats = ScrapeStats::of(&scraped.phases);
    println!(
        "\n{KEY} benchmark: {reps} reps x {} s per UDP rate sample; measured in {:.0} s (after {build_secs:.0} s making sure of the build without hooks)",
        ctx.secs,
        started.elapsed().as_secs_f64()
    );
    summary::print(&parts, &storm_figures, &scrape_stats);
    let targets = summary::targets_json(&parts, &scrape_stats);
    let met = targets.iter().filter(|t| t["met"] == json!(true)).count();
    println!("\n{KEY} targets met: {met} of {}", targets.len());
    let disturbed = measured
        .runs
        .iter()
        .filter(|r| r["foreign_cpu_share"].as_f64().unwrap_or(0.0) > DISTURBED_SHARE)
        .count();
    if disturbed > 0 {
        println!(
            "note: {disturbed} of {} UDP rate samples were measured while other processes used more than {:.0}% of the CPU (foreign_cpu_share in the JSON)",
            measured.runs.len(),
            DISTURBED_SHARE * 100.0
        );
    }
    let disturbed_scrapes: Vec<&str> = scraped
        .phases
        .iter()
        .filter(|p| p.foreign_share > DISTURBED_SHARE)
        .map(|p| p.key)
        .collect();
    if !disturbed_scrapes.is_empty() {
        println!(
            "note: scrape phases measured while other processes used more than {:.0}% of the CPU: {}",
            DISTURBED_SHARE * 100.0,
            disturbed_scrapes.join(", ")
        );
    }

    let storm_json: Map<String, Value> = storm_figures
        .iter()
        .map(|(label, s)| {
            (
                label.to_string(),
                s.as_ref().map_or(Value::Null, |s| {
                    json!({"median": s.median, "min": s.min, "max": s.max, "samples": s.samples})
                }),
            )
        })
        .collect();
    let report = json!({
        "benchmark": KEY,
        "title": TITLE,
        "started": started_at,
        "finished": super::utc_stamp("%Y-%m-%dT%H:%M:%SZ")?,
        "host": {"kernel": sh("uname", &["-r"])?.trim(), "cpus_used": ctx.cpus},
        "source": ctx.source,
        "config": {
            "reps": reps,
            "secs_per_measurement": ctx.secs,
            "order": "per rep: c2c, nat and storm two pairs each (ABBA, then BAAB the next rep); a warm-up pair of each first, checked, not counted",
            "storm_pps": paired::STORM_PPS,
            "disturbed_share_threshold": DISTURBED_SHARE,
            "disturbed_samples": disturbed,
            "disturbed_scrape_phases": disturbed_scrapes,
            "nat_entries_filled": scrape::FILL_ENTRIES,
            "scrape_every_ms": scrape_phase::EVERY_MS,
        },
        "builds": builds.iter().map(|b| b.to_json()).collect::<Vec<_>>(),
        "nodes": nodes_json,
        "proofs": proofs.iter().map(|(when, p)| json!({"when": when, "proof": p.to_json()})).collect::<Vec<_>>(),
        "udp_rate": summary::parts_json(&parts),
        "storm": storm_json,
        "scrape": {
            "summary": scrape_stats.to_json(),
            "node": {"up": scraped.up, "config": scraped.config, "agent_args": scraped.agent_args, "fill": scraped.fill.to_json()},
            "traffic_before": scraped.traffic,
            "phases": scraped.phases.iter().map(|p| p.to_json()).collect::<Vec<_>>(),
            "agent_log": scraped.agent_log,
        },
        "targets": targets,
        "all_targets_met": met == targets.len(),
        "invalid_samples": invalid,
        "runs": measured.runs,
    });
    let path = report::write_json_as(KEY, &report, &file_stamp)?;
    println!(
        "\nwrote {}, target/bench/latest-{KEY}.json and the index target/bench/latest.json",
        path.display()
    );
    if !invalid.is_empty() {
        for p in &invalid {
            eprintln!("bench: invalid sample: {p}");
        }
        bail!(
            "{} samples failed their checks (kept out of the figures; listed in the JSON as invalid_samples)",
            invalid.len()
        );
    }
    Ok(())
}
