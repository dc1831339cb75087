//! Bodies come back to SQLite: fetched from Redis (when warm) or PostgreSQL, verified, restored in
//! the transaction of their journal step; then the remote copies go.

use std::collections::HashMap;

use super::report::{MigrateReport, Moved};
use super::{Hop, Mover, Remotes};
use crate::model::codec;
use crate::model::{Bundle, Result, Tier, TierError};
use crate::tiers::hot::{journal, NewMove, Restore};

impl Mover {
    /// A stub's body from `tier` (the archive when the Redis copy is missing, unreadable or not
    /// the `expected` checksum): the bundle, its checksum, the tier that served it, and whether a
    /// Redis copy was found corrupt.
    pub async fn fetch_remote(
        &self,
        id: &str,
        tier: Tier,
        rm: &Remotes,
        expected: Option<&str>,
    ) -> Result<(Bundle, String, Tier, bool)> {
        self.fetch_remote_as(id, tier, rm, expected, |t, raw| codec::bundle_from_raw(id, t, &raw)).await
    }

    /// `fetch_remote`'s verified JSON bytes, not parsed (a read that returns them as they are).
    pub async fn fetch_remote_raw(
        &self,
        id: &str,
        tier: Tier,
        rm: &Remotes,
        expected: Option<&str>,
    ) -> Result<(Vec<u8>, String, Tier, bool)> {
        self.fetch_remote_as(id, tier, rm, expected, |_, raw| Ok(raw)).await
    }

