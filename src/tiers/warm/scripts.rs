//! The Lua scripts that change our keys, so that every change of a frame, its meta hash, the indexes
//! and the running byte total is one atomic step (see the module docs of `warm`).

use std::sync::LazyLock;

use redis::Script;

/// Put a chunk of frames. KEYS: lru, lfu, age, size, bytes, then (frame, meta) per item.
/// ARGV: ttl, now_ms, now_s, then (id, bytes, created_s, access_count) per item.
/// The LFU count keeps the larger of the given count and the one already in Redis, so a re-put
/// from one machine does not forget reads made through another.
pub(super) static PUT_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
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
pub(super) static GET_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
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
pub(super) static DELETE_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
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
pub(super) static RECONCILE_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local total = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do total = total + (tonumber(v) or 0) end
redis.call('SET', KEYS[2], total)
return total
"#,
    )
});
