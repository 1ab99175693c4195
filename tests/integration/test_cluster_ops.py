"""Cluster operations (issue 7): moving a partition's replicas while a producer writes,
maintenance mode (leaders drained from a node, given back by the leader balancer after it
ends), decommissioning a node of four (its replicas move, it leaves Metadata), and the leader
balancer evening out leaders after a restart.

Each test starts its own cluster of real `ailurus start` processes on 127.0.0.1 (node ids
0..n-1, node 0 founds it), drives the admin API over HTTP and uses confluent_kafka
(librdkafka) as the client. Every wait is bounded."""

import glob
import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from ailurus_harness import admin_port, binary, wait_for


@pytest.fixture
def cluster3(cluster_factory):
    """3 started nodes with ids 0..2 (conftest's cluster_factory: files kept on a failure)."""
    return cluster_factory(3, first_id=0)


@pytest.fixture
def cluster4(cluster_factory):
    """4 started nodes with ids 0..3."""
    return cluster_factory(4, first_id=0)


def admin(node, method, path, body=None):
    url = "http://127.0.0.1:%d%s" % (admin_port(node), path)
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def admin_ok(node, method, path, body=None, timeout=20.0):
    """Retries while the controller is not ready (503)."""
    def attempt():
        st, j = admin(node, method, path, body)
        assert st != 503, j
        assert st == 200, (st, j)
        return j or True
    return wait_for("%s %s" % (method, path), attempt, timeout=timeout, step=0.5)


def cli(node, *args):
    """Runs `ailurus cluster ...` against node's admin API; returns (rc, parsed JSON or text)."""
    r = subprocess.run([binary(), "cluster"] + list(args) +
                       ["--admin-url", "http://127.0.0.1:%d" % admin_port(node),
                        "--format", "json"], capture_output=True, text=True, timeout=60)
    try:
        return r.returncode, json.loads(r.stdout)
    except ValueError:
        return r.returncode, r.stdout + r.stderr


def create_topic(c, name, partitions, rf=3):
    a = AdminClient({"bootstrap.servers": c.bootstrap})
    a.create_topics([NewTopic(name, partitions, rf)], request_timeout=20)[name].result(timeout=30)


def partitions_of(c, topic, via=None):
    """{partition: (leader, [replicas])} from a node's Metadata (confluent_kafka)."""
    boot = c.nodes[via].addr if via is not None else c.bootstrap
    a = AdminClient({"bootstrap.servers": boot})
    md = a.list_topics(topic, timeout=10)
    t = md.topics[topic]
    assert t.error is None, t.error
    return {p.id: (p.leader, list(p.replicas)) for p in t.partitions.values()}


def leaders_per_node(c, topic, n, via=None):
    counts = [0] * n
    for leader, _ in partitions_of(c, topic, via).values():
        if leader >= 0:
            counts[leader] += 1
    return counts


def read_all(c, topic, partitions, expect, timeout=40.0):
    """Consumes every partition from the start until expect values were seen (or timeout)."""
    cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": "ops-verify",
                     "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    cons.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    seen = set()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not expect <= seen:
            m = cons.poll(0.5)
            if m is None or m.error():
                continue
            seen.add(m.value().decode())
    finally:
        cons.close()
    return seen


class Writer:
    """Produces "v<i>" with acks=all in a thread; acked holds every acknowledged value."""

    def __init__(self, c, topic, partition=None):
        self.p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all",
                           "enable.idempotence": True, "linger.ms": 5,
                           "message.timeout.ms": 60000})
        self.topic = topic
        self.partition = partition
        self.acked = set()
        self.failed = []
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)

    def cb(self, err, msg):
        if err:
            self.failed.append(str(err))
        else:
            self.acked.add(msg.value().decode())

    def run(self):
        i = 0
        while not self.stop_ev.is_set() and i < 200000:
            kw = {} if self.partition is None else {"partition": self.partition}
            try:
                self.p.produce(self.topic, value=("v%d" % i).encode(), callback=self.cb, **kw)
                i += 1
            except BufferError:
                pass
            self.p.poll(0.01)
        self.p.flush(60)

    def start(self):
        self.t.start()
        return self

    def stop(self):
        self.stop_ev.set()
        self.t.join(90)
        assert not self.t.is_alive(), "producer did not finish"


