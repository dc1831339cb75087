//! The engine's behaviour end to end: cycles, rules, filters, pins, forced moves, outcomes, snapshots.

use super::*;
use crate::model::TierError;
use crate::policy::pattern::Pattern;
use crate::policy::pressure::{PressureInputs, PressureLevel};
use crate::policy::PolicyOptions;

const H: i64 = 3_600_000;
const MIN: i64 = 60_000;
const NOW: i64 = 100 * 24 * H;

fn view(id: &str, tier: Tier, idle_h: i64) -> FrameView {
    let s = (NOW - idle_h * H) / 1000;
    FrameView {
        frame_id: id.into(),
        parent_id: None,
        tier,
        size_bytes: 1000,
        created_s: s,
        closed_s: Some(s),
        active: false,
        pinned: false,
        keep_forever: false,
        kind: String::new(),
    }
}

fn quiet() -> PressureInputs {
    PressureInputs { hot_max_frames: 1000, hot_max_bytes: 1 << 30, ..Default::default() }
}

/// Hot at 92 % of its frame limit: Warning, where never-read frames leave after 3/4 of the window.
fn warning() -> PressureInputs {
    PressureInputs { hot_frames: 920, ..quiet() }
}

/// Hot at 95 % of its frame limit plus `over` frames: Critical, `over` frames to give up.
fn critical(over: u64) -> PressureInputs {
    PressureInputs { hot_frames: 950 + over, ..quiet() }
}

fn engine() -> PolicyEngine {
    PolicyEngine::new(PolicyOptions::default())
}

fn only<'a>(r: &'a CycleReport, id: &str) -> &'a Decision {
    let ds: Vec<&Decision> = r.decisions.iter().filter(|d| d.frame_id == id).collect();
    assert_eq!(ds.len(), 1, "decisions for {id}: {:?}", r.decisions);
    ds[0]
}

#[test]
fn idle_hot_frame_is_observed_then_demoted_then_cooled_down() {
    let mut e = engine();
    let frames = vec![view("a", Tier::Hot, 26)];
    let r1 = e.run_cycle(NOW, &frames, &quiet(), Reachability::ALL, false);
    assert_eq!(only(&r1, "a").reason, "observing: 1/3 cycles");
    assert_eq!(only(&r1, "a").action, Action::Observing);
    let r2 = e.run_cycle(NOW + 5 * MIN, &frames, &quiet(), Reachability::ALL, false);
    assert_eq!(only(&r2, "a").reason, "observing: 2/3 cycles");
    let r3 = e.run_cycle(NOW + 10 * MIN, &frames, &quiet(), Reachability::ALL, false);
    let d = only(&r3, "a");
    assert_eq!(
        (d.action, d.to, d.reason.as_str()),
        (Action::Pending, Tier::Warm, "pending: idle 26.2 h > 24 h (hotMaxAge), never read")
    );
    assert_eq!(r3.counts.pending, 1);
    assert_eq!(r3.pending().count(), 1);
    let done = e.record_outcome("a", Tier::Hot, Tier::Warm, true, None, NOW + 11 * MIN);
    assert_eq!(
        (done.action, done.reason.as_str()),
        (Action::Executed, "executed: idle 26.2 h > 24 h (hotMaxAge), never read")
    );
    let hist = e.decisions_of("a");
    assert_eq!(hist.len(), 3, "the pending entry is replaced, not duplicated");
    assert_eq!(hist[2].action, Action::Executed);

    // Pinned right after the demotion: the promotion back is blocked by the cooldown.
    e.pin("a", 1000, NOW).expect("pin");
    let warm = vec![view("a", Tier::Warm, 26)];
    let r = e.run_cycle(NOW + 15 * MIN, &warm, &quiet(), Reachability::ALL, false);
    assert_eq!(only(&r, "a").reason, "filtered: cooldown, moved 4 min ago (cooldown 10 min)");
    let r = e.run_cycle(NOW + 30 * MIN, &warm, &quiet(), Reachability::ALL, false);
    assert_eq!(only(&r, "a").reason, "filtered: cycle hot→warm→hot within 1 h");
    let r = e.run_cycle(NOW + 80 * MIN, &warm, &quiet(), Reachability::ALL, false);
    assert_eq!(only(&r, "a").reason, "pending: pinned");
}

