//! ICMPv6 errors about masqueraded flows (issue 11, `icmp6_error.rs`,
//! RFC 5508's rules on IPv6): Packet Too Big (IPv6's only way to learn a
//! path MTU), Time Exceeded, Destination Unreachable and Parameter
//! Problem quote the packet that caused them, so the NAT translates the
//! quote with the outer header. Inbound (`uplink_ingress`): the outer
//! destination and the quote's source address and port (or echo
//! identifier) become the container's again and the error goes into the
//! container. Outbound (endpoint program): an error a container sends
//! about a packet of a tracked flow gets the uplink address and NAT port,
//! outside and inside. The ICMPv6 checksum covers the pseudo-header and
//! every changed byte; it is recomputed here. The quote's own transport
//! checksum is left as it was (no receiver checks it; often cut off).
mod common;

use common::{frame::*, frame6::*, nat::*, nat6::*, packet_test::*};
use ebridge_common::stats::*;

/// Packet Too Big's MTU field: 1280.
const MTU_1280: [u8; 4] = [0, 0, 0x05, 0x00];
/// Parameter Problem's pointer: the next header field.
const POINTER_6: [u8; 4] = [0, 0, 0, 6];

/// The four error kinds: (name, type, code, second word).
const ERRORS: [(&str, u8, u8, [u8; 4]); 4] = [
    ("packet too big", ICMPV6_PKT_TOO_BIG, 0, MTU_1280),
    ("time exceeded", ICMPV6_TIME_EXCEEDED, 0, [0; 4]),
    (
        "port unreachable",
        ICMPV6_DEST_UNREACH,
        ICMPV6_PORT_UNREACH,
        [0; 4],
    ),
    ("parameter problem", ICMPV6_PARAM_PROBLEM, 0, POINTER_6),
];

/// The IPv6 packet of an Ethernet frame, cut to at most `len` bytes: what
/// a router quotes (RFC 4443: as much as fits in 1280 bytes).
fn quote(frame: &[u8], len: usize) -> Vec<u8> {
    let ip = &frame[ETH_HLEN..];
    ip[..len.min(ip.len())].to_vec()
}

/// An error from ROUTER_IP6 to the uplink address quoting `quoted`.
fn error_from_router(ty: u8, code: u8, rest: [u8; 4], quoted: &[u8]) -> Vec<u8> {
    inbound6(
        ROUTER_IP6,
        UPLINK_IP6,
        IPPROTO_ICMPV6,
        &icmp6_error(ROUTER_IP6, UPLINK_IP6, ty, code, rest, quoted),
    )
}

/// What the quote must become in the container: the packet as the
/// container sent it (`sent`, a frame), with the hop limit and transport
/// checksum it left with (`left`, a frame), cut as the quote was.
fn quote_as_the_container_sent_it(sent: &[u8], left: &[u8], len: usize) -> Vec<u8> {
    let mut want = sent[ETH_HLEN..].to_vec();
    let left = &left[ETH_HLEN..];
    want[7] = left[7];
    let at = IPV6_HLEN
        + match want[6] {
            IPPROTO_TCP => 16,
            IPPROTO_UDP => 6,
            _ => 2,
        };
    want[at..at + 2].copy_from_slice(&left[at..at + 2]);
    want.truncate(len);
    want
}

/// Checks an error delivered into container A: outer header and quote
/// translated, ICMPv6 type, code and second word as sent, the quote what
/// A sent (`sent`, as it `left`), the checksum valid for A's address.
fn assert_delivered_to_a(run: &Run, error: &[u8], sent: &[u8], left: &[u8], what: &str) {
    run.assert_verdict(TC_ACT_REDIRECT);
    assert_eq!(run.out.len(), error.len(), "{what}: length");
    let out = Pkt6(&run.out);
    assert_eq!(out.dst_mac(), MAC_A, "{what}: destination MAC");
    assert_eq!(out.src_mac(), BRIDGE_MAC, "{what}: source MAC");
    let ip = out.ip();
    assert_eq!(ip.saddr(), ROUTER_IP6, "{what}: outer source");
    assert_eq!(ip.daddr(), IP6_A, "{what}: outer destination");
    assert_eq!(ip.hop_limit(), 63, "{what}: hop limit");
    ip.assert_l4_checksum(what);
    let sent_icmp = Pkt6(error).ip().l4();
    assert_eq!(ip.l4()[..2], sent_icmp[..2], "{what}: type and code");
    assert_eq!(ip.l4()[4..8], sent_icmp[4..8], "{what}: second word");
    let quoted_len = sent_icmp.len() - 8;
    let want = quote_as_the_container_sent_it(sent, left, quoted_len);
    let inner = ip.quoted();
    assert_eq!(inner.saddr(), IP6_A, "{what}: quoted source");
    assert_eq!(inner.daddr(), REMOTE_IP6, "{what}: quoted destination");
    assert!(
        inner.0 == &want[..],
        "{what}: the quote is not the packet as A sent it:\n got:  {:02x?}\n want: {want:02x?}",
        inner.0
    );
}

