#!/usr/bin/env python3
"""bench_compare.py — A/B comparison of two broker binaries on one `ailurus bench` scenario.

Runs the scenario against binary A and binary B alternately (A B A B ...), each time on a fresh
`ailurus start` with a fresh data directory, and prints per run and as medians: MB/s, ack p99,
e2e p99.9 and the broker's CPU time per MB produced (utime + stime of the broker process from
/proc over the measured run, so a busy shared machine distorts it less than throughput does).
Used to measure each performance change against the build from before it (see BENCHMARKS.md):

  git worktree add /tmp/perf-base <commit> && make -C /tmp/perf-base -j2 all
  bench_compare.py --runs 5 --smp 1 /tmp/perf-base/build/release/ailurus \\
      build/release/ailurus -- --partitions 1 --producers 4 --max-inflight 32 \\
      --batch-bytes 65536 --duration 5

Everything after `--` goes to `ailurus bench` (the same bench binary, --bench-bin, drives both
brokers, default B). Data directories live under --dir (default /tmp/ailurus-cmp) and are
removed after each run.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_broker import Broker  # noqa: E402


def cpu_seconds(pid):
    """utime + stime of a process (all its threads) in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_once(broker_bin, bench_bin, root, smp, bench_args, extra, env=None):
    data = os.path.join(root, "data")
    shutil.rmtree(data, ignore_errors=True)
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        b = Broker(broker_bin, data, smp=smp, extra=extra).start()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    out = os.path.join(root, "run.json")
    try:
        c0 = cpu_seconds(b.proc.pid)
        t0 = time.monotonic()
        cmd = [bench_bin, "bench", "--brokers", b.addr, "--quiet", "--json", out] + bench_args
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
        wall = time.monotonic() - t0
        cpu = cpu_seconds(b.proc.pid) - c0
        if r.returncode != 0:
            sys.stderr.write(r.stdout.decode(errors="replace"))
        with open(out) as f:
            s = json.load(f)
    finally:
        b.stop()
        shutil.rmtree(data, ignore_errors=True)
    produced_mb = s["produced_records"] * s.get("record_size", 1024) / 1e6
    return {
        "mbps": s["mb_per_s"],
        "ack_p99": s.get("ack_latency_ms", {}).get("p99", 0.0),
        "e2e_p999": s.get("e2e_latency_ms", {}).get("p999", 0.0),
        # CPU over the whole bench process lifetime (warm-up included) per MB it produced.
        "cpu_ms_per_mb": 1000.0 * cpu / produced_mb if produced_mb else 0.0,
        "cpu_util": cpu / wall if wall else 0.0,
        "errors": s.get("errors", 0),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--smp", type=int, default=1)
    ap.add_argument("--dir", default="/tmp/ailurus-cmp")
    ap.add_argument("--bench-bin", default=None)
    ap.add_argument("--broker-arg", action="append", default=[],
                    help="extra argument for `ailurus start` (repeat)")
    ap.add_argument("--b-env", action="append", default=[],
                    help="NAME=VALUE in B's broker environment only (repeat), e.g. to A/B a "
                         "malloc tunable with one binary")
    ap.add_argument("bench_args", nargs=argparse.REMAINDER)
    o = ap.parse_args()
    args = [a for a in o.bench_args if a != "--"]
    bench_bin = o.bench_bin or o.b
    os.makedirs(o.dir, exist_ok=True)
    res = {"A": [], "B": []}
    try:
        for i in range(o.runs):
            benv = dict(kv.split("=", 1) for kv in o.b_env)
            for name, binary in (("A", o.a), ("B", o.b)):
                r = run_once(binary, bench_bin, o.dir, o.smp, args, o.broker_arg,
                             benv if name == "B" else None)
                res[name].append(r)
                print("run %d %s: %.1f MB/s ack_p99 %.1f ms e2e_p999 %.1f ms "
                      "cpu %.2f ms/MB util %.2f errors %d" % (
                          i, name, r["mbps"], r["ack_p99"], r["e2e_p999"], r["cpu_ms_per_mb"],
                          r["cpu_util"], r["errors"]), flush=True)
    finally:
        shutil.rmtree(o.dir, ignore_errors=True)
    for key in ("mbps", "ack_p99", "e2e_p999", "cpu_ms_per_mb", "cpu_util"):
        a = statistics.median(r[key] for r in res["A"])
        b = statistics.median(r[key] for r in res["B"])
        print("median %-14s A %8.2f  B %8.2f  B/A %.3f" % (key, a, b, b / a if a else 0.0))


if __name__ == "__main__":
    main()
