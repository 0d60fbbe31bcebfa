//! The cni scenario (issue 8): the same podman, image and node layout two
//! ways — the reference CNI chain (bridge with ipMasq and hairpinMode,
//! host-local, portmap) and ebridge installed by `ebridge cni install` —
//! every container publishing a port:
//!
//! - lifecycle (lifecycle.rs): `podman run -d` and `podman rm -f` at 1, 20
//!   and 100 containers, and the plugins' own ADD and DEL, run directly
//!   with what podman hands them (plugin.rs);
//! - datapath (datapath.rs): the bench's UDP rate, UDP request/response
//!   and TCP connection tests between two podman containers and from the
//!   outside host to a published port, in the rounds every scenario uses.
//!
//! podman runs through the tests' fixture (ebridge-tests: `Lab` for the
//! node and outside namespaces, `Podman` for private config, storage and
//! image), which removes every container, network state, cgroup and
//! namespace when dropped; its failures are panics, turned here into the
//! scenario's error after that clean-up has run.
pub mod chain_evidence;
mod datapath;
mod lifecycle;
mod lifecycle_report;
mod node;
mod plugin;
pub mod record;

use std::{
    panic::{self, AssertUnwindSafe},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Result};
use ebridge_tests::{lab::Lab, podman::Podman};
use serde_json::Value;

use super::{cpu, measure::Ctx, observe, report, rounds, scenario::Scenario, Measured};
use crate::util::sh;
use lifecycle::{Plan, Sample};
use node::{Kind, Node};

pub fn check_tools() -> Result<()> {
    for tool in ["podman", "runc", "conmon", "python3"] {
        sh("sh", &["-c", &format!("command -v {tool}")])
            .map_err(|_| anyhow!("{tool} is not installed; run cargo xtask setup"))?;
    }
    for path in [
        "/bin/busybox",
        "/usr/lib/cni/bridge",
        "/usr/lib/cni/host-local",
        "/usr/lib/cni/portmap",
    ] {
        if !Path::new(path).exists() {
            bail!("{path} is missing; run cargo xtask setup");
        }
    }
    Ok(())
}

/// Seconds the lifecycle part takes besides the rounds, roughly: filling
/// both nodes (in parallel, ~0.5 s a container), podman's reps, the
/// direct calls and removing everything.
pub fn lifecycle_secs(reps: u32, quick: bool) -> usize {
    let plan = Plan::new(reps, quick);
    let top = plan.levels.iter().copied().max().unwrap_or(1) as usize;
    let levels = plan.levels.len();
    top / 2 + levels * (reps as usize * 2 + plan.plugin_calls as usize * 2 / 5) + top / 2
}

/// The podman and plugin timings, for the report.
pub struct Lifecycle {
    plan: Plan,
    samples: Vec<Sample>,
    verdicts: Vec<lifecycle_report::Verdict>,
}

impl Lifecycle {
    pub fn print(&self) {
        lifecycle_report::print(&self.samples, &self.plan, &self.verdicts);
    }

    /// The scenario's closing line: the plugin's targets and the
    /// datapath's (`datapath_met` of its six).
    pub fn print_total(&self, datapath_met: usize) {
        let met = self.verdicts.iter().filter(|v| v.met()).count();
        let all = self.verdicts.len() + Scenario::Cni.targets().len();
        println!(
            "cni targets met: {} of {all} (plugin ADD/DEL {met} of {}, datapath {datapath_met} of {})",
            met + datapath_met,
            self.verdicts.len(),
            Scenario::Cni.targets().len()
        );
    }

    pub fn to_json(&self) -> Value {
        lifecycle_report::to_json(&self.samples, &self.plan, &self.verdicts)
    }
}

