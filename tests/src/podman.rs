//! podman 4.3 with the CNI backend, private to one test and run inside a
//! [`Lab`]'s node namespace; also the pieces `containerd.rs` shares with
//! it: the busybox image archive, the host directories runtimes create on
//! first use, bounded command runs and [`Footprint`], the proof that
//! nothing a fixture made is left.
//!
//! ```no_run
//! # use ebridge_tests::{lab::Lab, podman::{Podman, IMAGE}};
//! let lab = Lab::new();
//! let pm = Podman::new(&lab); // CNI plugins: pm.plugin_dir(), then /usr/lib/cni
//! let net = pm.add_network(&serde_json::json!({
//!     "cniVersion": "1.0.0", "name": pm.name("net"),
//!     "plugins": [{"type": "bridge", "bridge": "cni0", "isGateway": true,
//!                  "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.89.0.0/24"}]]}}]}));
//! pm.run_ok(&["run", "-d", "--name", "web", "--network", &net, IMAGE, "httpd", "-f", "-p", "80"]);
//! let addr = pm.ip("web", &net);
//! pm.close().assert_gone(); // or just let it drop, also when the test panics
//! ```
//!
//! What podman keeps lives in one temporary directory: containers.conf
//! (this machine's settings from PODMAN.md), storage.conf (vfs: no mounts
//! to leak), the network config dir, the image store, runc's state (a
//! `runc --root` wrapper) and podman's tmp dir. What it still makes
//! elsewhere is named and removed on drop: the container namespaces
//! `/run/netns/netns-*`, libcni's `/var/lib/cni/results/<network>-*`,
//! host-local's `/var/lib/cni/networks/<network>` and the cgroups under a
//! cgroup parent of the fixture's own.
use std::{
    collections::BTreeSet,
    fs::{self, File, OpenOptions},
    io::Write as _,
    os::{fd::AsRawFd, unix::fs::MetadataExt as _},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        Mutex, OnceLock,
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::lab::Lab;

/// The busybox image both fixtures load (`/bin/sh` by default, PATH=/bin).
pub const IMAGE: &str = "localhost/bb:latest";

/// `sh -c` of a busybox HTTP server in [`IMAGE`] answering `GET /` with
/// `body` on port 80.
pub fn httpd_script(body: &str) -> String {
    format!("echo {body} > /www/index.html && exec httpd -f -p 80 -h /www")
}

/// busybox-static's binary: no shared libraries to copy into the image.
const BUSYBOX: &str = "/bin/busybox";
const RUNC: &str = "/usr/sbin/runc";
/// Bumped whenever the archive's content changes, so a cached one from an
/// older harness is not reused.
const ARCHIVE_VERSION: u32 = 1;
/// Any podman or ctr command taking longer is stuck (a hung plugin).
pub const COMMAND_LIMIT: Duration = Duration::from_secs(60);

static FIXTURES: AtomicU32 = AtomicU32::new(0);
static SCRATCH: AtomicU32 = AtomicU32::new(0);

/// Where every fixture's temporary directory lives, next to the cached
/// image archive and the host-directory bookkeeping all test processes
/// share.
pub fn temp_root() -> PathBuf {
    std::env::temp_dir().join("ebridge-rt")
}

/// A fresh fixture id (`<lab id>-<kind><n>`) and its empty temporary dir.
pub(crate) fn fixture_dir(lab: &Lab, kind: &str) -> (String, PathBuf) {
    let id = format!(
        "{}-{kind}{}",
        lab.id,
        FIXTURES.fetch_add(1, Ordering::SeqCst)
    );
    let dir = temp_root().join(&id);
    // A dir of the same name can only be a leftover of a killed run of
    // a process that had this pid: nothing of it is alive.
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    (id, dir)
}

/// Writes `text` to `path`, failing the test with the path on error.
pub(crate) fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// A TOML basic string (JSON's escaping is a subset of TOML's).
pub(crate) fn toml_str(path: &Path) -> String {
    serde_json::to_string(path.to_str().expect("utf-8 path")).expect("string")
}

// ---------------------------------------------------------------- image

const ARCHIVE_SCRIPT: &str = r#"
import hashlib, io, json, subprocess, sys, tarfile
busybox, out = sys.argv[1], sys.argv[2]
applets = subprocess.run([busybox, "--list"], check=True, capture_output=True, text=True).stdout.split()
def entry(name, **kw):
    ti = tarfile.TarInfo(name)
    ti.mtime = 0
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti
layer = io.BytesIO()
with tarfile.open(fileobj=layer, mode="w", format=tarfile.USTAR_FORMAT) as t:
    for d, mode in [("bin", 0o755), ("etc", 0o755), ("root", 0o700), ("tmp", 0o1777), ("www", 0o755)]:
        t.addfile(entry(d, type=tarfile.DIRTYPE, mode=mode))
    data = open(busybox, "rb").read()
    t.addfile(entry("bin/busybox", size=len(data), mode=0o755), io.BytesIO(data))
    for a in sorted(set(applets) - {"busybox"}):
        t.addfile(entry("bin/" + a, type=tarfile.SYMTYPE, linkname="busybox", mode=0o777))
    for name, text in [("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"),
                       ("etc/group", "root:x:0:\nnogroup:x:65534:\n")]:
        b = text.encode()
        t.addfile(entry(name, size=len(b), mode=0o644), io.BytesIO(b))
layer = layer.getvalue()
layer_sha = hashlib.sha256(layer).hexdigest()
config = json.dumps({"architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
                     "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
                     "rootfs": {"type": "layers", "diff_ids": ["sha256:" + layer_sha]}}).encode()
config_sha = hashlib.sha256(config).hexdigest()
manifest = json.dumps([{"Config": config_sha + ".json", "RepoTags": ["localhost/bb:latest"],
                        "Layers": [layer_sha + "/layer.tar"]}]).encode()
with tarfile.open(out, mode="w", format=tarfile.USTAR_FORMAT) as t:
    t.addfile(entry(layer_sha, type=tarfile.DIRTYPE, mode=0o755))
    for name, b in [(layer_sha + "/layer.tar", layer), (config_sha + ".json", config), ("manifest.json", manifest)]:
        t.addfile(entry(name, size=len(b), mode=0o644), io.BytesIO(b))
"#;

/// A docker-archive (`docker save` layout) of [`IMAGE`]: busybox-static
/// with its applet links, passwd, group, `/tmp` and an empty `/www`.
/// `podman load` and `ctr image import` both take it. Built once per
/// test process and cached under [`temp_root`] (keyed by the busybox
/// binary), so parallel threads wait for one build and parallel
/// processes each either reuse a finished archive or rename their own
/// identical one into place: nobody reads a half-written file.
pub fn busybox_archive() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let meta = fs::metadata(BUSYBOX)
            .unwrap_or_else(|e| panic!("{BUSYBOX} (busybox-static): {e}; run cargo xtask setup"));
        let root = temp_root();
        fs::create_dir_all(&root).expect("temp root");
        let name = format!(
            "busybox-{}-{}-v{ARCHIVE_VERSION}.tar",
            meta.len(),
            meta.mtime()
        );
        let path = root.join(&name);
        if path.exists() {
            return path;
        }
        let partial = root.join(format!(".{name}.{}", std::process::id()));
        let out = Command::new(crate::procs::PY)
            .args(["-c", ARCHIVE_SCRIPT, BUSYBOX])
            .arg(&partial)
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "building the busybox archive failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        fs::rename(&partial, &path).expect("archive into place");
        path
    })
    .clone()
}

