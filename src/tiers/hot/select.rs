//! Which frames could move: candidates by project, id, tier, with what the mover and the policy
//! engine need to decide, and a closed frame's closed subtree.

use std::collections::{HashMap, HashSet};

use rusqlite::params_from_iter;
use rusqlite::types::Value as SqlValue;
use serde::Serialize;

use super::read::ensure_meta_row;
use super::rows::int_or_none;
use super::HotTier;
use crate::model::units::to_seconds;
use crate::model::{Result, Tier, TierError};

/// A candidate for a move, as the mover and the policy engine see it.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub frame_id: String,
    pub parent_id: Option<String>,
    pub project_id: String,
    pub tier: i64,
    pub body_local: bool,
    pub active: bool,
    pub created_s: Option<i64>,
    pub closed_s: Option<i64>,
    pub last_accessed_s: Option<i64>,
    pub access_count: i64,
    pub size_bytes: i64,
    pub keep_forever: bool,
    pub pinned: bool,
    /// SQLite's rowid of the frames row (the tie-breaker of a page cursor).
    pub rowid: i64,
}

#[derive(Debug, Clone, Default)]
pub struct CandidateFilter {
    pub project_id: Option<String>,
    pub frame_ids: Option<Vec<String>>,
    pub tiers: Option<Vec<Tier>>,
}

/// The columns `candidate_of` reads ...
const CANDIDATE_COLS: &str = "f.frame_id, f.parent_frame_id, f.project_id, COALESCE(f.tier_status, 'hot'),
        COALESCE(m.body_local, 1), COALESCE(f.state, 'active'), f.created_at, f.closed_at,
        COALESCE(ta.last_accessed, f.last_accessed), COALESCE(ta.access_count, f.access_count, 0),
        m.size_bytes, COALESCE(f.retention_policy, 'default'), COALESCE(m.pinned, 0), f.rowid";
/// ... and the joins they come from.
const CANDIDATE_FROM: &str = "FROM frames f LEFT JOIN tier_metadata m ON m.frame_id = f.frame_id
       LEFT JOIN tier_access ta ON ta.frame_id = f.frame_id";

/// A frame's age key in seconds (closed, else created; StackMemory writes seconds or ms). The
/// index `idx_frames_tier_age` is on exactly this expression, so pages of candidates by tier and
/// age are read from the index, not by sorting the table.
pub const AGE_S: &str = "(CASE WHEN COALESCE(f.closed_at, f.created_at) > 100000000000
    THEN COALESCE(f.closed_at, f.created_at) / 1000 ELSE COALESCE(f.closed_at, f.created_at) END)";

fn candidate_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Candidate> {
    let tier: String = r.get(3)?;
    Ok(Candidate {
        frame_id: r.get(0)?,
        parent_id: r.get(1)?,
        project_id: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
        // An `expired` stub is in no tier (level 0): never a candidate for a move.
        tier: Tier::parse(&tier).map(Tier::level).unwrap_or(0),
        body_local: r.get::<_, i64>(4)? != 0,
        active: r.get::<_, String>(5)? != "closed",
        created_s: int_or_none(r.get_ref(6)?).map(to_seconds),
        closed_s: int_or_none(r.get_ref(7)?).map(to_seconds),
        last_accessed_s: int_or_none(r.get_ref(8)?).map(to_seconds),
        access_count: r.get(9)?,
        size_bytes: r.get::<_, Option<i64>>(10)?.unwrap_or(-1),
        keep_forever: r.get::<_, String>(11)? == "keep_forever",
        pinned: r.get::<_, i64>(12)? != 0,
        rowid: r.get(13)?,
    })
}

/// Sizes of frames StackMemory wrote directly are computed on first sight.
fn fill_sizes(c: &rusqlite::Connection, out: &mut [Candidate]) -> Result<()> {
    let unknown: Vec<String> = out.iter().filter(|c| c.size_bytes < 0).map(|c| c.frame_id.clone()).collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let tx = c.unchecked_transaction()?;
    let mut sizes = HashMap::new();
    for id in &unknown {
        if let Some(m) = ensure_meta_row(&tx, id)? {
            sizes.insert(id.clone(), m.size_bytes);
        }
    }
    tx.commit()?;
    for cand in out.iter_mut().filter(|c| c.size_bytes < 0) {
        cand.size_bytes = sizes.get(&cand.frame_id).copied().unwrap_or(0);
    }
    Ok(())
}

/// One page of the frames of one tier, oldest first, after a cursor: how bulk moves walk a store
/// of any size at a cost per page that does not grow with it.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub tier: Option<Tier>,
    pub project_id: Option<String>,
    /// Only frames whose age key is at most this (seconds): `olderThan`.
    pub max_age_s: Option<i64>,
    /// The key (age, rowid) of the last frame already seen.
    pub after: Option<(i64, i64)>,
    pub limit: usize,
    /// Only frames whose body is still in SQLite (warm frames held back, for a run to warm).
    pub local_only: bool,
}

