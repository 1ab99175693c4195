"""Consumer groups and producer ids in cluster mode (issue 7): the group coordinator lives on
the leader of the group's __consumer_offsets partition (a Raft replica, RF 3 on 3 nodes) and
fails over with it; producer ids come from the controller, so no two nodes hand out the same
one; an idempotent producer's retry across a partition leader change gets its original offset.

Each test starts its own 3-node cluster (the harness `Cluster`: real `ailurus start` processes
on 127.0.0.1, one shard each) and SIGKILLs one node. Clients: confluent_kafka (librdkafka),
raw frames for FindCoordinator / InitProducerId / Produce, kafka-python, and kafkajs (skipped
without node/npm). Every wait is bounded. CG_SMP=2 runs the nodes with two shards each."""

import json
import os
import struct
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import ailurus_harness
from ailurus_harness import kstr, record_batch

ERR_NONE = 0
ERR_COORDINATOR_NOT_AVAILABLE = 15
ERR_NOT_COORDINATOR = 16


@pytest.fixture
def cluster3(cluster_factory):
    """A started 3-node cluster (conftest's cluster_factory: files kept when the test fails)."""
    return cluster_factory(3, smp=int(os.environ.get("CG_SMP", "1")))


def wait_for(what, fn, timeout=30.0, step=0.2):
    """The harness's wait_for, also retrying on client (KafkaException) errors."""
    return ailurus_harness.wait_for(what, fn, timeout, step,
                                    (OSError, AssertionError, struct.error, KafkaException))


call = ailurus_harness.call


def find_coordinator(node, group):
    """FindCoordinator v1 to node: (error, node id, port)."""
    r = call(node, 10, 1, kstr(group) + b"\x00")
    pos = 4
    (err,) = struct.unpack_from(">h", r, pos)
    pos += 2
    (ml,) = struct.unpack_from(">h", r, pos)
    pos += 2 + max(ml, 0)
    (nid,) = struct.unpack_from(">i", r, pos)
    pos += 4
    (hl,) = struct.unpack_from(">h", r, pos)
    pos += 2 + hl
    (port,) = struct.unpack_from(">i", r, pos)
    return err, nid, port


def coordinator(c, group, nodes=None, exclude=None):
    """The coordinator every node in `nodes` (default: the live ones) names for group."""
    def agreed():
        seen = {find_coordinator(c.nodes[i], group) for i in (nodes or c.live())}
        if len(seen) != 1:
            return None
        err, nid, port = seen.pop()
        if err != ERR_NONE or nid < 0 or nid == exclude:
            return None
        assert port == c.nodes[nid - 1].port
        return nid
    return wait_for("an agreed coordinator of %s" % group, agreed, timeout=40.0)


init_producer_id = ailurus_harness.init_producer_id


def create_topic(c, name, partitions, rf=3):
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    fs = admin.create_topics([NewTopic(name, partitions, rf)], request_timeout=20)
    fs[name].result(timeout=30)

    def leaders_known():
        md = AdminClient({"bootstrap.servers": c.bootstrap}).list_topics(name, timeout=5)
        t = md.topics.get(name)
        return t is not None and t.error is None and len(t.partitions) == partitions and \
            all(p.leader >= 1 for p in t.partitions.values())
    wait_for("leaders of %s" % name, leaders_known)


def produce(c, topic, values):
    p = Producer({"bootstrap.servers": c.bootstrap, "enable.idempotence": True,
                  "acks": "all", "linger.ms": 5, "message.timeout.ms": 60000})
    errors = []
    for i, v in enumerate(values):
        p.produce(topic, v, partition=i % 3,
                  on_delivery=lambda err, msg: err and errors.append(err))
        p.poll(0)
    assert p.flush(60) == 0 and not errors, errors


def end_offsets(c, topic, partitions):
    cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": "it-watermarks"})
    try:
        return {p: cons.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)}
    finally:
        cons.close()


def committed(c, group, topic, partitions):
    cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": group,
                     "enable.auto.commit": False})
    try:
        tps = cons.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=20)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        cons.close()


# ---- tests ----

def test_producer_ids_distinct_across_nodes(cluster3):
    c = cluster3
    ids = []
    for round_ in range(3):
        for node in c.nodes:
            got = wait_for("a producer id from node %d" % node.node_id,
                           lambda: (lambda r: r if r[0] == ERR_NONE else None)(
                               init_producer_id(node)))
            assert got[2] == 0 and got[1] >= 0, got
            ids.append((node.node_id, got[1]))
    values = [i for _, i in ids]
    assert len(set(values)) == len(values), ids
    # A restarted node takes a fresh block: no id handed out before is repeated.
    c.kill(1)
    c.restart(1)
    got = wait_for("a producer id after the restart",
                   lambda: (lambda r: r if r[0] == ERR_NONE else None)(
                       init_producer_id(c.nodes[1])))
    assert got[1] not in values, (got, ids)


