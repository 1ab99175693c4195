#!/usr/bin/python3
"""bench_crash_restart_ab.py — A/B of restart to ready after SIGKILL, one large active segment.

Binary B fills a data directory (topic "big", one partition, segment.bytes 1.5 GiB so the
active segment grows large): `ailurus bench --acks 1 --producers 2` flat out for --seconds,
then the broker is SIGKILLed (no clean close: no index files for the active segment; with recovery
checkpoints, a .ckpt). Then the runs alternate A B, B A, ... on that same directory: start,
wait for the ready line, SIGKILL at once (nothing is appended, so every start recovers the
same files after a crash). Prints each run's "(N ms from start)" and the storage recovery
line, then medians, ranges and B/A. A binary that does not know .ckpt files ignores them.

  bench_crash_restart_ab.py [--runs 4] [--seconds 10] [--dir /tmp/crash-ab] [--keep] BIN_A BIN_B
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_restart_ab import start  # noqa: E402  (one start-and-wait-for-ready for both)


def kill(pr):
    pr.send_signal(signal.SIGKILL)
    pr.wait(30)


def median(v):
    v = sorted(v)
    return v[len(v) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--dir", default="/tmp/crash-ab")
    ap.add_argument("--keep", action="store_true", help="keep the directory and logs")
    ap.add_argument("bin_a")
    ap.add_argument("bin_b")
    args = ap.parse_args()
    bins = {"A": os.path.abspath(args.bin_a), "B": os.path.abspath(args.bin_b)}
    shutil.rmtree(args.dir, ignore_errors=True)
    os.makedirs(args.dir)
    data = os.path.join(args.dir, "data")
    pr, port, _, _ = start(bins["B"], data, os.path.join(args.dir, "fill.log"))
    try:
        from confluent_kafka.admin import AdminClient, NewTopic
        a = AdminClient({"bootstrap.servers": "127.0.0.1:%d" % port})
        t = NewTopic("big", 1, 1, config={"segment.bytes": str(1536 << 20)})
        a.create_topics([t], request_timeout=15)["big"].result(timeout=20)
        subprocess.run([bins["B"], "bench", "--brokers", "127.0.0.1:%d" % port, "--topic", "big",
                        "--consumers", "0", "--acks", "1", "--producers", "2",
                        "--duration", str(args.seconds),
                        "--warmup", "0", "--quiet"], check=True, timeout=args.seconds + 120)
        time.sleep(1.0)
    finally:
        kill(pr)
    sizes = []
    for root, _, files in os.walk(data):
        sizes += [(os.path.getsize(os.path.join(root, f)), f) for f in files if f.endswith(".log")]
    print("segments after the fill: %s" % sorted(sizes)[-3:], flush=True)
    ready = {"A": [], "B": []}
    for i in range(args.runs):
        for name in (("A", "B") if i % 2 == 0 else ("B", "A")):
            pr, _, ms, txt = start(bins[name], data,
                                   os.path.join(args.dir, "run-%s-%d.log" % (name, i)))
            kill(pr)
            ready[name].append(ms)
            info = [ln.split("storage: ", 1)[-1][-90:] for ln in txt.splitlines()
                    if "checkpoint" in ln or "cut " in ln]
            print("run %d %s ready %7.1f ms %s" % (i, name, ms, info[0] if info else ""),
                  flush=True)
    for name in ("A", "B"):
        r = ready[name]
        print("%s ready median %.1f ms (%.1f-%.1f)  %s" % (name, median(r), min(r), max(r),
                                                          bins[name]))
    print("ready B/A (medians) %.3f" % (median(ready["B"]) / median(ready["A"])))
    if not args.keep:
        shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
