// Hostile servers of the tests' own: a CA and certificates made with openssl, a TLS redis-server,
// a TCP listener that accepts and never answers (black hole), one that resets every connection,
// and one that answers PostgreSQL's SSLRequest with 'N' (a server without SSL).

import { execFileSync } from 'child_process'
import * as fs from 'fs'
import * as net from 'net'
import * as path from 'path'

import { redisCli, startRedisServer, OwnRedis } from './gen'

export interface Certs {
  dir: string
  ca: string
  cert: string
  key: string
  /** A second CA that signed nothing we serve. */
  otherCa: string
}

function openssl(args: string[], cwd: string) {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] })
}

/** A CA, a server certificate for 127.0.0.1 / localhost signed by it, and an unrelated CA. */
export function makeCerts(dir: string): Certs {
  fs.mkdirSync(dir, { recursive: true })
  const ca = (name: string) =>
    openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${name}`,
      '-keyout', `${name}.key`, '-out', `${name}.pem`], dir)
  ca('ca')
  ca('other-ca')
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', 'server.key', '-out', 'server.csr'], dir)
  fs.writeFileSync(path.join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n')
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2',
    '-extfile', 'ext.cnf', '-out', 'server.pem'], dir)
  return {
    dir,
    ca: path.join(dir, 'ca.pem'),
    cert: path.join(dir, 'server.pem'),
    key: path.join(dir, 'server.key'),
    otherCa: path.join(dir, 'other-ca.pem'),
  }
}

export interface TlsRedis extends OwnRedis {
  /** `rediss://127.0.0.1:<port>` */
  url: string
  cli(args: string[]): string
}

/** `redis-server --tls-port <free> --port 0` with the test's certificates; no client certificates. */
export async function startTlsRedis(c: Certs): Promise<TlsRedis> {
  const cliAt = (port: number) => (args: string[]) =>
    execFileSync('redis-cli', ['--tls', '--cacert', c.ca, '-h', '127.0.0.1', '-p', String(port), ...args], {
      encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'],
    })
  const own = await startRedisServer({
    args: (p) => ['--tls-port', String(p), '--port', '0', '--tls-cert-file', c.cert, '--tls-key-file', c.key,
      '--tls-ca-cert-file', c.ca, '--tls-auth-clients', 'no'],
    url: (p) => `rediss://127.0.0.1:${p}`,
    ping: (p) => cliAt(p)(['PING']),
  })
  return { ...own, cli: cliAt(own.port) }
}

export interface Listener {
  port: number
  /** Connections accepted so far. */
  accepted(): number
  /** Bytes received after the first message (for the SSLRequest listener: a plain-text startup). */
  bytesAfterFirst(): number
  close(): Promise<void>
}

type Behaviour = 'blackhole' | 'reset' | 'no-ssl'

/**
 * `blackhole`: accepts, reads, never answers. `reset`: accepts and resets at once (RST).
 * `no-ssl`: answers PostgreSQL's 8-byte SSLRequest with 'N', as a server without SSL does.
 */
export async function listener(kind: Behaviour): Promise<Listener> {
  const sockets = new Set<net.Socket>()
  let accepted = 0
  let after = 0
  const server = net.createServer((s) => {
    accepted++
    sockets.add(s)
    s.on('error', () => {})
    s.on('close', () => sockets.delete(s))
    if (kind === 'reset') {
      s.resetAndDestroy()
      return
    }
    let first = true
    let got = 0
    s.on('data', (d) => {
      if (kind !== 'no-ssl') return
      if (first) {
        got += d.length
        if (got >= 8) {
          first = false
          s.write('N')
          after += got - 8
        }
      } else {
        after += d.length
      }
    })
  })
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', () => res()))
  return {
    port: (server.address() as net.AddressInfo).port,
    accepted: () => accepted,
    bytesAfterFirst: () => after,
    close: () =>
      new Promise<void>((res) => {
        for (const s of sockets) s.destroy()
        server.close(() => res())
      }),
  }
}

export { redisCli }

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}
