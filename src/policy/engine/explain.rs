//! `explain(frame)`: what the engine knows, thinks and expects of one frame, in words.

use serde::{Deserialize, Serialize};

use super::learning::OutcomeRecord;
use super::{Decision, Eval, FrameView, PolicyEngine};
use crate::model::rules::Refusal;
use crate::policy::access::AccessStats;
use crate::policy::filters::MoveRecord;
use crate::policy::pattern::{Classification, Pattern};
use crate::policy::score::ScoreParts;
use crate::policy::{arrow, human_secs, tier_serde, Tier};

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
    /// Outcomes of the frame's last executed moves (good or regretted, and why), oldest first.
    #[serde(default)]
    pub outcomes: Vec<OutcomeRecord>,
    /// How those outcomes (and its kind's) change the next decision: `window ×1.67: ...`, or
    /// `no change`; and a move still awaiting its outcome.
    #[serde(default)]
    pub learning: String,
    /// The frames read with this one in earlier bursts, which a promotion of it brings along, and
    /// whether bringing pays here: `b (2 bursts), c (2 bursts); brought: 64% of 25 probes useful`.
    #[serde(default)]
    pub companions: String,
    /// How hot's victims are ranked now: by the score, or leaning to recency where LRU's choices
    /// proved better (victim duels).
    #[serde(default)]
    pub ranking: String,
}

