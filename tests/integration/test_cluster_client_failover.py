"""Real clients through a partition-leader failover (issue 7): "librdkafka and kafkajs clients
keep producing and consuming through a leader failover without application errors beyond
retries". For each client library an idempotent producer (acks=all) and a consumer GROUP run
at the same time on a 2-partition RF-3 topic of a 3-node cluster while the leader of partition
0 is SIGKILLed mid-stream. Checked afterwards:
  - the producer saw no error (every send acknowledged, retries inside the client only);
  - every acknowledged record is stored exactly once, at the offset it was acknowledged with
    (read back by partition from the surviving nodes), and nothing else is stored;
  - the group consumer saw every acknowledged record, and every record it was handed is the
    one stored at that partition and offset (re-deliveries after a rebalance are allowed:
    groups are at-least-once; their count is reported);
  - a new leader, agreed by both live nodes.

The consumer group's id is chosen so that the killed node is also the group's coordinator
(the preferred leader of its __consumer_offsets partition), so every run exercises the
coordinator failover, the harder case. A third test drains that node (maintenance mode: its
leaderships, the coordinator's included, move away while it stays up) under the kafkajs
scenario: there kafkajs must rejoin without any crash, as against Kafka.

kafkajs 2.2.4 looks the coordinator up again (ConsumerGroup JOIN -> cluster.findGroupCoordinator,
consumerGroup.js:167) only from joinAndSync, which the consumer reaches on NOT_COORDINATOR,
REBALANCE_IN_PROGRESS or ILLEGAL_GENERATION (errors.js:268 isRebalancing, runner.js:115 and
consumerGroup.js:356), UNKNOWN_MEMBER_ID (runner.js:131), a Fetch answered with a stale-metadata
error (NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE, FENCED/UNKNOWN_LEADER_EPOCH,
UNKNOWN_TOPIC_OR_PARTITION: consumerGroup.js:24 and recoverFromFetch ~554, which refreshes
Metadata and rejoins), or a consumer restart. Inside findGroupCoordinator it retries on
GROUP_COORDINATOR_NOT_AVAILABLE and on a coordinator missing from Metadata (refreshing it) and on
ECONNREFUSED (cluster/index.js:343-375). A connection error never makes it look again: Heartbeat
and OffsetCommit go to the Broker object kept in consumerGroup.coordinator, which reconnects to
the same address, also after Metadata dropped that node (brokerPool.js:195-207 only disconnects
it). So when the coordinator's process dies, against Apache Kafka exactly as here, the runner's
retrier (runner.js:104-170, `retry` of the consumer: 5 here, as kafkajs's default) is spent on
ECONNREFUSED and the consumer crashes with restart: true (consumer/index.js:246-282: a
KafkaJSNumberOfRetriesExceeded is retriable), restarts, finds the new coordinator and rejoins:
that is kafkajs's designed path (kafkajs PR #269, "Restart consumer on crashes due to retriable
error", for issue #267 "Consumer stopped when Kafka broker restarts"). It is allowed here, but
only with restart and only for a connection error to the killed node or one of Kafka's
retriable coordinator answers (loading, not available, not the coordinator); any other crash
fails. It is avoided when a Fetch meets the new partition leader's election first (a
stale-metadata answer: rejoin without a crash), which happens in some runs. Kafka avoids it
for a controlled shutdown (leaders move first, so clients get NOT_COORDINATOR); a SIGKILL gives
both the same connection errors. Our side of it: FindCoordinator never names a node this node
sees as down (COORDINATOR_NOT_AVAILABLE until the election), every other node answers
NOT_COORDINATOR, and the new coordinator answers the loading errors while it replays.

kafkajs runs js/cluster_clients_failover.js (CF_JS_LOG=debug|info for its log, written to
CF_JS_LOG_FILE or <node 1's dir>/<topic>.log) (skipped without node/npm, like the other kafkajs
tests); librdkafka is python3-confluent-kafka. Each test starts its own 3-node cluster (the
harness `Cluster` through conftest's cluster_factory, one shard per node) and takes about
20-60 s. Every wait is bounded."""

import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from ailurus_harness import admin_port, wait_for


PARTS = 2


@pytest.fixture
def cluster3(cluster_factory):
    """A started 3-node cluster (conftest's cluster_factory: its files are kept when the test
    failed)."""
    return cluster_factory(3)


