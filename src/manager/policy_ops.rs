//! The manager's policy side: feeding the `PolicyEngine` (which knows no backend) with frames,
//! pressure and reachability, executing the moves it decides through the `Mover`, and reporting
//! every decision. Pins, force moves and explain.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use super::requests::check_frame_id;
use super::TierManager;
use crate::model::units::now_millis;
use crate::model::{Result, Tier, TierError};
use crate::moves::MigrateRequest;
use crate::policy::engine::Reachability;
use crate::policy::{Action, Decision, FrameView, PolicyEngine, PressureInputs};
use crate::tiers::hot::{Candidate, CandidateFilter};

/// How recent another process's run checkpoint must be for the cycles to wait for it: 10 min (two
/// default sync intervals; at the default 1,000 frames per checkpoint a run saves far more often
/// unless throttled below 2 frames/s).
const OTHER_RUN_FRESH_S: i64 = 600;

/// The engine's state is persisted in `tier_kv` under this key.
const SNAPSHOT_KEY: &str = "policy_snapshot_v1";

/// How often (at most) the engine's snapshot is written while running; always on close.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(60);

/// The engine with its options and the state it saved last time.
pub(super) fn engine_for(config: &super::config::TierConfig, hot: &crate::tiers::hot::HotTier) -> Result<PolicyEngine> {
    let mut engine = PolicyEngine::new(config.policies.clone());
    // A snapshot we cannot read (older format, hand-edited) costs history, never data.
    if let Some(s) = hot.kv_get(SNAPSHOT_KEY)? {
        if let Ok(snap) = serde_json::from_str(&s) {
            engine.restore(snap);
        }
    }
    Ok(engine)
}

fn view_of(c: &Candidate) -> FrameView {
    FrameView {
        frame_id: c.frame_id.clone(),
        parent_id: c.parent_id.clone(),
        tier: Tier::from_level(c.tier).unwrap_or(Tier::Hot),
        size_bytes: c.size_bytes.max(0) as u64,
        created_s: c.created_s.unwrap_or(0),
        closed_s: c.closed_s,
        active: c.active,
        pinned: c.pinned,
        keep_forever: c.keep_forever,
        kind: c.project_id.clone(),
    }
}

/// MemAvailable / MemTotal from /proc/meminfo (Linux); `None` elsewhere.
fn host_mem_available_frac() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<f64> {
        text.lines().find(|l| l.starts_with(name))?.split_whitespace().nth(1)?.parse().ok()
    };
    let (avail, total) = (field("MemAvailable:")?, field("MemTotal:")?);
    (total > 0.0).then(|| (avail / total).clamp(0.0, 1.0))
}

impl TierManager {
    pub(super) fn engine(&self) -> std::sync::MutexGuard<'_, PolicyEngine> {
        // A panic while holding the lock cannot leave the engine half-updated in a way that
        // loses data (it only advises); keep using it.
        self.inner.engine.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn views(&self, frame_ids: Option<Vec<String>>) -> Result<Vec<FrameView>> {
        let filter = CandidateFilter { frame_ids, ..Default::default() };
        let cands = self.inner.hot.call(move |hot| hot.candidates(&filter)).await?;
        // Expired stubs (level 0) are in no tier: the policy never sees them.
        Ok(cands.iter().filter(|c| c.tier > 0).map(view_of).collect())
    }

