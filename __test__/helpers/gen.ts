// Shared helpers for the tier tests: a deterministic StackMemory-shaped bundle generator, a
// per-test config maker (own SQLite file, Redis key prefix, PostgreSQL schema) with cleanup,
// direct access to the services (redis-cli, psql) to look behind the addon's back, a throwaway
// redis-server and a killable TCP proxy. No mocks: everything talks to the real services.

import { execFileSync, spawn, ChildProcess } from 'child_process'
import * as fs from 'fs'
import * as net from 'net'
import * as os from 'os'
import * as path from 'path'
import * as crypto from 'crypto'

import { TierManager } from '../../index'
import type { FrameBundle, TierConfig } from '../../index'

export const REDIS_URL = process.env.REDIS_TEST_URL || 'redis://127.0.0.1:6379'
export const PG_URL = process.env.TEST_DATABASE_URL || 'postgres://postgres:postgres@127.0.0.1:5432/test'
export const ROOT = path.resolve(__dirname, '..', '..')

// ---------------------------------------------------------------------------------------------
// Deterministic randomness

/** mulberry32: small, fast, seeded. */
export function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export function randomTag(n = 10): string {
  return crypto.randomBytes(16).toString('hex').slice(0, n)
}

function uuidFrom(r: () => number): string {
  const h = () => Math.floor(r() * 0x10000).toString(16).padStart(4, '0')
  return `${h()}${h()}-${h()}-4${h().slice(1)}-a${h().slice(1)}-${h()}${h()}${h()}`
}

const WORDS = (
  'session token refresh backoff retry limiter cache redis postgres sqlite frame anchor event digest ' +
  'decision constraint risk fact todo build test jest rust napi tokio async await promise module ' +
  'handler request response header cookie login logout user admin config schema migrate index query ' +
  'vacuum journal checksum compress zstd archive promote demote tier hot warm cold stub tree parent ' +
  'child subtask task debug review deploy rollback release patch merge branch commit diff lint format ' +
  'timeout deadline latency throughput memory leak pointer buffer stream socket proxy server client ' +
  'widget service gateway router endpoint payload metadata priority project run depth state closed'
).split(' ')

function words(r: () => number, n: number): string {
  const out: string[] = []
  for (let i = 0; i < n; i++) out.push(WORDS[Math.floor(r() * WORDS.length)])
  return out.join(' ')
}

/** Text of about `bytes` characters. */
function textOf(r: () => number, bytes: number): string {
  let s = ''
  while (s.length < bytes) s += words(r, 12) + '. '
  return s.slice(0, bytes)
}

// ---------------------------------------------------------------------------------------------
// Bundle generator

export interface GenOptions {
  /** Seed: the same seed and count give the same bundles (the crash child relies on it). */
  seed?: number
  /** Prefix of every id, so runs never collide. */
  idPrefix?: string
  /** How many bundles of ~100 KB (default 4). */
  large?: number
  /** Base time in seconds (default: 30 days ago) — frames are this old or older. */
  baseSeconds?: number
  projectId?: string
}

export interface GenResult {
  bundles: FrameBundle[]
  active: Set<string>
  closed: Set<string>
  large: Set<string>
  /** A unique word planted in each frame's digest_text. */
  digestWord: Map<string, string>
}

/**
 * `n` StackMemory-shaped bundles in parent-first order: tasks (depth 0), some active, each with
 * 0-4 closed subtasks (depth 1). Active frames are ~0.4 KB, closed ones 4-8 KB, `large` of them
 * ~100 KB. Times are mixed: seconds, milliseconds and ISO-8601 strings; some JSON columns are
 * given as JSON text (StackMemory's own column format).
 */
