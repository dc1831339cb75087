// Bulk runs as operations (issue 10): a 20,000-frame run SIGKILLed at 5 seeded points and resumed
// each time; verify and repair against copies damaged behind our back; rollback; the rate limit;
// the memory budget; cancel and resume; progress in order. Real SQLite, Redis and PostgreSQL.

import { spawn } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import { createClient, RESP_TYPES } from 'redis'

import { TierManager } from '../index'
import type { FrameBundle, MigrationProgress, TierConfig } from '../index'
import {
  archiveRows,
  fileRegistry,
  genBundles,
  idOf,
  mismatches,
  normalized,
  psql,
  REDIS_URL,
  redisKeys,
  simpleBundle,
  sqliteAll,
  freePort,
  startProxy,
  startRedis,
  sqliteFrames,
} from './helpers/gen'

const reg = fileRegistry()
const CHILD = path.join(__dirname, 'helpers', 'crash-child.js')

/** The kill points come from a seed (testkit's mulberry32). */
const { rng } = require('../testkit/frames.js') as typeof import('../testkit/frames')

interface ChildOut {
  killed: boolean
  lines: string[]
  code: number | null
  stderr: string
}

/** Runs the child; with `killAt`, SIGKILLs it as soon as a progress line reports `done >= killAt`. */
function child(args: string[], killAt?: number): Promise<ChildOut> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [CHILD, ...args], { cwd: path.dirname(CHILD), stdio: ['ignore', 'pipe', 'pipe'] })
    let buf = ''
    let stderr = ''
    let killed = false
    const lines: string[] = []
    p.stdout.on('data', (d) => {
      buf += d
      let i
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i)
        buf = buf.slice(i + 1)
        lines.push(line)
        if (killAt !== undefined && !killed && line.startsWith('progress ')) {
          const pr = JSON.parse(line.slice(9))
          if (pr.done >= killAt) killed = p.kill('SIGKILL')
        }
      }
    })
    p.stderr.on('data', (d) => (stderr += d))
    p.on('error', reject)
    p.on('exit', (code) => resolve({ killed, lines, code, stderr }))
  })
}

test('a 20,000-frame run SIGKILLed at 5 seeded points and resumed each time moves every frame exactly once; verify is clean', async () => {
  const N = 20_000
  const e = reg.env({ policies: { batchSize: 250 } })
  const configPath = path.join(e.dir, 'config.json')
  fs.writeFileSync(configPath, JSON.stringify(e.config))
  const gen = { seed: 1010, idPrefix: `k${e.prefix.slice(4, 10)}`, large: 0, baseSeconds: Math.floor(Date.now() / 1000) - 30 * 86400 }
  const stored = await child([configPath, 'store', String(N), JSON.stringify(gen)])
  expect({ code: stored.code, out: stored.lines, err: stored.stderr }).toMatchObject({ code: 0, out: [`stored ${N}`] })
  const { bundles, closed } = genBundles(N, gen)

  // Kill points: 5 seeded positions spread over the run (each after the previous one's).
  const r = rng(20261201)
  const points = Array.from({ length: 5 }, (_, i) => Math.floor(((i + 0.2 + 0.6 * r()) / 6) * closed.size))
  let runId = ''
  let out = await child([configPath, 'start', JSON.stringify({ toTier: 'cold', checkpointEvery: 1000 })], points[0])
  for (let k = 0; k < points.length; k++) {
    expect({ k, killed: out.killed, code: out.code, err: out.stderr }).toEqual({ k, killed: true, code: null, err: '' })
    const started = out.lines.find((l) => l.startsWith('started ')) ?? JSON.parse(out.lines.find((l) => l.startsWith('progress '))!.slice(9)).runId
    runId = runId || (started.startsWith('started ') ? started.slice(8) : started)
    out = await child([configPath, 'resume', runId], points[k + 1])
  }
  expect({ code: out.code, err: out.stderr }).toEqual({ code: 0, err: '' })
  const done = JSON.parse(out.lines.find((l) => l.startsWith('done '))!.slice(5))
  expect(done).toMatchObject({ runId, state: 'done', done: closed.size, failed: 0, total: N })

  // Progress within one child is in order and ends at the total.
  const prog = out.lines.filter((l) => l.startsWith('progress ')).map((l) => JSON.parse(l.slice(9)) as MigrationProgress)
  for (let i = 1; i < prog.length; i++) expect(prog[i].done).toBeGreaterThanOrEqual(prog[i - 1].done)
  expect(prog[prog.length - 1]).toMatchObject({ state: 'done', done: closed.size, total: N })

  // Exactly once: one finished move per closed frame in the journal for this run, none for others.
  const rows = sqliteAll(e.dbPath, `SELECT frame_id AS id, count(*) AS n FROM tier_journal WHERE run_id = '${runId}' AND step = 'done' GROUP BY frame_id`)
  const twice = rows.filter((x: any) => x.n !== 1)
  expect({ moved: rows.length, twice: twice.slice(0, 5) }).toEqual({ moved: closed.size, twice: [] })
  for (const x of rows) expect(closed.has(x.id)).toBe(true)

  const m = await reg.open(e.config)
  const v = await m.verify()
  expect({ clean: v.clean, findings: v.findings.slice(0, 5), checked: v.checked }).toEqual({ clean: true, findings: [], checked: N })
  // Every frame is where it should be, and a sample comes back byte for byte.
  const tiers = sqliteFrames(e.dbPath)
  for (const b of bundles) expect(tiers.get(idOf(b))?.tier).toBe(closed.has(idOf(b)) ? 'cold' : 'hot')
  const sample = new Map<string, unknown>()
  for (let i = 0; i < N; i += 37) sample.set(idOf(bundles[i]), normalized(bundles[i]))
  expect(await mismatches(m, sample)).toEqual([])
}, 600_000)

