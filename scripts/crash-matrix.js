#!/usr/bin/env node
'use strict'
// The crash matrix (issue 11): SIGKILL a migrating process at seeded random points across every
// hop and check, after each kill, that recovery leaves 0 frames lost, 0 corrupted and 0 claimed
// twice. Real SQLite, Redis and PostgreSQL, the built package loaded as a user loads it.
//
//   node scripts/crash-matrix.js [--seed=N] [--points=50] [--frames=10000] [--batch=100]
//                                [--keep-going] [--keep]
//
// One SQLite file (temp dir), its own Redis key prefix and PostgreSQL schema (removed at the end,
// also on failure; `--keep` leaves them for a post-mortem), `--frames` bundles from testkit's
// generator stored once. Every full hop is timed first (unkilled), so a kill delay can be drawn as
// a share of the hop's expected duration: each hop's points rotate through its beginning, middle
// and end (the last third reaches 5 % past the expected end, to catch the commit and close).
// Then, per point: the next hop of a seeded schedule that has every hop equally often; an
// unkilled setup move here if the hop's source is short (or the third tier not empty); a child
// (this file, `--child`) that opens a TierManager on the file and starts the hop, SIGKILLed; a
// TierManager opened here (recovery runs in open); and every check (see `check`). Exits 1 on any failure: at the first one, or with
// `--keep-going` after all points (a failed point's findings are repaired by `verify({ repair:
// true })` before the next, so each point reports only its own).
//
// Environment: REDIS_TEST_URL, TEST_DATABASE_URL (defaults: the local servers).

const { spawn, execFileSync } = require('child_process')
const crypto = require('crypto')
const fs = require('fs')
const os = require('os')
const path = require('path')

const ROOT = path.resolve(__dirname, '..')
const REDIS_URL = process.env.REDIS_TEST_URL || 'redis://127.0.0.1:6379'
const PG_URL = process.env.TEST_DATABASE_URL || 'postgres://postgres:postgres@127.0.0.1:5432/test'
const { genBundles, normalized, rng } = require(path.join(ROOT, 'testkit', 'frames.js'))

