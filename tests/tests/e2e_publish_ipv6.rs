//! Published ports over IPv6, as Docker publishes them on a dual-stack
//! network: `-p 8080:80` answers on every node address of both families,
//! `-p [::]:8080:80` on IPv6 only, `-p 0.0.0.0:8080:80` on IPv4 only,
//! `-p [ADDR]:8080:80` on that address; reached from outside, from the
//! node (`[::1]`, its own address) and from containers (hairpin).
use ebridge_tests::{
    lab::{Lab, NODE_UPLINK_IP, NODE_UPLINK_IP6},
    procs::{http_get, Bg, PY},
};
use serde_json::Value;

const SUBNET6: &str = "fd00:17::/64";
const GW6: &str = "fd00:17::1";

fn dual() -> Lab {
    let lab = Lab::new_dual();
    lab.ebridge_ok(&["up", "--subnet", "172.17.0.0/16", "--subnet-v6", SUBNET6]);
    lab
}

/// An HTTP server answering its namespace's name and a UDP echo, both on
/// `[::]` taking IPv4 too (IPV6_V6ONLY off), as most servers do.
fn servers(netns: &str, http: u16, udp: u16) -> (Bg, Bg) {
    let web = format!(
        "import http.server, socket\nclass S(http.server.ThreadingHTTPServer):\n    address_family = socket.AF_INET6\n    \
         def server_bind(self):\n        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n        super().server_bind()\n\
         class H(http.server.BaseHTTPRequestHandler):\n    def do_GET(self):\n        b = b'{netns}'\n        self.send_response(200)\n        \
         self.send_header('Content-Length', str(len(b)))\n        self.end_headers()\n        self.wfile.write(b)\n    def log_message(self, *a):\n        pass\n\
         S(('::', {http}), H).serve_forever()\n"
    );
    let echo = format!(
        "import socket\ns=socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\ns.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n\
         s.bind(('::', {udp}))\nwhile True:\n    d, a = s.recvfrom(2000)\n    s.sendto(d, a)\n"
    );
    let out = (Bg::python(netns, &web), Bg::python(netns, &echo));
    std::thread::sleep(std::time::Duration::from_millis(700));
    out
}

/// `url`'s body from inside `netns`, or "ERR" when nothing answers.
fn get(netns: &str, url: &str) -> String {
    http_get(netns, url).unwrap_or_else(|| "ERR".to_string())
}

/// One UDP datagram over IPv6; the reply and the address it came from.
fn udp6(lab: &Lab, netns: &str, addr: &str, port: u16) -> String {
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\ns.settimeout(2)\ns.sendto(b'ping', ('{addr}', {port}))\n\
         try:\n    d, a = s.recvfrom(100)\n    print(d.decode(), a[0], a[1])\nexcept Exception as e:\n    print('ERR', type(e).__name__)\n"
    );
    lab.exec_ok(netns, &["timeout", "10", PY, "-c", &script])
        .trim()
        .to_string()
}

