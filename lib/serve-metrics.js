'use strict'
// `TierManager#serveMetrics({ port, host })`: a scrape endpoint for Prometheus on node:http,
// answering `GET /metrics` with `metrics()` (503 once the manager is closed). Binds to 127.0.0.1
// unless told otherwise; `port: 0` picks a free port. Resolves to `{ port, url, close() }`.

const http = require('node:http')

function invalid(message) {
  const e = new Error(message)
  e.code = 'ERR_INVALID_ARGUMENT'
  return e
}

function serveMetrics(manager, options) {
  if (options === undefined || options === null || typeof options !== 'object') throw invalid('options: must be an object such as { port: 9464 }')
  const { port, host = '127.0.0.1', ...rest } = options
  if (Object.keys(rest).length > 0) throw invalid(`options.${Object.keys(rest)[0]}: unknown field (serveMetrics takes port and host)`)
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw invalid('options.port: must be an integer 0..65535')
  if (typeof host !== 'string' || !host) throw invalid('options.host: must be a non-empty string')
  const server = http.createServer((req, res) => {
    const url = (req.url || '').split('?')[0]
    if (req.method !== 'GET' || (url !== '/metrics' && url !== '/')) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found: GET /metrics\n')
      return
    }
    let body
    try {
      body = manager.metrics()
    } catch (e) {
      res.writeHead(503, { 'Content-Type': 'text/plain' }).end(`${e.code || 'ERR_STORAGE'}: ${e.message}\n`)
      return
    }
    res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' }).end(body)
  })
  return new Promise((resolve, reject) => {
    server.once('error', (e) => reject(Object.assign(e, { code: 'ERR_INVALID_ARGUMENT', message: `options.port: cannot listen on ${host}:${port}: ${e.message}` })))
    server.listen(port, host, () => {
      const bound = server.address().port
      resolve({
        port: bound,
        url: `http://${host}:${bound}/metrics`,
        close: () => new Promise((done) => server.close(() => done())),
      })
    })
  })
}

module.exports = { serveMetrics }
