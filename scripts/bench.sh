#!/usr/bin/env bash
# bench.sh — every benchmark (`make bench`). Each prints its own figures; record them in
# BENCHMARKS.md with the command that produced them.
set -euo pipefail
cd "$(dirname "$0")/.."
make -j"$(nproc)" BUILD=release all >/dev/null
scripts/bench-storage.sh "${BENCH_DIR:-build/bench-storage}" "${FLUSH_BYTES:-1048576}" \
    "${BENCH_SECONDS:-10}"
