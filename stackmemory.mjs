// ESM entry of `stackmemory-tiers/stackmemory`: the same module as its require() form.
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const sm = require('./stackmemory.js')

export const { attachStackMemory, registerStorageCommands, loadStackMemoryConfig } = sm
export default sm
