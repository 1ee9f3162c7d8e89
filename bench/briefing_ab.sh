#!/usr/bin/env bash
# A/B of robeing binaries under the briefing benchmark (docs/benchmarks.md,
# "Briefing"): runs `bench_briefing_10k_users` once per binary per round,
# alternating, with the binary the test spawns replaced between runs, so
# every binary meets the same test process, fakes and machine state.
#
# Needs a release build of the API tests (cargo test --release --test api
# --no-run; CARGO_TARGET_DIR is honoured) and PostgreSQL as for the tests.
#
# Usage: bench/briefing_ab.sh BINARY... (copies of target/release/robeing)
#        ROUNDS (default 3), USERS (default 5000), GMAIL (calls/s, 2000),
#        SLACK (posts/s, 1000).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { sed -n 2,12p "$0"; exit 2; }
TARGET="${CARGO_TARGET_DIR:-target}"
SPAWNED="$TARGET/release/robeing"
TESTS=$(ls -t "$TARGET"/release/deps/api-* 2>/dev/null | grep -v '\.d$' | head -1)
[ -x "$TESTS" ] || { echo "no release API test binary: cargo test --release --test api --no-run" >&2; exit 2; }
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"
ORIGINAL=$(mktemp); cp "$SPAWNED" "$ORIGINAL"
trap 'cp "$ORIGINAL" "$SPAWNED"; rm -f "$ORIGINAL"' EXIT
for round in $(seq 1 "${ROUNDS:-3}"); do
  for bin in "$@"; do
    cp "$bin" "$SPAWNED"
    line=$(BENCH_RUNS="${USERS:-5000}:${GMAIL:-2000}:${SLACK:-1000}" "$TESTS" bench_briefing --ignored --nocapture 2>&1 |
      grep "BENCH briefing" || echo "run failed")
    echo "$(basename "$bin") round=$round $(echo "$line" |
      grep -oE 'total_wall=[0-9.]+s|wall/floor=[0-9.]+|cpu_per_briefing=[0-9.]+ms|peak_rss=[0-9]+MB|run failed' | tr '\n' ' ')"
  done
done
