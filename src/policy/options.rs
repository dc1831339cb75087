//! The `policies` config object, as the policy engine reads it.
//!
//! Keys are camelCase; sizes are bytes or strings like `"100MB"`; durations are milliseconds or
//! strings like `"24h"` (the same units as the rest of the config). Unknown keys are rejected with
//! `ERR_INVALID_CONFIG` naming `policies.<key>`. The keys the manager itself reads
//! (`evictionStrategy`, `backgroundSync`) are accepted and left to it.
//!
//! ```json
//! { "promotionThreshold": 3, "batchSize": 500, "maxConcurrentMoves": 8,
//!   "hotMaxAge": "24h", "warmMaxAge": "7d", "syncInterval": "5m",
//!   "prefetchRelatives": true, "prefetchPeriodic": true, "maxPinnedBytes": "100MB",
//!   "decisionsPerFrame": 8, "frequencyWindow": "6h",
//!   "weights": { "recency": 0.35, "frequency": 0.15, "pattern": 0.4, "size": 0.1 },
//!   "watermarks": { "warning": 0.70, "critical": 0.85, "emergency": 0.95 },
//!   "filters": {
//!     "cooldown": { "enabled": true, "duration": "10m" },
//!     "cycles": { "enabled": true, "window": "1h" },
//!     "minConfidence": { "enabled": true, "value": 0.5 },
//!     "persistence": { "enabled": true, "cycles": 3, "window": "1h" },
//!     "costBenefit": { "enabled": true, "horizon": "24h", "moveBytesPerRead": "1MB" } } }
//! ```

use serde::Serialize;
use serde_json::{Map, Value};

use crate::config::{parse_duration_ms, parse_size};
use crate::error::{Result, TierError};

const MB: u64 = 1024 * 1024;
const MIN_MS: u64 = 60_000;
const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 86_400_000;

/// Weights of the score parts (normalised by their sum, so only ratios matter).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScoreWeights {
    /// Default 0.35: how recently the frame was read.
    pub recency: f64,
    /// Default 0.15: how often (exponentially weighted reads per hour).
    pub frequency: f64,
    /// Default 0.4: how soon the access pattern predicts the next read.
    pub pattern: f64,
    /// Default 0.1: small frames are cheaper to keep hot.
    pub size: f64,
}

/// Fill fractions at which pressure levels start (of the tighter of bytes and frame count).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Watermarks {
    /// Default 0.70: Warning — hot frames leave after 3/4 of `hotMaxAge`; no periodic prefetch.
    pub warning: f64,
    /// Default 0.85: Critical — the lowest-scoring frames are demoted until below this mark
    /// (instead of the age rule).
    pub critical: f64,
    /// Default 0.95: Emergency — demoted until under this mark, bypassing the anti-churn filters
    /// (never drops data, never demotes pinned or active frames).
    pub emergency: f64,
}

/// Settings of the anti-churn filters, applied in this order (see `policy::filters`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterOptions {
    /// 1. No move within `cooldown_ms` (default 10 min) of the frame's last move.
    pub cooldown_enabled: bool,
    pub cooldown_ms: u64,
    /// 2. No move that returns a frame to a tier it left within `cycle_window_ms` (default 1 h):
    ///    ping-pong (hot→warm→hot) and longer cycles (hot→warm→cold→hot).
    pub cycles_enabled: bool,
    pub cycle_window_ms: u64,
    /// 3. No move whose confidence is below `min_confidence` (default 0.5).
    pub min_confidence_enabled: bool,
    pub min_confidence: f64,
    /// 4. A demotion must be recommended in `persistence_cycles` (default 3) consecutive cycles,
    ///    the first no longer than `persistence_window_ms` (default 1 h) ago. Promotions are
    ///    exempt: they are driven by reads, which are evidence already.
    pub persistence_enabled: bool,
    pub persistence_cycles: u32,
    pub persistence_window_ms: u64,
    /// 5. A move must pay for itself: expected reads within `cost_horizon_ms` (default 24 h)
    ///    against the move's cost of 1 read plus `size / move_bytes_per_read` (default 1 MB).
    pub cost_benefit_enabled: bool,
    pub cost_horizon_ms: u64,
    pub move_bytes_per_read: u64,
}