#[test]
fn packet_too_big_about_a_udp_datagram_reaches_the_container() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let sent = {
            let l4 = udp6(IP6_A, REMOTE_IP6, 5353, 443, &[0x51; 1300]);
            to_gateway6(MAC_A, &ipv6(IP6_A, REMOTE_IP6, IPPROTO_UDP, &l4))
        };
        let (left, port) = lab.open_flow(lab.fx.a, &sent);
        assert_ne!(port, 5353, "test setup: the port is translated");
        // A 1280-byte link on the path: the router quotes what fits.
        let quoted = quote(&left, 1280 - IPV6_HLEN - 8);
        let error = error_from_router(ICMPV6_PKT_TOO_BIG, 0, MTU_1280, &quoted);
        assert_eq!(error.len(), ETH_HLEN + 1280);

        let run = lab.uplink_receives(&error);

        assert_delivered_to_a(&run, &error, &sent, &left, "packet too big (UDP)");
        let inner = Pkt6(&run.out).ip().quoted();
        assert_eq!((inner.sport(), inner.dport()), (5353, 443));
        assert_eq!(inner.hop_limit(), 63, "the quote is the packet as it left");
        let stats = lab.dp().stats();
        assert_eq!(
            stats[FWD_REVNAT_ICMP_ERROR as usize],
            ebridge_common::stats::Counter {
                packets: 1,
                bytes: error.len() as u64
            },
            "{}",
            lab.dp().stats_summary()
        );
        assert_eq!(stats[FWD_REVNAT as usize].packets, 0);
        // An error is no packet of the flow.
        let (_, back) = lab.assert_flow6(
            IPPROTO_UDP,
            (IP6_A, 5353),
            (REMOTE_IP6, 443),
            port,
            (lab.fx.a, MAC_A),
        );
        assert_eq!(back.packets, 0);
    });
}

#[test]
fn time_exceeded_about_a_tcp_segment_reaches_the_container() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let sent = tcp6_out(IP6_A, 12345, REMOTE_IP6, 443, TCP_SYN, MAC_A);
        let (left, port) = lab.open_flow(lab.fx.a, &sent);
        assert!(in_nat_range(port));
        let error = error_from_router(ICMPV6_TIME_EXCEEDED, 0, [0; 4], &quote(&left, 1232));

        let run = lab.uplink_receives(&error);

        assert_delivered_to_a(&run, &error, &sent, &left, "time exceeded (TCP)");
        let inner = Pkt6(&run.out).ip().quoted();
        assert_eq!((inner.sport(), inner.dport()), (12345, 443));
        // The sequence number is intact.
        assert_eq!(inner.l4()[4..8], 1000u32.to_be_bytes());
        lab.dp().assert_counters(&[
            (FWD_SNAT, 1, sent.len() as u64),
            (FWD_REVNAT_ICMP_ERROR, 1, error.len() as u64),
        ]);
    });
}

