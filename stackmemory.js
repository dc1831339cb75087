'use strict'
// `stackmemory-tiers/stackmemory`: what StackMemory needs to adopt the tiers in a few lines. A handle
// over one TierManager opened on StackMemory's own better-sqlite3 Database (one SQLite library),
// with FrameManager's reads in FrameManager's shapes (whole, from whichever tier holds the frame),
// SQLiteAdapter.search's shape across tiers, its lifecycle hooks feeding the tiers, and its GC
// archiving before it deletes. No logic of its own beyond the shapes: the work is the addon's.

const { TierManager } = require('./index.js')

// Loaded when used: the CLI pulls in commander, which a StackMemory without the CLI never needs.
const loadStackMemoryConfig = (o) => require('./lib/stackmemory-config.js').loadStackMemoryConfig(o)
const registerStorageCommands = (program) => require('./cli/storage.js').registerStorageCommands(program)

function fail(code, message) {
  const e = new Error(message)
  e.code = code
  return e
}

/** A Frame as FrameManager returns it: the frames row with its JSON columns parsed. */
const frameOf = (bundle) => (bundle ? { ...bundle.frame } : undefined)

class StackMemoryHandle {
  #unregister = []

  constructor(tiers, projectId, onError) {
    /** The TierManager: migrate, status, search, pin, ... */
    this.tiers = tiers
    this.projectId = projectId
    this.onError = onError
  }

  /** FrameManager.getFrame, async and whole: `undefined` when no tier knows the frame. */
  async getFrame(frameId) {
    return frameOf(await this.tiers.retrieve(frameId))
  }

  /** FrameManager.getFrameEvents(frameId, limit = 500): in `seq` order, from whichever tier. */
  async getFrameEvents(frameId, limit = 500) {
    if (!Number.isInteger(limit) || limit < 0) throw fail('ERR_INVALID_ARGUMENT', 'invalid argument: limit: must be a whole number >= 0')
    const b = await this.tiers.retrieve(frameId)
    return b ? b.events.slice(0, limit) : []
  }

  /** FrameManager.getFrameAnchors(frameId): from whichever tier, in the order they were written. */
  async getFrameAnchors(frameId) {
    const b = await this.tiers.retrieve(frameId)
    return b ? b.anchors : []
  }

  /**
   * SQLiteAdapter.search's shape across tiers: frames with a `score`, best first, every tier's hits
   * ranked on one scale (see README "search"). `options`: `{ projectId?, limit?, tiers? }`;
   * `projectId` defaults to the handle's.
   */
  async searchFrames(query, options = {}) {
    const { results, warnings } = await this.tiers.search(query, { projectId: this.projectId, ...options })
    for (const w of warnings) this.onError(fail('ERR_TIER_UNAVAILABLE', w))
    const frames = []
    for (const hit of results) {
      const frame = await this.getFrame(hit.frameId)
      if (frame) frames.push({ ...frame, score: hit.score })
    }
    return frames
  }

  /**
   * StackMemory's GC by its retention rules (`default`/`archive` after `retentionDays`, `ttl_30d`,
   * `ttl_7d`, never `keep_forever`), each frame archived and verified in PostgreSQL first.
   */
  gc(options) {
    return this.tiers.gc(options)
  }

  /**
   * For a StackMemory that runs its own `adapter.runGC(options)`: every call first archives what it
   * would delete, then runs. Returns a function that puts the original back.
   */
  archiveBeforeGc(adapter) {
    if (!adapter || typeof adapter.runGC !== 'function') throw fail('ERR_INVALID_ARGUMENT', 'invalid argument: adapter: must have a runGC method')
    const original = adapter.runGC
    const tiers = this.tiers
    adapter.runGC = async function runGC(options = {}) {
      await tiers.gc({ retentionDays: options.retentionDays ?? 90, archiveOnly: true })
      return original.call(this, options)
    }
    let restored = false
    const restore = () => {
      if (!restored) adapter.runGC = original
      restored = true
    }
    this.#unregister.push(restore)
    return restore
  }

  /** StackMemory's commander CLI gets `storage ...` (see cli/storage.js). */
  registerStorageCommands(program) {
    return registerStorageCommands(program)
  }

  /** Registers on StackMemory's `frameLifecycleHooks` (done by `attachStackMemory`). */
  attachHooks(hooks) {
    // Never throws into StackMemory, never blocks its close: the work is started and not awaited.
    const later = (frame) => {
      const id = frame && (frame.frame_id ?? frame.frameId ?? frame.id)
      if (typeof id !== 'string') return
      this.tiers.refresh(id).catch((e) => this.onError(e))
    }
    const closed = hooks.onFrameClosed('stackmemory-tiers', (ctx) => {
      // The frame object StackMemory passes is stale: the row is re-read.
      later(ctx && ctx.frame)
    })
    const created = hooks.onFrameCreated('stackmemory-tiers', (ctx) => later(ctx && (ctx.frame ?? ctx)), 0)
    for (const u of [closed, created]) if (typeof u === 'function') this.#unregister.push(u)
  }

  /** Unregisters the hooks, puts `runGC` back and closes the TierManager. */
  async detach() {
    for (const u of this.#unregister.splice(0)) {
      try {
        u()
      } catch (e) {
        this.onError(e)
      }
    }
    await this.tiers.close()
  }
}

/**
 * `attachStackMemory({ database, projectId, config?, hooks?, onError? })` → a handle. `database`:
 * StackMemory's better-sqlite3 Database; `config`: a TierConfig (default: from
 * `~/.stackmemory/config.json`, then `REDIS_URL` / `DATABASE_URL`); `hooks`: StackMemory's
 * `frameLifecycleHooks`; `onError`: where background failures go (default: ignored).
 */
async function attachStackMemory(options) {
  if (options === null || typeof options !== 'object') throw fail('ERR_INVALID_ARGUMENT', 'invalid argument: options: must be an object { database, projectId }')
  const { database, projectId, config, hooks, onError = () => {} } = options
  if (typeof projectId !== 'string' || projectId === '') throw fail('ERR_INVALID_ARGUMENT', 'invalid argument: projectId: must be a non-empty string')
  if (database === null || typeof database !== 'object' || typeof database.loadExtension !== 'function') {
    throw fail('ERR_INVALID_CONFIG', 'invalid config: database: must be StackMemory\'s better-sqlite3 Database')
  }
  if (typeof onError !== 'function') throw fail('ERR_INVALID_ARGUMENT', 'invalid argument: onError: must be a function')
  if (hooks !== undefined && (typeof hooks?.onFrameClosed !== 'function' || typeof hooks?.onFrameCreated !== 'function')) {
    throw fail('ERR_INVALID_ARGUMENT', 'invalid argument: hooks: must be StackMemory\'s frameLifecycleHooks (onFrameClosed, onFrameCreated)')
  }
  const cfg = config ?? loadStackMemoryConfig()
  const tiers = await TierManager.open({ ...cfg, dbPath: undefined, database })
  const handle = new StackMemoryHandle(tiers, projectId, onError)
  if (hooks) handle.attachHooks(hooks)
  return handle
}

module.exports = { attachStackMemory, registerStorageCommands, loadStackMemoryConfig }
