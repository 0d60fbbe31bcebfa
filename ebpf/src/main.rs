//! ebridge datapath. One entry program per attach point (`endpoint.rs`: TC
//! ingress of every host-side container veth); the logic lives in modules by
//! concern, as Cilium's bpf/lib does.
#![no_std]
#![no_main]

mod antispoof;
mod conntrack;
mod csum;
mod endpoint;
mod family;
mod fdb;
mod fib;
mod frag6;
mod host_access;
mod icmp6_error;
mod icmp6_reply;
mod icmp_error;
mod icmp_reply;
mod ipv4;
mod ipv6;
mod l4;
mod maps;
mod masquerade;
mod masquerade6;
mod mem;
mod monitor;
mod nd;
mod node_flow;
mod packet;
mod publish;
mod revnat;
mod revnat6;
mod routing;
mod stats;
mod uplink;
mod uplink_xdp;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
