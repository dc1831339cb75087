//! A StackMemory frame bundle `{ frame, events, anchors }`: its columns, its canonical bytes (what
//! checksums are taken over) and the text search indexes see.
//!
//! Bundles stay `serde_json` maps rather than structs so that keys we do not know survive a round
//! trip untouched (see `normalize.rs` for what is normalised). Numbers given for times are kept as
//! given (seconds or ms: StackMemory itself mixes them) and only interpreted through
//! [`super::units::to_seconds`].

use serde_json::{Map, Value};
use xxhash_rust::xxh3::xxh3_64;

use super::error::Result;
use super::normalize::normalize_stored;

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

pub type Row = Map<String, Value>;

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

    /// The bundle as JSON text (its canonical bytes), as reads hand it to JS.
    pub fn json_text(&self) -> String {
        // Serialising a Value cannot fail: every key is a string.
        serde_json::to_string(&self.to_value()).unwrap_or_default()
    }

    /// The canonical bytes of a bundle: compact JSON, keys in the bundle's own order.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Serialising a Value into a Vec cannot fail: every key is a string.
        serde_json::to_vec(&self.to_value()).unwrap_or_default()
    }

    /// Build a bundle from a value previously produced by [`Bundle::to_value`] (decoded copies).
    pub fn from_stored_value(v: Value) -> Result<Bundle> {
        normalize_stored(v)
    }

    /// The text the full-text indexes see, by weight: (name, digest, anchors, event payloads).
    pub fn search_text(&self) -> SearchText {
        let name = self.str_field("name").unwrap_or("").to_string();
        let digest = self.str_field("digest_text").unwrap_or("").to_string();
        let anchors =
            self.anchors.iter().filter_map(|a| a.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n");
        let mut events = String::new();
        for e in &self.events {
            if let Some(p) = e.get("payload") {
                collect_strings(p, &mut events);
            }
        }
        SearchText { name, digest, anchors, events }
    }
}

/// Longest search query, in bytes, in every tier (one limit, checked once by the manager and again
/// by each tier that parses it).
pub const MAX_QUERY_BYTES: usize = 4096;

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
