//! Test fixtures: network namespaces made per test and always removed, and
//! a handle to run the `ebridge` binary inside them.
pub mod cluster;
pub mod cni;
pub mod containerd;
pub mod lab;
pub mod podman;
pub mod procs;
