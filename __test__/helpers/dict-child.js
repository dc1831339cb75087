'use strict'
// A fresh process for dictionaries.test.ts (this process's dictionary registry starts empty, so
// every dictionary an envelope names must come from the SQLite file, Redis or PostgreSQL):
//   node dict-child.js <config.json> <expected.json>
// Reads every frame in <expected.json> ({ id: bundle }) without promoting it, then runs verify()
// (which decodes every Redis and PostgreSQL copy), and prints
// {"wrong": [...ids], "read": n, "findings": [...verify().findings], "dictionaries": [...]}.

const fs = require('fs')
const { TierManager } = require('../../index.js')

async function main() {
  const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))
  const expected = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'))
  const m = await TierManager.open(config)
  const wrong = []
  let read = 0
  for (const [id, want] of Object.entries(expected)) {
    try {
      const got = await m.retrieve(id, { promote: false })
      if (JSON.stringify(got) !== JSON.stringify(want)) wrong.push(id)
      read++
    } catch (e) {
      wrong.push(`${id}: ${e.code} ${e.message}`)
    }
  }
  const { findings } = await m.verify()
  const dictionaries = m.stats().compression.dictionaries
  await m.close()
  process.stdout.write(JSON.stringify({ wrong, read, findings, dictionaries }))
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack))
  process.exit(1)
})
