//! Named network namespaces under /run/netns, as `ip netns` makes them.
use std::{
    fs::File,
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
    path::{Path, PathBuf},
};

use anyhow::{anyhow, Context as _, Result};
use rtnetlink::NetworkNamespace;

use crate::error::usage;

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

/// What `path` turned out to be, when it cannot hold an endpoint.
#[derive(Debug, PartialEq, Eq)]
pub enum NotUsable {
    Missing,
    Unreadable(String),
    /// Not a namespace file at all: what it is instead.
    NotNamespace(&'static str),
    /// A namespace, of another kind (pid, mnt, ...).
    OtherKind(&'static str),
    /// The network namespace this process runs in.
    Ours,
}

/// Checks that `path` names a network namespace other than this process's
/// own, as `setns(fd, CLONE_NEWNET)` will need later: finding out then
/// would leave an error from deep inside veth creation.
pub fn check_other_netns(path: &Path) -> std::result::Result<(), NotUsable> {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    // _IO(0xb7, 0x3) from linux/nsfs.h: the CLONE_NEW* type of a ns fd.
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => NotUsable::Missing,
        _ => NotUsable::Unreadable(e.to_string()),
    })?;
    // Namespace files are regular files to stat. Anything else is not
    // opened at all: opening a FIFO blocks, opening a device may act.
    if meta.is_dir() {
        return Err(NotUsable::NotNamespace("a directory"));
    }
    if !meta.is_file() {
        return Err(NotUsable::NotNamespace("a special file"));
    }
    let file = File::open(path).map_err(|e| NotUsable::Unreadable(e.to_string()))?;
    // SAFETY: fstatfs with a valid out-pointer on an fd we own; changes
    // nothing.
    let fs_type = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        if libc::fstatfs(file.as_raw_fd(), &mut st) != 0 {
            return Err(NotUsable::Unreadable(
                std::io::Error::last_os_error().to_string(),
            ));
        }
        #[allow(clippy::unnecessary_cast)]
        let fs_type = st.f_type as i64;
        fs_type
    };
    if fs_type != NSFS_MAGIC {
        // What `ip netns add` leaves behind when the bind mount is gone.
        return Err(NotUsable::NotNamespace(if meta.len() == 0 {
            "an empty file with no namespace mounted on it"
        } else {
            "a regular file"
        }));
    }
    // SAFETY: NS_GET_NSTYPE only reads the type of the nsfs fd we own.
    let ns_type = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
    if ns_type < 0 {
        return Err(NotUsable::Unreadable(
            std::io::Error::last_os_error().to_string(),
        ));
    }
    if ns_type != libc::CLONE_NEWNET {
        return Err(NotUsable::OtherKind(ns_kind(ns_type)));
    }
    let ours = std::fs::metadata("/proc/self/ns/net")
        .map_err(|e| NotUsable::Unreadable(format!("/proc/self/ns/net: {e}")))?;
    if (meta.dev(), meta.ino()) == (ours.dev(), ours.ino()) {
        return Err(NotUsable::Ours);
    }
    Ok(())
}

fn ns_kind(ns_type: libc::c_int) -> &'static str {
    match ns_type {
        libc::CLONE_NEWNS => "mount",
        libc::CLONE_NEWPID => "pid",
        libc::CLONE_NEWUTS => "uts",
        libc::CLONE_NEWIPC => "ipc",
        libc::CLONE_NEWUSER => "user",
        libc::CLONE_NEWCGROUP => "cgroup",
        libc::CLONE_NEWTIME => "time",
        _ => "non-network",
    }
}

/// `--netns PATH` as a usage error naming the path, or Ok.
pub fn check_netns_arg(path: &Path) -> Result<()> {
    const ACCEPTED: &str = "pass a container's network namespace (e.g. /run/netns/NAME or /proc/PID/ns/net) or omit --netns to create one";
    let p = path.display();
    match check_other_netns(path) {
        Ok(()) => Ok(()),
        Err(NotUsable::Missing) => Err(usage(format!("netns {p} does not exist; {ACCEPTED}"))),
        Err(NotUsable::Unreadable(e)) => Err(usage(format!(
            "netns {p} cannot be opened ({e}); {ACCEPTED}"
        ))),
        Err(NotUsable::NotNamespace(what)) => Err(usage(format!(
            "netns {p} is {what}, not a network namespace; {ACCEPTED}"
        ))),
        Err(NotUsable::OtherKind(kind)) => Err(usage(format!(
            "netns {p} is a {kind} namespace, not a network namespace; {ACCEPTED}"
        ))),
        Err(NotUsable::Ours) => Err(usage(format!(
            "netns {p} is the node's own network namespace, where the bridge lives; {ACCEPTED}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_netns_path_is() {
        assert_eq!(
            check_other_netns(Path::new("/proc/self/ns/net")),
            Err(NotUsable::Ours)
        );
        assert_eq!(
            check_other_netns(Path::new("/proc/self/ns/pid")),
            Err(NotUsable::OtherKind("pid"))
        );
        assert_eq!(
            check_other_netns(Path::new("/nonexistent/netns")),
            Err(NotUsable::Missing)
        );
        assert_eq!(
            check_other_netns(Path::new("/dev/null")),
            Err(NotUsable::NotNamespace("a special file"))
        );
        assert_eq!(
            check_other_netns(Path::new("/proc")),
            Err(NotUsable::NotNamespace("a directory"))
        );
        assert_eq!(
            check_other_netns(Path::new("/proc/self/status")),
            Err(NotUsable::NotNamespace(
                "an empty file with no namespace mounted on it"
            ))
        );
    }

    #[test]
    fn netns_messages_name_the_path() {
        let msg = check_netns_arg(Path::new("/proc/self/ns/net"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("/proc/self/ns/net") && msg.contains("node's own"));
        assert_eq!(msg.lines().count(), 1);
    }
}
