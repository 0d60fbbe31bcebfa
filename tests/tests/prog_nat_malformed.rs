//! Malformed and unusual IPv4 on the SNAT path (frames to the gateway MAC
//! bound for outside, masquerade on): bad version, IHL or total length are
//! dropped as drop-malformed-ip; IP options and Ethernet padding are
//! translated correctly; truncated L4 headers are dropped; fragments are
//! translated as their first fragment was.
//!
//! Kernel limit (see `prog_endpoint_malformed.rs`): `BPF_PROG_TEST_RUN`
//! refuses an ETH_P_IP frame shorter than 14 + 20 bytes, so an IPv4 header
//! cut short cannot be run; everything from a whole fixed header on can.
mod common;

use common::{frame::*, nat::*, packet_test::*};
use ebridge_common::{nat::*, stats::*};

/// A's UDP datagram to the outside as IPv4 bytes (no Ethernet).
fn udp_packet(opts: &Ipv4Opts) -> Vec<u8> {
    let l4 = udp(IP_A, REMOTE_IP, 40000, 53, b"malformed?");
    ipv4_with(opts, IP_A, REMOTE_IP, IPPROTO_UDP, &l4)
}

fn from_a_to_gateway(ip: &[u8]) -> Vec<u8> {
    ethernet(BRIDGE_MAC, MAC_A, ETH_P_IPV4, ip)
}

/// Runs every frame from A and checks each is dropped untouched as
/// `reason`, with no conntrack state left.
fn assert_all_dropped(lab: &NatLab, frames: &[Vec<u8>], reason: u32) {
    let mut bytes = 0;
    for (i, frame) in frames.iter().enumerate() {
        let run = lab.a_sends(frame);
        assert_eq!(
            run.ret,
            TC_ACT_SHOT,
            "frame {i} not dropped: {}",
            lab.dp().stats_summary()
        );
        run.assert_frame_unchanged(frame);
        bytes += frame.len() as u64;
    }
    lab.dp()
        .assert_counters(&[(reason, frames.len() as u64, bytes)]);
    lab.assert_nat_len(0);
}

#[test]
fn ip_version_other_than_4_is_malformed() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let frames: Vec<Vec<u8>> = [0x05, 0x65, 0xf5]
            .into_iter()
            .map(|vihl| {
                let mut ip = udp_packet(&Ipv4Opts::default());
                ip[0] = vihl;
                fix_ipv4_checksum(&mut ip);
                from_a_to_gateway(&ip)
            })
            .collect();

        assert_all_dropped(&lab, &frames, DROP_MALFORMED_IP);
    });
}

#[test]
fn ihl_below_5_is_malformed() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let frames: Vec<Vec<u8>> = (0..5u8)
            .map(|ihl| {
                let mut ip = udp_packet(&Ipv4Opts::default());
                ip[0] = 0x40 | ihl;
                from_a_to_gateway(&ip)
            })
            .collect();

        assert_all_dropped(&lab, &frames, DROP_MALFORMED_IP);
    });
}

#[test]
fn total_length_beyond_the_frame_is_malformed() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let good = udp_packet(&Ipv4Opts::default());
        let frames: Vec<Vec<u8>> = [good.len() + 1, good.len() + 100, 0xffff]
            .into_iter()
            .map(|tot_len| {
                let mut ip = good.clone();
                ip[2..4].copy_from_slice(&(tot_len as u16).to_be_bytes());
                fix_ipv4_checksum(&mut ip);
                from_a_to_gateway(&ip)
            })
            .collect();

        assert_all_dropped(&lab, &frames, DROP_MALFORMED_IP);
    });
}

