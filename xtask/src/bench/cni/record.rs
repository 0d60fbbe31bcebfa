//! What the cni scenario makes outside the bench's own naming — the test
//! labs' namespaces and ebridge bridge, podman's fixture directories,
//! containers, cgroups and CNI state — written down as it is made
//! (`<tmp>/ebench<pid>-cni-record.json`), so that a run killed outright
//! (SIGKILL skips every guard) is cleaned up by the next one: with the
//! dead run's own podman config, `podman rm -a -f` in its node (which
//! calls each network's DEL), then whatever that left by path and pid.
//! A run that ends any other way removes everything itself, then the
//! record.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result};
use ebridge_tests::{lab::Lab, podman::Podman};
use serde_json::{json, Value};

use crate::{
    bench::{ebridge_node, reap::RUN_PREFIX},
    util::sh_quiet,
};

const SUFFIX: &str = "-cni-record.json";

pub struct Record {
    path: PathBuf,
    content: Value,
}

impl Record {
    pub fn create() -> Result<Self> {
        let path = std::env::temp_dir().join(format!("{RUN_PREFIX}{}{SUFFIX}", std::process::id()));
        let r = Record {
            path,
            content: json!({"labs": [], "fixtures": []}),
        };
        r.write()?;
        Ok(r)
    }

    pub fn lab(&mut self, lab: &Lab) -> Result<()> {
        push(
            &mut self.content["labs"],
            json!({"node": lab.node, "outside": lab.outside, "bridge": lab.bridge}),
        );
        self.write()
    }

    pub fn fixture(&mut self, pm: &Podman) -> Result<()> {
        push(
            &mut self.content["fixtures"],
            json!({"dir": pm.dir(), "id": pm.id(), "node": pm.node()}),
        );
        self.write()
    }

    fn write(&self) -> Result<()> {
        fs::write(&self.path, self.content.to_string())
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

fn push(list: &mut Value, item: Value) {
    if let Some(a) = list.as_array_mut() {
        a.push(item);
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Cleans up after every killed run that left a record.
pub fn reap_dead() {
    let Ok(dir) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(RUN_PREFIX)
            .and_then(|r| r.strip_suffix(SUFFIX))
        else {
            continue;
        };
        if pid.is_empty()
            || !pid.chars().all(|c| c.is_ascii_digit())
            || Path::new("/proc").join(pid).exists()
        {
            continue;
        }
        let Ok(v) = fs::read(entry.path()).map(|b| serde_json::from_slice::<Value>(&b)) else {
            continue;
        };
        if let Ok(v) = v {
            reap(&v);
        }
        let _ = fs::remove_file(entry.path());
        eprintln!("bench: cleaned up after killed run {RUN_PREFIX}{pid} (cni scenario)");
    }
}

fn reap(v: &Value) {
    for f in v["fixtures"].as_array().into_iter().flatten() {
        let (Some(dir), Some(id), Some(node)) =
            (f["dir"].as_str(), f["id"].as_str(), f["node"].as_str())
        else {
            continue;
        };
        reap_fixture(Path::new(dir), id, node);
    }
    for l in v["labs"].as_array().into_iter().flatten() {
        let (Some(node), Some(outside), Some(bridge)) = (
            l["node"].as_str(),
            l["outside"].as_str(),
            l["bridge"].as_str(),
        ) else {
            continue;
        };
        ebridge_node::teardown(node, bridge);
        for ns in [node, outside] {
            sh_quiet("ip", &["netns", "del", ns]);
        }
    }
}

fn reap_fixture(dir: &Path, id: &str, node: &str) {
    if !dir.exists() {
        return;
    }
    if Path::new("/run/netns").join(node).exists() {
        // The dead run's own settings, as the fixture runs podman.
        let _ = Command::new("timeout")
            .args(["120", "nsenter"])
            .arg(format!("--net=/run/netns/{node}"))
            .args(["podman", "rm", "-a", "-f", "-t", "0"])
            .env("CONTAINERS_CONF", dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", dir.join("storage.conf"))
            .env("TMPDIR", dir.join("tmp"))
            .output();
    }
    let marker = format!("{}/", dir.display());
    kill_mentioning(&marker);
    for h in fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        remove_cgroup(&h.path().join(id));
    }
    for net in networks(&dir.join("net")) {
        for entry in fs::read_dir("/var/lib/cni/results")
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(&format!("{net}-"))
            {
                let _ = fs::remove_file(entry.path());
            }
        }
        let _ = fs::remove_dir_all(Path::new("/var/lib/cni/networks").join(&net));
    }
    let _ = fs::remove_dir_all(dir);
}

/// Network names of the conflists in `dir`.
fn networks(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: Value = serde_json::from_slice(&fs::read(e.path()).ok()?).ok()?;
            v["name"].as_str().map(str::to_string)
        })
        .collect()
}

/// SIGKILLs every process whose command line holds `marker` (conmon and
/// podman's cleanup processes name the fixture's directories).
fn kill_mentioning(marker: &str) {
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = fs::read(entry.path().join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        if cmdline.contains(marker) {
            // SAFETY: kill(2) of a process of the dead run's fixture.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Kills the tasks in the cgroup `dir` and below (only the dead run's
/// containers are there), then removes it, deepest first.
fn remove_cgroup(dir: &Path) {
    if !dir.is_dir() {
        return;
    }
    for sub in fs::read_dir(dir).into_iter().flatten().flatten() {
        if sub.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup(&sub.path());
        }
    }
    let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        // SAFETY: kill(2) of a process in the dead run's cgroup.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    for _ in 0..50 {
        if fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