/** A frame's Redis key, found by listing (the key layout is the warm tier's business). */
function frameKey(prefix: string, id: string): string {
  const k = redisKeys(prefix).find((x) => x.includes('frame') && (x.endsWith(`{${id}}`) || x.endsWith(`:${id}`)))
  if (!k) throw new Error(`no Redis key for ${id}`)
  return k
}

test('verify finds a corrupted Redis value, a deleted archive row, a stale copy and an orphan; repair fixes them', async () => {
  const e = reg.env()
  const m = await reg.open(e.config)
  const frames = Array.from({ length: 30 }, (_, i) => simpleBundle(`v-${e.prefix.slice(4, 10)}-${i}`))
  await m.storeMany(frames)
  await m.migrate({ toTier: 'warm' })
  expect((await m.verify()).clean).toBe(true)
  const [a, b, c, d] = frames.map(idOf)

  let changed: FrameBundle | undefined
  const redis = createClient({ url: REDIS_URL, RESP: 2 }).withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer })
  await redis.connect()
  try {
    // c: an older valid copy of itself (stale). Take its copy, bring it home, change it, send it warm again.
    const oldCopy = await redis.get(frameKey(e.prefix, c))
    expect(oldCopy).toBeTruthy()
    await m.migrate({ toTier: 'hot', frameIds: [c, d] })
    changed = simpleBundle(c, { name: 'renamed after the first copy' })
    await m.store(changed)
    await m.migrate({ toTier: 'warm', frameIds: [c] })
    await redis.set(frameKey(e.prefix, c), oldCopy!, { KEEPTTL: true })
    // a: garbage in its Redis value. b: its archive row deleted. d (hot again): a Redis copy left behind.
    await redis.set(frameKey(e.prefix, a), Buffer.from('SMT garbage, not an envelope'), { KEEPTTL: true })
    psql(`DELETE FROM ${e.schema}.frames_archive WHERE frame_id = '${b}'`)
    await redis.set(frameKey(e.prefix, c).replace(c, d), oldCopy!)
  } finally {
    await redis.close()
  }
  const found = await m.verify()
  const kinds = found.findings.map((f) => `${f.frameId} ${f.tier} ${f.kind}`).sort()
  expect(kinds).toEqual([`${a} warm corrupt`, `${b} cold missing`, `${c} warm stale`, `${d} warm orphan`].sort())
  expect(found.clean).toBe(false)
  expect(found.checked).toBe(30)

  const fixed = await m.verify({ repair: true })
  expect(fixed.findings.map((f) => [f.frameId, f.repaired, f.notRepaired])).toEqual(
    expect.arrayContaining([[a, true, undefined], [b, true, undefined], [c, true, undefined], [d, true, undefined]]),
  )
  expect(fixed.repaired).toBe(4)
  const after = await m.verify()
  expect({ clean: after.clean, findings: after.findings }).toEqual({ clean: true, findings: [] })
  expect(archiveRows(e.schema).has(b)).toBe(true)
  // Everything comes back as stored (c with its new name).
  const want = new Map<string, unknown>(frames.map((f) => [idOf(f), normalized(f)]))
  want.set(c, normalized(changed!))
  expect(await mismatches(m, want)).toEqual([])
}, 120_000)

