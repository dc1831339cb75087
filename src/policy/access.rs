//! Per-frame access statistics.
//!
//! Only [`AccessTracker::record_access`] counts as an access: a migration is not a read, so moving
//! a frame between tiers never makes it look hotter. The tracker lives in memory; the manager
//! persists [`AccessTracker::snapshot`] in batches and hands it back with
//! [`AccessTracker::restore`] when it opens, so patterns survive restarts.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

/// How many recent inter-arrival times are kept per frame. 16 is enough to tell a period or a
/// burst structure apart and keeps a frame's record around 200 bytes.
pub const GAP_RING: usize = 16;

/// Default time constant of the exponentially weighted frequency (6 h): an access contributes
/// `1/6` per hour at once and fades with `e^(-age/6h)`.
pub const DEFAULT_FREQUENCY_TAU_S: f64 = 6.0 * 3600.0;

/// What we know about one frame's reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessStats {
    /// First recorded access (ms since the epoch).
    pub first_ms: i64,
    /// Last recorded access (ms since the epoch).
    pub last_ms: i64,
    /// Total accesses ever recorded.
    pub count: u64,
    /// Exponentially weighted access frequency per hour, as of `last_ms`.
    pub rate_per_h: f64,
    /// Accesses since the frame last changed tier (the seed's promotion counter).
    pub since_move: u32,
    /// Most recent inter-arrival times in seconds, oldest first, at most [`GAP_RING`].
    pub gaps_s: VecDeque<f64>,
}

impl AccessStats {
    /// Seconds since the last access (0 if `now_ms` is earlier).
    pub fn age_s(&self, now_ms: i64) -> f64 {
        (now_ms.saturating_sub(self.last_ms)).max(0) as f64 / 1000.0
    }
    /// Whether reads are speeding up: the last two gaps average at most `1/ratio` of the gaps
    /// before them (at least two of those), and the frame was read within twice that recent gap
    /// (the streak still goes on). `Some((recent, earlier))` mean gaps in seconds when rising.
    pub fn rising(&self, now_ms: i64, ratio: f64) -> Option<(f64, f64)> {
        let n = self.gaps_s.len();
        if n < 4 {
            return None;
        }
        let recent = (self.gaps_s[n - 1] + self.gaps_s[n - 2]) / 2.0;
        let earlier = self.gaps_s.iter().take(n - 2).sum::<f64>() / (n - 2) as f64;
        let quick = recent.max(1.0);
        (earlier >= ratio * quick && self.age_s(now_ms) <= 2.0 * quick).then_some((recent, earlier))
    }

    /// The exponentially weighted frequency decayed to `now_ms`, per hour.
    pub fn rate_at(&self, now_ms: i64, tau_s: f64) -> f64 {
        let tau = if tau_s.is_finite() && tau_s > 0.0 { tau_s } else { DEFAULT_FREQUENCY_TAU_S };
        self.rate_per_h * (-self.age_s(now_ms) / tau).exp()
    }
}

/// A persisted access record: one frame's statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessRecord {
    pub frame_id: String,
    #[serde(flatten)]
    pub stats: AccessStats,
}

/// Access statistics for every frame that has been read.
#[derive(Debug, Clone)]
pub struct AccessTracker {
    frames: HashMap<String, AccessStats>,
    tau_s: f64,
}

impl Default for AccessTracker {
    fn default() -> Self {
        Self::new(DEFAULT_FREQUENCY_TAU_S)
    }
}

impl AccessTracker {
    /// `tau_s`: time constant of the weighted frequency, in seconds.
    pub fn new(tau_s: f64) -> Self {
        let tau_s = if tau_s.is_finite() && tau_s > 0.0 { tau_s } else { DEFAULT_FREQUENCY_TAU_S };
        AccessTracker { frames: HashMap::new(), tau_s }
    }

    /// Records one read (or write) of `frame_id` at `now_ms`. Out-of-order times are accepted:
    /// they count, with an inter-arrival time of 0, and never move `last_ms` backwards.
    pub fn record_access(&mut self, frame_id: &str, now_ms: i64) {
        let tau_h = self.tau_s / 3600.0;
        let tau_s = self.tau_s;
        match self.frames.get_mut(frame_id) {
            Some(s) => {
                let dt_s = (now_ms.saturating_sub(s.last_ms)).max(0) as f64 / 1000.0;
                s.rate_per_h = s.rate_per_h * (-dt_s / tau_s).exp() + 1.0 / tau_h;
                if s.gaps_s.len() >= GAP_RING {
                    s.gaps_s.pop_front();
                }
                s.gaps_s.push_back(dt_s);
                s.count = s.count.saturating_add(1);
                s.since_move = s.since_move.saturating_add(1);
                s.last_ms = s.last_ms.max(now_ms);
            }
            None => {
                self.frames.insert(
                    frame_id.to_string(),
                    AccessStats {
                        first_ms: now_ms,
                        last_ms: now_ms,
                        count: 1,
                        rate_per_h: 1.0 / tau_h,
                        since_move: 1,
                        gaps_s: VecDeque::new(),
                    },
                );
            }
        }
    }