export function genBundles(n: number, opts: GenOptions = {}): GenResult {
  const r = rng(opts.seed ?? 1)
  const idp = opts.idPrefix ?? 'g'
  const base = opts.baseSeconds ?? Math.floor(Date.now() / 1000) - 30 * 86400
  const project = opts.projectId ?? 'git-github-com-acme-widget-service'
  const largeWanted = opts.large ?? 4
  const bundles: FrameBundle[] = []
  const active = new Set<string>()
  const closed = new Set<string>()
  const large = new Set<string>()
  const digestWord = new Map<string, string>()
  let largeLeft = largeWanted
  let i = 0
  const largeEvery = largeWanted > 0 ? Math.max(1, Math.floor(n / (largeWanted + 1))) : Infinity

  const make = (opt: { parent?: string; depth: number; isActive: boolean; runId: string }): FrameBundle => {
    const idx = i++
    const frameId = `${idp}-${idx}-${uuidFrom(r)}`
    const created = base + idx * 7 + Math.floor(r() * 5)
    const closedAt = created + 30 + Math.floor(r() * 3000)
    const timeStyle = idx % 5 // 0,1: seconds; 2: ms; 3: ISO; 4: seconds created, ms closed
    const t = (s: number, style: number): number | string =>
      style === 2 ? s * 1000 + (idx % 1000) : style === 3 ? new Date(s * 1000).toISOString() : s
    const word = `dw${idp.replace(/[^a-z0-9]/gi, '')}x${idx}`
    digestWord.set(frameId, word)
    const isLarge = !opt.isActive && largeLeft > 0 && idx > 0 && idx % largeEvery === 0
    if (isLarge) largeLeft--
    const targetBytes = opt.isActive ? 0 : isLarge ? 100_000 : 4000 + Math.floor(r() * 4000)
    const name = `${opt.depth === 0 ? 'Task' : 'Subtask'} ${words(r, 4)} ${idx}`
    const events: any[] = []
    const anchors: any[] = []
    const nEvents = opt.isActive ? (idx % 2) : 3 + Math.floor(r() * 4)
    // Event sizes share the frame's budget; given out of seq order sometimes (normalised by seq).
    const per = opt.isActive ? 16 : Math.max(50, Math.floor((targetBytes - 1500) / nEvents) - 180)
    for (let e = 0; e < nEvents; e++) {
      const tsSec = created + 5 + e * 10
      const tsStyle = (idx + e) % 4
      const ts: number | string = tsStyle === 3 ? new Date(tsSec * 1000 + 250).toISOString() : tsSec * 1000 + 250
      const payload = opt.isActive
        ? { content: textOf(r, per) }
        : e % 2 === 0
          ? { tool_name: 'Read', arguments: { file_path: `src/${words(r, 1)}.ts` }, content: textOf(r, per) }
          : { tool_name: 'Bash', status: 'ok', result: textOf(r, per) }
      events.push({
        event_id: `${frameId}-e${e}`,
        frame_id: frameId,
        run_id: opt.runId,
        seq: e + 1,
        event_type: e % 2 === 0 ? 'tool_call' : 'tool_result',
        // Some payloads as JSON text, as StackMemory's column holds them.
        payload: (idx + e) % 7 === 0 ? JSON.stringify(payload) : payload,
        ts,
      })
    }
    if (!opt.isActive && nEvents > 2 && idx % 3 === 0) {
      // Out of order: the store puts events in seq order.
      const x = events[0]
      events[0] = events[1]
      events[1] = x
    }
    const nAnchors = opt.isActive ? 0 : 1 + Math.floor(r() * 2)
    for (let a = 0; a < nAnchors; a++) {
      anchors.push({
        anchor_id: `${frameId}-a${a}`,
        frame_id: frameId,
        project_id: '',
        type: ['DECISION', 'FACT', 'CONSTRAINT', 'RISK'][a % 4],
        text: words(r, 8),
        priority: Math.floor(r() * 10),
        created_at: (idx + a) % 4 === 3 ? new Date((created + 20) * 1000).toISOString() : created + 20,
        metadata: a % 2 ? { source: 'mcp:add_decision' } : {},
      })
    }
    const inputs = opt.isActive ? { goals: words(r, 2) } : { goals: words(r, 5), constraints: [words(r, 3)] }
    const digestText = opt.isActive
      ? null
      : `Frame: ${name} (${opt.depth === 0 ? 'task' : 'subtask'})\nKey word ${word}\nGoals: ${words(r, 6)}\n`
    const frame: any = {
      frame_id: frameId,
      run_id: opt.runId,
      project_id: project,
      ...(opt.parent ? { parent_frame_id: opt.parent } : {}),
      depth: opt.depth,
      type: opt.depth === 0 ? 'task' : 'subtask',
      name,
      state: opt.isActive ? 'active' : 'closed',
      inputs: idx % 6 === 0 ? JSON.stringify(inputs) : inputs,
      outputs: opt.isActive ? {} : { summary: words(r, 10), files_changed: Math.floor(r() * 5) },
      digest_text: opt.isActive ? `active ${word}` : digestText,
      digest_json: opt.isActive ? {} : { frameName: name, activity: { totalEvents: nEvents } },
      created_at: t(created, timeStyle === 4 ? 0 : timeStyle),
      closed_at: opt.isActive ? null : t(closedAt, timeStyle === 4 ? 2 : timeStyle),
      retention_policy: 'default',
    }
    const b: FrameBundle = { frame, events, anchors }
    ;(opt.isActive ? active : closed).add(frameId)
    if (isLarge) large.add(frameId)
    return b
  }

  while (bundles.length < n) {
    const runId = uuidFrom(r)
    const taskActive = r() < 0.2
    const task = make({ depth: 0, isActive: taskActive, runId })
    bundles.push(task)
    const subs = Math.floor(r() * 5)
    for (let s = 0; s < subs && bundles.length < n; s++) {
      bundles.push(make({ parent: task.frame.frame_id, depth: 1, isActive: false, runId }))
    }
  }
  return { bundles, active, closed, large, digestWord }
}

