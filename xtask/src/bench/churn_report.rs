//! The churn test's verdicts, run by run (a median would hide a collapse
//! that starts in run 2), its table on stdout and its JSON.
use serde_json::{json, Value};

use super::{
    churn::{Run, BASELINE, CONNS, RUNS, RUN_SECS, SUBJECT},
    scenario::Setup,
};

/// Connections per second >= this many times the MASQUERADE node's, in
/// every run (issue 7).
pub const CONN_TARGET: f64 = 1.3;
/// "Node traffic unaffected": the node's request/response rate during a
/// churn run at least this share of its rate alone right after it, and
/// no request lost. The 10 % is room for noise, not a measured bound: on
/// the shared 2-vCPU VM one 4-second rate moves by more.
pub const NODE_TARGET: f64 = 0.9;

fn find(runs: &[Run], setup: Setup, run: u32, churn: bool) -> Option<&Run> {
    runs.iter()
        .find(|r| r.setup == setup && r.run == run && r.churn == churn)
}

pub struct Verdicts {
    /// (run, ratio subject/baseline) of each churn run.
    pub conn: Vec<(u32, Option<f64>)>,
    /// (run, subject's node rate during the run / alone after it, lost).
    pub node: Vec<(u32, Option<f64>, u64)>,
}

impl Verdicts {
    pub fn of(runs: &[Run]) -> Self {
        let mut conn = Vec::new();
        let mut node = Vec::new();
        for k in 1..=RUNS {
            let s = find(runs, SUBJECT, k, true);
            let b = find(runs, BASELINE, k, true);
            let alone = find(runs, SUBJECT, k, false).map(|r| r.node_rate);
            let ratio = match (s.and_then(|r| r.conn_rate), b.and_then(|r| r.conn_rate)) {
                (Some(x), Some(y)) if y > 0.0 => Some(x / y),
                _ => None,
            };
            conn.push((k, ratio));
            let n = s
                .zip(alone)
                .and_then(|(r, a)| (a > 0.0).then(|| r.node_rate / a));
            node.push((k, n, s.map_or(0, |r| r.node_lost)));
        }
        Verdicts { conn, node }
    }

    pub fn conn_met_runs(&self) -> usize {
        self.conn
            .iter()
            .filter(|(_, r)| r.is_some_and(|x| x >= CONN_TARGET))
            .count()
    }

    pub fn node_met_runs(&self) -> usize {
        self.node
            .iter()
            .filter(|(_, r, lost)| *lost == 0 && r.is_some_and(|x| x >= NODE_TARGET))
            .count()
    }

    pub fn targets_json(&self) -> Vec<Value> {
        let verdict =
            |met: usize| json!({"met": met == RUNS as usize, "runs_met": met, "runs": RUNS});
        vec![
            json!({
                "metric": "churn_conn_rate",
                "ratio_of": format!("{}/{}", SUBJECT.key(), BASELINE.key()),
                "op": ">=",
                "threshold": CONN_TARGET,
                "judged": "in every run",
                "per_run": self.conn.iter().map(|(k, r)| json!({"run": k, "ratio": r})).collect::<Vec<_>>(),
                "verdict": verdict(self.conn_met_runs()),
                "met": self.conn_met_runs() == RUNS as usize,
            }),
            json!({
                "metric": "node_udp_rr_rate_during_churn",
                "ratio_of": format!("{} node during churn run k / alone right after it", SUBJECT.key()),
                "op": ">=",
                "threshold": NODE_TARGET,
                "judged": "in every run, and no request lost",
                "per_run": self.node.iter().map(|(k, r, lost)| json!({"run": k, "ratio": r, "lost": lost})).collect::<Vec<_>>(),
                "verdict": verdict(self.node_met_runs()),
                "met": self.node_met_runs() == RUNS as usize,
            }),
        ]
    }
}

fn cell(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.0}"))
}

