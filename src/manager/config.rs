//! `TierConfig`: the one configuration object, in the seed design's shape. The top level is read
//! here; each section by its owner (`tiers.sqlite`/`redis`/`postgres` by their tiers, `policies`
//! by the policy engine), all with the readers of `model::values`, so a bad field is named by its
//! dotted path with the same units everywhere.
//!
//! Units: sizes are bytes (numbers) or strings like `"500MB"`; durations are milliseconds (numbers)
//! or strings like `"24h"`; `tiers.redis.ttl` is **seconds** (as Redis counts them) or a string
//! like `"24h"`.

use std::path::PathBuf;

use serde_json::Value;

use crate::model::units::MB;
use crate::model::values::{Fields, Kind};
use crate::model::{Result, TierError};
use crate::moves::DictConfig;
use crate::policy::PolicyOptions;
use crate::tiers::cold::PostgresConfig;
use crate::tiers::hot::SqliteConfig;
use crate::tiers::warm::RedisConfig;

#[derive(Debug, Clone, PartialEq)]
pub struct TierConfig {
    /// Default `./.stackmemory/context.db` (StackMemory's own database).
    pub db_path: PathBuf,
    pub sqlite: SqliteConfig,
    pub redis: RedisConfig,
    pub postgres: PostgresConfig,
    pub policies: PolicyOptions,
    pub max_frame_bytes: u64,
    /// Access counts are flushed to SQLite after this many reads or this long, whichever is first.
    pub access_flush_every: usize,
    pub access_flush_ms: u64,
    pub record_trace: Option<PathBuf>,
    /// `compression.dictionaries`: per-project zstd dictionaries for the envelopes.
    pub dictionaries: DictConfig,
}

/// Environment values used when the config leaves a connection string out.
#[derive(Clone, Default)]
pub struct EnvFallback {
    pub redis_url: Option<String>,
    pub database_url: Option<String>,
}

/// The URLs' passwords never show.
impl std::fmt::Debug for EnvFallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvFallback")
            .field("redis_url", &self.redis_url.as_deref().map(crate::tiers::redact))
            .field("database_url", &self.database_url.as_deref().map(crate::tiers::redact))
            .finish()
    }
}

impl EnvFallback {
    pub fn from_process() -> Self {
        let get = |k: &str| std::env::var(k).ok().filter(|s| !s.trim().is_empty());
        EnvFallback {
            redis_url: get("STACKMEMORY_REDIS_URL").or_else(|| get("REDIS_URL")),
            database_url: get("STACKMEMORY_POSTGRES_URL").or_else(|| get("DATABASE_URL")),
        }
    }
}

impl TierConfig {
    pub fn from_json(v: &Value) -> Result<TierConfig> {
        Self::from_json_with_env(v, &EnvFallback::from_process())
    }

    pub fn from_json_with_env(v: &Value, env: &EnvFallback) -> Result<TierConfig> {
        let root = Fields::root(v, "", Kind::Config)?;
        root.known(&["dbPath", "tiers", "policies", "limits", "recordTrace", "compression"])?;
        let db_path = match root.get("dbPath") {
            None => PathBuf::from(".stackmemory/context.db"),
            Some(Value::String(s)) if !s.trim().is_empty() => PathBuf::from(s),
            Some(_) => return Err(root.fail("dbPath", "must be a non-empty string")),
        };
        let tiers = root.section("tiers", "tiers")?;
        tiers.known(&["sqlite", "redis", "postgres"])?;
        let sqlite = SqliteConfig::from_fields(&tiers.section("sqlite", "tiers.sqlite")?)?;
        let policies = PolicyOptions::from_json(root.get("policies").unwrap_or(&Value::Null), sqlite.max_age_ms)?;
        let redis = RedisConfig::from_fields(
            &tiers.section("redis", "tiers.redis")?,
            env.redis_url.clone(),
            policies.eviction_strategy,
        )?;
        let postgres =
            PostgresConfig::from_fields(&tiers.section("postgres", "tiers.postgres")?, env.database_url.clone())?;
        let lim = root.section("limits", "limits")?;
        lim.known(&["maxFrameBytes", "accessFlushEvery", "accessFlushInterval"])?;
        let max_frame_bytes = lim.size("maxFrameBytes", 4 * MB, 1)?;
        if max_frame_bytes < 1024 {
            return Err(TierError::invalid_config("limits.maxFrameBytes", "must be at least 1024 bytes"));
        }
        let comp = root.section("compression", "compression")?;
        comp.known(&["dictionaries"])?;
        let d = comp.section("dictionaries", "compression.dictionaries")?;
        d.known(&["enabled", "minFrames", "maxSize"])?;
        let dictionaries = DictConfig {
            enabled: d.boolean("enabled", true)?,
            min_frames: d.int("minFrames", 500, 16, 1_000_000)? as usize,
            max_size: d.size("maxSize", 16 * 1024, 1024)? as usize,
        };
        if dictionaries.max_size > 1024 * 1024 {
            return Err(d.fail("maxSize", "must be at most 1MB (zstd dictionaries past 100 KB rarely help)"));
        }
        Ok(TierConfig {
            dictionaries,
            db_path,
            sqlite,
            redis,
            postgres,
            policies,
            max_frame_bytes,
            access_flush_every: lim.int("accessFlushEvery", 256, 1, 1_000_000)? as usize,
            access_flush_ms: lim.duration_ms("accessFlushInterval", 1000, 1)?,
            record_trace: root.opt_string("recordTrace")?.map(PathBuf::from),
        })
    }

