//! The node's own flows through the uplink address share the NAT port
//! space with masqueraded containers (`ebpf/src/node_flow.rs`): the
//! uplink's egress program holds every node flow's tuple, a container
//! never takes a held tuple, a node flow that finds its tuple taken by a
//! container has its port moved (and moved back on replies), replies to
//! node flows go to the node's stack, and another bridge's flows are held
//! and handed on. Packets for the node pass whatever their TTL.
mod common;

use common::{frame::*, nat::*, packet_test::*};
use ebridge_common::{
    nat::{
        bridge_mark, NatKey, CT_CLOSING, CT_ESTABLISHED, CT_SYN_SENT, DIR_NODE, OWNER_CONTAINER,
        OWNER_NODE, OWNER_OTHER_BRIDGE,
    },
    stats::*,
};

/// UDP the node's stack sends from the uplink address.
fn node_udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let l4 = udp(UPLINK_IP, REMOTE_IP, sport, dport, payload);
    ethernet(
        NEXT_HOP_MAC,
        UPLINK_MAC,
        ETH_P_IPV4,
        &ipv4(UPLINK_IP, REMOTE_IP, IPPROTO_UDP, &l4),
    )
}

fn node_tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let l4 = tcp(UPLINK_IP, REMOTE_IP, sport, dport, flags, 1, 0, b"");
    ethernet(
        NEXT_HOP_MAC,
        UPLINK_MAC,
        ETH_P_IPV4,
        &ipv4(UPLINK_IP, REMOTE_IP, IPPROTO_TCP, &l4),
    )
}

/// REMOTE:53 answering UDP to the uplink address's `dport`.
fn udp_reply(dport: u16) -> Vec<u8> {
    let l4 = udp(REMOTE_IP, UPLINK_IP, 53, dport, b"answer");
    inbound(REMOTE_IP, UPLINK_IP, IPPROTO_UDP, &l4)
}

fn packets(lab: &NatLab, reason: u32) -> u64 {
    lab.dp().stats()[reason as usize].packets
}

#[test]
fn node_udp_flow_is_held_and_its_replies_go_to_the_node() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let out = node_udp(40000, 53, b"query");

        let sent = lab.uplink_sends(&out);

        sent.assert_verdict(TC_NEXT);
        sent.assert_frame_unchanged(&out);
        let held = lab
            .dp()
            .nat_get(&reply_key(IPPROTO_UDP, (REMOTE_IP, 53), 40000))
            .expect("the node's tuple is held");
        assert_eq!(held.owner, OWNER_NODE);
        assert_eq!(u16::from_be(held.port), 40000, "its own port");
        assert_eq!(held.addr, UPLINK_IP);
        lab.assert_nat_len(1);

        let reply = udp_reply(40000);
        let got = lab.uplink_receives(&reply);
        got.assert_verdict(TC_NEXT);
        got.assert_frame_unchanged(&reply);
        lab.dp().assert_counters(&[
            (PASS_NODE_FLOW_OUT, 1, out.len() as u64),
            (PASS_NODE_FLOW_IN, 1, reply.len() as u64),
        ]);
    });
}

#[test]
fn a_container_never_takes_a_tuple_the_node_holds() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        lab.uplink_sends(&node_udp(40000, 53, b"node first"))
            .assert_verdict(TC_NEXT);

        let (sent, port) = lab.open_flow(lab.fx.a, &udp_out(IP_A, 40000, REMOTE_IP, 53, MAC_A));

        assert_ne!(
            port, 40000,
            "the node's port is not the container's to keep"
        );
        assert!(port >= 1024, "a port of the range: {port}");
        assert_eq!(Pkt(&sent).ip().dport(), 53);
        // Each side's replies reach it.
        let to_node = lab.uplink_receives(&udp_reply(40000));
        to_node.assert_verdict(TC_NEXT);
        assert_eq!(packets(&lab, FWD_REVNAT), 0);
        let to_container = lab.uplink_receives(&udp_reply(port));
        to_container.assert_verdict(TC_ACT_REDIRECT);
        let ip = Pkt(&to_container.out).ip();
        assert_eq!((ip.daddr(), ip.dport()), (IP_A, 40000));
        assert_eq!(packets(&lab, PASS_NODE_FLOW_IN), 1);
    });
}

