//! `ebridge agent --metrics-addr`: the Prometheus text format (OpenMetrics)
//! on `GET /metrics`, built with `prometheus-client`. Per-reason packet and
//! byte counters are read from the stats map at scrape time (a few dozen
//! per-CPU slots); everything that would need a walk of the NAT table or
//! the FDB comes from the last GC pass (`report.rs`), so a scrape costs the
//! same with a million flows as with none.
use std::{
    fmt,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use anyhow::{Context as _, Result};
use ebridge_common::{
    maps::MAP_STATS,
    stats::{Counter, Verdict, REASONS},
};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
    registry::Registry,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};

use super::report::Report;

/// What the agent shares with the endpoint.
#[derive(Debug)]
pub struct Source {
    pub bridge: String,
    pub report: Arc<Mutex<Report>>,
}

/// The per-reason counters, summed over CPUs; None while the bridge is down.
fn counters(bridge: &str) -> Option<Vec<(u32, Counter)>> {
    let path = crate::pins::map_path(bridge, MAP_STATS);
    let data = aya::maps::MapData::from_pin(path).ok()?;
    let map: aya::maps::PerCpuArray<_, Counter> =
        aya::maps::Map::from_map_data(data).ok()?.try_into().ok()?;
    REASONS
        .iter()
        .map(|(code, _, _)| {
            let per_cpu = map.get(code, 0).ok()?;
            let sum = per_cpu.iter().fold(Counter::default(), |acc, c| Counter {
                packets: acc.packets + c.packets,
                bytes: acc.bytes + c.bytes,
            });
            Some((*code, sum))
        })
        .collect()
}

fn verdict_label(v: Verdict) -> &'static str {
    match v {
        Verdict::Redirect => "redirect",
        Verdict::Pass => "pass",
        Verdict::Drop => "drop",
    }
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl prometheus_client::encoding::EncodeGaugeValue + fmt::Debug,
) -> fmt::Result {
    ConstGauge::new(value).encode(enc.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl prometheus_client::encoding::EncodeCounterValue + fmt::Debug,
) -> fmt::Result {
    ConstCounter::new(value).encode(enc.encode_descriptor(name, help, None, MetricType::Counter)?)
}

impl Collector for Source {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        if let Some(counters) = counters(&self.bridge) {
            let rows: Vec<([(&str, &str); 2], Counter)> = counters
                .iter()
                .filter_map(|(code, c)| {
                    let (_, label, verdict) = REASONS.iter().find(|r| r.0 == *code)?;
                    Some((
                        [("reason", *label), ("verdict", verdict_label(*verdict))],
                        *c,
                    ))
                })
                .collect();
            let mut packets = enc.encode_descriptor(
                "ebridge_packets",
                "Packets the datapath handled, by its verdict and the reason for it",
                None,
                MetricType::Counter,
            )?;
            for (labels, c) in &rows {
                ConstCounter::new(c.packets).encode(packets.encode_family(labels)?)?;
            }
            let mut bytes = enc.encode_descriptor(
                "ebridge_bytes",
                "Bytes the datapath handled, by its verdict and the reason for it",
                None,
                MetricType::Counter,
            )?;
            for (labels, c) in &rows {
                ConstCounter::new(c.bytes).encode(bytes.encode_family(labels)?)?;
            }
            let no_port = counters
                .iter()
                .find(|(code, _)| *code == ebridge_common::stats::DROP_NAT_NO_PORT)
                .map_or(0, |(_, c)| c.packets);
            counter(
                &mut enc,
                "ebridge_nat_port_allocation_failures",
                "New flows dropped because no NAT port was free towards their destination",
                no_port,
            )?;
        }
        // A poisoned lock means a pass panicked; its numbers still stand.
        let r = match self.report.lock() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let mut flows = enc.encode_descriptor(
            "ebridge_nat_flows",
            "Live NAT flows at the last GC pass, by owner, protocol and state",
            None,
            MetricType::Gauge,
        )?;
        for f in &r.live_flows {
            let labels = [
                ("owner", f.owner.as_str()),
                ("proto", f.proto.as_str()),
                ("state", f.state.as_str()),
            ];
            ConstGauge::new(f.flows).encode(flows.encode_family(&labels)?)?;
        }
        gauge(
            &mut enc,
            "ebridge_nat_entries",
            "NAT table entries at the last GC pass (two per container flow)",
            r.nat_entries,
        )?;
        gauge(
            &mut enc,
            "ebridge_nat_capacity_entries",
            "NAT table size in entries (--nat-entries)",
            r.nat_capacity,
        )?;
        gauge(
            &mut enc,
            "ebridge_fdb_entries",
            "FDB entries at the last GC pass",
            r.fdb_entries,
        )?;
        gauge(
            &mut enc,
            "ebridge_endpoints",
            "Endpoints attached to the bridge",
            r.endpoints,
        )?;
        gauge(
            &mut enc,
            "ebridge_published_ports",
            "Published (address, port, protocol) entries",
            r.published_ports,
        )?;
        counter(
            &mut enc,
            "ebridge_gc_runs",
            "GC passes the agent made",
            r.gc_runs,
        )?;
        counter(
            &mut enc,
            "ebridge_gc_removed_entries",
            "NAT entries the GC removed",
            r.gc_removed_entries,
        )?;
        counter(
            &mut enc,
            "ebridge_gc_duration_seconds",
            "Time spent in GC passes",
            r.gc_seconds_total,
        )?;
        gauge(
            &mut enc,
            "ebridge_gc_last_duration_seconds",
            "Duration of the last GC pass",
            r.gc_last_seconds,
        )?;
        gauge(
            &mut enc,
            "ebridge_gc_last_run_timestamp_seconds",
            "When the last GC pass ended (Unix time)",
            r.last_gc_unix_ms as f64 / 1e3,
        )?;
        let mut info = enc.encode_descriptor(
            "ebridge_build_info",
            "The agent's version (always 1)",
            None,
            MetricType::Gauge,
        )?;
        let labels = [("version", env!("CARGO_PKG_VERSION"))];
        ConstGauge::new(1u64).encode(info.encode_family(&labels)?)?;
        Ok(())
    }
}

