'use strict'
// A child process for crash.test.ts: it is SIGKILLed by its parent at random points of a
// migration. Usage:
//   node crash-child.js <config.json> store <n> <genOptions JSON>   generate n bundles (testkit's
//                                                                    genBundles), store them, print "stored N"
//   node crash-child.js <config.json> migrate <tier>                print "migrating", migrate, print "done {...}"
//   node crash-child.js <config.json> start <options JSON>          startMigration: print "started <id>",
//                                                                    "progress {...}" per batch, "done {status}"
//   node crash-child.js <config.json> resume <runId>                resumeMigration, printed the same way
// It loads the built package exactly as a user would. The bundles are regenerated from the
// parent's seed and options: the generator is deterministic, so both processes hold the same set.

const fs = require('fs')
const { TierManager } = require('../../index.js')
const { genBundles } = require('../../testkit/frames.js')

async function main() {
  const [configPath, mode, arg, genOptions] = process.argv.slice(2)
  const config = JSON.parse(fs.readFileSync(configPath, 'utf8'))
  const m = await TierManager.open(config)
  if (mode === 'store') {
    const { bundles } = genBundles(Number(arg), JSON.parse(genOptions))
    let n = 0
    for (let i = 0; i < bundles.length; i += 500) n += await m.storeMany(bundles.slice(i, i + 500))
    process.stdout.write(`stored ${n}\n`)
  } else if (mode === 'migrate') {
    process.stdout.write('migrating\n')
    const r = await m.migrate({ toTier: arg })
    const summary = { moved: r.moved.length, failed: r.failed.length, skipped: r.skippedCount, heldBack: r.heldBack.length, firstFailure: r.failed[0] }
    process.stdout.write(`done ${JSON.stringify(summary)}\n`)
  } else if (mode === 'start' || mode === 'resume') {
    const onProgress = (p) => process.stdout.write(`progress ${JSON.stringify(p)}\n`)
    const id = mode === 'start'
      ? await m.startMigration({ ...JSON.parse(arg), onProgress })
      : await m.resumeMigration(arg, { onProgress })
    process.stdout.write(`started ${id}\n`)
    const status = await m.waitForMigration(id)
    process.stdout.write(`done ${JSON.stringify(status)}\n`)
  } else {
    throw new Error(`unknown mode ${mode}`)
  }
  await m.close()
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`crash-child failed: ${e && e.code} ${e && e.stack}\n`)
    process.exit(2)
  },
)
