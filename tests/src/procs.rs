//! Processes the end-to-end tests start inside a lab's namespaces (servers,
//! clients, the agent), stopped when dropped, and typed reads of pinned
//! maps through bpftool (an observer independent of ebridge's own views).
use std::{
    io::Read as _,
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::lab::{ebridge_bin, run_ok, Lab, SERVER_IP};

pub const PY: &str = "/usr/bin/python3";

/// A process in a namespace, killed (SIGTERM, then SIGKILL) when dropped.
pub struct Bg {
    child: Option<Child>,
}

impl Bg {
    /// `ip netns exec NETNS ARGS...`, its output discarded.
    pub fn spawn(netns: &str, args: &[&str]) -> Self {
        let child = Command::new("ip")
            .args(["netns", "exec", netns])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {args:?} in {netns}: {e}"));
        Self { child: Some(child) }
    }

    /// Like `spawn`, keeping stdout to read with [`Bg::wait_output`].
    pub fn spawn_piped(netns: &str, args: &[&str]) -> Self {
        let child = Command::new("ip")
            .args(["netns", "exec", netns])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {args:?} in {netns}: {e}"));
        Self { child: Some(child) }
    }

    /// `ebridge ARGS` in `netns` with only the network namespace entered
    /// (`ip netns exec` would also hide /sys/fs/bpf and its pins), stdout
    /// and stderr kept.
    pub fn ebridge_piped(netns: &str, args: &[&str]) -> Self {
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{netns}"))
            .arg(ebridge_bin())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start ebridge {args:?} in {netns}: {e}"));
        Self { child: Some(child) }
    }

    /// Any command, as it is set up.
    pub fn spawn_with(mut cmd: Command) -> Self {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Self { child: Some(child) }
    }

    /// Python `script` in `netns`, stdout kept.
    pub fn python(netns: &str, script: &str) -> Self {
        Self::spawn_piped(netns, &[PY, "-c", script])
    }

    /// Waits for the process to end; returns (success, stdout, stderr).
    pub fn wait_output(mut self) -> (bool, String, String) {
        let child = self.child.take().expect("running");
        let out = child.wait_with_output().expect("wait");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Whether the process has ended (its output is still there to read).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(Some(_))))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) of our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `ebridge agent` in the lab's node, its stderr kept in a file so a test
/// can read what it logged.
pub struct Agent {
    child: Option<Child>,
    log: PathBuf,
}

impl Agent {
    pub fn start(lab: &Lab, extra: &[&str]) -> Self {
        Self::start_for(lab, &lab.bridge, extra)
    }

    pub fn start_for(lab: &Lab, bridge: &str, extra: &[&str]) -> Self {
        let log = std::env::temp_dir().join(format!("{}-{bridge}-agent.log", lab.id));
        let file = std::fs::File::create(&log).expect("agent log file");
        let bin = ebridge_bin();
        let net = format!("--net=/run/netns/{}", lab.node);
        let child = Command::new("nsenter")
            .args([
                &net,
                bin.to_str().expect("utf-8"),
                "agent",
                "--bridge",
                bridge,
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start the agent");
        Self {
            child: Some(child),
            log,
        }
    }

    /// What the agent wrote to stderr so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        std::fs::File::open(&self.log)
            .and_then(|mut f| f.read_to_string(&mut s))
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", self.log.display()));
        s
    }

    /// Waits up to `secs` for `needle` in the agent's log.
    pub fn wait_for_log(&self, needle: &str, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9 the agent");
            let _ = child.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) of our own child (nsenter execs ebridge).
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    let _ = std::fs::remove_file(&self.log);
                    return;
                }
                thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Every entry of a pinned map of `bridge`, BTF-typed as bpftool prints
/// them (`{"key": ..., "value": ...}`).
pub fn map_dump(bridge: &str, map: &str) -> Vec<Value> {
    let path = format!("/sys/fs/bpf/ebridge/{bridge}/{map}");
    let text = run_ok("bpftool", &["-j", "map", "dump", "pinned", &path]);
    let dump: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("bpftool dump of {path} is not JSON: {e}: {text}"));
    dump.as_array()
        .unwrap_or_else(|| panic!("bpftool dump of {path} is not a list: {text}"))
        .iter()
        .map(|e| {
            let typed = e["formatted"].clone();
            assert!(!typed.is_null(), "{path}: entry without BTF: {e}");
            typed
        })
        .collect()
}

/// The address bytes bpftool prints for a `[u8; 4]` field.
pub fn ip_bytes(v: &Value) -> [u8; 4] {
    let a = v
        .as_array()
        .unwrap_or_else(|| panic!("not an address array: {v}"));
    let mut out = [0u8; 4];
    for (i, b) in a.iter().enumerate().take(4) {
        out[i] = b.as_u64().unwrap_or_else(|| panic!("not a byte: {b}")) as u8;
    }
    out
}

