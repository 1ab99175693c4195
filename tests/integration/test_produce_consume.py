"""test_produce_consume.py — the data path with real clients against the real binary (2 shards,
so partitions live on both and requests cross shards): kcat and librdkafka (python3-confluent-
kafka) produce and consume, idempotent acks=all, all four compression codecs, headers and
timestamps, ListOffsets (earliest, latest, by time), Fetch long poll woken by an append, limits
and errors (unknown topic, MESSAGE_TOO_LARGE, CORRUPT_MESSAGE on a bad CRC), LogAppendTime, and
durability of acknowledged data across a clean restart and a SIGKILL.
"""
import struct
import subprocess
import time
import zlib

import pytest

from ailurus_harness import frame, header, recv_frame

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

SMP = 2


def create_topic(addr, name, partitions=1, config=None):
    a = AdminClient({"bootstrap.servers": addr})
    fs = a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                   config=config or {})], request_timeout=15)
    fs[name].result(timeout=20)


def consume_all(addr, topic, partitions, want, timeout=20.0, extra=None):
    conf = {"bootstrap.servers": addr, "group.id": "it-assign", "enable.auto.commit": False,
            "auto.offset.reset": "earliest"}
    conf.update(extra or {})
    c = Consumer(conf)
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                continue
            raise AssertionError("consume error: %s" % m.error())
        got.append(m)
    c.close()
    return got


def produce(addr, topic, msgs, conf=None):
    """msgs: list of dicts for Producer.produce. Returns [(err, partition, offset, value)]."""
    acks = []

    def cb(err, m):
        acks.append((err, m.partition(), m.offset(), m.value()))

    c = {"bootstrap.servers": addr, "acks": "all", "enable.idempotence": True, "linger.ms": 2}
    c.update(conf or {})
    p = Producer(c)
    for m in msgs:
        p.produce(topic, on_delivery=cb, **m)
        p.poll(0)
    left = p.flush(30)
    assert left == 0, "%d messages not delivered" % left
    return acks


