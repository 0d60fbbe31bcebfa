//! Malformed, truncated and untranslatable IPv6 on the masquerade path:
//! whatever a container sends to the gateway's MAC for the outside, it
//! leaves masqueraded or not at all — never with the container's address,
//! never half-translated, and it leaves no flow behind. On the uplink,
//! malformed IPv6 is the host's business (passed untouched), and a
//! damaged reply is never delivered into a container.
mod common;

use common::{frame::*, frame6::*, nat6::*, packet_test::*};
use ebridge_common::stats::*;

/// Sets the IPv6 payload length of an Ethernet + IPv6 frame.
fn set_payload_len(frame: &mut [u8], len: u16) {
    frame[ETH_HLEN + 4..ETH_HLEN + 6].copy_from_slice(&len.to_be_bytes());
}

/// An IPv6 packet from A to REMOTE with `next` and `payload`, to the
/// gateway's MAC.
fn from_a(next: u8, payload: &[u8]) -> Vec<u8> {
    to_gateway6(MAC_A, &ipv6(IP6_A, REMOTE_IP6, next, payload))
}

/// Every `(what, frame, reason)` is dropped from A, untouched, counted
/// under its reason, and leaves nothing in nat6 or frags6. One lab per
/// case, so each counter stands alone.
fn assert_each_dropped(net: &TestNet, cases: &[(&str, Vec<u8>, u32)]) {
    for (what, frame, reason) in cases {
        let lab = NatLab6::new(net);
        let run = lab.a_sends(frame);
        assert_eq!(
            run.ret,
            TC_ACT_SHOT,
            "{what}: verdict {} ({}), {}",
            run.ret,
            verdict_name(run.ret),
            lab.dp().stats_summary()
        );
        run.assert_frame_unchanged(frame);
        lab.dp().assert_counted_once(*reason, frame);
        lab.assert_nat6_len(0);
        assert!(lab.frags6_entries().is_empty(), "{what}: frags6 written");
        // Tear the namespace's uplink down for the next lab.
        ip(&["link", "del", "ebt-up0"]);
    }
}

#[test]
fn truncated_transport_headers_are_dropped_and_leave_no_flow() {
    in_private_netns(|net| {
        let udp = udp6(IP6_A, REMOTE_IP6, 40000, 53, b"cut");
        let tcp = tcp6(IP6_A, REMOTE_IP6, 12345, 443, TCP_SYN, 1, 0, &[]);
        let ping = echo6(IP6_A, REMOTE_IP6, ICMPV6_ECHO_REQUEST, 7, 1, b"");
        let cases = [
            (
                "UDP with only its ports",
                from_a(IPPROTO_UDP, &udp[..4]),
                DROP_TRUNCATED,
            ),
            (
                "UDP without its checksum",
                from_a(IPPROTO_UDP, &udp[..6]),
                DROP_TRUNCATED,
            ),
            (
                "TCP cut before its checksum",
                from_a(IPPROTO_TCP, &tcp[..16]),
                DROP_TRUNCATED,
            ),
            (
                "an echo request without its sequence number",
                from_a(IPPROTO_ICMPV6, &ping[..6]),
                DROP_TRUNCATED,
            ),
            (
                "UDP behind a destination options header, cut",
                from_a(
                    NEXTHDR_DEST,
                    &[ext_header(IPPROTO_UDP, 0), udp[..4].to_vec()].concat(),
                ),
                DROP_TRUNCATED,
            ),
        ];
        assert_each_dropped(net, &cases);
    });
}

#[test]
fn transport_header_past_the_payload_length_is_not_used() {
    in_private_netns(|net| {
        // The UDP header is in the frame, but the payload length ends the
        // packet after 4 of its bytes: the rest is Ethernet padding.
        let mut padded = from_a(IPPROTO_UDP, &udp6(IP6_A, REMOTE_IP6, 40000, 53, b"padding"));
        set_payload_len(&mut padded, 4);
        let mut tcp = from_a(
            IPPROTO_TCP,
            &tcp6(IP6_A, REMOTE_IP6, 12345, 443, TCP_SYN, 1, 0, &[]),
        );
        set_payload_len(&mut tcp, 12);
        assert_each_dropped(
            net,
            &[
                ("UDP past the payload length", padded, DROP_TRUNCATED),
                ("TCP past the payload length", tcp, DROP_TRUNCATED),
            ],
        );
    });
}

#[test]
fn protocols_nat_cannot_translate_are_dropped() {
    in_private_netns(|net| {
        // Node information query (139): informational, but not echo.
        let niq = icmp6(IP6_A, REMOTE_IP6, 139, 0, &[0; 12]);
        // A container answering a ping has no flow to be translated by.
        let echo_reply = echo6(IP6_A, REMOTE_IP6, ICMPV6_ECHO_REPLY, 0x4242, 1, &[0xab; 8]);
        let cases = [
            ("GRE", from_a(47, &[0; 8]), DROP_NAT_UNSUPPORTED),
            ("SCTP", from_a(132, &[0; 16]), DROP_NAT_UNSUPPORTED),
            (
                "no next header",
                from_a(NEXTHDR_NONE, &[0; 8]),
                DROP_NAT_UNSUPPORTED,
            ),
            (
                "an ICMPv6 node information query",
                from_a(IPPROTO_ICMPV6, &niq),
                DROP_NAT_UNSUPPORTED,
            ),
            (
                "an echo reply from a container",
                from_a(IPPROTO_ICMPV6, &echo_reply),
                DROP_NAT_UNSUPPORTED,
            ),
            (
                "ESP behind a destination options header",
                from_a(NEXTHDR_DEST, &[ext_header(50, 0), vec![0; 16]].concat()),
                DROP_NAT_UNSUPPORTED,
            ),
        ];
        assert_each_dropped(net, &cases);
    });
}

