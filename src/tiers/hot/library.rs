//! Which SQLite library the hot tier runs on. `bundled` (cargo test): our own, compiled in.
//! `node` (the shipped addon): none of our own; the host's library binds itself when it loads this
//! very file as an SQLite extension (`node/extension.rs`), and every connection we open then goes
//! through its API table. Two SQLite libraries in one process corrupt a shared file (see
//! `copy_guard.rs`), so the binding is once per process and a different library is refused.

use std::sync::OnceLock;

use crate::model::{Result, TierError};

/// The oldest SQLite our SQL needs (`unixepoch()` in StackMemory's defaults arrived in 3.38).
pub const MIN_VERSION_NUMBER: i32 = 3_038_000;

/// The library in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Library {
    /// `sqlite3_libversion_number()`, e.g. 3050004.
    pub version_number: i32,
    /// Where it comes from: `"compiled in"` or `"host"`.
    pub origin: &'static str,
    /// The address of its API table (host) or 0 (compiled in): what tells two libraries apart.
    pub api: usize,
}

impl Library {
    pub fn version(&self) -> String {
        let v = self.version_number;
        format!("{}.{}.{}", v / 1_000_000, (v / 1000) % 1000, v % 1000)
    }
}

static BOUND: OnceLock<Library> = OnceLock::new();

/// The library in use, if any yet.
pub fn current() -> Option<Library> {
    #[cfg(feature = "bundled")]
    {
        Some(
            BOUND
                .get_or_init(|| Library { version_number: rusqlite::version_number(), origin: "compiled in", api: 0 })
                .clone(),
        )
    }
    #[cfg(not(feature = "bundled"))]
    {
        BOUND.get().cloned()
    }
}

/// Every entry that touches SQLite checks this first: before the host bound its library, any
/// SQLite call would panic (and abort Node).
pub fn ensure_ready() -> Result<Library> {
    current().ok_or_else(|| {
        TierError::storage(
            "no SQLite library",
            "the addon runs on the host's SQLite: load it through better-sqlite3 first (TierManager.open does)",
        )
    })
}

/// Records the host's library (`api`: its API table's address). Binding the same library again
/// is fine; a different one is refused, because this process's connections would then be split
/// over two libraries that cannot see each other's locks.
pub fn bind(api: usize, version_number: i32) -> std::result::Result<Library, String> {
    if version_number < MIN_VERSION_NUMBER {
        let lib = Library { version_number, origin: "host", api };
        return Err(format!(
            "the host's SQLite is {}; stackmemory-tiers needs 3.38.0 or later (better-sqlite3 12 has it)",
            lib.version()
        ));
    }
    let lib = BOUND.get_or_init(|| Library { version_number, origin: "host", api }).clone();
    if lib.api != api {
        return Err(format!(
            "stackmemory-tiers is already bound to another SQLite library in this process (SQLite {}); \
             a second library would not see the first one's locks and could corrupt the file. Load it \
             through the same better-sqlite3 as before (one copy of better-sqlite3 per process)",
            lib.version()
        ));
    }
    Ok(lib)
}
