//! Small-packet rate: a sendmmsg blaster and a recvmmsg counter. The bench
//! divides what the receiver counted by the sender's sending time, so a
//! stall or a loss mid-run lowers the figure instead of vanishing from a
//! first-to-last interval; the receiver also reports its longest silence
//! and its socket's own drops, so a loss can be told apart from the path's.
use std::{
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd as _,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};

use crate::sys::{self, MsgBatch};

const RCVBUF_BYTES: i32 = 8 << 20;

pub fn sink(bind: SocketAddr, max: Duration, idle: Duration) -> Result<Value> {
    let sock = UdpSocket::bind(bind).with_context(|| format!("bind {bind}"))?;
    let fd = sock.as_raw_fd();
    sys::big_rcvbuf(fd, RCVBUF_BYTES);
    // Wake up regularly to check the idle and overall deadlines.
    sys::set_timeout(fd, libc::SO_RCVTIMEO, Duration::from_millis(50))?;
    let mut buf = vec![0u8; 2048];
    let len = buf.len();
    let mut batch = MsgBatch::new(&mut buf, len, 64);
    sys::ready()?;

    let start = Instant::now();
    let mut first: Option<Instant> = None;
    let mut last = start;
    let mut packets: u64 = 0;
    let mut max_gap = Duration::ZERO;
    loop {
        match batch.recv(fd) {
            Ok(n) => {
                let now = Instant::now();
                if first.is_some() {
                    max_gap = max_gap.max(now - last);
                }
                first.get_or_insert(now);
                last = now;
                packets += n as u64;
            }
            Err(libc::EAGAIN) | Err(libc::EINTR) => {}
            Err(e) => bail!("recvmmsg: errno {e}"),
        }
        let now = Instant::now();
        if first.is_some() && now - last >= idle {
            break;
        }
        if now - start >= max {
            break;
        }
    }
    let secs = first.map_or(0.0, |f| (last - f).as_secs_f64());
    Ok(json!({
        "packets": packets,
        "first_to_last_secs": secs,
        "max_gap_ms": max_gap.as_secs_f64() * 1e3,
        "socket_drops": sys::socket_drops(fd),
    }))
}

pub fn blast(to: SocketAddr, dur: Duration, size: usize, batch_len: usize) -> Result<Value> {
    let sock = UdpSocket::bind(sys::any_addr(to)).context("bind")?;
    sock.connect(to).with_context(|| format!("connect {to}"))?;
    let fd = sock.as_raw_fd();
    let mut payload = vec![0x5au8; size.max(1)];
    let mut batch = MsgBatch::new(&mut payload, size, batch_len.max(1));

    let start = Instant::now();
    let mut sent: u64 = 0;
    let mut errors: u64 = 0;
    while start.elapsed() < dur {
        match batch.send(fd) {
            Ok(n) => sent += n as u64,
            // A full device queue or an ICMP error from a missing receiver
            // does not end the run; it is counted.
            Err(libc::ENOBUFS) | Err(libc::EAGAIN) | Err(libc::ECONNREFUSED) | Err(libc::EINTR) => {
                errors += 1
            }
            Err(e) => bail!("sendmmsg: errno {e}"),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(json!({"sent": sent, "errors": errors, "secs": secs, "pps": sent as f64 / secs}))
}
