// The storage CLI on commander, against the real Redis and PostgreSQL: mounted in a fresh commander
// program and as the stackmemory-storage bin; exit codes; StackMemory's config loader; no password
// of a connection string ever printed.
import { spawnSync } from 'child_process'
import * as fs from 'fs'
import * as path from 'path'
import { Command } from 'commander'

import { TierManager } from '../index'
import { registerStorageCommands, run } from '../cli/storage'
import { loadStackMemoryConfig, loadTierConfigFile, maskSecrets } from '../lib/stackmemory-config'
import { CLOSED_PORT, PG_URL, REDIS_URL, ROOT, TestEnv, fileRegistry, simpleBundle } from './helpers/gen'

const reg = fileRegistry()
const BIN = path.join(ROOT, 'cli', 'stackmemory-storage.js')
const DAY = 86400
const SECRET = 's3cret'
const BAD_REDIS = `redis://:${SECRET}@127.0.0.1:${CLOSED_PORT}`
const BAD_PG = `postgres://postgres:${SECRET}@127.0.0.1:${CLOSED_PORT}/test`

class Exited {
  constructor(readonly code: number) {}
}

interface Result {
  code: number
  stdout: string
  stderr: string
}

/** `storage <argv...>` in a fresh commander program, as StackMemory mounts it. */
async function mounted(argv: string[], home: string, env: Record<string, string> = {}): Promise<Result> {
  const out: string[] = []
  const err: string[] = []
  let code = 0
  const program = new Command('stackmemory')
  registerStorageCommands(program, {
    stdout: (l) => out.push(l),
    stderr: (l) => err.push(l),
    exitCode: (c) => (code = c),
    exit: (c) => {
      throw new Exited(c)
    },
    env,
    home,
  })
  try {
    await program.parseAsync(['storage', ...argv], { from: 'user' })
  } catch (e) {
    if (!(e instanceof Exited)) throw e
    code = e.code
  }
  return { code, stdout: out.join('\n'), stderr: err.join('\n') }
}

/** The bin in a child process (everything it prints, from JS or the addon), HOME set to `home`. */
function bin(argv: string[], home: string, env: Record<string, string> = {}): Result {
  const r = spawnSync(process.execPath, [BIN, ...argv], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, REDIS_URL: '', DATABASE_URL: '', HOME: home, ...env },
  })
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr }
}

/** A TierConfig file with the env's own Redis key prefix and PostgreSQL schema, no URLs. */
function isolatingConfig(env: TestEnv, extra: Record<string, unknown> = {}): string {
  const file = path.join(env.dir, 'tiers.json')
  const c = env.config
  fs.writeFileSync(
    file,
    JSON.stringify({
      tiers: { redis: { keyPrefix: c.tiers!.redis!.keyPrefix }, postgres: { schema: c.tiers!.postgres!.schema } },
      policies: c.policies,
      ...extra,
    }),
  )
  return file
}

/** A home directory, with `.stackmemory/config.json` holding `settings` when given. */
function homeWith(env: TestEnv, settings?: unknown): string {
  const home = fs.mkdtempSync(path.join(env.dir, 'home-'))
  if (settings !== undefined) {
    fs.mkdirSync(path.join(home, '.stackmemory'))
    fs.writeFileSync(path.join(home, '.stackmemory', 'config.json'), typeof settings === 'string' ? settings : JSON.stringify(settings))
  }
  return home
}

/** Two closed frames older than a day, one closed a minute ago, one active. */
async function seed(env: TestEnv): Promise<void> {
  const now = Math.floor(Date.now() / 1000)
  const m = await TierManager.open(env.config)
  await m.storeMany([
    simpleBundle('old-1'),
    simpleBundle('old-2', { closedAt: now - 3 * DAY, name: 'backoff retry' }),
    simpleBundle('new-1', { createdAt: now - 120, closedAt: now - 60 }),
    simpleBundle('act-1', { state: 'active', createdAt: now - 5 * DAY }),
  ])
  await m.close()
}

