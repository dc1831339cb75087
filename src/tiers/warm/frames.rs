//! Frames in and out of Redis: put (with their index entries), read (renewing the TTL), delete.

use super::keys::{frame_key, meta_key};
use super::scripts::{DELETE_SCRIPT, GET_SCRIPT, PUT_SCRIPT};
use super::{now, WarmTier, DELETE_CHUNK, GET_CHUNK, PUT_CHUNK_BYTES, PUT_CHUNK_ITEMS, TIER};
use crate::model::codec;
use crate::model::{Result, TierError};

/// One frame to put into the warm tier.
#[derive(Debug, Clone)]
pub struct WarmItem {
    pub frame_id: String,
    /// The envelope bytes (`codec::encode`), stored as they are.
    pub bytes: Vec<u8>,
    /// When the frame was created, unix seconds (the AGE strategy's score).
    pub created_s: i64,
    /// Reads so far (the LFU strategy's score).
    pub access_count: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum DeleteMode {
    Force,
    OrphanOnly,
}

impl WarmTier {
    /// Stores frames (SET EX), their meta hashes and index entries, one script call per chunk.
    /// Items must hold envelopes; a frame already present is replaced and re-accounted.
    pub async fn put_many(&self, items: &[WarmItem]) -> Result<()> {
        for it in items {
            if it.frame_id.is_empty() {
                return Err(TierError::invalid_argument("frame_id", "must not be empty"));
            }
            if codec::header_checksum(&it.bytes).is_none() {
                return Err(TierError::invalid_frame(
                    "bytes",
                    format!("frame {} is not a stackmemory-tiers envelope", it.frame_id),
                ));
            }
        }
        let (now_ms, now_s) = now();
        let mut start = 0;
        while start < items.len() {
            // Grow the chunk until it is full by count or by bytes (always at least one item).
            let mut end = start;
            let mut bytes = 0usize;
            while end < items.len()
                && end - start < PUT_CHUNK_ITEMS
                && (end == start || bytes + items[end].bytes.len() <= PUT_CHUNK_BYTES)
            {
                bytes += items[end].bytes.len();
                end += 1;
            }
            let chunk = &items[start..end];
            let mut inv = self.keys.invocation(&PUT_SCRIPT);
            inv.arg(self.cfg.ttl_secs).arg(now_ms).arg(now_s);
            for it in chunk {
                inv.key(frame_key(&self.cfg.key_prefix, &it.frame_id))
                    .key(meta_key(&self.cfg.key_prefix, &it.frame_id));
                inv.arg(&it.frame_id).arg(&it.bytes[..]).arg(it.created_s).arg(it.access_count);
            }
            self.script::<i64>("put", &inv).await?;
            start = end;
        }
        Ok(())
    }

    /// Reads a frame and renews its TTL (GETEX). On a hit the meta hash's TTL is renewed too and
    /// the access count, access time and LRU/LFU scores are bumped, all in one atomic step.
    pub async fn get(&self, frame_id: &str) -> Result<Option<Vec<u8>>> {
        let (now_ms, now_s) = now();
        let p = &self.cfg.key_prefix;
        let mut inv = GET_SCRIPT.prepare_invoke();
        inv.key(frame_key(p, frame_id))
            .key(meta_key(p, frame_id))
            .key(&self.keys.lru)
            .key(&self.keys.lfu)
            .arg(self.cfg.ttl_secs)
            .arg(now_ms)
            .arg(now_s)
            .arg(frame_id);
        self.script::<Option<Vec<u8>>>("get", &inv).await
    }

    /// Reads many frames with MGET, without renewing TTLs or counting accesses (the mover uses
    /// this to verify its copies). The result is in the order of `ids`.
    pub async fn get_many(&self, ids: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(GET_CHUNK) {
            let keys: Vec<String> = chunk.iter().map(|id| frame_key(&self.cfg.key_prefix, id)).collect();
            let mut cmd = redis::cmd("MGET");
            cmd.arg(&keys);
            let got: Vec<Option<Vec<u8>>> = self.query("get_many", &cmd).await?;
            if got.len() != chunk.len() {
                return Err(TierError::unavailable(
                    TIER,
                    format!("get_many: MGET returned {} values for {} keys", got.len(), chunk.len()),
                ));
            }
            out.extend(got);
        }
        Ok(out)
    }

    /// Removes frames, their meta hashes and index entries, and subtracts their sizes.
    /// Ids that are not there are ignored.
    pub async fn delete_many(&self, ids: &[String]) -> Result<()> {
        for chunk in ids.chunks(DELETE_CHUNK) {
            self.delete_chunk(chunk, DeleteMode::Force).await?;
        }
        Ok(())
    }

    /// Runs the delete script on one chunk; returns its per-id flags (see `DELETE_SCRIPT`).
    pub(super) async fn delete_chunk(&self, ids: &[String], mode: DeleteMode) -> Result<Vec<i64>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.keys.invocation(&DELETE_SCRIPT);
        inv.arg(if mode == DeleteMode::OrphanOnly { "orphan" } else { "force" });
        for id in ids {
            inv.key(frame_key(&self.cfg.key_prefix, id)).key(meta_key(&self.cfg.key_prefix, id));
            inv.arg(id);
        }
        let flags: Vec<i64> = self.script("delete", &inv).await?;
        Ok(flags)
    }
}
