//! Every kind of bad input: one clear line naming the value and what would
//! be accepted, exit status 2, and nothing changed.
use std::process::Output;

use ebridge_tests::lab::{ebridge_bin, run, run_ok, stderr, stdout, Lab};

/// The lab's state plus, when the bridge is up, its endpoints and FDB.
fn state(lab: &Lab) -> String {
    let mut s = lab.snapshot();
    if std::path::Path::new(&format!("/sys/fs/bpf/ebridge/{}", lab.bridge)).exists() {
        s += &lab.ebridge_ok(&["endpoint", "ls", "--json"]);
        let fdb = lab.json(&["show", "fdb"]);
        for e in fdb.as_array().expect("fdb list") {
            s += &format!("{} {} {}\n", e["mac"], e["port"], e["local"]);
        }
    }
    s
}

/// Runs `args`, expects exit 2 with one stderr line containing every
/// `needles` entry, and no change to the lab.
fn refused(lab: &Lab, args: &[&str], needles: &[&str]) {
    let before = state(lab);
    let out: Output = lab.ebridge(args);
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "ebridge {args:?} exited {:?}: {err}",
        out.status
    );
    assert_eq!(
        err.trim().lines().count(),
        1,
        "ebridge {args:?} printed more than one line: {err}"
    );
    for needle in needles {
        assert!(
            err.contains(needle),
            "ebridge {args:?}: {err:?} does not mention {needle:?}"
        );
    }
    assert_eq!(state(lab), before, "ebridge {args:?} changed something");
}

#[test]
fn bad_up_settings() {
    let lab = Lab::new();
    refused(
        &lab,
        &["up", "--subnet", "banana"],
        &["'banana'", "IPv4 CIDR", "172.17.0.0/16"],
    );
    refused(
        &lab,
        &["up", "--subnet", "10.0.0.0/33"],
        &["10.0.0.0/33", "IPv4 CIDR"],
    );
    refused(
        &lab,
        &["up", "--subnet", "10.0.0.7/24"],
        &["host bits", "10.0.0.0/24"],
    );
    refused(
        &lab,
        &["up", "--subnet", "10.0.0.0/24", "--gateway", "1.2.3"],
        &["'1.2.3'", "IPv4 address"],
    );
    refused(
        &lab,
        &["up", "--subnet", "10.0.0.0/24", "--gateway", "10.0.1.1"],
        &["10.0.1.1", "10.0.0.1 to 10.0.0.254"],
    );
    refused(&lab, &["up", "--mtu", "20"], &["MTU 20", "68 to 65535"]);
    refused(&lab, &["up", "--fdb-ageing", "0"], &["0s", "1 to 1000000"]);
    refused(
        &lab,
        &["up", "--bridge", "sixteen-chars-xx"],
        &["'sixteen-chars-xx'", "16 bytes", "1 to 15 bytes"],
    );
    // Eight characters, sixteen bytes: the kernel counts bytes.
    refused(
        &lab,
        &["up", "--bridge", "éééééééé"],
        &["'éééééééé'", "16 bytes", "1 to 15 bytes"],
    );
    refused(&lab, &["up", "--bridge", "brü0"], &["'brü0'", "not ASCII"]);
    refused(
        &lab,
        &["up", "--bridge", "br%d"],
        &["'br%d'", "not a valid interface name"],
    );
}

#[test]
fn bad_agent_settings() {
    let lab = Lab::up(&[]);
    refused(
        &lab,
        &["agent", "--gc-interval", "0"],
        &["'0'", "--gc-interval", "1..=86400"],
    );
    refused(
        &lab,
        &["agent", "--udp-timeout", "0"],
        &["'0'", "--udp-timeout"],
    );
}

