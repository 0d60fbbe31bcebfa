//! IPv6 masquerade (issue 11), container → outside and back: the endpoint
//! program masquerades IPv6 from a container behind the uplink's global
//! address (`masquerade6.rs`: conntrack in `nat6`, the own port kept when
//! free), decrements the hop limit, puts the FIB's MACs on and redirects
//! to the uplink; `uplink_ingress` un-NATs the replies and sends them
//! straight into the container (`revnat6.rs`). With `--ipv6-masquerade
//! off` (Docker's routed mode) containers' own addresses are routed both
//! ways. Every transport checksum of the output is recomputed here with
//! the IPv6 pseudo-header (`common::nat6`).
mod common;

use common::{frame::*, frame6::*, nat::*, nat6::*, packet_test::*};
use ebridge_common::{config::CONFIG_F_IPV6_MASQUERADE, nat::*, stats::*};

/// A's UDP flow 5353 → REMOTE:53 (5353 is below the NAT range, so the
/// port is translated too); returns the NAT port.
fn udp_flow(lab: &NatLab6) -> u16 {
    let (_, port) = lab.open_flow(lab.fx.a, &udp6_out(IP6_A, 5353, REMOTE_IP6, 53, MAC_A));
    assert!(in_nat_range(port), "NAT port {port} outside {NAT_PORTS:?}");
    port
}

fn udp_reply(nat_port: u16) -> Vec<u8> {
    let l4 = udp6(REMOTE_IP6, UPLINK_IP6, 53, nat_port, b"an answer");
    inbound6(REMOTE_IP6, UPLINK_IP6, IPPROTO_UDP, &l4)
}

#[test]
fn udp_to_the_outside_is_masqueraded_behind_the_uplinks_ipv6_address() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let frame = udp6_out(IP6_A, 40000, REMOTE_IP6, 53, MAC_A);

        let run = lab.a_sends(&frame);

        run.assert_verdict(TC_ACT_REDIRECT);
        assert_eq!(run.out.len(), frame.len());
        let out = Pkt6(&run.out);
        assert_eq!(out.dst_mac(), NEXT_HOP_MAC, "destination MAC from the FIB");
        assert_eq!(out.src_mac(), UPLINK_MAC, "source MAC from the FIB");
        let ip = out.ip();
        assert_eq!(ip.saddr(), UPLINK_IP6);
        assert_eq!(ip.daddr(), REMOTE_IP6);
        assert_eq!(ip.hop_limit(), 63);
        assert_eq!(ip.sport(), 40000, "a free port in the range is kept");
        assert_eq!(ip.dport(), 53);
        ip.assert_l4_checksum("UDP after masquerade");
        assert_eq!(&ip.l4()[8..], b"masquerade me", "payload changed");
        lab.dp().assert_counted_once(FWD_SNAT, &frame);
        let (orig, reply) = lab.assert_flow6(
            IPPROTO_UDP,
            (IP6_A, 40000),
            (REMOTE_IP6, 53),
            40000,
            (lab.fx.a, MAC_A),
        );
        lab.assert_nat6_len(2);
        assert_eq!((orig.packets, orig.bytes), (1, frame.len() as u64));
        assert_eq!((reply.packets, reply.bytes), (0, 0));
        assert!((run.started_ns..=run.finished_ns).contains(&orig.created_ns));
        assert_eq!((orig.state, orig.flags), (CT_NEW, 0));
        assert_eq!((reply.state, reply.flags), (CT_NEW, 0));
        assert_eq!(run.ctx.mark, lab.own_mark(), "the bridge's mark");
        assert!(lab.dp().nat_entries().is_empty(), "IPv4's table touched");
        lab.dp().assert_learned(MAC_A, lab.fx.a, &run);
    });
}

#[test]
fn udp_reply_is_un_nated_and_redirected_into_the_container() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let port = udp_flow(&lab);
        let snat_bytes = lab.dp().stats()[FWD_SNAT as usize].bytes;
        let reply = udp_reply(port);

        let run = lab.uplink_receives(&reply);

        run.assert_verdict(TC_ACT_REDIRECT);
        assert_eq!(run.out.len(), reply.len());
        let out = Pkt6(&run.out);
        assert_eq!(out.dst_mac(), MAC_A, "destination MAC: the container's");
        assert_eq!(out.src_mac(), BRIDGE_MAC, "source MAC: the bridge's");
        let ip = out.ip();
        assert_eq!((ip.saddr(), ip.sport()), (REMOTE_IP6, 53));
        assert_eq!((ip.daddr(), ip.dport()), (IP6_A, 5353));
        assert_eq!(ip.hop_limit(), 63);
        ip.assert_l4_checksum("reply after reverse NAT");
        assert_eq!(&ip.l4()[8..], b"an answer");
        lab.dp().assert_counters(&[
            (FWD_SNAT, 1, snat_bytes),
            (FWD_REVNAT, 1, reply.len() as u64),
        ]);
        let (orig, back) = lab.assert_flow6(
            IPPROTO_UDP,
            (IP6_A, 5353),
            (REMOTE_IP6, 53),
            port,
            (lab.fx.a, MAC_A),
        );
        assert_eq!((back.packets, back.bytes), (1, reply.len() as u64));
        assert!((run.started_ns..=run.finished_ns).contains(&back.last_seen_ns));
        assert_ne!(back.flags & NAT_F_REPLIED, 0, "reply entry not marked");
        assert_ne!(orig.flags & NAT_F_REPLIED, 0, "original entry not marked");
        lab.assert_nat6_len(2);
    });
}

