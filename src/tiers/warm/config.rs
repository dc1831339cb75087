//! `tiers.redis`: where the warm tier is and how it keeps its keys.
//!
//! Units: `ttl` is **seconds** (as Redis counts them) or a duration such as `"24h"`; `maxSize` bytes
//! or a size such as `"1GB"`; `connectTimeout` milliseconds or a duration.

use std::path::PathBuf;

use serde_json::Value;

use crate::model::units::{parse_duration_ms, GB};
use crate::model::values::Fields;
use crate::model::{EvictionStrategy, Result};

#[derive(Clone, PartialEq)]
pub struct RedisConfig {
    pub enabled: bool,
    pub connection_string: Option<String>,
    pub ttl_secs: u64,
    pub max_size: u64,
    /// Every key we write starts with this (default `sm:`), so a shared Redis can be told apart.
    pub key_prefix: String,
    pub connect_timeout_ms: u64,
    /// From `policies.evictionStrategy`.
    pub eviction_strategy: EvictionStrategy,
    /// Redis Cluster (`cluster: true`, or several comma-separated node URLs): the cluster client
    /// and the bucketed key layout (see `keys`).
    pub cluster: bool,
    /// `tiers.redis.tls.caFile`: trusted roots (PEM) for a `rediss://` server, instead of the
    /// system's store. `rediss://host:port/#insecure` skips verification (redis-rs's convention).
    pub ca_file: Option<PathBuf>,
}

impl RedisConfig {
    /// `env_url` is `REDIS_URL`, used when the section has no connection string.
    pub fn from_fields(
        rd: &Fields<'_>,
        env_url: Option<String>,
        eviction_strategy: EvictionStrategy,
    ) -> Result<RedisConfig> {
        rd.known(&["enabled", "connectionString", "ttl", "maxSize", "keyPrefix", "connectTimeout", "cluster", "tls"])?;
        let url = rd.opt_string("connectionString")?.or(env_url);
        if let Some(u) = &url {
            let schemes = ["redis://", "rediss://", "redis+unix://", "unix://"];
            if !u.split(',').all(|n| schemes.iter().any(|s| n.trim().starts_with(s))) {
                return Err(
                    rd.fail("connectionString", "must be a redis:// or rediss:// URL (or several, comma-separated)")
                );
            }
        }
        let several = url.as_deref().is_some_and(|u| u.contains(','));
        let cluster = rd.boolean("cluster", several)?;
        if several && !cluster {
            return Err(rd.fail("cluster", "must be true when connectionString lists several nodes"));
        }
        let enabled = rd.boolean("enabled", url.is_some())?;
        if enabled && url.is_none() {
            return Err(rd.fail("connectionString", "is required when the Redis tier is enabled (or set REDIS_URL)"));
        }
        let key_prefix = match rd.get("keyPrefix") {
            None => "sm:".to_string(),
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 64 && !s.contains(['{', '}', ' ']) => s.clone(),
            Some(_) => return Err(rd.fail("keyPrefix", "must be 1-64 characters without braces or spaces")),
        };
        let tls = rd.section("tls", "tiers.redis.tls")?;
        tls.known(&["caFile"])?;
        let ca_file = tls.opt_string("caFile")?.map(PathBuf::from);
        if let Some(p) = &ca_file {
            if !url.as_deref().is_some_and(|u| u.starts_with("rediss://")) {
                return Err(tls.fail("caFile", "needs a rediss:// connection string"));
            }
            if !p.is_file() {
                return Err(tls.fail("caFile", format!("{} is not a readable file", p.display())));
            }
        }
        Ok(RedisConfig {
            enabled,
            connection_string: url,
            ttl_secs: ttl_secs(rd)?,
            max_size: rd.size("maxSize", GB, 1)?,
            key_prefix,
            connect_timeout_ms: rd.duration_ms("connectTimeout", 2000, 1)?,
            eviction_strategy,
            cluster,
            ca_file,
        })
    }
}

fn ttl_secs(rd: &Fields<'_>) -> Result<u64> {
    match rd.get("ttl") {
        None => Ok(24 * 3600),
        Some(Value::Number(n)) => {
            n.as_u64().filter(|s| *s >= 1).ok_or_else(|| rd.fail("ttl", "must be a positive whole number of seconds"))
        }
        Some(Value::String(s)) => parse_duration_ms(s)
            .filter(|ms| *ms >= 1000)
            .map(|ms| ms / 1000)
            .ok_or_else(|| rd.fail("ttl", "must be seconds or a duration such as '24h' (at least 1s)")),
        Some(_) => Err(rd.fail("ttl", "must be seconds or a duration such as '24h'")),
    }
}

/// The connection string's password never shows (`redact`).
impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("enabled", &self.enabled)
            .field("connection_string", &self.connection_string.as_deref().map(crate::tiers::redact))
            .field("ttl_secs", &self.ttl_secs)
            .field("max_size", &self.max_size)
            .field("key_prefix", &self.key_prefix)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("eviction_strategy", &self.eviction_strategy)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}
