//! Refuses to share a database file with a second copy of SQLite inside this process.
//!
//! SQLite's locks are POSIX advisory locks, which belong to the process, not to the connection.
//! One copy of the library coordinates its own connections in memory; two copies in one process
//! (our bundled SQLite and, say, the one inside better-sqlite3 that StackMemory uses) cannot see
//! each other's locks at all, so both write at once and the file is corrupted
//! (<https://www.sqlite.org/howtocorrupt.html>, "multiple copies of SQLite linked into the same
//! application"; reproduced here within a second of concurrent writes). Across processes the
//! locks work, and sharing the file with StackMemory is safe.
//!
//! So before using the file we count the descriptors this process holds on it: more than our
//! own connections hold means another library opened it, and we stop with `ERR_STORAGE` instead
//! of corrupting it. Linux only (`/proc/self/fd`); elsewhere the check is skipped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use crate::model::{Result, TierError};

/// Our connections per canonical file path: (open now, most open at once since the count was
/// last zero). Each connection holds one descriptor on the file, but SQLite keeps a closed
/// connection's descriptor open while another connection of the same library holds a lock on
/// the file (closing it would drop that lock), and reuses it later; it closes them all when the
/// last connection goes. So our library may hold up to the peak, not just the open count.
static OURS: LazyLock<Mutex<HashMap<PathBuf, (usize, usize)>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// One of our connections on a file; unregisters itself when dropped.
pub struct CopyGuard {
    path: PathBuf,
    last_ok: Mutex<Option<Instant>>,
}

/// How long a passed check stands for reads (see `check_recent`).
const READ_RECHECK: Duration = Duration::from_millis(50);

impl CopyGuard {
    /// Registers a connection we are about to open on `path` (which must exist).
    pub fn register(path: &Path) -> CopyGuard {
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if let Ok(mut m) = OURS.lock() {
            let e = m.entry(path.clone()).or_insert((0, 0));
            e.0 += 1;
            e.1 = e.1.max(e.0);
        }
        CopyGuard { path, last_ok: Mutex::new(None) }
    }

    /// Checks now: before every write transaction. Not rate-limited, because a foreign
    /// connection that appeared a millisecond ago can already be writing. It costs one `readlink`
    /// per open descriptor of the process (about 5 µs each; see BENCHMARKS.md).
    pub fn check(&self) -> Result<()> {
        let ours = OURS.lock().map(|m| m.get(&self.path).map(|e| e.1).unwrap_or(0)).unwrap_or(0);
        let Some(held) = descriptors_on(&self.path) else { return Ok(()) };
        if held > ours {
            return Err(TierError::storage(
                format!(
                    "{} is also open through another SQLite library in this process (for example \
                     better-sqlite3); two SQLite copies in one process do not see each other's locks \
                     and corrupt the file, so the tier manager will not touch it. Use it from a \
                     separate process (the stackmemory-storage CLI, or a child process)",
                    self.path.display()
                ),
                format!("{held} descriptors on the file, {ours} of them ours"),
            ));
        }
        if let Ok(mut l) = self.last_ok.lock() {
            *l = Some(Instant::now());
        }
        Ok(())
    }

    /// For reads: a check that passed within `READ_RECHECK` stands. A read racing a foreign
    /// writer can see a torn page and fail, but reads never write, so the file stays intact.
    pub fn check_recent(&self) -> Result<()> {
        let fresh = self.last_ok.lock().ok().and_then(|l| *l).is_some_and(|t| t.elapsed() < READ_RECHECK);
        if fresh {
            Ok(())
        } else {
            self.check()
        }
    }
}

impl Drop for CopyGuard {
    fn drop(&mut self) {
        if let Ok(mut m) = OURS.lock() {
            if let Some(e) = m.get_mut(&self.path) {
                e.0 = e.0.saturating_sub(1);
                if e.0 == 0 {
                    m.remove(&self.path);
                }
            }
        }
    }
}

/// How many descriptors of this process point at `path`; `None` where `/proc` is unavailable.
fn descriptors_on(path: &Path) -> Option<usize> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    Some(dir.filter_map(|e| e.ok()).filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == path)).count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_foreign_descriptors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.db");
        std::fs::write(&p, b"").expect("write");
        let g = CopyGuard::register(&p);
        let _ours = std::fs::File::open(&p).expect("open"); // stands for our connection's descriptor
        g.check().expect("only ours");
        let foreign = std::fs::File::open(&p).expect("open");
        let err = g.check().expect_err("a foreign descriptor");
        assert_eq!(err.code(), "ERR_STORAGE");
        drop(foreign);
        g.check().expect("foreign one closed");
        let g2 = CopyGuard::register(&p);
        let _ours2 = std::fs::File::open(&p).expect("open");
        g.check().expect("two connections of ours");
        drop(g2);
    }
}
