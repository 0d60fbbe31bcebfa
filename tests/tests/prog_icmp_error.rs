//! ICMP errors about masqueraded flows (RFC 5508): the quoted packet is
//! translated together with the outer header, so path MTU discovery and
//! traceroute work behind the NAT. Inbound (`uplink_ingress`): the quote's
//! source (uplink address, NAT port) becomes the container's again and the
//! error goes into the container. Outbound (endpoint program): an error a
//! container sends about a packet of a tracked flow gets the uplink address
//! and NAT port, outside and inside.
mod common;

use common::{frame::*, nat::*, packet_test::*};
use ebridge_common::stats::*;

/// What a router quotes: the IPv4 header and the first 8 bytes after it.
fn quote(ip: &Ip) -> Vec<u8> {
    ip.0[..ip.ihl() + 8].to_vec()
}

/// An error from ROUTER_IP to the uplink address quoting `quoted`.
fn error_from_router(ty: u8, code: u8, rest: [u8; 4], quoted: &[u8]) -> Vec<u8> {
    inbound(
        ROUTER_IP,
        UPLINK_IP,
        IPPROTO_ICMP,
        &icmp_error(ty, code, rest, quoted),
    )
}

/// Fragmentation needed, next-hop MTU 1280.
const MTU_1280: [u8; 4] = [0, 0, 0x05, 0x00];

/// Checks an error delivered into container A: outer header and quote
/// translated, every checksum valid (the quote's own L4 checksum excepted:
/// RFC 5508 leaves it, and a quote often cuts it off).
fn assert_delivered_to_a(run: &Run, sent: &[u8], what: &str) -> (u8, u8) {
    run.assert_verdict(TC_ACT_REDIRECT);
    assert_eq!(run.out.len(), sent.len(), "{what}: length");
    let out = Pkt(&run.out);
    assert_eq!(out.dst_mac(), MAC_A, "{what}: destination MAC");
    assert_eq!(out.src_mac(), BRIDGE_MAC, "{what}: source MAC");
    let ip = out.ip();
    assert_eq!(ip.saddr(), ROUTER_IP, "{what}: outer source");
    assert_eq!(ip.daddr(), IP_A, "{what}: outer destination");
    assert_eq!(ip.ttl(), 63, "{what}: TTL");
    ip.assert_checksums(what);
    let inner = ip.quoted();
    assert_eq!(inner.saddr(), IP_A, "{what}: quoted source");
    assert_eq!(inner.daddr(), REMOTE_IP, "{what}: quoted destination");
    inner.assert_header_checksum(&format!("{what}, quoted header"));
    let sent_icmp = Pkt(sent).ip().l4();
    let out_icmp = ip.l4();
    assert_eq!(out_icmp[..2], sent_icmp[..2], "{what}: ICMP type/code");
    assert_eq!(
        out_icmp[4..8],
        sent_icmp[4..8],
        "{what}: ICMP header word 2"
    );
    (out_icmp[0], out_icmp[1])
}

#[test]
fn fragmentation_needed_about_a_udp_datagram_reaches_the_container() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let (sent, port) = lab.open_flow(lab.fx.a, &udp_out(IP_A, 5353, REMOTE_IP, 53, MAC_A));
        assert_ne!(port, 5353, "test setup: the port is translated");
        let error = error_from_router(
            ICMP_DEST_UNREACH,
            ICMP_FRAG_NEEDED,
            MTU_1280,
            &quote(&Pkt(&sent).ip()),
        );

        let run = lab.uplink_receives(&error);

        assert_delivered_to_a(&run, &error, "frag needed (UDP)");
        let inner = Pkt(&run.out).ip().quoted();
        assert_eq!((inner.sport(), inner.dport()), (5353, 53));
        assert_eq!(inner.ttl(), 63, "the quote is the packet as it left");
        assert_eq!(
            lab.dp().stats()[FWD_REVNAT_ICMP_ERROR as usize].packets,
            1,
            "{}",
            lab.dp().stats_summary()
        );
        assert_eq!(lab.dp().stats()[FWD_REVNAT as usize].packets, 0);
    });
}