#[test]
fn second_packet_of_a_flow_reuses_its_entry() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let frame = udp6_out(IP6_A, 5353, REMOTE_IP6, 53, MAC_A);

        let first = lab.a_sends(&frame);
        let second = lab.a_sends(&frame);

        first.assert_verdict(TC_ACT_REDIRECT);
        second.assert_verdict(TC_ACT_REDIRECT);
        assert_eq!(first.out, second.out, "same flow, same translation");
        let ip = Pkt6(&second.out).ip();
        ip.assert_l4_checksum("the known flow's packet");
        let port = ip.sport();
        let (orig, reply) = lab.assert_flow6(
            IPPROTO_UDP,
            (IP6_A, 5353),
            (REMOTE_IP6, 53),
            port,
            (lab.fx.a, MAC_A),
        );
        lab.assert_nat6_len(2);
        assert_eq!((orig.packets, orig.bytes), (2, 2 * frame.len() as u64));
        assert!((second.started_ns..=second.finished_ns).contains(&orig.last_seen_ns));
        assert_eq!(reply.packets, 0, "nothing came back yet");
        lab.dp()
            .assert_counters(&[(FWD_SNAT, 2, 2 * frame.len() as u64)]);
    });
}

#[test]
fn tcp_syn_gets_a_nat_port_and_the_handshake_is_tracked_through_the_replies() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let out = |flags| tcp6_out(IP6_A, 12345, REMOTE_IP6, 443, flags, MAC_A);

        let syn = lab.a_sends(&out(TCP_SYN));

        syn.assert_verdict(TC_ACT_REDIRECT);
        let ip = Pkt6(&syn.out).ip();
        let port = ip.sport();
        assert!(in_nat_range(port), "12345 is below the range: {port}");
        assert_eq!(
            (ip.saddr(), ip.daddr(), ip.dport()),
            (UPLINK_IP6, REMOTE_IP6, 443)
        );
        assert_eq!(ip.hop_limit(), 63);
        // Address and port changed: the TCP checksum must cover both.
        ip.assert_l4_checksum("TCP SYN after masquerade");
        let okey = orig_key6(IPPROTO_TCP, (IP6_A, 12345), (REMOTE_IP6, 443));
        let state = || {
            let e = lab.nat6_get(&okey).expect("original entry");
            (e.state, e.flags)
        };
        lab.assert_flow6(
            IPPROTO_TCP,
            (IP6_A, 12345),
            (REMOTE_IP6, 443),
            port,
            (lab.fx.a, MAC_A),
        );
        assert_eq!(state(), (CT_SYN_SENT, 0));
        let back = |flags| {
            let l4 = tcp6(REMOTE_IP6, UPLINK_IP6, 443, port, flags, 5000, 1001, &[]);
            inbound6(REMOTE_IP6, UPLINK_IP6, IPPROTO_TCP, &l4)
        };

        let syn_ack = lab.uplink_receives(&back(TCP_SYN | TCP_ACK));

        syn_ack.assert_verdict(TC_ACT_REDIRECT);
        let ip = Pkt6(&syn_ack.out).ip();
        assert_eq!((ip.daddr(), ip.dport()), (IP6_A, 12345));
        assert_eq!((ip.saddr(), ip.sport()), (REMOTE_IP6, 443));
        ip.assert_l4_checksum("SYN-ACK after reverse NAT");
        assert_eq!(state(), (CT_ESTABLISHED, NAT_F_REPLIED));
        // The server closes, then the container, then an RST.
        lab.uplink_receives(&back(TCP_FIN | TCP_ACK))
            .assert_verdict(TC_ACT_REDIRECT);
        assert_eq!(state(), (CT_FIN_WAIT, NAT_F_REPLIED | NAT_F_FIN_REPLY));
        lab.a_sends(&out(TCP_FIN | TCP_ACK))
            .assert_verdict(TC_ACT_REDIRECT);
        assert_eq!(state().0, CT_CLOSING);
        lab.uplink_receives(&back(TCP_RST))
            .assert_verdict(TC_ACT_REDIRECT);
        assert_eq!(state().0, CT_CLOSED);
        lab.assert_nat6_len(2);
        let stats = lab.dp().stats();
        assert_eq!(
            (
                stats[FWD_SNAT as usize].packets,
                stats[FWD_REVNAT as usize].packets
            ),
            (2, 3),
            "{}",
            lab.dp().stats_summary()
        );
    });
}

