//! `ebridge agent`: the datapath's housekeeper. All state lives in pinned
//! maps, so the agent may be killed and restarted at any time; flows keep
//! forwarding meanwhile and merely stop expiring.
use std::time::{Duration, Instant};

use anyhow::Result;
use ebridge_common::{fdb::FDB_F_LOCAL, maps::PROG_ENDPOINT};

use super::{open_live_bridge, show::monotonic_ns};
use crate::{
    cli::AgentArgs,
    datapath,
    maps::DatapathMaps,
    nat::{self, Timeouts},
    netlink::Netlink,
};

const TICK: Duration = Duration::from_millis(250);

pub async fn run(args: AgentArgs) -> Result<()> {
    let bridge = args.bridge.bridge.clone();
    let (mut maps, nl) = open_live_bridge(&bridge).await?;
    let timeouts = timeouts(&args);
    // The datapath's aya-log lines (rare events only) become ours.
    let mut logger = datapath::program_id(&bridge, PROG_ENDPOINT)
        .ok()
        .and_then(|id| aya_log::EbpfLogger::init_from_id(id).ok());
    if logger.is_none() {
        log::warn!("datapath log forwarding unavailable");
    }
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
        if let Some(logger) = logger.as_mut() {
            logger.flush();
        }
        if last_gc.elapsed() >= gc_every {
            last_gc = Instant::now();
            housekeeping(&mut maps, &nl, &timeouts).await?;
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
    // Addresses come and go; "published on every address" follows them.
    let addrs: Vec<std::net::Ipv4Addr> = nl
        .ipv4_addresses()
        .await?
        .iter()
        .map(|a| a.net.addr())
        .collect();
    maps.sync_node_addrs(&addrs)?;
    let now = monotonic_ns();
    let report = nat::gc(maps, timeouts, now)?;
    if report.expired > 0 || report.orphans > 0 {
        eprintln!(
            "ebridge agent: nat gc: {} expired, {} orphaned, {} live",
            report.expired, report.orphans, report.live
        );
    }
    let aged = age_fdb(maps, now)?;
    if aged > 0 {
        eprintln!("ebridge agent: fdb: {aged} entries aged out");
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
