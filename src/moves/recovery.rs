//! Crash recovery: every open journal entry is finished or undone, so a move interrupted at any
//! point (a kill, an outage) leaves no half-moved frame. Idempotent: recovering twice is harmless.

use std::collections::HashMap;

use super::report::RecoveryReport;
use super::{Mover, Remotes};
use crate::model::tier::EXPIRE_LEVEL;
use crate::model::{Result, Tier};
use crate::tiers::hot::journal::{self, JournalEntry};
use crate::tiers::hot::{Demotion, FrameMeta};

/// Open entries undone together by one batch of remote deletes.
const RECOVERY_CHUNK: usize = 500;

/// Whether the entry copied a body kept in SQLite (a hot frame, or a warm one held back):
/// `demote_local` journals those with the body's checksum; warm ↔ cold shifts of stubs carry none.
fn copies_a_local_body(e: &JournalEntry) -> bool {
    e.to_tier >= Tier::Warm.level() && e.checksum.is_some()
}

/// The entries whose undo (or finish) is "delete this frame's remote copies, then close the entry
/// with this step": a discard, an unverified copy or a restored frame's stale copies, each while
/// the body is in SQLite.
fn undone_by_deleting(e: &JournalEntry, meta: Option<&FrameMeta>) -> Option<(&'static str, Option<String>)> {
    let body_local = meta.is_none_or(|m| m.body_local);
    if !body_local || e.to_tier == EXPIRE_LEVEL {
        return None;
    }
    let copy_of_local = copies_a_local_body(e);
    if e.to_tier == 0 {
        Some((journal::DONE, None))
    } else if copy_of_local && e.step == journal::STARTED {
        Some((journal::ROLLED_BACK, Some("interrupted before verification; partial copies removed".into())))
    } else if e.to_tier == 1 && e.step == journal::VERIFIED {
        Some((journal::DONE, None))
    } else {
        None
    }
}

