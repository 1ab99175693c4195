#!/usr/bin/python3
"""bench_failover.py — leader failover time with many partitions, A/B between two builds.

  bench_failover.py BIN_A BIN_B [--partitions N] [--rounds R] [--smp S]

Per trial: a 3-node cluster (tests/integration/ailurus_harness.Cluster, one shard per node
unless --smp), a topic "fo" of N partitions RF 3 and a topic "probe" of 1 partition RF 3.
Once every partition has a leader, a probe producer (acks=all, one record at a time) writes
to the probe partition; once its last 2 s were quiet (no request over 50 ms, at most 60 s
of waiting: the creation settles), the node leading the most "fo" partitions (not the
probe's leader) is SIGKILLed. Measured:

  elect_s     seconds from the SIGKILL until both survivors' Metadata name a live leader for
              every "fo" partition (includes the election timeout, 1.5 s + jitter, and the
              leader gossip: a constant part both builds share); inf when that did not happen
              within ELECT_LIMIT_S (the trial's files are kept)
  probe_p50/p99/max_ms   latency of the probe's produce requests sent in that window (the probe
              partition's leader is a survivor hosting replicas of the groups that elect)

Trials alternate A, B, A, B, ... (R rounds). Prints one line per trial and the medians and
spread per build. Loopback only; every wait is bounded.
"""
import argparse
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import ailurus_harness  # noqa: E402
from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402


ELECT_LIMIT_S = 120


def leaders(addr, topic, timeout=5.0):
    """{partition: leader id} as the node at addr's Metadata says, or None."""
    try:
        md = AdminClient({"bootstrap.servers": addr}).list_topics(topic, timeout=timeout)
    except Exception:  # noqa: BLE001 (a node busy electing may time out: ask again)
        return None
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return None
    return {p: pm.leader for p, pm in t.partitions.items()}


