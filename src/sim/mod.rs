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
//! is one frame moved between tiers (promotion or demotion); writing a frame is not one.
//!
//! Run `cargo run --release --example simulate` for the table on the shipped traces.

pub mod baselines;
pub mod rng;
pub mod traces;

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{Result, TierError};
use crate::policy::{FrameView, PolicyEngine, PolicyOptions, PressureInputs, Reachability, Tier};
use baselines::{Baseline, Belady, Capacity, Lfu, Lru, S3Fifo};

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

fn run_baseline(b: &mut dyn Baseline, trace: &[TraceEvent], dense: &[usize], n: usize) -> Tally {
    let mut tier: Vec<Option<Tier>> = vec![None; n];
    let mut t = Tally::default();
    for (i, e) in trace.iter().enumerate() {
        let f = dense[i];
        let current = tier[f].unwrap_or(Tier::Cold);
        let hit = current == Tier::Hot;
        if e.op == Op::Read {
            t.read(current, e.size_bytes);
        }
        let step = b.access(i, f, e.size_bytes, hit);
        for v in step.evicted {
            tier[v] = Some(Tier::Warm);
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
        }
    }
    t
}

/// Our engine over the trace.
struct OursSim<'a> {
    engine: PolicyEngine,
    views: Vec<FrameView>,
    known: Vec<bool>,
    hot: Vec<usize>,
    hot_bytes: u64,
    cap: Capacity,
    names: &'a [String],
    by_name: HashMap<&'a str, usize>,
    tally: Tally,
}

impl OursSim<'_> {
    fn set_tier(&mut self, f: usize, to: Tier) {
        let from = self.views[f].tier;
        if from == to {
            return;
        }
        if from == Tier::Hot {
            if let Some(p) = self.hot.iter().position(|h| *h == f) {
                self.hot.swap_remove(p);
            }
            self.hot_bytes -= self.views[f].size_bytes;
        }
        if to == Tier::Hot {
            self.hot.push(f);
            self.hot_bytes += self.views[f].size_bytes;
        }
        self.views[f].tier = to;
    }

    fn execute(&mut self, f: usize, to: Tier, now_ms: i64) {
        let from = self.views[f].tier;
        if to == Tier::Hot && from != Tier::Hot {
            self.ensure_room(self.views[f].size_bytes, now_ms);
            self.tally.promotions += 1;
        } else if to > from {
            self.tally.demotions += 1;
        }
        self.set_tier(f, to);
        self.engine.record_outcome(&self.names[f], from, to, true, None, now_ms);
    }

    /// Makes room in hot for `size` bytes and one frame, through the engine's choice of victims.
    fn ensure_room(&mut self, size: u64, now_ms: i64) {
        let frames_over = |s: &Self| (s.hot.len() as u64 + 1).saturating_sub(s.cap.frames.unwrap_or(u64::MAX));
        let bytes_over = |s: &Self| (s.hot_bytes + size).saturating_sub(s.cap.bytes.unwrap_or(u64::MAX));
        let (nf, nb) = (frames_over(self), bytes_over(self));
        if nf == 0 && nb == 0 {
            return;
        }
        let views = &self.views;
        let victims = self.engine.make_room(now_ms, self.hot.iter().map(|&h| &views[h]), nb, nf, Reachability::ALL);
        for d in victims {
            if let Some(&v) = self.by_name.get(d.frame_id.as_str()) {
                self.tally.demotions += 1;
                self.set_tier(v, d.to);
                self.engine.record_outcome(&d.frame_id, d.from, d.to, true, None, now_ms);
            }
        }
    }

    fn cycle(&mut self, now_ms: i64) {
        let inputs = PressureInputs {
            hot_bytes: self.hot_bytes,
            hot_frames: self.hot.len() as u64,
            hot_max_bytes: self.cap.bytes.unwrap_or(0),
            hot_max_frames: self.cap.frames.unwrap_or(0),
            ..Default::default()
        };
        // Frames are numbered by first appearance, so the ones seen so far are a prefix.
        let seen = self.known.iter().take_while(|k| **k).count();
        let report = self.engine.run_cycle(now_ms, &self.views[..seen], &inputs, Reachability::ALL, false);
        for d in report.pending() {
            if let Some(&f) = self.by_name.get(d.frame_id.as_str()) {
                self.execute(f, d.to, now_ms);
            }
        }
    }
}