describe('mounted as `storage` in a commander program', () => {
  let env: TestEnv
  let home: string
  let global: string[]

  beforeAll(async () => {
    env = reg.env()
    home = homeWith(env)
    global = ['--db', env.dbPath, '--config', isolatingConfig(env), '--redis', REDIS_URL, '--postgres', PG_URL]
    await seed(env)
  })

  test('storage status --json: frame counts and reachable backends', async () => {
    const r = await mounted(['status', '--json', ...global], home)
    expect(r).toMatchObject({ code: 0, stderr: '' })
    const s = JSON.parse(r.stdout)
    expect(s.dbPath).toBe(env.dbPath)
    expect(s.mode).toBe('tiered')
    expect([s.tiers.hot.frames, s.tiers.warm.frames, s.tiers.cold.frames]).toEqual([4, 0, 0])
    expect(s.backends.redis).toMatchObject({ configured: true, reachable: true, url: REDIS_URL })
    expect(s.backends.postgres).toMatchObject({ configured: true, reachable: true, url: maskSecrets(PG_URL) })
  })

  test('storage status: a human table', async () => {
    const r = await mounted(['status', ...global], home)
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^tier\s+frames\s+bytes$/m)
    expect(r.stdout).toMatch(/^hot \(sqlite\)\s+4\s/m)
    expect(r.stdout).toMatch(/^postgres: ok /m)
  })

  test('storage migrate --tier 2 moves the closed frames older than a day, then status counts them warm', async () => {
    const r = await mounted(['migrate', '--tier', '2', '--older-than', '24h', '--json', ...global], home)
    expect(r).toMatchObject({ code: 0, stderr: '' })
    // NDJSON: progress lines in order, then the report.
    const lines = r.stdout.split('\n').map((l) => JSON.parse(l))
    const report = lines[lines.length - 1]
    expect(report.event).toBe('done')
    const progress = lines.slice(0, -1)
    expect(progress.length).toBeGreaterThan(0)
    expect(progress.every((p: any) => p.event === 'progress' && p.runId === report.runId)).toBe(true)
    expect(progress[progress.length - 1]).toMatchObject({ state: 'done', done: 2, total: 3 })
    expect(report.toTier).toBe('warm')
    expect(report.moved.map((x: any) => x.frameId).sort()).toEqual(['old-1', 'old-2'])
    expect(report.moved.every((x: any) => x.from === 'hot' && x.to === 'warm')).toBe(true)
    expect(report.failed).toEqual([])

    const s = JSON.parse((await mounted(['status', '--json', ...global], home)).stdout)
    expect([s.tiers.hot.frames, s.tiers.warm.frames, s.tiers.cold.frames]).toEqual([2, 2, 0])

    const found = await mounted(['search', 'backoff', '--json', ...global], home)
    expect(JSON.parse(found.stdout).results.map((h: any) => [h.frameId, h.tier])).toContainEqual(['old-2', 'warm'])
  })

  test('the bin prints the same status', async () => {
    const viaMount = JSON.parse((await mounted(['status', '--json', ...global], home)).stdout)
    // URLs from the environment this time, not flags.
    const r = bin(['status', '--json', '--db', env.dbPath, '--config', isolatingConfig(env)], home, { REDIS_URL, DATABASE_URL: PG_URL })
    expect(r).toMatchObject({ code: 0, stderr: '' })
    const viaBin = JSON.parse(r.stdout)
    for (const k of ['dbPath', 'mode', 'tiers', 'journalBacklog', 'heldBack']) expect(viaBin[k]).toEqual(viaMount[k])
    expect(viaBin.backends.postgres.url).toBe(viaMount.backends.postgres.url)
  })

  test('StackMemory’s config file: database.url is the cold tier (status sees its PostgreSQL)', async () => {
    const c = env.config
    const smHome = homeWith(env, {
      database: { url: PG_URL },
      tiers: { tiers: { redis: { keyPrefix: c.tiers!.redis!.keyPrefix }, postgres: { schema: c.tiers!.postgres!.schema } }, policies: c.policies },
    })
    const r = await mounted(['status', '--json', '--db', env.dbPath], smHome, { REDIS_URL })
    expect(r.code).toBe(0)
    const s = JSON.parse(r.stdout)
    expect(s.backends.postgres).toMatchObject({ configured: true, reachable: true, url: maskSecrets(PG_URL) })
    expect(s.backends.redis).toMatchObject({ configured: true, reachable: true })
    expect([s.tiers.hot.frames, s.tiers.warm.frames]).toEqual([2, 2])
    // The same from the bin, whose home is HOME.
    const b = JSON.parse(bin(['status', '--json', '--db', env.dbPath], smHome, { REDIS_URL }).stdout)
    expect(b.tiers).toEqual(s.tiers)
  })

  test('--redis-file / --postgres-file hold the URLs', async () => {
    const rf = path.join(env.dir, 'redis.url')
    const pf = path.join(env.dir, 'pg.url')
    fs.writeFileSync(rf, REDIS_URL + '\n')
    fs.writeFileSync(pf, PG_URL + '\n')
    const r = bin(['status', '--json', '--db', env.dbPath, '--config', isolatingConfig(env), '--redis-file', rf, '--postgres-file', pf], home)
    expect(r.code).toBe(0)
    const s = JSON.parse(r.stdout)
    expect([s.backends.redis.reachable, s.backends.postgres.reachable]).toEqual([true, true])
    expect(s.tiers.warm.frames).toBe(2)
  })

  test('storage --help and storage migrate --help', async () => {
    const group = await mounted(['--help'], home)
    expect(group.code).toBe(0)
    for (const c of ['status', 'migrate', 'plan', 'resume', 'runs', 'rollback', 'verify', 'retrieve', 'search', 'compact', 'train-dictionary', 'stats', 'pin', 'unpin', 'explain', 'policy', 'simulate']) {
      expect(group.stdout).toMatch(new RegExp(`^  ${c}\\b`, 'm'))
    }
    const migrate = await mounted(['migrate', '--help'], home)
    expect(migrate.code).toBe(0)
    for (const o of ['--tier', '--dry-run', '--older-than', '--rate', '--byte-rate', '--memory-budget', '--db', '--config', '--redis', '--redis-file', '--postgres', '--postgres-file', '--json']) {
      expect(migrate.stdout).toContain(o)
    }
  })

  test('storage plan, runs, verify, rollback: a run seen, checked and undone from the CLI', async () => {
    const plan = JSON.parse((await mounted(['plan', '--tier', 'cold', '--json', ...global], home)).stdout)
    expect(plan).toMatchObject({ toTier: 'cold' })
    const human = await mounted(['plan', '--tier', 'cold', ...global], home)
    expect(human.stdout).toMatch(/^would move \d+ frame\(s\)/)

    const moved = await mounted(['migrate', '--tier', 'cold', '--ids', 'new-1', '--rate', '100', ...global], home)
    expect(moved).toMatchObject({ code: 0, stderr: '' })
    const runId = /\(run (run-[^ ,)]+)/.exec(moved.stdout)![1]
    const runs = JSON.parse((await mounted(['runs', '--json', ...global], home)).stdout)
    expect(runs[0]).toMatchObject({ runId, state: 'done', done: 1, kind: 'migrate' })
    const one = await mounted(['runs', runId, ...global], home)
    expect(one.stdout).toMatch(new RegExp(`^${runId} \\(migrate\\): done`))

    const v = await mounted(['verify', ...global], home)
    expect(v).toMatchObject({ code: 0 })
    expect(v.stdout).toMatch(/^checked 4 frame\(s\) in \d+ ms: clean$/)

    const back = await mounted(['rollback', runId, ...global], home)
    expect(back).toMatchObject({ code: 0, stderr: '' })
    expect(back.stdout).toMatch(/^moved 1 frame\(s\) back/)
    const resume = await mounted(['resume', runId, ...global], home)
    expect(resume.code).toBe(1)
    expect(resume.stderr).toMatch(/^error \[ERR_INVALID_ARGUMENT\]: .*runId: run .* is done/)
    expect((await mounted(['verify', '--sample', '2', ...global], home)).stderr).toMatch(/ERR_INVALID_ARGUMENT.*sample/)
  })

  test('usage errors exit 2; failed operations exit 1 with error [CODE]', async () => {
    expect((await mounted(['bogus'], home)).code).toBe(2)
    const noTier = await mounted(['migrate', ...global], home)
    expect(noTier.code).toBe(2)
    expect(noTier.stderr).toMatch(/--tier/)
    const missing = await mounted(['retrieve', 'no-such-frame', ...global], home)
    expect(missing.code).toBe(1)
    expect(missing.stderr).toMatch(/^error \[ERR_NOT_FOUND\]: frame no-such-frame not found/)
    // A handful of frames is too few to train a dictionary on.
    const few = await mounted(['train-dictionary', '--force', ...global], home)
    expect(few.code).toBe(1)
    expect(few.stderr).toMatch(/^error \[ERR_INVALID_ARGUMENT\]: invalid argument: options\.projectId: \S+ has \d frames to sample, at least 16/)
  })
})

