//! The few system calls std does not wrap: CPU affinity, socket options,
//! sendmmsg/recvmmsg, SO_MEMINFO, and a blocking connect bounded by
//! SO_SNDTIMEO.
use std::{
    io::{self, Write as _},
    mem,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpStream},
    os::fd::{FromRawFd as _, RawFd},
    time::Duration,
};

use anyhow::{Context as _, Result};

pub fn pin_to_cpu(cpu: usize) -> Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET bounds-checks the index.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error()).with_context(|| format!("cannot pin to CPU {cpu}"));
    }
    Ok(())
}

/// Tells the bench the server is bound (it waits for this line).
pub fn ready() -> Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    Ok(())
}

pub fn set_int(fd: RawFd, level: libc::c_int, opt: libc::c_int, val: libc::c_int) -> Result<()> {
    // SAFETY: a valid pointer to a c_int of the stated length.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&val as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error()).context("setsockopt");
    }
    Ok(())
}

/// SO_RCVTIMEO / SO_SNDTIMEO: also bounds accept() and connect().
pub fn set_timeout(fd: RawFd, opt: libc::c_int, d: Duration) -> Result<()> {
    let tv = libc::timeval {
        tv_sec: d.as_secs() as libc::time_t,
        tv_usec: d.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: a valid pointer to a timeval of the stated length.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&tv as *const libc::timeval).cast(),
            mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error()).context("setsockopt timeout");
    }
    Ok(())
}

/// A receive buffer large enough that bursts are not what limits the
/// rate; the same size in every setup. FORCE passes the rmem_max cap (root).
pub fn big_rcvbuf(fd: RawFd, bytes: libc::c_int) {
    if set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, bytes).is_err() {
        let _ = set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, bytes);
    }
}

/// Datagrams the socket itself dropped (receive buffer full), from
/// SO_MEMINFO; None if the kernel does not say.
pub fn socket_drops(fd: RawFd) -> Option<u64> {
    let mut mem = [0u32; 16];
    let mut len = mem::size_of_val(&mem) as libc::socklen_t;
    // SAFETY: a valid buffer of the stated length; the kernel writes at
    // most `len` bytes and updates it.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            mem.as_mut_ptr().cast(),
            &mut len,
        )
    };
    let drops = libc::SK_MEMINFO_DROPS as usize;
    (rc == 0 && (len as usize) > drops * 4).then(|| u64::from(mem[drops]))
}

/// `batch` message headers that all point at `buf` (the content does not
/// matter for counting; the kernel copies each datagram in turn).
pub struct MsgBatch {
    // Boxed so the iovec addresses stay put while `hdrs` point at them.
    _iov: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
}

impl MsgBatch {
    pub fn new(buf: &mut [u8], len: usize, batch: usize) -> Self {
        let mut iov: Box<[libc::iovec]> = (0..batch)
            .map(|_| libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: len.min(buf.len()),
            })
            .collect();
        let hdrs = iov
            .iter_mut()
            .map(|v| {
                // SAFETY: mmsghdr is plain data; zero is a valid empty header.
                let mut m: libc::mmsghdr = unsafe { mem::zeroed() };
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        Self { _iov: iov, hdrs }
    }

    /// sendmmsg on a connected socket: datagrams sent, or the errno.
    pub fn send(&mut self, fd: RawFd) -> Result<usize, i32> {
        self.send_some(fd, self.hdrs.len())
    }

    /// The same with at most `n` of the batch's messages.
    pub fn send_some(&mut self, fd: RawFd, n: usize) -> Result<usize, i32> {
        let n = n.clamp(1, self.hdrs.len());
        // SAFETY: headers and iovecs are valid for the call; the buffer
        // they point at outlives `self` (the caller holds it).
        let n = unsafe { libc::sendmmsg(fd, self.hdrs.as_mut_ptr(), n as _, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error().raw_os_error().unwrap_or(0));
        }
        Ok(n as usize)
    }

    /// recvmmsg that returns once at least one datagram is in (or the
    /// socket's SO_RCVTIMEO passes): datagrams received, or the errno.
    pub fn recv(&mut self, fd: RawFd) -> Result<usize, i32> {
        // SAFETY: as in `send`; a null timeout means "use SO_RCVTIMEO".
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as _,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error().raw_os_error().unwrap_or(0));
        }
        Ok(n as usize)
    }
}

pub fn sockaddr_in(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// `sockaddr_in`'s IPv6 twin.
pub fn sockaddr_in6(a: SocketAddrV6) -> libc::sockaddr_in6 {
    libc::sockaddr_in6 {
        sin6_family: libc::AF_INET6 as libc::sa_family_t,
        sin6_port: a.port().to_be(),
        sin6_flowinfo: a.flowinfo().to_be(),
        sin6_addr: libc::in6_addr {
            s6_addr: a.ip().octets(),
        },
        sin6_scope_id: a.scope_id(),
    }
}

/// The wildcard address of `to`'s family, port 0: what a client binds.
pub fn any_addr(to: SocketAddr) -> SocketAddr {
    match to {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

/// A blocking connect (IPv4 or IPv6) that gives up after `timeout` (std's
/// connect_timeout adds a nonblocking round of fcntl/poll per connection,
/// which would be counted as connection cost).
pub fn tcp_connect(to: impl Into<SocketAddr>, timeout: Duration) -> Result<TcpStream> {
    let to = to.into();
    let family = match to {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context("socket");
    }
    // SAFETY: fd is a fresh socket we own; TcpStream closes it on drop.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    set_timeout(fd, libc::SO_SNDTIMEO, timeout)?;
    let rc = match to {
        SocketAddr::V4(a) => {
            let sin = sockaddr_in(a);
            // SAFETY: a valid sockaddr_in of the stated length.
            unsafe {
                libc::connect(
                    fd,
                    (&sin as *const libc::sockaddr_in).cast(),
                    mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
        }
        SocketAddr::V6(a) => {
            let sin6 = sockaddr_in6(a);
            // SAFETY: a valid sockaddr_in6 of the stated length.
            unsafe {
                libc::connect(
                    fd,
                    (&sin6 as *const libc::sockaddr_in6).cast(),
                    mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        }
    };
    if rc != 0 {
        return Err(io::Error::last_os_error()).with_context(|| format!("connect {to}"));
    }
    Ok(stream)
}