#[test]
fn malformed_ipv6_headers_are_dropped_before_the_nat() {
    in_private_netns(|net| {
        let good = udp6_out(IP6_A, 40000, REMOTE_IP6, 53, MAC_A);
        let mut v4 = good.clone();
        v4[ETH_HLEN] = 0x40;
        let mut too_long = good.clone();
        set_payload_len(&mut too_long, 1000);
        let mut jumbo = good.clone();
        set_payload_len(&mut jumbo, 0);
        let mut past = ext_header(IPPROTO_UDP, 0);
        past[1] = 255;
        past.extend(udp6(IP6_A, REMOTE_IP6, 1, 2, b"x"));
        let mut long_chain = Vec::new();
        for i in 0..9 {
            long_chain.extend(ext_header(
                if i < 8 { NEXTHDR_DEST } else { IPPROTO_UDP },
                0,
            ));
        }
        long_chain.extend(udp6(IP6_A, REMOTE_IP6, 1, 2, b"x"));
        let spoofed = udp6_out(IP6_UNKNOWN, 40000, REMOTE_IP6, 53, MAC_A);
        let cases = [
            ("version 4 in an IPv6 frame", v4, DROP_MALFORMED_IP6),
            (
                "payload length past the frame",
                too_long,
                DROP_MALFORMED_IP6,
            ),
            ("payload length zero (jumbogram)", jumbo, DROP_MALFORMED_IP6),
            (
                "an extension header past the payload",
                from_a(NEXTHDR_DEST, &past),
                DROP_MALFORMED_IP6,
            ),
            (
                "more extension headers than walked",
                from_a(NEXTHDR_DEST, &long_chain),
                DROP_MALFORMED_IP6,
            ),
            ("a spoofed source", spoofed, DROP_SPOOFED_IP6),
        ];
        assert_each_dropped(net, &cases);
    });
}

#[test]
fn a_dropped_packet_leaves_an_existing_flow_as_it_was() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let good = udp6_out(IP6_A, 5353, REMOTE_IP6, 53, MAC_A);
        let (_, port) = lab.open_flow(lab.fx.a, &good);
        let okey = orig_key6(IPPROTO_UDP, (IP6_A, 5353), (REMOTE_IP6, 53));
        let before = lab.nat6_get(&okey).expect("the flow");
        // The flow's own ports, cut off before UDP's checksum.
        let udp = udp6(IP6_A, REMOTE_IP6, 5353, 53, b"x");
        let cut = from_a(IPPROTO_UDP, &udp[..6]);

        let run = lab.a_sends(&cut);

        run.assert_verdict(TC_ACT_SHOT);
        run.assert_frame_unchanged(&cut);
        assert_eq!(lab.nat6_get(&okey), Some(before), "the flow was touched");
        lab.assert_nat6_len(2);
        let again = lab.a_sends(&good);
        again.assert_verdict(TC_ACT_REDIRECT);
        assert_eq!(Pkt6(&again.out).ip().sport(), port);
    });
}

#[test]
fn malformed_ipv6_on_the_uplink_is_the_hosts_and_never_delivered() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let (_, port) = lab.open_flow(lab.fx.a, &udp6_out(IP6_A, 5353, REMOTE_IP6, 53, MAC_A));
        let snat = lab.dp().stats()[FWD_SNAT as usize];
        let good = inbound6(
            REMOTE_IP6,
            UPLINK_IP6,
            IPPROTO_UDP,
            &udp6(REMOTE_IP6, UPLINK_IP6, 53, port, b"an answer"),
        );
        let mut v4 = good.clone();
        v4[ETH_HLEN] = 0x40;
        let mut too_long = good.clone();
        set_payload_len(&mut too_long, 2000);
        let mut jumbo = good.clone();
        set_payload_len(&mut jumbo, 0);
        // The reply's UDP header cut after its ports.
        let mut cut = good.clone();
        set_payload_len(&mut cut, 4);
        cut.truncate(ETH_HLEN + IPV6_HLEN + 4 + 2);
        // A chain that runs past the packet.
        let mut past = ext_header(IPPROTO_UDP, 0);
        past[1] = 200;
        past.extend(udp6(REMOTE_IP6, UPLINK_IP6, 53, port, b"x"));
        let past = inbound6(REMOTE_IP6, UPLINK_IP6, NEXTHDR_DEST, &past);
        let frames = [v4, too_long, jumbo, cut, past];

        let mut bytes = 0;
        for (i, frame) in frames.iter().enumerate() {
            let run = lab.uplink_receives(frame);
            assert_eq!(run.ret, TC_NEXT, "frame {i}: {}", lab.dp().stats_summary());
            run.assert_frame_unchanged(frame);
            bytes += frame.len() as u64;
        }

        lab.dp().assert_counters(&[
            (FWD_SNAT, snat.packets, snat.bytes),
            (PASS_UPLINK_HOST, frames.len() as u64, bytes),
        ]);
        let (_, back) = lab.assert_flow6(
            IPPROTO_UDP,
            (IP6_A, 5353),
            (REMOTE_IP6, 53),
            port,
            (lab.fx.a, MAC_A),
        );
        assert_eq!(back.packets, 0, "a damaged reply was accounted");
    });
}
