//! Labelled synthetic access histories for testing the classifier (tests only).

use super::access::{AccessStats, AccessTracker};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    Hot,
    Periodic,
    Bursty,
    Decaying,
    Cold,
}

impl Label {
    pub const ALL: [Label; 5] = [Label::Hot, Label::Periodic, Label::Bursty, Label::Decaying, Label::Cold];
    pub fn name(&self) -> &'static str {
        match self {
            Label::Hot => "hot",
            Label::Periodic => "periodic",
            Label::Bursty => "bursty",
            Label::Decaying => "decaying",
            Label::Cold => "cold",
        }
    }
}

pub struct Case {
    pub label: Label,
    pub stats: AccessStats,
    pub now_ms: i64,
}

/// The histories' generator, shared with the simulator's traces.
pub use crate::sim::rng::SplitMix64 as Rng;

pub fn stats_from_times(times_ms: &[i64]) -> AccessStats {
    let mut t = AccessTracker::default();
    for &ms in times_ms {
        t.record_access("f", ms);
    }
    t.get("f").cloned().unwrap_or_else(|| panic!("no accesses given"))
}

const MIN: f64 = 60_000.0;
const HOUR: f64 = 3_600_000.0;
const DAY: f64 = 86_400_000.0;

fn make(label: Label, rng: &mut Rng) -> Case {
    let mut times = vec![];
    let mut t = 1_700_000_000_000f64;
    let now = match label {
        Label::Hot => {
            let mean = rng.range(1.0, 8.0) * MIN;
            for _ in 0..rng.int(10, 30) {
                times.push(t);
                t += rng.exp(mean).max(1000.0);
            }
            times[times.len() - 1] + rng.range(0.0, 2.0) * MIN
        }
        Label::Periodic => {
            let period = rng.range(1.0, 24.0) * HOUR;
            for _ in 0..rng.int(6, 16) {
                times.push(t);
                t += period * rng.range(0.9, 1.1);
            }
            times[times.len() - 1] + rng.range(0.0, 0.8) * period
        }
        Label::Bursty => {
            let intra = rng.range(10.0, 120.0) * 1000.0;
            let pause = rng.range(2.0, 12.0) * HOUR;
            for _ in 0..rng.int(3, 5) {
                for _ in 0..rng.int(3, 8) {
                    times.push(t);
                    t += rng.exp(intra).max(1000.0);
                }
                t += pause * rng.range(0.5, 1.5);
            }
            times[times.len() - 1] + rng.range(0.0, 1.0) * HOUR
        }
        Label::Decaying => {
            let mut gap = rng.range(1.0, 5.0) * MIN;
            let growth = rng.range(1.6, 3.0);
            for _ in 0..rng.int(6, 12) {
                times.push(t);
                t += gap * rng.range(0.85, 1.15);
                gap *= growth;
            }
            let last_gap = times[times.len() - 1] - times[times.len() - 2];
            times[times.len() - 1] + rng.range(0.0, 0.5) * last_gap
        }
        Label::Cold => {
            for _ in 0..rng.int(1, 3) {
                times.push(t);
                t += rng.range(1.0, 48.0) * HOUR;
            }
            times[times.len() - 1] + rng.range(2.0, 30.0) * DAY
        }
    };
    let ms: Vec<i64> = times.iter().map(|x| x.round() as i64).collect();
    Case { label, stats: stats_from_times(&ms), now_ms: now.round() as i64 }
}

/// `per_label` cases of each label, deterministic for a seed.
pub fn labelled_cases(seed: u64, per_label: usize) -> Vec<Case> {
    let mut rng = Rng::new(seed);
    let mut out = vec![];
    for label in Label::ALL {
        for _ in 0..per_label {
            out.push(make(label, &mut rng));
        }
    }
    out
}