/** What `normalize_bundle` makes of a bundle (JS mirror, for checking the hot tier independently). */
export function normalized(b: FrameBundle): FrameBundle {
  const c: any = JSON.parse(JSON.stringify(b))
  const parse = (o: any, k: string) => {
    if (typeof o[k] === 'string') o[k] = JSON.parse(o[k])
  }
  const secs = (o: any, k: string) => {
    if (typeof o[k] === 'string') o[k] = Math.floor(Date.parse(o[k]) / 1000)
  }
  for (const k of ['inputs', 'outputs', 'digest_json']) parse(c.frame, k)
  secs(c.frame, 'created_at')
  secs(c.frame, 'closed_at')
  c.events = (c.events ?? []).map((e: any) => {
    parse(e, 'payload')
    if (typeof e.ts === 'string') e.ts = Date.parse(e.ts)
    return e
  })
  c.events.sort((x: any, y: any) => (x.seq ?? Infinity) - (y.seq ?? Infinity))
  c.anchors = (c.anchors ?? []).map((a: any) => {
    secs(a, 'created_at')
    parse(a, 'metadata')
    return a
  })
  return c
}

/** A small hand-made bundle (no children), for tests that need exact control over one frame. */
export function simpleBundle(
  id: string,
  o: { state?: 'active' | 'closed'; createdAt?: number | string | null; closedAt?: number | string | null; digest?: string; name?: string; parent?: string } = {},
): FrameBundle {
  const now = Math.floor(Date.now() / 1000)
  const frame: any = {
    frame_id: id,
    run_id: 'run-' + id,
    project_id: 'proj-simple',
    depth: o.parent ? 1 : 0,
    type: 'task',
    name: o.name ?? `simple frame ${id}`,
    state: o.state ?? 'closed',
    inputs: { goals: 'g' },
    outputs: { summary: 's' },
    digest_text: o.digest ?? `digest of ${id}`,
    digest_json: {},
  }
  if (o.parent) frame.parent_frame_id = o.parent
  if (o.createdAt !== null) frame.created_at = o.createdAt ?? now - 10 * 86400
  if (o.closedAt !== null && (o.state ?? 'closed') === 'closed') frame.closed_at = o.closedAt ?? now - 9 * 86400
  return {
    frame,
    events: [
      { event_id: id + '-e1', frame_id: id, run_id: 'run-' + id, seq: 1, event_type: 'tool_call', payload: { content: 'hello ' + id }, ts: now * 1000 },
    ],
    anchors: [{ anchor_id: id + '-a1', frame_id: id, project_id: '', type: 'FACT', text: 'fact of ' + id, priority: 1, created_at: now, metadata: {} }],
  }
}

