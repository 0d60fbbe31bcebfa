//! What a node's datapath is, read from the kernel: the program attached
//! to a container's host veth (its tag, and whether it uses the monitor's
//! maps at all — the build without hooks has no reference to them), the
//! monitor lease and the per-CPU event budget (which a datapath only
//! touches while a monitor holds the lease).
use std::{path::PathBuf, thread, time::Duration};

use anyhow::{Context as _, Result};
use aya::maps::{Array, Map, MapData, PerCpuArray};
use ebridge_common::{
    maps::{MAP_EVENTS, MAP_MONITOR, MAP_MONITOR_BUDGET},
    monitor::MonitorBudget,
};
use serde_json::{json, Value};

use crate::{bench::natmap::monotonic_ns, util::sh};

fn pin_dir(bridge: &str) -> PathBuf {
    PathBuf::from("/sys/fs/bpf/ebridge").join(bridge)
}

fn bpftool_json(args: &[&str]) -> Result<Value> {
    let mut full = vec!["-j"];
    full.extend_from_slice(args);
    let out = sh("bpftool", &full)?;
    serde_json::from_str(&out).with_context(|| format!("bpftool {}: not JSON", args.join(" ")))
}

fn map_id(bridge: &str, map: &str) -> Result<u64> {
    let path = pin_dir(bridge).join(map).display().to_string();
    bpftool_json(&["map", "show", "pinned", &path])?["id"]
        .as_u64()
        .with_context(|| format!("no id for map {path}"))
}

/// The program on a host veth's pinned TCX link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub prog_id: u64,
    pub tag: String,
    /// It references the events ring, the lease or the budget.
    pub uses_monitor_maps: bool,
    /// Its size as loaded and as JIT-compiled, and what the verifier
    /// walked (`bpftool prog show`), to compare the two builds' code.
    pub xlated_bytes: u64,
    pub jited_bytes: u64,
    pub verified_insns: Option<u64>,
}

impl Identity {
    pub fn to_json(&self) -> Value {
        json!({
            "prog_id": self.prog_id,
            "tag": self.tag,
            "uses_monitor_maps": self.uses_monitor_maps,
            "bytes_xlated": self.xlated_bytes,
            "bytes_jited": self.jited_bytes,
            "verified_insns": self.verified_insns,
        })
    }
}

pub fn identity(bridge: &str, host_veth: &str) -> Result<Identity> {
    let link = pin_dir(bridge).join("links").join(host_veth);
    let link = link.display().to_string();
    let prog_id = bpftool_json(&["link", "show", "pinned", &link])?["prog_id"]
        .as_u64()
        .with_context(|| format!("no program on link {link}"))?;
    let prog = bpftool_json(&["prog", "show", "id", &prog_id.to_string()])?;
    let used: Vec<u64> = prog["map_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .collect();
    let mut monitor_maps = Vec::new();
    for m in [MAP_EVENTS, MAP_MONITOR, MAP_MONITOR_BUDGET] {
        monitor_maps.push(map_id(bridge, m)?);
    }
    Ok(Identity {
        prog_id,
        tag: prog["tag"].as_str().unwrap_or("?").to_string(),
        uses_monitor_maps: used.iter().any(|id| monitor_maps.contains(id)),
        xlated_bytes: prog["bytes_xlated"].as_u64().unwrap_or(0),
        jited_bytes: prog["bytes_jited"].as_u64().unwrap_or(0),
        verified_insns: prog["verified_insns"].as_u64(),
    })
}

fn open(bridge: &str, name: &str) -> Result<Map> {
    let path = pin_dir(bridge).join(name);
    let data = MapData::from_pin(&path)
        .with_context(|| format!("cannot open pinned map {}", path.display()))?;
    Map::from_map_data(data).with_context(|| format!("{} is not a map aya knows", path.display()))
}

/// How long the monitor lease still runs (zero: no monitor attached).
pub fn lease_left(bridge: &str) -> Result<Duration> {
    let lease: Array<MapData, u64> = open(bridge, MAP_MONITOR)?.try_into()?;
    let until = lease.get(&0, 0).context("cannot read the monitor map")?;
    Ok(Duration::from_nanos(until.saturating_sub(monotonic_ns())))
}

/// Waits until no monitor lease is left (a monitor stopped moments ago
/// keeps the datapath writing for up to 3 s).
pub fn wait_lease_gone(bridge: &str) -> Result<()> {
    let left = lease_left(bridge)?;
    if !left.is_zero() {
        thread::sleep(left + Duration::from_millis(50));
    }
    Ok(())
}

/// The per-CPU budget slots: unchanged over a sample means the datapath
/// never entered its event path.
pub fn budget(bridge: &str) -> Result<Vec<MonitorBudget>> {
    let map: PerCpuArray<MapData, MonitorBudget> = open(bridge, MAP_MONITOR_BUDGET)?.try_into()?;
    let per_cpu = map
        .get(&0, 0)
        .context("cannot read the monitor_budget map")?;
    Ok(per_cpu.iter().copied().collect())
}

/// Events the datapath could not write (budget spent, ring full), all CPUs.
pub fn lost(b: &[MonitorBudget]) -> u64 {
    b.iter().map(|c| c.lost).sum()
}