#[test]
fn destination_unreachable_with_a_short_quote_reaches_the_container() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let sent = udp6_out(IP6_A, 5353, REMOTE_IP6, 53, MAC_A);
        let (left, _) = lab.open_flow(lab.fx.a, &sent);
        // Just the IPv6 header and the 8 bytes of UDP's.
        let error = error_from_router(
            ICMPV6_DEST_UNREACH,
            ICMPV6_PORT_UNREACH,
            [0; 4],
            &quote(&left, IPV6_HLEN + 8),
        );

        let run = lab.uplink_receives(&error);

        assert_delivered_to_a(&run, &error, &sent, &left, "port unreachable (UDP)");
        let inner = Pkt6(&run.out).ip().quoted();
        assert_eq!((inner.sport(), inner.dport()), (5353, 53));
        assert_eq!(lab.dp().stats()[FWD_REVNAT_ICMP_ERROR as usize].packets, 1);
    });
}

#[test]
fn parameter_problem_about_a_ping_restores_the_identifier() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let sent = ping6_out(IP6_A, REMOTE_IP6, 0x4242, MAC_A);
        let (left, id) = lab.open_flow(lab.fx.a, &sent);
        assert_ne!(id, 0x4242, "test setup: the identifier is translated");
        let error = error_from_router(ICMPV6_PARAM_PROBLEM, 0, POINTER_6, &quote(&left, 1232));

        let run = lab.uplink_receives(&error);

        assert_delivered_to_a(&run, &error, &sent, &left, "parameter problem (ping)");
        let inner = Pkt6(&run.out).ip().quoted();
        assert_eq!(inner.icmp_type(), ICMPV6_ECHO_REQUEST);
        assert_eq!(inner.icmp_id(), 0x4242);
        assert_eq!(lab.dp().stats()[FWD_REVNAT_ICMP_ERROR as usize].packets, 1);
    });
}

#[test]
fn every_error_kind_about_every_flow_kind_is_translated() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let flows = [
            ("UDP", udp6_out(IP6_A, 5353, REMOTE_IP6, 53, MAC_A)),
            (
                "TCP",
                tcp6_out(IP6_A, 12345, REMOTE_IP6, 443, TCP_SYN, MAC_A),
            ),
            ("ping", ping6_out(IP6_A, REMOTE_IP6, 0x4242, MAC_A)),
        ];
        let opened: Vec<(&str, Vec<u8>, Vec<u8>)> = flows
            .into_iter()
            .map(|(name, sent)| {
                let (left, _) = lab.open_flow(lab.fx.a, &sent);
                (name, sent, left)
            })
            .collect();

        let mut delivered = 0;
        for (flow, sent, left) in &opened {
            for (kind, ty, code, rest) in ERRORS {
                for len in [IPV6_HLEN + 8, 1232] {
                    let what = format!("{kind} about {flow}, quote of {len} bytes");
                    let error = error_from_router(ty, code, rest, &quote(left, len));

                    let run = lab.uplink_receives(&error);

                    assert_delivered_to_a(&run, &error, sent, left, &what);
                    delivered += 1;
                }
            }
        }

        assert_eq!(
            lab.dp().stats()[FWD_REVNAT_ICMP_ERROR as usize].packets,
            delivered
        );
        lab.assert_nat6_len(6);
    });
}

#[test]
fn errors_about_no_container_flow_pass_to_the_host_untouched() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let (left, port) = lab.open_flow(lab.fx.a, &udp6_out(IP6_A, 5353, REMOTE_IP6, 53, MAC_A));
        let snat = lab.dp().stats()[FWD_SNAT as usize];
        // The quoted datagram with another remote port: no such flow.
        let mut other_port = quote(&left, 1232);
        other_port[IPV6_HLEN + 2..IPV6_HLEN + 4].copy_from_slice(&54u16.to_be_bytes());
        // A datagram the node itself sent from the uplink address.
        let own = ipv6(
            UPLINK_IP6,
            REMOTE_IP6,
            IPPROTO_UDP,
            &udp6(UPLINK_IP6, REMOTE_IP6, port.wrapping_add(1), 53, b"node"),
        );
        // One from another address of the node.
        let elsewhere = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
        let foreign = ipv6(
            elsewhere,
            REMOTE_IP6,
            IPPROTO_UDP,
            &udp6(elsewhere, REMOTE_IP6, port, 53, b"x"),
        );
        // A quote too short for the ports, and one of a protocol NAT does
        // not track.
        let cut = quote(&left, IPV6_HLEN + 2);
        let sctp = ipv6(UPLINK_IP6, REMOTE_IP6, 132, &[0; 16]);
        let frames: Vec<Vec<u8>> = [other_port, own, foreign, cut, sctp]
            .iter()
            .map(|q| error_from_router(ICMPV6_PKT_TOO_BIG, 0, MTU_1280, q))
            .collect();

        let mut bytes = 0;
        for frame in &frames {
            let run = lab.uplink_receives(frame);
            run.assert_verdict(TC_NEXT);
            run.assert_frame_unchanged(frame);
            bytes += frame.len() as u64;
        }

        lab.dp().assert_counters(&[
            (FWD_SNAT, snat.packets, snat.bytes),
            (PASS_UPLINK_HOST, frames.len() as u64, bytes),
        ]);
    });
}

