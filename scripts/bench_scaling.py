#!/usr/bin/env python3
"""bench_scaling.py — where the CPU goes when one broker shard is compared with two.

Runs the shard-scaling workload of `make bench` (acks=1, 16 partitions, 4 connections, flat
out, 1 KiB records, no consumer) against `ailurus start --smp 1` and `--smp 2`, optionally with
the load generator and the broker pinned to CPU sets (taskset), and prints per run: MB/s, the
CPU time of every broker thread (shard threads, io_uring workers, others) and of the client as
a share of one core, plus the machine's load average, so a figure can be told apart from the
machine it ran on:

  bench_scaling.py BIN [--seconds S] [--client-cpus 1] [--broker-cpus 0]

Thread names: the broker's threads show as the binary's name (shards and the main thread) or
`iou-wrk-*` (io_uring workers doing the blocking disk work); the shards are the former with
CPU time (the main thread sleeps).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_broker import Broker  # noqa: E402

TCK = os.sysconf("SC_CLK_TCK")


def threads(pid):
    """{tid: (comm, cpu_seconds)} for every thread of pid."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                s = f.read()
        except OSError:
            continue
        comm = s[s.index("(") + 1:s.rindex(")")]
        fields = s[s.rindex(")") + 2:].split()
        out[tid] = (comm, (int(fields[11]) + int(fields[12])) / TCK)
    return out


def proc_cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TCK


def run(binary, root, smp, secs, client_cpus, broker_cpus):
    data = os.path.join(root, "data")
    shutil.rmtree(data, ignore_errors=True)
    b = Broker(binary, data, smp=smp).start()
    try:
        if broker_cpus:
            subprocess.run(["taskset", "-a", "-p", "-c", broker_cpus, str(b.proc.pid)],
                           stdout=subprocess.DEVNULL, check=True)
        out = os.path.join(root, "scale.json")
        cmd = [binary, "bench", "--brokers", b.addr, "--quiet", "--json", out, "--topic", "scale",
               "--partitions", "16", "--producers", "4", "--max-inflight", "16",
               "--batch-bytes", "65536", "--acks", "1", "--record-size", "1024",
               "--consumers", "0", "--warmup", "1", "--duration", str(secs)]
        if client_cpus:
            cmd = ["taskset", "-c", client_cpus] + cmd
        t0 = threads(b.proc.pid)
        w0 = time.monotonic()
        load0 = os.getloadavg()[0]
        c = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        time.sleep(1.0 + secs / 2)  # mid-run sample of the client's CPU
        client_cpu = 0.0
        try:
            cc0 = proc_cpu(c.pid)
            time.sleep(secs / 4)
            client_cpu = (proc_cpu(c.pid) - cc0) / (secs / 4)
        except OSError:
            pass
        c.wait(timeout=600)
        wall = time.monotonic() - w0
        t1 = threads(b.proc.pid)
        with open(out) as f:
            s = json.load(f)
    finally:
        b.stop()
        shutil.rmtree(data, ignore_errors=True)
    per = []
    for tid, (comm, cpu) in t1.items():
        d = cpu - t0.get(tid, (comm, 0.0))[1]
        if d > 0.01 * wall:
            per.append((comm, d / wall))
    per.sort(key=lambda x: -x[1])
    return s["mb_per_s"], per, client_cpu, load0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("binary")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--client-cpus", default="")
    ap.add_argument("--broker-cpus", default="")
    ap.add_argument("--dir", default="/tmp/ailurus-scaling")
    o = ap.parse_args()
    os.makedirs(o.dir, exist_ok=True)
    res = {}
    try:
        for smp in (1, 2):
            mbps, per, client, load = run(o.binary, o.dir, smp, o.seconds, o.client_cpus,
                                          o.broker_cpus)
            res[smp] = mbps
            shards = [x for x in per if not x[0].startswith("iou-")]
            wrk = sum(x[1] for x in per if x[0].startswith("iou-wrk"))
            print("smp %d: %.1f MB/s  load %.1f  broker threads (share of a core): %s  "
                  "io_uring workers %.2f  client %.2f" % (
                      smp, mbps, load, " ".join("%.2f" % x[1] for x in shards), wrk, client),
                  flush=True)
    finally:
        shutil.rmtree(o.dir, ignore_errors=True)
    print("shard_scaling %.2f" % (res[2] / res[1] if res.get(1) else 0.0))


if __name__ == "__main__":
    main()
