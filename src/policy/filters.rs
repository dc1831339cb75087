//! Anti-churn filters. A recommended move passes them in this fixed order; the first that objects
//! decides the reported action and reason:
//!
//! 1. **cooldown** — the frame moved less than `cooldown` ago:
//!    `filtered: cooldown, moved 3 min ago (cooldown 10 min)`;
//! 2. **cycles** — the move would bring the frame back to a tier it left within `window`
//!    (ping-pong or longer): `filtered: cycle hot→warm→hot within 1 h`;
//! 3. **minConfidence** — `filtered: confidence 0.42 < 0.50`;
//! 4. **persistence** (demotions only) — recommended fewer than N consecutive cycles:
//!    `observing: 2/3 cycles` (action `observing`, not `filtered`);
//! 5. **costBenefit** — a promotion must save more remote reads than the move costs
//!    (`filtered: cost 1.0 reads > benefit 0.3 reads within 24 h`); a demotion below critical
//!    pressure must not turn expected reads remote
//!    (`filtered: 2.5 reads expected within 24 h would turn remote`);
//! 6. **trend** (demotions only) — the frame's reads are speeding up (the last two gaps average
//!    at most half the gaps before, and the streak still goes on):
//!    `filtered: rising access, reads every 4 min now vs every 2 h before`;
//! 7. **pattern** (demotions only, critical pressure included) — the frame is read periodically
//!    (confidence at least `minConfidence`) and its next read is due within `lead` of its period:
//!    `filtered: periodic (every 24 h), next read expected in 3 h: not demoted just before it`.
//!
//! Each filter can be switched off and tuned in `policies.filters` (see [`FilterOptions`]).
//! Forced moves bypass all of them; so do pressure demotions at the emergency level.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::options::FilterOptions;
use super::{human_secs, Tier};

/// One executed move of a frame (the history the cooldown and cycle filters look at).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MoveRecord {
    #[serde(deserialize_with = "super::tier_serde::de")]
    pub from: Tier,
    #[serde(deserialize_with = "super::tier_serde::de")]
    pub to: Tier,
    pub at_ms: i64,
    pub forced: bool,
}

/// What a filter said.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Pass,
    /// Blocked: reported as `filtered: <reason>`.
    Filtered(String),
    /// Not yet persistent: reported as `observing: <reason>`.
    Observing(String),
}

/// Everything the filters need to know about one candidate move.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub from: Tier,
    pub to: Tier,
    pub now_ms: i64,
    pub confidence: f64,
    /// Executed moves of this frame, oldest first.
    pub history: &'a VecDeque<MoveRecord>,
    /// Consecutive cycles this move has been recommended, this one included.
    pub persistent_cycles: u32,
    pub size_bytes: u64,
    /// Reads expected within the cost-benefit horizon.
    pub expected_reads: f64,
    /// Demotion asked for by tier pressure at critical or above (space is then the benefit).
    pub under_pressure: bool,
    /// Mean gaps between reads, recent and before (seconds), when its reads are speeding up.
    pub rising: Option<(f64, f64)>,
    /// A periodic frame's rhythm: period and next read expected (seconds), and confidence.
    pub periodic: Option<Periodic>,
}

/// What the classifier knows of a periodic frame, for the pattern filter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Periodic {
    pub period_s: f64,
    pub next_s: f64,
    pub confidence: f64,
}

impl Candidate<'_> {
    fn is_promotion(&self) -> bool {
        self.to < self.from
    }
}

/// 1. Cooldown after a move.
pub fn cooldown(o: &FilterOptions, c: &Candidate) -> Verdict {
    if !o.cooldown_enabled {
        return Verdict::Pass;
    }
    match c.history.back() {
        Some(last) if c.now_ms.saturating_sub(last.at_ms) < o.cooldown_ms as i64 => Verdict::Filtered(format!(
            "cooldown, moved {} ago (cooldown {})",
            human_secs(c.now_ms.saturating_sub(last.at_ms) as f64 / 1000.0),
            human_secs(o.cooldown_ms as f64 / 1000.0)
        )),
        _ => Verdict::Pass,
    }
}

