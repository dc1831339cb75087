'use strict'
// The bulk-run commands of the storage CLI: migrate (a run, with a progress bar on a terminal and
// NDJSON progress lines with --json), plan, resume, runs, rollback and verify. Each is a command
// spec as storage.js's COMMANDS takes them; storage.js mounts them.

const cliProgress = require('cli-progress')
const fmt = require('./format.js')

const numberOr = (v) => (/^\d+$/.test(v) ? Number(v) : v)
const list = (v) => v.split(',').filter(Boolean)

function positiveInt(v) {
  const n = Number(v)
  if (!Number.isInteger(n) || n < 1) {
    const { InvalidArgumentError } = require('commander')
    throw new InvalidArgumentError('must be a positive integer')
  }
  return n
}

/** What selects the frames: the same flags for migrate and plan. */
const SELECT_OPTIONS = [
  { flags: '--tier <tier>', description: 'target tier', choices: ['1', '2', '3', 'hot', 'warm', 'cold'], required: true },
  { flags: '--older-than <duration>', description: "only frames closed (else created) longer ago than this (ms or '24h')" },
  { flags: '--limit <n>', description: 'at most this many frames', parse: positiveInt },
  { flags: '--project <id>', description: 'only frames of this project' },
  { flags: '--ids <a,b>', description: 'exactly these frames', parse: list },
]

/** How a run moves. */
const RUN_OPTIONS = [
  { flags: '--rate <fps>', description: 'at most this many frames per second', parse: positiveInt },
  { flags: '--byte-rate <size>', description: "at most this many bytes per second (e.g. '20MB')" },
  { flags: '--memory-budget <size>', description: "bytes of frames in flight at once (default '64MB')" },
  { flags: '--batch-size <n>', description: 'most frames per batch', parse: positiveInt },
]

function selection(o) {
  const req = { toTier: numberOr(o.tier) }
  if (o.olderThan) req.olderThan = numberOr(o.olderThan)
  if (o.limit) req.limit = o.limit
  if (o.project) req.projectId = o.project
  if (o.ids) req.frameIds = o.ids
  return req
}

function runOptions(o) {
  const r = {}
  if (o.rate || o.byteRate) r.rateLimit = { ...(o.rate ? { framesPerSecond: o.rate } : {}), ...(o.byteRate ? { bytesPerSecond: numberOr(o.byteRate) } : {}) }
  if (o.memoryBudget) r.memoryBudget = numberOr(o.memoryBudget)
  if (o.batchSize) r.batchSize = o.batchSize
  return r
}

/**
 * Where a run's progress goes: NDJSON lines with --json; a bar on a terminal (stderr, so stdout
 * stays the report); nothing otherwise. Ctrl-C cancels the run at its next batch (resumable).
 */
function progressOf(s) {
  const ac = new AbortController()
  const onSigint = () => ac.abort()
  process.once('SIGINT', onSigint)
  let bar = null
  let runId = null
  const tty = !s.opts.json && !s.ctx.redirected && process.stderr.isTTY
  const onProgress = (p) => {
    runId = p.runId
    if (s.opts.json) {
      s.ctx.out(JSON.stringify({ event: 'progress', ...p }))
    } else if (tty) {
      if (!bar) {
        bar = new cliProgress.SingleBar(
          { format: '{hop} [{bar}] {percentage}% | {value}/{total} frames | {rate} frames/s | ETA {eta_formatted}', stream: process.stderr, hideCursor: true },
          cliProgress.Presets.shades_classic,
        )
        bar.start(Math.max(p.total, 1), 0, { hop: p.hop || '', rate: '0' })
      }
      bar.setTotal(Math.max(p.total, p.done + p.skipped + p.failed, 1))
      bar.update(p.done + p.skipped + p.failed, { hop: p.hop || '', rate: p.rate.toFixed(0) })
    }
  }
  return {
    onProgress,
    signal: ac.signal,
    get runId() { return runId },
    get aborted() { return ac.signal.aborted },
    stop() {
      process.removeListener('SIGINT', onSigint)
      if (bar) bar.stop()
    },
  }
}

