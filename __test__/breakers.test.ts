// Circuit breakers against dead backends of the test's own: a TCP listener that accepts and never
// answers (black hole), one that resets every connection, and a redis-server the test kills.
// Frames are warm (Redis + the PostgreSQL archive); with Redis dead the archive serves them. The
// extra cost of the dead Redis is measured against the same reads with Redis disabled: before
// the breaker opens (< 100 ms), after it opens (asserted as a median under 5 ms; the figures are
// printed).

import { TierManager } from '../index'
import { fileRegistry, genBundles, PG_URL, rejectionOf, sleep, startProxy, startRedis, TestEnv } from './helpers/gen'
import { listener, median } from './helpers/net'

const reg = fileRegistry()
const figures: Record<string, unknown> = {}
afterAll(() => console.log('breaker figures (ms):', JSON.stringify(figures)))

async function timed<T>(f: () => Promise<T>): Promise<[number, T]> {
  const t = process.hrtime.bigint()
  const v = await f()
  return [Number(process.hrtime.bigint() - t) / 1e6, v]
}

/** A file whose closed frames are warm (in Redis at `redisUrl` and in the archive). */
async function warmFile(redisUrl?: string): Promise<{ e: TestEnv; ids: string[] }> {
  const e = reg.env({ redisUrl })
  const m = await TierManager.open(e.config)
  const gen = genBundles(60, { seed: 31, idPrefix: 'brk' })
  await m.storeMany(gen.bundles)
  const r = await m.migrate({ toTier: 'warm' })
  expect(r.failed).toEqual([])
  await m.close()
  return { e, ids: [...gen.closed].slice(0, 30) }
}

/** Median read of warm frames served by the archive, Redis disabled: the baseline. */
async function baseline(e: TestEnv, ids: string[]): Promise<number> {
  const m = await TierManager.open({ ...e.config, tiers: { ...e.config.tiers, redis: { enabled: false } } })
  const ts: number[] = []
  for (const id of ids) ts.push((await timed(() => m.retrieve(id, { promote: false })))[0])
  await m.close()
  return median(ts)
}

async function untilState(m: TierManager, state: string, ms: number): Promise<any> {
  const deadline = Date.now() + ms
  for (;;) {
    const s = await m.status()
    if (s.backends.redis.breaker?.state === state) return s
    if (Date.now() > deadline) throw new Error(`breaker not ${state}: ${JSON.stringify(s.backends.redis)}`)
    await sleep(20)
  }
}

async function deadRedisCase(name: string, deadUrl: string, e: TestEnv, ids: string[]) {
  const base = await baseline(e, ids)
  const [openMs, m] = await timed(() => reg.open(e.with({ redisUrl: deadUrl })))
  // Before the breaker opens: the first read of a warm frame, Redis's first connect under way.
  const [first, got] = await timed(() => m.retrieve(ids[0], { promote: false }))
  expect(got).not.toBeNull()
  const s = await untilState(m, 'open', 5000)
  expect(s.backends.redis.reachable).toBe(false)
  expect(s.backends.redis.breaker.failures).toBeGreaterThan(0)
  expect(s.backends.redis.breaker.nextProbeAt).toBeGreaterThan(Date.now() - 60_000)
  expect(s.backends.redis.breaker.lastError).toMatch(/redis/)
  expect(s.backends.postgres.breaker.state).toBe('closed')
  const ts: number[] = []
  for (const id of ids) {
    const [t, b] = await timed(() => m.retrieve(id, { promote: false }))
    expect(b).not.toBeNull()
    ts.push(t)
  }
  const after = median(ts)
  figures[name] = { open: +openMs.toFixed(2), baseline: +base.toFixed(3), beforeOpenExtra: +(first - base).toFixed(2),
    afterOpenMedianExtra: +(after - base).toFixed(3) }
  expect(openMs).toBeLessThan(500)
  expect(first - base).toBeLessThan(100)
  expect(after - base).toBeLessThan(5)
  return m
}

test('black hole: open() does not wait, reads cost < 100 ms before the breaker opens and ~0 after', async () => {
  const hole = await listener('blackhole')
  reg.defer(() => hole.close())
  const { e, ids } = await warmFile()
  await deadRedisCase('blackhole', `redis://127.0.0.1:${hole.port}`, e, ids)
  expect(hole.accepted()).toBeGreaterThan(0)
})

