// StackMemory adopts the tiers: a StackMemory-shaped program (better-sqlite3 on StackMemory's schema,
// its write patterns) and the handle of `stackmemory-tiers/stackmemory` in the same process. After
// hot → warm → cold, StackMemory's reads through the handle give what they gave before any move;
// search finds moved text; GC archives before it deletes; hooks feed the tiers. Real servers.
import * as fs from 'node:fs'
import * as path from 'node:path'
import Database from 'better-sqlite3'

import { attachStackMemory } from '../stackmemory'
import { registry, psql, sleep } from './helpers/gen'

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { StackMemory } = require('./helpers/stackmemory')
const reg = registry()
const handles: Array<{ detach(): Promise<void> }> = []
afterAll(async () => {
  for (const h of handles) await h.detach().catch(() => {})
  await reg.closeAll()
})

const OURS = ['tier_status', 'last_accessed', 'access_count']
/** StackMemory's own reads (its unchanged code), our bookkeeping columns aside. */
function smView(sm: any, id: string) {
  const frame = sm.getFrame(id)
  for (const c of OURS) delete frame[c]
  return { frame, events: sm.getFrameEvents(id), anchors: sm.getFrameAnchors(id) }
}
const byId = (k: string) => (a: any, b: any) => (a[k] < b[k] ? -1 : a[k] > b[k] ? 1 : 0)

/** A fake of StackMemory's frameLifecycleHooks singleton, with its documented interface. */
function lifecycleHooks() {
  const closed = new Map<string, (ctx: any) => unknown>()
  const created = new Map<string, (ctx: any) => unknown>()
  return {
    closed,
    created,
    onFrameClosed(name: string, handler: (ctx: any) => unknown) {
      closed.set(name, handler)
      return () => closed.delete(name)
    },
    onFrameCreated(name: string, handler: (ctx: any) => unknown) {
      created.set(name, handler)
      return () => created.delete(name)
    },
    fireClosed(ctx: any) {
      for (const h of closed.values()) h(ctx)
    },
    fireCreated(ctx: any) {
      for (const h of created.values()) h(ctx)
    },
  }
}

/** StackMemory writing a project's history: tasks with subtasks, events, digests, anchors. */
function writeHistory(sm: any, n: number, createdAt: number): string[] {
  const ids: string[] = []
  for (let t = 0; t < n; t++) {
    const task = sm.createFrame({ projectId: 'git-github-com-acme-widget-service', name: `task ${t}`, inputs: { goal: `goal ${t}` } })
    ids.push(task)
    for (let s = 0; s < 2; s++) {
      const sub = sm.createFrame({ projectId: 'git-github-com-acme-widget-service', parent: task, depth: 1, type: 'subtask', name: `subtask ${t}.${s}` })
      for (let e = 0; e < 4; e++) sm.addEvent(sub, e % 2 ? 'tool_result' : 'tool_call', { tool: 'Read', text: `result ${t}.${s}.${e} zebrafish${t}x${s}` })
      sm.addAnchor(sub, 'DECISION', `decided ${t}.${s}`, 7)
      sm.closeFrame(sub, { summary: `subtask ${t}.${s} done`, events: 4 })
      ids.push(sub)
    }
    sm.addEvent(task, 'decision', { text: `plan ${t}` })
    sm.closeFrame(task, { summary: `task ${t} done` })
  }
  sm.db.prepare('UPDATE frames SET created_at = ?, closed_at = ?').run(createdAt, createdAt + 60)
  return ids
}