/** Prints a result: the last NDJSON line with --json, else the human form. */
function finish(s, value, human) {
  if (s.opts.json) s.ctx.out(JSON.stringify({ event: 'done', ...s.mask(value) }))
  else human(s.mask(value), s.ctx.out)
}

const RUN_COMMANDS = [
  {
    name: 'migrate',
    description: 'move frames to a tier as a run: checkpointed, throttled, resumable (eligible frames of the other tiers, or --ids)',
    options: [
      ...SELECT_OPTIONS,
      { flags: '--dry-run', description: 'report what would move; move nothing' },
      ...RUN_OPTIONS,
    ],
    action: async (s) => {
      const o = s.opts
      const m = await s.open()
      if (o.dryRun) {
        const r = await m.migrate({ ...selection(o), dryRun: true })
        s.print(r, fmt.printMigrate)
        return 0
      }
      const p = progressOf(s)
      let r
      try {
        r = await m.migrate({ ...selection(o), ...runOptions(o), onProgress: p.onProgress, signal: p.signal })
      } finally {
        p.stop()
      }
      if (o.json) s.ctx.out(JSON.stringify({ event: 'done', ...s.mask(r) }))
      else fmt.printMigrate(s.mask(r), s.ctx.out)
      if (r.cancelled && !o.json) s.ctx.err(`cancelled; continue with: stackmemory-storage resume ${r.runId}`)
      return r.failed.length || r.cancelled ? 1 : 0
    },
  },
  {
    name: 'plan',
    description: 'what a migration would move, per hop and project, what it would skip and why, and how long it would take',
    options: SELECT_OPTIONS,
    action: async (s) => s.print(await (await s.open()).planMigration(selection(s.opts)), fmt.printPlan),
  },
  {
    name: 'resume',
    description: 'continue a run that stopped (killed, cancelled, failed) from its checkpoint',
    args: ['<runId>'],
    action: async (s, runId) => {
      const m = await s.open()
      const p = progressOf(s)
      let st
      try {
        await m.resumeMigration(runId, { onProgress: p.onProgress, signal: p.signal })
        st = await m.waitForMigration(runId)
      } finally {
        p.stop()
      }
      finish(s, st, fmt.printRun)
      return st.state === 'done' && st.failed === 0 ? 0 : 1
    },
  },
  {
    name: 'runs',
    description: 'the runs of this database, newest first (or one run, by id)',
    args: ['[runId]'],
    options: [{ flags: '--limit <n>', description: 'at most this many runs', parse: positiveInt }],
    action: async (s, runId) => {
      const m = await s.open()
      if (runId) return s.print(await m.migrationStatus(runId), fmt.printRun)
      s.print(await m.listMigrations(s.opts.limit ? { limit: s.opts.limit } : undefined), fmt.printRuns)
    },
  },
  {
    name: 'rollback',
    description: 'move every frame a run moved back to the tier it came from (frames changed since are refused)',
    args: ['<runId>'],
    action: async (s, runId) => {
      const r = await (await s.open()).rollbackMigration(runId)
      s.print(r, fmt.printRollback)
      return r.failed.length ? 1 : 0
    },
  },
  {
    name: 'verify',
    description: "check every frame's copies in Redis and PostgreSQL against its bookkeeping; --repair fixes what it can",
    options: [
      { flags: '--repair', description: 'fix missing, stale, corrupt and orphaned copies from a copy that verifies' },
      { flags: '--project <id>', description: 'only frames of this project' },
      { flags: '--sample <share>', description: 'check this share of the frames (0 < share <= 1)', parse: Number },
    ],
    action: async (s) => {
      const o = {}
      if (s.opts.repair) o.repair = true
      if (s.opts.project) o.projectId = s.opts.project
      if (s.opts.sample !== undefined) o.sample = s.opts.sample
      const r = await (await s.open()).verify(o)
      s.print(r, fmt.printVerify)
      return r.clean || (s.opts.repair && r.unrepaired === 0 && r.unavailable.length === 0) ? 0 : 1
    },
  },
]

module.exports = { RUN_COMMANDS }