#[test]
fn icmp6_echo_is_translated_by_identifier_both_ways() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        // Identifier 0x4242 (16962) is below the NAT range.
        let ping = ping6_out(IP6_A, REMOTE_IP6, 0x4242, MAC_A);

        let run = lab.a_sends(&ping);

        run.assert_verdict(TC_ACT_REDIRECT);
        let ip = Pkt6(&run.out).ip();
        assert_eq!(ip.proto(), IPPROTO_ICMPV6);
        assert_eq!(ip.icmp_type(), ICMPV6_ECHO_REQUEST);
        let id = ip.icmp_id();
        assert!(in_nat_range(id), "identifier {id} outside the NAT range");
        assert_eq!((ip.saddr(), ip.daddr()), (UPLINK_IP6, REMOTE_IP6));
        assert_eq!(ip.hop_limit(), 63);
        // ICMPv6's checksum covers the pseudo-header: address and id.
        ip.assert_l4_checksum("echo request after masquerade");
        assert_eq!(&ip.l4()[8..], &[0xab; 56][..]);
        // For echo the identifier is the source "port", the other one 0.
        lab.assert_flow6(
            IPPROTO_ICMPV6,
            (IP6_A, 0x4242),
            (REMOTE_IP6, 0),
            id,
            (lab.fx.a, MAC_A),
        );
        lab.assert_nat6_len(2);
        let reply = inbound6(
            REMOTE_IP6,
            UPLINK_IP6,
            IPPROTO_ICMPV6,
            &echo6(
                REMOTE_IP6,
                UPLINK_IP6,
                ICMPV6_ECHO_REPLY,
                id,
                1,
                &[0xab; 56],
            ),
        );

        let back = lab.uplink_receives(&reply);

        back.assert_verdict(TC_ACT_REDIRECT);
        let out = Pkt6(&back.out);
        assert_eq!((out.dst_mac(), out.src_mac()), (MAC_A, BRIDGE_MAC));
        let ip = out.ip();
        assert_eq!((ip.saddr(), ip.daddr()), (REMOTE_IP6, IP6_A));
        assert_eq!(ip.icmp_type(), ICMPV6_ECHO_REPLY);
        assert_eq!(ip.icmp_id(), 0x4242, "the container's identifier back");
        assert_eq!(ip.hop_limit(), 63);
        ip.assert_l4_checksum("echo reply after reverse NAT");
        lab.dp().assert_counters(&[
            (FWD_SNAT, 1, ping.len() as u64),
            (FWD_REVNAT, 1, reply.len() as u64),
        ]);
    });
}

#[test]
fn same_source_port_from_two_containers_gets_two_nat_ports() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let (out_a, port_a) =
            lab.open_flow(lab.fx.a, &udp6_out(IP6_A, 40000, REMOTE_IP6, 53, MAC_A));
        let (out_b, port_b) =
            lab.open_flow(lab.fx.b, &udp6_out(IP6_B, 40000, REMOTE_IP6, 53, MAC_B));

        // A came first and kept its port; B's would clash with it.
        assert_eq!(port_a, 40000);
        assert_ne!(port_b, 40000, "two flows share one reply tuple");
        assert!(in_nat_range(port_b), "NAT port {port_b}");
        Pkt6(&out_a).ip().assert_l4_checksum("A's datagram");
        Pkt6(&out_b).ip().assert_l4_checksum("B's datagram");
        lab.assert_flow6(
            IPPROTO_UDP,
            (IP6_A, 40000),
            (REMOTE_IP6, 53),
            40000,
            (lab.fx.a, MAC_A),
        );
        lab.assert_flow6(
            IPPROTO_UDP,
            (IP6_B, 40000),
            (REMOTE_IP6, 53),
            port_b,
            (lab.fx.b, MAC_B),
        );
        lab.assert_nat6_len(4);

        // Each reply reaches its own container, on its own port.
        let to_b = lab.uplink_receives(&udp_reply(port_b));
        let to_a = lab.uplink_receives(&udp_reply(port_a));

        to_a.assert_verdict(TC_ACT_REDIRECT);
        to_b.assert_verdict(TC_ACT_REDIRECT);
        let (a, b) = (Pkt6(&to_a.out), Pkt6(&to_b.out));
        assert_eq!(a.dst_mac(), MAC_A);
        assert_eq!((a.ip().daddr(), a.ip().dport()), (IP6_A, 40000));
        assert_eq!(b.dst_mac(), MAC_B);
        assert_eq!((b.ip().daddr(), b.ip().dport()), (IP6_B, 40000));
        a.ip().assert_l4_checksum("reply to A");
        b.ip().assert_l4_checksum("reply to B");
        assert_eq!(lab.dp().stats()[FWD_REVNAT as usize].packets, 2);
    });
}

