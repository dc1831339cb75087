'use strict'
// TierConfig from where StackMemory keeps its settings (`~/.stackmemory/config.json`, then
// REDIS_URL / DATABASE_URL), a plain TierConfig file for `--config`, and `maskSecrets` for every
// place a connection string may be shown.
//
// Order (first wins, field by field):
//   1. the file: `database.url` (StackMemory's PostgreSQL URL) becomes
//      `tiers.postgres.connectionString`; its `tiers` block, a TierConfig
//      (`{ dbPath?, tiers?, policies?, limits?, recordTrace? }`), is taken as given, and an explicit
//      `tiers.tiers.postgres.connectionString` there wins over `database.url`;
//   2. `REDIS_URL` / `DATABASE_URL` fill the connection strings the file left out;
//   3. nothing else: the addon's own defaults apply.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

function invalid(file, field, message) {
  const e = new Error(field ? `${file}: ${field}: ${message}` : `${file}: ${message}`)
  e.code = 'ERR_INVALID_CONFIG'
  return e
}

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v)
/** A string with something in it, else undefined (an empty value counts as not set). */
const present = (v) => (typeof v === 'string' && v.trim() !== '' ? v : undefined)

/** The JSON object in `file`; `{}` when the file does not exist and `missingOk`. */
function readJsonObject(file, missingOk) {
  let text
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (e) {
    if (missingOk && e.code === 'ENOENT') return {}
    throw invalid(file, null, `cannot read: ${e.message}`)
  }
  let value
  try {
    value = JSON.parse(text)
  } catch (e) {
    throw invalid(file, null, `not valid JSON: ${e.message}`)
  }
  if (!isObject(value)) throw invalid(file, null, 'must be a JSON object')
  return value
}

/** Checks the shape of a TierConfig's top level (at `prefix` in `file`); the addon checks the rest. */
function checkSections(file, obj, prefix) {
  for (const key of ['dbPath', 'recordTrace']) {
    if (obj[key] !== undefined && typeof obj[key] !== 'string') throw invalid(file, prefix + key, 'must be a string')
  }
  for (const key of ['tiers', 'policies', 'limits']) {
    if (obj[key] !== undefined && !isObject(obj[key])) throw invalid(file, prefix + key, 'must be an object')
  }
  if (isObject(obj.tiers)) {
    for (const key of ['sqlite', 'redis', 'postgres']) {
      const v = obj.tiers[key]
      if (v !== undefined && !isObject(v)) throw invalid(file, `${prefix}tiers.${key}`, 'must be an object')
    }
  }
}

/** Fills `tiers.<name>.connectionString` from `url` when the config has none. */
function fillUrl(config, name, url) {
  if (!present(url)) return
  const section = config.tiers[name] || {}
  if (present(section.connectionString)) return
  config.tiers[name] = { ...section, connectionString: url }
}

/**
 * Step 2 of the order: STACKMEMORY_REDIS_URL / STACKMEMORY_POSTGRES_URL, else REDIS_URL /
 * DATABASE_URL, fill what the config left out (in place). The environment keeps passwords out of `ps`.
 */
function fillFromEnv(config, env) {
  config.tiers = { ...(config.tiers || {}) }
  fillUrl(config, 'redis', present(env.STACKMEMORY_REDIS_URL) ? env.STACKMEMORY_REDIS_URL : env.REDIS_URL)
  fillUrl(config, 'postgres', present(env.STACKMEMORY_POSTGRES_URL) ? env.STACKMEMORY_POSTGRES_URL : env.DATABASE_URL)
  return config
}

/**
 * StackMemory's settings as a TierConfig for `TierManager.open`. `file` defaults to
 * `<home>/.stackmemory/config.json` (`home` defaults to the user's home directory); a missing file
 * is an empty one. Throws `ERR_INVALID_CONFIG` naming the file and the field.
 */
function loadStackMemoryConfig({ file, home, env = process.env } = {}) {
  const where = file || path.join(home || os.homedir(), '.stackmemory', 'config.json')
  const settings = readJsonObject(where, true)
  let config = {}
  if (settings.tiers !== undefined) {
    if (!isObject(settings.tiers)) throw invalid(where, 'tiers', 'must be an object')
    checkSections(where, settings.tiers, 'tiers.')
    config = structuredClone(settings.tiers)
  }
  if (settings.database !== undefined && settings.database !== null) {
    if (!isObject(settings.database)) throw invalid(where, 'database', 'must be an object')
    const url = settings.database.url
    if (url !== undefined && url !== null && typeof url !== 'string') throw invalid(where, 'database.url', 'must be a string')
    config.tiers = { ...(config.tiers || {}) }
    fillUrl(config, 'postgres', url)
  }
  return fillFromEnv(config, env)
}

/** A plain TierConfig JSON file (`--config FILE`), with REDIS_URL / DATABASE_URL filling the URLs it left out. */
function loadTierConfigFile(file, { env = process.env } = {}) {
  const config = readJsonObject(file, false)
  checkSections(file, config, '')
  return fillFromEnv(config, env)
}

// scheme://user:password@host → scheme://user:***@host. The password runs to the last `@` before
// whitespace or a quote, so a password holding `/`, `:` or `@` is masked whole (over-masking is
// the safe side). Also `password=...` (a query parameter or a key/value connection string).
const URL_PASSWORD = /\b([a-z][a-z0-9+.-]*:\/\/[^\s:@/'"`<>]*):[^\s'"`<>]*@/gi
const PASSWORD_PARAM = /\b(password=)[^\s&'"`<>]*/gi

/** `text` with the password of every URL in it replaced by `***`. */
function maskSecrets(text) {
  if (typeof text !== 'string') return text
  return text.replace(URL_PASSWORD, '$1:***@').replace(PASSWORD_PARAM, '$1***')
}

module.exports = { loadStackMemoryConfig, loadTierConfigFile, maskSecrets }
