//! Validation of what the user typed. Pure functions, unit-tested; every
//! error names the bad value and what would be accepted.
use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::Result;
use ipnet::{Ipv4Net, Ipv6Net};

use crate::error::usage;

pub const DEFAULT_BRIDGE: &str = "ebr0";
pub const DEFAULT_SUBNET: &str = "172.17.0.0/16";
pub const DEFAULT_MTU: u32 = 1500;
pub const DEFAULT_FDB_AGEING_SECS: u64 = 300;
/// MASQUERADE's range when none is given (`--to-ports` absent): a
/// container's own port 1024 and above is kept when free, else any free
/// one of 1024-65535; a privileged port stays privileged. Linux's
/// ephemeral range (32768-60999) would give a container whose clients use
/// 1024-65535 fewer than half the ports it needs (docs/datapath.md).
pub const DEFAULT_NAT_PORTS: (u16, u16) = (
    ebridge_common::nat::DEFAULT_NAT_PORT_MIN,
    ebridge_common::nat::DEFAULT_NAT_PORT_MAX,
);
/// Linux's IFNAMSIZ (16) minus the terminating NUL.
pub const MAX_IFNAME_LEN: usize = 15;

/// What the kernel's dev_valid_name() accepts, limited to ASCII: names are
/// bytes to the kernel but characters to whoever reads `ip link`, and '%'
/// is refused too because the kernel treats it as a template ("eth%d") and
/// would create a device under another name.
pub fn interface_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_IFNAME_LEN {
        return Err(usage(format!(
            "{what} name '{}' is {} bytes long; the kernel accepts 1 to {MAX_IFNAME_LEN} bytes",
            name.escape_debug(),
            name.len()
        )));
    }
    if !name.is_ascii() {
        return Err(usage(format!(
            "{what} name '{}' is not ASCII; use ASCII letters, digits and punctuation other than '/', ':' and '%'",
            name.escape_debug()
        )));
    }
    if name == "."
        || name == ".."
        || name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == b'%' || !b.is_ascii_graphic())
    {
        return Err(usage(format!(
            "{what} name '{}' is not a valid interface name; use ASCII letters, digits and punctuation other than '/', ':' and '%', not '.' or '..'",
            name.escape_debug()
        )));
    }
    Ok(())
}

pub fn endpoint_name(name: &str) -> Result<()> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if name.is_empty() || name.len() > 64 || !ok_chars || name.starts_with('.') {
        return Err(usage(format!(
            "endpoint name '{name}' is not valid; use 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'"
        )));
    }
    Ok(())
}

pub fn subnet(text: &str) -> Result<Ipv4Net> {
    let net: Ipv4Net = text.parse().map_err(|_| {
        usage(format!(
            "subnet '{text}' is not an IPv4 CIDR; expected something like {DEFAULT_SUBNET}"
        ))
    })?;
    if net.prefix_len() > 30 {
        return Err(usage(format!(
            "subnet {net} is too small; a prefix of /30 or shorter leaves room for a gateway and an endpoint"
        )));
    }
    if net.addr() != net.network() {
        return Err(usage(format!(
            "subnet {net} has host bits set; did you mean {}?",
            net.trunc()
        )));
    }
    Ok(net)
}

/// The containers' IPv6 subnet (`--subnet-v6`, CNI `subnet6`): global
/// unicast or unique local, /64 to /120 (Docker's `--fixed-cidr-v6` takes
/// any; a prefix longer than /120 leaves too few addresses to be useful).
pub fn subnet6(text: &str) -> Result<Ipv6Net> {
    let net: Ipv6Net = text.parse().map_err(|_| {
        usage(format!(
            "IPv6 subnet '{text}' is not an IPv6 CIDR; expected something like fd00:dead:beef::/64"
        ))
    })?;
    if !(16..=120).contains(&net.prefix_len()) {
        return Err(usage(format!(
            "IPv6 subnet {net} has prefix /{}; use /16 to /120 (a /64 is usual)",
            net.prefix_len()
        )));
    }
    if net.addr() != net.network() {
        return Err(usage(format!(
            "IPv6 subnet {net} has host bits set; did you mean {}?",
            net.trunc()
        )));
    }
    let first = net.network().segments()[0];
    let link_local = first & 0xffc0 == 0xfe80;
    let multicast = first & 0xff00 == 0xff00;
    if link_local || multicast || net.network().is_loopback() || net.network().is_unspecified() {
        return Err(usage(format!(
            "IPv6 subnet {net} is not unicast global or unique local (link-local, multicast, loopback and :: are not); use e.g. fd00:dead:beef::/64"
        )));
    }
    Ok(net)
}