#[test]
fn udp_behind_extension_headers_is_translated_in_place() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        // Hop-by-hop, destination options (16 bytes), an atomic fragment
        // (offset 0, no more fragments: a whole packet), then UDP.
        let l4 = udp6(IP6_A, REMOTE_IP6, 5353, 53, b"behind a chain");
        let mut payload = ext_header(NEXTHDR_DEST, 0);
        payload.extend(ext_header(NEXTHDR_FRAGMENT, 1));
        payload.extend(frag_header(IPPROTO_UDP, 0, false, 0x0bad_cafe));
        payload.extend_from_slice(&l4);
        let frame = to_gateway6(MAC_A, &ipv6(IP6_A, REMOTE_IP6, NEXTHDR_HOP, &payload));

        let run = lab.a_sends(&frame);

        run.assert_verdict(TC_ACT_REDIRECT);
        assert_eq!(run.out.len(), frame.len());
        let ip = Pkt6(&run.out).ip();
        assert_eq!(ip.saddr(), UPLINK_IP6);
        // The chain is as it was; only UDP's port and checksum changed.
        let chain = payload.len() - l4.len();
        assert_eq!(ip.payload()[..chain], payload[..chain], "chain changed");
        assert_eq!(ip.proto(), IPPROTO_UDP);
        let port = ip.sport();
        assert!(in_nat_range(port));
        assert_eq!(ip.dport(), 53);
        assert_eq!(&ip.l4()[8..], b"behind a chain");
        assert_eq!(
            ip.l4().len(),
            l4.len(),
            "the UDP header was found after the chain"
        );
        assert_l4_checksum6(
            "UDP behind extension headers",
            IPPROTO_UDP,
            ip.saddr(),
            ip.daddr(),
            ip.l4(),
        );
        lab.assert_flow6(
            IPPROTO_UDP,
            (IP6_A, 5353),
            (REMOTE_IP6, 53),
            port,
            (lab.fx.a, MAC_A),
        );
        lab.dp().assert_counted_once(FWD_SNAT, &frame);
        assert!(
            lab.frags6_entries().is_empty(),
            "an atomic fragment is whole"
        );
    });
}

#[test]
fn hop_limit_two_leaves_with_one_and_one_is_left_to_the_kernel() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let mut two = udp6_out(IP6_A, 40000, REMOTE_IP6, 33434, MAC_A);
        set_hop_limit(&mut two, 2);
        let mut one = two.clone();
        set_hop_limit(&mut one, 1);
        let mut zero = two.clone();
        set_hop_limit(&mut zero, 0);

        let run_one = lab.a_sends(&one);
        let run_zero = lab.a_sends(&zero);

        // The kernel answers time exceeded from the gateway (traceroute's
        // first hop); nothing is tracked.
        for (run, frame) in [(&run_one, &one), (&run_zero, &zero)] {
            run.assert_verdict(TC_NEXT);
            run.assert_frame_unchanged(frame);
        }
        lab.dp()
            .assert_counters(&[(PASS_TTL_EXPIRING, 2, (one.len() + zero.len()) as u64)]);
        lab.assert_nat6_len(0);

        let run_two = lab.a_sends(&two);

        run_two.assert_verdict(TC_ACT_REDIRECT);
        let ip = Pkt6(&run_two.out).ip();
        assert_eq!(ip.hop_limit(), 1);
        assert_eq!(ip.saddr(), UPLINK_IP6);
        ip.assert_l4_checksum("hop limit 2 → 1");
    });
}

#[test]
fn reply_whose_hop_limit_would_expire_is_not_delivered() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let port = udp_flow(&lab);
        let mut one = udp_reply(port);
        set_hop_limit(&mut one, 1);
        let mut two = one.clone();
        set_hop_limit(&mut two, 2);

        let run_one = lab.uplink_receives(&one);
        let run_two = lab.uplink_receives(&two);

        // Never into the container with a hop limit of 0: answered as a
        // router would (Time Exceeded back to the sender, as
        // `icmp_reply.rs` does for IPv4), before the flow is accounted.
        let stats = lab.dp().stats();
        run_one.assert_verdict(TC_ACT_REDIRECT);
        let out = Pkt6(&run_one.out);
        assert_eq!((out.dst_mac(), out.src_mac()), (NEXT_HOP_MAC, UPLINK_MAC));
        let ip = out.ip();
        assert_eq!((ip.saddr(), ip.daddr()), (UPLINK_IP6, REMOTE_IP6));
        assert_eq!(
            (ip.proto(), ip.icmp_type(), ip.icmp_code()),
            (IPPROTO_ICMPV6, 3, 0)
        );
        assert!(
            ip.hop_limit() >= 64,
            "a fresh hop limit: {}",
            ip.hop_limit()
        );
        ip.assert_l4_checksum("time exceeded for the reply");
        let quoted = ip.quoted().0;
        let arrived = &one[ETH_HLEN..];
        assert!(quoted.len() >= IPV6_HLEN + 8, "quote too short");
        assert_eq!(
            quoted,
            &arrived[..quoted.len()],
            "the quote is the reply as it came"
        );
        assert_eq!(stats[FWD_ICMP_TIME_EXCEEDED as usize].packets, 1);
        assert_eq!(stats[DROP_TTL_EXCEEDED as usize].packets, 0);
        run_two.assert_verdict(TC_ACT_REDIRECT);
        let out = Pkt6(&run_two.out);
        assert_eq!(out.dst_mac(), MAC_A);
        let ip = out.ip();
        assert_eq!((ip.hop_limit(), ip.daddr(), ip.dport()), (1, IP6_A, 5353));
        ip.assert_l4_checksum("reply with hop limit 2 → 1");
        assert_eq!(
            stats[FWD_REVNAT as usize],
            ebridge_common::stats::Counter {
                packets: 1,
                bytes: two.len() as u64
            },
            "only the hop limit 2 reply is delivered: {}",
            lab.dp().stats_summary()
        );
    });
}

