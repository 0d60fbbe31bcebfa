//! Address and MAC assignment for endpoints.
use std::{
    collections::HashSet,
    net::{Ipv4Addr, Ipv6Addr},
};

use anyhow::Result;
use ipnet::{Ipv4Net, Ipv6Net};

use crate::{error::usage, settings};

/// The lowest host address of `subnet` that is neither the gateway nor taken.
pub fn next_free(
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    taken: &HashSet<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    let first = u32::from(settings::first_host(subnet));
    let last = u32::from(settings::last_host(subnet));
    (first..=last)
        .map(Ipv4Addr::from)
        .find(|a| *a != gateway && !taken.contains(a))
}

/// A requested address must be a free host address of the subnet.
pub fn check_requested(
    addr: Ipv4Addr,
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    taken: &HashSet<Ipv4Addr>,
) -> Result<()> {
    settings::host_in_subnet("address", addr, subnet)?;
    if addr == gateway {
        return Err(usage(format!(
            "address {addr} is the bridge's gateway; pick another host address of {subnet}"
        )));
    }
    if taken.contains(&addr) {
        let hint = next_free(subnet, gateway, taken)
            .map(|a| format!("; {a} is free"))
            .unwrap_or_default();
        return Err(usage(format!(
            "address {addr} is already taken by another endpoint{hint}"
        )));
    }
    Ok(())
}

/// How many IPv6 addresses `next_free6` tries: a node never holds more
/// endpoints than this, and a /64 is never walked to its end.
const IPV6_PROBES: u128 = 1 << 20;

/// The lowest host address of an IPv6 subnet that is neither the gateway
/// nor taken (sequential, as Docker assigns from `--fixed-cidr-v6`).
pub fn next_free6(
    subnet: Ipv6Net,
    gateway: Ipv6Addr,
    taken: &HashSet<Ipv6Addr>,
) -> Option<Ipv6Addr> {
    let first = u128::from(settings::first_host6(subnet));
    let last = u128::from(subnet.broadcast());
    (first..=last.min(first + IPV6_PROBES))
        .map(Ipv6Addr::from)
        .find(|a| *a != gateway && !taken.contains(a))
}

/// A requested IPv6 address must be a free host address of the subnet.
pub fn check_requested6(
    addr: Ipv6Addr,
    subnet: Ipv6Net,
    gateway: Ipv6Addr,
    taken: &HashSet<Ipv6Addr>,
) -> Result<()> {
    settings::host_in_subnet6("IPv6 address", addr, subnet)?;
    if addr == gateway {
        return Err(usage(format!(
            "IPv6 address {addr} is the bridge's gateway; pick another host address of {subnet}"
        )));
    }
    if taken.contains(&addr) {
        let hint = next_free6(subnet, gateway, taken)
            .map(|a| format!("; {a} is free"))
            .unwrap_or_default();
        return Err(usage(format!(
            "IPv6 address {addr} is already taken by another endpoint{hint}"
        )));
    }
    Ok(())
}

/// The link-local address the kernel forms from a MAC with
/// `addr_gen_mode` 0 (modified EUI-64, RFC 4291 appendix A).
pub fn link_local_for_mac(mac: [u8; 6]) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o[0] = 0xfe;
    o[1] = 0x80;
    o[8] = mac[0] ^ 0x02;
    o[9] = mac[1];
    o[10] = mac[2];
    o[11] = 0xff;
    o[12] = 0xfe;
    o[13] = mac[3];
    o[14] = mac[4];
    o[15] = mac[5];
    Ipv6Addr::from(o)
}

/// Docker's scheme: 02:42 followed by the IPv4 address, so the MAC is unique
/// on the bridge as long as the address is.
pub fn mac_for_ip(addr: Ipv4Addr) -> [u8; 6] {
    let o = addr.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

pub fn parse_mac(text: &str) -> Result<[u8; 6]> {
    let bad = || {
        usage(format!(
            "MAC '{text}' is not valid; expected six hex octets like 02:42:ac:11:00:02, unicast and not all zero"
        ))
    };
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (slot, part) in mac.iter_mut().zip(parts) {
        if part.len() != 2 {
            return Err(bad());
        }
        *slot = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if mac[0] & 1 == 1 || mac == [0; 6] {
        return Err(bad());
    }
    Ok(mac)
}

pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_assignment_and_link_local() {
        let net: Ipv6Net = "fd00:1::/64".parse().unwrap();
        let gw: Ipv6Addr = "fd00:1::1".parse().unwrap();
        let mut taken = HashSet::new();
        assert_eq!(
            next_free6(net, gw, &taken).unwrap().to_string(),
            "fd00:1::2"
        );
        taken.insert("fd00:1::2".parse().unwrap());
        assert_eq!(
            next_free6(net, gw, &taken).unwrap().to_string(),
            "fd00:1::3"
        );
        let e = check_requested6("fd00:1::2".parse().unwrap(), net, gw, &taken).unwrap_err();
        assert!(e.to_string().contains("fd00:1::3 is free"), "{e}");
        assert!(check_requested6(gw, net, gw, &taken).is_err());
        assert_eq!(
            link_local_for_mac([0x02, 0x42, 0xac, 0x11, 0x00, 0x02]).to_string(),
            "fe80::42:acff:fe11:2"
        );
    }

    #[test]
    fn next_free_skips_gateway_and_taken() {
        let net: Ipv4Net = "10.0.0.0/29".parse().unwrap();
        let gw = Ipv4Addr::new(10, 0, 0, 1);
        let mut taken = HashSet::new();
        assert_eq!(next_free(net, gw, &taken), Some(Ipv4Addr::new(10, 0, 0, 2)));
        taken.insert(Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(next_free(net, gw, &taken), Some(Ipv4Addr::new(10, 0, 0, 3)));
        for i in 3..=6 {
            taken.insert(Ipv4Addr::new(10, 0, 0, i));
        }
        assert_eq!(next_free(net, gw, &taken), None);
    }

    #[test]
    fn requested_address_rules() {
        let net: Ipv4Net = "10.0.0.0/24".parse().unwrap();
        let gw = Ipv4Addr::new(10, 0, 0, 1);
        let taken: HashSet<_> = [Ipv4Addr::new(10, 0, 0, 2)].into();
        assert!(check_requested(Ipv4Addr::new(10, 0, 0, 9), net, gw, &taken).is_ok());
        let e = check_requested(Ipv4Addr::new(10, 0, 0, 2), net, gw, &taken).unwrap_err();
        assert!(e.to_string().contains("already taken"), "{e}");
        assert!(e.to_string().contains("10.0.0.3 is free"), "{e}");
        assert!(check_requested(gw, net, gw, &taken).is_err());
        assert!(check_requested(Ipv4Addr::new(10, 0, 1, 2), net, gw, &taken).is_err());
        assert!(check_requested(Ipv4Addr::new(10, 0, 0, 255), net, gw, &taken).is_err());
    }

    #[test]
    fn macs() {
        assert_eq!(
            format_mac(&mac_for_ip(Ipv4Addr::new(172, 17, 0, 2))),
            "02:42:ac:11:00:02"
        );
        assert_eq!(
            parse_mac("02:42:AC:11:00:02").unwrap(),
            [2, 0x42, 0xac, 0x11, 0, 2]
        );
        assert!(parse_mac("01:00:5e:00:00:01").is_err(), "multicast");
        assert!(parse_mac("00:00:00:00:00:00").is_err());
        assert!(parse_mac("02:42:ac:11:00").is_err());
        assert!(parse_mac("02:42:ac:11:00:zz").is_err());
    }
}