#[test]
fn packet_too_big_quoting_a_first_fragment_reaches_the_container() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        // A fragmented datagram (a 1300-byte payload over a 1280 path is
        // what draws Packet Too Big): the router quotes its first fragment.
        let l4 = udp6(IP6_A, REMOTE_IP6, 5353, 53, &[0x33; 1300]);
        let (f1, _) = fragments6(IPPROTO_UDP, &l4, 1232, 0xfeed);
        let first = to_gateway6(MAC_A, &ipv6(IP6_A, REMOTE_IP6, NEXTHDR_FRAGMENT, &f1));
        let (left, port) = lab.open_flow(lab.fx.a, &first);
        assert_ne!(port, 5353, "test setup: the port is translated");
        let error = error_from_router(ICMPV6_PKT_TOO_BIG, 0, MTU_1280, &quote(&left, 1232));

        let run = lab.uplink_receives(&error);

        run.assert_verdict(TC_ACT_REDIRECT);
        let ip = Pkt6(&run.out).ip();
        assert_eq!((ip.saddr(), ip.daddr()), (ROUTER_IP6, IP6_A));
        ip.assert_l4_checksum("packet too big quoting a first fragment");
        let inner = ip.quoted();
        assert_eq!((inner.saddr(), inner.daddr()), (IP6_A, REMOTE_IP6));
        assert!(inner.frag().is_some(), "the quote is still the fragment");
        assert_eq!((inner.sport(), inner.dport()), (5353, 53));
        assert_eq!(lab.dp().stats()[FWD_REVNAT_ICMP_ERROR as usize].packets, 1);
    });
}

#[test]
fn error_quoting_a_later_fragment_is_not_translated_and_passes_to_the_host() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let l4 = udp6(IP6_A, REMOTE_IP6, 5353, 53, &[0x33; 2600]);
        let (f1, f2) = fragments6(IPPROTO_UDP, &l4, 1232, 0xfeed);
        let first = to_gateway6(MAC_A, &ipv6(IP6_A, REMOTE_IP6, NEXTHDR_FRAGMENT, &f1));
        lab.open_flow(lab.fx.a, &first);
        let later = to_gateway6(MAC_A, &ipv6(IP6_A, REMOTE_IP6, NEXTHDR_FRAGMENT, &f2));
        let left = lab.a_sends(&later);
        left.assert_verdict(TC_ACT_REDIRECT);
        let error = error_from_router(ICMPV6_PKT_TOO_BIG, 0, MTU_1280, &quote(&left.out, 1232));

        let run = lab.uplink_receives(&error);

        // No ports to find the flow by: the host's, untouched, and never
        // the container's.
        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&error);
        assert_eq!(lab.dp().stats()[PASS_UPLINK_HOST as usize].packets, 1);
    });
}

#[test]
fn error_whose_hop_limit_would_expire_is_not_delivered() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let (left, _) = lab.open_flow(lab.fx.a, &udp6_out(IP6_A, 5353, REMOTE_IP6, 53, MAC_A));
        let mut error = error_from_router(ICMPV6_TIME_EXCEEDED, 0, [0; 4], &quote(&left, 1232));
        set_hop_limit(&mut error, 1);

        let run = lab.uplink_receives(&error);

        run.assert_verdict(TC_ACT_SHOT);
        let stats = lab.dp().stats();
        assert_eq!(stats[DROP_TTL_EXCEEDED as usize].packets, 1);
        assert_eq!(stats[FWD_REVNAT_ICMP_ERROR as usize].packets, 0);
    });
}

