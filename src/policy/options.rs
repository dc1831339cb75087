//! The `policies` config object, as the policy engine reads it.
//!
//! Keys are camelCase; sizes are bytes or strings like `"100MB"`; durations are milliseconds or
//! strings like `"24h"` (the same units as the rest of the config). Unknown keys are rejected with
//! `ERR_INVALID_CONFIG` naming `policies.<key>`. This is the one parser of the section: the keys the
//! manager and the warm tier act on (`evictionStrategy`, `backgroundSync`, `syncInterval`,
//! `batchSize`) are read here too.
//!
//! ```json
//! { "promotionThreshold": 3, "batchSize": 500, "maxConcurrentMoves": 8,
//!   "hotMaxAge": "24h", "warmMaxAge": "7d", "syncInterval": "5m",
//!   "prefetchRelatives": true, "prefetchPeriodic": true, "maxPinnedBytes": "100MB",
//!   "decisionsPerFrame": 8, "frequencyWindow": "6h",
//!   "weights": { "recency": 0.35, "frequency": 0.15, "pattern": 0.4, "size": 0.1 },
//!   "watermarks": { "warning": 0.90, "critical": 0.95, "emergency": 0.98 },
//!   "filters": {
//!     "cooldown": { "enabled": true, "duration": "10m" },
//!     "cycles": { "enabled": true, "window": "1h" },
//!     "minConfidence": { "enabled": true, "value": 0.5 },
//!     "persistence": { "enabled": true, "cycles": 3, "window": "1h" },
//!     "costBenefit": { "enabled": true, "horizon": "24h", "moveBytesPerRead": "1MB" },
//!     "trend": { "enabled": true, "ratio": 2 },
//!     "pattern": { "enabled": true, "lead": 0.25, "minConfidence": 0.5 } },
//!   "admission": { "enabled": true, "window": "1h", "minShare": 0.25 },
//!   "companions": { "enabled": true, "window": "15m" },
//!   "duels": { "enabled": true } }
//! ```

use serde::Serialize;
use serde_json::Value;

use crate::model::values::{Fields, Kind};
use crate::model::{EvictionStrategy, Result, TierError};

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
    /// Default 0.90: Warning — hot frames leave after 3/4 of `hotMaxAge`; no periodic prefetch.
    pub warning: f64,
    /// Default 0.95: Critical — the lowest-scoring frames are demoted until below this mark
    /// (instead of the age rule).
    pub critical: f64,
    /// Default 0.98: Emergency — demoted until under this mark, bypassing the anti-churn filters
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
    /// 6. No demotion of a frame whose reads are speeding up: its last two gaps average at most
    ///    `1/trend_ratio` (default 2) of the gaps before.
    pub trend_enabled: bool,
    pub trend_ratio: f64,
    /// 7. No demotion of a periodic frame (confidence ≥ `pattern_min_confidence`, default 0.5)
    ///    whose next read is due within `pattern_lead` (default 0.25) of its period.
    pub pattern_enabled: bool,
    pub pattern_lead: f64,
    pub pattern_min_confidence: f64,
}

/// Learned admission (`policies.admission`, see `policy::engine::admission`): a remote frame
/// comes back hot at its first read when most remote reads of its class were read again soon.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionOptions {
    /// Default true. Off: only `promotionThreshold` reads (or a score above the weakest hot
    /// frame) promote.
    pub enabled: bool,
    /// Default 1 h: a remote read followed by another read of the frame within it was *reused*.
    pub window_ms: u64,
    /// Default 0.25: the reuse share from which a class is admitted at its first remote read.
    pub min_share: f64,
}

/// Companions (`policies.companions`, see `policy::engine::companions`): a frame promoted by a
/// read brings back the remote frames read with it in earlier bursts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompanionOptions {
    /// Default true.
    pub enabled: bool,
    /// Default 15 min: reads this close together are one burst (and a frame's reads separated by
    /// more are two).
    pub window_ms: u64,
}

