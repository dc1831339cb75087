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

use crate::error::{Result, TierError};

/// Our open connections per canonical file path (each holds one descriptor on the file).
static OURS: LazyLock<Mutex<HashMap<PathBuf, usize>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// One of our connections on a file; unregisters itself when dropped.
pub struct CopyGuard {
    path: PathBuf,
}

impl CopyGuard {
    /// Registers a connection we are about to open on `path` (which must exist).
    pub fn register(path: &Path) -> CopyGuard {
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if let Ok(mut m) = OURS.lock() {
            *m.entry(path.clone()).or_insert(0) += 1;
        }
        CopyGuard { path }
    }

    /// Checks before every use of the connection. Not rate-limited: a foreign connection that
    /// appeared a millisecond ago can already be writing. It costs one `readlink` per open
    /// descriptor of the process (tens of microseconds; see BENCHMARKS.md).
    pub fn check(&self) -> Result<()> {
        let ours = OURS.lock().map(|m| m.get(&self.path).copied().unwrap_or(0)).unwrap_or(0);
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
        Ok(())
    }
}

impl Drop for CopyGuard {
    fn drop(&mut self) {
        if let Ok(mut m) = OURS.lock() {
            if let Some(n) = m.get_mut(&self.path) {
                *n = n.saturating_sub(1);
                if *n == 0 {
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
