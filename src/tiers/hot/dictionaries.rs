//! The zstd dictionaries envelopes of this file's frames were compressed with (`model::codec`
//! format 2), kept beside the frames: a dictionary is saved here (and in PostgreSQL) before any
//! envelope uses it, and never deleted, so every copy of every frame stays readable.

use rusqlite::{params, OptionalExtension};

use super::HotTier;
use crate::model::units::now_seconds;
use crate::model::Result;

pub(super) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS tier_dictionaries (
    id INTEGER PRIMARY KEY,
    project_id TEXT NOT NULL,
    bytes BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    samples INTEGER NOT NULL DEFAULT 0,
    ratio REAL NOT NULL DEFAULT 0,
    plain_ratio REAL NOT NULL DEFAULT 0
);";

/// A dictionary as stored: its bytes and what its training measured.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDictionary {
    pub id: u32,
    pub project_id: String,
    pub bytes: Vec<u8>,
    pub created_at: i64,
    /// Frames it was trained on.
    pub samples: i64,
    /// Compression ratio (raw / envelope) on held-out frames of its sample, with it and with plain zstd.
    pub ratio: f64,
    pub plain_ratio: f64,
}

impl HotTier {
    /// Save a dictionary (kept as it is when its id is already there).
    pub fn dict_save(&self, d: &StoredDictionary) -> Result<()> {
        let c = self.lock_write()?;
        c.execute(
            "INSERT INTO tier_dictionaries (id, project_id, bytes, created_at, samples, ratio, plain_ratio)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(id) DO NOTHING",
            params![
                i64::from(d.id),
                d.project_id,
                d.bytes,
                if d.created_at > 0 { d.created_at } else { now_seconds() },
                d.samples,
                d.ratio,
                d.plain_ratio
            ],
        )?;
        Ok(())
    }

    /// Every dictionary, oldest first (so the last of a project is its current one).
    pub fn dict_all(&self) -> Result<Vec<StoredDictionary>> {
        let c = self.lock()?;
        let mut st = c.prepare_cached(
            "SELECT id, project_id, bytes, created_at, samples, ratio, plain_ratio FROM tier_dictionaries
             ORDER BY created_at, rowid",
        )?;
        let rows = st.query_map([], stored)?;
        Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
    }

    pub fn dict_get(&self, id: u32) -> Result<Option<StoredDictionary>> {
        let c = self.lock()?;
        let mut st = c.prepare_cached(
            "SELECT id, project_id, bytes, created_at, samples, ratio, plain_ratio FROM tier_dictionaries WHERE id = ?1",
        )?;
        Ok(st.query_row([i64::from(id)], stored).optional()?)
    }

    /// The canonical JSON of up to `n` of the most recently created frames of `project_id` whose
    /// bodies are here: a training sample.
    pub fn dict_sample(&self, project_id: &str, n: usize) -> Result<Vec<Vec<u8>>> {
        let ids: Vec<String> = {
            let c = self.lock()?;
            let mut st = c.prepare_cached(
                "SELECT f.frame_id FROM frames f LEFT JOIN tier_metadata m ON m.frame_id = f.frame_id
                 WHERE f.project_id = ?1 AND COALESCE(m.body_local, 1) = 1
                 ORDER BY f.created_at DESC LIMIT ?2",
            )?;
            let rows = st.query_map(params![project_id, n as i64], |r| r.get::<_, String>(0))?;
            rows.collect::<std::result::Result<Vec<_>, _>>()?
        };
        Ok(self.load_many(&ids)?.into_iter().filter_map(|r| r.bundle.map(|b| b.canonical_bytes())).collect())
    }
}

impl HotTier {
    /// The project with the most frames here (the one a file of StackMemory's holds).
    pub fn main_project(&self) -> Result<Option<String>> {
        let c = self.lock()?;
        Ok(c.query_row(
            "SELECT project_id FROM frames GROUP BY project_id ORDER BY count(*) DESC, project_id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?)
    }
}

fn stored(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredDictionary> {
    Ok(StoredDictionary {
        id: r.get::<_, i64>(0)? as u32,
        project_id: r.get(1)?,
        bytes: r.get(2)?,
        created_at: r.get(3)?,
        samples: r.get(4)?,
        ratio: r.get(5)?,
        plain_ratio: r.get(6)?,
    })
}
