'use strict'
// The storage commands (status, migrate, retrieve, ...), defined once, on commander: COMMANDS
// below is the only definition. `registerStorageCommands(program)` mounts them as a `storage`
// group in StackMemory's commander program; `createProgram()` is the standalone
// `stackmemory-storage` program with the same commands at its top level; `run(argv)` parses with
// it and returns the exit code (0 ok, 1 the operation failed, 2 usage).

const fs = require('node:fs')
const { Command, InvalidArgumentError } = require('commander')
const { TierManager, simulate } = require('../index.js')
const { loadStackMemoryConfig, loadTierConfigFile, maskSecrets } = require('../lib/stackmemory-config.js')
const fmt = require('./format.js')
const { RUN_COMMANDS } = require('./runs.js')

const TRACES = ['sessions', 'periodic', 'read-once', 'mixed']

const fail = (code, message) => Object.assign(new Error(message), { code })

function positiveInt(v) {
  const n = Number(v)
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer')
  return n
}
const list = (v) => v.split(',').filter(Boolean)

// ---------------------------------------------------------------------------------------------
// The commands. `action(s, ...args)` gets a session `s` (options, open(), print()) and the
// command's arguments, and returns the exit code (default 0). Every leaf also takes the global
// options (--db, --config, --redis[-file], --postgres[-file], --json).

const COMMANDS = [
  {
    name: 'status',
    description: 'per-tier counts and bytes, backends, journal, held-back frames',
    action: async (s) => s.print(await s.status(), fmt.printStatus),
  },
  {
    name: 'stats',
    description: "per-tier counts and bytes, and this process's latency histograms, hits, moves and errors (stats())",
    action: async (s) => {
      const status = await s.status()
      s.print({ status, stats: (await s.open()).stats() }, fmt.printStats)
    },
  },
  {
    name: 'metrics',
    description: "this process's figures in Prometheus' text exposition format (metrics())",
    action: async (s) => {
      await s.status() // connects the remote tiers, so their state is known
      s.ctx.out((await s.open()).metrics().replace(/\n$/, ''))
    },
  },
  ...RUN_COMMANDS,
  {
    name: 'retrieve',
    description: 'print the frame bundle (JSON), from whichever tier holds it',
    args: ['<frameId>'],
    options: [{ flags: '--promote', description: 'bring the frame back to the hot tier now' }],
    action: async (s, frameId) => {
      const b = await (await s.open()).retrieve(frameId, s.opts.promote ? { promote: true } : undefined)
      if (b === null) throw fail('ERR_NOT_FOUND', `frame ${frameId} not found in any tier`)
      s.ctx.out(JSON.stringify(b, null, 2)) // frame data, printed as stored
    },
  },
  {
    name: 'search',
    description: 'full-text search over SQLite FTS (hot) and PostgreSQL (archived)',
    args: ['<query...>'],
    options: [
      { flags: '--limit <n>', description: 'at most this many results', parse: positiveInt },
      { flags: '--project <id>', description: 'only frames of this project' },
      { flags: '--tiers <list>', description: 'tiers to search, e.g. hot,cold', parse: list },
    ],
    action: async (s, words) => {
      const o = {}
      if (s.opts.limit) o.limit = s.opts.limit
      if (s.opts.project) o.projectId = s.opts.project
      if (s.opts.tiers) o.tiers = s.opts.tiers
      const r = await (await s.open()).search(words.join(' '), o)
      const warnings = r.warnings.map(maskSecrets)
      s.print({ ...r, warnings }, fmt.printSearch, { raw: true })
      if (!s.opts.json) for (const w of warnings) s.ctx.err(`warning: ${w}`)
    },
  },
  {
    name: 'compact',
    description: 'finish or roll back stale moves, remove orphans, apply retention, reclaim space',
    options: [
      { flags: '--reencode', description: "then re-encode archived envelopes with their project's current zstd dictionary" },
      { flags: '--project <id>', description: 'with --reencode: only this project' },
      { flags: '--limit <n>', description: 'with --reencode: rewrite at most this many envelopes', parse: positiveInt },
    ],
    action: async (s) => {
      const o = {}
      if (s.opts.reencode) o.reencode = true
      if (s.opts.project) o.projectId = s.opts.project
      if (s.opts.limit) o.limit = s.opts.limit
      s.print(await (await s.open()).compact(o), fmt.printCompact)
    },
  },
  {
    name: 'train-dictionary',
    description: "train the project's zstd dictionary now on its frames in SQLite (see docs/DICTIONARIES.md)",
    options: [
      { flags: '--project <id>', description: 'the project (default: the one with the most frames)' },
      { flags: '--force', description: 'adopt it whatever its gain over plain zstd' },
    ],
    action: async (s) => {
      const o = {}
      if (s.opts.project) o.projectId = s.opts.project
      if (s.opts.force) o.force = true
      s.print(await (await s.open()).trainDictionary(o), fmt.printTrained)
    },
  },
  ...['pin', 'unpin'].map((name) => ({
    name,
    description: name === 'pin' ? 'never demote this frame automatically (and bring it back hot)' : 'undo pin',
    args: ['<frameId>'],
    action: async (s, frameId) => s.print(await (await s.open())[name](frameId), fmt.printPin),
  })),
  {
    name: 'explain',
    description: 'tier, access stats, pattern, score, last decisions, what happens next',
    args: ['<frameId>'],
    action: async (s, frameId) => s.print(await (await s.open()).explain(frameId), fmt.printExplain),
  },
  {
    name: 'policy',
    description: 'the policy engine',
    commands: [
      {
        name: 'run',
        description: 'one policy cycle; every decision with its action and reason',
        options: [{ flags: '--dry-run', description: 'decide, move nothing' }],
        action: async (s) => s.print(await (await s.open()).runCycle({ dryRun: !!s.opts.dryRun }), fmt.printCycle),
      },
    ],
  },
  {
    name: 'simulate',
    description: 'replay a trace against our policy, LRU, LFU, S3-FIFO and Belady (no database needed)',
    options: [
      { flags: '--trace <trace>', description: `a JSON-lines file, or one of ${TRACES.join(', ')} (default: all four)` },
      { flags: '--capacity <n>', description: 'hot tier capacity in frames', parse: positiveInt },
    ],
    action: async (s) => {
      const names = s.opts.trace ? [s.opts.trace] : TRACES
      const o = s.opts.capacity ? { hotCapacityFrames: s.opts.capacity } : {}
      const reports = []
      for (const n of names) {
        const trace = TRACES.includes(n) ? n : readFile(n, '--trace', 'ERR_INVALID_ARGUMENT')
        reports.push({ trace: n, ...(await simulate(trace, o)) })
      }
      s.print(reports, fmt.printSimulations)
    },
  },
]

