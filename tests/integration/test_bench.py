"""test_bench.py — `ailurus bench` against the fixture broker: a short flat-out run and a short
open-loop run with keys, compression and two client threads; the JSON summary has every field,
every acknowledged record was consumed, latencies are ordered (p50 <= p99 <= max) and positive,
the open-loop run reached its target rate, and the topic really holds the records (checked
independently with a raw ListOffsets through kcat when installed)."""
import json
import shutil
import subprocess

from ailurus_harness import binary

FIELDS = ["brokers", "topic", "partitions", "producers", "consumers", "record_size", "acks",
          "compression", "rate", "smp", "warmup_s", "duration_s", "produced_records",
          "produced_records_window", "consumed_records", "consumed_records_window",
          "produce_requests", "errors", "failed", "records_per_s", "mb_per_s",
          "consume_records_per_s", "ack_latency_ms", "e2e_latency_ms"]


def run_bench(broker, tmp_path, name, *args):
    out = tmp_path / (name + ".json")
    cmd = [binary(), "bench", "--brokers", broker.addr, "--topic", name, "--json", str(out),
           "--warmup", "0.5", "--duration", "2"] + [str(a) for a in args]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=90)
    text = r.stdout.decode(errors="replace")
    assert r.returncode == 0, text
    assert "ailurus bench summary" in text
    assert "produced" in text.splitlines()[1]  # the progress line
    return json.loads(out.read_text()), text


def check_summary(s, topic, partitions):
    for f in FIELDS:
        assert f in s, f
    assert s["topic"] == topic and s["partitions"] == partitions
    assert s["failed"] is False and s["errors"] == 0
    assert s["produced_records"] > 0
    assert s["consumed_records"] == s["produced_records"]
    assert 0 < s["produced_records_window"] <= s["produced_records"]
    assert s["consumed_records_window"] == s["produced_records_window"]
    for h in ("ack_latency_ms", "e2e_latency_ms"):
        lat = s[h]
        assert lat["count"] == s["produced_records_window"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"] + 1e-9
        assert lat["max"] < 30000
    # End to end includes the acknowledgement path, so its median cannot be far below it.
    assert s["e2e_latency_ms"]["p50"] >= 0.5 * s["ack_latency_ms"]["p50"]


def test_bench_flat_out(broker, tmp_path):
    s, _ = run_bench(broker, tmp_path, "bench-flat", "--partitions", 3, "--producers", 2,
                     "--record-size", 512)
    check_summary(s, "bench-flat", 3)
    assert s["rate"] == 0 and s["acks"] == -1 and s["record_size"] == 512
    assert abs(s["mb_per_s"] - s["records_per_s"] * 512 / 1e6) < 0.01


def test_bench_open_loop_keys_compression_smp(broker, tmp_path):
    s, _ = run_bench(broker, tmp_path, "bench-rate", "--partitions", 4, "--producers", 2,
                     "--consumers", 2, "--smp", 2, "--rate", 2000, "--keys", 50,
                     "--compression", "zstd", "--acks", 1, "--linger", 2)
    check_summary(s, "bench-rate", 4)
    assert s["smp"] == 2 and s["compression"] == 4 and s["acks"] == 1
    # Open loop: the schedule is kept, so the measured rate is the target (2 s window).
    assert abs(s["records_per_s"] - 2000) <= 2000 * 0.02, s["records_per_s"]
    # The records are in the topic: the log end offsets sum to what was produced.
    if shutil.which("kcat"):
        total = 0
        for p in range(4):
            r = subprocess.run(["kcat", "-b", broker.addr, "-Q", "-t", "bench-rate:%d:-1" % p],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
            if r.returncode != 0:
                break
            total += int(r.stdout.decode().split()[-1])
        else:
            assert total == s["produced_records"]


def test_bench_bad_flags_and_unreachable(tmp_path):
    r = subprocess.run([binary(), "bench", "--acks", "7"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    assert r.returncode == 2
    r = subprocess.run([binary(), "bench", "--brokers", "127.0.0.1:1", "--duration", "1"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert r.returncode == 3


def _rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _metric(port, name):
    import urllib.request
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.split()[-1])
    raise KeyError(name)


def test_heap_trim_gives_memory_back_after_a_burst(broker_factory, tmp_path):
    """heap_trim_threshold (base/heap.h): after a flat-out burst the broker's heap holds freed
    buffers; once its resident memory has held still for two looks (5 s apart), shard 0 gives
    them back: the released-bytes counter moves, the log says how much, the resident memory
    falls. With the threshold at 0 the same burst leaves the memory where it is."""
    from ailurus_harness import admin_port, wait_for
    on = broker_factory(args=["--heap-trim-threshold", "16M"])
    off = broker_factory(args=["--heap-trim-threshold", "0"])
    port = admin_port(on)
    peak, before = 0, 0.0
    for b in (on, off):  # ~190 MiB of freed heap memory on this machine
        for t in ("burst-a", "burst-b"):
            run_bench(b, tmp_path, t, "--partitions", 4, "--producers", 4, "--max-inflight", 32,
                      "--batch-bytes", 262144)
        if b is on:  # right after its burst (a trim during it, if any, is counted already)
            peak = _rss_kib(on.proc.pid)
            try:
                before = _metric(port, "ailurus_memory_heap_released_bytes_total")
            except KeyError:
                before = 0.0
    released = wait_for("a heap trim on the broker with a threshold after its burst",
                        lambda: _metric(port, "ailurus_memory_heap_released_bytes_total")
                        > before and _metric(port, "ailurus_memory_heap_released_bytes_total"),
                        timeout=40.0, step=0.5)
    assert released - before >= 16 << 20, (before, released)
    assert "of freed heap memory back to the system" in on.log_text()
    assert (_rss_kib(on.proc.pid) << 10) <= (peak << 10) - (released - before) / 2, (peak, released)
    # The other broker made no trim over the same time (its counter is still absent or 0).
    try:
        assert _metric(admin_port(off), "ailurus_memory_heap_released_bytes_total") == 0
    except KeyError:
        pass
    assert "of freed heap memory back to the system" not in off.log_text()
    assert _metric(port, "ailurus_memory_heap_free_bytes") >= 0
