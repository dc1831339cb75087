// TLS against real servers: a redis-server with --tls-port and a CA the test makes, and the
// machine's PostgreSQL (ssl=on, self-signed). Proves: connects over TLS and round trips a frame,
// refuses a wrong CA under verification, refuses plain text under `require` (no downgrade).

import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'

import { TierManager } from '../index'
import type { TierConfig } from '../index'
import { fileRegistry, genBundles, idOf, PG_URL, psql, randomTag, rejectionOf } from './helpers/gen'
import { Certs, listener, makeCerts, startTlsRedis, TlsRedis } from './helpers/net'

const reg = fileRegistry()
let certs: Certs
let tlsRedis: TlsRedis

beforeAll(async () => {
  certs = makeCerts(fs.mkdtempSync(path.join(os.tmpdir(), 'smt-tls-')))
  tlsRedis = await startTlsRedis(certs)
  reg.defer(async () => {
    await tlsRedis.kill()
    fs.rmSync(certs.dir, { recursive: true, force: true })
  })
})

/** `cfg` without the Redis tier. */
function noRedis(cfg: TierConfig): TierConfig {
  return { ...cfg, tiers: { ...cfg.tiers, redis: { enabled: false } } }
}

function withSsl(url: string, params: string): string {
  return url + (url.includes('?') ? '&' : '?') + params
}

test('rediss:// with the test CA: a frame round trips through the TLS Redis', async () => {
  const e = reg.env()
  const cfg = e.with({ redisUrl: tlsRedis.url })
  cfg.tiers!.redis!.tls = { caFile: certs.ca }
  const m = await reg.open(cfg)
  const gen = genBundles(20, { seed: 5, idPrefix: 'tlsr' })
  await m.storeMany(gen.bundles)
  const want = await m.retrieve(idOf(gen.bundles[0]))
  const r = await m.migrate({ toTier: 'warm' })
  expect(r.failed).toEqual([])
  expect(r.moved.length).toBe(gen.closed.size)
  const s = await m.status()
  expect(s.backends.redis.reachable).toBe(true)
  expect(s.backends.redis.tls).toBe(true)
  // The keys are on the TLS server (read behind the addon's back with redis-cli --tls).
  const keys = tlsRedis.cli(['--scan', '--pattern', `${e.prefix}frame:*`]).split('\n').filter(Boolean)
  expect(keys.length).toBe(gen.closed.size)
  const closedId = [...gen.closed][0]
  const before = (await m.status()).retrieves.warm
  const back = await m.retrieve(closedId, { promote: false })
  expect(back).not.toBeNull()
  expect((await m.status()).retrieves.warm).toBe(before + 1)
  expect(await m.retrieve(idOf(gen.bundles[0]))).toEqual(want)
  // redis-rs's convention for self-signed servers: #insecure skips verification.
  const e2 = reg.env()
  const m2 = await reg.open(e2.with({ redisUrl: `${tlsRedis.url}/#insecure` }))
  const s2 = await m2.status()
  expect(s2.backends.redis.reachable).toBe(true)
  expect(s2.backends.redis.tls).toBe(true)
})

test('rediss:// with a wrong CA, or the system roots, is refused; frames stay local', async () => {
  for (const caFile of [certs.otherCa, undefined]) {
    const e = reg.env()
    const cfg = e.with({ redisUrl: tlsRedis.url, pgUrl: 'postgres://postgres@127.0.0.1:1/test' })
    if (caFile) cfg.tiers!.redis!.tls = { caFile }
    const m = await reg.open(cfg)
    const gen = genBundles(5, { seed: 6, idPrefix: 'tlsw' })
    await m.storeMany(gen.bundles)
    const s = await m.status()
    expect(s.backends.redis.reachable).toBe(false)
    expect(String(s.backends.redis.error)).toMatch(/certificate|UnknownIssuer|tls|TLS/i)
    await m.migrate({ toTier: 'warm' }).catch(() => undefined)
    for (const b of gen.bundles) expect(await m.retrieve(idOf(b))).not.toBeNull()
    expect(tlsRedis.cli(['--scan', '--pattern', `${e.prefix}*`]).trim()).toBe('')
  }
})

