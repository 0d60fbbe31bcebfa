//! FDB learning: the sender's MAC is recorded on its port with a
//! CLOCK_MONOTONIC timestamp; a live entry is rewritten at most every
//! min(FDB_REFRESH_NS, ageing / 2); a MAC that moved is re-learned at once;
//! local entries are never touched.
mod common;

use std::time::Duration;

use common::{frame::*, packet_test::*};
use ebridge_common::{fdb::FDB_REFRESH_NS, stats::*};

#[test]
fn first_frame_learns_the_sender_on_its_port_with_the_current_time() {
    in_private_netns(|net| {
        let fx = Fixture::new(net);
        assert_eq!(fx.dp.fdb_get(MAC_A), None);
        let frame = arp_request(MAC_A, IP_A, IP_B);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_NEXT);
        fx.dp.assert_learned(MAC_A, fx.a, &run);
        fx.assert_fdb_holds_only(&[MAC_A]);
    });
}

#[test]
fn entry_younger_than_the_refresh_interval_is_not_rewritten() {
    in_private_netns(|net| {
        let mut fx = Fixture::new(net);
        let recent = learned_entry(
            fx.a,
            Fixture::aged(Duration::from_nanos(FDB_REFRESH_NS / 2)),
        );
        fx.dp.fdb_insert(MAC_A, recent);
        let frame = udp_frame(MAC_A, MAC_B, IP_A, IP_B);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_ACT_REDIRECT);
        assert!(
            run.started_ns - recent.last_seen_ns < FDB_REFRESH_NS,
            "test too slow: the entry aged past the refresh interval before the run"
        );
        assert_eq!(
            fx.dp.fdb_get(MAC_A),
            Some(recent),
            "a live entry younger than FDB_REFRESH_NS was rewritten"
        );
    });
}

#[test]
fn entry_older_than_the_refresh_interval_is_refreshed() {
    in_private_netns(|net| {
        let mut fx = Fixture::new(net);
        let old = learned_entry(
            fx.a,
            Fixture::aged(Duration::from_nanos(2 * FDB_REFRESH_NS)),
        );
        fx.dp.fdb_insert(MAC_A, old);
        let frame = udp_frame(MAC_A, MAC_B, IP_A, IP_B);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_ACT_REDIRECT);
        fx.dp.assert_learned(MAC_A, fx.a, &run);
    });
}

#[test]
fn refresh_happens_once_per_interval_not_per_frame() {
    in_private_netns(|net| {
        let mut fx = Fixture::new(net);
        fx.dp.fdb_insert(
            MAC_A,
            learned_entry(
                fx.a,
                Fixture::aged(Duration::from_nanos(2 * FDB_REFRESH_NS)),
            ),
        );
        let frame = udp_frame(MAC_A, MAC_B, IP_A, IP_B);

        let first = fx.dp.run(fx.a, &frame);
        fx.dp.assert_learned(MAC_A, fx.a, &first);
        let refreshed = fx.dp.fdb_get(MAC_A).expect("A learned");

        let second = fx.dp.run(fx.a, &frame);
        second.assert_verdict(TC_ACT_REDIRECT);
        assert!(second.started_ns - refreshed.last_seen_ns < FDB_REFRESH_NS);
        assert_eq!(
            fx.dp.fdb_get(MAC_A),
            Some(refreshed),
            "the second frame within FDB_REFRESH_NS rewrote the entry"
        );
        fx.dp
            .assert_counters(&[(FWD_REDIRECT_PEER, 2, 2 * frame.len() as u64)]);
    });
}

#[test]
fn expired_entry_of_the_sender_comes_back_to_life_when_it_sends() {
    in_private_netns(|net| {
        let mut fx = Fixture::new(net);
        let expired = learned_entry(
            fx.a,
            Fixture::aged(Duration::from_nanos(AGEING_NS + NS_PER_SEC)),
        );
        fx.dp.fdb_insert(MAC_A, expired);

        // A speaks up...
        let from_a = arp_request(MAC_A, IP_A, IP_B);
        let run = fx.dp.run(fx.a, &from_a);
        fx.dp.assert_learned(MAC_A, fx.a, &run);

        // ...so B's frame to A is a live known unicast again.
        let to_a = udp_frame(MAC_B, MAC_A, IP_B, IP_A);
        fx.dp.run(fx.b, &to_a).assert_verdict(TC_ACT_REDIRECT);
        fx.dp.assert_counters(&[
            (PASS_MULTICAST, 1, from_a.len() as u64),
            (FWD_REDIRECT_PEER, 1, to_a.len() as u64),
        ]);
    });
}

#[test]
fn mac_that_moved_to_another_port_is_relearned_at_once() {
    in_private_netns(|net| {
        let mut fx = Fixture::new(net);
        // A's MAC was last seen on another port, a moment ago (a container
        // restarted on a new veth keeps its MAC in Docker).
        fx.dp
            .fdb_insert(MAC_A, learned_entry(fx.net.peer_b, monotonic_ns()));
        let frame = udp_frame(MAC_A, MAC_B, IP_A, IP_B);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_ACT_REDIRECT);
        fx.dp.assert_learned(MAC_A, fx.a, &run);
    });
}

