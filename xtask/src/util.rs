use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// `~/.cargo/bin`, where bpf-linker is installed; prepended to PATH for
/// every cargo call so aya-build finds it.
pub fn cargo_bin_dir() -> PathBuf {
    let home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cargo")
        });
    home.join("bin")
}

pub fn path_with_cargo_bin() -> std::ffi::OsString {
    let mut paths = vec![cargo_bin_dir()];
    if let Some(p) = env::var_os("PATH") {
        paths.extend(env::split_paths(&p));
    }
    env::join_paths(paths).expect("PATH entries are valid")
}

pub fn cargo(args: &[&str]) -> Result<()> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(workspace_root())
        .env("PATH", path_with_cargo_bin())
        .status()
        .with_context(|| format!("cannot run cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed: {status}", args.join(" "));
    }
    Ok(())
}

/// `cargo +nightly SUBCOMMAND` for the eBPF crate (it only builds for the
/// BPF target, with build-std); `tool_args` go after `--`.
pub fn cargo_ebpf(subcommand: &str, tool_args: &[&str]) -> Result<()> {
    let status = Command::new(cargo_bin_dir().join("cargo"))
        .args(["+nightly", subcommand, "--target", "bpfel-unknown-none"])
        .args(["-Z", "build-std=core", "--bins", "--"])
        .args(tool_args)
        .current_dir(workspace_root().join("ebpf"))
        .env("PATH", path_with_cargo_bin())
        .status()
        .with_context(|| format!("cannot run cargo +nightly {subcommand}"))?;
    if !status.success() {
        bail!("cargo +nightly {subcommand} (ebpf) failed: {status}");
    }
    Ok(())
}

#[derive(Debug, Default)]
pub struct TestTotals {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
    /// cargo itself exited successfully.
    pub ok: bool,
}

/// Runs `cargo test ...`, passing its output through, and adds up the
/// "test result:" lines of every test binary.
pub fn cargo_test_totals(args: &[&str]) -> Result<TestTotals> {
    use std::io::{BufRead as _, BufReader};
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut child = Command::new(&cargo)
        .args(args)
        .current_dir(workspace_root())
        .env("PATH", path_with_cargo_bin())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run cargo {}", args.join(" ")))?;
    let mut totals = TestTotals::default();
    let stdout = child.stdout.take().context("cargo test stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            for part in rest.split(';') {
                let mut words = part.split_whitespace().rev();
                let (Some(what), Some(n)) = (words.next(), words.next()) else {
                    continue;
                };
                let n: u64 = n.parse().unwrap_or(0);
                match what {
                    "passed" => totals.passed += n,
                    "failed" => totals.failed += n,
                    "ignored" => totals.ignored += n,
                    _ => {}
                }
            }
        }
    }
    totals.ok = child.wait()?.success();
    Ok(totals)
}

pub fn build_release() -> Result<()> {
    cargo(&["build", "--release", "-p", "ebridge"])
}

pub fn ebridge_release_bin() -> PathBuf {
    workspace_root().join("target/release/ebridge")
}

/// Runs a command, failing with its stderr if it fails.
pub fn sh(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command and ignores failure (teardown).
pub fn sh_quiet(program: &str, args: &[&str]) {
    let _ = Command::new(program).args(args).output();
}

pub fn require_root() -> Result<()> {
    let uid = sh("id", &["-u"])?;
    if uid.trim() != "0" {
        bail!("this needs root (network namespaces, BPF); run it as root");
    }
    Ok(())
}
