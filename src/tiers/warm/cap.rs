//! The size cap outside of writes (`compact`), the index totals, and the sweep of index entries
//! whose keys are gone (evicted by Redis itself, flushed, deleted by hand), which also heals the
//! running totals.
//!
//! Every write already keeps the cap (see `PUT_SCRIPT`) and trims entries whose TTL passed, so
//! `enforce_cap` only matters after `maxSize` or the strategy was lowered between runs.

use super::frames::DeleteMode;
use super::keys::{glob_escape, IndexKeys};
use super::scripts::{RECONCILE_SCRIPT, STATS_SCRIPT};
use super::{WarmTier, DELETE_CHUNK, SCAN_COUNT};
use crate::model::Result;

/// Expired entries trimmed per stats script call (the call repeats while it hits this).
const TRIM_PER_CALL: u64 = 5000;
/// Upper bound on stats rounds per bucket, so a stats call stays short whatever the backlog.
const MAX_TRIM_ROUNDS: usize = 20;

/// Index totals after trimming expired entries.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct IndexTotals {
    pub(super) frames: u64,
    pub(super) bytes: u64,
    pub(super) expired_removed: u64,
}

impl WarmTier {
    /// Evicts frames by the configured strategy (LRU: least recently read first; LFU: fewest
    /// reads first; AGE: oldest created first) until every bucket is at most its share of
    /// `max_size`. Returns the ids whose frame key was evicted.
    pub async fn enforce_cap(&self) -> Result<Vec<String>> {
        let mut evicted = Vec::new();
        for idx in self.layout.buckets() {
            let (e, _, _) = self.put_chunk(idx, &[]).await?;
            evicted.extend(e);
        }
        Ok(evicted)
    }

    /// Frames and bytes in our index, after removing the entries whose keys expired by TTL (so
    /// the policy never sees pressure from frames that are gone).
    pub(super) async fn index_totals(&self) -> Result<IndexTotals> {
        let mut t = IndexTotals::default();
        for idx in self.layout.buckets() {
            for round in 0..MAX_TRIM_ROUNDS {
                let mut inv = idx.invocation(&STATS_SCRIPT);
                inv.arg(TRIM_PER_CALL);
                let (frames, bytes, trimmed): (u64, i64, u64) = self.script("stats", &inv).await?;
                t.expired_removed += trimmed;
                if trimmed < TRIM_PER_CALL || round + 1 == MAX_TRIM_ROUNDS {
                    t.frames += frames;
                    t.bytes += bytes.max(0) as u64;
                    break;
                }
            }
        }
        Ok(t)
    }

    /// Removes index entries and meta hashes whose frame key is gone (expired, evicted by Redis
    /// itself, flushed). Frame keys that exist are never touched: other machines share this
    /// Redis. Afterwards the running totals are recomputed from the size indexes.
    /// Returns how many ids were cleaned.
    pub async fn remove_orphans(&self) -> Result<u64> {
        let mut removed = 0u64;
        for (bucket, idx) in self.layout.buckets().iter().enumerate() {
            removed += self.remove_bucket_orphans(bucket, idx).await?;
        }
        Ok(removed)
    }

    async fn remove_bucket_orphans(&self, bucket: usize, idx: &IndexKeys) -> Result<u64> {
        // Every id we know of: the size hash, the sorted sets and (standalone only: SCAN sees one
        // node of a cluster) the meta keys. On a cluster a meta key without index entries simply
        // expires by its TTL.
        let mut ids = std::collections::BTreeSet::new();
        ids.extend(self.scan_members("HSCAN", &idx.size).await?);
        for z in [&idx.lru, &idx.lfu, &idx.age, &idx.exp] {
            ids.extend(self.scan_members("ZSCAN", z).await?);
        }
        if !self.layout.is_cluster() {
            let meta_start = &idx.meta_parts.0;
            let pattern = format!("{}*", glob_escape(meta_start));
            for key in self.scan_keys(&pattern).await? {
                if let Some(id) = key.strip_prefix(meta_start.as_str()).and_then(|r| r.strip_suffix('}')) {
                    ids.insert(id.to_string());
                }
            }
        }

        let ids: Vec<String> = ids.into_iter().collect();
        let mut removed = 0u64;
        for chunk in ids.chunks(DELETE_CHUNK) {
            // Cheap pre-check so the script only sees likely orphans; the script re-checks
            // atomically, so a frame written in between is left alone.
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.cmd("EXISTS").arg(self.layout.frame(id));
            }
            let exists: Vec<i64> = self.pipeline("remove_orphans", &pipe).await?;
            let gone: Vec<String> =
                chunk.iter().zip(exists).filter(|(_, e)| *e == 0).map(|(id, _)| id.clone()).collect();
            if gone.is_empty() {
                continue;
            }
            let flags = self.delete_chunk(bucket, &gone, DeleteMode::OrphanOnly).await?;
            removed += flags.iter().filter(|f| **f > 0).count() as u64;
        }
        let inv = idx.invocation(&RECONCILE_SCRIPT);
        self.script::<i64>("reconcile", &inv).await?;
        Ok(removed)
    }

    /// All members of a hash (`HSCAN`) or sorted set (`ZSCAN`): the even positions of each reply.
    pub(super) async fn scan_members(&self, command: &str, key: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let mut scan = redis::cmd(command);
            scan.arg(key).arg(cursor).arg("COUNT").arg(SCAN_COUNT);
            let (next, flat): (u64, Vec<String>) = self.query("remove_orphans", &scan).await?;
            out.extend(flat.into_iter().step_by(2));
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }

    /// All keys matching a glob pattern (standalone only).
    pub(super) async fn scan_keys(&self, pattern: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(SCAN_COUNT);
            let (next, keys): (u64, Vec<String>) = self.query("remove_orphans", &scan).await?;
            out.extend(keys);
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }
}