export interface SqliteRow {
  tier: string
  bodyLocal: boolean
  checksum: string | null
  heldBack: string | null
  events: number
  digest: string | null
}

// The hot tier's file is read from a child process: a second SQLite library (better-sqlite3) in
// this process would share POSIX locks with the addon's SQLite and could corrupt the file.
function sqliteQuery(dbPath: string, sql: string, pragma?: string): any[] {
  const script = `
    const Database = require('better-sqlite3')
    const db = new Database(process.argv[1], { readonly: true, fileMustExist: true })
    db.pragma('busy_timeout = 10000')
    const out = process.argv[3] ? db.pragma(process.argv[3]) : db.prepare(process.argv[2]).all()
    db.close()
    process.stdout.write(JSON.stringify(out))`
  const out = execFileSync(process.execPath, ['-e', script, dbPath, sql, pragma ?? ''], {
    encoding: 'utf8',
    cwd: ROOT,
    maxBuffer: 256 * 1024 * 1024,
  })
  return JSON.parse(out)
}

/** What the hot tier's file says about every frame, read directly with better-sqlite3. */
export function sqliteFrames(dbPath: string): Map<string, SqliteRow> {
  const rows = sqliteQuery(
    dbPath,
    `SELECT f.frame_id AS id, COALESCE(f.tier_status, 'hot') AS tier, COALESCE(m.body_local, 1) AS bl, m.checksum AS cs,
            m.held_back AS hb, f.digest_text AS dt, (SELECT count(*) FROM events e WHERE e.frame_id = f.frame_id) AS ne
     FROM frames f LEFT JOIN tier_metadata m ON m.frame_id = f.frame_id`,
  )
  const out = new Map<string, SqliteRow>()
  for (const r of rows) out.set(r.id, { tier: r.tier, bodyLocal: r.bl !== 0, checksum: r.cs, heldBack: r.hb, events: r.ne, digest: r.dt })
  return out
}

/** Open journal entries (started / verified) in the hot tier's file. */
export function openJournal(dbPath: string): any[] {
  return sqliteQuery(dbPath, `SELECT * FROM tier_journal WHERE step IN ('started', 'verified')`)
}

/** PRAGMA integrity_check of the hot tier's file ('ok' when sound). */
export function sqliteIntegrity(dbPath: string): string {
  return sqliteQuery(dbPath, '', 'integrity_check')
    .map((r: any) => r.integrity_check)
    .join('; ')
}

export function loadFixtures(): FrameBundle[] {
  return JSON.parse(fs.readFileSync(path.join(ROOT, '__test__', 'fixtures', 'frames.json'), 'utf8'))
}

// ---------------------------------------------------------------------------------------------
// Per-test configuration and cleanup

export interface TestEnv {
  dir: string
  dbPath: string
  prefix: string
  schema: string
  config: TierConfig
  /** The same config with other connection strings (a closed port, a proxy). */
  with(o: { redisUrl?: string; pgUrl?: string; policies?: TierConfig['policies'] }): TierConfig
  cleanup(): void
}

