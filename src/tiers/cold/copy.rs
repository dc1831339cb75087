//! Archive writes: rows of envelopes with their metadata and search text, binary `COPY` into a
//! staging table, then one upsert that never lets an older version replace a newer one.

use std::borrow::Cow;
use std::collections::HashMap;

use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use super::{pg_err, ColdTier, LOCK_SHARED};
use crate::model::codec::Encoded;
use crate::model::units::to_seconds;
use crate::model::{Bundle, Result, SearchText, TierError};

/// Bytes of each search-text part fed to `to_tsvector` (a tsvector is limited to 1 MB).
pub(super) const MAX_NAME_TEXT: usize = 8 * 1024;

pub(super) const MAX_PART_TEXT: usize = 128 * 1024;

/// Batches larger than this are split over several pooled connections, in parallel.
const PARALLEL_MIN_ROWS: usize = 1_000;

/// Most connections one `upsert_many` uses at once.
const MAX_PARALLEL_CHUNKS: usize = 4;

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

impl ColdTier {
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
        self.bounded("upsert_chunk", async {
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
            if !self.holder.is_empty() {
                tx.execute(self.sql.hold.as_str(), &[&&*self.holder]).await.map_err(|e| pg_err("upsert holders", e))?;
            }
            tx.commit().await.map_err(|e| pg_err("commit upsert", e))?;
            Ok(n)
        })
        .await
    }
}

/// PostgreSQL text cannot hold NUL; metadata and search text lose them (the payload is exact).
pub(super) fn clean(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', " "))
    } else {
        Cow::Borrowed(s)
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
pub(super) fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut i = max;
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    &s[..i]
}
