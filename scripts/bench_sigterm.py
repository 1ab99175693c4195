#!/usr/bin/python3
"""bench_sigterm.py — controlled shutdown of a preferred leader, A/B between two builds.

  bench_sigterm.py BIN_A BIN_B [--rounds R] [--balance-ms MS]

Per trial: a 3-node cluster (tests/integration/ailurus_harness.Cluster) started with
AILURUS_BALANCE_MS=MS (the leader balancer's period, default 200 ms instead of 10 s, so that
it runs during the hand-over), a topic of 6 partitions RF 3 settled on its preferred leaders,
an idempotent acks=all producer writing to every partition; then SIGTERM to a node that is the
preferred leader of some partitions (not the controller). Measured:

  exit_s     seconds from the SIGTERM until the process exited
  handover   the node's own "controlled shutdown: leads nothing after N ms"
  won        "leader in term" lines in its log after its hand-over began: leaderships handed
             to it while it was stopping (0 expected since 04f3b6c)

Trials alternate A, B, A, B, ... (R rounds); prints a line per trial and medians with spreads.
Loopback only; every wait is bounded.
"""
import argparse
import os
import re
import signal
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from ailurus_harness import Cluster, wait_for  # noqa: E402
from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from test_cluster_shutdown import PARTS, agreed_metadata, settled  # noqa: E402


def trial(binary, balance_ms):
    os.environ["AILURUS_BIN"] = binary  # ailurus_harness.binary() reads it at each start
    c = Cluster(3, args=["--controlled-shutdown-timeout-ms", "8000"],
                env={"AILURUS_BALANCE_MS": str(balance_ms)}).start()
    try:
        a = AdminClient({"bootstrap.servers": c.bootstrap})
        a.create_topics([NewTopic("st", PARTS, 3)], request_timeout=20)["st"].result(30)
        parts, ctl = agreed_metadata(c, "st", [0, 1, 2], pred=settled)
        x = sorted({lead for lead, _, _ in parts.values()} - {ctl})[0]
        xi = x - c.nodes[0].node_id
        acked = [0]
        p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all",
                      "enable.idempotence": True, "linger.ms": 2})
        stop = threading.Event()

        def cb(err, msg):
            if err is None:
                acked[0] += 1

        def run():
            i = 0
            while not stop.is_set() and i < 200000:
                p.produce("st", value=b"%d" % i, partition=i % PARTS, on_delivery=cb)
                p.poll(0)
                i += 1
                time.sleep(0.002)
            p.flush(60)

        t = threading.Thread(target=run)
        t.start()
        try:
            wait_for("acks", lambda: acked[0] >= 300, timeout=60)
            proc = c.nodes[xi].proc
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(40)
            took = time.monotonic() - t0
            c.nodes[xi].proc = None
            c.nodes[xi].log_file.close()
        finally:
            stop.set()
            t.join(90)
        log = c.nodes[xi].log_text()
        s = log.find("controlled shutdown: handing")
        won = sum(1 for line in log[max(s, 0):].splitlines() if "leader in term" in line)
        m = re.search(r"leads nothing after (\d+) ms", log)
        return took, int(m.group(1)) if m else -1, won
    finally:
        c.stop()
        c.remove_files()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin_a")
    ap.add_argument("bin_b")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--balance-ms", type=int, default=200)
    o = ap.parse_args()
    res = {"A": [], "B": []}
    for r in range(o.rounds):
        for name, binary in (("A", o.bin_a), ("B", o.bin_b)):
            took, ms, won = trial(binary, o.balance_ms)
            res[name].append((took, ms, won))
            print("round %d %s: exit %.2f s, hand-over %d ms, won while stopping %d"
                  % (r, name, took, ms, won), flush=True)
    for name in ("A", "B"):
        ex = [x[0] for x in res[name]]
        ho = [x[1] for x in res[name]]
        print("%s: exit median %.2f s (%.2f-%.2f), hand-over median %d ms (%d-%d), won while "
              "stopping per trial %s" % (name, statistics.median(ex), min(ex), max(ex),
                                         statistics.median(ho), min(ho), max(ho),
                                         [x[2] for x in res[name]]))


if __name__ == "__main__":
    main()