/// A UDP echo server on the lab's server host (SERVER_IP:`port`).
pub fn udp_echo(lab: &Lab, port: u16) -> Bg {
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind(('{SERVER_IP}', {port}))\nwhile True:\n    d, a = s.recvfrom(65535)\n    s.sendto(d, a)\n"
    );
    let bg = Bg::spawn(&lab.server(), &[PY, "-c", &script]);
    thread::sleep(Duration::from_millis(400));
    bg
}

/// One UDP exchange from `netns` (source port `sport`) with the echo on
/// the lab's server (`udp_echo`).
pub fn udp_once(lab: &Lab, netns: &str, sport: u16, port: u16) {
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('0.0.0.0', {sport}))\n\
         s.settimeout(2)\ns.sendto(b'hi', ('{SERVER_IP}', {port}))\nprint(s.recv(10).decode())\n"
    );
    assert_eq!(lab.exec_ok(netns, &[PY, "-c", &script]).trim(), "hi");
}

/// `count` UDP frames (1234 -> 172.17.0.3:7777) out of `netns`'s eth0 with
/// its own MAC and a source address that is not its own, 172.17.0.99: the
/// datapath drops them as `drop-spoofed-ip` (scapy, from Debian's python3).
pub fn send_spoofed(lab: &Lab, netns: &str, count: u32) {
    let script = format!(
        "from scapy.all import Ether, IP, UDP, get_if_hwaddr, sendp\n\
         sendp(Ether(src=get_if_hwaddr('eth0'), dst='ff:ff:ff:ff:ff:ff')/IP(src='172.17.0.99', dst='172.17.0.3')/UDP(sport=1234, dport=7777)/b'forged', iface='eth0', count={count}, verbose=False)\n"
    );
    lab.exec_ok(netns, &[PY, "-c", &script]);
}

/// Sends `mb` MiB of random data over TCP from `client_ns` to a listener
/// in `server_ns` on `server_addr` (IPv4 or IPv6) and fails the test
/// unless what arrived has the same SHA-256.
pub fn tcp_transfer_checked(
    lab: &Lab,
    server_ns: &str,
    client_ns: &str,
    server_addr: &str,
    mb: u32,
) {
    let dir = std::env::temp_dir().join(format!("{}-tcp-{server_ns}", lab.id));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let src = dir.join("payload");
    let dst = dir.join("received");
    run_ok(
        "sh",
        &[
            "-c",
            &format!(
                "head -c {} /dev/urandom > {}",
                u64::from(mb) << 20,
                src.display()
            ),
        ],
    );
    let family = if server_addr.contains(':') {
        "-6"
    } else {
        "-4"
    };
    let server = Command::new("ip")
        .args(["netns", "exec", server_ns, "sh", "-c"])
        .arg(format!(
            "timeout 60 nc {family} -l -p 5001 > {}",
            dst.display()
        ))
        .spawn()
        .expect("server");
    thread::sleep(Duration::from_millis(300));
    lab.exec_ok(
        client_ns,
        &[
            "sh",
            "-c",
            &format!(
                "timeout 60 nc {family} -q 1 -w 10 {server_addr} 5001 < {}",
                src.display()
            ),
        ],
    );
    let status = server.wait_with_output().expect("server exit").status;
    assert!(status.success(), "TCP server failed: {status}");
    let sum = |p: &std::path::Path| {
        run_ok("sha256sum", &[p.to_str().expect("path")])
            .split_whitespace()
            .next()
            .expect("sum")
            .to_string()
    };
    let (sent, received) = (sum(&src), sum(&dst));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(sent, received, "received data differs from what was sent");
}

/// GET `url` from inside `netns` with curl; None until something answers.
pub fn http_get(netns: &str, url: &str) -> Option<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "curl", "-sf", "-m", "2", url])
        .output()
        .expect("curl");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// From local port `sport`, `n` tagged UDP requests to `server`:`port`
/// (either family), each to be answered by its own echo; the client prints
/// "ok N" (`assert_answered` checks it).
pub fn udp_requests(netns: &str, sport: u16, server: &str, port: u16, tag: &str, n: u32) -> Bg {
    let (family, any) = if server.contains(':') {
        ("AF_INET6", "::")
    } else {
        ("AF_INET", "0.0.0.0")
    };
    let script = format!(
        "import socket, time\ns=socket.socket(socket.{family}, socket.SOCK_DGRAM)\n\
         s.bind(('{any}', {sport}))\ns.settimeout(2)\nok=0\n\
         for i in range({n}):\n    m=('{tag}-%d' % i).encode()\n    s.sendto(m, ('{server}', {port}))\n\
         \x20   r, a = s.recvfrom(2048)\n    assert r == m, (r, m)\n    ok += 1\n    time.sleep(0.05)\n\
         print('ok', ok)\n"
    );
    Bg::python(netns, &script)
}

/// Waits for a `udp_requests` client: all `n` answered.
pub fn assert_answered(client: Bg, n: u32, who: &str) {
    let (success, out, err) = client.wait_output();
    assert!(success, "{who}: {out}{err}");
    assert_eq!(out.trim(), format!("ok {n}"), "{who}: {err}");
}
