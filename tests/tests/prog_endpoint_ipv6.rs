//! IPv6 from a container, step by step through the endpoint program: the
//! fixed header and every extension header walked to the upper layer;
//! the source must be the endpoint's address or its link-local one;
//! Neighbor Discovery carries only the endpoint's own addresses and MAC;
//! router advertisements and redirects never leave a container; malformed
//! packets are dropped with a reason; unicast to another endpoint takes
//! the fast path and ICC off stops it.
mod common;

use common::{frame::*, frame6::*, packet_test::*};
use ebridge_common::{config::CONFIG_F_ICC, stats::*};

fn ll(mac: [u8; 6]) -> [u8; 16] {
    link_local(mac)
}

/// Runs `frame` from A and checks the verdict and the one reason counted.
fn expect(fx: &Fixture, frame: &[u8], verdict: u32, reason: u32) {
    let run = fx.dp.run(fx.a, frame);
    run.assert_verdict(verdict);
    fx.dp.assert_counted_once(reason, frame);
}

#[test]
fn unicast_from_the_endpoints_address_takes_the_fast_path() {
    in_private_netns(|net| {
        let fx = Fixture::with_ipv6(net, &ipv6_config(net));
        let frame = udp6_frame(MAC_A, MAC_B, IP6_A, IP6_B);
        let run = fx.dp.run(fx.a, &frame);
        run.assert_verdict(TC_ACT_REDIRECT);
        run.assert_frame_unchanged(&frame);
        fx.dp.assert_counted_once(FWD_REDIRECT_PEER, &frame);
        fx.dp.assert_learned(MAC_A, fx.a, &run);
    });
}

#[test]
fn unicast_from_the_link_local_address_takes_the_fast_path() {
    in_private_netns(|net| {
        let fx = Fixture::with_ipv6(net, &ipv6_config(net));
        let frame = udp6_frame(MAC_A, MAC_B, ll(MAC_A), ll(MAC_B));
        expect(&fx, &frame, TC_ACT_REDIRECT, FWD_REDIRECT_PEER);
    });
}

#[test]
fn to_the_gateway_goes_to_the_node() {
    in_private_netns(|net| {
        let fx = Fixture::with_ipv6(net, &ipv6_config(net));
        let frame = udp6_frame(MAC_A, BRIDGE_MAC, IP6_A, GATEWAY_IP6);
        expect(&fx, &frame, TC_NEXT, PASS_TO_HOST);
    });
}

#[test]
fn a_foreign_source_address_is_dropped() {
    in_private_netns(|net| {
        let fx = Fixture::with_ipv6(net, &ipv6_config(net));
        for src in [IP6_UNKNOWN, IP6_B, ll(MAC_B)] {
            let fx = Fixture::with_ipv6(&fx.net, &ipv6_config(&fx.net));
            let frame = udp6_frame(MAC_A, MAC_B, src, IP6_B);
            expect(&fx, &frame, TC_ACT_SHOT, DROP_SPOOFED_IP6);
            assert_eq!(fx.dp.fdb_get(MAC_A), None, "a dropped frame taught the FDB");
        }
    });
}

#[test]
fn a_foreign_mac_is_dropped() {
    in_private_netns(|net| {
        let fx = Fixture::with_ipv6(net, &ipv6_config(net));
        let frame = udp6_frame(MAC_UNKNOWN, MAC_B, IP6_A, IP6_B);
        expect(&fx, &frame, TC_ACT_SHOT, DROP_SPOOFED_MAC);
    });
}

#[test]
fn the_unspecified_source_only_for_duplicate_address_detection() {
    in_private_netns(|net| {
        let cfg = ipv6_config(net);
        // DAD: NS from :: to the solicited-node group, no SLLA option.
        let fx = Fixture::with_ipv6(net, &cfg);
        let dad = icmp6_frame(
            MAC_A,
            [0x33, 0x33, 0xff, 0, 0, 2],
            UNSPECIFIED,
            solicited_node(IP6_A),
            ND_NEIGHBOR_SOLICIT,
            &ns_body(IP6_A, &[]),
        );
        expect(&fx, &dad, TC_NEXT, PASS_MULTICAST);
        // From :: a link-layer option is forbidden (RFC 4861 7.1.1).
        let fx = Fixture::with_ipv6(net, &cfg);
        let with_slla = icmp6_frame(
            MAC_A,
            [0x33, 0x33, 0xff, 0, 0, 2],
            UNSPECIFIED,
            solicited_node(IP6_A),
            ND_NEIGHBOR_SOLICIT,
            &ns_body(IP6_A, &[lladdr_option(1, MAC_A)]),
        );
        expect(&fx, &with_slla, TC_ACT_SHOT, DROP_SPOOFED_ND);
        // Anything else from :: is spoofed.
        let fx = Fixture::with_ipv6(net, &cfg);
        let udp = udp6_frame(MAC_A, MAC_B, UNSPECIFIED, IP6_B);
        expect(&fx, &udp, TC_ACT_SHOT, DROP_SPOOFED_IP6);
        let fx = Fixture::with_ipv6(net, &cfg);
        let na = icmp6_frame(
            MAC_A,
            MAC_ALL_NODES,
            UNSPECIFIED,
            ALL_NODES,
            ND_NEIGHBOR_ADVERT,
            &na_body(IP6_A, &[]),
        );
        expect(&fx, &na, TC_ACT_SHOT, DROP_SPOOFED_IP6);
    });
}

