//! Hand-built frames: Ethernet, IPv4 (with a correct header checksum), UDP,
//! ICMP echo, ARP and IPv6. Byte layouts follow the RFCs directly so a test
//! reads as "this frame, on the wire".

pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;
// The datapath's own constants, so a test may glob-import both modules.
pub use ebridge_common::nat::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};
pub const ETH_HLEN: usize = 14;
pub const IPV4_HLEN: usize = 20;
pub const ARP_LEN: usize = 28;
pub const ARP_REQUEST: u16 = 1;
pub const ARP_REPLY: u16 = 2;

pub const BROADCAST: [u8; 6] = [0xff; 6];

pub fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(ETH_HLEN + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// RFC 1071 one's-complement sum, folded and inverted.
pub fn checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in chunks {
        let mut words = chunk.chunks(2);
        for w in &mut words {
            let hi = u32::from(w[0]) << 8;
            let lo = w.get(1).copied().map(u32::from).unwrap_or(0);
            sum += hi | lo;
        }
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// IPv4 header (no options, TTL 64, DF) followed by `payload`.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
    ipv4_with(&Ipv4Opts::default(), src, dst, proto, payload)
}

/// The IPv4 header fields tests vary.
#[derive(Clone, Debug)]
pub struct Ipv4Opts {
    pub ttl: u8,
    pub id: u16,
    /// Flags (DF 0x4000, MF 0x2000) and fragment offset in 8-byte units.
    pub frag: u16,
    /// Option bytes, a multiple of 4 long (IHL = 5 + len / 4).
    pub options: Vec<u8>,
}

impl Default for Ipv4Opts {
    fn default() -> Self {
        Self {
            ttl: 64,
            id: 0x1234,
            frag: IP_DF,
            options: Vec::new(),
        }
    }
}

pub const IP_DF: u16 = 0x4000;
pub const IP_MF: u16 = 0x2000;

/// IPv4 header as `opts` say, with a correct checksum, then `payload`.
pub fn ipv4_with(
    opts: &Ipv4Opts,
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    payload: &[u8],
) -> Vec<u8> {
    assert_eq!(
        opts.options.len() % 4,
        0,
        "IPv4 options must fill 32-bit words"
    );
    let hlen = IPV4_HLEN + opts.options.len();
    let total = (hlen + payload.len()) as u16;
    let mut h = vec![
        0x40 | (hlen / 4) as u8, // version 4, IHL
        0x00,                    // DSCP/ECN
    ];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&opts.id.to_be_bytes());
    h.extend_from_slice(&opts.frag.to_be_bytes());
    h.push(opts.ttl);
    h.push(proto);
    h.extend_from_slice(&[0, 0]); // checksum, filled below
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(&opts.options);
    let csum = checksum(&[&h]);
    h[10..12].copy_from_slice(&csum.to_be_bytes());
    assert_eq!(checksum(&[&h]), 0, "IPv4 header checksum must verify");
    h.extend_from_slice(payload);
    h
}

/// Recomputes the header checksum of the IPv4 packet `ip` after a test
/// changed a header field.
/// (Over the header bytes present, if the IHL says more than there is.)
pub fn fix_ipv4_checksum(ip: &mut [u8]) {
    let hlen = (usize::from(ip[0] & 0x0f) * 4).min(ip.len());
    ip[10..12].copy_from_slice(&[0, 0]);
    let csum = checksum(&[&ip[..hlen]]);
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
}

/// The IPv4 pseudo header of a TCP or UDP checksum.
pub fn pseudo_header(src: [u8; 4], dst: [u8; 4], proto: u8, l4_len: usize) -> Vec<u8> {
    [
        &src[..],
        &dst[..],
        &[0, proto],
        &(l4_len as u16).to_be_bytes()[..],
    ]
    .concat()
}

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

/// TCP segment (20-byte header, no options) with the pseudo-header checksum.
#[allow(clippy::too_many_arguments)]
pub fn tcp(
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut t = Vec::with_capacity(20 + payload.len());
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.push(5 << 4); // data offset 5 words
    t.push(flags);
    t.extend_from_slice(&64240u16.to_be_bytes()); // window
    t.extend_from_slice(&[0, 0]); // checksum
    t.extend_from_slice(&[0, 0]); // urgent pointer
    t.extend_from_slice(payload);
    let pseudo = pseudo_header(src, dst, IPPROTO_TCP, t.len());
    let csum = checksum(&[&pseudo, &t]);
    t[16..18].copy_from_slice(&csum.to_be_bytes());
    t
}

