"""test_produce_consume_groups.py — consumer groups with real clients against the real binary
(2 shards, so groups live on both): a librdkafka group of three members that rebalances as
members join and leave, commits, and resumes from the committed offsets after the broker
restarts; kafka-python producer + consumer group with commits; the admin view of groups
(ListGroups, DescribeGroups, OffsetFetch). Every wait is bounded.
"""
import struct
import time

import pytest

from ailurus_harness import frame, header, recv_frame

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

SMP = 2


def create_topic(addr, name, partitions):
    a = AdminClient({"bootstrap.servers": addr})
    a.create_topics([NewTopic(name, partitions, 1)], request_timeout=15)[name].result(timeout=20)


def produce_n(addr, topic, start, n):
    p = Producer({"bootstrap.servers": addr, "acks": "all", "enable.idempotence": True})
    for i in range(start, start + n):
        p.produce(topic, key=b"%d" % i, value=b"r%05d" % i)
    assert p.flush(30) == 0


def member(addr, group, name):
    c = Consumer({"bootstrap.servers": addr, "group.id": group, "client.id": name,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 300,
                  "max.poll.interval.ms": 30000})
    c.subscribe(["grp"])
    return c


def pump(consumers, until, timeout, sink=None):
    """Polls every consumer round-robin until until() or the timeout; returns until()."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for c in consumers:
            m = c.poll(0.05)
            if m is not None and not m.error() and sink is not None:
                sink.append(m)
            elif m is not None and m.error() and m.error().code() != KafkaError._PARTITION_EOF:
                raise AssertionError("consumer error: %s" % m.error())
        if until():
            return True
    return until()


def parts_of(c):
    return sorted(tp.partition for tp in c.assignment())


def test_three_member_group_rebalances_commits_and_resumes(broker_factory):
    b = broker_factory(smp=SMP)
    create_topic(b.addr, "grp", 6)
    produce_n(b.addr, "grp", 0, 600)
    a = member(b.addr, "g3", "a")
    assert pump([a], lambda: len(parts_of(a)) == 6, 30), "first member never got 6 partitions"
    bm = member(b.addr, "g3", "b")
    cm = member(b.addr, "g3", "c")
    members = [a, bm, cm]
    got = []

    def balanced():
        ps = [parts_of(c) for c in members]
        return sorted(len(p) for p in ps) == [2, 2, 2] and \
            sorted(x for p in ps for x in p) == list(range(6))
    assert pump(members, balanced, 45, got), [parts_of(c) for c in members]
    assert pump(members, lambda: len({m.value() for m in got}) >= 600, 45, got)
    values = {m.value() for m in got}
    assert values == {b"r%05d" % i for i in range(600)}
    for c in members:
        c.commit(asynchronous=False)
    # One member leaves: the other two take over all six partitions.
    cm.close()
    members = [a, bm]
    assert pump(members, lambda: sorted(x for c in members for x in parts_of(c)) ==
                list(range(6)) and all(len(parts_of(c)) == 3 for c in members), 45), \
        [parts_of(c) for c in members]
    # Committed offsets are visible to OffsetFetch.
    committed = a.committed([TopicPartition("grp", p) for p in range(6)], timeout=10)
    assert sum(tp.offset for tp in committed) == 600
    a.close()
    bm.close()
    # Restart the broker: the group resumes from its committed offsets.
    b.restart()
    produce_n(b.addr, "grp", 600, 60)
    d = member(b.addr, "g3", "d")
    fresh = []
    assert pump([d], lambda: len(fresh) >= 60, 45, fresh)
    pump([d], lambda: False, 1.0, fresh)  # nothing older may follow
    d.close()
    assert sorted(m.value() for m in fresh) == [b"r%05d" % i for i in range(600, 660)]


def test_group_admin_views(broker_factory):
    b = broker_factory(smp=SMP)
    create_topic(b.addr, "grp", 2)
    produce_n(b.addr, "grp", 0, 10)
    c = member(b.addr, "gadmin", "x")
    got = []
    assert pump([c], lambda: len(got) >= 10, 30, got)
    c.commit(asynchronous=False)
    # A commit for a topic that does not exist is refused per partition.
    try:
        res = c.commit(offsets=[TopicPartition("nope", 0, 5)], asynchronous=False)
        errs = [tp.error for tp in res]
    except ck.KafkaException as e:
        errs = [e.args[0]]
    assert errs and errs[0] is not None and \
        errs[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART, errs
    a = AdminClient({"bootstrap.servers": b.addr})
    groups = a.list_groups(timeout=10)
    assert any(g.id == "gadmin" for g in groups), groups
    g = [g for g in groups if g.id == "gadmin"][0]
    assert g.state == "Stable" and len(g.members) == 1 and g.protocol_type == "consumer"
    c.close()
    # OffsetDelete v0 (raw): partition 0's commit goes, partition 1's stays.
    body = struct.pack(">h", 6) + b"gadmin" + struct.pack(">i", 1) + struct.pack(">h", 3) + \
        b"grp" + struct.pack(">ii", 1, 0)
    s = b.connect()
    s.sendall(frame(header(47, 0, 9) + body))
    resp = recv_frame(s, timeout=10)
    s.close()
    err, = struct.unpack_from(">h", resp, 4)
    assert err == 0
    pos = 4 + 2 + 4 + 4 + 2 + 3 + 4
    pidx, perr = struct.unpack_from(">ih", resp, pos)
    assert (pidx, perr) == (0, 0)
    probe = Consumer({"bootstrap.servers": b.addr, "group.id": "gadmin"})
    com = probe.committed([TopicPartition("grp", 0), TopicPartition("grp", 1)], timeout=10)
    probe.close()
    assert com[0].offset < 0 and com[1].offset > 0
    # DeleteGroups (kafka-python admin): the group disappears.
    kp = pytest.importorskip("kafka")
    from kafka.admin import KafkaAdminClient
    ka = KafkaAdminClient(bootstrap_servers=b.addr, request_timeout_ms=15000)
    res = ka.delete_consumer_groups(["gadmin", "nope"])
    ka.close()
    assert dict(res)["gadmin"].errno == 0 and dict(res)["nope"].errno == 69  # GROUP_ID_NOT_FOUND
    assert not any(g.id == "gadmin" for g in a.list_groups(timeout=10))
    assert kp


def test_kafka_python_group(broker_factory):
    kp = pytest.importorskip("kafka")
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition as KTP
    b = broker_factory(smp=SMP)
    create_topic(b.addr, "grp", 3)
    p = KafkaProducer(bootstrap_servers=b.addr, acks="all", linger_ms=5)
    for i in range(90):
        p.send("grp", key=b"%d" % i, value=b"k%03d" % i)
    p.flush(30)
    p.close()

    def consumer():
        return KafkaConsumer("grp", bootstrap_servers=b.addr, group_id="kpg",
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=15000, session_timeout_ms=6000,
                             heartbeat_interval_ms=500)
    c = consumer()
    seen = []
    deadline = time.monotonic() + 40
    while len(seen) < 60 and time.monotonic() < deadline:
        for recs in c.poll(timeout_ms=500, max_records=60 - len(seen)).values():
            seen.extend(r.value for r in recs)
    assert len(seen) == 60
    c.commit()
    c.close()
    c = consumer()
    rest = []
    deadline = time.monotonic() + 40
    while len(rest) < 30 and time.monotonic() < deadline:
        for recs in c.poll(timeout_ms=500).values():
            rest.extend(r.value for r in recs)
    committed = sum(c.committed(KTP("grp", p)) or 0 for p in range(3))
    c.close()
    assert sorted(seen + rest) == [b"k%03d" % i for i in range(90)]
    assert committed == 60
    assert kp
