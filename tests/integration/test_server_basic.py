"""test_server_basic.py — the first Kafka server: ApiVersions and Metadata with real clients
(kcat, kafka-python, confluent-kafka) and raw frames; framing errors close only the offending
connection; pipelining keeps order; connection limits and the idle timeout."""
import os
import random
import re
import socket
import struct
import subprocess
import time

import pytest

from ailurus_harness import (Broker, api_versions_request, binary, correlation_id, frame,
                             header, metadata_request, parse_api_versions, recv_frame,
                             wait_closed)


def api_versions_ok(sock, corr=1):
    sock.sendall(api_versions_request(0, corr))
    c, err, keys, _ = parse_api_versions(recv_frame(sock), 0)
    return c == corr and err == 0 and keys.get(18) == (0, 3)


# ---- real clients ----

def test_kcat_lists_broker(broker):
    out = subprocess.run(["kcat", "-L", "-b", broker.addr, "-m", "10"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "1 brokers:" in out.stdout
    assert "broker 0 at 127.0.0.1:%d (controller)" % broker.port in out.stdout
    # No user topics on a fresh broker (internal ones such as __consumer_offsets may exist).
    topics = re.findall(r'topic "([^"]+)"', out.stdout)
    assert all(t.startswith("__") for t in topics), topics


def test_kafka_python_admin_describe_cluster(broker):
    from kafka import KafkaAdminClient
    admin = KafkaAdminClient(bootstrap_servers=broker.addr, api_version_auto_timeout_ms=10000,
                             request_timeout_ms=10000)
    try:
        info = admin.describe_cluster()
    finally:
        admin.close()
    assert info["controller_id"] == 0
    assert [(b["node_id"], b["host"], b["port"]) for b in info["brokers"]] == \
        [(0, "127.0.0.1", broker.port)]
    with open(os.path.join(broker.data_dir, "cluster_id")) as f:
        assert info["cluster_id"] == f.read().strip()


def test_confluent_admin_list_topics(broker):
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({"bootstrap.servers": broker.addr})
    md = admin.list_topics(timeout=10)
    assert list(md.brokers.keys()) == [0]
    assert md.brokers[0].host == "127.0.0.1" and md.brokers[0].port == broker.port
    assert md.controller_id == 0
    assert all(t.startswith("__") for t in md.topics), md.topics
    assert md.cluster_id


def test_two_shards_serve_clients(broker_factory):
    b = broker_factory(smp=2)
    socks = [b.connect() for _ in range(16)]
    for i, s in enumerate(socks):
        assert api_versions_ok(s, i + 1)
    for s in socks:
        s.close()
    out = subprocess.run(["kcat", "-L", "-b", b.addr, "-m", "10"], capture_output=True,
                         text=True, timeout=30)
    assert "broker 0 at 127.0.0.1:%d" % b.port in out.stdout


# ---- raw ApiVersions / Metadata ----

@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_api_versions_versions(broker, version):
    with broker.connect() as s:
        s.sendall(api_versions_request(version, 4242))
        payload = recv_frame(s)
        corr, err, keys, pos = parse_api_versions(payload, version)
        assert corr == 4242 and err == 0
        assert keys[18] == (0, 3)
        assert keys[3] == (0, 12)
        if version >= 1:
            assert struct.unpack_from(">i", payload, pos)[0] == 0  # throttle
            pos += 4
        if version >= 3:
            assert payload[pos] == 0  # no tagged fields
            pos += 1
        assert pos == len(payload)


@pytest.mark.parametrize("version", [4, 5, 127])
def test_api_versions_unsupported_gets_v0_form(broker, version):
    with broker.connect() as s:
        body = b"\x05hello\x02x\x00" if version < 127 else os.urandom(7)
        s.sendall(frame(header(18, version, 77, flexible=True) + body))
        payload = recv_frame(s)
        corr, err, keys, pos = parse_api_versions(payload, 0)
        assert corr == 77 and err == 35
        assert keys == {18: (0, 3)}
        assert pos == len(payload)
        assert api_versions_ok(s, 78)  # the connection stays usable


def test_api_versions_v3_bad_software_name(broker):
    with broker.connect() as s:
        s.sendall(api_versions_request(3, 5, name=b"bad name!"))
        corr, err, keys, _ = parse_api_versions(recv_frame(s), 3)
        assert corr == 5 and err == 42  # INVALID_REQUEST


@pytest.mark.parametrize("version", list(range(0, 13)))
def test_metadata_versions(broker, version):
    with broker.connect() as s:
        s.sendall(metadata_request(version, 900 + version, topics=[b"nope"]))
        payload = recv_frame(s)
        assert correlation_id(payload) == 900 + version
        body = payload[5:] if version >= 9 else payload[4:]
        pos = 4 if version >= 3 else 0  # throttle
        host = b"127.0.0.1"
        if version >= 9:
            assert body[pos] == 2  # compact array of 1
            pos += 1
            node, hl = struct.unpack_from(">iB", body, pos)
            pos += 5
            assert node == 0 and hl == len(host) + 1
        else:
            n, node, hl = struct.unpack_from(">iih", body, pos)
            pos += 10
            assert n == 1 and node == 0 and hl == len(host)
        assert body[pos:pos + len(host)] == host
        pos += len(host)
        assert struct.unpack_from(">i", body, pos)[0] == broker.port
        assert b"nope" in body


def test_pipelined_requests_answered_in_order(broker):
    rnd = random.Random(7)
    reqs = []
    for i in range(200):
        if rnd.random() < 0.5:
            v = rnd.randint(0, 3)
            reqs.append((i, api_versions_request(v, i)))
        else:
            v = rnd.randint(0, 12)
            reqs.append((i, metadata_request(v, i, topics=None if rnd.random() < 0.5
                                             else [b"t%d" % i])))
    with broker.connect() as s:
        s.sendall(b"".join(r for _, r in reqs))  # all at once, in one stream
        got = [correlation_id(recv_frame(s, timeout=10)) for _ in reqs]
    assert got == [i for i, _ in reqs]


# ---- bad input closes only that connection ----

BAD_FRAMES = {
    "garbage": lambda max_frame: frame(b"\x7f\xff" + os.urandom(30)),
    "unknown_api_key": lambda max_frame: frame(header(1000, 0, 1)),
    "unimplemented_api": lambda max_frame: frame(header(0, 7, 1) + os.urandom(20)),
    "unsupported_version": lambda max_frame: metadata_request(12, 1)[:6] + b"\x00\x0d" +
    metadata_request(12, 1)[8:],
    "malformed_body": lambda max_frame: frame(header(3, 1, 1) + b"\x00\x00\x00\x05\x00"),
    "negative_size": lambda max_frame: struct.pack(">i", -5) + b"abcd",
    "oversized": lambda max_frame: struct.pack(">i", max_frame + 1) + b"\x00" * 64,
    "huge_size": lambda max_frame: b"\x7f\xff\xff\xff" + b"\x00" * 16,
    "tiny_frame": lambda max_frame: frame(b"\x00\x12\x00"),
    "empty_frame": lambda max_frame: frame(b""),
}


@pytest.mark.parametrize("kind", sorted(BAD_FRAMES))
def test_bad_frame_closes_connection_others_keep_working(broker_factory, kind):
    max_frame = 65536
    b = broker_factory(args=["--kafka-max-frame-bytes", str(max_frame)])
    good = b.connect()
    assert api_versions_ok(good, 1)
    bad = b.connect()
    assert api_versions_ok(bad, 1)
    bad.sendall(BAD_FRAMES[kind](max_frame))
    assert wait_closed(bad, 5.0), "server kept the connection open after %s" % kind
    bad.close()
    assert api_versions_ok(good, 2)  # the concurrent connection is unaffected
    with b.connect() as s:           # and new ones are accepted
        assert api_versions_ok(s, 3)
    assert "closing connection" in b.log_text()
    b.alive()


def test_truncated_frame_then_close(broker):
    good = broker.connect()
    for cut in (2, 10, 30):
        s = broker.connect()
        s.sendall(api_versions_request(3, 1)[:cut])
        s.close()
    s = broker.connect()
    s.sendall(struct.pack(">i", 1000) + b"\x00\x12")  # promises more than it sends
    s.shutdown(socket.SHUT_WR)
    assert wait_closed(s, 5.0)
    s.close()
    assert api_versions_ok(good, 9)
    good.close()
    broker.alive()


def test_frame_at_the_limit_is_accepted(broker_factory):
    b = broker_factory(args=["--kafka-max-frame-bytes", "1024"])
    with b.connect() as s:
        # A Metadata v1 request padded with topic names to exactly 1024 bytes.
        base = metadata_request(1, 3, topics=[])
        need = 1024 - (len(base) - 4)
        name = b"x" * (need - 2)
        req = metadata_request(1, 3, topics=[name])
        assert len(req) - 4 == 1024
        s.sendall(req)
        assert correlation_id(recv_frame(s)) == 3
        s.sendall(metadata_request(1, 4, topics=[name + b"y"]))  # 1025: over
        assert wait_closed(s, 5.0)


def test_large_request_and_response(broker):
    # ~4 MB request (grows the receive buffer as it arrives) and a ~4 MB response (sent from its
    # own buffer in several partial sends), between small pipelined requests.
    names = [(b"topic-%06d-" % i) + b"x" * 180 for i in range(20000)]
    big = metadata_request(1, 2, topics=names)
    assert len(big) > 3_500_000
    with broker.connect(timeout=30) as s:
        s.sendall(api_versions_request(0, 1) + big + api_versions_request(1, 3))
        assert correlation_id(recv_frame(s)) == 1
        payload = recv_frame(s, timeout=30)
        assert correlation_id(payload) == 2 and len(payload) > 3_500_000
        assert names[-1] in payload
        assert correlation_id(recv_frame(s)) == 3


# ---- connection management ----

def test_many_connections(broker):
    socks = [broker.connect(timeout=10) for _ in range(300)]
    for i, s in enumerate(socks):
        s.sendall(api_versions_request(i % 4, i))
    for i, s in enumerate(socks):
        corr, err, keys, _ = parse_api_versions(recv_frame(s, timeout=10), i % 4)
        assert corr == i and err == 0
    for s in socks:
        s.close()


def test_max_connections(broker_factory):
    b = broker_factory(args=["--max-connections", "5"])
    socks = [b.connect() for _ in range(5)]
    for s in socks:
        assert api_versions_ok(s)
    extra = b.connect()
    assert wait_closed(extra, 5.0)
    extra.close()
    socks.pop().close()
    deadline = time.monotonic() + 5
    while True:  # the server notices the close asynchronously
        s = b.connect()
        try:
            if api_versions_ok(s):
                break
        except (ConnectionError, OSError):
            pass
        finally:
            s.close()
        assert time.monotonic() < deadline, "a freed slot was never reusable"
        time.sleep(0.05)
    for s in socks:
        s.close()
    assert "max_connections" in b.log_text()


def test_idle_timeout(broker_factory):
    b = broker_factory(env={"AILURUS_CONNECTIONS_MAX_IDLE_MS": "400"})
    idle = b.connect()
    busy = b.connect()
    assert api_versions_ok(idle, 1)
    t0 = time.monotonic()
    closed = False
    i = 0
    while time.monotonic() - t0 < 3.0:
        i += 1
        assert api_versions_ok(busy, i)  # activity keeps it open
        if not closed:
            idle.settimeout(0.1)
            try:
                closed = idle.recv(1) == b""
            except socket.timeout:
                pass
            except ConnectionResetError:
                closed = True
            if closed:
                elapsed = time.monotonic() - t0
        time.sleep(0.1)
    assert closed, "idle connection was not closed"
    assert 0.3 <= elapsed <= 2.0, elapsed
    assert "idle" in b.log_text()
    idle.close()
    busy.close()


def test_restart_keeps_cluster_id_and_sigkill_recovers(broker):
    from confluent_kafka.admin import AdminClient
    first = AdminClient({"bootstrap.servers": broker.addr}).list_topics(timeout=10).cluster_id
    broker.restart()
    second = AdminClient({"bootstrap.servers": broker.addr}).list_topics(timeout=10).cluster_id
    assert first == second
    broker.kill()
    broker.start()
    with broker.connect() as s:
        assert api_versions_ok(s)


# ---- configuration front end ----

def test_bad_config_stops_startup():
    r = subprocess.run([binary(), "start", "--smp", "lots"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 2 and "smp" in r.stderr and "[0, 256]" in r.stderr
    r = subprocess.run([binary(), "start", "--no-such-thing", "1"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 2 and "no-such-thing" in r.stderr
    env = dict(os.environ, AILURUS_LOG_LEVEL="chatty")
    r = subprocess.run([binary(), "start"], capture_output=True, text=True, timeout=10, env=env)
    assert r.returncode == 2 and "AILURUS_LOG_LEVEL" in r.stderr and "trace" in r.stderr


def test_config_print_precedence(tmp_path):
    cfg = tmp_path / "a.yaml"
    cfg.write_text("node_id: 3\nsmp: 2\nlog_level: warn\n")
    env = dict(os.environ, AILURUS_SMP="4")
    r = subprocess.run([binary(), "config", "print", "--config", str(cfg), "--node-id", "5"],
                       capture_output=True, text=True, timeout=10, env=env)
    assert r.returncode == 0, r.stderr
    lines = dict(l.split(": ", 1) for l in r.stdout.splitlines())
    assert lines["node_id"].startswith("5") and "flag" in lines["node_id"]
    assert lines["smp"].startswith("4") and "environment" in lines["smp"]
    assert lines["log_level"].startswith('"warn"') and "file" in lines["log_level"]
    cfg.write_text("bogus: 1\n")
    r = subprocess.run([binary(), "config", "check", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "bogus" in r.stderr


def test_port_in_use_fails_cleanly(broker):
    r = subprocess.run([binary(), "start", "--kafka-addr", broker.addr, "--data-dir",
                        os.path.join(broker.tmp, "other")], capture_output=True, text=True,
                       timeout=20)
    # The shards use SO_REUSEPORT; start-up must still refuse a port another broker holds.
    assert r.returncode == 1 and "cannot listen" in r.stderr and "in use" in r.stderr
    with broker.connect() as s:
        assert api_versions_ok(s)


def test_config_docs_are_current():
    r = subprocess.run([binary(), "config", "docs"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "CONFIG.md")) as f:
        doc = f.read()
    assert r.stdout in doc, "docs/CONFIG.md is stale: regenerate with 'ailurus config docs'"


def _thread_cpus(pid, name):
    """The CPUs each thread called `name` of process pid may run on (Cpus_allowed_list)."""
    out = []
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                if f.read().strip() != name:
                    continue
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                for line in f:
                    if line.startswith("Cpus_allowed_list:"):
                        out.append(line.split(":", 1)[1].strip())
        except FileNotFoundError:
            pass  # a thread that ended meanwhile
    return out


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs to tell pinned apart")
def test_shards_pinned_unless_overprovisioned(broker_factory):
    """Each shard's thread is pinned to one CPU by default (thread per core); with
    overprovisioned (Redpanda's --overprovisioned) it keeps every CPU the process may use, so on
    a shared machine it can move off a CPU another process is busy on."""
    allowed = os.sched_getaffinity(0)
    b = broker_factory(smp=1)
    cpus = _thread_cpus(b.proc.pid, "shard-0")
    assert len(cpus) == 1 and "," not in cpus[0] and "-" not in cpus[0], cpus
    assert int(cpus[0]) in allowed
    o = broker_factory(smp=1, args=["--overprovisioned", "true"])
    cpus = _thread_cpus(o.proc.pid, "shard-0")
    with open("/proc/%d/status" % o.proc.pid) as f:
        whole = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("Cpus_allowed_list:")]
    assert len(cpus) == 1 and cpus == whole, (cpus, whole)
    with o.connect() as s:
        assert api_versions_ok(s)