/** The addon, retried for up to 2 min: the package may be being rebuilt (the file replaced). */
async function loadAddon() {
  const deadline = Date.now() + 120_000
  for (;;) {
    try {
      return require(path.join(ROOT, 'index.js'))
    } catch (e) {
      if (Date.now() > deadline) throw e
      for (const k of Object.keys(require.cache)) if (k.startsWith(ROOT) && !k.includes('testkit')) delete require.cache[k]
      await sleep(2000)
    }
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

// ---------------------------------------------------------------------------------------------
// The child: opens a TierManager on the file and moves the frames it is given until killed.

/** Reads in flight during a promotion hop (each a fetch, a verify and a restore). */
const PROMOTE_IN_FLIGHT = 8
/** A promotion hop reads at most this many frames: a read-promotion moves one frame at a time
 * (about 8 ms each here), so all 10,000 would take minutes per point. */
const PROMOTE_MAX = 1000

async function child([mode, configPath, idsPath, toTier]) {
  const { TierManager } = await loadAddon()
  const config = JSON.parse(fs.readFileSync(configPath, 'utf8'))
  const ids = idsPath === '-' ? null : JSON.parse(fs.readFileSync(idsPath, 'utf8'))
  const m = await TierManager.open(config)
  process.stdout.write('migrating\n')
  let summary
  if (mode === 'migrate') {
    // Without frameIds (see HOPS): the run walks every tier but the target.
    const r = await m.migrate(ids ? { toTier, frameIds: ids } : { toTier })
    summary = { moved: r.moved.length, failed: r.failed.length, firstFailure: r.failed[0], heldBack: r.heldBack.length }
  } else if (mode === 'promote') {
    // StackMemory reading archived frames with `promote: true`: each read brings its frame home.
    let next = 0
    let missing = 0
    const worker = async () => {
      while (next < ids.length) {
        const id = ids[next++]
        if ((await m.retrieve(id, { promote: true })) === null) missing++
      }
    }
    await Promise.all(Array.from({ length: PROMOTE_IN_FLIGHT }, worker))
    summary = { read: ids.length, missing, failed: missing }
  } else {
    throw new Error(`unknown child mode ${mode}`)
  }
  process.stdout.write(`done ${JSON.stringify(summary)}\n`)
  await m.close()
}

// ---------------------------------------------------------------------------------------------
// The hops

/**
 * Each hop: where its frames are, where they go, and how the child moves them. A `migrate` hop
 * is `migrate({ toTier })` with the third tier empty (a setup move empties it first), not a
 * list of frameIds: with frameIds a demotion first collects each frame's closed subtree in one
 * recursive query that SQLite plans as a scan of every closed frame per id (quadratic: 500 ids
 * took 18 s, 9,616 ids about 4 min on 10,000 frames; see docs/RELIABILITY.md "Crash matrix").
 * A promotion hop (`retrieve({ promote: true })`) reads a seeded sample of its source.
 * Not here: cold → warm. A run to warm never takes cold frames (`moves/run.rs` `sources`), so
 * that hop exists only with frameIds, where the quadratic query above makes it minutes long.
 */
const HOPS = [
  { name: 'hot→warm', from: 'hot', to: 'warm', mode: 'migrate' },
  { name: 'hot→cold', from: 'hot', to: 'cold', mode: 'migrate' },
  { name: 'warm→cold', from: 'warm', to: 'cold', mode: 'migrate' },
  { name: 'warm→hot', from: 'warm', to: 'hot', mode: 'migrate' },
  { name: 'cold→hot', from: 'cold', to: 'hot', mode: 'migrate' },
  { name: 'warm→hot (read, promote)', from: 'warm', to: 'hot', mode: 'promote' },
  { name: 'cold→hot (read, promote)', from: 'cold', to: 'hot', mode: 'promote' },
]
const hopByName = new Map(HOPS.map((h) => [h.name, h]))

/** Timed hops before the points, each moving all of its source's frames (a promotion: a sample
 * of at most half, so the hop after it has frames too); they start and end with every frame hot.
 * A hop timed twice keeps its last time. */
const CALIBRATION = [
  'hot→warm',
  'warm→hot (read, promote)',
  'warm→hot',
  'hot→cold',
  'cold→hot (read, promote)',
  'cold→hot',
  'hot→warm',
  'warm→cold',
  'cold→hot',
]

// ---------------------------------------------------------------------------------------------
// Direct looks behind the addon's back (the claims check)

function psql(sql) {
  return execFileSync('psql', [PG_URL, '-v', 'ON_ERROR_STOP=1', '-Atqc', sql], {
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
    env: { ...process.env, PGOPTIONS: '-c client_min_messages=warning' },
  }).trim()
}

function redisCli(args) {
  return execFileSync('redis-cli', ['-u', REDIS_URL, '--no-auth-warning', ...args], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 })
}

function redisKeys(prefix) {
  const glob = prefix.replace(/[\\*?[\]]/g, (c) => '\\' + c) + '*'
  return redisCli(['--scan', '--pattern', glob]).split('\n').filter(Boolean)
}

/** Frame ids with a body copy in Redis (`<prefix>frame:{<id>}`). */
function redisFrameIds(prefix) {
  const s = new Set()
  for (const k of redisKeys(prefix + 'frame:')) {
    const m = /frame:\{(.*)\}$/.exec(k)
    if (m) s.add(m[1])
  }
  return s
}

/** The archive's rows: id → { tier, checksum }. */
function archiveRows(schema) {
  const out = new Map()
  if (psql(`SELECT to_regclass('${schema}.frames_archive') IS NOT NULL`) !== 't') return out
  for (const l of psql(`SELECT frame_id || '|' || tier || '|' || checksum FROM ${schema}.frames_archive`).split('\n')) {
    if (!l) continue
    const parts = l.split('|')
    const checksum = parts.pop()
    const tier = parseInt(parts.pop(), 10)
    out.set(parts.join('|'), { tier, checksum })
  }
  return out
}

// The SQLite file is read from a child process: a second SQLite library (better-sqlite3's) in this
// process would share POSIX locks with the addon's and could corrupt the file.
function sqliteQueries(dbPath, queries) {
  const script = `
    const Database = require('better-sqlite3')
    const db = new Database(process.argv[1], { readonly: true, fileMustExist: true })
    db.pragma('busy_timeout = 10000')
    const out = JSON.parse(process.argv[2]).map((q) => db.prepare(q).all())
    db.close()
    process.stdout.write(JSON.stringify(out))`
  return JSON.parse(
    execFileSync(process.execPath, ['-e', script, dbPath, JSON.stringify(queries)], { encoding: 'utf8', cwd: ROOT, maxBuffer: 256 * 1024 * 1024 }),
  )
}

/** Every frame claimed by exactly one tier, as SQLite, PostgreSQL and Redis themselves say. */
function claimProblems(env, want) {
  const [rows, open] = sqliteQueries(env.dbPath, [
    `SELECT f.frame_id AS id, COALESCE(f.tier_status, 'hot') AS tier, COALESCE(m.body_local, 1) AS bl, m.checksum AS cs
     FROM frames f LEFT JOIN tier_metadata m ON m.frame_id = f.frame_id`,
    `SELECT frame_id, step FROM tier_journal WHERE step IN ('started', 'verified')`,
  ])
  const arch = archiveRows(env.schema)
  const inRedis = redisFrameIds(env.prefix)
  const problems = []
  const seen = new Set()
  for (const r of rows) {
    const id = r.id
    seen.add(id)
    if (!want.has(id)) problems.push(`${id}: unexpected frame`)
    if (r.tier === 'hot') {
      if (!r.bl) problems.push(`${id}: hot without a local body`)
      if (arch.has(id)) problems.push(`${id}: hot but also archived`)
      if (inRedis.has(id)) problems.push(`${id}: hot but also in Redis`)
    } else if (r.tier === 'warm' || r.tier === 'cold') {
      const a = arch.get(id)
      if (!r.bl) {
        if (!a) problems.push(`${id}: ${r.tier} stub without an archived body`)
        else if (a.checksum !== r.cs) problems.push(`${id}: archived checksum ${a.checksum} != ${r.cs}`)
      }
      if (a && a.tier !== (r.tier === 'warm' ? 2 : 3)) problems.push(`${id}: SQLite says ${r.tier}, archive tier column ${a.tier}`)
      if (r.tier === 'cold' && inRedis.has(id)) problems.push(`${id}: cold but also in Redis`)
    } else {
      problems.push(`${id}: unknown tier ${r.tier}`)
    }
  }
  for (const id of want.keys()) if (!seen.has(id)) problems.push(`${id}: no SQLite row`)
  for (const id of arch.keys()) if (!seen.has(id)) problems.push(`${id}: archived but unknown to SQLite`)
  for (const id of inRedis) if (!seen.has(id)) problems.push(`${id}: in Redis but unknown to SQLite`)
  return { problems, openJournal: open.length }
}

// ---------------------------------------------------------------------------------------------
// The parent

function parseArgs(argv) {
  const o = { seed: 20261202, points: 50, frames: 10_000, batch: 100, keepGoing: false, keep: false }
  for (const a of argv) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a)
    if (!m) throw new Error(`unknown argument ${a}`)
    const [, k, v] = m
    if (k === 'keep-going') o.keepGoing = true
    else if (k === 'keep') o.keep = true
    else if (['seed', 'points', 'frames', 'batch'].includes(k) && /^\d+$/.test(v ?? '')) o[k] = Number(v)
    else throw new Error(`bad argument ${a} (--seed=N --points=N --frames=N --batch=N --keep-going --keep)`)
  }
  if (o.frames < 10 || o.points < 1 || o.batch < 1) throw new Error('--frames >= 10, --points >= 1, --batch >= 1')
  return o
}

