//! Hairpin: a container reaching a published port through one of the node's
//! addresses. `endpoint_ingress` sees a frame to the gateway MAC whose
//! destination the FIB calls local and the `publish` map knows: both ends are
//! rewritten — destination to the target container's address and port,
//! source to the gateway address on a claimed NAT port — and the packet goes
//! straight into the target (`bpf_redirect_peer`, `FWD_HAIRPIN`). The
//! target's replies to (gateway, NAT port) come back through the endpoint
//! program and are turned around to the client, with the published address
//! and port as source. Every checksum is recomputed here from the bytes.
mod common;

use common::{frame::*, nat::*, packet_test::*, publish::*};
use ebridge_common::{config::CONFIG_F_MASQUERADE, nat::*, stats::*};

/// A lab with UPLINK_IP listed in `node_addrs` (as `ebridge up` leaves it).
fn lab(net: &TestNet) -> NatLab {
    let mut lab = NatLab::new(net);
    lab.add_node_addr(UPLINK_IP);
    lab
}

/// Checks a turned-around packet: delivered to `to_mac` from the bridge,
/// with `src` and `dst` as (address, port), TTL one less than `sent`'s,
/// checksums valid, payload kept.
fn assert_turned(
    run: &Run,
    sent: &[u8],
    to_mac: [u8; 6],
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
) {
    run.assert_verdict(TC_ACT_REDIRECT);
    assert_eq!(run.out.len(), sent.len(), "output frame length");
    let out = Pkt(&run.out);
    assert_eq!(out.dst_mac(), to_mac, "destination MAC");
    assert_eq!(out.src_mac(), BRIDGE_MAC, "source MAC: the bridge's");
    let ip = out.ip();
    let before = Pkt(sent).ip();
    assert_eq!((ip.saddr(), ip.sport()), src, "source");
    assert_eq!((ip.daddr(), ip.dport()), dst, "destination");
    assert_eq!(ip.ttl(), before.ttl() - 1, "TTL decremented");
    ip.assert_checksums("hairpin output");
    assert_eq!(payload(&ip), payload(&before), "payload changed");
}

#[test]
fn tcp_to_a_published_port_of_the_node_is_turned_around_to_the_target() {
    in_private_netns(|net| {
        let mut lab = lab(net);
        let (a, b) = (lab.ctr_a(), lab.ctr_b());
        lab.publish("8080:80/tcp", b);
        let syn = tcp_out(IP_A, 45000, UPLINK_IP, 8080, TCP_SYN, MAC_A);

        let run = lab.a_sends(&syn);

        // 45000 is in the NAT range and free on (B:80, gateway): kept.
        assert_turned(&run, &syn, MAC_B, (GATEWAY_IP, 45000), (IP_B, 80));
        lab.dp().assert_counted_once(FWD_HAIRPIN, &syn);
        let (there, back) =
            lab.assert_hairpin_pair(IPPROTO_TCP, (a, 45000), (UPLINK_IP, 8080), (b, 80), 45000);
        lab.assert_nat_len(2);
        assert_eq!(there.flags, NAT_F_DNAT | NAT_F_HAIRPIN);
        assert_eq!(back.flags, NAT_F_DNAT | NAT_F_HAIRPIN | NAT_F_BACK);
        assert_eq!(there.state, CT_SYN_SENT);
        assert_eq!((there.packets, there.bytes), (1, syn.len() as u64));
        assert_eq!((back.packets, back.bytes), (0, 0));
        assert!((run.started_ns..=run.finished_ns).contains(&there.created_ns));
        lab.dp().assert_learned(MAC_A, lab.fx.a, &run);
    });
}

