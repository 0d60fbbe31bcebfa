//! IPv6 between containers on one bridge, as `docker network create --ipv6
//! --subnet-v6` users expect it: addresses, default route, ping both ways,
//! 100 MB over TCP and UDP on the fast path, the node reached through the
//! gateway; a container that forges its source, a neighbor advertisement
//! or a router advertisement is stopped before anyone sees it; ICC off
//! holds for IPv6 too.
use ebridge_tests::{
    lab::{run_ok, Lab, NODE_UPLINK_IP6, OUTSIDE_IP6, SERVER_IP6},
    procs::{tcp_transfer_checked, PY},
};
use serde_json::Value;

const SUBNET6: &str = "fd00:17::/64";
const A6: &str = "fd00:17::2";
const B6: &str = "fd00:17::3";
const GW6: &str = "fd00:17::1";

fn lab6(extra: &[&str]) -> Lab {
    let mut args = vec!["--subnet-v6", SUBNET6];
    args.extend(extra);
    Lab::up(&args)
}

/// An ICMPv6 counter of `netns` from /proc/net/snmp6.
fn snmp6(lab: &Lab, netns: &str, name: &str) -> u64 {
    lab.exec_ok(netns, &["cat", "/proc/net/snmp6"])
        .lines()
        .find_map(|l| {
            let mut parts = l.split_whitespace();
            (parts.next() == Some(name)).then(|| parts.next().and_then(|v| v.parse().ok()))
        })
        .flatten()
        .unwrap_or_else(|| panic!("no {name} in {netns}'s /proc/net/snmp6"))
}

fn ping6(lab: &Lab, netns: &str, to: &str) -> bool {
    lab.exec(
        netns,
        &["ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", to],
    )
    .status
    .success()
}

