//! User-side trait impls: aya needs `Pod` to read and write map entries.
use crate::{
    config::BridgeConfig, endpoint::Endpoint, fdb::FdbEntry, fdb::MacAddr, stats::Counter,
};

macro_rules! pod {
    ($($t:ty),*) => {$(
        // SAFETY: #[repr(C)], only integer fields and byte arrays, no padding
        // (checked by the size assertions below).
        unsafe impl aya::Pod for $t {}
        unsafe impl bytemuck::Zeroable for $t {}
        unsafe impl bytemuck::Pod for $t {}
    )*};
}

pod!(BridgeConfig, Endpoint, FdbEntry, MacAddr, Counter);

const _: () = assert!(core::mem::size_of::<BridgeConfig>() == 48);
const _: () = assert!(core::mem::size_of::<Endpoint>() == 20);
const _: () = assert!(core::mem::size_of::<FdbEntry>() == 16);
const _: () = assert!(core::mem::size_of::<MacAddr>() == 6);
const _: () = assert!(core::mem::size_of::<Counter>() == 16);
