//! The move journal: one row per frame move, kept in the hot tier's SQLite file so that a step of
//! a move and the journal entry recording it commit in the same transaction.
//!
//! Steps: `started` (nothing copied yet, or a copy in progress) → `verified` (the destination holds
//! a copy whose checksum matched) → `done`, or → `rolled_back`. There is no separate
//! "source removed" step: removing the SQLite source (shrinking a row to a stub) happens in the same
//! transaction that marks the entry `done`. For moves whose source is remote (warm/cold → hot), the
//! SQLite restore and `verified` commit together and the remote delete follows; recovery finishes
//! it. Recovery on open (see `Mover::recover`):
//! - `started`: the source is intact; undo any partial copy (delete remote copies of a frame that is
//!   still hot; nothing to undo for restores, which are atomic) and mark `rolled_back`;
//! - `verified`: finish the move (stub the source or delete the remote copies) and mark `done`.

use rusqlite::{params, Connection};
use serde::Serialize;

use crate::model::units::now_seconds;
use rusqlite::TransactionBehavior;

use super::HotTier;
use crate::model::Result;

pub const STARTED: &str = "started";
pub const VERIFIED: &str = "verified";
pub const DONE: &str = "done";
pub const ROLLED_BACK: &str = "rolled_back";

/// What a move is for; the discard kind records "remote copies of this frame are stale, delete
/// them" (after a frame was re-stored or deleted locally while archived).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JournalEntry {
    pub move_id: i64,
    pub frame_id: String,
    pub from_tier: i64,
    pub to_tier: i64,
    pub step: String,
    pub checksum: Option<String>,
    pub version: i64,
    /// The frame's `tier_changes.seq` when its copy was taken (moves of a local body): finishing
    /// the move is only allowed while it is unchanged.
    pub change_seq: i64,
    pub started_at: i64,
    pub updated_at: i64,
    pub error: Option<String>,
}

/// A move about to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMove {
    pub frame_id: String,
    pub from: i64,
    pub to: i64,
    /// The checksum of the body being copied (a copy of a local body), if any.
    pub checksum: Option<String>,
    pub version: i64,
    pub change_seq: i64,
    /// The bulk run (`tier_runs`) this move is part of.
    pub run_id: Option<String>,
}

impl NewMove {
    /// A move with no copy of a local body (warm ↔ cold shifts of a stub).
    pub fn shift(frame_id: &str, from: i64, to: i64) -> NewMove {
        NewMove { frame_id: frame_id.to_string(), from, to, checksum: None, version: 0, change_seq: 0, run_id: None }
    }
}

pub fn create_schema(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS tier_journal (
            move_id INTEGER PRIMARY KEY AUTOINCREMENT,
            frame_id TEXT NOT NULL,
            from_tier INTEGER NOT NULL,
            to_tier INTEGER NOT NULL,
            step TEXT NOT NULL,
            checksum TEXT,
            version INTEGER NOT NULL DEFAULT 0,
            started_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            error TEXT
        );
        CREATE INDEX IF NOT EXISTS idx_tier_journal_open ON tier_journal(step) WHERE step IN ('started', 'verified');
        CREATE INDEX IF NOT EXISTS idx_tier_journal_frame ON tier_journal(frame_id);",
    )?;
    Ok(())
}

/// Schema v3: the run a move belongs to, and the frame's change counter right after the move
/// (a rollback refuses a frame written since).
pub fn add_run_id(conn: &Connection) -> Result<()> {
    for (col, decl) in [("run_id", "TEXT"), ("after_seq", "INTEGER")] {
        if conn.prepare(&format!("SELECT {col} FROM tier_journal LIMIT 0")).is_err() {
            conn.execute_batch(&format!("ALTER TABLE tier_journal ADD COLUMN {col} {decl}"))?;
        }
    }
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS idx_tier_journal_run ON tier_journal(run_id) WHERE run_id IS NOT NULL",
    )?;
    Ok(())
}

/// Records the frame's change counter after a move's own writes (see `add_run_id`).
pub fn set_after_seq(conn: &Connection, move_id: i64, frame_id: &str) -> Result<()> {
    conn.prepare_cached(
        "UPDATE tier_journal SET after_seq = (SELECT seq FROM tier_changes WHERE frame_id = ?2) WHERE move_id = ?1",
    )?
    .execute(params![move_id, frame_id])?;
    Ok(())
}