#[test]
fn uplink_traffic_without_a_flow_passes_to_the_host_untouched() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let port = udp_flow(&lab);
        let snat = lab.dp().stats()[FWD_SNAT as usize];
        let other = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
        let frames = [
            // No flow on this port.
            udp_reply(if port == 40000 { 40001 } else { 40000 }),
            // The flow's port, but another remote port, host or protocol.
            inbound6(
                REMOTE_IP6,
                UPLINK_IP6,
                IPPROTO_UDP,
                &udp6(REMOTE_IP6, UPLINK_IP6, 54, port, b"x"),
            ),
            inbound6(
                ROUTER_IP6,
                UPLINK_IP6,
                IPPROTO_UDP,
                &udp6(ROUTER_IP6, UPLINK_IP6, 53, port, b"x"),
            ),
            inbound6(
                REMOTE_IP6,
                UPLINK_IP6,
                IPPROTO_TCP,
                &tcp6(REMOTE_IP6, UPLINK_IP6, 53, port, TCP_SYN, 1, 0, &[]),
            ),
            // Someone pinging the node.
            inbound6(
                REMOTE_IP6,
                UPLINK_IP6,
                IPPROTO_ICMPV6,
                &echo6(
                    REMOTE_IP6,
                    UPLINK_IP6,
                    ICMPV6_ECHO_REQUEST,
                    0x77,
                    1,
                    b"ping",
                ),
            ),
            // Another node address on the link.
            inbound6(
                REMOTE_IP6,
                other,
                IPPROTO_UDP,
                &udp6(REMOTE_IP6, other, 53, port, b"x"),
            ),
            // Neighbour discovery for the uplink address.
            ethernet(
                MAC_ALL_NODES,
                NEXT_HOP_MAC,
                ETH_P_IPV6,
                &ipv6(
                    NEXT_HOP_IP6,
                    solicited_node(UPLINK_IP6),
                    IPPROTO_ICMPV6,
                    &icmp6(
                        NEXT_HOP_IP6,
                        solicited_node(UPLINK_IP6),
                        ND_NEIGHBOR_SOLICIT,
                        0,
                        &ns_body(UPLINK_IP6, &[lladdr_option(1, NEXT_HOP_MAC)]),
                    ),
                ),
            ),
        ];

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
        let (_, back) = lab.assert_flow6(
            IPPROTO_UDP,
            (IP6_A, 5353),
            (REMOTE_IP6, 53),
            port,
            (lab.fx.a, MAC_A),
        );
        assert_eq!((back.packets, back.flags), (0, 0), "the flow saw no reply");
    });
}

#[test]
fn outside_traffic_to_a_container_address_is_dropped_while_masquerading() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let l4 = udp6(REMOTE_IP6, IP6_A, 53, 40000, b"knock knock");
        let frame = inbound6(REMOTE_IP6, IP6_A, IPPROTO_UDP, &l4);

        let run = lab.uplink_receives(&frame);

        run.assert_verdict(TC_ACT_SHOT);
        run.assert_frame_unchanged(&frame);
        lab.dp().assert_counted_once(DROP_NOT_PUBLISHED, &frame);
        lab.assert_nat6_len(0);
    });
}

#[test]
fn node_addresses_subnet_link_local_and_multicast_go_to_the_host() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let frames = [
            udp6_out(IP6_A, 40000, GATEWAY_IP6, 53, MAC_A),
            // Another container routed through the gateway (ICC is on).
            udp6_out(IP6_A, 40000, IP6_B, 53, MAC_A),
            udp6_out(IP6_A, 40000, link_local(BRIDGE_MAC), 53, MAC_A),
            udp6_out(
                IP6_A,
                5353,
                [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfb],
                5353,
                MAC_A,
            ),
            // The uplink's own address: the FIB says local.
            udp6_out(IP6_A, 40000, UPLINK_IP6, 53, MAC_A),
        ];

        let mut bytes = 0;
        for frame in &frames {
            let run = lab.a_sends(frame);
            run.assert_verdict(TC_NEXT);
            run.assert_frame_unchanged(frame);
            bytes += frame.len() as u64;
        }

        lab.dp()
            .assert_counters(&[(PASS_TO_HOST, frames.len() as u64, bytes)]);
        lab.assert_nat6_len(0);
    });
}

#[test]
fn routes_the_fast_path_cannot_take_are_left_to_the_kernel_untranslated() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        ip(&["-6", "route", "add", "unreachable", "2001:db8:dead::/48"]);
        let unreachable = udp6_out(
            IP6_A,
            40000,
            [
                0x20, 0x01, 0x0d, 0xb8, 0xde, 0xad, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
            ],
            53,
            MAC_A,
        );
        // Too big for a 1280-byte uplink: the kernel sends Packet Too Big.
        let big = {
            let l4 = udp6(IP6_A, REMOTE_IP6, 40000, 53, &[0x5a; 1400]);
            to_gateway6(MAC_A, &ipv6(IP6_A, REMOTE_IP6, IPPROTO_UDP, &l4))
        };

        let run = lab.a_sends(&unreachable);
        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&unreachable);
        ip(&["link", "set", UPLINK, "mtu", "1280"]);
        let run = lab.a_sends(&big);
        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&big);

        lab.dp().assert_counters(&[(
            PASS_FIB_SLOW_PATH,
            2,
            (unreachable.len() + big.len()) as u64,
        )]);
        lab.assert_nat6_len(0);
    });
}

