//! The network config a runtime hands the plugin (`"type": "ebridge"`),
//! read key by key so a bad value is refused naming the key and the value
//! (CNI error 7). Keys are named like the reference `bridge` plugin's
//! where they mean the same; unknown keys are ignored, as the reference
//! plugins ignore them.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rscni_types::{
    error::Error,
    types::{Dns, Ipam, NetConf, RuntimeConf},
};
use serde_json::{Map, Value};

use crate::{cmd::up::Requested, settings};

/// What ebridge makes of one network config.
#[derive(Debug)]
pub struct NetworkConfig {
    /// The standard part: name, cniVersion, ipam, dns, runtimeConfig,
    /// prevResult, capabilities.
    pub net: NetConf,
    /// Datapath settings: what `ebridge up` would be given.
    pub up: Requested,
    /// Addresses from ebridge's own allocator, or from this IPAM plugin.
    pub ipam: Option<Ipam>,
    pub dns: Option<Dns>,
}

fn invalid(key: &str, value: &Value, expected: &str) -> Error {
    Error::InvalidNetworkConfig(format!("{key}: {value} is not valid; expected {expected}"))
}

/// Parses stdin's config. Decode failures are CNI error 6, values ebridge
/// cannot use error 7.
pub fn parse(stdin: &[u8]) -> Result<NetworkConfig, Error> {
    let raw: Value = serde_json::from_slice(stdin)
        .map_err(|e| Error::FailedToDecode(format!("network config is not JSON: {e}")))?;
    let Some(obj) = raw.as_object() else {
        return Err(Error::FailedToDecode(
            "network config is not a JSON object".to_string(),
        ));
    };
    // ebridge's own keys first: their messages name key and value.
    let up = requested(obj)?;
    let net: NetConf = serde_json::from_value(raw.clone())
        .map_err(|e| Error::InvalidNetworkConfig(format!("network config: {e}")))?;
    if let Some(ipam) = &net.ipam {
        if ipam.r#type.is_empty() {
            return Err(Error::InvalidNetworkConfig(
                "ipam.type is empty; name an IPAM plugin (e.g. host-local) or leave ipam out to use ebridge's own allocator".to_string(),
            ));
        }
        if up.subnet.is_some() || up.gateway.is_some() {
            return Err(Error::InvalidNetworkConfig(
                "subnet/gateway and ipam are both given; give the addresses to one of them"
                    .to_string(),
            ));
        }
    }
    Ok(NetworkConfig {
        ipam: net.ipam.clone(),
        dns: net.dns.clone(),
        up,
        net,
    })
}

