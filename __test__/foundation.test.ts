// The foundation: the hot tier over StackMemory's own SQLite file, the API's errors, concurrency,
// and a clean shutdown. Real files, real SQLite (our addon's and StackMemory's better-sqlite3).
import { spawn, spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import Database from 'better-sqlite3'

import { TierManager } from '../index.js'
import { foreignBetterSqlite3 } from './helpers/gen'
// eslint-disable-next-line @typescript-eslint/no-require-imports
const native = require('../binding.js')
import type { FrameBundle } from '../index.js'

const FIXTURES: FrameBundle[] = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures/frames.json'), 'utf8'))
const SM_SCHEMA = fs.readFileSync(path.join(__dirname, 'fixtures/stackmemory-schema.sql'), 'utf8')

let dir: string
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smt-foundation-'))
})
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true })
})

let n = 0
function dbFile(): string {
  n += 1
  return path.join(dir, `db${n}`, 'context.db')
}

const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v))

/**
 * Every row of StackMemory's tables, to prove a failed call changed nothing. Read from a child
 * process: a second SQLite library in this process next to an open TierManager is refused.
 */
function snapshot(file: string): string {
  const r = spawnSync(process.execPath, ['-e', `
    const Database = require(${JSON.stringify(require.resolve('better-sqlite3'))})
    const db = new Database(process.argv[1], { readonly: true })
    const rows = ['frames', 'events', 'anchors', 'tier_metadata'].map((t) => db.prepare('SELECT * FROM ' + t + ' ORDER BY rowid').all())
    process.stdout.write(JSON.stringify(rows))`, file], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(r.stderr)
  return r.stdout
}

async function expectCode(p: Promise<unknown>, code: string, messagePart?: string | RegExp): Promise<Error> {
  let err: any
  try {
    await p
  } catch (e) {
    err = e
  }
  // Errors from the addon come from Node's realm, not jest's sandbox: check the tag.
  expect(Object.prototype.toString.call(err)).toBe('[object Error]')
  expect(err.code).toBe(code)
  if (messagePart) expect(err.message).toMatch(messagePart)
  return err
}

/** A small generated bundle with its own ids. */
function bundle(id: string, extra: Partial<FrameBundle['frame']> = {}): FrameBundle {
  return {
    frame: {
      frame_id: id,
      run_id: 'run-1',
      project_id: 'cli-project',
      parent_frame_id: null,
      depth: 0,
      type: 'task',
      name: `task ${id}`,
      state: 'closed',
      inputs: { goals: `goal of ${id}` },
      outputs: {},
      digest_text: `digest of ${id}`,
      digest_json: {},
      created_at: 1767960000,
      closed_at: 1767963600,
      retention_policy: 'default',
      ...extra,
    },
    events: [
      { event_id: `${id}-e1`, frame_id: id, run_id: 'run-1', seq: 1, event_type: 'user_message', payload: { content: 'hi' }, ts: 1767960000000 },
      { event_id: `${id}-e2`, frame_id: id, run_id: 'run-1', seq: 2, event_type: 'assistant_message', payload: { content: 'ok' }, ts: 1767960001000 },
    ],
    anchors: [
      { anchor_id: `${id}-a1`, frame_id: id, project_id: '', type: 'FACT', text: `fact of ${id}`, priority: 5, created_at: 1767960000, metadata: {} },
    ],
  }
}

describe('round trip', () => {
  test('the three StackMemory fixture bundles come back exactly as stored', async () => {
    const m = await TierManager.open({ dbPath: dbFile() })
    try {
      expect(await m.storeMany(clone(FIXTURES))).toBe(3)
      for (const b of FIXTURES) {
        expect(await m.retrieve(b.frame.frame_id)).toStrictEqual(b)
      }
      const s = await m.status()
      expect(s.tiers.hot.frames).toBe(3)
      expect(s.mode).toBe('local-only')
    } finally {
      await m.close()
    }
  })

  test('JSON columns as strings, ISO times, events out of order, unknown keys', async () => {
    const m = await TierManager.open({ dbPath: dbFile() })
    try {
      const b: any = bundle('norm-1')
      b.frame.inputs = JSON.stringify({ goals: 'parse me' })
      b.frame.created_at = '2026-01-09T12:00:00Z'
      b.frame.custom_flag = { kept: true }
      b.events = [b.events[1], b.events[0]]
      b.events[0].payload = JSON.stringify({ content: 'ok' })
      b.anchors[0].metadata = '{"source":"test"}'
      b.anchors[0].team = 'kept too'
      await m.store(b)
      const r: any = await m.retrieve('norm-1')
      expect(r.frame.inputs).toEqual({ goals: 'parse me' })
      expect(r.frame.created_at).toBe(Date.parse('2026-01-09T12:00:00Z') / 1000)
      expect(r.frame.custom_flag).toEqual({ kept: true })
      expect(r.events.map((e: any) => e.seq)).toEqual([1, 2])
      expect(r.events[1].payload).toEqual({ content: 'ok' })
      expect(r.anchors[0].metadata).toEqual({ source: 'test' })
      expect(r.anchors[0].team).toBe('kept too')
    } finally {
      await m.close()
    }
  })

  test('store is an upsert by frame_id: the new version replaces events and anchors', async () => {
    const m = await TierManager.open({ dbPath: dbFile() })
    try {
      const v1 = await m.store(bundle('up-1'))
      const b2 = bundle('up-1', { name: 'renamed' })
      b2.events = b2.events!.slice(0, 1)
      const v2 = await m.store(b2)
      expect(v2).toBeGreaterThan(v1)
      const r = await m.retrieve('up-1')
      expect(r!.frame.name).toBe('renamed')
      expect(r!.events).toHaveLength(1)
      expect((await m.status()).tiers.hot.frames).toBe(1)
    } finally {
      await m.close()
    }
  })

  test('retrieve of an unknown id is null; delete removes the frame with its rows', async () => {
    const file = dbFile()
    const m = await TierManager.open({ dbPath: file })
    try {
      expect(await m.retrieve('no-such-frame')).toBeNull()
      await m.store(bundle('del-1'))
      expect(await m.delete('del-1')).toBe(true)
      expect(await m.delete('del-1')).toBe(false)
      expect(await m.retrieve('del-1')).toBeNull()
    } finally {
      await m.close()
    }
    const db = new Database(file, { readonly: true })
    expect(db.prepare("SELECT count(*) AS c FROM events WHERE frame_id = 'del-1'").get()).toEqual({ c: 0 })
    db.close()
  })
})

describe("StackMemory's own database", () => {
  test('a new file gets StackMemory\'s schema with FTS, usable by a StackMemory-style client', async () => {
    const file = dbFile()
    const m = await TierManager.open({ dbPath: file })
    await m.store(clone(FIXTURES[0]))
    await m.close()
    const db = new Database(file)
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type IN ('table','trigger')").all().map((r: any) => r.name)
    for (const t of ['frames', 'events', 'anchors', 'frames_fts', 'frames_ai', 'frames_ad', 'frames_au', 'tier_metadata']) {
      expect(tables).toContain(t)
    }
    const hit = db.prepare("SELECT rowid FROM frames_fts WHERE frames_fts MATCH 'logouts'").all()
    expect(hit).toHaveLength(1)
    db.close()
  })

  test('a file pre-created by StackMemory keeps working: its inserts, FTS and foreign keys', async () => {
    const file = dbFile()
    fs.mkdirSync(path.dirname(file), { recursive: true })
    const sm = new Database(file)
    sm.exec(SM_SCHEMA)
    sm.pragma('foreign_keys = ON')
    const insertFrame = sm.prepare(
      `INSERT INTO frames (frame_id, run_id, project_id, parent_frame_id, depth, type, name, state, inputs, outputs, digest_text, digest_json, created_at, closed_at)
       VALUES (?, 'run-sm', 'cli-project', ?, ?, 'task', ?, 'closed', '{}', '{}', ?, '{}', 1767960000, 1767963600)`,
    )
    insertFrame.run('sm-before', null, 0, 'written by stackmemory before', 'zebra digest')
    sm.close() // one SQLite library per process at a time (see the next tests)

    const m = await TierManager.open({ dbPath: file })
    await m.storeMany(clone(FIXTURES))
    // StackMemory's frame, stored by StackMemory, is readable through us.
    const before = await m.retrieve('sm-before')
    expect(before!.frame.name).toBe('written by stackmemory before')
    await m.close()

    // StackMemory writes after us: a child under one of our frames, with an event.
    const sm2 = new Database(file)
    sm2.pragma('foreign_keys = ON')
    const insertFrame2 = sm2.prepare(insertFrame.source)
    insertFrame2.run('sm-after', FIXTURES[0].frame.frame_id, 1, 'written by stackmemory after', 'giraffe digest')
    sm2.prepare("INSERT INTO events (event_id, run_id, frame_id, seq, event_type, payload, ts) VALUES ('sm-e', 'run-sm', 'sm-after', 1, 'decision', '{}', 1767960000000)").run()
    const fts = (q: string) => sm2.prepare('SELECT f.frame_id FROM frames_fts JOIN frames f ON f.rowid = frames_fts.rowid WHERE frames_fts MATCH ? ORDER BY f.frame_id').all(q).map((r: any) => r.frame_id)
    expect(fts('zebra')).toEqual(['sm-before'])
    expect(fts('giraffe')).toEqual(['sm-after'])
    expect(fts('logouts')).toEqual([FIXTURES[0].frame.frame_id])
    expect(sm2.pragma('foreign_key_check')).toEqual([])
    expect(sm2.pragma('integrity_check', { simple: true })).toBe('ok')
    // A child with an unknown parent is still refused: the foreign key survived.
    expect(() => insertFrame2.run('orphan', 'nobody', 1, 'x', 'y')).toThrow(/FOREIGN KEY/)
    sm2.close()

    const again = await TierManager.open({ dbPath: file })
    expect((await again.retrieve('sm-after'))!.events).toHaveLength(1)
    await again.close()
  })

  test("works while StackMemory's own connection writes the same file from its process", async () => {
    const file = dbFile()
    const m = await TierManager.open({ dbPath: file })
    // StackMemory's better-sqlite3 connection, writing as fast as it can for 1.5 s.
    const writer = spawn(process.execPath, ['-e', `
      const Database = require(${JSON.stringify(require.resolve('better-sqlite3'))})
      const db = new Database(process.argv[1]); db.pragma('journal_mode = WAL'); db.pragma('busy_timeout = 10000')
      const ins = db.prepare("INSERT INTO frames (frame_id, run_id, project_id, depth, type, name, state, created_at) VALUES (?, 'r', 'p', 0, 'task', ?, 'active', 1767960000)")
      let n = 0; const end = Date.now() + 1500
      while (Date.now() < end) { ins.run('sm-' + n, 'sm frame ' + n); n++ }
      db.close(); console.log(n)`, file])
    let out = ''
    writer.stdout.on('data', (d) => (out += d))
    const exited = new Promise<number>((resolve) => writer.on('exit', (code) => resolve(code ?? -1)))
    const ids = Array.from({ length: 1000 }, (_, i) => `ours-${i}`)
    for (let k = 0; k < ids.length; k += 100) {
      await Promise.all(ids.slice(k, k + 100).map((id) => m.store(bundle(id))))
    }
    for (const id of ids.slice(0, 50)) expect((await m.retrieve(id))!.frame.frame_id).toBe(id)
    expect(await exited).toBe(0)
    const smWrites = Number(out.trim())
    expect(smWrites).toBeGreaterThan(0)
    expect((await m.status()).tiers.hot.frames).toBe(1000 + smWrites)
    await m.close()
    const db = new Database(file, { readonly: true })
    expect(db.prepare('SELECT count(*) AS c FROM frames').get()).toEqual({ c: 1000 + smWrites })
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok')
    db.close()
  })

  test('a foreign SQLite library in the same process is refused, before any damage', async () => {
    // Two SQLite libraries in one process cannot see each other's locks and corrupt the file. The
    // addon runs on better-sqlite3's library; a second copy of better-sqlite3 is a foreign one.
    const Foreign = foreignBetterSqlite3()
    const file = dbFile()
    const m = await TierManager.open({ dbPath: file })
    await m.store(bundle('before-foreign'))
    const foreign = new Foreign(file)
    expect((foreign.prepare('SELECT count(*) AS n FROM frames').get() as any).n).toBe(1)
    const err = await expectCode(m.store(bundle('during-foreign')), 'ERR_STORAGE', /another SQLite library in this process/)
    expect(err.message).toMatch(/same better-sqlite3/)
    // A foreign library cannot bind the addon either.
    expect(() => (foreign as any).loadExtension(native.addonPath(), 'sqlite3_stackmemorytiers_init')).toThrow(/already bound to another SQLite library/)
    await m.close()
    // Open before us: refused at open.
    await expectCode(TierManager.open({ dbPath: file }), 'ERR_STORAGE', /another SQLite library/)
    foreign.close()
    const again = await TierManager.open({ dbPath: file })
    expect((await again.retrieve('before-foreign'))!.frame.frame_id).toBe('before-foreign')
    expect(await again.retrieve('during-foreign')).toBeNull()
    await again.close()
    const check = new Database(file, { readonly: true })
    expect(check.pragma('integrity_check', { simple: true })).toBe('ok')
    check.close()
  })

  test('reopening is idempotent and an older layout is upgraded without duplicate columns', async () => {
    const file = dbFile()
    fs.mkdirSync(path.dirname(file), { recursive: true })
    // An "old version": the seed design's columns already added by someone else, no tier tables.
    const sm = new Database(file)
    sm.exec(SM_SCHEMA)
    sm.exec("ALTER TABLE frames ADD COLUMN tier_status TEXT DEFAULT 'hot'")
    sm.close()
    for (let i = 0; i < 3; i++) {
      const m = await TierManager.open({ dbPath: file })
      await m.store(bundle(`re-${i}`))
      const s = await m.status()
      expect(s.schemaVersion).toBe(4)
      expect(s.tiers.hot.frames).toBe(i + 1)
      await m.close()
    }
    const db = new Database(file, { readonly: true })
    const cols = db.prepare('PRAGMA table_info(frames)').all().map((c: any) => c.name)
    expect(cols.filter((c: string) => c === 'tier_status')).toHaveLength(1)
    for (const c of ['last_accessed', 'access_count']) expect(cols.filter((x: string) => x === c)).toHaveLength(1)
    db.close()
  })
})

describe('errors: a stable code, and nothing changed', () => {
  let file: string
  let m: TierManager
  beforeAll(async () => {
    file = dbFile()
    m = await TierManager.open({ dbPath: file, limits: { maxFrameBytes: 16384 } })
    await m.storeMany(clone(FIXTURES).slice(0, 2))
  })
  afterAll(async () => {
    await m.close()
  })

  const cases: Array<[string, () => unknown, string, RegExp]> = [
    ['no frame', () => ({}), 'ERR_INVALID_FRAME', /frame/],
    ['frame is not an object', () => ({ frame: 'x' }), 'ERR_INVALID_FRAME', /frame/],
    ['missing frame_id', () => { const b: any = bundle('x'); delete b.frame.frame_id; return b }, 'ERR_INVALID_FRAME', /frame_id/],
    ['numeric frame_id', () => { const b: any = bundle('x'); b.frame.frame_id = 42; return b }, 'ERR_INVALID_FRAME', /frame_id/],
    ['bad created_at', () => bundle('x', { created_at: 'yesterday-ish' }), 'ERR_INVALID_FRAME', /created_at/],
    ['event seq not a number', () => { const b: any = bundle('x'); b.events[1].seq = 'two'; return b }, 'ERR_INVALID_FRAME', /events\[1\]\.seq/],
    ['event of another frame', () => { const b: any = bundle('x'); b.events[0].frame_id = 'other'; return b }, 'ERR_INVALID_FRAME', /events\[0\]\.frame_id/],
    ['anchors not an array', () => { const b: any = bundle('x'); b.anchors = {}; return b }, 'ERR_INVALID_FRAME', /anchors/],
    ['unparseable JSON column', () => bundle('x', { inputs: '{not json' }), 'ERR_INVALID_FRAME', /inputs/],
    ['reserved key', () => bundle('x', { tier_status: 'cold' }), 'ERR_INVALID_FRAME', /tier_status/],
    ['unknown parent', () => bundle('x', { parent_frame_id: 'nobody', depth: 1 }), 'ERR_INVALID_FRAME', /parent_frame_id/],
    ['too large', () => bundle('x', { digest_text: 'y'.repeat(40_000) }), 'ERR_FRAME_TOO_LARGE', /16384/],
  ]

  test.each(cases)('store: %s', async (_name, make, code, msg) => {
    const before = snapshot(file)
    await expectCode(m.store(make() as FrameBundle), code, msg)
    expect(snapshot(file)).toBe(before)
  })

  test('storeMany is all or nothing and names the bundle at fault', async () => {
    const before = snapshot(file)
    const bad: any = bundle('many-2')
    bad.events[0].seq = null
    await expectCode(m.storeMany([bundle('many-1'), bad, bundle('many-3')]), 'ERR_INVALID_FRAME', /bundles\[1\]\.events\[0\]\.seq/)
    expect(snapshot(file)).toBe(before)
    await expectCode(m.storeMany('nope' as any), 'ERR_INVALID_ARGUMENT', /bundles/)
    expect(snapshot(file)).toBe(before)
  })

  test('bad arguments to retrieve, delete, migrate, search', async () => {
    const before = snapshot(file)
    await expectCode(m.retrieve(42 as any), 'ERR_INVALID_ARGUMENT', /frameId/)
    await expectCode(m.retrieve(''), 'ERR_INVALID_ARGUMENT', /frameId/)
    await expectCode(m.retrieve('x', { promote: 'yes' } as any), 'ERR_INVALID_ARGUMENT', /promote/)
    await expectCode(m.delete(null as any), 'ERR_INVALID_ARGUMENT', /frameId/)
    await expectCode(m.migrate({} as any), 'ERR_INVALID_ARGUMENT', /toTier/)
    await expectCode(m.migrate({ toTier: 7 } as any), 'ERR_INVALID_ARGUMENT', /toTier/)
    await expectCode(m.migrate({ toTier: 'warm', olderThan: 'soon' }), 'ERR_INVALID_ARGUMENT', /olderThan/)
    await expectCode(m.search(5 as any), 'ERR_INVALID_ARGUMENT', /query/)
    await expectCode(m.search('x', { limit: 0 }), 'ERR_INVALID_ARGUMENT', /limit/)
    expect(snapshot(file)).toBe(before)
  })

  test('bad configuration names the field', async () => {
    const bad: Array<[unknown, RegExp]> = [
      [{ dbPath: 3 }, /dbPath/],
      [{ tiers: { sqlite: { maxFrames: -1 } } }, /tiers\.sqlite\.maxFrames/],
      [{ tiers: { sqlite: { maxSize: 'lots' } } }, /tiers\.sqlite\.maxSize/],
      [{ tiers: { redis: { enabled: true } } }, /tiers\.redis\.connectionString/],
      [{ tiers: { postgres: { compressionLevel: 99 } } }, /tiers\.postgres\.compressionLevel/],
      [{ policies: { evictionStrategy: 'RANDOM' } }, /policies\.evictionStrategy/],
      [{ tierz: {} }, /tierz/],
      ['not an object', /config/],
    ]
    for (const [cfg, msg] of bad) {
      await expectCode(TierManager.open(cfg as any), 'ERR_INVALID_CONFIG', msg)
    }
  })

  test('a file that is not a database is ERR_STORAGE with the cause, and is left alone', async () => {
    const f = path.join(dir, 'not-a-db.db')
    fs.writeFileSync(f, 'this is not sqlite '.repeat(400))
    const before = fs.readFileSync(f)
    await expectCode(TierManager.open({ dbPath: f }), 'ERR_STORAGE', /not a database/)
    expect(fs.readFileSync(f).equals(before)).toBe(true)
  })

  test('every call after close() rejects with ERR_CLOSED', async () => {
    const c = await TierManager.open({ dbPath: dbFile() })
    await c.close()
    await c.close() // idempotent
    await expectCode(c.store(bundle('late')), 'ERR_CLOSED')
    await expectCode(c.storeMany([bundle('late')]), 'ERR_CLOSED')
    await expectCode(c.retrieve('late'), 'ERR_CLOSED')
    await expectCode(c.delete('late'), 'ERR_CLOSED')
    await expectCode(c.status(), 'ERR_CLOSED')
    await expectCode(c.migrate({ toTier: 'warm' }), 'ERR_CLOSED')
    await expectCode(c.search('x'), 'ERR_CLOSED')
    await expectCode(c.compact(), 'ERR_CLOSED')
  })

  test('the constructor is not a way around open()', () => {
    expect(() => new (TierManager as any)({})).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }))
  })
})

