//! Published ports from outside (`-p [HOSTIP:]HOSTPORT:CTRPORT`): the first
//! packet of a flow to (node address, host port) arriving on the uplink
//! (`uplink_ingress`) finds no conntrack entry, matches the `publish` map,
//! creates the flow's pair (container side first, with `BPF_NOEXIST`) and is
//! DNATed to (container address, container port), its TTL decremented, the
//! container's MAC as destination and the bridge's as source, and sent into
//! the container (`FWD_DNAT`). The container's replies, through
//! `endpoint_ingress`, get the published address and port back as source and
//! leave by the uplink (`FWD_SNAT`). Every checksum is recomputed here from
//! the output bytes.
mod common;

use common::{frame::*, nat::*, packet_test::*, publish::*};
use ebridge_common::{config::CONFIG_F_MASQUERADE, nat::*, stats::*};

/// A lab with UPLINK_IP listed in `node_addrs` (as `ebridge up` leaves it).
fn lab(net: &TestNet) -> NatLab {
    let mut lab = NatLab::new(net);
    lab.add_node_addr(UPLINK_IP);
    lab
}

/// Checks a packet delivered into container `to` at `ctr_port` from
/// REMOTE_IP:`rport`, compared with the `sent` frame.
fn assert_dnated(run: &Run, sent: &[u8], to: Ctr, ctr_port: u16, rport: u16) {
    run.assert_verdict(TC_ACT_REDIRECT);
    assert_eq!(run.out.len(), sent.len(), "output frame length");
    let out = Pkt(&run.out);
    assert_eq!(out.dst_mac(), to.mac, "destination MAC: the container's");
    assert_eq!(out.src_mac(), BRIDGE_MAC, "source MAC: the bridge's");
    let ip = out.ip();
    let before = Pkt(sent).ip();
    assert_eq!((ip.saddr(), ip.sport()), (REMOTE_IP, rport), "source kept");
    assert_eq!(
        (ip.daddr(), ip.dport()),
        (to.ip, ctr_port),
        "destination: the container's address and port"
    );
    assert_eq!(ip.ttl(), before.ttl() - 1, "TTL decremented");
    assert_eq!(ip.proto(), before.proto());
    ip.assert_checksums("DNAT output");
    assert_eq!(payload(&ip), payload(&before), "payload changed");
}

#[test]
fn tcp_syn_to_a_published_port_is_dnated_into_the_container() {
    in_private_netns(|net| {
        let mut lab = lab(net);
        let a = lab.ctr_a();
        lab.publish("8080:80/tcp", a);
        let syn = tcp_in(UPLINK_IP, 50000, 8080, TCP_SYN);

        let run = lab.uplink_receives(&syn);

        assert_dnated(&run, &syn, a, 80, 50000);
        lab.dp().assert_counted_once(FWD_DNAT, &syn);
        let (outside, inside) =
            lab.assert_inbound_pair(IPPROTO_TCP, (REMOTE_IP, 50000), (UPLINK_IP, 8080), a, 80);
        lab.assert_nat_len(2);
        assert_eq!(outside.flags, NAT_F_INBOUND);
        assert_eq!(inside.flags, NAT_F_INBOUND);
        assert_eq!(inside.state, CT_SYN_SENT, "TCP state lives container-side");
        assert_eq!((outside.packets, outside.bytes), (1, syn.len() as u64));
        assert_eq!((inside.packets, inside.bytes), (0, 0));
        assert!((run.started_ns..=run.finished_ns).contains(&outside.created_ns));
    });
}

#[test]
fn udp_to_a_published_port_is_dnated_and_later_datagrams_follow_the_flow() {
    in_private_netns(|net| {
        let mut lab = lab(net);
        let b = lab.ctr_b();
        lab.publish("5353:53/udp", b);
        let first = udp_in(UPLINK_IP, 41000, 5353);

        let run = lab.uplink_receives(&first);

        assert_dnated(&run, &first, b, 53, 41000);
        let (outside, inside) =
            lab.assert_inbound_pair(IPPROTO_UDP, (REMOTE_IP, 41000), (UPLINK_IP, 5353), b, 53);
        assert_eq!(
            (outside.flags, inside.flags),
            (NAT_F_INBOUND, NAT_F_INBOUND)
        );
        assert_eq!(inside.state, CT_NEW);

        // The second datagram is a known flow: same translation, no new
        // entries.
        let run = lab.uplink_receives(&first);
        assert_dnated(&run, &first, b, 53, 41000);
        lab.assert_nat_len(2);
        let (outside, _) =
            lab.assert_inbound_pair(IPPROTO_UDP, (REMOTE_IP, 41000), (UPLINK_IP, 5353), b, 53);
        assert_eq!(outside.packets, 2);

        // Another remote port is another flow.
        let other = udp_in(UPLINK_IP, 41001, 5353);
        assert_dnated(&lab.uplink_receives(&other), &other, b, 53, 41001);
        lab.assert_inbound_pair(IPPROTO_UDP, (REMOTE_IP, 41001), (UPLINK_IP, 5353), b, 53);
        lab.assert_nat_len(4);

        let len = first.len() as u64;
        lab.dp()
            .assert_counters(&[(FWD_DNAT, 2, 2 * len), (FWD_REVNAT, 1, len)]);
    });
}

