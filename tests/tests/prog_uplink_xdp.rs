//! Reverse NAT in XDP on the uplink (`uplink_xdp`, `ebridge up --xdp`): a
//! whole IPv4 TCP/UDP/ICMP-echo reply to the uplink address that belongs to
//! a tracked flow gets the same rewrite as the TC program gives it —
//! destination address and port back to the container's, TTL down by one,
//! both checksums fixed (incrementally, RFC 1624), the container's MAC and
//! the bridge's — and is redirected to the container's host veth
//! (`XDP_REDIRECT`). Everything else is passed (`XDP_PASS`) byte for byte
//! and without touching the conntrack entry, so the TC program sees it as
//! if there were no XDP.
mod common;

use aya::{programs::Xdp, TestRun, TestRunOptions};
use bytemuck::{Pod, Zeroable};
use common::{frame::*, nat::*, packet_test::*};
use ebridge_common::{
    maps::{MAP_PUBLISH, PROG_UPLINK_XDP},
    nat::*,
    stats::*,
};

const XDP_PASS: u32 = 2;
const XDP_REDIRECT: u32 = 4;

/// `struct xdp_md`: what `BPF_PROG_TEST_RUN` takes as an XDP context.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

/// [`NatLab`] with the XDP program loaded as well.
fn xdp_lab(net: &TestNet) -> NatLab {
    let mut lab = NatLab::new(net);
    load_xdp(&mut lab.fx.dp);
    lab
}

fn load_xdp(dp: &mut Datapath) {
    let prog: &mut Xdp = dp
        .ebpf_mut()
        .program_mut(PROG_UPLINK_XDP)
        .expect("object has no uplink_xdp program")
        .try_into()
        .expect("uplink_xdp is an XDP program");
    prog.load()
        .unwrap_or_else(|e| panic!("the verifier rejected uplink_xdp: {e:?}"));
}

/// `frame` arriving on device `ifindex` (the uplink), through XDP.
fn xdp_run(dp: &Datapath, ifindex: u32, frame: &[u8]) -> Run {
    let prog: &Xdp = dp
        .ebpf()
        .program(PROG_UPLINK_XDP)
        .expect("uplink_xdp")
        .try_into()
        .expect("XDP program");
    let ctx = XdpMd {
        data_end: frame.len() as u32,
        ingress_ifindex: ifindex,
        ..XdpMd::default()
    };
    let mut out = vec![0u8; frame.len() + 256];
    let started_ns = monotonic_ns();
    let res = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(bytemuck::bytes_of(&ctx)),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN of uplink_xdp: {e:?}"));
    let finished_ns = monotonic_ns();
    out.truncate(res.data_size_out as usize);
    Run {
        ret: res.return_value,
        out,
        ctx: SkBuff::default(),
        started_ns,
        finished_ns,
    }
}

fn uplink_xdp(lab: &NatLab, frame: &[u8]) -> Run {
    xdp_run(lab.dp(), lab.uplink, frame)
}

fn assert_xdp_verdict(run: &Run, want: u32) {
    assert_eq!(
        run.ret, want,
        "XDP verdict {} (2 pass, 4 redirect), want {want}",
        run.ret
    );
}

/// A passed frame is untouched, counted once on `reason`, and the flow's
/// reply entry (if any) was not accounted.
fn assert_passed(lab: &NatLab, run: &Run, frame: &[u8], reason: u32, before: &[Counter]) {
    assert_xdp_verdict(run, XDP_PASS);
    run.assert_frame_unchanged(frame);
    let after = lab.dp().stats();
    for (code, (b, a)) in before.iter().zip(&after).enumerate() {
        let want = if code as u32 == reason {
            Counter {
                packets: b.packets + 1,
                bytes: b.bytes + frame.len() as u64,
            }
        } else {
            *b
        };
        assert_eq!(
            *a,
            want,
            "counter {code} ({}) after passing a frame on {}",
            reason_label(code as u32).unwrap_or("?"),
            reason_label(reason).unwrap_or("?")
        );
    }
}

/// A's UDP flow 5353 → REMOTE:53; returns the NAT port.
fn udp_flow(lab: &NatLab) -> u16 {
    let (_, port) = lab.open_flow(lab.fx.a, &udp_out(IP_A, 5353, REMOTE_IP, 53, MAC_A));
    assert!(in_nat_range(port));
    port
}

