//! One policy cycle ([`PolicyEngine::run_cycle`]), step by step, as the engine module docs list them.

use std::collections::{HashMap, HashSet};

use super::{
    clamp01, Action, CycleCounts, CycleReport, Decision, Eval, FrameView, Persistence, PolicyEngine, Reachability,
};
use crate::policy::filters::{self, Candidate, Periodic};
use crate::policy::pattern::Pattern;
use crate::policy::pressure::{assess, PressureInputs, PressureLevel, PressureReport};
use crate::policy::{human_secs, Tier};

/// What a cycle works with: its frames, the pressure and the age limits that follow from it.
struct Cycle<'f> {
    frames: &'f [FrameView],
    now_ms: i64,
    /// The number this cycle gets (one more than the last committed one).
    number: u64,
    reach: Reachability,
    pressure: PressureReport,
    /// `hotMaxAge` shortened by pressure (infinite from Critical on: ranking takes over).
    hot_max_s: f64,
    warm_max_s: f64,
    sync_s: f64,
    /// ` (warning pressure)` on age bases while pressure shortens the window; empty at Normal.
    level_note: String,
}

/// A hot frame's age window and what shaped it (see [`PolicyEngine::age_window`]).
pub(super) struct AgeWindow {
    pub window_s: f64,
    /// Outcome learning's stretch (≥ 1).
    pub tight: f64,
    /// Read through us: it stays while hot has room. A frame never read through us (imported, or
    /// written and not read since) leaves past the window at any pressure below Critical.
    pub read: bool,
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
    /// The frame's rhythm when the classifier calls it periodic (the pattern filter).
    periodic: Option<Periodic>,
    action: Action,
    /// Empty until a step words it; a pending move that reaches the batch is `pending: <basis>`.
    reason: String,
    with_parent: Option<String>,
}

impl Rec {
    fn new(idx: usize, to: Tier, basis: String, confidence: f64, priority: f64, e: &Eval) -> Rec {
        Rec {
            idx,
            to,
            basis,
            confidence: clamp01(confidence),
            priority,
            under_pressure: false,
            bypass_filters: false,
            expected_reads: e.expected_reads,
            periodic: e.periodic(),
            action: Action::Pending,
            reason: String::new(),
            with_parent: None,
        }
    }

    fn set(&mut self, action: Action, reason: String) {
        self.action = action;
        self.reason = reason;
    }

    fn is_demotion(&self, frames: &[FrameView]) -> bool {
        self.to > frames[self.idx].tier
    }

    fn into_decision(self, frames: &[FrameView], cycle: u64, at_ms: i64) -> Decision {
        let f = &frames[self.idx];
        let mut d = Decision {
            action: self.action,
            confidence: self.confidence,
            priority: self.priority,
            with_parent: self.with_parent,
            ..Decision::pending(&f.frame_id, f.tier, self.to, self.basis, cycle, at_ms)
        };
        if !self.reason.is_empty() {
            d.reason = self.reason;
        }
        d
    }
}

/// The recommendations so far, and which frame (by index) has one.
#[derive(Default)]
struct Plan {
    recs: Vec<Rec>,
    rec_of: HashMap<usize, usize>,
}

impl Plan {
    fn add(&mut self, r: Rec) {
        self.rec_of.insert(r.idx, self.recs.len());
        self.recs.push(r);
    }
    fn has(&self, idx: usize) -> bool {
        self.rec_of.contains_key(&idx)
    }
}

/// A frame that may be demoted (its index in the caller's list), with what the engine thinks of it.
pub(super) struct Ranked {
    pub(super) idx: usize,
    pub(super) eval: Eval,
}

/// Indices of each frame's children, by parent id.
type Children<'f> = HashMap<&'f str, Vec<usize>>;

fn children_of(frames: &[FrameView]) -> Children<'_> {
    let mut children: Children = HashMap::new();
    for (i, f) in frames.iter().enumerate() {
        if let Some(p) = &f.parent_id {
            children.entry(p.as_str()).or_default().push(i);
        }
    }
    children
}

