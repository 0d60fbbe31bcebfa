//! How a new masqueraded flow gets its port: its own when free (a
//! privileged one stays privileged, as MASQUERADE keeps it), else random
//! probes over the whole range — so long runs of taken ports (what
//! sequential client ports leave) do not make new flows fail while the
//! range is far from full. Truly exhausted ranges are counted and recorded
//! by destination for the agent. A SYN reopens a flow in TIME_WAIT or
//! CLOSE on the same port.
mod common;

use common::{frame::*, nat::*, packet_test::*};
use ebridge_common::{
    config::CONFIG_F_NAT_PORTS_GIVEN,
    maps::MAP_NAT_NO_PORT,
    nat::{
        NatEntry, NoPortCount, NoPortKey, CT_CLOSED, CT_CLOSING, CT_ESTABLISHED, CT_SYN_SENT,
        NAT_F_FIN_ORIGINAL, NAT_F_FIN_REPLY, OWNER_NODE,
    },
    stats::*,
};

/// A lab whose NAT range is `min..=max`, given explicitly (`--nat-ports`).
fn lab_with_range(net: &TestNet, min: u16, max: u16) -> NatLab {
    NatLab::build(net, 4096, |cfg| {
        cfg.nat_port_min = min;
        cfg.nat_port_max = max;
        cfg.flags |= CONFIG_F_NAT_PORTS_GIVEN;
    })
}

/// Marks `port` towards REMOTE:53/udp as taken.
fn take(lab: &mut NatLab, port: u16) {
    lab.nat_insert(
        &reply_key(IPPROTO_UDP, (REMOTE_IP, 53), port),
        &NatEntry::default(),
    );
}

#[test]
fn probes_find_the_free_ports_behind_a_long_run_of_taken_ones() {
    in_private_netns(|net| {
        let mut lab = lab_with_range(net, 40000, 40999);
        // 80 % of the range taken in one consecutive run, as sequential
        // client ports leave it.
        for port in 40000..40800 {
            take(&mut lab, port);
        }

        let mut got = Vec::new();
        for i in 0..100u16 {
            // Source ports outside the range: every flow must probe.
            let (_, port) = lab.open_flow(lab.fx.a, &udp_out(IP_A, 2000 + i, REMOTE_IP, 53, MAC_A));
            got.push(port);
        }

        assert_eq!(lab.dp().stats()[DROP_NAT_NO_PORT as usize].packets, 0);
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 100, "every flow its own port");
        assert!(
            got.iter().all(|p| (40800..=40999).contains(p)),
            "only free ports were given: {got:?}"
        );
    });
}

#[test]
fn an_exhausted_range_drops_the_flow_and_names_the_destination() {
    in_private_netns(|net| {
        let mut lab = lab_with_range(net, 40000, 40003);
        for port in 40000..=40003 {
            take(&mut lab, port);
        }
        let frame = udp_out(IP_A, 2000, REMOTE_IP, 53, MAC_A);

        let run = lab.a_sends(&frame);

        run.assert_verdict(TC_ACT_SHOT);
        run.assert_frame_unchanged(&frame);
        lab.dp().assert_counted_once(DROP_NAT_NO_PORT, &frame);
        let map: aya::maps::HashMap<_, NoPortKey, NoPortCount> = lab
            .dp()
            .ebpf()
            .map(MAP_NAT_NO_PORT)
            .expect("nat_no_port map")
            .try_into()
            .expect("a hash map");
        let entries: Vec<_> = map.iter().map(|e| e.expect("read")).collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        let (key, count) = entries[0];
        assert_eq!(
            (key.daddr, u16::from_be(key.dport), key.proto),
            (REMOTE_IP, 53, IPPROTO_UDP)
        );
        assert_eq!(count.drops, 1);
        // Four of the range's ports, all taken: nothing new was inserted.
        lab.assert_nat_len(4);
    });
}

#[test]
fn a_privileged_source_port_stays_privileged_by_default() {
    in_private_netns(|net| {
        // The default range (no --nat-ports): MASQUERADE's rule.
        let mut lab = NatLab::build(net, 4096, |cfg| {
            cfg.nat_port_min = 1024;
            cfg.nat_port_max = 65535;
        });
        let (_, kept) = lab.open_flow(lab.fx.a, &udp_out(IP_A, 123, REMOTE_IP, 53, MAC_A));
        assert_eq!(kept, 123, "free: kept");

        // B's 123 and 800 towards the same destination are taken.
        take(&mut lab, 800);
        let (_, low) = lab.open_flow(lab.fx.b, &udp_out(IP_B, 123, REMOTE_IP, 53, MAC_B));
        let (_, high) = lab.open_flow(lab.fx.b, &udp_out(IP_B, 800, REMOTE_IP, 53, MAC_B));
        assert!((1..=511).contains(&low), "below 512 stays below 512: {low}");
        assert!(
            (600..=1023).contains(&high),
            "512-1023 maps to 600-1023: {high}"
        );
        // An unprivileged one goes anywhere in 1024-65535.
        let (_, any) = lab.open_flow(lab.fx.a, &udp_out(IP_A, 40000, REMOTE_IP, 53, MAC_A));
        assert_eq!(any, 40000);
    });
}

