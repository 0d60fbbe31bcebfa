//! What the maps cannot hold: endpoint names and the namespaces they live
//! in, kept as JSON under /run/ebridge/<bridge>/ next to a lock file that
//! serialises concurrent `ebridge` commands on one bridge.
use std::{
    fs::{self, File},
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EndpointRecord {
    pub name: String,
    pub netns: PathBuf,
    /// ebridge created the netns and removes it with the endpoint.
    pub created_netns: bool,
    pub host_veth: String,
    pub ifname: String,
    pub ipv4: Ipv4Addr,
    /// Its IPv6 address, when the bridge has an IPv6 subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Addr>,
    pub mac: String,
    /// Published ports, in `publish::PublishSpec::canonical` form.
    #[serde(default)]
    pub publish: Vec<String>,
    /// The CNI container ID, for endpoints a container runtime attached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct BridgeState {
    pub endpoints: Vec<EndpointRecord>,
}

pub fn state_dir(bridge: &str) -> PathBuf {
    Path::new("/run/ebridge").join(bridge)
}

fn state_file(bridge: &str) -> PathBuf {
    state_dir(bridge).join("endpoints.json")
}

/// An exclusive lock on the bridge's state, held until dropped.
pub struct StateLock {
    _file: File,
}

pub fn lock(bridge: &str) -> Result<StateLock> {
    let dir = state_dir(bridge);
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file = File::create(dir.join("lock"))?;
    // SAFETY: valid fd; blocks until the lock is ours.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot lock the bridge state");
    }
    Ok(StateLock { _file: file })
}

/// The lock of a bridge whose state exists, without making it: None when
/// the bridge is down (or went down while this waited for the lock).
pub fn lock_existing(bridge: &str) -> Result<Option<StateLock>> {
    let path = state_dir(bridge).join("lock");
    let file = match File::options().read(true).write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    // SAFETY: valid fd; blocks until the lock is ours.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot lock the bridge state");
    }
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some(StateLock { _file: file }))
}

pub fn load(bridge: &str) -> Result<BridgeState> {
    let path = state_file(bridge);
    match fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).with_context(|| format!("{} is corrupt", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BridgeState::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

pub fn save(bridge: &str, state: &BridgeState) -> Result<()> {
    let path = state_file(bridge);
    let tmp = path.with_extension("json.tmp");
    fs::write(&tmp, serde_json::to_vec_pretty(state)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
}

pub fn remove(bridge: &str) -> Result<()> {
    let dir = state_dir(bridge);
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    // /run/ebridge itself goes with the last bridge.
    let _ = fs::remove_dir("/run/ebridge");
    Ok(())
}
