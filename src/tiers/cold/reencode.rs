//! Re-encoding archived envelopes with their project's current zstd dictionary (`compact({
//! reencode })`, `moves/reencode.rs`): the rows still plain (format 1) or made with an older
//! dictionary, a page at a time, and their payloads replaced in place.

use super::{pg_err, ColdTier};
use crate::model::Result;

/// One archived envelope to re-encode.
#[derive(Debug, Clone, PartialEq)]
pub struct StaleEnvelope {
    pub frame_id: String,
    /// The checksum of the frame's canonical JSON (unchanged by a re-encode).
    pub checksum: String,
    pub payload: Vec<u8>,
}

impl ColdTier {
    /// The next `limit` rows of `project` after `after` (by frame id) whose envelope is not made
    /// with dictionary `dict_id`: format 1, or format 2 naming another id (bytes 16-19, LE).
    pub async fn stale_envelopes(
        &self,
        project: &str,
        dict_id: u32,
        after: &str,
        limit: usize,
    ) -> Result<Vec<StaleEnvelope>> {
        self.bounded("stale_envelopes", async {
            let client = self.client().await?;
            // substring on an EXTERNAL (uncompressed, out-of-line) bytea reads only the slice.
            let sql = format!(
                "SELECT frame_id, coalesce(checksum, ''), payload FROM {}.frames_archive \
                 WHERE project_id = $1 AND frame_id > $2 \
                 AND (get_byte(substring(payload from 4 for 1), 0) = 1 \
                      OR (get_byte(substring(payload from 4 for 1), 0) = 2 AND substring(payload from 17 for 4) <> $3)) \
                 ORDER BY frame_id LIMIT $4",
                self.sql.schema
            );
            let st = client.prepare_cached(&sql).await.map_err(|e| pg_err("stale_envelopes", e))?;
            let id = dict_id.to_le_bytes().to_vec();
            let rows =
                client.query(&st, &[&project, &after, &id, &(limit as i64)]).await.map_err(|e| pg_err("stale_envelopes", e))?;
            rows.iter()
                .map(|r| {
                    Ok(StaleEnvelope {
                        frame_id: r.try_get(0).map_err(|e| pg_err("stale_envelopes", e))?,
                        checksum: r.try_get(1).map_err(|e| pg_err("stale_envelopes", e))?,
                        payload: r.try_get(2).map_err(|e| pg_err("stale_envelopes", e))?,
                    })
                })
                .collect()
        })
        .await
    }

    /// Replaces payloads (`frame_id`, checksum, new envelope), each only while the row still
    /// holds the frame with that checksum: a row rewritten meanwhile (another version) or deleted
    /// keeps what it has. Returns the frame ids replaced.
    pub async fn replace_payloads(&self, rows: &[(String, String, Vec<u8>)]) -> Result<Vec<String>> {
        self.bounded("replace_payloads", async {
            if rows.is_empty() {
                return Ok(vec![]);
            }
            let client = self.client().await?;
            let sql = format!(
                "UPDATE {s}.frames_archive AS a SET payload = u.p, compressed_size = octet_length(u.p) \
                 FROM unnest($1::text[], $2::text[], $3::bytea[]) AS u(id, sum, p) \
                 WHERE a.frame_id = u.id AND a.checksum = u.sum RETURNING a.frame_id",
                s = self.sql.schema
            );
            let st = client.prepare_cached(&sql).await.map_err(|e| pg_err("replace_payloads", e))?;
            let ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
            let sums: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
            let payloads: Vec<&[u8]> = rows.iter().map(|r| r.2.as_slice()).collect();
            let done = client.query(&st, &[&ids, &sums, &payloads]).await.map_err(|e| pg_err("replace_payloads", e))?;
            done.iter().map(|r| r.try_get(0).map_err(|e| pg_err("replace_payloads", e))).collect()
        })
        .await
    }
}
