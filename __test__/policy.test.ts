// Policies through the JS API, against the real services: pins, force moves, cycles (dry and
// real), explain, the background worker, the simulator and trace recording.
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

import { TierManager, simulate } from '../index.js'
import { fileRegistry, rejectionOf, simpleBundle, sleep, TestEnv } from './helpers/gen'

// Frames go idle after one second, and a demotion needs the default three consecutive cycles.
const FAST = { hotMaxAge: '1s', filters: { cooldown: { duration: '1s' } } } as any

const reg = fileRegistry()
const env = (policies: any = FAST): TestEnv => reg.env({ policies })

/** A frame closed just now (simpleBundle's default is closed 9 days ago: past warmMaxAge, so idle
 * frames would go straight to cold). Age comes from the frame's own times. */
const fresh = (id: string, o: any = {}) => {
  const now = Math.floor(Date.now() / 1000)
  return simpleBundle(id, { createdAt: now - 60, closedAt: now, ...o })
}

async function tierOf(m: TierManager, id: string): Promise<string> {
  return (await m.explain(id)).tier
}

test('a demotion cycle moves idle frames after the persistence filter, and pinned frames stay', async () => {
  const e = env()
  const m = await TierManager.open(e.config)
  try {
    await m.storeMany([fresh('idle-1'), fresh('idle-2'), fresh('pinned-1'), fresh('live-1', { state: 'active' })])
    const pin = await m.pin('pinned-1')
    expect(pin.pinned).toBe(true)
    expect(pin.pinnedFrames).toBe(1)
    expect(pin.maxPinnedBytes).toBeGreaterThan(0)
    await sleep(1200)

    const c1 = await m.runCycle()
    const byId = (c: any) => Object.fromEntries(c.decisions.map((d: any) => [d.frameId, d]))
    expect(byId(c1)['idle-1'].action).toBe('observing')
    expect(byId(c1)['idle-1'].reason).toBe('observing: 1/3 cycles')
    expect(byId(c1)['pinned-1'].reason).toBe('skipped: pinned')
    expect(byId(c1)['live-1'] === undefined || byId(c1)['live-1'].action === 'skipped').toBe(true)
    expect(await tierOf(m, 'idle-1')).toBe('hot')

    await m.runCycle()
    const c3 = await m.runCycle()
    expect(byId(c3)['idle-1'].action).toBe('executed')
    expect(byId(c3)['idle-2'].action).toBe('executed')
    expect(c3.counts.executed).toBeGreaterThanOrEqual(2)
    expect(await tierOf(m, 'idle-1')).toBe('warm')
    expect(await tierOf(m, 'pinned-1')).toBe('hot')
    expect(await tierOf(m, 'live-1')).toBe('hot')
    // Demoted frames still read back whole.
    expect((await m.retrieve('idle-1', { promote: false }))!.events).toHaveLength(1)

    // explain reflects the cycle's decision.
    const x = await m.explain('idle-1')
    expect(x.lastDecisions.some((d) => d.action === 'executed' && d.to === 'warm')).toBe(true)
    expect(typeof x.expectedNext).toBe('string')
    expect(x.score).toHaveProperty('total')
    // Read once: no companions learnt yet, and no victim duel decided, so ranking is by score.
    expect(x.companions).toMatch(/^none learnt/)
    expect(x.ranking).toMatch(/^by score \(0 victim duels decided, 5 needed\)/)

    const unpinned = await m.unpin('pinned-1')
    expect(unpinned.pinned).toBe(false)
    expect((await m.status()).policy.pinnedFrames).toBe(0)
  } finally {
    await m.close()
  }
})

/**
 * The bulk-run deferral, shared by the two tests below: `m` stores idle frames (which its cycle
 * wants moved at once) and 200 frames `runner` migrates slowly; `m`'s cycle during the run defers
 * every move it wants with `reason`, and moves once the run is cancelled.
 */
