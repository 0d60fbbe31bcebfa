//! `-p [HOSTIP:]HOSTPORT[-END]:CTRPORT[-END][/tcp|/udp]`, as `docker run -p`
//! takes it (an IPv6 host IP in brackets), and the checks that keep two
//! publishes (or a publish and a node process) off the same port.
use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use anyhow::Result;
use ebridge_common::nat::{IPPROTO_TCP, IPPROTO_UDP};

use crate::error::usage;

const ACCEPTED: &str = "expected [HOSTIP:]HOSTPORT[-END]:CTRPORT[-END][/tcp|/udp], e.g. 8080:80, 127.0.0.1:9000-9009:9000-9009/udp or [::]:8080:80";

/// Which node addresses a publish answers on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostIp {
    /// No host IP given: every address of both families, as Docker
    /// publishes on 0.0.0.0 and [::].
    Any,
    /// `0.0.0.0`: every IPv4 address.
    AnyV4,
    /// `[::]`: every IPv6 address.
    AnyV6,
    /// One address.
    Ip(IpAddr),
}

impl HostIp {
    /// The addresses as `docker port` lists them: unspecified for "every".
    pub fn bindings(&self) -> Vec<IpAddr> {
        match *self {
            HostIp::Any => vec![
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            ],
            HostIp::AnyV4 => vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)],
            HostIp::AnyV6 => vec![IpAddr::V6(Ipv6Addr::UNSPECIFIED)],
            HostIp::Ip(a) => vec![a],
        }
    }

    /// Whether the two can answer on one address.
    fn meets(&self, other: &HostIp) -> bool {
        self.bindings().iter().any(|a| {
            other.bindings().iter().any(|b| {
                a.is_ipv4() == b.is_ipv4() && (a == b || a.is_unspecified() || b.is_unspecified())
            })
        })
    }

    /// Whether it answers on `addr` (None: every address of both).
    fn covers(&self, addr: Option<IpAddr>) -> bool {
        match addr {
            None => true,
            Some(a) => self.meets(&HostIp::Ip(a)),
        }
    }
}

/// `[v6]` in brackets, as `docker port` writes it.
pub fn fmt_host(addr: &IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishSpec {
    pub host_ip: HostIp,
    pub host_first: u16,
    pub ctr_first: u16,
    /// Ports in the range (1 for a single port).
    pub count: u16,
    pub proto: u8,
}

impl PublishSpec {
    /// (host port, container port) pairs.
    pub fn ports(&self) -> impl Iterator<Item = (u16, u16)> + '_ {
        (0..self.count).map(|i| (self.host_first + i, self.ctr_first + i))
    }

    pub fn proto_name(&self) -> &'static str {
        if self.proto == IPPROTO_UDP {
            "udp"
        } else {
            "tcp"
        }
    }

    fn range(&self, first: u16) -> String {
        if self.count == 1 {
            first.to_string()
        } else {
            format!("{first}-{}", first + (self.count - 1))
        }
    }

    /// The form `parse` reads back (kept in the state file).
    pub fn canonical(&self) -> String {
        let ip = match self.host_ip {
            HostIp::Any => String::new(),
            HostIp::AnyV4 => "0.0.0.0:".to_string(),
            HostIp::AnyV6 => "[::]:".to_string(),
            HostIp::Ip(a) => format!("{}:", fmt_host(&a)),
        };
        format!(
            "{ip}{}:{}/{}",
            self.range(self.host_first),
            self.range(self.ctr_first),
            self.proto_name()
        )
    }

    /// One binding as `docker port` shows it: 0.0.0.0:8080->80/tcp.
    pub fn binding(&self, host: &IpAddr) -> String {
        format!(
            "{}:{}->{}/{}",
            fmt_host(host),
            self.range(self.host_first),
            self.range(self.ctr_first),
            self.proto_name()
        )
    }

    /// Same protocol, overlapping host ports, and addresses that meet
    /// (equal, or either one "every address").
    pub fn overlaps(&self, other: &PublishSpec) -> bool {
        let addrs_meet = self.host_ip.meets(&other.host_ip);
        let (a0, a1) = (
            u32::from(self.host_first),
            u32::from(self.host_first) + u32::from(self.count),
        );
        let (b0, b1) = (
            u32::from(other.host_first),
            u32::from(other.host_first) + u32::from(other.count),
        );
        self.proto == other.proto && addrs_meet && a0 < b1 && b0 < a1
    }
}