const GLOBAL_OPTIONS = [
  { flags: '--db <path>', description: "the SQLite file (default .stackmemory/context.db, StackMemory's own)" },
  { flags: '--config <file>', description: 'a TierConfig JSON file (default: ~/.stackmemory/config.json, then $REDIS_URL / $DATABASE_URL)' },
  { flags: '--redis <url>', description: 'enable the Redis warm tier at this URL', conflicts: 'redisFile' },
  { flags: '--redis-file <file>', description: 'read the Redis URL from this file (keeps a password out of ps)' },
  { flags: '--postgres <url>', description: 'enable the PostgreSQL cold tier at this URL', conflicts: 'postgresFile' },
  { flags: '--postgres-file <file>', description: 'read the PostgreSQL URL from this file' },
  { flags: '--json', description: 'machine-readable output' },
]

// ---------------------------------------------------------------------------------------------
// Configuration from the global options

function readFile(file, flag, code) {
  try {
    return fs.readFileSync(file, 'utf8')
  } catch (e) {
    throw fail(code, `${flag} ${file}: cannot read: ${e.message}`)
  }
}

function urlFromFile(file, flag) {
  const url = readFile(file, flag, 'ERR_INVALID_CONFIG').trim()
  if (!url) throw fail('ERR_INVALID_CONFIG', `${flag} ${file}: is empty`)
  return url
}

/** --config FILE (a plain TierConfig), else StackMemory's config file; then the flags on top. */
function buildConfig(opts, ctx) {
  const config = opts.config ? loadTierConfigFile(opts.config, { env: ctx.env }) : loadStackMemoryConfig({ env: ctx.env, home: ctx.home })
  if (opts.db) config.dbPath = opts.db
  for (const [tier, flag] of [['redis', 'redis'], ['postgres', 'postgres']]) {
    const url = opts[flag] || (opts[`${flag}File`] && urlFromFile(opts[`${flag}File`], `--${flag}-file`))
    if (url) config.tiers[tier] = { ...(config.tiers[tier] || {}), enabled: true, connectionString: url }
  }
  return config
}

/** Every string in `value` with its URL passwords masked. */
function maskDeep(value) {
  if (typeof value === 'string') return maskSecrets(value)
  if (Array.isArray(value)) return value.map(maskDeep)
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, maskDeep(v)]))
  return value
}

// ---------------------------------------------------------------------------------------------
// Commander wiring

/** Where output goes and how the process ends; `io` overrides each (tests, `run`). */
function context(io = {}) {
  const line = (stream) => (s) => stream.write(s + '\n')
  const err = io.stderr || line(process.stderr)
  return {
    out: io.stdout || line(process.stdout),
    err: (s) => err(maskSecrets(s)),
    /** A failed operation: `error [ERR_CODE]: message`. */
    fail: (e) => err(maskSecrets(`error [${typeof e?.code === 'string' && e.code.startsWith('ERR_') ? e.code : 'ERR_UNKNOWN'}]: ${e?.message ?? e}`)),
    env: io.env || process.env,
    home: io.home,
    /** Output goes to the caller's functions, not a terminal: no progress bar. */
    redirected: Boolean(io.stdout || io.stderr),
    // An action's result: the host program keeps running.
    exitCode: io.exitCode || ((code) => code && (process.exitCode = code)),
    // Help, version or a usage error from commander (which would call process.exit itself).
    exit: io.exit || ((code) => process.exit(code)),
  }
}

