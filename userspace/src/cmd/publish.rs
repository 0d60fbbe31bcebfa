//! `ebridge publish add|rm|ls` and the publishing half of `endpoint add -p`.
use anyhow::Result;
use std::net::IpAddr;

use ebridge_common::nat::{PublishKeyOf, PublishTargetOf};
use serde_json::json;

use super::open_live_bridge;
use crate::{
    error::usage,
    ipam,
    maps::DatapathMaps,
    publish::{self, PublishSpec},
    state::{self, BridgeState, EndpointRecord},
};

/// Refuses specs that overlap each other, a port already published on
/// this bridge, an IPv6 host address for an endpoint without IPv6, or
/// (with `check_listeners`) a socket a node process holds.
pub fn validate(
    parsed: &[PublishSpec],
    st: &BridgeState,
    check_listeners: bool,
    endpoint_has_ipv6: bool,
) -> Result<Vec<PublishSpec>> {
    publish::check_disjoint(parsed)?;
    if !endpoint_has_ipv6 {
        let v6_only = |s: &&PublishSpec| s.host_ip.bindings().iter().all(IpAddr::is_ipv6);
        if let Some(spec) = parsed.iter().find(v6_only) {
            return Err(usage(format!(
                "{spec} publishes on IPv6 only, and the endpoint has no IPv6 address; bring the bridge up with --subnet-v6, or publish on an IPv4 address"
            )));
        }
    }
    let listeners = if check_listeners {
        publish::node_listeners()?
    } else {
        Vec::new()
    };
    for spec in parsed {
        for record in &st.endpoints {
            for existing in &record.publish {
                let Ok(existing) = publish::parse(existing) else {
                    continue;
                };
                if spec.overlaps(&existing) {
                    return Err(usage(format!(
                        "{spec} overlaps {existing}, already published by endpoint {}; pick other host ports",
                        record.name
                    )));
                }
            }
        }
        if let Some(l) = publish::clashing_listener(spec, &listeners) {
            let addr = l.addr.map_or("*".to_string(), |a| publish::fmt_host(&a));
            return Err(usage(format!(
                "{spec}: a process on the node already uses {}/{addr}:{}; pick other host ports",
                spec.proto_name(),
                l.port
            )));
        }
    }
    Ok(parsed.to_vec())
}

/// One family's map entries for a spec: (key, target) per host port.
fn entries<A: Copy>(
    spec: &PublishSpec,
    host: A,
    ctr_addr: A,
    ifindex: u32,
    mac: [u8; 6],
) -> Vec<PortEntry<A>> {
    spec.ports()
        .map(|(h, c)| {
            (
                PublishKeyOf {
                    addr: host,
                    port: h.to_be(),
                    proto: spec.proto,
                    _pad: 0,
                },
                PublishTargetOf {
                    addr: ctr_addr,
                    port: c.to_be(),
                    _pad: [0; 2],
                    ifindex,
                    mac,
                    _pad2: [0; 2],
                },
            )
        })
        .collect()
}

/// What a spec puts in the `publish` and `publish6` maps for an endpoint:
/// every host port on each address the spec answers on, for each family
/// the endpoint has an address of (unspecified: every node address).
pub struct PortEntries {
    pub v4: Vec<PortEntry<[u8; 4]>>,
    pub v6: Vec<PortEntry<[u8; 16]>>,
}

/// One host port's key and target in the family's `publish` map.
pub type PortEntry<A> = (PublishKeyOf<A>, PublishTargetOf<A>);

pub fn port_entries(
    spec: &PublishSpec,
    record: &EndpointRecord,
    ifindex: u32,
    mac: [u8; 6],
) -> PortEntries {
    let mut out = PortEntries {
        v4: Vec::new(),
        v6: Vec::new(),
    };
    for host in spec.host_ip.bindings() {
        match host {
            IpAddr::V4(h) => out.v4.extend(entries(
                spec,
                h.octets(),
                record.ipv4.octets(),
                ifindex,
                mac,
            )),
            IpAddr::V6(h) => {
                if let Some(ctr) = record.ipv6 {
                    out.v6
                        .extend(entries(spec, h.octets(), ctr.octets(), ifindex, mac));
                }
            }
        }
    }
    out
}

/// Writes the spec's ports into the `publish` maps; all or nothing.
pub fn install(
    maps: &mut DatapathMaps,
    record: &EndpointRecord,
    ifindex: u32,
    spec: &PublishSpec,
) -> Result<()> {
    let mac = ipam::parse_mac(&record.mac)?;
    let e = port_entries(spec, record, ifindex, mac);
    let written =
        e.v4.iter()
            .try_for_each(|(k, t)| maps.publish.insert(k, t, 0))
            .and_then(|_| {
                e.v6.iter()
                    .try_for_each(|(k, t)| maps.publish6.insert(k, t, 0))
            });
    if let Err(e) = written {
        let _ = uninstall(maps, record, spec);
        return Err(e.into());
    }
    Ok(())
}