#[test]
fn udp_without_checksum_to_a_published_port_keeps_a_zero_checksum() {
    in_private_netns(|net| {
        let mut lab = lab(net);
        let a = lab.ctr_a();
        lab.publish("5353:53/udp", a);
        let frame = inbound(
            REMOTE_IP,
            UPLINK_IP,
            IPPROTO_UDP,
            &udp_no_checksum(41000, 5353, b"no checksum"),
        );

        let run = lab.uplink_receives(&frame);

        run.assert_verdict(TC_ACT_REDIRECT);
        let ip = Pkt(&run.out).ip();
        assert_eq!((ip.daddr(), ip.dport()), (IP_A, 53));
        ip.assert_header_checksum("DNAT of a UDP datagram without checksum");
        ip.assert_no_udp_checksum();
        lab.dp().assert_counted_once(FWD_DNAT, &frame);
    });
}

#[test]
fn publish_on_every_address_matches_only_the_nodes_addresses() {
    in_private_netns(|net| {
        // No node_addrs yet: a 0.0.0.0 publish must not match, even on the
        // uplink's own address.
        let mut lab = NatLab::new(net);
        let a = lab.ctr_a();
        lab.publish("8080:80/tcp", a);
        let to_uplink = tcp_in(UPLINK_IP, 50000, 8080, TCP_SYN);

        let run = lab.uplink_receives(&to_uplink);

        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&to_uplink);
        lab.dp().assert_counted_once(PASS_UPLINK_HOST, &to_uplink);
        lab.assert_nat_len(0);

        // Once the node's addresses are known, both of them lead in.
        lab.add_node_addr(UPLINK_IP);
        lab.add_second_node_addr();
        let run = lab.uplink_receives(&to_uplink);
        assert_dnated(&run, &to_uplink, a, 80, 50000);
        lab.assert_inbound_pair(IPPROTO_TCP, (REMOTE_IP, 50000), (UPLINK_IP, 8080), a, 80);
        let to_second = tcp_in(NODE_IP2, 50001, 8080, TCP_SYN);
        let run = lab.uplink_receives(&to_second);
        assert_dnated(&run, &to_second, a, 80, 50001);
        lab.assert_inbound_pair(IPPROTO_TCP, (REMOTE_IP, 50001), (NODE_IP2, 8080), a, 80);

        // An address of the uplink's subnet that is not the node's does not.
        let not_ours = tcp_in([198, 51, 100, 9], 50002, 8080, TCP_SYN);
        let run = lab.uplink_receives(&not_ours);
        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&not_ours);

        lab.assert_nat_len(4);
        let len = to_uplink.len() as u64;
        lab.dp()
            .assert_counters(&[(PASS_UPLINK_HOST, 2, 2 * len), (FWD_DNAT, 2, 2 * len)]);
    });
}

#[test]
fn publish_on_one_address_matches_only_that_address() {
    in_private_netns(|net| {
        let mut lab = lab(net);
        lab.add_second_node_addr();
        let a = lab.ctr_a();
        lab.publish("198.51.100.7:8080:80/tcp", a);
        let to_uplink = tcp_in(UPLINK_IP, 50000, 8080, TCP_SYN);
        let to_second = tcp_in(NODE_IP2, 50000, 8080, TCP_SYN);

        let other = lab.uplink_receives(&to_uplink);
        let bound = lab.uplink_receives(&to_second);

        other.assert_verdict(TC_NEXT);
        other.assert_frame_unchanged(&to_uplink);
        assert_dnated(&bound, &to_second, a, 80, 50000);
        lab.assert_inbound_pair(IPPROTO_TCP, (REMOTE_IP, 50000), (NODE_IP2, 8080), a, 80);
        lab.assert_nat_len(2);
        let len = to_uplink.len() as u64;
        lab.dp()
            .assert_counters(&[(PASS_UPLINK_HOST, 1, len), (FWD_DNAT, 1, len)]);
    });
}

#[test]
fn publish_bound_to_the_uplink_address_needs_no_node_addrs_entry() {
    in_private_netns(|net| {
        // An exact match is looked up first, before any node_addrs check.
        let mut lab = NatLab::new(net);
        let a = lab.ctr_a();
        lab.publish("198.51.100.1:8080:80/udp", a);
        let frame = udp_in(UPLINK_IP, 41000, 8080);

        let run = lab.uplink_receives(&frame);

        assert_dnated(&run, &frame, a, 80, 41000);
        lab.assert_inbound_pair(IPPROTO_UDP, (REMOTE_IP, 41000), (UPLINK_IP, 8080), a, 80);
        lab.dp().assert_counted_once(FWD_DNAT, &frame);
    });
}

