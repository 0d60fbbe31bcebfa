//! `ebridge monitor`: the datapath's events (drops, new masqueraded flows,
//! published-port hits) from its ring buffer, and the flows the agent
//! expired from the agent's socket, as text or JSON lines. The datapath
//! writes events only while a monitor holds its lease (`common::monitor`),
//! so nothing is spent on them when nobody watches.
use std::{
    collections::HashMap,
    net::Ipv4Addr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result};
use aya::maps::{Array, Map, MapData, PerCpuArray, RingBuf};
use ebridge_common::{
    maps::{MAP_CONFIG, MAP_EVENTS, MAP_MONITOR, MAP_MONITOR_BUDGET},
    monitor::{
        MonitorBudget, MonitorEvent, EVENT_DROP, EVENT_NAT_NEW, EVENT_PUBLISH_HIT, MONITOR_LEASE_NS,
    },
    nat::{proto_label, IPPROTO_TCP, IPPROTO_UDP},
    stats::reason_label,
};
use serde_json::{json, Value};
use tokio::{
    io::{unix::AsyncFd, AsyncBufReadExt as _, BufReader, Interest, Lines},
    net::UnixStream,
};

use super::{open_live_bridge, show::monotonic_ns};
use crate::{
    agent::feed,
    cli::{MonitorArgs, MonitorKind},
    error::usage,
    maps::DatapathMaps,
    netlink::Netlink,
    pins, state,
};

const RENEW: Duration = Duration::from_secs(1);

fn open_map(bridge: &str, name: &str) -> Result<Map> {
    let path = pins::map_path(bridge, name);
    let data = MapData::from_pin(&path).with_context(|| {
        format!(
            "cannot open pinned map {} (a datapath from an older ebridge? run 'ebridge down' and 'ebridge up')",
            path.display()
        )
    })?;
    Map::from_map_data(data)
        .with_context(|| format!("map {} has an unexpected type", path.display()))
}

/// The datapath side: the ring, the lease and the per-CPU loss counters.
struct Datapath {
    ring: AsyncFd<RingBuf<MapData>>,
    lease: Array<MapData, u64>,
    budget: PerCpuArray<MapData, MonitorBudget>,
    /// Losses counted before this monitor started (or last reported).
    lost_seen: u64,
}

impl Datapath {
    fn open(bridge: &str) -> Result<Self> {
        let ring: RingBuf<MapData> = open_map(bridge, MAP_EVENTS)?.try_into()?;
        let mut dp = Self {
            // SAFETY: the RingBuf owns its map fd and keeps it open, the same
            // one, until it is dropped with the AsyncFd.
            ring: unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
                .map_err(|e| e.into_parts().1)
                .context("cannot watch the events ring buffer")?,
            lease: open_map(bridge, MAP_MONITOR)?.try_into()?,
            budget: open_map(bridge, MAP_MONITOR_BUDGET)?.try_into()?,
            lost_seen: 0,
        };
        dp.lost_seen = dp.lost_total()?;
        Ok(dp)
    }

    /// Keeps the datapath writing events for another lease; a monitor that
    /// dies stops them within `MONITOR_LEASE_NS`.
    fn renew(&mut self) -> Result<()> {
        let until = monotonic_ns() + MONITOR_LEASE_NS;
        let current = self.lease.get(&0, 0).unwrap_or(0);
        // Another monitor may hold a longer lease; never shorten it.
        if until > current {
            self.lease
                .set(0, until, 0)
                .context("cannot write the monitor map")?;
        }
        Ok(())
    }

    fn lost_total(&self) -> Result<u64> {
        let per_cpu = self
            .budget
            .get(&0, 0)
            .context("cannot read the monitor_budget map")?;
        Ok(per_cpu.iter().map(|b| b.lost).sum())
    }

    /// Events the datapath could not write since the last call (budget
    /// spent or ring full), summed over every monitor's share.
    fn newly_lost(&mut self) -> Result<u64> {
        let total = self.lost_total()?;
        let new = total.saturating_sub(self.lost_seen);
        self.lost_seen = total;
        Ok(new)
    }

    /// Every event waiting in the ring.
    async fn read(&mut self) -> Result<Vec<MonitorEvent>> {
        let mut guard = self
            .ring
            .readable_mut()
            .await
            .context("cannot wait on the events ring buffer")?;
        let ring = guard.get_inner_mut();
        let mut events = Vec::new();
        while let Some(item) = ring.next() {
            if let Some(bytes) = item.get(..size_of::<MonitorEvent>()) {
                events.push(bytemuck::pod_read_unaligned::<MonitorEvent>(bytes));
            }
        }
        guard.clear_ready();
        Ok(events)
    }
}

/// Which device (and endpoint) an event's ifindex is, learnt once.
struct Names {
    bridge: String,
    known: HashMap<u32, (String, Option<String>)>,
}

