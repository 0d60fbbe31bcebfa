//! The agent's metrics as an operator consumes them: a real Prometheus
//! (Debian's, shared/PROMETHEUS.md) in the lab's node namespace scrapes
//! `ebridge agent --metrics-addr` every second; the test asks Prometheus'
//! own query API and finds the traffic it sent: redirects while two
//! containers ping, drops after spoofed frames, the endpoints it made.
use std::{
    path::PathBuf,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use ebridge_tests::{
    lab::Lab,
    procs::{send_spoofed, Agent, Bg},
};
use serde_json::Value;

const METRICS: &str = "127.0.0.1:9965";
const PROMETHEUS: &str = "127.0.0.1:19090";

/// Prometheus with its own config and TSDB in a temporary directory,
/// listening only inside the node; stopped and removed on drop.
struct Prometheus {
    proc: Option<Bg>,
    dir: PathBuf,
    node: String,
}

impl Prometheus {
    fn start(lab: &Lab) -> Self {
        let dir = std::env::temp_dir().join(format!("{}-prometheus", lab.id));
        std::fs::create_dir_all(&dir).expect("prometheus dir");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
                 scrape_configs:\n  - job_name: ebridge\n    static_configs: [{{targets: ['{METRICS}']}}]\n"
            ),
        )
        .expect("prometheus config");
        let log = std::fs::File::create(dir.join("log")).expect("prometheus log");
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", lab.node))
            .arg("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={PROMETHEUS}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(log);
        Self {
            proc: Some(Bg::spawn_with(cmd)),
            dir,
            node: lab.node.clone(),
        }
    }

    /// GET an API path with query parameters, from inside the node.
    fn api(&self, path: &str, params: &[(&str, &str)]) -> Option<Value> {
        let mut args = vec![
            "netns".to_string(),
            "exec".to_string(),
            self.node.clone(),
            "curl".to_string(),
            "-sf".to_string(),
            "-m".to_string(),
            "2".to_string(),
            "-G".to_string(),
            format!("http://{PROMETHEUS}/api/v1/{path}"),
        ];
        for (k, v) in params {
            args.push("--data-urlencode".to_string());
            args.push(format!("{k}={v}"));
        }
        let out = Command::new("ip").args(&args).output().expect("curl");
        if !out.status.success() {
            return None;
        }
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        (v["status"] == "success").then(|| v["data"].clone())
    }

    /// The value of an instant query with one result.
    fn value(&self, query: &str) -> Option<f64> {
        let data = self.api("query", &[("query", query)])?;
        let result = data["result"].as_array()?;
        if result.len() != 1 {
            return None;
        }
        result[0]["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `query` has a value for which `ok` holds; returns it.
    fn wait_for(&self, query: &str, secs: u64, ok: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut last = None;
        while Instant::now() < deadline {
            last = self.value(query);
            if last.is_some_and(&ok) {
                return last.expect("checked");
            }
            thread::sleep(Duration::from_millis(250));
        }
        let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        let targets = self.api("targets", &[]);
        panic!("{query}: last value {last:?} within {secs}s\ntargets: {targets:?}\nprometheus log: {log}");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // SIGTERM, waited for, before its TSDB directory goes.
        drop(self.proc.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn prometheus_sees_redirects_drops_and_endpoints_as_traffic_made_them() {
    let lab = Lab::up(&[]);
    let a = lab.endpoint("a", &[]);
    let _b = lab.endpoint("b", &[]);
    let agent = Agent::start(&lab, &["--metrics-addr", METRICS, "--gc-interval", "1"]);
    assert!(agent.wait_for_log("metrics on", 5), "{}", agent.log());
    let prom = Prometheus::start(&lab);

    // The first scrape comes ~5 s after start (shared/PROMETHEUS.md).
    prom.wait_for("up{job=\"ebridge\"}", 30, |v| v == 1.0);
    prom.wait_for("ebridge_endpoints", 15, |v| v == 2.0);
    prom.wait_for("ebridge_build_info", 5, |v| v == 1.0);
    prom.wait_for("ebridge_gc_runs_total", 10, |v| v >= 1.0);
    prom.wait_for("ebridge_nat_capacity_entries", 5, |v| v == 262_144.0);

    // Redirects while a pings b: 50 requests and 50 replies, each sent
    // into the other's netns by the fast path.
    let redirects = "ebridge_packets_total{reason=\"redirect-peer\",verdict=\"redirect\"}";
    let before = prom.wait_for(redirects, 10, |_| true);
    let ours_before = lab.packets("redirect-peer");
    lab.exec_ok(&a, &["ping", "-q", "-c", "50", "-i", "0.02", "172.17.0.3"]);
    let ours = lab.packets("redirect-peer") - ours_before;
    assert!(
        ours >= 100,
        "ebridge counted {ours} redirects for 100 pings"
    );
    // Prometheus' stored sample catches up with ebridge's own counter.
    let after = prom.wait_for(redirects, 10, |v| v >= before + ours as f64);
    assert_eq!(
        after - before,
        ours as f64,
        "Prometheus and ebridge disagree"
    );
    // And its rate functions see the burst (extrapolated: not exact).
    let increase = prom.wait_for(&format!("increase({redirects}[60s])"), 5, |_| true);
    assert!(
        increase >= 0.9 * ours as f64 && increase <= 1.6 * ours as f64,
        "increase() {increase} for {ours} redirects"
    );

    // Drops after spoofed frames, by reason.
    let spoofed = "ebridge_packets_total{reason=\"drop-spoofed-ip\",verdict=\"drop\"}";
    prom.wait_for(spoofed, 5, |v| v == 0.0);
    send_spoofed(&lab, &a, 7);
    prom.wait_for(spoofed, 10, |v| v == 7.0);
    let bytes = prom.wait_for(
        "ebridge_bytes_total{reason=\"drop-spoofed-ip\",verdict=\"drop\"}",
        5,
        |v| v > 0.0,
    );
    assert!(bytes >= 7.0 * 48.0, "{bytes} bytes for 7 frames");
}
