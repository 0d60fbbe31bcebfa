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

use super::{aim::TUPLE_SPORTS, metric::Metric, proc::Proc, topology::Topology};

/// How long a server may take to bind; how long past its duration a
/// client may run before it is killed.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
const GRACE: Duration = Duration::from_secs(10);

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
}

pub struct Outcome {
    pub values: Vec<(Metric, f64)>,
    /// The tools' own JSON, kept in the report for diagnosis.
    pub raw: Value,
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
            Measurement::UdpRate => "bench-load udp-blast (sendmmsg, 64-byte payloads) -> udp-sink (recvmmsg); rate = datagrams received / time between first and last; sender and receiver on different CPUs",
            Measurement::UdpRr => "bench-load udp-ping -> udp-echo, 64-byte payload, one in flight, RTT percentiles after 500 warm-up round trips; both on one CPU",
            Measurement::TcpCrr => "bench-load tcp-crr: connect, write 1 byte, read 1 byte, close, one connection at a time; server accepts in a loop; both on one CPU. nat and publish: every connection binds the next unused (source address, destination address, source port) tuple, so each is a new flow for conntrack and ebridge alike; both tables are cleared of the test's TCP flows after each measurement",
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

fn load(t_ns: &str, what: &str, ctx: &Ctx, cpu: usize, args: &[String]) -> Result<Proc> {
    let mut full = vec!["--cpu".to_string(), cpu.to_string()];
    full.extend_from_slice(args);
    Proc::spawn_in(t_ns, what, &ctx.load_bin, &full)
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn parse(out: &str, what: &str) -> Result<Value> {
    let line = out.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("{what} printed no JSON: {out:?}"))
}

fn field(v: &Value, name: &str) -> Result<f64> {
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
    let pps = field(&sink, "pps")?;
    if pps <= 0.0 {
        bail!("udp-sink received nothing: {sink}");
    }
    Ok(Outcome {
        values: vec![(Metric::UdpPps, pps)],
        raw: json!({"sender": blast, "receiver": sink}),
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
    if field(&ping, "samples")? < 1.0 {
        bail!("udp-ping got no answer: {ping}");
    }
    Ok(Outcome {
        values: vec![
            (Metric::RttP50, field(&ping, "p50_us")?),
            (Metric::RttP99, field(&ping, "p99_us")?),
        ],
        raw: ping,
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
    let mut args = strings(&["tcp-crr", "--to", &target, "--secs", &ctx.secs.to_string()]);
    if let Some(tuples) = t.aim.crr_tuples {
        args.extend(strings(&[
            "--to-count",
            &tuples.to_count.to_string(),
            "--from",
            &tuples.from.to_string(),
            "--from-count",
            &tuples.from_count.to_string(),
            "--sports",
            &format!("{}-{}", TUPLE_SPORTS.0, TUPLE_SPORTS.1),
            "--first",
            &t.next_tuple.get().to_string(),
        ]));
    }
    let client = load(&t.client_ns, "tcp-crr", ctx, ctx.cpus[1], &args)?
        .finish(Duration::from_secs(ctx.secs.into()) + GRACE)?;
    server.stop();
    let client = parse(&client, "tcp-crr")?;
    if let Some(next) = client["next_tuple"].as_u64() {
        t.next_tuple.set(next);
    }
    let cps = field(&client, "cps")?;
    if cps <= 0.0 {
        bail!("tcp-crr completed no connection: {client}");
    }
    Ok(Outcome {
        values: vec![(Metric::TcpCps, cps)],
        raw: client,
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
    Ok(Outcome {
        values: vec![(Metric::TcpBps, bps)],
        raw: json!({
            "received_bits_per_second": bps,
            "sent_bits_per_second": end["sum_sent"]["bits_per_second"],
            "retransmits": end["sum_sent"]["retransmits"],
            "cpu_utilization_percent": end["cpu_utilization_percent"],
        }),
    })
}