pub fn measure(ctx: &Ctx, reps: u32, run_id: &str, quick: bool) -> Result<Measured> {
    let plan = Plan::new(reps, quick);
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| measure_nodes(ctx, &plan, run_id)));
    let (samples, mut m) = match outcome {
        Ok(r) => r?,
        Err(p) => {
            let what = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a test fixture panicked".into());
            bail!("{what} (everything the fixtures made was removed)");
        }
    };
    let verdicts = lifecycle_report::verdicts(&samples, &plan);
    m.lifecycle = Some(Lifecycle {
        plan,
        samples,
        verdicts,
    });
    Ok(m)
}

/// Everything with the nodes up; they are gone when it returns, whatever
/// it returns.
fn measure_nodes(ctx: &Ctx, plan: &Plan, run_id: &str) -> Result<(Vec<Sample>, Measured)> {
    // Declared first, dropped last: the record goes once all else has.
    let mut record = record::Record::create()?;
    let chain_lab = Lab::new();
    record.lab(&chain_lab)?;
    let ebridge_lab = Lab::new();
    record.lab(&ebridge_lab)?;
    println!(
        "building the nodes: {} (reference chain) and {} (ebridge), podman with private config, vfs storage and the busybox image in each",
        chain_lab.node, ebridge_lab.node
    );
    let chain_pm = Podman::new(&chain_lab);
    record.fixture(&chain_pm)?;
    let ebridge_pm = Podman::new(&ebridge_lab);
    record.fixture(&ebridge_pm)?;
    // conmon and the containers leave the bench's process tree; their
    // CPU is the bench's doing all the same (the fixtures' cgroup parents).
    let _ours = [
        cpu::count_cgroup_as_ours(chain_pm.id()),
        cpu::count_cgroup_as_ours(ebridge_pm.id()),
    ];

    let measured = {
        let mut nodes = [
            Node::new(Kind::Chain, &chain_lab, &chain_pm)?,
            Node::new(Kind::Ebridge, &ebridge_lab, &ebridge_pm)?,
        ];
        for n in &mut nodes {
            super::signal::check()?;
            n.warm_up()?;
        }
        let plugins = nodes
            .iter()
            .map(|n| plugin::Plugins::of(&n.engine))
            .collect::<Result<Vec<_>>>()?;
        println!(
            "lifecycle at {:?} containers: {} podman reps, {} direct plugin calls per level and node",
            plan.levels, plan.reps, plan.plugin_calls
        );
        let samples = lifecycle::measure(&nodes, &plugins, plan, run_id)?;

        println!(
            "datapath: two containers of each node, then the outside host to the published ports"
        );
        let topologies = datapath::topologies(&nodes, plan)?;
        let (results, runs, invalid) =
            rounds::measure_all(Scenario::Cni, &topologies, ctx, plan.reps)?;
        let observations = observe::observe(&topologies);
        let notes = report::setup_notes(&topologies);
        (
            samples,
            Measured {
                results,
                runs,
                invalid,
                observations,
                notes,
                extras: Vec::new(),
                churn: None,
                lifecycle: None,
            },
        )
    };
    println!("removing every container (podman rm -a -f, each network's DEL) and both nodes");
    let removing = Instant::now();
    let footprints = [chain_pm.close(), ebridge_pm.close()];
    drop(chain_lab);
    drop(ebridge_lab);
    // The fixtures' own check, without its panic: what is still there
    // after a while (init reaps orphaned conmons about once a second).
    let deadline = Instant::now() + Duration::from_secs(15);
    let left = loop {
        let left: Vec<String> = footprints.iter().flat_map(|f| f.leftovers()).collect();
        if left.is_empty() || Instant::now() >= deadline {
            break left;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if left.is_empty() {
        println!(
            "removed in {:.0} s; nothing left (containers, conmon, CNI state, cgroups, namespaces)",
            removing.elapsed().as_secs_f64()
        );
    } else {
        // The figures stand; what is left is reported, not hidden.
        eprintln!(
            "bench: warning: the cni scenario left behind:\n  {}",
            left.join("\n  ")
        );
    }
    let (samples, mut m) = measured;
    m.observations["left_behind"] = serde_json::json!(left);
    Ok((samples, m))
}