#[test]
fn failed_moves_are_reported_and_not_recorded_as_moves() {
    let mut o = PolicyOptions::default();
    o.filters.persistence_cycles = 1;
    let mut e = PolicyEngine::new(o);
    let r = e.run_cycle(NOW, &[view("a", Tier::Hot, 30)], &quiet(), Reachability::ALL, false);
    assert_eq!(only(&r, "a").action, Action::Pending);
    let d = e.record_outcome("a", Tier::Hot, Tier::Warm, false, Some("redis: connection refused".into()), NOW);
    assert_eq!((d.action, d.reason.as_str()), (Action::Failed, "failed: redis: connection refused"));
    assert!(e.explain("a", NOW, None).moves.is_empty());
    assert_eq!(e.in_flight(), 0);
}

#[test]
fn pins_survive_demotion_cycles_and_are_capped() {
    let mut e = PolicyEngine::new(PolicyOptions { max_pinned_bytes: 1500, ..Default::default() });
    let status = e.pin("p", 1000, NOW).expect("pin");
    assert_eq!((status.frames, status.pinned_bytes, status.cap_bytes), (1, 1000, 1500));
    match e.pin("q", 1000, NOW) {
        Err(TierError::InvalidArgument { field, message }) => {
            assert_eq!(field, "frameId");
            assert!(message.contains("maxPinnedBytes"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let frames = vec![view("p", Tier::Hot, 48)];
    let full = PressureInputs { hot_frames: 1000, hot_max_frames: 1000, ..Default::default() };
    for i in 0..5 {
        let r = e.run_cycle(NOW + i * 5 * MIN, &frames, &quiet(), Reachability::ALL, false);
        assert_eq!(only(&r, "p").reason, "skipped: pinned");
        // Pressure never picks a pinned frame.
        let r = e.run_cycle(NOW + i * 5 * MIN, &frames, &full, Reachability::ALL, false);
        assert!(r.pending().next().is_none());
    }
    assert!(e.make_room(NOW, &frames, 0, 1, Reachability::ALL).is_empty());
    let forced = e.force_demote(&frames[0], Tier::Warm, NOW).expect("valid tier");
    assert_eq!(forced.reason, "skipped: pinned");
    assert!(e.unpin("p"));
    assert_eq!(e.pin_status().pinned_bytes, 0);
}

#[test]
fn active_frames_are_never_demoted_even_by_force() {
    let mut e = engine();
    let mut f = view("a", Tier::Hot, 48);
    f.active = true;
    f.closed_s = None;
    let r = e.run_cycle(NOW, std::slice::from_ref(&f), &quiet(), Reachability::ALL, false);
    assert_eq!(only(&r, "a").reason, "skipped: active frame");
    let d = e.force_demote(&f, Tier::Cold, NOW).expect("valid tier");
    assert_eq!((d.action, d.reason.as_str(), d.forced), (Action::Skipped, "skipped: active frame", true));
    assert!(e.force_demote(&view("b", Tier::Cold, 1), Tier::Warm, NOW).is_err(), "warm is not colder than cold");
    let d = e.force_promote(&view("c", Tier::Cold, 1), NOW);
    assert_eq!((d.action, d.reason.as_str(), d.to), (Action::Pending, "pending: forced by caller", Tier::Hot));
}

/// In-flight awareness of bulk runs: while one is moving frames of the file, a cycle decides
/// nothing new (every move it wanted waits, nothing goes in flight); once it ends, the same frame
/// is decided again.
#[test]
fn a_cycle_during_a_bulk_run_defers_its_moves() {
    let mut o = PolicyOptions::default();
    o.filters.persistence_cycles = 1;
    let mut e = PolicyEngine::new(o);
    let frames = vec![view("w", Tier::Warm, 8 * 24)];
    e.set_bulk_run(Some("run-1".into()));
    let r = e.run_cycle(NOW, &frames, &quiet(), Reachability::ALL, false);
    let d = only(&r, "w");
    assert_eq!(
        (d.action, d.reason.as_str()),
        (Action::Deferred, "deferred: bulk run run-1 is moving frames; automatic moves wait for it")
    );
    assert_eq!((r.counts.pending, r.counts.deferred, e.in_flight()), (0, 1, 0));
    e.set_bulk_run(None);
    let r = e.run_cycle(NOW + 60_000, &frames, &quiet(), Reachability::ALL, false);
    assert_eq!(only(&r, "w").action, Action::Pending);
    assert_eq!(e.in_flight(), 1);
}

#[test]
fn unreachable_tiers_defer() {
    let mut o = PolicyOptions::default();
    o.filters.persistence_cycles = 1;
    let mut e = PolicyEngine::new(o);
    let frames = vec![view("w", Tier::Warm, 8 * 24)];
    let r = e.run_cycle(NOW, &frames, &quiet(), Reachability { warm: true, cold: false }, false);
    let d = only(&r, "w");
    assert_eq!((d.action, d.reason.as_str()), (Action::Deferred, "deferred: cold tier unreachable"));
    assert_eq!(d.basis, "idle 8 d > 7 d");
}

#[test]
fn dry_run_changes_nothing() {
    let mut e = engine();
    let frames = vec![view("a", Tier::Hot, 30), view("b", Tier::Warm, 9 * 24)];
    let before = serde_json::to_value(e.snapshot()).expect("json");
    let r1 = e.run_cycle(NOW, &frames, &warning(), Reachability::ALL, true);
    let r2 = e.run_cycle(NOW, &frames, &warning(), Reachability::ALL, true);
    assert!(r1.dry_run);
    assert_eq!(r1.decisions, r2.decisions, "no persistence counter advanced");
    assert_eq!(only(&r1, "a").reason, "observing: 1/3 cycles");
    assert_eq!(serde_json::to_value(e.snapshot()).expect("json"), before);
    assert_eq!((e.cycle(), e.in_flight()), (0, 0));
}

#[test]
fn promotion_threshold_and_read_once_admission() {
    let mut e = engine();
    // Hot is under pressure (a floor exists) and the frame has no reuse pattern: the seed's
    // threshold brings it back on the third read.
    e.hot_floor = Some(0.99);
    assert!(e.on_read("r", Tier::Warm, NOW).is_none(), "a single read never promotes");
    assert!(e.on_read("r", Tier::Warm, NOW + MIN).is_none());
    let d = e.on_read("r", Tier::Warm, NOW + 2 * MIN).expect("promotes");
    assert_eq!(d.reason, "pending: 3 reads while warm (threshold 3)");
    e.record_outcome("r", Tier::Warm, Tier::Hot, true, None, NOW + 2 * MIN);
    let stats = e.access().get("r").expect("tracked");
    assert_eq!((stats.count, stats.since_move), (3, 0), "a migration is not an access");
    // With room in hot, a frame read a second time comes back at once.
    e.hot_floor = None;
    assert!(e.on_read("s", Tier::Cold, NOW).is_none());
    let d = e.on_read("s", Tier::Cold, NOW + MIN).expect("promotes");
    assert!(d.reason.starts_with("pending: read again"), "{}", d.reason);
}

#[test]
fn closed_children_move_with_their_parent_and_relatives_are_prefetched() {
    let mut o = PolicyOptions::default();
    o.filters.persistence_cycles = 2;
    let mut e = PolicyEngine::new(o);
    let parent = view("p", Tier::Hot, 30);
    let mut child = view("c", Tier::Hot, 25);
    child.parent_id = Some("p".into());
    let mut open_child = view("o", Tier::Hot, 30);
    open_child.parent_id = Some("p".into());
    open_child.active = true;
    open_child.closed_s = None;
    let frames = vec![parent, child, open_child];
    e.run_cycle(NOW, &frames, &quiet(), Reachability::ALL, false);
    // The child's own counter is at 1 when the parent reaches 2: it goes with the parent.
    let mut frames2 = frames.clone();
    frames2[1].created_s -= 5 * 3600;
    frames2[1].closed_s = Some(frames2[1].created_s);
    let r = e.run_cycle(NOW + 5 * MIN, &frames2, &quiet(), Reachability::ALL, false);
    assert_eq!(only(&r, "p").reason, "pending: idle 30.1 h > 24 h (hotMaxAge), never read");
    let c = only(&r, "c");
    assert_eq!(
        (c.action, c.reason.as_str(), c.with_parent.as_deref()),
        (Action::Pending, "pending: with parent p", Some("p"))
    );
    assert_eq!(only(&r, "o").reason, "skipped: active frame");

    // Promotion of a frame suggests its parent and children.
    let mut e = engine();
    let mut kid = view("k", Tier::Warm, 2);
    kid.parent_id = Some("m".into());
    let mom = view("m", Tier::Cold, 2);
    e.pin("k", 10, NOW).expect("pin");
    let r = e.run_cycle(NOW, &[kid, mom], &quiet(), Reachability::ALL, false);
    assert_eq!(only(&r, "k").reason, "pending: pinned");
    assert_eq!(only(&r, "m").reason, "pending: prefetch: parent of k");
    assert_eq!(r.decisions[0].frame_id, "k", "highest priority first");
}

#[test]
fn pressure_demotes_lowest_scores_and_batches_cap() {
    let mut e = PolicyEngine::new(PolicyOptions { batch_size: 2, ..Default::default() });
    let frames: Vec<FrameView> = (0..10).map(|i| view(&format!("f{i}"), Tier::Hot, i)).collect();
    let p = PressureInputs { hot_frames: 10, hot_max_frames: 10, ..Default::default() };
    let r = e.run_cycle(NOW, &frames, &p, Reachability::ALL, false);
    assert_eq!(r.pressure.level, PressureLevel::Emergency);
    // Emergency: back under 95 % of 10 frames means one frame, the idlest, no filters.
    let pending: Vec<&str> = r.pending().map(|d| d.frame_id.as_str()).collect();
    assert_eq!(pending, vec!["f9"]);
    assert!(only(&r, "f9").reason.starts_with("pending: hot tier emergency (100% full)"), "{}", only(&r, "f9").reason);
    let r = e.run_cycle(
        NOW,
        &[view("x", Tier::Hot, 30), view("y", Tier::Hot, 31), view("z", Tier::Hot, 32)],
        &quiet(),
        Reachability::ALL,
        true,
    );
    assert!(r.decisions.iter().all(|d| d.action == Action::Observing));
}

#[test]
fn snapshot_round_trips_and_explain_tells_the_story() {
    let mut e = engine();
    for k in 0..6 {
        e.on_read("a", Tier::Hot, NOW - 6 * H + k * H);
    }
    e.pin("b", 10, NOW).expect("pin");
    e.record_outcome("a", Tier::Warm, Tier::Hot, true, None, NOW - 10 * MIN);
    let snap = e.snapshot();
    let json = serde_json::to_string(&snap).expect("serialise");
    let back: EngineSnapshot = serde_json::from_str(&json).expect("parse");
    assert_eq!(back, snap);
    let mut e2 = engine();
    e2.restore(back);
    assert_eq!(e2.snapshot(), snap);
    let x = e2.explain("a", NOW, Some(&view("a", Tier::Hot, 1)));
    assert_eq!(x.tier, Some(Tier::Hot));
    assert!(matches!(x.pattern.pattern, Pattern::Periodic { .. }), "{:?}", x.pattern);
    assert!(x.expected_next.starts_with("stays hot; next read expected in"), "{}", x.expected_next);
    assert_eq!(x.moves.len(), 1);
    assert_eq!(x.last_decisions[0].reason, "executed: moved by the caller");
    assert!(e2.explain("b", NOW, None).pinned);
}

/// A bulk run tells the engine of every frame it moves: the histories it keeps stay bounded (the
/// most recent ones), so memory does not grow with the store.
#[test]
fn histories_of_a_million_frame_run_stay_bounded() {
    let mut e = engine();
    let n = MAX_TRACKED_FRAMES + MAX_TRACKED_FRAMES / 5;
    for i in 0..n {
        let id = format!("f{i}");
        e.on_write(&id, NOW + i as i64);
        e.record_outcome(&id, Tier::Hot, Tier::Warm, true, None, NOW + i as i64);
    }
    let s = e.snapshot();
    for (what, len) in [("moves", s.moves.len()), ("decisions", s.decisions.len()), ("written", e.written.len())] {
        assert!(len <= MAX_TRACKED_FRAMES, "{what}: {len}");
        assert!(len >= MAX_TRACKED_FRAMES * 8 / 10, "{what}: {len}");
    }
    let last = format!("f{}", n - 1);
    assert_eq!(e.explain(&last, NOW + n as i64, None).moves.len(), 1, "the latest are kept");
    assert!(e.explain("f0", NOW + n as i64, None).moves.is_empty(), "the oldest are dropped");
}

#[test]
fn forget_leaves_nothing_about_a_deleted_frame() {
    let mut o = PolicyOptions::default();
    o.filters.persistence_cycles = 2;
    let mut e = PolicyEngine::new(o);
    let before = serde_json::to_value(e.snapshot()).expect("json");
    e.on_read("a", Tier::Warm, NOW - 30 * H);
    e.record_outcome("a", Tier::Warm, Tier::Hot, true, None, NOW - 29 * H);
    // One cycle leaves a persistence counter (observing), the forced move a move in flight.
    let r = e.run_cycle(NOW, &[view("a", Tier::Hot, 30)], &critical(1), Reachability::ALL, false);
    assert_eq!(only(&r, "a").action, Action::Observing);
    e.force_demote(&view("a", Tier::Hot, 30), Tier::Warm, NOW).expect("valid tier");
    e.pin("a", 1000, NOW).expect("pin");
    let s = e.snapshot();
    let kept = [s.access.len(), s.pins.len(), s.moves.len(), s.persistence.len(), s.decisions.len(), e.in_flight()];
    assert_eq!(kept, [1; 6], "the engine knows a in every way it can");
    e.forget("a");
    let mut after = serde_json::to_value(e.snapshot()).expect("json");
    after["cycle"] = before["cycle"].clone();
    after["startedMs"] = before["startedMs"].clone();
    // The admission counts are of all remote reads, not of a: only its open probe goes.
    assert_eq!(after["admission"]["probes"], serde_json::json!({}));
    after["admission"] = before["admission"].clone();
    assert_eq!(after, before, "no access, pin, move, counter or decision of a is left");
    assert_eq!((e.in_flight(), e.pin_status().frames), (0, 0));
}

/// Hot frames read before stay while hot has room, below Critical pressure; never-read frames
/// leave past the window at any pressure, and an old frame stored now (an import) is not read.
#[test]
fn age_makes_eligible_not_gone() {
    let mut e = engine();
    e.on_read("read", Tier::Hot, NOW - 48 * H);
    e.on_write("imported", NOW - H);
    let frames = vec![view("read", Tier::Hot, 240), view("unread", Tier::Hot, 240), view("imported", Tier::Hot, 240)];
    for pressure in [quiet(), warning()] {
        let r = e.run_cycle(NOW, &frames, &pressure, Reachability::ALL, true);
        let mut ids: Vec<&str> = r.decisions.iter().map(|d| d.frame_id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, ["imported", "unread"], "{:?}", r.decisions);
    }
    let r = e.run_cycle(NOW, &frames, &quiet(), Reachability::ALL, true);
    assert_eq!(only(&r, "unread").basis, "idle 10 d > 24 h (hotMaxAge), never read");
    let r = e.run_cycle(NOW, &frames, &warning(), Reachability::ALL, true);
    assert_eq!(only(&r, "imported").basis, "idle 10 d > 18 h (hotMaxAge), never read (warning pressure)");
    let x = e.explain("read", NOW, Some(&frames[0]));
    assert!(x.expected_next.starts_with("eligible: idle 2 d > 24 h (hotMaxAge), read before"), "{}", x.expected_next);
    assert!(x.expected_next.contains("stays while hot has room"), "{}", x.expected_next);
    // At Critical the ranking takes over: a frame read before is ranked out too.
    let r = e.run_cycle(NOW, &frames[..1], &critical(1), Reachability::ALL, true);
    assert!(only(&r, "read").basis.starts_with("hot tier critical"), "{}", only(&r, "read").basis);
}

/// Outcome learning: demotions promoted back within the window tighten the rules for the
/// frames they hurt (and a little for their kind), not for frames whose demotions were good.
/// Here the rule is the pressure ranking: the hurt frames are the longest idle, so the ranking
/// picks them first until their regretted demotions make them score as if idle for less.
#[test]
fn regretted_demotions_tighten_the_rule_for_the_frames_they_hurt_only() {
    let d = 24 * H;
    let mut e = engine();
    let hurt = ["h1", "h2", "h3"];
    let fine = ["f1", "f2", "f3"];
    let frames_at = |ids: &[&str], kind: &str| -> Vec<FrameView> {
        ids.iter().map(|id| FrameView { kind: kind.into(), ..view(id, Tier::Hot, 240) }).collect()
    };
    let mut frames = frames_at(&hurt, "p");
    frames.extend(frames_at(&fine, "q"));
    let mut demoted_per_round = vec![];
    // Round 0 gives up all six (6 over the mark), round 1 three of them.
    for (round, over) in [(0i64, 6u64), (1, 3)] {
        let t0 = NOW + round * 4 * d;
        for f in &frames {
            let last_read = if f.frame_id.starts_with('h') { 60 * H } else { 48 * H };
            e.on_read(&f.frame_id, Tier::Hot, t0 - last_read);
        }
        let mut pending = vec![];
        for k in 0..3 {
            let r = e.run_cycle(t0 + k * 5 * MIN, &frames, &critical(over), Reachability::ALL, false);
            pending = r.pending().map(|d| d.frame_id.clone()).collect::<Vec<_>>();
        }
        pending.sort();
        for id in &pending {
            e.record_outcome(id, Tier::Hot, Tier::Warm, true, None, t0 + 11 * MIN);
        }
        demoted_per_round.push(pending.clone());
        // The hurt frames come back within the hour; the fine ones 30 h later (not needed hot).
        for id in &pending {
            let back = if id.starts_with('h') { t0 + H } else { t0 + 30 * H };
            e.record_outcome(id, Tier::Warm, Tier::Hot, true, None, back);
        }
    }
    assert_eq!(demoted_per_round[0], vec!["f1", "f2", "f3", "h1", "h2", "h3"]);
    assert_eq!(demoted_per_round[1], vec!["f1", "f2", "f3"], "the hurt frames, idle longest, stay hot the second time");
    // Without the outcomes the ranking would have taken the longest idle.
    let mut fresh = engine();
    for f in &frames {
        fresh.on_read(&f.frame_id, Tier::Hot, NOW - if f.frame_id.starts_with('h') { 60 * H } else { 48 * H });
    }
    let r = fresh.run_cycle(NOW, &frames, &critical(3), Reachability::ALL, true);
    let mut first: Vec<&str> = r.decisions.iter().map(|d| d.frame_id.as_str()).collect();
    first.sort();
    assert_eq!(first, ["h1", "h2", "h3"]);

    let now = NOW + 8 * d;
    let xh = e.explain("h1", now, Some(&frames[0]));
    assert_eq!(xh.outcomes.len(), 1);
    assert_eq!(xh.outcomes[0].outcome, "regretted: promoted back after 49 min");
    assert!(xh.learning.starts_with("window ×"), "{}", xh.learning);
    let xf = e.explain("f1", now, Some(&frames[3]));
    assert!(xf.outcomes.iter().all(|o| o.good), "{:?}", xf.outcomes);
    assert_eq!(xf.outcomes[0].outcome, "good: not needed hot for 29.8 h");
    assert_eq!(xf.learning, "no change: no regretted outcomes");
    let (th, _) = e.learning().tightening("h1", "p", now);
    let (tf, _) = e.learning().tightening("f1", "q", now);
    let (t_new_p, _) = e.learning().tightening("new", "p", now);
    assert!(th > 1.5 && tf == 1.0, "hurt ×{th:.2}, fine ×{tf:.2}");
    assert!(t_new_p > 1.0 && t_new_p < th, "a new frame of the hurt kind is tightened a little: ×{t_new_p:.2}");
    // A snapshot keeps what was learnt.
    let mut again = engine();
    again.restore(e.snapshot());
    assert_eq!(again.learning().tightening("h1", "p", now).0, th);
}

/// `minDataCollection`: no automatic rule move until the engine has observed that long; 0 (the
/// default) means at once.
#[test]
fn min_data_collection_holds_rule_moves() {
    let mut o = PolicyOptions { min_data_collection_ms: H as u64, ..Default::default() };
    o.filters.persistence_cycles = 1;
    let mut e = PolicyEngine::new(o);
    let frames = vec![view("a", Tier::Hot, 240)];
    let r = e.run_cycle(NOW, &frames, &quiet(), Reachability::ALL, false);
    assert_eq!(only(&r, "a").reason, "observing: collecting data, 0 s of 1 h (minDataCollection)");
    let r = e.run_cycle(NOW + 30 * MIN, &frames, &quiet(), Reachability::ALL, false);
    assert_eq!(only(&r, "a").action, Action::Observing);
    let r = e.run_cycle(NOW + H, &frames, &quiet(), Reachability::ALL, false);
    assert_eq!(only(&r, "a").action, Action::Pending);
    let o = PolicyOptions::from_json(&serde_json::json!({"minDataCollection": 0}), 1).expect("0 allowed");
    assert_eq!(o.min_data_collection_ms, 0);
}

#[test]
fn pressure_passes_over_a_periodic_frame_due_soon() {
    // "p" is read every day at the same hour, last 20 h ago: due in 4 h, within a quarter of its
    // period. It is also the lowest score in a hot tier at critical pressure.
    let run = |pattern_enabled: bool| {
        let mut o = PolicyOptions::default();
        o.filters.pattern_enabled = pattern_enabled;
        let mut e = PolicyEngine::new(o);
        for k in (0..10).rev() {
            e.on_read("p", Tier::Hot, NOW - 20 * H - k * 24 * H);
        }
        let mut frames = vec![view("p", Tier::Hot, 20)];
        frames.extend((0..8).map(|i| view(&format!("n{i}"), Tier::Hot, 0)));
        let p = PressureInputs { hot_frames: 96, hot_max_frames: 100, ..Default::default() };
        let r = e.run_cycle(NOW, &frames, &p, Reachability::ALL, false);
        assert_eq!(r.pressure.level, PressureLevel::Critical);
        let pattern = e.explain("p", NOW, None).pattern.pattern;
        assert!(matches!(pattern, Pattern::Periodic { .. }), "{pattern:?}");
        r
    };
    let off = run(false);
    let chosen: Vec<&str> = off.decisions.iter().map(|d| d.frame_id.as_str()).collect();
    assert!(chosen.contains(&"p"), "without the filter the lowest score goes first: {chosen:?}");
    let on = run(true);
    let chosen: Vec<&str> = on.decisions.iter().map(|d| d.frame_id.as_str()).collect();
    assert!(!chosen.contains(&"p"), "{chosen:?}");
    assert!(!chosen.is_empty(), "another frame makes the room");
    // Emergency bypasses the filter.
    let mut e = engine();
    for k in (0..10).rev() {
        e.on_read("p", Tier::Hot, NOW - 20 * H - k * 24 * H);
    }
    let frames = vec![view("p", Tier::Hot, 20), view("q", Tier::Hot, 0)];
    let r = e.run_cycle(
        NOW,
        &frames,
        &PressureInputs { hot_frames: 2, hot_max_frames: 2, ..Default::default() },
        Reachability::ALL,
        false,
    );
    assert_eq!(r.pressure.level, PressureLevel::Emergency);
    assert_eq!(r.pending().map(|d| d.frame_id.as_str()).collect::<Vec<_>>(), vec!["p"]);
}

/// Learned admission: where remote reads of frames read before are read again within minutes,
/// such a frame comes back hot at its first remote read; unread frames read once (search hits)
/// keep the seed's threshold. Off, the first read promotes nothing.
#[test]
fn learned_admission_promotes_at_a_first_read_where_reads_are_read_again() {
    let run = |enabled: bool| {
        let mut o = PolicyOptions { promotion_threshold: 10, ..Default::default() };
        o.admission.enabled = enabled;
        let mut e = PolicyEngine::new(o);
        // Hot is under pressure: "hot has room" does not promote, only the rules do.
        e.hot_floor = Some(0.99);
        for k in 0..6 {
            assert!(e.on_read(&format!("hit{k}"), Tier::Cold, NOW + k * MIN).is_none(), "search hits never promote");
        }
        for k in 0..4 {
            let id = format!("task{k}");
            e.on_read(&id, Tier::Hot, NOW - 10 * H);
            e.on_read(&id, Tier::Warm, NOW + k * MIN);
            e.on_read(&id, Tier::Warm, NOW + k * MIN + 30_000);
        }
        // The hits' window passes: read once.
        e.run_cycle(NOW + 2 * H, &[], &quiet(), Reachability::ALL, false);
        e.hot_floor = Some(0.99);
        let t = NOW + 2 * H + MIN;
        e.on_read("old", Tier::Hot, NOW - 20 * H);
        let returning = e.on_read("old", Tier::Warm, t);
        let unread = e.on_read("hit9", Tier::Cold, t);
        let forecast = e.explain("other", t, Some(&view("other", Tier::Warm, 30))).expected_next;
        (returning, unread, forecast, e)
    };
    let (returning, unread, _, e) = run(true);
    let d = returning.expect("a returning frame is admitted at its first remote read");
    assert!(d.basis.contains("learnt admission") && d.basis.contains("frames read before"), "{}", d.basis);
    assert!(unread.is_none(), "unread frames were read once: not admitted");
    let s = e.admission().share(false, 0.25, NOW + 2 * H + MIN);
    assert!(!s.admits && s.reuse_share < 0.01 && s.evidence >= 5.0, "{s:?}");
    // A warm frame never read through us is an unread frame: its forecast keeps the threshold.
    let (_, _, forecast, _) = run(true);
    assert!(forecast.contains("after 10 more read(s)"), "{forecast}");
    let (returning, _, _, _) = run(false);
    assert!(returning.is_none(), "admission off: the threshold rules: {returning:?}");
}

/// Companions: frames read together in two bursts come back with the one a read promotes; where
/// brought companions are not read, the engine stops bringing them (it keeps probing); off, none.
#[test]
fn a_promotion_brings_the_frames_read_with_it_until_they_prove_useless() {
    let burst = |e: &mut PolicyEngine, ids: &[&str], t: i64| {
        for (k, id) in ids.iter().enumerate() {
            e.on_read(id, Tier::Hot, t + k as i64 * MIN);
        }
    };
    let warm = |id: &str| (id != "a").then_some(Tier::Warm);
    let mut e = engine();
    burst(&mut e, &["a", "b", "c"], NOW);
    assert!(e.companions_of("a", warm, NOW + H).is_empty(), "one burst together is not enough");
    burst(&mut e, &["c", "a", "b"], NOW + 4 * H);
    burst(&mut e, &["x", "y"], NOW + 8 * H);
    let got = e.companions_of("a", warm, NOW + 9 * H);
    let ids: Vec<&str> = got.iter().map(|d| d.frame_id.as_str()).collect();
    assert_eq!(ids.len(), 2, "{got:?}");
    assert!(ids.contains(&"b") && ids.contains(&"c"), "{ids:?}");
    assert!(got.iter().all(|d| d.to == Tier::Hot && d.basis.contains("read with a in 2 bursts (companion)")));
    // Brought and never read: after the window the probes are judged useless, and the next
    // promotions of the pair's frames bring nothing (the engine still probes).
    for d in &got {
        e.record_outcome(&d.frame_id, Tier::Warm, Tier::Hot, true, None, NOW + 9 * H);
    }
    let mut t = NOW + 9 * H;
    for round in 0..3 {
        t += 2 * H;
        e.run_cycle(t, &[], &quiet(), Reachability::ALL, false);
        let (p, q) = (format!("p{round}"), format!("q{round}"));
        burst(&mut e, &[&p, &q], t);
        burst(&mut e, &[&p, &q], t + 30 * MIN);
        let brought = e.companions_of(&p, |id| (id == q).then_some(Tier::Warm), t + 40 * MIN);
        for d in &brought {
            e.record_outcome(&d.frame_id, Tier::Warm, Tier::Hot, true, None, t + 40 * MIN);
        }
    }
    e.run_cycle(t + 2 * H, &[], &quiet(), Reachability::ALL, false);
    let u = e.companions().usefulness(t + 2 * H);
    assert!(u.evidence >= companions::MIN_EVIDENCE && u.useful_share < 0.5, "{u:?}");
    assert!(e.companions_of("a", warm, t + 2 * H + MIN).is_empty(), "useless companions are not brought");
    let mut e = engine();
    e.opts.companions.enabled = false;
    burst(&mut e, &["a", "b"], NOW);
    burst(&mut e, &["a", "b"], NOW + 4 * H);
    assert!(e.companion_ids("a", NOW + 5 * H).is_empty() && e.companions_of("a", warm, NOW + 5 * H).is_empty());
}

/// Victim duels: hot full, the score sends the frame it ranks lowest, LRU would send the longest
/// idle; when the score's victims are the ones read again first, the ranking leans to recency
/// and the engine sends the longest idle frame instead.
#[test]
fn victims_lean_to_recency_where_lru_wins_the_duels() {
    // The score here is frequency alone, so it keeps the frame read often long ago.
    let by_frequency = || PolicyOptions {
        weights: crate::policy::options::ScoreWeights { recency: 0.0, frequency: 1.0, pattern: 0.0, size: 0.0 },
        ..Default::default()
    };
    let mut e = PolicyEngine::new(by_frequency());
    let mut t = NOW;
    let mut sent_idle = false;
    for round in 0..12 {
        // `old{round}`: idle longest, read three times an hour ago; `new{round}`: read once a
        // minute ago. The score sends `new`, LRU would send `old`.
        let (old, new) = (format!("old{round}"), format!("new{round}"));
        for k in 0..3 {
            e.on_read(&old, Tier::Hot, t - H + k * MIN);
        }
        e.on_read(&new, Tier::Hot, t - MIN);
        let hot = [view(&old, Tier::Hot, 1), view(&new, Tier::Hot, 0)];
        let sent = e.make_room(t, hot.iter(), 0, 1, Reachability::ALL);
        assert_eq!(sent.len(), 1);
        sent_idle |= sent[0].frame_id == old;
        if round == 0 {
            assert_eq!(sent[0].frame_id, new, "before any duel, the score's choice");
        }
        e.record_outcome(&sent[0].frame_id, Tier::Hot, Tier::Warm, true, None, t);
        // The frame read again first is the recent one: LRU was right to keep it.
        e.on_read(&new, Tier::Warm, t + 10 * MIN);
        t += H;
    }
    let m = e.duels().mix(t);
    assert!(m.recency_share > 0.9 && m.mix > 0.8, "{m:?}");
    assert!(sent_idle, "once LRU won its duels, the longest idle frame was sent");
    let mut off = PolicyEngine::new(PolicyOptions {
        duels: crate::policy::options::DuelOptions { enabled: false },
        ..by_frequency()
    });
    for k in 0..3 {
        off.on_read("o", Tier::Hot, NOW - H + k * MIN);
    }
    off.on_read("n", Tier::Hot, NOW - MIN);
    let hot = [view("o", Tier::Hot, 1), view("n", Tier::Hot, 0)];
    assert_eq!(off.make_room(NOW, hot.iter(), 0, 1, Reachability::ALL)[0].frame_id, "n");
    assert_eq!(off.duels().mix(NOW).evidence, 0.0, "duels off: none opened");
}
