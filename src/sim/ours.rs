//! Our engine over a trace: the simulated manager that feeds [`PolicyEngine`] and executes its moves.

use std::collections::HashMap;

use super::baselines::Capacity;
use super::{Op, SimOptions, Tally, TraceEvent};
use crate::policy::{Decision, FrameView, PolicyEngine, PressureInputs, Reachability, Tier};

/// The simulated manager: frame views, what is hot, and the engine deciding.
struct OursSim<'a> {
    engine: PolicyEngine,
    views: Vec<FrameView>,
    known: Vec<bool>,
    hot: Vec<usize>,
    hot_bytes: u64,
    cap: Capacity,
    names: &'a [String],
    by_name: HashMap<&'a str, usize>,
    tally: Tally,
}

impl OursSim<'_> {
    fn set_tier(&mut self, f: usize, to: Tier) {
        let from = self.views[f].tier;
        if from == to {
            return;
        }
        if from == Tier::Hot {
            if let Some(p) = self.hot.iter().position(|h| *h == f) {
                self.hot.swap_remove(p);
            }
            self.hot_bytes -= self.views[f].size_bytes;
        }
        if to == Tier::Hot {
            self.hot.push(f);
            self.hot_bytes += self.views[f].size_bytes;
        }
        self.views[f].tier = to;
    }

    /// Moves a frame as the engine decided (making room first for a promotion) and reports back.
    fn execute(&mut self, f: usize, to: Tier, now_ms: i64) {
        let from = self.views[f].tier;
        if to == Tier::Hot && from != Tier::Hot {
            self.ensure_room(self.views[f].size_bytes, now_ms);
            self.tally.promotions += 1;
        } else if to > from {
            self.tally.demotions += 1;
        }
        self.set_tier(f, to);
        self.engine.record_outcome(&self.names[f], from, to, true, None, now_ms);
    }

    /// Makes room in hot for `size` bytes and one frame, through the engine's choice of victims.
    fn ensure_room(&mut self, size: u64, now_ms: i64) {
        let frames_over = |s: &Self| (s.hot.len() as u64 + 1).saturating_sub(s.cap.frames.unwrap_or(u64::MAX));
        let bytes_over = |s: &Self| (s.hot_bytes + size).saturating_sub(s.cap.bytes.unwrap_or(u64::MAX));
        let (nf, nb) = (frames_over(self), bytes_over(self));
        if nf == 0 && nb == 0 {
            return;
        }
        let views = &self.views;
        let victims = self.engine.make_room(now_ms, self.hot.iter().map(|&h| &views[h]), nb, nf, Reachability::ALL);
        for d in victims {
            if let Some(&v) = self.by_name.get(d.frame_id.as_str()) {
                self.execute(v, d.to, now_ms);
            }
        }
    }

    /// Executes a promotion, or reports it failed when the frame is larger than hot.
    fn promote_if_it_fits(&mut self, f: usize, d: &Decision, now_ms: i64) -> bool {
        if self.cap.fits(1, self.views[f].size_bytes) {
            self.execute(f, d.to, now_ms);
            return true;
        }
        self.engine.record_outcome(&d.frame_id, d.from, d.to, false, Some("larger than hot".into()), now_ms);
        false
    }

    /// The promoted frame's companions come along, as the manager brings them.
    fn bring_companions(&mut self, frame_id: &str, now_ms: i64) {
        let (views, by_name) = (&self.views, &self.by_name);
        let tier_of = |id: &str| by_name.get(id).map(|&i| views[i].tier);
        for d in self.engine.companions_of(frame_id, tier_of, now_ms) {
            if let Some(&c) = self.by_name.get(d.frame_id.as_str()) {
                self.promote_if_it_fits(c, &d, now_ms);
            }
        }
    }

    fn cycle(&mut self, now_ms: i64) {
        let inputs = PressureInputs {
            hot_bytes: self.hot_bytes,
            hot_frames: self.hot.len() as u64,
            hot_max_bytes: self.cap.bytes.unwrap_or(0),
            hot_max_frames: self.cap.frames.unwrap_or(0),
            ..Default::default()
        };
        // Frames are numbered by first appearance, so the ones seen so far are a prefix.
        let seen = self.known.iter().take_while(|k| **k).count();
        let report = self.engine.run_cycle(now_ms, &self.views[..seen], &inputs, Reachability::ALL, false);
        for d in report.pending() {
            if let Some(&f) = self.by_name.get(d.frame_id.as_str()) {
                self.execute(f, d.to, now_ms);
            }
        }
    }
}

pub(super) fn run_ours(
    trace: &[TraceEvent],
    dense: &[usize],
    names: &[String],
    sizes: &[u64],
    opts: &SimOptions,
) -> Tally {
    let cap = Capacity { frames: opts.hot_capacity_frames, bytes: opts.hot_capacity_bytes };
    let views = names
        .iter()
        .zip(sizes)
        .map(|(name, &size)| FrameView {
            frame_id: name.clone(),
            parent_id: None,
            tier: Tier::Cold,
            size_bytes: size,
            created_s: 0,
            closed_s: Some(0),
            active: false,
            pinned: false,
            keep_forever: false,
            kind: String::new(),
        })
        .collect();
    let mut sim = OursSim {
        engine: PolicyEngine::new(opts.policy.clone()),
        views,
        known: vec![false; names.len()],
        hot: vec![],
        hot_bytes: 0,
        cap,
        names,
        by_name: names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect(),
        tally: Tally::default(),
    };
    let cycle_ms = opts.cycle_ms.max(1);
    let mut next_cycle = trace.first().map(|e| e.t_ms + cycle_ms).unwrap_or(0);
    for (i, e) in trace.iter().enumerate() {
        while e.t_ms >= next_cycle {
            sim.cycle(next_cycle);
            next_cycle += cycle_ms;
        }
        let f = dense[i];
        let s = e.t_ms.div_euclid(1000);
        if !sim.known[f] {
            sim.known[f] = true;
            sim.views[f].created_s = s;
            sim.views[f].closed_s = Some(s);
        }
        match e.op {
            Op::Write => {
                // A write is the frame's own time (StackMemory closing or updating it), not a read.
                sim.views[f].closed_s = Some(s);
                sim.engine.on_write(&e.frame_id, e.t_ms);
                if sim.views[f].tier != Tier::Hot && cap.fits(1, sim.views[f].size_bytes) {
                    sim.ensure_room(sim.views[f].size_bytes, e.t_ms);
                    sim.set_tier(f, Tier::Hot);
                }
            }
            Op::Read => {
                let tier = sim.views[f].tier;
                sim.tally.read(tier, e.size_bytes);
                if let Some(d) = sim.engine.on_read(&e.frame_id, tier, e.t_ms) {
                    if sim.promote_if_it_fits(f, &d, e.t_ms) {
                        sim.bring_companions(&e.frame_id, e.t_ms);
                    }
                }
            }
        }
    }
    sim.tally
}
