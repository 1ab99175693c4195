"""test_capture.py — request bytes captured from real Kafka clients decode with our codec.

A tiny Python TCP server on 127.0.0.1 (free port) records every request frame that a real
client sends: kcat (librdkafka) and kafka-python. It answers ApiVersions with a valid response
(encoded here by hand, any version 0..3) so the clients go on to send Metadata, and drops the
connection after anything else. Every captured frame is then written to a file and decoded by
`ailurus kafka-decode` (the C codec generated from the Kafka schemas), which must decode it
completely, and the decoded fields must match what the client was configured with or told
(client id, API versions within what was advertised).

The binary comes from AILURUS_BIN (default build/release/ailurus). Every wait is bounded.
"""
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("AILURUS_BIN", os.path.join(ROOT, "build", "release", "ailurus"))

# What the fake broker advertises: (api_key, min, max).
ADVERTISED = [(0, 0, 7), (1, 0, 11), (2, 0, 3), (3, 0, 4), (8, 0, 7), (9, 0, 7), (10, 0, 2),
              (11, 0, 5), (12, 0, 3), (13, 0, 3), (14, 0, 3), (15, 0, 4), (16, 0, 4),
              (17, 0, 1), (18, 0, 3), (19, 0, 4), (20, 0, 3), (22, 0, 4), (36, 0, 1)]
MAX_FRAME = 1 << 20


def uvarint(n):
    out = b""
    while n >= 0x80:
        out += bytes([(n & 0x7F) | 0x80])
        n >>= 7
    return out + bytes([n])


def api_versions_response(corr_id, version):
    """ApiVersions response (response header v0 always) in `version` 0..3, by hand."""
    if version >= 3:
        body = struct.pack(">h", 0) + uvarint(len(ADVERTISED) + 1)
        for k, lo, hi in ADVERTISED:
            body += struct.pack(">hhh", k, lo, hi) + b"\x00"
        body += struct.pack(">i", 0) + b"\x00"
    else:
        body = struct.pack(">hi", 0, len(ADVERTISED))
        for k, lo, hi in ADVERTISED:
            body += struct.pack(">hhh", k, lo, hi)
        if version >= 1:
            body += struct.pack(">i", 0)
    payload = struct.pack(">i", corr_id) + body
    return struct.pack(">i", len(payload)) + payload


def recv_exact(conn, n, deadline):
    buf = b""
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        conn.settimeout(min(left, 0.5))
        try:
            chunk = conn.recv(n - len(buf))
        except socket.timeout:
            continue
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    return buf


class CaptureServer:
    """Accepts connections on 127.0.0.1:<free port> and records request frames."""

    def __init__(self, seconds):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.deadline = time.monotonic() + seconds
        self.frames = []  # (connection number, frame bytes incl. the size prefix)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = []
        self.acceptor = threading.Thread(target=self.accept_loop, daemon=True)
        self.acceptor.start()

    def accept_loop(self):
        n = 0
        self.sock.settimeout(0.2)
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            n += 1
            t = threading.Thread(target=self.serve, args=(conn, n), daemon=True)
            t.start()
            self.threads.append(t)

    def serve(self, conn, n):
        try:
            while not self.stop.is_set():
                head = recv_exact(conn, 4, self.deadline)
                if head is None:
                    return
                size = struct.unpack(">i", head)[0]
                if size < 8 or size > MAX_FRAME:
                    return
                payload = recv_exact(conn, size, self.deadline)
                if payload is None:
                    return
                with self.lock:
                    self.frames.append((n, head + payload))
                key, ver, corr = struct.unpack(">hhi", payload[:8])
                if key == 18:
                    conn.sendall(api_versions_response(corr, min(ver, 3)))
                else:
                    # Keep reading briefly so pipelined requests are captured, then drop.
                    conn.settimeout(0.3)
                    try:
                        more = conn.recv(MAX_FRAME)
                    except (socket.timeout, OSError):
                        more = b""
                    while len(more) >= 4:
                        sz = struct.unpack(">i", more[:4])[0]
                        if sz < 8 or len(more) < 4 + sz:
                            break
                        with self.lock:
                            self.frames.append((n, more[:4 + sz]))
                        more = more[4 + sz:]
                    return
        finally:
            conn.close()

    def wait_for(self, pred, seconds):
        end = min(time.monotonic() + seconds, self.deadline)
        while time.monotonic() < end:
            with self.lock:
                if pred(list(self.frames)):
                    return True
            time.sleep(0.05)
        return False

    def close(self):
        self.stop.set()
        self.sock.close()
        self.acceptor.join(timeout=2)
        for t in self.threads:
            t.join(timeout=2)
        with self.lock:
            return list(self.frames)


def key_ver(frame):
    return struct.unpack(">hh", frame[4:8])


def decode(tmp_path, i, frame):
    path = tmp_path / ("frame%03d.bin" % i)
    path.write_bytes(frame)
    p = subprocess.run([BIN, "kafka-decode", str(path)], capture_output=True, text=True,
                       timeout=20)
    out = p.stdout.strip()
    assert out, "kafka-decode printed nothing (rc %d): %s" % (p.returncode, p.stderr)
    return p.returncode, json.loads(out)