impl Mover {
    /// Finish or undo every open journal entry. Entries that need an unreachable tier stay open.
    pub async fn recover(&self, rm: &Remotes) -> Result<RecoveryReport> {
        let open: Vec<JournalEntry> = self.hot.call(move |hot| hot.journal_open()).await?;
        let mut rep = RecoveryReport::default();
        if open.is_empty() {
            return Ok(rep);
        }
        if let Some(c) = &rm.cold {
            // A killed process's last archive write may still be finishing in its backend.
            crate::obs::log_err("waiting for the archive's last write (recovery)", c.barrier().await);
        }
        let ids: Vec<String> = open.iter().map(|e| e.frame_id.clone()).collect();
        let metas = self.hot.call(move |hot| hot.meta_many(&ids)).await?;
        let mut entries_of: HashMap<&str, usize> = HashMap::new();
        for e in &open {
            *entries_of.entry(e.frame_id.as_str()).or_default() += 1;
        }
        // An outage leaves one open entry per frame of every failed batch (hundreds): those whose
        // undo is "delete the remote copies" are done together, a batch of deletes and one journal
        // write per chunk, instead of five round trips each. A frame with more than one open entry
        // keeps the one-by-one order.
        let mut by_delete: Vec<(i64, String, &'static str, Option<String>)> = vec![];
        for (e, meta) in open.iter().zip(metas) {
            if entries_of.get(e.frame_id.as_str()) == Some(&1) {
                if let Some((step, note)) = undone_by_deleting(e, meta.as_ref()) {
                    by_delete.push((e.move_id, e.frame_id.clone(), step, note));
                    continue;
                }
            }
            self.recover_one(e, meta, rm, &mut rep).await?;
        }
        for chunk in by_delete.chunks(RECOVERY_CHUNK) {
            let ids: Vec<String> = chunk.iter().map(|c| c.1.clone()).collect();
            if !self.delete_remote(&ids, rm).await {
                rep.pending += chunk.len();
                continue;
            }
            for c in chunk {
                if c.2 == journal::DONE {
                    rep.finished += 1;
                } else {
                    rep.rolled_back += 1;
                }
            }
            let steps: Vec<(i64, &'static str, Option<String>)> =
                chunk.iter().map(|c| (c.0, c.2, c.3.clone())).collect();
            self.hot.call(move |hot| hot.journal_set(&steps)).await?;
        }
        Ok(rep)
    }

    /// One open journal entry, finished or undone (or left open when a tier it needs is down).
    async fn recover_one(
        &self,
        e: &JournalEntry,
        meta: Option<FrameMeta>,
        rm: &Remotes,
        rep: &mut RecoveryReport,
    ) -> Result<()> {
        let ids = [e.frame_id.clone()];
        let copy_of_local = copies_a_local_body(e);
        if e.to_tier == EXPIRE_LEVEL {
            // Retention: finish the deletes for the stub it journaled (`retention.rs`).
            let unchanged = meta.as_ref().is_some_and(|m| !m.body_local && m.change_seq == e.change_seq);
            if self.finish_expiry(e.move_id, &e.frame_id, e.change_seq, unchanged, rm).await.unwrap_or(false) {
                rep.finished += 1;
            } else {
                rep.pending += 1;
            }
            return Ok(());
        }
        let (step, note): (Option<&str>, Option<String>) =
            if let Some((step, note)) = undone_by_deleting(e, meta.as_ref()) {
                if self.delete_remote(&ids, rm).await {
                    (Some(step), note)
                } else {
                    (None, None)
                }
            } else if e.to_tier == 0 || (copy_of_local && e.step == journal::STARTED) {
                // Discard, or an unverified copy, of a frame that went remote again since: nothing to
                // delete (its copies are the new move's).
                let note = (e.to_tier == 0).then(|| "frame archived again; nothing to discard".to_string());
                (Some(journal::DONE), note)
            } else if copy_of_local && e.step == journal::VERIFIED {
                match &meta {
                    Some(m) if m.body_local && m.version == e.version && m.change_seq == e.change_seq => {
                        let to = Tier::from_level(e.to_tier).unwrap_or(Tier::Cold);
                        let fin = vec![Demotion {
                            move_id: e.move_id,
                            frame_id: e.frame_id.clone(),
                            version: e.version,
                            change_seq: e.change_seq,
                            checksum: e.checksum.clone(),
                            size_bytes: None,
                        }];
                        self.hot.call(move |hot| hot.finish_demotions(&fin, to)).await?;
                        rep.finished += 1;
                        return Ok(());
                    }
                    Some(m) if !m.body_local => (Some(journal::DONE), None),
                    _ => {
                        if self.delete_remote(&ids, rm).await {
                            (
                                Some(journal::ROLLED_BACK),
                                Some("frame changed or vanished before the source was removed".into()),
                            )
                        } else {
                            (None, None)
                        }
                    }
                }
            } else if e.to_tier == 1 && e.step == journal::VERIFIED {
                // Restored to SQLite already, and the frame went remote again since: nothing to delete.
                (Some(journal::DONE), None)
            } else if e.to_tier >= Tier::Warm.level() && e.step == journal::STARTED {
                // Warm ↔ cold of a stub, interrupted. SQLite did not change (its tier change commits
                // with the journal's `done`), but the archive's tier column and the Redis copy may
                // have: put them back in line with SQLite, or the archive reports the wrong tier
                // (search, stats) and a cold frame keeps a Redis copy.
                match &meta {
                    // Warm → cold deletes the Redis copies first: rolled back, the frame would stay
                    // warm without its copy (found by scripts/crash-matrix.js). Its body is in the
                    // archive either way, so the shift is finished instead.
                    Some(m) if !m.body_local && m.tier == Tier::Warm.level() && e.to_tier == Tier::Cold.level() => {
                        if !self.realign_remote_tier(&e.frame_id, Tier::Cold.level(), rm).await {
                            rep.pending += 1;
                            return Ok(());
                        }
                        let moves = vec![(e.move_id, e.frame_id.clone())];
                        self.hot.call(move |hot| hot.set_tier(&moves, Tier::Cold, None)).await?;
                        rep.finished += 1;
                        return Ok(());
                    }
                    Some(m) if !m.body_local && (m.tier == Tier::Warm.level() || m.tier == Tier::Cold.level()) => {
                        if self.realign_remote_tier(&e.frame_id, m.tier, rm).await {
                            (Some(journal::ROLLED_BACK), Some("interrupted; the frame stays where it was".into()))
                        } else {
                            (None, None)
                        }
                    }
                    _ => (Some(journal::ROLLED_BACK), Some("interrupted; the frame stays where it was".into())),
                }
            } else {
                // A restore that never committed: nothing half-done remains in SQLite (the restore
                // commits atomically with the journal's `verified`).
                (Some(journal::ROLLED_BACK), Some("interrupted; the frame stays where it was".into()))
            };
        match step {
            Some(s) => {
                if s == journal::DONE {
                    rep.finished += 1;
                } else {
                    rep.rolled_back += 1;
                }
                let id = e.move_id;
                self.hot.call(move |hot| hot.journal_set(&[(id, s, note)])).await?;
            }
            None => rep.pending += 1,
        }
        Ok(())
    }

    /// Make the remote tiers agree with SQLite's tier for a stub after an interrupted warm ↔ cold
    /// shift: the archive's tier column, and no Redis copy of a cold frame. False when the archive
    /// is unreachable (the journal entry stays open and recovery retries).
    async fn realign_remote_tier(&self, id: &str, tier: i64, rm: &Remotes) -> bool {
        let Some(c) = &rm.cold else { return false };
        let ids = [id.to_string()];
        if c.realign_tier(&ids, tier as i16).await.is_err() {
            return false;
        }
        if tier == Tier::Cold.level() {
            if let Some(w) = &rm.warm {
                // Best effort, as in `shift_remote`: a cold frame's Redis copy is never served.
                crate::obs::log_err("dropping a cold frame's Redis copy (recovery)", w.delete_many(&ids).await);
            }
        }
        true
    }

    /// Delete a frame's copies from every configured remote tier; false when a tier was unreachable.
    pub(super) async fn delete_remote(&self, ids: &[String], rm: &Remotes) -> bool {
        let mut ok = true;
        if let Some(w) = &rm.warm {
            ok &= w.delete_many(ids).await.is_ok();
        } else if rm.warm_down.is_some() {
            // A configured Redis that is down may still hold a copy; its TTL bounds the staleness,
            // and retrieve never serves a warm copy of a frame whose body is local.
        }
        if let Some(c) = &rm.cold {
            ok &= c.delete_many(ids).await.is_ok();
        } else if rm.cold_down.is_some() {
            ok = false;
        }
        ok
    }
}