/// Everything the policy engine is tuned by. Defaults are the seed design's where it had one.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyOptions {
    /// Default 3 (seed): reads while warm or cold (since the last move) that bring a frame back hot.
    pub promotion_threshold: u32,
    /// Default 500 (seed): most moves one cycle hands out (moves still in flight count).
    pub batch_size: usize,
    /// Default 8: how many of a cycle's moves the mover should run at once
    /// ([`super::CycleReport::waves`] splits the pending moves accordingly).
    pub max_concurrent_moves: usize,
    /// Default 24 h (seed `tiers.sqlite.maxAge`): a hot frame idle this long goes warm.
    pub hot_max_age_ms: u64,
    /// Default 7 d (seed): a warm frame idle this long goes cold.
    pub warm_max_age_ms: u64,
    /// Default 5 min (seed): how often the manager runs a cycle; also the prefetch horizon.
    pub sync_interval_ms: u64,
    /// Default 10 s: how often the background worker checks pressure between cycles. A level
    /// higher than the last cycle's starts a cycle at once (within milliseconds of the check).
    pub pressure_check_ms: u64,
    /// Default true: promoting a frame suggests promoting its parent and children too.
    pub prefetch_relatives: bool,
    /// Default true: a remote periodic frame is promoted shortly before its next expected read.
    pub prefetch_periodic: bool,
    /// Default 100 MB: total size of pinned frames; pinning beyond it is refused.
    pub max_pinned_bytes: u64,
    /// Default 8: decisions remembered per frame (for `explain`).
    pub decisions_per_frame: usize,
    /// Default 6 h: time constant of the weighted access frequency.
    pub frequency_window_ms: u64,
    pub weights: ScoreWeights,
    pub watermarks: Watermarks,
    pub filters: FilterOptions,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        PolicyOptions {
            promotion_threshold: 3,
            batch_size: 500,
            max_concurrent_moves: 8,
            hot_max_age_ms: 24 * HOUR_MS,
            warm_max_age_ms: 7 * DAY_MS,
            sync_interval_ms: 5 * MIN_MS,
            pressure_check_ms: 10_000,
            prefetch_relatives: true,
            prefetch_periodic: true,
            max_pinned_bytes: 100 * MB,
            decisions_per_frame: 8,
            frequency_window_ms: 6 * HOUR_MS,
            weights: ScoreWeights { recency: 0.35, frequency: 0.15, pattern: 0.4, size: 0.1 },
            watermarks: Watermarks { warning: 0.70, critical: 0.85, emergency: 0.95 },
            filters: FilterOptions {
                cooldown_enabled: true,
                cooldown_ms: 10 * MIN_MS,
                cycles_enabled: true,
                cycle_window_ms: HOUR_MS,
                min_confidence_enabled: true,
                min_confidence: 0.5,
                persistence_enabled: true,
                persistence_cycles: 3,
                persistence_window_ms: HOUR_MS,
                cost_benefit_enabled: true,
                cost_horizon_ms: 24 * HOUR_MS,
                move_bytes_per_read: MB,
            },
        }
    }
}

type Obj = Map<String, Value>;

fn check_keys(m: &Obj, path: &str, known: &[&str]) -> Result<()> {
    for k in m.keys() {
        if !known.contains(&k.as_str()) {
            return Err(TierError::invalid_config(
                format!("{path}.{k}"),
                format!("unknown option (known: {})", known.join(", ")),
            ));
        }
    }
    Ok(())
}

fn sub<'a>(m: &'a Obj, key: &str, path: &str) -> Result<Option<&'a Obj>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(TierError::invalid_config(format!("{path}.{key}"), "must be an object")),
    }
}

