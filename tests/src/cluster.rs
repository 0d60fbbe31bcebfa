//! A three-node cluster in network namespaces: an underlay "switch" (a
//! Linux bridge in its own namespace, 192.168.77.0/24), nodes N = 1..3 at
//! 192.168.77.N each running ebridge with pod subnet 10.244.N.0/24 and
//! native-routing CIDR 10.244.0.0/16, BIRD 2 on every node announcing its
//! pod subnet over iBGP (shared/BIRD.md), and a router on the underlay
//! (192.168.77.254, the nodes' default gateway) with an outside server
//! behind it (203.0.113.2). Everything is removed on drop, also when the
//! test panicked: BIRDs stopped by PID, `ebridge down` on every node, the
//! namespaces deleted.
use std::{
    path::PathBuf,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::lab::{ebridge_bin, run, run_ok};

static NEXT: AtomicU32 = AtomicU32::new(0);

pub const NATIVE_CIDR: &str = "10.244.0.0/16";
pub const ROUTER_IP: &str = "192.168.77.254";
pub const SERVER_IP: &str = "203.0.113.2";

pub struct Node {
    pub n: u8,
    pub netns: String,
    pub bridge: String,
    pub ip: String,
    dir: PathBuf,
}

impl Node {
    pub fn subnet(&self) -> String {
        format!("10.244.{}.0/24", self.n)
    }

    /// `ebridge ARGS --bridge <this node's bridge>` in the node.
    pub fn ebridge(&self, args: &[&str]) -> Output {
        let bin = ebridge_bin();
        let net = format!("--net=/run/netns/{}", self.netns);
        let mut full: Vec<&str> = vec![&net, bin.to_str().expect("utf-8 path")];
        full.extend(args);
        full.extend(["--bridge", &self.bridge]);
        run("nsenter", &full)
    }

    pub fn ebridge_ok(&self, args: &[&str]) -> String {
        let out = self.ebridge(args);
        assert!(
            out.status.success(),
            "node {}: ebridge {} failed: {}{}",
            self.n,
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Counter `reason` of this node's datapath.
    pub fn packets(&self, reason: &str) -> u64 {
        let text = self.ebridge_ok(&["show", "stats", "--json"]);
        let v: Value = serde_json::from_str(&text).expect("stats JSON");
        v.as_array()
            .expect("stats list")
            .iter()
            .find(|r| r["reason"] == reason)
            .and_then(|r| r["packets"].as_u64())
            .unwrap_or_else(|| panic!("no counter {reason}"))
    }

    /// `ForwDatagrams` of the node's IP stack (/proc/net/snmp): what the
    /// kernel forwarded, which the fast path should keep flat.
    pub fn forwarded(&self) -> u64 {
        let snmp = run_ok(
            "ip",
            &["netns", "exec", &self.netns, "cat", "/proc/net/snmp"],
        );
        let mut lines = snmp.lines().filter(|l| l.starts_with("Ip:"));
        let (names, values) = (
            lines.next().expect("Ip: names"),
            lines.next().expect("Ip: values"),
        );
        let i = names
            .split_whitespace()
            .position(|n| n == "ForwDatagrams")
            .expect("ForwDatagrams");
        values
            .split_whitespace()
            .nth(i)
            .and_then(|v| v.parse().ok())
            .expect("ForwDatagrams value")
    }

    fn bird_paths(&self) -> (PathBuf, PathBuf, PathBuf) {
        (
            self.dir.join("bird.conf"),
            self.dir.join("bird.ctl"),
            self.dir.join("bird.pid"),
        )
    }

    /// Starts BIRD in the node (it daemonizes and writes its pid file).
    pub fn start_bird(&self) {
        let (conf, ctl, pid) = self.bird_paths();
        run_ok(
            "ip",
            &[
                "netns",
                "exec",
                &self.netns,
                "bird",
                "-c",
                conf.to_str().expect("utf-8"),
                "-s",
                ctl.to_str().expect("utf-8"),
                "-P",
                pid.to_str().expect("utf-8"),
            ],
        );
    }

    /// Stops BIRD in an orderly way (its peers drop its routes at once).
    pub fn stop_bird(&self) {
        let (_, _, pid) = self.bird_paths();
        if let Ok(text) = std::fs::read_to_string(&pid) {
            if let Ok(pid) = text.trim().parse::<i32>() {
                // SAFETY: kill(2) of the BIRD this fixture started.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while pid.exists() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Freezes BIRD (SIGSTOP): its peers notice only when the hold timer
    /// runs out, as with a node that hangs.
    pub fn freeze_bird(&self, frozen: bool) {
        let (_, _, pid) = self.bird_paths();
        let pid: i32 = std::fs::read_to_string(&pid)
            .expect("bird pid file")
            .trim()
            .parse()
            .expect("pid");
        let sig = if frozen { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: kill(2) of the BIRD this fixture started.
        unsafe { libc::kill(pid, sig) };
    }

    /// The node's kernel routes BIRD installed.
    pub fn bird_routes(&self) -> String {
        run_ok("ip", &["-n", &self.netns, "route", "show", "proto", "bird"])
    }

    fn write_bird_conf(&self, peers: &[String]) {
        let mut conf = format!(
            "log \"{dir}/bird.log\" all;\nrouter id {ip};\n\
             protocol device {{ scan time 5; }}\n\
             protocol direct {{ ipv4; interface \"{bridge}\"; }}\n\
             protocol kernel {{ ipv4 {{ import none; export where source = RTS_BGP; }}; }}\n\
             template bgp mesh {{\n  local {ip} as 64512;\n  direct;\n  hold time 9; keepalive time 3;\n  \
             connect retry time 2; connect delay time 1; error wait time 1, 5;\n  \
             ipv4 {{ import all; export where source = RTS_DEVICE; gateway direct; next hop self; }};\n}}\n",
            dir = self.dir.display(),
            ip = self.ip,
            bridge = self.bridge,
        );
        for (i, peer) in peers.iter().enumerate() {
            conf += &format!("protocol bgp p{i} from mesh {{ neighbor {peer} as 64512; }}\n");
        }
        std::fs::write(self.dir.join("bird.conf"), conf).expect("bird.conf");
    }
}

pub struct Cluster {
    pub id: String,
    pub switch: String,
    pub router: String,
    pub server: String,
    pub nodes: Vec<Node>,
    dir: PathBuf,
}

impl Cluster {
    /// The namespaces and links, `ebridge up` on every node with
    /// `up_extra`, BIRD running; returns once every node has the other
    /// nodes' pod subnets in its kernel.
    pub fn new(underlay_mtu: u32, up_extra: &[&str]) -> Self {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let id = format!("k{}x{n}", std::process::id());
        let dir = std::env::temp_dir().join(format!("{id}-cluster"));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let mut c = Cluster {
            switch: format!("{id}-sw"),
            router: format!("{id}-rtr"),
            server: format!("{id}-srv"),
            nodes: Vec::new(),
            dir,
            id,
        };
        // From here on a panic drops `c`, which removes what exists.
        c.underlay(underlay_mtu);
        for n in 1..=3u8 {
            c.add_node(n, underlay_mtu, up_extra);
        }
        let ips: Vec<String> = c.nodes.iter().map(|n| n.ip.clone()).collect();
        for node in &c.nodes {
            let peers: Vec<String> = ips.iter().filter(|ip| **ip != node.ip).cloned().collect();
            node.write_bird_conf(&peers);
            node.start_bird();
        }
        c.wait_for_routes(Duration::from_secs(30));
        c
    }

    fn ns(&self, name: &str, args: &[&str]) {
        let mut full = vec!["-n", name];
        full.extend(args);
        run_ok("ip", &full);
    }

    fn underlay(&mut self, mtu: u32) {
        let mtu = mtu.to_string();
        for ns in [&self.switch, &self.router, &self.server] {
            run_ok("ip", &["netns", "add", ns]);
            self.ns(ns, &["link", "set", "lo", "up"]);
        }
        self.ns(
            &self.switch,
            &["link", "add", "sw0", "mtu", &mtu, "type", "bridge"],
        );
        self.ns(&self.switch, &["link", "set", "sw0", "up"]);
        // The router: on the underlay and towards the outside server.
        self.ns(
            &self.switch,
            &[
                "link",
                "add",
                "prtr",
                "mtu",
                &mtu,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &self.router,
            ],
        );
        self.ns(
            &self.switch,
            &["link", "set", "prtr", "master", "sw0", "up"],
        );
        self.ns(&self.router, &["link", "set", "eth0", "mtu", &mtu]);
        self.ns(
            &self.router,
            &["addr", "add", &format!("{ROUTER_IP}/24"), "dev", "eth0"],
        );
        self.ns(&self.router, &["link", "set", "eth0", "up"]);
        self.ns(
            &self.router,
            &[
                "link",
                "add",
                "eth1",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &self.server,
            ],
        );
        self.ns(
            &self.router,
            &["addr", "add", "203.0.113.1/24", "dev", "eth1"],
        );
        self.ns(&self.router, &["link", "set", "eth1", "up"]);
        run_ok(
            "ip",
            &[
                "netns",
                "exec",
                &self.router,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ],
        );
        self.ns(
            &self.server,
            &["addr", "add", &format!("{SERVER_IP}/24"), "dev", "eth0"],
        );
        self.ns(&self.server, &["link", "set", "eth0", "up"]);
        self.ns(
            &self.server,
            &["route", "add", "default", "via", "203.0.113.1"],
        );
    }

    fn add_node(&mut self, n: u8, mtu: u32, up_extra: &[&str]) {
        let node = Node {
            n,
            netns: format!("{}-n{n}", self.id),
            // Pins live on the machine-wide bpffs: unique across nodes.
            bridge: format!("{}b{n}", self.id),
            ip: format!("192.168.77.{n}"),
            dir: self.dir.join(format!("n{n}")),
        };
        std::fs::create_dir_all(&node.dir).expect("node dir");
        run_ok("ip", &["netns", "add", &node.netns]);
        self.ns(&node.netns, &["link", "set", "lo", "up"]);
        let port = format!("pn{n}");
        self.ns(
            &self.switch,
            &[
                "link",
                "add",
                &port,
                "mtu",
                &mtu.to_string(),
                "type",
                "veth",
                "peer",
                "name",
                "up0",
                "netns",
                &node.netns,
            ],
        );
        self.ns(&self.switch, &["link", "set", &port, "master", "sw0", "up"]);
        self.ns(
            &node.netns,
            &["link", "set", "up0", "mtu", &mtu.to_string()],
        );
        self.ns(
            &node.netns,
            &["addr", "add", &format!("{}/24", node.ip), "dev", "up0"],
        );
        self.ns(&node.netns, &["link", "set", "up0", "up"]);
        self.ns(&node.netns, &["route", "add", "default", "via", ROUTER_IP]);
        let subnet = node.subnet();
        let mut args = vec![
            "up",
            "--subnet",
            &subnet,
            "--native-routing-cidr",
            NATIVE_CIDR,
        ];
        args.extend(up_extra);
        self.nodes.push(node);
        self.nodes[self.nodes.len() - 1].ebridge_ok(&args);
    }

    /// Waits until every node routes the other nodes' pod subnets.
    pub fn wait_for_routes(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let missing: Vec<String> = self
                .nodes
                .iter()
                .flat_map(|node| {
                    let routes = node.bird_routes();
                    self.nodes
                        .iter()
                        .filter(|other| other.n != node.n)
                        .filter(|other| !routes.contains(&other.subnet()))
                        .map(|other| format!("node {} lacks {}", node.n, other.subnet()))
                        .collect::<Vec<_>>()
                })
                .collect();
            if missing.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "BGP did not converge: {missing:?}"
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn node(&self, n: u8) -> &Node {
        &self.nodes[usize::from(n - 1)]
    }

    /// A pod on node `n`: an endpoint named `<id>-<short>`; returns (netns
    /// name, address).
    pub fn pod(&self, n: u8, short: &str, extra: &[&str]) -> (String, String) {
        let name = format!("{}-{short}", self.id);
        let mut args = vec!["endpoint", "add", &name];
        args.extend(extra);
        self.node(n).ebridge_ok(&args);
        let list = self.node(n).ebridge_ok(&["endpoint", "ls", "--json"]);
        let v: Value = serde_json::from_str(&list).expect("endpoint ls JSON");
        let ip = v
            .as_array()
            .expect("list")
            .iter()
            .find(|e| e["name"] == name.as_str())
            .and_then(|e| e["ipv4"].as_str())
            .expect("pod address")
            .to_string();
        (name, ip)
    }

    /// `ip netns exec NS ARGS` that must succeed.
    pub fn exec_ok(&self, netns: &str, args: &[&str]) -> String {
        let mut full = vec!["netns", "exec", netns];
        full.extend(args);
        run_ok("ip", &full)
    }

    pub fn exec(&self, netns: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", netns])
            .args(args)
            .output()
            .expect("ip netns exec")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &self.nodes {
            node.freeze_bird_safe_resume();
            node.stop_bird();
            let _ = node.ebridge(&["down"]);
        }
        let prefix = format!("{}-", self.id);
        if let Ok(entries) = std::fs::read_dir("/run/netns") {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&prefix) {
                    let _ = run("ip", &["netns", "del", &name]);
                }
            }
        }
        for node in &self.nodes {
            let _ = std::fs::remove_dir_all(format!("/sys/fs/bpf/ebridge/{}", node.bridge));
            let _ = std::fs::remove_dir_all(format!("/run/ebridge/{}", node.bridge));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Node {
    /// A frozen BIRD cannot take SIGTERM: thaw it first (no-op otherwise).
    fn freeze_bird_safe_resume(&self) {
        let (_, _, pid) = self.bird_paths();
        if let Ok(text) = std::fs::read_to_string(&pid) {
            if let Ok(pid) = text.trim().parse::<i32>() {
                // SAFETY: kill(2) of the BIRD this fixture started.
                unsafe { libc::kill(pid, libc::SIGCONT) };
            }
        }
    }
}
