//! The read path's fast lane: a hot frame's rows straight to the bundle's JSON text, with its JSON
//! columns spliced in as stored (validated, never parsed into values and serialised again), in
//! three statements on a connection of its own, in the key order the bundle was stored with (its
//! *shape*, see `rows.rs`). The caller hands the text to `JSON.parse`, which is how better-sqlite3
//! users read these rows too.

use std::fmt::Write as _;
use std::sync::LazyLock;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension};

use super::HotTier;
use crate::model::frame::{ANCHOR_COLS, ANCHOR_JSON_COLS, EVENT_COLS, EVENT_JSON_COLS, FRAME_COLS, FRAME_JSON_COLS};
use serde_json::Value;

use crate::model::{Result, Tier};

/// What the fast lane finds for an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HotBody {
    /// The bundle as JSON text.
    Json(String),
    /// A stub: the body is in this tier.
    Remote(Tier),
    /// No frame with this id in the file.
    Missing,
}

impl HotTier {
    /// A frame's body as JSON text when it is in SQLite; where it is otherwise. Runs on the read
    /// connection, so it never waits behind a write or a move of ours.
    pub fn body_json(&self, frame_id: &str) -> Result<HotBody> {
        let c = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        // One read transaction for the three statements: one snapshot (no write lands between the
        // frame's row and its events), and the WAL read lock taken once instead of three times.
        c.prepare_cached("BEGIN")?.execute([])?;
        let r = body_json(&c, frame_id);
        c.prepare_cached("COMMIT")?.execute([])?;
        r
    }

    /// A frame's bookkeeping on the read connection (a point read, on the caller's thread).
    pub fn meta_read(&self, frame_id: &str) -> Result<Option<super::FrameMeta>> {
        let c = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        super::read::load_meta(&c, frame_id)
    }

    /// Which tier holds a frame's body (`None`: no frame with this id), on the read connection.
    pub fn locate(&self, frame_id: &str) -> Result<Option<Tier>> {
        let c = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        Ok(super::read::load_meta(&c, frame_id)?.map(|m| if m.body_local { Tier::Hot } else { tier_of(m.tier) }))
    }
}

fn tier_of(level: i64) -> Tier {
    Tier::from_level(level).unwrap_or(Tier::Hot)
}

/// The three statements, built once (the statement cache is keyed by their text).
struct Sql {
    frame: String,
    events: String,
    anchors: String,
}

static SQL: LazyLock<Sql> = LazyLock::new(|| Sql {
    frame: format!(
        "SELECT {}, COALESCE(f.tier_status, 'hot'), COALESCE(m.body_local, 1), m.shape
         FROM frames f LEFT JOIN tier_metadata m ON m.frame_id = f.frame_id WHERE f.frame_id = ?1",
        FRAME_COLS.iter().map(|c| format!("f.{c}")).collect::<Vec<_>>().join(", ")
    ),
    events: format!("SELECT {} FROM events WHERE frame_id = ?1 ORDER BY seq, rowid", EVENT_COLS.join(", ")),
    anchors: format!("SELECT {} FROM anchors WHERE frame_id = ?1 ORDER BY rowid", ANCHOR_COLS.join(", ")),
});

fn body_json(c: &Connection, frame_id: &str) -> Result<HotBody> {
    let n = FRAME_COLS.len();
    let mut out = String::with_capacity(8192);
    let mut scratch = Scratch::default();
    let found = c
        .prepare_cached(&SQL.frame)?
        .query_row([frame_id], |r| {
            let tier = r.get::<_, String>(n)?;
            if r.get::<_, i64>(n + 1)? == 0 {
                return Ok(Err(Tier::parse(&tier).unwrap_or(Tier::Warm)));
            }
            // The bundle's shape (rows.rs), when it had one: key order and keys without a column.
            let shape: Option<Value> =
                r.get_ref(n + 2)?.as_str_or_null().ok().flatten().and_then(|t| serde_json::from_str(t).ok());
            out.push_str("{\"frame\":");
            scratch.row(r, FRAME_COLS, FRAME_JSON_COLS)?;
            scratch.emit(&mut out, FRAME_COLS, shape.as_ref().and_then(|s| s.get("f")));
            Ok(Ok(shape))
        })
        .optional()?;
    let shape = match found {
        None => return Ok(HotBody::Missing),
        Some(Err(tier)) => return Ok(HotBody::Remote(tier)),
        Some(Ok(shape)) => shape,
    };
    out.push_str(",\"events\":");
    let shapes = shape.as_ref().and_then(|s| s.get("e"));
    array(&mut out, &mut scratch, c, &SQL.events, frame_id, EVENT_COLS, EVENT_JSON_COLS, shapes)?;
    out.push_str(",\"anchors\":");
    let shapes = shape.as_ref().and_then(|s| s.get("a"));
    array(&mut out, &mut scratch, c, &SQL.anchors, frame_id, ANCHOR_COLS, ANCHOR_JSON_COLS, shapes)?;
    out.push('}');
    Ok(HotBody::Json(out))
}