fn udp_reply(nat_port: u16, payload: &[u8]) -> Vec<u8> {
    let l4 = udp(REMOTE_IP, UPLINK_IP, 53, nat_port, payload);
    inbound(REMOTE_IP, UPLINK_IP, IPPROTO_UDP, &l4)
}

fn reply_entry(lab: &NatLab, proto: u8, remote: ([u8; 4], u16), nat_port: u16) -> NatEntry {
    lab.dp()
        .nat_get(&reply_key(proto, remote, nat_port))
        .expect("reply entry")
}

#[test]
fn udp_reply_is_translated_and_redirected_to_the_containers_veth() {
    in_private_netns(|net| {
        let lab = xdp_lab(net);
        let port = udp_flow(&lab);
        let snat_bytes = lab.dp().stats()[FWD_SNAT as usize].bytes;
        let reply = udp_reply(port, b"an answer");

        let run = uplink_xdp(&lab, &reply);

        assert_xdp_verdict(&run, XDP_REDIRECT);
        assert_eq!(run.out.len(), reply.len());
        let out = Pkt(&run.out);
        assert_eq!(out.dst_mac(), MAC_A, "destination MAC: the container's");
        assert_eq!(out.src_mac(), BRIDGE_MAC, "source MAC: the bridge's");
        let ip = out.ip();
        assert_eq!((ip.saddr(), ip.sport()), (REMOTE_IP, 53));
        assert_eq!((ip.daddr(), ip.dport()), (IP_A, 5353));
        assert_eq!(ip.ttl(), 63);
        ip.assert_checksums("reply after XDP reverse NAT");
        assert_eq!(&ip.l4()[8..], b"an answer");
        lab.dp().assert_counters(&[
            (FWD_SNAT, 1, snat_bytes),
            (FWD_XDP_REVNAT, 1, reply.len() as u64),
        ]);
        // conntrack::ingress, as on TC: accounted, both entries replied.
        let (orig, back) = lab.assert_flow(
            IPPROTO_UDP,
            (IP_A, 5353),
            (REMOTE_IP, 53),
            port,
            (lab.fx.a, MAC_A),
        );
        assert_eq!((back.packets, back.bytes), (1, reply.len() as u64));
        assert!((run.started_ns..=run.finished_ns).contains(&back.last_seen_ns));
        assert_ne!(back.flags & NAT_F_REPLIED, 0, "reply entry not marked");
        assert_ne!(orig.flags & NAT_F_REPLIED, 0, "original entry not marked");
        lab.assert_nat_len(2);
    });
}

#[test]
fn xdp_output_is_byte_for_byte_what_tc_makes_of_the_same_reply() {
    in_private_netns(|net| {
        let lab = xdp_lab(net);
        // Many ports, addresses' worth of checksum carries, odd lengths.
        for i in 0u16..40 {
            let sport = 1000 + i * 1499;
            let (_, port) = lab.open_flow(lab.fx.a, &udp_out(IP_A, sport, REMOTE_IP, 53, MAC_A));
            let payload: Vec<u8> = (0..(i as usize * 37 % 900))
                .map(|b| (b as u16 * 7 + i) as u8)
                .collect();
            let reply = udp_reply(port, &payload);
            let xdp = uplink_xdp(&lab, &reply);
            let tc = lab.uplink_receives(&reply);
            assert_xdp_verdict(&xdp, XDP_REDIRECT);
            tc.assert_verdict(TC_ACT_REDIRECT);
            assert_eq!(xdp.out, tc.out, "UDP flow {i}: XDP and TC disagree");
            Pkt(&xdp.out).ip().assert_checksums("UDP reply");

            let tport = 20000 + i * 1013;
            let (_, nat) = lab.open_flow(
                lab.fx.b,
                &tcp_out(IP_B, tport, REMOTE_IP, 443, TCP_SYN, MAC_B),
            );
            let l4 = tcp(
                REMOTE_IP,
                UPLINK_IP,
                443,
                nat,
                TCP_SYN | TCP_ACK,
                0x1234_5678 ^ u32::from(i),
                1001,
                &payload,
            );
            let reply = inbound(REMOTE_IP, UPLINK_IP, IPPROTO_TCP, &l4);
            let xdp = uplink_xdp(&lab, &reply);
            let tc = lab.uplink_receives(&reply);
            assert_xdp_verdict(&xdp, XDP_REDIRECT);
            assert_eq!(xdp.out, tc.out, "TCP flow {i}: XDP and TC disagree");
            let ip = Pkt(&xdp.out).ip();
            assert_eq!((ip.daddr(), ip.dport()), (IP_B, tport));
            ip.assert_checksums("TCP reply");
        }
        assert_eq!(lab.dp().stats()[FWD_XDP_REVNAT as usize].packets, 80);
    });
}

