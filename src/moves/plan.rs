//! What a migration would do, changing nothing: frames and bytes per hop and per project, what is
//! skipped and why, and an estimated duration from the rates measured on earlier runs. It walks the
//! same pages and the same rules as the run itself.

use std::collections::BTreeMap;

use serde::Serialize;

use super::report::{MigrateReport, MigrateRequest};
use super::run::source_page;
use super::Mover;
use crate::model::units::now_seconds;
use crate::model::{Result, Tier};
use crate::tiers::hot::{CandidateFilter, Page};

/// Frames and bytes of one hop (or one project within it).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub frames: u64,
    pub bytes: u64,
}

/// `planMigration(options)`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub to_tier: &'static str,
    pub frames: u64,
    pub bytes: u64,
    /// `hot→warm`, ... → volume.
    pub hops: BTreeMap<String, Volume>,
    pub projects: BTreeMap<String, Volume>,
    /// Reason → how many frames.
    pub skipped: BTreeMap<String, u64>,
    /// From the frames/s measured per hop on earlier runs (`null` for a hop never measured).
    pub estimated_seconds: Option<f64>,
}

impl Mover {
    /// See the module docs. `rates`: frames/s per hop measured before (`hot→warm` → 1200.0);
    /// `has_cold`: PostgreSQL is reachable (see `run::source_page`).
    pub async fn plan(&self, req: &MigrateRequest, rates: &BTreeMap<String, f64>, has_cold: bool) -> Result<Plan> {
        let mut plan = Plan { to_tier: req.to.as_str(), ..Default::default() };
        let mut report = MigrateReport::default();
        let now = now_seconds();
        let max_age_s = req.older_than_ms.map(|ms| now - (ms / 1000) as i64);
        let mut chosen = 0usize;
        let mut consider = |plan: &mut Plan, report: &mut MigrateReport, c: &crate::tiers::hot::Candidate, explicit| {
            if req.limit.is_some_and(|l| chosen >= l) {
                return false;
            }
            if !self.choose(c, req, explicit, now, report) {
                return true;
            }
            chosen += 1;
            let from = Tier::from_level(c.tier).unwrap_or(Tier::Hot);
            let size = c.size_bytes.max(0) as u64;
            let hop = plan.hops.entry(format!("{}→{}", from.as_str(), req.to.as_str())).or_default();
            hop.frames += 1;
            hop.bytes += size;
            let p = plan.projects.entry(c.project_id.clone()).or_default();
            p.frames += 1;
            p.bytes += size;
            plan.frames += 1;
            plan.bytes += size;
            true
        };
        match req.frame_ids.clone() {
            Some(ids) => {
                let ids = if req.to != Tier::Hot && req.subtrees {
                    self.hot.call(move |hot| hot.with_closed_descendants(&ids)).await?
                } else {
                    ids
                };
                for chunk in ids.chunks(1000) {
                    let filter = CandidateFilter {
                        project_id: req.project_id.clone(),
                        frame_ids: Some(chunk.to_vec()),
                        tiers: None,
                    };
                    for c in self.hot.call(move |hot| hot.candidates(&filter)).await? {
                        if !consider(&mut plan, &mut report, &c, true) {
                            break;
                        }
                    }
                }
            }
            None => {
                let mut source = 0;
                'tiers: while let Some(first) = source_page(req.to, source, req.project_id.clone(), max_age_s, has_cold)
                {
                    source += 1;
                    let mut after = None;
                    loop {
                        let p = Page { after, ..first.clone() };
                        let page = self.hot.call(move |hot| hot.candidates_page(&p)).await?;
                        let Some((_, last)) = page.last() else { break };
                        after = Some(*last);
                        for (c, _) in &page {
                            if !consider(&mut plan, &mut report, c, false) {
                                break 'tiers;
                            }
                        }
                    }
                }
            }
        }
        for s in &report.skipped {
            *plan.skipped.entry(s.reason.clone()).or_default() += 1;
        }
        let unlisted = report.skipped_count.saturating_sub(report.skipped.len()) as u64;
        if unlisted > 0 {
            *plan.skipped.entry("other (not listed)".into()).or_default() += unlisted;
        }
        let mut secs = 0.0;
        let mut known = true;
        for (hop, v) in &plan.hops {
            match rates.get(hop) {
                Some(r) if *r > 0.0 => secs += v.frames as f64 / r,
                _ => known = false,
            }
        }
        plan.estimated_seconds = known.then_some(secs);
        Ok(plan)
    }
}