impl fmt::Display for PublishSpec {
    /// `docker ps` style: 0.0.0.0:8080->80/tcp, [::]:8080->80/tcp.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all: Vec<String> = self
            .host_ip
            .bindings()
            .iter()
            .map(|a| self.binding(a))
            .collect();
        f.write_str(&all.join(", "))
    }
}

/// The host IP part of a spec: an IPv4 address or an IPv6 one in brackets.
fn parse_host_ip(spec: &str, text: &str) -> Result<HostIp> {
    let bad = || {
        usage(format!(
            "host IP '{text}' in '{spec}' is not an IPv4 address or an IPv6 address in brackets; {ACCEPTED}"
        ))
    };
    let ip: IpAddr = match text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        Some(v6) => IpAddr::V6(v6.parse().map_err(|_| bad())?),
        None => IpAddr::V4(text.parse().map_err(|_| bad())?),
    };
    Ok(match ip {
        IpAddr::V4(a) if a.is_unspecified() => HostIp::AnyV4,
        IpAddr::V6(a) if a.is_unspecified() => HostIp::AnyV6,
        a => HostIp::Ip(a),
    })
}

fn port_range(spec: &str, text: &str) -> Result<(u16, u16)> {
    let one = |p: &str| -> Result<u16> {
        let n: u32 = p.parse().map_err(|_| {
            usage(format!(
                "port '{p}' in '{spec}' is not a number; {ACCEPTED}"
            ))
        })?;
        if !(1..=65535).contains(&n) {
            return Err(usage(format!(
                "port {n} in '{spec}' is out of range; ports are 1 to 65535"
            )));
        }
        Ok(n as u16)
    };
    match text.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if a > b {
                return Err(usage(format!(
                    "port range {text} in '{spec}' is reversed; write it as LOW-HIGH"
                )));
            }
            Ok((a, b))
        }
        None => {
            let p = one(text)?;
            Ok((p, p))
        }
    }
}

