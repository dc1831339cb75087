//! Bulk runs as rows of the file (`tier_runs`): what a run was asked, where it stands (counters and
//! its checkpoint cursor), so a run killed, cancelled or failed is resumed from its checkpoint; and
//! the moves it made (the journal's entries under its id), for rollback and for proof.

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::HotTier;
use crate::model::units::now_seconds;
use crate::model::Result;

pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS tier_runs (
    run_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    request TEXT NOT NULL,
    state TEXT NOT NULL,
    total INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    cursor TEXT,
    error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    finished_at INTEGER
);";

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub run_id: String,
    /// `migrate` or `rollback`.
    pub kind: String,
    /// The request and its options, as JSON (what a resume runs again).
    pub request: String,
    /// `running`, `cancelled`, `failed`, `done`.
    pub state: String,
    pub total: i64,
    pub done: i64,
    pub skipped: i64,
    pub failed: i64,
    pub bytes: i64,
    /// Where to continue (JSON, the run's own format).
    pub cursor: Option<String>,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

/// A move a run made, from the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunMove {
    pub frame_id: String,
    pub from_tier: i64,
    pub to_tier: i64,
    /// The frame's change counter right after the move (a rollback refuses a frame written since).
    pub after_seq: Option<i64>,
    pub move_id: i64,
}

impl RunRecord {
    /// A run record that is never saved (the policy's small moves).
    pub fn transient<T: Serialize>(request: &T) -> RunRecord {
        let now = now_seconds();
        RunRecord {
            run_id: String::new(),
            kind: "migrate".into(),
            request: serde_json::to_string(request).unwrap_or_default(),
            state: "running".into(),
            total: 0,
            done: 0,
            skipped: 0,
            failed: 0,
            bytes: 0,
            cursor: None,
            error: None,
            created_at: now,
            updated_at: now,
            finished_at: None,
        }
    }
}

const COLS: &str = "run_id, kind, request, state, total, done, skipped, failed, bytes, cursor, error, created_at, updated_at, finished_at";

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        run_id: r.get(0)?,
        kind: r.get(1)?,
        request: r.get(2)?,
        state: r.get(3)?,
        total: r.get(4)?,
        done: r.get(5)?,
        skipped: r.get(6)?,
        failed: r.get(7)?,
        bytes: r.get(8)?,
        cursor: r.get(9)?,
        error: r.get(10)?,
        created_at: r.get(11)?,
        updated_at: r.get(12)?,
        finished_at: r.get(13)?,
    })
}

impl HotTier {
    /// Saves a run (insert or update): its checkpoint.
    pub fn run_save(&self, run: &RunRecord) -> Result<()> {
        let c = self.lock_write()?;
        c.prepare_cached(&format!(
            "INSERT INTO tier_runs ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
             ON CONFLICT(run_id) DO UPDATE SET state = excluded.state, total = excluded.total, done = excluded.done,
               skipped = excluded.skipped, failed = excluded.failed, bytes = excluded.bytes, cursor = excluded.cursor,
               error = excluded.error, updated_at = excluded.updated_at, finished_at = excluded.finished_at"
        ))?
        .execute(params![
            run.run_id,
            run.kind,
            run.request,
            run.state,
            run.total,
            run.done,
            run.skipped,
            run.failed,
            run.bytes,
            run.cursor,
            run.error,
            run.created_at,
            now_seconds(),
            run.finished_at
        ])?;
        Ok(())
    }

    pub fn run_get(&self, run_id: &str) -> Result<Option<RunRecord>> {
        let c = self.lock()?;
        let mut st = c.prepare_cached(&format!("SELECT {COLS} FROM tier_runs WHERE run_id = ?1"))?;
        Ok(st.query_row([run_id], record).optional()?)
    }

    /// The newest run still `running` whose checkpoint was saved at `since_s` or later: a bulk run
    /// going on in some manager on this file (a run killed mid-way stays `running` with an old
    /// checkpoint, and is not live).
    pub fn run_live(&self, since_s: i64) -> Result<Option<String>> {
        let c = self.lock()?;
        let mut st = c.prepare_cached(
            "SELECT run_id FROM tier_runs WHERE state = 'running' AND updated_at >= ?1
             ORDER BY updated_at DESC, rowid DESC LIMIT 1",
        )?;
        Ok(st.query_row([since_s], |r| r.get(0)).optional()?)
    }

    /// The newest runs first.
    pub fn run_list(&self, limit: usize) -> Result<Vec<RunRecord>> {
        let c = self.lock()?;
        let mut st =
            c.prepare_cached(&format!("SELECT {COLS} FROM tier_runs ORDER BY created_at DESC, rowid DESC LIMIT ?1"))?;
        let rows = st.query_map([limit as i64], record)?;
        Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
    }

    /// The moves a run finished, oldest first.
    pub fn run_moves(&self, run_id: &str) -> Result<Vec<RunMove>> {
        let c = self.lock()?;
        let mut st = c.prepare_cached(
            "SELECT frame_id, from_tier, to_tier, after_seq, move_id FROM tier_journal
             WHERE run_id = ?1 AND step = 'done' ORDER BY move_id",
        )?;
        let rows = st.query_map([run_id], |r| {
            Ok(RunMove {
                frame_id: r.get(0)?,
                from_tier: r.get(1)?,
                to_tier: r.get(2)?,
                after_seq: r.get(3)?,
                move_id: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
    }

    /// How many frames a run has moved, from the journal (exact even after a kill between two
    /// checkpoints: the frames moved since the last one are counted too).
    pub fn run_done_count(&self, run_id: &str) -> Result<i64> {
        let c = self.lock()?;
        let mut st =
            c.prepare_cached("SELECT count(DISTINCT frame_id) FROM tier_journal WHERE run_id = ?1 AND step = 'done'")?;
        Ok(st.query_row([run_id], |r| r.get(0))?)
    }
}
