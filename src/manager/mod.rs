//! `TierManager`: the one interface StackMemory calls for every frame operation. It owns the hot
//! tier, (re)connects the remote tiers, counts accesses, and hands moves to the `Mover`.
//!
//! Files: `config` (the TierConfig), `requests` (JS option objects → typed requests), `remotes`
//! (lazy connections), `retrieve` (the read path and access counting), `search`, `status`
//! (status and compact), `policy_ops` (the policy engine's side), `worker` (background tasks),
//! `trace` (recordTrace and simulate).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{Mutex as AsyncMutex, Notify};

use crate::model::{normalize_bundle, Result, Tier, TierError};
use crate::moves::{MigrateReport, MigrateRequest, Mover, RecoveryReport, Remotes};
use crate::policy::PolicyEngine;
use crate::tiers::cold::ColdTier;
use crate::tiers::hot::HotTier;
use crate::tiers::warm::WarmTier;

pub mod config;
#[cfg(test)]
mod config_props;
pub mod gc;
mod observe;
mod policy_ops;
mod remotes;
pub mod requests;
mod retrieve;
pub mod runs;
mod search;
pub mod status;
mod trace;
pub mod verify;
mod worker;

use config::TierConfig;
use remotes::RemoteSlot;
use requests::check_frame_id;
pub use requests::{RetrieveOptions, SearchRequest};
pub use retrieve::RetrieveStats;
use retrieve::{Counters, ReadLog};
pub use trace::simulate;
use worker::WorkerRuns;

/// How long a read waits for a remote tier still connecting when another tier can serve it.
const READ_WAIT: Duration = Duration::from_millis(20);

struct Inner {
    config: TierConfig,
    hot: Arc<HotTier>,
    /// This file's name in the archive's `frame_holders` (shared PostgreSQL, several machines).
    holder: String,
    mover: Mover,
    warm: RemoteSlot<WarmTier>,
    cold: RemoteSlot<ColdTier>,
    closed: AtomicBool,
    access: std::sync::Mutex<ReadLog>,
    counters: Counters,
    shutdown: Arc<Notify>,
    /// Wakes the flusher early: the read log is full.
    flush_soon: Arc<Notify>,
    /// Held by the background worker through a cycle; `close()` takes it, so nothing the worker
    /// started is still running when `close()` returns.
    background: AsyncMutex<()>,
    last_recovery: std::sync::Mutex<Option<RecoveryReport>>,
    /// The policy engine: advises moves; knows no backend.
    engine: std::sync::Mutex<PolicyEngine>,
    last_snapshot: std::sync::Mutex<Option<Instant>>,
    worker_runs: std::sync::Mutex<WorkerRuns>,
    /// `recordTrace`: every read and write, one JSON line each, for the simulator.
    trace: std::sync::Mutex<Option<std::io::BufWriter<std::fs::File>>>,
    /// Bulk runs going in this process.
    runs: runs::ActiveRuns,
    /// Latency histograms, counts and moves for `stats()` / `metrics()`.
    obs: crate::obs::Recorder,
}

#[derive(Clone)]
pub struct TierManager {
    inner: Arc<Inner>,
}