#[test]
fn a_node_flow_on_a_containers_tuple_is_moved_and_moved_back() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let (_, kept) = lab.open_flow(lab.fx.a, &udp_out(IP_A, 40000, REMOTE_IP, 53, MAC_A));
        assert_eq!(kept, 40000, "the container keeps its own port");

        let out = node_udp(40000, 53, b"node second");
        let sent = lab.uplink_sends(&out);

        sent.assert_verdict(TC_NEXT);
        let ip = Pkt(&sent.out).ip();
        let moved = ip.sport();
        assert_ne!(moved, 40000, "moved off the container's tuple");
        assert_eq!(
            (ip.saddr(), ip.daddr(), ip.dport()),
            (UPLINK_IP, REMOTE_IP, 53)
        );
        ip.assert_checksums("moved node packet");
        assert_eq!(packets(&lab, PASS_NODE_PORT_MOVED), 1);
        let node_key = NatKey {
            saddr: UPLINK_IP,
            daddr: REMOTE_IP,
            sport: 40000u16.to_be(),
            dport: 53u16.to_be(),
            proto: IPPROTO_UDP,
            dir: DIR_NODE,
            _pad: [0; 2],
        };
        let entry = lab.dp().nat_get(&node_key).expect("the node flow's entry");
        assert_eq!((entry.owner, u16::from_be(entry.port)), (OWNER_NODE, moved));

        // Later packets keep the moved port.
        let again = lab.uplink_sends(&node_udp(40000, 53, b"again"));
        assert_eq!(Pkt(&again.out).ip().sport(), moved);

        // Its replies get the node's own port back and go to the node.
        let back = lab.uplink_receives(&udp_reply(moved));
        back.assert_verdict(TC_NEXT);
        let ip = Pkt(&back.out).ip();
        assert_eq!((ip.daddr(), ip.dport()), (UPLINK_IP, 40000));
        ip.assert_checksums("restored reply");
        // The container's replies still reach the container.
        let theirs = lab.uplink_receives(&udp_reply(40000));
        theirs.assert_verdict(TC_ACT_REDIRECT);
        assert_eq!(Pkt(&theirs.out).ip().daddr(), IP_A);

        // An ICMP error about the moved packet names the node's own port.
        let quoted = Pkt(&sent.out).ip();
        let err = icmp_error(3, 3, [0; 4], &quoted.0[..quoted.ihl() + 8]);
        let frame = inbound(REMOTE_IP, UPLINK_IP, IPPROTO_ICMP, &err);
        let run = lab.uplink_receives(&frame);
        run.assert_verdict(TC_NEXT);
        let ip = Pkt(&run.out).ip();
        assert_eq!(ip.daddr(), UPLINK_IP);
        assert_eq!(
            ip.quoted().sport(),
            40000,
            "the quote names the node's port"
        );
        ip.assert_checksums("ICMP error about a moved node flow");
        ip.quoted().assert_header_checksum("quote");
    });
}

#[test]
fn a_moved_node_flow_keeps_its_port_after_the_container_flow_is_gone() {
    in_private_netns(|net| {
        let mut lab = NatLab::new(net);
        lab.open_flow(lab.fx.a, &udp_out(IP_A, 40000, REMOTE_IP, 53, MAC_A));
        let moved = Pkt(&lab.uplink_sends(&node_udp(40000, 53, b"x")).out)
            .ip()
            .sport();
        // The agent expires the container's flow.
        lab.nat_remove(&orig_key(IPPROTO_UDP, (IP_A, 40000), (REMOTE_IP, 53)));
        lab.nat_remove(&reply_key(IPPROTO_UDP, (REMOTE_IP, 53), 40000));

        let later = lab.uplink_sends(&node_udp(40000, 53, b"y"));

        assert_eq!(Pkt(&later.out).ip().sport(), moved, "a flow keeps its port");
    });
}

#[test]
fn node_tcp_flow_state_follows_both_directions() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let key = reply_key(IPPROTO_TCP, (REMOTE_IP, 179), 42000);
        let state = || lab.dp().nat_get(&key).expect("held").state;
        let from_peer = |flags| {
            let l4 = tcp(REMOTE_IP, UPLINK_IP, 179, 42000, flags, 1, 1, b"");
            inbound(REMOTE_IP, UPLINK_IP, IPPROTO_TCP, &l4)
        };

        lab.uplink_sends(&node_tcp(42000, 179, TCP_SYN));
        assert_eq!(state(), CT_SYN_SENT);
        lab.uplink_receives(&from_peer(TCP_SYN | TCP_ACK))
            .assert_verdict(TC_NEXT);
        assert_eq!(state(), CT_ESTABLISHED);
        lab.uplink_sends(&node_tcp(42000, 179, TCP_FIN | TCP_ACK));
        lab.uplink_receives(&from_peer(TCP_FIN | TCP_ACK));
        assert_eq!(state(), CT_CLOSING, "both FINs: TIME_WAIT");
        // A new connection on the same tuple.
        lab.uplink_sends(&node_tcp(42000, 179, TCP_SYN));
        assert_eq!(state(), CT_SYN_SENT);
        lab.assert_nat_len(1);
    });
}

#[test]
fn node_ping_identifier_is_held_too() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let echo = icmp_echo(0x4242, 1, b"ping");
        let out = ethernet(
            NEXT_HOP_MAC,
            UPLINK_MAC,
            ETH_P_IPV4,
            &ipv4(UPLINK_IP, REMOTE_IP, IPPROTO_ICMP, &echo),
        );
        lab.uplink_sends(&out).assert_verdict(TC_NEXT);

        let mine = icmp_frame_echo(IP_A, 0x4242);
        let (sent, id) = lab.open_flow(lab.fx.a, &mine);
        assert_ne!(id, 0x4242, "the node's identifier is held");
        assert_eq!(Pkt(&sent).ip().icmp_type(), 8);
    });
}

