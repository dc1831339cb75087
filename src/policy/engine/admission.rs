//! Learned admission: whether a frame read while warm or cold should come back hot at its first
//! remote read, instead of at the `promotionThreshold`-th (the seed's anti-churn rule, 3).
//!
//! The seed rule keeps frames read once (search hits, a glance at old work) out of hot, but it
//! turns the second and third reads of a resumed task into remote reads too; LRU admits at once
//! and loses the other way. Which is right depends on the workload, so the engine measures it:
//! - every remote read opens a *probe* for its frame, promoted or not (so the measure does not
//!   depend on the decision it drives);
//! - the probe is *reused* when the frame is read again, in any tier, within the admission
//!   window (`admission.window`, default 1 h), and *read once* when the window passes;
//! - probes are counted with decay (half-life [`HALF_LIFE_MS`]) in two classes: *returning*
//!   frames (read through us before) and *first reads* (never read before), because the two
//!   behave differently: a resumed task is read on, a search hit is not.
//!
//! When a class has at least [`MIN_EVIDENCE`] judged probes and its reuse share is at least
//! `admission.minShare` (default 0.25), its frames are admitted at their first remote read. The
//! bar is low because the two errors cost differently: a wrong admission is one move and the
//! weakest hot frame sent warm, a right one turns the next reads into hot hits. (0.25 was chosen
//! on the simulator's tuning seeds among 0.1, 0.25, 0.4, 0.5 and 0.6; docs/POLICY.md has the
//! figures.) The churn filters do not apply, as for the seed's threshold rule: the read is the
//! evidence, and a frame demoted and read back this way is a regretted demotion, which stretches
//! its own windows (outcome learning). The share is shown in the decision's basis and in
//! `explain`. Memory is bounded: [`MAX_PROBES`] open probes (the oldest go, uncounted).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::learning::Rate;

/// Half-life of the reuse counts: three days, so a change of workload shows within a few working
/// days, and a quiet weekend does not erase what the week measured.
pub const HALF_LIFE_MS: f64 = 3.0 * 86_400_000.0;
/// Judged probes (decayed) a class needs before it may admit at a first read. Small: a project
/// with a few remote reads a day must reach it (10 was never reached on the recorded traces).
pub const MIN_EVIDENCE: f64 = 3.0;
/// Open probes kept.
pub const MAX_PROBES: usize = 20_000;

/// An open probe: a remote read, waiting to see whether the frame is read again.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    at_ms: i64,
    returning: bool,
}

/// What the engine measured of remote reads; part of the engine's snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Admission {
    probes: HashMap<String, Probe>,
    /// Remote reads of frames read through us before: reused (good) or read once (regretted).
    returning: Rate,
    /// Remote first reads.
    first: Rate,
}

/// One class's measure, as `explain` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClassShare {
    /// Share of judged remote reads followed by another read within the window.
    pub reuse_share: f64,
    /// Judged probes (decayed).
    pub evidence: f64,
    /// Whether such a frame is admitted at its first remote read now.
    pub admits: bool,
}

impl Admission {
    fn rate(&mut self, returning: bool) -> &mut Rate {
        if returning {
            &mut self.returning
        } else {
            &mut self.first
        }
    }

    /// A read of `frame_id`: settles its open probe, then opens one when the read was remote.
    /// `returning`: the frame had been read through us before this read.
    pub fn read(&mut self, frame_id: &str, remote: bool, returning: bool, now_ms: i64, window_ms: i64) {
        if let Some(p) = self.probes.remove(frame_id) {
            let reused = now_ms.saturating_sub(p.at_ms) <= window_ms;
            self.rate(p.returning).add_with(reused, now_ms, HALF_LIFE_MS);
        }
        if remote {
            self.probes.insert(frame_id.to_string(), Probe { at_ms: now_ms, returning });
            super::prune_to(&mut self.probes, MAX_PROBES, |p| p.at_ms, |_| false);
        }
    }

    /// Probes whose window passed without another read count as read once.
    pub fn settle(&mut self, now_ms: i64, window_ms: i64) {
        let due: Vec<(String, bool)> = self
            .probes
            .iter()
            .filter(|(_, p)| now_ms.saturating_sub(p.at_ms) > window_ms)
            .map(|(k, p)| (k.clone(), p.returning))
            .collect();
        for (k, returning) in due {
            self.probes.remove(&k);
            self.rate(returning).add_with(false, now_ms, HALF_LIFE_MS);
        }
    }

    /// The class's measure as of `now_ms`, and whether it admits at a first remote read.
    pub fn share(&self, returning: bool, min_share: f64, now_ms: i64) -> ClassShare {
        let rate = if returning { &self.returning } else { &self.first };
        let (reuse_share, evidence) = rate.good_share_with(now_ms, HALF_LIFE_MS);
        ClassShare { reuse_share, evidence, admits: evidence >= MIN_EVIDENCE && reuse_share >= min_share }
    }

    pub fn forget(&mut self, frame_id: &str) {
        self.probes.remove(frame_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn a_class_admits_once_most_of_its_remote_reads_are_read_again() {
        let mut a = Admission::default();
        let t0 = 1_000 * H;
        // Returning frames: each read again 10 min later. First reads: never read again.
        for k in 0..12 {
            let t = t0 + k * H;
            a.read(&format!("r{k}"), true, true, t, H);
            a.read(&format!("r{k}"), false, true, t + H / 6, H);
            a.read(&format!("f{k}"), true, false, t, H);
        }
        a.settle(t0 + 20 * H, H);
        let r = a.share(true, 0.5, t0 + 20 * H);
        let f = a.share(false, 0.5, t0 + 20 * H);
        assert!(r.admits && r.reuse_share > 0.99, "{r:?}");
        assert!(!f.admits && f.reuse_share < 0.01 && f.evidence > 10.0, "{f:?}");
    }

    #[test]
    fn too_little_evidence_admits_nothing() {
        let mut a = Admission::default();
        for k in 0..3 {
            a.read("x", true, true, k * 60_000, H);
        }
        let s = a.share(true, 0.5, 10 * 60_000);
        assert!(!s.admits && s.evidence < MIN_EVIDENCE, "{s:?}");
    }

    #[test]
    fn a_read_after_the_window_counts_the_probe_as_read_once() {
        let mut a = Admission::default();
        a.read("x", true, true, 0, H);
        a.read("x", true, true, 2 * H, H);
        let s = a.share(true, 0.5, 2 * H);
        assert!(s.reuse_share < 0.01 && s.evidence > 0.9, "{s:?}");
    }
}
