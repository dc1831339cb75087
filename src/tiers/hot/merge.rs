//! A stub's whole body: its archived bundle merged with what was written to the stub since it was
//! stubbed (StackMemory's `addEvent` accepts any frame, closed and archived ones included; its
//! `closeFrame` rewrites digests; anchors get added). Column writes replace the archived values,
//! new events follow the archived ones (their `seq` renumbered after the archive's last, in their
//! own order), new anchors are added. Nothing written to SQLite is dropped: a restore writes the
//! merged body in the same transaction in which it reads the stub's rows.

use rusqlite::Connection;
use serde_json::Value;

use super::read::FrameMeta;
use super::rows::read_rows;
use super::schema::{CHANGED_ANCHORS, CHANGED_EVENTS};
use super::HotTier;
use crate::model::frame::{ANCHOR_COLS, ANCHOR_JSON_COLS, EVENT_COLS, EVENT_JSON_COLS, FRAME_COLS, FRAME_JSON_COLS};
use crate::model::{Bundle, Result, Row};

impl HotTier {
    /// The archived body of a dirty stub merged with its local rows (the body itself otherwise).
    pub fn merge_local(&self, frame_id: &str, archived: Bundle) -> Result<Bundle> {
        let c = self.lock()?;
        match super::read::load_meta(&c, frame_id)? {
            Some(m) if m.is_dirty_stub() => merged(&c, archived, &m),
            _ => Ok(archived),
        }
    }
}

/// `archived` with the stub's changed columns and its local events and anchors.
pub(super) fn merged(c: &Connection, mut archived: Bundle, meta: &FrameMeta) -> Result<Bundle> {
    let id = meta.frame_id.as_str();
    let frame_sql = format!("SELECT {} FROM frames WHERE frame_id = ?1", FRAME_COLS.join(", "));
    if let Some(stub) = read_rows(c, &frame_sql, id, FRAME_COLS, FRAME_JSON_COLS)?.pop() {
        for (i, col) in FRAME_COLS.iter().enumerate() {
            if meta.changes & (1 << i) != 0 {
                archived.frame.insert(col.to_string(), stub.get(*col).cloned().unwrap_or(Value::Null));
            }
        }
    }
    if meta.changes & CHANGED_EVENTS != 0 {
        let sql = format!("SELECT {} FROM events WHERE frame_id = ?1 ORDER BY seq, rowid", EVENT_COLS.join(", "));
        let local = read_rows(c, &sql, id, EVENT_COLS, EVENT_JSON_COLS)?;
        append_events(&mut archived.events, local);
    }
    if meta.changes & CHANGED_ANCHORS != 0 {
        let sql = format!("SELECT {} FROM anchors WHERE frame_id = ?1 ORDER BY rowid", ANCHOR_COLS.join(", "));
        let local = read_rows(c, &sql, id, ANCHOR_COLS, ANCHOR_JSON_COLS)?;
        append_rows(&mut archived.anchors, local, "anchor_id");
    }
    Ok(archived)
}

/// Local events after the archived ones: a local event's `seq` was counted from an empty stub
/// (StackMemory numbers from the frame's rows in SQLite), so they are renumbered after the
/// archive's last `seq`, keeping their order; an id already archived is replaced by the local row.
fn append_events(events: &mut Vec<Row>, local: Vec<Row>) {
    let ids: Vec<&str> = local.iter().filter_map(|e| e.get("event_id").and_then(Value::as_str)).collect();
    events.retain(|e| !e.get("event_id").and_then(Value::as_str).is_some_and(|x| ids.contains(&x)));
    let last = events.iter().filter_map(|e| e.get("seq").and_then(Value::as_i64)).max().unwrap_or(0);
    for (k, mut e) in local.into_iter().enumerate() {
        e.insert("seq".into(), Value::from(last + 1 + k as i64));
        events.push(e);
    }
}

fn append_rows(rows: &mut Vec<Row>, local: Vec<Row>, id_col: &str) {
    for r in local {
        let id = r.get(id_col).cloned();
        rows.retain(|x| x.get(id_col) != id.as_ref());
        rows.push(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(v: Value) -> Row {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn local_events_follow_the_archived_ones_in_order() {
        let mut events = vec![row(json!({"event_id": "a", "seq": 1})), row(json!({"event_id": "b", "seq": 2}))];
        append_events(
            &mut events,
            vec![row(json!({"event_id": "c", "seq": 1})), row(json!({"event_id": "d", "seq": 2}))],
        );
        let seqs: Vec<(String, i64)> = events
            .iter()
            .map(|e| (e["event_id"].as_str().unwrap_or("").to_string(), e["seq"].as_i64().unwrap_or(0)))
            .collect();
        assert_eq!(seqs, vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 3), ("d".into(), 4)]);
    }
}
