// Types of cli/storage.js: the storage commands on commander (mounted, standalone, run).
import type { Command } from 'commander'

/** Overrides of where output goes and how a run ends (tests; `run` sets `exitCode` and `exit`). */
export interface StorageIO {
  /** One line of standard output. */
  stdout?(line: string): void
  /** One line of error output (URL passwords already masked). */
  stderr?(line: string): void
  /** An action finished with this code (0 ok, 1 failed). Default: `process.exitCode` when non-zero. */
  exitCode?(code: number): void
  /** Help or version (0) or a usage error (2). Default: `process.exit(code)`. */
  exit?(code: number): void
  /** Where REDIS_URL / DATABASE_URL are read. Default `process.env`. */
  env?: Record<string, string | undefined>
  /** The home directory of `.stackmemory/config.json`. Default `os.homedir()`. */
  home?: string
}

/** Adds `storage <command>` to a commander program (StackMemory's); returns the `storage` command. */
export function registerStorageCommands(program: Command, io?: StorageIO): Command

/** The standalone `stackmemory-storage` program (the same commands at its top level). */
export function createProgram(io?: StorageIO): Command

/** Runs `stackmemory-storage <argv...>` and resolves to the exit code: 0 ok, 1 failed, 2 usage. */
export function run(argv: string[], io?: StorageIO): Promise<number>