/// A's answer from REMOTE:53 to its flow 5353 (delivered by the uplink
/// program): the frame as A received it, the reply as REMOTE sent it (an
/// IPv6 packet), and the NAT port.
fn delivered_reply(lab: &NatLab6) -> (Vec<u8>, Vec<u8>, u16) {
    let (_, port) = lab.open_flow(lab.fx.a, &udp6_out(IP6_A, 5353, REMOTE_IP6, 53, MAC_A));
    let reply = ipv6(
        REMOTE_IP6,
        UPLINK_IP6,
        IPPROTO_UDP,
        &udp6(REMOTE_IP6, UPLINK_IP6, 53, port, b"late answer"),
    );
    let delivered = lab.uplink_receives(&ethernet(UPLINK_MAC, NEXT_HOP_MAC, ETH_P_IPV6, &reply));
    delivered.assert_verdict(TC_ACT_REDIRECT);
    (delivered.out, reply, port)
}

/// An ICMPv6 error from A to REMOTE quoting `quoted`.
fn error_from_a(ty: u8, code: u8, rest: [u8; 4], quoted: &[u8]) -> Vec<u8> {
    to_gateway6(
        MAC_A,
        &ipv6(
            IP6_A,
            REMOTE_IP6,
            IPPROTO_ICMPV6,
            &icmp6_error(IP6_A, REMOTE_IP6, ty, code, rest, quoted),
        ),
    )
}

#[test]
fn port_unreachable_from_a_container_about_a_reply_is_masqueraded() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        // A late reply reaches A after its socket closed...
        let (in_a, reply, port) = delivered_reply(&lab);
        // ...and A answers port unreachable, quoting it as it saw it.
        let quoted = quote(&in_a, 1232);
        let error = error_from_a(ICMPV6_DEST_UNREACH, ICMPV6_PORT_UNREACH, [0; 4], &quoted);

        let run = lab.a_sends(&error);

        run.assert_verdict(TC_ACT_REDIRECT);
        assert_eq!(run.out.len(), error.len());
        let out = Pkt6(&run.out);
        assert_eq!((out.dst_mac(), out.src_mac()), (NEXT_HOP_MAC, UPLINK_MAC));
        let ip = out.ip();
        assert_eq!(ip.saddr(), UPLINK_IP6, "outer source");
        assert_eq!(ip.daddr(), REMOTE_IP6);
        assert_eq!(ip.hop_limit(), 63);
        ip.assert_l4_checksum("port unreachable from A");
        assert_eq!(
            (ip.icmp_type(), ip.icmp_code()),
            (ICMPV6_DEST_UNREACH, ICMPV6_PORT_UNREACH)
        );
        let inner = ip.quoted();
        assert_eq!((inner.saddr(), inner.sport()), (REMOTE_IP6, 53));
        assert_eq!(
            (inner.daddr(), inner.dport()),
            (UPLINK_IP6, port),
            "the quote must show the datagram as REMOTE sent it"
        );
        // Byte for byte, but for the hop limit and the UDP checksum A saw.
        let mut want = reply.clone();
        want[7] = in_a[ETH_HLEN + 7];
        let at = IPV6_HLEN + 6;
        want[at..at + 2].copy_from_slice(&in_a[ETH_HLEN + at..ETH_HLEN + at + 2]);
        assert_eq!(inner.0, &want[..], "quote");
        lab.dp().assert_counters(&[
            (
                FWD_SNAT,
                1,
                udp6_out(IP6_A, 5353, REMOTE_IP6, 53, MAC_A).len() as u64,
            ),
            (FWD_REVNAT, 1, (ETH_HLEN + reply.len()) as u64),
            (FWD_SNAT_ICMP_ERROR, 1, error.len() as u64),
        ]);
        lab.assert_nat6_len(2);
        // It leaves the uplink past the leak guard.
        lab.uplink_sends_marked(&run.out, lab.own_mark())
            .assert_verdict(TC_NEXT);
    });
}