pub fn print(runs: &[Run]) {
    let v = Verdicts::of(runs);
    println!(
        "\nchurn: {CONNS} connections in flight, one HTTP request each with 'Connection: close', for {RUN_SECS} s against nginx outside, container ports 1024-65535, agent running, nothing cleared; {RUNS} runs per setup, alternating"
    );
    println!(
        "{:<5}{:>16}{:>16}{:>10}  {:<10}{:>18}{:>13}{:>18}",
        "run",
        format!("{} c/s", BASELINE.key()),
        format!("{} c/s", SUBJECT.key()),
        "ratio",
        format!(">= {CONN_TARGET:.2}x"),
        "drop-nat-no-port",
        "nat entries",
        "conntrack entries"
    );
    for (k, ratio) in &v.conn {
        let s = find(runs, SUBJECT, *k, true);
        let b = find(runs, BASELINE, *k, true);
        let met = ratio.is_some_and(|x| x >= CONN_TARGET);
        println!(
            "{:<5}{:>16}{:>16}{:>10}  {:<10}{:>18}{:>13}{:>18}",
            k,
            cell(b.and_then(|r| r.conn_rate)),
            cell(s.and_then(|r| r.conn_rate)),
            ratio.map_or("-".into(), |x| format!("{x:.2}x")),
            if met { "met" } else { "NOT MET" },
            s.map_or("-".into(), |r| format!(
                "+{}",
                r.json["ebridge_drops"]["drop-nat-no-port"]
            )),
            s.map_or("-".into(), |r| r.json["nat_entries_after"].to_string()),
            b.map_or("-".into(), |r| r.json["conntrack"]["count_after"]
                .to_string()),
        );
    }
    println!(
        "\nnode UDP request/response from the node namespace to the outside host [round trips/s (lost)], during churn run k / alone right after it; alone before run 1: {}",
        [BASELINE, SUBJECT]
            .iter()
            .map(|&st| format!(
                "{} {}",
                st.key(),
                find(runs, st, 0, false).map_or("-".into(), |r| format!("{:.0} ({})", r.node_rate, r.node_lost))
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    print!("{:<14}", "setup");
    for k in 1..=RUNS {
        print!("{:>26}", format!("run {k}"));
    }
    println!();
    for setup in [BASELINE, SUBJECT] {
        print!("{:<14}", setup.key());
        for k in 1..=RUNS {
            let during = find(runs, setup, k, true);
            let alone = find(runs, setup, k, false);
            let c = match (during, alone) {
                (Some(d), Some(a)) => format!(
                    "{:.0} ({}) / {:.0} ({})",
                    d.node_rate, d.node_lost, a.node_rate, a.node_lost
                ),
                _ => "-".into(),
            };
            print!("{c:>26}");
        }
        println!();
    }
    let ratios: Vec<String> = v
        .node
        .iter()
        .map(|(_, r, _)| r.map_or("-".into(), |x| format!("{x:.2}x")))
        .collect();
    println!(
        "{} node during churn / alone: {}",
        SUBJECT.key(),
        ratios.join(" ")
    );
    println!(
        "\nchurn targets: connections/s >= {CONN_TARGET:.2}x {} in every run: {} ({} of {RUNS} runs); node traffic unaffected (>= {NODE_TARGET:.2}x its rate alone, nothing lost, in every run): {} ({} of {RUNS} runs)",
        BASELINE.key(),
        if v.conn_met_runs() == RUNS as usize { "met" } else { "NOT MET" },
        v.conn_met_runs(),
        if v.node_met_runs() == RUNS as usize { "met" } else { "NOT MET" },
        v.node_met_runs(),
    );
}

pub fn to_json(runs: &[Run]) -> Value {
    let v = Verdicts::of(runs);
    json!({
        "how": format!("bench-load http-churn --conns {CONNS} --secs {RUN_SECS} (wrk -t1 -c{CONNS} -H 'Connection: close' without wrk's hang on dropped SYNs: a connection unfinished after 2 s is counted as a timeout and replaced) from the container against nginx-light on the outside host (one process, `return 200`), pinned together on CPU B; the container's ip_local_port_range 1024-65535; {RUNS} runs per setup, setups alternating run by run; nothing cleared, ebridge agent running (other setups' agents stopped during a run). During each run a node process (bench-load udp-ping, node namespace, CPU A) does UDP request/response to the outside host; the same alone right after each churn run (its control) and once before run 1 (run 0)"),
        "runs": runs.iter().map(|r| r.json.clone()).collect::<Vec<_>>(),
        "targets": v.targets_json(),
    })
}
