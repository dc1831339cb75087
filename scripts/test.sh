#!/usr/bin/env bash
# Every test: format and lint checks, the Rust core's `cargo test`, a type check of the TypeScript
# tests, then the jest suites through the built addon. `npm test` runs this after `pretest` built
# the addon and started Redis and PostgreSQL; `npm run test:fast` runs it with --fast (Rust unit
# tests and jest without the slow crash and failure suites) for the edit loop.
#
# The Rust tests build in the napi build's target directory (same triple, same profile), so the
# dependencies compile once for both; only rusqlite differs (`bundled` for the tests, the host's
# library for the addon).
set -euo pipefail
cd "$(dirname "$0")/.."

FAST=0
if [ "${1:-}" = "--fast" ]; then
  FAST=1
  shift
fi

export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/test}"
export REDIS_TEST_URL="${REDIS_TEST_URL:-redis://127.0.0.1:6379}"
# Tests pass their URLs explicitly; a developer's own REDIS_URL/DATABASE_URL must not leak in.
unset REDIS_URL DATABASE_URL STACKMEMORY_REDIS_URL STACKMEMORY_POSTGRES_URL
TARGET="$(rustc -vV | sed -n 's/^host: //p')"

echo "== cargo fmt --check =="
cargo fmt --check

if [ "$FAST" = 0 ]; then
  echo "== cargo clippy (the core and its tests; then the shipped glue) =="
  cargo clippy --release --target "$TARGET" --all-targets -- -D warnings
  cargo clippy --release --target "$TARGET" --no-default-features --features node -- -D warnings
fi

echo "== cargo test (Rust core) =="
cargo test --release --target "$TARGET" --lib -- --test-threads=2

echo "== tsc --noEmit (the TypeScript tests) =="
npx tsc --noEmit -p tsconfig.json

echo "== jest (the addon through JS) =="
if [ "$FAST" = 1 ]; then
  npx jest --runInBand --testPathIgnorePatterns 'crash|failures|packaging' "$@"
else
  npx jest --runInBand "$@"
fi
