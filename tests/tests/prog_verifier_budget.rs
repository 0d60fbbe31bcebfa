//! The verifier explores every path of a program up to a budget of one
//! million instructions; a program near it fails to load on the next
//! change (or the next kernel). Each entry program must stay well below:
//! the NAT port search runs under `bpf_loop` for this reason (as a plain
//! loop it cost 370,000 instructions of endpoint_ingress at 64 probes and
//! exceeded the budget at 128).
mod common;

use common::packet_test::*;
use ebridge_common::maps::*;

/// A quarter of the kernel's BPF_COMPLEXITY_LIMIT_INSNS.
const BUDGET: u32 = 250_000;

#[test]
fn every_tc_program_verifies_well_within_the_budget() {
    in_private_netns(|_net| {
        let mut dp = Datapath::load();
        dp.load_program(PROG_UPLINK_INGRESS);
        dp.load_program(PROG_UPLINK_EGRESS);
        for name in [PROG_ENDPOINT, PROG_UPLINK_INGRESS, PROG_UPLINK_EGRESS] {
            let prog: &aya::programs::SchedClassifier = dp
                .ebpf()
                .program(name)
                .expect("program in the object")
                .try_into()
                .expect("a classifier");
            let verified = prog
                .info()
                .expect("program info")
                .verified_instruction_count()
                .expect("this kernel reports verified_insns");
            assert!(
                verified < BUDGET,
                "{name}: the verifier processed {verified} instructions (budget {BUDGET})"
            );
            eprintln!("{name}: {verified} instructions verified");
        }
    });
}