fn run_ours(trace: &[TraceEvent], dense: &[usize], names: &[String], sizes: &[u64], opts: &SimOptions) -> Tally {
    let cap = Capacity { frames: opts.hot_capacity_frames, bytes: opts.hot_capacity_bytes };
    let views = names
        .iter()
        .zip(sizes)
        .map(|(name, &size)| FrameView {
            frame_id: name.clone(),
            parent_id: None,
            tier: Tier::Cold,
            size_bytes: size,
            created_s: 0,
            closed_s: Some(0),
            active: false,
            pinned: false,
            keep_forever: false,
        })
        .collect();
    let mut sim = OursSim {
        engine: PolicyEngine::new(opts.policy.clone()),
        views,
        known: vec![false; names.len()],
        hot: vec![],
        hot_bytes: 0,
        cap,
        names,
        by_name: names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect(),
        tally: Tally::default(),
    };
    let cycle_ms = opts.cycle_ms.max(1);
    let mut next_cycle = trace.first().map(|e| e.t_ms + cycle_ms).unwrap_or(0);
    for (i, e) in trace.iter().enumerate() {
        while e.t_ms >= next_cycle {
            sim.cycle(next_cycle);
            next_cycle += cycle_ms;
        }
        let f = dense[i];
        if !sim.known[f] {
            sim.known[f] = true;
            let s = (e.t_ms / 1000).max(0);
            sim.views[f].created_s = s;
            sim.views[f].closed_s = Some(s);
        }
        match e.op {
            Op::Write => {
                sim.engine.on_write(&e.frame_id, e.t_ms);
                if sim.views[f].tier != Tier::Hot && cap.fits(1, sim.views[f].size_bytes) {
                    sim.ensure_room(sim.views[f].size_bytes, e.t_ms);
                    sim.set_tier(f, Tier::Hot);
                }
            }
            Op::Read => {
                let tier = sim.views[f].tier;
                sim.tally.read(tier, e.size_bytes);
                if let Some(d) = sim.engine.on_read(&e.frame_id, tier, e.t_ms) {
                    if cap.fits(1, sim.views[f].size_bytes) {
                        sim.execute(f, d.to, e.t_ms);
                    } else {
                        sim.engine.record_outcome(
                            &e.frame_id,
                            tier,
                            d.to,
                            false,
                            Some("larger than hot".into()),
                            e.t_ms,
                        );
                    }
                }
            }
        }
    }
    sim.tally
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
    for b in baselines.iter_mut() {
        results.push(run_baseline(b.as_mut(), trace, &dense, n).result(b.name()));
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

fn parse_event(v: Value, at: &str) -> Result<TraceEvent> {
    let Value::Object(m) = v else { return Err(TierError::invalid_argument(at, "must be an object")) };
    for k in m.keys() {
        if !["frameId", "sizeBytes", "t", "op"].contains(&k.as_str()) {
            return Err(TierError::invalid_argument(
                format!("{at}.{k}"),
                "unknown field (known: frameId, sizeBytes, t, op)",
            ));
        }
    }
    let frame_id = match m.get("frameId") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(TierError::invalid_argument(format!("{at}.frameId"), "must be a non-empty string")),
    };
    let size_bytes = m
        .get("sizeBytes")
        .and_then(Value::as_u64)
        .ok_or_else(|| TierError::invalid_argument(format!("{at}.sizeBytes"), "must be a whole number of bytes"))?;
    let t_ms = m
        .get("t")
        .and_then(Value::as_i64)
        .ok_or_else(|| TierError::invalid_argument(format!("{at}.t"), "must be a whole number of milliseconds"))?;
    let op = match m.get("op").and_then(Value::as_str) {
        None => Op::Read,
        Some("read") => Op::Read,
        Some("write") => Op::Write,
        Some(_) => return Err(TierError::invalid_argument(format!("{at}.op"), "must be 'read' or 'write'")),
    };
    Ok(TraceEvent { frame_id, size_bytes, t_ms, op })
}

/// Parses JSON-lines trace text (blank lines skipped). Errors name the line: `trace[12].t`.
pub fn parse_trace(text: &str) -> Result<Vec<TraceEvent>> {
    let mut out = vec![];
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("trace[{}]", n + 1);
        let v: Value = serde_json::from_str(line)
            .map_err(|e| TierError::invalid_argument(at.clone(), format!("not JSON: {e}")))?;
        out.push(parse_event(v, &at)?);
    }
    Ok(out)
}

/// Loads a JSON-lines trace file.
pub fn load_trace(path: impl AsRef<Path>) -> Result<Vec<TraceEvent>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path)
        .map_err(|e| TierError::invalid_argument("path", format!("cannot read {}: {e}", path.display())))?;
    parse_trace(&text)
}

/// For the JS layer: `trace` is an array of events (or JSON-lines text), `options` is
/// `{ hotCapacityFrames?, hotCapacityBytes?, cycleMs?, policies? }`. Returns the report as JSON.
pub fn simulate_json(trace: &Value, options: &Value) -> Result<Value> {
    let events = match trace {
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, v)| parse_event(v.clone(), &format!("trace[{i}]")))
            .collect::<Result<Vec<_>>>()?,
        Value::String(s) => parse_trace(s)?,
        _ => return Err(TierError::invalid_argument("trace", "must be an array of events or JSON-lines text")),
    };
    let mut opts = SimOptions::default();
    match options {
        Value::Null => {}
        Value::Object(m) => {
            for k in m.keys() {
                if !["hotCapacityFrames", "hotCapacityBytes", "cycleMs", "policies"].contains(&k.as_str()) {
                    return Err(TierError::invalid_argument(format!("options.{k}"), "unknown option"));
                }
            }
            let pos = |k: &str| -> Result<Option<u64>> {
                match m.get(k) {
                    None | Some(Value::Null) => Ok(None),
                    Some(v) => v.as_u64().filter(|n| *n >= 1).map(Some).ok_or_else(|| {
                        TierError::invalid_argument(format!("options.{k}"), "must be a positive whole number")
                    }),
                }
            };
            let frames = pos("hotCapacityFrames")?;
            let bytes = pos("hotCapacityBytes")?;
            if frames.is_some() || bytes.is_some() {
                opts.hot_capacity_frames = frames;
                opts.hot_capacity_bytes = bytes;
            }
            if let Some(c) = pos("cycleMs")? {
                opts.cycle_ms = c.min(i64::MAX as u64) as i64;
            }
            if let Some(p) = m.get("policies") {
                opts.policy = PolicyOptions::from_json(p, PolicyOptions::default().hot_max_age_ms)?;
            }
        }
        _ => return Err(TierError::invalid_argument("options", "must be an object")),
    }
    let report = simulate(&events, &opts);
    serde_json::to_value(&report).map_err(|e| TierError::invalid_argument("report", e.to_string()))
}

#[cfg(test)]
mod tests;
