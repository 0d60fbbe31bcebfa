//! containerd 1.6 with `ctr run --cni`, private to one test: its own
//! daemon in a [`Lab`]'s node namespace (CONTAINERD.md's config: root,
//! state and socket in a temp dir, CRI and opt disabled), a process
//! holding a mount namespace in which the CNI conf dir and plugin dir of
//! the test cover `/etc/cni/net.d` and `/opt/cni/bin` (where `ctr` looks,
//! whatever it is told), and [`IMAGE`] imported.
//!
//! ```no_run
//! # use ebridge_tests::{lab::Lab, containerd::Containerd};
//! let lab = Lab::new();
//! let ctd = Containerd::new(&lab); // conf: ctd.conf_dir(), plugins: ctd.plugin_dir(), /usr/lib/cni
//! ctd.add_network(&serde_json::json!({
//!     "cniVersion": "1.0.0", "name": ctd.name("net"),
//!     "plugins": [{"type": "bridge", "bridge": "cni0", "isGateway": true,
//!                  "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.90.0.0/24"}]]}}]}));
//! let mut a = ctd.run("a", &["sleep", "300"]); // foreground `ctr run --cni --rm`
//! a.wait_running();                            // ADD has run
//! let ip = ctd.ip("a");
//! let out = a.stop();                          // task kill -s KILL; ctr runs DEL, exits 137
//! ctd.close().assert_gone();
//! ```
//!
//! The daemon runs in the holder's mount namespace too, so the rootfs
//! mounts its shims make never show in the machine's and go with the
//! namespace. Dropping the fixture kills and removes tasks and
//! containers, the image, stops the daemon and the holder by pid, and
//! removes what containerd 1.6 still puts outside the temp dir: libcni's
//! `/var/lib/cni/results/<network>-<ns>-*`, host-local leases, the
//! cgroups `/sys/fs/cgroup/*/<ns>`, and (the last fixture out, if the
//! tests made it) the shim socket dir `/run/containerd/s`.
use std::{
    collections::BTreeSet,
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    lab::Lab,
    podman::{
        baseline, busybox_archive, cgroup_dirs, end_processes, expect_ok, fixture_dir, networks_in,
        output_within, poll_until, proc_id, processes_of, remove_cgroups, remove_cni_state,
        stop_child, toml_str, try_output_within, write, Footprint, HostDirs, ProcId, CNI_RESULTS,
        COMMAND_LIMIT,
    },
};

pub use crate::podman::IMAGE;

/// A task as `ctr task ls` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: String,
    pub pid: u32,
    /// "RUNNING", "STOPPED", "CREATED", ...
    pub status: String,
}

/// A private containerd; see the module docs.
pub struct Containerd<'a> {
    lab: &'a Lab,
    id: String,
    dir: PathBuf,
    conf_dir: PathBuf,
    plugin_dir: PathBuf,
    holder: Option<Child>,
    daemon: Option<Child>,
    mnt_ns: Option<String>,
    procs: Mutex<Vec<ProcId>>,
    /// Every container id this fixture ran, for their shim sockets.
    ids: Mutex<BTreeSet<String>>,
    execs: AtomicU32,
    host_dirs: Option<HostDirs>,
    closed: bool,
}

impl<'a> Containerd<'a> {
    /// With an empty conf dir and plugin dir of its own
    /// ([`Containerd::conf_dir`], [`Containerd::plugin_dir`]).
    pub fn new(lab: &'a Lab) -> Self {
        Self::build(lab, None)
    }

    /// With the test's `conf_dir` over `/etc/cni/net.d` and `plugin_dir`
    /// over `/opt/cni/bin` (ctr falls back to `/usr/lib/cni`). Both are
    /// bind mounts: what the test writes there later shows.
    pub fn with_cni_dirs(
        lab: &'a Lab,
        conf_dir: impl AsRef<Path>,
        plugin_dir: impl AsRef<Path>,
    ) -> Self {
        Self::build(
            lab,
            Some((
                conf_dir.as_ref().to_path_buf(),
                plugin_dir.as_ref().to_path_buf(),
            )),
        )
    }

