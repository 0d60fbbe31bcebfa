//! UDP request/response latency: one datagram in flight, the client times
//! each round trip; the server echoes. A request with no answer within the
//! timeout counts as infinitely slow in the percentiles (a percentile that
//! falls on one is reported as null: the loss hides it), and the rate is
//! round trips over the whole run, time spent waiting for lost ones too.
use std::{
    io,
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use serde_json::{json, Value};

/// Keeps memory bounded however fast the path is.
const MAX_SAMPLES: usize = 20_000_000;

pub fn echo(bind: SocketAddr, max: Duration) -> Result<()> {
    let sock = UdpSocket::bind(bind).with_context(|| format!("bind {bind}"))?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    crate::sys::ready()?;
    let start = Instant::now();
    let mut buf = [0u8; 2048];
    while start.elapsed() < max {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                let _ = sock.send_to(&buf[..n], from);
            }
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(e).context("recv_from"),
        }
    }
    Ok(())
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// One round trip: send `seq`, wait for the echo carrying it. Stale echoes
/// of earlier, timed-out requests are skipped. None on timeout.
fn round_trip(sock: &UdpSocket, buf: &mut [u8], seq: u64) -> Result<Option<Duration>> {
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    let t0 = Instant::now();
    match sock.send(buf) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Ok(None),
        Err(e) => return Err(e).context("send"),
    }
    let mut rx = [0u8; 2048];
    loop {
        match sock.recv(&mut rx) {
            Ok(n) if n >= 8 && rx[..8] == seq.to_le_bytes() => return Ok(Some(t0.elapsed())),
            Ok(_) => {}
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::ConnectionRefused => {
                return Ok(None)
            }
            Err(e) => return Err(e).context("recv"),
        }
    }
}

pub fn ping(to: SocketAddr, dur: Duration, size: usize, warmup: u32) -> Result<Value> {
    let sock = UdpSocket::bind(crate::sys::any_addr(to)).context("bind")?;
    sock.connect(to).with_context(|| format!("connect {to}"))?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut buf = vec![0u8; size.max(8)];
    let mut seq = 0u64;
    for _ in 0..warmup {
        seq += 1;
        round_trip(&sock, &mut buf, seq)?;
    }
    let mut rtts: Vec<u64> = Vec::with_capacity(1 << 20);
    let mut lost = 0u64;
    let start = Instant::now();
    while start.elapsed() < dur && rtts.len() < MAX_SAMPLES {
        seq += 1;
        match round_trip(&sock, &mut buf, seq)? {
            Some(rtt) => rtts.push(rtt.as_nanos() as u64),
            None => lost += 1,
        }
    }
    let secs = start.elapsed().as_secs_f64();
    rtts.sort_unstable();
    let asked = rtts.len() + lost as usize;
    let pct = |p: f64| -> Option<f64> {
        if asked == 0 {
            return None;
        }
        let i = ((asked - 1) as f64 * p).round() as usize;
        rtts.get(i).map(|&ns| ns as f64 / 1000.0)
    };
    let mean = if rtts.is_empty() {
        0.0
    } else {
        rtts.iter().sum::<u64>() as f64 / rtts.len() as f64 / 1000.0
    };
    Ok(json!({
        "samples": rtts.len(),
        "lost": lost,
        "secs": secs,
        "rate": rtts.len() as f64 / secs.max(1e-9),
        "p50_us": pct(0.50),
        "p90_us": pct(0.90),
        "p99_us": pct(0.99),
        "min_us": pct(0.0),
        "max_us": rtts.last().map(|&ns| ns as f64 / 1000.0),
        "mean_us": mean,
    }))
}
