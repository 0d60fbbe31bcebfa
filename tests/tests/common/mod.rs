//! Shared by the `prog_*` packet tests (`BPF_PROG_TEST_RUN` of the
//! datapath's programs). Every test binary compiles all of it but uses only
//! part, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod frame;
pub mod frame6;
pub mod nat;
pub mod nat6;
pub mod packet_test;
pub mod publish;