#[test]
fn ipv6_forwarding_off_on_the_bridge_is_left_to_the_kernel() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        // `ebridge up` turns it on; without it the FIB refuses to forward.
        set_bridge_forwarding6(false);
        let frame = udp6_out(IP6_A, 40000, REMOTE_IP6, 53, MAC_A);

        let run = lab.a_sends(&frame);

        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&frame);
        lab.dp().assert_counted_once(PASS_FIB_SLOW_PATH, &frame);
        lab.assert_nat6_len(0);
    });
}

#[test]
fn next_hop_without_a_neighbour_entry_is_translated_and_resolved_by_the_kernel() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        // 2001:db8:1::3 has no neighbour entry.
        ip(&[
            "-6",
            "route",
            "add",
            "2001:db8:77::/48",
            "via",
            "2001:db8:1::3",
            "dev",
            UPLINK,
        ]);
        let dst = [
            0x20, 0x01, 0x0d, 0xb8, 0, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5,
        ];
        let frame = udp6_out(IP6_A, 40000, dst, 53, MAC_A);

        let run = lab.a_sends(&frame);

        // bpf_redirect_neigh: the kernel fills the MACs on transmit.
        run.assert_verdict(TC_ACT_REDIRECT);
        let out = Pkt6(&run.out);
        assert_eq!(out.dst_mac(), BRIDGE_MAC, "MACs are left to the kernel");
        assert_eq!(out.src_mac(), MAC_A);
        let ip = out.ip();
        assert_eq!((ip.saddr(), ip.daddr()), (UPLINK_IP6, dst));
        assert_eq!(ip.hop_limit(), 63);
        ip.assert_l4_checksum("masquerade via an unresolved next hop");
        lab.dp().assert_counted_once(FWD_SNAT, &frame);
        lab.assert_nat6_len(2);
    });
}

#[test]
fn no_global_address_on_the_uplink_drops_instead_of_leaking() {
    in_private_netns(|net| {
        let lab = NatLab6::with(net, |cfg| cfg.uplink_ipv6 = [0; 16]);
        let frame = udp6_out(IP6_A, 40000, REMOTE_IP6, 53, MAC_A);

        let run = lab.a_sends(&frame);

        run.assert_verdict(TC_ACT_SHOT);
        run.assert_frame_unchanged(&frame);
        lab.dp().assert_counted_once(DROP_NO_UPLINK_IPV6, &frame);
        lab.assert_nat6_len(0);
    });
}

// ---- routed mode (--ipv6-masquerade off) -----------------------------------

fn routed_lab(net: &TestNet) -> NatLab6 {
    NatLab6::with(net, |cfg| cfg.flags &= !CONFIG_F_IPV6_MASQUERADE)
}

#[test]
fn routed_mode_sends_containers_out_with_their_own_address() {
    in_private_netns(|net| {
        let lab = routed_lab(net);
        let frames = [
            udp6_out(IP6_A, 5353, REMOTE_IP6, 53, MAC_A),
            tcp6_out(IP6_A, 12345, REMOTE_IP6, 443, TCP_SYN, MAC_A),
            ping6_out(IP6_A, REMOTE_IP6, 0x4242, MAC_A),
        ];

        let mut bytes = 0;
        for frame in &frames {
            let run = lab.a_sends(frame);

            run.assert_verdict(TC_ACT_REDIRECT);
            assert_eq!(run.out.len(), frame.len());
            let out = Pkt6(&run.out);
            assert_eq!(out.dst_mac(), NEXT_HOP_MAC, "destination MAC from the FIB");
            assert_eq!(out.src_mac(), UPLINK_MAC, "source MAC from the FIB");
            let (ip, sent) = (out.ip(), Pkt6(frame).ip());
            assert_eq!(ip.saddr(), IP6_A, "routed: the container's own address");
            assert_eq!(ip.daddr(), REMOTE_IP6);
            assert_eq!(ip.hop_limit(), 63);
            // Only the hop limit changed in the IPv6 packet.
            assert_eq!(ip.payload(), sent.payload(), "transport bytes changed");
            ip.assert_l4_checksum("routed packet");
            bytes += frame.len() as u64;
        }

        lab.dp()
            .assert_counters(&[(FWD_ROUTED_OUT, frames.len() as u64, bytes)]);
        lab.assert_nat6_len(0);
    });
}

