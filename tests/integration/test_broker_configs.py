"""test_broker_configs.py — dynamic broker configs on the real binary (2 shards): DescribeConfigs,
AlterConfigs and IncrementalAlterConfigs on BROKER resources ("" = the cluster-wide default as
`kafka-configs --entity-default`, "0" = this node) with librdkafka's AdminClient
(python3-confluent-kafka), kafka-python's KafkaAdminClient, kafkajs, and raw frames for
IncrementalAlterConfigs (no Python client here has it), and the admin API's PUT of the same
keys. Proves the effects: a lower
message.max.bytes refuses larger batches on existing and new topics without an override,
log.retention.ms deletes old segments of a topic without an override and not of one with its
own, values survive a restart and show in the admin API, validate_only changes nothing, bad and
read-only keys get INVALID_CONFIG naming the key.
"""
import http.client
import json
import os
import re
import struct
import time

import pytest

from ailurus_harness import frame, header, wait_for
from test_admin import _rd_str, _s, call  # raw-frame helpers
from test_kafkajs import run

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer  # noqa: E402
from confluent_kafka import TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic  # noqa: E402

SMP = 2
BROKER, TOPIC = 4, 2
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3
DYNAMIC_DEFAULT, STATIC, DEFAULT = 3, 4, 5
ADMIN_RE = re.compile(r"admin API listening on [0-9.]+:(\d+)")

_ADMINS = {}


def admin(b):
    """One AdminClient per broker address, kept alive: futures fail if their client is gone."""
    if b.addr not in _ADMINS:
        _ADMINS[b.addr] = AdminClient({"bootstrap.servers": b.addr})
    return _ADMINS[b.addr]


def describe(b, rtype, name):
    res = ConfigResource(rtype, name)
    return dict(admin(b).describe_configs([res], request_timeout=15)[res].result(timeout=20))


def alter(b, rtype, name, cfg, validate_only=False):
    """Legacy AlterConfigs (replaces every dynamic value of the resource). None or the error."""
    res = ConfigResource(rtype, name, set_config=cfg)
    try:
        admin(b).alter_configs([res], request_timeout=15,
                               validate_only=validate_only)[res].result(timeout=20)
        return None
    except KafkaException as e:
        return e.args[0]


def create(b, topics):
    for f in admin(b).create_topics(topics, request_timeout=15).values():
        f.result(timeout=20)


def admin_call(b, method, path, body=None):
    """The admin API (port from the log): (status, JSON body)."""
    deadline = time.monotonic() + 10
    m = None
    while not m and time.monotonic() < deadline:
        m = ADMIN_RE.search(b.log_text())
        time.sleep(0.02)
    assert m, b.log_text()[-2000:]
    c = http.client.HTTPConnection("127.0.0.1", int(m.group(1)), timeout=15)
    c.request(method, path, None if body is None else json.dumps(body))
    r = c.getresponse()
    out = (r.status, json.loads(r.read()))
    c.close()
    return out


def admin_get(b, path):
    status, body = admin_call(b, "GET", path)
    assert status == 200, body
    return body


def produce_errors(b, topic, size, n=1, timestamp=0):
    errs = []
    p = Producer({"bootstrap.servers": b.addr, "acks": "all", "message.timeout.ms": 8000,
                  "linger.ms": 0, "batch.num.messages": 1})  # one batch each: segments roll
    for _ in range(n):
        p.produce(topic, b"x" * size, partition=0, timestamp=timestamp,
                  on_delivery=lambda e, m: errs.append(e))
        p.poll(0)
    p.flush(15)
    assert len(errs) == n
    return errs


# ---- raw IncrementalAlterConfigs v0 / DescribeConfigs v1 (resource name "" for librdkafka) --

