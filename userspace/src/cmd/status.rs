//! `ebridge status [--json]`: is the datapath healthy, like `cilium status`.
//! Kernel features, every pinned program and link with its kernel ID, map
//! fill levels, the agent, endpoints and ports, and warnings; exit status
//! 1 when anything is wrong. The table fill comes from the agent's last
//! pass when it is fresh, so status never walks a million entries itself.
use std::{net::Ipv4Addr, path::Path};

use anyhow::Result;
use aya::programs::{links::FdLink, links::PinnedLink, SchedClassifier};
use ebridge_common::{
    config::CONFIG_F_MASQUERADE,
    maps::{PINNED_MAPS, PROG_ENDPOINT, PROG_UPLINK_EGRESS, PROG_UPLINK_INGRESS},
};
use serde::Serialize;
use serde_json::{json, Value};

use crate::{agent::report::Report, maps, pins, state};

/// Share of the NAT table above which status warns.
const NAT_WARN_FILL: f64 = 0.8;
/// An agent report older than this many GC intervals (at the default 5 s)
/// means the agent is not running.
const AGENT_STALE_MS: u64 = 60_000;

#[derive(Serialize)]
struct Check {
    what: String,
    ok: bool,
    detail: String,
}

fn check(what: &str, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        what: what.to_string(),
        ok,
        detail: detail.into(),
    }
}

/// `uname -r` as (major, minor).
fn kernel_version() -> Option<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let mut parts = release.trim().split(['.', '-']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn kernel_checks() -> Vec<Check> {
    let version = kernel_version();
    let at_least = |want: (u32, u32)| version.is_some_and(|v| v >= want);
    let shown = version.map_or("unknown".to_string(), |(a, b)| format!("{a}.{b}"));
    vec![
        check(
            "BTF",
            Path::new("/sys/kernel/btf/vmlinux").exists(),
            "/sys/kernel/btf/vmlinux",
        ),
        check(
            "TCX links",
            at_least((6, 6)),
            format!("kernel {shown} (6.6+)"),
        ),
        check(
            "bpf_redirect_peer",
            at_least((5, 10)),
            format!("kernel {shown} (5.10+)"),
        ),
        check(
            "bpffs",
            pins::ensure_bpffs().is_ok(),
            pins::BPFFS.to_string(),
        ),
    ]
}

/// The kernel IDs behind a pinned program, or why there are none.
fn program(bridge: &str, name: &str) -> Value {
    let path = pins::prog_path(bridge, name);
    match SchedClassifier::from_pin(&path).and_then(|p| p.info()) {
        Ok(info) => json!({ "name": name, "id": info.id(), "pin": path }),
        Err(e) => json!({ "name": name, "error": e.to_string(), "pin": path }),
    }
}

fn link(path: &Path) -> Value {
    match PinnedLink::from_pin(path)
        .map(FdLink::from)
        .and_then(|l| l.info())
    {
        Ok(info) => json!({
            "pin": path,
            "id": info.id(),
            "program_id": info.program_id(),
            "type": info.link_type().map(|t| format!("{t:?}")).unwrap_or_default(),
        }),
        Err(e) => json!({ "pin": path, "error": e.to_string() }),
    }
}

fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "ebridge")
}