/// Victim duels (`policies.duels`, see `policy::engine::duels`): hot's victims are ranked by a
/// mix of the score and recency alone, as far as LRU's choices have proved better on this file.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DuelOptions {
    /// Default true. Off: victims are ranked by the score alone.
    pub enabled: bool,
}

/// Everything the policy engine is tuned by. Defaults are the seed design's where it had one.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyOptions {
    /// Default 3 (seed): reads while warm or cold (since the last move) that bring a frame back hot.
    pub promotion_threshold: u32,
    /// Default 500 (seed): most moves one cycle hands out (moves still in flight count).
    pub batch_size: usize,
    /// Default 8 (`maxConcurrentMoves`): how many of a cycle's moves are handed to the mover at
    /// once, as one wave; the next wave starts when the last one finished.
    pub max_concurrent_moves: usize,
    /// Default 24 h (the seed's hot-tier `maxAge`): a hot frame idle this long goes warm.
    pub hot_max_age_ms: u64,
    /// Default 7 d (seed): a warm frame idle this long goes cold.
    pub warm_max_age_ms: u64,
    /// Default 5 min (seed): how often the manager runs a cycle; also the prefetch horizon.
    pub sync_interval_ms: u64,
    /// Default 10 s: how often the background worker checks pressure between cycles. A level
    /// higher than the last cycle's, or Critical and above still there after it, starts a cycle at
    /// once (within milliseconds of the check).
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
    /// Default 0 (`minDataCollection`): how long the engine observes (from its first cycle)
    /// before its first automatic move; until then rule moves report `observing: collecting data`.
    /// Pins and pressure demotions act at once.
    pub min_data_collection_ms: u64,
    pub weights: ScoreWeights,
    pub watermarks: Watermarks,
    pub filters: FilterOptions,
    pub admission: AdmissionOptions,
    pub companions: CompanionOptions,
    pub duels: DuelOptions,
    /// Default LRU (`evictionStrategy`): how the warm tier's size cap picks victims.
    #[serde(skip)]
    pub eviction_strategy: EvictionStrategy,
    /// Default true (`backgroundSync`): a worker runs a cycle every `syncInterval` while a remote
    /// tier is enabled, so frames leave hot by age, count and size without anyone calling it.
    pub background_sync: bool,
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
            min_data_collection_ms: 0,
            weights: ScoreWeights { recency: 0.35, frequency: 0.15, pattern: 0.4, size: 0.1 },
            watermarks: Watermarks { warning: 0.90, critical: 0.95, emergency: 0.98 },
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
                trend_enabled: true,
                trend_ratio: 2.0,
                pattern_enabled: true,
                pattern_lead: 0.25,
                pattern_min_confidence: 0.5,
            },
            admission: AdmissionOptions { enabled: true, window_ms: HOUR_MS, min_share: 0.25 },
            companions: CompanionOptions { enabled: true, window_ms: 15 * MIN_MS },
            duels: DuelOptions { enabled: true },
            eviction_strategy: EvictionStrategy::Lru,
            background_sync: true,
        }
    }
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
    "minDataCollection",
    "weights",
    "watermarks",
    "filters",
    "admission",
    "companions",
    "duels",
    "evictionStrategy",
    "backgroundSync",
];

