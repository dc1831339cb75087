//! The cold tier: PostgreSQL as the long-term, possibly shared, durable archive.
//!
//! One table, `frames_archive`, in the schema `cfg.schema`, holding the codec's envelope bytes
//! (already zstd-compressed, so the column is `STORAGE EXTERNAL`: PostgreSQL must not try to
//! compress it again) plus the frame's metadata columns and a weighted `tsvector` computed at write
//! time. The schema is created and migrated by [`ColdTier::connect`] under an advisory lock, so
//! several processes (or machines) opening the same database at once do not race.
//!
//! Writes go through a binary `COPY` into a per-transaction temporary staging table followed by one
//! `INSERT .. SELECT .. ON CONFLICT DO UPDATE` that never replaces a newer version by an older one.
//! Every value that comes from a caller travels as a bound parameter; the only text formatted into
//! SQL is the schema name, which is validated as a plain lowercase identifier and quoted.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::NoTls;

use crate::model::codec::Encoded;
pub mod config;
use crate::model::units::to_seconds;
use crate::model::{Bundle, SearchText};
use crate::model::{Result, TierError};
use config::valid_schema;
pub use config::PostgresConfig;

const TIER: &str = "postgres";

/// Longest search query accepted (characters).
pub const MAX_QUERY_CHARS: usize = 10_000;
/// Most hits one search returns.
pub const MAX_SEARCH_LIMIT: u32 = 10_000;
/// Bytes of each search-text part fed to `to_tsvector` (a tsvector is limited to 1 MB).
const MAX_NAME_TEXT: usize = 8 * 1024;
const MAX_PART_TEXT: usize = 128 * 1024;
/// Batches larger than this are split over several pooled connections, in parallel.
const PARALLEL_MIN_ROWS: usize = 1_000;
/// Most connections one `upsert_many` uses at once.
const MAX_PARALLEL_CHUNKS: usize = 4;

/// One frame as stored in `frames_archive`.

/// Every archive write (upsert, tier change, delete) holds this shared advisory lock for its
/// transaction; crash recovery takes it exclusively (see `barrier`). Keyed by schema.
const LOCK_SHARED: &str = "SELECT pg_advisory_xact_lock_shared(hashtext('stackmemory-tiers:' || current_schema()))";
const LOCK_EXCLUSIVE: &str = "SELECT pg_advisory_xact_lock(hashtext('stackmemory-tiers:' || current_schema()))";

#[derive(Debug, Clone)]
pub struct ArchiveRow {
    pub frame_id: String,
    pub run_id: String,
    pub project_id: String,
    pub parent_id: Option<String>,
    pub frame_type: String,
    pub name: String,
    pub state: String,
    pub created_at_s: Option<i64>,
    pub closed_at_s: Option<i64>,
    pub last_accessed_s: Option<i64>,
    pub access_count: i64,
    pub size_bytes: i64,
    pub compressed_size: i64,
    pub checksum: String,
    pub version: i64,
    pub tier: i16,
    pub retention_policy: String,
    pub payload: Vec<u8>,
    pub search: SearchText,
}

/// One full-text search hit.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ColdHit {
    pub frame_id: String,
    pub project_id: String,
    pub name: String,
    pub rank: f32,
    pub tier: i16,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ColdStats {
    pub frames: u64,
    pub warm_frames: u64,
    pub cold_frames: u64,
    pub raw_bytes: u64,
    pub compressed_bytes: u64,
    /// The server's `server_version`.
    pub version: String,
    /// Round trip of a trivial query, microseconds.
    pub latency_us: u64,
}

/// Fill an [`ArchiveRow`] from a bundle and its encoded envelope.
pub fn archive_row(
    bundle: &Bundle,
    enc: &Encoded,
    version: i64,
    tier: i16,
    access_count: i64,
    last_accessed_s: Option<i64>,
) -> ArchiveRow {
    let s = |k: &str| bundle.str_field(k).unwrap_or("").to_string();
    ArchiveRow {
        frame_id: bundle.frame_id().to_string(),
        run_id: s("run_id"),
        project_id: s("project_id"),
        parent_id: bundle.parent_id().map(str::to_string),
        frame_type: s("type"),
        name: s("name"),
        state: bundle.str_field("state").unwrap_or("active").to_string(),
        created_at_s: bundle.int_field("created_at").map(to_seconds),
        closed_at_s: bundle.int_field("closed_at").map(to_seconds),
        last_accessed_s,
        access_count,
        size_bytes: enc.raw_size as i64,
        compressed_size: enc.bytes.len() as i64,
        checksum: enc.checksum.clone(),
        version,
        tier,
        retention_policy: bundle.str_field("retention_policy").unwrap_or("default").to_string(),
        payload: enc.bytes.clone(),
        search: bundle.search_text(),
    }
}

/// Every SQL text the tier runs, with the schema name filled in once.
struct Sql {
    /// The schema, double-quoted.
    schema: String,
    upsert: String,
    checksums: String,
    get: String,
    get_many: String,
    set_tier: String,
    touch: String,
    delete_many: String,
    search_all: String,
    search_project: String,
    retention: String,
    stats: String,
    list_all: String,
    list_project: String,
}

