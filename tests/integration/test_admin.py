"""test_admin.py — topic administration against the real binary (2 shards) with librdkafka's
AdminClient (python3-confluent-kafka), kafka-python's KafkaAdminClient, and raw frames for the
APIs neither client library exposes (IncrementalAlterConfigs, DeleteRecords, DescribeCluster,
DescribeLogDirs, OffsetForLeaderEpoch): create (configs, defaults, validate-only, errors),
delete, create partitions, describe/alter configs, and that topic definitions and configs
survive a restart.
"""
import struct
import time

import pytest

from ailurus_harness import frame, header, read_uvarint, recv_frame, uvarint

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka import KafkaError, KafkaException, Producer  # noqa: E402
from confluent_kafka.admin import (AdminClient, ConfigResource, NewPartitions,  # noqa: E402
                                   NewTopic)

SMP = 2


_ADMINS = {}


def admin(b):
    """One AdminClient per broker address, kept alive: futures fail if their client is gone."""
    if b.addr not in _ADMINS:
        _ADMINS[b.addr] = AdminClient({"bootstrap.servers": b.addr})
    return _ADMINS[b.addr]


def create(b, topics, **kw):
    fs = admin(b).create_topics(topics, request_timeout=15, **kw)
    out = {}
    for name, f in fs.items():
        try:
            f.result(timeout=20)
            out[name] = None
        except KafkaException as e:
            out[name] = e.args[0]
    return out


def topic_partitions(b, name):
    md = admin(b).list_topics(timeout=10)
    t = md.topics.get(name)
    if t is None or t.error is not None:
        return None
    return len(t.partitions)


def describe(b, name):
    res = ConfigResource(ConfigResource.Type.TOPIC, name)
    fs = admin(b).describe_configs([res], request_timeout=15)
    return {k: v for k, v in fs[res].result(timeout=20).items()}


def _s(b):
    return struct.pack(">h", len(b)) + b


def _rd_str(buf, pos):
    (n,) = struct.unpack_from(">h", buf, pos)
    pos += 2
    if n < 0:
        return None, pos
    return buf[pos:pos + n], pos + n


def call(b, payload, timeout=10):
    s = b.connect()
    try:
        s.sendall(payload)
        return recv_frame(s, timeout=timeout)
    finally:
        s.close()


def test_create_describe_delete(broker_factory):
    b = broker_factory(smp=SMP)
    res = create(b, [NewTopic("a1", 6, 1, config={"retention.ms": "3600000",
                                                  "cleanup.policy": "compact"}),
                     NewTopic("a2", 1, 1)])
    assert res == {"a1": None, "a2": None}
    assert topic_partitions(b, "a1") == 6
    cfg = describe(b, "a1")
    assert cfg["retention.ms"].value == "3600000"
    assert cfg["cleanup.policy"].value == "compact"
    assert cfg["segment.bytes"].is_default
    # Errors: exists, bad config key and value, replication factor, partitions, name.
    res = create(b, [NewTopic("a1", 1, 1), NewTopic("bad-key", 1, 1, config={"no.such": "1"}),
                     NewTopic("bad-val", 1, 1, config={"cleanup.policy": "sometimes"}),
                     NewTopic("rf3", 1, 3), NewTopic("p0", 0, 1), NewTopic("a b", 1, 1)])
    assert res["a1"].code() == KafkaError.TOPIC_ALREADY_EXISTS
    assert res["bad-key"].code() == KafkaError.INVALID_CONFIG
    assert res["bad-val"].code() == KafkaError.INVALID_CONFIG
    assert res["rf3"].code() == KafkaError.INVALID_REPLICATION_FACTOR
    assert res["p0"].code() == KafkaError.INVALID_PARTITIONS
    assert res["a b"].code() == KafkaError.TOPIC_EXCEPTION
    # validate-only creates nothing.
    res = create(b, [NewTopic("vo", 3, 1)], validate_only=True)
    assert res == {"vo": None}
    assert topic_partitions(b, "vo") is None
    # Delete, and re-create empty.
    p = Producer({"bootstrap.servers": b.addr, "acks": "all"})
    p.produce("a2", b"old")
    assert p.flush(10) == 0
    fs = admin(b).delete_topics(["a2", "missing"], request_timeout=15)
    assert fs["a2"].result(timeout=20) is None
    with pytest.raises(KafkaException) as ei:
        fs["missing"].result(timeout=20)
    assert ei.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    assert topic_partitions(b, "a2") is None
    assert create(b, [NewTopic("a2", 1, 1)]) == {"a2": None}
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": b.addr, "group.id": "x"})
    assert c.get_watermark_offsets(TopicPartition("a2", 0), timeout=10) == (0, 0)
    c.close()


