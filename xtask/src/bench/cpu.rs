//! How much CPU something other than the benchmark used during a
//! measurement. On a 2-core box one compile running next to the bench
//! halves a packet rate, so each sample carries this share and disturbed
//! samples are taken again.
//!
//! foreign = (user + nice + system time of the whole machine, /proc/stat)
//!         - (user + system time of this process and of its children:
//!            the load tools, servers and ebridge agents, reaped or not,
//!            see proc.rs; an agent's time is the product's own cost)
//! Softirq time is left out on both sides: it is the datapath's own work,
//! accounted separately because the kernel has IRQ time accounting.
//! Processes that are the bench's doing without being its children —
//! podman's conmons and containers (cni), which daemonize away — are
//! counted as ours through their cgroups (`count_cgroup_as_ours`).
use std::{path::PathBuf, sync::Mutex, time::Instant};

use anyhow::{bail, Context as _, Result};

#[derive(Clone, Copy)]
pub struct Snapshot {
    at: Instant,
    machine_ticks: u64,
    ours_usec: u64,
}

fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

fn online_cpus() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as f64
}

fn rusage_usec(who: libc::c_int) -> u64 {
    // SAFETY: a valid out-pointer to a zeroed rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return 0;
    }
    let us = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000 + tv.tv_usec as u64;
    us(ru.ru_utime) + us(ru.ru_stime)
}

/// cpuacct cgroups whose CPU time is the bench's own.
static OURS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Counts the CPU time of everything in the cgroup `name` (and below it)
/// as the bench's own until the guard is dropped.
pub fn count_cgroup_as_ours(name: &str) -> CgroupCounted {
    let path = PathBuf::from("/sys/fs/cgroup/cpuacct")
        .join(name)
        .join("cpuacct.usage");
    if let Ok(mut ours) = OURS.lock() {
        ours.push(path.clone());
    }
    CgroupCounted(path)
}

pub struct CgroupCounted(PathBuf);

impl Drop for CgroupCounted {
    fn drop(&mut self) {
        if let Ok(mut ours) = OURS.lock() {
            ours.retain(|p| *p != self.0);
        }
    }
}

/// CPU time of the cgroups counted as ours, in µs (0 for one that does
/// not exist yet: podman makes it with the first container).
fn cgroups_usec() -> u64 {
    let paths = OURS.lock().map(|p| p.clone()).unwrap_or_default();
    paths
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok()?.trim().parse::<u64>().ok())
        .map(|ns| ns / 1000)
        .sum()
}

pub fn snapshot() -> Result<Snapshot> {
    let stat = std::fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("/proc/stat has no cpu line")?;
    // cpu user nice system idle iowait irq softirq steal ...
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let machine_ticks = fields.iter().take(3).sum();
    Ok(Snapshot {
        at: Instant::now(),
        machine_ticks,
        ours_usec: rusage_usec(libc::RUSAGE_CHILDREN)
            + rusage_usec(libc::RUSAGE_SELF)
            + super::proc::live_children_cpu_usec()
            + cgroups_usec(),
    })
}

/// Share of the machine's CPU capacity used by others between two
/// snapshots, 0.0 ..= 1.0.
pub fn foreign_share(before: &Snapshot, after: &Snapshot) -> f64 {
    let wall = (after.at - before.at).as_secs_f64();
    if wall <= 0.0 {
        return 0.0;
    }
    let machine = after.machine_ticks.saturating_sub(before.machine_ticks) as f64 / ticks_per_sec();
    let ours = after.ours_usec.saturating_sub(before.ours_usec) as f64 / 1e6;
    ((machine - ours) / (wall * online_cpus())).clamp(0.0, 1.0)
}

/// Waits, at most `max`, for half a second in which others use at most
/// `limit` of the CPU; true if it came.
pub fn wait_for_quiet(limit: f64, max: std::time::Duration) -> Result<bool> {
    let deadline = Instant::now() + max;
    loop {
        let before = snapshot()?;
        std::thread::sleep(std::time::Duration::from_millis(500));
        if foreign_share(&before, &snapshot()?) <= limit {
            return Ok(true);
        }
        super::signal::check()?;
        if Instant::now() >= deadline {
            return Ok(false);
        }
    }
}

/// Two CPUs this process may run on: client and server get one each for
/// streams; on a one-CPU box both get the same.
pub fn two_cpus() -> Result<[usize; 2]> {
    // SAFETY: cpu_set_t is plain data, zero is an empty set, and
    // sched_getaffinity fills at most its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        bail!("sched_getaffinity: {}", std::io::Error::last_os_error());
    }
    // SAFETY: CPU_ISSET reads the set filled above, within its size.
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect();
    match cpus.as_slice() {
        [] => bail!("no CPU in this process's affinity mask"),
        [only] => Ok([*only, *only]),
        [a, b, ..] => Ok([*a, *b]),
    }
}