async function cycleDefersToRun(m: TierManager, runner: TierManager, tag: string, reason: (runId: string) => string) {
  // Closed 9 days ago: idle, past warmMaxAge; the cycle wants them cold at once.
  const idle = Array.from({ length: 20 }, (_, i) => simpleBundle(`bulk-idle-${tag}-${i}`))
  const moving = Array.from({ length: 200 }, (_, i) => simpleBundle(`bulk-run-${tag}-${i}`))
  await m.storeMany([...idle, ...moving])
  await sleep(1200)
  const runId = await runner.startMigration({ toTier: 'warm', frameIds: moving.map((b) => b.frame.frame_id), rateLimit: { framesPerSecond: 50 } })
  const during = await m.runCycle()
  const wanted = during.decisions.filter((d: any) => d.frameId.startsWith(`bulk-idle-${tag}`))
  expect(wanted.length).toBe(20)
  for (const d of wanted) {
    expect(d.action).toBe('deferred')
    expect(d.reason).toBe(reason(runId))
  }
  expect(during.counts.executed).toBe(0)
  expect(during.counts.pending).toBe(0)
  expect(await tierOf(m, idle[0].frame.frame_id)).toBe('hot')
  const last = (await m.explain(idle[0].frame.frame_id)).lastDecisions
  expect(last[last.length - 1].action).toBe('deferred')

  runner.cancelMigration(runId)
  expect((await runner.waitForMigration(runId)).state).toBe('cancelled')
  const after = await m.runCycle()
  const moved = after.decisions.filter((d: any) => d.frameId.startsWith(`bulk-idle-${tag}`) && d.action === 'executed')
  expect(moved.length).toBeGreaterThan(0)
}

const ONE_CYCLE = { ...FAST, filters: { ...FAST.filters, persistence: { cycles: 1 } } }

test('a cycle while a bulk run is going defers its moves to the run, and moves them once it ended', async () => {
  const e = env(ONE_CYCLE)
  const m = await reg.open(e.config)
  await cycleDefersToRun(m, m, e.prefix.slice(4, 10), (id) => `deferred: bulk run ${id} is moving frames; automatic moves wait for it`)
}, 60_000)

test('runCycle({ dryRun: true }) reports decisions and changes nothing', async () => {
  const e = env()
  const m = await TierManager.open(e.config)
  try {
    await m.storeMany([simpleBundle('dry-1'), simpleBundle('dry-2')])
    await sleep(1200)
    const before = JSON.stringify((await m.status()).tiers)
    const explainBefore = await m.explain('dry-1')
    for (let i = 0; i < 4; i++) {
      const r = await m.runCycle({ dryRun: true })
      expect(r.dryRun).toBe(true)
      // The persistence count never advances in a dry run.
      expect(r.decisions.find((d) => d.frameId === 'dry-1')!.reason).toBe('observing: 1/3 cycles')
    }
    expect(JSON.stringify((await m.status()).tiers)).toBe(before)
    const explainAfter = await m.explain('dry-1')
    expect(explainAfter.lastDecisions).toEqual(explainBefore.lastDecisions)
    expect(explainAfter.tier).toBe('hot')
    await expect(rejectionOf(m.runCycle({ dryRun: 'yes' } as any))).resolves.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' })
  } finally {
    await m.close()
  }
})

test('force moves work through all tiers and bring the frame back whole', async () => {
  const e = env()
  const m = await TierManager.open(e.config)
  try {
    const b = simpleBundle('force-1')
    await m.store(b)
    await m.store(simpleBundle('force-live', { state: 'active' }))
    const original = await m.retrieve('force-1')

    const w = await m.forceDemote('force-1', 'warm')
    expect(w.action).toBe('executed')
    expect(w.forced).toBe(true)
    expect(await tierOf(m, 'force-1')).toBe('warm')
    expect(await m.retrieve('force-1', { promote: false })).toEqual(original)

    expect((await m.forceDemote('force-1', 3)).action).toBe('executed')
    expect(await tierOf(m, 'force-1')).toBe('cold')
    expect(await m.retrieve('force-1', { promote: false })).toEqual(original)

    expect((await m.forcePromote('force-1')).action).toBe('executed')
    expect(await tierOf(m, 'force-1')).toBe('hot')
    expect(await m.retrieve('force-1')).toEqual(original)

    // Hot → cold directly, and an active frame is never demoted, not even by force.
    expect((await m.forceDemote('force-1', 'cold')).action).toBe('executed')
    expect(await tierOf(m, 'force-1')).toBe('cold')
    const live = await m.forceDemote('force-live', 'warm')
    expect(live.action).toBe('skipped')
    expect(live.reason).toMatch(/active/)
    expect(await tierOf(m, 'force-live')).toBe('hot')

    expect(await rejectionOf(m.forceDemote('force-1', 'hot' as any))).toMatchObject({ code: 'ERR_INVALID_ARGUMENT' })
    expect(await rejectionOf(m.forcePromote('no-such-frame'))).toMatchObject({ code: 'ERR_NOT_FOUND' })
    expect(await rejectionOf(m.pin('no-such-frame'))).toMatchObject({ code: 'ERR_NOT_FOUND' })
  } finally {
    await m.close()
  }
})