/// The datapath keys. Each value is checked here with the same rules
/// `ebridge up` applies to its flags, so the message names the key.
fn requested(obj: &Map<String, Value>) -> Result<Requested, Error> {
    let string = |key: &str, expected: &str| -> Result<Option<String>, Error> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(invalid(key, v, expected)),
        }
    };
    let number = |key: &str, expected: &str| -> Result<Option<u64>, Error> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| invalid(key, v, expected)),
        }
    };
    let boolean = |key: &str| -> Result<Option<bool>, Error> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(invalid(key, v, "true or false")),
        }
    };
    // Reuses `up`'s own checks; their messages name the value and what
    // would be accepted, so only the key is added.
    let checked = |key: &str, value: &Value, result: anyhow::Result<()>| -> Result<(), Error> {
        result.map_err(|e| Error::InvalidNetworkConfig(format!("{key}: {value}: {e}")))
    };

    let bridge = string("bridge", "an interface name")?
        .unwrap_or_else(|| settings::DEFAULT_BRIDGE.to_string());
    checked(
        "bridge",
        &Value::from(bridge.clone()),
        settings::interface_name("bridge", &bridge),
    )?;
    let subnet = string("subnet", "an IPv4 CIDR such as \"172.17.0.0/16\"")?;
    if let Some(s) = &subnet {
        checked(
            "subnet",
            &Value::from(s.clone()),
            settings::subnet(s).map(|_| ()),
        )?;
    }
    let gateway = string("gateway", "an IPv4 address in the subnet")?;
    if let Some(g) = &gateway {
        let net = settings::subnet(subnet.as_deref().unwrap_or(settings::DEFAULT_SUBNET))
            .map_err(|e| Error::InvalidNetworkConfig(format!("subnet: {e}")))?;
        checked(
            "gateway",
            &Value::from(g.clone()),
            settings::gateway(Some(g), net).map(|_| ()),
        )?;
    }
    let subnet_v6 = string("subnet6", "an IPv6 CIDR such as \"fd00:dead:beef::/64\"")?;
    if let Some(s) = &subnet_v6 {
        checked(
            "subnet6",
            &Value::from(s.clone()),
            settings::subnet6(s).map(|_| ()),
        )?;
    }
    let gateway_v6 = string("gateway6", "an IPv6 address in subnet6")?;
    if let Some(g) = &gateway_v6 {
        let Some(net) = &subnet_v6 else {
            return Err(invalid(
                "gateway6",
                &Value::from(g.clone()),
                "it together with subnet6 (the IPv6 subnet it is an address of)",
            ));
        };
        let net = settings::subnet6(net)
            .map_err(|e| Error::InvalidNetworkConfig(format!("subnet6: {e}")))?;
        checked(
            "gateway6",
            &Value::from(g.clone()),
            settings::gateway6(Some(g), net).map(|_| ()),
        )?;
    }
    let uplink = string("uplink", "an interface name")?;
    if let Some(u) = &uplink {
        checked(
            "uplink",
            &Value::from(u.clone()),
            settings::interface_name("uplink", u),
        )?;
    }
    let mtu = number("mtu", "a number, 68-65535")?
        .map(|m| {
            let v = Value::from(m);
            u32::try_from(m)
                .map_err(|_| invalid("mtu", &v, "68-65535"))
                .and_then(|m| checked("mtu", &v, settings::mtu(m).map(|_| ())).map(|_| m))
        })
        .transpose()?;
    let fdb_ageing = number("fdbAgeing", "seconds, a whole number")?;
    if let Some(secs) = fdb_ageing {
        checked(
            "fdbAgeing",
            &Value::from(secs),
            settings::fdb_ageing(secs).map(|_| ()),
        )?;
    }
    let nat_ports = string("natPorts", "\"MIN-MAX\", e.g. \"32768-60999\"")?;
    if let Some(p) = &nat_ports {
        checked(
            "natPorts",
            &Value::from(p.clone()),
            settings::nat_ports(p).map(|_| ()),
        )?;
    }
    let nat_entries = number("natEntries", "a number of NAT table entries")?
        .map(|n| {
            let v = Value::from(n);
            u32::try_from(n)
                .map_err(|_| invalid("natEntries", &v, "a number of NAT table entries"))
                .and_then(|n| {
                    checked("natEntries", &v, settings::nat_entries(n).map(|_| ())).map(|_| n)
                })
        })
        .transpose()?;
    let native_routing_cidrs = match obj.get("nativeRoutingCIDRs") {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) => Some(
            list.iter()
                .map(|v| match v {
                    Value::String(s) => {
                        checked(
                            "nativeRoutingCIDRs",
                            v,
                            settings::cidr("native-routing CIDR", s).map(|_| ()),
                        )?;
                        Ok(s.clone())
                    }
                    _ => Err(invalid(
                        "nativeRoutingCIDRs",
                        v,
                        "a CIDR such as \"10.244.0.0/16\"",
                    )),
                })
                .collect::<Result<Vec<_>, Error>>()?,
        ),
        Some(v) => return Err(invalid("nativeRoutingCIDRs", v, "a list of CIDRs")),
    };
    Ok(Requested {
        bridge,
        subnet,
        gateway,
        uplink,
        mtu,
        fdb_ageing,
        icc: boolean("icc")?,
        masquerade: boolean("ipMasq")?,
        nat_ports,
        nat_entries,
        xdp: None,
        native_routing_cidrs,
        subnet_v6,
        gateway_v6,
        ipv6_masquerade: boolean("ipv6Masquerade")?,
    })
}

