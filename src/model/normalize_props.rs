//! Property tests of `normalize_bundle` over arbitrary JSON and over valid bundles with fields
//! replaced, removed or added: it must answer `Ok` or `ERR_INVALID_FRAME` naming a field, never
//! panic; an `Ok` bundle read back as a stored copy (`Bundle::from_stored_value`, as moves do) is
//! itself (checksums stay stable across moves) and survives the envelope unchanged.

use std::sync::LazyLock;

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;

use super::codec::{decode_bundle, encode};
use super::frame::{ANCHOR_COLS, EVENT_COLS, FRAME_COLS};
use super::{normalize_bundle, TierError};
use crate::prop_kit::{check, json, text};

const BUNDLE_KEYS: &[&str] = &[
    "frame",
    "events",
    "anchors",
    "frame_id",
    "run_id",
    "project_id",
    "parent_frame_id",
    "type",
    "name",
    "state",
    "depth",
    "inputs",
    "outputs",
    "digest_json",
    "digest_text",
    "created_at",
    "closed_at",
    "event_id",
    "seq",
    "event_type",
    "payload",
    "ts",
    "anchor_id",
    "text",
    "priority",
    "metadata",
    "tier_status",
];

static FIXTURES: LazyLock<Vec<Value>> =
    LazyLock::new(|| match serde_json::from_str(include_str!("../../__test__/fixtures/frames.json")) {
        Ok(Value::Array(a)) => a,
        _ => panic!("fixture is not an array"),
    });

/// `Ok` or a named-field `InvalidFrame`; an `Ok` bundle is a fixed point and round trips.
fn holds(v: Value) -> Result<(), TestCaseError> {
    match normalize_bundle(v) {
        Ok(b) => {
            let again = crate::model::Bundle::from_stored_value(b.to_value());
            prop_assert!(again.is_ok(), "normalised output refused: {:?}\n{}", again, b.to_value());
            let again = again.map_err(|e| TestCaseError::fail(e.to_string()))?;
            let (first, second) = (b.canonical_bytes(), again.canonical_bytes());
            prop_assert_eq!(String::from_utf8_lossy(&second), String::from_utf8_lossy(&first));
            let env = encode(&b, 1).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back = decode_bundle(b.frame_id(), "cold", &env.bytes);
            let back = back.map(|x| String::from_utf8_lossy(&x.canonical_bytes()).into_owned());
            prop_assert_eq!(back, Ok(String::from_utf8_lossy(&first).into_owned()));
        }
        Err(TierError::InvalidFrame { field, message }) => {
            prop_assert!(!field.is_empty() && !message.is_empty());
        }
        Err(e) => prop_assert!(false, "not ERR_INVALID_FRAME: {e:?}"),
    }
    Ok(())
}

#[test]
fn arbitrary_json_is_normalised_or_refused_by_field() {
    check("normalize: arbitrary JSON", file!(), 5000, json(BUNDLE_KEYS), holds);
}

/// Where a mutation lands: the frame, an event or an anchor (by index), and which key.
#[derive(Debug, Clone)]
enum Spot {
    Frame,
    Event(Index),
    Anchor(Index),
    Top,
}

fn spot() -> impl Strategy<Value = Spot> {
    prop_oneof![
        3 => Just(Spot::Frame),
        2 => any::<Index>().prop_map(Spot::Event),
        2 => any::<Index>().prop_map(Spot::Anchor),
        1 => Just(Spot::Top),
    ]
}

fn field_key() -> impl Strategy<Value = String> {
    let known: Vec<&str> = FRAME_COLS.iter().chain(EVENT_COLS).chain(ANCHOR_COLS).copied().collect();
    prop_oneof![4 => proptest::sample::select(known).prop_map(str::to_string), 1 => text()]
}

/// `None`: remove the key.
fn new_value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![1 => Just(None), 6 => json(BUNDLE_KEYS).prop_map(Some)]
}

fn mutate(v: &mut Value, spot: &Spot, key: &str, value: Option<Value>) {
    let target = match spot {
        Spot::Top => Some(&mut *v),
        Spot::Frame => v.get_mut("frame"),
        Spot::Event(i) => v.get_mut("events").and_then(Value::as_array_mut).and_then(|a| {
            let n = a.len();
            (n > 0).then(|| &mut a[i.index(n)])
        }),
        Spot::Anchor(i) => v.get_mut("anchors").and_then(Value::as_array_mut).and_then(|a| {
            let n = a.len();
            (n > 0).then(|| &mut a[i.index(n)])
        }),
    };
    let key = match spot {
        Spot::Top => ["frame", "events", "anchors"][key.len() % 3],
        _ => key,
    };
    if let Some(Value::Object(o)) = target {
        match value {
            Some(x) => o.insert(key.to_string(), x),
            None => o.remove(key),
        };
    }
}

#[test]
fn mutated_valid_bundles_are_normalised_or_refused_by_field() {
    let n = FIXTURES.len();
    let s = (0..n, prop::collection::vec((spot(), field_key(), new_value()), 1..4));
    check("normalize: mutated valid bundles", file!(), 4000, s, |(which, edits)| {
        let mut v = FIXTURES[which].clone();
        for (spot, key, value) in edits {
            mutate(&mut v, &spot, &key, value);
        }
        holds(v)
    });
}

/// ISO-8601 times with a sign where a two-digit field belongs (`T-1:00`, `+01:+5`) are refused,
/// never read as some other time.
#[test]
fn a_signed_time_field_is_refused() {
    let field = || prop_oneof![3 => "[0-5][0-9]", 1 => "[+-][0-9]"];
    let s = (field(), field(), field(), field(), field(), prop::bool::ANY);
    check("normalize: signed ISO-8601 fields", file!(), 2000, s, |(h, m, sec, oh, om, colon)| {
        let signed = [&h, &m, &sec, &oh, &om].iter().any(|f| f.starts_with(['+', '-']));
        let t = format!("2026-01-09T{h}:{m}:{sec}+{oh}{}{om}", if colon { ":" } else { "" });
        let mut v = FIXTURES[0].clone();
        v["frame"]["created_at"] = Value::from(t.clone());
        match normalize_bundle(v) {
            Err(TierError::InvalidFrame { field, .. }) => prop_assert!(signed || field == "frame.created_at", "{t}"),
            Ok(_) => prop_assert!(!signed, "{t} accepted"),
            Err(e) => prop_assert!(false, "{e:?} for {t}"),
        }
        if signed {
            prop_assert_eq!(super::units::parse_iso8601(&t), None, "{}", t);
        }
        Ok(())
    });
}
