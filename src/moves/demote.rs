//! Bodies kept in SQLite leave it: encode once, archive in PostgreSQL and copy to Redis at once,
//! verify both, then shrink the rows to stubs in the transaction that closes the journal entry.

use std::collections::HashSet;

use super::dictionaries::{EncodedSizes, Sample};
use super::report::{MigrateReport, Moved, Skipped};
use super::{Hop, Mover, Remotes};
use crate::model::codec::{self, Encoded};
use crate::model::units::to_seconds;
use crate::model::{Result, Tier, TierError};
use crate::tiers::cold::{archive_row, ColdTier};
use crate::tiers::hot::journal;
use crate::tiers::hot::{Demotion, HotRecord, NewMove};
use crate::tiers::warm::{WarmItem, WarmTier};

impl Mover {
    /// Frames whose full rows are in SQLite (hot, or warm held back) go to `to`.
    pub(super) async fn demote_local(&self, hop: &Hop<'_>, rm: &Remotes, rep: &mut MigrateReport) -> Result<()> {
        let Hop { ids, from, to, run } = *hop;
        if to == Tier::Hot {
            // A held-back warm frame comes home: its body never left; drop the Redis copy.
            if let Some(w) = &rm.warm {
                crate::obs::log_err("dropping a held-back frame's Redis copy", w.delete_many(ids).await);
            }
            let moves: Vec<(i64, String)> = ids.iter().map(|i| (0, i.clone())).collect();
            self.hot.call(move |hot| hot.set_tier(&moves, Tier::Hot, None)).await?;
            for id in ids {
                rep.moved.push(Moved { frame_id: id.clone(), from: from.as_str(), to: "hot" });
            }
            return Ok(());
        }
        // Warm needs Redis; cold needs PostgreSQL. Without PostgreSQL a warm copy is made and the
        // body stays in SQLite (held back): Redis is never the last copy.
        let warm = if to == Tier::Warm { rm.warm.as_ref() } else { None };
        if to == Tier::Warm && warm.is_none() {
            rep.defer(ids, Tier::Warm, &rm.down(Tier::Warm));
            return Ok(());
        }
        let cold = rm.cold.as_ref();
        if to == Tier::Cold && cold.is_none() {
            rep.defer(ids, Tier::Cold, &rm.down(Tier::Cold));
            return Ok(());
        }
        // Read and encode off the async threads, each frame with its project's dictionary when it
        // has one; frames of projects gathering a sample for one (or new to it) are kept as that sample.
        let ids_v = ids.to_vec();
        let level = self.compression_level;
        let (dicts, settled) = self.dicts.snapshot();
        let dicts_on = self.dicts.cfg.enabled;
        let (encoded, sizes, sample): (Vec<(HotRecord, Encoded)>, EncodedSizes, Sample) = self
            .hot
            .call(move |hot| {
                let recs = hot.load_many(&ids_v)?;
                let (mut out, mut sizes, mut sample) = (Vec::with_capacity(recs.len()), vec![], vec![]);
                for r in recs {
                    if let Some(b) = &r.bundle {
                        let project = b.frame.get("project_id").and_then(|v| v.as_str()).unwrap_or("");
                        let dict = dicts.get(project);
                        let e = codec::encode_maybe_with(b, level, dict.map(|d| &**d))?;
                        if dicts_on {
                            sizes.push((project.to_string(), e.raw_size, e.bytes.len(), dict.is_some()));
                            if !settled.contains(project) {
                                sample.push((project.to_string(), b.canonical_bytes()));
                            }
                        }
                        out.push((r, e));
                    }
                }
                Ok((out, sizes, sample))
            })
            .await?;
        if encoded.is_empty() {
            return Ok(());
        }
        if dicts_on {
            let ready = self.dicts.observe(&sizes, sample);
            if !ready.is_empty() {
                self.train_ready(ready, rm).await;
            }
        }
        let entries: Vec<NewMove> = encoded
            .iter()
            .map(|(r, e)| NewMove {
                frame_id: r.meta.frame_id.clone(),
                from: from.level(),
                to: to.level(),
                checksum: Some(e.checksum.clone()),
                version: r.meta.version,
                change_seq: r.meta.change_seq,
                run_id: run.map(str::to_string),
            })
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
                        version: r.meta.version,
                    })
                    .collect();
                let put = w.put_many(&items).await?;
                let back = w.get_many(&moved_ids).await?;
                for ((_, e), got) in encoded.iter().zip(back) {
                    // Evicted by the cap (maybe by this very put) or too large for it: the
                    // durable copy (archive or SQLite) serves, as for any missing Redis copy.
                    if got.is_none() && put.dropped(&e.frame_id) {
                        continue;
                    }
                    let ok = got.as_deref().map(codec::decode).and_then(|r| r.ok()).map(|(_, s)| s == e.checksum);
                    if ok != Some(true) {
                        let message = if put.kept_newer.contains(&e.frame_id) {
                            "Redis holds a newer version of this frame (another machine wrote it)"
                        } else {
                            "copy missing or checksum mismatch right after writing"
                        };
                        return Err(TierError::Corrupt {
                            frame_id: e.frame_id.clone(),
                            tier: "warm".into(),
                            message: message.into(),
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
            let (note, ids) = (e.to_string(), move_ids.clone());
            self.hot.call(move |hot| hot.journal_mark(&ids, step, Some(&note))).await?;
            return Err(e);
        }
        let bytes_before: u64 = encoded.iter().map(|(_, e)| e.raw_size as u64).sum();
        let bytes_after: u64 = encoded.iter().map(|(_, e)| e.bytes.len() as u64).sum();
        if cold.is_some() {
            let verified = move_ids.clone();
            let finish: Vec<Demotion> = move_ids
                .iter()
                .zip(&encoded)
                .map(|(m, (r, e))| Demotion {
                    move_id: *m,
                    frame_id: r.meta.frame_id.clone(),
                    version: r.meta.version,
                    change_seq: r.meta.change_seq,
                    checksum: Some(e.checksum.clone()),
                    size_bytes: Some(e.raw_size as i64),
                })
                .collect();
            let done = self
                .hot
                .call(move |hot| {
                    hot.journal_mark(&verified, journal::VERIFIED, None)?;
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
                    crate::obs::log_err("dropping archived frames' Redis copies", w.delete_many(&done).await);
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
}
