//! Which frames a `migrate` request moves: its ids (with the closed subtree of each), project, age
//! and limit, the frames of the tiers the target can take them from, and the rules of
//! `model::rules` (never an active frame; a pinned one only when named). Every frame asked for by
//! name and not moved is reported with its reason.

use std::collections::HashSet;

use super::report::{MigrateReport, MigrateRequest};
use super::Mover;
use crate::model::rules::{self, Subject};
use crate::model::units::now_seconds;
use crate::model::{Result, Tier};
use crate::tiers::hot::{Candidate, CandidateFilter};

impl Mover {
    pub(super) async fn select(&self, req: &MigrateRequest, report: &mut MigrateReport) -> Result<Vec<Candidate>> {
        let to = req.to;
        let explicit = req.frame_ids.is_some();
        let mut frame_ids = req.frame_ids.clone();
        if let Some(ids) = &mut frame_ids {
            if to != Tier::Hot && req.subtrees {
                // A closed frame and its closed descendants move together.
                let asked = ids.clone();
                *ids = self.hot.call(move |hot| hot.with_closed_descendants(&asked)).await?;
            }
        }
        // Without explicit ids only frames of the other tiers can move (and warm frames held back,
        // which finish their move to warm): let SQLite skip the rest.
        let tiers = match (explicit, to) {
            (true, _) => None,
            (false, Tier::Hot) => Some(vec![Tier::Warm, Tier::Cold]),
            (false, _) => Some(vec![Tier::Hot, Tier::Warm]),
        };
        let filter = CandidateFilter { project_id: req.project_id.clone(), frame_ids, tiers };
        let cands = self.hot.call(move |hot| hot.candidates(&filter)).await?;
        if let Some(ids) = &req.frame_ids {
            let found: HashSet<&str> = cands.iter().map(|c| c.frame_id.as_str()).collect();
            for id in ids.iter().filter(|id| !found.contains(id.as_str())) {
                report.skip(id, "unknown frame");
            }
        }
        let now = now_seconds();
        let mut chosen: Vec<Candidate> = vec![];
        for c in cands {
            let from = Tier::from_level(c.tier).unwrap_or(Tier::Hot);
            // A warm frame held back (body still local) is unfinished: moving it on is allowed.
            let held_warm = from == Tier::Warm && c.body_local;
            if from == to && !(held_warm && to == Tier::Warm) {
                if explicit {
                    report.skip(&c.frame_id, format!("already in the {} tier", to.as_str()));
                }
                continue;
            }
            let demotion = rules::is_demotion(from, to) || held_warm;
            if let Err(refusal) = rules::check(Subject { active: c.active, pinned: c.pinned }, demotion, explicit) {
                report.skip(&c.frame_id, refusal.report_reason());
                continue;
            }
            if let Some(ms) = req.older_than_ms {
                let t = c.closed_s.or(c.created_s).unwrap_or(now);
                if (now - t) * 1000 < ms as i64 {
                    if explicit {
                        report.skip(&c.frame_id, "younger than olderThan");
                    }
                    continue;
                }
            }
            chosen.push(c);
            if req.limit.is_some_and(|l| chosen.len() >= l) {
                break;
            }
        }
        Ok(chosen)
    }
}
