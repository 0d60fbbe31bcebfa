//! The agent's report: what its last passes found, kept in memory for the
//! metrics endpoint and written to `/run/ebridge/<bridge>/agent.json` for
//! `ebridge status` (which must not walk a million-entry table either).
use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

/// One row of live flows: owner, protocol, state and how many.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FlowCount {
    pub owner: String,
    pub proto: String,
    pub state: String,
    pub flows: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    pub pid: u32,
    pub started_unix_ms: u64,
    /// 0 until the first pass.
    pub last_gc_unix_ms: u64,
    pub gc_runs: u64,
    /// Entries the GC removed (two per expired flow, one per orphan).
    pub gc_removed_entries: u64,
    pub gc_seconds_total: f64,
    pub gc_last_seconds: f64,
    pub nat_entries: u64,
    pub nat_capacity: u64,
    pub live_flows: Vec<FlowCount>,
    pub fdb_entries: u64,
    pub endpoints: u64,
    pub published_ports: u64,
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn path(bridge: &str) -> PathBuf {
    crate::state::state_dir(bridge).join("agent.json")
}

impl Report {
    pub fn new() -> Self {
        Self {
            pid: std::process::id(),
            started_unix_ms: unix_ms(),
            ..Self::default()
        }
    }

    pub fn set_live_flows(&mut self, by: &BTreeMap<(&str, &str, &str), u64>) {
        self.live_flows = by
            .iter()
            .map(|((owner, proto, state), flows)| FlowCount {
                owner: owner.to_string(),
                proto: proto.to_string(),
                state: state.to_string(),
                flows: *flows,
            })
            .collect();
    }

    /// Written whole (temporary file, rename): a reader never sees half.
    pub fn save(&self, bridge: &str) -> Result<()> {
        let path = path(bridge);
        let Some(dir) = path.parent() else {
            return Ok(());
        };
        // Gone while the bridge is down: nothing to report on.
        if !dir.exists() {
            return Ok(());
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
    }

    /// The running agent's last report, if there is one.
    pub fn load(bridge: &str) -> Option<Self> {
        let bytes = std::fs::read(path(bridge)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}
