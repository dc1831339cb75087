//! The value of keeping a frame hot: a weighted mean of four parts, each in `[0, 1]`.
//!
//! - recency `1 / (1 + age / 1 h)`: hyperbolic rather than exponential so that old frames still
//!   rank by age instead of all collapsing to 0;
//! - frequency `r / (r + 1)` with `r` the weighted reads per hour;
//! - pattern: how soon the classifier expects the next read, `1 / (1 + next / 1 h)`, scaled by
//!   its confidence; 0 when no reuse is expected (cold, read once);
//! - size `1 / (1 + size / 1 MB)`: a small frame costs little hot space.

use serde::{Deserialize, Serialize};

use super::access::AccessStats;
use super::options::ScoreWeights;
use super::pattern::Classification;

const RECENCY_SCALE_S: f64 = 3600.0;
const PATTERN_SCALE_S: f64 = 3600.0;
const SIZE_SCALE_BYTES: f64 = 1024.0 * 1024.0;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScoreParts {
    pub recency: f64,
    pub frequency: f64,
    pub pattern: f64,
    pub size: f64,
    /// The weighted mean of the parts.
    pub total: f64,
}

/// Scores a frame. `stats` is `None` for a frame never read (then only its size counts, and its
/// creation/close time stands in for the last access via `idle_s`).
pub fn score(
    stats: Option<&AccessStats>,
    class: &Classification,
    idle_s: f64,
    size_bytes: u64,
    now_ms: i64,
    tau_s: f64,
    w: &ScoreWeights,
) -> ScoreParts {
    let recency = 1.0 / (1.0 + idle_s.max(0.0) / RECENCY_SCALE_S);
    let rate = stats.map(|s| s.rate_at(now_ms, tau_s)).unwrap_or(0.0);
    let frequency = rate / (rate + 1.0);
    let pattern = match class.next_access_in_s {
        Some(next) => (0.5 + 0.5 * class.confidence) / (1.0 + next.max(0.0) / PATTERN_SCALE_S),
        None => 0.0,
    };
    let size = 1.0 / (1.0 + size_bytes as f64 / SIZE_SCALE_BYTES);
    let sum = w.recency + w.frequency + w.pattern + w.size;
    let total = if sum > 0.0 {
        (w.recency * recency + w.frequency * frequency + w.pattern * pattern + w.size * size) / sum
    } else {
        0.0
    };
    ScoreParts { recency, frequency, pattern, size, total }
}

/// Reads expected within `horizon_s`: the pattern's rhythm when it has one, otherwise the
/// weighted rate (which itself decays, so at most one time constant of it counts).
pub fn expected_reads(
    stats: Option<&AccessStats>,
    class: &Classification,
    now_ms: i64,
    tau_s: f64,
    horizon_s: f64,
) -> f64 {
    let Some(next) = class.next_access_in_s else { return 0.0 };
    if next > horizon_s {
        return 0.0;
    }
    let by_rate = stats.map(|s| s.rate_at(now_ms, tau_s) * horizon_s.min(tau_s) / 3600.0).unwrap_or(0.0);
    let by_pattern = match class.pattern {
        super::Pattern::Periodic { period_s } if period_s > 0.0 => 1.0 + ((horizon_s - next) / period_s).floor(),
        _ => 1.0,
    };
    by_rate.max(by_pattern) * class.confidence.max(0.1)
}
