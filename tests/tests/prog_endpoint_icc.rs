//! Inter-container communication off (Docker's `--icc=false`, config
//! without CONFIG_F_ICC): container-to-container unicast is dropped as
//! drop-icc-disabled; ARP, broadcast and traffic to the host still pass.
//!
//! IPv4 to any subnet address but the gateway is dropped whatever the
//! destination MAC: a live FDB hit, an unknown or expired MAC (which the
//! kernel bridge would flood or forward) and the gateway's MAC (which the
//! host would route back out of the bridge) alike, as Docker's
//! `-i docker0 -o docker0 -j DROP` rule does. The sender is still learned.
mod common;

use std::time::Duration;

use common::{frame::*, nat::*, packet_test::*};
use ebridge_common::{config::CONFIG_F_ICC, stats::*};

fn icc_off(net: &TestNet) -> Fixture {
    let mut cfg = default_config(net);
    cfg.flags &= !CONFIG_F_ICC;
    Fixture::with_config(net, &cfg)
}

#[test]
fn known_unicast_to_another_endpoint_is_dropped() {
    in_private_netns(|net| {
        let fx = icc_off(net);
        let frame = udp_frame(MAC_A, MAC_B, IP_A, IP_B);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_ACT_SHOT);
        run.assert_frame_unchanged(&frame);
        fx.dp.assert_counted_once(DROP_ICC, &frame);
        // The sender is legitimate: it is still learned.
        fx.dp.assert_learned(MAC_A, fx.a, &run);
    });
}

#[test]
fn known_unicast_arp_reply_to_another_endpoint_is_dropped() {
    in_private_netns(|net| {
        let fx = icc_off(net);
        let frame = arp_reply(MAC_A, IP_A, MAC_B, IP_B);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_ACT_SHOT);
        fx.dp.assert_counted_once(DROP_ICC, &frame);
    });
}

#[test]
fn broadcast_arp_still_passes() {
    in_private_netns(|net| {
        let fx = icc_off(net);
        let frame = arp_request(MAC_A, IP_A, GATEWAY_IP);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_NEXT);
        fx.dp.assert_counted_once(PASS_MULTICAST, &frame);
    });
}

#[test]
fn traffic_to_the_outside_still_passes() {
    in_private_netns(|net| {
        add_uplink();
        let fx = icc_off(net);
        // Masquerade is off in the fixture: the host routes it.
        let frame = udp_frame(MAC_A, BRIDGE_MAC, IP_A, REMOTE_IP);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&frame);
        fx.dp.assert_counted_once(PASS_ROUTED, &frame);
    });
}

#[test]
fn traffic_to_the_gateway_address_still_passes() {
    in_private_netns(|net| {
        let fx = icc_off(net);
        let frame = udp_frame(MAC_A, BRIDGE_MAC, IP_A, GATEWAY_IP);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&frame);
        fx.dp.assert_counted_once(PASS_TO_HOST, &frame);
    });
}

#[test]
fn subnet_broadcast_is_dropped() {
    in_private_netns(|net| {
        let fx = icc_off(net);
        // 172.17.255.255 reaches every container: it is ICC too.
        let frame = udp_frame(MAC_A, BROADCAST, IP_A, [172, 17, 255, 255]);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_ACT_SHOT);
        fx.dp.assert_counted_once(DROP_ICC, &frame);
        fx.dp.assert_learned(MAC_A, fx.a, &run);
    });
}

#[test]
fn icc_on_redirects_the_same_frame() {
    in_private_netns(|net| {
        let fx = Fixture::new(net);
        assert_ne!(fx.dp.config().flags & CONFIG_F_ICC, 0);
        let frame = udp_frame(MAC_A, MAC_B, IP_A, IP_B);

        fx.dp.run(fx.a, &frame).assert_verdict(TC_ACT_REDIRECT);
        fx.dp.assert_counted_once(FWD_REDIRECT_PEER, &frame);
    });
}

#[test]
fn ip_to_another_endpoint_with_unknown_mac_is_dropped() {
    in_private_netns(|net| {
        let mut fx = icc_off(net);
        // B has not sent anything yet (or its entry was aged out and removed).
        fx.dp.fdb_remove(MAC_B);
        let frame = udp_frame(MAC_A, MAC_B, IP_A, IP_B);

        let run = fx.dp.run(fx.a, &frame);

        assert_eq!(
            run.ret,
            TC_ACT_SHOT,
            "ICC is off but A's IPv4 packet to endpoint B ({}) was passed to the bridge: {}",
            std::net::Ipv4Addr::from(IP_B),
            fx.dp.stats_summary()
        );
        fx.dp.assert_counted_once(DROP_ICC, &frame);
    });
}

#[test]
fn ip_to_another_endpoint_with_expired_fdb_entry_is_dropped() {
    in_private_netns(|net| {
        let mut fx = icc_off(net);
        fx.dp.fdb_insert(
            MAC_B,
            learned_entry(
                fx.b,
                Fixture::aged(Duration::from_nanos(AGEING_NS + NS_PER_SEC)),
            ),
        );
        let frame = udp_frame(MAC_A, MAC_B, IP_A, IP_B);

        let run = fx.dp.run(fx.a, &frame);

        assert_eq!(
            run.ret,
            TC_ACT_SHOT,
            "ICC is off but A → B was passed to the bridge because B's entry is expired: {}",
            fx.dp.stats_summary()
        );
        fx.dp.assert_counted_once(DROP_ICC, &frame);
    });
}

#[test]
fn ip_to_another_endpoint_via_the_gateway_mac_is_dropped() {
    in_private_netns(|net| {
        let fx = icc_off(net);
        let frame = udp_frame(MAC_A, BRIDGE_MAC, IP_A, IP_B);

        let run = fx.dp.run(fx.a, &frame);

        assert_eq!(
            run.ret,
            TC_ACT_SHOT,
            "ICC is off but A → B addressed to the gateway MAC was passed to the host: {}",
            fx.dp.stats_summary()
        );
        fx.dp.assert_counted_once(DROP_ICC, &frame);
    });
}
