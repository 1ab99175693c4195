"""Retention and log prefix truncation on Raft partitions (issue 7): a 3-node cluster, topics
with replication factor 3.

  * retention.bytes with small segments: old segments are deleted on every node, each replica
    moving its own log start (never past its commit index: raft_snap records the snapshot
    point), and ListOffsets EARLIEST (the low watermark) follows; a consumer from the
    beginning starts there;
  * a follower stopped while retention.ms cuts the leader's log past the follower's end comes
    back and catches up by snapshot (its old log is replaced: it starts after the leader's
    snapshot point), then by appends; every node then holds the same end;
  * DeleteRecords through the leader goes through the Raft log, so every replica moves its
    start, and the answer's low watermark is the new start.

Nodes are real `ailurus start` processes on 127.0.0.1; every wait is bounded."""

import os
import struct
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from ailurus_harness import delete_records


@pytest.fixture
def cluster(cluster_factory):
    return cluster_factory(3, first_id=0)


def create_topic(c, name, config):
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    fs = admin.create_topics([NewTopic(name, 1, 3, config=config)], request_timeout=20)
    fs[name].result(timeout=30)


def part_dir(node, topic, partition=0):
    kdir = os.path.join(node.data_dir, "kafka")
    names = [n for n in os.listdir(kdir) if n.startswith(topic + "-")] if os.path.isdir(kdir) \
        else []
    if len(names) != 1:
        return None
    return os.path.join(kdir, names[0], str(partition))


def log_state(node, topic):
    """(log start offset from log_meta, [segment base offsets], raft_snap offset or None) of
    node's replica, read from its files (None if the partition is not there yet)."""
    d = part_dir(node, topic)
    if d is None or not os.path.isdir(d):
        return None
    start = 0
    try:
        with open(os.path.join(d, "log_meta"), "rb") as f:
            b = f.read()
        if len(b) == 24:
            start = struct.unpack(">q", b[8:16])[0]
    except FileNotFoundError:
        pass
    snap = None
    try:
        with open(os.path.join(d, "raft_snap"), "rb") as f:
            b = f.read()
        if len(b) >= 32:
            snap = struct.unpack(">q", b[16:24])[0]
    except FileNotFoundError:
        pass
    bases = sorted(int(n.split("-")[0]) for n in os.listdir(d) if n.endswith(".log"))
    return start, bases, snap


def produce(c, topic, n, size=200, tag=b"v"):
    p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "linger.ms": 5,
                  "enable.idempotence": True, "message.timeout.ms": 60000})
    errors = []

    def cb(err, msg):
        if err is not None:
            errors.append(err)

    for i in range(n):
        p.produce(topic, value=tag + b"%06d" % i + b"x" * size, partition=0, on_delivery=cb)
        if i % 200 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    assert not errors, errors[:3]


def watermarks(c, topic):
    cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": "it-ret"})
    try:
        return cons.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        cons.close()


def first_offset(c, topic, timeout=30.0):
    cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": "it-ret-first",
                     "auto.offset.reset": "earliest", "enable.auto.commit": False})
    cons.assign([TopicPartition(topic, 0, -2)])  # OFFSET_BEGINNING
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            m = cons.poll(0.5)
            if m is None:
                continue
            if m.error():
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                continue
            return m.offset()
    finally:
        cons.close()
    raise AssertionError("nothing consumed from the beginning")


