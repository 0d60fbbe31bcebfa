//! The nat scenario's connection churn (issue 7): a container opening
//! short connections to one outside service as fast as it can, with its
//! ephemeral range at 1024-65535, on the ebridge node and on Docker's
//! MASQUERADE node, six runs each, nothing cleared and the agent running,
//! so each run finds the NAT table as the runs before it left it (TCP
//! TIME_WAIT flows live 120 s). Meanwhile a node process does UDP
//! request/response to the outside host through the same uplink; the same
//! alone, right after each churn run (and once before the first), is its
//! control: node traffic must not suffer from what the containers do.
//!
//! Placement: the HTTP client and nginx share CPU B, the node's request/response and
//! its echo server CPU A, so what the node's traffic would lose to the
//! churn is the datapath's doing (drops, stolen replies, table effects),
//! not CPU time taken by the load.
//!
//! The setups alternate run by run (a setup's churn runs are about 12 s
//! apart: its control run and the other setup's two runs, far less than
//! the 120 s TIME_WAIT flows live), so run k of each is measured seconds
//! apart and their ratio is judged run by run.
use std::{net::SocketAddrV4, time::Instant};

use anyhow::{Context as _, Result};
use serde_json::{json, Value};

use super::{
    agent,
    aim::{OUTSIDE_IP, PORT_HTTP, PORT_NODE_RR},
    cpu, evidence, httpload, linux_bridge,
    measure::{self, Ctx},
    natmap,
    proc::Proc,
    scenario::Setup,
    signal,
    topology::Topology,
};

pub const RUNS: u32 = 6;
pub const RUN_SECS: u32 = 4;
pub const CONNS: u32 = 32;
/// The setups compared, subject first.
pub const SUBJECT: Setup = Setup::Ebridge;
pub const BASELINE: Setup = Setup::DockerNat;

/// One run on one setup: churn with the node's traffic, or the node's
/// traffic alone (the control).
pub struct Run {
    pub setup: Setup,
    /// 1..=RUNS; an alone run k follows churn run k, alone run 0 comes
    /// before the first.
    pub run: u32,
    pub churn: bool,
    pub conn_rate: Option<f64>,
    pub node_rate: f64,
    pub node_lost: u64,
    pub problems: Vec<String>,
    pub json: Value,
}

pub fn measure(topologies: &[Topology], ctx: &Ctx) -> Result<Vec<Run>> {
    let pick = |s: Setup| {
        topologies
            .iter()
            .find(|t| t.setup == s)
            .with_context(|| format!("churn needs the {} setup", s.key()))
    };
    let both = [pick(SUBJECT)?, pick(BASELINE)?];
    let http = SocketAddrV4::new(OUTSIDE_IP, PORT_HTTP);
    let echo_at = SocketAddrV4::new(OUTSIDE_IP, PORT_NODE_RR);
    let total_secs = (2 * RUNS + 1) * (RUN_SECS + 5) * 2 + 60;
    // Servers stay up for the whole phase, one set per setup.
    let mut servers = Vec::new();
    for t in both {
        let outside = t.outside_ns();
        let nginx = httpload::nginx(t, &outside, http, ctx.cpus[1])?;
        let mut echo = measure::load(
            &outside,
            "udp-echo",
            ctx,
            ctx.cpus[0],
            &measure::strings(&[
                "udp-echo",
                "--bind",
                &echo_at.to_string(),
                "--max-secs",
                &total_secs.to_string(),
            ]),
        )?;
        echo.wait_for_line("ready", std::time::Duration::from_secs(5))?;
        servers.push((nginx, echo));
    }
    let agents = || topologies.iter().filter_map(|o| o.agent.as_deref());
    let mut runs = Vec::new();
    let mut order = both;
    for run in 0..=RUNS {
        for t in order {
            let kinds: &[bool] = if run == 0 { &[false] } else { &[true, false] };
            for &churn in kinds {
                signal::check()?;
                let _others = agent::stop_others(agents(), t.agent.as_deref());
                let r = one_run(t, ctx, run, churn, http, echo_at)?;
                print_run(&r);
                runs.push(r);
                if let Some(a) = &t.agent {
                    a.check_running()?;
                }
            }
        }
        order.reverse();
    }
    drop(servers);
    Ok(runs)
}

