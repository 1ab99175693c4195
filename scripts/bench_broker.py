#!/usr/bin/env python3
"""bench_broker.py — the broker half of `make bench` (called by scripts/bench.sh).

Starts `ailurus start` on a fresh data directory on the same disk as the fio baselines, runs
`ailurus bench` scenarios against it and prints one line per figure, `<name> <value> <unit>`,
including the ratios to the baselines passed in (disk MB/s and fdatasync p99 from fio).

  bench_broker.py BIN DIR DISK_MBPS_FLUSH DISK_FSYNC_P99_US [SECONDS]

Scenarios (1 KiB records, acks=all, fsync on unless said otherwise):
  max throughput, 1 and 16 partitions (flat out); p99 ack and e2e p99.9 at 5%, 10% and 30% of
  the 1-partition max rate (open loop), with the round trip and the broker's own Produce and
  durable-write p99 (its Prometheus histograms, scraped before and after) and the client's CPU; smp=1 vs smp=2 broker with acks=1 over 16 partitions (not bound by
  fdatasync); idle RSS and start-to-ready; 10,000 partitions created, produced to, restarted.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

READY_RE = re.compile(r"ready: kafka=([0-9.]+):(\d+)")
ADMIN_RE = re.compile(r"admin API listening on ([0-9.]+):(\d+)")
BUCKET_RE = re.compile(r'^(\w+)_bucket\{(.*?),?le="([^"]+)"\} (\S+)$')


def scrape_histograms(admin_addr, timeout=5.0):
    """The broker's Prometheus histograms from GET http://ADMIN/metrics: {(name, labels):
    [(le, cumulative count), ...]} with le as float (inf for +Inf). None if unreachable."""
    import urllib.request
    try:
        with urllib.request.urlopen("http://%s/metrics" % admin_addr, timeout=timeout) as r:
            text = r.read().decode(errors="replace")
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        m = BUCKET_RE.match(line)
        if m:
            le = float("inf") if m.group(3) == "+Inf" else float(m.group(3))
            out.setdefault((m.group(1), m.group(2)), []).append((le, float(m.group(4))))
    return out


def hist_quantile(before, after, key, q):
    """Quantile q (0..1) of what a histogram counted between two scrapes, in the histogram's
    unit, interpolated linearly inside the bucket (power-of-two buckets: read it as +-50%).
    None if nothing was counted."""
    b = dict(before.get(key, []))
    buckets = [(le, c - b.get(le, 0.0)) for le, c in after.get(key, [])]
    if not buckets or buckets[-1][1] <= 0:
        return None
    total, lo, prev = buckets[-1][1], 0.0, 0.0
    for le, c in buckets:
        if c >= q * total:
            if le == float("inf"):
                return lo
            frac = (q * total - prev) / (c - prev) if c > prev else 1.0
            return lo + (le - lo) * frac
        lo, prev = le, c
    return lo


def hist_count(before, after, key):
    """Observations a histogram counted between two scrapes."""
    a, b = after.get(key, []), dict(before.get(key, []))
    return a[-1][1] - b.get(a[-1][0], 0.0) if a else 0.0


PRODUCE_LAT = ("ailurus_kafka_request_latency_seconds", 'api="Produce"')
WRITE_LAT = ("ailurus_storage_fsync_latency_seconds", "")
REACTOR_LAG = ("ailurus_reactor_lag_seconds", 'shard="0"')


def thread_run_delay_ns(pid, comm):
    """Time the thread of process pid named comm (e.g. shard-0) has spent runnable but waiting
    for a CPU (/proc/PID/task/TID/schedstat, 2nd field), in ns; None if not found."""
    base = "/proc/%d/task" % pid
    try:
        for tid in os.listdir(base):
            with open(os.path.join(base, tid, "comm")) as f:
                if f.read().strip() != comm:
                    continue
            with open(os.path.join(base, tid, "schedstat")) as f:
                return int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def kernel_thread_cpu_s(prefix):
    """CPU seconds (utime + stime) used so far by the kernel threads whose name starts with
    prefix, e.g. "kdamond" (DAMON's monitor: on this VM it samples the accessed bits of pages
    and, with the hypervisor's shadow page tables, makes the memory a process keeps mapped
    cost that process latency; BENCHMARKS.md, session 9). 0.0 when there is none."""
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                st = f.read()
        except OSError:
            continue
        comm = st[st.find("(") + 1:st.rfind(")")]
        if comm.startswith(prefix):
            fields = st.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def fig(name, value, unit):
    print("%s %s %s" % (name, value, unit), flush=True)


def cpu_seconds(pid):
    """utime + stime of process pid (all its threads), from /proc/PID/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fsync_p99_ms(root, seconds):
    """fio: 16 KiB O_DIRECT sequential writes + fdatasync each, for `seconds` in root; returns
    the fdatasync latency p99 in ms (0.0 if fio is missing or fails)."""
    out = os.path.join(root, "fio.json")
    cmd = ["fio", "--name=fio-probe", "--directory=" + root, "--ioengine=psync", "--direct=1",
           "--rw=write", "--bs=16384", "--fdatasync=1", "--size=512m", "--time_based=1",
           "--runtime=%d" % seconds, "--output-format=json", "--output=" + out]
    try:
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120,
                       check=True)
        with open(out) as f:
            j = json.load(f)["jobs"][0]
        return j["sync"]["lat_ns"]["percentile"]["99.000000"] / 1e6
    except (OSError, subprocess.SubprocessError, KeyError, ValueError):
        return 0.0
    finally:
        for name in ("fio.json", "fio-probe.0.0"):
            try:
                os.unlink(os.path.join(root, name))
            except OSError:
                pass