#[test]
fn tcp_state_follows_replies_handled_in_xdp() {
    in_private_netns(|net| {
        let lab = xdp_lab(net);
        let out = |flags| tcp_out(IP_A, 12345, REMOTE_IP, 443, flags, MAC_A);
        let (_, port) = lab.open_flow(lab.fx.a, &out(TCP_SYN));
        let back = |flags| {
            let l4 = tcp(REMOTE_IP, UPLINK_IP, 443, port, flags, 5000, 1001, &[]);
            inbound(REMOTE_IP, UPLINK_IP, IPPROTO_TCP, &l4)
        };
        let okey = orig_key(IPPROTO_TCP, (IP_A, 12345), (REMOTE_IP, 443));
        let state = || {
            let e = lab.dp().nat_get(&okey).expect("original entry");
            (e.state, e.flags)
        };

        let run = uplink_xdp(&lab, &back(TCP_SYN | TCP_ACK));
        assert_xdp_verdict(&run, XDP_REDIRECT);
        Pkt(&run.out)
            .ip()
            .assert_checksums("SYN-ACK after XDP reverse NAT");
        assert_eq!(state(), (CT_ESTABLISHED, NAT_F_REPLIED));

        assert_xdp_verdict(&uplink_xdp(&lab, &back(TCP_FIN | TCP_ACK)), XDP_REDIRECT);
        assert_eq!(state(), (CT_FIN_WAIT, NAT_F_REPLIED | NAT_F_FIN_REPLY));
        assert_xdp_verdict(&uplink_xdp(&lab, &back(TCP_RST)), XDP_REDIRECT);
        assert_eq!(state().0, CT_CLOSED);
    });
}

#[test]
fn icmp_echo_reply_gets_the_containers_identifier_back() {
    in_private_netns(|net| {
        let lab = xdp_lab(net);
        let (_, id) = lab.open_flow(lab.fx.a, &icmp_frame(MAC_A, BRIDGE_MAC, IP_A, REMOTE_IP));
        assert_ne!(id, 0x4242, "test setup: the identifier is translated");
        let reply = inbound(
            REMOTE_IP,
            UPLINK_IP,
            IPPROTO_ICMP,
            &icmp_echo_reply(id, 1, &[0xab; 56]),
        );

        let run = uplink_xdp(&lab, &reply);

        assert_xdp_verdict(&run, XDP_REDIRECT);
        let out = Pkt(&run.out);
        assert_eq!(out.dst_mac(), MAC_A);
        let ip = out.ip();
        assert_eq!(ip.daddr(), IP_A);
        assert_eq!(ip.icmp_id(), 0x4242);
        assert_eq!(ip.ttl(), 63);
        ip.assert_checksums("echo reply after XDP reverse NAT");
        assert_eq!(lab.uplink_receives(&reply).out, run.out, "TC agrees");
    });
}

#[test]
fn udp_reply_without_checksum_keeps_a_zero_checksum() {
    in_private_netns(|net| {
        let lab = xdp_lab(net);
        let port = udp_flow(&lab);
        let reply = inbound(
            REMOTE_IP,
            UPLINK_IP,
            IPPROTO_UDP,
            &udp_no_checksum(53, port, b"no checksum"),
        );

        let run = uplink_xdp(&lab, &reply);

        assert_xdp_verdict(&run, XDP_REDIRECT);
        let ip = Pkt(&run.out).ip();
        assert_eq!((ip.daddr(), ip.dport()), (IP_A, 5353));
        ip.assert_header_checksum("reply without UDP checksum");
        ip.assert_no_udp_checksum();
    });
}

