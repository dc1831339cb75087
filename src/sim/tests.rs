//! Acceptance of the simulator on the shipped traces, and the trace parser's named errors.

use super::*;
use serde_json::{json, Value};

use crate::model::TierError;

/// Days of the slow shipped traces (thousands of frames) the acceptance test replays, to keep it
/// to seconds; `cargo run --release --example seeds` and bench/policy.js run 7.
const TEST_DAYS: u32 = 1;

fn row(name: &str, days: u32, seeds: std::ops::Range<u64>) -> acceptance::Row {
    let case = acceptance::cases().into_iter().find(|c| c.name == name).expect("case");
    let case = acceptance::Case { days: days.min(case.days), ..case };
    acceptance::run(&case, seeds, &SimOptions::default())
}

/// What each case must hold on the 10 tuning seeds, and on the 10 held-out seeds: the mean and
/// the worst seed. `goals`: within 5 pts of the optimum, above LRU on the mean, on >= 8/10 seeds,
/// migrations <= LRU. Where a goal is not met (see bench/policy.md) the bound asserted is the
/// figure reached, so a regression still fails.
fn assert_row(r: &acceptance::Row, goals: [bool; 4], min_worst_vs_lru: f64, max_gap: f64) {
    let table = acceptance::markdown(std::slice::from_ref(r));
    let got = r.goals();
    for (i, want) in goals.iter().enumerate() {
        assert!(!want || got[i], "{}: goal {i} not met\n{table}", r.name);
    }
    let (worst, _) = r.worst_best_vs_lru();
    assert!(worst >= min_worst_vs_lru, "{}: worst seed {worst:.1} pts vs LRU < {min_worst_vs_lru}\n{table}", r.name);
    let gap = r.mean_optimum() - r.mean_ours();
    assert!(gap <= max_gap, "{}: {gap:.1} pts from the optimum > {max_gap}\n{table}", r.name);
}

#[test]
fn acceptance_fortnight_ten_seeds_tuned_and_held_out() {
    // Measured (tuned / held out): @15 61.5 / 61.5 % vs LRU 54.7 / 54.7, optimum 65.4 / 65.5 (3.9 /
    // 4.0 pts: within 5 since companions); @30 64.8 / 65.0 vs 57.7 / 58.5; @60 66.7 / 66.8 vs 64.8
    // / 65.2, above LRU on 10/10 tuned and 9/10 held-out seeds (worst +0.8 / +0.0 pts).
    for seeds in [acceptance::TUNE_SEEDS, acceptance::HELD_OUT_SEEDS] {
        assert_row(&row("fortnight@15", 14, seeds.clone()), [true, true, true, true], 3.5, 5.0);
        assert_row(&row("fortnight@30", 14, seeds.clone()), [true, true, true, true], 2.5, 5.0);
        assert_row(&row("fortnight@60", 14, seeds.clone()), [true, true, true, true], -0.5, 5.0);
    }
}

/// periodic, read-once and mixed at 1 day (7 days in bench/policy.md, where read-once is 2.3 and
/// mixed 3.9 pts from the optimum on the tuning seeds): at 1 day the warm-up leaves read-once 5.0
/// and mixed up to 6.4 pts from it, so those bounds here are 5.5 and 7.0.
#[test]
fn acceptance_shipped_traces_ten_seeds() {
    for seeds in [acceptance::TUNE_SEEDS, acceptance::HELD_OUT_SEEDS] {
        for (name, max_gap) in [("periodic", 5.0), ("read-once", 5.5), ("mixed", 7.0)] {
            assert_row(&row(name, TEST_DAYS, seeds.clone()), [max_gap <= 5.0, true, true, true], 0.0, max_gap);
        }
    }
}

/// Sessions (7 days), where LRU is near-optimal: ours is within 5 points of the optimum with no
/// more migrations than LRU (167 / 168 and 168 / 170 per 1,000 reads), but NOT above LRU: 95.2 vs
/// 95.4 % (tuned), 95.2 vs 95.3 % (held out), above it on 0/10 and 1/10 seeds, worst -0.6 pts
/// (see bench/policy.md).
#[test]
fn acceptance_sessions_ten_seeds() {
    for seeds in [acceptance::TUNE_SEEDS, acceptance::HELD_OUT_SEEDS] {
        let r = row("sessions", 7, seeds);
        assert_row(&r, [true, false, false, true], -1.0, 5.0);
        assert!(
            r.mean_ours() >= r.mean_lru() - 1.0,
            "sessions: more than 1 pt below LRU\n{}",
            acceptance::markdown(&[r])
        );
    }
}

