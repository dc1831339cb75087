'use strict'
// The peer of issue 12: the program a StackMemory user would write instead of this addon, in plain
// JavaScript over the same libraries (better-sqlite3, node-redis, pg) with gzip (StackMemory's own
// compression today), batched per statement / pipeline. It moves the same frames through the same
// hops on its own copy of the SQLite file, its own Redis key prefix and its own PostgreSQL schema,
// with a tsvector over the same text ours indexes. See bench/peer/README.md.

const zlib = require('node:zlib')
const Database = require('better-sqlite3')
const { searchText } = require('../../testkit/frames')
const { connectRedis, connectPg, flushPrefix, dropSchemas } = require('../clients')

const BATCH = 500 // frames per statement / pipeline / transaction (hot → warm, cold → hot)
const BATCH_TIER = 1000 // warm → cold only flips a column and deletes keys: larger batches
const TTL_S = 86400 // the warm copy's TTL, as ours (24 h)

const now = () => Number(process.hrtime.bigint()) / 1e6 // ms

// StackMemory's JSON columns, parsed on read (bench/run.js's sqliteReader parses the same ones).
const JSON_COLS = { frames: ['inputs', 'outputs', 'digest_json'], events: ['payload'], anchors: ['metadata'] }
function parseCols(row, cols) {
  for (const c of cols) if (typeof row[c] === 'string') row[c] = JSON.parse(row[c])
  return row
}
/** A bytea value as pg gives it: a Buffer in text mode (hex, parsed by pg-types). Not binary
 * results: pg 8 hands a binary bytea of a *named* statement back as a mis-decoded string. */
function bytea(v) {
  if (!Buffer.isBuffer(v)) throw new Error(`peer: bytea came back as ${typeof v}, not a Buffer`)
  return v
}
// PostgreSQL text refuses NUL; the payload (bytea) keeps it.
const pgText = (s) => (typeof s === 'string' ? s.replace(/\0/g, '') : s)

/** The archive table: the metadata columns ours keeps, the gzip payload, the tsvector, and the
 * same indexes as ours' archive (GIN on the tsvector, project, age, run). */
const DDL = (s) => `
  CREATE SCHEMA IF NOT EXISTS "${s}";
  CREATE TABLE "${s}".frames (
    frame_id TEXT PRIMARY KEY, run_id TEXT, project_id TEXT, parent_id TEXT, frame_type TEXT, name TEXT,
    state TEXT, created_at BIGINT, closed_at BIGINT, archived_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    size_bytes BIGINT, compressed_size BIGINT, tier SMALLINT NOT NULL, payload BYTEA NOT NULL, search TSVECTOR);
  CREATE INDEX ON "${s}".frames USING GIN (search);
  CREATE INDEX ON "${s}".frames (project_id);
  CREATE INDEX ON "${s}".frames (created_at);
  CREATE INDEX ON "${s}".frames (run_id);`

const ROW_PARAMS = 17
/** A multi-row INSERT .. ON CONFLICT of `n` rows, the tsvector computed from each row's own text
 * parameters with the same four weights ours uses. */
function insertSql(s, n) {
  const rows = []
  for (let r = 0; r < n; r++) {
    const p = (k) => `$${r * ROW_PARAMS + k}`
    rows.push(`(${p(1)}, ${p(2)}, ${p(3)}, ${p(4)}, ${p(5)}, ${p(6)}, ${p(7)}, ${p(8)}::int8, ${p(9)}::int8, ${p(10)}::int8, ${p(11)}::int8, ${p(12)}::int2, ${p(13)}::bytea, ` +
      `setweight(to_tsvector('english', ${p(14)}::text), 'A') || setweight(to_tsvector('english', ${p(15)}::text), 'B') || ` +
      `setweight(to_tsvector('english', ${p(16)}::text), 'C') || setweight(to_tsvector('english', ${p(17)}::text), 'D'))`)
  }
  return `INSERT INTO "${s}".frames (frame_id, run_id, project_id, parent_id, frame_type, name, state, created_at, closed_at, ` +
    `size_bytes, compressed_size, tier, payload, search) VALUES ${rows.join(', ')} ` +
    'ON CONFLICT (frame_id) DO UPDATE SET run_id = EXCLUDED.run_id, project_id = EXCLUDED.project_id, parent_id = EXCLUDED.parent_id, ' +
    'frame_type = EXCLUDED.frame_type, name = EXCLUDED.name, state = EXCLUDED.state, created_at = EXCLUDED.created_at, ' +
    'closed_at = EXCLUDED.closed_at, archived_at = now(), size_bytes = EXCLUDED.size_bytes, compressed_size = EXCLUDED.compressed_size, ' +
    'tier = EXCLUDED.tier, payload = EXCLUDED.payload, search = EXCLUDED.search'
}