impl PolicyOptions {
    /// Parses the `policies` object (`null` gives the defaults); the one parser of that section.
    /// `hot_max_age_ms` is the default of `hotMaxAge` (the manager passes the hot tier's configured `maxAge`).
    /// Errors name the field by its dotted path, e.g. `policies.filters.cooldown.duration`.
    pub fn from_json(v: &Value, hot_max_age_ms: u64) -> Result<PolicyOptions> {
        let d = PolicyOptions { hot_max_age_ms, ..PolicyOptions::default() };
        let m = Fields::root(v, "policies", Kind::Config)?;
        m.known(TOP_KEYS)?;
        let eviction_strategy = match m.get("evictionStrategy") {
            None => d.eviction_strategy,
            Some(v) => v
                .as_str()
                .and_then(EvictionStrategy::parse)
                .ok_or_else(|| m.fail("evictionStrategy", "must be 'LRU', 'LFU' or 'AGE'"))?,
        };
        let mut o = PolicyOptions {
            promotion_threshold: m.int("promotionThreshold", d.promotion_threshold.into(), 1, 1_000_000)? as u32,
            batch_size: m.int("batchSize", d.batch_size as u64, 1, 100_000)? as usize,
            max_concurrent_moves: m.int("maxConcurrentMoves", d.max_concurrent_moves as u64, 1, 10_000)? as usize,
            hot_max_age_ms: m.duration_ms("hotMaxAge", d.hot_max_age_ms, 1)?,
            warm_max_age_ms: m.duration_ms("warmMaxAge", d.warm_max_age_ms, 1)?,
            sync_interval_ms: m.duration_ms("syncInterval", d.sync_interval_ms, 10)?,
            pressure_check_ms: m.duration_ms("pressureCheckInterval", d.pressure_check_ms, 10)?,
            prefetch_relatives: m.boolean("prefetchRelatives", d.prefetch_relatives)?,
            prefetch_periodic: m.boolean("prefetchPeriodic", d.prefetch_periodic)?,
            max_pinned_bytes: m.size("maxPinnedBytes", d.max_pinned_bytes, 0)?,
            decisions_per_frame: m.int("decisionsPerFrame", d.decisions_per_frame as u64, 1, 1000)? as usize,
            frequency_window_ms: m.duration_ms("frequencyWindow", d.frequency_window_ms, 1000)?,
            min_data_collection_ms: m.duration_ms("minDataCollection", d.min_data_collection_ms, 0)?,
            eviction_strategy,
            background_sync: m.boolean("backgroundSync", d.background_sync)?,
            ..d
        };
        let w = m.section("weights", "policies.weights")?;
        if !w.obj.is_empty() {
            w.known(&["recency", "frequency", "pattern", "size"])?;
            let ws = &mut o.weights;
            ws.recency = w.frac("recency", ws.recency)?;
            ws.frequency = w.frac("frequency", ws.frequency)?;
            ws.pattern = w.frac("pattern", ws.pattern)?;
            ws.size = w.frac("size", ws.size)?;
            if ws.recency + ws.frequency + ws.pattern + ws.size <= 0.0 {
                return Err(TierError::invalid_config(w.path, "at least one weight must be above 0"));
            }
        }
        let w = m.section("watermarks", "policies.watermarks")?;
        if !w.obj.is_empty() {
            w.known(&["warning", "critical", "emergency"])?;
            let wm = &mut o.watermarks;
            wm.warning = w.frac("warning", wm.warning)?;
            wm.critical = w.frac("critical", wm.critical)?;
            wm.emergency = w.frac("emergency", wm.emergency)?;
            if !(wm.warning < wm.critical && wm.critical < wm.emergency) {
                return Err(TierError::invalid_config(w.path, "must satisfy warning < critical < emergency"));
            }
        }
        let f = m.section("filters", "policies.filters")?;
        f.known(&["cooldown", "cycles", "minConfidence", "persistence", "costBenefit", "trend", "pattern"])?;
        let fo = &mut o.filters;
        let c = f.section("cooldown", "policies.filters.cooldown")?;
        c.known(&["enabled", "duration"])?;
        fo.cooldown_enabled = c.boolean("enabled", fo.cooldown_enabled)?;
        fo.cooldown_ms = c.duration_ms("duration", fo.cooldown_ms, 0)?;
        let c = f.section("cycles", "policies.filters.cycles")?;
        c.known(&["enabled", "window"])?;
        fo.cycles_enabled = c.boolean("enabled", fo.cycles_enabled)?;
        fo.cycle_window_ms = c.duration_ms("window", fo.cycle_window_ms, 0)?;
        let c = f.section("minConfidence", "policies.filters.minConfidence")?;
        c.known(&["enabled", "value"])?;
        fo.min_confidence_enabled = c.boolean("enabled", fo.min_confidence_enabled)?;
        fo.min_confidence = c.frac("value", fo.min_confidence)?;
        let c = f.section("persistence", "policies.filters.persistence")?;
        c.known(&["enabled", "cycles", "window"])?;
        fo.persistence_enabled = c.boolean("enabled", fo.persistence_enabled)?;
        fo.persistence_cycles = c.int("cycles", fo.persistence_cycles.into(), 1, 1000)? as u32;
        fo.persistence_window_ms = c.duration_ms("window", fo.persistence_window_ms, 1)?;
        let c = f.section("costBenefit", "policies.filters.costBenefit")?;
        c.known(&["enabled", "horizon", "moveBytesPerRead"])?;
        fo.cost_benefit_enabled = c.boolean("enabled", fo.cost_benefit_enabled)?;
        fo.cost_horizon_ms = c.duration_ms("horizon", fo.cost_horizon_ms, 1000)?;
        fo.move_bytes_per_read = c.size("moveBytesPerRead", fo.move_bytes_per_read, 1)?;
        let c = f.section("trend", "policies.filters.trend")?;
        c.known(&["enabled", "ratio"])?;
        fo.trend_enabled = c.boolean("enabled", fo.trend_enabled)?;
        fo.trend_ratio = c.number("ratio", fo.trend_ratio, 1.0, 1000.0)?;
        let c = f.section("pattern", "policies.filters.pattern")?;
        c.known(&["enabled", "lead", "minConfidence"])?;
        fo.pattern_enabled = c.boolean("enabled", fo.pattern_enabled)?;
        fo.pattern_lead = c.frac("lead", fo.pattern_lead)?;
        fo.pattern_min_confidence = c.frac("minConfidence", fo.pattern_min_confidence)?;
        let a = m.section("admission", "policies.admission")?;
        a.known(&["enabled", "window", "minShare"])?;
        let ao = &mut o.admission;
        ao.enabled = a.boolean("enabled", ao.enabled)?;
        ao.window_ms = a.duration_ms("window", ao.window_ms, 1000)?;
        ao.min_share = a.frac("minShare", ao.min_share)?;
        let c = m.section("companions", "policies.companions")?;
        c.known(&["enabled", "window"])?;
        o.companions.enabled = c.boolean("enabled", o.companions.enabled)?;
        o.companions.window_ms = c.duration_ms("window", o.companions.window_ms, 10)?;
        let dl = m.section("duels", "policies.duels")?;
        dl.known(&["enabled"])?;
        o.duels.enabled = dl.boolean("enabled", o.duels.enabled)?;
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_overrides() {
        let d = PolicyOptions::from_json(&Value::Null, 86_400_000).expect("defaults");
        assert_eq!(d, PolicyOptions::default());
        assert_eq!(d.promotion_threshold, 3);
        assert_eq!(d.hot_max_age_ms, 86_400_000);
        let o = PolicyOptions::from_json(
            &json!({
                "promotionThreshold": 5, "hotMaxAge": "2h", "maxPinnedBytes": "10MB", "evictionStrategy": "LFU",
                "filters": {"cooldown": {"enabled": false}, "persistence": {"cycles": 2, "window": "30m"}},
                "watermarks": {"warning": 0.5}
            }),
            86_400_000,
        )
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
            (json!({"watermarks": {"warning": 0.96}}), "policies.watermarks"),
            (json!({"filters": {"cooldown": {"duration": -1}}}), "policies.filters.cooldown.duration"),
            (json!({"filters": {"persistence": {"cycles": 0}}}), "policies.filters.persistence.cycles"),
            (json!({"filters": {"hysteresis": {}}}), "policies.filters.hysteresis"),
            (json!({"filters": {"minConfidence": {"value": "high"}}}), "policies.filters.minConfidence.value"),
            (json!({"prefetchRelatives": "yes"}), "policies.prefetchRelatives"),
            (json!({"admission": {"minShare": 1.5}}), "policies.admission.minShare"),
            (json!({"admission": {"window": "10ms"}}), "policies.admission.window"),
            (json!({"admission": {"eager": true}}), "policies.admission.eager"),
        ];
        for (v, field) in cases {
            match PolicyOptions::from_json(&v, 86_400_000) {
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
