//! Everything the fast path does not own goes to the kernel bridge / stack
//! with TC_NEXT, each under its own pass-* reason: the sender's own port
//! (hairpin), broadcast and multicast, unknown destinations, the node's own
//! MACs and expired FDB entries. (IPv4 to the node's MAC bound for outside
//! is routed by the host while masquerade is off; `prog_snat.rs` covers
//! masquerade on, `prog_routed.rs` the rest of routed mode.)
mod common;

use std::time::Duration;

use common::{frame::*, nat::*, packet_test::*};
use ebridge_common::stats::*;

#[test]
fn destination_on_the_senders_own_port_is_passed_same_port() {
    in_private_netns(|net| {
        let mut fx = Fixture::new(net);
        // A MAC that lives behind A's own veth (say a macvlan inside A).
        let behind_a = [0x02, 0x42, 0xac, 0x11, 0x00, 0x42];
        fx.dp
            .fdb_insert(behind_a, learned_entry(fx.a, monotonic_ns()));
        let frame = udp_frame(MAC_A, behind_a, IP_A, IP_B);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&frame);
        fx.dp.assert_counted_once(PASS_SAME_PORT, &frame);
        fx.dp.assert_learned(MAC_A, fx.a, &run);
    });
}

#[test]
fn frame_to_the_senders_own_mac_is_passed_same_port() {
    in_private_netns(|net| {
        let fx = Fixture::new(net);
        // Nothing known about A yet: learning happens before the lookup, so
        // the frame finds A on its own port.
        assert_eq!(fx.dp.fdb_get(MAC_A), None);
        let frame = udp_frame(MAC_A, MAC_A, IP_A, IP_A);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&frame);
        fx.dp.assert_counted_once(PASS_SAME_PORT, &frame);
        fx.dp.assert_learned(MAC_A, fx.a, &run);
    });
}

#[test]
fn broadcast_arp_request_is_passed_and_sender_learned() {
    in_private_netns(|net| {
        let fx = Fixture::new(net);
        let frame = arp_request(MAC_A, IP_A, GATEWAY_IP);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&frame);
        fx.dp.assert_counted_once(PASS_MULTICAST, &frame);
        fx.dp.assert_learned(MAC_A, fx.a, &run);
        fx.assert_fdb_holds_only(&[MAC_A]);
    });
}

#[test]
fn ipv4_multicast_is_passed() {
    in_private_netns(|net| {
        let fx = Fixture::new(net);
        // mDNS: 224.0.0.251 → 01:00:5e:00:00:fb.
        let frame = udp_frame(
            MAC_A,
            [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb],
            IP_A,
            [224, 0, 0, 251],
        );

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&frame);
        fx.dp.assert_counted_once(PASS_MULTICAST, &frame);
        fx.dp.assert_learned(MAC_A, fx.a, &run);
    });
}

#[test]
fn unknown_destination_mac_is_passed_unknown_dst() {
    in_private_netns(|net| {
        let fx = Fixture::new(net);
        let frame = udp_frame(MAC_A, MAC_UNKNOWN, IP_A, IP_UNKNOWN);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&frame);
        fx.dp.assert_counted_once(PASS_UNKNOWN_DST, &frame);
        fx.dp.assert_learned(MAC_A, fx.a, &run);
        // Looking up a MAC does not create an entry for it.
        assert_eq!(fx.dp.fdb_get(MAC_UNKNOWN), None);
        fx.assert_fdb_holds_only(&[MAC_A]);
    });
}

#[test]
fn frame_to_the_bridge_mac_is_passed_to_host() {
    in_private_netns(|net| {
        let fx = Fixture::new(net);
        // A → the gateway's own address.
        let frame = udp_frame(MAC_A, BRIDGE_MAC, IP_A, GATEWAY_IP);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&frame);
        fx.dp.assert_counted_once(PASS_TO_HOST, &frame);
        // The local entry is neither refreshed nor moved.
        fx.assert_fdb_holds_only(&[MAC_A]);
    });
}

#[test]
fn arp_to_the_bridge_mac_is_passed_to_host() {
    in_private_netns(|net| {
        let fx = Fixture::new(net);
        let frame = arp_reply(MAC_A, IP_A, BRIDGE_MAC, GATEWAY_IP);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&frame);
        fx.dp.assert_counted_once(PASS_TO_HOST, &frame);
        fx.assert_fdb_holds_only(&[MAC_A]);
    });
}

#[test]
fn ipv4_to_the_outside_without_masquerade_is_passed_routed() {
    in_private_netns(|net| {
        // A route out (the NAT tests' uplink), but the fixture's config has
        // no CONFIG_F_MASQUERADE: the host routes A → outside itself,
        // untranslated.
        add_uplink();
        let fx = Fixture::new(net);
        let frame = udp_frame(MAC_A, BRIDGE_MAC, IP_A, REMOTE_IP);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&frame);
        fx.dp.assert_counted_once(PASS_ROUTED, &frame);
        fx.assert_fdb_holds_only(&[MAC_A]);
        assert!(fx.dp.nat_entries().is_empty());
    });
}

#[test]
fn ipv4_to_the_outside_without_forwarding_is_left_to_the_kernel() {
    in_private_netns(|net| {
        // No forwarding on the bridge (`ebridge up` enables it): the FIB
        // lookup refuses, the kernel decides.
        let fx = Fixture::new(net);
        let frame = udp_frame(MAC_A, BRIDGE_MAC, IP_A, IP_OUTSIDE);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&frame);
        fx.dp.assert_counted_once(PASS_FIB_SLOW_PATH, &frame);
    });
}

#[test]
fn expired_fdb_entry_is_passed_fdb_expired_and_kept() {
    in_private_netns(|net| {
        let mut fx = Fixture::new(net);
        let cfg = fx.dp.config();
        assert_eq!(cfg.fdb_ageing_ns, AGEING_NS);
        // B was last heard from one second longer ago than the ageing time.
        let stale = learned_entry(
            fx.b,
            Fixture::aged(Duration::from_nanos(cfg.fdb_ageing_ns + NS_PER_SEC)),
        );
        fx.dp.fdb_insert(MAC_B, stale);
        let frame = udp_frame(MAC_A, MAC_B, IP_A, IP_B);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&frame);
        fx.dp.assert_counted_once(PASS_FDB_EXPIRED, &frame);
        // Removing aged entries is userspace's job: the program leaves it.
        assert_eq!(fx.dp.fdb_get(MAC_B), Some(stale));
    });
}

#[test]
fn entry_just_inside_the_ageing_time_is_still_used() {
    in_private_netns(|net| {
        let mut fx = Fixture::new(net);
        let mut cfg = default_config(&fx.net);
        cfg.fdb_ageing_ns = 10 * NS_PER_SEC;
        fx.dp.set_config(&cfg);
        // 8 s old with a 10 s ageing time: still live.
        let entry = learned_entry(fx.b, Fixture::aged(Duration::from_secs(8)));
        fx.dp.fdb_insert(MAC_B, entry);
        let frame = udp_frame(MAC_A, MAC_B, IP_A, IP_B);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_ACT_REDIRECT);
        fx.dp.assert_counted_once(FWD_REDIRECT_PEER, &frame);
        // A lookup is a read: B's timestamp stays as it was.
        assert_eq!(fx.dp.fdb_get(MAC_B), Some(entry));
    });
}
