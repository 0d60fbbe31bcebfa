//! Cluster mode: three nodes on an underlay, each running ebridge with its
//! own pod subnet and native-routing CIDR 10.244.0.0/16, routes between
//! them from BIRD 2 over iBGP (`tests/src/cluster.rs`). Pods on different
//! nodes reach each other by their own addresses on the fast path (the
//! nodes' IP forwarding stays idle); the outside sees only node addresses;
//! a published port is reached across nodes; a node whose BIRD stops is
//! unreachable with nothing leaking, and reachable again when it is back;
//! a smaller underlay MTU loses nothing.
use std::{
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use ebridge_tests::{
    cluster::{Cluster, SERVER_IP},
    lab::run_ok,
    procs::{Bg, PY},
};

/// Receives one TCP stream on `port`, prints its sha256, length and the
/// peer's address.
fn tcp_sink(netns: &str, port: u16) -> Bg {
    let script = format!(
        "import socket, hashlib\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('0.0.0.0', {port}))\ns.listen(1)\nc, a = s.accept()\nh=hashlib.sha256()\nn=0\n\
         while True:\n    d = c.recv(1 << 16)\n    if not d:\n        break\n    h.update(d)\n    n += len(d)\n\
         print(h.hexdigest(), n, a[0])\n"
    );
    let bg = Bg::python(netns, &script);
    thread::sleep(Duration::from_millis(500));
    bg
}

/// Sends `mb` MiB of a fixed pseudo-random stream to `ip:port`; prints its
/// sha256.
fn tcp_send(c: &Cluster, netns: &str, ip: &str, port: u16, mb: u32) -> String {
    let script = format!(
        "import socket, hashlib, random\nr=random.Random(7)\nblock=r.randbytes(1 << 20)\nh=hashlib.sha256()\n\
         c=socket.create_connection(('{ip}', {port}), timeout=30)\n\
         for i in range({mb}):\n    b = bytes([i & 255]) + block[1:]\n    c.sendall(b)\n    h.update(b)\n\
         c.close()\nprint(h.hexdigest())\n"
    );
    c.exec_ok(netns, &[PY, "-c", &script]).trim().to_string()
}

fn rx_packets(c: &Cluster, netns: &str) -> u64 {
    c.exec_ok(netns, &["cat", "/sys/class/net/eth0/statistics/rx_packets"])
        .trim()
        .parse()
        .expect("rx_packets")
}

/// tcpdump on `netns`'s `dev`, stopped and read by [`Capture::count`].
struct Capture {
    child: Child,
    pcap: std::path::PathBuf,
}

impl Capture {
    fn start(netns: &str, dev: &str, tag: &str) -> Self {
        let pcap = std::env::temp_dir().join(format!("{netns}-{tag}.pcap"));
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                netns,
                "tcpdump",
                "-n",
                "-U",
                "--immediate-mode",
                "-i",
                dev,
                "-w",
            ])
            .arg(&pcap)
            .arg("ip")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump");
        let stderr = child.stderr.take().expect("stderr");
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stderr), &mut line);
        assert!(line.contains("listening"), "tcpdump: {line}");
        Self { child, pcap }
    }

    /// Stops the capture; packets matching each filter.
    fn count(mut self, filters: &[&str]) -> Vec<usize> {
        thread::sleep(Duration::from_millis(300));
        // SAFETY: kill(2) of our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        let path = self.pcap.to_str().expect("utf-8").to_string();
        filters
            .iter()
            .map(|f| run_ok("tcpdump", &["-n", "-r", &path, f]).lines().count())
            .collect()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.pcap);
    }
}