#[test]
fn neighbor_solicitations_carry_the_endpoints_mac() {
    in_private_netns(|net| {
        let cfg = ipv6_config(net);
        let ns = |mac: [u8; 6]| {
            icmp6_frame(
                MAC_A,
                [0x33, 0x33, 0xff, 0, 0, 3],
                IP6_A,
                solicited_node(IP6_B),
                ND_NEIGHBOR_SOLICIT,
                &ns_body(IP6_B, &[lladdr_option(1, mac)]),
            )
        };
        let fx = Fixture::with_ipv6(net, &cfg);
        expect(&fx, &ns(MAC_A), TC_NEXT, PASS_MULTICAST);
        let fx = Fixture::with_ipv6(net, &cfg);
        expect(&fx, &ns(MAC_UNKNOWN), TC_ACT_SHOT, DROP_SPOOFED_ND);
    });
}

#[test]
fn neighbor_advertisements_speak_only_for_the_endpoint() {
    in_private_netns(|net| {
        let cfg = ipv6_config(net);
        let na = |target: [u8; 16], mac: [u8; 6]| {
            icmp6_frame(
                MAC_A,
                MAC_ALL_NODES,
                ll(MAC_A),
                ALL_NODES,
                ND_NEIGHBOR_ADVERT,
                &na_body(target, &[lladdr_option(2, mac)]),
            )
        };
        for (target, mac, verdict, reason) in [
            (IP6_A, MAC_A, TC_NEXT, PASS_MULTICAST),
            (ll(MAC_A), MAC_A, TC_NEXT, PASS_MULTICAST),
            // Claiming B's address: the classic neighbor cache poisoning.
            (IP6_B, MAC_A, TC_ACT_SHOT, DROP_SPOOFED_ND),
            (GATEWAY_IP6, MAC_A, TC_ACT_SHOT, DROP_SPOOFED_ND),
            // Its own address, somebody else's MAC.
            (IP6_A, MAC_B, TC_ACT_SHOT, DROP_SPOOFED_ND),
        ] {
            let fx = Fixture::with_ipv6(net, &cfg);
            expect(&fx, &na(target, mac), verdict, reason);
        }
    });
}

#[test]
fn router_advertisements_and_redirects_never_leave_a_container() {
    in_private_netns(|net| {
        let cfg = ipv6_config(net);
        let fx = Fixture::with_ipv6(net, &cfg);
        // Router lifetime 1800 s, then a prefix that would renumber others.
        let mut ra = vec![64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0];
        ra.extend_from_slice(&[
            3, 4, 64, 0xc0, 0, 0, 0x0e, 0x10, 0, 0, 0x0e, 0x10, 0, 0, 0, 0,
        ]);
        ra.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let frame = icmp6_frame(
            MAC_A,
            MAC_ALL_NODES,
            ll(MAC_A),
            ALL_NODES,
            ND_ROUTER_ADVERT,
            &ra,
        );
        expect(&fx, &frame, TC_ACT_SHOT, DROP_ROUTER_ADVERT);

        let fx = Fixture::with_ipv6(net, &cfg);
        let mut redirect = vec![0; 4];
        redirect.extend_from_slice(&ll(MAC_A));
        redirect.extend_from_slice(&IP6_B);
        let frame = icmp6_frame(MAC_A, MAC_B, ll(MAC_A), ll(MAC_B), ND_REDIRECT, &redirect);
        expect(&fx, &frame, TC_ACT_SHOT, DROP_ICMP6_REDIRECT);

        // Router solicitations are what a host sends; they go.
        let fx = Fixture::with_ipv6(net, &cfg);
        let mut rs = vec![0; 4];
        rs.extend_from_slice(&lladdr_option(1, MAC_A));
        let frame = icmp6_frame(
            MAC_A,
            [0x33, 0x33, 0, 0, 0, 2],
            ll(MAC_A),
            ALL_ROUTERS,
            ND_ROUTER_SOLICIT,
            &rs,
        );
        expect(&fx, &frame, TC_NEXT, PASS_MULTICAST);
    });
}

