//! Writing frames: upserts of whole bundles (all or nothing, parents first) and restores of bodies
//! fetched back from a remote tier, in the same transaction as their journal step.

use std::collections::{HashMap, HashSet};

use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, TransactionBehavior};
use serde_json::Value;

use super::journal;
use super::merge::merged;
use super::read::load_meta;
use super::rows::{bundle_shape, sql_of};
use super::stubs::mark_written_by_us;
use super::HotTier;
use crate::model::frame::{ANCHOR_COLS, ANCHOR_JSON_COLS, EVENT_COLS, EVENT_JSON_COLS, FRAME_COLS, FRAME_JSON_COLS};
use crate::model::units::now_seconds;
use crate::model::{Bundle, Result, Tier, TierError};

impl HotTier {
    /// Upsert bundles (already normalised) in one transaction: all or nothing.
    /// Returns each frame's new version.
    pub fn store_many(&self, bundles: &[Bundle], max_frame_bytes: u64) -> Result<Vec<(String, i64, i64)>> {
        // Validate sizes and in-batch structure before touching the database.
        let mut sized = Vec::with_capacity(bundles.len());
        let mut ids = HashSet::new();
        for (i, b) in bundles.iter().enumerate() {
            let bytes = b.canonical_bytes();
            if bytes.len() as u64 > max_frame_bytes {
                return Err(TierError::FrameTooLarge {
                    frame_id: b.frame_id().to_string(),
                    size: bytes.len() as u64,
                    limit: max_frame_bytes,
                });
            }
            if !ids.insert(b.frame_id().to_string()) {
                return Err(TierError::invalid_frame(
                    format!("bundles[{i}].frame.frame_id"),
                    format!("{} appears twice in one call", b.frame_id()),
                ));
            }
            sized.push((b, bytes.len() as i64, crate::model::frame::checksum(&bytes)));
        }
        // Parents before children, so the foreign key holds inside the batch.
        let order = parent_first_order(bundles);
        let mut c = self.lock_write()?;
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(bundles.len());
        for idx in order {
            let (b, size, sum) = &sized[idx];
            let version = write_bundle(&tx, b, *size, sum, None, bundles.len() > 1, idx)?;
            out.push((b.frame_id().to_string(), version, *size));
        }
        tx.commit()?;
        Ok(out)
    }

    /// Restore bodies fetched from a remote tier as hot frames, each in the transaction of its
    /// journal's `verified` step: 100 frames per transaction (short, for StackMemory's writer), each
    /// in its own savepoint so one bad frame fails alone. A stub that gained rows or column writes
    /// since it was stubbed is merged with them inside that transaction (`merge.rs`) and gets a new
    /// version: nothing written to it is lost. One result per input, in order: the restored size.
    pub fn restore_many(&self, items: &[Restore<'_>]) -> Result<Vec<Result<i64>>> {
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(100) {
            let mut c = self.lock_write()?;
            // The chunk in one transaction, without a savepoint per frame: FTS5 writes its pending
            // index to disk at every savepoint, which with the sub-journal's writes was about a
            // quarter of a cold → hot hop (perf). Should any frame fail, the chunk is rolled back
            // and redone frame by frame under savepoints, so that frame fails alone.
            {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let mut done = Vec::with_capacity(chunk.len());
                for item in chunk {
                    match restore_one(&tx, item) {
                        Ok(size) => done.push(Ok(size)),
                        Err(_) => break,
                    }
                }
                if done.len() == chunk.len() {
                    tx.commit()?;
                    out.extend(done);
                    continue;
                }
            }
            let mut tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for item in chunk {
                let mut sp = tx.savepoint()?;
                let r = restore_one(&sp, item);
                match r {
                    Ok(_) => sp.commit()?,
                    Err(_) => sp.rollback()?,
                }
                out.push(r);
            }
            tx.commit()?;
        }
        Ok(out)
    }
}

/// A body fetched from a remote tier, verified, and the move that brings it back.
pub struct Restore<'a> {
    pub bundle: &'a Bundle,
    pub checksum: &'a str,
    pub version: i64,
    pub move_id: i64,
}

