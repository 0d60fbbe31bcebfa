//! The node's sockets as /proc/net/{tcp,udp}{,6} list them (this network
//! namespace's): what publishing checks for listeners and `up` holds for
//! the node's live flows.
use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::Result;
use ebridge_common::nat::{IPPROTO_TCP, IPPROTO_UDP};

/// A socket's address as /proc/net prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addr {
    V4(Ipv4Addr),
    /// All zeros in the IPv6 table: every address of both families.
    Any,
    /// A specific IPv6 address.
    V6(Ipv6Addr),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Socket {
    pub proto: u8,
    pub local_addr: Addr,
    pub local_port: u16,
    pub remote_addr: Addr,
    pub remote_port: u16,
    /// The kernel's socket state (TCP_ESTABLISHED = 1 ... TCP_LISTEN = 10).
    pub state: u8,
}

pub const TCP_ESTABLISHED: u8 = 0x01;
pub const TCP_TIME_WAIT: u8 = 0x06;
pub const TCP_CLOSE: u8 = 0x07;
pub const TCP_LISTEN: u8 = 0x0a;

/// The state /proc/net shows for a listening TCP or bound UDP socket.
pub fn listen_state(proto: u8) -> u8 {
    if proto == IPPROTO_TCP {
        TCP_LISTEN
    } else {
        TCP_CLOSE
    }
}

/// Every TCP and UDP socket of this network namespace, both families.
pub fn sockets() -> Result<Vec<Socket>> {
    let mut out = Vec::new();
    for (file, proto) in [
        ("/proc/net/tcp", IPPROTO_TCP),
        ("/proc/net/tcp6", IPPROTO_TCP),
        ("/proc/net/udp", IPPROTO_UDP),
        ("/proc/net/udp6", IPPROTO_UDP),
    ] {
        // A kernel without IPv6 has no *6 files.
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        out.extend(parse(&text, proto));
    }
    Ok(out)
}

pub fn parse(text: &str, proto: u8) -> Vec<Socket> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local_addr, local_port) = endpoint(fields.get(1)?)?;
            let (remote_addr, remote_port) = endpoint(fields.get(2)?)?;
            let state = u8::from_str_radix(fields.get(3)?, 16).ok()?;
            Some(Socket {
                proto,
                local_addr,
                local_port,
                remote_addr,
                remote_port,
                state,
            })
        })
        .collect()
}

fn endpoint(text: &str) -> Option<(Addr, u16)> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let addr = match addr.len() {
        // IPv4 in host byte order (little-endian here).
        8 => Addr::V4(Ipv4Addr::from(
            u32::from_str_radix(addr, 16).ok()?.to_ne_bytes(),
        )),
        _ if addr.chars().all(|c| c == '0') => Addr::Any,
        // Four 32-bit words, each in host byte order.
        32 => {
            let mut octets = [0u8; 16];
            for (i, chunk) in octets.chunks_mut(4).enumerate() {
                let word = u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok()?;
                chunk.copy_from_slice(&word.to_ne_bytes());
            }
            let v6 = Ipv6Addr::from(octets);
            // A dual-stack socket on an IPv4 address shows it mapped.
            match v6.to_ipv4_mapped() {
                Some(v4) => Addr::V4(v4),
                None => Addr::V6(v6),
            }
        }
        _ => return None,
    };
    Some((addr, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_ends_and_state() {
        let tcp = "  sl  local_address rem_address   st\n\
                   0: 0100007F:1F90 00000000:0000 0A 0\n\
                   1: 016433C6:A000 0A7100CB:0035 01 0\n\
                   2: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 0\n";
        let s = parse(tcp, IPPROTO_TCP);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].local_addr, Addr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!((s[0].local_port, s[0].state), (8080, TCP_LISTEN));
        assert_eq!(s[1].local_addr, Addr::V4(Ipv4Addr::new(198, 51, 100, 1)));
        assert_eq!(s[1].remote_addr, Addr::V4(Ipv4Addr::new(203, 0, 113, 10)));
        assert_eq!((s[1].local_port, s[1].remote_port), (40960, 53));
        assert_eq!(s[1].state, TCP_ESTABLISHED);
        assert_eq!(s[2].local_addr, Addr::Any);
        let tcp6 = "  sl  local_address rem_address   st\n\
                    0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 0\n\
                    1: B80D0120000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 0\n\
                    2: 0000000000000000FFFF00000100007F:0035 00000000000000000000000000000000:0000 0A 0\n";
        let s = parse(tcp6, IPPROTO_TCP);
        assert_eq!(s[0].local_addr, Addr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(s[1].local_addr, Addr::V6("2001:db8::1".parse().unwrap()));
        assert_eq!(s[2].local_addr, Addr::V4(Ipv4Addr::LOCALHOST));
    }
}
