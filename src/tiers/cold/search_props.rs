//! Property tests of the archive's search against the test PostgreSQL (`TEST_DATABASE_URL`), on a
//! schema of its own that is dropped after: any query text (unicode, quotes, `websearch_to_tsquery`
//! syntax, NUL, long words, up to and past `MAX_QUERY_BYTES`) gives hits, or `ERR_INVALID_ARGUMENT`
//! for what the caller can fix, never a server error, and `rank_texts` always answers.

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::json;

use super::tests::{cfg_for, fresh_schema};
use super::{archive_row, ColdTier};
use crate::model::codec::encode;
use crate::model::frame::MAX_QUERY_BYTES;
use crate::model::{normalize_bundle, TierError};
use crate::prop_kit::{check, text};

/// What `websearch_to_tsquery` and `to_tsquery` treat specially, plus words the archive holds.
const SYNTAX: &[&str] = &[
    "\"",
    "'",
    "-",
    "or",
    "OR",
    "and",
    "&",
    "|",
    "!",
    "<->",
    "<2>",
    ":*",
    ":A",
    "(",
    ")",
    "\\",
    "\0",
    "*",
    " ",
    "logout",
    "retry",
    "backoff",
    "the",
    "a",
    "\u{1F600}",
    "\u{00e9}",
    "\u{0301}",
];

fn query() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => select(SYNTAX).prop_map(str::to_string),
        4 => text(),
        1 => (1usize..3000).prop_map(|n| "w".repeat(n)),
        1 => (1usize..1500).prop_map(|n| "ab ".repeat(n)),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|p| p.concat())
}

/// The caller's mistakes the tier names itself, before asking the server.
fn callers_fault(q: &str, project: Option<&str>) -> bool {
    q.trim().is_empty() || q.contains('\0') || q.len() > MAX_QUERY_BYTES || project.is_some_and(|p| p.contains('\0'))
}

#[test]
fn archive_search_takes_any_query() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let t: ColdTier =
        rt.block_on(ColdTier::connect(&cfg_for(&fresh_schema()))).expect("connect to the test PostgreSQL");
    let rows: Vec<_> = (0..5)
        .map(|i| {
            let b = normalize_bundle(json!({
                "frame": {"frame_id": format!("f{i}"), "run_id": "r", "project_id": "p", "type": "task",
                          "name": format!("fix logout {i}"), "digest_text": "retry with backoff"},
                "events": [{"event_id": "e1", "seq": 1, "event_type": "note", "payload": {"text": "the token expired"}}]
            }))
            .expect("valid");
            let enc = encode(&b, 3).expect("encode");
            archive_row(&b, &enc, 1, 3, 0, None)
        })
        .collect();
    rt.block_on(t.upsert_many(&rows)).expect("upsert");
    let texts = vec![crate::model::SearchText {
        name: "fix logout".into(),
        digest: "retry".into(),
        anchors: String::new(),
        events: "token".into(),
    }];
    let project = prop::option::of(prop_oneof![Just("p".to_string()), text()]);
    let s = (query(), project, prop_oneof![0u32..20, any::<u32>()]);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        check("search: archive websearch_to_tsquery", file!(), 500, s, |(q, project, limit)| {
            let hits = rt.block_on(t.search(&q, project.as_deref(), limit));
            match hits {
                Ok(_) => prop_assert!(!callers_fault(&q, project.as_deref()) || limit == 0),
                Err(TierError::InvalidArgument { .. }) if callers_fault(&q, project.as_deref()) => {}
                Err(e) => prop_assert!(false, "{e:?} for {q:?}"),
            }
            let ranks = rt.block_on(t.rank_texts(&q, &texts));
            prop_assert!(ranks.as_ref().is_ok_and(|r| r.len() == 1), "{ranks:?} for {q:?}");
            Ok(())
        })
    }));
    rt.block_on(t.drop_schema()).expect("drop");
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}