impl PolicyEngine {
    /// What the engine knows and expects of one frame. `view` adds tier, size and stack facts.
    pub fn explain(&self, frame_id: &str, now_ms: i64, view: Option<&FrameView>) -> Explanation {
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
            kind: String::new(),
        };
        let f = view.unwrap_or(&fallback);
        let e = self.evaluate(f, now_ms);
        let expected_next = match (self.in_flight.get(frame_id), view.map(|v| v.tier)) {
            (Some(d), _) => format!("moving {} (awaiting outcome)", arrow(d.from, d.to)),
            (None, Some(Tier::Hot)) => self.hot_forecast(f, &e, now_ms),
            (None, Some(t)) => self.remote_forecast(frame_id, t, self.is_pinned(f), &e, now_ms),
            (None, None) => "unknown tier: pass the frame's view for a forecast".to_string(),
        };
        Explanation {
            frame_id: frame_id.to_string(),
            tier: view.map(|v| v.tier),
            pinned: self.is_pinned(f),
            access: self.access.get(frame_id).cloned(),
            pattern: e.class,
            score: e.score,
            moves: self.moves.get(frame_id).map(|q| q.iter().cloned().collect()).unwrap_or_default(),
            last_decisions: self.decisions_of(frame_id),
            expected_next,
            outcomes: self.learning.history(frame_id),
            learning: {
                let (_, why) = self.learning.tightening(frame_id, &f.kind, now_ms);
                let mut s = why.unwrap_or_else(|| "no change: no regretted outcomes".to_string());
                if let Some(a) = self.learning.awaiting(frame_id) {
                    s.push_str(&format!("; {a}"));
                }
                s
            },
            companions: self.companions_words(frame_id, now_ms),
            ranking: self.ranking_words(now_ms),
        }
    }

    fn companions_words(&self, frame_id: &str, now_ms: i64) -> String {
        if !self.opts.companions.enabled {
            return "off (companions.enabled: false)".to_string();
        }
        let list = self.companions.of(frame_id, now_ms);
        if list.is_empty() {
            return "none learnt: no frame read with it in two bursts".to_string();
        }
        let names: Vec<String> = list.iter().map(|(id, n)| format!("{id} ({n:.1} bursts)")).collect();
        let u = self.companions.usefulness(now_ms);
        let verdict = if u.evidence < super::companions::MIN_EVIDENCE {
            format!(
                "brought at its promotion: {:.0} of {} probes judged so far",
                u.evidence,
                super::companions::MIN_EVIDENCE
            )
        } else if u.brings {
            format!("brought at its promotion: {:.0}% of {:.0} probes useful", u.useful_share * 100.0, u.evidence)
        } else {
            format!("not brought: only {:.0}% of {:.0} probes useful", u.useful_share * 100.0, u.evidence)
        };
        format!("{}; {verdict}", names.join(", "))
    }

    fn ranking_words(&self, now_ms: i64) -> String {
        if !self.opts.duels.enabled {
            return "by score (duels off)".to_string();
        }
        let m = self.duels.mix(now_ms);
        let record =
            format!("LRU's choice was right in {:.0}% of {:.0} victim duels", m.recency_share * 100.0, m.evidence);
        if m.evidence < super::duels::MIN_EVIDENCE {
            format!("by score ({:.0} victim duels decided, {} needed)", m.evidence, super::duels::MIN_EVIDENCE)
        } else if m.mix > 0.0 {
            format!("{:.0}% recency, {:.0}% score: {record}", m.mix * 100.0, (1.0 - m.mix) * 100.0)
        } else {
            format!("by score: {record}")
        }
    }

    /// A hot frame stays while the rules keep it; past its age window it is eligible, and what
    /// happens then depends on whether it was ever read through us (see `idle_hot_demotion`).
    fn hot_forecast(&self, f: &FrameView, e: &Eval, now_ms: i64) -> String {
        match self.cycle_refusal(f, Tier::Warm) {
            Some(Refusal::Pinned) => return "stays hot: pinned".to_string(),
            Some(Refusal::Active) => return "stays hot: active frame".to_string(),
            None => {}
        }
        let w = self.age_window(f, self.opts.hot_max_age_ms as f64 / 1000.0, now_ms);
        let window_s = w.window_s;
        let next = match e.class.next_access_in_s {
            Some(s) => format!("next read expected in {}", human_secs(s)),
            None => "no further reads expected".to_string(),
        };
        if e.idle_s <= window_s {
            return format!(
                "stays hot; {next}; eligible to leave after {} idle (hotMaxAge, in {}), or earlier if hot fills up",
                human_secs(window_s),
                human_secs(window_s - e.idle_s)
            );
        }
        let eligible = format!("eligible: idle {} > {} (hotMaxAge)", human_secs(e.idle_s), human_secs(window_s));
        if !w.read {
            format!("{eligible}, never read through us: leaves hot at the next cycle (after the persistence filter)")
        } else {
            format!(
                "{eligible}, read before; {next}: stays while hot has room (below Critical \
                 pressure); from Critical it is ranked by score with the other hot frames, the \
                 lowest leaving first (a periodic frame due soon is passed over)"
            )
        }
    }

    /// A warm or cold frame comes back when pinned or read often enough, and a warm one goes cold
    /// when idle; a periodic one is prefetched ahead of its next read.
    fn remote_forecast(&self, frame_id: &str, t: Tier, pinned: bool, e: &Eval, now_ms: i64) -> String {
        let o = &self.opts;
        if pinned {
            return format!("promotes {} next cycle: pinned", arrow(t, Tier::Hot));
        }
        let stats = self.access.get(frame_id);
        let since = stats.map(|s| s.since_move).unwrap_or(0);
        let more = o.promotion_threshold.saturating_sub(since).max(1);
        // Its next read is a returning read when it has been read through us at all.
        let returning = stats.is_some_and(|s| s.count >= 1);
        let mut s = match self.admitted(returning, now_ms) {
            Some((_, words)) => {
                format!("promotes {} at its next read (learnt admission: {words})", arrow(t, Tier::Hot))
            }
            None => format!(
                "promotes {} after {more} more read(s) (threshold {})",
                arrow(t, Tier::Hot),
                o.promotion_threshold
            ),
        };
        if t == Tier::Warm {
            let warm_max_s = o.warm_max_age_ms as f64 / 1000.0;
            s.push_str(&format!(
                "; goes cold after {} idle (in {})",
                human_secs(warm_max_s),
                human_secs(warm_max_s - e.idle_s)
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
}
