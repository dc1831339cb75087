//! The mover: moves frame bodies between tiers as copy → verify → remove source, each step in the
//! journal (`tiers/hot/journal.rs`), so that a crash at any point is finished or undone by `recover`.
//!
//! The invariant: every frame has a verified copy in a durable tier (SQLite or PostgreSQL) at
//! every instant. Redis is never the last copy: a frame goes warm with its body archived in
//! PostgreSQL, or — when PostgreSQL is disabled or down — with its full rows kept in SQLite
//! (`held_back`). The mover knows the tiers' operations and the journal, nothing about policies.
//!
//! Files: `select` (which frames a request may move, by `model::rules`), `demote` (bodies out of
//! SQLite), `promote` (bodies back), `shift` (warm ↔ cold), `recovery`, `retention` (expiry through the journal), `run` and
//! `plan` (bulk runs), `report`.

use std::sync::Arc;

use crate::model::{Result, Tier, TierError};
use crate::tiers::cold::ColdTier;
use crate::tiers::hot::{HotTier, RunRecord};
use crate::tiers::warm::WarmTier;

mod demote;
mod dictionaries;
mod plan;
mod promote;
mod recovery;
mod reencode;
mod report;
mod retention;
pub mod run;
mod select;
mod shift;

pub use dictionaries::{DictConfig, Dictionaries, DictionaryInfo, Trained};
pub use plan::{Plan, Volume};
pub use promote::Fetched;
pub use reencode::ReencodeReport;
pub use report::{Failed, MigrateReport, MigrateRequest, Moved, RecoveryReport, Skipped};
pub use retention::RetentionReport;
pub use run::{Progress, RunControl, RunOptions};

/// Remote tiers as the manager currently has them (either may be absent: disabled or down).
#[derive(Clone, Default)]
pub struct Remotes {
    pub warm: Option<WarmTier>,
    pub cold: Option<ColdTier>,
    /// Why a configured tier is absent, for reports (`"redis tier unavailable: ..."`).
    pub warm_down: Option<String>,
    pub cold_down: Option<String>,
}

impl Remotes {
    /// Why `tier` cannot be used now (down, or not enabled), for reports.
    pub fn down(&self, tier: Tier) -> String {
        let why = match tier {
            Tier::Warm => &self.warm_down,
            Tier::Cold => &self.cold_down,
            Tier::Hot => &None,
        };
        why.clone().unwrap_or_else(|| format!("the {} tier is not enabled", tier.as_str()))
    }
}

/// One batch of a move: frames that all take the same path from `from` to `to`.
pub(super) struct Hop<'a> {
    pub ids: &'a [String],
    pub from: Tier,
    pub to: Tier,
    /// The bulk run the moves belong to (recorded in the journal).
    pub run: Option<&'a str>,
}

pub struct Mover {
    pub hot: Arc<HotTier>,
    pub compression_level: i32,
    pub batch_size: usize,
    /// Per-project zstd dictionaries for the envelopes this mover writes (`dictionaries.rs`).
    pub dicts: Dictionaries,
    /// Held by each batch of moves (and by recovery): two overlapping moves of one frame would race
    /// on its journal. Held per batch, never for a whole run. Take it with [`Mover::lock_moves`],
    /// which adds the file's move lease so other processes on the file wait too.
    moving: tokio::sync::Mutex<()>,
    /// This mover's name in the file's move lease (`tiers/hot/lease.rs`): process and mover.
    owner: String,
}

/// How long a batch waits for another process's batch to give the file's move lease back.
const LEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Holding it: no other mover, in this process or another, moves frames of this file.
pub struct MoveLock<'a> {
    _moving: tokio::sync::MutexGuard<'a, ()>,
    hot: Arc<HotTier>,
    token: String,
}

impl Drop for MoveLock<'_> {
    fn drop(&mut self) {
        // Synchronously (one small DELETE), so the next holder in this process, another mover of a
        // manager opened after this one closed, never finds it still taken. A release that fails
        // leaves a lease this mover retakes, and other processes take once it goes stale.
        let _ = self.hot.lease_release(&self.token);
    }
}

impl Mover {
    pub fn new(hot: Arc<HotTier>, compression_level: i32, batch_size: usize) -> Mover {
        static MOVERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = MOVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let owner = format!("{}:{n}", crate::tiers::hot::lease::process_identity());
        Mover {
            hot,
            compression_level,
            batch_size: batch_size.max(1),
            dicts: Dictionaries::new(DictConfig { enabled: false, ..DictConfig::default() }),
            moving: tokio::sync::Mutex::new(()),
            owner,
        }
    }

    /// This mover with per-project dictionaries as configured.
    pub fn with_dictionaries(mut self, cfg: DictConfig) -> Mover {
        self.dicts = Dictionaries::new(cfg);
        self
    }

    /// This process's turn to move frames of the file: the in-process mutex, then the file's move
    /// lease (polled while another process's batch holds it, at most `LEASE_WAIT`; a process waiting
    /// for it goes before this one's next batch: see `tiers/hot/lease.rs`).
    pub async fn lock_moves(&self) -> Result<MoveLock<'_>> {
        self.lock_moves_within(LEASE_WAIT).await
    }

    /// [`Mover::lock_moves`] waiting at most `wait` for another process (a read's promotion
    /// would rather skip than wait for someone else's batch).
    pub async fn lock_moves_within(&self, wait: std::time::Duration) -> Result<MoveLock<'_>> {
        let guard = self.moving.lock().await;
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(2);
        loop {
            let owner = self.owner.clone();
            match self.hot.call(move |hot| hot.lease_try(&owner)).await? {
                Ok(token) => return Ok(MoveLock { _moving: guard, hot: self.hot.clone(), token }),
                Err(h) if started.elapsed() >= wait => {
                    return Err(TierError::Busy {
                        message: format!(
                            "process {} has been moving frames of this file for {} s (its move lease)",
                            h.pid,
                            h.held_ms / 1000
                        ),
                    })
                }
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_millis(25));
                }
            }
        }
    }

    /// A migration not kept as a run (the policy's moves): every frame's id in the report.
    pub async fn migrate(&self, req: &MigrateRequest, remotes: &Remotes) -> Result<MigrateReport> {
        let mut rec = RunRecord::transient(req);
        let opts = RunOptions { max_batch: self.batch_size, ..RunOptions::default() };
        let cancel = std::sync::atomic::AtomicBool::new(false);
        let ctl =
            RunControl { cancel: &cancel, progress: None, collect: true, persist: false, moved: None, remotes: None };
        self.run(&mut rec, req, &opts, remotes, &ctl).await
    }
}

#[cfg(test)]
mod tests;
