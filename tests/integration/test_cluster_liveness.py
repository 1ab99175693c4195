"""test_cluster_liveness.py — what a cluster tells clients about nodes that are down, draining or
new (issue 7), on real 3-node clusters (harness Cluster, 127.0.0.1):

- Metadata lists live brokers only: a SIGKILLed node leaves every live node's broker list
  (Kafka lists registered, unfenced brokers), its partitions name it in replicas and offline
  replicas but not in the ISR, never as leader; librdkafka, kafka-python and kafkajs produce and
  consume meanwhile; it is listed again once it is back.
- A node in maintenance mode wins no election: over several rounds of SIGKILLing the active
  leader, every partition moves to the other active node, never to the drained one; when the
  only active voter left cannot win (its log is behind), the drained node takes over after a
  while and hands over once it caught up; with every live replica draining, the drained nodes
  lead (availability beats draining).
- __consumer_offsets created on a one-node cluster (first use: replication factor 1) is raised
  to 3 replicas per partition when two nodes join; the founder (its only copy before) is then
  SIGKILLed and the group's committed offset is still there.
"""
import http.client
import json
import os
import re
import socket
import struct
import subprocess
import time

import pytest

from ailurus_harness import frame, header, recv_frame, wait_for

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

ADMIN_RE = re.compile(r"admin API listening on [0-9.]+:(\d+)")
JS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "js")


@pytest.fixture
def cluster3(cluster_factory):
    return cluster_factory(3)


# ---- Metadata v5 from one node (offline replicas are v5+) ----

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


def metadata(node, topics, timeout=5.0):
    """Metadata v5 asked of node: (broker ids, controller, {topic: {partition: (error, leader,
    replicas, isr, offline)}})."""
    body = struct.pack(">i", len(topics)) + b"".join(
        struct.pack(">h", len(t)) + t.encode() for t in topics) + b"\x00"  # no auto-create
    with socket.create_connection(("127.0.0.1", node.port), timeout=timeout) as s:
        s.sendall(frame(header(3, 5, 9) + body))
        r = Rd(recv_frame(s, timeout))
    r.take(">i")  # correlation id
    r.take(">i")  # throttle

    def broker():
        nid = r.take(">i")
        r.string()
        r.take(">i")
        r.string()
        return nid

    ints = lambda: r.array(lambda: r.take(">i"))  # noqa: E731

    def partition():
        err, pid, leader = r.take(">h"), r.take(">i"), r.take(">i")
        return pid, (err, leader, ints(), ints(), ints())

    def topic():
        err, name = r.take(">h"), r.string()
        r.take(">b")
        parts = dict(r.array(partition))
        assert err == 0, (name, err)
        return name, parts

    brokers = set(r.array(broker))
    r.string()  # cluster id
    controller = r.take(">i")
    return brokers, controller, dict(r.array(topic))


# ---- clients ----

def confluent_roundtrip(bootstrap, topic, n, tag):
    """Produces n acks=all records with librdkafka and reads them back in a fresh group.
    Returns the values read that carry tag."""
    errs = []
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "message.timeout.ms": 20000})
    for i in range(n):
        p.produce(topic, ("%s-%d" % (tag, i)).encode(), on_delivery=lambda e, m: errs.append(e))
    p.flush(30)
    assert errs == [None] * n, errs
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "g-" + tag,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got = set()
    deadline = time.monotonic() + 40
    try:
        while time.monotonic() < deadline and len(got) < n:
            m = c.poll(0.5)
            if m is not None and not m.error() and m.value().decode().startswith(tag):
                got.add(m.value().decode())
    finally:
        c.close()
    return got


def kafka_python_roundtrip(bootstrap, topic, n, tag):
    kp = pytest.importorskip("kafka")
    p = kp.KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all", retries=10,
                         request_timeout_ms=15000)
    first = {}
    for i in range(n):
        md = p.send(topic, ("%s-%d" % (tag, i)).encode()).get(timeout=30)
        first[md.partition] = min(first.get(md.partition, md.offset), md.offset)
    p.close()
    # From its own first records: kafka-python 2.0.2 raises IndexError on a fetch that holds
    # only a control batch (a new leader's NOOP, docs/ARCHITECTURE.md "Raft replica"), which
    # is not what this checks.
    c = kp.KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id="g-" + tag,
                         consumer_timeout_ms=20000, enable_auto_commit=False)
    tps = [kp.TopicPartition(topic, part) for part in sorted(first)]
    c.assign(tps)
    for tp in tps:
        c.seek(tp, first[tp.partition])
    got = set()
    deadline = time.monotonic() + 40
    try:
        for m in c:
            v = m.value.decode()
            if v.startswith(tag):
                got.add(v)
            if len(got) >= n or time.monotonic() > deadline:
                break
    finally:
        c.close()
    return got


