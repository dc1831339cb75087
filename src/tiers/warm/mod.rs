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
//! | `{p}idx:lru`               | zset   | id → last access, unix ms                                |
//! | `{p}idx:lfu`               | zset   | id → access count                                        |
//! | `{p}idx:age`               | zset   | id → created_at, unix s                                  |
//! | `{p}idx:size`              | hash   | id → envelope bytes                                      |
//! | `{p}idx:bytes`             | string | running total of `idx:size`                              |
//!
//! The braces around the id are Redis Cluster hash tags: a frame and its meta hash always share a
//! slot.
//!
//! ## Size accounting
//!
//! The running total lives in `idx:bytes` and is only ever changed by three small Lua scripts
//! (put, get, delete) that update the frame key, its meta hash, the indexes and the total in one
//! atomic step. We chose scripts over "HGET old size, then pipeline HSET + HINCRBY delta" because
//! this Redis is shared between a user's machines: two machines re-putting or evicting the same
//! frame at once would each apply the old-size correction and the total would drift. Inside a
//! script the read-modify-write cannot interleave, so the total stays exact and an eviction or
//! delete of an id that is already gone is a harmless no-op. Each script handles a whole chunk of
//! ids, so a batch costs one round trip per chunk (the same as a pipeline).
//!
//! Keys that expire by TTL leave their index entries behind (Redis cannot tell us). They are
//! cleaned lazily: `enforce_cap` cleans them when it meets them as eviction candidates, and
//! `remove_orphans` sweeps them all and then recomputes `idx:bytes` from `idx:size`, so any drift
//! (e.g. someone deleting `idx:bytes` by hand) heals itself.
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
use std::sync::LazyLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisError, RedisResult, Script, ScriptInvocation};

use crate::model::codec;
use crate::model::EvictionStrategy;

pub mod config;
use crate::model::{Result, TierError};
pub use config::RedisConfig;

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
/// Eviction candidates read per round of `enforce_cap`.
const EVICT_BATCH: usize = 128;
/// Upper bound on `enforce_cap` rounds, so a corrupted index can never make it loop forever.
const MAX_EVICT_ROUNDS: usize = 100_000;
/// COUNT hint for SCAN / HSCAN / ZSCAN.
const SCAN_COUNT: usize = 1000;

/// Put a chunk of frames. KEYS: lru, lfu, age, size, bytes, then (frame, meta) per item.
/// ARGV: ttl, now_ms, now_s, then (id, bytes, created_s, access_count) per item.
/// The LFU count keeps the larger of the given count and the one already in Redis, so a re-put
/// from one machine does not forget reads made through another.
static PUT_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local ttl = ARGV[1]
local now_ms = ARGV[2]
local now_s = ARGV[3]
local n = (#KEYS - 5) / 2
local delta = 0
for i = 1, n do
  local fk = KEYS[4 + 2 * i]
  local mk = KEYS[5 + 2 * i]
  local a = 3 + (i - 1) * 4
  local id = ARGV[a + 1]
  local data = ARGV[a + 2]
  local created = ARGV[a + 3]
  local count = tonumber(ARGV[a + 4]) or 0
  local size = string.len(data)
  local old = tonumber(redis.call('HGET', KEYS[4], id)) or 0
  local seen = tonumber(redis.call('ZSCORE', KEYS[2], id)) or 0
  if seen > count then count = seen end
  redis.call('SET', fk, data, 'EX', ttl)
  redis.call('DEL', mk)
  redis.call('HSET', mk, 'tier', 2, 'accessed_at', now_s, 'access_count', count,
             'size', size, 'created_at', created)
  redis.call('EXPIRE', mk, ttl)
  redis.call('ZADD', KEYS[1], now_ms, id)
  redis.call('ZADD', KEYS[2], count, id)
  redis.call('ZADD', KEYS[3], created, id)
  redis.call('HSET', KEYS[4], id, size)
  delta = delta + size - old
end
if delta ~= 0 then redis.call('INCRBY', KEYS[5], delta) end
return n
"#,
    )
});

/// Read one frame, renewing its TTL. KEYS: frame, meta, lru, lfu. ARGV: ttl, now_ms, now_s, id.
/// The meta hash and index scores are only touched when they exist: bumping a missing meta hash
/// would create a key without a TTL, and a missing index entry means the frame is not accounted
/// (we must not half-create one).
static GET_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local v = redis.call('GETEX', KEYS[1], 'EX', ARGV[1])
if not v then return false end
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], 'access_count', 1)
  redis.call('HSET', KEYS[2], 'accessed_at', ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[1])
end
redis.call('ZADD', KEYS[3], 'XX', ARGV[2], ARGV[4])
redis.call('ZADD', KEYS[4], 'XX', 'INCR', 1, ARGV[4])
return v
"#,
    )
});

