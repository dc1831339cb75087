//! Retention through the journal, like every other move: frames past their retention (the rule is
//! PostgreSQL's, `tiers/cold/schema.rs` `PAST_RETENTION`) leave every tier and every tier agrees.
//!
//! Per batch of expired archive rows, by what this SQLite file knows of each frame:
//! - a stub (cold or warm, body not local, not written since it was archived): journaled, its Redis
//!   copy and archive row deleted, then the stub removed, or kept as an `expired` stub while child
//!   frames point at it (StackMemory's tree needs the parent row);
//! - a frame whose rows are data here (held back, or a stub StackMemory wrote since it was
//!   archived): kept whole, archive row included (the archived body is the base of the writes);
//! - a hot frame: its archive row is a leftover copy and goes; the frame stays (StackMemory's own
//!   GC and `gc()` decide about hot frames);
//! - a row this file does not know (another machine's frame, or one StackMemory's GC deleted after
//!   archiving): deleted with its Redis copy; nothing local refers to it.
//!
//! `keep_forever` is never expired (the rule excludes it). A crash between the steps leaves open
//! journal entries that `recover` finishes (the deletes are idempotent).

use serde::Serialize;

use super::{Mover, Remotes};
use crate::model::tier::EXPIRE_LEVEL;
use crate::model::{Result, Tier, TierError};
use crate::tiers::hot::journal::NewMove;
use crate::tiers::hot::FrameMeta;

/// Rows read per batch.
const BATCH: usize = 500;

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionReport {
    /// Archive rows deleted.
    pub deleted: usize,
    /// Stubs removed from SQLite.
    pub stubs_removed: usize,
    /// Stubs kept as `expired` (child frames point at them).
    pub stubs_expired: usize,
    /// Frames past retention kept because their rows in SQLite are data (hot, held back, written
    /// since archived).
    pub kept: usize,
    /// The frames that are gone from SQLite (the policy engine forgets them).
    #[serde(skip)]
    pub removed_ids: Vec<String>,
}

impl Mover {
    /// Applies retention (`default_days` for `default` frames) as of `now_s`. The caller holds
    /// `moving` (compact does, for recovery and retention together), so no move interleaves.
    pub async fn expire(&self, rm: &Remotes, default_days: u32, now_s: i64) -> Result<RetentionReport> {
        let cold = rm.cold.as_ref().ok_or_else(|| TierError::unavailable("postgres", rm.down(Tier::Cold)))?;
        let mut rep = RetentionReport::default();
        let mut after = String::new();
        loop {
            let ids = cold.expired_ids(default_days, now_s, &after, BATCH).await?;
            let Some(last) = ids.last() else { break };
            after = last.clone();
            let idv = ids.clone();
            let metas = self.hot.call(move |hot| hot.meta_many(&idv)).await?;
            let (mut stubs, mut unknown) = (vec![], vec![]);
            for (id, meta) in ids.into_iter().zip(metas) {
                match meta {
                    None => unknown.push(id),
                    // A hot frame's archive row is a leftover copy: the frame lives in SQLite.
                    Some(m) if m.body_local && m.tier == Tier::Hot.level() => unknown.push(id),
                    Some(m) if m.body_local || m.is_dirty_stub() => rep.kept += 1,
                    Some(m) => stubs.push(m),
                }
            }
            self.expire_batch(rm, &stubs, unknown, default_days, now_s, &mut rep).await?;
        }
        // Stubs whose archive row is already gone (another machine's retention deleted it).
        let mut after = String::new();
        loop {
            let from = after.clone();
            let ids = self.hot.call(move |hot| hot.stubs_past_retention(now_s, default_days, &from, BATCH)).await?;
            let Some(last) = ids.last() else { break };
            after = last.clone();
            let archived = cold.checksums(&ids).await?;
            let gone: Vec<String> = ids.into_iter().filter(|i| !archived.contains_key(i)).collect();
            let metas = self.hot.call(move |hot| hot.meta_many(&gone)).await?;
            let stubs: Vec<_> = metas.into_iter().flatten().filter(|m| !m.body_local && !m.is_dirty_stub()).collect();
            self.expire_batch(rm, &stubs, vec![], default_days, now_s, &mut rep).await?;
        }
        Ok(rep)
    }

    /// One batch: stubs through the journal, rows unknown here deleted outright.
    async fn expire_batch(
        &self,
        rm: &Remotes,
        stubs: &[FrameMeta],
        unknown: Vec<String>,
        default_days: u32,
        now_s: i64,
        rep: &mut RetentionReport,
    ) -> Result<()> {
        let Some(cold) = rm.cold.as_ref() else { return Ok(()) };
        {
            // Stubs: journal first, so a crash anywhere below is finished by `recover`.
            let entries: Vec<NewMove> = stubs
                .iter()
                .map(|m| NewMove {
                    frame_id: m.frame_id.clone(),
                    from: m.tier,
                    to: EXPIRE_LEVEL,
                    checksum: m.checksum.clone(),
                    version: m.version,
                    change_seq: m.change_seq,
                    run_id: None,
                })
                .collect();
            let move_ids = self.hot.call(move |hot| hot.journal_begin(&entries)).await?;
            let mut all: Vec<String> = stubs.iter().map(|m| m.frame_id.clone()).collect();
            all.extend(unknown);
            if let Some(w) = &rm.warm {
                w.delete_many(&all).await?;
            }
            rep.deleted += cold.delete_expired(&all, default_days, now_s).await?.len();
            let items: Vec<(i64, String, i64)> =
                move_ids.into_iter().zip(stubs).map(|(mid, m)| (mid, m.frame_id.clone(), m.change_seq)).collect();
            let (removed, kept) = self.hot.call(move |hot| hot.expire_stubs(&items)).await?;
            rep.stubs_removed += removed.len();
            rep.removed_ids.extend(removed);
            rep.stubs_expired += kept.len();
        }
        Ok(())
    }

    /// Recovery of a retention entry whose frame is still the stub it journaled (`unchanged`):
    /// the deletes again (idempotent), then the stub. A frame changed since (restored, written)
    /// keeps its rows and copies; the entry is closed. Returns false while PostgreSQL is away.
    pub(super) async fn finish_expiry(
        &self,
        move_id: i64,
        frame_id: &str,
        change_seq: i64,
        unchanged: bool,
        rm: &Remotes,
    ) -> Result<bool> {
        let ids = [frame_id.to_string()];
        if unchanged {
            let Some(cold) = &rm.cold else { return Ok(false) };
            if let Some(w) = &rm.warm {
                w.delete_many(&ids).await?;
            }
            cold.delete_many(&ids).await?;
        }
        let items = vec![(move_id, frame_id.to_string(), change_seq)];
        self.hot.call(move |hot| hot.expire_stubs(&items)).await?;
        Ok(true)
    }
}