    fn build(lab: &'a Lab, dirs: Option<(PathBuf, PathBuf)>) -> Self {
        baseline();
        let host_dirs = HostDirs::enter();
        let (id, dir) = fixture_dir(lab, "cd");
        let (conf_dir, plugin_dir) =
            dirs.unwrap_or_else(|| (dir.join("cni/net.d"), dir.join("cni/bin")));
        // From here on a panic drops `ctd`, which cleans up.
        let mut ctd = Self {
            lab,
            id,
            dir,
            conf_dir,
            plugin_dir,
            holder: None,
            daemon: None,
            mnt_ns: None,
            procs: Mutex::default(),
            ids: Mutex::default(),
            execs: AtomicU32::new(0),
            host_dirs: Some(host_dirs),
            closed: false,
        };
        ctd.start_holder();
        ctd.start_daemon();
        let archive = busybox_archive();
        ctd.ctr_ok(&["image", "import", archive.to_str().expect("utf-8")]);
        ctd
    }

    fn start_holder(&mut self) {
        for d in [&self.conf_dir, &self.plugin_dir] {
            fs::create_dir_all(d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        }
        let over = self.dir.join("over");
        fs::create_dir_all(&over).expect("overlay scratch");
        // A bind mount covers a dir that exists; for one that does not
        // (/opt/cni/bin here) an overlay on its nearest existing parent
        // makes room first, without touching the machine's. Slave
        // propagation: namespaces `ip netns add` mounts later still show.
        let script = r#"
over() {
  if [ ! -d "$2" ]; then
    a=$2; while [ ! -d "$a" ]; do a=$(dirname "$a"); done
    mkdir -p "$3/upper" "$3/work"
    mount -t overlay overlay -o "lowerdir=$a,upperdir=$3/upper,workdir=$3/work" "$a"
    mkdir -p "$2"
  fi
  mount --bind "$1" "$2"
}
over "$0" /etc/cni/net.d "$2/etc"
over "$1" /opt/cni/bin "$2/opt"
exec sleep infinity
"#;
        let log = fs::File::create(self.dir.join("holder.log")).expect("holder log");
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.lab.node))
            .args([
                "unshare",
                "-m",
                "--propagation",
                "slave",
                "sh",
                "-ec",
                script,
            ])
            .arg(&self.conf_dir)
            .arg(&self.plugin_dir)
            .arg(&over)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start the mount namespace holder");
        let pid = child.id();
        self.holder = Some(child);
        // nsenter, unshare and sh each exec the next: the pid stays, and
        // `sleep` means the mounts are in place.
        poll_until(
            "the mount namespace holder",
            Duration::from_secs(10),
            || {
                if let Some(Ok(Some(status))) = self.holder.as_mut().map(|c| c.try_wait()) {
                    panic!(
                        "the mount namespace holder exited ({status}): {}",
                        fs::read_to_string(self.dir.join("holder.log")).unwrap_or_default()
                    );
                }
                let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                (comm.trim() == "sleep").then_some(())
            },
        );
        let ns = fs::read_link(format!("/proc/{pid}/ns/mnt")).expect("holder's mount namespace");
        self.mnt_ns = Some(ns.to_string_lossy().into_owned());
        self.note_proc(pid);
    }

    fn start_daemon(&mut self) {
        let d = &self.dir;
        write(
            &d.join("config.toml"),
            &format!(
                "version = 2\n\
                 root = {}\n\
                 state = {}\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.internal.v1.opt\",\n  \
                 \"io.containerd.snapshotter.v1.aufs\", \"io.containerd.snapshotter.v1.btrfs\",\n  \
                 \"io.containerd.snapshotter.v1.devmapper\", \"io.containerd.snapshotter.v1.zfs\"]\n\
                 [grpc]\n  address = {}\n",
                toml_str(&d.join("root")),
                toml_str(&d.join("state")),
                toml_str(&self.socket()),
            ),
        );
        for sub in ["fifo", "runc", "out", "tmp"] {
            fs::create_dir_all(d.join(sub)).expect("containerd dirs");
        }
        let log = fs::File::create(d.join("containerd.log")).expect("containerd log");
        let child = Command::new("nsenter")
            .arg(format!("--mount={}", self.holder_ns_path()))
            .arg(format!("--net=/run/netns/{}", self.lab.node))
            .arg("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            // The daemon mounts snapshots under $TMPDIR to read a rootfs
            // and its shims write runc's exec specs there: /tmp otherwise.
            .env("TMPDIR", d.join("tmp"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start containerd");
        self.note_proc(child.id());
        self.daemon = Some(child);
        poll_until("containerd's socket", Duration::from_secs(20), || {
            if let Some(Ok(Some(status))) = self.daemon.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "containerd exited ({status}): {}",
                    fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
                );
            }
            let mut cmd = Command::new("ctr");
            cmd.arg("--address").arg(self.socket()).arg("version");
            try_output_within(cmd, Duration::from_secs(5), &self.dir)
                .is_ok_and(|o| o.status.success())
                .then_some(())
        });
    }

    fn note_proc(&self, pid: u32) {
        if let Some(p) = proc_id(pid) {
            self.procs.lock().unwrap_or_else(|e| e.into_inner()).push(p);
        }
    }

    fn note_id(&self, id: &str) {
        self.ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string());
    }

    /// The shim sockets of this fixture's containers. containerd 1.6 puts
    /// them in `/run/containerd/s/` whatever its config says, named
    /// sha256("<address>/<namespace>/<id>"); a shim removes its own when
    /// it exits, but not when it is killed.
    fn shim_sockets(&self) -> Vec<PathBuf> {
        let ids = self.ids.lock().unwrap_or_else(|e| e.into_inner()).clone();
        ids.iter()
            .filter_map(|id| {
                let key = format!("{}/{}/{id}", self.socket().display(), self.id);
                sha256_hex(key.as_bytes()).map(|h| Path::new("/run/containerd/s").join(h))
            })
            .collect()
    }

    fn holder_ns_path(&self) -> String {
        let pid = self.holder.as_ref().expect("holder").id();
        format!("/proc/{pid}/ns/mnt")
    }

    /// containerd's socket (`ctr --address`).
    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    /// The ctr namespace of this fixture (also its id).
    pub fn namespace(&self) -> &str {
        &self.id
    }

    /// The dir seen as `/etc/cni/net.d` (`ebridge cni install --conf-dir`).
    pub fn conf_dir(&self) -> &Path {
        &self.conf_dir
    }

    /// The dir seen as `/opt/cni/bin` (`ebridge cni install --bin-dir`).
    pub fn plugin_dir(&self) -> &Path {
        &self.plugin_dir
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A name unique to this fixture (networks, whose CNI state is
    /// machine-wide, should have one).
    pub fn name(&self, short: &str) -> String {
        format!("{}-{short}", self.id)
    }

    /// Writes `conflist` as `<conf dir>/10-<name>.conflist`; returns the
    /// network's name. ctr uses only the first config file of the dir.
    pub fn add_network(&self, conflist: &Value) -> String {
        let name = conflist["name"]
            .as_str()
            .unwrap_or_else(|| panic!("conflist without a name: {conflist}"))
            .to_string();
        let path = self.conf_dir.join(format!("10-{name}.conflist"));
        write(
            &path,
            &serde_json::to_string_pretty(conflist).expect("json"),
        );
        name
    }

    /// `ctr --address S -n NS ARGS` (from the machine's namespaces: only
    /// `run` needs the node's and the holder's).
    pub fn ctr_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(self.socket())
            .args(["-n", &self.id])
            .args(args)
            .env("TMPDIR", self.dir.join("tmp"));
        cmd
    }

    pub fn ctr(&self, args: &[&str]) -> Output {
        output_within(self.ctr_command(args), COMMAND_LIMIT, &self.dir)
    }

    pub fn ctr_ok(&self, args: &[&str]) -> String {
        expect_ok(&format!("ctr {}", args.join(" ")), self.ctr(args))
    }

    /// `ctr run --cni --rm ARGS` in the node and holder namespaces, as a
    /// Command to spawn; ARGS = [flags..] IMAGE ID [CMD...].
    fn run_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--mount={}", self.holder_ns_path()))
            .arg(format!("--net=/run/netns/{}", self.lab.node))
            .arg("ctr")
            .arg("--address")
            .arg(self.socket())
            .args(["-n", &self.id, "run", "--cni"])
            // ctr mounts the image under $TMPDIR to look users up.
            .env("TMPDIR", self.dir.join("tmp"))
            .arg("--fifo-dir")
            .arg(self.dir.join("fifo"))
            .arg("--runc-root")
            .arg(self.dir.join("runc"))
            .args(args);
        cmd
    }

    /// `ctr run --cni --rm IMAGE ID CMD...` in the foreground: ADD before
    /// the task starts, DEL (with no netns) once it exits, then the
    /// container is removed. The test waits on or stops the handle.
    pub fn run(&self, id: &str, cmd: &[&str]) -> CtrRun<'_, 'a> {
        self.run_with(id, &[], cmd)
    }

    /// [`Containerd::run`] with more `ctr run` flags (`--env K=V`, ...).
    pub fn run_with(&self, id: &str, flags: &[&str], cmd: &[&str]) -> CtrRun<'_, 'a> {
        self.note_id(id);
        let mut args = vec!["--rm"];
        args.extend(flags);
        args.extend([IMAGE, id]);
        args.extend(cmd);
        let out_path = self.dir.join("out").join(format!("{id}.out"));
        let err_path = self.dir.join("out").join(format!("{id}.err"));
        let child = self
            .run_command(&args)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out_path).expect("run stdout"))
            .stderr(fs::File::create(&err_path).expect("run stderr"))
            .spawn()
            .expect("start ctr run");
        CtrRun {
            ctd: self,
            id: id.to_string(),
            child: Some(child),
            out_path,
            err_path,
        }
    }

    /// A foreground run to its end (a command that exits by itself).
    pub fn run_wait(&self, id: &str, cmd: &[&str]) -> Output {
        self.run(id, cmd).wait()
    }

    /// `ctr run -d --cni IMAGE ID CMD...`: ADD, but never DEL (ctr does not
    /// stay to call it); the fixture removes the cached result on drop.
    pub fn run_detached(&self, id: &str, cmd: &[&str]) -> Output {
        self.note_id(id);
        let mut args = vec!["-d", IMAGE, id];
        args.extend(cmd);
        output_within(self.run_command(&args), COMMAND_LIMIT, &self.dir)
    }

    /// `ctr task exec` of CMD in the task ID, to its end.
    pub fn exec(&self, id: &str, cmd: &[&str]) -> Output {
        let exec_id = format!("e{}", self.execs.fetch_add(1, Ordering::SeqCst));
        let fifo = self.dir.join("fifo");
        let mut args = vec![
            "task",
            "exec",
            "--fifo-dir",
            fifo.to_str().expect("utf-8"),
            "--exec-id",
            &exec_id,
            id,
        ];
        args.extend(cmd);
        self.ctr(&args)
    }

    pub fn exec_ok(&self, id: &str, cmd: &[&str]) -> String {
        expect_ok(&format!("exec {id} {}", cmd.join(" ")), self.exec(id, cmd))
    }

    /// `ctr task kill -s SIGNAL ID` (`"KILL"`, `"TERM"`, ...).
    pub fn kill(&self, id: &str, signal: &str) -> Output {
        self.ctr(&["task", "kill", "-s", signal, id])
    }

    pub fn tasks(&self) -> Vec<Task> {
        Self::parse_tasks(&self.ctr_ok(&["task", "ls"]))
    }

    fn parse_tasks(text: &str) -> Vec<Task> {
        text.lines()
            .skip(1)
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some(Task {
                    id: f.next()?.to_string(),
                    pid: f.next()?.parse().ok()?,
                    status: f.next()?.to_string(),
                })
            })
            .collect()
    }

    /// Container ids (`ctr container ls -q`).
    pub fn containers(&self) -> Vec<String> {
        self.ctr_ok(&["container", "ls", "-q"])
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    /// The task's IPv4 address on eth0, as the container sees it.
    pub fn ip(&self, id: &str) -> String {
        let text = self.exec_ok(id, &["ip", "-4", "-o", "addr", "show", "eth0"]);
        text.split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .and_then(|a| a.split('/').next())
            .unwrap_or_else(|| panic!("{id} has no IPv4 address on eth0: {text}"))
            .to_string()
    }

    /// What this fixture has made outside its temp dir so far (and the
    /// temp dir), to check after it is gone.
    pub fn footprint(&self) -> Footprint {
        let marker = format!("{}/", self.dir.display());
        // Shims and container-side helpers started so far.
        for (pid, _) in processes_of(&marker, self.mnt_ns.as_deref()) {
            self.note_proc(pid);
        }
        let mut fp = Footprint {
            fixture: format!("containerd {}", self.id),
            marker,
            mnt_ns: self.mnt_ns.clone(),
            procs: self.procs.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            ..Default::default()
        };
        fp.paths.push(self.dir.clone());
        fp.paths.extend(cgroup_dirs(&self.id));
        fp.paths.extend(self.shim_sockets());
        for (net, data_dirs) in networks_in(&self.conf_dir) {
            fp.prefixes
                .push((CNI_RESULTS.into(), format!("{net}-{}-", self.id)));
            fp.paths.extend(data_dirs);
        }
        fp
    }

    /// Cleans up now and returns what to check is gone
    /// ([`Footprint::assert_gone`]).
    pub fn close(mut self) -> Footprint {
        let fp = self.footprint();
        self.cleanup();
        fp
    }

    fn daemon_alive(&mut self) -> bool {
        matches!(self.daemon.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    fn try_ctr(&self, args: &[&str]) -> Option<Output> {
        try_output_within(self.ctr_command(args), COMMAND_LIMIT, &self.dir).ok()
    }

    fn cleanup(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        let marker = format!("{}/", self.dir.display());
        if self.daemon_alive() {
            let tasks = self
                .try_ctr(&["task", "ls"])
                .map(|o| Self::parse_tasks(&String::from_utf8_lossy(&o.stdout)))
                .unwrap_or_default();
            for t in &tasks {
                // sleep as pid 1 ignores SIGTERM; -f kills and deletes.
                let _ = self.try_ctr(&["task", "rm", "-f", &t.id]);
            }
            let containers = self
                .try_ctr(&["container", "ls", "-q"])
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            for c in containers.split_whitespace() {
                self.note_id(c);
                let _ = self.try_ctr(&["container", "rm", c]);
            }
            let _ = self.try_ctr(&["image", "rm", IMAGE]);
        }
        if let Some(mut daemon) = self.daemon.take() {
            stop_child(&mut daemon, libc::SIGTERM, Duration::from_secs(5));
        }
        if let Some(mut holder) = self.holder.take() {
            stop_child(&mut holder, libc::SIGKILL, Duration::from_secs(5));
        }
        // Shims outlive the daemon while they have a task; what is left
        // in the namespace now would keep its mounts alive.
        let killed = end_processes(&marker, self.mnt_ns.as_deref(), Duration::from_secs(5));
        if !killed.is_empty() {
            eprintln!("containerd {}: killed {killed:?}", self.id);
        }
        for socket in self.shim_sockets() {
            let _ = fs::remove_file(socket);
        }
        for (net, data_dirs) in networks_in(&self.conf_dir) {
            remove_cni_state(&format!("{net}-{}-", self.id), &data_dirs);
        }
        remove_cgroups(&self.id, Duration::from_secs(5));
        let _ = fs::remove_dir_all(&self.dir);
        self.host_dirs.take();
    }
}

impl Drop for Containerd<'_> {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// A foreground `ctr run --cni --rm`. Dropped while running, it kills the
/// task and waits for ctr's DEL, as [`CtrRun::stop`] does.
pub struct CtrRun<'c, 'a> {
    ctd: &'c Containerd<'a>,
    id: String,
    child: Option<Child>,
    out_path: PathBuf,
    err_path: PathBuf,
}

impl CtrRun<'_, '_> {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// ctr's own pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// ctr's exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits until the task runs (ADD has succeeded by then); returns its
    /// pid. Panics with ctr's output if ctr exits first (a failed ADD).
    pub fn wait_running(&mut self) -> u32 {
        poll_until(
            &format!("task {} running", self.id),
            Duration::from_secs(20),
            || {
                if let Some(status) = self.try_wait() {
                    panic!(
                        "ctr run {} exited ({status}) before its task ran: {}{}",
                        self.id,
                        fs::read_to_string(&self.out_path).unwrap_or_default(),
                        fs::read_to_string(&self.err_path).unwrap_or_default()
                    );
                }
                self.ctd
                    .tasks()
                    .into_iter()
                    .find(|t| t.id == self.id && t.status == "RUNNING")
                    .map(|t| t.pid)
            },
        )
    }

    /// Waits (up to 30 s) for ctr to exit; its status and what the task
    /// and ctr wrote.
    pub fn wait(mut self) -> Output {
        self.finish(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `task kill -s KILL`, then [`CtrRun::wait`]: ctr calls DEL and
    /// removes the container, exiting 137.
    pub fn stop(self) -> Output {
        let _ = self.ctd.kill(&self.id, "KILL");
        self.wait()
    }

    fn finish(&mut self, limit: Duration) -> Result<Output, String> {
        let mut child = self.child.take().ok_or("already waited")?;
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("ctr run {} did not exit within {limit:?}", self.id));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout = fs::read(&self.out_path).unwrap_or_default();
        let stderr = fs::read(&self.err_path).unwrap_or_default();
        let _ = fs::remove_file(&self.out_path);
        let _ = fs::remove_file(&self.err_path);
        status.map(|status| Output {
            status,
            stdout,
            stderr,
        })
    }
}

impl Drop for CtrRun<'_, '_> {
    fn drop(&mut self) {
        if self.child.is_none() {
            return;
        }
        if self.try_wait().is_none() {
            let _ = try_output_within(
                self.ctd
                    .ctr_command(&["task", "kill", "-s", "KILL", &self.id]),
                COMMAND_LIMIT,
                &self.ctd.dir,
            );
        }
        let _ = self.finish(Duration::from_secs(10));
    }
}

/// `sha256sum` of `data` in hex (this crate has no hash dependency).
fn sha256_hex(data: &[u8]) -> Option<String> {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(data).ok()?;
    let out = child.wait_with_output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    text.split_whitespace().next().map(str::to_string)
}
