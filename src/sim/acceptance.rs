//! The simulator's acceptance over many seeds: every shipped trace, and the independently shaped
//! developer fortnight at three hot capacities, each replayed on a set of seeds. The claim is per
//! trace: the mean hot hit ratio within 5 points of Bélády's optimum, above LRU on the mean and on
//! at least 8 of 10 seeds, and migrations per 1,000 reads not above LRU's. Tuning used seeds 0-9;
//! seeds 100-109 are the held-out check.

use serde::Serialize;

use super::{simulate, traces, SimOptions, TraceEvent, OURS};

/// Seeds the engine was tuned on.
pub const TUNE_SEEDS: std::ops::Range<u64> = 0..10;
/// Seeds never looked at while tuning.
pub const HELD_OUT_SEEDS: std::ops::Range<u64> = 100..110;

/// Working days in a recorded trace (bench/policy.js's `RECORD_DAYS`).
pub const RECORDED_DAYS: u32 = 30;

/// One trace at one hot capacity.
#[derive(Clone)]
pub struct Case {
    pub name: &'static str,
    pub days: u32,
    pub capacity_frames: u64,
    pub build: fn(u64, u32) -> Vec<TraceEvent>,
}

/// The trace recorded through `recordTrace` on seed `seed` of bench/policy.js's workload, from
/// `bench/traces/` in the source tree (empty when it is not there: run from a checkout).
pub fn recorded(seed: u64, _days: u32) -> Vec<TraceEvent> {
    let path = format!("{}/bench/traces/recorded-{seed}.jsonl", env!("CARGO_MANIFEST_DIR"));
    super::load_trace(&path).unwrap_or_default()
}

/// The shipped traces (7 days, 100 hot frames), the fortnight at 15, 30 and 60 hot frames, and
/// the recorded traces at 10, 20 and 40.
pub fn cases() -> Vec<Case> {
    let c = |name, days, capacity_frames, build| Case { name, days, capacity_frames, build };
    let r = |name, capacity_frames| Case { name, days: RECORDED_DAYS, capacity_frames, build: recorded };
    vec![
        c("sessions", 7, 100, traces::sessions as fn(u64, u32) -> Vec<TraceEvent>),
        c("periodic", 7, 100, traces::periodic),
        c("read-once", 7, 100, traces::read_once),
        c("mixed", 7, 100, traces::mixed),
        c("fortnight@15", 14, 15, traces::fortnight),
        c("fortnight@30", 14, 30, traces::fortnight),
        c("fortnight@60", 14, 60, traces::fortnight),
        r("recorded@10", 10),
        r("recorded@20", 20),
        r("recorded@40", 40),
    ]
}

/// One seed's figures (hot hit ratios in %).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedFigures {
    pub seed: u64,
    pub ours: f64,
    pub lru: f64,
    pub optimum: f64,
    pub ours_migrations: f64,
    pub lru_migrations: f64,
}

/// A case over a set of seeds.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub name: String,
    pub seeds: Vec<SeedFigures>,
}

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let (mut s, mut n) = (0.0, 0usize);
    for x in xs {
        s += x;
        n += 1;
    }
    if n == 0 {
        0.0
    } else {
        s / n as f64
    }
}

impl Row {
    pub fn mean_ours(&self) -> f64 {
        mean(self.seeds.iter().map(|s| s.ours))
    }
    pub fn mean_lru(&self) -> f64 {
        mean(self.seeds.iter().map(|s| s.lru))
    }
    pub fn mean_optimum(&self) -> f64 {
        mean(self.seeds.iter().map(|s| s.optimum))
    }
    pub fn mean_migrations(&self) -> (f64, f64) {
        (mean(self.seeds.iter().map(|s| s.ours_migrations)), mean(self.seeds.iter().map(|s| s.lru_migrations)))
    }
    /// The seed where ours does worst against LRU (ours minus LRU, in points), and the best.
    pub fn worst_best_vs_lru(&self) -> (f64, f64) {
        let d = self.seeds.iter().map(|s| s.ours - s.lru);
        let worst = d.clone().fold(f64::INFINITY, f64::min);
        (worst, d.fold(f64::NEG_INFINITY, f64::max))
    }
    pub fn worst_best_ours(&self) -> (f64, f64) {
        let o = self.seeds.iter().map(|s| s.ours);
        (o.clone().fold(f64::INFINITY, f64::min), o.fold(f64::NEG_INFINITY, f64::max))
    }
    pub fn seeds_above_lru(&self) -> usize {
        self.seeds.iter().filter(|s| s.ours > s.lru).count()
    }
    /// Which goals this row meets, as `(within 5 pts of optimum, above LRU on the mean, above LRU
    /// on >= 80 % of seeds, migrations <= LRU on the mean)`.
    pub fn goals(&self) -> [bool; 4] {
        let (mo, ml) = self.mean_migrations();
        [
            self.mean_optimum() - self.mean_ours() <= 5.0,
            self.mean_ours() > self.mean_lru(),
            self.seeds_above_lru() * 10 >= self.seeds.len() * 8,
            mo <= ml,
        ]
    }
}

/// Replays `case` on each seed at its capacity.
pub fn run(case: &Case, seeds: impl IntoIterator<Item = u64>, base: &SimOptions) -> Row {
    let opts = SimOptions { hot_capacity_frames: Some(case.capacity_frames), hot_capacity_bytes: None, ..base.clone() };
    let seeds = seeds
        .into_iter()
        .map(|seed| {
            let r = simulate(&(case.build)(seed, case.days), &opts);
            let pick = |n: &str| r.get(n).map(|p| (100.0 * p.hot_hit_ratio, p.migrations_per_1000_reads));
            let (ours, om) = pick(OURS).unwrap_or_default();
            let (lru, lm) = pick("LRU").unwrap_or_default();
            let (optimum, _) = pick("Belady (optimum)").unwrap_or_default();
            SeedFigures { seed, ours, lru, optimum, ours_migrations: om, lru_migrations: lm }
        })
        .collect();
    Row { name: case.name.to_string(), seeds }
}

/// The table: one row per case, mean / worst / best of ours, LRU and optimum means, seeds above
/// LRU, migrations, and the goals met.
pub fn markdown(rows: &[Row]) -> String {
    let mut s = String::from(
        "| trace | ours mean % | worst | best | LRU mean % | optimum mean % | gap to optimum (pts) | worst seed vs LRU (pts) | seeds above LRU | migrations / 1000 reads (ours / LRU) | goals met |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in rows {
        let (w, b) = r.worst_best_ours();
        let (wl, _) = r.worst_best_vs_lru();
        let (mo, ml) = r.mean_migrations();
        let g = r.goals();
        let names = ["optimum-5", "mean>LRU", "8/10>LRU", "migrations"];
        let met: Vec<&str> = names.iter().zip(g).filter_map(|(n, ok)| ok.then_some(*n)).collect();
        let missed: Vec<String> =
            names.iter().zip(g).filter(|(_, ok)| !ok).map(|(n, _)| format!("**not {n}**")).collect();
        s.push_str(&format!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:+.1} | {}/{} | {:.0} / {:.0} | {} |\n",
            r.name,
            r.mean_ours(),
            w,
            b,
            r.mean_lru(),
            r.mean_optimum(),
            r.mean_optimum() - r.mean_ours(),
            wl,
            r.seeds_above_lru(),
            r.seeds.len(),
            mo,
            ml,
            if missed.is_empty() { "all".to_string() } else { format!("{} {}", met.join(", "), missed.join(", ")) }
        ));
    }
    s
}
