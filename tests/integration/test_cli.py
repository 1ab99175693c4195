"""test_cli.py — the operator CLI (`ailurus topic|group|cluster`) end to end against a real
broker: every command in table and JSON mode, produce then consume back (keys, headers,
compression, offsets by number/timestamp/end), consumer-group lag after a librdkafka consumer
commits and stops, seek and delete, cluster info/health/config (edit through $EDITOR), and the
error paths: unknown topic (exit 1), broker down (exit 3), bad flags (exit 2). Every wait is
bounded (subprocess timeouts, poll deadlines).
"""
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import time

import pytest

from ailurus_harness import binary

ADMIN_RE = re.compile(r"admin API listening on [0-9.]+:(\d+)")


@pytest.fixture
def broker_factory(broker_factory):
    """conftest's factory, plus: a broker that stopped cleanly has its temporary directory
    (data with preallocated segments, logs) removed, so repeated runs do not fill the disk.
    A failing broker's directory is kept for its logs."""
    made = []

    def make(*args, **kw):
        b = broker_factory(*args, **kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()  # raises (and keeps the directory) if it crashed; conftest then sees it stopped
        shutil.rmtree(b.tmp, ignore_errors=True)


def admin_url(b, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = ADMIN_RE.search(b.log_text())
        if m:
            return "http://127.0.0.1:%s" % m.group(1)
        time.sleep(0.05)
    raise AssertionError("no admin API line in the broker log")


def cli_binary():
    """The CLI under test: AILURUS_CLI_BIN (e.g. an ASan build against a release broker) or the
    broker binary."""
    return os.environ.get("AILURUS_CLI_BIN") or binary()


def cli(b, *args, stdin=None, env=None, timeout=60, admin=None):
    """Runs `ailurus ARGS --brokers <b>`; returns (exit code, stdout, stderr)."""
    cmd = [cli_binary()] + list(args)
    if b is not None:
        cmd += ["--brokers", b.addr]
    if admin:
        cmd += ["--admin-url", admin]
    e = dict(os.environ)
    e.pop("AILURUS_BROKERS", None)
    e.update(env or {})
    p = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout, env=e)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def ok(b, *args, **kw):
    rc, out, err = cli(b, *args, **kw)
    assert rc == 0, "ailurus %s -> %d\nstdout:%s\nstderr:%s" % (" ".join(args), rc, out, err)
    return out


def js(b, *args, **kw):
    return json.loads(ok(b, *args, "--format", "json", **kw))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_topic_admin_commands_table_and_json(broker):
    out = ok(broker, "topic", "create", "orders", "-p", "3", "-c", "retention.ms=3600000")
    assert re.search(r"^orders\s+3\s+1$", out, re.M), out
    # no -p/-r: the broker's defaults (default_topic_partitions = 1)
    assert js(broker, "topic", "create", "events")["partitions"] == 1

    out = ok(broker, "topic", "list")
    assert out.splitlines()[0].split()[:2] == ["TOPIC", "PARTITIONS"]
    assert re.search(r"^orders\s+3\s+1", out, re.M) and re.search(r"^events\s+1", out, re.M)
    names = {t["topic"]: t for t in js(broker, "topic", "list")}
    assert names["orders"]["partitions"] == 3 and names["events"]["partitions"] == 1

    d = js(broker, "topic", "describe", "orders")
    assert [p["partition"] for p in d["partitions"]] == [0, 1, 2]
    assert all(p["leader"] == 0 and p["high_watermark"] == 0 for p in d["partitions"])
    cfg = {c["name"]: c for c in d["configs"]}
    assert cfg["retention.ms"]["value"] == "3600000" and cfg["retention.ms"]["source"] == "topic"
    out = ok(broker, "topic", "describe", "orders")
    assert "Topic: orders  (3 partitions)" in out and "HIGH WATERMARK" in out

    ok(broker, "topic", "alter-config", "orders", "--set", "retention.ms=1234",
       "--set", "cleanup.policy=compact")
    cfg = {c["name"]: c for c in js(broker, "topic", "describe", "orders")["configs"]}
    assert cfg["retention.ms"]["value"] == "1234" and cfg["cleanup.policy"]["value"] == "compact"
    ok(broker, "topic", "alter-config", "orders", "--delete", "retention.ms")
    cfg = {c["name"]: c for c in js(broker, "topic", "describe", "orders")["configs"]}
    assert cfg["retention.ms"]["source"] != "topic"

    assert js(broker, "topic", "add-partitions", "orders", "-n", "5")["partitions"] == 5
    assert len(js(broker, "topic", "describe", "orders")["partitions"]) == 5

    assert js(broker, "topic", "delete", "events") == [{"topic": "events", "status": "deleted"}]
    assert "events" not in {t["topic"] for t in js(broker, "topic", "list")}
    rc, out, err = cli(broker, "topic", "create", "orders")
    assert rc == 1 and "already exists" in err


def test_produce_then_consume_back(broker, tmp_path):
    ok(broker, "topic", "create", "lines", "-p", "3")
    n = 300
    data = "".join("key%d:value %d\n" % (i % 7, i) for i in range(n))
    t0 = int(time.time() * 1000) - 1
    res = js(broker, "topic", "produce", "lines", "-k", ":", "-H", "src=cli", "-H", "n=1",
             "--compression", "zstd", stdin=data.encode())
    assert sum(r["records"] for r in res) == n
    assert all(r["first_offset"] == 0 for r in res)

    recs = [json.loads(line) for line in
            ok(broker, "topic", "consume", "lines", "--format", "json").splitlines()]
    assert len(recs) == n
    got = sorted((r["key"], r["value"]) for r in recs)
    assert got == sorted(("key%d" % (i % 7), "value %d" % i) for i in range(n))
    assert all(r["headers"] == {"src": "cli", "n": "1"} for r in recs)
    assert all(r["timestamp"] >= t0 for r in recs)
    # same key -> same partition (murmur2 partitioner), offsets dense per partition
    by_key = {}
    for r in recs:
        by_key.setdefault(r["key"], set()).add(r["partition"])
    assert all(len(s) == 1 for s in by_key.values())
    for p in range(3):
        offs = sorted(r["offset"] for r in recs if r["partition"] == p)
        assert offs == list(range(len(offs)))

    # text output, -n, one partition, offset N, end, timestamp
    out = ok(broker, "topic", "consume", "lines", "-n", "5")
    lines = out.splitlines()
    assert len(lines) == 5 and all(line.startswith("value ") for line in lines)
    p0 = [r for r in recs if r["partition"] == 0]
    out = ok(broker, "topic", "consume", "lines", "-p", "0", "--offset", "2", "-K")
    assert out.splitlines() == ["%s\t%s" % (r["key"], r["value"]) for r in p0[2:]]
    assert ok(broker, "topic", "consume", "lines", "--offset", "end") == ""
    out = ok(broker, "topic", "consume", "lines", "-n", "1", "-K", "--print-headers")
    assert re.fullmatch(r"src=cli,n=1\tkey\d\tvalue \d+\n", out), out
    future = int(time.time() * 1000) + 3600_000
    assert ok(broker, "topic", "consume", "lines", "--offset", "@%d" % future) == ""
    assert len(ok(broker, "topic", "consume", "lines", "--offset", "@%d" % t0).splitlines()) == n

    # a larger file with a progress bar, gzip and lz4
    big = tmp_path / "big.txt"
    big.write_text("".join("line %06d %s\n" % (i, "x" * 100) for i in range(20000)))
    rc, out, err = cli(broker, "topic", "produce", "lines", "--file", str(big), "--progress",
                       "--compression", "gzip")
    assert rc == 0 and "100%" in err, err
    ok(broker, "topic", "produce", "lines", "-p", "1", "--compression", "lz4",
       stdin=b"lz4 record\n")
    ok(broker, "topic", "produce", "lines", "-p", "2", "--compression", "snappy",
       stdin=b"snappy record\n" * 3)
    parts = js(broker, "topic", "describe", "lines")["partitions"]
    total = sum(p["high_watermark"] for p in parts)
    assert total == n + 20000 + 1 + 3
    out = ok(broker, "topic", "consume", "lines", "-p", "1", "--offset", "end")
    assert out == ""
    vals = ok(broker, "topic", "consume", "lines").splitlines()
    assert len(vals) == total and "lz4 record" in vals and vals.count("snappy record") == 3
    assert "line 019999 " + "x" * 100 in vals


def test_binary_values_give_valid_json(broker):
    ok(broker, "topic", "create", "bin")
    ok(broker, "topic", "produce", "bin", stdin=b"caf\xc3\xa9\nraw\xff\x00end\n")
    recs = [json.loads(line) for line in
            ok(broker, "topic", "consume", "bin", "--format", "json").splitlines()]
    assert [r["value"] for r in recs] == ["caf\u00e9", "raw\u00ff\u0000end"]


def test_consume_follow_sees_new_records(broker):
    ok(broker, "topic", "create", "live")
    p = subprocess.Popen([cli_binary(), "topic", "consume", "live", "-f", "-n", "3", "--brokers",
                          broker.addr], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)
        ok(broker, "topic", "produce", "live", stdin=b"a\nb\nc\nd\n")
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
    assert p.returncode == 0, err
    assert out.decode().splitlines() == ["a", "b", "c"]


@pytest.mark.parametrize("smp", [1, 2])
def test_group_describe_lag_seek_delete(broker_factory, smp):
    """With 2 shards the group and the topic's partitions may live on different shards."""
    ck = pytest.importorskip("confluent_kafka")
    broker = broker_factory(smp=smp)
    ok(broker, "topic", "create", "work", "-p", "2")
    ok(broker, "topic", "produce", "work", stdin="".join("r%d\n" % i for i in range(40)).encode())
    c = ck.Consumer({"bootstrap.servers": broker.addr, "group.id": "workers",
                     "client.id": "worker-1", "auto.offset.reset": "earliest",
                     "enable.auto.commit": False, "session.timeout.ms": 10000})
    c.subscribe(["work"])
    got = 0
    deadline = time.monotonic() + 30
    while got < 25 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got += 1
            if got == 25:
                c.commit(asynchronous=False)  # every partition's position
    assert got == 25
    # while the member is alive: state Stable, the member and its assignment are shown
    d = js(broker, "group", "describe", "workers")
    assert d["state"] == "Stable" and d["protocol_type"] == "consumer"
    assert len(d["members"]) == 1 and d["members"][0]["client_id"] == "worker-1"
    assert sorted(d["members"][0]["assignment"]) == ["work:0", "work:1"]
    out = ok(broker, "group", "describe", "workers")
    assert "worker-1" in out and "LAG" in out
    rc, _, err = cli(broker, "group", "seek", "workers", "--to-earliest")
    assert rc == 1 and "stop its consumers" in err
    c.close()

    ok(broker, "topic", "produce", "work", stdin=b"late1\nlate2\nlate3\n")
    d = js(broker, "group", "describe", "workers")
    assert d["state"] == "Empty" and d["members"] == []
    ends = {p["partition"]: p["high_watermark"]
            for p in js(broker, "topic", "describe", "work")["partitions"]}
    committed = {o["partition"]: o["committed_offset"] for o in d["offsets"]}
    assert sum(committed.values()) <= 25
    for o in d["offsets"]:
        assert o["log_end_offset"] == ends[o["partition"]]
        assert o["lag"] == ends[o["partition"]] - o["committed_offset"]
    assert d["total_lag"] == sum(o["lag"] for o in d["offsets"])
    assert d["total_lag"] == 43 - sum(committed.values())
    groups = {g["group"]: g for g in js(broker, "group", "list")}
    assert groups["workers"]["state"] == "Empty"
    assert "workers" in ok(broker, "group", "list")

    seek = js(broker, "group", "seek", "workers", "--to-latest")
    assert {s["partition"]: s["new_offset"] for s in seek} == ends
    assert js(broker, "group", "describe", "workers")["total_lag"] == 0
    ok(broker, "group", "seek", "workers", "-t", "work", "--to-offset", "1")
    d = js(broker, "group", "describe", "workers")
    assert all(o["committed_offset"] == 1 for o in d["offsets"])
    assert d["total_lag"] == sum(ends.values()) - 2
    ok(broker, "group", "seek", "workers", "--to-earliest")
    assert js(broker, "group", "describe", "workers")["total_lag"] == sum(ends.values())

    assert js(broker, "group", "delete", "workers") == [{"group": "workers",
                                                         "status": "deleted"}]
    rc, _, err = cli(broker, "group", "describe", "workers")
    assert rc == 1 and "does not exist" in err
    rc, _, err = cli(broker, "group", "delete", "workers")
    assert rc == 1 and "does not exist" in err


def test_cluster_info_health_config(broker, tmp_path):
    url = admin_url(broker)
    info = js(broker, "cluster", "info")
    assert info["controller"] == 0 and info["cluster_id"]
    assert info["brokers"][0]["port"] == broker.port and info["brokers"][0]["controller"]
    out = ok(broker, "cluster", "info")
    assert "Cluster id: %s" % info["cluster_id"] in out and "NODE ID" in out

    h = js(broker, "cluster", "health", admin=url)
    assert h["healthy"] and h["kafka_reachable"] and h["admin_ready"]
    assert "healthy" in ok(broker, "cluster", "health", admin=url)
    # Kafka up, admin API down: unreachable (3), and the JSON says which part failed
    rc, out, err = cli(broker, "cluster", "health", "--format", "json",
                       admin="http://127.0.0.1:%d" % free_port())
    h = json.loads(out)
    assert rc == 3 and h["kafka_reachable"] and not h["admin_ready"] and not h["healthy"]
    assert "--admin-url" in err

    cfg = js(None, "cluster", "config", "get", admin=url)
    assert "default_topic_partitions" in cfg
    assert js(None, "cluster", "config", "get", "default_topic_partitions",
              admin=url) == {"default_topic_partitions": cfg["default_topic_partitions"]}
    res = js(None, "cluster", "config", "set", "default_topic_partitions=4", admin=url)
    assert res["restart_required"] == []  # a live key: applied on every shard at once
    assert js(None, "cluster", "config", "get", admin=url)["default_topic_partitions"] == 4
    rc, _, err = cli(None, "cluster", "config", "set", "bogus_key=1", admin=url)
    assert rc == 1 and "bogus_key" in err

    editor = tmp_path / "editor.py"
    editor.write_text("#!/usr/bin/python3\nimport json, sys\n"
                      "d = json.load(open(sys.argv[1]))\nd['default_topic_partitions'] = 6\n"
                      "json.dump(d, open(sys.argv[1], 'w'))\n")
    editor.chmod(editor.stat().st_mode | stat.S_IEXEC)
    ok(None, "cluster", "config", "edit", admin=url, env={"EDITOR": str(editor),
                                                          "VISUAL": ""})
    assert js(None, "cluster", "config", "get", admin=url)["default_topic_partitions"] == 6
    rc, _, err = cli(None, "cluster", "config", "edit", admin=url,
                     env={"EDITOR": "false", "VISUAL": ""})
    assert rc == 1 and "nothing changed" in err


def test_errors_unknown_topic_broker_down_bad_flags(broker):
    for args in (["topic", "describe", "missing"], ["topic", "consume", "missing"],
                 ["topic", "produce", "missing"], ["topic", "delete", "missing"]):
        rc, out, err = cli(broker, *args, stdin=b"x\n")
        assert rc == 1, (args, rc, err)
        assert "'missing'" in err and "does not exist" in err and "ailurus topic" in err

    dead = "127.0.0.1:%d" % free_port()
    for args in (["topic", "list"], ["group", "list"], ["cluster", "info"],
                 ["topic", "consume", "x"]):
        rc, out, err = cli(None, *args, "--brokers", dead, "--timeout", "2000")
        assert rc == 3, (args, rc, err)
        assert "unreachable" in err and "ailurus start" in err and "--brokers" in err
    rc, _, err = cli(None, "cluster", "health", "--brokers", dead,
                     "--admin-url", "http://%s" % dead)
    assert rc == 3
    rc, _, err = cli(None, "topic", "list", env={"AILURUS_BROKERS": dead})
    assert rc == 3 and dead in err

    for args in (["topic"], ["topic", "frobnicate"], ["topic", "list", "--bogus"],
                 ["topic", "create"], ["topic", "create", "t", "-p", "zero"],
                 ["topic", "create", "t", "-p", "0"], ["topic", "list", "--format", "xml"],
                 ["topic", "produce", "t", "--acks", "0"],
                 ["topic", "produce", "t", "--compression", "brotli"],
                 ["topic", "consume", "t", "--offset", "yesterday"],
                 ["topic", "add-partitions", "t"], ["group", "seek", "g"],
                 ["group", "seek", "g", "--to-earliest", "--to-latest"], ["group", "describe"],
                 ["cluster", "config", "frob"], ["cluster", "info", "extra"],
                 ["cluster", "config", "set", "novalue"], ["nosuchcommand"]):
        rc, _, err = cli(broker, *args)
        assert rc == 2, (args, rc, err)
        assert err.startswith("ailurus") or "usage" in err, (args, err)
    assert cli(broker, "topic", "--help")[0] == 0
    rc, out, _ = cli(broker, "topic", "produce", "--help")
    assert rc == 0 and "--compression" in out


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_consume_what_librdkafka_produced(broker, codec):
    """Interop: records (with keys and headers) written by librdkafka in every codec."""
    ck = pytest.importorskip("confluent_kafka")
    ok(broker, "topic", "create", "interop", "-p", "2")
    p = ck.Producer({"bootstrap.servers": broker.addr, "compression.type": codec,
                     "linger.ms": 20})
    for i in range(50):
        p.produce("interop", key=b"k%d" % (i % 5), value=b"v%d" % i, headers=[("h", b"%d" % i)])
    assert p.flush(30) == 0
    recs = [json.loads(line) for line in
            ok(broker, "topic", "consume", "interop", "--format", "json").splitlines()]
    assert sorted(int(r["value"][1:]) for r in recs) == list(range(50))
    for r in recs:
        i = int(r["value"][1:])
        assert r["headers"] == {"h": str(i)} and r["key"] == "k%d" % (i % 5)


def test_broker_dies_during_follow_exits_3(broker):
    ok(broker, "topic", "create", "dying")
    p = subprocess.Popen([cli_binary(), "topic", "consume", "dying", "-f", "--brokers",
                          broker.addr, "--timeout", "3000"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)
        ok(broker, "topic", "produce", "dying", stdin=b"before\n")
        time.sleep(0.5)
        broker.kill()
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
    assert out.decode().splitlines() == ["before"]
    assert p.returncode == 3 and "unreachable" in err.decode(), (p.returncode, err)
