'use strict'
// Binds the addon to the host's SQLite library, the way sqlite-vec and cr-sqlite load: the addon
// carries no SQLite of its own, so better-sqlite3 loads this very `.node` file as an SQLite
// extension (`db.loadExtension(path, entryPoint)`), and from then on every connection the addon
// opens runs on that library. One library per process: a second one is refused by the addon.
//
// `prepareOpen(config)` takes `config.database` (StackMemory's own better-sqlite3 `Database`)
// out of the config, binds through it (or through a private in-memory Database of the
// better-sqlite3 this package resolves, when none is given) and returns the config the addon
// parses, with `dbPath` taken from the Database.

const fs = require('node:fs')
const path = require('node:path')

function fail(code, message) {
  const e = new Error(message)
  e.code = code
  return e
}

function loadBetterSqlite3() {
  try {
    return require('better-sqlite3')
  } catch (e) {
    throw fail('ERR_STORAGE', 'better-sqlite3 is a peer dependency of stackmemory-tiers and could not be loaded ' +
      `(npm install better-sqlite3@12): ${e.message}`)
  }
}

function looksLikeDatabase(db) {
  return db !== null && typeof db === 'object' && typeof db.loadExtension === 'function' &&
    typeof db.prepare === 'function' && typeof db.name === 'string'
}

/** Loads the addon into `db`'s SQLite library (idempotent for the same library). */
function loadInto(native, db) {
  const file = native.addonPath()
  if (!file) throw fail('ERR_STORAGE', 'cannot tell which file the addon was loaded from')
  try {
    db.loadExtension(file, native.extensionEntryPoint())
  } catch (e) {
    throw fail('ERR_STORAGE', `cannot bind the addon to this SQLite library: ${e.message}`)
  }
}

function realpath(p) {
  try {
    return fs.realpathSync(p)
  } catch {
    return path.resolve(p)
  }
}

function prepareOpen(native, config) {
  if (config === null || typeof config !== 'object' || Array.isArray(config) || !('database' in config)) {
    if (!native.sqliteLibrary()) {
      const Database = loadBetterSqlite3()
      const db = new Database(':memory:')
      try {
        loadInto(native, db)
      } finally {
        db.close()
      }
    }
    return config
  }
  const { database, ...rest } = config
  if (!looksLikeDatabase(database)) {
    throw fail('ERR_INVALID_CONFIG', 'invalid config: database: must be a better-sqlite3 Database (StackMemory\'s own)')
  }
  if (!database.open) throw fail('ERR_INVALID_CONFIG', 'invalid config: database: is closed')
  if (database.memory || database.name === '' || database.name === ':memory:') {
    throw fail('ERR_INVALID_CONFIG', 'invalid config: database: an in-memory database cannot be shared; open a file')
  }
  if (rest.dbPath !== undefined && rest.dbPath !== null) {
    if (typeof rest.dbPath !== 'string' || realpath(rest.dbPath) !== realpath(database.name)) {
      throw fail('ERR_INVALID_CONFIG', `invalid config: dbPath: ${JSON.stringify(rest.dbPath)} is not the file of database (${database.name})`)
    }
  }
  loadInto(native, database)
  return { ...rest, dbPath: database.name }
}

module.exports = { prepareOpen }
