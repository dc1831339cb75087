//! The frame model: a StackMemory frame bundle `{ frame, events, anchors }`, its validation and
//! normalisation, and the canonical bytes its checksum is taken over.
//!
//! Bundles stay `serde_json` maps rather than structs so that keys we do not know survive a round
//! trip untouched. What is normalised: JSON columns given as strings are parsed; ISO-8601 time
//! strings become integers in the unit StackMemory uses for that column (seconds, or ms for
//! `events.ts`); events are put in `seq` order. Numbers given for times are kept as given (seconds
//! or ms: StackMemory itself mixes them) and only interpreted through [`to_seconds`].

use serde_json::{Map, Value};
use xxhash_rust::xxh3::xxh3_64;

use crate::error::{Result, TierError};

pub const FRAME_COLS: &[&str] = &[
    "frame_id",
    "run_id",
    "project_id",
    "parent_frame_id",
    "depth",
    "type",
    "name",
    "state",
    "inputs",
    "outputs",
    "digest_text",
    "digest_json",
    "created_at",
    "closed_at",
    "retention_policy",
];
pub const FRAME_JSON_COLS: &[&str] = &["inputs", "outputs", "digest_json"];
pub const EVENT_COLS: &[&str] = &["event_id", "frame_id", "run_id", "seq", "event_type", "payload", "ts"];
pub const EVENT_JSON_COLS: &[&str] = &["payload"];
pub const ANCHOR_COLS: &[&str] =
    &["anchor_id", "frame_id", "project_id", "type", "text", "priority", "created_at", "metadata"];
pub const ANCHOR_JSON_COLS: &[&str] = &["metadata"];

/// Longest id we accept (frame, event, anchor, run, project ids).
pub const MAX_ID_LEN: usize = 512;
/// A time value above this is milliseconds, below it seconds (1e11 s is the year 5138).
pub const MS_THRESHOLD: i64 = 100_000_000_000;

pub type Row = Map<String, Value>;

/// Where a frame's body lives. Numbers are the seed design's tier levels (`migrate --tier 2|3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Hot = 1,
    Warm = 2,
    Cold = 3,
}

impl Tier {
    pub fn level(self) -> i64 {
        self as i64
    }
    pub fn from_level(l: i64) -> Option<Tier> {
        match l {
            1 => Some(Tier::Hot),
            2 => Some(Tier::Warm),
            3 => Some(Tier::Cold),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Hot => "hot",
            Tier::Warm => "warm",
            Tier::Cold => "cold",
        }
    }
    /// `1|2|3`, `hot|warm|cold`, `sqlite|redis|postgres` (as the CLI and JS callers spell them).
    pub fn parse(s: &str) -> Option<Tier> {
        match s.trim().to_ascii_lowercase().as_str() {
            "1" | "hot" | "sqlite" => Some(Tier::Hot),
            "2" | "warm" | "redis" => Some(Tier::Warm),
            "3" | "cold" | "postgres" | "postgresql" => Some(Tier::Cold),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    pub frame: Row,
    pub events: Vec<Row>,
    pub anchors: Vec<Row>,
}

impl Bundle {
    pub fn frame_id(&self) -> &str {
        self.frame.get("frame_id").and_then(Value::as_str).unwrap_or("")
    }
    pub fn str_field(&self, key: &str) -> Option<&str> {
        self.frame.get(key).and_then(Value::as_str)
    }
    pub fn int_field(&self, key: &str) -> Option<i64> {
        self.frame.get(key).and_then(Value::as_i64)
    }
    pub fn is_active(&self) -> bool {
        self.str_field("state") != Some("closed")
    }
    pub fn parent_id(&self) -> Option<&str> {
        self.str_field("parent_frame_id")
    }

    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("frame".into(), Value::Object(self.frame.clone()));
        m.insert("events".into(), Value::Array(self.events.iter().cloned().map(Value::Object).collect()));
        m.insert("anchors".into(), Value::Array(self.anchors.iter().cloned().map(Value::Object).collect()));
        Value::Object(m)
    }

    /// The canonical bytes of a bundle: compact JSON, keys in the bundle's own order.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Serialising a Value into a Vec cannot fail: every key is a string.
        serde_json::to_vec(&self.to_value()).unwrap_or_default()
    }