def stop_process(proc, grace=30.0):
    """SIGTERM to proc (a Popen, or None) if it still runs, SIGKILL after grace seconds;
    waits for it to exit."""
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Broker:
    def __init__(self, binary, data_dir, smp=1, extra=()):
        self.binary, self.data_dir, self.smp, self.extra = binary, data_dir, smp, list(extra)
        self.proc = None
        self.addr = None
        self.admin = None
        self.ready_ms = None

    def start(self, timeout=120.0):
        os.makedirs(self.data_dir, exist_ok=True)
        self.log = open(os.path.join(self.data_dir, "..", "broker-%d.log" % os.getpid()), "ab")
        cmd = [self.binary, "start", "--kafka-addr", "127.0.0.1:0", "--data-dir",
               self.data_dir, "--smp", str(self.smp), "--admin-addr", "127.0.0.1:0", "--rpc-addr", "127.0.0.1:0"] + self.extra
        t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("broker exited before ready")
            self.log.write(line)
            ma = ADMIN_RE.search(line.decode(errors="replace"))
            if ma:
                self.admin = "%s:%s" % (ma.group(1), ma.group(2))
            m = READY_RE.search(line.decode(errors="replace"))
            if m:
                self.ready_ms = (time.monotonic() - t0) * 1000.0
                self.addr = "%s:%s" % (m.group(1), m.group(2))
                # Keep draining its output so it never blocks on a full pipe.
                import threading
                threading.Thread(target=self._drain, daemon=True).start()
                return self
        raise RuntimeError("broker not ready in %.0f s" % timeout)

    def _drain(self):
        for line in self.proc.stdout:
            self.log.write(line)

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def cpu_seconds(self):
        """utime + stime of the broker process (all its threads)."""
        return cpu_seconds(self.proc.pid)

    def stop(self):
        stop_process(self.proc)
        self.proc = None


