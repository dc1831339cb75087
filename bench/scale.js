'use strict'
// Bulk runs at scale (issue 10): StackMemory-shaped frames stored, then moved end to end
// hot → warm → cold → hot as bulk runs (`startMigration`), at several store sizes in one run.
// Per size: store rate, the fixed cost of a call before anything moves, each hop's time per frame,
// the peak RSS of this process during the runs (above its level before them), verify's time per
// frame, and hot `retrieve` latency of frames that stay hot while a run moves the others, against
// the same reads idle.
//
// Usage: `node bench/scale.js` (sizes 10000,100000,1000000; writes bench/scale.md, which
// `npm run bench` puts into BENCHMARKS.md) or `node bench/scale.js --sizes=2000,20000 --no-write`.

const crypto = require('crypto')
const fs = require('fs')
const os = require('os')
const path = require('path')

const ROOT = path.resolve(__dirname, '..')
const { TierManager } = require(ROOT)
const { Gen } = require('../testkit/frames')
const { REDIS_URL, PG_URL, removeRemote } = require('./clients')

const argv = process.argv.slice(2)
const arg = (name) => argv.find((x) => x.startsWith(`--${name}=`))?.split('=')[1]
const SIZES = (arg('sizes') ?? '10000,100000,1000000').split(',').map(Number)
const WRITE = !argv.includes('--no-write')
const STORE_CHUNK = 1000
const READS = 2000

const TAG = `${Date.now().toString(36)}${crypto.randomBytes(3).toString('hex')}`
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'smscale-'))
const now = () => Number(process.hrtime.bigint()) / 1e6
const log = (...a) => console.error(`[${new Date().toISOString().slice(11, 19)}]`, ...a)
const mb = (b) => b / 1024 / 1024

function pct(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * (sorted.length - 1)))]
}

async function median(fn, n = 5) {
  const ts = []
  for (let i = 0; i < n; i++) {
    const t = now()
    await fn()
    ts.push(now() - t)
  }
  return ts.sort((a, b) => a - b)[Math.floor(n / 2)]
}

/** Peak RSS while `fn` runs, sampled every 100 ms, above the level before it. */
async function peakRss(fn) {
  global.gc?.()
  const base = process.memoryUsage().rss
  let peak = base
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 100)
  try {
    const out = await fn()
    peak = Math.max(peak, process.memoryUsage().rss)
    return { out, peakAbove: peak - base, peak }
  } finally {
    clearInterval(timer)
  }
}

/** A bulk run to `toTier`, awaited: its time and counts. */
async function hop(tm, toTier) {
  const t = now()
  const runId = await tm.startMigration({ toTier })
  const st = await tm.waitForMigration(runId)
  if (st.state !== 'done' || st.failed) throw new Error(`run to ${toTier}: ${st.state}, ${st.failed} failed, ${st.error}`)
  return { ms: now() - t, moved: st.done }
}

/** Hot reads of `ids` one at a time (µs each), for `untilMs` or `READS` reads. */
async function reads(tm, ids, stop) {
  const us = []
  let i = 0
  while (!stop()) {
    const id = ids[(i++ * 7919) % ids.length]
    const t = now()
    const b = await tm.retrieve(id, { promote: false })
    us.push((now() - t) * 1000)
    if (!b) throw new Error(`hot frame ${id} missing`)
    // About one read per millisecond, as a busy agent reads: the loop must not starve the run.
    await new Promise((r) => setTimeout(r, 1))
  }
  return us.sort((a, b) => a - b)
}

async function size(n) {
  const prefix = `smscale:${TAG}:${n}:`
  const schema = `smscale_${TAG}_${n}`
  const dbPath = path.join(TMP, `ctx-${n}.db`)
  const config = {
    dbPath,
    tiers: {
      redis: { enabled: true, connectionString: REDIS_URL, keyPrefix: prefix, ttl: '7d', maxSize: '16GB' },
      postgres: { enabled: true, connectionString: PG_URL, schema },
    },
    policies: { backgroundSync: false },
  }
  const tm = await TierManager.open(config)
  const gen = new Gen({ seed: 5, prefix: `s${n}` })
  const active = []
  let t = now()
  for (let i = 0; i < n; i += STORE_CHUNK) {
    const chunk = gen.range(i, Math.min(n, i + STORE_CHUNK))
    for (const b of chunk) if (b.frame.state !== 'closed') active.push(b.frame.frame_id)
    await tm.storeMany(chunk)
    if ((i / STORE_CHUNK) % 100 === 99) log(`  stored ${i + STORE_CHUNK}`)
  }
  const storeMs = now() - t
  log(`${n}: stored in ${(storeMs / 1000).toFixed(1)} s (${active.length} active)`)

  const fixedDry = await median(() => tm.migrate({ toTier: 'warm', limit: 1, dryRun: true }))
  const fixedPlan = await median(() => tm.planMigration({ toTier: 'warm', limit: 1 }))
  const fixedRun = await median(async () => {
    const id = await tm.startMigration({ toTier: 'warm', limit: 1 })
    await tm.waitForMigration(id)
  })

  // Hot reads idle, then while hot → warm runs (the active frames stay hot).
  const idle = await reads(tm, active, ((k) => () => --k < 0)(READS))
  let running = true
  let during = []
  const { out: toWarm, peakAbove: rssWarm } = await peakRss(async () => {
    const readsDone = reads(tm, active, () => !running).then((x) => (during = x))
    const h = await hop(tm, 'warm')
    running = false
    await readsDone
    return h
  })
  log(`${n}: hot → warm ${toWarm.moved} in ${(toWarm.ms / 1000).toFixed(1)} s`)
  const { out: toCold, peakAbove: rssCold } = await peakRss(() => hop(tm, 'cold'))
  log(`${n}: warm → cold ${toCold.moved} in ${(toCold.ms / 1000).toFixed(1)} s`)
  const { out: toHot, peakAbove: rssHot } = await peakRss(() => hop(tm, 'hot'))
  log(`${n}: cold → hot ${toHot.moved} in ${(toHot.ms / 1000).toFixed(1)} s`)
  t = now()
  const v = await tm.verify()
  const verifyMs = now() - t
  if (!v.clean) throw new Error(`verify at ${n}: ${JSON.stringify(v.findings.slice(0, 3))}`)
  await tm.close()
  await removeRemote(prefix, schema)
  for (const f of fs.readdirSync(TMP)) if (f.startsWith(`ctx-${n}.db`)) fs.rmSync(path.join(TMP, f))
  return {
    n,
    storeMs,
    fixed: { dry: fixedDry, plan: fixedPlan, run: fixedRun },
    hops: { 'hot→warm': toWarm, 'warm→cold': toCold, 'cold→hot': toHot },
    rss: { 'hot→warm': rssWarm, 'warm→cold': rssCold, 'cold→hot': rssHot },
    verifyMs,
    idle: { p50: pct(idle, 0.5), p99: pct(idle, 0.99), n: idle.length },
    during: { p50: pct(during, 0.5), p99: pct(during, 0.99), n: during.length },
  }
}