#[test]
fn unpublished_port_or_protocol_passes_to_the_host_untouched() {
    in_private_netns(|net| {
        let mut lab = lab(net);
        let a = lab.ctr_a();
        lab.publish("8080:80/tcp", a);
        let frames = [
            // Another port.
            tcp_in(UPLINK_IP, 50000, 8081, TCP_SYN),
            // The container port itself, on the node's address.
            tcp_in(UPLINK_IP, 50000, 80, TCP_SYN),
            // The published port, but UDP.
            udp_in(UPLINK_IP, 50000, 8080),
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

        lab.dp()
            .assert_counters(&[(PASS_UPLINK_HOST, frames.len() as u64, bytes)]);
        lab.assert_nat_len(0);
    });
}

#[test]
fn port_range_maps_each_host_port_to_its_container_port() {
    in_private_netns(|net| {
        let mut lab = lab(net);
        let (a, b) = (lab.ctr_a(), lab.ctr_b());
        let same = lab.publish("8000-8002:8000-8002/tcp", a);
        let shifted = lab.publish("9000-9002:7000-7002/udp", b);
        assert_eq!((same.len(), shifted.len()), (3, 3), "one entry per port");

        for port in 8000..=8002u16 {
            let syn = tcp_in(UPLINK_IP, 50000, port, TCP_SYN);
            assert_dnated(&lab.uplink_receives(&syn), &syn, a, port, 50000);
            lab.assert_inbound_pair(IPPROTO_TCP, (REMOTE_IP, 50000), (UPLINK_IP, port), a, port);
        }
        for port in 9000..=9002u16 {
            let dgram = udp_in(UPLINK_IP, 50000, port);
            let ctr_port = port - 2000;
            assert_dnated(&lab.uplink_receives(&dgram), &dgram, b, ctr_port, 50000);
            lab.assert_inbound_pair(
                IPPROTO_UDP,
                (REMOTE_IP, 50000),
                (UPLINK_IP, port),
                b,
                ctr_port,
            );
        }
        // Just past either range: not published.
        for frame in [
            tcp_in(UPLINK_IP, 50000, 8003, TCP_SYN),
            udp_in(UPLINK_IP, 50000, 9003),
            udp_in(UPLINK_IP, 50000, 8999),
        ] {
            let run = lab.uplink_receives(&frame);
            run.assert_verdict(TC_NEXT);
            run.assert_frame_unchanged(&frame);
        }

        lab.assert_nat_len(12);
        let stats = lab.dp().stats();
        assert_eq!(stats[FWD_DNAT as usize].packets, 6);
        assert_eq!(stats[PASS_UPLINK_HOST as usize].packets, 3);
    });
}

#[test]
fn tcp_handshake_through_a_published_port_is_un_dnated_and_tracked() {
    in_private_netns(|net| {
        let mut lab = lab(net);
        let a = lab.ctr_a();
        lab.publish("8080:80/tcp", a);
        let ckey = container_key(IPPROTO_TCP, (IP_A, 80), (REMOTE_IP, 50000));
        let state = |lab: &NatLab| lab.dp().nat_get(&ckey).expect("container-side entry");

        let syn = tcp_in(UPLINK_IP, 50000, 8080, TCP_SYN);
        assert_dnated(&lab.uplink_receives(&syn), &syn, a, 80, 50000);
        assert_eq!(state(&lab).state, CT_SYN_SENT);

        // The container answers from its own address and port...
        let syn_ack = tcp_out(IP_A, 80, REMOTE_IP, 50000, TCP_SYN | TCP_ACK, MAC_A);
        let run = lab.a_sends(&syn_ack);

        // ...and it leaves as the published address and port.
        run.assert_verdict(TC_ACT_REDIRECT);
        assert_eq!(run.out.len(), syn_ack.len());
        let out = Pkt(&run.out);
        assert_eq!(out.dst_mac(), NEXT_HOP_MAC, "destination MAC from the FIB");
        assert_eq!(out.src_mac(), UPLINK_MAC, "source MAC from the FIB");
        let ip = out.ip();
        assert_eq!((ip.saddr(), ip.sport()), (UPLINK_IP, 8080));
        assert_eq!((ip.daddr(), ip.dport()), (REMOTE_IP, 50000));
        assert_eq!(ip.ttl(), 63);
        ip.assert_checksums("SYN-ACK after un-DNAT");
        assert_eq!(payload(&ip), b"GET / HTTP/1.0\r\n\r\n");
        let inside = state(&lab);
        assert_eq!((inside.packets, inside.bytes), (1, syn_ack.len() as u64));

        // The client's ACK completes the handshake.
        let ack = tcp_in(UPLINK_IP, 50000, 8080, TCP_ACK);
        let run = lab.uplink_receives(&ack);
        assert_dnated(&run, &ack, a, 80, 50000);
        let inside = state(&lab);
        assert_eq!(inside.state, CT_ESTABLISHED);
        assert_ne!(inside.flags & NAT_F_REPLIED, 0);

        lab.assert_nat_len(2);
        let (syn_len, ack_len) = (syn.len() as u64, ack.len() as u64);
        lab.dp().assert_counters(&[
            (FWD_DNAT, 1, syn_len),
            (FWD_SNAT, 1, syn_ack.len() as u64),
            (FWD_REVNAT, 1, ack_len),
        ]);
    });
}

#[test]
fn a_new_syn_reopens_a_published_flow_in_time_wait() {
    in_private_netns(|net| {
        let mut lab = lab(net);
        let a = lab.ctr_a();
        lab.publish("8080:80/tcp", a);
        let ckey = container_key(IPPROTO_TCP, (IP_A, 80), (REMOTE_IP, 50000));
        let state = |lab: &NatLab| lab.dp().nat_get(&ckey).expect("container-side entry").state;
        let from_client = |flags| tcp_in(UPLINK_IP, 50000, 8080, flags);
        let from_container = |flags| tcp_out(IP_A, 80, REMOTE_IP, 50000, flags, MAC_A);

        lab.uplink_receives(&from_client(TCP_SYN));
        lab.a_sends(&from_container(TCP_SYN | TCP_ACK));
        lab.uplink_receives(&from_client(TCP_ACK));
        lab.uplink_receives(&from_client(TCP_FIN | TCP_ACK));
        lab.a_sends(&from_container(TCP_FIN | TCP_ACK));
        lab.uplink_receives(&from_client(TCP_ACK));
        assert_eq!(state(&lab), CT_CLOSING);

        // The client comes back from the same port: a new connection.
        let syn = from_client(TCP_SYN);
        assert_dnated(&lab.uplink_receives(&syn), &syn, a, 80, 50000);
        assert_eq!(state(&lab), CT_SYN_SENT);
        lab.a_sends(&from_container(TCP_SYN | TCP_ACK))
            .assert_verdict(TC_ACT_REDIRECT);
        let ack = from_client(TCP_ACK);
        assert_dnated(&lab.uplink_receives(&ack), &ack, a, 80, 50000);
        assert_eq!(state(&lab), CT_ESTABLISHED, "not stuck in SYN_SENT");
        lab.assert_nat_len(2);
    });
}

#[test]
fn udp_reply_leaves_from_the_address_the_port_was_published_on() {
    in_private_netns(|net| {
        let mut lab = lab(net);
        lab.add_second_node_addr();
        let b = lab.ctr_b();
        lab.publish("5353:53/udp", b);
        let query = udp_in(NODE_IP2, 41000, 5353);
        assert_dnated(&lab.uplink_receives(&query), &query, b, 53, 41000);
        let answer = udp_out(IP_B, 53, REMOTE_IP, 41000, MAC_B);

        let run = lab.b_sends(&answer);

        run.assert_verdict(TC_ACT_REDIRECT);
        let out = Pkt(&run.out);
        assert_eq!((out.dst_mac(), out.src_mac()), (NEXT_HOP_MAC, UPLINK_MAC));
        let ip = out.ip();
        assert_eq!(
            (ip.saddr(), ip.sport()),
            (NODE_IP2, 5353),
            "the source the client sent to, not the uplink's primary address"
        );
        assert_eq!((ip.daddr(), ip.dport()), (REMOTE_IP, 41000));
        assert_eq!(ip.ttl(), 63);
        ip.assert_checksums("UDP answer after un-DNAT");
        assert_eq!(payload(&ip), b"masquerade me");
        lab.dp().assert_counters(&[
            (FWD_DNAT, 1, query.len() as u64),
            (FWD_SNAT, 1, answer.len() as u64),
        ]);
        lab.assert_nat_len(2);
    });
}

#[test]
fn published_ports_work_with_masquerade_off() {
    in_private_netns(|net| {
        let mut lab = NatLab::with(net, |cfg| cfg.flags &= !CONFIG_F_MASQUERADE);
        lab.add_node_addr(UPLINK_IP);
        let a = lab.ctr_a();
        lab.publish("5353:53/udp", a);
        let query = udp_in(UPLINK_IP, 41000, 5353);

        let run = lab.uplink_receives(&query);
        assert_dnated(&run, &query, a, 53, 41000);
        lab.assert_inbound_pair(IPPROTO_UDP, (REMOTE_IP, 41000), (UPLINK_IP, 5353), a, 53);

        let answer = udp_out(IP_A, 53, REMOTE_IP, 41000, MAC_A);
        let run = lab.a_sends(&answer);
        run.assert_verdict(TC_ACT_REDIRECT);
        let ip = Pkt(&run.out).ip();
        assert_eq!((ip.saddr(), ip.sport()), (UPLINK_IP, 5353));
        assert_eq!((ip.daddr(), ip.dport()), (REMOTE_IP, 41000));
        ip.assert_checksums("answer after un-DNAT, masquerade off");

        // Anything else the container sends is routed untranslated.
        let other = udp_out(IP_A, 54, REMOTE_IP, 41000, MAC_A);
        let run = lab.a_sends(&other);
        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&other);

        lab.dp().assert_counters(&[
            (FWD_DNAT, 1, query.len() as u64),
            (FWD_SNAT, 1, answer.len() as u64),
            (PASS_ROUTED, 1, other.len() as u64),
        ]);
        lab.assert_nat_len(2);
    });
}

