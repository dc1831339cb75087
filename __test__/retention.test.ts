// Retention through the journal (issue 11): frames past their retention leave PostgreSQL, Redis
// and SQLite (a stub with children stays as an `expired` stub), `keep_forever` never goes, frames
// whose SQLite rows are data stay, and every tier agrees afterwards. On StackMemory's own
// better-sqlite3 Database (one SQLite library), real Redis and PostgreSQL.

import Database from 'better-sqlite3'

import type { FrameBundle } from '../index'
import { archiveRows, fileRegistry, idOf, normalized, redisFrameIds, simpleBundle, sqliteAll } from './helpers/gen'

const { StackMemory } = require('./helpers/stackmemory')
const reg = fileRegistry()
const DAY = 86400

test('retention deletes expired frames from every tier, keeps keep_forever, data and parents, and leaves the tiers consistent', async () => {
  const e = reg.env()
  const db = new Database(e.dbPath)
  const sm = new StackMemory(db)
  const m = await reg.open({ ...e.config, dbPath: undefined, database: db } as any)
  const now = Math.floor(Date.now() / 1000)
  const t = e.prefix.slice(4, 10)
  const old = (id: string, o: any = {}) => simpleBundle(`${t}-${id}`, { createdAt: now - 500 * DAY, closedAt: now - 400 * DAY, ...o })
  const bundles: Record<string, FrameBundle> = {
    gone: old('gone'),
    parent: old('parent'),
    child: simpleBundle(`${t}-child`, { parent: `${t}-parent`, createdAt: now - 20 * DAY, closedAt: now - 10 * DAY }),
    forever: old('forever'),
    week: simpleBundle(`${t}-week`, { createdAt: now - 9 * DAY, closedAt: now - 8 * DAY }),
    hot: old('hot'),
    written: old('written'),
  }
  bundles.forever.frame.retention_policy = 'keep_forever'
  bundles.week.frame.retention_policy = 'ttl_7d'
  await m.storeMany(Object.values(bundles))
  const id = (k: string) => idOf(bundles[k])
  await m.migrate({ toTier: 'cold', frameIds: ['gone', 'parent', 'forever', 'written'].map(id) })
  await m.migrate({ toTier: 'warm', frameIds: [id('week')] })
  // A frame that went cold and came back: hot, no copy left anywhere.
  await m.migrate({ toTier: 'cold', frameIds: [id('hot')] })
  await m.migrate({ toTier: 'hot', frameIds: [id('hot')] })
  // StackMemory writes to an archived frame: its rows are data on top of the archived body.
  const ev = sm.addEvent(id('written'), 'note', { text: 'written after archiving' })
  expect(redisFrameIds(e.prefix).has(id('week'))).toBe(true)
  const before = archiveRows(e.schema)
  for (const k of ['gone', 'parent', 'child', 'forever', 'week', 'written']) expect(before.has(id(k))).toBe(true)

  const rep: any = await m.compact()
  expect(rep).toMatchObject({ retentionDeleted: 3, stubsDropped: 2, stubsExpired: 1, retentionKept: 1 })

  // PostgreSQL: the expired rows are gone; keep_forever, the young child and the written stub stay.
  const arch = archiveRows(e.schema)
  expect([...arch.keys()].sort()).toEqual(['child', 'forever', 'written'].map(id).sort())
  // Redis: the ttl_7d frame's copy went with it.
  expect(redisFrameIds(e.prefix).has(id('week'))).toBe(false)
  // SQLite: gone and week removed; parent kept as an expired stub for its child.
  const rows = new Map(sqliteAll(e.dbPath, 'SELECT frame_id AS id, tier_status AS tier FROM frames').map((r: any) => [r.id, r.tier]))
  expect(rows.has(id('gone'))).toBe(false)
  expect(rows.has(id('week'))).toBe(false)
  expect(rows.get(id('parent'))).toBe('expired')
  expect(rows.get(id('hot'))).toBe('hot')
  expect(sqliteAll(e.dbPath, 'SELECT count(*) AS n FROM tier_journal WHERE step IN (\'started\', \'verified\')')[0].n).toBe(0)

  // Reads: gone is gone; the expired stub is its row alone; the others are whole.
  expect(await m.retrieve(id('gone'))).toBeNull()
  const stub = await m.retrieve(id('parent'))
  expect(stub).toMatchObject({ frame: { frame_id: id('parent') }, events: [], anchors: [], expired: true })
  for (const k of ['child', 'forever', 'hot']) expect(await m.retrieve(id(k), { promote: false })).toEqual(normalized(bundles[k]))
  const w = await m.retrieve(id('written'), { promote: false })
  expect(w!.events!.map((x: any) => x.event_id)).toContain(ev.event_id)

  // The expired stub is in no tier: counted apart, never moved, and everything verifies.
  const st = await m.status()
  expect((st as any).expiredStubs).toBe(1)
  const back = await m.migrate({ toTier: 'hot', frameIds: [id('parent')] })
  expect(back.moved).toEqual([])
  expect(back.skipped[0].reason).toMatch(/expired/)
  const v = await m.verify()
  expect({ clean: v.clean, findings: v.findings }).toEqual({ clean: true, findings: [] })
  // Applying it again changes nothing.
  expect(await m.compact()).toMatchObject({ retentionDeleted: 0, stubsDropped: 0, stubsExpired: 0 })
})

test("a stub whose archive row another machine's retention deleted is expired here too", async () => {
  const a = reg.env()
  const b = { ...reg.env(), schema: a.schema, prefix: a.prefix }
  const cfgA = a.config
  const cfgB = { ...b.config, tiers: a.config.tiers }
  const ma = await reg.open(cfgA)
  const mb = await reg.open(cfgB)
  const now = Math.floor(Date.now() / 1000)
  const shared = simpleBundle(`shared-${a.prefix.slice(4, 10)}`, { createdAt: now - 500 * DAY, closedAt: now - 400 * DAY })
  // Both machines hold the frame; both archive it (one row, shared).
  await ma.store(shared)
  await mb.store(shared)
  await ma.migrate({ toTier: 'cold', frameIds: [idOf(shared)] })
  await mb.migrate({ toTier: 'cold', frameIds: [idOf(shared)] })
  // Machine A applies retention first: the shared row goes, and A's stub.
  expect(await ma.compact()).toMatchObject({ retentionDeleted: 1, stubsDropped: 1 })
  expect(archiveRows(a.schema).has(idOf(shared))).toBe(false)
  // Machine B finds its stub past retention with no archive row left: it goes too.
  expect(await mb.compact()).toMatchObject({ stubsDropped: 1 })
  expect(sqliteAll(b.dbPath, 'SELECT count(*) AS n FROM frames')[0].n).toBe(0)
  expect((await mb.verify()).clean).toBe(true)
})
