//! Entry programs on the cgroup v2 root: processes of the node reaching a
//! published port (127.0.0.1:8080, NODEIP:8080) are sent to the container
//! at connect/sendmsg time — no userland proxy, no per-packet NAT. They act
//! only on sockets of the node's network namespace (by netns cookie), so
//! every other namespace on the machine is left alone.
use aya_ebpf::{
    helpers::generated::{bpf_get_netns_cookie, bpf_get_socket_cookie},
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
    EbpfContext,
};
use ebridge_common::nat::{SockRewrite, IPPROTO_UDP};

use crate::{
    maps::{CONFIG, SOCK_REWRITES},
    publish,
};

/// 1 lets the syscall proceed (with whatever we rewrote).
const PROCEED: i32 = 1;

#[cgroup_sock_addr(connect4)]
pub fn host_connect4(ctx: SockAddrContext) -> i32 {
    to_published(&ctx);
    PROCEED
}

#[cgroup_sock_addr(sendmsg4)]
pub fn host_sendmsg4(ctx: SockAddrContext) -> i32 {
    to_published(&ctx);
    PROCEED
}

/// UDP replies appear to come from the address the client used.
#[cgroup_sock_addr(recvmsg4)]
pub fn host_recvmsg4(ctx: SockAddrContext) -> i32 {
    if !in_node_netns(&ctx) {
        return PROCEED;
    }
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let Some(rw) = SOCK_REWRITES.get_ptr(cookie) else {
        return PROCEED;
    };
    let rw = unsafe { *rw };
    let sa = unsafe { &mut *ctx.sock_addr };
    if sa.user_ip4 == u32::from_ne_bytes(rw.target_addr) && sa.user_port as u16 == rw.target_port {
        sa.user_ip4 = u32::from_ne_bytes(rw.orig_addr);
        sa.user_port = u32::from(rw.orig_port);
    }
    PROCEED
}

#[inline(always)]
fn in_node_netns(ctx: &SockAddrContext) -> bool {
    let Some(cfg) = CONFIG.get(0).filter(|c| c.bridge_ifindex != 0) else {
        return false;
    };
    unsafe { bpf_get_netns_cookie(ctx.as_ptr()) == cfg.netns_cookie }
}

#[inline(always)]
fn to_published(ctx: &SockAddrContext) {
    if !in_node_netns(ctx) {
        return;
    }
    let sa = unsafe { &mut *ctx.sock_addr };
    let addr = sa.user_ip4.to_ne_bytes();
    // user_port holds the network-order port in its low 16 bits.
    let port = sa.user_port as u16;
    let proto = sa.protocol as u8;
    let Some(target) = publish::lookup(&addr, port, proto) else {
        return;
    };
    sa.user_ip4 = u32::from_ne_bytes(target.addr);
    sa.user_port = u32::from(target.port);
    if proto == IPPROTO_UDP {
        let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
        let rw = SockRewrite {
            orig_addr: addr,
            orig_port: port,
            target_port: target.port,
            target_addr: target.addr,
        };
        let _ = SOCK_REWRITES.insert(cookie, rw, 0);
    }
}
