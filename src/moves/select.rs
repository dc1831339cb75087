//! Which frames a request moves, frame by frame: the target tier's sources, the rules of
//! `model::rules` (never an active frame; a pinned one only when named) and `olderThan`. Every
//! frame asked for by name and not moved is reported with its reason; the pages of frames come from
//! `run.rs`.

use super::report::{MigrateReport, MigrateRequest};
use super::Mover;
use crate::model::rules::{self, Subject};
use crate::model::Tier;
use crate::tiers::hot::Candidate;

impl Mover {
    /// Whether `c` moves under `req` (`explicit`: the caller named the frames); what does not is
    /// reported when the caller named it or a rule refused it.
    pub(super) fn choose(
        &self,
        c: &Candidate,
        req: &MigrateRequest,
        explicit: bool,
        now_s: i64,
        report: &mut MigrateReport,
    ) -> bool {
        let to = req.to;
        let Some(from) = Tier::from_level(c.tier) else {
            report.skip(&c.frame_id, "its archived body expired (retention); nothing to move");
            return false;
        };
        // A warm frame held back (body still local) is unfinished: moving it on is allowed.
        let held_warm = from == Tier::Warm && c.body_local;
        if from == to && !(held_warm && to == Tier::Warm) {
            if explicit {
                report.skip(&c.frame_id, format!("already in the {} tier", to.as_str()));
            }
            return false;
        }
        // Without explicit ids only frames of the tiers a run walks come here (`run::sources`).
        let demotion = rules::is_demotion(from, to) || held_warm;
        if let Err(refusal) = rules::check(Subject { active: c.active, pinned: c.pinned }, demotion, explicit) {
            report.skip(&c.frame_id, refusal.report_reason());
            return false;
        }
        if let Some(ms) = req.older_than_ms {
            let t = c.closed_s.or(c.created_s).unwrap_or(now_s);
            if (now_s - t) * 1000 < ms as i64 {
                if explicit {
                    report.skip(&c.frame_id, "younger than olderThan");
                }
                return false;
            }
        }
        true
    }
}
