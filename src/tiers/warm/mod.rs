//! The warm tier: a fast, shared, **non-durable** copy of frame envelopes in Redis.
//!
//! A durable copy of every frame always exists in another tier, so losing a key here costs speed,
//! never data. That shapes every choice below: any Redis failure becomes `TierUnavailable` (the
//! manager skips the tier and retries later), we never change the server's configuration, and we
//! never block for long on a server that has gone away.
//!
//! ## Keys (all under `cfg.key_prefix`, default `sm:`)
//!
//! | key                        | type   | content                                                  |
//! |----------------------------|--------|----------------------------------------------------------|
//! | `{p}frame:{<id>}`          | string | the envelope bytes (see `codec`), TTL `ttl_secs`         |
//! | `{p}meta:{<id>}`           | hash   | tier=2, accessed_at, access_count, size, created_at; TTL |
//! | `{p}idx:lru`               | zset   | id → last access, unix ms (server clock)                 |
//! | `{p}idx:lfu`               | zset   | id → access count                                        |
//! | `{p}idx:age`               | zset   | id → created_at, unix s                                  |
//! | `{p}idx:size`              | hash   | id → envelope bytes                                      |
//! | `{p}idx:bytes`             | string | running total of `idx:size`                              |
//! | `{p}idx:exp`               | zset   | id → expiry deadline, unix ms (server clock)             |
//! | `{p}dict:<id>`             | hash   | project, bytes of a zstd dictionary; no TTL, not capped  |
//!
//! That is the layout on one server. On Redis Cluster (`cfg.cluster`) every frame belongs to one
//! of `keys::CLUSTER_BUCKETS` buckets and the bucket's hash tag comes first in all its keys
//! (`{p}frame:{w<k>}<id>`, `{p}idx:{w<k>}lru`, ...), so a frame's keys and its bucket's index
//! share a slot and every script touches one slot only; each bucket holds `maxSize / buckets`.
//!
//! ## Size accounting and the cap
//!
//! The running total lives in `idx:bytes` and is only ever changed by small Lua scripts (put, get,
//! delete, stats) that update the frame key, its meta hash, the indexes and the total in one
//! atomic step. We chose scripts over "HGET old size, then pipeline HSET + HINCRBY delta" because
//! this Redis is shared between a user's machines: two machines re-putting or evicting the same
//! frame at once would each apply the old-size correction and the total would drift. Inside a
//! script the read-modify-write cannot interleave, so the total stays exact and an eviction or
//! delete of an id that is already gone is a harmless no-op. Each script handles a whole chunk of
//! ids, so a batch costs one round trip per chunk (the same as a pipeline).
//!
//! The cap holds on every write: before each frame the put script evicts the frames the eviction
//! strategy ranks lowest until it fits (reported back, so the mover knows those copies are gone;
//! Redis is never a frame's last copy). Keys that expire by TTL leave the index: the put and stats
//! scripts first trim `idx:exp` entries whose deadline passed and whose key is gone. Keys removed
//! any other way (Redis' own eviction, a flush) are swept by `remove_orphans`, which also
//! recomputes `idx:bytes` from `idx:size`, so any drift heals itself.
//!
//! ## Timeouts
//!
//! * `connect` gives up after `cfg.connect_timeout_ms` with `TierUnavailable`.
//! * Every command has a response timeout (`RESPONSE_TIMEOUT`), and every operation as a whole is
//!   additionally bounded by `RESPONSE_TIMEOUT + connect timeout`, so a call to a server that died
//!   or hangs fails with `TierUnavailable` instead of hanging.
//! * The `ConnectionManager` is configured with no internal retries: after an I/O error it starts
//!   one reconnect attempt, and each later call starts another one if that failed. An operation
//!   that fails with an I/O error (not a timeout) is retried once, which makes the first call after
//!   the server comes back succeed on the fresh connection.

use std::future::Future;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisError, RedisResult, ScriptInvocation};

use crate::model::{Result, TierError};

mod cap;
pub mod config;
mod conn;
mod dictionaries;
mod frames;
mod keys;
mod scripts;

pub use config::RedisConfig;
use conn::Conn;
pub use frames::{PutOutcome, WarmItem};
use keys::{info_field, Layout};