test('a CA file is only for rediss://, and must exist', async () => {
  const e = reg.env()
  const cfg = e.config
  cfg.tiers!.redis!.tls = { caFile: certs.ca }
  const err = await rejectionOf(TierManager.open(cfg))
  expect(err.code).toBe('ERR_INVALID_CONFIG')
  expect(err.message).toContain('tiers.redis.tls.caFile')
  const cfg2 = e.with({ redisUrl: tlsRedis.url })
  cfg2.tiers!.redis!.tls = { caFile: path.join(certs.dir, 'missing.pem') }
  expect((await rejectionOf(TierManager.open(cfg2))).message).toContain('tiers.redis.tls.caFile')
  const cfg3 = e.with({ pgUrl: withSsl(PG_URL, 'sslmode=sometimes') })
  const err3 = await rejectionOf(TierManager.open(cfg3))
  expect(err3.code).toBe('ERR_INVALID_CONFIG')
  expect(err3.message).toContain('tiers.postgres.connectionString')
})

test('PostgreSQL sslmode=require connects over TLS (pg_stat_ssl says so for our backend)', async () => {
  const e = reg.env()
  const app = `smt-tls-${randomTag()}`
  const m = await reg.open(noRedis(e.with({ pgUrl: withSsl(PG_URL, `sslmode=require&application_name=${app}`) })))
  const gen = genBundles(10, { seed: 7, idPrefix: 'tlsp' })
  await m.storeMany(gen.bundles)
  const r = await m.migrate({ toTier: 'cold' })
  expect(r.failed).toEqual([])
  expect(r.moved.length).toBe(gen.closed.size)
  const s = await m.status()
  expect(s.backends.postgres.tls).toBe(true)
  expect(s.backends.postgres.sslMode).toBe('require')
  const seen = psql(`SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = '${app}'`)
  expect(seen).toBe('t')
  const id = [...gen.closed][0]
  expect(await m.retrieve(id, { promote: false })).not.toBeNull()
  // The tls section says the same as the URL.
  const e2 = reg.env()
  const c2 = noRedis(e2.config)
  c2.tiers!.postgres = { ...c2.tiers!.postgres, tls: { mode: 'require' } }
  const m2 = await reg.open(c2)
  expect((await m2.status()).backends.postgres.tls).toBe(true)
})

test('PostgreSQL verify-full with a wrong CA is refused: ERR_TIER_UNAVAILABLE, frames still local', async () => {
  // Archive a frame over `require` first, then reopen the same file under verify-full.
  const e = reg.env()
  const m = await TierManager.open(noRedis(e.with({ pgUrl: withSsl(PG_URL, 'sslmode=require') })))
  const gen = genBundles(10, { seed: 8, idPrefix: 'tlsv' })
  await m.storeMany(gen.bundles)
  expect((await m.migrate({ toTier: 'cold' })).failed).toEqual([])
  await m.close()
  for (const mode of ['verify-full', 'verify-ca']) {
    const m2 = await reg.open(noRedis(e.with({ pgUrl: withSsl(PG_URL, `sslmode=${mode}&sslrootcert=${encodeURIComponent(certs.otherCa)}`) })))
    const s = await m2.status()
    expect(s.backends.postgres.reachable).toBe(false)
    expect(String(s.backends.postgres.error)).toMatch(/certificate|UnknownIssuer|tls/i)
    const archived = [...gen.closed][0]
    const err = await rejectionOf(m2.retrieve(archived))
    expect(err.code).toBe('ERR_TIER_UNAVAILABLE')
    // New frames are stored and read locally as ever.
    const local = genBundles(1, { seed: mode.length, idPrefix: `tlsl${mode.length}` }).bundles[0]
    await m2.store(local)
    expect(await m2.retrieve(idOf(local))).not.toBeNull()
    await m2.close()
  }
})

test('sslmode=require against a server without SSL is refused; nothing is sent in plain text', async () => {
  const noSsl = await listener('no-ssl')
  reg.defer(() => noSsl.close())
  const e = reg.env()
  const url = `postgres://postgres:postgres@127.0.0.1:${noSsl.port}/test?sslmode=require`
  const m = await reg.open(noRedis(e.with({ pgUrl: url })))
  const s = await m.status()
  expect(s.backends.postgres.reachable).toBe(false)
  expect(noSsl.accepted()).toBeGreaterThan(0)
  // The client asked for SSL, heard 'N', and hung up: no startup message, no password.
  expect(noSsl.bytesAfterFirst()).toBe(0)
  const gen = genBundles(3, { seed: 9, idPrefix: 'tlsn' })
  await m.storeMany(gen.bundles)
  for (const b of gen.bundles) expect(await m.retrieve(idOf(b))).not.toBeNull()
})
