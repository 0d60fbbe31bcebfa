// The eBPF programs live in the `ebridge` binary target (main.rs); this empty
// library only exists so userspace/build.rs can depend on the crate and be
// rebuilt when it changes.
#![no_std]
