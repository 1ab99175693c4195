"""test_cluster_formation.py — issue 7, the node service: real `ailurus start` processes form a
cluster through a seed list (cluster mode), and the controller (Raft group 0) drives the topic
catalogue.

  * 3 nodes form a cluster: Metadata (raw v1, asked of each node), DescribeCluster and the
    admin API list 3 brokers and the same controller everywhere;
  * a topic created through node 2 with kafka-python's KafkaAdminClient (sent to a node that is
    not the controller leader, which forwards it) appears on every node with 3 replicas per
    partition spread over the nodes; too large a replication factor is refused; delete;
  * the controller leader is SIGKILLed: a new controller within seconds, topics can still be
    created, and the killed node restarted rejoins and sees what was created meanwhile; a 4th
    node joins later;
  * bad cases: a node whose seed is unreachable keeps retrying with a clear log line and does
    not crash; a second node with a node id in use is refused with a clear error and exits.

Every wait is bounded (deadline loops); each test builds its own cluster (about 3 s each).
"""
import json
import os
import signal
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic
from kafka.errors import InvalidReplicationFactorError

from ailurus_harness import admin_port, binary, frame, header, pick_port, recv_frame, wait_for


@pytest.fixture
def cluster3(cluster_factory):
    return cluster_factory(3)


# ---- a small Metadata v1 client: ask one node for its own view ----

class Rd:
    def __init__(self, b):
        self.b, self.p = b, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.b, self.p)
        self.p += struct.calcsize(fmt)
        return v[0]

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        s = self.b[self.p:self.p + n].decode()
        self.p += n
        return s

    def array(self, fn):
        return [fn() for _ in range(self.take(">i"))]


def metadata(node, topics=None, timeout=5.0):
    """Metadata v1 from node (a harness Broker): (brokers {id: (host, port)}, controller id,
    topics {name: (error, [(partition, leader, replicas)])})."""
    body = struct.pack(">i", -1) if topics is None else (
        struct.pack(">i", len(topics)) +
        b"".join(struct.pack(">h", len(t)) + t.encode() for t in topics))
    with socket.create_connection(("127.0.0.1", node.port), timeout=timeout) as s:
        s.sendall(frame(header(3, 1, 7) + body))
        r = Rd(recv_frame(s, timeout))
    r.take(">i")  # correlation id

    def broker():
        nid, host, port = r.take(">i"), r.string(), r.take(">i")
        r.string()  # rack
        return nid, (host, port)

    def partition():
        r.take(">h")
        pid, leader = r.take(">i"), r.take(">i")
        replicas = r.array(lambda: r.take(">i"))
        r.array(lambda: r.take(">i"))  # isr
        return pid, leader, replicas

    def topic():
        err, name = r.take(">h"), r.string()
        r.take(">b")  # internal
        return name, (err, r.array(partition))

    brokers = dict(r.array(broker))
    controller = r.take(">i")
    return brokers, controller, dict(r.array(topic))


def admin_get(node, path):
    url = "http://127.0.0.1:%d%s" % (admin_port(node), path)
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def voters_ready(c, i, want):
    """True once node i's admin API shows want controller voters (fault tolerance: a cluster
    that just formed promotes its learners one at a time)."""
    return sum(b["controller_voter"] for b in admin_get(c.nodes[i], "/v1/brokers")) == want


def controller_everywhere(c, nodes):
    """The controller id every node in nodes agrees on (and lists them all), else None."""
    views = [metadata(c.nodes[i]) for i in nodes]
    ctl = {v[1] for v in views}
    if len(ctl) != 1 or -1 in ctl:
        return None
    return ctl.pop()


# ---- tests ----