#[test]
fn missing_uplink_and_overlaps() {
    let lab = Lab::new();
    refused(
        &lab,
        &["up", "--uplink", "nope0"],
        &["nope0", "does not exist", "--uplink"],
    );
    // The uplink's own subnet.
    refused(
        &lab,
        &["up", "--subnet", "198.51.100.0/25"],
        &[
            "198.51.100.0/25",
            "overlaps address 198.51.100.1/24 on uplink0",
        ],
    );
    // A routed subnet.
    run_ok(
        "ip",
        &[
            "-n",
            &lab.node,
            "route",
            "add",
            "10.200.0.0/16",
            "via",
            "198.51.100.2",
        ],
    );
    refused(
        &lab,
        &["up", "--subnet", "10.200.1.0/24"],
        &["10.200.1.0/24", "overlaps the route to 10.200.0.0/16"],
    );
    // No default route to pick the uplink from.
    run_ok("ip", &["-n", &lab.node, "route", "del", "default"]);
    refused(&lab, &["up"], &["no default route", "--uplink IFACE"]);
}

#[test]
fn a_link_with_the_bridge_name_exists() {
    let lab = Lab::new();
    run_ok(
        "ip",
        &[
            "-n",
            &lab.node,
            "link",
            "add",
            &lab.bridge,
            "type",
            "bridge",
        ],
    );
    refused(
        &lab,
        &["up"],
        &[&lab.bridge, "already exists", "not made by ebridge"],
    );
}

#[test]
fn bad_endpoint_requests() {
    let lab = Lab::up(&[]);
    let a = lab.endpoint("a", &[]);
    let b = lab.name("b");
    refused(&lab, &["endpoint", "add", &a], &[&a, "already exists"]);
    refused(
        &lab,
        &["endpoint", "add", &b, "--ip", "300.1.1.1"],
        &["'300.1.1.1'", "IPv4 address"],
    );
    refused(
        &lab,
        &["endpoint", "add", &b, "--ip", "10.9.9.9"],
        &["10.9.9.9", "172.17.0.0/16", "172.17.0.1 to 172.17.255.254"],
    );
    refused(
        &lab,
        &["endpoint", "add", &b, "--ip", "172.17.0.2"],
        &["172.17.0.2", "already taken", "172.17.0.3 is free"],
    );
    refused(
        &lab,
        &["endpoint", "add", &b, "--ip", "172.17.0.1"],
        &["172.17.0.1", "gateway"],
    );
    refused(
        &lab,
        &["endpoint", "add", &b, "--mac", "zz:42"],
        &["'zz:42'", "six hex octets"],
    );
    refused(
        &lab,
        &["endpoint", "add", &b, "--mac", "02:42:ac:11:00:02"],
        &["02:42:ac:11:00:02", "already in use"],
    );
    refused(
        &lab,
        &[
            "endpoint",
            "add",
            &b,
            "--netns",
            "/run/netns/does-not-exist",
        ],
        &["/run/netns/does-not-exist", "does not exist"],
    );
    refused(
        &lab,
        &["endpoint", "add", &b, "--ifname", "a-very-long-ifname"],
        &["'a-very-long-ifname'", "18 bytes", "1 to 15"],
    );
    refused(
        &lab,
        &["endpoint", "add", &b, "--ifname", "eth:0"],
        &["'eth:0'", "not a valid interface name"],
    );
    refused(
        &lab,
        &["endpoint", "add", &b, "--ifname", "ethé"],
        &["'ethé'", "not ASCII"],
    );
    // Every netns has a loopback already.
    refused(
        &lab,
        &["endpoint", "add", &b, "--ifname", "lo"],
        &["--ifname lo", "already has an interface"],
    );
    refused(
        &lab,
        &["endpoint", "add", "bad name"],
        &["'bad name'", "letters, digits"],
    );
    refused(
        &lab,
        &["endpoint", "rm", &b],
        &[&b, "no endpoint named", &a],
    );
    // A netns of that name already exists: ebridge will not adopt it silently.
    run_ok("ip", &["netns", "add", &b]);
    refused(
        &lab,
        &["endpoint", "add", &b],
        &[&format!("/run/netns/{b}"), "already exists", "--netns"],
    );
}

