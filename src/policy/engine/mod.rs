//! The [`PolicyEngine`]: turns access statistics, frame views and pressure into reported
//! decisions, remembers what it decided and what was executed, and explains itself.
//!
//! A cycle ([`PolicyEngine::run_cycle`]):
//! 1. measures pressure ([`super::pressure`]);
//! 2. recommends moves: the seed rules (hot idle > `hotMaxAge` → warm, warm idle > `warmMaxAge` →
//!    cold, `promotionThreshold` remote reads → hot), refined by the score and pattern (periodic
//!    prefetch; demotions that would turn expected reads remote are filtered), plus pressure
//!    demotions of the lowest-scoring frames; pinned frames are brought back hot;
//! 3. never demotes pinned or active frames (`skipped: pinned`, `skipped: active frame`);
//! 4. runs the anti-churn filters ([`super::filters`]), except for pressure demotions at the
//!    emergency level;
//! 5. decides a closed frame together with its closed descendants that would move too;
//! 6. with `prefetchRelatives`, suggests promoting the parent and children of promoted frames;
//! 7. defers moves to or from an unreachable tier, orders by priority and caps the batch.
//!
//! Moves the caller should execute come out `pending`; the caller reports back with
//! [`PolicyEngine::record_outcome`], which makes them `executed` or `failed` and feeds the
//! cooldown and cycle history. A dry run reports the same decisions and changes nothing.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::access::{AccessRecord, AccessStats, AccessTracker};
use super::filters::{self, Candidate, MoveRecord, Verdict};
use super::options::PolicyOptions;
use super::pattern::{classify, Classification, Pattern};
use super::pressure::{assess, PressureInputs, PressureLevel, PressureReport};
use super::score::{expected_reads, score, ScoreParts};
use super::{arrow, human_bytes, human_secs, tier_serde, Tier};
use crate::model::{Result, TierError};

/// Moves remembered per frame for the cooldown and cycle filters.
const MOVES_PER_FRAME: usize = 16;

/// A frame as the engine sees it; the manager builds these from its metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FrameView {
    pub frame_id: String,
    pub parent_id: Option<String>,
    #[serde(deserialize_with = "tier_serde::de")]
    pub tier: Tier,
    pub size_bytes: u64,
    /// Creation time, seconds since the epoch.
    pub created_s: i64,
    /// Close time, seconds since the epoch (`None` while open).
    pub closed_s: Option<i64>,
    /// An active (open) frame is on someone's stack: never demoted, not even by force.
    pub active: bool,
    /// Pinned in the manager's metadata (the engine's own pins count too).
    pub pinned: bool,
    /// Retention only (cold tier); tiering treats it like any other frame.
    pub keep_forever: bool,
}

/// Which remote tiers can be reached right now. The hot tier always can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reachability {
    pub warm: bool,
    pub cold: bool,
}

impl Reachability {
    pub const ALL: Reachability = Reachability { warm: true, cold: true };
    pub fn reaches(&self, t: Tier) -> bool {
        match t {
            Tier::Hot => true,
            Tier::Warm => self.warm,
            Tier::Cold => self.cold,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The caller moved the frame.
    Executed,
    /// The caller should move the frame, then call `record_outcome`.
    Pending,
    /// The caller tried and failed.
    Failed,
    /// An anti-churn filter blocked the move.
    Filtered,
    /// A rule forbids the move (pinned, active frame).
    Skipped,
    /// Recommended, but not yet in enough consecutive cycles.
    Observing,
    /// Wanted but impossible now (tier unreachable, batch full).
    Deferred,
}

impl Action {
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Executed => "executed",
            Action::Pending => "pending",
            Action::Failed => "failed",
            Action::Filtered => "filtered",
            Action::Skipped => "skipped",
            Action::Observing => "observing",
            Action::Deferred => "deferred",
        }
    }
}

/// One decision about one frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub frame_id: String,
    #[serde(deserialize_with = "tier_serde::de")]
    pub from: Tier,
    #[serde(deserialize_with = "tier_serde::de")]
    pub to: Tier,
    pub action: Action,
    /// `<action>: <detail>`, e.g. `observing: 2/3 cycles`.
    pub reason: String,
    /// Why the move was recommended in the first place, e.g. `idle 26 h > 24 h`.
    pub basis: String,
    pub confidence: f64,
    /// Higher moves first.
    pub priority: f64,
    /// Asked for by the caller (`force_promote`/`force_demote`), bypassing the filters.
    pub forced: bool,
    /// Decided together with this closed parent.
    pub with_parent: Option<String>,
    pub cycle: u64,
    pub at_ms: i64,
}