export function makeEnv(o: { policies?: TierConfig['policies']; redisUrl?: string; pgUrl?: string; tag?: string } = {}): TestEnv {
  const tag = o.tag ?? randomTag()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smt-'))
  const dbPath = path.join(dir, 'context.db')
  const prefix = `smt:${tag}:`
  const schema = `t_${tag}`
  const build = (x: { redisUrl?: string; pgUrl?: string; policies?: TierConfig['policies'] }): TierConfig => ({
    dbPath,
    tiers: {
      redis: { enabled: true, connectionString: x.redisUrl ?? REDIS_URL, keyPrefix: prefix, connectTimeout: 1000 },
      postgres: { enabled: true, connectionString: x.pgUrl ?? PG_URL, schema, connectTimeout: 2000 },
    },
    // Tests move frames themselves: no background worker (on by default with remote tiers)
    // deciding moves of its own behind their backs, unless a test asks for it.
    policies: { promotionThreshold: 1000, backgroundSync: false, ...(x.policies ?? {}) },
  })
  const config = build(o)
  return {
    dir,
    dbPath,
    prefix,
    schema,
    config,
    with: (x) => build({ redisUrl: x.redisUrl ?? o.redisUrl, pgUrl: x.pgUrl ?? o.pgUrl, policies: { ...(o.policies ?? {}), ...(x.policies ?? {}) } }),
    cleanup: () => {
      try {
        redisDelPrefix(prefix)
      } catch {}
      try {
        psql(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
      } catch {}
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}

/**
 * What a test file opened, to close in its afterAll: managers first, then whatever was deferred
 * (servers, proxies, in the order registered), then each env's keys, schema and files.
 */
export function registry() {
  const envs: TestEnv[] = []
  const managers: TierManager[] = []
  const deferred: Array<() => Promise<unknown>> = []
  return {
    env(o?: Parameters<typeof makeEnv>[0]): TestEnv {
      const e = makeEnv(o)
      envs.push(e)
      return e
    },
    async open(cfg: TierConfig): Promise<TierManager> {
      const m = await TierManager.open(cfg)
      managers.push(m)
      return m
    },
    defer(f: () => Promise<unknown>): void {
      deferred.push(f)
    },
    async closeAll(): Promise<void> {
      for (const m of managers) await m.close().catch(() => {})
      for (const f of deferred) await f()
      for (const e of envs) e.cleanup()
    },
  }
}

// ---------------------------------------------------------------------------------------------
// Direct service access (behind the addon's back)

export function redisCli(args: string[], url = REDIS_URL, quiet = false): string {
  return execFileSync('redis-cli', ['-u', url, '--no-auth-warning', ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', quiet ? 'ignore' : 'inherit'],
  })
}

export function redisKeys(prefix: string, url = REDIS_URL): string[] {
  const out = redisCli(['--scan', '--pattern', `${globEscape(prefix)}*`], url)
  return out.split('\n').filter((l) => l.length > 0)
}

/** Delete every key under `prefix`; returns how many were deleted. */
export function redisDelPrefix(prefix: string, url = REDIS_URL): number {
  const keys = redisKeys(prefix, url)
  let n = 0
  for (let i = 0; i < keys.length; i += 500) {
    const out = redisCli(['DEL', ...keys.slice(i, i + 500)], url)
    n += parseInt(out.trim(), 10) || 0
  }
  return n
}

function globEscape(s: string): string {
  return s.replace(/[\\*?[\]]/g, (c) => '\\' + c)
}

export function psql(sql: string, url = PG_URL): string {
  return execFileSync('psql', [url, '-v', 'ON_ERROR_STOP=1', '-Atqc', sql], {
    encoding: 'utf8',
    env: { ...process.env, PGOPTIONS: '-c client_min_messages=warning' },
  }).trim()
}

/** The archive's rows (frame id → tier column and checksum), read directly with psql. */
export function archiveRows(schema: string): Map<string, { tier: number; checksum: string }> {
  const exists = psql(`SELECT to_regclass('${schema}.frames_archive') IS NOT NULL`)
  const m = new Map<string, { tier: number; checksum: string }>()
  if (exists !== 't') return m
  const out = psql(`SELECT frame_id || '|' || tier || '|' || checksum FROM ${schema}.frames_archive`)
  for (const l of out.split('\n')) {
    if (!l) continue
    const parts = l.split('|')
    const checksum = parts.pop() as string
    const tier = parseInt(parts.pop() as string, 10)
    m.set(parts.join('|'), { tier, checksum })
  }
  return m
}

/** Frame ids with a body copy (`frame:{id}` key) in Redis under `prefix`. */
export function redisFrameIds(prefix: string, url = REDIS_URL): Set<string> {
  const s = new Set<string>()
  for (const k of redisKeys(prefix + 'frame:', url)) {
    const m = /^.*frame:\{(.*)\}$/.exec(k)
    if (m) s.add(m[1])
  }
  return s
}

// ---------------------------------------------------------------------------------------------
// Servers that the tests may break

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port
      s.close(() => resolve(p))
    })
  })
}