#[test]
fn learned_mac_is_used_for_the_way_back() {
    in_private_netns(|net| {
        let mut fx = Fixture::new(net);
        let a_to_unknown = udp_frame(MAC_A, MAC_UNKNOWN, IP_A, IP_UNKNOWN);
        let b_to_a = udp_frame(MAC_B, MAC_A, IP_B, IP_A);
        // Neither A nor B is known: both directions start from an empty FDB.
        fx.dp.fdb_remove(MAC_B);

        let before = fx.dp.run(fx.b, &b_to_a);
        before.assert_verdict(TC_NEXT); // A unknown yet
        fx.dp.assert_learned(MAC_B, fx.b, &before);

        fx.dp.run(fx.a, &a_to_unknown).assert_verdict(TC_NEXT);
        let after = fx.dp.run(fx.b, &b_to_a);
        after.assert_verdict(TC_ACT_REDIRECT);

        fx.dp.assert_counters(&[
            (
                PASS_UNKNOWN_DST,
                2,
                (b_to_a.len() + a_to_unknown.len()) as u64,
            ),
            (FWD_REDIRECT_PEER, 1, b_to_a.len() as u64),
        ]);
    });
}

#[test]
fn local_entry_for_the_senders_mac_is_never_overwritten() {
    in_private_netns(|net| {
        let mut fx = Fixture::new(net);
        let local = local_entry(fx.net.bridge);
        fx.dp.fdb_insert(MAC_A, local);
        let frame = arp_request(MAC_A, IP_A, IP_B);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_NEXT);
        assert_eq!(
            fx.dp.fdb_get(MAC_A),
            Some(local),
            "a local entry was learned over"
        );
    });
}

#[test]
fn dropped_frames_teach_nothing() {
    in_private_netns(|net| {
        let fx = Fixture::new(net);
        let spoofed_ip = udp_frame(MAC_A, MAC_B, IP_UNKNOWN, IP_B);
        let spoofed_arp = arp_request(MAC_A, GATEWAY_IP, IP_B);
        let truncated = ethernet(BROADCAST, MAC_A, ETH_P_ARP, &[0; ARP_LEN - 1]);

        for frame in [&spoofed_ip, &spoofed_arp, &truncated] {
            fx.dp.run(fx.a, frame).assert_verdict(TC_ACT_SHOT);
        }

        fx.assert_fdb_holds_only(&[]);
        fx.dp.assert_counters(&[
            (DROP_SPOOFED_IP, 1, spoofed_ip.len() as u64),
            (DROP_SPOOFED_ARP, 1, spoofed_arp.len() as u64),
            (DROP_TRUNCATED, 1, truncated.len() as u64),
        ]);
    });
}

#[test]
fn active_sender_never_expires_with_the_shortest_ageing_time() {
    in_private_netns(|net| {
        let mut fx = Fixture::new(net);
        let mut cfg = default_config(&fx.net);
        cfg.fdb_ageing_ns = NS_PER_SEC; // `ebridge up --fdb-ageing 1`
        fx.dp.set_config(&cfg);
        fx.dp.fdb_insert(
            MAC_A,
            learned_entry(fx.a, Fixture::aged(Duration::from_millis(900))),
        );
        // A sends. Learned 0.9 s ago: younger than FDB_REFRESH_NS but older
        // than half the ageing time, so the entry is refreshed...
        let from_a = udp_frame(MAC_A, MAC_B, IP_A, IP_B);
        let sent = fx.dp.run(fx.a, &from_a);
        sent.assert_verdict(TC_ACT_REDIRECT);
        fx.dp.assert_learned(MAC_A, fx.a, &sent);
        // ...and 200 ms later B answers: A sent 0.2 s ago, well within the
        // 1 s ageing time (without the refresh its entry would say 1.1 s).
        std::thread::sleep(Duration::from_millis(200));
        let to_a = udp_frame(MAC_B, MAC_A, IP_B, IP_A);
        let run = fx.dp.run(fx.b, &to_a);

        assert_eq!(
            run.ret, TC_ACT_REDIRECT,
            "B → A fell to the slow path although A sent 200 ms ago: \
             the refresh interval (FDB_REFRESH_NS) must stay below the ageing time"
        );
    });
}

#[test]
fn short_ageing_time_refreshes_after_half_of_it() {
    in_private_netns(|net| {
        let mut fx = Fixture::new(net);
        let mut cfg = default_config(&fx.net);
        cfg.fdb_ageing_ns = 2 * NS_PER_SEC; // refresh interval 1 s = FDB_REFRESH_NS
        fx.dp.set_config(&cfg);
        let frame = udp_frame(MAC_A, MAC_B, IP_A, IP_B);

        // 0.3 s old: younger than half the ageing time, left alone.
        let young = learned_entry(fx.a, Fixture::aged(Duration::from_millis(300)));
        fx.dp.fdb_insert(MAC_A, young);
        fx.dp.run(fx.a, &frame).assert_verdict(TC_ACT_REDIRECT);
        assert_eq!(fx.dp.fdb_get(MAC_A), Some(young), "refreshed too early");

        // With a 1 s ageing time the interval is 0.5 s: 0.7 s old is refreshed.
        cfg.fdb_ageing_ns = NS_PER_SEC;
        fx.dp.set_config(&cfg);
        fx.dp.fdb_insert(
            MAC_A,
            learned_entry(fx.a, Fixture::aged(Duration::from_millis(700))),
        );
        let run = fx.dp.run(fx.a, &frame);
        run.assert_verdict(TC_ACT_REDIRECT);
        fx.dp.assert_learned(MAC_A, fx.a, &run);
    });
}
