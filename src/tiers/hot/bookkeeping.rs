//! Our bookkeeping in the file: counts per tier, access counts, pins, the engine's key-value state,
//! and reclaiming space.

use rusqlite::{params, OptionalExtension, TransactionBehavior};
use serde::Serialize;

use super::journal;
use super::read::ensure_meta_row;
use super::HotTier;
use crate::model::{Result, TierError};

#[derive(Debug, Clone, Default, Serialize)]
pub struct TierCount {
    pub frames: i64,
    pub bytes: i64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct HotCounts {
    pub hot: TierCount,
    pub warm: TierCount,
    pub cold: TierCount,
    /// Stubs whose archived body retention deleted, kept for their children (`model::tier::EXPIRED`).
    pub expired: TierCount,
    /// Warm frames whose full rows stay in SQLite, by reason.
    pub held_back: Vec<(String, i64)>,
    pub file_bytes: i64,
    pub journal_backlog: i64,
}

impl HotTier {
    pub fn counts(&self) -> Result<HotCounts> {
        let c = self.lock()?;
        let mut out = HotCounts::default();
        {
            let mut st = c.prepare_cached(
                "SELECT COALESCE(f.tier_status, 'hot'), count(*), COALESCE(sum(m.size_bytes), 0)
                 FROM frames f LEFT JOIN tier_metadata m ON m.frame_id = f.frame_id GROUP BY 1",
            )?;
            let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))?;
            for row in rows {
                let (t, n, b) = row?;
                let slot = match t.as_str() {
                    "warm" => &mut out.warm,
                    "cold" => &mut out.cold,
                    crate::model::tier::EXPIRED => &mut out.expired,
                    _ => &mut out.hot,
                };
                slot.frames += n;
                slot.bytes += b;
            }
        }
        {
            let mut st = c.prepare_cached(
                "SELECT held_back, count(*) FROM tier_metadata WHERE held_back IS NOT NULL GROUP BY 1",
            )?;
            let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                out.held_back.push(row?);
            }
        }
        let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let page_size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        out.file_bytes = pages * page_size;
        out.journal_backlog = journal::backlog(&c)?;
        Ok(out)
    }

    /// What a pressure check needs, cheaply: hot frames and their bytes (through the tier index),
    /// and the file's size.
    pub fn pressure_counts(&self) -> Result<(i64, i64, i64)> {
        let c = self.lock()?;
        let (frames, bytes): (i64, i64) = c
            .prepare_cached(
                "SELECT count(*), COALESCE(sum(m.size_bytes), 0) FROM frames f
                 LEFT JOIN tier_metadata m ON m.frame_id = f.frame_id WHERE COALESCE(f.tier_status, 'hot') = 'hot'",
            )?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let page_size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        Ok((frames, bytes, pages * page_size))
    }

    /// Apply a batch of access counts (one transaction, however many reads it stands for).
    pub fn apply_accesses(&self, batch: &[(String, i64, i64)]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut c = self.lock_write()?;
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO tier_access (frame_id, access_count, last_accessed) VALUES (?1, ?2, ?3)
                 ON CONFLICT(frame_id) DO UPDATE SET access_count = access_count + excluded.access_count,
                   last_accessed = max(COALESCE(last_accessed, 0), excluded.last_accessed)",
            )?;
            for (id, n, last_ms) in batch {
                st.execute(params![id, n, last_ms])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn kv_get(&self, key: &str) -> Result<Option<String>> {
        let c = self.lock()?;
        Ok(c.query_row("SELECT value FROM tier_kv WHERE key = ?1", [key], |r| r.get(0)).optional()?)
    }

    pub fn kv_set(&self, key: &str, value: &str) -> Result<()> {
        let c = self.lock()?;
        c.execute(
            "INSERT INTO tier_kv (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    pub fn set_pinned(&self, frame_id: &str, pinned: bool) -> Result<bool> {
        let mut c = self.lock_write()?;
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if ensure_meta_row(&tx, frame_id)?.is_none() {
            return Ok(false);
        }
        tx.execute("UPDATE tier_metadata SET pinned = ?2 WHERE frame_id = ?1", params![frame_id, pinned as i64])?;
        tx.commit()?;
        Ok(true)
    }

    /// Checkpoint the WAL and give free pages back to the file system.
    pub fn reclaim(&self) -> Result<i64> {
        let c = self.lock()?;
        let before = std::fs::metadata(&self.path).map(|m| m.len() as i64).unwrap_or(0);
        // VACUUM needs no other open transaction; when StackMemory holds one, skip it this time.
        for sql in ["PRAGMA wal_checkpoint(TRUNCATE);", "VACUUM;", "PRAGMA wal_checkpoint(TRUNCATE);"] {
            if let Err(e) = c.execute_batch(sql) {
                crate::obs::failed("reclaiming SQLite space", &TierError::storage(sql, e));
            }
        }
        let after = std::fs::metadata(&self.path).map(|m| m.len() as i64).unwrap_or(0);
        Ok((before - after).max(0))
    }
}
