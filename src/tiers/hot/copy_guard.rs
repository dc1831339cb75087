//! Refuses to share a database file with a second copy of SQLite inside this process.
//!
//! SQLite's locks are POSIX advisory locks, which belong to the process, not to the connection.
//! One copy of the library coordinates its own connections in memory; two copies in one process
//! (say, a bundled one and the one inside better-sqlite3) cannot see each other's locks at all, and
//! one copy closing a descriptor drops the other's locks, so the file gets corrupted
//! (<https://www.sqlite.org/howtocorrupt.html>, "multiple copies of SQLite linked into the same
//! application"). The shipped addon runs on the host's library (`library.rs`), so StackMemory's
//! better-sqlite3 and the addon are one library; this guard is the net for a *foreign* one (another
//! copy of better-sqlite3, another addon with SQLite inside, `node:sqlite`).
//!
//! How a foreign library is seen: in WAL mode every library that has a database open maps its
//! `-shm` file once, shared by all of that library's connections to it (SQLite's `unixShmNode` is
//! per file per library). So the mappings of `<db>-shm` at offset 0 in `/proc/self/maps` count the
//! libraries that use the file; more than one means a foreign library is in. Linux only; elsewhere
//! the check is skipped. It runs when the file is opened and before every write transaction, never
//! on reads: a read racing a foreign writer can fail, but reads never damage the file.

use std::path::{Path, PathBuf};

use crate::model::{Result, TierError};

/// One of our connections on a file.
pub struct CopyGuard {
    /// `<canonical db path>-shm`, as `/proc/self/maps` names it.
    shm: PathBuf,
    db: PathBuf,
}

impl CopyGuard {
    /// For a connection we opened on `path` (which must exist).
    pub fn register(path: &Path) -> CopyGuard {
        let db = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let mut shm = db.clone().into_os_string();
        shm.push("-shm");
        CopyGuard { shm: PathBuf::from(shm), db }
    }

    /// Fails when more than one SQLite library in this process uses the file.
    pub fn check(&self) -> Result<()> {
        let Some(libraries) = libraries_using(&self.shm) else { return Ok(()) };
        if libraries > 1 {
            return Err(TierError::storage(
                format!(
                    "{} is also open through another SQLite library in this process; two SQLite copies \
                     in one process do not see each other's locks and corrupt the file, so the tier \
                     manager will not write to it. Open it through the same better-sqlite3 (pass \
                     StackMemory's Database as `database`), or use it from a separate process",
                    self.db.display()
                ),
                format!("{libraries} SQLite libraries map {}", self.shm.display()),
            ));
        }
        Ok(())
    }
}

/// How many distinct mappings of `shm` at offset 0 this process has (one per SQLite library with
/// the database open in WAL mode); `None` where `/proc` is unavailable.
fn libraries_using(shm: &Path) -> Option<usize> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let want = shm.to_str()?;
    Some(maps.lines().filter(|l| maps_line_offset_zero_of(l, want)).count())
}

/// `addr perms offset dev inode   path`: the mapping of `path` at file offset 0.
fn maps_line_offset_zero_of(line: &str, path: &str) -> bool {
    let mut fields = line.split_ascii_whitespace();
    let (Some(_addr), Some(_perms), Some(offset), Some(_dev), Some(_inode)) =
        (fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return false;
    };
    let rest: Vec<&str> = fields.collect();
    offset.bytes().all(|b| b == b'0') && rest.join(" ") == path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shm_mapping_per_library() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.db");
        // Our own library's connection: WAL mode maps the -shm file once.
        let ours = rusqlite::Connection::open(&p).expect("open");
        ours.pragma_update(None, "journal_mode", "WAL").expect("wal");
        ours.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);").expect("write");
        let g = CopyGuard::register(&p);
        g.check().expect("only our library");
        // A second connection of the same library shares that mapping.
        let again = rusqlite::Connection::open(&p).expect("open");
        let _: i64 = again.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).expect("read");
        g.check().expect("still one library");
        assert_eq!(libraries_using(&g.shm), Some(1));
        // Another library maps the same file again (stood in for by a mapping of our own).
        let shm = std::fs::OpenOptions::new().read(true).write(true).open(&g.shm).expect("shm");
        let foreign = memmap(&shm);
        let err = g.check().expect_err("a foreign library");
        assert_eq!(err.code(), "ERR_STORAGE");
        drop(foreign);
        g.check().expect("the foreign library is gone");
    }

    /// A read-only mapping of the first 32 KB of `f` (what a second SQLite library would map).
    fn memmap(f: &std::fs::File) -> Mapping {
        use std::os::fd::AsRawFd;
        extern "C" {
            fn mmap(addr: *mut u8, len: usize, prot: i32, flags: i32, fd: i32, off: i64) -> *mut u8;
        }
        const PROT_READ: i32 = 1;
        const MAP_SHARED: i32 = 1;
        // SAFETY: a fresh shared read-only mapping of a file we hold open; unmapped on drop.
        let ptr = unsafe { mmap(std::ptr::null_mut(), 32768, PROT_READ, MAP_SHARED, f.as_raw_fd(), 0) };
        assert!(!ptr.is_null() && ptr as isize != -1, "mmap failed");
        Mapping(ptr)
    }

    struct Mapping(*mut u8);

    impl Drop for Mapping {
        fn drop(&mut self) {
            extern "C" {
                fn munmap(addr: *mut u8, len: usize) -> i32;
            }
            // SAFETY: the mapping made in `memmap`, unmapped once.
            unsafe { munmap(self.0, 32768) };
        }
    }

    #[test]
    fn maps_lines() {
        let l = "7f00-7f08 rw-s 00000000 fd:01 1234                       /tmp/a b/x.db-shm";
        assert!(maps_line_offset_zero_of(l, "/tmp/a b/x.db-shm"));
        assert!(!maps_line_offset_zero_of(&l.replace("00000000", "00008000"), "/tmp/a b/x.db-shm"));
        assert!(!maps_line_offset_zero_of("7f00-7f08 r-xp 00000000 00:00 0", "/x"));
    }
}
