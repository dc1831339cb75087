//! Search across tiers: SQLite's FTS for hot rows and stubs, PostgreSQL's tsvector for the archive,
//! merged (each frame once) and ranked.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Value};

use super::requests::SearchRequest;
use super::TierManager;
use crate::model::{Result, Tier};

impl TierManager {
    /// Hits from SQLite's FTS (hot rows, and stubs by name) and from the archive's tsvector, each
    /// frame once, on one scale: with the archive reachable every hit is scored by PostgreSQL's
    /// `ts_rank` over the same weighted text (name A, digest B, anchors C, event text D; hot frames'
    /// text is sent to it for the ranking); without it, hot hits by SQLite's bm25 (scaled to 0..1).
    /// A tier that fails is a warning, never a rejection.
    pub async fn search(&self, req: SearchRequest) -> Result<Value> {
        self.check_open()?;
        req.check()?;
        let started = std::time::Instant::now();
        let SearchRequest { ref query, ref project_id, limit, .. } = req;
        let tokens = tokenize(query);
        let pid = project_id.clone();
        let mut warnings: Vec<String> = vec![];
        // Even the local tier failing (a damaged FTS index, a busy file) is a warning: the archive's
        // hits still answer.
        let hot_hits = match self.inner.hot.call(move |hot| hot.search(&tokens, pid.as_deref(), limit)).await {
            Ok(h) => h,
            Err(e) => {
                warnings.push(format!("local frames not searched: {e}"));
                vec![]
            }
        };
        let remotes = self.remotes().await;
        let mut cold_hits = vec![];
        match &remotes.cold {
            Some(c) => match c.search(query, project_id.as_deref(), limit).await {
                Ok(h) => cold_hits = h,
                Err(e) => warnings.push(format!("archive not searched: {e}")),
            },
            None if self.inner.config.postgres.enabled => {
                warnings.push(format!("archive not searched: {}", remotes.down(Tier::Cold)))
            }
            None => {}
        }
        // Hot bodies ranked by the archive's formula too, when it answers.
        let bodies: Vec<String> =
            hot_hits.iter().filter(|h| Tier::parse(&h.tier) == Some(Tier::Hot)).map(|h| h.frame_id.clone()).collect();
        let mut ts_rank: Option<HashMap<String, f64>> = None;
        if let (Some(c), false) = (&remotes.cold, warnings.iter().any(|w| w.starts_with("archive not searched"))) {
            let ids = bodies.clone();
            let texts = self.inner.hot.call(move |hot| hot.search_texts(&ids)).await.unwrap_or_default();
            match c.rank_texts(query, &texts.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>()).await {
                Ok(ranks) => {
                    ts_rank = Some(texts.into_iter().map(|(id, _)| id).zip(ranks.into_iter().map(f64::from)).collect())
                }
                Err(e) => warnings.push(format!("hot hits ranked by SQLite only: {e}")),
            }
        }
        // An archive hit of a frame whose body is in SQLite again (StackMemory re-stored it, or it
        // came back hot) is of a body this file no longer serves: its stale row is about to be
        // discarded. The frame is listed by the local search when its text still matches.
        if !cold_hits.is_empty() {
            let ids: Vec<String> = cold_hits.iter().map(|h| h.frame_id.clone()).collect();
            match self.inner.hot.call(move |hot| hot.meta_many(&ids)).await {
                Ok(metas) => {
                    let local: HashSet<String> = metas
                        .into_iter()
                        .flatten()
                        .filter(|m| m.body_local && m.tier == Tier::Hot.level())
                        .map(|m| m.frame_id)
                        .collect();
                    cold_hits.retain(|h| !local.contains(&h.frame_id));
                }
                Err(e) => warnings.push(format!("archive hits not checked against local frames: {e}")),
            }
        }
        let max_bm25 = hot_hits.iter().map(|h| h.rank).fold(f64::MIN_POSITIVE, f64::max);
        let mut merged: Vec<Value> = vec![];
        let mut seen = HashSet::new();
        let archived: HashSet<&str> = cold_hits.iter().map(|h| h.frame_id.as_str()).collect();
        for h in &hot_hits {
            let t = Tier::parse(&h.tier).unwrap_or(Tier::Hot);
            // A stub's archive hit (its whole text) stands for it when there is one.
            if (t != Tier::Hot && archived.contains(h.frame_id.as_str()))
                || !req.wants(t)
                || !seen.insert(h.frame_id.clone())
            {
                continue;
            }
            let score = match &ts_rank {
                Some(r) => r.get(&h.frame_id).copied().unwrap_or(0.0).max(1e-6),
                None => h.rank / max_bm25,
            };
            merged.push(json!({"frameId": h.frame_id, "projectId": h.project_id, "name": h.name, "tier": h.tier,
                "source": "sqlite", "score": score}));
        }
        for h in cold_hits {
            let t = if h.tier == 2 { Tier::Warm } else { Tier::Cold };
            // A frame archived and also hot (mid-move) is listed once.
            if !seen.insert(h.frame_id.clone()) || !req.wants(t) {
                continue;
            }
            merged.push(json!({"frameId": h.frame_id, "projectId": h.project_id, "name": h.name,
                "tier": t.as_str(), "source": "postgres", "score": h.rank as f64}));
        }
        merged.sort_by(|a, b| {
            let (x, y) = (a["score"].as_f64().unwrap_or(0.0), b["score"].as_f64().unwrap_or(0.0));
            y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal)
        });
        merged.truncate(limit as usize);
        let scale =
            if ts_rank.is_some() || !merged.iter().any(|m| m["source"] == "sqlite") { "ts_rank" } else { "bm25" };
        self.inner.obs.record(crate::obs::Series::Search, started, 0);
        Ok(json!({"results": merged, "warnings": warnings, "scale": scale}))
    }
}

/// Words of a query for SQLite FTS: letters, digits and `_`; everything else separates.
pub fn tokenize(q: &str) -> Vec<String> {
    q.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|t| !t.is_empty())
        .take(32)
        .map(|t| t.to_lowercase())
        .collect()
}
