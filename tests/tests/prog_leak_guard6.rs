//! The uplink's TC egress (`uplink_egress`, `leak_guard6`) for IPv6:
//! while IPv6 masquerade is on, nothing with a source address in the
//! containers' IPv6 subnet leaves the uplink, whatever path got it there
//! (kernel forwarding included) — what ip6tables' MASQUERADE rule
//! guaranteed. Everything else leaves untouched and uncounted, but for
//! the node's own flows from the uplink's IPv6 address, which are held in
//! `nat6` (`prog_node_flow6.rs`); with `--ipv6-masquerade off` (routed)
//! containers' addresses are meant to leave.
mod common;

use common::{frame::*, frame6::*, nat::*, nat6::*, packet_test::*};
use ebridge_common::{
    config::{CONFIG_F_IPV6_MASQUERADE, CONFIG_F_MASQUERADE},
    stats::*,
};

/// UDP from `src` leaving towards the next hop.
fn leaving(src: [u8; 16]) -> Vec<u8> {
    let l4 = udp6(src, REMOTE_IP6, 40000, 53, b"leaving");
    outbound6(src, REMOTE_IP6, IPPROTO_UDP, &l4)
}

/// fd00::ffff:ffff:ffff:ffff, the subnet's last address.
const SUBNET_LAST: [u8; 16] = [
    0xfd, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
];

#[test]
fn container_ipv6_sources_are_dropped() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let mut frames: Vec<Vec<u8>> = [IP6_A, IP6_B, IP6_UNKNOWN, GATEWAY_IP6, SUBNET_LAST]
            .into_iter()
            .map(leaving)
            .collect();
        // Other protocols, and a later fragment (no transport header).
        frames.push(outbound6(
            IP6_A,
            REMOTE_IP6,
            IPPROTO_TCP,
            &tcp6(IP6_A, REMOTE_IP6, 12345, 443, TCP_SYN, 1, 0, &[]),
        ));
        frames.push(outbound6(
            IP6_A,
            REMOTE_IP6,
            IPPROTO_ICMPV6,
            &echo6(IP6_A, REMOTE_IP6, ICMPV6_ECHO_REQUEST, 7, 1, b"ping"),
        ));
        let mut later = frag_header(IPPROTO_UDP, 4, false, 77);
        later.extend_from_slice(&[0x42; 40]);
        frames.push(outbound6(IP6_A, REMOTE_IP6, NEXTHDR_FRAGMENT, &later));
        frames.push(outbound6(IP6_A, REMOTE_IP6, 47, &[0; 8]));

        let mut bytes = 0;
        for (i, frame) in frames.iter().enumerate() {
            // Unmarked (the kernel forwarded it) or even with this
            // bridge's mark: a container address never leaves.
            let mark = if i % 2 == 0 { 0 } else { lab.own_mark() };
            let run = lab.uplink_sends_marked(frame, mark);
            assert_eq!(
                run.ret,
                TC_ACT_SHOT,
                "frame {i} left: {}",
                lab.dp().stats_summary()
            );
            run.assert_frame_unchanged(frame);
            bytes += frame.len() as u64;
        }

        lab.dp()
            .assert_counters(&[(DROP_LEAK, frames.len() as u64, bytes)]);
    });
}

#[test]
fn other_ipv6_sources_leave_untouched() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        // Just past the /64, and just before it.
        let next_net = [0xfd, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2];
        let prev_net = [
            0xfc, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 2,
        ];
        let frames = [
            leaving(next_net),
            leaving(prev_net),
            leaving(link_local(UPLINK_MAC)),
            // The container's link-local address never routes anywhere.
            leaving(link_local(MAC_A)),
            // Neighbour discovery from the uplink.
            outbound6(
                link_local(UPLINK_MAC),
                solicited_node(NEXT_HOP_IP6),
                IPPROTO_ICMPV6,
                &icmp6(
                    link_local(UPLINK_MAC),
                    solicited_node(NEXT_HOP_IP6),
                    ND_NEIGHBOR_SOLICIT,
                    0,
                    &ns_body(NEXT_HOP_IP6, &[lladdr_option(1, UPLINK_MAC)]),
                ),
            ),
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
        let lab = NatLab6::new(net);
        let (udp, _) = lab.open_flow(lab.fx.a, &udp6_out(IP6_A, 40000, REMOTE_IP6, 53, MAC_A));
        let (ping, _) = lab.open_flow(lab.fx.b, &ping6_out(IP6_B, REMOTE_IP6, 9, MAC_B));
        let before = lab.dp().stats();

        for sent in [&udp, &ping] {
            let run = lab.uplink_sends_marked(sent, lab.own_mark());
            run.assert_verdict(TC_NEXT);
            run.assert_frame_unchanged(sent);
        }

        // Neither a leak nor anything else: the egress program counts
        // nothing.
        assert_eq!(lab.dp().stats(), before);
    });
}

#[test]
fn ipv6_masquerade_off_lets_container_sources_out() {
    in_private_netns(|net| {
        // Routed mode: container addresses are meant to be seen outside.
        let lab = NatLab6::with(net, |cfg| cfg.flags &= !CONFIG_F_IPV6_MASQUERADE);
        let frame = leaving(IP6_A);

        let run = lab.uplink_sends(&frame);

        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&frame);
        lab.dp().assert_counters(&[]);
        // IPv4 is still masqueraded, and still guarded.
        let v4 = {
            let l4 = udp(IP_A, REMOTE_IP, 40000, 53, b"v4");
            ethernet(
                NEXT_HOP_MAC,
                UPLINK_MAC,
                ETH_P_IPV4,
                &ipv4(IP_A, REMOTE_IP, IPPROTO_UDP, &l4),
            )
        };
        lab.uplink_sends(&v4).assert_verdict(TC_ACT_SHOT);
        lab.dp().assert_counted_once(DROP_LEAK, &v4);
    });
}

#[test]
fn ipv6_is_guarded_when_only_ipv4_masquerade_is_off() {
    in_private_netns(|net| {
        let lab = NatLab6::with(net, |cfg| cfg.flags &= !CONFIG_F_MASQUERADE);
        let v6 = leaving(IP6_A);
        let v4 = {
            let l4 = udp(IP_A, REMOTE_IP, 40000, 53, b"v4");
            ethernet(
                NEXT_HOP_MAC,
                UPLINK_MAC,
                ETH_P_IPV4,
                &ipv4(IP_A, REMOTE_IP, IPPROTO_UDP, &l4),
            )
        };

        let run6 = lab.uplink_sends(&v6);
        let run4 = lab.uplink_sends(&v4);

        run6.assert_verdict(TC_ACT_SHOT);
        run4.assert_verdict(TC_NEXT);
        run4.assert_frame_unchanged(&v4);
        lab.dp().assert_counted_once(DROP_LEAK, &v6);
    });
}
