"""test_ckpt_restart.py — a restart after SIGKILL resumes the active segment's recovery scan at
its checkpoint (src/storage/log_ckpt.c) and loses nothing acknowledged.

The broker runs with AILURUS_CKPT_BYTES=1 MiB (tests only; the default is 64 MiB) so that a few
MiB produced make checkpoints. An idempotent acks=all librdkafka producer writes numbered 1 KiB
records; the broker is SIGKILLed (no clean close: the active segment has no index files) and
restarted; its log must say it recovered from the checkpoint, and a consumer must read every
acknowledged record once, in order, at the offset it was acknowledged with. Then more records
and a second SIGKILL (the checkpoint written after the first restart is used too).
"""
import time

import pytest

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

MARK = "recovered from its checkpoint"


def produce(addr, first, n, acked):
    p = Producer({"bootstrap.servers": addr, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 5, "message.timeout.ms": 60000})
    errs = []

    def on_delivery(err, msg):
        if err is not None:
            errs.append(err)
        else:
            acked[msg.value()] = msg.offset()

    for i in range(first, first + n):
        v = b"%08d" % i + b"x" * 1016
        for _ in range(100000):
            try:
                p.produce("ck", value=v, partition=0, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    assert p.flush(90) == 0, "records not delivered within 90 s"
    assert not errs, errs[:3]


def consume_all(addr, expect):
    c = Consumer({"bootstrap.servers": addr, "group.id": "ck-check", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    c.assign([TopicPartition("ck", 0, 0)])
    got = []
    deadline = time.monotonic() + 60
    while len(got) < expect and time.monotonic() < deadline:
        for m in c.consume(500, timeout=1.0):
            assert m.error() is None, m.error()
            got.append((m.offset(), m.value()))
    c.close()
    return got


def test_sigkill_restart_uses_checkpoint_and_keeps_everything(broker_factory):
    b = broker_factory(env={"AILURUS_CKPT_BYTES": str(1 << 20)})
    a = AdminClient({"bootstrap.servers": b.addr})
    a.create_topics([NewTopic("ck", 1, 1)], request_timeout=15)["ck"].result(timeout=20)
    acked = {}
    total = 0
    for rnd in range(2):
        produce(b.addr, total, 6000, acked)  # ~6 MiB: several checkpoints
        total += 6000
        time.sleep(1.0)  # the last checkpoint job (off the shard's thread) completes
        b.kill()
        b.start()
        log = b.log_text()
        assert MARK in log, "restart %d did not use a checkpoint:\n%s" % (rnd, log[-3000:])
        line = [ln for ln in log.splitlines() if MARK in ln][0]
        print("restart %d: %s" % (rnd, line.split("storage: ", 1)[-1]))
        got = consume_all(b.addr, total)
        assert len(got) == total, "read %d records, %d acknowledged" % (len(got), total)
        assert len(acked) == total
        for k, (off, v) in enumerate(got):
            assert v == b"%08d" % k + b"x" * 1016, "record %d differs" % k
            assert acked[v] == off, "record %d at offset %d, acknowledged at %d" % (
                k, off, acked[v])
