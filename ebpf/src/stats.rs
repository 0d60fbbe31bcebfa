//! Turning a reason code into a TC verdict, counting it on the way.
use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    programs::TcContext,
};

use crate::maps::STATS;

#[inline(always)]
pub fn count(ctx: &TcContext, reason: u32) {
    if let Some(counter) = STATS.get_ptr_mut(reason) {
        // Per-CPU slot: no other writer can race with us.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += u64::from(ctx.len());
        }
    }
}

/// Hand the frame to the kernel bridge / stack.
#[inline(always)]
pub fn pass(ctx: &TcContext, reason: u32) -> i32 {
    count(ctx, reason);
    TC_ACT_OK
}

#[inline(always)]
pub fn drop(ctx: &TcContext, reason: u32) -> i32 {
    count(ctx, reason);
    TC_ACT_SHOT
}