def test_three_nodes_form_a_cluster(cluster3):
    c = cluster3
    ctl = wait_for("one controller everywhere", lambda: controller_everywhere(c, [0, 1, 2]))
    # __consumer_offsets: created by the controller once 3 nodes are active (replication
    # factor 3, so groups fail over; handler_groups.c), shortly after the last one joined.
    wait_for("__consumer_offsets everywhere",
             lambda: all("__consumer_offsets" in metadata(n)[2] for n in c.nodes))
    for node in c.nodes:
        brokers, controller, topics = metadata(node)
        assert sorted(brokers) == [1, 2, 3]
        for b in c.nodes:
            assert brokers[b.node_id] == ("127.0.0.1", b.port)
        assert controller == ctl
        assert "__consumer_offsets" in topics
    a = KafkaAdminClient(bootstrap_servers=c.nodes[2].addr, request_timeout_ms=10000)
    try:
        d = a.describe_cluster()
        assert sorted(b["node_id"] for b in d["brokers"]) == [1, 2, 3]
        assert d["controller_id"] == ctl
        ids = {d["cluster_id"]}
    finally:
        a.close()
    # Every node answers with the cluster's id (the founder's), in its ready line too.
    for node in c.nodes:
        assert "cluster_id=%s" % ids.copy().pop() in node.log_text()
    # Admin API: every broker, alive; the health overview agrees.
    brokers = wait_for("all brokers alive in the admin API",
                       lambda: (lambda bs: bs if all(b["is_alive"] for b in bs) and len(bs) == 3
                                else None)(admin_get(c.nodes[1], "/v1/brokers")))
    assert sorted(b["node_id"] for b in brokers) == [1, 2, 3]
    h = admin_get(c.nodes[0], "/v1/cluster/health_overview")
    assert h["is_healthy"] and h["controller_id"] == ctl
    assert sorted(h["all_nodes"]) == [1, 2, 3] and h["nodes_down"] == []


def test_topic_through_a_follower_everywhere_then_deleted(cluster3):
    c = cluster3
    ctl = wait_for("one controller everywhere", lambda: controller_everywhere(c, [0, 1, 2]))
    follower = 2 if ctl != 2 else 3
    a = KafkaAdminClient(bootstrap_servers=c.nodes[follower - 1].addr, request_timeout_ms=15000)
    try:
        # kafka-python sends admin requests to the controller; point it at a follower so the
        # request is forwarded to the controller leader (as Redpanda allows).
        a._controller_id = follower
        r = a.create_topics([NewTopic("orders", 6, 3)])
        assert all(e[1] == 0 for e in r.topic_errors), r
        with pytest.raises(InvalidReplicationFactorError):  # 4 replicas, 3 nodes
            a.create_topics([NewTopic("too-wide", 1, 4)])
        with pytest.raises(InvalidReplicationFactorError):  # validate-only checks it too
            a.create_topics([NewTopic("too-wide", 1, 4)], validate_only=True)
        r = a.create_topics([NewTopic("only-validated", 2, 3)], validate_only=True)
        assert r.topic_errors[0][1] == 0, r

        def spread_everywhere():
            for node in c.nodes:
                _, _, topics = metadata(node, ["orders"])
                err, parts = topics["orders"]
                if err or len(parts) != 6:
                    return None
                for _, _, replicas in parts:
                    assert sorted(replicas) == [1, 2, 3]
            return parts
        parts = wait_for("orders on every node", spread_everywhere)
        # Preferred leaders (first replica) spread over the nodes (placement counts every
        # topic's load, __consumer_offsets' too).
        firsts = [replicas[0] for _, _, replicas in parts]
        assert len(set(firsts)) >= 2, parts
        # Every node hosts a replica of every partition: a directory per partition.
        for node in c.nodes:
            kdir = os.path.join(node.data_dir, "kafka")
            dirs = [d for d in os.listdir(kdir) if d.startswith("orders-")]
            assert len(dirs) == 1 and len(os.listdir(os.path.join(kdir, dirs[0]))) == 6

        # More partitions and a config change, also through the controller.
        r = a.create_partitions({"orders": NewPartitions(8)})
        assert r.topic_errors[0][1] == 0, r
        r = a.alter_configs([ConfigResource(ConfigResourceType.TOPIC, "orders",
                                            configs={"retention.ms": "3600000"})])
        assert r.resources[0][0] == 0, r

        def grown_and_configured():
            for node in c.nodes:
                _, _, topics = metadata(node, ["orders"])
                if len(topics["orders"][1]) != 8:
                    return False
            b = KafkaAdminClient(bootstrap_servers=c.nodes[(follower) % 3].addr)
            try:
                res = b.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "orders")])
                entries = res[0].resources[0][4]
                return any(e[0] == "retention.ms" and e[1] == "3600000" for e in entries)
            finally:
                b.close()
        wait_for("8 partitions and the new retention everywhere", grown_and_configured)

        assert "only-validated" not in metadata(c.nodes[0])[2]  # nothing was proposed
        r = a.delete_topics(["orders"])
        assert all(e[1] == 0 for e in r.topic_error_codes), r
        wait_for("orders gone everywhere", lambda: all(
            metadata(n, ["orders"])[2]["orders"][0] == 3 for n in c.nodes))
    finally:
        a.close()


