//! The cost of publishing 1,000 ports on a busy node (the publish
//! scenario's `ebridge` and `docker-dnat` nodes, 100 ports published
//! already), repeated and interleaved:
//!
//! - ebridge: one `endpoint add -p 21000-21999:21000-21999/udp`, the same
//!   `endpoint add` without `-p` (what creating the endpoint costs), and
//!   1,000 `ebridge publish add` calls (one process each, from one shell
//!   script, as an operator's loop would);
//! - iptables: the 3,000 rules dockerd writes for 1,000 ports (DNAT,
//!   filter ACCEPT, hairpin MASQUERADE) with one `iptables-restore
//!   --noflush`, and with 3,000 `iptables` calls from one shell script.
//!
//! After each variant the node is put back as it was (`endpoint rm`,
//! `iptables-restore` of the saved rules).
use std::time::Instant;

use anyhow::{Context as _, Result};

use super::{
    aim::{COST_ENDPOINT_IP, COST_FIRST_PORT},
    ebridge_node::ebridge,
    iptables::{self, Published},
    scenario::{Setup, BULK_PORTS},
    scratch::ScratchFile,
    signal,
    stats::Extra,
    topology::Topology,
};
use crate::util::{ebridge_release_bin, sh};

struct Node {
    ns: String,
    bridge: Option<String>,
}

fn node_of(topologies: &[Topology], setup: Setup) -> Result<Node> {
    let t = topologies
        .iter()
        .find(|t| t.setup == setup)
        .with_context(|| format!("no {} setup to publish on", setup.key()))?;
    Ok(Node {
        ns: t.node_ns.clone().context("the setup has no node")?,
        bridge: t.ebridge_bridge.clone(),
    })
}

/// Seconds `nsenter --net=NODE sh SCRIPT` takes.
fn time_script(node: &str, what: &str, script: &str) -> Result<f64> {
    let file = ScratchFile::new(what, &format!("set -e\n{script}"))?;
    let net = format!("--net=/run/netns/{node}");
    let path = file.path_str()?;
    let started = Instant::now();
    sh("nsenter", &[&net, "--", "sh", &path]).with_context(|| format!("{what} in {node}"))?;
    Ok(started.elapsed().as_secs_f64())
}

fn time<T>(f: impl FnOnce() -> Result<T>) -> Result<f64> {
    let started = Instant::now();
    f()?;
    Ok(started.elapsed().as_secs_f64())
}

fn cost_ports() -> impl Iterator<Item = u16> {
    COST_FIRST_PORT..COST_FIRST_PORT + BULK_PORTS
}

pub fn measure(topologies: &mut [Topology], reps: u32) -> Result<Vec<Extra>> {
    let eb = node_of(topologies, Setup::Ebridge)?;
    let dk = node_of(topologies, Setup::DockerDnat)?;
    let bridge = eb
        .bridge
        .clone()
        .context("the ebridge setup has no bridge")?;
    // The endpoint's namespace is recorded with its setup, so a failure
    // half-way still removes it.
    let name = format!("{bridge}-pc");
    if let Some(t) = topologies.iter_mut().find(|t| t.setup == Setup::Ebridge) {
        t.adopt_netns(&name);
    }
    let ip = COST_ENDPOINT_IP.to_string();
    let (p0, p1) = (COST_FIRST_PORT, COST_FIRST_PORT + BULK_PORTS - 1);
    let range = format!("{p0}-{p1}:{p0}-{p1}/udp");
    let bin = ebridge_release_bin().display().to_string();
    let calls: String = cost_ports()
        .map(|p| format!("{bin} publish add {name} {p}:{p}/udp --bridge {bridge} >/dev/null\n"))
        .collect();

    let rules: Vec<(&str, String)> = cost_ports()
        .flat_map(|p| {
            Published {
                host_port: p,
                ip: COST_ENDPOINT_IP.into(),
                ctr_port: p,
                proto: "udp",
            }
            .rules()
        })
        .collect();
    let restore_input = iptables::restore_input(&rules);
    let each: String = rules
        .iter()
        .map(|(table, rule)| format!("iptables -w 5 -t {table} {rule}\n"))
        .collect();
    let saved = iptables::save(&dk.ns)?;

    let mut range_add = Extra::new(
        "ebridge_endpoint_add_range_1000",
        "ebridge endpoint add -p 1000-port range",
        "s",
        "one `ebridge endpoint add NAME --ip IP -p 21000-21999:21000-21999/udp` (creates the endpoint too)",
    );
    let mut bare_add = Extra::new(
        "ebridge_endpoint_add_no_ports",
        "ebridge endpoint add without -p",
        "s",
        "the same `ebridge endpoint add` without -p: the endpoint's own cost, to subtract",
    );
    let mut publish_calls = Extra::new(
        "ebridge_publish_add_1000_calls",
        "1000 x ebridge publish add",
        "s",
        "1,000 `ebridge publish add NAME P:P/udp` processes from one sh script in the node namespace",
    );
    let mut ipt_restore = Extra::new(
        "iptables_restore_1000_ports",
        "iptables-restore, 1000 ports",
        "s",
        "one `iptables-restore --noflush` of dockerd's 3 rules per port (nat DOCKER DNAT, filter DOCKER ACCEPT, nat POSTROUTING hairpin MASQUERADE) for 1,000 ports",
    );
    let mut ipt_calls = Extra::new(
        "iptables_calls_1000_ports",
        "3000 x iptables -A, 1000 ports",
        "s",
        "the same 3,000 rules as 3,000 `iptables -w 5 -t TABLE -A ...` processes from one sh script in the node namespace, as dockerd issues them",
    );

    for rep in 1..=reps {
        signal::check()?;
        range_add.samples.push(time(|| {
            ebridge(
                &eb.ns,
                &bridge,
                &["endpoint", "add", &name, "--ip", &ip, "-p", &range],
            )
        })?);
        ebridge(&eb.ns, &bridge, &["endpoint", "rm", &name])?;

        ipt_restore
            .samples
            .push(time(|| iptables::restore(&dk.ns, &restore_input, true))?);
        iptables::restore(&dk.ns, &saved, false)?;

        bare_add.samples.push(time(|| {
            ebridge(&eb.ns, &bridge, &["endpoint", "add", &name, "--ip", &ip])
        })?);
        signal::check()?;
        publish_calls
            .samples
            .push(time_script(&eb.ns, "publish-add", &calls)?);
        ebridge(&eb.ns, &bridge, &["endpoint", "rm", &name])?;

        signal::check()?;
        ipt_calls
            .samples
            .push(time_script(&dk.ns, "iptables-calls", &each)?);
        iptables::restore(&dk.ns, &saved, false)?;
        println!(
            "  publish cost rep {rep}/{reps}: range {:.2} s, no -p {:.2} s, 1000 calls {:.2} s; iptables-restore {:.3} s, 3000 iptables calls {:.2} s",
            last(&range_add),
            last(&bare_add),
            last(&publish_calls),
            last(&ipt_restore),
            last(&ipt_calls)
        );
    }
    Ok(vec![
        range_add,
        bare_add,
        publish_calls,
        ipt_restore,
        ipt_calls,
    ])
}

fn last(e: &Extra) -> f64 {
    e.samples.last().copied().unwrap_or(f64::NAN)
}
