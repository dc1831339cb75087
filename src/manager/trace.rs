//! `recordTrace`: every read and write as one JSON line, for the simulator; and `simulate()`, the
//! simulator's entry with the shipped traces by name.

use std::io::Write;

use serde_json::{json, Value};

use super::TierManager;
use crate::model::{Result, TierError};

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
/// an array of events, JSON-lines text, or the name of a shipped generator
/// (`sessions`, `periodic`, `read-once`, `mixed`; seed 42, 7 days).
pub fn simulate(trace: &Value, options: &Value) -> Result<Value> {
    use crate::sim::traces;
    let generated = match trace.as_str() {
        Some("sessions") => Some(traces::sessions(42, 7)),
        Some("periodic") => Some(traces::periodic(42, 7)),
        Some("read-once") => Some(traces::read_once(42, 7)),
        Some("mixed") => Some(traces::mixed(42, 7)),
        _ => None,
    };
    match generated {
        Some(events) => {
            let v = serde_json::to_value(&events).map_err(|e| TierError::storage("trace", e))?;
            crate::sim::simulate_json(&v, options)
        }
        None => crate::sim::simulate_json(trace, options),
    }
}