fn set_bool(m: &Obj, key: &str, path: &str, out: &mut bool) -> Result<()> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Bool(b)) => {
            *out = *b;
            Ok(())
        }
        Some(_) => Err(TierError::invalid_config(format!("{path}.{key}"), "must be true or false")),
    }
}

fn set_int(m: &Obj, key: &str, path: &str, min: u64, max: u64, out: &mut u64) -> Result<()> {
    let bad = || TierError::invalid_config(format!("{path}.{key}"), format!("must be a whole number from {min} to {max}"));
    match m.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Number(n)) => {
            let v = n.as_u64().filter(|v| (min..=max).contains(v)).ok_or_else(bad)?;
            *out = v;
            Ok(())
        }
        Some(_) => Err(bad()),
    }
}

fn set_frac(m: &Obj, key: &str, path: &str, out: &mut f64) -> Result<()> {
    let bad = || TierError::invalid_config(format!("{path}.{key}"), "must be a number from 0 to 1");
    match m.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Number(n)) => {
            let v = n.as_f64().filter(|v| v.is_finite() && (0.0..=1.0).contains(v)).ok_or_else(bad)?;
            *out = v;
            Ok(())
        }
        Some(_) => Err(bad()),
    }
}

fn set_duration(m: &Obj, key: &str, path: &str, min_ms: u64, out: &mut u64) -> Result<()> {
    let bad = || {
        TierError::invalid_config(format!("{path}.{key}"), format!("must be milliseconds (at least {min_ms}) or a duration such as '24h'"))
    };
    let v = match m.get(key) {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => parse_duration_ms(s),
        Some(_) => None,
    };
    *out = v.filter(|v| *v >= min_ms).ok_or_else(bad)?;
    Ok(())
}

fn set_size(m: &Obj, key: &str, path: &str, min: u64, out: &mut u64) -> Result<()> {
    let bad = || TierError::invalid_config(format!("{path}.{key}"), format!("must be at least {min} bytes, or a size such as '100MB'"));
    let v = match m.get(key) {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => parse_size(s),
        Some(_) => None,
    };
    *out = v.filter(|v| *v >= min).ok_or_else(bad)?;
    Ok(())
}

const TOP_KEYS: &[&str] = &[
    "promotionThreshold",
    "batchSize",
    "maxConcurrentMoves",
    "hotMaxAge",
    "warmMaxAge",
    "syncInterval",
    "pressureCheckInterval",
    "prefetchRelatives",
    "prefetchPeriodic",
    "maxPinnedBytes",
    "decisionsPerFrame",
    "frequencyWindow",
    "weights",
    "watermarks",
    "filters",
    // Read by the manager, not by the engine.
    "evictionStrategy",
    "backgroundSync",
];

