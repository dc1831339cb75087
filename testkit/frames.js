'use strict'
// The one generator of StackMemory-shaped frame bundles, shared by the jest suites, the crash
// child and the benchmarks, plus the JS mirrors of the Rust side that they check against.
//
// Shape (as StackMemory writes them; the benchmarks' figures rest on it, so it does not change):
// families of 5 slots, a task (depth 0) then 4 closed subtasks (depth 1); the task is still active
// in ~20 % of families. An active frame is ~0.4 KB (small inputs, one short event or none). A closed
// frame is 4-8 KB of JSON: its digest is stored twice (`outputs` and `digest_json` hold the same
// object), the digest embeds a summary of the frame's events, and the events carry tool calls and
// results; 1 % of closed frames are a tail of 16-100 KB (big tool results).
// `bundle(i)` depends only on (options, i), so a large set can be generated chunk by chunk.
//
// Options for the tests, off by default so the benchmarks get the plain shape:
//   * `variety`: the irregularities StackMemory's rows really have, which the store normalises:
//     times as seconds, milliseconds or ISO strings; some JSON columns given as JSON text; events
//     out of seq order; and a unique word planted in each frame's digest_text (`digestWord`).
//     Applied after the shape is drawn and without drawing, so sizes and ids stay the same.
//   * `large`: indices of closed frames made ~100 KB (in place of their drawn size).

const WORDS = (
  'session token refresh backoff retry limiter cache redis postgres sqlite frame anchor event digest ' +
  'decision constraint risk fact todo build test jest rust napi tokio async await promise module ' +
  'handler request response header cookie login logout user admin config schema migrate index query ' +
  'vacuum journal checksum compress zstd archive promote demote tier hot warm cold stub tree parent ' +
  'child subtask task debug review deploy rollback release patch merge branch commit diff lint format ' +
  'timeout deadline latency throughput memory leak pointer buffer stream socket proxy server client ' +
  'widget service gateway router endpoint payload metadata priority project run depth state closed ' +
  'function return const let import export class interface type string number boolean array object'
).split(' ')

const FAMILY = 5
const DAY = 86400

