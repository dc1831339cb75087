//! Trace-driven simulator: replays frame accesses against our [`PolicyEngine`] (the very code the
//! manager runs) and against LRU, LFU, S3-FIFO and Bélády's offline optimum, all with the same
//! hot capacity, and reports hit ratios per tier, byte hit ratio, migrations per 1000 reads and
//! the gap to the optimum.
//!
//! Model: every frame starts cold (or hot, when its first event is a write: frames are created in
//! the hot tier). A read is a hot hit when the frame is hot, else a warm or cold hit. Baselines admit
//! every missed frame into hot (Bélády only when that is optimal); our engine decides through
//! [`PolicyEngine::on_read`], runs a cycle every `cycle_ms` of trace time, and executes its pending
//! decisions at once. When hot is full, [`PolicyEngine::make_room`] picks the victims. A migration
//! is one frame moved between tiers (promotion or demotion); writing a frame is not one. The
//! archive rule is the store's, so every policy has it: at each cycle a warm frame idle longer
//! than `warmMaxAge` goes cold (our engine by its own rule; the baselines by the same test), so
//! migrations compare the hot tiers' choices and not an archive one side lacks.
//!
//! Run `cargo run --release --example simulate` for the table on the shipped traces.
//!
//! [`PolicyEngine`]: crate::policy::PolicyEngine
//! [`PolicyEngine::on_read`]: crate::policy::PolicyEngine::on_read
//! [`PolicyEngine::make_room`]: crate::policy::PolicyEngine::make_room

pub mod acceptance;
pub mod baselines;
mod ours;
pub mod rng;
mod trace_io;
pub mod traces;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::policy::{PolicyOptions, Tier};
use baselines::{Baseline, Belady, Capacity, Lfu, Lru, S3Fifo};
use ours::run_ours;
pub use trace_io::{load_trace, parse_trace, simulate_json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Read,
    Write,
}

/// One access in a trace. JSON lines: `{"frameId": "f1", "sizeBytes": 2048, "t": 1700000000000, "op": "read"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceEvent {
    #[serde(rename = "frameId")]
    pub frame_id: String,
    #[serde(rename = "sizeBytes")]
    pub size_bytes: u64,
    /// Milliseconds (any origin; only differences matter).
    #[serde(rename = "t")]
    pub t_ms: i64,
    pub op: Op,
}

