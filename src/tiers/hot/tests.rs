//! The hot tier against real SQLite files: exact round trips, stubs and restores, bad input.
use serde_json::Value;

use super::*;
use crate::model::normalize_bundle;
use crate::model::{Bundle, Tier};

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

#[test]
fn stub_keeps_tree_and_restore_brings_body_back() {
    let dir = tempfile::tempdir().expect("tmp");
    let hot = HotTier::open(&dir.path().join("c.db")).expect("open");
    let fx = fixtures();
    hot.store_many(&fx, 1 << 22).expect("store");
    let child = &fx[1];
    let meta = hot.meta(child.frame_id()).expect("meta").expect("some");
    let mid = hot.journal_begin(&[(child.frame_id().into(), 1, 3, meta.checksum.clone(), meta.version)]).expect("j")[0];
    let done = hot.finish_demotions(&[(mid, child.frame_id().into(), meta.version)], Tier::Cold).expect("stub");
    assert_eq!(done.len(), 1);
    let rec = hot.load(child.frame_id()).expect("load").expect("found");
    assert!(rec.bundle.is_none());
    assert_eq!(rec.stub["name"], child.frame["name"]);
    assert_eq!(rec.meta.tier, 3);
    let mid2 =
        hot.journal_begin(&[(child.frame_id().into(), 3, 1, meta.checksum.clone(), meta.version)]).expect("j")[0];
    hot.restore(child, meta.checksum.as_deref().unwrap_or(""), meta.version, mid2).expect("restore");
    let rec = hot.load(child.frame_id()).expect("load").expect("found");
    assert_eq!(rec.bundle.map(|b| b.to_value()), Some(child.to_value()));
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
