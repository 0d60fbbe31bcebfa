//! Frames too short for the headers their EtherType announces are dropped
//! as drop-truncated, after the source MAC check and before any learning.
//!
//! Kernel limit: on 6.18, `BPF_PROG_TEST_RUN` itself refuses (EINVAL,
//! program not run) an ETH_P_IP frame shorter than 14 + 20 bytes and an
//! ETH_P_IPV6 frame shorter than 14 + 40, and any frame shorter than 14.
//! So the IPv4 truncation branch of the program cannot be reached from a
//! test run there; the ARP branch can, and both share the same check.
mod common;

use common::{frame::*, packet_test::*};
use ebridge_common::stats::*;

#[test]
fn truncated_ipv4_header_is_dropped_or_refused_by_the_kernel() {
    in_private_netns(|net| {
        let fx = Fixture::new(net);
        // Ethernet + 19 of the 20 bytes of an IPv4 header.
        let full = udp_frame(MAC_A, MAC_B, IP_A, IP_B);
        let frame = &full[..ETH_HLEN + IPV4_HLEN - 1];

        match fx.dp.try_run(Some(&SkBuff::on(fx.a)), frame) {
            Ok(run) => {
                run.assert_verdict(TC_ACT_SHOT);
                fx.dp.assert_counted_once(DROP_TRUNCATED, frame);
                fx.assert_fdb_holds_only(&[]);
            }
            Err(e) => {
                // What 6.18 does: the test run never reaches the program.
                assert_eq!(errno(&e), Some(libc::EINVAL), "unexpected error {e:?}");
                fx.dp.assert_counters(&[]);
            }
        }
    });
}

#[test]
fn every_truncated_arp_length_is_dropped() {
    in_private_netns(|net| {
        let fx = Fixture::new(net);
        let full = arp_request(MAC_A, IP_A, IP_B);
        let mut bytes = 0;
        // 14 (Ethernet header only) up to 41 (one byte short of the ARP body).
        for len in ETH_HLEN..ETH_HLEN + ARP_LEN {
            let frame = &full[..len];
            let run = fx.dp.run(fx.a, frame);
            assert_eq!(run.ret, TC_ACT_SHOT, "ARP frame of {len} bytes not dropped");
            run.assert_frame_unchanged(frame);
            bytes += len as u64;
        }
        fx.dp
            .assert_counters(&[(DROP_TRUNCATED, ARP_LEN as u64, bytes)]);
        fx.assert_fdb_holds_only(&[]);

        // One more byte and it is a whole, valid ARP request.
        fx.dp.run(fx.a, &full).assert_verdict(TC_NEXT);
    });
}

#[test]
fn truncated_frame_with_a_spoofed_mac_is_counted_as_spoofed() {
    in_private_netns(|net| {
        let fx = Fixture::new(net);
        let full = arp_request(MAC_UNKNOWN, IP_A, IP_B);
        let frame = &full[..ETH_HLEN + 8];

        let run = fx.dp.run(fx.a, frame);

        run.assert_verdict(TC_ACT_SHOT);
        fx.dp.assert_counted_once(DROP_SPOOFED_MAC, frame);
    });
}

#[test]
fn bare_ipv4_header_without_l4_is_not_truncated() {
    in_private_netns(|net| {
        let fx = Fixture::new(net);
        // Exactly 14 + 20 bytes: everything the program reads is there.
        let frame = ethernet(MAC_B, MAC_A, ETH_P_IPV4, &ipv4(IP_A, IP_B, 253, &[]));
        assert_eq!(frame.len(), ETH_HLEN + IPV4_HLEN);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_ACT_REDIRECT);
        run.assert_frame_unchanged(&frame);
        fx.dp.assert_counted_once(FWD_REDIRECT_PEER, &frame);
    });
}

#[test]
fn ethernet_header_alone_with_another_ethertype_is_forwarded() {
    in_private_netns(|net| {
        let fx = Fixture::new(net);
        // 0x88b5 (local experimental): nothing to parse beyond Ethernet.
        let frame = ethernet(MAC_B, MAC_A, 0x88b5, &[]);

        let run = fx.dp.run(fx.a, &frame);

        run.assert_verdict(TC_ACT_REDIRECT);
        run.assert_frame_unchanged(&frame);
        fx.dp.assert_counted_once(FWD_REDIRECT_PEER, &frame);
        fx.dp.assert_learned(MAC_A, fx.a, &run);
    });
}

#[test]
fn frame_shorter_than_an_ethernet_header_is_refused_by_the_kernel() {
    in_private_netns(|net| {
        let fx = Fixture::new(net);
        let full = udp_frame(MAC_A, MAC_B, IP_A, IP_B);

        let err = fx
            .dp
            .try_run(Some(&SkBuff::on(fx.a)), &full[..ETH_HLEN - 1])
            .expect_err("the kernel ran a 13-byte frame");

        assert_eq!(errno(&err), Some(libc::EINVAL), "{err:?}");
        fx.dp.assert_counters(&[]);
    });
}

#[test]
fn ipv4_with_options_is_checked_on_its_fixed_header() {
    in_private_netns(|net| {
        let fx = Fixture::new(net);
        // IHL 6: one 4-byte option (NOP NOP NOP EOL) before the UDP header.
        let l4 = udp(IP_A, IP_B, 40000, 53, b"options");
        let mut ip = ipv4(IP_A, IP_B, IPPROTO_UDP, &l4);
        ip.splice(IPV4_HLEN..IPV4_HLEN, [1, 1, 1, 0]);
        ip[0] = 0x46;
        let total = ip.len() as u16;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[10..12].copy_from_slice(&[0, 0]);
        let csum = checksum(&[&ip[..24]]);
        ip[10..12].copy_from_slice(&csum.to_be_bytes());
        let good = ethernet(MAC_B, MAC_A, ETH_P_IPV4, &ip);
        let mut spoofed = good.clone();
        spoofed[ETH_HLEN + 12..ETH_HLEN + 16].copy_from_slice(&IP_UNKNOWN);

        fx.dp.run(fx.a, &good).assert_verdict(TC_ACT_REDIRECT);
        fx.dp.run(fx.a, &spoofed).assert_verdict(TC_ACT_SHOT);
        fx.dp.assert_counters(&[
            (FWD_REDIRECT_PEER, 1, good.len() as u64),
            (DROP_SPOOFED_IP, 1, spoofed.len() as u64),
        ]);
    });
}
