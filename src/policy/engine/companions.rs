//! Companions: frames read together, learnt from reads, so that a remote read brings the frames
//! read with it before back hot too.
//!
//! StackMemory reads a task's frames together: a resumed task is a burst of reads over its tree.
//! `prefetchRelatives` follows the parent links, but frames that are read together are not
//! always linked (an import without parent ids, frames of one task stored flat, a search hit and
//! the frames it leads to). So the engine counts which frames are read within
//! `companions.window` (default 15 min) of each other:
//! - each read pairs the frame with the other frames read in the window before it;
//! - a pair seen in two separate bursts (a burst is one frame's reads until a gap of the window),
//!   the older within a half-life ([`MIN_CO_READS`] decayed), makes the two *companions*;
//! - a remote frame promoted by a read brings its remote companions along (the strongest
//!   [`MAX_COMPANIONS`]), as one decision each with basis `read with <frame> in N bursts`.
//!
//! Whether bringing pays is measured, as for admission, by probes that do not depend on the
//! decision they drive: every remote companion of a promoted frame is *probed*, brought or not;
//! it was *useful* if read within [`USE_WINDOW_MS`], a wasted move if not. Until [`MIN_EVIDENCE`]
//! probes are judged, companions are brought a few at a time (at most that many brought and not
//! judged yet); then while at least [`MIN_USEFUL_SHARE`] of them were useful (decayed like the
//! pairs), so a workload whose reads do not come in repeated bursts stops paying moves for it
//! within a few promotions. A brought frame counts as read at the moment it was brought until its
//! probe is judged (so the next victims are not the frames just brought for it).
//!
//! Counts decay (half-life [`HALF_LIFE_MS`]); memory is bounded: [`MAX_PARTNERS`] partners per
//! frame (the weakest go), [`MAX_FRAMES`] frames (the least recently read go).

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::learning::Rate;

/// Shared bursts (decayed) before one frame brings the other: two, the older within a half-life.
pub const MIN_CO_READS: f64 = 1.5;
/// Companions one promotion brings along at most.
pub const MAX_COMPANIONS: usize = 8;
/// Partners kept per frame.
pub const MAX_PARTNERS: usize = 12;
/// Frames whose partners are kept.
pub const MAX_FRAMES: usize = 20_000;
/// Half-life of the co-read counts: a week (tasks are revisited over days).
pub const HALF_LIFE_MS: f64 = 7.0 * 86_400_000.0;
/// A brought companion read within this was useful.
pub const USE_WINDOW_MS: i64 = 60 * 60_000;
/// Judged probes before the useful share decides (until then companions are brought).
pub const MIN_EVIDENCE: f64 = 3.0;
/// The useful share from which companions are brought.
pub const MIN_USEFUL_SHARE: f64 = 0.5;
/// Reads remembered for pairing (the window bounds them too).
const RECENT_READS: usize = 32;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Partner {
    id: String,
    /// Shared bursts, decayed to `at_ms`.
    count: f64,
    at_ms: i64,
}

impl Partner {
    fn decayed(&self, now_ms: i64) -> f64 {
        self.count * 0.5f64.powf(now_ms.saturating_sub(self.at_ms).max(0) as f64 / HALF_LIFE_MS)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    partners: Vec<Partner>,
    last_read_ms: i64,
    /// When the frame's current burst of reads began.
    burst_ms: i64,
}

/// What the engine learnt of frames read together; part of the engine's snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Companions {
    /// The last reads, oldest first: `(frame, time)`.
    recent: VecDeque<(String, i64)>,
    frames: HashMap<String, Entry>,
    /// Remote companions of promoted frames not judged yet.
    probes: HashMap<String, Probe>,
    /// Judged probes: read within the window (good) or not (regretted).
    useful: Rate,
}

/// A remote companion of a promoted frame, waiting to see whether it is read soon.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    at_ms: i64,
    /// Whether it was brought hot (else the engine only watched).
    brought: bool,
}

/// Whether bringing companions pays here, as `explain` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsefulShare {
    /// Share of judged companions read within the window.
    pub useful_share: f64,
    /// Judged companions (decayed).
    pub evidence: f64,
    /// Whether a promotion brings its companions now.
    pub brings: bool,
    /// How many it may bring now (unbounded once proved useful; few while unmeasured).
    #[serde(skip)]
    pub allowance: usize,
}

