//! IPv6 fragments through the NAT (issue 11, `frag6.rs`): only a
//! datagram's first fragment carries the ports its flow is found by; its
//! translation is remembered in `frags6` under the fragment header's
//! identification (with source, destination, protocol and direction), and
//! the fragments after it get the same address rewrite, out and in. A
//! later fragment whose first was never seen must not leave with a
//! container's address (dropped, `drop-frag-no-first`); on the uplink it
//! may be the node's own and goes to the host. Checksums are checked over
//! the reassembled datagram with the IPv6 pseudo-header.
mod common;

use common::{frame::*, frame6::*, nat::*, nat6::*, packet_test::*};
use ebridge_common::{
    config::CONFIG_F_IPV6_MASQUERADE,
    nat::{Frag6Entry, Frag6Key, DIR_ORIGINAL, DIR_REPLY},
    stats::*,
};

const ID: u32 = 0x1234_5678;

/// A 72-byte UDP datagram `src:sport → dst:dport` as two fragments (32 +
/// 40 bytes) with identification `id`: (first, later) IPv6 packets.
fn udp_fragments(
    (src, sport): ([u8; 16], u16),
    (dst, dport): ([u8; 16], u16),
    id: u32,
) -> (Vec<u8>, Vec<u8>) {
    let payload: Vec<u8> = (0..64u8).collect();
    let l4 = udp6(src, dst, sport, dport, &payload);
    let (first, later) = fragments6(IPPROTO_UDP, &l4, 32, id);
    (
        ipv6(src, dst, NEXTHDR_FRAGMENT, &first),
        ipv6(src, dst, NEXTHDR_FRAGMENT, &later),
    )
}

/// The frags6 entry whose key is (`saddr`, `daddr`, `id`, `proto`, `dir`).
fn frag_entry(
    lab: &NatLab6,
    (saddr, daddr): ([u8; 16], [u8; 16]),
    id: u32,
    proto: u8,
    dir: u8,
) -> Frag6Entry {
    let want = Frag6Key {
        saddr,
        daddr,
        // As the fragment header carries it.
        id: u32::from_ne_bytes(id.to_be_bytes()),
        proto,
        dir,
        _pad: [0; 2],
    };
    let frags = lab.frags6_entries();
    frags
        .iter()
        .find(|(k, _)| *k == want)
        .map(|(_, e)| *e)
        .unwrap_or_else(|| panic!("no frags6 entry {want:?}; frags6: {frags:#?}"))
}

/// Both output fragments of a datagram: (first, later) with their
/// fragment headers as sent, the rest of the IPv6 header as `check` says.
fn assert_fragments(first: &Pkt6, later: &Pkt6, id: u32, check: impl Fn(&Ip6, &str)) {
    for (o, what) in [(first, "first fragment"), (later, "later fragment")] {
        check(&o.ip(), what);
    }
    assert_eq!(
        first.ip().frag(),
        Some(Frag6 {
            offset: 0,
            more: true,
            id
        })
    );
    assert_eq!(
        later.ip().frag(),
        Some(Frag6 {
            offset: 32,
            more: false,
            id
        })
    );
}

