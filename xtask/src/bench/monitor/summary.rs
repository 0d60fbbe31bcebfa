//! The monitor scenario's figures: medians and spreads of the paired
//! samples, the ratio per pair, the storm's and the monitor's own figures,
//! and the targets (issue 10): the rate ratios judged on the median of the
//! per-pair ratios (the builds, or monitor attached and not, measured back
//! to back); the scrape times are scrape_summary.rs's.
use serde_json::{json, Value};

use super::{
    paired::{Part, Taken},
    scrape_summary::ScrapeStats,
};
use crate::bench::{
    metric::fmt_num,
    stats::{spread_of, Spread, Verdict},
};

fn spread_json(s: &Option<Spread>) -> Value {
    s.as_ref().map_or(
        Value::Null,
        |s| json!({"median": s.median, "min": s.min, "max": s.max, "samples": s.samples}),
    )
}

fn cell(s: &Option<Spread>, scale: f64) -> String {
    s.as_ref().map_or("-".into(), |s| {
        format!(
            "{} [{} - {}]",
            fmt_num(s.median * scale),
            fmt_num(s.min * scale),
            fmt_num(s.max * scale)
        )
    })
}

pub struct PartStats {
    pub part: Part,
    pub a: Option<Spread>,
    pub b: Option<Spread>,
    /// a / b of each pair whose samples are both valid.
    pub ratios: Option<Spread>,
}

impl PartStats {
    pub fn of(taken: &[Taken], part: Part) -> Self {
        let side = |s: usize| -> Vec<(u32, f64)> {
            taken
                .iter()
                .filter(|t| t.part == part && t.side == s)
                .filter_map(|t| Some((t.pair, t.pps?)))
                .collect()
        };
        let (a, b) = (side(0), side(1));
        let ratios = a
            .iter()
            .filter_map(|(pair, va)| {
                let vb = b.iter().find(|(p, _)| p == pair)?.1;
                (vb > 0.0).then(|| va / vb)
            })
            .collect();
        PartStats {
            part,
            a: spread_of(a.iter().map(|x| x.1).collect()),
            b: spread_of(b.iter().map(|x| x.1).collect()),
            ratios: spread_of(ratios),
        }
    }

    pub fn verdict(&self) -> Option<Verdict> {
        let r = self.ratios.as_ref()?;
        let bound = self.part.bound();
        let met = r.median >= bound;
        Some(Verdict {
            ratio: r.median,
            met,
            every_rep: r.samples.iter().all(|&x| (x >= bound) == met),
        })
    }

    fn target_json(&self) -> Value {
        let v = self.verdict();
        let [a, b] = self.part.side_keys();
        json!({
            "metric": format!("udp_64b_rate_{}", self.part.key()),
            "label": format!("UDP 64 B packet rate, {}", self.part.label()),
            "ratio_of": format!("{a}/{b}"),
            "judged_on": "median of the per-pair ratios",
            "op": ">=",
            "threshold": self.part.bound(),
            "ratio": v.as_ref().map(|v| v.ratio),
            "met": v.as_ref().is_some_and(|v| v.met),
            "same_verdict_in_every_rep": v.as_ref().map(|v| v.every_rep),
        })
    }

    fn to_json(&self) -> Value {
        let [a, b] = self.part.side_keys();
        let medians = match (&self.a, &self.b) {
            (Some(a), Some(b)) if b.median > 0.0 => Some(a.median / b.median),
            _ => None,
        };
        json!({
            "label": self.part.label(),
            "unit": "packets/s",
            a: spread_json(&self.a),
            b: spread_json(&self.b),
            "ratio_per_pair": spread_json(&self.ratios),
            "ratio_of_medians": medians,
        })
    }
}

/// Storm figures of the monitor-attached samples: what the monitor printed
/// and reported lost per second of storm, its CPU share; the storm's rate.
pub fn storm_figures(taken: &[Taken]) -> Vec<(&'static str, Option<Spread>)> {
    let storm: Vec<&Taken> = taken
        .iter()
        .filter(|t| t.part == Part::Storm && t.pps.is_some())
        .collect();
    let attached: Vec<&Taken> = storm.iter().copied().filter(|t| t.side == 0).collect();
    let per_storm_sec =
        |t: &Taken, v: f64| v / t.raw["storm"]["storm_secs"].as_f64().unwrap_or(1.0);
    let of = |f: &dyn Fn(&Taken) -> Option<f64>, from: &[&Taken]| {
        spread_of(from.iter().filter_map(|t| f(t)).collect())
    };
    vec![
        (
            "storm frames/s sent (both variants)",
            of(&|t| t.raw["storm"]["report"]["pps"].as_f64(), &storm),
        ),
        (
            "monitor: storm drop events printed /s",
            of(
                &|t| {
                    Some(per_storm_sec(
                        t,
                        t.raw["monitor"]["storm_drop_events"].as_f64()?,
                    ))
                },
                &attached,
            ),
        ),
        (
            "monitor: events reported lost /s",
            of(
                &|t| {
                    Some(per_storm_sec(
                        t,
                        t.raw["monitor"]["lost_reported"].as_f64()?,
                    ))
                },
                &attached,
            ),
        ),
        (
            "datapath: lost events counted /s",
            of(
                &|t| {
                    Some(per_storm_sec(
                        t,
                        t.raw["storm"]["datapath_lost_events"].as_f64()?,
                    ))
                },
                &attached,
            ),
        ),
        (
            "monitor CPU share while attached",
            of(
                &|t| {
                    Some(
                        t.raw["monitor"]["monitor_cpu_secs"].as_f64()?
                            / t.raw["monitor"]["attached_secs"].as_f64()?,
                    )
                },
                &attached,
            ),
        ),
    ]
}

pub fn print(parts: &[PartStats], storm: &[(&str, Option<Spread>)], scrape: &ScrapeStats) {
    println!(
        "\nUDP 64 B packet rate [kpps], median [min - max]; a/b = median of the per-pair ratios [min - max]"
    );
    println!("{:<36}{:<44}{:<44}{:<22}target", "path", "a", "b", "a/b");
    for p in parts {
        let [a, b] = p.part.side_keys();
        let verdict = p.verdict().map_or("no data".to_string(), |v| {
            format!(">= {:.2}: {}", p.part.bound(), v.describe())
        });
        println!(
            "{:<36}{:<44}{:<44}{:<22}{verdict}",
            p.part.label(),
            format!("{a} {}", cell(&p.a, 1e-3)),
            format!("{b} {}", cell(&p.b, 1e-3)),
            p.ratios.as_ref().map_or("-".into(), |r| format!(
                "{:.3}x [{:.2}-{:.2}]",
                r.median, r.min, r.max
            )),
        );
    }
    println!("\nduring the storm (monitor-attached samples unless said), median [min - max]");
    for (label, s) in storm {
        println!("  {label:<42}{}", cell(s, 1.0));
    }
    scrape.print();
}

pub fn parts_json(parts: &[PartStats]) -> Value {
    Value::Object(
        parts
            .iter()
            .map(|p| (p.part.key().to_string(), p.to_json()))
            .collect(),
    )
}

pub fn targets_json(parts: &[PartStats], scrape: &ScrapeStats) -> Vec<Value> {
    let mut t: Vec<Value> = parts.iter().map(PartStats::target_json).collect();
    t.extend(scrape.targets_json());
    t
}
