"""Kafka offsets without Raft's own batches (issue 7, offset translation): in cluster mode the
partition log is the Raft log and Raft writes batches of its own into it (a new leader's NOOP,
membership CONFIGs, DeleteRecords TRIM markers). They must take no Kafka offset and never
reach a client: kafka-python 2.0.2 (python3-kafka) hands a control batch's records to the
application and raises IndexError on a Fetch holding only an empty control batch
(dpkp/kafka-python#2132).

One 3-node cluster (node ids 0..2), one RF-3 partition:
  * from a fresh topic (the first leader's NOOP at Raft offset 0): produced records are
    acknowledged at Kafka offsets 0..N-1 and kafka-python consumes exactly them, in order,
    from the beginning; end_offsets is N;
  * after a leader change (the leader is SIGKILLed: a second NOOP) the same, with the new
    records contiguous after the old ones; the killed node restarts (rebuilding its
    translation from its log) and catches up;
  * after DeleteRecords (a TRIM batch): the low watermark is the Kafka offset asked for,
    kafka-python's beginning_offsets says it, records produced afterwards continue
    contiguously, and kafka-python and confluent_kafka (librdkafka) see the same offsets.
Every wait is bounded; the file takes ~20-30 s."""

import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer
from kafka import TopicPartition as KTP

from ailurus_harness import delete_records

TOPIC = "kp"


def leader_of(c, exclude=None, isr=None, timeout=30.0):
    """The leader node id of TOPIC/0 every live node agrees on (not exclude)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        seen = set()
        for i in c.live():
            try:
                md = AdminClient({"bootstrap.servers": c.nodes[i].addr}).list_topics(
                    TOPIC, timeout=5)
                p = md.topics[TOPIC].partitions[0]
                seen.add((p.leader, len(p.isrs)))
            except Exception as e:  # not known there yet
                seen.add(("error", str(e)))
        last = seen
        if len(seen) == 1:
            lead, nisr = next(iter(seen))
            if isinstance(lead, int) and lead >= 0 and lead != exclude and \
                    lead in c.live() and (isr is None or nisr == isr):
                return lead
        time.sleep(0.2)
    raise AssertionError("no agreed leader of %s/0: %r" % (TOPIC, last))


def produce(c, values):
    """Produces values (acks=all, idempotent) to TOPIC/0; returns their offsets in order."""
    p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "linger.ms": 0,
                  "enable.idempotence": True, "batch.num.messages": 7})
    got = {}

    def cb(err, msg):
        assert err is None, err
        got[msg.value()] = msg.offset()
    for v in values:
        p.produce(TOPIC, value=v, partition=0, on_delivery=cb)
        p.poll(0)
    assert p.flush(30) == 0
    return [got[v] for v in values]


def kp_consume(c, n):
    """kafka-python 2.0.2: TOPIC/0 from its beginning until n records arrived (any exception
    fails the test). Returns ([(offset, value)], beginning offset, end offset)."""
    cons = KafkaConsumer(bootstrap_servers=c.bootstrap, enable_auto_commit=False,
                         auto_offset_reset="earliest", api_version=(2, 0),
                         fetch_max_wait_ms=100, request_timeout_ms=15000)
    tp = KTP(TOPIC, 0)
    try:
        cons.assign([tp])
        cons.seek_to_beginning(tp)
        out = []
        deadline = time.monotonic() + 30
        while len(out) < n and time.monotonic() < deadline:
            for recs in cons.poll(timeout_ms=200).values():
                out.extend((r.offset, r.value) for r in recs)
        # nothing more arrives (no foreign record after the last one)
        for recs in cons.poll(timeout_ms=300).values():
            out.extend((r.offset, r.value) for r in recs)
        begin = cons.beginning_offsets([tp])[tp]
        end = cons.end_offsets([tp])[tp]
        return out, begin, end
    finally:
        cons.close()


def ck_consume(c, n):
    """confluent_kafka (librdkafka): TOPIC/0 from its beginning, n records."""
    cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": "it-kp-ck",
                     "enable.auto.commit": False, "auto.offset.reset": "earliest",
                     "fetch.wait.max.ms": 100})
    try:
        cons.assign([TopicPartition(TOPIC, 0, -2)])
        out = []
        deadline = time.monotonic() + 30
        while len(out) < n and time.monotonic() < deadline:
            m = cons.poll(0.3)
            if m is None:
                continue
            if m.error():
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                continue
            out.append((m.offset(), m.value()))
        low, high = cons.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=10)
        return out, low, high
    finally:
        cons.close()


def vals(a, b):
    return [b"kp%05d" % i for i in range(a, b)]


def expect(got, first, last):
    """got holds exactly offsets first..last-1 in order, each with its own value."""
    want = list(zip(range(first, last), vals(first, last)))
    assert got == want, "got %d records %r... want %d from %d" % (
        len(got), got[:3], len(want), first)


def test_kafka_python_sees_kafka_offsets(cluster_factory):
    c = cluster_factory(3, first_id=0)
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    admin.create_topics([NewTopic(TOPIC, 1, 3)], request_timeout=20)[TOPIC].result(30)
    lead = leader_of(c, isr=3)

    # a fresh topic: the NOOP at Raft offset 0 takes no Kafka offset
    assert produce(c, vals(0, 40)) == list(range(0, 40))
    got, begin, end = kp_consume(c, 40)
    expect(got, 0, 40)
    assert (begin, end) == (0, 40)

    # a leader change: a second NOOP
    c.kill(lead)
    new = leader_of(c, exclude=lead)
    assert produce(c, vals(40, 80)) == list(range(40, 80))
    got, begin, end = kp_consume(c, 80)
    expect(got, 0, 80)
    assert end == 80
    # the killed node comes back (its translation rebuilt from its log) and catches up
    c.restart(lead)
    leader_of(c, isr=3)

    # DeleteRecords: a TRIM batch in the log; the low watermark is the Kafka offset asked for
    # (one record per batch: batches of up to 7 records here, so the cut is at a batch base
    # at or below it)
    low, err = delete_records(c.nodes[leader_of(c)], TOPIC, 28)
    assert err == 0 and 21 <= low <= 28, (low, err)
    assert produce(c, vals(80, 100)) == list(range(80, 100))
    got, begin, end = kp_consume(c, 100 - low)
    expect(got, low, 100)
    assert (begin, end) == (low, 100)
    got2, low2, high2 = ck_consume(c, 100 - low)
    assert got2 == got and (low2, high2) == (low, 100)

    # the leader moves once more (maintenance would take longer: kill again); the restarted
    # node may lead now, with the translation it rebuilt at open
    cur = leader_of(c)
    c.kill(cur)
    leader_of(c, exclude=cur)
    assert produce(c, vals(100, 110)) == list(range(100, 110))
    got, begin, end = kp_consume(c, 110 - low)
    expect(got, low, 110)
    assert (begin, end) == (low, 110)
    c.restart(cur)
    leader_of(c, isr=3)