#[test]
fn reply_with_a_partial_checksum_is_left_to_tc() {
    in_private_netns(|net| {
        let lab = xdp_lab(net);
        let port = udp_flow(&lab);
        let (_, tport) = lab.open_flow(
            lab.fx.a,
            &tcp_out(IP_A, 12345, REMOTE_IP, 443, TCP_SYN, MAC_A),
        );
        // What a local sender's CHECKSUM_PARTIAL skb carries: the folded
        // pseudo-header sum, not the checksum.
        let partial = |proto: u8, mut l4: Vec<u8>, at: usize| {
            let sum = !checksum(&[&pseudo_header(REMOTE_IP, UPLINK_IP, proto, l4.len())]);
            l4[at..at + 2].copy_from_slice(&sum.to_be_bytes());
            inbound(REMOTE_IP, UPLINK_IP, proto, &l4)
        };
        let frames = [
            (
                partial(IPPROTO_UDP, udp(REMOTE_IP, UPLINK_IP, 53, port, b"x"), 6),
                reply_key(IPPROTO_UDP, (REMOTE_IP, 53), port),
            ),
            (
                partial(
                    IPPROTO_TCP,
                    tcp(REMOTE_IP, UPLINK_IP, 443, tport, TCP_ACK, 1, 1, b"data"),
                    16,
                ),
                reply_key(IPPROTO_TCP, (REMOTE_IP, 443), tport),
            ),
        ];
        for (frame, key) in frames {
            let before = lab.dp().stats();
            let entry = lab.dp().nat_get(&key).expect("reply entry");
            let run = uplink_xdp(&lab, &frame);
            assert_passed(&lab, &run, &frame, PASS_XDP_CSUM_PARTIAL, &before);
            assert_eq!(lab.dp().nat_get(&key), Some(entry), "entry accounted");
            // TC takes it (and keeps the skb's checksum state).
            lab.uplink_receives(&frame).assert_verdict(TC_ACT_REDIRECT);
        }
    });
}

#[test]
fn everything_but_the_common_case_passes_to_tc_untouched() {
    in_private_netns(|net| {
        let lab = xdp_lab(net);
        let port = udp_flow(&lab);
        let (_, id) = lab.open_flow(lab.fx.a, &icmp_frame(MAC_A, BRIDGE_MAC, IP_A, REMOTE_IP));
        let entry = reply_entry(&lab, IPPROTO_UDP, (REMOTE_IP, 53), port);
        let udp_l4 = udp(REMOTE_IP, UPLINK_IP, 53, port, &[0x5a; 64]);
        let with = |opts: Ipv4Opts| inbound_with(&opts, REMOTE_IP, UPLINK_IP, IPPROTO_UDP, &udp_l4);
        let (first, later) = fragments(
            &Ipv4Opts::default(),
            REMOTE_IP,
            UPLINK_IP,
            IPPROTO_UDP,
            &udp_l4,
            24,
        );
        // The quote of an error about the container's (translated) packet.
        let quoted = ipv4(
            UPLINK_IP,
            REMOTE_IP,
            IPPROTO_UDP,
            &udp(UPLINK_IP, REMOTE_IP, port, 53, b"q"),
        );
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("no flow on this port", udp_reply(port ^ 1, b"stray")),
            (
                "not the uplink address",
                inbound(
                    REMOTE_IP,
                    NEXT_HOP_IP,
                    IPPROTO_UDP,
                    &udp(REMOTE_IP, NEXT_HOP_IP, 53, port, b"x"),
                ),
            ),
            (
                "TTL 1: the kernel answers time-exceeded",
                with(Ipv4Opts {
                    ttl: 1,
                    ..Ipv4Opts::default()
                }),
            ),
            (
                "first fragment",
                ethernet(UPLINK_MAC, NEXT_HOP_MAC, ETH_P_IPV4, &first),
            ),
            (
                "later fragment",
                ethernet(UPLINK_MAC, NEXT_HOP_MAC, ETH_P_IPV4, &later),
            ),
            (
                "ICMP error about the flow",
                inbound(
                    ROUTER_IP,
                    UPLINK_IP,
                    IPPROTO_ICMP,
                    &icmp_error(ICMP_DEST_UNREACH, ICMP_PORT_UNREACH, [0; 4], &quoted),
                ),
            ),
            (
                "echo request to the node",
                inbound(
                    REMOTE_IP,
                    UPLINK_IP,
                    IPPROTO_ICMP,
                    &icmp_echo(id, 1, b"ping"),
                ),
            ),
            ("ARP", arp_request(NEXT_HOP_MAC, NEXT_HOP_IP, UPLINK_IP)),
            (
                "IPv6",
                ipv6_frame(NEXT_HOP_MAC, UPLINK_MAC, [0xfe; 16], [0xfd; 16]),
            ),
            ("truncated IPv4", {
                let mut f = udp_reply(port, b"cut");
                f.truncate(ETH_HLEN + 12);
                f
            }),
            ("IPv4 with a bad IHL", {
                let mut f = udp_reply(port, b"ihl");
                f[ETH_HLEN] = 0x44;
                f
            }),
        ];
        for (what, frame) in cases {
            let before = lab.dp().stats();
            let run = uplink_xdp(&lab, &frame);
            assert_eq!(run.ret, XDP_PASS, "{what}: verdict {}", run.ret);
            assert_passed(&lab, &run, &frame, PASS_XDP_TO_TC, &before);
        }
        assert_eq!(
            reply_entry(&lab, IPPROTO_UDP, (REMOTE_IP, 53), port),
            entry,
            "a passed packet was accounted to the flow"
        );
    });
}