#[test]
fn containers_get_addresses_and_reach_each_other_and_the_node() {
    let lab = lab6(&[]);
    let a = lab.endpoint("a", &[]);
    let b = lab.endpoint("b", &[]);
    // The addresses `endpoint add` chose, as the kernel has them.
    let addrs = lab.exec_ok(&a, &["ip", "-6", "-o", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains(&format!("{A6}/64")), "{addrs}");
    assert!(addrs.contains("fe80::42:acff:fe11:2/64"), "{addrs}");
    assert!(
        !addrs.contains("tentative"),
        "DAD holds the address: {addrs}"
    );
    let route = lab.exec_ok(&a, &["ip", "-6", "route", "show", "default"]);
    assert!(route.contains(&format!("via {GW6}")), "{route}");
    let list = lab.json(&["endpoint", "ls"]);
    let ipv6: Vec<&str> = list
        .as_array()
        .expect("endpoints")
        .iter()
        .map(|e| e["ipv6"].as_str().expect("ipv6 in endpoint ls --json"))
        .collect();
    assert_eq!(ipv6, vec![A6, B6]);
    let cfg = lab.json(&["show", "config"]);
    assert_eq!(cfg["subnet_v6"], SUBNET6);
    assert_eq!(cfg["gateway_v6"], GW6);

    let before = lab.packets("redirect-peer");
    assert!(ping6(&lab, &a, B6), "a cannot ping b over IPv6");
    assert!(ping6(&lab, &b, A6), "b cannot ping a over IPv6");
    assert!(ping6(&lab, &a, "fe80::42:acff:fe11:3%eth0"), "link-local");
    assert!(
        lab.packets("redirect-peer") - before >= 12,
        "IPv6 between containers did not take the fast path"
    );
    // The node through the gateway, both ways.
    assert!(ping6(&lab, &a, GW6), "a cannot reach the gateway");
    assert!(ping6(&lab, &lab.node, A6), "the node cannot reach a");
}

#[test]
fn tcp_100mb_and_udp_over_ipv6_on_the_fast_path() {
    let lab = lab6(&[]);
    let a = lab.endpoint("a", &[]);
    let b = lab.endpoint("b", &[]);
    assert!(ping6(&lab, &b, A6));
    let sent_before = lab.link_packets(&b, "eth0").1 + lab.link_packets(&a, "eth0").1;
    let before = lab.packets("redirect-peer");
    tcp_transfer_checked(&lab, &a, &b, A6, 100);
    let sent = lab.link_packets(&b, "eth0").1 + lab.link_packets(&a, "eth0").1 - sent_before;
    let redirected = lab.packets("redirect-peer") - before;
    assert!(sent > 1000, "only {sent} frames for 100 MB");
    assert!(
        redirected * 100 >= sent * 95,
        "{redirected} of {sent} frames took the fast path"
    );

    // UDP: a datagram from b echoed by a.
    let echo = format!(
        "import socket\ns=socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\ns.bind(('{A6}', 6000))\n\
         s.settimeout(5)\nd, p = s.recvfrom(100)\ns.sendto(d, p)\n"
    );
    let server = ebridge_tests::procs::Bg::python(&a, &echo);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let ask = format!(
        "import socket\ns=socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\ns.settimeout(3)\n\
         s.sendto(b'hello-udp6', ('{A6}', 6000))\nprint(s.recv(100).decode())\n"
    );
    assert_eq!(lab.exec_ok(&b, &[PY, "-c", &ask]).trim(), "hello-udp6");
    drop(server);
}

#[test]
fn a_requested_address_is_honoured_and_bad_ones_refused() {
    let lab = lab6(&[]);
    let out = lab.ebridge_ok(&["endpoint", "add", &lab.name("a"), "--ip6", "fd00:17::a"]);
    assert!(out.contains("ip6 fd00:17::a/64"), "{out}");
    let taken = lab.ebridge(&["endpoint", "add", &lab.name("b"), "--ip6", "fd00:17::a"]);
    assert_eq!(taken.status.code(), Some(2));
    let err = String::from_utf8_lossy(&taken.stderr);
    assert!(
        err.contains("fd00:17::a is already taken") && err.contains("is free"),
        "{err}"
    );
    let outside = lab.ebridge(&["endpoint", "add", &lab.name("c"), "--ip6", "fd00:99::5"]);
    assert_eq!(outside.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&outside.stderr).contains("not a host address of fd00:17::/64"));

    // A bridge without IPv6 refuses --ip6 and keeps containers IPv4-only.
    let v4 = Lab::up(&[]);
    let refused = v4.ebridge(&["endpoint", "add", &v4.name("a"), "--ip6", "fd00:17::a"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--subnet-v6"));
    let a = v4.endpoint("a", &[]);
    let off = v4.exec_ok(&a, &["cat", "/proc/sys/net/ipv6/conf/eth0/disable_ipv6"]);
    assert_eq!(off.trim(), "1");

    for (flag, value, says) in [
        ("--subnet-v6", "fe80::/64", "link-local"),
        ("--subnet-v6", "fd00::1/64", "did you mean fd00::/64"),
        ("--subnet-v6", "10.0.0.0/8", "not an IPv6 CIDR"),
    ] {
        let fresh = Lab::new();
        let out = fresh.ebridge(&["up", flag, value]);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{flag} {value}: {err}");
    }
}

/// Frames from `netns`'s eth0 with scapy (Debian's python3).
fn scapy(lab: &Lab, netns: &str, body: &str) {
    let script =
        format!("from scapy.all import *\nm=get_if_hwaddr('eth0')\nll=in6_getifaddr()\n{body}\n");
    lab.exec_ok(netns, &["/usr/bin/python3", "-c", &script]);
}

fn neighbor_mac(lab: &Lab, netns: &str, addr: &str) -> Option<String> {
    let out = lab.exec_ok(netns, &["ip", "-6", "neigh", "show", addr]);
    let mut words = out.split_whitespace();
    while let Some(w) = words.next() {
        if w == "lladdr" {
            return words.next().map(str::to_string);
        }
    }
    None
}

#[test]
fn forged_sources_advertisements_and_router_adverts_are_stopped() {
    let lab = lab6(&[]);
    let a = lab.endpoint("a", &[]);
    let b = lab.endpoint("b", &[]);
    let c = lab.endpoint("c", &[]);
    assert!(ping6(&lab, &c, B6));
    let b_mac = neighbor_mac(&lab, &c, B6).expect("c knows b");
    let udp_in = snmp6(&lab, &b, "Udp6InDatagrams") + snmp6(&lab, &b, "Udp6NoPorts");
    let na_in = snmp6(&lab, &c, "Icmp6InNeighborAdvertisements");
    let ra_in = snmp6(&lab, &c, "Icmp6InRouterAdvertisements");
    let drops = |reason: &str| lab.packets(reason);
    let (spoofed, nd, ra) = (
        drops("drop-spoofed-ip6"),
        drops("drop-spoofed-nd"),
        drops("drop-router-advert"),
    );

    // A forged source address towards b.
    scapy(
        &lab,
        &a,
        &format!(
            "sendp(Ether(src=m, dst='02:42:ac:11:00:03')/IPv6(src='fd00:17::99', dst='{B6}')/UDP(sport=1, dport=7777)/b'x', iface='eth0', count=3, verbose=False)"
        ),
    );
    // "b's address is at a's MAC", to everyone (neighbor cache poisoning).
    scapy(
        &lab,
        &a,
        &format!(
            "sendp(Ether(src=m, dst='33:33:00:00:00:01')/IPv6(src='fe80::42:acff:fe11:2', dst='ff02::1')/ICMPv6ND_NA(tgt='{B6}', R=0, S=0, O=1)/ICMPv6NDOptDstLLAddr(lladdr=m), iface='eth0', count=3, verbose=False)"
        ),
    );
    // A router advertisement offering a prefix and a default route.
    scapy(
        &lab,
        &a,
        "sendp(Ether(src=m, dst='33:33:00:00:00:01')/IPv6(src='fe80::42:acff:fe11:2', dst='ff02::1')/ICMPv6ND_RA(routerlifetime=1800)/ICMPv6NDOptPrefixInfo(prefix='2001:db8:bad::', prefixlen=64)/ICMPv6NDOptSrcLLAddr(lladdr=m), iface='eth0', count=2, verbose=False)",
    );

    assert_eq!(drops("drop-spoofed-ip6") - spoofed, 3);
    assert_eq!(drops("drop-spoofed-nd") - nd, 3);
    assert_eq!(drops("drop-router-advert") - ra, 2);
    // Nobody saw them.
    assert_eq!(
        snmp6(&lab, &b, "Udp6InDatagrams") + snmp6(&lab, &b, "Udp6NoPorts"),
        udp_in
    );
    assert_eq!(snmp6(&lab, &c, "Icmp6InNeighborAdvertisements"), na_in);
    assert_eq!(snmp6(&lab, &c, "Icmp6InRouterAdvertisements"), ra_in);
    assert_eq!(neighbor_mac(&lab, &c, B6).as_deref(), Some(b_mac.as_str()));
    let node_routes = run_ok("ip", &["-n", &lab.node, "-6", "route"]);
    assert!(!node_routes.contains("2001:db8:bad"), "{node_routes}");
    // And the honest traffic still flows.
    assert!(ping6(&lab, &c, B6));
}

#[test]
fn icc_off_keeps_containers_apart_over_ipv6() {
    let lab = lab6(&["--no-icc"]);
    let a = lab.endpoint("a", &[]);
    let _b = lab.endpoint("b", &[]);
    let before = lab.packets("drop-icc-disabled");
    assert!(!ping6(&lab, &a, B6), "ICC off, yet a reached b over IPv6");
    assert!(
        !ping6(&lab, &a, "fe80::42:acff:fe11:3%eth0"),
        "ICC off, yet a reached b's link-local address"
    );
    assert!(lab.packets("drop-icc-disabled") > before);
    assert!(ping6(&lab, &a, GW6), "ICC off must not cut the gateway");
    let v: Value = lab.json(&["show", "config"]);
    assert_eq!(v["icc"], false);
}

/// A dual-stack lab with the bridge up on both families (`extra`: more
/// `up` flags).
fn dual(extra: &[&str]) -> Lab {
    let lab = Lab::new_dual();
    let mut args = vec!["up", "--subnet", "172.17.0.0/16", "--subnet-v6", SUBNET6];
    args.extend(extra);
    lab.ebridge_ok(&args);
    lab
}

#[test]
fn containers_reach_the_outside_masqueraded_over_ipv6() {
    let mut lab = dual(&[]).watch_for_leaks();
    let a = lab.endpoint("a", &[]);
    let b = lab.endpoint("b", &[]);
    let cfg = lab.json(&["show", "config"]);
    assert_eq!(cfg["uplink_ipv6"], NODE_UPLINK_IP6);
    assert_eq!(cfg["ipv6_masquerade"], true);
    let snat = lab.packets("snat-out");
    let revnat = lab.packets("revnat-in");
    assert!(ping6(&lab, &a, OUTSIDE_IP6), "a cannot ping the outside");
    assert!(ping6(&lab, &b, OUTSIDE_IP6), "b cannot ping the outside");
    // Masqueraded, containers are not reachable from outside by their own
    // addresses (only through published ports), as with Docker.
    let not_published = lab.packets("drop-not-published");
    run_ok(
        "ip",
        &[
            "-n",
            &lab.outside,
            "-6",
            "route",
            "add",
            SUBNET6,
            "via",
            NODE_UPLINK_IP6,
        ],
    );
    assert!(
        !ping6(&lab, &lab.outside.clone(), A6),
        "the outside reached a"
    );
    assert!(lab.packets("drop-not-published") - not_published >= 1);
    assert!(lab.packets("snat-out") - snat >= 4);
    assert!(lab.packets("revnat-in") - revnat >= 4);

    // 100 MB to a server outside, checksummed.
    tcp_transfer_checked(&lab, &lab.outside.clone(), &a, OUTSIDE_IP6, 100);

    // UDP from both containers with the same source port: two flows, two
    // NAT ports, both answered.
    let echo = format!(
        "import socket\ns=socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\ns.bind(('{OUTSIDE_IP6}', 6000))\n\
         s.settimeout(10)\nfor _ in range(2):\n    d, p = s.recvfrom(100)\n    s.sendto(d + str(p[0]).encode(), p)\n"
    );
    let server = ebridge_tests::procs::Bg::python(&lab.outside, &echo);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let ask = |ns: &str, tag: &str| {
        let script = format!(
            "import socket\ns=socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\ns.bind(('::', 41000))\n\
             s.settimeout(3)\ns.sendto(b'{tag}:', ('{OUTSIDE_IP6}', 6000))\nprint(s.recv(200).decode())\n"
        );
        lab.exec_ok(ns, &[PY, "-c", &script]).trim().to_string()
    };
    assert_eq!(ask(&a, "a"), format!("a:{NODE_UPLINK_IP6}"));
    assert_eq!(ask(&b, "b"), format!("b:{NODE_UPLINK_IP6}"));
    drop(server);
    let flows: Vec<Value> = lab
        .json(&["show", "nat"])
        .as_array()
        .expect("flows")
        .iter()
        .filter(|f| f["proto"] == "udp" && f["dport"] == 6000)
        .cloned()
        .collect();
    assert_eq!(flows.len(), 2, "{flows:?}");
    assert_ne!(flows[0]["nat_sport"], flows[1]["nat_sport"], "{flows:?}");

    let (leaked, ours) = lab.uplink_capture6(SUBNET6);
    assert_eq!(
        leaked, 0,
        "{leaked} IPv6 packets left with a container address"
    );
    assert!(
        ours > 100,
        "the capture saw only {ours} masqueraded IPv6 packets"
    );
}

#[test]
fn with_ipv6_masquerade_off_containers_are_routed_with_their_own_addresses() {
    let mut lab = dual(&["--ipv6-masquerade", "off"]).watch_for_leaks();
    let a = lab.endpoint("a", &[]);
    // The outside routes the containers' subnet back to the node, as the
    // network behind a routed-mode Docker host must.
    run_ok(
        "ip",
        &[
            "-n",
            &lab.outside,
            "-6",
            "route",
            "add",
            SUBNET6,
            "via",
            NODE_UPLINK_IP6,
        ],
    );
    assert!(
        ping6(&lab, &a, OUTSIDE_IP6),
        "routed IPv6 does not reach the outside"
    );
    // And the other way: the outside reaches the container by its own
    // address, delivered by the uplink program.
    let routed_in = lab.packets("routed-in");
    assert!(
        ping6(&lab, &lab.outside.clone(), A6),
        "the outside cannot ping the container's own address"
    );
    assert!(lab.packets("routed-in") - routed_in >= 2);
    let (own, masqueraded) = lab.uplink_capture6(SUBNET6);
    assert!(
        own >= 2,
        "the outside saw {own} packets from the container's address"
    );
    assert_eq!(
        masqueraded, 0,
        "routed mode masqueraded {masqueraded} packets"
    );
}

#[test]
fn an_upload_across_a_1280_byte_link_learns_its_path_mtu_through_the_nat() {
    // The outside router's link to the server carries 1280 bytes; the
    // container sends 1500. Only a translated Packet Too Big tells it.
    let lab = dual(&[]).with_server(1280);
    let a = lab.endpoint("a", &[]);
    let before = lab.packets("revnat-icmp-error");
    tcp_transfer_checked(&lab, &lab.server(), &a, SERVER_IP6, 20);
    assert!(
        lab.packets("revnat-icmp-error") > before,
        "no Packet Too Big was translated: the transfer cannot have needed one"
    );
    let pmtu = lab.exec_ok(&a, &["ip", "-6", "route", "get", SERVER_IP6]);
    assert!(
        pmtu.contains("mtu 1280"),
        "the container never learnt the path MTU: {pmtu}"
    );
}

#[test]
fn traceroute_over_ipv6_through_the_nat_shows_every_hop() {
    let lab = dual(&[]).with_server(1500);
    let a = lab.endpoint("a", &[]);
    // Neighbours resolved along the path first: a probe that waits for
    // neighbor discovery at the router can miss traceroute's timeout.
    assert!(ping6(&lab, &a, SERVER_IP6), "the server is unreachable");
    // UDP probes (traceroute's default), numeric, one per hop.
    let out = lab.exec_ok(
        &a,
        &[
            "traceroute",
            "-6",
            "-n",
            "-q",
            "1",
            "-w",
            "2",
            "-m",
            "5",
            SERVER_IP6,
        ],
    );
    let hops: Vec<&str> = out
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(
        hops,
        vec![GW6, OUTSIDE_IP6, SERVER_IP6],
        "traceroute over IPv6:\n{out}"
    );
}

#[test]
fn fragmented_udp_and_ping_cross_the_nat_both_ways() {
    let mut lab = dual(&[]).watch_for_leaks();
    let a = lab.endpoint("a", &[]);
    // An echo server that answers with the size it got, so each reply is
    // as big (and as fragmented) as the request.
    let echo = format!(
        "import socket\ns=socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\ns.bind(('{OUTSIDE_IP6}', 7000))\n\
         s.settimeout(10)\nfor _ in range(3):\n    d, p = s.recvfrom(10000)\n    s.sendto(d, p)\n"
    );
    let server = ebridge_tests::procs::Bg::python(&lab.outside, &echo);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let before = lab.stats();
    let frag_out = snmp6(&lab, &a, "Ip6FragCreates");
    let script = format!(
        "import hashlib, os, socket\ns=socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\ns.settimeout(3)\n\
         for _ in range(3):\n    m = os.urandom(4000)\n    s.sendto(m, ('{OUTSIDE_IP6}', 7000))\n    d = s.recv(10000)\n    \
         print(len(d), d == m)\n"
    );
    let out = lab.exec_ok(&a, &[PY, "-c", &script]);
    drop(server);
    assert_eq!(out.trim(), "4000 True\n4000 True\n4000 True", "{out}");
    // The container fragmented (4000 bytes at MTU 1500: three fragments),
    // and the outside answered in fragments, reassembled in the container.
    assert!(snmp6(&lab, &a, "Ip6FragCreates") - frag_out >= 9);
    assert!(snmp6(&lab, &a, "Ip6ReasmOKs") >= 3);
    let after = lab.stats();
    assert!(after["snat-out"].0 - before["snat-out"].0 >= 9, "{after:?}");
    assert!(
        after["revnat-in"].0 - before["revnat-in"].0 >= 9,
        "{after:?}"
    );
    assert_eq!(after["drop-frag-no-first"].0, 0, "{after:?}");

    // A ping too big for one packet, both ways through the NAT by its id.
    let ping = lab.exec(
        &a,
        &[
            "ping",
            "-6",
            "-c",
            "2",
            "-i",
            "0.2",
            "-W",
            "2",
            "-s",
            "3000",
            OUTSIDE_IP6,
        ],
    );
    assert!(
        ping.status.success(),
        "{}",
        String::from_utf8_lossy(&ping.stdout)
    );
    let (leaked, ours) = lab.uplink_capture6(SUBNET6);
    assert_eq!(
        leaked, 0,
        "{leaked} IPv6 packets left with a container address"
    );
    // Three datagrams and two pings, each in three fragments.
    assert!(
        ours >= 15,
        "the capture saw only {ours} masqueraded packets"
    );
}

#[test]
fn the_node_and_a_container_share_a_source_port_over_ipv6_in_both_orders() {
    let lab = dual(&[]);
    let c = lab.endpoint("c", &[]);
    let echo = format!(
        "import socket\ns=socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\ns.bind(('{OUTSIDE_IP6}', 5353))\n\
         while True:\n    d, a = s.recvfrom(2048)\n    s.sendto(d, a)\n"
    );
    let _echo = ebridge_tests::procs::Bg::python(&lab.outside, &echo);
    std::thread::sleep(std::time::Duration::from_millis(300));
    use ebridge_tests::procs::{assert_answered as done, udp_requests};
    let udp6_client = |netns: &str, sport, port, tag: &str, n| {
        udp_requests(netns, sport, OUTSIDE_IP6, port, tag, n)
    };

    // Container first: its flow keeps port 40000; the node's is moved.
    let ctr = udp6_client(&c, 40000, 5353, "ctr", 40);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let node = udp6_client(&lab.node, 40000, 5353, "node", 30);
    done(node, 30, "node after container");
    done(ctr, 40, "container before node");
    assert!(lab.packets("node-port-moved") > 0, "{:?}", lab.stats());

    // Node first: its tuple is held; the container gets another port.
    let node = udp6_client(&lab.node, 40001, 5353, "node", 40);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let ctr = udp6_client(&c, 40001, 5353, "ctr", 30);
    done(ctr, 30, "container after node");
    done(node, 40, "node before container");

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

#[test]
fn with_xdp_on_the_uplink_ipv6_goes_on_to_tc_and_is_masqueraded() {
    let lab = dual(&["--xdp", "generic"]);
    let a = lab.endpoint("a", &[]);
    let to_tc = lab.packets("xdp-pass-to-tc");
    assert!(ping6(&lab, &a, OUTSIDE_IP6), "no ping through the NAT");
    tcp_transfer_checked(&lab, &lab.outside.clone(), &a, OUTSIDE_IP6, 20);
    // XDP un-NATs IPv4 only: IPv6 replies were handed to TC, which did it.
    assert!(lab.packets("xdp-pass-to-tc") - to_tc > 100);
    assert!(lab.packets("revnat-in") > 100);
}

#[test]
fn up_holds_the_nodes_ipv6_connections_that_already_exist() {
    let lab = Lab::new_dual();
    let server = format!(
        "import socket, time\ns=socket.socket(socket.AF_INET6)\ns.bind(('{OUTSIDE_IP6}', 7001))\ns.listen(1)\n\
         c, _ = s.accept()\ntime.sleep(20)\n"
    );
    let _server = ebridge_tests::procs::Bg::python(&lab.outside, &server);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let client = format!(
        "import socket, time\nc=socket.create_connection(('{OUTSIDE_IP6}', 7001))\nprint(c.getsockname()[1], flush=True)\ntime.sleep(20)\n"
    );
    let _client = ebridge_tests::procs::Bg::python(&lab.node, &client);
    std::thread::sleep(std::time::Duration::from_millis(500));
    lab.ebridge_ok(&["up", "--subnet", "172.17.0.0/16", "--subnet-v6", SUBNET6]);
    let flows = lab.json(&["show", "nat"]);
    let held = flows
        .as_array()
        .expect("flows")
        .iter()
        .find(|f| f["owner"] == "node" && f["proto"] == "tcp" && f["dport"] == 7001)
        .cloned();
    let held = held.unwrap_or_else(|| panic!("the node's connection is not held: {flows}"));
    assert_eq!(held["state"], "ESTABLISHED", "{held}");
    assert_eq!(held["nat_src"], NODE_UPLINK_IP6, "{held}");
}