/// The closed descendants of frame `root` reached through closed frames only: an open frame is
/// still on a stack, and so is what hangs below it.
fn closed_descendants(frames: &[FrameView], children: &Children, root: usize) -> Vec<usize> {
    let mut stack: Vec<usize> = children.get(frames[root].frame_id.as_str()).cloned().unwrap_or_default();
    let mut seen: HashSet<usize> = HashSet::new();
    let mut out = vec![];
    while let Some(ci) = stack.pop() {
        let child = &frames[ci];
        if !seen.insert(ci) || child.active || child.closed_s.is_none() {
            continue;
        }
        if let Some(grand) = children.get(child.frame_id.as_str()) {
            stack.extend(grand.iter().copied());
        }
        out.push(ci);
    }
    out
}

impl PolicyEngine {
    /// Runs one policy cycle over `frames` (all frames, any tier). See the module docs.
    pub fn run_cycle(
        &mut self,
        now_ms: i64,
        frames: &[FrameView],
        inputs: &PressureInputs,
        reach: Reachability,
        dry_run: bool,
    ) -> CycleReport {
        if !dry_run {
            let window = self.regret_window_ms();
            self.learning.settle(now_ms, window);
            let window = self.admission_window_ms();
            self.admission.settle(now_ms, window);
            self.duels.settle(now_ms);
            self.companions.settle(now_ms);
            self.started_ms.get_or_insert(now_ms);
        }
        let c = self.measure_pressure(now_ms, frames, inputs, reach);
        let mut plan = Plan::default();
        self.recommend_by_rules(&c, &mut plan);
        self.recommend_pressure_demotions(&c, &mut plan, dry_run);
        self.update_hot_floor(&c);
        let persistence = self.count_persistence(&c, &plan.recs);
        self.apply_rules_and_filters(&c, &persistence, &mut plan.recs);
        self.hold_while_collecting(&c, &mut plan.recs);
        let children = children_of(frames);
        carry_closed_subtrees(&c, &children, &mut plan.recs, &plan.rec_of);
        defer_unreachable(&c, &mut plan.recs);
        if self.opts.prefetch_relatives {
            self.prefetch_relatives(&c, &children, &mut plan);
        }
        let (mut decisions, mut counts) = self.order_and_batch(&c, plan.recs);
        if let Some(run) = &self.bulk_run {
            counts = CycleCounts::default();
            for d in &mut decisions {
                if d.action == Action::Pending {
                    d.action = Action::Deferred;
                    d.reason = format!("deferred: bulk run {run} is moving frames; automatic moves wait for it");
                }
                counts.count(d);
            }
        }
        if !dry_run {
            let pending: HashSet<&str> =
                decisions.iter().filter(|d| d.action == Action::Pending).map(|d| d.frame_id.as_str()).collect();
            for f in frames.iter().filter(|f| pending.contains(f.frame_id.as_str())) {
                self.learning.note_kind(&f.frame_id, &f.kind);
            }
            self.commit(c.number, persistence, &decisions);
        }
        CycleReport {
            cycle: c.number,
            at_ms: now_ms,
            dry_run,
            decisions,
            counts,
            pressure: c.pressure,
            max_concurrent_moves: self.opts.max_concurrent_moves,
        }
    }