class Peer {
  /** `dbPath`: the peer's own copy of the hot file; `prefix`/`schema`: its own Redis keys and
   * PostgreSQL schema. */
  static async open({ dbPath, prefix, schema }) {
    const p = new Peer()
    p.prefix = prefix
    p.schema = schema
    // Opened as StackMemory opens its file.
    p.db = new Database(dbPath)
    p.db.pragma('journal_mode = WAL')
    p.db.pragma('synchronous = NORMAL')
    p.db.pragma('foreign_keys = ON')
    // The copy carries our addon's bookkeeping triggers (tier_*); the peer has none of them, only
    // StackMemory's own (frames_fts). Its own tier marker is a column of its own.
    for (const { name } of p.db.prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'tier\\_%' ESCAPE '\\'").all()) {
      p.db.exec(`DROP TRIGGER "${name}"`)
    }
    p.db.exec("ALTER TABLE frames ADD COLUMN peer_tier TEXT NOT NULL DEFAULT 'hot'; CREATE INDEX idx_frames_peer_tier ON frames(peer_tier)")
    p.redis = await connectRedis()
    p.pg = await connectPg()
    await p.pg.query(DDL(schema))
    p.prepare()
    return p
  }

  prepare() {
    const db = this.db
    this.q = {
      frame: db.prepare('SELECT frame_id, run_id, project_id, parent_frame_id, depth, type, name, state, inputs, outputs, digest_text, digest_json, created_at, closed_at, retention_policy FROM frames WHERE frame_id = ?'),
      events: db.prepare('SELECT event_id, frame_id, run_id, seq, event_type, payload, ts FROM events WHERE frame_id = ? ORDER BY seq, rowid'),
      anchors: db.prepare('SELECT anchor_id, frame_id, project_id, type, text, priority, created_at, metadata FROM anchors WHERE frame_id = ? ORDER BY rowid'),
      inTier: db.prepare('SELECT frame_id FROM frames WHERE peer_tier = ? AND state = ? ORDER BY rowid').pluck(),
      delEvents: db.prepare('DELETE FROM events WHERE frame_id = ?'),
      delAnchors: db.prepare('DELETE FROM anchors WHERE frame_id = ?'),
      stub: db.prepare("UPDATE frames SET inputs = '{}', outputs = '{}', digest_text = NULL, digest_json = '{}', peer_tier = 'warm' WHERE frame_id = ?"),
      setTier: db.prepare('UPDATE frames SET peer_tier = ? WHERE frame_id = ?'),
      restore: db.prepare("UPDATE frames SET inputs = ?, outputs = ?, digest_text = ?, digest_json = ?, peer_tier = 'hot' WHERE frame_id = ?"),
      insEvent: db.prepare('INSERT INTO events (event_id, frame_id, run_id, seq, event_type, payload, ts) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      insAnchor: db.prepare('INSERT INTO anchors (anchor_id, frame_id, project_id, type, text, priority, created_at, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
    }
    this.insertSqls = new Map()
  }

  key(id) {
    return `${this.prefix}frame:${id}`
  }

  /** The hot read: frame + events + anchors, JSON columns parsed (the same as bench/run.js's
   * `sqliteReader`, the hot ceiling). */
  readHot(id) {
    const f = this.q.frame.get(id)
    if (!f) return null
    return {
      frame: parseCols(f, JSON_COLS.frames),
      events: this.q.events.all(id).map((r) => parseCols(r, JSON_COLS.events)),
      anchors: this.q.anchors.all(id).map((r) => parseCols(r, JSON_COLS.anchors)),
    }
  }

  /** The warm read: GET + gunzip + JSON.parse. */
  async readWarm(id) {
    const b = await this.redis.sendCommand(['GET', this.key(id)])
    return b ? JSON.parse(zlib.gunzipSync(b).toString()) : null
  }

  /** The cold read: one prepared SELECT of the payload + gunzip + JSON.parse. */
  async readCold(id) {
    const r = await this.pg.query({ name: 'peer_get', text: `SELECT payload FROM "${this.schema}".frames WHERE frame_id = $1`, values: [id], rowMode: 'array' })
    return r.rows.length ? JSON.parse(zlib.gunzipSync(bytea(r.rows[0][0])).toString()) : null
  }

  /** hot → warm for every closed hot frame: per batch, read the rows, JSON + gzip, archive to
   * PostgreSQL (durable first), SET EX in Redis, then shrink the SQLite rows to stubs (one
   * transaction). Returns the count, wall time and each phase's time (ms). */
  async hotToWarm() {
    const ph = { select: 0, sqliteRead: 0, encode: 0, pg: 0, redis: 0, sqliteWrite: 0 }
    const t0 = now()
    let t = now()
    const ids = this.q.inTier.all('hot', 'closed')
    ph.select += now() - t
    let moved = 0
    let stored = 0
    let raw = 0
    for (let i = 0; i < ids.length; i += BATCH) {
      const batch = ids.slice(i, i + BATCH)
      t = now()
      const bundles = batch.map((id) => this.readHot(id))
      ph.sqliteRead += now() - t
      t = now()
      const params = []
      const gz = []
      for (const b of bundles) {
        const jsonText = JSON.stringify(b)
        const z = zlib.gzipSync(jsonText)
        gz.push(z)
        stored += z.length
        raw += Buffer.byteLength(jsonText)
        const f = b.frame
        const st = searchText(b)
        params.push(f.frame_id, f.run_id ?? '', f.project_id ?? '', f.parent_frame_id ?? null, f.type ?? '', pgText(f.name ?? ''),
          f.state ?? 'active', f.created_at ?? null, f.closed_at ?? null, Buffer.byteLength(jsonText), z.length, 2, z,
          pgText(st.name), pgText(st.digest), pgText(st.anchors), pgText(st.events))
      }
      ph.encode += now() - t
      t = now()
      await this.pg.query(this.insertSql(batch.length), params)
      ph.pg += now() - t
      t = now()
      const m = this.redis.multi()
      batch.forEach((id, k) => m.addCommand(['SET', this.key(id), gz[k], 'EX', String(TTL_S)]))
      await m.execAsPipeline()
      ph.redis += now() - t
      t = now()
      this.db.transaction(() => {
        for (const id of batch) {
          this.q.delEvents.run(id)
          this.q.delAnchors.run(id)
          this.q.stub.run(id)
        }
      })()
      ph.sqliteWrite += now() - t
      moved += batch.length
    }
    return { moved, ms: now() - t0, phases: ph, storedBytes: stored, rawBytes: raw }
  }

  insertSql(n) {
    let s = this.insertSqls.get(n)
    if (!s) this.insertSqls.set(n, (s = insertSql(this.schema, n)))
    return s
  }

  /** warm → cold for every warm frame: per batch, mark the archive rows cold, delete the Redis
   * copies, mark the SQLite rows (one transaction). */
  async warmToCold() {
    const ph = { select: 0, pg: 0, redis: 0, sqliteWrite: 0 }
    const t0 = now()
    let t = now()
    const ids = this.q.inTier.all('warm', 'closed')
    ph.select += now() - t
    let moved = 0
    for (let i = 0; i < ids.length; i += BATCH_TIER) {
      const batch = ids.slice(i, i + BATCH_TIER)
      t = now()
      await this.pg.query(`UPDATE "${this.schema}".frames SET tier = 3 WHERE frame_id = ANY($1::text[])`, [batch])
      ph.pg += now() - t
      t = now()
      await this.redis.sendCommand(['UNLINK', ...batch.map((id) => this.key(id))])
      ph.redis += now() - t
      t = now()
      this.db.transaction(() => { for (const id of batch) this.q.setTier.run('cold', id) })()
      ph.sqliteWrite += now() - t
      moved += batch.length
    }
    return { moved, ms: now() - t0, phases: ph }
  }

  /** cold → hot for every cold frame: per batch, SELECT the payloads, gunzip + JSON.parse, write
   * the body, events and anchors back (one transaction), then delete the archive rows. */
  async coldToHot() {
    const ph = { select: 0, pg: 0, decode: 0, sqliteWrite: 0, pgDelete: 0 }
    const t0 = now()
    let t = now()
    const ids = this.q.inTier.all('cold', 'closed')
    ph.select += now() - t
    let moved = 0
    for (let i = 0; i < ids.length; i += BATCH) {
      const batch = ids.slice(i, i + BATCH)
      t = now()
      const r = await this.pg.query({ text: `SELECT frame_id, payload FROM "${this.schema}".frames WHERE frame_id = ANY($1::text[])`, values: [batch], rowMode: 'array' })
      ph.pg += now() - t
      if (r.rows.length !== batch.length) throw new Error(`peer cold→hot: ${r.rows.length} of ${batch.length} archive rows found`)
      t = now()
      const bundles = r.rows.map((row) => JSON.parse(zlib.gunzipSync(bytea(row[1])).toString()))
      ph.decode += now() - t
      t = now()
      this.db.transaction(() => {
        for (const b of bundles) {
          const f = b.frame
          const id = f.frame_id
          this.q.restore.run(JSON.stringify(f.inputs), JSON.stringify(f.outputs), f.digest_text, JSON.stringify(f.digest_json), id)
          this.q.delEvents.run(id)
          this.q.delAnchors.run(id)
          for (const e of b.events) this.q.insEvent.run(e.event_id, id, e.run_id, e.seq, e.event_type, JSON.stringify(e.payload), e.ts)
          for (const a of b.anchors) this.q.insAnchor.run(a.anchor_id, id, a.project_id, a.type, a.text, a.priority, a.created_at, JSON.stringify(a.metadata))
        }
      })()
      ph.sqliteWrite += now() - t
      t = now()
      await this.pg.query(`DELETE FROM "${this.schema}".frames WHERE frame_id = ANY($1::text[])`, [batch])
      ph.pgDelete += now() - t
      moved += batch.length
    }
    return { moved, ms: now() - t0, phases: ph }
  }

  // ---- checks (untimed): the peer's result, so its timing is honest ----

  /** Every frame's bundle JSON as the hot read gives it (taken before the first hop). */
  snapshot() {
    const out = new Map()
    for (const id of this.db.prepare('SELECT frame_id FROM frames ORDER BY rowid').pluck().all()) out.set(id, JSON.stringify(this.readHot(id)))
    return out
  }

  /** After hot → warm: every closed frame's Redis copy and archive row decode to its bundle's
   * exact JSON, the SQLite rows are stubs; after warm → cold: no Redis copy, archive rows cold;
   * after cold → hot: every frame reads back byte-equal, no archive rows left. */
  async check(stage, expected, closedIds) {
    const fail = (msg) => { throw new Error(`peer check after ${stage}: ${msg}`) }
    const archived = await this.pg.query({ text: `SELECT frame_id, tier, payload FROM "${this.schema}".frames`, rowMode: 'array' })
    const arch = new Map(archived.rows.map((r) => [r[0], r]))
    if (stage === 'cold→hot') {
      if (arch.size) fail(`${arch.size} archive rows left`)
      const notHot = this.db.prepare("SELECT count(*) FROM frames WHERE peer_tier <> 'hot'").pluck().get()
      if (notHot) fail(`${notHot} frames not marked hot`)
      for (const [id, j] of expected) if (JSON.stringify(this.readHot(id)) !== j) fail(`frame ${id} differs from its original`)
      return
    }
    const tier = stage === 'hot→warm' ? 2 : 3
    if (arch.size !== closedIds.length) fail(`${arch.size} archive rows, expected ${closedIds.length}`)
    const left = this.db.prepare('SELECT (SELECT count(*) FROM events e JOIN frames f USING (frame_id) WHERE f.peer_tier <> \'hot\') + (SELECT count(*) FROM anchors a JOIN frames f USING (frame_id) WHERE f.peer_tier <> \'hot\')').pluck().get()
    if (left) fail(`${left} events/anchors rows left under stubs`)
    for (let i = 0; i < closedIds.length; i += 500) {
      const ids = closedIds.slice(i, i + 500)
      const got = await this.redis.sendCommand(['MGET', ...ids.map((id) => this.key(id))])
      ids.forEach((id, k) => {
        const row = arch.get(id)
        if (!row || Number(row[1]) !== tier) fail(`frame ${id}: archive tier ${row && row[1]}, expected ${tier}`)
        if (zlib.gunzipSync(bytea(row[2])).toString() !== expected.get(id)) fail(`frame ${id}: archive payload differs`)
        if (tier === 2 && (!got[k] || zlib.gunzipSync(got[k]).toString() !== expected.get(id))) fail(`frame ${id}: Redis copy missing or different`)
        if (tier === 3 && got[k]) fail(`frame ${id}: Redis copy left`)
      })
    }
  }

  async close() {
    this.db.close()
    await this.redis.close()
    await this.pg.end()
  }
}

/** Remove the peer's Redis keys and schema (bench/run.js's cleanup). */
async function cleanupPeer(redis, pg, prefix, schema) {
  const n = await flushPrefix(redis, prefix)
  await dropSchemas(pg, schema)
  return n
}

module.exports = { Peer, cleanupPeer, BATCH, BATCH_TIER }