def incremental(b, rtype, name, ops, validate_only=False):
    """IncrementalAlterConfigs v0 on one resource: ops = [(key, op, value or None)].
    Returns (error code, message)."""
    body = struct.pack(">i", 1) + struct.pack(">b", rtype) + _s(name.encode())
    body += struct.pack(">i", len(ops))
    for key, op, value in ops:
        body += _s(key.encode()) + struct.pack(">b", op)
        body += struct.pack(">h", -1) if value is None else _s(value.encode())
    body += struct.pack(">?", validate_only)
    resp = call(b, frame(header(44, 0, 7) + body))
    pos = 4 + 4 + 4  # correlation id, throttle, count
    (err,) = struct.unpack_from(">h", resp, pos)
    msg, _ = _rd_str(resp, pos + 2)
    return err, (msg or b"").decode()


def describe_raw(b, rtype, name, keys=None):
    """DescribeConfigs v1 with synonyms: {key: (value, source, read_only, [synonyms])}."""
    body = struct.pack(">i", 1) + struct.pack(">b", rtype) + _s(name.encode())
    if keys is None:
        body += struct.pack(">i", -1)
    else:
        body += struct.pack(">i", len(keys)) + b"".join(_s(k.encode()) for k in keys)
    body += struct.pack(">?", True)
    resp = call(b, frame(header(32, 1, 8) + body))
    pos = 4 + 4
    (n,) = struct.unpack_from(">i", resp, pos)
    assert n == 1
    pos += 4
    (err,) = struct.unpack_from(">h", resp, pos)
    assert err == 0
    _, pos = _rd_str(resp, pos + 2)
    pos += 1  # resource type
    _, pos = _rd_str(resp, pos)
    (nc,) = struct.unpack_from(">i", resp, pos)
    pos += 4
    out = {}
    for _ in range(nc):
        k, pos = _rd_str(resp, pos)
        v, pos = _rd_str(resp, pos)
        ro, src, sens = struct.unpack_from(">?b?", resp, pos)
        pos += 3
        (ns,) = struct.unpack_from(">i", resp, pos)
        pos += 4
        syn = []
        for _ in range(ns):
            sn, pos = _rd_str(resp, pos)
            sv, pos = _rd_str(resp, pos)
            (ss,) = struct.unpack_from(">b", resp, pos)
            pos += 1
            syn.append((sn.decode(), sv.decode() if sv is not None else None, ss))
        out[k.decode()] = (v.decode() if v is not None else None, src, ro, syn)
    return out


# ---- tests ----

