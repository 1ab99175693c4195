"""Controlled shutdown (issue 7): in cluster mode a node stopped with SIGTERM first hands its
Raft leaderships (partitions, and the controller's) to other in-sync replicas, then stops
(src/cluster/cluster_shutdown.c, controlled_shutdown_timeout_ms). Checked here:

  - a 3-node cluster, an RF-3 topic whose partitions led by the controller node X take an
    idempotent acks=all confluent_kafka producer; SIGTERM X: the other nodes' Metadata names
    other leaders for X's partitions and another controller while X's process is still
    running, X exits 0, and the producer saw no error and every record is stored once;
  - SIGTERM on a node whose peers were all killed: it exits 0 within the timeout (nothing to
    hand over to).
"""

import signal
import threading
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from ailurus_harness import wait_for

PARTS = 6
TIMEOUT_MS = 8000


def agreed_metadata(c, topic, nodes, timeout=60.0, pred=None):
    """{partition: (leader, isr count, first replica)} and the controller id that every node
    in nodes (indices) agrees on and that satisfies pred(parts, controller)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        seen = []
        for i in nodes:
            try:
                md = AdminClient({"bootstrap.servers": c.nodes[i].addr}).list_topics(
                    topic, timeout=5)
                t = md.topics[topic]
                parts = {p: (t.partitions[p].leader, len(t.partitions[p].isrs),
                             t.partitions[p].replicas[0] if t.partitions[p].replicas else None)
                         for p in t.partitions}
                seen.append((parts, md.controller_id))
            except Exception as e:  # not known there yet: ask again
                seen.append(("error", str(e)))
        last = seen
        if all(s == seen[0] for s in seen) and seen[0][0] != "error" and \
                (pred is None or pred(*seen[0])):
            return seen[0]
        time.sleep(0.2)
    raise AssertionError("no agreed metadata of %s in %.0fs: %r" % (topic, timeout, last))


def settled(parts, ctl):
    """Every partition led by its preferred leader with 3 in-sync replicas, a controller."""
    return len(parts) == PARTS and ctl >= 1 and \
        all(lead == first and nisr == 3 for lead, nisr, first in parts.values())


def stored(bootstrap, topic, parts):
    """{partition: [values]} of every record of the given partitions, read up to each high
    watermark (Raft control batches take offsets and hold no record)."""
    cons = Consumer({"bootstrap.servers": bootstrap, "group.id": "it-cs-check",
                     "enable.auto.commit": False, "auto.offset.reset": "earliest",
                     "enable.partition.eof": True, "fetch.wait.max.ms": 100})
    out = {}
    try:
        for p in parts:
            high = cons.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            got = out[p] = []
            if high <= 0:
                continue
            cons.assign([TopicPartition(topic, p, 0)])
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                m = cons.poll(0.5)
                if m is None:
                    continue
                if m.error():
                    assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                    break
                got.append(m.value().decode())
                if m.offset() >= high - 1:
                    break
            cons.unassign()
    finally:
        cons.close()
    return out


def exited_cleanly(node, rc):
    """After node's process exited with rc (from a SIGTERM): forget it, close its log, check
    it exited 0 with no error lines; returns its log."""
    node.proc = None
    node.log_file.close()
    assert rc == 0, "node %d exited %d after SIGTERM:\n%s" % (
        node.node_id, rc, node.log_text()[-4000:])
    node.check_log()
    return node.log_text()


class PacedProducer:
    """An idempotent acks=all librdkafka producer on a thread: one record every ~2 ms
    (value prefix + counter, partition chosen by part(i)), at most 200,000; counts what was
    acked and what failed. finish() stops it, flushes and checks every sent record was acked;
    check_stored() that the partitions hold exactly the acked records, once each."""

    def __init__(self, bootstrap, topic, prefix, part):
        self.topic, self.prefix, self.part = topic, prefix, part
        self.acked, self.errors, self.lock = [], [], threading.Lock()
        self.sent = 0
        self.stop = threading.Event()
        self.prod = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                              "enable.idempotence": True, "message.timeout.ms": 90000,
                              "linger.ms": 2})
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _cb(self, err, msg):
        with self.lock:
            if err:
                self.errors.append(err)
            else:
                self.acked.append(msg.value().decode())

    def _run(self):
        i = 0
        while not self.stop.is_set() and i < 200000:
            self.prod.produce(self.topic, value=b"%s%07d" % (self.prefix, i),
                              partition=self.part(i), on_delivery=self._cb)
            self.prod.poll(0)
            i += 1
            time.sleep(0.002)
        self.sent = i

    def count(self):
        with self.lock:
            return len(self.acked)

    def finish(self):
        self.stop.set()
        self.thread.join(30)
        left = self.prod.flush(120)
        assert left == 0, "%d undelivered" % left
        assert not self.errors, self.errors[:5]
        assert len(self.acked) == self.sent, (len(self.acked), self.sent)

    def check_stored(self, bootstrap, parts):
        disk = stored(bootstrap, self.topic, parts)
        values = [v for p in disk for v in disk[p]]
        assert len(values) == len(set(values)), "records stored twice"
        assert set(values) == set(self.acked), ("acked records missing or extra records",
                                                len(set(self.acked) - set(values)),
                                                len(set(values) - set(self.acked)))


def test_sigterm_hands_leaderships_over_before_exit(cluster_factory):
    c = cluster_factory(3, args=["--controlled-shutdown-timeout-ms", str(TIMEOUT_MS)])
    topic = "cs-topic"
    admin = AdminClient({"bootstrap.servers": c.bootstrap})  # alive until the result
    admin.create_topics([NewTopic(topic, PARTS, 3)], request_timeout=20)[topic].result(30)
    parts, ctl = agreed_metadata(c, topic, [0, 1, 2], pred=settled)
    # Settled for longer than a leader-balancer period (CR_BALANCE_MS, 10 s): no balancer move
    # of the partitions under the test.
    for _ in range(5):
        time.sleep(11)
        again = agreed_metadata(c, topic, [0, 1, 2], pred=settled)
        if again == (parts, ctl):
            break
        parts, ctl = again
    x = ctl
    xi = x - c.nodes[0].node_id
    mine = sorted(p for p, (lead, _, _) in parts.items() if lead == x)
    assert mine, "the controller (node %d) leads none of %r" % (x, parts)
    others = [i for i in range(3) if i != xi]

    pp = PacedProducer(c.bootstrap, topic, b"v", lambda i: mine[i % len(mine)])
    try:
        wait_for("records acknowledged before the shutdown", lambda: pp.count() >= 200,
                 timeout=60)
        # One long-lived client per other node, asked in a loop from before the signal.
        admins = [AdminClient({"bootstrap.servers": c.nodes[i].addr}) for i in others]
        for a in admins:  # X still leads them (so the others see the hand-over below)
            md = a.list_topics(topic, timeout=10)
            assert md.controller_id == x and \
                all(md.topics[topic].partitions[p].leader == x for p in mine), (
                    "leaderships moved before the signal", md.controller_id,
                    {p: md.topics[topic].partitions[p].leader for p in mine})
        proc = c.nodes[xi].proc
        # One poller per other node, asking from before the signal until X exited: whether
        # that node named other leaders of X's partitions and another controller while X ran.
        done = threading.Event()
        seen_moved = [False] * len(admins)

        def poll(k):
            while not done.is_set():
                try:
                    md = admins[k].list_topics(topic, timeout=2)
                    t = md.topics[topic]
                    moved = md.controller_id not in (x, -1) and all(
                        t.partitions[p].leader not in (x, -1) for p in mine)
                except Exception:  # a refreshing client: ask again
                    moved = False
                if moved and proc.poll() is None:  # the answer came while X ran
                    seen_moved[k] = True
                    return

        pollers = [threading.Thread(target=poll, args=(k,)) for k in range(len(admins))]
        for t in pollers:
            t.start()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(TIMEOUT_MS / 1000.0 + 30)
        finally:
            done.set()
            for t in pollers:
                t.join(30)
        moved_while_running = all(seen_moved)
        log = exited_cleanly(c.nodes[xi], proc.wait(TIMEOUT_MS / 1000.0 + 30))
        print("".join(line + "\n" for line in log.splitlines()
                      if "shutdown" in line or "signal" in line or "stopped" in line))
        assert moved_while_running, (
            "the other nodes did not name new leaders of %r and a new controller before node "
            "%d exited:\n%s" % (mine, x, log[-4000:]))
        assert "controlled shutdown: leads nothing" in log, log[-4000:]
        # keep producing a little through the new leaders, then finish
        at_stop = pp.count()
        wait_for("records acknowledged by the new leaders", lambda: pp.count() >= at_stop + 200,
                 timeout=60)
    finally:
        pp.stop.set()
    pp.finish()
    pp.check_stored(",".join(c.nodes[i].addr for i in others), mine)
    print("controlled shutdown of node %d: %d records, partitions %r moved while it ran"
          % (x, pp.count(), mine))


def test_sigterm_with_all_peers_down_exits_within_timeout(cluster_factory):
    timeout_ms = 4000
    c = cluster_factory(3, args=["--controlled-shutdown-timeout-ms", str(timeout_ms)])
    topic = "cs-alone"
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    admin.create_topics([NewTopic(topic, 3, 3)], request_timeout=20)[topic].result(30)
    wait_for("every node knows the topic", lambda: all(
        topic in AdminClient({"bootstrap.servers": b.addr}).list_topics(timeout=5).topics
        for b in c.nodes), timeout=30)
    c.kill(1)
    c.kill(2)
    node = c.nodes[0]
    t0 = time.monotonic()
    node.proc.send_signal(signal.SIGTERM)
    rc = node.proc.wait(timeout_ms / 1000.0 + 30)
    took = time.monotonic() - t0
    log = exited_cleanly(node, rc)
    print("".join(line + "\n" for line in log.splitlines()
                  if "shutdown" in line or "signal" in line or "stopped" in line))
    assert "controlled shutdown" in log, log[-4000:]
    print("alone: stopped %.1f s after SIGTERM" % took)


def test_second_sigterm_skips_the_wait(cluster_factory):
    """Peers frozen (SIGSTOP: connected, silent), so the hand-over cannot finish soon; a
    second SIGTERM stops the node at once."""
    c = cluster_factory(3, args=["--controlled-shutdown-timeout-ms", "120000"])
    node = c.nodes[0]
    frozen = [c.nodes[1].proc, c.nodes[2].proc]
    for p in frozen:
        p.send_signal(signal.SIGSTOP)
    try:
        node.proc.send_signal(signal.SIGTERM)
        wait_for("the hand-over started", lambda: "controlled shutdown: handing" in
                 node.log_text(), timeout=30)
        node.proc.send_signal(signal.SIGTERM)
        rc = node.proc.wait(60)  # far below the 120 s hand-over timeout
    finally:
        for p in frozen:
            p.send_signal(signal.SIGCONT)
    log = exited_cleanly(node, rc)
    assert "again: stopping now" in log, log[-4000:]


def test_stopping_node_is_handed_no_leadership(cluster_factory):
    """A node shutting down is handed no leadership back (cluster_announce_stopping): its
    pings tell the peers at once, whose balancers and hand-overs then skip it. With the leader
    balancer every 200 ms (AILURUS_BALANCE_MS), the preferred leader X of some partitions of
    an RF-3 topic gets SIGTERM under an idempotent acks=all producer: before the notice, the
    other nodes' balancers handed X's partitions straight back to X (their preferred leader,
    still ACTIVE and connected) while it was handing them away. Checked: X's log has no
    "leader in term" line after its hand-over started, the peers logged the notice, X exits
    0, the producer saw no error, every acknowledged record is stored once, and once X is
    restarted the peers clear the mark and X leads its preferred partitions again."""
    c = cluster_factory(3, args=["--controlled-shutdown-timeout-ms", str(TIMEOUT_MS)],
                        env={"AILURUS_BALANCE_MS": "200"})
    topic = "cs-nolead"
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    admin.create_topics([NewTopic(topic, PARTS, 3)], request_timeout=20)[topic].result(30)
    parts, ctl = agreed_metadata(c, topic, [0, 1, 2], pred=settled)
    # X: a node leading partitions as their preferred leader, not the controller (whose own
    # hand-over is test_sigterm_hands_leaderships_over_before_exit's subject)
    leaders = sorted({lead for lead, _, _ in parts.values()} - {ctl})
    assert leaders, parts
    x = leaders[0]
    xi = x - c.nodes[0].node_id
    mine = sorted(p for p, (lead, _, _) in parts.items() if lead == x)
    others = [i for i in range(3) if i != xi]

    pp = PacedProducer(c.bootstrap, topic, b"n", lambda i: i % PARTS)
    try:
        wait_for("records acknowledged before the shutdown", lambda: pp.count() >= 300,
                 timeout=60)
        proc = c.nodes[xi].proc
        proc.send_signal(signal.SIGTERM)
        log = exited_cleanly(c.nodes[xi], proc.wait(TIMEOUT_MS / 1000.0 + 30))
        start = log.find("controlled shutdown: handing leaderships")
        assert start >= 0, log[-4000:]
        regained = [line for line in log[start:].splitlines() if "leader in term" in line]
        assert not regained, "node %d was handed leaderships while shutting down:\n%s" % (
            x, "\n".join(regained[:10]))
        for i in others:
            assert "node %d is shutting down" % x in c.nodes[i].log_text(), i
        at_stop = pp.count()
        wait_for("records acknowledged after the shutdown", lambda: pp.count() >= at_stop + 200,
                 timeout=60)
    finally:
        pp.stop.set()
    pp.finish()
    pp.check_stored(",".join(c.nodes[i].addr for i in others), range(PARTS))
    # restarted, X pings "not stopping": the peers log it and the balancer gives X its
    # preferred leaderships back (a mark that stayed would exclude X for good)
    c.restart(xi)
    for i in others:
        wait_for("node %d saw node %d restart" % (c.nodes[i].node_id, x),
                 lambda: "node %d is no longer shutting down" % x in c.nodes[i].log_text(),
                 timeout=30)
    agreed_metadata(c, topic, [0, 1, 2], timeout=60,
                    pred=lambda parts, ctl: settled(parts, ctl) and
                    all(parts[p][0] == x for p in mine))
    print("node %d (preferred leader of %r) stopped and came back; %d records"
          % (x, mine, pp.count()))
