// The Redis cap holds on every write (not only in compact()), eviction follows
// policies.evictionStrategy, evicted frames stay retrievable from their durable copy, and keys that
// expire by TTL leave the size index. Real Redis and PostgreSQL; each test its own prefix/schema.

import * as crypto from 'crypto'
import { TierManager } from '../index'
import { fileRegistry, redisCli, redisFrameIds, redisKeys, simpleBundle, sleep } from './helpers/gen'

const { env, open } = fileRegistry()
const MB = 1024 * 1024

/** A closed frame with `kb` KB of incompressible digest text. */
function bigBundle(id: string, kb: number, createdAt: number) {
  return simpleBundle(id, {
    state: 'closed',
    createdAt,
    closedAt: createdAt + 1,
    digest: crypto.randomBytes(kb * 768).toString('base64'),
  })
}

const idxBytes = (prefix: string): number => parseInt(redisCli(['GET', `${prefix}idx:bytes`]).trim() || '0', 10)

/** Bytes really held by our frame keys (STRLEN of each), whatever the index says. */
function realBytes(prefix: string): number {
  let n = 0
  for (const k of redisKeys(prefix + 'frame:')) n += parseInt(redisCli(['STRLEN', k]).trim(), 10) || 0
  return n
}

async function retrieveAll(m: TierManager, ids: string[]): Promise<string[]> {
  const missing: string[] = []
  for (const id of ids) {
    const b = await m.retrieve(id, { promote: false })
    if (!b || b.frame.frame_id !== id) missing.push(id)
  }
  return missing
}

test('a 1 MB cap holds while 10 MB of frames move to warm; every frame stays retrievable', async () => {
  const e = env()
  const cap = MB
  const m = await open({ ...e.config, tiers: { ...e.config.tiers, redis: { ...e.config.tiers!.redis, maxSize: cap } } })
  const t0 = Date.now() - 86_400_000
  const bundles = Array.from({ length: 1000 }, (_, i) => bigBundle(`cap-${String(i).padStart(4, '0')}`, 10, t0 + i))
  const ids = bundles.map((b) => b.frame.frame_id)
  for (let i = 0; i < bundles.length; i += 100) await m.storeMany(bundles.slice(i, i + 100))

  // Sample the index total while the run writes (the run works on Rust threads).
  let maxSeen = 0
  let samples = 0
  const timer = setInterval(() => {
    maxSeen = Math.max(maxSeen, idxBytes(e.prefix))
    samples++
  }, 15)
  const started = Date.now()
  const rep = await m.migrate({ toTier: 'warm' })
  const ms = Date.now() - started
  clearInterval(timer)
  expect(rep.failed).toEqual([])
  expect(rep.moved).toHaveLength(1000)
  expect(rep.bytesAfter).toBeGreaterThan(7 * MB)

  const st = await m.status()
  const redis = st.backends.redis as any
  maxSeen = Math.max(maxSeen, idxBytes(e.prefix), redis.bytes)
  const real = realBytes(e.prefix)
  const kept = redisFrameIds(e.prefix).size
  console.log(
    `cap ${cap} B: max idx:bytes seen ${maxSeen} over ${samples} samples during a ${ms} ms run; ` +
      `after: index ${redis.bytes} B, real ${real} B, ${kept} frames kept, ${1000 - kept} evicted`,
  )
  expect(samples).toBeGreaterThan(3)
  expect(maxSeen).toBeLessThanOrEqual(cap)
  expect(real).toBeLessThanOrEqual(cap)
  expect(redis.bytes).toBe(real)
  expect(redis.frames).toBe(kept)
  expect(kept).toBeGreaterThan(50)
  expect(kept).toBeLessThan(1000)
  // AGE is not configured: LRU keeps the most recently written frames.
  expect(redisFrameIds(e.prefix).has(ids[999])).toBe(true)

  // tier_metadata still says warm; every frame is served (from Redis or its archived copy).
  expect(st.tiers.warm.frames).toBe(1000)
  expect(await retrieveAll(m, ids)).toEqual([])
  // verify() sees the evicted copies as missing warm copies, nothing worse.
  const v = await m.verify({})
  expect(v.findings.filter((f) => f.kind !== 'missing' || f.tier !== 'warm')).toEqual([])
}, 120_000)

test('evictionStrategy AGE on every write: the oldest frames go first', async () => {
  const e = env()
  const cfg = {
    ...e.config,
    tiers: { ...e.config.tiers, redis: { ...e.config.tiers!.redis, maxSize: 100 * 1024 } },
    policies: { ...e.config.policies, evictionStrategy: 'AGE' as const },
  }
  const m = await open(cfg)
  const t0 = Date.now() - 86_400_000
  // Stored newest first, so write order and age disagree.
  const bundles = Array.from({ length: 40 }, (_, i) => bigBundle(`age-${String(i).padStart(2, '0')}`, 10, t0 + i * 1000)).reverse()
  await m.storeMany(bundles)
  const rep = await m.migrate({ toTier: 'warm' })
  expect(rep.failed).toEqual([])
  const kept = [...redisFrameIds(e.prefix)].sort()
  expect(kept.length).toBeGreaterThan(3)
  expect(kept.length).toBeLessThan(40)
  // Exactly the newest ones survive.
  const newest = Array.from({ length: 40 }, (_, i) => `age-${String(i).padStart(2, '0')}`).slice(40 - kept.length)
  expect(kept).toEqual(newest)
  expect(idxBytes(e.prefix)).toBeLessThanOrEqual(100 * 1024)
}, 60_000)

test('keys that expire by TTL leave idx:size / idx:bytes; the frames are still served', async () => {
  const e = env()
  const m = await open({ ...e.config, tiers: { ...e.config.tiers, redis: { ...e.config.tiers!.redis, ttl: 1 } } })
  const bundles = Array.from({ length: 20 }, (_, i) => bigBundle(`ttl-${i}`, 2, Date.now() - 86_400_000))
  await m.storeMany(bundles)
  expect((await m.migrate({ toTier: 'warm' })).moved).toHaveLength(20)
  const before = (await m.status()).backends.redis as any
  expect(before.frames).toBe(20)
  expect(before.bytes).toBeGreaterThan(0)
  await sleep(1500)
  const after = (await m.status()).backends.redis as any
  expect({ frames: after.frames, bytes: after.bytes }).toEqual({ frames: 0, bytes: 0 })
  expect(parseInt(redisCli(['HLEN', `${e.prefix}idx:size`]).trim(), 10)).toBe(0)
  expect(parseInt(redisCli(['ZCARD', `${e.prefix}idx:lru`]).trim(), 10)).toBe(0)
  expect(idxBytes(e.prefix)).toBe(0)
  expect(await retrieveAll(m, bundles.map((b) => b.frame.frame_id))).toEqual([])
}, 60_000)
