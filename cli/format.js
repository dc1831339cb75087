'use strict'
// Human output of the storage commands: a plain text table and one printer per report
// (`out` writes one line). The `--json` form is the report itself.

function fmtBytes(n) {
  if (n < 1024) return `${n} B`
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KB`
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MB`
  return `${(n / 1024 ** 3).toFixed(2)} GB`
}

function table(rows) {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => String(r[c]).length)))
  return rows.map((r) => r.map((v, c) => String(v).padEnd(widths[c])).join('  ').trimEnd()).join('\n')
}

function backendLine(name, b) {
  if (!b.configured) return `${name}: not configured`
  const at = b.url ? ` at ${b.url}` : ''
  if (!b.reachable) return `${name}: UNREACHABLE (${b.error || 'no answer'})${at}`
  const lat = b.latencyUs != null ? `, ${(b.latencyUs / 1000).toFixed(2)} ms` : ''
  return `${name}: ok${b.version ? ` (${b.version}${lat})` : lat}${at}`
}

function printStatus(s, out) {
  const t = s.tiers
  out(`database: ${s.dbPath} (tier schema v${s.schemaVersion}, ${s.mode})`)
  out(
    table([
      ['tier', 'frames', 'bytes'],
      ['hot (sqlite)', t.hot.frames, fmtBytes(t.hot.bytes)],
      ['warm (redis)', t.warm.frames, fmtBytes(t.warm.bytes)],
      ['cold (postgres)', t.cold.frames, fmtBytes(t.cold.bytes)],
    ]),
  )
  out(backendLine('redis', s.backends.redis))
  out(backendLine('postgres', s.backends.postgres))
  if (s.backends.postgres.reachable && s.backends.postgres.compressionRatio) {
    out(`archive compression: ${Number(s.backends.postgres.compressionRatio).toFixed(2)}x`)
  }
  out(`journal backlog: ${s.journalBacklog}`)
  for (const h of s.heldBack) out(`held back: ${h.frames} frame(s): ${h.reason}`)
  out(`hot hit ratio: ${(s.hotHitRatio * 100).toFixed(1)}%`)
}

function printMigrate(r, out) {
  out(`${r.dryRun ? 'would move' : 'moved'} ${r.moved.length} frame(s) to ${r.toTier} in ${r.durationMs.toFixed(0)} ms` + (r.runId ? ` (run ${r.runId}${r.cancelled ? ', cancelled' : ''})` : ''))
  if (r.bytesBefore) out(`bytes: ${fmtBytes(r.bytesBefore)} -> ${fmtBytes(r.bytesAfter)} compressed`)
  for (const h of r.heldBack) out(`held back ${h.frameId}: ${h.reason}`)
  if (r.skippedCount) {
    const reasons = {}
    for (const s of r.skipped) reasons[s.reason] = (reasons[s.reason] || 0) + 1
    out(`skipped ${r.skippedCount}: ${Object.entries(reasons).map(([k, v]) => `${v} ${k}`).join('; ')}`)
  }
  for (const f of r.failed) out(`FAILED ${f.frameId} [${f.code}]: ${f.error}`)
}

function printSearch(v, out) {
  if (!v.results.length) out('no results')
  else out(table([['frame', 'tier', 'score', 'name'], ...v.results.map((h) => [h.frameId, h.tier, h.score.toFixed(3), h.name || ''])]))
}

function printExplain(e, out) {
  out(`${e.frameId}: ${e.tier}${e.pinned ? ', pinned' : ''}${e.active ? ', active' : ''}, ${fmtBytes(e.sizeBytes)}`)
  if (e.access) out(`reads: ${e.access.count}, last ${new Date(e.access.lastMs).toISOString()}, ${e.access.ratePerH.toFixed(2)}/h`)
  out(`pattern: ${JSON.stringify(e.pattern.pattern)} (confidence ${e.pattern.confidence.toFixed(2)})`)
  out(`score: ${Object.entries(e.score).map(([k, v]) => `${k} ${Number(v).toFixed(2)}`).join(', ')}`)
  for (const d of e.lastDecisions) out(`decision (cycle ${d.cycle}): ${d.from} -> ${d.to}: ${d.reason}`)
  out(`next: ${e.expectedNext}`)
}

function printPin(p, out) {
  out(`${p.frameId}: ${p.pinned ? 'pinned' : 'not pinned'} (${p.pinnedFrames} pinned, ${fmtBytes(p.pinnedBytes)} of ${fmtBytes(p.maxPinnedBytes)})`)
}

function printCycle(c, out) {
  const counts = Object.entries(c.counts).filter(([, v]) => v).map(([k, v]) => `${v} ${k}`).join(', ')
  out(`cycle ${c.cycle}${c.dryRun ? ' (dry run: nothing moved)' : ''}: ${counts || 'no decisions'}`)
  for (const d of c.decisions) out(`${d.frameId}: ${d.from} -> ${d.to}: ${d.reason} (confidence ${d.confidence.toFixed(2)})`)
}

function printCompact(v, out) {
  out(Object.entries(v).map(([k, x]) => `${k}: ${JSON.stringify(x)}`).join('\n'))
}

function printTrained(t, out) {
  out(`dictionary ${t.id} for ${t.projectId}: ${t.size} bytes from ${t.samples} frames; held-out ratio ${t.ratio.toFixed(2)}x ` +
    `vs ${t.plainRatio.toFixed(2)}x plain zstd (${(t.ratio / t.plainRatio).toFixed(2)}x); ${t.adopted ? 'adopted' : 'not adopted (gain below 1.1x; --force adopts it)'}`)
}