def admin_request(node, method, path):
    """HTTP status of an admin API request to node (a started Broker); 0 if it failed."""
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (admin_port(node), path),
                                 method=method)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def live(c):
    return [i for i, b in enumerate(c.nodes) if b.proc is not None]


def leader(c, topic, partition, exclude=None, isr=None, timeout=40.0, preferred=False):
    """The leader (node id) every live node's Metadata names for topic/partition (not exclude;
    with isr in-sync replicas if given; the preferred leader, the first replica, if asked: the
    leader balancer moves a leadership there within seconds)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        seen = set()
        for i in live(c):
            try:
                md = AdminClient({"bootstrap.servers": c.nodes[i].addr}).list_topics(
                    topic, timeout=5)
                p = md.topics[topic].partitions[partition]
                seen.add((p.leader, len(p.isrs), p.replicas[0] if p.replicas else None))
            except Exception as e:  # not known there yet: ask again
                seen.add(("error", str(e)))
        last = seen
        if len(seen) == 1:
            lead, nisr, first = next(iter(seen))
            if isinstance(lead, int) and lead >= 1 and lead != exclude and \
                    (isr is None or nisr == isr) and (not preferred or lead == first):
                return lead
        time.sleep(0.2)
    raise AssertionError("no agreed leader of %s/%d in %.0fs: %r"
                         % (topic, partition, timeout, last))


def java_hash(text):
    """Java's String.hashCode (UTF-16 units; group ids here are ASCII), as a signed int32."""
    h = 0
    for ch in text:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def coordinator_partition(group, partitions):
    """The __consumer_offsets partition of group: Kafka's Utils.abs(hashCode) % partitions
    (src/coord/group_records.c coord_partition_for)."""
    h = java_hash(group)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


def group_coordinated_by(c, node, prefix):
    """(group id prefix-N, its __consumer_offsets partition) such that node coordinates the
    group: the partition's preferred leader, leading it (waited for, like the topic's)."""
    md = AdminClient({"bootstrap.servers": c.bootstrap}).list_topics("__consumer_offsets",
                                                                     timeout=10)
    t = md.topics["__consumer_offsets"]
    assert t.error is None and t.partitions, "no __consumer_offsets: %r" % t.error
    parts = len(t.partitions)
    for i in range(1000):
        group = "%s-%d" % (prefix, i)
        p = coordinator_partition(group, parts)
        if t.partitions[p].replicas and t.partitions[p].replicas[0] == node:
            leader(c, "__consumer_offsets", p, isr=3, preferred=True)
            return group, p
    raise AssertionError("no group among %s-0..999 is coordinated by node %d" % (prefix, node))


def create_topic(c, topic):
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    admin.create_topics([NewTopic(topic, PARTS, 3)], request_timeout=20)[topic].result(30)
    for p in range(PARTS):  # settled: no balancer move under the test
        leader(c, topic, p, isr=3, preferred=True)


def stored(c, topic):
    """{partition: {offset: value}} of every record of topic, read by assignment up to each
    partition's high watermark (Raft control batches take offsets and hold no record)."""
    cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": "it-cf-check",
                     "enable.auto.commit": False, "auto.offset.reset": "earliest",
                     "fetch.wait.max.ms": 100})
    out = {}
    try:
        for p in range(PARTS):
            high = cons.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            got = out[p] = {}
            if high <= 0:
                continue
            cons.assign([TopicPartition(topic, p, 0)])
            deadline = time.monotonic() + 40
            last = -1
            while last < high - 1 and time.monotonic() < deadline:
                m = cons.poll(0.5)
                if m is None:
                    continue
                if m.error():
                    assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                    if m.offset() >= high:
                        break  # the rest are control batches
                    continue
                assert m.offset() not in got, "offset %d delivered twice" % m.offset()
                got[m.offset()] = m.value().decode()
                last = m.offset()
            cons.unassign()
    finally:
        cons.close()
    return out


