//! The four measurements. Clients run in the topology's client namespace
//! and send to the scenario's target address (aim.rs); servers run in its
//! server namespace and bind their address there.
//!
//! CPU placement (the same for every setup; on a 2-core box it decides
//! what is measured):
//! - streams (UDP flood, TCP throughput): sender and receiver on different
//!   CPUs, so the sender's CPU — which also runs the whole softirq path,
//!   veth → bridge → veth → socket — is the bottleneck, i.e. the path's
//!   per-packet cost;
//! - one-at-a-time exchanges (UDP request/response, TCP connect rate):
//!   client and server on the same CPU. Across CPUs every exchange pays a
//!   cross-CPU wake-up of an idle vCPU, about 100 µs on this VM, which
//!   would bury the path's cost of a few µs.
use std::{path::PathBuf, time::Duration};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};

use super::{metric::Metric, proc::Proc, topology::Topology};

/// How long a server may take to bind; how long past its duration a
/// client may run before it is killed.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
const GRACE: Duration = Duration::from_secs(10);
/// A UDP stream the path loses more than this share of does not give the
/// path's rate (a stall mid-run shows up here too: the sender goes on
/// sending into it): the sample is invalid.
const LOSS_LIMIT: f64 = 0.01;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measurement {
    UdpRate,
    UdpRr,
    TcpCrr,
    TcpStream,
}

pub struct Ctx {
    pub load_bin: PathBuf,
    pub secs: u32,
    /// Two CPUs this process may use (the same one twice on a 1-CPU box).
    pub cpus: [usize; 2],
    /// What ebridge was built from (`git describe`-like), for the report.
    pub source: String,
}

pub struct Outcome {
    pub values: Vec<(Metric, f64)>,
    /// The tools' own JSON, kept in the report for diagnosis.
    pub raw: Value,
    /// What the path carried from client to server, as the tools counted
    /// it (datagrams received, round trips, connections; bytes for the
    /// stream): the datapath's counters must show at least as much.
    pub carried: u64,
    pub carried_bytes: Option<u64>,
    /// Why the sample does not give its figure (loss, stall), if it doesn't.
    pub problems: Vec<String>,
}

impl Measurement {
    pub const ALL: [Measurement; 4] = [
        Measurement::UdpRate,
        Measurement::UdpRr,
        Measurement::TcpCrr,
        Measurement::TcpStream,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Measurement::UdpRate => "udp-rate",
            Measurement::UdpRr => "udp-rr",
            Measurement::TcpCrr => "tcp-crr",
            Measurement::TcpStream => "tcp-stream",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Measurement::UdpRate => "bench-load udp-blast (sendmmsg, 64-byte payloads) -> udp-sink (recvmmsg); rate = datagrams delivered to the receiving socket (received + the socket's own drops, SO_MEMINFO) / the sender's sending time; path loss = sent - delivered, invalid above 1%; sender and receiver on different CPUs",
            Measurement::UdpRr => "bench-load udp-ping -> udp-echo, 64-byte payload, one in flight (200 ms timeout), RTT percentiles after 500 warm-up round trips with lost requests counted as infinitely slow (a percentile that falls on one is invalid); both on one CPU",
            Measurement::TcpCrr => "bench-load tcp-crr: connect, write 1 byte, read 1 byte, close, one connection at a time from ports the kernel picks (1024-65535, tcp_tw_reuse=1, so tuples recur as on any busy client); server accepts in a loop; both on one CPU; nothing is cleared between measurements",
            Measurement::TcpStream => "iperf3 -t SECS single TCP stream, receiver-side bits/s; client and server on different CPUs",
        }
    }

    pub fn metrics(self) -> &'static [Metric] {
        match self {
            Measurement::UdpRate => &[Metric::UdpPps],
            Measurement::UdpRr => &[Metric::RttP50, Metric::RttP99],
            Measurement::TcpCrr => &[Metric::TcpCps],
            Measurement::TcpStream => &[Metric::TcpBps],
        }
    }

    pub fn run(self, t: &Topology, ctx: &Ctx) -> Result<Outcome> {
        match self {
            Measurement::UdpRate => udp_rate(t, ctx),
            Measurement::UdpRr => udp_rr(t, ctx),
            Measurement::TcpCrr => tcp_crr(t, ctx),
            Measurement::TcpStream => tcp_stream(t, ctx),
        }
    }
}