describe('the stackmemory-storage bin', () => {
  let env: TestEnv
  let home: string

  beforeAll(() => {
    env = reg.env()
    home = homeWith(env)
  })

  test('--help lists the commands and exits 0; no command exits 2', () => {
    const r = bin(['--help'], home)
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/Usage: stackmemory-storage/)
    expect(r.stdout).toMatch(/^  policy\b/m)
    expect(bin(['policy', 'run', '--help'], home).stdout).toContain('--dry-run')
    expect(bin([], home).code).toBe(2)
  })

  test('an unknown command or option exits 2', () => {
    const cmd = bin(['frobnicate'], home)
    expect(cmd.code).toBe(2)
    expect(cmd.stderr).toMatch(/unknown command 'frobnicate'/)
    const opt = bin(['status', '--db', env.dbPath, '--bogus'], home)
    expect(opt.code).toBe(2)
    expect(opt.stderr).toMatch(/unknown option '--bogus'/)
    expect(bin(['migrate', '--tier', 'lukewarm', '--db', env.dbPath], home).code).toBe(2)
    expect(bin(['search', 'x', '--limit', '0', '--db', env.dbPath], home).code).toBe(2)
    expect(bin(['status', '--redis', REDIS_URL, '--redis-file', '/dev/null', '--db', env.dbPath], home).code).toBe(2)
  })

  test('a failed operation exits 1 with error [ERR_...]', () => {
    const bad = path.join(env.dir, 'bad.json')
    fs.writeFileSync(bad, '{ not json')
    const r = bin(['status', '--config', bad, '--db', env.dbPath], home)
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/^error \[ERR_INVALID_CONFIG\]: .*bad\.json: not valid JSON/)
    const scheme = bin(['status', '--redis', 'http://127.0.0.1:6379', '--db', env.dbPath], home)
    expect(scheme.code).toBe(1)
    expect(scheme.stderr).toMatch(/^error \[ERR_INVALID_CONFIG\]: .*tiers\.redis\.connectionString/)
    const noFile = bin(['status', '--postgres-file', path.join(env.dir, 'nope'), '--db', env.dbPath], home)
    expect(noFile.code).toBe(1)
    expect(noFile.stderr).toMatch(/^error \[ERR_INVALID_CONFIG\]: --postgres-file .*nope: cannot read/)
  })

  test('run(argv) resolves to the exit code', async () => {
    const out: string[] = []
    expect(await run(['status', '--json', '--db', env.dbPath], { stdout: (l) => out.push(l), env: {}, home })).toBe(0)
    expect(JSON.parse(out.join('\n')).mode).toBe('local-only')
    expect(await run(['nope'], { stderr: () => {} })).toBe(2)
    expect(await run(['retrieve', 'x', '--db', env.dbPath], { stderr: () => {}, env: {}, home })).toBe(1)
  })
})

