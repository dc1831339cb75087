// stats(), metrics() and logs against the real Redis and PostgreSQL: histograms and counts match
// the operations performed; the Prometheus text parses with a real parser (parse-prometheus-text-format)
// and carries the same numbers; a failure run's logs carry its code and never the password.
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'

import { TierManager, onLog } from '../index'
import type { LogRecord, TierStats } from '../index'
import { run } from '../cli/storage'
import { CLOSED_PORT, fileRegistry, randomTag, rejectionOf, simpleBundle, sleep } from './helpers/gen'

// eslint-disable-next-line @typescript-eslint/no-var-requires
const parsePrometheus: (text: string) => any[] = require('parse-prometheus-text-format')

const reg = fileRegistry()
const SECRET = 'pw-s3cret-xyz'

/** One labelled series of a histogram family, parsed on its own (see the metrics test). */
function histogram(text: string, name: string, labels: string): any {
  const lines = text.split('\n').filter((l) => l.startsWith(name) && l.includes(`{${labels}`))
  const body = lines.map((l) => l.replace(`{${labels},`, '{').replace(`{${labels}}`, '')).join('\n')
  const [f] = parsePrometheus(`# HELP ${name} h\n# TYPE ${name} histogram\n${body}\n`)
  expect(f.type).toBe('HISTOGRAM')
  return f.metrics[0]
}

const op = (s: TierStats, o: string, tier: string) => s.operations.find((x) => x.op === o && x.tier === tier)

