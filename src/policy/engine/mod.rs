//! The [`PolicyEngine`]: turns access statistics, frame views and pressure into reported
//! decisions, remembers what it decided and what was executed, and explains itself.
//!
//! A cycle ([`PolicyEngine::run_cycle`], in `cycle.rs`):
//! 1. measures pressure ([`super::pressure`]);
//! 2. recommends moves: the seed rules (hot idle > `hotMaxAge` → warm, warm idle > `warmMaxAge` →
//!    cold, `promotionThreshold` remote reads → hot), refined by the score and pattern (periodic
//!    prefetch; demotions that would turn expected reads remote are filtered), plus pressure
//!    demotions of the lowest-scoring frames; pinned frames are brought back hot;
//! 3. never demotes pinned or active frames (`skipped: pinned`, `skipped: active frame`; the rules
//!    are [`crate::model::rules`]'s);
//! 4. runs the anti-churn filters ([`super::filters`]), except for pressure demotions at the
//!    emergency level;
//! 5. decides a closed frame together with its closed descendants that would move too;
//! 6. with `prefetchRelatives`, suggests promoting the parent and children of promoted frames;
//! 7. defers moves to or from an unreachable tier, orders by priority and caps the batch.
//!
//! Moves the caller should execute come out `pending`; the caller reports back with
//! [`PolicyEngine::record_outcome`], which makes them `executed` or `failed` and feeds the
//! cooldown and cycle history. A dry run reports the same decisions and changes nothing.
//!
//! Files: `cycle.rs` (the cycle's steps), `reads.rs` (reads and writes), `forced.rs` (moves asked
//! for outside a cycle), `outcomes.rs` (what the caller reports back), `pins.rs`, `explain.rs`,
//! `snapshot.rs`, `tests.rs`.

pub mod admission;
pub mod companions;
mod cycle;
pub mod duels;
mod explain;
mod forced;
pub mod learning;
mod outcomes;
mod pins;
mod reads;
mod snapshot;

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::access::AccessTracker;
use super::filters::{self, Candidate, MoveRecord, Periodic, Verdict};
use super::options::PolicyOptions;
use super::pattern::{classify, Classification, Pattern};
use super::pressure::PressureReport;
use super::score::{expected_reads, score, ScoreParts};
use super::{tier_serde, Tier};
use crate::model::rules::{self, Refusal, Subject};

