//! Victim duels: whether hot's victims should be chosen by score or by recency alone (LRU).
//!
//! The score weighs recency against frequency, pattern and size, with weights chosen on the
//! simulator's traces. Where a workload is mostly recency (a day's task tree read on, then left),
//! LRU picks better victims than any fixed mix, and the engine loses to it. So the engine measures
//! which of the two is right on this file's reads, and leans its ranking the way they point:
//! - whenever hot must give frames up (hot full, or Critical pressure), the frame the score would
//!   send first and the frame LRU would send first are compared; when they differ, a *duel* opens
//!   between them, whichever frame is actually sent (so the measure does not depend on the ranking
//!   it drives);
//! - the duel is decided by the first of the two frames to be read again: that one should have
//!   stayed, so the other expert was right. A duel neither frame ends within [`DUEL_WINDOW_MS`] is
//!   a draw and is dropped;
//! - wins are counted with decay (half-life [`HALF_LIFE_MS`]).
//!
//! With at least [`MIN_EVIDENCE`] decided duels, the ranking key becomes
//! `(1 - mix) * score + mix * recency`, where `mix` grows from 0 as LRU's share of the wins passes
//! one half: `mix = MIX_GAIN * (2 * share - 1)`, clamped to [0, 1], so 56 % of duels won by LRU
//! weigh recency and score equally and 62.5 % rank by recency alone. While the score wins, the
//! ranking is the score's.
//! `explain` shows the share and the mix. Memory is bounded: [`MAX_DUELS`] open duels.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::learning::Rate;

/// Half-life of the win counts, as for learned admission: a change of workload shows within a
/// few working days.
pub const HALF_LIFE_MS: f64 = 3.0 * 86_400_000.0;
/// Decided duels (decayed) before the ranking leans toward recency.
pub const MIN_EVIDENCE: f64 = 5.0;
/// A duel that no read decides within a week is a draw.
pub const DUEL_WINDOW_MS: i64 = 7 * 86_400_000;
/// Open duels kept (the oldest go, undecided).
pub const MAX_DUELS: usize = 20_000;
/// How fast recency takes over as LRU's share of the wins passes one half. A gain of 1 (75 % of
/// the wins for an even mix) leaned too little where LRU wins: on the tuning seeds 4 gave
/// recorded@40 +0.4 points (85.8 → 86.2) and every other row the same or up to +0.2; 8 was within
/// 0.2 of 4, and 4 keeps a proportional band against a noisy share (docs/POLICY.md).
pub const MIX_GAIN: f64 = 4.0;

/// One open duel: `by_score` is the frame the score would send first, `by_recency` the one LRU
/// would send first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Duel {
    by_score: String,
    by_recency: String,
    at_ms: i64,
}

/// What the engine measured of its victims; part of the engine's snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Duels {
    open: HashMap<u64, Duel>,
    /// The open duels each frame is in.
    #[serde(skip)]
    by_frame: HashMap<String, Vec<u64>>,
    next_id: u64,
    /// Decided duels: `good` when LRU was right (the score's victim was read first), `regretted`
    /// when the score was.
    wins: Rate,
}

/// The measure, as `explain` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecencyMix {
    /// Share of decided duels LRU won.
    pub recency_share: f64,
    /// Decided duels (decayed).
    pub evidence: f64,
    /// The weight of recency in the ranking key (0: the score alone).
    pub mix: f64,
}

impl Duels {
    /// Hot must give frames up: the score would send `by_score` first, LRU `by_recency`.
    pub fn open(&mut self, by_score: &str, by_recency: &str, now_ms: i64) {
        if by_score == by_recency {
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.open.insert(id, Duel { by_score: by_score.into(), by_recency: by_recency.into(), at_ms: now_ms });
        for f in [by_score, by_recency] {
            self.by_frame.entry(f.to_string()).or_default().push(id);
        }
        if self.open.len() > MAX_DUELS {
            let mut ids: Vec<(i64, u64)> = self.open.iter().map(|(id, d)| (d.at_ms, *id)).collect();
            ids.sort_unstable();
            for (_, id) in ids.into_iter().take(MAX_DUELS / 10) {
                self.close(id);
            }
        }
    }

    /// A read of `frame_id` decides every open duel it is in: the other expert was right.
    pub fn read(&mut self, frame_id: &str, now_ms: i64) {
        let Some(ids) = self.by_frame.get(frame_id).cloned() else { return };
        for id in ids {
            if let Some(d) = self.close(id) {
                let recency_right = d.by_score == frame_id;
                self.wins.add_with(recency_right, now_ms, HALF_LIFE_MS);
            }
        }
    }

    /// Duels older than the window are draws.
    pub fn settle(&mut self, now_ms: i64) {
        let due: Vec<u64> = self
            .open
            .iter()
            .filter(|(_, d)| now_ms.saturating_sub(d.at_ms) > DUEL_WINDOW_MS)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.close(id);
        }
    }

