"""test_metrics_dashboard.py — dashboards/ailurus.json uses only metric families a running broker
exposes on /metrics, and every panel query is valid PromQL (`promtool check rules` on the
queries as recording rules, Grafana variables substituted); packaging/prometheus.yml passes
`promtool check config`.
"""
import json
import os
import re
import subprocess
import tempfile
import time
import urllib.request

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DASH = os.path.join(REPO, "dashboards", "ailurus.json")
PROMTOOL = "/usr/bin/promtool"


def dashboard_exprs():
    with open(DASH) as f:
        d = json.load(f)
    assert d["panels"], "no panels"
    return [t["expr"] for p in d["panels"] for t in p["targets"]]


def substitute(expr):
    return (expr.replace("$__rate_interval", "5m").replace('"$topic"', '".*"')
            .replace('"$group"', '".*"'))


def test_dashboard_queries_are_valid_promql():
    if not os.access(PROMTOOL, os.X_OK):
        pytest.skip("promtool not installed")
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": "dashboard:q%d" % i, "expr": substitute(e)}
        for i, e in enumerate(dashboard_exprs())]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        json.dump(rules, f)  # JSON is YAML
        path = f.name
    try:
        r = subprocess.run([PROMTOOL, "check", "rules", path], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        os.unlink(path)


def test_dashboard_metrics_exist(broker_factory):
    b = broker_factory(args=["--admin-addr", "127.0.0.1:0"])
    deadline = time.monotonic() + 10
    port = None
    while port is None and time.monotonic() < deadline:
        m = re.search(r"admin API listening on [0-9.]+:(\d+)", b.log_text())
        port = int(m.group(1)) if m else None
        time.sleep(0.05)
    assert port, b.log_text()
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10).read()
    families = set(re.findall(r"^# TYPE (\S+) ", text.decode(), re.M))
    used = set()
    for e in dashboard_exprs():
        for name in re.findall(r"\bailurus_[a-z0-9_]+", e):
            used.add(re.sub(r"_(bucket|sum|count)$", "", name)
                     if re.sub(r"_(bucket|sum|count)$", "", name) in families else name)
    missing = sorted(n for n in used if n not in families)
    assert not missing, missing
    assert len(used) >= 15


def test_example_prometheus_config():
    if not os.access(PROMTOOL, os.X_OK):
        pytest.skip("promtool not installed")
    r = subprocess.run([PROMTOOL, "check", "config", os.path.join(REPO, "packaging",
                                                                   "prometheus.yml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
