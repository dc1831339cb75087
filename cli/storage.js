'use strict'
// The `stackmemory-storage` command line: a thin front end over TierManager.
// `run(argv)` is the whole CLI (used by the bin and by StackMemory's own CLI through
// `createStorageCommand`); it returns the exit code instead of exiting.

const fs = require('node:fs')
const { TierManager, simulate } = require('../index.js')

const USAGE = `usage: stackmemory-storage <command> [options]

commands:
  status                         per-tier counts and bytes, backends, journal, held-back frames
  migrate --tier 1|2|3|hot|warm|cold [--dry-run] [--older-than 24h] [--limit N] [--project ID] [--ids a,b]
  retrieve <frameId> [--promote]  print the frame bundle (JSON)
  search <query> [--limit N] [--project ID] [--tiers hot,warm,cold]
  compact                        finish or roll back stale moves, remove orphans, apply retention, reclaim space
  stats                          status as JSON (alias of status --json)
  pin <frameId> | unpin <frameId> never demote a frame automatically / undo
  explain <frameId>              tier, access stats, pattern, score, last decisions, what happens next
  policy run [--dry-run]         one policy cycle; every decision with its action and reason
  simulate [--trace FILE|sessions|periodic|read-once|mixed] [--capacity N]
                                 replay a trace against our policy, LRU, LFU, S3-FIFO and Belady

options (every command):
  --db PATH        the SQLite file (default .stackmemory/context.db; StackMemory's own database)
  --config FILE    a TierConfig JSON file (see README); --db overrides its dbPath
  --redis URL      enable the Redis warm tier (default: $REDIS_URL)
  --postgres URL   enable the PostgreSQL cold tier (default: $DATABASE_URL)
  --json           machine-readable output
`

class UsageError extends Error {}

/** Parses `--flag value`, `--flag=value` and boolean flags; the rest are positionals. */
function parseArgs(argv, booleans) {
  const opts = {}
  const positional = []
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--') {
      positional.push(...argv.slice(i + 1))
      break
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=')
      const key = eq > 0 ? a.slice(2, eq) : a.slice(2)
      if (booleans.has(key)) {
        opts[key] = true
      } else if (eq > 0) {
        opts[key] = a.slice(eq + 1)
      } else {
        if (i + 1 >= argv.length) throw new UsageError(`--${key} needs a value`)
        opts[key] = argv[++i]
      }
    } else {
      positional.push(a)
    }
  }
  return { opts, positional }
}

const BOOLEANS = new Set(['json', 'dry-run', 'promote', 'help'])
const KNOWN = {
  common: ['db', 'config', 'redis', 'postgres', 'json', 'help'],
  status: [],
  stats: [],
  migrate: ['tier', 'dry-run', 'older-than', 'limit', 'project', 'ids'],
  retrieve: ['promote'],
  search: ['limit', 'project', 'tiers'],
  compact: [],
  pin: [],
  unpin: [],
  explain: [],
  policy: ['dry-run'],
  simulate: ['trace', 'capacity'],
}

function buildConfig(opts) {
  let config = {}
  if (opts.config) {
    try {
      config = JSON.parse(fs.readFileSync(opts.config, 'utf8'))
    } catch (e) {
      const err = new Error(`--config ${opts.config}: ${e.message}`)
      err.code = 'ERR_INVALID_CONFIG'
      throw err
    }
  }
  if (opts.db) config.dbPath = opts.db
  config.tiers = config.tiers || {}
  if (opts.redis) config.tiers.redis = { ...(config.tiers.redis || {}), enabled: true, connectionString: opts.redis }
  if (opts.postgres) config.tiers.postgres = { ...(config.tiers.postgres || {}), enabled: true, connectionString: opts.postgres }
  return config
}

