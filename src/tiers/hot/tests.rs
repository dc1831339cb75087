//! The hot tier against real SQLite files: exact round trips, stubs and restores, bad input.
use serde_json::Value;

use super::*;
use crate::model::normalize_bundle;
use crate::model::{Bundle, Tier};
use crate::tiers::hot::{Demotion, FrameMeta, HotBody, NewMove, Restore};

fn fixtures() -> Vec<Bundle> {
    let v: Value = serde_json::from_str(include_str!("../../../__test__/fixtures/frames.json")).expect("json");
    v.as_array().expect("array").iter().map(|b| normalize_bundle(b.clone()).expect("valid")).collect()
}

#[test]
fn round_trip_is_exact_and_reopen_is_idempotent() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("context.db");
    let hot = HotTier::open(&path).expect("open");
    let fx = fixtures();
    // Child before parent in the call: the batch is reordered.
    let rev: Vec<Bundle> = fx.iter().rev().cloned().collect();
    hot.store_many(&rev, 1 << 22).expect("store");
    for b in &fx {
        let rec = hot.load(b.frame_id()).expect("load").expect("found");
        assert_eq!(rec.bundle.as_ref().map(|x| x.to_value()), Some(b.to_value()));
    }
    drop(hot);
    let hot = HotTier::open(&path).expect("reopen");
    assert_eq!(hot.schema_version().expect("v"), SCHEMA_VERSION);
    let counts = hot.counts().expect("counts");
    assert_eq!(counts.hot.frames, 3);
}

/// Stubs `frame` (as a demotion whose copy was verified would) and returns its metadata from before.
fn stub(hot: &HotTier, frame: &Bundle) -> FrameMeta {
    let meta = hot.meta(frame.frame_id()).expect("meta").expect("some");
    let m = NewMove {
        frame_id: frame.frame_id().into(),
        from: 1,
        to: 3,
        checksum: meta.checksum.clone(),
        version: meta.version,
        change_seq: meta.change_seq,
        run_id: None,
    };
    let mid = hot.journal_begin(&[m]).expect("j")[0];
    let d = Demotion {
        move_id: mid,
        frame_id: frame.frame_id().into(),
        version: meta.version,
        change_seq: meta.change_seq,
        checksum: None,
        size_bytes: None,
    };
    assert_eq!(hot.finish_demotions(&[d], Tier::Cold).expect("stub").len(), 1);
    meta
}

fn restore(hot: &HotTier, frame: &Bundle, meta: &FrameMeta) -> i64 {
    let sum = meta.checksum.clone().unwrap_or_default();
    let m = NewMove {
        frame_id: frame.frame_id().into(),
        from: 3,
        to: 1,
        checksum: Some(sum.clone()),
        version: meta.version,
        change_seq: 0,
        run_id: None,
    };
    let mid = hot.journal_begin(&[m]).expect("j")[0];
    let r = Restore { bundle: frame, checksum: &sum, version: meta.version, move_id: mid };
    hot.restore_many(&[r]).expect("restore").pop().expect("one").expect("restored")
}

#[test]
fn stub_keeps_tree_and_restore_brings_body_back() {
    let dir = tempfile::tempdir().expect("tmp");
    let hot = HotTier::open(&dir.path().join("c.db")).expect("open");
    let fx = fixtures();
    hot.store_many(&fx, 1 << 22).expect("store");
    let child = &fx[1];
    let meta = stub(&hot, child);
    let rec = hot.load(child.frame_id()).expect("load").expect("found");
    assert!(rec.bundle.is_none());
    assert!(!rec.meta.is_dirty_stub(), "our own stub write is no change");
    assert_eq!(rec.stub["name"], child.frame["name"]);
    assert_eq!(rec.meta.tier, 3);
    restore(&hot, child, &meta);
    let rec = hot.load(child.frame_id()).expect("load").expect("found");
    assert_eq!(rec.bundle.map(|b| b.to_value()), Some(child.to_value()));
}