/// An address or MAC the runtime asks for: podman's `--ip`/`--mac-address`
/// come as `IP=`/`MAC=` in CNI_ARGS; `runtimeConfig` `ips`/`mac` is the
/// capability form (kubelet, multus).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    pub ip: Option<Ipv4Addr>,
    pub ip6: Option<Ipv6Addr>,
    pub mac: Option<[u8; 6]>,
}

pub fn wanted(args: &[(String, String)], runtime: Option<&RuntimeConf>) -> Result<Wanted, Error> {
    let mut ips: Vec<String> = Vec::new();
    let mut mac = None;
    for (k, v) in args {
        match k.as_str() {
            "IP" => ips.push(v.clone()),
            "MAC" => mac = Some(v.clone()),
            _ => {}
        }
    }
    if let Some(rt) = runtime {
        if let Some(list) = rt.custom.get("ips") {
            let list = list
                .as_array()
                .ok_or_else(|| invalid("runtimeConfig.ips", list, "a list of addresses"))?;
            for ip in list {
                let text = ip.as_str().ok_or_else(|| {
                    invalid("runtimeConfig.ips", ip, "an address such as \"172.17.0.5\"")
                })?;
                ips.push(text.to_string());
            }
        }
        if let Some(m) = rt.custom.get("mac") {
            let text = m.as_str().ok_or_else(|| {
                invalid(
                    "runtimeConfig.mac",
                    m,
                    "a MAC such as \"02:42:ac:11:00:05\"",
                )
            })?;
            mac = Some(text.to_string());
        }
    }
    ips.dedup();
    let (mut ip, mut ip6) = (None, None);
    for text in &ips {
        // runtimeConfig.ips may carry a prefix length ("10.1.0.5/24").
        let addr = text.split('/').next().unwrap_or(text);
        let parsed = addr.parse::<IpAddr>().map_err(|_| {
            Error::InvalidNetworkConfig(format!(
                "requested address {text:?} is not an IPv4 or IPv6 address"
            ))
        })?;
        let slot_taken = match parsed {
            IpAddr::V4(a) => ip.replace(a).is_some(),
            IpAddr::V6(a) => ip6.replace(a).is_some(),
        };
        if slot_taken {
            return Err(Error::InvalidNetworkConfig(format!(
                "asked for the addresses {}; ebridge gives an interface one IPv4 and one IPv6 address",
                ips.join(", ")
            )));
        }
    }
    let mac = mac
        .map(|text| {
            crate::ipam::parse_mac(&text)
                .map_err(|e| Error::InvalidNetworkConfig(format!("requested MAC: {e}")))
        })
        .transpose()?;
    Ok(Wanted { ip, ip6, mac })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> String {
        match parse(json.as_bytes()) {
            Ok(c) => panic!("accepted {json}: {c:?}"),
            Err(e) => format!("{} {e}", u32::from(&e)),
        }
    }

    #[test]
    fn keys_become_up_settings() {
        let c = parse(
            br#"{"cniVersion":"1.0.0","name":"n","type":"ebridge","bridge":"eb1","subnet":"10.5.0.0/24",
                "gateway":"10.5.0.1","mtu":1400,"ipMasq":false,"icc":false,"natPorts":"40000-50000",
                "natEntries":65536,"fdbAgeing":60,"dns":{"nameservers":["10.5.0.1"]}}"#,
        )
        .expect("valid");
        assert_eq!(c.up.bridge, "eb1");
        assert_eq!(c.up.subnet.as_deref(), Some("10.5.0.0/24"));
        assert_eq!(
            (c.up.mtu, c.up.icc, c.up.masquerade),
            (Some(1400), Some(false), Some(false))
        );
        assert_eq!(c.up.nat_ports.as_deref(), Some("40000-50000"));
        assert_eq!((c.up.nat_entries, c.up.fdb_ageing), (Some(65536), Some(60)));
        assert_eq!(c.dns.expect("dns").nameservers, vec!["10.5.0.1"]);
        let d = parse(br#"{"cniVersion":"1.0.0","name":"n","type":"ebridge"}"#).expect("valid");
        assert_eq!(d.up.bridge, "ebr0");
        assert!(d.up.subnet.is_none() && d.ipam.is_none());
    }

    #[test]
    fn bad_values_name_the_key_and_value() {
        let base = r#""cniVersion":"1.0.0","name":"n","type":"ebridge""#;
        let e = err(&format!("{{{base},\"mtu\":\"big\"}}"));
        assert!(
            e.starts_with("7 ") && e.contains("mtu") && e.contains("\"big\""),
            "{e}"
        );
        let e = err(&format!("{{{base},\"mtu\":20}}"));
        assert!(e.contains("mtu: 20"), "{e}");
        let e = err(&format!("{{{base},\"subnet\":\"10.0.0.0/33\"}}"));
        assert!(e.starts_with("7 ") && e.contains("10.0.0.0/33"), "{e}");
        let e = err(&format!("{{{base},\"natPorts\":\"9-1\"}}"));
        assert!(e.contains("natPorts") && e.contains("9-1"), "{e}");
        let e = err(&format!("{{{base},\"icc\":\"yes\"}}"));
        assert!(e.contains("icc") && e.contains("true or false"), "{e}");
        let e = err(&format!("{{{base},\"bridge\":\"a-name-far-too-long\"}}"));
        assert!(e.contains("bridge"), "{e}");
        let e = err(&format!(
            "{{{base},\"subnet\":\"10.0.0.0/24\",\"ipam\":{{\"type\":\"host-local\"}}}}"
        ));
        assert!(e.contains("ipam"), "{e}");
        assert!(err("not json").starts_with("6 "));
        assert!(err(r#"{"name":"n"}"#).starts_with("7 "), "type is required");
    }

    #[test]
    fn wanted_address_and_mac() {
        let args = vec![
            ("IgnoreUnknown".to_string(), "1".to_string()),
            ("IP".to_string(), "172.17.0.9".to_string()),
            ("MAC".to_string(), "02:42:ac:11:00:09".to_string()),
        ];
        let w = wanted(&args, None).expect("valid");
        assert_eq!(w.ip, Some(Ipv4Addr::new(172, 17, 0, 9)));
        assert_eq!(w.mac, Some([2, 0x42, 0xac, 0x11, 0, 9]));
        let rt: RuntimeConf =
            serde_json::from_str(r#"{"ips":["10.1.0.5/24"],"mac":"02:00:00:00:00:01"}"#)
                .expect("rt");
        let w = wanted(&[], Some(&rt)).expect("valid");
        assert_eq!(w.ip, Some(Ipv4Addr::new(10, 1, 0, 5)));
        let two: RuntimeConf =
            serde_json::from_str(r#"{"ips":["10.1.0.5","10.1.0.6"]}"#).expect("rt");
        assert!(wanted(&[], Some(&two)).is_err());
        let both = vec![
            ("IP".to_string(), "172.17.0.9".to_string()),
            ("IP".to_string(), "fd00::9".to_string()),
        ];
        let w = wanted(&both, None).expect("one of each family");
        assert_eq!(w.ip6, Some("fd00::9".parse().unwrap()));
        let bad = vec![("IP".to_string(), "not-an-ip".to_string())];
        assert!(wanted(&bad, None).is_err());
    }
}
