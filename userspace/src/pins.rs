//! Where the datapath lives on bpffs: `/sys/fs/bpf/ebridge/<bridge>/`.
use std::{
    ffi::CString,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};

pub const BPFFS: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

pub fn bridge_dir(bridge: &str) -> PathBuf {
    Path::new(BPFFS).join("ebridge").join(bridge)
}

pub fn map_path(bridge: &str, map: &str) -> PathBuf {
    bridge_dir(bridge).join(map)
}

pub fn prog_path(bridge: &str, prog: &str) -> PathBuf {
    bridge_dir(bridge).join(format!("prog_{prog}"))
}

pub fn links_dir(bridge: &str) -> PathBuf {
    bridge_dir(bridge).join("links")
}

pub fn link_path(bridge: &str, ifname: &str) -> PathBuf {
    links_dir(bridge).join(ifname)
}

/// Mounts bpffs at /sys/fs/bpf if nothing of that type is there yet.
pub fn ensure_bpffs() -> Result<()> {
    let path = CString::new(BPFFS)?;
    // SAFETY: valid C string and a zeroed out-struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(path.as_ptr(), &mut st) } == 0 && st.f_type as i64 == BPF_FS_MAGIC {
        return Ok(());
    }
    let fstype = CString::new("bpf")?;
    // SAFETY: valid C strings; no data argument.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            path.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot mount bpffs at /sys/fs/bpf");
    }
    if private_mount_namespace() {
        eprintln!(
            "ebridge: warning: mounted bpffs at {BPFFS} inside a private mount namespace; the datapath's pins go away with it (run ebridge where {BPFFS} is the host's bpffs)"
        );
    }
    Ok(())
}

/// This process's mount namespace is not init's: a bpffs mounted here is
/// not the one other ebridge commands and the agent will see.
fn private_mount_namespace() -> bool {
    let ino = |p: &str| std::fs::metadata(p).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
    match (ino("/proc/self/ns/mnt"), ino("/proc/1/ns/mnt")) {
        (Ok(a), Ok(b)) => a != b,
        _ => false,
    }
}

/// Removes the bridge's pin directory and everything in it. Unlinking a
/// pinned link detaches it once no process holds it.
pub fn remove_bridge_dir(bridge: &str) -> Result<()> {
    let dir = bridge_dir(bridge);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    // Leave /sys/fs/bpf/ebridge only if other bridges still use it.
    let parent = Path::new(BPFFS).join("ebridge");
    if parent
        .read_dir()
        .map(|mut d| d.next().is_none())
        .unwrap_or(false)
    {
        let _ = std::fs::remove_dir(parent);
    }
    Ok(())
}
