//! Reading and changing archived rows: envelopes and checksums by id, the tier column, access
//! counts, deletes, and the barrier recovery waits on.

use std::collections::HashMap;

use super::{pg_err, ColdTier, LOCK_EXCLUSIVE, LOCK_SHARED};
use crate::model::{Result, TierError};

impl ColdTier {
    /// `frame_id -> checksum` for the ids that exist.
    pub async fn checksums(&self, ids: &[String]) -> Result<HashMap<String, String>> {
        let sums: HashMap<String, Option<String>> = self.by_id(&self.sql.checksums, ids, "checksums").await?;
        Ok(sums.into_iter().map(|(id, s)| (id, s.unwrap_or_default())).collect())
    }

    /// Runs `sql` (`SELECT frame_id, <value> ... WHERE frame_id = ANY($1)`) for `ids`.
    async fn by_id<T>(&self, sql: &str, ids: &[String], what: &str) -> Result<HashMap<String, T>>
    where
        T: for<'a> tokio_postgres::types::FromSql<'a>,
    {
        self.bounded("by_id", async {
            if ids.is_empty() {
                return Ok(HashMap::new());
            }
            let client = self.client().await?;
            let st = client.prepare_cached(sql).await.map_err(|e| pg_err(what, e))?;
            let rows = client.query(&st, &[&ids]).await.map_err(|e| pg_err(what, e))?;
            let mut out = HashMap::with_capacity(rows.len());
            for r in rows {
                out.insert(r.try_get(0).map_err(|e| pg_err(what, e))?, r.try_get(1).map_err(|e| pg_err(what, e))?);
            }
            Ok(out)
        })
        .await
    }

    /// The stored envelope of one frame.
    pub async fn get(&self, frame_id: &str) -> Result<Option<Vec<u8>>> {
        self.bounded("get", async {
            let client = self.client().await?;
            let st = client.prepare_cached(&self.sql.get).await.map_err(|e| pg_err("get", e))?;
            let row = client.query_opt(&st, &[&frame_id]).await.map_err(|e| pg_err("get", e))?;
            match row {
                None => Ok(None),
                Some(r) => Ok(Some(r.try_get::<_, Vec<u8>>(0).map_err(|e| pg_err("get", e))?)),
            }
        })
        .await
    }

    /// The stored envelopes of the ids that exist.
    pub async fn get_many(&self, ids: &[String]) -> Result<HashMap<String, Vec<u8>>> {
        self.by_id(&self.sql.get_many, ids, "get_many").await
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
        self.bounded("set_tier_locked", async {
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
        })
        .await
    }

    /// Count one access: `access_count += 1`, `last_accessed = now_s`. A missing frame is ignored.
    pub async fn touch(&self, frame_id: &str, now_s: i64) -> Result<()> {
        self.bounded("touch", async {
            let client = self.client().await?;
            let st = client.prepare_cached(&self.sql.touch).await.map_err(|e| pg_err("touch", e))?;
            client.execute(&st, &[&frame_id, &now_s]).await.map_err(|e| pg_err("touch", e))?;
            Ok(())
        })
        .await
    }

    /// The stored envelopes of the ids that exist, each with whether another machine (another
    /// SQLite file) holds the row, read in one statement: one snapshot, so a row another machine
    /// archives or gives up meanwhile is seen with its hold or not at all.
    pub async fn get_many_held(&self, ids: &[String]) -> Result<HashMap<String, (Vec<u8>, bool)>> {
        self.bounded("get_many_held", async {
            if ids.is_empty() {
                return Ok(HashMap::new());
            }
            let client = self.client().await?;
            let st = client.prepare_cached(&self.sql.get_many_held).await.map_err(|e| pg_err("get_many", e))?;
            let rows = client.query(&st, &[&ids, &&*self.holder]).await.map_err(|e| pg_err("get_many", e))?;
            let mut out = HashMap::with_capacity(rows.len());
            for r in rows {
                let id: String = r.try_get(0).map_err(|e| pg_err("get_many", e))?;
                let payload: Vec<u8> = r.try_get(1).map_err(|e| pg_err("get_many", e))?;
                // Without a holder name (no StackMemory file) every hold is "elsewhere"; keep the
                // old meaning there: nothing is another machine's.
                let held: bool = !self.holder.is_empty() && r.try_get(2).map_err(|e| pg_err("get_many", e))?;
                out.insert(id, (payload, held));
            }
            Ok(out)
        })
        .await
    }

    /// Those of `ids` whose archive row another machine (another SQLite file) holds.
    pub async fn held_elsewhere(&self, ids: &[String]) -> Result<std::collections::HashSet<String>> {
        self.bounded("held_elsewhere", async {
            if ids.is_empty() || self.holder.is_empty() {
                return Ok(Default::default());
            }
            let client = self.client().await?;
            let rows = client
                .query(self.sql.held_elsewhere.as_str(), &[&ids, &&*self.holder])
                .await
                .map_err(|e| pg_err("holders", e))?;
            rows.iter().map(|r| r.try_get::<_, String>(0).map_err(|e| pg_err("holders", e))).collect()
        })
        .await
    }

    pub async fn delete_many(&self, ids: &[String]) -> Result<u64> {
        self.bounded("delete_many", async {
            if ids.is_empty() {
                return Ok(0);
            }
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(|e| pg_err("delete", e))?;
            tx.execute(LOCK_SHARED, &[]).await.map_err(|e| pg_err("delete lock", e))?;
            let n = if self.holder.is_empty() {
                let st = tx.prepare_cached(&self.sql.delete_many).await.map_err(|e| pg_err("delete", e))?;
                tx.execute(&st, &[&ids]).await.map_err(|e| pg_err("delete", e))?
            } else {
                // Our hold goes; a row goes only when no other machine holds it. The rows are locked
                // first so a concurrent archive of the same frame (which takes the row lock and adds
                // its hold in one transaction) is either seen by the last statement or comes after it.
                tx.query(self.sql.lock_rows.as_str(), &[&ids]).await.map_err(|e| pg_err("delete lock rows", e))?;
                tx.execute(self.sql.release.as_str(), &[&ids, &&*self.holder])
                    .await
                    .map_err(|e| pg_err("delete holders", e))?;
                tx.execute(self.sql.delete_unheld.as_str(), &[&ids]).await.map_err(|e| pg_err("delete", e))?
            };
            tx.commit().await.map_err(|e| pg_err("delete commit", e))?;
            Ok(n)
        })
        .await
    }

    /// Waits until every archive write that already holds the schema's shared lock has
    /// committed or rolled back, including those of a killed process that PostgreSQL is still
    /// finishing. Recovery calls it first, so it reads and repairs after them, not before.
    pub async fn barrier(&self) -> Result<()> {
        self.bounded("barrier", async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(|e| pg_err("barrier", e))?;
            tx.execute(LOCK_EXCLUSIVE, &[]).await.map_err(|e| pg_err("barrier lock", e))?;
            tx.commit().await.map_err(|e| pg_err("barrier commit", e))
        })
        .await
    }
}
