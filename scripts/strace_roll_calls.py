#!/usr/bin/env python3
"""strace_roll_calls.py - the blocking file calls of a broker per thread during a flat-out run
with 16 MiB segments (session 7, ha: roll jobs). Starts BIN under strace -f -T --seccomp-bpf
(openat, fsync, fdatasync, ftruncate, unlink, rename, pwrite64, io_uring_setup), runs make
bench's max_p1 scenario for SECONDS, and prints, counted from the bench's start, the calls per
thread (reactor = a thread that called io_uring_setup) and the time of segment creates, spare
file creates and renames (session 8, ha8: spare files) and directory fsyncs.

usage: strace_roll_calls.py LABEL BIN SECONDS   (env AB_DIR, SEG: segment size, default 16M)"""
import os, shutil, signal, subprocess, sys, time, collections, re
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_broker as bb
label, binary, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
root = os.path.abspath(os.environ.get("AB_DIR", "build/bench-roll-ab"))
os.makedirs(root, exist_ok=True)
out = os.path.join(root, "strace-%s.txt" % label)
wrap = os.path.join(root, "wrap-%s.sh" % label)
open(wrap, "w").write("#!/bin/sh\nexec strace -f -T --seccomp-bpf -e trace=io_uring_setup,openat,fsync,fdatasync,ftruncate,unlink,rename,pwrite64 -o %s %s \"$@\"\n" % (out, binary))
os.chmod(wrap, 0o755)
data = os.path.join(root, "data")
shutil.rmtree(data, ignore_errors=True)
b = bb.Broker(wrap, data, extra=["--log-segment-size", os.environ.get("SEG", "16M")]).start()
try:
    time.sleep(1.0)
    start_off = os.path.getsize(out)
    s, _ = bb.bench(binary, b.addr, os.path.join(root, "max.json"), "--topic", "max-p1",
                    "--partitions", 1, "--producers", 4, "--max-inflight", 32,
                    "--batch-bytes", 65536, "--record-size", 1024, "--acks", "all",
                    "--warmup", 1, "--duration", secs)
finally:
    # b.proc is strace: stop the broker it runs first (SIGTERM to strace would only detach it
    # and leave the broker running), then strace.
    kids = []
    try:
        with open("/proc/%d/task/%d/children" % (b.proc.pid, b.proc.pid)) as f:
            kids = [int(x) for x in f.read().split()]
    except OSError:
        pass
    for k in kids:
        try:
            os.kill(k, signal.SIGTERM)
        except OSError:
            pass
    for _ in range(300):  # up to 30 s
        if not any(os.path.exists("/proc/%d" % k) and
                   open("/proc/%d/stat" % k).read().split()[2] != "Z" for k in kids):
            break
        time.sleep(0.1)
    for k in kids:
        try:
            os.kill(k, signal.SIGKILL)
        except OSError:
            pass
    b.stop()
nlog = sum(1 for dp, dn, fn in os.walk(data) for f in fn if f.endswith(".log"))
shutil.rmtree(data, ignore_errors=True)
rings = set()
cnt = collections.Counter()
raw = open(out, "rb").read()
for line in raw[:start_off].decode(errors="replace").splitlines():
    if "io_uring_setup(" in line:
        rings.add(line.split()[0])
for line in raw[start_off:].decode(errors="replace").splitlines():
    m = re.match(r"(\d+)\s+(\w+)\(", line)
    if not m:
        continue
    tid, call = m.group(1), m.group(2)
    if call == "io_uring_setup":
        rings.add(tid)
    elif "resumed" not in line:
        cnt[(tid, call)] += 1
# blocking time of the roll's calls: openat(...log, O_CREAT) and the directory fsyncs
tm = collections.defaultdict(list)
lastdirfd = {}
for line in raw[start_off:].decode(errors="replace").splitlines():
    m = re.match(r"(\d+)\s+(\w+)\((.*)<([0-9.]+)>$", line)
    if not m:
        continue
    tid, call, rest, t = m.group(1), m.group(2), m.group(3), float(m.group(4))
    if call == "openat" and ".log\"" in rest and "O_CREAT" in rest:
        tm[(tid, "create .log")].append(t)
    elif call == "openat" and ".seg\"" in rest and "O_CREAT" in rest:
        tm[(tid, "create spare .seg")].append(t)
    elif call == "rename" and ".seg\"" in rest:
        tm[(tid, "rename spare to .log")].append(t)
    elif call == "openat" and "O_DIRECTORY" in rest:
        fd = rest.rsplit("=", 1)[-1].split()[0]
        lastdirfd[tid] = fd
    elif call == "fsync" and lastdirfd.get(tid) == rest.split(")")[0]:
        tm[(tid, "fsync dir")].append(t)
for (tid, what), v in sorted(tm.items()):
    v.sort()
    print("  tid %s%s %s: n %d, total %.1f ms, median %.2f ms, max %.2f ms" % (tid, " (reactor)" if tid in rings else "", what, len(v), 1000 * sum(v), 1000 * v[len(v) // 2], 1000 * v[-1]))
print("%s: %.1f MB/s, %d .log files, reactor tids (io_uring_setup) %s" % (label, s["mb_per_s"], nlog, sorted(rings)))
for (tid, call), n in sorted(cnt.items()):
    print("  tid %s%s %s %d" % (tid, " (reactor)" if tid in rings else "", call, n))