#[test]
fn time_exceeded_about_a_tcp_segment_reaches_the_container() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let (sent, port) = lab.open_flow(
            lab.fx.a,
            &tcp_out(IP_A, 12345, REMOTE_IP, 443, TCP_SYN, MAC_A),
        );
        let error = error_from_router(ICMP_TIME_EXCEEDED, 0, [0; 4], &quote(&Pkt(&sent).ip()));
        assert!(in_nat_range(port));

        let run = lab.uplink_receives(&error);

        assert_delivered_to_a(&run, &error, "time exceeded (TCP)");
        let inner = Pkt(&run.out).ip().quoted();
        assert_eq!((inner.sport(), inner.dport()), (12345, 443));
        // The sequence number (the rest of the 8 quoted bytes) is intact.
        assert_eq!(inner.l4()[4..8], 1000u32.to_be_bytes());
        assert_eq!(lab.dp().stats()[FWD_REVNAT_ICMP_ERROR as usize].packets, 1);
    });
}

#[test]
fn fragmentation_needed_about_a_ping_restores_the_identifier() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let (sent, id) = lab.open_flow(lab.fx.a, &icmp_frame(MAC_A, BRIDGE_MAC, IP_A, REMOTE_IP));
        assert_ne!(id, 0x4242);
        let error = error_from_router(
            ICMP_DEST_UNREACH,
            ICMP_FRAG_NEEDED,
            MTU_1280,
            &quote(&Pkt(&sent).ip()),
        );

        let run = lab.uplink_receives(&error);

        assert_delivered_to_a(&run, &error, "frag needed (ping)");
        let inner = Pkt(&run.out).ip().quoted();
        assert_eq!(inner.icmp_type(), ICMP_ECHO_REQUEST);
        assert_eq!(inner.icmp_id(), 0x4242);
        assert_eq!(lab.dp().stats()[FWD_REVNAT_ICMP_ERROR as usize].packets, 1);
    });
}

#[test]
fn error_quoting_a_whole_datagram_is_translated_the_same() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let (sent, _) = lab.open_flow(lab.fx.a, &udp_out(IP_A, 5353, REMOTE_IP, 53, MAC_A));
        // Linux quotes as much as fits in 576 bytes: here all of it.
        let error = error_from_router(
            ICMP_DEST_UNREACH,
            ICMP_PORT_UNREACH,
            [0; 4],
            &sent[ETH_HLEN..],
        );

        let run = lab.uplink_receives(&error);

        assert_delivered_to_a(&run, &error, "port unreachable, full quote");
        let inner = Pkt(&run.out).ip().quoted();
        assert_eq!((inner.sport(), inner.dport()), (5353, 53));
        assert_eq!(&inner.l4()[8..], b"masquerade me");
    });
}

#[test]
fn error_about_an_unknown_flow_passes_to_the_host_untouched() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let (sent, port) = lab.open_flow(lab.fx.a, &udp_out(IP_A, 5353, REMOTE_IP, 53, MAC_A));
        let snat = lab.dp().stats()[FWD_SNAT as usize];
        // The quoted datagram with another remote port: no such flow.
        let mut other = sent[ETH_HLEN..].to_vec();
        other[IPV4_HLEN + 2..IPV4_HLEN + 4].copy_from_slice(&54u16.to_be_bytes());
        // A datagram the node itself sent (source: the uplink, own port).
        let own = ipv4(
            UPLINK_IP,
            REMOTE_IP,
            IPPROTO_UDP,
            &udp(UPLINK_IP, REMOTE_IP, port.wrapping_add(1), 53, b"node"),
        );
        // One from another address of the node.
        let foreign = ipv4(
            [198, 51, 100, 9],
            REMOTE_IP,
            IPPROTO_UDP,
            &udp([198, 51, 100, 9], REMOTE_IP, port, 53, b"x"),
        );
        let frames: Vec<Vec<u8>> = [other, own, foreign]
            .iter()
            .map(|q| error_from_router(ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, MTU_1280, &q[..28]))
            .collect();

        let mut bytes = 0;
        for frame in &frames {
            let run = lab.uplink_receives(frame);
            run.assert_verdict(TC_NEXT);
            run.assert_frame_unchanged(frame);
            bytes += frame.len() as u64;
        }

        lab.dp().assert_counters(&[
            (FWD_SNAT, snat.packets, snat.bytes),
            (PASS_UPLINK_HOST, 3, bytes),
        ]);
    });
}

