//! The hot tier: StackMemory's own SQLite `context.db` (or a new file with the same schema).
//!
//! We share the file with StackMemory's better-sqlite3 connection, so: WAL, a busy timeout, short
//! `BEGIN IMMEDIATE` transactions, and we never rewrite StackMemory's tables beyond rows of frames
//! we were asked to store or move. Our bookkeeping is additive and versioned (`tier_schema`):
//! three columns on `frames` (`tier_status`, `last_accessed`, `access_count`, as the seed design
//! asks) and our own tables (`tier_metadata`, `tier_journal`, `tier_kv`, `tier_changes` with its
//! change triggers, `tier_access`). Live access counts go to `tier_access`, not to the `frames`
//! columns: any UPDATE of `frames` fires StackMemory's FTS trigger and reindexes the frame.
//!
//! A demoted frame keeps a *stub* row (ids, tree, name, state, times, tier) so StackMemory's stack
//! tree, its foreign keys and FTS on names keep working; its events and anchors go with the body.
//!
//! Every method is synchronous; callers run them through [`HotTier::call`] on tokio's blocking
//! pool, never on the JS thread. The files: `schema` (tables and upgrades), `write` (upserts and
//! restores), `read` (bookkeeping and bundles back), `stubs` (where a body is), `select`
//! (candidates for moves), `search`, `bookkeeping` (counts, accesses, pins, state), `journal` (the
//! move journal's table), `rows` (values and shapes), `copy_guard` (no second SQLite library).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::model::{Result, TierError};

mod body_json;
mod bookkeeping;
pub mod config;
pub mod copy_guard;
mod dictionaries;
pub mod journal;
pub mod lease;
pub mod library;
mod merge;
mod read;
mod rows;
pub mod runs;
mod schema;
mod search;
mod select;
mod stubs;
mod write;

pub use body_json::HotBody;
pub use bookkeeping::{HotCounts, TierCount};
pub use config::SqliteConfig;
pub use dictionaries::StoredDictionary;
pub use journal::NewMove;
pub use lease::LeaseHolder;
pub use read::{FrameMeta, HotRecord};
pub use runs::{RunMove, RunRecord};
pub use schema::SCHEMA_VERSION;
pub use search::HotHit;
pub use select::{Candidate, CandidateFilter, Expired, Page};
pub use stubs::Demotion;
pub use write::Restore;

pub struct HotTier {
    conn: Mutex<Connection>,
    /// A second connection for the read path's fast lane (`body_json.rs`): WAL lets it read while
    /// `conn` writes or moves.
    reader: Mutex<Connection>,
    /// Stops us before a second SQLite copy in this process and we corrupt the file together.
    guard: copy_guard::CopyGuard,
    path: PathBuf,
    has_fts: bool,
}

impl HotTier {
    pub fn open(path: &Path) -> Result<HotTier> {
        library::ensure_ready()?;
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
        let guard = copy_guard::CopyGuard::register(path);
        conn.busy_timeout(Duration::from_secs(10))?;
        // Same settings as StackMemory's own connection.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Now our library maps the WAL index: any other mapping is a foreign library's.
        guard.check()?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.set_prepared_statement_cache_capacity(128);
        schema::upgrade(&conn)?;
        let has_fts = schema::table_exists(&conn, "frames_fts")?;
        let reader =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(|e| TierError::storage(format!("cannot open {}", path.display()), e))?;
        reader.busy_timeout(Duration::from_secs(2))?;
        reader.set_prepared_statement_cache_capacity(16);
        Ok(HotTier { conn: Mutex::new(conn), reader: Mutex::new(reader), guard, path: path.to_path_buf(), has_fts })
    }

    /// `open` on tokio's blocking pool, shared: how the manager opens its hot tier.
    pub async fn open_shared(path: PathBuf) -> Result<Arc<HotTier>> {
        in_background(move || HotTier::open(&path).map(Arc::new)).await
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on tokio's blocking pool: SQLite work never runs on the async threads (nor on the
    /// JS thread), and the caller awaits it.
    pub async fn call<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&HotTier) -> Result<T> + Send + 'static,
    {
        let me = self.clone();
        in_background(move || f(&me)).await
    }

    /// For reads: no foreign-library check (a read racing a foreign writer can fail, but cannot
    /// damage the file), so reads cost nothing for it.
    fn lock(&self) -> Result<MutexGuard<'_, Connection>> {
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
}

async fn in_background<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| TierError::storage("background task failed", e))?
}

#[cfg(test)]
mod search_props;
#[cfg(test)]
mod tests;
