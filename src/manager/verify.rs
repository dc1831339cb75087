//! `verify()`: every frame's copies in Redis and PostgreSQL checked against its bookkeeping in
//! `tier_metadata`, in bounded batches, online; with `repair`, what can be fixed is fixed from a
//! copy that verifies.
//!
//! What each state expects (the mover's invariant, `moves/mod.rs`):
//! - hot: no copy elsewhere (a Redis copy is an orphan; so is an archive row, but that one is only
//!   reported: the archive may be shared with other machines, and only retention deletes from it);
//! - warm: a Redis copy and an archive row, both with the recorded checksum; a warm frame held back
//!   (PostgreSQL was down) has its body in SQLite and a Redis copy of that body;
//! - cold: an archive row with the recorded checksum, no Redis copy.
//!
//! A Redis copy that expired by its TTL or was evicted by the cap is reported `missing` like any
//! other; repair copies it back from the archive.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;

use super::TierManager;
use crate::model::codec::{self, Encoded};
use crate::model::frame::Bundle;
use crate::model::units::{now_millis, to_seconds};
use crate::model::values::{Fields, Kind};
use crate::model::{Result, Tier};
use crate::moves::Remotes;
use crate::tiers::cold::{archive_row, ColdTier};
use crate::tiers::hot::FrameMeta;
use crate::tiers::warm::{WarmItem, WarmTier};

/// `verify({ projectId?, sample?, repair?, batchSize? })`.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyRequest {
    pub project_id: Option<String>,
    /// The share of frames checked, 0 < sample ≤ 1 (each frame independently); 1 checks all.
    pub sample: f64,
    pub repair: bool,
    /// Frames read per batch (bounds memory and the time any lock is held).
    pub batch_size: usize,
}

impl VerifyRequest {
    pub fn from_json(v: Option<&Value>) -> Result<VerifyRequest> {
        let o = Fields::root(v.unwrap_or(&Value::Null), "options", Kind::Argument)?;
        o.known(&["projectId", "sample", "repair", "batchSize"])?;
        let sample = o.frac("sample", 1.0)?;
        if sample <= 0.0 {
            return Err(o.fail("sample", "must be more than 0 (the share of frames checked)"));
        }
        Ok(VerifyRequest {
            project_id: o.opt_string("projectId")?,
            sample,
            repair: o.boolean("repair", false)?,
            batch_size: o.int("batchSize", 500, 1, 10_000)? as usize,
        })
    }
}

/// One copy that is not what the bookkeeping says.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub frame_id: String,
    /// `warm` or `cold`.
    pub tier: &'static str,
    /// `missing`, `stale` (a valid copy of another body), `corrupt` (does not decode or verify) or
    /// `orphan` (a copy where the frame's tier says there should be none).
    pub kind: &'static str,
    pub detail: String,
    pub repaired: bool,
    /// Why a repair was not made (only with `repair`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_repaired: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// Frames whose copies were checked.
    pub checked: usize,
    /// No finding and every needed tier reachable.
    pub clean: bool,
    pub findings: Vec<Finding>,
    pub repaired: usize,
    pub unrepaired: usize,
    /// Tiers that could not be checked, and why (their copies are then not verified).
    pub unavailable: Vec<String>,
    pub duration_ms: u64,
}

/// What one frame's copies were found to be.
struct Copies {
    warm: Option<Vec<u8>>,
    cold: Option<Vec<u8>>,
}

/// A copy's state against the recorded checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CopyState {
    Absent,
    Good,
    Stale,
    Corrupt,
}

fn state_of(bytes: Option<&[u8]>, frame_id: &str, want: Option<&str>) -> (CopyState, String) {
    let Some(bytes) = bytes else { return (CopyState::Absent, String::new()) };
    match codec::decode(bytes) {
        Err(e) => (CopyState::Corrupt, e),
        Ok((raw, sum)) => {
            // The envelope verifies; it must also hold this frame.
            let holds = serde_json::from_slice::<Value>(&raw)
                .ok()
                .and_then(|v| v.pointer("/frame/frame_id").and_then(Value::as_str).map(|s| s == frame_id));
            if holds != Some(true) {
                return (CopyState::Corrupt, "holds another frame, or no frame".into());
            }
            match want {
                Some(w) if w != sum => (CopyState::Stale, format!("checksum {sum}, recorded {w}")),
                _ => (CopyState::Good, String::new()),
            }
        }
    }
}

