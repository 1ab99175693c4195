"""test_crash_loop.py — nothing acknowledged is ever lost or duplicated across crashes.

An idempotent acks=all librdkafka producer (python3-confluent-kafka) writes numbered records to
a 2-partition topic on a 2-shard broker while the broker is SIGKILLed and restarted at random
moments (>= 20 times). Delivery callbacks record the (partition, offset) of every acknowledged
record. Afterwards a consumer reads both partitions to the end and checks that every
acknowledged record is at the offset it was acknowledged with, that acknowledged records are in
the order they were produced, and that no record appears twice in the log (the broker's
producer state, rebuilt from the log at start, deduplicates retries across restarts).
Seeded (AL_TEST_SEED) so a failing schedule can be replayed; every wait is bounded.
"""
import os
import random
import time

import pytest

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

CYCLES = int(os.environ.get("AL_CRASH_CYCLES", "22"))
TOTAL_BUDGET_S = 150.0


def test_crash_loop_idempotent_acks_all(broker_factory):
    seed = int(os.environ.get("AL_TEST_SEED", str(int(time.time() * 1000) % 1000000)))
    print("crash loop seed: AL_TEST_SEED=%d" % seed)
    rnd = random.Random(seed)
    b = broker_factory(smp=2)
    a = AdminClient({"bootstrap.servers": b.addr})
    a.create_topics([NewTopic("crash", 2, 1)], request_timeout=15)["crash"].result(timeout=20)

    acked = {}   # value -> (partition, offset)
    failed = []
    fatal = []

    def on_delivery(err, msg):
        if err is None:
            v = msg.value()
            assert v not in acked, "acknowledged twice: %r" % v
            acked[v] = (msg.partition(), msg.offset())
        else:
            failed.append((msg.value(), err))

    def on_error(err):
        if err.fatal():
            fatal.append(err)

    p = Producer({"bootstrap.servers": b.addr, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 2, "message.timeout.ms": 60000, "retry.backoff.ms": 50,
                  "reconnect.backoff.ms": 20, "reconnect.backoff.max.ms": 200,
                  "socket.connection.setup.timeout.ms": 2000, "error_cb": on_error})
    t_start = time.monotonic()
    n = 0
    kills = 0
    for cycle in range(CYCLES):
        if time.monotonic() - t_start > TOTAL_BUDGET_S:
            break
        run_for = rnd.uniform(0.3, 2.5)
        t_end = time.monotonic() + run_for
        while time.monotonic() < t_end:
            for _ in range(50):
                p.produce("crash", value=b"%08d" % n, key=b"%d" % (n % 7),
                          on_delivery=on_delivery)
                n += 1
            p.poll(0.005)
        assert not fatal, "producer fatal error: %s" % fatal
        b.check_log()
        b.kill()
        kills += 1
        p.poll(rnd.uniform(0.0, 0.3))
        b.start()
    left = p.flush(90)
    assert left == 0, "%d records never completed" % left
    assert not fatal, "producer fatal error: %s" % fatal
    assert kills >= 20, "only %d kills in the time budget" % kills
    assert acked, "nothing was acknowledged"

    # Read both partitions to their end.
    c = Consumer({"bootstrap.servers": b.addr, "group.id": "crash-check",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "enable.partition.eof": True})
    ends = {pt: c.get_watermark_offsets(TopicPartition("crash", pt), timeout=10)[1]
            for pt in (0, 1)}
    c.assign([TopicPartition("crash", pt, 0) for pt in (0, 1)])
    log = {}   # (partition, offset) -> value
    eof = set()
    deadline = time.monotonic() + 60
    while len(eof) < 2 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF and \
                    m.offset() >= ends[m.partition()]:
                eof.add(m.partition())
                continue
            if m.error().code() == KafkaError._PARTITION_EOF:
                continue
            raise AssertionError("consume error: %s" % m.error())
        log[(m.partition(), m.offset())] = m.value()
    c.close()
    assert len(eof) == 2, "did not reach the end of both partitions"

    # Every acknowledged record is where it was acknowledged.
    missing = [(v, po) for v, po in acked.items() if log.get(po) != v]
    assert not missing, "%d acknowledged records lost or moved, e.g. %s" % (len(missing),
                                                                           missing[:5])
    # No record twice in the log.
    seen = {}
    for po, v in log.items():
        assert v not in seen, "duplicate %r at %s and %s" % (v, seen[v], po)
        seen[v] = po
    # Acknowledged records are in production order within each partition.
    for pt in (0, 1):
        vals = [v for (q, _), v in sorted(log.items()) if q == pt and v in acked]
        assert vals == sorted(vals), "partition %d out of order" % pt
    print("crash loop: %d kills, %d produced, %d acknowledged, %d failed, log %d"
          % (kills, n, len(acked), len(failed), len(log)))