def bench(binary, addr, out_json, *args, timeout=300, broker=None):
    cmd = [binary, "bench", "--brokers", addr, "--quiet", "--json", out_json] + [str(a)
                                                                                 for a in args]
    sys.stderr.write("+ " + " ".join(cmd) + "\n")
    c0 = broker.cpu_seconds() if broker else 0.0
    h0 = scrape_histograms(broker.admin) if broker and broker.admin else None
    rd0 = thread_run_delay_ns(broker.proc.pid, "shard-0") if broker else None
    kd0 = kernel_thread_cpu_s("kdamond")
    rss0 = broker.rss_kib() if broker else 0
    t0 = time.monotonic()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    wall = time.monotonic() - t0
    rd1 = thread_run_delay_ns(broker.proc.pid, "shard-0") if rd0 is not None else None
    kd1 = kernel_thread_cpu_s("kdamond")
    h1 = scrape_histograms(broker.admin) if h0 is not None else None
    sys.stderr.write(r.stdout.decode(errors="replace"))
    with open(out_json) as f:
        s = json.load(f)
    if broker:
        # The broker's CPU over the whole bench run (warm-up included) per MB it acked, and the
        # machine's load: on a shared VM throughput follows the CPU the broker gets, while
        # its CPU per MB is its own.
        mb = s["produced_records"] * s.get("record_size", 1024) / 1e6
        s["broker_cpu_ms_per_mb"] = 1000.0 * (broker.cpu_seconds() - c0) / mb if mb else 0.0
        s["load_average"] = os.getloadavg()[0]
        # The broker's own view of the run (warm-up and drain included): Produce requests from
        # arrival to response queued, and its durable log writes, so the client's round trip
        # splits into broker time and the rest (scheduling both processes, loopback).
        # The machine's share: how late the shard's 5 ms lag probe ran (its own long turns and
        # waits for a CPU), and how long the shard's thread waited for a CPU per second.
        # The machine's memory monitor, and the broker's resident memory at the start.
        s["kdamond_cpu_ms_per_s"] = (kd1 - kd0) * 1000.0 / wall if wall > 0 else 0.0
        s["broker_rss_at_start_mib"] = rss0 / 1024.0
        if rd0 is not None and rd1 is not None and wall > 0:
            s["reactor_run_delay_ms_per_s"] = (rd1 - rd0) / 1e6 / wall
        for name, key in (("broker_produce_ms", PRODUCE_LAT), ("broker_write_ms", WRITE_LAT),
                          ("reactor_lag_ms", REACTOR_LAG)):
            if h0 is not None and h1 is not None and hist_count(h0, h1, key) > 0:
                s[name] = {q: 1000.0 * hist_quantile(h0, h1, key, v)
                           for q, v in (("p50", 0.5), ("p99", 0.99), ("p999", 0.999))}
    return s, r.returncode