impl TierManager {
    pub async fn open(config: TierConfig) -> Result<TierManager> {
        let hot = HotTier::open_shared(config.db_path.clone()).await?;
        let mover = Mover::new(hot.clone(), config.postgres.compression_level, config.policies.batch_size)
            .with_dictionaries(config.dictionaries);
        mover.load_dictionaries().await?;
        let holder = hot.call(|hot| hot.holder_id()).await?;
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
            warm: RemoteSlot::new("redis", config.redis.enabled),
            cold: RemoteSlot::new("postgres", config.postgres.enabled),
            config,
            hot,
            holder,
            mover,
            closed: AtomicBool::new(false),
            access: std::sync::Mutex::new(ReadLog::default()),
            counters: Counters::default(),
            shutdown: Arc::new(Notify::new()),
            flush_soon: Arc::new(Notify::new()),
            runs: runs::ActiveRuns::default(),
            obs: crate::obs::Recorder::new(),
            background: AsyncMutex::new(()),
            last_recovery: std::sync::Mutex::new(None),
        });
        let mgr = TierManager { inner };
        // Finish or undo moves a crash interrupted, before anything else touches those frames. The
        // remote tiers connect in the background (open() waits for them only when the journal
        // has moves to finish).
        let pending = mgr.inner.hot.call(|hot| hot.journal_open()).await?.len();
        let remotes = if pending > 0 {
            mgr.remotes().await
        } else {
            mgr.remotes_within(Duration::ZERO, Duration::ZERO, false).await
        };
        let rec = {
            let _moving = mgr.inner.mover.lock_moves().await?;
            mgr.inner.mover.recover(&remotes).await?
        };
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

    /// The remote tiers as reachable now: a closed breaker's tier at once, an open one's never;
    /// a probe under way is waited for up to its connect timeout.
    pub async fn remotes(&self) -> Remotes {
        let cfg = &self.inner.config;
        let wait = Duration::from_millis(cfg.redis.connect_timeout_ms.max(cfg.postgres.connect_timeout_ms) + 100);
        self.remotes_within(wait, wait, true).await
    }

    /// The remote tiers for the start of a bulk run: an open breaker probes now instead of at its
    /// backoff's end, and the probe is waited for (at most its connect timeout).
    pub(super) async fn remotes_for_run(&self) -> Remotes {
        self.inner.warm.retry_now();
        self.inner.cold.retry_now();
        self.remotes().await
    }

    /// The remote tiers, waiting for a probe under way at most `warm_wait` / `cold_wait` (both at
    /// once); `patient`: also for a probe after failures.
    pub async fn remotes_within(&self, warm_wait: Duration, cold_wait: Duration, patient: bool) -> Remotes {
        let rc = self.inner.config.redis.clone();
        let pc = self.inner.config.postgres.clone();
        let holder = self.inner.holder.clone();
        let ((warm, warm_down), (cold, cold_down)) = tokio::join!(
            self.inner.warm.get(
                || async move {
                    observe::connect("redis", rc.connection_string.as_deref(), WarmTier::connect(&rc).await)
                },
                warm_wait,
                patient
            ),
            self.inner.cold.get(
                || async move {
                    let c = ColdTier::connect(&pc).await.map(|c| c.with_holder(&holder));
                    observe::connect("postgres", pc.connection_string.as_deref(), c)
                },
                cold_wait,
                patient
            ),
        );
        Remotes { warm, cold, warm_down, cold_down }
    }

    /// For a read of a body in `tier`: a tier still making its first connection costs at most
    /// `READ_WAIT`, one that failed before nothing; only when no tier that could serve the read
    /// is there yet is the archive's first connection waited for.
    pub(super) async fn remotes_for_read(&self, tier: Tier) -> Remotes {
        let r = self.remotes_within(READ_WAIT, READ_WAIT, false).await;
        let served = r.cold.is_some() || (tier == Tier::Warm && r.warm.is_some());
        if served {
            return r;
        }
        let cfg = &self.inner.config;
        self.remotes_within(Duration::ZERO, Duration::from_millis(cfg.postgres.connect_timeout_ms + 100), false).await
    }

    pub async fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.inner.shutdown.notify_waiters();
        // Bulk runs stop at their next batch and checkpoint (resumable with `resumeMigration`).
        self.stop_runs().await;
        // A cycle the worker started finishes first (its moves are journaled either way).
        let _idle = self.inner.background.lock().await;
        self.flush_accesses().await?;
        self.flush_trace();
        self.save_snapshot(true).await
    }

    /// Normalises and upserts bundles in one transaction; errors name the bundle when `listed`.
    async fn store_bundles(&self, bundles: Vec<Value>, listed: bool) -> Result<Vec<(String, i64, i64)>> {
        self.check_open()?;
        let started = Instant::now();
        let max = self.inner.config.max_frame_bytes;
        let out = self
            .inner
            .hot
            .call(move |hot| {
                let mut bs = Vec::with_capacity(bundles.len());
                for (i, v) in bundles.into_iter().enumerate() {
                    bs.push(normalize_bundle(v).map_err(|e| match e {
                        TierError::InvalidFrame { field, message } if listed => {
                            TierError::InvalidFrame { field: format!("bundles[{i}].{field}"), message }
                        }
                        other => other,
                    })?);
                }
                hot.store_many(&bs, max)
            })
            .await?;
        self.inner.obs.record(crate::obs::Series::Store, started, out.iter().map(|r| r.2.max(0) as u64).sum());
        for (id, _, size) in &out {
            self.policy_access(id, Tier::Hot, *size, true);
        }
        Ok(out)
    }

    /// Store (upsert) one bundle; returns its new version.
    pub async fn store(&self, bundle: Value) -> Result<i64> {
        Ok(self.store_bundles(vec![bundle], false).await?.first().map(|r| r.1).unwrap_or(0))
    }

    /// Store many bundles in one transaction (all or nothing); returns how many.
    pub async fn store_many(&self, bundles: Vec<Value>) -> Result<usize> {
        Ok(self.store_bundles(bundles, true).await?.len())
    }

    pub async fn delete(&self, frame_id: &str) -> Result<bool> {
        self.check_open()?;
        check_frame_id(frame_id)?;
        let _moving = self.inner.mover.lock_moves().await?;
        let id = frame_id.to_string();
        let meta = self.inner.hot.call(move |hot| hot.delete(&id)).await?;
        if meta.is_some() {
            // The engine forgets it (its access records would otherwise outlive the frame), and
            // the remote copies are removed by the discard the delete journaled.
            self.engine().forget(frame_id);
            let remotes = self.remotes().await;
            crate::obs::log_err("removing a deleted frame's remote copies", self.inner.mover.recover(&remotes).await);
        }
        Ok(meta.is_some())
    }

    /// A frame someone else wrote (StackMemory's frame hooks call it on create and close): its
    /// bookkeeping follows its rows, and the write counts as an access. `false` when unknown.
    pub async fn refresh(&self, frame_id: &str) -> Result<bool> {
        self.check_open()?;
        check_frame_id(frame_id)?;
        let id = frame_id.to_string();
        let meta = self.inner.hot.call(move |hot| hot.refresh_meta(&id)).await?;
        if let Some(m) = &meta {
            self.policy_access(frame_id, Tier::Hot, m.size_bytes, true);
        }
        Ok(meta.is_some())
    }

    /// A migration, run as a bulk run (`runs.rs`) and awaited: every frame it moved, held back,
    /// skipped or failed is in the report, with the run's id.
    pub async fn migrate(&self, req: MigrateRequest) -> Result<MigrateReport> {
        let opts = crate::moves::RunOptions { max_batch: self.batch_size(), ..Default::default() };
        self.migrate_run(req, opts, None).await
    }

    /// A move through the mover (its batches are serialised with every other move).
    async fn migrate_inner(&self, req: MigrateRequest) -> Result<MigrateReport> {
        let (remotes, started) = (self.remotes().await, Instant::now());
        let rep = self.inner.mover.migrate(&req, &remotes).await;
        if let Ok(r) = &rep {
            self.observe_report(r, req.to, started, true);
        }
        rep
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown.notify_waiters();
    }
}
