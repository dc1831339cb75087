//! `TierManager` as a JS class: an async factory, then one core call per method.

use napi_derive::napi;
use serde_json::Value;

use super::error::{invalid_arg, to_js};
use crate::manager::config::TierConfig;
use crate::manager::{self, RetrieveOptions};
use crate::model::Tier;
use crate::moves::MigrateRequest;

#[napi(js_name = "TierManager")]
pub struct JsTierManager {
    inner: manager::TierManager,
}

#[napi]
impl JsTierManager {
    /// Open (or create) the hot tier's SQLite file and connect the configured remote tiers.
    #[napi(factory, ts_args_type = "config?: TierConfig")]
    pub async fn open(config: Option<Value>) -> napi::Result<JsTierManager> {
        let cfg = TierConfig::from_json(&config.unwrap_or(Value::Null)).map_err(to_js)?;
        let inner = manager::TierManager::open(cfg).await.map_err(to_js)?;
        Ok(JsTierManager { inner })
    }

    #[napi]
    pub async fn close(&self) -> napi::Result<()> {
        self.inner.close().await.map_err(to_js)
    }

    /// Store (upsert) one bundle; resolves to its new version.
    #[napi(ts_args_type = "bundle: FrameBundle")]
    pub async fn store(&self, bundle: Value) -> napi::Result<i64> {
        self.inner.store(bundle).await.map_err(to_js)
    }

    /// Store many bundles in one transaction (all or nothing); resolves to how many were stored.
    #[napi(ts_args_type = "bundles: FrameBundle[]")]
    pub async fn store_many(&self, bundles: Value) -> napi::Result<u32> {
        let Value::Array(list) = bundles else {
            return Err(invalid_arg("bundles", "must be an array"));
        };
        self.inner.store_many(list).await.map(|n| n as u32).map_err(to_js)
    }

    /// The bundle from whichever tier holds it, or null.
    #[napi(
        ts_args_type = "frameId: string, options?: { promote?: boolean }",
        ts_return_type = "Promise<FrameBundle | null>"
    )]
    pub async fn retrieve(&self, frame_id: Value, options: Option<Value>) -> napi::Result<Option<Value>> {
        let frame_id = string_arg(&frame_id, "frameId")?;
        let promote = match options.as_ref().and_then(|o| o.get("promote")) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err(invalid_arg("options.promote", "must be a boolean")),
        };
        self.inner.retrieve(&frame_id, RetrieveOptions { promote }).await.map_err(to_js)
    }

    #[napi(ts_args_type = "frameId: string")]
    pub async fn delete(&self, frame_id: Value) -> napi::Result<bool> {
        let frame_id = string_arg(&frame_id, "frameId")?;
        self.inner.delete(&frame_id).await.map_err(to_js)
    }

    #[napi(ts_return_type = "Promise<TierStatus>")]
    pub async fn status(&self) -> napi::Result<Value> {
        self.inner.status().await.map_err(to_js)
    }

    /// Move frames to a tier: `{ toTier, frameIds?, olderThan?, projectId?, limit?, dryRun? }`.
    #[napi(ts_args_type = "options: MigrateOptions", ts_return_type = "Promise<MigrateReport>")]
    pub async fn migrate(&self, options: Value) -> napi::Result<String> {
        let req = migrate_request(&options)?;
        let rep = self.inner.migrate(req).await.map_err(to_js)?;
        // As JSON text (index.js parses it): a report of 100k frames is over napi's 1M-value
        // limit for converting a serde value.
        serde_json::to_string(&rep).map_err(|e| invalid_arg("report", e))
    }

    #[napi(
        ts_args_type = "query: string, options?: { projectId?: string, limit?: number, tiers?: Array<TierName | 1 | 2 | 3> }",
        ts_return_type = "Promise<SearchResult>"
    )]
    pub async fn search(&self, query: Value, options: Option<Value>) -> napi::Result<Value> {
        let query = string_arg(&query, "query")?;
        let o = options.unwrap_or(Value::Null);
        let project = opt_str(&o, "projectId")?;
        let limit = match o.get("limit") {
            None | Some(Value::Null) => 20,
            Some(v) => v
                .as_u64()
                .filter(|n| *n >= 1 && *n <= 1000)
                .ok_or_else(|| invalid_arg("options.limit", "must be 1-1000"))? as u32,
        };
        let tiers = match o.get("tiers") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(a.iter().map(parse_tier).collect::<napi::Result<Vec<_>>>()?),
            Some(_) => return Err(invalid_arg("options.tiers", "must be an array of tiers")),
        };
        self.inner.search(&query, project, limit, tiers).await.map_err(to_js)
    }

    #[napi(ts_return_type = "Promise<CompactReport>")]
    pub async fn compact(&self) -> napi::Result<Value> {
        self.inner.compact().await.map_err(to_js)
    }
}

#[napi]
impl JsTierManager {
    /// Pin a frame: never demoted automatically (the pinned total is capped by `policies.maxPinnedBytes`).
    #[napi(ts_args_type = "frameId: string", ts_return_type = "Promise<PinResult>")]
    pub async fn pin(&self, frame_id: Value) -> napi::Result<Value> {
        let frame_id = string_arg(&frame_id, "frameId")?;
        self.inner.pin(&frame_id).await.map_err(to_js)
    }