KAFKAJS_ROUNDTRIP = r"""
const { Kafka, logLevel } = require('kafkajs');
const [brokers, topic, n, tag] = process.argv.slice(1);
const kafka = new Kafka({ clientId: 'liveness', brokers: brokers.split(','),
                          logLevel: logLevel.NOTHING, retry: { retries: 10 } });
(async () => {
  const p = kafka.producer();
  await p.connect();
  const msgs = [];
  for (let i = 0; i < +n; i++) msgs.push({ value: `${tag}-${i}` });
  const sent = await p.send({ topic, acks: -1, messages: msgs });
  await p.disconnect();
  const c = kafka.consumer({ groupId: 'g-' + tag });
  await c.connect();
  await c.subscribe({ topic, fromBeginning: true });
  const got = new Set();
  await new Promise((resolve, reject) => {
    const t = setTimeout(resolve, 60000);
    c.run({ eachMessage: async ({ message }) => {
      const v = message.value.toString();
      if (v.startsWith(tag)) got.add(v);
      if (got.size >= +n) { clearTimeout(t); resolve(); }
    } }).then(() => {
      /* from its own records (as the kafka-python leg) */
      for (const s of sent) c.seek({ topic, partition: s.partition, offset: s.baseOffset });
    }).catch(reject);
  });
  await c.disconnect();
  const admin = kafka.admin();
  await admin.connect();
  const offsets = await admin.fetchTopicOffsets(topic);
  await admin.disconnect();
  console.log(JSON.stringify({ got: [...got], sent, offsets }));
})().catch((e) => { console.error(e); process.exit(1); });
"""