test('policy configuration is validated with the field named', async () => {
  const e = env()
  for (const [policies, field] of [
    [{ filters: { bogus: {} } }, /policies\.filters/],
    [{ watermarks: { warning: 2 } }, /policies\.watermarks\.warning/],
    [{ maxConcurrentMoves: 0 }, /policies\.maxConcurrentMoves/],
    [{ filters: { pattern: { lead: 1.5 } } }, /policies\.filters\.pattern\.lead/],
    [{ filters: { pattern: { window: 1 } } }, /policies\.filters\.pattern\.window/],
  ] as Array<[any, RegExp]>) {
    const err = await rejectionOf(TierManager.open(e.with({ policies })))
    expect(err.code).toBe('ERR_INVALID_CONFIG')
    expect(err.message).toMatch(field)
  }
  const m = await TierManager.open(e.with({ policies: { filters: { pattern: { enabled: false, lead: 0.5, minConfidence: 0.7 } } } }))
  await m.close()
})

test('the background worker runs cycles, and close() stops it so the process exits', () => {
  const e = env()
  const cfg = e.with({ policies: { ...FAST, backgroundSync: true, syncInterval: '100ms' } })
  const script = `
    const { TierManager } = require(${JSON.stringify(path.join(__dirname, '..', 'index.js'))})
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
    ;(async () => {
      const m = await TierManager.open(${JSON.stringify(cfg)})
      await m.storeMany(${JSON.stringify([fresh('bg-1'), fresh('bg-2')])})
      for (let i = 0; i < 60; i++) {
        await sleep(100)
        if ((await m.explain('bg-1')).tier === 'warm') break
      }
      const s = await m.status()
      console.log(JSON.stringify({ cycles: s.policy.workerCycles, tier: (await m.explain('bg-1')).tier, err: s.policy.workerLastError }))
      await m.close()
    })()`
  const start = Date.now()
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 })
  expect(r.stderr).toBe('')
  expect(r.status).toBe(0)
  const out = JSON.parse(r.stdout.trim())
  expect(out.cycles).toBeGreaterThanOrEqual(3)
  expect(out.tier).toBe('warm')
  expect(out.err).toBeNull()
  expect(Date.now() - start).toBeLessThan(20_000)
})

test('a rising pressure level starts a cycle between intervals, and it frees hot', async () => {
  const e = env()
  const cfg: any = e.with({ policies: { backgroundSync: true, syncInterval: '1h', pressureCheckInterval: '100ms' } })
  cfg.tiers.sqlite = { maxFrames: 10 }
  const m = await TierManager.open(cfg)
  try {
    await m.storeMany(Array.from({ length: 30 }, (_, i) => simpleBundle(`pr-${i}`)))
    const stored = Date.now()
    let s = await m.status()
    // A cycle may start while storeMany is still writing; then hot, still over, starts another.
    while ((s.policy.workerPressureCycles === 0 || s.tiers.hot.frames > 10) && Date.now() - stored < 10_000) {
      await sleep(50)
      s = await m.status()
    }
    // Emergency (30 frames against 10): the lowest-scoring frames leave hot at once, no filters.
    expect((s.policy as any).workerPressureCycles).toBeGreaterThanOrEqual(1)
    expect(s.policy.workerLastError).toBeNull()
    expect(s.tiers.hot.frames).toBeLessThanOrEqual(10)
    expect(s.tiers.warm.frames + s.tiers.cold.frames).toBeGreaterThanOrEqual(20)
    for (let i = 0; i < 30; i++) expect((await m.retrieve(`pr-${i}`, { promote: false }))!.frame.frame_id).toBe(`pr-${i}`)
  } finally {
    await m.close()
  }
})

