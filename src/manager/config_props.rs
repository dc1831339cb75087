//! Property tests of the option parsers: `TierConfig::from_json_with_env` (the whole config, every
//! section), `PolicyOptions::from_json` and `MigrateRequest::from_json`, over arbitrary JSON and
//! over objects shaped like the real ones (known keys at every level, any values). Each must answer
//! `Ok` or its own error code with a field named by its dotted path; never panic.

use proptest::prelude::*;
use proptest::strategy::BoxedStrategy;
use serde_json::{Map, Value};

use super::config::{EnvFallback, TierConfig};
use crate::model::TierError;
use crate::moves::MigrateRequest;
use crate::policy::PolicyOptions;
use crate::prop_kit::{check, json, text};

/// The shape of an options object: a leaf, or an object of known keys.
enum Shape {
    Leaf,
    Obj(&'static [(&'static str, Shape)]),
}
use Shape::{Leaf, Obj};

const SQLITE: Shape = Obj(&[("maxSize", Leaf), ("maxFrames", Leaf), ("maxAge", Leaf)]);
const REDIS: Shape = Obj(&[
    ("enabled", Leaf),
    ("connectionString", Leaf),
    ("ttl", Leaf),
    ("maxSize", Leaf),
    ("keyPrefix", Leaf),
    ("connectTimeout", Leaf),
    ("cluster", Leaf),
    ("tls", Obj(&[("caFile", Leaf)])),
]);
const POSTGRES: Shape = Obj(&[
    ("enabled", Leaf),
    ("connectionString", Leaf),
    ("compressionLevel", Leaf),
    ("retentionDays", Leaf),
    ("poolSize", Leaf),
    ("connectTimeout", Leaf),
    ("schema", Leaf),
    ("tls", Obj(&[("mode", Leaf), ("caFile", Leaf)])),
]);
const POLICIES: Shape = Obj(&[
    ("promotionThreshold", Leaf),
    ("batchSize", Leaf),
    ("maxConcurrentMoves", Leaf),
    ("hotMaxAge", Leaf),
    ("warmMaxAge", Leaf),
    ("syncInterval", Leaf),
    ("pressureCheckInterval", Leaf),
    ("prefetchRelatives", Leaf),
    ("prefetchPeriodic", Leaf),
    ("maxPinnedBytes", Leaf),
    ("decisionsPerFrame", Leaf),
    ("frequencyWindow", Leaf),
    ("minDataCollection", Leaf),
    ("evictionStrategy", Leaf),
    ("backgroundSync", Leaf),
    ("weights", Obj(&[("recency", Leaf), ("frequency", Leaf), ("pattern", Leaf), ("size", Leaf)])),
    ("watermarks", Obj(&[("warning", Leaf), ("critical", Leaf), ("emergency", Leaf)])),
    (
        "filters",
        Obj(&[
            ("cooldown", Obj(&[("enabled", Leaf), ("duration", Leaf)])),
            ("cycles", Obj(&[("enabled", Leaf), ("window", Leaf)])),
            ("minConfidence", Obj(&[("enabled", Leaf), ("value", Leaf)])),
            ("persistence", Obj(&[("enabled", Leaf), ("cycles", Leaf), ("window", Leaf)])),
            ("costBenefit", Obj(&[("enabled", Leaf), ("horizon", Leaf), ("moveBytesPerRead", Leaf)])),
            ("trend", Obj(&[("enabled", Leaf), ("ratio", Leaf)])),
            ("pattern", Obj(&[("enabled", Leaf), ("lead", Leaf), ("minConfidence", Leaf)])),
        ]),
    ),
]);
const CONFIG: Shape = Obj(&[
    ("dbPath", Leaf),
    ("tiers", Obj(&[("sqlite", SQLITE), ("redis", REDIS), ("postgres", POSTGRES)])),
    ("policies", POLICIES),
    ("limits", Obj(&[("maxFrameBytes", Leaf), ("accessFlushEvery", Leaf), ("accessFlushInterval", Leaf)])),
    ("recordTrace", Leaf),
    ("compression", Obj(&[("dictionaries", Obj(&[("enabled", Leaf), ("minFrames", Leaf), ("maxSize", Leaf)]))])),
]);
const MIGRATE: Shape = Obj(&[
    ("toTier", Leaf),
    ("frameIds", Leaf),
    ("olderThan", Leaf),
    ("projectId", Leaf),
    ("limit", Leaf),
    ("dryRun", Leaf),
]);

