//! `simulate(trace, options)` as a JS function: the simulator runs on tokio's blocking pool.

use napi_derive::napi;
use serde_json::Value;

use super::error::js;
use crate::model::TierError;

/// Replay an access trace against our policy and LRU, LFU, S3-FIFO and Belady's optimum.
// napi registers it with Node outside `cfg(test)` only, so a test build sees no caller.
#[cfg_attr(test, allow(dead_code))]
#[napi(
    ts_args_type = "trace: TraceEvent[] | string, options?: SimulateOptions",
    ts_return_type = "Promise<SimulationReport>"
)]
pub async fn simulate(trace: Value, options: Option<Value>) -> napi::Result<Value> {
    let opts = options.unwrap_or(Value::Null);
    let run = tokio::task::spawn_blocking(move || crate::manager::simulate(&trace, &opts)).await;
    js(run.map_err(|e| TierError::storage("simulate", e)).and_then(|r| r))
}
