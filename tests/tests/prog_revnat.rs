//! Reverse NAT on the uplink's TC ingress (`uplink_ingress`): a reply to a
//! masqueraded flow gets its destination address and port turned back into
//! the container's, its TTL decremented, the container's MAC as destination
//! and the bridge's as source, and is sent straight into the container
//! (`bpf_redirect_peer`). Everything else is the host's: passed untouched
//! (but while masquerading, outside traffic straight to a container address
//! is dropped: only published ports lead in).
mod common;

use common::{frame::*, nat::*, packet_test::*};
use ebridge_common::{config::CONFIG_F_MASQUERADE, nat::*, stats::*};

/// A's UDP flow 5353 → REMOTE:53 (5353 is below the NAT range, so the
/// port is translated too); returns the NAT port.
fn udp_flow(lab: &NatLab) -> u16 {
    let (_, port) = lab.open_flow(lab.fx.a, &udp_out(IP_A, 5353, REMOTE_IP, 53, MAC_A));
    assert!(in_nat_range(port));
    port
}

fn udp_reply(nat_port: u16) -> Vec<u8> {
    let l4 = udp(REMOTE_IP, UPLINK_IP, 53, nat_port, b"an answer");
    inbound(REMOTE_IP, UPLINK_IP, IPPROTO_UDP, &l4)
}

#[test]
fn udp_reply_is_translated_back_and_sent_into_the_container() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let port = udp_flow(&lab);
        let snat_bytes = lab.dp().stats()[FWD_SNAT as usize].bytes;
        let reply = udp_reply(port);

        let run = lab.uplink_receives(&reply);

        run.assert_verdict(TC_ACT_REDIRECT);
        assert_eq!(run.out.len(), reply.len());
        let out = Pkt(&run.out);
        assert_eq!(out.dst_mac(), MAC_A, "destination MAC: the container's");
        assert_eq!(out.src_mac(), BRIDGE_MAC, "source MAC: the bridge's");
        let ip = out.ip();
        assert_eq!((ip.saddr(), ip.sport()), (REMOTE_IP, 53));
        assert_eq!((ip.daddr(), ip.dport()), (IP_A, 5353));
        assert_eq!(ip.ttl(), 63);
        ip.assert_checksums("reply after reverse NAT");
        assert_eq!(&ip.l4()[8..], b"an answer");
        lab.dp().assert_counters(&[
            (FWD_SNAT, 1, snat_bytes),
            (FWD_REVNAT, 1, reply.len() as u64),
        ]);
        let (orig, back) = lab.assert_flow(
            IPPROTO_UDP,
            (IP_A, 5353),
            (REMOTE_IP, 53),
            port,
            (lab.fx.a, MAC_A),
        );
        assert_eq!((back.packets, back.bytes), (1, reply.len() as u64));
        assert!((run.started_ns..=run.finished_ns).contains(&back.last_seen_ns));
        assert_eq!(orig.packets, 1);
        assert_ne!(back.flags & NAT_F_REPLIED, 0, "reply entry not marked");
        assert_ne!(orig.flags & NAT_F_REPLIED, 0, "original entry not marked");
        assert_eq!(orig.state, CT_NEW, "UDP has no state beyond 'replied'");
        lab.assert_nat_len(2);
    });
}

#[test]
fn replies_of_two_flows_on_one_port_reach_their_own_containers() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let (_, port_a) = lab.open_flow(lab.fx.a, &udp_out(IP_A, 40000, REMOTE_IP, 53, MAC_A));
        let (_, port_b) = lab.open_flow(lab.fx.b, &udp_out(IP_B, 40000, REMOTE_IP, 53, MAC_B));
        assert_ne!(port_a, port_b);

        let to_b = lab.uplink_receives(&udp_reply(port_b));
        let to_a = lab.uplink_receives(&udp_reply(port_a));

        to_a.assert_verdict(TC_ACT_REDIRECT);
        to_b.assert_verdict(TC_ACT_REDIRECT);
        let (a, b) = (Pkt(&to_a.out), Pkt(&to_b.out));
        assert_eq!(a.dst_mac(), MAC_A);
        assert_eq!((a.ip().daddr(), a.ip().dport()), (IP_A, 40000));
        assert_eq!(b.dst_mac(), MAC_B);
        assert_eq!((b.ip().daddr(), b.ip().dport()), (IP_B, 40000));
        a.ip().assert_checksums("reply to A");
        b.ip().assert_checksums("reply to B");
        assert_eq!(lab.dp().stats()[FWD_REVNAT as usize].packets, 2);
    });
}