impl Companions {
    /// A read of `frame_id`: pairs it with the frames read within the window before, once per
    /// burst (a pair already counted in this burst is not counted again).
    /// `window_ms`: reads this close together are one burst of work on the same thing.
    pub fn read(&mut self, frame_id: &str, now_ms: i64, window_ms: i64) {
        // Reads can arrive out of order (hot reads are handed over in batches, remote ones at once):
        // taken as of the latest read seen, so a burst is never counted twice.
        let now_ms = self.recent.back().map_or(now_ms, |(_, t)| now_ms.max(*t));
        if let Some(p) = self.probes.remove(frame_id) {
            let useful = now_ms.saturating_sub(p.at_ms) <= USE_WINDOW_MS;
            self.useful.add_with(useful, now_ms, HALF_LIFE_MS);
        }
        while self.recent.front().is_some_and(|(_, t)| now_ms.saturating_sub(*t) > window_ms) {
            self.recent.pop_front();
        }
        let mut seen: Vec<&str> = vec![];
        let others: Vec<String> = self
            .recent
            .iter()
            .rev()
            .filter(|(id, _)| id != frame_id)
            .filter_map(|(id, _)| {
                if seen.contains(&id.as_str()) {
                    None
                } else {
                    seen.push(id.as_str());
                    Some(id.clone())
                }
            })
            .collect();
        let burst_ms = match self.frames.get(frame_id) {
            Some(e) if now_ms.saturating_sub(e.last_read_ms) <= window_ms => e.burst_ms,
            _ => now_ms,
        };
        for other in &others {
            // A pair counts once per burst: a frame read five times with another is one shared
            // burst, not five.
            // Both ends are asked: a full partner list may have dropped one of them.
            let counted = |a: &str, b: &str| self.partner_at(a, b).is_some_and(|p| p.at_ms >= burst_ms);
            if counted(frame_id, other) || counted(other, frame_id) {
                continue;
            }
            self.bump(frame_id, other, now_ms);
            self.bump(other, frame_id, now_ms);
        }
        let e = self.frames.entry(frame_id.to_string()).or_default();
        e.last_read_ms = now_ms;
        e.burst_ms = burst_ms;
        self.recent.push_back((frame_id.to_string(), now_ms));
        while self.recent.len() > RECENT_READS {
            self.recent.pop_front();
        }
        super::prune_to(&mut self.frames, MAX_FRAMES, |e| e.last_read_ms, |_| false);
    }

    fn partner_at(&self, a: &str, b: &str) -> Option<&Partner> {
        self.frames.get(a)?.partners.iter().find(|p| p.id == b)
    }

    fn bump(&mut self, a: &str, b: &str, now_ms: i64) {
        let e = self.frames.entry(a.to_string()).or_default();
        match e.partners.iter_mut().find(|p| p.id == b) {
            Some(p) => {
                p.count = p.decayed(now_ms) + 1.0;
                p.at_ms = p.at_ms.max(now_ms);
            }
            None => {
                if e.partners.len() >= MAX_PARTNERS {
                    // Room only by dropping a partner weaker than a new one (a single shared burst),
                    // so that a long burst over many frames does not churn the established ones.
                    let weakest = e
                        .partners
                        .iter()
                        .enumerate()
                        .map(|(i, p)| (i, p.decayed(now_ms)))
                        .min_by(|(_, x), (_, y)| x.total_cmp(y))
                        .filter(|(_, c)| *c < 1.0);
                    let Some((i, _)) = weakest else { return };
                    e.partners.swap_remove(i);
                }
                e.partners.push(Partner { id: b.to_string(), count: 1.0, at_ms: now_ms });
            }
        }
    }

    /// The frame's companions (at least [`MIN_CO_READS`] shared bursts, decayed), strongest first,
    /// with their counts.
    pub fn of(&self, frame_id: &str, now_ms: i64) -> Vec<(String, f64)> {
        let Some(e) = self.frames.get(frame_id) else { return vec![] };
        let mut out: Vec<(String, f64)> =
            e.partners.iter().map(|p| (p.id.clone(), p.decayed(now_ms))).filter(|(_, c)| *c >= MIN_CO_READS).collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out.truncate(MAX_COMPANIONS);
        out
    }

    /// `frame_id`, a remote companion of a frame just promoted, is watched (and was `brought`
    /// hot, or not).
    pub fn probe(&mut self, frame_id: &str, brought: bool, now_ms: i64) {
        self.probes.insert(frame_id.to_string(), Probe { at_ms: now_ms, brought });
        super::prune_to(&mut self.probes, MAX_FRAMES, |p| p.at_ms, |_| false);
    }

    /// When the frame was brought hot as a companion, while its probe is not judged yet.
    pub fn brought_at(&self, frame_id: &str) -> Option<i64> {
        self.probes.get(frame_id).filter(|p| p.brought).map(|p| p.at_ms)
    }