test('verify rejects bad options with ERR_INVALID_ARGUMENT naming the field', async () => {
  const e = reg.env()
  const m = await reg.open(e.config)
  for (const [opts, field] of [
    [{ sample: 0 }, 'sample'],
    [{ sample: 2 }, 'sample'],
    [{ repair: 'yes' }, 'repair'],
    [{ batchSize: 0 }, 'batchSize'],
    [{ bogus: 1 }, 'bogus'],
  ] as const) {
    await expect(m.verify(opts as any)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringContaining(field) })
  }
})

test('rollbackMigration returns the frames a run moved, refusing those written or moved since', async () => {
  const e = reg.env()
  const m = await reg.open(e.config)
  const frames = Array.from({ length: 120 }, (_, i) => simpleBundle(`r-${e.prefix.slice(4, 10)}-${i}`))
  await m.storeMany(frames)
  const ids = frames.map(idOf)
  const runId = await m.startMigration({ toTier: 'warm' })
  const st = await m.waitForMigration(runId)
  expect(st).toMatchObject({ runId, state: 'done', done: 120, active: false })
  expect((await m.listMigrations()).map((x) => x.runId)).toContain(runId)

  // One frame written since (brought home and stored again), one moved on to cold.
  await m.migrate({ toTier: 'hot', frameIds: [ids[0]] })
  await m.store(frames[0])
  await m.migrate({ toTier: 'cold', frameIds: [ids[1]] })
  const rb = await m.rollbackMigration(runId)
  expect(rb.restored).toBe(118)
  expect(rb.refused.map((x) => x.frameId).sort()).toEqual([ids[0], ids[1]].sort())
  const tiers = sqliteFrames(e.dbPath)
  for (const id of ids.slice(2)) expect(tiers.get(id)).toMatchObject({ tier: 'hot', bodyLocal: true })
  expect(tiers.get(ids[1])?.tier).toBe('cold')
  expect((await m.verify()).clean).toBe(true)
  await expect(m.rollbackMigration('run-none')).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' })
}, 120_000)

function redisOnly(cfg: TierConfig): TierConfig {
  return { ...cfg, tiers: { ...cfg.tiers, postgres: { enabled: false } } }
}

test('a rate limit of 500 frames/s is honoured within 10 %', async () => {
  const e = reg.env({ policies: { batchSize: 50 } })
  const m = await reg.open(redisOnly(e.config))
  const n = 2000
  const frames = Array.from({ length: n }, (_, i) => simpleBundle(`rl-${e.prefix.slice(4, 10)}-${i}`))
  for (let i = 0; i < n; i += 500) await m.storeMany(frames.slice(i, i + 500))
  const t0 = Date.now()
  const events: MigrationProgress[] = []
  const runId = await m.startMigration({ toTier: 'warm', rateLimit: { framesPerSecond: 500 }, onProgress: (p) => events.push(p) })
  const st = await m.waitForMigration(runId)
  const secs = (Date.now() - t0) / 1000
  expect(st.done).toBe(n)
  // The first batch goes at once (a burst of one batch); the rest at the pace.
  const rate = (n - 50) / secs
  expect(rate).toBeGreaterThan(450)
  expect(rate).toBeLessThan(550)
}, 60_000)

