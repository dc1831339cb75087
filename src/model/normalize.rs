//! Validation and normalisation of a caller's bundle: named-field errors, JSON text parsed,
//! ISO-8601 times converted, events in `seq` order, unknown keys kept. Never panics on any input.

use serde_json::Value;

use super::error::{Result, TierError};
use super::frame::{Bundle, Row, FRAME_JSON_COLS, MAX_ID_LEN};
use super::units::parse_iso8601;

enum TimeUnit {
    Seconds,
    Millis,
}

/// Where a bundle comes from, which decides what a string in a JSON column is.
#[derive(Clone, Copy)]
enum Source {
    /// A caller (StackMemory hands its rows over): a string in a JSON column is the column's JSON
    /// text, and is parsed.
    Caller,
    /// A copy we stored (Redis, PostgreSQL, a journal): JSON columns hold the values normalising
    /// gave. Parsing a string there again would change it (`"\"x\""` became `"x"`) or refuse it
    /// (a payload whose JSON was the string `"done"`), and the frame could not be read back.
    Stored,
}

/// Validate and normalise a bundle given by a caller. Never panics on any input.
pub fn normalize_bundle(v: Value) -> Result<Bundle> {
    normalize(v, Source::Caller)
}

/// Validate a bundle we stored ([`Bundle::to_value`] of a normalised one): the same checks, and
/// JSON columns taken as the values they are. `normalize_stored(b.to_value())` is `b`.
pub(crate) fn normalize_stored(v: Value) -> Result<Bundle> {
    normalize(v, Source::Stored)
}

fn normalize(v: Value, source: Source) -> Result<Bundle> {
    let Value::Object(mut top) = v else {
        return Err(TierError::invalid_frame("bundle", "must be an object { frame, events, anchors }"));
    };
    let frame = match top.remove("frame") {
        Some(Value::Object(f)) => f,
        Some(_) => return Err(TierError::invalid_frame("frame", "must be an object")),
        None => return Err(TierError::invalid_frame("frame", "is required")),
    };
    let frame = normalize_frame(frame, source)?;
    let frame_id = frame.get("frame_id").and_then(Value::as_str).unwrap_or("").to_string();

    let events = take_array(&mut top, "events")?;
    let anchors = take_array(&mut top, "anchors")?;

    let mut evs = Vec::with_capacity(events.len());
    let mut seen = std::collections::HashSet::new();
    for (i, e) in events.into_iter().enumerate() {
        let e = normalize_event(e, i, &frame_id, source)?;
        let id = e.get("event_id").and_then(Value::as_str).unwrap_or("").to_string();
        if !seen.insert(id.clone()) {
            return Err(TierError::invalid_frame(format!("events[{i}].event_id"), format!("duplicate id {id}")));
        }
        evs.push(e);
    }
    // Stable sort: events come back in seq order, ties in the order given.
    evs.sort_by_key(|e| e.get("seq").and_then(Value::as_i64).unwrap_or(i64::MAX));

    let mut ans = Vec::with_capacity(anchors.len());
    seen.clear();
    for (i, a) in anchors.into_iter().enumerate() {
        let a = normalize_anchor(a, i, &frame_id, source)?;
        let id = a.get("anchor_id").and_then(Value::as_str).unwrap_or("").to_string();
        if !seen.insert(id.clone()) {
            return Err(TierError::invalid_frame(format!("anchors[{i}].anchor_id"), format!("duplicate id {id}")));
        }
        ans.push(a);
    }
    Ok(Bundle { frame, events: evs, anchors: ans })
}

fn take_array(top: &mut Row, key: &str) -> Result<Vec<Value>> {
    match top.remove(key) {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(TierError::invalid_frame(key, "must be an array")),
    }
}

fn check_id(row: &Row, key: &str, path: &str, required: bool) -> Result<()> {
    match row.get(key) {
        Some(Value::String(s)) => {
            if s.is_empty() && required {
                return Err(TierError::invalid_frame(path, "must be a non-empty string"));
            }
            if s.len() > MAX_ID_LEN {
                return Err(TierError::invalid_frame(path, format!("longer than {MAX_ID_LEN} characters")));
            }
            if s.chars().any(|c| c.is_control()) {
                return Err(TierError::invalid_frame(path, "contains control characters"));
            }
            Ok(())
        }
        None | Some(Value::Null) if !required => Ok(()),
        None | Some(Value::Null) => Err(TierError::invalid_frame(path, "is required")),
        Some(_) => Err(TierError::invalid_frame(path, "must be a string")),
    }
}