/// The traces recorded through `recordTrace` (bench/traces/: 30 working days, 10 seeds per set),
/// at 10, 20 and 40 hot frames. Ours is above LRU on every seed at 10 and 20 frames: tuned 74.4 /
/// 79.7 vs 65.4 / 71.0 %, held out 74.2 / 80.7 vs 65.2 / 71.3 (worst seed +7.4 / +5.6 and +7.0 /
/// +7.2 pts), with fewer migrations than LRU at 20. At 40 frames ours is above LRU on the mean
/// only just (86.2 vs 85.7 tuned, 86.6 vs 86.5 held out) and on 5/10 seeds (worst -0.7 / -1.5).
/// NOT met: 8/10 seeds at 40; migrations at 10 (and at 40 held out, 1078 vs 1073); ours is 8-11
/// pts from the optimum. The bounds are the figures reached.
#[test]
fn acceptance_recorded_traces() {
    for seeds in [acceptance::TUNE_SEEDS, acceptance::HELD_OUT_SEEDS] {
        for (name, goals, min_worst, max_gap) in [
            ("recorded@10", [false, true, true, false], 6.5, 9.0),
            ("recorded@20", [false, true, true, true], 5.0, 12.0),
            ("recorded@40", [false, true, false, false], -2.0, 11.5),
        ] {
            let r = row(name, acceptance::RECORDED_DAYS, seeds.clone());
            assert_eq!(r.seeds.len(), 10, "{name}: seeds");
            assert!(r.seeds.iter().all(|s| s.optimum > 50.0), "{name}: a trace file missing, empty or unreadable");
            assert_row(&r, goals, min_worst, max_gap);
            assert!(
                r.mean_ours() >= r.mean_lru() - 1.5,
                "{name}: more than 1.5 pts below LRU\n{}",
                acceptance::markdown(&[r])
            );
        }
    }
}

/// The archive rule is the store's, so the baselines run it too: a frame LRU evicted goes cold
/// once idle longer than `warmMaxAge` (one more migration), and its next read is a cold hit.
#[test]
fn baselines_archive_warm_frames_as_the_store_does() {
    let ev = |id: &str, t_ms: i64, op| TraceEvent { frame_id: id.into(), size_bytes: 10, t_ms, op };
    let day = 86_400_000;
    let trace = [
        ev("a", 0, Op::Write),
        ev("b", 1000, Op::Write),
        ev("b", 8 * day, Op::Read),
        ev("a", 8 * day + 1000, Op::Read),
    ];
    let opts = SimOptions { hot_capacity_frames: Some(1), ..SimOptions::default() };
    let r = simulate(&trace, &opts);
    let lru = r.get("LRU").expect("LRU");
    assert_eq!((lru.hot_hits, lru.warm_hits, lru.cold_hits), (1, 0, 1), "{}", r.to_markdown());
    // a evicted by b, a archived, a promoted back (b evicted).
    assert_eq!((lru.promotions, lru.demotions), (1, 3));
    // Within warmMaxAge nothing is archived: a is a warm hit.
    let short =
        [ev("a", 0, Op::Write), ev("b", 1000, Op::Write), ev("b", day, Op::Read), ev("a", day + 1000, Op::Read)];
    let lru = simulate(&short, &opts).get("LRU").cloned().expect("LRU");
    assert_eq!((lru.warm_hits, lru.cold_hits, lru.demotions), (1, 0, 2));
}

#[test]
fn optimum_is_an_upper_bound_and_counts_add_up() {
    let trace = traces::mixed(3, 1);
    let r = simulate(&trace, &SimOptions::default());
    let opt = r.get("Belady (optimum)").expect("optimum");
    for p in &r.policies {
        assert!(p.hot_hit_ratio <= opt.hot_hit_ratio + 1e-9, "{} beats the optimum\n{}", p.name, r.to_markdown());
        assert_eq!(p.hot_hits + p.warm_hits + p.cold_hits, p.reads);
    }
    assert!(r.to_markdown().contains("| LRU |"));
}

#[test]
fn traces_are_deterministic() {
    assert_eq!(traces::sessions(9, 1), traces::sessions(9, 1));
    assert_ne!(traces::sessions(9, 1), traces::sessions(10, 1));
}

