//! `ebridge status` as an operator reads it: healthy after `up` with the
//! kernel's own IDs for programs and links; unhealthy, saying why, when
//! flows exist and no agent expires them, when a pinned program is gone,
//! when the uplink has lost its address, and when the NAT table is nearly
//! full.
use ebridge_tests::{
    lab::{run_ok, Lab, SERVER_IP},
    procs::{udp_echo, Agent, PY},
};
use serde_json::Value;

/// `status --json`: (exit code, report).
fn status(lab: &Lab) -> (i32, Value) {
    let out = lab.ebridge(&["status", "--json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("status --json is not JSON: {e}: {text}"));
    (out.status.code().expect("exit code"), report)
}

/// The failing checks' names and details.
fn failures(report: &Value) -> Vec<(String, String)> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| {
            (
                c["what"].as_str().expect("what").to_string(),
                c["detail"].as_str().expect("detail").to_string(),
            )
        })
        .collect()
}

/// Fails the test unless a failing check is named `what` and its detail
/// says `says`.
fn assert_fails(report: &Value, what: &str, says: &str) {
    let fails = failures(report);
    assert!(
        fails.iter().any(|(w, d)| w == what && d.contains(says)),
        "no failing check {what:?} saying {says:?}: {fails:?}"
    );
}

/// UDP exchanges with the echo from `netns`, one per source port.
fn flows(lab: &Lab, netns: &str, sports: std::ops::Range<u16>) {
    let script = format!(
        "import socket\nfor p in range({}, {}):\n    s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n    s.bind(('0.0.0.0', p))\n    s.settimeout(2)\n    s.sendto(b'hi', ('{SERVER_IP}', 7000))\n    s.recv(10)\n",
        sports.start, sports.end
    );
    lab.exec_ok(netns, &[PY, "-c", &script]);
}

/// The program ID bpftool reads from a pin (an observer that is not
/// ebridge).
fn pinned_prog_id(lab: &Lab, prog: &str) -> u64 {
    let path = format!("/sys/fs/bpf/ebridge/{}/prog_{prog}", lab.bridge);
    let v: Value =
        serde_json::from_str(&run_ok("bpftool", &["-j", "prog", "show", "pinned", &path]))
            .expect("bpftool JSON");
    v["id"].as_u64().expect("id")
}

#[test]
fn healthy_after_up_with_the_kernels_ids() {
    let lab = Lab::up(&[]);
    let a = lab.endpoint("a", &[]);
    let (code, report) = status(&lab);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["healthy"], true, "{report:#}");
    assert!(failures(&report).is_empty(), "{report:#}");
    for p in report["programs"].as_array().expect("programs") {
        let name = p["name"].as_str().expect("name");
        assert_eq!(p["id"].as_u64(), Some(pinned_prog_id(&lab, name)), "{p}");
    }
    // The endpoint's host veth has its link, running the endpoint program.
    let veth = lab.json(&["endpoint", "ls"])[0]["host_veth"]
        .as_str()
        .expect("host_veth")
        .to_string();
    let link = report["links"]
        .as_array()
        .expect("links")
        .iter()
        .find(|l| l["pin"].as_str().is_some_and(|p| p.ends_with(&veth)))
        .unwrap_or_else(|| panic!("no link for {a}'s veth {veth}: {report:#}"));
    assert_eq!(
        link["program_id"].as_u64(),
        Some(pinned_prog_id(&lab, "endpoint_ingress")),
        "{link}"
    );
    assert_eq!(report["endpoints"], 1);
    assert_eq!(report["nat"]["entries"], 0);
    // The gateway's and the endpoint's MACs.
    assert_eq!(report["fdb"]["entries"], 2, "{report:#}");
    assert!(report["fdb"]["capacity"]
        .as_u64()
        .is_some_and(|c| c >= 1024));
    // The text form says the same.
    let text = lab.ebridge_ok(&["status"]);
    assert!(text.trim_end().ends_with("healthy"), "{text}");
}

#[test]
fn unhealthy_when_flows_exist_and_no_agent_runs() {
    let lab = Lab::up(&[]).with_server(1500);
    let c = lab.endpoint("c", &[]);
    let _echo = udp_echo(&lab, 7000);
    let mut agent = Agent::start(&lab, &["--gc-interval", "1"]);
    assert!(agent.wait_for_log("NAT gc every", 5), "{}", agent.log());
    flows(&lab, &c, 41000..41002);
    // Healthy while the agent runs (after its first pass has been saved).
    let mut report = Value::Null;
    for _ in 0..20 {
        let (code, r) = status(&lab);
        report = r;
        if code == 0 && report["agent"]["running"] == true {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert_eq!(report["healthy"], true, "{report:#}");
    assert_eq!(report["agent"]["running"], true, "{report:#}");

    agent.kill9();
    let (code, report) = status(&lab);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["healthy"], false);
    assert_fails(&report, "agent", "never expire");
    let out = lab.ebridge(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unhealthy") && err.contains("agent"), "{err}");
}

#[test]
fn unhealthy_when_a_pinned_program_is_missing() {
    let lab = Lab::up(&[]);
    let path = format!("/sys/fs/bpf/ebridge/{}/prog_endpoint_ingress", lab.bridge);
    std::fs::remove_file(&path).expect("remove the program's pin");
    let (code, report) = status(&lab);
    assert_eq!(code, 1, "{report:#}");
    assert_fails(&report, "program endpoint_ingress", "");
}

#[test]
fn unhealthy_when_the_uplink_lost_its_address() {
    let lab = Lab::up(&[]);
    run_ok("ip", &["-n", &lab.node, "addr", "flush", "dev", "uplink0"]);
    let (code, report) = status(&lab);
    assert_eq!(code, 1, "{report:#}");
    assert_fails(&report, "uplink address", "no longer has");
}

#[test]
fn unhealthy_when_the_nat_table_is_over_80_percent() {
    // 16 entries: 8 flows; 7 of them fill 14 (88 %).
    let lab = Lab::up(&["--nat-entries", "16"]).with_server(1500);
    let c = lab.endpoint("c", &[]);
    let _echo = udp_echo(&lab, 7000);
    flows(&lab, &c, 41000..41007);
    let (code, report) = status(&lab);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["nat"]["entries"], 14, "{report:#}");
    assert_fails(&report, "NAT table", "14/16");
}
