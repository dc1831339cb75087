// Types of lib/stackmemory-config.js: TierConfig from StackMemory's config file and the environment.
import type { TierConfig } from '../index'

export interface StackMemoryConfigOptions {
  /** The settings file. Default `<home>/.stackmemory/config.json`. */
  file?: string
  /** The home directory the default file is under. Default `os.homedir()`. */
  home?: string
  /** Where `REDIS_URL` and `DATABASE_URL` are read. Default `process.env`. */
  env?: Record<string, string | undefined>
}

/**
 * The file's `database.url` → `tiers.postgres.connectionString`; its `tiers` block (a TierConfig)
 * as given; then `REDIS_URL` / `DATABASE_URL` fill the connection strings still missing. A
 * missing file is empty; a bad one throws an `Error` with `code: 'ERR_INVALID_CONFIG'` naming the
 * file and the field.
 */
export function loadStackMemoryConfig(options?: StackMemoryConfigOptions): TierConfig

/** A plain TierConfig JSON file, with `REDIS_URL` / `DATABASE_URL` filling the connection strings it left out. */
export function loadTierConfigFile(file: string, options?: { env?: Record<string, string | undefined> }): TierConfig

/** `text` with the password of every URL in it (and any `password=` value) replaced by `***`. */
export function maskSecrets(text: string): string