#[test]
fn tcp_connection_through_the_hairpin_goes_both_ways() {
    in_private_netns(|net| {
        let mut lab = lab(net);
        let (a, b) = (lab.ctr_a(), lab.ctr_b());
        lab.publish("8080:80/tcp", b);
        let from_a = |flags| tcp_out(IP_A, 45000, UPLINK_IP, 8080, flags, MAC_A);
        let from_b = |flags| tcp_out(IP_B, 80, GATEWAY_IP, 45000, flags, MAC_B);
        let to_b = |lab: &NatLab, frame: &[u8]| {
            assert_turned(
                &lab.a_sends(frame),
                frame,
                MAC_B,
                (GATEWAY_IP, 45000),
                (IP_B, 80),
            )
        };
        let to_a = |lab: &NatLab, frame: &[u8]| {
            assert_turned(
                &lab.b_sends(frame),
                frame,
                MAC_A,
                (UPLINK_IP, 8080),
                (IP_A, 45000),
            )
        };

        to_b(&lab, &from_a(TCP_SYN));
        // B answers the gateway; A sees the published address answer.
        to_a(&lab, &from_b(TCP_SYN | TCP_ACK));
        to_b(&lab, &from_a(TCP_ACK));
        to_a(&lab, &from_b(TCP_ACK | TCP_PSH));
        // Each side's FIN is kept in its own entry.
        to_b(&lab, &from_a(TCP_FIN | TCP_ACK));
        to_a(&lab, &from_b(TCP_FIN | TCP_ACK));

        let (there, back) =
            lab.assert_hairpin_pair(IPPROTO_TCP, (a, 45000), (UPLINK_IP, 8080), (b, 80), 45000);
        assert_eq!(there.packets, 3);
        assert_eq!(back.packets, 3);
        assert_ne!(there.flags & NAT_F_FIN_ORIGINAL, 0, "A's FIN: {there:?}");
        assert_ne!(back.flags & NAT_F_FIN_ORIGINAL, 0, "B's FIN: {back:?}");
        assert_eq!((there.state, back.state), (CT_FIN_WAIT, CT_FIN_WAIT));
        lab.assert_nat_len(2);
        let stats = lab.dp().stats();
        assert_eq!(stats[FWD_HAIRPIN as usize].packets, 6);
        assert_eq!(
            stats.iter().map(|c| c.packets).sum::<u64>(),
            6,
            "nothing but hairpin: {}",
            lab.dp().stats_summary()
        );
    });
}

#[test]
fn udp_hairpin_from_a_port_outside_the_range_gets_a_gateway_port() {
    in_private_netns(|net| {
        let mut lab = lab(net);
        let (a, b) = (lab.ctr_a(), lab.ctr_b());
        lab.publish("5353:53/udp", b);
        let query = udp_out(IP_A, 5353, UPLINK_IP, 5353, MAC_A);

        let run = lab.a_sends(&query);

        run.assert_verdict(TC_ACT_REDIRECT);
        let nat_port = Pkt(&run.out).ip().sport();
        assert!(in_nat_range(nat_port), "gateway port {nat_port}");
        assert_turned(&run, &query, MAC_B, (GATEWAY_IP, nat_port), (IP_B, 53));
        lab.assert_hairpin_pair(IPPROTO_UDP, (a, 5353), (UPLINK_IP, 5353), (b, 53), nat_port);

        let answer = udp_out(IP_B, 53, GATEWAY_IP, nat_port, MAC_B);
        let run = lab.b_sends(&answer);

        assert_turned(&run, &answer, MAC_A, (UPLINK_IP, 5353), (IP_A, 5353));
        lab.assert_nat_len(2);
        lab.dp()
            .assert_counters(&[(FWD_HAIRPIN, 2, (query.len() + answer.len()) as u64)]);
    });
}

#[test]
fn udp_without_checksum_through_the_hairpin_keeps_a_zero_checksum() {
    in_private_netns(|net| {
        let mut lab = lab(net);
        let b = lab.ctr_b();
        lab.publish("5353:53/udp", b);
        let l4 = udp_no_checksum(45000, 5353, b"no checksum");
        let frame = ethernet(
            BRIDGE_MAC,
            MAC_A,
            ETH_P_IPV4,
            &ipv4(IP_A, UPLINK_IP, IPPROTO_UDP, &l4),
        );

        let run = lab.a_sends(&frame);

        run.assert_verdict(TC_ACT_REDIRECT);
        let ip = Pkt(&run.out).ip();
        assert_eq!((ip.daddr(), ip.dport()), (IP_B, 53));
        assert_eq!(ip.saddr(), GATEWAY_IP);
        ip.assert_header_checksum("hairpin of a UDP datagram without checksum");
        ip.assert_no_udp_checksum();
        lab.dp().assert_counted_once(FWD_HAIRPIN, &frame);
    });
}

