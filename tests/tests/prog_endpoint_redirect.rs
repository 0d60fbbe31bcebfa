//! Known unicast between two endpoints takes the fast path:
//! `bpf_redirect_peer` into the destination container (TC_ACT_REDIRECT),
//! counted as redirect-peer, the frame untouched and the sender learned.
mod common;

use common::{frame::*, packet_test::*};
use ebridge_common::stats::FWD_REDIRECT_PEER;

#[test]
fn udp_to_known_endpoint_is_redirected_to_its_peer() {
    in_private_netns(|net| {
        let fx = Fixture::new(net);
        let frame = udp_frame(MAC_A, MAC_B, IP_A, IP_B);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_ACT_REDIRECT);
        run.assert_frame_unchanged(&frame);
        fx.dp.assert_counted_once(FWD_REDIRECT_PEER, &frame);
        fx.dp.assert_learned(MAC_A, fx.a, &run);
        // A's frame leaves B's and the bridge's entries alone.
        fx.assert_fdb_holds_only(&[MAC_A]);
    });
}

#[test]
fn ping_to_known_endpoint_is_redirected_both_ways() {
    in_private_netns(|net| {
        let fx = Fixture::new(net);
        let request = icmp_frame(MAC_A, MAC_B, IP_A, IP_B);
        let reply = icmp_frame(MAC_B, MAC_A, IP_B, IP_A);

        let first = fx.dp.run(fx.a, &request);
        first.assert_verdict(TC_ACT_REDIRECT);
        first.assert_frame_unchanged(&request);
        fx.dp.assert_learned(MAC_A, fx.a, &first);

        // B answers: A was learned from the request, so the reply is a
        // known unicast too.
        let second = fx.dp.run(fx.b, &reply);
        second.assert_verdict(TC_ACT_REDIRECT);
        second.assert_frame_unchanged(&reply);

        fx.dp
            .assert_counters(&[(FWD_REDIRECT_PEER, 2, (request.len() + reply.len()) as u64)]);
    });
}

#[test]
fn unicast_arp_reply_to_known_endpoint_is_redirected() {
    in_private_netns(|net| {
        let fx = Fixture::new(net);
        let frame = arp_reply(MAC_A, IP_A, MAC_B, IP_B);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_ACT_REDIRECT);
        run.assert_frame_unchanged(&frame);
        fx.dp.assert_counted_once(FWD_REDIRECT_PEER, &frame);
        fx.dp.assert_learned(MAC_A, fx.a, &run);
    });
}

#[test]
fn bytes_counter_counts_the_whole_frame() {
    in_private_netns(|net| {
        let fx = Fixture::new(net);
        // A full-size frame: 14 + 1500.
        let l4 = udp(IP_A, IP_B, 40000, 53, &[0x5a; 1500 - 20 - 8]);
        let frame = ethernet(
            MAC_B,
            MAC_A,
            ETH_P_IPV4,
            &ipv4(IP_A, IP_B, IPPROTO_UDP, &l4),
        );
        assert_eq!(frame.len(), 1514);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_ACT_REDIRECT);
        run.assert_frame_unchanged(&frame);
        fx.dp.assert_counters(&[(FWD_REDIRECT_PEER, 1, 1514)]);
    });
}
