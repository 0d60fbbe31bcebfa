//! Routed traffic: with masquerade off (`ebridge up --no-masquerade`), or
//! with masquerade on but a route that does not leave by the uplink, a
//! container's IPv4 to the gateway MAC is the kernel's to route, untouched:
//! TC_NEXT as pass-routed, no conntrack state, whatever the protocol.
mod common;

use common::{frame::*, nat::*, packet_test::*};
use ebridge_common::{config::CONFIG_F_MASQUERADE, stats::*};

/// A LAN behind a second interface: 192.0.2.0/24 on `ebt-lan0`.
const LAN_HOST: [u8; 4] = [192, 0, 2, 50];

fn add_lan() {
    ip(&[
        "link",
        "add",
        "ebt-lan0",
        "type",
        "veth",
        "peer",
        "name",
        "ebt-lan0-p",
    ]);
    ip(&["addr", "add", "192.0.2.1/24", "dev", "ebt-lan0"]);
    ip(&["link", "set", "ebt-lan0", "up"]);
    ip(&["link", "set", "ebt-lan0-p", "up"]);
}

/// The two routed setups: (what, masquerade on, destination).
const SETUPS: [(&str, bool, [u8; 4]); 2] = [
    ("masquerade off, via the uplink", false, REMOTE_IP),
    ("masquerade on, via another interface", true, LAN_HOST),
];

/// Runs `body` once per routed setup, each in its own namespace.
fn in_each_setup(body: impl Fn(&NatLab, &str, [u8; 4]) + Sync) {
    for (what, masquerade, dst) in SETUPS {
        in_private_netns(|net| {
            let lab = NatLab::with(net, |cfg| {
                if !masquerade {
                    cfg.flags &= !CONFIG_F_MASQUERADE;
                }
            });
            add_lan();
            body(&lab, what, dst);
        });
    }
}

fn to_gateway(ip: &[u8]) -> Vec<u8> {
    ethernet(BRIDGE_MAC, MAC_A, ETH_P_IPV4, ip)
}

/// Every frame passes untouched as pass-routed; nothing is tracked.
fn assert_all_routed(lab: &NatLab, what: &str, frames: &[Vec<u8>]) {
    let mut bytes = 0;
    for (i, frame) in frames.iter().enumerate() {
        let run = lab.a_sends(frame);
        assert_eq!(
            run.ret,
            TC_NEXT,
            "{what}: frame {i} not passed: {}",
            lab.dp().stats_summary()
        );
        run.assert_frame_unchanged(frame);
        bytes += frame.len() as u64;
    }
    lab.dp()
        .assert_counters(&[(PASS_ROUTED, frames.len() as u64, bytes)]);
    lab.assert_nat_len(0);
}

#[test]
fn tcp_udp_and_ping_are_routed_untranslated() {
    in_each_setup(|lab, what, dst| {
        let frames = [
            udp_out(IP_A, 40000, dst, 53, MAC_A),
            tcp_out(IP_A, 12345, dst, 443, TCP_SYN, MAC_A),
            icmp_frame(MAC_A, BRIDGE_MAC, IP_A, dst),
        ];
        assert_all_routed(lab, what, &frames);
    });
}

#[test]
fn expiring_ttl_is_left_to_the_kernel() {
    in_each_setup(|lab, what, dst| {
        let opts = Ipv4Opts {
            ttl: 1,
            ..Ipv4Opts::default()
        };
        let l4 = udp(IP_A, dst, 40000, 33434, b"traceroute");
        let frame = to_gateway(&ipv4_with(&opts, IP_A, dst, IPPROTO_UDP, &l4));

        let run = lab.a_sends(&frame);

        assert_eq!(run.ret, TC_NEXT, "{what}");
        run.assert_frame_unchanged(&frame);
        lab.dp().assert_counted_once(PASS_TTL_EXPIRING, &frame);
    });
}

#[test]
fn other_protocols_are_routed() {
    in_each_setup(|lab, what, dst| {
        let mut ts = vec![13, 0, 0, 0, 0x12, 0x34, 0, 1];
        ts.extend_from_slice(&[0; 12]);
        let csum = checksum(&[&ts]);
        ts[2..4].copy_from_slice(&csum.to_be_bytes());
        let frames = [
            to_gateway(&ipv4(IP_A, dst, 47, &[0; 8])),
            to_gateway(&ipv4(IP_A, dst, 132, &[0; 12])),
            to_gateway(&ipv4(IP_A, dst, IPPROTO_ICMP, &ts)),
        ];
        assert_all_routed(lab, what, &frames);
    });
}

#[test]
fn later_fragments_of_a_routed_datagram_are_routed() {
    in_each_setup(|lab, what, dst| {
        let l4 = udp(IP_A, dst, 40000, 53, &[9; 64]);
        let (first, later) = fragments(&Ipv4Opts::default(), IP_A, dst, IPPROTO_UDP, &l4, 32);
        assert_all_routed(lab, what, &[to_gateway(&first), to_gateway(&later)]);
    });
}

#[test]
fn icmp_errors_from_containers_are_routed() {
    in_each_setup(|lab, what, dst| {
        // A datagram dst sent straight to A (no NAT in between).
        let quoted = ipv4(dst, IP_A, IPPROTO_UDP, &udp(dst, IP_A, 53, 40000, b"x"));
        let error = icmp_error(
            ICMP_DEST_UNREACH,
            ICMP_PORT_UNREACH,
            [0; 4],
            &quoted[..IPV4_HLEN + 8],
        );
        let frame = to_gateway(&ipv4(IP_A, dst, IPPROTO_ICMP, &error));
        assert_all_routed(lab, what, &[frame]);
    });
}