#[test]
fn one_client_port_to_two_published_ports_of_one_target_gets_two_gateway_ports() {
    in_private_netns(|net| {
        let mut lab = lab(net);
        let (a, b) = (lab.ctr_a(), lab.ctr_b());
        lab.publish("8080:80/tcp", b);
        lab.publish("8081:80/tcp", b);
        let first = tcp_out(IP_A, 45000, UPLINK_IP, 8080, TCP_SYN, MAC_A);
        let second = tcp_out(IP_A, 45000, UPLINK_IP, 8081, TCP_SYN, MAC_A);

        let r1 = lab.a_sends(&first);
        let r2 = lab.a_sends(&second);

        // Both reach B:80 from the gateway: they need distinct ports there.
        assert_turned(&r1, &first, MAC_B, (GATEWAY_IP, 45000), (IP_B, 80));
        r2.assert_verdict(TC_ACT_REDIRECT);
        let p2 = Pkt(&r2.out).ip().sport();
        assert_ne!(p2, 45000, "the gateway port is already taken towards B:80");
        assert!(in_nat_range(p2), "gateway port {p2}");
        assert_turned(&r2, &second, MAC_B, (GATEWAY_IP, p2), (IP_B, 80));
        lab.assert_hairpin_pair(IPPROTO_TCP, (a, 45000), (UPLINK_IP, 8080), (b, 80), 45000);
        lab.assert_hairpin_pair(IPPROTO_TCP, (a, 45000), (UPLINK_IP, 8081), (b, 80), p2);
        lab.assert_nat_len(4);

        // B's answers reach A from the port A used for each.
        for (port, published) in [(45000, 8080), (p2, 8081)] {
            let answer = tcp_out(IP_B, 80, GATEWAY_IP, port, TCP_SYN | TCP_ACK, MAC_B);
            let run = lab.b_sends(&answer);
            assert_turned(&run, &answer, MAC_A, (UPLINK_IP, published), (IP_A, 45000));
        }
        assert_eq!(lab.dp().stats()[FWD_HAIRPIN as usize].packets, 4);
    });
}

#[test]
fn a_container_reaches_its_own_published_port() {
    in_private_netns(|net| {
        let mut lab = lab(net);
        let a = lab.ctr_a();
        lab.publish("8080:80/udp", a);
        let request = udp_out(IP_A, 45000, UPLINK_IP, 8080, MAC_A);

        let run = lab.a_sends(&request);

        // Back into A itself, from the gateway.
        assert_turned(&run, &request, MAC_A, (GATEWAY_IP, 45000), (IP_A, 80));
        lab.assert_hairpin_pair(IPPROTO_UDP, (a, 45000), (UPLINK_IP, 8080), (a, 80), 45000);

        let answer = udp_out(IP_A, 80, GATEWAY_IP, 45000, MAC_A);
        let run = lab.a_sends(&answer);

        assert_turned(&run, &answer, MAC_A, (UPLINK_IP, 8080), (IP_A, 45000));
        lab.assert_nat_len(2);
        lab.dp()
            .assert_counters(&[(FWD_HAIRPIN, 2, (request.len() + answer.len()) as u64)]);
    });
}

