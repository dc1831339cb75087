//! Frames in and out of Redis: put (with their index entries, under the cap), read (renewing the
//! TTL), delete.

use super::keys::IndexKeys;
use super::scripts::{DELETE_SCRIPT, GET_SCRIPT, PUT_SCRIPT};
use super::{WarmTier, DELETE_CHUNK, GET_CHUNK, PUT_CHUNK_BYTES, PUT_CHUNK_ITEMS, TIER};
use crate::model::codec;
use crate::model::{EvictionStrategy, Result, TierError};

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
    /// The frame's version (`tier_metadata.version`): a copy in Redis with a higher one, written
    /// by another machine, is kept instead (as the archive's upsert does). 0: unknown, never
    /// replaces a copy whose version is known.
    pub version: i64,
}

/// What a put did besides storing: the frames it evicted to stay under the cap (possibly some of
/// the items it was given, when they do not all fit), and the items it did not store because
/// they alone are larger than the cap. Neither is an error: Redis is never the last copy.
/// `kept_newer`: items not written because Redis holds a newer version of the frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PutOutcome {
    pub evicted: Vec<String>,
    pub not_stored: Vec<String>,
    pub kept_newer: Vec<String>,
}

impl PutOutcome {
    /// Whether `id` has no Redis copy because of the cap (evicted or not stored).
    pub fn dropped(&self, id: &str) -> bool {
        self.evicted.iter().chain(&self.not_stored).any(|e| e == id)
    }
}

/// The put script's answer: evicted, not stored, kept newer.
pub(super) type PutLists = (Vec<String>, Vec<String>, Vec<String>);

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum DeleteMode {
    Force,
    OrphanOnly,
}

pub(super) fn strategy_key_index(s: EvictionStrategy) -> u8 {
    match s {
        EvictionStrategy::Lru => 1,
        EvictionStrategy::Lfu => 2,
        EvictionStrategy::Age => 3,
    }
}

impl WarmTier {
    /// Stores frames (SET EX), their meta hashes and index entries, one script call per chunk of
    /// one bucket. Every write keeps its bucket under the cap: the frames the configured strategy
    /// ranks lowest are evicted first, inside the same script (see `PUT_SCRIPT`).
    /// Items must hold envelopes; a frame already present is replaced and re-accounted.
    pub async fn put_many(&self, items: &[WarmItem]) -> Result<PutOutcome> {
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
        let mut outcome = PutOutcome::default();
        for (bucket, group) in self.layout.group(items, |it| &it.frame_id) {
            let idx = &self.layout.buckets()[bucket];
            let mut start = 0;
            while start < group.len() {
                // Grow the chunk until it is full by count or by bytes (always at least one item).
                let mut end = start;
                let mut bytes = 0usize;
                while end < group.len()
                    && end - start < PUT_CHUNK_ITEMS
                    && (end == start || bytes + group[end].bytes.len() <= PUT_CHUNK_BYTES)
                {
                    bytes += group[end].bytes.len();
                    end += 1;
                }
                let (evicted, not_stored, kept_newer) = self.put_chunk(idx, &group[start..end]).await?;
                outcome.evicted.extend(evicted);
                outcome.not_stored.extend(not_stored);
                outcome.kept_newer.extend(kept_newer);
                start = end;
            }
        }
        Ok(outcome)
    }

    /// One run of the put script on one bucket (no items: only trim and evict down to the cap).
    pub(super) async fn put_chunk(&self, idx: &IndexKeys, chunk: &[&WarmItem]) -> Result<PutLists> {
        let mut inv = idx.invocation(&PUT_SCRIPT);
        inv.arg(self.cfg.ttl_secs)
            .arg(self.layout.bucket_cap(self.cfg.max_size))
            .arg(strategy_key_index(self.cfg.eviction_strategy));
        for it in chunk {
            inv.key(self.layout.frame(&it.frame_id)).key(self.layout.meta(&it.frame_id));
            inv.arg(&it.frame_id).arg(&it.bytes[..]).arg(it.created_s).arg(it.access_count).arg(it.version);
        }
        self.script::<PutLists>("put", &inv).await
    }

    /// Reads a frame and renews its TTL (GETEX). On a hit the meta hash's TTL is renewed too and
    /// the access count, access time, LRU/LFU scores and expiry deadline are bumped, all in one
    /// atomic step.
    pub async fn get(&self, frame_id: &str) -> Result<Option<Vec<u8>>> {
        let mut inv = self.layout.index_of(frame_id).invocation(&GET_SCRIPT);
        inv.key(self.layout.frame(frame_id)).key(self.layout.meta(frame_id));
        inv.arg(self.cfg.ttl_secs).arg(frame_id);
        self.script::<Option<Vec<u8>>>("get", &inv).await
    }

    /// Reads many frames with MGET, without renewing TTLs or counting accesses (the mover uses
    /// this to verify its copies). The result is in the order of `ids`.
    pub async fn get_many(&self, ids: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(GET_CHUNK) {
            let keys: Vec<String> = chunk.iter().map(|id| self.layout.frame(id)).collect();
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
        for (bucket, group) in self.layout.group(ids, |s| s.as_str()) {
            let group: Vec<String> = group.into_iter().cloned().collect();
            for chunk in group.chunks(DELETE_CHUNK) {
                self.delete_chunk(bucket, chunk, DeleteMode::Force).await?;
            }
        }
        Ok(())
    }

    /// Runs the delete script on one chunk of one bucket's ids; returns its per-id flags (see
    /// `DELETE_SCRIPT`).
    pub(super) async fn delete_chunk(&self, bucket: usize, ids: &[String], mode: DeleteMode) -> Result<Vec<i64>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.layout.buckets()[bucket].invocation(&DELETE_SCRIPT);
        inv.arg(if mode == DeleteMode::OrphanOnly { "orphan" } else { "force" });
        for id in ids {
            inv.arg(id);
        }
        let flags: Vec<i64> = self.script("delete", &inv).await?;
        Ok(flags)
    }
}