#[test]
fn json_lines_load_with_typed_errors() {
    let dir = std::env::temp_dir().join(format!("sm-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let good = dir.join("good.jsonl");
    std::fs::write(&good, "{\"frameId\":\"a\",\"sizeBytes\":10,\"t\":5,\"op\":\"write\"}\n\n{\"frameId\":\"a\",\"sizeBytes\":10,\"t\":9,\"op\":\"read\"}\n")
        .expect("write");
    let events = load_trace(&good).expect("loads");
    assert_eq!(events.len(), 2);
    assert_eq!((events[0].op, events[1].t_ms), (Op::Write, 9));
    let cases = [
        ("{\"frameId\":\"a\",\"sizeBytes\":10,\"t\":5}\nnot json\n", "trace[2]"),
        ("{\"frameId\":\"\",\"sizeBytes\":10,\"t\":5}", "trace[1].frameId"),
        ("{\"frameId\":\"a\",\"sizeBytes\":-1,\"t\":5}", "trace[1].sizeBytes"),
        ("{\"frameId\":\"a\",\"sizeBytes\":1,\"t\":\"noon\"}", "trace[1].t"),
        ("{\"frameId\":\"a\",\"sizeBytes\":1,\"t\":1,\"op\":\"delete\"}", "trace[1].op"),
        ("{\"frameId\":\"a\",\"sizeBytes\":1,\"t\":1,\"colour\":1}", "trace[1].colour"),
    ];
    for (text, field) in cases {
        match parse_trace(text) {
            Err(TierError::InvalidArgument { field: f, .. }) => assert_eq!(f, field, "for {text}"),
            other => panic!("expected an error naming {field}, got {other:?}"),
        }
    }
    assert!(matches!(load_trace(dir.join("missing.jsonl")), Err(TierError::InvalidArgument { .. })));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn simulate_json_for_the_js_layer() {
    let trace = json!([
        {"frameId": "a", "sizeBytes": 10, "t": 0, "op": "write"},
        {"frameId": "a", "sizeBytes": 10, "t": 1000, "op": "read"},
        {"frameId": "b", "sizeBytes": 10, "t": 2000, "op": "read"}
    ]);
    let v =
        simulate_json(&trace, &json!({"hotCapacityFrames": 1, "policies": {"promotionThreshold": 2}})).expect("runs");
    assert_eq!(v["reads"], json!(2));
    assert_eq!(v["policies"][0]["name"], json!(OURS));
    assert_eq!(v["policies"][0]["hotHits"], json!(1));
    match simulate_json(&trace, &json!({"policies": {"bogus": 1}})) {
        Err(e) => assert_eq!(e.code(), "ERR_INVALID_CONFIG"),
        Ok(_) => panic!("unknown policy key accepted"),
    }
    assert!(simulate_json(&json!(5), &Value::Null).is_err());
    assert!(simulate_json(&trace, &json!({"hotCapacityFrames": 0})).is_err());
}

/// JS hands `simulate()` numbers past 32 bits as doubles: epoch-millisecond `t` (and sizes) given as
/// whole floats are the same trace as the JSON-lines text; fractions and NaN-like values are refused.
#[test]
fn epoch_millisecond_floats_are_accepted_in_arrays() {
    let base = 1.8e12;
    let as_floats = json!([
        {"frameId": "a", "sizeBytes": 10.0, "t": base, "op": "write"},
        {"frameId": "a", "sizeBytes": 10.0, "t": base + 1000.0, "op": "read"},
        {"frameId": "b", "sizeBytes": 10.0, "t": base + 2000.0, "op": "read"}
    ]);
    let text = "{\"frameId\":\"a\",\"sizeBytes\":10,\"t\":1800000000000,\"op\":\"write\"}\n\
        {\"frameId\":\"a\",\"sizeBytes\":10,\"t\":1800000001000,\"op\":\"read\"}\n\
        {\"frameId\":\"b\",\"sizeBytes\":10,\"t\":1800000002000,\"op\":\"read\"}\n";
    let a = simulate_json(&as_floats, &Value::Null).expect("floats");
    let b = simulate_json(&json!(text), &Value::Null).expect("text");
    assert_eq!(a, b);
    for (bad, field) in [(json!(1.5), "trace[0].t"), (json!(f64::MAX), "trace[0].t")] {
        match simulate_json(&json!([{"frameId": "a", "sizeBytes": 1, "t": bad}]), &Value::Null) {
            Err(TierError::InvalidArgument { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected {field} refused, got {other:?}"),
        }
    }
    match simulate_json(&json!([{"frameId": "a", "sizeBytes": 2.5, "t": 1}]), &Value::Null) {
        Err(TierError::InvalidArgument { field, .. }) => assert_eq!(field, "trace[0].sizeBytes"),
        other => panic!("expected sizeBytes refused, got {other:?}"),
    }
}
