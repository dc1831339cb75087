'use strict'
// A minimal PostgreSQL v3 wire-protocol client over `net` (trust/no-password auth only), for the
// raw-ceiling measurements and cleanup (no npm dependency): simple queries, a named prepared
// statement with binary results, COPY FROM STDIN and COPY TO STDOUT.

const net = require('net')

function msg(type, body) {
  const b = Buffer.allocUnsafe(5 + body.length)
  b[0] = type.charCodeAt(0)
  b.writeInt32BE(4 + body.length, 1)
  body.copy(b, 5)
  return b
}
const cstr = (s) => Buffer.from(s + '\0')

class Pg {
  static connect(url = 'postgres://postgres:postgres@127.0.0.1:5432/test') {
    const u = new URL(url)
    const user = decodeURIComponent(u.username || 'postgres')
    const database = u.pathname.slice(1) || user
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: u.hostname, port: Number(u.port || 5432) })
      sock.once('error', reject)
      sock.once('connect', () => {
        const pg = new Pg(sock)
        const params = Buffer.concat([cstr('user'), cstr(user), cstr('database'), cstr(database),
          cstr('application_name'), cstr('stackmemory-tiers-bench'), Buffer.from([0])])
        const start = Buffer.allocUnsafe(8)
        start.writeInt32BE(8 + params.length, 0)
        start.writeInt32BE(196608, 4)
        pg.#expect().then(() => resolve(pg), reject)
        sock.write(Buffer.concat([start, params]))
      })
    })
  }

  constructor(sock) {
    this.sock = sock
    sock.setNoDelay(true)
    this.buf = Buffer.alloc(0)
    this.off = 0
    this.pending = [] // { rows, resolve, reject, onCopyIn, onCopyData }
    sock.on('data', (d) => this.#onData(d))
    sock.on('error', (e) => { for (const p of this.pending.splice(0)) p.reject(e) })
  }

  /** Wait for the next ReadyForQuery, collecting DataRows. */
  #expect(extra = {}) {
    return new Promise((resolve, reject) => {
      this.pending.push({ rows: [], resolve, reject, err: null, ...extra })
    })
  }

  #onData(d) {
    this.buf = this.off < this.buf.length ? Buffer.concat([this.buf.subarray(this.off), d]) : d
    this.off = 0
    for (;;) {
      if (this.buf.length - this.off < 5) return
      const type = String.fromCharCode(this.buf[this.off])
      const len = this.buf.readInt32BE(this.off + 1)
      if (this.buf.length - this.off < 1 + len) return
      const body = this.buf.subarray(this.off + 5, this.off + 1 + len)
      this.off += 1 + len
      const p = this.pending[0]
      switch (type) {
        case 'R': {
          const code = body.readInt32BE(0)
          if (code !== 0 && p) p.err = new Error(`pg: auth method ${code} not supported (trust only)`)
          break
        }
        case 'D': {
          if (!p) break
          const n = body.readInt16BE(0)
          const row = []
          let o = 2
          for (let i = 0; i < n; i++) {
            const l = body.readInt32BE(o)
            o += 4
            if (l < 0) row.push(null)
            else {
              row.push(body.subarray(o, o + l))
              o += l
            }
          }
          p.rows.push(row)
          break
        }
        case 'E': {
          const fields = {}
          let o = 0
          while (o < body.length && body[o] !== 0) {
            const k = String.fromCharCode(body[o])
            const e = body.indexOf(0, o + 1)
            fields[k] = body.toString('utf8', o + 1, e)
            o = e + 1
          }
          if (p && !p.err) p.err = new Error(`pg: ${fields.M} (${fields.C})`)
          break
        }
        case 'G': // CopyInResponse
          if (p && p.onCopyIn) p.onCopyIn()
          else this.sock.write(msg('f', cstr('no copy data')))
          break
        case 'd': // CopyData (out)
          if (p && p.onCopyData) p.onCopyData(body)
          break
        case 'Z':
          this.pending.shift()
          if (p) {
            if (p.err) p.reject(p.err)
            else p.resolve(p.rows)
          }
          break
        default: // T, C, S, K, N, 1, 2, n, H, c, I ...
          break
      }
    }
  }

  /** Simple query (may hold several statements); resolves to DataRows as Buffers (text). */
  query(sql) {
    const p = this.#expect()
    this.sock.write(msg('Q', cstr(sql)))
    return p
  }

  /** Prepare a named statement once (parameters as text). */
  async prepare(name, sql) {
    const p = this.#expect()
    this.sock.write(Buffer.concat([
      msg('P', Buffer.concat([cstr(name), cstr(sql), Buffer.from([0, 0])])),
      msg('S', Buffer.alloc(0)),
    ]))
    await p
  }

  /** Execute a prepared statement with text parameters; results in binary format. */
  execute(name, params) {
    const parts = [cstr(''), cstr(name)]
    const h = Buffer.allocUnsafe(2)
    h.writeInt16BE(0) // all params text
    parts.push(h)
    const np = Buffer.allocUnsafe(2)
    np.writeInt16BE(params.length)
    parts.push(np)
    for (const v of params) {
      const b = Buffer.from(String(v))
      const l = Buffer.allocUnsafe(4)
      l.writeInt32BE(b.length)
      parts.push(l, b)
    }
    parts.push(Buffer.from([0, 1, 0, 1])) // one result format code: binary
    const p = this.#expect()
    this.sock.write(Buffer.concat([
      msg('B', Buffer.concat(parts)),
      msg('E', Buffer.concat([cstr(''), Buffer.from([0, 0, 0, 0])])),
      msg('S', Buffer.alloc(0)),
    ]))
    return p
  }

  /** `COPY ... FROM STDIN` fed with `data` (a Buffer, sent in 256 KB CopyData messages). */
  copyIn(sql, data) {
    const p = this.#expect({
      onCopyIn: () => {
        const CH = 256 * 1024
        for (let o = 0; o < data.length; o += CH) this.sock.write(msg('d', data.subarray(o, o + CH)))
        this.sock.write(msg('c', Buffer.alloc(0)))
      },
    })
    this.sock.write(msg('Q', cstr(sql)))
    return p
  }

  /** `COPY ... TO STDOUT`; resolves to the total bytes received. */
  async copyOut(sql) {
    let bytes = 0
    const p = this.#expect({ onCopyData: (b) => { bytes += b.length } })
    this.sock.write(msg('Q', cstr(sql)))
    await p
    return bytes
  }

  close() {
    this.sock.end(msg('X', Buffer.alloc(0)))
  }
}

