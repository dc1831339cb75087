//! Where a frame's body is: shrinking rows to stubs once a verified copy is elsewhere, changing the
//! recorded tier of a stub, deleting frames, and dropping stubs whose archived body expired.

use rusqlite::{params, Transaction, TransactionBehavior};

use super::journal;
use super::read::{load_meta, FrameMeta};
use super::HotTier;
use crate::model::tier::EXPIRED;
use crate::model::units::now_seconds;
use crate::model::{Result, Tier, TierError};

/// What `forget_archived` removed, and what it kept with the reason.
pub type Forgotten = (Vec<String>, Vec<(String, String)>);

/// A demotion whose copy is verified: the frame as it was when copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demotion {
    pub move_id: i64,
    pub frame_id: String,
    pub version: i64,
    pub change_seq: i64,
    /// The archived copy's checksum and size: the stub's bookkeeping then describes the copy that
    /// holds its body (StackMemory may have written the rows since our last look at them).
    pub checksum: Option<String>,
    pub size_bytes: Option<i64>,
}

impl HotTier {
    /// Delete a frame's rows. Refuses when child frames still point at it.
    /// Returns the tier it was in, or `None` when unknown.
    pub fn delete(&self, frame_id: &str) -> Result<Option<FrameMeta>> {
        let mut c = self.lock_write()?;
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(meta) = load_meta(&tx, frame_id)? else {
            return Ok(None);
        };
        let children: i64 = tx
            .prepare_cached("SELECT count(*) FROM frames WHERE parent_frame_id = ?1")?
            .query_row([frame_id], |r| r.get(0))?;
        if children > 0 {
            return Err(TierError::invalid_argument(
                "frameId",
                format!("frame {frame_id} has {children} child frame(s); delete them first"),
            ));
        }
        tx.prepare_cached("DELETE FROM events WHERE frame_id = ?1")?.execute([frame_id])?;
        tx.prepare_cached("DELETE FROM anchors WHERE frame_id = ?1")?.execute([frame_id])?;
        tx.prepare_cached("DELETE FROM tier_metadata WHERE frame_id = ?1")?.execute([frame_id])?;
        tx.prepare_cached("DELETE FROM frames WHERE frame_id = ?1")?.execute([frame_id])?;
        if meta.tier != Tier::Hot.level() || !meta.body_local || meta.checksum.is_some() {
            // Remote tiers may hold a copy; recovery deletes it.
            journal::begin_discard(&tx, frame_id, meta.tier, meta.version)?;
        }
        tx.commit()?;
        Ok(Some(meta))
    }

    /// StackMemory's GC for frames whose body the archive holds: their SQLite rows go (children
    /// before parents), the archive copy stays (`retrieve` finds it there). A frame is only removed
    /// while it is still an unchanged stub with exactly the checksum the archive verified
    /// (`archived`: id → archived checksum); the others are returned with the reason they stay.
    pub fn forget_archived(&self, archived: &[(String, String)]) -> Result<Forgotten> {
        let mut c = self.lock_write()?;
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let ids: std::collections::HashSet<&str> = archived.iter().map(|(i, _)| i.as_str()).collect();
        // Deepest first, so a parent goes after the children that go with it.
        let mut order: Vec<(i64, &String, &String)> = vec![];
        for (id, sum) in archived {
            let depth: i64 = tx
                .prepare_cached("SELECT COALESCE(depth, 0) FROM frames WHERE frame_id = ?1")?
                .query_row([id], |r| r.get(0))
                .unwrap_or(0);
            order.push((depth, id, sum));
        }
        order.sort_by_key(|o| std::cmp::Reverse(o.0));
        let (mut gone, mut kept) = (vec![], vec![]);
        for (_, id, sum) in order {
            let Some(meta) = load_meta(&tx, id)? else { continue };
            let why = if meta.body_local || meta.is_dirty_stub() {
                Some("its rows changed since it was archived")
            } else if meta.checksum.as_deref() != Some(sum.as_str()) {
                Some("the archived copy is not the one recorded")
            } else {
                let mut st = tx.prepare_cached("SELECT frame_id FROM frames WHERE parent_frame_id = ?1")?;
                let children: Vec<String> = st.query_map([id], |r| r.get(0))?.collect::<std::result::Result<_, _>>()?;
                children
                    .iter()
                    .any(|c| !ids.contains(c.as_str()) || !gone.contains(c))
                    .then_some("it has child frames that stay")
            };
            match why {
                Some(w) => kept.push((id.clone(), w.to_string())),
                None => {
                    tx.prepare_cached("DELETE FROM frames WHERE frame_id = ?1")?.execute([id])?;
                    gone.push(id.clone());
                }
            }
        }
        tx.commit()?;
        Ok((gone, kept))
    }

