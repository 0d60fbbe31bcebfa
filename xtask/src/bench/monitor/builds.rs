//! The two builds compared: `target/release/ebridge` as `cargo xtask
//! bench` builds it (hooks compiled in), and the same source built with
//! `EBRIDGE_NO_MONITOR=1` (hooks compiled out, `ebpf/src/monitor.rs`) into
//! its own target directory, so neither build overwrites the other. Each
//! node of the scenario runs everything (`up`, `endpoint add`, the agent,
//! the monitor) from its own build.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};

use crate::util::{ebridge_release_bin, path_with_cargo_bin, sh, workspace_root};

/// Where the build without hooks goes, under the workspace.
pub const NO_MONITOR_TARGET: &str = "target/bench-no-monitor";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Hooks compiled in (what users run).
    Hooks,
    /// Built with EBRIDGE_NO_MONITOR=1.
    NoHooks,
}

impl Kind {
    pub fn key(self) -> &'static str {
        match self {
            Kind::Hooks => "ebridge",
            Kind::NoHooks => "no-monitor-build",
        }
    }
}

pub struct Build {
    pub kind: Kind,
    pub bin: PathBuf,
    pub sha256: String,
    pub how: String,
}

impl Build {
    pub fn to_json(&self) -> Value {
        json!({
            "kind": self.kind.key(),
            "binary": self.bin.display().to_string(),
            "sha256": self.sha256,
            "how": self.how,
        })
    }
}

fn sha256(bin: &Path) -> Result<String> {
    let out = sh("sha256sum", &[&bin.display().to_string()])?;
    Ok(out.split_whitespace().next().unwrap_or("?").to_string())
}

/// The release binary the bench already built.
pub fn with_hooks() -> Result<Build> {
    let bin = ebridge_release_bin();
    Ok(Build {
        kind: Kind::Hooks,
        sha256: sha256(&bin)?,
        bin,
        how: "cargo build --release -p ebridge (cargo xtask bench, before the scenarios)".into(),
    })
}

/// Builds (or finds up to date) the binary without hooks.
pub fn without_hooks() -> Result<Build> {
    let root = workspace_root();
    let target = root.join(NO_MONITOR_TARGET);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!(
        "building ebridge with EBRIDGE_NO_MONITOR=1 into {}",
        target.display()
    );
    let status = Command::new(&cargo)
        .args(["build", "--release", "-p", "ebridge"])
        .env("EBRIDGE_NO_MONITOR", "1")
        .env("CARGO_TARGET_DIR", &target)
        .env("PATH", path_with_cargo_bin())
        .current_dir(&root)
        .status()
        .with_context(|| format!("cannot run {cargo} build"))?;
    if !status.success() {
        bail!("building ebridge with EBRIDGE_NO_MONITOR=1 failed: {status}");
    }
    let bin = target.join("release/ebridge");
    Ok(Build {
        kind: Kind::NoHooks,
        sha256: sha256(&bin)?,
        bin,
        how: format!(
            "EBRIDGE_NO_MONITOR=1 CARGO_TARGET_DIR={NO_MONITOR_TARGET} cargo build --release -p ebridge"
        ),
    })
}
