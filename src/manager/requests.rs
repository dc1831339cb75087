//! The manager's method arguments as JS passes them, turned into typed requests here: validated with
//! named-field errors (`ERR_INVALID_ARGUMENT`) and given their defaults, so the napi glue only
//! converts types. `MigrateRequest::from_json` lives with its type in `moves`.

use serde_json::Value;

use crate::model::frame::MAX_ID_LEN;
use crate::model::values::{Fields, Kind};
use crate::model::{Result, Tier, TierError};

/// Most hits one search returns; `limit` defaults to `DEFAULT_SEARCH_LIMIT`.
pub const MAX_SEARCH_LIMIT: u32 = 1000;
pub const DEFAULT_SEARCH_LIMIT: u32 = 20;
pub use crate::model::frame::MAX_QUERY_BYTES;

/// A frame id argument: a non-empty string of at most `MAX_ID_LEN` characters.
pub fn frame_id_arg(v: &Value) -> Result<String> {
    let s = v.as_str().ok_or_else(|| TierError::invalid_argument("frameId", "must be a string"))?;
    check_frame_id(s)?;
    Ok(s.to_string())
}

/// A run id argument (`startMigration`'s result).
pub fn run_id_arg(v: &Value) -> Result<String> {
    match v.as_str() {
        Some(s) if !s.is_empty() && s.len() <= 100 => Ok(s.to_string()),
        _ => Err(TierError::invalid_argument("runId", "must be a run id string (startMigration's result)")),
    }
}

/// `listMigrations({ limit? })`: how many runs, newest first (default 50).
pub fn list_limit_arg(v: Option<&Value>) -> Result<usize> {
    let o = Fields::root(v.unwrap_or(&Value::Null), "options", Kind::Argument)?;
    o.known(&["limit"])?;
    Ok(o.int("limit", 50, 1, 10_000)? as usize)
}

pub fn check_frame_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(TierError::invalid_argument("frameId", "must be a non-empty string of at most 512 characters"));
    }
    Ok(())
}

/// A tier argument (`1|2|3`, `'hot'|'warm'|'cold'`); `field` names it in errors.
pub fn tier_arg(v: &Value, field: &str) -> Result<Tier> {
    Tier::from_json(v).ok_or_else(|| TierError::invalid_argument(field, "must be 1|2|3 or 'hot'|'warm'|'cold'"))
}

/// `storeMany`'s argument: an array of bundles (each validated by `normalize_bundle`).
pub fn bundles_arg(v: Value) -> Result<Vec<Value>> {
    match v {
        Value::Array(list) => Ok(list),
        _ => Err(TierError::invalid_argument("bundles", "must be an array")),
    }
}

fn options(v: Option<&Value>) -> Result<Fields<'_>> {
    Fields::root(v.unwrap_or(&Value::Null), "options", Kind::Argument)
}

fn opt_bool(o: &Fields<'_>, key: &str) -> Result<Option<bool>> {
    match o.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(o.fail(key, "must be a boolean")),
    }
}

/// `retrieve(frameId, { promote? })`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetrieveOptions {
    /// `Some(true)` promotes now, `Some(false)` never, `None` by `promotionThreshold`.
    pub promote: Option<bool>,
}

impl RetrieveOptions {
    pub fn from_json(v: Option<&Value>) -> Result<RetrieveOptions> {
        Ok(RetrieveOptions { promote: opt_bool(&options(v)?, "promote")? })
    }
}

/// `search(query, { projectId?, limit?, tiers? })`.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    pub query: String,
    pub project_id: Option<String>,
    /// 1..=`MAX_SEARCH_LIMIT`, default `DEFAULT_SEARCH_LIMIT`.
    pub limit: u32,
    /// Only hits in these tiers (all when `None`).
    pub tiers: Option<Vec<Tier>>,
}

impl SearchRequest {
    pub fn new(query: impl Into<String>) -> SearchRequest {
        SearchRequest { query: query.into(), project_id: None, limit: DEFAULT_SEARCH_LIMIT, tiers: None }
    }

