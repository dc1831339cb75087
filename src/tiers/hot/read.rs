//! Reading frames: our bookkeeping of one frame (`FrameMeta`) and its rows back as a bundle.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;
use serde_json::Value;

use super::rows::{apply_shape, int_or_none, read_rows};
use super::HotTier;
use crate::model::frame::{ANCHOR_COLS, ANCHOR_JSON_COLS, EVENT_COLS, EVENT_JSON_COLS, FRAME_COLS, FRAME_JSON_COLS};
use crate::model::units::now_seconds;
use crate::model::{Bundle, Result, Row, Tier};

/// Our bookkeeping for one frame.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FrameMeta {
    pub frame_id: String,
    pub tier: i64,
    /// The full rows are in SQLite (a hot frame, or a warm one held back while the archive is down).
    pub body_local: bool,
    pub version: i64,
    pub checksum: Option<String>,
    pub size_bytes: i64,
    pub access_count: i64,
    pub last_accessed: Option<i64>,
    pub held_back: Option<String>,
    pub pinned: bool,
    /// How many writes of the frame's rows there have been, by anyone (`tier_changes.seq`): a move
    /// whose source changed after its copy was taken sees it differ.
    pub change_seq: i64,
    /// What others wrote since our own last write of the frame (`tier_changes.cols`, see
    /// `schema.rs`): on a stub, rows and column writes its archived body lacks.
    pub changes: i64,
}

impl FrameMeta {
    /// A stub that gained rows or column writes since it was stubbed: its body is the archived one
    /// merged with them (`merge.rs`).
    pub fn is_dirty_stub(&self) -> bool {
        !self.body_local && self.changes != 0
    }
}

/// What `load` finds for an id.
#[derive(Debug, Clone)]
pub struct HotRecord {
    pub meta: FrameMeta,
    /// The whole bundle when `meta.body_local`.
    pub bundle: Option<Bundle>,
    /// The frames row as stored (for stubs: the stub's columns).
    pub stub: Row,
}

impl HotTier {
    pub fn load(&self, frame_id: &str) -> Result<Option<HotRecord>> {
        let c = self.lock()?;
        load_record(&c, frame_id)
    }