fn kind_of(s: CopyState) -> &'static str {
    match s {
        CopyState::Absent => "missing",
        CopyState::Stale => "stale",
        CopyState::Corrupt => "corrupt",
        CopyState::Good => "ok",
    }
}

impl TierManager {
    pub async fn verify(&self, req: VerifyRequest) -> Result<VerifyReport> {
        self.check_open()?;
        let t0 = std::time::Instant::now();
        let rm = self.remotes().await;
        // Journaled work first, as `migrate` and `compact` do: the copies a discard is about to
        // remove (a frame StackMemory re-stored while it was archived, a delete) would otherwise be
        // reported as orphans until the next move. Failing that, verify still reports what it sees.
        match self.inner.mover.lock_moves().await {
            Ok(_moving) => {
                crate::obs::log_err("finishing journaled work before verify", self.inner.mover.recover(&rm).await)
            }
            Err(e) => crate::obs::log_err::<()>("finishing journaled work before verify", Err(e)),
        }
        let mut rep = VerifyReport::default();
        if self.inner.config.redis.enabled && rm.warm.is_none() {
            rep.unavailable.push(format!("warm: {}", rm.down(Tier::Warm)));
        }
        if self.inner.config.postgres.enabled && rm.cold.is_none() {
            rep.unavailable.push(format!("cold: {}", rm.down(Tier::Cold)));
        }
        let seed = now_millis() as u64;
        let mut after: Option<String> = None;
        loop {
            let (project, from, limit) = (req.project_id.clone(), after.clone(), req.batch_size);
            let page =
                self.inner.hot.call(move |hot| hot.meta_page(project.as_deref(), from.as_deref(), limit)).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.frame_id.clone());
            let metas: Vec<FrameMeta> = page.into_iter().filter(|m| sampled(&m.frame_id, req.sample, seed)).collect();
            rep.checked += metas.len();
            self.verify_batch(&metas, &rm, &req, &mut rep).await?;
        }
        rep.repaired = rep.findings.iter().filter(|f| f.repaired).count();
        rep.unrepaired = rep.findings.len() - rep.repaired;
        rep.clean = rep.findings.is_empty() && rep.unavailable.is_empty();
        rep.duration_ms = t0.elapsed().as_millis() as u64;
        Ok(rep)
    }

    async fn verify_batch(
        &self,
        metas: &[FrameMeta],
        rm: &Remotes,
        req: &VerifyRequest,
        rep: &mut VerifyReport,
    ) -> Result<()> {
        if metas.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = metas.iter().map(|m| m.frame_id.clone()).collect();
        // A hot frame's archive row (and Redis copy) that another machine sharing these servers
        // still reads is that machine's copy, not an orphan of ours. The archive is read first,
        // each row with its holds in one snapshot; Redis after it.
        let (mut cold_got, mut others) = match &rm.cold {
            Some(c) => {
                let got = c.get_many_held(&ids).await?;
                let hot: HashSet<&str> = metas.iter().filter(|m| m.body_local).map(|m| m.frame_id.as_str()).collect();
                let others: HashSet<String> = got
                    .iter()
                    .filter(|(id, (_, held))| *held && hot.contains(id.as_str()))
                    .map(|(id, _)| id.clone())
                    .collect();
                (Some(got.into_iter().map(|(id, (p, _))| (id, p)).collect::<HashMap<_, _>>()), others)
            }
            None => (None, HashSet::new()),
        };
        let warm_got = match &rm.warm {
            Some(w) => Some(w.get_many(&ids).await?),
            None => None,
        };
        // Another machine that archived one of our hot frames after that read and copied it to
        // Redis holds its row now: its Redis copy is not ours either.
        if let (Some(c), Some(wg)) = (&rm.cold, &warm_got) {
            let late: Vec<String> = metas
                .iter()
                .enumerate()
                .filter(|(i, m)| {
                    m.body_local
                        && m.tier == Tier::Hot.level()
                        && !others.contains(&m.frame_id)
                        && wg.get(*i).is_some_and(|g| g.is_some())
                })
                .map(|(_, m)| m.frame_id.clone())
                .collect();
            others.extend(c.held_elsewhere(&late).await?);
        }
        let envelopes = cold_got.iter().flat_map(|g| g.values()).chain(warm_got.iter().flatten().flatten());
        self.inner.mover.ensure_dictionaries(envelopes.map(|b| &b[..]), rm).await;
        // Held-back warm frames: their Redis copy is of the body in SQLite, as it is now.
        let held: Vec<String> =
            metas.iter().filter(|m| m.body_local && m.tier == Tier::Warm.level()).map(|m| m.frame_id.clone()).collect();
        let local: HashMap<String, Bundle> = if held.is_empty() {
            HashMap::new()
        } else {
            let recs = self.inner.hot.call(move |hot| hot.load_many(&held)).await?;
            recs.into_iter().filter_map(|r| r.bundle.map(|b| (r.meta.frame_id, b))).collect()
        };
        for (i, m) in metas.iter().enumerate() {
            let copies = if others.contains(&m.frame_id) {
                Copies { warm: None, cold: None }
            } else {
                Copies {
                    warm: warm_got.as_ref().and_then(|g| g.get(i).cloned().flatten()),
                    cold: cold_got.as_mut().and_then(|g| g.remove(&m.frame_id)),
                }
            };
            let local_sum = local.get(&m.frame_id).map(codec::bundle_checksum);
            let found = self.verify_frame(m, &copies, local.get(&m.frame_id), local_sum.as_deref(), rm, req).await;
            rep.findings.extend(found);
        }
        Ok(())
    }

    /// The findings for one frame (repaired where asked and possible).
    async fn verify_frame(
        &self,
        m: &FrameMeta,
        copies: &Copies,
        local: Option<&Bundle>,
        local_sum: Option<&str>,
        rm: &Remotes,
        req: &VerifyRequest,
    ) -> Vec<Finding> {
        let mut out = vec![];
        let id = m.frame_id.as_str();
        let recorded = m.checksum.as_deref();
        let tier = Tier::from_level(m.tier).unwrap_or(Tier::Hot);
        let finding = |tier: &'static str, kind: &'static str, detail: String| Finding {
            frame_id: id.to_string(),
            tier,
            kind,
            detail,
            repaired: false,
            not_repaired: None,
        };
        let (wstate, wdetail) = state_of(copies.warm.as_deref(), id, if m.body_local { local_sum } else { recorded });
        let (cstate, cdetail) = state_of(copies.cold.as_deref(), id, recorded);
        match tier {
            Tier::Hot => {
                if rm.warm.is_some() && wstate != CopyState::Absent {
                    let mut f = finding("warm", "orphan", "a Redis copy of a hot frame".into());
                    if req.repair {
                        repair_result(&mut f, delete_warm(rm.warm.as_ref(), id).await);
                    }
                    out.push(f);
                }
                if rm.cold.is_some() && cstate != CopyState::Absent && m.body_local {
                    let mut f = finding("cold", "orphan", "an archive row of a hot frame".into());
                    if req.repair {
                        f.not_repaired =
                            Some("archive rows are deleted by retention only (the archive may be shared)".into());
                    }
                    out.push(f);
                }
            }
            Tier::Warm | Tier::Cold => {
                // The verified source for repairs: the archive row, a Redis copy, or the body in SQLite.
                let source: Option<Source> = if cstate == CopyState::Good {
                    copies.cold.clone().map(Source::Envelope)
                } else if wstate == CopyState::Good && !m.body_local {
                    copies.warm.clone().map(Source::Envelope)
                } else {
                    local.cloned().map(Source::Local)
                };
                let wants_warm = tier == Tier::Warm;
                let wants_cold = !m.body_local;
                if rm.warm.is_some() {
                    if wants_warm && wstate != CopyState::Good {
                        let mut f = finding("warm", kind_of(wstate), wdetail.clone());
                        if req.repair {
                            let r = match &source {
                                Some(s) => self.put_warm(rm.warm.as_ref(), id, s, m).await,
                                None => Err("no verified copy to repair from".to_string()),
                            };
                            repair_result(&mut f, r);
                        }
                        out.push(f);
                    } else if !wants_warm && wstate != CopyState::Absent {
                        let mut f = finding("warm", "orphan", "a Redis copy of a cold frame".into());
                        if req.repair {
                            repair_result(&mut f, delete_warm(rm.warm.as_ref(), id).await);
                        }
                        out.push(f);
                    }
                }
                if rm.cold.is_some() && wants_cold && cstate != CopyState::Good {
                    let mut f = finding("cold", kind_of(cstate), cdetail.clone());
                    if req.repair {
                        let r = match &source {
                            Some(s @ Source::Envelope(_)) => self.put_cold(rm.cold.as_ref(), id, s, m).await,
                            _ => Err("no verified copy to repair from".to_string()),
                        };
                        repair_result(&mut f, r);
                    }
                    out.push(f);
                }
            }
        }
        out
    }

    async fn put_warm(
        &self,
        warm: Option<&WarmTier>,
        id: &str,
        src: &Source,
        m: &FrameMeta,
    ) -> std::result::Result<(), String> {
        let w = warm.ok_or("Redis is not reachable")?;
        let (bundle, enc) = src.encoded(id, self.inner.config.postgres.compression_level)?;
        let item = WarmItem {
            frame_id: id.to_string(),
            bytes: enc.bytes,
            created_s: bundle.int_field("created_at").map(to_seconds).unwrap_or(0),
            access_count: m.access_count.max(0) as u64,
            version: m.version,
        };
        w.put_many(&[item]).await.map(|_| ()).map_err(|e| e.to_string())
    }

    async fn put_cold(
        &self,
        cold: Option<&ColdTier>,
        id: &str,
        src: &Source,
        m: &FrameMeta,
    ) -> std::result::Result<(), String> {
        let c = cold.ok_or("PostgreSQL is not reachable")?;
        let (bundle, enc) = src.encoded(id, self.inner.config.postgres.compression_level)?;
        if m.checksum.as_deref().is_some_and(|want| want != enc.checksum) {
            return Err("the only verified copy holds another body".into());
        }
        let row = archive_row(&bundle, &enc, m.version, m.tier as i16, m.access_count, m.last_accessed.map(to_seconds));
        let n = c.upsert_many(&[row]).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the archive holds a newer version (another machine's)".into());
        }
        Ok(())
    }
}

