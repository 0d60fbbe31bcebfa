//! Masquerade, container → outside: the endpoint program translates the
//! source to the uplink address and a NAT port, records the flow in the
//! `nat` map (reply entry first, then the original one), decrements the TTL,
//! puts the next hop's MACs from the FIB on the frame and redirects it to
//! the uplink. Every checksum of the output is recomputed here from the
//! bytes (`common::nat`).
mod common;

use common::{frame::*, nat::*, packet_test::*};
use ebridge_common::{
    config::{CONFIG_F_ICC, CONFIG_F_MASQUERADE},
    nat::*,
    stats::*,
};

#[test]
fn udp_to_the_outside_is_masqueraded_and_redirected_to_the_uplink() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let frame = udp_out(IP_A, 40000, REMOTE_IP, 53, MAC_A);

        let run = lab.a_sends(&frame);

        run.assert_verdict(TC_ACT_REDIRECT);
        assert_eq!(run.out.len(), frame.len());
        let out = Pkt(&run.out);
        assert_eq!(out.dst_mac(), NEXT_HOP_MAC, "destination MAC from the FIB");
        assert_eq!(out.src_mac(), UPLINK_MAC, "source MAC from the FIB");
        let ip = out.ip();
        assert_eq!(ip.saddr(), UPLINK_IP);
        assert_eq!(ip.daddr(), REMOTE_IP);
        assert_eq!(ip.ttl(), 63);
        // 40000 is inside the NAT range and free: kept.
        assert_eq!(ip.sport(), 40000);
        assert_eq!(ip.dport(), 53);
        ip.assert_checksums("SNAT output");
        assert_eq!(&ip.l4()[8..], b"masquerade me", "payload changed");
        lab.dp().assert_counted_once(FWD_SNAT, &frame);
        let (orig, reply) = lab.assert_flow(
            IPPROTO_UDP,
            (IP_A, 40000),
            (REMOTE_IP, 53),
            40000,
            (lab.fx.a, MAC_A),
        );
        lab.assert_nat_len(2);
        assert_eq!((orig.packets, orig.bytes), (1, frame.len() as u64));
        assert_eq!((reply.packets, reply.bytes), (0, 0));
        assert!((run.started_ns..=run.finished_ns).contains(&orig.created_ns));
        assert_eq!(orig.last_seen_ns, orig.created_ns);
        assert_eq!((orig.state, orig.flags), (CT_NEW, 0));
        assert_eq!((reply.state, reply.flags), (CT_NEW, 0));
        lab.dp().assert_learned(MAC_A, lab.fx.a, &run);
    });
}

#[test]
fn tcp_syn_from_a_port_outside_the_range_gets_a_nat_port() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let frame = tcp_out(IP_A, 12345, REMOTE_IP, 443, TCP_SYN, MAC_A);

        let run = lab.a_sends(&frame);

        run.assert_verdict(TC_ACT_REDIRECT);
        let ip = Pkt(&run.out).ip();
        let port = ip.sport();
        assert!(in_nat_range(port), "NAT port {port} outside {NAT_PORTS:?}");
        assert_eq!(ip.saddr(), UPLINK_IP);
        assert_eq!((ip.daddr(), ip.dport()), (REMOTE_IP, 443));
        assert_eq!(ip.ttl(), 63);
        // Address and port changed: the TCP checksum must cover both.
        ip.assert_checksums("TCP SYN after SNAT");
        let (orig, _) = lab.assert_flow(
            IPPROTO_TCP,
            (IP_A, 12345),
            (REMOTE_IP, 443),
            port,
            (lab.fx.a, MAC_A),
        );
        assert_eq!(orig.state, CT_SYN_SENT);
        lab.assert_nat_len(2);
        lab.dp().assert_counted_once(FWD_SNAT, &frame);
    });
}

#[test]
fn udp_without_checksum_keeps_a_zero_checksum() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        // Port 5353 is below the NAT range: address and port both change.
        let l4 = udp_no_checksum(5353, 53, b"no checksum");
        let frame = ethernet(
            BRIDGE_MAC,
            MAC_A,
            ETH_P_IPV4,
            &ipv4(IP_A, REMOTE_IP, IPPROTO_UDP, &l4),
        );

        let run = lab.a_sends(&frame);

        run.assert_verdict(TC_ACT_REDIRECT);
        let ip = Pkt(&run.out).ip();
        ip.assert_header_checksum("UDP without checksum");
        ip.assert_no_udp_checksum();
        assert_eq!(ip.saddr(), UPLINK_IP);
        let port = ip.sport();
        assert!(in_nat_range(port), "NAT port {port}");
        lab.assert_flow(
            IPPROTO_UDP,
            (IP_A, 5353),
            (REMOTE_IP, 53),
            port,
            (lab.fx.a, MAC_A),
        );
        lab.dp().assert_counted_once(FWD_SNAT, &frame);
    });
}

