#!/usr/bin/python3
"""bench_restart_ab.py — A/B of restart to ready after a clean stop (SIGTERM) for one partition.

A data directory is filled once (binary B, 1 KiB records into topic "big", one partition):
  --fill bench  `ailurus bench --acks 1 --rate 10000 --duration S --consumers 0` (not
                idempotent: an empty producer table);
  --fill idem   N idempotent librdkafka producers (python3-confluent-kafka,
                enable.idempotence=True, acks=all), one after the other, R records each.
The directory is copied for each binary, each binary starts and stops once on its copy (so its
own clean close, e.g. a producer-state snapshot, is what the measured starts find), then the
runs alternate A B, B A, ...: start, wait for the ready line, SIGTERM. Prints per run the
broker's "(N ms from start)" of its ready line, the SIGTERM-to-exit time and the producer-state
log line; then medians, ranges and B/A.

  bench_restart_ab.py [--runs 7] [--fill bench|idem] [--seconds 12] [--producers 8]
      [--records 15000] [--cluster] [--dir /tmp/restart-ab] BIN_A BIN_B

--cluster runs each broker as a one-node cluster (--node-id 1, its own RPC port as the seed):
its partitions are Raft replicas.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

READY = re.compile(r"ready: kafka=.*\(([0-9.]+) ms from start\)")
CLUSTER = False


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


CLUSTER_RPC = {}  # data directory -> its node's RPC port (kept across restarts)


def start(binary, data, log):
    port = free_port()
    f = open(log, "wb")
    extra = ["--rpc-addr", "127.0.0.1:0"]
    if CLUSTER:
        rpc = CLUSTER_RPC.setdefault(data, free_port())
        extra = ["--node-id", "1", "--rpc-addr", "127.0.0.1:%d" % rpc,
                 "--seed-servers", "127.0.0.1:%d" % rpc]
    pr = subprocess.Popen([binary, "start", "--kafka-addr", "127.0.0.1:%d" % port,
                           "--data-dir", data, "--smp", "1", "--admin-addr", "127.0.0.1:0"]
                          + extra, stdout=f, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with open(log, errors="replace") as lf:
            txt = lf.read()
        m = READY.search(txt)
        if m:
            return pr, port, float(m.group(1)), txt
        if pr.poll() is not None:
            sys.exit("broker exited before ready:\n" + txt[-2000:])
        time.sleep(0.005)
    pr.kill()
    pr.wait(10)
    sys.exit("broker not ready within 120 s: " + log)


def stop(pr):
    t0 = time.monotonic()
    pr.send_signal(signal.SIGTERM)
    try:
        rc = pr.wait(60)
    except subprocess.TimeoutExpired:
        pr.kill()
        pr.wait(10)
        sys.exit("broker did not stop within 60 s")
    if rc != 0:
        sys.exit("broker exited with %d after SIGTERM" % rc)
    return (time.monotonic() - t0) * 1000


def fill(args, binary, d):
    pr, port, _, _ = start(binary, d, os.path.join(args.dir, "fill.log"))
    try:
        boot = "127.0.0.1:%d" % port
        if args.fill == "bench":
            subprocess.run([binary, "bench", "--brokers", boot, "--topic", "big",
                            "--partitions", "1", "--consumers", "0", "--acks", "1", "--rate",
                            "10000", "--duration", str(args.seconds), "--warmup", "0",
                            "--quiet"], check=True, timeout=args.seconds + 120)
        else:
            from confluent_kafka import Producer
            from confluent_kafka.admin import AdminClient, NewTopic
            a = AdminClient({"bootstrap.servers": boot})
            a.create_topics([NewTopic("big", 1, 1)], request_timeout=15)["big"].result(timeout=20)
            errs = []
            for k in range(args.producers):
                p = Producer({"bootstrap.servers": boot, "enable.idempotence": True,
                              "acks": "all", "linger.ms": 5})
                for i in range(args.records):
                    v = b"%02d%08d" % (k, i) + b"x" * 1014
                    for _ in range(100000):
                        try:
                            p.produce("big", value=v, partition=0,
                                      on_delivery=lambda e, m: e and errs.append(e))
                            break
                        except BufferError:
                            p.poll(0.05)
                    p.poll(0)
                if p.flush(120) != 0:
                    sys.exit("records not delivered within 120 s")
            if errs:
                sys.exit("produce errors: %s" % errs[:3])
    finally:
        stop(pr)


def median(v):
    v = sorted(v)
    return v[len(v) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--fill", choices=("bench", "idem"), default="bench")
    ap.add_argument("--seconds", type=int, default=12)
    ap.add_argument("--producers", type=int, default=8)
    ap.add_argument("--records", type=int, default=15000)
    ap.add_argument("--cluster", action="store_true")
    ap.add_argument("--dir", default="/tmp/restart-ab")
    ap.add_argument("bin_a")
    ap.add_argument("bin_b")
    args = ap.parse_args()
    global CLUSTER
    CLUSTER = args.cluster
    bins = {"A": os.path.abspath(args.bin_a), "B": os.path.abspath(args.bin_b)}
    shutil.rmtree(args.dir, ignore_errors=True)
    os.makedirs(args.dir)
    src = os.path.join(args.dir, "fill")
    fill(args, bins["B"], src)
    dirs = {}
    for name, b in bins.items():
        dirs[name] = os.path.join(args.dir, "d-" + name)
        shutil.copytree(src, dirs[name])
        if CLUSTER:
            CLUSTER_RPC[dirs[name]] = CLUSTER_RPC[src]  # the node's address stays the same
        pr, _, _, _ = start(b, dirs[name], os.path.join(args.dir, "prep-%s.log" % name))
        stop(pr)
    ready = {"A": [], "B": []}
    stops = {"A": [], "B": []}
    for i in range(args.runs):
        for name in (("A", "B") if i % 2 == 0 else ("B", "A")):
            pr, _, ms, txt = start(bins[name], dirs[name],
                                   os.path.join(args.dir, "run-%s-%d.log" % (name, i)))
            st = stop(pr)
            ready[name].append(ms)
            stops[name].append(st)
            info = [ln.split("cluster: ", 1)[-1] for ln in txt.splitlines()
                    if "producers rebuilt" in ln or "snapshot" in ln]
            print("run %d %s ready %7.1f ms stop %5.0f ms %s" % (i, name, ms, st,
                                                                  info[0] if info else ""),
                  flush=True)
    for name in ("A", "B"):
        r, s = ready[name], stops[name]
        print("%s ready median %.1f ms (%.1f-%.1f), stop median %.0f ms (%.0f-%.0f)  %s"
              % (name, median(r), min(r), max(r), median(s), min(s), max(s), bins[name]))
    print("ready B/A (medians) %.3f" % (median(ready["B"]) / median(ready["A"])))
    shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