test('imported history: old frames stored through storeMany get decisions in the first cycle, recent ones stay hot', async () => {
  const e = env({})
  const m = await TierManager.open(e.config)
  try {
    const now = Math.floor(Date.now() / 1000)
    const day = 86400
    const old = ['imp-1', 'imp-2', 'imp-3'].map((id) => simpleBundle(id, { createdAt: now - 11 * day, closedAt: now - 10 * day }))
    const recent = simpleBundle('imp-new', { createdAt: now - 3600, closedAt: now - 60 })
    const readOld = simpleBundle('imp-read', { createdAt: now - 11 * day, closedAt: now - 10 * day })
    await m.storeMany([...old, recent, readOld])
    // Read through us: from now on its age is its last read, not its close time.
    await m.retrieve('imp-read')

    const c = await m.runCycle({ dryRun: true })
    const byId = Object.fromEntries(c.decisions.map((d: any) => [d.frameId, d]))
    for (const id of ['imp-1', 'imp-2', 'imp-3']) {
      expect(byId[id]).toBeDefined()
      expect(byId[id].to).toBe('cold') // idle 10 d is beyond warmMaxAge (7 d) too
      expect(byId[id].basis).toMatch(/^idle 10 d > 24 h \(hotMaxAge\), never read/)
      expect(byId[id].reason).toBe('observing: 1/3 cycles')
    }
    expect(byId['imp-new']).toBeUndefined()
    expect(byId['imp-read']).toBeUndefined()
    expect((await m.explain('imp-1')).expectedNext).toMatch(/^eligible: idle 10 d > 24 h \(hotMaxAge\), never read/)
    expect((await m.explain('imp-new')).expectedNext).toMatch(/^stays hot/)
    expect((await m.explain('imp-read')).expectedNext).toMatch(/^stays hot/)

    // Three real cycles: the persistence filter passes and the imported frames leave hot.
    await m.runCycle()
    await m.runCycle()
    const c3 = await m.runCycle()
    expect(c3.decisions.filter((d: any) => d.frameId.startsWith('imp-') && d.action === 'executed').map((d: any) => d.frameId).sort()).toEqual(['imp-1', 'imp-2', 'imp-3'])
    expect(await tierOf(m, 'imp-1')).toBe('cold')
    expect(await tierOf(m, 'imp-new')).toBe('hot')
    expect(await tierOf(m, 'imp-read')).toBe('hot')
  } finally {
    await m.close()
  }
})

test('simulate() takes arrays whose t are epoch milliseconds, the same as JSON-lines text', async () => {
  const t0 = 1.8e12
  const events = [
    { frameId: 'a', sizeBytes: 100, t: t0, op: 'write' },
    { frameId: 'a', sizeBytes: 100, t: t0 + 1000, op: 'read' },
    { frameId: 'b', sizeBytes: 100, t: t0 + 2000, op: 'read' },
    { frameId: 'a', sizeBytes: 100, t: Date.now(), op: 'read' },
  ] as any
  const fromArray: any = await simulate(events, { hotCapacityFrames: 1 })
  const fromText: any = await simulate(events.map((e: any) => JSON.stringify(e)).join('\n'), { hotCapacityFrames: 1 })
  expect(fromArray.reads).toBe(3)
  expect(fromArray).toEqual(fromText)
  expect(await rejectionOf(simulate([{ frameId: 'a', sizeBytes: 1, t: t0 + 0.5 }] as any))).toMatchObject({
    code: 'ERR_INVALID_ARGUMENT',
    message: expect.stringContaining('trace[0].t'),
  })
})

test('recordTrace writes every access, and the simulator replays it', async () => {
  const e = env()
  const tracePath = path.join(e.dir, 'trace.jsonl')
  const m = await TierManager.open({ ...e.config, recordTrace: tracePath })
  await m.storeMany([simpleBundle('tr-1'), simpleBundle('tr-2')])
  for (let i = 0; i < 5; i++) await m.retrieve('tr-1')
  await m.retrieve('tr-2')
  await m.close()
  const lines = fs.readFileSync(tracePath, 'utf8').trim().split('\n').map((l) => JSON.parse(l))
  expect(lines.filter((l) => l.op === 'write')).toHaveLength(2)
  expect(lines.filter((l) => l.op === 'read' && l.frameId === 'tr-1')).toHaveLength(5)
  expect(lines.every((l) => l.sizeBytes > 0 && Number.isFinite(l.t))).toBe(true)
  const report: any = await simulate(fs.readFileSync(tracePath, 'utf8'), { hotCapacityFrames: 1 })
  expect(report.reads).toBe(6)
  expect(report.policies.map((p: any) => p.name)).toEqual(expect.arrayContaining(['LRU', 'LFU', 'S3-FIFO']))
})