/// Delete ids. KEYS: lru, lfu, age, size, bytes, then (frame, meta) per id. ARGV: mode, ids...
/// mode `force` removes everything; mode `orphan` only cleans ids whose frame key is gone and
/// leaves a live frame (and its entries) untouched - the check and the cleanup are atomic, so a
/// frame another machine writes meanwhile is never lost.
/// Returns one flag per id: 0 = nothing removed, 1 = only meta/index entries removed,
/// 2 = the frame key itself was removed.
static DELETE_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local orphan_only = ARGV[1] == 'orphan'
local n = (#KEYS - 5) / 2
local out = {}
local freed = 0
for i = 1, n do
  local fk = KEYS[4 + 2 * i]
  local mk = KEYS[5 + 2 * i]
  local id = ARGV[1 + i]
  local r = 0
  if not (orphan_only and redis.call('EXISTS', fk) == 1) then
    if redis.call('UNLINK', fk) == 1 then r = 2 end
    local old = redis.call('HGET', KEYS[4], id)
    if old then
      freed = freed + (tonumber(old) or 0)
      redis.call('HDEL', KEYS[4], id)
      if r == 0 then r = 1 end
    end
    local z = redis.call('DEL', mk) + redis.call('ZREM', KEYS[1], id)
      + redis.call('ZREM', KEYS[2], id) + redis.call('ZREM', KEYS[3], id)
    if z > 0 and r == 0 then r = 1 end
  end
  out[i] = r
end
if freed > 0 then
  if redis.call('DECRBY', KEYS[5], freed) < 0 then redis.call('SET', KEYS[5], 0) end
end
return out
"#,
    )
});

/// Recompute the running total from the size hash. KEYS: size, bytes.
static RECONCILE_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local total = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do total = total + (tonumber(v) or 0) end
redis.call('SET', KEYS[2], total)
return total
"#,
    )
});

/// `{prefix}frame:{<id>}`
pub fn frame_key(prefix: &str, id: &str) -> String {
    format!("{prefix}frame:{{{id}}}")
}

/// `{prefix}meta:{<id>}`
pub fn meta_key(prefix: &str, id: &str) -> String {
    format!("{prefix}meta:{{{id}}}")
}

/// One frame to put into the warm tier.
#[derive(Debug, Clone)]
pub struct WarmItem {
    pub frame_id: String,
    /// The envelope bytes (`codec::encode`), stored as they are.
    pub bytes: Vec<u8>,
    /// When the frame was created, unix seconds (the AGE strategy's score).
    pub created_s: i64,
    /// Reads so far (the LFU strategy's score).
    pub access_count: u64,
}

/// What `WarmTier::stats` reports.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WarmStats {
    /// Frames in our index (entries of keys that expired count until they are cleaned).
    pub frames: u64,
    /// Bytes in our index (envelope sizes).
    pub bytes: u64,
    /// `used_memory` from INFO memory.
    pub used_memory: Option<u64>,
    /// `maxmemory` from INFO memory, as Redis reports it (0 means no limit).
    pub maxmemory: Option<u64>,
    /// `redis_version` from INFO server.
    pub version: String,
    /// Round trip of one PING, microseconds.
    pub latency_us: u64,
}

/// The index keys, computed once from the prefix.
#[derive(Debug, Clone)]
struct IndexKeys {
    lru: String,
    lfu: String,
    age: String,
    size: String,
    bytes: String,
}

impl IndexKeys {
    fn new(prefix: &str) -> Self {
        IndexKeys {
            lru: format!("{prefix}idx:lru"),
            lfu: format!("{prefix}idx:lfu"),
            age: format!("{prefix}idx:age"),
            size: format!("{prefix}idx:size"),
            bytes: format!("{prefix}idx:bytes"),
        }
    }

    fn for_strategy(&self, s: EvictionStrategy) -> &str {
        match s {
            EvictionStrategy::Lru => &self.lru,
            EvictionStrategy::Lfu => &self.lfu,
            EvictionStrategy::Age => &self.age,
        }
    }

    /// Starts a script invocation with the five index keys as KEYS[1..5].
    fn invocation<'a>(&self, script: &'a Script) -> ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        inv.key(&self.lru).key(&self.lfu).key(&self.age).key(&self.size).key(&self.bytes);
        inv
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum DeleteMode {
    Force,
    OrphanOnly,
}

