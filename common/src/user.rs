//! User-side trait impls: aya needs `Pod` to read and write map entries.
use crate::{
    config::BridgeConfig,
    endpoint::Endpoint,
    fdb::{FdbEntry, MacAddr},
    monitor::{MonitorBudget, MonitorEvent},
    nat::{
        Frag6Entry, Frag6Key, FragEntry, FragKey, Nat6Entry, Nat6Key, NatEntry, NatKey, NoPort6Key,
        NoPortCount, NoPortKey, Publish6Key, Publish6Target, PublishKey, PublishTarget,
        SockRewrite, SockRewrite6,
    },
    stats::Counter,
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

pod!(
    BridgeConfig,
    Endpoint,
    FdbEntry,
    MacAddr,
    Counter,
    NatKey,
    NatEntry,
    Nat6Key,
    Nat6Entry,
    NoPort6Key,
    FragKey,
    FragEntry,
    Frag6Key,
    Frag6Entry,
    PublishKey,
    PublishTarget,
    SockRewrite,
    Publish6Key,
    Publish6Target,
    SockRewrite6,
    NoPortKey,
    NoPortCount,
    MonitorEvent,
    MonitorBudget
);

const _: () = assert!(core::mem::size_of::<BridgeConfig>() == 128);
const _: () = assert!(core::mem::size_of::<NatKey>() == 16);
const _: () = assert!(core::mem::size_of::<NatEntry>() == 64);
const _: () = assert!(core::mem::size_of::<Nat6Key>() == 40);
const _: () = assert!(core::mem::size_of::<Nat6Entry>() == 88);
const _: () = assert!(core::mem::size_of::<NoPort6Key>() == 20);
const _: () = assert!(core::mem::size_of::<PublishKey>() == 8);
const _: () = assert!(core::mem::size_of::<PublishTarget>() == 20);
const _: () = assert!(core::mem::size_of::<SockRewrite>() == 12);
const _: () = assert!(core::mem::size_of::<Publish6Key>() == 20);
const _: () = assert!(core::mem::size_of::<Publish6Target>() == 32);
const _: () = assert!(core::mem::size_of::<SockRewrite6>() == 36);
const _: () = assert!(core::mem::size_of::<FragKey>() == 12);
const _: () = assert!(core::mem::size_of::<FragEntry>() == 16);
const _: () = assert!(core::mem::size_of::<Frag6Key>() == 40);
const _: () = assert!(core::mem::size_of::<Frag6Entry>() == 28);
const _: () = assert!(core::mem::size_of::<Endpoint>() == 52);
const _: () = assert!(core::mem::size_of::<FdbEntry>() == 16);
const _: () = assert!(core::mem::size_of::<MacAddr>() == 6);
const _: () = assert!(core::mem::size_of::<Counter>() == 16);
const _: () = assert!(core::mem::size_of::<NoPortKey>() == 8);
const _: () = assert!(core::mem::size_of::<NoPortCount>() == 16);
const _: () = assert!(core::mem::size_of::<MonitorEvent>() == 72);
const _: () = assert!(core::mem::size_of::<MonitorBudget>() == 24);