/// A verified body to repair from.
#[derive(Clone)]
enum Source {
    Envelope(Vec<u8>),
    Local(Bundle),
}

impl Source {
    fn encoded(&self, id: &str, level: i32) -> std::result::Result<(Bundle, Encoded), String> {
        match self {
            Source::Envelope(bytes) => {
                let b = codec::decode_bundle(id, "repair", bytes).map_err(|e| e.to_string())?;
                let checksum = codec::header_checksum(bytes).ok_or("no checksum")?;
                let raw_size = b.canonical_bytes().len();
                Ok((b, Encoded { frame_id: id.to_string(), bytes: bytes.clone(), checksum, raw_size }))
            }
            Source::Local(b) => Ok((b.clone(), codec::encode(b, level).map_err(|e| e.to_string())?)),
        }
    }
}

async fn delete_warm(warm: Option<&WarmTier>, id: &str) -> std::result::Result<(), String> {
    let w = warm.ok_or("Redis is not reachable")?;
    w.delete_many(&[id.to_string()]).await.map_err(|e| e.to_string())
}

fn repair_result(f: &mut Finding, r: std::result::Result<(), String>) {
    match r {
        Ok(()) => f.repaired = true,
        Err(why) => f.not_repaired = Some(why),
    }
}

/// Whether a frame is in this run's sample (each frame independently, by a hash of its id and the
/// run's seed, so a sample differs between runs).
fn sampled(frame_id: &str, share: f64, seed: u64) -> bool {
    if share >= 1.0 {
        return true;
    }
    let h = xxhash_rust::xxh3::xxh3_64_with_seed(frame_id.as_bytes(), seed);
    (h as f64 / u64::MAX as f64) < share
}