/// Keys arbitrary JSON draws from: every key of every shape above.
const KEYS: &[&str] = &[
    "dbPath",
    "tiers",
    "sqlite",
    "redis",
    "postgres",
    "policies",
    "limits",
    "enabled",
    "connectionString",
    "ttl",
    "maxSize",
    "maxFrames",
    "maxAge",
    "keyPrefix",
    "cluster",
    "tls",
    "caFile",
    "mode",
    "schema",
    "poolSize",
    "weights",
    "watermarks",
    "filters",
    "cooldown",
    "warning",
    "critical",
    "emergency",
    "recency",
    "toTier",
    "frameIds",
    "olderThan",
    "limit",
    "dryRun",
    "projectId",
    "evictionStrategy",
    "maxFrameBytes",
];

/// Objects of `shape`: each known key present half the time, its value of its own shape (or,
/// now and then, any JSON), sometimes an unknown key too.
fn shaped(shape: &'static Shape) -> BoxedStrategy<Value> {
    match shape {
        Leaf => json(KEYS).boxed(),
        Obj(fields) => {
            let parts: Vec<BoxedStrategy<Option<(String, Value)>>> = fields
                .iter()
                .map(|(k, s)| {
                    let v = prop_oneof![6 => shaped(s), 1 => json(KEYS)];
                    prop::option::weighted(0.5, v.prop_map(move |v| (k.to_string(), v))).boxed()
                })
                .collect();
            let extra = prop::option::weighted(0.1, (text(), json(KEYS)));
            let obj = (parts, extra).prop_map(|(parts, extra)| {
                Value::Object(parts.into_iter().flatten().chain(extra).collect::<Map<String, Value>>())
            });
            prop_oneof![12 => obj, 1 => json(KEYS)].boxed()
        }
    }
}

/// The error names a field the way the docs say: `config` (the root), or a dotted path whose first
/// part is one of `top` or a key the input has (an unknown option).
fn names_a_field(v: &Value, root: &str, top: &[&str], field: &str, message: &str, shown: &str) -> bool {
    let first = field.split('.').next().unwrap_or("");
    // An unknown key may hold dots itself.
    let in_input = v.as_object().is_some_and(|o| o.keys().any(|k| field == k || field.starts_with(&format!("{k}."))));
    !message.is_empty() && shown.contains(field) && (field == root || top.contains(&first) || in_input)
}

fn env() -> impl Strategy<Value = EnvFallback> {
    (prop::option::of(text()), prop::option::of(text()))
        .prop_map(|(redis_url, database_url)| EnvFallback { redis_url, database_url })
}

#[test]
fn any_config_is_parsed_or_refused_by_field() {
    let top = ["dbPath", "tiers", "policies", "limits", "recordTrace"];
    let s = (prop_oneof![4 => shaped(&CONFIG), 1 => json(KEYS)], env());
    check("config: TierConfig", file!(), 4000, s, |(v, env)| {
        match TierConfig::from_json_with_env(&v, &env) {
            Ok(_) => {}
            Err(ref e @ TierError::InvalidConfig { ref field, ref message }) => {
                prop_assert!(names_a_field(&v, "config", &top, field, message, &e.to_string()), "{e:?} for {v}");
            }
            Err(e) => prop_assert!(false, "not ERR_INVALID_CONFIG: {e:?} for {v}"),
        }
        Ok(())
    });
}

#[test]
fn any_policies_section_is_parsed_or_refused_by_field() {
    let s = (prop_oneof![4 => shaped(&POLICIES), 1 => json(KEYS)], any::<u64>());
    check("config: PolicyOptions", file!(), 3000, s, |(v, hot_max_age)| {
        match PolicyOptions::from_json(&v, hot_max_age) {
            Ok(_) => {}
            Err(ref e @ TierError::InvalidConfig { ref field, ref message }) => {
                let ok = field.starts_with("policies") && !message.is_empty() && e.to_string().contains(field.as_str());
                prop_assert!(ok, "{e:?} for {v}");
            }
            Err(e) => prop_assert!(false, "not ERR_INVALID_CONFIG: {e:?} for {v}"),
        }
        Ok(())
    });
}

#[test]
fn any_migrate_options_are_parsed_or_refused_by_field() {
    let keys = MigrateRequest::KEYS;
    check("config: MigrateRequest", file!(), 3000, prop_oneof![4 => shaped(&MIGRATE), 1 => json(KEYS)], |v| {
        match MigrateRequest::from_json(&v) {
            Ok(_) => {}
            Err(ref e @ TierError::InvalidArgument { ref field, ref message }) => {
                prop_assert!(names_a_field(&v, "options", &keys, field, message, &e.to_string()), "{e:?} for {v}");
            }
            Err(e) => prop_assert!(false, "not ERR_INVALID_ARGUMENT: {e:?} for {v}"),
        }
        Ok(())
    });
}
