//! Zeroing without `memset`. eBPF's compiler builtins implement `memset`
//! one byte per loop iteration, and LLVM calls it for any zeroing it does
//! not expand itself (`zeroed()`, `write_bytes`, `Default` of a big
//! struct): 64 iterations for the FIB parameters on every packet, more
//! for a new flow's entries. Word stores instead, volatile so LLVM does
//! not merge them back into that call.

/// Zeroes `*p` four bytes at a time. `T` must be a multiple of four bytes
/// and four-aligned (checked at compile time).
#[inline(always)]
pub unsafe fn zero<T>(p: *mut T) {
    const { assert!(size_of::<T>().is_multiple_of(4) && align_of::<T>() >= 4) };
    let words = p as *mut u32;
    for i in 0..size_of::<T>() / 4 {
        unsafe { words.add(i).write_volatile(0) };
    }
}
