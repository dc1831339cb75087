//! The file's schema: StackMemory's own tables (created only for a new file, exactly as StackMemory
//! declares them) and our additive, versioned bookkeeping (`tier_schema`), upgraded idempotently.

use rusqlite::{Connection, OptionalExtension};

use super::journal;
use crate::model::units::now_seconds;
use crate::model::Result;

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

pub(super) fn table_exists(c: &Connection, name: &str) -> Result<bool> {
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

/// Create StackMemory's schema where missing, then apply our own versioned additions (an upgrade,
/// never a move of frames).
pub(super) fn upgrade(c: &Connection) -> Result<()> {
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