#[test]
fn tcp_handshake_and_close_are_tracked_through_the_replies() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let out = |flags| tcp_out(IP_A, 12345, REMOTE_IP, 443, flags, MAC_A);
        let (_, port) = lab.open_flow(lab.fx.a, &out(TCP_SYN));
        let back = |flags| {
            let l4 = tcp(REMOTE_IP, UPLINK_IP, 443, port, flags, 5000, 1001, &[]);
            inbound(REMOTE_IP, UPLINK_IP, IPPROTO_TCP, &l4)
        };
        let okey = orig_key(IPPROTO_TCP, (IP_A, 12345), (REMOTE_IP, 443));
        let state = || {
            let e = lab.dp().nat_get(&okey).expect("original entry");
            (e.state, e.flags)
        };
        assert_eq!(state(), (CT_SYN_SENT, 0));

        let run = lab.uplink_receives(&back(TCP_SYN | TCP_ACK));

        run.assert_verdict(TC_ACT_REDIRECT);
        let ip = Pkt(&run.out).ip();
        assert_eq!((ip.daddr(), ip.dport()), (IP_A, 12345));
        ip.assert_checksums("SYN-ACK after reverse NAT");
        assert_eq!(state(), (CT_ESTABLISHED, NAT_F_REPLIED));

        // The server closes first, then the container.
        lab.uplink_receives(&back(TCP_FIN | TCP_ACK))
            .assert_verdict(TC_ACT_REDIRECT);
        assert_eq!(state(), (CT_FIN_WAIT, NAT_F_REPLIED | NAT_F_FIN_REPLY));
        lab.a_sends(&out(TCP_FIN | TCP_ACK))
            .assert_verdict(TC_ACT_REDIRECT);
        assert_eq!(
            state(),
            (
                CT_CLOSING,
                NAT_F_REPLIED | NAT_F_FIN_REPLY | NAT_F_FIN_ORIGINAL
            )
        );
        // An RST from the server closes it whatever the state.
        lab.uplink_receives(&back(TCP_RST))
            .assert_verdict(TC_ACT_REDIRECT);
        assert_eq!(state().0, CT_CLOSED);
    });
}

#[test]
fn icmp_echo_reply_gets_the_containers_identifier_back() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let (_, id) = lab.open_flow(lab.fx.a, &icmp_frame(MAC_A, BRIDGE_MAC, IP_A, REMOTE_IP));
        assert_ne!(id, 0x4242, "test setup: the identifier is translated");
        let reply = inbound(
            REMOTE_IP,
            UPLINK_IP,
            IPPROTO_ICMP,
            &icmp_echo_reply(id, 1, &[0xab; 56]),
        );

        let run = lab.uplink_receives(&reply);

        run.assert_verdict(TC_ACT_REDIRECT);
        let out = Pkt(&run.out);
        assert_eq!(out.dst_mac(), MAC_A);
        let ip = out.ip();
        assert_eq!(ip.daddr(), IP_A);
        assert_eq!(ip.icmp_type(), ICMP_ECHO_REPLY);
        assert_eq!(ip.icmp_id(), 0x4242);
        assert_eq!(ip.ttl(), 63);
        ip.assert_checksums("echo reply after reverse NAT");
        assert_eq!(lab.dp().stats()[FWD_REVNAT as usize].packets, 1);
    });
}

#[test]
fn udp_reply_without_checksum_keeps_a_zero_checksum() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let port = udp_flow(&lab);
        let reply = inbound(
            REMOTE_IP,
            UPLINK_IP,
            IPPROTO_UDP,
            &udp_no_checksum(53, port, b"no checksum"),
        );

        let run = lab.uplink_receives(&reply);

        run.assert_verdict(TC_ACT_REDIRECT);
        let ip = Pkt(&run.out).ip();
        assert_eq!((ip.daddr(), ip.dport()), (IP_A, 5353));
        ip.assert_header_checksum("reply without UDP checksum");
        ip.assert_no_udp_checksum();
    });
}