// ------------------------------------------------------------- commands

/// Runs `cmd` with its output in files under `scratch` (a daemon it
/// starts may inherit and keep open a pipe, never a file), killing it
/// after `limit`. Err says what went wrong; for Drop, which must not panic.
pub(crate) fn try_output_within(
    mut cmd: Command,
    limit: Duration,
    scratch: &Path,
) -> Result<Output, String> {
    let n = SCRATCH.fetch_add(1, Ordering::SeqCst);
    let out_path = scratch.join(format!(".cmd{n}.out"));
    let err_path = scratch.join(format!(".cmd{n}.err"));
    let out = File::create(&out_path).map_err(|e| format!("{}: {e}", out_path.display()))?;
    let err = File::create(&err_path).map_err(|e| format!("{}: {e}", err_path.display()))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("{cmd:?} did not finish within {limit:?}"));
            }
            Err(e) => break Err(format!("waiting for {cmd:?}: {e}")),
        }
    };
    let stdout = fs::read(&out_path).unwrap_or_default();
    let stderr = fs::read(&err_path).unwrap_or_default();
    let _ = fs::remove_file(&out_path);
    let _ = fs::remove_file(&err_path);
    match status {
        Ok(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        Err(e) => Err(format!(
            "{e}; stderr so far: {}",
            String::from_utf8_lossy(&stderr)
        )),
    }
}

