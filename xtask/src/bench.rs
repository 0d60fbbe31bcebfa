//! `cargo xtask bench`: five scenarios (scenario.rs), three comparing
//! ebridge with Docker's iptables datapath and a bare veth pair, one
//! comparing podman on ebridge's CNI plugin with podman on the reference
//! CNI chain (cni.rs), one comparing ebridge's native routing across two
//! nodes with a host-gw node's and the kernel's plain routing
//! (routing.rs); built in network namespaces, measured in one run
//! with the setups interleaved, reported as medians, spreads and ratios
//! against the targets, with a table on stdout and JSON in target/bench/.
//! A sixth (monitor.rs) compares ebridge with itself: its monitor hooks
//! compiled in and out, a monitor attached during a drop storm, and
//! metrics scrapes with a million NAT entries. c2c6, nat6 and publish6
//! (ipv6.rs) repeat c2c, nat and publish over IPv6.
mod agent;
mod aim;
mod bare;
mod churn;
mod churn_report;
mod cni;
mod cpu;
mod ebridge_node;
mod evidence;
mod httpload;
mod iptables;
mod ipv6;
mod linux_bridge;
mod mapmem;
mod measure;
mod metric;
mod monitor;
mod natmap;
mod observe;
mod proc;
mod pubcost;
mod reap;
mod report;
mod rounds;
mod routing;
mod scenario;
mod scratch;
mod signal;
mod stats;
mod targets;
mod topology;
mod uplink;

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::{Args, ValueEnum};

use measure::Ctx;
use rounds::DISTURBED_SHARE;
use scenario::{Scenario, Setup};
use stats::Extra;
use topology::Topology;

use crate::util::{cargo, require_root, sh, workspace_root};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Which {
    /// Container to container.
    C2c,
    /// Container to a host outside the node (masquerade).
    Nat,
    /// Outside host to a published container port.
    Publish,
    /// podman on ebridge's CNI plugin vs on the reference CNI chain.
    Cni,
    /// Pod to pod across two nodes: native routing vs host-gw and plain routing.
    Routing,
    /// ebridge with itself: monitor hooks compiled in vs out, a monitor during a drop storm, metrics scrapes with 1M NAT entries.
    Monitor,
    /// c2c over IPv6, against Docker's IPv6 (ip6tables).
    C2c6,
    /// nat over IPv6 (masquerade), against ip6tables MASQUERADE.
    Nat6,
    /// publish over IPv6, against ip6tables DNAT.
    Publish6,
    /// c2c6, nat6 and publish6.
    Ipv6,
    /// Every scenario above, one after the other.
    All,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Which scenario to run.
    #[arg(long, value_enum, default_value_t = Which::All)]
    scenario: Which,
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
    // The tests' fixtures (cni scenario) run `ebridge` from $EBRIDGE_BIN;
    // set before any thread exists.
    std::env::set_var("EBRIDGE_BIN", crate::util::ebridge_release_bin());
    signal::install();
    let reps = args.reps.unwrap_or(if args.quick { 3 } else { 5 });
    let secs = args.secs.unwrap_or(if args.quick { 1 } else { 3 });
    let scenarios: Vec<Scenario> = match args.scenario {
        Which::C2c => vec![Scenario::C2c],
        Which::Nat => vec![Scenario::Nat],
        Which::Publish => vec![Scenario::Publish],
        Which::Cni => vec![Scenario::Cni],
        Which::Routing => vec![Scenario::Routing],
        Which::Monitor => Vec::new(),
        Which::C2c6 => vec![Scenario::C2c6],
        Which::Nat6 => vec![Scenario::Nat6],
        Which::Publish6 => vec![Scenario::Publish6],
        Which::Ipv6 => Scenario::IPV6.to_vec(),
        Which::All => Scenario::ALL.to_vec(),
    };
    let with_monitor = matches!(args.scenario, Which::Monitor | Which::All);
    for tool in [
        "nsenter",
        "iptables",
        "iptables-save",
        "iptables-restore",
        "ip6tables",
        "ip6tables-save",
        "ip6tables-restore",
        "conntrack",
        "iperf3",
        "nginx",
        "taskset",
        "bpftool",
        "ping",
        "sysctl",
    ] {
        sh("sh", &["-c", &format!("command -v {tool}")])
            .with_context(|| format!("{tool} is not installed; run cargo xtask setup"))?;
    }
    if scenarios.contains(&Scenario::Cni) {
        cni::check_tools()?;
    }
    // The load generator is built optimised: its own cost per packet must
    // stay small next to the path's.
    cargo(&["build", "--release", "-p", "xtask", "--bin", "bench-load"])?;
    let ctx = Ctx {
        load_bin: workspace_root().join("target/release/bench-load"),
        secs,
        cpus: cpu::two_cpus()?,
        source: source(),
    };
    reap::reap_stale_runs();
    cni::record::reap_dead();
    if !cpu::wait_for_quiet(DISTURBED_SHARE, Duration::ZERO)? {
        eprintln!(
            "bench: warning: other processes are using the CPU; disturbed samples will be measured again, which takes longer"
        );
    }
    let run_id = format!("{}{}", reap::RUN_PREFIX, std::process::id());
    let measuring: usize = scenarios
        .iter()
        .map(|&s| {
            let churn = if s == Scenario::Nat {
                (2 * churn::RUNS as usize + 1) * 2 * (churn::RUN_SECS as usize + 1)
            } else {
                0
            };
            let lifecycle = if s == Scenario::Cni {
                cni::lifecycle_secs(reps, args.quick)
            } else {
                0
            };
            (reps as usize + 1) * rounds::per_round(s) * (secs as usize + 1) + churn + lifecycle
        })
        .sum::<usize>()
        + if with_monitor {
            monitor::nominal_secs(reps, secs, args.quick)
        } else {
            0
        };
    let mut keys: Vec<&str> = scenarios.iter().map(|s| s.key()).collect();
    if with_monitor {
        keys.push(monitor::KEY);
    }
    println!(
        "bench {run_id}: {} with {reps} reps of {secs} s (+1 warm-up round), about {} min of measuring",
        keys.join(", "),
        measuring.div_ceil(60)
    );

    let started = Instant::now();
    let mut failed = Vec::new();
    for scenario in scenarios {
        if let Err(e) = run_scenario(scenario, &ctx, reps, &run_id, args.quick) {
            // Ctrl-C stops everything; another failure only its scenario.
            if signal::interrupted() {
                return Err(
                    e.context("interrupted; every namespace and pin of this run was removed")
                );
            }
            eprintln!("bench: {} failed: {e:#}", scenario.key());
            failed.push(scenario.key());
        }
    }
    if with_monitor {
        if let Err(e) = monitor::run(&ctx, reps, &run_id, args.quick) {
            if signal::interrupted() {
                return Err(
                    e.context("interrupted; every namespace and pin of this run was removed")
                );
            }
            eprintln!("bench: {} failed: {e:#}", monitor::KEY);
            failed.push(monitor::KEY);
        }
    }
    println!(
        "\nbench {run_id} done in {:.1} min",
        started.elapsed().as_secs_f64() / 60.0
    );
    if !failed.is_empty() {
        bail!("scenarios failed: {}", failed.join(", "));
    }
    Ok(())
}