/// The Redis warm tier. Cheap to clone (the connection is shared and multiplexed).
#[derive(Clone)]
pub struct WarmTier {
    /// The shared connection; replaced wholesale after a timeout (see `run`).
    conn: std::sync::Arc<std::sync::Mutex<ConnectionManager>>,
    /// Set when an operation timed out: the multiplexed connection may still owe answers to
    /// requests nobody waits for, so the next operation opens a fresh one first.
    poisoned: std::sync::Arc<std::sync::atomic::AtomicBool>,
    client: redis::Client,
    manager_cfg: ConnectionManagerConfig,
    connect_timeout: Duration,
    cfg: RedisConfig,
    keys: IndexKeys,
    /// Bound on one whole operation (including waiting for a reconnect).
    op_timeout: Duration,
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
        let client = redis::Client::open(url)
            .map_err(|e| TierError::invalid_config("tiers.redis.connectionString", e.to_string()))?;
        let connect_timeout = Duration::from_millis(cfg.connect_timeout_ms.max(1));
        // No internal retries: the manager's backoff starts at one second and grows, and calls
        // wait on it. Instead each failed call triggers one fresh attempt (see module docs).
        let manager_cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(connect_timeout)
            .set_response_timeout(RESPONSE_TIMEOUT)
            .set_number_of_retries(0)
            .set_max_delay(1000);
        let connecting = async {
            let mut conn = ConnectionManager::new_with_config(client.clone(), manager_cfg.clone()).await?;
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
            client,
            manager_cfg,
            connect_timeout,
            keys: IndexKeys::new(&cfg.key_prefix),
            cfg: cfg.clone(),
            op_timeout: RESPONSE_TIMEOUT + connect_timeout,
        })
    }

    pub fn config(&self) -> &RedisConfig {
        &self.cfg
    }

    /// Round trip of one PING.
    pub async fn ping(&self) -> Result<Duration> {
        let start = Instant::now();
        self.query::<()>("ping", &redis::cmd("PING")).await?;
        Ok(start.elapsed())
    }

    /// Stores frames (SET EX), their meta hashes and index entries, one script call per chunk.
    /// Items must hold envelopes; a frame already present is replaced and re-accounted.
    pub async fn put_many(&self, items: &[WarmItem]) -> Result<()> {
        for it in items {
            if it.frame_id.is_empty() {
                return Err(TierError::invalid_argument("frame_id", "must not be empty"));
            }
            if codec::header_checksum(&it.bytes).is_none() {
                return Err(TierError::invalid_frame(
                    "bytes",
                    format!("frame {} is not a stackmemory-tiers envelope", it.frame_id),
                ));
            }
        }
        let (now_ms, now_s) = now();
        let mut start = 0;
        while start < items.len() {
            // Grow the chunk until it is full by count or by bytes (always at least one item).
            let mut end = start;
            let mut bytes = 0usize;
            while end < items.len()
                && end - start < PUT_CHUNK_ITEMS
                && (end == start || bytes + items[end].bytes.len() <= PUT_CHUNK_BYTES)
            {
                bytes += items[end].bytes.len();
                end += 1;
            }
            let chunk = &items[start..end];
            let mut inv = self.keys.invocation(&PUT_SCRIPT);
            inv.arg(self.cfg.ttl_secs).arg(now_ms).arg(now_s);
            for it in chunk {
                inv.key(frame_key(&self.cfg.key_prefix, &it.frame_id))
                    .key(meta_key(&self.cfg.key_prefix, &it.frame_id));
                inv.arg(&it.frame_id).arg(&it.bytes[..]).arg(it.created_s).arg(it.access_count);
            }
            self.script::<i64>("put", &inv).await?;
            start = end;
        }
        Ok(())
    }

    /// Reads a frame and renews its TTL (GETEX). On a hit the meta hash's TTL is renewed too and
    /// the access count, access time and LRU/LFU scores are bumped, all in one atomic step.
    pub async fn get(&self, frame_id: &str) -> Result<Option<Vec<u8>>> {
        let (now_ms, now_s) = now();
        let p = &self.cfg.key_prefix;
        let mut inv = GET_SCRIPT.prepare_invoke();
        inv.key(frame_key(p, frame_id))
            .key(meta_key(p, frame_id))
            .key(&self.keys.lru)
            .key(&self.keys.lfu)
            .arg(self.cfg.ttl_secs)
            .arg(now_ms)
            .arg(now_s)
            .arg(frame_id);
        self.script::<Option<Vec<u8>>>("get", &inv).await
    }

    /// Reads many frames with MGET, without renewing TTLs or counting accesses (the mover uses
    /// this to verify its copies). The result is in the order of `ids`.
    pub async fn get_many(&self, ids: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(GET_CHUNK) {
            let keys: Vec<String> = chunk.iter().map(|id| frame_key(&self.cfg.key_prefix, id)).collect();
            let mut cmd = redis::cmd("MGET");
            cmd.arg(&keys);
            let got: Vec<Option<Vec<u8>>> = self.query("get_many", &cmd).await?;
            if got.len() != chunk.len() {
                return Err(TierError::unavailable(
                    TIER,
                    format!("get_many: MGET returned {} values for {} keys", got.len(), chunk.len()),
                ));
            }
            out.extend(got);
        }
        Ok(out)
    }

    /// Removes frames, their meta hashes and index entries, and subtracts their sizes.
    /// Ids that are not there are ignored.
    pub async fn delete_many(&self, ids: &[String]) -> Result<()> {
        for chunk in ids.chunks(DELETE_CHUNK) {
            self.delete_chunk(chunk, DeleteMode::Force).await?;
        }
        Ok(())
    }

    /// Evicts frames by the configured strategy (LRU: least recently read first; LFU: fewest
    /// reads first; AGE: oldest created first) until our total is at most `max_size`.
    /// Returns the ids whose frame key was evicted. Candidates whose key already expired are
    /// cleaned from the index (freeing their accounted bytes) but not reported.
    pub async fn enforce_cap(&self) -> Result<Vec<String>> {
        let max = self.cfg.max_size;
        let zset = self.keys.for_strategy(self.cfg.eviction_strategy).to_string();
        let mut evicted = Vec::new();
        let mut reconciled = false;
        for _ in 0..MAX_EVICT_ROUNDS {
            let total = self.total_bytes().await?;
            if total <= max {
                break;
            }
            let mut range = redis::cmd("ZRANGE");
            range.arg(&zset).arg(0).arg(EVICT_BATCH - 1);
            let candidates: Vec<String> = self.query("enforce_cap", &range).await?;
            if candidates.is_empty() {
                // Over the cap with nothing left to evict: the total has drifted. Recompute it
                // once and re-check; if it is still over, the index is inconsistent - stop.
                if reconciled {
                    break;
                }
                self.reconcile().await?;
                reconciled = true;
                continue;
            }
            let mut hmget = redis::cmd("HMGET");
            hmget.arg(&self.keys.size).arg(&candidates);
            let sizes: Vec<Option<u64>> = self.query("enforce_cap", &hmget).await?;
            // Take the lowest-ranked candidates until they free enough.
            let mut need = total - max;
            let mut picked = Vec::new();
            for (id, size) in candidates.into_iter().zip(sizes) {
                let size = size.unwrap_or(0);
                picked.push(id);
                if size >= need {
                    break;
                }
                need -= size;
            }
            let flags = self.delete_chunk(&picked, DeleteMode::Force).await?;
            evicted.extend(picked.into_iter().zip(flags).filter(|(_, f)| *f == 2).map(|(id, _)| id));
        }
        Ok(evicted)
    }

    /// Removes index entries and meta hashes whose frame key is gone (expired, evicted by Redis
    /// itself, flushed). Frame keys that exist are never touched: other machines share this
    /// Redis. Afterwards the running total is recomputed from the size index.
    /// Returns how many ids were cleaned.
    pub async fn remove_orphans(&self) -> Result<u64> {
        // Every id we know of: the size hash, the three sorted sets and the meta keys.
        let mut ids = std::collections::BTreeSet::new();
        ids.extend(self.scan_members("HSCAN", &self.keys.size).await?);
        for z in [&self.keys.lru, &self.keys.lfu, &self.keys.age] {
            ids.extend(self.scan_members("ZSCAN", z).await?);
        }
        let meta_start = format!("{}meta:{{", self.cfg.key_prefix);
        let pattern = format!("{}*", glob_escape(&meta_start));
        for key in self.scan_keys(&pattern).await? {
            if let Some(id) = key.strip_prefix(&meta_start).and_then(|r| r.strip_suffix('}')) {
                ids.insert(id.to_string());
            }
        }

        let ids: Vec<String> = ids.into_iter().collect();
        let mut removed = 0u64;
        for chunk in ids.chunks(DELETE_CHUNK) {
            // Cheap pre-check so the script only sees likely orphans; the script re-checks
            // atomically, so a frame written in between is left alone.
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.cmd("EXISTS").arg(frame_key(&self.cfg.key_prefix, id));
            }
            let exists: Vec<i64> = self.pipeline("remove_orphans", &pipe).await?;
            let gone: Vec<String> =
                chunk.iter().zip(exists).filter(|(_, e)| *e == 0).map(|(id, _)| id.clone()).collect();
            if gone.is_empty() {
                continue;
            }
            let flags = self.delete_chunk(&gone, DeleteMode::OrphanOnly).await?;
            removed += flags.iter().filter(|f| **f > 0).count() as u64;
        }
        self.reconcile().await?;
        Ok(removed)
    }

    /// Our index totals, the server's memory figures and version, and a PING's latency.
    pub async fn stats(&self) -> Result<WarmStats> {
        let mut pipe = redis::pipe();
        pipe.cmd("HLEN").arg(&self.keys.size);
        pipe.cmd("GET").arg(&self.keys.bytes);
        // Two INFO calls: several sections in one INFO needs Redis 7.
        pipe.cmd("INFO").arg("server");
        pipe.cmd("INFO").arg("memory");
        let (frames, bytes, server, memory): (u64, Option<i64>, String, String) = self.pipeline("stats", &pipe).await?;
        let latency = self.ping().await?;
        Ok(WarmStats {
            frames,
            bytes: bytes.unwrap_or(0).max(0) as u64,
            used_memory: info_field(&memory, "used_memory").and_then(|v| v.parse().ok()),
            maxmemory: info_field(&memory, "maxmemory").and_then(|v| v.parse().ok()),
            version: info_field(&server, "redis_version").unwrap_or_default().to_string(),
            latency_us: latency.as_micros().min(u64::MAX as u128) as u64,
        })
    }

    /// Deletes every key under our prefix (SCAN + UNLINK). Returns how many keys were removed.
    pub async fn flush_prefix(&self) -> Result<u64> {
        let pattern = format!("{}*", glob_escape(&self.cfg.key_prefix));
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

    // ---- internals ------------------------------------------------------------------------

    /// Runs the delete script on one chunk; returns its per-id flags (see `DELETE_SCRIPT`).
    async fn delete_chunk(&self, ids: &[String], mode: DeleteMode) -> Result<Vec<i64>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.keys.invocation(&DELETE_SCRIPT);
        inv.arg(if mode == DeleteMode::OrphanOnly { "orphan" } else { "force" });
        for id in ids {
            inv.key(frame_key(&self.cfg.key_prefix, id)).key(meta_key(&self.cfg.key_prefix, id));
            inv.arg(id);
        }
        let flags: Vec<i64> = self.script("delete", &inv).await?;
        Ok(flags)
    }

    async fn total_bytes(&self) -> Result<u64> {
        let mut get = redis::cmd("GET");
        get.arg(&self.keys.bytes);
        let total: Option<i64> = self.query("size total", &get).await?;
        Ok(total.unwrap_or(0).max(0) as u64)
    }

    /// Recomputes `idx:bytes` from `idx:size`.
    async fn reconcile(&self) -> Result<u64> {
        let mut inv = RECONCILE_SCRIPT.prepare_invoke();
        inv.key(&self.keys.size).key(&self.keys.bytes);
        let total: i64 = self.script("reconcile", &inv).await?;
        Ok(total.max(0) as u64)
    }

    /// All members of a hash (`HSCAN`) or sorted set (`ZSCAN`): the even positions of each reply.
    async fn scan_members(&self, command: &str, key: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let mut scan = redis::cmd(command);
            scan.arg(key).arg(cursor).arg("COUNT").arg(SCAN_COUNT);
            let (next, flat): (u64, Vec<String>) = self.query("remove_orphans", &scan).await?;
            out.extend(flat.into_iter().step_by(2));
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }

    /// All keys matching a glob pattern.
    async fn scan_keys(&self, pattern: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(SCAN_COUNT);
            let (next, keys): (u64, Vec<String>) = self.query("remove_orphans", &scan).await?;
            out.extend(keys);
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
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
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        use std::sync::atomic::Ordering;
        if self.poisoned.load(Ordering::SeqCst) {
            let fresh = tokio::time::timeout(
                self.connect_timeout,
                ConnectionManager::new_with_config(self.client.clone(), self.manager_cfg.clone()),
            )
            .await;
            match fresh {
                Ok(Ok(c)) => {
                    if let Ok(mut slot) = self.conn.lock() {
                        *slot = c;
                    }
                    self.poisoned.store(false, Ordering::SeqCst);
                }
                Ok(Err(e)) => return Err(TierError::unavailable(TIER, format!("{what}: reconnect: {e}"))),
                Err(_) => return Err(TierError::unavailable(TIER, format!("{what}: reconnect timed out"))),
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
                Err(TierError::unavailable(TIER, format!("{what}: {e}")))
            }
            Err(_) => {
                self.poisoned.store(true, Ordering::SeqCst);
                Err(TierError::unavailable(
                    TIER,
                    format!("{what}: no answer within {} ms", self.op_timeout.as_millis()),
                ))
            }
        }
    }
}