def test_move_partition_while_producing(cluster4):
    c = cluster4
    create_topic(c, "mv", 1, 3)
    _, replicas = wait_for("mv/0 leader", lambda: (lambda p: p if p[0] >= 0 else None)(
        partitions_of(c, "mv")[0]))
    outside = [i for i in range(4) if i not in replicas][0]
    leaving = partitions_of(c, "mv")[0][0]  # move the leader's replica away: the hardest case
    target = [r for r in replicas if r != leaving] + [outside]
    dirs = glob.glob(os.path.join(c.nodes[leaving].data_dir, "kafka", "mv-*", "0"))
    assert len(dirs) == 1, dirs

    w = Writer(c, "mv", 0).start()
    wait_for("some acks", lambda: len(w.acked) >= 50)
    # any node accepts it (forwarded to the controller leader)
    body = [{"node_id": n} for n in target]
    admin_ok(c.nodes[outside], "POST", "/v1/partitions/kafka/mv/0/replicas", body)

    def moved():
        leader, reps = partitions_of(c, "mv", via=target[0])[0]
        return sorted(reps) == sorted(target) and leader in target
    wait_for("Metadata shows the new replicas and a leader among them", moved, timeout=40)
    wait_for("no reconfiguration left", lambda: all(
        admin(c.nodes[i], "GET", "/v1/partitions/reconfigurations") == (200, [])
        for i in target), timeout=40)
    wait_for("the leaving node deleted its copy", lambda: not os.path.exists(dirs[0]), timeout=30)
    n_before = len(w.acked)
    wait_for("acks after the move", lambda: len(w.acked) >= n_before + 50, timeout=30)
    w.stop()
    assert not w.failed, w.failed[:5]
    got = read_all(c, "mv", 1, w.acked)
    missing = w.acked - got
    assert not missing, "%d acked records lost, e.g. %s" % (len(missing), sorted(missing)[:5])
    # the new replica holds the data on disk
    assert glob.glob(os.path.join(c.nodes[outside].data_dir, "kafka", "mv-*", "0", "*.log"))
    for b in c.nodes:
        assert "AddressSanitizer" not in b.log_text()


def test_maintenance_drains_and_balancer_gives_back(cluster3):
    c = cluster3
    create_topic(c, "mt", 6, 3)
    wait_for("every partition led", lambda: all(
        l >= 0 for l, _ in partitions_of(c, "mt").values()))
    counts = wait_for("leaders on every node", lambda: (lambda k: k if min(k) > 0 else None)(
        leaders_per_node(c, "mt", 3)), timeout=40)
    node = max(range(3), key=lambda i: counts[i])
    other = (node + 1) % 3
    # through the CLI (retried while the controller settles)
    wait_for("maintenance enable accepted", lambda: cli(
        c.nodes[other], "maintenance", "enable", str(node))[0] == 0, timeout=20, step=0.5)
    t0 = time.monotonic()
    wait_for("no leader left on the drained node", lambda: leaders_per_node(
        c, "mt", 3, via=other)[node] == 0 and all(
        l >= 0 for l, _ in partitions_of(c, "mt", via=other).values()), timeout=15)
    drain_s = time.monotonic() - t0
    st = wait_for("maintenance status finished", lambda: (lambda r: r[1] if r[0] == 0 and
                                                          r[1]["finished"] else None)(
        cli(c.nodes[other], "maintenance", "status", str(node))), timeout=10)
    assert st["draining"] and st["leaders"] == 0
    # clients keep working
    w = Writer(c, "mt").start()
    wait_for("acks during maintenance", lambda: len(w.acked) >= 100, timeout=30)
    w.stop()
    assert not w.failed, w.failed[:5]
    # the balancer does not hand leaderships back while it is draining
    time.sleep(1)
    assert leaders_per_node(c, "mt", 3, via=other)[node] == 0
    admin_ok(c.nodes[other], "DELETE", "/v1/brokers/%d/maintenance" % node)
    wait_for("the balancer gives leaderships back", lambda: leaders_per_node(
        c, "mt", 3, via=other)[node] > 0, timeout=30)
    print("drained in %.1f s" % drain_s)


def test_decommission_node(cluster4):
    c = cluster4
    create_topic(c, "dc", 4, 3)
    wait_for("every partition led", lambda: all(
        l >= 0 for l, _ in partitions_of(c, "dc").values()))
    node = 3
    w = Writer(c, "dc").start()
    wait_for("some acks", lambda: len(w.acked) >= 50)
    admin_ok(c.nodes[0], "PUT", "/v1/brokers/%d/decommission" % node)

    def done():
        _, j = admin(c.nodes[1], "GET", "/v1/brokers/%d/decommission" % node)
        return j if j.get("finished") else None
    st = wait_for("decommission finished", done, timeout=90, step=0.5)
    assert st["replicas_left"] == 0 and st["status"] == "removed"
    for p, (leader, reps) in partitions_of(c, "dc", via=0).items():
        assert node not in reps, (p, reps)
    a = AdminClient({"bootstrap.servers": c.nodes[0].addr})
    assert node not in a.list_topics(timeout=10).brokers
    n_before = len(w.acked)
    wait_for("acks after the decommission", lambda: len(w.acked) >= n_before + 50, timeout=30)
    w.stop()
    assert not w.failed, w.failed[:5]
    got = read_all(c, "dc", 4, w.acked)
    assert w.acked <= got, "%d acked records lost" % len(w.acked - got)
    wait_for("node 3's partition copies deleted", lambda: not glob.glob(
        os.path.join(c.nodes[node].data_dir, "kafka", "dc-*", "*")), timeout=30)
    # a replica balance plan over the 3 remaining nodes (CLI), then no move left
    rc, out = cli(c.nodes[1], "partitions", "balance")
    assert rc == 0 and out["moves"] >= 0, out
    wait_for("balanced moves finished", lambda: (lambda r: r[0] == 0 and r[1]["items"] == [])(
        cli(c.nodes[1], "partitions", "status")), timeout=40, step=0.5)
    for p, (leader, reps) in partitions_of(c, "dc", via=1).items():
        assert node not in reps and len(reps) == 3, (p, reps)


