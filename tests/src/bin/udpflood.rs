//! Small-packet UDP load for the XDP measurement (`tests/bench/xdp-revnat.sh`):
//! replies of a masqueraded flow, outside → container, as fast as one
//! sending core can push them with `sendmmsg`.
//!
//! ```text
//! udpflood send ADDR:PORT SIZE SECS   # outside: wait for a hello, then
//!                                     # flood its sender for SECS seconds
//! udpflood recv SERVER:PORT SECS      # container: say hello (opens the
//!                                     # NAT flow), count what comes back
//! ```
//! Both print one line of `key=value`s: `sent=… pps=…` / `received=… pps=…`
//! (the receiver's rate is over the time from its first to its last packet).
use std::{
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd as _,
    time::{Duration, Instant},
};

const BATCH: usize = 64;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: udpflood send ADDR:PORT SIZE SECS | udpflood recv SERVER:PORT SECS";
    match args.get(1).map(String::as_str) {
        Some("send") if args.len() == 5 => send(
            args[2].parse().expect("ADDR:PORT"),
            args[3].parse().expect("SIZE"),
            args[4].parse().expect("SECS"),
        ),
        Some("recv") if args.len() == 4 => recv(
            args[2].parse().expect("SERVER:PORT"),
            args[3].parse().expect("SECS"),
        ),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}

fn send(listen: SocketAddr, size: usize, secs: u64) {
    let sock = UdpSocket::bind(listen).expect("bind");
    let mut buf = [0u8; 64];
    let (_, peer) = sock.recv_from(&mut buf).expect("hello");
    sock.connect(peer).expect("connect");
    let payload = vec![0x5au8; size];
    let mut iov: Vec<libc::iovec> = (0..BATCH)
        .map(|_| libc::iovec {
            iov_base: payload.as_ptr() as *mut libc::c_void,
            iov_len: payload.len(),
        })
        .collect();
    // SAFETY: zeroed msghdrs, each pointing at one iovec that outlives them.
    let mut msgs: Vec<libc::mmsghdr> = iov
        .iter_mut()
        .map(|v| {
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    let start = Instant::now();
    let until = start + Duration::from_secs(secs);
    let mut sent: u64 = 0;
    while Instant::now() < until {
        // SAFETY: a connected socket and BATCH valid messages.
        let n = unsafe {
            libc::sendmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                0,
            )
        };
        if n > 0 {
            sent += n as u64;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!("sent={sent} pps={:.0}", sent as f64 / secs);
}

fn recv(server: SocketAddr, secs: u64) {
    let sock = UdpSocket::bind("0.0.0.0:5000").expect("bind 0.0.0.0:5000");
    let big: libc::c_int = 64 << 20;
    // SAFETY: plain setsockopt with a valid int.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&big as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut bufs = vec![[0u8; 2048]; BATCH];
    let mut iov: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: zeroed msghdrs, each pointing at one iovec that outlives them.
    let mut msgs: Vec<libc::mmsghdr> = iov
        .iter_mut()
        .map(|v| {
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut received: u64 = 0;
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    while Instant::now() < deadline {
        if first.is_none() {
            sock.send_to(b"hello", server).expect("hello");
        }
        // SAFETY: BATCH valid messages; the socket has a read timeout.
        let n = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                0,
                std::ptr::null_mut(),
            )
        };
        if n > 0 {
            let now = Instant::now();
            first.get_or_insert(now);
            last = now;
            received += n as u64;
        } else if first.is_some() && last.elapsed() > Duration::from_millis(500) {
            break;
        }
    }
    let span = first.map(|f| (last - f).as_secs_f64()).unwrap_or(0.0);
    let pps = if span > 0.0 {
        received as f64 / span
    } else {
        0.0
    };
    println!("received={received} pps={pps:.0}");
}