#[test]
fn udp_checksum_that_becomes_zero_is_sent_as_ffff() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        // Pick a payload word so the translated datagram's checksum would be
        // 0x0000, which UDP must send as 0xffff (RFC 768). The NAT port is
        // 40000 (kept), so the output is known in advance.
        let mut payload = [0u8; 2];
        let want = udp(UPLINK_IP, REMOTE_IP, 40000, 53, &payload);
        let sum = u16::from_be_bytes([want[6], want[7]]);
        // Adding `sum` to the data makes the one's-complement sum 0xffff.
        payload.copy_from_slice(&sum.to_be_bytes());
        let check = udp(UPLINK_IP, REMOTE_IP, 40000, 53, &payload);
        assert_eq!(&check[6..8], &[0xff, 0xff], "test setup: translated sum");
        let l4 = udp(IP_A, REMOTE_IP, 40000, 53, &payload);
        let frame = ethernet(
            BRIDGE_MAC,
            MAC_A,
            ETH_P_IPV4,
            &ipv4(IP_A, REMOTE_IP, IPPROTO_UDP, &l4),
        );

        let run = lab.a_sends(&frame);

        run.assert_verdict(TC_ACT_REDIRECT);
        let ip = Pkt(&run.out).ip();
        assert_eq!(ip.sport(), 40000);
        assert_eq!(
            ip.l4_checksum_field(),
            0xffff,
            "a computed 0 must go out as 0xffff, not as 'no checksum'"
        );
        ip.assert_checksums("UDP with a 0xffff checksum");
    });
}

#[test]
fn icmp_echo_identifier_is_rewritten_with_a_valid_checksum() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        // Identifier 0x4242 (16962) is below the NAT range.
        let frame = icmp_frame(MAC_A, BRIDGE_MAC, IP_A, REMOTE_IP);

        let run = lab.a_sends(&frame);

        run.assert_verdict(TC_ACT_REDIRECT);
        let ip = Pkt(&run.out).ip();
        assert_eq!(ip.icmp_type(), ICMP_ECHO_REQUEST);
        let id = ip.icmp_id();
        assert!(in_nat_range(id), "ICMP id {id} outside the NAT range");
        assert_eq!(ip.saddr(), UPLINK_IP);
        assert_eq!(ip.ttl(), 63);
        ip.assert_checksums("ICMP echo after SNAT");
        // For echo the identifier is the source "port", the other one 0.
        lab.assert_flow(
            IPPROTO_ICMP,
            (IP_A, 0x4242),
            (REMOTE_IP, 0),
            id,
            (lab.fx.a, MAC_A),
        );
        lab.assert_nat_len(2);
        lab.dp().assert_counted_once(FWD_SNAT, &frame);
    });
}

#[test]
fn icmp_echo_reply_from_a_container_never_leaves_with_a_bad_checksum() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        // A answers a ping that reached it from outside without NAT (routed
        // to the subnet). 0x4242 is outside the NAT range.
        let l4 = icmp_echo_reply(0x4242, 1, &[0xab; 56]);
        let frame = ethernet(
            BRIDGE_MAC,
            MAC_A,
            ETH_P_IPV4,
            &ipv4(IP_A, REMOTE_IP, IPPROTO_ICMP, &l4),
        );

        let run = lab.a_sends(&frame);

        // Whatever the datapath decides, what it emits must be valid.
        let ip = Pkt(&run.out).ip();
        assert_eq!(ip.icmp_type(), ICMP_ECHO_REPLY);
        ip.assert_checksums(&format!(
            "echo reply, verdict {}, {}",
            verdict_name(run.ret),
            lab.dp().stats_summary()
        ));
    });
}

