//! `tiers.postgres`: where the archive is, its pool, compression and retention.

use serde_json::Value;

use std::path::PathBuf;

use super::tls::{split_ssl, SslMode};
use crate::model::values::Fields;
use crate::model::Result;

#[derive(Clone, PartialEq)]
pub struct PostgresConfig {
    pub enabled: bool,
    pub connection_string: Option<String>,
    pub compression_level: i32,
    pub retention_days: u32,
    pub pool_size: usize,
    pub connect_timeout_ms: u64,
    /// Longest one operation (a query, a batch's transaction) may wait for the server.
    pub query_timeout_ms: u64,
    /// PostgreSQL schema our tables live in (default `public`); tests use one each.
    pub schema: String,
    /// `tiers.postgres.tls` (`mode`, `caFile`), else the connection string's `sslmode` / `sslrootcert`.
    pub tls: PostgresTls,
}

/// How the archive's connections are encrypted and checked (libpq's `sslmode` semantics).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PostgresTls {
    pub mode: SslMode,
    /// Trusted roots (PEM); the system's store when absent.
    pub ca_file: Option<PathBuf>,
}

impl PostgresConfig {
    /// `env_url` is `DATABASE_URL`, used when the section has no connection string.
    pub fn from_fields(pg: &Fields<'_>, env_url: Option<String>) -> Result<PostgresConfig> {
        pg.known(&[
            "enabled",
            "connectionString",
            "compressionLevel",
            "retentionDays",
            "poolSize",
            "connectTimeout",
            "queryTimeout",
            "schema",
            "tls",
        ])?;
        let url = pg.opt_string("connectionString")?.or(env_url);
        if let Some(u) = &url {
            if !(u.starts_with("postgres://") || u.starts_with("postgresql://") || u.contains('=')) {
                return Err(pg.fail("connectionString", "must be a postgres:// URL or a key=value connection string"));
            }
        }
        let enabled = pg.boolean("enabled", url.is_some())?;
        if enabled && url.is_none() {
            return Err(
                pg.fail("connectionString", "is required when the PostgreSQL tier is enabled (or set DATABASE_URL)")
            );
        }
        let schema = match pg.get("schema") {
            None => "public".to_string(),
            Some(Value::String(s)) if valid_schema(s) => s.clone(),
            Some(_) => return Err(pg.fail("schema", "must be a lowercase identifier (a-z, 0-9, _)")),
        };
        let tls = tls_options(pg, url.as_deref())?;
        Ok(PostgresConfig {
            enabled,
            connection_string: url,
            compression_level: pg.int("compressionLevel", 3, 1, 22)? as i32,
            retention_days: pg.int("retentionDays", 365, 1, 100_000)? as u32,
            pool_size: pg.int("poolSize", 4, 1, 64)? as usize,
            connect_timeout_ms: pg.duration_ms("connectTimeout", 3000, 1)?,
            query_timeout_ms: pg.duration_ms("queryTimeout", 30_000, 1)?,
            schema,
            tls,
        })
    }
}

/// `tls.mode` / `tls.caFile` win over the URL's `sslmode` / `sslrootcert`; libpq's rule that a
/// root certificate turns `require` into `verify-ca` holds for both.
fn tls_options(pg: &Fields<'_>, url: Option<&str>) -> Result<PostgresTls> {
    let (url_mode, url_root) = match url {
        Some(u) => split_ssl(u).map(|(_, m, r)| (m, r)).map_err(|e| pg.fail("connectionString", e))?,
        None => (None, None),
    };
    let t = pg.section("tls", "tiers.postgres.tls")?;
    t.known(&["mode", "caFile"])?;
    let mode = match t.opt_string("mode")? {
        Some(m) => Some(
            SslMode::parse(&m)
                .ok_or_else(|| t.fail("mode", "must be disable, allow, prefer, require, verify-ca or verify-full"))?,
        ),
        None => url_mode,
    };
    let ca_file = t.opt_string("caFile")?.map(PathBuf::from).or(url_root);
    let mode = match (mode, &ca_file) {
        (Some(SslMode::Require), Some(_)) => SslMode::VerifyCa,
        (Some(m), _) => m,
        (None, _) => SslMode::Prefer,
    };
    if let Some(p) = &ca_file {
        if !p.is_file() {
            return Err(t.fail("caFile", format!("{} is not a readable file", p.display())));
        }
    }
    Ok(PostgresTls { mode, ca_file })
}

/// A plain lowercase identifier: the only text we format into SQL (quoted) is the schema name.
pub fn valid_schema(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

/// The connection string's password never shows (`redact`).
impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("enabled", &self.enabled)
            .field("connection_string", &self.connection_string.as_deref().map(crate::tiers::redact))
            .field("compression_level", &self.compression_level)
            .field("retention_days", &self.retention_days)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("query_timeout_ms", &self.query_timeout_ms)
            .field("schema", &self.schema)
            .field("tls", &self.tls)
            .finish()
    }
}