/// (unix ms, unix s) now.
fn now() -> (i64, i64) {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    (d.as_millis() as i64, d.as_secs() as i64)
}

/// Escapes the glob characters SCAN MATCH understands, so a prefix matches only itself.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One `name:value` line of an INFO reply.
fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::AsyncCommands;

    fn redis_url() -> String {
        std::env::var("REDIS_TEST_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
    }

    fn test_cfg(strategy: EvictionStrategy, max_size: u64, ttl_secs: u64) -> RedisConfig {
        RedisConfig {
            enabled: true,
            connection_string: Some(redis_url()),
            ttl_secs,
            max_size,
            key_prefix: format!("t:{:016x}:", rand::random::<u64>()),
            connect_timeout_ms: 2000,
            eviction_strategy: strategy,
        }
    }

    async fn tier(strategy: EvictionStrategy, max_size: u64, ttl_secs: u64) -> WarmTier {
        WarmTier::connect(&test_cfg(strategy, max_size, ttl_secs)).await.expect("connect to test Redis")
    }

    /// An envelope whose size differs per id (padding), so size accounting is really tested.
    fn item(id: &str, created_s: i64, access_count: u64) -> WarmItem {
        let pad: String = id.repeat(50 + 10 * id.len());
        let raw = serde_json::to_vec(&serde_json::json!({"frame": {"frame_id": id}, "pad": pad})).expect("json");
        let enc = codec::encode_raw(id.to_string(), &raw, 3).expect("encode");
        WarmItem { frame_id: id.to_string(), bytes: enc.bytes, created_s, access_count }
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    async fn exists(t: &WarmTier, key: &str) -> bool {
        let mut c = t.conn.lock().expect("lock").clone();
        c.exists::<_, bool>(key).await.expect("exists")
    }

    #[tokio::test]
    async fn put_get_round_trip() {
        let t = tier(EvictionStrategy::Lru, 1 << 30, 600).await;
        let a = item("a", 100, 2);
        let b = item("b", 200, 0);
        t.put_many(&[a.clone(), b.clone()]).await.expect("put");
        let got = t.get("a").await.expect("get").expect("hit");
        assert_eq!(got, a.bytes);
        assert_eq!(codec::header_checksum(&got), codec::header_checksum(&a.bytes));
        assert!(codec::decode(&got).is_ok());
        assert_eq!(t.get("missing").await.expect("get"), None);

        // Meta hash and indexes.
        let mut c = t.conn.lock().expect("lock").clone();
        let p = &t.cfg.key_prefix;
        let meta: std::collections::HashMap<String, String> = c.hgetall(meta_key(p, "a")).await.expect("meta");
        assert_eq!(meta.get("tier").map(String::as_str), Some("2"));
        assert_eq!(meta.get("access_count").map(String::as_str), Some("3"));
        assert_eq!(meta.get("size"), Some(&a.bytes.len().to_string()));
        assert_eq!(meta.get("created_at").map(String::as_str), Some("100"));
        let lfu: Option<f64> = c.zscore(&t.keys.lfu, "a").await.expect("zscore");
        assert_eq!(lfu, Some(3.0));
        let stats = t.stats().await.expect("stats");
        assert_eq!(stats.frames, 2);
        assert_eq!(stats.bytes, (a.bytes.len() + b.bytes.len()) as u64);

        // Re-put replaces and re-accounts the size.
        let bigger = WarmItem { bytes: item("aaaa", 100, 0).bytes, ..a.clone() };
        t.put_many(std::slice::from_ref(&bigger)).await.expect("re-put");
        let stats = t.stats().await.expect("stats");
        assert_eq!(stats.frames, 2);
        assert_eq!(stats.bytes, (bigger.bytes.len() + b.bytes.len()) as u64);
        assert_eq!(t.get("a").await.expect("get"), Some(bigger.bytes.clone()));

        // Not an envelope: refused before anything is written.
        let bad = WarmItem { frame_id: "bad".into(), bytes: b"plain".to_vec(), created_s: 0, access_count: 0 };
        assert!(matches!(t.put_many(&[bad]).await, Err(TierError::InvalidFrame { .. })));
        assert!(t.flush_prefix().await.expect("flush") > 0);
    }

    #[tokio::test]
    async fn get_renews_ttl() {
        let t = tier(EvictionStrategy::Lru, 1 << 30, 10).await;
        t.put_many(&[item("x", 1, 0)]).await.expect("put");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut c = t.conn.lock().expect("lock").clone();
        let fk = frame_key(&t.cfg.key_prefix, "x");
        let mk = meta_key(&t.cfg.key_prefix, "x");
        let before: i64 = c.pttl(&fk).await.expect("pttl");
        let meta_before: i64 = c.pttl(&mk).await.expect("pttl");
        assert!(before > 0 && before <= 8_600, "pttl before {before}");
        assert!(meta_before > 0 && meta_before <= 8_600, "meta pttl before {meta_before}");
        assert!(t.get("x").await.expect("get").is_some());
        let after: i64 = c.pttl(&fk).await.expect("pttl");
        let meta_after: i64 = c.pttl(&mk).await.expect("pttl");
        assert!(after > before && after > 9_000, "pttl after {after}");
        assert!(meta_after > meta_before && meta_after > 9_000, "meta pttl after {meta_after}");
        // get_many does not renew.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let _ = t.get_many(&ids(&["x"])).await.expect("get_many");
        let later: i64 = c.pttl(&fk).await.expect("pttl");
        assert!(later < after - 900, "get_many renewed the TTL: {later} vs {after}");
        t.flush_prefix().await.expect("flush");
    }

    #[tokio::test]
    async fn get_many_and_delete_many() {
        let t = tier(EvictionStrategy::Lru, 1 << 30, 600).await;
        let items: Vec<WarmItem> = ["a", "b", "c", "d"].iter().map(|id| item(id, 1, 0)).collect();
        t.put_many(&items).await.expect("put");
        let got = t.get_many(&ids(&["b", "zz", "a", "d"])).await.expect("get_many");
        assert_eq!(
            got,
            vec![Some(items[1].bytes.clone()), None, Some(items[0].bytes.clone()), Some(items[3].bytes.clone())]
        );
        assert!(t.get_many(&[]).await.expect("empty").is_empty());

        // Many ids: spans several MGET chunks.
        let many: Vec<WarmItem> = (0..150).map(|i| item(&format!("m{i}"), i, 0)).collect();
        t.put_many(&many).await.expect("put many");
        let many_ids: Vec<String> = many.iter().map(|i| i.frame_id.clone()).collect();
        let got = t.get_many(&many_ids).await.expect("get_many");
        assert!(got.iter().zip(&many).all(|(g, i)| g.as_deref() == Some(&i.bytes[..])));

        t.delete_many(&ids(&["a", "c", "nope"])).await.expect("delete");
        t.delete_many(&many_ids).await.expect("delete many");
        let stats = t.stats().await.expect("stats");
        assert_eq!(stats.frames, 2);
        assert_eq!(stats.bytes, (items[1].bytes.len() + items[3].bytes.len()) as u64);
        assert_eq!(t.get("a").await.expect("get"), None);
        assert!(!exists(&t, &meta_key(&t.cfg.key_prefix, "a")).await);
        let mut c = t.conn.lock().expect("lock").clone();
        let lru: Vec<String> = c.zrange(&t.keys.lru, 0, -1).await.expect("zrange");
        assert_eq!(sorted(lru), ids(&["b", "d"]));
        // Deleting twice does not double-subtract.
        t.delete_many(&ids(&["b"])).await.expect("delete");
        t.delete_many(&ids(&["b"])).await.expect("delete again");
        assert_eq!(t.stats().await.expect("stats").bytes, items[3].bytes.len() as u64);
        t.flush_prefix().await.expect("flush");
    }

    /// Puts a..e, sets the cap so exactly the two expected victims must go, and checks.
    async fn check_eviction(strategy: EvictionStrategy, items: Vec<WarmItem>, touch: &[&str], victims: &[&str]) {
        let t0 = tier(strategy, 1 << 30, 600).await;
        t0.put_many(&items).await.expect("put");
        for id in touch {
            tokio::time::sleep(Duration::from_millis(5)).await;
            assert!(t0.get(id).await.expect("get").is_some());
        }
        let size = |id: &str| items.iter().find(|i| i.frame_id == id).map(|i| i.bytes.len() as u64).unwrap_or(0);
        let total: u64 = items.iter().map(|i| i.bytes.len() as u64).sum();
        let cap = total - victims.iter().map(|v| size(v)).sum::<u64>();
        // Same keys, smaller cap.
        let t = WarmTier { cfg: RedisConfig { max_size: cap, ..t0.cfg.clone() }, ..t0.clone() };
        assert_eq!(t.stats().await.expect("stats").bytes, total);
        let evicted = t.enforce_cap().await.expect("enforce_cap");
        assert_eq!(sorted(evicted), ids(victims), "strategy {}", strategy.as_str());
        let stats = t.stats().await.expect("stats");
        assert!(stats.bytes <= cap);
        assert_eq!(stats.bytes, cap);
        assert_eq!(stats.frames, (items.len() - victims.len()) as u64);
        for v in victims {
            assert!(!exists(&t, &frame_key(&t.cfg.key_prefix, v)).await);
        }
        // Already under the cap: nothing more to do.
        assert!(t.enforce_cap().await.expect("again").is_empty());
        t.flush_prefix().await.expect("flush");
    }

    #[tokio::test]
    async fn enforce_cap_lru() {
        let items = vec![item("a", 1, 0), item("b", 1, 0), item("c", 1, 0), item("d", 1, 0), item("e", 1, 0)];
        // a, b, c are read after the put, so d and e are the least recently used.
        check_eviction(EvictionStrategy::Lru, items, &["a", "b", "c"], &["d", "e"]).await;
    }

    #[tokio::test]
    async fn enforce_cap_lfu() {
        let items = vec![item("a", 1, 5), item("b", 1, 1), item("c", 1, 9), item("d", 1, 0), item("e", 1, 3)];
        // d has 0 reads and b has 1: the two least frequently used.
        check_eviction(EvictionStrategy::Lfu, items, &[], &["b", "d"]).await;
    }

    #[tokio::test]
    async fn enforce_cap_age() {
        let items =
            vec![item("a", 1000, 0), item("b", 500, 0), item("c", 3000, 0), item("d", 2000, 0), item("e", 100, 0)];
        check_eviction(EvictionStrategy::Age, items, &["e", "b"], &["b", "e"]).await;
    }

    #[tokio::test]
    async fn enforce_cap_cleans_expired_entries() {
        let t0 = tier(EvictionStrategy::Lru, 1 << 30, 600).await;
        let items = vec![item("a", 1, 0), item("b", 1, 0), item("c", 1, 0)];
        t0.put_many(&items).await.expect("put");
        for id in ["b", "c"] {
            tokio::time::sleep(Duration::from_millis(5)).await;
            t0.get(id).await.expect("get");
        }
        // a's key vanishes behind our back (as if it expired); its index entry stays.
        let mut c = t0.conn.lock().expect("lock").clone();
        let _: () = c.del(frame_key(&t0.cfg.key_prefix, "a")).await.expect("del");
        let total: u64 = items.iter().map(|i| i.bytes.len() as u64).sum();
        let cap = total - items[0].bytes.len() as u64 - items[1].bytes.len() as u64;
        let t = WarmTier { cfg: RedisConfig { max_size: cap, ..t0.cfg.clone() }, ..t0.clone() };
        let evicted = t.enforce_cap().await.expect("enforce_cap");
        assert_eq!(evicted, ids(&["b"]));
        let stats = t.stats().await.expect("stats");
        assert_eq!((stats.frames, stats.bytes), (1, items[2].bytes.len() as u64));
        assert!(!exists(&t, &meta_key(&t.cfg.key_prefix, "a")).await);
        t.flush_prefix().await.expect("flush");
    }

    #[tokio::test]
    async fn remove_orphans_keeps_live_frames() {
        let t = tier(EvictionStrategy::Lru, 1 << 30, 600).await;
        let items: Vec<WarmItem> = ["a", "b", "c", "d"].iter().map(|id| item(id, 1, 0)).collect();
        t.put_many(&items).await.expect("put");
        let p = t.cfg.key_prefix.clone();
        let mut c = t.conn.lock().expect("lock").clone();
        // Frames gone behind our back: a deleted, b unlinked with its meta too.
        let _: () = c.del(frame_key(&p, "a")).await.expect("del");
        let _: () = redis::cmd("UNLINK")
            .arg(frame_key(&p, "b"))
            .arg(meta_key(&p, "b"))
            .query_async(&mut c)
            .await
            .expect("unlink");
        // A meta hash whose frame is gone and that is in no index.
        let _: () = c.hset(meta_key(&p, "lonely"), "tier", 2).await.expect("hset");
        // Another machine's frame without our index entries: must survive.
        let _: () = c.set(frame_key(&p, "other"), b"SMT-other".to_vec()).await.expect("set");
        // Drift the running total; remove_orphans recomputes it.
        let _: () = c.set(&t.keys.bytes, 1).await.expect("set");

        let removed = t.remove_orphans().await.expect("remove_orphans");
        assert_eq!(removed, 3);
        let stats = t.stats().await.expect("stats");
        assert_eq!(stats.frames, 2);
        assert_eq!(stats.bytes, (items[2].bytes.len() + items[3].bytes.len()) as u64);
        assert!(!exists(&t, &meta_key(&p, "a")).await);
        assert!(!exists(&t, &meta_key(&p, "lonely")).await);
        assert!(exists(&t, &frame_key(&p, "other")).await);
        assert!(exists(&t, &frame_key(&p, "c")).await && exists(&t, &meta_key(&p, "c")).await);
        let lru: Vec<String> = c.zrange(&t.keys.lru, 0, -1).await.expect("zrange");
        assert_eq!(sorted(lru), ids(&["c", "d"]));
        assert_eq!(t.remove_orphans().await.expect("again"), 0);
        t.flush_prefix().await.expect("flush");
        assert!(!exists(&t, &frame_key(&p, "other")).await);
    }

    #[tokio::test]
    async fn stats_fields() {
        let t = tier(EvictionStrategy::Lru, 1 << 30, 600).await;
        let empty = t.stats().await.expect("stats");
        assert_eq!((empty.frames, empty.bytes), (0, 0));
        t.put_many(&[item("s", 1, 0)]).await.expect("put");
        let s = t.stats().await.expect("stats");
        assert_eq!(s.frames, 1);
        assert_eq!(s.bytes, item("s", 1, 0).bytes.len() as u64);
        assert!(s.used_memory.unwrap_or(0) > 0);
        assert!(s.maxmemory.is_some());
        assert!(s.version.chars().next().is_some_and(|c| c.is_ascii_digit()), "version {:?}", s.version);
        assert!(s.latency_us < 1_000_000);
        assert!(t.ping().await.expect("ping") < Duration::from_secs(1));
        let json = serde_json::to_value(&s).expect("serialize");
        assert!(json.get("latency_us").is_some());
        // frame, meta, three sorted sets, the size hash and the total.
        assert_eq!(t.flush_prefix().await.expect("flush"), 7);
    }

    #[tokio::test]
    async fn connect_to_closed_port_fails_fast() {
        let mut cfg = test_cfg(EvictionStrategy::Lru, 1 << 30, 600);
        cfg.connection_string = Some("redis://127.0.0.1:1".into());
        let start = Instant::now();
        let err = WarmTier::connect(&cfg).await.expect_err("must fail");
        assert!(err.is_unavailable(), "{err:?}");
        assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    }

    #[tokio::test]
    async fn connect_to_silent_server_times_out() {
        // Accepts TCP connections but never answers: connect must give up after its timeout.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                held.push(sock);
            }
        });
        let mut cfg = test_cfg(EvictionStrategy::Lru, 1 << 30, 600);
        cfg.connection_string = Some(format!("redis://127.0.0.1:{port}"));
        cfg.connect_timeout_ms = 500;
        let start = Instant::now();
        let err = WarmTier::connect(&cfg).await.expect_err("must fail");
        assert!(err.is_unavailable(), "{err:?}");
        assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
        server.abort();
    }

    /// A TCP proxy in front of the test Redis that a test can cut (server died), restart on the
    /// same port (server came back) or pause (server hangs: bytes are swallowed, sockets stay open).
    struct Proxy {
        port: u16,
        paused: std::sync::Arc<std::sync::atomic::AtomicBool>,
        tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    }

    impl Proxy {
        async fn start(port: u16) -> Proxy {
            let sock = tokio::net::TcpSocket::new_v4().expect("socket");
            sock.set_reuseaddr(true).expect("reuseaddr");
            sock.bind(std::net::SocketAddr::from(([127, 0, 0, 1], port))).expect("bind");
            let listener = sock.listen(64).expect("listen");
            let port = listener.local_addr().expect("addr").port();
            let upstream = redis_url().trim_start_matches("redis://").trim_end_matches('/').to_string();
            let paused = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let tasks = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let (p, t) = (paused.clone(), tasks.clone());
            let accept = tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream.as_str()).await else { continue };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let up = tokio::spawn(Self::pump(cr, sw, p.clone()));
                    let down = tokio::spawn(Self::pump(sr, cw, p.clone()));
                    t.lock().expect("lock").extend([up, down]);
                }
            });
            tasks.lock().expect("lock").push(accept);
            Proxy { port, paused, tasks }
        }

        async fn pump(
            r: tokio::net::tcp::OwnedReadHalf,
            w: tokio::net::tcp::OwnedWriteHalf,
            paused: std::sync::Arc<std::sync::atomic::AtomicBool>,
        ) {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                if r.readable().await.is_err() {
                    return;
                }
                let n = match r.try_read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(_) => return,
                };
                if paused.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                let mut off = 0;
                while off < n {
                    if w.writable().await.is_err() {
                        return;
                    }
                    match w.try_write(&buf[off..n]) {
                        Ok(k) => off += k,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                        Err(_) => return,
                    }
                }
            }
        }

        /// Closes the listener and every proxied connection.
        async fn stop(&self) {
            for t in self.tasks.lock().expect("lock").drain(..) {
                t.abort();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test]
    async fn server_death_fails_fast_and_reconnects() {
        let proxy = Proxy::start(0).await;
        let mut cfg = test_cfg(EvictionStrategy::Lru, 1 << 30, 600);
        cfg.connection_string = Some(format!("redis://127.0.0.1:{}", proxy.port));
        let t = WarmTier::connect(&cfg).await.expect("connect through proxy");
        let x = item("x", 1, 0);
        t.put_many(std::slice::from_ref(&x)).await.expect("put");

        // The server dies: calls fail with TierUnavailable, quickly.
        proxy.stop().await;
        let start = Instant::now();
        let err = t.get("x").await.expect_err("server is gone");
        assert!(err.is_unavailable(), "{err:?}");
        let err = t.stats().await.expect_err("server is gone");
        assert!(err.is_unavailable(), "{err:?}");
        assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());

        // It comes back on the same address: the manager reconnects by itself.
        let again = Proxy::start(proxy.port).await;
        assert_eq!(t.get("x").await.expect("reconnected"), Some(x.bytes.clone()));

        // It hangs (accepts bytes, never answers): calls time out with TierUnavailable.
        again.paused.store(true, std::sync::atomic::Ordering::SeqCst);
        let start = Instant::now();
        let err = t.get_many(&ids(&["x"])).await.expect_err("server hangs");
        assert!(err.is_unavailable(), "{err:?}");
        assert!(start.elapsed() < t.op_timeout + Duration::from_secs(1), "took {:?}", start.elapsed());
        again.paused.store(false, std::sync::atomic::Ordering::SeqCst);
        let mut ok = false;
        for _ in 0..3 {
            if t.get("x").await.is_ok() {
                ok = true;
                break;
            }
        }
        assert!(ok, "no recovery after the server answered again");
        t.flush_prefix().await.expect("flush");
        again.stop().await;
    }

    #[test]
    fn key_helpers() {
        assert_eq!(frame_key("sm:", "f1"), "sm:frame:{f1}");
        assert_eq!(meta_key("sm:", "f1"), "sm:meta:{f1}");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
        assert_eq!(info_field("# Server\r\nredis_version:7.0.15\r\n", "redis_version"), Some("7.0.15"));
        assert_eq!(info_field("maxmemory_policy:noeviction\r\nmaxmemory:0\r\n", "maxmemory"), Some("0"));
    }
}
