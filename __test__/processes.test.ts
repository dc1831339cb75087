// Many processes on one Redis and one PostgreSQL (issue 11): StackMemory and the CLI on one SQLite
// file, each with its own TierManager; and four machines, each with its own file, moving and reading
// the same frame ids at once. Real child processes, real servers.

import { spawn } from 'child_process'
import fs from 'fs'
import path from 'path'

import Database from 'better-sqlite3'

import type { FrameBundle } from '../index'

import { archiveRows, chunks, fileRegistry, openJournal, ROOT } from './helpers/gen'

const { StackMemory, writeWhile } = require('./helpers/stackmemory')
const { genBundles } = require('../testkit/frames.js')
const reg = fileRegistry()
const CHILD = path.join(__dirname, 'helpers', 'process-child.js')

function child(args: string[]): Promise<any> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [CHILD, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    p.stdout!.on('data', (d) => (out += d))
    p.stderr!.on('data', (d) => (err += d))
    p.once('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`child exited ${code}: ${err}`))))
  })
}

test('two TierManagers in two processes on one file (StackMemory and the CLI): moves, reopens and writes lose nothing', async () => {
  const e = reg.env()
  const db = new Database(e.dbPath)
  const sm = new StackMemory(db)
  const m = await reg.open({ ...e.config, dbPath: undefined, database: db } as any)
  const gen = genBundles(1500, { idPrefix: 'two', large: 0 })
  for (const c of chunks(gen.bundles as FrameBundle[], 500)) await m.storeMany(c)
  const configPath = path.join(e.dir, 'config.json')
  fs.writeFileSync(configPath, JSON.stringify(e.config))
  // The other process moves everything round and reopens between hops: every open() recovers
  // the file's journal while this process may be in the middle of a move.
  const other = child(['mover', configPath, '10000'])
  let stop = false
  const failed: unknown[] = []
  const cycles = (async () => {
    let n = 0
    while (!stop) {
      for (const toTier of ['cold', 'warm', 'hot'] as const) failed.push(...(await m.migrate({ toTier })).failed)
      n++
    }
    return n
  })()
  const written = await writeWhile(sm, [...gen.closed], 10_000, 3)
  const there = await other
  stop = true
  const here = await cycles
  if (process.env.SMT_DEBUG) console.log('cycles here', here, 'there', there.cycles)
  expect(here).toBeGreaterThanOrEqual(1)
  expect(there.cycles).toBeGreaterThanOrEqual(1)
  expect({ here: failed, there: there.failed }).toEqual({ here: [], there: [] })

  await m.migrate({ toTier: 'hot' })
  expect((await m.status()).tiers.hot.frames).toBe(1500)
  const ev = db.prepare('SELECT payload FROM events WHERE event_id = ?')
  const lost = written.events.filter((w: any) => (ev.get(w.event_id) as any)?.payload !== w.payload)
  expect(lost).toEqual([])
  expect(written.events.length).toBeGreaterThan(200)
  expect(openJournal(e.dbPath)).toEqual([])
  const v = await m.verify()
  expect({ clean: v.clean, findings: v.findings }).toEqual({ clean: true, findings: [] })
  // 17-20 s alone. It once took 124-178 s: the process with the move lease retook it between its
  // batches before the other's poll came round, so one side waited for the other's whole
  // migrations (up to LEASE_WAIT, then ERR_BUSY); waiters now go first (tiers/hot/lease.rs).
}, 180_000)

test('four machines (own SQLite files, one Redis, one PostgreSQL) moving and reading the same frame ids lose nothing', async () => {
  const base = reg.env()
  const envs = [base, ...[1, 2, 3].map(() => reg.env())].map((e, i) => {
    const cfg = { ...e.config, tiers: base.config.tiers }
    const p = path.join(e.dir, `machine-${i}.json`)
    fs.writeFileSync(p, JSON.stringify(cfg))
    return p
  })
  const results = await Promise.all(envs.map((p, i) => child(['machine', p, String(i + 1), '12000'])))
  for (const r of results) {
    expect({ wrong: r.wrong, missing: r.missing, verify: r.verify }).toEqual({ wrong: [], missing: [], verify: { clean: true, findings: [] } })
    expect(r.moves).toBeGreaterThan(50)
    expect(r.reads).toBeGreaterThan(50)
  }
  // Every machine brought everything home: the shared archive holds no row a machine still needs,
  // and nothing was duplicated.
  const rows = archiveRows(base.schema)
  expect(rows.size).toBe(0)
}, 180_000)
