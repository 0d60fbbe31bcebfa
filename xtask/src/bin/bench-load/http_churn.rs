//! Connection churn against an HTTP server, as `wrk -c N -H 'Connection:
//! close'` does it: N connections in flight from one thread (epoll), each
//! one connect, `GET /` with `Connection: close`, read until the server
//! closes, close, and at once the next one from a port the kernel picks.
//! Unlike wrk, a connection that has not finished within `timeout` is
//! counted and replaced: wrk waits forever on a connect whose SYNs are
//! dropped, so a datapath that drops them would hang it instead of being
//! measured.
use std::{
    io, mem,
    net::SocketAddrV4,
    os::fd::RawFd,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};

use crate::sys;

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Connecting,
    Reading,
}

struct Slot {
    fd: RawFd,
    phase: Phase,
    started: Instant,
    status_ok: Option<bool>,
}

#[derive(Default)]
struct Counts {
    done: u64,
    connect_errors: u64,
    read_errors: u64,
    timeouts: u64,
    bad_status: u64,
    latencies_us: Vec<u64>,
}

fn close(fd: RawFd) {
    // SAFETY: fd is a socket this module opened and still owns.
    unsafe { libc::close(fd) };
}

fn open(ep: RawFd, to: SocketAddrV4, slot: usize) -> Result<Slot> {
    // SAFETY: plain socket(2).
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context("socket");
    }
    let sin = sys::sockaddr_in(to);
    // SAFETY: a valid sockaddr_in of the stated length.
    let rc = unsafe {
        libc::connect(
            fd,
            (&sin as *const libc::sockaddr_in).cast(),
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINPROGRESS) {
            close(fd);
            return Err(err).with_context(|| format!("connect {to}"));
        }
    }
    let mut ev = libc::epoll_event {
        events: libc::EPOLLOUT as u32,
        u64: slot as u64,
    };
    // SAFETY: ep and fd are open; ev is valid for the call.
    if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
        close(fd);
        return Err(io::Error::last_os_error()).context("epoll_ctl add");
    }
    Ok(Slot {
        fd,
        phase: Phase::Connecting,
        started: Instant::now(),
        status_ok: None,
    })
}

fn so_error(fd: RawFd) -> i32 {
    let mut err: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a valid c_int out-pointer of the stated length.
    unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    err
}

enum Step {
    Wait,
    Done,
    ConnectFailed,
    ReadFailed,
}

/// Advances one connection on an epoll event.
fn step(ep: RawFd, s: &mut Slot, events: u32, request: &[u8], slot: usize) -> Step {
    if s.phase == Phase::Connecting {
        if so_error(s.fd) != 0 || events & (libc::EPOLLERR as u32) != 0 {
            return Step::ConnectFailed;
        }
        // SAFETY: request is valid for its length; fd is open.
        let n = unsafe {
            libc::send(
                s.fd,
                request.as_ptr().cast(),
                request.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n != request.len() as isize {
            return Step::ReadFailed;
        }
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: slot as u64,
        };
        // SAFETY: as in `open`.
        if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_MOD, s.fd, &mut ev) } != 0 {
            return Step::ReadFailed;
        }
        s.phase = Phase::Reading;
        return Step::Wait;
    }
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: buf is valid for its length; fd is open.
        let n = unsafe { libc::recv(s.fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n > 0 {
            if s.status_ok.is_none() {
                s.status_ok =
                    Some(buf.starts_with(b"HTTP/1.1 200") || buf.starts_with(b"HTTP/1.0 200"));
            }
            continue;
        }
        if n == 0 {
            return Step::Done;
        }
        let e = io::Error::last_os_error().raw_os_error();
        if e == Some(libc::EAGAIN) || e == Some(libc::EINTR) {
            return Step::Wait;
        }
        return Step::ReadFailed;
    }
}

pub fn run(to: SocketAddrV4, conns: usize, dur: Duration, timeout: Duration) -> Result<Value> {
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        to.ip()
    );
    let request = request.as_bytes();
    // SAFETY: plain epoll_create1(2).
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        bail!("epoll_create1: {}", io::Error::last_os_error());
    }
    let mut c = Counts::default();
    let mut slots: Vec<Option<Slot>> = Vec::with_capacity(conns);
    for i in 0..conns {
        slots.push(Some(open(ep, to, i)?));
    }
    let start = Instant::now();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; conns.max(1)];
    while start.elapsed() < dur {
        // SAFETY: events is valid for its length.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 10) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            bail!("epoll_wait: {e}");
        }
        let mut finished: Vec<(usize, Step)> = Vec::new();
        for ev in &events[..n as usize] {
            let i = ev.u64 as usize;
            let Some(s) = slots[i].as_mut() else { continue };
            match step(ep, s, ev.events, request, i) {
                Step::Wait => {}
                other => finished.push((i, other)),
            }
        }
        for (i, s) in slots.iter().enumerate() {
            if let Some(s) = s {
                if s.started.elapsed() >= timeout && !finished.iter().any(|(j, _)| *j == i) {
                    finished.push((i, Step::Wait));
                }
            }
        }
        for (i, how) in finished {
            let Some(s) = slots[i].take() else { continue };
            match how {
                Step::Done if s.status_ok == Some(true) => {
                    c.done += 1;
                    c.latencies_us.push(s.started.elapsed().as_micros() as u64);
                }
                Step::Done => c.bad_status += 1,
                Step::ConnectFailed => c.connect_errors += 1,
                Step::ReadFailed => c.read_errors += 1,
                // Past the timeout.
                Step::Wait => c.timeouts += 1,
            }
            close(s.fd);
            slots[i] = Some(open(ep, to, i)?);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    // Connections still in flight at the end are not counted either way.
    for s in slots.into_iter().flatten() {
        close(s.fd);
    }
    close(ep);
    c.latencies_us.sort_unstable();
    let pct = |p: f64| -> Option<u64> {
        let n = c.latencies_us.len();
        (n > 0).then(|| c.latencies_us[((n - 1) as f64 * p).round() as usize])
    };
    Ok(json!({
        "requests": c.done,
        "secs": secs,
        "rate": c.done as f64 / secs.max(1e-9),
        "conns_in_flight": conns,
        "timeout_ms": timeout.as_millis() as u64,
        "errors_connect": c.connect_errors,
        "errors_read": c.read_errors,
        "errors_timeout": c.timeouts,
        "errors_status": c.bad_status,
        "latency_p50_us": pct(0.5),
        "latency_p99_us": pct(0.99),
    }))
}
