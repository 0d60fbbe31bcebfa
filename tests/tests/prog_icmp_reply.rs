//! What a router answers for packets it cannot forward, answered by the
//! uplink program for packets bound for containers: a DF packet larger
//! than the container's link gets ICMP fragmentation-needed with that
//! link's MTU; an expiring TTL gets time-exceeded (`prog_revnat.rs`,
//! `prog_dnat.rs`). Only what ebridge would forward is answered.
mod common;

use common::{frame::*, nat::*, packet_test::*};
use ebridge_common::stats::*;

/// Container A's link (and the bridge's MTU) at 1280, as `up --mtu 1280`.
fn small_mtu_lab(net: &TestNet) -> NatLab {
    ip(&["link", "set", "ebt-a", "mtu", "1280"]);
    let mut lab = NatLab::with(net, |cfg| cfg.mtu = 1280);
    lab.add_node_addr(UPLINK_IP);
    lab
}

/// A UDP reply of `len` payload bytes to A's flow on `nat_port`.
fn big_reply(nat_port: u16, len: usize, df: bool) -> Vec<u8> {
    let payload = vec![0x5a; len];
    let l4 = udp(REMOTE_IP, UPLINK_IP, 53, nat_port, &payload);
    let opts = Ipv4Opts {
        frag: if df { IP_DF } else { 0 },
        ..Ipv4Opts::default()
    };
    inbound_with(&opts, REMOTE_IP, UPLINK_IP, IPPROTO_UDP, &l4)
}

#[test]
fn a_df_reply_too_big_for_the_container_gets_frag_needed() {
    in_private_netns(|net| {
        let lab = small_mtu_lab(net);
        let (_, port) = lab.open_flow(lab.fx.a, &udp_out(IP_A, 40000, REMOTE_IP, 53, MAC_A));
        let before = lab
            .dp()
            .nat_get(&reply_key(IPPROTO_UDP, (REMOTE_IP, 53), port))
            .expect("flow");
        let frame = big_reply(port, 1400, true);

        let run = lab.uplink_receives(&frame);

        let rest = assert_icmp_answer(&run, &frame, 3, 4);
        assert_eq!(u16::from_be_bytes([rest[2], rest[3]]), 1280, "next-hop MTU");
        assert_eq!(lab.dp().stats()[FWD_ICMP_FRAG_NEEDED as usize].packets, 1);
        assert_eq!(lab.dp().stats()[FWD_REVNAT as usize].packets, 0);
        // Not delivered, so not accounted to the flow.
        let after = lab
            .dp()
            .nat_get(&reply_key(IPPROTO_UDP, (REMOTE_IP, 53), port))
            .expect("flow");
        assert_eq!(after.packets, before.packets);
    });
}

#[test]
fn replies_that_fit_or_may_be_fragmented_are_delivered() {
    in_private_netns(|net| {
        let lab = small_mtu_lab(net);
        let (_, port) = lab.open_flow(lab.fx.a, &udp_out(IP_A, 40000, REMOTE_IP, 53, MAC_A));
        // Exactly the MTU: 20 + 8 + 1252.
        let fits = lab.uplink_receives(&big_reply(port, 1252, true));
        fits.assert_verdict(TC_ACT_REDIRECT);
        assert_eq!(Pkt(&fits.out).ip().daddr(), IP_A);
        // Too big without DF: the kernel would fragment; it is delivered.
        let no_df = lab.uplink_receives(&big_reply(port, 1400, false));
        no_df.assert_verdict(TC_ACT_REDIRECT);
        assert_eq!(lab.dp().stats()[FWD_ICMP_FRAG_NEEDED as usize].packets, 0);
    });
}

#[test]
fn a_df_packet_too_big_for_a_published_port_gets_frag_needed_and_no_flow() {
    in_private_netns(|net| {
        let mut lab = small_mtu_lab(net);
        let a = lab.ctr_a();
        lab.publish("5353:53/udp", a);
        let payload = vec![0x11; 1400];
        let l4 = udp(REMOTE_IP, UPLINK_IP, 41000, 5353, &payload);
        let frame = inbound(REMOTE_IP, UPLINK_IP, IPPROTO_UDP, &l4);

        let run = lab.uplink_receives(&frame);

        let rest = assert_icmp_answer(&run, &frame, 3, 4);
        assert_eq!(u16::from_be_bytes([rest[2], rest[3]]), 1280);
        lab.assert_nat_len(0);
    });
}

#[test]
fn a_big_df_packet_for_the_node_itself_passes() {
    in_private_netns(|net| {
        let lab = small_mtu_lab(net);
        let payload = vec![0x22; 1400];
        let l4 = udp(REMOTE_IP, UPLINK_IP, 41000, 9999, &payload);
        let frame = inbound(REMOTE_IP, UPLINK_IP, IPPROTO_UDP, &l4);
        let run = lab.uplink_receives(&frame);
        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&frame);
    });
}
