//! The cold tier: PostgreSQL as the long-term, possibly shared, durable archive.
//!
//! One table, `frames_archive`, in the schema `cfg.schema`, holding the codec's envelope bytes
//! (already zstd-compressed, so the column is `STORAGE EXTERNAL`: PostgreSQL must not try to
//! compress it again) plus the frame's metadata columns and a weighted `tsvector` computed at write
//! time. The schema is created and upgraded by [`ColdTier::connect`] under an advisory lock, so
//! several processes (or machines) opening the same database at once do not race.
//!
//! Writes go through a binary `COPY` into a per-transaction temporary staging table followed by one
//! `INSERT .. SELECT .. ON CONFLICT DO UPDATE` that never replaces a newer version by an older one.
//! Every value that comes from a caller travels as a bound parameter; the only text formatted into
//! SQL is the schema name, which is validated as a plain lowercase identifier and quoted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::model::{Result, TierError};

pub mod config;
mod copy;
mod dictionaries;
mod reencode;
mod rows;
mod schema;
mod search;
pub mod tls;

use config::valid_schema;
pub use config::PostgresConfig;
pub use copy::{archive_row, ArchiveRow};
pub use reencode::StaleEnvelope;
use schema::Sql;
pub use search::{ColdHit, ColdStats, MAX_SEARCH_LIMIT};

const TIER: &str = "postgres";
/// Every archive write (upsert, tier change, delete) holds this shared advisory lock for its
/// transaction; crash recovery takes it exclusively (see `barrier`). Keyed by schema.
const LOCK_SHARED: &str = "SELECT pg_advisory_xact_lock_shared(hashtext('stackmemory-tiers:' || current_schema()))";
const LOCK_EXCLUSIVE: &str = "SELECT pg_advisory_xact_lock(hashtext('stackmemory-tiers:' || current_schema()))";

/// Handle on the cold tier: a connection pool plus the configuration. Cheap to clone.
#[derive(Clone)]
pub struct ColdTier {
    pool: Pool,
    cfg: Arc<PostgresConfig>,
    sql: Arc<Sql>,
    /// This SQLite file's name in `frame_holders` (see [`ColdTier::with_holder`]); empty: none kept.
    holder: Arc<str>,
    /// Told about every connection that could not be made (the manager's breaker).
    outage: Arc<std::sync::OnceLock<crate::tiers::OutageHook>>,
}

impl std::fmt::Debug for ColdTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColdTier").field("schema", &self.cfg.schema).field("pool", &self.pool.status()).finish()
    }
}

impl ColdTier {
    /// Archive rows this handle writes are held for `holder` (one SQLite file, i.e. one of a user's
    /// machines), and its deletes only release that hold: a row goes when no machine holds it.
    pub fn with_holder(mut self, holder: &str) -> ColdTier {
        self.holder = Arc::from(holder);
        self
    }

    /// Build the pool and run the migrations. Fails within about `connect_timeout_ms` with
    /// `TierUnavailable` when the server cannot be reached.
    pub async fn connect(cfg: &PostgresConfig) -> Result<ColdTier> {
        let url = cfg
            .connection_string
            .as_deref()
            .ok_or_else(|| TierError::invalid_config("tiers.postgres.connectionString", "is required"))?;
        if !valid_schema(&cfg.schema) {
            return Err(TierError::invalid_config(
                "tiers.postgres.schema",
                "must be a lowercase identifier (a-z, 0-9, _)",
            ));
        }
        // sslmode / sslrootcert are ours (tokio-postgres knows fewer modes): out of the string.
        let (url, _, _) =
            tls::split_ssl(url).map_err(|e| TierError::invalid_config("tiers.postgres.connectionString", e))?;
        // The parser's messages never quote the string (it may hold a password).
        let mut pg: tokio_postgres::Config =
            url.parse().map_err(|e| TierError::invalid_config("tiers.postgres.connectionString", format!("{e}")))?;
        pg.ssl_mode(cfg.tls.mode.wire());
        let tls = tls::client_config(cfg.tls.mode, cfg.tls.ca_file.as_deref())
            .map_err(|e| TierError::invalid_config("tiers.postgres.tls.caFile", e))?;
        let connect_timeout = Duration::from_millis(cfg.connect_timeout_ms.max(1));
        pg.connect_timeout(connect_timeout);
        // Notice dead peers in minutes, not the OS default of hours.
        pg.keepalives_idle(Duration::from_secs(30));
        if pg.get_tcp_user_timeout().is_none() {
            pg.tcp_user_timeout(Duration::from_secs(60));
        }
        if pg.get_application_name().is_none() {
            pg.application_name("stackmemory-tiers");
        }
        let options = match pg.get_options() {
            Some(o) if !o.trim().is_empty() => format!("{o} -c search_path={}", cfg.schema),
            _ => format!("-c search_path={}", cfg.schema),
        };
        pg.options(options);

        let manager = Manager::from_config(
            pg,
            MakeRustlsConnect::new(tls),
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(cfg.pool_size.max(1))
            .create_timeout(Some(connect_timeout))
            .recycle_timeout(Some(connect_timeout))
            // Waiting for a busy slot is not an outage: allow long batches to finish first.
            .wait_timeout(Some(connect_timeout.max(Duration::from_secs(30))))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| TierError::invalid_config("tiers.postgres", format!("cannot build the pool: {e}")))?;

        let tier = ColdTier {
            pool,
            cfg: Arc::new(cfg.clone()),
            sql: Arc::new(Sql::new(&cfg.schema)),
            outage: Default::default(),
            holder: Arc::from(""),
        };
        tier.upgrade_schema().await?;
        Ok(tier)
    }

