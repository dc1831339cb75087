//! `TierManager`: the one interface StackMemory calls for every frame operation. It owns the hot
//! tier, (re)connects the remote tiers, counts accesses, and hands moves to the `Mover`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{Mutex as AsyncMutex, Notify};

use crate::model::units::{now_millis, now_seconds};
use crate::model::{normalize_bundle, Bundle, Tier};
use crate::model::{Result, TierError};
use crate::moves::{MigrateReport, MigrateRequest, Mover, RecoveryReport, Remotes};
use crate::policy::PolicyEngine;
use crate::tiers::cold::ColdTier;
use crate::tiers::hot::HotTier;
use crate::tiers::warm::WarmTier;
use config::TierConfig;

pub mod config;
mod policy_ops;
pub use policy_ops::simulate;

#[derive(Default)]
struct WorkerRuns {
    cycles: u64,
    /// Cycles started early because a pressure check found a higher level.
    pressure_cycles: u64,
    last_error: Option<String>,
}

/// A remote tier's connection, made lazily and retried at most every `RETRY` after a failure.
struct RemoteSlot<T> {
    enabled: bool,
    state: AsyncMutex<SlotState<T>>,
}

struct SlotState<T> {
    client: Option<T>,
    last_error: Option<String>,
    last_attempt: Option<Instant>,
}

const RETRY: Duration = Duration::from_secs(2);

impl<T: Clone> RemoteSlot<T> {
    fn new(enabled: bool) -> Self {
        RemoteSlot { enabled, state: AsyncMutex::new(SlotState { client: None, last_error: None, last_attempt: None }) }
    }

    async fn get<F, Fut>(&self, connect: F) -> (Option<T>, Option<String>)
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        if !self.enabled {
            return (None, None);
        }
        let mut st = self.state.lock().await;
        if let Some(c) = &st.client {
            return (Some(c.clone()), None);
        }
        if st.last_attempt.is_some_and(|t| t.elapsed() < RETRY) {
            return (None, st.last_error.clone());
        }
        st.last_attempt = Some(Instant::now());
        match connect().await {
            Ok(c) => {
                st.client = Some(c.clone());
                st.last_error = None;
                (Some(c), None)
            }
            Err(e) => {
                st.last_error = Some(e.to_string());
                (None, st.last_error.clone())
            }
        }
    }
}

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
struct Counters {
    hot: AtomicU64,
    warm: AtomicU64,
    cold: AtomicU64,
    misses: AtomicU64,
    promotions: AtomicU64,
    corrupt_warm: AtomicU64,
}

/// Access counts kept in memory and flushed to SQLite in batches (no disk write per read).
#[derive(Default)]
struct AccessBuffer {
    pending: HashMap<String, (i64, i64)>,
    reads: usize,
}

pub struct RetrieveOptions {
    /// `Some(true)` promotes now, `Some(false)` never, `None` by `promotionThreshold`.
    pub promote: Option<bool>,
}

struct Inner {
    config: TierConfig,
    hot: Arc<HotTier>,
    mover: Mover,
    warm: RemoteSlot<WarmTier>,
    cold: RemoteSlot<ColdTier>,
    closed: AtomicBool,
    access: std::sync::Mutex<AccessBuffer>,
    counters: Counters,
    shutdown: Arc<Notify>,
    /// Serialises migrations: two overlapping moves of one frame would race on its journal.
    move_lock: AsyncMutex<()>,
    last_recovery: std::sync::Mutex<Option<RecoveryReport>>,
    /// The policy engine: advises moves; knows no backend.
    engine: std::sync::Mutex<PolicyEngine>,
    last_snapshot: std::sync::Mutex<Option<Instant>>,
    worker_runs: std::sync::Mutex<WorkerRuns>,
    /// `recordTrace`: every read and write, one JSON line each, for the simulator.
    trace: std::sync::Mutex<Option<std::io::BufWriter<std::fs::File>>>,
}

