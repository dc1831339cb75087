//! The mover: moves frame bodies between tiers as copy → verify → remove source, each step in the
//! journal (see `journal.rs`), so that a crash at any point is finished or undone by `recover`.
//!
//! The invariant: every frame has a verified copy in a durable tier (SQLite or PostgreSQL) at
//! every instant. Redis is never the last copy: a frame goes warm with its body archived in
//! PostgreSQL, or — when PostgreSQL is disabled or down — with its full rows kept in SQLite
//! (`held_back`). The mover knows the tiers' operations and the journal, nothing about policies.

use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::model::codec::{self, Encoded};
use crate::model::units::{now_seconds, to_seconds};
use crate::model::{Bundle, Tier};
use crate::model::{Result, TierError};
use crate::tiers::cold::{archive_row, ColdTier};
use crate::tiers::hot::journal::{self, JournalEntry};
use crate::tiers::hot::{Candidate, CandidateFilter, HotRecord, HotTier};
use crate::tiers::warm::{WarmItem, WarmTier};

/// Remote tiers as the manager currently has them (either may be absent: disabled or down).
#[derive(Clone, Default)]
pub struct Remotes {
    pub warm: Option<WarmTier>,
    pub cold: Option<ColdTier>,
    /// Why a configured tier is absent, for reports (`"redis tier unavailable: ..."`).
    pub warm_down: Option<String>,
    pub cold_down: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct MigrateRequest {
    pub to: Option<Tier>,
    pub frame_ids: Option<Vec<String>>,
    pub older_than_ms: Option<u64>,
    pub project_id: Option<String>,
    pub limit: Option<usize>,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Moved {
    pub frame_id: String,
    pub from: &'static str,
    pub to: &'static str,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    pub frame_id: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failed {
    pub frame_id: String,
    pub code: String,
    pub error: String,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrateReport {
    pub to_tier: &'static str,
    pub dry_run: bool,
    pub moved: Vec<Moved>,
    /// Frames that went warm with their full rows kept in SQLite, and why.
    pub held_back: Vec<Skipped>,
    pub skipped: Vec<Skipped>,
    pub skipped_count: usize,
    pub failed: Vec<Failed>,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub duration_ms: f64,
}

/// Listing every skipped frame of a bulk move would be huge; the count is always exact.
const MAX_LISTED_SKIPS: usize = 1000;

impl MigrateReport {
    fn skip(&mut self, frame_id: &str, reason: impl Into<String>) {
        self.skipped_count += 1;
        if self.skipped.len() < MAX_LISTED_SKIPS {
            self.skipped.push(Skipped { frame_id: frame_id.to_string(), reason: reason.into() });
        }
    }
    fn fail(&mut self, ids: &[String], e: &TierError) {
        for id in ids {
            self.failed.push(Failed { frame_id: id.clone(), code: e.code().into(), error: e.to_string() });
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryReport {
    pub finished: usize,
    pub rolled_back: usize,
    pub pending: usize,
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

    /// Choose frames for a migration and move them in batches.
    pub async fn migrate(&self, req: &MigrateRequest, remotes: &Remotes) -> Result<MigrateReport> {
        let started = Instant::now();
        let to =
            req.to.ok_or_else(|| TierError::invalid_argument("toTier", "is required: 1|2|3 or 'hot'|'warm'|'cold'"))?;
        let mut report = MigrateReport { to_tier: to.as_str(), dry_run: req.dry_run, ..Default::default() };
        if !req.dry_run {
            self.recover(remotes).await?;
        }
        let explicit = req.frame_ids.is_some();
        let mut frame_ids = req.frame_ids.clone();
        if let Some(ids) = &mut frame_ids {
            if to != Tier::Hot {
                // A closed frame and its closed descendants move together.
                let asked = ids.clone();
                *ids = self.hot.call(move |hot| hot.with_closed_descendants(&asked)).await?;
            }
        }
        // Without explicit ids only frames of the other tiers can move (and warm frames held back,
        // which finish their move to warm): let SQLite skip the rest.
        let tiers = match (explicit, to) {
            (true, _) => None,
            (false, Tier::Hot) => Some(vec![Tier::Warm, Tier::Cold]),
            (false, _) => Some(vec![Tier::Hot, Tier::Warm]),
        };
        let filter = CandidateFilter { project_id: req.project_id.clone(), frame_ids: frame_ids.clone(), tiers };
        let cands = self.hot.call(move |hot| hot.candidates(&filter)).await?;
        if let Some(ids) = &req.frame_ids {
            let found: HashSet<&str> = cands.iter().map(|c| c.frame_id.as_str()).collect();
            for id in ids {
                if !found.contains(id.as_str()) {
                    report.skip(id, "unknown frame");
                }
            }
        }
        let now = now_seconds();
        let mut chosen: Vec<Candidate> = vec![];
        for c in cands {
            let from = Tier::from_level(c.tier).unwrap_or(Tier::Hot);
            // A warm frame held back (body still local) is unfinished: moving it on is allowed.
            let held_warm = from == Tier::Warm && c.body_local;
            if from == to && !(held_warm && to == Tier::Warm) {
                if explicit {
                    report.skip(&c.frame_id, format!("already in the {} tier", to.as_str()));
                }
                continue;
            }
            if to > from || held_warm {
                if c.active {
                    report.skip(&c.frame_id, "active frames are never demoted");
                    continue;
                }
                if c.pinned && !explicit {
                    report.skip(&c.frame_id, "pinned");
                    continue;
                }
            }
            if let Some(ms) = req.older_than_ms {
                let t = c.closed_s.or(c.created_s).unwrap_or(now);
                if (now - t) * 1000 < ms as i64 {
                    if explicit {
                        report.skip(&c.frame_id, "younger than olderThan");
                    }
                    continue;
                }
            }
            chosen.push(c);
            if req.limit.is_some_and(|l| chosen.len() >= l) {
                break;
            }
        }
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
        let mut groups: Vec<((i64, bool), Vec<Candidate>)> = vec![];
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
                let r = if body_local {
                    self.demote_local(&ids, from, to, remotes, &mut report).await
                } else if to == Tier::Hot {
                    self.promote(&ids, from, remotes, &mut report).await
                } else {
                    self.shift_remote(&ids, from, to, remotes, &mut report).await
                };
                if let Err(e) = r {
                    report.fail(&ids, &e);
                }
            }
        }
        report.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        Ok(report)
    }

    /// Frames whose full rows are in SQLite (hot, or warm held back) go to `to`.
    async fn demote_local(
        &self,
        ids: &[String],
        from: Tier,
        to: Tier,
        rm: &Remotes,
        rep: &mut MigrateReport,
    ) -> Result<()> {
        if to == Tier::Hot {
            // A held-back warm frame comes home: its body never left; drop the Redis copy.
            if let Some(w) = &rm.warm {
                let _ = w.delete_many(ids).await;
            }
            let moves: Vec<(i64, String)> = ids.iter().map(|i| (0, i.clone())).collect();
            self.hot.call(move |hot| hot.set_tier(&moves, Tier::Hot, None)).await?;
            for id in ids {
                rep.moved.push(Moved { frame_id: id.clone(), from: from.as_str(), to: "hot" });
            }
            return Ok(());
        }
        let warm = if to == Tier::Warm {
            match &rm.warm {
                Some(w) => Some(w),
                None => {
                    let why = rm.warm_down.clone().unwrap_or_else(|| "the warm tier is not enabled".into());
                    for id in ids {
                        rep.skip(id, format!("deferred: warm tier unreachable ({why})"));
                    }
                    return Ok(());
                }
            }
        } else {
            None
        };
        let cold = match (&rm.cold, to) {
            (Some(c), _) => Some(c),
            (None, Tier::Cold) => {
                let why = rm.cold_down.clone().unwrap_or_else(|| "the cold tier is not enabled".into());
                for id in ids {
                    rep.skip(id, format!("deferred: cold tier unreachable ({why})"));
                }
                return Ok(());
            }
            (None, _) => None,
        };
        // Read and encode off the async threads.
        let ids_v = ids.to_vec();
        let level = self.compression_level;
        let encoded: Vec<(HotRecord, Encoded)> = self
            .hot
            .call(move |hot| {
                let recs = hot.load_many(&ids_v)?;
                let mut out = Vec::with_capacity(recs.len());
                for r in recs {
                    if let Some(b) = &r.bundle {
                        let e = codec::encode(b, level)?;
                        out.push((r, e));
                    }
                }
                Ok(out)
            })
            .await?;
        if encoded.is_empty() {
            return Ok(());
        }
        let entries: Vec<(String, i64, i64, Option<String>, i64)> = encoded
            .iter()
            .map(|(r, e)| (r.meta.frame_id.clone(), from.level(), to.level(), Some(e.checksum.clone()), r.meta.version))
            .collect();
        let move_ids = self.hot.call(move |hot| hot.journal_begin(&entries)).await?;
        let moved_ids: Vec<String> = encoded.iter().map(|(r, _)| r.meta.frame_id.clone()).collect();

        // The archive copy and the Redis copy are independent: write and verify both at once.
        let archive = async {
            if let Some(c) = cold {
                let rows: Vec<_> = encoded
                    .iter()
                    .filter_map(|(r, e)| {
                        r.bundle.as_ref().map(|b| {
                            archive_row(
                                b,
                                e,
                                r.meta.version,
                                to.level() as i16,
                                r.meta.access_count,
                                r.meta.last_accessed.map(to_seconds),
                            )
                        })
                    })
                    .collect();
                c.upsert_many(&rows).await?;
                let sums = c.checksums(&moved_ids).await?;
                for (_, e) in &encoded {
                    if sums.get(&e.frame_id) != Some(&e.checksum) {
                        return Err(TierError::Corrupt {
                            frame_id: e.frame_id.clone(),
                            tier: "cold".into(),
                            message: "archived checksum differs after upsert (a newer version from another machine?)"
                                .into(),
                        });
                    }
                }
            }
            Ok(())
        };
        let cache = async {
            if let Some(w) = warm {
                let items: Vec<WarmItem> = encoded
                    .iter()
                    .map(|(r, e)| WarmItem {
                        frame_id: e.frame_id.clone(),
                        bytes: e.bytes.clone(),
                        created_s: r.stub.get("created_at").and_then(|v| v.as_i64()).map(to_seconds).unwrap_or(0),
                        access_count: r.meta.access_count.max(0) as u64,
                    })
                    .collect();
                w.put_many(&items).await?;
                let back = w.get_many(&moved_ids).await?;
                for ((_, e), got) in encoded.iter().zip(back) {
                    let ok = got.as_deref().map(codec::decode).and_then(|r| r.ok()).map(|(_, s)| s == e.checksum);
                    if ok != Some(true) {
                        return Err(TierError::Corrupt {
                            frame_id: e.frame_id.clone(),
                            tier: "warm".into(),
                            message: "copy missing or checksum mismatch right after writing".into(),
                        });
                    }
                }
            }
            Ok(())
        };
        let copy: Result<()> = tokio::try_join!(archive, cache).map(|_| ());
        if let Err(e) = copy {
            // Source untouched: undo partial copies where we can; recovery retries the rest.
            let undone = self.undo_copies(&moved_ids, warm, cold).await;
            let step = if undone { journal::ROLLED_BACK } else { journal::STARTED };
            let steps: Vec<(i64, &'static str, Option<String>)> =
                move_ids.iter().map(|m| (*m, step, Some(e.to_string()))).collect();
            self.hot.call(move |hot| hot.journal_set(&steps)).await?;
            return Err(e);
        }
        let bytes_before: u64 = encoded.iter().map(|(_, e)| e.raw_size as u64).sum();
        let bytes_after: u64 = encoded.iter().map(|(_, e)| e.bytes.len() as u64).sum();
        if cold.is_some() {
            let steps: Vec<(i64, &'static str, Option<String>)> =
                move_ids.iter().map(|m| (*m, journal::VERIFIED, None)).collect();
            let finish: Vec<(i64, String, i64)> = move_ids
                .iter()
                .zip(&encoded)
                .map(|(m, (r, _))| (*m, r.meta.frame_id.clone(), r.meta.version))
                .collect();
            let done = self
                .hot
                .call(move |hot| {
                    hot.journal_set(&steps)?;
                    hot.finish_demotions(&finish, to)
                })
                .await?;
            let done_set: HashSet<&String> = done.iter().collect();
            for id in &moved_ids {
                if done_set.contains(id) {
                    rep.moved.push(Moved { frame_id: id.clone(), from: from.as_str(), to: to.as_str() });
                } else {
                    rep.skip(id, "changed during the move; left hot");
                }
            }
            if to == Tier::Cold {
                // A held-back frame may have had a Redis copy: the archive now replaces it.
                if let Some(w) = &rm.warm {
                    let _ = w.delete_many(&done).await;
                }
            }
        } else {
            // PostgreSQL disabled or down: warm, but the durable body stays in SQLite.
            let why = match &rm.cold_down {
                Some(w) => format!("cold tier unreachable: {w}"),
                None => "cold tier not enabled".to_string(),
            };
            let moves: Vec<(i64, String)> = move_ids.iter().cloned().zip(moved_ids.iter().cloned()).collect();
            let why2 = why.clone();
            self.hot.call(move |hot| hot.set_tier(&moves, Tier::Warm, Some(&why2))).await?;
            for id in &moved_ids {
                rep.moved.push(Moved { frame_id: id.clone(), from: from.as_str(), to: to.as_str() });
                rep.held_back.push(Skipped { frame_id: id.clone(), reason: format!("body kept in SQLite: {why}") });
            }
        }
        rep.bytes_before += bytes_before;
        rep.bytes_after += bytes_after;
        Ok(())
    }

    async fn undo_copies(&self, ids: &[String], warm: Option<&WarmTier>, cold: Option<&ColdTier>) -> bool {
        let mut ok = true;
        if let Some(w) = warm {
            ok &= w.delete_many(ids).await.is_ok();
        }
        if let Some(c) = cold {
            ok &= c.delete_many(ids).await.is_ok();
        }
        ok
    }

    /// Fetch a stubbed frame's body from Redis (when warm) or PostgreSQL, verified.
    pub async fn fetch_remote(
        &self,
        id: &str,
        tier: Tier,
        rm: &Remotes,
        expected: Option<&str>,
    ) -> Result<(Bundle, String, Tier, bool)> {
        let mut corrupt_warm = false;
        if tier == Tier::Warm {
            if let Some(w) = &rm.warm {
                match w.get(id).await {
                    Ok(Some(bytes)) => match codec::decode_bundle(id, "warm", &bytes) {
                        Ok(b) => {
                            // `decode` verified the body against the header's checksum.
                            let sum = codec::header_checksum(&bytes).unwrap_or_else(|| codec::bundle_checksum(&b));
                            if expected.is_none_or(|x| x == sum) {
                                return Ok((b, sum, Tier::Warm, false));
                            }
                            corrupt_warm = true;
                        }
                        Err(_) => corrupt_warm = true,
                    },
                    // Expired, evicted or flushed: the archive has it.
                    Ok(None) | Err(_) => {}
                }
            }
        }
        let Some(c) = &rm.cold else {
            return Err(TierError::unavailable(
                "postgres",
                rm.cold_down.clone().unwrap_or_else(|| "the cold tier is not enabled".into()),
            ));
        };
        let bytes = c.get(id).await?.ok_or_else(|| TierError::NotFound { frame_id: id.to_string() })?;
        let b = codec::decode_bundle(id, "cold", &bytes)?;
        let sum = codec::header_checksum(&bytes).unwrap_or_else(|| codec::bundle_checksum(&b));
        Ok((b, sum, Tier::Cold, corrupt_warm))
    }

    /// Stubbed frames (warm or cold) come back to SQLite; then their remote copies go.
    async fn promote(&self, ids: &[String], from: Tier, rm: &Remotes, rep: &mut MigrateReport) -> Result<()> {
        // Batched: one metadata read, one Redis MGET and one archive SELECT for the batch, the
        // restores in one blocking call, one delete per remote tier. Per frame, the steps are
        // those of `promote_one` (journal → restore → delete remote copies → done).
        let idv = ids.to_vec();
        let metas = self.hot.call(move |hot| idv.iter().map(|i| hot.meta(i)).collect::<Result<Vec<_>>>()).await?;
        let mut todo: Vec<(String, Option<String>, i64)> = vec![];
        for (id, meta) in ids.iter().zip(metas) {
            match meta {
                None => rep.fail(std::slice::from_ref(id), &TierError::NotFound { frame_id: id.clone() }),
                Some(m) if m.body_local => {
                    rep.moved.push(Moved { frame_id: id.clone(), from: from.as_str(), to: "hot" })
                }
                Some(m) => todo.push((id.clone(), m.checksum, m.version)),
            }
        }
        if todo.is_empty() {
            return Ok(());
        }
        let want: Vec<String> = todo.iter().map(|t| t.0.clone()).collect();
        let mut found: HashMap<String, (Bundle, String)> = HashMap::new();
        if from == Tier::Warm {
            if let Some(w) = &rm.warm {
                if let Ok(got) = w.get_many(&want).await {
                    for ((id, expected, _), bytes) in todo.iter().zip(got) {
                        let Some(bytes) = bytes else { continue };
                        let Ok(b) = codec::decode_bundle(id, "warm", &bytes) else { continue };
                        let sum = codec::header_checksum(&bytes).unwrap_or_else(|| codec::bundle_checksum(&b));
                        if expected.as_deref().is_none_or(|x| x == sum) {
                            found.insert(id.clone(), (b, sum));
                        }
                    }
                }
            }
        }
        let missing: Vec<String> = want.iter().filter(|i| !found.contains_key(*i)).cloned().collect();
        if !missing.is_empty() {
            match &rm.cold {
                Some(c) => match c.get_many(&missing).await {
                    Ok(mut got) => {
                        for id in &missing {
                            let Some(bytes) = got.remove(id) else {
                                rep.fail(std::slice::from_ref(id), &TierError::NotFound { frame_id: id.clone() });
                                continue;
                            };
                            match codec::decode_bundle(id, "cold", &bytes) {
                                Ok(b) => {
                                    let sum =
                                        codec::header_checksum(&bytes).unwrap_or_else(|| codec::bundle_checksum(&b));
                                    found.insert(id.clone(), (b, sum));
                                }
                                Err(e) => rep.fail(std::slice::from_ref(id), &e),
                            }
                        }
                    }
                    Err(e) => {
                        for id in &missing {
                            rep.skip(id, format!("deferred: {e}"));
                        }
                    }
                },
                None => {
                    let why = rm.cold_down.clone().unwrap_or_else(|| "the cold tier is not enabled".into());
                    for id in &missing {
                        rep.skip(id, format!("deferred: cold tier unreachable ({why})"));
                    }
                }
            }
        }
        let batch: Vec<(String, Bundle, String, i64)> = todo
            .into_iter()
            .filter_map(|(id, _, version)| found.remove(&id).map(|(b, sum)| (id, b, sum, version)))
            .collect();
        if batch.is_empty() {
            return Ok(());
        }
        let restored: Vec<(String, i64, u64, std::result::Result<(), TierError>)> = self
            .hot
            .call(move |hot| {
                let entries: Vec<(String, i64, i64, Option<String>, i64)> =
                    batch.iter().map(|(id, _, sum, v)| (id.clone(), from.level(), 1, Some(sum.clone()), *v)).collect();
                let move_ids = hot.journal_begin(&entries)?;
                let items: Vec<(&Bundle, &str, i64, i64)> =
                    batch.iter().zip(&move_ids).map(|((_, b, sum, v), m)| (b, sum.as_str(), *v, *m)).collect();
                let results = hot.restore_many(&items)?;
                Ok(batch
                    .iter()
                    .zip(move_ids)
                    .zip(results)
                    .map(|(((id, b, _, _), m), r)| (id.clone(), m, b.canonical_bytes().len() as u64, r))
                    .collect())
            })
            .await?;
        let mut done_ids = vec![];
        let mut done_moves = vec![];
        for (id, m, size, r) in restored {
            match r {
                Ok(()) => {
                    rep.moved.push(Moved { frame_id: id.clone(), from: from.as_str(), to: "hot" });
                    rep.bytes_after += size;
                    done_ids.push(id);
                    done_moves.push(m);
                }
                Err(e) => rep.fail(std::slice::from_ref(&id), &e),
            }
        }
        // The frames are hot and durable in SQLite; the remote copies are now stale. If a tier
        // is unreachable the journal entries stay open and recovery deletes the copies later.
        let warm_ok = match &rm.warm {
            Some(w) => w.delete_many(&done_ids).await.is_ok(),
            None => false,
        };
        let cold_ok = match &rm.cold {
            Some(c) => c.delete_many(&done_ids).await.is_ok(),
            None => false,
        };
        if warm_ok && cold_ok && !done_moves.is_empty() {
            let steps: Vec<(i64, &'static str, Option<String>)> =
                done_moves.iter().map(|m| (*m, journal::DONE, None)).collect();
            self.hot.call(move |hot| hot.journal_set(&steps)).await?;
        }
        Ok(())
    }

    pub async fn promote_one(&self, id: &str, from: Tier, rm: &Remotes) -> Result<u64> {
        let idc = id.to_string();
        let meta = self
            .hot
            .call(move |hot| hot.meta(&idc))
            .await?
            .ok_or_else(|| TierError::NotFound { frame_id: id.to_string() })?;
        if meta.body_local {
            return Ok(0);
        }
        let (bundle, sum, _, _) = self.fetch_remote(id, from, rm, meta.checksum.as_deref()).await?;
        let size = bundle.canonical_bytes().len() as u64;
        let (idc, sumc, version) = (id.to_string(), sum.clone(), meta.version);
        let move_id = self
            .hot
            .call(move |hot| {
                let m = hot.journal_begin(&[(idc, from.level(), 1, Some(sumc.clone()), version)])?[0];
                hot.restore(&bundle, &sumc, version, m)?;
                Ok(m)
            })
            .await?;
        // The frame is hot and durable in SQLite; the remote copies are now stale.
        let ids = [id.to_string()];
        let warm_ok = match &rm.warm {
            Some(w) => w.delete_many(&ids).await.is_ok(),
            None => false,
        };
        let cold_ok = match &rm.cold {
            Some(c) => c.delete_many(&ids).await.is_ok(),
            None => false,
        };
        if warm_ok && cold_ok {
            self.hot.call(move |hot| hot.journal_set(&[(move_id, journal::DONE, None)])).await?;
        }
        Ok(size)
    }

    /// Warm ↔ cold for stubbed frames: the archive copy stays; only the Redis copy changes.
    async fn shift_remote(
        &self,
        ids: &[String],
        from: Tier,
        to: Tier,
        rm: &Remotes,
        rep: &mut MigrateReport,
    ) -> Result<()> {
        let Some(cold) = &rm.cold else {
            for id in ids {
                rep.skip(
                    id,
                    format!(
                        "deferred: cold tier unreachable ({})",
                        rm.cold_down.clone().unwrap_or_else(|| "not enabled".into())
                    ),
                );
            }
            return Ok(());
        };
        let entries: Vec<(String, i64, i64, Option<String>, i64)> =
            ids.iter().map(|i| (i.clone(), from.level(), to.level(), None, 0)).collect();
        let move_ids = self.hot.call(move |hot| hot.journal_begin(&entries)).await?;
        if to == Tier::Cold {
            if let Some(w) = &rm.warm {
                // Best effort: a Redis copy left behind expires by its TTL and is not served.
                let _ = w.delete_many(ids).await;
            }
            cold.set_tier(ids, 3).await?;
        } else {
            let Some(w) = &rm.warm else {
                let steps: Vec<(i64, &'static str, Option<String>)> =
                    move_ids.iter().map(|m| (*m, journal::ROLLED_BACK, Some("warm tier unreachable".into()))).collect();
                self.hot.call(move |hot| hot.journal_set(&steps)).await?;
                for id in ids {
                    rep.skip(
                        id,
                        format!(
                            "deferred: warm tier unreachable ({})",
                            rm.warm_down.clone().unwrap_or_else(|| "not enabled".into())
                        ),
                    );
                }
                return Ok(());
            };
            let got = cold.get_many(ids).await?;
            let mut items = vec![];
            for id in ids {
                if let Some(bytes) = got.get(id) {
                    items.push(WarmItem {
                        frame_id: id.clone(),
                        bytes: bytes.clone(),
                        created_s: now_seconds(),
                        access_count: 0,
                    });
                }
            }
            w.put_many(&items).await?;
            cold.set_tier(ids, 2).await?;
        }
        let moves: Vec<(i64, String)> = move_ids.into_iter().zip(ids.iter().cloned()).collect();
        self.hot.call(move |hot| hot.set_tier(&moves, to, None)).await?;
        for id in ids {
            rep.moved.push(Moved { frame_id: id.clone(), from: from.as_str(), to: to.as_str() });
        }
        Ok(())
    }

    /// Finish or undo every open journal entry. Entries that need an unreachable tier stay open.
    pub async fn recover(&self, rm: &Remotes) -> Result<RecoveryReport> {
        let open: Vec<JournalEntry> = self.hot.call(move |hot| hot.journal_open()).await?;
        let mut rep = RecoveryReport::default();
        if !open.is_empty() {
            if let Some(c) = &rm.cold {
                // A killed process's last archive write may still be finishing in its backend.
                let _ = c.barrier().await;
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
                    Some(m) if m.body_local && m.version == e.version => {
                        let to = Tier::from_level(e.to_tier).unwrap_or(Tier::Cold);
                        let fin = vec![(e.move_id, e.frame_id.clone(), e.version)];
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
                // Restored to SQLite already; the remote copies are stale.
                if !body_local {
                    (Some(journal::DONE), None)
                } else if self.delete_remote(&ids, rm).await {
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
                let _ = w.delete_many(&ids).await;
            }
        }
        true
    }

    /// Delete a frame's copies from every configured remote tier; false when a tier was unreachable.
    async fn delete_remote(&self, ids: &[String], rm: &Remotes) -> bool {
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

#[cfg(test)]
mod tests {
    //! Recovery of interrupted warm ↔ cold shifts, against the test Redis and PostgreSQL
    //! (`REDIS_TEST_URL`, `TEST_DATABASE_URL`).
    use super::*;
    use crate::model::normalize_bundle;
    use crate::model::EvictionStrategy;
    use crate::tiers::cold::PostgresConfig;
    use crate::tiers::warm::RedisConfig;
    use serde_json::json;

    async fn remotes() -> Remotes {
        let tag = format!("{:08x}", rand::random::<u32>());
        let rc = RedisConfig {
            enabled: true,
            connection_string: Some(
                std::env::var("REDIS_TEST_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            ),
            ttl_secs: 3600,
            max_size: 1 << 30,
            key_prefix: format!("t:mover{tag}:"),
            connect_timeout_ms: 2000,
            eviction_strategy: EvictionStrategy::Lru,
        };
        let pc = PostgresConfig {
            enabled: true,
            connection_string: Some(
                std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
            ),
            compression_level: 3,
            retention_days: 365,
            pool_size: 2,
            connect_timeout_ms: 3000,
            schema: format!("t_mover_{tag}"),
        };
        let warm = WarmTier::connect(&rc).await.expect("connect to the test Redis");
        let cold = ColdTier::connect(&pc).await.expect("connect to the test PostgreSQL");
        Remotes { warm: Some(warm), cold: Some(cold), warm_down: None, cold_down: None }
    }

    fn bundle(id: &str) -> Bundle {
        normalize_bundle(json!({"frame": {"frame_id": id, "run_id": "r", "project_id": "p", "type": "task",
            "name": format!("frame {id}"), "state": "closed", "created_at": 1_700_000_000, "closed_at": 1_700_000_100},
            "events": [{"event_id": format!("{id}-e"), "seq": 1, "event_type": "x", "payload": {"t": "hello"}}]}))
        .expect("valid")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn interrupted_warm_cold_shifts_are_realigned_with_sqlite() {
        let dir = tempfile::tempdir().expect("tmp");
        let hot = Arc::new(HotTier::open(&dir.path().join("c.db")).expect("open"));
        hot.store_many(&[bundle("a"), bundle("b")], 1 << 20).expect("store");
        let mover = Mover::new(hot.clone(), 3, 100);
        let rm = remotes().await;
        let (warm, cold) = (rm.warm.clone().expect("warm"), rm.cold.clone().expect("cold"));
        let req = |to: Tier, id: &str| MigrateRequest {
            to: Some(to),
            frame_ids: Some(vec![id.to_string()]),
            ..Default::default()
        };
        assert_eq!(mover.migrate(&req(Tier::Warm, "a"), &rm).await.expect("warm").moved.len(), 1);
        assert_eq!(mover.migrate(&req(Tier::Cold, "b"), &rm).await.expect("cold").moved.len(), 1);

        // A warm → cold shift of "a" killed after the archive's tier column and the Redis delete,
        // before SQLite committed.
        let ids_a = ["a".to_string()];
        let ids_b = ["b".to_string()];
        hot.journal_begin(&[("a".into(), 2, 3, None, 0)]).expect("journal");
        warm.delete_many(&ids_a).await.expect("del");
        cold.set_tier(&ids_a, 3).await.expect("tier");
        let rep = mover.recover(&rm).await.expect("recover");
        assert_eq!((rep.rolled_back, rep.pending), (1, 0));
        assert_eq!(hot.meta("a").expect("meta").expect("a").tier, 2);
        let st = cold.stats().await.expect("stats");
        assert_eq!((st.warm_frames, st.cold_frames), (1, 1), "the archive's tier column follows SQLite");

        // A cold → warm shift of "b" killed after the Redis put and the archive's update.
        hot.journal_begin(&[("b".into(), 3, 2, None, 0)]).expect("journal");
        let bytes = cold.get("b").await.expect("get").expect("archived");
        warm.put_many(&[WarmItem { frame_id: "b".into(), bytes, created_s: 0, access_count: 0 }]).await.expect("put");
        cold.set_tier(&ids_b, 2).await.expect("tier");
        let rep = mover.recover(&rm).await.expect("recover");
        assert_eq!((rep.rolled_back, rep.pending), (1, 0));
        assert_eq!(hot.meta("b").expect("meta").expect("b").tier, 3);
        let st = cold.stats().await.expect("stats");
        assert_eq!((st.warm_frames, st.cold_frames), (1, 1), "the archive's tier column follows SQLite");
        assert!(warm.get("b").await.expect("get").is_none(), "a cold frame keeps no Redis copy");
        // Both still read back whole.
        for id in ["a", "b"] {
            let tier = Tier::from_level(hot.meta(id).expect("m").expect("some").tier).expect("tier");
            let (b, _, _, _) = mover.fetch_remote(id, tier, &rm, None).await.expect("fetch");
            assert_eq!(b.to_value(), bundle(id).to_value());
        }

        // With the archive unreachable the entry stays open rather than being closed unaligned.
        hot.journal_begin(&[("a".into(), 2, 3, None, 0)]).expect("journal");
        cold.set_tier(&ids_a, 3).await.expect("tier");
        let down = Remotes { warm: rm.warm.clone(), cold: None, warm_down: None, cold_down: Some("down".into()) };
        assert_eq!(mover.recover(&down).await.expect("recover").pending, 1);
        assert_eq!(mover.recover(&rm).await.expect("recover").rolled_back, 1);
        assert_eq!(cold.stats().await.expect("stats").warm_frames, 1);

        let _ = warm.flush_prefix().await;
        let _ = cold.drop_schema().await;
    }
}
