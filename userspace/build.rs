// Builds the eBPF crate for bpfel-unknown-none with the nightly toolchain and
// bpf-linker (installed by `cargo xtask setup`), so a plain `cargo build`
// produces a userspace binary with the datapath embedded.
//
// aya_build::build_ebpf turns every line the inner cargo prints, progress
// included, into a `cargo:warning`, so each build showed ~45 "Compiling …"
// warnings. It has no option to capture them, so this script runs it in a
// second copy of itself and decides what reaches cargo: on success only the
// rerun-if directives and real diagnostics, on failure everything.
use std::{
    env,
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
};

const INNER: &str = "EBRIDGE_BUILD_EBPF_INNER";

fn main() -> anyhow::Result<()> {
    if env::var_os(INNER).is_some() {
        return build_ebpf();
    }
    // Read by the eBPF crate at compile time (`ebpf/src/monitor.rs`).
    println!("cargo:rerun-if-env-changed=EBRIDGE_NO_MONITOR");
    let exe = env::current_exe()?;
    let mut child = Command::new(&exe)
        .env(INNER, "1")
        .stdout(Stdio::piped())
        // aya-build writes nothing there itself; a panic or error report
        // goes straight to cargo, which shows it when the script fails.
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run {} for the eBPF build: {e}", exe.display()))?;
    let mut lines = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            lines.push(line?);
        }
    }
    let status = child.wait()?;
    if !status.success() {
        for line in &lines {
            println!("{line}");
        }
        anyhow::bail!("the eBPF build failed ({status}); its output is above");
    }
    for line in lines.iter().filter(|l| keep_on_success(l)) {
        println!("{line}");
    }
    Ok(())
}

fn build_ebpf() -> anyhow::Result<()> {
    let ebpf_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../ebpf");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "ebridge-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}

/// Cargo directives other than warnings (rerun-if-changed on ../ebpf and
/// friends) must reach cargo; of the warnings, only the inner cargo's
/// progress lines and the blank lines between diagnostics are noise.
fn keep_on_success(line: &str) -> bool {
    const PROGRESS: &[&str] = &[
        "Adding",
        "Blocking",
        "Building",
        "Checking",
        "Compiling",
        "Downloaded",
        "Downloading",
        "Finished",
        "Fresh",
        "Locking",
        "Updating",
    ];
    let Some(text) = line
        .strip_prefix("cargo:warning=")
        .or_else(|| line.strip_prefix("cargo::warning="))
    else {
        return true;
    };
    let text = text.trim_start();
    let verb = text.split_whitespace().next().unwrap_or("");
    !text.is_empty() && !PROGRESS.contains(&verb)
}