    /// Build a bundle from a value previously produced by [`Bundle::to_value`] (decoded copies).
    pub fn from_stored_value(v: Value) -> Result<Bundle> {
        normalize_bundle(v)
    }

    /// The text the full-text indexes see, by weight: (name, digest, anchors, event payloads).
    pub fn search_text(&self) -> SearchText {
        let name = self.str_field("name").unwrap_or("").to_string();
        let digest = self.str_field("digest_text").unwrap_or("").to_string();
        let anchors = self
            .anchors
            .iter()
            .filter_map(|a| a.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n");
        let mut events = String::new();
        for e in &self.events {
            if let Some(p) = e.get("payload") {
                collect_strings(p, &mut events);
            }
        }
        SearchText { name, digest, anchors, events }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchText {
    pub name: String,
    pub digest: String,
    pub anchors: String,
    pub events: String,
}

fn collect_strings(v: &Value, out: &mut String) {
    // Bounded: payload text beyond 64 KiB adds little to search and a lot to the index.
    if out.len() > 64 * 1024 {
        return;
    }
    match v {
        Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| collect_strings(x, out)),
        _ => {}
    }
}

/// xxh3-64 of the canonical bytes, as 16 hex digits.
pub fn checksum(bytes: &[u8]) -> String {
    format!("{:016x}", xxh3_64(bytes))
}

/// Interpret a StackMemory time value (seconds or ms) as seconds.
pub fn to_seconds(t: i64) -> i64 {
    if t > MS_THRESHOLD {
        t / 1000
    } else {
        t
    }
}

pub fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

enum TimeUnit {
    Seconds,
    Millis,
}

/// Validate and normalise a bundle given by a caller. Never panics on any input.
pub fn normalize_bundle(v: Value) -> Result<Bundle> {
    let Value::Object(mut top) = v else {
        return Err(TierError::invalid_frame("bundle", "must be an object { frame, events, anchors }"));
    };
    let frame = match top.remove("frame") {
        Some(Value::Object(f)) => f,
        Some(_) => return Err(TierError::invalid_frame("frame", "must be an object")),
        None => return Err(TierError::invalid_frame("frame", "is required")),
    };
    let frame = normalize_frame(frame)?;
    let frame_id = frame.get("frame_id").and_then(Value::as_str).unwrap_or("").to_string();

    let events = take_array(&mut top, "events")?;
    let anchors = take_array(&mut top, "anchors")?;

    let mut evs = Vec::with_capacity(events.len());
    let mut seen = std::collections::HashSet::new();
    for (i, e) in events.into_iter().enumerate() {
        let e = normalize_event(e, i, &frame_id)?;
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
        let a = normalize_anchor(a, i, &frame_id)?;
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

fn normalize_json_col(row: &mut Row, key: &str, path: &str) -> Result<()> {
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
        Some(_) => return Err(TierError::invalid_frame(path, "must be a number (seconds or ms) or an ISO-8601 string")),
    };
    row.insert(key.to_string(), Value::from(v));
    Ok(())
}

/// Parse `YYYY-MM-DD[THH:MM[:SS[.fff]]][Z|±HH:MM]` into Unix milliseconds.
pub fn parse_iso8601(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let (mut h, mut mi, mut sec, mut ms, mut off) = (0i64, 0i64, 0i64, 0i64, 0i64);
    let mut rest = &s[10..];
    if !rest.is_empty() {
        let first = rest.as_bytes()[0];
        if first != b'T' && first != b't' && first != b' ' {
            return None;
        }
        rest = &rest[1..];
        let rb = rest.as_bytes();
        if rb.len() < 5 || rb[2] != b':' {
            return None;
        }
        h = rest.get(0..2)?.parse().ok()?;
        mi = rest.get(3..5)?.parse().ok()?;
        rest = &rest[5..];
        if rest.starts_with(':') {
            sec = rest.get(1..3)?.parse().ok()?;
            rest = &rest[3..];
            if rest.starts_with('.') {
                let digits: String = rest[1..].chars().take_while(|c| c.is_ascii_digit()).collect();
                if digits.is_empty() {
                    return None;
                }
                let mut frac = digits.clone();
                frac.truncate(3);
                while frac.len() < 3 {
                    frac.push('0');
                }
                ms = frac.parse().ok()?;
                rest = &rest[1 + digits.len()..];
            }
        }
        match rest {
            "" | "Z" | "z" => {}
            _ => {
                let sign = match rest.as_bytes()[0] {
                    b'+' => 1,
                    b'-' => -1,
                    _ => return None,
                };
                let oh: i64 = rest.get(1..3)?.parse().ok()?;
                let om: i64 = match rest.len() {
                    3 => 0,
                    6 if rest.as_bytes()[3] == b':' => rest.get(4..6)?.parse().ok()?,
                    5 => rest.get(3..5)?.parse().ok()?,
                    _ => return None,
                };
                off = sign * (oh * 3600 + om * 60);
            }
        }
        if h > 23 || mi > 59 || sec > 60 {
            return None;
        }
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = if y2 >= 0 { y2 } else { y2 - 399 } / 400;
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let secs = days * 86400 + h * 3600 + mi * 60 + sec - off;
    if secs < 0 {
        return None;
    }
    Some(secs * 1000 + ms)
}

fn normalize_frame(mut f: Row) -> Result<Row> {
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
        normalize_json_col(&mut f, c, &format!("frame.{c}"))?;
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

fn normalize_event(v: Value, i: usize, frame_id: &str) -> Result<Row> {
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
    normalize_json_col(&mut e, "payload", &p("payload"))?;
    normalize_time(&mut e, "ts", &p("ts"), TimeUnit::Millis)?;
    Ok(e)
}

fn normalize_anchor(v: Value, i: usize, frame_id: &str) -> Result<Row> {
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
    normalize_json_col(&mut a, "metadata", &p("metadata"))?;
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
        let text = include_str!("../__test__/fixtures/frames.json");
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
            (json!({"frame": {"frame_id": "f", "run_id": "r", "project_id": "p", "type": "t", "name": "n", "state": "open"}}), "frame.state"),
            (json!({"frame": {"frame_id": "f", "run_id": "r", "project_id": "p", "type": "t", "name": "n", "inputs": "{nope"}}), "frame.inputs"),
            (json!({"frame": {"frame_id": "f", "run_id": "r", "project_id": "p", "type": "t", "name": "n", "created_at": "yesterday"}}), "frame.created_at"),
            (json!({"frame": {"frame_id": "f", "run_id": "r", "project_id": "p", "type": "t", "name": "n"}, "events": [{"event_id": "e", "frame_id": "other", "seq": 1, "event_type": "x"}]}), "events[0].frame_id"),
            (json!({"frame": {"frame_id": "f", "run_id": "r", "project_id": "p", "type": "t", "name": "n"}, "events": [{"event_id": "e", "event_type": "x"}]}), "events[0].seq"),
            (json!({"frame": {"frame_id": "f", "run_id": "r", "project_id": "p", "type": "t", "name": "n"}, "events": [{"event_id": "e", "seq": 1, "event_type": "x"}, {"event_id": "e", "seq": 2, "event_type": "x"}]}), "events[1].event_id"),
            (json!({"frame": {"frame_id": "f", "run_id": "r", "project_id": "p", "type": "t", "name": "n", "tier_status": "hot"}}), "frame"),
        ];
        for (v, field) in cases {
            match normalize_bundle(v.clone()) {
                Err(TierError::InvalidFrame { field: f, .. }) => assert_eq!(f, field, "for {v}"),
                other => panic!("expected InvalidFrame for {v}, got {other:?}"),
            }
        }
    }

    #[test]
    fn seconds_and_millis() {
        assert_eq!(to_seconds(1767960000), 1767960000);
        assert_eq!(to_seconds(1767960000123), 1767960000);
        assert_eq!(parse_iso8601("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_iso8601("2026-01-09T13:00:00+01:00"), Some(1767960000000));
        assert_eq!(parse_iso8601("not a date"), None);
    }
}