#[test]
fn port_unreachable_from_a_container_about_a_reply_is_masqueraded() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let (_, port) = lab.open_flow(lab.fx.a, &udp_out(IP_A, 5353, REMOTE_IP, 53, MAC_A));
        // A late reply reaches A after its socket closed...
        let reply = inbound(
            REMOTE_IP,
            UPLINK_IP,
            IPPROTO_UDP,
            &udp(REMOTE_IP, UPLINK_IP, 53, port, b"late answer"),
        );
        let delivered = lab.uplink_receives(&reply);
        delivered.assert_verdict(TC_ACT_REDIRECT);
        // ...and A answers port unreachable, quoting it as it saw it.
        let in_a = Pkt(&delivered.out).ip();
        let error = ethernet(
            BRIDGE_MAC,
            MAC_A,
            ETH_P_IPV4,
            &ipv4(
                IP_A,
                REMOTE_IP,
                IPPROTO_ICMP,
                &icmp_error(ICMP_DEST_UNREACH, ICMP_PORT_UNREACH, [0; 4], &quote(&in_a)),
            ),
        );

        let run = lab.a_sends(&error);

        run.assert_verdict(TC_ACT_REDIRECT);
        let out = Pkt(&run.out);
        assert_eq!(out.dst_mac(), NEXT_HOP_MAC);
        assert_eq!(out.src_mac(), UPLINK_MAC);
        let ip = out.ip();
        assert_eq!(ip.saddr(), UPLINK_IP, "outer source");
        assert_eq!(ip.daddr(), REMOTE_IP);
        assert_eq!(ip.ttl(), 63);
        ip.assert_checksums("port unreachable from A");
        let inner = ip.quoted();
        assert_eq!((inner.saddr(), inner.sport()), (REMOTE_IP, 53));
        assert_eq!(
            (inner.daddr(), inner.dport()),
            (UPLINK_IP, port),
            "the quote must show the datagram as REMOTE sent it"
        );
        inner.assert_header_checksum("quote in A's error");
        assert_eq!(lab.dp().stats()[FWD_SNAT_ICMP_ERROR as usize].packets, 1);
        lab.assert_nat_len(2);
    });
}

#[test]
fn error_from_a_container_about_no_tracked_flow_is_dropped() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        lab.open_flow(lab.fx.a, &udp_out(IP_A, 5353, REMOTE_IP, 53, MAC_A));
        let snat = lab.dp().stats()[FWD_SNAT as usize];
        let as_error = |quoted: &[u8]| {
            ethernet(
                BRIDGE_MAC,
                MAC_A,
                ETH_P_IPV4,
                &ipv4(
                    IP_A,
                    REMOTE_IP,
                    IPPROTO_ICMP,
                    &icmp_error(ICMP_DEST_UNREACH, ICMP_PORT_UNREACH, [0; 4], quoted),
                ),
            )
        };
        // About a datagram from a remote port the flow does not use.
        let untracked = ipv4(
            REMOTE_IP,
            IP_A,
            IPPROTO_UDP,
            &udp(REMOTE_IP, IP_A, 54, 5353, b"x"),
        );
        // About a datagram that was not addressed to A at all.
        let not_to_a = ipv4(
            REMOTE_IP,
            IP_B,
            IPPROTO_UDP,
            &udp(REMOTE_IP, IP_B, 53, 5353, b"x"),
        );
        let frames = [as_error(&untracked[..28]), as_error(&not_to_a[..28])];

        let mut bytes = 0;
        for frame in &frames {
            let run = lab.a_sends(frame);
            run.assert_verdict(TC_ACT_SHOT);
            run.assert_frame_unchanged(frame);
            bytes += frame.len() as u64;
        }

        lab.dp().assert_counters(&[
            (FWD_SNAT, snat.packets, snat.bytes),
            (DROP_ICMP_ERROR_UNTRACKED, 2, bytes),
        ]);
        lab.assert_nat_len(2);
    });
}