/** mulberry32: small, fast, seeded. */
function rng(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function words(r, n) {
  const out = []
  for (let i = 0; i < n; i++) {
    // Some identifiers, as code and paths have, so the text is not a 200-word vocabulary only.
    out.push(r() < 0.08 ? `${WORDS[Math.floor(r() * WORDS.length)]}_${Math.floor(r() * 5000)}` : WORDS[Math.floor(r() * WORDS.length)])
  }
  return out.join(' ')
}

/** Text of `bytes` characters. */
function textOf(r, bytes) {
  let s = ''
  while (s.length < bytes) s += words(r, 12) + (r() < 0.3 ? '\n' : '. ')
  return s.slice(0, bytes)
}

function hex(r, n) {
  let s = ''
  while (s.length < n) s += Math.floor(r() * 0x100000000).toString(16).padStart(8, '0')
  return s.slice(0, n)
}

class Gen {
  constructor({
    seed = 7,
    prefix = 'b',
    project = 'git-github-com-acme-widget-service',
    base = Math.floor(Date.now() / 1000) - 40 * DAY,
    variety = false,
    large = [],
  } = {}) {
    this.seed = seed
    this.prefix = prefix
    this.project = project
    this.base = base
    this.variety = variety
    this.large = new Set(large)
  }

  /** Bundles [from, to) in index order, which is parent-first (a subtask's task has a smaller
   * index), so storing consecutive chunks in order is valid. */
  range(from, to) {
    const out = []
    for (let i = from; i < to; i++) out.push(this.bundle(i))
    return out
  }

  bundle(i) {
    const b = this.#shape(i)
    return this.variety ? vary(b, i, this.digestWord(i)) : b
  }

  /** The word planted in frame `i`'s digest_text with `variety` (unique within a prefix). */
  digestWord(i) {
    return `dw${this.prefix.replace(/[^a-z0-9]/gi, '')}x${i}`
  }

  #shape(i) {
    const fam = Math.floor(i / FAMILY)
    const slot = i % FAMILY
    const rf = rng(this.seed * 1000003 + fam)
    const taskActive = rf() < 0.2
    const runId = `run-${hex(rf, 12)}`
    const taskId = `${this.prefix}-${fam * FAMILY}`
    const r = rng(this.seed * 7919 + i * 31 + 1)
    const isActive = slot === 0 && taskActive
    const id = slot === 0 ? taskId : `${this.prefix}-${i}`
    const created = this.base + i * 3 + Math.floor(r() * 3)
    const closedAt = created + 30 + Math.floor(r() * 3000)
    const name = `${slot === 0 ? 'Task' : 'Subtask'} ${words(r, 4)} ${i}`
    const frame = {
      frame_id: id,
      run_id: runId,
      project_id: this.project,
      ...(slot === 0 ? {} : { parent_frame_id: taskId }),
      depth: slot === 0 ? 0 : 1,
      type: slot === 0 ? 'task' : 'subtask',
      name,
      state: isActive ? 'active' : 'closed',
      created_at: created,
      retention_policy: 'default',
    }
    if (isActive) {
      frame.inputs = { goals: words(r, 4) }
      frame.outputs = {}
      frame.digest_text = null
      frame.digest_json = {}
      frame.closed_at = null
      const events = []
      if (i % 2 === 0) {
        events.push({ event_id: `${id}-e0`, frame_id: id, run_id: runId, seq: 1, event_type: 'user_message',
          payload: { content: words(r, 5) }, ts: created * 1000 + 250 })
      }
      return { frame, events, anchors: [] }
    }
    // Closed: 4-8 KB, 1 % a tail of 16-100 KB; a `large` one ~100 KB. The draws are the same
    // whichever it is, so making a frame large changes nothing else.
    const tail = r() < 0.01
    const u = r()
    const target = this.large.has(i) ? 100_000 : tail ? Math.floor(16_000 * Math.pow(100_000 / 16_000, u)) : 4000 + Math.floor(u * 4000)
    const nEvents = 3 + Math.floor(r() * 4)
    const events = []
    const eventSummaries = []
    // Roughly: two digest copies ~ 2 x 900 B, names/ids/anchors ~ 700 B, the rest in events.
    const perEvent = Math.max(60, Math.floor((target - 4000) / nEvents) - 200)
    for (let e = 0; e < nEvents; e++) {
      const call = e % 2 === 0
      const file = `src/${words(r, 1)}/${words(r, 1)}.ts`
      const payload = call
        ? { tool_name: ['Read', 'Edit', 'Grep'][e % 3], arguments: { file_path: file }, content: textOf(r, perEvent) }
        : { tool_name: 'Bash', status: r() < 0.9 ? 'ok' : 'error', exit_code: 0, result: textOf(r, perEvent) }
      events.push({ event_id: `${id}-e${e}`, frame_id: id, run_id: runId, seq: e + 1,
        event_type: call ? 'tool_call' : 'tool_result', payload, ts: (created + 5 + e * 10) * 1000 + 250 })
      // `file: undefined` on results is kept: the bench's bundles have always crossed napi so.
      eventSummaries.push({ seq: e + 1, type: call ? 'tool_call' : 'tool_result', tool: payload.tool_name,
        file: call ? file : undefined, summary: words(r, 5) })
    }
    const anchors = []
    const nAnchors = 1 + Math.floor(r() * 2)
    for (let a = 0; a < nAnchors; a++) {
      anchors.push({ anchor_id: `${id}-a${a}`, frame_id: id, project_id: this.project,
        type: ['DECISION', 'FACT', 'CONSTRAINT', 'RISK'][a % 4], text: words(r, 10),
        priority: Math.floor(r() * 10), created_at: created + 20, metadata: a % 2 ? { source: 'mcp:add_decision' } : {} })
    }
    const digest = {
      frameName: name,
      summary: words(r, 24),
      decisions: [words(r, 8), words(r, 6)],
      constraints: [words(r, 6)],
      filesTouched: eventSummaries.filter((s) => s.file).map((s) => s.file),
      activity: { totalEvents: nEvents, toolCalls: Math.ceil(nEvents / 2), durationSeconds: closedAt - created },
      events: eventSummaries,
    }
    frame.inputs = { goals: words(r, 10), constraints: [words(r, 4)] }
    frame.outputs = digest // StackMemory keeps the digest in `outputs` ...
    frame.digest_json = digest // ... and again in `digest_json`.
    frame.digest_text = `Frame: ${name}\nSummary: ${digest.summary}\nDecisions: ${digest.decisions.join('; ')}\n`
    frame.closed_at = closedAt
    return { frame, events, anchors }
  }
}

/** Frame `i`'s bundle with the irregularities of real rows, chosen by `i` alone (no draws). */
function vary(b, i, word) {
  const f = b.frame
  const closed = f.state === 'closed'
  // Frames cycle through: 0, 1 seconds; 2 milliseconds; 3 ISO strings; 4 created in seconds,
  // closed in milliseconds. Milliseconds get an odd part so they cannot be seconds times 1000.
  const style = i % 5
  const at = (s, st) => (st === 2 ? s * 1000 + (i % 1000) : st === 3 ? new Date(s * 1000).toISOString() : s)
  f.created_at = at(f.created_at, style === 4 ? 0 : style)
  if (f.closed_at != null) f.closed_at = at(f.closed_at, style === 4 ? 2 : style)
  // StackMemory's columns hold JSON text; the store accepts both.
  if (i % 6 === 0) f.inputs = JSON.stringify(f.inputs)
  f.digest_text = closed ? `${f.digest_text}Key word ${word}\n` : `active ${word}`
  b.events.forEach((e, k) => {
    if ((i + k) % 4 === 3) e.ts = new Date(e.ts).toISOString()
    if ((i + k) % 7 === 0) e.payload = JSON.stringify(e.payload)
  })
  // Out of seq order: the store puts events in seq order.
  if (closed && b.events.length > 2 && i % 3 === 0) [b.events[0], b.events[1]] = [b.events[1], b.events[0]]
  b.anchors.forEach((a, k) => {
    if ((i + k) % 4 === 3) a.created_at = new Date(a.created_at * 1000).toISOString()
  })
  return b
}