pub async fn run(bridge: &str, json_out: bool) -> Result<()> {
    crate::settings::interface_name("bridge", bridge)?;
    let mut checks = kernel_checks();
    let mut out = json!({ "bridge": bridge });
    if !maps::is_pinned(bridge) {
        checks.push(check(
            "datapath",
            false,
            format!(
                "bridge {bridge} is not up (no pins under {})",
                pins::bridge_dir(bridge).display()
            ),
        ));
        return finish(out, checks, json_out);
    }
    let (maps, nl) = super::open_live_bridge(bridge).await?;
    let cfg = maps.read_config()?;

    // Programs and links: each expected pin, with its kernel IDs.
    let programs: Vec<Value> = [PROG_ENDPOINT, PROG_UPLINK_INGRESS, PROG_UPLINK_EGRESS]
        .iter()
        .map(|p| program(bridge, p))
        .collect();
    for p in &programs {
        checks.push(check(
            &format!("program {}", p["name"].as_str().unwrap_or("?")),
            p["id"].is_u64(),
            p["error"]
                .as_str()
                .map_or_else(|| format!("id {}", p["id"]), str::to_string),
        ));
    }
    let st = state::load(bridge)?;
    let mut expected_links: Vec<String> = ["uplink-ingress", "uplink-egress"]
        .iter()
        .map(|s| s.to_string())
        .chain(
            ebridge_common::maps::HOST_PROGS
                .iter()
                .map(|p| format!("cgroup-{p}")),
        )
        .chain(st.endpoints.iter().map(|e| e.host_veth.clone()))
        .collect();
    if cfg.flags
        & (ebridge_common::config::CONFIG_F_XDP_GENERIC
            | ebridge_common::config::CONFIG_F_XDP_NATIVE)
        != 0
    {
        expected_links.push("uplink-xdp".to_string());
    }
    let links: Vec<Value> = expected_links
        .iter()
        .map(|name| link(&pins::link_path(bridge, name)))
        .collect();
    for (name, l) in expected_links.iter().zip(&links) {
        checks.push(check(
            &format!("link {name}"),
            l["id"].is_u64(),
            l["error"].as_str().map_or_else(
                || {
                    format!(
                        "id {} ({}), program {}",
                        l["id"],
                        l["type"].as_str().unwrap_or("?"),
                        l["program_id"]
                    )
                },
                str::to_string,
            ),
        ));
    }
    for map in PINNED_MAPS {
        if !pins::map_path(bridge, map).exists() {
            checks.push(check(&format!("map {map}"), false, "pin missing"));
        }
    }

    // The agent and what its last pass counted.
    let report = Report::load(bridge).filter(|r| pid_alive(r.pid));
    let fresh = report.as_ref().is_some_and(|r| {
        crate::agent::report::unix_ms().saturating_sub(r.last_gc_unix_ms) < AGENT_STALE_MS
    });
    let nat_entries = match report.as_ref().filter(|_| fresh) {
        Some(r) => r.nat_entries,
        None => maps.nat_entries()?.len() as u64,
    };
    let capacity = u64::from(cfg.nat_entries);
    let fill = nat_entries as f64 / capacity.max(1) as f64;
    checks.push(check(
        "NAT table",
        fill <= NAT_WARN_FILL,
        format!("{nat_entries}/{capacity} entries ({:.0} %)", fill * 100.0),
    ));
    checks.push(match &report {
        Some(r) if fresh => check(
            "agent",
            true,
            format!("pid {}, last GC {} ms ago", r.pid, crate::agent::report::unix_ms().saturating_sub(r.last_gc_unix_ms)),
        ),
        Some(r) => check("agent", nat_entries == 0, format!("pid {} has not made a GC pass for a minute", r.pid)),
        None if nat_entries > 0 => check(
            "agent",
            false,
            format!("not running, and {nat_entries} NAT entries will never expire; start 'ebridge agent --bridge {bridge}'"),
        ),
        None => check("agent", true, "not running (no flows to expire yet)"),
    });
    // The uplink's masquerade address.
    if cfg.flags & CONFIG_F_MASQUERADE != 0 {
        let uplink_ip = Ipv4Addr::from(cfg.uplink_ipv4);
        let addrs = nl.ipv4_addresses().await?;
        let has = addrs
            .iter()
            .any(|a| a.link_index == cfg.uplink_ifindex && a.net.addr() == uplink_ip);
        checks.push(check(
            "uplink address",
            has && !uplink_ip.is_unspecified(),
            if has {
                format!("masquerading behind {uplink_ip}")
            } else {
                format!(
                    "the uplink (#{}) no longer has {uplink_ip} to masquerade behind",
                    cfg.uplink_ifindex
                )
            },
        ));
    }
    out["programs"] = json!(programs);
    out["links"] = json!(links);
    out["nat"] = json!({ "entries": nat_entries, "capacity": capacity });
    out["fdb"] = json!({
        "entries": maps.fdb.keys().count(),
        "capacity": ebridge_common::maps::MAX_FDB_ENTRIES,
    });
    out["endpoints"] = json!(st.endpoints.len());
    out["published_ports"] = json!(maps.publish.keys().count());
    out["agent"] = match &report {
        Some(r) => json!({ "pid": r.pid, "last_gc_unix_ms": r.last_gc_unix_ms, "running": true }),
        None => json!({ "running": false }),
    };
    finish(out, checks, json_out)
}

fn finish(mut out: Value, checks: Vec<Check>, json_out: bool) -> Result<()> {
    let problems: Vec<&Check> = checks.iter().filter(|c| !c.ok).collect();
    let healthy = problems.is_empty();
    if json_out {
        out["healthy"] = json!(healthy);
        out["checks"] = json!(checks);
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for c in &checks {
            println!(
                "{:<4} {:<28} {}",
                if c.ok { "ok" } else { "FAIL" },
                c.what,
                c.detail
            );
        }
        for (k, v) in out.as_object().into_iter().flatten() {
            if !v.is_array() {
                println!("{k:<33} {v}");
            }
        }
        println!(
            "{}",
            if problems.is_empty() {
                "healthy".to_string()
            } else {
                format!("UNHEALTHY: {} problem(s)", problems.len())
            }
        );
    }
    if healthy {
        return Ok(());
    }
    anyhow::bail!(
        "unhealthy: {}",
        problems
            .iter()
            .map(|c| format!("{} ({})", c.what, c.detail))
            .collect::<Vec<_>>()
            .join("; ")
    )
}