#[test]
fn inbound_flow_clashing_with_the_containers_own_flow_is_dropped() {
    for proto in [IPPROTO_UDP, IPPROTO_TCP] {
        in_private_netns(|net| {
            let mut lab = lab(net);
            let a = lab.ctr_a();
            // A's own flow 80 → REMOTE:50000, masqueraded (80 is below the
            // NAT range, so it gets another port).
            let own = if proto == IPPROTO_UDP {
                udp_out(IP_A, 80, REMOTE_IP, 50000, MAC_A)
            } else {
                tcp_out(IP_A, 80, REMOTE_IP, 50000, TCP_SYN, MAC_A)
            };
            let (_, nat_port) = lab.open_flow(lab.fx.a, &own);
            assert_ne!(nat_port, 8080);
            let spec = if proto == IPPROTO_UDP {
                "8080:80/udp"
            } else {
                "8080:80/tcp"
            };
            lab.publish(spec, a);
            // REMOTE:50000 → 8080 would need A's side (A:80 ↔ REMOTE:50000),
            // which the masqueraded flow holds.
            let frame = if proto == IPPROTO_UDP {
                udp_in(UPLINK_IP, 50000, 8080)
            } else {
                tcp_in(UPLINK_IP, 50000, 8080, TCP_SYN)
            };

            let run = lab.uplink_receives(&frame);

            run.assert_verdict(TC_ACT_SHOT);
            run.assert_frame_unchanged(&frame);
            lab.dp().assert_counters(&[
                (FWD_SNAT, 1, own.len() as u64),
                (DROP_NAT_CONFLICT, 1, frame.len() as u64),
            ]);
            // No half pair: only the masqueraded flow, untouched.
            lab.assert_nat_len(2);
            let (orig, _) = lab.assert_flow(
                proto,
                (IP_A, 80),
                (REMOTE_IP, 50000),
                nat_port,
                (lab.fx.a, MAC_A),
            );
            assert_eq!(orig.flags & NAT_F_INBOUND, 0);
            assert!(lab
                .dp()
                .nat_get(&inbound_key(proto, (REMOTE_IP, 50000), (UPLINK_IP, 8080)))
                .is_none());

            // A's own flow goes on as before.
            let (_, again) = lab.open_flow(lab.fx.a, &own);
            assert_eq!(again, nat_port);
        });
    }
}