#[test]
fn total_length_shorter_than_the_header_is_malformed() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let good = udp_packet(&Ipv4Opts::default());
        let mut frames: Vec<Vec<u8>> = [0usize, 1, 19]
            .into_iter()
            .map(|tot_len| {
                let mut ip = good.clone();
                ip[2..4].copy_from_slice(&(tot_len as u16).to_be_bytes());
                fix_ipv4_checksum(&mut ip);
                from_a_to_gateway(&ip)
            })
            .collect();
        // IHL 15 (60 bytes) announced, total length 48.
        let mut long_ihl = good.clone();
        long_ihl[0] = 0x4f;
        fix_ipv4_checksum(&mut long_ihl[..]);
        frames.push(from_a_to_gateway(&long_ihl));

        assert_all_dropped(&lab, &frames, DROP_MALFORMED_IP);
    });
}

#[test]
fn options_cut_off_by_the_end_of_the_frame_are_malformed() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        // IHL 15 with only 8 bytes of the 40 option bytes present; the
        // total length says 60.
        let opts = Ipv4Opts {
            options: vec![1; 40],
            ..Ipv4Opts::default()
        };
        let ip = ipv4_with(&opts, IP_A, REMOTE_IP, IPPROTO_UDP, &[]);
        let frame = from_a_to_gateway(&ip[..IPV4_HLEN + 8]);

        assert_all_dropped(&lab, &[frame], DROP_MALFORMED_IP);
    });
}

#[test]
fn ip_options_are_kept_and_the_l4_header_found_after_them() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        for options in [vec![1, 1, 1, 1], vec![1; 40]] {
            let opts = Ipv4Opts {
                options: options.clone(),
                ..Ipv4Opts::default()
            };
            // Port 5353 is outside the NAT range: the port moves too, so a
            // misplaced L4 header would show.
            let l4 = udp(IP_A, REMOTE_IP, 5353, 53, b"with options");
            let frame = from_a_to_gateway(&ipv4_with(&opts, IP_A, REMOTE_IP, IPPROTO_UDP, &l4));

            let run = lab.a_sends(&frame);

            run.assert_verdict(TC_ACT_REDIRECT);
            let ip = Pkt(&run.out).ip();
            let what = format!("{} option bytes", options.len());
            assert_eq!(ip.ihl(), IPV4_HLEN + options.len(), "{what}: IHL");
            assert_eq!(&ip.header()[IPV4_HLEN..], &options[..], "{what}: options");
            assert_eq!(ip.saddr(), UPLINK_IP, "{what}");
            assert_eq!(ip.ttl(), 63, "{what}");
            assert!(in_nat_range(ip.sport()), "{what}: port {}", ip.sport());
            assert_eq!(ip.dport(), 53, "{what}");
            assert_eq!(&ip.l4()[8..], b"with options", "{what}: payload");
            ip.assert_checksums(&what);
            lab.assert_flow(
                IPPROTO_UDP,
                (IP_A, 5353),
                (REMOTE_IP, 53),
                ip.sport(),
                (lab.fx.a, MAC_A),
            );
        }
    });
}

#[test]
fn tcp_after_ip_options_is_translated() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let opts = Ipv4Opts {
            options: vec![1, 1, 1, 0],
            ..Ipv4Opts::default()
        };
        let l4 = tcp(IP_A, REMOTE_IP, 12345, 443, TCP_SYN, 7, 0, &[]);
        let frame = from_a_to_gateway(&ipv4_with(&opts, IP_A, REMOTE_IP, IPPROTO_TCP, &l4));

        let run = lab.a_sends(&frame);

        run.assert_verdict(TC_ACT_REDIRECT);
        let ip = Pkt(&run.out).ip();
        assert_eq!(ip.ihl(), 24);
        assert!(in_nat_range(ip.sport()));
        assert_eq!(ip.dport(), 443);
        ip.assert_checksums("TCP after a 4-byte option");
        let orig = lab
            .dp()
            .nat_get(&orig_key(IPPROTO_TCP, (IP_A, 12345), (REMOTE_IP, 443)))
            .expect("flow");
        assert_eq!(orig.state, CT_SYN_SENT, "flags read at the wrong offset");
    });
}

