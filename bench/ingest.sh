#!/usr/bin/env bash
# Ingest benchmark: distinct, correctly signed `message.im` events driven
# into `POST /slack/events` on loopback with wrk, against a release build
# and a real PostgreSQL on this machine. Reports throughput, p50/p99 ack
# latency and the robeing process's RSS for each concurrency; results go in
# docs/benchmarks.md ("Ingest").
#
# Needs: wrk (apt-get install wrk), python3, PostgreSQL reachable at
# $BENCH_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres), a
# release build (cargo build --release; CARGO_TARGET_DIR is honoured).
#
# Usage: bench/ingest.sh [duration_seconds] [concurrency ...]
#        default: 15 s at concurrency 16 and 64. A concurrency may repeat
#        (`15 64 64 64`): every run gets events of its own.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${1:-15}"; shift || true
CONCURRENCY=("${@:-16 64}"); CONCURRENCY=(${CONCURRENCY[@]})
THREADS="${BENCH_THREADS:-2}"
ADMIN_URL="${BENCH_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
TARGET="${CARGO_TARGET_DIR:-target}"
BIN="${BENCH_BIN:-$TARGET/release/robeing}"
SECRET="bench-signing-secret-$(date +%s)"
PORT="${BENCH_PORT:-38080}"; SLACK_PORT="${BENCH_SLACK_PORT:-38081}"
WORK="$(mktemp -d)"
DB="robeing_bench_$(date +%s)"
# Enough distinct events that a run never repeats one (30,000/s for the run).
PER_RUN="${BENCH_EVENTS:-$(( DURATION * 30000 ))}"

[ -x "$BIN" ] || { echo "no release build at $BIN: run cargo build --release" >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 2; }

# CPU time (clock ticks) of robeing and of its PostgreSQL backends: what one
# event costs, independent of whatever else the machine is running.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
pg_ticks() {
  local sum=0
  for pid in $(psql "$ADMIN_URL" -Atc "SELECT pid FROM pg_stat_activity WHERE datname = '$DB' AND pid <> pg_backend_pid()"); do
    sum=$(( sum + $(ticks "$pid") ))
  done
  echo "$sum"
}
HZ=$(getconf CLK_TCK)
# Events the workers have handled. Since 20261129000000 an event row is its
# own work item; a build from before keeps a `slack_event` job beside it.
handled() {
  psql "$DB_URL" -Atc "SELECT count(*) FROM slack_events WHERE state = 'done'" 2>/dev/null \
    || psql "$DB_URL" -Atc "SELECT count(*) FROM jobs WHERE kind = 'slack_event' AND state = 'done'"
}