#[test]
fn two_host_ports_to_one_container_port_conflict_for_the_same_remote_tuple() {
    in_private_netns(|net| {
        let mut lab = lab(net);
        let a = lab.ctr_a();
        lab.publish("8080:80/tcp", a);
        lab.publish("8081:80/tcp", a);
        let first = tcp_in(UPLINK_IP, 50000, 8080, TCP_SYN);
        let clash = tcp_in(UPLINK_IP, 50000, 8081, TCP_SYN);
        let other_port = tcp_in(UPLINK_IP, 50001, 8081, TCP_SYN);

        assert_dnated(&lab.uplink_receives(&first), &first, a, 80, 50000);
        let run = lab.uplink_receives(&clash);
        // A's replies from 80 to REMOTE:50000 could not tell the two apart.
        run.assert_verdict(TC_ACT_SHOT);
        run.assert_frame_unchanged(&clash);
        lab.assert_nat_len(2);
        // Another remote port is fine.
        assert_dnated(&lab.uplink_receives(&other_port), &other_port, a, 80, 50001);

        lab.assert_inbound_pair(IPPROTO_TCP, (REMOTE_IP, 50000), (UPLINK_IP, 8080), a, 80);
        lab.assert_inbound_pair(IPPROTO_TCP, (REMOTE_IP, 50001), (UPLINK_IP, 8081), a, 80);
        lab.assert_nat_len(4);
        let len = first.len() as u64;
        lab.dp()
            .assert_counters(&[(FWD_DNAT, 2, 2 * len), (DROP_NAT_CONFLICT, 1, len)]);
    });
}

#[test]
fn inbound_flow_that_does_not_fit_the_nat_table_leaves_no_half_pair() {
    in_private_netns(|net| {
        // Room for one flow and a half: the second flow's container-side
        // entry fits, its outside-side entry does not.
        let mut lab = NatLab::build(net, 3, |_| {});
        lab.add_node_addr(UPLINK_IP);
        let a = lab.ctr_a();
        lab.publish("5353:53/udp", a);
        let first = udp_in(UPLINK_IP, 41000, 5353);
        let second = udp_in(UPLINK_IP, 41001, 5353);

        assert_dnated(&lab.uplink_receives(&first), &first, a, 53, 41000);
        let run = lab.uplink_receives(&second);

        run.assert_verdict(TC_ACT_SHOT);
        run.assert_frame_unchanged(&second);
        lab.dp().assert_counters(&[
            (FWD_DNAT, 1, first.len() as u64),
            (DROP_NAT_TABLE_FULL, 1, second.len() as u64),
        ]);
        lab.assert_inbound_pair(IPPROTO_UDP, (REMOTE_IP, 41000), (UPLINK_IP, 5353), a, 53);
        lab.assert_nat_len(2);
    });
}

