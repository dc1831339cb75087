// Shared helpers for the tier tests: the frame generator (testkit/frames.js, shared with the
// bench), a per-test config maker (own SQLite file, Redis key prefix, PostgreSQL schema) with cleanup,
// direct access to the services (redis-cli, psql) to look behind the addon's back, a throwaway
// redis-server and a killable TCP proxy. No mocks: everything talks to the real services.

import { execFileSync, spawn, ChildProcess } from 'child_process'
import * as fs from 'fs'
import * as net from 'net'
import * as os from 'os'
import * as path from 'path'
import * as crypto from 'crypto'

import { TierManager } from '../../index'
import type { FrameBundle, TierConfig, TierStatus } from '../../index'

export const REDIS_URL = process.env.REDIS_TEST_URL || 'redis://127.0.0.1:6379'
export const PG_URL = process.env.TEST_DATABASE_URL || 'postgres://postgres:postgres@127.0.0.1:5432/test'
export const ROOT = path.resolve(__dirname, '..', '..')

export { genBundles, normalized, simpleBundle } from '../../testkit/frames'
export type { GenOptions, GenResult } from '../../testkit/frames'

export function randomTag(n = 10): string {
  return crypto.randomBytes(16).toString('hex').slice(0, n)
}

export const idOf = (b: FrameBundle): string => b.frame.frame_id

/** Frames per tier, as a status reports them. */
export function counts(s: TierStatus): { hot: number; warm: number; cold: number } {
  return { hot: s.tiers.hot.frames, warm: s.tiers.warm.frames, cold: s.tiers.cold.frames }
}

/** Retrieve every id (no promotion) and return those whose JSON differs from `expected`, or
 * whose retrieve failed (with the error's code and message). */
export async function mismatches(m: TierManager, expected: Map<string, unknown>): Promise<string[]> {
  const bad: string[] = []
  for (const [id, want] of expected) {
    let got: unknown
    try {
      got = await m.retrieve(id, { promote: false })
    } catch (e: any) {
      bad.push(`${id}: ${e.code} ${e.message}`)
      continue
    }
    if (JSON.stringify(got) !== JSON.stringify(want)) bad.push(id)
  }
  return bad
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

/** Rows of any query on the hot tier's file (read from a child process, see above). */
export function sqliteAll(dbPath: string, sql: string): any[] {
  return sqliteQuery(dbPath, sql)
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

/** The calling test file's registry, closed in its afterAll. */
export function fileRegistry(): ReturnType<typeof registry> {
  const reg = registry()
  afterAll(() => reg.closeAll())
  return reg
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

/** How a redis-server of ours listens: its options for `port`, its URL, and a PING through it. */
export interface RedisListen {
  args(port: number): string[]
  url(port: number): string
  ping(port: number): string
}

const PLAIN: RedisListen = {
  args: (p) => ['--port', String(p)],
  url: (p) => `redis://127.0.0.1:${p}`,
  ping: (p) => redisCli(['PING'], `redis://127.0.0.1:${p}`, true),
}

/** A throwaway redis-server of our own (the shared one is never touched), up once it answers PING. */
export async function startRedisServer(listen: RedisListen, port?: number): Promise<OwnRedis> {
  const p = port ?? (await freePort())
  const proc = spawn('redis-server', [...listen.args(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no'], {
    stdio: 'ignore',
  })
  const exited = new Promise<void>((res) => proc.once('exit', () => res()))
  const kill = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL')
      await exited
    }
  }
  const deadline = Date.now() + 10_000
  for (;;) {
    try {
      if (listen.ping(p).trim() === 'PONG') break
    } catch {}
    if (Date.now() > deadline) {
      await kill()
      throw new Error(`own redis-server on ${p} did not start`)
    }
    await sleep(50)
  }
  return { port: p, url: listen.url(p), proc, kill }
}

/** A plain throwaway redis-server (`port`: the same one again after a kill). */
export function startRedis(port?: number): Promise<OwnRedis> {
  return startRedisServer(PLAIN, port)
}

export interface Proxy {
  port: number
  url(base: string): string
  /** Stop accepting and cut every open connection (the "server died" simulation). */
  kill(): Promise<void>
  /** Accept again, on the same port. */
  revive(): Promise<void>
  connections(): number
  /** Hold every chunk the server sends back for `ms` before passing it on (0: none). */
  delay(ms: number): void
}

/** A TCP proxy to 127.0.0.1:targetPort that a test can cut like a dying server, or slow down. */
export async function startProxy(targetPort: number): Promise<Proxy> {
  const sockets = new Set<net.Socket>()
  let server: net.Server
  let port = 0
  let delayMs = 0
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
        // The answers, in order: while a delay is set each chunk waits for it, the next one
        // behind it (the socket is paused meanwhile).
        upstream.on('data', (chunk: Buffer) => {
          if (delayMs <= 0) {
            client.write(chunk)
            return
          }
          upstream.pause()
          setTimeout(() => {
            if (!client.destroyed) client.write(chunk)
            upstream.resume()
          }, delayMs)
        })
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
    delay: (ms: number) => {
      delayMs = ms
    },
  }
}

/**
 * A second, foreign SQLite library in this process: a copy of better-sqlite3 (with its compiled
 * `.node`, which links its own SQLite) loaded from another directory. The addon must never share
 * a file with it.
 */
export function foreignBetterSqlite3(): typeof import('better-sqlite3') {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'smt-foreign-'))
  const modules = path.join(home, 'node_modules')
  fs.mkdirSync(modules)
  for (const dep of ['better-sqlite3', 'bindings', 'file-uri-to-path']) {
    const from = path.dirname(require.resolve(`${dep}/package.json`, { paths: [path.dirname(require.resolve('better-sqlite3'))] }))
    fs.cpSync(from, path.join(modules, dep), { recursive: true })
  }
  return require(path.join(modules, 'better-sqlite3'))
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