impl Decision {
    pub fn is_promotion(&self) -> bool {
        self.to < self.from
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CycleCounts {
    pub pending: usize,
    pub filtered: usize,
    pub skipped: usize,
    pub observing: usize,
    pub deferred: usize,
    /// Pending promotions and demotions.
    pub promotions: usize,
    pub demotions: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CycleReport {
    pub cycle: u64,
    pub at_ms: i64,
    pub dry_run: bool,
    /// Highest priority first.
    pub decisions: Vec<Decision>,
    pub counts: CycleCounts,
    pub pressure: PressureReport,
    pub max_concurrent_moves: usize,
}

impl CycleReport {
    /// The moves to execute, highest priority first.
    pub fn pending(&self) -> impl Iterator<Item = &Decision> {
        self.decisions.iter().filter(|d| d.action == Action::Pending)
    }
    /// The pending moves in waves of at most `maxConcurrentMoves`, to run one wave at a time.
    pub fn waves(&self) -> Vec<Vec<&Decision>> {
        let pending: Vec<&Decision> = self.pending().collect();
        pending.chunks(self.max_concurrent_moves.max(1)).map(|c| c.to_vec()).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PinRecord {
    pub size_bytes: u64,
    pub at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PinStatus {
    pub frames: usize,
    pub pinned_bytes: u64,
    /// `policies.maxPinnedBytes`.
    pub cap_bytes: u64,
}

/// Consecutive-cycle counter of one recommended move.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Persistence {
    #[serde(deserialize_with = "tier_serde::de")]
    pub to: Tier,
    pub cycles: u32,
    pub first_ms: i64,
    pub last_cycle: u64,
}

/// Everything the engine remembers, for the manager to persist and hand back on open.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EngineSnapshot {
    pub cycle: u64,
    pub access: Vec<AccessRecord>,
    pub pins: BTreeMap<String, PinRecord>,
    pub moves: BTreeMap<String, Vec<MoveRecord>>,
    pub persistence: BTreeMap<String, Persistence>,
    pub decisions: BTreeMap<String, Vec<Decision>>,
}

/// `explain(frame)`: what the engine knows and thinks about one frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    pub frame_id: String,
    #[serde(deserialize_with = "tier_serde::de_opt", default)]
    pub tier: Option<Tier>,
    pub pinned: bool,
    pub access: Option<AccessStats>,
    pub pattern: Classification,
    pub score: ScoreParts,
    pub moves: Vec<MoveRecord>,
    pub last_decisions: Vec<Decision>,
    pub expected_next: String,
}

/// What one frame looks like to the engine right now.
struct Eval {
    class: Classification,
    score: ScoreParts,
    idle_s: f64,
    expected_reads: f64,
}

/// A recommended move before rules and filters.
struct Rec {
    idx: usize,
    to: Tier,
    basis: String,
    confidence: f64,
    priority: f64,
    under_pressure: bool,
    /// Emergency pressure: the filters are bypassed.
    bypass_filters: bool,
    expected_reads: f64,
    action: Action,
    reason: String,
    with_parent: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PolicyEngine {
    opts: PolicyOptions,
    access: AccessTracker,
    pins: BTreeMap<String, PinRecord>,
    moves: HashMap<String, VecDeque<MoveRecord>>,
    persistence: HashMap<String, Persistence>,
    decisions: HashMap<String, VecDeque<Decision>>,
    /// Pending moves whose outcome has not been recorded yet.
    in_flight: HashMap<String, Decision>,
    cycle: u64,
    /// Score of the weakest evictable hot frame when hot was last found under pressure; `None`
    /// while hot has room. A remote frame read again is promoted when it beats this.
    hot_floor: Option<f64>,
}

fn clamp01(x: f64) -> f64 {
    if x.is_finite() {
        x.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

impl PolicyEngine {
    pub fn new(opts: PolicyOptions) -> Self {
        let tau_s = opts.frequency_window_ms as f64 / 1000.0;
        PolicyEngine {
            opts,
            access: AccessTracker::new(tau_s),
            pins: BTreeMap::new(),
            moves: HashMap::new(),
            persistence: HashMap::new(),
            decisions: HashMap::new(),
            in_flight: HashMap::new(),
            cycle: 0,
            hot_floor: None,
        }
    }

    pub fn options(&self) -> &PolicyOptions {
        &self.opts
    }

    pub fn access(&self) -> &AccessTracker {
        &self.access
    }

    fn tau_s(&self) -> f64 {
        self.opts.frequency_window_ms as f64 / 1000.0
    }

    /// A write (create or update) of the frame: counts as an access.
    pub fn on_write(&mut self, frame_id: &str, now_ms: i64) {
        self.access.record_access(frame_id, now_ms);
    }

    /// A read of the frame, which is in `tier`. Returns a pending promotion when the frame should
    /// come back hot now: pinned; `promotionThreshold` reads since its last move (seed rule); or
    /// read again (at least twice ever, with a pattern that expects more) and scoring above the
    /// weakest hot frame, or hot has room. Read-once frames are never promoted by a read alone.
    pub fn on_read(&mut self, frame_id: &str, tier: Tier, now_ms: i64) -> Option<Decision> {
        self.access.record_access(frame_id, now_ms);
        if tier == Tier::Hot || self.in_flight.contains_key(frame_id) {
            return None;
        }
        let stats = self.access.get(frame_id)?.clone();
        let threshold = self.opts.promotion_threshold;
        let (basis, confidence, priority) = if self.pins.contains_key(frame_id) {
            ("pinned".to_string(), 1.0, 2.0)
        } else if stats.since_move >= threshold {
            (format!("{} reads while {} (threshold {threshold})", stats.since_move, tier.as_str()), 1.0, 1.5)
        } else if stats.count >= 2 {
            let class = classify(&stats, now_ms);
            class.next_access_in_s?;
            let parts = score(Some(&stats), &class, 0.0, 0, now_ms, self.tau_s(), &self.opts.weights);
            let basis = match self.hot_floor {
                None => format!("read again, {} expected; hot has room", class.pattern.describe()),
                Some(floor) if parts.total > floor => {
                    format!("read again, score {:.2} > weakest hot frame {floor:.2}", parts.total)
                }
                Some(_) => return None,
            };
            // Score-based admission is a judgement call, so it respects the churn history.
            let history = self.moves.get(frame_id).cloned().unwrap_or_default();
            let cand = Candidate {
                from: tier,
                to: Tier::Hot,
                now_ms,
                confidence: class.confidence,
                history: &history,
                persistent_cycles: u32::MAX,
                size_bytes: 0,
                expected_reads: f64::INFINITY,
                under_pressure: false,
            };
            if filters::cooldown(&self.opts.filters, &cand) != Verdict::Pass
                || filters::cycles(&self.opts.filters, &cand) != Verdict::Pass
            {
                return None;
            }
            (basis, clamp01(class.confidence.max(0.5)), 1.0 + parts.total)
        } else {
            return None;
        };
        let d = Decision {
            frame_id: frame_id.to_string(),
            from: tier,
            to: Tier::Hot,
            action: Action::Pending,
            reason: format!("pending: {basis}"),
            basis,
            confidence,
            priority,
            forced: false,
            with_parent: None,
            cycle: self.cycle,
            at_ms: now_ms,
        };
        self.remember(d.clone());
        self.in_flight.insert(frame_id.to_string(), d.clone());
        Some(d)
    }

    fn idle_s(&self, f: &FrameView, now_ms: i64) -> f64 {
        match self.access.get(&f.frame_id) {
            Some(s) => s.age_s(now_ms),
            None => {
                let since = f.closed_s.unwrap_or(f.created_s).max(f.created_s);
                (now_ms / 1000 - since).max(0) as f64
            }
        }
    }

    fn evaluate(&self, f: &FrameView, now_ms: i64) -> Eval {
        let stats = self.access.get(&f.frame_id);
        let class = match stats {
            Some(s) => classify(s, now_ms),
            None => Classification { pattern: Pattern::Cold, confidence: 0.5, next_access_in_s: None },
        };
        let idle_s = self.idle_s(f, now_ms);
        let tau = self.tau_s();
        let parts = score(stats, &class, idle_s, f.size_bytes, now_ms, tau, &self.opts.weights);
        let horizon = self.opts.filters.cost_horizon_ms as f64 / 1000.0;
        Eval { class, score: parts, idle_s, expected_reads: expected_reads(stats, &class, now_ms, tau, horizon) }
    }

    /// Cheap pre-check before classifying for a periodic prefetch: a periodic frame's gaps vary
    /// by at most ~30 %, so one whose last gap, repeated, is not due within `within_s` (give or
    /// take that much) cannot be due. Saves classifying every remote frame every cycle.
    fn maybe_due(&self, frame_id: &str, now_ms: i64, within_s: f64) -> bool {
        let Some(s) = self.access.get(frame_id) else { return false };
        let Some(&gap) = s.gaps_s.back() else { return false };
        s.count >= 3 && gap - s.age_s(now_ms) <= within_s + 0.3 * gap
    }

    fn is_pinned(&self, f: &FrameView) -> bool {
        f.pinned || self.pins.contains_key(&f.frame_id)
    }

    fn remember(&mut self, d: Decision) {
        let keep = self.opts.decisions_per_frame.max(1);
        let q = self.decisions.entry(d.frame_id.clone()).or_default();
        q.push_back(d);
        while q.len() > keep {
            q.pop_front();
        }
    }

    /// Runs one policy cycle over `frames` (all frames, any tier). See the module docs.
    pub fn run_cycle(
        &mut self,
        now_ms: i64,
        frames: &[FrameView],
        inputs: &PressureInputs,
        reach: Reachability,
        dry_run: bool,
    ) -> CycleReport {
        let o = self.opts.clone();
        let pressure = assess(inputs, &o.watermarks);
        let cycle = self.cycle + 1;
        let age_level = pressure.hot_level.max(pressure.host_level);
        let hot_max_s = age_level.age_factor().map(|k| o.hot_max_age_ms as f64 / 1000.0 * k).unwrap_or(f64::INFINITY);
        let warm_max_s = o.warm_max_age_ms as f64 / 1000.0;
        let sync_s = o.sync_interval_ms as f64 / 1000.0;
        let level_note = if age_level > PressureLevel::Normal {
            format!(" ({} pressure)", age_level.as_str())
        } else {
            String::new()
        };

        let mut evals: Vec<Option<Eval>> = (0..frames.len()).map(|_| None).collect();
        let mut recs: Vec<Rec> = vec![];
        let mut rec_of: HashMap<usize, usize> = HashMap::new();
        let mk = |idx: usize, to: Tier, basis: String, confidence: f64, priority: f64, e: &Eval| Rec {
            idx,
            to,
            basis,
            confidence: clamp01(confidence),
            priority,
            under_pressure: false,
            bypass_filters: false,
            expected_reads: e.expected_reads,
            action: Action::Pending,
            reason: String::new(),
            with_parent: None,
        };

        // 2. Rule-based recommendations.
        for (i, f) in frames.iter().enumerate() {
            if self.in_flight.contains_key(&f.frame_id) {
                continue;
            }
            let idle = self.idle_s(f, now_ms);
            // The seed's age window, refined by frequency: a frame read again and again gets up
            // to twice as long (a quarter more per read beyond the first, from 2 reads), so the
            // next day's session still finds yesterday's working set hot.
            let reads = self.access.get(&f.frame_id).map(|s| s.count).unwrap_or(0);
            let frame_hot_max_s = hot_max_s * (1.0 + 0.25 * (reads.saturating_sub(1).min(4)) as f64);
            let rec = match f.tier {
                Tier::Hot if idle > frame_hot_max_s => {
                    let e = self.evaluate(f, now_ms);
                    let to = if idle > warm_max_s { Tier::Cold } else { Tier::Warm };
                    let mut conf = 0.5 + 0.5 * (idle / frame_hot_max_s - 1.0).min(1.0);
                    if e.class.pattern == Pattern::Cold {
                        conf = conf.max(e.class.confidence);
                    }
                    let basis = format!("idle {} > {}{level_note}", human_secs(idle), human_secs(frame_hot_max_s));
                    let r = mk(i, to, basis, conf, 0.5 + 0.5 * (1.0 - e.score.total), &e);
                    evals[i] = Some(e);
                    Some(r)
                }
                Tier::Hot => None,
                Tier::Warm | Tier::Cold => {
                    let since_move = self.access.get(&f.frame_id).map(|s| s.since_move).unwrap_or(0);
                    if self.is_pinned(f) {
                        let e = self.evaluate(f, now_ms);
                        let mut r = mk(i, Tier::Hot, "pinned".into(), 1.0, 2.0, &e);
                        // The caller asked for it: no cost-benefit test.
                        r.expected_reads = f64::INFINITY;
                        evals[i] = Some(e);
                        Some(r)
                    } else if since_move >= o.promotion_threshold {
                        let e = self.evaluate(f, now_ms);
                        let basis = format!(
                            "{since_move} reads while {} (threshold {})",
                            f.tier.as_str(),
                            o.promotion_threshold
                        );
                        let mut r = mk(i, Tier::Hot, basis, 1.0, 1.5 + 0.5 * e.score.total, &e);
                        // The seed rule: the reads already happened, they are the benefit.
                        r.expected_reads = f64::INFINITY;
                        evals[i] = Some(e);
                        Some(r)
                    } else if f.tier == Tier::Warm && idle > warm_max_s {
                        let e = self.evaluate(f, now_ms);
                        let conf = 0.5 + 0.5 * (idle / warm_max_s - 1.0).min(1.0);
                        let basis = format!("idle {} > {}", human_secs(idle), human_secs(warm_max_s));
                        let r = mk(i, Tier::Cold, basis, conf, 0.4 + 0.5 * (1.0 - e.score.total), &e);
                        evals[i] = Some(e);
                        Some(r)
                    } else if o.prefetch_periodic
                        && pressure.hot_level < PressureLevel::Warning
                        && since_move == 0
                        && self.maybe_due(&f.frame_id, now_ms, 2.0 * sync_s)
                    {
                        // Only frames not read since their last move: the others promote by reads.
                        let e = self.evaluate(f, now_ms);
                        let due = matches!(e.class.pattern, Pattern::Periodic { .. })
                            && e.class.next_access_in_s.is_some_and(|s| s <= 2.0 * sync_s);
                        let r = due.then(|| {
                            let next = e.class.next_access_in_s.unwrap_or(0.0);
                            let basis = format!(
                                "prefetch: {}, next read expected in {}",
                                e.class.pattern.describe(),
                                human_secs(next)
                            );
                            mk(i, Tier::Hot, basis, e.class.confidence, 1.0 + 0.5 * e.score.total, &e)
                        });
                        evals[i] = Some(e);
                        r
                    } else {
                        None
                    }
                }
            };
            if let Some(r) = rec {
                rec_of.insert(i, recs.len());
                recs.push(r);
            }
        }

        // Pressure demotions: lowest score first until back under the critical watermark.
        for (tier, level, mut need_bytes, mut need_frames) in [
            (Tier::Hot, pressure.hot_level, pressure.hot_excess_bytes, pressure.hot_excess_frames),
            (Tier::Warm, pressure.warm_level, pressure.warm_excess_bytes, 0),
        ] {
            if level < PressureLevel::Critical {
                continue;
            }
            // Demotions already recommended from this tier free space too.
            for r in recs.iter().filter(|r| frames[r.idx].tier == tier && r.to > tier) {
                need_bytes = need_bytes.saturating_sub(frames[r.idx].size_bytes);
                need_frames = need_frames.saturating_sub(1);
            }
            let mut cands: Vec<(usize, f64)> = frames
                .iter()
                .enumerate()
                .filter(|(i, f)| {
                    f.tier == tier
                        && !f.active
                        && !self.is_pinned(f)
                        && !rec_of.contains_key(i)
                        && !self.in_flight.contains_key(&f.frame_id)
                })
                .map(|(i, f)| {
                    let e = self.evaluate(f, now_ms);
                    let s = e.score.total;
                    evals[i] = Some(e);
                    (i, s)
                })
                .collect();
            cands.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| frames[a.0].frame_id.cmp(&frames[b.0].frame_id)));
            if tier == Tier::Hot {
                self.hot_floor = cands.first().map(|c| c.1);
            }
            let fill = if tier == Tier::Hot { pressure.hot_fill } else { pressure.warm_fill };
            for (i, s) in cands {
                if need_bytes == 0 && need_frames == 0 {
                    break;
                }
                let Some(e) = evals[i].as_ref() else { continue };
                let basis =
                    format!("{} tier {} ({:.0}% full), score {s:.2}", tier.as_str(), level.as_str(), fill * 100.0);
                let to = if tier == Tier::Hot { Tier::Warm } else { Tier::Cold };
                let urgent = if level == PressureLevel::Emergency { 1.0 } else { 0.0 };
                let mut r = mk(i, to, basis, (1.0 - s).max(0.5), 1.0 + urgent + (1.0 - s), e);
                r.under_pressure = true;
                r.bypass_filters = level == PressureLevel::Emergency;
                need_bytes = need_bytes.saturating_sub(frames[i].size_bytes);
                need_frames = need_frames.saturating_sub(1);
                rec_of.insert(i, recs.len());
                recs.push(r);
            }
        }
        if pressure.hot_level < PressureLevel::Critical {
            self.hot_floor = if pressure.hot_level >= PressureLevel::Warning {
                frames
                    .iter()
                    .filter(|f| f.tier == Tier::Hot && !f.active && !self.is_pinned(f))
                    .map(|f| self.evaluate(f, now_ms).score.total)
                    .min_by(|a, b| a.total_cmp(b))
            } else {
                None
            };
        }

        // Persistence counters (demotions), as this cycle would leave them.
        let mut new_persistence: HashMap<String, Persistence> = HashMap::new();
        for r in &recs {
            let f = &frames[r.idx];
            if r.to <= f.tier {
                continue;
            }
            let p = match self.persistence.get(&f.frame_id) {
                Some(p)
                    if p.to == r.to
                        && p.last_cycle + 1 == cycle
                        && now_ms.saturating_sub(p.first_ms) <= o.filters.persistence_window_ms as i64 =>
                {
                    Persistence {
                        to: r.to,
                        cycles: p.cycles.saturating_add(1),
                        first_ms: p.first_ms,
                        last_cycle: cycle,
                    }
                }
                _ => Persistence { to: r.to, cycles: 1, first_ms: now_ms, last_cycle: cycle },
            };
            new_persistence.insert(f.frame_id.clone(), p);
        }

        // 3-4. Rules, then filters.
        let empty = VecDeque::new();
        for r in recs.iter_mut() {
            let f = &frames[r.idx];
            let demotion = r.to > f.tier;
            if demotion && self.is_pinned(f) {
                r.action = Action::Skipped;
                r.reason = "skipped: pinned".into();
                continue;
            }
            if demotion && f.active {
                r.action = Action::Skipped;
                r.reason = "skipped: active frame".into();
                continue;
            }
            if r.bypass_filters {
                continue;
            }
            let cand = Candidate {
                from: f.tier,
                to: r.to,
                now_ms,
                confidence: r.confidence,
                history: self.moves.get(&f.frame_id).unwrap_or(&empty),
                persistent_cycles: new_persistence.get(&f.frame_id).map(|p| p.cycles).unwrap_or(0),
                size_bytes: f.size_bytes,
                expected_reads: r.expected_reads,
                under_pressure: r.under_pressure,
            };
            match filters::apply(&o.filters, &cand) {
                Verdict::Pass => {}
                Verdict::Filtered(why) => {
                    r.action = Action::Filtered;
                    r.reason = format!("filtered: {why}");
                }
                Verdict::Observing(why) => {
                    r.action = Action::Observing;
                    r.reason = format!("observing: {why}");
                }
            }
        }

        // 5. Stack awareness: a closed frame's demotion carries its closed descendants that would
        // leave the same tier too (whatever their own filters said), so a task moves as a whole.
        let mut children: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, f) in frames.iter().enumerate() {
            if let Some(p) = &f.parent_id {
                children.entry(p.as_str()).or_default().push(i);
            }
        }
        for ri in 0..recs.len() {
            let (pidx, pto, paction) = (recs[ri].idx, recs[ri].to, recs[ri].action);
            let preason = recs[ri].reason.clone();
            let parent = &frames[pidx];
            if pto <= parent.tier || parent.active || paction == Action::Skipped || recs[ri].with_parent.is_some() {
                continue;
            }
            let mut stack: Vec<usize> = children.get(parent.frame_id.as_str()).cloned().unwrap_or_default();
            let mut seen: HashSet<usize> = HashSet::new();
            while let Some(ci) = stack.pop() {
                if !seen.insert(ci) {
                    continue;
                }
                let child = &frames[ci];
                if child.active || child.closed_s.is_none() {
                    continue;
                }
                if let Some(grand) = children.get(child.frame_id.as_str()) {
                    stack.extend(grand.iter().copied());
                }
                let Some(&cr) = rec_of.get(&ci) else { continue };
                let c = &mut recs[cr];
                if c.to <= child.tier || child.tier != parent.tier || c.action == Action::Skipped {
                    continue;
                }
                c.to = pto;
                c.action = paction;
                c.with_parent = Some(parent.frame_id.clone());
                c.reason = match paction {
                    Action::Pending => format!("pending: with parent {}", parent.frame_id),
                    _ => format!("{preason} (with parent {})", parent.frame_id),
                };
            }
        }

        // 7a. Reachability.
        for r in recs.iter_mut().filter(|r| r.action == Action::Pending) {
            let f = &frames[r.idx];
            for t in [f.tier, r.to] {
                if !reach.reaches(t) {
                    r.action = Action::Deferred;
                    r.reason = format!("deferred: {} tier unreachable", t.as_str());
                    break;
                }
            }
        }

        // 6. Prefetch relatives of promoted frames.
        if o.prefetch_relatives {
            let by_id: HashMap<&str, usize> =
                frames.iter().enumerate().map(|(i, f)| (f.frame_id.as_str(), i)).collect();
            let promoted: Vec<(usize, f64)> = recs
                .iter()
                .filter(|r| r.action == Action::Pending && r.to < frames[r.idx].tier && r.to == Tier::Hot)
                .map(|r| (r.idx, r.priority))
                .collect();
            for (pi, prio) in promoted {
                let f = &frames[pi];
                let mut rel: Vec<(usize, &str)> = vec![];
                if let Some(&p) = f.parent_id.as_deref().and_then(|p| by_id.get(p)) {
                    rel.push((p, "parent"));
                }
                for &c in children.get(f.frame_id.as_str()).map(|v| v.as_slice()).unwrap_or(&[]) {
                    rel.push((c, "child"));
                }
                for (ri, what) in rel {
                    let rf = &frames[ri];
                    if rf.tier == Tier::Hot || rec_of.contains_key(&ri) || self.in_flight.contains_key(&rf.frame_id) {
                        continue;
                    }
                    let e = self.evaluate(rf, now_ms);
                    let basis = format!("prefetch: {what} of {}", f.frame_id);
                    let mut r = mk(ri, Tier::Hot, basis, 0.5, prio - 0.5, &e);
                    let cand = Candidate {
                        from: rf.tier,
                        to: Tier::Hot,
                        now_ms,
                        confidence: 1.0,
                        history: self.moves.get(&rf.frame_id).unwrap_or(&empty),
                        persistent_cycles: u32::MAX,
                        size_bytes: rf.size_bytes,
                        expected_reads: f64::INFINITY,
                        under_pressure: false,
                    };
                    for v in [filters::cooldown(&o.filters, &cand), filters::cycles(&o.filters, &cand)] {
                        if let Verdict::Filtered(why) = v {
                            r.action = Action::Filtered;
                            r.reason = format!("filtered: {why}");
                            break;
                        }
                    }
                    if r.action == Action::Pending && !reach.reaches(rf.tier) {
                        r.action = Action::Deferred;
                        r.reason = format!("deferred: {} tier unreachable", rf.tier.as_str());
                    }
                    rec_of.insert(ri, recs.len());
                    recs.push(r);
                }
            }
        }

        // 7b. Order and batch.
        recs.sort_by(|a, b| {
            b.priority.total_cmp(&a.priority).then_with(|| frames[a.idx].frame_id.cmp(&frames[b.idx].frame_id))
        });
        let mut slots = o.batch_size.saturating_sub(self.in_flight.len());
        let mut decisions = Vec::with_capacity(recs.len());
        let mut counts = CycleCounts::default();
        for mut r in recs {
            let f = &frames[r.idx];
            if r.action == Action::Pending {
                if slots == 0 {
                    r.action = Action::Deferred;
                    r.reason = format!("deferred: batch full ({} moves per cycle)", o.batch_size);
                } else {
                    slots -= 1;
                    if r.reason.is_empty() {
                        r.reason = format!("pending: {}", r.basis);
                    }
                }
            }
            match r.action {
                Action::Pending => {
                    counts.pending += 1;
                    if r.to < f.tier {
                        counts.promotions += 1;
                    } else {
                        counts.demotions += 1;
                    }
                }
                Action::Filtered => counts.filtered += 1,
                Action::Skipped => counts.skipped += 1,
                Action::Observing => counts.observing += 1,
                Action::Deferred => counts.deferred += 1,
                Action::Executed | Action::Failed => {}
            }
            decisions.push(Decision {
                frame_id: f.frame_id.clone(),
                from: f.tier,
                to: r.to,
                action: r.action,
                reason: r.reason,
                basis: r.basis,
                confidence: r.confidence,
                priority: r.priority,
                forced: false,
                with_parent: r.with_parent,
                cycle,
                at_ms: now_ms,
            });
        }

        if !dry_run {
            self.cycle = cycle;
            // Counters of moves not recommended this cycle lapse: persistence means consecutive.
            self.persistence = new_persistence;
            for d in &decisions {
                if d.action == Action::Pending {
                    self.in_flight.insert(d.frame_id.clone(), d.clone());
                }
                self.remember(d.clone());
            }
        }
        CycleReport {
            cycle,
            at_ms: now_ms,
            dry_run,
            decisions,
            counts,
            pressure,
            max_concurrent_moves: o.max_concurrent_moves,
        }
    }

    /// Hot is full and something must come in: picks the lowest-scoring hot frames (never pinned
    /// or active) worth at least `need_bytes` / `need_frames` and returns them as pending
    /// demotions to warm (cold when warm is unreachable). Emergency response: no filters.
    pub fn make_room<'a>(
        &mut self,
        now_ms: i64,
        hot_frames: impl IntoIterator<Item = &'a FrameView>,
        need_bytes: u64,
        need_frames: u64,
        reach: Reachability,
    ) -> Vec<Decision> {
        let to = if reach.warm {
            Tier::Warm
        } else if reach.cold {
            Tier::Cold
        } else {
            return vec![];
        };
        let hot_frames: Vec<&FrameView> = hot_frames.into_iter().collect();
        let mut cands: Vec<(usize, f64)> = hot_frames
            .iter()
            .enumerate()
            .filter(|(_, f)| {
                f.tier == Tier::Hot && !f.active && !self.is_pinned(f) && !self.in_flight.contains_key(&f.frame_id)
            })
            .map(|(i, f)| (i, self.evaluate(f, now_ms).score.total))
            .collect();
        cands.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| hot_frames[a.0].frame_id.cmp(&hot_frames[b.0].frame_id)));
        let (mut freed_b, mut freed_f) = (0u64, 0u64);
        let mut out = vec![];
        let mut next_floor = None;
        for (i, s) in cands {
            if freed_b >= need_bytes && freed_f >= need_frames {
                next_floor = Some(s);
                break;
            }
            let f = hot_frames[i];
            freed_b += f.size_bytes;
            freed_f += 1;
            let basis = format!("hot full, lowest score {s:.2} (room for {})", human_bytes(need_bytes));
            let d = Decision {
                frame_id: f.frame_id.clone(),
                from: Tier::Hot,
                to,
                action: Action::Pending,
                reason: format!("pending: {basis}"),
                basis,
                confidence: (1.0 - s).max(0.5),
                priority: 2.0 + (1.0 - s),
                forced: false,
                with_parent: None,
                cycle: self.cycle,
                at_ms: now_ms,
            };
            self.remember(d.clone());
            self.in_flight.insert(f.frame_id.clone(), d.clone());
            out.push(d);
        }
        self.hot_floor = next_floor.or(self.hot_floor);
        out
    }