pub(crate) fn output_within(cmd: Command, limit: Duration, scratch: &Path) -> Output {
    try_output_within(cmd, limit, scratch).unwrap_or_else(|e| panic!("{e}"))
}

/// Panics with the command's output unless it succeeded; returns stdout.
pub(crate) fn expect_ok(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Calls `f` every 50 ms until it gives a value; panics naming `what`
/// after `limit`.
pub fn poll_until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

// ------------------------------------------------------------ processes

/// A process as (pid, start time in clock ticks since boot): a pid can be
/// reused, the pair cannot while the machine runs.
pub type ProcId = (u32, u64);

/// `pid`'s start time, None once it is gone (and reaped).
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; fields after it
    // are plain: state is field 3, starttime field 22.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

pub(crate) fn proc_id(pid: u32) -> Option<ProcId> {
    start_time(pid).map(|t| (pid, t))
}

fn alive(p: ProcId) -> bool {
    start_time(p.0) == Some(p.1)
}

/// A process that has exited but was not reaped yet.
fn zombie(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .unwrap_or(false)
}

/// Every process whose command line mentions `marker`, or whose mount
/// namespace is `mnt_ns` (as `readlink /proc/PID/ns/mnt` shows it), except
/// zombies (they hold nothing but a pid; this machine's init reaps
/// orphans about once a second).
pub(crate) fn processes_of(marker: &str, mnt_ns: Option<&str>) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return found;
    };
    let me = std::process::id();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me || zombie(pid) {
            continue;
        }
        let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        let in_ns = mnt_ns.is_some_and(|ns| {
            fs::read_link(format!("/proc/{pid}/ns/mnt")).is_ok_and(|l| l.to_str() == Some(ns))
        });
        if in_ns || cmdline.contains(marker) {
            found.push((pid, cmdline.trim_end().to_string()));
        }
    }
    found
}