#[test]
fn a_given_range_takes_every_port_privileged_ones_too() {
    in_private_netns(|net| {
        let lab = lab_with_range(net, 40000, 40999);
        let (_, port) = lab.open_flow(lab.fx.a, &udp_out(IP_A, 123, REMOTE_IP, 53, MAC_A));
        assert!((40000..=40999).contains(&port), "{port}");
    });
}

#[test]
fn a_node_reservation_is_probed_past_like_any_taken_port() {
    in_private_netns(|net| {
        let mut lab = lab_with_range(net, 40000, 40001);
        lab.nat_insert(
            &reply_key(IPPROTO_UDP, (REMOTE_IP, 53), 40000),
            &NatEntry {
                owner: OWNER_NODE,
                addr: UPLINK_IP,
                port: 40000u16.to_be(),
                ..NatEntry::default()
            },
        );
        let (_, port) = lab.open_flow(lab.fx.a, &udp_out(IP_A, 40000, REMOTE_IP, 53, MAC_A));
        assert_eq!(port, 40001);
    });
}

/// TCP between container A's `sport` and REMOTE:80, both directions.
struct Conn<'a> {
    lab: &'a NatLab,
    sport: u16,
    nat_port: u16,
}

impl Conn<'_> {
    fn out(&self, flags: u8) -> Run {
        self.lab
            .a_sends(&tcp_out(IP_A, self.sport, REMOTE_IP, 80, flags, MAC_A))
    }

    fn back(&self, flags: u8) -> Run {
        let l4 = tcp(REMOTE_IP, UPLINK_IP, 80, self.nat_port, flags, 9, 2, b"");
        self.lab
            .uplink_receives(&inbound(REMOTE_IP, UPLINK_IP, IPPROTO_TCP, &l4))
    }

    fn state(&self) -> (u8, u8) {
        let e = self
            .lab
            .dp()
            .nat_get(&orig_key(IPPROTO_TCP, (IP_A, self.sport), (REMOTE_IP, 80)))
            .expect("original entry");
        (e.state, e.flags)
    }
}

#[test]
fn a_syn_reopens_a_time_wait_flow_on_the_same_port() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let (_, nat_port) = lab.open_flow(
            lab.fx.a,
            &tcp_out(IP_A, 45000, REMOTE_IP, 80, TCP_SYN, MAC_A),
        );
        let c = Conn {
            lab: &lab,
            sport: 45000,
            nat_port,
        };
        c.back(TCP_SYN | TCP_ACK).assert_verdict(TC_ACT_REDIRECT);
        c.out(TCP_ACK);
        assert_eq!(c.state().0, CT_ESTABLISHED);
        c.out(TCP_FIN | TCP_ACK);
        c.back(TCP_FIN | TCP_ACK);
        assert_eq!(
            c.state(),
            (
                CT_CLOSING,
                NAT_F_FIN_ORIGINAL | NAT_F_FIN_REPLY | ebridge_common::nat::NAT_F_REPLIED
            )
        );

        // The container's next connection reuses its port (1024-65535
        // clients cycle through every port in seconds).
        let syn = c.out(TCP_SYN);
        syn.assert_verdict(TC_ACT_REDIRECT);
        assert_eq!(Pkt(&syn.out).ip().sport(), nat_port, "same NAT port");
        assert_eq!(c.state(), (CT_SYN_SENT, 0), "a new connection");
        c.back(TCP_SYN | TCP_ACK).assert_verdict(TC_ACT_REDIRECT);
        assert_eq!(c.state().0, CT_ESTABLISHED);
        lab.assert_nat_len(2);
    });
}

#[test]
fn a_syn_reopens_a_reset_flow() {
    in_private_netns(|net| {
        let lab = NatLab::new(net);
        let (_, nat_port) = lab.open_flow(
            lab.fx.a,
            &tcp_out(IP_A, 45001, REMOTE_IP, 80, TCP_SYN, MAC_A),
        );
        let c = Conn {
            lab: &lab,
            sport: 45001,
            nat_port,
        };
        c.back(TCP_RST | TCP_ACK);
        assert_eq!(c.state().0, CT_CLOSED);
        c.out(TCP_SYN).assert_verdict(TC_ACT_REDIRECT);
        assert_eq!(c.state(), (CT_SYN_SENT, 0));
        c.back(TCP_SYN | TCP_ACK);
        assert_eq!(c.state().0, CT_ESTABLISHED);
    });
}