/// Schema v2: the change counter a move saw (see `JournalEntry::change_seq`).
pub fn add_change_seq(conn: &Connection) -> Result<()> {
    let has = conn.prepare("SELECT change_seq FROM tier_journal LIMIT 0").is_ok();
    if !has {
        conn.execute_batch("ALTER TABLE tier_journal ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0")?;
    }
    Ok(())
}

pub fn begin(conn: &Connection, m: &NewMove) -> Result<i64> {
    let now = now_seconds();
    conn.prepare_cached(
        "INSERT INTO tier_journal (frame_id, from_tier, to_tier, step, checksum, version, change_seq, run_id, started_at, updated_at)
         VALUES (?1, ?2, ?3, 'started', ?4, ?5, ?6, ?7, ?8, ?8)",
    )?
    .execute(params![m.frame_id, m.from, m.to, m.checksum, m.version, m.change_seq, m.run_id, now])?;
    Ok(conn.last_insert_rowid())
}

/// Record a discard: remote copies of `frame_id` are stale and must go (finished by recovery).
pub fn begin_discard(conn: &Connection, frame_id: &str, from: i64, version: i64) -> Result<i64> {
    let now = now_seconds();
    conn.prepare_cached(
        "INSERT INTO tier_journal (frame_id, from_tier, to_tier, step, checksum, version, started_at, updated_at)
         VALUES (?1, ?2, 0, 'verified', NULL, ?3, ?4, ?4)",
    )?
    .execute(params![frame_id, from, version, now])?;
    Ok(conn.last_insert_rowid())
}

pub fn set_step(conn: &Connection, move_id: i64, step: &str, error: Option<&str>) -> Result<()> {
    conn.prepare_cached(
        "UPDATE tier_journal SET step = ?2, updated_at = ?3, error = COALESCE(?4, error) WHERE move_id = ?1",
    )?
    .execute(params![move_id, step, now_seconds(), error])?;
    Ok(())
}

pub fn open_entries(conn: &Connection) -> Result<Vec<JournalEntry>> {
    let mut st = conn.prepare_cached(
        "SELECT move_id, frame_id, from_tier, to_tier, step, checksum, version, change_seq, started_at, updated_at, error
         FROM tier_journal WHERE step IN ('started', 'verified') ORDER BY move_id",
    )?;
    let rows = st.query_map([], row_to_entry)?;
    Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
}

pub fn backlog(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM tier_journal WHERE step IN ('started', 'verified')")?
        .query_row([], |r| r.get(0))?)
}

/// Finished entries older than `keep_secs` are deleted so the journal does not grow forever.
pub fn prune(conn: &Connection, keep_secs: i64) -> Result<usize> {
    Ok(conn
        .prepare_cached("DELETE FROM tier_journal WHERE step IN ('done', 'rolled_back') AND updated_at < ?1")?
        .execute([now_seconds() - keep_secs])?)
}

fn row_to_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<JournalEntry> {
    Ok(JournalEntry {
        move_id: r.get(0)?,
        frame_id: r.get(1)?,
        from_tier: r.get(2)?,
        to_tier: r.get(3)?,
        step: r.get(4)?,
        checksum: r.get(5)?,
        version: r.get(6)?,
        change_seq: r.get(7)?,
        started_at: r.get(8)?,
        updated_at: r.get(9)?,
        error: r.get(10)?,
    })
}

impl HotTier {
    pub fn journal_begin(&self, moves: &[NewMove]) -> Result<Vec<i64>> {
        let mut c = self.lock_write()?;
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut ids = Vec::with_capacity(moves.len());
        for m in moves {
            ids.push(begin(&tx, m)?);
        }
        tx.commit()?;
        Ok(ids)
    }

    pub fn journal_set(&self, steps: &[(i64, &str, Option<String>)]) -> Result<()> {
        let mut c = self.lock_write()?;
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (id, step, err) in steps {
            set_step(&tx, *id, step, err.as_deref())?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The same step (and note) for several moves, in one transaction.
    pub fn journal_mark(&self, move_ids: &[i64], step: &str, note: Option<&str>) -> Result<()> {
        let mut c = self.lock_write()?;
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for id in move_ids {
            set_step(&tx, *id, step, note)?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn journal_open(&self) -> Result<Vec<JournalEntry>> {
        let c = self.lock()?;
        open_entries(&c)
    }

    pub fn journal_prune(&self, keep_secs: i64) -> Result<usize> {
        let c = self.lock()?;
        prune(&c, keep_secs)
    }
}
