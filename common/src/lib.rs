//! Map keys, values and reason codes shared by the eBPF programs and the
//! `ebridge` userspace. Every type here is `#[repr(C)]` and padding-free so
//! the kernel side, the user side and `bpftool map dump` agree on one layout.
#![no_std]

pub mod config;
pub mod endpoint;
pub mod fdb;
pub mod maps;
pub mod monitor;
pub mod nat;
pub mod routing;
pub mod stats;

#[cfg(feature = "user")]
mod user;