def test_controller_failover_and_rejoin_and_a_fourth_node(cluster_factory):
    c = cluster_factory(3)
    old = wait_for("one controller", lambda: controller_everywhere(c, [0, 1, 2]))
    wait_for("3 controller voters", lambda: voters_ready(c, old - 1, 3))
    c.kill(old - 1)
    t0 = time.monotonic()
    rest = [i for i in range(3) if i != old - 1]
    new = wait_for("a new controller", lambda: (
        lambda x: x if x not in (None, old) else None)(controller_everywhere(c, rest)),
        timeout=15)
    took = time.monotonic() - t0
    assert took < 10, "new controller after %.1f s" % took
    a = KafkaAdminClient(bootstrap_servers=c.nodes[rest[0]].addr, request_timeout_ms=15000)
    try:
        r = a.create_topics([NewTopic("after-failover", 3, 3)])
        assert r.topic_errors[0][1] == 0, r
    finally:
        a.close()
    c.restart(old - 1)  # rejoins: its ready line waits for the controller state
    _, _, topics = metadata(c.nodes[old - 1], ["after-failover"])
    err, parts = topics["after-failover"]
    assert err == 0 and len(parts) == 3
    assert all(len(replicas) == 3 for _, _, replicas in parts)
    assert controller_everywhere(c, [0, 1, 2]) == new

    d = c.add_node()
    brokers = wait_for("4 brokers everywhere", lambda: all(
        sorted(metadata(n)[0]) == [1, 2, 3, 4] for n in c.nodes) and metadata(d)[0])
    assert sorted(brokers) == [1, 2, 3, 4]
    assert "after-failover" in metadata(d)[2]


def test_whole_cluster_restart_two_shards(cluster_factory):
    """Every node stops and starts again: the controller logs give each node its peers'
    addresses before any commit index is known, a leader is elected, the topics survive (with 2
    shards per node: the table is installed on every shard, partitions open on the shard their
    assignment names)."""
    c = cluster_factory(3, smp=2)
    wait_for("one controller", lambda: controller_everywhere(c, [0, 1, 2]))
    a = KafkaAdminClient(bootstrap_servers=c.nodes[0].addr, request_timeout_ms=15000)
    try:
        r = a.create_topics([NewTopic("survivor", 8, 3)])
        assert r.topic_errors[0][1] == 0, r
    finally:
        a.close()
    wait_for("survivor everywhere", lambda: all(
        metadata(n, ["survivor"])[2]["survivor"][0] == 0 for n in c.nodes))
    for i in range(3):
        wait_for("3 controller voters", lambda: voters_ready(c, i, 3))
    c.stop()
    c.start()
    ctl = wait_for("one controller after the restart",
                   lambda: controller_everywhere(c, [0, 1, 2]))
    assert ctl in (1, 2, 3)
    for node in c.nodes:
        _, _, topics = metadata(node)
        assert topics["survivor"][0] == 0 and len(topics["survivor"][1]) == 8
        # Every node hosts a replica of each of the 8 partitions.
        kdir = os.path.join(node.data_dir, "kafka")
        sdir = [d for d in os.listdir(kdir) if d.startswith("survivor-")][0]
        assert len(os.listdir(os.path.join(kdir, sdir))) == 8


