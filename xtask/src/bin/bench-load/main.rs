//! bench-load: the load generator `cargo xtask bench` runs inside the
//! benchmark's network namespaces (under `nsenter --net=...`).
//!
//! Every mode is bounded in time: clients run for `--secs`, servers give up
//! after `--max-secs` even if nobody stops them. Servers print `ready` once
//! bound, so the bench starts the client only when the server listens;
//! every mode that measures prints one JSON line on stdout.
mod http_churn;
mod metrics_scrape;
mod raw_storm;
mod sys;
mod tcp_crr;
mod udp_ping;
mod udp_rate;

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    time::Duration,
};

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "bench-load")]
struct Cli {
    /// Pin this process to one CPU, so every setup runs with the same
    /// placement of client, server and softirq work.
    #[arg(long, global = true)]
    cpu: Option<usize>,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Count received UDP datagrams, the longest silence between them and
    /// the socket's drops. Exits after `--idle-ms` without traffic.
    UdpSink {
        #[arg(long)]
        bind: SocketAddr,
        #[arg(long)]
        max_secs: f64,
        #[arg(long, default_value_t = 300)]
        idle_ms: u64,
    },
    /// Send fixed-size UDP datagrams as fast as sendmmsg allows.
    UdpBlast {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long)]
        secs: f64,
        /// UDP payload bytes.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Datagrams per sendmmsg call.
        #[arg(long, default_value_t = 64)]
        batch: usize,
    },
    /// Echo every UDP datagram back to its sender.
    UdpEcho {
        #[arg(long)]
        bind: SocketAddr,
        #[arg(long)]
        max_secs: f64,
    },
    /// UDP request/response: one datagram in flight, RTT percentiles.
    UdpPing {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long)]
        secs: f64,
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Round trips before measuring (ARP, caches, FDB learning).
        #[arg(long, default_value_t = 500)]
        warmup: u32,
    },
    /// Accept connections: read 1 byte, write 1 byte, wait for the
    /// client's close, close.
    TcpCrrServer {
        #[arg(long)]
        bind: SocketAddr,
        #[arg(long)]
        max_secs: f64,
    },
    /// HTTP connection churn: `conns` connections in flight, each one
    /// request with `Connection: close`, replaced when the server closes it
    /// or when `timeout-ms` passes.
    HttpChurn {
        #[arg(long)]
        to: SocketAddrV4,
        #[arg(long)]
        secs: f64,
        #[arg(long, default_value_t = 32)]
        conns: usize,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Connect, write 1 byte, read 1 byte, close; one connection at a time,
    /// from ports the kernel picks.
    TcpCrr {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long)]
        secs: f64,
    },
    /// Spoofed frames onto a device with a raw socket (a drop storm):
    /// the device's own MAC, a source address that is not its own.
    RawStorm {
        #[arg(long, default_value = "eth0")]
        dev: String,
        #[arg(long)]
        src: Ipv4Addr,
        #[arg(long)]
        dst: Ipv4Addr,
        #[arg(long, default_value_t = 7777)]
        dport: u16,
        /// Frames per second; 0: as fast as sendmmsg allows.
        #[arg(long)]
        pps: u64,
        #[arg(long)]
        secs: f64,
    },
    /// GET /metrics `count` times, one every `every-ms` (open loop),
    /// each timed, the named metrics' values kept.
    MetricsScrape {
        #[arg(long)]
        to: SocketAddrV4,
        #[arg(long)]
        count: usize,
        #[arg(long)]
        every_ms: u64,
        #[arg(long, default_value_t = 10_000)]
        timeout_ms: u64,
        /// Metric names whose values to report (repeatable).
        #[arg(long = "metric")]
        metrics: Vec<String>,
    },
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.0, 3600.0))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(cpu) = cli.cpu {
        sys::pin_to_cpu(cpu)?;
    }
    let report = match cli.mode {
        Mode::UdpSink {
            bind,
            max_secs,
            idle_ms,
        } => Some(udp_rate::sink(
            bind,
            secs(max_secs),
            Duration::from_millis(idle_ms),
        )?),
        Mode::UdpBlast {
            to,
            secs: s,
            size,
            batch,
        } => Some(udp_rate::blast(to, secs(s), size, batch)?),
        Mode::UdpEcho { bind, max_secs } => {
            udp_ping::echo(bind, secs(max_secs))?;
            None
        }
        Mode::UdpPing {
            to,
            secs: s,
            size,
            warmup,
        } => Some(udp_ping::ping(to, secs(s), size, warmup)?),
        Mode::TcpCrrServer { bind, max_secs } => {
            tcp_crr::server(bind, secs(max_secs))?;
            None
        }
        Mode::TcpCrr { to, secs: s } => Some(tcp_crr::client(to, secs(s))?),
        Mode::HttpChurn {
            to,
            secs: s,
            conns,
            timeout_ms,
        } => Some(http_churn::run(
            to,
            conns.max(1),
            secs(s),
            Duration::from_millis(timeout_ms),
        )?),
        Mode::RawStorm {
            dev,
            src,
            dst,
            dport,
            pps,
            secs: s,
        } => Some(raw_storm::storm(&dev, src, dst, dport, pps, secs(s))?),
        Mode::MetricsScrape {
            to,
            count,
            every_ms,
            timeout_ms,
            metrics,
        } => Some(metrics_scrape::run(
            to,
            count,
            Duration::from_millis(every_ms),
            Duration::from_millis(timeout_ms),
            &metrics,
        )?),
    };
    if let Some(report) = report {
        println!("{report}");
    }
    Ok(())
}
