//! Published ports (`-p [HOSTIP:]HOSTPORT:CTRPORT`): at most two lookups,
//! however many ports are published, in the family's `publish` map.
use ebridge_common::nat::{PublishKeyOf, PublishTargetOf};

use crate::family::Addr;

#[inline(always)]
pub fn is_node_addr<A: Addr>(addr: &A) -> bool {
    A::node_addrs().get_ptr(*addr).is_some()
}

/// The target of (addr, port, proto): a publish on exactly that address, or
/// one on every address of the family when `addr` is the node's.
#[inline(always)]
pub fn lookup<A: Addr>(addr: &A, port: u16, proto: u8) -> Option<PublishTargetOf<A>> {
    let exact = PublishKeyOf {
        addr: *addr,
        port,
        proto,
        _pad: 0,
    };
    if let Some(t) = A::publish().get_ptr(exact) {
        return Some(unsafe { *t });
    }
    let any = PublishKeyOf {
        addr: A::default(),
        port,
        proto,
        _pad: 0,
    };
    let t = A::publish().get_ptr(any)?;
    if !is_node_addr(addr) {
        return None;
    }
    Some(unsafe { *t })
}