#[test]
fn writes_of_another_connection_are_seen_and_merged_into_a_stub() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("c.db");
    let hot = HotTier::open(&path).expect("open");
    let fx = fixtures();
    hot.store_many(&fx, 1 << 22).expect("store");
    let child = &fx[1];
    // A copy is taken; StackMemory writes the frame before the source is removed: no stub.
    let before = hot.meta(child.frame_id()).expect("meta").expect("some");
    let sm = rusqlite::Connection::open(&path).expect("StackMemory's connection");
    sm.execute("UPDATE frames SET name = 'renamed' WHERE frame_id = ?1", [child.frame_id()]).expect("rename");
    let d = Demotion {
        move_id: 0,
        frame_id: child.frame_id().into(),
        version: before.version,
        change_seq: before.change_seq,
        checksum: None,
        size_bytes: None,
    };
    assert!(hot.finish_demotions(&[d], Tier::Cold).expect("finish").is_empty(), "a changed frame stays hot");
    let renamed = hot.load(child.frame_id()).expect("load").expect("found").bundle.expect("body");
    // Stubbed, then StackMemory appends an event (seq counted from the empty stub), rewrites the
    // digest and adds an anchor.
    let meta = stub(&hot, &renamed);
    let fid = child.frame_id();
    sm.execute(
        "INSERT INTO events (event_id, run_id, frame_id, seq, event_type, payload, ts) VALUES ('late', 'r', ?1, 1, 'decision', '{\"x\":1}', 5)",
        [fid],
    )
    .expect("event");
    sm.execute("UPDATE frames SET digest_text = 'rewritten' WHERE frame_id = ?1", [fid]).expect("digest");
    sm.execute(
        "INSERT INTO anchors (anchor_id, frame_id, project_id, type, text) VALUES ('late-a', ?1, '', 'FACT', 'new fact')",
        [fid],
    )
    .expect("anchor");
    assert!(hot.meta(fid).expect("meta").expect("some").is_dirty_stub());
    let merged = hot.merge_local(fid, renamed.clone()).expect("merge");
    assert_eq!(merged.frame["digest_text"], Value::from("rewritten"));
    assert_eq!(merged.events.len(), renamed.events.len() + 1);
    let last = merged.events.last().expect("event");
    assert_eq!(last["event_id"], Value::from("late"));
    let max_archived = renamed.events.iter().filter_map(|e| e["seq"].as_i64()).max().unwrap_or(0);
    assert_eq!(last["seq"].as_i64(), Some(max_archived + 1));
    assert_eq!(merged.anchors.len(), renamed.anchors.len() + 1);
    // Promotion restores the merged body: the late rows are there, nothing lost.
    restore(&hot, &renamed, &meta);
    let back = hot.load(fid).expect("load").expect("found");
    assert_eq!(back.bundle.map(|b| b.to_value()), Some(merged.to_value()));
    assert!(back.meta.version > meta.version, "a merged body is a new version");
}

#[test]
fn bad_parent_and_foreign_event_ids_change_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let hot = HotTier::open(&dir.path().join("c.db")).expect("open");
    let fx = fixtures();
    hot.store_many(&fx[..1], 1 << 22).expect("store");
    let mut orphan = fx[2].clone();
    orphan.frame.insert("parent_frame_id".into(), Value::from("nope"));
    let e = hot.store_many(&[orphan], 1 << 22).expect_err("must fail");
    assert_eq!(e.code(), "ERR_INVALID_FRAME");
    let mut thief = fx[2].clone();
    thief.events[0].insert("event_id".into(), fx[0].events[0]["event_id"].clone());
    let e = hot.store_many(&[thief], 1 << 22).expect_err("must fail");
    assert!(e.to_string().contains("already belongs"), "{e}");
    assert_eq!(hot.counts().expect("c").hot.frames, 1);
    let e = hot.store_many(&fx[2..], 100).expect_err("too large");
    assert_eq!(e.code(), "ERR_FRAME_TOO_LARGE");
}

