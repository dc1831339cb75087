//! `TierConfig`: the one configuration object, in the seed design's shape, with its defaults and a
//! validation that names the bad field by its dotted path.
//!
//! Units: sizes are bytes (numbers) or strings like `"500MB"`; `maxAge` and `syncInterval` are
//! milliseconds (numbers) or strings like `"24h"`; `tiers.redis.ttl` is **seconds** (as Redis
//! counts them) or a string like `"24h"`.

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::error::{Result, TierError};

pub const MB: u64 = 1024 * 1024;
pub const GB: u64 = 1024 * MB;

#[derive(Debug, Clone, PartialEq)]
pub struct SqliteConfig {
    pub max_size: u64,
    pub max_frames: u64,
    pub max_age_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvictionStrategy {
    Lru,
    Lfu,
    Age,
}

impl EvictionStrategy {
    pub fn as_str(&self) -> &'static str {
        match self {
            EvictionStrategy::Lru => "LRU",
            EvictionStrategy::Lfu => "LFU",
            EvictionStrategy::Age => "AGE",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RedisConfig {
    pub enabled: bool,
    pub connection_string: Option<String>,
    pub ttl_secs: u64,
    pub max_size: u64,
    /// Every key we write starts with this (default `sm:`), so a shared Redis can be told apart.
    pub key_prefix: String,
    pub connect_timeout_ms: u64,
    pub eviction_strategy: EvictionStrategy,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PostgresConfig {
    pub enabled: bool,
    pub connection_string: Option<String>,
    pub compression_level: i32,
    pub retention_days: u32,
    pub pool_size: usize,
    pub connect_timeout_ms: u64,
    /// PostgreSQL schema our tables live in (default `public`); tests use one each.
    pub schema: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    pub promotion_threshold: u32,
    pub eviction_strategy: EvictionStrategy,
    pub background_sync: bool,
    pub sync_interval_ms: u64,
    /// Frames moved per batch by the mover.
    pub batch_size: usize,
    /// Warm frames untouched this long go cold (seed: 7 days).
    pub warm_max_age_ms: u64,
    /// The rest of the `policies` object, read by the policy engine (filters, weights, pins).
    pub raw: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TierConfig {
    /// `None`: an in-memory-free default of `./.stackmemory/context.db`.
    pub db_path: PathBuf,
    pub sqlite: SqliteConfig,
    pub redis: RedisConfig,
    pub postgres: PostgresConfig,
    pub policies: PolicyConfig,
    pub max_frame_bytes: u64,
    /// Access counts are flushed to SQLite after this many reads or this long, whichever is first.
    pub access_flush_every: usize,
    pub access_flush_ms: u64,
    pub record_trace: Option<PathBuf>,
}

impl TierConfig {
    /// Defaults with the environment's `REDIS_URL` / `DATABASE_URL` as fallbacks.
    pub fn default_with_env() -> TierConfig {
        Self::from_json_with_env(&Value::Null, &EnvFallback::from_process()).unwrap_or_else(|_| unreachable_default())
    }

    pub fn from_json(v: &Value) -> Result<TierConfig> {
        Self::from_json_with_env(v, &EnvFallback::from_process())
    }

    pub fn from_json_with_env(v: &Value, env: &EnvFallback) -> Result<TierConfig> {
        let empty = Map::new();
        let root = match v {
            Value::Null => &empty,
            Value::Object(m) => m,
            _ => return Err(TierError::invalid_config("config", "must be an object")),
        };
        check_keys(root, "", &["dbPath", "tiers", "policies", "limits", "recordTrace"])?;
        let db_path = match root.get("dbPath") {
            None | Some(Value::Null) => PathBuf::from(".stackmemory/context.db"),
            Some(Value::String(s)) if !s.trim().is_empty() => PathBuf::from(s),
            Some(_) => return Err(TierError::invalid_config("dbPath", "must be a non-empty string")),
        };
        let tiers = obj(root, "tiers", "tiers")?;
        check_keys(tiers, "tiers.", &["sqlite", "redis", "postgres"])?;
        let sq = obj(tiers, "sqlite", "tiers.sqlite")?;
        check_keys(sq, "tiers.sqlite.", &["maxSize", "maxFrames", "maxAge"])?;
        let sqlite = SqliteConfig {
            max_size: size(sq, "maxSize", "tiers.sqlite.maxSize", 500 * MB)?,
            max_frames: int(sq, "maxFrames", "tiers.sqlite.maxFrames", 1000, 1, u32::MAX as u64)?,
            max_age_ms: duration_ms(sq, "maxAge", "tiers.sqlite.maxAge", 24 * 3600 * 1000, 1)?,
        };

        let pol = obj(root, "policies", "policies")?;
        let eviction_strategy = match pol.get("evictionStrategy") {
            None | Some(Value::Null) => EvictionStrategy::Lru,
            Some(Value::String(s)) => match s.to_ascii_uppercase().as_str() {
                "LRU" => EvictionStrategy::Lru,
                "LFU" => EvictionStrategy::Lfu,
                "AGE" => EvictionStrategy::Age,
                _ => return Err(TierError::invalid_config("policies.evictionStrategy", "must be 'LRU', 'LFU' or 'AGE'")),
            },
            Some(_) => return Err(TierError::invalid_config("policies.evictionStrategy", "must be 'LRU', 'LFU' or 'AGE'")),
        };

        let rd = obj(tiers, "redis", "tiers.redis")?;
        check_keys(rd, "tiers.redis.", &["enabled", "connectionString", "ttl", "maxSize", "keyPrefix", "connectTimeout"])?;
        let redis_url = opt_string(rd, "connectionString", "tiers.redis.connectionString")?.or(env.redis_url.clone());
        if let Some(u) = &redis_url {
            if !(u.starts_with("redis://") || u.starts_with("rediss://") || u.starts_with("redis+unix://") || u.starts_with("unix://")) {
                return Err(TierError::invalid_config("tiers.redis.connectionString", "must be a redis:// or rediss:// URL"));
            }
        }
        let redis_enabled = boolean(rd, "enabled", "tiers.redis.enabled", redis_url.is_some())?;
        if redis_enabled && redis_url.is_none() {
            return Err(TierError::invalid_config("tiers.redis.connectionString", "is required when the Redis tier is enabled (or set REDIS_URL)"));
        }
        let prefix = match rd.get("keyPrefix") {
            None | Some(Value::Null) => "sm:".to_string(),
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 64 && !s.contains(['{', '}', ' ']) => s.clone(),
            Some(_) => return Err(TierError::invalid_config("tiers.redis.keyPrefix", "must be 1-64 characters without braces or spaces")),
        };
        let redis = RedisConfig {
            enabled: redis_enabled,
            connection_string: redis_url,
            ttl_secs: ttl_secs(rd)?,
            max_size: size(rd, "maxSize", "tiers.redis.maxSize", GB)?,
            key_prefix: prefix,
            connect_timeout_ms: duration_ms(rd, "connectTimeout", "tiers.redis.connectTimeout", 2000, 1)?,
            eviction_strategy,
        };

        let pg = obj(tiers, "postgres", "tiers.postgres")?;
        check_keys(pg, "tiers.postgres.", &["enabled", "connectionString", "compressionLevel", "retentionDays", "poolSize", "connectTimeout", "schema"])?;
        let pg_url = opt_string(pg, "connectionString", "tiers.postgres.connectionString")?.or(env.database_url.clone());
        if let Some(u) = &pg_url {
            if !(u.starts_with("postgres://") || u.starts_with("postgresql://") || u.contains('=')) {
                return Err(TierError::invalid_config("tiers.postgres.connectionString", "must be a postgres:// URL or a key=value connection string"));
            }
        }
        let pg_enabled = boolean(pg, "enabled", "tiers.postgres.enabled", pg_url.is_some())?;
        if pg_enabled && pg_url.is_none() {
            return Err(TierError::invalid_config("tiers.postgres.connectionString", "is required when the PostgreSQL tier is enabled (or set DATABASE_URL)"));
        }
        let postgres = PostgresConfig {
            enabled: pg_enabled,
            connection_string: pg_url,
            compression_level: int(pg, "compressionLevel", "tiers.postgres.compressionLevel", 3, 1, 22)? as i32,
            retention_days: int(pg, "retentionDays", "tiers.postgres.retentionDays", 365, 1, 100_000)? as u32,
            pool_size: int(pg, "poolSize", "tiers.postgres.poolSize", 4, 1, 64)? as usize,
            connect_timeout_ms: duration_ms(pg, "connectTimeout", "tiers.postgres.connectTimeout", 3000, 1)?,
            schema: match pg.get("schema") {
                None | Some(Value::Null) => "public".to_string(),
                Some(Value::String(s))
                    if !s.is_empty() && s.len() <= 63 && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                        && !s.starts_with(|c: char| c.is_ascii_digit()) => s.clone(),
                Some(_) => return Err(TierError::invalid_config("tiers.postgres.schema", "must be a lowercase identifier (a-z, 0-9, _)")),
            },
        };

        let policies = PolicyConfig {
            promotion_threshold: int(pol, "promotionThreshold", "policies.promotionThreshold", 3, 1, 1_000_000)? as u32,
            eviction_strategy,
            // On by default: frames leave hot by age, count and size without anyone calling
            // runCycle. The worker only starts when a remote tier is enabled (see the manager).
            background_sync: boolean(pol, "backgroundSync", "policies.backgroundSync", true)?,
            sync_interval_ms: duration_ms(pol, "syncInterval", "policies.syncInterval", 5 * 60 * 1000, 10)?,
            batch_size: int(pol, "batchSize", "policies.batchSize", 500, 1, 100_000)? as usize,
            warm_max_age_ms: duration_ms(pol, "warmMaxAge", "policies.warmMaxAge", 7 * 24 * 3600 * 1000, 1)?,
            raw: pol.clone(),
        };

        let lim = obj(root, "limits", "limits")?;
        check_keys(lim, "limits.", &["maxFrameBytes", "accessFlushEvery", "accessFlushInterval"])?;
        let max_frame_bytes = size(lim, "maxFrameBytes", "limits.maxFrameBytes", 4 * MB)?;
        if max_frame_bytes < 1024 {
            return Err(TierError::invalid_config("limits.maxFrameBytes", "must be at least 1024 bytes"));
        }
        let record_trace = opt_string(root, "recordTrace", "recordTrace")?.map(PathBuf::from);
        Ok(TierConfig {
            db_path,
            sqlite,
            redis,
            postgres,
            policies,
            max_frame_bytes,
            access_flush_every: int(lim, "accessFlushEvery", "limits.accessFlushEvery", 256, 1, 1_000_000)? as usize,
            access_flush_ms: duration_ms(lim, "accessFlushInterval", "limits.accessFlushInterval", 1000, 1)?,
            record_trace,
        })
    }
}

fn unreachable_default() -> TierConfig {
    // Only reached if the environment holds a malformed URL: fall back to local-only.
    TierConfig::from_json_with_env(&Value::Null, &EnvFallback::default()).unwrap_or_else(|_| TierConfig {
        db_path: PathBuf::from(".stackmemory/context.db"),
        sqlite: SqliteConfig { max_size: 500 * MB, max_frames: 1000, max_age_ms: 86_400_000 },
        redis: RedisConfig {
            enabled: false,
            connection_string: None,
            ttl_secs: 86_400,
            max_size: GB,
            key_prefix: "sm:".into(),
            connect_timeout_ms: 2000,
            eviction_strategy: EvictionStrategy::Lru,
        },
        postgres: PostgresConfig {
            enabled: false,
            connection_string: None,
            compression_level: 3,
            retention_days: 365,
            pool_size: 4,
            connect_timeout_ms: 3000,
            schema: "public".into(),
        },
        policies: PolicyConfig {
            promotion_threshold: 3,
            eviction_strategy: EvictionStrategy::Lru,
            background_sync: true,
            sync_interval_ms: 300_000,
            batch_size: 500,
            warm_max_age_ms: 7 * 86_400_000,
            raw: Map::new(),
        },
        max_frame_bytes: 4 * MB,
        access_flush_every: 256,
        access_flush_ms: 1000,
        record_trace: None,
    })
}

/// Environment values used when the config leaves a connection string out.
#[derive(Debug, Clone, Default)]
pub struct EnvFallback {
    pub redis_url: Option<String>,
    pub database_url: Option<String>,
}

impl EnvFallback {
    pub fn from_process() -> Self {
        let get = |k: &str| std::env::var(k).ok().filter(|s| !s.trim().is_empty());
        EnvFallback { redis_url: get("REDIS_URL"), database_url: get("DATABASE_URL") }
    }
}

fn ttl_secs(rd: &Map<String, Value>) -> Result<u64> {
    match rd.get("ttl") {
        None | Some(Value::Null) => Ok(24 * 3600),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(s) if s >= 1 => Ok(s),
            _ => Err(TierError::invalid_config("tiers.redis.ttl", "must be a positive whole number of seconds")),
        },
        Some(Value::String(s)) => match parse_duration_ms(s) {
            Some(ms) if ms >= 1000 => Ok(ms / 1000),
            _ => Err(TierError::invalid_config("tiers.redis.ttl", "must be seconds or a duration such as '24h' (at least 1s)")),
        },
        Some(_) => Err(TierError::invalid_config("tiers.redis.ttl", "must be seconds or a duration such as '24h'")),
    }
}

fn check_keys(m: &Map<String, Value>, prefix: &str, known: &[&str]) -> Result<()> {
    for k in m.keys() {
        if !known.contains(&k.as_str()) {
            return Err(TierError::invalid_config(
                format!("{prefix}{k}"),
                format!("unknown option (known: {})", known.join(", ")),
            ));
        }
    }
    Ok(())
}

fn obj<'a>(m: &'a Map<String, Value>, key: &str, path: &str) -> Result<&'a Map<String, Value>> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    match m.get(key) {
        None | Some(Value::Null) => Ok(EMPTY.get_or_init(Map::new)),
        Some(Value::Object(o)) => Ok(o),
        Some(_) => Err(TierError::invalid_config(path, "must be an object")),
    }
}

fn opt_string(m: &Map<String, Value>, key: &str, path: &str) -> Result<Option<String>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(TierError::invalid_config(path, "must be a string")),
    }
}

