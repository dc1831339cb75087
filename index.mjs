// ESM entry: the same module as `require('stackmemory-tiers')`.
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const tiers = require('./index.js')

export const { TierManager, simulate, sqliteLibrary, onLog } = tiers
export default tiers
