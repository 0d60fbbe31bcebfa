//! The node's own IPv6 flows from the uplink's masquerade address share
//! the NAT port space with masqueraded containers (`node_flow.rs`,
//! `uplink_egress`'s IPv6 half): their tuples are held in `nat6`, a
//! container never takes a held tuple, a node flow that finds its tuple
//! taken by a container has its port moved (and moved back on replies
//! and in the ICMPv6 errors that quote it), replies to node flows go to
//! the node's stack, and another bridge's flows are held and handed on.
mod common;

use common::{frame::*, frame6::*, nat::*, nat6::*, packet_test::*};
use ebridge_common::{
    nat::{bridge_mark, Nat6Key, DIR_NODE, OWNER_CONTAINER, OWNER_NODE, OWNER_OTHER_BRIDGE},
    stats::*,
};

/// UDP the node's stack sends from the uplink's IPv6 address.
fn node_udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let l4 = udp6(UPLINK_IP6, REMOTE_IP6, sport, dport, payload);
    outbound6(UPLINK_IP6, REMOTE_IP6, IPPROTO_UDP, &l4)
}

/// REMOTE:53 answering UDP to the uplink address's `dport`.
fn udp_reply(dport: u16) -> Vec<u8> {
    let l4 = udp6(REMOTE_IP6, UPLINK_IP6, 53, dport, b"answer");
    inbound6(REMOTE_IP6, UPLINK_IP6, IPPROTO_UDP, &l4)
}

fn packets(lab: &NatLab6, reason: u32) -> u64 {
    lab.dp().stats()[reason as usize].packets
}

#[test]
fn node_udp_flow_is_held_and_its_replies_go_to_the_node() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let out = node_udp(40000, 53, b"query");

        let sent = lab.uplink_sends(&out);

        sent.assert_verdict(TC_NEXT);
        sent.assert_frame_unchanged(&out);
        let held = lab
            .nat6_get(&reply_key6(IPPROTO_UDP, (REMOTE_IP6, 53), 40000))
            .expect("the node's tuple is held");
        assert_eq!(held.owner, OWNER_NODE);
        assert_eq!(u16::from_be(held.port), 40000, "its own port");
        assert_eq!(held.addr, UPLINK_IP6);
        lab.assert_nat6_len(1);

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
fn a_container_never_takes_an_ipv6_tuple_the_node_holds() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        lab.uplink_sends(&node_udp(40000, 53, b"node first"))
            .assert_verdict(TC_NEXT);

        let (sent, port) = lab.open_flow(lab.fx.a, &udp6_out(IP6_A, 40000, REMOTE_IP6, 53, MAC_A));

        assert_ne!(port, 40000, "the node's port is not the container's");
        assert!(in_nat_range(port), "a port of the range: {port}");
        Pkt6(&sent).ip().assert_l4_checksum("container datagram");
        // Each side's replies reach it.
        let to_node = lab.uplink_receives(&udp_reply(40000));
        to_node.assert_verdict(TC_NEXT);
        assert_eq!(packets(&lab, FWD_REVNAT), 0);
        let to_container = lab.uplink_receives(&udp_reply(port));
        to_container.assert_verdict(TC_ACT_REDIRECT);
        let ip = Pkt6(&to_container.out).ip();
        assert_eq!((ip.daddr(), ip.dport()), (IP6_A, 40000));
        ip.assert_l4_checksum("reply to the container");
        assert_eq!(packets(&lab, PASS_NODE_FLOW_IN), 1);
    });
}

/// A's flow 40000 → REMOTE:53 (kept), then the node's from 40000 moved:
/// the node's packet as it left and its moved port.
fn moved_node_flow(lab: &NatLab6) -> (Vec<u8>, u16) {
    let (_, kept) = lab.open_flow(lab.fx.a, &udp6_out(IP6_A, 40000, REMOTE_IP6, 53, MAC_A));
    assert_eq!(kept, 40000, "the container keeps its own port");
    let sent = lab.uplink_sends(&node_udp(40000, 53, b"node second"));
    sent.assert_verdict(TC_NEXT);
    let moved = Pkt6(&sent.out).ip().sport();
    assert_ne!(moved, 40000, "moved off the container's tuple");
    (sent.out, moved)
}

#[test]
fn a_node_flow_on_a_containers_tuple_is_moved_and_moved_back() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let (sent, moved) = moved_node_flow(&lab);

        let ip = Pkt6(&sent).ip();
        assert_eq!(
            (ip.saddr(), ip.daddr(), ip.dport()),
            (UPLINK_IP6, REMOTE_IP6, 53)
        );
        assert_eq!(ip.hop_limit(), 64, "the node's packet is not forwarded");
        ip.assert_l4_checksum("moved node packet");
        assert_eq!(packets(&lab, PASS_NODE_PORT_MOVED), 1);
        let node_key = Nat6Key {
            saddr: UPLINK_IP6,
            daddr: REMOTE_IP6,
            sport: 40000u16.to_be(),
            dport: 53u16.to_be(),
            proto: IPPROTO_UDP,
            dir: DIR_NODE,
            _pad: [0; 2],
        };
        let entry = lab.nat6_get(&node_key).expect("the node flow's entry");
        assert_eq!((entry.owner, u16::from_be(entry.port)), (OWNER_NODE, moved));
        // Later packets keep the moved port.
        let again = lab.uplink_sends(&node_udp(40000, 53, b"again"));
        assert_eq!(Pkt6(&again.out).ip().sport(), moved);
        Pkt6(&again.out).ip().assert_l4_checksum("moved again");

        // Its replies get the node's own port back and go to the node.
        let back = lab.uplink_receives(&udp_reply(moved));

        back.assert_verdict(TC_NEXT);
        let ip = Pkt6(&back.out).ip();
        assert_eq!((ip.daddr(), ip.dport()), (UPLINK_IP6, 40000));
        ip.assert_l4_checksum("restored reply");
        // The container's replies still reach the container.
        let theirs = lab.uplink_receives(&udp_reply(40000));
        theirs.assert_verdict(TC_ACT_REDIRECT);
        assert_eq!(Pkt6(&theirs.out).ip().daddr(), IP6_A);
        assert_eq!(packets(&lab, PASS_NODE_FLOW_IN), 1);
        let ours = lab
            .nat6_get(&reply_key6(IPPROTO_UDP, (REMOTE_IP6, 53), 40000))
            .expect("the container's");
        assert_eq!(ours.owner, OWNER_CONTAINER);
    });
}

