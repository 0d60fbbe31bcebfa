//! The transport identifiers NAT keys on: TCP/UDP ports, the ICMP echo
//! identifier.
use aya_ebpf::programs::TcContext;
use ebridge_common::{
    nat::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP},
    stats::*,
};

use crate::{ipv4::Ipv4, packet::header_at};

pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
pub const ICMP_PARAM_PROBLEM: u8 = 12;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

#[repr(C)]
struct Ports {
    src: u16,
    dst: u16,
}

/// The first 14 bytes of TCP: enough for the flags.
#[repr(C)]
struct TcpHead {
    src: u16,
    dst: u16,
    seq: u32,
    ack: u32,
    off: u8,
    flags: u8,
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
}

#[inline(always)]
pub fn is_icmp_error(ty: u8) -> bool {
    ty == ICMP_DEST_UNREACH || ty == ICMP_TIME_EXCEEDED || ty == ICMP_PARAM_PROBLEM
}

#[inline(always)]
pub fn icmp_type(ctx: &TcContext, ip: &Ipv4) -> Result<u8, u32> {
    let icmp = header_at::<IcmpHead>(ctx, ip.l4_off).map_err(|_| DROP_TRUNCATED)?;
    Ok(unsafe { (*icmp).ty })
}

/// TCP, UDP, or ICMP echo. For echo the identifier is the source "port" of
/// a request and the destination "port" of a reply, so both directions key
/// the same way; the other "port" is zero and `*_off` point at the id.
#[inline(always)]
pub fn parse(ctx: &TcContext, ip: &Ipv4) -> Result<L4, u32> {
    let off = ip.l4_off;
    match ip.proto {
        IPPROTO_TCP => {
            let tcp = header_at::<TcpHead>(ctx, off).map_err(|_| DROP_TRUNCATED)?;
            let tcp = unsafe { &*tcp };
            Ok(L4 {
                sport: tcp.src,
                dport: tcp.dst,
                sport_off: off,
                dport_off: off + 2,
                tcp_flags: tcp.flags,
            })
        }
        IPPROTO_UDP => {
            let udp = header_at::<Ports>(ctx, off).map_err(|_| DROP_TRUNCATED)?;
            let udp = unsafe { &*udp };
            Ok(L4 {
                sport: udp.src,
                dport: udp.dst,
                sport_off: off,
                dport_off: off + 2,
                tcp_flags: 0,
            })
        }
        IPPROTO_ICMP => {
            let icmp = header_at::<IcmpHead>(ctx, off).map_err(|_| DROP_TRUNCATED)?;
            let icmp = unsafe { &*icmp };
            match icmp.ty {
                ICMP_ECHO_REQUEST => Ok(L4 {
                    sport: icmp.id,
                    dport: 0,
                    sport_off: off + 4,
                    dport_off: off + 4,
                    tcp_flags: 0,
                }),
                ICMP_ECHO_REPLY => Ok(L4 {
                    sport: 0,
                    dport: icmp.id,
                    sport_off: off + 4,
                    dport_off: off + 4,
                    tcp_flags: 0,
                }),
                _ => Err(DROP_NAT_UNSUPPORTED),
            }
        }
        _ => Err(DROP_NAT_UNSUPPORTED),
    }
}
