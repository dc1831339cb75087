//! Migrations as operations: planned, started in the background, watched, cancelled, resumed after
//! a crash, a kill or a cancel, awaited, listed, and rolled back. Each run is a row of the file
//! (`tier_runs`); `migrate()` is a run that is awaited.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

use super::{observe, TierManager};
use crate::model::units::{now_millis, now_seconds};
use crate::model::values::{Fields, Kind};
use crate::model::{Result, Tier, TierError};
use crate::moves::{MigrateReport, MigrateRequest, Moved, Plan, Progress, Remotes, RunControl, RunOptions};
use crate::tiers::hot::RunRecord;

/// Where progress goes (the JS callback, through a threadsafe function).
pub type ProgressSink = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Measured frames/s per hop, kept in `tier_kv` for plans' estimates.
const RATES_KEY: &str = "run_rates_v1";

/// A run of this process that is still going.
pub(super) struct Active {
    cancel: Arc<AtomicBool>,
    done: watch::Receiver<Option<RunRecord>>,
}

/// What the task of a registered run holds: its cancel flag and the sender of its end.
struct Registration {
    cancel: Arc<AtomicBool>,
    tx: watch::Sender<Option<RunRecord>>,
}

/// The runs of this process that are still going, by id.
#[derive(Default)]
pub(super) struct ActiveRuns(std::sync::Mutex<HashMap<String, Active>>);

impl ActiveRuns {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Active>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One run still going in this process (the smallest id, so a report names the same one).
    pub(super) fn any(&self) -> Option<String> {
        self.lock().iter().filter(|(_, a)| a.done.borrow().is_none()).map(|(id, _)| id.clone()).min()
    }
}

/// The fields of a run's options, beside the request's (`MigrateRequest::KEYS`).
pub const RUN_KEYS: [&str; 4] = ["rateLimit", "memoryBudget", "batchSize", "checkpointEvery"];

/// `startMigration(options)`: the request and how the run moves, from one object.
pub fn start_request(v: &Value, max_batch: usize) -> Result<(MigrateRequest, RunOptions)> {
    Ok((MigrateRequest::parse(v, &RUN_KEYS)?, run_options(v, max_batch)?))
}

/// A run's options (`RUN_KEYS`; other fields are the request's): how the run moves.
pub fn run_options(v: &Value, max_batch: usize) -> Result<RunOptions> {
    let o = Fields::root(v, "", Kind::Argument)?;
    let d = RunOptions { max_batch, ..RunOptions::default() };
    let rate = o.section("rateLimit", "rateLimit")?;
    rate.known(&["framesPerSecond", "bytesPerSecond"])?;
    Ok(RunOptions {
        checkpoint_every: o.int("checkpointEvery", d.checkpoint_every, 1, 10_000_000)?,
        frames_per_second: rate
            .has("framesPerSecond")
            .then(|| rate.int("framesPerSecond", 0, 1, u32::MAX as u64))
            .transpose()?
            .map(|v| v as u32),
        bytes_per_second: rate.has("bytesPerSecond").then(|| rate.size("bytesPerSecond", 0, 1024)).transpose()?,
        memory_budget: o.size("memoryBudget", d.memory_budget, 1)?,
        max_batch: o.int("batchSize", max_batch as u64, 1, 100_000)? as usize,
    })
}

/// The state of a run, as `migrationStatus` reports it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunStatus {
    #[serde(flatten)]
    pub run: RunRecord,
    /// Still going in this process.
    pub active: bool,
}

/// What `rollbackMigration` did.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollback {
    /// The run that moved the frames back.
    pub run_id: Option<String>,
    pub restored: usize,
    /// Frames not moved back, and why (changed since the run, moved again).
    pub refused: Vec<Refused>,
    pub failed: Vec<crate::moves::Failed>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Refused {
    pub frame_id: String,
    pub reason: String,
}

