// No connection string password anywhere: a failure run with a password in both URLs (closed
// ports, a black hole, a real Redis that refuses the password, malformed URLs), straight from the
// addon (no masking in JS between) and through the CLI with the URLs from the environment
// (STACKMEMORY_REDIS_URL / STACKMEMORY_POSTGRES_URL, so they need not be in `ps`). Every error
// message, status JSON, report and CLI output is grepped for the password.

import { spawnSync } from 'child_process'
import * as path from 'path'

import { TierManager } from '../index'
import { CLOSED_PORT, fileRegistry, genBundles, idOf, PG_URL, randomTag, REDIS_URL, ROOT, startRedis } from './helpers/gen'
import { listener } from './helpers/net'

const reg = fileRegistry()
const SECRET = `Pw${randomTag(12)}`
const BIN = path.join(ROOT, 'cli', 'stackmemory-storage.js')
const seen: string[] = []

function record(x: unknown): void {
  seen.push(typeof x === 'string' ? x : JSON.stringify(x, (_k, v) => (v instanceof Error ? { message: v.message, stack: v.stack } : v)))
}

async function settle(p: Promise<unknown>): Promise<void> {
  try {
    record(await p)
  } catch (e: any) {
    record(`${e?.code} ${e?.message} ${e?.stack}`)
  }
}

afterAll(() => {
  // The run really produced output to grep.
  expect(seen.length).toBeGreaterThan(20)
  for (const s of seen) expect(s).not.toContain(SECRET)
})

test('the addon: errors, status, reports and warnings of a failure run hold no password', async () => {
  const hole = await listener('blackhole')
  reg.defer(() => hole.close())
  // A Redis that wants a password we do not have, so AUTH itself fails.
  const authed = await startRedis()
  reg.defer(() => authed.kill())
  spawnSync('redis-cli', ['-p', String(authed.port), 'CONFIG', 'SET', 'requirepass', 'other-password'])
  const pairs: Array<[string, string]> = [
    [`redis://:${SECRET}@127.0.0.1:${CLOSED_PORT}`, `postgres://postgres:${SECRET}@127.0.0.1:${CLOSED_PORT}/test`],
    [`redis://default:${SECRET}@127.0.0.1:${hole.port}`, `postgres://postgres:${SECRET}@127.0.0.1:${hole.port}/test?sslmode=require`],
    [`redis://:${SECRET}@127.0.0.1:${authed.port}`, `host=127.0.0.1 port=${CLOSED_PORT} user=postgres password=${SECRET} dbname=test`],
    [`rediss://:${SECRET}@127.0.0.1:${authed.port}`, `postgres://postgres:${SECRET}@127.0.0.1:${CLOSED_PORT}/test?sslmode=verify-full`],
  ]
  for (const [redisUrl, pgUrl] of pairs) {
    const e = reg.env()
    const cfg = e.with({ redisUrl, pgUrl })
    cfg.tiers!.redis!.connectTimeout = 300
    cfg.tiers!.postgres!.connectTimeout = 300
    const m = await reg.open(cfg)
    const gen = genBundles(8, { seed: 41, idPrefix: 'sec' })
    await m.storeMany(gen.bundles)
    await settle(m.migrate({ toTier: 'warm' }))
    await settle(m.migrate({ toTier: 'cold' }))
    await settle(m.search('anything'))
    await settle(m.search('anything', { tiers: ['cold'] } as any))
    await settle(m.verify({}))
    await settle(m.compact())
    await settle(m.retrieve(idOf(gen.bundles[0])))
    await settle(m.planMigration({ toTier: 'cold' }))
    const s = await m.status()
    record(s)
    expect(s.backends.redis.reachable).toBe(false)
    expect(s.backends.postgres.reachable).toBe(false)
  }
  // Config errors that are about the URL itself.
  const e = reg.env()
  for (const [redisUrl, pgUrl] of [
    [`http://:${SECRET}@127.0.0.1:1`, PG_URL],
    [REDIS_URL, `mysql://root:${SECRET}@127.0.0.1/x`],
    [REDIS_URL, `postgres://postgres:${SECRET}@127.0.0.1:5432/test?sslmode=${SECRET}`],
    [REDIS_URL, `postgres://postgres:${SECRET}@127.0.0.1:notaport/test`],
    [`redis://:${SECRET}@127.0.0.1:notaport`, PG_URL],
  ]) {
    // Refused at open (ERR_INVALID_CONFIG), or accepted and then unreachable.
    try {
      const m = await TierManager.open(e.with({ redisUrl, pgUrl }))
      record(await m.status())
      await m.close()
    } catch (err: any) {
      record(`${err?.code} ${err?.message} ${err?.stack}`)
      expect(err.code).toBe('ERR_INVALID_CONFIG')
    }
  }
})

function bin(argv: string[], env: Record<string, string>): { code: number; out: string } {
  const r = spawnSync(process.execPath, [BIN, ...argv], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, REDIS_URL: '', DATABASE_URL: '', HOME: reg.env().dir, ...env },
  })
  return { code: r.status ?? -1, out: `${r.stdout}\n${r.stderr}` }
}

test('the CLI with the URLs in STACKMEMORY_REDIS_URL / STACKMEMORY_POSTGRES_URL: used, never printed', async () => {
  const e = reg.env()
  const env = {
    STACKMEMORY_REDIS_URL: `redis://:${SECRET}@127.0.0.1:${CLOSED_PORT}`,
    STACKMEMORY_POSTGRES_URL: `postgres://postgres:${SECRET}@127.0.0.1:${CLOSED_PORT}/test`,
  }
  const m = await TierManager.open({ dbPath: e.dbPath })
  await m.storeMany(genBundles(4, { seed: 42, idPrefix: 'seccli' }).bundles)
  await m.close()
  const st = bin(['status', '--json', '--db', e.dbPath], env)
  record(st.out)
  expect(st.code).toBe(0)
  const s = JSON.parse(st.out.slice(0, st.out.lastIndexOf('}') + 1))
  expect(s.backends.redis).toMatchObject({ configured: true, reachable: false, url: `redis://:***@127.0.0.1:${CLOSED_PORT}` })
  expect(s.backends.postgres).toMatchObject({ configured: true, reachable: false })
  for (const argv of [['status'], ['migrate', '--tier', '3'], ['migrate', '--tier', '3', '--json'], ['search', 'x'], ['verify']]) {
    const r = bin([...argv, '--db', e.dbPath], env)
    record(r.out)
  }
})
