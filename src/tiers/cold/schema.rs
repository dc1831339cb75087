//! The archive's schema (`frames_archive` with its tsvector and GIN index), its append-only
//! versioned upgrades, and every SQL text the tier runs with the schema name filled in once.

use super::{pg_err, ColdTier};
use crate::model::Result;

/// Every SQL text the tier runs, with the schema name filled in once.
pub(super) struct Sql {
    /// The schema, double-quoted.
    pub(super) schema: String,
    pub(super) upsert: String,
    pub(super) checksums: String,
    pub(super) get: String,
    pub(super) get_many: String,
    pub(super) set_tier: String,
    pub(super) touch: String,
    pub(super) delete_many: String,
    pub(super) hold: String,
    pub(super) lock_rows: String,
    pub(super) release: String,
    pub(super) delete_unheld: String,
    pub(super) get_many_held: String,
    pub(super) held_elsewhere: String,
    pub(super) search_all: String,
    pub(super) search_project: String,
    /// Ids past retention after a cursor, in id order (`expired_ids`).
    pub(super) expired: String,
    /// Deletes listed ids that are still past retention (`delete_expired`).
    pub(super) delete_expired: String,
    pub(super) stats: String,
}

/// The retention rule, in one place: age from `closed_at`, else `created_at`, else the time of
/// archiving; `keep_forever` never; `ttl_7d` 7 days, `ttl_30d` 30, anything else `$2` days;
/// `$1` is now (unix seconds).
const PAST_RETENTION: &str = "COALESCE(retention_policy, 'default') <> 'keep_forever' \
   AND COALESCE(closed_at, created_at, extract(epoch FROM archived_at)::int8) \
       < $1::int8 - 86400::int8 * (CASE retention_policy \
           WHEN 'ttl_7d' THEN 7::int8 WHEN 'ttl_30d' THEN 30::int8 ELSE $2::int8 END)";

impl Sql {
    pub(super) fn new(schema: &str) -> Sql {
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
            hold: format!(
                "INSERT INTO {s}.frame_holders (frame_id, holder) SELECT frame_id, $1 FROM pg_temp.tiers_stage \
                 ON CONFLICT DO NOTHING"
            ),
            get_many_held: format!(
                "SELECT a.frame_id, a.payload, EXISTS (SELECT 1 FROM {s}.frame_holders h \
                 WHERE h.frame_id = a.frame_id AND h.holder <> $2) FROM {t} a WHERE a.frame_id = ANY($1)"
            ),
            held_elsewhere: format!(
                "SELECT DISTINCT frame_id FROM {s}.frame_holders WHERE frame_id = ANY($1) AND holder <> $2"
            ),
            lock_rows: format!("SELECT frame_id FROM {t} WHERE frame_id = ANY($1) ORDER BY frame_id FOR UPDATE"),
            release: format!("DELETE FROM {s}.frame_holders WHERE frame_id = ANY($1) AND holder = $2"),
            delete_unheld: format!(
                "DELETE FROM {t} a WHERE a.frame_id = ANY($1) \
                 AND NOT EXISTS (SELECT 1 FROM {s}.frame_holders h WHERE h.frame_id = a.frame_id)"
            ),
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
            expired: format!(
                "SELECT frame_id FROM {t} WHERE {PAST_RETENTION} AND frame_id > $3 ORDER BY frame_id LIMIT $4"
            ),
            delete_expired: format!("DELETE FROM {t} WHERE frame_id = ANY($3) AND {PAST_RETENTION} RETURNING frame_id"),
            stats: format!(
                "SELECT count(*)::int8, count(*) FILTER (WHERE tier = 2)::int8, \
                   count(*) FILTER (WHERE tier = 3)::int8, COALESCE(sum(size_bytes), 0)::int8, \
                   COALESCE(sum(compressed_size), 0)::int8, current_setting('server_version') \
                 FROM {t}"
            ),
            schema: s,
        }
    }
}

/// Versioned schema upgrades; `{s}` is replaced by the quoted schema. Append only, never edit.
pub(super) const SCHEMA_UPGRADES: &[(i32, &str)] = &[
    (
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
    ),
    (
        2,
        // Which SQLite files (a user's machines) hold a stub that relies on each archive row: one
        // machine bringing a shared frame home must not delete the row another machine still reads.
        "CREATE TABLE IF NOT EXISTS {s}.frame_holders (
        frame_id TEXT NOT NULL REFERENCES {s}.frames_archive (frame_id) ON DELETE CASCADE,
        holder TEXT NOT NULL,
        PRIMARY KEY (frame_id, holder)
    );",
    ),
    (
        3,
        // The zstd dictionaries archived envelopes were compressed with (format 2): saved before
        // any envelope uses one, never deleted, so an archive row is readable from here alone.
        "CREATE TABLE IF NOT EXISTS {s}.dictionaries (
        id BIGINT PRIMARY KEY,
        project_id TEXT NOT NULL,
        bytes BYTEA NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );",
    ),
];

impl ColdTier {
    pub(super) async fn upgrade_schema(&self) -> Result<()> {
        self.bounded("upgrade_schema", async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(|e| pg_err("begin migration", e))?;
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtext('stackmemory-tiers'), hashtext($1))",
                &[&self.cfg.schema],
            )
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
            for (version, ddl) in SCHEMA_UPGRADES {
                if applied.contains(version) {
                    continue;
                }
                tx.batch_execute(&ddl.replace("{s}", s))
                    .await
                    .map_err(|e| pg_err(&format!("migration {version}"), e))?;
                tx.execute(
                    &format!("INSERT INTO {s}.tiers_schema_migrations (version, applied_at) VALUES ($1, now())"),
                    &[version],
                )
                .await
                .map_err(|e| pg_err("record migration", e))?;
            }
            tx.commit().await.map_err(|e| pg_err("commit migration", e))
        })
        .await
    }
}
