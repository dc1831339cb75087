#!/usr/bin/env node
'use strict'
require('./storage.js')
  .run(process.argv.slice(2))
  .then((code) => {
    process.exitCode = code
  })