function makeEnv(batch) {
  const tag = crypto.randomBytes(5).toString('hex')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smt-crash-matrix-'))
  const env = { tag, dir, dbPath: path.join(dir, 'context.db'), prefix: `smt:cm${tag}:`, schema: `cm_${tag}` }
  env.config = {
    dbPath: env.dbPath,
    tiers: {
      redis: { enabled: true, connectionString: REDIS_URL, keyPrefix: env.prefix, connectTimeout: 1000 },
      postgres: { enabled: true, connectionString: PG_URL, schema: env.schema, connectTimeout: 2000 },
    },
    // Only the children move frames: no background worker, and reads never reach the
    // promotion threshold on their own (a child's `promote: true` forces it).
    policies: { promotionThreshold: 1_000_000, backgroundSync: false, batchSize: batch },
  }
  env.configPath = path.join(dir, 'config.json')
  fs.writeFileSync(env.configPath, JSON.stringify(env.config))
  return env
}

function cleanup(env) {
  try {
    const keys = redisKeys(env.prefix)
    for (let i = 0; i < keys.length; i += 500) redisCli(['DEL', ...keys.slice(i, i + 500)])
  } catch (e) {
    console.error(`cleanup: Redis keys under ${env.prefix}: ${e.message}`)
  }
  try {
    psql(`DROP SCHEMA IF EXISTS ${env.schema} CASCADE`)
  } catch (e) {
    console.error(`cleanup: schema ${env.schema}: ${e.message}`)
  }
  fs.rmSync(env.dir, { recursive: true, force: true })
}