fn new_run_id() -> String {
    use std::sync::atomic::AtomicU64;
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let h = xxhash_rust::xxh3::xxh3_64(format!("{}-{}-{n}", now_millis(), std::process::id()).as_bytes());
    format!("run-{}-{:08x}", now_millis(), h as u32)
}

impl TierManager {
    /// Most frames per batch (`policies.batchSize`): a run's default.
    pub fn batch_size(&self) -> usize {
        self.inner.config.policies.batch_size
    }

    fn rates(&self) -> BTreeMap<String, f64> {
        self.inner.hot.kv_get(RATES_KEY).ok().flatten().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default()
    }

    /// What a migration would do; changes nothing.
    pub async fn plan_migration(&self, req: MigrateRequest) -> Result<Plan> {
        self.check_open()?;
        let rates = self.rates();
        let has_cold = self.remotes().await.cold.is_some();
        self.inner.mover.plan(&req, &rates, has_cold).await
    }

    /// Starts a migration in the background; returns its run id at once (watch it with
    /// `migration_status`, wait for it with `wait_for_migration`).
    pub async fn start_migration(
        &self,
        req: MigrateRequest,
        opts: RunOptions,
        progress: Option<ProgressSink>,
    ) -> Result<String> {
        self.check_open()?;
        let rec = self.new_run("migrate", &req, &opts).await?;
        let id = rec.run_id.clone();
        self.spawn_run(rec, req, opts, progress)?;
        Ok(id)
    }

    /// Continues a run that stopped (killed, cancelled, failed) from its checkpoint.
    pub async fn resume_migration(&self, run_id: &str, progress: Option<ProgressSink>) -> Result<String> {
        self.check_open()?;
        let id = run_id.to_string();
        let rec = self.inner.hot.call(move |hot| hot.run_get(&id)).await?.ok_or_else(|| unknown_run(run_id))?;
        if self.inner.runs.lock().contains_key(run_id) {
            return Err(TierError::invalid_argument("runId", format!("run {run_id} is still running")));
        }
        if rec.state == "done" {
            return Err(TierError::invalid_argument("runId", format!("run {run_id} is done")));
        }
        let (req, opts) = parse_stored(&rec)?;
        let mut rec = rec;
        rec.state = "running".into();
        rec.error = None;
        // Frames moved after the last checkpoint have left their source (the walk will not see
        // them again) and count as done.
        let id = run_id.to_string();
        rec.done = self.inner.hot.call(move |hot| hot.run_done_count(&id)).await?;
        self.spawn_run(rec, req, opts, progress)?;
        Ok(run_id.to_string())
    }

    pub fn cancel_migration(&self, run_id: &str) -> Result<bool> {
        Ok(match self.inner.runs.lock().get(run_id) {
            Some(a) => {
                a.cancel.store(true, Ordering::SeqCst);
                true
            }
            None => false,
        })
    }