def wait_until(what, fn, timeout=40.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


def test_retention_bytes_moves_the_start_on_every_replica(cluster):
    c = cluster
    create_topic(c, "ret", {"segment.bytes": "65536", "retention.bytes": "200000"})
    # in three parts: librdkafka packs each part's 1000 records into one or two batches of
    # ~100-210 KB, and a batch is never split across segments (a segment rolls on the append
    # that would take it past segment.bytes), so 1000 records at once make one segment of
    # ~210 KB, not a run of 64 KiB ones; retention cuts only closed segments; a cut of the
    # first leader's NOOP alone (log offset 0) moves no Kafka offset
    for part in range(3):
        produce(c, "ret", 1000, tag=b"v%d" % part)
    low0, high = watermarks(c, "ret")
    assert high >= 3000

    def cut_everywhere():
        states = [log_state(n, "ret") for n in c.nodes]
        if any(s is None or s[0] == 0 or s[2] is None for s in states):
            return None
        # a first cut may remove only the first leader's NOOP (log offset 0), which takes no
        # Kafka offset (offset translation): wait for one that removes records
        try:
            if watermarks(c, "ret")[0] == 0:
                return None
        except KafkaException:  # metadata not current yet: ask again
            return None
        # files of segments below the start go in a delete job moments after the start moved
        # (storage, "delete jobs"): wait for the listing to settle
        if any(len(s[1]) > 6 for s in states):
            return None
        return states
    states = wait_until("retention on all 3 replicas", cut_everywhere)
    for start, bases, snap in states:
        assert snap == start - 1, (start, snap)   # the log starts right after the point
        assert bases and bases[0] <= start, (start, bases)
        assert len(bases) <= 6, bases             # ~600 KB in 64 KiB segments, 200 KB kept
        assert start < high
    low, high2 = watermarks(c, "ret")
    assert low > 0 and high2 == high
    leader_start = max(s[0] for s in states)
    assert low <= leader_start
    assert first_offset(c, "ret") >= low


def test_stopped_follower_catches_up_by_snapshot(cluster):
    c = cluster
    create_topic(c, "snap", {"segment.bytes": "65536", "retention.ms": "1500"})
    produce(c, "snap", 500, tag=b"a")
    # stop a follower (not the controller's node 0 either: any of 1, 2 works for the data)
    victim = 2
    before = wait_until("the victim's replica", lambda: log_state(c.nodes[victim], "snap"))
    c.kill(victim)
    produce(c, "snap", 4000, tag=b"b")
    time.sleep(2.0)
    produce(c, "snap", 400, tag=b"c")  # seals segments whose records are now old enough
    low, high = watermarks(c, "snap")

    def cut_past_victim():
        s = [log_state(c.nodes[i], "snap") for i in (0, 1)]
        return all(x and x[0] > 600 for x in s) and s
    wait_until("retention past the stopped node's log end", cut_past_victim)
    c.restart(victim)

    def caught_up():
        s = log_state(c.nodes[victim], "snap")
        if not s or s[2] is None or s[0] <= 600:
            return None
        # segments below the start leave the log at once; their files go in a delete job off
        # the shard's thread moments later (storage, "delete jobs"), as Kafka deletes them
        # after file.delete.delay.ms: wait for the listing to settle
        if any(b < s[0] - 1 for b in s[1]):
            return None
        return s
    start, bases, snap = wait_until("the restarted node to install a snapshot", caught_up, 60)
    # (no segment at all when retention had cut the leader's whole log: it restarts empty)
    assert snap == start - 1 and all(b >= start - 1 for b in bases), (start, bases, snap)
    assert "installed the leader's snapshot" in c.nodes[victim].log_text()
    # it then receives appends: a new record reaches every node's log
    produce(c, "snap", 50, tag=b"d")
    _, high2 = watermarks(c, "snap")
    assert high2 > high
    assert first_offset(c, "snap") >= watermarks(c, "snap")[0]


def leader_of(c, topic, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for i in c.live():
            try:
                md = AdminClient({"bootstrap.servers": c.nodes[i].addr}).list_topics(topic,
                                                                                     timeout=5)
                t = md.topics.get(topic)
                if t and t.error is None and t.partitions[0].leader >= 0 and \
                        t.partitions[0].leader in c.live():
                    return t.partitions[0].leader
            except Exception:
                pass
        time.sleep(0.3)
    raise AssertionError("no leader for " + topic)


def test_delete_records_moves_every_replica(cluster):
    c = cluster
    create_topic(c, "dr", {"segment.bytes": "65536"})
    p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "batch.num.messages": 1,
                  "linger.ms": 0, "enable.idempotence": True})
    for i in range(600):
        p.produce("dr", value=b"r%05d" % i + b"y" * 200, partition=0)
        if i % 100 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    low, high = watermarks(c, "dr")
    assert low == 0 and high >= 600
    leader = leader_of(c, "dr")
    follower = next(i for i in range(3) if i != leader)
    # a follower refuses: the leader answers
    assert delete_records(c.nodes[follower], "dr", 300)[1] == 6  # NOT_LEADER_OR_FOLLOWER
    low, err = delete_records(c.nodes[leader], "dr", 300)
    assert (low, err) == (300, 0)  # one record per batch: exactly the offset asked for
    assert delete_records(c.nodes[leader], "dr", high + 100)[1] == 1  # OFFSET_OUT_OF_RANGE

    # log_state reads log (Raft) offsets: Kafka offset 300 is past the first leader's NOOP
    def moved_everywhere():
        states = [log_state(n, "dr") for n in c.nodes]
        return all(s and s[0] == states[0][0] and s[0] > low and s[2] == s[0] - 1
                   for s in states) and states
    wait_until("every replica to start at %d" % low, moved_everywhere)
    assert watermarks(c, "dr")[0] == low
    assert first_offset(c, "dr") >= low
    # the new leader after a failover keeps the deleted prefix deleted
    c.kill(leader)
    new_leader = leader_of(c, "dr")
    assert new_leader != leader
    assert watermarks(c, "dr")[0] == low
    c.restart(leader)
    low2, err = delete_records(c.nodes[leader_of(c, "dr")], "dr", -1)  # up to the HW
    assert err == 0 and low2 > low

    def all_at_hw():
        states = [log_state(n, "dr") for n in c.nodes]
        return all(s and s[0] == states[0][0] and s[0] > low2 for s in states) and states
    wait_until("every replica at the high watermark", all_at_hw)