/// Binds the endpoint and serves it from a thread of its own, with its own
/// runtime: the agent's loop runs GC passes that block for a second with a
/// million NAT entries, and a scrape must not wait for one. Binding happens
/// here, so a taken port is the operator's to hear about at start.
pub fn start(addr: SocketAddr, source: Source) -> Result<()> {
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot listen on {addr} for metrics"))?;
    listener
        .set_nonblocking(true)
        .context("cannot make the metrics socket non-blocking")?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    log::warn!("metrics endpoint not started: {e}");
                    return;
                }
            };
            rt.block_on(async move {
                let served = match TcpListener::from_std(listener) {
                    Ok(l) => serve(l, source).await,
                    Err(e) => Err(e.into()),
                };
                if let Err(e) = served {
                    log::warn!("metrics endpoint stopped: {e:#}");
                }
            });
        })
        .context("cannot start the metrics thread")?;
    Ok(())
}

/// Serves `/metrics` until the agent exits.
pub async fn serve(listener: TcpListener, source: Source) -> Result<()> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(source));
    let registry = Arc::new(registry);
    loop {
        let (mut conn, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                log::warn!("metrics: accept failed: {e}");
                continue;
            }
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            // The request line is all that matters; 8 KiB holds any sane one.
            let mut buf = vec![0u8; 8192];
            let n = match conn.read(&mut buf).await {
                Ok(n) => n,
                Err(_) => return,
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let response = if request.starts_with("GET ") && path == "/metrics" {
                let mut body = String::new();
                match prometheus_client::encoding::text::encode(&mut body, &registry) {
                    Ok(()) => format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    ),
                    Err(_) => "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
                }
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string()
            };
            let _ = conn.write_all(response.as_bytes()).await;
        });
    }
}