test("StackMemory's reads through the handle are whole after hot → warm → cold; search finds moved text", async () => {
  const e = reg.env()
  fs.mkdirSync(path.dirname(e.dbPath), { recursive: true })
  const db = new Database(e.dbPath)
  const sm = new StackMemory(db)
  const ids = writeHistory(sm, 20, Math.floor(Date.now() / 1000) - 5 * 86400)
  const before = new Map(ids.map((id) => [id, smView(sm, id)]))
  const { dbPath: _unused, ...config } = e.config as any
  const h = await attachStackMemory({ database: db as any, projectId: 'git-github-com-acme-widget-service', config })
  handles.push(h)
  for (const to of ['warm', 'cold'] as const) {
    const r = await h.tiers.migrate({ toTier: to })
    expect(r.failed).toEqual([])
    expect(r.moved.length).toBe(ids.length)
    // StackMemory's unchanged code now sees stubs: the handle sees the frames whole. (Reads
    // through the handle may bring frames back hot, by learned admission: checked before them.)
    expect(sm.getFrameEvents(ids[1])).toEqual([])
    if (to === 'cold') {
      // A word that lives only in archived event text: StackMemory's FTS no longer has it, the
      // handle does (the SQLite search is StackMemory's frames_fts: names, digests, inputs and
      // outputs, not events).
      const hits = await h.searchFrames('zebrafish3x1')
      expect(hits.map((x: any) => x.frame_id)).toEqual([ids[3 * 3 + 2]])
      expect(hits[0].score).toBeGreaterThan(0)
      expect(hits[0].name).toBe('subtask 3.1')
    }
    for (const id of ids) {
      const want = before.get(id)!
      expect(await h.getFrame(id)).toEqual(want.frame)
      expect(await h.getFrameEvents(id)).toEqual(want.events)
      expect([...(await h.getFrameAnchors(id))].sort(byId('anchor_id'))).toEqual([...want.anchors].sort(byId('anchor_id')))
      expect((await h.getFrameEvents(id, 2)).length).toBe(Math.min(2, want.events.length))
    }
  }
  expect(await h.getFrame('no-such-frame')).toBeUndefined()
  expect(await h.getFrameEvents('no-such-frame')).toEqual([])
})

test('search ranks hits from every tier on one scale: a hot hit and an archived one compare', async () => {
  const e = reg.env()
  fs.mkdirSync(path.dirname(e.dbPath), { recursive: true })
  const db = new Database(e.dbPath)
  const sm = new StackMemory(db)
  const { dbPath: _unused, ...config } = e.config as any
  const h = await attachStackMemory({ database: db as any, projectId: 'p', config })
  handles.push(h)
  // Two frames with the word: the archived one has it in its name (weight A), the hot one only in
  // its digest (weight B). Normalised per source, both would score 1.
  const archived = sm.createFrame({ projectId: 'p', name: 'quokka migration' })
  sm.closeFrame(archived, { summary: 'done' })
  const hot = sm.createFrame({ projectId: 'p', name: 'other work' })
  sm.closeFrame(hot, { summary: 'saw a quokka once' })
  await h.tiers.migrate({ toTier: 'cold', frameIds: [archived] })
  const r = await h.tiers.search('quokka', { projectId: 'p' })
  expect(r.scale).toBe('ts_rank')
  expect(r.results.map((x) => [x.frameId, x.tier])).toEqual([[archived, 'cold'], [hot, 'hot']])
  expect(r.results[0].score).toBeGreaterThan(r.results[1].score * 1.5)
  // PostgreSQL failing mid-way is a warning, never a rejection.
  psql(`DROP SCHEMA ${e.schema} CASCADE`)
  const degraded = await h.tiers.search('quokka', { projectId: 'p' })
  expect(degraded.warnings.join(' ')).toMatch(/archive not searched/)
  expect(degraded.results.map((x) => x.frameId)).toContain(hot)
})

