//! The read path: a frame from whichever tier holds it (hot without a round trip), reads counted in
//! memory and flushed to SQLite in batches, promotions the policy wants on the way.

use std::collections::HashMap;

use crate::tiers::hot::{FrameMeta, HotBody};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::obs::{Series, ServedBy};

use serde::Serialize;

use super::requests::RetrieveOptions;
use super::TierManager;
use crate::model::codec;
use crate::model::units::{now_millis, now_seconds};
use crate::model::{Result, Tier, TierError};
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

/// Reads not yet told to SQLite (access counts) and, for hot reads, to the policy engine: kept
/// in memory and applied in batches by the flusher, so a read pays one push for its counting.
#[derive(Default)]
pub(super) struct ReadLog {
    pub(super) reads: Vec<LoggedRead>,
}

pub(super) struct LoggedRead {
    frame_id: String,
    at_ms: i64,
    /// The engine has seen it already (remote reads go to it at once: they may promote).
    engine_told: bool,
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
    /// The bundle crosses as JSON text (parsed once, by the caller).
    pub async fn retrieve(&self, frame_id: &str, opts: RetrieveOptions) -> Result<Option<String>> {
        self.check_open()?;
        super::requests::check_frame_id(frame_id)?;
        match self.retrieve_once(frame_id, opts).await {
            // The frame moved between reading its row and fetching its body (a promotion, or a
            // warm copy expiring on the way to cold, deleted the copy the row pointed to): the
            // row says where it is now.
            Err(TierError::NotFound { .. }) => self.retrieve_once(frame_id, opts).await,
            r => r,
        }
    }

    async fn retrieve_once(&self, frame_id: &str, opts: RetrieveOptions) -> Result<Option<String>> {
        let started = Instant::now();
        // A stub's bookkeeping is one point read: done here on the read connection (as a hot read
        // is), not through the blocking pool, so the network call starts one thread hop sooner.
        if let Some(meta) = self.inner.hot.meta_read(frame_id)? {
            if let (false, Some(tier)) = (meta.body_local, Tier::from_level(meta.tier)) {
                return self.retrieve_remote(frame_id, meta, tier, opts, started).await.map(Some);
            }
        }
        let id = frame_id.to_string();
        let rec = self.inner.hot.call(move |hot| hot.load(&id)).await?;
        let c = &self.inner.counters;
        let Some(rec) = rec else {
            // StackMemory's GC may have deleted the row of an archived frame: the archive still has it.
            let remotes = self.remotes_for_read(Tier::Cold).await;
            if remotes.cold.is_some() {
                if let Ok((b, _, _, _)) = self.inner.mover.fetch_remote(frame_id, Tier::Cold, &remotes, None).await {
                    c.cold.fetch_add(1, Ordering::Relaxed);
                    self.inner.obs.record(Series::Retrieve(ServedBy::Cold), started, 0);
                    return Ok(Some(b.json_text()));
                }
            }
            c.misses.fetch_add(1, Ordering::Relaxed);
            self.inner.obs.record(Series::Retrieve(ServedBy::Miss), started, 0);
            return Ok(None);
        };
        let Some(tier) = Tier::from_level(rec.meta.tier) else {
            // An expired stub: retention deleted its body; the row is all there is.
            c.hot.fetch_add(1, Ordering::Relaxed);
            let v = serde_json::json!({"frame": rec.stub, "events": [], "anchors": [], "expired": true});
            return Ok(Some(v.to_string()));
        };
        if let Some(b) = rec.bundle {
            self.hot_read(frame_id, rec.meta.size_bytes);
            self.inner.obs.record(Series::Retrieve(ServedBy::Hot), started, rec.meta.size_bytes.max(0) as u64);
            return Ok(Some(b.json_text()));
        }
        self.retrieve_remote(frame_id, rec.meta, tier, opts, started).await.map(Some)
    }