#[test]
fn outside_traffic_to_a_published_containers_own_address_is_still_dropped() {
    in_private_netns(|net| {
        // Publishing leads in through the node's address only.
        let mut lab = lab(net);
        let a = lab.ctr_a();
        lab.publish("8080:80/tcp", a);
        lab.publish("80:80/udp", a);
        let frames = [
            tcp_in(IP_A, 50000, 80, TCP_SYN),
            tcp_in(IP_A, 50000, 8080, TCP_SYN),
            udp_in(IP_A, 50000, 80),
        ];

        let mut bytes = 0;
        for frame in &frames {
            let run = lab.uplink_receives(frame);
            run.assert_verdict(TC_ACT_SHOT);
            run.assert_frame_unchanged(frame);
            bytes += frame.len() as u64;
        }

        lab.dp()
            .assert_counters(&[(DROP_NOT_PUBLISHED, frames.len() as u64, bytes)]);
        lab.assert_nat_len(0);
    });
}

/// UDP REMOTE:41000 → UPLINK:5353 with the given TTL.
fn udp_in_with_ttl(ttl: u8) -> Vec<u8> {
    let opts = Ipv4Opts {
        ttl,
        ..Ipv4Opts::default()
    };
    let l4 = udp(REMOTE_IP, UPLINK_IP, 41000, 5353, b"x");
    inbound_with(&opts, REMOTE_IP, UPLINK_IP, IPPROTO_UDP, &l4)
}

#[test]
fn inbound_packet_with_ttl_2_is_delivered_with_ttl_1() {
    in_private_netns(|net| {
        let mut lab = lab(net);
        let a = lab.ctr_a();
        lab.publish("5353:53/udp", a);
        let frame = udp_in_with_ttl(2);

        let run = lab.uplink_receives(&frame);

        run.assert_verdict(TC_ACT_REDIRECT);
        let ip = Pkt(&run.out).ip();
        assert_eq!((ip.daddr(), ip.dport(), ip.ttl()), (IP_A, 53, 1));
        ip.assert_checksums("DNAT with TTL 2 → 1");
        lab.dp().assert_counted_once(FWD_DNAT, &frame);
        lab.assert_nat_len(2);
    });
}

#[test]
fn inbound_packet_whose_ttl_would_expire_is_answered_and_creates_no_flow() {
    in_private_netns(|net| {
        let mut lab = lab(net);
        let a = lab.ctr_a();
        lab.publish("5353:53/udp", a);
        let frame = udp_in_with_ttl(1);

        let run = lab.uplink_receives(&frame);

        // As a router would: time exceeded in transit, from the node.
        assert_icmp_answer(&run, &frame, 11, 0);
        assert_eq!(
            lab.dp().stats()[FWD_ICMP_TIME_EXCEEDED as usize].packets,
            1,
            "{}",
            lab.dp().stats_summary()
        );
        // The packet never reached the container: no flow may be left
        // behind for it (a new masqueraded flow expiring here makes none
        // either, PASS_TTL_EXPIRING).
        lab.assert_nat_len(0);
    });
}

// ---- ICMP errors about published-port flows (RFC 5508) ---------------------

/// What a router quotes: the IPv4 header and the first 8 bytes after it.
fn quote(ip: &Ip) -> Vec<u8> {
    ip.0[..ip.ihl() + 8].to_vec()
}

/// Fragmentation needed, next-hop MTU 1280.
const MTU_1280: [u8; 4] = [0, 0, 0x05, 0x00];

/// An inbound TCP flow REMOTE:50000 → `node`:8080 published to A:80, and
/// A's SYN-ACK as it left the uplink.
fn published_flow_and_reply(lab: &mut NatLab, node: [u8; 4]) -> Vec<u8> {
    let a = lab.ctr_a();
    lab.publish("8080:80/tcp", a);
    let syn = tcp_in(node, 50000, 8080, TCP_SYN);
    assert_dnated(&lab.uplink_receives(&syn), &syn, a, 80, 50000);
    let run = lab.a_sends(&tcp_out(
        IP_A,
        80,
        REMOTE_IP,
        50000,
        TCP_SYN | TCP_ACK,
        MAC_A,
    ));
    run.assert_verdict(TC_ACT_REDIRECT);
    assert_eq!(
        (Pkt(&run.out).ip().saddr(), Pkt(&run.out).ip().sport()),
        (node, 8080)
    );
    run.out
}

