'use strict'
// The warm tier's own Redis command for one read, captured with MONITOR while ours serves one
// retrieve, so the bench can replay it from JS (the Redis share of a warm read) without keeping a
// copy of the Rust side's Lua script or of its key layout.

const { connectRedis } = require('./clients')

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** The arguments of one MONITOR line: `<time> [<db> <addr>] "ARG" "ARG" ...` (sdscatrepr escapes). */
function monitorArgs(line) {
  const out = []
  for (const m of line.matchAll(/"((?:[^"\\]|\\.)*)"/g)) {
    out.push(m[1].replace(/\\(x[0-9a-fA-F]{2}|.)/g, (_, e) =>
      e[0] === 'x' && e.length === 3 ? String.fromCharCode(parseInt(e.slice(1), 16)) : ({ n: '\n', r: '\r', t: '\t', a: '\x07', b: '\b' })[e] ?? e))
  }
  return out
}

/**
 * Run `read(id)` (ours) once with a MONITOR connection open and return a function that sends, for
 * any other id, the same EVALSHA that read sent, with `id` replaced in its keys and arguments.
 * Its time arguments are replayed as captured: the same work for Redis.
 */
async function captureWarmRead(redis, id, read) {
  const mon = await connectRedis()
  const seen = []
  await mon.monitor((line) => seen.push(String(line)))
  try {
    await read(id)
    // MONITOR's feed can trail the reply ours got: wait a little for the line (other clients of
    // the shared server show up too, hence the filter on the id).
    for (let waited = 0; waited < 2000; waited += 10) {
      const cmd = seen.map(monitorArgs).find((a) => a[0]?.toUpperCase() === 'EVALSHA' && a.some((x) => x.includes(id)))
      if (cmd) return (other) => redis.sendCommand(cmd.map((a) => a.split(id).join(other)))
      await sleep(10)
    }
    throw new Error(`no EVALSHA for ${id} seen while the warm tier read it (${seen.length} commands seen)`)
  } finally {
    mon.destroy()
  }
}

module.exports = { captureWarmRead }
