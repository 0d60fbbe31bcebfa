//! XDP on the uplink (`ebridge up --xdp generic|native`): the common case
//! of the reverse path — a whole IPv4 TCP/UDP/ICMP-echo-reply packet to the
//! uplink address that belongs to a tracked flow — un-NATed before an skb
//! exists and redirected into the container's host veth (whose peer, the
//! container's interface, takes XDP frames through veth NAPI).
//!
//! Everything else goes on to the TC program unchanged (`XDP_PASS`): new
//! published-port flows, ICMP errors, fragments, TTL about to expire,
//! frames longer than the bridge MTU (GSO packets in generic mode),
//! TCP/UDP with a partial checksum (offload state an XDP frame cannot
//! carry), anything not IPv4. The conntrack lookup and accounting are
//! `conntrack::on_reply`, the same function TC uses; nothing is changed
//! before the packet is known to be ours, so a passed packet is never
//! accounted twice.
use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::{bpf_ktime_get_ns, bpf_redirect},
    macros::xdp,
    programs::XdpContext,
};
use ebridge_common::{
    config::BridgeConfig,
    nat::{NatKey, DIR_REPLY, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, OWNER_CONTAINER},
    stats::*,
};

use crate::{
    conntrack, csum,
    ipv4::{self, Frag, Ipv4},
    l4::{self, L4},
    maps::{CONFIG, NAT},
    packet::{self, Frame, ETH_LEN, ETH_P_IPV4},
    stats::{count, xdp_drop, xdp_pass},
};

/// Where the bytes the rewrite touches sit; all bounds-checked before the
/// flow is looked up.
struct Fields {
    ip: *mut network_types::ip::Ipv4Hdr,
    /// The L4 checksum (TCP 16, UDP 6, ICMP 2 bytes into the header).
    csum: *mut [u8; 2],
    /// Destination port, or the ICMP echo identifier.
    dport: *mut [u8; 2],
}

#[xdp]
pub fn uplink_xdp(ctx: XdpContext) -> u32 {
    let Some(cfg) = CONFIG.get(0) else {
        return xdp_pass(&ctx, PASS_XDP_TO_TC);
    };
    match reply(&ctx, cfg) {
        Ok(action) => action,
        // Not for XDP: the TC program decides, as without XDP.
        Err(reason) => xdp_pass(&ctx, reason),
    }
}

#[inline(always)]
fn reply(ctx: &XdpContext, cfg: &BridgeConfig) -> Result<u32, u32> {
    let eth = packet::eth(ctx).map_err(|_| PASS_XDP_TO_TC)?;
    if packet::ether_type(eth) != ETH_P_IPV4 {
        return Err(PASS_XDP_TO_TC);
    }
    // Generic mode sees whole GSO packets (up to 64 KB); redirecting one
    // into a veth fails with EMSGSIZE after we return. TC handles them at
    // one program run per GSO packet anyway.
    if ctx.frame_len() > ETH_LEN as u32 + cfg.mtu {
        return Err(PASS_XDP_TO_TC);
    }
    let ip = ipv4::parse(ctx).map_err(|_| PASS_XDP_TO_TC)?;
    if ip.frag != Frag::Whole
        || !ipv4::ipv4_eq(&ip.daddr, &cfg.uplink_ipv4)
        // The kernel answers with time-exceeded (TC passes it on).
        || ip.ttl <= 1
    {
        return Err(PASS_XDP_TO_TC);
    }
    let ports = l4::parse(ctx, &ip).map_err(|_| PASS_XDP_TO_TC)?;
    if ip.proto == IPPROTO_ICMP
        && l4::icmp_type(ctx, &ip).map_err(|_| PASS_XDP_TO_TC)? != l4::ICMP_ECHO_REPLY
    {
        return Err(PASS_XDP_TO_TC);
    }
    let fields = fields(ctx, &ip, &ports)?;
    if ip.proto != IPPROTO_ICMP {
        // parse() checked tot_len >= IHL.
        let tot_len = u16::from_be_bytes(unsafe { (*fields.ip).tot_len });
        let l4_len = tot_len - (ip.l4_off - ETH_LEN) as u16;
        let field = u16::from_ne_bytes(unsafe { *fields.csum });
        if csum::is_partial(field, ip.saddr, ip.daddr, ip.proto, l4_len) {
            return Err(PASS_XDP_CSUM_PARTIAL);
        }
    }
    let key = NatKey {
        saddr: ip.saddr,
        daddr: ip.daddr,
        sport: ports.sport,
        dport: ports.dport,
        proto: ip.proto,
        dir: DIR_REPLY,
        _pad: [0; 2],
    };
    let now = unsafe { bpf_ktime_get_ns() };
    // No entry: nothing was touched, TC decides. An entry: it has been
    // accounted (and its TCP state followed), so the packet is ours.
    let entry = NAT.get_ptr_mut(key).ok_or(PASS_XDP_TO_TC)?;
    // The node's and other bridges' flows are TC's to pass on.
    if unsafe { (*entry).owner } != OWNER_CONTAINER {
        return Err(PASS_XDP_TO_TC);
    }
    conntrack::on_reply(&key, entry, now, ports.tcp_flags, ctx.frame_len());
    let (addr, port, ifindex, mac) =
        unsafe { ((*entry).addr, (*entry).port, (*entry).ifindex, (*entry).mac) };
    rewrite(&ip, &ports, &fields, addr, port);
    unsafe {
        let eth = &mut *eth;
        eth.dst_addr = mac;
        eth.src_addr = cfg.bridge_mac;
    }
    let rc = unsafe { bpf_redirect(ifindex, 0) };
    if rc != i64::from(xdp_action::XDP_REDIRECT) {
        return Ok(xdp_drop(ctx, DROP_REDIRECT_FAILED));
    }
    count(ctx, FWD_XDP_REVNAT);
    Ok(xdp_action::XDP_REDIRECT)
}

