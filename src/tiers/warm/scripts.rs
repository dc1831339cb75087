//! The Lua scripts that change our keys, so that every change of a frame, its meta hash, the indexes
//! and the running byte total is one atomic step (see the module docs of `warm`).
//!
//! Every script works on one bucket (see `keys::Layout`): KEYS[1..6] are its index keys
//! (lru, lfu, age, size, bytes, exp) and ARGV[1..4] the parts of its frame and meta key names, so a
//! script can remove an eviction candidate or an expired entry it finds in the index. On Redis
//! Cluster all of these are in the bucket's slot. Times come from the server's clock (`TIME`), so
//! machines with skewed clocks agree on expiry deadlines.

use std::sync::LazyLock;

use redis::Script;

/// Shared helpers: `now_ms`, `drop_id`, `trim` (expired entries out of the index) and `make_room`
/// (evict by a strategy's sorted set until a size fits under the cap).
const PRELUDE: &str = r#"
local FP, FS, MP, MS = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function total()
  return tonumber(redis.call('GET', KEYS[5])) or 0
end
-- Removes an id's frame key, meta hash and index entries and subtracts its size.
-- Returns: 1 if the frame key existed, and whether anything at all was removed.
local function drop_id(id)
  local had = redis.call('UNLINK', FP .. id .. FS)
  local touched = had + redis.call('DEL', MP .. id .. MS)
  local old = redis.call('HGET', KEYS[4], id)
  if old then
    touched = touched + redis.call('HDEL', KEYS[4], id)
    local n = tonumber(old) or 0
    if n > 0 and redis.call('DECRBY', KEYS[5], n) < 0 then redis.call('SET', KEYS[5], 0) end
  end
  touched = touched + redis.call('ZREM', KEYS[1], id) + redis.call('ZREM', KEYS[2], id)
    + redis.call('ZREM', KEYS[3], id) + redis.call('ZREM', KEYS[6], id)
  return had, touched > 0
end
-- Index entries whose deadline passed: a key still alive (renewed elsewhere) gets its deadline
-- corrected, a key that is gone leaves the index. Returns how many left.
local function trim(now, limit)
  local ids = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now, 'LIMIT', 0, limit)
  local n = 0
  for _, id in ipairs(ids) do
    local pttl = redis.call('PTTL', FP .. id .. FS)
    if pttl > 0 then
      redis.call('ZADD', KEYS[6], now + pttl, id)
    elseif pttl == -1 then
      redis.call('ZREM', KEYS[6], id)
    else
      drop_id(id)
      n = n + 1
    end
  end
  return n
