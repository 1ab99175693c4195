#!/usr/bin/env bash
# test.sh — every test Ailurus has, in one command (`make test`). Under 30 minutes on 2 cores.
#
# Stages: codec freshness check (when ../shared is present), release build with -Werror and the
# unit tests, the same under ASan+UBSan, short libFuzzer runs of every fuzz target, and the
# integration suites that start the real binary and drive it with real Kafka clients.
# Every stage's output goes to build/test-logs/<stage>.log; a failing stage's tail is printed.
# The last line is the total: "N passed, N failed".
#
# Environment: FUZZ_SECONDS (per target, default 20), AL_TEST_SEED (replay a seed),
# SKIP_ASAN=1, SKIP_FUZZ=1, SKIP_INTEGRATION=1 (for quick local runs; CI runs everything).
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
JOBS=$(nproc)
LOGS=build/test-logs
rm -rf "$LOGS" build/tmp
mkdir -p "$LOGS" build/tmp
export AL_TEST_TMP="$PWD/build/tmp"

total_pass=0
total_fail=0
failed_stages=()

# add_counts LOG: adds the "N passed, N failed" lines (unit programs) and pytest summaries.
add_counts() {
    local p f
    p=$(grep -Eo '^[0-9]+ passed, [0-9]+ failed' "$1" | awk '{s+=$1} END{print s+0}')
    f=$(grep -Eo '^[0-9]+ passed, [0-9]+ failed' "$1" | awk '{s+=$3} END{print s+0}')
    total_pass=$((total_pass + p))
    total_fail=$((total_fail + f))
}

stage() { # stage NAME CMD... : runs CMD, logs it, reports
    local name=$1
    shift
    local t0=$SECONDS
    printf '== %-28s ' "$name"
    if "$@" >"$LOGS/$name.log" 2>&1; then
        echo "ok ($((SECONDS - t0))s)"
        return 0
    else
        echo "FAILED ($((SECONDS - t0))s) — log: $LOGS/$name.log"
        # What failed first (CI shows this output, not the log): the failing checks and crashes
        # with the lines before them (a unit program's seed, a sanitizer's report), then the tail.
        grep -n -B 25 -A 5 -E '^  FAIL |^!!! |^FAILED |Sanitizer|runtime error:|ASSERTION FAILED|PANIC|Assertion' \
            "$LOGS/$name.log" | head -n 150 | sed 's/^/   ! /'
        tail -n 40 "$LOGS/$name.log" | sed 's/^/   | /'
        failed_stages+=("$name")
        return 1
    fi
}

run_units() { # run_units BUILD
    local rc=0
    for t in build/$1/tests/test_*; do
        [ -x "$t" ] || continue
        echo "--- $t"
        timeout 600 "$t" || { echo "!!! $t failed (exit $?)"; rc=1; }
    done
    return $rc
}

# 1. The committed codec equals a fresh generation from the schemas (only where they are).
if [ -d ../shared/kafka-protocol/messages ]; then
    if stage codegen-check scripts/codegen-check.sh ../shared; then
        total_pass=$((total_pass + 1))
    else
        total_fail=$((total_fail + 1))
    fi
fi

# 2. Release build (-Werror) and unit tests.
if stage build-release make -j"$JOBS" BUILD=release all tests; then
    stage unit-release run_units release
    add_counts "$LOGS/unit-release.log"
else
    total_fail=$((total_fail + 1))
fi

# 3. ASan + UBSan build and unit tests.
if [ "${SKIP_ASAN:-0}" != 1 ]; then
    if stage build-asan make -j"$JOBS" BUILD=asan all tests; then
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
            stage unit-asan run_units asan
        add_counts "$LOGS/unit-asan.log"
    else
        total_fail=$((total_fail + 1))
    fi
fi

# 4. Short fuzz runs of every target (longer: make fuzz FUZZ_SECONDS=600).
if [ "${SKIP_FUZZ:-0}" != 1 ] && ls tests/fuzz/fuzz_*.c >/dev/null 2>&1; then
    if stage build-fuzz make -j"$JOBS" fuzzers; then
        if stage fuzz scripts/fuzz.sh "${FUZZ_SECONDS:-20}"; then :; fi
        add_counts "$LOGS/fuzz.log"
    else
        total_fail=$((total_fail + 1))
    fi
fi

# 5. Integration: the real binary, real clients, real sockets on 127.0.0.1.
if [ "${SKIP_INTEGRATION:-0}" != 1 ] && [ -x build/release/ailurus ] && \
    ls tests/integration/test_*.py >/dev/null 2>&1; then
    AILURUS_BIN="$PWD/build/release/ailurus" stage integration \
        /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration
    # Only pytest's own summary line counts (client libraries log lines like "host:port failed").
    summary=$(grep -E '^(=+ )?[0-9]+ (passed|failed|errors?|skipped)\b.*\bin [0-9.]+s' \
        "$LOGS/integration.log" | tail -1)
    p=$(echo "$summary" | grep -Eo '[0-9]+ passed' | awk '{print $1}')
    f=$(echo "$summary" | grep -Eo '[0-9]+ (failed|errors?)' | awk '{s+=$1} END{print s+0}')
    total_pass=$((total_pass + ${p:-0}))
    total_fail=$((total_fail + ${f:-0}))
    if [ ${#failed_stages[@]} -gt 0 ] && [ "${failed_stages[-1]}" = integration ] && \
        [ "${f:-0}" -eq 0 ]; then
        total_fail=$((total_fail + 1))
    fi
fi

echo
if [ ${#failed_stages[@]} -gt 0 ]; then
    echo "failed stages: ${failed_stages[*]}"
    [ "$total_fail" -eq 0 ] && total_fail=1
fi
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ] && [ ${#failed_stages[@]} -eq 0 ]
