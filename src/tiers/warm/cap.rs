//! The size cap: eviction by LRU, LFU or AGE down to `maxSize`, and the sweep of index entries whose
//! keys are gone (expired, evicted by Redis, flushed), which also heals the running total.

use super::frames::DeleteMode;
use super::keys::{frame_key, glob_escape};
use super::scripts::RECONCILE_SCRIPT;
use super::{WarmTier, DELETE_CHUNK, EVICT_BATCH, MAX_EVICT_ROUNDS, SCAN_COUNT};
use crate::model::Result;

impl WarmTier {
    /// Evicts frames by the configured strategy (LRU: least recently read first; LFU: fewest
    /// reads first; AGE: oldest created first) until our total is at most `max_size`.
    /// Returns the ids whose frame key was evicted. Candidates whose key already expired are
    /// cleaned from the index (freeing their accounted bytes) but not reported.
    pub async fn enforce_cap(&self) -> Result<Vec<String>> {
        let max = self.cfg.max_size;
        let zset = self.keys.for_strategy(self.cfg.eviction_strategy).to_string();
        let mut evicted = Vec::new();
        let mut reconciled = false;
        for _ in 0..MAX_EVICT_ROUNDS {
            let total = self.total_bytes().await?;
            if total <= max {
                break;
            }
            let mut range = redis::cmd("ZRANGE");
            range.arg(&zset).arg(0).arg(EVICT_BATCH - 1);
            let candidates: Vec<String> = self.query("enforce_cap", &range).await?;
            if candidates.is_empty() {
                // Over the cap with nothing left to evict: the total has drifted. Recompute it
                // once and re-check; if it is still over, the index is inconsistent - stop.
                if reconciled {
                    break;
                }
                self.reconcile().await?;
                reconciled = true;
                continue;
            }
            let mut hmget = redis::cmd("HMGET");
            hmget.arg(&self.keys.size).arg(&candidates);
            let sizes: Vec<Option<u64>> = self.query("enforce_cap", &hmget).await?;
            // Take the lowest-ranked candidates until they free enough.
            let mut need = total - max;
            let mut picked = Vec::new();
            for (id, size) in candidates.into_iter().zip(sizes) {
                let size = size.unwrap_or(0);
                picked.push(id);
                if size >= need {
                    break;
                }
                need -= size;
            }
            let flags = self.delete_chunk(&picked, DeleteMode::Force).await?;
            evicted.extend(picked.into_iter().zip(flags).filter(|(_, f)| *f == 2).map(|(id, _)| id));
        }
        Ok(evicted)
    }

    /// Removes index entries and meta hashes whose frame key is gone (expired, evicted by Redis
    /// itself, flushed). Frame keys that exist are never touched: other machines share this
    /// Redis. Afterwards the running total is recomputed from the size index.
    /// Returns how many ids were cleaned.
    pub async fn remove_orphans(&self) -> Result<u64> {
        // Every id we know of: the size hash, the three sorted sets and the meta keys.
        let mut ids = std::collections::BTreeSet::new();
        ids.extend(self.scan_members("HSCAN", &self.keys.size).await?);
        for z in [&self.keys.lru, &self.keys.lfu, &self.keys.age] {
            ids.extend(self.scan_members("ZSCAN", z).await?);
        }
        let meta_start = format!("{}meta:{{", self.cfg.key_prefix);
        let pattern = format!("{}*", glob_escape(&meta_start));
        for key in self.scan_keys(&pattern).await? {
            if let Some(id) = key.strip_prefix(&meta_start).and_then(|r| r.strip_suffix('}')) {
                ids.insert(id.to_string());
            }
        }

        let ids: Vec<String> = ids.into_iter().collect();
        let mut removed = 0u64;
        for chunk in ids.chunks(DELETE_CHUNK) {
            // Cheap pre-check so the script only sees likely orphans; the script re-checks
            // atomically, so a frame written in between is left alone.
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.cmd("EXISTS").arg(frame_key(&self.cfg.key_prefix, id));
            }
            let exists: Vec<i64> = self.pipeline("remove_orphans", &pipe).await?;
            let gone: Vec<String> =
                chunk.iter().zip(exists).filter(|(_, e)| *e == 0).map(|(id, _)| id.clone()).collect();
            if gone.is_empty() {
                continue;
            }
            let flags = self.delete_chunk(&gone, DeleteMode::OrphanOnly).await?;
            removed += flags.iter().filter(|f| **f > 0).count() as u64;
        }
        self.reconcile().await?;
        Ok(removed)
    }

    pub(super) async fn total_bytes(&self) -> Result<u64> {
        let mut get = redis::cmd("GET");
        get.arg(&self.keys.bytes);
        let total: Option<i64> = self.query("size total", &get).await?;
        Ok(total.unwrap_or(0).max(0) as u64)
    }

    /// Recomputes `idx:bytes` from `idx:size`.
    pub(super) async fn reconcile(&self) -> Result<u64> {
        let mut inv = RECONCILE_SCRIPT.prepare_invoke();
        inv.key(&self.keys.size).key(&self.keys.bytes);
        let total: i64 = self.script("reconcile", &inv).await?;
        Ok(total.max(0) as u64)
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

    /// All keys matching a glob pattern.
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