#[allow(clippy::too_many_arguments)]
fn array(
    out: &mut String,
    scratch: &mut Scratch,
    c: &Connection,
    sql: &str,
    id: &str,
    cols: &[&str],
    json_cols: &[&str],
    shapes: Option<&Value>,
) -> Result<()> {
    let mut st = c.prepare_cached(sql)?;
    let mut rows = st.query([id])?;
    out.push('[');
    let mut first = true;
    while let Some(r) = rows.next()? {
        if !first {
            out.push(',');
        }
        first = false;
        scratch.row(r, cols, json_cols)?;
        // Rows are shaped by their id (the first column).
        let shape = shapes.and_then(|m| m.get(&scratch.id));
        scratch.emit(out, cols, shape);
    }
    out.push(']');
    Ok(())
}

/// One row's column values as JSON text, kept to be written in the row's key order.
#[derive(Default)]
struct Scratch {
    text: String,
    ends: Vec<usize>,
    /// The row's id (its first column) as stored: shapes are keyed by it.
    id: String,
}

impl Scratch {
    fn row(&mut self, r: &rusqlite::Row<'_>, cols: &[&str], json_cols: &[&str]) -> rusqlite::Result<()> {
        self.text.clear();
        self.ends.clear();
        self.id.clear();
        if let Ok(Some(id)) = r.get_ref(0)?.as_str_or_null() {
            self.id.push_str(id);
        }
        for (i, col) in cols.iter().enumerate() {
            value(&mut self.text, r.get_ref(i)?, json_cols.contains(col));
            self.ends.push(self.text.len());
        }
        Ok(())
    }

    fn text(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }

    /// The row as an object: every column in order, or the keys of its shape in their order
    /// (columns from the row, other keys from the shape's extras), as `rows::apply_shape` does.
    fn emit(&self, out: &mut String, cols: &[&str], shape: Option<&Value>) {
        let keys = shape.and_then(|s| s.get("k")).and_then(Value::as_array);
        let extras = shape.and_then(|s| s.get("x")).and_then(Value::as_object);
        out.push('{');
        let mut first = true;
        let mut key = |out: &mut String, k: &str| {
            if !first {
                out.push(',');
            }
            first = false;
            string(out, k);
            out.push(':');
        };
        match keys {
            None => {
                for (i, col) in cols.iter().enumerate() {
                    key(out, col);
                    out.push_str(self.text(i));
                }
            }
            Some(keys) => {
                for k in keys.iter().filter_map(Value::as_str) {
                    if let Some(i) = cols.iter().position(|c| *c == k) {
                        key(out, k);
                        out.push_str(self.text(i));
                    } else if let Some(v) = extras.and_then(|x| x.get(k)) {
                        key(out, k);
                        out.push_str(&v.to_string());
                    }
                }
            }
        }
        out.push('}');
    }
}

fn string(out: &mut String, s: &str) {
    // Serialising a &str cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// A column value as JSON, with the same meaning `rows::json_of` gives it: JSON columns that hold
/// valid JSON go in as they are, anything else is a string.
fn value(out: &mut String, v: ValueRef<'_>, json_col: bool) {
    match v {
        ValueRef::Null => out.push_str("null"),
        ValueRef::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        ValueRef::Real(f) => match serde_json::Number::from_f64(f) {
            Some(n) => {
                let _ = write!(out, "{n}");
            }
            None => out.push_str("null"),
        },
        ValueRef::Text(t) => {
            let s = String::from_utf8_lossy(t);
            if json_col && serde_json::from_str::<serde::de::IgnoredAny>(&s).is_ok() {
                out.push_str(&s);
            } else {
                string(out, &s);
            }
        }
        ValueRef::Blob(b) => string(out, &String::from_utf8_lossy(b)),
    }
}