#[derive(Clone)]
pub struct TierManager {
    inner: Arc<Inner>,
}

impl TierManager {
    pub async fn open(config: TierConfig) -> Result<TierManager> {
        let hot = HotTier::open_shared(config.db_path.clone()).await?;
        let mover = Mover::new(hot.clone(), config.postgres.compression_level, config.policies.batch_size);
        let engine = {
            let cfg = config.clone();
            hot.call(move |hot| policy_ops::engine_for(&cfg, hot)).await?
        };
        let trace = match &config.record_trace {
            None => None,
            Some(p) => {
                Some(std::io::BufWriter::new(std::fs::OpenOptions::new().create(true).append(true).open(p).map_err(
                    |e| TierError::invalid_config("recordTrace", format!("cannot open {}: {e}", p.display())),
                )?))
            }
        };
        let inner = Arc::new(Inner {
            engine: std::sync::Mutex::new(engine),
            last_snapshot: std::sync::Mutex::new(None),
            worker_runs: std::sync::Mutex::new(WorkerRuns::default()),
            trace: std::sync::Mutex::new(trace),
            warm: RemoteSlot::new(config.redis.enabled),
            cold: RemoteSlot::new(config.postgres.enabled),
            config,
            hot,
            mover,
            closed: AtomicBool::new(false),
            access: std::sync::Mutex::new(AccessBuffer::default()),
            counters: Counters::default(),
            shutdown: Arc::new(Notify::new()),
            move_lock: AsyncMutex::new(()),
            last_recovery: std::sync::Mutex::new(None),
        });
        let mgr = TierManager { inner };
        // Finish or undo moves a crash interrupted, before anything else touches those frames.
        let remotes = mgr.remotes().await;
        let rec = mgr.inner.mover.recover(&remotes).await?;
        if let Ok(mut g) = mgr.inner.last_recovery.lock() {
            *g = Some(rec);
        }
        mgr.spawn_flusher();
        mgr.spawn_policy_worker();
        Ok(mgr)
    }

    pub fn config(&self) -> &TierConfig {
        &self.inner.config
    }