def test_one_node_cluster_creates_offsets_topic_on_first_use(cluster_factory):
    """Below 3 nodes the controller does not create __consumer_offsets by itself: the first
    FindCoordinator asks for it (RF = the nodes there are), then the group works."""
    c = cluster_factory(1)
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    assert "__consumer_offsets" not in admin.list_topics(timeout=5).topics
    create_topic(c, "one", 3, rf=1)
    produce(c, "one", [b"x%d" % i for i in range(50)])
    assert coordinator(c, "g-one") == 1
    t = admin.list_topics("__consumer_offsets", timeout=5).topics["__consumer_offsets"]
    assert len(t.partitions) == 16 and all(p.replicas == [1] for p in t.partitions.values())
    cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": "g-one",
                     "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        cons.subscribe(["one"])
        got, deadline = 0, time.monotonic() + 40
        while got < 50 and time.monotonic() < deadline:
            m = cons.poll(0.2)
            got += m is not None and not m.error()
        assert got == 50
        cons.commit(asynchronous=False)
    finally:
        cons.close()
    ends = end_offsets(c, "one", 3)
    assert committed(c, "g-one", "one", 3) == ends


def test_offsets_topic_replicated_and_coordinator_leads_it(cluster3):
    c = cluster3
    admin = AdminClient({"bootstrap.servers": c.bootstrap})

    def offsets_topic():
        t = admin.list_topics("__consumer_offsets", timeout=5).topics.get("__consumer_offsets")
        return t if t is not None and t.error is None and len(t.partitions) == 16 and \
            all(p.leader >= 1 for p in t.partitions.values()) else None
    t = wait_for("__consumer_offsets with leaders", offsets_topic)
    for p in t.partitions.values():
        assert sorted(p.replicas) == [1, 2, 3], p
    nid = coordinator(c, "g-lead")
    # Any other node refuses to coordinate the group: NOT_COORDINATOR.
    other = c.nodes[nid % 3]
    r = call(other, 12, 0, kstr("g-lead") + struct.pack(">i", 1) + kstr("m"))  # Heartbeat v0
    assert struct.unpack_from(">h", r, 0)[0] == ERR_NOT_COORDINATOR, r