    /// The frame is gone: its duels are dropped undecided.
    pub fn forget(&mut self, frame_id: &str) {
        for id in self.by_frame.get(frame_id).cloned().unwrap_or_default() {
            self.close(id);
        }
    }

    fn close(&mut self, id: u64) -> Option<Duel> {
        let d = self.open.remove(&id)?;
        for f in [&d.by_score, &d.by_recency] {
            if let Some(ids) = self.by_frame.get_mut(f.as_str()) {
                ids.retain(|i| *i != id);
                if ids.is_empty() {
                    self.by_frame.remove(f.as_str());
                }
            }
        }
        Some(d)
    }

    /// Rebuilds the per-frame index after loading a snapshot (it is not stored).
    pub fn reindex(&mut self) {
        self.by_frame.clear();
        for (id, d) in &self.open {
            for f in [&d.by_score, &d.by_recency] {
                self.by_frame.entry(f.clone()).or_default().push(*id);
            }
        }
        self.next_id = self.next_id.max(self.open.keys().max().map(|m| m + 1).unwrap_or(0));
    }

    /// The measure as of `now_ms`, and the weight of recency it gives the ranking.
    pub fn mix(&self, now_ms: i64) -> RecencyMix {
        let (recency_share, evidence) = self.wins.good_share_with(now_ms, HALF_LIFE_MS);
        let mix = if evidence >= MIN_EVIDENCE { (MIX_GAIN * (2.0 * recency_share - 1.0)).clamp(0.0, 1.0) } else { 0.0 };
        RecencyMix { recency_share, evidence, mix }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn lru_winning_its_duels_leans_the_ranking_to_recency() {
        let mut d = Duels::default();
        for k in 0..10 {
            d.open(&format!("s{k}"), &format!("r{k}"), k * H);
        }
        // The score's victims are read first in 11 duels of 20; LRU's in 9.
        for k in 10..20 {
            d.open(&format!("s{k}"), &format!("r{k}"), k * H);
        }
        for k in 0..20 {
            let read = if k < 11 { format!("s{k}") } else { format!("r{k}") };
            d.read(&read, 20 * H);
        }
        let m = d.mix(30 * H);
        assert!((m.recency_share - 0.55).abs() < 0.02 && m.evidence > 18.0, "{m:?}");
        // 55 % of the wins: recency weighs 4 * (2 * 0.55 - 1) = 0.4 of the key.
        assert!((m.mix - 0.4).abs() < 0.1, "{m:?}");
        // Decided duels are closed: reading the other frame decides nothing more.
        d.read("r0", 31 * H);
        d.read("s19", 31 * H);
        assert_eq!(d.mix(30 * H), m);
        assert!(d.open.is_empty() && d.by_frame.is_empty());
    }

    #[test]
    fn the_score_winning_keeps_the_score_and_little_evidence_changes_nothing() {
        let mut d = Duels::default();
        for k in 0..3 {
            d.open(&format!("s{k}"), &format!("r{k}"), 0);
            d.read(&format!("s{k}"), H);
        }
        assert_eq!(d.mix(H).mix, 0.0, "3 duels are too few");
        for k in 3..20 {
            d.open(&format!("s{k}"), &format!("r{k}"), 2 * H);
            d.read(&format!("r{k}"), 3 * H);
        }
        let m = d.mix(3 * H);
        assert!(m.recency_share < 0.2 && m.mix == 0.0, "{m:?}");
    }

    #[test]
    fn one_frame_in_many_duels_and_draws() {
        let mut d = Duels::default();
        // LRU would send `old` each time; the score sent three different frames.
        for k in 0..3 {
            d.open(&format!("s{k}"), "old", k * H);
        }
        d.open("same", "same", 0);
        assert_eq!(d.open.len(), 3, "no duel when both pick the same frame");
        d.read("old", 4 * H);
        let m = d.mix(4 * H);
        assert!(m.recency_share < 0.01 && (m.evidence - 3.0).abs() < 0.01, "{m:?}");
        d.open("a", "b", 5 * H);
        d.settle(5 * H + DUEL_WINDOW_MS + 1);
        assert!(d.open.is_empty() && d.by_frame.is_empty(), "a week undecided is a draw");
        let json = serde_json::to_string(&d).unwrap_or_default();
        let mut back: Duels = serde_json::from_str(&json).unwrap_or_default();
        back.reindex();
        assert_eq!(back.mix(4 * H), m);
    }
}
