'use strict'
// A StackMemory-shaped program for the tests: its write patterns on its own better-sqlite3
// connection, as StackMemory v1.2's FrameManager does them (shapes from ../shared/STACKMEMORY.md;
// none of its code): create a frame, add events (any frame, closed and archived ones included; seq
// counted from the frame's rows in SQLite), close with a digest, add anchors, GC by retention.
// Plain JS so a child process can run it as well (`node stackmemory.js writer ...`).

const crypto = require('node:crypto')
const fs = require('node:fs')
const path = require('node:path')

const SCHEMA = fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'stackmemory-schema.sql'), 'utf8')

const uuid = () => crypto.randomUUID()
const nowS = () => Math.floor(Date.now() / 1000)

class StackMemory {
  /** `db`: a better-sqlite3 Database on the project's context.db. */
  constructor(db) {
    this.db = db
    db.pragma('journal_mode = WAL')
    db.pragma('synchronous = NORMAL')
    db.pragma('foreign_keys = ON')
    db.pragma('busy_timeout = 10000')
    const has = db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'frames'").get()
    if (!has) db.exec(SCHEMA)
    this.st = {
      insertFrame: db.prepare(`INSERT INTO frames (frame_id, run_id, project_id, parent_frame_id, depth, type, name, state, inputs, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, 'active', ?, ?)`),
      nextSeq: db.prepare('SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM events WHERE frame_id = ?'),
      insertEvent: db.prepare('INSERT INTO events (event_id, run_id, frame_id, seq, event_type, payload, ts) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      runOf: db.prepare('SELECT run_id FROM frames WHERE frame_id = ?'),
      close: db.prepare(`UPDATE frames SET state = 'closed', outputs = ?, digest_json = ?, digest_text = ?, closed_at = ? WHERE frame_id = ?`),
      insertAnchor: db.prepare('INSERT INTO anchors (anchor_id, frame_id, project_id, type, text, priority, created_at, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
      getFrame: db.prepare('SELECT * FROM frames WHERE frame_id = ?'),
      getEvents: db.prepare('SELECT * FROM events WHERE frame_id = ? ORDER BY seq LIMIT ?'),
      getAnchors: db.prepare('SELECT * FROM anchors WHERE frame_id = ? ORDER BY priority DESC, created_at ASC'),
    }
  }

  createFrame({ frameId = uuid(), runId = uuid(), projectId = 'cli-project', parent = null, depth = 0, type = 'task', name, inputs = {} }) {
    this.st.insertFrame.run(frameId, runId, projectId, parent, depth, type, name, JSON.stringify(inputs), nowS())
    return frameId
  }

  /** StackMemory's addEvent: accepts any frame id, closed or not. Returns the row written. */
  addEvent(frameId, type, payload) {
    const run = this.st.runOf.get(frameId)
    const row = { event_id: uuid(), run_id: run ? run.run_id : 'run', frame_id: frameId, seq: this.st.nextSeq.get(frameId).seq,
      event_type: type, payload: JSON.stringify(payload), ts: Date.now() }
    this.st.insertEvent.run(row.event_id, row.run_id, row.frame_id, row.seq, row.event_type, row.payload, row.ts)
    return row
  }

  /** closeFrame: the digest goes to outputs and digest_json, its text to digest_text. */
  closeFrame(frameId, digest) {
    const text = `Frame closed: ${digest.summary ?? ''}`
    this.st.close.run(JSON.stringify(digest), JSON.stringify(digest), text, nowS(), frameId)
    return { digest, text }
  }

  addAnchor(frameId, type, text, priority = 5) {
    const row = { anchor_id: uuid(), frame_id: frameId, project_id: '', type, text, priority, created_at: nowS(), metadata: '{}' }
    this.st.insertAnchor.run(row.anchor_id, row.frame_id, row.project_id, row.type, row.text, row.priority, row.created_at, row.metadata)
    return row
  }

  /** FrameManager's synchronous reads, as StackMemory does them (JSON columns parsed). */
  getFrame(frameId) {
    const r = this.st.getFrame.get(frameId)
    if (!r) return undefined
    for (const c of ['inputs', 'outputs', 'digest_json']) r[c] = JSON.parse(r[c] || '{}')
    return r
  }
  getFrameEvents(frameId, limit = 500) {
    return this.st.getEvents.all(frameId, limit).map((e) => ({ ...e, payload: JSON.parse(e.payload) }))
  }
  getFrameAnchors(frameId) {
    return this.st.getAnchors.all(frameId).map((a) => ({ ...a, metadata: JSON.parse(a.metadata || '{}') }))
  }
}

/**
 * A seeded writer over `ids`: each `step()` appends an event, rewrites a digest or adds an anchor,
 * as StackMemory does, and `written` keeps every row it wrote.
 */
function writer(sm, ids, seed) {
  let s = seed >>> 0
  const rand = () => ((s = (s * 1103515245 + 12345) >>> 0) / 4294967296)
  const written = { events: [], digests: {}, anchors: [] }
  let n = 0
  const step = () => {
    const id = ids[Math.floor(rand() * ids.length)]
    const k = rand()
    if (k < 0.75) written.events.push(sm.addEvent(id, 'observation', { note: `late ${n} of ${id}`, n }))
    else if (k < 0.9) written.digests[id] = sm.closeFrame(id, { summary: `rewritten ${n}`, n }).digest
    else written.anchors.push(sm.addAnchor(id, 'FACT', `fact ${n} of ${id}`))
    n++
  }
  return { step, written }
}

/** Writes for `ms` in slices of a few ms, yielding to the event loop between them. */
async function writeWhile(sm, ids, ms, seed, pauseMs = 2) {
  const w = writer(sm, ids, seed)
  const until = Date.now() + ms
  while (Date.now() < until) {
    const slice = Date.now() + 3
    while (Date.now() < slice) w.step()
    await new Promise((r) => setTimeout(r, pauseMs))
  }
  return w.written
}

module.exports = { StackMemory, writer, writeWhile, SCHEMA }

if (require.main === module && process.argv[2] === 'writer') {
  const [dbPath, idsFile, ms, seed] = process.argv.slice(3)
  const Database = require('better-sqlite3')
  const sm = new StackMemory(new Database(dbPath))
  const w = writer(sm, JSON.parse(fs.readFileSync(idsFile, 'utf8')), Number(seed))
  const until = Date.now() + Number(ms)
  while (Date.now() < until) w.step()
  process.stdout.write(JSON.stringify(w.written))
}