#[test]
fn every_error_kind_from_a_container_is_masqueraded() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let (in_a, _, port) = delivered_reply(&lab);

        for (kind, ty, code, rest) in ERRORS {
            for len in [IPV6_HLEN + 8, 1232] {
                let what = format!("{kind} from A, quote of {len} bytes");
                let error = error_from_a(ty, code, rest, &quote(&in_a, len));

                let run = lab.a_sends(&error);

                assert_eq!(
                    run.ret,
                    TC_ACT_REDIRECT,
                    "{what}: {}",
                    lab.dp().stats_summary()
                );
                let ip = Pkt6(&run.out).ip();
                assert_eq!(ip.saddr(), UPLINK_IP6, "{what}: outer source");
                ip.assert_l4_checksum(&what);
                assert_eq!(ip.l4()[..2], [ty, code], "{what}");
                assert_eq!(ip.l4()[4..8], rest, "{what}");
                let inner = ip.quoted();
                assert_eq!((inner.daddr(), inner.dport()), (UPLINK_IP6, port), "{what}");
                assert_eq!((inner.saddr(), inner.sport()), (REMOTE_IP6, 53), "{what}");
            }
        }
        assert_eq!(lab.dp().stats()[FWD_SNAT_ICMP_ERROR as usize].packets, 8);
    });
}

#[test]
fn error_from_a_container_about_no_tracked_flow_is_dropped() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let (in_a, _, _) = delivered_reply(&lab);
        let before = lab.dp().stats();
        // About a datagram from a remote port the flow does not use.
        let mut untracked = quote(&in_a, 1232);
        untracked[IPV6_HLEN..IPV6_HLEN + 2].copy_from_slice(&54u16.to_be_bytes());
        // About a datagram that was not addressed to A at all (B's).
        let mut not_to_a = quote(&in_a, 1232);
        not_to_a[24..40].copy_from_slice(&IP6_B);
        // A quote cut before the ports.
        let cut = quote(&in_a, IPV6_HLEN + 2);
        let frames: Vec<Vec<u8>> = [untracked, not_to_a, cut]
            .iter()
            .map(|q| error_from_a(ICMPV6_DEST_UNREACH, ICMPV6_PORT_UNREACH, [0; 4], q))
            .collect();

        let mut bytes = 0;
        for frame in &frames {
            let run = lab.a_sends(frame);
            run.assert_verdict(TC_ACT_SHOT);
            run.assert_frame_unchanged(frame);
            bytes += frame.len() as u64;
        }

        let after = lab.dp().stats();
        assert_eq!(
            after[DROP_ICMP_ERROR_UNTRACKED as usize].packets
                - before[DROP_ICMP_ERROR_UNTRACKED as usize].packets,
            frames.len() as u64,
            "{}",
            lab.dp().stats_summary()
        );
        assert_eq!(
            after[DROP_ICMP_ERROR_UNTRACKED as usize].bytes,
            bytes,
            "{}",
            lab.dp().stats_summary()
        );
        assert_eq!(after[FWD_SNAT_ICMP_ERROR as usize].packets, 0);
        lab.assert_nat6_len(2);
    });
}

#[test]
fn quote_ports_past_the_payload_length_are_not_used() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let (left, _) = lab.open_flow(lab.fx.a, &udp6_out(IP6_A, 5353, REMOTE_IP6, 53, MAC_A));
        // The error's payload ends with the quoted IPv6 header: the ports
        // that follow in the frame are not part of it.
        let mut error = error_from_router(ICMPV6_DEST_UNREACH, 0, [0; 4], &quote(&left, 1232));
        let short = 8 + IPV6_HLEN;
        let icmp = icmp6_error(
            ROUTER_IP6,
            UPLINK_IP6,
            ICMPV6_DEST_UNREACH,
            0,
            [0; 4],
            &quote(&left, IPV6_HLEN),
        );
        assert_eq!(icmp.len(), short);
        let at = ETH_HLEN + IPV6_HLEN;
        error[at..at + short].copy_from_slice(&icmp);
        error[ETH_HLEN + 4..ETH_HLEN + 6].copy_from_slice(&(short as u16).to_be_bytes());

        let run = lab.uplink_receives(&error);

        if run.ret == TC_ACT_REDIRECT {
            // Whatever is delivered must verify over what the payload
            // length covers.
            Pkt6(&run.out)
                .ip()
                .assert_l4_checksum("error with a short quote");
        }
        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&error);
    });
}
