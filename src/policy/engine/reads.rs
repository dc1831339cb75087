//! Reads of frames: each counts as an access; a read of a remote frame may promote it.
//!
//! Writes are not accesses: storing a frame (an import through `storeMany`, StackMemory writing
//! it on create and close) says nothing about whether anyone will read it. A frame never read
//! through us is as old as its own times say (closed, else created; see [`FrameView`]).
//!
//! [`FrameView`]: super::FrameView

use super::admission::ClassShare;
use super::{clamp01, Decision, PolicyEngine};
use crate::policy::filters::Verdict;
use crate::policy::pattern::classify;
use crate::policy::score::score;
use crate::policy::{human_secs, Tier};

impl PolicyEngine {
    /// A write (create, close, update, import) of the frame through us. Not an access: the
    /// frame's age stays its own; remembered only so that a first read of work written within
    /// `hotMaxAge` is admitted like a read-again frame.
    pub fn on_write(&mut self, frame_id: &str, now_ms: i64) {
        self.written.insert(frame_id.to_string(), now_ms);
        super::prune_tracked(&mut self.written, |t| *t, |_| false);
    }

    /// A read of the frame, which is in `tier`. Returns a pending promotion when the frame should
    /// come back hot now: pinned; `promotionThreshold` reads since its last move (seed rule); or
    /// read again (at least twice ever, with a pattern that expects more) and scoring above the
    /// weakest hot frame, or hot has room. Read-once frames are never promoted by a read alone.
    pub fn on_read(&mut self, frame_id: &str, tier: Tier, now_ms: i64) -> Option<Decision> {
        self.access.record_access(frame_id, now_ms);
        self.learning.read(frame_id, tier, self.opts.promotion_threshold, now_ms);
        let returning = self.access.get(frame_id).is_some_and(|s| s.count >= 2);
        let window = self.admission_window_ms();
        self.admission.read(frame_id, tier != Tier::Hot, returning, now_ms, window);
        self.duels.read(frame_id, now_ms);
        let window = self.opts.companions.window_ms.min(i64::MAX as u64) as i64;
        self.companions.read(frame_id, now_ms, window);
        if tier == Tier::Hot || self.in_flight.contains_key(frame_id) {
            return None;
        }
        let (basis, confidence, priority) = self.read_promotion(frame_id, tier, now_ms)?;
        let d = Decision {
            confidence,
            priority,
            ..Decision::pending(frame_id, tier, Tier::Hot, basis, self.cycle, now_ms)
        };
        self.hand_out(&d);
        Some(d)
    }

    /// The frames read with `frame_id` in earlier bursts (its companions), strongest first; the
    /// caller looks up their tiers for [`Self::companions_of`].
    pub fn companion_ids(&self, frame_id: &str, now_ms: i64) -> Vec<String> {
        if !self.opts.companions.enabled {
            return vec![];
        }
        self.companions.of(frame_id, now_ms).into_iter().map(|(id, _)| id).collect()
    }

    /// The promotions that follow a read's promotion of `frame_id` (executed): its remote
    /// companions, strongest first, once bringing them has proved useful here (see
    /// [`super::companions`]; every remote companion is probed either way). `tier_of` gives a
    /// frame's tier (`None`: unknown, skipped). Frames in flight are left out.
    pub fn companions_of(
        &mut self,
        frame_id: &str,
        tier_of: impl Fn(&str) -> Option<Tier>,
        now_ms: i64,
    ) -> Vec<Decision> {
        if !self.opts.companions.enabled {
            return vec![];
        }
        let mut allowance = self.companions.usefulness(now_ms).allowance;
        let mut out = vec![];
        for (id, bursts) in self.companions.of(frame_id, now_ms) {
            let Some(tier) = tier_of(&id).filter(|t| *t != Tier::Hot) else { continue };
            if self.in_flight.contains_key(&id) {
                continue;
            }
            let brings = allowance > 0;
            self.companions.probe(&id, brings, now_ms);
            if !brings {
                continue;
            }
            allowance -= 1;
            let basis = format!("read with {frame_id} in {bursts:.0} bursts (companion)");
            let d = Decision {
                confidence: clamp01(0.5 + 0.1 * bursts),
                priority: 1.0 + 0.1 * bursts.min(10.0),
                ..Decision::pending(&id, tier, Tier::Hot, basis, self.cycle, now_ms)
            };
            self.hand_out(&d);
            out.push(d);
        }
        out
    }