/// Every extension header in one chain, ending in `next`'s `payload`.
fn chain(next: u8, payload: &[u8]) -> (u8, Vec<u8>) {
    let mut p = Vec::new();
    p.extend(ext_header(NEXTHDR_DEST, 0)); // hop-by-hop → dest
    p.extend(ext_header(NEXTHDR_ROUTING, 1)); // dest → routing (16 bytes)
    p.extend(ext_header(NEXTHDR_FRAGMENT, 0)); // routing → fragment
    p.extend(frag_header(NEXTHDR_AUTH, 0, false, 7)); // atomic fragment
    p.extend(auth_header(next)); // AH → upper layer
    p.extend_from_slice(payload);
    (NEXTHDR_HOP, p)
}

#[test]
fn the_extension_header_chain_is_walked_to_the_upper_layer() {
    in_private_netns(|net| {
        let cfg = ipv6_config(net);
        // A forged advertisement behind every kind of extension header is
        // still found and dropped...
        let fx = Fixture::with_ipv6(net, &cfg);
        let na = icmp6(
            ll(MAC_A),
            ALL_NODES,
            ND_NEIGHBOR_ADVERT,
            0,
            &na_body(IP6_B, &[]),
        );
        let (first, payload) = chain(IPPROTO_ICMPV6, &na);
        let frame = frame6(MAC_A, MAC_ALL_NODES, ll(MAC_A), ALL_NODES, first, &payload);
        expect(&fx, &frame, TC_ACT_SHOT, DROP_SPOOFED_ND);
        // ...while UDP behind the same chain takes the fast path.
        let fx = Fixture::with_ipv6(net, &cfg);
        let udp = udp6(IP6_A, IP6_B, 40000, 53, b"behind a chain");
        let (first, payload) = chain(IPPROTO_UDP, &udp);
        let frame = frame6(MAC_A, MAC_B, IP6_A, IP6_B, first, &payload);
        expect(&fx, &frame, TC_ACT_REDIRECT, FWD_REDIRECT_PEER);
    });
}

#[test]
fn a_later_fragment_carries_no_header_to_check() {
    in_private_netns(|net| {
        let fx = Fixture::with_ipv6(net, &ipv6_config(net));
        // Offset 8 (64 bytes) of an ICMPv6 message: its bytes are data.
        let mut p = frag_header(IPPROTO_ICMPV6, 8, false, 9);
        p.extend_from_slice(&[ND_NEIGHBOR_ADVERT, 0, 0, 0, 0, 0, 0, 0]);
        let frame = frame6(MAC_A, MAC_B, IP6_A, IP6_B, NEXTHDR_FRAGMENT, &p);
        expect(&fx, &frame, TC_ACT_REDIRECT, FWD_REDIRECT_PEER);
    });
}

