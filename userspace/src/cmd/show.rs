use std::net::Ipv4Addr;

use anyhow::Result;
use ebridge_common::{
    config::{CONFIG_F_ICC, CONFIG_F_MASQUERADE},
    fdb::FDB_F_LOCAL,
    stats::{reason_label, Verdict, REASONS},
};
use serde_json::json;

use super::open_live_bridge;
use crate::{cli::ShowCommand, ipam, netlink::Netlink};

pub async fn run(bridge: &str, what: ShowCommand) -> Result<()> {
    let (maps, nl) = open_live_bridge(bridge).await?;
    match what {
        ShowCommand::Fdb { json } => fdb(&maps, &nl, json).await,
        ShowCommand::Stats { json } => stats(&maps, json),
        ShowCommand::Config { json } => config(bridge, &maps, &nl, json).await,
        ShowCommand::Nat { json } => nat(&maps, json),
    }
}

/// CLOCK_MONOTONIC in ns: the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

async fn port_name(nl: &Netlink, ifindex: u32) -> Result<String> {
    Ok(nl
        .link_by_index(ifindex)
        .await?
        .map(|l| l.name)
        .unwrap_or_else(|| format!("#{ifindex}")))
}

async fn fdb(maps: &crate::maps::DatapathMaps, nl: &Netlink, json_out: bool) -> Result<()> {
    let cfg = maps.read_config()?;
    let now = monotonic_ns();
    let mut rows = Vec::new();
    for entry in maps.fdb.iter() {
        let (key, value) = entry?;
        let local = value.flags & FDB_F_LOCAL != 0;
        let age_ns = if local {
            0
        } else {
            now.saturating_sub(value.last_seen_ns)
        };
        let expired = !local && age_ns > cfg.fdb_ageing_ns;
        rows.push((
            port_name(nl, value.ifindex).await?,
            ipam::format_mac(&key.octets),
            local,
            age_ns as f64 / 1e9,
            expired,
        ));
    }
    rows.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    if json_out {
        let out: Vec<_> = rows
            .iter()
            .map(|(port, mac, local, age, expired)| {
                json!({"port": port, "mac": mac, "local": local, "age_secs": age, "expired": expired})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{:<16} {:<18} {:<10} ageing timer",
        "port", "mac addr", "is local?"
    );
    for (port, mac, local, age, expired) in rows {
        let timer = if expired {
            "expired".to_string()
        } else {
            format!("{age:>7.2}")
        };
        println!(
            "{port:<16} {mac:<18} {:<10} {timer}",
            if local { "yes" } else { "no" }
        );
    }
    Ok(())
}

fn stats(maps: &crate::maps::DatapathMaps, json_out: bool) -> Result<()> {
    let counters = maps.counters()?;
    if json_out {
        let out: Vec<_> = counters
            .iter()
            .map(|(code, c)| {
                let verdict = REASONS.iter().find(|r| r.0 == *code).map(|r| r.2);
                json!({
                    "code": code,
                    "reason": reason_label(*code),
                    "verdict": verdict.map(verdict_label),
                    "packets": c.packets,
                    "bytes": c.bytes,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("{:>12} {:>14}  {:<8} reason", "pkts", "bytes", "verdict");
    for (code, c) in counters {
        let (label, verdict) = REASONS
            .iter()
            .find(|r| r.0 == code)
            .map(|r| (r.1, verdict_label(r.2)))
            .unwrap_or(("?", "?"));
        println!("{:>12} {:>14}  {:<8} {label}", c.packets, c.bytes, verdict);
    }
    Ok(())
}

fn nat(maps: &crate::maps::DatapathMaps, json_out: bool) -> Result<()> {
    let flows = crate::nat::list(maps, monotonic_ns())?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&flows)?);
        return Ok(());
    }
    for f in &flows {
        println!(
            "{:<4} {:<11} src={} dst={} sport={} dport={} packets={} bytes={} [nat] src={} sport={} packets={} bytes={} age={:.0}s idle={:.0}s owner={}",
            f.proto, f.state, f.src, f.dst, f.sport, f.dport, f.packets, f.bytes,
            f.nat_src, f.nat_sport, f.reply_packets, f.reply_bytes, f.age_secs, f.idle_secs, f.owner
        );
    }
    println!("{} flow(s)", flows.len());
    Ok(())
}

fn verdict_label(v: Verdict) -> &'static str {
    match v {
        Verdict::Redirect => "redirect",
        Verdict::Pass => "pass",
        Verdict::Drop => "drop",
    }
}

async fn config(
    bridge: &str,
    maps: &crate::maps::DatapathMaps,
    nl: &Netlink,
    json_out: bool,
) -> Result<()> {
    let cfg = maps.read_config()?;
    let subnet = format!(
        "{}/{}",
        Ipv4Addr::from(cfg.subnet_ipv4),
        cfg.subnet_prefix_len
    );
    let v6 = cfg.flags & ebridge_common::config::CONFIG_F_IPV6 != 0;
    let out = json!({
        "bridge": bridge,
        "bridge_ifindex": cfg.bridge_ifindex,
        "subnet": subnet,
        "gateway": Ipv4Addr::from(cfg.gateway_ipv4).to_string(),
        "uplink": port_name(nl, cfg.uplink_ifindex).await?,
        "uplink_ifindex": cfg.uplink_ifindex,
        "mtu": cfg.mtu,
        "icc": cfg.flags & CONFIG_F_ICC != 0,
        "masquerade": cfg.flags & CONFIG_F_MASQUERADE != 0,
        "xdp": crate::xdp::label(crate::xdp::mode_of(cfg.flags)),
        "uplink_ipv4": Ipv4Addr::from(cfg.uplink_ipv4).to_string(),
        "nat_ports": format!("{}-{}", cfg.nat_port_min, cfg.nat_port_max),
        // MASQUERADE's rule without --to-ports: a source port below 1024
        // is given one below 1024 (false: --nat-ports maps every port).
        "nat_privileged_kept": cfg.flags & ebridge_common::config::CONFIG_F_NAT_PORTS_GIVEN == 0,
        "nat_entries": cfg.nat_entries,
        "native_routing_cidrs": maps
            .native_cidrs()?
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        "subnet_v6": v6.then(|| {
            format!("{}/{}", std::net::Ipv6Addr::from(cfg.subnet_ipv6), cfg.subnet6_prefix_len)
        }),
        "gateway_v6": v6.then(|| std::net::Ipv6Addr::from(cfg.gateway_ipv6).to_string()),
        "ipv6_masquerade": v6
            .then_some(cfg.flags & ebridge_common::config::CONFIG_F_IPV6_MASQUERADE != 0),
        "uplink_ipv6": v6.then(|| std::net::Ipv6Addr::from(cfg.uplink_ipv6).to_string()),
        "fdb_ageing_secs": cfg.fdb_ageing_ns / 1_000_000_000,
        "pin_dir": crate::pins::bridge_dir(bridge),
    });
    if json_out {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if let Some(obj) = out.as_object() {
        for (k, v) in obj {
            let v = v
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            println!("{k:<16} {v}");
        }
    }
    Ok(())
}