def check_all_decode(tmp_path, frames, client_id):
    """Every captured frame decodes completely; returns the JSON summaries."""
    assert frames, "the client sent nothing"
    summaries = []
    for i, (_, frame) in enumerate(frames):
        rc, js = decode(tmp_path, i, frame)
        assert rc == 0 and js["ok"], "frame %d (%r) did not decode: %s" % (i, key_ver(frame),
                                                                           js)
        assert js["client_id"] == client_id, js
        assert 0 <= js["body_bytes"] <= len(frame) - 12, js
        k, v = key_ver(frame)
        assert (js["api_key"], js["api_version"]) == (k, v)
        assert js["correlation_id"] == struct.unpack(">i", frame[8:12])[0]
        assert isinstance(js["body"], dict), js
        for name, value in js["fields"].items():  # the generic dump agrees with the summary
            if name in js["body"]:
                assert js["body"][name] == value or name == "Topics", js
        summaries.append(js)
    return summaries


def within_advertised(js):
    for k, lo, hi in ADVERTISED:
        if k == js["api_key"]:
            return lo <= js["api_version"] <= hi
    return False


@pytest.fixture(scope="module", autouse=True)
def need_binary():
    if not os.access(BIN, os.X_OK):
        pytest.fail("ailurus binary not found at %s (set AILURUS_BIN)" % BIN)


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat not installed")
def test_librdkafka_kcat_frames_decode(tmp_path):
    srv = CaptureServer(seconds=30)
    cid = "ailurus-capture-kcat"
    proc = subprocess.Popen(["kcat", "-L", "-b", "127.0.0.1:%d" % srv.port, "-m", "5",
                             "-X", "client.id=" + cid],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        got = srv.wait_for(lambda fs: any(key_ver(f)[0] == 3 for _, f in fs), 20)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    frames = srv.close()
    assert got, "kcat never sent Metadata; frames: %r" % [key_ver(f) for _, f in frames]
    sums = check_all_decode(tmp_path, frames, cid)
    first = sums[0]
    # librdkafka opens with ApiVersions v3 (flexible, request header v2).
    assert (first["api_key"], first["api_version"], first["header_version"]) == (18, 3, 2)
    assert first["fields"]["ClientSoftwareName"] == "librdkafka"
    assert first["fields"]["ClientSoftwareVersion"]
    metas = [s for s in sums if s["api_key"] == 3]
    assert metas and all(within_advertised(s) for s in metas), metas
    # librdkafka asks for brokers only (empty topic list) and, for kcat -L, for all topics
    # (Metadata v1+ says "all" with a null topic array).
    assert all(s["body"]["Topics"] in (None, []) for s in metas), metas
    print("kcat: %d frames decoded: %s" % (len(sums), sorted({(s["api_name"], s["api_version"])
                                                              for s in sums})))


KAFKA_PYTHON_CLIENT = r"""
import sys
try:
    from kafka import KafkaConsumer
    KafkaConsumer(bootstrap_servers=sys.argv[1], client_id=sys.argv[2],
                  request_timeout_ms=4000, api_version_auto_timeout_ms=4000,
                  connections_max_idle_ms=5000, session_timeout_ms=3000,
                  heartbeat_interval_ms=1000, metadata_max_age_ms=5000)
except Exception as e:
    print("client error (expected, the server drops it):", type(e).__name__)
"""


def kafka_python_available():
    p = subprocess.run(["/usr/bin/python3", "-c", "import kafka"], capture_output=True,
                       timeout=30)
    return p.returncode == 0


@pytest.mark.skipif(not kafka_python_available(), reason="python3-kafka not installed")
def test_kafka_python_frames_decode(tmp_path):
    srv = CaptureServer(seconds=30)
    cid = "ailurus-capture-kpy"
    proc = subprocess.Popen(["/usr/bin/python3", "-c", KAFKA_PYTHON_CLIENT,
                             "127.0.0.1:%d" % srv.port, cid],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        got = srv.wait_for(lambda fs: any(key_ver(f) == (18, 0) for _, f in fs) and
                           any(key_ver(f)[0] == 3 for _, f in fs), 20)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    frames = srv.close()
    assert got, "kafka-python frames: %r" % [key_ver(f) for _, f in frames]
    sums = check_all_decode(tmp_path, frames, cid)
    # kafka-python probes with ApiVersions v0 (header v1), then Metadata v0.
    av = [s for s in sums if s["api_key"] == 18]
    assert av and av[0]["api_version"] == 0 and av[0]["header_version"] == 1
    md = [s for s in sums if s["api_key"] == 3]
    assert md and md[0]["api_version"] == 0
    assert all(within_advertised(s) for s in sums), sums
    print("kafka-python: %d frames decoded: %s" % (len(sums), sorted({(s["api_name"],
                                                                       s["api_version"])
                                                                      for s in sums})))


def test_damaged_frames_are_rejected(tmp_path):
    """Negative control: a truncated or padded frame must not decode."""
    body = b"\x00\x12\x00\x03\x00\x00\x00\x07\x00\x02id\x00\x04abc\x021\x00"
    good = struct.pack(">i", len(body)) + body
    rc, js = decode(tmp_path, 0, good)
    assert rc == 0 and js["ok"] and js["client_id"] == "id", js
    assert js["fields"] == {"ClientSoftwareName": "abc", "ClientSoftwareVersion": "1"}
    short = struct.pack(">i", len(body) - 1) + body[:-1]
    rc, js = decode(tmp_path, 1, short)
    assert rc == 1 and not js["ok"], js
    padded = struct.pack(">i", len(body) + 1) + body + b"\x00"
    rc, js = decode(tmp_path, 2, padded)
    assert rc == 1 and not js["ok"], js


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
