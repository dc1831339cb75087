'use strict'
// Many processes on one Redis and one PostgreSQL under load (issue 11): P processes ("machines"),
// each with its own SQLite file and N StackMemory-shaped frames of its own, share one Redis prefix
// and one PostgreSQL schema. In lockstep (the parent starts each phase in every process at once)
// they store, then move everything hot → warm → cold → hot as bulk runs, while each reads frames
// that stay hot, one every millisecond. The baseline is one process doing the same alone, in the
// same run: aggregate frames/s against it says what sharing the servers and the 2 cores costs.
// At the end every process compares a sample of its frames with what it stored, and `verify`s.
//
// Usage: `node bench/processes.js` (4 x 100,000; writes bench/processes.md, which `npm run bench`
// puts into BENCHMARKS.md) or `node bench/processes.js --procs=2 --frames=2000 --no-write`.

const { fork } = require('child_process')
const crypto = require('crypto')
const fs = require('fs')
const os = require('os')
const path = require('path')

const ROOT = path.resolve(__dirname, '..')
const argv = process.argv.slice(2)
const arg = (name, d) => argv.find((x) => x.startsWith(`--${name}=`))?.split('=')[1] ?? d
const now = () => Number(process.hrtime.bigint()) / 1e6
const log = (...a) => console.error(`[${new Date().toISOString().slice(11, 19)}]`, ...a)
const PHASES = ['store', 'hot→warm', 'warm→cold', 'cold→hot']
const STORE_CHUNK = 1000

function pct(sorted, p) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * (sorted.length - 1)))] : NaN
}

// ---- child: one machine -------------------------------------------------------------------------

async function child() {
  const { TierManager } = require(ROOT)
  const { Gen, normalized } = require('../testkit/frames')
  const [config, index, n] = [JSON.parse(process.env.SMP_CONFIG), Number(process.env.SMP_INDEX), Number(process.env.SMP_N)]
  const tm = await TierManager.open(config)
  const gen = new Gen({ seed: 11 + index, prefix: `m${index}-` })
  const active = []
  const wait = () => new Promise((res) => process.once('message', res))
  const phase = {
    async store() {
      for (let i = 0; i < n; i += STORE_CHUNK) {
        const chunk = gen.range(i, Math.min(n, i + STORE_CHUNK))
        for (const b of chunk) if (b.frame.state !== 'closed') active.push(b.frame.frame_id)
        await tm.storeMany(chunk)
      }
      return n
    },
    async move(toTier) {
      const st = await tm.waitForMigration(await tm.startMigration({ toTier }))
      if (st.state !== 'done' || st.failed) throw new Error(`run to ${toTier}: ${st.state}, ${st.failed} failed, ${st.error}`)
      return st.done
    },
  }
  let go = wait()
  process.send({ name: 'ready' })
  for (const name of PHASES) {
    await go
    let running = true
    const us = []
    // Reads of frames that stay hot, about one a millisecond (a busy agent), during the moves.
    const reading = (async () => {
      if (name === 'store') return
      for (let i = 0; running; i++) {
        const id = active[(i * 7919) % active.length]
        const t = now()
        if (!(await tm.retrieve(id, { promote: false }))) throw new Error(`hot frame ${id} missing`)
        us.push((now() - t) * 1000)
        await new Promise((r) => setTimeout(r, 1))
      }
    })()
    const t = now()
    const frames = name === 'store' ? await phase.store() : await phase.move(name.split('→')[1])
    const ms = now() - t
    running = false
    await reading
    us.sort((a, b) => a - b)
    go = wait()
    process.send({ name, frames, ms, reads: us.length, p99: pct(us, 0.99) })
  }
  await go
  // Everything is hot again: a sample back byte for byte, and verify.
  let wrong = 0
  for (let i = 0; i < n; i += 97) {
    const b = gen.bundle(i)
    const got = await tm.retrieve(b.frame.frame_id, { promote: false })
    if (JSON.stringify(normalized(got)) !== JSON.stringify(normalized(b))) wrong++
  }
  const v = await tm.verify()
  await tm.close()
  process.send({ name: 'end', wrong, clean: v.clean, findings: v.findings.length })
}

// ---- parent -------------------------------------------------------------------------------------