/// Waits up to `grace` for the processes [`processes_of`] finds to end,
/// then SIGKILLs those left, by pid. Returns what had to be killed.
pub(crate) fn end_processes(marker: &str, mnt_ns: Option<&str>, grace: Duration) -> Vec<String> {
    let deadline = Instant::now() + grace;
    loop {
        let left = processes_of(marker, mnt_ns);
        if left.is_empty() {
            return Vec::new();
        }
        if Instant::now() >= deadline {
            for (pid, _) in &left {
                // SAFETY: kill(2); these run with our files or in our
                // mount namespace, so a runtime of this fixture started them.
                unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
            }
            return left.into_iter().map(|(p, c)| format!("{p} {c}")).collect();
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Asks `child` (one of ours) to stop with `signal`, then SIGKILL after
/// `grace`; reaps it.
pub(crate) fn stop_child(child: &mut std::process::Child, signal: i32, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    // SAFETY: kill(2) of our own, not yet reaped, child.
    unsafe { libc::kill(child.id() as i32, signal) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

// --------------------------------------------------------------- cgroups

/// `/sys/fs/cgroup/<hierarchy>/<name>` for every mounted hierarchy (this
/// machine has the hybrid layout: v1 controllers plus `unified`).
pub(crate) fn cgroup_dirs(name: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir("/sys/fs/cgroup")
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path().join(name))
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// Removes the cgroup `name` and the cgroups below it in every hierarchy,
/// retrying for a while: a cgroup goes only once its last task has exited.
/// Tasks still in it after the first try are killed: only this fixture's
/// containers are put there, and one whose shim or conmon died (killed
/// above, or crashed) would otherwise run on, orphaned.
pub(crate) fn remove_cgroups(name: &str, grace: Duration) {
    let deadline = Instant::now() + grace;
    loop {
        let mut left = false;
        for dir in cgroup_dirs(name) {
            if !dir.exists() {
                continue;
            }
            let children: Vec<PathBuf> = fs::read_dir(&dir)
                .map(|d| {
                    d.flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path())
                        .collect()
                })
                .unwrap_or_default();
            for child in &children {
                if fs::remove_dir(child).is_err() && child.exists() {
                    kill_tasks(child);
                }
            }
            if fs::remove_dir(&dir).is_err() && dir.exists() {
                kill_tasks(&dir);
                left = true;
            }
        }
        if !left || Instant::now() >= deadline {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// SIGKILLs every process in the cgroup `dir` (not below it).
fn kill_tasks(dir: &Path) {
    let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        // SAFETY: kill(2) of a process in a cgroup only this fixture's
        // containers are put in.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

// ------------------------------------------------------ CNI bookkeeping

/// What a network config dir names: (network, host-local data dirs of
/// it). Both runtimes read `*.conf`, `*.conflist` and `*.json`.
pub(crate) fn networks_in(conf_dir: &Path) -> Vec<(String, Vec<PathBuf>)> {
    let mut nets = Vec::new();
    let Ok(dir) = fs::read_dir(conf_dir) else {
        return nets;
    };
    for entry in dir.flatten() {
        let path = entry.path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !matches!(ext, "conf" | "conflist" | "json") {
            continue;
        }
        let Some(conf) = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        else {
            continue;
        };
        let Some(name) = conf["name"].as_str() else {
            continue;
        };
        let plugins = match conf["plugins"].as_array() {
            Some(list) => list.clone(),
            None => vec![conf.clone()],
        };
        let data_dirs = plugins
            .iter()
            .filter(|p| p["ipam"]["type"] == "host-local")
            .map(|p| {
                let base = p["ipam"]["dataDir"]
                    .as_str()
                    .unwrap_or("/var/lib/cni/networks");
                Path::new(base).join(name)
            })
            .collect();
        nets.push((name.to_string(), data_dirs));
    }
    nets.sort();
    nets
}

/// Removes libcni's cached results `/var/lib/cni/results/<prefix>*` and
/// the host-local leases `dirs`.
pub(crate) fn remove_cni_state(result_prefix: &str, data_dirs: &[PathBuf]) {
    if let Ok(dir) = fs::read_dir(CNI_RESULTS) {
        for entry in dir.flatten() {
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(result_prefix))
            {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    for d in data_dirs {
        let _ = fs::remove_dir_all(d);
    }
}

pub(crate) const CNI_RESULTS: &str = "/var/lib/cni/results";

// -------------------------------------------------- shared host dirs

/// Directories the runtimes create on first use and never remove, shared
/// by every fixture of every test process: libcni's cache, host-local's
/// default data dir, containerd's hard-coded shim socket dir. Deepest
/// first, the order they can be removed in.
const HOST_DIRS: &[&str] = &[
    "/var/lib/cni/results",
    "/var/lib/cni/networks",
    "/var/lib/cni",
    "/run/containerd/s",
    "/run/containerd",
];

/// A fixture's registration as a user of [`HOST_DIRS`]. The first fixture
/// to find one of them missing records it as the harness's; the last
/// fixture to leave (of any process: a shared flock held for each
/// fixture's life) removes the recorded ones that are empty. So a dir
/// that existed before the tests is never removed, and none is removed
/// while another fixture may be about to use it. Tests that have plugins
/// write there without a fixture (calling a plugin directly) can hold one
/// too.
pub struct HostDirs {
    presence: File,
}

fn flock(f: &File, op: i32) -> bool {
    // SAFETY: flock(2) on an open file of ours.
    unsafe { libc::flock(f.as_raw_fd(), op) == 0 }
}

fn lock_file(name: &str) -> std::io::Result<File> {
    let root = temp_root();
    fs::create_dir_all(&root)?;
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(root.join(name))
}

fn read_record(path: &Path) -> BTreeSet<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_record(path: &Path, made: &BTreeSet<String>) {
    if made.is_empty() {
        let _ = fs::remove_file(path);
    } else if let Ok(mut f) = File::create(path) {
        for d in made {
            let _ = writeln!(f, "{d}");
        }
    }
}

impl HostDirs {
    pub fn enter() -> Self {
        // The mutex orders entering against the last one leaving: nobody
        // registers between "I am the last" and the removal.
        let mutex = lock_file("host-dirs.mutex").expect("host-dirs.mutex");
        assert!(flock(&mutex, libc::LOCK_EX), "flock host-dirs.mutex");
        let record = temp_root().join("host-dirs-made");
        let mut made = read_record(&record);
        for d in HOST_DIRS {
            if !Path::new(d).exists() {
                made.insert(d.to_string());
            }
        }
        write_record(&record, &made);
        let presence = lock_file("host-dirs.presence").expect("host-dirs.presence");
        assert!(flock(&presence, libc::LOCK_SH), "flock host-dirs.presence");
        drop(mutex);
        Self { presence }
    }
}

impl Drop for HostDirs {
    fn drop(&mut self) {
        flock(&self.presence, libc::LOCK_UN);
        let Ok(mutex) = lock_file("host-dirs.mutex") else {
            return;
        };
        if !flock(&mutex, libc::LOCK_EX) {
            return;
        }
        if !flock(&self.presence, libc::LOCK_EX | libc::LOCK_NB) {
            return; // another fixture is alive; the last one tidies
        }
        let record = temp_root().join("host-dirs-made");
        let mut made = read_record(&record);
        for d in HOST_DIRS {
            if made.contains(*d) {
                // Only empty ones go: remove_dir refuses the others.
                let _ = fs::remove_dir(d);
            }
        }
        made.retain(|d| Path::new(d).exists());
        write_record(&record, &made);
    }
}

// ------------------------------------------------------------ footprint

/// Machine paths no fixture may create (each runtime's default state it
/// is pointed away from). Checked against how they were when the first
/// fixture of this process started.
const MACHINE_PATHS: &[&str] = &[
    "/var/lib/containers",
    "/run/containers",
    "/run/libpod",
    "/run/runc",
    "/var/lib/containerd",
    "/run/containerd/fifo",
    "/run/containerd/runc",
    "/run/containerd/io.containerd.runtime.v2.task",
    "/opt/containerd",
    "/opt/cni",
];

struct Baseline {
    absent: Vec<&'static str>,
    etc_cni: Vec<String>,
}

fn listing(dir: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Taken when the first fixture of the process starts.
pub(crate) fn baseline() {
    base();
}

fn base() -> &'static Baseline {
    static BASE: OnceLock<Baseline> = OnceLock::new();
    BASE.get_or_init(|| Baseline {
        absent: MACHINE_PATHS
            .iter()
            .copied()
            .filter(|p| !Path::new(p).exists())
            .collect(),
        etc_cni: listing("/etc/cni/net.d"),
    })
}

/// Everything a fixture knows it made outside itself, to check it is gone
/// after the fixture was dropped or closed.
#[derive(Debug, Clone, Default)]
pub struct Footprint {
    /// "podman t123x0-pm0", for messages.
    pub fixture: String,
    /// Paths that must not exist: the temp dir, cgroups, namespaces,
    /// host-local lease dirs.
    pub paths: Vec<PathBuf>,
    /// (dir, prefix): no entry of dir may start with prefix (libcni's
    /// cached results).
    pub prefixes: Vec<(PathBuf, String)>,
    /// Processes that must have ended and been reaped.
    pub procs: Vec<ProcId>,
    /// No process may mention this in its command line, and no mount
    /// point or source may contain it: the temp dir with a trailing `/`.
    pub marker: String,
    /// No process may be left in this mount namespace.
    pub mnt_ns: Option<String>,
}

impl Footprint {
    /// What is still there, one line each.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        for p in &self.paths {
            if p.symlink_metadata().is_ok() {
                left.push(format!("path {}", p.display()));
            }
        }
        for (dir, prefix) in &self.prefixes {
            if let Ok(d) = fs::read_dir(dir) {
                for e in d.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name.starts_with(prefix.as_str()) {
                        left.push(format!("file {}", dir.join(name).display()));
                    }
                }
            }
        }
        for &p in &self.procs {
            if alive(p) {
                let state = if zombie(p.0) { " (zombie)" } else { "" };
                left.push(format!("process {}{state}", p.0));
            }
        }
        for (pid, cmd) in processes_of(&self.marker, self.mnt_ns.as_deref()) {
            left.push(format!("process {pid}: {cmd}"));
        }
        for line in fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
        {
            if line.contains(self.marker.as_str()) {
                left.push(format!("mount {line}"));
            }
        }
        let base = base();
        for p in &base.absent {
            if Path::new(p).exists() {
                left.push(format!("machine path {p} (absent before the tests)"));
            }
        }
        let now = listing("/etc/cni/net.d");
        if now != base.etc_cni {
            left.push(format!(
                "/etc/cni/net.d changed: {:?} -> {now:?}",
                base.etc_cni
            ));
        }
        left
    }

    /// Waits (up to 15 s: this machine's init reaps orphaned conmons and
    /// shims only about once a second) until nothing is left; panics with
    /// the list otherwise.
    pub fn assert_gone(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = self.leftovers();
            if left.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                panic!("{} left behind:\n  {}", self.fixture, left.join("\n  "));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

// --------------------------------------------------------------- podman

/// A container as `podman ps -a` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub name: String,
    /// "running", "exited", "created", ...
    pub state: String,
}

#[derive(Default)]
struct Seen {
    procs: BTreeSet<ProcId>,
    netns: BTreeSet<PathBuf>,
}

/// podman with private settings and storage, always run in the lab's node
/// namespace (`nsenter --net`: `ip netns exec` would remount /sys and hide
/// bpffs from the plugin). Dropping it removes every container (`rm -f -t
/// 0`), the networks' CNI state, the cgroups and the temp dir, also when
/// the test panicked.
pub struct Podman<'a> {
    lab: &'a Lab,
    id: String,
    dir: PathBuf,
    plugin_dir: PathBuf,
    default_network: String,
    seen: Mutex<Seen>,
    host_dirs: Option<HostDirs>,
    closed: bool,
}

impl<'a> Podman<'a> {
    /// With an empty plugin dir of its own ([`Podman::plugin_dir`]) first
    /// in `cni_plugin_dirs`, then `/usr/lib/cni` (the reference plugins).
    pub fn new(lab: &'a Lab) -> Self {
        Self::build(lab, None)
    }

    /// With `plugin_dir` first in `cni_plugin_dirs`, then `/usr/lib/cni`.
    pub fn with_plugin_dir(lab: &'a Lab, plugin_dir: impl AsRef<Path>) -> Self {
        Self::build(lab, Some(plugin_dir.as_ref().to_path_buf()))
    }

    fn build(lab: &'a Lab, plugin_dir: Option<PathBuf>) -> Self {
        baseline();
        let host_dirs = HostDirs::enter();
        let (id, dir) = fixture_dir(lab, "pm");
        let plugin_dir = plugin_dir.unwrap_or_else(|| dir.join("cni-bin"));
        // From here on a panic drops `pm`, which cleans up.
        let pm = Self {
            lab,
            default_network: format!("{id}-default"),
            id,
            dir,
            plugin_dir,
            seen: Mutex::default(),
            host_dirs: Some(host_dirs),
            closed: false,
        };
        pm.configure();
        pm.load_image();
        pm
    }

    fn configure(&self) {
        let d = &self.dir;
        for sub in ["net", "tmp", "storage/root", "storage/run", "runc-state"] {
            fs::create_dir_all(d.join(sub)).expect("podman dirs");
        }
        fs::create_dir_all(&self.plugin_dir).expect("plugin dir");
        // runc keeps its state in /run/runc unless told otherwise, and
        // containers.conf has no runtime flags: a wrapper is the runtime.
        let runc = d.join("runc");
        write(
            &runc,
            &format!(
                "#!/bin/sh\nexec {RUNC} --root {} \"$@\"\n",
                d.join("runc-state").display()
            ),
        );
        fs::set_permissions(&runc, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod runc wrapper");
        // The limits and runtime PODMAN.md says this machine needs; the
        // default network gets a name of this fixture so its host-local
        // leases are this fixture's too.
        write(
            &d.join("containers.conf"),
            &format!(
                "[containers]\n\
                 default_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
                 [engine]\n\
                 cgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\n\
                 events_logfile_path = {}\n\
                 runtime = \"runc\"\n\
                 tmp_dir = {}\n\
                 image_copy_tmp_dir = {}\n\
                 lock_type = \"file\"\n\
                 [engine.runtimes]\n\
                 runc = [{}]\n\
                 [network]\n\
                 network_backend = \"cni\"\n\
                 cni_plugin_dirs = [{}, \"/usr/lib/cni\"]\n\
                 network_config_dir = {}\n\
                 default_network = \"{}\"\n",
                toml_str(&d.join("events.log")),
                toml_str(&d.join("tmp")),
                toml_str(&d.join("tmp")),
                toml_str(&runc),
                toml_str(&self.plugin_dir),
                toml_str(&d.join("net")),
                self.default_network,
            ),
        );
        write(
            &d.join("storage.conf"),
            &format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = {}\nrunroot = {}\n",
                toml_str(&d.join("storage/root")),
                toml_str(&d.join("storage/run")),
            ),
        );
    }

    fn load_image(&self) {
        let archive = busybox_archive();
        // Any image copy writes containers/image's blob-info cache to
        // /var/lib/containers/cache, and `load` unpacks the archive into
        // /var/tmp whatever TMPDIR and image_copy_tmp_dir say (podman
        // 4.3): the load gets a private /var/lib and /var/tmp that vanish
        // with it.
        let mut cmd = self.base_command();
        cmd.args(["unshare", "-m", "sh", "-ec"])
            .arg(
                "mount -t tmpfs ebridge-test /var/lib && mount -t tmpfs ebridge-test /var/tmp \
                 && exec podman load -q -i \"$0\"",
            )
            .arg(&archive);
        let out = output_within(cmd, COMMAND_LIMIT, &self.dir);
        expect_ok("podman load", out);
    }

    /// `nsenter --net=<node>` with podman's environment, no program yet.
    fn base_command(&self) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.lab.node))
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            // Image copies spill to $TMPDIR, /var/tmp without it.
            .env("TMPDIR", self.dir.join("tmp"))
            // Either would make podman a remote client of some other podman.
            .env_remove("CONTAINER_HOST")
            .env_remove("CONTAINER_CONNECTION");
        cmd
    }

    /// `podman ARGS` as a Command to spawn (a foreground `run` to kill,
    /// say); `run`/`create` get the fixture's `--cgroup-parent`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.base_command();
        cmd.arg("podman");
        if let Some((&sub @ ("run" | "create"), rest)) = args.split_first() {
            // cgroupfs would put every container under /libpod_parent,
            // shared and never removed; this parent is removed on drop.
            cmd.arg(sub)
                .arg(format!("--cgroup-parent=/{}", self.id))
                .args(rest);
        } else {
            cmd.args(args);
        }
        cmd
    }

    /// `podman ARGS` in the node namespace; its output whatever the status.
    pub fn run(&self, args: &[&str]) -> Output {
        output_within(self.command(args), COMMAND_LIMIT, &self.dir)
    }

    /// `podman ARGS`, which must succeed; its stdout.
    pub fn run_ok(&self, args: &[&str]) -> String {
        expect_ok(&format!("podman {}", args.join(" ")), self.run(args))
    }

    /// `podman exec CTR CMD...`
    pub fn exec(&self, ctr: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["exec", ctr];
        args.extend(cmd);
        self.run(&args)
    }

    pub fn exec_ok(&self, ctr: &str, cmd: &[&str]) -> String {
        let mut args = vec!["exec", ctr];
        args.extend(cmd);
        self.run_ok(&args)
    }

    /// `podman inspect CTR`, the container's object.
    pub fn inspect(&self, ctr: &str) -> Value {
        let text = self.run_ok(&["inspect", "--type", "container", ctr]);
        let mut v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("podman inspect {ctr}: not JSON: {e}: {text}"));
        v[0].take()
    }

    /// The container's address on `network`, as podman took it from the
    /// last plugin's result.
    pub fn ip(&self, ctr: &str, network: &str) -> String {
        let v = self.inspect(ctr);
        let ip = v["NetworkSettings"]["Networks"][network]["IPAddress"]
            .as_str()
            .unwrap_or_default();
        assert!(
            !ip.is_empty(),
            "{ctr} has no address on {network}: {}",
            v["NetworkSettings"]
        );
        ip.to_string()
    }

    /// `podman rm -f -t 0 CTR` (no 10 s SIGTERM grace).
    pub fn rm_f(&self, ctr: &str) -> Output {
        self.run(&["rm", "-f", "-t", "0", ctr])
    }

    /// Every container of this fixture, running or not.
    pub fn containers(&self) -> Vec<Container> {
        Self::parse_ps(&self.run_ok(&["ps", "-a", "--format", "json"]))
    }

    fn parse_ps(text: &str) -> Vec<Container> {
        let v: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("podman ps: not JSON: {e}: {text}"));
        v.as_array()
            .map(|list| {
                list.iter()
                    .map(|c| Container {
                        id: c["Id"].as_str().unwrap_or_default().to_string(),
                        name: c["Names"][0].as_str().unwrap_or_default().to_string(),
                        state: c["State"].as_str().unwrap_or_default().to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Writes `conflist` (its `name` names the file) into the network config
    /// dir; returns the network's name.
    pub fn add_network(&self, conflist: &Value) -> String {
        let name = conflist["name"]
            .as_str()
            .unwrap_or_else(|| panic!("conflist without a name: {conflist}"))
            .to_string();
        let path = self.conf_dir().join(format!("{name}.conflist"));
        write(
            &path,
            &serde_json::to_string_pretty(conflist).expect("json"),
        );
        name
    }

    /// A name unique to this fixture (networks, whose CNI state is
    /// machine-wide, should have one).
    pub fn name(&self, short: &str) -> String {
        format!("{}-{short}", self.id)
    }

    /// podman's `network_config_dir` (`ebridge cni install --conf-dir`).
    pub fn conf_dir(&self) -> PathBuf {
        self.dir.join("net")
    }

    /// The first of `cni_plugin_dirs` (`ebridge cni install --bin-dir`).
    pub fn plugin_dir(&self) -> &Path {
        &self.plugin_dir
    }

    /// The fixture's temporary directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The node namespace podman runs in.
    pub fn node(&self) -> &str {
        &self.lab.node
    }

    fn node_alive(&self) -> bool {
        Path::new(&format!("/run/netns/{}", self.lab.node)).exists()
    }

    /// Notes the conmon, container process and namespace of every
    /// container there is now, for the cleanup and the footprint.
    fn learn(&self) -> Result<(), String> {
        let out = try_output_within(
            self.command(&["ps", "-aq", "--no-trunc"]),
            COMMAND_LIMIT,
            &self.dir,
        )?;
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let mut args = vec!["inspect", "--type", "container"];
        args.extend(ids.iter().map(String::as_str));
        let out = try_output_within(self.command(&args), COMMAND_LIMIT, &self.dir)?;
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        for c in v.as_array().into_iter().flatten() {
            for key in ["ConmonPid", "Pid"] {
                if let Some(p) = c["State"][key]
                    .as_u64()
                    .filter(|&p| p > 0)
                    .and_then(|p| proc_id(p as u32))
                {
                    seen.procs.insert(p);
                }
            }
            if let Some(ns) = c["NetworkSettings"]["SandboxKey"]
                .as_str()
                .filter(|s| !s.is_empty())
            {
                seen.netns.insert(PathBuf::from(ns));
            }
        }
        Ok(())
    }

    /// What this fixture has made outside its temp dir so far (and the
    /// temp dir), to check after it is gone. Call it after the test made
    /// its containers and networks (or use [`Podman::close`]).
    pub fn footprint(&self) -> Footprint {
        let _ = self.learn();
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut fp = Footprint {
            fixture: format!("podman {}", self.id),
            marker: format!("{}/", self.dir.display()),
            ..Default::default()
        };
        fp.paths.push(self.dir.clone());
        fp.paths.extend(cgroup_dirs(&self.id));
        fp.paths.extend(seen.netns.iter().cloned());
        fp.procs.extend(seen.procs.iter().copied());
        for (net, data_dirs) in self.networks() {
            fp.prefixes.push((CNI_RESULTS.into(), format!("{net}-")));
            fp.paths.extend(data_dirs);
        }
        fp
    }

    /// The conflists' networks and podman's default network.
    fn networks(&self) -> Vec<(String, Vec<PathBuf>)> {
        let mut nets = networks_in(&self.conf_dir());
        if !nets.iter().any(|(n, _)| *n == self.default_network) {
            nets.push((
                self.default_network.clone(),
                vec![Path::new("/var/lib/cni/networks").join(&self.default_network)],
            ));
        }
        nets
    }

    /// Cleans up now and returns what to check is gone
    /// ([`Footprint::assert_gone`]).
    pub fn close(mut self) -> Footprint {
        let fp = self.footprint();
        self.cleanup();
        fp
    }

    fn cleanup(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        let marker = format!("{}/", self.dir.display());
        // Without the node namespace podman would have to run (and call
        // the plugins' DEL) in the machine's own: never. Then only what
        // can be removed by pid and path goes.
        if self.node_alive() {
            let _ = self.learn();
            let _ = try_output_within(
                self.command(&["rm", "-a", "-f", "-t", "0"]),
                COMMAND_LIMIT,
                &self.dir,
            );
        }
        // conmon, and the `podman container cleanup` it starts when a
        // container exits, may outlive `rm`; they still use the plugin
        // (DEL), the config and the storage.
        let killed = end_processes(&marker, None, Duration::from_secs(10));
        if !killed.is_empty() {
            eprintln!("podman {}: killed {killed:?}", self.id);
        }
        let seen = std::mem::take(&mut *self.seen.lock().unwrap_or_else(|e| e.into_inner()));
        for ns in &seen.netns {
            if ns.exists() {
                let c = ns.to_str().unwrap_or_default();
                // SAFETY: umount2(2) of a namespace bind mount podman made
                // for one of this fixture's containers.
                let _ = std::ffi::CString::new(c)
                    .map(|c| unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) });
                let _ = fs::remove_file(ns);
            }
        }
        for (net, data_dirs) in self.networks() {
            remove_cni_state(&format!("{net}-"), &data_dirs);
        }
        remove_cgroups(&self.id, Duration::from_secs(5));
        let _ = fs::remove_dir_all(&self.dir);
        self.host_dirs.take();
    }
}

impl Drop for Podman<'_> {
    fn drop(&mut self) {
        self.cleanup();
    }
}
