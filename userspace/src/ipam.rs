//! Address and MAC assignment for endpoints.
use std::{collections::HashSet, net::Ipv4Addr};

use anyhow::Result;
use ipnet::Ipv4Net;

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