pub fn load(t_ns: &str, what: &str, ctx: &Ctx, cpu: usize, args: &[String]) -> Result<Proc> {
    let mut full = vec!["--cpu".to_string(), cpu.to_string()];
    full.extend_from_slice(args);
    Proc::spawn_in(t_ns, what, &ctx.load_bin, &full)
}

pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

pub fn parse(out: &str, what: &str) -> Result<Value> {
    let line = out.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("{what} printed no JSON: {out:?}"))
}

pub fn field(v: &Value, name: &str) -> Result<f64> {
    v[name]
        .as_f64()
        .with_context(|| format!("no number '{name}' in {v}"))
}

fn udp_rate(t: &Topology, ctx: &Ctx) -> Result<Outcome> {
    let aim = t.aim.of(Measurement::UdpRate);
    let (target, bind) = (aim.to.to_string(), aim.bind.to_string());
    let max = (ctx.secs as u64 + GRACE.as_secs()).to_string();
    let mut sink = load(
        &t.server_ns,
        "udp-sink",
        ctx,
        ctx.cpus[1],
        &strings(&["udp-sink", "--bind", &bind, "--max-secs", &max]),
    )?;
    sink.wait_for_line("ready", READY_TIMEOUT)?;
    let blast = load(
        &t.client_ns,
        "udp-blast",
        ctx,
        ctx.cpus[0],
        &strings(&[
            "udp-blast",
            "--to",
            &target,
            "--secs",
            &ctx.secs.to_string(),
            "--size",
            "64",
        ]),
    )?
    .finish(Duration::from_secs(ctx.secs.into()) + GRACE)?;
    let blast = parse(&blast, "udp-blast")?;
    // The sink stops 300 ms after the last datagram.
    let sink = parse(&sink.finish(GRACE)?, "udp-sink")?;
    let sent = field(&blast, "sent")?;
    let received = field(&sink, "packets")?;
    if received <= 0.0 {
        bail!("udp-sink received nothing: {sink}");
    }
    // Datagrams the receiving socket dropped (its queue full while the
    // receiver waited for CPU) did cross the whole path: they count as
    // delivered, and only what vanished before the socket is the path's
    // loss.
    let socket_drops = sink["socket_drops"].as_f64().unwrap_or(0.0);
    let delivered = received + socket_drops;
    let pps = delivered / field(&blast, "secs")?.max(1e-9);
    let loss = (sent - delivered).max(0.0) / sent.max(1.0);
    let mut problems = Vec::new();
    if loss > LOSS_LIMIT {
        problems.push(format!(
            "the path lost {:.2}% of {sent} datagrams (received {received}, dropped by the receiving socket {socket_drops})",
            loss * 100.0
        ));
    }
    Ok(Outcome {
        values: vec![(Metric::UdpPps, pps)],
        raw: json!({"sender": blast, "receiver": sink, "delivered": delivered, "path_loss": loss}),
        carried: delivered as u64,
        carried_bytes: None,
        problems,
    })
}

fn udp_rr(t: &Topology, ctx: &Ctx) -> Result<Outcome> {
    let aim = t.aim.of(Measurement::UdpRr);
    let (target, bind) = (aim.to.to_string(), aim.bind.to_string());
    let max = (ctx.secs as u64 + 2 * GRACE.as_secs()).to_string();
    let mut echo = load(
        &t.server_ns,
        "udp-echo",
        ctx,
        ctx.cpus[1],
        &strings(&["udp-echo", "--bind", &bind, "--max-secs", &max]),
    )?;
    echo.wait_for_line("ready", READY_TIMEOUT)?;
    let ping = load(
        &t.client_ns,
        "udp-ping",
        ctx,
        ctx.cpus[1],
        &strings(&[
            "udp-ping",
            "--to",
            &target,
            "--secs",
            &ctx.secs.to_string(),
            "--size",
            "64",
        ]),
    )?
    .finish(Duration::from_secs(ctx.secs.into()) + GRACE)?;
    echo.stop();
    let ping = parse(&ping, "udp-ping")?;
    rr_outcome(ping)
}

