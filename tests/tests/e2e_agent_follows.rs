//! The agent follows the kernel as netlink tells it, not on its next pass:
//! an uplink address change moves masquerade to the new address and drops
//! the flows on the old one (as MASQUERADE does); a host veth deleted
//! behind ebridge's back takes its endpoint, ports and flows with it; a node
//! address added or removed changes where "every node address" answers.
use std::{
    thread,
    time::{Duration, Instant},
};

use ebridge_tests::{
    lab::{run_ok, Lab, NODE_UPLINK_IP, SERVER_IP},
    procs::{ip_bytes, map_dump, Agent, Bg, PY},
};
use serde_json::Value;

/// A long GC interval: whatever happens within a test happened because of
/// a netlink event, not a housekeeping pass.
const SLOW_GC: [&str; 2] = ["--gc-interval", "3600"];

fn wait_until(secs: u64, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if ok() {
            return true;
        }
        thread::sleep(Duration::from_millis(200));
    }
    ok()
}

/// A UDP server on the lab's server host that answers with the address it
/// saw the datagram come from.
fn whoami(lab: &Lab, port: u16) -> Bg {
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind(('{SERVER_IP}', {port}))\nwhile True:\n    d, a = s.recvfrom(100)\n    s.sendto(a[0].encode(), a)\n"
    );
    let bg = Bg::spawn(&lab.server(), &[PY, "-c", &script]);
    thread::sleep(Duration::from_millis(400));
    bg
}

/// The source address the server saw for a datagram from `netns`.
fn seen_as(lab: &Lab, netns: &str, sport: u16, port: u16) -> String {
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('0.0.0.0', {sport}))\n\
         s.settimeout(2)\ns.sendto(b'?', ('{SERVER_IP}', {port}))\nprint(s.recv(100).decode())\n"
    );
    lab.exec_ok(netns, &[PY, "-c", &script]).trim().to_string()
}

fn nat_flows(lab: &Lab) -> Vec<Value> {
    lab.json(&["show", "nat"])
        .as_array()
        .expect("flows")
        .iter()
        .filter(|f| f["owner"] == "container")
        .cloned()
        .collect()
}

#[test]
fn an_uplink_address_change_moves_masquerade_and_drops_old_flows() {
    let lab = Lab::up(&[]).with_server(1500);
    let agent = Agent::start(&lab, &SLOW_GC);
    assert!(agent.wait_for_log("NAT gc every", 5), "{}", agent.log());
    let c = lab.endpoint("c", &[]);
    let _srv = whoami(&lab, 7100);
    assert_eq!(seen_as(&lab, &c, 41000, 7100), NODE_UPLINK_IP);
    assert_eq!(nat_flows(&lab).len(), 1);

    // The node is renumbered: a new address, then the old one goes (the
    // new one stays, promoted, as on a DHCP renumbering).
    let node = lab.node.clone();
    run_ok(
        "ip",
        &[
            "netns",
            "exec",
            &node,
            "sysctl",
            "-qw",
            "net.ipv4.conf.uplink0.promote_secondaries=1",
        ],
    );
    run_ok(
        "ip",
        &[
            "-n",
            &node,
            "addr",
            "add",
            "198.51.100.7/24",
            "dev",
            "uplink0",
        ],
    );
    run_ok(
        "ip",
        &[
            "-n",
            &node,
            "addr",
            "del",
            &format!("{NODE_UPLINK_IP}/24"),
            "dev",
            "uplink0",
        ],
    );
    assert!(
        agent.wait_for_log("masquerading behind 198.51.100.7", 5),
        "{}",
        agent.log()
    );
    assert!(
        wait_until(5, || nat_flows(&lab).is_empty()),
        "flows on the old address are still there: {:?}",
        nat_flows(&lab)
    );
    // New flows leave from the new address.
    assert_eq!(seen_as(&lab, &c, 41001, 7100), "198.51.100.7");
    let flows = nat_flows(&lab);
    assert_eq!(flows.len(), 1, "{flows:?}");
    assert_eq!(flows[0]["nat_src"], "198.51.100.7", "{flows:?}");
    let status = lab.ebridge(&["status"]);
    assert_eq!(
        status.status.code(),
        Some(0),
        "status after the renumbering: {status:?}"
    );
}