test('the simulator: our policy beats LRU with fewer migrations on a shipped trace; bad input is typed', async () => {
  const r: any = await simulate('periodic')
  const ours = r.policies.find((p: any) => p.name === 'stackmemory policy')
  const lru = r.policies.find((p: any) => p.name === 'LRU')
  const opt = r.policies.find((p: any) => /optimum/i.test(p.name))
  expect(ours.hotHitRatio).toBeGreaterThan(lru.hotHitRatio)
  expect(ours.migrationsPer1000Reads).toBeLessThanOrEqual(lru.migrationsPer1000Reads)
  expect((opt.hotHitRatio - ours.hotHitRatio) * 100).toBeLessThanOrEqual(5)
  expect(await rejectionOf(simulate(42 as any))).toMatchObject({ code: 'ERR_INVALID_ARGUMENT' })
  expect(await rejectionOf(simulate([{ frameId: 'a' }] as any))).toMatchObject({ code: 'ERR_INVALID_ARGUMENT' })
  expect(await rejectionOf(simulate('periodic', { hotCapacityFrames: -1 }))).toMatchObject({ code: 'ERR_INVALID_ARGUMENT' })
})

test("a cycle waits for another manager's bulk run on the same file, seen by the run's checkpoint row", async () => {
  const e = env(ONE_CYCLE)
  // The runner is another manager on the file: m knows its run only from the file (`tier_runs`).
  const [m, runner] = [await reg.open(e.config), await reg.open(e.config)]
  await cycleDefersToRun(m, runner, e.prefix.slice(4, 10), (id) => `deferred: bulk run ${id} (another process) is moving frames; automatic moves wait for it`)
}, 60_000)

test('a read promotion brings back the frames read with it in two earlier bursts (companions), off the read path', async () => {
  // Reads 300 ms apart are separate bursts here (15 min by default), and one remote read promotes.
  const e = env({ promotionThreshold: 1, backgroundSync: false, companions: { window: '300ms' } })
  const m = await TierManager.open(e.config)
  try {
    const task = ['co-a', 'co-b', 'co-c']
    await m.storeMany([...task, 'co-z'].map((id) => simpleBundle(id)))
    // Two bursts over the task; co-z is read in the first one only.
    for (const id of [...task, 'co-z']) await m.retrieve(id)
    await sleep(600)
    for (const id of task) await m.retrieve(id)
    const before = await m.explain('co-a')
    expect(before.companions).toMatch(/co-b \(2\.0 bursts\)/)
    expect(before.companions).toMatch(/co-c \(2\.0 bursts\)/)
    expect(before.companions).not.toMatch(/co-z/)
    for (const id of [...task, 'co-z']) expect((await m.forceDemote(id, 'warm')).action).toBe('executed')

    await sleep(600)
    expect((await m.retrieve('co-a'))!.frame.frame_id).toBe('co-a')
    const deadline = Date.now() + 10_000
    while (((await tierOf(m, 'co-b')) !== 'hot' || (await tierOf(m, 'co-c')) !== 'hot') && Date.now() < deadline) await sleep(50)
    expect(await tierOf(m, 'co-a')).toBe('hot')
    expect(await tierOf(m, 'co-b')).toBe('hot')
    expect(await tierOf(m, 'co-c')).toBe('hot')
    expect(await tierOf(m, 'co-z')).toBe('warm')
    const brought = (await m.explain('co-b')).lastDecisions.find((d) => d.basis.includes('(companion)'))
    expect(brought).toMatchObject({ action: 'executed', from: 'warm', to: 'hot' })
    expect(brought!.basis).toBe('read with co-a in 2 bursts (companion)')
    // Brought whole.
    expect((await m.retrieve('co-b', { promote: false }))!.frame.frame_id).toBe('co-b')
  } finally {
    await m.close()
  }
})

test('policies.companions is validated by name', async () => {
  const e = env({ companions: { window: 'soon' } })
  const err = await rejectionOf(TierManager.open(e.config))
  expect(err.code).toBe('ERR_INVALID_CONFIG')
  expect(err.message).toMatch(/policies\.companions\.window/)
  const e2 = env({ companions: { enabled: true, lag: 1 } })
  const err2 = await rejectionOf(TierManager.open(e2.config))
  expect(err2.message).toMatch(/policies\.companions\.lag/)
})