    /// The caller executed (or failed) a move. Turns the pending decision into `executed` or
    /// `failed` and, when it moved, records it for the cooldown and cycle filters. A move the
    /// engine did not hand out (e.g. made by the manager itself) is recorded too.
    pub fn record_outcome(
        &mut self,
        frame_id: &str,
        from: Tier,
        to: Tier,
        ok: bool,
        err: Option<String>,
        now_ms: i64,
    ) -> Decision {
        let pending = self.in_flight.remove(frame_id).filter(|d| d.from == from && d.to == to);
        let mut d = pending.clone().unwrap_or_else(|| Decision {
            frame_id: frame_id.to_string(),
            from,
            to,
            action: Action::Pending,
            reason: String::new(),
            basis: "moved by the caller".into(),
            confidence: 1.0,
            priority: 0.0,
            forced: false,
            with_parent: None,
            cycle: self.cycle,
            at_ms: now_ms,
        });
        if ok {
            d.action = Action::Executed;
            d.reason = format!("executed: {}", d.basis);
            let q = self.moves.entry(frame_id.to_string()).or_default();
            q.push_back(MoveRecord { from, to, at_ms: now_ms, forced: d.forced });
            while q.len() > MOVES_PER_FRAME {
                q.pop_front();
            }
            self.access.mark_moved(frame_id);
            self.persistence.remove(frame_id);
        } else {
            d.action = Action::Failed;
            d.reason = format!("failed: {}", err.as_deref().unwrap_or("unknown error"));
        }
        // Replace the pending entry in the frame's history rather than adding a second one.
        let replaced = pending.is_some()
            && self.decisions.get_mut(frame_id).is_some_and(|q| {
                match q.iter_mut().rev().find(|x| x.action == Action::Pending && x.from == from && x.to == to) {
                    Some(x) => {
                        *x = d.clone();
                        true
                    }
                    None => false,
                }
            });
        if !replaced {
            self.remember(d.clone());
        }
        d
    }

