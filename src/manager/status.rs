//! `status()`: counts and bytes per tier, each backend's health, the journal, held-back frames, read
//! counters and the policy's state; and `compact()`, the housekeeping run.

use serde_json::{json, Value};

use super::TierManager;
use crate::model::units::now_seconds;
use crate::model::values::{Fields, Kind};
use crate::model::{Result, TierError};

/// `compact(options)`: the housekeeping, and optionally the re-encode step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompactRequest {
    /// Re-encode archived envelopes with their project's current dictionary (`moves/reencode.rs`).
    pub reencode: bool,
    /// Only this project's envelopes.
    pub project_id: Option<String>,
    /// At most this many envelopes rewritten.
    pub limit: Option<u64>,
}

impl CompactRequest {
    pub fn from_json(v: Option<&Value>) -> Result<CompactRequest> {
        let o = Fields::root(v.unwrap_or(&Value::Null), "options", Kind::Argument)?;
        o.known(&["reencode", "projectId", "limit"])?;
        let req = CompactRequest {
            reencode: o.boolean("reencode", false)?,
            project_id: o.opt_string("projectId")?,
            limit: if o.has("limit") { Some(o.int("limit", 0, 1, u64::MAX / 2)?) } else { None },
        };
        if !req.reencode && (req.project_id.is_some() || req.limit.is_some()) {
            return Err(TierError::invalid_argument("options.reencode", "projectId and limit go with reencode: true"));
        }
        Ok(req)
    }
}

impl TierManager {
    pub async fn status(&self) -> Result<Value> {
        self.check_open()?;
        let (counts, version) = self.inner.hot.call(move |hot| Ok((hot.counts()?, hot.schema_version()?))).await?;
        let remotes = self.remotes().await;
        let cfg = &self.inner.config;
        let redis = match (&remotes.warm, cfg.redis.enabled) {
            (_, false) => json!({"configured": false, "enabled": false, "reachable": false}),
            (Some(w), true) => match w.stats().await {
                Ok(s) => json!({"configured": true, "enabled": true, "reachable": true, "latencyUs": s.latency_us,
                    "version": s.version, "frames": s.frames, "bytes": s.bytes, "usedMemory": s.used_memory,
                    "maxmemory": s.maxmemory, "maxSize": cfg.redis.max_size, "ttlSeconds": cfg.redis.ttl_secs,
                    "keyPrefix": cfg.redis.key_prefix, "tls": w.tls()}),
                Err(e) => json!({"configured": true, "enabled": true, "reachable": false, "error": e.to_string()}),
            },
            (None, true) => {
                json!({"configured": true, "enabled": true, "reachable": false, "error": remotes.warm_down})
            }
        };
        let postgres = match (&remotes.cold, cfg.postgres.enabled) {
            (_, false) => json!({"configured": false, "enabled": false, "reachable": false}),
            (Some(c), true) => match c.stats().await {
                Ok(s) => json!({"configured": true, "enabled": true, "reachable": true, "latencyUs": s.latency_us,
                    "version": s.version, "frames": s.frames, "rawBytes": s.raw_bytes, "compressedBytes": s.compressed_bytes,
                    "compressionRatio": if s.compressed_bytes > 0 { s.raw_bytes as f64 / s.compressed_bytes as f64 } else { 0.0 },
                    "schema": cfg.postgres.schema, "tls": c.tls_in_use().await.ok(),
                    "sslMode": cfg.postgres.tls.mode.as_str()}),
                Err(e) => json!({"configured": true, "enabled": true, "reachable": false, "error": e.to_string()}),
            },
            (None, true) => {
                json!({"configured": true, "enabled": true, "reachable": false, "error": remotes.cold_down})
            }
        };
        let (mut redis, mut postgres) = (redis, postgres);
        if cfg.redis.enabled {
            redis["breaker"] = self.inner.warm.status();
        }
        if cfg.postgres.enabled {
            postgres["breaker"] = self.inner.cold.status();
        }
        let local_only = remotes.warm.is_none() && remotes.cold.is_none();
        let held: Vec<Value> = counts.held_back.iter().map(|(r, n)| json!({"reason": r, "frames": n})).collect();
        let retrieves = self.inner.counters.snapshot();
        let total_reads = retrieves.hot + retrieves.warm + retrieves.cold;
        Ok(json!({
            "dbPath": self.inner.hot.path().display().to_string(),
            "schemaVersion": version,
            "mode": if local_only { "local-only" } else { "tiered" },
            "tiers": {
                "hot": {"frames": counts.hot.frames, "bytes": counts.hot.bytes, "maxFrames": cfg.sqlite.max_frames,
                        "maxSize": cfg.sqlite.max_size, "maxAgeMs": cfg.sqlite.max_age_ms, "fileBytes": counts.file_bytes},
                "warm": {"frames": counts.warm.frames, "bytes": counts.warm.bytes},
                "cold": {"frames": counts.cold.frames, "bytes": counts.cold.bytes},
            },
            "expiredStubs": counts.expired.frames,
            "backends": {
                "sqlite": {"configured": true, "reachable": true, "path": self.inner.hot.path().display().to_string()},
                "redis": redis,
                "postgres": postgres,
            },
            "journalBacklog": counts.journal_backlog,
            "heldBack": held,
            "retrieves": retrieves,
            "hotHitRatio": if total_reads > 0 { retrieves.hot as f64 / total_reads as f64 } else { 1.0 },
            "lastRecovery": self.inner.last_recovery.lock().ok().and_then(|g| g.clone()),
            "policy": self.policy_status(),
        }))
    }

