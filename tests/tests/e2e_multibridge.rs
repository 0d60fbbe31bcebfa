//! Several bridges on one uplink, as Docker runs many networks over one
//! eth0: each masquerades and publishes, and each one's uplink programs
//! hand what is not theirs to the next program in the TCX chain.
use std::{thread, time::Duration};

use ebridge_tests::{
    lab::{run, Lab, NODE_UPLINK_IP, SERVER_IP},
    procs::{Agent, Bg, PY},
};

/// The second bridge of a lab, taken down when dropped (the lab downs only
/// its own).
struct SecondBridge<'a> {
    lab: &'a Lab,
    name: String,
}

impl<'a> SecondBridge<'a> {
    fn up(lab: &'a Lab, subnet: &str) -> Self {
        let name = format!("{}y", lab.bridge);
        lab.ebridge_ok(&["up", "--bridge", &name, "--subnet", subnet]);
        Self { lab, name }
    }

    fn ebridge_ok(&self, args: &[&str]) -> String {
        let mut full = args.to_vec();
        full.extend(["--bridge", &self.name]);
        self.lab.ebridge_ok(&full)
    }

    fn packets(&self, reason: &str) -> u64 {
        let v: serde_json::Value =
            serde_json::from_str(&self.ebridge_ok(&["show", "stats", "--json"])).expect("json");
        v.as_array()
            .expect("stats list")
            .iter()
            .find(|r| r["reason"] == reason)
            .and_then(|r| r["packets"].as_u64())
            .unwrap_or_else(|| panic!("no counter {reason}: {v}"))
    }
}

impl Drop for SecondBridge<'_> {
    fn drop(&mut self) {
        let _ = self.lab.ebridge(&["down", "--bridge", &self.name]);
        let _ = std::fs::remove_dir_all(format!("/sys/fs/bpf/ebridge/{}", self.name));
        let _ = std::fs::remove_dir_all(format!("/run/ebridge/{}", self.name));
    }
}

/// HTTP from `netns` to `url`; the body.
fn fetch(lab: &Lab, netns: &str, url: &str) -> String {
    let script = format!(
        "import urllib.request\nprint(urllib.request.urlopen('{url}', timeout=5).read().decode())\n"
    );
    lab.exec_ok(netns, &[PY, "-c", &script]).trim().to_string()
}

/// A web server answering `body` on 0.0.0.0:`port` in `netns`.
fn web(netns: &str, port: u16, body: &str) -> Bg {
    let dir = std::env::temp_dir().join(format!("{netns}-{port}-www"));
    std::fs::create_dir_all(&dir).expect("www dir");
    std::fs::write(dir.join("index.html"), body).expect("index");
    let bg = Bg::spawn(
        netns,
        &[
            PY,
            "-m",
            "http.server",
            &port.to_string(),
            "--directory",
            dir.to_str().expect("utf-8"),
        ],
    );
    thread::sleep(Duration::from_millis(700));
    bg
}

#[test]
fn two_bridges_on_one_uplink_both_masquerade_and_publish() {
    let lab = Lab::up(&[]).with_server(1500);
    let second = SecondBridge::up(&lab, "172.18.0.0/16");
    let a = lab.endpoint("a", &["-p", "8080:80"]);
    let b_name = lab.name("b");
    second.ebridge_ok(&["endpoint", "add", &b_name, "-p", "8081:80"]);
    let _agent_a = Agent::start(&lab, &[]);
    let _agent_b = Agent::start_for(&lab, &second.name, &[]);

    // Outbound from both: each bridge's replies reach its own container.
    let _site = web(&lab.server(), 8000, "outside");
    assert_eq!(
        fetch(&lab, &a, &format!("http://{SERVER_IP}:8000/")),
        "outside"
    );
    assert_eq!(
        fetch(&lab, &b_name, &format!("http://{SERVER_IP}:8000/")),
        "outside"
    );
    let ping = run(
        "ip",
        &[
            "netns", "exec", &b_name, "ping", "-c", "2", "-i", "0.2", "-W", "2", SERVER_IP,
        ],
    );
    assert!(ping.status.success(), "ping from the second bridge");

    // Inbound to both: each bridge publishes its own port.
    let _wa = web(&a, 80, "container a");
    let _wb = web(&b_name, 80, "container b");
    let url = |port: u16| format!("http://{NODE_UPLINK_IP}:{port}/");
    assert_eq!(fetch(&lab, &lab.outside, &url(8080)), "container a");
    assert_eq!(fetch(&lab, &lab.outside, &url(8081)), "container b");

    // Each bridge did its own work, and the first handed the second's
    // replies on rather than keeping them.
    assert!(lab.packets("snat-out") > 0 && lab.packets("revnat-in") > 0);
    assert!(second.packets("snat-out") > 0 && second.packets("revnat-in") > 0);
    assert!(lab.packets("dnat-in") > 0 && second.packets("dnat-in") > 0);
    assert!(
        lab.packets("pass-other-bridge") + second.packets("pass-other-bridge") > 0,
        "neither bridge saw the other's replies pass by"
    );
}