    /// Whether any remote tier is configured (the background worker only runs then).
    pub fn has_remote(&self) -> bool {
        self.redis.enabled || self.postgres.enabled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::units::GB;
    use crate::model::EvictionStrategy;
    use serde_json::json;

    fn parse(v: Value) -> Result<TierConfig> {
        TierConfig::from_json_with_env(&v, &EnvFallback::default())
    }

    #[test]
    fn defaults_are_the_seed_designs() {
        let c = parse(Value::Null).expect("defaults");
        assert_eq!(c.sqlite.max_size, 500 * MB);
        assert_eq!(c.sqlite.max_frames, 1000);
        assert_eq!(c.sqlite.max_age_ms, 86_400_000);
        assert_eq!(c.redis.ttl_secs, 86_400);
        assert_eq!(c.redis.max_size, GB);
        assert!(!c.redis.enabled && !c.postgres.enabled);
        assert_eq!(c.postgres.compression_level, 3);
        assert_eq!(c.policies.eviction_strategy, EvictionStrategy::Lru);
    }

    #[test]
    fn env_fallbacks_enable_tiers() {
        let env = EnvFallback {
            redis_url: Some("redis://127.0.0.1:6379".into()),
            database_url: Some("postgres://x@127.0.0.1/test".into()),
        };
        let c = TierConfig::from_json_with_env(&Value::Null, &env).expect("ok");
        assert!(c.redis.enabled && c.postgres.enabled);
        let c = TierConfig::from_json_with_env(&json!({"tiers": {"redis": {"enabled": false}}}), &env).expect("ok");
        assert!(!c.redis.enabled);
    }

    #[test]
    fn units() {
        let c = parse(
            json!({"tiers": {"sqlite": {"maxSize": "1GB", "maxAge": "2h"}, "redis": {"enabled": false, "ttl": "1h"}}}),
        )
        .expect("ok");
        assert_eq!(c.sqlite.max_size, GB);
        assert_eq!(c.sqlite.max_age_ms, 7_200_000);
        assert_eq!(c.redis.ttl_secs, 3600);
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = vec![
            (json!(5), "config"),
            (json!({"dbPath": 3}), "dbPath"),
            (json!({"bogus": 1}), "bogus"),
            (json!({"tiers": {"sqlite": {"maxFrames": -1}}}), "tiers.sqlite.maxFrames"),
            (json!({"tiers": {"sqlite": {"maxSize": "lots"}}}), "tiers.sqlite.maxSize"),
            (json!({"tiers": {"redis": {"enabled": true}}}), "tiers.redis.connectionString"),
            (json!({"tiers": {"redis": {"connectionString": "http://x"}}}), "tiers.redis.connectionString"),
            (json!({"tiers": {"redis": {"ttl": 0}}}), "tiers.redis.ttl"),
            (json!({"tiers": {"redis": {"connectionString": "redis://a:1,http://b"}}}), "tiers.redis.connectionString"),
            (
                json!({"tiers": {"redis": {"connectionString": "redis://a:1,redis://b:2", "cluster": false}}}),
                "tiers.redis.cluster",
            ),
            (json!({"tiers": {"redis": {"cluster": "yes"}}}), "tiers.redis.cluster"),
            (json!({"tiers": {"postgres": {"compressionLevel": 40}}}), "tiers.postgres.compressionLevel"),
            (json!({"policies": {"evictionStrategy": "MRU"}}), "policies.evictionStrategy"),
            (json!({"policies": {"promotionThreshold": 0}}), "policies.promotionThreshold"),
        ];
        for (v, field) in cases {
            match parse(v.clone()) {
                Err(TierError::InvalidConfig { field: f, .. }) => assert_eq!(f, field, "for {v}"),
                other => panic!("expected InvalidConfig for {v}, got {other:?}"),
            }
        }
    }
}
