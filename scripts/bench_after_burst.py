#!/usr/bin/python3
"""bench_after_burst.py — the 30% open loop of `make bench` on a broker that has just run flat
out, against the same broker restarted on its data (or a fresh one): the post-burst slowdown of
issue 6 (BENCHMARKS.md, session 8: ack p99 114-166 ms after the burst against 17-33 ms after a
restart on the same data and 10-16 ms fresh, 105,000 rec/s).

Per run: a new broker (`ailurus start --smp 1`) on a fresh data directory; the bursts of
make bench's order (--phases: "p1" = 10 s flat out on 1 partition, 4 producers x 32 in flight x
64 KiB batches; "p16" = the same on 16 partitions; "" = none, a fresh broker); with --restart
the broker is stopped (SIGTERM) and started again on the same data; then the open loop (1
partition, 1 producer, 32 in flight, batches up to 256 KiB, linger 1 ms, 1 KiB records,
acks=all) at --rate for --seconds. Prints one line per run: the client's ack p99, round trip
p99 (per record and per request), e2e p99.9, its loop lag p99, and the broker's own Produce
p99/p99.9, durable-write p99 and reactor-lag p99/p99.9 over the open loop (its Prometheus
histograms, power-of-two buckets).

  bench_after_burst.py [--runs 2] [--rate 105000] [--seconds 8] [--burst-seconds 10]
      [--phases p1,p16] [--restart] [--dir /tmp/after-burst] BIN
"""
import argparse
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_broker as bb  # noqa: E402


def one_run(binary, root, args, i):
    data = os.path.join(root, "data")
    shutil.rmtree(data, ignore_errors=True)
    b = bb.Broker(binary, data).start()
    try:
        common = ["--record-size", 1024, "--acks", "all", "--warmup", 1]
        for ph in [p for p in args.phases.split(",") if p]:
            parts = {"p1": 1, "p16": 16}[ph]
            bb.bench(binary, b.addr, os.path.join(root, "burst-%s.json" % ph), "--topic",
                     "max-" + ph, "--partitions", parts, "--producers", 4, "--max-inflight", 32,
                     "--batch-bytes", 65536, "--duration", args.burst_seconds, *common)
        if args.restart:
            b.stop()
            b = bb.Broker(binary, data).start()
        s, _ = bb.bench(binary, b.addr, os.path.join(root, "open.json"), "--topic", "open",
                        "--partitions", 1, "--producers", 1, "--max-inflight", 32,
                        "--batch-bytes", 262144, "--rate", "%.0f" % args.rate, "--linger", 1,
                        "--duration", args.seconds, *common, broker=b)
    finally:
        b.stop()
    g = lambda k, q="p99": s.get(k, {}).get(q, float("nan"))  # noqa: E731
    print("run %d phases=%s restart=%s: ack p99 %.1f ms, round trip p99 %.1f (per request %.1f), "
          "e2e p99.9 %.1f, client lag p99 %.2f | broker Produce p99 %.1f p99.9 %.1f, write p99 "
          "%.1f, reactor lag p99 %.1f p99.9 %.1f ms, load %.1f" % (
              i, args.phases or "none", args.restart, g("ack_latency_ms"), g("request_rtt_ms"),
              g("request_rtt_per_request_ms"), g("e2e_latency_ms", "p999"), g("client_lag_ms"),
              g("broker_produce_ms"), g("broker_produce_ms", "p999"), g("broker_write_ms"),
              g("reactor_lag_ms"), g("reactor_lag_ms", "p999"), s.get("load_average", 0)))
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--rate", type=float, default=105000)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--burst-seconds", type=float, default=10)
    ap.add_argument("--phases", default="p1,p16")
    ap.add_argument("--restart", action="store_true")
    ap.add_argument("--dir", default="/tmp/after-burst")
    ap.add_argument("binary")
    args = ap.parse_args()
    binary = os.path.abspath(args.binary)
    os.makedirs(args.dir, exist_ok=True)
    try:
        for i in range(args.runs):
            one_run(binary, args.dir, args, i)
    finally:
        shutil.rmtree(os.path.join(args.dir, "data"), ignore_errors=True)  # preallocated: GBs


if __name__ == "__main__":
    main()
