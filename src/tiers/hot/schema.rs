//! The file's schema: StackMemory's own tables (created only for a new file, exactly as StackMemory
//! declares them) and our additive, versioned bookkeeping (`tier_schema`), upgraded idempotently.

use rusqlite::{Connection, OptionalExtension};

use super::journal;
use crate::model::frame::FRAME_COLS;
use crate::model::units::now_seconds;
use crate::model::Result;

/// Version of our own additions to the file (not StackMemory's schema).
pub const SCHEMA_VERSION: i64 = 4;

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

/// `tier_changes.cols` bits: bit `i` for `FRAME_COLS[i]`, and these for the frame's other rows.
pub const CHANGED_EVENTS: i64 = 1 << 20;
pub const CHANGED_ANCHORS: i64 = 1 << 21;

/// The change triggers: whoever writes a frame's rows (StackMemory's own connection, another
/// process, or us), `tier_changes.seq` counts it and `cols` records which parts were written.
/// `seq` is what tells a move that its source changed while its copy was in flight; `cols` (reset
/// by our own writes of the frame) is what tells that a stub gained rows or column writes that its
/// archived body lacks. They only add a row to `tier_changes`: StackMemory's statements and its
/// FTS triggers behave exactly as before. `CREATE ... IF NOT EXISTS` on every open, because a table
/// StackMemory rebuilds drops its triggers.
fn change_triggers(c: &Connection) -> Result<String> {
    let bump = |id: &str, cols: &str| {
        format!(
            "INSERT INTO tier_changes (frame_id, seq, cols) VALUES ({id}, 1, {cols})
               ON CONFLICT(frame_id) DO UPDATE SET seq = seq + 1, cols = cols | excluded.cols;"
        )
    };
    // Only columns the table has: a trigger naming a missing column would fail StackMemory's writes.
    let mut mask: Vec<String> = vec![];
    for (i, col) in FRAME_COLS.iter().enumerate() {
        if column_exists(c, "frames", col)? {
            mask.push(format!("((old.{col} IS NOT new.{col}) << {i})"));
        }
    }
    let mask = mask.join(" | ");
    let mut sql = format!(
        "CREATE TRIGGER IF NOT EXISTS tier_frames_ai AFTER INSERT ON frames BEGIN {} END;
         CREATE TRIGGER IF NOT EXISTS tier_frames_au AFTER UPDATE ON frames WHEN ({mask}) <> 0 BEGIN {} END;
         CREATE TRIGGER IF NOT EXISTS tier_frames_ad AFTER DELETE ON frames BEGIN {} END;",
        bump("new.frame_id", "0"),
        bump("new.frame_id", &format!("({mask})")),
        bump("old.frame_id", "0"),
    );
    for (table, bit) in [("events", CHANGED_EVENTS), ("anchors", CHANGED_ANCHORS)] {
        let bit = bit.to_string();
        let (new, old) = (bump("new.frame_id", &bit), bump("old.frame_id", &bit));
        // An update that moves a row to another frame changes the old frame too.
        let moved = format!(
            "INSERT INTO tier_changes (frame_id, seq, cols) SELECT old.frame_id, 1, {bit}
               WHERE old.frame_id IS NOT new.frame_id
               ON CONFLICT(frame_id) DO UPDATE SET seq = seq + 1, cols = cols | excluded.cols;"
        );
        sql.push_str(&format!(
            "CREATE TRIGGER IF NOT EXISTS tier_{table}_ai AFTER INSERT ON {table} BEGIN {new} END;
             CREATE TRIGGER IF NOT EXISTS tier_{table}_ad AFTER DELETE ON {table} BEGIN {old} END;
             CREATE TRIGGER IF NOT EXISTS tier_{table}_au AFTER UPDATE ON {table} BEGIN {new} {moved} END;"
        ));
    }
    // StackMemory numbers an event `MAX(seq) + 1` over the frame's rows, read before its INSERT
    // and outside a transaction. A restore that commits between the two (the frame's archived
    // events come back) made that event a second row with the same `seq`: such a row is moved
    // after the frame's last event, so numbers stay unique and the late write stays last.
    sql.push_str(
        "CREATE TRIGGER IF NOT EXISTS tier_events_seq AFTER INSERT ON events
           WHEN EXISTS (SELECT 1 FROM events e WHERE e.frame_id = new.frame_id AND e.seq = new.seq
                          AND e.rowid <> new.rowid)
         BEGIN
           UPDATE events SET seq = (SELECT MAX(seq) FROM events WHERE frame_id = new.frame_id) + 1
             WHERE rowid = new.rowid;
         END;",
    );
    Ok(sql)
}

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
        if current < 2 {
            c.execute_batch(
                "CREATE TABLE IF NOT EXISTS tier_changes (
                    frame_id TEXT PRIMARY KEY,
                    seq INTEGER NOT NULL DEFAULT 0,
                    cols INTEGER NOT NULL DEFAULT 0
                 ) WITHOUT ROWID;",
            )?;
            journal::add_change_seq(c)?;
            // Access counts in a table of our own: an UPDATE of `frames` (even of our own columns)
            // fires StackMemory's FTS trigger, which reindexes the frame's text on every flush.
            c.execute_batch(
                "CREATE TABLE IF NOT EXISTS tier_access (
                    frame_id TEXT PRIMARY KEY,
                    access_count INTEGER NOT NULL DEFAULT 0,
                    last_accessed INTEGER
                 ) WITHOUT ROWID;",
            )?;
            c.execute("INSERT INTO tier_schema (version, applied_at) VALUES (2, ?1)", [now_seconds()])?;
        }
        if current < 3 {
            // Pages of move candidates by tier and age read from this index (`select.rs`), so a
            // bulk move's fixed cost per call does not grow with the store.
            let age = super::select::AGE_S.replace("f.", "");
            c.execute_batch(&format!("CREATE INDEX IF NOT EXISTS idx_frames_tier_age ON frames(tier_status, {age})"))?;
            journal::add_run_id(c)?;
            c.execute_batch(super::runs::SCHEMA)?;
            c.execute("INSERT INTO tier_schema (version, applied_at) VALUES (3, ?1)", [now_seconds()])?;
        }
        if current < 4 {
            c.execute_batch(super::dictionaries::SCHEMA)?;
            c.execute("INSERT INTO tier_schema (version, applied_at) VALUES (4, ?1)", [now_seconds()])?;
        }
        c.execute_batch(&change_triggers(c)?)?;
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