def test_group_commits_survive_coordinator_kill(cluster3):
    c = cluster3
    topic, group, n = "cg-orders", "cg-1", 3000
    create_topic(c, topic, 3)
    values = [b"v%05d" % i for i in range(n)]
    produce(c, topic, values)
    ends = end_offsets(c, topic, 3)
    coord = coordinator(c, group)

    conf = {"bootstrap.servers": c.bootstrap, "group.id": group,
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "session.timeout.ms": 10000, "heartbeat.interval.ms": 500,
            "topic.metadata.refresh.interval.ms": 1000, "fetch.wait.max.ms": 100,
            "max.partition.fetch.bytes": 4096}
    consumers = [Consumer(dict(conf, **{"client.id": "m%d" % i})) for i in range(2)]
    for cons in consumers:
        cons.subscribe([topic])
    seen = set()
    best = {}             # highest offset committed successfully, per partition
    at_kill = None        # committed offsets when the coordinator was killed
    after_kill_min = {}   # lowest offset delivered after the kill, per partition
    pending = [0, 0]
    commits_ok, commit_errors = 0, []
    closed = set()
    deadline = time.monotonic() + 120
    try:
        while len(seen) < n and time.monotonic() < deadline:
            for i, cons in enumerate(consumers):
                if i in closed:
                    continue
                m = cons.poll(0.05)
                if m is not None and not m.error():
                    seen.add(m.value())
                    pending[i] += 1
                    if at_kill is not None:
                        p = m.partition()
                        after_kill_min[p] = min(after_kill_min.get(p, m.offset()), m.offset())
                elif m is not None and m.error().code() != KafkaError._PARTITION_EOF:
                    commit_errors.append(str(m.error()))
                if pending[i] >= 40:
                    try:
                        for tp in cons.commit(asynchronous=False) or []:
                            assert tp.error is None, tp
                            if tp.offset < 0:
                                continue  # no position (nothing consumed there yet)
                            assert tp.offset >= best.get(tp.partition, -1), (tp, best)
                            best[tp.partition] = tp.offset
                        commits_ok += 1
                        pending[i] = 0
                    except KafkaException as e:  # coordinator moving: retried later
                        commit_errors.append(str(e))
            if at_kill is None and len(seen) >= n // 3 and commits_ok >= 3:
                at_kill = dict(best)
                c.kill(coord - 1)
            if at_kill is not None and 1 not in closed and len(seen) >= (2 * n) // 3:
                consumers[1].close()  # the survivor takes every partition: a rebalance
                closed.add(1)
        assert len(seen) == n, "%d of %d records; errors %r" % (len(seen), n, commit_errors[-5:])

        # The survivor reads on to the end of every partition and commits there, through the
        # new coordinator.
        state = {}

        def drained():
            m = consumers[0].poll(0.2)
            if m is not None and not m.error():
                pending[0] += 1
            asg = consumers[0].assignment()
            state["assignment"] = [tp.partition for tp in asg]
            if len(asg) < 3:
                return None
            pos = {tp.partition: tp.offset for tp in consumers[0].position(asg)}
            if any(pos[p] < ends[p] for p in range(3)):  # no position: nothing read since
                com = consumers[0].committed(asg, timeout=5)  # the rebalance: committed
                for tp in com:
                    pos[tp.partition] = max(pos[tp.partition], tp.offset)
            state["position"], state["ends"] = pos, ends
            return pos if all(pos[p] >= ends[p] for p in range(3)) else None
        try:
            wait_for("the survivor at the end of every partition", drained, timeout=40, step=0)
        except AssertionError as e:
            raise AssertionError("%s: %r; errors %r" % (e, state, commit_errors[-5:]))

        def final_commit():
            try:
                return consumers[0].commit(asynchronous=False)
            except KafkaException as e:
                if e.args[0].code() == KafkaError._NO_OFFSET:
                    return True  # nothing new since its last commit
                raise
        wait_for("a final commit", final_commit)
    finally:
        for i, cons in enumerate(consumers):
            if i not in closed:
                cons.close()
    new_coord = coordinator(c, group, exclude=coord)
    assert new_coord != coord
    # Nothing delivered after the kill lies below what was committed before it: the group went
    # on from its committed offsets, never from the beginning.
    for p, low in after_kill_min.items():
        if p in at_kill:
            assert low >= at_kill[p], (p, low, at_kill)
    final = committed(c, group, topic, 3)
    for p in range(3):
        assert final[p] >= ends[p], (final, ends)  # (>: a new leader's NOOP batch after them)
        assert final[p] >= at_kill.get(p, -1)
    # The killed node comes back as a follower and the commits are still there.
    c.restart(coord - 1)
    assert committed(c, group, topic, 3) == final


def test_idempotent_retry_across_leader_change(cluster3):
    c = cluster3
    topic = "cg-idem"
    create_topic(c, topic, 1)
    err, pid, epoch = wait_for("a producer id", lambda: (
        lambda r: r if r[0] == ERR_NONE else None)(init_producer_id(c.nodes[0])))

    def leader():
        md = AdminClient({"bootstrap.servers": c.bootstrap}).list_topics(topic, timeout=5)
        return md.topics[topic].partitions[0].leader
    lead = wait_for("a leader", lambda: (lambda x: x if x >= 1 else None)(leader()))
    b0, b1, b2 = (batch(pid, epoch, s, b"r%d" % s) for s in range(3))
    off0 = produce_raw(c.nodes[lead - 1], topic, b0)  # (after the leader's NOOP batch)
    assert off0[0] == 0 and off0[1] >= 0, off0
    off1 = produce_raw(c.nodes[lead - 1], topic, b1)
    assert off1 == (0, off0[1] + 1), (off0, off1)
    c.kill(lead - 1)
    new = wait_for("a new leader", lambda: (lambda x: x if x >= 1 and x != lead else None)(
        leader()), timeout=40)
    # The producer never saw the answer (say): it resends the same batch to the new leader,
    # which knows the sequence from the replicated log and answers the original offset.
    again = wait_for("the retried batch answered",
                     lambda: (lambda r: r if r[0] == 0 else None)(
                         produce_raw(c.nodes[new - 1], topic, b1)))
    assert again == off1, (again, off1)
    nxt = produce_raw(c.nodes[new - 1], topic, b2)
    assert nxt[0] == 0 and nxt[1] > off1[1], nxt
    cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": "it-idem",
                     "auto.offset.reset": "earliest", "enable.auto.commit": False})
    cons.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.monotonic() + 30
    try:
        while len(got) < 3 and time.monotonic() < deadline:
            m = cons.poll(0.5)
            if m is not None and not m.error():
                got.append((m.offset(), m.value()))
    finally:
        cons.close()
    assert [v for _, v in got] == [b"r0", b"r1", b"r2"], got
    assert got[1][0] == off1[1] and got[2][0] == nxt[1]


