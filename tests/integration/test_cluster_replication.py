"""Partitions replicated through Raft on a 3-node cluster (issue 7, part B): Produce with
acks=all / acks=1 through the partition leader, Fetch from the leader, every record on every
node's disk, a SIGKILLed leader replaced without losing or duplicating an acknowledged record,
min.insync.replicas enforced, and every node's Metadata agreeing on the new leader.

Each test starts its own 3-node cluster of real `ailurus start` processes on 127.0.0.1 (one
shard each, two in the multi-shard test) and uses confluent_kafka (librdkafka) as the client,
plus kafkajs (js/cluster_produce_failover.js) for one failover. Every wait is bounded."""

import json
import os
import re
import subprocess
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from ailurus_harness import binary


@pytest.fixture
def cluster(cluster_factory):
    """3 started nodes with ids 0..2, node 0 founding the cluster (conftest's cluster_factory:
    files kept on a failure)."""
    return cluster_factory(3, first_id=0)


def create_topic(c, name, partitions=1, rf=3, config=None):
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    fs = admin.create_topics([NewTopic(name, partitions, rf, config=config or {})],
                             request_timeout=20)
    fs[name].result(timeout=30)


def partition_meta(node, topic, partition=0):
    """(leader, replicas, isrs) as node's Metadata says, or None."""
    admin = AdminClient({"bootstrap.servers": node.addr})
    md = admin.list_topics(topic, timeout=5)
    t = md.topics.get(topic)
    if t is None or t.error is not None or partition not in t.partitions:
        return None
    p = t.partitions[partition]
    return p.leader, sorted(p.replicas), sorted(p.isrs)


