//! The transport identifiers NAT keys on: TCP/UDP ports, the ICMP echo
//! identifier.
use ebridge_common::{
    nat::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP},
    stats::*,
};

use crate::{
    ipv4::Ipv4,
    ipv6::IPPROTO_ICMPV6,
    packet::{header_at, Frame},
};

pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
pub const ICMP_PARAM_PROBLEM: u8 = 12;
pub const ICMPV6_ECHO_REQUEST: u8 = 128;
pub const ICMPV6_ECHO_REPLY: u8 = 129;
/// ICMPv6 errors (destination unreachable, packet too big, time exceeded,
/// parameter problem) are the types below 128.
pub const ICMPV6_INFO_MIN: u8 = 128;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// The whole UDP header: NAT rewrites its checksum, so it must all be there.
#[repr(C)]
struct UdpHead {
    src: u16,
    dst: u16,
    len: u16,
    csum: u16,
}

/// The fixed 20 bytes of TCP, up to and including the checksum NAT rewrites.
#[repr(C)]
struct TcpHead {
    src: u16,
    dst: u16,
    seq: u32,
    ack: u32,
    off: u8,
    flags: u8,
    win: u16,
    csum: u16,
    urg: u16,
}

#[repr(C)]
pub struct IcmpHead {
    pub ty: u8,
    pub code: u8,
    pub csum: u16,
    pub id: u16,
    pub seq: u16,
}

/// Ports in network order, plus where each sits in the frame.
#[derive(Clone, Copy)]
pub struct L4 {
    pub sport: u16,
    pub dport: u16,
    pub sport_off: usize,
    pub dport_off: usize,
    pub tcp_flags: u8,
    /// An ICMP echo reply (the identifier is the destination "port").
    pub echo_reply: bool,
}

#[inline(always)]
pub fn is_icmp_error(ty: u8) -> bool {
    ty == ICMP_DEST_UNREACH || ty == ICMP_TIME_EXCEEDED || ty == ICMP_PARAM_PROBLEM
}

#[inline(always)]
pub fn icmp_type(ctx: &impl Frame, ip: &Ipv4) -> Result<u8, u32> {
    let icmp = header_at::<IcmpHead>(ctx, ip.l4_off).map_err(|_| DROP_TRUNCATED)?;
    Ok(unsafe { (*icmp).ty })
}

/// TCP, UDP, or ICMP echo. For echo the identifier is the source "port" of
/// a request and the destination "port" of a reply, so both directions key
/// the same way; the other "port" is zero and `*_off` point at the id.
#[inline(always)]
pub fn parse(ctx: &impl Frame, ip: &Ipv4) -> Result<L4, u32> {
    parse_at(ctx, ip.proto, ip.l4_off, ip.end)
}

/// `parse` for a transport header of `proto` at `off`, which must end by
/// `end` (the IP payload's end: trailing bytes are padding, not header).
/// ICMPv6 echo (128/129) keys like ICMP echo.
#[inline(always)]
pub fn parse_at(ctx: &impl Frame, proto: u8, off: usize, end: usize) -> Result<L4, u32> {
    let need = match proto {
        IPPROTO_TCP => core::mem::size_of::<TcpHead>(),
        IPPROTO_UDP => core::mem::size_of::<UdpHead>(),
        _ => core::mem::size_of::<IcmpHead>(),
    };
    if off + need > end {
        return Err(DROP_TRUNCATED);
    }
    match proto {
        IPPROTO_TCP => {
            let tcp = header_at::<TcpHead>(ctx, off).map_err(|_| DROP_TRUNCATED)?;
            let tcp = unsafe { &*tcp };
            Ok(L4 {
                sport: tcp.src,
                dport: tcp.dst,
                sport_off: off,
                dport_off: off + 2,
                tcp_flags: tcp.flags,
                echo_reply: false,
            })
        }
        IPPROTO_UDP => {
            let udp = header_at::<UdpHead>(ctx, off).map_err(|_| DROP_TRUNCATED)?;
            let udp = unsafe { &*udp };
            Ok(L4 {
                sport: udp.src,
                dport: udp.dst,
                sport_off: off,
                dport_off: off + 2,
                tcp_flags: 0,
                echo_reply: false,
            })
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            let icmp = header_at::<IcmpHead>(ctx, off).map_err(|_| DROP_TRUNCATED)?;
            let icmp = unsafe { &*icmp };
            let (request, reply) = if proto == IPPROTO_ICMP {
                (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY)
            } else {
                (ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY)
            };
            match icmp.ty {
                ty if ty == request => Ok(L4 {
                    sport: icmp.id,
                    dport: 0,
                    sport_off: off + 4,
                    dport_off: off + 4,
                    tcp_flags: 0,
                    echo_reply: false,
                }),
                ty if ty == reply => Ok(L4 {
                    sport: 0,
                    dport: icmp.id,
                    sport_off: off + 4,
                    dport_off: off + 4,
                    tcp_flags: 0,
                    echo_reply: true,
                }),
                _ => Err(DROP_NAT_UNSUPPORTED),
            }
        }
        _ => Err(DROP_NAT_UNSUPPORTED),
    }
}