def batch(pid, epoch, seq, value):
    """A magic-2 idempotent batch with one record (producer id/epoch, base sequence seq)."""
    return record_batch([value], producer_id=pid, producer_epoch=epoch, base_sequence=seq)


def produce_raw(node, topic, b):
    """Produce v3 acks=all of one batch to partition 0: (error, base offset); (-1, -1) if the
    connection failed."""
    try:
        return ailurus_harness.produce_batch(node, topic, b)
    except OSError:
        return (-1, -1)


# ---- kafkajs (conftest's kafkajs fixture: the js/ directory, kafkajs installed) ----

def test_kafkajs_group_through_coordinator_failover(kafkajs, cluster3):
    c = cluster3
    topic, group, n = "cg-js", "cg-js-group", 600
    create_topic(c, topic, 3)
    produce(c, topic, [b"j%04d" % i for i in range(n)])
    ends = end_offsets(c, topic, 3)
    coord = coordinator(c, group)
    ctl = os.path.join(c.nodes[0].tmp, "js-phase")
    proc = subprocess.Popen(["node", "cluster_groups.js", c.bootstrap, topic, group, str(n),
                             ctl, json.dumps(ends)], cwd=kafkajs, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        # The script consumes a third, commits, writes "half" and waits: then the kill.
        wait_for("kafkajs at its first third", lambda: os.path.exists(ctl + ".half"),
                 timeout=60, step=0.2)
        c.kill(coord - 1)
        with open(ctl + ".go", "w") as f:
            f.write("go")
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, "kafkajs failed:\n%s\n%s" % (out.decode(), err.decode()[-3000:])
    res = json.loads(out.decode().strip().splitlines()[-1])
    assert res["distinct"] == n, res
    assert res["belowCommitted"] == 0, res  # nothing re-read below an offset committed before
    final = committed(c, group, topic, 3)
    assert all(final[p] >= ends[p] for p in range(3)), (final, ends)


# ---- kafka-python ----

def test_kafka_python_group_through_coordinator_failover(cluster3):
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    c = cluster3
    topic, group, n = "cg-kp", "cg-kp-group", 900
    create_topic(c, topic, 3)
    produce(c, topic, [b"k%04d" % i for i in range(n)])
    ends = end_offsets(c, topic, 3)
    coord = coordinator(c, group)
    cons = KafkaConsumer(topic, bootstrap_servers=c.bootstrap.split(","), group_id=group,
                         enable_auto_commit=False, auto_offset_reset="earliest",
                         session_timeout_ms=10000, heartbeat_interval_ms=500,
                         request_timeout_ms=15000, retry_backoff_ms=200,
                         metadata_max_age_ms=1000, max_poll_records=30)
    seen, at_kill, below, errors = set(), None, 0, []
    committed_best = {}
    deadline = time.monotonic() + 100
    try:
        while time.monotonic() < deadline:
            for tp, recs in cons.poll(timeout_ms=200).items():
                for r in recs:
                    seen.add(r.value)
                    if at_kill is not None and r.offset < at_kill.get(tp.partition, 0):
                        below += 1
            pos = {p: cons.position(KTP(topic, p)) for p in range(3)
                   if KTP(topic, p) in cons.assignment()}
            try:
                cons.commit()  # blocks until committed on a majority (or raises)
                for p, o in pos.items():
                    assert o >= committed_best.get(p, -1), (p, o, committed_best)
                    committed_best[p] = o
            except Exception as e:  # the coordinator moving: the next round commits
                errors.append(repr(e))
            if at_kill is None and len(seen) >= n // 3 and committed_best:
                at_kill = dict(committed_best)
                c.kill(coord - 1)
            if len(seen) == n and len(pos) == 3 and \
                    all(committed_best.get(p, -1) >= ends[p] for p in range(3)):
                break
    finally:
        cons.close(autocommit=False)
    assert at_kill is not None and len(seen) == n, (at_kill, len(seen), errors[-5:])
    assert below == 0, (below, at_kill)
    final = committed(c, group, topic, 3)
    assert all(final[p] >= ends[p] for p in range(3)), (final, ends, errors[-5:])
    assert coordinator(c, group, exclude=coord) != coord