#[test]
fn second_packet_of_a_flow_reuses_its_entry() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let frame = tcp_out(IP_A, 12345, REMOTE_IP, 443, TCP_ACK, MAC_A);

        let first = lab.a_sends(&frame);
        let second = lab.a_sends(&frame);

        first.assert_verdict(TC_ACT_REDIRECT);
        second.assert_verdict(TC_ACT_REDIRECT);
        assert_eq!(first.out, second.out, "same flow, same translation");
        let port = Pkt(&second.out).ip().sport();
        let (orig, reply) = lab.assert_flow(
            IPPROTO_TCP,
            (IP_A, 12345),
            (REMOTE_IP, 443),
            port,
            (lab.fx.a, MAC_A),
        );
        lab.assert_nat_len(2);
        assert_eq!((orig.packets, orig.bytes), (2, 2 * frame.len() as u64));
        assert!((first.started_ns..=first.finished_ns).contains(&orig.created_ns));
        assert!((second.started_ns..=second.finished_ns).contains(&orig.last_seen_ns));
        assert_eq!(reply.packets, 0, "nothing came back yet");
        lab.dp()
            .assert_counters(&[(FWD_SNAT, 2, 2 * frame.len() as u64)]);
    });
}

#[test]
fn tcp_state_follows_the_container_side() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let seg = |flags| tcp_out(IP_A, 12345, REMOTE_IP, 443, flags, MAC_A);
        let state = || {
            let entry = lab
                .dp()
                .nat_get(&orig_key(IPPROTO_TCP, (IP_A, 12345), (REMOTE_IP, 443)))
                .expect("original entry");
            (entry.state, entry.flags)
        };

        lab.a_sends(&seg(TCP_SYN)).assert_verdict(TC_ACT_REDIRECT);
        assert_eq!(state(), (CT_SYN_SENT, 0));
        lab.a_sends(&seg(TCP_FIN | TCP_ACK))
            .assert_verdict(TC_ACT_REDIRECT);
        assert_eq!(state(), (CT_FIN_WAIT, NAT_F_FIN_ORIGINAL));
        lab.a_sends(&seg(TCP_RST)).assert_verdict(TC_ACT_REDIRECT);
        assert_eq!(state().0, CT_CLOSED);
        // A new connection on the same tuple starts over.
        lab.a_sends(&seg(TCP_SYN)).assert_verdict(TC_ACT_REDIRECT);
        assert_eq!(state(), (CT_SYN_SENT, 0));
        lab.assert_nat_len(2);
    });
}

#[test]
fn same_source_port_from_two_containers_gets_two_nat_ports() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let from_a = udp_out(IP_A, 40000, REMOTE_IP, 53, MAC_A);
        let from_b = udp_out(IP_B, 40000, REMOTE_IP, 53, MAC_B);

        let run_a = lab.a_sends(&from_a);
        let run_b = lab.b_sends(&from_b);

        run_a.assert_verdict(TC_ACT_REDIRECT);
        run_b.assert_verdict(TC_ACT_REDIRECT);
        let (ip_a, ip_b) = (Pkt(&run_a.out).ip(), Pkt(&run_b.out).ip());
        assert_eq!(ip_a.saddr(), UPLINK_IP);
        assert_eq!(ip_b.saddr(), UPLINK_IP);
        // A came first and kept its port; B's would clash with it.
        assert_eq!(ip_a.sport(), 40000);
        let port_b = ip_b.sport();
        assert_ne!(port_b, 40000, "two flows share one reply tuple");
        assert!(in_nat_range(port_b), "NAT port {port_b}");
        ip_a.assert_checksums("A's datagram");
        ip_b.assert_checksums("B's datagram");
        lab.assert_flow(
            IPPROTO_UDP,
            (IP_A, 40000),
            (REMOTE_IP, 53),
            40000,
            (lab.fx.a, MAC_A),
        );
        lab.assert_flow(
            IPPROTO_UDP,
            (IP_B, 40000),
            (REMOTE_IP, 53),
            port_b,
            (lab.fx.b, MAC_B),
        );
        lab.assert_nat_len(4);
        lab.dp()
            .assert_counters(&[(FWD_SNAT, 2, (from_a.len() + from_b.len()) as u64)]);
    });
}

#[test]
fn one_port_serves_flows_to_different_destinations() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let to_53 = udp_out(IP_A, 40000, REMOTE_IP, 53, MAC_A);
        let to_123 = udp_out(IP_A, 40000, REMOTE_IP, 123, MAC_A);

        let r1 = lab.a_sends(&to_53);
        let r2 = lab.a_sends(&to_123);

        r1.assert_verdict(TC_ACT_REDIRECT);
        r2.assert_verdict(TC_ACT_REDIRECT);
        // The reply tuples differ by the remote port: no clash.
        assert_eq!(Pkt(&r1.out).ip().sport(), 40000);
        assert_eq!(Pkt(&r2.out).ip().sport(), 40000);
        lab.assert_nat_len(4);
    });
}