def test_leader_balance_after_restart(cluster3):
    c = cluster3
    create_topic(c, "lb", 6, 3)
    wait_for("an even spread at first", lambda: leaders_per_node(c, "lb", 3) == [2, 2, 2],
             timeout=40)
    c.nodes[2].stop()
    wait_for("node 2's leaderships taken over", lambda: (lambda k: k[2] == 0 and sum(k) == 6)(
        leaders_per_node(c, "lb", 3, via=0)), timeout=30)
    c.nodes[2].start()
    wait_for("leaders even again after the restart",
             lambda: leaders_per_node(c, "lb", 3, via=0) == [2, 2, 2], timeout=60, step=0.5)


def test_move_survives_restarts(cluster4):
    """The new replica's node is SIGKILLed right after the move starts and the partition
    leader is restarted mid-way: the move resumes from the controller state and the Raft
    configs in the logs, and no acknowledged record is lost."""
    c = cluster4
    create_topic(c, "mr", 1, 3)
    leader, replicas = wait_for("mr/0 leader", lambda: (lambda p: p if p[0] >= 0 else None)(
        partitions_of(c, "mr")[0]))
    outside = [i for i in range(4) if i not in replicas][0]
    leaving = [r for r in replicas if r != leader][0]
    target = [r for r in replicas if r != leaving] + [outside]
    w = Writer(c, "mr", 0).start()
    wait_for("some acks", lambda: len(w.acked) >= 50)
    admin_ok(c.nodes[leader], "POST", "/v1/partitions/kafka/mr/0/replicas",
             [{"node_id": n} for n in target])
    c.nodes[outside].kill()
    time.sleep(1)
    c.nodes[outside].start()
    c.nodes[leader].stop()
    time.sleep(0.5)
    c.nodes[leader].start()

    def moved():
        l, reps = partitions_of(c, "mr", via=outside)[0]
        return sorted(reps) == sorted(target) and l in target
    wait_for("the move finished", moved, timeout=60)
    wait_for("no reconfiguration left", lambda: all(
        admin(c.nodes[i], "GET", "/v1/partitions/reconfigurations") == (200, [])
        for i in target), timeout=60)
    wait_for("the leaving node deleted its copy", lambda: not glob.glob(
        os.path.join(c.nodes[leaving].data_dir, "kafka", "mr-*", "0")), timeout=60)
    n_before = len(w.acked)
    wait_for("acks after the move", lambda: len(w.acked) >= n_before + 50, timeout=30)
    w.stop()
    got = read_all(c, "mr", 1, w.acked)
    missing = w.acked - got
    assert not missing, "%d acked records lost, e.g. %s" % (len(missing), sorted(missing)[:5])


def test_node_down_during_move_deletes_its_copy_on_restart(cluster4):
    """A follower is stopped, the partition moves away from it meanwhile; restarted, the node
    finds its copy no longer assigned and deletes it (start-up sweep)."""
    c = cluster4
    create_topic(c, "md", 1, 3)
    leader, replicas = wait_for("md/0 leader", lambda: (lambda p: p if p[0] >= 0 else None)(
        partitions_of(c, "md")[0]))
    outside = [i for i in range(4) if i not in replicas][0]
    gone = [r for r in replicas if r != leader and r != 0][0]  # keep the founder up
    target = [r for r in replicas if r != gone] + [outside]
    p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all"})
    for i in range(100):
        p.produce("md", value=b"x%d" % i, partition=0)
    assert p.flush(30) == 0
    copy = glob.glob(os.path.join(c.nodes[gone].data_dir, "kafka", "md-*", "0"))
    assert len(copy) == 1
    c.nodes[gone].stop()
    admin_ok(c.nodes[leader], "POST", "/v1/partitions/kafka/md/0/replicas",
             [{"node_id": n} for n in target])
    wait_for("the move finished without the stopped node", lambda: (lambda lr: sorted(lr[1]) ==
             sorted(target) and lr[0] in target)(partitions_of(c, "md", via=leader)[0]),
             timeout=40)
    wait_for("no reconfiguration left", lambda: admin(
        c.nodes[leader], "GET", "/v1/partitions/reconfigurations") == (200, []), timeout=40)
    assert os.path.exists(copy[0])
    c.nodes[gone].start()
    try:
        wait_for("the stale copy deleted after the restart",
                 lambda: not os.path.exists(copy[0]), timeout=30)
    except AssertionError as e:
        lines = [ln for ln in c.nodes[gone].log_text().splitlines() if "md/0" in ln or
                 "removed /" in ln or "closing" in ln]
        raise AssertionError("%s\n%s" % (e, "\n".join(lines[-30:])))
    assert read_all(c, "md", 1, {"x%d" % i for i in range(100)}) >= {
        "x%d" % i for i in range(100)}
