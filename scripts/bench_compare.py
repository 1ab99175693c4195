#!/usr/bin/env python3
"""bench_compare.py — A/B comparison of two broker binaries on one `ailurus bench` scenario.

Runs the scenario against binary A and binary B alternately (A B A B ...), each time on a fresh
`ailurus start` with a fresh data directory, and prints per run and as medians: MB/s, ack p99,
e2e p99.9, the round trip p99 next to the broker's own Produce and durable-write p99 (its
Prometheus histograms over the run) and the broker's CPU time per MB produced (utime + stime of the broker process from
/proc over the measured run, so a busy shared machine distorts it less than throughput does).
Used to measure each performance change against the build from before it (see BENCHMARKS.md):

  git worktree add /tmp/perf-base <commit> && make -C /tmp/perf-base -j2 all
  bench_compare.py --runs 5 --smp 1 /tmp/perf-base/build/release/ailurus \\
      build/release/ailurus -- --partitions 1 --producers 4 --max-inflight 32 \\
      --batch-bytes 65536 --duration 5

With --fsync-probe S, each round first runs fio for S seconds in --dir (16 KiB O_DIRECT writes,
fdatasync after each, as `make bench` does) and reports each run's ack p99 also as a ratio to
that round's fdatasync p99 (`ack_p99_vs_fsync`), so latency is read against the disk's own
tail at the time.

With --before "ARGS", each run first drives the fresh broker with `ailurus bench ARGS
--topic before` (not measured), then measures the scenario on the same broker, as `make bench`
runs its open-loop scenarios after its flat-out ones: what a burst leaves behind (sealed
segments to finish, a full cache) is then part of what is measured.

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
from bench_broker import (PRODUCE_LAT, WRITE_LAT, Broker, cpu_seconds,  # noqa: E402
                          fsync_p99_ms, hist_count, hist_quantile, scrape_histograms)


def run_once(broker_bin, bench_bin, root, smp, bench_args, extra, env=None, before=None):
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
        if before:
            cmd = [bench_bin, "bench", "--brokers", b.addr, "--quiet", "--topic", "before"]
            r = subprocess.run(cmd + before, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=600)
            if r.returncode != 0:
                sys.stderr.write(r.stdout.decode(errors="replace"))
        c0 = cpu_seconds(b.proc.pid)
        h0 = scrape_histograms(b.admin) if b.admin else None
        t0 = time.monotonic()
        cmd = [bench_bin, "bench", "--brokers", b.addr, "--quiet", "--json", out] + bench_args
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
        wall = time.monotonic() - t0
        cpu = cpu_seconds(b.proc.pid) - c0
        h1 = scrape_histograms(b.admin) if h0 is not None else None
        if r.returncode != 0:
            sys.stderr.write(r.stdout.decode(errors="replace"))
        with open(out) as f:
            s = json.load(f)
    finally:
        b.stop()
        shutil.rmtree(data, ignore_errors=True)
    produced_mb = s["produced_records"] * s.get("record_size", 1024) / 1e6

    def broker_p99(key):
        """p99 in ms of a broker histogram over the run (0.0 if not scraped or empty)."""
        if h0 is None or h1 is None or hist_count(h0, h1, key) <= 0:
            return 0.0
        return 1000.0 * hist_quantile(h0, h1, key, 0.99)

    return {
        "mbps": s["mb_per_s"],
        "ack_p50": s.get("ack_latency_ms", {}).get("p50", 0.0),
        "ack_p99": s.get("ack_latency_ms", {}).get("p99", 0.0),
        "e2e_p999": s.get("e2e_latency_ms", {}).get("p999", 0.0),
        # The round trip against the broker's own Produce time and durable writes.
        "rtt_p99": s.get("request_rtt_ms", {}).get("p99", 0.0),
        "brk_prod_p99": broker_p99(PRODUCE_LAT),
        "brk_write_p99": broker_p99(WRITE_LAT),
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
    ap.add_argument("--fsync-probe", type=int, default=0,
                    help="seconds of fio fdatasync latency probe before each A/B round")
    ap.add_argument("--before", default="",
                    help="`ailurus bench` arguments of an unmeasured run on the same broker "
                         "before each measured one (e.g. a flat-out burst)")
    ap.add_argument("bench_args", nargs=argparse.REMAINDER)
    o = ap.parse_args()
    args = [a for a in o.bench_args if a != "--"]
    bench_bin = o.bench_bin or o.b
    os.makedirs(o.dir, exist_ok=True)
    res = {"A": [], "B": []}
    try:
        for i in range(o.runs):
            benv = dict(kv.split("=", 1) for kv in o.b_env)
            fs = fsync_p99_ms(o.dir, o.fsync_probe) if o.fsync_probe > 0 else 0.0
            if o.fsync_probe > 0:
                print("round %d: fio fdatasync p99 %.2f ms" % (i, fs), flush=True)
            # Alternate which binary goes first, so neither always runs right after fio.
            order = (("A", o.a), ("B", o.b)) if i % 2 == 0 else (("B", o.b), ("A", o.a))
            for name, binary in order:
                r = run_once(binary, bench_bin, o.dir, o.smp, args, o.broker_arg,
                             benv if name == "B" else None, o.before.split())
                r["ack_p99_vs_fsync"] = r["ack_p99"] / fs if fs else 0.0
                res[name].append(r)
                print("run %d %s: %.1f MB/s ack_p50 %.1f ack_p99 %.1f ms (%.2fx fsync p99) "
                      "e2e_p999 %.1f ms rtt_p99 %.1f broker produce/write p99 %.1f/%.1f ms "
                      "cpu %.2f ms/MB util %.2f errors %d" % (
                          i, name, r["mbps"], r["ack_p50"], r["ack_p99"],
                          r["ack_p99_vs_fsync"], r["e2e_p999"], r["rtt_p99"],
                          r["brk_prod_p99"], r["brk_write_p99"], r["cpu_ms_per_mb"],
                          r["cpu_util"], r["errors"]), flush=True)
    finally:
        shutil.rmtree(o.dir, ignore_errors=True)
    for key in ("mbps", "ack_p50", "ack_p99", "ack_p99_vs_fsync", "e2e_p999", "rtt_p99",
                "brk_prod_p99", "brk_write_p99", "cpu_ms_per_mb", "cpu_util"):
        a = statistics.median(r[key] for r in res["A"])
        b = statistics.median(r[key] for r in res["B"])
        print("median %-14s A %8.2f  B %8.2f  B/A %.3f" % (key, a, b, b / a if a else 0.0))


if __name__ == "__main__":
    main()