impl HotTier {
    /// A page of candidates (see `Page`), each with its key for the next page's cursor.
    pub fn candidates_page(&self, p: &Page) -> Result<Vec<(Candidate, (i64, i64))>> {
        let c = self.lock_write()?;
        let tier = p.tier.unwrap_or(Tier::Hot).as_str();
        let sql = format!(
            "SELECT {CANDIDATE_COLS}, {AGE_S} {CANDIDATE_FROM}
             WHERE f.tier_status = ?1 AND (?2 IS NULL OR f.project_id = ?2)
               AND {AGE_S} <= ?3 AND ({AGE_S}, f.rowid) > (?4, ?5) AND (?7 = 0 OR COALESCE(m.body_local, 1) = 1)
             ORDER BY {AGE_S}, f.rowid LIMIT ?6"
        );
        let mut st = c.prepare_cached(&sql)?;
        // Bounds always given (no `?n IS NULL OR`): the planner then walks the index's range.
        let (a, r) = p.after.unwrap_or((i64::MIN, i64::MIN));
        let max_age = p.max_age_s.unwrap_or(i64::MAX);
        let rows = st.query_map(
            rusqlite::params![tier, p.project_id, max_age, a, r, p.limit as i64, p.local_only as i64],
            |row| Ok((candidate_of(row)?, row.get::<_, Option<i64>>(14)?.unwrap_or(0))),
        )?;
        let got = rows.collect::<std::result::Result<Vec<_>, _>>()?;
        drop(st);
        let (mut cands, ages): (Vec<Candidate>, Vec<i64>) = got.into_iter().unzip();
        fill_sizes(&c, &mut cands)?;
        Ok(cands
            .into_iter()
            .zip(ages)
            .map(|(cand, age)| {
                let key = (age, cand.rowid);
                (cand, key)
            })
            .collect())
    }

    /// How many frames a walk by `Page` would see, up to `cap` (from the index, without reading
    /// rows; a capped count stops at the cap, so a run with a `limit` pays for its limit only).
    pub fn count_page_frames(&self, p: &Page, cap: Option<u64>) -> Result<i64> {
        let c = self.lock()?;
        let sql = format!(
            "SELECT count(*) FROM (SELECT 1 {CANDIDATE_FROM} WHERE f.tier_status = ?1 AND (?2 IS NULL OR f.project_id = ?2)
               AND {AGE_S} <= ?3 AND (?4 = 0 OR COALESCE(m.body_local, 1) = 1) LIMIT ?5)"
        );
        let mut st = c.prepare_cached(&sql)?;
        let tier = p.tier.unwrap_or(Tier::Hot).as_str();
        let cap = cap.map(|n| n.min(i64::MAX as u64) as i64).unwrap_or(-1);
        let args = rusqlite::params![tier, p.project_id, p.max_age_s.unwrap_or(i64::MAX), p.local_only as i64, cap];
        let n = st.query_row(args, |r| r.get(0))?;
        Ok(n)
    }

    /// Frames that could move, filtered; `tiers` limits which current tiers are listed.
    pub fn candidates(&self, filter: &CandidateFilter) -> Result<Vec<Candidate>> {
        let c = self.lock()?;
        let mut sql = format!("SELECT {CANDIDATE_COLS} {CANDIDATE_FROM} WHERE 1 = 1");
        let mut args: Vec<SqlValue> = vec![];
        if let Some(p) = &filter.project_id {
            sql.push_str(" AND f.project_id = ?");
            args.push(SqlValue::Text(p.clone()));
        }
        if let Some(ids) = &filter.frame_ids {
            if ids.is_empty() {
                return Ok(vec![]);
            }
            sql.push_str(" AND f.frame_id IN (SELECT value FROM json_each(?))");
            args.push(SqlValue::Text(serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())));
        }
        if let Some(tiers) = &filter.tiers {
            let list: Vec<String> = tiers.iter().map(|t| format!("'{}'", t.as_str())).collect();
            sql.push_str(&format!(" AND COALESCE(f.tier_status, 'hot') IN ({})", list.join(",")));
        }
        sql.push_str(" ORDER BY COALESCE(f.closed_at, f.created_at), f.rowid");
        let mut st = c.prepare(&sql)?;
        let rows = st.query_map(params_from_iter(args.iter()), candidate_of)?;
        let mut out = rows.collect::<std::result::Result<Vec<_>, _>>()?;
        drop(st);
        fill_sizes(&c, &mut out)?;
        Ok(out)
    }

    /// `ids` and their closed descendants (a closed frame's closed subtree moves with it), through
    /// StackMemory's parent index instead of a scan of every frame.
    pub fn with_closed_descendants(&self, ids: &[String]) -> Result<Vec<String>> {
        let c = self.lock()?;
        // `+f.state`: without it SQLite walks StackMemory's state index (every closed frame) for
        // each id instead of its parent index: 500 ids took 18 s on 10,000 frames (quadratic);
        // with it, 9,616 ids take 64 ms (found by scripts/crash-matrix.js).
        let mut st = c.prepare_cached(
            "WITH RECURSIVE d(id) AS (
               SELECT value FROM json_each(?1)
               UNION
               SELECT f.frame_id FROM frames f JOIN d ON f.parent_frame_id = d.id WHERE +f.state = 'closed')
             SELECT id FROM d",
        )?;
        let list = serde_json::to_string(ids).map_err(|e| TierError::storage("frame ids", e))?;
        let rows = st.query_map([list], |r| r.get::<_, String>(0))?;
        let found: Vec<String> = rows.collect::<std::result::Result<_, _>>()?;
        // Keep the caller's order first, then the descendants.
        let mut seen: HashSet<String> = ids.iter().cloned().collect();
        let mut out = ids.to_vec();
        out.extend(found.into_iter().filter(|i| seen.insert(i.clone())));
        Ok(out)
    }
}

