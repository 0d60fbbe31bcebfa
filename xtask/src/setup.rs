//! Idempotent machine setup: rust-src for nightly, bpf-linker built against
//! the toolchain's own libLLVM (see shared/TOOLCHAIN.md), Debian packages.
use std::{path::PathBuf, process::Command};

use anyhow::{bail, Context as _, Result};

use crate::util::{cargo_bin_dir, sh};

/// Tools the tests, the lab and the benchmarks call as observers or loads.
const APT_PACKAGES: &[&str] = &[
    "iproute2",
    "bpftool",
    "tcpdump",
    "iperf3",
    "ethtool",
    "python3",
    "python3-scapy",
    "netcat-openbsd",
    "socat",
    "iputils-ping",
    "curl",
    "traceroute",
    "sockperf",
    // Connection churn (the nat benchmark, e2e_churn): the HTTP server
    // and load of the issue that found the NAT port collapse.
    "nginx-light",
    "wrk",
    "iptables",
    "conntrack",
    "util-linux",
    "procps",
    // Real container runtimes driving the CNI plugin (shared/PODMAN.md,
    // shared/CONTAINERD.md), with the reference plugins as the baseline.
    "podman",
    "containernetworking-plugins",
    "busybox-static",
    "runc",
    "conmon",
    "golang-github-containers-common",
    "catatonit",
    "containerd",
    // BGP between cluster nodes (shared/BIRD.md): routes ebridge follows.
    "bird2",
    // Metrics (e2e_metrics): a real server scraping the agent
    // (shared/PROMETHEUS.md); started by the tests inside their namespaces.
    "prometheus",
    // Packaging (e2e_packaging): the Kubernetes manifest parsed with PyYAML,
    // man pages rendered, completion scripts syntax-checked by their shells,
    // a TLS API server faked for the manifest's pod CIDR lookup.
    "python3-yaml",
    "man-db",
    "zsh",
    "fish",
    "openssl",
];

pub fn run() -> Result<()> {
    nightly_rust_src()?;
    bpf_linker()?;
    apt_packages()?;
    Ok(())
}

fn nightly_rust_src() -> Result<()> {
    let has_nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !has_nightly {
        eprintln!("setup: installing the nightly toolchain");
        sh(
            "rustup",
            &["toolchain", "install", "nightly", "--profile", "minimal"],
        )?;
    }
    let sysroot = PathBuf::from(sh("rustc", &["+nightly", "--print", "sysroot"])?.trim());
    if !sysroot.join("lib/rustlib/src/rust/library/core").exists() {
        eprintln!("setup: adding rust-src to nightly");
        sh(
            "rustup",
            &["component", "add", "rust-src", "--toolchain", "nightly"],
        )?;
    }
    Ok(())
}

fn bpf_linker() -> Result<()> {
    let linker = cargo_bin_dir().join("bpf-linker");
    let works = Command::new(&linker)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if works {
        return Ok(());
    }
    let sysroot = PathBuf::from(sh("rustc", &["+nightly", "--print", "sysroot"])?.trim());
    let llvm_so = std::fs::read_dir(sysroot.join("lib"))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
        })
        .context("the nightly toolchain ships no libLLVM.so.*")?;
    let soname = llvm_so.file_name().context("no file name")?.to_owned();
    let verbose = sh("rustc", &["+nightly", "-vV"])?;
    let major = verbose
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("rustc +nightly -vV names no LLVM version")?
        .to_string();
    // A prefix whose lib/ holds libLLVM.so and the soname file, both links
    // to the toolchain's library: bpf-linker links and later runs against it.
    let prefix = cargo_bin_dir()
        .parent()
        .context("cargo bin dir has no parent")?
        .join(format!("ebridge-llvm-{major}"));
    let lib = prefix.join("lib");
    std::fs::create_dir_all(&lib)?;
    for name in [std::ffi::OsString::from("libLLVM.so"), soname] {
        let link = lib.join(&name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&llvm_so, &link)?;
    }
    eprintln!("setup: building bpf-linker against LLVM {major} (about 90 s)");
    let status = Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
        ])
        .env("LLVM_PREFIX", &prefix)
        .status()?;
    if !status.success() {
        bail!("building bpf-linker failed: {status}");
    }
    Ok(())
}

fn apt_packages() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
                .unwrap_or(false)
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("setup: installing {}", missing.join(" "));
    let _no_services = NoServiceStarts::new()?;
    sh("apt-get", &["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(&missing);
    let status = Command::new("apt-get")
        .args(&args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()?;
    if !status.success() {
        bail!("apt-get install {} failed", missing.join(" "));
    }
    Ok(())
}

/// nginx, containerd, bird2 and prometheus ship init scripts that their
/// packages start on install: daemons in the root namespace that the tests
/// must not have (they start their own, inside their namespaces). Debian's
/// way to say "start nothing" is a policy-rc.d exiting 101; one is put in
/// place for the install when the machine has none, and removed after.
struct NoServiceStarts {
    made: bool,
}

const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

impl NoServiceStarts {
    fn new() -> Result<Self> {
        use std::os::unix::fs::PermissionsExt as _;
        if std::path::Path::new(POLICY_RC_D).exists() {
            return Ok(Self { made: false });
        }
        std::fs::write(
            POLICY_RC_D,
            "#!/bin/sh\n# ebridge setup: no services during install\nexit 101\n",
        )?;
        std::fs::set_permissions(POLICY_RC_D, std::fs::Permissions::from_mode(0o755))?;
        Ok(Self { made: true })
    }
}

impl Drop for NoServiceStarts {
    fn drop(&mut self) {
        if self.made {
            let _ = std::fs::remove_file(POLICY_RC_D);
        }
    }
}
