use std::{
    collections::HashMap,
    path::PathBuf,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

use serde_json::Value;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The `ebridge` binary under test: $EBRIDGE_BIN, or the one cargo built
/// next to this test executable (target/<profile>/ebridge).
pub fn ebridge_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("EBRIDGE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("ebridge"))
        .expect("target/<profile>/ebridge")
}

/// Runs a command, returning its output whatever the status.
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// Runs a command that must succeed; returns its stdout.
pub fn run_ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {} failed ({}): {}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A node namespace (where ebridge runs, as on a real host), an outside
/// namespace behind its uplink `uplink0`, and whatever endpoints the test
/// adds. Every namespace is named `<id>-...` and removed on drop, also when
/// the test panics.
pub struct Lab {
    pub id: String,
    pub node: String,
    pub outside: String,
    pub bridge: String,
    /// tcpdump on the outside host, catching any container source address.
    leak_watch: Option<(std::process::Child, PathBuf)>,
}

pub const NODE_UPLINK_IP: &str = "198.51.100.1";
/// ebridge_common::fdb::FDB_F_LOCAL (this crate does not depend on it).
const FDB_F_LOCAL: u64 = 1;
pub const OUTSIDE_IP: &str = "198.51.100.2";
/// The uplink's and the outside host's IPv6 addresses (`Lab::new_dual`).
pub const NODE_UPLINK_IP6: &str = "2001:db8:51::1";
pub const OUTSIDE_IP6: &str = "2001:db8:51::2";
/// The server behind the outside router (`with_server`), over IPv6.
pub const SERVER_IP6: &str = "2001:db8:52::2";
pub const SERVER_IP: &str = "203.0.113.2";

impl Lab {
    /// Builds node and outside; does not run `ebridge up`.
    pub fn new() -> Self {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let id = format!("t{}x{n}", std::process::id());
        let lab = Lab {
            node: format!("{id}-node"),
            outside: format!("{id}-out"),
            bridge: format!("b{}x{n}", std::process::id()),
            id,
            leak_watch: None,
        };
        run_ok("ip", &["netns", "add", &lab.node]);
        run_ok("ip", &["netns", "add", &lab.outside]);
        for ns in [&lab.node, &lab.outside] {
            run_ok("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        run_ok(
            "ip",
            &[
                "-n",
                &lab.node,
                "link",
                "add",
                "uplink0",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &lab.outside,
            ],
        );
        run_ok(
            "ip",
            &[
                "-n",
                &lab.node,
                "addr",
                "add",
                &format!("{NODE_UPLINK_IP}/24"),
                "dev",
                "uplink0",
            ],
        );
        run_ok("ip", &["-n", &lab.node, "link", "set", "uplink0", "up"]);
        run_ok(
            "ip",
            &[
                "-n",
                &lab.outside,
                "addr",
                "add",
                &format!("{OUTSIDE_IP}/24"),
                "dev",
                "eth0",
            ],
        );
        run_ok("ip", &["-n", &lab.outside, "link", "set", "eth0", "up"]);
        run_ok(
            "ip",
            &[
                "-n", &lab.node, "route", "add", "default", "via", OUTSIDE_IP,
            ],
        );
        lab
    }

    /// `new` with IPv6 on the uplink too: global addresses on both ends
    /// (no DAD: usable at once) and the node's IPv6 default route.
    pub fn new_dual() -> Self {
        let lab = Self::new();
        for (ns, dev, addr) in [
            (&lab.node, "uplink0", NODE_UPLINK_IP6),
            (&lab.outside, "eth0", OUTSIDE_IP6),
        ] {
            run_ok(
                "ip",
                &[
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{addr}/64"),
                    "dev",
                    dev,
                    "nodad",
                ],
            );
        }
        run_ok(
            "ip",
            &[
                "-n",
                &lab.node,
                "-6",
                "route",
                "add",
                "default",
                "via",
                OUTSIDE_IP6,
            ],
        );
        lab
    }

    /// Adds a server namespace `<id>-srv` (203.0.113.2) behind the outside
    /// host, which becomes a router; the router's link towards the server
    /// gets `mtu` (to make path MTU discovery necessary).
    pub fn with_server(self, mtu: u32) -> Self {
        let srv = self.server();
        run_ok("ip", &["netns", "add", &srv]);
        run_ok("ip", &["-n", &srv, "link", "set", "lo", "up"]);
        run_ok(
            "ip",
            &[
                "-n",
                &self.outside,
                "link",
                "add",
                "eth1",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &srv,
            ],
        );
        run_ok(
            "ip",
            &[
                "-n",
                &self.outside,
                "addr",
                "add",
                "203.0.113.1/24",
                "dev",
                "eth1",
            ],
        );
        run_ok(
            "ip",
            &[
                "-n",
                &self.outside,
                "link",
                "set",
                "eth1",
                "mtu",
                &mtu.to_string(),
                "up",
            ],
        );
        run_ok(
            "ip",
            &[
                "-n",
                &srv,
                "addr",
                "add",
                &format!("{SERVER_IP}/24"),
                "dev",
                "eth0",
            ],
        );
        // The server's own link stays at 1500: it advertises a full MSS,
        // so only the router in between can tell the sender to go smaller.
        run_ok("ip", &["-n", &srv, "link", "set", "eth0", "up"]);
        run_ok(
            "ip",
            &["-n", &srv, "route", "add", "default", "via", "203.0.113.1"],
        );
        self.exec_ok(&self.outside, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        // IPv6 on the same path (a link under 1280 bytes carries none):
        // the server at SERVER_IP6 behind the outside router.
        if mtu >= 1280 {
            for (ns, dev, addr) in [
                (self.outside.as_str(), "eth1", "2001:db8:52::1/64"),
                (srv.as_str(), "eth0", "2001:db8:52::2/64"),
            ] {
                run_ok("ip", &["-n", ns, "addr", "add", addr, "dev", dev, "nodad"]);
            }
            run_ok(
                "ip",
                &[
                    "-n",
                    &srv,
                    "-6",
                    "route",
                    "add",
                    "default",
                    "via",
                    "2001:db8:52::1",
                ],
            );
            self.exec_ok(
                &self.outside,
                &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"],
            );
        }
        self
    }

    pub fn server(&self) -> String {
        format!("{}-srv", self.id)
    }

    /// Starts capturing, on the outside host's side of the uplink, every
    /// IPv4 packet. Immediate mode: otherwise the last second's packets sit
    /// in an unretired ring-buffer block when the capture is stopped.
    pub fn watch_for_leaks(mut self) -> Self {
        let pcap = std::env::temp_dir().join(format!("{}-uplink.pcap", self.id));
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.outside,
                "tcpdump",
                "-n",
                "-U",
                "--immediate-mode",
                "-i",
                "eth0",
                "-w",
            ])
            .arg(&pcap)
            .args(["ip", "or", "ip6"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("tcpdump");
        // tcpdump says "listening on ..." once it captures.
        let stderr = child.stderr.take().expect("tcpdump stderr");
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stderr), &mut line);
        assert!(
            line.contains("listening on"),
            "tcpdump did not start: {line}"
        );
        self.leak_watch = Some((child, pcap));
        self
    }

    fn stop_watch(&mut self) -> Option<PathBuf> {
        let (mut child, pcap) = self.leak_watch.take()?;
        std::thread::sleep(std::time::Duration::from_millis(300));
        // SAFETY: plain kill(2) of our own child (`ip netns exec` became tcpdump).
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let _ = child.wait();
        Some(pcap)
    }

    /// Stops the capture; returns (packets with a container source address,
    /// packets from the node's uplink address).
    pub fn uplink_capture(&mut self) -> (usize, usize) {
        let pcap = self.stop_watch().expect("watch_for_leaks was not called");
        let count = |filter: &str| {
            let out = run_ok(
                "tcpdump",
                &["-n", "-r", pcap.to_str().expect("utf-8"), filter],
            );
            out.lines().count()
        };
        let counts = (
            count("src net 172.16.0.0/12"),
            count(&format!("src host {NODE_UPLINK_IP}")),
        );
        let _ = std::fs::remove_file(&pcap);
        counts
    }

    /// Stops the capture; returns (IPv6 packets with a source in the
    /// containers' `subnet6`, IPv6 packets from the node's uplink address).
    pub fn uplink_capture6(&mut self, subnet6: &str) -> (usize, usize) {
        let pcap = self.stop_watch().expect("watch_for_leaks was not called");
        let count = |filter: &str| {
            let out = run_ok(
                "tcpdump",
                &["-n", "-r", pcap.to_str().expect("utf-8"), filter],
            );
            out.lines().count()
        };
        // Neighbor discovery (ICMPv6 133-137) is the node's own.
        let not_nd = "not (icmp6 and ip6[40] >= 133 and ip6[40] <= 137)";
        let counts = (
            count(&format!("ip6 and src net {subnet6} and {not_nd}")),
            count(&format!("ip6 and src host {NODE_UPLINK_IP6} and {not_nd}")),
        );
        let _ = std::fs::remove_file(&pcap);
        counts
    }

    /// Asserts no container address left the uplink, and that the capture
    /// did see masqueraded traffic (so the check could have failed).
    pub fn assert_no_leak(&mut self) {
        let (leaked, ours) = self.uplink_capture();
        assert_eq!(
            leaked, 0,
            "{leaked} packets left the uplink with a container source address"
        );
        assert!(
            ours > 0,
            "the capture saw no traffic from the uplink address at all"
        );
    }

    /// A lab with the bridge up (`extra` are more `up` flags).
    pub fn up(extra: &[&str]) -> Self {
        let lab = Self::new();
        let mut args = vec!["up", "--subnet", "172.17.0.0/16"];
        args.extend(extra);
        lab.ebridge_ok(&args);
        lab
    }

    /// `ebridge ARGS --bridge <this lab's bridge>` inside the node.
    pub fn ebridge(&self, args: &[&str]) -> Output {
        self.ebridge_in(&self.node, args)
    }

    pub fn ebridge_in(&self, netns: &str, args: &[&str]) -> Output {
        let bin = ebridge_bin();
        let net = format!("--net=/run/netns/{netns}");
        let mut full: Vec<&str> = vec![&net, bin.to_str().expect("utf-8 path")];
        full.extend(args);
        if !args.contains(&"--bridge") {
            full.extend(["--bridge", &self.bridge]);
        }
        run("nsenter", &full)
    }

    pub fn ebridge_ok(&self, args: &[&str]) -> String {
        let out = self.ebridge(args);
        assert!(
            out.status.success(),
            "ebridge {} failed ({}): {}{}",
            args.join(" "),
            out.status,
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    /// A unique endpoint (and netns) name for this lab.
    pub fn name(&self, short: &str) -> String {
        format!("{}-{short}", self.id)
    }

    /// Adds an endpoint named `<id>-short`; returns its name.
    pub fn endpoint(&self, short: &str, extra: &[&str]) -> String {
        let name = self.name(short);
        let mut args = vec!["endpoint", "add", &name];
        args.extend(extra);
        self.ebridge_ok(&args);
        name
    }

    /// `ip netns exec NS ARGS...`
    pub fn exec(&self, netns: &str, args: &[&str]) -> Output {
        let mut full = vec!["netns", "exec", netns];
        full.extend(args);
        run("ip", &full)
    }

    pub fn exec_ok(&self, netns: &str, args: &[&str]) -> String {
        let mut full = vec!["netns", "exec", netns];
        full.extend(args);
        run_ok("ip", &full)
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut full = args.to_vec();
        full.push("--json");
        let text = self.ebridge_ok(&full);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("bad JSON from {args:?}: {e}: {text}"))
    }

    /// Counters by reason label: (packets, bytes). A row without a reason
    /// or a count fails the test: read as zero it would pass "nothing
    /// dropped" checks it should fail.
    pub fn stats(&self) -> HashMap<String, (u64, u64)> {
        let v = self.json(&["show", "stats"]);
        let rows = v
            .as_array()
            .unwrap_or_else(|| panic!("show stats --json is not a list: {v}"));
        let mut out = HashMap::new();
        for r in rows {
            let reason = r["reason"]
                .as_str()
                .unwrap_or_else(|| panic!("stats row without a reason: {r}"));
            let count = |field: &str| {
                r[field]
                    .as_u64()
                    .unwrap_or_else(|| panic!("stats row without a numeric {field}: {r}"))
            };
            let counters = (count("packets"), count("bytes"));
            if out.insert(reason.to_string(), counters).is_some() {
                panic!("show stats lists reason {reason} twice: {v}");
            }
        }
        out
    }

    pub fn packets(&self, reason: &str) -> u64 {
        self.stats()
            .get(reason)
            .map(|c| c.0)
            .unwrap_or_else(|| panic!("no counter {reason}"))
    }

    /// A link's packet counters as the kernel sees them: (rx, tx).
    pub fn link_packets(&self, netns: &str, ifname: &str) -> (u64, u64) {
        let read = |what: &str| -> u64 {
            let path = format!("/sys/class/net/{ifname}/statistics/{what}_packets");
            self.exec_ok(netns, &["cat", &path])
                .trim()
                .parse()
                .expect("counter")
        };
        (read("rx"), read("tx"))
    }

    /// Everything a failed command must leave untouched: the node's links,
    /// addresses and routes, this lab's namespaces and the bridge's pins.
    pub fn snapshot(&self) -> String {
        let mut s = String::new();
        for args in [
            vec!["-n", &self.node, "-o", "link", "show"],
            vec!["-n", &self.node, "-4", "-o", "addr", "show"],
            vec!["-n", &self.node, "route", "show"],
        ] {
            s += &run_ok("ip", &args)
                .lines()
                // Packet counters and link state churn on their own.
                .map(|l| l.split(" state ").next().unwrap_or(l).to_string() + "\n")
                .collect::<String>();
        }
        s += &self.own_netns().join(" ");
        s += "\n";
        let pins = run("find", &[&format!("/sys/fs/bpf/ebridge/{}", self.bridge)]);
        s += &stdout(&pins);
        s += &stdout(&run("find", &[&format!("/run/ebridge/{}", self.bridge)]));
        s += &self.user_maps();
        s
    }

    /// The entries of every pinned map that only commands write (traffic
    /// changes nat, frags, stats, sock_rewrites and learned FDB entries),
    /// sorted, as bpftool reads them: a failed command must leave them as
    /// they were, whatever the state file says. Empty while the bridge is
    /// not up.
    pub fn user_maps(&self) -> String {
        let dir = PathBuf::from(format!("/sys/fs/bpf/ebridge/{}", self.bridge));
        match std::fs::metadata(&dir) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return String::new(),
            Err(e) => panic!("cannot stat {}: {e}", dir.display()),
        }
        let mut s = String::new();
        for map in [
            "config",
            "endpoints",
            "endpoint_by_ip",
            "fdb",
            "publish",
            "node_addrs",
        ] {
            let path = dir.join(map);
            let text = run_ok(
                "bpftool",
                &["-j", "map", "dump", "pinned", path.to_str().expect("utf-8")],
            );
            let dump: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("bpftool dump of {map} is not JSON: {e}: {text}"));
            let entries = dump
                .as_array()
                .unwrap_or_else(|| panic!("bpftool dump of {map} is not a list: {text}"));
            let mut lines = Vec::new();
            for entry in entries {
                // "formatted" is the BTF-typed view; without BTF the raw
                // bytes would do as well, but every map here has BTF.
                let typed = &entry["formatted"];
                if typed.is_null() {
                    panic!("bpftool dump of {map} has no BTF-typed entries: {entry}");
                }
                if map == "fdb" {
                    let flags = typed["value"]["flags"]
                        .as_u64()
                        .unwrap_or_else(|| panic!("fdb entry without flags: {entry}"));
                    if flags & FDB_F_LOCAL == 0 {
                        continue;
                    }
                }
                lines.push(format!("{map} {typed}\n"));
            }
            lines.sort();
            s += &format!("{map}: {} entries\n", lines.len());
            s.extend(lines);
        }
        s
    }

    /// Namespaces of this lab that exist now.
    pub fn own_netns(&self) -> Vec<String> {
        self.try_own_netns()
            .unwrap_or_else(|e| panic!("cannot list /run/netns: {e}"))
    }

    /// `own_netns` for Drop, which must not panic (a panic while unwinding
    /// aborts every test of the binary, and their cleanup with it).
    fn try_own_netns(&self) -> std::io::Result<Vec<String>> {
        let dir = match std::fs::read_dir("/run/netns") {
            Ok(dir) => dir,
            // No named namespace at all yet.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let prefix = format!("{}-", self.id);
        let mut names = Vec::new();
        for entry in dir {
            // Lab names are ASCII; anything else is not this lab's.
            if let Ok(name) = entry?.file_name().into_string() {
                if name.starts_with(&prefix) {
                    names.push(name);
                }
            }
        }
        names.sort();
        Ok(names)
    }
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(pcap) = self.stop_watch() {
            let _ = std::fs::remove_file(pcap);
        }
        let _ = self.ebridge(&["down"]);
        for ns in self.try_own_netns().unwrap_or_default() {
            let _ = run("ip", &["netns", "del", &ns]);
        }
        // In case `down` could not run (e.g. the node is gone already).
        let _ = std::fs::remove_dir_all(format!("/sys/fs/bpf/ebridge/{}", self.bridge));
        let _ = std::fs::remove_dir_all(format!("/run/ebridge/{}", self.bridge));
    }
}