#[test]
fn routed_mode_delivers_outside_traffic_to_the_containers_own_address() {
    in_private_netns(|net| {
        let lab = routed_lab(net);
        let l4 = udp6(REMOTE_IP6, IP6_B, 53, 40000, b"routed in");
        let frame = inbound6(REMOTE_IP6, IP6_B, IPPROTO_UDP, &l4);
        let nobody = inbound6(
            REMOTE_IP6,
            IP6_UNKNOWN,
            IPPROTO_UDP,
            &udp6(REMOTE_IP6, IP6_UNKNOWN, 53, 40000, b"nobody"),
        );

        let run = lab.uplink_receives(&frame);
        let run_nobody = lab.uplink_receives(&nobody);

        run.assert_verdict(TC_ACT_REDIRECT);
        let out = Pkt6(&run.out);
        assert_eq!((out.dst_mac(), out.src_mac()), (MAC_B, BRIDGE_MAC));
        let ip = out.ip();
        assert_eq!((ip.saddr(), ip.daddr()), (REMOTE_IP6, IP6_B));
        assert_eq!(ip.hop_limit(), 63);
        assert_eq!(ip.l4(), &l4[..], "routed: transport untouched");
        ip.assert_l4_checksum("routed into B");
        // No such container: the kernel answers address unreachable.
        run_nobody.assert_verdict(TC_NEXT);
        run_nobody.assert_frame_unchanged(&nobody);
        lab.dp().assert_counters(&[
            (FWD_ROUTED_IN, 1, frame.len() as u64),
            (PASS_NO_SUCH_POD, 1, nobody.len() as u64),
        ]);
        lab.assert_nat6_len(0);
    });
}

#[test]
fn routed_ipv6_leaves_ipv4_masqueraded() {
    in_private_netns(|net| {
        let lab = routed_lab(net);
        let v4 = udp_out(IP_A, 40000, REMOTE_IP, 53, MAC_A);

        let run = lab.a_sends(&v4);

        run.assert_verdict(TC_ACT_REDIRECT);
        let ip = Pkt(&run.out).ip();
        assert_eq!(ip.saddr(), UPLINK_IP, "IPv4 is still masqueraded");
        ip.assert_checksums("IPv4 beside routed IPv6");
        lab.dp().assert_counted_once(FWD_SNAT, &v4);
        lab.assert_nat6_len(0);
        assert_eq!(lab.dp().nat_entries().len(), 2);
    });
}

/// A 2-byte UDP payload that makes the checksum of `src:sport →
/// dst:dport` come out as 0 (which UDP must send as 0xffff).
fn payload_summing_to_zero(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16) -> [u8; 2] {
    let mut u = udp6(src, dst, sport, dport, &[0, 0]);
    u[6..8].copy_from_slice(&[0, 0]);
    let c = checksum(&[&pseudo6(src, dst, IPPROTO_UDP, u.len()), &u]);
    // Adding c to the data makes the one's-complement sum 0xffff.
    let payload = c.to_be_bytes();
    let mut check = udp6(src, dst, sport, dport, &payload);
    check[6..8].copy_from_slice(&[0, 0]);
    assert_eq!(
        checksum(&[&pseudo6(src, dst, IPPROTO_UDP, check.len()), &check]),
        0,
        "test setup: the translated checksum must compute to 0"
    );
    payload
}

#[test]
fn udp_checksum_that_becomes_zero_is_sent_as_ffff_both_ways() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        // Port 40000 is kept, so the translated datagram is known ahead.
        let payload = payload_summing_to_zero(UPLINK_IP6, REMOTE_IP6, 40000, 53);
        let l4 = udp6(IP6_A, REMOTE_IP6, 40000, 53, &payload);
        let frame = to_gateway6(MAC_A, &ipv6(IP6_A, REMOTE_IP6, IPPROTO_UDP, &l4));

        let run = lab.a_sends(&frame);

        run.assert_verdict(TC_ACT_REDIRECT);
        let ip = Pkt6(&run.out).ip();
        assert_eq!(ip.sport(), 40000);
        assert_eq!(
            ip.l4_checksum_field(),
            0xffff,
            "a computed 0 must go out as 0xffff: 0 is no checksum, invalid over IPv6"
        );
        ip.assert_l4_checksum("UDP with a 0xffff checksum");

        // The reply whose un-NATed checksum computes to 0.
        let payload = payload_summing_to_zero(REMOTE_IP6, IP6_A, 53, 40000);
        let reply = inbound6(
            REMOTE_IP6,
            UPLINK_IP6,
            IPPROTO_UDP,
            &udp6(REMOTE_IP6, UPLINK_IP6, 53, 40000, &payload),
        );

        let back = lab.uplink_receives(&reply);

        back.assert_verdict(TC_ACT_REDIRECT);
        let ip = Pkt6(&back.out).ip();
        assert_eq!((ip.daddr(), ip.dport()), (IP6_A, 40000));
        assert_eq!(ip.l4_checksum_field(), 0xffff);
        ip.assert_l4_checksum("reply with a 0xffff checksum");
    });
}

#[test]
fn link_local_source_is_never_masqueraded() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        // A's own link-local address (anti-spoofing lets it through) to
        // the outside: the kernel does not forward link-local sources.
        let frame = udp6_out(link_local(MAC_A), 40000, REMOTE_IP6, 53, MAC_A);

        let run = lab.a_sends(&frame);

        // The FIB answers "not forwarded" for a link-local source: the
        // kernel's, which drops it (beyond scope).
        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&frame);
        lab.dp().assert_counted_once(PASS_TO_HOST, &frame);
        lab.assert_nat6_len(0);
    });
}

