'use strict'
// PostgreSQL binary COPY for the ceilings: the tuple encoding (pg has none for binary COPY), and
// COPY FROM STDIN / TO STDOUT over a pg client through pg-copy-streams.

const { finished, pipeline } = require('node:stream/promises')
const { Readable } = require('node:stream')
const { from: copyFrom, to: copyTo } = require('pg-copy-streams')

const COPY_HEADER = Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), Buffer.alloc(8)])
const COPY_TRAILER = Buffer.from([0xff, 0xff])
const CHUNK = 256 * 1024

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

/** A whole binary COPY stream (header, tuples, trailer) from rows of fields. */
function copyData(rows) {
  return Buffer.concat([COPY_HEADER, ...rows.map(copyTuple), COPY_TRAILER])
}

/** `COPY ... FROM STDIN` fed with `data`, in 256 KB CopyData messages. */
async function copyIn(client, sql, data) {
  const chunks = function* () {
    for (let o = 0; o < data.length; o += CHUNK) yield data.subarray(o, o + CHUNK)
  }
  await pipeline(Readable.from(chunks(), { objectMode: false }), client.query(copyFrom(sql)))
}

/** `COPY ... TO STDOUT`; resolves to the bytes received. Read in flowing mode: an async
 * iterator would leave chunks buffered and make pg-copy-streams pause and resume the socket. */
async function copyOut(client, sql) {
  let bytes = 0
  const s = client.query(copyTo(sql))
  s.on('data', (b) => {
    bytes += b.length
  })
  await finished(s)
  return bytes
}

module.exports = { copyData, copyIn, copyOut }