def wait_all_led(addrs, topic, n, live_ids, timeout):
    """Seconds until every node in addrs names a live leader for all n partitions of topic."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        ok = True
        for a in addrs:
            ls = leaders(a, topic)
            if not ls or len(ls) != n or any(v not in live_ids for v in ls.values()):
                ok = False
                break
        if ok:
            return time.monotonic() - t0
        time.sleep(0.05)
    bad = {a: {p: v for p, v in (leaders(a, topic) or {}).items() if v not in live_ids}
           for a in addrs}
    raise AssertionError("%s: not every partition led by a live node within %.0f s: %r"
                         % (topic, timeout, bad))


class Probe(threading.Thread):
    """Produces one record at a time (acks=all) to probe/0 and records (send time, latency)."""

    def __init__(self, bootstrap):
        super().__init__(daemon=True)
        self.p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0,
                           "enable.idempotence": False, "message.timeout.ms": 30000,
                           "log_level": 0})
        self.stop = False
        self.samples = []
        self.errors = 0

    def run(self):
        for _ in range(1000000):  # bounded: stop is set within a minute
            if self.stop:
                break
            t = time.monotonic()
            res = []
            self.p.produce("probe", b"x" * 100, partition=0,
                           on_delivery=lambda err, msg: res.append(err))
            self.p.flush(30)
            if res and res[0] is None:
                self.samples.append((t, time.monotonic() - t))
            else:
                self.errors += 1
            time.sleep(0.005)


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def trial(binary, n, smp):
    os.environ["AILURUS_BIN"] = binary
    c = ailurus_harness.Cluster(3, smp=smp, ready_timeout=60.0)
    ok = False
    try:
        c.start()
        admin = AdminClient({"bootstrap.servers": c.bootstrap})
        fs = admin.create_topics([NewTopic("fo", n, 3), NewTopic("probe", 1, 3)],
                                 operation_timeout=60)
        for f in fs.values():
            f.result(120)
        ids = {b.node_id for b in c.nodes}
        addrs = [b.addr for b in c.nodes]
        wait_all_led(addrs, "fo", n, ids, 180)
        wait_all_led(addrs, "probe", 1, ids, 60)
        time.sleep(3)  # let the followers catch up and the creation settle
        for _ in range(600):  # leaderships may still move right after creation: a stable view
            fo, pr = leaders(addrs[0], "fo"), leaders(addrs[0], "probe")
            if fo and pr and all(v in ids for v in list(fo.values()) + list(pr.values())):
                break
            time.sleep(0.1)
        else:
            raise AssertionError("no stable leaders before the kill")
        probe_leader = pr[0]
        counts = {i: 0 for i in ids}
        for v in fo.values():
            counts[v] += 1
        victim = max((i for i in ids if i != probe_leader), key=lambda i: counts[i])
        vi = [b.node_id for b in c.nodes].index(victim)
        survivors = [b.addr for b in c.nodes if b.node_id != victim]
        probe = Probe(",".join(survivors))
        probe.start()
        # quiet first: kill only once the probe's last 2 s had no request over 50 ms
        t_start = time.monotonic()
        for _ in range(1200):  # bounded: 60 s
            time.sleep(0.05)
            now = time.monotonic()
            recent = [lat for t, lat in probe.samples if t > now - 2.0]
            if now - t_start > 2.5 and len(recent) > 20 and max(recent) < 0.05:
                break
        settle = time.monotonic() - t_start
        t_kill = time.monotonic()
        c.kill(vi)
        try:
            elect = wait_all_led(survivors, "fo", n, ids - {victim}, ELECT_LIMIT_S)
        except AssertionError as e:  # reported as a trial that did not recover in time
            print("  %s: %s" % (binary, str(e)[:300]), file=sys.stderr)
            elect = float("inf")
        time.sleep(0.5)
        probe.stop = True
        probe.join(60)
        probe.p = None  # the producer (and its threads) goes before the cluster stops
        before = [lat for t, lat in probe.samples if t_kill - 2.0 <= t < t_kill]
        during = [lat for t, lat in probe.samples if t_kill <= t <= t_kill + elect]
        ok = elect != float("inf")
        return {"elect_s": elect, "settle_s": settle, "led_by_victim": counts[victim],
                "probe_n": len(during), "probe_errors": probe.errors,
                "probe_p50_ms": 1000 * pct(during, 0.5), "probe_p99_ms": 1000 * pct(during, 0.99),
                "probe_max_ms": 1000 * max(during) if during else float("nan"),
                "base_p99_ms": 1000 * pct(before, 0.99)}
    finally:
        try:
            c.stop()
        except Exception as e:  # noqa: BLE001 (the killed node reports its SIGKILL)
            print("  (stop: %s)" % str(e).splitlines()[0], file=sys.stderr)
        if ok:
            c.remove_files()
        else:
            print("  files kept: %s" % " ".join(b.tmp for b in c.nodes), file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin_a")
    ap.add_argument("bin_b")
    ap.add_argument("--partitions", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--smp", type=int, default=1)
    a = ap.parse_args()
    res = {"A": [], "B": []}
    for r in range(a.rounds):
        for tag, b in (("A", a.bin_a), ("B", a.bin_b)) if r % 2 == 0 else (("B", a.bin_b),
                                                                            ("A", a.bin_a)):
            x = trial(os.path.abspath(b), a.partitions, a.smp)
            res[tag].append(x)
            print("round %d %s: elect %.2f s (%d leaders lost), probe during: n %d p50 %.1f "
                  "p99 %.1f max %.1f ms (errors %d; 2 s before the kill: p99 %.1f ms, "
                  "%.1f s to settle)"
                  % (r, tag, x["elect_s"], x["led_by_victim"], x["probe_n"], x["probe_p50_ms"],
                     x["probe_p99_ms"], x["probe_max_ms"], x["probe_errors"],
                     x["base_p99_ms"], x["settle_s"]), flush=True)
    for tag in ("A", "B"):
        xs = res[tag]
        for k in ("elect_s", "probe_p99_ms", "probe_max_ms"):
            v = [x[k] for x in xs]
            print("%s %s median %.2f (min %.2f max %.2f)"
                  % (tag, k, statistics.median(v), min(v), max(v)))
        print("%s trials not recovered within %d s: %d of %d"
              % (tag, ELECT_LIMIT_S, sum(x["elect_s"] == float("inf") for x in xs), len(xs)))
    ea = statistics.median(x["elect_s"] for x in res["A"])
    eb = statistics.median(x["elect_s"] for x in res["B"])
    print("elect_s B/A %.2f" % (eb / ea))


if __name__ == "__main__":
    main()