function render(rows, started, secs) {
  const f1 = (x) => x.toFixed(1)
  const f3 = (x) => x.toFixed(3)
  const first = rows[0]
  const last = rows[rows.length - 1]
  const mid = rows.length > 2 ? rows[rows.length - 2] : first
  const met = (ok) => (ok ? 'met' : '**not met**')
  const L = ['## Bulk runs at scale (`node bench/scale.js`)', '']
  L.push(`Generated on ${started.toISOString()} (${(secs / 60).toFixed(1)} min), ${os.cpus().length} cores, Node ${process.version}; StackMemory-shaped frames (testkit/frames.js, seed 5), every hop a bulk run (\`startMigration\`, default options) over the whole store. Absolute times are noisy on this shared 2-core machine; the goals are ratios between sizes.`, '')
  L.push('| frames | store frames/s | fixed cost: dry-run migrate / plan / 1-frame run (ms) | hot → warm ms/frame | warm → cold ms/frame | cold → hot ms/frame | peak RSS above start (MB) | verify ms/frame |')
  L.push('|---:|---:|---|---:|---:|---:|---:|---:|')
  for (const r of rows) {
    const per = (h) => f3(r.hops[h].ms / Math.max(1, r.hops[h].moved))
    const rss = Math.max(...Object.values(r.rss))
    L.push(`| ${r.n} | ${(r.n / (r.storeMs / 1000)).toFixed(0)} | ${f1(r.fixed.dry)} / ${f1(r.fixed.plan)} / ${f1(r.fixed.run)} | ${per('hot→warm')} | ${per('warm→cold')} | ${per('cold→hot')} | ${f1(mb(rss))} | ${f3(r.verifyMs / r.n)} |`)
  }
  L.push('')
  const perAll = (r) => Object.values(r.hops).reduce((a, h) => a + h.ms, 0) / Object.values(r.hops).reduce((a, h) => a + h.moved, 0)
  const perRatio = perAll(last) / perAll(first)
  const fixedRatio = last.fixed.dry / first.fixed.dry
  const rssRatio = Math.max(...Object.values(last.rss)) / Math.max(1, Math.max(...Object.values(mid.rss)))
  L.push(`- Per-frame cost, all three hops, ${last.n} vs ${first.n} frames: ${perRatio.toFixed(2)}x (goal ≤ 1.3x: ${met(perRatio <= 1.3)}).`)
  L.push(`- Fixed cost of a call (dry-run \`migrate({ limit: 1 })\`), ${last.n} vs ${first.n}: ${fixedRatio.toFixed(2)}x (goal ≤ 1.3x: ${met(fixedRatio <= 1.3)}).`)
  L.push(`- Peak RSS above the start of the runs, ${last.n} vs ${mid.n}: ${rssRatio.toFixed(2)}x (goal ≤ 1.3x: ${met(rssRatio <= 1.3)}).`)
  for (const r of rows) {
    const ratio = r.during.p99 / r.idle.p99
    L.push(`- Hot \`retrieve\` of frames that stay hot at ${r.n} frames: idle p50 ${f1(r.idle.p50)} µs / p99 ${f1(r.idle.p99)} µs; during the hot → warm run p50 ${f1(r.during.p50)} µs / p99 ${f1(r.during.p99)} µs (${r.during.n} reads): p99 ${ratio.toFixed(2)}x idle (goal ≤ 2x: ${met(ratio <= 2)}).`)
  }
  L.push('')
  return L.join('\n')
}

async function main() {
  const started = new Date()
  const t0 = now()
  const rows = []
  for (const n of SIZES) rows.push(await size(n))
  const md = render(rows, started, (now() - t0) / 1000)
  fs.writeFileSync(path.join(os.tmpdir(), 'smscale-last.json'), JSON.stringify(rows, null, 2))
  if (WRITE) fs.writeFileSync(path.join(__dirname, 'scale.md'), md)
  process.stdout.write(md + '\n')
}

main()
  .catch((e) => {
    console.error(e)
    process.exitCode = 1
  })
  .finally(() => fs.rmSync(TMP, { recursive: true, force: true }))
