//! The tiering policy engine: which frame should live in which tier, and why.
//!
//! Policies know no backend. The manager feeds plain data ([`FrameView`], [`PressureInputs`],
//! accesses) and executes the moves the engine decides; the simulator (`crate::sim`) drives the
//! very same [`PolicyEngine`] against recorded or generated traces.
//!
//! Modules:
//! - [`access`]: per-frame access statistics ([`AccessTracker`]), snapshot/restore.
//! - [`pattern`]: classifies a frame's access history (hot, periodic, bursty, decaying, cold).
//! - [`score`]: the weighted value of keeping a frame hot (recency, frequency, pattern, size).
//! - [`pressure`]: fill levels against the configured limits and the response to each level.
//! - [`filters`]: the anti-churn filters, applied in a fixed order.
//! - [`options`]: the `policies` config object, parsed with named-field errors.
//! - [`engine`]: the [`PolicyEngine`] that ties them together.

pub mod access;
pub mod engine;
pub mod filters;
pub mod options;
pub mod pattern;
pub mod pressure;
pub mod score;

#[cfg(test)]
mod synth;

pub use crate::model::Tier;
pub use access::{AccessRecord, AccessStats, AccessTracker};
pub use engine::{
    Action, CycleCounts, CycleReport, Decision, EngineSnapshot, Explanation, FrameView, PinRecord, PinStatus,
    PolicyEngine, Reachability,
};
pub use filters::MoveRecord;
pub use options::PolicyOptions;
pub use pattern::{Classification, Pattern};
pub use pressure::{PressureInputs, PressureLevel, PressureReport};
pub use score::ScoreParts;

/// `Tier` (in `crate::model`) serialises as `"hot"|"warm"|"cold"` but has no `Deserialize`;
/// these helpers read it back (also accepting the levels and backend names `Tier::parse` knows)
/// so engine snapshots round-trip.
pub(crate) mod tier_serde {
    use super::Tier;
    use serde::{Deserialize, Deserializer};

    fn parse_value<E: serde::de::Error>(v: serde_json::Value) -> Result<Tier, E> {
        let text = match &v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            other => return Err(E::custom(format!("expected a tier name, got {other}"))),
        };
        Tier::parse(&text).ok_or_else(|| E::custom(format!("unknown tier {text:?}")))
    }

    pub fn de<'de, D: Deserializer<'de>>(d: D) -> Result<Tier, D::Error> {
        parse_value(serde_json::Value::deserialize(d)?)
    }

    pub fn de_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Tier>, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Null => Ok(None),
            v => parse_value(v).map(Some),
        }
    }
}

/// Arrow form of a move, as reasons print it: `hot→warm`.
pub fn arrow(from: Tier, to: Tier) -> String {
    format!("{}→{}", from.as_str(), to.as_str())
}

/// Formats seconds the way reasons print them: `45 s`, `10 min`, `3.5 h`, `8 d`.
pub fn human_secs(s: f64) -> String {
    if !s.is_finite() {
        return "never".to_string();
    }
    let s = s.max(0.0);
    if s < 90.0 {
        format!("{} s", s.round() as i64)
    } else if s < 3600.0 {
        format!("{} min", (s / 60.0).round() as i64)
    } else if s < 172_800.0 {
        let h = s / 3600.0;
        if (h - h.round()).abs() < 0.05 {
            format!("{} h", h.round() as i64)
        } else {
            format!("{h:.1} h")
        }
    } else {
        let d = s / 86_400.0;
        if (d - d.round()).abs() < 0.05 {
            format!("{} d", d.round() as i64)
        } else {
            format!("{d:.1} d")
        }
    }
}

/// Formats bytes: `512 B`, `3.0 KB`, `1.5 MB`, `2.0 GB`.
pub fn human_bytes(b: u64) -> String {
    const K: f64 = 1024.0;
    let f = b as f64;
    if f < K {
        format!("{b} B")
    } else if f < K * K {
        format!("{:.1} KB", f / K)
    } else if f < K * K * K {
        format!("{:.1} MB", f / (K * K))
    } else {
        format!("{:.1} GB", f / (K * K * K))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_formats() {
        assert_eq!(human_secs(45.0), "45 s");
        assert_eq!(human_secs(600.0), "10 min");
        assert_eq!(human_secs(3.5 * 3600.0), "3.5 h");
        assert_eq!(human_secs(24.0 * 3600.0), "24 h");
        assert_eq!(human_secs(8.0 * 86400.0), "8 d");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536 * 1024), "1.5 MB");
    }

    #[test]
    fn tiers_deserialise_from_snapshot_text() {
        #[derive(serde::Deserialize)]
        struct T {
            #[serde(deserialize_with = "tier_serde::de")]
            t: Tier,
            #[serde(deserialize_with = "tier_serde::de_opt", default)]
            o: Option<Tier>,
        }
        let v: T = serde_json::from_str(r#"{"t":"warm","o":null}"#).expect("parse");
        assert_eq!((v.t, v.o), (Tier::Warm, None));
        assert!(serde_json::from_str::<T>(r#"{"t":"lukewarm"}"#).is_err());
    }
}
