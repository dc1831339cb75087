//! Full-text search of the hot file through StackMemory's own FTS5 table (bm25), or LIKE when a
//! file has none.

use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter};
use serde::Serialize;

use super::HotTier;
use crate::model::Result;

#[derive(Debug, Clone, Serialize)]
pub struct HotHit {
    pub frame_id: String,
    pub project_id: String,
    pub name: String,
    pub tier: String,
    pub rank: f64,
}

impl HotTier {
    /// Full-text search over hot rows and stubs (names only for stubs).
    pub fn search(&self, tokens: &[String], project_id: Option<&str>, limit: u32) -> Result<Vec<HotHit>> {
        if tokens.is_empty() {
            return Ok(vec![]);
        }
        let c = self.lock()?;
        let mut out = vec![];
        if self.has_fts {
            // Each token quoted: FTS5 operators in user input are plain words here. FTS5 reads its
            // query as a C string, so a NUL would end it inside the quotes ("unterminated string"):
            // NUL is a separator, as in `tokenize`.
            let q: Vec<String> =
                tokens.iter().map(|t| format!("\"{}\"", t.replace('\0', " ").replace('"', "\"\""))).collect();
            let fts_query = q.join(" ");
            let mut st = c.prepare_cached(
                "SELECT f.frame_id, f.project_id, f.name, COALESCE(f.tier_status, 'hot'), bm25(frames_fts) AS score
                 FROM frames_fts JOIN frames f ON f.rowid = frames_fts.rowid
                 WHERE frames_fts MATCH ?1 AND (?2 IS NULL OR f.project_id = ?2)
                 ORDER BY score LIMIT ?3",
            )?;
            let rows = st.query_map(params![fts_query, project_id, limit], |r| {
                Ok(HotHit {
                    frame_id: r.get(0)?,
                    project_id: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                    name: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                    tier: r.get(3)?,
                    rank: -r.get::<_, f64>(4)?,
                })
            })?;
            for row in rows {
                out.push(row?);
            }
        } else {
            let mut sql = String::from(
                "SELECT frame_id, project_id, name, COALESCE(tier_status, 'hot') FROM frames WHERE (?1 IS NULL OR project_id = ?1)",
            );
            let mut args: Vec<SqlValue> = vec![project_id.map(|s| SqlValue::Text(s.into())).unwrap_or(SqlValue::Null)];
            for t in tokens {
                sql.push_str(" AND (COALESCE(name,'') || ' ' || COALESCE(digest_text,'')) LIKE ? ESCAPE '\\'");
                let esc = t.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
                args.push(SqlValue::Text(format!("%{esc}%")));
            }
            sql.push_str(&format!(" LIMIT {}", limit));
            let mut st = c.prepare(&sql)?;
            let rows = st.query_map(params_from_iter(args.iter()), |r| {
                Ok(HotHit {
                    frame_id: r.get(0)?,
                    project_id: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                    name: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                    tier: r.get(3)?,
                    rank: 1.0,
                })
            })?;
            for row in rows {
                out.push(row?);
            }
        }
        Ok(out)
    }
}

impl HotTier {
    /// The weighted search text of hot bodies (`Bundle::search_text`), for ranking them on the
    /// archive's scale; stubs and unknown ids are left out.
    pub fn search_texts(&self, ids: &[String]) -> Result<Vec<(String, crate::model::SearchText)>> {
        Ok(self
            .load_many(ids)?
            .into_iter()
            .filter_map(|r| r.bundle.map(|b| (r.meta.frame_id.clone(), b.search_text())))
            .collect())
    }
}