#[test]
fn port_exhaustion_drops_the_third_flow_and_leaves_no_half_entry() {
    in_private_netns(|net| {
        let lab = NatLab::with(net, |cfg| {
            cfg.nat_port_min = 50000;
            cfg.nat_port_max = 50001;
        });
        let flow = |sport| udp_out(IP_A, sport, REMOTE_IP, 53, MAC_A);
        let (f1, f2, f3) = (flow(40000), flow(40001), flow(40002));

        let r1 = lab.a_sends(&f1);
        let r2 = lab.a_sends(&f2);
        let r3 = lab.a_sends(&f3);

        r1.assert_verdict(TC_ACT_REDIRECT);
        r2.assert_verdict(TC_ACT_REDIRECT);
        let mut ports = [Pkt(&r1.out).ip().sport(), Pkt(&r2.out).ip().sport()];
        ports.sort();
        assert_eq!(ports, [50000, 50001], "both ports of the range in use");
        r3.assert_verdict(TC_ACT_SHOT);
        r3.assert_frame_unchanged(&f3);
        assert_eq!(
            lab.dp()
                .nat_get(&orig_key(IPPROTO_UDP, (IP_A, 40002), (REMOTE_IP, 53))),
            None
        );
        // Exactly the two flows' four entries: no reply entry of the third.
        lab.assert_nat_len(4);
        lab.dp().assert_counters(&[
            (FWD_SNAT, 2, (f1.len() + f2.len()) as u64),
            (DROP_NAT_NO_PORT, 1, f3.len() as u64),
        ]);

        // Established flows keep working, and ports are per destination:
        // the same ports are free towards another remote port.
        lab.a_sends(&f1).assert_verdict(TC_ACT_REDIRECT);
        lab.a_sends(&udp_out(IP_A, 40002, REMOTE_IP, 54, MAC_A))
            .assert_verdict(TC_ACT_REDIRECT);
        lab.assert_nat_len(6);
    });
}

#[test]
fn empty_port_range_drops_new_flows() {
    in_private_netns(|net| {
        let lab = NatLab::with(net, |cfg| {
            cfg.nat_port_min = 50001;
            cfg.nat_port_max = 50000;
        });
        let frame = udp_out(IP_A, 50000, REMOTE_IP, 53, MAC_A);

        let run = lab.a_sends(&frame);

        run.assert_verdict(TC_ACT_SHOT);
        run.assert_frame_unchanged(&frame);
        lab.dp().assert_counted_once(DROP_NAT_NO_PORT, &frame);
        lab.assert_nat_len(0);
    });
}

#[test]
fn full_nat_table_drops_the_new_flow_and_rolls_back_its_reply_entry() {
    in_private_netns(|net| {
        // Room for one flow and a half: the second flow's reply entry fits,
        // its original entry does not.
        let lab = NatLab::build(net, 3, |_| {});
        let first = udp_out(IP_A, 40000, REMOTE_IP, 53, MAC_A);
        let second = udp_out(IP_A, 40001, REMOTE_IP, 53, MAC_A);

        lab.a_sends(&first).assert_verdict(TC_ACT_REDIRECT);
        let run = lab.a_sends(&second);

        run.assert_verdict(TC_ACT_SHOT);
        run.assert_frame_unchanged(&second);
        lab.dp().assert_counters(&[
            (FWD_SNAT, 1, first.len() as u64),
            (DROP_NAT_TABLE_FULL, 1, second.len() as u64),
        ]);
        lab.assert_flow(
            IPPROTO_UDP,
            (IP_A, 40000),
            (REMOTE_IP, 53),
            40000,
            (lab.fx.a, MAC_A),
        );
        lab.assert_nat_len(2);
    });
}

#[test]
fn masquerade_off_passes_routed_untranslated() {
    in_private_netns(|net| {
        let lab = NatLab::with(net, |cfg| cfg.flags &= !CONFIG_F_MASQUERADE);
        let frame = udp_out(IP_A, 40000, REMOTE_IP, 53, MAC_A);

        let run = lab.a_sends(&frame);

        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&frame);
        lab.dp().assert_counted_once(PASS_ROUTED, &frame);
        lab.assert_nat_len(0);
    });
}

