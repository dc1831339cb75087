//! Re-encoding archived envelopes with their project's current dictionary: the `reencode` step of
//! `compact`. Frames archived before their project's dictionary existed (the sample it was
//! trained on, and everything before) stay plain zstd, and frames made with a dictionary that
//! drift has replaced keep the old one; this rewrites them with the current one.
//!
//! Online, without the move lock: each page is read, decoded, re-encoded off the async threads,
//! and written back with one `UPDATE` that replaces a payload only while the row still holds the
//! frame with the same checksum (the checksum is over the frame's JSON, which a re-encode does not
//! change). A frame written, moved or deleted meanwhile keeps what it has, and counts as
//! `changed`. An envelope is replaced only when the new one is smaller. Idempotent: a second run
//! rewrites nothing, and an interrupted one resumes by running again.

use std::sync::Arc;

use serde::Serialize;

use super::{Mover, Remotes};
use crate::model::codec::{self, Dictionary};
use crate::model::{Result, TierError};
use crate::tiers::cold::StaleEnvelope;

/// Rows read and rewritten per round trip.
const PAGE: usize = 200;

/// What a re-encode did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReencodeReport {
    /// Archived envelopes not made with their project's current dictionary, looked at.
    pub scanned: u64,
    /// Replaced with a smaller envelope made with the current dictionary.
    pub rewritten: u64,
    /// Left as they are: the new envelope was not smaller.
    pub not_smaller: u64,
    /// Left as they are: the row changed meanwhile (rewritten, moved or deleted).
    pub changed: u64,
    /// Left as they are: the envelope could not be decoded, or its checksum is not the row's
    /// (`verify` reports such rows).
    pub undecodable: u64,
    /// Envelope bytes of the rewritten rows, before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Projects walked (those with a current dictionary).
    pub projects: Vec<String>,
    /// Stopped at `limit` rows rewritten; run again for the rest.
    pub truncated: bool,
}

impl Mover {
    /// Re-encodes the archive's stale envelopes of `project` (all projects with a current
    /// dictionary when `None`), at most `limit` rewritten.
    pub async fn reencode(&self, rm: &Remotes, project: Option<&str>, limit: u64) -> Result<ReencodeReport> {
        let Some(cold) = &rm.cold else {
            return Err(TierError::unavailable("postgres", rm.down(crate::model::Tier::Cold)));
        };
        let mut current: Vec<(String, Arc<Dictionary>)> =
            self.dicts.snapshot().0.into_iter().filter(|(p, _)| project.is_none_or(|want| want == p)).collect();
        current.sort_by(|a, b| a.0.cmp(&b.0));
        let mut rep =
            ReencodeReport { projects: current.iter().map(|(p, _)| p.clone()).collect(), ..Default::default() };
        let level = self.compression_level;
        for (project, dict) in current {
            let mut after = String::new();
            loop {
                if rep.rewritten >= limit {
                    rep.truncated = true;
                    return Ok(rep);
                }
                let page = cold.stale_envelopes(&project, dict.id, &after, PAGE).await?;
                let Some(last) = page.last() else { break };
                after = last.frame_id.clone();
                rep.scanned += page.len() as u64;
                // Envelopes made with an older dictionary need it to decode.
                self.ensure_dictionaries(page.iter().map(|e| &e.payload[..]), rm).await;
                let d = dict.clone();
                let recoded = tokio::task::spawn_blocking(move || recode(page, &d, level))
                    .await
                    .map_err(|e| TierError::storage("re-encoding envelopes", e))?;
                let mut rows = vec![];
                let mut sizes = std::collections::HashMap::new();
                for r in recoded {
                    match r {
                        Recoded::Smaller { frame_id, checksum, before, bytes } => {
                            sizes.insert(frame_id.clone(), (before, bytes.len() as u64));
                            rows.push((frame_id, checksum, bytes));
                        }
                        Recoded::NotSmaller => rep.not_smaller += 1,
                        Recoded::Undecodable { frame_id, why } => {
                            tracing::warn!(frame_id = %frame_id, why = %why, "an archived envelope could not be re-encoded");
                            rep.undecodable += 1;
                        }
                    }
                }
                // Never past the limit: the last page may be cut (and the run then stops after it).
                let room = (limit - rep.rewritten).min(rows.len() as u64) as usize;
                let cut = room < rows.len();
                rows.truncate(room);
                let asked = rows.len() as u64;
                let done = cold.replace_payloads(&rows).await?;
                for id in &done {
                    if let Some((b, a)) = sizes.get(id) {
                        rep.bytes_before += b;
                        rep.bytes_after += a;
                    }
                }
                rep.rewritten += done.len() as u64;
                rep.changed += asked - done.len() as u64;
                if cut {
                    rep.truncated = true;
                    return Ok(rep);
                }
            }
        }
        Ok(rep)
    }
}

enum Recoded {
    Smaller { frame_id: String, checksum: String, before: u64, bytes: Vec<u8> },
    NotSmaller,
    Undecodable { frame_id: String, why: String },
}

/// Each envelope decoded (checked against its row's checksum) and encoded with `dict`.
fn recode(page: Vec<StaleEnvelope>, dict: &Dictionary, level: i32) -> Vec<Recoded> {
    page.into_iter()
        .map(|e| {
            let (raw, sum) = match codec::decode_with(&e.payload, &codec::registered) {
                Ok(v) => v,
                Err(why) => return Recoded::Undecodable { frame_id: e.frame_id, why },
            };
            if sum != e.checksum {
                return Recoded::Undecodable {
                    frame_id: e.frame_id,
                    why: format!("checksum {sum} is not the row's {}", e.checksum),
                };
            }
            match codec::encode_raw_with(e.frame_id.clone(), &raw, level, dict) {
                Ok(enc) if enc.bytes.len() < e.payload.len() => Recoded::Smaller {
                    frame_id: e.frame_id,
                    checksum: e.checksum,
                    before: e.payload.len() as u64,
                    bytes: enc.bytes,
                },
                Ok(_) => Recoded::NotSmaller,
                Err(err) => Recoded::Undecodable { frame_id: e.frame_id, why: err.to_string() },
            }
        })
        .collect()
}
