'use strict'
// What recording costs on the read path (issue 12): hot `retrieve` and `retrieveSync` latency of
// this build, which records every read into the stats() histograms, against a baseline build
// without the recorder (`--baseline=DIR`: a checkout with its addon built, e.g. main before
// observability), each in its own process, alternating rounds. Also reports what stats() itself
// says of the same reads, and what one stats() and one metrics() call cost.
//
// Usage: `node bench/observability.js [--baseline=/path/to/checkout] [--no-write]` (writes
// bench/observability.md).

const { execFileSync } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')

const ROOT = path.resolve(__dirname, '..')
const argv = process.argv.slice(2)
const arg = (name) => argv.find((x) => x.startsWith(`--${name}=`))?.split('=')[1]
const WRITE = !argv.includes('--no-write')
const FRAMES = 1000
const READS = 100000
const ROUNDS = 5

async function child(root) {
  const { TierManager } = require(root)
  const { simpleBundle } = require(path.join(ROOT, 'testkit', 'frames'))
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smobs-'))
  const m = await TierManager.open({ dbPath: path.join(dir, 'context.db') })
  const ids = Array.from({ length: FRAMES }, (_, i) => `obs-bench-${i}`)
  await m.storeMany(ids.map((id) => simpleBundle(id)))
  for (const id of ids) await m.retrieve(id)
  const out = {}
  let t = process.hrtime.bigint()
  for (let i = 0; i < READS; i++) await m.retrieve(ids[i % FRAMES])
  out.retrieveUs = Number(process.hrtime.bigint() - t) / 1000 / READS
  t = process.hrtime.bigint()
  for (let i = 0; i < READS; i++) m.retrieveSync(ids[i % FRAMES])
  out.retrieveSyncUs = Number(process.hrtime.bigint() - t) / 1000 / READS
  if (typeof m.stats === 'function') {
    const s = m.stats()
    const hot = s.operations.find((o) => o.op === 'retrieve' && o.tier === 'hot')
    out.recorded = hot.sinceOpen
    t = process.hrtime.bigint()
    for (let i = 0; i < 100; i++) m.stats()
    out.statsUs = Number(process.hrtime.bigint() - t) / 1000 / 100
    t = process.hrtime.bigint()
    for (let i = 0; i < 100; i++) m.metrics()
    out.metricsUs = Number(process.hrtime.bigint() - t) / 1000 / 100
  }
  await m.close()
  fs.rmSync(dir, { recursive: true, force: true })
  process.stdout.write(JSON.stringify(out))
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

function main() {
  const baseline = arg('baseline')
  const builds = [['this build', ROOT], ...(baseline ? [['baseline', path.resolve(baseline)]] : [])]
  const runs = Object.fromEntries(builds.map(([n]) => [n, []]))
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, root] of builds) {
      const text = execFileSync(process.execPath, [__filename, '--child', root], { encoding: 'utf8' })
      runs[name].push(JSON.parse(text))
    }
  }
  const f = (x) => x.toFixed(2)
  const lines = [
    '## Observability: the cost of recording on the hot read path',
    '',
    `${FRAMES} small frames, hot; ${READS} reads per measurement, median of ${ROUNDS} rounds, each build in its own process, rounds alternating (${os.cpus().length} cores, shared).`,
    '',
    '| build | `retrieve` (µs/read) | `retrieveSync` (µs/read) |',
    '|---|---|---|',
  ]
  for (const [name] of builds) {
    lines.push(`| ${name} | ${f(median(runs[name].map((x) => x.retrieveUs)))} | ${f(median(runs[name].map((x) => x.retrieveSyncUs)))} |`)
  }
  if (baseline) {
    const d = (k) => median(runs['this build'].map((x) => x[k])) - median(runs.baseline.map((x) => x[k]))
    lines.push('', `Difference (this build − baseline): retrieve ${f(d('retrieveUs'))} µs, retrieveSync ${f(d('retrieveSyncUs'))} µs per read (noise on a shared machine is of the same order).`)
  }
  const mine = runs['this build']
  const rec = mine[mine.length - 1].recorded
  lines.push('', `What stats() recorded of the last round's reads (the core's part, without the JS call): p50 ${f(rec.p50Us)} µs, p99 ${f(rec.p99Us)} µs, p99.9 ${f(rec.p999Us)} µs, max ${f(rec.maxUs)} µs.`)
  lines.push(`One stats() call: ${f(median(mine.map((x) => x.statsUs)))} µs; one metrics() call: ${f(median(mine.map((x) => x.metricsUs)))} µs.`)
  const md = lines.join('\n') + '\n'
  process.stdout.write(md)
  if (WRITE) fs.writeFileSync(path.join(__dirname, 'observability.md'), md)
}

if (argv[0] === '--child') {
  child(argv[1]).catch((e) => {
    console.error(e)
    process.exit(1)
  })
} else {
  main()
}