fn one_run(
    t: &Topology,
    ctx: &Ctx,
    run: u32,
    churn: bool,
    http: SocketAddrV4,
    echo_at: SocketAddrV4,
) -> Result<Run> {
    let node = t.node_ns.as_deref().context("churn setup without a node")?;
    let counters_before = evidence::snapshot(t)?;
    let ct_before = linux_bridge::conntrack_stats(t);
    let agent_before = t.agent.as_deref().map(|a| a.cpu_secs());
    let cpu_before = cpu::snapshot()?;
    let started = Instant::now();
    let load = if churn {
        Some(httpload::start_churn(
            &t.container_ns,
            ctx,
            http,
            CONNS,
            RUN_SECS,
        )?)
    } else {
        None
    };
    let ping = node_ping(node, ctx, echo_at)?;
    let load = load
        .map(|w| httpload::finish_churn(w, RUN_SECS))
        .transpose()?;
    let ping = measure::parse(
        &ping.finish(std::time::Duration::from_secs(u64::from(RUN_SECS) + 15))?,
        "udp-ping",
    )?;
    let foreign = cpu::foreign_share(&cpu_before, &cpu::snapshot()?);
    let wall = started.elapsed().as_secs_f64();
    let agent_cpu = t
        .agent
        .as_ref()
        .zip(agent_before)
        .map(|(a, b)| a.cpu_secs() - b);
    let counters_after = evidence::snapshot(t)?;

    let mut problems = Vec::new();
    let mut ev = Value::Null;
    let mut conn_rate = None;
    if let Some(w) = &load {
        let requests = w["requests"].as_f64().unwrap_or(0.0);
        conn_rate = w["rate"].as_f64();
        let (e, p) = evidence::check(
            t,
            true,
            requests as u64,
            None,
            &counters_before,
            &counters_after,
        );
        ev = e;
        problems.extend(p);
    }
    let node_rate = ping["rate"].as_f64().unwrap_or(0.0);
    let node_lost = ping["lost"].as_u64().unwrap_or(0);

    let mut drops = json!({});
    for reason in ["drop-nat-no-port", "drop-nat-table-full"] {
        drops[reason] = json!(counters_after.packets_since(&counters_before, reason));
    }
    let nat_entries = t
        .ebridge_bridge
        .as_deref()
        .and_then(|b| natmap::count(b).ok());
    let conntrack = if t.setup.is_docker() {
        let after = linux_bridge::conntrack_stats(t);
        let delta: serde_json::Map<String, Value> = after
            .iter()
            .map(|(k, v)| {
                let d = v.saturating_sub(*ct_before.get(k).unwrap_or(&0));
                (k.clone(), json!(d))
            })
            .collect();
        json!({"count_after": linux_bridge::conntrack_count(t), "stats_delta": delta})
    } else {
        Value::Null
    };
    let json = json!({
        "setup": t.setup.key(),
        "run": run,
        "kind": if churn { "churn" } else if run == 0 { "node alone, before the churn" } else { "node alone, right after churn run k" },
        "conn_rate": conn_rate,
        "http_churn": load,
        "node_udp_rr": ping,
        "ebridge_drops": if t.ebridge_bridge.is_some() { drops } else { Value::Null },
        "nat_entries_after": nat_entries,
        "conntrack": conntrack,
        "evidence": ev,
        "problems": problems,
        "agent_cpu_secs": agent_cpu,
        "foreign_cpu_share": foreign,
        "wall_secs": wall,
    });
    Ok(Run {
        setup: t.setup,
        run,
        churn,
        conn_rate,
        node_rate,
        node_lost,
        problems,
        json,
    })
}

/// The node's own UDP request/response to the outside host, from the node
/// namespace (source: the uplink address, never masqueraded).
fn node_ping(node: &str, ctx: &Ctx, to: SocketAddrV4) -> Result<Proc> {
    measure::load(
        node,
        "node udp-ping",
        ctx,
        ctx.cpus[0],
        &measure::strings(&[
            "udp-ping",
            "--to",
            &to.to_string(),
            "--secs",
            &RUN_SECS.to_string(),
            "--size",
            "64",
        ]),
    )
}

fn print_run(r: &Run) {
    let what = match r.conn_rate {
        Some(c) => format!("{c:>8.0} conn/s"),
        None => "   (no churn)  ".to_string(),
    };
    let drops = &r.json["ebridge_drops"];
    let extra = if drops.is_null() {
        format!("conntrack {} entries", r.json["conntrack"]["count_after"])
    } else {
        format!(
            "drop-nat-no-port +{}, table-full +{}, nat entries {}",
            drops["drop-nat-no-port"], drops["drop-nat-table-full"], r.json["nat_entries_after"]
        )
    };
    println!(
        "  {} {} {:<11} {what}  node rr {:>7.0}/s lost {}  {extra} (others used {:.1}% CPU)",
        if r.churn { "churn run" } else { "alone run" },
        r.run,
        r.setup.key(),
        r.node_rate,
        r.node_lost,
        r.json["foreign_cpu_share"].as_f64().unwrap_or(0.0) * 100.0
    );
    for p in &r.problems {
        println!("  INVALID churn run {} {}: {p}", r.run, r.setup.key());
    }
}