/// A frame StackMemory's GC would delete now, by its retention rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expired {
    pub frame_id: String,
    pub parent_id: Option<String>,
    pub retention_policy: String,
    pub tier: i64,
    pub active: bool,
    pub pinned: bool,
}

impl HotTier {
    /// The frames StackMemory's `runGC` deletes at `now_s`: `default` and `archive` frames created
    /// more than `retention_days` ago, `ttl_30d` after 30 days, `ttl_7d` after 7, never
    /// `keep_forever` (times in seconds or ms, as StackMemory mixes them). Oldest first, at most
    /// `limit`.
    pub fn gc_candidates(&self, now_s: i64, retention_days: u32, limit: usize) -> Result<Vec<Expired>> {
        let c = self.lock()?;
        let mut st = c.prepare_cached(
            "SELECT f.frame_id, f.parent_frame_id, COALESCE(f.retention_policy, 'default'), COALESCE(f.tier_status, 'hot'),
                    COALESCE(f.state, 'active'), COALESCE(m.pinned, 0)
             FROM frames f LEFT JOIN tier_metadata m ON m.frame_id = f.frame_id
             WHERE COALESCE(f.retention_policy, 'default') <> 'keep_forever'
               AND (CASE WHEN f.created_at > 100000000000 THEN f.created_at / 1000 ELSE f.created_at END)
                   < ?1 - 86400 * (CASE f.retention_policy WHEN 'ttl_7d' THEN 7 WHEN 'ttl_30d' THEN 30 ELSE ?2 END)
             ORDER BY f.created_at, f.rowid LIMIT ?3",
        )?;
        let rows = st.query_map(rusqlite::params![now_s, retention_days, limit as i64], |r| {
            Ok(Expired {
                frame_id: r.get(0)?,
                parent_id: r.get(1)?,
                retention_policy: r.get(2)?,
                tier: Tier::parse(&r.get::<_, String>(3)?).unwrap_or(Tier::Hot).level(),
                active: r.get::<_, String>(4)? != "closed",
                pinned: r.get::<_, i64>(5)? != 0,
            })
        })?;
        Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
    }

    /// Stubs (body not local) past the archive's retention rule as SQLite sees them (the same
    /// rule as `tiers/cold/schema.rs` `PAST_RETENTION`, on StackMemory's columns), after `after`
    /// in id order: retention checks these against the archive, for rows another machine's
    /// retention already deleted.
    pub fn stubs_past_retention(&self, now_s: i64, days: u32, after: &str, limit: usize) -> Result<Vec<String>> {
        let c = self.lock()?;
        let mut st = c.prepare_cached(&format!(
            "SELECT f.frame_id FROM frames f JOIN tier_metadata m ON m.frame_id = f.frame_id
             WHERE f.tier_status IN ('warm', 'cold') AND m.body_local = 0
               AND COALESCE(f.retention_policy, 'default') <> 'keep_forever'
               AND {AGE_S} < ?1 - 86400 * (CASE f.retention_policy WHEN 'ttl_7d' THEN 7 WHEN 'ttl_30d' THEN 30 ELSE ?2 END)
               AND f.frame_id > ?3
             ORDER BY f.frame_id LIMIT ?4"
        ))?;
        let rows = st.query_map(rusqlite::params![now_s, days, after, limit as i64], |r| r.get(0))?;
        Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
    }
}
