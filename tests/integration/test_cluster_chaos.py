"""Chaos on a 3-node cluster whose nodes live in their own network namespaces (issue 7).

Each node runs in a namespace of its own (`ip netns exec`), joined to the root namespace by a
veth pair whose host end sits on a bridge; clients run in the root namespace and reach the nodes
over the bridge, the nodes reach each other the same way. While an idempotent acks=all producer
writes numbered records and a consumer group reads them, the test repeatedly
  - cuts the link of the node leading a partition (its veth goes down: it is isolated from the
    other nodes and from the clients), waits, heals it;
  - SIGKILLs a partition leader and restarts it;
  - delays the link of a partition leader, and of a follower, in both directions (an egress
    qdisc on the host end of its veth and one on the node's end): `tc netem delay` where the
    kernel has sch_netem, else a slow queueing link, `tbf rate R burst 32kbit latency 400ms`
    with R = min(1 mbit/s, half the link's measured traffic in that direction): the bucket's
    queue stays full, so packets wait up to 400 ms in it (tbf drops beyond that). Every kernel
    with CONFIG_NET_SCH_TBF has it (this CI kernel has no netem). The round checks the tbf did
    make packets wait, and reports what the delay did: the TCP connect time to the node, the
    acknowledged-records rate during the delay and after it as a ratio of the rate just before,
    leadership changes, and the Raft terms of the topic's partitions (from the nodes' logs: an
    increase is an election).
Afterwards every acknowledged record must be in the log exactly once, at the offset it was
acknowledged with. Rounds: AILURUS_CHAOS_ROUNDS (default 4: cut, kill, delay of a leader, delay
of a follower, then random kinds; a longer soak is one variable away). Skips, with the reason,
where network namespaces cannot be created (not root).

Every wait is bounded in time; the namespaces, links and bridge are removed in all cases."""

import os
import random
import re
import socket
import statistics
import subprocess
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from ailurus_harness import Broker

ROUNDS = int(os.environ.get("AILURUS_CHAOS_ROUNDS", "4"))
TOPIC = "chaos"
PARTITIONS = 2


def sh(*cmd, check=True):
    r = subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=20)
    if check and r.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (" ".join(cmd), r.returncode, r.stdout))
    return r