def kafkajs_roundtrip(bootstrap, topic, n, tag):
    if not os.path.isdir(os.path.join(JS, "node_modules", "kafkajs")):
        pytest.skip("kafkajs not installed (tests/integration/js: npm ci)")
    r = subprocess.run(["node", "-e", KAFKAJS_ROUNDTRIP, bootstrap, topic, str(n), tag],
                       cwd=JS, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    out = json.loads(r.stdout.decode().strip().splitlines()[-1])
    print("kafkajs:", out)
    return set(out["got"])


# ---- tests ----

def test_metadata_lists_live_brokers_only(cluster3):
    c = cluster3
    a = AdminClient({"bootstrap.servers": c.bootstrap})
    for f in a.create_topics([NewTopic("live3", 3, 3)], request_timeout=15).values():
        f.result(timeout=20)
    ids = {b.node_id for b in c.nodes}

    def settled(nodes, brokers):
        for i in nodes:
            got, ctl, topics = metadata(c.nodes[i], ["live3"])
            if got != brokers or ctl not in brokers:
                return False
            for err, leader, replicas, isr, offline in topics["live3"].values():
                if err or leader not in brokers or set(replicas) != ids:
                    return False
                if set(isr) != brokers or set(offline) != ids - brokers:
                    return False
        return True

    wait_for("every node lists 3 brokers, full ISRs", lambda: settled(range(3), ids))
    down = 2
    c.kill(down)
    live = [0, 1]
    alive = ids - {c.nodes[down].node_id}
    # Dropped from the brokers, the ISR and leaderships; still a replica (offline).
    wait_for("the killed node dropped from Metadata", lambda: settled(live, alive))
    boot = ",".join(c.nodes[i].addr for i in live)
    assert confluent_roundtrip(boot, "live3", 20, "ck") == {"ck-%d" % i for i in range(20)}
    assert kafka_python_roundtrip(boot, "live3", 20, "kp") == {"kp-%d" % i for i in range(20)}
    assert kafkajs_roundtrip(boot, "live3", 20, "js") == {"js-%d" % i for i in range(20)}
    # The clients changed nothing about it. Not an instant check: the leader balancer may be
    # moving leaderships between the live nodes right now (it evens them out after the kill),
    # and a partition shows no leader for the moment of a transfer (CI saw this once).
    wait_for("the killed node still out of Metadata after the clients",
             lambda: settled(live, alive), timeout=30)
    c.restart(down)
    wait_for("the node listed again, back in every ISR", lambda: settled(range(3), ids))


def admin(node, method, path):
    """The node's admin API (port from its last start's log): (status, JSON)."""
    ports = ADMIN_RE.findall(node.log_text())
    assert ports, node.log_text()[-2000:]
    c = http.client.HTTPConnection("127.0.0.1", int(ports[-1]), timeout=20)
    c.request(method, path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, (json.loads(body) if body else None)


def leaders(c, via, topic):
    """{partition: leader} as node index via sees it (-1: none)."""
    return {p: v[1] for p, v in metadata(c.nodes[via], [topic])[2][topic].items()}


def in_sync(c, via, topic, ids):
    """Every partition of topic led, with every node of ids in its ISR, as node via sees it."""
    parts = metadata(c.nodes[via], [topic])[2][topic]
    return all(leader >= 0 and set(isr) == set(ids) for _, leader, _, isr, _ in parts.values())


def test_maintenance_node_wins_no_election(cluster3):
    c = cluster3
    a = AdminClient({"bootstrap.servers": c.bootstrap})
    for f in a.create_topics([NewTopic("mm", 6, 3)], request_timeout=15).values():
        f.result(timeout=20)
    ids = [b.node_id for b in c.nodes]
    wait_for("every partition led", lambda: all(
        v >= 0 for v in leaders(c, 0, "mm").values()))
    drained = 0  # index; its node id is ids[0]
    wait_for("maintenance on", lambda: admin(
        c.nodes[1], "PUT", "/v1/brokers/%d/maintenance" % ids[drained])[0] == 200, step=0.5)
    wait_for("no leadership left on the drained node", lambda: all(
        v >= 0 and v != ids[drained] for v in leaders(c, 1, "mm").values()))
    elections = 0
    for rnd in range(4):
        victim = 1 + rnd % 2  # the two active nodes in turn
        other = 3 - victim
        # Every replica caught up before the kill, in round 0 too: a partition whose surviving
        # active replica lacks the killed leader's last entry (e.g. its first entry after the
        # maintenance hand-over) can only be won by the drained node, which then campaigns
        # after a delay and hands the leadership on; correct Raft, but not what this tests
        # (CI saw it once in round 0, which had no such wait).
        wait_for("every replica in every ISR before the kill", lambda: in_sync(c, other, "mm", ids))
        led = [p for p, v in leaders(c, other, "mm").items() if v == ids[victim]]
        c.kill(victim)
        # Sample what both live nodes say until every partition is led again.
        deadline = time.monotonic() + 30
        done = False
        while time.monotonic() < deadline and not done:
            views = [leaders(c, i, "mm") for i in (drained, other)]
            for v in views:
                assert ids[drained] not in v.values(), (rnd, views)
            done = all(x == ids[other] for x in views[1].values())
            time.sleep(0.05)
        assert done, (rnd, views)
        elections += len(led)
        c.restart(victim)
        # caught up (in every ISR) before the next kill: only then can it win an election
        wait_for("the restarted node back in every ISR", lambda: in_sync(c, other, "mm", ids))
        # the balancer may hand some back to it; the drained node still leads nothing
        assert ids[drained] not in leaders(c, other, "mm").values()
    assert elections >= 4, elections  # partitions really changed hands through elections
    # The only active voter left cannot win (restarted, its log lacks the last term's entry):
    # after CR_DRAIN_ELECT_MS leaderless the drained node campaigns (availability beats
    # draining), then hands each leadership over once the active node has caught up.
    c.kill(1)
    wait_for("node 3 leads everything", lambda: all(
        v == ids[2] for v in leaders(c, 2, "mm").values()), timeout=30)
    c.restart(1)
    c.kill(2)
    wait_for("every partition led again", lambda: all(
        v in (ids[0], ids[1]) for v in leaders(c, 1, "mm").values()), timeout=40)
    wait_for("the leaderships handed to the active node", lambda: all(
        v == ids[1] for v in leaders(c, 1, "mm").values()), timeout=40)
    c.restart(2)
    # Every live replica draining: availability beats draining.
    wait_for("maintenance on a second node", lambda: admin(
        c.nodes[0], "PUT", "/v1/brokers/%d/maintenance" % ids[1])[0] == 200, step=0.5)
    wait_for("node 3 back in every ISR", lambda: in_sync(c, 1, "mm", ids))
    c.kill(2)
    wait_for("the drained nodes lead when nobody else can", lambda: all(
        v in (ids[0], ids[1]) for v in leaders(c, 0, "mm").values()), timeout=30)


def test_consumer_offsets_replication_raised_when_nodes_join(cluster_factory):
    c = cluster_factory(1)
    a = AdminClient({"bootstrap.servers": c.bootstrap})
    for f in a.create_topics([NewTopic("co1", 1, 1)], request_timeout=15).values():
        f.result(timeout=20)

    def commit():
        cons = Consumer({"bootstrap.servers": c.nodes[0].addr, "group.id": "g-co",
                         "enable.auto.commit": False})
        try:
            cons.commit(offsets=[TopicPartition("co1", 0, 7)], asynchronous=False)
        finally:
            cons.close()
        return True
    wait_for("an offset committed (creates __consumer_offsets, RF 1)", commit)
    _, _, t = metadata(c.nodes[0], ["__consumer_offsets"])
    parts = t["__consumer_offsets"]
    assert len(parts) == 16 and all(len(v[2]) == 1 for v in parts.values()), parts
    c.add_node()
    c.add_node()
    ids = {b.node_id for b in c.nodes}

    def raised():
        for i in range(3):
            _, _, t = metadata(c.nodes[i], ["__consumer_offsets"])
            for err, leader, replicas, isr, offline in t["__consumer_offsets"].values():
                if err or set(replicas) != ids or set(isr) != ids:
                    return False
        return True
    wait_for("every __consumer_offsets partition on 3 nodes, in sync", raised, timeout=90)
    # Its first and only copy before is gone: the committed offset survives.
    c.kill(0)
    boot = ",".join(c.nodes[i].addr for i in (1, 2))

    def fetched():
        cons = Consumer({"bootstrap.servers": boot, "group.id": "g-co",
                         "enable.auto.commit": False})
        try:
            got = cons.committed([TopicPartition("co1", 0)], timeout=10)
        except KafkaException:
            return None
        finally:
            cons.close()
        return got[0].offset == 7
    wait_for("the committed offset through another coordinator", fetched, timeout=60)