describe('stats() and metrics()', () => {
  let m: TierManager
  let ids: string[]
  let before: TierStats['errors']

  beforeAll(async () => {
    const env = reg.env()
    m = await reg.open(env.config)
    before = m.stats().errors
    const tag = randomTag(6)
    ids = Array.from({ length: 20 }, (_, i) => `obs-${tag}-${i}`)
    const bundles = ids.map((id) => simpleBundle(id))
    await m.storeMany(bundles.slice(0, 15))
    for (const b of bundles.slice(15)) await m.store(b)
    for (let i = 0; i < 50; i++) await m.retrieve(ids[i % 20])
    expect(await m.retrieve('no-such-frame')).toBeNull()
    const warm = await m.migrate({ toTier: 'warm', frameIds: ids.slice(0, 10) })
    expect(warm.moved.length).toBe(10)
    for (const id of ids.slice(0, 5)) await m.retrieve(id, { promote: false })
    const cold = await m.migrate({ toTier: 'cold', frameIds: ids.slice(5, 8) })
    expect(cold.moved.length).toBe(3)
    for (const id of ids.slice(5, 8)) await m.retrieve(id, { promote: false })
    await m.search('hello')
    expect((await rejectionOf(m.retrieve(42 as any))).code).toBe('ERR_INVALID_ARGUMENT')
  })

  test('counts, histograms, hits, moves, errors by code and backends match what was done', () => {
    const s = m.stats()
    expect(op(s, 'retrieve', 'hot')?.count).toBe(50)
    expect(op(s, 'retrieve', 'warm')?.count).toBe(5)
    expect(op(s, 'retrieve', 'cold')?.count).toBe(3)
    expect(op(s, 'retrieve', 'miss')?.count).toBe(1)
    expect(op(s, 'store', 'hot')?.count).toBe(6) // one storeMany, five store
    expect(op(s, 'search', 'all')?.count).toBe(1)
    for (const o of s.operations) {
      const l = o.sinceOpen
      expect(l.count).toBe(o.count)
      expect(l.p50Us).toBeGreaterThan(0)
      expect(l.p50Us).toBeLessThanOrEqual(l.p90Us)
      expect(l.p90Us).toBeLessThanOrEqual(l.p99Us)
      expect(l.p99Us).toBeLessThanOrEqual(l.p999Us)
      expect(l.p999Us).toBeLessThanOrEqual(l.maxUs * 1.01)
      expect(o.recent.count).toBe(o.count) // all of it within the last minute
    }
    expect(op(s, 'retrieve', 'hot')!.bytes).toBeGreaterThan(0)
    expect(s.hits.reads).toBe(59)
    expect(s.hits.hot.ratio).toBeCloseTo(50 / 59, 6)
    expect(s.moves['hot→warm']).toMatchObject({ moved: 10, failed: 0 })
    expect(s.moves['warm→cold']).toMatchObject({ moved: 3, failed: 0 })
    expect(op(s, 'hop', 'hot→warm')?.count).toBeGreaterThanOrEqual(1)
    expect(s.compression.bytesBefore).toBeGreaterThan(0)
    expect(s.compression.ratio).toBeGreaterThan(0)
    expect((s.errors.returned.ERR_INVALID_ARGUMENT ?? 0) - (before.returned.ERR_INVALID_ARGUMENT ?? 0)).toBe(1)
    expect(s.backends).toEqual({ redis: 'up', postgres: 'up' })
  })

  test('metrics() is Prometheus text whose families and values match stats()', () => {
    const text = m.metrics()
    const families = parsePrometheus(text)
    const fam = (name: string) => families.find((f) => f.name === name)
    const lat = fam('stackmemory_tiers_operation_duration_seconds')
    expect(lat.type).toBe('HISTOGRAM')
    expect(lat.help).toMatch(/Latency/)
    // The parser flattens a histogram with labels into one series (it keeps `le` only), so each
    // series is also parsed on its own: its lines, its other labels taken off.
    const hot = histogram(text, 'stackmemory_tiers_operation_duration_seconds', 'op="retrieve",tier="hot"')
    expect(Number(hot.count)).toBe(50)
    expect(Number(hot.sum)).toBeGreaterThan(0)
    expect(Number(hot.sum)).toBeCloseTo((op(m.stats(), 'retrieve', 'hot')!.sinceOpen.meanUs * 50) / 1e6, 4)
    // Buckets are cumulative and end at the count.
    const les = Object.keys(hot.buckets).filter((k) => k !== '+Inf').map(Number).sort((a, b) => a - b)
    expect(les.length).toBe(19)
    let prev = 0
    for (const le of les) {
      const n = Number(hot.buckets[String(le)])
      expect(n).toBeGreaterThanOrEqual(prev)
      prev = n
    }
    expect(prev).toBeLessThanOrEqual(50)
    expect(Number(hot.buckets['+Inf'])).toBe(50)
    expect(Number(histogram(text, 'stackmemory_tiers_operation_duration_seconds', 'op="retrieve",tier="warm"').count)).toBe(5)
    expect(Number(histogram(text, 'stackmemory_tiers_operation_duration_seconds', 'op="store",tier="hot"').count)).toBe(6)
    expect(text).toContain('stackmemory_tiers_operation_duration_seconds_bucket{op="retrieve",tier="hot",le="+Inf"} 50')
    const moves = fam('stackmemory_tiers_moves_total')
    expect(moves.type).toBe('COUNTER')
    const mv = (hop: string, outcome: string) => Number(moves.metrics.find((x: any) => x.labels.hop === hop && x.labels.outcome === outcome)?.value)
    expect(mv('hot→warm', 'moved')).toBe(10)
    expect(mv('warm→cold', 'moved')).toBe(3)
    const hit = fam('stackmemory_tiers_hit_ratio').metrics.find((x: any) => x.labels.tier === 'hot')
    expect(Number(hit.value)).toBeCloseTo(50 / 59, 6)
    const errs = fam('stackmemory_tiers_errors_total').metrics
    expect(errs.some((x: any) => x.labels.code === 'ERR_INVALID_ARGUMENT' && x.labels.kind === 'returned' && Number(x.value) >= 1)).toBe(true)
    const up = fam('stackmemory_tiers_backend_up').metrics
    expect(up.map((x: any) => [x.labels.backend, x.value])).toEqual([['redis', '1'], ['postgres', '1']])
    expect(fam('stackmemory_tiers_compression_ratio').type).toBe('GAUGE')
    expect(fam('stackmemory_tiers_uptime_seconds')).toBeTruthy()
  })

  test('serveMetrics: GET /metrics on 127.0.0.1 answers metrics(); bad options are refused', async () => {
    const srv = await m.serveMetrics({ port: 0 })
    try {
      expect(srv.url).toBe(`http://127.0.0.1:${srv.port}/metrics`)
      const res = await fetch(srv.url)
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toContain('version=0.0.4')
      const fams = parsePrometheus(await res.text())
      expect(fams.find((f) => f.name === 'stackmemory_tiers_moves_total')?.type).toBe('COUNTER')
      expect((await fetch(`http://127.0.0.1:${srv.port}/other`)).status).toBe(404)
    } finally {
      await srv.close()
    }
    for (const bad of [undefined, { port: -1 }, { port: 1.5 }, { port: 0, tls: true }]) {
      expect((await rejectionOf(m.serveMetrics(bad as any))).code).toBe('ERR_INVALID_ARGUMENT')
    }
  })

  test('stats() and metrics() on a closed manager reject with ERR_CLOSED', async () => {
    const env = reg.env()
    const m2 = await TierManager.open({ dbPath: env.dbPath })
    await m2.close()
    expect(() => m2.stats()).toThrow(expect.objectContaining({ code: 'ERR_CLOSED' }))
    expect(() => m2.metrics()).toThrow(expect.objectContaining({ code: 'ERR_CLOSED' }))
  })
})

