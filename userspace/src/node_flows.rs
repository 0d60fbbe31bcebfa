//! The node's flows that exist before `up`: the uplink's egress program
//! holds every node flow in the NAT table from its next packet on, but a
//! container could claim an idle one's tuple first. `up` holds them all at
//! once from the node's socket table, as the kernel's conntrack already
//! knows them when MASQUERADE is added.
use std::net::Ipv4Addr;

use anyhow::Result;
use ebridge_common::nat::{
    NatEntry, NatKey, CT_CLOSING, CT_ESTABLISHED, CT_FIN_WAIT, CT_NEW, CT_SYN_SENT, DIR_REPLY,
    IPPROTO_TCP, NAT_F_REPLIED, OWNER_NODE,
};

use crate::{
    maps::DatapathMaps,
    proc_net::{self, Addr, Socket},
};

/// `BPF_NOEXIST` (aya has no name for the update flags).
const BPF_NOEXIST: u64 = 1;

/// Holds the tuple of every connected socket of the node on `uplink_ip`.
/// Returns how many were held.
pub fn hold_existing(maps: &mut DatapathMaps, uplink_ip: Ipv4Addr, now_ns: u64) -> Result<usize> {
    let mut held = 0;
    for socket in proc_net::sockets()? {
        let Some((key, entry)) = reservation(&socket, uplink_ip, now_ns) else {
            continue;
        };
        // BPF_NOEXIST: a flow the datapath already holds stays as it is.
        if maps.nat.insert(key, entry, BPF_NOEXIST).is_ok() {
            held += 1;
        }
    }
    Ok(held)
}

/// The reservation the egress program would make for `socket`'s flow.
fn reservation(s: &Socket, uplink_ip: Ipv4Addr, now_ns: u64) -> Option<(NatKey, NatEntry)> {
    let (Addr::V4(local), Addr::V4(remote)) = (s.local_addr, s.remote_addr) else {
        return None;
    };
    if local != uplink_ip || remote.is_unspecified() || s.remote_port == 0 {
        return None;
    }
    if s.proto == IPPROTO_TCP && matches!(s.state, proc_net::TCP_LISTEN | proc_net::TCP_CLOSE) {
        return None;
    }
    let key = NatKey {
        saddr: remote.octets(),
        daddr: local.octets(),
        sport: s.remote_port.to_be(),
        dport: s.local_port.to_be(),
        proto: s.proto,
        dir: DIR_REPLY,
        _pad: [0; 2],
    };
    let entry = NatEntry {
        owner: OWNER_NODE,
        addr: local.octets(),
        port: s.local_port.to_be(),
        state: if s.proto == IPPROTO_TCP {
            tcp_state(s.state)
        } else {
            CT_NEW
        },
        flags: NAT_F_REPLIED,
        created_ns: now_ns,
        last_seen_ns: now_ns,
        ..NatEntry::default()
    };
    Some((key, entry))
}

/// The conntrack state (and so the idle timeout) of a node socket's state.
fn tcp_state(socket_state: u8) -> u8 {
    match socket_state {
        proc_net::TCP_ESTABLISHED => CT_ESTABLISHED,
        // SYN_SENT, SYN_RECV
        0x02 | 0x03 => CT_SYN_SENT,
        proc_net::TCP_TIME_WAIT => CT_CLOSING,
        // FIN_WAIT1/2, CLOSE_WAIT, LAST_ACK, CLOSING
        _ => CT_FIN_WAIT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebridge_common::nat::IPPROTO_UDP;

    fn socket(
        proto: u8,
        local: [u8; 4],
        lport: u16,
        remote: [u8; 4],
        rport: u16,
        state: u8,
    ) -> Socket {
        Socket {
            proto,
            local_addr: Addr::V4(local.into()),
            local_port: lport,
            remote_addr: Addr::V4(remote.into()),
            remote_port: rport,
            state,
        }
    }

    #[test]
    fn holds_connected_sockets_on_the_uplink_address_only() {
        let up = Ipv4Addr::new(198, 51, 100, 1);
        let live = socket(IPPROTO_TCP, up.octets(), 42000, [203, 0, 113, 10], 179, 1);
        let (key, entry) = reservation(&live, up, 7).expect("held");
        assert_eq!(key.saddr, [203, 0, 113, 10]);
        assert_eq!(u16::from_be(key.sport), 179);
        assert_eq!(u16::from_be(key.dport), 42000);
        assert_eq!(key.dir, DIR_REPLY);
        assert_eq!((entry.owner, entry.port), (OWNER_NODE, key.dport));
        assert_eq!(entry.state, CT_ESTABLISHED);
        let closing = socket(IPPROTO_TCP, up.octets(), 42001, [203, 0, 113, 10], 179, 6);
        assert_eq!(
            reservation(&closing, up, 7).expect("held").1.state,
            CT_CLOSING
        );
        let dns = socket(IPPROTO_UDP, up.octets(), 40000, [203, 0, 113, 53], 53, 1);
        assert!(reservation(&dns, up, 7).is_some());
        let listening = socket(
            IPPROTO_TCP,
            up.octets(),
            22,
            [0; 4],
            0,
            proc_net::TCP_LISTEN,
        );
        assert!(reservation(&listening, up, 7).is_none());
        let other_addr = socket(IPPROTO_TCP, [10, 0, 0, 1], 42000, [203, 0, 113, 10], 179, 1);
        assert!(reservation(&other_addr, up, 7).is_none());
        let unconnected_udp = socket(IPPROTO_UDP, up.octets(), 5353, [0; 4], 0, 7);
        assert!(reservation(&unconnected_udp, up, 7).is_none());
    }
}
