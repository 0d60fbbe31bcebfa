//! `cargo xtask bench`: container-to-container traffic over the same
//! two-container topology built four ways (bare veth, Docker's bridge with
//! br_netfilter and its rules, the bridge without br_netfilter, ebridge),
//! measured in one run with the setups interleaved, reported as medians,
//! spreads and ebridge's ratios against the issue's targets.
mod cpu;
mod ebridge_node;
mod linux_bridge;
mod measure;
mod metric;
mod observe;
mod proc;
mod report;
mod rounds;
mod signal;
mod stats;
mod topology;

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::Args;

use measure::{Ctx, Measurement};
use rounds::DISTURBED_SHARE;
use topology::{Setup, Topology, RUN_PREFIX};

use crate::util::{cargo, require_root, sh, workspace_root};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Repetitions of every measurement on every setup [default: 5; 3 with --quick].
    #[arg(long, value_parser = clap::value_parser!(u32).range(3..=100))]
    reps: Option<u32>,
    /// Seconds per measurement [default: 3; 1 with --quick].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=60))]
    secs: Option<u32>,
    /// Smoke run: 3 reps of 1 s.
    #[arg(long)]
    quick: bool,
}

pub fn run(args: BenchArgs) -> Result<()> {
    require_root()?;
    signal::install();
    let reps = args.reps.unwrap_or(if args.quick { 3 } else { 5 });
    let secs = args.secs.unwrap_or(if args.quick { 1 } else { 3 });
    for tool in ["nsenter", "iptables", "iperf3", "ping", "sysctl"] {
        sh("sh", &["-c", &format!("command -v {tool}")])
            .with_context(|| format!("{tool} is not installed; run cargo xtask setup"))?;
    }
    // The load generator is built optimised: its own cost per packet must
    // stay small next to the path's.
    cargo(&["build", "--release", "-p", "xtask", "--bin", "bench-load"])?;
    let ctx = Ctx {
        load_bin: workspace_root().join("target/release/bench-load"),
        secs,
        cpus: cpu::two_cpus()?,
    };
    let info_started = utc_stamp("%Y-%m-%dT%H:%M:%SZ")?;
    let file_stamp = utc_stamp("%Y%m%dT%H%M%SZ")?;
    topology::reap_stale_runs();
    if !cpu::wait_for_quiet(DISTURBED_SHARE, Duration::ZERO)? {
        eprintln!(
            "bench: warning: other processes are using the CPU; disturbed samples will be measured again, which takes longer"
        );
    }

    let run_id = format!("{RUN_PREFIX}{}", std::process::id());
    let per_round = Setup::ALL.len() * Measurement::ALL.len();
    println!(
        "bench {run_id}: {reps} reps x {per_round} measurements of {secs} s (+1 warm-up round), about {} min",
        ((reps as usize + 1) * per_round * (secs as usize + 1)).div_ceil(60)
    );

    let mut topologies = Vec::new();
    for setup in Setup::ALL {
        signal::check()?;
        println!("building {}: {}", setup.key(), setup.describe());
        topologies.push(Topology::build(setup, &run_id)?);
    }

    let started = Instant::now();
    let (results, runs) = rounds::measure_all(&topologies, &ctx, reps)?;
    let observations = observe::observe(&topologies);
    // Remove the namespaces before printing, so a failure to report still
    // leaves a clean machine.
    drop(topologies);
    println!(
        "measured in {:.0} s; removed every namespace of {run_id}",
        started.elapsed().as_secs_f64()
    );

    let disturbed = runs
        .iter()
        .filter(|r| r["foreign_cpu_share"].as_f64().unwrap_or(0.0) > DISTURBED_SHARE)
        .count();
    let info = report::RunInfo {
        disturbed_samples: disturbed,
        samples: runs.len(),
        disturbed_share: DISTURBED_SHARE,
        started: info_started,
        finished: utc_stamp("%Y-%m-%dT%H:%M:%SZ")?,
        reps,
        secs,
        cpus: ctx.cpus,
        kernel: sh("uname", &["-r"])?.trim().to_string(),
        iperf3: sh("iperf3", &["--version"])
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
    };
    report::print_table(&info, &results);
    let json = report::to_json(&info, &results, runs, observations);
    let path = report::write_json(&json, &file_stamp)?;
    println!("\nwrote {} and target/bench/latest.json", path.display());
    Ok(())
}

fn utc_stamp(format: &str) -> Result<String> {
    Ok(sh("date", &["-u", &format!("+{format}")])?
        .trim()
        .to_string())
}
