//! The agent as an operator runs it: it follows its bridge across
//! `down`/`up` (the README's way to change settings), one agent per bridge,
//! a restarted agent picks up the work, and running out of NAT ports is
//! logged naming the destination.
use std::{
    thread,
    time::{Duration, Instant},
};

use ebridge_tests::{
    lab::{Lab, SERVER_IP},
    procs::{udp_echo, udp_once, Agent, PY},
};

/// Short timeouts so expiry shows within a test.
const FAST: [&str; 6] = [
    "--gc-interval",
    "1",
    "--udp-timeout",
    "2",
    "--udp-timeout-stream",
    "2",
];

fn container_flows(lab: &Lab) -> usize {
    lab.json(&["show", "nat"])
        .as_array()
        .expect("flows")
        .iter()
        .filter(|f| f["owner"] == "container")
        .count()
}

/// Waits up to `secs` for the container flows to be gone.
fn expired_within(lab: &Lab, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if container_flows(lab) == 0 {
            return true;
        }
        thread::sleep(Duration::from_millis(250));
    }
    false
}

#[test]
fn the_agent_follows_its_bridge_across_down_and_up() {
    let lab = Lab::up(&[]).with_server(1500);
    let mut agent = Agent::start(&lab, &FAST);
    assert!(agent.wait_for_log("NAT gc every", 5), "{}", agent.log());

    lab.ebridge_ok(&["down"]);
    assert!(agent.wait_for_log("went down", 5), "{}", agent.log());
    assert!(agent.alive(), "the agent quit with its bridge");
    lab.ebridge_ok(&["up", "--subnet", "172.17.0.0/16"]);
    assert!(
        agent.wait_for_log("following its new datapath", 5),
        "{}",
        agent.log()
    );

    // It works on the new datapath: a flow there expires.
    let c = lab.endpoint("c", &[]);
    let _echo = udp_echo(&lab, 7000);
    udp_once(&lab, &c, 41000, 7000);
    assert_eq!(container_flows(&lab), 1);
    assert!(
        expired_within(&lab, 10),
        "the flow on the new datapath never expired"
    );
    assert!(agent.alive());
}

#[test]
fn one_agent_per_bridge_and_a_restarted_one_takes_over() {
    let lab = Lab::up(&[]).with_server(1500);
    let mut first = Agent::start(&lab, &[]);
    assert!(first.wait_for_log("NAT gc every", 5), "{}", first.log());

    let second = lab.ebridge(&["agent"]);
    assert_eq!(
        second.status.code(),
        Some(2),
        "a second agent must be refused"
    );
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("another ebridge agent already runs"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // Killed hard, it leaves nothing that blocks the next one, which then
    // does the work (the first had kernel-default timeouts: 30 s).
    let c = lab.endpoint("c", &[]);
    let _echo = udp_echo(&lab, 7000);
    udp_once(&lab, &c, 41000, 7000);
    first.kill9();
    let restarted = Agent::start(&lab, &FAST);
    assert!(
        restarted.wait_for_log("NAT gc every", 5),
        "{}",
        restarted.log()
    );
    assert!(
        expired_within(&lab, 10),
        "the restarted agent expires nothing"
    );
}

#[test]
fn running_out_of_nat_ports_is_logged_naming_the_destination() {
    let lab = Lab::up(&["--nat-ports", "40000-40001"]).with_server(1500);
    let c = lab.endpoint("c", &[]);
    let agent = Agent::start(&lab, &["--gc-interval", "1"]);
    let _echo = udp_echo(&lab, 7000);
    udp_once(&lab, &c, 41000, 7000);
    udp_once(&lab, &c, 41001, 7000);
    // The third flow finds both ports of the range in use.
    let third = format!(
        "import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('0.0.0.0', 41002))\n\
         s.settimeout(1)\ns.sendto(b'hi', ('{SERVER_IP}', 7000))\n\
         try:\n    s.recv(10)\n    print('answered')\nexcept socket.timeout:\n    print('dropped')\n"
    );
    assert_eq!(lab.exec_ok(&c, &[PY, "-c", &third]).trim(), "dropped");
    assert!(lab.packets("drop-nat-no-port") >= 1);
    let line = format!("new flow(s) to {SERVER_IP}:7000/udp dropped");
    assert!(agent.wait_for_log(&line, 5), "{}", agent.log());
    // Logged once for that pass, not once per packet.
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(agent.log().matches(&line).count(), 1, "{}", agent.log());
}