    /// Shrink frames to stubs after their body was verified elsewhere, atomically with the journal.
    /// A frame written since its copy was taken (by us or by any other connection: its version or
    /// its change counter differs) is left alone and its move rolled back, so the write is never
    /// lost; a later move takes the frame. Returns the ids that were stubbed.
    pub fn finish_demotions(&self, moves: &[Demotion], to: Tier) -> Result<Vec<String>> {
        let mut c = self.lock_write()?;
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut done = Vec::with_capacity(moves.len());
        for d in moves {
            let current = load_meta(&tx, &d.frame_id)?;
            let unchanged = current
                .as_ref()
                .is_some_and(|m| m.body_local && m.version == d.version && m.change_seq == d.change_seq);
            if !unchanged {
                journal::set_step(&tx, d.move_id, journal::ROLLED_BACK, Some("frame changed during the move"))?;
                journal::begin_discard(&tx, &d.frame_id, to.level(), d.version)?;
                continue;
            }
            stub_frame(&tx, d, to)?;
            journal::set_step(&tx, d.move_id, journal::DONE, None)?;
            journal::set_after_seq(&tx, d.move_id, &d.frame_id)?;
            done.push(d.frame_id.clone());
        }
        tx.commit()?;
        Ok(done)
    }

    /// Change the recorded tier of frames whose body stays where it is (warm ↔ cold, or a warm
    /// copy made while the archive is down: `held_back` says why the body stays local).
    pub fn set_tier(&self, moves: &[(i64, String)], to: Tier, held_back: Option<&str>) -> Result<()> {
        let mut c = self.lock_write()?;
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (move_id, frame_id) in moves {
            tx.prepare_cached("UPDATE frames SET tier_status = ?2 WHERE frame_id = ?1")?
                .execute(params![frame_id, to.as_str()])?;
            tx.prepare_cached(
                "UPDATE tier_metadata SET tier_level = ?2, held_back = ?3, demoted_at = ?4 WHERE frame_id = ?1",
            )?
            .execute(params![frame_id, to.level(), held_back, now_seconds()])?;
            if *move_id > 0 {
                journal::set_step(&tx, *move_id, journal::DONE, None)?;
                journal::set_after_seq(&tx, *move_id, frame_id)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// After retention deleted their archived bodies: each stub is removed (with its bookkeeping)
    /// when no child frame points at it, else kept as an `expired` stub for StackMemory's tree;
    /// its journal entry is finished either way. A stub written since its entry began (`seq`
    /// differs) keeps what was written and becomes an expired stub too. Returns (removed, kept).
    pub fn expire_stubs(&self, items: &[(i64, String, i64)]) -> Result<(Vec<String>, Vec<String>)> {
        let mut c = self.lock_write()?;
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (mut removed, mut kept) = (vec![], vec![]);
        for (move_id, id, seq) in items {
            if let Some(meta) = load_meta(&tx, id)? {
                let children: i64 = tx
                    .prepare_cached("SELECT count(*) FROM frames WHERE parent_frame_id = ?1")?
                    .query_row([id], |r| r.get(0))?;
                if children == 0 && meta.change_seq == *seq && !meta.body_local {
                    tx.prepare_cached("DELETE FROM tier_metadata WHERE frame_id = ?1")?.execute([id])?;
                    tx.prepare_cached("DELETE FROM frames WHERE frame_id = ?1")?.execute([id])?;
                    removed.push(id.clone());
                } else if !meta.body_local {
                    tx.prepare_cached("UPDATE frames SET tier_status = ?2 WHERE frame_id = ?1")?
                        .execute(params![id, EXPIRED])?;
                    tx.prepare_cached(
                        "UPDATE tier_metadata SET tier_level = 0, held_back = NULL, checksum = NULL WHERE frame_id = ?1",
                    )?
                    .execute([id])?;
                    mark_written_by_us(&tx, id)?;
                    kept.push(id.clone());
                }
            }
            journal::set_step(&tx, *move_id, journal::DONE, None)?;
        }
        tx.commit()?;
        Ok((removed, kept))
    }
}

fn stub_frame(tx: &Transaction<'_>, d: &Demotion, to: Tier) -> Result<()> {
    let frame_id = d.frame_id.as_str();
    tx.prepare_cached("DELETE FROM events WHERE frame_id = ?1")?.execute([frame_id])?;
    tx.prepare_cached("DELETE FROM anchors WHERE frame_id = ?1")?.execute([frame_id])?;
    tx.prepare_cached(
        "UPDATE frames SET inputs = '{}', outputs = '{}', digest_text = NULL, digest_json = '{}', tier_status = ?2
         WHERE frame_id = ?1",
    )?
    .execute(params![frame_id, to.as_str()])?;
    tx.prepare_cached(
        "UPDATE tier_metadata SET tier_level = ?2, body_local = 0, held_back = NULL, demoted_at = ?3,
           checksum = COALESCE(?4, checksum), size_bytes = COALESCE(?5, size_bytes)
         WHERE frame_id = ?1",
    )?
    .execute(params![frame_id, to.level(), now_seconds(), d.checksum, d.size_bytes])?;
    mark_written_by_us(tx, frame_id)
}

/// After our own write of a frame's rows (a store, a restore, a stub): what the change triggers
/// recorded is ours, not a change the stub's archived body lacks.
pub(super) fn mark_written_by_us(c: &rusqlite::Connection, frame_id: &str) -> Result<()> {
    c.prepare_cached("UPDATE tier_changes SET cols = 0 WHERE frame_id = ?1")?.execute([frame_id])?;
    Ok(())
}
