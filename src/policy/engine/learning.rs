//! Outcome learning: every move the engine decided and the caller executed gets an outcome, and
//! the outcomes tighten (or leave alone) the rules for the frames and kinds they concern.
//!
//! Outcomes:
//! - a **demotion** is *regretted* when the frame is promoted back within the regret window
//!   (`hotMaxAge`), or read more than `promotionThreshold` times while remote; it is *good* when the
//!   window passes without either;
//! - a **promotion** is *regretted* when the frame is demoted again without a single read in hot
//!   (evicted unread), *good* at its first read in hot.
//!
//! Each outcome is counted, with exponential decay (half-life [`HALF_LIFE_MS`]), for the frame and
//! for its kind (its project: the key the manager gives in [`FrameView::kind`]). A demotion rule's
//! window for a frame is stretched by [`PolicyEngine::tightening`]: `1 + 2·bad/(n+1)` from the
//! frame's own outcomes plus `0.5·bad/(n+1)` from its kind's, at most ×4, and the move's
//! confidence is divided by the same factor. A frame whose demotions were good keeps the plain
//! rule; one hurt by them keeps hot longer. Memory is bounded: [`MAX_FRAMES`] frames' outcomes, the
//! last [`HISTORY`] outcomes each.
//!
//! [`FrameView::kind`]: super::FrameView::kind

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::push_bounded;
use crate::policy::{arrow, human_secs, tier_serde, Tier};

/// Half-life of outcome counts: a week.
pub const HALF_LIFE_MS: f64 = 7.0 * 86_400_000.0;
/// Frames whose outcomes are kept (the least recently updated are dropped beyond it).
pub const MAX_FRAMES: usize = 10_000;
/// Outcomes shown per frame.
pub const HISTORY: usize = 8;
/// The most a frame's rule windows are stretched.
pub const MAX_TIGHTENING: f64 = 4.0;

/// Decaying counts of good and regretted outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rate {
    pub good: f64,
    pub regretted: f64,
    pub at_ms: i64,
}

impl Rate {
    fn decayed(&self, now_ms: i64) -> Rate {
        self.decayed_with(now_ms, HALF_LIFE_MS)
    }
    fn add(&mut self, good: bool, now_ms: i64) {
        self.add_with(good, now_ms, HALF_LIFE_MS)
    }
    /// The counts as of `now_ms`, halved every `half_life_ms`.
    pub(super) fn decayed_with(&self, now_ms: i64, half_life_ms: f64) -> Rate {
        let k = 0.5f64.powf(now_ms.saturating_sub(self.at_ms).max(0) as f64 / half_life_ms);
        Rate { good: self.good * k, regretted: self.regretted * k, at_ms: now_ms.max(self.at_ms) }
    }
    pub(super) fn add_with(&mut self, good: bool, now_ms: i64, half_life_ms: f64) {
        *self = self.decayed_with(now_ms, half_life_ms);
        if good {
            self.good += 1.0;
        } else {
            self.regretted += 1.0;
        }
    }
    /// As of `now_ms` (halved every `half_life_ms`): the good share of the outcomes (0 without
    /// any) and how many there are, the evidence.
    pub(super) fn good_share_with(&self, now_ms: i64, half_life_ms: f64) -> (f64, f64) {
        let r = self.decayed_with(now_ms, half_life_ms);
        let evidence = r.good + r.regretted;
        (if evidence > 0.0 { r.good / evidence } else { 0.0 }, evidence)
    }
    /// Regretted share with one good outcome of prior: 0 without history.
    pub fn regret(&self, now_ms: i64) -> f64 {
        let r = self.decayed(now_ms);
        r.regretted / (r.good + r.regretted + 1.0)
    }
    /// Success rate (good share, 1 without history).
    pub fn success(&self, now_ms: i64) -> f64 {
        let r = self.decayed(now_ms);
        if r.good + r.regretted <= 0.0 {
            1.0
        } else {
            r.good / (r.good + r.regretted)
        }
    }
}

/// One outcome, as `explain` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeRecord {
    #[serde(deserialize_with = "tier_serde::de")]
    pub from: Tier,
    #[serde(deserialize_with = "tier_serde::de")]
    pub to: Tier,
    /// What the move was decided on (the decision's basis).
    pub basis: String,
    pub moved_ms: i64,
    pub judged_ms: i64,
    pub good: bool,
    /// `good: not read again within 24 h`, `regretted: promoted back after 2 h`, ...
    pub outcome: String,
}

/// A move waiting for its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Open {
    #[serde(deserialize_with = "tier_serde::de")]
    from: Tier,
    #[serde(deserialize_with = "tier_serde::de")]
    to: Tier,
    basis: String,
    kind: String,
    at_ms: i64,
    reads: u32,
}

/// A frame's outcomes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FrameOutcomes {
    pub rate: Rate,
    pub history: VecDeque<OutcomeRecord>,
}

/// What the engine learnt from outcomes; part of the engine's snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Learning {
    open: HashMap<String, Open>,
    frames: HashMap<String, FrameOutcomes>,
    kinds: HashMap<String, Rate>,
    /// The kind of each frame the engine decided a move of (noted when it decides).
    #[serde(default)]
    kind_of: HashMap<String, String>,
}

impl Learning {
    fn judge(&mut self, frame_id: &str, o: Open, good: bool, outcome: String, now_ms: i64) {
        let rec = OutcomeRecord {
            from: o.from,
            to: o.to,
            basis: o.basis,
            moved_ms: o.at_ms,
            judged_ms: now_ms,
            good,
            outcome: format!("{}: {outcome}", if good { "good" } else { "regretted" }),
        };
        let f = self.frames.entry(frame_id.to_string()).or_default();
        f.rate.add(good, now_ms);
        push_bounded(&mut f.history, rec, HISTORY);
        self.kinds.entry(o.kind).or_default().add(good, now_ms);
        // Past the bound, the least recently judged tenth goes in one go (amortised).
        super::prune_to(&mut self.frames, MAX_FRAMES, |f| f.rate.at_ms, |_| false);
    }