    /// Finish stale moves, drop orphan Redis index entries, apply retention, reclaim SQLite space;
    /// with `reencode`, then re-encode archived envelopes with their project's current dictionary.
    pub async fn compact(&self, req: CompactRequest) -> Result<Value> {
        self.check_open()?;
        if req.reencode && !self.inner.config.postgres.enabled {
            return Err(TierError::invalid_argument(
                "options.reencode",
                "re-encodes the archive: PostgreSQL is not enabled",
            ));
        }
        let mut out = self.housekeeping().await?;
        if req.reencode {
            // After the move lock is released: the step is online (see moves/reencode.rs).
            let remotes = self.remotes().await;
            if remotes.cold.is_some() {
                let r = self
                    .inner
                    .mover
                    .reencode(&remotes, req.project_id.as_deref(), req.limit.unwrap_or(u64::MAX))
                    .await?;
                out["reencoded"] = json!(r);
            } else {
                out["reencodeDeferred"] = json!(remotes.down(crate::model::Tier::Cold));
            }
        }
        Ok(out)
    }

    async fn housekeeping(&self) -> Result<Value> {
        let _moving = self.inner.mover.lock_moves().await?;
        self.flush_accesses().await?;
        let remotes = self.remotes().await;
        let recovery = self.inner.mover.recover(&remotes).await?;
        let mut out = json!({"journal": recovery});
        if let Some(w) = &remotes.warm {
            out["redisOrphansRemoved"] = json!(w.remove_orphans().await?);
            out["redisEvicted"] = json!(w.enforce_cap().await?.len());
        }
        if remotes.cold.is_some() {
            let days = self.inner.config.postgres.retention_days;
            let r = self.inner.mover.expire(&remotes, days, now_seconds()).await?;
            for id in r.removed_ids.iter() {
                self.engine().forget(id);
            }
            out["retentionDeleted"] = json!(r.deleted);
            out["stubsDropped"] = json!(r.stubs_removed);
            out["stubsExpired"] = json!(r.stubs_expired);
            out["retentionKept"] = json!(r.kept);
        }
        let (pruned, reclaimed) =
            self.inner.hot.call(move |hot| Ok((hot.journal_prune(7 * 86_400)?, hot.reclaim()?))).await?;
        out["journalPruned"] = json!(pruned);
        out["sqliteBytesReclaimed"] = json!(reclaimed);
        Ok(out)
    }
}