    fn forced(&mut self, f: &FrameView, to: Tier, now_ms: i64) -> Decision {
        let demotion = to > f.tier;
        let (action, reason) = if demotion && f.active {
            (Action::Skipped, "skipped: active frame".to_string())
        } else if demotion && self.is_pinned(f) {
            (Action::Skipped, "skipped: pinned".to_string())
        } else if to == f.tier {
            (Action::Skipped, format!("skipped: already {}", to.as_str()))
        } else {
            (Action::Pending, "pending: forced by caller".to_string())
        };
        let d = Decision {
            frame_id: f.frame_id.clone(),
            from: f.tier,
            to,
            action,
            reason,
            basis: "forced by caller".into(),
            confidence: 1.0,
            priority: 3.0,
            forced: true,
            with_parent: None,
            cycle: self.cycle,
            at_ms: now_ms,
        };
        if action == Action::Pending {
            self.in_flight.insert(f.frame_id.clone(), d.clone());
        }
        self.remember(d.clone());
        d
    }

    /// Brings a frame hot now, bypassing the filters.
    pub fn force_promote(&mut self, f: &FrameView, now_ms: i64) -> Decision {
        self.forced(f, Tier::Hot, now_ms)
    }

    /// Moves a frame down to `to` now, bypassing the filters but not the rules: active and pinned
    /// frames are skipped. `to` must be colder than the frame's tier.
    pub fn force_demote(&mut self, f: &FrameView, to: Tier, now_ms: i64) -> Result<Decision> {
        if to < f.tier {
            return Err(TierError::invalid_argument(
                "tier",
                format!("{} is not colder than {}; use force_promote", to.as_str(), f.tier.as_str()),
            ));
        }
        Ok(self.forced(f, to, now_ms))
    }