end
-- Evicts the lowest-scored ids of sorted set `z` until `need` more bytes fit under `cap`.
-- Appends the ids whose frame key was evicted to `out`. Returns whether `need` now fits.
local function make_room(z, cap, need, out)
  local healed = false
  for _ = 1, 100000 do
    if total() + need <= cap then return true end
    local c = redis.call('ZRANGE', z, 0, 31)
    if #c == 0 then
      if healed then return false end
      -- Over the cap with nothing to evict: the total drifted. Recompute it once.
      local t = 0
      for _, v in ipairs(redis.call('HVALS', KEYS[4])) do t = t + (tonumber(v) or 0) end
      redis.call('SET', KEYS[5], t)
      healed = true
    end
    for _, id in ipairs(c) do
      if total() + need <= cap then return true end
      local had = drop_id(id)
      if had == 1 then out[#out + 1] = id end
    end
  end
  return total() + need <= cap
end
"#;

fn with_prelude(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{body}"))
}

/// Put frames of one bucket, keeping the bucket under its cap. KEYS: the 6 index keys, then
/// (frame, meta) per item. ARGV: the 4 key parts, ttl, cap, strategy (1 = lru, 2 = lfu, 3 = age),
/// then (id, bytes, created_s, access_count, version) per item.
///
/// Before each item is written, expired entries are trimmed and the strategy's lowest-scored
/// frames are evicted until the item fits, so the total never exceeds the cap, not even inside
/// the script. An item larger than the cap is not stored (its old copy is removed). The LFU count
/// keeps the larger of the given count and the one already in Redis, so a re-put from one machine
/// does not forget reads made through another. With no items it only trims and evicts down to
/// the cap (`enforce_cap`). A frame whose copy in Redis has a higher version (another machine
/// wrote it) is left as it is (an unknown version is 0): the archive's upsert has the same rule. Returns {evicted ids, ids not stored, ids kept newer}.
pub(super) static PUT_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    with_prelude(
        r#"
local ttl = tonumber(ARGV[5])
local cap = tonumber(ARGV[6])
local z = KEYS[tonumber(ARGV[7])]
local now = now_ms()
local now_s = math.floor(now / 1000)
trim(now, 1000)
local evicted, skipped, newer = {}, {}, {}
local n = (#KEYS - 6) / 2
if n == 0 then make_room(z, cap, 0, evicted) end
for i = 1, n do
  local fk = KEYS[5 + 2 * i]
  local mk = KEYS[6 + 2 * i]
  local a = 7 + (i - 1) * 5
  local id = ARGV[a + 1]
  local data = ARGV[a + 2]
  local created = ARGV[a + 3]
  local count = tonumber(ARGV[a + 4]) or 0
  local version = tonumber(ARGV[a + 5]) or 0
  local size = string.len(data)
  local seen = tonumber(redis.call('ZSCORE', KEYS[2], id)) or 0
  if seen > count then count = seen end
  local have = tonumber(redis.call('HGET', mk, 'version'))
  if have and have > version and redis.call('EXISTS', fk) == 1 then
    newer[#newer + 1] = id
  else
    -- The old copy leaves first (and is accounted again below).
    drop_id(id)
    if size > cap or not make_room(z, cap, size, evicted) then
      skipped[#skipped + 1] = id
    else
      redis.call('SET', fk, data, 'EX', ttl)
      redis.call('HSET', mk, 'tier', 2, 'accessed_at', now_s, 'access_count', count,
                 'size', size, 'created_at', created, 'version', version)
      redis.call('EXPIRE', mk, ttl)
      redis.call('ZADD', KEYS[1], now, id)
      redis.call('ZADD', KEYS[2], count, id)
      redis.call('ZADD', KEYS[3], created, id)
      redis.call('HSET', KEYS[4], id, size)
      redis.call('INCRBY', KEYS[5], size)
      redis.call('ZADD', KEYS[6], now + ttl * 1000, id)
    end
  end
end
return {evicted, skipped, newer}
"#,
    )
});

/// Read one frame, renewing its TTL. KEYS: the 6 index keys, frame, meta. ARGV: the 4 key parts,
/// ttl, id. The meta hash and index scores are only touched when they exist: bumping a missing
/// meta hash would create a key without a TTL, and a missing index entry means the frame is not
/// accounted (we must not half-create one).
pub(super) static GET_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    with_prelude(
        r#"
local ttl = tonumber(ARGV[5])
local id = ARGV[6]
local v = redis.call('GETEX', KEYS[7], 'EX', ttl)
if not v then return false end
local now = now_ms()
if redis.call('EXISTS', KEYS[8]) == 1 then
  redis.call('HINCRBY', KEYS[8], 'access_count', 1)
  redis.call('HSET', KEYS[8], 'accessed_at', math.floor(now / 1000))
  redis.call('EXPIRE', KEYS[8], ttl)
end
redis.call('ZADD', KEYS[1], 'XX', now, id)
redis.call('ZADD', KEYS[2], 'XX', 'INCR', 1, id)
redis.call('ZADD', KEYS[6], 'XX', now + ttl * 1000, id)
return v
"#,
    )
});

/// Delete ids of one bucket. KEYS: the 6 index keys. ARGV: the 4 key parts, mode, ids...
/// mode `force` removes everything; mode `orphan` only cleans ids whose frame key is gone and
/// leaves a live frame (and its entries) untouched - the check and the cleanup are atomic, so a
/// frame another machine writes meanwhile is never lost.
/// Returns one flag per id: 0 = nothing removed, 1 = only meta/index entries removed,
/// 2 = the frame key itself was removed.
pub(super) static DELETE_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    with_prelude(
        r#"
local orphan_only = ARGV[5] == 'orphan'
local out = {}
for i = 6, #ARGV do
  local id = ARGV[i]
  local r = 0
  if not (orphan_only and redis.call('EXISTS', FP .. id .. FS) == 1) then
    local had, touched = drop_id(id)
    if had == 1 then r = 2 elseif touched then r = 1 end
  end
  out[#out + 1] = r
end
return out
"#,
    )
});

/// Trim expired entries (at most ARGV[5]) and report the bucket's totals. KEYS: the 6 index keys.
/// ARGV: the 4 key parts, limit. Returns {frames, bytes, trimmed}.
pub(super) static STATS_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    with_prelude(
        r#"
local trimmed = trim(now_ms(), tonumber(ARGV[5]))
return {redis.call('HLEN', KEYS[4]), total(), trimmed}
"#,
    )
});

/// Recompute the running total from the size hash. KEYS: the 6 index keys. ARGV: the 4 key parts.
pub(super) static RECONCILE_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    with_prelude(
        r#"
local t = 0
for _, v in ipairs(redis.call('HVALS', KEYS[4])) do t = t + (tonumber(v) or 0) end
redis.call('SET', KEYS[5], t)
return t
"#,
    )
});
