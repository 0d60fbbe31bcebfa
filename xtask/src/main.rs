//! `cargo xtask setup | build | run | test | bench | lab`: the developer's
//! entry points. Thin: each step is a few commands in its own file.
mod bench;
mod lab;
mod setup;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building and testing need (idempotent).
    Setup,
    /// Build the eBPF object and the ebridge binary (release).
    Build,
    /// Setup, build, then bring up the lab and show traffic on the fast path.
    Run {
        /// Tear the lab down after the demo instead of waiting for Ctrl-C.
        #[arg(long)]
        once: bool,
    },
    /// Setup, then run every test (unit, packet and end-to-end).
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Setup, build, then run the benchmarks and write target/bench/*.json.
    Bench(bench::BenchArgs),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Setup => setup::run(),
        Cmd::Build => {
            setup::run()?;
            util::build_release()
        }
        Cmd::Run { once } => {
            setup::run()?;
            util::build_release()?;
            lab::run(once)
        }
        Cmd::Test { args } => {
            setup::run()?;
            test(&args)
        }
        Cmd::Bench(args) => {
            setup::run()?;
            util::build_release()?;
            bench::run(args)
        }
    }
}

fn test(args: &[String]) -> Result<()> {
    util::require_root()?;
    util::cargo(&["fmt", "--all", "--", "--check"])?;
    util::cargo(&[
        "clippy",
        "--workspace",
        "--exclude",
        "ebridge-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    util::cargo_ebpf("clippy", &["-D", "warnings"])?;
    // Build first so the e2e tests find target/debug/ebridge.
    util::cargo(&["build", "-p", "ebridge"])?;
    // --all-targets: no doc-test run (there are none) closing the output
    // on "0 passed".
    let mut cmd = vec![
        "test",
        "--workspace",
        "--exclude",
        "ebridge-ebpf",
        "--all-targets",
        "--no-fail-fast",
    ];
    cmd.extend(args.iter().map(String::as_str));
    let totals = util::cargo_test_totals(&cmd)?;
    // One closing line for the whole run, whatever test binary came last.
    println!(
        "{} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    if totals.failed > 0 || !totals.ok {
        anyhow::bail!("{} tests failed", totals.failed);
    }
    Ok(())
}