#[test]
fn netns_that_cannot_hold_an_endpoint() {
    let lab = Lab::up(&[]);
    let a = lab.endpoint("a", &[]);
    let b = lab.name("b");
    let file = std::env::temp_dir().join(format!("{}-not-a-netns", lab.id));
    std::fs::write(&file, "").expect("write a plain file");
    let file = file.to_str().expect("utf-8").to_string();
    let result = std::panic::catch_unwind(|| {
        refused(
            &lab,
            &["endpoint", "add", &b, "--netns", &file],
            &[&file, "an empty file", "not a network namespace"],
        );
    });
    let _ = std::fs::remove_file(&file);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    refused(
        &lab,
        &["endpoint", "add", &b, "--netns", "/tmp"],
        &["/tmp", "a directory", "not a network namespace"],
    );
    refused(
        &lab,
        &["endpoint", "add", &b, "--netns", "/dev/null"],
        &["/dev/null", "a special file", "not a network namespace"],
    );
    refused(
        &lab,
        &["endpoint", "add", &b, "--netns", "/proc/self/ns/pid"],
        &["/proc/self/ns/pid", "pid namespace"],
    );
    // ebridge runs inside the node: its netns is the node's own.
    let node = format!("/run/netns/{}", lab.node);
    refused(
        &lab,
        &["endpoint", "add", &b, "--netns", &node],
        &[&node, "node's own network namespace"],
    );
    refused(
        &lab,
        &["endpoint", "add", &b, "--netns", "/proc/self/ns/net"],
        &["/proc/self/ns/net", "node's own network namespace"],
    );
    // A netns that already has the interface name asked for.
    let a_ns = format!("/run/netns/{a}");
    refused(
        &lab,
        &["endpoint", "add", &b, "--netns", &a_ns],
        &["--ifname eth0", &a_ns, "already has an interface"],
    );
    refused(
        &lab,
        &["endpoint", "add", &b, "--netns", &a_ns, "--ifname", "lo"],
        &["--ifname lo", "already has an interface"],
    );
    // A netns made by someone else is fine.
    let c = lab.name("c");
    run_ok("ip", &["netns", "add", &c]);
    lab.endpoint("c-ep", &["--netns", &format!("/run/netns/{c}")]);
}

/// The "nothing changed" check must see the maps themselves, not only what
/// the state file and the CLI report.
#[test]
fn snapshot_sees_map_changes() {
    let lab = Lab::up(&[]);
    lab.endpoint("a", &[]);
    let before = state(&lab);
    let pin = format!("/sys/fs/bpf/ebridge/{}/endpoint_by_ip", lab.bridge);
    run_ok(
        "bpftool",
        &[
            "map", "delete", "pinned", &pin, "key", "172", "17", "0", "2",
        ],
    );
    let after = state(&lab);
    assert_ne!(before, after, "deleting a map entry went unnoticed");
    assert!(
        lab.user_maps().contains("endpoint_by_ip: 0 entries"),
        "{}",
        lab.user_maps()
    );
}