/// 2. Ping-pong and multi-step cycles within the window.
pub fn cycles(o: &FilterOptions, c: &Candidate) -> Verdict {
    if !o.cycles_enabled {
        return Verdict::Pass;
    }
    let since = c.now_ms.saturating_sub(o.cycle_window_ms as i64);
    let recent: Vec<&MoveRecord> = c.history.iter().filter(|m| m.at_ms >= since).collect();
    if recent.is_empty() {
        return Verdict::Pass;
    }
    // The tiers the frame went through in the window, then where this move would take it.
    let mut path = vec![recent[0].from];
    path.extend(recent.iter().map(|m| m.to));
    let Some(start) = path[..path.len() - 1].iter().position(|t| *t == c.to) else { return Verdict::Pass };
    let mut shown: Vec<&str> = path[start..].iter().map(|t| t.as_str()).collect();
    shown.push(c.to.as_str());
    Verdict::Filtered(format!("cycle {} within {}", shown.join("→"), human_secs(o.cycle_window_ms as f64 / 1000.0)))
}

/// 3. Minimum confidence.
pub fn min_confidence(o: &FilterOptions, c: &Candidate) -> Verdict {
    if o.min_confidence_enabled && c.confidence < o.min_confidence {
        Verdict::Filtered(format!("confidence {:.2} < {:.2}", c.confidence, o.min_confidence))
    } else {
        Verdict::Pass
    }
}

/// 4. Persistence (demotions only).
pub fn persistence(o: &FilterOptions, c: &Candidate) -> Verdict {
    if !o.persistence_enabled || c.is_promotion() || c.persistent_cycles >= o.persistence_cycles {
        Verdict::Pass
    } else {
        Verdict::Observing(format!("{}/{} cycles", c.persistent_cycles, o.persistence_cycles))
    }
}

/// 5. Cost against benefit, in remote reads.
pub fn cost_benefit(o: &FilterOptions, c: &Candidate) -> Verdict {
    if !o.cost_benefit_enabled {
        return Verdict::Pass;
    }
    let horizon = human_secs(o.cost_horizon_ms as f64 / 1000.0);
    if c.is_promotion() {
        let cost = 1.0 + c.size_bytes as f64 / o.move_bytes_per_read.max(1) as f64;
        if c.expected_reads < cost {
            return Verdict::Filtered(format!(
                "cost {cost:.1} reads > benefit {:.1} reads within {horizon}",
                c.expected_reads
            ));
        }
    } else if !c.under_pressure && c.expected_reads >= 1.0 {
        return Verdict::Filtered(format!("{:.1} reads expected within {horizon} would turn remote", c.expected_reads));
    }
    Verdict::Pass
}

/// 6. Trend (demotions only): a frame whose reads are speeding up stays where it is.
pub fn trend(o: &FilterOptions, c: &Candidate) -> Verdict {
    match c.rising {
        Some((recent, earlier)) if o.trend_enabled && !c.is_promotion() => Verdict::Filtered(format!(
            "rising access, reads every {} now vs every {} before",
            human_secs(recent),
            human_secs(earlier)
        )),
        _ => Verdict::Pass,
    }
}

/// 7. Workload-pattern suppression (demotions only).
///
/// A frame in a known periodic pattern is not demoted just before its next expected read (within
/// `pattern_lead` of its period). Unlike the cost-benefit filter it holds under critical pressure
/// too: the pressure step then takes another frame (see `due_soon`). Emergency pressure bypasses
/// it like every filter.
pub fn pattern(o: &FilterOptions, c: &Candidate) -> Verdict {
    if c.is_promotion() {
        return Verdict::Pass;
    }
    match c.periodic {
        Some(p) if due_soon(o, &p) => Verdict::Filtered(format!(
            "periodic (every {}), next read expected in {}: not demoted just before it",
            human_secs(p.period_s),
            human_secs(p.next_s.max(0.0))
        )),
        _ => Verdict::Pass,
    }
}

/// Whether the pattern filter keeps this periodic frame where it is.
pub fn due_soon(o: &FilterOptions, p: &Periodic) -> bool {
    o.pattern_enabled && p.confidence >= o.pattern_min_confidence && p.next_s <= o.pattern_lead * p.period_s
}

/// A filter: what it says about one candidate move.
type Filter = fn(&FilterOptions, &Candidate) -> Verdict;