#[test]
fn ethernet_padding_after_the_datagram_is_not_translated() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        // A short datagram padded to the 60-byte Ethernet minimum (and
        // then some): the total length, not the frame, ends the packet.
        let mut frame = from_a_to_gateway(&udp_packet(&Ipv4Opts::default()));
        let datagram_end = frame.len();
        frame.extend_from_slice(&[0xee; 18]);

        let run = lab.a_sends(&frame);

        run.assert_verdict(TC_ACT_REDIRECT);
        assert_eq!(run.out.len(), frame.len());
        assert_eq!(&run.out[datagram_end..], &frame[datagram_end..], "padding");
        let ip = Pkt(&run.out).ip();
        assert_eq!(ip.saddr(), UPLINK_IP);
        ip.assert_checksums("padded datagram");
    });
}

#[test]
fn truncated_l4_headers_without_their_ports_are_dropped() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        // The IPv4 header is whole and its total length matches the frame;
        // the L4 header stops before the ports and TCP flags.
        let full_tcp = tcp(IP_A, REMOTE_IP, 12345, 443, TCP_SYN, 7, 0, &[]);
        let full_udp = udp(IP_A, REMOTE_IP, 40000, 53, b"");
        let full_icmp = icmp_echo(0x4242, 1, &[]);
        let mut frames = Vec::new();
        for (proto, l4, keep) in [
            (IPPROTO_TCP, &full_tcp, 0..14),
            (IPPROTO_UDP, &full_udp, 0..4),
            (IPPROTO_ICMP, &full_icmp, 0..8),
        ] {
            for len in keep {
                frames.push(from_a_to_gateway(&ipv4(IP_A, REMOTE_IP, proto, &l4[..len])));
            }
        }

        assert_all_dropped(&lab, &frames, DROP_TRUNCATED);
    });
}

#[test]
fn truncated_l4_headers_are_dropped_as_truncated_and_leave_no_flow() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let full_tcp = tcp(IP_A, REMOTE_IP, 12345, 443, TCP_SYN, 7, 0, &[]);
        let full_udp = udp(IP_A, REMOTE_IP, 40000, 53, b"");
        let mut frames = Vec::new();
        for (proto, l4, keep) in [
            (IPPROTO_TCP, &full_tcp, 14..20),
            (IPPROTO_UDP, &full_udp, 4..8),
        ] {
            for len in keep {
                frames.push(from_a_to_gateway(&ipv4(IP_A, REMOTE_IP, proto, &l4[..len])));
            }
        }

        assert_all_dropped(&lab, &frames, DROP_TRUNCATED);
    });
}

#[test]
fn l4_header_past_the_total_length_is_not_used() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let full_tcp = tcp(IP_A, REMOTE_IP, 12345, 443, TCP_SYN, 7, 0, &[]);
        let full_udp = udp(IP_A, REMOTE_IP, 40000, 53, b"");
        let frames: Vec<Vec<u8>> = [(IPPROTO_TCP, &full_tcp), (IPPROTO_UDP, &full_udp)]
            .into_iter()
            .map(|(proto, l4)| {
                // Total length 20: no L4 bytes in the datagram; what looks
                // like a header is trailer, which receivers cut off.
                let mut frame = from_a_to_gateway(&ipv4(IP_A, REMOTE_IP, proto, &[]));
                frame.extend_from_slice(l4);
                frame
            })
            .collect();

        assert_all_dropped(&lab, &frames, DROP_TRUNCATED);
    });
}

#[test]
fn later_fragment_without_its_first_is_dropped() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let l4 = udp(IP_A, REMOTE_IP, 40000, 53, &[9; 64]);
        let (_, later) = fragments(&Ipv4Opts::default(), IP_A, REMOTE_IP, IPPROTO_UDP, &l4, 32);

        assert_all_dropped(&lab, &[from_a_to_gateway(&later)], DROP_FRAG_NO_FIRST);
        assert!(lab.dp().frags_entries().is_empty());
    });
}