/** A port nothing listens on (connections are refused at once). */
export const CLOSED_PORT = 1

export interface OwnRedis {
  port: number
  url: string
  proc: ChildProcess
  kill(): Promise<void>
}

/** A throwaway redis-server of our own (the shared one is never touched). */
export async function startRedis(port?: number): Promise<OwnRedis> {
  const p = port ?? (await freePort())
  const proc = spawn('redis-server', ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no'], {
    stdio: 'ignore',
  })
  const url = `redis://127.0.0.1:${p}`
  const deadline = Date.now() + 10_000
  for (;;) {
    try {
      if (redisCli(['PING'], url, true).trim() === 'PONG') break
    } catch {}
    if (Date.now() > deadline) {
      proc.kill('SIGKILL')
      throw new Error(`own redis-server on ${p} did not start`)
    }
    await sleep(50)
  }
  const exited = new Promise<void>((res) => proc.once('exit', () => res()))
  return {
    port: p,
    url,
    proc,
    kill: async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGKILL')
        await exited
      }
    },
  }
}

export interface Proxy {
  port: number
  url(base: string): string
  /** Stop accepting and cut every open connection (the "server died" simulation). */
  kill(): Promise<void>
  /** Accept again, on the same port. */
  revive(): Promise<void>
  connections(): number
}

/** A TCP proxy to 127.0.0.1:targetPort that a test can cut like a dying server. */
export async function startProxy(targetPort: number): Promise<Proxy> {
  const sockets = new Set<net.Socket>()
  let server: net.Server
  let port = 0
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      server = net.createServer((client) => {
        const upstream = net.connect(targetPort, '127.0.0.1')
        sockets.add(client)
        sockets.add(upstream)
        const drop = () => {
          client.destroy()
          upstream.destroy()
          sockets.delete(client)
          sockets.delete(upstream)
        }
        client.on('error', drop).on('close', drop)
        upstream.on('error', drop).on('close', drop)
        client.pipe(upstream)
        upstream.pipe(client)
      })
      server.once('error', reject)
      server.listen(port, '127.0.0.1', () => {
        port = (server.address() as net.AddressInfo).port
        resolve()
      })
    })
  await listen()
  return {
    get port() {
      return port
    },
    url: (base: string) => base.replace(/:(\d+)(\/|$)/, `:${port}$2`),
    kill: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        sockets.clear()
        server.close(() => resolve())
      }),
    revive: () => listen(),
    connections: () => sockets.size / 2,
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

/** Run `f` and return the error it rejects with (fails when it resolves). */
export async function rejectionOf(p: Promise<unknown>): Promise<any> {
  try {
    await p
  } catch (e) {
    return e
  }
  throw new Error('expected a rejection, got a value')
}

export function chunks<T>(a: T[], n: number): T[][] {
  const out: T[][] = []
  for (let i = 0; i < a.length; i += n) out.push(a.slice(i, i + n))
  return out
}