    /// Step 1: pressure, and the age limits it sets: hot and host pressure shorten `hotMaxAge`.
    fn measure_pressure<'f>(
        &self,
        now_ms: i64,
        frames: &'f [FrameView],
        inputs: &PressureInputs,
        reach: Reachability,
    ) -> Cycle<'f> {
        let o = &self.opts;
        let pressure = assess(inputs, &o.watermarks);
        let age_level = pressure.hot_level.max(pressure.host_level);
        let hot_max_s = age_level.age_factor().map(|k| o.hot_max_age_ms as f64 / 1000.0 * k).unwrap_or(f64::INFINITY);
        let level_note = if age_level > PressureLevel::Normal {
            format!(" ({} pressure)", age_level.as_str())
        } else {
            String::new()
        };
        Cycle {
            frames,
            now_ms,
            number: self.cycle + 1,
            reach,
            pressure,
            hot_max_s,
            warm_max_s: o.warm_max_age_ms as f64 / 1000.0,
            sync_s: o.sync_interval_ms as f64 / 1000.0,
            level_note,
        }
    }

    /// Step 2: the rule-based recommendations, one per frame at most (none for a frame in flight).
    fn recommend_by_rules(&self, c: &Cycle, plan: &mut Plan) {
        for (i, f) in c.frames.iter().enumerate() {
            if self.in_flight.contains_key(&f.frame_id) {
                continue;
            }
            let rec = match f.tier {
                Tier::Hot => self.idle_hot_demotion(c, i, f),
                Tier::Warm | Tier::Cold => self.remote_recommendation(c, i, f),
            };
            if let Some(r) = rec {
                plan.add(r);
            }
        }
    }

    /// A hot frame idle beyond its age window is *eligible* to leave, not gone: `hotMaxAge`,
    /// `sqlite.maxFrames` and `sqlite.maxSize` are limits hot must stay under, not a timer.
    /// - Never read through us (imported, or written and not read since): nothing predicts a
    ///   read, so it goes warm (cold when idle beyond `warmMaxAge` too) at any pressure below
    ///   Critical (after 3/4 of the window at Warning).
    /// - Read through us: it stays while hot has room, below Critical pressure. A frame read
    ///   before is the likeliest to be read again, often the next working day, and demoting it
    ///   while hot has room only turns that read into a miss (at Warning too; docs/POLICY.md has
    ///   the figures). From Critical the lowest-ranked hot frames leave
    ///   (`recommend_pressure_demotions`), idle ones first.
    fn idle_hot_demotion(&self, c: &Cycle, i: usize, f: &FrameView) -> Option<Rec> {
        let idle = self.idle_s(f, c.now_ms);
        let w = self.age_window(f, c.hot_max_s, c.now_ms);
        if w.read || idle <= w.window_s {
            return None;
        }
        let e = self.evaluate(f, c.now_ms);
        let to = if idle > c.warm_max_s { Tier::Cold } else { Tier::Warm };
        let mut conf = 0.5 + 0.5 * (idle / w.window_s - 1.0).min(1.0);
        if e.class.pattern == Pattern::Cold {
            conf = conf.max(e.class.confidence);
        }
        conf /= w.tight;
        // The stretch's reason, only for the frame that leaves (the window above took its factor).
        let (_, learnt) = self.learning.tightening(&f.frame_id, &f.kind, c.now_ms);
        let learnt = learnt.map(|w| format!("; learnt: {w}")).unwrap_or_default();
        let basis = format!(
            "idle {} > {} (hotMaxAge), never read{}{learnt}",
            human_secs(idle),
            human_secs(w.window_s),
            c.level_note
        );
        Some(Rec::new(i, to, basis, conf, 0.5 + 0.5 * (1.0 - e.score.total), &e))
    }

    /// A hot frame's age window: `base_s` (`hotMaxAge`, shortened by pressure) refined by
    /// frequency (a frame read again and again gets up to twice as long, a quarter more per read
    /// beyond the first) and stretched by outcome learning (a frame or kind whose demotions were
    /// regretted keeps hot longer).
    pub(super) fn age_window(&self, f: &FrameView, base_s: f64, now_ms: i64) -> AgeWindow {
        let reads = self.access.get(&f.frame_id).map(|s| s.count).unwrap_or(0);
        let tight = self.learning.tightening_factor(&f.frame_id, &f.kind, now_ms);
        let window_s = base_s * (1.0 + 0.25 * (reads.saturating_sub(1).min(4)) as f64) * tight;
        AgeWindow { window_s, tight, read: reads > 0 }
    }

    /// A warm or cold frame: pinned, or read `promotionThreshold` times, comes back hot; a warm
    /// one idle beyond `warmMaxAge` goes cold; else perhaps a periodic prefetch.
    fn remote_recommendation(&self, c: &Cycle, i: usize, f: &FrameView) -> Option<Rec> {
        let idle = self.idle_s(f, c.now_ms);
        let since_move = self.access.get(&f.frame_id).map(|s| s.since_move).unwrap_or(0);
        let threshold = self.opts.promotion_threshold;
        if self.is_pinned(f) {
            let e = self.evaluate(f, c.now_ms);
            let mut r = Rec::new(i, Tier::Hot, "pinned".into(), 1.0, 2.0, &e);
            // The caller asked for it: no cost-benefit test.
            r.expected_reads = f64::INFINITY;
            Some(r)
        } else if since_move >= threshold {
            let e = self.evaluate(f, c.now_ms);
            let basis = format!("{since_move} reads while {} (threshold {threshold})", f.tier.as_str());
            let mut r = Rec::new(i, Tier::Hot, basis, 1.0, 1.5 + 0.5 * e.score.total, &e);
            // The seed rule: the reads already happened, they are the benefit.
            r.expected_reads = f64::INFINITY;
            Some(r)
        } else if f.tier == Tier::Warm && idle > c.warm_max_s {
            let e = self.evaluate(f, c.now_ms);
            let conf = 0.5 + 0.5 * (idle / c.warm_max_s - 1.0).min(1.0);
            let basis = format!("idle {} > {}", human_secs(idle), human_secs(c.warm_max_s));
            Some(Rec::new(i, Tier::Cold, basis, conf, 0.4 + 0.5 * (1.0 - e.score.total), &e))
        } else if since_move == 0 {
            // Only frames not read since their last move: the others promote by reads.
            self.periodic_prefetch(c, i, f)
        } else {
            None
        }
    }

    /// A periodic frame whose next read is due within two sync intervals comes hot ahead of it
    /// (not under hot pressure, which wants room, not guesses).
    fn periodic_prefetch(&self, c: &Cycle, i: usize, f: &FrameView) -> Option<Rec> {
        let within_s = 2.0 * c.sync_s;
        if !self.opts.prefetch_periodic
            || c.pressure.hot_level >= PressureLevel::Warning
            || !self.maybe_due(&f.frame_id, c.now_ms, within_s)
        {
            return None;
        }
        let e = self.evaluate(f, c.now_ms);
        let next = e.class.next_access_in_s.filter(|s| *s <= within_s);
        let (Pattern::Periodic { .. }, Some(next)) = (e.class.pattern, next) else { return None };
        let basis = format!("prefetch: {}, next read expected in {}", e.class.pattern.describe(), human_secs(next));
        Some(Rec::new(i, Tier::Hot, basis, e.class.confidence, 1.0 + 0.5 * e.score.total, &e))
    }

    /// Cheap pre-check before classifying for a periodic prefetch: a periodic frame's gaps vary
    /// by at most ~30 %, so one whose last gap, repeated, is not due within `within_s` (give or
    /// take that much) cannot be due. Saves classifying every remote frame every cycle.
    fn maybe_due(&self, frame_id: &str, now_ms: i64, within_s: f64) -> bool {
        let Some(s) = self.access.get(frame_id) else { return false };
        let Some(&gap) = s.gaps_s.back() else { return false };
        s.count >= 3 && gap - s.age_s(now_ms) <= within_s + 0.3 * gap
    }

    /// Step 2b: at Critical and above, the lowest-scoring frames of the tier are demoted until it is
    /// back under the watermark of its level; the weakest hot score becomes the hot floor.
    fn recommend_pressure_demotions(&mut self, c: &Cycle, plan: &mut Plan, dry_run: bool) {
        let p = &c.pressure;
        for (tier, level, fill, mut need_bytes, mut need_frames) in [
            (Tier::Hot, p.hot_level, p.hot_fill, p.hot_excess_bytes, p.hot_excess_frames),
            (Tier::Warm, p.warm_level, p.warm_fill, p.warm_excess_bytes, 0),
        ] {
            if level < PressureLevel::Critical {
                continue;
            }
            // Demotions already recommended from this tier free space too.
            for r in plan.recs.iter().filter(|r| c.frames[r.idx].tier == tier && r.is_demotion(c.frames)) {
                need_bytes = need_bytes.saturating_sub(c.frames[r.idx].size_bytes);
                need_frames = need_frames.saturating_sub(1);
            }
            let unplanned = c.frames.iter().enumerate().filter(|(i, _)| !plan.has(*i));
            let ranked = self.lowest_scores_first(unplanned, tier, c.now_ms);
            if tier == Tier::Hot {
                self.hot_floor = ranked.first().map(|r| r.eval.score.total);
                if !dry_run {
                    self.open_duel(&ranked, |i| c.frames[i].frame_id.as_str(), c.now_ms);
                }
            }
            let emergency = level == PressureLevel::Emergency;
            let to = if tier == Tier::Hot { Tier::Warm } else { Tier::Cold };
            for Ranked { idx, eval } in ranked {
                if need_bytes == 0 && need_frames == 0 {
                    break;
                }
                // Workload-pattern suppression: a periodic frame due soon is passed over for the
                // next one (Emergency takes it: filters are bypassed there).
                if !emergency && self.due_soon(&eval) {
                    continue;
                }
                let s = eval.score.total;
                let basis =
                    format!("{} tier {} ({:.0}% full), score {s:.2}", tier.as_str(), level.as_str(), fill * 100.0);
                let urgent = if emergency { 1.0 } else { 0.0 };
                let mut r = Rec::new(idx, to, basis, (1.0 - s).max(0.5), 1.0 + urgent + (1.0 - s), &eval);
                r.under_pressure = true;
                r.bypass_filters = emergency;
                need_bytes = need_bytes.saturating_sub(c.frames[idx].size_bytes);
                need_frames = need_frames.saturating_sub(1);
                plan.add(r);
            }
        }
    }

    /// The frames of `tier` the engine may demote and that are not moving already, lowest score
    /// first (ties by id): the order pressure takes them in.
    pub(super) fn lowest_scores_first<'v>(
        &self,
        frames: impl IntoIterator<Item = (usize, &'v FrameView)>,
        tier: Tier,
        now_ms: i64,
    ) -> Vec<Ranked> {
        let mut ranked: Vec<(Ranked, &FrameView)> = frames
            .into_iter()
            .filter(|(_, f)| f.tier == tier && self.may_demote(f) && !self.in_flight.contains_key(&f.frame_id))
            .map(|(idx, f)| (Ranked { idx, eval: self.evaluate(f, now_ms) }, f))
            .collect();
        ranked.sort_by(|(a, fa), (b, fb)| {
            a.eval.score.total.total_cmp(&b.eval.score.total).then_with(|| fa.frame_id.cmp(&fb.frame_id))
        });
        ranked.into_iter().map(|(r, _)| r).collect()
    }

    /// Hot gives frames up: when the score's own first choice among `ranked` (before the recency
    /// mix) is not LRU's (the longest idle), a duel between the two opens (see [`super::duels`]).
    pub(super) fn open_duel<'i>(&mut self, ranked: &[Ranked], id_of: impl Fn(usize) -> &'i str, now_ms: i64) {
        if !self.opts.duels.enabled {
            return;
        }
        let by_score = ranked.iter().min_by(|a, b| a.eval.base_total.total_cmp(&b.eval.base_total));
        let by_recency = ranked.iter().max_by(|a, b| a.eval.idle_s.total_cmp(&b.eval.idle_s));
        if let (Some(s), Some(r)) = (by_score, by_recency) {
            self.duels.open(id_of(s.idx), id_of(r.idx), now_ms);
        }
    }

    /// Below Critical the floor is the weakest hot frame's score at Warning, and none at Normal
    /// (hot has room). At Critical and above the pressure step has set it.
    fn update_hot_floor(&mut self, c: &Cycle) {
        let level = c.pressure.hot_level;
        if level >= PressureLevel::Critical {
            return;
        }
        self.hot_floor = if level >= PressureLevel::Warning {
            c.frames
                .iter()
                .filter(|f| f.tier == Tier::Hot && self.may_demote(f))
                .map(|f| self.evaluate(f, c.now_ms).score.total)
                .min_by(|a, b| a.total_cmp(b))
        } else {
            None
        };
    }

    /// The persistence counters of the recommended demotions, as this cycle would leave them:
    /// one more for a move recommended in the last cycle too (within the window), else 1.
    fn count_persistence(&self, c: &Cycle, recs: &[Rec]) -> HashMap<String, Persistence> {
        let window_ms = self.opts.filters.persistence_window_ms as i64;
        let mut counters = HashMap::new();
        for r in recs.iter().filter(|r| r.is_demotion(c.frames)) {
            let id = &c.frames[r.idx].frame_id;
            let p = match self.persistence.get(id) {
                Some(p)
                    if p.to == r.to
                        && p.last_cycle + 1 == c.number
                        && c.now_ms.saturating_sub(p.first_ms) <= window_ms =>
                {
                    Persistence {
                        to: r.to,
                        cycles: p.cycles.saturating_add(1),
                        first_ms: p.first_ms,
                        last_cycle: c.number,
                    }
                }
                _ => Persistence { to: r.to, cycles: 1, first_ms: c.now_ms, last_cycle: c.number },
            };
            counters.insert(id.clone(), p);
        }
        counters
    }

    /// Step 3-4: the rules (no demotion of active or pinned frames), then the anti-churn filters
    /// (bypassed by emergency pressure demotions).
    fn apply_rules_and_filters(&self, c: &Cycle, persistence: &HashMap<String, Persistence>, recs: &mut [Rec]) {
        let no_moves = Default::default();
        for r in recs.iter_mut() {
            let f = &c.frames[r.idx];
            if let Some(refusal) = self.cycle_refusal(f, r.to) {
                r.set(Action::Skipped, refusal.decision_reason().into());
                continue;
            }
            if r.bypass_filters {
                continue;
            }
            let cand = Candidate {
                from: f.tier,
                to: r.to,
                now_ms: c.now_ms,
                confidence: r.confidence,
                history: self.moves.get(&f.frame_id).unwrap_or(&no_moves),
                persistent_cycles: persistence.get(&f.frame_id).map(|p| p.cycles).unwrap_or(0),
                size_bytes: f.size_bytes,
                expected_reads: r.expected_reads,
                under_pressure: r.under_pressure,
                // Only read by the trend filter: not computed when it is off.
                rising: if self.opts.filters.trend_enabled {
                    self.access.get(&f.frame_id).and_then(|s| s.rising(c.now_ms, self.opts.filters.trend_ratio))
                } else {
                    None
                },
                periodic: r.periodic,
            };
            if let Some((action, reason)) = Action::of_verdict(filters::apply(&self.opts.filters, &cand)) {
                r.set(action, reason);
            }
        }
    }

    /// Step 4b: `minDataCollection`: until the engine has observed that long (from its first
    /// cycle), rule moves wait (`observing: collecting data, 10 min of 1 h`); pins and pressure act.
    fn hold_while_collecting(&self, c: &Cycle, recs: &mut [Rec]) {
        let min_ms = self.opts.min_data_collection_ms.min(i64::MAX as u64) as i64;
        if min_ms == 0 {
            return;
        }
        let observed_ms = c.now_ms.saturating_sub(self.started_ms.unwrap_or(c.now_ms));
        if observed_ms >= min_ms {
            return;
        }
        let why = format!(
            "observing: collecting data, {} of {} (minDataCollection)",
            human_secs(observed_ms as f64 / 1000.0),
            human_secs(min_ms as f64 / 1000.0)
        );
        for r in recs.iter_mut().filter(|r| r.action == Action::Pending && !r.under_pressure && r.basis != "pinned") {
            r.set(Action::Observing, why.clone());
        }
    }

    /// Step 6: suggests promoting the parent and children of each frame about to be promoted hot, through
    /// the history filters; relatives already recommended or moving are left alone.
    fn prefetch_relatives(&self, c: &Cycle, children: &Children, plan: &mut Plan) {
        let by_id: HashMap<&str, usize> = c.frames.iter().enumerate().map(|(i, f)| (f.frame_id.as_str(), i)).collect();
        let promoted: Vec<(usize, f64)> = plan
            .recs
            .iter()
            .filter(|r| r.action == Action::Pending && r.to < c.frames[r.idx].tier && r.to == Tier::Hot)
            .map(|r| (r.idx, r.priority))
            .collect();
        for (pi, prio) in promoted {
            let f = &c.frames[pi];
            let parent = f.parent_id.as_deref().and_then(|p| by_id.get(p)).map(|&p| (p, "parent"));
            let kids = children.get(f.frame_id.as_str()).into_iter().flatten().map(|&k| (k, "child"));
            for (ri, what) in parent.into_iter().chain(kids) {
                let rf = &c.frames[ri];
                if rf.tier == Tier::Hot || plan.has(ri) || self.in_flight.contains_key(&rf.frame_id) {
                    continue;
                }
                let e = self.evaluate(rf, c.now_ms);
                let mut r = Rec::new(ri, Tier::Hot, format!("prefetch: {what} of {}", f.frame_id), 0.5, prio - 0.5, &e);
                if let Some((action, reason)) =
                    Action::of_verdict(self.churn_verdict(&rf.frame_id, rf.tier, Tier::Hot, c.now_ms))
                {
                    r.set(action, reason);
                } else if let Some(why) = c.reach.deferral(rf.tier, Tier::Hot) {
                    r.set(Action::Deferred, why);
                }
                plan.add(r);
            }
        }
    }

    /// Step 7b: highest priority first (ties by id); pending moves beyond the batch's free slots are
    /// deferred. Returns the decisions and their counts.
    fn order_and_batch(&self, c: &Cycle, mut recs: Vec<Rec>) -> (Vec<Decision>, CycleCounts) {
        let frames = c.frames;
        recs.sort_by(|a, b| {
            b.priority.total_cmp(&a.priority).then_with(|| frames[a.idx].frame_id.cmp(&frames[b.idx].frame_id))
        });
        let batch = self.opts.batch_size;
        let mut slots = batch.saturating_sub(self.in_flight.len());
        let mut decisions = Vec::with_capacity(recs.len());
        let mut counts = CycleCounts::default();
        for mut r in recs {
            if r.action == Action::Pending {
                if slots == 0 {
                    r.set(Action::Deferred, format!("deferred: batch full ({batch} moves per cycle)"));
                } else {
                    slots -= 1;
                }
            }
            let d = r.into_decision(frames, c.number, c.now_ms);
            counts.count(&d);
            decisions.push(d);
        }
        (decisions, counts)
    }

    /// Not on a dry run: the cycle number, the persistence counters (those of moves not
    /// recommended this cycle lapse: persistence means consecutive) and the decisions.
    fn commit(&mut self, cycle: u64, persistence: HashMap<String, Persistence>, decisions: &[Decision]) {
        self.cycle = cycle;
        self.persistence = persistence;
        for d in decisions {
            self.hand_out(d);
        }
    }
}