#[test]
fn first_fragment_then_later_fragment_are_both_translated() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let payload: Vec<u8> = (0..64u8).collect();
        let l4 = udp(IP_A, REMOTE_IP, 5353, 53, &payload);
        let opts = Ipv4Opts {
            id: 0xabcd,
            ..Ipv4Opts::default()
        };
        let (first, later) = fragments(&opts, IP_A, REMOTE_IP, IPPROTO_UDP, &l4, 32);
        let (first, later) = (from_a_to_gateway(&first), from_a_to_gateway(&later));

        let r1 = lab.a_sends(&first);
        let r2 = lab.a_sends(&later);

        r1.assert_verdict(TC_ACT_REDIRECT);
        r2.assert_verdict(TC_ACT_REDIRECT);
        let (o1, o2) = (Pkt(&r1.out), Pkt(&r2.out));
        for (o, what) in [(o1, "first fragment"), (o2, "later fragment")] {
            assert_eq!(o.dst_mac(), NEXT_HOP_MAC, "{what}: destination MAC");
            assert_eq!(o.src_mac(), UPLINK_MAC, "{what}: source MAC");
            let ip = o.ip();
            assert_eq!(ip.saddr(), UPLINK_IP, "{what}: source");
            assert_eq!(ip.daddr(), REMOTE_IP, "{what}: destination");
            assert_eq!(ip.ttl(), 63, "{what}: TTL");
            assert_eq!(ip.id(), 0xabcd, "{what}: IP id");
            ip.assert_header_checksum(what);
        }
        let port = o1.ip().sport();
        assert!(in_nat_range(port));
        // The later fragment's bytes are payload, never a port.
        assert_eq!(o2.ip().l4(), Pkt(&later).ip().l4());
        let whole = [o1.ip().l4(), o2.ip().l4()].concat();
        assert_l4_checksum(
            "reassembled datagram",
            IPPROTO_UDP,
            UPLINK_IP,
            REMOTE_IP,
            &whole,
        );
        assert_eq!(&whole[8..], &payload[..]);
        lab.dp()
            .assert_counters(&[(FWD_SNAT, 2, (first.len() + later.len()) as u64)]);
        let (orig, _) = lab.assert_flow(
            IPPROTO_UDP,
            (IP_A, 5353),
            (REMOTE_IP, 53),
            port,
            (lab.fx.a, MAC_A),
        );
        assert_eq!(orig.packets, 1, "only the first fragment is a flow packet");
        let frags = lab.dp().frags_entries();
        assert_eq!(frags.len(), 1, "{frags:?}");
        let (key, entry) = frags[0];
        assert_eq!(
            (
                key.saddr,
                key.daddr,
                u16::from_be(key.id),
                key.proto,
                key.dir
            ),
            (IP_A, REMOTE_IP, 0xabcd, IPPROTO_UDP, DIR_ORIGINAL)
        );
        assert_eq!(entry.addr, UPLINK_IP);
    });
}

#[test]
fn later_fragment_from_another_container_is_not_matched() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let l4a = udp(IP_A, REMOTE_IP, 5353, 53, &[1; 64]);
        let l4b = udp(IP_B, REMOTE_IP, 5353, 53, &[1; 64]);
        let (first_a, _) = fragments(&Ipv4Opts::default(), IP_A, REMOTE_IP, IPPROTO_UDP, &l4a, 32);
        let (_, later_b) = fragments(&Ipv4Opts::default(), IP_B, REMOTE_IP, IPPROTO_UDP, &l4b, 32);
        let later_b = ethernet(BRIDGE_MAC, MAC_B, ETH_P_IPV4, &later_b);

        lab.a_sends(&from_a_to_gateway(&first_a))
            .assert_verdict(TC_ACT_REDIRECT);
        let run = lab.b_sends(&later_b);

        // Same IP id, protocol and destination, but B's: not A's datagram.
        run.assert_verdict(TC_ACT_SHOT);
        run.assert_frame_unchanged(&later_b);
        assert_eq!(lab.dp().stats()[DROP_FRAG_NO_FIRST as usize].packets, 1);
    });
}
