//! Published ports (`-p`), hairpin, host access and isolation, checked with
//! real clients from every place Docker users reach them from.
use std::{
    process::{Child, Command, Stdio},
    thread,
    time::Duration,
};

use ebridge_tests::lab::{stderr, Lab, NODE_UPLINK_IP, OUTSIDE_IP};

const PY: &str = "/usr/bin/python3";

fn spawn(netns: &str, args: &[&str]) -> Child {
    Command::new("ip")
        .args(["netns", "exec", netns])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn")
}

fn stop(mut child: Child) {
    // SAFETY: our own child; `timeout` passes SIGTERM on.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

/// An HTTP server answering its own name on `port`, and a UDP echo on `udp`.
fn servers(netns: &str, ports: &[u16], udp: Option<u16>) -> Vec<Child> {
    let mut out = Vec::new();
    for port in ports {
        let script = format!(
            "import http.server\nclass H(http.server.BaseHTTPRequestHandler):\n    def do_GET(self):\n        b = b'{netns}:{port}'\n        self.send_response(200)\n        self.send_header('Content-Length', str(len(b)))\n        self.end_headers()\n        self.wfile.write(b)\n    def log_message(self, *a):\n        pass\n\
             http.server.ThreadingHTTPServer(('0.0.0.0', {port}), H).serve_forever()\n"
        );
        out.push(spawn(netns, &["timeout", "60", PY, "-c", &script]));
    }
    if let Some(port) = udp {
        let script = format!(
            "import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('0.0.0.0', {port}))\n\
             while True:\n    d, a = s.recvfrom(2000)\n    s.sendto(d, a)\n"
        );
        out.push(spawn(netns, &["timeout", "60", PY, "-c", &script]));
    }
    thread::sleep(Duration::from_millis(700));
    out
}

/// GET from inside `netns` (or the node when `netns` is the node): the body, or
/// the error class.
fn get(lab: &Lab, netns: &str, url: &str) -> String {
    let script = format!(
        "import urllib.request\ntry:\n    print(urllib.request.urlopen('{url}', timeout=2).read().decode())\nexcept Exception as e:\n    print('ERR', type(e).__name__)\n"
    );
    lab.exec_ok(netns, &["timeout", "10", PY, "-c", &script])
        .trim()
        .to_string()
}

/// One UDP datagram to addr:port; prints the reply and where it came from.
fn udp(lab: &Lab, netns: &str, addr: &str, port: u16) -> String {
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.settimeout(2)\ns.sendto(b'ping', ('{addr}', {port}))\n\
         try:\n    d, a = s.recvfrom(100)\n    print(d.decode(), a[0], a[1])\nexcept Exception as e:\n    print('ERR', type(e).__name__)\n"
    );
    lab.exec_ok(netns, &["timeout", "10", PY, "-c", &script])
        .trim()
        .to_string()
}

#[test]
fn published_port_from_outside_node_other_and_same_container() {
    let mut lab = Lab::up(&[]).watch_for_leaks();
    let web = lab.endpoint("web", &["-p", "8080:80", "-p", "5353:53/udp"]);
    let cli = lab.endpoint("cli", &[]);
    let srv = servers(&web, &[80], Some(53));
    let want = format!("{web}:80");
    let node_url = format!("http://{NODE_UPLINK_IP}:8080/");

    assert_eq!(get(&lab, &lab.outside, &node_url), want, "from outside");
    assert_eq!(
        get(&lab, &lab.node, "http://127.0.0.1:8080/"),
        want,
        "from the node via loopback"
    );
    assert_eq!(
        get(&lab, &lab.node, &node_url),
        want,
        "from the node via its address"
    );
    assert_eq!(
        get(&lab, &cli, &node_url),
        want,
        "from another container (hairpin)"
    );
    assert_eq!(
        get(&lab, &web, &node_url),
        want,
        "from the same container (hairpin)"
    );

    assert_eq!(
        udp(&lab, &lab.outside, NODE_UPLINK_IP, 5353),
        format!("ping {NODE_UPLINK_IP} 5353")
    );
    // The reply appears to come from where the client sent it.
    assert_eq!(
        udp(&lab, &lab.node, "127.0.0.1", 5353),
        "ping 127.0.0.1 5353"
    );
    assert_eq!(
        udp(&lab, &cli, NODE_UPLINK_IP, 5353),
        format!("ping {NODE_UPLINK_IP} 5353")
    );
    srv.into_iter().for_each(stop);

    let stats = lab.stats();
    assert!(stats["dnat-in"].0 >= 2, "{stats:?}");
    assert!(stats["hairpin"].0 >= 4, "{stats:?}");
    // The published flow leaves as the node's address, never the container's.
    lab.assert_no_leak();
}