def test_controller_log_trims_and_restarts_from_its_snapshot(cluster_factory):
    """The controller (Raft group 0) snapshots its state and cuts its log every few commands
    here (AILURUS_CONTROLLER_SNAPSHOT_EVERY=16): a restarted node loads the snapshot and
    applies the suffix; a node that joins later gets the leader's snapshot."""
    c = cluster_factory(3, first_id=0, env={"AILURUS_CONTROLLER_SNAPSHOT_EVERY": "16"})
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    names = ["ctl%02d" % i for i in range(40)]
    for i in range(0, len(names), 8):
        fs = admin.create_topics([NewTopic(n, 1, 3) for n in names[i:i + 8]],
                                 request_timeout=30)
        for f in fs.values():
            f.result(timeout=30)
    for node in c.nodes:
        wait_until("the controller log trimmed on node %d" % node.node_id,
                   lambda: "controller log trimmed" in node.log_text())
        snap = os.path.join(node.data_dir, "controller", "raft_snap")
        assert os.path.exists(snap)

    def topics_on(i):
        md = AdminClient({"bootstrap.servers": c.nodes[i].addr}).list_topics(timeout=10)
        return set(md.topics)

    c.restart(1)
    assert "controller state loaded from its snapshot" in c.nodes[1].log_text()
    wait_until("node 1 to list every topic", lambda: set(names) <= topics_on(1))
    # one more change after the restart reaches node 1 through the log suffix
    admin.create_topics([NewTopic("ctl-after", 1, 3)])["ctl-after"].result(timeout=30)
    wait_until("node 1 to see a topic created after its restart",
                lambda: "ctl-after" in topics_on(1))
    # a new node: the leader's log no longer starts at 0, so it installs the snapshot
    c.add_node()
    newest = len(c.nodes) - 1
    wait_until("the new node to install the controller snapshot",
               lambda: "state loaded from the leader's snapshot" in c.nodes[newest].log_text())
    wait_until("the new node to list every topic",
               lambda: set(names) | {"ctl-after"} <= topics_on(newest))


def sealed_log_bytes(node, topic, partition=0):
    """(bytes of node's closed segment files, number of segments, base offset of the active
    segment) of a replica: every .log but the active one (the highest base, preallocated), or
    None when it is not there."""
    d = part_dir(node, topic, partition)
    if d is None or not os.path.isdir(d):
        return None
    logs = sorted((int(n.split("-")[0]), n) for n in os.listdir(d) if n.endswith(".log"))
    if not logs:
        return None
    return (sum(os.path.getsize(os.path.join(d, n)) for _, n in logs[:-1]), len(logs),
            logs[-1][0])


