"""test_producer_snapshot.py — an idempotent producer goes on across broker restarts: after a
clean stop (SIGTERM) the broker loads the producer-state snapshot its clean close saved
(producer_state.snapshot next to the log) instead of reading the log, and after a crash
(SIGKILL, no snapshot) it rebuilds the state from the log as before.

One librdkafka idempotent acks=all producer (python3-confluent-kafka) writes ~12 MB of 1 KiB
records to a 1-partition topic (above the 8 MiB the snapshot is saved for), then the broker is
stopped and started; the same producer object goes on producing (same producer id, sequences
continuing), then the broker is killed and started, and it goes on again. Raw Produce requests
of a second producer id check what the state must answer after each restart: a retried batch
is a duplicate answered with its first offset, a sequence gap is OUT_OF_ORDER_SEQUENCE_NUMBER.
At the end a consumer reads the whole partition: every record once, in order, nothing lost.
Every wait is bounded.
"""
import glob
import os
import time

import pytest

from ailurus_harness import init_producer_id, produce_batch, record_batch

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

TOPIC = "psnap"
ERR_OUT_OF_ORDER = 45
PAD = b"x" * 1000


def produce_raw(node, pid, epoch, seq, value):
    """Produce v3 acks=all of one idempotent one-record batch to partition 0: (error, base)."""
    b = record_batch([value], producer_id=pid, producer_epoch=epoch, base_sequence=seq)
    return produce_batch(node, TOPIC, b)


def snapshots(b):
    return glob.glob(os.path.join(b.data_dir, "kafka", "*", "*", "producer_state.snapshot"))


def test_idempotent_producer_across_clean_and_crash_restarts(broker_factory):
    b = broker_factory()
    a = AdminClient({"bootstrap.servers": b.addr})
    a.create_topics([NewTopic(TOPIC, 1, 1)], request_timeout=15)[TOPIC].result(timeout=20)
    errors, fatal, sent = [], [], []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)

    def on_error(err):
        if err.fatal():
            fatal.append(err)

    p = Producer({"bootstrap.servers": b.addr, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 5, "message.timeout.ms": 60000, "retry.backoff.ms": 50,
                  "reconnect.backoff.ms": 20, "reconnect.backoff.max.ms": 200,
                  "error_cb": on_error})

    def produce(n):
        for _ in range(n):
            v = b"%08d" % len(sent) + PAD
            sent.append(v)
            while True:
                try:
                    p.produce(TOPIC, value=v, partition=0, on_delivery=on_delivery)
                    break
                except BufferError:
                    p.poll(0.05)
            p.poll(0)
        assert p.flush(60) == 0, "records not delivered within 60 s"
        assert not errors, errors[:5]
        assert not fatal, fatal

    produce(12000)
    err, pid, epoch = init_producer_id(b)
    assert err == 0
    raw = []  # (value, offset)
    for seq in range(2):
        v = b"raw-%d" % seq
        err, base = produce_raw(b, pid, epoch, seq, v)
        assert err == 0, err
        raw.append((v, base))

    # Clean stop: the snapshot is saved; the start loads it and removes it.
    assert not snapshots(b)
    b.stop()
    assert len(snapshots(b)) == 1, "no producer-state snapshot after a clean stop"
    b.start()
    assert "producers loaded from the snapshot" in b.log_text(), b.log_text()[-3000:]
    assert "producers rebuilt from" not in b.log_text()
    assert not snapshots(b), "the snapshot must be removed at open"
    assert produce_raw(b, pid, epoch, 1, b"raw-1") == (0, raw[1][1])  # duplicate: first offset
    assert produce_raw(b, pid, epoch, 3, b"raw-3")[0] == ERR_OUT_OF_ORDER
    err, base = produce_raw(b, pid, epoch, 2, b"raw-2")
    assert err == 0 and base > raw[1][1]
    raw.append((b"raw-2", base))
    produce(2000)

    # Crash: no snapshot; the state comes from the log.
    b.kill()
    assert not snapshots(b)
    b.start()
    assert "producers rebuilt from" in b.log_text(), b.log_text()[-3000:]
    assert "producers loaded from the snapshot" not in b.log_text()
    assert produce_raw(b, pid, epoch, 2, b"raw-2") == (0, raw[2][1])
    assert produce_raw(b, pid, epoch, 4, b"raw-4")[0] == ERR_OUT_OF_ORDER
    produce(2000)

    # Everything once, in order.
    c = Consumer({"bootstrap.servers": b.addr, "group.id": "psnap-check",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "enable.partition.eof": True})
    end = c.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=10)[1]
    assert end == len(sent) + len(raw), (end, len(sent), len(raw))
    c.assign([TopicPartition(TOPIC, 0, 0)])
    got = {}
    deadline = time.monotonic() + 60
    done = False
    while not done and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                done = m.offset() >= end
                continue
            raise AssertionError("consume error: %s" % m.error())
        got[m.offset()] = m.value()
    c.close()
    assert done, "did not reach the end of the partition"
    for v, off in raw:
        assert got.pop(off) == v
    assert [got[k] for k in sorted(got)] == sent