/// Fragmentation needed from ROUTER_IP to `node` about the packet `left`
/// (as it left the uplink) is delivered into A with the quote translated
/// back to A:80.
fn assert_frag_needed_reaches_a(lab: &NatLab, node: [u8; 4], left: &[u8]) {
    let error = inbound(
        ROUTER_IP,
        node,
        IPPROTO_ICMP,
        &icmp_error(
            ICMP_DEST_UNREACH,
            ICMP_FRAG_NEEDED,
            MTU_1280,
            &quote(&Pkt(left).ip()),
        ),
    );

    let run = lab.uplink_receives(&error);

    run.assert_verdict(TC_ACT_REDIRECT);
    assert_eq!(run.out.len(), error.len());
    let out = Pkt(&run.out);
    assert_eq!((out.dst_mac(), out.src_mac()), (MAC_A, BRIDGE_MAC));
    let ip = out.ip();
    assert_eq!((ip.saddr(), ip.daddr()), (ROUTER_IP, IP_A), "outer header");
    assert_eq!(ip.ttl(), 63);
    ip.assert_checksums("frag needed about a published port's reply");
    let inner = ip.quoted();
    assert_eq!((inner.saddr(), inner.sport()), (IP_A, 80), "quoted source");
    assert_eq!(
        (inner.daddr(), inner.dport()),
        (REMOTE_IP, 50000),
        "quoted destination"
    );
    inner.assert_header_checksum("quoted header");
    let sent_icmp = Pkt(&error).ip().l4();
    assert_eq!(ip.l4()[..2], sent_icmp[..2], "ICMP type and code");
    assert_eq!(ip.l4()[4..8], sent_icmp[4..8], "next-hop MTU");
    assert_eq!(lab.dp().stats()[FWD_REVNAT_ICMP_ERROR as usize].packets, 1);
}

#[test]
fn frag_needed_about_a_published_ports_reply_reaches_the_container() {
    in_private_netns(|net| {
        let mut lab = lab(net);
        let left = published_flow_and_reply(&mut lab, UPLINK_IP);
        assert_frag_needed_reaches_a(&lab, UPLINK_IP, &left);
    });
}

#[test]
fn frag_needed_about_a_reply_from_another_node_address_reaches_the_container() {
    in_private_netns(|net| {
        let mut lab = lab(net);
        lab.add_second_node_addr();
        let left = published_flow_and_reply(&mut lab, NODE_IP2);
        assert_frag_needed_reaches_a(&lab, NODE_IP2, &left);
    });
}

#[test]
fn port_unreachable_from_the_container_leaves_as_the_published_address() {
    in_private_netns(|net| {
        let mut lab = lab(net);
        let a = lab.ctr_a();
        lab.publish("5353:53/udp", a);
        let query = udp_in(UPLINK_IP, 41000, 5353);
        let delivered = lab.uplink_receives(&query);
        assert_dnated(&delivered, &query, a, 53, 41000);
        // Nothing listens on A:53: A's kernel answers with port unreachable
        // quoting the datagram as A received it.
        let error = ethernet(
            BRIDGE_MAC,
            MAC_A,
            ETH_P_IPV4,
            &ipv4(
                IP_A,
                REMOTE_IP,
                IPPROTO_ICMP,
                &icmp_error(
                    ICMP_DEST_UNREACH,
                    ICMP_PORT_UNREACH,
                    [0; 4],
                    &quote(&Pkt(&delivered.out).ip()),
                ),
            ),
        );

        let run = lab.a_sends(&error);

        run.assert_verdict(TC_ACT_REDIRECT);
        let out = Pkt(&run.out);
        assert_eq!((out.dst_mac(), out.src_mac()), (NEXT_HOP_MAC, UPLINK_MAC));
        let ip = out.ip();
        assert_eq!((ip.saddr(), ip.daddr()), (UPLINK_IP, REMOTE_IP));
        assert_eq!(ip.ttl(), 63);
        ip.assert_checksums("port unreachable after un-DNAT");
        let inner = ip.quoted();
        assert_eq!((inner.saddr(), inner.sport()), (REMOTE_IP, 41000));
        assert_eq!(
            (inner.daddr(), inner.dport()),
            (UPLINK_IP, 5353),
            "the quote names what the client sent to"
        );
        inner.assert_header_checksum("quoted header");
        lab.dp().assert_counters(&[
            (FWD_DNAT, 1, query.len() as u64),
            (FWD_SNAT_ICMP_ERROR, 1, error.len() as u64),
        ]);
    });
}

// ---- fragments of published-port flows -------------------------------------

#[test]
fn fragmented_datagram_to_a_published_port_is_dnated_fragment_by_fragment() {
    in_private_netns(|net| {
        let mut lab = lab(net);
        let a = lab.ctr_a();
        lab.publish("5353:53/udp", a);
        let payload: Vec<u8> = (0..64u8).collect();
        let l4 = udp(REMOTE_IP, UPLINK_IP, 41000, 5353, &payload);
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
            assert_eq!((o.dst_mac(), o.src_mac()), (MAC_A, BRIDGE_MAC), "{what}");
            let ip = o.ip();
            assert_eq!((ip.saddr(), ip.daddr()), (REMOTE_IP, IP_A), "{what}");
            assert_eq!(ip.ttl(), 63, "{what}: TTL");
            ip.assert_header_checksum(what);
        }
        assert_eq!(o1.ip().dport(), 53);
        let whole = [o1.ip().l4(), o2.ip().l4()].concat();
        assert_l4_checksum("reassembled datagram", IPPROTO_UDP, REMOTE_IP, IP_A, &whole);
        assert_eq!(&whole[8..], &payload[..]);
        lab.assert_inbound_pair(IPPROTO_UDP, (REMOTE_IP, 41000), (UPLINK_IP, 5353), a, 53);
        lab.dp().assert_counters(&[
            (FWD_DNAT, 1, first.len() as u64),
            (FWD_REVNAT, 1, later.len() as u64),
        ]);
    });
}