    pub fn hot(&self) -> &Arc<HotTier> {
        &self.inner.hot
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::SeqCst) {
            Err(TierError::Closed)
        } else {
            Ok(())
        }
    }

    /// The remote tiers as reachable now (connecting lazily, retrying after failures).
    pub async fn remotes(&self) -> Remotes {
        let rc = self.inner.config.redis.clone();
        let pc = self.inner.config.postgres.clone();
        let (warm, warm_down) = self.inner.warm.get(|| async move { WarmTier::connect(&rc).await }).await;
        let (cold, cold_down) = self.inner.cold.get(|| async move { ColdTier::connect(&pc).await }).await;
        Remotes { warm, cold, warm_down, cold_down }
    }

    fn spawn_flusher(&self) {
        let weak = Arc::downgrade(&self.inner);
        let every = Duration::from_millis(self.inner.config.access_flush_ms.max(10));
        tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let shutdown = inner.shutdown.clone();
                drop(inner);
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = shutdown.notified() => return,
                }
                let Some(inner) = weak.upgrade() else { return };
                if inner.closed.load(Ordering::SeqCst) {
                    return;
                }
                let _ = TierManager { inner }.flush_accesses().await;
            }
        });
    }

    pub async fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.inner.shutdown.notify_waiters();
        self.flush_accesses().await?;
        self.flush_trace();
        self.save_snapshot(true).await
    }

    pub async fn store(&self, bundle: Value) -> Result<i64> {
        self.check_open()?;
        let max = self.inner.config.max_frame_bytes;
        let out = self
            .inner
            .hot
            .call(move |hot| {
                let b = normalize_bundle(bundle)?;
                hot.store_many(&[b], max)
            })
            .await?;
        for (id, _, size) in &out {
            self.policy_access(id, Tier::Hot, *size, true);
        }
        Ok(out.first().map(|r| r.1).unwrap_or(0))
    }

    pub async fn store_many(&self, bundles: Vec<Value>) -> Result<usize> {
        self.check_open()?;
        let max = self.inner.config.max_frame_bytes;
        let out = self
            .inner
            .hot
            .call(move |hot| {
                let mut bs = Vec::with_capacity(bundles.len());
                for (i, v) in bundles.into_iter().enumerate() {
                    bs.push(normalize_bundle(v).map_err(|e| match e {
                        TierError::InvalidFrame { field, message } => {
                            TierError::InvalidFrame { field: format!("bundles[{i}].{field}"), message }
                        }
                        other => other,
                    })?);
                }
                hot.store_many(&bs, max)
            })
            .await?;
        for (id, _, size) in &out {
            self.policy_access(id, Tier::Hot, *size, true);
        }
        Ok(out.len())
    }

    /// Find a frame in whichever tier holds it. `Ok(None)` when no tier knows it.
    pub async fn retrieve(&self, frame_id: &str, opts: RetrieveOptions) -> Result<Option<Value>> {
        self.check_open()?;
        check_id(frame_id)?;
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
            let (b, _sum, served_by, corrupt) =
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
            self.note_access(frame_id);
            let wanted = self.policy_access(frame_id, tier, rec.meta.size_bytes, false);
            let promote = match opts.promote {
                Some(p) => p,
                None => wanted.is_some(),
            };
            if promote {
                let _guard = self.inner.move_lock.lock().await;
                match self.inner.mover.promote_one(frame_id, tier, &remotes).await {
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
            b.to_value()
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

    pub async fn delete(&self, frame_id: &str) -> Result<bool> {
        self.check_open()?;
        check_id(frame_id)?;
        let _guard = self.inner.move_lock.lock().await;
        let id = frame_id.to_string();
        let meta = self.inner.hot.call(move |hot| hot.delete(&id)).await?;
        if meta.is_some() {
            // Remote copies are removed by the discard the delete journaled.
            let remotes = self.remotes().await;
            let _ = self.inner.mover.recover(&remotes).await;
        }
        Ok(meta.is_some())
    }

    pub async fn migrate(&self, req: MigrateRequest) -> Result<MigrateReport> {
        self.check_open()?;
        let rep = self.migrate_inner(req).await?;
        if !rep.dry_run {
            for m in &rep.moved {
                if let (Some(from), Some(to)) = (Tier::parse(m.from), Tier::parse(m.to)) {
                    self.policy_moved(&m.frame_id, from, to, true, None);
                }
            }
        }
        Ok(rep)
    }

    /// A move through the mover, serialised with every other move.
    async fn migrate_inner(&self, req: MigrateRequest) -> Result<MigrateReport> {
        let _guard = self.inner.move_lock.lock().await;
        let remotes = self.remotes().await;
        self.inner.mover.migrate(&req, &remotes).await
    }

    pub async fn search(
        &self,
        query: &str,
        project_id: Option<String>,
        limit: u32,
        tiers: Option<Vec<Tier>>,
    ) -> Result<Value> {
        self.check_open()?;
        if query.trim().is_empty() {
            return Err(TierError::invalid_argument("query", "must not be empty"));
        }
        if query.len() > 4096 {
            return Err(TierError::invalid_argument("query", "longer than 4096 characters"));
        }
        let limit = limit.clamp(1, 1000);
        let want = |t: Tier| tiers.as_ref().is_none_or(|ts| ts.contains(&t));
        let tokens = tokenize(query);
        let pid = project_id.clone();
        let hot_hits = self.inner.hot.call(move |hot| hot.search(&tokens, pid.as_deref(), limit)).await?;
        let mut merged: Vec<Value> = vec![];
        let mut seen = std::collections::HashSet::new();
        let max_hot = hot_hits.iter().map(|h| h.rank).fold(f64::MIN_POSITIVE, f64::max);
        for h in hot_hits {
            let t = Tier::parse(&h.tier).unwrap_or(Tier::Hot);
            if !want(t) || !seen.insert(h.frame_id.clone()) {
                continue;
            }
            merged.push(json!({"frameId": h.frame_id, "projectId": h.project_id, "name": h.name, "tier": h.tier,
                "source": "sqlite", "score": h.rank / max_hot}));
        }
        let mut warnings = vec![];
        if want(Tier::Warm) || want(Tier::Cold) {
            let remotes = self.remotes().await;
            match &remotes.cold {
                Some(c) => {
                    let hits = c.search(query, project_id.as_deref(), limit).await?;
                    let max_cold = hits.iter().map(|h| h.rank as f64).fold(f64::MIN_POSITIVE, f64::max);
                    for h in hits {
                        let t = if h.tier == 2 { Tier::Warm } else { Tier::Cold };
                        if seen.contains(&h.frame_id) {
                            continue;
                        }
                        // A frame archived and also hot (mid-move) is listed once.
                        seen.insert(h.frame_id.clone());
                        if !want(t) {
                            continue;
                        }
                        merged.push(json!({"frameId": h.frame_id, "projectId": h.project_id, "name": h.name,
                            "tier": t.as_str(), "source": "postgres", "score": h.rank as f64 / max_cold}));
                    }
                }
                None => {
                    if let Some(why) = remotes.cold_down {
                        warnings.push(format!("archive not searched: {why}"));
                    }
                }
            }
        }
        merged.sort_by(|a, b| {
            let (x, y) = (a["score"].as_f64().unwrap_or(0.0), b["score"].as_f64().unwrap_or(0.0));
            y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal)
        });
        merged.truncate(limit as usize);
        Ok(json!({"results": merged, "warnings": warnings}))
    }

    pub async fn status(&self) -> Result<Value> {
        self.check_open()?;
        let (counts, version) = self.inner.hot.call(move |hot| Ok((hot.counts()?, hot.schema_version()?))).await?;
        let remotes = self.remotes().await;
        let cfg = &self.inner.config;
        let redis = match (&remotes.warm, cfg.redis.enabled) {
            (_, false) => json!({"configured": false, "enabled": false, "reachable": false}),
            (Some(w), true) => match w.stats().await {
                Ok(s) => json!({"configured": true, "enabled": true, "reachable": true, "latencyUs": s.latency_us,
                    "version": s.version, "frames": s.frames, "bytes": s.bytes, "usedMemory": s.used_memory,
                    "maxmemory": s.maxmemory, "maxSize": cfg.redis.max_size, "ttlSeconds": cfg.redis.ttl_secs,
                    "keyPrefix": cfg.redis.key_prefix}),
                Err(e) => json!({"configured": true, "enabled": true, "reachable": false, "error": e.to_string()}),
            },
            (None, true) => {
                json!({"configured": true, "enabled": true, "reachable": false, "error": remotes.warm_down})
            }
        };
        let postgres = match (&remotes.cold, cfg.postgres.enabled) {
            (_, false) => json!({"configured": false, "enabled": false, "reachable": false}),
            (Some(c), true) => match c.stats().await {
                Ok(s) => json!({"configured": true, "enabled": true, "reachable": true, "latencyUs": s.latency_us,
                    "version": s.version, "frames": s.frames, "rawBytes": s.raw_bytes, "compressedBytes": s.compressed_bytes,
                    "compressionRatio": if s.compressed_bytes > 0 { s.raw_bytes as f64 / s.compressed_bytes as f64 } else { 0.0 },
                    "schema": cfg.postgres.schema}),
                Err(e) => json!({"configured": true, "enabled": true, "reachable": false, "error": e.to_string()}),
            },
            (None, true) => {
                json!({"configured": true, "enabled": true, "reachable": false, "error": remotes.cold_down})
            }
        };
        let local_only = remotes.warm.is_none() && remotes.cold.is_none();
        let held: Vec<Value> = counts.held_back.iter().map(|(r, n)| json!({"reason": r, "frames": n})).collect();
        let c = &self.inner.counters;
        let retrieves = RetrieveStats {
            hot: c.hot.load(Ordering::Relaxed),
            warm: c.warm.load(Ordering::Relaxed),
            cold: c.cold.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            promotions: c.promotions.load(Ordering::Relaxed),
            corrupt_warm_copies: c.corrupt_warm.load(Ordering::Relaxed),
        };
        let total_reads = retrieves.hot + retrieves.warm + retrieves.cold;
        Ok(json!({
            "dbPath": self.inner.hot.path().display().to_string(),
            "schemaVersion": version,
            "mode": if local_only { "local-only" } else { "tiered" },
            "tiers": {
                "hot": {"frames": counts.hot.frames, "bytes": counts.hot.bytes, "maxFrames": cfg.sqlite.max_frames,
                        "maxSize": cfg.sqlite.max_size, "maxAgeMs": cfg.sqlite.max_age_ms, "fileBytes": counts.file_bytes},
                "warm": {"frames": counts.warm.frames, "bytes": counts.warm.bytes},
                "cold": {"frames": counts.cold.frames, "bytes": counts.cold.bytes},
            },
            "backends": {
                "sqlite": {"configured": true, "reachable": true, "path": self.inner.hot.path().display().to_string()},
                "redis": redis,
                "postgres": postgres,
            },
            "journalBacklog": counts.journal_backlog,
            "heldBack": held,
            "retrieves": retrieves,
            "hotHitRatio": if total_reads > 0 { retrieves.hot as f64 / total_reads as f64 } else { 1.0 },
            "lastRecovery": self.inner.last_recovery.lock().ok().and_then(|g| g.clone()),
            "policy": self.policy_status(),
        }))
    }

    /// Finish stale moves, drop orphan Redis index entries, apply retention, reclaim SQLite space.
    pub async fn compact(&self) -> Result<Value> {
        self.check_open()?;
        let _guard = self.inner.move_lock.lock().await;
        self.flush_accesses().await?;
        let remotes = self.remotes().await;
        let recovery = self.inner.mover.recover(&remotes).await?;
        let mut out = json!({"journal": recovery});
        if let Some(w) = &remotes.warm {
            out["redisOrphansRemoved"] = json!(w.remove_orphans().await?);
            out["redisEvicted"] = json!(w.enforce_cap().await?.len());
        }
        if let Some(c) = &remotes.cold {
            let expired = c.apply_retention(self.inner.config.postgres.retention_days, now_seconds()).await?;
            let ids = expired.clone();
            let dropped = self.inner.hot.call(move |hot| hot.drop_expired_stubs(&ids)).await?;
            out["retentionDeleted"] = json!(expired.len());
            out["stubsDropped"] = json!(dropped);
        }
        let (pruned, reclaimed) =
            self.inner.hot.call(move |hot| Ok((hot.journal_prune(7 * 86_400)?, hot.reclaim()?))).await?;
        out["journalPruned"] = json!(pruned);
        out["sqliteBytesReclaimed"] = json!(reclaimed);
        Ok(out)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown.notify_waiters();
    }
}

fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > crate::model::frame::MAX_ID_LEN {
        return Err(TierError::invalid_argument("frameId", "must be a non-empty string of at most 512 characters"));
    }
    Ok(())
}

/// Words of a query for SQLite FTS: letters, digits and `_`; everything else separates.
pub fn tokenize(q: &str) -> Vec<String> {
    q.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|t| !t.is_empty())
        .take(32)
        .map(|t| t.to_lowercase())
        .collect()
}

/// The bundle type is re-exported for the glue's typed returns.
pub type FrameBundle = Bundle;