/** P machines in lockstep; returns per phase: wall ms (start to the last one done), frames, reads. */
async function fleet(procs, n, tag, tmp) {
  const { REDIS_URL, PG_URL } = require('./clients')
  const prefix = `smproc:${tag}:${procs}:`
  const schema = `smproc_${tag}_${procs}`
  const kids = Array.from({ length: procs }, (_, i) => {
    const config = {
      dbPath: path.join(tmp, `p${procs}-m${i}.db`),
      tiers: {
        redis: { enabled: true, connectionString: REDIS_URL, keyPrefix: prefix, ttl: '7d', maxSize: '16GB' },
        postgres: { enabled: true, connectionString: PG_URL, schema },
      },
      policies: { backgroundSync: false },
    }
    const env = { ...process.env, SMP_CHILD: '1', SMP_CONFIG: JSON.stringify(config), SMP_INDEX: String(i), SMP_N: String(n) }
    const k = fork(__filename, [], { env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    k.failed = new Promise((_, rej) => k.once('exit', (code) => code && rej(new Error(`machine ${i} exited ${code}`))))
    return k
  })
  const next = (k) => Promise.race([new Promise((res) => k.once('message', res)), k.failed])
  await Promise.all(kids.map(next)) // ready: opened
  const out = {}
  for (const name of [...PHASES, 'end']) {
    const t = now()
    const replies = kids.map(next)
    for (const k of kids) k.send('go')
    const got = await Promise.all(replies)
    const wall = now() - t
    if (name === 'end') {
      out.end = got
      break
    }
    const frames = got.reduce((a, g) => a + g.frames, 0)
    out[name] = { wall, frames, rate: frames / (wall / 1000), p99: Math.max(...got.map((g) => g.p99)), reads: got.reduce((a, g) => a + g.reads, 0), each: got }
    log(`${procs} x ${n}: ${name} ${frames} frames in ${(wall / 1000).toFixed(1)} s (${out[name].rate.toFixed(0)} frames/s)`)
  }
  await Promise.all(kids.map((k) => new Promise((res) => (k.exitCode !== null ? res() : k.once('exit', res)))))
  await require('./clients').removeRemote(prefix, schema)
  for (const f of fs.readdirSync(tmp)) if (f.startsWith(`p${procs}-`)) fs.rmSync(path.join(tmp, f))
  return out
}

function render(procs, n, one, many, started, secs) {
  const f0 = (x) => x.toFixed(0)
  const f1 = (x) => x.toFixed(1)
  const L = [`## ${procs} processes on one Redis and one PostgreSQL (\`node bench/processes.js\`)`, '']
  L.push(`Generated on ${started.toISOString()} (${(secs / 60).toFixed(1)} min), ${os.cpus().length} cores, Node ${process.version}. ${procs} processes ("machines"), each with its own SQLite file and ${n} StackMemory-shaped frames of its own (testkit/frames.js), one Redis key prefix and one PostgreSQL schema for all; each phase started in every process at once; during the moves each process reads frames that stay hot (\`retrieve\`, \`{ promote: false }\`), about one per millisecond. The baseline: 1 process with the same ${n} frames, alone, in the same run.`, '')
  L.push(`| phase | 1 process: frames/s | ${procs} processes: frames/s (all) | ratio | hot read p99 (µs), 1 process | hot read p99 (µs), worst of ${procs} | reads during the phase (${procs} processes) |`)
  L.push('|---|---:|---:|---:|---:|---:|---:|')
  for (const p of PHASES) {
    const a = one[p]
    const b = many[p]
    const reads = p === 'store' ? '-' : String(b.reads)
    const p99 = (x) => (p === 'store' ? '-' : f0(x.p99))
    L.push(`| ${p} | ${f0(a.rate)} | ${f0(b.rate)} | ${(b.rate / a.rate).toFixed(2)}x | ${p99(a)} | ${p99(b)} | ${reads} |`)
  }
  L.push('')
  const ends = many.end
  L.push(`After the round trip: ${ends.reduce((x, e) => x + e.wrong, 0)} wrong frames in ${procs} samples of ${Math.ceil(n / 97)}, \`verify\` clean in ${ends.filter((e) => e.clean).length} of ${procs} processes (${ends.reduce((x, e) => x + e.findings, 0)} findings).`)
  L.push(`Total moved: ${f0(many['hot→warm'].frames + many['warm→cold'].frames + many['cold→hot'].frames)} frames in ${f1((many['hot→warm'].wall + many['warm→cold'].wall + many['cold→hot'].wall) / 1000)} s by ${procs} processes; 2 cores are shared by the processes, Redis and PostgreSQL, so the ratio is bounded by the machine, not by the processes.`, '')
  return L.join('\n')
}

async function main() {
  const procs = Number(arg('procs', 4))
  const n = Number(arg('frames', 100000))
  const started = new Date()
  const t0 = now()
  const tag = `${Date.now().toString(36)}${crypto.randomBytes(3).toString('hex')}`
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'smproc-'))
  log(`processes bench: 1 then ${procs} processes x ${n} frames; tmp ${tmp}`)
  const one = await fleet(1, n, tag, tmp)
  const many = await fleet(procs, n, tag, tmp)
  const md = render(procs, n, one, many, started, (now() - t0) / 1000)
  fs.writeFileSync(path.join(os.tmpdir(), 'smproc-last.json'), JSON.stringify({ one, many }, null, 2))
  if (!argv.includes('--no-write')) fs.writeFileSync(path.join(__dirname, 'processes.md'), md)
  console.log(md)
  fs.rmSync(tmp, { recursive: true, force: true })
  const bad = many.end.some((e) => e.wrong || !e.clean) || one.end.some((e) => e.wrong || !e.clean)
  if (bad) {
    console.error('processes bench: frames wrong or verify not clean')
    process.exitCode = 1
  }
}

if (process.env.SMP_CHILD) {
  child().catch((e) => {
    console.error(e)
    process.exit(1)
  })
} else {
  main().catch((e) => {
    console.error(e)
    process.exit(1)
  })
}
