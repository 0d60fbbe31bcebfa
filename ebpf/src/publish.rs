//! Published ports (`-p [HOSTIP:]HOSTPORT:CTRPORT`): at most two lookups,
//! however many ports are published.
use ebridge_common::nat::{PublishKey, PublishTarget};

use crate::maps::{NODE_ADDRS, PUBLISH};

#[inline(always)]
pub fn is_node_addr(addr: &[u8; 4]) -> bool {
    NODE_ADDRS.get_ptr(*addr).is_some()
}

/// The target of (addr, port, proto): a publish on exactly that address, or
/// one on every address when `addr` is the node's.
#[inline(always)]
pub fn lookup(addr: &[u8; 4], port: u16, proto: u8) -> Option<PublishTarget> {
    let exact = PublishKey {
        addr: *addr,
        port,
        proto,
        _pad: 0,
    };
    if let Some(t) = PUBLISH.get_ptr(exact) {
        return Some(unsafe { *t });
    }
    let any = PublishKey {
        addr: [0; 4],
        port,
        proto,
        _pad: 0,
    };
    let t = PUBLISH.get_ptr(any)?;
    if !is_node_addr(addr) {
        return None;
    }
    Some(unsafe { *t })
}
