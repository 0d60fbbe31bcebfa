//! TCP connect/request/response/close rate, one connection at a time.
//!
//! The client closes first (connect, send, receive, close). The server
//! waits for that close before closing its end, so the client is always
//! the side left in TIME_WAIT — not whichever close won a race — and the
//! bench lets the client's netns reuse TIME_WAIT ports.
use std::{
    io::{self, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream},
    os::fd::AsRawFd as _,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use serde_json::{json, Value};

use crate::sys;

const IO_TIMEOUT: Duration = Duration::from_secs(1);

pub fn server(bind: SocketAddr, max: Duration) -> Result<()> {
    let listener = TcpListener::bind(bind).with_context(|| format!("bind {bind}"))?;
    // accept() honours SO_RCVTIMEO: wake up to check the deadline.
    sys::set_timeout(
        listener.as_raw_fd(),
        libc::SO_RCVTIMEO,
        Duration::from_millis(100),
    )?;
    sys::ready()?;
    let start = Instant::now();
    while start.elapsed() < max {
        match listener.accept() {
            Ok((conn, _)) => {
                // One bad connection does not stop the server.
                let _ = serve(conn);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e).context("accept"),
        }
    }
    Ok(())
}

fn serve(mut conn: TcpStream) -> io::Result<()> {
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut b = [0u8; 1];
    conn.read_exact(&mut b)?;
    conn.write_all(&b)?;
    // Wait for the client's close (EOF) so the client is the active closer.
    let _ = conn.read(&mut b)?;
    Ok(())
}

/// Where each connection goes and comes from. Without source ports the
/// kernel picks them (and, with tcp_tw_reuse, reuses recent ones, so a
/// NAT or conntrack table may find the connection's tuple already known).
/// With them, connection `n` of the run uses tuple `first + n` of
/// (source address x destination address x source port), so no tuple
/// repeats until the whole space is used: every connection is a new flow
/// for whatever tracks flows on the path.
pub struct Tuples {
    pub to: SocketAddrV4,
    pub to_count: u32,
    pub from: Ipv4Addr,
    pub from_count: u32,
    pub sports: Option<(u16, u16)>,
    pub first: u64,
}

impl Tuples {
    fn addrs(&self) -> u64 {
        u64::from(self.to_count.max(1)) * u64::from(self.from_count.max(1))
    }

    /// (source, destination) of tuple `n`.
    fn nth(&self, n: u64) -> (Option<SocketAddrV4>, SocketAddr) {
        let addrs = self.addrs();
        let idx = n % addrs;
        let from_idx = (idx % u64::from(self.from_count.max(1))) as u32;
        let to_idx = (idx / u64::from(self.from_count.max(1))) as u32;
        let to_ip = Ipv4Addr::from(u32::from(*self.to.ip()).wrapping_add(to_idx));
        let to = SocketAddr::V4(SocketAddrV4::new(to_ip, self.to.port()));
        let from = self.sports.map(|(min, max)| {
            let ports = u64::from(max - min) + 1;
            let port = min + ((n / addrs) % ports) as u16;
            let ip = Ipv4Addr::from(u32::from(self.from).wrapping_add(from_idx));
            SocketAddrV4::new(ip, port)
        });
        (from, to)
    }
}

fn one(to: SocketAddr, from: Option<SocketAddrV4>) -> Result<()> {
    let mut s = sys::tcp_connect(to, from, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.write_all(b"x")?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b)?;
    Ok(())
}

pub fn client(tuples: &Tuples, dur: Duration) -> Result<Value> {
    let start = Instant::now();
    let mut conns = 0u64;
    let mut errors = 0u64;
    let mut attempts = 0u64;
    let mut last_error = String::new();
    while start.elapsed() < dur {
        let (from, to) = tuples.nth(tuples.first + attempts);
        attempts += 1;
        match one(to, from) {
            Ok(()) => conns += 1,
            Err(e) => {
                errors += 1;
                last_error = format!("{e:#}");
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(json!({
        "conns": conns,
        "errors": errors,
        "last_error": last_error,
        "secs": secs,
        "cps": conns as f64 / secs,
        "unique_tuples": tuples.sports.is_some(),
        "next_tuple": tuples.first + attempts,
    }))
}