const TIER: &str = "redis";
/// Longest we wait for the answer to one command.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(4);
/// A put chunk holds at most this many frames ...
const PUT_CHUNK_ITEMS: usize = 128;
/// ... and at most about this many bytes (a single frame larger than this goes alone).
const PUT_CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// Ids per MGET (frames can be up to a few MB each; keep one reply reasonably small).
const GET_CHUNK: usize = 64;
/// Ids per delete / orphan-check script call.
const DELETE_CHUNK: usize = 256;
/// COUNT hint for SCAN / HSCAN / ZSCAN.
const SCAN_COUNT: usize = 1000;

/// What `WarmTier::stats` reports.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WarmStats {
    /// Frames in our index (entries of keys that expired by TTL are removed first).
    pub frames: u64,
    /// Bytes in our index (envelope sizes); never more than `maxSize`.
    pub bytes: u64,
    /// Index entries of expired keys this call removed.
    pub expired_removed: u64,
    /// `used_memory` from INFO memory.
    pub used_memory: Option<u64>,
    /// `maxmemory` from INFO memory, as Redis reports it (0 means no limit).
    pub maxmemory: Option<u64>,
    /// `redis_version` from INFO server.
    pub version: String,
    /// Round trip of one PING, microseconds.
    pub latency_us: u64,
}

/// The Redis warm tier. Cheap to clone (the connection is shared and multiplexed).
#[derive(Clone)]
pub struct WarmTier {
    /// The shared connection; replaced wholesale after a timeout (see `run`).
    conn: std::sync::Arc<std::sync::Mutex<Conn>>,
    /// Set on Redis Cluster: reconnects go through it instead of `client`.
    cluster: Option<redis::cluster::ClusterClient>,
    /// Set when an operation timed out: the multiplexed connection may still owe answers to
    /// requests nobody waits for, so the next operation opens a fresh one first.
    poisoned: std::sync::Arc<std::sync::atomic::AtomicBool>,
    client: redis::Client,
    manager_cfg: ConnectionManagerConfig,
    connect_timeout: Duration,
    cfg: RedisConfig,
    layout: Layout,
    /// Bound on one whole operation (including waiting for a reconnect).
    op_timeout: Duration,
    /// Told about every call that failed because the server is unreachable (the breaker).
    outage: std::sync::Arc<std::sync::OnceLock<crate::tiers::OutageHook>>,
}

impl std::fmt::Debug for WarmTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection string may hold a password: show only the prefix.
        f.debug_struct("WarmTier").field("key_prefix", &self.cfg.key_prefix).finish_non_exhaustive()
    }
}