impl Names {
    async fn of(
        &mut self,
        ifindex: u32,
        maps: &DatapathMaps,
        nl: &Netlink,
    ) -> (String, Option<String>) {
        if let Some(known) = self.known.get(&ifindex) {
            return known.clone();
        }
        let mut found = None;
        if let Ok(ep) = maps.endpoints.get(&ifindex, 0) {
            let addr = Ipv4Addr::from(ep.ipv4);
            if let Ok(st) = state::load(&self.bridge) {
                if let Some(r) = st.endpoints.iter().find(|r| r.ipv4 == addr) {
                    found = Some((r.host_veth.clone(), Some(r.name.clone())));
                }
            }
        }
        if found.is_none() {
            if let Ok(Some(link)) = nl.link_by_index(ifindex).await {
                found = Some((link.name, None));
            }
        }
        // Unknown ones (gone already) are looked up again next time.
        match found {
            Some(f) => {
                self.known.insert(ifindex, f.clone());
                f
            }
            None => (format!("if{ifindex}"), None),
        }
    }
}

/// Where output goes and when to stop.
struct Printer {
    json: bool,
    left: Option<u64>,
}

impl Printer {
    /// Prints one event; false once `--count` events have been printed.
    fn event(&mut self, line: Value) -> bool {
        if self.json {
            println!("{line}");
        } else {
            println!("{}", text(&line));
        }
        match self.left.as_mut() {
            Some(left) => {
                *left = left.saturating_sub(1);
                *left > 0
            }
            None => true,
        }
    }

    fn lost(&self, source: &str, count: u64) {
        if self.json {
            println!(
                "{}",
                json!({"type": "lost", "source": source, "count": count})
            );
        } else {
            println!("-- {count} event(s) lost ({source}: rate limit or full buffer)");
        }
    }
}

fn kind_of(ev: &MonitorEvent) -> Option<MonitorKind> {
    match ev.kind {
        EVENT_DROP => Some(MonitorKind::Drop),
        EVENT_NAT_NEW => Some(MonitorKind::Nat),
        EVENT_PUBLISH_HIT => Some(MonitorKind::Publish),
        _ => None,
    }
}

/// An event as JSON: the one form both outputs are made from.
fn describe(ev: &MonitorEvent, unix_offset_ns: i128, device: (String, Option<String>)) -> Value {
    let time = (i128::from(ev.ts_ns) + unix_offset_ns) as f64 / 1e9;
    let mut v = json!({
        "time": time,
        "type": match ev.kind {
            EVENT_DROP => "drop",
            EVENT_NAT_NEW => "nat-new",
            _ => "publish",
        },
        "device": device.0,
        "endpoint": device.1,
    });
    if ev.kind == EVENT_DROP {
        v["reason"] = json!(reason_label(u32::from(ev.reason)).unwrap_or("unknown"));
    }
    if ev.family != 0 {
        v["proto"] = json!(proto_label(ev.proto));
        v["src"] = json!(address(ev.family, ev.saddr));
        v["dst"] = json!(address(ev.family, ev.daddr));
        if ev.proto == IPPROTO_TCP || ev.proto == IPPROTO_UDP {
            v["sport"] = json!(u16::from_be(ev.sport));
            v["dport"] = json!(u16::from_be(ev.dport));
        }
    }
    if ev.kind != EVENT_DROP {
        v["nat_addr"] = json!(address(ev.family, ev.nat_addr));
        v["nat_port"] = json!(u16::from_be(ev.nat_port));
    }
    v
}

/// An event's address as text: IPv4 rides in the first four bytes.
fn address(family: u8, bytes: [u8; 16]) -> String {
    if family == 6 {
        std::net::Ipv6Addr::from(bytes).to_string()
    } else {
        Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string()
    }
}

/// `addr:port`, or just the address when the line has no ports.
fn endpoint_of(v: &Value, addr: &str, port: &str) -> String {
    let a = v[addr].as_str().unwrap_or("?");
    match v[port].as_u64() {
        Some(p) if a.contains(':') => format!("[{a}]:{p}"),
        Some(p) => format!("{a}:{p}"),
        None => a.to_string(),
    }
}

/// One human line: time (UTC), kind, what and where.
fn text(v: &Value) -> String {
    let secs = v["time"].as_f64().unwrap_or(0.0);
    let day = secs.rem_euclid(86_400.0);
    let clock = format!(
        "{:02}:{:02}:{:09.6}",
        (day / 3600.0) as u64,
        ((day % 3600.0) / 60.0) as u64,
        day % 60.0
    );
    let kind = v["type"].as_str().unwrap_or("?");
    let proto = v["proto"].as_str().unwrap_or("");
    let flow = if v["src"].is_string() {
        format!(
            "{proto} {} -> {}",
            endpoint_of(v, "src", "sport"),
            endpoint_of(v, "dst", "dport")
        )
    } else {
        "(not IPv4)".to_string()
    };
    let device = match (v["endpoint"].as_str(), v["device"].as_str()) {
        (Some(ep), Some(dev)) => format!("endpoint {ep} ({dev})"),
        (None, Some(dev)) => format!("device {dev}"),
        _ => String::new(),
    };
    match kind {
        "drop" => format!(
            "{clock} drop       {:<26} {flow}  on {device}",
            v["reason"].as_str().unwrap_or("?")
        ),
        "nat-new" => format!(
            "{clock} nat-new    {flow}  as {}  from {device}",
            endpoint_of(v, "nat_addr", "nat_port")
        ),
        "publish" => format!(
            "{clock} publish    {flow}  to {}  {device}",
            endpoint_of(v, "nat_addr", "nat_port")
        ),
        "nat-expire" => format!(
            "{clock} nat-expire {proto} {} -> {}  as {}  {} {}",
            endpoint_of(v, "src", "sport"),
            endpoint_of(v, "dst", "dport"),
            endpoint_of(v, "nat_src", "nat_sport"),
            v["owner"].as_str().unwrap_or("?"),
            v["state"].as_str().unwrap_or("?")
        ),
        other => format!("{clock} {other} {v}"),
    }
}

