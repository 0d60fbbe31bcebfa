//! TCP connect/request/response/close rate, one connection at a time.
//!
//! The client closes first (connect, send, receive, close). The server
//! waits for that close before closing its end, so the client is always
//! the side left in TIME_WAIT — not whichever close won a race — and the
//! bench lets the client's netns reuse TIME_WAIT ports.
use std::{
    io::{self, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
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

fn one(to: SocketAddr) -> Result<()> {
    let mut s = sys::tcp_connect(to, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.write_all(b"x")?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b)?;
    Ok(())
}

/// The kernel picks each connection's source port, as for any client: with
/// tcp_tw_reuse it comes back to ports whose connections sit in TIME_WAIT,
/// so whatever tracks flows on the path sees tuples it has seen before.
pub fn client(to: SocketAddr, dur: Duration) -> Result<Value> {
    let start = Instant::now();
    let mut conns = 0u64;
    let mut errors = 0u64;
    let mut attempts = 0u64;
    let mut last_error = String::new();
    while start.elapsed() < dur {
        attempts += 1;
        match one(to) {
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
        "attempts": attempts,
        "errors": errors,
        "last_error": last_error,
        "secs": secs,
        "cps": conns as f64 / secs,
    }))
}
