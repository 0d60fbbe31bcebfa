//! Load tools run as children inside a namespace (`nsenter --net=...`,
//! which execs, so the child is the tool itself). Every wait has a
//! deadline, and a child still running when its handle drops is killed —
//! or, if the bench itself is killed outright, by the kernel
//! (PR_SET_PDEATHSIG), so no agent or server outlives the run.
use std::{
    ffi::OsStr,
    io::{BufRead as _, BufReader},
    os::unix::process::CommandExt as _,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        mpsc::{self, Receiver, RecvTimeoutError},
        Arc, Mutex,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use super::signal;

const POLL: Duration = Duration::from_millis(10);

/// Pids of the children not reaped yet. Their CPU time is the bench's own
/// (cpu.rs), but getrusage(RUSAGE_CHILDREN) only counts it once they are
/// reaped: a server or agent that runs across many samples is read from
/// /proc/PID/stat instead.
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn forget(pid: u32) {
    if let Ok(mut live) = LIVE.lock() {
        live.retain(|&p| p != pid);
    }
}

/// CPU time of the children not reaped yet, in µs.
pub fn live_children_cpu_usec() -> u64 {
    let pids = LIVE.lock().map(|p| p.clone()).unwrap_or_default();
    pids.into_iter().map(cpu_usec).sum()
}

/// Fields of /proc/PID/stat after the command name (which may hold
/// spaces): state is the first, utime and stime the 12th and 13th.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// The process state letter (R, S, T, Z...), None if it is gone.
pub fn state(pid: u32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// User + system CPU time of a process, in µs.
pub fn cpu_usec(pid: u32) -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    stat_fields(pid)
        .map(|f| {
            let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            (ticks(11) + ticks(12)) * 1_000_000 / hz
        })
        .unwrap_or(0)
}

pub struct Proc {
    what: String,
    child: Child,
    lines: Receiver<String>,
    /// What the child wrote on stderr so far (an agent's log, a tool's
    /// error), filled by a reader thread.
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<JoinHandle<()>>,
}

impl Proc {
    /// Starts `program args` in the named network namespace.
    pub fn spawn_in<S: AsRef<OsStr>>(
        ns: &str,
        what: &str,
        program: impl AsRef<OsStr>,
        args: &[S],
    ) -> Result<Self> {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{ns}"))
            .arg("--")
            .arg(program)
            .args(args);
        // SAFETY: prctl is async-signal-safe; nothing else runs in the
        // forked child before exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {what} in {ns}"))?;
        if let Ok(mut live) = LIVE.lock() {
            live.push(child.id());
        }
        let stdout = child.stdout.take().context("child has no stdout")?;
        let stderr_pipe = child.stderr.take().context("child has no stderr")?;
        // Reader threads keep the pipes drained, so a chatty child never
        // blocks on a full pipe while we poll it.
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let stderr_reader = Some(thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines().map_while(Result::ok) {
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&line);
                    s.push('\n');
                }
            }
        }));
        Ok(Self {
            what: format!("{what} (in {ns})"),
            child,
            lines,
            stderr,
            stderr_reader,
        })
    }

    /// Waits until the child prints a line containing `needle` (a server
    /// saying it is bound).
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.lines.recv_timeout(POLL * 5) {
                Ok(line) if line.contains(needle) => return Ok(()),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(status) = self.try_reap()? {
                        return Err(self.failed(status));
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.wait_exit(Duration::from_secs(2))?;
                    return Err(self.failed(status));
                }
            }
            if signal::interrupted() {
                self.kill();
                signal::check()?;
            }
            if Instant::now() >= deadline {
                self.kill();
                bail!("{} was not ready within {timeout:?}", self.what);
            }
        }
    }

    /// Waits for the child to exit on its own and returns its stdout; a
    /// failure carries its stderr.
    pub fn finish(mut self, timeout: Duration) -> Result<String> {
        let status = self.wait_exit(timeout)?;
        let mut out = Vec::new();
        // The reader thread ends at EOF, which follows the exit closely.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(1)) {
            out.push(line);
        }
        if !status.success() {
            return Err(self.failed(status));
        }
        Ok(out.join("\n"))
    }

    /// Stops a server that runs until told to.
    pub fn stop(mut self) {
        self.kill();
    }

    /// What it wrote on stderr so far.
    pub fn stderr_so_far(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_reap()? {
                return Ok(status);
            }
            if signal::interrupted() {
                self.kill();
                signal::check()?;
            }
            if Instant::now() >= deadline {
                self.kill();
                bail!("{} did not finish within {timeout:?}; killed", self.what);
            }
            thread::sleep(POLL);
        }
    }

    fn try_reap(&mut self) -> Result<Option<ExitStatus>> {
        let status = self.child.try_wait()?;
        if status.is_some() {
            forget(self.child.id());
        }
        Ok(status)
    }

    fn kill(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        forget(self.child.id());
    }

    /// The error for an exit that was not expected, with the stderr.
    fn failed(&mut self, status: ExitStatus) -> anyhow::Error {
        // The reader ends at EOF, which follows the exit.
        if let Some(h) = self.stderr_reader.take() {
            let _ = h.join();
        }
        let stderr = self.stderr_so_far();
        anyhow::anyhow!("{} exited ({status}): {}", self.what, stderr.trim())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}