#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Hot capacity in frames (default 100).
    pub hot_capacity_frames: Option<u64>,
    /// Hot capacity in bytes (default none).
    pub hot_capacity_bytes: Option<u64>,
    /// Trace time between two policy cycles (default 5 min, the seed's `syncInterval`).
    pub cycle_ms: i64,
    /// Our engine's options.
    pub policy: PolicyOptions,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            hot_capacity_frames: Some(100),
            hot_capacity_bytes: None,
            cycle_ms: 300_000,
            policy: PolicyOptions::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyResult {
    pub name: String,
    pub reads: u64,
    pub hot_hits: u64,
    pub warm_hits: u64,
    pub cold_hits: u64,
    pub hot_hit_ratio: f64,
    pub warm_hit_ratio: f64,
    pub cold_hit_ratio: f64,
    pub byte_hit_ratio: f64,
    pub promotions: u64,
    pub demotions: u64,
    pub migrations_per_1000_reads: f64,
    /// Optimum's hot hit ratio minus this one's, in percentage points.
    pub gap_to_optimum_pts: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimReport {
    pub events: usize,
    pub reads: u64,
    pub frames: usize,
    pub hot_capacity_frames: Option<u64>,
    pub hot_capacity_bytes: Option<u64>,
    pub policies: Vec<PolicyResult>,
}

impl SimReport {
    pub fn get(&self, name: &str) -> Option<&PolicyResult> {
        self.policies.iter().find(|p| p.name == name)
    }

    /// A markdown table, one row per policy.
    pub fn to_markdown(&self) -> String {
        let mut s = String::from(
            "| policy | hot hit % | warm hit % | cold hit % | byte hit % | migrations / 1000 reads | gap to optimum (pts) |\n|---|---:|---:|---:|---:|---:|---:|\n",
        );
        for p in &self.policies {
            s.push_str(&format!(
                "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {:.1} |\n",
                p.name,
                100.0 * p.hot_hit_ratio,
                100.0 * p.warm_hit_ratio,
                100.0 * p.cold_hit_ratio,
                100.0 * p.byte_hit_ratio,
                p.migrations_per_1000_reads,
                p.gap_to_optimum_pts
            ));
        }
        s
    }
}

/// Name of our policy in reports.
pub const OURS: &str = "stackmemory policy";

#[derive(Default)]
struct Tally {
    reads: u64,
    hits: [u64; 3],
    read_bytes: u64,
    hot_hit_bytes: u64,
    promotions: u64,
    demotions: u64,
}

impl Tally {
    fn read(&mut self, tier: Tier, size: u64) {
        self.reads += 1;
        self.read_bytes += size;
        self.hits[(tier.level() - 1) as usize] += 1;
        if tier == Tier::Hot {
            self.hot_hit_bytes += size;
        }
    }
    fn result(&self, name: &str) -> PolicyResult {
        let r = self.reads.max(1) as f64;
        PolicyResult {
            name: name.to_string(),
            reads: self.reads,
            hot_hits: self.hits[0],
            warm_hits: self.hits[1],
            cold_hits: self.hits[2],
            hot_hit_ratio: self.hits[0] as f64 / r,
            warm_hit_ratio: self.hits[1] as f64 / r,
            cold_hit_ratio: self.hits[2] as f64 / r,
            byte_hit_ratio: self.hot_hit_bytes as f64 / self.read_bytes.max(1) as f64,
            promotions: self.promotions,
            demotions: self.demotions,
            migrations_per_1000_reads: (self.promotions + self.demotions) as f64 * 1000.0 / r,
            gap_to_optimum_pts: 0.0,
        }
    }
}

/// Frame ids as dense indices, with each frame's size (its first event's).
fn index(trace: &[TraceEvent]) -> (Vec<usize>, Vec<String>, Vec<u64>) {
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut names = vec![];
    let mut sizes = vec![];
    let dense = trace
        .iter()
        .map(|e| {
            *ids.entry(e.frame_id.as_str()).or_insert_with(|| {
                names.push(e.frame_id.clone());
                sizes.push(e.size_bytes);
                names.len() - 1
            })
        })
        .collect();
    (dense, names, sizes)
}

/// When the store archives the warm frames idle longer than `warmMaxAge` (checked every cycle,
/// as our engine's cycle does): the same for every policy, since that rule belongs to the tiered
/// store, not to the hot tier's choice of victims.
#[derive(Clone, Copy)]
struct Archive {
    cycle_ms: i64,
    warm_max_ms: i64,
}

fn run_baseline(b: &mut dyn Baseline, trace: &[TraceEvent], dense: &[usize], n: usize, archive: Archive) -> Tally {
    let mut tier: Vec<Option<Tier>> = vec![None; n];
    let mut last_ms: Vec<i64> = vec![0; n];
    let mut warm: Vec<usize> = vec![];
    let mut t = Tally::default();
    let mut next_cycle = trace.first().map(|e| e.t_ms + archive.cycle_ms).unwrap_or(0);
    for (i, e) in trace.iter().enumerate() {
        while e.t_ms >= next_cycle {
            warm.retain(|&f| {
                let idle = next_cycle - last_ms[f];
                if tier[f] != Some(Tier::Warm) {
                    return false;
                }
                if idle > archive.warm_max_ms {
                    tier[f] = Some(Tier::Cold);
                    t.demotions += 1;
                    return false;
                }
                true
            });
            next_cycle += archive.cycle_ms;
        }
        let f = dense[i];
        last_ms[f] = e.t_ms;
        let current = tier[f].unwrap_or(Tier::Cold);
        let hit = current == Tier::Hot;
        if e.op == Op::Read {
            t.read(current, e.size_bytes);
        }
        let step = b.access(i, f, e.size_bytes, hit);
        for v in step.evicted {
            tier[v] = Some(Tier::Warm);
            warm.push(v);
            t.demotions += 1;
        }
        if step.admitted && !hit {
            if e.op == Op::Read {
                t.promotions += 1;
            }
            tier[f] = Some(Tier::Hot);
        } else if !step.admitted && tier[f].is_none() {
            // A new frame written straight to a remote tier (only the optimum does that).
            tier[f] = Some(if e.op == Op::Write { Tier::Warm } else { Tier::Cold });
            if e.op == Op::Write {
                warm.push(f);
            }
        }
    }
    t
}

/// Replays `trace` (sorted by time; it is sorted here if it is not) against every policy.
pub fn simulate(trace: &[TraceEvent], opts: &SimOptions) -> SimReport {
    let mut sorted;
    let trace = if trace.windows(2).all(|w| w[0].t_ms <= w[1].t_ms) {
        trace
    } else {
        sorted = trace.to_vec();
        sorted.sort_by_key(|e| e.t_ms);
        &sorted[..]
    };
    let (dense, names, sizes) = index(trace);
    let n = names.len();
    let cap = Capacity { frames: opts.hot_capacity_frames, bytes: opts.hot_capacity_bytes };
    let mut next_of_event = vec![u64::MAX; trace.len()];
    let mut seen_at: Vec<u64> = vec![u64::MAX; n];
    for i in (0..trace.len()).rev() {
        next_of_event[i] = seen_at[dense[i]];
        seen_at[dense[i]] = i as u64;
    }
    let mut results = vec![run_ours(trace, &dense, &names, &sizes, opts).result(OURS)];
    let mut baselines: Vec<Box<dyn Baseline>> = vec![
        Box::new(Lru::new(cap, n)),
        Box::new(Lfu::new(cap, n)),
        Box::new(S3Fifo::new(cap, n)),
        Box::new(Belady::new(cap, n, next_of_event)),
    ];
    let archive = Archive {
        cycle_ms: opts.cycle_ms.max(1),
        warm_max_ms: opts.policy.warm_max_age_ms.min(i64::MAX as u64) as i64,
    };
    for b in baselines.iter_mut() {
        results.push(run_baseline(b.as_mut(), trace, &dense, n, archive).result(b.name()));
    }
    let optimum = results.last().map(|r| r.hot_hit_ratio).unwrap_or(0.0);
    for r in results.iter_mut() {
        r.gap_to_optimum_pts = 100.0 * (optimum - r.hot_hit_ratio);
    }
    SimReport {
        events: trace.len(),
        reads: results.first().map(|r| r.reads).unwrap_or(0),
        frames: n,
        hot_capacity_frames: opts.hot_capacity_frames,
        hot_capacity_bytes: opts.hot_capacity_bytes,
        policies: results,
    }
}

#[cfg(test)]
mod tests;
