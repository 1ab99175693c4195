"""test_tune.py — `ailurus tune` in dry-run mode on this machine: the table and the JSON have
every check with current/recommended/status, nothing is changed, and bad usage exits 2.
Values are not checked (they depend on the host), only shape and consistency.
"""
import json
import subprocess

from ailurus_harness import binary

CHECKS = ["io_uring_disabled", "io_uring_ring", "memlock_limit", "open_files_limit",
          "vm.swappiness", "transparent_hugepages", "cpu_governor", "disk_scheduler",
          "disk_write_cache", "net.core.somaxconn", "clocksource"]
STATUSES = ("ok", "differs", "n/a", "info")


def run(*args):
    return subprocess.run([binary(), "tune"] + list(args), capture_output=True, text=True,
                          timeout=60)


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def test_tune_table_dry_run_changes_nothing():
    watched = ["/proc/sys/vm/swappiness", "/proc/sys/net/core/somaxconn",
               "/sys/kernel/mm/transparent_hugepage/enabled"]
    before = [read(p) for p in watched]
    r = run()
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["CHECK", "CURRENT", "RECOMMENDED"]
    assert "dry run" in lines[0]
    for name in CHECKS:
        row = next((l for l in lines[1:] if l.startswith(name + " ")), None)
        assert row is not None, name
        assert row.rstrip().split()[-1] in STATUSES, row
    assert [read(p) for p in watched] == before
    assert run("--dry-run").returncode == 0


def test_tune_json():
    r = run("--format", "json", "--data-dir", "/tmp")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["mode"] == "dry-run"
    assert [c["check"] for c in doc["checks"]] == CHECKS
    for c in doc["checks"]:
        assert set(c) == {"check", "current", "recommended", "status", "note"}
        assert c["status"] in STATUSES and c["current"] and c["recommended"]
    assert isinstance(doc["container"], bool) and isinstance(doc["proc_sys_read_only"], bool)
    if doc["proc_sys_read_only"]:
        assert "read-only" in doc["environment_note"]
    ring = next(c for c in doc["checks"] if c["check"] == "io_uring_ring")
    assert ring["status"] == "ok"  # the broker's own tests need io_uring on this machine


def test_tune_usage_errors():
    assert run("--format", "xml").returncode == 2
    assert run("--bogus").returncode == 2
    r = run("--help")
    assert r.returncode == 0 and "--apply" in r.stdout