/// A's fragmented answer (A:53 → REMOTE:41000) to an inbound query on
/// 5353/udp: both fragments must leave as UPLINK_IP.
fn assert_fragmented_answer_leaves_as_the_node(lab: &mut NatLab) {
    let a = lab.ctr_a();
    lab.publish("5353:53/udp", a);
    let query = udp_in(UPLINK_IP, 41000, 5353);
    assert_dnated(&lab.uplink_receives(&query), &query, a, 53, 41000);
    let payload: Vec<u8> = (0..64u8).collect();
    let l4 = udp(IP_A, REMOTE_IP, 53, 41000, &payload);
    let opts = Ipv4Opts {
        id: 0xcafe,
        ..Ipv4Opts::default()
    };
    let (first, later) = fragments(&opts, IP_A, REMOTE_IP, IPPROTO_UDP, &l4, 32);
    let first = ethernet(BRIDGE_MAC, MAC_A, ETH_P_IPV4, &first);
    let later = ethernet(BRIDGE_MAC, MAC_A, ETH_P_IPV4, &later);

    let r1 = lab.a_sends(&first);
    let r2 = lab.a_sends(&later);

    for (run, what) in [(&r1, "first fragment"), (&r2, "later fragment")] {
        assert_eq!(
            run.ret,
            TC_ACT_REDIRECT,
            "{what}: verdict {}; counters: {}",
            verdict_name(run.ret),
            lab.dp().stats_summary()
        );
        let o = Pkt(&run.out);
        assert_eq!(
            (o.dst_mac(), o.src_mac()),
            (NEXT_HOP_MAC, UPLINK_MAC),
            "{what}"
        );
        let ip = o.ip();
        assert_eq!(
            (ip.saddr(), ip.daddr()),
            (UPLINK_IP, REMOTE_IP),
            "{what}: addresses"
        );
        assert_eq!(ip.ttl(), 63, "{what}: TTL");
        ip.assert_header_checksum(what);
    }
    let (o1, o2) = (Pkt(&r1.out).ip(), Pkt(&r2.out).ip());
    assert_eq!((o1.sport(), o1.dport()), (5353, 41000));
    let whole = [o1.l4(), o2.l4()].concat();
    assert_l4_checksum(
        "reassembled answer",
        IPPROTO_UDP,
        UPLINK_IP,
        REMOTE_IP,
        &whole,
    );
    assert_eq!(lab.dp().stats()[FWD_SNAT as usize].packets, 2);
}

#[test]
fn fragmented_answer_from_a_published_port_leaves_as_the_node() {
    in_private_netns(|net| {
        let mut lab = lab(net);
        assert_fragmented_answer_leaves_as_the_node(&mut lab);
    });
}

#[test]
fn fragmented_answer_from_a_published_port_leaves_as_the_node_with_masquerade_off() {
    in_private_netns(|net| {
        let mut lab = NatLab::with(net, |cfg| cfg.flags &= !CONFIG_F_MASQUERADE);
        lab.add_node_addr(UPLINK_IP);
        assert_fragmented_answer_leaves_as_the_node(&mut lab);
    });
}

#[test]
fn port_unreachable_from_the_container_is_translated_with_masquerade_off() {
    in_private_netns(|net| {
        let mut lab = NatLab::with(net, |cfg| cfg.flags &= !CONFIG_F_MASQUERADE);
        lab.add_node_addr(UPLINK_IP);
        let a = lab.ctr_a();
        lab.publish("5353:53/udp", a);
        let query = udp_in(UPLINK_IP, 41000, 5353);
        let delivered = lab.uplink_receives(&query);
        assert_dnated(&delivered, &query, a, 53, 41000);
        let error = ethernet(
            BRIDGE_MAC,
            MAC_A,
            ETH_P_IPV4,
            &ipv4(
                IP_A,
                REMOTE_IP,
                IPPROTO_ICMP,
                &icmp_error(
                    ICMP_DEST_UNREACH,
                    ICMP_PORT_UNREACH,
                    [0; 4],
                    &quote(&Pkt(&delivered.out).ip()),
                ),
            ),
        );

        let run = lab.a_sends(&error);

        run.assert_verdict(TC_ACT_REDIRECT);
        let ip = Pkt(&run.out).ip();
        assert_eq!(ip.saddr(), UPLINK_IP);
        ip.assert_checksums("port unreachable after un-DNAT, masquerade off");
        let inner = ip.quoted();
        assert_eq!((inner.daddr(), inner.dport()), (UPLINK_IP, 5353));
        assert_eq!(lab.dp().stats()[FWD_SNAT_ICMP_ERROR as usize].packets, 1);
    });
}
