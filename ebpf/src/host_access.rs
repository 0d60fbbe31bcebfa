//! Entry programs on the cgroup v2 root: processes of the node reaching a
//! published port (127.0.0.1:8080, [::1]:8080, NODEIP:8080) are sent to
//! the container
//! at connect/sendmsg time — no userland proxy, no per-packet NAT. They act
//! only on sockets of the node's network namespace (by netns cookie), so
//! every other namespace on the machine is left alone.
use aya_ebpf::{
    helpers::generated::{bpf_get_netns_cookie, bpf_get_socket_cookie},
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
    EbpfContext,
};
use ebridge_common::nat::{SockRewrite, SockRewrite6, IPPROTO_UDP};

use crate::{
    maps::{CONFIG, SOCK_REWRITES, SOCK_REWRITES6},
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

#[cgroup_sock_addr(connect6)]
pub fn host_connect6(ctx: SockAddrContext) -> i32 {
    to_published6(&ctx);
    PROCEED
}

#[cgroup_sock_addr(sendmsg6)]
pub fn host_sendmsg6(ctx: SockAddrContext) -> i32 {
    to_published6(&ctx);
    PROCEED
}

#[cgroup_sock_addr(recvmsg6)]
pub fn host_recvmsg6(ctx: SockAddrContext) -> i32 {
    if !in_node_netns(&ctx) {
        return PROCEED;
    }
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let Some(rw) = SOCK_REWRITES6.get_ptr(cookie) else {
        return PROCEED;
    };
    let rw = unsafe { &*rw };
    let sa = unsafe { &mut *ctx.sock_addr };
    let target = words(&rw.target_addr);
    let same = (0..4).all(|i| sa.user_ip6[i] == target[i]);
    if same && sa.user_port as u16 == rw.target_port {
        let orig = words(&rw.orig_addr);
        sa.user_ip6[0] = orig[0];
        sa.user_ip6[1] = orig[1];
        sa.user_ip6[2] = orig[2];
        sa.user_ip6[3] = orig[3];
        sa.user_port = u32::from(rw.orig_port);
    }
    PROCEED
}

/// An address as the four network-order words `bpf_sock_addr` holds.
#[inline(always)]
fn words(a: &[u8; 16]) -> [u32; 4] {
    let w = |i: usize| u32::from_ne_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]]);
    [w(0), w(4), w(8), w(12)]
}

#[inline(always)]
fn bytes(w: [u32; 4]) -> [u8; 16] {
    let mut a = [0u8; 16];
    for (i, word) in w.iter().enumerate() {
        a[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
    }
    a
}

#[inline(always)]
fn to_published6(ctx: &SockAddrContext) {
    if !in_node_netns(ctx) {
        return;
    }
    let sa = unsafe { &mut *ctx.sock_addr };
    // The kernel only lets the program read user_ip6 a word at a time.
    let addr = bytes([
        sa.user_ip6[0],
        sa.user_ip6[1],
        sa.user_ip6[2],
        sa.user_ip6[3],
    ]);
    let port = sa.user_port as u16;
    let proto = sa.protocol as u8;
    let Some(target) = publish::lookup(&addr, port, proto) else {
        return;
    };
    let to = words(&target.addr);
    sa.user_ip6[0] = to[0];
    sa.user_ip6[1] = to[1];
    sa.user_ip6[2] = to[2];
    sa.user_ip6[3] = to[3];
    sa.user_port = u32::from(target.port);
    if proto == IPPROTO_UDP {
        let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
        let rw = SockRewrite6 {
            orig_addr: addr,
            orig_port: port,
            target_port: target.port,
            target_addr: target.addr,
        };
        let _ = SOCK_REWRITES6.insert(cookie, rw, 0);
    }
}