let running = null // the child of the moment, killed if we are interrupted

/** Runs a child; with `killAfterMs`, SIGKILLs it that long after it says "migrating". */
function runChild(env, hop, ids, killAfterMs) {
  let idsPath = '-'
  if (ids) {
    idsPath = path.join(env.dir, 'ids.json')
    fs.writeFileSync(idsPath, JSON.stringify(ids))
  }
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [__filename, '--child', hop.mode, env.configPath, idsPath, hop.to], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    running = p
    let stdout = ''
    let stderr = ''
    let tMigrating = 0
    let tDone = 0
    let killedAt = -1
    let timer
    p.stdout.on('data', (d) => {
      stdout += d
      if (!tMigrating && stdout.includes('migrating\n')) {
        tMigrating = Date.now()
        if (killAfterMs !== undefined) {
          timer = setTimeout(() => {
            if (p.exitCode === null && p.signalCode === null && p.kill('SIGKILL')) killedAt = Date.now() - tMigrating
          }, killAfterMs)
        }
      }
      if (!tDone && stdout.includes('\ndone ')) tDone = Date.now()
    })
    p.stderr.on('data', (d) => (stderr += d))
    p.on('error', reject)
    p.on('exit', (code, signal) => {
      clearTimeout(timer)
      running = null
      const line = stdout.split('\n').find((l) => l.startsWith('done '))
      resolve({
        killed: killedAt >= 0,
        killedAt,
        // The hop had not returned when the kill landed (else it landed in close() or exit).
        midRun: killedAt >= 0 && !line,
        ms: tDone && tMigrating ? tDone - tMigrating : -1,
        done: line ? JSON.parse(line.slice(5)) : null,
        code,
        signal,
        stderr,
      })
    })
  })
}

/**
 * Opens a TierManager (recovery runs in open) and checks every frame. Returns the tier of each
 * frame, the counts and every problem found, by kind.
 */
async function check(TierManager, env, want) {
  const t0 = Date.now()
  const m = await TierManager.open(env.config)
  const recoveryMs = Date.now() - t0
  const bad = { lost: [], corrupt: [], dup: [], other: [] }
  const where = new Map()
  let s
  try {
    s = await m.status()
    const counts = { hot: s.tiers.hot.frames, warm: s.tiers.warm.frames, cold: s.tiers.cold.frames }
    const sum = counts.hot + counts.warm + counts.cold
    if (sum !== want.size) bad.dup.push(`status counts ${JSON.stringify(counts)} sum to ${sum}, not ${want.size}`)
    if (!s.lastRecovery || s.lastRecovery.pending !== 0) bad.other.push(`lastRecovery ${JSON.stringify(s.lastRecovery)}`)
    if (s.journalBacklog !== 0) bad.other.push(`journalBacklog ${s.journalBacklog}`)

    // Every frame back with exactly what was stored (16 reads in flight).
    const ids = [...want.keys()]
    let next = 0
    const reader = async () => {
      while (next < ids.length) {
        const id = ids[next++]
        where.set(id, m.locate(id))
        try {
          const got = await m.retrieve(id, { promote: false })
          if (got === null) bad.lost.push(`${id}: retrieve gave null`)
          else if (JSON.stringify(got) !== want.get(id)) bad.corrupt.push(`${id}: content differs`)
        } catch (e) {
          ;(e.code === 'ERR_NOT_FOUND' ? bad.lost : e.code === 'ERR_CORRUPT' ? bad.corrupt : bad.other).push(`${id}: ${e.code} ${e.message}`)
        }
      }
    }
    await Promise.all(Array.from({ length: 16 }, reader))

    const v = await m.verify()
    if (v.checked !== want.size) bad.other.push(`verify checked ${v.checked}, not ${want.size}`)
    if (v.unavailable.length) bad.other.push(`verify: unavailable ${v.unavailable.join('; ')}`)
    for (const f of v.findings) {
      const text = `verify: ${f.frameId} ${f.tier} ${f.kind}: ${f.detail}`
      // A missing warm copy is not a loss (the archive serves) but recovery should not leave one.
      const kind = f.kind === 'missing' ? (f.tier === 'cold' ? bad.lost : bad.other) : f.kind === 'corrupt' ? bad.corrupt : bad.dup
      kind.push(text)
    }
    if (!v.clean && !v.findings.length && !v.unavailable.length) bad.other.push('verify: not clean')
    s = await m.status()
  } finally {
    await m.close()
  }
  const claims = claimProblems(env, want)
  for (const p of claims.problems) (/no SQLite row|without/.test(p) ? bad.lost : bad.dup).push(`claims: ${p}`)
  if (claims.openJournal) bad.other.push(`${claims.openJournal} open journal entries after recovery`)
  const counts = { hot: s.tiers.hot.frames, warm: s.tiers.warm.frames, cold: s.tiers.cold.frames }
  return { recoveryMs, checkMs: Date.now() - t0, lastRecovery: s.lastRecovery, counts, where, bad }
}