impl Sql {
    fn new(schema: &str) -> Sql {
        let s = format!("\"{schema}\"");
        let t = format!("{s}.frames_archive");
        Sql {
            upsert: format!(
                "INSERT INTO {t} (frame_id, run_id, project_id, parent_id, frame_type, name, state, \
                   created_at, closed_at, archived_at, last_accessed, access_count, size_bytes, \
                   compressed_size, checksum, version, tier, retention_policy, payload, search) \
                 SELECT frame_id, run_id, project_id, parent_id, frame_type, name, state, \
                   created_at, closed_at, now(), last_accessed, access_count, size_bytes, \
                   compressed_size, checksum, version, tier, retention_policy, payload, \
                   setweight(to_tsvector('english', s_name), 'A') \
                   || setweight(to_tsvector('english', s_digest), 'B') \
                   || setweight(to_tsvector('english', s_anchors), 'C') \
                   || setweight(to_tsvector('english', s_events), 'D') \
                 FROM pg_temp.tiers_stage ORDER BY frame_id \
                 ON CONFLICT (frame_id) DO UPDATE SET \
                   run_id = EXCLUDED.run_id, project_id = EXCLUDED.project_id, \
                   parent_id = EXCLUDED.parent_id, frame_type = EXCLUDED.frame_type, \
                   name = EXCLUDED.name, state = EXCLUDED.state, created_at = EXCLUDED.created_at, \
                   closed_at = EXCLUDED.closed_at, archived_at = now(), \
                   last_accessed = GREATEST(frames_archive.last_accessed, EXCLUDED.last_accessed), \
                   access_count = GREATEST(frames_archive.access_count, EXCLUDED.access_count), \
                   size_bytes = EXCLUDED.size_bytes, compressed_size = EXCLUDED.compressed_size, \
                   checksum = EXCLUDED.checksum, version = EXCLUDED.version, tier = EXCLUDED.tier, \
                   retention_policy = EXCLUDED.retention_policy, payload = EXCLUDED.payload, \
                   search = EXCLUDED.search \
                 WHERE frames_archive.version <= EXCLUDED.version"
            ),
            checksums: format!("SELECT frame_id, checksum FROM {t} WHERE frame_id = ANY($1)"),
            get: format!("SELECT payload FROM {t} WHERE frame_id = $1"),
            get_many: format!("SELECT frame_id, payload FROM {t} WHERE frame_id = ANY($1)"),
            set_tier: format!("UPDATE {t} SET tier = $2 WHERE frame_id = ANY($1)"),
            touch: format!("UPDATE {t} SET access_count = access_count + 1, last_accessed = $2 WHERE frame_id = $1"),
            delete_many: format!("DELETE FROM {t} WHERE frame_id = ANY($1)"),
            search_all: format!(
                "SELECT a.frame_id, a.project_id, a.name, ts_rank(a.search, q.q) AS rank, a.tier \
                 FROM {t} a, websearch_to_tsquery('english', $1) AS q(q) \
                 WHERE a.search @@ q.q ORDER BY rank DESC, a.frame_id LIMIT $2"
            ),
            search_project: format!(
                "SELECT a.frame_id, a.project_id, a.name, ts_rank(a.search, q.q) AS rank, a.tier \
                 FROM {t} a, websearch_to_tsquery('english', $1) AS q(q) \
                 WHERE a.search @@ q.q AND a.project_id = $3 ORDER BY rank DESC, a.frame_id LIMIT $2"
            ),
            retention: format!(
                "DELETE FROM {t} \
                 WHERE COALESCE(retention_policy, 'default') <> 'keep_forever' \
                   AND COALESCE(closed_at, created_at, extract(epoch FROM archived_at)::int8) \
                       < $1::int8 - 86400::int8 * (CASE retention_policy \
                           WHEN 'ttl_7d' THEN 7::int8 WHEN 'ttl_30d' THEN 30::int8 ELSE $2::int8 END) \
                 RETURNING frame_id"
            ),
            stats: format!(
                "SELECT count(*)::int8, count(*) FILTER (WHERE tier = 2)::int8, \
                   count(*) FILTER (WHERE tier = 3)::int8, COALESCE(sum(size_bytes), 0)::int8, \
                   COALESCE(sum(compressed_size), 0)::int8, current_setting('server_version') \
                 FROM {t}"
            ),
            list_all: format!("SELECT frame_id FROM {t} ORDER BY frame_id"),
            list_project: format!("SELECT frame_id FROM {t} WHERE project_id = $1 ORDER BY frame_id"),
            schema: s,
        }
    }
}

/// Versioned migrations; `{s}` is replaced by the quoted schema. Append only, never edit.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "CREATE TABLE IF NOT EXISTS {s}.frames_archive (
        frame_id TEXT PRIMARY KEY,
        run_id TEXT,
        project_id TEXT,
        parent_id TEXT,
        frame_type TEXT,
        name TEXT,
        state TEXT,
        created_at BIGINT,
        closed_at BIGINT,
        archived_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        last_accessed BIGINT,
        access_count BIGINT NOT NULL DEFAULT 0,
        size_bytes BIGINT NOT NULL DEFAULT 0,
        compressed_size BIGINT NOT NULL DEFAULT 0,
        checksum TEXT,
        version BIGINT NOT NULL DEFAULT 0,
        tier SMALLINT NOT NULL DEFAULT 3,
        retention_policy TEXT,
        payload BYTEA NOT NULL,
        search TSVECTOR
    );
    ALTER TABLE {s}.frames_archive ALTER COLUMN payload SET STORAGE EXTERNAL;
    CREATE INDEX IF NOT EXISTS frames_archive_search_idx ON {s}.frames_archive USING GIN (search);
    CREATE INDEX IF NOT EXISTS frames_archive_project_idx ON {s}.frames_archive (project_id);
    CREATE INDEX IF NOT EXISTS frames_archive_created_idx ON {s}.frames_archive (created_at);
    CREATE INDEX IF NOT EXISTS frames_archive_run_idx ON {s}.frames_archive (run_id);",
)];

/// The staging table's columns, in COPY order, with their types.
const STAGE_DDL: &str = "CREATE TEMP TABLE tiers_stage (
        frame_id TEXT, run_id TEXT, project_id TEXT, parent_id TEXT, frame_type TEXT, name TEXT,
        state TEXT, created_at INT8, closed_at INT8, last_accessed INT8, access_count INT8,
        size_bytes INT8, compressed_size INT8, checksum TEXT, version INT8, tier INT2,
        retention_policy TEXT, payload BYTEA, s_name TEXT, s_digest TEXT, s_anchors TEXT, s_events TEXT
    ) ON COMMIT DROP;
    ALTER TABLE pg_temp.tiers_stage ALTER COLUMN payload SET STORAGE EXTERNAL";
const STAGE_COPY: &str = "COPY pg_temp.tiers_stage (frame_id, run_id, project_id, parent_id, frame_type, \
    name, state, created_at, closed_at, last_accessed, access_count, size_bytes, compressed_size, \
    checksum, version, tier, retention_policy, payload, s_name, s_digest, s_anchors, s_events) \
    FROM STDIN (FORMAT binary)";
const STAGE_TYPES: [Type; 22] = [
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::INT8,
    Type::INT2,
    Type::TEXT,
    Type::BYTEA,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
];

/// Handle on the cold tier: a connection pool plus the configuration. Cheap to clone.
#[derive(Clone)]
pub struct ColdTier {
    pool: Pool,
    cfg: Arc<PostgresConfig>,
    sql: Arc<Sql>,
}

