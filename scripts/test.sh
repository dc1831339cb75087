#!/usr/bin/env bash
# Every test: the Rust core's `cargo test`, then the jest suite through the built addon.
# `npm test` runs this after `pretest` built the addon and started Redis and PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."

export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/test}"
export REDIS_TEST_URL="${REDIS_TEST_URL:-redis://127.0.0.1:6379}"
# Tests pass their URLs explicitly; a developer's own REDIS_URL/DATABASE_URL must not leak in.
unset REDIS_URL DATABASE_URL

echo "== cargo test (Rust core) =="
cargo test --lib --release -- --test-threads=2

echo "== jest (the addon through JS) =="
npx jest --runInBand "$@"
