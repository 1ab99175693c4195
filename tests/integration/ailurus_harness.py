"""ailurus_harness.py — runs the real `ailurus` binary for integration tests, and speaks raw
Kafka frames to it.

Broker: starts `ailurus start` on 127.0.0.1 port 0 (the broker picks a free port and prints it in
its "ready" log line) with a temporary data directory, waits (bounded) for readiness, and on
stop() sends SIGTERM (SIGKILL after a bound) and raises if the process crashed: exited by a signal
we did not send, exited non-zero after SIGTERM, or printed sanitizer errors.

wait_for(what, fn): polls fn until it returns a true value, bounded; admin_port(node): the
admin API port a broker printed.

Raw protocol helpers: frame building for request headers v1/v2, ApiVersions and Metadata
encoders, frame reading with a deadline, and small decoders for the responses the tests check.
"""
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
READY_RE = re.compile(r"ready: kafka=([0-9.]+):(\d+)")
ADMIN_LISTENING = "admin API listening on 127.0.0.1:"
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "AddressSanitizer:DEADLYSIGNAL", "Assertion failed", "PANIC")


def binary():
    return os.environ.get("AILURUS_BIN", os.path.join(REPO, "build", "release", "ailurus"))


class BrokerCrashed(AssertionError):
    pass


def wait_for(what, fn, timeout=30.0, step=0.2,
             retry_on=(OSError, AssertionError, struct.error, KeyError, ValueError)):
    """Calls fn() every `step` seconds until it returns a true value, which is returned; an
    exception in retry_on counts as "not yet". Raises AssertionError naming `what` and the
    last value or exception after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except retry_on as e:
            last = e
        time.sleep(step)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


def admin_port(node):
    """The admin API port node (a started Broker) printed last in its log."""
    text = node.log_text()
    i = text.rfind(ADMIN_LISTENING)
    assert i >= 0, "no admin port in the log"
    return int(text[i + len(ADMIN_LISTENING):].split()[0].strip(")"))


def pick_port():
    """A free 127.0.0.1 port BELOW the kernel's ephemeral range. Brokers keep their port across
    restarts; a port from the ephemeral range (what port 0 gives) can be handed, while the
    broker is down, to a reconnecting client's socket as its local port, and the restart then
    fails with EADDRINUSE."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    if low <= 11000:
        return 0
    for _ in range(200):
        port = random.randrange(10000, low)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    return 0