    pub fn from_json(query: &Value, opts: Option<&Value>) -> Result<SearchRequest> {
        let query = query.as_str().ok_or_else(|| TierError::invalid_argument("query", "must be a string"))?;
        let o = options(opts)?;
        let project_id = match o.get("projectId") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(o.fail("projectId", "must be a string")),
        };
        let limit = match o.get("limit") {
            None => DEFAULT_SEARCH_LIMIT,
            Some(v) => v
                .as_u64()
                .filter(|n| (1..=MAX_SEARCH_LIMIT as u64).contains(n))
                .ok_or_else(|| o.fail("limit", format!("must be 1-{MAX_SEARCH_LIMIT}")))? as u32,
        };
        let tiers = match o.get("tiers") {
            None => None,
            Some(Value::Array(a)) => Some(a.iter().map(|t| tier_arg(t, "options.tiers")).collect::<Result<Vec<_>>>()?),
            Some(_) => return Err(o.fail("tiers", "must be an array of tiers")),
        };
        let req = SearchRequest { query: query.to_string(), project_id, limit, tiers };
        req.check()?;
        Ok(req)
    }

    /// The query's own rules (also for requests built in Rust).
    pub fn check(&self) -> Result<()> {
        if self.query.trim().is_empty() {
            return Err(TierError::invalid_argument("query", "must not be empty"));
        }
        if self.query.len() > MAX_QUERY_BYTES {
            return Err(TierError::invalid_argument("query", format!("longer than {MAX_QUERY_BYTES} bytes")));
        }
        if !(1..=MAX_SEARCH_LIMIT).contains(&self.limit) {
            return Err(TierError::invalid_argument("options.limit", format!("must be 1-{MAX_SEARCH_LIMIT}")));
        }
        Ok(())
    }

    pub fn wants(&self, t: Tier) -> bool {
        self.tiers.as_ref().is_none_or(|ts| ts.contains(&t))
    }
}

/// `runCycle({ dryRun? })`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CycleOptions {
    pub dry_run: bool,
}

impl CycleOptions {
    pub fn from_json(v: Option<&Value>) -> Result<CycleOptions> {
        Ok(CycleOptions { dry_run: opt_bool(&options(v)?, "dryRun")?.unwrap_or(false) })
    }
}

/// `forceDemote(frameId, tier)`: the tier must be colder than hot.
pub fn demotion_tier_arg(v: &Value) -> Result<Tier> {
    match tier_arg(v, "tier")? {
        Tier::Hot => Err(TierError::invalid_argument("tier", "must be 'warm' or 'cold' (use forcePromote for hot)")),
        t => Ok(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(e: TierError) -> String {
        match e {
            TierError::InvalidArgument { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn arguments_are_validated_with_the_field_named() {
        assert_eq!(field(frame_id_arg(&json!(42)).expect_err("number")), "frameId");
        assert_eq!(field(frame_id_arg(&json!("")).expect_err("empty")), "frameId");
        assert_eq!(
            field(RetrieveOptions::from_json(Some(&json!({"promote": "yes"}))).expect_err("bool")),
            "options.promote"
        );
        assert_eq!(field(SearchRequest::from_json(&json!(5), None).expect_err("query")), "query");
        assert_eq!(
            field(SearchRequest::from_json(&json!("x"), Some(&json!({"limit": 0}))).expect_err("0")),
            "options.limit"
        );
        assert_eq!(
            field(SearchRequest::from_json(&json!("x"), Some(&json!({"tiers": ["lukewarm"]}))).expect_err("tier")),
            "options.tiers"
        );
        assert_eq!(field(demotion_tier_arg(&json!("hot")).expect_err("hot")), "tier");
        assert_eq!(field(bundles_arg(json!("nope")).expect_err("array")), "bundles");
        let s = SearchRequest::from_json(&json!("backoff"), None).expect("defaults");
        assert_eq!((s.limit, s.tiers.is_none()), (DEFAULT_SEARCH_LIMIT, true));
        assert!(CycleOptions::from_json(Some(&json!({"dryRun": true}))).expect("ok").dry_run);
    }
}