pub use explain::Explanation;
pub use pins::{PinRecord, PinStatus};
pub use snapshot::EngineSnapshot;

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
    /// What outcome learning groups frames by (the manager gives the project id; may be empty).
    #[serde(default)]
    pub kind: String,
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

    /// `deferred: <tier> tier unreachable` for the first of the move's ends that cannot be reached.
    fn deferral(&self, from: Tier, to: Tier) -> Option<String> {
        [from, to].into_iter().find(|t| !self.reaches(*t)).map(|t| format!("deferred: {} tier unreachable", t.as_str()))
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

    /// A filter's objection as a decision's action and reason (`None`: the filters let it pass).
    fn of_verdict(v: Verdict) -> Option<(Action, String)> {
        match v {
            Verdict::Pass => None,
            Verdict::Filtered(why) => Some((Action::Filtered, format!("filtered: {why}"))),
            Verdict::Observing(why) => Some((Action::Observing, format!("observing: {why}"))),
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

    /// A pending move of `frame_id` for `basis` (`pending: <basis>`), full confidence, no
    /// priority, not forced; callers override what differs with struct-update syntax.
    fn pending(frame_id: &str, from: Tier, to: Tier, basis: String, cycle: u64, at_ms: i64) -> Decision {
        Decision {
            frame_id: frame_id.to_string(),
            from,
            to,
            action: Action::Pending,
            reason: format!("pending: {basis}"),
            basis,
            confidence: 1.0,
            priority: 0.0,
            forced: false,
            with_parent: None,
            cycle,
            at_ms,
        }
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

impl CycleCounts {
    fn count(&mut self, d: &Decision) {
        match d.action {
            Action::Pending => {
                self.pending += 1;
                if d.is_promotion() {
                    self.promotions += 1;
                } else {
                    self.demotions += 1;
                }
            }
            Action::Filtered => self.filtered += 1,
            Action::Skipped => self.skipped += 1,
            Action::Observing => self.observing += 1,
            Action::Deferred => self.deferred += 1,
            Action::Executed | Action::Failed => {}
        }
    }
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

/// What one frame looks like to the engine right now.
struct Eval {
    class: Classification,
    /// The score, its total leaning toward recency by the learnt mix (see [`duels`]): the key
    /// victims are ranked by and the hot floor is measured in.
    score: ScoreParts,
    /// The total before the mix: the score's own choice, for the duels.
    base_total: f64,
    idle_s: f64,
    expected_reads: f64,
}

impl Eval {
    /// The frame's rhythm when it reads periodically (for the pattern filter).
    fn periodic(&self) -> Option<Periodic> {
        match (self.class.pattern, self.class.next_access_in_s) {
            (Pattern::Periodic { period_s }, Some(next_s)) => {
                Some(Periodic { period_s, next_s, confidence: self.class.confidence })
            }
            _ => None,
        }
    }
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
    /// When each frame was last written through us (not an access: it never makes a frame look
    /// read; it lets a first read of fresh work promote it). In memory only.
    written: HashMap<String, i64>,
    /// Outcomes of executed moves, and what they tightened.
    learning: learning::Learning,
    /// Whether remote reads are read again soon (learned admission at a first remote read).
    admission: admission::Admission,
    /// Whether the score's victims or LRU's were read again first (the recency mix of the ranking).
    duels: duels::Duels,
    /// Which frames are read together (a promotion by read brings its companions).
    companions: companions::Companions,
    /// When the engine's first (non-dry) cycle ran: the start of `minDataCollection`.
    started_ms: Option<i64>,
    cycle: u64,
    /// Score of the weakest evictable hot frame when hot was last found under pressure; `None`
    /// while hot has room. A remote frame read again is promoted when it beats this.
    hot_floor: Option<f64>,
    /// A bulk run moving frames of this file now (set by the caller before each cycle): the
    /// cycle's moves wait for it (deferred), so the engine never decides again what the run is
    /// moving, nor moves frames back against it.
    bulk_run: Option<String>,
}

fn clamp01(x: f64) -> f64 {
    if x.is_finite() {
        x.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// Frames whose move and decision histories (and last write times) the engine keeps: beyond, the
/// least recent tenth is dropped in one go (amortised). Unbounded, a bulk run of a million frames
/// left a million histories in memory and in the snapshot: 777 MB peak RSS at 1,000,000 frames
/// against 72 MB at 100,000 (`bench/scale.js`). The filters look back an hour at most, and a
/// frame dropped here only loses its `explain` history.
const MAX_TRACKED_FRAMES: usize = 50_000;

/// Drops the least recent tenth of `map` once it holds more than `MAX_TRACKED_FRAMES` frames (by
/// `at`, each entry's time), keeping those `keep` says must stay.
fn prune_tracked<V>(map: &mut HashMap<String, V>, at: impl Fn(&V) -> i64, keep: impl Fn(&str) -> bool) {
    prune_to(map, MAX_TRACKED_FRAMES, at, keep)
}

/// Past `max` entries, drop the least recent tenth of `max` (by `at`) that `keep` does not hold.
fn prune_to<V>(map: &mut HashMap<String, V>, max: usize, at: impl Fn(&V) -> i64, keep: impl Fn(&str) -> bool) {
    if map.len() <= max {
        return;
    }
    let mut by_age: Vec<(i64, &String)> = map.iter().filter(|(k, _)| !keep(k)).map(|(k, v)| (at(v), k)).collect();
    let n = (max / 10).min(by_age.len());
    if n == 0 {
        return;
    }
    by_age.select_nth_unstable_by_key(n - 1, |(t, _)| *t);
    let gone: Vec<String> = by_age[..n].iter().map(|(_, k)| (*k).clone()).collect();
    for k in gone {
        map.remove(&k);
    }
}

/// Appends to a per-frame history, dropping the oldest entries beyond `keep`.
fn push_bounded<T>(q: &mut VecDeque<T>, item: T, keep: usize) {
    q.push_back(item);
    while q.len() > keep {
        q.pop_front();
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
            bulk_run: None,
            written: HashMap::new(),
            learning: Default::default(),
            admission: Default::default(),
            duels: Default::default(),
            companions: Default::default(),
            started_ms: None,
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

    /// The last decisions about a frame, oldest first.
    pub fn decisions_of(&self, frame_id: &str) -> Vec<Decision> {
        self.decisions.get(frame_id).map(|q| q.iter().cloned().collect()).unwrap_or_default()
    }

    /// The bulk run going on this file (`None`: none), for the next cycles.
    pub fn set_bulk_run(&mut self, run: Option<String>) {
        self.bulk_run = run;
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub fn cycle(&self) -> u64 {
        self.cycle
    }

    /// Forgets a deleted frame entirely: everything the engine keeps per frame (accesses, pin,
    /// moves, persistence counter, decisions, a move in flight) goes.
    pub fn forget(&mut self, frame_id: &str) {
        self.access.forget(frame_id);
        self.pins.remove(frame_id);
        self.moves.remove(frame_id);
        self.persistence.remove(frame_id);
        self.decisions.remove(frame_id);
        self.in_flight.remove(frame_id);
        self.written.remove(frame_id);
        self.learning.forget(frame_id);
        self.admission.forget(frame_id);
        self.duels.forget(frame_id);
        self.companions.forget(frame_id);
    }

    /// How long after a demotion a promotion back counts as regretted: `hotMaxAge`.
    fn regret_window_ms(&self) -> i64 {
        self.opts.hot_max_age_ms.min(i64::MAX as u64) as i64
    }

    pub fn learning(&self) -> &learning::Learning {
        &self.learning
    }

    pub fn admission(&self) -> &admission::Admission {
        &self.admission
    }

    pub fn companions(&self) -> &companions::Companions {
        &self.companions
    }

    pub fn duels(&self) -> &duels::Duels {
        &self.duels
    }

    /// The weight of recency in the ranking key now (0 with duels off or undecided).
    fn recency_mix(&self, now_ms: i64) -> f64 {
        if self.opts.duels.enabled {
            self.duels.mix(now_ms).mix
        } else {
            0.0
        }
    }

    fn admission_window_ms(&self) -> i64 {
        self.opts.admission.window_ms.min(i64::MAX as u64) as i64
    }

    fn tau_s(&self) -> f64 {
        self.opts.frequency_window_ms as f64 / 1000.0
    }

    /// Seconds since the frame was last touched: read through us, or written (its own close time,
    /// else its creation time, as the view gives them), whichever is later. Storing a frame is not
    /// an access: an imported frame closed ten days ago is ten days idle.
    pub(super) fn idle_s(&self, f: &FrameView, now_ms: i64) -> f64 {
        let own_s = f.closed_s.unwrap_or(f.created_s).max(f.created_s);
        let own = (now_ms as f64 / 1000.0 - own_s as f64).max(0.0);
        let touched = match self.access.get(&f.frame_id) {
            Some(s) => s.age_s(now_ms).min(own),
            None => own,
        };
        match self.companions.brought_at(&f.frame_id) {
            Some(at) => touched.min(now_ms.saturating_sub(at).max(0) as f64 / 1000.0),
            None => touched,
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
        // Outcome learning: a frame (or kind) whose demotions were regretted scores as if idle
        // for less, so pressure and `make_room` take it later, as the age rule's window stretches.
        let tight = self.learning.tightening_factor(&f.frame_id, &f.kind, now_ms);
        let mut parts = score(stats, &class, idle_s / tight, f.size_bytes, now_ms, tau, &self.opts.weights);
        let base_total = parts.total;
        parts.total = self.mixed(&parts, now_ms);
        let horizon = self.opts.filters.cost_horizon_ms as f64 / 1000.0;
        let expected_reads = expected_reads(stats, &class, now_ms, tau, horizon);
        Eval { class, score: parts, base_total, idle_s, expected_reads }
    }

    /// The score's total leaning toward recency by the learnt mix.
    fn mixed(&self, parts: &ScoreParts, now_ms: i64) -> f64 {
        let m = self.recency_mix(now_ms);
        (1.0 - m) * parts.total + m * parts.recency
    }

    /// Whether the frame reads periodically and its next read is due soon (the pattern filter's
    /// test, also asked by the pressure step and `make_room`, which take such frames last).
    fn due_soon(&self, eval: &Eval) -> bool {
        eval.periodic().is_some_and(|p| filters::due_soon(&self.opts.filters, &p))
    }

    fn is_pinned(&self, f: &FrameView) -> bool {
        f.pinned || self.pins.contains_key(&f.frame_id)
    }

    /// The frame as the move rules see it (the engine's own pins included).
    fn subject(&self, f: &FrameView) -> Subject {
        Subject { active: f.active, pinned: self.is_pinned(f) }
    }

    /// Whether the rules let the engine demote the frame on its own (not active, not pinned).
    fn may_demote(&self, f: &FrameView) -> bool {
        rules::check(self.subject(f), true, false).is_ok()
    }

    /// The rule refusing the move of `f` to `to`, as a forced move reports it (activity first).
    fn refusal(&self, f: &FrameView, to: Tier) -> Option<Refusal> {
        rules::check(self.subject(f), rules::is_demotion(f.tier, to), false).err()
    }

    /// The rule refusing the move, as a cycle (and `explain`) reports it: a frame both pinned and
    /// active is reported pinned, as cycles always have.
    fn cycle_refusal(&self, f: &FrameView, to: Tier) -> Option<Refusal> {
        match self.refusal(f, to) {
            Some(Refusal::Active) if self.is_pinned(f) => Some(Refusal::Pinned),
            other => other,
        }
    }

    /// The churn history filters alone (cooldown, cycles), for a promotion the engine suggests
    /// outside the cycle's ranking: a frame read again, a relative of a promoted frame.
    fn churn_verdict(&self, frame_id: &str, from: Tier, to: Tier, now_ms: i64) -> Verdict {
        let none = VecDeque::new();
        let cand = Candidate {
            from,
            to,
            now_ms,
            confidence: 1.0,
            history: self.moves.get(frame_id).unwrap_or(&none),
            persistent_cycles: u32::MAX,
            size_bytes: 0,
            expected_reads: f64::INFINITY,
            under_pressure: false,
            rising: None,
            periodic: None,
        };
        filters::history(&self.opts.filters, &cand)
    }

    fn remember(&mut self, d: Decision) {
        let keep = self.opts.decisions_per_frame.max(1);
        push_bounded(self.decisions.entry(d.frame_id.clone()).or_default(), d, keep);
        let in_flight = &self.in_flight;
        prune_tracked(&mut self.decisions, |q| q.back().map_or(i64::MIN, |d| d.at_ms), |id| in_flight.contains_key(id));
    }

    /// Records a decision handed to the caller: remembered, and awaiting its outcome if pending.
    fn hand_out(&mut self, d: &Decision) {
        if d.action == Action::Pending {
            self.in_flight.insert(d.frame_id.clone(), d.clone());
        }
        self.remember(d.clone());
    }
}

#[cfg(test)]
mod tests;