    pub fn config(&self) -> &PostgresConfig {
        &self.cfg
    }

    /// Who is told about outages (set once, by the manager's breaker).
    pub fn set_outage_hook(&self, hook: crate::tiers::OutageHook) {
        let _ = self.outage.set(hook);
    }

    /// Runs one operation within `queryTimeout`. A server that stops answering on a connection it
    /// accepted (stopped, frozen, or behind a link that swallows packets while something still
    /// acknowledges them) never fails a query by itself, and TCP notices only a dead peer: past
    /// the deadline the operation is abandoned (its pooled connection goes with the pool the
    /// breaker replaces), the outage reported, and `TierUnavailable` returned.
    pub(super) async fn bounded<T>(&self, what: &str, op: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        let limit = Duration::from_millis(self.cfg.query_timeout_ms.max(1));
        match tokio::time::timeout(limit, op).await {
            Ok(r) => r,
            Err(_) => {
                let cause = format!("no answer within {} ms ({what})", limit.as_millis());
                if let Some(h) = self.outage.get() {
                    h(&cause);
                }
                Err(TierError::unavailable(TIER, cause))
            }
        }
    }

    /// A pooled connection. A connection that cannot be made (refused, timed out, TLS refused) is
    /// an outage; waiting for a busy pool is not.
    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| {
            let outage = matches!(
                &e,
                PoolError::Backend(_)
                    | PoolError::Timeout(
                        deadpool_postgres::TimeoutType::Create | deadpool_postgres::TimeoutType::Recycle
                    )
            );
            let err = pool_err(e);
            if let (true, Some(h)) = (outage, self.outage.get()) {
                if let TierError::TierUnavailable { cause, .. } = &err {
                    h(cause);
                }
            }
            err
        })
    }

    /// Whether our connection to the server is encrypted, as the server sees it (`pg_stat_ssl`).
    pub async fn tls_in_use(&self) -> Result<bool> {
        self.bounded("tls_in_use", async {
            let client = self.client().await?;
            let row = client
                .query_one("SELECT coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)", &[])
                .await
                .map_err(|e| pg_err("tls", e))?;
            row.try_get::<_, bool>(0).map_err(|e| pg_err("tls", e))
        })
        .await
    }

    /// Round trip of a trivial query (including taking a pooled connection).
    pub async fn ping(&self) -> Result<Duration> {
        self.bounded("ping", async {
            let started = Instant::now();
            let client = self.client().await?;
            client.simple_query("SELECT 1").await.map_err(|e| pg_err("ping", e))?;
            Ok(started.elapsed())
        })
        .await
    }
}

#[cfg(test)]
impl ColdTier {
    /// Tests only: every archived frame id (of one project), sorted.
    pub async fn list_ids(&self, project_id: Option<&str>) -> Result<Vec<String>> {
        self.bounded("list_ids", async {
            let client = self.client().await?;
            let sql = format!(
                "SELECT frame_id FROM {}.frames_archive WHERE $1::text IS NULL OR project_id = $1 ORDER BY frame_id",
                self.sql.schema
            );
            let rows = client.query(&sql, &[&project_id]).await.map_err(|e| pg_err("list", e))?;
            rows.iter().map(|r| r.try_get::<_, String>(0).map_err(|e| pg_err("list", e))).collect()
        })
        .await
    }

    /// `DROP SCHEMA .. CASCADE` (tests only); refuses the `public` schema.
    pub async fn drop_schema(&self) -> Result<()> {
        if self.cfg.schema == "public" {
            return Err(TierError::invalid_argument("schema", "refusing to drop the public schema"));
        }
        let client = self.client().await?;
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.sql.schema))
            .await
            .map_err(|e| pg_err("drop schema", e))
    }
}

fn pool_err(e: PoolError) -> TierError {
    match e {
        PoolError::Timeout(t) => TierError::unavailable(TIER, format!("timed out ({t:?}) getting a connection")),
        PoolError::Backend(e) => TierError::unavailable(TIER, format!("cannot connect: {}", describe(&e))),
        PoolError::Closed => TierError::unavailable(TIER, "connection pool closed"),
        PoolError::PostCreateHook(e) => TierError::unavailable(TIER, format!("connection setup failed: {e}")),
        PoolError::NoRuntimeSpecified => TierError::storage("postgres pool", "no runtime specified"),
    }
}

/// `tokio_postgres::Error`'s Display hides the server's message behind "db error"; show both.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db, db.code().code()),
        None => match std::error::Error::source(e) {
            Some(src) => format!("{e}: {src}"),
            None => e.to_string(),
        },
    }
}

/// Connection-level failures are `TierUnavailable`; everything the server rejected is `Storage`.
pub(super) fn pg_err(what: &str, e: tokio_postgres::Error) -> TierError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        // 08: connection exceptions; 57P01-03: shutdown / cannot connect now; 53300: too many
        // connections.
        if code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300") {
            return TierError::unavailable(TIER, format!("{what}: {}", describe(&e)));
        }
        return TierError::storage(format!("postgres {what}"), describe(&e));
    }
    let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
    if e.is_closed() || io {
        return TierError::unavailable(TIER, format!("{what}: {}", describe(&e)));
    }
    TierError::storage(format!("postgres {what}"), describe(&e))
}

/// Errors caused by the query text itself (bad encoding, malformed tsquery) are the caller's.
pub(super) fn search_err(e: tokio_postgres::Error) -> TierError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        if code.starts_with("22") || code.starts_with("42") {
            return TierError::invalid_argument("query", db.message().to_string());
        }
    }
    pg_err("search", e)
}

#[cfg(test)]
mod search_props;
#[cfg(test)]
mod tests;
