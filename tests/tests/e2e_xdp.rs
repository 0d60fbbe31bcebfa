//! `ebridge up --xdp generic|native`: replies of masqueraded flows are
//! un-NATed by the uplink's XDP program and redirected into the container,
//! a 100 MB download arrives intact, nothing leaks, and the XDP counter
//! accounts for (nearly) every reply packet. Native mode on a device
//! without driver XDP is refused cleanly; `down` removes the XDP link.
//!
//! The server sends complete checksums (`ethtool -K eth0 tx off` in its
//! namespace), as frames off a real wire carry them: a veth between local
//! stacks otherwise carries CHECKSUM_PARTIAL packets, which the XDP
//! program leaves to TC (`xdp-pass-partial-csum`; see docs/datapath.md).
use std::{
    process::{Child, Command},
    thread,
    time::Duration,
};

use ebridge_tests::lab::{run_ok, stderr, Lab, NODE_UPLINK_IP, SERVER_IP};

const PY: &str = "/usr/bin/python3";

fn spawn_in(netns: &str, args: &[&str]) -> Child {
    Command::new("ip")
        .args(["netns", "exec", netns])
        .args(args)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn")
}

fn stop(mut child: Child) {
    // SAFETY: our own child; `timeout` passes SIGTERM on.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

/// A lab with `up --xdp <mode>`, the server behind the outside router
/// sending complete checksums, and the uplink watched for leaks.
fn xdp_lab(mode: &str) -> Lab {
    let lab = Lab::up(&["--xdp", mode])
        .with_server(1500)
        .watch_for_leaks();
    lab.exec_ok(&lab.server(), &["ethtool", "-K", "eth0", "tx", "off"]);
    lab
}

fn tcp_reply_packets(lab: &Lab) -> u64 {
    lab.json(&["show", "nat"])
        .as_array()
        .expect("flows")
        .iter()
        .filter(|f| f["proto"] == "tcp" && f["sport"] != 0)
        .map(|f| f["reply_packets"].as_u64().unwrap_or(0))
        .sum()
}

/// 100 MB over HTTP from the server into container `c`; checks the sum.
fn download_100mb(lab: &Lab, c: &str) {
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
    let got = lab.exec_ok(c, &[PY, "-c", &client]);
    stop(server);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(got.trim(), format!("{expected} 104857600"));
}

/// The download's replies went through XDP: the XDP counter grew by about
/// the flow's reply packet count.
fn check_download_went_through_xdp(mode: &str) {
    let mut lab = xdp_lab(mode);
    let c = lab.endpoint("c", &[]);
    let xdp_before = lab.packets("xdp-revnat-in");
    let tc_before = lab.packets("revnat-in");

    download_100mb(&lab, &c);

    let replies = tcp_reply_packets(&lab);
    let xdp = lab.packets("xdp-revnat-in") - xdp_before;
    let tc = lab.packets("revnat-in") - tc_before;
    let stats = lab.stats();
    // 100 MB at most 1448 bytes a segment: at least 72,000 replies.
    assert!(replies > 70_000, "reply packets {replies}: {stats:?}");
    // Per-flow counters are plain (not atomic) increments that may lose
    // an update when two CPUs race; the per-CPU reason counters do not.
    assert!(
        xdp * 100 >= replies * 99 && xdp * 100 <= replies * 101,
        "{mode}: XDP un-NATed {xdp} of {replies} reply packets (TC {tc}): {stats:?}"
    );
    for reason in [
        "drop-redirect-failed",
        "drop-rewrite-failed",
        "drop-leak-guard",
    ] {
        assert_eq!(stats[reason].0, 0, "{reason}: {stats:?}");
    }

    // UDP and ping take the same path.
    let echo_py = format!(
        "import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('{SERVER_IP}', 7000))\n\
         while True:\n    d, a = s.recvfrom(65535)\n    s.sendto(d, a)\n"
    );
    let echo = spawn_in(&lab.server(), &["timeout", "20", PY, "-c", &echo_py]);
    thread::sleep(Duration::from_millis(400));
    let before = lab.packets("xdp-revnat-in");
    let roundtrip = format!(
        "import os, socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.settimeout(3)\n\
         for n in range(20):\n    d=os.urandom(100 + n * 60)\n    s.sendto(d, ('{SERVER_IP}', 7000))\n\
         \x20   r, a = s.recvfrom(65535)\n    assert r == d and a[0] == '{SERVER_IP}'\nprint('ok')\n"
    );
    assert_eq!(lab.exec_ok(&c, &[PY, "-c", &roundtrip]).trim(), "ok");
    stop(echo);
    lab.exec_ok(&c, &["ping", "-c", "3", "-i", "0.2", "-W", "2", SERVER_IP]);
    assert!(
        lab.packets("xdp-revnat-in") - before >= 23,
        "UDP and ping replies did not go through XDP: {:?}",
        lab.stats()
    );

    let flows = lab.json(&["show", "nat"]);
    for f in flows.as_array().expect("flows") {
        assert_eq!(f["nat_src"], NODE_UPLINK_IP);
    }
    lab.assert_no_leak();
}

#[test]
fn generic_download_100mb_goes_through_xdp() {
    check_download_went_through_xdp("generic");
}

#[test]
fn native_download_100mb_goes_through_xdp() {
    check_download_went_through_xdp("native");
}

#[test]
fn native_mode_turns_gro_on_in_the_container_and_down_detaches() {
    let lab = Lab::up(&["--xdp", "native"]);
    let c = lab.endpoint("c", &[]);
    let config = lab.json(&["show", "config"]);
    assert_eq!(config["xdp"], "native");
    let attached = run_ok("ip", &["-n", &lab.node, "link", "show", "uplink0"]);
    assert!(attached.contains("xdp"), "no XDP on the uplink: {attached}");
    assert!(run_ok(
        "ls",
        &[&format!("/sys/fs/bpf/ebridge/{}/links", lab.bridge)]
    )
    .contains("uplink-xdp"));
    // The veth NAPI that XDP_REDIRECT into the container's veth needs.
    let features = lab.exec_ok(&c, &["ethtool", "-k", "eth0"]);
    assert!(
        features.contains("generic-receive-offload: on"),
        "{features}"
    );

    // `up` again: the same mode is fine, another one is refused.
    lab.ebridge_ok(&["up", "--xdp", "native"]);
    let out = lab.ebridge(&["up", "--xdp", "generic"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("xdp native (asked generic)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).trim().lines().count(), 1);

    lab.ebridge_ok(&["down"]);
    let after = run_ok("ip", &["-n", &lab.node, "link", "show", "uplink0"]);
    assert!(!after.contains("xdp"), "XDP left on the uplink: {after}");
}

#[test]
fn without_xdp_the_container_is_left_alone_and_config_says_off() {
    let lab = Lab::up(&[]);
    let c = lab.endpoint("c", &[]);
    assert_eq!(lab.json(&["show", "config"])["xdp"], "off");
    let attached = run_ok("ip", &["-n", &lab.node, "link", "show", "uplink0"]);
    assert!(!attached.contains("xdp"), "{attached}");
    let features = lab.exec_ok(&c, &["ethtool", "-k", "eth0"]);
    assert!(
        features.contains("generic-receive-offload: off"),
        "{features}"
    );
    let out = lab.ebridge(&["up", "--xdp", "generic"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("xdp off (asked generic)"));
}

#[test]
fn native_mode_without_driver_support_is_refused_and_nothing_is_made() {
    let lab = Lab::new();
    // A bridge device has no native XDP; give it what an uplink needs.
    let n = &lab.node;
    run_ok("ip", &["-n", n, "link", "add", "upbr", "type", "bridge"]);
    run_ok(
        "ip",
        &["-n", n, "addr", "add", "192.0.2.1/24", "dev", "upbr"],
    );
    run_ok("ip", &["-n", n, "link", "set", "upbr", "up"]);
    let before = lab.snapshot();

    let out = lab.ebridge(&["up", "--uplink", "upbr", "--xdp", "native"]);

    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("upbr") && err.contains("native") && err.contains("--xdp generic"),
        "{err}"
    );
    assert_eq!(lab.snapshot(), before, "a refused up changed something");
    assert!(!std::path::Path::new(&format!("/sys/fs/bpf/ebridge/{}", lab.bridge)).exists());

    // Generic mode works on it.
    lab.ebridge_ok(&["up", "--uplink", "upbr", "--xdp", "generic"]);
    assert_eq!(lab.json(&["show", "config"])["xdp"], "generic");
}
