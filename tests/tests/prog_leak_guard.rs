//! The uplink's TC egress (`uplink_egress`): while masquerade is on,
//! nothing with a container source address leaves the uplink untranslated,
//! whatever path got it there (kernel forwarding included) — the guarantee
//! iptables' MASQUERADE rule gave. Everything else leaves untouched and
//! uncounted, but for the node's own flows from the uplink address
//! (`prog_node_flow.rs`).
mod common;

use common::{frame::*, nat::*, packet_test::*};
use ebridge_common::{config::CONFIG_F_MASQUERADE, stats::*};

/// A frame leaving the uplink towards the next hop.
fn outbound(src: [u8; 4]) -> Vec<u8> {
    let l4 = udp(src, REMOTE_IP, 40000, 53, b"leaving");
    ethernet(
        NEXT_HOP_MAC,
        UPLINK_MAC,
        ETH_P_IPV4,
        &ipv4(src, REMOTE_IP, IPPROTO_UDP, &l4),
    )
}

#[test]
fn container_source_is_dropped() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        // Any address of the subnet: endpoints, unused ones, the gateway.
        let frames: Vec<Vec<u8>> = [IP_A, IP_B, IP_UNKNOWN, GATEWAY_IP, [172, 17, 255, 255]]
            .into_iter()
            .map(outbound)
            .collect();

        let mut bytes = 0;
        for frame in &frames {
            let run = lab.uplink_sends(frame);
            run.assert_verdict(TC_ACT_SHOT);
            run.assert_frame_unchanged(frame);
            bytes += frame.len() as u64;
        }

        lab.dp()
            .assert_counters(&[(DROP_LEAK, frames.len() as u64, bytes)]);
    });
}

#[test]
fn other_sources_leave_untouched() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let frames = [
            // Just outside the /16.
            outbound([172, 18, 0, 2]),
            outbound([172, 16, 255, 254]),
            arp_request(UPLINK_MAC, UPLINK_IP, NEXT_HOP_IP),
            // ARP about a container address is not IPv4: not the guard's.
            arp_request(UPLINK_MAC, IP_A, NEXT_HOP_IP),
            ipv6_frame(UPLINK_MAC, NEXT_HOP_MAC, [0xfd; 16], [0xfe; 16]),
        ];

        for frame in &frames {
            let run = lab.uplink_sends(frame);
            run.assert_verdict(TC_NEXT);
            run.assert_frame_unchanged(frame);
        }

        lab.dp().assert_counters(&[]);
    });
}

#[test]
fn masqueraded_output_passes_the_guard() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let (sent, _) = lab.open_flow(lab.fx.a, &udp_out(IP_A, 40000, REMOTE_IP, 53, MAC_A));
        let before = lab.dp().stats();

        let run = lab.uplink_sends_marked(&sent, lab.own_mark());

        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&sent);
        // Neither a leak nor a node flow: the egress program counts nothing.
        assert_eq!(lab.dp().stats(), before);
    });
}

#[test]
fn masquerade_off_lets_container_sources_out() {
    in_private_netns(|net| {
        let lab = NatLab::with(net, |cfg| cfg.flags &= !CONFIG_F_MASQUERADE);
        let frame = outbound(IP_A);

        let run = lab.uplink_sends(&frame);

        // Routed mode: container addresses are meant to be seen outside.
        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&frame);
        lab.dp().assert_counters(&[]);
    });
}

#[test]
fn unwritten_config_lets_everything_out() {
    in_private_netns(|net| {
        let mut lab = NatLab::new(net);
        lab.fx.dp.set_config(&Default::default());
        let frame = outbound(IP_A);

        let run = lab.uplink_sends(&frame);

        // No masquerade flag, no subnet: nothing to guard (the endpoint
        // program fails closed instead).
        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&frame);
        lab.dp().assert_counters(&[]);
    });
}