    async fn view(&self, frame_id: &str) -> Result<FrameView> {
        check_frame_id(frame_id)?;
        self.views(Some(vec![frame_id.to_string()]))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| TierError::NotFound { frame_id: frame_id.to_string() })
    }

    /// Executes pending decisions (one wave of `maxConcurrentMoves` at a time, grouped by target
    /// tier) and turns each into `executed` or `failed`. Returns the final decisions in order.
    async fn execute(&self, pending: Vec<Decision>) -> Vec<Decision> {
        let max = self.engine().options().max_concurrent_moves.max(1);
        let mut done: Vec<Decision> = Vec::with_capacity(pending.len());
        for wave in pending.chunks(max) {
            for to in [Tier::Hot, Tier::Warm, Tier::Cold] {
                let ids: Vec<String> = wave.iter().filter(|d| d.to == to).map(|d| d.frame_id.clone()).collect();
                if ids.is_empty() {
                    continue;
                }
                let req = MigrateRequest::frames(to, ids.clone());
                let rep = self.migrate_inner(req).await;
                let now = now_millis();
                for d in wave.iter().filter(|d| d.to == to) {
                    let outcome = match &rep {
                        Err(e) => Err(e.to_string()),
                        Ok(r) if r.moved.iter().any(|m| m.frame_id == d.frame_id) => Ok(()),
                        Ok(r) => Err(r
                            .failed
                            .iter()
                            .find(|f| f.frame_id == d.frame_id)
                            .map(|f| format!("{}: {}", f.code, f.error))
                            .or_else(|| {
                                r.held_back
                                    .iter()
                                    .find(|h| h.frame_id == d.frame_id)
                                    .map(|h| format!("held back: {}", h.reason))
                            })
                            .or_else(|| r.skipped.iter().find(|s| s.frame_id == d.frame_id).map(|s| s.reason.clone()))
                            .unwrap_or_else(|| "not moved".to_string())),
                    };
                    let (ok, err) = match outcome {
                        Ok(()) => (true, None),
                        Err(e) => (false, Some(e)),
                    };
                    done.push(self.engine().record_outcome(&d.frame_id, d.from, d.to, ok, err, now));
                }
            }
        }
        done
    }

    /// After a read promoted `frame_id`: the remote frames read with it in earlier bursts (its
    /// companions, see `policy::engine::companions`) come back hot too, as the engine decides.
    pub(super) async fn bring_companions(&self, frame_id: &str) {
        let ids = self.engine().companion_ids(frame_id, now_millis());
        if ids.is_empty() {
            return;
        }
        let views = match self.views(Some(ids)).await {
            Ok(v) => v,
            Err(e) => return crate::obs::log_err::<()>("reading the companions of a promoted frame", Err(e)),
        };
        let tiers: HashMap<&str, Tier> = views.iter().map(|v| (v.frame_id.as_str(), v.tier)).collect();
        let pending = self.engine().companions_of(frame_id, |id| tiers.get(id).copied(), now_millis());
        if !pending.is_empty() {
            self.execute(pending).await;
        }
    }

    /// A bulk run of another process (or manager) on this file, as `<runId> (another process)`:
    /// a `running` row of `tier_runs` saved within [`OTHER_RUN_FRESH_S`]. Runs save a checkpoint
    /// when they start, every `checkpointEvery` frames and at the end; one killed mid-way holds
    /// the cycles back for at most that long after its last checkpoint.
    async fn other_live_run(&self) -> Option<String> {
        let since = crate::model::units::now_seconds() - OTHER_RUN_FRESH_S;
        match self.inner.hot.call(move |hot| hot.run_live(since)).await {
            Ok(run) => run.map(|id| format!("{id} (another process)")),
            Err(e) => {
                crate::obs::failed("looking for other processes' bulk runs", &e);
                None
            }
        }
    }

    /// One policy cycle: decide, and unless `dry_run`, execute. Every decision is reported.
    pub async fn run_cycle(&self, dry_run: bool) -> Result<Value> {
        self.check_open()?;
        self.flush_accesses().await?;
        let views = self.views(None).await?;
        let remotes = self.remotes().await;
        let counts = self.inner.hot.call(move |hot| hot.counts()).await?;
        let inputs = self
            .pressure_inputs(&remotes, (counts.hot.frames, counts.hot.bytes, counts.file_bytes), counts.warm.bytes)
            .await;
        let reach = Reachability { warm: remotes.warm.is_some(), cold: remotes.cold.is_some() };
        // In-flight awareness: a bulk run (`migrate`, `startMigration`) is moving frames; the
        // cycle's moves wait for it instead of racing or undoing it. This manager's runs are known
        // here; another process's (or manager's) are seen by their checkpoint row in the file.
        let bulk = match self.inner.runs.any() {
            Some(run) => Some(run),
            None => self.other_live_run().await,
        };
        let mut report = {
            let mut engine = self.engine();
            engine.set_bulk_run(bulk);
            engine.run_cycle(now_millis(), &views, &inputs, reach, dry_run)
        };
        if !dry_run {
            let pending: Vec<Decision> = report.pending().cloned().collect();
            let finished = self.execute(pending).await;
            for f in finished {
                if let Some(d) =
                    report.decisions.iter_mut().find(|d| d.frame_id == f.frame_id && d.action == Action::Pending)
                {
                    *d = f;
                }
            }
            self.save_snapshot(false).await?;
        }
        let mut v = serde_json::to_value(&report).map_err(|e| TierError::storage("policy report", e))?;
        let executed = report.decisions.iter().filter(|d| d.action == Action::Executed).count();
        let failed = report.decisions.iter().filter(|d| d.action == Action::Failed).count();
        v["counts"]["executed"] = json!(executed);
        v["counts"]["failed"] = json!(failed);
        Ok(v)
    }

    /// Fill levels for the engine: SQLite against `tiers.sqlite`, Redis (our bytes and the
    /// server's memory) against `tiers.redis.maxSize`, and host memory.
    async fn pressure_inputs(
        &self,
        remotes: &crate::moves::Remotes,
        hot: (i64, i64, i64),
        warm_bytes: i64,
    ) -> PressureInputs {
        let cfg = &self.inner.config;
        let (hot_frames, hot_bytes, file_bytes) = hot;
        let mut inputs = PressureInputs {
            hot_bytes: (hot_bytes.max(0) as u64).max(file_bytes.max(0) as u64),
            hot_frames: hot_frames.max(0) as u64,
            hot_max_bytes: cfg.sqlite.max_size,
            hot_max_frames: cfg.sqlite.max_frames,
            warm_bytes: warm_bytes.max(0) as u64,
            warm_max_bytes: cfg.redis.max_size,
            warm_server_used_bytes: None,
            warm_server_max_bytes: None,
            host_mem_available_frac: host_mem_available_frac(),
        };
        if let Some(w) = &remotes.warm {
            if let Ok(s) = w.stats().await {
                inputs.warm_bytes = s.bytes;
                inputs.warm_server_used_bytes = s.used_memory;
                inputs.warm_server_max_bytes = s.maxmemory;
            }
        }
        inputs
    }

    /// The pressure level now (a cheap check, between cycles).
    pub(super) async fn pressure_level(&self) -> Result<crate::policy::PressureLevel> {
        let counts = self.inner.hot.call(move |hot| hot.pressure_counts()).await?;
        let remotes = self.remotes().await;
        let inputs = self.pressure_inputs(&remotes, counts, 0).await;
        let w = self.engine().options().watermarks.clone();
        Ok(crate::policy::pressure::assess(&inputs, &w).level)
    }

    pub async fn pin(&self, frame_id: &str) -> Result<Value> {
        self.check_open()?;
        let view = self.view(frame_id).await?;
        let status = self.engine().pin(frame_id, view.size_bytes, now_millis())?;
        let id = frame_id.to_string();
        self.inner.hot.call(move |hot| hot.set_pinned(&id, true)).await?;
        self.save_snapshot(true).await?;
        Ok(json!({"frameId": frame_id, "pinned": true, "tier": view.tier.as_str(),
            "pinnedFrames": status.frames, "pinnedBytes": status.pinned_bytes, "maxPinnedBytes": status.cap_bytes}))
    }

    pub async fn unpin(&self, frame_id: &str) -> Result<Value> {
        self.check_open()?;
        let view = self.view(frame_id).await?;
        let was = self.engine().unpin(frame_id) | view.pinned;
        let id = frame_id.to_string();
        self.inner.hot.call(move |hot| hot.set_pinned(&id, false)).await?;
        self.save_snapshot(true).await?;
        let status = self.engine().pin_status();
        Ok(json!({"frameId": frame_id, "pinned": false, "wasPinned": was,
            "pinnedFrames": status.frames, "pinnedBytes": status.pinned_bytes, "maxPinnedBytes": status.cap_bytes}))
    }

    /// Moves a frame to `to` now, bypassing the filters (never demoting an active frame).
    pub async fn force_move(&self, frame_id: &str, to: Tier) -> Result<Value> {
        self.check_open()?;
        let view = self.view(frame_id).await?;
        let now = now_millis();
        let decision = if to == Tier::Hot || to < view.tier {
            self.engine().force_promote(&view, now)
        } else {
            self.engine().force_demote(&view, to, now)?
        };
        let out = if decision.action == Action::Pending {
            self.execute(vec![decision]).await.pop().ok_or_else(|| TierError::storage("force move", "no outcome"))?
        } else {
            decision
        };
        self.save_snapshot(false).await?;
        serde_json::to_value(&out).map_err(|e| TierError::storage("decision", e))
    }

    pub async fn explain(&self, frame_id: &str) -> Result<Value> {
        self.check_open()?;
        self.flush_accesses().await?;
        let view = self.view(frame_id).await?;
        let e = self.engine().explain(frame_id, now_millis(), Some(&view));
        let mut v = serde_json::to_value(&e).map_err(|e| TierError::storage("explain", e))?;
        v["tier"] = json!(view.tier.as_str());
        v["pinned"] = json!(v["pinned"].as_bool().unwrap_or(false) || view.pinned);
        v["active"] = json!(view.active);
        v["sizeBytes"] = json!(view.size_bytes);
        Ok(v)
    }

    /// Called for every read and write the manager serves: the trace file when `recordTrace` is
    /// set, and for a read the engine's access statistics. A write is not an access (the frame's
    /// age comes from its own times). Returns a promotion the engine wants now.
    pub(super) fn policy_access(&self, frame_id: &str, tier: Tier, size: i64, write: bool) -> Option<Decision> {
        let now = now_millis();
        self.trace(frame_id, size, now, write);
        let mut e = self.engine();
        if write {
            e.on_write(frame_id, now);
            return None;
        }
        e.on_read(frame_id, tier, now)
    }

    /// Tells the engine about a move it did not decide (an explicit `migrate`), so its cooldown
    /// and cycle filters and its reads-since-move counter see every move.
    pub(super) fn policy_moved(&self, frame_id: &str, from: Tier, to: Tier, ok: bool, err: Option<String>) {
        self.engine().record_outcome(frame_id, from, to, ok, err, now_millis());
    }

    /// Persists the engine's state (rate-limited unless `now`).
    pub(super) async fn save_snapshot(&self, now: bool) -> Result<()> {
        {
            let Ok(mut last) = self.inner.last_snapshot.lock() else { return Ok(()) };
            if !now && last.is_some_and(|t| t.elapsed() < SNAPSHOT_EVERY) {
                return Ok(());
            }
            *last = Some(std::time::Instant::now());
        }
        let snap = self.engine().snapshot();
        let text = serde_json::to_string(&snap).map_err(|e| TierError::storage("policy snapshot", e))?;
        self.inner.hot.call(move |hot| hot.kv_set(SNAPSHOT_KEY, &text)).await
    }

    /// For `status()`: the worker and the pins (with their cap).
    pub(super) fn policy_status(&self) -> Value {
        let (cycles, pressure_cycles, last_error) = self
            .inner
            .worker_runs
            .lock()
            .map(|s| (s.cycles, s.pressure_cycles, s.last_error.clone()))
            .unwrap_or((0, 0, None));
        let pins = self.engine().pin_status();
        let cfg = &self.inner.config;
        json!({"backgroundSync": cfg.policies.background_sync && (cfg.redis.enabled || cfg.postgres.enabled),
               "syncIntervalMs": self.inner.config.policies.sync_interval_ms,
               "workerCycles": cycles, "workerPressureCycles": pressure_cycles, "workerLastError": last_error,
               "pinnedFrames": pins.frames, "pinnedBytes": pins.pinned_bytes, "maxPinnedBytes": pins.cap_bytes})
    }
}