class Broker:
    """One `ailurus start` process. args: extra flags; env: extra environment."""

    def __init__(self, args=(), env=None, data_dir=None, smp=1, port=0, ready_timeout=20.0,
                 host="127.0.0.1", wrap=()):
        """host: the address to listen on and be reached at; wrap: a command prefix (e.g.
        ["ip", "netns", "exec", NS] to run the broker in a network namespace)."""
        self.args = list(args)
        self.wrap = list(wrap)
        self.extra_env = dict(env or {})
        self.tmp = tempfile.mkdtemp(prefix="ailurus-it-")
        self.data_dir = data_dir or os.path.join(self.tmp, "data")
        self.smp = smp
        self.want_port = port
        self.ready_timeout = ready_timeout
        self.proc = None
        self.port = None
        self.host = host
        self.logs_path = None
        self.runs = 0
        self.expected_signal = None

    @property
    def addr(self):
        return "%s:%d" % (self.host, self.port)

    def log_text(self):
        if not self.logs_path or not os.path.exists(self.logs_path):
            return ""
        with open(self.logs_path, "r", errors="replace") as f:
            return f.read()

    def start(self):
        assert self.proc is None
        self.runs += 1
        self.logs_path = os.path.join(self.tmp, "broker-%d.log" % self.runs)
        if not self.want_port:
            self.want_port = pick_port()
        cmd = self.wrap + [binary(), "start", "--kafka-addr", "%s:%d" % (self.host, self.want_port),
               "--data-dir", self.data_dir, "--smp", str(self.smp),
               "--admin-addr", "127.0.0.1:0", "--rpc-addr", "127.0.0.1:0"] + self.args  # later flags win
        env = dict(os.environ)
        env.update(self.extra_env)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
        self.log_file = open(self.logs_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log_file, stderr=subprocess.STDOUT,
                                     env=env, cwd=self.tmp)
        self.expected_signal = None
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            m = READY_RE.search(self.log_text())
            if m:
                self.port = int(m.group(2))
                self.want_port = self.port  # a restart keeps the port
                return self
            if self.proc.poll() is not None:
                raise BrokerCrashed("broker exited with %s before ready:\n%s"
                                    % (self.proc.returncode, self.log_text()))
            time.sleep(0.02)
        self.proc.kill()
        self.proc.wait(10)
        raise BrokerCrashed("broker not ready within %.0fs:\n%s"
                            % (self.ready_timeout, self.log_text()))

    def _reap(self, sig, grace):
        self.expected_signal = sig
        try:
            self.proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            rc = self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.expected_signal = signal.SIGKILL
            self.proc.kill()
            rc = self.proc.wait(10)
            self.proc = None
            self.log_file.close()
            raise BrokerCrashed("broker did not stop within %.0fs of signal %d:\n%s"
                                % (grace, sig, self.log_text()[-4000:]))
        self.proc = None
        self.log_file.close()
        return rc

    def check_log(self):
        text = self.log_text()
        for marker in SANITIZER_MARKERS:
            if marker in text:
                raise BrokerCrashed("sanitizer/assertion output in broker log:\n%s" % text[-6000:])

    def stop(self, grace=15.0):
        """SIGTERM, wait; raises BrokerCrashed unless the broker exited 0 and cleanly."""
        if self.proc is None:
            return
        rc = self._reap(signal.SIGTERM, grace)
        if rc != 0:
            raise BrokerCrashed("broker exited with %d after SIGTERM:\n%s"
                                % (rc, self.log_text()[-6000:]))
        self.check_log()

    def remove_files(self):
        """Deletes the broker's temporary directory (data and logs). Call only after a clean
        stop: a failing test keeps its directory for inspection."""
        if self.proc is None or self.proc.poll() is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def kill(self):
        """SIGKILL (a simulated crash); not an error."""
        if self.proc is None:
            return
        rc = self._reap(signal.SIGKILL, 10.0)
        if rc != -signal.SIGKILL:
            raise BrokerCrashed("broker exit %d, expected SIGKILL:\n%s" % (rc, self.log_text()))

    def restart(self):
        self.stop()
        return self.start()

    def alive(self):
        if self.proc is None:
            return False
        rc = self.proc.poll()
        if rc is not None:
            raise BrokerCrashed("broker died with %d:\n%s" % (rc, self.log_text()[-6000:]))
        return True

    def connect(self, timeout=5.0):
        return socket.create_connection((self.host, self.port), timeout=timeout)


