#!/usr/bin/env python3
"""bench_fetch_ab.py — A/B of the consumer path (Fetch) alone: broker CPU per MB consumed.

A topic is filled once (binary A, `ailurus bench --consumers 0` for --fill seconds: 1 KiB
records, 64 KiB batches). Then for each run (A B, B A, ...) a broker starts on a copy of that
data directory and kcat (librdkafka, output to /dev/null) reads the whole topic --reads times
from the beginning: the first read comes from disk (the cache starts empty; the read fills
it), the others from the batch cache (keep the fill under the cache size: 512 MiB on a big
machine). The figures per read: the broker's CPU time (all its threads, from schedstat) per MB
of record values, and MB/s. Medians per binary and source (disk, cache), with B/A.

  bench_fetch_ab.py [--runs 3] [--fill 6] [--reads 2] [--partitions 1] \\
      [--b-env AILURUS_FETCH_COPY=1] BIN_A BIN_B

Both brokers get the same flags; --a-env / --b-env add environment variables to one of them
(e.g. the same binary with and without AILURUS_FETCH_COPY=1, the copying Fetch path).
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
from bench_broker import Broker, cpu_seconds  # noqa: E402


def cpu_ns(pid):
    """CPU time of every live thread of pid (io_uring workers included), in ns, from
    /proc/PID/task/*/schedstat (finer than the 10 ms ticks of /proc/PID/stat)."""
    total = 0
    base = "/proc/%d/task" % pid
    for t in os.listdir(base):
        try:
            with open(os.path.join(base, t, "schedstat")) as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def fill(binary, args, root):
    """One broker fills topic fab for --fill seconds; returns (data dir, MB of values)."""
    data = os.path.join(root, "fill")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(data)
    b = Broker(binary, data, smp=1).start()
    try:
        summary = os.path.join(root, "fill.json")
        subprocess.run([args.bench_bin or binary, "bench", "--brokers", b.addr, "--topic", "fab",
                        "--partitions", str(args.partitions), "--producers", "4",
                        "--consumers", "0", "--max-inflight", "32", "--batch-bytes", "65536",
                        "--duration", str(args.fill), "--warmup", "0", "--quiet",
                        "--json", summary], check=True, stdout=subprocess.DEVNULL)
        with open(summary) as f:
            j = json.load(f)
    finally:
        b.stop()
    return data, j["produced_records"] * j["record_size"] / 1e6


def one_run(binary, env_extra, args, root, filled, mb):
    """A broker on a copy of the filled data directory; --reads full reads of the topic (the
    first from disk: the cache starts empty and the reads fill it). Returns [(MB/s, ms/MB)]."""
    data = os.path.join(root, "data")
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(filled, data)
    saved = dict(os.environ)
    os.environ.update(env_extra)
    try:
        b = Broker(binary, data, smp=1).start()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        reads = []
        for _ in range(args.reads):
            c0, t0 = cpu_ns(b.proc.pid), time.monotonic()
            subprocess.run(["kcat", "-C", "-b", b.addr, "-t", "fab", "-o", "beginning", "-e",
                            "-q", "-X", "fetch.max.bytes=52428800",
                            "-X", "max.partition.fetch.bytes=1048576"],
                           check=True, stdout=subprocess.DEVNULL, timeout=300)
            dt, dc = time.monotonic() - t0, cpu_ns(b.proc.pid) - c0
            reads.append((mb / dt, dc / 1e6 / mb))
        return reads
    finally:
        b.stop()
        shutil.rmtree(data, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--fill", type=int, default=6)
    ap.add_argument("--reads", type=int, default=2)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--dir", default="/tmp/ailurus-fab")
    ap.add_argument("--bench-bin", default=None)
    ap.add_argument("--a-env", action="append", default=[])
    ap.add_argument("--b-env", action="append", default=[])
    args = ap.parse_args()
    envs = {"A": dict(e.split("=", 1) for e in args.a_env),
            "B": dict(e.split("=", 1) for e in args.b_env)}
    filled, mb = fill(args.a, args, args.dir)
    print("filled %.1f MB of record values (1 KiB records, 64 KiB batches, %d partitions)"
          % (mb, args.partitions), flush=True)
    res = {"A": ([], []), "B": ([], [])}  # (first reads: disk, later reads: cache)
    try:
        for i in range(args.runs):
            for name in (("A", "B") if i % 2 == 0 else ("B", "A")):
                binary = args.a if name == "A" else args.b
                reads = one_run(binary, envs[name], args, args.dir, filled, mb)
                for k, (mbps, cpu) in enumerate(reads):
                    print("run %d %s read %d (%s): %.1f MB/s, broker cpu %.3f ms/MB"
                          % (i, name, k, "disk" if k == 0 else "cache", mbps, cpu), flush=True)
                    res[name][0 if k == 0 else 1].append((mbps, cpu))
    finally:
        shutil.rmtree(args.dir, ignore_errors=True)
    for src, label in ((0, "disk"), (1, "cache")):
        for idx, what in ((0, "read_mbps"), (1, "cpu_ms_per_mb")):
            if not res["A"][src] or not res["B"][src]:
                continue
            a = statistics.median(r[idx] for r in res["A"][src])
            b = statistics.median(r[idx] for r in res["B"][src])
            print("median %-5s %-14s A %8.3f  B %8.3f  B/A %.3f"
                  % (label, what, a, b, b / a if a else 0))


if __name__ == "__main__":
    main()