#[test]
fn an_icmp6_error_about_a_moved_node_flow_quotes_the_nodes_own_port() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let (sent, _) = moved_node_flow(&lab);
        // Packet Too Big from a router, quoting the packet as it left.
        let quoted = &sent[ETH_HLEN..];
        let error = inbound6(
            ROUTER_IP6,
            UPLINK_IP6,
            IPPROTO_ICMPV6,
            &icmp6_error(
                ROUTER_IP6,
                UPLINK_IP6,
                ICMPV6_PKT_TOO_BIG,
                0,
                [0, 0, 0x05, 0],
                quoted,
            ),
        );

        let run = lab.uplink_receives(&error);

        run.assert_verdict(TC_NEXT);
        let ip = Pkt6(&run.out).ip();
        assert_eq!(ip.daddr(), UPLINK_IP6, "still the node's");
        assert_eq!(
            ip.quoted().sport(),
            40000,
            "the quote must name the node's own port"
        );
        ip.assert_l4_checksum("Packet Too Big about a moved node flow");
        assert_eq!(packets(&lab, PASS_NODE_FLOW_IN), 1);
    });
}

#[test]
fn node_ping_identifier_is_held_too() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let echo = echo6(
            UPLINK_IP6,
            REMOTE_IP6,
            ICMPV6_ECHO_REQUEST,
            0x4242,
            1,
            b"ping",
        );
        lab.uplink_sends(&outbound6(UPLINK_IP6, REMOTE_IP6, IPPROTO_ICMPV6, &echo))
            .assert_verdict(TC_NEXT);
        // The identifier is held as ICMPv6 echo's "port".
        let held = lab
            .nat6_get(&reply_key6(IPPROTO_ICMPV6, (REMOTE_IP6, 0), 0x4242))
            .expect("the node's identifier is held");
        assert_eq!(held.owner, OWNER_NODE);

        // 0x4242 is below the NAT range: a container's would move anyway,
        // so take the node's from inside the range.
        let echo = echo6(
            UPLINK_IP6,
            REMOTE_IP6,
            ICMPV6_ECHO_REQUEST,
            40000,
            1,
            b"ping",
        );
        lab.uplink_sends(&outbound6(UPLINK_IP6, REMOTE_IP6, IPPROTO_ICMPV6, &echo))
            .assert_verdict(TC_NEXT);
        let (sent, id) = lab.open_flow(lab.fx.a, &ping6_out(IP6_A, REMOTE_IP6, 40000, MAC_A));

        assert_ne!(id, 40000, "the node's identifier is held");
        Pkt6(&sent).ip().assert_l4_checksum("container's ping");
        // The node's echo reply goes to the node, untouched.
        let reply = inbound6(
            REMOTE_IP6,
            UPLINK_IP6,
            IPPROTO_ICMPV6,
            &echo6(REMOTE_IP6, UPLINK_IP6, ICMPV6_ECHO_REPLY, 40000, 1, b"ping"),
        );
        let run = lab.uplink_receives(&reply);
        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&reply);
    });
}

#[test]
fn another_bridges_ipv6_flow_is_held_and_its_replies_passed_on() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        // Ours: the endpoint program's mark. Nothing more is made.
        let (sent, _) = lab.open_flow(lab.fx.a, &udp6_out(IP6_A, 40000, REMOTE_IP6, 53, MAC_A));
        lab.uplink_sends_marked(&sent, lab.own_mark())
            .assert_verdict(TC_NEXT);
        lab.assert_nat6_len(2);

        // Another bridge's translated packet from the shared address.
        let theirs = node_udp(41000, 53, b"other bridge");
        let other = bridge_mark(net.bridge + 1000);
        let run = lab.uplink_sends_marked(&theirs, other);

        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&theirs);
        let held = lab
            .nat6_get(&reply_key6(IPPROTO_UDP, (REMOTE_IP6, 53), 41000))
            .expect("held for the other bridge");
        assert_eq!(held.owner, OWNER_OTHER_BRIDGE);
        // Its replies go on to the next program in the chain, untouched.
        let reply = udp_reply(41000);
        let run = lab.uplink_receives(&reply);
        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&reply);
        assert_eq!(packets(&lab, PASS_OTHER_BRIDGE), 1);
        // Our containers cannot take its tuple.
        let (_, port) = lab.open_flow(lab.fx.a, &udp6_out(IP6_A, 41000, REMOTE_IP6, 53, MAC_A));
        assert_ne!(port, 41000);
    });
}