def test_create_partitions_and_alter_configs(broker_factory):
    b = broker_factory(smp=SMP)
    assert create(b, [NewTopic("cp", 2, 1)]) == {"cp": None}
    fs = admin(b).create_partitions([NewPartitions("cp", 5)], request_timeout=15)
    fs["cp"].result(timeout=20)
    assert topic_partitions(b, "cp") == 5
    fs = admin(b).create_partitions([NewPartitions("cp", 3)], request_timeout=15)
    with pytest.raises(KafkaException) as ei:
        fs["cp"].result(timeout=20)
    assert ei.value.args[0].code() == KafkaError.INVALID_PARTITIONS
    # Produce to a new partition works at once.
    p = Producer({"bootstrap.servers": b.addr, "acks": "all"})
    p.produce("cp", b"x", partition=4)
    assert p.flush(10) == 0
    # AlterConfigs (replace all).
    res = ConfigResource(ConfigResource.Type.TOPIC, "cp",
                         set_config={"retention.bytes": "1048576", "max.message.bytes": "5000"})
    admin(b).alter_configs([res], request_timeout=15)[res].result(timeout=20)
    cfg = describe(b, "cp")
    assert cfg["retention.bytes"].value == "1048576"
    assert cfg["max.message.bytes"].value == "5000"
    bad = ConfigResource(ConfigResource.Type.TOPIC, "cp", set_config={"retention.bytes": "x"})
    with pytest.raises(KafkaException) as ei:
        admin(b).alter_configs([bad], request_timeout=15)[bad].result(timeout=20)
    assert ei.value.args[0].code() == KafkaError.INVALID_CONFIG
    # The new max.message.bytes is enforced by Produce.
    errs = []
    p = Producer({"bootstrap.servers": b.addr, "acks": "all", "message.timeout.ms": 5000})
    p.produce("cp", b"y" * 20000, partition=0, on_delivery=lambda e, m: errs.append(e))
    p.flush(10)
    assert errs and errs[0] is not None and errs[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    # Broker resource: described, not alterable.
    br = ConfigResource(ConfigResource.Type.BROKER, "0")
    entries = admin(b).describe_configs([br], request_timeout=15)[br].result(timeout=20)
    assert "log.dirs" in entries or "num.partitions" in entries


def _incremental_alter_v0(topic, ops, validate_only=False):
    body = struct.pack(">i", 1) + struct.pack(">b", 2) + _s(topic) + struct.pack(">i", len(ops))
    for name, op, value in ops:
        body += _s(name) + struct.pack(">b", op)
        body += struct.pack(">h", -1) if value is None else _s(value)
    body += struct.pack(">?", validate_only)
    return frame(header(44, 0, 11) + body)


def _parse_alter_resp(resp):
    pos = 4 + 4  # corr, throttle
    (n,) = struct.unpack_from(">i", resp, pos)
    pos += 4
    (err,) = struct.unpack_from(">h", resp, pos)
    msg, pos = _rd_str(resp, pos + 2)
    return err, msg


def test_incremental_alter_configs_and_restart(broker_factory):
    b = broker_factory(smp=SMP)
    assert create(b, [NewTopic("ia", 3, 1, config={"retention.ms": "1000000"})]) == {"ia": None}
    err, msg = _parse_alter_resp(call(b, _incremental_alter_v0(
        b"ia", [(b"segment.ms", 0, b"600000"), (b"retention.ms", 1, None)])))
    assert err == 0, msg
    err, msg = _parse_alter_resp(call(b, _incremental_alter_v0(b"ia", [(b"nope.key", 0, b"1")])))
    assert err == 40 and b"nope.key" in msg  # INVALID_CONFIG names the key
    err, _ = _parse_alter_resp(call(b, _incremental_alter_v0(b"zz", [(b"segment.ms", 0, b"1")])))
    assert err == 3
    cfg = describe(b, "ia")
    assert cfg["segment.ms"].value == "600000" and not cfg["segment.ms"].is_default
    assert cfg["retention.ms"].is_default
    # Topics and configs survive a restart (and a crash).
    b.restart()
    assert topic_partitions(b, "ia") == 3
    assert describe(b, "ia")["segment.ms"].value == "600000"
    b.kill()
    b.start()
    assert topic_partitions(b, "ia") == 3
    assert describe(b, "ia")["segment.ms"].value == "600000"
    assert topic_partitions(b, "__consumer_offsets") == 16


def test_kafka_python_admin(broker_factory):
    kp = pytest.importorskip("kafka")
    from kafka.admin import ConfigResource as KCR
    from kafka.admin import ConfigResourceType, KafkaAdminClient
    from kafka.admin import NewPartitions as KNP
    from kafka.admin import NewTopic as KNT
    b = broker_factory(smp=SMP)
    a = KafkaAdminClient(bootstrap_servers=b.addr, request_timeout_ms=15000)
    a.create_topics([KNT("kp1", 2, 1, topic_configs={"retention.ms": "123456"})])
    assert "kp1" in a.list_topics()
    a.create_partitions({"kp1": KNP(4)})
    r = a.describe_configs([KCR(ConfigResourceType.TOPIC, "kp1")])
    entries = {e[0]: e[1] for e in r[0].resources[0][4]}
    assert entries["retention.ms"] == "123456"
    a.alter_configs([KCR(ConfigResourceType.TOPIC, "kp1", configs={"retention.ms": "777"})])
    r = a.describe_configs([KCR(ConfigResourceType.TOPIC, "kp1")])
    assert {e[0]: e[1] for e in r[0].resources[0][4]}["retention.ms"] == "777"
    a.delete_topics(["kp1"])
    assert "kp1" not in a.list_topics()
    cl = a.describe_cluster()
    assert cl["controller_id"] == 0 and len(cl["brokers"]) == 1
    a.close()
    assert kp


def test_raw_misc_apis(broker_factory):
    b = broker_factory(smp=SMP)
    assert create(b, [NewTopic("mx", 2, 1)]) == {"mx": None}
    p = Producer({"bootstrap.servers": b.addr, "acks": "all", "batch.num.messages": 1})
    for i in range(10):
        p.produce("mx", b"%d" % i, partition=1)
        p.flush(10)
    # DeleteRecords v0: up to offset 4 of partition 1; 99 is out of range; -1 means the HW.
    def delete_records(part, off):
        body = struct.pack(">i", 1) + _s(b"mx") + struct.pack(">i", 1)
        body += struct.pack(">iq", part, off) + struct.pack(">i", 5000)
        resp = call(b, frame(header(21, 0, 3) + body))
        pos = 4 + 4 + 4
        _, pos = _rd_str(resp, pos)
        pos += 4
        idx, low, err = struct.unpack_from(">iqh", resp, pos)
        return idx, low, err
    assert delete_records(1, 4) == (1, 4, 0)
    assert delete_records(1, 99)[2] == 1  # OFFSET_OUT_OF_RANGE
    assert delete_records(0, -1) == (0, 0, 0)
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": b.addr, "group.id": "x"})
    assert c.get_watermark_offsets(TopicPartition("mx", 1), timeout=10) == (4, 10)
    c.close()
    # DescribeCluster v0 (flexible).
    resp = call(b, frame(header(60, 0, 4, flexible=True) + b"\x00\x00"))
    pos = 4
    _, pos = read_uvarint(resp, pos)  # response header tags
    throttle, err = struct.unpack_from(">ih", resp, pos)
    assert err == 0
    # OffsetForLeaderEpoch v2: epoch 0 ends at the HW; current epoch 5 is unknown.
    body = struct.pack(">i", 1) + _s(b"mx") + struct.pack(">i", 2)
    body += struct.pack(">iii", 1, -1, 0) + struct.pack(">iii", 0, 5, 0)
    resp = call(b, frame(header(23, 2, 5) + body))
    pos = 4 + 4 + 4
    _, pos = _rd_str(resp, pos)
    pos += 4
    e1, p1, ep1, end1 = struct.unpack_from(">hiiq", resp, pos)
    e2, p2, _, _ = struct.unpack_from(">hiiq", resp, pos + 18)
    assert (e1, p1, ep1, end1) == (0, 1, 0, 10)
    assert (e2, p2) == (75, 0)  # UNKNOWN_LEADER_EPOCH
    # DescribeLogDirs v1 for all topics: the data directory with both partitions of mx.
    resp = call(b, frame(header(35, 1, 6) + struct.pack(">i", -1)))
    pos = 4 + 4
    (nres,) = struct.unpack_from(">i", resp, pos)
    assert nres == 1
    err, = struct.unpack_from(">h", resp, pos + 4)
    assert err == 0
    assert b"mx" in resp
    time.sleep(0)


def test_altered_retention_is_applied(broker_factory):
    b = broker_factory(smp=SMP)
    assert create(b, [NewTopic("ret", 1, 1)]) == {"ret": None}
    p = Producer({"bootstrap.servers": b.addr, "acks": "all", "linger.ms": 5})
    for i in range(1500):
        p.produce("ret", b"x" * 1000)
    assert p.flush(30) == 0
    res = ConfigResource(ConfigResource.Type.TOPIC, "ret",
                         set_config={"segment.bytes": "65536", "retention.bytes": "200000"})
    admin(b).alter_configs([res], request_timeout=15)[res].result(timeout=20)
    for i in range(1500):
        p.produce("ret", b"y" * 1000)
    assert p.flush(30) == 0
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": b.addr, "group.id": "x"})
    low = 0
    deadline = time.monotonic() + 20  # housekeeping runs every 5 s
    while time.monotonic() < deadline:
        low, high = c.get_watermark_offsets(TopicPartition("ret", 0), timeout=10)
        if low > 1500:
            break
        time.sleep(0.5)
    c.close()
    assert high == 3000
    assert low > 1500, "retention.bytes was not applied (log start %d)" % low
