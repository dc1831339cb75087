//! `TierManager`'s observability methods (the same JS class as `tier_manager.rs`): `stats()`,
//! `metrics()`; and the process-wide log sink `onLog` / `offLog`, a threadsafe function called
//! without blocking (weak: it never keeps Node alive).

use std::sync::Arc;

use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
use napi_derive::napi;
use serde_json::Value;

use super::error::{guarded, js};
use super::tier_manager::TierManager;
use crate::model::TierError;
use crate::obs::log::{add_sink, parse_level, remove_sink, LogRecord};

/// The JS `onLog` callback, called with one JSON text argument (`index.js` parses it).
type LogFn = ThreadsafeFunction<String, napi::Unknown<'static>, String, Status, false, true>;

#[napi]
impl TierManager {
    /// Latency histograms (p50/p90/p99/p99.9/max, µs) per tier and operation since open and over
    /// the last 60 s, hits per tier, moves by hop and outcome, compression, errors by code, backends.
    #[napi(ts_return_type = "TierStats")]
    pub fn stats(&self) -> napi::Result<Value> {
        guarded(|| js(self.inner.stats()))
    }

    /// The same figures in Prometheus' text exposition format (0.0.4).
    #[napi]
    pub fn metrics(&self) -> napi::Result<String> {
        guarded(|| js(self.inner.metrics()))
    }
}

/// Registers a log sink for records at `level` (default `'warn'`) or more severe; returns its id.
#[napi(skip_typescript)]
pub fn on_log(callback: LogFn, level: Option<String>) -> napi::Result<u32> {
    guarded(|| {
        let lv = level.as_deref().unwrap_or("warn");
        let lv = parse_level(lv).ok_or_else(|| {
            super::error::js_err(TierError::invalid_argument(
                "options.level",
                "must be 'error', 'warn', 'info', 'debug' or 'trace'",
            ))
        })?;
        let f = Arc::new(callback);
        let id = add_sink(
            lv,
            Arc::new(move |r: &LogRecord| {
                if let Ok(text) = serde_json::to_string(r) {
                    f.call(text, ThreadsafeFunctionCallMode::NonBlocking);
                }
            }),
        );
        Ok(id as u32)
    })
}

/// Removes a sink `onLog` registered; false when it was gone.
#[napi(skip_typescript)]
pub fn off_log(id: u32) -> bool {
    remove_sink(id as u64)
}