const failures = (bad) => bad.lost.length + bad.corrupt.length + bad.dup.length + bad.other.length

function describe(bad) {
  const out = []
  for (const k of ['lost', 'corrupt', 'dup', 'other']) {
    if (bad[k].length) out.push(`${k} ${bad[k].length}: ${bad[k].slice(0, 5).join(' | ')}${bad[k].length > 5 ? ' ...' : ''}`)
  }
  return out.join('\n    ')
}

/** The frames a hop moves: all of its source's, or a seeded sample of PROMOTE_MAX for a promotion. */
function hopIds(hop, source, r, max = PROMOTE_MAX) {
  if (hop.mode !== 'promote' || source.length <= max) return source
  const a = source.slice()
  for (let i = 0; i < max; i++) {
    const j = i + Math.floor(r() * (a.length - i))
    ;[a[i], a[j]] = [a[j], a[i]]
  }
  return a.slice(0, max)
}

/** An unkilled move here of every movable frame to `toTier` (a hop's source filled before a
 * point); the report and the counts. */
async function setupMove(TierManager, env, toTier) {
  const m = await TierManager.open(env.config)
  try {
    // A run to warm takes no cold frames: those come home first.
    const before = await m.status()
    const moved = []
    const failed = []
    for (const t of toTier === 'warm' && before.tiers.cold.frames > 0 ? ['hot', 'warm'] : [toTier]) {
      const rep = await m.migrate({ toTier: t })
      moved.push(...rep.moved)
      failed.push(...rep.failed)
    }
    const s = await m.status()
    return { moved, failed, counts: { hot: s.tiers.hot.frames, warm: s.tiers.warm.frames, cold: s.tiers.cold.frames } }
  } finally {
    await m.close()
  }
}

/** The movable frames (closed: active ones never leave hot) now in `tier`. */
const inTier = (where, movable, tier) => movable.filter((id) => where.get(id) === tier)

const fmtCounts = (c) => `${c.hot}/${c.warm}/${c.cold}`