def test_unreachable_seed_keeps_retrying():
    tmp = tempfile.mkdtemp(prefix="ailurus-it-")
    dead = pick_port()
    cmd = [binary(), "start", "--node-id", "5", "--kafka-addr", "127.0.0.1:%d" % pick_port(),
           "--rpc-addr", "127.0.0.1:%d" % pick_port(), "--admin-addr", "127.0.0.1:0",
           "--data-dir", os.path.join(tmp, "data"), "--smp", "1",
           "--seed-servers", "127.0.0.1:%d" % dead]
    log_path = os.path.join(tmp, "node.log")
    with open(log_path, "wb") as log:
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        def log_text():
            with open(log_path, errors="replace") as f:
                return f.read()
        wait_for("the join retry line",
                 lambda: "cannot join the cluster through seed 127.0.0.1:%d" % dead in log_text(),
                 timeout=10)
        time.sleep(2.5)  # keeps trying, does not crash
        assert p.poll() is None, log_text()
        assert "ready:" not in log_text()
        text = log_text()
        assert "retrying" in text and "seed_servers" in text
    finally:
        p.send_signal(signal.SIGTERM)
        rc = p.wait(15)
    assert rc == 0, log_text()
    for marker in ("AddressSanitizer", "runtime error:", "PANIC", "Assertion failed"):
        assert marker not in log_text()
    subprocess.run(["rm", "-rf", tmp], check=False)


def test_duplicate_node_id_is_refused(cluster3):
    c = cluster3
    wait_for("one controller everywhere", lambda: controller_everywhere(c, [0, 1, 2]))
    tmp = tempfile.mkdtemp(prefix="ailurus-it-")
    cmd = [binary(), "start", "--node-id", "2", "--kafka-addr", "127.0.0.1:%d" % pick_port(),
           "--rpc-addr", "127.0.0.1:%d" % pick_port(), "--admin-addr", "127.0.0.1:0",
           "--data-dir", os.path.join(tmp, "data"), "--smp", "1", "--seed-servers", c.seeds]
    log_path = os.path.join(tmp, "node.log")
    with open(log_path, "wb") as log:
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        rc = p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(10)
        rc = None
    with open(log_path, errors="replace") as f:
        text = f.read()
    assert rc not in (None, 0), text
    assert "refused by the cluster" in text and "node id 2 is already used" in text, text
    assert "ready:" not in text
    # The cluster is unharmed: still 3 brokers, node 2 at its own address.
    brokers, _, _ = metadata(c.nodes[0])
    assert brokers[2] == ("127.0.0.1", c.nodes[1].port)
    subprocess.run(["rm", "-rf", tmp], check=False)


def test_single_node_mode_unchanged(broker):
    """Without seed_servers nothing of the cluster runs: one broker, itself the controller, the
    topic catalogue in topics.json, no controller log, and the health overview answers for the
    node alone."""
    brokers, controller, topics = metadata(broker)
    assert list(brokers) == [0] and controller == 0
    assert "__consumer_offsets" in topics
    assert os.path.exists(os.path.join(broker.data_dir, "topics.json"))
    assert not os.path.exists(os.path.join(broker.data_dir, "controller"))
    h = admin_get(broker, "/v1/cluster/health_overview")
    assert h["is_healthy"] and h["controller_id"] == -1 and h["nodes_down"] == []
    assert "rpc on" not in broker.log_text()  # the node service did not start
