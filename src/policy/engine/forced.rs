//! Moves asked for outside a cycle: forced promotions and demotions, and making room in a full hot tier.

use super::{Action, Decision, FrameView, PolicyEngine, Reachability};
use crate::model::{Result, TierError};
use crate::policy::{human_bytes, Tier};

impl PolicyEngine {
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

    fn forced(&mut self, f: &FrameView, to: Tier, now_ms: i64) -> Decision {
        let mut d = Decision {
            priority: 3.0,
            forced: true,
            ..Decision::pending(&f.frame_id, f.tier, to, "forced by caller".into(), self.cycle, now_ms)
        };
        if let Some(refusal) = self.refusal(f, to) {
            d.action = Action::Skipped;
            d.reason = refusal.decision_reason().into();
        } else if to == f.tier {
            d.action = Action::Skipped;
            d.reason = format!("skipped: already {}", to.as_str());
        }
        self.hand_out(&d);
        d
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
        let mut ranked = self.lowest_scores_first(hot_frames.iter().copied().enumerate(), Tier::Hot, now_ms);
        self.open_duel(&ranked, |i| hot_frames[i].frame_id.as_str(), now_ms);
        // Periodic frames due soon go last (workload-pattern suppression): room is made, but from
        // other frames while there are any. A stable sort keeps the score order within each part.
        ranked.sort_by_key(|r| self.due_soon(&r.eval));
        let (mut freed_bytes, mut freed_frames) = (0u64, 0u64);
        let mut out = vec![];
        let mut next_floor = None;
        for r in ranked {
            let s = r.eval.score.total;
            if freed_bytes >= need_bytes && freed_frames >= need_frames {
                next_floor = Some(s);
                break;
            }
            let f = hot_frames[r.idx];
            freed_bytes += f.size_bytes;
            freed_frames += 1;
            let basis = format!("hot full, lowest score {s:.2} (room for {})", human_bytes(need_bytes));
            let d = Decision {
                confidence: (1.0 - s).max(0.5),
                priority: 2.0 + (1.0 - s),
                ..Decision::pending(&f.frame_id, Tier::Hot, to, basis, self.cycle, now_ms)
            };
            self.learning.note_kind(&f.frame_id, &f.kind);
            self.hand_out(&d);
            out.push(d);
        }
        self.hot_floor = next_floor.or(self.hot_floor);
        out
    }
}