/// UDP datagram whose checksum field is 0 ("no checksum", RFC 768).
pub fn udp_no_checksum(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    let mut u = Vec::with_capacity(len as usize);
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&len.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// UDP datagram with the IPv4 pseudo-header checksum.
pub fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    let mut u = Vec::with_capacity(len as usize);
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&len.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let pseudo = [
        &src[..],
        &dst[..],
        &[0, IPPROTO_UDP],
        &len.to_be_bytes()[..],
    ]
    .concat();
    let mut csum = checksum(&[&pseudo, &u]);
    if csum == 0 {
        csum = 0xffff;
    }
    u[6..8].copy_from_slice(&csum.to_be_bytes());
    u
}

/// ICMP echo request.
pub fn icmp_echo(id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    icmp_echo_typed(ICMP_ECHO_REQUEST, id, seq, payload)
}

/// ICMP echo reply.
pub fn icmp_echo_reply(id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    icmp_echo_typed(ICMP_ECHO_REPLY, id, seq, payload)
}

pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
pub const ICMP_PORT_UNREACH: u8 = 3;
pub const ICMP_FRAG_NEEDED: u8 = 4;

/// ICMP error `ty`/`code` quoting `quoted` (an IPv4 header and at least 8
/// bytes of what followed it, RFC 792). `rest` is the second header word
/// (for fragmentation needed: unused and the next-hop MTU, RFC 1191).
pub fn icmp_error(ty: u8, code: u8, rest: [u8; 4], quoted: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(quoted);
    let csum = checksum(&[&m]);
    m[2..4].copy_from_slice(&csum.to_be_bytes());
    m
}

fn icmp_echo_typed(ty: u8, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(payload);
    let csum = checksum(&[&m]);
    m[2..4].copy_from_slice(&csum.to_be_bytes());
    m
}

/// ARP for IPv4 over Ethernet (28 bytes).
pub fn arp(oper: u16, sha: [u8; 6], spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4]) -> Vec<u8> {
    let mut a = Vec::with_capacity(ARP_LEN);
    a.extend_from_slice(&1u16.to_be_bytes()); // HTYPE Ethernet
    a.extend_from_slice(&ETH_P_IPV4.to_be_bytes()); // PTYPE
    a.push(6); // HLEN
    a.push(4); // PLEN
    a.extend_from_slice(&oper.to_be_bytes());
    a.extend_from_slice(&sha);
    a.extend_from_slice(&spa);
    a.extend_from_slice(&tha);
    a.extend_from_slice(&tpa);
    a
}

/// IPv6 header + UDP (checksum left zero: the program does not look at it).
pub fn ipv6_udp(src: [u8; 16], dst: [u8; 16], payload: &[u8]) -> Vec<u8> {
    let udp_len = (8 + payload.len()) as u16;
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&udp_len.to_be_bytes());
    p.push(IPPROTO_UDP);
    p.push(64);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&40000u16.to_be_bytes());
    p.extend_from_slice(&53u16.to_be_bytes());
    p.extend_from_slice(&udp_len.to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

// ---- whole frames -------------------------------------------------------

/// Ethernet + IPv4 + UDP 40000 → 53 with a small payload.
pub fn udp_frame(src_mac: [u8; 6], dst_mac: [u8; 6], src_ip: [u8; 4], dst_ip: [u8; 4]) -> Vec<u8> {
    let l4 = udp(src_ip, dst_ip, 40000, 53, b"ebridge packet test");
    ethernet(
        dst_mac,
        src_mac,
        ETH_P_IPV4,
        &ipv4(src_ip, dst_ip, IPPROTO_UDP, &l4),
    )
}

/// Ethernet + IPv4 + ICMP echo request (what `ping` sends).
pub fn icmp_frame(src_mac: [u8; 6], dst_mac: [u8; 6], src_ip: [u8; 4], dst_ip: [u8; 4]) -> Vec<u8> {
    let l4 = icmp_echo(0x4242, 1, &[0xab; 56]);
    ethernet(
        dst_mac,
        src_mac,
        ETH_P_IPV4,
        &ipv4(src_ip, dst_ip, IPPROTO_ICMP, &l4),
    )
}

/// Broadcast "who has `tpa`? tell `spa`", sent with Ethernet source `sha`.
pub fn arp_request(sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    ethernet(
        BROADCAST,
        sha,
        ETH_P_ARP,
        &arp(ARP_REQUEST, sha, spa, [0; 6], tpa),
    )
}

/// Unicast "`spa` is at `sha`" to `tha`/`tpa`.
pub fn arp_reply(sha: [u8; 6], spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4]) -> Vec<u8> {
    ethernet(tha, sha, ETH_P_ARP, &arp(ARP_REPLY, sha, spa, tha, tpa))
}

/// Ethernet + IPv6 + UDP.
pub fn ipv6_frame(src_mac: [u8; 6], dst_mac: [u8; 6], src: [u8; 16], dst: [u8; 16]) -> Vec<u8> {
    ethernet(dst_mac, src_mac, ETH_P_IPV6, &ipv6_udp(src, dst, b"v6"))
}