/// A reader that closes its end early (`| head -1`, `| grep -q`) costs the
/// output, not the command: no panic, exit status 0, and the agent keeps
/// running until it is done.
#[test]
fn closed_output_pipe() {
    let lab = Lab::up(&[]);
    lab.endpoint("a", &[]);
    for args in [
        &["show", "stats"][..],
        &["show", "stats", "--json"],
        &["show", "fdb"],
        &["show", "config"],
        &["endpoint", "ls"],
    ] {
        let out = with_closed_stdio(&lab, args, Closed::Stdout);
        let err = stderr(&out);
        assert!(
            out.status.success() && !err.contains("panicked"),
            "ebridge {args:?} into a closed pipe: {} {err}",
            out.status
        );
    }
    // The agent reports on stderr; with nobody reading it, it still runs
    // its full second and stops normally.
    let started = std::time::Instant::now();
    let out = with_closed_stdio(&lab, &["agent", "--run-for", "1"], Closed::Stderr);
    assert!(
        out.status.success(),
        "agent with a closed stderr: {} {}",
        out.status,
        stdout(&out)
    );
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    // The same from a shell, as a user types it.
    let bin = ebridge_bin();
    let script = format!(
        "{} show stats --bridge {} | head -1 >/dev/null; echo \"${{PIPESTATUS[0]}}\"",
        bin.display(),
        lab.bridge
    );
    // nsenter, not `ip netns exec`: that one remounts /sys, bpffs with it.
    let out = run(
        "nsenter",
        &[
            &format!("--net=/run/netns/{}", lab.node),
            "bash",
            "-c",
            &script,
        ],
    );
    assert_eq!(stdout(&out).trim(), "0", "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

enum Closed {
    Stdout,
    Stderr,
}

/// Runs ebridge in the node with `which` a pipe whose reading end is closed
/// before ebridge writes anything; the other stream is captured.
fn with_closed_stdio(lab: &Lab, args: &[&str], which: Closed) -> Output {
    let bin = ebridge_bin();
    let mut cmd = std::process::Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{}", lab.node))
        .arg(&bin)
        .args(args)
        .args(["--bridge", &lab.bridge]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn ebridge");
    let kept = match which {
        Closed::Stdout => {
            drop(child.stdout.take());
            child.stderr.take().map(|mut r| {
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut r, &mut buf).expect("read stderr");
                buf
            })
        }
        Closed::Stderr => {
            drop(child.stderr.take());
            child.stdout.take().map(|mut r| {
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut r, &mut buf).expect("read stdout");
                buf
            })
        }
    };
    let status = child.wait().expect("wait for ebridge");
    let kept = kept.unwrap_or_default();
    match which {
        Closed::Stdout => Output {
            status,
            stdout: Vec::new(),
            stderr: kept,
        },
        Closed::Stderr => Output {
            status,
            stdout: kept,
            stderr: Vec::new(),
        },
    }
}

#[test]
fn commands_on_a_bridge_that_is_not_up() {
    let lab = Lab::new();
    refused(
        &lab,
        &["endpoint", "add", &lab.name("a")],
        &[&lab.bridge, "not up", "ebridge up"],
    );
    refused(&lab, &["show", "fdb"], &[&lab.bridge, "not up"]);
}

#[test]
fn failure_halfway_through_endpoint_add_rolls_back() {
    let lab = Lab::up(&[]);
    // A netns that already has a default route: the veth is made, moved and
    // addressed before adding the route fails, so all of it must be undone.
    let ns = lab.name("busy");
    run_ok("ip", &["netns", "add", &ns]);
    run_ok(
        "ip",
        &[
            "-n", &ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
        ],
    );
    run_ok(
        "ip",
        &["-n", &ns, "addr", "add", "192.0.2.1/24", "dev", "v0"],
    );
    run_ok("ip", &["-n", &ns, "link", "set", "v0", "up"]);
    run_ok(
        "ip",
        &["-n", &ns, "route", "add", "default", "via", "192.0.2.254"],
    );
    let before = state(&lab);
    let ns_links = run_ok("ip", &["-n", &ns, "-o", "link", "show"])
        .lines()
        .count();

    let out = lab.ebridge(&[
        "endpoint",
        "add",
        &lab.name("x"),
        "--netns",
        &format!("/run/netns/{ns}"),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("default route"), "{}", stderr(&out));
    assert_eq!(state(&lab), before, "half-made endpoint left behind");
    assert_eq!(
        run_ok("ip", &["-n", &ns, "-o", "link", "show"])
            .lines()
            .count(),
        ns_links
    );
    let endpoint_links = std::fs::read_dir(format!("/sys/fs/bpf/ebridge/{}/links", lab.bridge))
        .expect("links dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("veth"))
        })
        .count();
    assert_eq!(endpoint_links, 0, "a veth link pin was left behind");
    // The address it was given is free again.
    lab.endpoint("y", &[]);
    let list = lab.json(&["endpoint", "ls"]);
    assert_eq!(list[0]["ipv4"], "172.17.0.2");
}

#[test]
fn not_root() {
    let out = run(
        "setpriv",
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            ebridge_bin().to_str().expect("utf-8"),
            "up",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("must run as root") && err.contains("uid 65534"),
        "{err}"
    );
}
