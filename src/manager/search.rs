//! Search across tiers: SQLite's FTS for hot rows and stubs, PostgreSQL's tsvector for the archive,
//! merged (each frame once) and ranked.

use serde_json::{json, Value};

use super::requests::SearchRequest;
use super::TierManager;
use crate::model::{Result, Tier};

impl TierManager {
    pub async fn search(&self, req: SearchRequest) -> Result<Value> {
        self.check_open()?;
        req.check()?;
        let SearchRequest { ref query, ref project_id, limit, .. } = req;
        let want = |t: Tier| req.wants(t);
        let tokens = tokenize(query);
        let pid = project_id.clone();
        let hot_hits = self.inner.hot.call(move |hot| hot.search(&tokens, pid.as_deref(), limit)).await?;
        let mut merged: Vec<Value> = vec![];
        let mut seen = std::collections::HashSet::new();
        let max_hot = hot_hits.iter().map(|h| h.rank).fold(f64::MIN_POSITIVE, f64::max);
        for h in hot_hits {
            let t = Tier::parse(&h.tier).unwrap_or(Tier::Hot);
            if !want(t) || !seen.insert(h.frame_id.clone()) {
                continue;
            }
            merged.push(json!({"frameId": h.frame_id, "projectId": h.project_id, "name": h.name, "tier": h.tier,
                "source": "sqlite", "score": h.rank / max_hot}));
        }
        let mut warnings = vec![];
        if want(Tier::Warm) || want(Tier::Cold) {
            let remotes = self.remotes().await;
            match &remotes.cold {
                Some(c) => {
                    let hits = c.search(query, project_id.as_deref(), limit).await?;
                    let max_cold = hits.iter().map(|h| h.rank as f64).fold(f64::MIN_POSITIVE, f64::max);
                    for h in hits {
                        let t = if h.tier == 2 { Tier::Warm } else { Tier::Cold };
                        if seen.contains(&h.frame_id) {
                            continue;
                        }
                        // A frame archived and also hot (mid-move) is listed once.
                        seen.insert(h.frame_id.clone());
                        if !want(t) {
                            continue;
                        }
                        merged.push(json!({"frameId": h.frame_id, "projectId": h.project_id, "name": h.name,
                            "tier": t.as_str(), "source": "postgres", "score": h.rank as f64 / max_cold}));
                    }
                }
                None => {
                    if let Some(why) = remotes.cold_down {
                        warnings.push(format!("archive not searched: {why}"));
                    }
                }
            }
        }
        merged.sort_by(|a, b| {
            let (x, y) = (a["score"].as_f64().unwrap_or(0.0), b["score"].as_f64().unwrap_or(0.0));
            y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal)
        });
        merged.truncate(limit as usize);
        Ok(json!({"results": merged, "warnings": warnings}))
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
