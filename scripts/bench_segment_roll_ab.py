#!/usr/bin/env python3
"""bench_segment_roll_ab.py - A/B of two broker binaries flat out with frequent segment rolls
(session 7, ha: roll jobs). Alternates BASE and NEW (order swapped every round), each on a fresh
data directory with --log-segment-size $SEG (default 16M), running make bench's max_p1 scenario
(1 partition, 4 producers, 32 in flight, 64 KiB batches, 1 KiB records, acks=all) and printing
one JSON line per run (MB/s, client ack p99, the broker's Produce p99/p99.9 and durable-write
p99 from its histograms, CPU ms/MB, load; the broker's RSS and peak RSS at the end of the run,
the sealed segments not finished then (no .index file yet) and the clean shutdown's time) and
medians per binary.

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
            # Memory at the end of the run (now and peak), and the sealed segments not
            # finished yet (a .log without its .index; the active one has none either).
            rss = b.rss_kib() // 1024
            with open("/proc/%d/status" % b.proc.pid) as f:
                hwm = next((int(l.split()[1]) // 1024 for l in f if l.startswith("VmHWM:")), 0)
            files = [f for dp, dn, fn in os.walk(data) for f in fn]
            nlog = sum(1 for f in files if f.endswith(".log"))
            unfin = nlog - sum(1 for f in files if f.endswith(".index")) - 1
            t0 = time.monotonic()
            b.stop()
            stop_ms = (time.monotonic() - t0) * 1000.0
            row = dict(v=v, round=r, mbps=s["mb_per_s"], ack_p99=s["ack_latency_ms"]["p99"],
                       prod_p99=s.get("broker_produce_ms", {}).get("p99"),
                       prod_p999=s.get("broker_produce_ms", {}).get("p999"),
                       write_p99=s.get("broker_write_ms", {}).get("p99"),
                       cpu=s["broker_cpu_ms_per_mb"], load=s["load_average"], segs=nlog,
                       unfinished=unfin, rss_mb=rss, hwm_mb=hwm, stop_ms=round(stop_ms, 1))
            print(json.dumps(row), flush=True)
            res.append(row)
        finally:
            if b.proc:
                b.stop()
shutil.rmtree(os.path.join(root, "data"), ignore_errors=True)
import statistics as st
for v in ("base", "new"):
    rows = [x for x in res if x["v"] == v]
    for k in ("mbps", "ack_p99", "prod_p99", "prod_p999", "write_p99", "cpu", "unfinished",
              "rss_mb", "hwm_mb", "stop_ms"):
        vals = sorted(x[k] for x in rows if x[k] is not None)
        if vals:
            print("%s %s median %.2f min %.2f max %.2f" % (v, k, st.median(vals), vals[0], vals[-1]))
