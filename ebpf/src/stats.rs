//! Turning a reason code into a TC or XDP verdict, counting it on the way.
use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_SHOT, TC_ACT_UNSPEC},
    programs::{TcContext, XdpContext},
};

use crate::{maps::STATS, packet::Frame};

/// Counts one packet of `ctx`'s length (TC: `skb->len`; XDP: the frame).
#[inline(always)]
pub fn count(ctx: &impl Frame, reason: u32) {
    if let Some(counter) = STATS.get_ptr_mut(reason) {
        // Per-CPU slot: no other writer can race with us.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += u64::from(ctx.frame_len());
        }
    }
}

/// Not ours to keep: on to the next program in the TCX chain (TCX_NEXT),
/// or with none left, to the kernel bridge / stack. TC_ACT_OK would end
/// the chain and hide the packet from other programs on the device
/// (another bridge's uplink program above all).
#[inline(always)]
pub fn pass(ctx: &TcContext, reason: u32) -> i32 {
    count(ctx, reason);
    TC_ACT_UNSPEC
}

#[inline(always)]
pub fn drop(ctx: &TcContext, reason: u32) -> i32 {
    count(ctx, reason);
    crate::monitor::dropped(ctx, reason);
    TC_ACT_SHOT
}

/// XDP: hand the frame on (to TC and the stack).
#[inline(always)]
pub fn xdp_pass(ctx: &XdpContext, reason: u32) -> u32 {
    count(ctx, reason);
    xdp_action::XDP_PASS
}

#[inline(always)]
pub fn xdp_drop(ctx: &XdpContext, reason: u32) -> u32 {
    count(ctx, reason);
    xdp_action::XDP_DROP
}
