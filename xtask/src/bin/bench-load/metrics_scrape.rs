//! Scrapes of an OpenMetrics endpoint (`ebridge agent --metrics-addr`),
//! open loop: scrape `i` starts at `i * every` whatever the earlier ones
//! are doing (each on its own thread), so a scrape that meets a busy
//! server waits as a Prometheus scrape arriving then would, instead of
//! delaying the ones after it. Each is timed from connect to the end of
//! the body (`Connection: close`), and the values of the named metrics in
//! its body are kept: with the agent's GC figures they tell which scrapes
//! overlapped a GC pass.
use std::{
    io::{Read as _, Write as _},
    net::SocketAddrV4,
    sync::mpsc,
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Result;
use serde_json::{json, Map, Value};

use crate::sys;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The value of the first sample of `name`: a bare metric name (any
/// labels or none), or a name with the start of its label set
/// (`ebridge_packets_total{reason="snat-out",`), which must match the
/// line as written.
fn value_of(body: &str, name: &str) -> Option<f64> {
    body.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let rest = if name.contains('{') {
            &rest[rest.find('}')? + 1..]
        } else if let Some(labelled) = rest.strip_prefix('{') {
            &labelled[labelled.find('}')? + 1..]
        } else {
            rest
        };
        rest.strip_prefix(' ')?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

fn one(to: SocketAddrV4, timeout: Duration, names: &[String]) -> Value {
    let at = unix_now();
    let started = Instant::now();
    let result = (|| -> Result<(u16, String)> {
        let mut s = sys::tcp_connect(to, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n\r\n").as_bytes(),
        )?;
        let mut reply = Vec::new();
        s.read_to_end(&mut reply)?;
        let text = String::from_utf8_lossy(&reply).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Ok((status, text))
    })();
    let ms = started.elapsed().as_secs_f64() * 1e3;
    match result {
        Ok((status, text)) => {
            let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            let values: Map<String, Value> = names
                .iter()
                .filter_map(|n| Some((n.clone(), json!(value_of(body, n)?))))
                .collect();
            json!({"at": at, "ms": ms, "status": status, "bytes": body.len(), "values": values})
        }
        Err(e) => json!({"at": at, "ms": ms, "error": format!("{e:#}")}),
    }
}

pub fn run(
    to: SocketAddrV4,
    count: usize,
    every: Duration,
    timeout: Duration,
    names: &[String],
) -> Result<Value> {
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    let mut threads = Vec::with_capacity(count);
    for i in 0..count {
        let due = start + every * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let (tx, names) = (tx.clone(), names.to_vec());
        threads.push(thread::spawn(move || {
            let _ = tx.send((i, one(to, timeout, &names)));
        }));
    }
    drop(tx);
    for t in threads {
        let _ = t.join();
    }
    let mut scrapes: Vec<(usize, Value)> = rx.iter().collect();
    scrapes.sort_by_key(|(i, _)| *i);
    let errors = scrapes
        .iter()
        .filter(|(_, s)| s.get("error").is_some())
        .count();
    Ok(json!({
        "scrapes": scrapes.into_iter().map(|(_, s)| s).collect::<Vec<_>>(),
        "errors": errors,
        "secs": start.elapsed().as_secs_f64(),
    }))
}

#[cfg(test)]
mod tests {
    use super::value_of;

    #[test]
    fn reads_samples_with_and_without_labels() {
        let body = "# TYPE ebridge_gc_runs counter\nebridge_gc_runs_total 7\nebridge_gc_last_duration_seconds 0.25\nebridge_build_info{version=\"0.1.0\"} 1\n";
        assert_eq!(value_of(body, "ebridge_gc_runs_total"), Some(7.0));
        assert_eq!(
            value_of(body, "ebridge_gc_last_duration_seconds"),
            Some(0.25)
        );
        assert_eq!(value_of(body, "ebridge_build_info"), Some(1.0));
        assert_eq!(value_of(body, "ebridge_gc_runs"), None);
        let stats = "ebridge_packets_total{reason=\"redirect-peer\",verdict=\"redirect\"} 5\nebridge_packets_total{reason=\"snat-out\",verdict=\"redirect\"} 42\n";
        assert_eq!(
            value_of(stats, "ebridge_packets_total{reason=\"snat-out\","),
            Some(42.0)
        );
        assert_eq!(value_of(stats, "ebridge_packets_total"), Some(5.0));
    }
}