    pub fn load_many(&self, ids: &[String]) -> Result<Vec<HotRecord>> {
        let c = self.lock()?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(r) = load_record(&c, id)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    pub fn meta(&self, frame_id: &str) -> Result<Option<FrameMeta>> {
        let c = self.lock()?;
        load_meta(&c, frame_id)
    }

    /// The bookkeeping of each listed frame, in order (`None`: no such frame), under one lock
    /// instead of one per frame.
    pub fn meta_many(&self, ids: &[String]) -> Result<Vec<Option<FrameMeta>>> {
        let c = self.lock()?;
        ids.iter().map(|id| load_meta(&c, id)).collect()
    }

    /// After someone else wrote a frame (StackMemory closing it, say): its bookkeeping follows its
    /// rows again (size and checksum of a local body; a new version when they changed).
    pub fn refresh_meta(&self, frame_id: &str) -> Result<Option<FrameMeta>> {
        let mut c = self.lock_write()?;
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(meta) = ensure_meta_row(&tx, frame_id)? else { return Ok(None) };
        if meta.body_local {
            if let Some(b) = load_record(&tx, frame_id)?.and_then(|r| r.bundle) {
                let bytes = b.canonical_bytes();
                let sum = crate::model::frame::checksum(&bytes);
                if meta.checksum.as_deref() != Some(sum.as_str()) {
                    tx.execute(
                        "UPDATE tier_metadata SET size_bytes = ?2, checksum = ?3, version = version + 1, updated_at = ?4
                         WHERE frame_id = ?1",
                        params![frame_id, bytes.len() as i64, sum, now_seconds()],
                    )?;
                }
            }
        }
        let meta = load_meta(&tx, frame_id)?;
        tx.commit()?;
        Ok(meta)
    }

    /// Ensure every listed frame has a `tier_metadata` row with a size and checksum (frames written
    /// by StackMemory itself have none until we first look at them).
    pub fn ensure_meta(&self, ids: &[String]) -> Result<()> {
        let mut c = self.lock_write()?;
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for id in ids {
            ensure_meta_row(&tx, id)?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// A frame's bookkeeping, as `FrameMeta` reads it (`meta_of` maps a row).
const META_SELECT: &str = "SELECT f.frame_id, COALESCE(f.tier_status, 'hot'), COALESCE(m.body_local, 1), COALESCE(m.version, 0), m.checksum,
        COALESCE(m.size_bytes, 0), COALESCE(ta.access_count, f.access_count, 0), COALESCE(ta.last_accessed, f.last_accessed),
        m.held_back, COALESCE(m.pinned, 0),
        COALESCE(ch.seq, 0), COALESCE(ch.cols, 0)
     FROM frames f LEFT JOIN tier_metadata m ON m.frame_id = f.frame_id
       LEFT JOIN tier_changes ch ON ch.frame_id = f.frame_id
       LEFT JOIN tier_access ta ON ta.frame_id = f.frame_id";

fn meta_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<FrameMeta> {
    let tier: String = r.get(1)?;
    Ok(FrameMeta {
        frame_id: r.get(0)?,
        tier: Tier::parse(&tier).map(Tier::level).unwrap_or(0),
        body_local: r.get::<_, i64>(2)? != 0,
        version: r.get(3)?,
        checksum: r.get(4)?,
        size_bytes: r.get(5)?,
        access_count: r.get(6)?,
        last_accessed: int_or_none(r.get_ref(7)?),
        held_back: r.get(8)?,
        pinned: r.get::<_, i64>(9)? != 0,
        change_seq: r.get(10)?,
        changes: r.get(11)?,
    })
}

pub(super) fn load_meta(c: &Connection, frame_id: &str) -> Result<Option<FrameMeta>> {
    // prepare_cached: `query_row` compiles the SQL again on every call, and this is on every read.
    Ok(c.prepare_cached(&format!("{META_SELECT} WHERE f.frame_id = ?1"))?.query_row([frame_id], meta_of).optional()?)
}

impl HotTier {
    /// The bookkeeping of up to `limit` frames after `after` in frame-id order (of one project, if
    /// given): how `verify` walks a store of any size in bounded batches.
    pub fn meta_page(&self, project_id: Option<&str>, after: Option<&str>, limit: usize) -> Result<Vec<FrameMeta>> {
        let c = self.lock()?;
        let mut st = c.prepare_cached(&format!(
            "{META_SELECT} WHERE f.frame_id > ?1 AND (?2 IS NULL OR f.project_id = ?2) ORDER BY f.frame_id LIMIT ?3"
        ))?;
        let rows = st.query_map(rusqlite::params![after.unwrap_or(""), project_id, limit as i64], meta_of)?;
        Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
    }
}

pub(super) fn load_record(c: &Connection, frame_id: &str) -> Result<Option<HotRecord>> {
    let Some(meta) = load_meta(c, frame_id)? else {
        return Ok(None);
    };
    let frame_sql = format!("SELECT {} FROM frames WHERE frame_id = ?1", FRAME_COLS.join(", "));
    let mut frames = read_rows(c, &frame_sql, frame_id, FRAME_COLS, FRAME_JSON_COLS)?;
    let Some(frame_row) = frames.pop() else { return Ok(None) };
    if !meta.body_local {
        return Ok(Some(HotRecord { meta, bundle: None, stub: frame_row }));
    }
    let shape: Option<Value> = c
        .prepare_cached("SELECT shape FROM tier_metadata WHERE frame_id = ?1")?
        .query_row([frame_id], |r| r.get::<_, Option<String>>(0))
        .optional()?
        .flatten()
        .and_then(|s| serde_json::from_str(&s).ok());
    let part = |k: &str| shape.as_ref().and_then(|s| s.get(k));
    let frame = apply_shape(frame_row.clone(), part("f"), FRAME_COLS);
    let ev_sql = format!("SELECT {} FROM events WHERE frame_id = ?1 ORDER BY seq, rowid", EVENT_COLS.join(", "));
    let events = read_rows(c, &ev_sql, frame_id, EVENT_COLS, EVENT_JSON_COLS)?
        .into_iter()
        .map(|e| {
            let id = e.get("event_id").and_then(Value::as_str).unwrap_or("").to_string();
            apply_shape(e, part("e").and_then(|m| m.get(&id)), EVENT_COLS)
        })
        .collect();
    let an_sql = format!("SELECT {} FROM anchors WHERE frame_id = ?1 ORDER BY rowid", ANCHOR_COLS.join(", "));
    let anchors = read_rows(c, &an_sql, frame_id, ANCHOR_COLS, ANCHOR_JSON_COLS)?
        .into_iter()
        .map(|a| {
            let id = a.get("anchor_id").and_then(Value::as_str).unwrap_or("").to_string();
            apply_shape(a, part("a").and_then(|m| m.get(&id)), ANCHOR_COLS)
        })
        .collect();
    Ok(Some(HotRecord { meta, bundle: Some(Bundle { frame, events, anchors }), stub: frame_row }))
}

/// Create the metadata row for a frame StackMemory wrote directly (size and checksum from its rows).
pub(super) fn ensure_meta_row(c: &Connection, frame_id: &str) -> Result<Option<FrameMeta>> {
    let has: Option<i64> =
        c.query_row("SELECT 1 FROM tier_metadata WHERE frame_id = ?1", [frame_id], |r| r.get(0)).optional()?;
    if has.is_none() {
        let Some(rec) = load_record(c, frame_id)? else { return Ok(None) };
        let (size, sum) = match &rec.bundle {
            Some(b) => {
                let bytes = b.canonical_bytes();
                (bytes.len() as i64, Some(crate::model::frame::checksum(&bytes)))
            }
            None => (0, None),
        };
        c.execute(
            "INSERT OR IGNORE INTO tier_metadata (frame_id, tier_level, size_bytes, checksum, version, body_local, updated_at)
             VALUES (?1, ?2, ?3, ?4, 1, 1, ?5)",
            params![frame_id, rec.meta.tier.max(1), size, sum, now_seconds()],
        )?;
    }
    load_meta(c, frame_id)
}