/// The agent's lines of expired flows, or why there are none.
async fn connect_agent(bridge: &str) -> Result<Lines<BufReader<UnixStream>>> {
    let addr = feed::socket_addr(bridge)?;
    let stream = std::os::unix::net::UnixStream::connect_addr(&addr).map_err(|_| {
        usage(format!(
            "no ebridge agent runs for bridge {bridge} in this network namespace, so expired flows cannot be shown; start 'ebridge agent --bridge {bridge}' or leave out --type expire"
        ))
    })?;
    stream
        .set_nonblocking(true)
        .context("cannot make the agent connection non-blocking")?;
    Ok(BufReader::new(UnixStream::from_std(stream)?).lines())
}

fn unix_offset_ns() -> i128 {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    unix - i128::from(monotonic_ns())
}

pub async fn run(args: MonitorArgs) -> Result<()> {
    let bridge = args.bridge.bridge.clone();
    let (maps, nl) = open_live_bridge(&bridge).await?;
    if args.count == Some(0) {
        return Err(usage(
            "--count 0 would print nothing; give 1 or more, or leave it out",
        ));
    }
    let kinds = if args.kinds.is_empty() {
        vec![
            MonitorKind::Drop,
            MonitorKind::Nat,
            MonitorKind::Publish,
            MonitorKind::Expire,
        ]
    } else {
        args.kinds.clone()
    };
    let explicit_expire = args.kinds.contains(&MonitorKind::Expire);
    let mut agent = None;
    if kinds.contains(&MonitorKind::Expire) {
        match connect_agent(&bridge).await {
            Ok(lines) => agent = Some(lines),
            Err(e) if explicit_expire => return Err(e),
            // Watching everything without an agent: the datapath's events
            // still come; say what is missing.
            Err(e) => log::warn!("{e:#}"),
        }
    }
    let datapath_kinds = kinds.iter().any(|k| *k != MonitorKind::Expire);
    let mut dp = if datapath_kinds {
        let mut dp = Datapath::open(&bridge)?;
        dp.renew()?;
        Some(dp)
    } else {
        None
    };
    let pin = std::fs::metadata(pins::map_path(&bridge, MAP_CONFIG)).ok();
    let mut names = Names {
        bridge: bridge.clone(),
        known: HashMap::new(),
    };
    let mut out = Printer {
        json: args.json,
        left: args.count,
    };
    let mut tick = tokio::time::interval(RENEW);
    loop {
        tokio::select! {
            events = async { dp.as_mut().expect("guarded").read().await }, if dp.is_some() => {
                let offset = unix_offset_ns();
                for ev in events? {
                    if !kind_of(&ev).is_some_and(|k| kinds.contains(&k)) {
                        continue;
                    }
                    let device = names.of(ev.ifindex, &maps, &nl).await;
                    if !out.event(describe(&ev, offset, device)) {
                        return Ok(());
                    }
                }
            }
            line = async { agent.as_mut().expect("guarded").next_line().await }, if agent.is_some() => {
                let line = line.context("cannot read from the agent")?;
                let Some(line) = line else {
                    agent = None;
                    log::warn!("the agent stopped; expired flows are no longer shown");
                    continue;
                };
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if v["type"] == "lost" {
                    out.lost("agent", v["count"].as_u64().unwrap_or(0));
                } else if !out.event(v) {
                    return Ok(());
                }
            }
            _ = tick.tick() => {
                let now_pin = std::fs::metadata(pins::map_path(&bridge, MAP_CONFIG)).ok();
                let same = match (&pin, &now_pin) {
                    (Some(a), Some(b)) => {
                        use std::os::unix::fs::MetadataExt as _;
                        a.dev() == b.dev() && a.ino() == b.ino()
                    }
                    _ => false,
                };
                if !same {
                    return Err(usage(format!(
                        "bridge {bridge} went down or was replaced; nothing more to monitor"
                    )));
                }
                if let Some(dp) = dp.as_mut() {
                    dp.renew()?;
                    let lost = dp.newly_lost()?;
                    if lost > 0 {
                        out.lost("datapath", lost);
                    }
                }
            }
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
