//! Pressure: how full each tier is against its limits, as one of four levels, and what the
//! engine does about it.
//!
//! Fill is the tighter of the ratios that apply: hot — its bytes vs `hot_max_bytes` and frames vs
//! `hot_max_frames`; warm — our bytes vs `warm_max_bytes` and the warm server's memory use vs its
//! limit (when its backend reports one); host — `1 - available memory`.
//! Levels start at the watermarks (defaults 90 / 95 / 98 %, `policies.watermarks`).
//!
//! Responses (nothing is ever dropped, frames only move down a tier):
//! - Normal: the age rules only (hot frames never read through us and idle `hotMaxAge` go warm,
//!   warm idle `warmMaxAge` cold; hot frames read before stay while hot has room).
//! - Warning: never-read hot frames leave after 3/4 of `hotMaxAge` (frames read before still
//!   stay); no periodic prefetch into hot; a remote frame read again must outscore the weakest hot
//!   frame to come back.
//! - Critical: the age rule gives way to ranking: the lowest-scoring frames (idle ones score
//!   lowest) are demoted, through the filters, until the tier is back under the critical watermark.
//! - Emergency: as Critical, but the lowest-scoring frames are demoted
//!   until the tier is back under the emergency watermark, bypassing the anti-churn filters (pins
//!   and active frames are still never demoted). Keeping a full tier just under the line rather
//!   than far below it keeps the space the tier is there to use.

use serde::{Deserialize, Serialize};

use super::options::Watermarks;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PressureLevel {
    Normal,
    Warning,
    Critical,
    Emergency,
}

impl PressureLevel {
    pub fn as_str(&self) -> &'static str {
        match self {
            PressureLevel::Normal => "normal",
            PressureLevel::Warning => "warning",
            PressureLevel::Critical => "critical",
            PressureLevel::Emergency => "emergency",
        }
    }
    /// Factor applied to `hotMaxAge` at this level; `None`: the age rule gives way to
    /// score-ranked pressure demotions (idle frames score lowest, so they still go first, but
    /// only as many as the watermark asks for).
    pub fn age_factor(&self) -> Option<f64> {
        match self {
            PressureLevel::Normal => Some(1.0),
            PressureLevel::Warning => Some(0.75),
            PressureLevel::Critical | PressureLevel::Emergency => None,
        }
    }
    pub fn of_fill(fill: f64, w: &Watermarks) -> PressureLevel {
        if !fill.is_finite() || fill >= w.emergency {
            PressureLevel::Emergency
        } else if fill >= w.critical {
            PressureLevel::Critical
        } else if fill >= w.warning {
            PressureLevel::Warning
        } else {
            PressureLevel::Normal
        }
    }
}

/// What the manager measured. A limit of 0 means "no limit".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PressureInputs {
    pub hot_bytes: u64,
    pub hot_frames: u64,
    pub hot_max_bytes: u64,
    pub hot_max_frames: u64,
    /// Bytes of our frames in the warm tier.
    pub warm_bytes: u64,
    pub warm_max_bytes: u64,
    /// The warm tier's server-wide memory use and limit, when its backend reports them (the server
    /// may hold more than our frames; a limit of 0 or `None`: not limited / unknown).
    pub warm_server_used_bytes: Option<u64>,
    pub warm_server_max_bytes: Option<u64>,
    /// Fraction of host memory available, in `[0, 1]`.
    pub host_mem_available_frac: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PressureReport {
    /// The highest of the levels below.
    pub level: PressureLevel,
    pub hot_level: PressureLevel,
    pub warm_level: PressureLevel,
    pub host_level: PressureLevel,
    pub hot_fill: f64,
    pub warm_fill: f64,
    pub host_fill: f64,
    /// Bytes and frames to demote from hot to get back under the watermark of its level (the
    /// critical one at Critical, the emergency one at Emergency; 0 below Critical).
    pub hot_excess_bytes: u64,
    pub hot_excess_frames: u64,
    /// Bytes to demote from warm, likewise.
    pub warm_excess_bytes: u64,
}

fn ratio(used: u64, max: u64) -> f64 {
    if max == 0 {
        0.0
    } else {
        used as f64 / max as f64
    }
}

/// The warm server's memory use and limit, when both are known and the limit is set.
fn warm_server(p: &PressureInputs) -> Option<(u64, u64)> {
    match (p.warm_server_used_bytes, p.warm_server_max_bytes) {
        (Some(used), Some(max)) if max > 0 => Some((used, max)),
        _ => None,
    }
}

