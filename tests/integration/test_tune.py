"""test_tune.py — `ailurus tune` in dry-run mode on this machine: the table and the JSON have
every check with current/recommended/status, nothing is changed, and bad usage exits 2.
Values are not checked (they depend on the host), only shape and consistency. --apply is
tested on a fake /proc + /sys tree (--root), never on the host.
"""
import json
import os
import subprocess

from ailurus_harness import binary

CHECKS = ["io_uring_disabled", "io_uring_ring", "memlock_limit", "open_files_limit",
          "vm.swappiness", "transparent_hugepages", "damon", "cpu_governor", "disk_scheduler",
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
               "/sys/kernel/mm/transparent_hugepage/enabled",
               "/sys/kernel/mm/damon/admin/kdamonds/0/state"]
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


def fake_root(tmp, data_dir):
    """A /proc and /sys tree under tmp with settings that all differ from the advice."""
    files = {
        "proc/sys/kernel/io_uring_disabled": "2\n",
        "proc/sys/vm/swappiness": "60\n",
        "proc/sys/net/core/somaxconn": "128\n",
        "sys/kernel/mm/transparent_hugepage/enabled": "[always] madvise never\n",
        "sys/kernel/mm/damon/admin/kdamonds/0/state": "on\n",
        "sys/kernel/mm/damon/admin/kdamonds/1/state": "off\n",
        "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor": "powersave\n",
        "sys/devices/system/cpu/cpu1/cpufreq/scaling_governor": "performance\n",
        "sys/devices/system/clocksource/clocksource0/current_clocksource": "hpet\n",
        "sys/devices/system/clocksource/clocksource0/available_clocksource": "tsc hpet\n",
        "sys/block/vdz/queue/scheduler": "mq-deadline kyber [bfq] none\n",
        "sys/block/vdz/queue/write_cache": "write back\n",
    }
    for rel, text in files.items():
        p = os.path.join(tmp, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
    st = os.stat(data_dir)
    os.makedirs(os.path.join(tmp, "sys/dev/block"), exist_ok=True)
    os.symlink("../../devices/virtual/block/vdz",
               os.path.join(tmp, "sys/dev/block/%d:%d" % (os.major(st.st_dev),
                                                          os.minor(st.st_dev))))
    return files


APPLIED = {"io_uring_disabled": ("proc/sys/kernel/io_uring_disabled", "0"),
           "vm.swappiness": ("proc/sys/vm/swappiness", "1"),
           "net.core.somaxconn": ("proc/sys/net/core/somaxconn", "4096"),
           "transparent_hugepages": ("sys/kernel/mm/transparent_hugepage/enabled", "madvise"),
           "damon": ("sys/kernel/mm/damon/admin/kdamonds/0/state", "off"),
           "cpu_governor": ("sys/devices/system/cpu/cpu0/cpufreq/scaling_governor",
                            "performance"),
           "clocksource": ("sys/devices/system/clocksource/clocksource0/current_clocksource",
                           "tsc"),
           "disk_scheduler": ("sys/block/vdz/queue/scheduler", "none")}


def test_tune_apply_on_a_fake_root(tmp_path):
    root, data = str(tmp_path / "root"), str(tmp_path / "data")
    os.makedirs(data)
    files = fake_root(root, data)
    # Dry run: everything differs, nothing is written.
    doc = json.loads(run("--root", root, "--data-dir", data, "--format", "json").stdout)
    rows = {c["check"]: c for c in doc["checks"]}
    for name in APPLIED:
        assert rows[name]["status"] == "differs", rows[name]
    assert rows["disk_scheduler"]["current"] == "vdz: bfq"
    assert rows["damon"]["current"] == "on (1 of 2 kdamonds)"
    assert rows["disk_write_cache"]["status"] == "info"
    for rel, text in files.items():
        with open(os.path.join(root, rel)) as f:
            assert f.read() == text, rel
    # Apply: each file gets the recommended value and the row says so.
    r = run("--root", root, "--data-dir", data, "--format", "json", "--apply")
    doc = json.loads(r.stdout)
    assert doc["mode"] == "apply"
    rows = {c["check"]: c for c in doc["checks"]}
    for name, (rel, value) in APPLIED.items():
        assert rows[name]["status"] == "applied", rows[name]
        with open(os.path.join(root, rel)) as f:
            assert f.read() == value, rel
    with open(os.path.join(root, "sys/block/vdz/queue/write_cache")) as f:
        assert f.read() == "write back\n"  # never touched
    # Only the process limits can fail here (hard limits below the advice): exit code says so.
    failed = [c for c in doc["checks"] if c["status"].startswith("failed")]
    assert {c["check"] for c in failed} <= {"memlock_limit", "open_files_limit"}
    assert r.returncode == (1 if failed else 0)
