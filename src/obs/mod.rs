//! Observability: the `Recorder` (latency histograms, counts, moves), logs through `tracing` with
//! secrets redacted (`log`), and the two ways out: `stats()` as JSON and `metrics()` in
//! Prometheus' text exposition format (`export`). Knows no backend.

pub mod export;
pub mod log;
mod recorder;

pub use log::{failed, log_err, redact};
pub use recorder::{hop_name, Latency, MoveCounts, Recorder, Series, ServedBy, SLICE_SECS, WINDOW_SECS};
