// The npm tarball installs into a fresh project and loads with require() and with import.
import { execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

const root = path.join(__dirname, '..')

test('npm pack tarball installs into a fresh project and loads both ways', () => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'smt-pack-'))
  try {
    // --ignore-scripts: the addon is already built by `npm test`; pack only collects files.
    const packed = JSON.parse(execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work], { cwd: root, encoding: 'utf8' }))
    const tarball = path.join(work, packed[0].filename)
    const files: string[] = packed[0].files.map((f: { path: string }) => f.path)
    for (const f of ['index.js', 'index.mjs', 'index.d.ts', 'binding.js', 'lib/sqlite-host.js', 'lib/stackmemory-config.js', 'lib/stackmemory-config.d.ts', 'cli/stackmemory-storage.js', 'cli/storage.js', 'cli/storage.d.ts', 'cli/format.js', 'stackmemory-tiers.linux-x64-gnu.node']) {
      expect(files).toContain(f)
    }
    expect(files.some((f) => f.startsWith('src/') || f.startsWith('__test__/') || f.startsWith('target/'))).toBe(false)

    const app = path.join(work, 'consumer')
    fs.mkdirSync(app)
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }))
    // better-sqlite3 is a peer dependency (the addon runs on its SQLite library): the consumer has
    // its own; here a link to ours, already compiled, stands for it.
    const bs3 = path.dirname(require.resolve('better-sqlite3/package.json'))
    execFileSync('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball, bs3], { cwd: app, encoding: 'utf8' })

    const db = path.join(app, 'ctx.db')
    const bundle = { frame: { frame_id: 'pkg-1', run_id: 'r', project_id: 'p', type: 'task', name: 'packaged', state: 'closed', created_at: 1767960000 }, events: [], anchors: [] }
    const cjs = `
      const { TierManager } = require('stackmemory-tiers')
      TierManager.open({ dbPath: ${JSON.stringify(db)} }).then(async (m) => {
        await m.store(${JSON.stringify(bundle)})
        const b = await m.retrieve('pkg-1')
        await m.close()
        console.log('cjs', b.frame.name)
      })`
    expect(execFileSync(process.execPath, ['-e', cjs], { cwd: app, encoding: 'utf8' }).trim()).toBe('cjs packaged')

    const esm = `
      import { TierManager } from 'stackmemory-tiers'
      import tiers from 'stackmemory-tiers'
      const m = await TierManager.open({ dbPath: ${JSON.stringify(db)} })
      const b = await m.retrieve('pkg-1')
      await m.close()
      console.log('esm', b.frame.name, tiers.TierManager === TierManager)`
    expect(execFileSync(process.execPath, ['--input-type=module', '-e', esm], { cwd: app, encoding: 'utf8' }).trim()).toBe('esm packaged true')

    const bin = path.join(app, 'node_modules', '.bin', 'stackmemory-storage')
    const status = JSON.parse(execFileSync(bin, ['status', '--db', db, '--json'], { cwd: app, encoding: 'utf8', env: { ...process.env, REDIS_URL: '', DATABASE_URL: '' } }))
    expect(status.tiers.hot.frames).toBe(1)
    expect(status.mode).toBe('local-only')

    // As StackMemory (ESM, commander) mounts it: `stackmemory storage status --json`.
    const mount = `
      import { Command } from 'commander'
      import { registerStorageCommands } from 'stackmemory-tiers/cli'
      import { loadStackMemoryConfig } from 'stackmemory-tiers/stackmemory-config'
      if (typeof loadStackMemoryConfig !== 'function') throw new Error('no loadStackMemoryConfig')
      const program = new Command('stackmemory')
      registerStorageCommands(program)
      await program.parseAsync(['storage', 'status', '--json', '--db', ${JSON.stringify(db)}], { from: 'user' })`
    const mounted = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', mount], { cwd: app, encoding: 'utf8', env: { ...process.env, REDIS_URL: '', DATABASE_URL: '', HOME: app } }))
    expect([mounted.tiers.hot.frames, mounted.mode, mounted.dbPath]).toEqual([1, 'local-only', status.dbPath])
  } finally {
    fs.rmSync(work, { recursive: true, force: true })
  }
})