fn boolean(m: &Map<String, Value>, key: &str, path: &str, default: bool) -> Result<bool> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(TierError::invalid_config(path, "must be true or false")),
    }
}

fn int(m: &Map<String, Value>, key: &str, path: &str, default: u64, min: u64, max: u64) -> Result<u64> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if v >= min && v <= max => Ok(v),
            _ => Err(TierError::invalid_config(path, format!("must be a whole number from {min} to {max}"))),
        },
        Some(_) => Err(TierError::invalid_config(path, format!("must be a whole number from {min} to {max}"))),
    }
}

fn size(m: &Map<String, Value>, key: &str, path: &str, default: u64) -> Result<u64> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if v >= 1 => Ok(v),
            _ => Err(TierError::invalid_config(path, "must be a positive number of bytes or a size such as '500MB'")),
        },
        Some(Value::String(s)) => parse_size(s)
            .filter(|v| *v >= 1)
            .ok_or_else(|| TierError::invalid_config(path, "must be a positive number of bytes or a size such as '500MB'")),
        Some(_) => Err(TierError::invalid_config(path, "must be a positive number of bytes or a size such as '500MB'")),
    }
}

fn duration_ms(m: &Map<String, Value>, key: &str, path: &str, default: u64, min: u64) -> Result<u64> {
    let bad = || TierError::invalid_config(path, format!("must be milliseconds (at least {min}) or a duration such as '24h'"));
    match m.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) => n.as_u64().filter(|v| *v >= min).ok_or_else(bad),
        Some(Value::String(s)) => parse_duration_ms(s).filter(|v| *v >= min).ok_or_else(bad),
        Some(_) => Err(bad()),
    }
}

