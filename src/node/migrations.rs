//! `TierManager`'s bulk-run and verification methods (the same JS class as `tier_manager.rs`):
//! plan, start, resume, cancel, wait, status, list, roll back, verify. Progress reaches JS through
//! a threadsafe function called without blocking the run (a slow callback drops nothing but
//! delays nothing either: napi queues the calls).

use std::sync::Arc;

use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
use napi_derive::napi;
use serde_json::Value;

use super::error::{js, report_text};
use super::tier_manager::TierManager;
use crate::manager::requests::{list_limit_arg, run_id_arg};
use crate::manager::runs::{start_request, ProgressSink};
use crate::manager::verify::VerifyRequest;
use crate::moves::{MigrateRequest, Progress};

/// The JS `onProgress` callback, called with one JSON text argument (`index.js` parses it).
type ProgressFn = ThreadsafeFunction<String, napi::Unknown<'static>, String, Status, false>;

fn sink(f: Option<ProgressFn>) -> Option<ProgressSink> {
    let f = Arc::new(f?);
    Some(Arc::new(move |p: &Progress| {
        if let Ok(text) = serde_json::to_string(p) {
            f.call(text, ThreadsafeFunctionCallMode::NonBlocking);
        }
    }))
}

#[napi]
impl TierManager {
    /// Move frames to a tier, as a run that is awaited: every frame it moved, held back, skipped or
    /// failed is in the report, with the run's id.
    #[napi(ts_args_type = "options: MigrateOptions | StartMigrationOptions", ts_return_type = "Promise<MigrateReport>")]
    pub async fn migrate(&self, options: Value, on_progress: Option<ProgressFn>) -> napi::Result<String> {
        let (req, opts) = js(start_request(&options, self.inner.batch_size()))?;
        report_text(self.inner.migrate_run(req, opts, sink(on_progress)).await)
    }

    /// What a migration would move (per hop, per project, skipped and why, an estimated time);
    /// changes nothing.
    #[napi(ts_args_type = "options: MigrateOptions", ts_return_type = "Promise<MigrationPlan>")]
    pub async fn plan_migration(&self, options: Value) -> napi::Result<String> {
        report_text(self.inner.plan_migration(js(MigrateRequest::from_json(&options))?).await)
    }

    /// Starts a bulk run in the background; resolves to its run id at once.
    #[napi(ts_args_type = "options: StartMigrationOptions", ts_return_type = "Promise<string>")]
    pub async fn start_migration(&self, options: Value, on_progress: Option<ProgressFn>) -> napi::Result<String> {
        let (req, opts) = js(start_request(&options, self.inner.batch_size()))?;
        js(self.inner.start_migration(req, opts, sink(on_progress)).await)
    }

    /// Continues a stopped run (killed, cancelled, failed) from its checkpoint; resolves to its id.
    #[napi(ts_args_type = "runId: string, options?: RunCallbacks", ts_return_type = "Promise<string>")]
    pub async fn resume_migration(&self, run_id: Value, on_progress: Option<ProgressFn>) -> napi::Result<String> {
        js(self.inner.resume_migration(&js(run_id_arg(&run_id))?, sink(on_progress)).await)
    }

    /// Asks a run of this process to stop at its next batch; false when it is not running here.
    #[napi(ts_args_type = "runId: string")]
    pub fn cancel_migration(&self, run_id: Value) -> napi::Result<bool> {
        js(self.inner.cancel_migration(&js(run_id_arg(&run_id))?))
    }

    #[napi(ts_args_type = "runId: string", ts_return_type = "Promise<MigrationStatus>")]
    pub async fn wait_for_migration(&self, run_id: Value) -> napi::Result<String> {
        report_text(self.inner.wait_for_migration(&js(run_id_arg(&run_id))?).await)
    }

    #[napi(ts_args_type = "runId: string", ts_return_type = "Promise<MigrationStatus>")]
    pub async fn migration_status(&self, run_id: Value) -> napi::Result<String> {
        report_text(self.inner.migration_status(&js(run_id_arg(&run_id))?).await)
    }

    #[napi(ts_args_type = "options?: { limit?: number }", ts_return_type = "Promise<MigrationStatus[]>")]
    pub async fn list_migrations(&self, options: Option<Value>) -> napi::Result<String> {
        report_text(self.inner.list_migrations(js(list_limit_arg(options.as_ref()))?).await)
    }

    /// Moves every frame a run moved back where it came from; frames changed since are refused.
    #[napi(ts_args_type = "runId: string", ts_return_type = "Promise<RollbackReport>")]
    pub async fn rollback_migration(&self, run_id: Value) -> napi::Result<String> {
        report_text(self.inner.rollback_migration(&js(run_id_arg(&run_id))?).await)
    }

    /// Every frame's copies checked against its bookkeeping; `repair` fixes what it can.
    #[napi(ts_args_type = "options?: VerifyOptions", ts_return_type = "Promise<VerifyReport>")]
    pub async fn verify(&self, options: Option<Value>) -> napi::Result<String> {
        report_text(self.inner.verify(js(VerifyRequest::from_json(options.as_ref()))?).await)
    }
}
