//! Native routing (`up --native-routing-cidr`): a pod's packet to a
//! native-routing CIDR leaves by the FIB's route with its own address
//! (endpoint program); a packet from such a CIDR or from the node's
//! networks reaches the pod by `bpf_redirect_peer` (uplink program); the
//! leak guard lets a pod's address out only towards a native CIDR; a
//! published port's reply to a native-routed source is still un-DNATed.
mod common;

use aya::maps::lpm_trie::{Key, LpmTrie};
use common::{frame::*, nat::*, packet_test::*};
use ebridge_common::{
    config::CONFIG_F_NATIVE_ROUTING,
    maps::MAP_NATIVE_NETS,
    routing::{NATIVE_CIDR, NATIVE_GIVEN, NODE_NETWORK},
    stats::*,
};

/// A pod on another node, whose /24 the routes send to NEXT_HOP.
const REMOTE_POD: [u8; 4] = [10, 244, 2, 5];
/// A host on the node's own network (the uplink's /24).
const NODE_NET_HOST: [u8; 4] = [198, 51, 100, 77];

/// Native routing for 10.244.0.0/16 (with an `unreachable` route for it,
/// as `up` installs, and BGP's route to 10.244.2.0/24), the uplink's
/// network as the node's.
fn lab(net: &TestNet) -> NatLab {
    let mut lab = NatLab::with(net, |cfg| cfg.flags |= CONFIG_F_NATIVE_ROUTING);
    ip(&["route", "add", "unreachable", "10.244.0.0/16"]);
    ip(&["route", "add", "10.244.2.0/24", "via", "198.51.100.2"]);
    let mut nets: LpmTrie<_, [u8; 4], u32> = lab
        .fx
        .dp
        .ebpf_mut()
        .map_mut(MAP_NATIVE_NETS)
        .expect("native_nets")
        .try_into()
        .expect("an LPM trie");
    nets.insert(
        &Key::new(16, [10, 244, 0, 0]),
        NATIVE_CIDR | NATIVE_GIVEN,
        0,
    )
    .expect("native CIDR");
    nets.insert(&Key::new(24, [198, 51, 100, 0]), NODE_NETWORK, 0)
        .expect("node network");
    lab.add_node_addr(UPLINK_IP);
    lab.add_node_addr(GATEWAY_IP);
    lab
}

fn packets(lab: &NatLab, reason: u32) -> u64 {
    lab.dp().stats()[reason as usize].packets
}

/// UDP from container A to `dst`.
fn from_a(dst: [u8; 4]) -> Vec<u8> {
    udp_out(IP_A, 40000, dst, 7000, MAC_A)
}

/// UDP arriving on the uplink from `src` for `dst`.
fn to_node(src: [u8; 4], dst: [u8; 4], dport: u16) -> Vec<u8> {
    let l4 = udp(src, dst, 41000, dport, b"routed in");
    inbound(src, dst, IPPROTO_UDP, &l4)
}

#[test]
fn a_pods_packet_to_a_native_cidr_is_routed_with_its_own_address() {
    in_private_netns(|net| {
        let lab = lab(net);
        let frame = from_a(REMOTE_POD);

        let run = lab.a_sends(&frame);

        run.assert_verdict(TC_ACT_REDIRECT);
        let out = Pkt(&run.out);
        assert_eq!((out.dst_mac(), out.src_mac()), (NEXT_HOP_MAC, UPLINK_MAC));
        let ip = out.ip();
        assert_eq!((ip.saddr(), ip.sport()), (IP_A, 40000), "no masquerade");
        assert_eq!((ip.daddr(), ip.dport()), (REMOTE_POD, 7000));
        assert_eq!(ip.ttl(), 63);
        ip.assert_checksums("routed out");
        lab.dp().assert_counted_once(FWD_ROUTED_OUT, &frame);
        lab.assert_nat_len(0);
        // Other destinations are still masqueraded.
        let (_, port) = lab.open_flow(lab.fx.a, &from_a(REMOTE_IP));
        assert!(port > 0);
    });
}

#[test]
fn a_native_destination_without_a_route_is_the_kernels_to_answer() {
    in_private_netns(|net| {
        let lab = lab(net);
        // Only the unreachable route covers 10.244.9.0/24 (its node's BGP
        // route was withdrawn).
        let frame = from_a([10, 244, 9, 9]);

        let run = lab.a_sends(&frame);

        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&frame);
        lab.dp().assert_counted_once(PASS_FIB_SLOW_PATH, &frame);
        lab.assert_nat_len(0);
    });
}