/// `"500MB"`, `"1GB"`, `"64 KiB"`, `"1024"`.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1u64,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => MB,
        "g" | "gb" | "gib" => GB,
        "t" | "tb" | "tib" => 1024 * GB,
        _ => return None,
    };
    let v = n * mult as f64;
    (v.is_finite() && v >= 0.0 && v < u64::MAX as f64).then_some(v as u64)
}

/// `"24h"`, `"7d"`, `"30m"`, `"45s"`, `"250ms"`, `"1w"`; a bare number is milliseconds.
pub fn parse_duration_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" => 1.0,
        "s" | "sec" => 1000.0,
        "m" | "min" => 60_000.0,
        "h" | "hr" => 3_600_000.0,
        "d" | "day" | "days" => 86_400_000.0,
        "w" => 7.0 * 86_400_000.0,
        _ => return None,
    };
    let v = n * mult;
    (v.is_finite() && v >= 0.0 && v < u64::MAX as f64).then_some(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let env = EnvFallback { redis_url: Some("redis://127.0.0.1:6379".into()), database_url: Some("postgres://x@127.0.0.1/test".into()) };
        let c = TierConfig::from_json_with_env(&Value::Null, &env).expect("ok");
        assert!(c.redis.enabled && c.postgres.enabled);
        let c = TierConfig::from_json_with_env(&json!({"tiers": {"redis": {"enabled": false}}}), &env).expect("ok");
        assert!(!c.redis.enabled);
    }

    #[test]
    fn units() {
        let c = parse(json!({"tiers": {"sqlite": {"maxSize": "1GB", "maxAge": "2h"}, "redis": {"enabled": false, "ttl": "1h"}}})).expect("ok");
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