    async fn fetch_remote_as<T>(
        &self,
        id: &str,
        tier: Tier,
        rm: &Remotes,
        expected: Option<&str>,
        read: impl Fn(&str, Vec<u8>) -> Result<T>,
    ) -> Result<(T, String, Tier, bool)> {
        let mut corrupt_warm = false;
        if tier == Tier::Warm {
            if let Some(w) = &rm.warm {
                // Expired, evicted, flushed or unreachable (`Ok(None)`, `Err`): the archive has it.
                if let Ok(Some(bytes)) = w.get(id).await {
                    self.ensure_dictionaries(std::iter::once(&bytes[..]), rm).await;
                    // `decode` verifies the body against the header's checksum.
                    match codec::decode(&bytes) {
                        Ok((raw, sum)) if expected.is_none_or(|x| x == sum) => match read("warm", raw) {
                            Ok(v) => return Ok((v, sum, Tier::Warm, false)),
                            Err(_) => corrupt_warm = true,
                        },
                        _ => corrupt_warm = true,
                    }
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
        self.ensure_dictionaries(std::iter::once(&bytes[..]), rm).await;
        let (raw, sum) = codec::decode(&bytes).map_err(|message| TierError::Corrupt {
            frame_id: id.to_string(),
            tier: "cold".into(),
            message,
        })?;
        Ok((read("cold", raw)?, sum, Tier::Cold, corrupt_warm))
    }

    /// Stubbed frames (warm or cold) come back to SQLite; then their remote copies go. Batched:
    /// one metadata read, one Redis MGET and one archive SELECT for the batch, then
    /// `restore_fetched`.
    pub(super) async fn promote(&self, hop: &Hop<'_>, rm: &Remotes, rep: &mut MigrateReport) -> Result<()> {
        let Hop { ids, from, run, .. } = *hop;
        let idv = ids.to_vec();
        let metas = self.hot.call(move |hot| hot.meta_many(&idv)).await?;
        let mut todo: Vec<(String, Option<String>, i64)> = vec![];
        for (id, meta) in ids.iter().zip(metas) {
            match meta {
                None => rep.fail(std::slice::from_ref(id), &TierError::NotFound { frame_id: id.clone() }),
                Some(m) if m.body_local => rep.moved.push(Moved::new(id, from, Tier::Hot)),
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
                    self.ensure_dictionaries(got.iter().flatten().map(|b| &b[..]), rm).await;
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
                        self.ensure_dictionaries(got.values().map(|b| &b[..]), rm).await;
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
                None => rep.defer(&missing, Tier::Cold, &rm.down(Tier::Cold)),
            }
        }
        let batch: Vec<Fetched> = todo
            .into_iter()
            .filter_map(|(id, _, version)| found.remove(&id).map(|(bundle, sum)| Fetched { id, bundle, sum, version }))
            .collect();
        self.restore_fetched(batch, from, run, rm, rep).await
    }

    /// One frame whose body the caller already fetched (and verified) comes back hot: the read path's
    /// promotion, without reading the remote copy twice. Returns the restored size.
    /// If the frame moved since it was fetched (another promotion, a new version), the fetched body
    /// is stale: nothing is restored from it.
    pub async fn promote_fetched(&self, f: Fetched, from: Tier, rm: &Remotes) -> Result<u64> {
        let _moving = self.lock_moves_within(std::time::Duration::from_millis(250)).await?;
        let id = f.id.clone();
        let meta = self.hot.call(move |hot| hot.meta(&id)).await?;
        match meta {
            None => return Err(TierError::NotFound { frame_id: f.id }),
            Some(m) if m.body_local || m.version != f.version => return Ok(0),
            Some(_) => {}
        }
        let mut rep = MigrateReport::default();
        self.restore_fetched(vec![f], from, None, rm, &mut rep).await?;
        match rep.failed.pop() {
            Some(failed) => Err(TierError::storage("promotion", format!("{}: {}", failed.code, failed.error))),
            None => Ok(rep.bytes_after),
        }
    }

    /// Journal → restore (the rows and the journal's `verified` in one transaction, 100 frames per
    /// transaction) → delete the remote copies → `done`. If a tier is unreachable the entries stay
    /// `verified` and recovery deletes the stale copies later.
    async fn restore_fetched(
        &self,
        batch: Vec<Fetched>,
        from: Tier,
        run: Option<&str>,
        rm: &Remotes,
        rep: &mut MigrateReport,
    ) -> Result<()> {
        let run = run.map(str::to_string);
        if batch.is_empty() {
            return Ok(());
        }
        let restored: Vec<(String, i64, Result<i64>)> = self
            .hot
            .call(move |hot| {
                let entries: Vec<NewMove> = batch
                    .iter()
                    .map(|f| NewMove {
                        frame_id: f.id.clone(),
                        from: from.level(),
                        to: Tier::Hot.level(),
                        checksum: Some(f.sum.clone()),
                        version: f.version,
                        change_seq: 0,
                        run_id: run.clone(),
                    })
                    .collect();
                let move_ids = hot.journal_begin(&entries)?;
                let items: Vec<Restore<'_>> = batch
                    .iter()
                    .zip(&move_ids)
                    .map(|(f, m)| Restore { bundle: &f.bundle, checksum: &f.sum, version: f.version, move_id: *m })
                    .collect();
                let results = hot.restore_many(&items)?;
                Ok(batch.iter().zip(move_ids).zip(results).map(|((f, m), r)| (f.id.clone(), m, r)).collect())
            })
            .await?;
        let mut done_ids = vec![];
        let mut done_moves = vec![];
        for (id, m, r) in restored {
            match r {
                Ok(size) => {
                    rep.moved.push(Moved::new(&id, from, Tier::Hot));
                    rep.bytes_after += size.max(0) as u64;
                    done_ids.push(id);
                    done_moves.push(m);
                }
                Err(e) => rep.fail(std::slice::from_ref(&id), &e),
            }
        }
        if !done_moves.is_empty() && self.delete_remote(&done_ids, rm).await {
            self.hot.call(move |hot| hot.journal_mark(&done_moves, journal::DONE, None)).await?;
        }
        Ok(())
    }
}

/// A body fetched from a remote tier and verified, ready to be restored.
pub struct Fetched {
    pub id: String,
    pub bundle: Bundle,
    pub sum: String,
    pub version: i64,
}
