#!/usr/bin/env python3
"""bench_segment_roll_ab.py - A/B of two broker binaries flat out with frequent segment rolls
(session 7, ha: roll jobs). Alternates BASE and NEW (order swapped every round), each on a fresh
data directory with --log-segment-size $SEG (default 16M), running make bench's max_p1 scenario
(1 partition, 4 producers, 32 in flight, 64 KiB batches, 1 KiB records, acks=all) and printing
one JSON line per run (MB/s, client ack p99, the broker's Produce p99/p99.9 and durable-write
p99 from its histograms, CPU ms/MB, load) and medians per binary.

usage: bench_segment_roll_ab.py ROUNDS SECONDS BASE_BIN NEW_BIN   (env SEG, AB_DIR)"""
import os, shutil, subprocess, sys, time, json
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_broker as bb

rounds, secs = int(sys.argv[1]), float(sys.argv[2])
bins = {"base": sys.argv[3], "new": sys.argv[4]}
root = os.environ.get("AB_DIR", "build/bench-roll-ab")
os.makedirs(root, exist_ok=True)
res = []
for r in range(rounds):
    order = ["base", "new"] if r % 2 == 0 else ["new", "base"]
    for v in order:
        data = os.path.join(root, "data")
        shutil.rmtree(data, ignore_errors=True)
        b = bb.Broker(bins[v], data, extra=["--log-segment-size", os.environ.get("SEG", "16M")]).start()
        try:
            time.sleep(1.0)
            s, _ = bb.bench(bins[v], b.addr, os.path.join(root, "max.json"), "--topic", "max-p1",
                            "--partitions", 1, "--producers", 4, "--max-inflight", 32,
                            "--batch-bytes", 65536, "--record-size", 1024, "--acks", "all",
                            "--warmup", 1, "--duration", secs, broker=b)
            nlog = sum(1 for dp, dn, fn in os.walk(data) for f in fn if f.endswith(".log"))
            row = dict(v=v, round=r, mbps=s["mb_per_s"], ack_p99=s["ack_latency_ms"]["p99"],
                       prod_p99=s.get("broker_produce_ms", {}).get("p99"),
                       prod_p999=s.get("broker_produce_ms", {}).get("p999"),
                       write_p99=s.get("broker_write_ms", {}).get("p99"),
                       cpu=s["broker_cpu_ms_per_mb"], load=s["load_average"], segs=nlog)
            print(json.dumps(row), flush=True)
            res.append(row)
        finally:
            b.stop()
shutil.rmtree(os.path.join(root, "data"), ignore_errors=True)
import statistics as st
for v in ("base", "new"):
    rows = [x for x in res if x["v"] == v]
    for k in ("mbps", "ack_p99", "prod_p99", "prod_p999", "write_p99", "cpu"):
        vals = sorted(x[k] for x in rows if x[k] is not None)
        if vals:
            print("%s %s median %.2f min %.2f max %.2f" % (v, k, st.median(vals), vals[0], vals[-1]))