/// An echo request from container A with identifier `id`.
fn icmp_frame_echo(src: [u8; 4], id: u16) -> Vec<u8> {
    let echo = icmp_echo(id, 1, b"ping");
    ethernet(
        BRIDGE_MAC,
        MAC_A,
        ETH_P_IPV4,
        &ipv4(src, REMOTE_IP, IPPROTO_ICMP, &echo),
    )
}

#[test]
fn own_packets_are_not_held_but_another_bridges_are() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        // Ours: the endpoint program's mark. Nothing more is made.
        let (sent, _) = lab.open_flow(lab.fx.a, &udp_out(IP_A, 40000, REMOTE_IP, 53, MAC_A));
        lab.uplink_sends_marked(&sent, lab.own_mark())
            .assert_verdict(TC_NEXT);
        lab.assert_nat_len(2);

        // Another bridge's translated packet: held for it, never moved.
        let theirs = node_udp(41000, 53, b"other bridge");
        let other = bridge_mark(net.bridge + 1000);
        let run = lab.uplink_sends_marked(&theirs, other);
        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&theirs);
        let held = lab
            .dp()
            .nat_get(&reply_key(IPPROTO_UDP, (REMOTE_IP, 53), 41000))
            .expect("held for the other bridge");
        assert_eq!(held.owner, OWNER_OTHER_BRIDGE);
        // Its replies go on to the next program in the chain, untouched.
        let reply = udp_reply(41000);
        let run = lab.uplink_receives(&reply);
        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&reply);
        assert_eq!(packets(&lab, PASS_OTHER_BRIDGE), 1);
        // Our containers cannot take its tuple.
        let (_, port) = lab.open_flow(lab.fx.a, &udp_out(IP_A, 41000, REMOTE_IP, 53, MAC_A));
        assert_ne!(port, 41000);

        // The other bridge sending on a tuple our container holds (two
        // CPUs claiming at once): it leaves unchanged, counted.
        let clash = node_udp(40000, 53, b"clash");
        let run = lab.uplink_sends_marked(&clash, other);
        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&clash);
        assert_eq!(packets(&lab, PASS_OTHER_BRIDGE_CLASH), 1);
        let ours = lab
            .dp()
            .nat_get(&reply_key(IPPROTO_UDP, (REMOTE_IP, 53), 40000))
            .expect("still ours");
        assert_eq!(ours.owner, OWNER_CONTAINER);
    });
}

#[test]
fn packets_for_the_node_pass_whatever_their_ttl() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let ttl1 = Ipv4Opts {
            ttl: 1,
            ..Ipv4Opts::default()
        };
        // A BGP peer's SYN to the node (no flow, nothing published).
        let syn = tcp(NEXT_HOP_IP, UPLINK_IP, 40179, 179, TCP_SYN, 1, 0, b"");
        let frame = inbound_with(&ttl1, NEXT_HOP_IP, UPLINK_IP, IPPROTO_TCP, &syn);
        let run = lab.uplink_receives(&frame);
        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&frame);
        // A ping with TTL 1.
        let echo = icmp_echo(7, 1, b"ttl 1");
        let frame = inbound_with(&ttl1, NEXT_HOP_IP, UPLINK_IP, IPPROTO_ICMP, &echo);
        lab.uplink_receives(&frame).assert_verdict(TC_NEXT);
        // A TTL-1 reply to a node flow.
        lab.uplink_sends(&node_udp(40000, 53, b"q"));
        let l4 = udp(REMOTE_IP, UPLINK_IP, 53, 40000, b"a");
        let frame = inbound_with(&ttl1, REMOTE_IP, UPLINK_IP, IPPROTO_UDP, &l4);
        let run = lab.uplink_receives(&frame);
        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&frame);
        assert_eq!(packets(&lab, DROP_TTL_EXCEEDED), 0);
        assert_eq!(packets(&lab, FWD_ICMP_TIME_EXCEEDED), 0);
    });
}

#[test]
fn traffic_this_bridge_does_not_own_goes_to_the_next_program() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        // A reply for a flow only another bridge (or program) knows.
        let reply = udp_reply(45678);
        let run = lab.uplink_receives(&reply);
        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&reply);
        // Not addressed to the node at all.
        let l4 = udp(REMOTE_IP, [198, 51, 100, 77], 53, 45678, b"x");
        let frame = inbound(REMOTE_IP, [198, 51, 100, 77], IPPROTO_UDP, &l4);
        lab.uplink_receives(&frame).assert_verdict(TC_NEXT);
        lab.dp()
            .assert_counters(&[(PASS_UPLINK_HOST, 2, (reply.len() + frame.len()) as u64)]);
    });
}