    /// Called when a frame changed tier: restarts its promotion counter. Not an access.
    pub fn mark_moved(&mut self, frame_id: &str) {
        if let Some(s) = self.frames.get_mut(frame_id) {
            s.since_move = 0;
        }
    }

    pub fn get(&self, frame_id: &str) -> Option<&AccessStats> {
        self.frames.get(frame_id)
    }

    /// Drops a frame's statistics (the frame was deleted).
    pub fn forget(&mut self, frame_id: &str) -> bool {
        self.frames.remove(frame_id).is_some()
    }

    /// All records, sorted by frame id (deterministic output for persistence and tests).
    pub fn snapshot(&self) -> Vec<AccessRecord> {
        let mut out: Vec<AccessRecord> =
            self.frames.iter().map(|(k, v)| AccessRecord { frame_id: k.clone(), stats: v.clone() }).collect();
        out.sort_by(|a, b| a.frame_id.cmp(&b.frame_id));
        out
    }

    /// Loads records (e.g. on open). A record replaces what the tracker holds for that frame;
    /// malformed values are repaired rather than rejected (NaN rates become 0, rings are trimmed).
    pub fn restore(&mut self, records: impl IntoIterator<Item = AccessRecord>) {
        for mut r in records {
            let s = &mut r.stats;
            if !s.rate_per_h.is_finite() || s.rate_per_h < 0.0 {
                s.rate_per_h = 0.0;
            }
            s.gaps_s.retain(|g| g.is_finite() && *g >= 0.0);
            while s.gaps_s.len() > GAP_RING {
                s.gaps_s.pop_front();
            }
            if s.first_ms > s.last_ms {
                s.first_ms = s.last_ms;
            }
            self.frames.insert(r.frame_id, r.stats);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tracker that has seen these accesses, in this order.
    fn tracked(accesses: &[(&str, i64)]) -> AccessTracker {
        let mut t = AccessTracker::default();
        for &(id, at_ms) in accesses {
            t.record_access(id, at_ms);
        }
        t
    }

    #[test]
    fn counts_gaps_and_rate() {
        let mut t = tracked(&[("a", 0), ("a", 60_000), ("a", 120_000)]);
        let s = t.get("a").expect("tracked");
        assert_eq!(s.count, 3);
        assert_eq!(s.since_move, 3);
        assert_eq!(s.gaps_s.iter().copied().collect::<Vec<_>>(), vec![60.0, 60.0]);
        assert!(s.rate_per_h > 0.45 && s.rate_per_h < 0.51, "{}", s.rate_per_h);
        t.mark_moved("a");
        assert_eq!(t.get("a").map(|s| s.since_move), Some(0));
        assert_eq!(t.get("a").map(|s| s.count), Some(3), "a move is not an access");
    }

    #[test]
    fn rising_reads_are_seen_while_the_streak_goes_on() {
        const H: i64 = 3_600_000;
        const M: i64 = 60_000;
        let steady = tracked(&[("a", 0), ("a", 2 * H), ("a", 4 * H), ("a", 6 * H), ("a", 8 * H)]);
        assert_eq!(steady.get("a").and_then(|s| s.rising(8 * H, 2.0)), None, "same pace");
        let t =
            tracked(&[("a", 0), ("a", 2 * H), ("a", 4 * H), ("a", 6 * H), ("a", 6 * H + 4 * M), ("a", 6 * H + 8 * M)]);
        let s = t.get("a").expect("tracked");
        assert_eq!(s.rising(6 * H + 9 * M, 2.0), Some((240.0, 7200.0)));
        assert_eq!(s.rising(6 * H + 30 * M, 2.0), None, "the streak ended");
        assert_eq!(s.rising(6 * H + 9 * M, 40.0), None, "not 40x faster");
        let few = tracked(&[("a", 0), ("a", 2 * H), ("a", 2 * H + M), ("a", 2 * H + 2 * M)]);
        assert_eq!(few.get("a").and_then(|s| s.rising(2 * H + 3 * M, 2.0)), None, "three gaps are too few");
    }

    #[test]
    fn ring_is_bounded_and_out_of_order_is_safe() {
        let mut t = AccessTracker::default();
        for i in 0..100 {
            t.record_access("a", i * 1000);
        }
        t.record_access("a", 5);
        let s = t.get("a").expect("tracked");
        assert_eq!(s.gaps_s.len(), GAP_RING);
        assert_eq!(s.last_ms, 99_000);
        assert_eq!(s.gaps_s.back().copied(), Some(0.0));
    }

    #[test]
    fn snapshot_round_trips_through_json() {
        let t = tracked(&[("b", 10), ("a", 20), ("a", 3_600_020)]);
        let snap = t.snapshot();
        assert_eq!(snap[0].frame_id, "a");
        let json = serde_json::to_string(&snap).expect("serialise");
        let back: Vec<AccessRecord> = serde_json::from_str(&json).expect("parse");
        let mut t2 = AccessTracker::default();
        t2.restore(back);
        assert_eq!(t2.snapshot(), snap);
    }
}