fn check_string(row: &Row, key: &str, path: &str, required: bool) -> Result<()> {
    match row.get(key) {
        Some(Value::String(_)) => Ok(()),
        None | Some(Value::Null) if !required => Ok(()),
        None | Some(Value::Null) => Err(TierError::invalid_frame(path, "is required")),
        Some(_) => Err(TierError::invalid_frame(path, "must be a string")),
    }
}

fn check_int(row: &mut Row, key: &str, path: &str, min: i64, max: i64) -> Result<()> {
    match row.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Number(n)) => {
            let v = if let Some(i) = n.as_i64() {
                i
            } else {
                match n.as_f64() {
                    Some(f) if f.is_finite() && f.fract() == 0.0 => f as i64,
                    _ => return Err(TierError::invalid_frame(path, "must be an integer")),
                }
            };
            if v < min || v > max {
                return Err(TierError::invalid_frame(path, format!("must be between {min} and {max}")));
            }
            row.insert(key.to_string(), Value::from(v));
            Ok(())
        }
        Some(_) => Err(TierError::invalid_frame(path, "must be an integer")),
    }
}

fn normalize_json_col(row: &mut Row, key: &str, path: &str, source: Source) -> Result<()> {
    if matches!(source, Source::Stored) {
        return Ok(());
    }
    if let Some(Value::String(s)) = row.get(key) {
        let parsed: Value = serde_json::from_str(s)
            .map_err(|e| TierError::invalid_frame(path, format!("is a string but not JSON ({e})")))?;
        row.insert(key.to_string(), parsed);
    }
    Ok(())
}

fn normalize_time(row: &mut Row, key: &str, path: &str, unit: TimeUnit) -> Result<()> {
    let v = match row.get(key) {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Number(n)) => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if !f.is_finite() || f < 0.0 {
                return Err(TierError::invalid_frame(path, "must be a non-negative time (seconds or ms)"));
            }
            if n.is_i64() || n.is_u64() {
                if n.as_i64().is_none() {
                    return Err(TierError::invalid_frame(path, "is out of range"));
                }
                return Ok(());
            }
            // Fractional seconds (Date.now() / 1000) are truncated: the column is INTEGER.
            f.trunc() as i64
        }
        Some(Value::String(s)) => {
            let secs_ms = parse_iso8601(s).ok_or_else(|| {
                TierError::invalid_frame(path, "must be a number (seconds or ms) or an ISO-8601 string")
            })?;
            match unit {
                TimeUnit::Seconds => secs_ms / 1000,
                TimeUnit::Millis => secs_ms,
            }
        }
        Some(_) => {
            return Err(TierError::invalid_frame(path, "must be a number (seconds or ms) or an ISO-8601 string"))
        }
    };
    row.insert(key.to_string(), Value::from(v));
    Ok(())
}

fn normalize_frame(mut f: Row, source: Source) -> Result<Row> {
    check_id(&f, "frame_id", "frame.frame_id", true)?;
    check_id(&f, "run_id", "frame.run_id", true)?;
    check_id(&f, "project_id", "frame.project_id", false)?;
    if !f.contains_key("project_id") {
        return Err(TierError::invalid_frame("frame.project_id", "is required"));
    }
    check_id(&f, "parent_frame_id", "frame.parent_frame_id", false)?;
    if f.get("parent_frame_id").and_then(Value::as_str) == f.get("frame_id").and_then(Value::as_str) {
        return Err(TierError::invalid_frame("frame.parent_frame_id", "a frame cannot be its own parent"));
    }
    check_string(&f, "type", "frame.type", true)?;
    check_string(&f, "name", "frame.name", true)?;
    match f.get("state") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == "active" || s == "closed" => {}
        Some(_) => return Err(TierError::invalid_frame("frame.state", "must be 'active' or 'closed'")),
    }
    check_int(&mut f, "depth", "frame.depth", 0, 100_000)?;
    check_string(&f, "digest_text", "frame.digest_text", false)?;
    check_string(&f, "retention_policy", "frame.retention_policy", false)?;
    for c in FRAME_JSON_COLS {
        normalize_json_col(&mut f, c, &format!("frame.{c}"), source)?;
    }
    normalize_time(&mut f, "created_at", "frame.created_at", TimeUnit::Seconds)?;
    normalize_time(&mut f, "closed_at", "frame.closed_at", TimeUnit::Seconds)?;
    if is_reserved_key(&f) {
        return Err(TierError::invalid_frame(
            "frame",
            "tier_status, last_accessed and access_count are kept by the tier manager and cannot be stored",
        ));
    }
    Ok(f)
}

