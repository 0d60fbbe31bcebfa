//! `up` is idempotent, `down` removes everything it made and nothing else,
//! and two bridges in two namespaces never see each other.
use ebridge_tests::lab::{run, stderr, stdout, Lab};

fn pins_exist(lab: &Lab) -> bool {
    std::path::Path::new(&format!("/sys/fs/bpf/ebridge/{}", lab.bridge)).exists()
}

/// Pings `to` from `from` and checks the pings took the fast path: with no
/// program attached they would still get through the bridge, so only the
/// redirect counter tells.
fn assert_fast_path(lab: &Lab, from: &str, to: &str) {
    let before = lab.packets("redirect-peer");
    lab.exec_ok(from, &["ping", "-c", "3", "-i", "0.2", "-W", "2", to]);
    let after = lab.packets("redirect-peer");
    assert!(
        after >= before + 6,
        "3 pings and their replies took the fast path only {} times",
        after - before
    );
}

#[test]
fn up_twice_changes_nothing() {
    let lab = Lab::up(&[]);
    let a = lab.endpoint("a", &[]);
    let _b = lab.endpoint("b", &[]);
    let before = lab.snapshot();
    let out = lab.ebridge(&["up", "--subnet", "172.17.0.0/16"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("already up"), "{}", stdout(&out));
    assert_eq!(lab.snapshot(), before);
    // The datapath kept working, on the fast path.
    lab.exec_ok(&a, &["ping", "-c", "1", "-W", "2", "172.17.0.1"]);
    assert_fast_path(&lab, &a, "172.17.0.3");
}

#[test]
fn up_with_other_settings_says_what_differs() {
    let lab = Lab::up(&[]);
    let before = lab.snapshot();
    let out = lab.ebridge(&["up", "--subnet", "10.77.0.0/24", "--mtu", "1400"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("subnet 172.17.0.0/16 (asked 10.77.0.0/24)"),
        "{err}"
    );
    assert!(err.contains("mtu 1500 (asked 1400)"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(lab.snapshot(), before);
}

#[test]
fn down_leaves_no_trace_and_up_again_works() {
    let lab = Lab::new();
    let pristine = lab.snapshot();
    lab.ebridge_ok(&["up", "--subnet", "172.17.0.0/16"]);
    let a = lab.endpoint("a", &[]);
    let b = lab.endpoint("b", &[]);
    lab.exec_ok(&a, &["ping", "-c", "1", "-W", "2", "172.17.0.3"]);
    assert!(pins_exist(&lab));
    // The TCX links behind the pins, by kernel id.
    let link_ids: Vec<String> =
        std::fs::read_dir(format!("/sys/fs/bpf/ebridge/{}/links", lab.bridge))
            .expect("links dir")
            .map(|e| {
                let path = e.expect("entry").path();
                let shown = stdout(&run(
                    "bpftool",
                    &["link", "show", "pinned", path.to_str().expect("utf-8")],
                ));
                let id = shown.split(':').next().expect("link id").trim().to_string();
                assert!(id.parse::<u32>().is_ok(), "no link id in {shown:?}");
                id
            })
            .collect();
    // Two endpoints, the uplink's ingress and egress programs, and the six
    // cgroup socket programs (IPv4 and IPv6) for host access to published
    // ports.
    assert_eq!(link_ids.len(), 10, "{link_ids:?}");

    let out = lab.ebridge_ok(&["down"]);
    assert!(out.contains("2 endpoint(s) removed"), "{out}");
    assert_eq!(lab.snapshot(), pristine, "down left something behind");
    assert!(!pins_exist(&lab));
    assert!(!std::path::Path::new(&format!("/run/netns/{a}")).exists());
    assert!(!std::path::Path::new(&format!("/run/netns/{b}")).exists());
    assert!(!std::path::Path::new(&format!("/run/ebridge/{}", lab.bridge)).exists());
    // The links are gone from the kernel, not just unpinned.
    for id in &link_ids {
        let shown = run("bpftool", &["link", "show", "id", id]);
        assert!(
            !shown.status.success(),
            "link {id} survived down: {}",
            stdout(&shown)
        );
    }

    // down again is harmless; up again starts from scratch.
    assert!(lab.ebridge(&["down"]).status.success());
    lab.ebridge_ok(&["up", "--subnet", "172.17.0.0/16"]);
    let a = lab.endpoint("a", &[]);
    let _b = lab.endpoint("b", &[]);
    assert_fast_path(&lab, &a, "172.17.0.3");
}

#[test]
fn down_keeps_what_it_did_not_make() {
    let lab = Lab::up(&[]);
    // A netns the user made and handed to ebridge survives `down`.
    let own = lab.name("own");
    ebridge_tests::lab::run_ok("ip", &["netns", "add", &own]);
    let path = format!("/run/netns/{own}");
    lab.endpoint("x", &["--netns", &path]);
    lab.ebridge_ok(&["down"]);
    assert!(std::path::Path::new(&path).exists());
    // Its interface went with the veth pair.
    let links = lab.exec_ok(&own, &["ip", "-o", "link", "show"]);
    assert!(!links.contains("eth0"), "{links}");
    // The uplink and its address are untouched.
    let addrs = lab.exec_ok(&lab.node, &["ip", "-o", "addr", "show", "uplink0"]);
    assert!(addrs.contains("198.51.100.1/24"), "{addrs}");
}

#[test]
fn endpoint_rm_removes_only_that_endpoint() {
    let lab = Lab::up(&[]);
    let a = lab.endpoint("a", &[]);
    let b = lab.endpoint("b", &[]);
    lab.ebridge_ok(&["endpoint", "rm", &b]);
    assert!(!std::path::Path::new(&format!("/run/netns/{b}")).exists());
    let list = lab.json(&["endpoint", "ls"]);
    let names: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names, vec![a.as_str()]);
    // b's address is free again and is handed out next.
    let c = lab.endpoint("c", &[]);
    let list = lab.json(&["endpoint", "ls"]);
    let c_ip = list
        .as_array()
        .expect("list")
        .iter()
        .find(|e| e["name"] == c.as_str())
        .expect("c")["ipv4"]
        .clone();
    assert_eq!(c_ip, "172.17.0.3");
}

#[test]
fn two_bridges_in_two_namespaces_are_separate() {
    let one = Lab::up(&[]);
    let two = Lab::up(&[]);
    let a1 = one.endpoint("a", &[]);
    let a2 = two.endpoint("a", &[]);
    one.endpoint("b", &[]);
    two.endpoint("b", &[]);
    // Same subnet and addresses in both: each is a world of its own, each
    // on its own fast path.
    one.exec_ok(&a1, &["ping", "-c", "1", "-W", "2", "172.17.0.1"]);
    two.exec_ok(&a2, &["ping", "-c", "1", "-W", "2", "172.17.0.1"]);
    assert_fast_path(&one, &a1, "172.17.0.3");
    assert_fast_path(&two, &a2, "172.17.0.3");
    let list = one.json(&["endpoint", "ls"]);
    assert_eq!(list.as_array().expect("list").len(), 2);
    // Naming the other node's bridge from this node is refused.
    let out = one.ebridge(&["endpoint", "ls", "--bridge", &two.bridge]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("belongs to another network namespace"),
        "{}",
        stderr(&out)
    );
    let out = one.ebridge(&["up", "--bridge", &two.bridge, "--subnet", "10.1.0.0/24"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("another network namespace"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn pinned_maps_dump_with_field_names() {
    let lab = Lab::up(&[]);
    let a = lab.endpoint("a", &[]);
    lab.exec_ok(&a, &["ping", "-c", "1", "-W", "2", "172.17.0.1"]);
    let dir = format!("/sys/fs/bpf/ebridge/{}", lab.bridge);
    // BTF lets bpftool print typed keys and values, not hex.
    for (map, fields) in [
        (
            "endpoints",
            &["\"ipv4\"", "\"mac\"", "\"host_ifindex\""][..],
        ),
        ("fdb", &["\"octets\"", "\"last_seen_ns\""][..]),
        (
            "config",
            &["\"gateway_ipv4\"", "\"fdb_ageing_ns\"", "\"uplink_ipv4\""][..],
        ),
        ("stats", &["\"packets\"", "\"bytes\""][..]),
    ] {
        let out = run(
            "bpftool",
            &["map", "dump", "pinned", &format!("{dir}/{map}")],
        );
        let text = stdout(&out);
        assert!(out.status.success(), "{map}: {}", stderr(&out));
        for f in fields {
            assert!(text.contains(f), "{map} dump lacks {f}: {text}");
        }
    }
}

#[test]
fn down_removes_a_bridge_whose_pins_vanished_with_a_private_bpffs() {
    let lab = Lab::new();
    let pristine = lab.snapshot();
    // `up` inside a private mount namespace with a bpffs of its own: the
    // pins (and so the programs' links) go away with that namespace.
    let bin = ebridge_tests::lab::ebridge_bin();
    let script = format!(
        "mount -t bpf bpf /sys/fs/bpf && nsenter --net=/run/netns/{} {} up --bridge {} --subnet 172.17.0.0/16",
        lab.node,
        bin.display(),
        lab.bridge
    );
    let out = run(
        "unshare",
        &["-m", "--propagation", "private", "sh", "-c", &script],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(!pins_exist(&lab), "the pins were on the private bpffs");

    // up names the leftover and the way out, and changes nothing...
    let before = lab.snapshot();
    let out = lab.ebridge(&["up", "--subnet", "172.17.0.0/16"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("ebridge down"), "{}", stderr(&out));
    assert_eq!(lab.snapshot(), before);
    // ...down removes it...
    let out = lab.ebridge_ok(&["down"]);
    assert!(out.contains("pins were already gone"), "{out}");
    assert_eq!(lab.snapshot(), pristine, "down left something behind");
    // ...and up works again.
    lab.ebridge_ok(&["up", "--subnet", "172.17.0.0/16"]);
    let a = lab.endpoint("a", &[]);
    lab.endpoint("b", &[]);
    assert_fast_path(&lab, &a, "172.17.0.3");
}