#[test]
fn reply_behind_extension_headers_is_delivered() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let port = udp_flow(&lab);
        let l4 = udp6(REMOTE_IP6, UPLINK_IP6, 53, port, b"behind options");
        let mut payload = ext_header(NEXTHDR_DEST, 0);
        payload.extend(ext_header(IPPROTO_UDP, 1));
        payload.extend_from_slice(&l4);
        let reply = inbound6(REMOTE_IP6, UPLINK_IP6, NEXTHDR_HOP, &payload);

        let run = lab.uplink_receives(&reply);

        run.assert_verdict(TC_ACT_REDIRECT);
        let ip = Pkt6(&run.out).ip();
        let chain = payload.len() - l4.len();
        assert_eq!(ip.payload()[..chain], payload[..chain], "chain changed");
        assert_eq!((ip.daddr(), ip.dport()), (IP6_A, 5353));
        assert_eq!(&ip.l4()[8..], b"behind options");
        ip.assert_l4_checksum("reply behind extension headers");
        assert_eq!(lab.dp().stats()[FWD_REVNAT as usize].packets, 1);
    });
}

#[test]
fn one_port_serves_flows_to_different_destinations() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);

        let r1 = lab.a_sends(&udp6_out(IP6_A, 40000, REMOTE_IP6, 53, MAC_A));
        let r2 = lab.a_sends(&udp6_out(IP6_A, 40000, REMOTE_IP6, 123, MAC_A));

        r1.assert_verdict(TC_ACT_REDIRECT);
        r2.assert_verdict(TC_ACT_REDIRECT);
        // The reply tuples differ by the remote port: no clash.
        assert_eq!(Pkt6(&r1.out).ip().sport(), 40000);
        assert_eq!(Pkt6(&r2.out).ip().sport(), 40000);
        lab.assert_nat6_len(4);
    });
}

#[test]
fn port_exhaustion_drops_the_new_flow_and_records_its_destination() {
    in_private_netns(|net| {
        let lab = NatLab6::with(net, |cfg| {
            cfg.nat_port_min = 50000;
            cfg.nat_port_max = 50001;
        });
        let flow = |sport| udp6_out(IP6_A, sport, REMOTE_IP6, 53, MAC_A);
        let (f1, f2, f3) = (flow(40000), flow(40001), flow(40002));

        let r1 = lab.a_sends(&f1);
        let r2 = lab.a_sends(&f2);
        let r3 = lab.a_sends(&f3);

        r1.assert_verdict(TC_ACT_REDIRECT);
        r2.assert_verdict(TC_ACT_REDIRECT);
        let mut ports = [Pkt6(&r1.out).ip().sport(), Pkt6(&r2.out).ip().sport()];
        ports.sort();
        assert_eq!(ports, [50000, 50001], "both ports of the range in use");
        r3.assert_verdict(TC_ACT_SHOT);
        r3.assert_frame_unchanged(&f3);
        // Exactly the two flows' four entries: no half entry of the third.
        lab.assert_nat6_len(4);
        lab.dp().assert_counters(&[
            (FWD_SNAT, 2, (f1.len() + f2.len()) as u64),
            (DROP_NAT_NO_PORT, 1, f3.len() as u64),
        ]);
        // The destination that ran out, for the agent to log.
        let no_port: aya::maps::HashMap<_, NoPort6Key, NoPortCount> = lab
            .dp()
            .ebpf()
            .map(ebridge_common::maps::MAP_NAT_NO_PORT6)
            .expect("nat_no_port6 map")
            .try_into()
            .expect("nat_no_port6 is a HashMap<NoPort6Key, NoPortCount>");
        let recorded: Vec<(NoPort6Key, NoPortCount)> =
            no_port.iter().map(|kv| kv.expect("read")).collect();
        assert_eq!(recorded.len(), 1, "{recorded:?}");
        let (key, count) = recorded[0];
        assert_eq!(
            (key.daddr, u16::from_be(key.dport), key.proto),
            (REMOTE_IP6, 53, IPPROTO_UDP)
        );
        assert_eq!(count.drops, 1);
        assert!((r3.started_ns..=r3.finished_ns).contains(&count.last_ns));
    });
}

#[test]
fn full_nat6_table_drops_the_new_flow_and_rolls_back_its_reply_entry() {
    in_private_netns(|net| {
        // Room for one flow and a half: the second flow's reply entry fits,
        // its original entry does not.
        let lab = NatLab6::build(net, 3, |_| {});
        let first = udp6_out(IP6_A, 40000, REMOTE_IP6, 53, MAC_A);
        let second = udp6_out(IP6_A, 40001, REMOTE_IP6, 53, MAC_A);

        lab.a_sends(&first).assert_verdict(TC_ACT_REDIRECT);
        let run = lab.a_sends(&second);

        run.assert_verdict(TC_ACT_SHOT);
        run.assert_frame_unchanged(&second);
        lab.dp().assert_counters(&[
            (FWD_SNAT, 1, first.len() as u64),
            (DROP_NAT_TABLE_FULL, 1, second.len() as u64),
        ]);
        lab.assert_flow6(
            IPPROTO_UDP,
            (IP6_A, 40000),
            (REMOTE_IP6, 53),
            40000,
            (lab.fx.a, MAC_A),
        );
        lab.assert_nat6_len(2);
    });
}