#[test]
fn first_and_later_fragment_of_a_datagram_are_both_masqueraded() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let (first, later) = udp_fragments((IP6_A, 5353), (REMOTE_IP6, 53), ID);
        let (first, later) = (to_gateway6(MAC_A, &first), to_gateway6(MAC_A, &later));

        let r1 = lab.a_sends(&first);

        r1.assert_verdict(TC_ACT_REDIRECT);
        let entry = frag_entry(&lab, (IP6_A, REMOTE_IP6), ID, IPPROTO_UDP, DIR_ORIGINAL);
        assert_eq!(
            entry.addr, UPLINK_IP6,
            "later fragments get the uplink's address"
        );
        assert_eq!(lab.frags6_entries().len(), 1);

        let r2 = lab.a_sends(&later);

        r2.assert_verdict(TC_ACT_REDIRECT);
        let (o1, o2) = (Pkt6(&r1.out), Pkt6(&r2.out));
        assert_fragments(&o1, &o2, ID, |ip, what| {
            assert_eq!(ip.saddr(), UPLINK_IP6, "{what}: source");
            assert_eq!(ip.daddr(), REMOTE_IP6, "{what}: destination");
            assert_eq!(ip.hop_limit(), 63, "{what}: hop limit");
        });
        for (o, what) in [(o1, "first"), (o2, "later")] {
            assert_eq!(o.dst_mac(), NEXT_HOP_MAC, "{what}: destination MAC");
            assert_eq!(o.src_mac(), UPLINK_MAC, "{what}: source MAC");
        }
        let port = o1.ip().sport();
        assert!(in_nat_range(port), "5353 is below the range: {port}");
        // The later fragment's bytes are data, never a port.
        assert_eq!(o2.ip().l4(), Pkt6(&later).ip().l4());
        // UDP's checksum spans both fragments.
        let whole = [o1.ip().l4(), o2.ip().l4()].concat();
        assert_l4_checksum6(
            "reassembled datagram",
            IPPROTO_UDP,
            UPLINK_IP6,
            REMOTE_IP6,
            &whole,
        );
        assert_eq!(whole[8..], (0..64u8).collect::<Vec<_>>());
        lab.dp()
            .assert_counters(&[(FWD_SNAT, 2, (first.len() + later.len()) as u64)]);
        let (orig, _) = lab.assert_flow6(
            IPPROTO_UDP,
            (IP6_A, 5353),
            (REMOTE_IP6, 53),
            port,
            (lab.fx.a, MAC_A),
        );
        assert_eq!(orig.packets, 1, "only the first fragment is a flow packet");
        // Both leave the uplink past the leak guard.
        for out in [&r1.out, &r2.out] {
            lab.uplink_sends_marked(out, lab.own_mark())
                .assert_verdict(TC_NEXT);
        }
    });
}

#[test]
fn later_fragment_without_its_first_is_dropped() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let (_, later) = udp_fragments((IP6_A, 40000), (REMOTE_IP6, 53), ID);
        let later = to_gateway6(MAC_A, &later);

        let run = lab.a_sends(&later);

        run.assert_verdict(TC_ACT_SHOT);
        run.assert_frame_unchanged(&later);
        lab.dp().assert_counted_once(DROP_FRAG_NO_FIRST, &later);
        assert!(lab.frags6_entries().is_empty());
        lab.assert_nat6_len(0);
    });
}

#[test]
fn later_fragments_of_other_datagrams_are_not_matched() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let (first, _) = udp_fragments((IP6_A, 5353), (REMOTE_IP6, 53), ID);
        lab.a_sends(&to_gateway6(MAC_A, &first))
            .assert_verdict(TC_ACT_REDIRECT);
        let snat = lab.dp().stats()[FWD_SNAT as usize];
        // Another identification; another destination; another protocol
        // (the same bytes as ICMPv6); and B's with A's identification.
        let (_, other_id) = udp_fragments((IP6_A, 5353), (REMOTE_IP6, 53), ID + 1);
        let (_, other_dst) = udp_fragments((IP6_A, 5353), (ROUTER_IP6, 53), ID);
        let mut other_proto = udp_fragments((IP6_A, 5353), (REMOTE_IP6, 53), ID).1;
        other_proto[40] = IPPROTO_ICMPV6;
        let (_, from_b) = udp_fragments((IP6_B, 5353), (REMOTE_IP6, 53), ID);
        let frames = [
            (lab.fx.a, to_gateway6(MAC_A, &other_id)),
            (lab.fx.a, to_gateway6(MAC_A, &other_dst)),
            (lab.fx.a, to_gateway6(MAC_A, &other_proto)),
            (lab.fx.b, to_gateway6(MAC_B, &from_b)),
        ];

        let mut bytes = 0;
        for (i, (from, frame)) in frames.iter().enumerate() {
            let run = lab.dp().run(*from, frame);
            assert_eq!(
                run.ret,
                TC_ACT_SHOT,
                "frame {i}: {}",
                lab.dp().stats_summary()
            );
            run.assert_frame_unchanged(frame);
            bytes += frame.len() as u64;
        }

        lab.dp().assert_counters(&[
            (FWD_SNAT, snat.packets, snat.bytes),
            (DROP_FRAG_NO_FIRST, frames.len() as u64, bytes),
        ]);
        assert_eq!(lab.frags6_entries().len(), 1);
    });
}

