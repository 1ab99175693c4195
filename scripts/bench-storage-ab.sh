#!/bin/bash
# bench-storage-ab.sh — A/B of storage write-path variants with `ailurus storage bench` in open
# loop (latency of each batch from its scheduled time to durable), the variants alternating
# (A B C, then C B A, ...) so that the shared disk's drift hits them alike.
# Usage: scripts/bench-storage-ab.sh RATE BATCH_BYTES ROUNDS SECONDS 'NAME=BINARY [ARGS]'...
#   e.g. scripts/bench-storage-ab.sh 300 16384 12 5 \
#          "Z0=build/release/ailurus --prezero-bytes 0" \
#          "Z2=build/release/ailurus --prezero-bytes 2097152"
# Prints one line per run (the bench's own figures); summarize with the median per variant.
# DIR (default /tmp/ailurus-storage-ab) holds the logs (removed by each run).
set -u
rate=$1; bb=$2; rounds=$3; secs=$4; shift 4
dir=${DIR:-/tmp/ailurus-storage-ab}
mkdir -p "$dir"
echo "== rate=$rate bb=$bb $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
vs=("$@")
for i in $(seq 1 "$rounds"); do
    idx=$(seq 0 $((${#vs[@]} - 1)))
    [ $((i % 2)) = 0 ] && idx=$(seq $((${#vs[@]} - 1)) -1 0)
    for k in $idx; do
        v=${vs[$k]}; name=${v%%=*}; rest=${v#*=}; bin=${rest%% *}; args=""
        [ "$rest" != "$bin" ] && args=${rest#* }
        # shellcheck disable=SC2086
        r=$("$bin" storage bench --dir "$dir" --batch-bytes "$bb" --rate "$rate" \
            --seconds "$secs" $args | tr '\n' ' ')
        echo "$i $name $r"
    done
done
echo "== end $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