def test_message_max_bytes_live_persisted_and_validated(broker_factory):
    b = broker_factory(smp=SMP)
    node = describe(b, ConfigResource.Type.BROKER, "0")
    mmb = node["message.max.bytes"]
    assert mmb.value == "1048588" and mmb.source == DEFAULT and not mmb.is_read_only
    assert node["socket.request.max.bytes"].is_read_only
    assert node["log.retention.ms"].value == "604800000"
    # Nothing is dynamic yet: the default resource lists nothing (as Kafka).
    assert describe_raw(b, BROKER, "") == {}
    create(b, [NewTopic("old", 1, 1),
               NewTopic("own", 1, 1, config={"max.message.bytes": "2000000"})])
    # validate_only changes nothing.
    assert alter(b, ConfigResource.Type.BROKER, "0", {"message.max.bytes": "10000"},
                 validate_only=True) is None
    assert describe(b, ConfigResource.Type.BROKER, "0")["message.max.bytes"].value == "1048588"
    assert not produce_errors(b, "old", 20000)[0]
    # Lower the broker default: existing topics without an override follow at once.
    assert alter(b, ConfigResource.Type.BROKER, "0", {"message.max.bytes": "10000"}) is None
    e = describe(b, ConfigResource.Type.BROKER, "0")["message.max.bytes"]
    assert e.value == "10000" and e.source == DYNAMIC_DEFAULT
    t = describe_raw(b, TOPIC, "old", ["max.message.bytes"])["max.message.bytes"]
    assert t[0] == "10000" and t[1] == DYNAMIC_DEFAULT
    assert ("message.max.bytes", "10000", DYNAMIC_DEFAULT) in t[3]
    assert describe_raw(b, TOPIC, "own", ["max.message.bytes"])["max.message.bytes"][:2] == \
        ("2000000", 1)
    assert describe_raw(b, BROKER, "")["message.max.bytes"][:2] == ("10000", DYNAMIC_DEFAULT)
    errs = produce_errors(b, "old", 20000)
    assert errs[0] and errs[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    assert not produce_errors(b, "own", 20000)[0]
    assert not produce_errors(b, "old", 5000)[0]
    # ... and so does a topic created after the change.
    create(b, [NewTopic("new", 1, 1)])
    errs = produce_errors(b, "new", 20000)
    assert errs[0] and errs[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    # Shared with the admin API: same store, same view.
    assert admin_get(b, "/v1/cluster_config")["kafka_batch_max_bytes"] == 10000
    saved = json.load(open(os.path.join(b.data_dir, "cluster_config.json")))
    assert saved == {"kafka_batch_max_bytes": "10000"}
    # Bad values, read-only and unknown keys: INVALID_CONFIG naming the key; nothing changes.
    for cfg, needle in [({"message.max.bytes": "lots"}, "message.max.bytes"),
                        ({"log.segment.bytes": "100"}, "log.segment.bytes"),
                        ({"log.cleanup.policy": "sometimes"}, "log.cleanup.policy"),
                        ({"socket.request.max.bytes": "1000"}, "socket.request.max.bytes"),
                        ({"no.such.config": "1"}, "no.such.config")]:
        err = alter(b, ConfigResource.Type.BROKER, "0", cfg)
        assert err is not None and err.code() == KafkaError.INVALID_CONFIG, cfg
        assert needle in err.str(), (cfg, err.str())
    # Another node's id (librdkafka would route it to that node: raw frame).
    assert incremental(b, BROKER, "7", [("message.max.bytes", SET, "1")])[0] == 42
    assert describe(b, ConfigResource.Type.BROKER, "0")["message.max.bytes"].value == "10000"
    # A restart keeps it, and keeps applying it.
    b.restart()
    e = describe(b, ConfigResource.Type.BROKER, "0")["message.max.bytes"]
    assert e.value == "10000" and e.source == DYNAMIC_DEFAULT
    errs = produce_errors(b, "old", 20000)
    assert errs[0] and errs[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    # Legacy AlterConfigs replaces every dynamic value: message.max.bytes goes back.
    assert alter(b, ConfigResource.Type.BROKER, "0", {"log.retention.ms": "86400000"}) is None
    node = describe(b, ConfigResource.Type.BROKER, "0")
    assert node["message.max.bytes"].value == "1048588"
    assert node["message.max.bytes"].source == DEFAULT
    assert node["log.retention.ms"].value == "86400000"
    assert not produce_errors(b, "old", 20000)[0]
    assert admin_get(b, "/v1/cluster_config")["log_retention_ms"] == 86400000


def test_retention_default_deletes_old_segments(broker_factory):
    b = broker_factory(smp=SMP)
    small = {"segment.bytes": "16384"}
    create(b, [NewTopic("drop", 1, 1, config=small),
               NewTopic("keep", 1, 1, config=dict(small, **{"retention.ms": "-1"}))])
    hour_ago = int(time.time() * 1000) - 3600 * 1000
    for t in ("drop", "keep"):
        assert not any(produce_errors(b, t, 2000, n=40, timestamp=hour_ago))
    c = Consumer({"bootstrap.servers": b.addr, "group.id": "wm"})

    def low(t):
        return c.get_watermark_offsets(TopicPartition(t, 0), timeout=10)[0]

    assert low("drop") == 0 and low("keep") == 0
    # validate_only through IncrementalAlterConfigs on the default resource: nothing changes.
    assert incremental(b, BROKER, "", [("log.retention.ms", SET, "60000")],
                       validate_only=True) == (0, "")
    assert describe_raw(b, BROKER, "") == {}
    err, msg = incremental(b, BROKER, "", [("log.retention.ms", SET, "-7")])
    assert err == 40 and "log.retention.ms" in msg
    err, msg = incremental(b, BROKER, "", [("log.retention.hours", SET, "1")])
    assert err == 40 and "log.retention.hours" in msg  # read-only, as in Kafka
    assert incremental(b, BROKER, "", [("log.retention.ms", SET, "60000")]) == (0, "")
    node = describe_raw(b, BROKER, "0", ["log.retention.ms"])["log.retention.ms"]
    assert node[:2] == ("60000", DYNAMIC_DEFAULT)
    assert node[3][0] == ("log.retention.ms", "60000", DYNAMIC_DEFAULT)
    # Housekeeping (every 5 s) deletes the hour-old segments of "drop", not of "keep".
    deadline = time.monotonic() + 30
    while low("drop") == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert low("drop") > 0
    assert low("keep") == 0
    c.close()
    # DELETE restores the start-up value (the default).
    assert incremental(b, BROKER, "0", [("log.retention.ms", DELETE, None)]) == (0, "")
    node = describe_raw(b, BROKER, "0", ["log.retention.ms"])["log.retention.ms"]
    assert node[:2] == ("604800000", DEFAULT)
    # APPEND / SUBTRACT on the list key log.cleanup.policy.
    assert incremental(b, BROKER, "", [("log.cleanup.policy", APPEND, "compact")]) == (0, "")
    t = describe_raw(b, TOPIC, "drop", ["cleanup.policy"])["cleanup.policy"]
    assert t[:2] == ("compact,delete", DYNAMIC_DEFAULT)
    assert incremental(b, BROKER, "", [("log.cleanup.policy", SUBTRACT, "delete")]) == (0, "")
    assert describe_raw(b, BROKER, "")["log.cleanup.policy"][0] == "compact"
    err, msg = incremental(b, BROKER, "", [("message.max.bytes", APPEND, "1")])
    assert err == 40 and "message.max.bytes" in msg


def test_admin_api_put_applies_live(broker_factory):
    """PUT /v1/cluster_config of a live key goes through the same path: every shard applies it
    before the answer, Kafka sees it as a dynamic default, remove restores it."""
    b = broker_factory(smp=SMP)
    create(b, [NewTopic("ap", 2, 1)])
    status, res = admin_call(b, "PUT", "/v1/cluster_config",
                             {"upsert": {"kafka_batch_max_bytes": 10000}})
    assert status == 200 and res["restart_required"] == [], res
    e = describe(b, ConfigResource.Type.BROKER, "0")["message.max.bytes"]
    assert e.value == "10000" and e.source == DYNAMIC_DEFAULT
    errs = produce_errors(b, "ap", 20000)
    assert errs[0] and errs[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    status, res = admin_call(b, "PUT", "/v1/cluster_config",
                             {"upsert": {"log_cleanup_policy": "sometimes"}})
    assert status == 400 and "log_cleanup_policy" in res["message"]
    status, _ = admin_call(b, "PUT", "/v1/cluster_config", {"remove": ["kafka_batch_max_bytes"]})
    assert status == 200
    assert not produce_errors(b, "ap", 20000)[0]
    assert describe(b, ConfigResource.Type.BROKER, "0")["message.max.bytes"].source == DEFAULT
    assert json.load(open(os.path.join(b.data_dir, "cluster_config.json"))) == {}


def test_static_broker_config_source(broker_factory, tmp_path):
    yaml = tmp_path / "ailurus.yaml"
    yaml.write_text("log_retention_ms: 7200000\n")
    b = broker_factory(smp=SMP, args=["--config", str(yaml), "--log-segment-ms", "3600000"])
    e = describe_raw(b, BROKER, "0", ["log.retention.ms"])["log.retention.ms"]
    assert e[:2] == ("7200000", STATIC)
    create(b, [NewTopic("st", 1, 1)])
    t = describe_raw(b, TOPIC, "st", ["retention.ms"])["retention.ms"]
    assert t[:2] == ("7200000", STATIC)
    # A dynamic value overrides the file's; DELETE goes back to it.
    assert incremental(b, BROKER, "0", [("log.retention.ms", SET, "3600000")]) == (0, "")
    e = describe_raw(b, BROKER, "0", ["log.retention.ms"])["log.retention.ms"]
    assert e[:2] == ("3600000", DYNAMIC_DEFAULT)
    assert [s[2] for s in e[3]] == [DYNAMIC_DEFAULT, STATIC, DEFAULT]
    assert incremental(b, BROKER, "0", [("log.retention.ms", DELETE, None)]) == (0, "")
    e = describe_raw(b, BROKER, "0", ["log.retention.ms"])["log.retention.ms"]
    assert e[:2] == ("7200000", STATIC)
    # A key from the command line would win again at the next start: refused, naming it.
    assert describe_raw(b, BROKER, "0", ["log.roll.ms"])["log.roll.ms"][:2] == \
        ("3600000", STATIC)
    err, msg = incremental(b, BROKER, "", [("log.roll.ms", SET, "60000")])
    assert err == 40 and "log.roll.ms" in msg and "command line" in msg, msg


def test_kafka_python_broker_configs(broker_factory):
    kafka = pytest.importorskip("kafka")
    from kafka.admin import ConfigResource as KConfigResource, ConfigResourceType
    b = broker_factory(smp=SMP)
    a = kafka.KafkaAdminClient(bootstrap_servers=b.addr, request_timeout_ms=15000)
    try:
        res = a.describe_configs([KConfigResource(ConfigResourceType.BROKER, "0")])
        entries = {e[0]: e for e in res[0].resources[0][4]}
        assert entries["num.partitions"][1] == "1"
        assert entries["auto.create.topics.enable"][1] == "false"
        # The cluster-wide default resource: auto-create on, 3 partitions, live.
        r = a.alter_configs([KConfigResource(ConfigResourceType.BROKER, "", configs={
            "auto.create.topics.enable": "true", "num.partitions": "3"})])
        assert r.resources[0][0] == 0, r
        # (kafka-python describes brokers by id only)
        res = a.describe_configs([KConfigResource(ConfigResourceType.BROKER, "0")])
        entries = {e[0]: e for e in res[0].resources[0][4]}
        assert entries["num.partitions"][1] == "3"
        assert entries["num.partitions"][3] == DYNAMIC_DEFAULT  # (name, value, ro, source..)
        assert entries["num.partitions"][2] is False
        assert entries["auto.create.topics.enable"][1] == "true"
        r = a.alter_configs([KConfigResource(ConfigResourceType.BROKER, "", configs={
            "num.partitions": "0"})])
        assert r.resources[0][0] == 40 and "num.partitions" in r.resources[0][1]
    finally:
        a.close()
    md = admin(b).list_topics("auto-made", timeout=10)  # Metadata auto-creates it
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        md = admin(b).list_topics(timeout=10)
        if "auto-made" in md.topics and md.topics["auto-made"].error is None:
            break
        admin(b).list_topics("auto-made", timeout=10)
        time.sleep(0.2)
    assert len(md.topics["auto-made"].partitions) == 3


def test_kafkajs_broker_configs(kafkajs, broker_factory):
    b = broker_factory(smp=SMP)
    out = run(kafkajs, "brokerConfigs", b)
    assert out["before"] == {"value": "604800000", "source": DEFAULT, "readOnly": False}
    assert out["after"] == {"value": "3600000", "source": DYNAMIC_DEFAULT, "readOnly": False}
    assert out["topic"] == {"value": "3600000", "source": DYNAMIC_DEFAULT}
    assert out["readOnlyError"] == "INVALID_CONFIG"
    assert describe_raw(b, BROKER, "")["log.retention.ms"][:2] == ("3600000", DYNAMIC_DEFAULT)


# ---- cluster mode: broker configs through the controller (issue 7) ----

def _cluster_admin_call(b, method, path, body=None):
    """The admin API of a cluster node (its port from the LAST start in the log)."""
    ports = ADMIN_RE.findall(b.log_text())
    assert ports, b.log_text()[-2000:]
    c = http.client.HTTPConnection("127.0.0.1", int(ports[-1]), timeout=20)
    c.request(method, path, None if body is None else json.dumps(body))
    r = c.getresponse()
    out = (r.status, json.loads(r.read()))
    c.close()
    return out


def _node_values(b, keys):
    """This node's BROKER values for keys (DescribeConfigs on its own id): {key: (value, src)}."""
    d = describe_raw(b, BROKER, str(b.node_id), keys)
    return {k: d[k][:2] for k in keys}


def _produce_err(bootstrap, topic, size):
    """One acks=all record of size bytes through the cluster: its delivery error or None."""
    errs = []
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "message.timeout.ms": 15000,
                  "linger.ms": 0})
    p.produce(topic, b"x" * size, partition=0, on_delivery=lambda e, m: errs.append(e))
    p.flush(20)
    assert len(errs) == 1
    return errs[0]


def test_cluster_broker_configs_through_the_controller(cluster_factory):
    """3 nodes: IncrementalAlterConfigs sent to a follower (its own node id) while another node
    is SIGKILLed changes log.retention.ms and message.max.bytes on every live node (answered
    once the follower has it), takes effect on a topic's leader, reaches the killed node when it
    is back, and survives a whole-cluster restart; the admin API PUT on a follower and a DELETE
    go the same way."""
    from test_cluster_formation import controller_everywhere, voters_ready

    c = cluster_factory(3)
    keys = ["log.retention.ms", "message.max.bytes"]
    want = {"log.retention.ms": ("123456", DYNAMIC_DEFAULT),
            "message.max.bytes": ("400000", DYNAMIC_DEFAULT)}
    ctl = wait_for("one controller", lambda: controller_everywhere(c, [0, 1, 2]))
    wait_for("3 controller voters", lambda: voters_ready(c, ctl - 1, 3))
    f, down = [i for i in range(3) if c.nodes[i].node_id != ctl]
    fb = c.nodes[f]
    create(fb, [NewTopic("cfg3", 1, 3)])
    c.kill(down)
    live = [i for i in range(3) if i != down]
    err, msg = incremental(fb, BROKER, str(fb.node_id),
                           [("log.retention.ms", SET, "123456"),
                            ("message.max.bytes", SET, "400000")])
    assert err == 0, msg
    assert _node_values(fb, keys) == want  # answered after the local install
    wait_for("the values on every live node",
          lambda: all(_node_values(c.nodes[i], keys) == want for i in live))
    t = describe_raw(c.nodes[ctl - 1], TOPIC, "cfg3", ["max.message.bytes"])
    assert t["max.message.bytes"][:2] == ("400000", DYNAMIC_DEFAULT)
    boot = ",".join(c.nodes[i].addr for i in live)
    e = _produce_err(boot, "cfg3", 450000)
    assert e is not None and e.code() == KafkaError.MSG_SIZE_TOO_LARGE, e
    assert _produce_err(boot, "cfg3", 1000) is None
    # The node that was down gets the change when it is back.
    c.restart(down)
    wait_for("the values on the restarted node", lambda: _node_values(c.nodes[down], keys) == want)
    # The admin API on a follower goes through the controller too.
    st, body = _cluster_admin_call(fb, "PUT", "/v1/cluster_config",
                                   {"upsert": {"log_retention_ms": 654321}})
    assert st == 200, body
    wait_for("the PUT on every node", lambda: all(
        _cluster_admin_call(b, "GET", "/v1/cluster_config")[1]["log_retention_ms"] == 654321
        for b in c.nodes))
    # A bad value is refused (400) and changes nothing.
    st, body = _cluster_admin_call(fb, "PUT", "/v1/cluster_config",
                                   {"upsert": {"log_retention_ms": "soon"}})
    assert st == 400, body
    # DELETE restores the start-up value everywhere.
    err, msg = incremental(c.nodes[down], BROKER, "", [("message.max.bytes", DELETE, None)])
    assert err == 0, msg
    wait_for("message.max.bytes back everywhere", lambda: all(
        _node_values(b, ["message.max.bytes"])["message.max.bytes"] == ("1048588", DEFAULT)
        for b in c.nodes))
    # A whole-cluster restart keeps the rest.
    c.stop()
    c.start()
    after = {"log.retention.ms": ("654321", DYNAMIC_DEFAULT),
             "message.max.bytes": ("1048588", DEFAULT)}
    wait_for("the values after a full restart",
          lambda: all(_node_values(b, keys) == after for b in c.nodes))