pub fn ipv6(what: &str, text: &str) -> Result<Ipv6Addr> {
    text.parse().map_err(|_| {
        usage(format!(
            "{what} '{text}' is not an IPv6 address; expected something like fd00:dead:beef::2"
        ))
    })
}

/// A usable host address of an IPv6 subnet: not the subnet-router anycast
/// address (all host bits zero).
pub fn host_in_subnet6(what: &str, addr: Ipv6Addr, subnet: Ipv6Net) -> Result<()> {
    if !subnet.contains(&addr) || addr == subnet.network() {
        return Err(usage(format!(
            "{what} {addr} is not a host address of {subnet}; pick one in {}..{}",
            first_host6(subnet),
            subnet.broadcast()
        )));
    }
    Ok(())
}

pub fn first_host6(subnet: Ipv6Net) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(subnet.network()) + 1)
}

/// `--gateway-v6` if given (a host address of the subnet), else its first
/// host address, as Docker picks it.
pub fn gateway6(text: Option<&str>, subnet: Ipv6Net) -> Result<Ipv6Addr> {
    match text {
        Some(text) => {
            let addr = ipv6("IPv6 gateway", text)?;
            host_in_subnet6("IPv6 gateway", addr, subnet)?;
            Ok(addr)
        }
        None => Ok(first_host6(subnet)),
    }
}

/// Any IPv4 network in CIDR form (a route's destination), host bits clear.
pub fn cidr(what: &str, text: &str) -> Result<Ipv4Net> {
    let net: Ipv4Net = text.parse().map_err(|_| {
        usage(format!(
            "{what} '{text}' is not an IPv4 CIDR; expected something like 10.244.0.0/16"
        ))
    })?;
    if net.addr() != net.network() {
        return Err(usage(format!(
            "{what} {net} has host bits set; did you mean {}?",
            net.trunc()
        )));
    }
    if net.prefix_len() == 0 {
        return Err(usage(format!(
            "{what} {net} would route everything natively, masquerading nothing; use --no-masquerade for that"
        )));
    }
    Ok(net)
}

pub fn ipv4(what: &str, text: &str) -> Result<Ipv4Addr> {
    text.parse().map_err(|_| {
        usage(format!(
            "{what} '{text}' is not an IPv4 address; expected dotted quad like 172.17.0.2"
        ))
    })
}

/// A host address of `subnet` (neither network nor broadcast address).
pub fn host_in_subnet(what: &str, addr: Ipv4Addr, subnet: Ipv4Net) -> Result<()> {
    if !subnet.contains(&addr) || addr == subnet.network() || addr == subnet.broadcast() {
        return Err(usage(format!(
            "{what} {addr} is not a host address of subnet {subnet}; use one from {} to {}",
            first_host(subnet),
            last_host(subnet)
        )));
    }
    Ok(())
}

pub fn first_host(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + 1)
}

pub fn last_host(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.broadcast()) - 1)
}

pub fn gateway(text: Option<&str>, subnet: Ipv4Net) -> Result<Ipv4Addr> {
    let Some(text) = text else {
        return Ok(first_host(subnet));
    };
    let addr = ipv4("gateway", text)?;
    host_in_subnet("gateway", addr, subnet)?;
    Ok(addr)
}

pub fn mtu(value: u32) -> Result<u32> {
    if !(68..=65535).contains(&value) {
        return Err(usage(format!(
            "MTU {value} is out of range; IPv4 needs 68 to 65535"
        )));
    }
    Ok(value)
}

pub fn fdb_ageing(secs: u64) -> Result<u64> {
    if !(1..=1_000_000).contains(&secs) {
        return Err(usage(format!(
            "FDB ageing time {secs}s is out of range; use 1 to 1000000 seconds"
        )));
    }
    Ok(secs)
}

/// `MIN-MAX`, both inclusive, 1024 or above.
pub fn nat_ports(text: &str) -> Result<(u16, u16)> {
    let bad = || {
        usage(format!(
            "NAT port range '{text}' is not valid; expected MIN-MAX with 1024 <= MIN <= MAX <= 65535, e.g. 32768-60999"
        ))
    };
    let (min, max) = text.split_once('-').ok_or_else(bad)?;
    let min: u16 = min.trim().parse().map_err(|_| bad())?;
    let max: u16 = max.trim().parse().map_err(|_| bad())?;
    if min < 1024 || min > max {
        return Err(bad());
    }
    Ok((min, max))
}

