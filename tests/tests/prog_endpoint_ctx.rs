//! How `BPF_PROG_TEST_RUN` of a TC program treats `ctx_in`
//! (`struct __sk_buff`), as observed on kernel 6.18 — the rules the other
//! packet tests depend on:
//!
//! * `ifindex` 0 or 1, or no ctx at all: the skb is put on the loopback
//!   device of the caller's netns, so the program sees ifindex 1.
//! * any other `ifindex` is looked up with `dev_get_by_index()` in the
//!   *calling thread's* netns; a device that does not exist there is ENODEV.
//! * only `mark`, `priority`, `ingress_ifindex`, `ifindex`, `cb`, `tstamp`,
//!   `wire_len`, `gso_segs`, `gso_size` and `hwtstamp` may be non-zero;
//!   anything else (even `len` or `protocol`) is EINVAL before the program
//!   runs.
mod common;

use common::{frame::*, packet_test::*};
use ebridge_common::stats::*;

/// A datapath with endpoint A registered on `ifindex`.
fn endpoint_on(ifindex: u32, net: &TestNet) -> Datapath {
    let mut dp = Datapath::load();
    dp.set_config(&default_config(net));
    dp.add_endpoint(ifindex, MAC_A, IP_A);
    dp
}

#[test]
fn veth_ifindex_is_resolved_in_the_threads_netns_and_echoed() {
    in_private_netns(|net| {
        let dp = endpoint_on(net.veth_a, net);
        let frame = arp_request(MAC_A, IP_A, IP_B);

        let run = dp
            .try_run(Some(&SkBuff::on(net.veth_a)), &frame)
            .expect("test run on the veth");

        assert_eq!(run.ctx.ifindex, net.veth_a);
        run.assert_verdict(TC_NEXT);
        dp.assert_counted_once(PASS_MULTICAST, &frame);
        dp.assert_learned(MAC_A, net.veth_a, &run);
    });
}

#[test]
fn no_ctx_or_ifindex_0_or_1_runs_on_loopback() {
    in_private_netns(|net| {
        let lo = ifindex("lo");
        assert_eq!(lo, 1);
        let dp = endpoint_on(lo, net);
        let frame = arp_request(MAC_A, IP_A, IP_B);

        for ctx in [None, Some(SkBuff::on(0)), Some(SkBuff::on(1))] {
            let run = dp.try_run(ctx.as_ref(), &frame).expect("test run");
            assert_eq!(run.ctx.ifindex, 1, "ctx {:?}", ctx.map(|c| c.ifindex));
            run.assert_verdict(TC_NEXT);
        }
        dp.assert_counters(&[(PASS_MULTICAST, 3, 3 * frame.len() as u64)]);
        assert_eq!(dp.fdb_get(MAC_A).map(|e| e.ifindex), Some(1));
    });
}

#[test]
fn ifindex_absent_from_the_threads_netns_is_enodev() {
    in_private_netns(|net| {
        let missing = 4242;
        let dp = endpoint_on(missing, net);
        let frame = arp_request(MAC_A, IP_A, IP_B);

        let err = dp
            .try_run(Some(&SkBuff::on(missing)), &frame)
            .expect_err("the kernel accepted an ifindex with no device");

        assert_eq!(errno(&err), Some(libc::ENODEV), "{err:?}");
        dp.assert_counters(&[]);
    });
}

#[test]
fn only_the_documented_ctx_fields_may_be_set() {
    in_private_netns(|net| {
        let dp = endpoint_on(net.veth_a, net);
        let frame = arp_request(MAC_A, IP_A, IP_B);
        type Set = fn(&mut SkBuff);
        let refused: &[(&str, Set)] = &[
            ("len", |s| s.len = 42),
            ("pkt_type", |s| s.pkt_type = 1),
            ("queue_mapping", |s| s.queue_mapping = 1),
            ("protocol", |s| s.protocol = 0x0608),
            ("vlan_present", |s| s.vlan_present = 1),
            ("vlan_tci", |s| s.vlan_tci = 5),
            ("tc_index", |s| s.tc_index = 1),
            ("hash", |s| s.hash = 1),
            ("tc_classid", |s| s.tc_classid = 1),
            ("data", |s| s.data = 1),
            ("family", |s| s.family = 2),
            ("remote_port", |s| s.remote_port = 1),
            ("tstamp_type", |s| s.tstamp_type = 1),
        ];
        for (field, set) in refused {
            let mut ctx = SkBuff::on(net.veth_a);
            set(&mut ctx);
            let err = dp
                .try_run(Some(&ctx), &frame)
                .err()
                .unwrap_or_else(|| panic!("ctx field {field} was accepted"));
            assert_eq!(errno(&err), Some(libc::EINVAL), "{field}: {err:?}");
        }
        // None of those runs reached the program.
        dp.assert_counters(&[]);

        let accepted = SkBuff {
            mark: 0x42,
            priority: 6,
            ingress_ifindex: net.peer_a,
            cb: [1, 2, 3, 4, 5],
            tstamp: 1_000,
            wire_len: frame.len() as u32 + 100,
            gso_segs: 1,
            gso_size: 1400,
            hwtstamp: 2_000,
            ..SkBuff::on(net.veth_a)
        };
        let run = dp.try_run(Some(&accepted), &frame).expect("allowed fields");
        run.assert_verdict(TC_NEXT);
        assert_eq!(
            (run.ctx.ifindex, run.ctx.mark, run.ctx.priority, run.ctx.cb),
            (net.veth_a, 0x42, 6, [1, 2, 3, 4, 5]),
            "ctx_out does not echo the fields given"
        );
        dp.assert_counted_once(PASS_MULTICAST, &frame);
    });
}
