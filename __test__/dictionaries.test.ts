// Per-project zstd dictionaries through the shipped build, on the real Redis and PostgreSQL: a
// project's first demoted frames train one, it is saved in SQLite, PostgreSQL and Redis before any
// envelope names it, later envelopes use it (format 2) and are smaller, every frame reads back
// exactly, also in a fresh process whose SQLite file lost its dictionaries (found in Redis, else
// PostgreSQL, and cached again); without PostgreSQL, Redis is the shared copy; bad options are refused.
import { execFileSync, spawnSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'

import type { FrameBundle, TierConfig } from '../index'
import { fileRegistry, genBundles, idOf, mismatches, PG_URL, psql, REDIS_URL, redisCli, rejectionOf, ROOT, sqliteAll } from './helpers/gen'

const reg = fileRegistry()

/** Archive rows by envelope format (byte 3 of the payload): count and compressed / raw bytes. */
function formats(schema: string): Record<string, { n: number; ratio: number }> {
  const out: Record<string, { n: number; ratio: number }> = {}
  const rows = psql(
    `SELECT f || '|' || count(*) || '|' || sum(size_bytes)::float8 / sum(octet_length(payload)) ` +
      `FROM (SELECT get_byte(payload, 3) AS f, size_bytes, payload FROM ${schema}.frames_archive) a GROUP BY f`,
  )
  for (const l of rows.split('\n').filter(Boolean)) {
    const [f, n, r] = l.split('|')
    out[f] = { n: Number(n), ratio: Number(r) }
  }
  return out
}

/** Empties the SQLite file's dictionary table behind the addon's back (what a lost or copied file looks like). */
function forgetLocalDictionaries(dbPath: string): void {
  const script = `const D = require('better-sqlite3'); const db = new D(process.argv[1]); db.exec('DELETE FROM tier_dictionaries'); db.close()`
  execFileSync(process.execPath, ['-e', script, dbPath], { cwd: ROOT })
  expect(sqliteAll(dbPath, 'SELECT count(*) AS n FROM tier_dictionaries')).toEqual([{ n: 0 }])
}

/** A fresh process (empty dictionary registry) reads `expected` and verifies every copy (dict-child.js). */
function freshChild(dir: string, cfg: TierConfig, expected: Map<string, unknown>): { wrong: string[]; read: number; findings: any[] } {
  const cfgFile = path.join(dir, 'config.json')
  const expFile = path.join(dir, 'expected.json')
  fs.writeFileSync(cfgFile, JSON.stringify(cfg))
  fs.writeFileSync(expFile, JSON.stringify(Object.fromEntries(expected)))
  return JSON.parse(
    execFileSync(process.execPath, [path.join(ROOT, '__test__', 'helpers', 'dict-child.js'), cfgFile, expFile], {
      cwd: ROOT,
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    }),
  )
}

const dictField = (prefix: string, id: number, field: string) => redisCli(['HGET', `${prefix}dict:${id}`, field]).trim()

function withDictionaries(cfg: TierConfig, d: NonNullable<NonNullable<TierConfig['compression']>['dictionaries']>): TierConfig {
  return { ...cfg, compression: { dictionaries: d } }
}

/**
 * A manager with dictionaries at `minFrames` 100 and a project of 600 frames whose closed ones are
 * archived 50 per call: the first 100 are the sample and stay plain, the rest use the dictionary.
 * `expected`: each archived frame as it read back before it moved.
 */
async function archivedProject(seed: number, tag: string, projectId: string) {
  const env = reg.env()
  const cfg = withDictionaries(env.config, { minFrames: 100 })
  const m = await reg.open(cfg)
  const g = genBundles(600, { seed, idPrefix: `${tag}-${env.prefix}`, large: 0, projectId })
  await m.storeMany(g.bundles)
  const ids = g.bundles.map(idOf).filter((id) => g.closed.has(id))
  const expected = new Map<string, any>()
  for (const id of ids) expected.set(id, await m.retrieve(id, { promote: false }))
  for (let i = 0; i < ids.length; i += 50) expect((await m.migrate({ toTier: 'cold', frameIds: ids.slice(i, i + 50) })).failed).toEqual([])
  return { env, cfg, m, ids, expected }
}

describe('per-project dictionaries', () => {
  test('the first 100 demoted frames train one; later envelopes use it, are smaller, and read back everywhere', async () => {
    const env = reg.env()
    const cfg = withDictionaries(env.config, { minFrames: 100 })
    const m = await reg.open(cfg)
    const g = genBundles(600, { seed: 11, idPrefix: `dict-${env.prefix}`, large: 0, projectId: 'proj-dict' })
    await m.storeMany(g.bundles)
    const closed = g.bundles.filter((b) => g.closed.has(idOf(b)))
    expect(closed.length).toBeGreaterThan(300)
    const expected = new Map<string, unknown>()
    for (const b of closed) expected.set(idOf(b), await m.retrieve(idOf(b), { promote: false }))

    expect(m.stats().compression.dictionaries).toEqual([])
    // 50 frames per call: the first two batches are the sample, the rest use the dictionary.
    const ids = closed.map(idOf)
    for (let i = 0; i < ids.length; i += 50) {
      const r = await m.migrate({ toTier: 'cold', frameIds: ids.slice(i, i + 50) })
      expect(r.failed).toEqual([])
    }
    const [d] = m.stats().compression.dictionaries
    expect(d.projectId).toBe('proj-dict')
    expect(d.id).not.toBeNull()
    expect(d.ratio).toBeGreaterThan(1.1 * d.plainRatio)
    expect(d.frames).toBeGreaterThan(0)

    // Saved in PostgreSQL and SQLite; envelopes of both formats in the archive, format 2 smaller.
    expect(psql(`SELECT id FROM ${env.schema}.dictionaries`)).toBe(String(d.id))
    expect(sqliteAll(env.dbPath, 'SELECT id, project_id FROM tier_dictionaries')).toEqual([{ id: d.id, project_id: 'proj-dict' }])
    const f = formats(env.schema)
    expect(f['1'].n).toBeGreaterThanOrEqual(100)
    expect(f['2'].n).toBeGreaterThan(100)
    expect(f['1'].n + f['2'].n).toBe(ids.length)
    expect(f['2'].ratio).toBeGreaterThan(1.2 * f['1'].ratio)

    // Some go to warm: their Redis copies are format 2 as well.
    const warmIds = ids.slice(-40)
    expect((await m.migrate({ toTier: 'warm', frameIds: warmIds })).moved.length).toBe(40)
    expect(await mismatches(m, expected)).toEqual([])
    const v = await m.verify()
    expect(v.findings).toEqual([])
    expect(v.clean).toBe(true)
    await m.close()

    // Cached in Redis too.
    expect(dictField(env.prefix, d.id!, 'project')).toBe('proj-dict')

    // A fresh process (empty registry) on a SQLite file that lost its dictionaries, with Redis'
    // copy gone as well: from PostgreSQL, then kept in SQLite and Redis again.
    forgetLocalDictionaries(env.dbPath)
    redisCli(['DEL', `${env.prefix}dict:${d.id}`])
    const out = freshChild(env.dir, cfg, expected)
    expect(out.wrong).toEqual([])
    expect(out.read).toBe(ids.length)
    expect(out.findings).toEqual([])
    expect(sqliteAll(env.dbPath, 'SELECT id FROM tier_dictionaries')).toEqual([{ id: d.id }])
    expect(dictField(env.prefix, d.id!, 'project')).toBe('proj-dict')
  }, 120_000)

  test('without PostgreSQL the dictionary is shared through Redis, and its Redis copy is what decodes there', async () => {
    const env = reg.env()
    const base = withDictionaries(env.config, { minFrames: 100 })
    const cfg: TierConfig = { ...base, tiers: { redis: base.tiers!.redis, postgres: { enabled: false } } }
    const m = await reg.open(cfg)
    const g = genBundles(400, { seed: 14, idPrefix: `rdict-${env.prefix}`, large: 0, projectId: 'proj-redis' })
    await m.storeMany(g.bundles)
    const ids = g.bundles.map(idOf).filter((id) => g.closed.has(id))
    const expected = new Map<string, unknown>()
    for (const id of ids) expected.set(id, await m.retrieve(id, { promote: false }))
    for (let i = 0; i < ids.length; i += 50) {
      const r = await m.migrate({ toTier: 'warm', frameIds: ids.slice(i, i + 50) })
      expect(r.failed).toEqual([])
      expect(r.moved.length).toBeGreaterThanOrEqual(ids.slice(i, i + 50).length)
    }
    const [d] = m.stats().compression.dictionaries
    expect(d.projectId).toBe('proj-redis')
    expect(d.id).not.toBeNull()
    expect(d.frames).toBeGreaterThan(0)
    expect(dictField(env.prefix, d.id!, 'project')).toBe('proj-redis')
    expect(Number(redisCli(['HSTRLEN', `${env.prefix}dict:${d.id}`, 'bytes']).trim())).toBe(d.size)
    expect((await m.verify()).findings).toEqual([])
    await m.close()

    // A fresh process whose SQLite file lost its dictionaries decodes the Redis copies with Redis'.
    forgetLocalDictionaries(env.dbPath)
    const out = freshChild(env.dir, cfg, expected)
    expect(out.wrong).toEqual([])
    expect(out.read).toBe(ids.length)
    expect(out.findings).toEqual([])
    expect(sqliteAll(env.dbPath, 'SELECT id FROM tier_dictionaries')).toEqual([{ id: d.id }])

    // With Redis' copy gone too, the Redis copies made with it cannot be decoded (verify says so),
    // and still no frame is lost: their bodies are held in SQLite.
    forgetLocalDictionaries(env.dbPath)
    redisCli(['DEL', `${env.prefix}dict:${d.id}`])
    const lost = freshChild(env.dir, cfg, expected)
    expect(lost.wrong).toEqual([])
    expect(lost.findings.length).toBeGreaterThan(0)
    expect(lost.findings.every((f: any) => f.tier === 'warm')).toBe(true)
  }, 120_000)

  test('compact({ reencode }) rewrites the envelopes archived before the dictionary: smaller, exact, the same search text', async () => {
    const { env, cfg, m, expected } = await archivedProject(15, 'reenc', 'proj-re')
    const before = formats(env.schema)
    expect(before['1'].n).toBeGreaterThanOrEqual(100)
    const archiveBytes = () => Number(psql(`SELECT sum(octet_length(payload)) FROM ${env.schema}.frames_archive`))
    const searchText = () => psql(`SELECT md5(string_agg(search::text, '|' ORDER BY frame_id)) FROM ${env.schema}.frames_archive`)
    const [bytes0, search0] = [archiveBytes(), searchText()]

    for (const o of [{ reencode: 'yes' }, { limit: 5 }, { reencode: true, limit: 0 }, { reencode: true, projectId: 7 }, { other: 1 }, 'all']) {
      const e = await rejectionOf(m.compact(o as any))
      expect(e.code).toBe('ERR_INVALID_ARGUMENT')
      expect(e.message).toMatch(/options/)
    }
    expect(archiveBytes()).toBe(bytes0)
    // Another project has nothing to re-encode (no dictionary).
    expect((await m.compact({ reencode: true, projectId: 'nobody' })).reencoded).toMatchObject({ rewritten: 0, projects: [] })

    const part = (await m.compact({ reencode: true, limit: 30 })).reencoded!
    expect(part).toMatchObject({ rewritten: 30, truncated: true, changed: 0, undecodable: 0, projects: ['proj-re'] })
    expect(formats(env.schema)['1'].n).toBe(before['1'].n - 30)

    // The rest through the CLI, in another process (its dictionary comes from the SQLite file).
    const conf = path.join(env.dir, 'tiers.json')
    fs.writeFileSync(conf, JSON.stringify({ tiers: { redis: { keyPrefix: env.prefix }, postgres: { schema: env.schema } }, policies: cfg.policies, compression: cfg.compression }))
    const cli = spawnSync(
      process.execPath,
      [path.join(ROOT, 'cli', 'stackmemory-storage.js'), 'compact', '--reencode', '--json', '--db', env.dbPath, '--config', conf, '--redis', REDIS_URL, '--postgres', PG_URL],
      { cwd: ROOT, encoding: 'utf8' },
    )
    expect(cli.stderr).toBe('')
    expect(cli.status).toBe(0)
    const rest = JSON.parse(cli.stdout).reencoded
    expect(rest).toMatchObject({ rewritten: before['1'].n - 30, notSmaller: 0, changed: 0, undecodable: 0, truncated: false })
    expect(rest.bytesAfter * 1.2).toBeLessThan(rest.bytesBefore)

    expect(Object.keys(formats(env.schema))).toEqual(['2'])
    expect(archiveBytes()).toBeLessThan(bytes0)
    expect(searchText()).toBe(search0)
    expect(psql(`SELECT count(*) FROM ${env.schema}.frames_archive WHERE compressed_size <> octet_length(payload)`)).toBe('0')
    expect((await m.compact({ reencode: true })).reencoded).toMatchObject({ scanned: 0, rewritten: 0 })
    expect(await mismatches(m, expected)).toEqual([])
    expect((await m.verify()).findings).toEqual([])
  }, 120_000)

  test('compact({ reencode }) beside promotions and writes to archived frames: no frame lost, none stale', async () => {
    const { env, m, expected } = await archivedProject(16, 'reon', 'proj-on')
    const plain = psql(`SELECT frame_id FROM ${env.schema}.frames_archive WHERE get_byte(payload, 3) = 1 ORDER BY frame_id`).split('\n').filter(Boolean)
    expect(plain.length).toBeGreaterThanOrEqual(100)
    // While it re-encodes: half of the plain ones come back hot, and 20 others are written anew.
    const back = plain.filter((_, i) => i % 2 === 0)
    const written = plain.filter((_, i) => i % 2 === 1).slice(0, 20)
    const writes = (async () => {
      for (const id of written) {
        const b = JSON.parse(JSON.stringify(expected.get(id)))
        b.frame.digest_text = `rewritten while re-encoding ${id}`
        await m.store(b)
      }
    })()
    const [r, mv] = await Promise.all([m.compact({ reencode: true }), m.migrate({ toTier: 'hot', frameIds: back }), writes])
    expect(mv.failed).toEqual([])
    const rep = r.reencoded!
    expect(rep.undecodable).toBe(0)
    expect(rep.rewritten + rep.changed + rep.notSmaller).toBe(rep.scanned)
    for (const id of written) {
      const got = await m.retrieve(id, { promote: false })
      expect(got!.frame.digest_text).toBe(`rewritten while re-encoding ${id}`)
      expected.delete(id)
    }
    expect(await mismatches(m, expected)).toEqual([])
    for (const id of back) expect(await m.locate(id)).toBe('hot')
    // verify first finishes the discards the writes journaled (their archive rows are stale now).
    expect((await m.verify()).findings).toEqual([])
    // What is left plain is what a second run re-encodes; then nothing is.
    await m.compact({ reencode: true })
    expect(Object.keys(formats(env.schema))).toEqual(['2'])
  }, 120_000)

  test('disabled: every envelope is plain zstd (format 1)', async () => {
    const env = reg.env()
    const m = await reg.open(withDictionaries(env.config, { enabled: false, minFrames: 16 }))
    const g = genBundles(200, { seed: 12, idPrefix: `nodict-${env.prefix}`, large: 0, projectId: 'p2' })
    await m.storeMany(g.bundles)
    const ids = g.bundles.map(idOf).filter((id) => g.closed.has(id))
    for (let i = 0; i < ids.length; i += 40) await m.migrate({ toTier: 'cold', frameIds: ids.slice(i, i + 40) })
    expect(Object.keys(formats(env.schema))).toEqual(['1'])
    expect(m.stats().compression.dictionaries).toEqual([])
  }, 60_000)

  test('trainDictionary trains on the frames in SQLite; bad options are refused with their field', async () => {
    const env = reg.env()
    const bad = await rejectionOf(reg.open(withDictionaries(env.config, { maxSize: '10MB' })))
    expect(bad.code).toBe('ERR_INVALID_CONFIG')
    expect(bad.message).toContain('compression.dictionaries.maxSize')
    const bad2 = await rejectionOf(reg.open({ ...env.config, compression: { dictionary: true } as any }))
    expect(bad2.code).toBe('ERR_INVALID_CONFIG')
    expect(bad2.message).toContain('compression')

    const m = await reg.open(env.config)
    const empty = await rejectionOf(m.trainDictionary())
    expect(empty.code).toBe('ERR_INVALID_ARGUMENT')
    expect(empty.message).toContain('options.projectId')
    const g = genBundles(300, { seed: 13, idPrefix: `train-${env.prefix}`, large: 0, projectId: 'p3' })
    await m.storeMany(g.bundles as FrameBundle[])
    for (const o of [{ projectId: 5 }, { force: 'yes' }, { other: 1 }, 'p3']) {
      const e = await rejectionOf(m.trainDictionary(o as any))
      expect(e.code).toBe('ERR_INVALID_ARGUMENT')
    }
    const t = await m.trainDictionary({ force: true })
    expect(t).toMatchObject({ projectId: 'p3', adopted: true })
    expect(t.samples).toBe(300)
    expect(t.size).toBeGreaterThan(1000)
    expect(t.ratio).toBeGreaterThan(t.plainRatio)
    expect(psql(`SELECT id FROM ${env.schema}.dictionaries`)).toBe(String(t.id))
    expect(m.stats().compression.dictionaries.map((d) => d.id)).toEqual([t.id])
    // The next envelopes use it.
    const ids = g.bundles.map(idOf).filter((id) => g.closed.has(id)).slice(0, 30)
    await m.migrate({ toTier: 'cold', frameIds: ids })
    expect(Object.keys(formats(env.schema))).toEqual(['2'])
  }, 60_000)
})
