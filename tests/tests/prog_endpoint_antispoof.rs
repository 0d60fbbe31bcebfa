//! A container may only send as itself. Frames with another source MAC, a
//! foreign IPv4 source or a lying ARP sender are dropped and counted, and
//! never reach the FDB (no MAC stealing). ARP probes (sender 0.0.0.0)
//! pass. IPv6 is checked in prog_endpoint_ipv6.
mod common;

use common::{frame::*, packet_test::*};
use ebridge_common::stats::*;

#[test]
fn spoofed_source_mac_is_dropped_and_not_learned() {
    in_private_netns(|net| {
        let fx = Fixture::new(net);
        let frame = udp_frame(MAC_UNKNOWN, MAC_B, IP_A, IP_B);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_ACT_SHOT);
        run.assert_frame_unchanged(&frame);
        fx.dp.assert_counted_once(DROP_SPOOFED_MAC, &frame);
        assert_eq!(fx.dp.fdb_get(MAC_UNKNOWN), None, "spoofed MAC was learned");
        fx.assert_fdb_holds_only(&[]);
    });
}

#[test]
fn stealing_another_endpoints_mac_is_dropped_and_its_fdb_entry_kept() {
    in_private_netns(|net| {
        let fx = Fixture::new(net);
        // A pretends to be B (with B's IP too), hoping to pull B's traffic.
        let frame = udp_frame(MAC_B, MAC_UNKNOWN, IP_B, IP_UNKNOWN);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_ACT_SHOT);
        fx.dp.assert_counted_once(DROP_SPOOFED_MAC, &frame);
        // B's entry still points at B's port with its old timestamp.
        fx.assert_fdb_holds_only(&[]);
    });
}

#[test]
fn spoofed_mac_in_an_arp_frame_is_dropped_as_spoofed_mac() {
    in_private_netns(|net| {
        let fx = Fixture::new(net);
        // Ethernet source is checked before anything in the payload.
        let frame = arp_request(MAC_UNKNOWN, IP_A, GATEWAY_IP);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_ACT_SHOT);
        fx.dp.assert_counted_once(DROP_SPOOFED_MAC, &frame);
        fx.assert_fdb_holds_only(&[]);
    });
}

#[test]
fn spoofed_ipv4_source_is_dropped_and_not_learned() {
    in_private_netns(|net| {
        let fx = Fixture::new(net);
        let frame = udp_frame(MAC_A, MAC_B, IP_UNKNOWN, IP_B);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_ACT_SHOT);
        run.assert_frame_unchanged(&frame);
        fx.dp.assert_counted_once(DROP_SPOOFED_IP, &frame);
        assert_eq!(fx.dp.fdb_get(MAC_A), None, "a dropped frame taught the fdb");
        fx.assert_fdb_holds_only(&[]);
    });
}

#[test]
fn ipv4_source_of_another_endpoint_is_dropped() {
    in_private_netns(|net| {
        let fx = Fixture::new(net);
        let frame = icmp_frame(MAC_A, BRIDGE_MAC, IP_B, IP_OUTSIDE);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_ACT_SHOT);
        fx.dp.assert_counted_once(DROP_SPOOFED_IP, &frame);
    });
}

#[test]
fn arp_with_a_wrong_sender_ip_is_dropped() {
    in_private_netns(|net| {
        let fx = Fixture::new(net);
        let frame = arp_request(MAC_A, IP_UNKNOWN, GATEWAY_IP);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_ACT_SHOT);
        run.assert_frame_unchanged(&frame);
        fx.dp.assert_counted_once(DROP_SPOOFED_ARP, &frame);
        fx.assert_fdb_holds_only(&[]);
    });
}

#[test]
fn arp_with_a_wrong_sender_mac_is_dropped() {
    in_private_netns(|net| {
        let fx = Fixture::new(net);
        // Right Ethernet source, but the ARP body claims B's hardware address.
        let frame = ethernet(
            BROADCAST,
            MAC_A,
            ETH_P_ARP,
            &arp(ARP_REQUEST, MAC_B, IP_A, [0; 6], GATEWAY_IP),
        );

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_ACT_SHOT);
        fx.dp.assert_counted_once(DROP_SPOOFED_ARP, &frame);
        fx.assert_fdb_holds_only(&[]);
    });
}

#[test]
fn gratuitous_arp_claiming_the_gateway_is_dropped() {
    in_private_netns(|net| {
        let fx = Fixture::new(net);
        // Classic ARP poisoning: "172.17.0.1 is at A", sent to B.
        let frame = arp_reply(MAC_A, GATEWAY_IP, MAC_B, IP_B);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_ACT_SHOT);
        fx.dp.assert_counted_once(DROP_SPOOFED_ARP, &frame);
    });
}

#[test]
fn arp_probe_with_sender_ip_zero_is_allowed() {
    in_private_netns(|net| {
        let fx = Fixture::new(net);
        // RFC 5227 probe: "who has 172.17.0.2?" from 0.0.0.0.
        let frame = arp_request(MAC_A, [0, 0, 0, 0], IP_A);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&frame);
        fx.dp.assert_counted_once(PASS_MULTICAST, &frame);
        fx.dp.assert_learned(MAC_A, fx.a, &run);
    });
}

#[test]
fn arp_announcement_of_its_own_address_is_allowed() {
    in_private_netns(|net| {
        let fx = Fixture::new(net);
        // RFC 5227 announcement: sender and target are both A's address.
        let frame = arp_request(MAC_A, IP_A, IP_A);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_NEXT);
        fx.dp.assert_counted_once(PASS_MULTICAST, &frame);
        fx.dp.assert_learned(MAC_A, fx.a, &run);
    });
}

#[test]
fn ipv6_on_a_bridge_without_ipv6_is_dropped() {
    in_private_netns(|net| {
        let fx = Fixture::new(net);
        let ll_a = [
            0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x42, 0xac, 0xff, 0xfe, 0x11, 0, 2,
        ];
        let all_nodes = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let frame = ipv6_frame(MAC_A, [0x33, 0x33, 0, 0, 0, 1], ll_a, all_nodes);

        let run = fx.dp.run(fx.a, &frame);

        // The container's IPv6 is off (`endpoint add` disables it): none of
        // it is legitimate, whatever its MAC.
        run.assert_verdict(TC_ACT_SHOT);
        fx.dp.assert_counted_once(DROP_IPV6_OFF, &frame);
    });
}

#[test]
fn ipv6_with_a_spoofed_mac_is_dropped() {
    in_private_netns(|net| {
        let fx = Fixture::new(net);
        let src = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x63];
        let dst = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let frame = ipv6_frame(MAC_UNKNOWN, [0x33, 0x33, 0, 0, 0, 1], src, dst);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_ACT_SHOT);
        fx.dp.assert_counted_once(DROP_SPOOFED_MAC, &frame);
    });
}
