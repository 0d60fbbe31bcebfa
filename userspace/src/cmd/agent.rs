//! `ebridge agent`: the datapath's housekeeper. All state lives in pinned
//! maps, so the agent may be killed and restarted at any time; flows keep
//! forwarding meanwhile and merely stop expiring. It follows its bridge
//! across `down`/`up` (the README's way to change settings): when the pins
//! are replaced it reopens them, while they are gone it waits. One agent
//! per bridge and network namespace.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::unix::fs::MetadataExt,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use ebridge_common::{
    config::{CONFIG_F_IPV6_MASQUERADE, CONFIG_F_MASQUERADE},
    fdb::FDB_F_LOCAL,
    maps::{MAP_CONFIG, PROG_ENDPOINT},
    nat::proto_label,
};

use super::{open_live_bridge, show::monotonic_ns};
use crate::{
    agent::{
        events::{self, Change},
        feed::{self, Feed},
        metrics,
        report::{self, Report},
    },
    cli::AgentArgs,
    datapath,
    error::usage,
    maps::DatapathMaps,
    nat::{self, Timeouts},
    netlink::Netlink,
    pins, state,
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
/// next. Monitors connect to it for expired flows.
fn claim_bridge(bridge: &str) -> Result<std::os::unix::net::UnixListener> {
    let addr = feed::socket_addr(bridge)?;
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
    let feed = Feed::serve(claim_bridge(&bridge)?)?;
    let timeouts = timeouts(&args);
    let report = Arc::new(Mutex::new(Report::new()));
    if let Some(addr) = args.metrics_addr {
        let source = metrics::Source {
            bridge: bridge.clone(),
            report: report.clone(),
        };
        metrics::start(addr, source)?;
        log::info!("metrics on http://{addr}/metrics");
    }
    let mut changes = events::subscribe()?;
    log::info!("bridge {bridge}, NAT gc every {}s", args.gc_interval);
    let started = Instant::now();
    let gc_every = Duration::from_secs(args.gc_interval.max(1));
    let mut last_gc = Instant::now() - gc_every;
    let mut interval = tokio::time::interval(TICK);
    loop {
        let change = tokio::select! {
            _ = interval.tick() => None,
            Some(change) = changes.recv() => Some(change),
            _ = tokio::signal::ctrl_c() => break,
        };
        attached = follow(&bridge, attached).await;
        if let Some(a) = attached.as_mut() {
            if let Some(logger) = a.logger.as_mut() {
                logger.flush();
            }
            // A change can meet a datapath being taken down under it; the
            // next tick's follow() sorts that out.
            if let Some(change) = change {
                if let Err(e) = on_change(&bridge, a, change).await {
                    log::warn!("handling a node change failed: {e:#}");
                }
            }
            if last_gc.elapsed() >= gc_every {
                last_gc = Instant::now();
                if let Err(e) = housekeeping(&bridge, a, &timeouts, &report, &feed).await {
                    log::warn!("housekeeping pass failed: {e:#}");
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
    log::info!("stopped");
    Ok(())
}

/// What the kernel told us changed, acted on at once.
async fn on_change(bridge: &str, a: &mut Attached, change: Change) -> Result<()> {
    match change {
        Change::Addresses => sync_addresses(&mut a.maps, &a.nl).await,
        Change::LinkGone(index) => veth_gone(bridge, a, index).await,
    }
}

/// Node addresses: "published on every address" answers on them, native
/// routing trusts their networks, and the uplink's are the masquerade
/// addresses — when one changes, the datapath takes the new one and the
/// flows on the old one go, as MASQUERADE flushes its conntrack entries.
async fn sync_addresses(maps: &mut DatapathMaps, nl: &Netlink) -> Result<()> {
    let link_addrs = nl.ipv4_addresses().await?;
    let addrs: Vec<Ipv4Addr> = link_addrs.iter().map(|a| a.net.addr()).collect();
    let link_addrs6 = nl.ipv6_addresses().await?;
    let addrs6: Vec<Ipv6Addr> = link_addrs6.iter().map(|(_, net)| net.addr()).collect();
    maps.sync_node_addrs(&addrs, &addrs6)?;
    let cfg = maps.read_config()?;
    let native = maps.native_cidrs()?;
    if !native.is_empty() {
        let subnet = ipnet::Ipv4Net::new(cfg.subnet_ipv4.into(), cfg.subnet_prefix_len as u8)?;
        maps.sync_native_nets(&native, &super::up::node_networks(&link_addrs, subnet))?;
    }
    if cfg.flags & CONFIG_F_MASQUERADE != 0 {
        let on_uplink: Vec<Ipv4Addr> = link_addrs
            .iter()
            .filter(|a| a.link_index == cfg.uplink_ifindex)
            .map(|a| a.net.addr())
            .collect();
        let old = Ipv4Addr::from(cfg.uplink_ipv4);
        if !on_uplink.contains(&old) {
            let new = on_uplink.first().copied().unwrap_or(Ipv4Addr::UNSPECIFIED);
            follow_uplink(maps, old.into(), new.into())?;
        }
    }
    if cfg.flags & CONFIG_F_IPV6_MASQUERADE != 0 {
        let on_uplink: Vec<Ipv6Addr> = link_addrs6
            .iter()
            .filter(|(index, _)| *index == cfg.uplink_ifindex)
            .map(|(_, net)| net.addr())
            .collect();
        let old = Ipv6Addr::from(cfg.uplink_ipv6);
        if !on_uplink.contains(&old) {
            let new = on_uplink.first().copied().unwrap_or(Ipv6Addr::UNSPECIFIED);
            follow_uplink(maps, old.into(), new.into())?;
        }
    }
    Ok(())
}

/// The uplink's masquerade address of one family went from `old` to `new`
/// (unspecified: none left, so that family's new flows are dropped).
fn follow_uplink(maps: &mut DatapathMaps, old: IpAddr, new: IpAddr) -> Result<()> {
    if old == new {
        return Ok(());
    }
    let mut cfg = maps.read_config()?;
    match new {
        IpAddr::V4(a) => cfg.uplink_ipv4 = a.octets(),
        IpAddr::V6(a) => cfg.uplink_ipv6 = a.octets(),
    }
    maps.config
        .set(0, cfg, 0)
        .context("cannot write the config map")?;
    let removed = if old.is_unspecified() {
        0
    } else {
        nat::forget_address(maps, old)?
    };
    log::info!(
        "uplink address {old} is gone; masquerading behind {new} now, {removed} NAT entries on {old} removed"
    );
    Ok(())
}

/// A host veth deleted behind ebridge's back: its endpoint, FDB entries,
/// ports and flows go too, as `endpoint rm` would remove them.
async fn veth_gone(bridge: &str, a: &mut Attached, index: u32) -> Result<()> {
    let Ok(ep) = a.maps.endpoints.get(&index, 0) else {
        return Ok(());
    };
    // `down` and `endpoint rm` hold this lock while they delete veths.
    let Some(_lock) = state::lock_existing(bridge)? else {
        return Ok(());
    };
    // Looked up again under the lock: `endpoint rm` may have done the work.
    if a.maps.endpoints.get(&index, 0).is_err() {
        return Ok(());
    }
    let mut st = state::load(bridge)?;
    let Some(pos) = st.endpoints.iter().position(|r| r.ipv4.octets() == ep.ipv4) else {
        return Ok(());
    };
    let record = st.endpoints.remove(pos);
    super::endpoint::remove_endpoint(bridge, &record, Some(&mut a.maps), &a.nl).await?;
    state::save(bridge, &st)?;
    log::info!(
        "host veth {} of endpoint {} was deleted; the endpoint, its ports and flows are removed",
        record.host_veth,
        record.name
    );
    Ok(())
}

/// Keeps the agent on the bridge's current datapath: drops it when the
/// pins go (`down`), reopens when they come back or are replaced (`up`).
async fn follow(bridge: &str, attached: Option<Attached>) -> Option<Attached> {
    let now = pin_id(bridge);
    match (attached, now) {
        (Some(a), Some(pin)) if a.pin == pin => Some(a),
        (Some(_), None) => {
            log::info!("bridge {bridge} went down; waiting for it to come back");
            None
        }
        (None, None) => None,
        (old, Some(_)) => match attach(bridge).await {
            Ok(a) => {
                log::info!(
                    "bridge {bridge} is {}; following its new datapath",
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

async fn housekeeping(
    bridge: &str,
    a: &mut Attached,
    timeouts: &Timeouts,
    report: &Mutex<Report>,
    feed: &Feed,
) -> Result<()> {
    // Netlink tells of changes as they happen; a pass also catches what a
    // lost event or a restart missed.
    sync_addresses(&mut a.maps, &a.nl).await?;
    let maps = &mut a.maps;
    let started = Instant::now();
    let now = monotonic_ns();
    let gc = nat::gc(maps, timeouts, now)?;
    feed.expired(&gc.expired_flows);
    if gc.expired > 0 || gc.orphans > 0 {
        log::info!(
            "nat gc: {} expired, {} orphaned, {} live",
            gc.expired,
            gc.orphans,
            gc.live
        )
    }
    report_exhaustion(maps)?;
    let aged = age_fdb(maps, now)?;
    if aged > 0 {
        log::info!("fdb: {aged} entries aged out");
    }
    let seconds = started.elapsed().as_secs_f64();
    let cfg = maps.read_config()?;
    let counts = (
        maps.fdb.keys().count() as u64,
        maps.endpoints.keys().count() as u64,
        maps.publish.keys().count() as u64,
    );
    let snapshot = {
        let mut r = match report.lock() {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        };
        r.gc_runs += 1;
        r.gc_removed_entries += (2 * gc.expired + gc.orphans) as u64;
        r.gc_seconds_total += seconds;
        r.gc_last_seconds = seconds;
        r.last_gc_unix_ms = report::unix_ms();
        r.nat_entries = gc.entries as u64;
        r.nat_capacity = u64::from(cfg.nat_entries);
        r.set_live_flows(&gc.live_by);
        (r.fdb_entries, r.endpoints, r.published_ports) = counts;
        r.clone()
    };
    snapshot.save(bridge)
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
        log::warn!(
            "no free NAT port: {} new flow(s) to {}:{}/{} dropped since the last pass (every port of the range is in use towards it)",
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