#[test]
fn packets_from_native_sources_and_the_nodes_network_reach_the_pod() {
    in_private_netns(|net| {
        let lab = lab(net);
        for src in [REMOTE_POD, NODE_NET_HOST] {
            let frame = to_node(src, IP_A, 7000);
            let run = lab.uplink_receives(&frame);
            run.assert_verdict(TC_ACT_REDIRECT);
            let out = Pkt(&run.out);
            assert_eq!((out.dst_mac(), out.src_mac()), (MAC_A, BRIDGE_MAC));
            let ip = out.ip();
            assert_eq!((ip.saddr(), ip.daddr()), (src, IP_A), "untranslated");
            assert_eq!(ip.ttl(), 63);
            ip.assert_checksums("routed in");
        }
        assert_eq!(packets(&lab, FWD_ROUTED_IN), 2);
        // Anyone else is still held off, as without native routing.
        let frame = to_node(REMOTE_IP, IP_A, 7000);
        lab.uplink_receives(&frame).assert_verdict(TC_ACT_SHOT);
        assert_eq!(packets(&lab, DROP_NOT_PUBLISHED), 1);
        // A pod address nobody has: the kernel's to answer.
        let ghost = to_node(REMOTE_POD, IP_UNKNOWN, 7000);
        let run = lab.uplink_receives(&ghost);
        run.assert_verdict(TC_NEXT);
        run.assert_frame_unchanged(&ghost);
        assert_eq!(packets(&lab, PASS_NO_SUCH_POD), 1);
        lab.assert_nat_len(0);
    });
}

#[test]
fn routed_ingress_answers_as_a_router_for_expiring_ttl() {
    in_private_netns(|net| {
        let lab = lab(net);
        let l4 = udp(REMOTE_POD, IP_A, 41000, 7000, b"ttl 1");
        let opts = Ipv4Opts {
            ttl: 1,
            ..Ipv4Opts::default()
        };
        let frame = inbound_with(&opts, REMOTE_POD, IP_A, IPPROTO_UDP, &l4);
        let run = lab.uplink_receives(&frame);
        assert_icmp_answer(&run, &frame, 11, 0);
    });
}

#[test]
fn a_pod_address_leaves_the_uplink_only_towards_a_native_cidr() {
    in_private_netns(|net| {
        let lab = lab(net);
        let native = ethernet(
            NEXT_HOP_MAC,
            UPLINK_MAC,
            ETH_P_IPV4,
            &ipv4(
                IP_A,
                REMOTE_POD,
                IPPROTO_UDP,
                &udp(IP_A, REMOTE_POD, 1, 2, b"x"),
            ),
        );
        let elsewhere = ethernet(
            NEXT_HOP_MAC,
            UPLINK_MAC,
            ETH_P_IPV4,
            &ipv4(
                IP_A,
                REMOTE_IP,
                IPPROTO_UDP,
                &udp(IP_A, REMOTE_IP, 1, 2, b"x"),
            ),
        );
        lab.uplink_sends(&native).assert_verdict(TC_NEXT);
        lab.uplink_sends(&elsewhere).assert_verdict(TC_ACT_SHOT);
        lab.dp().assert_counted_once(DROP_LEAK, &elsewhere);
    });
}

#[test]
fn a_published_ports_reply_to_a_native_routed_pod_is_un_dnated() {
    in_private_netns(|net| {
        let mut lab = lab(net);
        let a = lab.ctr_a();
        lab.publish("8080:80/udp", a);
        // A pod on another node reaches this node's gateway address (in the
        // native CIDR's view, a node address) on the published port.
        let ask = {
            let l4 = udp(REMOTE_POD, GATEWAY_IP, 41000, 8080, b"hello");
            inbound(REMOTE_POD, GATEWAY_IP, IPPROTO_UDP, &l4)
        };
        let run = lab.uplink_receives(&ask);
        run.assert_verdict(TC_ACT_REDIRECT);
        let ip = Pkt(&run.out).ip();
        assert_eq!((ip.daddr(), ip.dport()), (IP_A, 80));

        // The container's answer goes to a native-routed address, yet the
        // flow's entry wins: it leaves as the published address.
        let answer = udp_out(IP_A, 80, REMOTE_POD, 41000, MAC_A);
        let run = lab.a_sends(&answer);
        run.assert_verdict(TC_ACT_REDIRECT);
        let ip = Pkt(&run.out).ip();
        assert_eq!((ip.saddr(), ip.sport()), (GATEWAY_IP, 8080));
        assert_eq!((ip.daddr(), ip.dport()), (REMOTE_POD, 41000));
        ip.assert_checksums("un-DNATed reply");
        // And the leak guard lets it out (towards a native CIDR).
        lab.uplink_sends_marked(&run.out, lab.own_mark())
            .assert_verdict(TC_NEXT);
        assert_eq!(packets(&lab, DROP_LEAK), 0);
    });
}