cleanup() {
  [ -n "${APP_PID:-}" ] && kill "$APP_PID" 2>/dev/null && wait "$APP_PID" 2>/dev/null || true
  [ -n "${SLACK_PID:-}" ] && kill "$SLACK_PID" 2>/dev/null || true
  psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

psql "$ADMIN_URL" -qc "CREATE DATABASE $DB" >/dev/null
DB_URL="${ADMIN_URL%/*}/$DB"
python3 bench/fake_slack.py "$SLACK_PORT" & SLACK_PID=$!

env -i PATH="$PATH" DATABASE_URL="$DB_URL${BENCH_DB_PARAMS:+?$BENCH_DB_PARAMS}" ROBEING_LISTEN="127.0.0.1:$PORT" \
  SLACK_BOT_TOKEN="xoxb-bench" SLACK_SIGNING_SECRET="$SECRET" \
  SLACK_API_URL="http://127.0.0.1:$SLACK_PORT/api" LOG_FORMAT=json RUST_LOG=warn \
  NEWS_FEEDS="http://127.0.0.1:9/feed.xml" ${BENCH_WORKER_NICE:+JOB_WORKER_NICE=$BENCH_WORKER_NICE} \
  "$BIN" serve >"$WORK/robeing.log" 2>&1 & APP_PID=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null || { cat "$WORK/robeing.log"; exit 1; }

echo "robeing $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores, PostgreSQL $(psql "$ADMIN_URL" -Atc 'SHOW server_version'), wrk -t$THREADS, ${DURATION}s per run"
for C in "${CONCURRENCY[@]}"; do
  REQS="$WORK/requests-c$C"
  RUN=$(( ${RUN:-0} + 1 ))
  python3 bench/gen_events.py "$SECRET" "R${RUN}C${C}x" "$PER_RUN" "$REQS" "$THREADS" "127.0.0.1:$PORT"
  before=$(psql "$DB_URL" -Atc "SELECT count(*) FROM slack_events")
  handled0=$(handled)
  curl -fs "http://127.0.0.1:$PORT/metrics" > "$WORK/metrics0-c$C.txt" || true
  app0=$(ticks "$APP_PID"); pg0=$(pg_ticks); load0=$(cut -d' ' -f1 /proc/loadavg)
  # Sample RSS once a second during the run; keep the peak.
  ( peak=0; while kill -0 "$APP_PID" 2>/dev/null; do
      rss=$(awk '/VmRSS/ {print $2}' "/proc/$APP_PID/status" 2>/dev/null || echo 0)
      [ "${rss:-0}" -gt "$peak" ] && peak=$rss && echo "$peak" > "$WORK/rss-c$C"
      sleep 1; done ) & SAMPLER=$!
  BENCH_REQUESTS="$REQS" BENCH_THREADS="$THREADS" \
    wrk -t"$THREADS" -c"$C" -d"${DURATION}s" --latency -s bench/ingest.lua "http://127.0.0.1:$PORT" > "$WORK/wrk-c$C.txt"
  kill "$SAMPLER" 2>/dev/null || true
  curl -fs "http://127.0.0.1:$PORT/metrics" > "$WORK/metrics-c$C.txt" || true
  app1=$(ticks "$APP_PID"); pg1=$(pg_ticks); load1=$(cut -d' ' -f1 /proc/loadavg)
  after=$(psql "$DB_URL" -Atc "SELECT count(*) FROM slack_events")
  handled1=$(handled)
  echo
  echo "== concurrency $C =="
  grep -E "Requests/sec|Non-2xx|Socket errors|requests in" "$WORK/wrk-c$C.txt" || true
  grep -A4 "Latency Distribution" "$WORK/wrk-c$C.txt" | grep -E " 50%| 75%| 90%| 99%" || true
  echo "  events stored this run: $(( after - before ))"
  echo "  events handled by the workers meanwhile (DMs replied): $(( handled1 - handled0 ))"
  echo "  peak RSS: $(( $(cat "$WORK/rss-c$C" 2>/dev/null || echo 0) / 1024 )) MiB"
  stored=$(( after - before ))
  if [ "$stored" -gt 0 ]; then
    echo "  CPU per stored event: robeing $(( (app1 - app0) * 1000000 / HZ / stored )) µs, its PostgreSQL backends $(( (pg1 - pg0) * 1000000 / HZ / stored )) µs (workers included)"
  fi
  echo "  load average before/after: $load0 / $load1"
  # This run's group commits (the difference of two /metrics scrapes),
  # and how many of them stalled: over 3, 10 and 25 ms.
  awk '/^robeing_ingest_(commit_seconds|group_events)_(sum|count)|^robeing_ingest_commit_seconds_bucket\{le="0.0(03|1|25)"\}/ {
         v[$1] += (FILENAME == ARGV[1] ? -$2 : $2) }
       END { n = v["robeing_ingest_commit_seconds_count"]; b = "robeing_ingest_commit_seconds_bucket{le=\"";
         if (n > 0)
         printf "  group commits: %d, %.1f events each, mean %.2f ms; over 3 / 10 / 25 ms: %d / %d / %d\n", n,
           v["robeing_ingest_group_events_sum"] / n, 1000 * v["robeing_ingest_commit_seconds_sum"] / n,
           n - v[b "0.003\"}"], n - v[b "0.01\"}"], n - v[b "0.025\"}"] }' \
    "$WORK/metrics0-c$C.txt" "$WORK/metrics-c$C.txt" || true
  sleep 2
done