    /// Why the read frame should come back hot, with the confidence and priority of the move.
    fn read_promotion(&self, frame_id: &str, tier: Tier, now_ms: i64) -> Option<(String, f64, f64)> {
        let stats = self.access.get(frame_id)?;
        let threshold = self.opts.promotion_threshold;
        if self.pins.contains_key(frame_id) {
            return Some(("pinned".to_string(), 1.0, 2.0));
        }
        if stats.since_move >= threshold {
            let basis = format!("{} reads while {} (threshold {threshold})", stats.since_move, tier.as_str());
            return Some((basis, 1.0, 1.5));
        }
        let fresh_work = self
            .written
            .get(frame_id)
            .is_some_and(|w| now_ms.saturating_sub(*w) <= self.opts.hot_max_age_ms.min(i64::MAX as u64) as i64);
        if let Some(admit) = self.learned_admission(stats.count >= 2, tier, now_ms) {
            return Some(admit);
        }
        if stats.count < 2 && !fresh_work {
            return None;
        }
        let class = classify(stats, now_ms);
        if !fresh_work {
            class.next_access_in_s?;
        }
        let mut parts = score(Some(stats), &class, 0.0, 0, now_ms, self.tau_s(), &self.opts.weights);
        parts.total = self.mixed(&parts, now_ms);
        let basis = match self.hot_floor {
            None if stats.count < 2 => "first read of a frame written within hotMaxAge; hot has room".to_string(),
            None => format!("read again, {} expected; hot has room", class.pattern.describe()),
            Some(floor) if parts.total > floor => {
                format!("read again, score {:.2} > weakest hot frame {floor:.2}", parts.total)
            }
            Some(_) => return None,
        };
        // Score-based admission is a judgement call, so it respects the churn history.
        if self.churn_verdict(frame_id, tier, Tier::Hot, now_ms) != Verdict::Pass {
            return None;
        }
        Some((basis, clamp01(class.confidence.max(0.5)), 1.0 + parts.total))
    }

    /// A first remote read promotes when most remote reads of the frame's class (returning, or
    /// first reads) were read again within the admission window; see [`super::admission`].
    fn learned_admission(&self, returning: bool, tier: Tier, now_ms: i64) -> Option<(String, f64, f64)> {
        // No churn filter: like the seed's threshold rule, the read is the evidence. A demotion
        // promoted back this way is a regretted outcome, which stretches that frame's windows.
        let (share, words) = self.admitted(returning, now_ms)?;
        let basis = format!("read while {}: {words} (learnt admission)", tier.as_str());
        Some((basis, clamp01(share.reuse_share), 1.0 + share.reuse_share))
    }

    /// Whether a remote read of a frame of this class (`returning`: read through us before it) is
    /// admitted now, with the measure in words (`41% of remote reads of frames read before were
    /// read again within 1 h`) for the decision's basis and `explain`.
    pub(super) fn admitted(&self, returning: bool, now_ms: i64) -> Option<(ClassShare, String)> {
        let a = &self.opts.admission;
        let share = self.admission.share(returning, a.min_share, now_ms);
        if !a.enabled || !share.admits {
            return None;
        }
        let words = format!(
            "{:.0}% of remote reads of {} were read again within {}",
            share.reuse_share * 100.0,
            if returning { "frames read before" } else { "unread frames" },
            human_secs(a.window_ms as f64 / 1000.0)
        );
        Some((share, words))
    }
}