pub fn parse(spec: &str) -> Result<PublishSpec> {
    let (body, proto) = match spec.rsplit_once('/') {
        Some((body, "tcp")) => (body, IPPROTO_TCP),
        Some((body, "udp")) => (body, IPPROTO_UDP),
        Some((_, other)) => {
            return Err(usage(format!(
                "protocol '{other}' in '{spec}' is not supported; use tcp or udp"
            )))
        }
        None => (spec, IPPROTO_TCP),
    };
    // An IPv6 host IP is in brackets, so its colons are not separators.
    let (host_ip, rest) = match body.strip_prefix('[') {
        Some(after) => match after.split_once("]:") {
            Some((ip, rest)) => (Some(parse_host_ip(spec, &format!("[{ip}]"))?), rest),
            None => return Err(usage(format!("'{spec}' is not a port publish; {ACCEPTED}"))),
        },
        None => (None, body),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (host_ip, host, ctr) = match (host_ip, parts.as_slice()) {
        (Some(ip), [host, ctr]) => (ip, *host, *ctr),
        (None, [host, ctr]) => (HostIp::Any, *host, *ctr),
        (None, [ip, host, ctr]) => (parse_host_ip(spec, ip)?, *host, *ctr),
        _ => return Err(usage(format!("'{spec}' is not a port publish; {ACCEPTED}"))),
    };
    if host.is_empty() || ctr.is_empty() {
        return Err(usage(format!(
            "'{spec}' names no host or container port; {ACCEPTED}"
        )));
    }
    let (h0, h1) = port_range(spec, host)?;
    let (c0, c1) = port_range(spec, ctr)?;
    if h1 - h0 != c1 - c0 {
        return Err(usage(format!(
            "'{spec}' maps {} host ports to {} container ports; the ranges must be the same length",
            h1 - h0 + 1,
            c1 - c0 + 1
        )));
    }
    Ok(PublishSpec {
        host_ip,
        host_first: h0,
        ctr_first: c0,
        count: h1 - h0 + 1,
        proto,
    })
}

/// Specs of one request must not overlap each other.
pub fn check_disjoint(specs: &[PublishSpec]) -> Result<()> {
    for (i, a) in specs.iter().enumerate() {
        for b in &specs[i + 1..] {
            if a.overlaps(b) {
                return Err(usage(format!(
                    "published ports {a} and {b} overlap; publish each host port once"
                )));
            }
        }
    }
    Ok(())
}

/// A socket of the node listening on (or, for UDP, bound to) a port.
#[derive(Debug, PartialEq, Eq)]
pub struct Listener {
    pub proto: u8,
    /// None: every address of both families (`::` without V6ONLY, as
    /// /proc shows it, or 0.0.0.0 — which a publish on [::] cannot meet
    /// anyway, so the difference does not matter for clashes).
    pub addr: Option<IpAddr>,
    pub port: u16,
}

/// Listening TCP and bound UDP sockets of this network namespace, from
/// /proc/net/{tcp,udp}{,6}.
pub fn node_listeners() -> Result<Vec<Listener>> {
    Ok(listeners(crate::proc_net::sockets()?))
}

fn listeners(sockets: Vec<crate::proc_net::Socket>) -> Vec<Listener> {
    sockets
        .into_iter()
        .filter(|s| s.state == crate::proc_net::listen_state(s.proto))
        .map(|s| Listener {
            proto: s.proto,
            addr: match s.local_addr {
                crate::proc_net::Addr::V4(a) => Some(IpAddr::V4(a)),
                crate::proc_net::Addr::Any => None,
                crate::proc_net::Addr::V6(a) => Some(IpAddr::V6(a)),
            },
            port: s.local_port,
        })
        .collect()
}

/// Whether a node socket already holds one of the spec's host ports.
pub fn clashing_listener<'a>(
    spec: &PublishSpec,
    listeners: &'a [Listener],
) -> Option<&'a Listener> {
    listeners.iter().find(|l| {
        l.proto == spec.proto
            && spec.ports().any(|(h, _)| h == l.port)
            && spec.host_ip.covers(l.addr)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(spec: &str) -> String {
        parse(spec).unwrap_err().to_string()
    }

    #[test]
    fn docker_forms() {
        let p = parse("8080:80").unwrap();
        assert_eq!(
            (p.host_ip, p.host_first, p.ctr_first, p.count, p.proto),
            (HostIp::Any, 8080, 80, 1, IPPROTO_TCP)
        );
        assert_eq!(p.to_string(), "0.0.0.0:8080->80/tcp, [::]:8080->80/tcp");
        let p = parse("198.51.100.1:8081:80").unwrap();
        assert_eq!(p.host_ip, HostIp::Ip("198.51.100.1".parse().unwrap()));
        let p = parse("9000-9009:9000-9009/udp").unwrap();
        assert_eq!((p.count, p.proto), (10, IPPROTO_UDP));
        assert_eq!(p.ports().last(), Some((9009, 9009)));
        assert_eq!(
            p.binding(&IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            "0.0.0.0:9000-9009->9000-9009/udp"
        );
        assert_eq!(parse(&p.canonical()).unwrap(), p);
        assert_eq!(parse("0.0.0.0:53:53/udp").unwrap().host_ip, HostIp::AnyV4);
    }

    #[test]
    fn ipv6_host_addresses_in_brackets() {
        let p = parse("[::]:8080:80").unwrap();
        assert_eq!(
            (p.host_ip, p.host_first, p.ctr_first),
            (HostIp::AnyV6, 8080, 80)
        );
        assert_eq!(p.to_string(), "[::]:8080->80/tcp");
        let p = parse("[2001:db8::1]:9000-9001:90-91/udp").unwrap();
        assert_eq!(p.host_ip, HostIp::Ip("2001:db8::1".parse().unwrap()));
        assert_eq!(p.to_string(), "[2001:db8::1]:9000-9001->90-91/udp");
        for spec in [
            "[::]:8080:80",
            "[2001:db8::1]:9000:90/udp",
            "0.0.0.0:1:2",
            "1:2",
        ] {
            let p = parse(spec).unwrap();
            assert_eq!(parse(&p.canonical()).unwrap(), p, "{spec}");
        }
        assert!(err("[2001:db8::zz]:80:80").contains("host IP '[2001:db8::zz]'"));
        assert!(err("2001:db8::1:80:80").contains("is not a port publish"));
        assert!(err("[::1]80:80").contains("is not a port publish"));
        assert!(
            err("[::1]:80").contains("names no host or container port")
                || err("[::1]:80").contains("is not a port publish")
        );
    }

    #[test]
    fn families_meet_only_on_their_own_addresses() {
        let any = parse("8080:80").unwrap();
        let v4 = parse("0.0.0.0:8080:80").unwrap();
        let v6 = parse("[::]:8080:80").unwrap();
        let one6 = parse("[2001:db8::1]:8080:80").unwrap();
        assert!(any.overlaps(&v4) && any.overlaps(&v6) && any.overlaps(&one6));
        assert!(!v4.overlaps(&v6) && !v4.overlaps(&one6));
        assert!(v6.overlaps(&one6));
        let listener = Listener {
            proto: IPPROTO_TCP,
            addr: Some("::1".parse().unwrap()),
            port: 8080,
        };
        assert!(clashing_listener(&v6, std::slice::from_ref(&listener)).is_some());
        assert!(clashing_listener(&v4, std::slice::from_ref(&listener)).is_none());
    }

    #[test]
    fn malformed_specs() {
        assert!(err("70000:80").contains("port 70000 in '70000:80' is out of range"));
        assert!(err("abc").contains("'abc' is not a port publish"));
        assert!(err("80:80/sctp").contains("protocol 'sctp'"));
        assert!(err("9000-9009:9000-9008").contains("10 host ports to 9 container ports"));
        assert!(err("9009-9000:80").contains("reversed"));
        assert!(err("1.2.3:80:80").contains("host IP '1.2.3'"));
        assert!(err(":80").contains("names no host or container port"));
        assert!(err("0:80").contains("out of range"));
    }

    #[test]
    fn overlaps() {
        let a = parse("8080:80").unwrap();
        let b = parse("127.0.0.1:8080:81").unwrap();
        let c = parse("8080:80/udp").unwrap();
        let d = parse("8075-8085:8075-8085").unwrap();
        assert!(a.overlaps(&b) && a.overlaps(&d) && !a.overlaps(&c));
        assert!(check_disjoint(&[a, c]).is_ok());
        assert!(check_disjoint(&[a, d])
            .unwrap_err()
            .to_string()
            .contains("overlap"));
        let e = parse("127.0.0.1:8080:80").unwrap();
        let f = parse("198.51.100.1:8080:80").unwrap();
        assert!(!e.overlaps(&f));
    }

    #[test]
    fn proc_net_listeners() {
        let tcp = "  sl  local_address rem_address   st\n\
                   0: 0100007F:1F90 00000000:0000 0A 0\n\
                   1: 00000000:0016 00000000:0000 0A 0\n\
                   2: 0100007F:A000 0100007F:1F90 01 0\n";
        let l = listeners(crate::proc_net::parse(tcp, IPPROTO_TCP));
        assert_eq!(l.len(), 2);
        assert_eq!(
            l[0],
            Listener {
                proto: IPPROTO_TCP,
                addr: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                port: 8080
            }
        );
        assert_eq!(l[1].addr, Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
        let spec = parse("8080:80").unwrap();
        assert!(clashing_listener(&spec, &l).is_some());
        let spec = parse("198.51.100.1:8080:80").unwrap();
        assert!(clashing_listener(&spec, &l).is_none());
        let spec = parse("22:22/udp").unwrap();
        assert!(clashing_listener(&spec, &l).is_none());
    }
}