/// Step 5: stack awareness: a closed frame's demotion carries its closed descendants that would leave
/// the same tier too (whatever their own filters said), so a task moves as a whole. (An active
/// frame's own demotion was skipped by the rules, so it carries nothing.)
fn carry_closed_subtrees(c: &Cycle, children: &Children, recs: &mut [Rec], rec_of: &HashMap<usize, usize>) {
    for ri in 0..recs.len() {
        let lead = &recs[ri];
        let parent = &c.frames[lead.idx];
        if !lead.is_demotion(c.frames) || lead.action == Action::Skipped || lead.with_parent.is_some() {
            continue;
        }
        let (to, action) = (lead.to, lead.action);
        let reason = match action {
            Action::Pending => format!("pending: with parent {}", parent.frame_id),
            _ => format!("{} (with parent {})", lead.reason, parent.frame_id),
        };
        for ci in closed_descendants(c.frames, children, lead.idx) {
            let Some(&cr) = rec_of.get(&ci) else { continue };
            let child = &c.frames[ci];
            let r = &mut recs[cr];
            if !r.is_demotion(c.frames) || child.tier != parent.tier || r.action == Action::Skipped {
                continue;
            }
            r.to = to;
            r.set(action, reason.clone());
            r.with_parent = Some(parent.frame_id.clone());
        }
    }
}

/// Step 7a: a pending move to or from a tier that cannot be reached now is deferred.
fn defer_unreachable(c: &Cycle, recs: &mut [Rec]) {
    for r in recs.iter_mut().filter(|r| r.action == Action::Pending) {
        if let Some(why) = c.reach.deferral(c.frames[r.idx].tier, r.to) {
            r.set(Action::Deferred, why);
        }
    }
}