test('connection reset: the breaker opens at once, reads are served by the archive', async () => {
  const rst = await listener('reset')
  reg.defer(() => rst.close())
  const { e, ids } = await warmFile()
  await deadRedisCase('reset', `redis://127.0.0.1:${rst.port}`, e, ids)
})

test('stopped server: the breaker opens, backs off, and closes again once the server is back', async () => {
  const own = await startRedis()
  const { e, ids } = await warmFile(own.url)
  await own.kill()
  const m = await deadRedisCase('stopped', own.url, e, ids)
  const s1 = (await m.status()).backends.redis.breaker
  // Back on the same port: a later probe (after the backoff) closes the breaker.
  const again = await startRedis(own.port)
  reg.defer(() => again.kill())
  const s = await untilState(m, 'closed', 40_000)
  expect(s.backends.redis.reachable).toBe(true)
  expect(s.backends.redis.breaker.failures).toBe(0)
  expect(s1?.failures).toBeGreaterThan(0)
})

test('both remotes black holes: open() returns at once and the store runs local-only', async () => {
  const hole = await listener('blackhole')
  reg.defer(() => hole.close())
  const e = reg.env()
  const url = `postgres://postgres:postgres@127.0.0.1:${hole.port}/test`
  const [openMs, m] = await timed(() => reg.open(e.with({ redisUrl: `redis://127.0.0.1:${hole.port}`, pgUrl: url })))
  figures.openBothBlackHoles = +openMs.toFixed(2)
  expect(openMs).toBeLessThan(500)
  const gen = genBundles(5, { seed: 32, idPrefix: 'brkl' })
  const [storeMs] = await timed(() => m.storeMany(gen.bundles))
  figures.storeBothBlackHoles = +storeMs.toFixed(2)
  expect(storeMs).toBeLessThan(500)
  const [readMs, b] = await timed(() => m.retrieve(gen.bundles[0].frame.frame_id))
  expect(b).not.toBeNull()
  expect(readMs).toBeLessThan(50)
})

test('a PostgreSQL that stops answering on a live connection: past queryTimeout a read fails ERR_TIER_UNAVAILABLE, the breaker opens, and it closes once PostgreSQL answers', async () => {
  const proxy = await startProxy(parseInt(/:(\d+)\//.exec(PG_URL)?.[1] ?? '5432', 10))
  reg.defer(() => proxy.kill())
  const e = reg.env({ pgUrl: proxy.url(PG_URL) })
  const cfg = {
    ...e.config,
    tiers: { ...e.config.tiers, redis: { enabled: false }, postgres: { ...e.config.tiers!.postgres, queryTimeout: 500 } },
  }
  const m = await reg.open(cfg)
  const gen = genBundles(20, { seed: 33, idPrefix: 'brkq' })
  await m.storeMany(gen.bundles)
  expect((await m.migrate({ toTier: 'cold' })).failed).toEqual([])
  const ids = [...gen.closed].slice(0, 4)
  expect(await m.retrieve(ids[0], { promote: false })).not.toBeNull()
  // Connected, then silent: every answer held back 3 s (the connection stays open).
  proxy.delay(3000)
  const [ms, err] = await timed(() => rejectionOf(m.retrieve(ids[1], { promote: false })))
  figures.queryTimeout = { firstFailure: +ms.toFixed(1) }
  expect(err).toMatchObject({ code: 'ERR_TIER_UNAVAILABLE' })
  expect(ms).toBeGreaterThan(400)
  expect(ms).toBeLessThan(1500)
  const s = await m.status()
  expect(s.backends.postgres.breaker?.state).toBe('open')
  // Open: the next read is refused at once, not after another deadline.
  const [ms2, err2] = await timed(() => rejectionOf(m.retrieve(ids[2], { promote: false })))
  expect(err2).toMatchObject({ code: 'ERR_TIER_UNAVAILABLE' })
  expect(ms2).toBeLessThan(100)
  // Answering again: a probe builds a fresh pool and the frames are served.
  proxy.delay(0)
  const deadline = Date.now() + 40_000
  while ((await m.retrieve(ids[3], { promote: false }).catch(() => null)) === null) {
    if (Date.now() > deadline) throw new Error(`not served again: ${JSON.stringify((await m.status()).backends.postgres)}`)
    await sleep(50)
  }
  expect((await m.status()).backends.postgres.breaker?.state).toBe('closed')
  for (const id of ids) expect(await m.retrieve(id, { promote: false })).not.toBeNull()
  ;(figures.queryTimeout as any).refusedWhileOpen = +ms2.toFixed(2)
}, 60_000)
