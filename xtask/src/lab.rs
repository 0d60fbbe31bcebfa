//! The demo lab: a node namespace running ebridge, an outside host behind
//! its uplink, and two containers. Everything lives in namespaces made here
//! and is removed at the end, on Ctrl-C, or on failure.
use std::{
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use anyhow::Result;

use crate::util::{ebridge_release_bin, require_root, sh, sh_quiet};

struct Lab {
    node: String,
    outside: String,
    c1: String,
    c2: String,
    bridge: String,
    agent: std::sync::Mutex<Option<std::process::Child>>,
}

impl Lab {
    fn new() -> Self {
        let id = std::process::id();
        Self {
            node: format!("ebrlab{id}-node"),
            outside: format!("ebrlab{id}-out"),
            c1: format!("ebrlab{id}-c1"),
            c2: format!("ebrlab{id}-c2"),
            bridge: "ebr0".into(),
            agent: std::sync::Mutex::new(None),
        }
    }

    fn ebridge(&self, args: &[&str]) -> Result<String> {
        let bin = ebridge_release_bin();
        let mut full = vec![
            format!("--net=/run/netns/{}", self.node),
            bin.display().to_string(),
        ];
        full.extend(args.iter().map(|s| s.to_string()));
        full.extend(["--bridge".to_string(), self.bridge.clone()]);
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        sh("nsenter", &refs)
    }

    fn exec(&self, ns: &str, args: &[&str]) -> Result<String> {
        let mut full = vec!["netns", "exec", ns];
        full.extend(args);
        sh("ip", &full)
    }

    fn build(&self) -> Result<()> {
        sh("ip", &["netns", "add", &self.node])?;
        sh("ip", &["netns", "add", &self.outside])?;
        sh("ip", &["-n", &self.node, "link", "set", "lo", "up"])?;
        sh("ip", &["-n", &self.outside, "link", "set", "lo", "up"])?;
        sh(
            "ip",
            &[
                "-n",
                &self.node,
                "link",
                "add",
                "uplink0",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &self.outside,
            ],
        )?;
        sh(
            "ip",
            &[
                "-n",
                &self.node,
                "addr",
                "add",
                "198.51.100.1/24",
                "dev",
                "uplink0",
            ],
        )?;
        sh("ip", &["-n", &self.node, "link", "set", "uplink0", "up"])?;
        sh(
            "ip",
            &[
                "-n",
                &self.outside,
                "addr",
                "add",
                "198.51.100.2/24",
                "dev",
                "eth0",
            ],
        )?;
        sh("ip", &["-n", &self.outside, "link", "set", "eth0", "up"])?;
        sh(
            "ip",
            &[
                "-n",
                &self.node,
                "route",
                "add",
                "default",
                "via",
                "198.51.100.2",
            ],
        )?;
        Ok(())
    }

    fn teardown(&self) {
        if let Ok(mut agent) = self.agent.lock() {
            if let Some(mut agent) = agent.take() {
                let _ = agent.kill();
                let _ = agent.wait();
            }
        }
        let _ = self.ebridge(&["down"]);
        for ns in [&self.c1, &self.c2, &self.node, &self.outside] {
            sh_quiet("ip", &["netns", "del", ns]);
        }
    }
}

fn step(title: &str) {
    println!("\n=== {title}");
}

pub fn run(once: bool) -> Result<()> {
    require_root()?;
    let lab = Lab::new();
    let result = demo(&lab, once);
    step("tearing the lab down");
    lab.teardown();
    println!(
        "removed namespaces {}, {}, {}, {} and every pin",
        lab.node, lab.outside, lab.c1, lab.c2
    );
    result
}

fn demo(lab: &Lab, once: bool) -> Result<()> {
    step("building the lab: node, outside host 198.51.100.2, two containers");
    lab.build()?;
    print!(
        "{}",
        lab.ebridge(&["up", "--subnet", "172.17.0.0/16", "--uplink", "uplink0"])?
    );
    print!("{}", lab.ebridge(&["endpoint", "add", &lab.c1])?);
    print!("{}", lab.ebridge(&["endpoint", "add", &lab.c2])?);
    print!("{}", lab.ebridge(&["endpoint", "ls"])?);
    // The agent expires NAT flows and ages the FDB; it runs for the lab.
    let bin = ebridge_release_bin();
    let net = format!("--net=/run/netns/{}", lab.node);
    let agent = Command::new("nsenter")
        .args([
            net.as_str(),
            bin.to_str().unwrap_or("ebridge"),
            "agent",
            "--bridge",
            &lab.bridge,
        ])
        .spawn()?;
    *lab.agent
        .lock()
        .map_err(|_| anyhow::anyhow!("lab lock poisoned"))? = Some(agent);

    step(&format!("ping {} -> {} (172.17.0.3)", lab.c1, lab.c2));
    print!(
        "{}",
        lab.exec(&lab.c1, &["ping", "-c", "3", "-i", "0.2", "172.17.0.3"])?
    );
    step(&format!(
        "ping {} -> the gateway 172.17.0.1 (to the host, via the bridge)",
        lab.c2
    ));
    print!(
        "{}",
        lab.exec(&lab.c2, &["ping", "-c", "2", "-i", "0.2", "172.17.0.1"])?
    );

    step("TCP: 50 MB from c2 to c1 over the fast path");
    let mut server = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.c1,
            "sh",
            "-c",
            "nc -l -p 5001 > /dev/null",
        ])
        .spawn()?;
    std::thread::sleep(Duration::from_millis(300));
    lab.exec(
        &lab.c2,
        &[
            "sh",
            "-c",
            "head -c 50000000 /dev/zero | nc -q 1 -w 5 172.17.0.2 5001",
        ],
    )?;
    let _ = server.wait();
    println!("done");

    step("masquerade: c1 fetches from the outside host 198.51.100.2 (eBPF SNAT, no iptables)");
    let mut web = Command::new("ip")
        .args(["netns", "exec", &lab.outside, "timeout", "10", "sh", "-c"])
        .arg("printf 'HTTP/1.0 200 OK\r\n\r\nhello from outside\n' | nc -l -s 198.51.100.2 -p 8080 -q 1 > /dev/null")
        .spawn()?;
    std::thread::sleep(Duration::from_millis(300));
    print!(
        "{}",
        lab.exec(
            &lab.c1,
            &[
                "sh",
                "-c",
                "printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 198.51.100.2 8080"
            ]
        )?
    );
    let _ = web.wait();
    print!(
        "{}",
        lab.exec(&lab.c1, &["ping", "-c", "2", "-i", "0.2", "198.51.100.2"])?
    );

    step("ebridge show nat (like conntrack -L): the outside only ever saw 198.51.100.1");
    print!("{}", lab.ebridge(&["show", "nat"])?);

    step("ebridge show fdb (like brctl showmacs)");
    print!("{}", lab.ebridge(&["show", "fdb"])?);
    step("ebridge show stats (like iptables -nvL): redirect-peer carried the traffic");
    print!("{}", lab.ebridge(&["show", "stats"])?);
    step("ebridge show config");
    print!("{}", lab.ebridge(&["show", "config"])?);
    step("pinned state (bpftool map dump shows typed fields)");
    print!(
        "{}",
        sh(
            "bpftool",
            &[
                "map",
                "dump",
                "pinned",
                "/sys/fs/bpf/ebridge/ebr0/endpoints"
            ]
        )
        .unwrap_or_default()
    );

    if once {
        return Ok(());
    }
    println!("\nThe lab is up. Try, in another shell:");
    println!(
        "  nsenter --net=/run/netns/{} {} show stats",
        lab.node,
        ebridge_release_bin().display()
    );
    println!("  ip netns exec {} ping 172.17.0.3", lab.c1);
    println!("Press Ctrl-C to tear it down.");
    wait_for_signal();
    Ok(())
}

/// Blocks until SIGINT or SIGTERM, so the teardown runs in this process.
fn wait_for_signal() {
    static GOT: AtomicBool = AtomicBool::new(false);
    extern "C" fn on_signal(_: libc::c_int) {
        GOT.store(true, Ordering::SeqCst);
    }
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    while !GOT.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
    }
}
