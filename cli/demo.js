#!/usr/bin/env node
'use strict'
// `npm run demo`: stores StackMemory-shaped frames, moves them through the tiers that are
// reachable, reads them back from wherever they are, searches, and prints status.
// Redis and PostgreSQL come from $REDIS_URL / $DATABASE_URL, else the local defaults that
// `npm run services` starts; without them the demo runs local-only (SQLite).

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { TierManager } = require('../index.js')

const REDIS = process.env.REDIS_URL || 'redis://127.0.0.1:6379'
const POSTGRES = process.env.DATABASE_URL || 'postgres://postgres:postgres@127.0.0.1:5432/test'
const bundles = JSON.parse(fs.readFileSync(path.join(__dirname, 'demo-frames.json'), 'utf8'))

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stackmemory-tiers-demo-'))
  const dbPath = path.join(dir, 'context.db')
  const tiered = {
    dbPath,
    tiers: {
      redis: { enabled: true, connectionString: REDIS, keyPrefix: 'smdemo:', connectTimeout: 1000 },
      postgres: { enabled: true, connectionString: POSTGRES, schema: 'stackmemory_demo', connectTimeout: 1000 },
    },
  }
  let m = await TierManager.open(tiered)
  let s = await m.status()
  const warmOk = s.backends.redis.reachable
  const coldOk = s.backends.postgres.reachable
  if (!warmOk || !coldOk) {
    await m.close()
    console.log(`Redis ${warmOk ? 'reachable' : 'not reachable'} (${REDIS}), PostgreSQL ${coldOk ? 'reachable' : 'not reachable'} (${POSTGRES.replace(/:[^:@/]*@/, ':***@')})`)
    console.log('=> running local-only: frames stay in the SQLite hot tier (start the servers with `npm run services`).\n')
    m = await TierManager.open({ dbPath })
  } else {
    console.log(`tiered: SQLite ${dbPath}, Redis ${REDIS}, PostgreSQL ${POSTGRES.replace(/:[^:@/]*@/, ':***@')}\n`)
  }

  console.log(`stored ${await m.storeMany(bundles)} frames (${bundles.map((b) => b.frame.name).join(' | ')})`)
  const ids = bundles.map((b) => b.frame.frame_id)
  if (warmOk && coldOk) {
    const toWarm = await m.migrate({ toTier: 'warm', frameIds: ids })
    console.log(`hot -> warm: moved ${toWarm.moved.length} (${toWarm.bytesBefore} bytes archived and cached as ${toWarm.bytesAfter} compressed), skipped ${toWarm.skippedCount} (${toWarm.skipped.map((x) => x.reason).join('; ')})`)
    const toCold = await m.migrate({ toTier: 'cold', frameIds: ids })
    console.log(`warm -> cold: moved ${toCold.moved.length} (Redis copies dropped; the archive keeps them)`)
  }
  for (const id of ids) {
    const b = await m.retrieve(id)
    const same = JSON.stringify(b) === JSON.stringify(bundles.find((x) => x.frame.frame_id === id))
    console.log(`retrieve ${id.slice(0, 8)}…: ${b.events.length} events, ${b.anchors.length} anchors, identical to what was stored: ${same}`)
  }
  const hits = await m.search('logouts')
  console.log(`search "logouts": ${hits.results.map((h) => `${h.name} [${h.tier}]`).join(', ') || 'no results'}`)
  s = await m.status()
  console.log(`\nstatus (${s.mode}): hot ${s.tiers.hot.frames}, warm ${s.tiers.warm.frames}, cold ${s.tiers.cold.frames} frames; journal backlog ${s.journalBacklog}`)
  await m.close()
  if (warmOk && coldOk) {
    // Leave nothing behind in the shared servers.
    const clean = await TierManager.open({ ...tiered })
    for (const id of [...ids].reverse()) await clean.delete(id) // children before parents
    await clean.close()
  }
  fs.rmSync(dir, { recursive: true, force: true })
}

main().catch((e) => {
  console.error(`demo failed [${e.code || 'ERR_UNKNOWN'}]: ${e.message}`)
  process.exitCode = 1
})