#[test]
fn fragmented_datagram_of_a_known_flow_keeps_its_nat_port() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let (_, port) = lab.open_flow(lab.fx.a, &udp6_out(IP6_A, 5353, REMOTE_IP6, 53, MAC_A));
        let (first, later) = udp_fragments((IP6_A, 5353), (REMOTE_IP6, 53), ID);

        let r1 = lab.a_sends(&to_gateway6(MAC_A, &first));
        let r2 = lab.a_sends(&to_gateway6(MAC_A, &later));

        r1.assert_verdict(TC_ACT_REDIRECT);
        r2.assert_verdict(TC_ACT_REDIRECT);
        let (o1, o2) = (Pkt6(&r1.out), Pkt6(&r2.out));
        assert_eq!(o1.ip().sport(), port, "the flow's NAT port");
        assert_fragments(&o1, &o2, ID, |ip, what| {
            assert_eq!(ip.saddr(), UPLINK_IP6, "{what}: source");
        });
        let whole = [o1.ip().l4(), o2.ip().l4()].concat();
        assert_l4_checksum6("reassembled", IPPROTO_UDP, UPLINK_IP6, REMOTE_IP6, &whole);
        let entry = frag_entry(&lab, (IP6_A, REMOTE_IP6), ID, IPPROTO_UDP, DIR_ORIGINAL);
        assert_eq!(entry.addr, UPLINK_IP6);
        lab.assert_nat6_len(2);
        assert_eq!(lab.dp().stats()[FWD_SNAT as usize].packets, 3);
    });
}

#[test]
fn fragmented_reply_is_delivered_fragment_by_fragment() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let (_, port) = lab.open_flow(lab.fx.a, &udp6_out(IP6_A, 5353, REMOTE_IP6, 53, MAC_A));
        let snat = lab.dp().stats()[FWD_SNAT as usize];
        let (first, later) = udp_fragments((REMOTE_IP6, 53), (UPLINK_IP6, port), ID);
        let wire = |p: &[u8]| ethernet(UPLINK_MAC, NEXT_HOP_MAC, ETH_P_IPV6, p);
        let (first, later) = (wire(&first), wire(&later));

        let r1 = lab.uplink_receives(&first);

        r1.assert_verdict(TC_ACT_REDIRECT);
        let entry = frag_entry(&lab, (REMOTE_IP6, UPLINK_IP6), ID, IPPROTO_UDP, DIR_REPLY);
        assert_eq!(
            (entry.addr, entry.ifindex, entry.mac),
            (IP6_A, lab.fx.a, MAC_A),
            "later fragments go where the first went"
        );

        let r2 = lab.uplink_receives(&later);

        r2.assert_verdict(TC_ACT_REDIRECT);
        let (o1, o2) = (Pkt6(&r1.out), Pkt6(&r2.out));
        assert_fragments(&o1, &o2, ID, |ip, what| {
            assert_eq!(ip.saddr(), REMOTE_IP6, "{what}: source");
            assert_eq!(ip.daddr(), IP6_A, "{what}: destination");
            assert_eq!(ip.hop_limit(), 63, "{what}: hop limit");
        });
        for (o, what) in [(o1, "first"), (o2, "later")] {
            assert_eq!(o.dst_mac(), MAC_A, "{what}: destination MAC");
            assert_eq!(o.src_mac(), BRIDGE_MAC, "{what}: source MAC");
        }
        assert_eq!((o1.ip().sport(), o1.ip().dport()), (53, 5353));
        assert_eq!(o2.ip().l4(), Pkt6(&later).ip().l4(), "data changed");
        let whole = [o1.ip().l4(), o2.ip().l4()].concat();
        assert_l4_checksum6("reassembled reply", IPPROTO_UDP, REMOTE_IP6, IP6_A, &whole);
        lab.dp().assert_counters(&[
            (FWD_SNAT, snat.packets, snat.bytes),
            (FWD_REVNAT, 2, (first.len() + later.len()) as u64),
        ]);
        let (_, back) = lab.assert_flow6(
            IPPROTO_UDP,
            (IP6_A, 5353),
            (REMOTE_IP6, 53),
            port,
            (lab.fx.a, MAC_A),
        );
        assert_eq!(back.packets, 1, "only the first fragment is a flow packet");
    });
}

#[test]
fn later_reply_fragment_without_its_first_passes_to_the_host() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let (_, port) = lab.open_flow(lab.fx.a, &udp6_out(IP6_A, 5353, REMOTE_IP6, 53, MAC_A));
        let snat = lab.dp().stats()[FWD_SNAT as usize];
        let (_, later) = udp_fragments((REMOTE_IP6, 53), (UPLINK_IP6, port), ID);
        let later = ethernet(UPLINK_MAC, NEXT_HOP_MAC, ETH_P_IPV6, &later);

        let run = lab.uplink_receives(&later);

        // Could be a fragment for the node itself: not dropped.
        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&later);
        lab.dp().assert_counters(&[
            (FWD_SNAT, snat.packets, snat.bytes),
            (PASS_UPLINK_HOST, 1, later.len() as u64),
        ]);
    });
}

