#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time and prints, per target, the
# executions and whether it found a crash.
#
#   fuzz/run.sh [seconds-per-target]   (default 120)
#   FUZZ_TARGETS="rtf doc_streams" fuzz/run.sh 60   (only those)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). On a stable toolchain
# RUSTC_BOOTSTRAP=1 lets cargo-fuzz use the nightly flags it needs. Set
# FUZZ_SANITIZER=address to build with AddressSanitizer (default: none; the
# code under test is safe Rust, and without it the fuzzer runs faster).
# Crashes are kept by libFuzzer in fuzz/artifacts/<target>/.
set -euo pipefail
seconds="${1:-120}"
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1 SQLX_OFFLINE=true
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
sanitizer="${FUZZ_SANITIZER:-none}"
targets=(event_parser command_parser interaction_parser signature gmail_batch doc_streams ppt_streams rtf hwp_section)
[ -n "${FUZZ_TARGETS:-}" ] && read -r -a targets <<< "$FUZZ_TARGETS"
cargo fuzz build -s "$sanitizer"
status=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "seeds/$t" "regressions/$t"
    log="$(mktemp)"
    if cargo fuzz run -s "$sanitizer" "$t" "corpus/$t" "seeds/$t" "regressions/$t" -- -max_total_time="$seconds" -max_len=65536 \
        -print_final_stats=1 >"$log" 2>&1; then
        verdict="no crash"
    else
        verdict="CRASH (see fuzz/artifacts/$t/)"
        status=1
    fi
    execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')"
    echo "$t: ${execs} execs in ${seconds}s, ${verdict}"
    [ "$status" = 0 ] || tail -n 40 "$log"
    rm -f "$log"
done
exit "$status"
