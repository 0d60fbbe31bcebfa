//! The node's flows that exist before `up`: the uplink's egress program
//! holds every node flow in the NAT table from its next packet on, but a
//! container could claim an idle one's tuple first. `up` holds them all at
//! once from the node's socket table, as the kernel's conntrack already
//! knows them when MASQUERADE is added.
use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::Result;
use ebridge_common::nat::{
    NatEntryOf, NatKeyOf, CT_CLOSING, CT_ESTABLISHED, CT_FIN_WAIT, CT_NEW, CT_SYN_SENT, DIR_REPLY,
    IPPROTO_TCP, NAT_F_REPLIED, OWNER_NODE,
};

use crate::{
    maps::DatapathMaps,
    proc_net::{self, Addr, Socket},
};

/// `BPF_NOEXIST` (aya has no name for the update flags).
const BPF_NOEXIST: u64 = 1;

/// Holds the tuple of every connected socket of the node on the uplink's
/// masquerade addresses (`uplink_ip6`: the IPv6 one, when IPv6 is
/// masqueraded). Returns how many were held.
pub fn hold_existing(
    maps: &mut DatapathMaps,
    uplink_ip: Ipv4Addr,
    uplink_ip6: Option<Ipv6Addr>,
    now_ns: u64,
) -> Result<usize> {
    let mut held = 0;
    for socket in proc_net::sockets()? {
        // BPF_NOEXIST: a flow the datapath already holds stays as it is.
        let inserted = match (socket.local_addr, socket.remote_addr) {
            (Addr::V4(l), Addr::V4(r)) if l == uplink_ip => {
                reservation(&socket, l.octets(), r.octets(), now_ns)
                    .is_some_and(|(k, e)| maps.nat.insert(k, e, BPF_NOEXIST).is_ok())
            }
            (Addr::V6(l), Addr::V6(r)) if Some(l) == uplink_ip6 => {
                reservation(&socket, l.octets(), r.octets(), now_ns)
                    .is_some_and(|(k, e)| maps.nat6.insert(k, e, BPF_NOEXIST).is_ok())
            }
            _ => false,
        };
        held += usize::from(inserted);
    }
    Ok(held)
}

/// The reservation the egress program would make for `s`'s flow from
/// `local` (the uplink's address) to `remote`.
fn reservation<A: Copy + Default + PartialEq>(
    s: &Socket,
    local: A,
    remote: A,
    now_ns: u64,
) -> Option<(NatKeyOf<A>, NatEntryOf<A>)> {
    if remote == A::default() || s.remote_port == 0 {
        return None;
    }
    if s.proto == IPPROTO_TCP && matches!(s.state, proc_net::TCP_LISTEN | proc_net::TCP_CLOSE) {
        return None;
    }
    let key = NatKeyOf {
        saddr: remote,
        daddr: local,
        sport: s.remote_port.to_be(),
        dport: s.local_port.to_be(),
        proto: s.proto,
        dir: DIR_REPLY,
        _pad: [0; 2],
    };
    let entry = NatEntryOf {
        owner: OWNER_NODE,
        addr: local,
        port: s.local_port.to_be(),
        state: if s.proto == IPPROTO_TCP {
            tcp_state(s.state)
        } else {
            CT_NEW
        },
        flags: NAT_F_REPLIED,
        created_ns: now_ns,
        last_seen_ns: now_ns,
        ..NatEntryOf::default()
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
    use ebridge_common::nat::{NatEntry, NatKey, IPPROTO_UDP};

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

    /// What `hold_existing` asks of a socket on the uplink's IPv4 address.
    fn held(s: &Socket, up: Ipv4Addr) -> Option<(NatKey, NatEntry)> {
        match (s.local_addr, s.remote_addr) {
            (Addr::V4(l), Addr::V4(r)) if l == up => reservation(s, l.octets(), r.octets(), 7),
            _ => None,
        }
    }

    #[test]
    fn holds_ipv6_flows_in_their_own_layout() {
        let local: Ipv6Addr = "2001:db8:51::1".parse().unwrap();
        let remote: Ipv6Addr = "2001:db8:52::2".parse().unwrap();
        let s = Socket {
            proto: IPPROTO_TCP,
            local_addr: Addr::V6(local),
            local_port: 42000,
            remote_addr: Addr::V6(remote),
            remote_port: 443,
            state: 1,
        };
        let (key, entry) = reservation(&s, local.octets(), remote.octets(), 7).expect("held");
        assert_eq!((key.saddr, key.daddr), (remote.octets(), local.octets()));
        assert_eq!(u16::from_be(key.dport), 42000);
        assert_eq!((entry.owner, entry.addr), (OWNER_NODE, local.octets()));
    }

    #[test]
    fn holds_connected_sockets_on_the_uplink_address_only() {
        let up = Ipv4Addr::new(198, 51, 100, 1);
        let live = socket(IPPROTO_TCP, up.octets(), 42000, [203, 0, 113, 10], 179, 1);
        let (key, entry) = held(&live, up).expect("held");
        assert_eq!(key.saddr, [203, 0, 113, 10]);
        assert_eq!(u16::from_be(key.sport), 179);
        assert_eq!(u16::from_be(key.dport), 42000);
        assert_eq!(key.dir, DIR_REPLY);
        assert_eq!((entry.owner, entry.port), (OWNER_NODE, key.dport));
        assert_eq!(entry.state, CT_ESTABLISHED);
        let closing = socket(IPPROTO_TCP, up.octets(), 42001, [203, 0, 113, 10], 179, 6);
        assert_eq!(held(&closing, up).expect("held").1.state, CT_CLOSING);
        let dns = socket(IPPROTO_UDP, up.octets(), 40000, [203, 0, 113, 53], 53, 1);
        assert!(held(&dns, up).is_some());
        let listening = socket(
            IPPROTO_TCP,
            up.octets(),
            22,
            [0; 4],
            0,
            proc_net::TCP_LISTEN,
        );
        assert!(held(&listening, up).is_none());
        let other_addr = socket(IPPROTO_TCP, [10, 0, 0, 1], 42000, [203, 0, 113, 10], 179, 1);
        assert!(held(&other_addr, up).is_none());
        let unconnected_udp = socket(IPPROTO_UDP, up.octets(), 5353, [0; 4], 0, 7);
        assert!(held(&unconnected_udp, up).is_none());
    }
}
