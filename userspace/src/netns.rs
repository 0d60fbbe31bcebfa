//! Named network namespaces under /run/netns, as `ip netns` makes them.
use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use anyhow::{anyhow, Context as _, Result};
use rtnetlink::NetworkNamespace;

pub fn named_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

pub async fn create(name: &str) -> Result<PathBuf> {
    NetworkNamespace::add(name.to_string())
        .await
        .map_err(|e| anyhow!("cannot create netns {name}: {e}"))?;
    Ok(named_path(name))
}

pub async fn delete(name: &str) -> Result<()> {
    NetworkNamespace::del(name.to_string())
        .await
        .map_err(|e| anyhow!("cannot delete netns {name}: {e}"))
}

/// Inode of this process's network namespace: identifies it across the
/// shared bpffs.
pub fn current_inode() -> Result<u64> {
    Ok(std::fs::metadata("/proc/self/ns/net")
        .context("cannot stat /proc/self/ns/net")?
        .ino())
}

pub fn inode_of(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("cannot stat {}", path.display()))?
        .ino())
}