test('gc deletes what StackMemory\'s rules delete, each frame archived first and still retrievable', async () => {
  const e = reg.env()
  fs.mkdirSync(path.dirname(e.dbPath), { recursive: true })
  const db = new Database(e.dbPath)
  const sm = new StackMemory(db)
  const now = Math.floor(Date.now() / 1000)
  const mk = (name: string, policy: string, ageDays: number) => {
    const id = sm.createFrame({ projectId: 'p', name })
    sm.addEvent(id, 'observation', { text: `body of ${name}` })
    sm.closeFrame(id, { summary: name })
    db.prepare('UPDATE frames SET retention_policy = ?, created_at = ? WHERE frame_id = ?').run(policy, now - ageDays * 86400, id)
    return id
  }
  const gone = [mk('old default', 'default', 100), mk('old archive', 'archive', 95), mk('ttl 30', 'ttl_30d', 31), mk('ttl 7', 'ttl_7d', 8)]
  const stays = [mk('young default', 'default', 10), mk('kept forever', 'keep_forever', 400), mk('young ttl', 'ttl_30d', 20)]
  // One of the old ones is already archived; a year-old frame with a millisecond created_at.
  await (async () => {
    const ms = mk('old in ms', 'default', 0)
    db.prepare('UPDATE frames SET created_at = ? WHERE frame_id = ?').run((now - 200 * 86400) * 1000, ms)
    gone.push(ms)
  })()
  const bodies = new Map(gone.map((id) => [id, smView(sm, id)]))
  const { dbPath: _unused, ...config } = e.config as any
  const h = await attachStackMemory({ database: db as any, projectId: 'p', config })
  handles.push(h)
  await h.tiers.migrate({ toTier: 'cold', frameIds: [gone[1]] })
  const dry = await h.gc({ retentionDays: 90, dryRun: true })
  expect([...dry.deleted].sort()).toEqual([...gone].sort())
  expect(db.prepare('SELECT count(*) AS n FROM frames').get()).toEqual({ n: gone.length + stays.length })
  const rep = await h.gc({ retentionDays: 90 })
  expect([...rep.deleted].sort()).toEqual([...gone].sort())
  expect(rep.kept).toEqual([])
  const left = db.prepare('SELECT frame_id FROM frames').all().map((r: any) => r.frame_id)
  expect(left.sort()).toEqual([...stays].sort())
  for (const id of gone) {
    expect(await h.getFrame(id)).toEqual(bodies.get(id)!.frame)
    expect(await h.getFrameEvents(id)).toEqual(bodies.get(id)!.events)
    expect((await h.tiers.retrieve(id))!.frame.frame_id).toBe(id)
  }
})

test('archiveBeforeGc: StackMemory\'s own runGC deletes, and what it deleted was archived first', async () => {
  const e = reg.env()
  fs.mkdirSync(path.dirname(e.dbPath), { recursive: true })
  const db = new Database(e.dbPath)
  const sm = new StackMemory(db)
  const id = sm.createFrame({ projectId: 'p', name: 'a frame StackMemory collects' })
  sm.addEvent(id, 'observation', { text: 'only copy' })
  sm.closeFrame(id, { summary: 'old' })
  db.prepare('UPDATE frames SET created_at = ? WHERE frame_id = ?').run(Math.floor(Date.now() / 1000) - 120 * 86400, id)
  const want = smView(sm, id)
  // StackMemory's SQLiteAdapter.runGC, as it behaves: hard delete by retention, no archive.
  const adapter = {
    calls: 0,
    runGC(this: any, { retentionDays = 90 } = {}) {
      this.calls++
      const cut = Math.floor(Date.now() / 1000) - retentionDays * 86400
      return db.prepare("DELETE FROM frames WHERE retention_policy IN ('default', 'archive') AND created_at < ?").run(cut).changes
    },
  }
  const { dbPath: _unused, ...config } = e.config as any
  const h = await attachStackMemory({ database: db as any, projectId: 'p', config })
  handles.push(h)
  const restore = h.archiveBeforeGc(adapter)
  expect(await adapter.runGC({ retentionDays: 90 })).toBe(1)
  expect(adapter.calls).toBe(1)
  expect(sm.getFrame(id)).toBeUndefined()
  expect(await h.getFrame(id)).toEqual(want.frame)
  expect(await h.getFrameEvents(id)).toEqual(want.events)
  restore()
  expect(adapter.runGC.name).toBe('runGC')
  expect(Object.prototype.hasOwnProperty.call(adapter, 'runGC')).toBe(true)
})