test('backpressure: a run whose Redis slows down takes smaller batches and pauses, then grows them back', async () => {
  const proxy = await startProxy(parseInt(/:(\d+)(\/|$)/.exec(REDIS_URL)?.[1] ?? '6379', 10))
  reg.defer(() => proxy.kill())
  const e = reg.env({ redisUrl: proxy.url(REDIS_URL), policies: { batchSize: 200 } })
  const m = await reg.open(redisOnly(e.config))
  const n = 5000
  const frames = Array.from({ length: n }, (_, i) => simpleBundle(`bp-${e.prefix.slice(4, 10)}-${i}`))
  for (let i = 0; i < n; i += 500) await m.storeMany(frames.slice(i, i + 500))
  const events: MigrationProgress[] = []
  let slowedAt = -1
  const runId = await m.startMigration({
    toTier: 'warm',
    onProgress: (p) => {
      events.push(p)
      // Every answer of Redis held back 200 ms from the 6th batch on, until the run slowed twice.
      if (events.length === 5) proxy.delay(200)
      if (p.slowed >= 2 && slowedAt < 0) {
        slowedAt = events.length
        proxy.delay(0)
      }
    },
  })
  const st = await m.waitForMigration(runId)
  expect(st).toMatchObject({ state: 'done', done: n, failed: 0 })
  expect(slowedAt).toBeGreaterThan(5)
  // Halved at each slow batch, never below an eighth; grown back once Redis answered at speed.
  const least = Math.min(...events.map((p) => p.batchSize))
  expect(least).toBeLessThanOrEqual(100)
  expect(least).toBeGreaterThanOrEqual(25)
  expect(events[events.length - 1].batchSize).toBeGreaterThan(least)
  const sizes = events.slice(1).map((p, i) => p.done - events[i].done)
  expect(Math.min(...sizes.slice(5, slowedAt))).toBeLessThan(200)
  expect((await m.status()).tiers.warm.frames).toBe(n)
}, 120_000)

test('a run started while the Redis breaker is open (4 refused connects) tries again at once and moves everything', async () => {
  const port = await freePort()
  const e = reg.env({ redisUrl: `redis://127.0.0.1:${port}` })
  const m = await reg.open(redisOnly(e.config))
  const frames = Array.from({ length: 200 }, (_, i) => simpleBundle(`fc-${e.prefix.slice(4, 10)}-${i}`))
  await m.storeMany(frames)
  // Refused a few times: the breaker is open with a backoff of 1-2 s when the server comes up.
  for (let t0 = Date.now(); Date.now() - t0 < 10_000; ) {
    if ((await m.status()).backends.redis.breaker!.failures >= 4) break
    await m.status()
  }
  expect((await m.status()).backends.redis.breaker!.failures).toBeGreaterThanOrEqual(4)
  const redis = await startRedis(port)
  reg.defer(() => redis.kill())
  const st = await m.waitForMigration(await m.startMigration({ toTier: 'warm' }))
  expect(st).toMatchObject({ state: 'done', done: 200, failed: 0 })
}, 60_000)

test('a Redis that comes up while a run goes is used by its later batches', async () => {
  const port = await freePort()
  const e = reg.env({ redisUrl: `redis://127.0.0.1:${port}`, policies: { batchSize: 20 } })
  const m = await reg.open(redisOnly(e.config))
  const n = 400
  const frames = Array.from({ length: n }, (_, i) => simpleBundle(`mc-${e.prefix.slice(4, 10)}-${i}`))
  await m.storeMany(frames)
  const runId = await m.startMigration({ toTier: 'warm', rateLimit: { framesPerSecond: 100 } })
  await new Promise((r) => setTimeout(r, 1000))
  const redis = await startRedis(port)
  reg.defer(() => redis.kill())
  const st = await m.waitForMigration(runId)
  expect(st.state).toBe('done')
  // The first second's batches found no Redis; the later ones moved.
  expect(st.done).toBeGreaterThan(0)
  expect(st.done).toBeLessThan(n)
  const again = await m.waitForMigration(await m.startMigration({ toTier: 'warm' }))
  expect(again.done).toBe(n - st.done)
  expect((await m.status()).tiers.warm.frames).toBe(n)
}, 60_000)

test('a run with a 4 MB memory budget moves 3 MB frames one at a time and completes', async () => {
  const e = reg.env()
  const m = await reg.open(e.config)
  const big = 'x'.repeat(3 * 1024 * 1024 - 4096)
  const frames = Array.from({ length: 5 }, (_, i) => {
    const b = simpleBundle(`mb-${e.prefix.slice(4, 10)}-${i}`)
    b.frame.digest_text = big + i
    return b
  })
  for (const f of frames) await m.store(f)
  const events: MigrationProgress[] = []
  const runId = await m.startMigration({ toTier: 'cold', memoryBudget: '4MB', onProgress: (p) => events.push(p) })
  const st = await m.waitForMigration(runId)
  expect(st).toMatchObject({ state: 'done', done: 5, failed: 0 })
  // One frame per batch: a progress event after each.
  const dones = events.map((p) => p.done)
  for (const k of [1, 2, 3, 4, 5]) expect(dones).toContain(k)
  const want = new Map<string, unknown>(frames.map((f) => [idOf(f), normalized(f)]))
  expect(await mismatches(m, want)).toEqual([])
}, 120_000)