/// p50 and p99 of a udp-ping report; a percentile that falls on a lost
/// request makes the sample invalid.
pub fn rr_outcome(ping: Value) -> Result<Outcome> {
    let samples = field(&ping, "samples")?;
    if samples < 1.0 {
        bail!("udp-ping got no answer: {ping}");
    }
    let mut values = Vec::new();
    let mut problems = Vec::new();
    for (metric, key) in [(Metric::RttP50, "p50_us"), (Metric::RttP99, "p99_us")] {
        match ping[key].as_f64() {
            Some(v) => values.push((metric, v)),
            None => problems.push(format!(
                "{key} falls on a lost request ({} of {} lost)",
                ping["lost"],
                samples as u64 + ping["lost"].as_u64().unwrap_or(0)
            )),
        }
    }
    Ok(Outcome {
        values,
        raw: ping,
        carried: samples as u64,
        carried_bytes: None,
        problems,
    })
}

fn tcp_crr(t: &Topology, ctx: &Ctx) -> Result<Outcome> {
    let aim = t.aim.of(Measurement::TcpCrr);
    let (target, bind) = (aim.to.to_string(), aim.bind.to_string());
    let max = (ctx.secs as u64 + 2 * GRACE.as_secs()).to_string();
    let mut server = load(
        &t.server_ns,
        "tcp-crr-server",
        ctx,
        ctx.cpus[1],
        &strings(&["tcp-crr-server", "--bind", &bind, "--max-secs", &max]),
    )?;
    server.wait_for_line("ready", READY_TIMEOUT)?;
    let args = strings(&["tcp-crr", "--to", &target, "--secs", &ctx.secs.to_string()]);
    let client = load(&t.client_ns, "tcp-crr", ctx, ctx.cpus[1], &args)?
        .finish(Duration::from_secs(ctx.secs.into()) + GRACE)?;
    server.stop();
    let client = parse(&client, "tcp-crr")?;
    let cps = field(&client, "cps")?;
    if cps <= 0.0 {
        bail!("tcp-crr completed no connection: {client}");
    }
    Ok(Outcome {
        values: vec![(Metric::TcpCps, cps)],
        carried: field(&client, "conns")? as u64,
        carried_bytes: None,
        raw: client,
        problems: Vec::new(),
    })
}

fn tcp_stream(t: &Topology, ctx: &Ctx) -> Result<Outcome> {
    let aim = t.aim.of(Measurement::TcpStream);
    let (server_ip, bind_ip) = (aim.to.ip().to_string(), aim.bind.ip().to_string());
    let (port, bind_port) = (aim.to.port().to_string(), aim.bind.port().to_string());
    // --forceflush: the "Server listening" line must reach the pipe now;
    // -1: the server exits after this one test.
    let mut server = Proc::spawn_in(
        &t.server_ns,
        "iperf3 server",
        "iperf3",
        &[
            "-s",
            "-1",
            "--forceflush",
            "-B",
            &bind_ip,
            "-p",
            &bind_port,
            "-A",
            &ctx.cpus[1].to_string(),
        ],
    )?;
    server.wait_for_line("listening", READY_TIMEOUT)?;
    let out = Proc::spawn_in(
        &t.client_ns,
        "iperf3 client",
        "iperf3",
        &[
            "-c",
            &server_ip,
            "-p",
            &port,
            "-t",
            &ctx.secs.to_string(),
            "-J",
            "-A",
            &ctx.cpus[0].to_string(),
        ],
    )?
    .finish(Duration::from_secs(ctx.secs.into()) + GRACE)?;
    let _ = server.finish(Duration::from_secs(3));
    let v: Value = serde_json::from_str(&out).context("iperf3 -J printed no JSON")?;
    if let Some(err) = v["error"].as_str() {
        bail!("iperf3: {err}");
    }
    let end = &v["end"];
    let bps = field(&end["sum_received"], "bits_per_second")?;
    let bytes = field(&end["sum_received"], "bytes")?;
    Ok(Outcome {
        values: vec![(Metric::TcpBps, bps)],
        carried: 1,
        carried_bytes: Some(bytes as u64),
        problems: Vec::new(),
        raw: json!({
            "received_bits_per_second": bps,
            "sent_bits_per_second": end["sum_sent"]["bits_per_second"],
            "retransmits": end["sum_sent"]["retransmits"],
            "cpu_utilization_percent": end["cpu_utilization_percent"],
        }),
    })
}