def test_compaction_on_every_replica(cluster):
    """cleanup.policy=compact on an RF-3 topic: each replica compacts its own closed segments
    below its commit index (the files shrink on all 3 nodes) and a consumer from the beginning
    sees the newest value of every key."""
    c = cluster
    create_topic(c, "cmp", {"segment.bytes": "16384", "cleanup.policy": "compact"})
    keys, n = 10, 3000
    # batches of at most 20 records (~3 KB): many batches, about 5 per 16 KiB segment
    p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "linger.ms": 2,
                  "batch.num.messages": 20, "enable.idempotence": True,
                  "message.timeout.ms": 60000})
    newest = {}
    for i in range(n):
        k = b"key%02d" % (i % keys)
        v = b"v%06d" % i + b"z" * 150
        newest[k] = v
        p.produce("cmp", key=k, value=v, partition=0)
        if i % 200 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    produced = n * (150 + 7 + 5)

    states = []

    def shrunk_everywhere():
        s = [sealed_log_bytes(node, "cmp") for node in c.nodes]
        states.append(s)
        if any(x is None or x[1] < 8 for x in s):
            return None
        # uncompacted, the closed segments hold more than the produced bytes; compacted,
        # their batches keep only headers and the newest records (a few KB per segment)
        return all(x[0] < produced // 3 for x in s) and s
    try:
        s = wait_until("compaction on all 3 replicas", shrunk_everywhere)
    except AssertionError:
        raise AssertionError("no compaction on every replica: (bytes, segments) per node went "
                             "%r -> %r (produced %d bytes)" % (states[0], states[-1], produced))
    cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": "it-cmp",
                     "auto.offset.reset": "earliest", "enable.auto.commit": False,
                     "enable.partition.eof": True})
    cons.assign([TopicPartition("cmp", 0, -2)])
    seen, count = {}, 0
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            m = cons.poll(0.5)
            if m is None:
                continue
            if m.error():
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                break
            seen[m.key()] = m.value()
            count += 1
    finally:
        cons.close()
    assert seen == newest, sorted(seen)[:3]
    assert count < n // 2, (count, s)  # the consumer reads the compacted log


def test_consumer_offsets_compacted_on_every_replica(cluster):
    """A group committing in a loop: its __consumer_offsets partition rolls at the segment.bytes
    set through AlterConfigs on every replica (applied when the topic config changes, rolls on
    the append path) and is compacted on every replica, so its closed segments keep an empty
    batch per superseded commit instead of the commit."""
    c = cluster
    create_topic(c, "co-src", {})
    cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": "it-co-loop",
                     "enable.auto.commit": False})
    commits = 1500
    try:
        cons.commit(offsets=[TopicPartition("co-src", 0, 0)], asynchronous=False)
        # __consumer_offsets exists now: small segments, so they roll and get compacted
        admin = AdminClient({"bootstrap.servers": c.bootstrap})
        res = ConfigResource(ConfigResource.Type.TOPIC, "__consumer_offsets",
                             set_config={"segment.bytes": "16384", "cleanup.policy": "compact"})
        admin.alter_configs([res], request_timeout=15)[res].result(timeout=20)
        for i in range(commits):
            cons.commit(offsets=[TopicPartition("co-src", 0, i)], asynchronous=False)
        got = cons.committed([TopicPartition("co-src", 0)], timeout=10)[0].offset
    finally:
        cons.close()
    assert got == commits - 1

    def group_partition(node):
        """(partition, sealed_log_bytes) of the group's partition on node: the one whose log
        reached the highest offset (not the one with the most segments: under load, elections
        in idle partitions add a segment per term)."""
        best = None
        for part in range(16):
            s = sealed_log_bytes(node, "__consumer_offsets", part)
            if s and (best is None or s[2] > best[1][2]):
                best = (part, s)
        return best

    def segments(node, part):
        d = part_dir(node, "__consumer_offsets", part)
        if d is None or not os.path.isdir(d):
            return None
        return sorted((int(n.split("-")[0]), os.path.getsize(os.path.join(d, n)))
                      for n in os.listdir(d) if n.endswith(".log"))
    first = [group_partition(n) for n in c.nodes]
    states = []

    def compacted_everywhere():
        s = [group_partition(n) for n in c.nodes]
        states.append(s)
        # the closed segments hold at least half of the commits (one batch, one offset each)
        if any(x is None or x[1][2] < commits // 2 for x in s):
            return None
        # a commit batch is ~125 bytes uncompacted, an emptied one 61
        return all(x[1][0] < 90 * x[1][2] for x in s) and s
    try:
        # compaction runs at 2 s housekeeping passes on each node: 60 s for a loaded machine
        wait_until("__consumer_offsets compaction on all 3 replicas", compacted_everywhere, 60)
    except AssertionError:
        detail = [(n.node_id, segments(n, x[0]) if x else None)
                  for n, x in zip(c.nodes, states[-1])]
        raise AssertionError("__consumer_offsets not compacted everywhere: %r -> %r; segments "
                             "(base, file bytes) per node: %r" % (first, states[-1], detail))
    # the group's partition rolled at the new size on every replica: a 16 KiB segment holds
    # ~130 commits uncompacted, so 1500 commits make ~11 segments (at the old 100 MiB: one)
    for x in states[-1]:
        assert x[1][1] >= 8, states[-1]
