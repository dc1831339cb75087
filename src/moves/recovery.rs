//! Crash recovery: every open journal entry is finished or undone, so a move interrupted at any
//! point (a kill, an outage) leaves no half-moved frame. Idempotent: recovering twice is harmless.

use super::report::RecoveryReport;
use super::{Mover, Remotes};
use crate::model::tier::EXPIRE_LEVEL;
use crate::model::{Result, Tier};
use crate::tiers::hot::journal::{self, JournalEntry};
use crate::tiers::hot::Demotion;

impl Mover {
    /// Finish or undo every open journal entry. Entries that need an unreachable tier stay open.
    pub async fn recover(&self, rm: &Remotes) -> Result<RecoveryReport> {
        let open: Vec<JournalEntry> = self.hot.call(move |hot| hot.journal_open()).await?;
        let mut rep = RecoveryReport::default();
        if !open.is_empty() {
            if let Some(c) = &rm.cold {
                // A killed process's last archive write may still be finishing in its backend.
                crate::obs::log_err("waiting for the archive's last write (recovery)", c.barrier().await);
            }
        }
        for e in open {
            let fid = e.frame_id.clone();
            let meta = self.hot.call(move |hot| hot.meta(&fid)).await?;
            let ids = [e.frame_id.clone()];
            let body_local = meta.as_ref().is_none_or(|m| m.body_local);
            // A copy of a body kept in SQLite (a hot frame, or a warm one held back): `demote_local`
            // journals those with the body's checksum; warm ↔ cold shifts of stubs carry none.
            let copy_of_local = e.to_tier >= Tier::Warm.level() && e.checksum.is_some();
            if e.to_tier == EXPIRE_LEVEL {
                // Retention: finish the deletes for the stub it journaled (`retention.rs`).
                let unchanged = meta.as_ref().is_some_and(|m| !m.body_local && m.change_seq == e.change_seq);
                if self.finish_expiry(e.move_id, &e.frame_id, e.change_seq, unchanged, rm).await.unwrap_or(false) {
                    rep.finished += 1;
                } else {
                    rep.pending += 1;
                }
                continue;
            }
            let (step, note): (Option<&str>, Option<String>) = if e.to_tier == 0 {
                // Discard: delete stale remote copies, unless the frame went remote again since.
                if body_local && self.delete_remote(&ids, rm).await {
                    (Some(journal::DONE), None)
                } else if !body_local {
                    (Some(journal::DONE), Some("frame archived again; nothing to discard".into()))
                } else {
                    (None, None)
                }
            } else if copy_of_local && e.step == journal::STARTED {
                if !body_local {
                    (Some(journal::DONE), None)
                } else if self.delete_remote(&ids, rm).await {
                    (Some(journal::ROLLED_BACK), Some("interrupted before verification; partial copies removed".into()))
                } else {
                    (None, None)
                }
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
                        continue;
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
                // Restored to SQLite already; the remote copies are stale (unless the frame went
                // remote again since, when there is nothing to delete).
                if !body_local || self.delete_remote(&ids, rm).await {
                    (Some(journal::DONE), None)
                } else {
                    (None, None)
                }
            } else if e.to_tier >= Tier::Warm.level() && e.step == journal::STARTED {
                // Warm ↔ cold of a stub, interrupted. SQLite did not change (its tier change commits
                // with the journal's `done`), but the archive's tier column and the Redis copy may
                // have: put them back in line with SQLite, or the archive reports the wrong tier
                // (search, stats) and a cold frame keeps a Redis copy.
                match &meta {
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
        }
        Ok(rep)
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