def wait_leader(c, topic, partition=0, nodes=None, timeout=30.0, exclude=None, isr=None):
    """Waits until every node in `nodes` (default: the live ones) names the same leader (not
    `exclude`, and with `isr` in-sync replicas if given); returns it."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        seen = []
        for i in nodes if nodes is not None else c.live():
            try:
                seen.append(partition_meta(c.nodes[i], topic, partition))
            except Exception as e:  # a node still starting: ask again
                seen.append(("error", str(e)))
        last = seen
        leaders = {s[0] if s else None for s in seen}
        if len(leaders) == 1:
            leader = leaders.pop()
            # the ISR is the leader's view, gossiped to every node
            if (isinstance(leader, int) and leader >= 0 and leader != exclude and
                    (isr is None or all(s and len(s[2]) == isr for s in seen))):
                return leader
        time.sleep(0.2)
    raise AssertionError("no agreed leader for %s/%d within %.0fs: %r"
                         % (topic, partition, timeout, last))


def consume_all(c, topic, partition, end, timeout=60.0):
    """{offset: value} of every record of topic/partition below offset end."""
    cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": "it-raft",
                     "enable.auto.commit": False, "auto.offset.reset": "earliest",
                     "fetch.wait.max.ms": 100})
    cons.assign([TopicPartition(topic, partition, 0)])
    got = {}
    deadline = time.monotonic() + timeout
    try:
        # Raft NOOP/CONFIG control batches take offsets the consumer never sees: stop at the
        # last record below end, not at a count.
        while time.monotonic() < deadline and (not got or max(got) < end - 1):
            m = cons.poll(0.5)
            if m is None:
                continue
            if m.error():
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                continue
            assert m.offset() not in got, "offset %d delivered twice" % m.offset()
            got[m.offset()] = m.value()
    finally:
        cons.close()
    return got


def disk_records(node, topic, partition):
    """Records in node's log of topic/partition (ailurus storage dump; NOOP/CONFIG control
    batches hold none)."""
    kdir = os.path.join(node.data_dir, "kafka")
    names = [n for n in os.listdir(kdir) if n.startswith(topic + "-")]
    assert len(names) == 1, names
    d = os.path.join(kdir, names[0], str(partition))
    out = subprocess.run([binary(), "storage", "dump", d], capture_output=True, text=True,
                         timeout=30)
    m = re.search(r"dump: \d+ segments, \d+ batches, (\d+) records", out.stdout)
    assert m, out.stdout + out.stderr
    return int(m.group(1))


def produce(c, topic, values, acks="all", idempotent=True, extra=None, partition=0):
    """Produces values; returns ([(offset, value)] acknowledged, [errors])."""
    conf = {"bootstrap.servers": c.bootstrap, "acks": acks,
            "enable.idempotence": idempotent, "message.timeout.ms": 60000,
            "linger.ms": 5}
    conf.update(extra or {})
    p = Producer(conf)
    acked, errors = [], []

    def cb(err, msg):
        if err:
            errors.append(err)
        else:
            acked.append((msg.offset(), msg.value()))

    for v in values:
        p.produce(topic, value=v, partition=partition, on_delivery=cb)
        p.poll(0)
    left = p.flush(90)
    assert left == 0, "%d messages undelivered" % left
    return acked, errors


def test_replicated_produce_consume_on_every_disk(cluster):
    c = cluster
    create_topic(c, "rep", partitions=2, rf=3)
    for part in (0, 1):
        wait_leader(c, "rep", part)
        # every node hosts a replica of each partition (RF 3 on 3 nodes)
        for i in range(3):
            meta = partition_meta(c.nodes[i], "rep", part)
            assert meta and meta[1] == [0, 1, 2], meta
    values = [b"r%05d" % i for i in range(1000)]
    acked = {}
    for part in (0, 1):
        a, errs = produce(c, "rep", values[part::2], partition=part)
        assert not errs, errs[:3]
        assert len(a) == 500
        acked[part] = a
    for part in (0, 1):
        end = max(o for o, _ in acked[part]) + 1
        got = consume_all(c, "rep", part, end)
        for off, v in acked[part]:
            assert got.get(off) == v, (part, off, v, got.get(off))
        assert sorted(got.values()) == sorted(v for _, v in acked[part])
    # the records reach every node's disk (the third replica catches up within moments)
    deadline = time.monotonic() + 20
    while True:
        counts = [[disk_records(c.nodes[i], "rep", part) for part in (0, 1)] for i in range(3)]
        if all(x == [500, 500] for x in counts) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert all(x == [500, 500] for x in counts), counts


def test_acks1_and_min_insync(cluster):
    c = cluster
    create_topic(c, "mi", rf=3, config={"min.insync.replicas": "3"})
    leader = wait_leader(c, "mi", isr=3)
    a, errs = produce(c, "mi", [b"all-%d" % i for i in range(50)])
    assert not errs and len(a) == 50, errs[:3]
    a, errs = produce(c, "mi", [b"one-%d" % i for i in range(50)], acks="1", idempotent=False)
    assert not errs and len(a) == 50, errs[:3]
    follower = next(i for i in range(3) if i != leader)
    c.nodes[follower].kill()
    wait_leader(c, "mi", isr=2, timeout=20)
    # acks=all with 2 of 3 in sync and min.insync.replicas=3: refused, not written
    a, errs = produce(c, "mi", [b"refused-%d" % i for i in range(5)], idempotent=False,
                      extra={"retries": 0, "message.timeout.ms": 10000})
    assert not a, a
    assert errs and all(e.code() == KafkaError.NOT_ENOUGH_REPLICAS for e in errs), errs
    # acks=1 does not need the ISR
    a, errs = produce(c, "mi", [b"one-more-%d" % i for i in range(20)], acks="1",
                      idempotent=False)
    assert not errs and len(a) == 20, errs[:3]
    got = consume_all(c, "mi", 0, max(o for o, _ in a) + 1)
    assert not any(v.startswith(b"refused") for v in got.values())
    assert sum(1 for v in got.values() if v.startswith(b"one-more")) == 20


def test_min_insync_agrees_with_metadata_isr(cluster):
    """The moment the leader's Metadata stops listing a killed follower in the ISR, an acks=all
    write with min.insync.replicas=3 is refused: the produce path and Metadata judge the ISR
    from the same liveness (the produce path once used a copy up to 200 ms older)."""
    c = cluster
    create_topic(c, "mia", rf=3, config={"min.insync.replicas": "3"})
    leader = wait_leader(c, "mia", isr=3)
    acked, errors = [], []

    def cb(err, msg):
        (errors if err else acked).append(err or (msg.offset(), msg.value()))

    # connected, with metadata, before the kill: the refused write goes out at once
    p = Producer({"bootstrap.servers": c.nodes[leader].addr, "acks": "all",
                  "enable.idempotence": False, "retries": 0, "linger.ms": 0,
                  "message.timeout.ms": 10000})
    p.produce("mia", value=b"warm", partition=0, on_delivery=cb)
    assert p.flush(30) == 0 and len(acked) == 1 and not errors, (acked, errors)
    admin = AdminClient({"bootstrap.servers": c.nodes[leader].addr})
    admin.list_topics("mia", timeout=5)
    follower = next(i for i in range(3) if i != leader)
    c.nodes[follower].kill()
    deadline = time.monotonic() + 20
    isr = None
    while time.monotonic() < deadline:
        isr = admin.list_topics("mia", timeout=5).topics["mia"].partitions[0].isrs
        if len(isr) == 2:
            break
        time.sleep(0.005)
    assert len(isr) == 2, isr
    del acked[:]
    for i in range(3):
        p.produce("mia", value=b"refused-%d" % i, partition=0, on_delivery=cb)
    assert p.flush(30) == 0
    assert not acked, acked
    assert len(errors) == 3 and all(e.code() == KafkaError.NOT_ENOUGH_REPLICAS
                                    for e in errors), errors


def test_leader_killed_mid_stream(cluster):
    c = cluster
    create_topic(c, "fo", rf=3)
    leader = wait_leader(c, "fo", isr=3)
    conf = {"bootstrap.servers": c.bootstrap, "acks": "all", "enable.idempotence": True,
            "message.timeout.ms": 90000, "linger.ms": 2}
    p = Producer(conf)
    acked, errors = [], []
    lock = threading.Lock()

    def cb(err, msg):
        with lock:
            if err:
                errors.append(err)
            else:
                acked.append((msg.offset(), msg.value()))

    # A consumer reads throughout: after the leader change it must go on from where it was
    # (librdkafka validates its position with OffsetForLeaderEpoch, KIP-320) and never see a
    # record twice or out of order.
    seen, stop = [], threading.Event()
    cons_err = []

    def consume():
        cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": "it-raft-live",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "fetch.wait.max.ms": 100, "topic.metadata.refresh.interval.ms": 1000})
        cons.assign([TopicPartition("fo", 0, 0)])
        try:
            while not stop.is_set():
                m = cons.poll(0.2)
                if m is None:
                    continue
                if m.error():
                    if m.error().code() != KafkaError._PARTITION_EOF:
                        cons_err.append(m.error())
                    continue
                seen.append((m.offset(), m.value()))
        finally:
            cons.close()

    reader = threading.Thread(target=consume)
    reader.start()
    total = 3000
    killed_at = None
    t0 = time.monotonic()
    for i in range(total):
        p.produce("fo", value=b"m%06d" % i, partition=0, on_delivery=cb)
        p.poll(0)
        time.sleep(0.001)
        if killed_at is None and i == total // 3:
            # Some records acknowledged first (a loaded machine may not have answered any
            # yet after ~1 s): at most 30 s, then the kill goes ahead and the check says so.
            ack_deadline = time.monotonic() + 30
            while not acked and time.monotonic() < ack_deadline:
                p.poll(0.05)
            with lock:
                n_acked = len(acked)
            c.nodes[leader].kill()  # mid-stream: batches are in flight
            killed_at = i
    left = p.flush(120)
    deadline = time.monotonic() + 60
    while (not seen or seen[-1][0] < max(o for o, _ in acked)) and time.monotonic() < deadline:
        time.sleep(0.2)
    stop.set()
    reader.join(30)
    assert left == 0, "%d undelivered after %.0fs" % (left, time.monotonic() - t0)
    assert not errors, errors[:5]
    assert 0 < n_acked < total, n_acked  # the kill came with records acknowledged and pending
    assert len(acked) == total
    # a new leader, and both live nodes' Metadata agree on it
    new_leader = wait_leader(c, "fo", exclude=leader, timeout=30)
    assert new_leader != leader
    # every acknowledged record exactly once, at its acknowledged offset
    end = max(o for o, _ in acked) + 1
    got = consume_all(c, "fo", 0, end)
    for off, v in acked:
        assert got.get(off) == v, (off, v, got.get(off))
    values = list(got.values())
    assert len(values) == len(set(values)), "a record was stored twice"
    assert len(values) == total
    # the live consumer: strictly increasing offsets, exactly the stored records
    offs = [o for o, _ in seen]
    assert offs == sorted(set(offs)), "the live consumer went back or saw a record twice"
    assert dict(seen) == got, (len(seen), len(got), cons_err[:3])
    # ListOffsets on the new leader: earliest 0, latest = the end of the log
    cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": "it-raft-wm"})
    try:
        low, high = cons.get_watermark_offsets(TopicPartition("fo", 0), timeout=10)
    finally:
        cons.close()
    assert low == 0 and high >= end, (low, high, end)
    # the killed node comes back, catches up, and every node agrees on the leader
    c.nodes[leader].start()
    wait_leader(c, "fo", nodes=[0, 1, 2], timeout=30)
    deadline = time.monotonic() + 30
    while disk_records(c.nodes[leader], "fo", 0) < total and time.monotonic() < deadline:
        time.sleep(0.3)
    assert disk_records(c.nodes[leader], "fo", 0) == total


def test_two_shards_per_node(cluster_factory):
    """Partitions live on the shard their assignment names: Raft messages are routed from shard
    0 to it, heartbeat batches go to every shard, Produce/Fetch go to the assigned shard, and
    Metadata is answered from every shard's copy of the leadership table."""
    c = cluster_factory(3, smp=2, first_id=0)
    create_topic(c, "s2", partitions=4, rf=3)
    shards = set()
    for part in range(4):
        wait_leader(c, "s2", part)
    for i in range(3):
        text = c.nodes[i].log_text()
        shards |= set(re.findall(r"\[shard (\d+)\] raft: s2/\d+: replica of group", text))
    assert shards == {"0", "1"}, shards  # both shards host replicas
    for part in range(4):
        a, errs = produce(c, "s2", [b"p%d-%d" % (part, i) for i in range(100)],
                          partition=part)
        assert not errs and len(a) == 100, (part, errs[:3])
        got = consume_all(c, "s2", part, max(o for o, _ in a) + 1)
        assert sorted(got.values()) == sorted(v for _, v in a)