#[test]
fn fragmented_ping_is_translated_both_ways() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let data: Vec<u8> = (0..200u8).collect();
        // ping -6 -s 200: echo request, identifier 0x4242.
        let request = echo6(IP6_A, REMOTE_IP6, ICMPV6_ECHO_REQUEST, 0x4242, 7, &data);
        let (f1, f2) = fragments6(IPPROTO_ICMPV6, &request, 64, ID);
        let out1 = to_gateway6(MAC_A, &ipv6(IP6_A, REMOTE_IP6, NEXTHDR_FRAGMENT, &f1));
        let out2 = to_gateway6(MAC_A, &ipv6(IP6_A, REMOTE_IP6, NEXTHDR_FRAGMENT, &f2));

        let r1 = lab.a_sends(&out1);
        let r2 = lab.a_sends(&out2);

        r1.assert_verdict(TC_ACT_REDIRECT);
        r2.assert_verdict(TC_ACT_REDIRECT);
        let (o1, o2) = (Pkt6(&r1.out), Pkt6(&r2.out));
        for (o, what) in [(o1, "first"), (o2, "later")] {
            assert_eq!(o.ip().saddr(), UPLINK_IP6, "{what}: source");
            assert_eq!(o.ip().proto(), IPPROTO_ICMPV6);
        }
        let id = o1.ip().icmp_id();
        assert!(in_nat_range(id), "identifier {id}");
        let whole = [o1.ip().l4(), o2.ip().l4()].concat();
        assert_l4_checksum6(
            "reassembled echo request",
            IPPROTO_ICMPV6,
            UPLINK_IP6,
            REMOTE_IP6,
            &whole,
        );
        assert_eq!(whole[8..], data[..]);
        frag_entry(&lab, (IP6_A, REMOTE_IP6), ID, IPPROTO_ICMPV6, DIR_ORIGINAL);

        // The answer, fragmented the same way by the server.
        let reply = echo6(REMOTE_IP6, UPLINK_IP6, ICMPV6_ECHO_REPLY, id, 7, &data);
        let (f1, f2) = fragments6(IPPROTO_ICMPV6, &reply, 64, ID + 9);
        let in1 = inbound6(REMOTE_IP6, UPLINK_IP6, NEXTHDR_FRAGMENT, &f1);
        let in2 = inbound6(REMOTE_IP6, UPLINK_IP6, NEXTHDR_FRAGMENT, &f2);

        let r1 = lab.uplink_receives(&in1);
        let r2 = lab.uplink_receives(&in2);

        r1.assert_verdict(TC_ACT_REDIRECT);
        r2.assert_verdict(TC_ACT_REDIRECT);
        let (o1, o2) = (Pkt6(&r1.out), Pkt6(&r2.out));
        for (o, what) in [(o1, "first"), (o2, "later")] {
            assert_eq!(o.dst_mac(), MAC_A, "{what}: destination MAC");
            assert_eq!(o.ip().daddr(), IP6_A, "{what}: destination");
        }
        assert_eq!(o1.ip().icmp_id(), 0x4242, "the container's identifier");
        let whole = [o1.ip().l4(), o2.ip().l4()].concat();
        assert_l4_checksum6(
            "reassembled echo reply",
            IPPROTO_ICMPV6,
            REMOTE_IP6,
            IP6_A,
            &whole,
        );
        let entry = frag_entry(
            &lab,
            (REMOTE_IP6, UPLINK_IP6),
            ID + 9,
            IPPROTO_ICMPV6,
            DIR_REPLY,
        );
        assert_eq!((entry.addr, entry.ifindex), (IP6_A, lab.fx.a));
        let stats = lab.dp().stats();
        assert_eq!(
            (
                stats[FWD_SNAT as usize].packets,
                stats[FWD_REVNAT as usize].packets
            ),
            (2, 2),
            "{}",
            lab.dp().stats_summary()
        );
    });
}

