'use strict'
// A minimal RESP2 client over `net`, for the raw-ceiling measurements and cleanup only (no npm
// dependency). Replies are parsed incrementally; bulk strings come back as Buffers.

const net = require('net')

function encodeCommand(args) {
  const parts = [Buffer.from(`*${args.length}\r\n`)]
  for (const a of args) {
    const b = Buffer.isBuffer(a) ? a : Buffer.from(String(a))
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'))
  }
  return Buffer.concat(parts)
}

/** Parse one reply at `off`; returns [value, nextOffset] or null when incomplete. */
function parse(buf, off) {
  if (off >= buf.length) return null
  const nl = buf.indexOf('\r\n', off)
  if (nl < 0) return null
  const type = buf[off]
  const line = buf.toString('latin1', off + 1, nl)
  switch (type) {
    case 0x2b: // +
      return [line, nl + 2]
    case 0x2d: // -
      return [new Error(line), nl + 2]
    case 0x3a: // :
      return [Number(line), nl + 2]
    case 0x24: { // $
      const n = Number(line)
      if (n < 0) return [null, nl + 2]
      if (buf.length < nl + 2 + n + 2) return null
      return [buf.subarray(nl + 2, nl + 2 + n), nl + 2 + n + 2]
    }
    case 0x2a: { // *
      const n = Number(line)
      if (n < 0) return [null, nl + 2]
      const out = []
      let p = nl + 2
      for (let i = 0; i < n; i++) {
        const r = parse(buf, p)
        if (!r) return null
        out.push(r[0])
        p = r[1]
      }
      return [out, p]
    }
    default:
      throw new Error(`RESP: unexpected type byte ${type} at ${off}`)
  }
}

class Resp {
  static connect(url = 'redis://127.0.0.1:6379') {
    const u = new URL(url)
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: u.hostname, port: Number(u.port || 6379) }, () => resolve(new Resp(sock)))
      sock.once('error', reject)
    })
  }

  constructor(sock) {
    this.sock = sock
    sock.setNoDelay(true)
    this.buf = Buffer.alloc(0)
    this.off = 0
    this.waiters = [] // { n, out, resolve, reject }
    sock.on('data', (d) => this.#onData(d))
    sock.on('error', (e) => { for (const w of this.waiters.splice(0)) w.reject(e) })
  }

  #onData(d) {
    this.buf = this.off < this.buf.length ? Buffer.concat([this.buf.subarray(this.off), d]) : d
    this.off = 0
    while (this.waiters.length) {
      const r = parse(this.buf, this.off)
      if (!r) break
      this.off = r[1]
      const w = this.waiters[0]
      if (w.out) w.out.push(r[0])
      else w.count++
      if (r[0] instanceof Error && !w.err) w.err = r[0]
      if (--w.n === 0) {
        this.waiters.shift()
        if (w.err) w.reject(w.err)
        else w.resolve(w.out ?? w.count)
      }
    }
  }

  /** One command; resolves to its reply. */
  cmd(...args) {
    return this.raw(encodeCommand(args), 1, true).then((r) => r[0])
  }

  /** Write pre-encoded bytes holding `n` commands; resolves to the replies (or their count). */
  raw(bytes, n, keep = false) {
    return new Promise((resolve, reject) => {
      this.waiters.push({ n, out: keep ? [] : null, count: 0, resolve, reject })
      this.sock.write(bytes)
    })
  }

  /** Delete every key matching `prefix*` (SCAN + UNLINK); returns how many. */
  async flushPrefix(prefix) {
    const pattern = prefix.replace(/[*?[\]\\]/g, (c) => '\\' + c) + '*'
    let cursor = '0'
    let n = 0
    do {
      const [next, keys] = await this.cmd('SCAN', cursor, 'MATCH', pattern, 'COUNT', 1000)
      cursor = next.toString()
      if (keys.length) n += await this.cmd('UNLINK', ...keys)
    } while (cursor !== '0')
    return n
  }

  close() {
    this.sock.end()
  }
}

module.exports = { Resp, encodeCommand }
