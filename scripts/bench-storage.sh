#!/usr/bin/env bash
# bench-storage.sh — the storage benchmark: the disk's own bandwidth and fdatasync latency
# measured by fio (sequential O_DIRECT writes of FLUSH bytes, fdatasync after each), then the
# log's durable append throughput and latency with the same flush size (ailurus storage bench),
# on the same directory. Prints figures, including `storage_append_vs_disk <ratio>`.
#
#   scripts/bench-storage.sh [DIR] [FLUSH_BYTES] [SECONDS]
#   defaults: DIR=build/bench-storage FLUSH_BYTES=1048576 SECONDS=10
# Environment: AILURUS_BIN (default build/release/ailurus), BATCH_BYTES (default 16384).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build/bench-storage}
flush=${2:-1048576}
secs=${3:-10}
bin=${AILURUS_BIN:-build/release/ailurus}
batch=${BATCH_BYTES:-16384}
[ -x "$bin" ] || make -j"$(nproc)" BUILD=release all >/dev/null
command -v fio >/dev/null || { echo "fio is not installed" >&2; exit 1; }
mkdir -p "$dir"
rm -f "$dir"/fio-disk*
echo "== storage benchmark: dir $dir, flush $flush bytes, $secs s each"
fio --name=fio-disk --directory="$dir" --ioengine=psync --direct=1 --rw=write --bs="$flush" \
    --fdatasync=1 --size=4g --runtime="$secs" --time_based=0 --output-format=json \
    >"$dir/fio.json"
rm -f "$dir"/fio-disk*
out=$("$bin" storage bench --dir "$dir" --flush-bytes "$flush" --seconds "$secs" \
    --batch-bytes "$batch")
echo "$out"
/usr/bin/python3 - "$dir/fio.json" "$out" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
j = d["jobs"][0]
w, s = j["write"], j["sync"]
disk_mbps = w["bw_bytes"] / 1e6
pct = s["lat_ns"].get("percentile", {})
sync_p50 = pct.get("50.000000", 0) / 1e3
sync_p99 = pct.get("99.000000", 0) / 1e3
wp = w["clat_ns"]["percentile"]
ours = dict(l.split() for l in sys.argv[2].splitlines() if len(l.split()) == 2)
mbps = float(ours["storage_append_MBps"])
p99 = float(ours["storage_append_p99_us"])
print(f"disk_write_MBps {disk_mbps:.1f}")
print(f"disk_write_p50_us {wp['50.000000']/1e3:.0f}")
print(f"disk_write_p99_us {wp['99.000000']/1e3:.0f}")
print(f"disk_fdatasync_p50_us {sync_p50:.0f}")
print(f"disk_fdatasync_p99_us {sync_p99:.0f}")
print(f"storage_append_vs_disk {mbps / disk_mbps:.3f}")
if sync_p99:
    print(f"storage_p99_vs_disk_fdatasync_p99 {p99 / sync_p99:.2f}")
PY
