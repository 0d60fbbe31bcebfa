//! Memory of an ebridge setup's pinned maps as the kernel charges it
//! (`bpftool map show` → bytes_memlock), recorded with the setup so the
//! memory figures in the docs come from a command, not from a hand count.
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::util::sh;

/// Map name -> {max_entries, bytes_memlock}, for every map pinned under
/// /sys/fs/bpf/ebridge/<bridge>/ (programs and links there are skipped).
pub fn of_bridge(bridge: &str) -> Map<String, Value> {
    let dir = Path::new("/sys/fs/bpf/ebridge").join(bridge);
    let mut out = Map::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return out;
    };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        let Some(p) = path.to_str() else { continue };
        let Ok(text) = sh("bpftool", &["-j", "map", "show", "pinned", p]) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_string();
        out.insert(
            name,
            json!({
                "type": v["type"],
                "max_entries": v["max_entries"],
                "bytes_memlock": v["bytes_memlock"],
            }),
        );
    }
    out
}
