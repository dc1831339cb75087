//! The archive's copy of the zstd dictionaries its envelopes name (`model::codec` format 2), so a
//! machine that never trained one (or lost its SQLite file) can still read every row.

use super::{pg_err, ColdTier};
use crate::model::Result;

impl ColdTier {
    /// Save a dictionary; one already there under its id is kept (ids are hashes of the bytes).
    pub async fn dict_put(&self, id: u32, project_id: &str, bytes: &[u8]) -> Result<()> {
        self.bounded("dict_put", async {
            let client = self.client().await?;
            let sql = format!(
                "INSERT INTO {}.dictionaries (id, project_id, bytes) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
                self.sql.schema
            );
            client.execute(&sql, &[&i64::from(id), &project_id, &bytes]).await.map_err(|e| pg_err("dict_put", e))?;
            Ok(())
        })
        .await
    }

    /// A dictionary's project and bytes.
    pub async fn dict_get(&self, id: u32) -> Result<Option<(String, Vec<u8>)>> {
        self.bounded("dict_get", async {
            let client = self.client().await?;
            let sql = format!("SELECT project_id, bytes FROM {}.dictionaries WHERE id = $1", self.sql.schema);
            let row = client.query_opt(&sql, &[&i64::from(id)]).await.map_err(|e| pg_err("dict_get", e))?;
            match row {
                None => Ok(None),
                Some(r) => Ok(Some((
                    r.try_get(0).map_err(|e| pg_err("dict_get", e))?,
                    r.try_get(1).map_err(|e| pg_err("dict_get", e))?,
                ))),
            }
        })
        .await
    }
}