def check(c, topic, n, acked, consumed, killed):
    """acked: [(partition, offset, value)]; consumed: [(partition, offset, value)] as the
    group consumer was handed them. Returns the number of re-deliveries."""
    assert len(acked) == n, "%d of %d acknowledged" % (len(acked), n)
    new = leader(c, topic, 0, exclude=killed)
    assert new != killed
    disk = stored(c, topic)
    for p, off, v in acked:
        assert disk[p].get(off) == v, ("acked record not stored at its offset", p, off, v,
                                       disk[p].get(off))
    values = [v for p in disk for v in disk[p].values()]
    assert len(values) == len(set(values)) == n, ("stored twice or extra records",
                                                  len(values), len(set(values)), n)
    for p, off, v in consumed:
        assert disk[p].get(off) == v, ("consumer got a record not stored there", p, off, v)
    missing = {v for _, _, v in acked} - {v for _, _, v in consumed}
    assert not missing, "the group consumer never saw %d acked records, e.g. %s" % (
        len(missing), sorted(missing)[:5])
    return len(consumed) - len({(p, off) for p, off, _ in consumed})


def run_kafkajs(c, kafkajs, topic, n, at_half):
    """Runs js/cluster_clients_failover.js on topic (n records) with a group coordinated by the
    leader of partition 0, calls at_half(lead, the group's __consumer_offsets partition) once a
    third is acknowledged (the producer sends the rest once it returned), and returns (lead,
    the group id, the script's result, the records acknowledged as (partition, offset,
    value))."""
    create_topic(c, topic)
    lead = leader(c, topic, 0, isr=3)
    group, gpart = group_coordinated_by(c, lead, topic + "-group")  # at_half: coordinator too
    ctl = os.path.join(c.nodes[0].tmp, topic)
    proc = subprocess.Popen(["node", "cluster_clients_failover.js", c.bootstrap, topic,
                             str(PARTS), group, str(n), ctl], cwd=kafkajs,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(ctl + ".half") and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            time.sleep(0.05)
        assert os.path.exists(ctl + ".half"), "kafkajs never got a third acknowledged"
        at_half(lead, gpart)  # the consumer reads on; the producer waits for ctl.go
        with open(ctl + ".go", "w"):
            pass
        out, err = proc.communicate(timeout=115)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    with open(os.environ.get("CF_JS_LOG_FILE", ctl + ".log"), "wb") as f:
        f.write(err)
    assert proc.returncode == 0, "kafkajs failed:\n%s" % err.decode()[-3000:]
    res = json.loads(out.decode().strip().splitlines()[-1])
    print("kafkajs: crashes %r, %d group joins, commit errors %d, log %s.log"
          % (res["crashes"][:5], res["joins"], res["commitErrors"], ctl))
    assert not res["errors"], res["errors"][:5]
    acked = []
    for p, base, cnt, first in res["acked"]:
        acked += [(p, base + k, "v%06d" % (first + k)) for k in range(cnt)]
    return lead, group, res, acked


def test_kafkajs_producer_and_group_through_partition_leader_kill(kafkajs, cluster3):
    c = cluster3
    n = 1200
    lead, _, res, acked = run_kafkajs(c, kafkajs, "cf-js", n, lambda lead, _: c.kill(lead - 1))
    # kafkajs restarts its consumer after a retriable error by itself; one it does not
    # restart from is an application error. With the coordinator killed, the crash kafkajs
    # has against Kafka too is its retries spent on the dead address (see the docstring).
    assert all(x["restart"] for x in res["crashes"]), res["crashes"]
    dead = c.nodes[lead - 1].addr
    expected = ("ECONNREFUSED %s" % dead, "Closed connection", "Connection closed",
                "Not connected",
                "The coordinator is loading", "The group coordinator is not available",
                "This is not the correct coordinator for this group")
    odd = [x for x in res["crashes"] if not any(e in (x["error"] or "") for e in expected)]
    assert not odd, "kafkajs crashed on something else than the dead coordinator (%s): %r" % (
        dead, odd)
    consumed = [tuple(x) for x in res["consumed"]]
    redelivered = check(c, "cf-js", n, acked, consumed, lead)
    print("kafkajs: %d consumed, %d re-delivered, %d crashes (restarted), %d commit errors"
          % (len(consumed), redelivered, len(res["crashes"]), res["commitErrors"]))


def test_kafkajs_group_through_coordinator_drain(kafkajs, cluster3):
    """The case where Kafka spares kafkajs the crash: the coordinator (and the partition
    leader) moves away while its node stays up (maintenance mode here; a controlled shutdown
    or a leader election in Kafka). The old node answers NOT_COORDINATOR / NOT_LEADER, so
    kafkajs looks the coordinator up again: no consumer crash at all. It then rejoins, or goes
    on heartbeating as the same member (the new coordinator loaded the group with its members,
    as Kafka's does); in that case its OffsetManager still holds the coordinator of the last
    SyncGroup (offsetManager/index.js:88-93) and its commits get NOT_COORDINATOR until the
    next rebalance: kafkajs's behaviour against Kafka too, reported as commit errors."""
    c = cluster3
    n = 600

    def drain(lead, gpart):
        other = c.nodes[lead % 3]  # node ids are 1..3, indexes 0..2: another node
        wait_for("maintenance on node %d accepted" % lead,
                 lambda: admin_request(other, "PUT", "/v1/brokers/%d/maintenance" % lead) == 200,
                 timeout=20, step=0.5)
        # the rest is produced once the coordinator and the leader moved
        moved.append(leader(c, "__consumer_offsets", gpart, exclude=lead))
        leader(c, "cf-jd", 0, exclude=lead)

    moved = []

    lead, group, res, acked = run_kafkajs(c, kafkajs, "cf-jd", n, drain)
    assert not res["crashes"], (
        "kafkajs crashed although the coordinator's node stayed up to answer NOT_COORDINATOR: "
        "%r" % res["crashes"][:5])
    # Two thirds were produced after the move and consumed: the consumer's heartbeats went to
    # the new coordinator (the old one answers NOT_COORDINATOR to everything), which the
    # group's records say too.
    new_log = c.nodes[moved[0] - 1].log_text()
    assert "group %s" % group in new_log, "the new coordinator (node %d) never saw %s" % (
        moved[0], group)
    consumed = [tuple(x) for x in res["consumed"]]
    redelivered = check(c, "cf-jd", n, acked, consumed, lead)
    print("kafkajs through a drain: %d consumed, %d re-delivered, coordinator %d -> %d, %d "
          "joins, %d commit errors" % (len(consumed), redelivered, lead, moved[0], res["joins"],
                                       res["commitErrors"]))


def test_confluent_kafka_producer_and_group_through_partition_leader_kill(cluster3):
    c = cluster3
    topic, n = "cf-rk", 3000
    create_topic(c, topic)
    lead = leader(c, topic, 0, isr=3)
    group, _ = group_coordinated_by(c, lead, "cf-rk-group")  # the kill: the coordinator too
    consumed, cons_errors, stop = [], [], threading.Event()
    started = threading.Event()

    def consume():
        cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": True,
                         "auto.commit.interval.ms": 1000, "fetch.wait.max.ms": 100,
                         "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
                         "topic.metadata.refresh.interval.ms": 1000})
        cons.subscribe([topic])
        try:
            while not stop.is_set():
                m = cons.poll(0.2)
                if m is None:
                    continue
                if m.error():
                    if m.error().code() != KafkaError._PARTITION_EOF:
                        cons_errors.append(m.error())
                    continue
                consumed.append((m.partition(), m.offset(), m.value().decode()))
                started.set()
        finally:
            cons.close()

    reader = threading.Thread(target=consume)
    reader.start()
    acked, errors, lock = [], [], threading.Lock()

    def cb(err, msg):
        with lock:
            if err:
                errors.append(err)
            else:
                acked.append((msg.partition(), msg.offset(), msg.value().decode()))

    p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "enable.idempotence": True,
                  "message.timeout.ms": 90000, "linger.ms": 2})
    try:
        for i in range(n):
            p.produce(topic, value=b"r%06d" % i, partition=i % PARTS, on_delivery=cb)
            p.poll(0)
            time.sleep(0.001)
            if i == n // 3:
                started.wait(30)
                with lock:
                    at_kill = len(acked)
                c.kill(lead - 1)  # batches are in flight
        left = p.flush(120)
        assert left == 0, "%d undelivered" % left
        assert not errors, errors[:5]
        assert 0 < at_kill < n, at_kill
        want = {v for _, _, v in acked}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not want <= {v for _, _, v in list(consumed)}:
            time.sleep(0.2)
    finally:
        stop.set()
        reader.join(30)
    assert not cons_errors, cons_errors[:5]
    redelivered = check(c, topic, n, acked, consumed, lead)
    print("librdkafka: %d consumed, %d re-delivered" % (len(consumed), redelivered))