test('an aborted run stops at a batch, is resumable, and its progress arrives in order to the total', async () => {
  const e = reg.env({ policies: { batchSize: 50 } })
  const m = await reg.open(e.config)
  const n = 1500
  const frames: FrameBundle[] = Array.from({ length: n }, (_, i) => simpleBundle(`ab-${e.prefix.slice(4, 10)}-${i}`))
  for (let i = 0; i < n; i += 500) await m.storeMany(frames.slice(i, i + 500))
  const ac = new AbortController()
  const events: MigrationProgress[] = []
  const runId = await m.startMigration({
    toTier: 'warm',
    rateLimit: { framesPerSecond: 1000 },
    signal: ac.signal,
    onProgress: (p) => {
      events.push(p)
      if (p.done >= 200) ac.abort()
    },
  })
  const st = await m.waitForMigration(runId)
  expect(st.state).toBe('cancelled')
  expect(st.done).toBeGreaterThanOrEqual(200)
  expect(st.done).toBeLessThan(n)
  expect((await m.migrationStatus(runId)).state).toBe('cancelled')

  const more: MigrationProgress[] = []
  await m.resumeMigration(runId, { onProgress: (p) => more.push(p) })
  const fin = await m.waitForMigration(runId)
  expect(fin).toMatchObject({ state: 'done', done: n, total: n })
  for (const list of [events, more]) {
    for (let i = 1; i < list.length; i++) expect(list[i].done).toBeGreaterThanOrEqual(list[i - 1].done)
  }
  expect(more[more.length - 1]).toMatchObject({ state: 'done', done: n, total: n, hop: 'hot→warm' })
  expect(sqliteAll(e.dbPath, `SELECT count(*) AS n FROM frames WHERE tier_status = 'warm'`)[0].n).toBe(n)
  await expect(m.resumeMigration(runId)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' })

  // An already-aborted signal refuses to start; bad options are named.
  const gone = new AbortController()
  gone.abort()
  await expect(m.startMigration({ toTier: 'cold', signal: gone.signal })).rejects.toMatchObject({ code: 'ERR_ABORTED' })
  await expect(m.startMigration({ toTier: 'cold', rateLimit: { framesPerSecond: 0 } })).rejects.toMatchObject({
    code: 'ERR_INVALID_ARGUMENT',
    message: expect.stringContaining('rateLimit.framesPerSecond'),
  })
  await expect(m.startMigration({ toTier: 'cold', onProgress: 5 as any })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' })
  await expect(m.startMigration({ toTier: 'cold', bogus: 1 } as any)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' })
}, 120_000)

test('planMigration says what a run would move, per hop and project, and changes nothing', async () => {
  const e = reg.env()
  const m = await reg.open(e.config)
  const frames = Array.from({ length: 40 }, (_, i) => simpleBundle(`pl-${e.prefix.slice(4, 10)}-${i}`, { state: i % 4 === 0 ? 'active' : 'closed' }))
  await m.storeMany(frames)
  const plan = await m.planMigration({ toTier: 'cold' })
  expect(plan).toMatchObject({ toTier: 'cold', frames: 30 })
  expect(plan.hops['hot→cold']).toMatchObject({ frames: 30 })
  expect(Object.values(plan.skipped).reduce((a, b) => a + b, 0)).toBe(10)
  expect(plan.bytes).toBeGreaterThan(0)
  const tiers = sqliteFrames(e.dbPath)
  for (const f of frames) expect(tiers.get(idOf(f))?.tier).toBe('hot')
  // The dry-run migrate is not a run.
  const before = (await m.listMigrations()).length
  const dry = await m.migrate({ toTier: 'cold', dryRun: true })
  expect(dry.runId).toBeUndefined()
  expect((await m.listMigrations()).length).toBe(before)
})