/// What measuring a scenario gave, every namespace it used already gone.
pub struct Measured {
    results: stats::Results,
    runs: Vec<serde_json::Value>,
    invalid: Vec<String>,
    observations: serde_json::Value,
    notes: serde_json::Map<String, serde_json::Value>,
    extras: Vec<Extra>,
    churn: Option<Vec<churn::Run>>,
    /// The cni scenario's podman and plugin timings (cni/lifecycle_report.rs).
    lifecycle: Option<cni::Lifecycle>,
}

fn run_scenario(scenario: Scenario, ctx: &Ctx, reps: u32, run_id: &str, quick: bool) -> Result<()> {
    let info_started = utc_stamp("%Y-%m-%dT%H:%M:%SZ")?;
    let file_stamp = utc_stamp("%Y%m%dT%H%M%SZ")?;
    println!(
        "\n== {} ({}): {} measurements per round",
        scenario.key(),
        scenario.title(),
        rounds::per_round(scenario)
    );
    let started = Instant::now();
    let m = if scenario == Scenario::Cni {
        cni::measure(ctx, reps, run_id, quick)?
    } else {
        measure_built(scenario, ctx, reps, run_id)?
    };
    println!(
        "measured in {:.0} s; removed every namespace of {} {run_id}",
        started.elapsed().as_secs_f64(),
        scenario.key()
    );
    let Measured {
        results,
        runs,
        mut invalid,
        observations,
        notes,
        extras,
        churn,
        lifecycle,
    } = m;
    if let Some(c) = &churn {
        invalid.extend(c.iter().flat_map(|r| {
            r.problems
                .iter()
                .map(move |p| format!("churn run {} {}: {p}", r.run, r.setup.key()))
        }));
    }

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
        secs: ctx.secs,
        cpus: ctx.cpus,
        kernel: sh("uname", &["-r"])?.trim().to_string(),
        source: ctx.source.clone(),
        iperf3: sh("iperf3", &["--version"])
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
    };
    if let Some(l) = &lifecycle {
        l.print();
    }
    report::print_table(scenario, &info, &results, &extras);
    if let Some(c) = &churn {
        churn_report::print(c);
    }
    if let Some(l) = &lifecycle {
        l.print_total(
            scenario
                .targets()
                .iter()
                .filter(|t| t.check(&results).is_some_and(|v| v.met))
                .count(),
        );
    }
    let json = report::to_json(report::Report {
        scenario,
        info: &info,
        results: &results,
        runs,
        observations,
        extras: &extras,
        notes,
        churn: churn.as_deref().map(churn_report::to_json),
        lifecycle: lifecycle.as_ref().map(cni::Lifecycle::to_json),
        invalid: &invalid,
    });
    let path = report::write_json(scenario, &json, &file_stamp)?;
    println!(
        "\nwrote {}, target/bench/latest-{}.json and the index target/bench/latest.json",
        path.display(),
        scenario.key()
    );
    if !invalid.is_empty() {
        for p in &invalid {
            eprintln!("bench: invalid sample: {p}");
        }
        bail!(
            "{} samples failed their evidence or loss checks (kept out of the figures; listed in the JSON as invalid_samples)",
            invalid.len()
        );
    }
    Ok(())
}