describe('no password is ever printed', () => {
  let env: TestEnv
  let home: string
  const clean = (r: Result) => {
    expect(r.stdout + r.stderr).not.toContain(SECRET)
    return r
  }

  beforeAll(async () => {
    env = reg.env()
    home = homeWith(env)
    await seed(env)
  })

  test('status, human and --json, with the URLs as flags, from the environment and from files', () => {
    const flags = ['--redis', BAD_REDIS, '--postgres', BAD_PG]
    const rf = path.join(env.dir, 'r.url')
    const pf = path.join(env.dir, 'p.url')
    fs.writeFileSync(rf, BAD_REDIS)
    fs.writeFileSync(pf, BAD_PG)
    const sources: Array<[string[], Record<string, string>]> = [
      [flags, {}],
      [[], { REDIS_URL: BAD_REDIS, DATABASE_URL: BAD_PG }],
      [['--redis-file', rf, '--postgres-file', pf], {}],
    ]
    for (const [args, vars] of sources) {
      const human = clean(bin(['status', '--db', env.dbPath, ...args], home, vars))
      expect(human.code).toBe(0)
      expect(human.stdout).toContain(`redis: UNREACHABLE`)
      expect(human.stdout).toContain(`at redis://:***@127.0.0.1:${CLOSED_PORT}`)
      expect(human.stdout).toContain(`at postgres://postgres:***@127.0.0.1:${CLOSED_PORT}/test`)
      const json = clean(bin(['status', '--json', '--db', env.dbPath, ...args], home, vars))
      const s = JSON.parse(json.stdout)
      expect(s.backends.redis).toMatchObject({ reachable: false, url: `redis://:***@127.0.0.1:${CLOSED_PORT}` })
      expect(s.backends.postgres).toMatchObject({ reachable: false, url: `postgres://postgres:***@127.0.0.1:${CLOSED_PORT}/test` })
    }
    // StackMemory's config file holding the password.
    const smHome = homeWith(env, { database: { url: BAD_PG } })
    const s = JSON.parse(clean(bin(['status', '--json', '--db', env.dbPath], smHome)).stdout)
    expect(s.backends.postgres.url).toBe(`postgres://postgres:***@127.0.0.1:${CLOSED_PORT}/test`)
  })

  test('nor in errors and reports', () => {
    const flags = ['--db', env.dbPath, '--redis', BAD_REDIS, '--postgres', BAD_PG]
    // Frames that cannot reach their tier: a report with failures or held-back frames, exit 1 or 0.
    for (const json of [[], ['--json']]) {
      const r = clean(bin(['migrate', '--tier', '3', '--ids', 'old-1', ...json, ...flags], home))
      expect([0, 1]).toContain(r.code)
      clean(bin(['policy', 'run', ...json, ...flags], home))
      clean(bin(['search', 'backoff', ...json, ...flags], home))
    }
    // An error message that carries the URL: commander's, for an unknown option.
    const unknown = clean(bin(['status', `--redis-url=${BAD_REDIS}`, '--db', env.dbPath], home))
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toContain('redis://:***@')
    // The addon's config error, and our own for a URL of the wrong scheme.
    const scheme = clean(bin(['status', '--redis', `http://:${SECRET}@127.0.0.1:1`, '--db', env.dbPath], home))
    expect(scheme.code).toBe(1)
    expect(scheme.stderr).toMatch(/^error \[ERR_INVALID_CONFIG\]/)
  })

  test('maskSecrets', () => {
    expect(maskSecrets(`a ${BAD_REDIS} b ${BAD_PG}`)).toBe(`a redis://:***@127.0.0.1:${CLOSED_PORT} b postgres://postgres:***@127.0.0.1:${CLOSED_PORT}/test`)
    expect(maskSecrets('postgres://u:p/w@ss@h/db')).toBe('postgres://u:***@h/db')
    expect(maskSecrets('postgres://h/db?sslmode=require&password=pw')).toBe('postgres://h/db?sslmode=require&password=***')
    expect(maskSecrets('host=h user=u password=pw dbname=d')).toBe('host=h user=u password=*** dbname=d')
    for (const s of ['postgres://u@h:5432/db', 'redis://127.0.0.1:6379', 'no url here']) expect(maskSecrets(s)).toBe(s)
  })
})