/// Our bookkeeping columns on `frames` must not be smuggled in through a bundle.
fn is_reserved_key(f: &Row) -> bool {
    ["tier_status", "last_accessed", "access_count"].iter().any(|k| f.contains_key(*k))
}

fn normalize_event(v: Value, i: usize, frame_id: &str, source: Source) -> Result<Row> {
    let Value::Object(mut e) = v else {
        return Err(TierError::invalid_frame(format!("events[{i}]"), "must be an object"));
    };
    let p = |k: &str| format!("events[{i}].{k}");
    check_id(&e, "event_id", &p("event_id"), true)?;
    check_frame_ref(&e, frame_id, &p("frame_id"))?;
    check_id(&e, "run_id", &p("run_id"), false)?;
    if e.get("seq").is_none_or(Value::is_null) {
        // StackMemory orders a frame's events by seq (NOT NULL in its schema).
        return Err(TierError::invalid_frame(p("seq"), "is required: the event's 1-based position in its frame"));
    }
    check_int(&mut e, "seq", &p("seq"), 0, i64::MAX)?;
    check_string(&e, "event_type", &p("event_type"), true)?;
    normalize_json_col(&mut e, "payload", &p("payload"), source)?;
    normalize_time(&mut e, "ts", &p("ts"), TimeUnit::Millis)?;
    Ok(e)
}

fn normalize_anchor(v: Value, i: usize, frame_id: &str, source: Source) -> Result<Row> {
    let Value::Object(mut a) = v else {
        return Err(TierError::invalid_frame(format!("anchors[{i}]"), "must be an object"));
    };
    let p = |k: &str| format!("anchors[{i}].{k}");
    check_id(&a, "anchor_id", &p("anchor_id"), true)?;
    check_frame_ref(&a, frame_id, &p("frame_id"))?;
    check_id(&a, "project_id", &p("project_id"), false)?;
    check_string(&a, "type", &p("type"), true)?;
    check_string(&a, "text", &p("text"), true)?;
    check_int(&mut a, "priority", &p("priority"), i64::MIN, i64::MAX)?;
    normalize_time(&mut a, "created_at", &p("created_at"), TimeUnit::Seconds)?;
    normalize_json_col(&mut a, "metadata", &p("metadata"), source)?;
    Ok(a)
}

