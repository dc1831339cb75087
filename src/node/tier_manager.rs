//! `TierManager` as a JS class: an async factory, then one core call per method. Arguments are
//! converted by the core's request parsers (`manager::requests`, `MigrateRequest::from_json`);
//! nothing is decided here.

use napi_derive::napi;
use serde_json::Value;

use super::error::{guarded, js, report_text};
use crate::manager::config::TierConfig;
use crate::manager::gc::GcRequest;
use crate::manager::requests::{
    bundles_arg, demotion_tier_arg, frame_id_arg, CycleOptions, RetrieveOptions, SearchRequest,
};
use crate::manager::status::CompactRequest;
use crate::manager::TierManager as Manager;
use crate::model::Tier;
use crate::tiers::hot::HotBody;

/// Named as the JS class it is, so napi-derive names every impl block of it (also those in other
/// files, `migrations.rs`) the same way.
#[napi]
pub struct TierManager {
    pub(super) inner: Manager,
}

#[napi]
impl TierManager {
    /// Open (or create) the hot tier's SQLite file and connect the configured remote tiers.
    #[napi(factory, ts_args_type = "config?: TierConfig")]
    pub async fn open(config: Option<Value>) -> napi::Result<TierManager> {
        let cfg = js(TierConfig::from_json(&config.unwrap_or(Value::Null)))?;
        Ok(TierManager { inner: js(Manager::open(cfg).await)? })
    }

    #[napi]
    pub async fn close(&self) -> napi::Result<()> {
        js(self.inner.close().await)
    }

    /// Store (upsert) one bundle; resolves to its new version.
    #[napi(ts_args_type = "bundle: FrameBundle")]
    pub async fn store(&self, bundle: Value) -> napi::Result<i64> {
        js(self.inner.store(bundle).await)
    }

    /// Store many bundles in one transaction (all or nothing); resolves to how many were stored.
    #[napi(ts_args_type = "bundles: FrameBundle[]")]
    pub async fn store_many(&self, bundles: Value) -> napi::Result<u32> {
        js(self.inner.store_many(js(bundles_arg(bundles))?).await.map(|n| n as u32))
    }

    /// The bundle from whichever tier holds it, or null (it crosses as JSON text; index.js parses).
    #[napi(
        ts_args_type = "frameId: string, options?: { promote?: boolean }",
        ts_return_type = "Promise<FrameBundle | null>"
    )]
    pub async fn retrieve(&self, frame_id: Value, options: Option<Value>) -> napi::Result<Option<String>> {
        let (id, opts) = (js(frame_id_arg(&frame_id))?, js(RetrieveOptions::from_json(options.as_ref()))?);
        js(self.inner.retrieve(&id, opts).await)
    }

    /// The read path's fast lane, synchronous: a hot frame's bundle as JSON text, or null when its
    /// body is not in SQLite (remote, or no such frame). `options` are checked as `retrieve` does.
    #[napi(skip_typescript)]
    pub fn read_hot(&self, frame_id: Value, options: Option<Value>) -> napi::Result<Option<String>> {
        guarded(|| {
            js(RetrieveOptions::from_json(options.as_ref()))?;
            match js(self.inner.read_hot(&js(frame_id_arg(&frame_id))?))? {
                HotBody::Json(text) => Ok(Some(text)),
                HotBody::Remote(_) | HotBody::Missing => Ok(None),
            }
        })
    }

    /// A hot frame's bundle, synchronously, for StackMemory's synchronous call sites; null when its
    /// body is not in SQLite: `locate(frameId)` then says `'warm'`/`'cold'` (use `retrieve`) or
    /// null (no such frame). Never waits on the network.
    #[napi(ts_args_type = "frameId: string", ts_return_type = "FrameBundle | null")]
    pub fn retrieve_sync(&self, frame_id: Value) -> napi::Result<Option<String>> {
        self.read_hot(frame_id, None)
    }

    /// Which tier holds a frame's body (`'hot'`, `'warm'`, `'cold'`), or null when no tier knows
    /// it; synchronous, from SQLite's bookkeeping.
    #[napi(ts_args_type = "frameId: string", ts_return_type = "TierName | null")]
    pub fn locate(&self, frame_id: Value) -> napi::Result<Option<String>> {
        guarded(|| Ok(js(self.inner.locate(&js(frame_id_arg(&frame_id))?))?.map(|t| t.as_str().to_string())))
    }

    #[napi(ts_args_type = "frameId: string")]
    pub async fn delete(&self, frame_id: Value) -> napi::Result<bool> {
        js(self.inner.delete(&js(frame_id_arg(&frame_id))?).await)
    }

    #[napi(ts_return_type = "Promise<TierStatus>")]
    pub async fn status(&self) -> napi::Result<Value> {
        js(self.inner.status().await)
    }

    #[napi(
        ts_args_type = "query: string, options?: { projectId?: string, limit?: number, tiers?: Array<TierName | 1 | 2 | 3> }",
        ts_return_type = "Promise<SearchResult>"
    )]
    pub async fn search(&self, query: Value, options: Option<Value>) -> napi::Result<Value> {
        js(self.inner.search(js(SearchRequest::from_json(&query, options.as_ref()))?).await)
    }

    /// Bookkeeping after someone else wrote a frame (StackMemory's create and close hooks).
    #[napi(ts_args_type = "frameId: string")]
    pub async fn refresh(&self, frame_id: Value) -> napi::Result<bool> {
        js(self.inner.refresh(&js(frame_id_arg(&frame_id))?).await)
    }

    /// StackMemory's GC by its retention rules, each deleted frame first verified in the archive.
    #[napi(
        ts_args_type = "options?: { retentionDays?: number, batchSize?: number, dryRun?: boolean, force?: boolean, archiveOnly?: boolean }",
        ts_return_type = "Promise<GcReport>"
    )]
    pub async fn gc(&self, options: Option<Value>) -> napi::Result<String> {
        report_text(self.inner.gc(js(GcRequest::from_json(options.as_ref()))?).await)
    }

    /// Housekeeping: stale moves, orphans, the Redis cap, retention, SQLite space; with
    /// `reencode`, archived envelopes re-encoded with their project's current dictionary.
    #[napi(
        ts_args_type = "options?: { reencode?: boolean, projectId?: string, limit?: number }",
        ts_return_type = "Promise<CompactReport>"
    )]
    pub async fn compact(&self, options: Option<Value>) -> napi::Result<Value> {
        js(self.inner.compact(js(CompactRequest::from_json(options.as_ref()))?).await)
    }

    /// Train the project's zstd dictionary now, on its most recent frames in SQLite (default: the
    /// project with the most frames). Adopted for new envelopes when it gains 1.1x, or with `force`.
    #[napi(
        ts_args_type = "options?: { projectId?: string, force?: boolean }",
        ts_return_type = "Promise<TrainedDictionary>"
    )]
    pub async fn train_dictionary(&self, options: Option<Value>) -> napi::Result<Value> {
        let t = js(self.inner.train_dictionary(options.as_ref()).await)?;
        Ok(serde_json::to_value(t).unwrap_or_default())
    }
}