#[test]
fn a_host_veth_deleted_behind_ebridges_back_takes_its_endpoint_ports_and_flows() {
    let lab = Lab::up(&[]).with_server(1500);
    let agent = Agent::start(&lab, &SLOW_GC);
    assert!(agent.wait_for_log("NAT gc every", 5), "{}", agent.log());
    let web = lab.endpoint("web", &["-p", "8080:80"]);
    let other = lab.endpoint("other", &[]);
    let _srv = whoami(&lab, 7100);
    seen_as(&lab, &web, 41000, 7100);
    seen_as(&lab, &other, 41000, 7100);
    assert_eq!(nat_flows(&lab).len(), 2);
    let endpoints = lab.json(&["endpoint", "ls"]);
    let veth = endpoints
        .as_array()
        .expect("endpoints")
        .iter()
        .find(|e| e["name"] == web.as_str())
        .and_then(|e| e["host_veth"].as_str())
        .expect("web's host veth")
        .to_string();

    run_ok("ip", &["-n", &lab.node, "link", "del", &veth]);
    assert!(agent.wait_for_log("was deleted", 5), "{}", agent.log());
    let names: Vec<String> = lab
        .json(&["endpoint", "ls"])
        .as_array()
        .expect("endpoints")
        .iter()
        .map(|e| e["name"].as_str().expect("name").to_string())
        .collect();
    assert_eq!(names, vec![other.clone()]);
    assert_eq!(
        lab.json(&["publish", "ls"])
            .as_array()
            .expect("ports")
            .len(),
        0
    );
    let flows = nat_flows(&lab);
    assert_eq!(flows.len(), 1, "{flows:?}");
    assert_eq!(flows[0]["src"], "172.17.0.3", "only other's flow is left");
    // The datapath agrees (read with bpftool): nothing publishes 8080, no
    // endpoint has web's address.
    assert!(map_dump(&lab.bridge, "publish").is_empty());
    assert!(map_dump(&lab.bridge, "endpoint_by_ip")
        .iter()
        .all(|e| ip_bytes(&e["key"]) != [172, 17, 0, 2]));
    // The port and the address are free for the next container.
    let again = lab.endpoint("again", &["-p", "8080:80"]);
    let list = lab.json(&["endpoint", "ls"]);
    let ip = list
        .as_array()
        .expect("endpoints")
        .iter()
        .find(|e| e["name"] == again.as_str())
        .and_then(|e| e["ipv4"].as_str())
        .expect("address")
        .to_string();
    assert_eq!(ip, "172.17.0.2");
}

/// Whether `addr` is among the node addresses the datapath answers on.
fn node_addr_known(lab: &Lab, addr: [u8; 4]) -> bool {
    map_dump(&lab.bridge, "node_addrs")
        .iter()
        .any(|e| ip_bytes(&e["key"]) == addr)
}

#[test]
fn a_node_address_added_or_removed_changes_where_published_ports_answer() {
    let lab = Lab::up(&[]);
    let agent = Agent::start(&lab, &SLOW_GC);
    assert!(agent.wait_for_log("NAT gc every", 5), "{}", agent.log());
    let web = lab.endpoint("web", &["-p", "5353:53/udp"]);
    let _dns = Bg::spawn(
        &web,
        &[
            PY,
            "-c",
            "import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('0.0.0.0', 53))\nwhile True:\n    d, a = s.recvfrom(100)\n    s.sendto(b'answer', a)\n",
        ],
    );
    thread::sleep(Duration::from_millis(400));
    let ask = |addr: &str| -> Option<String> {
        let script = format!(
            "import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.settimeout(1)\n\
             s.sendto(b'q', ('{addr}', 5353))\ntry:\n    print(s.recv(100).decode())\nexcept OSError:\n    print('none')\n"
        );
        let out = lab.exec_ok(&lab.outside, &[PY, "-c", &script]);
        let out = out.trim();
        (out != "none").then(|| out.to_string())
    };
    assert_eq!(ask(NODE_UPLINK_IP).as_deref(), Some("answer"));

    run_ok(
        "ip",
        &[
            "-n",
            &lab.node,
            "addr",
            "add",
            "198.51.100.9/24",
            "dev",
            "uplink0",
        ],
    );
    assert!(
        wait_until(5, || node_addr_known(&lab, [198, 51, 100, 9])),
        "the datapath never learnt the new address"
    );
    assert_eq!(ask("198.51.100.9").as_deref(), Some("answer"));

    run_ok(
        "ip",
        &[
            "-n",
            &lab.node,
            "addr",
            "del",
            "198.51.100.9/24",
            "dev",
            "uplink0",
        ],
    );
    assert!(
        wait_until(5, || !node_addr_known(&lab, [198, 51, 100, 9])),
        "the datapath still answers on a removed address"
    );
    assert_eq!(ask("198.51.100.9"), None);
    assert_eq!(ask(NODE_UPLINK_IP).as_deref(), Some("answer"));
}
