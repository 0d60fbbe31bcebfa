//! Hand-built IPv6 frames: the fixed header, extension headers (hop-by-hop,
//! routing, destination options, fragment, AH), UDP and ICMPv6 with their
//! pseudo-header checksums, and the Neighbor Discovery messages a
//! container may (or must not) send.
use super::frame::{checksum, ethernet, ETH_P_IPV6, IPPROTO_UDP};

pub const IPV6_HLEN: usize = 40;
pub const NEXTHDR_HOP: u8 = 0;
pub const NEXTHDR_ROUTING: u8 = 43;
pub const NEXTHDR_FRAGMENT: u8 = 44;
pub const NEXTHDR_AUTH: u8 = 51;
pub const NEXTHDR_NONE: u8 = 59;
pub const NEXTHDR_DEST: u8 = 60;
pub const IPPROTO_ICMPV6: u8 = 58;

pub const ND_ROUTER_SOLICIT: u8 = 133;
pub const ND_ROUTER_ADVERT: u8 = 134;
pub const ND_NEIGHBOR_SOLICIT: u8 = 135;
pub const ND_NEIGHBOR_ADVERT: u8 = 136;
pub const ND_REDIRECT: u8 = 137;
pub const ICMPV6_ECHO_REQUEST: u8 = 128;

pub const UNSPECIFIED: [u8; 16] = [0; 16];
pub const ALL_NODES: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub const ALL_ROUTERS: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
pub const MAC_ALL_NODES: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

/// The solicited-node multicast address of `target` (ff02::1:ffXX:XXXX).
pub fn solicited_node(target: [u8; 16]) -> [u8; 16] {
    let mut a = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 0];
    a[13..].copy_from_slice(&target[13..]);
    a
}

/// The modified EUI-64 link-local address of `mac`.
pub fn link_local(mac: [u8; 6]) -> [u8; 16] {
    [
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 2,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ]
}

/// The IPv6 header and `payload` (extension headers included), with
/// `next` as the first next-header value.
pub fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.push(next);
    p.push(64);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

fn pseudo_header(src: [u8; 16], dst: [u8; 16], proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&(len as u32).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, proto]);
    p
}

/// UDP with its checksum over the IPv6 pseudo-header.
pub fn udp6(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut u = Vec::with_capacity(len);
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&(len as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let sum = checksum(&[&pseudo_header(src, dst, IPPROTO_UDP, len), &u]);
    u[6..8].copy_from_slice(&sum.to_be_bytes());
    u
}

/// An ICMPv6 message (`body` after type, code and checksum).
pub fn icmp6(src: [u8; 16], dst: [u8; 16], ty: u8, code: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(body);
    let sum = checksum(&[&pseudo_header(src, dst, IPPROTO_ICMPV6, m.len()), &m]);
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    m
}

/// A link-layer address option: 1 source, 2 target.
pub fn lladdr_option(kind: u8, mac: [u8; 6]) -> Vec<u8> {
    let mut o = vec![kind, 1];
    o.extend_from_slice(&mac);
    o
}

/// A Neighbor Solicitation body for `target`, then `options`.
pub fn ns_body(target: [u8; 16], options: &[Vec<u8>]) -> Vec<u8> {
    let mut b = vec![0; 4];
    b.extend_from_slice(&target);
    for o in options {
        b.extend_from_slice(o);
    }
    b
}

/// A Neighbor Advertisement body (solicited, override) for `target`.
pub fn na_body(target: [u8; 16], options: &[Vec<u8>]) -> Vec<u8> {
    let mut b = vec![0x60, 0, 0, 0];
    b.extend_from_slice(&target);
    for o in options {
        b.extend_from_slice(o);
    }
    b
}

/// An extension header of `8 * (units + 1)` bytes (hop-by-hop, routing or
/// destination options), padded with PadN.
pub fn ext_header(next: u8, units: u8) -> Vec<u8> {
    let len = 8 * (usize::from(units) + 1);
    let mut h = vec![next, units];
    // PadN over the rest.
    h.push(1);
    h.push((len - 4) as u8);
    h.resize(len, 0);
    h
}

/// A fragment header: `offset` in 8-byte units, `more` fragments.
pub fn frag_header(next: u8, offset: u16, more: bool, id: u32) -> Vec<u8> {
    let mut h = vec![next, 0];
    h.extend_from_slice(&((offset << 3) | u16::from(more)).to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h
}

/// An authentication header with a 12-byte ICV (its length field counts
/// 4-byte units minus 2).
pub fn auth_header(next: u8) -> Vec<u8> {
    let mut h = vec![next, 4, 0, 0];
    h.extend_from_slice(&0x1000u32.to_be_bytes());
    h.extend_from_slice(&1u32.to_be_bytes());
    h.resize(24, 0xab);
    h
}

/// Ethernet + IPv6 + `payload` (which starts with `next`'s header).
pub fn frame6(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 16],
    dst: [u8; 16],
    next: u8,
    payload: &[u8],
) -> Vec<u8> {
    ethernet(dst_mac, src_mac, ETH_P_IPV6, &ipv6(src, dst, next, payload))
}

/// Ethernet + IPv6 + UDP 40000 → 53.
pub fn udp6_frame(src_mac: [u8; 6], dst_mac: [u8; 6], src: [u8; 16], dst: [u8; 16]) -> Vec<u8> {
    frame6(
        src_mac,
        dst_mac,
        src,
        dst,
        IPPROTO_UDP,
        &udp6(src, dst, 40000, 53, b"ebridge v6 test"),
    )
}

/// Ethernet + IPv6 + an ICMPv6 message.
pub fn icmp6_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 16],
    dst: [u8; 16],
    ty: u8,
    body: &[u8],
) -> Vec<u8> {
    frame6(
        src_mac,
        dst_mac,
        src,
        dst,
        IPPROTO_ICMPV6,
        &icmp6(src, dst, ty, 0, body),
    )
}