/// Builds the scenario's setups in namespaces of the bench's own, measures
/// them and removes them.
fn measure_built(scenario: Scenario, ctx: &Ctx, reps: u32, run_id: &str) -> Result<Measured> {
    let mut topologies = Vec::new();
    for &setup in scenario.setups() {
        signal::check()?;
        println!("building {}: {}", setup.key(), setup.describe(scenario));
        topologies.push(Topology::build(scenario, setup, run_id)?);
    }
    let mut extras = one_off_costs(&topologies);
    if scenario == Scenario::Publish {
        println!("publishing 1,000 ports, {reps} times each way");
        extras.extend(pubcost::measure(&mut topologies, reps)?);
    }
    // First, on the tables as building left them, like the node of issue
    // 7; the rounds then find what the churn left.
    let churn = if scenario == Scenario::Nat {
        println!(
            "connection churn: {} runs of {} s per setup",
            churn::RUNS,
            churn::RUN_SECS
        );
        Some(churn::measure(&topologies, ctx)?)
    } else {
        None
    };
    let (results, runs, invalid) = rounds::measure_all(scenario, &topologies, ctx, reps)?;
    let observations = observe::observe(&topologies);
    let notes = report::setup_notes(&topologies);
    // Remove the namespaces before printing, so a failure to report still
    // leaves a clean machine.
    drop(topologies);
    Ok(Measured {
        results,
        runs,
        invalid,
        observations,
        notes,
        extras,
        churn,
        lifecycle: None,
    })
}

/// Costs measured once while building: filling the NAT table with a
/// million flows, publishing 1,000 ports with one `endpoint add -p`.
fn one_off_costs(topologies: &[Topology]) -> Vec<Extra> {
    let mut out = Vec::new();
    for t in topologies {
        if let Some(fill) = t.notes.get("fill") {
            let mut e = Extra::new(
                "nat_fill_1m_flows",
                "fill nat map: 1M flows (2M entries)",
                "s",
                "one BPF_MAP_UPDATE_ELEM per entry from the xtask (aya) into the pinned map of ebridge-1m-flows, once",
            );
            e.samples.extend(fill["secs"].as_f64());
            out.push(e);
        }
        if t.setup == Setup::EbridgeThousandPorts {
            if let Some(secs) = t
                .notes
                .get("bulk_endpoint_add_secs")
                .and_then(|v| v.as_f64())
            {
                let mut e = Extra::new(
                    "ebridge_1k_ports_setup_endpoint_add",
                    "ebridge-1k-ports: endpoint add -p range",
                    "s",
                    "building ebridge-1k-ports: one `ebridge endpoint add -p 20000-20999:20000-20999/udp` on a node with one published port, once",
                );
                e.samples.push(secs);
                out.push(e);
            }
        }
    }
    out
}

/// The commit the binaries were just built from, and whether the working
/// tree (shared with others) had changes to the product then.
fn source() -> String {
    let root = crate::util::workspace_root().display().to_string();
    let head = sh("git", &["-C", &root, "rev-parse", "--short", "HEAD"])
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let dirty = sh(
        "git",
        &[
            "-C",
            &root,
            "status",
            "--porcelain",
            "--",
            "userspace",
            "ebpf",
            "common",
        ],
    )
    .is_ok_and(|s| !s.trim().is_empty());
    if dirty {
        format!("{head} with uncommitted changes in userspace/ebpf/common")
    } else {
        head
    }
}

fn utc_stamp(format: &str) -> Result<String> {
    Ok(sh("date", &["-u", &format!("+{format}")])?
        .trim()
        .to_string())
}
