//! Property tests of the hot tier's full-text search against a real SQLite file (FTS5, and LIKE
//! for a file without StackMemory's FTS table): any tokens (unicode, quotes, FTS5 operators and
//! syntax, NUL), any project id and limit must give hits or none, never an SQLite error or panic.

use std::sync::LazyLock;

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::Value;

use super::HotTier;
use crate::model::normalize_bundle;
use crate::prop_kit::{check, text};

/// What FTS5's query language and SQLite's LIKE treat specially, plus words the fixtures hold.
const SYNTAX: &[&str] = &[
    "\"",
    "\"\"",
    "'",
    "*",
    "^",
    ":",
    "-",
    "+",
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    ",",
    ".",
    "AND",
    "OR",
    "NOT",
    "NEAR",
    "NEAR(",
    "name:",
    "frames_fts",
    "rank",
    "bm25",
    "%",
    "_",
    "\\",
    "\0",
    "\u{0}x",
    "logouts",
    "random",
    "fix",
    "refresh",
    "\u{1F600}",
    "\u{00e9}",
    "\u{0301}",
    " ",
    "",
];

fn token() -> impl Strategy<Value = String> {
    let piece = prop_oneof![select(SYNTAX).prop_map(str::to_string), text()];
    prop::collection::vec(piece, 1..4).prop_map(|p| p.concat())
}

fn search_input() -> impl Strategy<Value = (Vec<String>, Option<String>, u32)> {
    let project = prop::option::of(prop_oneof![Just("git-github-com-acme-widget-service".to_string()), text()]);
    let limit = prop_oneof![0u32..20, any::<u32>()];
    (prop::collection::vec(token(), 0..6), project, limit)
}

/// A file holding the fixtures: with StackMemory's FTS table, or without (the LIKE path).
fn hot_with_fixtures(fts: bool) -> (tempfile::TempDir, HotTier) {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("context.db");
    if !fts {
        let hot = HotTier::open(&path).expect("open");
        drop(hot);
        let c = rusqlite::Connection::open(&path).expect("sqlite");
        c.execute_batch(
            "DROP TRIGGER frames_ai; DROP TRIGGER frames_ad; DROP TRIGGER frames_au; DROP TABLE frames_fts",
        )
        .expect("drop fts");
    }
    let hot = HotTier::open(&path).expect("open");
    assert_eq!(hot.has_fts, fts);
    let v: Value = serde_json::from_str(include_str!("../../../__test__/fixtures/frames.json")).expect("json");
    let b: Vec<_> = v.as_array().expect("array").iter().map(|b| normalize_bundle(b.clone()).expect("valid")).collect();
    hot.store_many(&b, 1 << 22).expect("store");
    (dir, hot)
}

static FTS: LazyLock<(tempfile::TempDir, HotTier)> = LazyLock::new(|| hot_with_fixtures(true));
static LIKE: LazyLock<(tempfile::TempDir, HotTier)> = LazyLock::new(|| hot_with_fixtures(false));

#[test]
fn fts_search_takes_any_tokens() {
    let hot = &FTS.1;
    assert!(!hot.search(&["logouts".into()], None, 10).expect("search").is_empty(), "the fixture is found");
    check("search: hot FTS5", file!(), 5000, search_input(), |(tokens, project, limit)| {
        let r = hot.search(&tokens, project.as_deref(), limit);
        prop_assert!(r.is_ok(), "{:?} for {tokens:?}", r.err());
        Ok(())
    });
}

#[test]
fn like_search_takes_any_tokens() {
    let hot = &LIKE.1;
    assert!(!hot.search(&["logouts".into()], None, 10).expect("search").is_empty(), "the fixture is found");
    check("search: hot LIKE", file!(), 2000, search_input(), |(tokens, project, limit)| {
        let r = hot.search(&tokens, project.as_deref(), limit);
        prop_assert!(r.is_ok(), "{:?} for {tokens:?}", r.err());
        Ok(())
    });
}

/// Found by fuzzing: a NUL inside a token ended FTS5's query inside its quotes, and the search
/// failed with SQLite's "unterminated string" (ERR_STORAGE). NUL now separates words.
#[test]
fn a_nul_in_a_token_is_a_separator() {
    let hot = &FTS.1;
    for t in ["\0", "logouts\0", "\0logouts", "random\0logouts"] {
        let hits = hot.search(&[t.to_string()], None, 10).expect("search");
        assert_eq!(hits.is_empty(), t == "\0", "{t:?}");
    }
}