#[test]
fn frames_longer_than_the_bridge_mtu_are_left_to_tc() {
    in_private_netns(|net| {
        let lab = xdp_lab(net);
        let port = udp_flow(&lab);
        // MTU 1500: an IPv4 packet of 1500 bytes fits, 1501 does not (a GSO
        // packet in generic mode would fail to redirect into the veth).
        let fits = udp_reply(port, &vec![1; 1500 - 28]);
        let too_big = udp_reply(port, &vec![1; 1501 - 28]);
        assert_eq!(fits.len(), ETH_HLEN + 1500);

        let before = lab.dp().stats();
        let run = uplink_xdp(&lab, &too_big);
        assert_passed(&lab, &run, &too_big, PASS_XDP_TO_TC, &before);

        let run = uplink_xdp(&lab, &fits);
        assert_xdp_verdict(&run, XDP_REDIRECT);
        Pkt(&run.out).ip().assert_checksums("full-size reply");
    });
}

#[test]
fn published_port_first_packet_goes_to_tc_and_the_rest_to_xdp() {
    in_private_netns(|net| {
        let mut lab = xdp_lab(net);
        {
            let mut publish: aya::maps::HashMap<_, PublishKey, PublishTarget> = lab
                .fx
                .dp
                .ebpf_mut()
                .map_mut(MAP_PUBLISH)
                .expect("publish map")
                .try_into()
                .expect("publish is a HashMap<PublishKey, PublishTarget>");
            publish
                .insert(
                    PublishKey {
                        addr: UPLINK_IP,
                        port: 8080u16.to_be(),
                        proto: IPPROTO_TCP,
                        _pad: 0,
                    },
                    PublishTarget {
                        addr: IP_A,
                        port: 80u16.to_be(),
                        ifindex: lab.fx.a,
                        mac: MAC_A,
                        ..PublishTarget::default()
                    },
                    0,
                )
                .expect("insert publish");
        }
        let from_outside = |flags| {
            let l4 = tcp(REMOTE_IP, UPLINK_IP, 50000, 8080, flags, 7, 0, &[]);
            inbound(REMOTE_IP, UPLINK_IP, IPPROTO_TCP, &l4)
        };

        let syn = from_outside(TCP_SYN);
        let before = lab.dp().stats();
        let run = uplink_xdp(&lab, &syn);
        assert_passed(&lab, &run, &syn, PASS_XDP_TO_TC, &before);
        lab.assert_nat_len(0);
        // TC creates the flow (DNAT)...
        lab.uplink_receives(&syn).assert_verdict(TC_ACT_REDIRECT);
        lab.assert_nat_len(2);

        // ...and XDP carries the rest of it.
        let run = uplink_xdp(&lab, &from_outside(TCP_ACK));
        assert_xdp_verdict(&run, XDP_REDIRECT);
        let ip = Pkt(&run.out).ip();
        assert_eq!((ip.daddr(), ip.dport()), (IP_A, 80));
        assert_eq!((ip.saddr(), ip.sport()), (REMOTE_IP, 50000));
        ip.assert_checksums("published-port packet after XDP DNAT");
    });
}

#[test]
fn without_a_config_everything_passes() {
    in_private_netns(|_net| {
        let mut dp = Datapath::load();
        load_xdp(&mut dp);
        let frame = udp_reply(40000, b"x");
        let run = xdp_run(&dp, 1, &frame);
        assert_xdp_verdict(&run, XDP_PASS);
        run.assert_frame_unchanged(&frame);
        dp.assert_counted_once(PASS_XDP_TO_TC, &frame);
    });
}