#[test]
fn unpublished_port_on_the_node_address_passes_to_the_host() {
    in_private_netns(|net| {
        let mut lab = lab(net);
        let b = lab.ctr_b();
        lab.publish("8080:80/tcp", b);
        let frames = [
            // Another port.
            tcp_out(IP_A, 45000, UPLINK_IP, 9999, TCP_SYN, MAC_A),
            // The published port, but UDP.
            udp_out(IP_A, 45000, UPLINK_IP, 8080, MAC_A),
            // Pinging the node.
            icmp_frame(MAC_A, BRIDGE_MAC, IP_A, UPLINK_IP),
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
        lab.assert_nat_len(0);
    });
}

#[test]
fn publish_on_every_address_needs_the_destination_in_node_addrs() {
    in_private_netns(|net| {
        let mut lab = lab(net);
        // Local for the FIB, but not (yet) in node_addrs.
        configure_second_node_ip();
        let (a, b) = (lab.ctr_a(), lab.ctr_b());
        lab.publish("8080:80/tcp", b);
        let syn = tcp_out(IP_A, 45000, NODE_IP2, 8080, TCP_SYN, MAC_A);

        let run = lab.a_sends(&syn);

        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&syn);
        lab.dp().assert_counted_once(PASS_TO_HOST, &syn);
        lab.assert_nat_len(0);

        lab.add_node_addr(NODE_IP2);
        let run = lab.a_sends(&syn);
        assert_turned(&run, &syn, MAC_B, (GATEWAY_IP, 45000), (IP_B, 80));
        lab.assert_hairpin_pair(IPPROTO_TCP, (a, 45000), (NODE_IP2, 8080), (b, 80), 45000);
    });
}

#[test]
fn publish_on_one_address_is_reached_only_through_that_address() {
    in_private_netns(|net| {
        let mut lab = lab(net);
        lab.add_second_node_addr();
        let (a, b) = (lab.ctr_a(), lab.ctr_b());
        lab.publish("198.51.100.7:8080:80/tcp", b);
        let via_uplink = tcp_out(IP_A, 45000, UPLINK_IP, 8080, TCP_SYN, MAC_A);
        let via_bound = tcp_out(IP_A, 45001, NODE_IP2, 8080, TCP_SYN, MAC_A);

        let other = lab.a_sends(&via_uplink);
        let bound = lab.a_sends(&via_bound);

        other.assert_verdict(TC_NEXT);
        other.assert_frame_unchanged(&via_uplink);
        assert_turned(&bound, &via_bound, MAC_B, (GATEWAY_IP, 45001), (IP_B, 80));
        lab.assert_hairpin_pair(IPPROTO_TCP, (a, 45001), (NODE_IP2, 8080), (b, 80), 45001);
        lab.assert_nat_len(2);

        // B's answer comes from the bound address.
        let answer = tcp_out(IP_B, 80, GATEWAY_IP, 45001, TCP_SYN | TCP_ACK, MAC_B);
        let run = lab.b_sends(&answer);
        assert_turned(&run, &answer, MAC_A, (NODE_IP2, 8080), (IP_A, 45001));
        let len = via_uplink.len() as u64;
        lab.dp()
            .assert_counters(&[(PASS_TO_HOST, 1, len), (FWD_HAIRPIN, 2, 2 * len)]);
    });
}

#[test]
fn hairpin_works_with_masquerade_off() {
    in_private_netns(|net| {
        let mut lab = NatLab::with(net, |cfg| cfg.flags &= !CONFIG_F_MASQUERADE);
        lab.add_node_addr(UPLINK_IP);
        let (a, b) = (lab.ctr_a(), lab.ctr_b());
        lab.publish("8080:80/tcp", b);
        let syn = tcp_out(IP_A, 45000, UPLINK_IP, 8080, TCP_SYN, MAC_A);

        let run = lab.a_sends(&syn);

        assert_turned(&run, &syn, MAC_B, (GATEWAY_IP, 45000), (IP_B, 80));
        lab.assert_hairpin_pair(IPPROTO_TCP, (a, 45000), (UPLINK_IP, 8080), (b, 80), 45000);
        let answer = tcp_out(IP_B, 80, GATEWAY_IP, 45000, TCP_SYN | TCP_ACK, MAC_B);
        let run = lab.b_sends(&answer);
        assert_turned(&run, &answer, MAC_A, (UPLINK_IP, 8080), (IP_A, 45000));
        assert_eq!(lab.dp().stats()[FWD_HAIRPIN as usize].packets, 2);
    });
}

