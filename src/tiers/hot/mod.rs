//! The hot tier: StackMemory's own SQLite `context.db` (or a new file with the same schema).
//!
//! We share the file with StackMemory's better-sqlite3 connection, so: WAL, a busy timeout, short
//! `BEGIN IMMEDIATE` transactions, and we never rewrite StackMemory's tables beyond rows of frames
//! we were asked to store or move. Our bookkeeping is additive and versioned (`tier_schema`):
//! three columns on `frames` (`tier_status`, `last_accessed`, `access_count`, as the seed design
//! asks) and our own tables (`tier_metadata`, `tier_journal`, `tier_kv`).
//!
//! A demoted frame keeps a *stub* row (ids, tree, name, state, times, tier) so StackMemory's stack
//! tree, its foreign keys and FTS on names keep working; its events and anchors go with the body.
//!
//! Every method is synchronous; the manager runs them on tokio's blocking pool, never on the JS
//! thread.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{params, params_from_iter, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::model::frame::{ANCHOR_COLS, ANCHOR_JSON_COLS, EVENT_COLS, EVENT_JSON_COLS, FRAME_COLS, FRAME_JSON_COLS};
use crate::model::units::{now_seconds, to_seconds};
use crate::model::{Bundle, Result, Row, Tier, TierError};

pub mod config;
pub mod copy_guard;
pub mod journal;

pub use config::SqliteConfig;

/// Version of our own additions to the file (not StackMemory's schema).
pub const SCHEMA_VERSION: i64 = 1;