#[test]
fn a_port_published_without_host_ip_answers_on_both_families_from_everywhere() {
    let mut lab = dual().watch_for_leaks();
    let web = lab.endpoint("web", &["-p", "8080:80", "-p", "5353:53/udp"]);
    let cli = lab.endpoint("cli", &[]);
    let _srv = servers(&web, 80, 53);
    let url6 = format!("http://[{NODE_UPLINK_IP6}]:8080/");
    let before = lab.stats();

    assert_eq!(get(&lab.outside, &url6), web, "outside over IPv6");
    let url4 = format!("http://{NODE_UPLINK_IP}:8080/");
    assert_eq!(get(&lab.outside, &url4), web, "outside over IPv4");
    assert_eq!(get(&lab.node, "http://[::1]:8080/"), web, "node via [::1]");
    assert_eq!(get(&lab.node, &url6), web, "node via its address");
    assert_eq!(get(&cli, &url6), web, "another container (hairpin)");
    assert_eq!(get(&web, &url6), web, "the same container (hairpin)");
    let gw_url = format!("http://[{GW6}]:8080/");
    assert_eq!(get(&cli, &gw_url), web, "a container via the gateway");

    // Replies seem to come from where the client sent.
    assert_eq!(
        udp6(&lab, &lab.outside, NODE_UPLINK_IP6, 5353),
        format!("ping {NODE_UPLINK_IP6} 5353")
    );
    assert_eq!(udp6(&lab, &lab.node, "::1", 5353), "ping ::1 5353");
    assert_eq!(
        udp6(&lab, &cli, NODE_UPLINK_IP6, 5353),
        format!("ping {NODE_UPLINK_IP6} 5353")
    );

    let after = lab.stats();
    let delta = |k: &str| after[k].0 - before.get(k).map_or(0, |c| c.0);
    assert!(delta("dnat-in") >= 3, "{after:?}");
    assert!(delta("hairpin") >= 6, "{after:?}");

    // `publish ls` shows one binding per family, as `docker port` does.
    let rows = lab.json(&["publish", "ls"]);
    let specs: Vec<&str> = rows
        .as_array()
        .expect("rows")
        .iter()
        .filter(|r| r["endpoint"] == web.as_str())
        .filter_map(|r| r["spec"].as_str())
        .collect();
    for want in [
        "0.0.0.0:8080->80/tcp",
        "[::]:8080->80/tcp",
        "0.0.0.0:5353->53/udp",
        "[::]:5353->53/udp",
    ] {
        assert!(specs.contains(&want), "{want} missing from {specs:?}");
    }
    let v6_row = rows
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["spec"] == "[::]:8080->80/tcp")
        .cloned()
        .unwrap_or(Value::Null);
    assert!(
        v6_row["container_ip"]
            .as_str()
            .is_some_and(|a| a.starts_with("fd00:17::")),
        "{v6_row}"
    );

    // The published flow left as the node's address, never the container's.
    let (leaked, ours) = lab.uplink_capture6(SUBNET6);
    assert_eq!(
        leaked, 0,
        "{leaked} IPv6 packets left with a container address"
    );
    assert!(
        ours >= 4,
        "the capture saw only {ours} IPv6 packets from the node"
    );
}