#[napi]
impl TierManager {
    /// Pin a frame: never demoted automatically (the pinned total is capped by `policies.maxPinnedBytes`).
    #[napi(ts_args_type = "frameId: string", ts_return_type = "Promise<PinResult>")]
    pub async fn pin(&self, frame_id: Value) -> napi::Result<Value> {
        js(self.inner.pin(&js(frame_id_arg(&frame_id))?).await)
    }

    #[napi(ts_args_type = "frameId: string", ts_return_type = "Promise<PinResult>")]
    pub async fn unpin(&self, frame_id: Value) -> napi::Result<Value> {
        js(self.inner.unpin(&js(frame_id_arg(&frame_id))?).await)
    }

    /// Bring a frame back to hot now, bypassing the anti-churn filters.
    #[napi(ts_args_type = "frameId: string", ts_return_type = "Promise<PolicyDecision>")]
    pub async fn force_promote(&self, frame_id: Value) -> napi::Result<Value> {
        js(self.inner.force_move(&js(frame_id_arg(&frame_id))?, Tier::Hot).await)
    }

    /// Move a frame to a colder tier now, bypassing the filters (never an active frame).
    #[napi(ts_args_type = "frameId: string, tier: TierRef", ts_return_type = "Promise<PolicyDecision>")]
    pub async fn force_demote(&self, frame_id: Value, tier: Value) -> napi::Result<Value> {
        let (id, to) = (js(frame_id_arg(&frame_id))?, js(demotion_tier_arg(&tier))?);
        js(self.inner.force_move(&id, to).await)
    }

    /// What the policy engine knows and expects of a frame.
    #[napi(ts_args_type = "frameId: string", ts_return_type = "Promise<Explanation>")]
    pub async fn explain(&self, frame_id: Value) -> napi::Result<Value> {
        js(self.inner.explain(&js(frame_id_arg(&frame_id))?).await)
    }

    /// One policy cycle; with `dryRun` nothing changes. Every decision is reported.
    #[napi(ts_args_type = "options?: { dryRun?: boolean }", ts_return_type = "Promise<CycleReport>")]
    pub async fn run_cycle(&self, options: Option<Value>) -> napi::Result<String> {
        let opts = js(CycleOptions::from_json(options.as_ref()))?;
        report_text(self.inner.run_cycle(opts.dry_run).await)
    }
}