async function main() {
  const o = parseArgs(process.argv.slice(2))
  const started = Date.now()
  const { TierManager } = await loadAddon()
  const head = (() => {
    try {
      return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim()
    } catch {
      return 'unknown'
    }
  })()
  console.log(`crash matrix: seed ${o.seed}, ${o.points} points, ${o.frames} frames, batchSize ${o.batch}, commit ${head}, ${new Date().toISOString()}`)

  const env = makeEnv(o.batch)
  const onSignal = (sig) => {
    if (running) running.kill('SIGKILL')
    if (!o.keep) cleanup(env)
    process.exit(sig === 'SIGINT' ? 130 : 143)
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  let ok = false
  try {
    ok = await matrix(o, env, TierManager)
  } finally {
    if (o.keep) console.log(`kept: ${env.dbPath}, Redis prefix ${env.prefix}, schema ${env.schema}`)
    else cleanup(env)
  }
  console.log(`total ${((Date.now() - started) / 1000).toFixed(0)} s`)
  return ok
}

async function matrix(o, env, TierManager) {
  const r = rng(o.seed)
  const gen = genBundles(o.frames, { seed: o.seed, idPrefix: `cm${env.tag.slice(0, 4)}`, large: 3, baseSeconds: Math.floor(Date.now() / 1000) - 30 * 86400 })
  const want = new Map(gen.bundles.map((b) => [b.frame.frame_id, JSON.stringify(normalized(b))]))
  const movable = [...gen.closed]
  {
    const m = await TierManager.open(env.config)
    const t0 = Date.now()
    for (let i = 0; i < gen.bundles.length; i += 500) await m.storeMany(gen.bundles.slice(i, i + 500))
    await m.close()
    console.log(`stored ${o.frames} frames (${movable.length} movable, ${gen.active.size} active) in ${Date.now() - t0} ms`)
  }
  let state = await check(TierManager, env, want)
  if (failures(state.bad)) {
    console.log(`FAIL after store:\n    ${describe(state.bad)}`)
    return false
  }
  console.log(`check after store: ${state.checkMs} ms`)

  // Each full hop, unkilled and timed: ms per frame, from "migrating" to "done".
  const msPerFrame = new Map()
  for (const name of CALIBRATION) {
    const hop = hopByName.get(name)
    const source = inTier(state.where, movable, hop.from)
    const ids = hopIds(hop, source, r, Math.min(PROMOTE_MAX, Math.floor(source.length / 2)))
    const run = await runChild(env, hop, hop.mode === 'promote' ? ids : null)
    if (run.code !== 0 || !run.done || run.done.failed) {
      console.log(`FAIL calibration ${name}: exit ${run.code}, ${JSON.stringify(run.done)} ${run.stderr.trim()}`)
      return false
    }
    msPerFrame.set(name, run.ms / Math.max(1, ids.length))
    for (const id of ids) state.where.set(id, hop.to)
    console.log(`calibration ${name}: ${ids.length} frames in ${run.ms} ms`)
  }
  state = await check(TierManager, env, want)
  if (failures(state.bad)) {
    console.log(`FAIL after calibration:\n    ${describe(state.bad)}`)
    return false
  }
  console.log(`check after calibration: ${fmtCounts(state.counts)} hot/warm/cold, ${state.checkMs} ms\n`)

  // Every hop equally often (the first points % 7 hops once more), in a seeded order.
  const schedule = Array.from({ length: o.points }, (_, k) => HOPS[k % HOPS.length])
  for (let i = schedule.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1))
    ;[schedule[i], schedule[j]] = [schedule[j], schedule[i]]
  }
  const used = new Map(HOPS.map((h) => [h.name, 0]))
  const results = []
  let failed = 0
  for (let k = 0; k < o.points; k++) {
    const hop = schedule[k]
    // The hop's source holds at least half the movable frames (a promotion hop: PROMOTE_MAX) and,
    // for a migrate hop, the third tier none: else an unkilled setup move here first brings every
    // movable frame to the source.
    let setup = ''
    const have = inTier(state.where, movable, hop.from).length
    const need = hop.mode === 'promote' ? Math.min(PROMOTE_MAX, movable.length) : Math.ceil(movable.length / 2)
    const third = ['hot', 'warm', 'cold'].find((t) => t !== hop.from && t !== hop.to)
    if (have < need || (hop.mode === 'migrate' && inTier(state.where, movable, third).length > 0)) {
      const t0 = Date.now()
      const rep = await setupMove(TierManager, env, hop.from)
      if (rep.failed.length) {
        console.log(`FAIL setup move to ${hop.from} before point ${k + 1}: ${JSON.stringify(rep.failed.slice(0, 3))}`)
        failed++
        break
      }
      for (const x of rep.moved) state.where.set(x.frameId, x.to)
      state.counts = rep.counts
      setup = `; setup ${rep.moved.length} to ${hop.from} in ${Date.now() - t0} ms`
    }
    const ids = hopIds(hop, inTier(state.where, movable, hop.from), r)
    // Beginning, middle, end in turn for each hop; the end reaches 5 % past the expected end.
    const part = used.get(hop.name) % 3
    used.set(hop.name, used.get(hop.name) + 1)
    const share = part === 2 ? (2 + 1.15 * r()) / 3 : (part + r()) / 3
    const expected = msPerFrame.get(hop.name) * ids.length
    const delay = Math.max(1, Math.round(share * expected))

    const before = state.counts
    const run = await runChild(env, hop, hop.mode === 'promote' ? ids : null, delay)
    const childBad = []
    if (!run.killed && (run.code !== 0 || !run.done || run.done.failed)) {
      childBad.push(`child exit ${run.code}/${run.signal}: ${JSON.stringify(run.done)} ${run.stderr.trim().slice(0, 400)}`)
    } else if (run.killed && run.stderr.trim()) {
      childBad.push(`child stderr before the kill: ${run.stderr.trim().slice(0, 400)}`)
    }
    state = await check(TierManager, env, want)
    state.bad.other.push(...childBad)
    const moved = state.counts[hop.to] - before[hop.to]
    const n = failures(state.bad)
    const when = run.killed ? (run.midRun ? 'mid-run' : 'after the hop returned') : 'not killed: finished first'
    const rec = state.lastRecovery ? `finished ${state.lastRecovery.finished}, rolled back ${state.lastRecovery.rolledBack}` : 'none'
    console.log(
      `#${String(k + 1).padStart(2)} ${hop.name.padEnd(25)} kill ${String(run.killed ? run.killedAt : delay).padStart(6)} ms` +
        ` (${(share * 100).toFixed(0).padStart(3)} % of ~${Math.round(expected)} ms, ${when})` +
        ` moved ${moved}/${ids.length}; hot/warm/cold ${fmtCounts(before)} -> ${fmtCounts(state.counts)};` +
        ` recovery ${state.recoveryMs} ms (${rec}); check ${state.checkMs} ms${setup};` +
        ` lost ${state.bad.lost.length} corrupt ${state.bad.corrupt.length} dup ${state.bad.dup.length} -> ${n ? 'FAIL' : 'ok'}`,
    )
    if (n) console.log(`    ${describe(state.bad)}`)
    results.push({ hop: hop.name, share, killed: run.killed, midRun: run.midRun, recoveryMs: state.recoveryMs, bad: state.bad, n })
    if (n) {
      failed++
      if (!o.keepGoing) {
        console.log(`stopping at point ${k + 1} (seed ${o.seed}); --keep-going runs the rest, --keep leaves the state`)
        break
      }
      // Repaired before the next point, so each point's findings are its own, not carried over.
      const m = await TierManager.open(env.config)
      try {
        const v = await m.verify({ repair: true })
        console.log(`    repaired ${v.repaired}, not repaired ${v.unrepaired} (verify({ repair: true }) before the next point)`)
      } finally {
        await m.close()
      }
    }
  }

  const sum = (f) => results.reduce((a, x) => a + f(x), 0)
  const recs = results.map((x) => x.recoveryMs).sort((a, b) => a - b)
  const perHop = HOPS.map((h) => `${h.name} ${results.filter((x) => x.hop === h.name).length}`).join(', ')
  console.log(
    `\nsummary: ${results.length} points (seed ${o.seed}, ${o.frames} frames): ${sum((x) => (x.midRun ? 1 : 0))} kills mid-hop,` +
      ` ${sum((x) => (x.killed && !x.midRun ? 1 : 0))} after it returned, ${sum((x) => (x.killed ? 0 : 1))} finished first;` +
      ` lost ${sum((x) => x.bad.lost.length)}, corrupted ${sum((x) => x.bad.corrupt.length)}, duplicates ${sum((x) => x.bad.dup.length)},` +
      ` other ${sum((x) => x.bad.other.length)}; failed points ${failed}`,
  )
  console.log(`per hop: ${perHop}`)
  if (recs.length) console.log(`recovery (open) ms: median ${recs[Math.floor(recs.length / 2)]}, max ${recs[recs.length - 1]}`)
  console.log(failed ? 'RESULT: FAIL' : 'RESULT: ok')
  return failed === 0
}

if (process.argv[2] === '--child') {
  child(process.argv.slice(3)).then(
    () => process.exit(0),
    (e) => {
      process.stderr.write(`crash-matrix child failed: ${e && e.code} ${e && e.stack}\n`)
      process.exit(2)
    },
  )
} else {
  main().then(
    (ok) => process.exit(ok ? 0 : 1),
    (e) => {
      console.error(`crash matrix failed: ${e && e.code} ${e && e.stack}`)
      process.exit(1)
    },
  )
}