    #[napi(ts_args_type = "frameId: string", ts_return_type = "Promise<PinResult>")]
    pub async fn unpin(&self, frame_id: Value) -> napi::Result<Value> {
        let frame_id = string_arg(&frame_id, "frameId")?;
        self.inner.unpin(&frame_id).await.map_err(to_js)
    }

    /// Bring a frame back to hot now, bypassing the anti-churn filters.
    #[napi(ts_args_type = "frameId: string", ts_return_type = "Promise<PolicyDecision>")]
    pub async fn force_promote(&self, frame_id: Value) -> napi::Result<Value> {
        let frame_id = string_arg(&frame_id, "frameId")?;
        self.inner.force_move(&frame_id, Tier::Hot).await.map_err(to_js)
    }

    /// Move a frame to a colder tier now, bypassing the filters (never an active frame).
    #[napi(ts_args_type = "frameId: string, tier: TierRef", ts_return_type = "Promise<PolicyDecision>")]
    pub async fn force_demote(&self, frame_id: Value, tier: Value) -> napi::Result<Value> {
        let frame_id = string_arg(&frame_id, "frameId")?;
        let to = parse_tier(&tier)?;
        if to == Tier::Hot {
            return Err(invalid_arg("tier", "must be 'warm' or 'cold' (use forcePromote for hot)"));
        }
        self.inner.force_move(&frame_id, to).await.map_err(to_js)
    }

    /// What the policy engine knows and expects of a frame.
    #[napi(ts_args_type = "frameId: string", ts_return_type = "Promise<Explanation>")]
    pub async fn explain(&self, frame_id: Value) -> napi::Result<Value> {
        let frame_id = string_arg(&frame_id, "frameId")?;
        self.inner.explain(&frame_id).await.map_err(to_js)
    }

    /// One policy cycle; with `dryRun` nothing changes. Every decision is reported.
    #[napi(ts_args_type = "options?: { dryRun?: boolean }", ts_return_type = "Promise<CycleReport>")]
    pub async fn run_cycle(&self, options: Option<Value>) -> napi::Result<String> {
        let dry_run = match options.as_ref().and_then(|o| o.get("dryRun")) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(invalid_arg("options.dryRun", "must be a boolean")),
        };
        // As JSON text, like `migrate`: a cycle over 100k frames reports 100k decisions.
        let v = self.inner.run_cycle(dry_run).await.map_err(to_js)?;
        serde_json::to_string(&v).map_err(|e| invalid_arg("report", e))
    }
}

/// Replay an access trace against our policy and LRU, LFU, S3-FIFO and Belady's optimum.
#[napi(
    ts_args_type = "trace: TraceEvent[] | string, options?: SimulateOptions",
    ts_return_type = "Promise<SimulationReport>"
)]
pub async fn simulate(trace: Value, options: Option<Value>) -> napi::Result<Value> {
    let opts = options.unwrap_or(Value::Null);
    tokio::task::spawn_blocking(move || manager::simulate(&trace, &opts))
        .await
        .map_err(|e| invalid_arg("simulate", e))?
        .map_err(to_js)
}

fn string_arg(v: &Value, name: &str) -> napi::Result<String> {
    v.as_str().map(str::to_string).ok_or_else(|| invalid_arg(name, "must be a string"))
}

fn opt_str(o: &Value, key: &str) -> napi::Result<Option<String>> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid_arg(&format!("options.{key}"), "must be a string")),
    }
}

fn parse_tier(v: &Value) -> napi::Result<Tier> {
    let t = match v {
        Value::Number(n) => n.as_i64().and_then(Tier::from_level),
        Value::String(s) => Tier::parse(s),
        _ => None,
    };
    t.ok_or_else(|| invalid_arg("toTier", "must be 1|2|3 or 'hot'|'warm'|'cold'"))
}

fn migrate_request(o: &Value) -> napi::Result<MigrateRequest> {
    if !o.is_object() {
        return Err(invalid_arg("options", "must be an object such as { toTier: 'warm' }"));
    }
    let to = match o.get("toTier") {
        None | Some(Value::Null) => return Err(invalid_arg("toTier", "is required: 1|2|3 or 'hot'|'warm'|'cold'")),
        Some(v) => parse_tier(v)?,
    };
    let frame_ids = match o.get("frameIds") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|x| x.as_str().map(str::to_string).ok_or_else(|| invalid_arg("frameIds", "must be strings")))
                .collect::<napi::Result<Vec<_>>>()?,
        ),
        Some(_) => return Err(invalid_arg("frameIds", "must be an array of strings")),
    };
    let older_than_ms = match o.get("olderThan") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.as_u64().ok_or_else(|| invalid_arg("olderThan", "must be non-negative ms"))?),
        Some(Value::String(s)) => Some(
            crate::model::units::parse_duration_ms(s)
                .ok_or_else(|| invalid_arg("olderThan", "must be ms or a duration such as '24h'"))?,
        ),
        Some(_) => return Err(invalid_arg("olderThan", "must be ms or a duration such as '24h'")),
    };
    let limit = match o.get("limit") {
        None | Some(Value::Null) => None,
        Some(v) => {
            Some(v.as_u64().filter(|n| *n >= 1).ok_or_else(|| invalid_arg("limit", "must be a positive integer"))?
                as usize)
        }
    };
    let dry_run = match o.get("dryRun") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid_arg("dryRun", "must be a boolean")),
    };
    Ok(MigrateRequest { to: Some(to), frame_ids, older_than_ms, project_id: opt_str(o, "projectId")?, limit, dry_run })
}