function setUp(cmd, ctx) {
  return cmd
    .configureOutput({ writeOut: (s) => ctx.out(s.replace(/\n$/, '')), writeErr: (s) => ctx.err(s.replace(/\n$/, '')) })
    .showHelpAfterError('(add --help for usage)')
    .exitOverride((e) => ctx.exit(e.exitCode === 0 ? 0 : 2))
}

function addOption(cmd, o) {
  const opt = cmd.createOption(o.flags, o.description)
  if (o.choices) opt.choices(o.choices)
  if (o.parse) opt.argParser(o.parse)
  if (o.required) opt.makeOptionMandatory()
  if (o.conflicts) opt.conflicts(o.conflicts)
  cmd.addOption(opt)
}

/** The options an action sees: its own, and a host program's global --json as well. */
function optionsOf(cmd) {
  const own = cmd.opts()
  return { ...own, json: Boolean(own.json || cmd.optsWithGlobals().json) }
}

function session(opts, ctx) {
  let config
  const configOnce = () => (config = config || buildConfig(opts, ctx))
  const s = {
    opts,
    ctx,
    manager: null,
    async open() {
      if (!s.manager) s.manager = await TierManager.open(configOnce())
      return s.manager
    },
    /** The status, with each configured backend's URL (password masked). */
    async status() {
      const st = await (await s.open()).status()
      for (const tier of ['redis', 'postgres']) {
        const url = configOnce().tiers[tier]?.connectionString
        if (st.backends[tier]?.configured && url) st.backends[tier].url = url
      }
      return st
    },
    /** `value` with every URL password masked. */
    mask: maskDeep,
    /** JSON with --json or without a human form, else the human form; URL passwords masked unless `raw`. */
    print(value, human, { raw = false } = {}) {
      const v = raw ? value : maskDeep(value)
      if (opts.json || !human) ctx.out(JSON.stringify(v, null, 2))
      else human(v, ctx.out)
    },
  }
  return s
}

function define(parent, ctx, spec) {
  const cmd = setUp(parent.createCommand(spec.name), ctx).description(spec.description)
  parent.addCommand(cmd)
  if (spec.commands) {
    for (const sub of spec.commands) define(cmd, ctx, sub)
    return
  }
  for (const a of spec.args || []) cmd.argument(a)
  for (const o of [...(spec.options || []), ...GLOBAL_OPTIONS]) addOption(cmd, o)
  cmd.action(async (...args) => {
    const command = args.pop()
    args.pop() // the options object; optionsOf(command) adds a host's --json
    const s = session(optionsOf(command), ctx)
    let code
    try {
      code = (await spec.action(s, ...args)) || 0
    } catch (e) {
      ctx.fail(e)
      code = 1
    } finally {
      if (s.manager) await s.manager.close().catch(() => {})
    }
    ctx.exitCode(code)
  })
}

function addCommands(parent, ctx) {
  for (const spec of COMMANDS) define(parent, ctx, spec)
  return parent
}

/**
 * Mounts `storage <command>` in a commander program (StackMemory's): the same commands as the
 * standalone bin. Returns the `storage` command. A failed operation sets `process.exitCode = 1`;
 * a usage error exits 2 (commander would exit 1), unless `io.exit` says otherwise.
 */
function registerStorageCommands(program, io) {
  const ctx = context(io)
  const group = setUp(program.createCommand('storage'), ctx).description('tiered frame storage: hot SQLite, warm Redis, cold PostgreSQL')
  addCommands(group, ctx)
  program.addCommand(group)
  return group
}

/** The standalone `stackmemory-storage` program. */
function createProgram(io) {
  const ctx = context(io)
  const program = setUp(new Command('stackmemory-storage'), ctx)
    .description('tiered frame storage for StackMemory: hot SQLite, warm Redis, cold PostgreSQL')
    .version(require('../package.json').version)
  return addCommands(program, ctx)
}

class Exit {
  constructor(code) {
    this.code = code
  }
}

/** `stackmemory-storage <argv...>`: resolves to the exit code instead of exiting. */
async function run(argv, io = {}) {
  let code = 0
  const ctx = context(io)
  const program = createProgram({ ...io, exitCode: (c) => (code = c), exit: (c) => { throw new Exit(c) } })
  try {
    await program.parseAsync(argv, { from: 'user' })
  } catch (e) {
    if (e instanceof Exit) return e.code
    ctx.fail(e)
    return 1
  }
  return code
}

module.exports = { registerStorageCommands, createProgram, run }