impl std::fmt::Debug for ColdTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColdTier").field("schema", &self.cfg.schema).field("pool", &self.pool.status()).finish()
    }
}

impl ColdTier {
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
        let mut pg: tokio_postgres::Config =
            url.parse().map_err(|e| TierError::invalid_config("tiers.postgres.connectionString", format!("{e}")))?;
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

        let manager = Manager::from_config(pg, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(cfg.pool_size.max(1))
            .create_timeout(Some(connect_timeout))
            .recycle_timeout(Some(connect_timeout))
            // Waiting for a busy slot is not an outage: allow long batches to finish first.
            .wait_timeout(Some(connect_timeout.max(Duration::from_secs(30))))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| TierError::invalid_config("tiers.postgres", format!("cannot build the pool: {e}")))?;

        let tier = ColdTier { pool, cfg: Arc::new(cfg.clone()), sql: Arc::new(Sql::new(&cfg.schema)) };
        tier.migrate().await?;
        Ok(tier)
    }

    pub fn config(&self) -> &PostgresConfig {
        &self.cfg
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(pool_err)
    }

    async fn migrate(&self) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| pg_err("begin migration", e))?;
        tx.execute("SELECT pg_advisory_xact_lock(hashtext('stackmemory-tiers'), hashtext($1))", &[&self.cfg.schema])
            .await
            .map_err(|e| pg_err("migration lock", e))?;
        let s = &self.sql.schema;
        let exists = tx
            .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&self.cfg.schema])
            .await
            .map_err(|e| pg_err("look up schema", e))?
            .is_some();
        if !exists {
            tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {s}"))
                .await
                .map_err(|e| pg_err("create schema", e))?;
        }
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {s}.tiers_schema_migrations \
               (version INT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        ))
        .await
        .map_err(|e| pg_err("create migrations table", e))?;
        let applied: Vec<i32> = tx
            .query(&format!("SELECT version FROM {s}.tiers_schema_migrations"), &[])
            .await
            .map_err(|e| pg_err("read migrations", e))?
            .iter()
            .filter_map(|r| r.try_get::<_, i32>(0).ok())
            .collect();
        for (version, ddl) in MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            tx.batch_execute(&ddl.replace("{s}", s)).await.map_err(|e| pg_err(&format!("migration {version}"), e))?;
            tx.execute(
                &format!("INSERT INTO {s}.tiers_schema_migrations (version, applied_at) VALUES ($1, now())"),
                &[version],
            )
            .await
            .map_err(|e| pg_err("record migration", e))?;
        }
        tx.commit().await.map_err(|e| pg_err("commit migration", e))
    }

    /// Round trip of a trivial query (including taking a pooled connection).
    pub async fn ping(&self) -> Result<Duration> {
        let started = Instant::now();
        let client = self.client().await?;
        client.simple_query("SELECT 1").await.map_err(|e| pg_err("ping", e))?;
        Ok(started.elapsed())
    }

    /// Insert or update frames; an existing row is only replaced by an equal or newer `version`.
    /// Returns the number of rows written. Within one call a frame id given twice keeps the row
    /// with the highest version (the later one on a tie).
    pub async fn upsert_many(&self, rows: &[ArchiveRow]) -> Result<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        let mut pick: HashMap<&str, usize> = HashMap::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            if r.frame_id.is_empty() || r.frame_id.contains('\0') {
                return Err(TierError::invalid_argument(
                    format!("rows[{i}].frame_id"),
                    "must be a non-empty string without NUL characters",
                ));
            }
            match pick.entry(r.frame_id.as_str()) {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(i);
                }
                std::collections::hash_map::Entry::Occupied(mut o) => {
                    if r.version >= rows[*o.get()].version {
                        o.insert(i);
                    }
                }
            }
        }
        let mut idx: Vec<usize> = pick.into_values().collect();
        idx.sort_unstable();
        let unique: Vec<&ArchiveRow> = idx.into_iter().map(|i| &rows[i]).collect();

        let chunks = if unique.len() >= PARALLEL_MIN_ROWS {
            self.cfg.pool_size.clamp(1, MAX_PARALLEL_CHUNKS).min(unique.len() / (PARALLEL_MIN_ROWS / 2)).max(1)
        } else {
            1
        };
        if chunks == 1 {
            return self.upsert_chunk(&unique).await;
        }
        // Distinct frame ids per chunk, so the parallel transactions never wait on each other.
        let size = unique.len().div_ceil(chunks);
        let results = futures_util::future::join_all(unique.chunks(size).map(|c| self.upsert_chunk(c))).await;
        let mut written = 0u64;
        let mut first_err = None;
        for r in results {
            match r {
                Ok(n) => written += n,
                Err(e) => {
                    if first_err.is_none() {
                        first_err = Some(e);
                    }
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(written),
        }
    }

    async fn upsert_chunk(&self, rows: &[&ArchiveRow]) -> Result<u64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| pg_err("begin upsert", e))?;
        tx.execute(LOCK_SHARED, &[]).await.map_err(|e| pg_err("upsert lock", e))?;
        tx.batch_execute(STAGE_DDL).await.map_err(|e| pg_err("create staging table", e))?;
        let sink = tx.copy_in(STAGE_COPY).await.map_err(|e| pg_err("copy into staging", e))?;
        let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &STAGE_TYPES));
        for r in rows {
            let run_id = clean(&r.run_id);
            let project_id = clean(&r.project_id);
            let parent_id = r.parent_id.as_deref().map(clean);
            let frame_type = clean(&r.frame_type);
            let name = clean(&r.name);
            let state = clean(&r.state);
            let checksum = clean(&r.checksum);
            let retention = clean(&r.retention_policy);
            let s_name = clean(clip(&r.search.name, MAX_NAME_TEXT));
            let s_digest = clean(clip(&r.search.digest, MAX_PART_TEXT));
            let s_anchors = clean(clip(&r.search.anchors, MAX_PART_TEXT));
            let s_events = clean(clip(&r.search.events, MAX_PART_TEXT));
            let parent_ref: Option<&str> = parent_id.as_deref();
            let payload: &[u8] = &r.payload;
            let values: [&(dyn ToSql + Sync); 22] = [
                &r.frame_id,
                &run_id.as_ref(),
                &project_id.as_ref(),
                &parent_ref,
                &frame_type.as_ref(),
                &name.as_ref(),
                &state.as_ref(),
                &r.created_at_s,
                &r.closed_at_s,
                &r.last_accessed_s,
                &r.access_count,
                &r.size_bytes,
                &r.compressed_size,
                &checksum.as_ref(),
                &r.version,
                &r.tier,
                &retention.as_ref(),
                &payload,
                &s_name.as_ref(),
                &s_digest.as_ref(),
                &s_anchors.as_ref(),
                &s_events.as_ref(),
            ];
            writer.as_mut().write(&values).await.map_err(|e| pg_err("copy into staging", e))?;
        }
        writer.as_mut().finish().await.map_err(|e| pg_err("copy into staging", e))?;
        let n = tx.execute(self.sql.upsert.as_str(), &[]).await.map_err(|e| pg_err("upsert", e))?;
        tx.commit().await.map_err(|e| pg_err("commit upsert", e))?;
        Ok(n)
    }

    /// `frame_id -> checksum` for the ids that exist.
    pub async fn checksums(&self, ids: &[String]) -> Result<HashMap<String, String>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let client = self.client().await?;
        let st = client.prepare_cached(&self.sql.checksums).await.map_err(|e| pg_err("checksums", e))?;
        let rows = client.query(&st, &[&ids]).await.map_err(|e| pg_err("checksums", e))?;
        let mut out = HashMap::with_capacity(rows.len());
        for r in rows {
            let id: String = r.try_get(0).map_err(|e| pg_err("checksums", e))?;
            let sum: Option<String> = r.try_get(1).map_err(|e| pg_err("checksums", e))?;
            out.insert(id, sum.unwrap_or_default());
        }
        Ok(out)
    }

    /// The stored envelope of one frame.
    pub async fn get(&self, frame_id: &str) -> Result<Option<Vec<u8>>> {
        let client = self.client().await?;
        let st = client.prepare_cached(&self.sql.get).await.map_err(|e| pg_err("get", e))?;
        let row = client.query_opt(&st, &[&frame_id]).await.map_err(|e| pg_err("get", e))?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some(r.try_get::<_, Vec<u8>>(0).map_err(|e| pg_err("get", e))?)),
        }
    }

    /// The stored envelopes of the ids that exist.
    pub async fn get_many(&self, ids: &[String]) -> Result<HashMap<String, Vec<u8>>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let client = self.client().await?;
        let st = client.prepare_cached(&self.sql.get_many).await.map_err(|e| pg_err("get_many", e))?;
        let rows = client.query(&st, &[&ids]).await.map_err(|e| pg_err("get_many", e))?;
        let mut out = HashMap::with_capacity(rows.len());
        for r in rows {
            let id: String = r.try_get(0).map_err(|e| pg_err("get_many", e))?;
            let payload: Vec<u8> = r.try_get(1).map_err(|e| pg_err("get_many", e))?;
            out.insert(id, payload);
        }
        Ok(out)
    }

    /// Mark frames as warm (2) or cold (3); returns how many rows exist for those ids.
    pub async fn set_tier(&self, ids: &[String], tier: i16) -> Result<u64> {
        self.set_tier_locked(ids, tier, false).await
    }

    /// `set_tier` for crash recovery. A killed process's last tier update can still be running
    /// in its PostgreSQL backend (the server finishes a statement it has received). Every
    /// `set_tier` holds a shared advisory lock on the schema for its transaction; recovery takes
    /// it exclusively, so it waits for such an orphan to commit or roll back and then writes last.
    /// An orphan whose client died before sending COMMIT rolls back; one that sent it committed
    /// before recovery's update. Either way SQLite's tier wins.
    pub async fn realign_tier(&self, ids: &[String], tier: i16) -> Result<u64> {
        self.set_tier_locked(ids, tier, true).await
    }

    async fn set_tier_locked(&self, ids: &[String], tier: i16, exclusive: bool) -> Result<u64> {
        if !(2..=3).contains(&tier) {
            return Err(TierError::invalid_argument("tier", "must be 2 (warm) or 3 (cold)"));
        }
        if ids.is_empty() {
            return Ok(0);
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| pg_err("set_tier", e))?;
        let lock = if exclusive { LOCK_EXCLUSIVE } else { LOCK_SHARED };
        tx.execute(lock, &[]).await.map_err(|e| pg_err("set_tier lock", e))?;
        let st = tx.prepare_cached(&self.sql.set_tier).await.map_err(|e| pg_err("set_tier", e))?;
        let n = tx.execute(&st, &[&ids, &tier]).await.map_err(|e| pg_err("set_tier", e))?;
        tx.commit().await.map_err(|e| pg_err("set_tier commit", e))?;
        Ok(n)
    }

    /// Count one access: `access_count += 1`, `last_accessed = now_s`. A missing frame is ignored.
    pub async fn touch(&self, frame_id: &str, now_s: i64) -> Result<()> {
        let client = self.client().await?;
        let st = client.prepare_cached(&self.sql.touch).await.map_err(|e| pg_err("touch", e))?;
        client.execute(&st, &[&frame_id, &now_s]).await.map_err(|e| pg_err("touch", e))?;
        Ok(())
    }

    pub async fn delete_many(&self, ids: &[String]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| pg_err("delete", e))?;
        tx.execute(LOCK_SHARED, &[]).await.map_err(|e| pg_err("delete lock", e))?;
        let st = tx.prepare_cached(&self.sql.delete_many).await.map_err(|e| pg_err("delete", e))?;
        let n = tx.execute(&st, &[&ids]).await.map_err(|e| pg_err("delete", e))?;
        tx.commit().await.map_err(|e| pg_err("delete commit", e))?;
        Ok(n)
    }

    /// Waits until every archive write that already holds the schema's shared lock has
    /// committed or rolled back, including those of a killed process that PostgreSQL is still
    /// finishing. Recovery calls it first, so it reads and repairs after them, not before.
    pub async fn barrier(&self) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| pg_err("barrier", e))?;
        tx.execute(LOCK_EXCLUSIVE, &[]).await.map_err(|e| pg_err("barrier lock", e))?;
        tx.commit().await.map_err(|e| pg_err("barrier commit", e))
    }

    /// Full-text search (`websearch_to_tsquery` syntax), best `ts_rank` first. A name match
    /// outranks a digest match, which outranks anchors, which outrank event payloads.
    pub async fn search(&self, query: &str, project_id: Option<&str>, limit: u32) -> Result<Vec<ColdHit>> {
        if query.trim().is_empty() {
            return Err(TierError::invalid_argument("query", "must not be empty"));
        }
        if query.contains('\0') {
            return Err(TierError::invalid_argument("query", "must not contain NUL characters"));
        }
        if query.chars().count() > MAX_QUERY_CHARS {
            return Err(TierError::invalid_argument("query", format!("longer than {MAX_QUERY_CHARS} characters")));
        }
        if project_id.is_some_and(|p| p.contains('\0')) {
            return Err(TierError::invalid_argument("projectId", "must not contain NUL characters"));
        }
        if limit == 0 {
            return Ok(vec![]);
        }
        let limit = i64::from(limit.min(MAX_SEARCH_LIMIT));
        let client = self.client().await?;
        let rows = match project_id {
            None => {
                let st = client.prepare_cached(&self.sql.search_all).await.map_err(|e| search_err(e))?;
                client.query(&st, &[&query, &limit]).await.map_err(search_err)?
            }
            Some(p) => {
                let st = client.prepare_cached(&self.sql.search_project).await.map_err(search_err)?;
                client.query(&st, &[&query, &limit, &p]).await.map_err(search_err)?
            }
        };
        let mut hits = Vec::with_capacity(rows.len());
        for r in rows {
            hits.push(ColdHit {
                frame_id: r.try_get(0).map_err(|e| pg_err("search", e))?,
                project_id: r.try_get::<_, Option<String>>(1).map_err(|e| pg_err("search", e))?.unwrap_or_default(),
                name: r.try_get::<_, Option<String>>(2).map_err(|e| pg_err("search", e))?.unwrap_or_default(),
                rank: r.try_get(3).map_err(|e| pg_err("search", e))?,
                tier: r.try_get(4).map_err(|e| pg_err("search", e))?,
            });
        }
        Ok(hits)
    }

    /// Delete frames past their retention and return their ids. Age counts from `closed_at`, else
    /// `created_at`, else the time of archiving. `keep_forever` is never deleted, `ttl_7d` and
    /// `ttl_30d` keep 7 and 30 days, anything else `default_days`.
    pub async fn apply_retention(&self, default_days: u32, now_s: i64) -> Result<Vec<String>> {
        if default_days == 0 {
            return Err(TierError::invalid_argument("retentionDays", "must be at least 1"));
        }
        let client = self.client().await?;
        let st = client.prepare_cached(&self.sql.retention).await.map_err(|e| pg_err("retention", e))?;
        let days = i64::from(default_days);
        let rows = client.query(&st, &[&now_s, &days]).await.map_err(|e| pg_err("retention", e))?;
        rows.iter().map(|r| r.try_get::<_, String>(0).map_err(|e| pg_err("retention", e))).collect()
    }

    pub async fn stats(&self) -> Result<ColdStats> {
        let latency = self.ping().await?;
        let client = self.client().await?;
        let st = client.prepare_cached(&self.sql.stats).await.map_err(|e| pg_err("stats", e))?;
        let r = client.query_one(&st, &[]).await.map_err(|e| pg_err("stats", e))?;
        let n = |i: usize| -> Result<u64> { Ok(r.try_get::<_, i64>(i).map_err(|e| pg_err("stats", e))?.max(0) as u64) };
        Ok(ColdStats {
            frames: n(0)?,
            warm_frames: n(1)?,
            cold_frames: n(2)?,
            raw_bytes: n(3)?,
            compressed_bytes: n(4)?,
            version: r.try_get(5).map_err(|e| pg_err("stats", e))?,
            latency_us: latency.as_micros().min(u64::MAX as u128) as u64,
        })
    }

    /// Every archived frame id (of one project), sorted.
    pub async fn list_ids(&self, project_id: Option<&str>) -> Result<Vec<String>> {
        let client = self.client().await?;
        let rows = match project_id {
            None => {
                let st = client.prepare_cached(&self.sql.list_all).await.map_err(|e| pg_err("list", e))?;
                client.query(&st, &[]).await.map_err(|e| pg_err("list", e))?
            }
            Some(p) => {
                let st = client.prepare_cached(&self.sql.list_project).await.map_err(|e| pg_err("list", e))?;
                client.query(&st, &[&p]).await.map_err(|e| pg_err("list", e))?
            }
        };
        rows.iter().map(|r| r.try_get::<_, String>(0).map_err(|e| pg_err("list", e))).collect()
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

/// PostgreSQL text cannot hold NUL; metadata and search text lose them (the payload is exact).
fn clean(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', " "))
    } else {
        Cow::Borrowed(s)
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut i = max;
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    &s[..i]
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
fn pg_err(what: &str, e: tokio_postgres::Error) -> TierError {
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
fn search_err(e: tokio_postgres::Error) -> TierError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        if code.starts_with("22") || code.starts_with("42") {
            return TierError::invalid_argument("query", db.message().to_string());
        }
    }
    pg_err("search", e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::codec::{decode, encode};
    use crate::model::normalize_bundle;
    use serde_json::json;

    fn url() -> String {
        std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
    }

    fn cfg_for(schema: &str) -> PostgresConfig {
        PostgresConfig {
            enabled: true,
            connection_string: Some(url()),
            compression_level: 3,
            retention_days: 365,
            pool_size: 4,
            connect_timeout_ms: 3000,
            schema: schema.to_string(),
        }
    }

    fn fresh_schema() -> String {
        format!("t_cold_{:08x}", rand::random::<u32>())
    }

    async fn open() -> ColdTier {
        ColdTier::connect(&cfg_for(&fresh_schema())).await.expect("connect to the test PostgreSQL")
    }

    fn bundle(id: &str, project: &str, name: &str, event_text: &str) -> Bundle {
        normalize_bundle(json!({
            "frame": {"frame_id": id, "run_id": "run-1", "project_id": project, "type": "task",
                      "name": name, "state": "closed", "digest_text": "a digest",
                      "created_at": 1_700_000_000, "closed_at": 1_700_000_100_000i64,
                      "retention_policy": "default"},
            "events": [{"event_id": format!("{id}-e1"), "seq": 1, "event_type": "note",
                        "payload": {"text": event_text}}],
            "anchors": [{"anchor_id": format!("{id}-a1"), "type": "fact", "text": "an anchor"}]
        }))
        .expect("valid bundle")
    }

    fn row(b: &Bundle, version: i64) -> (ArchiveRow, Encoded) {
        let enc = encode(b, 3).expect("encode");
        (archive_row(b, &enc, version, 3, 0, None), enc)
    }

    /// Compile-time check: the futures the napi glue spawns must be Send.
    #[allow(dead_code)]
    fn futures_are_send(t: &ColdTier, cfg: &PostgresConfig) {
        fn is_send<T: Send>(_: T) {}
        is_send(ColdTier::connect(cfg));
        is_send(t.upsert_many(&[]));
        is_send(t.search("x", None, 1));
        is_send(t.get_many(&[]));
        is_send(t.apply_retention(1, 0));
        is_send(t.stats());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn migrations_are_idempotent_and_concurrent_safe() {
        let schema = fresh_schema();
        let cfg = cfg_for(&schema);
        let (a, b) = tokio::join!(ColdTier::connect(&cfg), ColdTier::connect(&cfg));
        let a = a.expect("first connect");
        b.expect("concurrent connect");
        let again = ColdTier::connect(&cfg).await.expect("reconnect");
        let client = again.client().await.expect("client");
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM \"{schema}\".tiers_schema_migrations"), &[])
            .await
            .expect("count")
            .get(0);
        assert_eq!(n, MIGRATIONS.len() as i64);
        let storage: i8 = client
            .query_one(
                "SELECT a.attstorage FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = 'frames_archive' AND a.attname = 'payload'",
                &[&schema],
            )
            .await
            .expect("attstorage")
            .get(0);
        assert_eq!(storage as u8, b'e', "payload must be STORAGE EXTERNAL");
        let st = again.stats().await.expect("stats");
        assert_eq!(st.frames, 0);
        assert!(!st.version.is_empty());
        drop(client);
        a.drop_schema().await.expect("drop");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn upsert_round_trip() {
        let t = open().await;
        assert_eq!(t.upsert_many(&[]).await.expect("empty"), 0);
        let bundles: Vec<Bundle> =
            (0..3).map(|i| bundle(&format!("frame:{i}/not-a-uuid"), "p1", &format!("name {i}"), "hello")).collect();
        let pairs: Vec<(ArchiveRow, Encoded)> = bundles.iter().map(|b| row(b, 1)).collect();
        let rows: Vec<ArchiveRow> = pairs.iter().map(|(r, _)| r.clone()).collect();
        assert_eq!(rows[0].created_at_s, Some(1_700_000_000));
        assert_eq!(rows[0].closed_at_s, Some(1_700_000_100));
        assert_eq!(t.upsert_many(&rows).await.expect("upsert"), 3);

        let ids: Vec<String> = rows.iter().map(|r| r.frame_id.clone()).collect();
        for (r, enc) in &pairs {
            let got = t.get(&r.frame_id).await.expect("get").expect("present");
            assert_eq!(got, enc.bytes, "payload bytes are stored exactly");
            let (raw, sum) = decode(&got).expect("decodes");
            assert_eq!(sum, enc.checksum);
            assert_eq!(raw.len(), enc.raw_size);
        }
        assert_eq!(t.get("missing").await.expect("get"), None);
        let mut want = ids.clone();
        want.push("missing".into());
        let many = t.get_many(&want).await.expect("get_many");
        assert_eq!(many.len(), 3);
        let sums = t.checksums(&want).await.expect("checksums");
        assert_eq!(sums.len(), 3);
        for (r, enc) in &pairs {
            assert_eq!(sums.get(&r.frame_id), Some(&enc.checksum));
        }
        assert_eq!(t.list_ids(None).await.expect("list"), {
            let mut s = ids.clone();
            s.sort();
            s
        });
        assert!(t.list_ids(Some("other")).await.expect("list").is_empty());

        assert_eq!(t.set_tier(&ids[..2], 2).await.expect("set_tier"), 2);
        assert!(t.set_tier(&ids, 7).await.is_err());
        t.touch(&ids[0], 1_800_000_000).await.expect("touch");
        t.touch(&ids[0], 1_800_000_001).await.expect("touch");
        t.touch("missing", 1).await.expect("touch of a missing frame is ignored");
        let st = t.stats().await.expect("stats");
        assert_eq!((st.frames, st.warm_frames, st.cold_frames), (3, 2, 1));
        let raw_total: u64 = pairs.iter().map(|(_, e)| e.raw_size as u64).sum();
        assert_eq!(st.raw_bytes, raw_total);
        {
            let c = t.client().await.expect("client");
            let r = c
                .query_one(
                    &format!(
                        "SELECT access_count, last_accessed FROM {}.frames_archive WHERE frame_id = $1",
                        t.sql.schema
                    ),
                    &[&ids[0]],
                )
                .await
                .expect("row");
            assert_eq!(r.get::<_, i64>(0), 2);
            assert_eq!(r.get::<_, Option<i64>>(1), Some(1_800_000_001));
        }
        assert_eq!(t.delete_many(&ids[..1]).await.expect("delete"), 1);
        assert_eq!(t.delete_many(&[]).await.expect("delete none"), 0);
        assert_eq!(t.list_ids(Some("p1")).await.expect("list").len(), 2);
        t.drop_schema().await.expect("drop");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn older_version_never_replaces_newer() {
        let t = open().await;
        let new = bundle("f1", "p", "newer name", "x");
        let old = bundle("f1", "p", "older name", "x");
        let (r_new, e_new) = row(&new, 5);
        let (r_old, _) = row(&old, 4);
        assert_eq!(t.upsert_many(&[r_new.clone()]).await.expect("upsert"), 1);
        assert_eq!(t.upsert_many(&[r_old.clone()]).await.expect("upsert"), 0, "older version is skipped");
        assert_eq!(t.get("f1").await.expect("get"), Some(e_new.bytes.clone()));
        // The same version is re-written (an idempotent retry of a copy).
        assert_eq!(t.upsert_many(&[r_new.clone()]).await.expect("upsert"), 1);
        // A duplicate id inside one batch keeps the highest version, whatever the order.
        let (r_v7, e_v7) = row(&old, 7);
        let (r_v6, _) = row(&new, 6);
        assert_eq!(t.upsert_many(&[r_v7, r_v6]).await.expect("upsert"), 1);
        assert_eq!(t.get("f1").await.expect("get"), Some(e_v7.bytes));
        let hits = t.search("older", None, 10).await.expect("search");
        assert_eq!(hits.len(), 1);
        assert!(t.search("newer", None, 10).await.expect("search").is_empty(), "tsvector follows the row");
        t.drop_schema().await.expect("drop");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn search_ranks_filters_and_survives_hostile_queries() {
        let t = open().await;
        let by_name = bundle("by-name", "p1", "kubernetes rollout", "nothing relevant here");
        let by_payload = bundle("by-payload", "p1", "unrelated title", "we discussed kubernetes at length");
        let other_project = bundle("other", "p2", "kubernetes elsewhere", "x");
        let mut weird = bundle("weird", "p1", "name with \u{0} nul", "payload");
        weird.frame.insert("digest_text".into(), json!("digest\u{0}with nul"));
        let rows: Vec<ArchiveRow> =
            [&by_payload, &by_name, &other_project, &weird].iter().map(|b| row(b, 1).0).collect();
        assert_eq!(t.upsert_many(&rows).await.expect("upsert"), 4);

        let hits = t.search("kubernetes", Some("p1"), 10).await.expect("search");
        let ids: Vec<&str> = hits.iter().map(|h| h.frame_id.as_str()).collect();
        assert_eq!(ids, vec!["by-name", "by-payload"], "name match first, project filter applied");
        assert!(hits[0].rank > hits[1].rank);
        assert_eq!(hits[0].project_id, "p1");
        assert_eq!(hits[0].name, "kubernetes rollout");
        assert_eq!(hits[0].tier, 3);
        let all = t.search("kubernetes", None, 10).await.expect("search");
        assert_eq!(all.len(), 3);
        assert_eq!(t.search("kubernetes", None, 1).await.expect("search").len(), 1);
        assert!(t.search("kubernetes", None, 0).await.expect("search").is_empty());
        assert_eq!(t.search("\"kubernetes rollout\"", None, 10).await.expect("phrase").len(), 1);
        assert_eq!(t.search("kubernetes -rollout", Some("p1"), 10).await.expect("negation").len(), 1);

        let long = "a".repeat(10_000);
        let long_words = "word ".repeat(2_000);
        let hostile = [
            "'; DROP TABLE frames_archive; --",
            "\"unbalanced",
            "a & | ! :* ( )",
            "((((",
            ")))",
            "!!!",
            ":*",
            "kubernetes:*",
            "\\",
            "$1",
            "or or or",
            "the",
            "\u{0}",
            "' OR 1=1 --",
            "😀 漢字",
            long.as_str(),
            long_words.as_str(),
        ];
        for q in hostile {
            match t.search(q, None, 10).await {
                Ok(_) | Err(TierError::InvalidArgument { .. }) => {}
                Err(e) => panic!("query {q:?} gave {e:?}"),
            }
            match t.search(q, Some("'; DROP TABLE x; --"), 10).await {
                Ok(_) | Err(TierError::InvalidArgument { .. }) => {}
                Err(e) => panic!("query {q:?} gave {e:?}"),
            }
        }
        for q in ["", "   ", "\n\t"] {
            assert!(matches!(t.search(q, None, 10).await, Err(TierError::InvalidArgument { .. })), "{q:?}");
        }
        assert!(matches!(t.search(&"b".repeat(10_001), None, 10).await, Err(TierError::InvalidArgument { .. })));
        assert_eq!(t.list_ids(None).await.expect("table still there").len(), 4);
        assert_eq!(t.search("nul", None, 10).await.expect("search").len(), 1);
        t.drop_schema().await.expect("drop");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retention_by_policy() {
        let t = open().await;
        let now = 1_800_000_000i64;
        let day = 86_400i64;
        let mk = |id: &str, policy: &str, closed: Option<i64>, created: Option<i64>| {
            let mut r = row(&bundle(id, "p", id, "x"), 1).0;
            r.retention_policy = policy.to_string();
            r.closed_at_s = closed;
            r.created_at_s = created;
            r
        };
        let rows = vec![
            mk("forever", "keep_forever", Some(now - 10_000 * day), None),
            mk("old-default", "default", Some(now - 400 * day), Some(now - 500 * day)),
            mk("young-default", "default", Some(now - 10 * day), None),
            mk("old-archive-by-created", "archive", None, Some(now - 366 * day)),
            mk("ttl7-old", "ttl_7d", Some(now - 8 * day), None),
            mk("ttl7-young", "ttl_7d", Some(now - 6 * day), None),
            mk("ttl30-old", "ttl_30d", Some(now - 31 * day), None),
            mk("ttl30-young", "ttl_30d", Some(now - 29 * day), None),
            mk("closed-young-created-old", "default", Some(now - day), Some(now - 1000 * day)),
            mk("no-times", "default", None, None),
        ];
        assert_eq!(t.upsert_many(&rows).await.expect("upsert"), rows.len() as u64);
        assert!(t.apply_retention(0, now).await.is_err());
        let mut gone = t.apply_retention(365, now).await.expect("retention");
        gone.sort();
        assert_eq!(gone, vec!["old-archive-by-created", "old-default", "ttl30-old", "ttl7-old"]);
        let left = t.list_ids(None).await.expect("list");
        assert!(left.contains(&"forever".to_string()));
        assert!(left.contains(&"no-times".to_string()), "archived just now");
        assert_eq!(left.len(), 6);
        assert!(t.apply_retention(365, now).await.expect("again").is_empty());
        t.drop_schema().await.expect("drop");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_port_fails_fast_with_unavailable() {
        let mut cfg = cfg_for(&fresh_schema());
        cfg.connection_string = Some("postgres://postgres@127.0.0.1:1/test".into());
        let started = Instant::now();
        let r = ColdTier::connect(&cfg).await;
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
        match r {
            Err(e) => assert!(e.is_unavailable(), "{e:?}"),
            Ok(_) => panic!("connected to a closed port"),
        }
        cfg.connection_string = Some("not a url at all".into());
        assert!(matches!(ColdTier::connect(&cfg).await, Err(TierError::InvalidConfig { .. })));
        cfg.connection_string = Some(url());
        cfg.schema = "Bad; schema".into();
        assert!(matches!(ColdTier::connect(&cfg).await, Err(TierError::InvalidConfig { .. })));
        cfg.schema = "public".into();
        cfg.connection_string = Some("postgres://postgres@127.0.0.1:1/test".into());
        assert!(ColdTier::connect(&cfg).await.is_err());
    }

    /// A TCP proxy in front of the real server that the test can take down and bring back.
    struct Proxy {
        port: u16,
        tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    }

    impl Proxy {
        async fn start(port: u16) -> Proxy {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind proxy");
            let port = listener.local_addr().expect("addr").port();
            let tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
            let inner = tasks.clone();
            let accept = tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let h = tokio::spawn(async move {
                        if let Ok(mut out) = tokio::net::TcpStream::connect("127.0.0.1:5432").await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                        }
                    });
                    inner.lock().expect("lock").push(h);
                }
            });
            tasks.lock().expect("lock").push(accept);
            Proxy { port, tasks }
        }

        async fn stop(&self) {
            for h in self.tasks.lock().expect("lock").drain(..) {
                h.abort();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dead_server_is_unavailable_and_the_pool_recovers() {
        let proxy = Proxy::start(0).await;
        let schema = fresh_schema();
        let mut cfg = cfg_for(&schema);
        cfg.connection_string = Some(format!("postgres://postgres@127.0.0.1:{}/test", proxy.port));
        cfg.connect_timeout_ms = 1000;
        let t = ColdTier::connect(&cfg).await.expect("connect through the proxy");
        t.ping().await.expect("ping");
        proxy.stop().await;
        for _ in 0..3 {
            let started = Instant::now();
            match t.ping().await {
                Err(e) => assert!(e.is_unavailable(), "{e:?}"),
                Ok(_) => panic!("ping through a dead proxy"),
            }
            assert!(started.elapsed() < Duration::from_secs(5));
            match t.get("x").await {
                Err(e) => assert!(e.is_unavailable(), "{e:?}"),
                Ok(_) => panic!("get through a dead proxy"),
            }
        }
        let _back = Proxy::start(proxy.port).await;
        t.ping().await.expect("ping after the server is back");
        assert!(t.list_ids(None).await.expect("list").is_empty());
        t.drop_schema().await.expect("drop");
        _back.stop().await;
    }

    /// Frames of 4-8 KB of JSON with text that compresses like prose.
    fn bulk_bundle(i: usize) -> Bundle {
        const WORDS: &[&str] = &[
            "deploy",
            "cluster",
            "memory",
            "frame",
            "anchor",
            "digest",
            "session",
            "context",
            "token",
            "stack",
            "archive",
            "retention",
            "query",
            "index",
            "vector",
            "payload",
            "sqlite",
            "redis",
            "postgres",
            "tier",
            "mover",
            "policy",
            "checksum",
            "compress",
            "latency",
            "throughput",
            "error",
            "retry",
            "timeout",
            "network",
            "disk",
            "cache",
            "batch",
            "stream",
            "commit",
            "rollback",
            "schema",
            "migration",
            "lock",
            "shard",
            "replica",
            "primary",
            "backup",
        ];
        let mut x = (i as u64).wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let mut next = || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 33) as usize
        };
        let target = 4000 + next() % 4000;
        let mut events = Vec::new();
        let mut size = 0;
        let mut seq = 0;
        while size < target {
            let n = 20 + next() % 40;
            let text: Vec<&str> = (0..n).map(|_| WORDS[next() % WORDS.len()]).collect();
            let text = format!("{} #{}", text.join(" "), next());
            size += text.len() + 120;
            events.push(json!({"event_id": format!("e{i}-{seq}"), "seq": seq, "event_type": "tool_call",
                               "payload": {"text": text, "n": seq}, "ts": 1_700_000_000_000i64 + seq}));
            seq += 1;
        }
        normalize_bundle(json!({
            "frame": {"frame_id": format!("bulk-{i:06}"), "run_id": format!("run-{}", i % 17),
                      "project_id": format!("proj-{}", i % 5), "type": "task",
                      "name": format!("bulk frame {i} {}", WORDS[i % WORDS.len()]), "state": "closed",
                      "digest_text": format!("digest of frame {i}"), "created_at": 1_700_000_000 + i as i64},
            "events": events,
            "anchors": [{"anchor_id": format!("a{i}"), "type": "decision", "text": "chose the cold tier"}]
        }))
        .expect("valid bulk bundle")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bulk_upsert_5000() {
        let t = open().await;
        let n = 5_000;
        let rows: Vec<ArchiveRow> = (0..n).map(|i| row(&bulk_bundle(i), 1).0).collect();
        let raw: usize = rows.iter().map(|r| r.size_bytes as usize).sum();
        let comp: usize = rows.iter().map(|r| r.payload.len()).sum();
        let started = Instant::now();
        let written = t.upsert_many(&rows).await.expect("bulk upsert");
        let took = started.elapsed();
        assert_eq!(written, n as u64);
        eprintln!(
            "cold upsert_many: {n} frames ({:.1} KB raw avg, {:.1} KB stored avg) in {:?} = {:.0} frames/s",
            raw as f64 / n as f64 / 1024.0,
            comp as f64 / n as f64 / 1024.0,
            took,
            n as f64 / took.as_secs_f64()
        );
        // Re-writing the same versions (a retried copy) goes through the update path.
        let started = Instant::now();
        assert_eq!(t.upsert_many(&rows).await.expect("re-upsert"), n as u64);
        eprintln!("cold upsert_many (update path): {:.0} frames/s", n as f64 / started.elapsed().as_secs_f64());
        let st = t.stats().await.expect("stats");
        assert_eq!(st.frames, n as u64);
        assert_eq!(st.raw_bytes, raw as u64);
        assert_eq!(st.compressed_bytes, comp as u64);
        let ids: Vec<String> = rows.iter().take(100).map(|r| r.frame_id.clone()).collect();
        let sums = t.checksums(&ids).await.expect("checksums");
        for r in rows.iter().take(100) {
            assert_eq!(sums.get(&r.frame_id), Some(&r.checksum));
        }
        assert_eq!(t.search("cluster", Some("proj-1"), 5).await.expect("search").len(), 5);
        t.drop_schema().await.expect("drop");
    }
}
