//! `ebridge agent`: the datapath's housekeeper. All state lives in pinned
//! maps, so the agent may be killed and restarted at any time; flows keep
//! forwarding meanwhile and merely stop expiring. It follows its bridge
//! across `down`/`up` (the README's way to change settings): when the pins
//! are replaced it reopens them, while they are gone it waits. One agent
//! per bridge and network namespace.
use std::{
    net::Ipv4Addr,
    os::{linux::net::SocketAddrExt, unix::fs::MetadataExt},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use ebridge_common::{
    fdb::FDB_F_LOCAL,
    maps::{MAP_CONFIG, PROG_ENDPOINT},
    nat::proto_label,
};

use super::{open_live_bridge, show::monotonic_ns};
use crate::{
    cli::AgentArgs,
    datapath,
    error::usage,
    maps::DatapathMaps,
    nat::{self, Timeouts},
    netlink::Netlink,
    pins,
};

const TICK: Duration = Duration::from_millis(250);

/// The datapath the agent works on, and which pins it came from.
struct Attached {
    maps: DatapathMaps,
    nl: Netlink,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    pin: PinId,
}

/// Device and inode of the config map's pin: `up` after `down` makes new
/// pins, so a change means a new datapath.
type PinId = (u64, u64);

fn pin_id(bridge: &str) -> Option<PinId> {
    let meta = std::fs::metadata(pins::map_path(bridge, MAP_CONFIG)).ok()?;
    Some((meta.dev(), meta.ino()))
}

async fn attach(bridge: &str) -> Result<Attached> {
    let pin = pin_id(bridge).with_context(|| format!("bridge {bridge} is not up"))?;
    let (maps, nl) = open_live_bridge(bridge).await?;
    // The datapath's aya-log lines (rare events only) become ours.
    let logger = datapath::program_id(bridge, PROG_ENDPOINT)
        .ok()
        .and_then(|id| aya_log::EbpfLogger::init_from_id(id).ok());
    if logger.is_none() {
        log::warn!("datapath log forwarding unavailable");
    }
    Ok(Attached {
        maps,
        nl,
        logger,
        pin,
    })
}

/// Held for the agent's lifetime: an abstract socket is per network
/// namespace and goes away with the process, however it ends, so a second
/// agent on the same bridge is refused and a killed one never blocks the
/// next.
fn claim_bridge(bridge: &str) -> Result<std::os::unix::net::UnixListener> {
    let name = format!("ebridge-agent/{bridge}");
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
        .context("cannot make the agent's socket address")?;
    std::os::unix::net::UnixListener::bind_addr(&addr).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            usage(format!(
                "another ebridge agent already runs for bridge {bridge} in this network namespace; stop it first (one agent per bridge)"
            ))
        } else {
            anyhow::Error::new(e).context("cannot claim the agent's socket")
        }
    })
}

pub async fn run(args: AgentArgs) -> Result<()> {
    let bridge = args.bridge.bridge.clone();
    // Refuses a bridge that is not up (or lives elsewhere) before claiming.
    let mut attached = Some(attach(&bridge).await?);
    let _claim = claim_bridge(&bridge)?;
    let timeouts = timeouts(&args);
    eprintln!(
        "ebridge agent: bridge {bridge}, NAT gc every {}s",
        args.gc_interval
    );
    let started = Instant::now();
    let gc_every = Duration::from_secs(args.gc_interval.max(1));
    let mut last_gc = Instant::now() - gc_every;
    let mut interval = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        attached = follow(&bridge, attached).await;
        if let Some(a) = attached.as_mut() {
            if let Some(logger) = a.logger.as_mut() {
                logger.flush();
            }
            if last_gc.elapsed() >= gc_every {
                last_gc = Instant::now();
                // A pass can meet a datapath being taken down under it;
                // the next tick's follow() sorts that out.
                if let Err(e) = housekeeping(&mut a.maps, &a.nl, &timeouts).await {
                    eprintln!("ebridge agent: housekeeping pass failed: {e:#}");
                }
            }
        }
        if args
            .run_for
            .is_some_and(|s| started.elapsed() >= Duration::from_secs(s))
        {
            break;
        }
    }
    eprintln!("ebridge agent: stopped");
    Ok(())
}