#[test]
fn frame_to_the_uplink_without_a_flow_passes_untouched() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let port = udp_flow(&lab);
        let snat = lab.dp().stats()[FWD_SNAT as usize];
        let frames = [
            // No flow at all on this port.
            udp_reply(if port == 40000 { 40001 } else { 40000 }),
            // The flow's port, but another remote port...
            inbound(
                REMOTE_IP,
                UPLINK_IP,
                IPPROTO_UDP,
                &udp(REMOTE_IP, UPLINK_IP, 54, port, b"x"),
            ),
            // ...another remote host...
            inbound(
                ROUTER_IP,
                UPLINK_IP,
                IPPROTO_UDP,
                &udp(ROUTER_IP, UPLINK_IP, 53, port, b"x"),
            ),
            // ...or another protocol.
            inbound(
                REMOTE_IP,
                UPLINK_IP,
                IPPROTO_TCP,
                &tcp(REMOTE_IP, UPLINK_IP, 53, port, TCP_SYN, 1, 0, &[]),
            ),
            // Someone pinging the node.
            inbound(
                REMOTE_IP,
                UPLINK_IP,
                IPPROTO_ICMP,
                &icmp_echo(0x77, 1, b"ping"),
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
        let (_, back) = lab.assert_flow(
            IPPROTO_UDP,
            (IP_A, 5353),
            (REMOTE_IP, 53),
            port,
            (lab.fx.a, MAC_A),
        );
        assert_eq!((back.packets, back.flags), (0, 0), "the flow saw no reply");
    });
}

#[test]
fn traffic_not_for_the_uplink_address_passes_untouched() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let port = udp_flow(&lab);
        let snat = lab.dp().stats()[FWD_SNAT as usize];
        let other_addr = inbound(
            REMOTE_IP,
            [198, 51, 100, 7],
            IPPROTO_UDP,
            &udp(REMOTE_IP, [198, 51, 100, 7], 53, port, b"x"),
        );
        let arp = arp_request(NEXT_HOP_MAC, NEXT_HOP_IP, UPLINK_IP);
        let v6 = ipv6_frame(NEXT_HOP_MAC, UPLINK_MAC, [0xfe; 16], [0xfd; 16]);

        let mut bytes = 0;
        for frame in [&other_addr, &arp, &v6] {
            let run = lab.uplink_receives(frame);
            run.assert_verdict(TC_NEXT);
            run.assert_frame_unchanged(frame);
            bytes += frame.len() as u64;
        }

        lab.dp().assert_counters(&[
            (FWD_SNAT, snat.packets, snat.bytes),
            (PASS_UPLINK_HOST, 3, bytes),
        ]);
    });
}

#[test]
fn malformed_ipv4_on_the_uplink_is_the_hosts_problem() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let port = udp_flow(&lab);
        let good = udp_reply(port);
        let mut bad_ihl = good.clone();
        bad_ihl[ETH_HLEN] = 0x44;
        let mut too_long = good.clone();
        too_long[ETH_HLEN + 2..ETH_HLEN + 4].copy_from_slice(&2000u16.to_be_bytes());
        fix_ipv4_checksum(&mut too_long[ETH_HLEN..]);

        for frame in [&bad_ihl, &too_long] {
            let run = lab.uplink_receives(frame);
            run.assert_verdict(TC_NEXT);
            run.assert_frame_unchanged(frame);
        }

        assert_eq!(lab.dp().stats()[PASS_UPLINK_HOST as usize].packets, 2);
        assert_eq!(lab.dp().stats()[FWD_REVNAT as usize].packets, 0);
    });
}

#[test]
fn reply_whose_ttl_would_expire_is_answered_with_time_exceeded() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let port = udp_flow(&lab);
        let l4 = udp(REMOTE_IP, UPLINK_IP, 53, port, b"x");
        let with_ttl = |ttl| {
            let opts = Ipv4Opts {
                ttl,
                ..Ipv4Opts::default()
            };
            inbound_with(&opts, REMOTE_IP, UPLINK_IP, IPPROTO_UDP, &l4)
        };

        let one = lab.uplink_receives(&with_ttl(1));
        let two = lab.uplink_receives(&with_ttl(2));

        assert_icmp_answer(&one, &with_ttl(1), 11, 0);
        assert_eq!(lab.dp().stats()[FWD_ICMP_TIME_EXCEEDED as usize].packets, 1);
        two.assert_verdict(TC_ACT_REDIRECT);
        let ip = Pkt(&two.out).ip();
        assert_eq!(ip.ttl(), 1);
        ip.assert_checksums("reply with TTL 2 → 1");
    });
}

