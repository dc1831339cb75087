//! The background tasks: the access-count flusher and the policy worker (a cycle every
//! `syncInterval`, sooner when pressure rises). Both hold only weak references, so they never keep
//! the manager, or the Node process, alive.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Inner, TierManager};

#[derive(Default)]
pub(super) struct WorkerRuns {
    pub(super) cycles: u64,
    /// Cycles started early because a pressure check found a higher level.
    pub(super) pressure_cycles: u64,
    pub(super) last_error: Option<String>,
}

/// Sleeps until `until` or until the manager closes; then the manager if it is still open. Holding
/// only a weak reference while asleep is what lets the Node process exit.
async fn wake(weak: &Weak<Inner>, until: Instant, early: Option<Arc<Notify>>) -> Option<TierManager> {
    let shutdown = weak.upgrade()?.shutdown.clone();
    let early = async {
        match early {
            Some(n) => n.notified().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::time::sleep_until(until) => {}
        _ = early => {}
        _ = shutdown.notified() => return None,
    }
    let inner = weak.upgrade()?;
    (!inner.closed.load(Ordering::SeqCst)).then_some(TierManager { inner })
}

impl TierManager {
    pub(super) fn spawn_flusher(&self) {
        let weak = Arc::downgrade(&self.inner);
        let every = Duration::from_millis(self.inner.config.access_flush_ms.max(10));
        let soon = self.inner.flush_soon.clone();
        tokio::spawn(async move {
            while let Some(mgr) = wake(&weak, Instant::now() + every, Some(soon.clone())).await {
                crate::obs::log_err("flushing access counts", mgr.flush_accesses().await);
            }
        });
    }

    /// The background worker: one cycle every `syncInterval` while open, and one at once when a
    /// pressure check between cycles finds a higher level. `close()` waits for a cycle under way
    /// (the `background` lock), so nothing moves after it returns.
    pub(super) fn spawn_policy_worker(&self) {
        let cfg = &self.inner.config;
        // Local-only, every move would be deferred: no worker.
        if !cfg.policies.background_sync || !cfg.has_remote() {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        let every = Duration::from_millis(cfg.policies.sync_interval_ms.max(10));
        let check = Duration::from_millis(cfg.policies.pressure_check_ms.max(10)).min(every);
        tokio::spawn(async move {
            let mut last_cycle = Instant::now();
            let mut last_level = crate::policy::PressureLevel::Normal;
            loop {
                let due = last_cycle + every;
                let Some(mgr) = wake(&weak, (Instant::now() + check).min(due), None).await else { return };
                let trigger = if Instant::now() >= due {
                    "interval"
                } else {
                    // Between cycles: a rising pressure level starts one now, and so does Critical
                    // or worse still there after the last cycle (writes that landed while it ran,
                    // or moves it could not make): hot must not wait for the interval to come down.
                    match mgr.pressure_level().await {
                        Ok(level) if level > last_level || level >= crate::policy::PressureLevel::Critical => {
                            "pressure"
                        }
                        Ok(level) => {
                            last_level = level;
                            continue;
                        }
                        Err(e) => {
                            crate::obs::failed("checking memory pressure", &e);
                            continue;
                        }
                    }
                };
                let _busy = mgr.inner.background.lock().await;
                if mgr.inner.closed.load(Ordering::SeqCst) {
                    return;
                }
                last_cycle = Instant::now();
                let r = mgr.run_cycle(false).await;
                if let Err(e) = &r {
                    crate::obs::failed("background policy cycle", e);
                }
                if let Ok(level) = mgr.pressure_level().await {
                    last_level = level;
                }
                let runs = mgr.inner.worker_runs.lock();
                if let Ok(mut s) = runs {
                    s.cycles += 1;
                    if trigger == "pressure" {
                        s.pressure_cycles += 1;
                    }
                    s.last_error = r.err().map(|e| e.to_string());
                }
            }
        });
    }
}
