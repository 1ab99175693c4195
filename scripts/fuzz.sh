#!/usr/bin/env bash
# fuzz.sh SECONDS — runs every libFuzzer target in build/fuzz for SECONDS each, starting from its
# seed corpus (tests/fuzz/corpus/<target>/), working in build/fuzz-corpus/<target>/ so the
# committed corpus is not modified. A crash leaves its input in build/fuzz-artifacts/ and fails.
# Prints one "ok"/"FAIL" line per target and "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
pass=0
fail=0
mkdir -p build/fuzz-artifacts
for bin in build/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin")
    work=build/fuzz-corpus/$name
    mkdir -p "$work"
    seeds=tests/fuzz/corpus/$name
    [ -d "$seeds" ] || seeds=""
    if timeout $((secs + 60)) "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix=build/fuzz-artifacts/"$name"- -print_final_stats=1 "$work" $seeds \
        >"build/fuzz-artifacts/$name.log" 2>&1; then
        runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "build/fuzz-artifacts/$name.log" | grep -Eo '[0-9]+$')
        echo "  ok   $name (${runs:-?} runs in ${secs}s)"
        pass=$((pass + 1))
    else
        echo "  FAIL $name — see build/fuzz-artifacts/$name.log"
        tail -n 30 "build/fuzz-artifacts/$name.log"
        fail=$((fail + 1))
    fi
done
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