#[test]
fn fragmented_reply_is_translated_fragment_by_fragment() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let port = udp_flow(&lab);
        let payload: Vec<u8> = (0..64u8).collect();
        let l4 = udp(REMOTE_IP, UPLINK_IP, 53, port, &payload);
        let opts = Ipv4Opts {
            id: 0xbeef,
            ..Ipv4Opts::default()
        };
        let (first, later) = fragments(&opts, REMOTE_IP, UPLINK_IP, IPPROTO_UDP, &l4, 32);
        let first = ethernet(UPLINK_MAC, NEXT_HOP_MAC, ETH_P_IPV4, &first);
        let later = ethernet(UPLINK_MAC, NEXT_HOP_MAC, ETH_P_IPV4, &later);

        let r1 = lab.uplink_receives(&first);
        let r2 = lab.uplink_receives(&later);

        r1.assert_verdict(TC_ACT_REDIRECT);
        r2.assert_verdict(TC_ACT_REDIRECT);
        let (o1, o2) = (Pkt(&r1.out), Pkt(&r2.out));
        for (o, what) in [(o1, "first fragment"), (o2, "later fragment")] {
            assert_eq!(o.dst_mac(), MAC_A, "{what}: destination MAC");
            assert_eq!(o.src_mac(), BRIDGE_MAC, "{what}: source MAC");
            let ip = o.ip();
            assert_eq!(ip.daddr(), IP_A, "{what}: destination");
            assert_eq!(ip.saddr(), REMOTE_IP, "{what}: source");
            assert_eq!(ip.ttl(), 63, "{what}: TTL");
            assert_eq!(ip.id(), 0xbeef, "{what}: IP id");
            ip.assert_header_checksum(what);
        }
        assert_eq!(o1.ip().frag(), IP_MF);
        assert_eq!(o2.ip().frag(), 4);
        assert_eq!(o1.ip().dport(), 5353);
        // The UDP checksum spans both fragments.
        let whole = [o1.ip().l4(), o2.ip().l4()].concat();
        assert_l4_checksum("reassembled reply", IPPROTO_UDP, REMOTE_IP, IP_A, &whole);
        assert_eq!(&whole[8..], &payload[..]);
        assert_eq!(lab.dp().stats()[FWD_REVNAT as usize].packets, 2);
        let frags = lab.dp().frags_entries();
        let (key, entry) = frags
            .iter()
            .find(|(k, _)| k.dir == DIR_REPLY)
            .unwrap_or_else(|| panic!("no reply-direction frags entry: {frags:?}"));
        assert_eq!(
            (key.saddr, key.daddr, u16::from_be(key.id), key.proto),
            (REMOTE_IP, UPLINK_IP, 0xbeef, IPPROTO_UDP)
        );
        assert_eq!(
            (entry.addr, entry.ifindex, entry.mac),
            (IP_A, lab.fx.a, MAC_A)
        );
    });
}

#[test]
fn later_fragment_of_an_unknown_datagram_passes_to_the_host() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let port = udp_flow(&lab);
        let l4 = udp(REMOTE_IP, UPLINK_IP, 53, port, &[7; 64]);
        let (_, later) = fragments(
            &Ipv4Opts::default(),
            REMOTE_IP,
            UPLINK_IP,
            IPPROTO_UDP,
            &l4,
            32,
        );
        let later = ethernet(UPLINK_MAC, NEXT_HOP_MAC, ETH_P_IPV4, &later);

        let run = lab.uplink_receives(&later);

        // Could be a fragment for the node itself: not dropped.
        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&later);
        assert_eq!(lab.dp().stats()[PASS_UPLINK_HOST as usize].packets, 1);
    });
}

#[test]
fn outside_traffic_to_a_container_address_is_dropped_unless_routed() {
    in_private_netns(|net| {
        // Docker's FORWARD chain: from outside, containers are reachable
        // only through published ports while the subnet is masqueraded.
        let lab = NatLab::new(net);
        let l4 = udp(REMOTE_IP, IP_A, 53, 40000, b"knock knock");
        let frame = inbound(REMOTE_IP, IP_A, IPPROTO_UDP, &l4);

        let run = lab.uplink_receives(&frame);

        run.assert_verdict(TC_ACT_SHOT);
        run.assert_frame_unchanged(&frame);
        lab.dp().assert_counted_once(DROP_NOT_PUBLISHED, &frame);
        lab.assert_nat_len(0);
    });
    in_private_netns(|net| {
        // Routed mode: the subnet is meant to be reachable; the host routes.
        let lab = NatLab::with(net, |cfg| cfg.flags &= !CONFIG_F_MASQUERADE);
        let l4 = udp(REMOTE_IP, IP_A, 53, 40000, b"knock knock");
        let frame = inbound(REMOTE_IP, IP_A, IPPROTO_UDP, &l4);

        let run = lab.uplink_receives(&frame);

        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&frame);
        lab.dp().assert_counted_once(PASS_UPLINK_HOST, &frame);
    });
}