impl PolicyOptions {
    /// Parses the `policies` object (`null` gives the defaults). Errors name the field by its
    /// dotted path, e.g. `policies.filters.cooldown.duration`.
    pub fn from_json(v: &Value) -> Result<PolicyOptions> {
        let mut o = PolicyOptions::default();
        let empty = Obj::new();
        let m = match v {
            Value::Null => &empty,
            Value::Object(m) => m,
            _ => return Err(TierError::invalid_config("policies", "must be an object")),
        };
        let p = "policies";
        check_keys(m, p, TOP_KEYS)?;
        let mut n = o.promotion_threshold as u64;
        set_int(m, "promotionThreshold", p, 1, 1_000_000, &mut n)?;
        o.promotion_threshold = n as u32;
        let mut n = o.batch_size as u64;
        set_int(m, "batchSize", p, 1, 100_000, &mut n)?;
        o.batch_size = n as usize;
        let mut n = o.max_concurrent_moves as u64;
        set_int(m, "maxConcurrentMoves", p, 1, 10_000, &mut n)?;
        o.max_concurrent_moves = n as usize;
        let mut n = o.decisions_per_frame as u64;
        set_int(m, "decisionsPerFrame", p, 1, 1000, &mut n)?;
        o.decisions_per_frame = n as usize;
        set_duration(m, "hotMaxAge", p, 1, &mut o.hot_max_age_ms)?;
        set_duration(m, "warmMaxAge", p, 1, &mut o.warm_max_age_ms)?;
        set_duration(m, "syncInterval", p, 10, &mut o.sync_interval_ms)?;
        set_duration(m, "pressureCheckInterval", p, 10, &mut o.pressure_check_ms)?;
        set_duration(m, "frequencyWindow", p, 1000, &mut o.frequency_window_ms)?;
        set_bool(m, "prefetchRelatives", p, &mut o.prefetch_relatives)?;
        set_bool(m, "prefetchPeriodic", p, &mut o.prefetch_periodic)?;
        set_size(m, "maxPinnedBytes", p, 0, &mut o.max_pinned_bytes)?;
        // Validated by the manager's config parser; only the type is checked here.
        if let Some(v) = m.get("evictionStrategy") {
            if !(v.is_null() || v.is_string()) {
                return Err(TierError::invalid_config("policies.evictionStrategy", "must be 'LRU', 'LFU' or 'AGE'"));
            }
        }
        if let Some(v) = m.get("backgroundSync") {
            if !(v.is_null() || v.is_boolean()) {
                return Err(TierError::invalid_config("policies.backgroundSync", "must be true or false"));
            }
        }

        if let Some(w) = sub(m, "weights", p)? {
            let wp = "policies.weights";
            check_keys(w, wp, &["recency", "frequency", "pattern", "size"])?;
            set_frac(w, "recency", wp, &mut o.weights.recency)?;
            set_frac(w, "frequency", wp, &mut o.weights.frequency)?;
            set_frac(w, "pattern", wp, &mut o.weights.pattern)?;
            set_frac(w, "size", wp, &mut o.weights.size)?;
            let ws = &o.weights;
            if ws.recency + ws.frequency + ws.pattern + ws.size <= 0.0 {
                return Err(TierError::invalid_config(wp, "at least one weight must be above 0"));
            }
        }
        if let Some(w) = sub(m, "watermarks", p)? {
            let wp = "policies.watermarks";
            check_keys(w, wp, &["warning", "critical", "emergency"])?;
            set_frac(w, "warning", wp, &mut o.watermarks.warning)?;
            set_frac(w, "critical", wp, &mut o.watermarks.critical)?;
            set_frac(w, "emergency", wp, &mut o.watermarks.emergency)?;
            let wm = &o.watermarks;
            if !(wm.warning < wm.critical && wm.critical < wm.emergency) {
                return Err(TierError::invalid_config(wp, "must satisfy warning < critical < emergency"));
            }
        }
        if let Some(f) = sub(m, "filters", p)? {
            let fp = "policies.filters";
            check_keys(f, fp, &["cooldown", "cycles", "minConfidence", "persistence", "costBenefit"])?;
            let fo = &mut o.filters;
            if let Some(c) = sub(f, "cooldown", fp)? {
                let cp = "policies.filters.cooldown";
                check_keys(c, cp, &["enabled", "duration"])?;
                set_bool(c, "enabled", cp, &mut fo.cooldown_enabled)?;
                set_duration(c, "duration", cp, 0, &mut fo.cooldown_ms)?;
            }
            if let Some(c) = sub(f, "cycles", fp)? {
                let cp = "policies.filters.cycles";
                check_keys(c, cp, &["enabled", "window"])?;
                set_bool(c, "enabled", cp, &mut fo.cycles_enabled)?;
                set_duration(c, "window", cp, 0, &mut fo.cycle_window_ms)?;
            }
            if let Some(c) = sub(f, "minConfidence", fp)? {
                let cp = "policies.filters.minConfidence";
                check_keys(c, cp, &["enabled", "value"])?;
                set_bool(c, "enabled", cp, &mut fo.min_confidence_enabled)?;
                set_frac(c, "value", cp, &mut fo.min_confidence)?;
            }
            if let Some(c) = sub(f, "persistence", fp)? {
                let cp = "policies.filters.persistence";
                check_keys(c, cp, &["enabled", "cycles", "window"])?;
                set_bool(c, "enabled", cp, &mut fo.persistence_enabled)?;
                let mut n = fo.persistence_cycles as u64;
                set_int(c, "cycles", cp, 1, 1000, &mut n)?;
                fo.persistence_cycles = n as u32;
                set_duration(c, "window", cp, 1, &mut fo.persistence_window_ms)?;
            }
            if let Some(c) = sub(f, "costBenefit", fp)? {
                let cp = "policies.filters.costBenefit";
                check_keys(c, cp, &["enabled", "horizon", "moveBytesPerRead"])?;
                set_bool(c, "enabled", cp, &mut fo.cost_benefit_enabled)?;
                set_duration(c, "horizon", cp, 1000, &mut fo.cost_horizon_ms)?;
                set_size(c, "moveBytesPerRead", cp, 1, &mut fo.move_bytes_per_read)?;
            }
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_overrides() {
        let d = PolicyOptions::from_json(&Value::Null).expect("defaults");
        assert_eq!(d, PolicyOptions::default());
        assert_eq!(d.promotion_threshold, 3);
        assert_eq!(d.hot_max_age_ms, 86_400_000);
        let o = PolicyOptions::from_json(&json!({
            "promotionThreshold": 5, "hotMaxAge": "2h", "maxPinnedBytes": "10MB", "evictionStrategy": "LFU",
            "filters": {"cooldown": {"enabled": false}, "persistence": {"cycles": 2, "window": "30m"}},
            "watermarks": {"warning": 0.5}
        }))
        .expect("valid");
        assert_eq!(o.promotion_threshold, 5);
        assert_eq!(o.hot_max_age_ms, 7_200_000);
        assert_eq!(o.max_pinned_bytes, 10 * MB);
        assert!(!o.filters.cooldown_enabled);
        assert_eq!((o.filters.persistence_cycles, o.filters.persistence_window_ms), (2, 1_800_000));
        assert_eq!(o.watermarks.warning, 0.5);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = vec![
            (json!(3), "policies"),
            (json!({"promotionTreshold": 3}), "policies.promotionTreshold"),
            (json!({"promotionThreshold": 0}), "policies.promotionThreshold"),
            (json!({"hotMaxAge": "soon"}), "policies.hotMaxAge"),
            (json!({"weights": {"recency": 2}}), "policies.weights.recency"),
            (json!({"weights": {"colour": 1}}), "policies.weights.colour"),
            (json!({"watermarks": {"warning": 0.9}}), "policies.watermarks"),
            (json!({"filters": {"cooldown": {"duration": -1}}}), "policies.filters.cooldown.duration"),
            (json!({"filters": {"persistence": {"cycles": 0}}}), "policies.filters.persistence.cycles"),
            (json!({"filters": {"hysteresis": {}}}), "policies.filters.hysteresis"),
            (json!({"filters": {"minConfidence": {"value": "high"}}}), "policies.filters.minConfidence.value"),
            (json!({"prefetchRelatives": "yes"}), "policies.prefetchRelatives"),
        ];
        for (v, field) in cases {
            match PolicyOptions::from_json(&v) {
                Err(e @ TierError::InvalidConfig { .. }) => {
                    assert_eq!(e.code(), "ERR_INVALID_CONFIG");
                    if let TierError::InvalidConfig { field: f, .. } = e {
                        assert_eq!(f, field, "for {v}");
                    }
                }
                other => panic!("expected InvalidConfig for {v}, got {other:?}"),
            }
        }
    }
}
