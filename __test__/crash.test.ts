// Crash safety: a child process (helpers/crash-child.js) generates and stores 5,000 frames, then
// migrates them hot → warm, → cold and → hot while this process SIGKILLs it at random points
// (50-1500 ms after it says "migrating"). After every kill a TierManager opened on the same file,
// key prefix and schema must recover, and every frame must be claimed by exactly one tier and come
// back with its content unchanged.

import { spawn } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'

import { TierManager } from '../index'
import type { FrameBundle } from '../index'
import { archiveRows, counts, genBundles, makeEnv, normalized, openJournal, redisFrameIds, sqliteFrames, TestEnv } from './helpers/gen'
import type { GenOptions } from './helpers/gen'

const CHILD = path.join(__dirname, 'helpers', 'crash-child.js')
const N = 5000
const KILLS_PER_PHASE = 2

let e: TestEnv
afterAll(() => e?.cleanup())

interface ChildRun {
  killed: boolean
  /** The migration had not finished when the kill landed. */
  midRun: boolean
  delayMs: number
  stdout: string
  stderr: string
  code: number | null
}

function runChild(args: string[], killAfterMs?: number): Promise<ChildRun> {
  const t0 = Date.now()
  return new Promise<ChildRun>((resolve, reject) => {
    const p = spawn(process.execPath, [CHILD, ...args], { cwd: path.dirname(CHILD), stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    let killed = false
    let timer: NodeJS.Timeout | undefined
    p.stdout.on('data', (d) => {
      stdout += d
      if (killAfterMs !== undefined && !timer && stdout.includes('migrating\n')) {
        timer = setTimeout(() => {
          if (p.exitCode === null && p.signalCode === null) {
            killed = p.kill('SIGKILL')
          }
        }, killAfterMs)
      }
    })
    p.stderr.on('data', (d) => (stderr += d))
    p.on('error', reject)
    p.on('exit', (code) => {
      if (timer) clearTimeout(timer)
      resolve({ killed, midRun: killed && !stdout.includes('done '), delayMs: killAfterMs ?? -1, stdout, stderr, code })
    })
  }).then((r) => {
    if (process.env.SMT_DEBUG) console.log('child', args.slice(1).join(' '), Date.now() - t0, 'ms', r.killed ? 'killed' : 'exit ' + r.code, r.stdout.trim())
    return r
  })
}

/**
 * Open on the same file / prefix / schema and check that every frame is whole and claimed once.
 *
 * (Was a bug in src/tiers/hot/copy_guard.rs, fixed there:) this process opens and closes one TierManager per
 * check. When the garbage collector drops a closed manager while a newer one is open, SQLite keeps
 * the old connection's descriptor open on purpose (it may not close() a file while another
 * connection of the process holds POSIX locks on it), the copy guard counts that descriptor as
 * "another SQLite library" and every call of the live manager fails with ERR_STORAGE "... is also
 * open through another SQLite library in this process". If this test fails with that message it is
 * that bug come back, not a crash-recovery failure (see the regression test in tiers.test.ts).
 */
async function verify(label: string, want: Map<string, string>): Promise<{ hot: number; warm: number; cold: number }> {
  const t0 = Date.now()
  const m = await TierManager.open(e.config)
  if (process.env.SMT_DEBUG) console.log(label, 'recovery', JSON.stringify((await m.status()).lastRecovery), Date.now() - t0, 'ms')
  try {
    const s = await m.status()
    const c = counts(s)
    expect({ label, total: c.hot + c.warm + c.cold }).toEqual({ label, total: N })
    expect({ label, lastRecovery: s.lastRecovery }).toEqual({ label, lastRecovery: expect.objectContaining({ pending: 0 }) })
    expect({ label, backlog: s.journalBacklog, open: openJournal(e.dbPath) }).toEqual({ label, backlog: 0, open: [] })

    // Exactly one tier claims each frame: the SQLite row says which, the other tiers agree.
    const rows = sqliteFrames(e.dbPath)
    expect({ label, rows: rows.size }).toEqual({ label, rows: N })
    const arch = archiveRows(e.schema)
    const inRedis = redisFrameIds(e.prefix)
    const problems: string[] = []
    for (const [id, r] of rows) {
      if (!want.has(id)) problems.push(`${id}: unexpected frame`)
      if (r.tier === 'hot') {
        if (!r.bodyLocal) problems.push(`${id}: hot without a local body`)
        if (arch.has(id)) problems.push(`${id}: hot but also archived`)
        if (inRedis.has(id)) problems.push(`${id}: hot but also in Redis`)
      } else if (r.tier === 'warm' || r.tier === 'cold') {
        const a = arch.get(id)
        if (!r.bodyLocal) {
          if (!a) problems.push(`${id}: ${r.tier} stub without an archived body`)
          else if (a.checksum !== r.checksum) problems.push(`${id}: archived checksum ${a.checksum} != ${r.checksum}`)
        }
        // A killed client's last archive write can still finish in its PostgreSQL backend after
        // the kill; recovery waits for it (an exclusive advisory lock against the shared one every
        // archive write holds) and then realigns the tier column with SQLite.
        if (a && a.tier !== (r.tier === 'warm' ? 2 : 3)) problems.push(`${id}: SQLite says ${r.tier}, archive tier column says ${a.tier}`)
        if (r.tier === 'cold' && inRedis.has(id)) problems.push(`${id}: cold but also in Redis`)
      } else {
        problems.push(`${id}: unknown tier ${r.tier}`)
      }
    }
    for (const id of arch.keys()) if (!rows.has(id)) problems.push(`${id}: archived but unknown to SQLite`)
    expect({ label, problems: problems.slice(0, 20), count: problems.length }).toEqual({ label, problems: [], count: 0 })

    // Every frame comes back with exactly its content (16 reads in flight: the pool has room).
    const bad: string[] = []
    const entries = [...want.entries()]
    for (let i = 0; i < entries.length; i += 16) {
      await Promise.all(
        entries.slice(i, i + 16).map(async ([id, json]) => {
          try {
            const got = await m.retrieve(id, { promote: false })
            if (JSON.stringify(got) !== json) bad.push(id)
          } catch (err: any) {
            bad.push(`${id}: ${err.code} ${err.message}`)
          }
        }),
      )
    }
    expect({ label, bad: bad.slice(0, 10), count: bad.length }).toEqual({ label, bad: [], count: 0 })
    if (process.env.SMT_DEBUG) console.log(label, JSON.stringify(c), 'verified in', Date.now() - t0, 'ms')
    return c
  } finally {
    await m.close()
  }
}

test(`SIGKILL at random points of hot → warm → cold → hot loses nothing and duplicates nothing (${N} frames)`, async () => {
  e = makeEnv({ policies: { batchSize: 100 } })
  const configPath = path.join(e.dir, 'config.json')
  fs.writeFileSync(configPath, JSON.stringify(e.config))
  // The child generates the same bundles from the same options (the base time included: the
  // default is relative to now).
  const genOptions: GenOptions = { seed: 31, idPrefix: 'cr', large: 3, baseSeconds: Math.floor(Date.now() / 1000) - 30 * 86400 }
  const gen = genBundles(N, genOptions)
  const want = new Map<string, string>(gen.bundles.map((b: FrameBundle) => [b.frame.frame_id, JSON.stringify(normalized(b))]))

  const stored = await runChild([configPath, 'store', String(N), JSON.stringify(genOptions)])
  expect({ code: stored.code, stdout: stored.stdout, stderr: stored.stderr }).toEqual({ code: 0, stdout: `stored ${N}\n`, stderr: '' })
  expect(await verify('after store', want)).toEqual({ hot: N, warm: 0, cold: 0 })

  const runs: Array<ChildRun & { phase: string }> = []
  for (const phase of ['warm', 'cold', 'hot'] as const) {
    for (let k = 0; k < KILLS_PER_PHASE; k++) {
      // warm → cold only flips the tier of stubs (about a second for all 5,000): kill it sooner.
      const delay = 50 + Math.floor(Math.random() * (phase === 'cold' ? 550 : 1450))
      const r = await runChild([configPath, 'migrate', phase], delay)
      runs.push({ ...r, phase })
      // Killed, or it finished first (then cleanly).
      if (!r.killed) expect({ phase, delay, code: r.code, stderr: r.stderr }).toEqual({ phase, delay, code: 0, stderr: '' })
      await verify(`${phase} kill ${k} after ${delay} ms (${r.midRun ? 'mid-run' : 'after the run'})`, want)
    }
    // Let the phase finish so the next one has a full tier to move from.
    const fin = await runChild([configPath, 'migrate', phase])
    expect({ phase, code: fin.code, stderr: fin.stderr }).toEqual({ phase, code: 0, stderr: '' })
    expect(fin.stdout).toMatch(/"failed":0/)
    const c = await verify(`${phase} finished`, want)
    if (phase === 'warm') expect(c).toEqual({ hot: gen.active.size, warm: gen.closed.size, cold: 0 })
    if (phase === 'cold') expect(c).toEqual({ hot: gen.active.size, warm: 0, cold: gen.closed.size })
    if (phase === 'hot') expect(c).toEqual({ hot: N, warm: 0, cold: 0 })
  }
  // At least three kills must have landed in the middle of a migration for this test to mean anything.
  const mid = runs.filter((r) => r.midRun)
  expect({ midRunKills: mid.length >= 3, runs: runs.map((r) => `${r.phase}@${r.delayMs}:${r.midRun ? 'mid' : 'late'}`) }).toEqual({
    midRunKills: true,
    runs: expect.any(Array),
  })
})
