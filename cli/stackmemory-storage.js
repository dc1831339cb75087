#!/usr/bin/env node
'use strict'
// The `stackmemory-storage` bin: the commander program of cli/storage.js (the same commands
// StackMemory mounts as `stackmemory storage ...`).
require('./storage.js')
  .run(process.argv.slice(2))
  .then((code) => {
    process.exitCode = code
  })
