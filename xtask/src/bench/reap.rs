//! Removes what an earlier run left behind when it was killed outright
//! (SIGKILL skips the guards): only namespaces and ebridge pin directories
//! named by this tool (`ebench<pid>...`) whose process is gone.
use std::path::Path;

use super::ebridge_node;
use crate::util::{sh, sh_quiet};

/// Namespaces of a run are named `<RUN_PREFIX><pid><code>-...`, its
/// bridges (and pin directories) `<RUN_PREFIX><pid><code>`.
pub const RUN_PREFIX: &str = "ebench";

pub fn reap_stale_runs() {
    let namespaces = sh("ip", &["netns", "list"]).unwrap_or_default();
    let namespaces: Vec<&str> = namespaces
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let pins: Vec<String> = std::fs::read_dir("/sys/fs/bpf/ebridge")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    let mut dead: Vec<String> = namespaces
        .iter()
        .copied()
        .chain(pins.iter().map(String::as_str))
        .filter_map(dead_run_id)
        .collect();
    dead.sort();
    dead.dedup();
    for run_id in &dead {
        for bridge in pins
            .iter()
            .filter(|p| dead_run_id(p).as_deref() == Some(run_id))
        {
            // Runs before the scenarios named the node `<run>-ebr-node`.
            let node = if bridge == run_id {
                format!("{run_id}-ebr-node")
            } else {
                format!("{bridge}-node")
            };
            ebridge_node::teardown(&node, bridge);
        }
        let mine: Vec<&str> = namespaces
            .iter()
            .copied()
            .filter(|n| dead_run_id(n).as_deref() == Some(run_id))
            .collect();
        for ns in &mine {
            sh_quiet("ip", &["netns", "del", ns]);
        }
        eprintln!(
            "bench: cleaned up after killed run {run_id}: {}",
            mine.join(" ")
        );
    }
}

/// `ebench<pid>` of a name made by a run whose process no longer exists.
fn dead_run_id(name: &str) -> Option<String> {
    let pid = run_pid(name)?;
    if Path::new("/proc").join(&pid).exists() {
        return None;
    }
    Some(format!("{RUN_PREFIX}{pid}"))
}

/// The pid in `ebench<pid>`, `ebench<pid>-...` or `ebench<pid><code>...`
/// (codes start with a letter).
fn run_pid(name: &str) -> Option<String> {
    let rest = name.strip_prefix(RUN_PREFIX)?;
    let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let after = &rest[pid.len()..];
    let follows_ok = after.is_empty()
        || after.starts_with('-')
        || after.starts_with(|c: char| c.is_ascii_lowercase());
    (!pid.is_empty() && follows_ok).then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::run_pid;

    #[test]
    fn names_of_a_run() {
        assert_eq!(run_pid("ebench123").as_deref(), Some("123"));
        assert_eq!(run_pid("ebench123-ebr-node").as_deref(), Some("123"));
        assert_eq!(run_pid("ebench123ne").as_deref(), Some("123"));
        assert_eq!(run_pid("ebench123ne-c1").as_deref(), Some("123"));
        assert_eq!(run_pid("ebench").as_deref(), None);
        assert_eq!(run_pid("ebenchx1").as_deref(), None);
        assert_eq!(run_pid("xb-node").as_deref(), None);
    }
}