#[test]
fn a_host_ip_limits_a_publish_to_its_family_or_address() {
    let lab = dual();
    // A second IPv6 address on the node's uplink, on-link for the outside.
    let other6 = "2001:db8:51::99";
    lab.exec_ok(
        &lab.node,
        &[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{other6}/64"),
            "dev",
            "uplink0",
            "nodad",
        ],
    );
    let web = lab.endpoint(
        "web",
        &[
            "-p",
            "[::]:8081:80",
            "-p",
            "0.0.0.0:8082:80",
            "-p",
            &format!("[{NODE_UPLINK_IP6}]:8083:80"),
        ],
    );
    let _srv = servers(&web, 80, 53);
    // `up` read the node's addresses before the second one came: the
    // agent follows them.
    let agent = Bg::ebridge_piped(&lab.node, &["agent", "--bridge", &lab.bridge]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let at = |addr: &str, port: u16| {
        let host = if addr.contains(':') {
            format!("[{addr}]")
        } else {
            addr.to_string()
        };
        get(&lab.outside, &format!("http://{host}:{port}/"))
    };
    assert_eq!(at(NODE_UPLINK_IP6, 8081), web, "[::] on the uplink address");
    assert_eq!(at(other6, 8081), web, "[::] on another node address");
    assert!(
        at(NODE_UPLINK_IP, 8081).starts_with("ERR"),
        "[::] must not answer IPv4"
    );
    assert_eq!(at(NODE_UPLINK_IP, 8082), web, "0.0.0.0 on IPv4");
    assert!(
        at(NODE_UPLINK_IP6, 8082).starts_with("ERR"),
        "0.0.0.0 must not answer IPv6"
    );
    assert_eq!(at(NODE_UPLINK_IP6, 8083), web, "bound to its address");
    assert!(
        at(other6, 8083).starts_with("ERR"),
        "bound to another address"
    );
    drop(agent);
}

#[test]
fn an_ipv6_publish_for_an_endpoint_without_ipv6_is_refused_and_changes_nothing() {
    let lab = Lab::up(&[]);
    let name = lab.name("web");
    let out = lab.ebridge(&["endpoint", "add", &name, "-p", "[::]:8080:80"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[::]:8080->80/tcp publishes on IPv6 only") && err.contains("--subnet-v6"),
        "{err}"
    );
    let eps = lab.json(&["endpoint", "ls"]);
    assert_eq!(eps.as_array().map(Vec::len), Some(0), "{eps}");
}

/// Sends one UDP datagram of `size` bytes with hop limit `hops` from
/// `netns` and prints the ICMPv6 error it met: "type code info from", or
/// "none".
fn udp6_error(lab: &Lab, netns: &str, addr: &str, port: u16, size: usize, hops: u32) -> String {
    let script = format!(
        "import socket, struct, time\ns=socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n\
         s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, {hops})\n\
         s.setsockopt(socket.IPPROTO_IPV6, 25, 1)  # IPV6_RECVERR\n\
         s.sendto(b'x' * {size}, ('{addr}', {port}))\ntime.sleep(0.5)\n\
         try:\n    _, anc, _, _ = s.recvmsg(2000, 1024, socket.MSG_ERRQUEUE)\n\
         except BlockingIOError:\n    anc = []\nexcept OSError:\n    anc = []\n\
         out = 'none'\nfor level, kind, data in anc:\n    errno, origin, ty, code, pad, info, _ = struct.unpack('=IBBBBII', data[:16])\n    \
         off = socket.inet_ntop(socket.AF_INET6, data[16 + 8:16 + 24])\n    out = '%d %d %d %s' % (ty, code, info, off)\nprint(out)\n"
    );
    let mut args = vec!["timeout", "10", PY, "-c"];
    args.push(&script);
    lab.exec_ok(netns, &args).trim().to_string()
}

#[test]
fn what_cannot_be_delivered_into_a_container_is_answered_as_an_ipv6_router_would() {
    // Containers' links carry 1400 bytes; the outside's 1500.
    let lab = Lab::new_dual();
    lab.ebridge_ok(&[
        "up",
        "--subnet",
        "172.17.0.0/16",
        "--subnet-v6",
        SUBNET6,
        "--mtu",
        "1400",
    ]);
    let web = lab.endpoint("web", &["-p", "5353:53/udp"]);
    let _srv = servers(&web, 80, 53);
    let before = lab.stats();
    // Hop limit 1 runs out at the node: Time Exceeded (3), code 0, from
    // the address the datagram was sent to.
    assert_eq!(
        udp6_error(&lab, &lab.outside, NODE_UPLINK_IP6, 5353, 10, 1),
        format!("3 0 0 {NODE_UPLINK_IP6}")
    );
    // Too big for the container's link: Packet Too Big (2) with its MTU.
    assert_eq!(
        udp6_error(&lab, &lab.outside, NODE_UPLINK_IP6, 5353, 1450, 64),
        format!("2 0 1400 {NODE_UPLINK_IP6}")
    );
    let pmtu = lab.exec_ok(&lab.outside, &["ip", "-6", "route", "get", NODE_UPLINK_IP6]);
    assert!(
        pmtu.contains("mtu 1400"),
        "the outside did not learn the MTU: {pmtu}"
    );
    // Fitting now, the same datagram is answered.
    assert_eq!(
        udp6(&lab, &lab.outside, NODE_UPLINK_IP6, 5353),
        format!("ping {NODE_UPLINK_IP6} 5353")
    );
    let after = lab.stats();
    let delta = |k: &str| after[k].0 - before.get(k).map_or(0, |c| c.0);
    assert_eq!(delta("icmp-time-exceeded"), 1, "{after:?}");
    assert_eq!(delta("icmp-frag-needed"), 1, "{after:?}");
}
