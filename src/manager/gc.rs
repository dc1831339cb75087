//! Archive before GC: StackMemory's `runGC` hard-deletes frames after their retention with no
//! archive; `gc()` deletes by the same rules, but only once PostgreSQL holds a verified copy of
//! each frame, so a GC'd frame stays retrievable. `archiveOnly` archives what a GC would delete and
//! leaves the deleting to StackMemory's own `runGC`.

use serde::Serialize;
use serde_json::Value;

use super::TierManager;
use crate::model::units::now_seconds;
use crate::model::values::{Fields, Kind};
use crate::model::{Result, Tier};
use crate::moves::MigrateRequest;

/// `gc({ retentionDays?, batchSize?, dryRun?, force?, archiveOnly? })`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcRequest {
    /// Default 90 (StackMemory's): `default` and `archive` frames older than this go.
    pub retention_days: u32,
    /// Frames archived and deleted per step (default 100).
    pub batch_size: usize,
    pub dry_run: bool,
    /// Without PostgreSQL, delete anyway (as StackMemory's own GC would, with no archive).
    pub force: bool,
    /// Archive what the GC would delete; delete nothing (StackMemory's `runGC` deletes).
    pub archive_only: bool,
}

impl GcRequest {
    pub fn from_json(v: Option<&Value>) -> Result<GcRequest> {
        let o = Fields::root(v.unwrap_or(&Value::Null), "options", Kind::Argument)?;
        o.known(&["retentionDays", "batchSize", "dryRun", "force", "archiveOnly"])?;
        Ok(GcRequest {
            retention_days: o.int("retentionDays", 90, 1, 100_000)? as u32,
            batch_size: o.int("batchSize", 100, 1, 10_000)? as usize,
            dry_run: o.boolean("dryRun", false)?,
            force: o.boolean("force", false)?,
            archive_only: o.boolean("archiveOnly", false)?,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Kept {
    pub frame_id: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GcReport {
    pub dry_run: bool,
    /// Frames past their retention.
    pub candidates: usize,
    /// Moved to the archive for it (they were hot or warm).
    pub archived: usize,
    /// Rows deleted from SQLite (their archived copies stay).
    pub deleted: Vec<String>,
    /// Past retention but kept in SQLite, and why.
    pub kept: Vec<Kept>,
    /// Deleted with no archived copy (`force` without PostgreSQL).
    pub deleted_without_archive: usize,
}

impl TierManager {
    pub async fn gc(&self, req: GcRequest) -> Result<GcReport> {
        self.check_open()?;
        let (now, days) = (now_seconds(), req.retention_days);
        let cands = self.inner.hot.call(move |hot| hot.gc_candidates(now, days, usize::MAX >> 1)).await?;
        let mut rep = GcReport { dry_run: req.dry_run, candidates: cands.len(), ..Default::default() };
        let keep =
            |rep: &mut GcReport, id: &str, why: &str| rep.kept.push(Kept { frame_id: id.into(), reason: why.into() });
        let mut eligible = vec![];
        for c in &cands {
            if c.active {
                keep(&mut rep, &c.frame_id, "active frames are never archived");
            } else if c.pinned {
                keep(&mut rep, &c.frame_id, "pinned");
            } else {
                eligible.push(c.clone());
            }
        }
        let remotes = self.remotes().await;
        if remotes.cold.is_none() {
            let why = format!("no archive ({}): not deleted; `force` deletes without one", remotes.down(Tier::Cold));
            if !req.force || req.archive_only {
                for c in &eligible {
                    keep(&mut rep, &c.frame_id, &why);
                }
                return Ok(rep);
            }
            return self.gc_without_archive(eligible, rep).await;
        }
        if req.dry_run {
            rep.archived = eligible.iter().filter(|c| c.tier != Tier::Cold.level()).count();
            if !req.archive_only {
                rep.deleted = eligible.iter().map(|c| c.frame_id.clone()).collect();
            }
            return Ok(rep);
        }
        for batch in eligible.chunks(req.batch_size) {
            let ids: Vec<String> = batch.iter().map(|c| c.frame_id.clone()).collect();
            let moved = self
                .migrate(MigrateRequest { subtrees: false, ..MigrateRequest::frames(Tier::Cold, ids.clone()) })
                .await?;
            rep.archived += moved.moved.len();
            for f in &moved.failed {
                keep(&mut rep, &f.frame_id, &format!("not archived: {}", f.error));
            }
            if req.archive_only {
                continue;
            }
            // Delete only what the archive verifiably holds.
            let idv = ids.clone();
            let metas = self.inner.hot.call(move |hot| hot.meta_many(&idv)).await?;
            let cold = remotes.cold.as_ref().ok_or_else(|| crate::model::TierError::unavailable("postgres", "gone"))?;
            let sums = cold.checksums(&ids).await?;
            let mut verified = vec![];
            for m in metas.into_iter().flatten() {
                match (m.tier == Tier::Cold.level() && !m.body_local, sums.get(&m.frame_id)) {
                    (true, Some(sum)) => verified.push((m.frame_id, sum.clone())),
                    _ if moved.failed.iter().any(|f| f.frame_id == m.frame_id) => {}
                    _ => keep(&mut rep, &m.frame_id, "not archived yet (a later gc retries)"),
                }
            }
            let (gone, kept) = self.inner.hot.call(move |hot| hot.forget_archived(&verified)).await?;
            for (id, why) in kept {
                keep(&mut rep, &id, &why);
            }
            self.forget_in_engine(&gone);
            rep.deleted.extend(gone);
        }
        Ok(rep)
    }

    /// `force` without PostgreSQL: StackMemory's own GC, children before parents.
    async fn gc_without_archive(
        &self,
        mut frames: Vec<crate::tiers::hot::Expired>,
        mut rep: GcReport,
    ) -> Result<GcReport> {
        if rep.dry_run {
            rep.deleted = frames.iter().map(|c| c.frame_id.clone()).collect();
            rep.deleted_without_archive = rep.deleted.len();
            return Ok(rep);
        }
        // Children first: a frame whose parent also goes is deleted before it.
        frames.reverse();
        for c in frames {
            match self.delete(&c.frame_id).await {
                Ok(true) => rep.deleted.push(c.frame_id),
                Ok(false) => {}
                Err(e) => rep.kept.push(Kept { frame_id: c.frame_id, reason: e.to_string() }),
            }
        }
        rep.deleted_without_archive = rep.deleted.len();
        Ok(rep)
    }

    fn forget_in_engine(&self, ids: &[String]) {
        let mut e = self.engine();
        for id in ids {
            e.forget(id);
        }
    }
}
