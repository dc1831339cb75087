//! The mover: moves frame bodies between tiers as copy → verify → remove source, each step in the
//! journal (`tiers/hot/journal.rs`), so that a crash at any point is finished or undone by `recover`.
//!
//! The invariant: every frame has a verified copy in a durable tier (SQLite or PostgreSQL) at
//! every instant. Redis is never the last copy: a frame goes warm with its body archived in
//! PostgreSQL, or — when PostgreSQL is disabled or down — with its full rows kept in SQLite
//! (`held_back`). The mover knows the tiers' operations and the journal, nothing about policies.
//!
//! Files: `select` (which frames a request may move, by `model::rules`), `demote` (bodies out of
//! SQLite), `promote` (bodies back), `shift` (warm ↔ cold), `recovery`, `report`.

use std::sync::Arc;

use crate::model::{Result, Tier};
use crate::tiers::cold::ColdTier;
use crate::tiers::hot::{HotTier, RunRecord};
use crate::tiers::warm::WarmTier;

mod demote;
mod plan;
mod promote;
mod recovery;
mod report;
pub mod run;
mod select;
mod shift;

pub use plan::{Plan, Volume};
pub use promote::Fetched;
pub use report::{Failed, MigrateReport, MigrateRequest, Moved, RecoveryReport, Skipped};
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
    /// Held by each batch of moves (and by recovery): two overlapping moves of one frame would race
    /// on its journal. Held per batch, never for a whole run.
    pub moving: tokio::sync::Mutex<()>,
}

impl Mover {
    pub fn new(hot: Arc<HotTier>, compression_level: i32, batch_size: usize) -> Mover {
        Mover { hot, compression_level, batch_size: batch_size.max(1), moving: tokio::sync::Mutex::new(()) }
    }

    /// A migration not kept as a run (the policy's moves): every frame's id in the report.
    pub async fn migrate(&self, req: &MigrateRequest, remotes: &Remotes) -> Result<MigrateReport> {
        let mut rec = RunRecord::transient(req);
        let opts = RunOptions { max_batch: self.batch_size, ..RunOptions::default() };
        let cancel = std::sync::atomic::AtomicBool::new(false);
        let ctl = RunControl { cancel: &cancel, progress: None, collect: true, persist: false, moved: None };
        self.run(&mut rec, req, &opts, remotes, &ctl).await
    }
}

#[cfg(test)]
mod tests;