#[test]
fn pods_on_different_nodes_talk_by_their_own_addresses_on_the_fast_path() {
    let c = Cluster::new(1500, &[]);
    let (p1, ip1) = c.pod(1, "p1", &[]);
    let (p2, ip2) = c.pod(2, "p2", &[]);
    let (_p3, ip3) = c.pod(3, "p3", &[]);
    for ip in [&ip2, &ip3] {
        c.exec_ok(&p1, &["ping", "-c", "2", "-i", "0.2", "-W", "2", ip]);
    }

    // UDP: the server sees the client pod's own address.
    let udp_server = "import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('0.0.0.0', 7000))\n\
         s.settimeout(10)\nd, a = s.recvfrom(100)\ns.sendto(d, a)\nprint(a[0])\n";
    let server = Bg::python(&p2, udp_server);
    thread::sleep(Duration::from_millis(400));
    let client = format!(
        "import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.settimeout(3)\n\
         s.sendto(b'hi', ('{ip2}', 7000))\nprint(s.recv(10).decode())\n"
    );
    assert_eq!(c.exec_ok(&p1, &[PY, "-c", &client]).trim(), "hi");
    let (_, seen, _) = server.wait_output();
    assert_eq!(seen.trim(), ip1, "no NAT between pods");

    // 100 MB across nodes, on the fast path: the receiving node's uplink
    // program delivers about every packet the pod receives, and neither
    // node's IP stack forwards anything.
    let (n1, n2) = (c.node(1), c.node(2));
    let sink = tcp_sink(&p2, 8000);
    let before = (
        n1.packets("routed-out"),
        n2.packets("routed-in"),
        rx_packets(&c, &p2),
        n1.forwarded(),
        n2.forwarded(),
    );
    let sent = tcp_send(&c, &p1, &ip2, 8000, 100);
    let (ok, got, err) = sink.wait_output();
    assert!(ok, "sink: {err}");
    let got: Vec<&str> = got.split_whitespace().collect();
    assert_eq!(got, vec![sent.as_str(), "104857600", ip1.as_str()]);
    let routed_out = n1.packets("routed-out") - before.0;
    let routed_in = n2.packets("routed-in") - before.1;
    let received = rx_packets(&c, &p2) - before.2;
    assert!(
        routed_in as f64 >= 0.95 * received as f64,
        "uplink program delivered {routed_in} of the pod's {received} packets"
    );
    assert!(routed_out > 1000, "{routed_out} packets routed out");
    let forwarded = (n1.forwarded() - before.3, n2.forwarded() - before.4);
    assert!(
        forwarded.0 < 20 && forwarded.1 < 20,
        "the nodes' IP stacks forwarded {forwarded:?} packets"
    );

    // To the outside, masqueraded: the server never sees a pod address.
    let capture = Capture::start(&c.server, "eth0", "leak");
    c.exec_ok(&p1, &["ping", "-c", "2", "-i", "0.2", "-W", "2", SERVER_IP]);
    c.exec_ok(&p2, &["ping", "-c", "2", "-i", "0.2", "-W", "2", SERVER_IP]);
    let counts = capture.count(&["src net 10.244.0.0/16", "src net 192.168.77.0/24"]);
    assert_eq!(counts[0], 0, "pod addresses reached the outside");
    assert!(
        counts[1] >= 4,
        "the capture saw no node address: {counts:?}"
    );
}

#[test]
fn a_published_port_is_reached_from_a_pod_on_another_node() {
    let c = Cluster::new(1500, &[]);
    let (web, _) = c.pod(1, "web", &["-p", "8080:80"]);
    let (client, _) = c.pod(2, "cli", &[]);
    let _server = Bg::spawn(&web, &[PY, "-m", "http.server", "80", "--directory", "/"]);
    thread::sleep(Duration::from_millis(700));
    // Through node 1's underlay address (node 2 masquerades it) and through
    // its gateway address inside the native CIDR (routed as is; node 1's
    // reply is un-DNATed although it goes to a native-routed pod).
    for addr in [c.node(1).ip.as_str(), "10.244.1.1"] {
        let get = format!(
            "import urllib.request\nprint(urllib.request.urlopen('http://{addr}:8080/', timeout=5).status)\n"
        );
        assert_eq!(
            c.exec_ok(&client, &[PY, "-c", &get]).trim(),
            "200",
            "via {addr}"
        );
    }
    assert!(c.node(1).packets("dnat-in") >= 2);
}

#[test]
fn a_node_whose_bird_stops_is_unreachable_until_bird_is_back() {
    let c = Cluster::new(1500, &[]);
    let (p1, _) = c.pod(1, "p1", &[]);
    let (_p3, ip3) = c.pod(3, "p3", &[]);
    c.exec_ok(&p1, &["ping", "-c", "1", "-W", "2", &ip3]);

    let capture = Capture::start(&c.router, "eth0", "outage");
    c.node(3).stop_bird();
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.node(1).bird_routes().contains("10.244.3.0/24") {
        assert!(Instant::now() < deadline, "node 1 kept node 3's route");
        thread::sleep(Duration::from_millis(100));
    }
    // No route: the pod is told so (the node's unreachable route for the
    // native CIDR), and nothing with a pod address goes to the default
    // gateway.
    let out = c.exec(&p1, &["ping", "-c", "2", "-i", "0.2", "-W", "1", &ip3]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Unreachable"), "{text}");
    let leaked = capture.count(&["src net 10.244.0.0/16"]);
    assert_eq!(leaked[0], 0, "pod packets went to the default gateway");

    // BIRD back: reachable again, no ebridge command run.
    c.node(3).start_bird();
    c.wait_for_routes(Duration::from_secs(20));
    c.exec_ok(&p1, &["ping", "-c", "1", "-W", "2", &ip3]);
}

#[test]
fn an_underlay_mtu_smaller_than_the_pods_loses_nothing() {
    // Pods at 1500, the underlay at 1400: the first full-size segments get
    // fragmentation-needed from node 1, and the transfer goes on.
    let c = Cluster::new(1400, &[]);
    let (p1, _) = c.pod(1, "p1", &[]);
    let (p2, ip2) = c.pod(2, "p2", &[]);
    let sink = tcp_sink(&p2, 8000);
    let sent = tcp_send(&c, &p1, &ip2, 8000, 20);
    let (ok, got, err) = sink.wait_output();
    assert!(ok, "sink: {err}");
    assert!(got.starts_with(&format!("{sent} 20971520")), "{got}");
}