class Cluster:
    """N `ailurus start` processes forming one cluster on 127.0.0.1 (cluster mode: the same
    seed list, the first node's rpc address, for all). Node i (0-based) has node id
    first_id + i (first_id 1 by default; 0 makes ids and indices the same), its own kafka and
    rpc ports (picked once and kept across restarts), admin port 0 and data directory.
    start() launches every node at once (a restarted cluster needs a majority up to elect a
    controller) and waits for each one's "ready" line, which a node prints only once it has
    joined and applied the controller state. kill(i) is a SIGKILL, restart(i) starts node i
    again (after a kill or a stop), add_node() starts one more, live() lists the running
    nodes' indices, stop() stops all (raising BrokerCrashed if one crashed) and
    remove_files() deletes their directories. Tests get one from conftest's cluster_factory,
    which keeps the files of a failed test."""

    def __init__(self, n=3, smp=1, args=(), env=None, ready_timeout=40.0, first_id=1):
        self.smp = smp
        self.first_id = first_id
        self.args = list(args)
        self.env = env
        self.ready_timeout = ready_timeout
        self.nodes = []
        self.rpc_ports = []
        used = set()
        self._used = used
        for _ in range(n):
            self._new_node()
        self.seeds = "127.0.0.1:%d" % self.rpc_ports[0]
        for node in self.nodes:
            node.args += ["--seed-servers", self.seeds]

    def _free_port(self):
        for _ in range(100):
            p = pick_port()
            if p and p not in self._used:
                self._used.add(p)
                return p
        raise AssertionError("no free port below the ephemeral range")

    def _new_node(self):
        node_id = self.first_id + len(self.nodes)
        kafka, rpc = self._free_port(), self._free_port()
        args = ["--node-id", str(node_id), "--rpc-addr", "127.0.0.1:%d" % rpc] + self.args
        b = Broker(args=args, env=self.env, smp=self.smp, port=kafka,
                   ready_timeout=self.ready_timeout)
        b.node_id = node_id
        self.nodes.append(b)
        self.rpc_ports.append(rpc)
        return b

    def _start_all(self, nodes):
        errors = []

        def run(b):
            try:
                b.start()
            except BaseException as e:  # reported below, after every thread ended
                errors.append(e)

        threads = [threading.Thread(target=run, args=(b,)) for b in nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(self.ready_timeout + 30)
        if errors:
            raise errors[0]

    def start(self):
        self._start_all(self.nodes)
        return self

    @property
    def bootstrap(self):
        return ",".join(b.addr for b in self.nodes if b.proc is not None)

    def live(self):
        """Indices (into nodes) of the nodes running now."""
        return [i for i, b in enumerate(self.nodes) if b.proc is not None]

    def kill(self, i):
        self.nodes[i].kill()

    def restart(self, i):
        b = self.nodes[i]
        if b.proc is not None:
            b.stop()
        return b.start()

    def add_node(self):
        b = self._new_node()
        b.args += ["--seed-servers", self.seeds]
        return b.start()

    def stop(self):
        errors = []
        for b in self.nodes:
            try:
                b.stop()
            except AssertionError as e:
                errors.append(str(e))
        if errors:
            raise BrokerCrashed("\n\n".join(errors))

    def remove_files(self):
        for b in self.nodes:
            b.remove_files()


# ---- raw Kafka frames ----

def uvarint(n):
    out = b""
    while n >= 0x80:
        out += bytes([(n & 0x7F) | 0x80])
        n >>= 7
    return out + bytes([n])


def kstr(s):
    """A Kafka STRING: int16 length, then the UTF-8 bytes of s."""
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def varint(n):
    """A signed (zigzag) varint, as record fields use them."""
    return uvarint((n << 1) ^ (n >> 63))


_CRC32C_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ (0x82F63B78 if _c & 1 else 0)
    _CRC32C_TABLE.append(_c)


def crc32c(data):
    """CRC-32C (Castagnoli) of data, as record batches carry it."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC32C_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def record_batch(values, ts=None, producer_id=-1, producer_epoch=-1, base_sequence=-1):
    """A magic-2 uncompressed record batch at base offset 0 (the broker stamps it): one record
    per value (null key, no headers), every timestamp ts (ms; default now), the producer
    fields as given (-1: not idempotent), a valid CRC."""
    if ts is None:
        ts = int(time.time() * 1000)
    recs = b""
    for i, v in enumerate(values):
        r = b"\x00" + varint(0) + varint(i) + varint(-1) + varint(len(v)) + v + varint(0)
        recs += varint(len(r)) + r
    n = len(values)
    after_crc = struct.pack(">hiqqqhii", 0, n - 1, ts, ts, producer_id, producer_epoch,
                            base_sequence, n) + recs
    body = struct.pack(">ibI", 0, 2, crc32c(after_crc)) + after_crc
    return struct.pack(">qi", 0, len(body)) + body


def read_uvarint(buf, pos):
    shift = 0
    val = 0
    while True:
        b = buf[pos]
        pos += 1
        val |= (b & 0x7F) << shift
        if not b & 0x80:
            return val, pos
        shift += 7


def header(api_key, version, corr, client_id=b"it", flexible=False):
    h = struct.pack(">hhih", api_key, version, corr, len(client_id)) + client_id
    if flexible:
        h += b"\x00"  # no tagged fields
    return h


def frame(payload):
    return struct.pack(">i", len(payload)) + payload


def api_versions_request(version, corr, name=b"ailurus-it", ver=b"1.0"):
    if version >= 3:
        body = uvarint(len(name) + 1) + name + uvarint(len(ver) + 1) + ver + b"\x00"
        return frame(header(18, version, corr, flexible=True) + body)
    return frame(header(18, version, corr))


def metadata_request(version, corr, topics=None):
    """topics None: all topics (null at v1+, empty at v0)."""
    flexible = version >= 9
    parts = []
    if flexible:
        if topics is None:
            parts.append(uvarint(0))
        else:
            parts.append(uvarint(len(topics) + 1))
            for t in topics:
                if version >= 10:
                    parts.append(b"\x00" * 16)
                parts.append(uvarint(len(t) + 1) + t + b"\x00")
    else:
        if topics is None:
            parts.append(struct.pack(">i", 0 if version == 0 else -1))
        else:
            parts.append(struct.pack(">i", len(topics)))
            for t in topics:
                parts.append(struct.pack(">h", len(t)) + t)
    if version >= 4:
        parts.append(b"\x00")  # AllowAutoTopicCreation false
    if 8 <= version <= 10:
        parts.append(b"\x00")  # IncludeClusterAuthorizedOperations
    if version >= 8:
        parts.append(b"\x00")  # IncludeTopicAuthorizedOperations
    if flexible:
        parts.append(b"\x00")
    return frame(header(3, version, corr, flexible=flexible) + b"".join(parts))


def recv_exact(sock, n, deadline):
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out reading %d bytes (have %d)" % (n, len(buf)))
        sock.settimeout(left)
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise ConnectionError("connection closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def recv_frame(sock, timeout=5.0):
    deadline = time.monotonic() + timeout
    size = struct.unpack(">i", recv_exact(sock, 4, deadline))[0]
    return recv_exact(sock, size, deadline)



def call(node, api_key, version, body, timeout=10.0):
    """One request (correlation id 7) on a fresh connection to node; the response body."""
    with node.connect(timeout) as s:
        s.sendall(frame(header(api_key, version, 7) + body))
        r = recv_frame(s, timeout)
    assert struct.unpack_from(">i", r, 0)[0] == 7
    return r[4:]


def init_producer_id(node):
    """InitProducerId v0 (no transactional id): (error, producer id, epoch)."""
    r = call(node, 22, 0, struct.pack(">hi", -1, 60000))
    return struct.unpack_from(">hqh", r, 4)


def produce_batch(node, topic, b, timeout=15):
    """Produce v3 acks=all of one record batch to partition 0: (error, base offset)."""
    body = struct.pack(">hhi", -1, -1, 10000) + struct.pack(">i", 1) + kstr(topic)
    body += struct.pack(">ii", 1, 0) + struct.pack(">i", len(b)) + b
    r = call(node, 0, 3, body, timeout=timeout)
    pos = 4
    pos += 2 + struct.unpack_from(">h", r, pos)[0]
    pos += 4
    _, err, base = struct.unpack_from(">ihq", r, pos)
    return err, base


def delete_records(node, topic, offset, partition=0):
    """DeleteRecords v0 of topic/partition sent to node (a harness node with connect()):
    (low watermark, error code) of the answer."""
    name = topic.encode()
    body = struct.pack(">i", 1) + struct.pack(">h", len(name)) + name + struct.pack(">i", 1)
    body += struct.pack(">iq", partition, offset) + struct.pack(">i", 10000)
    s = node.connect()
    try:
        s.sendall(frame(header(21, 0, 9) + body))
        resp = recv_frame(s, timeout=20)
    finally:
        s.close()
    pos = 4 + 4 + 4
    (n,) = struct.unpack_from(">h", resp, pos)
    pos += 2 + n + 4
    _, low, err = struct.unpack_from(">iqh", resp, pos)
    return low, err

def wait_closed(sock, timeout=5.0):
    """True if the peer closes the connection (EOF or reset) within timeout, discarding data."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True
        if not data:
            return True
    return False


def parse_api_versions(payload, version):
    """Response frame payload (header v0 + body) -> (corr, error, {key: (min, max)})."""
    corr, err = struct.unpack_from(">ih", payload, 0)
    pos = 6
    keys = {}
    if version >= 3 and err != 35:
        n, pos = read_uvarint(payload, pos)
        n -= 1
        for _ in range(n):
            k, lo, hi = struct.unpack_from(">hhh", payload, pos)
            pos += 6
            ntags, pos = read_uvarint(payload, pos)
            assert ntags == 0
            keys[k] = (lo, hi)
    else:
        (n,) = struct.unpack_from(">i", payload, pos)
        pos += 4
        for _ in range(n):
            k, lo, hi = struct.unpack_from(">hhh", payload, pos)
            pos += 6
            keys[k] = (lo, hi)
    return corr, err, keys, pos


def correlation_id(payload):
    return struct.unpack_from(">i", payload, 0)[0]