#[test]
fn icc_off_does_not_stop_masquerade() {
    in_private_netns(|net| {
        let lab = NatLab::with(net, |cfg| cfg.flags &= !CONFIG_F_ICC);
        let frame = udp_out(IP_A, 40000, REMOTE_IP, 53, MAC_A);

        let run = lab.a_sends(&frame);

        run.assert_verdict(TC_ACT_REDIRECT);
        assert_eq!(Pkt(&run.out).ip().saddr(), UPLINK_IP);
        lab.dp().assert_counted_once(FWD_SNAT, &frame);
    });
}

#[test]
fn subnet_and_special_destinations_go_to_the_host() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let frames = [
            udp_out(IP_A, 40000, GATEWAY_IP, 53, MAC_A),
            // Another container routed through the gateway (ICC is on).
            udp_out(IP_A, 40000, IP_B, 53, MAC_A),
            udp_out(IP_A, 68, [255, 255, 255, 255], 67, MAC_A),
            udp_out(IP_A, 5353, [224, 0, 0, 251], 5353, MAC_A),
            udp_out(IP_A, 40000, [0, 0, 0, 0], 53, MAC_A),
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
fn the_uplink_address_itself_is_local() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let frame = udp_out(IP_A, 40000, UPLINK_IP, 53, MAC_A);

        let run = lab.a_sends(&frame);

        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&frame);
        lab.dp().assert_counted_once(PASS_TO_HOST, &frame);
        lab.assert_nat_len(0);
    });
}

#[test]
fn route_through_another_device_passes_routed() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        ip(&[
            "link",
            "add",
            "ebt-lan0",
            "type",
            "veth",
            "peer",
            "name",
            "ebt-lan0-p",
        ]);
        ip(&["addr", "add", "192.0.2.1/24", "dev", "ebt-lan0"]);
        ip(&["link", "set", "ebt-lan0", "up"]);
        ip(&["link", "set", "ebt-lan0-p", "up"]);
        let frame = udp_out(IP_A, 40000, [192, 0, 2, 50], 53, MAC_A);

        let run = lab.a_sends(&frame);

        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&frame);
        lab.dp().assert_counted_once(PASS_ROUTED, &frame);
        lab.assert_nat_len(0);
    });
}

#[test]
fn unreachable_route_is_left_to_the_kernel() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        ip(&["route", "add", "unreachable", "100.64.0.0/10"]);
        let frame = udp_out(IP_A, 40000, [100, 64, 1, 1], 53, MAC_A);

        let run = lab.a_sends(&frame);

        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&frame);
        lab.dp().assert_counted_once(PASS_FIB_SLOW_PATH, &frame);
        lab.assert_nat_len(0);
    });
}

#[test]
fn no_route_at_all_is_left_to_the_kernel_untranslated() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        ip(&["route", "del", "default"]);
        let frame = udp_out(IP_A, 40000, REMOTE_IP, 53, MAC_A);

        let run = lab.a_sends(&frame);

        // The kernel answers net unreachable; which pass reason the FIB's
        // "not forwarded" maps to is the datapath's business.
        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&frame);
        let stats = lab.dp().stats();
        assert_eq!(
            stats[PASS_TO_HOST as usize].packets + stats[PASS_FIB_SLOW_PATH as usize].packets,
            1,
            "{}",
            lab.dp().stats_summary()
        );
        lab.assert_nat_len(0);
    });
}

#[test]
fn forwarding_off_on_the_bridge_is_left_to_the_kernel() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        // `ebridge up` turns it on; without it the FIB refuses to forward.
        set_bridge_forwarding(false);
        let frame = udp_out(IP_A, 40000, REMOTE_IP, 53, MAC_A);

        let run = lab.a_sends(&frame);

        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&frame);
        lab.dp().assert_counted_once(PASS_FIB_SLOW_PATH, &frame);
        lab.assert_nat_len(0);
    });
}

#[test]
fn frame_too_big_for_the_uplink_is_left_to_the_kernel() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        ip(&["link", "set", UPLINK, "mtu", "1280"]);
        let l4 = udp(IP_A, REMOTE_IP, 40000, 53, &[0x5a; 1400]);
        let frame = ethernet(
            BRIDGE_MAC,
            MAC_A,
            ETH_P_IPV4,
            &ipv4(IP_A, REMOTE_IP, IPPROTO_UDP, &l4),
        );

        let run = lab.a_sends(&frame);

        // The kernel sends fragmentation needed (DF is set).
        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&frame);
        lab.dp().assert_counted_once(PASS_FIB_SLOW_PATH, &frame);
        lab.assert_nat_len(0);
    });
}