/**
 * `n` bundles with `variety` on, and the sets the tests check against. `large` closed frames of
 * ~100 KB are spread evenly (on subtask slots, which are always closed).
 */
function genBundles(n, { seed = 1, idPrefix = 'g', large = 4, baseSeconds = Math.floor(Date.now() / 1000) - 30 * DAY, projectId } = {}) {
  const at = new Set()
  const every = Math.max(1, Math.floor(n / (large + 1)))
  for (let k = 1; k <= large; k++) {
    let i = k * every
    while (i % FAMILY === 0 || at.has(i)) i++
    if (i < n) at.add(i)
  }
  const gen = new Gen({ seed, prefix: idPrefix, base: baseSeconds, project: projectId, variety: true, large: at })
  const bundles = gen.range(0, n)
  const active = new Set()
  const closed = new Set()
  const large_ = new Set()
  const digestWord = new Map()
  bundles.forEach((b, i) => {
    const id = b.frame.frame_id
    ;(b.frame.state === 'closed' ? closed : active).add(id)
    if (at.has(i)) large_.add(id)
    digestWord.set(id, gen.digestWord(i))
  })
  return { bundles, active, closed, large: large_, digestWord }
}

/**
 * The text PostgreSQL's tsvector is built from: mirrors the Rust `Bundle::search_text` (the frame
 * model) and the clipping of its parts in the cold tier's upsert (`MAX_NAME_TEXT`,
 * `MAX_PART_TEXT`). The bench's COPY + tsvector ceiling feeds it to `to_tsvector`.
 */
function searchText(b) {
  const collect = (v, out) => {
    if (out.s.length > 64 * 1024) return
    if (typeof v === 'string') out.s += v + '\n'
    else if (Array.isArray(v)) v.forEach((x) => collect(x, out))
    else if (v && typeof v === 'object') Object.values(v).forEach((x) => collect(x, out))
  }
  const ev = { s: '' }
  for (const e of b.events ?? []) if (e.payload !== undefined) collect(e.payload, ev)
  const clip = (s, n) => (s.length > n ? s.slice(0, n) : s)
  return {
    name: clip(b.frame.name ?? '', 8 * 1024),
    digest: clip(b.frame.digest_text ?? '', 128 * 1024),
    anchors: clip((b.anchors ?? []).map((a) => a.text).filter((t) => typeof t === 'string').join('\n'), 128 * 1024),
    events: clip(ev.s, 128 * 1024),
  }
}

/** What the Rust normaliser (`normalize_bundle`) makes of a bundle: an independent JS mirror, so
 * the tests check the hot tier against something other than itself. */
function normalized(b) {
  const c = JSON.parse(JSON.stringify(b))
  const parse = (o, k) => {
    if (typeof o[k] === 'string') o[k] = JSON.parse(o[k])
  }
  const secs = (o, k) => {
    if (typeof o[k] === 'string') o[k] = Math.floor(Date.parse(o[k]) / 1000)
  }
  for (const k of ['inputs', 'outputs', 'digest_json']) parse(c.frame, k)
  secs(c.frame, 'created_at')
  secs(c.frame, 'closed_at')
  c.events = (c.events ?? []).map((e) => {
    parse(e, 'payload')
    if (typeof e.ts === 'string') e.ts = Date.parse(e.ts)
    return e
  })
  c.events.sort((x, y) => (x.seq ?? Infinity) - (y.seq ?? Infinity))
  c.anchors = (c.anchors ?? []).map((a) => {
    secs(a, 'created_at')
    parse(a, 'metadata')
    return a
  })
  return c
}

/** A small hand-made bundle (no children), for tests that need exact control over one frame. */
function simpleBundle(id, o = {}) {
  const now = Math.floor(Date.now() / 1000)
  const state = o.state ?? 'closed'
  const frame = {
    frame_id: id,
    run_id: 'run-' + id,
    project_id: 'proj-simple',
    depth: o.parent ? 1 : 0,
    type: 'task',
    name: o.name ?? `simple frame ${id}`,
    state,
    inputs: { goals: 'g' },
    outputs: { summary: 's' },
    digest_text: o.digest ?? `digest of ${id}`,
    digest_json: {},
  }
  if (o.parent) frame.parent_frame_id = o.parent
  if (o.createdAt !== null) frame.created_at = o.createdAt ?? now - 10 * DAY
  if (o.closedAt !== null && state === 'closed') frame.closed_at = o.closedAt ?? now - 9 * DAY
  return {
    frame,
    events: [
      { event_id: id + '-e1', frame_id: id, run_id: 'run-' + id, seq: 1, event_type: 'tool_call', payload: { content: 'hello ' + id }, ts: now * 1000 },
    ],
    anchors: [{ anchor_id: id + '-a1', frame_id: id, project_id: '', type: 'FACT', text: 'fact of ' + id, priority: 1, created_at: now, metadata: {} }],
  }
}

module.exports = { Gen, genBundles, normalized, rng, searchText, simpleBundle }