fn restore_one(c: &Connection, item: &Restore<'_>) -> Result<i64> {
    let id = item.bundle.frame_id();
    let meta = load_meta(c, id)?;
    let size = match meta.as_ref().filter(|m| m.is_dirty_stub()) {
        Some(m) => {
            let merged = merged(c, item.bundle.clone(), m)?;
            let bytes = merged.canonical_bytes();
            let sum = crate::model::frame::checksum(&bytes);
            let v = item.version.max(m.version) + 1;
            write_bundle(c, &merged, bytes.len() as i64, &sum, Some(v), false, 0)?;
            bytes.len() as i64
        }
        None => {
            let size = item.bundle.canonical_bytes().len() as i64;
            write_bundle(c, item.bundle, size, item.checksum, Some(item.version), false, 0)?;
            size
        }
    };
    c.prepare_cached("UPDATE tier_metadata SET promoted_at = ?2, held_back = NULL WHERE frame_id = ?1")?
        .execute(params![id, now_seconds()])?;
    journal::set_step(c, item.move_id, journal::VERIFIED, None)?;
    journal::set_after_seq(c, item.move_id, id)?;
    Ok(size)
}

/// Order indexes so that a bundle whose parent is in the same batch comes after it.
fn parent_first_order(bundles: &[Bundle]) -> Vec<usize> {
    let pos: HashMap<&str, usize> = bundles.iter().enumerate().map(|(i, b)| (b.frame_id(), i)).collect();
    let mut out = Vec::with_capacity(bundles.len());
    let mut state = vec![0u8; bundles.len()]; // 0 new, 1 visiting, 2 done
    for start in 0..bundles.len() {
        let mut stack = vec![start];
        while let Some(&i) = stack.last() {
            if state[i] == 2 {
                stack.pop();
                continue;
            }
            state[i] = 1;
            match bundles[i].parent_id().and_then(|p| pos.get(p)).copied() {
                Some(p) if state[p] == 0 => stack.push(p),
                _ => {
                    state[i] = 2;
                    out.push(i);
                    stack.pop();
                }
            }
        }
    }
    out
}

