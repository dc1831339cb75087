#!/usr/bin/env bash
# The long form of the property tests (issue 11, docs/RELIABILITY.md "Fuzzed input"): each
# target's properties run side by side for FUZZ_SECONDS (default 60) of wall time, batch after
# batch with fresh seeds, instead of their CI case counts. Prints the cases each property ran, its
# rate, and any failure with its shrunk input (its seed is saved under proptest-regressions/, to
# be committed with the fix). Needs the test PostgreSQL for the archive's search.
#   scripts/fuzz.sh                 every target, 60 s each
#   FUZZ_SECONDS=10 scripts/fuzz.sh codec_props
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-60}
export TEST_DATABASE_URL=${TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/test}
cargo=(nice -n 10 cargo test --release --target x86_64-unknown-linux-gnu --lib)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(model::codec_props model::normalize_props manager::config_props
  tiers::hot::search_props tiers::cold::search_props)

"${cargo[@]}" --no-run -q || exit 1
failed=0
for t in "${targets[@]}"; do
  echo "== $t: ${secs} s"
  out=$(FUZZ_SECONDS=$secs "${cargo[@]}" -q -- "$t" --show-output --test-threads=8 2>&1)
  rc=$?
  grep -E '^fuzz ' <<<"$out"
  if [ $rc -ne 0 ]; then
    failed=$((failed + 1))
    grep -E -A12 'panicked at' <<<"$out" | grep -v '^stack backtrace\|^note: '
  fi
  awk -v t="$t" '/^fuzz /{for(i=1;i<=NF;i++) if($(i+1)=="cases"){n+=$i}} END{printf "== %s: %d cases\n", t, n}' <<<"$out"
  grep -E '^test result' <<<"$out"
done
echo "fuzz: ${#targets[@]} targets, $failed failed"
[ $failed -eq 0 ]