const STACKMEMORY_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS frames (
  frame_id TEXT PRIMARY KEY,
  run_id TEXT NOT NULL,
  project_id TEXT NOT NULL,
  parent_frame_id TEXT REFERENCES frames(frame_id),
  depth INTEGER NOT NULL DEFAULT 0,
  type TEXT NOT NULL,
  name TEXT NOT NULL,
  state TEXT DEFAULT 'active',
  inputs TEXT DEFAULT '{}',
  outputs TEXT DEFAULT '{}',
  digest_text TEXT,
  digest_json TEXT DEFAULT '{}',
  created_at INTEGER DEFAULT (unixepoch()),
  closed_at INTEGER,
  retention_policy TEXT DEFAULT 'default'
);
CREATE TABLE IF NOT EXISTS events (
  event_id TEXT PRIMARY KEY,
  run_id TEXT NOT NULL,
  frame_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  event_type TEXT NOT NULL,
  payload TEXT NOT NULL,
  ts INTEGER DEFAULT (unixepoch()),
  FOREIGN KEY(frame_id) REFERENCES frames(frame_id) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS anchors (
  anchor_id TEXT PRIMARY KEY,
  frame_id TEXT NOT NULL,
  project_id TEXT NOT NULL DEFAULT '',
  type TEXT NOT NULL,
  text TEXT NOT NULL,
  priority INTEGER DEFAULT 0,
  created_at INTEGER DEFAULT (unixepoch()),
  metadata TEXT DEFAULT '{}',
  FOREIGN KEY(frame_id) REFERENCES frames(frame_id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS idx_frames_run ON frames(run_id);
CREATE INDEX IF NOT EXISTS idx_frames_parent ON frames(parent_frame_id);
CREATE INDEX IF NOT EXISTS idx_frames_state ON frames(state);
CREATE INDEX IF NOT EXISTS idx_events_frame ON events(frame_id);
CREATE INDEX IF NOT EXISTS idx_anchors_frame ON anchors(frame_id);
";

const STACKMEMORY_FTS: &str = "
CREATE VIRTUAL TABLE IF NOT EXISTS frames_fts USING fts5(
  name, digest_text, inputs, outputs, content='frames', content_rowid='rowid'
);
CREATE TRIGGER IF NOT EXISTS frames_ai AFTER INSERT ON frames BEGIN
  INSERT INTO frames_fts(rowid, name, digest_text, inputs, outputs)
  VALUES (new.rowid, new.name, new.digest_text, new.inputs, new.outputs);
END;
CREATE TRIGGER IF NOT EXISTS frames_ad AFTER DELETE ON frames BEGIN
  INSERT INTO frames_fts(frames_fts, rowid, name, digest_text, inputs, outputs)
  VALUES ('delete', old.rowid, old.name, old.digest_text, old.inputs, old.outputs);
END;
CREATE TRIGGER IF NOT EXISTS frames_au AFTER UPDATE ON frames BEGIN
  INSERT INTO frames_fts(frames_fts, rowid, name, digest_text, inputs, outputs)
  VALUES ('delete', old.rowid, old.name, old.digest_text, old.inputs, old.outputs);
  INSERT INTO frames_fts(rowid, name, digest_text, inputs, outputs)
  VALUES (new.rowid, new.name, new.digest_text, new.inputs, new.outputs);
END;
";

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

#[derive(Debug, Clone, Default, Serialize)]
pub struct TierCount {
    pub frames: i64,
    pub bytes: i64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct HotCounts {
    pub hot: TierCount,
    pub warm: TierCount,
    pub cold: TierCount,
    /// Warm frames whose full rows stay in SQLite, by reason.
    pub held_back: Vec<(String, i64)>,
    pub file_bytes: i64,
    pub journal_backlog: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HotHit {
    pub frame_id: String,
    pub project_id: String,
    pub name: String,
    pub tier: String,
    pub rank: f64,
}

/// A candidate for a move, as the mover and the policy engine see it.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub frame_id: String,
    pub parent_id: Option<String>,
    pub project_id: String,
    pub tier: i64,
    pub body_local: bool,
    pub active: bool,
    pub created_s: Option<i64>,
    pub closed_s: Option<i64>,
    pub last_accessed_s: Option<i64>,
    pub access_count: i64,
    pub size_bytes: i64,
    pub keep_forever: bool,
    pub pinned: bool,
}

pub struct HotTier {
    conn: Mutex<Connection>,
    /// Stops us before a second SQLite copy in this process and we corrupt the file together.
    guard: crate::tiers::hot::copy_guard::CopyGuard,
    path: PathBuf,
    has_fts: bool,
}

impl HotTier {
    pub fn open(path: &Path) -> Result<HotTier> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() && !dir.exists() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| TierError::storage(format!("cannot create {}", dir.display()), e))?;
            }
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| TierError::storage(format!("cannot open {}", path.display()), e))?;
        let guard = crate::tiers::hot::copy_guard::CopyGuard::register(path);
        guard.check()?;
        conn.busy_timeout(Duration::from_secs(10))?;
        // Same settings as StackMemory's own connection.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.set_prepared_statement_cache_capacity(64);
        migrate_schema(&conn)?;
        let has_fts = table_exists(&conn, "frames_fts")?;
        Ok(HotTier { conn: Mutex::new(conn), guard, path: path.to_path_buf(), has_fts })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// For reads: the foreign-SQLite check runs at most every few milliseconds (a read racing a
    /// foreign writer can fail, but cannot damage the file).
    fn lock(&self) -> Result<MutexGuard<'_, Connection>> {
        self.guard.check_recent()?;
        self.lock_unchecked()
    }

    /// For write transactions: always checked first (two unsynchronised writers corrupt the file).
    fn lock_write(&self) -> Result<MutexGuard<'_, Connection>> {
        self.guard.check()?;
        self.lock_unchecked()
    }

    fn lock_unchecked(&self) -> Result<MutexGuard<'_, Connection>> {
        // A poisoned lock means a panic mid-call elsewhere; SQLite rolled back that transaction,
        // so the connection is still consistent and usable.
        Ok(self.conn.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn schema_version(&self) -> Result<i64> {
        let c = self.lock()?;
        Ok(c.query_row("SELECT max(version) FROM tier_schema", [], |r| r.get::<_, Option<i64>>(0))?.unwrap_or(0))
    }

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

    /// Restore a bundle fetched from a remote tier as a hot frame, in the same transaction as the
    /// journal's `verified` step for that move.
    pub fn restore(&self, b: &Bundle, checksum: &str, version: i64, move_id: i64) -> Result<()> {
        let mut c = self.lock_write()?;
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let size = b.canonical_bytes().len() as i64;
        write_bundle(&tx, b, size, checksum, Some(version), false, 0)?;
        tx.execute(
            "UPDATE tier_metadata SET promoted_at = ?2, held_back = NULL WHERE frame_id = ?1",
            params![b.frame_id(), now_seconds()],
        )?;
        journal::set_step(&tx, move_id, journal::VERIFIED, None)?;
        tx.commit()?;
        Ok(())
    }

    /// `restore` for a batch: 100 frames per transaction (short, for StackMemory's writer), each
    /// in its own savepoint so one bad frame fails alone. One result per input, in order.
    pub fn restore_many(&self, items: &[(&Bundle, &str, i64, i64)]) -> Result<Vec<Result<()>>> {
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(100) {
            let mut c = self.lock_write()?;
            let mut tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for (b, checksum, version, move_id) in chunk {
                let mut sp = tx.savepoint()?;
                let r = (|| -> Result<()> {
                    let size = b.canonical_bytes().len() as i64;
                    write_bundle(&sp, b, size, checksum, Some(*version), false, 0)?;
                    sp.execute(
                        "UPDATE tier_metadata SET promoted_at = ?2, held_back = NULL WHERE frame_id = ?1",
                        params![b.frame_id(), now_seconds()],
                    )?;
                    journal::set_step(&sp, *move_id, journal::VERIFIED, None)?;
                    Ok(())
                })();
                match r {
                    Ok(()) => sp.commit()?,
                    Err(_) => sp.rollback()?,
                }
                out.push(r);
            }
            tx.commit()?;
        }
        Ok(out)
    }

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

    /// Delete a frame's rows. Refuses when child frames still point at it.
    /// Returns the tier it was in, or `None` when unknown.
    pub fn delete(&self, frame_id: &str) -> Result<Option<FrameMeta>> {
        let mut c = self.lock_write()?;
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(meta) = load_meta(&tx, frame_id)? else {
            return Ok(None);
        };
        let children: i64 =
            tx.query_row("SELECT count(*) FROM frames WHERE parent_frame_id = ?1", [frame_id], |r| r.get(0))?;
        if children > 0 {
            return Err(TierError::invalid_argument(
                "frameId",
                format!("frame {frame_id} has {children} child frame(s); delete them first"),
            ));
        }
        tx.execute("DELETE FROM events WHERE frame_id = ?1", [frame_id])?;
        tx.execute("DELETE FROM anchors WHERE frame_id = ?1", [frame_id])?;
        tx.execute("DELETE FROM tier_metadata WHERE frame_id = ?1", [frame_id])?;
        tx.execute("DELETE FROM frames WHERE frame_id = ?1", [frame_id])?;
        if meta.tier != Tier::Hot.level() || !meta.body_local || meta.checksum.is_some() {
            // Remote tiers may hold a copy; recovery deletes it.
            journal::begin_discard(&tx, frame_id, meta.tier, meta.version)?;
        }
        tx.commit()?;
        Ok(Some(meta))
    }

    /// Shrink frames to stubs after their body was verified elsewhere, atomically with the journal.
    /// A frame whose version changed since the copy (re-stored meanwhile) is left alone and its move
    /// rolled back; returns the ids that were stubbed.
    pub fn finish_demotions(&self, moves: &[(i64, String, i64)], to: Tier) -> Result<Vec<String>> {
        let mut c = self.lock_write()?;
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut done = Vec::with_capacity(moves.len());
        for (move_id, frame_id, version) in moves {
            let current: Option<i64> = tx
                .query_row("SELECT version FROM tier_metadata WHERE frame_id = ?1", [frame_id], |r| r.get(0))
                .optional()?;
            if current != Some(*version) {
                journal::set_step(&tx, *move_id, journal::ROLLED_BACK, Some("frame changed during the move"))?;
                journal::begin_discard(&tx, frame_id, to.level(), *version)?;
                continue;
            }
            stub_frame(&tx, frame_id, to)?;
            journal::set_step(&tx, *move_id, journal::DONE, None)?;
            done.push(frame_id.clone());
        }
        tx.commit()?;
        Ok(done)
    }

    /// Change the recorded tier of frames whose body stays where it is (warm ↔ cold, or a warm
    /// copy made while the archive is down: `held_back` says why the body stays local).
    pub fn set_tier(&self, moves: &[(i64, String)], to: Tier, held_back: Option<&str>) -> Result<()> {
        let mut c = self.lock_write()?;
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (move_id, frame_id) in moves {
            tx.execute("UPDATE frames SET tier_status = ?2 WHERE frame_id = ?1", params![frame_id, to.as_str()])?;
            tx.execute(
                "UPDATE tier_metadata SET tier_level = ?2, held_back = ?3, demoted_at = ?4 WHERE frame_id = ?1",
                params![frame_id, to.level(), held_back, now_seconds()],
            )?;
            if *move_id > 0 {
                journal::set_step(&tx, *move_id, journal::DONE, None)?;
            }
        }
        tx.commit()?;
        Ok(())
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

    pub fn journal_begin(&self, frames: &[(String, i64, i64, Option<String>, i64)]) -> Result<Vec<i64>> {
        let mut c = self.lock_write()?;
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut ids = Vec::with_capacity(frames.len());
        for (frame_id, from, to, sum, version) in frames {
            ids.push(journal::begin(&tx, frame_id, *from, *to, sum.as_deref(), *version)?);
        }
        tx.commit()?;
        Ok(ids)
    }

    pub fn journal_set(&self, steps: &[(i64, &str, Option<String>)]) -> Result<()> {
        let mut c = self.lock_write()?;
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (id, step, err) in steps {
            journal::set_step(&tx, *id, step, err.as_deref())?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn journal_open(&self) -> Result<Vec<journal::JournalEntry>> {
        let c = self.lock()?;
        journal::open_entries(&c)
    }

    pub fn journal_prune(&self, keep_secs: i64) -> Result<usize> {
        let c = self.lock()?;
        journal::prune(&c, keep_secs)
    }

    /// Apply a batch of access counts (one transaction, however many reads it stands for).
    pub fn apply_accesses(&self, batch: &[(String, i64, i64)]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut c = self.lock_write()?;
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut st = tx.prepare_cached(
                "UPDATE frames SET access_count = COALESCE(access_count, 0) + ?2,
                 last_accessed = max(COALESCE(last_accessed, 0), ?3) WHERE frame_id = ?1",
            )?;
            for (id, n, last_ms) in batch {
                st.execute(params![id, n, last_ms])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn counts(&self) -> Result<HotCounts> {
        let c = self.lock()?;
        let mut out = HotCounts::default();
        {
            let mut st = c.prepare_cached(
                "SELECT COALESCE(f.tier_status, 'hot'), count(*), COALESCE(sum(m.size_bytes), 0)
                 FROM frames f LEFT JOIN tier_metadata m ON m.frame_id = f.frame_id GROUP BY 1",
            )?;
            let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))?;
            for row in rows {
                let (t, n, b) = row?;
                let slot = match t.as_str() {
                    "warm" => &mut out.warm,
                    "cold" => &mut out.cold,
                    _ => &mut out.hot,
                };
                slot.frames += n;
                slot.bytes += b;
            }
        }
        {
            let mut st = c.prepare_cached(
                "SELECT held_back, count(*) FROM tier_metadata WHERE held_back IS NOT NULL GROUP BY 1",
            )?;
            let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                out.held_back.push(row?);
            }
        }
        let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let page_size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        out.file_bytes = pages * page_size;
        out.journal_backlog = journal::backlog(&c)?;
        Ok(out)
    }

    /// What a pressure check needs, cheaply: hot frames and their bytes (through the tier index),
    /// and the file's size.
    pub fn pressure_counts(&self) -> Result<(i64, i64, i64)> {
        let c = self.lock()?;
        let (frames, bytes): (i64, i64) = c
            .prepare_cached(
                "SELECT count(*), COALESCE(sum(m.size_bytes), 0) FROM frames f
                 LEFT JOIN tier_metadata m ON m.frame_id = f.frame_id WHERE COALESCE(f.tier_status, 'hot') = 'hot'",
            )?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let page_size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        Ok((frames, bytes, pages * page_size))
    }

    /// Frames that could move, filtered; `tiers` limits which current tiers are listed.
    pub fn candidates(&self, filter: &CandidateFilter) -> Result<Vec<Candidate>> {
        let c = self.lock()?;
        let mut sql = String::from(
            "SELECT f.frame_id, f.parent_frame_id, f.project_id, COALESCE(f.tier_status, 'hot'),
                    COALESCE(m.body_local, 1), COALESCE(f.state, 'active'), f.created_at, f.closed_at,
                    f.last_accessed, COALESCE(f.access_count, 0), m.size_bytes, COALESCE(f.retention_policy, 'default'),
                    COALESCE(m.pinned, 0)
             FROM frames f LEFT JOIN tier_metadata m ON m.frame_id = f.frame_id WHERE 1 = 1",
        );
        let mut args: Vec<SqlValue> = vec![];
        if let Some(p) = &filter.project_id {
            sql.push_str(" AND f.project_id = ?");
            args.push(SqlValue::Text(p.clone()));
        }
        if let Some(ids) = &filter.frame_ids {
            if ids.is_empty() {
                return Ok(vec![]);
            }
            sql.push_str(" AND f.frame_id IN (SELECT value FROM json_each(?))");
            args.push(SqlValue::Text(serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())));
        }
        if let Some(tiers) = &filter.tiers {
            let list: Vec<String> = tiers.iter().map(|t| format!("'{}'", t.as_str())).collect();
            sql.push_str(&format!(" AND COALESCE(f.tier_status, 'hot') IN ({})", list.join(",")));
        }
        sql.push_str(" ORDER BY COALESCE(f.closed_at, f.created_at), f.rowid");
        let mut st = c.prepare(&sql)?;
        let rows = st.query_map(params_from_iter(args.iter()), |r| {
            let tier: String = r.get(3)?;
            Ok(Candidate {
                frame_id: r.get(0)?,
                parent_id: r.get(1)?,
                project_id: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                tier: Tier::parse(&tier).unwrap_or(Tier::Hot).level(),
                body_local: r.get::<_, i64>(4)? != 0,
                active: r.get::<_, String>(5)? != "closed",
                created_s: int_or_none(r.get_ref(6)?).map(to_seconds),
                closed_s: int_or_none(r.get_ref(7)?).map(to_seconds),
                last_accessed_s: int_or_none(r.get_ref(8)?).map(to_seconds),
                access_count: r.get(9)?,
                size_bytes: r.get::<_, Option<i64>>(10)?.unwrap_or(-1),
                keep_forever: r.get::<_, String>(11)? == "keep_forever",
                pinned: r.get::<_, i64>(12)? != 0,
            })
        })?;
        let mut out = rows.collect::<std::result::Result<Vec<_>, _>>()?;
        // Sizes of frames StackMemory wrote directly are computed on first sight.
        let unknown: Vec<String> = out.iter().filter(|c| c.size_bytes < 0).map(|c| c.frame_id.clone()).collect();
        if !unknown.is_empty() {
            drop(st);
            let tx = c.unchecked_transaction()?;
            let mut sizes = HashMap::new();
            for id in &unknown {
                if let Some(m) = ensure_meta_row(&tx, id)? {
                    sizes.insert(id.clone(), m.size_bytes);
                }
            }
            tx.commit()?;
            for cand in out.iter_mut().filter(|c| c.size_bytes < 0) {
                cand.size_bytes = sizes.get(&cand.frame_id).copied().unwrap_or(0);
            }
        }
        Ok(out)
    }

    /// `ids` and their closed descendants (a closed frame's closed subtree moves with it), through
    /// StackMemory's parent index instead of a scan of every frame.
    pub fn with_closed_descendants(&self, ids: &[String]) -> Result<Vec<String>> {
        let c = self.lock()?;
        let mut st = c.prepare_cached(
            "WITH RECURSIVE d(id) AS (
               SELECT value FROM json_each(?1)
               UNION
               SELECT f.frame_id FROM frames f JOIN d ON f.parent_frame_id = d.id WHERE f.state = 'closed')
             SELECT id FROM d",
        )?;
        let list = serde_json::to_string(ids).map_err(|e| TierError::storage("frame ids", e))?;
        let rows = st.query_map([list], |r| r.get::<_, String>(0))?;
        let found: Vec<String> = rows.collect::<std::result::Result<_, _>>()?;
        // Keep the caller's order first, then the descendants.
        let mut seen: HashSet<String> = ids.iter().cloned().collect();
        let mut out = ids.to_vec();
        out.extend(found.into_iter().filter(|i| seen.insert(i.clone())));
        Ok(out)
    }

    /// Full-text search over hot rows and stubs (names only for stubs).
    pub fn search(&self, tokens: &[String], project_id: Option<&str>, limit: u32) -> Result<Vec<HotHit>> {
        if tokens.is_empty() {
            return Ok(vec![]);
        }
        let c = self.lock()?;
        let mut out = vec![];
        if self.has_fts {
            // Each token quoted: FTS5 operators in user input are plain words here.
            let q: Vec<String> = tokens.iter().map(|t| format!("\"{}\"", t.replace('"', "\"\""))).collect();
            let fts_query = q.join(" ");
            let mut st = c.prepare_cached(
                "SELECT f.frame_id, f.project_id, f.name, COALESCE(f.tier_status, 'hot'), bm25(frames_fts) AS score
                 FROM frames_fts JOIN frames f ON f.rowid = frames_fts.rowid
                 WHERE frames_fts MATCH ?1 AND (?2 IS NULL OR f.project_id = ?2)
                 ORDER BY score LIMIT ?3",
            )?;
            let rows = st.query_map(params![fts_query, project_id, limit], |r| {
                Ok(HotHit {
                    frame_id: r.get(0)?,
                    project_id: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                    name: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                    tier: r.get(3)?,
                    rank: -r.get::<_, f64>(4)?,
                })
            })?;
            for row in rows {
                out.push(row?);
            }
        } else {
            let mut sql = String::from(
                "SELECT frame_id, project_id, name, COALESCE(tier_status, 'hot') FROM frames WHERE (?1 IS NULL OR project_id = ?1)",
            );
            let mut args: Vec<SqlValue> = vec![project_id.map(|s| SqlValue::Text(s.into())).unwrap_or(SqlValue::Null)];
            for t in tokens {
                sql.push_str(" AND (COALESCE(name,'') || ' ' || COALESCE(digest_text,'')) LIKE ? ESCAPE '\\'");
                let esc = t.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
                args.push(SqlValue::Text(format!("%{esc}%")));
            }
            sql.push_str(&format!(" LIMIT {}", limit));
            let mut st = c.prepare(&sql)?;
            let rows = st.query_map(params_from_iter(args.iter()), |r| {
                Ok(HotHit {
                    frame_id: r.get(0)?,
                    project_id: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                    name: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                    tier: r.get(3)?,
                    rank: 1.0,
                })
            })?;
            for row in rows {
                out.push(row?);
            }
        }
        Ok(out)
    }

    pub fn kv_get(&self, key: &str) -> Result<Option<String>> {
        let c = self.lock()?;
        Ok(c.query_row("SELECT value FROM tier_kv WHERE key = ?1", [key], |r| r.get(0)).optional()?)
    }

    pub fn kv_set(&self, key: &str, value: &str) -> Result<()> {
        let c = self.lock()?;
        c.execute(
            "INSERT INTO tier_kv (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    pub fn set_pinned(&self, frame_id: &str, pinned: bool) -> Result<bool> {
        let mut c = self.lock_write()?;
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if ensure_meta_row(&tx, frame_id)?.is_none() {
            return Ok(false);
        }
        tx.execute("UPDATE tier_metadata SET pinned = ?2 WHERE frame_id = ?1", params![frame_id, pinned as i64])?;
        tx.commit()?;
        Ok(true)
    }

    /// Checkpoint the WAL and give free pages back to the file system.
    pub fn reclaim(&self) -> Result<i64> {
        let c = self.lock()?;
        let before = std::fs::metadata(&self.path).map(|m| m.len() as i64).unwrap_or(0);
        // VACUUM needs no other open transaction; when StackMemory holds one, skip it this time.
        let _ = c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
        let _ = c.execute_batch("VACUUM;");
        let _ = c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
        let after = std::fs::metadata(&self.path).map(|m| m.len() as i64).unwrap_or(0);
        Ok((before - after).max(0))
    }

    /// Remove stubs whose archived body was deleted by retention, when no child points at them.
    pub fn drop_expired_stubs(&self, ids: &[String]) -> Result<u64> {
        let mut c = self.lock_write()?;
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut n = 0;
        for id in ids {
            let meta = load_meta(&tx, id)?;
            let Some(meta) = meta else { continue };
            if meta.body_local {
                continue; // a local body is data: never dropped for a remote retention
            }
            let children: i64 =
                tx.query_row("SELECT count(*) FROM frames WHERE parent_frame_id = ?1", [id], |r| r.get(0))?;
            if children == 0 {
                tx.execute("DELETE FROM tier_metadata WHERE frame_id = ?1", [id])?;
                n += tx.execute("DELETE FROM frames WHERE frame_id = ?1", [id])? as u64;
            } else {
                tx.execute("UPDATE frames SET tier_status = 'expired' WHERE frame_id = ?1", [id])?;
            }
        }
        tx.commit()?;
        Ok(n)
    }
}

#[derive(Debug, Clone, Default)]
pub struct CandidateFilter {
    pub project_id: Option<String>,
    pub frame_ids: Option<Vec<String>>,
    pub tiers: Option<Vec<Tier>>,
}

fn int_or_none(v: ValueRef<'_>) -> Option<i64> {
    match v {
        ValueRef::Integer(i) => Some(i),
        ValueRef::Real(f) => Some(f as i64),
        _ => None,
    }
}

fn table_exists(c: &Connection, name: &str) -> Result<bool> {
    Ok(c.query_row("SELECT 1 FROM sqlite_master WHERE name = ?1", [name], |_| Ok(())).optional()?.is_some())
}

fn column_exists(c: &Connection, table: &str, col: &str) -> Result<bool> {
    let mut st = c.prepare(&format!("PRAGMA table_info({table})"))?;
    let names = st.query_map([], |r| r.get::<_, String>(1))?;
    for n in names {
        if n? == col {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Create StackMemory's schema where missing, then apply our own versioned additions.
fn migrate_schema(c: &Connection) -> Result<()> {
    c.execute_batch("BEGIN IMMEDIATE")?;
    let r = (|| -> Result<()> {
        let fresh = !table_exists(c, "frames")?;
        c.execute_batch(STACKMEMORY_SCHEMA)?;
        // FTS is StackMemory's: created with a new file, never added to an existing one.
        if fresh {
            c.execute_batch(STACKMEMORY_FTS)?;
        }
        c.execute_batch(
            "CREATE TABLE IF NOT EXISTS tier_schema (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
        )?;
        let current: i64 = c.query_row("SELECT COALESCE(max(version), 0) FROM tier_schema", [], |r| r.get(0))?;
        if current < 1 {
            for (col, decl) in [
                ("tier_status", "TEXT DEFAULT 'hot'"),
                ("last_accessed", "INTEGER"),
                ("access_count", "INTEGER DEFAULT 0"),
            ] {
                // Checked, not assumed: an older copy of this code may have added some already.
                if !column_exists(c, "frames", col)? {
                    c.execute_batch(&format!("ALTER TABLE frames ADD COLUMN {col} {decl}"))?;
                }
            }
            c.execute_batch(
                "CREATE TABLE IF NOT EXISTS tier_metadata (
                    frame_id TEXT PRIMARY KEY REFERENCES frames(frame_id) ON DELETE CASCADE,
                    tier_level INTEGER NOT NULL DEFAULT 1,
                    promoted_at INTEGER,
                    demoted_at INTEGER,
                    access_pattern TEXT,
                    size_bytes INTEGER NOT NULL DEFAULT 0,
                    checksum TEXT,
                    version INTEGER NOT NULL DEFAULT 1,
                    body_local INTEGER NOT NULL DEFAULT 1,
                    held_back TEXT,
                    pinned INTEGER NOT NULL DEFAULT 0,
                    shape TEXT,
                    updated_at INTEGER
                 );
                 CREATE INDEX IF NOT EXISTS idx_frames_tier_status ON frames(tier_status);
                 CREATE TABLE IF NOT EXISTS tier_kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
            )?;
            journal::create_schema(c)?;
            c.execute("INSERT INTO tier_schema (version, applied_at) VALUES (1, ?1)", [now_seconds()])?;
        }
        Ok(())
    })();
    match r {
        Ok(()) => {
            c.execute_batch("COMMIT")?;
            Ok(())
        }
        Err(e) => {
            let _ = c.execute_batch("ROLLBACK");
            Err(e)
        }
    }
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

fn sql_of(v: Option<&Value>, json_col: bool) -> SqlValue {
    match v {
        None | Some(Value::Null) => SqlValue::Null,
        Some(v) if json_col => SqlValue::Text(v.to_string()),
        Some(Value::String(s)) => SqlValue::Text(s.clone()),
        Some(Value::Bool(b)) => SqlValue::Integer(*b as i64),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(n.as_f64().unwrap_or(0.0)),
        },
        Some(other) => SqlValue::Text(other.to_string()),
    }
}

fn json_of(v: ValueRef<'_>, json_col: bool) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null),
        ValueRef::Text(t) => {
            let s = String::from_utf8_lossy(t);
            if json_col {
                // StackMemory writes JSON text; anything else is returned as the text it is.
                serde_json::from_str(&s).unwrap_or_else(|_| Value::String(s.into_owned()))
            } else {
                Value::String(s.into_owned())
            }
        }
        ValueRef::Blob(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
    }
}

/// Which keys a row had, when that differs from the standard columns in standard order, plus keys
/// we have no column for. Lets a bundle come back exactly as stored.
fn row_shape(row: &Row, cols: &[&str]) -> Option<Value> {
    let keys: Vec<&str> = row.keys().map(|k| k.as_str()).collect();
    let extras: Map<String, Value> =
        row.iter().filter(|(k, _)| !cols.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
    if keys == cols && extras.is_empty() {
        return None;
    }
    let mut m = Map::new();
    m.insert("k".into(), Value::from(keys));
    if !extras.is_empty() {
        m.insert("x".into(), Value::Object(extras));
    }
    Some(Value::Object(m))
}

fn bundle_shape(b: &Bundle) -> Option<String> {
    let mut shape = Map::new();
    if let Some(f) = row_shape(&b.frame, FRAME_COLS) {
        shape.insert("f".into(), f);
    }
    for (key, rows, id_col, cols) in
        [("e", &b.events, "event_id", EVENT_COLS), ("a", &b.anchors, "anchor_id", ANCHOR_COLS)]
    {
        let mut per = Map::new();
        for r in rows.iter() {
            if let Some(s) = row_shape(r, cols) {
                per.insert(r.get(id_col).and_then(Value::as_str).unwrap_or("").to_string(), s);
            }
        }
        if !per.is_empty() {
            shape.insert(key.into(), Value::Object(per));
        }
    }
    (!shape.is_empty()).then(|| Value::Object(shape).to_string())
}

fn apply_shape(cols_row: Row, shape: Option<&Value>, cols: &[&str]) -> Row {
    let Some(Value::Object(s)) = shape else {
        return cols_row;
    };
    let keys = s.get("k").and_then(Value::as_array);
    let extras = s.get("x").and_then(Value::as_object);
    let Some(keys) = keys else { return cols_row };
    let mut out = Map::new();
    for k in keys.iter().filter_map(Value::as_str) {
        if cols.contains(&k) {
            out.insert(k.to_string(), cols_row.get(k).cloned().unwrap_or(Value::Null));
        } else if let Some(v) = extras.and_then(|x| x.get(k)) {
            out.insert(k.to_string(), v.clone());
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
        let exists = tx.query_row("SELECT 1 FROM frames WHERE frame_id = ?1", [parent], |_| Ok(())).optional()?;
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

    tx.execute("DELETE FROM events WHERE frame_id = ?1", [fid])?;
    tx.execute("DELETE FROM anchors WHERE frame_id = ?1", [fid])?;
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
    tx.execute(
        "INSERT INTO tier_metadata (frame_id, tier_level, size_bytes, checksum, version, body_local, held_back, shape, updated_at)
         VALUES (?1, 1, ?2, ?3, ?4, 1, NULL, ?5, ?6)
         ON CONFLICT(frame_id) DO UPDATE SET tier_level = 1, size_bytes = excluded.size_bytes, checksum = excluded.checksum,
           version = excluded.version, body_local = 1, held_back = NULL, shape = excluded.shape, updated_at = excluded.updated_at",
        params![fid, size, checksum, new_version, bundle_shape(b), now_seconds()],
    )?;
    Ok(new_version)
}

fn stub_frame(tx: &Transaction<'_>, frame_id: &str, to: Tier) -> Result<()> {
    tx.execute("DELETE FROM events WHERE frame_id = ?1", [frame_id])?;
    tx.execute("DELETE FROM anchors WHERE frame_id = ?1", [frame_id])?;
    tx.execute(
        "UPDATE frames SET inputs = '{}', outputs = '{}', digest_text = NULL, digest_json = '{}', tier_status = ?2
         WHERE frame_id = ?1",
        params![frame_id, to.as_str()],
    )?;
    tx.execute(
        "UPDATE tier_metadata SET tier_level = ?2, body_local = 0, held_back = NULL, demoted_at = ?3 WHERE frame_id = ?1",
        params![frame_id, to.level(), now_seconds()],
    )?;
    Ok(())
}

fn load_meta(c: &Connection, frame_id: &str) -> Result<Option<FrameMeta>> {
    // prepare_cached: `query_row` compiles the SQL again on every call, and this is on every read.
    Ok(c
        .prepare_cached(
            "SELECT f.frame_id, COALESCE(f.tier_status, 'hot'), COALESCE(m.body_local, 1), COALESCE(m.version, 0), m.checksum,
                    COALESCE(m.size_bytes, 0), COALESCE(f.access_count, 0), f.last_accessed, m.held_back, COALESCE(m.pinned, 0)
             FROM frames f LEFT JOIN tier_metadata m ON m.frame_id = f.frame_id WHERE f.frame_id = ?1",
        )?
        .query_row(
            [frame_id],
            |r| {
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
                })
            },
        )
        .optional()?)
}

fn read_rows(c: &Connection, sql: &str, frame_id: &str, cols: &[&str], json_cols: &[&str]) -> Result<Vec<Row>> {
    let mut st = c.prepare_cached(sql)?;
    let mut rows = st.query([frame_id])?;
    let mut out = vec![];
    while let Some(r) = rows.next()? {
        let mut m = Map::new();
        for (i, col) in cols.iter().enumerate() {
            m.insert(col.to_string(), json_of(r.get_ref(i)?, json_cols.contains(col)));
        }
        out.push(m);
    }
    Ok(out)
}

fn load_record(c: &Connection, frame_id: &str) -> Result<Option<HotRecord>> {
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
fn ensure_meta_row(c: &Connection, frame_id: &str) -> Result<Option<FrameMeta>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::normalize_bundle;

    fn fixtures() -> Vec<Bundle> {
        let v: Value = serde_json::from_str(include_str!("../../../__test__/fixtures/frames.json")).expect("json");
        v.as_array().expect("array").iter().map(|b| normalize_bundle(b.clone()).expect("valid")).collect()
    }

    #[test]
    fn round_trip_is_exact_and_reopen_is_idempotent() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("context.db");
        let hot = HotTier::open(&path).expect("open");
        let fx = fixtures();
        // Child before parent in the call: the batch is reordered.
        let rev: Vec<Bundle> = fx.iter().rev().cloned().collect();
        hot.store_many(&rev, 1 << 22).expect("store");
        for b in &fx {
            let rec = hot.load(b.frame_id()).expect("load").expect("found");
            assert_eq!(rec.bundle.as_ref().map(|x| x.to_value()), Some(b.to_value()));
        }
        drop(hot);
        let hot = HotTier::open(&path).expect("reopen");
        assert_eq!(hot.schema_version().expect("v"), SCHEMA_VERSION);
        let counts = hot.counts().expect("counts");
        assert_eq!(counts.hot.frames, 3);
    }

    #[test]
    fn stub_keeps_tree_and_restore_brings_body_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let hot = HotTier::open(&dir.path().join("c.db")).expect("open");
        let fx = fixtures();
        hot.store_many(&fx, 1 << 22).expect("store");
        let child = &fx[1];
        let meta = hot.meta(child.frame_id()).expect("meta").expect("some");
        let mid =
            hot.journal_begin(&[(child.frame_id().into(), 1, 3, meta.checksum.clone(), meta.version)]).expect("j")[0];
        let done = hot.finish_demotions(&[(mid, child.frame_id().into(), meta.version)], Tier::Cold).expect("stub");
        assert_eq!(done.len(), 1);
        let rec = hot.load(child.frame_id()).expect("load").expect("found");
        assert!(rec.bundle.is_none());
        assert_eq!(rec.stub["name"], child.frame["name"]);
        assert_eq!(rec.meta.tier, 3);
        let mid2 =
            hot.journal_begin(&[(child.frame_id().into(), 3, 1, meta.checksum.clone(), meta.version)]).expect("j")[0];
        hot.restore(child, meta.checksum.as_deref().unwrap_or(""), meta.version, mid2).expect("restore");
        let rec = hot.load(child.frame_id()).expect("load").expect("found");
        assert_eq!(rec.bundle.map(|b| b.to_value()), Some(child.to_value()));
    }

    #[test]
    fn bad_parent_and_foreign_event_ids_change_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        let hot = HotTier::open(&dir.path().join("c.db")).expect("open");
        let fx = fixtures();
        hot.store_many(&fx[..1], 1 << 22).expect("store");
        let mut orphan = fx[2].clone();
        orphan.frame.insert("parent_frame_id".into(), Value::from("nope"));
        let e = hot.store_many(&[orphan], 1 << 22).expect_err("must fail");
        assert_eq!(e.code(), "ERR_INVALID_FRAME");
        let mut thief = fx[2].clone();
        thief.events[0].insert("event_id".into(), fx[0].events[0]["event_id"].clone());
        let e = hot.store_many(&[thief], 1 << 22).expect_err("must fail");
        assert!(e.to_string().contains("already belongs"), "{e}");
        assert_eq!(hot.counts().expect("c").hot.frames, 1);
        let e = hot.store_many(&fx[2..], 100).expect_err("too large");
        assert_eq!(e.code(), "ERR_FRAME_TOO_LARGE");
    }
}
