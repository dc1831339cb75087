'use strict'
// Deterministic StackMemory-shaped frame bundles for the benchmarks.
//
// Shape (as StackMemory writes them): tasks (depth 0) with 0-4 closed subtasks (depth 1); ~20 % of
// tasks still active. An active frame is ~0.4 KB (small inputs, one short event or none). A closed
// frame is 4-8 KB of JSON: its digest is stored twice (`outputs` and `digest_json` hold the same
// object), the digest embeds a summary of the frame's events, and the events themselves carry tool
// calls and results; 1 % of closed frames are a tail of 16-100 KB (big tool results).
// `bundle(i)` depends only on (seed, i), so a large set can be generated chunk by chunk.

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

function textOf(r, bytes) {
  let s = ''
  while (s.length < bytes) s += words(r, 12) + (r() < 0.3 ? '\n' : '. ')
  return s.slice(0, bytes)
}

const hex = (r, n) => {
  let s = ''
  while (s.length < n) s += Math.floor(r() * 0x100000000).toString(16).padStart(8, '0')
  return s.slice(0, n)
}

/**
 * Frame `i` of a set. Frames come in families: a task at index `base`, then its subtasks; the
 * family layout is derived from `(seed, family)` so any index can be generated alone.
 */
class Gen {
  constructor({ seed = 7, prefix = 'b', project = 'git-github-com-acme-widget-service', base = Math.floor(Date.now() / 1000) - 40 * 86400 } = {}) {
    this.seed = seed
    this.prefix = prefix
    this.project = project
    this.base = base
  }

  /** Bundles [from, to) in parent-first order (a family never spans two calls' parent order issues:
   * a subtask's parent always has a smaller index, so storing chunks in order is valid). */
  range(from, to) {
    const out = []
    for (let i = from; i < to; i++) out.push(this.bundle(i))
    return out
  }

  // Families of 5 slots: slot 0 the task (active in 20 % of families), slots 1-4 closed subtasks.
  bundle(i) {
    const fam = Math.floor(i / 5)
    const slot = i % 5
    const rf = rng(this.seed * 1000003 + fam)
    const taskActive = rf() < 0.2
    const runId = `run-${hex(rf, 12)}`
    const taskId = `${this.prefix}-${fam * 5}`
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
    // Closed: 4-8 KB, 1 % a tail of 16-100 KB.
    const tail = r() < 0.01
    const target = tail ? Math.floor(16_000 * Math.pow(100_000 / 16_000, r())) : 4000 + Math.floor(r() * 4000)
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

/** The text PostgreSQL's tsvector is built from, as `Bundle::search_text` in src/frame.rs does. */
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

module.exports = { Gen, searchText }
