#!/usr/bin/env python3
"""bench_cluster.py — the 3-node half of `make bench` (called by scripts/bench.sh, issue 7).

Runs the same `ailurus bench` scenarios against (a) one `ailurus start` in single-node mode and
(b) a 3-node cluster (cluster mode, all nodes on 127.0.0.1, same disk, same cores) with a
replication-factor-3 topic, and prints one line per figure, `<name> <value> <unit>`:

  single_p1_produce_mb_s, cluster3_produce_mb_s, cluster3_vs_single   (flat out, 1 partition)
  single_p99_ack_ms, cluster3_p99_ack_ms, cluster3_p99_vs_single      (open loop, same rate)

  bench_cluster.py BIN DIR [SECONDS]

Scenarios: 1 KiB records, acks=all, one partition. Flat out: 4 producer connections, 32
requests in flight each, 64 KiB batches. Latency: open loop at 30% of the LOWER of the two
flat-out rates (the same rate for both, one both sustain), 5 ms linger, 1 consumer. The single
node and the cluster run side by side. `ailurus bench` talks to the broker it is given only,
so for the cluster the topic is created with RF 3 first and the bench is pointed
at the partition leader (what a Kafka client does after Metadata). Each node logs to
DIR/node-N.log; the bench tool's own output goes to stderr.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_broker import READY_RE, cpu_seconds, fig, stop_process  # noqa: E402


def free_port(used):
    """A free TCP port on 127.0.0.1 not in used (below the ephemeral range if possible)."""
    for _ in range(200):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        finally:
            s.close()
        if p not in used:
            used.add(p)
            return p
    raise RuntimeError("no free port")


class Node:
    """One `ailurus start` process; cluster mode when seeds is given."""

    def __init__(self, binary, root, node_id, used, seeds=None, rpc_port=None):
        self.binary, self.node_id = binary, node_id
        self.data_dir = os.path.join(root, "node-%d" % node_id)
        self.log_path = os.path.join(root, "node-%d.log" % node_id)
        self.kafka_port = free_port(used)
        self.rpc_port = rpc_port or free_port(used)
        self.seeds = seeds
        self.proc = None
        self.log = None

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.kafka_port

    def launch(self):
        shutil.rmtree(self.data_dir, ignore_errors=True)
        os.makedirs(self.data_dir)
        cmd = [self.binary, "start", "--smp", "1", "--data-dir", self.data_dir,
               "--kafka-addr", self.addr, "--admin-addr", "127.0.0.1:0",
               "--rpc-addr", "127.0.0.1:%d" % self.rpc_port]
        if self.seeds:
            cmd += ["--node-id", str(self.node_id), "--seed-servers", self.seeds]
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)

    def ready(self):
        with open(self.log_path, "r", errors="replace") as f:
            return READY_RE.search(f.read()) is not None

    def cpu_seconds(self):
        return cpu_seconds(self.proc.pid)

    def stop(self):
        stop_process(self.proc)
        if self.log:
            self.log.close()
        self.proc = None
        shutil.rmtree(self.data_dir, ignore_errors=True)


def wait_ready(nodes, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for n in nodes:
            if n.proc.poll() is not None:
                raise RuntimeError("node %d exited (%s) before ready; see %s"
                                   % (n.node_id, n.proc.returncode, n.log_path))
        if all(n.ready() for n in nodes):
            return
        time.sleep(0.1)
    raise RuntimeError("nodes not ready in %.0f s; see %s" % (timeout, nodes[0].log_path))


def leader_of(nodes, topic, timeout=60.0):
    """Creates topic (1 partition, RF = len(nodes)) and returns the leader node once every
    node's Metadata names the same leader with every replica in sync, and that leader is the
    preferred one (the first replica): else the leader balancer moves the leadership there
    within seconds, under the bench, which talks to this node only."""
    from confluent_kafka.admin import AdminClient, NewTopic
    boot = ",".join(n.addr for n in nodes)
    admin = AdminClient({"bootstrap.servers": boot})
    f = admin.create_topics([NewTopic(topic, 1, len(nodes))], request_timeout=30)
    f[topic].result(timeout=40)
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = set()
        for n in nodes:
            try:
                md = AdminClient({"bootstrap.servers": n.addr}).list_topics(topic, timeout=5)
                p = md.topics[topic].partitions[0]
                seen.add((p.leader, len(p.isrs), p.replicas[0] if p.replicas else None))
            except Exception as e:  # not known there yet: ask again
                seen.add(("error", str(e)))
        if len(seen) == 1:
            leader, isr, preferred = next(iter(seen))
            if isinstance(leader, int) and leader >= 0 and isr == len(nodes) and \
                    leader == preferred:
                return next(n for n in nodes if n.node_id == leader)
        time.sleep(0.2)
    raise RuntimeError("no agreed leader with a full ISR for %s: %r" % (topic, seen))


def bench(binary, addr, out_json, *args, nodes=()):
    cmd = [binary, "bench", "--brokers", addr, "--quiet", "--json", out_json] + [
        str(a) for a in args]
    sys.stderr.write("+ " + " ".join(cmd) + "\n")
    c0 = sum(n.cpu_seconds() for n in nodes)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    sys.stderr.write(r.stdout.decode(errors="replace"))
    if r.returncode != 0:
        raise RuntimeError("ailurus bench failed (%d): %s" % (r.returncode, r.stdout[-2000:]))
    with open(out_json) as f:
        s = json.load(f)
    mb = s["produced_records"] * s.get("record_size", 1024) / 1e6
    s["cpu_ms_per_mb"] = 1000.0 * (sum(n.cpu_seconds() for n in nodes) - c0) / mb if mb else 0
    return s


def run(binary, root, tag, addr, nodes, secs, rate=None):
    """One scenario on topic bench-<tag>: flat out (rate None) or open loop at rate records/s
    (5 ms linger, 16 in flight); returns the bench summary."""
    common = ["--topic", "bench-" + tag, "--partitions", 1, "--record-size", 1024,
              "--acks", "all", "--warmup", 1, "--duration", secs, "--producers", 4,
              "--batch-bytes", 65536]
    if rate is None:
        return bench(binary, addr, os.path.join(root, tag + "-max.json"), *common,
                     "--max-inflight", 32, nodes=nodes)
    return bench(binary, addr, os.path.join(root, tag + "-rate.json"), *common,
                 "--max-inflight", 16, "--rate", "%.0f" % rate, "--linger", 5, nodes=nodes)


def main():
    binary, root = sys.argv[1], sys.argv[2]
    secs = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0
    os.makedirs(root, exist_ok=True)
    used = set()
    fig("cluster_load_average_at_start", "%.1f" % os.getloadavg()[0], "runnable")

    # The single node and the cluster run side by side (an idle node costs ~1% CPU), so that
    # the latency runs can use one rate both sustain: 30% of the lower flat-out rate.
    single = Node(binary, root, 0, used)
    first = Node(binary, root, 1, used)
    first.seeds = "127.0.0.1:%d" % first.rpc_port
    nodes = [first] + [Node(binary, root, i, used, seeds=first.seeds) for i in (2, 3)]
    single.launch()
    t0 = time.monotonic()
    for n in nodes:
        n.launch()
    try:
        wait_ready(nodes + [single])
        fig("cluster3_start_to_ready", "%.0f" % ((time.monotonic() - t0) * 1000.0), "ms")
        leader = leader_of(nodes, "bench-cluster3")
        s_flat = run(binary, root, "single", single.addr, [single], secs)
        c_flat = run(binary, root, "cluster3", leader.addr, nodes, secs)
        rate = max(100.0, 0.3 * min(s_flat["records_per_s"], c_flat["records_per_s"]))
        s_lat = run(binary, root, "single", single.addr, [single], secs, rate)
        c_lat = run(binary, root, "cluster3", leader.addr, nodes, secs, rate)
    finally:
        for n in nodes + [single]:
            n.stop()

    fig("single_p1_produce_mb_s", "%.2f" % s_flat["mb_per_s"], "MB/s")
    fig("single_p1_cpu_all_nodes", "%.1f" % s_flat["cpu_ms_per_mb"], "ms/MB")
    fig("cluster3_produce_mb_s", "%.2f" % c_flat["mb_per_s"], "MB/s")
    fig("cluster3_cpu_all_nodes", "%.1f" % c_flat["cpu_ms_per_mb"], "ms/MB")
    fig("cluster3_vs_single", "%.3f" % (c_flat["mb_per_s"] / s_flat["mb_per_s"]
                                        if s_flat["mb_per_s"] else 0), "ratio")
    fig("cluster3_latency_rate", "%.0f" % rate, "records/s")
    fig("single_rate_achieved", "%.0f" % s_lat["records_per_s"], "records/s")
    fig("cluster3_rate_achieved", "%.0f" % c_lat["records_per_s"], "records/s")
    sp99, cp99 = s_lat["ack_latency_ms"]["p99"], c_lat["ack_latency_ms"]["p99"]
    fig("single_p99_ack_ms", "%.2f" % sp99, "ms")
    fig("cluster3_p99_ack_ms", "%.2f" % cp99, "ms")
    fig("cluster3_p99_vs_single", "%.2f" % (cp99 / sp99 if sp99 else 0), "ratio")
    fig("single_p50_ack_ms", "%.2f" % s_lat["ack_latency_ms"]["p50"], "ms")
    fig("cluster3_p50_ack_ms", "%.2f" % c_lat["ack_latency_ms"]["p50"], "ms")
    fig("cluster3_errors", c_flat["errors"] + c_lat["errors"], "errors")
    fig("cluster3_e2e_consumed_equals_produced",
        int(c_lat["consumed_records"] == c_lat["produced_records"]), "bool")


if __name__ == "__main__":
    main()
