//! Masquerade end to end: containers reach a server behind a router, the
//! router only ever sees the node's uplink address, and everything that
//! depends on NAT being right (PMTU, traceroute, fragments, port reuse,
//! exhaustion, expiry, agent restarts) works.
use std::{
    process::{Child, Command},
    thread,
    time::{Duration, Instant},
};

use ebridge_tests::lab::{run_ok, Lab, NODE_UPLINK_IP, SERVER_IP};

const PY: &str = "/usr/bin/python3";

fn spawn_in(_lab: &Lab, netns: &str, args: &[&str]) -> Child {
    Command::new("ip")
        .args(["netns", "exec", netns])
        .args(args)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn")
}

/// A UDP echo server on the server host, for `secs` seconds.
fn udp_echo(lab: &Lab, port: u16, secs: u32) -> Child {
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('{SERVER_IP}', {port}))\n\
         while True:\n    d, a = s.recvfrom(65535)\n    s.sendto(d, a)\n"
    );
    let child = spawn_in(
        lab,
        &lab.server(),
        &["timeout", &secs.to_string(), PY, "-c", &script],
    );
    thread::sleep(Duration::from_millis(400));
    child
}

fn stop(mut child: Child) {
    // SAFETY: our own child; `timeout` passes SIGTERM on.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

/// Sends `size` random bytes in one datagram from `netns` and checks the
/// echo; prints "ok <size>".
fn udp_roundtrip(lab: &Lab, netns: &str, port: u16, size: usize) -> String {
    let script = format!(
        "import os, socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.settimeout(3)\n\
         d=os.urandom({size})\ns.sendto(d, ('{SERVER_IP}', {port}))\nr, a = s.recvfrom(65535)\n\
         assert r == d, (len(r), len(d))\nprint('ok', len(r), a[0])\n"
    );
    lab.exec_ok(netns, &[PY, "-c", &script])
}

fn nat_flows(lab: &Lab) -> Vec<serde_json::Value> {
    lab.json(&["show", "nat"])
        .as_array()
        .expect("flows")
        .clone()
}

#[test]
fn http_download_100mb_udp_and_ping_only_show_the_uplink_address() {
    let mut lab = Lab::up(&[]).with_server(1500).watch_for_leaks();
    let c = lab.endpoint("c", &[]);
    let dir = std::env::temp_dir().join(format!("{}-www", lab.id));
    std::fs::create_dir_all(&dir).expect("www dir");
    let file = dir.join("payload");
    run_ok(
        "sh",
        &[
            "-c",
            &format!("head -c 104857600 /dev/urandom > {}", file.display()),
        ],
    );
    let expected = run_ok("sha256sum", &[file.to_str().expect("utf-8")]);
    let expected = expected.split_whitespace().next().expect("sum").to_string();

    let server = spawn_in(
        &lab,
        &lab.server(),
        &[
            "timeout",
            "90",
            PY,
            "-m",
            "http.server",
            "8080",
            "--bind",
            SERVER_IP,
            "--directory",
            dir.to_str().expect("utf-8"),
        ],
    );
    thread::sleep(Duration::from_millis(800));
    let client = format!(
        "import hashlib, urllib.request\nd = urllib.request.urlopen('http://{SERVER_IP}:8080/payload', timeout=60).read()\n\
         print(hashlib.sha256(d).hexdigest(), len(d))\n"
    );
    let got = lab.exec_ok(&c, &[PY, "-c", &client]);
    stop(server);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(got.trim(), format!("{expected} 104857600"));

    let echo = udp_echo(&lab, 7000, 20);
    assert!(udp_roundtrip(&lab, &c, 7000, 200).starts_with("ok 200 203.0.113.2"));
    stop(echo);
    lab.exec_ok(&c, &["ping", "-c", "2", "-i", "0.2", "-W", "2", SERVER_IP]);

    let flows = nat_flows(&lab);
    let protos: Vec<&str> = flows.iter().filter_map(|f| f["proto"].as_str()).collect();
    for p in ["tcp", "udp", "icmp"] {
        assert!(protos.contains(&p), "no {p} flow in {flows:?}");
    }
    for f in &flows {
        assert_eq!(f["src"], "172.17.0.2");
        assert_eq!(f["nat_src"], NODE_UPLINK_IP);
    }
    let stats = lab.stats();
    // Downloads are mostly reply traffic; GRO keeps the ACK count low.
    assert!(
        stats["snat-out"].0 > 100 && stats["revnat-in"].0 > 1000,
        "{stats:?}"
    );
    lab.assert_no_leak();
}

#[test]
fn two_containers_same_source_port_to_the_same_server() {
    let mut lab = Lab::up(&[]).with_server(1500).watch_for_leaks();
    let a = lab.endpoint("a", &[]);
    let b = lab.endpoint("b", &[]);
    // TCP echo server; each client holds its connection open for a second,
    // so both flows exist at once.
    let server_py = format!(
        "import socket, threading\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('{SERVER_IP}', 8080))\ns.listen(8)\n\
         def serve(c):\n    d = c.recv(100)\n    c.sendall(d)\n    c.close()\n\
         while True:\n    c, _ = s.accept()\n    threading.Thread(target=serve, args=(c,)).start()\n"
    );
    let server = spawn_in(
        &lab,
        &lab.server(),
        &["timeout", "20", PY, "-c", &server_py],
    );
    thread::sleep(Duration::from_millis(500));
    let client = |name: &str| {
        format!(
            "import socket, time\nc=socket.socket()\nc.bind(('0.0.0.0', 40000))\nc.connect(('{SERVER_IP}', 8080))\n\
             time.sleep(1)\nc.sendall(b'{name}')\nprint(c.recv(100).decode())\n"
        )
    };
    let ca = spawn_out(&a, &client("from-a"));
    let cb = spawn_out(&b, &client("from-b"));
    thread::sleep(Duration::from_millis(500));
    let during = nat_flows(&lab);
    let out_a = ca.wait_with_output().expect("client a");
    let out_b = cb.wait_with_output().expect("client b");
    stop(server);
    assert_eq!(String::from_utf8_lossy(&out_a.stdout).trim(), "from-a");
    assert_eq!(String::from_utf8_lossy(&out_b.stdout).trim(), "from-b");

    let tcp: Vec<&serde_json::Value> = during
        .iter()
        .filter(|f| f["proto"] == "tcp" && f["sport"] == 40000)
        .collect();
    assert_eq!(tcp.len(), 2, "{during:?}");
    let ports: Vec<u64> = tcp
        .iter()
        .map(|f| f["nat_sport"].as_u64().expect("port"))
        .collect();
    assert_ne!(ports[0], ports[1], "both flows got NAT port {}", ports[0]);
    // The first keeps its own port: it is free and in range.
    assert!(ports.contains(&40000), "{ports:?}");
    lab.assert_no_leak();
}

fn spawn_out(netns: &str, script: &str) -> Child {
    Command::new("ip")
        .args(["netns", "exec", netns, "timeout", "15", PY, "-c", script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("client")
}

#[test]
fn path_mtu_discovery_through_the_nat() {
    let mut lab = Lab::up(&[]).with_server(1280).watch_for_leaks();
    let c = lab.endpoint("c", &[]);
    // The container sends full-size DF segments; the router's link to the
    // server only takes 1280, so the upload completes only if the router's
    // fragmentation-needed error reaches the container translated.
    let server = spawn_in(
        &lab,
        &lab.server(),
        &[
            "timeout",
            "30",
            "sh",
            "-c",
            &format!(
                "nc -l -s {SERVER_IP} -p 9000 | sha256sum > /tmp/{}-pmtu",
                lab.id
            ),
        ],
    );
    thread::sleep(Duration::from_millis(400));
    let dir = std::env::temp_dir().join(format!("{}-pmtu-src", lab.id));
    run_ok(
        "sh",
        &[
            "-c",
            &format!("head -c 8000000 /dev/urandom > {}", dir.display()),
        ],
    );
    lab.exec_ok(
        &c,
        &[
            "sh",
            "-c",
            &format!(
                "timeout 25 nc -q 1 -w 10 {SERVER_IP} 9000 < {}",
                dir.display()
            ),
        ],
    );
    let mut server = server;
    let _ = server.wait();
    let sent = run_ok("sha256sum", &[dir.to_str().expect("utf-8")]);
    let got = std::fs::read_to_string(format!("/tmp/{}-pmtu", lab.id)).expect("server sum");
    let _ = std::fs::remove_file(&dir);
    let _ = std::fs::remove_file(format!("/tmp/{}-pmtu", lab.id));
    assert_eq!(
        got.split_whitespace().next(),
        sent.split_whitespace().next(),
        "upload corrupted or cut"
    );
    assert!(
        lab.packets("revnat-icmp-error") > 0,
        "no fragmentation-needed error was translated"
    );
    // The container learned the path MTU.
    let route = lab.exec_ok(&c, &["ip", "route", "get", SERVER_IP]);
    assert!(route.contains("mtu 1280"), "{route}");
    lab.assert_no_leak();
}

#[test]
fn traceroute_shows_every_hop() {
    let mut lab = Lab::up(&[]).with_server(1500).watch_for_leaks();
    // The node's own hop (TTL expiring at the gateway) is answered by the
    // kernel, which needs forwarding on in the node: this namespace is ours.
    lab.exec_ok(&lab.node, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    let c = lab.endpoint("c", &[]);
    for mode in [&[][..], &["-I"][..]] {
        let mut args = vec!["traceroute", "-n", "-q", "1", "-w", "2", "-m", "5"];
        args.extend(mode);
        args.push(SERVER_IP);
        let out = lab.exec_ok(&c, &args);
        let hops: Vec<&str> = out
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(1))
            .collect();
        assert_eq!(
            hops,
            ["172.17.0.1", "198.51.100.2", SERVER_IP],
            "traceroute {mode:?}:\n{out}"
        );
    }
    assert!(lab.packets("revnat-icmp-error") >= 2);
    lab.assert_no_leak();
}

#[test]
fn fragmented_udp_crosses_both_ways() {
    let mut lab = Lab::up(&[]).with_server(1500).watch_for_leaks();
    let c = lab.endpoint("c", &[]);
    let echo = udp_echo(&lab, 7000, 20);
    let before = lab.stats();
    for _ in 0..3 {
        assert!(udp_roundtrip(&lab, &c, 7000, 4000).starts_with("ok 4000"));
    }
    stop(echo);
    let after = lab.stats();
    // 4000 bytes at MTU 1500 is three fragments each way.
    assert!(after["snat-out"].0 - before["snat-out"].0 >= 9, "{after:?}");
    assert!(
        after["revnat-in"].0 - before["revnat-in"].0 >= 9,
        "{after:?}"
    );
    assert_eq!(after["drop-frag-no-first"].0, 0);
    lab.assert_no_leak();
}

#[test]
fn port_exhaustion_drops_extra_flows_and_keeps_the_others() {
    let mut lab = Lab::up(&["--nat-ports", "40000-40001"])
        .with_server(1500)
        .watch_for_leaks();
    let c = lab.endpoint("c", &[]);
    let echo = udp_echo(&lab, 7000, 20);
    let script = format!(
        "import socket\nsocks = []\nfor i in range(4):\n    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n    s.settimeout(1)\n    socks.append(s)\n\
         def ask(s, m):\n    s.sendto(m, ('{SERVER_IP}', 7000))\n    try:\n        return s.recvfrom(100)[0] == m\n    except socket.timeout:\n        return False\n\
         first = [ask(s, b'x%d' % i) for i, s in enumerate(socks)]\nagain = [ask(socks[0], b'again'), ask(socks[1], b'again')]\nprint(sum(first), all(again))\n"
    );
    let out = lab.exec_ok(&c, &[PY, "-c", &script]);
    stop(echo);
    assert_eq!(
        out.trim(),
        "2 True",
        "two flows fit in two ports, and they keep working"
    );
    assert!(lab.packets("drop-nat-no-port") >= 2);
    let flows = nat_flows(&lab);
    assert_eq!(flows.len(), 2, "{flows:?}");
    lab.assert_no_leak();
}

fn agent(lab: &Lab, extra: &[&str]) -> Child {
    let bin = ebridge_tests::lab::ebridge_bin();
    let net = format!("--net=/run/netns/{}", lab.node);
    Command::new("nsenter")
        .args([
            &net,
            bin.to_str().expect("utf-8"),
            "agent",
            "--bridge",
            &lab.bridge,
            "--gc-interval",
            "1",
            "--run-for",
            "60",
        ])
        .args(extra)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("agent")
}

#[test]
fn closed_tcp_and_idle_udp_flows_expire() {
    let lab = Lab::up(&[]).with_server(1500);
    let c = lab.endpoint("c", &[]);
    let agent = agent(
        &lab,
        &[
            "--tcp-timeout-time-wait",
            "2",
            "--tcp-timeout-close",
            "2",
            "--udp-timeout",
            "2",
            "--udp-timeout-stream",
            "3",
        ],
    );
    let echo = udp_echo(&lab, 7000, 20);
    let server = spawn_in(
        &lab,
        &lab.server(),
        &["timeout", "10", "nc", "-l", "-s", SERVER_IP, "-p", "8080"],
    );
    thread::sleep(Duration::from_millis(300));
    lab.exec_ok(
        &c,
        &[
            "sh",
            "-c",
            &format!("echo hi | timeout 5 nc -q 1 {SERVER_IP} 8080"),
        ],
    );
    udp_roundtrip(&lab, &c, 7000, 10);
    let mut server = server;
    let _ = server.wait();
    let flows = nat_flows(&lab);
    let tcp = flows
        .iter()
        .find(|f| f["proto"] == "tcp")
        .expect("tcp flow");
    assert_eq!(tcp["state"], "TIME_WAIT", "{flows:?}");
    let udp = flows
        .iter()
        .find(|f| f["proto"] == "udp")
        .expect("udp flow");
    assert_eq!(udp["state"], "ASSURED");

    let deadline = Instant::now() + Duration::from_secs(10);
    while !nat_flows(&lab).is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(250));
    }
    stop(echo);
    stop(agent);
    assert!(nat_flows(&lab).is_empty(), "{:?}", nat_flows(&lab));
}

#[test]
fn killing_the_agent_mid_transfer_breaks_nothing() {
    let lab = Lab::up(&[]).with_server(1500);
    let c = lab.endpoint("c", &[]);
    let first = agent(&lab, &[]);
    // About three seconds of paced TCP from the server.
    let server_py = format!(
        "import socket, time, hashlib\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('{SERVER_IP}', 8080))\ns.listen(1)\nc, _ = s.accept()\nh = hashlib.sha256()\n\
         for i in range(60):\n    chunk = bytes([i]) * 262144\n    h.update(chunk)\n    c.sendall(chunk)\n    time.sleep(0.05)\n\
         c.close()\nprint(h.hexdigest())\n"
    );
    let server = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.server(),
            "timeout",
            "30",
            PY,
            "-c",
            &server_py,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("server");
    thread::sleep(Duration::from_millis(400));
    let client_py = format!(
        "import socket, hashlib\nc=socket.create_connection(('{SERVER_IP}', 8080))\nh=hashlib.sha256()\n\
         while True:\n    d = c.recv(65536)\n    if not d:\n        break\n    h.update(d)\nprint(h.hexdigest())\n"
    );
    let client = spawn_out(&c, &client_py);
    thread::sleep(Duration::from_millis(800));
    let mut first = first;
    first.kill().expect("kill -9 the agent");
    let _ = first.wait();
    thread::sleep(Duration::from_millis(500));
    let second = agent(&lab, &[]);
    let got = client.wait_with_output().expect("client");
    let sent = server.wait_with_output().expect("server");
    stop(second);
    let got = String::from_utf8_lossy(&got.stdout).trim().to_string();
    assert_eq!(got.len(), 64, "transfer did not complete: {got:?}");
    assert_eq!(got, String::from_utf8_lossy(&sent.stdout).trim());
}

#[test]
fn no_masquerade_routes_the_container_address() {
    let mut lab = Lab::up(&["--no-masquerade"])
        .with_server(1500)
        .watch_for_leaks();
    let c = lab.endpoint("c", &[]);
    // Routed mode: the network routes the subnet back, and the node forwards
    // from its uplink (both set up here, in namespaces of our own).
    lab.exec_ok(
        &lab.outside,
        &["ip", "route", "add", "172.17.0.0/16", "via", NODE_UPLINK_IP],
    );
    lab.exec_ok(
        &lab.node,
        &["sysctl", "-qw", "net.ipv4.conf.uplink0.forwarding=1"],
    );
    lab.exec_ok(&c, &["ping", "-c", "2", "-i", "0.2", "-W", "2", SERVER_IP]);
    assert!(lab.packets("pass-routed") >= 2);
    assert!(nat_flows(&lab).is_empty());
    let (container_sourced, _) = lab.uplink_capture();
    assert!(
        container_sourced >= 2,
        "the container address should be seen as is"
    );
}