function positiveInt(v, name) {
  const n = Number(v)
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${name} must be a positive integer`)
  return n
}

function fmtBytes(n) {
  if (n < 1024) return `${n} B`
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KB`
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MB`
  return `${(n / 1024 ** 3).toFixed(2)} GB`
}

function table(rows) {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => String(r[c]).length)))
  return rows.map((r) => r.map((v, c) => String(v).padEnd(widths[c])).join('  ').trimEnd()).join('\n')
}

function backendLine(name, b) {
  if (!b.configured) return `${name}: not configured`
  if (!b.reachable) return `${name}: UNREACHABLE (${b.error || 'no answer'})`
  const lat = b.latencyUs != null ? `, ${(b.latencyUs / 1000).toFixed(2)} ms` : ''
  return `${name}: ok${b.version ? ` (${b.version}${lat})` : lat}`
}

function printStatus(s, out) {
  const t = s.tiers
  out(`database: ${s.dbPath} (tier schema v${s.schemaVersion}, ${s.mode})`)
  out(
    table([
      ['tier', 'frames', 'bytes'],
      ['hot (sqlite)', t.hot.frames, fmtBytes(t.hot.bytes)],
      ['warm (redis)', t.warm.frames, fmtBytes(t.warm.bytes)],
      ['cold (postgres)', t.cold.frames, fmtBytes(t.cold.bytes)],
    ]),
  )
  out(backendLine('redis', s.backends.redis))
  out(backendLine('postgres', s.backends.postgres))
  if (s.backends.postgres.reachable && s.backends.postgres.compressionRatio) {
    out(`archive compression: ${Number(s.backends.postgres.compressionRatio).toFixed(2)}x`)
  }
  out(`journal backlog: ${s.journalBacklog}`)
  for (const h of s.heldBack) out(`held back: ${h.frames} frame(s): ${h.reason}`)
  out(`hot hit ratio: ${(s.hotHitRatio * 100).toFixed(1)}%`)
}

function printMigrate(r, out) {
  out(`${r.dryRun ? 'would move' : 'moved'} ${r.moved.length} frame(s) to ${r.toTier} in ${r.durationMs.toFixed(0)} ms`)
  if (r.bytesBefore) out(`bytes: ${fmtBytes(r.bytesBefore)} -> ${fmtBytes(r.bytesAfter)} compressed`)
  for (const h of r.heldBack) out(`held back ${h.frameId}: ${h.reason}`)
  if (r.skippedCount) {
    const reasons = {}
    for (const s of r.skipped) reasons[s.reason] = (reasons[s.reason] || 0) + 1
    out(`skipped ${r.skippedCount}: ${Object.entries(reasons).map(([k, v]) => `${v} ${k}`).join('; ')}`)
  }
  for (const f of r.failed) out(`FAILED ${f.frameId} [${f.code}]: ${f.error}`)
}

async function run(argv, io = {}) {
  const out = io.stdout || ((s) => process.stdout.write(s + '\n'))
  const err = io.stderr || ((s) => process.stderr.write(s + '\n'))
  const [command, ...rest] = argv
  if (!command || command === 'help' || command === '--help' || command === '-h') {
    out(USAGE)
    return command ? 0 : 2
  }
  let manager
  try {
    if (!KNOWN[command] || command === 'common') throw new UsageError(`unknown command '${command}'`)
    const { opts, positional } = parseArgs(rest, BOOLEANS)
    if (opts.help) {
      out(USAGE)
      return 0
    }
    const allowed = new Set([...KNOWN.common, ...KNOWN[command]])
    for (const k of Object.keys(opts)) if (!allowed.has(k)) throw new UsageError(`unknown option --${k} for ${command}`)

    const print = (value, human) => (opts.json || !human ? out(JSON.stringify(value, null, 2)) : human(value, out))
    if (command === 'simulate') {
      // Needs no database: the simulator replays a trace in memory.
      const name = opts.trace || 'all'
      const names = name === 'all' ? ['sessions', 'periodic', 'read-once', 'mixed'] : [name]
      const o = opts.capacity ? { hotCapacityFrames: positiveInt(opts.capacity, 'capacity') } : {}
      const reports = []
      for (const n of names) {
        const trace = ['sessions', 'periodic', 'read-once', 'mixed'].includes(n) ? n : fs.readFileSync(n, 'utf8')
        reports.push({ trace: n, ...(await simulate(trace, o)) })
      }
      print(reports, (rs) => {
        for (const r of rs) {
          out(`trace ${r.trace}: ${r.reads} reads of ${r.frames} frames, hot capacity ${r.hotCapacityFrames ?? '-'} frames`)
          out(table([['policy', 'hot hit %', 'byte hit %', 'migrations/1000 reads', 'gap to optimum (pts)'],
            ...r.policies.map((p) => [p.name, (p.hotHitRatio * 100).toFixed(1), (p.byteHitRatio * 100).toFixed(1), p.migrationsPer1000Reads.toFixed(0), p.gapToOptimumPts.toFixed(1)])]))
          out('')
        }
      })
      return 0
    }
    manager = await TierManager.open(buildConfig(opts))
    switch (command) {
      case 'status':
        print(await manager.status(), printStatus)
        break
      case 'stats':
        print(await manager.status())
        break
      case 'migrate': {
        if (!opts.tier) throw new UsageError('migrate needs --tier 1|2|3 (or hot|warm|cold)')
        const tier = /^[123]$/.test(opts.tier) ? Number(opts.tier) : opts.tier
        const req = { toTier: tier, dryRun: !!opts['dry-run'] }
        if (opts['older-than']) req.olderThan = /^\d+$/.test(opts['older-than']) ? Number(opts['older-than']) : opts['older-than']
        if (opts.limit) req.limit = positiveInt(opts.limit, 'limit')
        if (opts.project) req.projectId = opts.project
        if (opts.ids) req.frameIds = opts.ids.split(',').filter(Boolean)
        const r = await manager.migrate(req)
        print(r, printMigrate)
        if (r.failed.length) return 1
        break
      }
      case 'retrieve': {
        if (positional.length !== 1) throw new UsageError('retrieve needs exactly one <frameId>')
        const b = await manager.retrieve(positional[0], opts.promote ? { promote: true } : undefined)
        if (b === null) {
          err(`frame ${positional[0]} not found in any tier`)
          return 1
        }
        out(JSON.stringify(b, null, 2))
        break
      }
      case 'search': {
        if (positional.length === 0) throw new UsageError('search needs a <query>')
        const o = {}
        if (opts.limit) o.limit = positiveInt(opts.limit, 'limit')
        if (opts.project) o.projectId = opts.project
        if (opts.tiers) o.tiers = opts.tiers.split(',').filter(Boolean)
        const r = await manager.search(positional.join(' '), o)
        print(r, (v) => {
          if (!v.results.length) out('no results')
          else out(table([['frame', 'tier', 'score', 'name'], ...v.results.map((h) => [h.frameId, h.tier, h.score.toFixed(3), h.name || ''])]))
          for (const w of v.warnings) err(`warning: ${w}`)
        })
        break
      }
      case 'pin':
      case 'unpin':
      case 'explain': {
        if (positional.length !== 1) throw new UsageError(`${command} needs exactly one <frameId>`)
        const r = await manager[command](positional[0])
        print(r, command === 'explain' ? (e) => {
          out(`${e.frameId}: ${e.tier}${e.pinned ? ', pinned' : ''}${e.active ? ', active' : ''}, ${fmtBytes(e.sizeBytes)}`)
          if (e.access) out(`reads: ${e.access.count}, last ${new Date(e.access.lastMs).toISOString()}, ${e.access.ratePerH.toFixed(2)}/h`)
          out(`pattern: ${JSON.stringify(e.pattern.pattern)} (confidence ${e.pattern.confidence.toFixed(2)})`)
          out(`score: ${Object.entries(e.score).map(([k, v]) => `${k} ${Number(v).toFixed(2)}`).join(', ')}`)
          for (const d of e.lastDecisions) out(`decision (cycle ${d.cycle}): ${d.from} -> ${d.to}: ${d.reason}`)
          out(`next: ${e.expectedNext}`)
        } : undefined)
        break
      }
      case 'policy': {
        if (positional[0] !== 'run') throw new UsageError('policy needs a subcommand: run [--dry-run]')
        const r = await manager.runCycle({ dryRun: !!opts['dry-run'] })
        print(r, (c) => {
          out(`cycle ${c.cycle}${c.dryRun ? ' (dry run: nothing moved)' : ''}: ${Object.entries(c.counts).filter(([, v]) => v).map(([k, v]) => `${v} ${k}`).join(', ') || 'no decisions'}`)
          for (const d of c.decisions) out(`${d.frameId}: ${d.from} -> ${d.to}: ${d.reason} (confidence ${d.confidence.toFixed(2)})`)
        })
        break
      }
      case 'compact':
        print(await manager.compact(), (v) => out(Object.entries(v).map(([k, x]) => `${k}: ${JSON.stringify(x)}`).join('\n')))
        break
    }
    return 0
  } catch (e) {
    if (e instanceof UsageError) {
      err(`error: ${e.message}\n\n${USAGE}`)
      return 2
    }
    err(`error [${e.code || 'ERR_UNKNOWN'}]: ${e.message}`)
    return 1
  } finally {
    if (manager) await manager.close().catch(() => {})
  }
}

/**
 * For StackMemory's commander-based CLI: `program.addCommand(createStorageCommand(Command))`
 * gives `stackmemory storage <command> ...` with exactly this CLI's commands and options.
 */
function createStorageCommand(Command) {
  return new Command('storage')
    .description('tiered frame storage: status, migrate, retrieve, search, compact')
    .allowUnknownOption(true)
    .helpOption(false)
    .argument('[args...]')
    .action(async (args) => {
      process.exitCode = await run(args || [])
    })
}

module.exports = { run, createStorageCommand, USAGE }
