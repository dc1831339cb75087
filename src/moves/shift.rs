//! Warm ↔ cold for stubbed frames: the archive copy stays, only the Redis copy and the tier change.

use std::collections::HashMap;

use super::report::{MigrateReport, Moved};
use super::{Hop, Mover, Remotes};
use crate::model::units::now_seconds;
use crate::model::{Result, Tier};
use crate::tiers::hot::NewMove;
use crate::tiers::warm::WarmItem;

impl Mover {
    /// Warm ↔ cold for stubbed frames: the archive copy stays; only the Redis copy changes.
    pub(super) async fn shift_remote(&self, hop: &Hop<'_>, rm: &Remotes, rep: &mut MigrateReport) -> Result<()> {
        let Hop { ids, from, to, run } = *hop;
        // A stub StackMemory wrote to since it was archived is re-archived whole: merged back into
        // SQLite, then demoted like any local body (its archived copy lacks the new rows).
        let idv = ids.to_vec();
        let metas = self.hot.call(move |hot| hot.meta_many(&idv)).await?;
        let dirty: Vec<String> =
            metas.iter().flatten().filter(|m| m.is_dirty_stub()).map(|m| m.frame_id.clone()).collect();
        // The copies' versions, as this file knows them, for the Redis copies below (a newer one in
        // Redis is kept). Read once: a write after this read makes the stub dirty, and the next
        // run re-archives it with its new version.
        let versions: HashMap<String, i64> = metas.into_iter().flatten().map(|m| (m.frame_id, m.version)).collect();
        if !dirty.is_empty() {
            self.rearchive(&dirty, hop, rm, rep).await?;
        }
        let clean: Vec<String> = ids.iter().filter(|i| !dirty.contains(i)).cloned().collect();
        let ids = &clean[..];
        if ids.is_empty() {
            return Ok(());
        }
        let Some(cold) = &rm.cold else {
            rep.defer(ids, Tier::Cold, &rm.down(Tier::Cold));
            return Ok(());
        };
        if to == Tier::Warm && rm.warm.is_none() {
            rep.defer(ids, Tier::Warm, &rm.down(Tier::Warm));
            return Ok(());
        }
        let entries: Vec<NewMove> = ids
            .iter()
            .map(|i| NewMove { run_id: run.map(str::to_string), ..NewMove::shift(i, from.level(), to.level()) })
            .collect();
        let move_ids = self.hot.call(move |hot| hot.journal_begin(&entries)).await?;
        if to == Tier::Cold {
            if let Some(w) = &rm.warm {
                // Best effort: a Redis copy left behind expires by its TTL and is not served.
                crate::obs::log_err("dropping archived frames' Redis copies", w.delete_many(ids).await);
            }
            cold.set_tier(ids, 3).await?;
        } else if let Some(w) = &rm.warm {
            let got = cold.get_many(ids).await?;
            let items: Vec<WarmItem> = ids
                .iter()
                .filter_map(|id| {
                    got.get(id).map(|bytes| WarmItem {
                        frame_id: id.clone(),
                        bytes: bytes.clone(),
                        created_s: now_seconds(),
                        access_count: 0,
                        version: versions.get(id).copied().unwrap_or(0),
                    })
                })
                .collect();
            w.put_many(&items).await?;
            cold.set_tier(ids, 2).await?;
        }
        let moves: Vec<(i64, String)> = move_ids.into_iter().zip(ids.iter().cloned()).collect();
        self.hot.call(move |hot| hot.set_tier(&moves, to, None)).await?;
        for id in ids {
            rep.moved.push(Moved::new(id, from, to));
        }
        Ok(())
    }

    /// Dirty stubs to `to` through hot: the merge (`promote`) then a demotion of the whole body.
    async fn rearchive(&self, ids: &[String], hop: &Hop<'_>, rm: &Remotes, rep: &mut MigrateReport) -> Result<()> {
        let Hop { from, to, run, .. } = *hop;
        let mut merged = MigrateReport::default();
        self.promote(&Hop { ids, from, to: Tier::Hot, run }, rm, &mut merged).await?;
        rep.failed.append(&mut merged.failed);
        rep.skipped.append(&mut merged.skipped);
        rep.skipped_count += merged.skipped_count;
        let back: Vec<String> = merged.moved.into_iter().map(|m| m.frame_id).collect();
        let start = rep.moved.len();
        self.demote_local(&Hop { ids: &back, from: Tier::Hot, to, run }, rm, rep).await?;
        for m in &mut rep.moved[start..] {
            m.from = from.as_str();
        }
        Ok(())
    }
}