    /// A stub's body from the remote tier that holds it (merged with rows StackMemory wrote
    /// since), counted, promoted when asked or wanted.
    async fn retrieve_remote(
        &self,
        frame_id: &str,
        meta: FrameMeta,
        tier: Tier,
        opts: RetrieveOptions,
        started: Instant,
    ) -> Result<String> {
        let c = &self.inner.counters;
        let remotes = self.remotes_for_read(tier).await;
        let (raw, sum, served_by, corrupt) =
            self.inner.mover.fetch_remote_raw(frame_id, tier, &remotes, meta.checksum.as_deref()).await?;
        if corrupt {
            c.corrupt_warm.fetch_add(1, Ordering::Relaxed);
        }
        match served_by {
            Tier::Warm => c.warm.fetch_add(1, Ordering::Relaxed),
            _ => c.cold.fetch_add(1, Ordering::Relaxed),
        };
        let by = if served_by == Tier::Warm { ServedBy::Warm } else { ServedBy::Cold };
        self.inner.obs.record(Series::Retrieve(by), started, meta.size_bytes.max(0) as u64);
        if served_by == Tier::Cold {
            if let Some(cold) = &remotes.cold {
                // Off the read's path: the archive's access time is advisory (retention).
                let (cold, id) = (cold.clone(), frame_id.to_string());
                tokio::spawn(async move {
                    crate::obs::log_err(
                        "touching an archived frame's access time",
                        cold.touch(&id, now_seconds()).await,
                    );
                });
            }
        }
        self.note_access(frame_id, true);
        let wanted = self.policy_access(frame_id, tier, meta.size_bytes, false);
        let promote = match opts.promote {
            Some(p) => p,
            None => wanted.is_some(),
        };
        let served = if served_by == Tier::Warm { "warm" } else { "cold" };
        if !promote && !meta.is_dirty_stub() && meta.checksum.is_some() {
            // A clean stub staying where it is: the copy's JSON text, verified against the
            // checksum SQLite recorded for this frame, is the answer as it was stored; parsing it
            // and writing it again would give the same text.
            if wanted.is_some() {
                self.policy_moved(frame_id, tier, Tier::Hot, false, Some("promote: false".into()));
            }
            return String::from_utf8(raw).map_err(|_| TierError::Corrupt {
                frame_id: frame_id.to_string(),
                tier: served.into(),
                message: "not UTF-8 text".into(),
            });
        }
        let b = codec::bundle_from_raw(frame_id, served, &raw)?;
        // A stub StackMemory wrote to since it was archived: its body is the archived one
        // merged with those rows (read before a promotion, which merges them for good).
        let body = if meta.is_dirty_stub() {
            let (id, archived) = (frame_id.to_string(), b.clone());
            self.inner.hot.call(move |hot| hot.merge_local(&id, archived)).await?
        } else {
            b.clone()
        };
        if promote {
            let fetched = Fetched { id: frame_id.to_string(), bundle: b, sum, version: meta.version };
            let t0 = Instant::now();
            let r = self.inner.mover.promote_fetched(fetched, tier, &remotes).await;
            self.observe_promotion(tier, t0, meta.size_bytes, r.is_ok());
            match r {
                Ok(_) => {
                    c.promotions.fetch_add(1, Ordering::Relaxed);
                    self.policy_moved(frame_id, tier, Tier::Hot, true, None);
                    // Off the read's path: the frames read with this one come back too.
                    let (m, id) = (self.clone(), frame_id.to_string());
                    tokio::spawn(async move { m.bring_companions(&id).await });
                }
                Err(e) => self.policy_moved(frame_id, tier, Tier::Hot, false, Some(e.to_string())),
            }
        } else if wanted.is_some() {
            // The caller said `promote: false`: release the engine's pending promotion.
            self.policy_moved(frame_id, tier, Tier::Hot, false, Some("promote: false".into()));
        }
        Ok(body.json_text())
    }

    /// The read path's fast lane, on the caller's thread (as better-sqlite3 reads): a hot frame's
    /// bundle as JSON text, or where its body is. Nothing here waits on the network, a write or a
    /// move; the read is counted in memory.
    pub fn read_hot(&self, frame_id: &str) -> Result<HotBody> {
        self.check_open()?;
        super::requests::check_frame_id(frame_id)?;
        let started = Instant::now();
        let body = self.inner.hot.body_json(frame_id)?;
        if let HotBody::Json(text) = &body {
            self.hot_read(frame_id, text.len() as i64);
            self.inner.obs.record(Series::Retrieve(ServedBy::Hot), started, text.len() as u64);
        }
        Ok(body)
    }

    /// Which tier holds a frame's body, or `None` when no tier knows it (without a round trip:
    /// from SQLite's bookkeeping).
    pub fn locate(&self, frame_id: &str) -> Result<Option<Tier>> {
        self.check_open()?;
        super::requests::check_frame_id(frame_id)?;
        self.inner.hot.locate(frame_id)
    }

    fn hot_read(&self, frame_id: &str, size: i64) {
        self.inner.counters.hot.fetch_add(1, Ordering::Relaxed);
        self.trace(frame_id, size, now_millis(), false);
        self.note_access(frame_id, false);
    }

    /// Logs a read (flushed to SQLite and the engine in batches: no disk write, no engine lock per
    /// read); a full log wakes the flusher.
    fn note_access(&self, frame_id: &str, engine_told: bool) {
        let full = match self.inner.access.lock() {
            Ok(mut log) => {
                log.reads.push(LoggedRead { frame_id: frame_id.to_string(), at_ms: now_millis(), engine_told });
                log.reads.len() >= self.inner.config.access_flush_every
            }
            Err(_) => false,
        };
        if full {
            self.inner.flush_soon.notify_one();
        }
    }

    /// Applies the logged reads: hot ones to the engine, all of them to SQLite's access counts.
    pub async fn flush_accesses(&self) -> Result<()> {
        let reads = match self.inner.access.lock() {
            Ok(mut log) => std::mem::take(&mut log.reads),
            Err(_) => vec![],
        };
        if reads.is_empty() {
            return Ok(());
        }
        let mut counts: HashMap<String, (i64, i64)> = HashMap::new();
        {
            let mut engine = self.engine();
            for r in &reads {
                if !r.engine_told {
                    engine.on_read(&r.frame_id, Tier::Hot, r.at_ms);
                }
            }
        }
        for r in reads {
            let e = counts.entry(r.frame_id).or_insert((0, 0));
            e.0 += 1;
            e.1 = e.1.max(r.at_ms);
        }
        let batch: Vec<(String, i64, i64)> = counts.into_iter().map(|(k, (n, t))| (k, n, t)).collect();
        self.inner.hot.call(move |hot| hot.apply_accesses(&batch)).await
    }
}