    /// An executed move. It settles what was open for the frame (a promotion demoted again unread,
    /// a demotion promoted back), then opens this move when the engine decided it (`decided`).
    #[allow(clippy::too_many_arguments)]
    pub fn moved(
        &mut self,
        frame_id: &str,
        from: Tier,
        to: Tier,
        basis: &str,
        decided: bool,
        now_ms: i64,
        regret_window_ms: i64,
    ) {
        if let Some(o) = self.open.remove(frame_id) {
            let promoted_back = to < from && o.to > o.from;
            let demoted_again = to > from && o.to < o.from;
            let after = human_secs(now_ms.saturating_sub(o.at_ms) as f64 / 1000.0);
            if promoted_back && now_ms.saturating_sub(o.at_ms) <= regret_window_ms {
                self.judge(frame_id, o, false, format!("promoted back after {after}"), now_ms);
            } else if promoted_back {
                self.judge(frame_id, o, true, format!("not needed hot for {after}"), now_ms);
            } else if demoted_again && o.reads == 0 {
                self.judge(frame_id, o, false, format!("demoted again after {after} unread"), now_ms);
            }
        }
        if decided {
            let kind = self.kind_of.get(frame_id).cloned().unwrap_or_default();
            let o = Open { from, to, basis: basis.to_string(), kind, at_ms: now_ms, reads: 0 };
            self.open.insert(frame_id.to_string(), o);
        }
    }

    /// A read of the frame in `tier`: a promotion read in hot was good; a demotion read more than
    /// `threshold` times while remote was regretted.
    pub fn read(&mut self, frame_id: &str, tier: Tier, threshold: u32, now_ms: i64) {
        let Some(o) = self.open.get_mut(frame_id) else { return };
        o.reads = o.reads.saturating_add(1);
        let (is_promotion, reads, remote) = (o.to < o.from, o.reads, o.to);
        if is_promotion && tier == Tier::Hot {
            if let Some(o) = self.open.remove(frame_id) {
                self.judge(frame_id, o, true, "read in hot".to_string(), now_ms);
            }
        } else if !is_promotion && tier != Tier::Hot && reads > threshold.max(1) {
            if let Some(o) = self.open.remove(frame_id) {
                let why = format!("read {reads} times while {}", remote.as_str());
                self.judge(frame_id, o, false, why, now_ms);
            }
        }
    }

    /// Demotions whose regret window passed unregretted are good.
    pub fn settle(&mut self, now_ms: i64, regret_window_ms: i64) {
        let due: Vec<String> = self
            .open
            .iter()
            .filter(|(_, o)| o.to > o.from && now_ms.saturating_sub(o.at_ms) > regret_window_ms)
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            if let Some(o) = self.open.remove(&k) {
                let why = format!("not promoted back within {}", human_secs(regret_window_ms as f64 / 1000.0));
                self.judge(&k, o, true, why, now_ms);
            }
        }
    }

    /// How much the demotion rules are stretched for this frame (≥ 1), and why.
    pub fn tightening(&self, frame_id: &str, kind: &str, now_ms: i64) -> (f64, Option<String>) {
        let factor = self.tightening_factor(frame_id, kind, now_ms);
        if factor == 1.0 {
            return (1.0, None);
        }
        let fr = self.frames.get(frame_id).map(|f| f.rate.decayed(now_ms)).unwrap_or_default();
        let why = format!(
            "window ×{factor:.2}: {:.1} regretted / {:.1} good outcomes of this frame, kind success {:.0}%",
            fr.regretted,
            fr.good,
            100.0 * self.kinds.get(kind).map(|r| r.success(now_ms)).unwrap_or(1.0)
        );
        (factor, Some(why))
    }

    /// The factor of [`Self::tightening`] alone (1 when nothing was regretted), for the callers
    /// that rank every frame of a cycle and show no reason: building the reason's text there
    /// would cost a string per frame of a kind with any regret.
    pub fn tightening_factor(&self, frame_id: &str, kind: &str, now_ms: i64) -> f64 {
        let f = self.frames.get(frame_id).map(|f| f.rate.regret(now_ms)).unwrap_or(0.0);
        let k = self.kinds.get(kind).map(|r| r.regret(now_ms)).unwrap_or(0.0);
        let factor = (1.0 + 2.0 * f + 0.5 * k).min(MAX_TIGHTENING);
        if factor <= 1.0 + 1e-9 {
            1.0
        } else {
            factor
        }
    }

    pub fn history(&self, frame_id: &str) -> Vec<OutcomeRecord> {
        self.frames.get(frame_id).map(|f| f.history.iter().cloned().collect()).unwrap_or_default()
    }

    pub fn awaiting(&self, frame_id: &str) -> Option<String> {
        self.open
            .get(frame_id)
            .map(|o| format!("{} awaiting its outcome ({} reads since)", arrow(o.from, o.to), o.reads))
    }

    /// Notes the kind of a frame the engine is deciding about (for the move's outcome).
    pub fn note_kind(&mut self, frame_id: &str, kind: &str) {
        if kind.is_empty() {
            self.kind_of.remove(frame_id);
        } else if self.kind_of.get(frame_id).map(String::as_str) != Some(kind) {
            self.kind_of.insert(frame_id.to_string(), kind.to_string());
        }
    }

    pub fn forget(&mut self, frame_id: &str) {
        self.kind_of.remove(frame_id);
        self.open.remove(frame_id);
        self.frames.remove(frame_id);
    }
}