#[test]
fn port_range_and_host_ip_bound_publish_behave_like_docker() {
    let lab = Lab::up(&[]);
    let web = lab.endpoint(
        "web",
        &[
            "-p",
            "9000-9009:9000-9009",
            "-p",
            &format!("{NODE_UPLINK_IP}:8081:80"),
        ],
    );
    let srv = servers(&web, &[9000, 9009, 80], None);
    for port in [9000, 9009] {
        assert_eq!(
            get(
                &lab,
                &lab.outside,
                &format!("http://{NODE_UPLINK_IP}:{port}/")
            ),
            format!("{web}:{port}")
        );
    }
    assert_eq!(
        get(
            &lab,
            &lab.outside,
            &format!("http://{NODE_UPLINK_IP}:8081/")
        ),
        format!("{web}:80")
    );
    assert_eq!(
        get(&lab, &lab.node, &format!("http://{NODE_UPLINK_IP}:8081/")),
        format!("{web}:80")
    );
    // Bound to the uplink address only: not on loopback.
    assert!(get(&lab, &lab.node, "http://127.0.0.1:8081/").starts_with("ERR"));
    srv.into_iter().for_each(stop);
    let ls = lab.json(&["publish", "ls"]);
    let specs: Vec<&str> = ls
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|p| p["spec"].as_str())
        .collect();
    assert_eq!(
        specs,
        [
            "0.0.0.0:9000-9009->9000-9009/tcp",
            "198.51.100.1:8081->80/tcp"
        ]
    );
}

#[test]
fn no_icc_isolates_containers_but_not_outside_or_published_ports() {
    let mut lab = Lab::up(&["--no-icc"]).with_server(1500).watch_for_leaks();
    let web = lab.endpoint("web", &["-p", "8080:80"]);
    let cli = lab.endpoint("cli", &[]);
    let srv = servers(&web, &[80], None);
    assert!(
        lab.exec(&cli, &["ping", "-c", "1", "-W", "1", "172.17.0.2"])
            .status
            .code()
            != Some(0)
    );
    assert!(get(&lab, &cli, "http://172.17.0.2:80/").starts_with("ERR"));
    assert!(lab.packets("drop-icc-disabled") >= 2);
    // Published port and the outside still work.
    assert_eq!(
        get(&lab, &cli, &format!("http://{NODE_UPLINK_IP}:8080/")),
        format!("{web}:80")
    );
    assert_eq!(
        get(
            &lab,
            &lab.outside,
            &format!("http://{NODE_UPLINK_IP}:8080/")
        ),
        format!("{web}:80")
    );
    lab.exec_ok(&cli, &["ping", "-c", "1", "-W", "2", OUTSIDE_IP]);
    srv.into_iter().for_each(stop);
    lab.assert_no_leak();
}

#[test]
fn with_icc_containers_reach_each_other() {
    let lab = Lab::up(&[]);
    let web = lab.endpoint("web", &[]);
    let cli = lab.endpoint("cli", &[]);
    let srv = servers(&web, &[80], None);
    let before = lab.packets("redirect-peer");
    assert_eq!(
        get(&lab, &cli, "http://172.17.0.2:80/"),
        format!("{web}:80")
    );
    srv.into_iter().for_each(stop);
    // Through the fast path, not merely through the bridge.
    assert!(lab.packets("redirect-peer") >= before + 4);
}