// ---- binary COPY encoding -----------------------------------------------------------------

const COPY_HEADER = Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), Buffer.alloc(8)])
const COPY_TRAILER = Buffer.from([0xff, 0xff])

/** One binary COPY tuple. Each field: null | string (text) | Buffer (bytea) | {i8} | {i2}. */
function copyTuple(fields) {
  const parts = []
  const n = Buffer.allocUnsafe(2)
  n.writeInt16BE(fields.length)
  parts.push(n)
  for (const f of fields) {
    if (f === null || f === undefined) {
      parts.push(Buffer.from([0xff, 0xff, 0xff, 0xff]))
      continue
    }
    let b
    if (Buffer.isBuffer(f)) b = f
    else if (typeof f === 'string') b = Buffer.from(f.replace(/\0/g, ''))
    else if ('i8' in f) {
      b = Buffer.allocUnsafe(8)
      b.writeBigInt64BE(BigInt(f.i8))
    } else if ('i2' in f) {
      b = Buffer.allocUnsafe(2)
      b.writeInt16BE(f.i2)
    } else throw new Error('copyTuple: unknown field')
    const l = Buffer.allocUnsafe(4)
    l.writeInt32BE(b.length)
    parts.push(l, b)
  }
  return Buffer.concat(parts)
}

module.exports = { Pg, copyTuple, COPY_HEADER, COPY_TRAILER }
