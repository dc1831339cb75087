//! What a move is asked to do (`MigrateRequest`, parsed from JS options here) and what it reports
//! (`MigrateReport`: every frame moved, held back, skipped with its reason, or failed with its code).

use serde::Serialize;
use serde_json::Value;

use crate::model::units::parse_duration_ms;
use crate::model::values::{Fields, Kind};
use crate::model::{Result, Tier, TierError};

/// A `migrate` call: where to, and which frames (all of the source tiers, or by id, project, age,
/// with a limit). Serialised into its run (`tier_runs.request`), which a resume runs again.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrateRequest {
    pub to: Tier,
    pub frame_ids: Option<Vec<String>>,
    pub older_than_ms: Option<u64>,
    pub project_id: Option<String>,
    pub limit: Option<usize>,
    pub dry_run: bool,
    /// With `frame_ids`, a demotion takes each frame's closed subtree along (default true).
    pub subtrees: bool,
    /// The bulk run this request is a batch of (its moves are journaled under it).
    pub run_id: Option<String>,
}

impl MigrateRequest {
    /// All frames that may go to `to`.
    pub fn to(to: Tier) -> MigrateRequest {
        MigrateRequest {
            to,
            frame_ids: None,
            older_than_ms: None,
            project_id: None,
            limit: None,
            dry_run: false,
            subtrees: true,
            run_id: None,
        }
    }

    /// These frames (and, for a demotion, their closed descendants) to `to`.
    pub fn frames(to: Tier, ids: Vec<String>) -> MigrateRequest {
        MigrateRequest { frame_ids: Some(ids), ..MigrateRequest::to(to) }
    }

    /// `{ toTier, frameIds?, olderThan?, projectId?, limit?, dryRun? }` as JS passes it.
    /// The fields `migrate()` takes.
    pub const KEYS: [&'static str; 6] = ["toTier", "frameIds", "olderThan", "projectId", "limit", "dryRun"];

    pub fn from_json(v: &Value) -> Result<MigrateRequest> {
        Self::parse(v, &[])
    }

    /// `from_json` for a call that also takes the fields `extra` (a run's options), parsed elsewhere.
    pub fn parse(v: &Value, extra: &[&str]) -> Result<MigrateRequest> {
        if !v.is_object() {
            return Err(TierError::invalid_argument("options", "must be an object such as { toTier: 'warm' }"));
        }
        let o = Fields::root(v, "", Kind::Argument)?;
        let known: Vec<&str> = Self::KEYS.iter().chain(extra).copied().collect();
        o.known(&known)?;
        let to = match o.get("toTier") {
            None => return Err(o.fail("toTier", "is required: 1|2|3 or 'hot'|'warm'|'cold'")),
            Some(t) => Tier::from_json(t).ok_or_else(|| o.fail("toTier", "must be 1|2|3 or 'hot'|'warm'|'cold'"))?,
        };
        let older_than_ms = match o.get("olderThan") {
            None => None,
            Some(Value::Number(n)) => Some(n.as_u64().ok_or_else(|| o.fail("olderThan", "must be non-negative ms"))?),
            Some(Value::String(s)) => Some(
                parse_duration_ms(s).ok_or_else(|| o.fail("olderThan", "must be ms or a duration such as '24h'"))?,
            ),
            Some(_) => return Err(o.fail("olderThan", "must be ms or a duration such as '24h'")),
        };
        let limit = match o.get("limit") {
            None => None,
            Some(v) => {
                Some(v.as_u64().filter(|n| *n >= 1).ok_or_else(|| o.fail("limit", "must be a positive integer"))?
                    as usize)
            }
        };
        let dry_run = match o.get("dryRun") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(o.fail("dryRun", "must be a boolean")),
        };
        let project_id = match o.get("projectId") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(o.fail("projectId", "must be a string")),
        };
        Ok(MigrateRequest {
            to,
            frame_ids: o.opt_strings("frameIds")?,
            older_than_ms,
            project_id,
            limit,
            dry_run,
            subtrees: true,
            run_id: None,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Moved {
    pub frame_id: String,
    pub from: &'static str,
    pub to: &'static str,
}

impl Moved {
    pub fn new(frame_id: &str, from: Tier, to: Tier) -> Moved {
        Moved { frame_id: frame_id.to_string(), from: from.as_str(), to: to.as_str() }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    pub frame_id: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failed {
    pub frame_id: String,
    pub code: String,
    pub error: String,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrateReport {
    pub to_tier: &'static str,
    pub dry_run: bool,
    pub moved: Vec<Moved>,
    /// Frames that went warm with their full rows kept in SQLite, and why.
    pub held_back: Vec<Skipped>,
    pub skipped: Vec<Skipped>,
    pub skipped_count: usize,
    pub failed: Vec<Failed>,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub duration_ms: f64,
    /// Counts kept when the lists are not (bulk runs): moved and failed frames.
    #[serde(skip_serializing_if = "is_zero")]
    pub moved_count: usize,
    #[serde(skip_serializing_if = "is_zero")]
    pub failed_count: usize,
    /// The run this report is of (every `migrate` is a run, see `listMigrations`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Stopped by a cancel before the end (`resumeMigration(runId)` continues it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cancelled: bool,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Listing every skipped frame of a bulk move would be huge; the count is always exact.
const MAX_LISTED_SKIPS: usize = 1000;

impl MigrateReport {
    pub(super) fn skip(&mut self, frame_id: &str, reason: impl Into<String>) {
        self.skipped_count += 1;
        if self.skipped.len() < MAX_LISTED_SKIPS {
            self.skipped.push(Skipped { frame_id: frame_id.to_string(), reason: reason.into() });
        }
    }
    /// Adds a batch's report; with `collect` false only the counts (a bulk run of a million
    /// frames must not hold a million entries).
    pub(super) fn absorb(&mut self, mut part: MigrateReport, collect: bool) {
        self.bytes_before += part.bytes_before;
        self.bytes_after += part.bytes_after;
        self.skipped_count += part.skipped_count;
        if collect {
            self.moved.append(&mut part.moved);
            self.held_back.append(&mut part.held_back);
            self.failed.append(&mut part.failed);
            let room = MAX_LISTED_SKIPS.saturating_sub(self.skipped.len());
            self.skipped.extend(part.skipped.into_iter().take(room));
        } else {
            self.moved_count += part.moved.len();
            self.failed_count += part.failed.len();
            let room = MAX_LISTED_SKIPS.saturating_sub(self.failed.len());
            self.failed.extend(part.failed.into_iter().take(room));
        }
    }

    /// Frames that wait for `tier` (down or not enabled): a later move takes them.
    pub(super) fn defer(&mut self, ids: &[String], tier: Tier, why: &str) {
        for id in ids {
            self.skip(id, format!("deferred: {} tier unreachable ({why})", tier.as_str()));
        }
    }

    pub(super) fn fail(&mut self, ids: &[String], e: &TierError) {
        for id in ids {
            self.failed.push(Failed { frame_id: id.clone(), code: e.code().into(), error: e.to_string() });
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryReport {
    pub finished: usize,
    pub rolled_back: usize,
    pub pending: usize,
}
