#!/bin/bash
# bench-extents.sh — is a durable write into fallocated (ext4 "unwritten") space slower than
# into written space on this disk? fio, O_DIRECT + O_DSYNC sequential writes (io_uring) into
# (a) falloc: a fallocated file (unwritten extents: each write converts extents in the journal),
# (b) written: a file written with zeros first (fio --overwrite=1), (c) grow: a growing file
# (no preallocation), at 4/16/64 KiB and 1/2 writes in flight. Prints one line per case:
# case, size, depth, IOPS, completion latency p50 and p99 (ms). The cases run interleaved,
# ROUNDS times (default 2), as the disk's speed moves within minutes on a shared machine.
# Usage: scripts/bench-extents.sh [DIR] (default /tmp/ailurus-extents; put it on the broker's
# data file system). SECS (default 6) per case. Measured in BENCHMARKS.md (session 5, H3).
set -eu
dir=${1:-/tmp/ailurus-extents}/data
secs=${SECS:-6}
rounds=${ROUNDS:-2}
command -v fio >/dev/null || { echo "fio is not installed" >&2; exit 1; }
mkdir -p "$dir"
for round in $(seq 1 "$rounds"); do
for bs in 4k 16k 64k; do
for qd in 1 2; do
for c in falloc written grow; do
    rm -f "$dir"/f*
    case $c in
        falloc) extra="--fallocate=native" ;;
        written) extra="--fallocate=none --overwrite=1" ;;
        grow) extra="--fallocate=none" ;;
    esac
    # shellcheck disable=SC2086
    fio --name=f --directory="$dir" --ioengine=io_uring --iodepth="$qd" --direct=1 --sync=dsync \
        --rw=write --bs="$bs" --size=256m --runtime="$secs" --time_based=0 $extra \
        --output-format=json >"$dir/../o.json" 2>/dev/null
    /usr/bin/python3 - "$dir/../o.json" "$c" "$bs" "$qd" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))['jobs'][0]['write']
p = j['clat_ns']['percentile']
print("%-8s %4s qd%s iops %7.1f p50 %6.2f p99 %6.2f ms" % (
    sys.argv[2], sys.argv[3], sys.argv[4], j['iops'], p['50.000000'] / 1e6, p['99.000000'] / 1e6),
    flush=True)
PY
done; done; done; done
rm -rf "$(dirname "$dir")"
