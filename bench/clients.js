'use strict'
// The bench's own connections to Redis (node-redis) and PostgreSQL (pg), for the raw ceilings and
// the cleanup, and the local services' URLs.

const { createClient, RESP_TYPES } = require('redis')
const pg = require('pg')

// The bench used $REDIS_URL / $DATABASE_URL (as the addon does), the policy bench the tests'
// variables: either is honoured.
const REDIS_URL = process.env.REDIS_URL || process.env.REDIS_TEST_URL || 'redis://127.0.0.1:6379'
const PG_URL = process.env.DATABASE_URL || process.env.TEST_DATABASE_URL || 'postgres://postgres:postgres@127.0.0.1:5432/test'

/** A node-redis client speaking RESP2 (as the warm tier's own client does) whose bulk replies are
 * Buffers: envelopes are binary, and a ceiling should not pay for UTF-8 decoding ours skips. */
async function connectRedis(url = REDIS_URL) {
  const c = createClient({ url, RESP: 2 }).withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer })
  c.on('error', () => {}) // surfaced by the pending command instead; no unhandled 'error' event
  await c.connect()
  return c
}

/** Delete every key matching `prefix*` (SCAN + UNLINK); returns how many. */
async function flushPrefix(redis, prefix) {
  const pattern = prefix.replace(/[*?[\]\\]/g, (c) => '\\' + c) + '*'
  let n = 0
  for await (const keys of redis.scanIterator({ MATCH: pattern, COUNT: 1000 })) {
    if (keys.length) n += await redis.unlink(keys)
  }
  return n
}

async function connectPg(url = PG_URL) {
  const c = new pg.Client({ connectionString: url, application_name: 'stackmemory-tiers-bench' })
  c.on('error', () => {}) // as above: a broken connection fails the query that uses it
  await c.connect()
  return c
}

/** Drop the schemas (and everything in them). */
async function dropSchemas(client, ...schemas) {
  for (const s of schemas) await client.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`)
}

/** A bench store's remote data gone: its Redis keys (`prefix*`) and its PostgreSQL schema. */
async function removeRemote(prefix, schema) {
  const r = await connectRedis()
  await flushPrefix(r, prefix)
  await r.close()
  const pg = await connectPg()
  await dropSchemas(pg, schema)
  await pg.end()
}

module.exports = { REDIS_URL, PG_URL, connectRedis, flushPrefix, connectPg, dropSchemas, removeRemote }
