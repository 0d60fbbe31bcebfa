//! Samples per (metric, setup), their median and spread, ratios between
//! setups and the targets; and the one-off costs (fill time, publishing
//! time) with their own samples.
use std::collections::BTreeMap;

use super::{metric::Metric, scenario::Setup};

/// Samples keyed by (metric, setup), each tagged with its repetition so
/// setups measured back to back can be paired.
#[derive(Default)]
pub struct Results {
    samples: BTreeMap<(Metric, Setup), Vec<(u32, f64)>>,
}

pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub samples: Vec<f64>,
}

pub fn spread_of(samples: Vec<f64>) -> Option<Spread> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.clone();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Spread {
        median,
        min: v[0],
        max: v[n - 1],
        samples,
    })
}

impl Results {
    pub fn add(&mut self, metric: Metric, setup: Setup, rep: u32, value: f64) {
        self.samples
            .entry((metric, setup))
            .or_default()
            .push((rep, value));
    }

    pub fn spread(&self, metric: Metric, setup: Setup) -> Option<Spread> {
        let samples = self.samples.get(&(metric, setup))?;
        spread_of(samples.iter().map(|s| s.1).collect())
    }

    /// a/b within each repetition (measured back to back, so a slow
    /// stretch of the machine hits both), summarised.
    pub fn paired_ratios(&self, metric: Metric, a: Setup, b: Setup) -> Option<Spread> {
        let a = self.samples.get(&(metric, a))?;
        let b = self.samples.get(&(metric, b))?;
        let ratios: Vec<f64> = a
            .iter()
            .filter_map(|(rep, va)| {
                let vb = b.iter().find(|(r, _)| r == rep)?.1;
                (vb != 0.0).then(|| va / vb)
            })
            .collect();
        spread_of(ratios)
    }

    /// median(a) / median(b).
    pub fn ratio(&self, metric: Metric, a: Setup, b: Setup) -> Option<f64> {
        let a = self.spread(metric, a)?.median;
        let b = self.spread(metric, b)?.median;
        (b != 0.0).then(|| a / b)
    }
}

#[derive(Clone, Copy)]
pub enum Bound {
    AtLeast(f64),
    AtMost(f64),
}

/// `subject`'s median over `against`'s median must satisfy `bound`.
pub struct Target {
    pub metric: Metric,
    pub subject: Setup,
    pub against: Setup,
    pub bound: Bound,
}

impl Target {
    pub fn describe(&self) -> String {
        let (op, x) = self.op();
        if self.subject == Setup::Ebridge {
            format!("{op} {x:.2}x {}", self.against.key())
        } else {
            format!("{}/{} {op} {x:.2}", self.subject.key(), self.against.key())
        }
    }

    pub fn ratio_of(&self) -> String {
        format!("{}/{}", self.subject.key(), self.against.key())
    }

    pub fn op(&self) -> (&'static str, f64) {
        match self.bound {
            Bound::AtLeast(x) => (">=", x),
            Bound::AtMost(x) => ("<=", x),
        }
    }

    fn holds(&self, ratio: f64) -> bool {
        match self.bound {
            Bound::AtLeast(x) => ratio >= x,
            Bound::AtMost(x) => ratio <= x,
        }
    }

    /// Judged on the ratio of the medians (None: no data).
    pub fn check(&self, r: &Results) -> Option<Verdict> {
        let ratio = r.ratio(self.metric, self.subject, self.against)?;
        let met = self.holds(ratio);
        // With run-to-run noise near the bound, the verdict can flip from
        // one repetition to the next; say so rather than hide it.
        let every_rep = r
            .paired_ratios(self.metric, self.subject, self.against)
            .is_some_and(|p| p.samples.iter().all(|&x| self.holds(x) == met));
        Some(Verdict {
            ratio,
            met,
            every_rep,
        })
    }
}

pub struct Verdict {
    pub ratio: f64,
    pub met: bool,
    /// Each repetition's own ratio gives the same verdict.
    pub every_rep: bool,
}

impl Verdict {
    pub fn describe(&self) -> &'static str {
        match (self.met, self.every_rep) {
            (true, true) => "met",
            (true, false) => "met (missed in some reps)",
            (false, true) => "NOT MET",
            (false, false) => "NOT MET (met in some reps)",
        }
    }
}

/// A cost measured outside the rounds (seconds to fill a table, to
/// publish 1,000 ports...), with its samples.
pub struct Extra {
    pub key: String,
    pub label: String,
    pub unit: &'static str,
    pub samples: Vec<f64>,
    /// How it was measured.
    pub how: String,
}

impl Extra {
    pub fn new(key: &str, label: &str, unit: &'static str, how: &str) -> Self {
        Self {
            key: key.into(),
            label: label.into(),
            unit,
            samples: Vec::new(),
            how: how.into(),
        }
    }

    pub fn spread(&self) -> Option<Spread> {
        spread_of(self.samples.clone())
    }
}
