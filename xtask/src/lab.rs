//! The demo lab: a node namespace running ebridge, an outside host behind
//! its uplink, and two containers. Everything lives in namespaces made here
//! and is removed at the end, on Ctrl-C, or on failure.
use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader},
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::util::{ebridge_release_bin, require_root, sh, sh_quiet};

struct Lab {
    node: String,
    outside: String,
    c1: String,
    c2: String,
    bridge: String,
    agent: Mutex<Option<Child>>,
    /// tcpdump on the outside host while containers talk to it.
    capture: Mutex<Option<Child>>,
    /// Transfer files and the capture; removed on teardown.
    scratch: PathBuf,
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
            agent: Mutex::new(None),
            capture: Mutex::new(None),
            scratch: std::env::temp_dir().join(format!("ebrlab{id}")),
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
        for child in [&self.agent, &self.capture] {
            if let Ok(mut child) = child.lock() {
                if let Some(mut child) = child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.scratch);
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

    transfer(lab, 50_000_000)?;

    step("masquerade: c1 fetches from the outside host 198.51.100.2 (eBPF SNAT, no iptables)");
    let pcap = start_capture(lab)?;
    let mut web = Command::new("ip")
        .args(["netns", "exec", &lab.outside, "timeout", "10", "sh", "-c"])
        .arg("printf 'HTTP/1.0 200 OK\r\n\r\nhello from outside\n' | nc -l -s 198.51.100.2 -p 8080 -q 1 > /dev/null")
        .stdin(Stdio::null())
        .spawn()?;
    wait_for_listener(lab, &lab.outside, 8080)?;
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
    show_capture(lab, &pcap)?;

    step("ebridge show nat (like conntrack -L): container flows, translated to 198.51.100.1");
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

/// Sends `bytes` of random data from c2 to c1 over TCP and shows that all
/// of it arrived intact, and how fast.
fn transfer(lab: &Lab, bytes: u64) -> Result<()> {
    step(&format!(
        "TCP: {} MB of random data from c2 to c1 over the fast path",
        bytes / 1_000_000
    ));
    std::fs::create_dir_all(&lab.scratch)?;
    let sent = lab.scratch.join("sent");
    let received = lab.scratch.join("received");
    sh(
        "sh",
        &[
            "-c",
            &format!("head -c {bytes} /dev/urandom > '{}'", sent.display()),
        ],
    )?;
    let received_file = std::fs::File::create(&received)?;
    // The server's stdin is /dev/null so it quits once the client's FIN
    // arrives, which is when the last byte is in the file.
    let mut server = Command::new("ip")
        .args(["netns", "exec", &lab.c1, "nc", "-l", "-p", "5001"])
        .stdin(Stdio::null())
        .stdout(received_file)
        .spawn()?;
    let sent_path = sent.display().to_string();
    let run = |server: &mut Child| -> Result<Duration> {
        wait_for_listener(lab, &lab.c1, 5001)?;
        let started = Instant::now();
        // -N: FIN after the last byte instead of waiting -q seconds, so the
        // clock stops with the transfer.
        lab.exec(
            &lab.c2,
            &[
                "sh",
                "-c",
                &format!("nc -N -w 5 172.17.0.2 5001 < '{sent_path}'"),
            ],
        )?;
        let status = server.wait()?;
        if !status.success() {
            bail!("the receiving nc in {} failed: {status}", lab.c1);
        }
        Ok(started.elapsed())
    };
    let elapsed = run(&mut server);
    // A failed client leaves the listener behind, in a netns about to go.
    let _ = server.kill();
    let _ = server.wait();
    let elapsed = elapsed?;
    let got = std::fs::metadata(&received)?.len();
    let (want_sum, got_sum) = (sha256(&sent)?, sha256(&received)?);
    let secs = elapsed.as_secs_f64();
    println!(
        "sent {bytes} bytes, received {got} bytes in {secs:.3} s: {:.0} MB/s ({:.2} Gbit/s)",
        got as f64 / 1e6 / secs,
        got as f64 * 8.0 / 1e9 / secs
    );
    println!("sha256 sent     {want_sum}");
    println!("sha256 received {got_sum}");
    if got != bytes || want_sum != got_sum {
        bail!("the data did not arrive intact: {got} of {bytes} bytes, sha256 {got_sum} instead of {want_sum}");
    }
    println!("identical");
    let _ = std::fs::remove_file(&sent);
    let _ = std::fs::remove_file(&received);
    Ok(())
}

fn sha256(path: &Path) -> Result<String> {
    let out = sh("sha256sum", &[&path.display().to_string()])?;
    out.split_whitespace()
        .next()
        .map(str::to_string)
        .with_context(|| format!("sha256sum printed nothing for {}", path.display()))
}

/// Waits until a TCP socket listens on `port` in `ns`; a fixed sleep is
/// either slow or, on a busy machine, too short.
fn wait_for_listener(lab: &Lab, ns: &str, port: u16) -> Result<()> {
    let filter = format!("sport = :{port}");
    for _ in 0..100 {
        if !lab.exec(ns, &["ss", "-Hltn", &filter])?.trim().is_empty() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on port {port} in {ns} after 5 s")
}

/// Starts tcpdump on the outside host's link to the node; returns the
/// capture file.
fn start_capture(lab: &Lab) -> Result<PathBuf> {
    std::fs::create_dir_all(&lab.scratch)?;
    let pcap = lab.scratch.join("outside.pcap");
    // Immediate mode: otherwise the last packets sit in a ring-buffer block
    // that is not written out when the capture stops.
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.outside,
            "tcpdump",
            "-n",
            "-U",
            "--immediate-mode",
            "-i",
            "eth0",
            "-w",
        ])
        .arg(&pcap)
        .arg("ip")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    if let Some(stderr) = child.stderr.take() {
        BufReader::new(stderr).read_line(&mut line)?;
    }
    *lab.capture
        .lock()
        .map_err(|_| anyhow::anyhow!("lab lock poisoned"))? = Some(child);
    if !line.contains("listening on") {
        bail!("tcpdump on the outside host did not start: {}", line.trim());
    }
    Ok(pcap)
}

/// Stops the capture and shows, by source address, every IPv4 packet the
/// outside host received: masquerade means only the node's uplink address.
fn show_capture(lab: &Lab, pcap: &Path) -> Result<()> {
    let child = lab
        .capture
        .lock()
        .map_err(|_| anyhow::anyhow!("lab lock poisoned"))?
        .take();
    if let Some(mut child) = child {
        // SAFETY: kill(2) of our own child (`ip netns exec` became tcpdump);
        // SIGINT makes it flush and close the file.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        child.wait()?;
    }
    let text = sh(
        "tcpdump",
        &[
            "-n",
            "-r",
            &pcap.display().to_string(),
            "ip and not src host 198.51.100.2",
        ],
    )?;
    let mut by_source: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
    for line in text.lines() {
        let source = ip_source(line)
            .with_context(|| format!("cannot read a source address in tcpdump's line {line:?}"))?;
        *by_source.entry(source).or_default() += 1;
    }
    let _ = std::fs::remove_file(pcap);
    println!(
        "tcpdump on the outside host's eth0: {} packets received, by source address:",
        text.lines().count()
    );
    for (source, packets) in &by_source {
        println!("  {source:<15} {packets} packets");
    }
    let uplink = Ipv4Addr::new(198, 51, 100, 1);
    if by_source.is_empty() {
        bail!("the capture saw no packets from the node at all");
    }
    if by_source.keys().any(|a| *a != uplink) {
        bail!("the outside host saw source addresses other than the uplink's {uplink}");
    }
    println!("only the uplink address {uplink}: no container address left the node");
    Ok(())
}

/// The source address of a `tcpdump -n` line: "TIME IP SRC[.PORT] > DST...".
fn ip_source(line: &str) -> Option<Ipv4Addr> {
    let mut words = line.split_whitespace();
    words.find(|w| *w == "IP")?;
    let src = words.next()?;
    let parts: Vec<&str> = src.split('.').collect();
    let addr = parts.get(..4)?.join(".");
    addr.parse().ok()
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
