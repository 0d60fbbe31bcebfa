//! Frames on a veth that is not an endpoint, and a datapath whose config was
//! never written.
//!
//! `config` is a BPF array: its one entry always exists and starts zeroed.
//! A zero `bridge_ifindex` is how the program tells "never written" (no
//! bridge has ifindex 0): it then fails closed, dropping every frame as
//! drop-no-config before looking at anything else.
mod common;

use common::{frame::*, packet_test::*};
use ebridge_common::{config::BridgeConfig, stats::*};

#[test]
fn frame_from_a_veth_that_is_not_an_endpoint_is_dropped() {
    in_private_netns(|net| {
        let mut dp = Datapath::load();
        dp.set_config(&default_config(net));
        dp.add_endpoint(net.veth_a, MAC_A, IP_A);
        // B's veth exists but was never registered.
        let frame = arp_request(MAC_B, IP_B, IP_A);

        let run = dp.run(net.veth_b, &frame);

        run.assert_verdict(TC_ACT_SHOT);
        run.assert_frame_unchanged(&frame);
        dp.assert_counted_once(DROP_UNKNOWN_ENDPOINT, &frame);
        assert_eq!(dp.fdb_len(), 0, "a frame from an unknown port was learned");
    });
}

#[test]
fn endpoint_key_must_be_the_ingress_ifindex() {
    in_private_netns(|net| {
        let mut dp = Datapath::load();
        dp.set_config(&default_config(net));
        // Registered under the veth's *peer* (the container side) by mistake.
        dp.add_endpoint(net.peer_a, MAC_A, IP_A);
        let frame = udp_frame(MAC_A, MAC_B, IP_A, IP_B);

        dp.run(net.veth_a, &frame).assert_verdict(TC_ACT_SHOT);
        dp.run(net.peer_a, &frame).assert_verdict(TC_NEXT);

        dp.assert_counters(&[
            (DROP_UNKNOWN_ENDPOINT, 1, frame.len() as u64),
            (PASS_UNKNOWN_DST, 1, frame.len() as u64),
        ]);
    });
}

#[test]
fn never_written_config_reads_as_zero() {
    in_private_netns(|_net| {
        let dp = Datapath::load();
        assert_eq!(dp.config(), BridgeConfig::default());
    });
}

#[test]
fn all_zero_config_fails_closed() {
    in_private_netns(|net| {
        let fx = Fixture::with_config(net, &BridgeConfig::default());
        let to_b = udp_frame(MAC_A, MAC_B, IP_A, IP_B);
        let arp = arp_request(MAC_A, IP_A, IP_B);
        let to_gateway = udp_frame(MAC_A, BRIDGE_MAC, IP_A, IP_OUTSIDE);
        // Even a spoofed frame is refused for the missing config first.
        let spoofed = udp_frame(MAC_UNKNOWN, MAC_B, IP_UNKNOWN, IP_B);

        let mut bytes = 0;
        for frame in [&to_b, &arp, &to_gateway, &spoofed] {
            let run = fx.dp.run(fx.a, frame);
            run.assert_verdict(TC_ACT_SHOT);
            run.assert_frame_unchanged(frame);
            bytes += frame.len() as u64;
        }

        fx.dp.assert_counters(&[(DROP_NO_CONFIG, 4, bytes)]);
        // Nothing was learned: the program stopped before the FDB.
        fx.assert_fdb_holds_only(&[]);
    });
}

#[test]
fn config_without_a_bridge_index_fails_closed() {
    in_private_netns(|net| {
        // Everything set but the bridge: still "not set up".
        let mut cfg = default_config(net);
        cfg.bridge_ifindex = 0;
        let mut fx = Fixture::with_config(net, &cfg);
        let frame = udp_frame(MAC_A, MAC_B, IP_A, IP_B);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_ACT_SHOT);
        fx.dp.assert_counted_once(DROP_NO_CONFIG, &frame);

        // The same frame once the config names the bridge: the fast path.
        fx.dp.set_config(&default_config(net));
        fx.dp.run(fx.a, &frame).assert_verdict(TC_ACT_REDIRECT);
        fx.dp.assert_counters(&[
            (DROP_NO_CONFIG, 1, frame.len() as u64),
            (FWD_REDIRECT_PEER, 1, frame.len() as u64),
        ]);
    });
}

#[test]
fn empty_maps_drop_everything_as_no_config() {
    in_private_netns(|net| {
        let dp = Datapath::load();
        let frame = udp_frame(MAC_A, MAC_B, IP_A, IP_B);

        let run = dp.run(net.veth_a, &frame);

        run.assert_verdict(TC_ACT_SHOT);
        run.assert_frame_unchanged(&frame);
        // The config check comes before the endpoint lookup.
        dp.assert_counted_once(DROP_NO_CONFIG, &frame);
        assert_eq!(dp.fdb_len(), 0);
    });
}
