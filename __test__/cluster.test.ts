// The warm tier on a real 3-master Redis Cluster started by this file (free local ports, a temp
// dir, stopped in afterAll): round trip store → warm → retrieve, a flush of every node, and the
// outage of one master (reads fall back to the archived copies, no error, no loss).

import { ChildProcess, execFileSync, spawn } from 'child_process'
import * as crypto from 'crypto'
import * as fs from 'fs'
import * as os from 'os'
import * as path from 'path'
import { TierManager } from '../index'
import { fileRegistry, freePort, simpleBundle, sleep } from './helpers/gen'

const reg = fileRegistry()
const { env, open } = reg

interface Node {
  port: number
  proc: ChildProcess
  exited: Promise<void>
}

const cli = (port: number, args: string[]): string =>
  execFileSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })

async function startCluster(): Promise<{ nodes: Node[]; dir: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smt-cluster-'))
  const nodes: Node[] = []
  for (let i = 0; i < 3; i++) {
    const port = await freePort()
    const proc = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`,
        '--cluster-node-timeout', '2000', '--dir', dir, '--save', '', '--appendonly', 'no', '--daemonize', 'no'],
      { stdio: 'ignore' },
    )
    nodes.push({ port, proc, exited: new Promise((res) => proc.once('exit', () => res())) })
  }
  const deadline = Date.now() + 10_000
  for (const n of nodes) {
    for (;;) {
      try {
        if (cli(n.port, ['PING']).trim() === 'PONG') break
      } catch {}
      if (Date.now() > deadline) throw new Error(`cluster node ${n.port} did not start`)
      await sleep(50)
    }
  }
  execFileSync('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'], {
    stdio: 'ignore',
  })
  for (;;) {
    const ok = nodes.every((n) => /cluster_state:ok/.test(cli(n.port, ['CLUSTER', 'INFO'])))
    if (ok) break
    if (Date.now() > deadline + 10_000) throw new Error('cluster did not become ok')
    await sleep(100)
  }
  return { nodes, dir }
}

async function stop(n: Node): Promise<void> {
  if (n.proc.exitCode === null && n.proc.signalCode === null) {
    n.proc.kill('SIGKILL')
    await n.exited
  }
}

let cluster: { nodes: Node[]; dir: string }
beforeAll(async () => {
  cluster = await startCluster()
  reg.defer(async () => {
    for (const n of cluster.nodes) await stop(n)
    fs.rmSync(cluster.dir, { recursive: true, force: true })
  })
}, 30_000)

function frameKeysPerNode(prefix: string): number[] {
  return cluster.nodes.map((n) => {
    try {
      return cli(n.port, ['--scan', '--pattern', `${prefix}frame:*`]).split('\n').filter(Boolean).length
    } catch {
      return -1
    }
  })
}

async function mismatched(m: TierManager, bundles: ReturnType<typeof simpleBundle>[]): Promise<string[]> {
  const bad: string[] = []
  for (const b of bundles) {
    const got = await m.retrieve(b.frame.frame_id, { promote: false })
    if (!got || got.frame.digest_text !== b.frame.digest_text) bad.push(b.frame.frame_id)
  }
  return bad
}

test('round trip, flush and the outage of one master on a 3-master Redis Cluster', async () => {
  const started = Date.now()
  const e = env()
  const url = cluster.nodes.map((n) => `redis://127.0.0.1:${n.port}`).join(',')
  const m = await open(e.with({ redisUrl: url }))
  const t0 = Date.now() - 86_400_000
  const bundles = Array.from({ length: 120 }, (_, i) =>
    simpleBundle(`cl-${i}`, { state: 'closed', createdAt: t0 + i, closedAt: t0 + i + 1, digest: `cluster digest ${i} `.repeat(20) }),
  )
  await m.storeMany(bundles)

  // Round trip: every frame's keys land on the master of its bucket's slot, on all three.
  const rep = await m.migrate({ toTier: 'warm' })
  expect(rep.failed).toEqual([])
  expect(rep.heldBack).toEqual([])
  expect(rep.moved).toHaveLength(120)
  const perNode = frameKeysPerNode(e.prefix)
  expect(perNode.reduce((a, b) => a + b, 0)).toBe(120)
  expect(perNode.filter((n) => n > 0).length).toBe(3)
  let redis = (await m.status()).backends.redis as any
  expect(redis).toMatchObject({ reachable: true, frames: 120 })
  expect(await mismatched(m, bundles)).toEqual([])

  // Flush every node: reads are served by the archive; verify repairs the Redis copies.
  for (const n of cluster.nodes) cli(n.port, ['FLUSHALL'])
  expect(await mismatched(m, bundles)).toEqual([])
  redis = (await m.status()).backends.redis as any
  expect(redis.frames).toBe(0)
  const v = await m.verify({ repair: true })
  expect(v.findings.filter((f) => f.kind === 'missing' && f.tier === 'warm').length).toBe(120)
  expect(v.unrepaired).toBe(0)
  expect(frameKeysPerNode(e.prefix).reduce((a, b) => a + b, 0)).toBe(120)

  // The cap on a cluster: each of the 16 buckets holds at most maxSize / 16, so the sum holds too.
  const e2 = env()
  const cap = 16 * 8 * 1024
  const base = e2.with({ redisUrl: url })
  const m2 = await open({ ...base, tiers: { ...base.tiers, redis: { ...base.tiers!.redis, maxSize: cap } } })
  const big = Array.from({ length: 100 }, (_, i) =>
    simpleBundle(`cap-${i}`, { state: 'closed', createdAt: t0 + i, closedAt: t0 + i + 1, digest: crypto.randomBytes(3000).toString('base64') }),
  )
  await m2.storeMany(big)
  expect((await m2.migrate({ toTier: 'warm' })).failed).toEqual([])
  const buckets = Array.from({ length: 16 }, (_, k) => parseInt(cli(cluster.nodes[0].port, ['-c', 'GET', `${e2.prefix}idx:{w${k}}bytes`]).trim() || '0', 10))
  expect(Math.max(...buckets)).toBeLessThanOrEqual(cap / 16)
  const used = buckets.reduce((a, b) => a + b, 0)
  expect(used).toBeLessThanOrEqual(cap)
  expect(((await m2.status()).backends.redis as any).bytes).toBe(used)
  expect(frameKeysPerNode(e2.prefix).reduce((a, b) => a + b, 0)).toBeLessThan(100)
  expect(await mismatched(m2, big)).toEqual([])
  console.log(`cluster cap ${cap} B: ${used} B used over 16 buckets (max ${Math.max(...buckets)} B per bucket)`)

  // Outage: one master dies. No read fails, none returns something else.
  await stop(cluster.nodes[2])
  const t = Date.now()
  expect(await mismatched(m, bundles)).toEqual([])
  const outageMs = Date.now() - t
  // A new frame is stored and read while the master is down.
  const late = simpleBundle('cl-late', { state: 'active' })
  await m.store(late)
  expect((await m.retrieve('cl-late'))?.frame.frame_id).toBe('cl-late')
  const st = await m.status()
  expect(st.tiers.warm.frames + st.tiers.cold.frames + st.tiers.hot.frames).toBe(121)
  console.log(`cluster: 120 reads with one master down took ${outageMs} ms; whole test ${Date.now() - started} ms`)
}, 60_000)
