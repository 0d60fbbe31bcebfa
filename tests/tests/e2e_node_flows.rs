//! A node process and a container using the same source port towards the
//! same service both get their own answers, in either order, over UDP and
//! TCP; resolver-like traffic from both at once loses nothing. MASQUERADE
//! gives this because conntrack sees the node's flows; ebridge holds the
//! node's flows in its NAT table from the uplink's egress.
use std::{thread, time::Duration};

use ebridge_tests::{
    lab::{Lab, SERVER_IP},
    procs::{assert_answered, udp_echo, udp_requests, Agent, Bg, PY},
};

fn udp_client(netns: &str, sport: u16, port: u16, tag: &str, n: u32) -> Bg {
    udp_requests(netns, sport, SERVER_IP, port, tag, n)
}

#[test]
fn same_udp_source_port_from_a_container_and_the_node_in_both_orders() {
    let lab = Lab::up(&[]).with_server(1500);
    let c = lab.endpoint("c", &[]);
    let _agent = Agent::start(&lab, &["--gc-interval", "1"]);
    let _echo = udp_echo(&lab, 5353);

    // Container first: its flow keeps port 40000; the node's is moved.
    let ctr = udp_client(&c, 40000, 5353, "ctr", 40);
    thread::sleep(Duration::from_millis(300));
    let node = udp_client(&lab.node, 40000, 5353, "node", 30);
    assert_answered(node, 30, "node after container");
    assert_answered(ctr, 40, "container before node");
    assert!(lab.packets("node-port-moved") > 0, "{:?}", lab.stats());

    // Node first: its tuple is held; the container gets another port.
    let node = udp_client(&lab.node, 40001, 5353, "node", 40);
    thread::sleep(Duration::from_millis(300));
    let ctr = udp_client(&c, 40001, 5353, "ctr", 30);
    assert_answered(ctr, 30, "container after node");
    assert_answered(node, 40, "node before container");

    let flows = lab.json(&["show", "nat"]);
    let flows = flows.as_array().expect("flows");
    let from = |owner: &str, port: u64| {
        flows
            .iter()
            .find(|f| f["owner"] == owner && f["sport"] == port && f["dport"] == 5353)
            .unwrap_or_else(|| panic!("no {owner} flow from {port}: {flows:?}"))
            .clone()
    };
    assert_eq!(from("container", 40000)["nat_sport"], 40000);
    assert_eq!(from("node", 40001)["nat_sport"], 40001);
    assert_ne!(from("container", 40001)["nat_sport"], 40001);
}

/// TCP echo server on SERVER_IP:`port`, one thread per connection.
fn tcp_echo(lab: &Lab, port: u16) -> Bg {
    let script = format!(
        "import socket, threading\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('{SERVER_IP}', {port}))\ns.listen(16)\n\
         def serve(c):\n    while True:\n        d = c.recv(4096)\n        if not d:\n            break\n        c.sendall(d)\n    c.close()\n\
         while True:\n    c, _ = s.accept()\n    threading.Thread(target=serve, args=(c,), daemon=True).start()\n"
    );
    let bg = Bg::spawn(&lab.server(), &[PY, "-c", &script]);
    thread::sleep(Duration::from_millis(400));
    bg
}

/// One TCP connection from local port `sport`, `n` echoed exchanges.
fn tcp_client(netns: &str, sport: u16, port: u16, tag: &str, n: u32) -> Bg {
    let script = format!(
        "import socket, time\nc=socket.socket()\nc.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         c.bind(('0.0.0.0', {sport}))\nc.settimeout(3)\nc.connect(('{SERVER_IP}', {port}))\nok=0\n\
         for i in range({n}):\n    m=('{tag}-%d;' % i).encode()\n    c.sendall(m)\n    r=b''\n\
         \x20   while len(r) < len(m):\n        r += c.recv(4096)\n    assert r == m, (r, m)\n    ok += 1\n    time.sleep(0.05)\n\
         c.close()\nprint('ok', ok)\n"
    );
    Bg::python(netns, &script)
}

#[test]
fn same_tcp_source_port_from_a_container_and_the_node() {
    let lab = Lab::up(&[]).with_server(1500);
    let c = lab.endpoint("c", &[]);
    let _agent = Agent::start(&lab, &["--gc-interval", "1"]);
    let _echo = tcp_echo(&lab, 8080);

    let ctr = tcp_client(&c, 42000, 8080, "ctr", 40);
    thread::sleep(Duration::from_millis(300));
    let node = tcp_client(&lab.node, 42000, 8080, "node", 30);
    assert_answered(node, 30, "node connection while the container's is open");
    assert_answered(ctr, 40, "container connection");

    let node = tcp_client(&lab.node, 42001, 8080, "node", 40);
    thread::sleep(Duration::from_millis(300));
    let ctr = tcp_client(&c, 42001, 8080, "ctr", 30);
    assert_answered(ctr, 30, "container connection while the node's is open");
    assert_answered(node, 40, "node connection");
}

/// `n` queries, each from a fresh socket (a fresh ephemeral port, as a
/// stub resolver sends them), to SERVER_IP:`port`; prints answered count.
fn resolver_client(netns: &str, port: u16, tag: &str, n: u32) -> Bg {
    let script = format!(
        "import socket\nok=0\n\
         for i in range({n}):\n    s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n    s.settimeout(1)\n\
         \x20   m=('{tag}-%d' % i).encode()\n    s.sendto(m, ('{SERVER_IP}', {port}))\n\
         \x20   try:\n        r, a = s.recvfrom(2048)\n        ok += r == m\n    except socket.timeout:\n        pass\n    s.close()\n\
         print('ok', ok)\n"
    );
    Bg::python(netns, &script)
}

#[test]
fn resolver_traffic_from_a_container_and_the_node_at_once_loses_nothing() {
    let lab = Lab::up(&[]).with_server(1500);
    let c = lab.endpoint("c", &[]);
    let _agent = Agent::start(&lab, &["--gc-interval", "1"]);
    let _resolver = udp_echo(&lab, 5300);
    // Both draw from the same 101 ports: they collide all the time.
    for ns in [&c, &lab.node] {
        lab.exec_ok(
            ns,
            &["sysctl", "-qw", "net.ipv4.ip_local_port_range=40000 40100"],
        );
    }

    // Collisions are the point, but whether two clients meet on a tuple
    // is up to the scheduler: a round without one proves nothing and is
    // run again. Every round must lose nothing.
    let mut moved = 0;
    for round in 1..=4 {
        let (held0, moved0) = (lab.packets("node-flow-out"), lab.packets("node-port-moved"));
        let ctr = resolver_client(&c, 5300, "ctr", 300);
        let node = resolver_client(&lab.node, 5300, "node", 300);
        assert_answered(ctr, 300, "container queries");
        assert_answered(node, 300, "node queries");
        assert_eq!(lab.packets("drop-nat-no-port"), 0);
        let held = lab.packets("node-flow-out") - held0;
        moved = lab.packets("node-port-moved") - moved0;
        assert!(
            held + moved >= 300,
            "round {round}: every node query seen: {held} + {moved}"
        );
        if moved > 0 {
            break;
        }
    }
    assert!(
        moved > 0,
        "no node query met a container's tuple in 4 rounds"
    );
}