function printSimulations(reports, out) {
  for (const r of reports) {
    out(`trace ${r.trace}: ${r.reads} reads of ${r.frames} frames, hot capacity ${r.hotCapacityFrames ?? '-'} frames`)
    out(table([['policy', 'hot hit %', 'byte hit %', 'migrations/1000 reads', 'gap to optimum (pts)'],
      ...r.policies.map((p) => [p.name, (p.hotHitRatio * 100).toFixed(1), (p.byteHitRatio * 100).toFixed(1), p.migrationsPer1000Reads.toFixed(0), p.gapToOptimumPts.toFixed(1)])]))
    out('')
  }
}

const us = (v) => (v >= 1000 ? `${(v / 1000).toFixed(2)} ms` : `${v.toFixed(1)} µs`)

function printStats({ status, stats }, out) {
  printStatus(status, out)
  out(`since open (${(stats.uptimeMs / 1000).toFixed(1)} s; recent: last ${stats.recentWindowSeconds} s):`)
  if (!stats.operations.length) out('no operations yet')
  else {
    out(table([['op', 'tier', 'count', 'p50', 'p90', 'p99', 'p99.9', 'max', 'recent p99'],
      ...stats.operations.map((o) => [o.op, o.tier, String(o.count), us(o.sinceOpen.p50Us), us(o.sinceOpen.p90Us), us(o.sinceOpen.p99Us),
        us(o.sinceOpen.p999Us), us(o.sinceOpen.maxUs), o.recent.count ? us(o.recent.p99Us) : '-'])]))
  }
  const h = stats.hits
  if (h.reads) out(`hits: ${['hot', 'warm', 'cold', 'miss'].map((t) => `${t} ${(h[t].ratio * 100).toFixed(1)}%`).join(', ')} of ${h.reads} reads`)
  for (const [hop, c] of Object.entries(stats.moves)) out(`moves ${hop}: ${c.moved} moved, ${c.failed} failed, ${c.heldBack} held back, ${c.skipped} skipped`)
  if (stats.compression.ratio) out(`compression of moved frames: ${stats.compression.ratio.toFixed(2)}x`)
  for (const d of stats.compression.dictionaries) {
    if (d.id === null) out(`dictionary for ${d.projectId}: none yet (${d.gathering} frames sampled)`)
    else out(`dictionary for ${d.projectId}: ${d.id}, ${d.size} bytes, ${d.ratio.toFixed(2)}x vs ${d.plainRatio.toFixed(2)}x plain` + (d.frames ? `, ${d.liveRatio.toFixed(2)}x on ${d.frames} frames since` : ''))
  }
  for (const [kind, m] of Object.entries(stats.errors)) {
    const e = Object.entries(m)
    if (e.length) out(`errors (${kind}): ${e.map(([c, n]) => `${c} ${n}`).join(', ')}`)
  }
  out(`backends: redis ${stats.backends.redis}, postgres ${stats.backends.postgres}`)
}

function printPlan(p, out) {
  out(`would move ${p.frames} frame(s), ${fmtBytes(p.bytes)}, to ${p.toTier}` + (p.estimatedSeconds == null ? ' (no rate measured yet for an estimate)' : ` in about ${p.estimatedSeconds.toFixed(0)} s`))
  const hops = Object.entries(p.hops)
  if (hops.length) out(table([['hop', 'frames', 'bytes'], ...hops.map(([h, v]) => [h, String(v.frames), fmtBytes(v.bytes)])]))
  const projects = Object.entries(p.projects)
  if (projects.length) out(table([['project', 'frames', 'bytes'], ...projects.map(([h, v]) => [h, String(v.frames), fmtBytes(v.bytes)])]))
  for (const [why, n] of Object.entries(p.skipped)) out(`skipped ${n}: ${why}`)
}

function printRun(r, out) {
  out(`${r.runId} (${r.kind}): ${r.state}${r.active ? ', running in this process' : ''}`)
  out(`done ${r.done} / ${r.total}, skipped ${r.skipped}, failed ${r.failed}, ${fmtBytes(r.bytes)}`)
  if (r.error) out(`error: ${r.error}`)
  if (r.state !== 'done' && !r.active) out(`continue with: stackmemory-storage resume ${r.runId}`)
}

function printRuns(runs, out) {
  if (!runs.length) return out('no runs')
  const when = (s) => new Date(s * 1000).toISOString().replace('.000Z', 'Z')
  out(table([['run', 'kind', 'state', 'done', 'total', 'failed', 'started'], ...runs.map((r) => [r.runId, r.kind, r.state, String(r.done), String(r.total), String(r.failed), when(r.createdAt)])]))
}

function printRollback(r, out) {
  out(`moved ${r.restored} frame(s) back` + (r.runId ? ` (run ${r.runId})` : ''))
  for (const x of r.refused) out(`refused ${x.frameId}: ${x.reason}`)
  for (const f of r.failed) out(`FAILED ${f.frameId} [${f.code}]: ${f.error}`)
}

function printVerify(r, out) {
  out(`checked ${r.checked} frame(s) in ${r.durationMs} ms: ${r.clean ? 'clean' : `${r.findings.length} finding(s)`}`)
  for (const u of r.unavailable) out(`not checked: ${u}`)
  for (const f of r.findings) {
    const fix = f.repaired ? ' (repaired)' : f.notRepaired ? ` (not repaired: ${f.notRepaired})` : ''
    out(`${f.kind} ${f.tier} copy of ${f.frameId}${f.detail ? `: ${f.detail}` : ''}${fix}`)
  }
}

module.exports = {
  printTrained,
  fmtBytes, table, printStatus, printMigrate, printSearch, printExplain, printPin, printCycle, printCompact, printSimulations,
  printPlan, printStats, printRun, printRuns, printRollback, printVerify,
}