#[test]
fn unpublished_ports_and_addresses_are_unreachable_from_outside() {
    let lab = Lab::up(&[]);
    let web = lab.endpoint("web", &["-p", "8080:80"]);
    let srv = servers(&web, &[80, 81], None);
    // Even a router that knows the way cannot reach a container directly.
    lab.exec_ok(
        &lab.outside,
        &["ip", "route", "add", "172.17.0.0/16", "via", NODE_UPLINK_IP],
    );
    assert!(get(&lab, &lab.outside, "http://172.17.0.2:80/").starts_with("ERR"));
    assert!(lab.packets("drop-not-published") >= 1);
    // Port 81 is not published: the node itself answers (refused).
    assert!(get(&lab, &lab.outside, &format!("http://{NODE_UPLINK_IP}:81/")).starts_with("ERR"));
    assert_eq!(
        get(
            &lab,
            &lab.outside,
            &format!("http://{NODE_UPLINK_IP}:8080/")
        ),
        format!("{web}:80")
    );
    srv.into_iter().for_each(stop);
}

#[test]
fn removing_an_endpoint_removes_its_published_ports() {
    let lab = Lab::up(&[]);
    let web = lab.endpoint("web", &["-p", "8080:80"]);
    lab.ebridge_ok(&["publish", "add", &web, "8090:80"]);
    assert_eq!(
        lab.json(&["publish", "ls"]).as_array().expect("list").len(),
        2
    );
    lab.ebridge_ok(&["publish", "rm", &web, "8090:80"]);
    assert_eq!(
        lab.json(&["publish", "ls"]).as_array().expect("list").len(),
        1
    );
    lab.ebridge_ok(&["endpoint", "rm", &web]);
    assert!(lab
        .json(&["publish", "ls"])
        .as_array()
        .expect("list")
        .is_empty());
    // Nothing left in the datapath either: the port can be published again.
    let again = lab.endpoint("again", &["-p", "8080:80"]);
    let srv = servers(&again, &[80], None);
    assert_eq!(
        get(
            &lab,
            &lab.outside,
            &format!("http://{NODE_UPLINK_IP}:8080/")
        ),
        format!("{again}:80")
    );
    srv.into_iter().for_each(stop);
}

#[test]
fn conflicts_and_malformed_specs_are_refused_and_change_nothing() {
    let lab = Lab::up(&[]);
    let web = lab.endpoint("web", &["-p", "8080:80"]);
    let other = lab.name("other");
    // A node process listening on 7777.
    let listener = spawn(&lab.node, &["timeout", "30", "nc", "-l", "-p", "7777"]);
    thread::sleep(Duration::from_millis(300));
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["endpoint", "add", &other, "-p", "70000:80"],
            &["70000", "1 to 65535"],
        ),
        (
            &["endpoint", "add", &other, "-p", "abc"],
            &["'abc'", "[HOSTIP:]HOSTPORT"],
        ),
        (
            &["endpoint", "add", &other, "-p", "80:80/sctp"],
            &["'sctp'", "tcp or udp"],
        ),
        (
            &["endpoint", "add", &other, "-p", "9000-9009:9000-9008"],
            &["10 host ports to 9 container ports"],
        ),
        (
            &[
                "endpoint",
                "add",
                &other,
                "-p",
                "9000-9005:9000-9005",
                "-p",
                "9003:80",
            ],
            &["overlap"],
        ),
        (
            &["endpoint", "add", &other, "-p", "8080:81"],
            &["0.0.0.0:8080->80/tcp", "already published", &web],
        ),
        (
            &["endpoint", "add", &other, "-p", "7777:80"],
            &["already uses tcp", "7777"],
        ),
        (&["publish", "add", &web, "8080:80"], &["already published"]),
        (&["publish", "add", &web, "7777:80"], &["7777"]),
        (
            &["publish", "rm", &web, "9999:80"],
            &["does not publish", "8080"],
        ),
    ];
    for (args, needles) in cases {
        let before = (lab.snapshot(), lab.ebridge_ok(&["publish", "ls", "--json"]));
        let out = lab.ebridge(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        for n in *needles {
            assert!(err.contains(n), "{args:?}: {err:?} lacks {n:?}");
        }
        assert_eq!(
            (lab.snapshot(), lab.ebridge_ok(&["publish", "ls", "--json"])),
            before,
            "{args:?} changed something"
        );
    }
    stop(listener);
}
