//! `ebridge publish add|rm|ls` and the publishing half of `endpoint add -p`.
use anyhow::{Context as _, Result};
use ebridge_common::nat::{PublishKey, PublishTarget};
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
/// this bridge, or (with `check_listeners`) a socket a node process holds.
pub fn validate(
    parsed: &[PublishSpec],
    st: &BridgeState,
    check_listeners: bool,
) -> Result<Vec<PublishSpec>> {
    publish::check_disjoint(parsed)?;
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
            let addr = l.addr.map_or("*".to_string(), |a| a.to_string());
            return Err(usage(format!(
                "{spec}: a process on the node already uses {}/{addr}:{}; pick other host ports",
                spec.proto_name(),
                l.port
            )));
        }
    }
    Ok(parsed.to_vec())
}

fn keys(spec: &PublishSpec) -> impl Iterator<Item = (PublishKey, u16)> + '_ {
    let addr = spec.host_ip.map_or([0; 4], |a| a.octets());
    spec.ports().map(move |(host, ctr)| {
        (
            PublishKey {
                addr,
                port: host.to_be(),
                proto: spec.proto,
                _pad: 0,
            },
            ctr,
        )
    })
}

/// Writes the spec's ports into the `publish` map; all or nothing.
pub fn install(
    maps: &mut DatapathMaps,
    record: &EndpointRecord,
    ifindex: u32,
    spec: &PublishSpec,
) -> Result<()> {
    let mac = ipam::parse_mac(&record.mac)?;
    for (key, ctr) in keys(spec) {
        let target = PublishTarget {
            addr: record.ipv4.octets(),
            port: ctr.to_be(),
            _pad: [0; 2],
            ifindex,
            mac,
            _pad2: [0; 2],
        };
        if let Err(e) = maps.publish.insert(key, target, 0) {
            let _ = uninstall(maps, spec);
            return Err(e.into());
        }
    }
    Ok(())
}

/// Removes the spec's ports from the `publish` map. Ports already gone
/// are fine; any other failure is reported, since a port left behind
/// would keep forwarding while `publish ls` no longer shows it.
pub fn uninstall(maps: &mut DatapathMaps, spec: &PublishSpec) -> Result<()> {
    for (key, _) in keys(spec) {
        crate::maps::removed_or_absent(maps.publish.remove(&key))
            .with_context(|| format!("cannot remove published port {spec} from the datapath"))?;
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
    let spec = validate(&[publish::parse(spec_text)?], &st, true)?.remove(0);
    let ifindex = host_ifindex(&maps, &st.endpoints[pos])?;
    install(&mut maps, &st.endpoints[pos], ifindex, &spec)?;
    st.endpoints[pos].publish.push(spec.canonical());
    state::save(bridge, &st)?;
    println!("{name}: published {spec}");
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
    uninstall(&mut maps, &spec)?;
    record.publish.remove(pos);
    state::save(bridge, &st)?;
    println!("{name}: unpublished {spec}");
    Ok(())
}

pub async fn ls(bridge: &str, json_out: bool) -> Result<()> {
    let (_maps, _nl) = open_live_bridge(bridge).await?;
    let st = state::load(bridge)?;
    let mut rows = Vec::new();
    for e in &st.endpoints {
        for p in &e.publish {
            if let Ok(spec) = publish::parse(p) {
                rows.push((e.name.clone(), e.ipv4, spec));
            }
        }
    }
    if json_out {
        let out: Vec<_> = rows
            .iter()
            .map(|(name, ip, s)| {
                json!({
                    "endpoint": name,
                    "host_ip": s.host_ip.map_or("0.0.0.0".to_string(), |a| a.to_string()),
                    "host_port": s.host_first,
                    "container_ip": ip.to_string(),
                    "container_port": s.ctr_first,
                    "count": s.count,
                    "proto": s.proto_name(),
                    "spec": s.to_string(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("{:<20} {:<16} PORTS", "ENDPOINT", "IP");
    for (name, ip, spec) in rows {
        println!("{name:<20} {:<16} {spec}", ip.to_string());
    }
    Ok(())
}
