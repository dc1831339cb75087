//! Full-text search over the archive's weighted tsvector, retention, and the archive's totals.

use super::copy::{clean, clip, MAX_NAME_TEXT, MAX_PART_TEXT};
use super::{pg_err, search_err, ColdTier};
use crate::model::frame::MAX_QUERY_BYTES;
use crate::model::{Result, SearchText, TierError};

/// Most hits one search returns.
pub const MAX_SEARCH_LIMIT: u32 = 10_000;

/// One full-text search hit.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ColdHit {
    pub frame_id: String,
    pub project_id: String,
    pub name: String,
    pub rank: f32,
    pub tier: i16,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ColdStats {
    pub frames: u64,
    pub warm_frames: u64,
    pub cold_frames: u64,
    pub raw_bytes: u64,
    pub compressed_bytes: u64,
    /// The server's `server_version`.
    pub version: String,
    /// Round trip of a trivial query, microseconds.
    pub latency_us: u64,
}

impl ColdTier {
    /// `ts_rank` of `query` over texts that are not archived (hot frames' search text), weighted
    /// and clipped exactly as archived rows are: so hits from every tier are ranked on one scale.
    pub async fn rank_texts(&self, query: &str, texts: &[SearchText]) -> Result<Vec<f32>> {
        self.bounded("rank_texts", async {
            if texts.is_empty() || query.trim().is_empty() || query.contains('\0') || query.len() > MAX_QUERY_BYTES {
                return Ok(vec![0.0; texts.len()]);
            }
            let part = |f: &dyn Fn(&SearchText) -> &str, max: usize| -> Vec<String> {
                texts.iter().map(|t| clean(clip(f(t), max)).into_owned()).collect()
            };
            let (n, d) = (part(&|t| &t.name, MAX_NAME_TEXT), part(&|t| &t.digest, MAX_PART_TEXT));
            let (a, e) = (part(&|t| &t.anchors, MAX_PART_TEXT), part(&|t| &t.events, MAX_PART_TEXT));
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT i, ts_rank(setweight(to_tsvector('english', n), 'A') || setweight(to_tsvector('english', d), 'B')
                                     || setweight(to_tsvector('english', a), 'C') || setweight(to_tsvector('english', e), 'D'),
                                     websearch_to_tsquery('english', $1))
                     FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS t(n, d, a, e, i)",
                    &[&query, &n, &d, &a, &e],
                )
                .await
                .map_err(search_err)?;
            let mut out = vec![0.0; texts.len()];
            for r in rows {
                let i: i64 = r.try_get(0).map_err(|e| pg_err("rank", e))?;
                if let Some(slot) = out.get_mut((i - 1).max(0) as usize) {
                    *slot = r.try_get(1).map_err(|e| pg_err("rank", e))?;
                }
            }
            Ok(out)
        })
        .await
    }

    /// Full-text search (`websearch_to_tsquery` syntax), best `ts_rank` first. A name match
    /// outranks a digest match, which outranks anchors, which outrank event payloads.
    pub async fn search(&self, query: &str, project_id: Option<&str>, limit: u32) -> Result<Vec<ColdHit>> {
        self.bounded("search", async {
            if query.trim().is_empty() {
                return Err(TierError::invalid_argument("query", "must not be empty"));
            }
            if query.contains('\0') {
                return Err(TierError::invalid_argument("query", "must not contain NUL characters"));
            }
            if query.len() > MAX_QUERY_BYTES {
                return Err(TierError::invalid_argument("query", format!("longer than {MAX_QUERY_BYTES} bytes")));
            }
            if project_id.is_some_and(|p| p.contains('\0')) {
                return Err(TierError::invalid_argument("projectId", "must not contain NUL characters"));
            }
            if limit == 0 {
                return Ok(vec![]);
            }
            let limit = i64::from(limit.min(MAX_SEARCH_LIMIT));
            let client = self.client().await?;
            let rows = match project_id {
                None => {
                    let st = client.prepare_cached(&self.sql.search_all).await.map_err(search_err)?;
                    client.query(&st, &[&query, &limit]).await.map_err(search_err)?
                }
                Some(p) => {
                    let st = client.prepare_cached(&self.sql.search_project).await.map_err(search_err)?;
                    client.query(&st, &[&query, &limit, &p]).await.map_err(search_err)?
                }
            };
            let mut hits = Vec::with_capacity(rows.len());
            for r in rows {
                hits.push(ColdHit {
                    frame_id: r.try_get(0).map_err(|e| pg_err("search", e))?,
                    project_id: r.try_get::<_, Option<String>>(1).map_err(|e| pg_err("search", e))?.unwrap_or_default(),
                    name: r.try_get::<_, Option<String>>(2).map_err(|e| pg_err("search", e))?.unwrap_or_default(),
                    rank: r.try_get(3).map_err(|e| pg_err("search", e))?,
                    tier: r.try_get(4).map_err(|e| pg_err("search", e))?,
                });
            }
            Ok(hits)
        })
        .await
    }

    /// Up to `limit` ids past their retention (see `schema.rs`, `PAST_RETENTION`), after `after`
    /// in id order. Changes nothing: retention deletes through the mover's journal.
    pub async fn expired_ids(&self, default_days: u32, now_s: i64, after: &str, limit: usize) -> Result<Vec<String>> {
        self.bounded("expired_ids", async {
            let days = retention_days(default_days)?;
            let client = self.client().await?;
            let st = client.prepare_cached(&self.sql.expired).await.map_err(|e| pg_err("retention", e))?;
            let rows = client
                .query(&st, &[&now_s, &days, &after, &(limit as i64)])
                .await
                .map_err(|e| pg_err("retention", e))?;
            rows.iter().map(|r| r.try_get::<_, String>(0).map_err(|e| pg_err("retention", e))).collect()
        })
        .await
    }

    /// Deletes those of `ids` still past their retention (a row archived again since with a later
    /// date stays); returns the ids deleted.
    pub async fn delete_expired(&self, ids: &[String], default_days: u32, now_s: i64) -> Result<Vec<String>> {
        self.bounded("delete_expired", async {
            let days = retention_days(default_days)?;
            if ids.is_empty() {
                return Ok(vec![]);
            }
            let client = self.client().await?;
            let st = client.prepare_cached(&self.sql.delete_expired).await.map_err(|e| pg_err("retention", e))?;
            let rows = client.query(&st, &[&now_s, &days, &ids]).await.map_err(|e| pg_err("retention", e))?;
            rows.iter().map(|r| r.try_get::<_, String>(0).map_err(|e| pg_err("retention", e))).collect()
        })
        .await
    }

    pub async fn stats(&self) -> Result<ColdStats> {
        self.bounded("stats", async {
            let latency = self.ping().await?;
            let client = self.client().await?;
            let st = client.prepare_cached(&self.sql.stats).await.map_err(|e| pg_err("stats", e))?;
            let r = client.query_one(&st, &[]).await.map_err(|e| pg_err("stats", e))?;
            let n =
                |i: usize| -> Result<u64> { Ok(r.try_get::<_, i64>(i).map_err(|e| pg_err("stats", e))?.max(0) as u64) };
            Ok(ColdStats {
                frames: n(0)?,
                warm_frames: n(1)?,
                cold_frames: n(2)?,
                raw_bytes: n(3)?,
                compressed_bytes: n(4)?,
                version: r.try_get(5).map_err(|e| pg_err("stats", e))?,
                latency_us: latency.as_micros().min(u64::MAX as u128) as u64,
            })
        })
        .await
    }
}

fn retention_days(default_days: u32) -> Result<i64> {
    if default_days == 0 {
        return Err(TierError::invalid_argument("retentionDays", "must be at least 1"));
    }
    Ok(i64::from(default_days))
}
