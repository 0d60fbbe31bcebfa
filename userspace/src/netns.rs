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

/// `SO_NETNS_COOKIE` of this process's network namespace: what
/// `bpf_get_netns_cookie` returns for its sockets.
pub fn current_cookie() -> Result<u64> {
    const SO_NETNS_COOKIE: libc::c_int = 71;
    // SAFETY: plain socket/getsockopt/close on an fd we own.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("cannot open a socket");
        }
        let mut cookie: u64 = 0;
        let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
        let rc = libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        );
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if rc != 0 {
            return Err(err).context("cannot read the netns cookie (SO_NETNS_COOKIE)");
        }
        Ok(cookie)
    }
}