    /// Probes not read within the window were companions not worth bringing.
    pub fn settle(&mut self, now_ms: i64) {
        let due: Vec<String> = self
            .probes
            .iter()
            .filter(|(_, p)| now_ms.saturating_sub(p.at_ms) > USE_WINDOW_MS)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            self.probes.remove(&id);
            self.useful.add_with(false, now_ms, HALF_LIFE_MS);
        }
    }

    /// The measure as of `now_ms`, and whether promotions bring companions.
    pub fn usefulness(&self, now_ms: i64) -> UsefulShare {
        let (useful_share, evidence) = self.useful.good_share_with(now_ms, HALF_LIFE_MS);
        let allowance = if evidence >= MIN_EVIDENCE {
            if useful_share >= MIN_USEFUL_SHARE {
                usize::MAX
            } else {
                0
            }
        } else {
            // Brought until measured, a few at a time: the first bursts of a task are where
            // bringing pays most (waiting for the evidence first cost 1.1 points on the fortnight
            // at 15 frames), but a promotion's eight companions brought before any is judged
            // cost sessions 5 % more migrations.
            let unjudged = self.probes.values().filter(|p| p.brought).count() as f64;
            (MIN_EVIDENCE - evidence - unjudged).max(0.0).ceil() as usize
        };
        UsefulShare { useful_share, evidence, brings: allowance > 0, allowance }
    }

    /// Drops the frame and the links to it from its partners (a link left elsewhere, after a
    /// partner list dropped its weakest, names a frame the caller no longer knows: skipped).
    pub fn forget(&mut self, frame_id: &str) {
        self.probes.remove(frame_id);
        self.recent.retain(|(id, _)| id != frame_id);
        let Some(e) = self.frames.remove(frame_id) else { return };
        for p in e.partners {
            if let Some(other) = self.frames.get_mut(&p.id) {
                other.partners.retain(|q| q.id != frame_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    const H: i64 = 60 * MIN;

    fn burst(c: &mut Companions, ids: &[&str], t: i64) {
        for (k, id) in ids.iter().enumerate() {
            c.read(id, t + k as i64 * MIN, 15 * MIN);
        }
    }

    #[test]
    fn frames_read_together_in_two_bursts_become_companions() {
        let mut c = Companions::default();
        burst(&mut c, &["a", "b", "a", "c", "b"], 0);
        assert!(c.of("a", H).is_empty(), "one burst is not enough: {:?}", c.of("a", H));
        burst(&mut c, &["b", "a", "c"], 5 * H);
        let a: Vec<String> = c.of("a", 6 * H).into_iter().map(|(id, _)| id).collect();
        assert_eq!(a.len(), 2, "{a:?}");
        assert!(a.contains(&"b".to_string()) && a.contains(&"c".to_string()));
        // A frame read in a later, separate burst with other frames is no companion of a.
        burst(&mut c, &["x", "y"], 10 * H);
        burst(&mut c, &["x", "y"], 20 * H);
        assert!(c.of("a", 21 * H).iter().all(|(id, _)| id != "x"));
        assert_eq!(c.of("x", 21 * H).first().map(|(id, _)| id.as_str()), Some("y"));
    }

    #[test]
    fn reads_handed_over_out_of_order_count_one_burst() {
        let mut c = Companions::default();
        // Hot reads reach the engine in batches, after remote reads of later times.
        for (id, t) in [("a", 0), ("b", 2 * MIN), ("a", MIN), ("b", 30_000), ("a", 3 * MIN)] {
            c.read(id, t, 15 * MIN);
        }
        let n = c.partner_at("a", "b").map(|p| p.count).unwrap_or(0.0);
        assert!((n - 1.0).abs() < 1e-6, "one burst, counted once: {n}");
        assert!(c.of("a", 4 * MIN).is_empty());
    }

    #[test]
    fn one_long_burst_over_many_frames_makes_no_companions() {
        // More frames in the window than a partner list holds: a pair dropped from one end must
        // still count once per burst (it was counted seven times at the other end).
        let mut c = Companions::default();
        let mut t = 0;
        for _round in 0..2 {
            for f in 0..30 {
                for _ in 0..4 {
                    c.read(&format!("f{f}"), t, 15 * MIN);
                    t += 1000;
                }
            }
        }
        assert!((0..30).all(|f| c.of(&format!("f{f}"), t).is_empty()));
    }

    #[test]
    fn counts_decay_and_memory_is_bounded() {
        let mut c = Companions::default();
        burst(&mut c, &["a", "b"], 0);
        burst(&mut c, &["a", "b"], 2 * H);
        assert_eq!(c.of("a", 3 * H).len(), 1);
        assert!(c.of("a", 3 * H + 2 * 7 * 24 * H).is_empty(), "two half-lives later the pair is weak");
        for k in 0..(MAX_PARTNERS + 5) {
            c.read("hub", 100 * H + 2 * k as i64 * H, 15 * MIN);
            c.read(&format!("p{k}"), 100 * H + 2 * k as i64 * H + MIN, 15 * MIN);
        }
        assert!(c.frames.get("hub").is_some_and(|e| e.partners.len() <= MAX_PARTNERS));
        let kept: Vec<String> = c.frames["hub"].partners.iter().map(|p| p.id.clone()).collect();
        c.forget("hub");
        assert!(!c.frames.contains_key("hub") && c.recent.iter().all(|(id, _)| id != "hub"));
        assert!(kept.iter().all(|k| c.frames[k].partners.iter().all(|p| p.id != "hub")), "links back are gone");
    }
}
