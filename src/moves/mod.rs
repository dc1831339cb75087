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
use std::time::Instant;

use crate::model::{Result, Tier};
use crate::tiers::cold::ColdTier;
use crate::tiers::hot::HotTier;
use crate::tiers::warm::WarmTier;

mod demote;
mod promote;
mod recovery;
mod report;
mod select;
mod shift;

pub use promote::Fetched;
pub use report::{Failed, MigrateReport, MigrateRequest, Moved, RecoveryReport, Skipped};

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
}

pub struct Mover {
    pub hot: Arc<HotTier>,
    pub compression_level: i32,
    pub batch_size: usize,
}

impl Mover {
    pub fn new(hot: Arc<HotTier>, compression_level: i32, batch_size: usize) -> Mover {
        Mover { hot, compression_level, batch_size: batch_size.max(1) }
    }

    /// Choose frames for a migration and move them in batches, each batch down the one path its
    /// frames take (a body leaving SQLite, a body coming back, a stub shifting warm ↔ cold).
    pub async fn migrate(&self, req: &MigrateRequest, remotes: &Remotes) -> Result<MigrateReport> {
        let started = Instant::now();
        let to = req.to;
        let mut report = MigrateReport { to_tier: to.as_str(), dry_run: req.dry_run, ..Default::default() };
        if !req.dry_run {
            self.recover(remotes).await?;
        }
        let chosen = self.select(req, &mut report).await?;
        if req.dry_run {
            for c in &chosen {
                let from = Tier::from_level(c.tier).unwrap_or(Tier::Hot);
                report.moved.push(Moved { frame_id: c.frame_id.clone(), from: from.as_str(), to: to.as_str() });
                report.bytes_before += c.size_bytes.max(0) as u64;
            }
            report.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
            return Ok(report);
        }
        // Group by (source tier, body local) so each batch takes one path.
        let mut groups: Vec<((i64, bool), Vec<crate::tiers::hot::Candidate>)> = vec![];
        for c in chosen {
            let key = (c.tier, c.body_local);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => v.push(c),
                None => groups.push((key, vec![c])),
            }
        }
        for ((_, body_local), cands) in groups {
            for chunk in cands.chunks(self.batch_size) {
                let ids: Vec<String> = chunk.iter().map(|c| c.frame_id.clone()).collect();
                let from = Tier::from_level(chunk[0].tier).unwrap_or(Tier::Hot);
                let hop = Hop { ids: &ids, from, to };
                let r = if body_local {
                    self.demote_local(&hop, remotes, &mut report).await
                } else if to == Tier::Hot {
                    self.promote(&hop, remotes, &mut report).await
                } else {
                    self.shift_remote(&hop, remotes, &mut report).await
                };
                if let Err(e) = r {
                    report.fail(&ids, &e);
                }
            }
        }
        report.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        Ok(report)
    }
}

#[cfg(test)]
mod tests;