#[test]
fn hairpin_that_does_not_fit_the_nat_table_leaves_no_half_pair() {
    in_private_netns(|net| {
        // Room for one flow and a half: the hairpin's target-side entry
        // (which claims the gateway port) fits, the client's does not.
        let mut lab = NatLab::build(net, 3, |_| {});
        lab.add_node_addr(UPLINK_IP);
        let b = lab.ctr_b();
        lab.publish("8080:80/tcp", b);
        let (_, masq_port) = lab.open_flow(lab.fx.a, &udp_out(IP_A, 40000, REMOTE_IP, 53, MAC_A));
        let syn = tcp_out(IP_A, 45000, UPLINK_IP, 8080, TCP_SYN, MAC_A);

        let run = lab.a_sends(&syn);

        run.assert_verdict(TC_ACT_SHOT);
        run.assert_frame_unchanged(&syn);
        let stats = lab.dp().stats();
        assert_eq!(stats[DROP_NAT_TABLE_FULL as usize].packets, 1);
        assert_eq!(stats[FWD_HAIRPIN as usize].packets, 0);
        lab.assert_flow(
            IPPROTO_UDP,
            (IP_A, 40000),
            (REMOTE_IP, 53),
            masq_port,
            (lab.fx.a, MAC_A),
        );
        lab.assert_nat_len(2);
    });
}

#[test]
fn client_reusing_its_tuple_after_a_reset_is_turned_around_again() {
    in_private_netns(|net| {
        let mut lab = lab(net);
        let (a, b) = (lab.ctr_a(), lab.ctr_b());
        lab.publish("8080:80/tcp", b);
        let from_a = |flags| tcp_out(IP_A, 45000, UPLINK_IP, 8080, flags, MAC_A);
        let to_b = |lab: &NatLab, frame: &[u8]| {
            assert_turned(
                &lab.a_sends(frame),
                frame,
                MAC_B,
                (GATEWAY_IP, 45000),
                (IP_B, 80),
            )
        };
        to_b(&lab, &from_a(TCP_SYN));
        // A aborts the connection...
        to_b(&lab, &from_a(TCP_RST));
        let key = container_key(IPPROTO_TCP, (IP_A, 45000), (UPLINK_IP, 8080));
        assert_eq!(
            lab.dp().nat_get(&key).expect("client's entry").state,
            CT_CLOSED
        );

        // ...and opens a new one from the same port before the entry expires.
        let again = from_a(TCP_SYN);
        let run = lab.a_sends(&again);
        assert_eq!(
            run.ret,
            TC_ACT_REDIRECT,
            "new SYN on the tuple: verdict {}; counters: {}; nat: {:?}",
            verdict_name(run.ret),
            lab.dp().stats_summary(),
            lab.dp().nat_get(&key)
        );
        assert_turned(&run, &again, MAC_B, (GATEWAY_IP, 45000), (IP_B, 80));

        let (there, _) =
            lab.assert_hairpin_pair(IPPROTO_TCP, (a, 45000), (UPLINK_IP, 8080), (b, 80), 45000);
        assert_eq!(there.state, CT_SYN_SENT);
        assert_eq!(lab.dp().stats()[FWD_HAIRPIN as usize].packets, 3);
    });
}

#[test]
fn published_port_through_the_gateway_address_is_turned_around() {
    in_private_netns(|net| {
        // The gateway is one of the node's addresses (`up` lists it in
        // node_addrs), and Docker DNATs published ports on every local
        // address, the bridge's included.
        let mut lab = lab(net);
        ip(&["addr", "add", "172.17.0.1/16", "dev", "ebt-br0"]);
        lab.add_node_addr(GATEWAY_IP);
        let b = lab.ctr_b();
        lab.publish("8080:80/tcp", b);
        let syn = tcp_out(IP_A, 45000, GATEWAY_IP, 8080, TCP_SYN, MAC_A);

        let run = lab.a_sends(&syn);

        run.assert_verdict(TC_ACT_REDIRECT);
        let ip = Pkt(&run.out).ip();
        assert_eq!((ip.daddr(), ip.dport()), (IP_B, 80));
        assert_eq!(ip.saddr(), GATEWAY_IP);
        ip.assert_checksums("hairpin through the gateway address");
        lab.dp().assert_counted_once(FWD_HAIRPIN, &syn);
        lab.assert_nat_len(2);
    });
}