/// Write one bundle's rows. `version`: `None` bumps the stored version (a new write), `Some(v)`
/// keeps the version the copy had (a restore).
fn write_bundle(
    tx: &Connection,
    b: &Bundle,
    size: i64,
    checksum: &str,
    version: Option<i64>,
    in_batch: bool,
    idx: usize,
) -> Result<i64> {
    let fid = b.frame_id();
    let path = |f: &str| if in_batch { format!("bundles[{idx}].{f}") } else { f.to_string() };
    if let Some(parent) = b.parent_id() {
        let exists = tx
            .prepare_cached("SELECT 1 FROM frames WHERE frame_id = ?1")?
            .query_row([parent], |_| Ok(()))
            .optional()?;
        if exists.is_none() {
            return Err(TierError::invalid_frame(
                path("frame.parent_frame_id"),
                format!("unknown parent frame {parent}"),
            ));
        }
    }
    let prior = load_meta(tx, fid)?;
    // Ids of events and anchors are global keys: they must not belong to another frame.
    for (rows, table, id_col, name) in
        [(&b.events, "events", "event_id", "events"), (&b.anchors, "anchors", "anchor_id", "anchors")]
    {
        let mut st = tx.prepare_cached(&format!("SELECT frame_id FROM {table} WHERE {id_col} = ?1"))?;
        for (i, r) in rows.iter().enumerate() {
            let id = r.get(id_col).and_then(Value::as_str).unwrap_or("");
            let owner: Option<String> = st.query_row([id], |r| r.get(0)).optional()?;
            if let Some(o) = owner {
                if o != fid {
                    return Err(TierError::invalid_frame(
                        path(&format!("{name}[{i}].{id_col}")),
                        format!("{id} already belongs to frame {o}"),
                    ));
                }
            }
        }
    }
    let f = &b.frame;
    let mut vals: Vec<SqlValue> = FRAME_COLS.iter().map(|c| sql_of(f.get(*c), FRAME_JSON_COLS.contains(c))).collect();
    // Columns StackMemory declares NOT NULL or with defaults get its defaults when absent.
    let default_of = |c: &str| -> Option<SqlValue> {
        match c {
            "depth" => Some(SqlValue::Integer(0)),
            "state" => Some(SqlValue::Text("active".into())),
            "inputs" | "outputs" | "digest_json" => Some(SqlValue::Text("{}".into())),
            "created_at" => Some(SqlValue::Integer(now_seconds())),
            "retention_policy" => Some(SqlValue::Text("default".into())),
            _ => None,
        }
    };
    for (i, c) in FRAME_COLS.iter().enumerate() {
        if !f.contains_key(*c) {
            if let Some(d) = default_of(c) {
                vals[i] = d;
            }
        }
    }
    let placeholders: Vec<String> = (1..=FRAME_COLS.len()).map(|i| format!("?{i}")).collect();
    let updates: Vec<String> =
        FRAME_COLS.iter().filter(|c| **c != "frame_id").map(|c| format!("{c} = excluded.{c}")).collect();
    let sql = format!(
        "INSERT INTO frames ({cols}, tier_status) VALUES ({ph}, 'hot')
         ON CONFLICT(frame_id) DO UPDATE SET {up}, tier_status = 'hot'",
        cols = FRAME_COLS.join(", "),
        ph = placeholders.join(", "),
        up = updates.join(", ")
    );
    tx.prepare_cached(&sql)?.execute(params_from_iter(vals.iter()))?;

    tx.prepare_cached("DELETE FROM events WHERE frame_id = ?1")?.execute([fid])?;
    tx.prepare_cached("DELETE FROM anchors WHERE frame_id = ?1")?.execute([fid])?;
    let run_id = f.get("run_id").cloned();
    {
        let mut st = tx.prepare_cached(
            "INSERT INTO events (event_id, frame_id, run_id, seq, event_type, payload, ts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for (i, e) in b.events.iter().enumerate() {
            let mut v: Vec<SqlValue> =
                EVENT_COLS.iter().map(|c| sql_of(e.get(*c), EVENT_JSON_COLS.contains(c))).collect();
            v[1] = SqlValue::Text(fid.to_string());
            if matches!(v[2], SqlValue::Null) {
                v[2] = sql_of(run_id.as_ref(), false);
            }
            if matches!(v[3], SqlValue::Null) {
                v[3] = SqlValue::Integer(i as i64 + 1);
            }
            if matches!(v[5], SqlValue::Null) {
                v[5] = SqlValue::Text("{}".into());
            }
            if matches!(v[6], SqlValue::Null) && !e.contains_key("ts") {
                v[6] = SqlValue::Integer(crate::model::units::now_millis());
            }
            st.execute(params_from_iter(v.iter()))?;
        }
    }
    {
        let mut st = tx.prepare_cached(
            "INSERT INTO anchors (anchor_id, frame_id, project_id, type, text, priority, created_at, metadata)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for a in &b.anchors {
            let mut v: Vec<SqlValue> =
                ANCHOR_COLS.iter().map(|c| sql_of(a.get(*c), ANCHOR_JSON_COLS.contains(c))).collect();
            v[1] = SqlValue::Text(fid.to_string());
            if matches!(v[2], SqlValue::Null) {
                v[2] = SqlValue::Text(String::new());
            }
            if matches!(v[5], SqlValue::Null) && !a.contains_key("priority") {
                v[5] = SqlValue::Integer(0);
            }
            if matches!(v[6], SqlValue::Null) && !a.contains_key("created_at") {
                v[6] = SqlValue::Integer(now_seconds());
            }
            if matches!(v[7], SqlValue::Null) && !a.contains_key("metadata") {
                v[7] = SqlValue::Text("{}".into());
            }
            st.execute(params_from_iter(v.iter()))?;
        }
    }
    let new_version = match version {
        Some(v) => v,
        None => prior.as_ref().map(|m| m.version + 1).unwrap_or(1),
    };
    if version.is_none() {
        if let Some(p) = &prior {
            if !p.body_local || p.tier != Tier::Hot.level() {
                // Re-stored while archived: the remote copies are now stale.
                journal::begin_discard(tx, fid, p.tier, p.version)?;
            }
        }
    }
    tx.prepare_cached(
        "INSERT INTO tier_metadata (frame_id, tier_level, size_bytes, checksum, version, body_local, held_back, shape, updated_at)
         VALUES (?1, 1, ?2, ?3, ?4, 1, NULL, ?5, ?6)
         ON CONFLICT(frame_id) DO UPDATE SET tier_level = 1, size_bytes = excluded.size_bytes, checksum = excluded.checksum,
           version = excluded.version, body_local = 1, held_back = NULL, shape = excluded.shape, updated_at = excluded.updated_at",
    )?
    .execute(params![fid, size, checksum, new_version, bundle_shape(b), now_seconds()])?;
    mark_written_by_us(tx, fid)?;
    Ok(new_version)
}