class NetnsCluster:
    """3 nodes, node i (id i+1) in namespace ns[i] at 10.A.B.(10+i) on a bridge whose root side
    is 10.A.B.1. Interface and namespace names carry the pid so parallel runs do not clash."""

    def __init__(self, n=3):
        tag = os.getpid() % 100000
        self.bridge = "alb%d" % tag
        self.ns = ["al%dn%d" % (tag, i) for i in range(n)]
        self.veth = ["alh%d_%d" % (tag, i) for i in range(n)]
        a, b = 64 + (tag // 250) % 64, tag % 250
        self.net = "10.%d.%d" % (a, b)
        self.ips = ["%s.%d" % (self.net, 10 + i) for i in range(n)]
        self.made = []  # teardown actions, newest first
        self.nodes = []
        self.netem = False

    def setup(self):
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        self.made.append(("ip", "link", "del", self.bridge))
        sh("ip", "addr", "add", self.net + ".1/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for i, ns in enumerate(self.ns):
            sh("ip", "netns", "add", ns)
            self.made.append(("ip", "netns", "del", ns))
            peer = "alp%d" % i
            sh("ip", "link", "add", self.veth[i], "type", "veth", "peer", "name", peer,
               "netns", ns)
            self.made.append(("ip", "link", "del", self.veth[i]))
            sh("ip", "link", "set", self.veth[i], "master", self.bridge)
            sh("ip", "link", "set", self.veth[i], "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "link", "set", peer, "name", "eth0")
            sh("ip", "-n", ns, "addr", "add", self.ips[i] + "/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
        self.made.reverse()
        probe = sh("tc", "qdisc", "add", "dev", self.veth[0], "root", "netem", "delay", "1ms",
                   check=False)
        if probe.returncode == 0:
            sh("tc", "qdisc", "del", "dev", self.veth[0], "root", check=False)
            self.netem = True
        else:
            probe = sh("tc", "qdisc", "add", "dev", self.veth[0], "root", "tbf", "rate", "1mbit",
                       "burst", "32kbit", "latency", "400ms", check=False)
            assert probe.returncode == 0, (
                "this kernel has neither sch_netem nor sch_tbf: the delay rounds cannot run "
                "(enable CONFIG_NET_SCH_NETEM or CONFIG_NET_SCH_TBF): %s" % probe.stdout)
            sh("tc", "qdisc", "del", "dev", self.veth[0], "root", check=False)
        seeds = "%s:33145" % self.ips[0]
        for i, ns in enumerate(self.ns):
            b = Broker(args=["--node-id", str(i + 1), "--seed-servers", seeds,
                             "--rpc-addr", "%s:33145" % self.ips[i]],
                       host=self.ips[i], port=9092, wrap=["ip", "netns", "exec", ns],
                       ready_timeout=60)
            b.node_id = i + 1
            self.nodes.append(b)
        return self

    def start_all(self):
        errors = []

        def run(b):
            try:
                b.start()
            except BaseException as e:
                errors.append(e)
        threads = [threading.Thread(target=run, args=(b,)) for b in self.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        if errors:
            raise errors[0]

    def bootstrap(self):
        return ",".join(b.addr for b in self.nodes)

    def link(self, i, up):
        sh("ip", "link", "set", self.veth[i], "up" if up else "down")

    def _qdisc_cmds(self, i):
        """The two tc prefixes for node i's link: the host end (egress = towards the node) and
        the node's end inside its namespace (egress = from the node)."""
        return [["tc"], ["ip", "netns", "exec", self.ns[i], "tc"]], [self.veth[i], "eth0"]

    def link_rates(self, i, seconds=1.0):
        """Bytes/s over node i's veth measured for `seconds`: (towards the node, from it)."""
        base = "/sys/class/net/%s/statistics/" % self.veth[i]

        def read():
            with open(base + "tx_bytes") as f_tx, open(base + "rx_bytes") as f_rx:
                return int(f_tx.read()), int(f_rx.read())
        a = read()
        time.sleep(seconds)
        b = read()
        return (b[0] - a[0]) / seconds, (b[1] - a[1]) / seconds

    def delay(self, i, on, rates=None):
        """Delays node i's link in both directions, or removes the delay. netem where the
        kernel has it; else tbf at min(1 mbit/s, half the link's measured rate in that direction
        (rates: bytes/s towards the node, from it), at least 64 kbit/s): the bucket's queue then
        stays full and packets wait up to the 400 ms latency bound (tbf drops beyond it).
        Returns the qdisc description."""
        prefixes, devs = self._qdisc_cmds(i)
        desc = []
        for k, (pre, dev) in enumerate(zip(prefixes, devs)):
            if not on:
                sh(*(pre + ["qdisc", "del", "dev", dev, "root"]), check=False)
                continue
            if self.netem:
                what = ["netem", "delay", "40ms", "10ms"]
            else:
                kbit = 1000
                if rates is not None:
                    kbit = max(64, min(1000, int(rates[k] * 8 / 1000 / 2)))
                what = ["tbf", "rate", "%dkbit" % kbit, "burst", "32kbit", "latency", "400ms"]
            sh(*(pre + ["qdisc", "add", "dev", dev, "root"] + what))
            desc.append(("to the node: " if k == 0 else "from it: ") + " ".join(what))
        return "; ".join(desc)

    def qdisc_stats(self, i):
        """(sent packets, dropped packets, overlimits = packets that had to wait) summed over
        both ends' root qdiscs of node i."""
        sent = dropped = over = 0
        prefixes, devs = self._qdisc_cmds(i)
        for pre, dev in zip(prefixes, devs):
            out = sh(*(pre + ["-s", "qdisc", "show", "dev", dev]), check=False).stdout
            m = re.search(r"Sent \d+ bytes (\d+) pkt \(dropped (\d+), overlimits (\d+)", out)
            if m:
                sent += int(m.group(1))
                dropped += int(m.group(2))
                over += int(m.group(3))
        return sent, dropped, over

    def terms(self, topic):
        """(partition -> highest Raft term any node's log names for topic/partition, partition ->
        how many leadership hand-overs the preferred-leader balancer logged)."""
        pat = re.compile(r"\b%s/(\d+): \w+ in term (\d+)" % re.escape(topic))
        bal = re.compile(r"partition %s/(\d+): balancer: hand leadership" % re.escape(topic))
        terms, handovers = {}, {}
        for b in self.nodes:
            text = b.log_text()
            for m in pat.finditer(text):
                p, t = int(m.group(1)), int(m.group(2))
                terms[p] = max(terms.get(p, 0), t)
            for m in bal.finditer(text):
                handovers[int(m.group(1))] = handovers.get(int(m.group(1)), 0) + 1
        return terms, handovers

    def teardown(self):
        for b in self.nodes:
            if b.proc is not None:
                try:
                    b.kill()
                except AssertionError:
                    pass
        for cmd in self.made:
            sh(*cmd, check=False)


def namespaces_allowed():
    name = "alchk%d" % os.getpid()
    try:
        r = sh("ip", "netns", "add", name, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        return "cannot run ip: %s" % e
    if r.returncode != 0:
        return "network namespaces not permitted here: %s" % r.stdout.strip()
    sh("ip", "netns", "del", name, check=False)
    return None


def leaders(bootstrap, topic):
    """partition -> leader node id (-1 unknown), from any node that answers."""
    try:
        md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=5)
    except Exception:
        return {}
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return {}
    return {p: pm.leader for p, pm in t.partitions.items()}


class Workload:
    """An idempotent acks=all producer writing numbered records round-robin over the
    partitions, recording every acknowledgement, and a consumer group reading along."""

    def __init__(self, bootstrap):
        self.bootstrap = bootstrap
        self.acked = {}  # value -> (partition, offset)
        self.errors = []
        self.sent = 0
        self.consumed = 0
        self.fatal = []  # fatal producer errors
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def _delivered(self, err, msg):
        with self.lock:
            if err is not None:
                self.errors.append(err)
            else:
                self.acked[msg.value()] = (msg.partition(), msg.offset())

    def _client_error(self, err):
        """librdkafka's error callback: a fatal error (the idempotent producer gave up: its
        reason says why) is kept for the assertions; the rest are transient."""
        if err.fatal():
            with self.lock:
                self.fatal.append(err)

    def produce(self):
        conf = {"bootstrap.servers": self.bootstrap, "enable.idempotence": True,
                "acks": "all", "linger.ms": 5, "message.timeout.ms": 120000,
                "retry.backoff.ms": 100, "topic.metadata.refresh.interval.ms": 1000,
                "error_cb": self._client_error}
        if os.environ.get("AILURUS_CHAOS_DEBUG"):
            conf["debug"] = os.environ["AILURUS_CHAOS_DEBUG"]
        p = Producer(conf)
        i = 0
        while not self.stop.is_set():
            try:
                p.produce(TOPIC, value=b"r%08d" % i, partition=i % PARTITIONS,
                          on_delivery=self._delivered)
                i += 1
            except BufferError:
                p.poll(0.05)
                continue
            except KafkaException as e:  # fatal: the producer is unusable (error_cb has why)
                with self.lock:
                    self.fatal.append(e.args[0])
                break
            if i % 50 == 0:
                p.poll(0.01)
                time.sleep(0.02)
        self.sent = i
        self.unflushed = p.flush(150)

    def consume(self):
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "chaos-group",
                      "auto.offset.reset": "earliest", "enable.auto.commit": True,
                      "session.timeout.ms": 10000, "heartbeat.interval.ms": 1000,
                      "topic.metadata.refresh.interval.ms": 1000})
        c.subscribe([TOPIC])
        try:
            while not self.stop.is_set():
                m = c.poll(0.2)
                if m is not None and not m.error():
                    self.consumed += 1
        finally:
            c.close()

    def acked_count(self):
        with self.lock:
            return len(self.acked)


def connect_ms(host, port):
    """Milliseconds to open a TCP connection (one SYN/SYN-ACK round trip through both ends'
    qdiscs), None if it failed within 3 s."""
    t0 = time.monotonic()
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError:
        return None
    return (time.monotonic() - t0) * 1000.0


def median_ms(samples):
    ok = [x for x in samples if x is not None]
    return "%.1f ms" % statistics.median(ok) if ok else "none answered"


def settle(bootstrap, seconds):
    """Waits (bounded) until every partition of the topic is led by its preferred replica (the
    first; the leader balancer moves leadership there every 10 s) with all 3 in sync, so that
    no balancer hand-over falls into a delay round. Returns whether it got there."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(TOPIC, timeout=5)
            t = md.topics.get(TOPIC)
            if t is not None and t.error is None and len(t.partitions) == PARTITIONS and all(
                    pm.replicas and pm.leader == pm.replicas[0] and len(pm.isrs) == 3
                    for pm in t.partitions.values()):
                return True
        except Exception:
            pass
        time.sleep(0.5)
    return False


def delay_round(cl, w, victim, role, hold):
    """One delay round on node index victim (role: 'leader' or 'follower', for the report):
    measures the acked rate for `hold` seconds before, during and after the delay, the connect
    time, leadership changes and Raft terms. Returns the report line."""
    node = cl.nodes[victim]
    before_rtt = [connect_ms(node.host, node.port) for _ in range(3)]
    terms0 = cl.terms(TOPIC)
    leaders0 = leaders(cl.bootstrap(), TOPIC)
    a0, t0 = w.acked_count(), time.monotonic()
    time.sleep(hold)
    a1, t1 = w.acked_count(), time.monotonic()
    rates = cl.link_rates(victim)
    qdisc = cl.delay(victim, True, rates)
    q0 = cl.qdisc_stats(victim)
    rtt, seen_leaders = [], [leaders0]
    t_end = time.monotonic() + hold
    try:
        while time.monotonic() < t_end:
            rtt.append(connect_ms(node.host, node.port))
            ld = leaders(cl.bootstrap(), TOPIC)
            if ld and ld != seen_leaders[-1]:
                seen_leaders.append(ld)
            time.sleep(0.5)
        a2, t2 = w.acked_count(), time.monotonic()
        q1 = cl.qdisc_stats(victim)
    finally:
        cl.delay(victim, False)
    # netem delays every packet; tbf only makes a packet wait when the bucket is empty, which
    # its rate (below the measured traffic) guarantees: check it did.
    assert cl.netem or q1[2] - q0[2] > 0, (
        "the tbf delay on node %d never made a packet wait (link rates %r B/s): %r"
        % (victim + 1, rates, cl.qdisc_stats(victim)))
    t2b = time.monotonic()
    a2b = w.acked_count()
    time.sleep(hold)
    a3, t3 = w.acked_count(), time.monotonic()
    terms1 = cl.terms(TOPIC)
    base = max(a1 - a0, 1) / (t1 - t0)  # acked records/s before the delay
    elections = {p: terms1[0].get(p, 0) - terms0[0].get(p, 0) for p in terms1[0]
                 if terms1[0].get(p, 0) != terms0[0].get(p, 0)}
    handovers = {p: terms1[1].get(p, 0) - terms0[1].get(p, 0) for p in terms1[1]
                 if terms1[1].get(p, 0) != terms0[1].get(p, 0)}
    return ("delay of %s node %d for %.0f s (link %.0f kB/s to the node, %.0f kB/s from it; %s): "
            "connect time %s (before: %s); acked records/s during %.2fx and after %.2fx the "
            "rate before (%.0f/s); qdisc packets %d, waited %d, dropped %d; leaders %s; "
            "term increases %s, of which balancer hand-overs %s"
            % (role, victim + 1, hold, rates[0] / 1000, rates[1] / 1000, qdisc, median_ms(rtt),
               median_ms(before_rtt), (a2 - a1) / (t2 - t1) / base,
               (a3 - a2b) / (t3 - t2b) / base, base,
               q1[0] - q0[0], q1[2] - q0[2], q1[1] - q0[1],
               " -> ".join(repr(x) for x in seen_leaders), elections or "none",
               handovers or "none"))


def wait_progress(w, more, seconds):
    """Waits (bounded) until `more` additional records are acknowledged; returns whether."""
    target = w.acked_count() + more
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if w.acked_count() >= target:
            return True
        time.sleep(0.1)
    return False


def read_all(bootstrap):
    """partition -> {offset: value} for every record up to each partition's high watermark."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "chaos-verify",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    out = {}
    try:
        for p in range(PARTITIONS):
            deadline = time.monotonic() + 30
            hw = None
            last = None
            while hw is None and time.monotonic() < deadline:
                try:
                    hw = c.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=5)[1]
                except Exception as e:
                    last = e
                    time.sleep(0.5)
            assert hw is not None, "no high watermark for partition %d: %r; leaders %r" % (
                p, last, leaders(bootstrap, TOPIC))
            got = {}
            c.assign([TopicPartition(TOPIC, p, 0)])
            deadline = time.monotonic() + 90
            while len(got) < hw and time.monotonic() < deadline:
                m = c.poll(0.5)
                if m is None or m.error():
                    continue
                got[m.offset()] = m.value()
                if m.offset() >= hw - 1:
                    break
            out[p] = got
    finally:
        c.close()
    return out


def test_chaos_in_namespaces():
    why = namespaces_allowed()
    if why:
        pytest.skip(why)
    cl = NetnsCluster()
    w = None
    threads = []
    try:
        cl.setup()
        cl.start_all()
        admin = AdminClient({"bootstrap.servers": cl.bootstrap()})
        fs = admin.create_topics([NewTopic(TOPIC, PARTITIONS, 3)], request_timeout=30)
        fs[TOPIC].result(timeout=40)
        w = Workload(cl.bootstrap())
        threads = [threading.Thread(target=w.produce), threading.Thread(target=w.consume)]
        for t in threads:
            t.start()
        assert wait_progress(w, 200, 60), "no progress before the chaos: %d acked, errors %r" % (
            w.acked_count(), w.errors[:3])
        rng = random.Random(int(os.environ.get("AL_TEST_SEED", str(int(time.time())))))
        actions, reports = [], []
        kinds = ["cut", "kill", "delay-leader", "delay-follower"]
        for rnd in range(ROUNDS):
            kind = kinds[rnd] if rnd < len(kinds) else rng.choice(kinds)
            ld = leaders(cl.bootstrap(), TOPIC)
            known = [n for n in ld.values() if n and n > 0]
            victim = (rng.choice(known) if known else rng.randint(1, 3)) - 1
            actions.append((kind, victim + 1))
            if kind == "cut":
                cl.link(victim, False)
                time.sleep(rng.uniform(3, 6))
                cl.link(victim, True)
            elif kind == "kill":
                cl.nodes[victim].kill()
                time.sleep(rng.uniform(1, 3))
                cl.nodes[victim].start()
            else:
                settled = settle(cl.bootstrap(), 30)
                ld = leaders(cl.bootstrap(), TOPIC)
                known = [n for n in ld.values() if n and n > 0]
                lead_nodes = sorted(set(known))
                others = [i for i in range(len(cl.nodes)) if i + 1 not in known]
                if kind == "delay-leader" and lead_nodes:
                    victim = rng.choice(lead_nodes) - 1
                elif kind == "delay-follower" and others and known:
                    victim = rng.choice(others)
                actions[-1] = (kind, victim + 1)
                role = "leader" if victim + 1 in known else "follower"
                if not settled:
                    print("leaders not on their preferred replicas within 30 s: %r" % ld)
                reports.append(delay_round(cl, w, victim, role, 5.0))
                print(reports[-1])
            assert wait_progress(w, 100, 90), (
                "no progress after %s of node %d: %d acked, last errors %r, fatal %r"
                % (kind, victim + 1, w.acked_count(), w.errors[-3:], w.fatal[:3]))
        print("chaos actions: %r (delay by %s)" % (actions, "netem" if cl.netem else
                                                    "tbf: this kernel has no sch_netem"))
        w.stop.set()
        for t in threads:
            t.join(200)
        assert not any(t.is_alive() for t in threads), "workload threads did not end"
        assert w.unflushed == 0, "%d records never acknowledged" % w.unflushed
        fatal = [e for e in w.errors if e.fatal() or not e.retriable()] + w.fatal
        assert not fatal, "non-retriable producer errors: %r" % fatal[:5]
        logs = read_all(cl.bootstrap())
        seen = {}
        for p, recs in logs.items():
            for off, val in recs.items():
                assert val not in seen, "%r stored twice: %r and %r" % (val, seen[val], (p, off))
                seen[val] = (p, off)
        # librdkafka acknowledges a batch without an offset when a later batch of the same
        # producer succeeds after this one got a retriable error (its "implicitly acked by
        # subsequent batch success": the sequence numbers prove it was stored). Such a batch
        # must be in the log exactly once, at some offset.
        implicit = [v for v, po in w.acked.items() if po[1] is None]
        lost = [v for v in implicit if v not in seen]
        assert not lost, "%d implicitly acknowledged records are not in the log, e.g. %r" % (
            len(lost), lost[:3])
        for v in implicit:
            del w.acked[v]
        missing = [(v, po) for v, po in w.acked.items() if seen.get(v) != po]
        assert not missing, "%d acknowledged records not at their offsets, e.g. %r" % (
            len(missing), missing[:5])
        print("chaos: %d records acknowledged, all present exactly once at their offsets (and %d "
              "acknowledged implicitly, present exactly once); %d consumed by the group"
              % (len(w.acked), len(implicit), w.consumed))
        for b in cl.nodes:
            b.stop()
            b.remove_files()
    finally:
        if w is not None:
            w.stop.set()
            for t in threads:
                t.join(60)
        cl.teardown()