#[test]
fn next_hop_without_a_neighbour_entry_is_translated_and_resolved_by_the_kernel() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        // 198.51.100.3 has no neighbour entry.
        ip(&[
            "route",
            "add",
            "192.0.2.0/24",
            "via",
            "198.51.100.3",
            "dev",
            UPLINK,
        ]);
        let frame = udp_out(IP_A, 40000, [192, 0, 2, 50], 53, MAC_A);

        let run = lab.a_sends(&frame);

        // bpf_redirect_neigh: the kernel fills the MACs on transmit.
        run.assert_verdict(TC_ACT_REDIRECT);
        let out = Pkt(&run.out);
        assert_eq!(out.dst_mac(), BRIDGE_MAC, "MACs are left to the kernel");
        assert_eq!(out.src_mac(), MAC_A);
        let ip = out.ip();
        assert_eq!(ip.saddr(), UPLINK_IP);
        assert_eq!(ip.ttl(), 63);
        ip.assert_checksums("SNAT via an unresolved next hop");
        lab.dp().assert_counted_once(FWD_SNAT, &frame);
        lab.assert_nat_len(2);
    });
}

#[test]
fn expiring_ttl_is_left_to_the_kernel() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let mut bytes = 0;
        for ttl in [1, 0] {
            let opts = Ipv4Opts {
                ttl,
                ..Ipv4Opts::default()
            };
            let l4 = udp(IP_A, REMOTE_IP, 40000, 33434, b"traceroute");
            let frame = ethernet(
                BRIDGE_MAC,
                MAC_A,
                ETH_P_IPV4,
                &ipv4_with(&opts, IP_A, REMOTE_IP, IPPROTO_UDP, &l4),
            );

            let run = lab.a_sends(&frame);

            // The kernel answers time exceeded (traceroute's first hop).
            run.assert_verdict(TC_NEXT);
            run.assert_frame_unchanged(&frame);
            bytes += frame.len() as u64;
        }
        lab.dp().assert_counters(&[(PASS_TTL_EXPIRING, 2, bytes)]);
        lab.assert_nat_len(0);
    });
}

#[test]
fn ttl_two_leaves_with_one() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let opts = Ipv4Opts {
            ttl: 2,
            ..Ipv4Opts::default()
        };
        let l4 = udp(IP_A, REMOTE_IP, 40000, 53, b"x");
        let frame = ethernet(
            BRIDGE_MAC,
            MAC_A,
            ETH_P_IPV4,
            &ipv4_with(&opts, IP_A, REMOTE_IP, IPPROTO_UDP, &l4),
        );

        let run = lab.a_sends(&frame);

        run.assert_verdict(TC_ACT_REDIRECT);
        let ip = Pkt(&run.out).ip();
        assert_eq!(ip.ttl(), 1);
        ip.assert_checksums("TTL 2 → 1");
    });
}

#[test]
fn protocols_nat_cannot_translate_are_dropped() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        // GRE, and an ICMP timestamp request (neither echo nor an error).
        let gre = ethernet(
            BRIDGE_MAC,
            MAC_A,
            ETH_P_IPV4,
            &ipv4(IP_A, REMOTE_IP, 47, &[0; 8]),
        );
        let mut ts = vec![13, 0, 0, 0, 0x12, 0x34, 0, 1];
        ts.extend_from_slice(&[0; 12]);
        let csum = checksum(&[&ts]);
        ts[2..4].copy_from_slice(&csum.to_be_bytes());
        let timestamp = ethernet(
            BRIDGE_MAC,
            MAC_A,
            ETH_P_IPV4,
            &ipv4(IP_A, REMOTE_IP, IPPROTO_ICMP, &ts),
        );

        for frame in [&gre, &timestamp] {
            let run = lab.a_sends(frame);
            run.assert_verdict(TC_ACT_SHOT);
            run.assert_frame_unchanged(frame);
        }

        lab.dp().assert_counters(&[(
            DROP_NAT_UNSUPPORTED,
            2,
            (gre.len() + timestamp.len()) as u64,
        )]);
        lab.assert_nat_len(0);
    });
}

#[test]
fn spoofed_source_is_dropped_before_any_translation() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let frame = udp_out(IP_UNKNOWN, 40000, REMOTE_IP, 53, MAC_A);

        let run = lab.a_sends(&frame);

        run.assert_verdict(TC_ACT_SHOT);
        run.assert_frame_unchanged(&frame);
        lab.dp().assert_counted_once(DROP_SPOOFED_IP, &frame);
        lab.assert_nat_len(0);
    });
}