/// The first objection of `filters`, in their order.
fn first_objection(o: &FilterOptions, c: &Candidate, filters: &[Filter]) -> Verdict {
    filters.iter().map(|f| f(o, c)).find(|v| *v != Verdict::Pass).unwrap_or(Verdict::Pass)
}

/// All filters in order; the first objection wins.
pub fn apply(o: &FilterOptions, c: &Candidate) -> Verdict {
    first_objection(o, c, &[cooldown, cycles, min_confidence, persistence, cost_benefit, trend, pattern])
}

/// The history filters alone (1. cooldown, 2. cycles), for a promotion the engine suggests outside
/// a cycle's recommendations (a frame read again, a relative of a promoted frame).
pub fn history(o: &FilterOptions, c: &Candidate) -> Verdict {
    first_objection(o, c, &[cooldown, cycles])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::options::PolicyOptions;

    const MIN: i64 = 60_000;

    fn opts() -> FilterOptions {
        PolicyOptions::default().filters
    }

    fn hist(moves: &[(Tier, Tier, i64)]) -> VecDeque<MoveRecord> {
        moves.iter().map(|&(from, to, at_ms)| MoveRecord { from, to, at_ms, forced: false }).collect()
    }

    fn cand<'a>(from: Tier, to: Tier, now_ms: i64, history: &'a VecDeque<MoveRecord>) -> Candidate<'a> {
        Candidate {
            from,
            to,
            now_ms,
            confidence: 0.9,
            history,
            persistent_cycles: 3,
            size_bytes: 1000,
            expected_reads: 0.0,
            under_pressure: false,
            rising: None,
            periodic: None,
        }
    }

    /// What filter `f`, with the default options, says of the move `from`→`to` at `now_ms`.
    fn verdict(f: Filter, from: Tier, to: Tier, now_ms: i64, history: &VecDeque<MoveRecord>) -> Verdict {
        f(&opts(), &cand(from, to, now_ms, history))
    }

    fn filtered(why: &str) -> Verdict {
        Verdict::Filtered(why.into())
    }

    #[test]
    fn cooldown_blocks_recent_movers_only() {
        let h = hist(&[(Tier::Hot, Tier::Warm, 0)]);
        assert_eq!(
            verdict(cooldown, Tier::Warm, Tier::Cold, 3 * MIN, &h),
            filtered("cooldown, moved 3 min ago (cooldown 10 min)")
        );
        assert_eq!(verdict(cooldown, Tier::Warm, Tier::Cold, 11 * MIN, &h), Verdict::Pass);
        let mut off = opts();
        off.cooldown_enabled = false;
        assert_eq!(cooldown(&off, &cand(Tier::Warm, Tier::Cold, MIN, &h)), Verdict::Pass);
    }

    #[test]
    fn cycles_catch_ping_pong_and_longer_loops() {
        let h = hist(&[(Tier::Hot, Tier::Warm, 0)]);
        assert_eq!(verdict(cycles, Tier::Warm, Tier::Hot, 20 * MIN, &h), filtered("cycle hot→warm→hot within 1 h"));
        assert_eq!(verdict(cycles, Tier::Warm, Tier::Cold, 20 * MIN, &h), Verdict::Pass, "onward is fine");
        assert_eq!(verdict(cycles, Tier::Warm, Tier::Hot, 61 * MIN, &h), Verdict::Pass, "outside the window");
        let h = hist(&[(Tier::Hot, Tier::Warm, 0), (Tier::Warm, Tier::Cold, 10 * MIN)]);
        assert_eq!(
            verdict(cycles, Tier::Cold, Tier::Hot, 30 * MIN, &h),
            filtered("cycle hot→warm→cold→hot within 1 h")
        );
        assert_eq!(verdict(cycles, Tier::Cold, Tier::Warm, 30 * MIN, &h), filtered("cycle warm→cold→warm within 1 h"));
    }

    #[test]
    fn confidence_persistence_and_cost() {
        let h = VecDeque::new();
        let mut c = cand(Tier::Hot, Tier::Warm, 0, &h);
        c.confidence = 0.42;
        assert_eq!(min_confidence(&opts(), &c), filtered("confidence 0.42 < 0.50"));
        c.confidence = 0.5;
        assert_eq!(min_confidence(&opts(), &c), Verdict::Pass);

        c.persistent_cycles = 2;
        assert_eq!(persistence(&opts(), &c), Verdict::Observing("2/3 cycles".into()));
        c.persistent_cycles = 3;
        assert_eq!(persistence(&opts(), &c), Verdict::Pass);
        let mut p = cand(Tier::Warm, Tier::Hot, 0, &h);
        p.persistent_cycles = 1;
        assert_eq!(persistence(&opts(), &p), Verdict::Pass, "promotions are exempt");

        p.expected_reads = 0.3;
        assert_eq!(cost_benefit(&opts(), &p), filtered("cost 1.0 reads > benefit 0.3 reads within 24 h"));
        p.expected_reads = 2.0;
        assert_eq!(cost_benefit(&opts(), &p), Verdict::Pass);
        c.expected_reads = 2.5;
        assert_eq!(cost_benefit(&opts(), &c), filtered("2.5 reads expected within 24 h would turn remote"));
        c.under_pressure = true;
        assert_eq!(cost_benefit(&opts(), &c), Verdict::Pass, "under pressure space is the benefit");
    }

    #[test]
    fn trend_keeps_frames_whose_reads_speed_up() {
        let h = VecDeque::new();
        let mut c = cand(Tier::Hot, Tier::Warm, 0, &h);
        assert_eq!(trend(&opts(), &c), Verdict::Pass);
        c.rising = Some((240.0, 7200.0));
        assert_eq!(trend(&opts(), &c), filtered("rising access, reads every 4 min now vs every 2 h before"));
        assert_eq!(apply(&opts(), &c), filtered("rising access, reads every 4 min now vs every 2 h before"));
        let mut off = opts();
        off.trend_enabled = false;
        assert_eq!(trend(&off, &c), Verdict::Pass);
        let mut p = cand(Tier::Warm, Tier::Hot, 0, &h);
        p.rising = c.rising;
        assert_eq!(trend(&opts(), &p), Verdict::Pass, "promotions are exempt");
    }

    #[test]
    fn pattern_keeps_periodic_frames_due_soon() {
        let h = VecDeque::new();
        let day = 86_400.0;
        let mut c = cand(Tier::Hot, Tier::Warm, 0, &h);
        assert_eq!(pattern(&opts(), &c), Verdict::Pass, "no pattern known");
        c.periodic = Some(Periodic { period_s: day, next_s: 3.0 * 3600.0, confidence: 0.8 });
        assert_eq!(
            pattern(&opts(), &c),
            filtered("periodic (every 24 h), next read expected in 3 h: not demoted just before it")
        );
        c.under_pressure = true;
        assert_ne!(pattern(&opts(), &c), Verdict::Pass, "critical pressure does not lift it");
        c.periodic = Some(Periodic { period_s: day, next_s: 12.0 * 3600.0, confidence: 0.8 });
        assert_eq!(pattern(&opts(), &c), Verdict::Pass, "not due within a quarter of its period");
        c.periodic = Some(Periodic { period_s: day, next_s: 3600.0, confidence: 0.3 });
        assert_eq!(pattern(&opts(), &c), Verdict::Pass, "too unsure of the pattern");
        c.periodic = Some(Periodic { period_s: day, next_s: 3600.0, confidence: 0.8 });
        let mut off = opts();
        off.pattern_enabled = false;
        assert_eq!(pattern(&off, &c), Verdict::Pass);
        let p = Candidate { from: Tier::Warm, to: Tier::Hot, ..c.clone() };
        assert_eq!(pattern(&opts(), &p), Verdict::Pass, "promotions are exempt");
    }

    #[test]
    fn apply_uses_the_documented_order() {
        let h = hist(&[(Tier::Hot, Tier::Warm, 0)]);
        let mut c = cand(Tier::Warm, Tier::Hot, 2 * MIN, &h);
        c.confidence = 0.1;
        // Cooldown, cycle and confidence all object; cooldown comes first.
        assert!(matches!(apply(&opts(), &c), Verdict::Filtered(r) if r.starts_with("cooldown")));
        let mut o = opts();
        o.cooldown_enabled = false;
        assert!(matches!(apply(&o, &c), Verdict::Filtered(r) if r.starts_with("cycle")));
        o.cycles_enabled = false;
        assert!(matches!(apply(&o, &c), Verdict::Filtered(r) if r.starts_with("confidence")));
    }
}
