//! The read path: a frame from whichever tier holds it (hot without a round trip), reads counted in
//! memory and flushed to SQLite in batches, promotions the policy wants on the way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde_json::Value;

use super::requests::RetrieveOptions;
use super::TierManager;
use crate::model::units::{now_millis, now_seconds};
use crate::model::{Result, Tier};
use crate::moves::Fetched;

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetrieveStats {
    pub hot: u64,
    pub warm: u64,
    pub cold: u64,
    pub misses: u64,
    pub promotions: u64,
    pub corrupt_warm_copies: u64,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) hot: AtomicU64,
    pub(super) warm: AtomicU64,
    pub(super) cold: AtomicU64,
    pub(super) misses: AtomicU64,
    pub(super) promotions: AtomicU64,
    pub(super) corrupt_warm: AtomicU64,
}

/// Access counts kept in memory and flushed to SQLite in batches (no disk write per read).
#[derive(Default)]
pub(super) struct AccessBuffer {
    pub(super) pending: HashMap<String, (i64, i64)>,
    pub(super) reads: usize,
}

impl Counters {
    pub(super) fn snapshot(&self) -> RetrieveStats {
        RetrieveStats {
            hot: self.hot.load(Ordering::Relaxed),
            warm: self.warm.load(Ordering::Relaxed),
            cold: self.cold.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            promotions: self.promotions.load(Ordering::Relaxed),
            corrupt_warm_copies: self.corrupt_warm.load(Ordering::Relaxed),
        }
    }
}

impl TierManager {
    /// Find a frame in whichever tier holds it. `Ok(None)` when no tier knows it.
    pub async fn retrieve(&self, frame_id: &str, opts: RetrieveOptions) -> Result<Option<Value>> {
        self.check_open()?;
        super::requests::check_frame_id(frame_id)?;
        let id = frame_id.to_string();
        let rec = self.inner.hot.call(move |hot| hot.load(&id)).await?;
        let c = &self.inner.counters;
        let Some(rec) = rec else {
            // StackMemory's GC may have deleted the row of an archived frame: the archive still has it.
            let remotes = self.remotes().await;
            if remotes.cold.is_some() {
                if let Ok((b, _, _, _)) = self.inner.mover.fetch_remote(frame_id, Tier::Cold, &remotes, None).await {
                    c.cold.fetch_add(1, Ordering::Relaxed);
                    return Ok(Some(b.to_value()));
                }
            }
            c.misses.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        };
        let tier = Tier::from_level(rec.meta.tier).unwrap_or(Tier::Hot);
        let value = if let Some(b) = rec.bundle {
            c.hot.fetch_add(1, Ordering::Relaxed);
            self.note_access(frame_id);
            self.policy_access(frame_id, Tier::Hot, rec.meta.size_bytes, false);
            return Ok(Some(b.to_value()));
        } else {
            let remotes = self.remotes().await;
            let (b, sum, served_by, corrupt) =
                self.inner.mover.fetch_remote(frame_id, tier, &remotes, rec.meta.checksum.as_deref()).await?;
            if corrupt {
                c.corrupt_warm.fetch_add(1, Ordering::Relaxed);
            }
            match served_by {
                Tier::Warm => c.warm.fetch_add(1, Ordering::Relaxed),
                _ => c.cold.fetch_add(1, Ordering::Relaxed),
            };
            if served_by == Tier::Cold {
                if let Some(cold) = &remotes.cold {
                    // Off the read's path: the archive's access time is advisory (retention).
                    let (cold, id) = (cold.clone(), frame_id.to_string());
                    tokio::spawn(async move {
                        let _ = cold.touch(&id, now_seconds()).await;
                    });
                }
            }
            // A stub StackMemory wrote to since it was archived: its body is the archived one
            // merged with those rows (read before a promotion, which merges them for good).
            let body = if rec.meta.is_dirty_stub() {
                let (id, archived) = (frame_id.to_string(), b.clone());
                self.inner.hot.call(move |hot| hot.merge_local(&id, archived)).await?
            } else {
                b.clone()
            };
            self.note_access(frame_id);
            let wanted = self.policy_access(frame_id, tier, rec.meta.size_bytes, false);
            let promote = match opts.promote {
                Some(p) => p,
                None => wanted.is_some(),
            };
            if promote {
                let _guard = self.inner.move_lock.lock().await;
                let fetched = Fetched { id: frame_id.to_string(), bundle: b, sum, version: rec.meta.version };
                match self.inner.mover.promote_fetched(fetched, tier, &remotes).await {
                    Ok(_) => {
                        c.promotions.fetch_add(1, Ordering::Relaxed);
                        self.policy_moved(frame_id, tier, Tier::Hot, true, None);
                    }
                    Err(e) => self.policy_moved(frame_id, tier, Tier::Hot, false, Some(e.to_string())),
                }
            } else if wanted.is_some() {
                // The caller said `promote: false`: release the engine's pending promotion.
                self.policy_moved(frame_id, tier, Tier::Hot, false, Some("promote: false".into()));
            }
            body.to_value()
        };
        Ok(Some(value))
    }

    /// Count a read in memory (flushed to SQLite in batches: no disk write per read).
    fn note_access(&self, frame_id: &str) {
        let mut flush = false;
        if let Ok(mut a) = self.inner.access.lock() {
            let e = a.pending.entry(frame_id.to_string()).or_insert((0, 0));
            e.0 += 1;
            e.1 = now_millis();
            a.reads += 1;
            flush = a.reads >= self.inner.config.access_flush_every;
        }
        if flush {
            let me = self.clone();
            tokio::spawn(async move {
                let _ = me.flush_accesses().await;
            });
        }
    }

    pub async fn flush_accesses(&self) -> Result<()> {
        let batch: Vec<(String, i64, i64)> = match self.inner.access.lock() {
            Ok(mut a) => {
                a.reads = 0;
                a.pending.drain().map(|(k, (n, t))| (k, n, t)).collect()
            }
            Err(_) => vec![],
        };
        if batch.is_empty() {
            return Ok(());
        }
        self.inner.hot.call(move |hot| hot.apply_accesses(&batch)).await
    }
}