    /// Pins a frame: never demoted automatically, brought back hot by the next cycle. Refused when
    /// the pinned total would exceed `maxPinnedBytes`.
    pub fn pin(&mut self, frame_id: &str, size_bytes: u64, now_ms: i64) -> Result<PinStatus> {
        let current = self.pinned_bytes_except(frame_id);
        let cap = self.opts.max_pinned_bytes;
        if current.saturating_add(size_bytes) > cap {
            return Err(TierError::invalid_argument(
                "frameId",
                format!(
                    "pinning {frame_id} ({}) would exceed maxPinnedBytes ({}; {} pinned)",
                    human_bytes(size_bytes),
                    human_bytes(cap),
                    human_bytes(current)
                ),
            ));
        }
        self.pins.insert(frame_id.to_string(), PinRecord { size_bytes, at_ms: now_ms });
        Ok(self.pin_status())
    }

    fn pinned_bytes_except(&self, frame_id: &str) -> u64 {
        self.pins.iter().filter(|(k, _)| k.as_str() != frame_id).map(|(_, p)| p.size_bytes).sum()
    }

    pub fn unpin(&mut self, frame_id: &str) -> bool {
        self.pins.remove(frame_id).is_some()
    }

    pub fn is_pinned_id(&self, frame_id: &str) -> bool {
        self.pins.contains_key(frame_id)
    }