/// Keeps the agent on the bridge's current datapath: drops it when the
/// pins go (`down`), reopens when they come back or are replaced (`up`).
async fn follow(bridge: &str, attached: Option<Attached>) -> Option<Attached> {
    let now = pin_id(bridge);
    match (attached, now) {
        (Some(a), Some(pin)) if a.pin == pin => Some(a),
        (Some(_), None) => {
            eprintln!("ebridge agent: bridge {bridge} went down; waiting for it to come back");
            None
        }
        (None, None) => None,
        (old, Some(_)) => match attach(bridge).await {
            Ok(a) => {
                eprintln!(
                    "ebridge agent: bridge {bridge} is {}; following its new datapath",
                    if old.is_some() {
                        "replaced"
                    } else {
                        "up again"
                    }
                );
                Some(a)
            }
            // Half made (`up` still running): try again next tick.
            Err(_) => None,
        },
    }
}

fn timeouts(args: &AgentArgs) -> Timeouts {
    let s = Duration::from_secs;
    Timeouts {
        tcp_syn_sent: s(args.tcp_timeout_syn_sent),
        tcp_established: s(args.tcp_timeout_established),
        tcp_fin_wait: s(args.tcp_timeout_fin_wait),
        tcp_time_wait: s(args.tcp_timeout_time_wait),
        tcp_close: s(args.tcp_timeout_close),
        udp: s(args.udp_timeout),
        udp_stream: s(args.udp_timeout_stream),
        icmp: s(args.icmp_timeout),
    }
}

async fn housekeeping(maps: &mut DatapathMaps, nl: &Netlink, timeouts: &Timeouts) -> Result<()> {
    // Addresses come and go; "published on every address" and the
    // networks whose hosts may reach containers directly follow them.
    let link_addrs = nl.ipv4_addresses().await?;
    let addrs: Vec<Ipv4Addr> = link_addrs.iter().map(|a| a.net.addr()).collect();
    maps.sync_node_addrs(&addrs)?;
    let native = maps.native_cidrs()?;
    if !native.is_empty() {
        let cfg = maps.read_config()?;
        let subnet = ipnet::Ipv4Net::new(cfg.subnet_ipv4.into(), cfg.subnet_prefix_len as u8)?;
        maps.sync_native_nets(&native, &super::up::node_networks(&link_addrs, subnet))?;
    }
    let now = monotonic_ns();
    let report = nat::gc(maps, timeouts, now)?;
    if report.expired > 0 || report.orphans > 0 {
        eprintln!(
            "ebridge agent: nat gc: {} expired, {} orphaned, {} live",
            report.expired, report.orphans, report.live
        );
    }
    report_exhaustion(maps)?;
    let aged = age_fdb(maps, now)?;
    if aged > 0 {
        eprintln!("ebridge agent: fdb: {aged} entries aged out");
    }
    Ok(())
}

/// One line per destination that ran out of NAT ports since the last pass
/// (the datapath counts them by destination; the drops are also in
/// `drop-nat-no-port`).
fn report_exhaustion(maps: &mut DatapathMaps) -> Result<()> {
    let mut seen = Vec::new();
    for item in maps.nat_no_port.iter() {
        seen.push(item.context("cannot read the nat_no_port map")?);
    }
    for (key, count) in seen {
        eprintln!(
            "ebridge agent: no free NAT port: {} new flow(s) to {}:{}/{} dropped since the last pass (every port of the range is in use towards it)",
            count.drops,
            Ipv4Addr::from(key.daddr),
            u16::from_be(key.dport),
            proto_label(key.proto)
        );
        let _ = maps.nat_no_port.remove(&key);
    }
    Ok(())
}

/// Deletes learned FDB entries older than the ageing time, as the Linux
/// bridge's ageing timer does (the datapath already ignores them).
fn age_fdb(maps: &mut DatapathMaps, now: u64) -> Result<usize> {
    let ageing = maps.read_config()?.fdb_ageing_ns;
    let mut stale = Vec::new();
    for item in maps.fdb.iter() {
        let (mac, entry) = item?;
        if entry.flags & FDB_F_LOCAL == 0 && now.saturating_sub(entry.last_seen_ns) > ageing {
            stale.push(mac);
        }
    }
    for mac in &stale {
        let _ = maps.fdb.remove(mac);
    }
    Ok(stale.len())
}
