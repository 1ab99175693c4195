"""test_metrics_partitions.py — metrics and admin partition data follow real Kafka traffic: a
topic created with librdkafka appears in /v1/partitions; produced records move its partitions'
high watermark gauges and the per-partition admin detail (read on the owning shard); request
counters and latency histograms count Produce; bytes in/out per topic, consumer-group lag
and the fsync and group-commit histograms move; deleting the topic removes its gauges and
makes the partition endpoint answer 404.
"""
import json
import re
import time
import urllib.error
import urllib.request

import pytest

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

TOPIC = "metrics-it"


def admin_port(b, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(r"admin API listening on [0-9.]+:(\d+)", b.log_text())
        if m:
            return int(m.group(1))
        time.sleep(0.05)
    raise AssertionError(b.log_text()[-3000:])


def get(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
        body = r.read().decode()
        return json.loads(body) if r.headers["Content-Type"].startswith("application/json") \
            else body


def gauges(text, family, topic):
    out = {}
    for m in re.finditer(r'^%s\{topic="%s",partition="(\d+)"\} (\S+)$' % (family, topic), text,
                         re.M):
        out[int(m.group(1))] = float(m.group(2))
    return out


def wait_for(fn, timeout=10.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError("condition not met; last value %r" % (last,))


def test_partition_metrics_follow_traffic(broker_factory):
    b = broker_factory(args=["--admin-addr", "127.0.0.1:0"], smp=2)
    port = admin_port(b)
    a = AdminClient({"bootstrap.servers": b.addr})
    a.create_topics([NewTopic(TOPIC, num_partitions=4, replication_factor=1)],
                    request_timeout=15)[TOPIC].result(timeout=20)
    parts = get(port, "/v1/partitions/kafka/%s" % TOPIC)
    assert [p["partition_id"] for p in parts] == [0, 1, 2, 3]
    assert {p["core"] for p in parts} <= {0, 1}

    p = Producer({"bootstrap.servers": b.addr, "acks": "all", "linger.ms": 2})
    counts = {0: 3, 1: 5, 2: 0, 3: 7}
    for part, n in counts.items():
        for i in range(n):
            p.produce(TOPIC, value=b"v%d" % i, partition=part)
    assert p.flush(20) == 0

    for part, n in counts.items():
        d = get(port, "/v1/partitions/kafka/%s/%d" % (TOPIC, part))
        assert d["high_watermark"] == n and d["next_offset"] == n, d
        assert (d["size_bytes"] > 0) == (n > 0)

    def hw_ok():
        g = gauges(get(port, "/metrics"), "ailurus_kafka_partition_high_watermark", TOPIC)
        return g if g == {k: float(v) for k, v in counts.items()} else None
    wait_for(hw_ok)
    text = get(port, "/metrics")
    assert re.search(r'^ailurus_kafka_requests_total\{api="Produce"\} [1-9]\d*$', text, re.M)
    assert re.search(r'^ailurus_kafka_request_latency_seconds_count\{api="Produce"\} [1-9]\d*$',
                     text, re.M)
    assert re.search(r'^ailurus_kafka_requests_total\{api="CreateTopics"\} 1$', text, re.M)
    assert gauges(text, "ailurus_storage_log_bytes", TOPIC)[3] > 0
    # Produced bytes are counted per topic; consumed bytes too, once something is fetched.
    m = re.search(r'^ailurus_kafka_topic_bytes_in_total\{topic="%s"\} (\d+)$' % TOPIC, text, re.M)
    assert m and int(m.group(1)) > 15 * 2, text[-2000:]
    c = Consumer({"bootstrap.servers": b.addr, "group.id": "metrics-it",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(TOPIC, 3, 0)])
    got, deadline = 0, time.monotonic() + 20
    while got < 7 and time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is not None and not msg.error():
            got += 1
    # A fetch past the end gets OFFSET_OUT_OF_RANGE, counted per API and error name.
    c2 = Consumer({"bootstrap.servers": b.addr, "group.id": "metrics-it-oor",
                   "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c2.assign([TopicPartition(TOPIC, 0, 1000)])
    oor = (r'^ailurus_kafka_request_errors_total\{api="Fetch",error="OFFSET_OUT_OF_RANGE"\} '
           r'[1-9]\d*$')
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not re.search(oor, get(port, "/metrics"), re.M):
        c2.poll(0.3)
    c2.close()
    assert re.search(oor, get(port, "/metrics"), re.M)
    # A committed offset behind the high watermark shows as consumer-group lag.
    c.commit(offsets=[TopicPartition(TOPIC, 3, 4)], asynchronous=False)
    c.close()
    assert got == 7
    lag_line = (r'^ailurus_kafka_consumer_group_partition_lag\{group="metrics-it",topic="%s",'
                r'partition="3"\} 3$' % TOPIC)
    text = wait_for(lambda: (lambda t: t if re.search(lag_line, t, re.M) else None)(
        get(port, "/metrics")))
    assert re.search(r'^ailurus_kafka_consumer_group_lag_sum\{group="metrics-it"\} 3$', text,
                     re.M)
    assert re.search(r'^ailurus_kafka_consumer_group_lag_max\{group="metrics-it"\} 3$', text,
                     re.M)
    text = wait_for(lambda: (lambda t: t if re.search(
        r'^ailurus_kafka_topic_bytes_out_total\{topic="%s"\} [1-9]\d*$' % TOPIC, t, re.M)
        else None)(get(port, "/metrics")))
    # acks=all waited for fsyncs: the storage histograms saw them.
    assert re.search(r'^ailurus_storage_fsync_latency_seconds_count [1-9]\d*$', text, re.M)
    assert re.search(r'^ailurus_storage_group_commit_batch_records_count [1-9]\d*$', text, re.M)

    a.delete_topics([TOPIC], request_timeout=15)[TOPIC].result(timeout=20)
    wait_for(lambda: not gauges(get(port, "/metrics"), "ailurus_kafka_partition_high_watermark",
                                TOPIC))
    try:
        get(port, "/v1/partitions/kafka/%s/0" % TOPIC)
        raise AssertionError("expected 404 after the topic was deleted")
    except urllib.error.HTTPError as e:
        assert e.code == 404
        body = json.loads(e.read())
        assert body["code"] == 404 and TOPIC in body["message"]