pub fn nat_entries(n: u32) -> Result<u32> {
    if !(16..=16_777_216).contains(&n) {
        return Err(usage(format!(
            "NAT table size {n} is out of range; use 16 to 16777216 entries (two per flow)"
        )));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(r: Result<impl std::fmt::Debug>) -> String {
        format!("{}", r.unwrap_err())
    }

    #[test]
    fn ipv6_subnets_and_gateways() {
        assert!(subnet6("fd00:dead:beef::/64").is_ok());
        assert!(subnet6("2001:db8:1::/48").is_ok());
        assert!(msg(subnet6("fe80::/64")).contains("link-local"));
        assert!(msg(subnet6("ff02::/64")).contains("unique local"));
        assert!(msg(subnet6("fd00::1/64")).contains("did you mean fd00::/64"));
        assert!(msg(subnet6("fd00::/124")).contains("/16 to /120"));
        assert!(msg(subnet6("10.0.0.0/8")).contains("not an IPv6 CIDR"));
        let net = subnet6("fd00:1::/64").unwrap();
        assert_eq!(gateway6(None, net).unwrap().to_string(), "fd00:1::1");
        assert_eq!(
            gateway6(Some("fd00:1::fe"), net).unwrap().to_string(),
            "fd00:1::fe"
        );
        assert!(msg(gateway6(Some("fd00:2::1"), net)).contains("not a host address"));
        assert!(msg(gateway6(Some("fd00:1::"), net)).contains("not a host address"));
    }

    #[test]
    fn subnet_parsing() {
        assert_eq!(subnet("10.1.0.0/24").unwrap().to_string(), "10.1.0.0/24");
        assert!(msg(subnet("10.1.0.5/24")).contains("did you mean 10.1.0.0/24"));
        assert!(msg(subnet("banana")).contains("'banana' is not an IPv4 CIDR"));
        assert!(msg(subnet("10.0.0.0/31")).contains("too small"));
        assert!(msg(subnet("10.0.0.0/33")).contains("not an IPv4 CIDR"));
    }

    #[test]
    fn gateway_defaults_to_first_host() {
        let net = subnet("172.17.0.0/16").unwrap();
        assert_eq!(gateway(None, net).unwrap(), Ipv4Addr::new(172, 17, 0, 1));
        assert_eq!(
            gateway(Some("172.17.9.9"), net).unwrap(),
            Ipv4Addr::new(172, 17, 9, 9)
        );
        assert!(msg(gateway(Some("10.0.0.1"), net))
            .contains("not a host address of subnet 172.17.0.0/16"));
        assert!(msg(gateway(Some("172.17.255.255"), net)).contains("172.17.0.1 to 172.17.255.254"));
        assert!(msg(gateway(Some("1.2.3"), net)).contains("not an IPv4 address"));
    }

    #[test]
    fn interface_names() {
        assert!(interface_name("bridge", "ebr0").is_ok());
        assert!(interface_name("bridge", "fifteen-chars-x").is_ok());
        assert!(interface_name("bridge", "br_0.x-y+z@w").is_ok());
        assert!(msg(interface_name("bridge", "sixteen-chars-xx")).contains("is 16 bytes long"));
        assert!(msg(interface_name("bridge", "sixteen-chars-xx")).contains("1 to 15 bytes"));
        // 8 characters, 16 bytes: the kernel counts bytes.
        assert!(msg(interface_name("bridge", "éééééééé")).contains("is 16 bytes long"));
        assert!(msg(interface_name("bridge", "ébr0")).contains("is not ASCII"));
        for bad in ["a/b", "a:b", "a b", "a\tb", "br%d", ".", ".."] {
            assert!(
                msg(interface_name("bridge", bad)).contains("not a valid interface name"),
                "{bad}"
            );
        }
        assert!(msg(interface_name("bridge", "")).contains("is 0 bytes long"));
    }

    #[test]
    fn endpoint_names() {
        assert!(endpoint_name("web-1").is_ok());
        assert!(endpoint_name("a b").is_err());
        assert!(endpoint_name(".hidden").is_err());
        assert!(endpoint_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn nat_port_ranges() {
        assert_eq!(nat_ports("32768-60999").unwrap(), (32768, 60999));
        assert_eq!(nat_ports("40000-40000").unwrap(), (40000, 40000));
        assert!(msg(nat_ports("60999-32768")).contains("MIN-MAX"));
        assert!(nat_ports("80-90").is_err());
        assert!(nat_ports("40000").is_err());
        assert!(nat_ports("a-b").is_err());
        assert!(nat_entries(262_144).is_ok());
        assert!(nat_entries(0).is_err());
    }

    #[test]
    fn numeric_ranges() {
        assert!(mtu(1500).is_ok());
        assert!(msg(mtu(67)).contains("68 to 65535"));
        assert!(fdb_ageing(300).is_ok());
        assert!(fdb_ageing(0).is_err());
    }
}
