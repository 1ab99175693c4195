"""test_bench_open_loop.py — how `ailurus bench` schedules its open loop: it must not wake up
per record, nor spin while it cannot send (every request slot taken and the batch full) or
while it drains, yet it must keep the schedule (every record's latency from its intended time:
no coordinated omission). Counts, not timings: the client's main-loop wake-ups
(`client_wakeups` in the JSON summary) against the produce requests it made; the ack latency's
split (send delay, round trip) counts every acked record; the generator reports its own loop's
lateness and its wait for a CPU."""
import json
import subprocess

from ailurus_harness import binary


def run(broker, tmp_path, name, *args, warmup=0.5, duration=2):
    out = tmp_path / (name + ".json")
    cmd = [binary(), "bench", "--brokers", broker.addr, "--topic", name, "--json", str(out),
           "--quiet", "--warmup", str(warmup), "--duration", str(duration)] + [
               str(a) for a in args]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    text = r.stdout.decode(errors="replace")
    assert r.returncode == 0, text
    s = json.loads(out.read_text())
    assert s["errors"] == 0 and s["failed"] is False
    if s["consumers"] > 0:
        assert s["consumed_records"] == s["produced_records"]
    for f in ("client_cpu_s", "client_cpu_us_per_record", "client_wakeups",
              "client_wakeups_per_s"):
        assert f in s and s[f] >= 0, f
    # The ack latency's split is per record, so both parts count what the ack latency counts
    # and neither part's max exceeds the ack's.
    for part in ("send_delay_ms", "request_rtt_ms"):
        assert s[part]["count"] == s["ack_latency_ms"]["count"], s
        assert s[part]["max"] <= s["ack_latency_ms"]["max"] * 1.02 + 0.01, s
    # The generator's own share: its loop's lateness for its timers (measured window only)
    # and its threads' wait for a CPU. A lateness is never negative, and an open loop with a
    # linger wakes for its timers.
    assert s["client_lag_ms"]["p50"] >= 0 and s["client_lag_ms"]["max"] >= s["client_lag_ms"]["p99"]
    if s["rate"] > 0 and s["linger_ms"] > 0:
        assert s["client_lag_ms"]["count"] > 0, s
    assert s.get("client_run_delay_ms_per_s", 0) >= 0
    # Per request: one entry per acked request of the window, never more than the records.
    rr = s["request_rtt_per_request_ms"]
    assert 0 < rr["count"] <= s["produce_requests"] and rr["count"] <= s["ack_latency_ms"]["count"], s
    return s


def test_open_loop_wakes_per_batch_not_per_record(broker, tmp_path):
    # 20,000 records/s, 64 records per batch, linger 20 ms: a batch fills every 3.2 ms, so
    # about 312 requests/s. A per-record generator wakes 20,000 times a second.
    s = run(broker, tmp_path, "ol-batch", "--rate", 20000, "--batch-bytes", 65536,
            "--linger", 20, "--max-inflight", 64)
    assert s["produced_records_window"] == 40000  # the schedule was kept: 2 s x 20,000
    assert s["produce_requests"] > 0
    # Each request costs a few completions (send, response, the consumer's fetches):
    # allow 16 wake-ups per request, far below one per record (64 records per request).
    assert s["client_wakeups"] <= 16 * s["produce_requests"] + 2000, s
    assert s["client_wakeups"] < s["produced_records"] / 4, s


def test_open_loop_backlogged_does_not_spin(broker, tmp_path):
    # One record per batch, one request in flight, acks=all: every record waits for a durable
    # write (~1 ms or more), so 2,000 records/s fall behind the schedule at once and a full
    # batch waits for the slot most of the time (1,500 records, drained in a few seconds).
    # Latency keeps counting from the intended time: queueing shows in the ack latency.
    s = run(broker, tmp_path, "ol-backlog", "--rate", 2000, "--batch-bytes", 1024,
            "--linger", 0, "--max-inflight", 1, "--consumers", 0, warmup=0.25, duration=0.5)
    assert s["produced_records"] == 1500, s
    assert s["produce_requests"] == s["produced_records"]
    # A spinning loop wakes thousands of times per round trip; waiting for the response
    # wakes a few times per request.
    assert s["client_wakeups"] <= 8 * s["produce_requests"] + 2000, s
    assert s["ack_latency_ms"]["p50"] > s["request_rtt_ms"]["p50"], s
