//! bench-load: the load generator `cargo xtask bench` runs inside the
//! benchmark's network namespaces (under `nsenter --net=...`).
//!
//! Every mode is bounded in time: clients run for `--secs`, servers give up
//! after `--max-secs` even if nobody stops them. Servers print `ready` once
//! bound, so the bench starts the client only when the server listens;
//! every mode that measures prints one JSON line on stdout.
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
    /// Count received UDP datagrams; report the rate between the first and
    /// the last one. Exits after `--idle-ms` without traffic.
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
    /// Connect, write 1 byte, read 1 byte, close; one connection at a time.
    TcpCrr {
        #[arg(long)]
        to: SocketAddrV4,
        #[arg(long)]
        secs: f64,
        /// Destination addresses: `--to`'s address and the ones after it.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
        to_count: u32,
        /// Source address to bind (with `--sports`).
        #[arg(long, default_value_t = Ipv4Addr::UNSPECIFIED)]
        from: Ipv4Addr,
        /// Source addresses: `--from` and the ones after it.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
        from_count: u32,
        /// MIN-MAX: bind these source ports in turn, so no (address,
        /// address, port) tuple repeats; without it the kernel picks ports.
        #[arg(long, value_parser = port_range)]
        sports: Option<(u16, u16)>,
        /// Index of the first tuple (a previous run's `next_tuple`).
        #[arg(long, default_value_t = 0)]
        first: u64,
    },
}

fn port_range(text: &str) -> Result<(u16, u16), String> {
    let (min, max) = text
        .split_once('-')
        .ok_or_else(|| format!("'{text}' is not MIN-MAX"))?;
    let min: u16 = min.parse().map_err(|e| format!("'{min}': {e}"))?;
    let max: u16 = max.parse().map_err(|e| format!("'{max}': {e}"))?;
    if min == 0 || max < min {
        return Err(format!("'{text}': need 1 <= MIN <= MAX"));
    }
    Ok((min, max))
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
        Mode::TcpCrr {
            to,
            secs: s,
            to_count,
            from,
            from_count,
            sports,
            first,
        } => {
            let tuples = tcp_crr::Tuples {
                to,
                to_count,
                from,
                from_count,
                sports,
                first,
            };
            Some(tcp_crr::client(&tuples, secs(s))?)
        }
    };
    if let Some(report) = report {
        println!("{report}");
    }
    Ok(())
}
