//! The background tasks: the access-count flusher and the policy worker (a cycle every
//! `syncInterval`, sooner when pressure rises). Both hold only weak references, so they never keep
//! the manager, or the Node process, alive.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::TierManager;

#[derive(Default)]
pub(super) struct WorkerRuns {
    pub(super) cycles: u64,
    /// Cycles started early because a pressure check found a higher level.
    pub(super) pressure_cycles: u64,
    pub(super) last_error: Option<String>,
}

impl TierManager {
    pub(super) fn spawn_flusher(&self) {
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

    /// The background worker: one cycle every `syncInterval` while open. It holds only a weak
    /// reference, so it never keeps the manager (or the Node process) alive.
    pub(super) fn spawn_policy_worker(&self) {
        let cfg = &self.inner.config;
        // Local-only, every move would be deferred: no worker.
        if !cfg.policies.background_sync || !(cfg.redis.enabled || cfg.postgres.enabled) {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        let every = Duration::from_millis(self.inner.config.policies.sync_interval_ms.max(10));
        let check = Duration::from_millis(self.engine().options().pressure_check_ms.max(10)).min(every);
        tokio::spawn(async move {
            let mut last_cycle = tokio::time::Instant::now();
            let mut last_level = crate::policy::PressureLevel::Normal;
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let shutdown = inner.shutdown.clone();
                drop(inner);
                let due = last_cycle + every;
                let wake = (tokio::time::Instant::now() + check).min(due);
                tokio::select! {
                    _ = tokio::time::sleep_until(wake) => {}
                    _ = shutdown.notified() => return,
                }
                let Some(inner) = weak.upgrade() else { return };
                if inner.closed.load(Ordering::SeqCst) {
                    return;
                }
                let mgr = TierManager { inner };
                let trigger = if tokio::time::Instant::now() >= due {
                    Some("interval")
                } else {
                    // Between cycles: a rising pressure level starts one now.
                    match mgr.pressure_level().await {
                        Ok(level) if level > last_level => Some("pressure"),
                        Ok(level) => {
                            last_level = level;
                            None
                        }
                        Err(_) => None,
                    }
                };
                let Some(trigger) = trigger else { continue };
                last_cycle = tokio::time::Instant::now();
                let r = mgr.run_cycle(false).await;
                if let Ok(level) = mgr.pressure_level().await {
                    last_level = level;
                }
                let err = r.err().map(|e| e.to_string());
                let lock = mgr.inner.worker_runs.lock();
                if let Ok(mut s) = lock {
                    s.cycles += 1;
                    if trigger == "pressure" {
                        s.pressure_cycles += 1;
                    }
                    s.last_error = err;
                }
            }
        });
    }
}
