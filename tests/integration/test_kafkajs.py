"""test_kafkajs.py — kafkajs 2.2.4 (from npm, pinned in js/package-lock.json) against the real
binary (2 shards): admin operations, an idempotent acks=all producer with headers, timestamps
and gzip, ListOffsets (earliest/latest and by timestamp), and a consumer group with
eachMessage and seek (skipped while the broker does not advertise the group APIs).

kafkajs is installed on first use with `npm ci` into js/node_modules (gitignored); the test is
skipped when node/npm are missing or the install fails (no network to the npm registry).
"""
import json
import os
import subprocess

import pytest

from ailurus_harness import api_versions_request, parse_api_versions, recv_frame

JS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "js")


def run(js, scenario, b, timeout=120):
    r = subprocess.run(["node", "run.js", scenario, b.addr], cwd=js, capture_output=True,
                       timeout=timeout)
    assert r.returncode == 0, "kafkajs %s failed:\n%s\n%s" % (scenario, r.stderr.decode(),
                                                             b.log_text()[-3000:])
    return json.loads(r.stdout.decode().strip().splitlines()[-1])


def test_kafkajs_admin(kafkajs, broker_factory):
    b = broker_factory(smp=2)
    out = run(kafkajs, "admin", b)
    assert out["created"] is True
    assert out["createdAgain"] is False  # already exists: kafkajs reports false
    assert out["badConfig"] == "INVALID_CONFIG"
    assert out["partitions"] == 3 and out["partitionsAfter"] == 5
    assert "js-a" in out["topics"] and "js-b" in out["topics"]
    assert out["configs"]["retention.ms"] == "3600000"
    assert out["configs"]["cleanup.policy"] == "delete"
    assert out["brokers"] == 1 and out["controller"] == 0
    assert "js-b" not in out["topicsAfterDelete"]


def test_kafkajs_idempotent_producer_offsets(kafkajs, broker_factory):
    b = broker_factory(smp=2)
    out = run(kafkajs, "produce", b)
    bases = {0: [], 1: []}
    for res in out["sent"]:
        assert all(r["err"] == 0 for r in res), res
        assert sorted(r["p"] for r in res) == [0, 1]
        for r in res:
            bases[r["p"]].append(int(r["base"]))
    # Rounds of 25 records alternate partitions: 13/12 then 12/13 per partition.
    assert bases[0] == [0, 13, 25, 38] and bases[1] == [0, 12, 25, 37]
    assert out["offsets"] == [{"p": 0, "low": "0", "high": "50"},
                              {"p": 1, "low": "0", "high": "50"}]
    # Records n = 50.. have timestamps >= ...050: partition 0 holds even n (offset n/2).
    assert out["byTimestamp"] == [{"p": 0, "off": "25"}, {"p": 1, "off": "25"}]


def _advertises(b, key):
    s = b.connect()
    s.sendall(api_versions_request(0, 1))
    _, err, keys, _ = parse_api_versions(recv_frame(s), 0)
    s.close()
    return err == 0 and key in keys


def test_kafkajs_consumer_group_seek(kafkajs, broker_factory):
    b = broker_factory(smp=2)
    if not _advertises(b, 11):
        pytest.skip("the broker does not advertise JoinGroup yet (group handlers not wired)")
    out = run(kafkajs, "consumeGroup", b)
    seen = out["seen"]
    first = seen[:40]
    assert sorted(v for _, _, v in first) == sorted("m%d" % n for n in range(40))
    for part in (0, 1):
        offs = [o for p, o, _ in first if p == part]
        assert offs == list(range(20))
    # After the seek to offset 15 of partition 0, it is read again from there.
    again = [(p, o) for p, o, _ in seen[40:] if p == 0]
    assert again and again[0] == (0, 15)
