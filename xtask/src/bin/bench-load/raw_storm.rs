//! A drop storm: Ethernet frames written straight onto a container's
//! `eth0` with an AF_PACKET raw socket, carrying an IPv4/UDP source
//! address that is not the container's, so the datapath drops each one
//! (`drop-spoofed-ip`). The frames carry the device's own MAC, so only the
//! address gives them away. Paced to a fixed rate (`pps`), or as fast as
//! sendmmsg allows with `pps` 0.
use std::{
    ffi::CString,
    io, mem,
    net::Ipv4Addr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};

use crate::sys::MsgBatch;

const ETH_P_ALL: u16 = 0x0003;
const ETH_P_IP: u16 = 0x0800;
const BATCH: usize = 64;
/// Pacing slots: at most this long between two batches of due frames.
const SLOT: Duration = Duration::from_micros(500);

fn hwaddr(fd: RawFd, dev: &str) -> Result<[u8; 6]> {
    // SAFETY: ifreq is plain data; the name fits (checked) and is
    // NUL-terminated by the zeroing.
    let mut req: libc::ifreq = unsafe { mem::zeroed() };
    let name = dev.as_bytes();
    if name.len() >= req.ifr_name.len() {
        bail!("device name {dev} is too long");
    }
    for (d, s) in req.ifr_name.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    // SAFETY: a valid ifreq for SIOCGIFHWADDR.
    if unsafe { libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut req) } != 0 {
        return Err(io::Error::last_os_error()).context("SIOCGIFHWADDR");
    }
    // SAFETY: the kernel filled ifru_hwaddr.
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (m, d) in mac.iter_mut().zip(data.iter()) {
        *m = *d as u8;
    }
    Ok(mac)
}

fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A 60-byte frame (the Ethernet minimum): broadcast destination, as
/// e2e_monitor's storm sends it; UDP without a checksum.
fn frame(mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let payload = 18usize;
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ETH_P_IP.to_be_bytes());
    let total = (20 + 8 + payload) as u16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let csum = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&1234u16.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend(std::iter::repeat_n(0x5a, payload));
    f
}

fn raw_socket(dev: &str) -> Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(ETH_P_ALL.to_be()),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context("socket(AF_PACKET)");
    }
    // SAFETY: fd is a fresh socket nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = CString::new(dev)?;
    // SAFETY: a valid C string.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        bail!("no device {dev} in this network namespace");
    }
    // SAFETY: sockaddr_ll is plain data.
    let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = ETH_P_ALL.to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: a valid sockaddr_ll of the stated length.
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error()).with_context(|| format!("bind to {dev}"));
    }
    Ok(sock)
}

pub fn storm(
    dev: &str,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    dport: u16,
    pps: u64,
    dur: Duration,
) -> Result<Value> {
    let sock = raw_socket(dev)?;
    let fd = sock.as_raw_fd();
    let mut buf = frame(hwaddr(fd, dev)?, src, dst, dport);
    let len = buf.len();
    let mut batch = MsgBatch::new(&mut buf, len, BATCH);
    let start = Instant::now();
    let (mut sent, mut errors) = (0u64, 0u64);
    while start.elapsed() < dur {
        let want = if pps == 0 {
            BATCH as u64
        } else {
            let due = (pps as f64 * start.elapsed().as_secs_f64()) as u64;
            if sent >= due {
                std::thread::sleep(SLOT);
                continue;
            }
            due - sent
        };
        match batch.send_some(fd, want.min(BATCH as u64) as usize) {
            Ok(n) => sent += n as u64,
            Err(libc::ENOBUFS) | Err(libc::EAGAIN) | Err(libc::EINTR) => errors += 1,
            Err(e) => bail!("sendmmsg: errno {e}"),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(json!({
        "sent": sent,
        "errors": errors,
        "secs": secs,
        "pps": sent as f64 / secs,
        "target_pps": pps,
        "frame_bytes": len,
    }))
}