def test_kcat_produce_consume(broker_factory):
    b = broker_factory(smp=SMP)
    create_topic(b.addr, "kc", partitions=3)
    lines = "".join("k%d:line-%d\n" % (i, i) for i in range(300))
    r = subprocess.run(["kcat", "-b", b.addr, "-P", "-t", "kc", "-K", ":", "-X",
                        "topic.request.required.acks=-1"], input=lines.encode(),
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["kcat", "-b", b.addr, "-C", "-t", "kc", "-o", "beginning", "-e", "-f",
                        "%p %o %k %s\\n"], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rows = [l.split() for l in r.stdout.decode().splitlines() if l.strip()]
    assert len(rows) == 300
    by_part = {}
    for p, o, k, v in rows:
        assert v == "line-" + k[1:]
        by_part.setdefault(int(p), []).append(int(o))
    assert len(by_part) >= 2  # keys spread over partitions (and shards)
    for offs in by_part.values():
        assert offs == list(range(len(offs)))  # dense, in order, from 0


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_codecs_headers_timestamps_idempotent(broker_factory, codec):
    b = broker_factory(smp=SMP)
    create_topic(b.addr, "cx", partitions=4)
    msgs = [{"key": b"k%d" % i, "value": b"%s-%d" % (codec.encode(), i) * 20,
             "headers": [("h1", b"v%d" % i), ("h2", b"")], "timestamp": 1700000000000 + i}
            for i in range(400)]
    acks = produce(b.addr, "cx", msgs, {"compression.type": codec, "batch.num.messages": 50})
    assert all(e is None for e, _, _, _ in acks), acks[:3]
    where = {v: (p, o) for _, p, o, v in acks}
    got = consume_all(b.addr, "cx", 4, 400)
    assert len(got) == 400
    for m in got:
        assert where[m.value()] == (m.partition(), m.offset())
        i = int(m.key()[1:])
        assert m.value() == msgs[i]["value"]
        assert m.headers() == [("h1", b"v%d" % i), ("h2", b"")]
        assert m.timestamp() == (ck.TIMESTAMP_CREATE_TIME, 1700000000000 + i)


def test_list_offsets(broker_factory):
    b = broker_factory(smp=SMP)
    create_topic(b.addr, "lo", partitions=1)
    msgs = [{"value": b"v%d" % i, "timestamp": 1800000000000 + 10 * i} for i in range(100)]
    produce(b.addr, "lo", msgs, {"batch.num.messages": 7})
    c = Consumer({"bootstrap.servers": b.addr, "group.id": "it-lo"})
    assert c.get_watermark_offsets(TopicPartition("lo", 0), timeout=10) == (0, 100)
    q = [TopicPartition("lo", 0, 1800000000000 + 10 * 37 - 5)]
    assert c.offsets_for_times(q, timeout=10)[0].offset == 37
    q = [TopicPartition("lo", 0, 1800000000000 + 10 * 37)]
    assert c.offsets_for_times(q, timeout=10)[0].offset == 37
    q = [TopicPartition("lo", 0, 1)]
    assert c.offsets_for_times(q, timeout=10)[0].offset == 0
    q = [TopicPartition("lo", 0, 1900000000000)]  # after every record: end (-1)
    assert c.offsets_for_times(q, timeout=10)[0].offset in (-1, 100)
    c.close()


def test_long_poll_woken_by_append(broker_factory):
    """A consumer parked in a 20 s long poll over two partitions (on 2 shards, so usually on
    different shards) gets a record appended to either of them within 10 s.

    librdkafka keeps one Fetch in flight per broker; right after assign() its first Fetch may
    name only one partition (the other joins the fetch list a moment later), and a record for
    the missing one then waits for that Fetch to expire, in Kafka as here. So the consumer first
    reads a record from each partition: every later Fetch names both, and the wait measured is
    the broker's wake-up alone."""
    b = broker_factory(smp=SMP)
    topic = "lp"
    create_topic(b.addr, topic, partitions=2)
    p = Producer({"bootstrap.servers": b.addr, "acks": "all"})
    for part in (0, 1):
        p.produce(topic, value=b"prime", partition=part)
    assert p.flush(10) == 0
    c = Consumer({"bootstrap.servers": b.addr, "group.id": "it-" + topic,
                  "auto.offset.reset": "earliest", "fetch.wait.max.ms": 20000,
                  "fetch.min.bytes": 1, "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, 0, 0), TopicPartition(topic, 1, 0)])
        primed = set()
        t0 = time.monotonic()
        while len(primed) < 2 and time.monotonic() - t0 < 30:
            m = c.poll(0.2)
            if m is not None and not m.error():
                primed.add(m.partition())
        assert primed == {0, 1}, primed
        for part in (1, 0):
            for _ in range(5):
                c.poll(0.2)  # parked again: a long poll naming both partitions
            t0 = time.monotonic()
            p.produce(topic, value=b"wake%d" % part, partition=part)
            assert p.flush(10) == 0
            m = None
            while time.monotonic() - t0 < 10:
                m = c.poll(0.2)
                if m is not None and not m.error():
                    break
            waited = time.monotonic() - t0
            assert m is not None and not m.error() and m.value() == b"wake%d" % part, \
                "partition %d: the long poll was not woken by the append (%.1f s)" % (part, waited)
    finally:
        c.close()


def test_unknown_topic_and_too_large(broker_factory):
    b = broker_factory(smp=SMP)
    create_topic(b.addr, "small", partitions=1, config={"max.message.bytes": "2000"})
    errs = []
    p = Producer({"bootstrap.servers": b.addr, "acks": "all", "message.max.bytes": 100000,
                  "message.timeout.ms": 5000, "topic.metadata.refresh.interval.ms": 1000})
    p.produce("small", value=b"x" * 50000, on_delivery=lambda e, m: errs.append(e))
    p.flush(15)  # alone in its batch: a rejected batch fails every record in it
    p.produce("small", value=b"ok", on_delivery=lambda e, m: errs.append(e))
    p.flush(15)
    codes = sorted((e.code() if e else 0) for e in errs)
    assert codes == [0, KafkaError.MSG_SIZE_TOO_LARGE], errs
    # Unknown topic: librdkafka gets UNKNOWN_TOPIC_OR_PARTITION from Metadata (auto-create off).
    errs.clear()
    p.produce("nope", value=b"x", on_delivery=lambda e, m: errs.append(e))
    p.flush(15)
    assert len(errs) == 1 and errs[0] is not None
    assert errs[0].code() in (KafkaError._UNKNOWN_TOPIC, KafkaError.UNKNOWN_TOPIC_OR_PART,
                              KafkaError._MSG_TIMED_OUT), errs


def _produce_v3_frame(topic, partition, batch, corr, acks=-1):
    body = struct.pack(">hhi", -1, acks, 5000)  # transactional id null, acks, timeout
    body += struct.pack(">i", 1) + struct.pack(">h", len(topic)) + topic
    body += struct.pack(">i", 1) + struct.pack(">i", partition)
    body += struct.pack(">i", len(batch)) + batch
    return frame(header(0, 3, corr) + body)


def _batch(records_payload=b"hello", crc_ok=True):
    """A magic-2 batch with one uncompressed record."""
    def varint(n):
        n = (n << 1) ^ (n >> 63)
        out = b""
        while n >= 0x80:
            out += bytes([(n & 0x7F) | 0x80])
            n >>= 7
        return out + bytes([n])
    rec = b"\x00" + varint(0) + varint(0) + varint(-1) + varint(len(records_payload)) + \
        records_payload + varint(0)
    rec = varint(len(rec)) + rec
    after_crc = struct.pack(">hiqqqhii", 0, 0, 1000, 1000, -1, -1, -1, 1) + rec
    import binascii  # noqa: F401
    crc = _crc32c(after_crc)
    if not crc_ok:
        crc ^= 0xdeadbeef
    body = struct.pack(">ibI", 0, 2, crc) + after_crc
    return struct.pack(">qi", 0, len(body)) + body


def _crc32c(data):
    poly = 0x82F63B78
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (poly if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _produce_error(b, batch, topic=b"raw"):
    s = b.connect()
    s.sendall(_produce_v3_frame(topic, 0, batch, 7))
    resp = recv_frame(s, timeout=10)
    s.close()
    # header: corr; body: [topic: name, [partition: idx, err, base, logappendtime]] throttle
    pos = 4
    (n,) = struct.unpack_from(">i", resp, pos)
    pos += 4
    (ln,) = struct.unpack_from(">h", resp, pos)
    pos += 2 + ln
    (np_,) = struct.unpack_from(">i", resp, pos)
    pos += 4
    idx, err, base = struct.unpack_from(">ihq", resp, pos)
    return err, base


def test_raw_produce_crc_and_good(broker_factory):
    b = broker_factory(smp=SMP)
    create_topic(b.addr, "raw", partitions=1)
    err, base = _produce_error(b, _batch(b"good"))
    assert (err, base) == (0, 0)
    err, base = _produce_error(b, _batch(b"bad", crc_ok=False))
    assert err == 2  # CORRUPT_MESSAGE
    err, base = _produce_error(b, _batch(b"good2"))
    assert (err, base) == (0, 1)  # the corrupt batch took no offset
    err, _ = _produce_error(b, _batch(b"x"), topic=b"missing")
    assert err == 3  # UNKNOWN_TOPIC_OR_PARTITION
    assert zlib  # (kept for symmetry with other tests)


def test_log_append_time(broker_factory):
    b = broker_factory(smp=SMP)
    create_topic(b.addr, "lat", partitions=1, config={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    produce(b.addr, "lat", [{"value": b"a", "timestamp": 1000}])
    got = consume_all(b.addr, "lat", 1, 1)
    ttype, ts = got[0].timestamp()
    assert ttype == ck.TIMESTAMP_LOG_APPEND_TIME
    assert before - 1000 <= ts <= int(time.time() * 1000) + 1000


@pytest.mark.parametrize("how", ["restart", "sigkill"])
def test_acknowledged_data_survives(broker_factory, how):
    b = broker_factory(smp=SMP)
    create_topic(b.addr, "dur", partitions=3, config={"cleanup.policy": "delete"})
    acks = produce(b.addr, "dur", [{"key": b"%d" % i, "value": b"v%d" % i} for i in range(500)])
    assert all(e is None for e, _, _, _ in acks)
    if how == "restart":
        b.restart()
    else:
        b.kill()
        b.start()
    got = consume_all(b.addr, "dur", 3, 500)
    assert sorted((m.partition(), m.offset(), m.value()) for m in got) == \
        sorted((p, o, v) for _, p, o, v in acks)
    # New appends continue after the recovered offsets.
    acks2 = produce(b.addr, "dur", [{"value": b"after", "partition": 0}])
    n0 = sum(1 for _, p, _, _ in acks if p == 0)
    assert acks2[0][1:3] == (0, n0)


def _list_offsets_v7(b, topic, ts):
    """ListOffsets v7 (flexible) for partition 0; returns (error, timestamp, offset, epoch)."""
    from ailurus_harness import read_uvarint, uvarint
    body = struct.pack(">ib", -1, 0) + uvarint(2) + uvarint(len(topic) + 1) + topic
    body += uvarint(2) + struct.pack(">iiq", 0, -1, ts) + b"\x00" + b"\x00" + b"\x00"
    s = b.connect()
    s.sendall(frame(header(2, 7, 21, flexible=True) + body))
    resp = recv_frame(s, timeout=10)
    s.close()
    pos = 4
    _, pos = read_uvarint(resp, pos)  # header tags
    pos += 4  # throttle
    _, pos = read_uvarint(resp, pos)  # topics
    n, pos = read_uvarint(resp, pos)
    pos += n - 1
    _, pos = read_uvarint(resp, pos)  # partitions
    idx, err, ts_out, off, epoch = struct.unpack_from(">ihqqi", resp, pos)
    return err, ts_out, off, epoch


def test_list_offsets_max_timestamp_and_acks0(broker_factory):
    b = broker_factory(smp=SMP)
    create_topic(b.addr, "mt", partitions=1)
    stamps = [1800000000000 + d for d in (5, 50, 7, 20, 49)]
    produce(b.addr, "mt", [{"value": b"%d" % i, "timestamp": t} for i, t in enumerate(stamps)],
            {"batch.num.messages": 2})
    assert _list_offsets_v7(b, b"mt", -3) == (0, 1800000000050, 1, 0)  # max timestamp
    assert _list_offsets_v7(b, b"mt", -2) == (0, -1, 0, 0)
    assert _list_offsets_v7(b, b"mt", -1) == (0, -1, 5, 0)
    assert _list_offsets_v7(b, b"mt", 1800000000010) == (0, 1800000000050, 1, 0)
    # acks=0: no response, but the records are stored.
    p = Producer({"bootstrap.servers": b.addr, "acks": 0})
    for i in range(20):
        p.produce("mt", b"z%d" % i)
    assert p.flush(10) == 0
    got = consume_all(b.addr, "mt", 1, 25)
    assert [m.value() for m in got][5:] == [b"z%d" % i for i in range(20)]


def _zstd_batch_v3(b):
    """A zstd-flagged batch on Produce v3: UNSUPPORTED_COMPRESSION_TYPE (zstd needs v7)."""
    batch = bytearray(_batch(b"x"))
    batch[21:23] = struct.pack(">h", 4)
    crc = _crc32c(bytes(batch[21:]))
    batch[17:21] = struct.pack(">I", crc)
    return bytes(batch)


def test_zstd_needs_produce_v7(broker_factory):
    b = broker_factory(smp=SMP)
    create_topic(b.addr, "raw", partitions=1)
    err, _ = _produce_error(b, _zstd_batch_v3(b))
    assert err == 76  # UNSUPPORTED_COMPRESSION_TYPE


def test_metadata_auto_create(broker_factory):
    b = broker_factory(smp=SMP, args=["--set", "auto_create_topics_enabled=true",
                                      "--set", "default_topic_partitions=3"])
    r = subprocess.run(["kcat", "-b", b.addr, "-P", "-t", "auto1", "-X",
                        "topic.request.required.acks=-1"], input=b"a\nb\nc\n",
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    a = AdminClient({"bootstrap.servers": b.addr})
    md = a.list_topics(timeout=10)
    assert "auto1" in md.topics and len(md.topics["auto1"].partitions) == 3
    got = consume_all(b.addr, "auto1", 3, 3)
    assert sorted(m.value() for m in got) == [b"a", b"b", b"c"]
    # Invalid names are refused, not created.
    md = a.list_topics(topic="bad name", timeout=10)
    assert md.topics["bad name"].error is not None
    assert "bad name" not in a.list_topics(timeout=10).topics
