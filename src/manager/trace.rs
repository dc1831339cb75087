//! `recordTrace`: every read and write as one JSON line, for the simulator; and `simulate()`, the
//! simulator's entry with the shipped traces by name.

use std::io::Write;

use serde_json::{json, Value};

use super::TierManager;
use crate::model::Result;

impl TierManager {
    pub(super) fn trace(&self, frame_id: &str, size: i64, now: i64, write: bool) {
        let Ok(mut guard) = self.inner.trace.lock() else { return };
        if let Some(w) = guard.as_mut() {
            let line = json!({"frameId": frame_id, "sizeBytes": size.max(0), "t": now, "op": if write { "write" } else { "read" }});
            // A trace that cannot be written is dropped, never an error of the read it records.
            if writeln!(w, "{line}").is_err() {
                *guard = None;
            }
        }
    }

    pub(super) fn flush_trace(&self) {
        if let Ok(mut guard) = self.inner.trace.lock() {
            if let Some(w) = guard.as_mut() {
                let r = w.flush().map_err(|e| crate::model::TierError::storage("recordTrace", e));
                crate::obs::log_err("flushing the access trace", r);
            }
        }
    }
}

/// `simulate(trace, options)`: replays a trace against our policy and the baselines. `trace` is
/// an array of events, JSON-lines text, or the name of a generator (`sessions`, `periodic`,
/// `read-once`, `mixed`, `fortnight`; `options.seed`, default 42, and `options.days`).
pub fn simulate(trace: &Value, options: &Value) -> Result<Value> {
    crate::sim::simulate_json(trace, options)
}