def test_kafkajs_producer_through_leader_failover(kafkajs, cluster, tmp_path):
    """kafkajs (idempotent, acks=all) keeps sending while the partition leader is SIGKILLed:
    every acknowledged send is stored exactly once at the offsets it was acknowledged with."""
    c = cluster
    create_topic(c, "jsfo", rf=3)
    leader = wait_leader(c, "jsfo", isr=3)
    ctl = str(tmp_path / "ctl")
    n = 600
    proc = subprocess.Popen(["node", "cluster_produce_failover.js", c.bootstrap, "jsfo",
                             str(n), ctl], cwd=kafkajs, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(ctl + ".half") and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.05)
        assert os.path.exists(ctl + ".half"), "kafkajs never got a third acknowledged"
        c.nodes[leader].kill()  # kafkajs is sending on
        out, err = proc.communicate(timeout=110)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err.decode()[-3000:]
    res = json.loads(out.decode().strip().splitlines()[-1])
    assert not res["errors"], res["errors"][:5]
    sends = res["acked"]
    assert sum(cnt for _, cnt, _ in sends) == n
    wait_leader(c, "jsfo", exclude=leader, timeout=30)
    end = max(base + cnt for base, cnt, _ in sends)
    got = consume_all(c, "jsfo", 0, end)
    for base, cnt, first in sends:
        for k in range(cnt):
            assert got.get(base + k) == b"k%06d" % (first + k), (base, k, got.get(base + k))
    values = list(got.values())
    assert len(values) == len(set(values)) == n, (len(values), len(set(values)))
