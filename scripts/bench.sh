#!/usr/bin/env bash
# bench.sh — every benchmark (`make bench`), in one run on one disk, printing one line per
# figure, `<name> <value> <unit>` (ratios included). Record them in BENCHMARKS.md with the
# command that produced them. Ends within 10 minutes on a 2-core machine.
#
#   1. baselines: fio sequential O_DIRECT writes with fdatasync after each write, at the flush
#      sizes the broker uses (16 KiB .. 1 MiB = storage flush_bytes), with fdatasync latency
#      percentiles;
#   2. the storage benchmark (scripts/bench-storage.sh, the storage engineer's);
#   3. the broker: `ailurus start` on a fresh data dir and `ailurus bench` scenarios
#      (scripts/bench_broker.py).
#
# Environment: BENCH_DIR (default build/bench), BENCH_SECONDS (per broker scenario, default 10),
# FLUSH_BYTES (fio size used for produce_vs_disk, default 1048576), FIO_SECONDS (default 3),
# PRODUCE_PARTS (partitions of the 10k topic produced to, default 100).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${BENCH_DIR:-build/bench}
secs=${BENCH_SECONDS:-10}
flush=${FLUSH_BYTES:-1048576}
fio_secs=${FIO_SECONDS:-3}
make -j"$(nproc)" BUILD=release all >/dev/null
mkdir -p "$dir"
# Our own copy: other people's builds must not swap the binary under a running benchmark.
cp build/release/ailurus "$dir/ailurus"
bin="$dir/ailurus"
command -v fio >/dev/null || { echo "fio is not installed" >&2; exit 1; }
start=$(date +%s)
echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' \
    /proc/meminfo), kernel $(uname -r), disk of $(df -P "$dir" | awk 'NR==2 {print $1}')"

echo "== baselines: fio, O_DIRECT sequential writes + fdatasync, ${fio_secs}s per size"
for bs in 16384 65536 262144 1048576; do
    rm -f "$dir"/fio-disk*
    fio --name=fio-disk --directory="$dir" --ioengine=psync --direct=1 --rw=write --bs="$bs" \
        --fdatasync=1 --size=2g --runtime="$fio_secs" --time_based=0 --output-format=json \
        >"$dir/fio-$bs.json"
    rm -f "$dir"/fio-disk*
    /usr/bin/python3 - "$dir/fio-$bs.json" "$bs" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
bs = int(sys.argv[2]) // 1024
pct = j["sync"]["lat_ns"].get("percentile", {})
print(f"disk_write_{bs}k {j['write']['bw_bytes'] / 1e6:.2f} MB/s")
for q, n in (("50.000000", "p50"), ("99.000000", "p99"), ("99.900000", "p999")):
    print(f"disk_fdatasync_{bs}k_{n} {pct.get(q, 0) / 1e3:.0f} us")
PY
done
disk_mbps=$(/usr/bin/python3 -c "import json,sys; \
print(json.load(open(sys.argv[1]))['jobs'][0]['write']['bw_bytes']/1e6)" "$dir/fio-$flush.json")
fsync_p99=$(/usr/bin/python3 -c "import json,sys; \
print(json.load(open(sys.argv[1]))['jobs'][0]['sync']['lat_ns']['percentile']['99.000000']/1e3)" \
    "$dir/fio-16384.json")
echo "disk_baseline_for_ratios $disk_mbps MB/s (fio at $flush bytes)"

echo "== storage benchmark (scripts/bench-storage.sh)"
AILURUS_BIN="$bin" scripts/bench-storage.sh "$dir/storage" "$flush" 5

echo "== broker benchmarks (scripts/bench_broker.py), ${secs}s per scenario"
/usr/bin/python3 scripts/bench_broker.py "$bin" "$dir/broker" "$disk_mbps" "$fsync_p99" "$secs" \
    2>"$dir/broker-bench.log"
echo "== 3-node cluster, RF 3, vs single node (scripts/bench_cluster.py), ${secs}s per scenario"
/usr/bin/python3 scripts/bench_cluster.py "$bin" "$dir/cluster" "$secs" 2>"$dir/cluster-bench.log"
echo "bench_total_seconds $(( $(date +%s) - start )) s"