describe('loadStackMemoryConfig', () => {
  let env: TestEnv
  beforeAll(() => {
    env = reg.env()
  })
  const fileOf = (home: string) => path.join(home, '.stackmemory', 'config.json')
  const invalid = (o: Parameters<typeof loadStackMemoryConfig>[0]) => {
    try {
      loadStackMemoryConfig(o)
    } catch (e: any) {
      return e
    }
    throw new Error('expected ERR_INVALID_CONFIG')
  }

  test('a missing file is empty: the environment, then the addon’s defaults', () => {
    const home = homeWith(env)
    expect(loadStackMemoryConfig({ home, env: {} })).toEqual({ tiers: {} })
    expect(loadStackMemoryConfig({ home, env: { REDIS_URL: 'redis://r', DATABASE_URL: 'postgres://d' } })).toEqual({
      tiers: { redis: { connectionString: 'redis://r' }, postgres: { connectionString: 'postgres://d' } },
    })
    // Empty variables count as unset.
    expect(loadStackMemoryConfig({ home, env: { REDIS_URL: '', DATABASE_URL: ' ' } })).toEqual({ tiers: {} })
  })

  test('file, then environment: database.url is the cold tier; the tiers block is taken as given', () => {
    const home = homeWith(env, {
      database: { url: 'postgres://from-file/db' },
      tiers: { dbPath: '/x/context.db', tiers: { redis: { keyPrefix: 'p:' } }, policies: { promotionThreshold: 5 } },
      otherStackMemorySetting: true,
    })
    const c = loadStackMemoryConfig({ home, env: { REDIS_URL: 'redis://from-env', DATABASE_URL: 'postgres://from-env/db' } })
    expect(c).toEqual({
      dbPath: '/x/context.db',
      tiers: { redis: { keyPrefix: 'p:', connectionString: 'redis://from-env' }, postgres: { connectionString: 'postgres://from-file/db' } },
      policies: { promotionThreshold: 5 },
    })
    // An explicit connection string in the tiers block wins over database.url.
    const explicit = homeWith(env, { database: { url: 'postgres://a/db' }, tiers: { tiers: { postgres: { connectionString: 'postgres://b/db', schema: 's' } } } })
    expect(loadStackMemoryConfig({ home: explicit, env: {} }).tiers!.postgres).toEqual({ connectionString: 'postgres://b/db', schema: 's' })
    // `file` in place of the home's file.
    expect(loadStackMemoryConfig({ file: fileOf(home), env: {} }).tiers!.postgres).toEqual({ connectionString: 'postgres://from-file/db' })
  })

  test('a bad file or field: ERR_INVALID_CONFIG naming the file and the field', () => {
    const cases: Array<[unknown, RegExp]> = [
      ['{ nope', /: not valid JSON/],
      ['[1, 2]', /: must be a JSON object/],
      [{ database: { url: 5432 } }, /: database\.url: must be a string$/],
      [{ database: 'postgres://x' }, /: database: must be an object$/],
      [{ tiers: [] }, /: tiers: must be an object$/],
      [{ tiers: { tiers: { redis: 'redis://x' } } }, /: tiers\.tiers\.redis: must be an object$/],
      [{ tiers: { policies: 3 } }, /: tiers\.policies: must be an object$/],
      [{ tiers: { dbPath: 1 } }, /: tiers\.dbPath: must be a string$/],
    ]
    for (const [settings, message] of cases) {
      const home = homeWith(env, settings)
      const e = invalid({ home, env: {} })
      expect(e.code).toBe('ERR_INVALID_CONFIG')
      expect(e.message.startsWith(fileOf(home) + ': ')).toBe(true)
      expect(e.message).toMatch(message)
    }
    const dir = homeWith(env)
    expect(invalid({ file: dir, env: {} }).message).toMatch(new RegExp(`^${dir}: cannot read`))
  })

  test('loadTierConfigFile: a plain TierConfig, URLs from the environment where it has none', () => {
    const file = path.join(env.dir, 'plain.json')
    fs.writeFileSync(file, JSON.stringify({ tiers: { redis: { connectionString: 'redis://file' } } }))
    expect(loadTierConfigFile(file, { env: { REDIS_URL: 'redis://env', DATABASE_URL: 'postgres://env' } }).tiers).toEqual({
      redis: { connectionString: 'redis://file' },
      postgres: { connectionString: 'postgres://env' },
    })
  })
})