describe('logs', () => {
  test('onLog rejects bad arguments', () => {
    expect(() => onLog(42 as any)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }))
    expect(() => onLog(() => {}, { level: 'loud' as any })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringContaining('options.level') }))
    expect(() => onLog(() => {}, { color: true } as any)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }))
  })

  test("a failure run's logs carry the code, structured fields, and never the password", async () => {
    const records: LogRecord[] = []
    const stop = onLog((r) => records.push(r), { level: 'info' })
    try {
      const env = reg.env()
      const cfg = env.with({
        redisUrl: `redis://:${SECRET}@127.0.0.1:${CLOSED_PORT}`,
        pgUrl: `postgres://postgres:${SECRET}@127.0.0.1:${CLOSED_PORT}/test`,
      })
      const m = await reg.open(cfg)
      await m.storeMany(['a', 'b', 'c'].map((x) => simpleBundle(`obs-log-${randomTag(6)}-${x}`)))
      const rep = await m.migrate({ toTier: 'warm' })
      expect(rep.moved.length).toBe(0)
      for (let i = 0; i < 50 && !records.some((r) => r.fields.code === 'ERR_TIER_UNAVAILABLE'); i++) await sleep(20)
      const failures = records.filter((r) => r.fields.code === 'ERR_TIER_UNAVAILABLE')
      expect(failures.length).toBeGreaterThanOrEqual(1)
      const backends = new Set(failures.map((r) => r.fields.backend))
      expect(backends).toEqual(new Set(['redis', 'postgres']))
      for (const f of failures) {
        expect(f.level).toBe('warn')
        expect(f.target).toMatch(/^stackmemory_tiers::/)
        expect(String(f.fields.url)).toContain(':***@127.0.0.1')
        expect(typeof f.time).toBe('number')
      }
      expect(JSON.stringify(records)).not.toContain(SECRET)
      const s = m.stats()
      expect(s.backends).toEqual({ redis: 'down', postgres: 'down' })
      expect(s.errors.background.ERR_TIER_UNAVAILABLE).toBeGreaterThanOrEqual(2)
      expect(m.metrics()).not.toContain(SECRET)
    } finally {
      stop()
    }
    const n = records.length
    const m3 = await reg.open(reg.env().with({ redisUrl: `redis://:${SECRET}@127.0.0.1:${CLOSED_PORT}` }))
    await m3.migrate({ toTier: 'warm' })
    await sleep(50)
    expect(records.length).toBe(n) // stopped: nothing more arrives
  })
})

describe('CLI', () => {
  test('stackmemory-storage stats (table and --json) and metrics', async () => {
    const env = reg.env()
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'smt-home-'))
    reg.defer(async () => fs.rmSync(home, { recursive: true, force: true }))
    const io = () => {
      const out: string[] = []
      return { out, io: { stdout: (l: string) => out.push(l), stderr: (l: string) => out.push(l), env: {}, home } }
    }
    const a = io()
    expect(await run(['stats', '--db', env.dbPath], a.io)).toBe(0)
    const human = a.out.join('\n')
    expect(human).toMatch(/^database: /m)
    expect(human).toMatch(/since open/)
    expect(human).toMatch(/backends: redis disabled, postgres disabled/)
    const b = io()
    expect(await run(['stats', '--json', '--db', env.dbPath], b.io)).toBe(0)
    const j = JSON.parse(b.out.join('\n'))
    expect(j.status.tiers.hot.frames).toBe(0)
    expect(j.stats.recentWindowSeconds).toBe(60)
    const c = io()
    expect(await run(['metrics', '--db', env.dbPath], c.io)).toBe(0)
    const fams = parsePrometheus(c.out.join('\n') + '\n')
    expect(fams.find((f) => f.name === 'stackmemory_tiers_uptime_seconds')?.type).toBe('GAUGE')
  })
})