describe('concurrency and the event loop', () => {
  test('200 concurrent store and retrieve calls', async () => {
    const m = await TierManager.open({ dbPath: dbFile() })
    try {
      const ops: Promise<unknown>[] = []
      for (let i = 0; i < 100; i++) ops.push(m.store(bundle(`c-${i}`)))
      for (let i = 0; i < 100; i++) ops.push(m.retrieve(`c-${i}`))
      const results = await Promise.all(ops)
      // A retrieve races its store: it sees either nothing or the whole bundle, never half.
      for (const r of results.slice(100) as Array<FrameBundle | null>) {
        if (r !== null) {
          expect(r.events).toHaveLength(2)
          expect(r.anchors).toHaveLength(1)
        }
      }
      const all = await Promise.all(Array.from({ length: 100 }, (_, i) => m.retrieve(`c-${i}`)))
      all.forEach((r, i) => expect(r!.frame.frame_id).toBe(`c-${i}`))
      expect((await m.status()).tiers.hot.frames).toBe(100)
    } finally {
      await m.close()
    }
  })

  test('SQLite work runs off the JS thread: timers fire during a long storeMany', async () => {
    const m = await TierManager.open({ dbPath: dbFile() })
    try {
      const many = Array.from({ length: 3000 }, (_, i) => bundle(`loop-${i}`))
      let ticks = 0
      const t = setInterval(() => ticks++, 1)
      await m.storeMany(many)
      clearInterval(t)
      expect(ticks).toBeGreaterThan(0)
    } finally {
      await m.close()
    }
  })

  test('accesses are counted in memory and flushed in batches (at close at the latest)', async () => {
    const file = dbFile()
    const m = await TierManager.open({ dbPath: file, limits: { accessFlushEvery: 1_000_000, accessFlushInterval: '1h' } })
    await m.store(bundle('acc-1'))
    for (let i = 0; i < 7; i++) await m.retrieve('acc-1')
    const count = () => {
      const db = new Database(file, { readonly: true })
      // Our own table: an UPDATE of frames would make StackMemory's FTS trigger reindex the frame.
      const r: any = db.prepare("SELECT access_count FROM tier_access WHERE frame_id = 'acc-1'").get()
      db.close()
      return r ? r.access_count : 0
    }
    expect(count()).toBe(0) // no disk write per read
    await m.close()
    expect(count()).toBe(7)
  })

  test('close() lets the Node process exit promptly', () => {
    const script = `
      const { TierManager } = require(${JSON.stringify(path.join(__dirname, '..', 'index.js'))})
      ;(async () => {
        const m = await TierManager.open({ dbPath: ${JSON.stringify(dbFile())} })
        await m.store(${JSON.stringify(bundle('exit-1'))})
        await m.retrieve('exit-1')
        await m.close()
        console.log('closed')
      })()`
    const start = Date.now()
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20_000 })
    expect(r.stderr).toBe('')
    expect(r.stdout.trim()).toBe('closed')
    expect(r.status).toBe(0)
    expect(Date.now() - start).toBeLessThan(10_000)
  })
})