fn excess(used: u64, max: u64, mark: f64) -> u64 {
    if max == 0 {
        return 0;
    }
    let target = (max as f64 * mark).floor() as u64;
    used.saturating_sub(target)
}

pub fn assess(p: &PressureInputs, w: &Watermarks) -> PressureReport {
    let hot_fill = ratio(p.hot_bytes, p.hot_max_bytes).max(ratio(p.hot_frames, p.hot_max_frames));
    let server_fill = warm_server(p).map(|(used, max)| ratio(used, max)).unwrap_or(0.0);
    let warm_fill = ratio(p.warm_bytes, p.warm_max_bytes).max(server_fill);
    let host_fill = p.host_mem_available_frac.filter(|f| f.is_finite()).map(|f| 1.0 - f.clamp(0.0, 1.0)).unwrap_or(0.0);
    let hot_level = PressureLevel::of_fill(hot_fill, w);
    let warm_level = PressureLevel::of_fill(warm_fill, w);
    let host_level = PressureLevel::of_fill(host_fill, w);
    let critical = hot_level >= PressureLevel::Critical;
    let mark = |level: PressureLevel| if level == PressureLevel::Emergency { w.emergency } else { w.critical };
    // The warm server's fill is measured over everything it holds; the share of it that is ours
    // is what we can free, so its excess is capped at our bytes.
    let warm_excess_bytes = if warm_level >= PressureLevel::Critical {
        let own = excess(p.warm_bytes, p.warm_max_bytes, mark(warm_level));
        let server =
            warm_server(p).map(|(used, max)| excess(used, max, mark(warm_level)).min(p.warm_bytes)).unwrap_or(0);
        own.max(server)
    } else {
        0
    };
    PressureReport {
        level: hot_level.max(warm_level).max(host_level),
        hot_level,
        warm_level,
        host_level,
        hot_fill,
        warm_fill,
        host_fill,
        hot_excess_bytes: if critical { excess(p.hot_bytes, p.hot_max_bytes, mark(hot_level)) } else { 0 },
        hot_excess_frames: if critical { excess(p.hot_frames, p.hot_max_frames, mark(hot_level)) } else { 0 },
        warm_excess_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hot(bytes: u64, frames: u64) -> PressureInputs {
        PressureInputs {
            hot_bytes: bytes,
            hot_frames: frames,
            hot_max_bytes: 1000,
            hot_max_frames: 100,
            ..Default::default()
        }
    }

    #[test]
    fn levels_follow_the_watermarks() {
        // The mechanism, at fixed marks (the defaults are 0.90 / 0.95 / 0.98).
        let w = Watermarks { warning: 0.70, critical: 0.85, emergency: 0.95 };
        assert_eq!(assess(&hot(100, 10), &w).level, PressureLevel::Normal);
        assert_eq!(assess(&hot(700, 10), &w).level, PressureLevel::Warning);
        assert_eq!(assess(&hot(100, 86), &w).hot_level, PressureLevel::Critical, "frame count alone");
        let r = assess(&hot(960, 10), &w);
        assert_eq!(r.level, PressureLevel::Emergency);
        assert_eq!(r.hot_excess_bytes, 10, "back under the emergency mark");
        assert_eq!(assess(&hot(900, 10), &w).hot_excess_bytes, 50, "back under the critical mark");
        assert_eq!(r.hot_excess_frames, 0);
        let no_limits = PressureInputs { hot_bytes: 1 << 40, ..Default::default() };
        assert_eq!(assess(&no_limits, &w).level, PressureLevel::Normal);
    }

    #[test]
    fn warm_server_and_host_memory_count() {
        let w = Watermarks { warning: 0.70, critical: 0.85, emergency: 0.95 };
        let p = PressureInputs {
            warm_bytes: 100,
            warm_max_bytes: 1000,
            warm_server_used_bytes: Some(900),
            warm_server_max_bytes: Some(1000),
            ..Default::default()
        };
        let r = assess(&p, &w);
        assert_eq!((r.warm_level, r.level), (PressureLevel::Critical, PressureLevel::Critical));
        assert_eq!(r.warm_excess_bytes, 50);
        let p = PressureInputs { host_mem_available_frac: Some(0.2), ..Default::default() };
        assert_eq!(assess(&p, &w).host_level, PressureLevel::Warning);
    }
}