impl WarmTier {
    /// Connects and checks the server answers a PING, all within `cfg.connect_timeout_ms`.
    pub async fn connect(cfg: &RedisConfig) -> Result<WarmTier> {
        let url = cfg
            .connection_string
            .as_deref()
            .ok_or_else(|| TierError::unavailable(TIER, "no connection string configured"))?;
        let first = url.split(',').next().unwrap_or(url).trim();
        let client = open_client(first, cfg)?;
        let connect_timeout = Duration::from_millis(cfg.connect_timeout_ms.max(1));
        let cluster = if cfg.cluster {
            Some(
                conn::cluster_client(url, connect_timeout, RESPONSE_TIMEOUT)
                    .map_err(|e| TierError::invalid_config("tiers.redis.connectionString", e.to_string()))?,
            )
        } else {
            None
        };
        // No internal retries: the manager's backoff starts at one second and grows, and calls
        // wait on it. Instead each failed call triggers one fresh attempt (see module docs).
        let manager_cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(connect_timeout)
            .set_response_timeout(RESPONSE_TIMEOUT)
            .set_number_of_retries(0)
            .set_max_delay(1000);
        let connecting = async {
            let mut conn = match &cluster {
                Some(cc) => Conn::Cluster(cc.get_async_connection().await?),
                None => Conn::Single(ConnectionManager::new_with_config(client.clone(), manager_cfg.clone()).await?),
            };
            redis::cmd("PING").query_async::<()>(&mut conn).await?;
            Ok::<_, RedisError>(conn)
        };
        let conn = match tokio::time::timeout(connect_timeout, connecting).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(TierError::unavailable(TIER, format!("connect: {e}"))),
            Err(_) => {
                return Err(TierError::unavailable(
                    TIER,
                    format!("connect: no answer within {} ms", connect_timeout.as_millis()),
                ))
            }
        };
        Ok(WarmTier {
            conn: std::sync::Arc::new(std::sync::Mutex::new(conn)),
            poisoned: Default::default(),
            cluster,
            client,
            manager_cfg,
            connect_timeout,
            layout: Layout::new(&cfg.key_prefix, cfg.cluster),
            cfg: cfg.clone(),
            op_timeout: RESPONSE_TIMEOUT + connect_timeout,
            outage: Default::default(),
        })
    }

    pub fn config(&self) -> &RedisConfig {
        &self.cfg
    }

    /// Who is told about outages (set once, by the manager's breaker).
    pub fn set_outage_hook(&self, hook: crate::tiers::OutageHook) {
        let _ = self.outage.set(hook);
    }

    fn outage(&self, why: &str) -> TierError {
        if let Some(h) = self.outage.get() {
            h(why);
        }
        TierError::unavailable(TIER, why)
    }

    /// Whether the connection is TLS (`rediss://`).
    pub fn tls(&self) -> bool {
        matches!(self.client.get_connection_info().addr, redis::ConnectionAddr::TcpTls { .. })
    }

    /// Round trip of one PING.
    pub async fn ping(&self) -> Result<Duration> {
        let start = Instant::now();
        self.query::<()>("ping", &redis::cmd("PING")).await?;
        Ok(start.elapsed())
    }

    /// Our index totals, the server's memory figures and version, and a PING's latency.
    pub async fn stats(&self) -> Result<WarmStats> {
        let totals = self.index_totals().await?;
        let (server, memory) = if self.layout.is_cluster() {
            // On a cluster INFO goes to every master and answers per node: memory figures are
            // summed over the masters.
            let (mut s, mut m) = (redis::cmd("INFO"), redis::cmd("INFO"));
            s.arg("server");
            m.arg("memory");
            let server: redis::Value = self.query("stats", &s).await?;
            let memory: redis::Value = self.query("stats", &m).await?;
            (info_texts(&server), info_texts(&memory))
        } else {
            let mut pipe = redis::pipe();
            // Two INFO calls: several sections in one INFO needs Redis 7.
            pipe.cmd("INFO").arg("server");
            pipe.cmd("INFO").arg("memory");
            let (server, memory): (String, String) = self.pipeline("stats", &pipe).await?;
            (vec![server], vec![memory])
        };
        let sum = |name: &str| -> Option<u64> {
            let v: Vec<u64> = memory.iter().filter_map(|t| info_field(t, name)?.parse().ok()).collect();
            (!v.is_empty()).then(|| v.iter().sum())
        };
        let latency = self.ping().await?;
        Ok(WarmStats {
            frames: totals.frames,
            bytes: totals.bytes,
            expired_removed: totals.expired_removed,
            used_memory: sum("used_memory"),
            maxmemory: sum("maxmemory"),
            version: server.iter().find_map(|t| info_field(t, "redis_version")).unwrap_or_default().to_string(),
            latency_us: latency.as_micros().min(u64::MAX as u128) as u64,
        })
    }

    async fn query<T: redis::FromRedisValue>(&self, what: &str, cmd: &Cmd) -> Result<T> {
        self.run(what, |mut c| async move { cmd.query_async::<T>(&mut c).await }).await
    }

    async fn pipeline<T: redis::FromRedisValue>(&self, what: &str, pipe: &Pipeline) -> Result<T> {
        self.run(what, |mut c| async move { pipe.query_async::<T>(&mut c).await }).await
    }

    async fn script<T: redis::FromRedisValue>(&self, what: &str, inv: &ScriptInvocation<'_>) -> Result<T> {
        self.run(what, |mut c| async move { inv.invoke_async::<T>(&mut c).await }).await
    }

    /// Runs one operation under the overall deadline, retrying once after an I/O error (the
    /// manager has started a reconnect by then), and maps every failure to `TierUnavailable`:
    /// whatever went wrong, the warm tier is skipped and the durable copy serves.
    async fn run<T, F, Fut>(&self, what: &str, op: F) -> Result<T>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        use std::sync::atomic::Ordering;
        if self.poisoned.load(Ordering::SeqCst) {
            let fresh = tokio::time::timeout(self.connect_timeout, async {
                match &self.cluster {
                    Some(cc) => cc.get_async_connection().await.map(Conn::Cluster),
                    None => ConnectionManager::new_with_config(self.client.clone(), self.manager_cfg.clone())
                        .await
                        .map(Conn::Single),
                }
            })
            .await;
            match fresh {
                Ok(Ok(c)) => {
                    if let Ok(mut slot) = self.conn.lock() {
                        *slot = c;
                    }
                    self.poisoned.store(false, Ordering::SeqCst);
                }
                Ok(Err(e)) => return Err(self.outage(&format!("{what}: reconnect: {e}"))),
                Err(_) => return Err(self.outage(&format!("{what}: reconnect timed out"))),
            }
        }
        let conn = || self.conn.lock().map(|c| c.clone()).map_err(|_| ());
        let Ok(first) = conn() else {
            return Err(TierError::unavailable(TIER, format!("{what}: connection lock poisoned")));
        };
        let attempt = async {
            match op(first).await {
                Err(e) if e.is_io_error() && !e.is_timeout() => match conn() {
                    Ok(c) => op(c).await,
                    Err(_) => Err(e),
                },
                other => other,
            }
        };
        match tokio::time::timeout(self.op_timeout, attempt).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if e.is_timeout() {
                    self.poisoned.store(true, Ordering::SeqCst);
                }
                if e.is_timeout() || e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
                    Err(self.outage(&format!("{what}: {e}")))
                } else {
                    Err(TierError::unavailable(TIER, format!("{what}: {e}")))
                }
            }
            Err(_) => {
                self.poisoned.store(true, Ordering::SeqCst);
                Err(self.outage(&format!("{what}: no answer within {} ms", self.op_timeout.as_millis())))
            }
        }
    }
}