test('gc without PostgreSQL deletes nothing unless forced', async () => {
  const e = reg.env()
  fs.mkdirSync(path.dirname(e.dbPath), { recursive: true })
  const db = new Database(e.dbPath)
  const sm = new StackMemory(db)
  const id = sm.createFrame({ projectId: 'p', name: 'old' })
  sm.closeFrame(id, { summary: 'x' })
  db.prepare('UPDATE frames SET created_at = ?').run(Math.floor(Date.now() / 1000) - 200 * 86400)
  const h = await attachStackMemory({ database: db as any, projectId: 'p', config: { policies: { backgroundSync: false } } })
  handles.push(h)
  const rep = await h.gc()
  expect(rep.deleted).toEqual([])
  expect(rep.kept[0].reason).toMatch(/no archive/)
  expect(sm.getFrame(id)).toBeDefined()
  const forced = await h.gc({ force: true })
  expect(forced.deleted).toEqual([id])
  expect(forced.deletedWithoutArchive).toBe(1)
  expect(sm.getFrame(id)).toBeUndefined()
})

test('hooks: close and create feed the tiers, never throw into StackMemory; detach removes them', async () => {
  const e = reg.env()
  fs.mkdirSync(path.dirname(e.dbPath), { recursive: true })
  const db = new Database(e.dbPath)
  const sm = new StackMemory(db)
  const hooks = lifecycleHooks()
  const errors: Error[] = []
  const { dbPath: _unused, ...config } = e.config as any
  const h = await attachStackMemory({ database: db as any, projectId: 'p', config, hooks, onError: (x) => errors.push(x) })
  expect([hooks.closed.size, hooks.created.size]).toEqual([1, 1])
  const id = sm.createFrame({ projectId: 'p', name: 'hooked' })
  hooks.fireCreated({ frame: sm.getFrame(id) })
  sm.addEvent(id, 'observation', { text: 'x' })
  const stale = sm.getFrame(id)
  sm.closeFrame(id, { summary: 'closed' })
  // The handler returns at once (StackMemory's close is not blocked) and re-reads the row.
  const t0 = Date.now()
  expect(hooks.fireClosed({ frame: stale, events: [], anchors: [] })).toBeUndefined()
  expect(Date.now() - t0).toBeLessThan(50)
  await sleep(200)
  const explained = await h.tiers.explain(id)
  // The hooks' writes reach the tiers (the frame is known, hot, sized), but a write is not an
  // access: its age comes from its own close time (docs/POLICY.md).
  expect(explained.access).toBeNull()
  expect(explained.tier).toBe('hot')
  expect(explained.expectedNext).toMatch(/^stays hot/)
  expect(explained.sizeBytes).toBeGreaterThan(0)
  // A bad frame object or a failure never throws into StackMemory.
  expect(() => hooks.fireClosed({ frame: null })).not.toThrow()
  expect(() => hooks.fireClosed({ frame: { frame_id: 'x'.repeat(600) } })).not.toThrow()
  await sleep(100)
  expect(errors.map((x: any) => x.code)).toEqual(['ERR_INVALID_ARGUMENT'])
  await h.detach()
  expect([hooks.closed.size, hooks.created.size]).toEqual([0, 0])
  await expect(h.tiers.status()).rejects.toMatchObject({ code: 'ERR_CLOSED' })
})

test('attachStackMemory rejects bad options with a field named', async () => {
  await expect(attachStackMemory({} as any)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', message: /projectId/ })
  await expect(attachStackMemory({ projectId: 'p', database: {} } as any)).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG', message: /database/ })
  const mem = new Database(':memory:')
  await expect(attachStackMemory({ projectId: 'p', database: mem as any, hooks: {} } as any)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', message: /hooks/ })
  await expect(attachStackMemory({ projectId: 'p', database: mem as any, config: {} })).rejects.toMatchObject({ code: 'ERR_INVALID_CONFIG', message: /in-memory/ })
  mem.close()
})
