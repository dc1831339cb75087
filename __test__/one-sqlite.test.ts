// StackMemory's own process: the addon on StackMemory's better-sqlite3 (one SQLite library),
// sharing the file with StackMemory's connection in the same process and in another one, and every
// write StackMemory makes kept through hot → warm → cold → hot. Real files, Redis and PostgreSQL.
import { execFileSync, spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import Database from 'better-sqlite3'

import { TierManager, sqliteLibrary } from '../index.js'
import { genBundles, registry, sleep, chunks } from './helpers/gen'

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { StackMemory, writeWhile } = require('./helpers/stackmemory')
const ROOT = path.join(__dirname, '..')
const reg = registry()
afterAll(() => reg.closeAll())

function smOpen(file: string): { db: Database.Database; sm: any } {
  fs.mkdirSync(path.dirname(file), { recursive: true })
  const db = new Database(file)
  return { db, sm: new StackMemory(db) }
}

function sqliteCheck(db: Database.Database): void {
  expect(db.pragma('integrity_check', { simple: true })).toBe('ok')
  // FTS5's own check: the index matches StackMemory's rows (throws when it does not).
  db.prepare("INSERT INTO frames_fts(frames_fts) VALUES ('integrity-check')").run()
}

test('the shipped addon defines no SQLite of its own: only its extension entry point', () => {
  const file = fs.readdirSync(ROOT).find((f) => f.endsWith('.node'))!
  const defined = execFileSync('nm', ['-D', '--defined-only', path.join(ROOT, file)], { encoding: 'utf8' })
  const sqlite = defined.split('\n').filter((l) => /\bsqlite3_/.test(l)).map((l) => l.trim().split(/\s+/).pop())
  expect(sqlite).toEqual(['sqlite3_stackmemorytiers_init'])
})

test("opened on StackMemory's Database: its SQLite library, its file, and its write lock", async () => {
  const e = reg.env()
  const { db, sm } = smOpen(e.dbPath)
  const m = await reg.open({ ...e.config, dbPath: undefined, database: db } as any)
  expect(sqliteLibrary()).toEqual({ version: (db.prepare('SELECT sqlite_version() AS v').get() as any).v, origin: 'host' } as any)
  expect((await m.status()).dbPath).toBe(db.name)
  // StackMemory's rows and ours, seen by each other at once (one library, one file).
  const id = sm.createFrame({ name: 'written by StackMemory' })
  expect((await m.retrieve(id))!.frame.name).toBe('written by StackMemory')
  await m.store(genBundles(1, { idPrefix: 'ours' }).bundles[0])
  expect(db.prepare("SELECT count(*) AS n FROM frames WHERE frame_id LIKE 'ours-%'").get()).toEqual({ n: 1 })
  // A write lock held by StackMemory's connection blocks ours until it commits.
  db.exec('BEGIN IMMEDIATE')
  let stored = false
  const pending = m.store(genBundles(1, { idPrefix: 'blocked' }).bundles[0]).then(() => (stored = true))
  await sleep(400)
  expect(stored).toBe(false)
  db.exec('COMMIT')
  await pending
  expect(stored).toBe(true)
  // The path is the Database's; a different dbPath is refused, naming the field.
  const err: any = await TierManager.open({ database: db, dbPath: path.join(e.dir, 'other.db') } as any).catch((x) => x)
  expect([err.code, /dbPath/.test(err.message)]).toEqual(['ERR_INVALID_CONFIG', true])
  sqliteCheck(db)
})

test('10 s of concurrent writers from both sides plus migrations lose nothing; integrity and FTS checks pass', async () => {
  const e = reg.env()
  const { db, sm } = smOpen(e.dbPath)
  const m = await reg.open({ ...e.config, dbPath: undefined, database: db } as any)
  const gen = genBundles(600, { idPrefix: 'cc', large: 0 })
  await m.storeMany(gen.bundles)
  const closed = [...gen.closed]
  const ours: string[] = []
  let stop = false
  const ourWriter = (async () => {
    let i = 0
    while (!stop) {
      const b = genBundles(1, { idPrefix: `w${i}` }).bundles[0]
      await m.store(b)
      ours.push(b.frame.frame_id)
      i++
    }
  })()
  const mover = (async () => {
    let k = 0
    while (!stop) {
      const to = (['warm', 'cold', 'hot'] as const)[k++ % 3]
      const r = await m.migrate({ toTier: to, frameIds: closed.slice((k * 37) % 500, ((k * 37) % 500) + 80) })
      expect(r.failed).toEqual([])
    }
  })()
  const smWrites = await writeWhile(sm, closed, 10_000, 7)
  stop = true
  await Promise.all([ourWriter, mover])
  await m.migrate({ toTier: 'hot' })
  for (const id of ours) expect((await m.retrieve(id))!.frame.frame_id).toBe(id)
  const events = new Set(db.prepare('SELECT event_id FROM events').all().map((r: any) => r.event_id))
  const missing = smWrites.events.filter((ev: any) => !events.has(ev.event_id))
  expect(missing).toEqual([])
  expect(smWrites.events.length).toBeGreaterThan(1000)
  sqliteCheck(db)
}, 120_000)

/** Every row a writer wrote, as the hot tier holds it at the end: byte for byte. */
function expectAllKept(db: Database.Database, w: any): void {
  const ev = db.prepare('SELECT event_id, frame_id, event_type, payload, ts FROM events WHERE event_id = ?')
  const lost: string[] = []
  for (const e of w.events) {
    const r: any = ev.get(e.event_id)
    if (!r || r.payload !== e.payload || r.frame_id !== e.frame_id || r.ts !== e.ts || r.event_type !== e.event_type) lost.push(e.event_id)
  }
  expect(lost).toEqual([])
  const an = db.prepare('SELECT text, frame_id FROM anchors WHERE anchor_id = ?')
  for (const a of w.anchors) expect(an.get(a.anchor_id)).toEqual({ text: a.text, frame_id: a.frame_id })
  const fr = db.prepare('SELECT digest_json, outputs FROM frames WHERE frame_id = ?')
  for (const [id, digest] of Object.entries(w.digests)) {
    expect(fr.get(id)).toEqual({ digest_json: JSON.stringify(digest), outputs: JSON.stringify(digest) })
  }
  // Sequence numbers unique per frame, and a writer's events in the order it wrote them.
  const seqs = db.prepare('SELECT frame_id, seq, event_id FROM events ORDER BY frame_id, seq').all() as any[]
  const seen = new Set<string>()
  for (const r of seqs) {
    const k = `${r.frame_id}:${r.seq}`
    expect(seen.has(k)).toBe(false)
    seen.add(k)
  }
  const pos = new Map(seqs.map((r) => [r.event_id, r.seq]))
  const byFrame = new Map<string, number[]>()
  for (const e of w.events) byFrame.set(e.frame_id, [...(byFrame.get(e.frame_id) ?? []), pos.get(e.event_id)])
  for (const s of byFrame.values()) expect(s).toEqual([...s].sort((a, b) => a - b))
}

test('StackMemory-style writes from this process and another one during 5,000-frame hot → warm → cold → hot cycles are all kept', async () => {
  const e = reg.env()
  const { db, sm } = smOpen(e.dbPath)
  const m = await reg.open({ ...e.config, dbPath: undefined, database: db } as any)
  const gen = genBundles(5000, { idPrefix: 'cy' })
  for (const c of chunks(gen.bundles, 500)) await m.storeMany(c)
  const closed = [...gen.closed]
  const mine = closed.filter((_, i) => i % 2 === 0)
  const theirs = closed.filter((_, i) => i % 2 === 1)
  const idsFile = path.join(e.dir, 'theirs.json')
  fs.writeFileSync(idsFile, JSON.stringify(theirs))
  // The other process: StackMemory's writer on the same file, through its own better-sqlite3.
  const child = spawn(process.execPath, [path.join(__dirname, 'helpers', 'stackmemory.js'), 'writer', e.dbPath, idsFile, '20000', '11'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  let out = ''
  child.stdout!.on('data', (d) => (out += d))
  const childDone = new Promise<void>((res) => child.once('exit', () => res()))
  let stop = false
  const cycles = (async () => {
    let n = 0
    while (!stop) {
      for (const to of ['warm', 'cold', 'hot'] as const) {
        const r = await m.migrate({ toTier: to })
        expect(r.failed).toEqual([])
      }
      n++
    }
    return n
  })()
  const here = await writeWhile(sm, mine, 20_000, 5)
  await childDone
  stop = true
  const n = await cycles
  expect(n).toBeGreaterThanOrEqual(1)
  const there = JSON.parse(out)
  expect(here.events.length + there.events.length).toBeGreaterThan(1000)
  // Everything back in SQLite, then every row ever written must be there, byte for byte.
  await m.migrate({ toTier: 'hot' })
  expect((await m.status()).tiers.hot.frames).toBe(5000)
  expectAllKept(db, here)
  expectAllKept(db, there)
  // retrieve() agrees with what StackMemory reads.
  for (const id of mine.slice(0, 50)) {
    const b = (await m.retrieve(id))!
    expect(b.events!.map((x: any) => x.event_id)).toEqual(sm.getFrameEvents(id).map((x: any) => x.event_id))
  }
  sqliteCheck(db)
}, 300_000)
