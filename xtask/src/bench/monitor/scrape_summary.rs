//! The scrape times: p50, p99 and max per phase, and for the million
//! entries split into scrapes between GC passes and scrapes during one;
//! the target (issue 10: < 50 ms with 1 M NAT entries) is judged on the
//! p99 of both, so it holds whenever Prometheus happens to scrape.
use serde_json::{json, Value};

use super::scrape_phase::{Phase, Scrape};
use crate::bench::{
    metric::fmt_num,
    stats::{spread_of, Spread},
};

pub const TARGET_MS: f64 = 50.0;

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub struct Latency {
    pub label: String,
    pub n: usize,
    /// p50, p99, max in ms.
    pub p: Option<(f64, f64, f64)>,
}

impl Latency {
    fn of<'a>(label: &str, scrapes: impl Iterator<Item = &'a Scrape>) -> Self {
        let mut ms: Vec<f64> = scrapes
            .filter(|s| s.error.is_none())
            .map(|s| s.ms)
            .collect();
        ms.sort_by(f64::total_cmp);
        Latency {
            label: label.into(),
            n: ms.len(),
            p: (!ms.is_empty()).then(|| (pct(&ms, 0.5), pct(&ms, 0.99), ms[ms.len() - 1])),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "label": self.label,
            "scrapes": self.n,
            "p50_ms": self.p.map(|p| p.0),
            "p99_ms": self.p.map(|p| p.1),
            "max_ms": self.p.map(|p| p.2),
        })
    }

    fn met(&self) -> Option<bool> {
        self.p.map(|p| p.1 < TARGET_MS)
    }

    fn target_json(&self, key: &str) -> Value {
        json!({
            "metric": key,
            "label": format!("scrape time p99, {}", self.label),
            "op": "<",
            "threshold": TARGET_MS,
            "unit": "ms",
            "value": self.p.map(|p| p.1),
            "met": self.met().unwrap_or(false),
        })
    }
}

pub struct ScrapeStats {
    pub rows: Vec<Latency>,
    pub between: Latency,
    pub during: Latency,
    /// Durations of the GC passes over the million entries.
    pub gc_secs: Option<Spread>,
}

impl ScrapeStats {
    pub fn of(phases: &[Phase]) -> Self {
        let full = phases.iter().find(|p| p.key == "1m");
        let scrapes = |during: bool| {
            full.into_iter()
                .flat_map(move |p| p.scrapes.iter().filter(move |s| p.during_gc(s) == during))
        };
        ScrapeStats {
            rows: phases
                .iter()
                .map(|p| Latency::of(&format!("{}: every scrape", p.label), p.scrapes.iter()))
                .collect(),
            between: Latency::of("1M entries, between GC passes", scrapes(false)),
            during: Latency::of("1M entries, during a GC pass", scrapes(true)),
            gc_secs: spread_of(
                full.map(|p| p.passes.iter().map(|g| g.secs).collect())
                    .unwrap_or_default(),
            ),
        }
    }

    pub fn targets_json(&self) -> Vec<Value> {
        vec![
            self.between.target_json("scrape_p99_between_gc_passes"),
            self.during.target_json("scrape_p99_during_gc_pass"),
        ]
    }

    pub fn to_json(&self) -> Value {
        json!({
            "phases": self.rows.iter().map(Latency::to_json).collect::<Vec<_>>(),
            "between_gc_passes": self.between.to_json(),
            "during_gc_pass": self.during.to_json(),
            "gc_pass_secs": self.gc_secs.as_ref().map_or(Value::Null, |s| json!({
                "median": s.median, "min": s.min, "max": s.max, "samples": s.samples,
            })),
        })
    }

    pub fn print(&self) {
        println!(
            "\n{:<62}{:<6}{:<9}{:<9}max",
            "scrape time [ms]", "n", "p50", "p99"
        );
        for l in self.rows.iter().chain([&self.between, &self.during]) {
            match l.p {
                Some((p50, p99, max)) => println!(
                    "  {:<60}{:<6}{:<9}{:<9}{}",
                    l.label,
                    l.n,
                    fmt_num(p50),
                    fmt_num(p99),
                    fmt_num(max)
                ),
                None => println!("  {:<60}0", l.label),
            }
        }
        match &self.gc_secs {
            Some(s) => println!(
                "  GC pass over 1M entries (ebridge_gc_last_duration_seconds): {} [{} - {}] s over {} passes",
                fmt_num(s.median),
                fmt_num(s.min),
                fmt_num(s.max),
                s.samples.len()
            ),
            None => println!("  no GC pass over 1M entries seen"),
        }
        for l in [&self.between, &self.during] {
            let verdict = match l.met() {
                Some(true) => "met",
                Some(false) => "NOT MET",
                None => "no data",
            };
            println!("  p99 < {TARGET_MS} ms, {}: {verdict}", l.label);
        }
    }
}
