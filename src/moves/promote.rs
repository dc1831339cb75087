//! Bodies come back to SQLite: fetched from Redis (when warm) or PostgreSQL, verified, restored in
//! the transaction of their journal step; then the remote copies go.

use std::collections::HashMap;

use super::report::{MigrateReport, Moved};
use super::{Mover, Remotes};
use crate::model::codec;
use crate::model::{Bundle, Result, Tier, TierError};
use crate::tiers::hot::journal;

impl Mover {
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
                // Expired, evicted, flushed or unreachable (`Ok(None)`, `Err`): the archive has it.
                if let Ok(Some(bytes)) = w.get(id).await {
                    match codec::decode_bundle(id, "warm", &bytes) {
                        Ok(b) => {
                            // `decode` verified the body against the header's checksum.
                            let sum = codec::header_checksum(&bytes).unwrap_or_else(|| codec::bundle_checksum(&b));
                            if expected.is_none_or(|x| x == sum) {
                                return Ok((b, sum, Tier::Warm, false));
                            }
                            corrupt_warm = true;
                        }
                        Err(_) => corrupt_warm = true,
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
        let b = codec::decode_bundle(id, "cold", &bytes)?;
        let sum = codec::header_checksum(&bytes).unwrap_or_else(|| codec::bundle_checksum(&b));
        Ok((b, sum, Tier::Cold, corrupt_warm))
    }

    /// Stubbed frames (warm or cold) come back to SQLite; then their remote copies go.
    pub(super) async fn promote(
        &self,
        ids: &[String],
        from: Tier,
        rm: &Remotes,
        rep: &mut MigrateReport,
    ) -> Result<()> {
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
}
