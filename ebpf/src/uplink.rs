//! Entry programs on the uplink: TC ingress does reverse NAT, TC egress is
//! the leak guard that iptables' MASQUERADE rule used to guarantee.
use aya_ebpf::{
    bindings::TC_ACT_OK, helpers::generated::bpf_ktime_get_ns, macros::classifier,
    programs::TcContext,
};
use ebridge_common::{config::CONFIG_F_MASQUERADE, stats::*};

use crate::{
    ipv4,
    maps::CONFIG,
    packet::{self, ETH_P_IPV4},
    revnat,
    stats::{drop, pass},
};

#[classifier]
pub fn uplink_ingress(ctx: TcContext) -> i32 {
    packet::ensure_linear(&ctx);
    let Some(cfg) = CONFIG.get(0) else {
        return TC_ACT_OK;
    };
    let Ok(eth) = packet::eth(&ctx) else {
        return pass(&ctx, PASS_UPLINK_HOST);
    };
    if packet::ether_type(eth) != ETH_P_IPV4 {
        return pass(&ctx, PASS_UPLINK_HOST);
    }
    let now = unsafe { bpf_ktime_get_ns() };
    revnat::from_uplink(&ctx, cfg, now)
}

/// Nothing with a container source address leaves un-NATed while
/// masquerade is on, whatever path (kernel forwarding included) got it here.
#[classifier]
pub fn uplink_egress(ctx: TcContext) -> i32 {
    let Some(cfg) = CONFIG.get(0) else {
        return TC_ACT_OK;
    };
    if cfg.flags & CONFIG_F_MASQUERADE == 0 {
        return TC_ACT_OK;
    }
    let Ok(eth) = packet::eth(&ctx) else {
        return TC_ACT_OK;
    };
    if packet::ether_type(eth) != ETH_P_IPV4 {
        return TC_ACT_OK;
    }
    let Ok(ip) = packet::ipv4(&ctx) else {
        return TC_ACT_OK;
    };
    if ipv4::in_subnet(unsafe { &(*ip).src_addr }, cfg) {
        return drop(&ctx, DROP_LEAK);
    }
    TC_ACT_OK
}