def main():
    binary, root = sys.argv[1], sys.argv[2]
    disk_mbps, fsync_p99_us = float(sys.argv[3]), float(sys.argv[4])
    secs = float(sys.argv[5]) if len(sys.argv) > 5 else 10.0
    os.makedirs(root, exist_ok=True)
    data = os.path.join(root, "data")
    shutil.rmtree(data, ignore_errors=True)
    j = lambda n: os.path.join(root, n + ".json")  # noqa: E731

    b = Broker(binary, data).start()
    try:
        fig("broker_start_to_ready", "%.1f" % b.ready_ms, "ms")
        time.sleep(1.0)
        fig("broker_idle_rss", "%.1f" % (b.rss_kib() / 1024.0), "MiB")
        common = ["--record-size", 1024, "--acks", "all", "--warmup", 1, "--duration", secs]
        fig("load_average_at_start", "%.1f" % os.getloadavg()[0], "runnable")
        s1, _ = bench(binary, b.addr, j("max_p1"), "--topic", "max-p1", "--partitions", 1,
                      "--producers", 4, "--max-inflight", 32, "--batch-bytes", 65536, *common,
                      broker=b)
        fig("produce_max_p1", "%.2f" % s1["mb_per_s"], "MB/s")
        fig("produce_max_p1_broker_cpu", "%.2f" % s1["broker_cpu_ms_per_mb"], "ms/MB")
        fig("produce_max_p1_load_average", "%.1f" % s1["load_average"], "runnable")
        fig("produce_max_p1_rate", "%.0f" % s1["records_per_s"], "records/s")
        fig("produce_max_p1_ack_p99", "%.2f" % s1["ack_latency_ms"]["p99"], "ms")
        fig("produce_vs_disk_p1", "%.3f" % (s1["mb_per_s"] / disk_mbps), "ratio")
        s16, _ = bench(binary, b.addr, j("max_p16"), "--topic", "max-p16", "--partitions", 16,
                       "--producers", 4, "--max-inflight", 32, "--batch-bytes", 65536, *common,
                       broker=b)
        fig("produce_max_p16", "%.2f" % s16["mb_per_s"], "MB/s")
        fig("produce_max_p16_broker_cpu", "%.2f" % s16["broker_cpu_ms_per_mb"], "ms/MB")
        fig("produce_vs_disk_p16", "%.3f" % (s16["mb_per_s"] / disk_mbps), "ratio")
        # Latency under an open loop at 5%, 10% and 30% of that rate: where the ack latency
        # departs from the disk's fdatasync p99. One producer connection with a 1 ms linger and
        # batches of up to 256 KiB: the linger keeps batching below the fsync p99, and when
        # the round trip grows the batches grow with it (as librdkafka's do) instead of
        # records queueing behind the in-flight limit. The earlier set-up (4 connections,
        # 5 ms linger, 64 KiB batches, 16 in flight) queued in the client at once: its linger
        # alone exceeds 2x a 2 ms fsync p99, and 4 x 16 x 64 KiB in flight was less than one
        # round trip's worth of records at 100,000 records/s (BENCHMARKS.md, H8).
        for pct in (5, 10, 30):
            rate = max(100.0, pct / 100.0 * s1["records_per_s"])
            # The disk's fdatasync p99 right before this scenario (fio, 3 s, 16 KiB): on a
            # shared disk it moves several-fold within a minute, so the ratio to the
            # baseline measured minutes earlier is read next to this one.
            fs_now = fsync_p99_ms(root, 3)
            s30, _ = bench(binary, b.addr, j("rate%d" % pct), "--topic", "rate%d" % pct,
                           "--partitions", 1, "--producers", 1, "--max-inflight", 32,
                           "--batch-bytes", 262144, "--rate", "%.0f" % rate, "--linger", 1,
                           *common, broker=b)
            sfx = "%dpct" % pct
            ack99 = s30["ack_latency_ms"]["p99"]
            fig("rate%d_target" % pct, "%.0f" % rate, "records/s")
            fig("rate%d_achieved" % pct, "%.0f" % s30["records_per_s"], "records/s")
            fig("p99_ack_at_" + sfx, "%.2f" % ack99, "ms")
            # Where the ack time goes: client side (linger, queueing) vs round trip, and the
            # round trip vs the broker's own Produce time and its durable writes.
            fig("p99_send_delay_at_" + sfx, "%.2f" % s30["send_delay_ms"]["p99"], "ms")
            fig("p99_request_rtt_at_" + sfx, "%.2f" % s30["request_rtt_ms"]["p99"], "ms")
            # Once per request, like the broker's Produce histogram below (per record, slow
            # requests weigh more: they carry the records that piled up while they waited).
            if "request_rtt_per_request_ms" in s30:
                fig("p99_request_rtt_per_request_at_" + sfx,
                    "%.2f" % s30["request_rtt_per_request_ms"]["p99"], "ms")
            for name, key in (("broker_produce", "broker_produce_ms"),
                              ("broker_write", "broker_write_ms")):
                if key in s30:
                    fig("p99_%s_at_%s" % (name, sfx), "%.2f" % s30[key]["p99"], "ms")
            if "reactor_lag_ms" in s30:
                fig("p99_reactor_lag_at_" + sfx, "%.2f" % s30["reactor_lag_ms"]["p99"], "ms")
                fig("p999_reactor_lag_at_" + sfx, "%.2f" % s30["reactor_lag_ms"]["p999"], "ms")
            if "reactor_run_delay_ms_per_s" in s30:
                fig("reactor_run_delay_at_" + sfx, "%.1f" % s30["reactor_run_delay_ms_per_s"],
                    "ms/s")
            if "broker_write_ms" in s30 and s30["broker_write_ms"]["p99"] > 0:
                fig("p99_ack_vs_broker_write_at_" + sfx,
                    "%.2f" % (ack99 / s30["broker_write_ms"]["p99"]), "ratio")
            if pct == 30:
                fig("disk_fdatasync_p99", "%.2f" % (fsync_p99_us / 1000.0), "ms")
                fig("p99_ack_vs_fsync", "%.2f" % (ack99 * 1000.0 / fsync_p99_us), "ratio")
            else:
                fig("p99_ack_vs_fsync_at_" + sfx, "%.2f" % (ack99 * 1000.0 / fsync_p99_us),
                    "ratio")
            if fs_now > 0:
                fig("disk_fdatasync_p99_before_" + sfx, "%.2f" % fs_now, "ms")
                fig("p99_ack_vs_fsync_same_minute_at_" + sfx, "%.2f" % (ack99 / fs_now),
                    "ratio")
            fig("e2e_p999_at_" + sfx, "%.2f" % s30["e2e_latency_ms"]["p999"], "ms")
            # The generator's own share of the tail: its loop's lateness for its timers and
            # its wait for a CPU (it shares the 2 cores with the broker).
            if "client_lag_ms" in s30:
                fig("p99_client_lag_at_" + sfx, "%.2f" % s30["client_lag_ms"]["p99"], "ms")
            if "client_run_delay_ms_per_s" in s30:
                fig("client_run_delay_at_" + sfx, "%.1f" % s30["client_run_delay_ms_per_s"],
                    "ms/s")
            fig("client_cpu_at_" + sfx, "%.2f" % s30.get("client_cpu_us_per_record", 0),
                "us/record")
            fig("load_average_at_" + sfx, "%.1f" % s30["load_average"], "runnable")
            fig("kdamond_cpu_at_" + sfx, "%.1f" % s30["kdamond_cpu_ms_per_s"], "ms/s")
            fig("broker_rss_before_" + sfx, "%.0f" % s30["broker_rss_at_start_mib"], "MiB")
            if pct == 30:
                fig("e2e_consumed_equals_produced",
                    int(s30["consumed_records"] == s30["produced_records"]), "bool")
    finally:
        b.stop()

    # Shard scaling with a workload not bound by fdatasync: acks=1 (the leader answers after
    # its append is queued, before the flush) over 16 partitions, flat out, 1 KiB records.
    sc = {}
    for smp in (1, 2):
        shutil.rmtree(data, ignore_errors=True)
        b = Broker(binary, data, smp=smp).start()
        try:
            s, _ = bench(binary, b.addr, j("smp%d" % smp), "--topic", "scale", "--partitions", 16,
                         "--producers", 4, "--max-inflight", 16, "--batch-bytes", 65536,
                         "--acks", 1, "--record-size", 1024, "--consumers", 0, "--warmup", 1,
                         "--duration", max(3.0, secs / 2), "--smp", 1, broker=b)
            sc[smp] = s["mb_per_s"]
            fig("produce_acks1_smp%d" % smp, "%.2f" % s["mb_per_s"], "MB/s")
            fig("produce_acks1_smp%d_broker_cpu" % smp, "%.2f" % s["broker_cpu_ms_per_mb"],
                "ms/MB")
            fig("produce_acks1_smp%d_load_average" % smp, "%.1f" % s["load_average"],
                "runnable")
        finally:
            b.stop()
    fig("shard_scaling", "%.2f" % (sc[2] / sc[1] if sc[1] else 0), "ratio")

    # 10,000 partitions: create, produce, restart, memory.
    shutil.rmtree(data, ignore_errors=True)
    b = Broker(binary, data).start()
    try:
        rss0 = b.rss_kib()
        t0 = time.monotonic()
        s, rc = bench(binary, b.addr, j("p10k_create"), "--topic", "p10k", "--partitions", 10000,
                      "--rate", 1, "--duration", 0.5, "--warmup", 0, "--consumers", 0)
        fig("partitions_10k_create", "%.1f" % (time.monotonic() - t0), "s")
        # Every produced-to partition preallocates its segment (32 MiB fallocate step), so the
        # produce step touches the first PRODUCE_PARTS partitions only (see BENCHMARKS.md).
        parts = int(os.environ.get("PRODUCE_PARTS", "100"))
        s, rc = bench(binary, b.addr, j("p10k_produce"), "--topic", "p10k", "--partitions",
                      parts, "--batch-bytes", 1024, "--record-size", 1024, "--rate", parts * 20,
                      "--duration", 1, "--warmup", 0, "--consumers", 1)
        fig("partitions_10k_produced_to", parts, "partitions")
        fig("partitions_10k_produce_ok",
            int(rc == 0 and s["errors"] == 0 and s["consumed_records"] == s["produced_records"]),
            "bool")
        rss = b.rss_kib()
        fig("partitions_10k_rss", "%.1f" % (rss / 1024.0), "MiB")
        fig("partitions_10k_rss_per_partition", "%.1f" % ((rss - rss0) / 10000.0), "KiB")
        b.stop()
        b.start()
        fig("partitions_10k_restart_to_ready", "%.1f" % b.ready_ms, "ms")
        fig("partitions_10k_rss_after_restart", "%.1f" % (b.rss_kib() / 1024.0), "MiB")
        s, rc = bench(binary, b.addr, j("p10k_after"), "--topic", "p10k", "--partitions",
                      parts, "--batch-bytes", 1024, "--rate", parts * 10, "--duration", 1,
                      "--warmup", 0, "--consumers", 1)
        fig("partitions_10k_after_restart_ok", int(rc == 0 and s["errors"] == 0), "bool")
    finally:
        b.stop()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