#[test]
fn routed_mode_routes_fragments_as_they_are() {
    in_private_netns(|net| {
        let lab = NatLab6::with(net, |cfg| cfg.flags &= !CONFIG_F_IPV6_MASQUERADE);
        let (first, later) = udp_fragments((IP6_A, 5353), (REMOTE_IP6, 53), ID);
        let (first, later) = (to_gateway6(MAC_A, &first), to_gateway6(MAC_A, &later));

        // The later one first: routing needs no first fragment.
        let r2 = lab.a_sends(&later);
        let r1 = lab.a_sends(&first);

        for (run, sent) in [(&r1, &first), (&r2, &later)] {
            run.assert_verdict(TC_ACT_REDIRECT);
            let (ip, sent) = (Pkt6(&run.out).ip(), Pkt6(sent).ip());
            assert_eq!(ip.saddr(), IP6_A, "routed: own address");
            assert_eq!(ip.hop_limit(), 63);
            assert_eq!(ip.payload(), sent.payload());
        }
        lab.dp()
            .assert_counters(&[(FWD_ROUTED_OUT, 2, (first.len() + later.len()) as u64)]);
        assert!(lab.frags6_entries().is_empty());
        lab.assert_nat6_len(0);
    });
}

/// A 72-byte UDP datagram whose fragmentable part starts with an 8-byte
/// destination options header (RFC 8200 4.1's place for options meant
/// for the final destination): the fragment header's next header is
/// that header, not UDP. Split 40 + 40 bytes: (first, later) packets.
fn fragments_with_options_after(
    (src, sport): ([u8; 16], u16),
    (dst, dport): ([u8; 16], u16),
    id: u32,
) -> (Vec<u8>, Vec<u8>) {
    let payload: Vec<u8> = (0..64u8).collect();
    let l4 = udp6(src, dst, sport, dport, &payload);
    let fragmentable = [ext_header(IPPROTO_UDP, 0), l4].concat();
    let (first, later) = fragments6(NEXTHDR_DEST, &fragmentable, 40, id);
    (
        ipv6(src, dst, NEXTHDR_FRAGMENT, &first),
        ipv6(src, dst, NEXTHDR_FRAGMENT, &later),
    )
}

#[test]
fn fragments_with_an_extension_header_after_the_fragment_header_are_masqueraded() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let (first, later) = fragments_with_options_after((IP6_A, 5353), (REMOTE_IP6, 53), ID);
        let (first, later) = (to_gateway6(MAC_A, &first), to_gateway6(MAC_A, &later));

        let r1 = lab.a_sends(&first);
        let r2 = lab.a_sends(&later);

        r1.assert_verdict(TC_ACT_REDIRECT);
        assert_eq!(Pkt6(&r1.out).ip().saddr(), UPLINK_IP6);
        assert_eq!(
            r2.ret,
            TC_ACT_REDIRECT,
            "later fragment not translated: {}; frags6: {:#?}",
            lab.dp().stats_summary(),
            lab.frags6_entries()
        );
        let (o1, o2) = (Pkt6(&r1.out), Pkt6(&r2.out));
        assert_eq!(o2.ip().saddr(), UPLINK_IP6);
        // Reassembled: the options header, then UDP.
        let whole = [
            o1.ip().payload()[8..].to_vec(),
            o2.ip().payload()[8..].to_vec(),
        ]
        .concat();
        assert_l4_checksum6(
            "reassembled datagram",
            IPPROTO_UDP,
            UPLINK_IP6,
            REMOTE_IP6,
            &whole[8..],
        );
    });
}

#[test]
fn reply_fragments_with_an_extension_header_after_the_fragment_header_are_delivered() {
    in_private_netns(|net| {
        let lab = NatLab6::new(net);
        let (_, port) = lab.open_flow(lab.fx.a, &udp6_out(IP6_A, 5353, REMOTE_IP6, 53, MAC_A));
        let (first, later) = fragments_with_options_after((REMOTE_IP6, 53), (UPLINK_IP6, port), ID);
        let wire = |p: &[u8]| ethernet(UPLINK_MAC, NEXT_HOP_MAC, ETH_P_IPV6, p);

        let r1 = lab.uplink_receives(&wire(&first));
        let r2 = lab.uplink_receives(&wire(&later));

        r1.assert_verdict(TC_ACT_REDIRECT);
        assert_eq!(Pkt6(&r1.out).ip().daddr(), IP6_A);
        assert_eq!(
            r2.ret,
            TC_ACT_REDIRECT,
            "later reply fragment not delivered: {}; frags6: {:#?}",
            lab.dp().stats_summary(),
            lab.frags6_entries()
        );
        assert_eq!(Pkt6(&r2.out).dst_mac(), MAC_A);
        assert_eq!(Pkt6(&r2.out).ip().daddr(), IP6_A);
    });
}