fn check_frame_ref(row: &Row, frame_id: &str, path: &str) -> Result<()> {
    match row.get("frame_id") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if s == frame_id => Ok(()),
        Some(_) => Err(TierError::invalid_frame(path, format!("must be the bundle's frame_id ({frame_id})"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture() -> Vec<Value> {
        let text = include_str!("../../__test__/fixtures/frames.json");
        match serde_json::from_str(text) {
            Ok(Value::Array(a)) => a,
            _ => panic!("fixture is not an array"),
        }
    }

    #[test]
    fn fixtures_normalize_to_themselves() {
        for b in fixture() {
            let n = normalize_bundle(b.clone()).expect("valid");
            assert_eq!(n.to_value(), b);
            // Normalising twice is the identity, so checksums are stable across moves.
            let again = normalize_bundle(n.to_value()).expect("valid");
            assert_eq!(again.canonical_bytes(), n.canonical_bytes());
        }
    }

    /// A payload whose JSON is a string (StackMemory's column text `"done"`) normalises to the
    /// string `done`; a copy of it read back from Redis or PostgreSQL must not be parsed again
    /// (it was refused: `done` is not JSON, and `"\"x\""` became `x`). Found by the normalize
    /// property (seed e470b05f, kept in proptest-regressions/).
    #[test]
    fn a_stored_copy_is_not_parsed_again() {
        for (text, value) in [("\"done\"", json!("done")), ("\"\\\"x\\\"\"", json!("\"x\"")), ("\"[1]\"", json!("[1]"))]
        {
            let b = json!({"frame": {"frame_id": "f1", "run_id": "r", "project_id": "p", "type": "task", "name": "n"},
                "events": [{"event_id": "e1", "seq": 1, "event_type": "x", "payload": text}]});
            let n = normalize_bundle(b).expect("valid");
            assert_eq!(n.events[0]["payload"], value);
            let back = Bundle::from_stored_value(n.to_value()).expect("a stored copy reads back");
            assert_eq!(back.canonical_bytes(), n.canonical_bytes());
        }
    }

    #[test]
    fn json_strings_are_parsed_and_iso_times_converted() {
        let b = json!({"frame": {"frame_id": "f1", "run_id": "r", "project_id": "p", "type": "task",
            "name": "n", "inputs": "{\"a\":1}", "created_at": "2026-01-09T12:00:00Z"},
            "events": [{"event_id": "e2", "seq": 2, "event_type": "x", "ts": "2026-01-09T12:00:01.5Z"},
                       {"event_id": "e1", "seq": 1, "event_type": "x", "payload": "[1,2]"}]});
        let n = normalize_bundle(b).expect("valid");
        assert_eq!(n.frame["inputs"], json!({"a": 1}));
        assert_eq!(n.frame["created_at"], json!(1767960000));
        assert_eq!(n.events[0]["event_id"], json!("e1"));
        assert_eq!(n.events[0]["payload"], json!([1, 2]));
        assert_eq!(n.events[1]["ts"], json!(1767960001500i64));
    }

    #[test]
    fn bad_input_names_the_field() {
        let cases = vec![
            (json!(1), "bundle"),
            (json!({}), "frame"),
            (json!({"frame": {"run_id": "r", "project_id": "p", "type": "t", "name": "n"}}), "frame.frame_id"),
            (json!({"frame": {"frame_id": "f", "project_id": "p", "type": "t", "name": "n"}}), "frame.run_id"),
            (
                json!({"frame": {"frame_id": "f", "run_id": "r", "project_id": "p", "type": "t", "name": "n", "state": "open"}}),
                "frame.state",
            ),
            (
                json!({"frame": {"frame_id": "f", "run_id": "r", "project_id": "p", "type": "t", "name": "n", "inputs": "{nope"}}),
                "frame.inputs",
            ),
            (
                json!({"frame": {"frame_id": "f", "run_id": "r", "project_id": "p", "type": "t", "name": "n", "created_at": "yesterday"}}),
                "frame.created_at",
            ),
            (
                json!({"frame": {"frame_id": "f", "run_id": "r", "project_id": "p", "type": "t", "name": "n"}, "events": [{"event_id": "e", "frame_id": "other", "seq": 1, "event_type": "x"}]}),
                "events[0].frame_id",
            ),
            (
                json!({"frame": {"frame_id": "f", "run_id": "r", "project_id": "p", "type": "t", "name": "n"}, "events": [{"event_id": "e", "event_type": "x"}]}),
                "events[0].seq",
            ),
            (
                json!({"frame": {"frame_id": "f", "run_id": "r", "project_id": "p", "type": "t", "name": "n"}, "events": [{"event_id": "e", "seq": 1, "event_type": "x"}, {"event_id": "e", "seq": 2, "event_type": "x"}]}),
                "events[1].event_id",
            ),
            (
                json!({"frame": {"frame_id": "f", "run_id": "r", "project_id": "p", "type": "t", "name": "n", "tier_status": "hot"}}),
                "frame",
            ),
        ];
        for (v, field) in cases {
            match normalize_bundle(v.clone()) {
                Err(TierError::InvalidFrame { field: f, .. }) => assert_eq!(f, field, "for {v}"),
                other => panic!("expected InvalidFrame for {v}, got {other:?}"),
            }
        }
    }
}