#[test]
fn the_fast_lane_gives_the_same_bundle_as_the_general_path() {
    let dir = tempfile::tempdir().expect("tmp");
    let hot = HotTier::open(&dir.path().join("c.db")).expect("open");
    let mut fx = fixtures();
    // A bundle with a shape: keys out of the column order, a key with no column, one missing.
    let v = serde_json::json!({"frame": {"name": "shaped", "frame_id": "s1", "run_id": "r", "project_id": "p",
        "type": "task", "custom": {"kept": [1, 2]}, "inputs": "{\"a\": 1}"},
        "events": [{"seq": 1, "event_id": "s1-e", "event_type": "x", "payload": {"t": "\"quoted\" é"}, "extra": true}]});
    fx.push(crate::model::normalize_bundle(v).expect("valid"));
    hot.store_many(&fx, 1 << 22).expect("store");
    for b in &fx {
        let HotBody::Json(text) = hot.body_json(b.frame_id()).expect("read") else { panic!("not hot") };
        let general = hot.load(b.frame_id()).expect("load").expect("found").bundle.expect("body").to_value();
        let fast: Value = serde_json::from_str(&text).expect("valid JSON");
        // Same values and the same key order (serde_json keeps insertion order here).
        assert_eq!(fast.to_string(), general.to_string(), "frame {}", b.frame_id());
        assert_eq!(fast, b.to_value());
    }
    assert_eq!(hot.body_json("nope").expect("read"), HotBody::Missing);
}

#[test]
fn a_failing_restore_fails_alone_and_the_rest_of_its_chunk_lands() {
    let dir = tempfile::tempdir().expect("tmp");
    let hot = HotTier::open(&dir.path().join("c.db")).expect("open");
    let fx = fixtures();
    hot.store_many(&fx, 1 << 22).expect("store");
    let (good, bad) = (&fx[1], &fx[2]);
    let (good_meta, bad_meta) = (stub(&hot, good), stub(&hot, bad));
    let mut broken = bad.clone();
    broken.frame.insert("parent_frame_id".into(), Value::String("no-such-parent".into()));
    let mut items = vec![];
    let mut sums = vec![];
    for (b, m) in [(good, &good_meta), (&broken, &bad_meta)] {
        let sum = m.checksum.clone().unwrap_or_default();
        let nm = NewMove {
            frame_id: b.frame_id().into(),
            from: 3,
            to: 1,
            checksum: Some(sum.clone()),
            version: m.version,
            change_seq: 0,
            run_id: None,
        };
        items.push((b, hot.journal_begin(&[nm]).expect("j")[0], m.version));
        sums.push(sum);
    }
    let restores: Vec<Restore<'_>> = items
        .iter()
        .zip(&sums)
        .map(|((b, mid, v), s)| Restore { bundle: b, checksum: s, version: *v, move_id: *mid })
        .collect();
    let out = hot.restore_many(&restores).expect("restore_many");
    assert!(out[0].is_ok(), "the good frame is restored: {:?}", out[0]);
    assert!(out[1].is_err(), "the broken one fails");
    let rec = hot.load(good.frame_id()).expect("load").expect("found");
    assert_eq!(rec.bundle.map(|b| b.to_value()), Some(good.to_value()));
    let rec = hot.load(bad.frame_id()).expect("load").expect("found");
    assert!(rec.bundle.is_none(), "the broken one stays a stub");
    assert_eq!(rec.meta.tier, 3);
}

#[test]
fn an_event_numbered_before_a_restore_landed_is_moved_after_the_frames_last() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("c.db");
    let hot = HotTier::open(&path).expect("open");
    let fx = fixtures();
    hot.store_many(&fx, 1 << 22).expect("store");
    let b = &fx[1];
    let other = rusqlite::Connection::open(&path).expect("StackMemory's connection");
    let max: i64 = other
        .query_row("SELECT COALESCE(MAX(seq), 0) FROM events WHERE frame_id = ?1", [b.frame_id()], |r| r.get(0))
        .expect("max");
    // StackMemory read `seq` 1 (say, from an empty stub) and inserts it after the restore landed.
    other
        .execute(
            "INSERT INTO events (event_id, run_id, frame_id, seq, event_type, payload, ts) VALUES ('late', 'r', ?1, 1, 'note', '{}', 1)",
            [b.frame_id()],
        )
        .expect("insert");
    let seqs: Vec<(String, i64)> = other
        .prepare("SELECT event_id, seq FROM events WHERE frame_id = ?1 ORDER BY seq")
        .expect("prepare")
        .query_map([b.frame_id()], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<std::result::Result<_, _>>()
        .expect("rows");
    let mut nums: Vec<i64> = seqs.iter().map(|s| s.1).collect();
    nums.dedup();
    assert_eq!(nums.len(), seqs.len(), "unique: {seqs:?}");
    assert_eq!(seqs.last(), Some(&("late".to_string(), max.max(1) + 1)), "{seqs:?}");
}