/// Removes the spec's ports from the `publish` maps. Ports already gone
/// are fine; any other failure is reported, since a port left behind
/// would keep forwarding while `publish ls` no longer shows it.
pub fn uninstall(
    maps: &mut DatapathMaps,
    record: &EndpointRecord,
    spec: &PublishSpec,
) -> Result<()> {
    let e = port_entries(spec, record, 0, [0; 6]);
    let failed = |_| anyhow::anyhow!("cannot remove published port {spec} from the datapath");
    for (k, _) in &e.v4 {
        crate::maps::removed_or_absent(maps.publish.remove(k)).map_err(failed)?;
    }
    for (k, _) in &e.v6 {
        crate::maps::removed_or_absent(maps.publish6.remove(k)).map_err(failed)?;
    }
    Ok(())
}

fn host_ifindex(maps: &DatapathMaps, record: &EndpointRecord) -> Result<u32> {
    let ifindex = maps
        .endpoint_by_ip
        .get(&record.ipv4.octets(), 0)
        .map_err(|_| {
            anyhow::anyhow!("endpoint {} is missing from the datapath maps", record.name)
        })?;
    Ok(ifindex)
}

pub async fn add(bridge: &str, name: &str, spec_text: &str) -> Result<()> {
    let (mut maps, _nl) = open_live_bridge(bridge).await?;
    let _lock = state::lock(bridge)?;
    let mut st = state::load(bridge)?;
    let Some(pos) = st.endpoints.iter().position(|e| e.name == name) else {
        return Err(usage(format!(
            "no endpoint named {name} on bridge {bridge}"
        )));
    };
    let has_v6 = st.endpoints[pos].ipv6.is_some();
    let spec = validate(&[publish::parse(spec_text)?], &st, true, has_v6)?.remove(0);
    let ifindex = host_ifindex(&maps, &st.endpoints[pos])?;
    install(&mut maps, &st.endpoints[pos], ifindex, &spec)?;
    st.endpoints[pos].publish.push(spec.canonical());
    state::save(bridge, &st)?;
    println!("{name}: published {}", shown(&spec, &st.endpoints[pos]));
    Ok(())
}

pub async fn rm(bridge: &str, name: &str, spec_text: &str) -> Result<()> {
    let (mut maps, _nl) = open_live_bridge(bridge).await?;
    let _lock = state::lock(bridge)?;
    let mut st = state::load(bridge)?;
    let spec = publish::parse(spec_text)?;
    let Some(record) = st.endpoints.iter_mut().find(|e| e.name == name) else {
        return Err(usage(format!(
            "no endpoint named {name} on bridge {bridge}"
        )));
    };
    let canonical = spec.canonical();
    let Some(pos) = record.publish.iter().position(|p| *p == canonical) else {
        return Err(usage(format!(
            "endpoint {name} does not publish {spec}; it publishes: {}",
            if record.publish.is_empty() {
                "nothing".to_string()
            } else {
                record.publish.join(", ")
            }
        )));
    };
    uninstall(&mut maps, record, &spec)?;
    record.publish.remove(pos);
    state::save(bridge, &st)?;
    println!("{name}: unpublished {spec}");
    Ok(())
}

/// The spec's bindings the endpoint has, as `docker port` lists them.
pub fn bindings(spec: &PublishSpec, record: &EndpointRecord) -> Vec<IpAddr> {
    spec.host_ip
        .bindings()
        .into_iter()
        .filter(|h| h.is_ipv4() || record.ipv6.is_some())
        .collect()
}

/// `docker ps` style, for the bindings the endpoint has.
pub fn shown(spec: &PublishSpec, record: &EndpointRecord) -> String {
    bindings(spec, record)
        .iter()
        .map(|h| spec.binding(h))
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn ls(bridge: &str, json_out: bool) -> Result<()> {
    let (_maps, _nl) = open_live_bridge(bridge).await?;
    let st = state::load(bridge)?;
    // One row per binding, as `docker port` shows them.
    let mut rows = Vec::new();
    for e in &st.endpoints {
        for p in &e.publish {
            let Ok(spec) = publish::parse(p) else {
                continue;
            };
            for host in bindings(&spec, e) {
                let ctr: IpAddr = match (host, e.ipv6) {
                    (IpAddr::V6(_), Some(v6)) => v6.into(),
                    _ => e.ipv4.into(),
                };
                rows.push((e.name.clone(), host, ctr, spec));
            }
        }
    }
    if json_out {
        let out: Vec<_> = rows
            .iter()
            .map(|(name, host, ctr, s)| {
                json!({
                    "endpoint": name,
                    "host_ip": host.to_string(),
                    "host_port": s.host_first,
                    "container_ip": ctr.to_string(),
                    "container_port": s.ctr_first,
                    "count": s.count,
                    "proto": s.proto_name(),
                    "spec": s.binding(host),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("{:<20} {:<26} PORTS", "ENDPOINT", "IP");
    for (name, host, ctr, spec) in rows {
        println!("{name:<20} {:<26} {}", ctr.to_string(), spec.binding(&host));
    }
    Ok(())
}