    /// Waits until a run of this process stops; then (or at once, for a run not going) its state.
    pub async fn wait_for_migration(&self, run_id: &str) -> Result<RunStatus> {
        let rx = self.inner.runs.lock().get(run_id).map(|a| a.done.clone());
        if let Some(mut rx) = rx {
            while rx.borrow().is_none() {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        }
        self.migration_status(run_id).await
    }

    pub async fn migration_status(&self, run_id: &str) -> Result<RunStatus> {
        let id = run_id.to_string();
        let run = self.inner.hot.call(move |hot| hot.run_get(&id)).await?.ok_or_else(|| unknown_run(run_id))?;
        let active = self.inner.runs.lock().contains_key(run_id);
        Ok(RunStatus { run, active })
    }

    pub async fn list_migrations(&self, limit: usize) -> Result<Vec<RunStatus>> {
        self.check_open()?;
        let runs = self.inner.hot.call(move |hot| hot.run_list(limit)).await?;
        let active = self.inner.runs.lock();
        Ok(runs.into_iter().map(|run| RunStatus { active: active.contains_key(&run.run_id), run }).collect())
    }

    /// `migrate()`: a run that is awaited, reporting every frame (a dry run is not kept).
    pub async fn migrate_run(
        &self,
        req: MigrateRequest,
        opts: RunOptions,
        progress: Option<ProgressSink>,
    ) -> Result<MigrateReport> {
        self.check_open()?;
        if req.dry_run {
            let mut rec = RunRecord::transient(&(&req, &opts));
            return self.execute_run(&mut rec, &req, &opts, &AtomicBool::new(false), progress, true).await;
        }
        let rec = self.new_run("migrate", &req, &opts).await?;
        let reg = self.register(&rec.run_id)?;
        let (rec, rep) = self.registered(reg, rec, req, opts, progress, true).await;
        let mut r = rep?;
        r.run_id = Some(rec.run_id.clone());
        r.cancelled = rec.state == "cancelled";
        Ok(r)
    }

    /// Moves every frame a run moved back to the tier it came from, verified like any move; a frame
    /// changed since the run (written, or moved again) is refused and listed.
    pub async fn rollback_migration(&self, run_id: &str) -> Result<Rollback> {
        self.check_open()?;
        if self.inner.runs.lock().contains_key(run_id) {
            return Err(TierError::invalid_argument(
                "runId",
                format!("run {run_id} is still running; cancel it first"),
            ));
        }
        let id = run_id.to_string();
        self.inner.hot.call(move |hot| hot.run_get(&id)).await?.ok_or_else(|| unknown_run(run_id))?;
        let id = run_id.to_string();
        let moves = self.inner.hot.call(move |hot| hot.run_moves(&id)).await?;
        // The first tier each frame left, and its last move of the run.
        let mut first: HashMap<String, i64> = HashMap::new();
        let mut last: HashMap<String, crate::tiers::hot::RunMove> = HashMap::new();
        for m in moves {
            first.entry(m.frame_id.clone()).or_insert(m.from_tier);
            last.insert(m.frame_id.clone(), m);
        }
        let mut out = Rollback::default();
        let mut back: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        // Their bookkeeping now, a batch per call (not one call per frame).
        let frames: Vec<String> = last.keys().cloned().collect();
        let mut now_meta = HashMap::with_capacity(frames.len());
        for chunk in frames.chunks(500) {
            let ids = chunk.to_vec();
            let metas = self.inner.hot.call(move |hot| hot.meta_many(&ids)).await?;
            now_meta.extend(chunk.iter().cloned().zip(metas));
        }
        for (frame, m) in &last {
            let meta = now_meta.remove(frame).flatten();
            let now_tier = meta.as_ref().map(|x| if x.body_local && x.tier == 1 { 1 } else { x.tier });
            let why = match &meta {
                None => Some("the frame is gone".to_string()),
                Some(_) if now_tier != Some(m.to_tier) => Some("moved again since the run".to_string()),
                Some(x) if m.after_seq.is_some_and(|s| s != x.change_seq) => Some("written since the run".to_string()),
                _ => None,
            };
            match why {
                Some(reason) => out.refused.push(Refused { frame_id: frame.clone(), reason }),
                None => back.entry(first[frame]).or_default().push(frame.clone()),
            }
        }
        out.refused.sort_by(|a, b| a.frame_id.cmp(&b.frame_id));
        for (tier, ids) in back {
            let Some(to) = Tier::from_level(tier) else { continue };
            let req = MigrateRequest { subtrees: false, ..MigrateRequest::frames(to, ids) };
            let opts = RunOptions { max_batch: self.inner.config.policies.batch_size, ..RunOptions::default() };
            let mut rec = self.new_run("rollback", &req, &opts).await?;
            let cancel = AtomicBool::new(false);
            let rep = self.execute_run(&mut rec, &req, &opts, &cancel, None, true).await?;
            out.restored += rep.moved.len();
            out.failed.extend(rep.failed);
            out.run_id = Some(rec.run_id.clone());
        }
        Ok(out)
    }

    async fn new_run(&self, kind: &str, req: &MigrateRequest, opts: &RunOptions) -> Result<RunRecord> {
        let mut rec = RunRecord::transient(&(req, opts));
        rec.run_id = new_run_id();
        rec.kind = kind.into();
        // The total for progress and ETA: the frames the run will look at (counted from the index).
        rec.total = match (&req.frame_ids, req.limit) {
            (Some(ids), _) => ids.len() as i64,
            (None, limit) => {
                let has_cold = self.remotes().await.cold.is_some();
                let cap = limit.map(|l| l as u64);
                let (project, max_age) =
                    (req.project_id.clone(), req.older_than_ms.map(|ms| now_seconds() - (ms / 1000) as i64));
                let pages: Vec<_> = (0..)
                    .map_while(|i| crate::moves::run::source_page(req.to, i, project.clone(), max_age, has_cold))
                    .collect();
                let n = self
                    .inner
                    .hot
                    .call(move |hot| pages.iter().map(|p| hot.count_page_frames(p, cap)).sum::<Result<i64>>())
                    .await?;
                limit.map(|l| n.min(l as i64)).unwrap_or(n)
            }
        };
        let r = rec.clone();
        self.inner.hot.call(move |hot| hot.run_save(&r)).await?;
        Ok(rec)
    }

    fn spawn_run(
        &self,
        rec: RunRecord,
        req: MigrateRequest,
        opts: RunOptions,
        progress: Option<ProgressSink>,
    ) -> Result<()> {
        // Registered before the task starts: a `waitForMigration` right after `start`/`resume`
        // returns must find the run going (it used to see the stored state of a run not yet
        // registered, `cancelled` after a cancel, and return at once).
        let reg = self.register(&rec.run_id)?;
        let me = self.clone();
        tokio::spawn(async move {
            let (rec, r) = me.registered(reg, rec, req, opts, progress, false).await;
            if let Err(e) = r {
                tracing::warn!(code = e.code(), run_id = %rec.run_id, error = %crate::obs::redact(&e.to_string()), "bulk run failed");
            }
        });
        Ok(())
    }

    /// Makes `run_id` a run of this process (cancellable and awaitable by its id); refuses a run
    /// that already is one, so two resumes of one run cannot both go.
    fn register(&self, run_id: &str) -> Result<Registration> {
        let mut runs = self.inner.runs.lock();
        if runs.contains_key(run_id) {
            return Err(TierError::invalid_argument("runId", format!("run {run_id} is still running")));
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let (tx, rx) = watch::channel(None);
        runs.insert(run_id.to_string(), Active { cancel: cancel.clone(), done: rx });
        Ok(Registration { cancel, tx })
    }

    /// Runs `rec`, registered, keeping a failure in its record; returns the record as it ended,
    /// and the report.
    async fn registered(
        &self,
        reg: Registration,
        mut rec: RunRecord,
        req: MigrateRequest,
        opts: RunOptions,
        progress: Option<ProgressSink>,
        collect: bool,
    ) -> (RunRecord, Result<MigrateReport>) {
        let Registration { cancel, tx } = reg;
        let r = self.execute_run(&mut rec, &req, &opts, &cancel, progress, collect).await;
        if let Err(e) = &r {
            rec.state = "failed".into();
            rec.error = Some(e.to_string());
            let saved = rec.clone();
            // Unsaved, the run stays `running` in the file; `resumeMigration` continues it.
            crate::obs::log_err(
                "saving a failed run's record",
                self.inner.hot.call(move |hot| hot.run_save(&saved)).await,
            );
        }
        self.inner.runs.lock().remove(&rec.run_id);
        let _ = tx.send(Some(rec.clone()));
        (rec, r)
    }

    /// Runs `rec` to its end (or to a cancel), telling the policy engine of every move and keeping
    /// the measured rate for plans.
    async fn execute_run(
        &self,
        rec: &mut RunRecord,
        req: &MigrateRequest,
        opts: &RunOptions,
        cancel: &AtomicBool,
        progress: Option<ProgressSink>,
        collect: bool,
    ) -> Result<MigrateReport> {
        let req = MigrateRequest { run_id: Some(rec.run_id.clone()), ..req.clone() };
        let remotes = self.remotes_for_run().await;
        let current = || -> futures_util::future::BoxFuture<'_, Remotes> { Box::pin(self.remotes()) };
        let batches = observe::Batches::new(&self.inner.obs);
        let tell = |moved: &[Moved]| {
            batches.batch(moved);
            for m in moved {
                if let (Some(from), Some(to)) = (Tier::parse(m.from), Tier::parse(m.to)) {
                    self.policy_moved(&m.frame_id, from, to, true, None);
                }
            }
        };
        let sink = progress.as_deref();
        let ctl = RunControl {
            cancel,
            progress: sink,
            collect,
            persist: !req.dry_run,
            moved: (!req.dry_run).then_some(&tell),
            remotes: Some(&current),
        };
        let t0 = std::time::Instant::now();
        let rep = self.inner.mover.run(rec, &req, opts, &remotes, &ctl).await?;
        batches.finish(&rep, req.to);
        if !req.dry_run && rec.done > 0 {
            self.note_rate(&req, rec.done, t0.elapsed().as_secs_f64());
        }
        Ok(rep)
    }

    fn note_rate(&self, req: &MigrateRequest, frames: i64, secs: f64) {
        if secs <= 0.0 {
            return;
        }
        let mut rates = self.rates();
        let hop = match req.to {
            Tier::Hot => "cold→hot",
            Tier::Warm => "hot→warm",
            Tier::Cold => "warm→cold",
        };
        rates.insert(hop.to_string(), frames as f64 / secs);
        if let Ok(text) = serde_json::to_string(&rates) {
            crate::obs::log_err("saving measured hop rates", self.inner.hot.kv_set(RATES_KEY, &text));
        }
    }

    /// Cancels this process's runs and waits for them to checkpoint (`close()`).
    pub(super) async fn stop_runs(&self) {
        let waiting: Vec<watch::Receiver<Option<RunRecord>>> = {
            let runs = self.inner.runs.lock();
            runs.values()
                .map(|a| {
                    a.cancel.store(true, Ordering::SeqCst);
                    a.done.clone()
                })
                .collect()
        };
        for mut rx in waiting {
            while rx.borrow().is_none() {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        }
    }
}

fn unknown_run(run_id: &str) -> TierError {
    TierError::invalid_argument("runId", format!("no run {run_id}"))
}

/// A stored run's request and options (`new_run` saves them as a pair).
fn parse_stored(rec: &RunRecord) -> Result<(MigrateRequest, RunOptions)> {
    serde_json::from_str(&rec.request).map_err(|e| TierError::storage(format!("run {}: its request", rec.run_id), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    // On a current-thread runtime the spawned run cannot start before the caller's next await:
    // a `wait_for_migration` right after `start_migration` must still find the run and wait for
    // it (it used to read the stored `running` record of a run not yet registered and return).
    #[tokio::test]
    async fn a_run_is_waitable_as_soon_as_start_returns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let v = serde_json::json!({
            "dbPath": dir.path().join("t.db").to_string_lossy(),
            "tiers": {"redis": {"enabled": false}, "postgres": {"enabled": false}},
        });
        let config = crate::manager::config::TierConfig::from_json_with_env(&v, &Default::default()).expect("config");
        let m = TierManager::open(config).await.expect("open");
        for _ in 0..3 {
            let id =
                m.start_migration(MigrateRequest::to(Tier::Cold), RunOptions::default(), None).await.expect("start");
            let st = m.wait_for_migration(&id).await.expect("wait");
            assert!(!st.active, "{st:?}");
            assert_ne!(st.run.state, "running", "{st:?}");
            // A second registration of a going run is refused.
            assert!(m.register(&id).is_ok());
            assert_eq!(m.register(&id).err().map(|e| e.code()), Some("ERR_INVALID_ARGUMENT"));
            m.inner.runs.lock().remove(&id);
        }
    }
}