#[cfg(test)]
impl WarmTier {
    /// Tests only: deletes every key under our prefix (SCAN + UNLINK). Returns how many keys were removed.
    pub async fn flush_prefix(&self) -> Result<u64> {
        let pattern = format!("{}*", keys::glob_escape(self.layout.prefix()));
        let mut removed = 0u64;
        let mut cursor: u64 = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(SCAN_COUNT);
            let (next, keys): (u64, Vec<Vec<u8>>) = self.query("flush_prefix", &scan).await?;
            if !keys.is_empty() {
                let mut unlink = redis::cmd("UNLINK");
                unlink.arg(&keys);
                removed += self.query::<u64>("flush_prefix", &unlink).await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(removed)
    }
}

/// The text of an INFO reply: one string from a server, one per node (a map) from a cluster.
fn info_texts(v: &redis::Value) -> Vec<String> {
    use redis::Value;
    match v {
        Value::BulkString(b) => vec![String::from_utf8_lossy(b).into_owned()],
        Value::SimpleString(s) => vec![s.clone()],
        Value::VerbatimString { text, .. } => vec![text.clone()],
        Value::Map(pairs) => pairs.iter().flat_map(|(_, v)| info_texts(v)).collect(),
        Value::Array(items) => items.iter().flat_map(info_texts).collect(),
        _ => Vec::new(),
    }
}

/// The client for `url`: `rediss://` over rustls, with `cfg.ca_file`'s roots when given (else
/// the system's). Errors never quote the URL (it may hold a password).
fn open_client(url: &str, cfg: &RedisConfig) -> Result<redis::Client> {
    // One crypto provider for the process (ring); harmless when one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bad_url = |e: RedisError| {
        TierError::invalid_config("tiers.redis.connectionString", format!("not a valid Redis URL ({:?})", e.kind()))
    };
    match &cfg.ca_file {
        None => redis::Client::open(url).map_err(bad_url),
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                TierError::invalid_config("tiers.redis.tls.caFile", format!("cannot read {}: {e}", path.display()))
            })?;
            let certs = redis::TlsCertificates { client_tls: None, root_cert: Some(pem) };
            redis::Client::build_with_tls(url, certs).map_err(|e| {
                TierError::invalid_config("tiers.redis.tls.caFile", format!("cannot use the CA file ({:?})", e.kind()))
            })
        }
    }
}

#[cfg(test)]
mod tests;
