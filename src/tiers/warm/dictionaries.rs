//! Dictionaries cached in Redis, so another machine sharing this Redis can decode the envelopes
//! made with them (`moves::dictionaries`). One hash per dictionary, `{p}dict:<id>` with fields
//! `project` and `bytes`, no TTL and outside the cap (16 KiB each at most, a few per project, and
//! never deleted by us: an envelope may name it for as long as the frame lives). PostgreSQL, when
//! configured, is the durable copy; Redis is a cache that may lose it like any other key.

use super::WarmTier;
use crate::model::Result;

impl WarmTier {
    /// Saves a dictionary (idempotent: the id is the hash of the bytes).
    pub async fn dict_put(&self, id: u32, project_id: &str, bytes: &[u8]) -> Result<()> {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(self.layout.dict(id)).arg("project").arg(project_id).arg("bytes").arg(bytes);
        self.query::<()>("dict_put", &cmd).await
    }

    /// A dictionary's project and bytes (`None`: not in Redis, or only half a hash).
    pub async fn dict_get(&self, id: u32) -> Result<Option<(String, Vec<u8>)>> {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.layout.dict(id)).arg("project").arg("bytes");
        let (project, bytes): (Option<String>, Option<Vec<u8>>) = self.query("dict_get", &cmd).await?;
        Ok(project.zip(bytes))
    }
}