/// Bounds-checked pointers to everything the rewrite writes. A TCP header
/// shorter than 20 bytes or a truncated UDP/ICMP header is TC's to judge.
#[inline(always)]
fn fields(ctx: &XdpContext, ip: &Ipv4, ports: &L4) -> Result<Fields, u32> {
    let csum_off = match ip.proto {
        IPPROTO_TCP => ip.l4_off + 16,
        IPPROTO_UDP => ip.l4_off + 6,
        _ => ip.l4_off + 2,
    };
    Ok(Fields {
        ip: packet::ipv4(ctx).map_err(|_| PASS_XDP_TO_TC)?,
        csum: packet::header_at(ctx, csum_off).map_err(|_| PASS_XDP_TO_TC)?,
        dport: packet::header_at(ctx, ports.dport_off).map_err(|_| PASS_XDP_TO_TC)?,
    })
}

/// Destination address and port back to the container's, TTL down by one,
/// and both checksums updated incrementally (RFC 1624).
#[inline(always)]
fn rewrite(ip: &Ipv4, ports: &L4, f: &Fields, addr: [u8; 4], port: u16) {
    let old_addr = u32::from_ne_bytes(ip.daddr);
    let new_addr = u32::from_ne_bytes(addr);
    unsafe {
        let l4 = u16::from_ne_bytes(*f.csum);
        let new = match ip.proto {
            // Covers the pseudo header (the address) and the port.
            IPPROTO_TCP => {
                csum::replace16(csum::replace32(l4, old_addr, new_addr), ports.dport, port)
            }
            IPPROTO_UDP => csum::udp_fixup(
                l4,
                csum::replace16(csum::replace32(l4, old_addr, new_addr), ports.dport, port),
            ),
            // ICMP covers its own bytes only: the identifier.
            _ => csum::replace16(l4, ports.dport, port),
        };
        *f.csum = new.to_ne_bytes();
        *f.dport = port.to_ne_bytes();

        let hdr = &mut *f.ip;
        let old_ttl = u16::from_ne_bytes([ip.ttl, ip.proto]);
        let new_ttl = u16::from_ne_bytes([ip.ttl - 1, ip.proto]);
        let check = u16::from_ne_bytes(hdr.check);
        let check = csum::replace16(csum::replace32(check, old_addr, new_addr), old_ttl, new_ttl);
        hdr.check = check.to_ne_bytes();
        hdr.ttl = ip.ttl - 1;
        hdr.dst_addr = addr;
    }
}