    pub fn pin_status(&self) -> PinStatus {
        PinStatus {
            frames: self.pins.len(),
            pinned_bytes: self.pins.values().map(|p| p.size_bytes).sum(),
            cap_bytes: self.opts.max_pinned_bytes,
        }
    }

    /// Forgets a deleted frame entirely.
    pub fn forget(&mut self, frame_id: &str) {
        self.access.forget(frame_id);
        self.pins.remove(frame_id);
        self.moves.remove(frame_id);
        self.persistence.remove(frame_id);
        self.decisions.remove(frame_id);
        self.in_flight.remove(frame_id);
    }

    /// The last decisions about a frame, oldest first.
    pub fn decisions_of(&self, frame_id: &str) -> Vec<Decision> {
        self.decisions.get(frame_id).map(|q| q.iter().cloned().collect()).unwrap_or_default()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub fn cycle(&self) -> u64 {
        self.cycle
    }

    /// What the engine knows and expects of one frame. `view` adds tier, size and stack facts.
    pub fn explain(&self, frame_id: &str, now_ms: i64, view: Option<&FrameView>) -> Explanation {
        let stats = self.access.get(frame_id);
        let fallback = FrameView {
            frame_id: frame_id.to_string(),
            parent_id: None,
            tier: Tier::Hot,
            size_bytes: 0,
            created_s: now_ms / 1000,
            closed_s: None,
            active: false,
            pinned: false,
            keep_forever: false,
        };
        let f = view.unwrap_or(&fallback);
        let e = self.evaluate(f, now_ms);
        let pinned = self.is_pinned(f);
        let o = &self.opts;
        let expected_next = match view.map(|v| v.tier) {
            _ if self.in_flight.contains_key(frame_id) => {
                let d = &self.in_flight[frame_id];
                format!("moving {} (awaiting outcome)", arrow(d.from, d.to))
            }
            Some(Tier::Hot) if pinned => "stays hot: pinned".to_string(),
            Some(Tier::Hot) if f.active => "stays hot: active frame".to_string(),
            Some(Tier::Hot) => {
                let left = o.hot_max_age_ms as f64 / 1000.0 - e.idle_s;
                let next = match e.class.next_access_in_s {
                    Some(s) => format!("next read expected in {}", human_secs(s)),
                    None => "no further reads expected".to_string(),
                };
                format!(
                    "stays hot; {next}; goes warm after {} idle (in {}) unless hot fills up",
                    human_secs(o.hot_max_age_ms as f64 / 1000.0),
                    human_secs(left)
                )
            }
            Some(t) if pinned => format!("promotes {} next cycle: pinned", arrow(t, Tier::Hot)),
            Some(t) => {
                let since = stats.map(|s| s.since_move).unwrap_or(0);
                let more = o.promotion_threshold.saturating_sub(since).max(1);
                let mut s = format!(
                    "promotes {} after {more} more read(s) (threshold {})",
                    arrow(t, Tier::Hot),
                    o.promotion_threshold
                );
                if t == Tier::Warm {
                    let left = o.warm_max_age_ms as f64 / 1000.0 - e.idle_s;
                    s.push_str(&format!(
                        "; goes cold after {} idle (in {})",
                        human_secs(o.warm_max_age_ms as f64 / 1000.0),
                        human_secs(left)
                    ));
                }
                if let (Pattern::Periodic { .. }, Some(n)) = (e.class.pattern, e.class.next_access_in_s) {
                    s.push_str(&format!(
                        "; periodic, prefetched about {} before its next read in {}",
                        human_secs(o.sync_interval_ms as f64 / 500.0),
                        human_secs(n)
                    ));
                }
                s
            }
            None => "unknown tier: pass the frame's view for a forecast".to_string(),
        };
        Explanation {
            frame_id: frame_id.to_string(),
            tier: view.map(|v| v.tier),
            pinned,
            access: stats.cloned(),
            pattern: e.class,
            score: e.score,
            moves: self.moves.get(frame_id).map(|q| q.iter().cloned().collect()).unwrap_or_default(),
            last_decisions: self.decisions_of(frame_id),
            expected_next,
        }
    }

    /// Everything worth persisting. Moves in flight are not: after a restart they are re-decided.
    pub fn snapshot(&self) -> EngineSnapshot {
        let sorted = |m: &HashMap<String, VecDeque<MoveRecord>>| {
            m.iter().map(|(k, v)| (k.clone(), v.iter().cloned().collect())).collect::<BTreeMap<_, _>>()
        };
        EngineSnapshot {
            cycle: self.cycle,
            access: self.access.snapshot(),
            pins: self.pins.clone(),
            moves: sorted(&self.moves),
            persistence: self.persistence.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            decisions: self.decisions.iter().map(|(k, v)| (k.clone(), v.iter().cloned().collect())).collect(),
        }
    }

    /// Loads a snapshot (replacing the engine's memory, keeping its options).
    pub fn restore(&mut self, snap: EngineSnapshot) {
        let tau = self.tau_s();
        self.access = AccessTracker::new(tau);
        self.access.restore(snap.access);
        self.pins = snap.pins;
        self.moves = snap.moves.into_iter().map(|(k, v)| (k, v.into_iter().collect())).collect();
        self.persistence = snap.persistence.into_iter().collect();
        let keep = self.opts.decisions_per_frame.max(1);
        self.decisions = snap
            .decisions
            .into_iter()
            .map(|(k, v)| {
                let skip = v.len().saturating_sub(keep);
                (k, v.into_iter().skip(skip).collect())
            })
            .collect();
        self.in_flight.clear();
        self.cycle = snap.cycle;
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
