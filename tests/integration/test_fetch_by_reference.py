"""test_fetch_by_reference.py — Fetch with records by reference (batches sent from the batch
cache and the read buffers with gathered sends) answers byte for byte what the copying path
answers: two brokers get the same raw batches (small and large ones, runs of tiny ones), one
started with AILURUS_FETCH_COPY=1 (the copying path), and the same raw Fetch v11 requests
(batch starts and offsets inside batches, partition and response byte limits down to one
batch, every partition at once) must give identical response frames, from a warm cache, then
after a restart of both from disk, then from the cache the disk reads filled.
"""
import random
import struct

from ailurus_harness import frame, header, recv_frame

import pytest

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

TOPIC = b"fbr"
PARTS = 3

_CRC_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ (0x82F63B78 if _c & 1 else 0)
    _CRC_TABLE.append(_c)


def _crc32c(data):
    crc = 0xFFFFFFFF
    t = _CRC_TABLE
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _varint(n):
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _batch(values, ts=1000):
    """A magic-2 uncompressed batch of len(values) records (base offset 0: the broker stamps)."""
    recs = b""
    for i, v in enumerate(values):
        r = b"\x00" + _varint(0) + _varint(i) + _varint(-1) + _varint(len(v)) + v + _varint(0)
        recs += _varint(len(r)) + r
    n = len(values)
    after_crc = struct.pack(">hiqqqhii", 0, n - 1, ts, ts, -1, -1, -1, n) + recs
    body = struct.pack(">ibI", 0, 2, _crc32c(after_crc)) + after_crc
    return struct.pack(">qi", 0, len(body)) + body


def _produce(sock, partition, batch, corr):
    body = struct.pack(">hhi", -1, -1, 10000)
    body += struct.pack(">i", 1) + struct.pack(">h", len(TOPIC)) + TOPIC
    body += struct.pack(">i", 1) + struct.pack(">i", partition)
    body += struct.pack(">i", len(batch)) + batch
    sock.sendall(frame(header(0, 3, corr) + body))
    resp = recv_frame(sock, timeout=20)
    pos = 4 + 4
    (ln,) = struct.unpack_from(">h", resp, pos)
    pos += 2 + ln + 4
    _, err, base = struct.unpack_from(">ihq", resp, pos)
    assert err == 0, "produce error %d" % err
    return base


def _fetch_frame(corr, parts, max_bytes):
    """Fetch v11: parts = [(partition, offset, partition_max_bytes)]; no wait."""
    body = struct.pack(">iiiibii", -1, 0, 0, max_bytes, 0, 0, -1)
    body += struct.pack(">i", 1) + struct.pack(">h", len(TOPIC)) + TOPIC
    body += struct.pack(">i", len(parts))
    for p, off, pmax in parts:
        body += struct.pack(">iiqqi", p, -1, off, -1, pmax)
    body += struct.pack(">i", 0) + struct.pack(">h", 0)  # no forgotten topics, rack ""
    return frame(header(1, 11, corr) + body)


def _create(addr):
    a = AdminClient({"bootstrap.servers": addr})
    fs = a.create_topics([NewTopic(TOPIC.decode(), num_partitions=PARTS,
                                   replication_factor=1)], request_timeout=15)
    fs[TOPIC.decode()].result(timeout=20)


def _batches(rng):
    """Per partition: a list of batches: tiny (a few bytes), medium (< 1 KiB), large (up to
    ~96 KiB in many records), and a run of 300 one-record batches (more than one Fetch takes
    by reference: the copying read serves those)."""
    out = []
    for p in range(PARTS):
        bl = []
        for k in range(60):
            kind = rng.randrange(4)
            if kind == 0:
                vals = [bytes([rng.randrange(256)]) * rng.randrange(1, 20)]
            elif kind == 1:
                vals = [rng.randbytes(rng.randrange(100, 900))]
            else:
                vals = [rng.randbytes(rng.randrange(200, 4000))
                        for _ in range(rng.randrange(1, 24))]
            bl.append(_batch(vals, ts=1000 + k))
        if p == 1:
            bl += [_batch([b"r%d" % i], ts=5000 + i) for i in range(300)]
        out.append(bl)
    return out


def _requests(offsets, rng):
    """(parts, max_bytes) Fetch shapes over known batch start offsets and in-batch offsets."""
    reqs = []
    for p in range(PARTS):
        starts = offsets[p]
        for off in starts[:: max(1, len(starts) // 12)] + [starts[-1] + 1, 1, 7]:
            for pmax in (1, 1000, 65536, 1 << 20):
                reqs.append(([(p, off, pmax)], 50 << 20))
    for _ in range(20):
        parts = [(p, rng.choice(offsets[p]), rng.choice((1, 30000, 1 << 20)))
                 for p in range(PARTS)]
        reqs.append((parts, rng.choice((1, 100000, 50 << 20))))
    return reqs


def _fetch_all(b, reqs):
    s = b.connect()
    out = []
    for i, (parts, mb) in enumerate(reqs):
        s.sendall(_fetch_frame(1000 + i, parts, mb))
        out.append(recv_frame(s, timeout=20))
    s.close()
    return out


def test_fetch_by_reference_byte_identical(broker_factory):
    rng = random.Random(6)
    ref = broker_factory(smp=2)
    cpy = broker_factory(smp=2, env={"AILURUS_FETCH_COPY": "1"})
    batches = _batches(rng)
    offsets = [[] for _ in range(PARTS)]
    for b in (ref, cpy):
        _create(b.addr)
        s = b.connect()
        for p in range(PARTS):
            for i, bt in enumerate(batches[p]):
                base = _produce(s, p, bt, 10 + i)
                if b is ref:
                    offsets[p].append(base)
        s.close()
    reqs = _requests(offsets, rng)
    # Which batches a read returns depends on what is cached (a run of cached batches ends at
    # the first one not cached), so both brokers go through the same sequence: restarted
    # together, the same requests fill both caches the same way.
    for round_ in ("warm cache", "after restart: disk", "cache filled by disk reads"):
        if round_.startswith("after"):
            for b in (ref, cpy):
                b.stop()
                b.start()
        want = _fetch_all(cpy, reqs)
        assert sum(len(w) for w in want) > 5 << 20  # the shapes above do return data
        got = _fetch_all(ref, reqs)
        for i, (g, w) in enumerate(zip(got, want)):
            assert g == w, "%s: fetch %d %r differs (%d vs %d bytes)" % (
                round_, i, reqs[i], len(g), len(w))
