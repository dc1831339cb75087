'use strict'
// A second process for processes.test.ts, loading the built package as a user would. Modes:
//   node process-child.js mover <config.json> <ms>
//     Another TierManager on the same SQLite file (StackMemory's CLI beside StackMemory): cycles
//     hot → warm → cold → hot for <ms>, closing and reopening between hops (each open() runs
//     recovery while the other process may be mid-move). Prints {"cycles", "failed"}.
//   node process-child.js machine <config.json> <seed> <ms>
//     One of a user's machines: its own SQLite file, the shared Redis and PostgreSQL. Stores its
//     own frames and the shared history (the same ids and content on every machine), moves and reads
//     random ones for <ms>, then brings everything back hot and compares each frame with what it
//     stored. Prints {"moves", "reads", "wrong", "missing", "verify"}.

const fs = require('fs')
const { TierManager } = require('../../index.js')
const { genBundles, normalized } = require('../../testkit/frames.js')

const TIERS = ['warm', 'cold', 'hot']

async function mover(config, ms) {
  const until = Date.now() + ms
  let cycles = 0
  const failed = []
  while (Date.now() < until) {
    for (const toTier of TIERS) {
      const m = await TierManager.open(config)
      const r = await m.migrate({ toTier })
      failed.push(...r.failed)
      await m.close()
    }
    cycles++
  }
  return { cycles, failed: failed.slice(0, 5), failedCount: failed.length }
}

async function machine(config, seed, ms) {
  const own = genBundles(300, { seed, idPrefix: `own${seed}`, large: 0 }).bundles
  // The same history on every machine: the same ids and the same content (fixed times).
  const shared = genBundles(200, { seed: 7, idPrefix: 'shared', large: 0, baseSeconds: 1764547200 }).bundles
  const all = [...own, ...shared]
  const want = new Map(all.map((b) => [b.frame.frame_id, JSON.stringify(normalized(b))]))
  const ids = [...want.keys()]
  let s = seed >>> 0
  const rand = () => ((s = (s * 1103515245 + 12345) >>> 0) / 4294967296)
  const pick = (n) => Array.from({ length: n }, () => ids[Math.floor(rand() * ids.length)])
  const m = await TierManager.open(config)
  for (let i = 0; i < all.length; i += 250) await m.storeMany(all.slice(i, i + 250))
  let moves = 0
  let reads = 0
  const wrong = []
  const missing = []
  const check = (id, b) => {
    if (!b) missing.push(id)
    else if (JSON.stringify(b) !== want.get(id)) wrong.push(id)
  }
  const until = Date.now() + ms
  while (Date.now() < until) {
    const r = await m.migrate({ toTier: TIERS[Math.floor(rand() * 3)], frameIds: [...new Set(pick(60))] })
    moves += r.moved.length
    for (const id of pick(20)) {
      check(id, await m.retrieve(id, { promote: rand() < 0.3 }))
      reads++
    }
  }
  await m.migrate({ toTier: 'hot' })
  for (const id of ids) check(id, await m.retrieve(id, { promote: false }))
  const v = await m.verify()
  await m.close()
  return { moves, reads, wrong: [...new Set(wrong)], missing: [...new Set(missing)], verify: { clean: v.clean, findings: v.findings.slice(0, 5) } }
}

async function main() {
  const [mode, configPath, a, b] = process.argv.slice(2)
  const config = JSON.parse(fs.readFileSync(configPath, 'utf8'))
  const out = mode === 'mover' ? await mover(config, Number(a)) : await machine(config, Number(a), Number(b))
  process.stdout.write(JSON.stringify(out))
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`process-child failed: ${e && e.code} ${e && e.stack}\n`)
    process.exit(2)
  },
)
