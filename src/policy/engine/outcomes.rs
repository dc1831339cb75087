//! What the caller reports back about a move: executed or failed, and the history that feeds the filters.

use super::{prune_tracked, push_bounded, Action, Decision, PolicyEngine};
use crate::policy::filters::MoveRecord;
use crate::policy::Tier;

/// Moves remembered per frame for the cooldown and cycle filters.
const MOVES_PER_FRAME: usize = 16;

impl PolicyEngine {
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
        let handed_out = pending.is_some();
        let mut d = pending
            .unwrap_or_else(|| Decision::pending(frame_id, from, to, "moved by the caller".into(), self.cycle, now_ms));
        if ok {
            let decided = handed_out && !d.forced;
            let window = self.regret_window_ms();
            self.learning.moved(frame_id, from, to, &d.basis, decided, now_ms, window);
            d.action = Action::Executed;
            d.reason = format!("executed: {}", d.basis);
            let moved = MoveRecord { from, to, at_ms: now_ms, forced: d.forced };
            push_bounded(self.moves.entry(frame_id.to_string()).or_default(), moved, MOVES_PER_FRAME);
            prune_tracked(&mut self.moves, |q| q.back().map_or(i64::MIN, |m| m.at_ms), |_| false);
            self.access.mark_moved(frame_id);
            self.persistence.remove(frame_id);
        } else {
            d.action = Action::Failed;
            d.reason = format!("failed: {}", err.as_deref().unwrap_or("unknown error"));
        }
        if !(handed_out && self.replace_pending(&d)) {
            self.remember(d.clone());
        }
        d
    }

    /// Replaces the pending entry of this move in the frame's history rather than adding a
    /// second one; false when there is none.
    fn replace_pending(&mut self, d: &Decision) -> bool {
        let Some(q) = self.decisions.get_mut(&d.frame_id) else { return false };
        match q.iter_mut().rev().find(|x| x.action == Action::Pending && x.from == d.from && x.to == d.to) {
            Some(x) => {
                *x = d.clone();
                true
            }
            None => false,
        }
    }
}