#[test]
fn malformed_ipv6_is_dropped_with_a_reason() {
    in_private_netns(|net| {
        let cfg = ipv6_config(net);
        let good = udp6_frame(MAC_A, MAC_B, IP6_A, IP6_B);
        let payload_len = |f: &mut Vec<u8>, len: u16| {
            f[ETH_HLEN + 4..ETH_HLEN + 6].copy_from_slice(&len.to_be_bytes())
        };

        let mut cases: Vec<(&str, Vec<u8>, u32)> = Vec::new();
        let mut v = good.clone();
        v[ETH_HLEN] = 0x40;
        cases.push(("version 4 in an IPv6 frame", v, DROP_MALFORMED_IP6));
        let mut v = good.clone();
        payload_len(&mut v, 1000);
        cases.push(("payload length past the frame", v, DROP_MALFORMED_IP6));
        let mut v = good.clone();
        payload_len(&mut v, 0);
        cases.push(("payload length zero (jumbogram)", v, DROP_MALFORMED_IP6));
        // A destination options header claiming 2 KiB.
        let mut p = ext_header(IPPROTO_UDP, 0);
        p[1] = 255;
        p.extend(udp6(IP6_A, IP6_B, 1, 2, b"x"));
        cases.push((
            "an extension header past the payload",
            frame6(MAC_A, MAC_B, IP6_A, IP6_B, NEXTHDR_DEST, &p),
            DROP_MALFORMED_IP6,
        ));
        // Nine destination options headers in a row.
        let mut p = Vec::new();
        for i in 0..9 {
            p.extend(ext_header(
                if i < 8 { NEXTHDR_DEST } else { IPPROTO_UDP },
                0,
            ));
        }
        p.extend(udp6(IP6_A, IP6_B, 1, 2, b"x"));
        cases.push((
            "more extension headers than walked",
            frame6(MAC_A, MAC_B, IP6_A, IP6_B, NEXTHDR_DEST, &p),
            DROP_MALFORMED_IP6,
        ));
        // A chain cut short: the header it announces is not there.
        let p = ext_header(NEXTHDR_DEST, 0);
        let mut f = frame6(MAC_A, MAC_B, IP6_A, IP6_B, NEXTHDR_DEST, &p);
        payload_len(&mut f, 8);
        cases.push(("a chain ending in a missing header", f, DROP_MALFORMED_IP6));
        // ND option of length zero (RFC 4861: must be discarded).
        let mut body = ns_body(IP6_B, &[]);
        body.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        cases.push((
            "an ND option of length zero",
            icmp6_frame(MAC_A, MAC_B, IP6_A, IP6_B, ND_NEIGHBOR_SOLICIT, &body),
            DROP_MALFORMED_IP6,
        ));
        // Nine padding options, then a forged link-layer one.
        let mut opts: Vec<Vec<u8>> = (0..9).map(|_| vec![99, 1, 0, 0, 0, 0, 0, 0]).collect();
        opts.push(lladdr_option(1, MAC_UNKNOWN));
        cases.push((
            "a link-layer option hidden behind many others",
            icmp6_frame(
                MAC_A,
                MAC_B,
                IP6_A,
                IP6_B,
                ND_NEIGHBOR_SOLICIT,
                &ns_body(IP6_B, &opts),
            ),
            DROP_MALFORMED_IP6,
        ));

        for (what, frame, reason) in cases {
            let fx = Fixture::with_ipv6(net, &cfg);
            let run = fx.dp.run(fx.a, &frame);
            assert_eq!(run.ret, TC_ACT_SHOT, "{what}: not dropped");
            fx.dp.assert_counted_once(reason, &frame);
        }
    });
}

#[test]
fn a_truncated_fixed_header_is_dropped_or_refused_by_the_kernel() {
    in_private_netns(|net| {
        let fx = Fixture::with_ipv6(net, &ipv6_config(net));
        let full = udp6_frame(MAC_A, MAC_B, IP6_A, IP6_B);
        let frame = &full[..ETH_HLEN + IPV6_HLEN - 1];
        match fx.dp.try_run(Some(&SkBuff::on(fx.a)), frame) {
            Ok(run) => {
                run.assert_verdict(TC_ACT_SHOT);
                fx.dp.assert_counted_once(DROP_TRUNCATED, frame);
            }
            Err(e) => {
                // 6.18 refuses an ETH_P_IPV6 test frame shorter than 14 + 40
                // (prog_endpoint_malformed): the program never runs.
                assert_eq!(errno(&e), Some(libc::EINVAL), "unexpected error {e:?}");
                fx.dp.assert_counters(&[]);
            }
        }
    });
}

#[test]
fn icc_off_keeps_containers_apart_over_ipv6() {
    in_private_netns(|net| {
        let cfg = ebridge_common::config::BridgeConfig {
            flags: ipv6_config(net).flags & !CONFIG_F_ICC,
            ..ipv6_config(net)
        };
        for (dst_mac, dst, verdict, reason) in [
            (MAC_B, IP6_B, TC_ACT_SHOT, DROP_ICC),
            (MAC_B, ll(MAC_B), TC_ACT_SHOT, DROP_ICC),
            // Through the gateway's MAC to B's address: still B.
            (BRIDGE_MAC, IP6_B, TC_ACT_SHOT, DROP_ICC),
            (BRIDGE_MAC, GATEWAY_IP6, TC_NEXT, PASS_TO_HOST),
            (BRIDGE_MAC, ll(BRIDGE_MAC), TC_NEXT, PASS_TO_HOST),
        ] {
            let fx = Fixture::with_ipv6(net, &cfg);
            let frame = udp6_frame(MAC_A, dst_mac, IP6_A, dst);
            expect(&fx, &frame, verdict, reason);
        }
    });
}
