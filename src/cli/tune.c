/*
 * tune.c — `ailurus tune`: checks the host settings that matter for the broker and, with
 * --apply, changes the ones that can be changed at run time. Dry run (check only) by default.
 *
 *   ailurus tune [--apply] [--dry-run] [--format table|json] [--data-dir DIR] [--root DIR]
 *
 * Checks, declared in one table: io_uring availability (kernel.io_uring_disabled, and a ring
 * actually created through io.h), the locked-memory and open-file limits, vm.swappiness,
 * transparent huge pages, DAMON's kdamonds, the CPU frequency governor, the data disk's I/O
 * scheduler and write cache, net.core.somaxconn, and the clock source. Each row says the current value, the
 * recommended one, and a status: ok, differs, n/a (not present here), applied, or failed
 * (with why). Settings are written where Linux keeps them (/proc/sys, /sys); none persists
 * across a reboot (use sysctl.d / udev rules / the systemd unit for that, see docs).
 *
 * In a container /proc/sys and /sys are usually mounted read-only: the tool detects that,
 * says so once, and reports those rows as "failed: read-only (container)"; the fix belongs on
 * the host (or `docker run --sysctl ...` for namespaced sysctls such as somaxconn).
 *
 * Exit code: 0 (dry run, or every change applied), 1 (some change failed), 2 (bad usage).
 */
#include "cli/commands.h"
#include "reactor/io.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define VAL_MAX 256

struct tune_row {
    char current[VAL_MAX];
    char recommended[VAL_MAX];
    char status[VAL_MAX]; /* ok | differs | n/a | applied | failed: ... | info */
    char note[VAL_MAX];
    bool needs_change;
};

struct tune_ctx {
    const char *data_dir;
    bool apply;
    bool ro_proc_sys;
    bool ro_sys;
    char disk[64]; /* block device of the data directory ("" if unknown) */
};

struct tune_check {
    const char *name;
    /* Fills current/recommended/status/note; sets needs_change if applying would help. */
    void (*check)(struct tune_ctx *t, struct tune_row *r);
    /* Applies the recommended value. Returns 0 or -errno. NULL: cannot be changed here. */
    int (*apply)(struct tune_ctx *t, struct tune_row *r);
};

/* ---- small file helpers ---- */

/* Prefix of every /proc and /sys path (--root, for tests on a fake tree; "" normally). */
static char g_root[512];

/* g_root + path into out. */
static const char *hpath(const char *path, char *out, size_t cap)
{
    if ((size_t)snprintf(out, cap, "%s%.*s", g_root, 400, path) >= cap) out[0] = 0;
    return out;
}

static int host_access(const char *path, int mode)
{
    char full[1024];
    return access(hpath(path, full, sizeof(full)), mode);
}

/* Reads the first line of path into buf (trailing newline removed). Returns 0 or -errno. */
static int read_line(const char *path, char *buf, size_t cap)
{
    char full[1024];
    FILE *f = fopen(hpath(path, full, sizeof(full)), "re");
    if (!f) return -errno;
    buf[0] = 0;
    if (!fgets(buf, (int)cap, f)) {
        int e = ferror(f) ? -EIO : 0;
        fclose(f);
        return e;
    }
    fclose(f);
    buf[strcspn(buf, "\n")] = 0;
    return 0;
}

/* Writes value to path. Returns 0 or -errno. */
static int write_value(const char *path, const char *value)
{
    char full[1024];
    FILE *f = fopen(hpath(path, full, sizeof(full)), "we");
    if (!f) return -errno;
    int e = 0;
    if (fputs(value, f) < 0) e = -errno;
    if (fclose(f) != 0 && !e) e = -errno;
    return e;
}

/* The bracketed choice in a sysfs list like "always [madvise] never", copied to out. */
static void bracketed(const char *list, char *out, size_t cap)
{
    const char *a = strchr(list, '['), *b = a ? strchr(a, ']') : NULL;
    if (!a || !b) {
        snprintf(out, cap, "%s", list);
        return;
    }
    snprintf(out, cap, "%.*s", (int)(b - a - 1), a + 1);
}

static void set_status_for(struct tune_row *r, bool ok)
{
    snprintf(r->status, sizeof(r->status), "%s", ok ? "ok" : "differs");
    r->needs_change = !ok;
}

/* ---- checks ---- */

static void check_io_uring_sysctl(struct tune_ctx *t, struct tune_row *r)
{
    snprintf(r->recommended, sizeof(r->recommended), "0");
    int e = read_line("/proc/sys/kernel/io_uring_disabled", r->current, sizeof(r->current));
    if (e == -ENOENT) {
        snprintf(r->current, sizeof(r->current), "(no such sysctl)");
        snprintf(r->status, sizeof(r->status), "n/a");
        snprintf(r->note, sizeof(r->note), "kernel older than 6.6: io_uring is always allowed");
        return;
    }
    if (e) {
        snprintf(r->current, sizeof(r->current), "unreadable: %s", strerror(-e));
        snprintf(r->status, sizeof(r->status), "n/a");
        return;
    }
    set_status_for(r, !strcmp(r->current, "0"));
    if (r->needs_change) snprintf(r->note, sizeof(r->note), "the broker needs io_uring");
}

static int apply_io_uring_sysctl(struct tune_ctx *t, struct tune_row *r)
{
    return write_value("/proc/sys/kernel/io_uring_disabled", "0");
}

static void check_io_uring_ring(struct tune_ctx *t, struct tune_row *r)
{
    snprintf(r->recommended, sizeof(r->recommended), "a ring can be created");
    io *ring = NULL;
    int e = io_uring_create(&ring, &(struct io_uring_opts){.entries = 64});
    if (e == 0) {
        io_destroy(ring);
        snprintf(r->current, sizeof(r->current), "available");
        snprintf(r->status, sizeof(r->status), "ok");
        return;
    }
    snprintf(r->current, sizeof(r->current), "unavailable: %s", strerror(-e));
    snprintf(r->status, sizeof(r->status), "differs");
    snprintf(r->note, sizeof(r->note), "%s",
             e == -EPERM ? "blocked by kernel.io_uring_disabled or a seccomp profile (Docker: "
                           "--security-opt seccomp=unconfined or a profile allowing io_uring)"
                         : "kernel without io_uring (needs Linux 5.19+)");
}

/* Formats an rlimit value. */
static void fmt_rlim(rlim_t v, char *buf, size_t cap)
{
    if (v == RLIM_INFINITY) snprintf(buf, cap, "unlimited");
    else snprintf(buf, cap, "%llu", (unsigned long long)v);
}

static void check_memlock(struct tune_ctx *t, struct tune_row *r)
{
    struct rlimit rl;
    getrlimit(RLIMIT_MEMLOCK, &rl);
    char s[32], h[32];
    fmt_rlim(rl.rlim_cur, s, sizeof(s));
    fmt_rlim(rl.rlim_max, h, sizeof(h));
    snprintf(r->current, sizeof(r->current), "soft %s, hard %s", s, h);
    snprintf(r->recommended, sizeof(r->recommended), ">= 67108864 or unlimited");
    set_status_for(r, rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= (64ull << 20));
    snprintf(r->note, sizeof(r->note), "io_uring rings count against it before Linux 5.12; "
                                       "persist with LimitMEMLOCK= (packaging/ailurus.service)");
}

static int apply_memlock(struct tune_ctx *t, struct tune_row *r)
{
    struct rlimit rl;
    getrlimit(RLIMIT_MEMLOCK, &rl);
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_MEMLOCK, &rl)) return -errno;
    snprintf(r->note, sizeof(r->note), "raised for this process and its children only; "
                                       "persist with LimitMEMLOCK=");
    return rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= (64ull << 20) ? 0 : -EPERM;
}

static void check_nofile(struct tune_ctx *t, struct tune_row *r)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    char s[32], h[32];
    fmt_rlim(rl.rlim_cur, s, sizeof(s));
    fmt_rlim(rl.rlim_max, h, sizeof(h));
    snprintf(r->current, sizeof(r->current), "soft %s, hard %s", s, h);
    snprintf(r->recommended, sizeof(r->recommended), ">= 1048576");
    set_status_for(r, rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= 1048576);
    snprintf(r->note, sizeof(r->note), "segments and connections are files; persist with "
                                       "LimitNOFILE= (packaging/ailurus.service sets it)");
}

static int apply_nofile(struct tune_ctx *t, struct tune_row *r)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl)) return -errno;
    snprintf(r->note, sizeof(r->note), "raised for this process and its children only; "
                                       "persist with LimitNOFILE=");
    return rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= 1048576 ? 0 : -EPERM;
}

/* A numeric sysctl compared with op: '<' wants current <= want, '>' wants current >= want. */
static void check_sysctl_num(struct tune_row *r, const char *path, long want, char op,
                             const char *note)
{
    snprintf(r->recommended, sizeof(r->recommended), "%s%ld", op == '<' ? "<= " : ">= ", want);
    int e = read_line(path, r->current, sizeof(r->current));
    if (e) {
        snprintf(r->current, sizeof(r->current), "(%s)", strerror(-e));
        snprintf(r->status, sizeof(r->status), "n/a");
        return;
    }
    long cur = strtol(r->current, NULL, 10);
    set_status_for(r, op == '<' ? cur <= want : cur >= want);
    snprintf(r->note, sizeof(r->note), "%s", note);
}

static void check_swappiness(struct tune_ctx *t, struct tune_row *r)
{
    check_sysctl_num(r, "/proc/sys/vm/swappiness", 1, '<',
                     "swapping out a shard's memory stalls every partition on it "
                     "(persist: packaging/99-ailurus.conf in /etc/sysctl.d)");
}

static int apply_swappiness(struct tune_ctx *t, struct tune_row *r)
{
    return write_value("/proc/sys/vm/swappiness", "1");
}

static void check_somaxconn(struct tune_ctx *t, struct tune_row *r)
{
    check_sysctl_num(r, "/proc/sys/net/core/somaxconn", 4096, '>',
                     "accept backlog for bursts of client connections");
}

static int apply_somaxconn(struct tune_ctx *t, struct tune_row *r)
{
    return write_value("/proc/sys/net/core/somaxconn", "4096");
}

#define THP_PATH "/sys/kernel/mm/transparent_hugepage/enabled"

static void check_thp(struct tune_ctx *t, struct tune_row *r)
{
    char raw[VAL_MAX];
    snprintf(r->recommended, sizeof(r->recommended), "madvise");
    int e = read_line(THP_PATH, raw, sizeof(raw));
    if (e) {
        snprintf(r->current, sizeof(r->current), "(%s)", strerror(-e));
        snprintf(r->status, sizeof(r->status), "n/a");
        return;
    }
    bracketed(raw, r->current, sizeof(r->current));
    set_status_for(r, strcmp(r->current, "always") != 0);
    snprintf(r->note, sizeof(r->note), "'always' lets khugepaged compact memory under the "
                                       "shards (latency spikes); madvise or never are fine");
}

static int apply_thp(struct tune_ctx *t, struct tune_row *r)
{
    return write_value(THP_PATH, "madvise");
}

/*
 * DAMON, the kernel's data-access monitor: a running kdamond samples the accessed bits of the
 * pages it watches (physical-address mode: every page, the broker's included) and clears them.
 * On a virtual machine with shadow page tables every clear also costs the process mapping the
 * page, so the broker's latency follows the memory it maps (BENCHMARKS.md, sessions 9-10:
 * after a burst, ack p99 7.6 ms with it off against 80+ ms on). Its own job, reclaiming cold
 * page cache for the host, stops with it.
 */
#define DAMON_DIR "/sys/kernel/mm/damon/admin/kdamonds"

/* Calls fn on each kdamond's state file path (DAMON_DIR/N/state) whose state is "on"; counts
 * them in *on and all kdamonds in *all. Returns the first error fn returned, else 0; -ENOENT
 * when DAMON has no sysfs interface here. */
static int damon_each(int *on, int *all, int (*fn)(const char *path))
{
    char full[1024];
    DIR *d = opendir(hpath(DAMON_DIR, full, sizeof(full)));
    if (!d) return -ENOENT;
    int rc = 0;
    *on = *all = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        char path[512], v[VAL_MAX];
        snprintf(path, sizeof(path), DAMON_DIR "/%.64s/state", e->d_name);
        if (read_line(path, v, sizeof(v))) continue;
        (*all)++;
        if (strcmp(v, "on")) continue;
        (*on)++;
        int e2 = fn ? fn(path) : 0;
        if (e2 && !rc) rc = e2;
    }
    closedir(d);
    return rc;
}

static void check_damon(struct tune_ctx *t, struct tune_row *r)
{
    int on = 0, all = 0;
    snprintf(r->recommended, sizeof(r->recommended), "off");
    if (damon_each(&on, &all, NULL) == -ENOENT) {
        snprintf(r->current, sizeof(r->current), "(no DAMON sysfs interface)");
        snprintf(r->status, sizeof(r->status), "n/a");
        return;
    }
    if (on) snprintf(r->current, sizeof(r->current), "on (%d of %d kdamonds)", on, all);
    else snprintf(r->current, sizeof(r->current), "off");
    set_status_for(r, on == 0);
    snprintf(r->note, sizeof(r->note), "kdamond clears accessed bits of the broker's pages; "
                                       "on a VM (shadow page tables) that costs latency per "
                                       "mapped page; the host's cold-page reclaim stops too");
}

static int damon_off(const char *path)
{
    return write_value(path, "off");
}

static int apply_damon(struct tune_ctx *t, struct tune_row *r)
{
    int on = 0, all = 0;
    return damon_each(&on, &all, damon_off);
}

static void check_governor(struct tune_ctx *t, struct tune_row *r)
{
    snprintf(r->recommended, sizeof(r->recommended), "performance");
    int n = 0, perf = 0;
    char first[64] = "";
    for (int cpu = 0; cpu < 4096; cpu++) {
        char path[128], g[64];
        snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu%d/cpufreq/scaling_governor",
                 cpu);
        if (read_line(path, g, sizeof(g))) {
            if (host_access(path, F_OK) && cpu > 0) break;
            continue;
        }
        if (!n) snprintf(first, sizeof(first), "%s", g);
        n++;
        perf += !strcmp(g, "performance");
    }
    if (n == 0) {
        snprintf(r->current, sizeof(r->current), "(no cpufreq)");
        snprintf(r->status, sizeof(r->status), "n/a");
        snprintf(r->note, sizeof(r->note), "no frequency scaling exposed (VM or container)");
        return;
    }
    if (perf == n) snprintf(r->current, sizeof(r->current), "performance (%d cpus)", n);
    else snprintf(r->current, sizeof(r->current), "%s (%d of %d cpus not performance)", first,
                  n - perf, n);
    set_status_for(r, perf == n);
}

static int apply_governor(struct tune_ctx *t, struct tune_row *r)
{
    int err = 0;
    for (int cpu = 0; cpu < 4096; cpu++) {
        char path[128];
        snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu%d/cpufreq/scaling_governor",
                 cpu);
        if (host_access(path, F_OK)) {
            if (cpu > 0) break;
            continue;
        }
        int e = write_value(path, "performance");
        if (e && !err) err = e;
    }
    return err;
}

/* Finds the whole-disk block device name holding dir into t->disk. */
static void find_disk(struct tune_ctx *t)
{
    struct stat st;
    t->disk[0] = 0;
    if (stat(t->data_dir, &st)) return;
    char link[128], target[512];
    snprintf(link, sizeof(link), "/sys/dev/block/%u:%u", major(st.st_dev), minor(st.st_dev));
    char full[1024];
    ssize_t n = readlink(hpath(link, full, sizeof(full)), target, sizeof(target) - 1);
    if (n <= 0) return;
    target[n] = 0;
    /* .../block/sda/sda1 -> a partition: its parent directory is the disk. */
    char part[200];
    snprintf(part, sizeof(part), "%s/partition", link);
    char *last = strrchr(target, '/');
    if (!last) return;
    if (host_access(part, F_OK) == 0) {
        *last = 0;
        last = strrchr(target, '/');
        if (!last) return;
    }
    snprintf(t->disk, sizeof(t->disk), "%s", last + 1);
}

static void check_scheduler(struct tune_ctx *t, struct tune_row *r)
{
    snprintf(r->recommended, sizeof(r->recommended), "none or mq-deadline");
    if (!t->disk[0]) {
        snprintf(r->current, sizeof(r->current), "(no block device for %s)", t->data_dir);
        snprintf(r->status, sizeof(r->status), "n/a");
        snprintf(r->note, sizeof(r->note), "overlay, tmpfs or network file system");
        return;
    }
    char path[160], raw[VAL_MAX], cur[128];
    snprintf(path, sizeof(path), "/sys/block/%s/queue/scheduler", t->disk);
    if (read_line(path, raw, sizeof(raw))) {
        snprintf(r->current, sizeof(r->current), "(%s: no scheduler)", t->disk);
        snprintf(r->status, sizeof(r->status), "n/a");
        return;
    }
    bracketed(raw, cur, sizeof(cur));
    snprintf(r->current, sizeof(r->current), "%s: %s", t->disk, cur);
    set_status_for(r, !strcmp(cur, "none") || !strcmp(cur, "mq-deadline") ||
                          !strcmp(cur, "noop"));
    snprintf(r->note, sizeof(r->note), "the broker orders and batches its own writes");
}

static int apply_scheduler(struct tune_ctx *t, struct tune_row *r)
{
    char path[160];
    snprintf(path, sizeof(path), "/sys/block/%s/queue/scheduler", t->disk);
    return write_value(path, "none");
}

static void check_write_cache(struct tune_ctx *t, struct tune_row *r)
{
    snprintf(r->recommended, sizeof(r->recommended), "as the hardware has it");
    if (!t->disk[0]) {
        snprintf(r->current, sizeof(r->current), "(no block device)");
        snprintf(r->status, sizeof(r->status), "n/a");
        return;
    }
    char path[160];
    snprintf(path, sizeof(path), "/sys/block/%s/queue/write_cache", t->disk);
    if (read_line(path, r->current, sizeof(r->current))) {
        snprintf(r->current, sizeof(r->current), "(unknown)");
        snprintf(r->status, sizeof(r->status), "n/a");
        return;
    }
    snprintf(r->status, sizeof(r->status), "info");
    snprintf(r->note, sizeof(r->note), "never changed by tune: 'write back' makes the kernel "
                                       "send flushes on fdatasync; claiming 'write through' on "
                                       "a volatile cache would lose acknowledged data");
}

static void check_clocksource(struct tune_ctx *t, struct tune_row *r)
{
    const char *cur = "/sys/devices/system/clocksource/clocksource0/current_clocksource";
    const char *avail = "/sys/devices/system/clocksource/clocksource0/available_clocksource";
    char av[VAL_MAX] = "";
    if (read_line(cur, r->current, sizeof(r->current))) {
        snprintf(r->current, sizeof(r->current), "(unknown)");
        snprintf(r->status, sizeof(r->status), "n/a");
        return;
    }
    read_line(avail, av, sizeof(av));
    bool has_tsc = strstr(av, "tsc") != NULL;
    snprintf(r->recommended, sizeof(r->recommended), "%s", has_tsc ? "tsc" : r->current);
    set_status_for(r, !has_tsc || !strcmp(r->current, "tsc"));
    snprintf(r->note, sizeof(r->note), "timestamps on every request; tsc is a few ns, others "
                                       "may be a system call (available: %.120s)", av);
}

static int apply_clocksource(struct tune_ctx *t, struct tune_row *r)
{
    return write_value("/sys/devices/system/clocksource/clocksource0/current_clocksource",
                       "tsc");
}

static const struct tune_check checks[] = {
    {"io_uring_disabled", check_io_uring_sysctl, apply_io_uring_sysctl},
    {"io_uring_ring", check_io_uring_ring, NULL},
    {"memlock_limit", check_memlock, apply_memlock},
    {"open_files_limit", check_nofile, apply_nofile},
    {"vm.swappiness", check_swappiness, apply_swappiness},
    {"transparent_hugepages", check_thp, apply_thp},
    {"damon", check_damon, apply_damon},
    {"cpu_governor", check_governor, apply_governor},
    {"disk_scheduler", check_scheduler, apply_scheduler},
    {"disk_write_cache", check_write_cache, NULL},
    {"net.core.somaxconn", check_somaxconn, apply_somaxconn},
    {"clocksource", check_clocksource, apply_clocksource},
};

/* True if the file system holding path is mounted read-only. */
static bool path_read_only(const char *path)
{
    struct statvfs sv;
    char full[1024];
    return statvfs(hpath(path, full, sizeof(full)), &sv) == 0 && (sv.f_flag & ST_RDONLY);
}

static bool in_container(void)
{
    if (host_access("/.dockerenv", F_OK) == 0 || host_access("/run/.containerenv", F_OK) == 0)
        return true;
    char buf[256];
    return read_line("/proc/1/cgroup", buf, sizeof(buf)) == 0 &&
           (strstr(buf, "docker") || strstr(buf, "kubepods") || strstr(buf, "lxc"));
}

static void run_apply(struct tune_ctx *t, const struct tune_check *c, struct tune_row *r)
{
    if (!r->needs_change) return;
    if (!c->apply) {
        snprintf(r->status, sizeof(r->status), "failed: cannot be changed by tune");
        return;
    }
    int e = c->apply(t, r);
    if (e == 0) {
        char note[VAL_MAX];
        snprintf(note, sizeof(note), "%s", r->note);
        c->check(t, r); /* re-read: the row shows the value now in force */
        if (!r->needs_change) snprintf(r->status, sizeof(r->status), "applied");
        else snprintf(r->status, sizeof(r->status), "failed: value did not change");
        if (!strncmp(note, "raised", 6)) snprintf(r->note, sizeof(r->note), "%s", note);
        return;
    }
    bool ro = (e == -EROFS || e == -EACCES || e == -EPERM);
    snprintf(r->status, sizeof(r->status), "failed: %s%s", strerror(-e),
             ro && (t->ro_proc_sys || t->ro_sys) ? " (read-only: container?)" : "");
}

static void usage(FILE *f)
{
    fprintf(f, "usage: ailurus tune [--apply | --dry-run] [--format table|json] "
               "[--data-dir DIR]\n\n"
               "Checks host settings for the broker; --apply changes what differs (as root).\n"
               "--dry-run (the default) only reports. --root DIR reads and writes the /proc\n"
               "and /sys files under DIR instead (for tests and for inspecting a chroot).\n");
}

int cmd_tune(int argc, char **argv)
{
    struct tune_ctx t = {.data_dir = "."};
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--apply")) t.apply = true;
        else if (!strcmp(a, "--dry-run")) t.apply = false;
        else if (!strcmp(a, "--format") && i + 1 < argc) {
            const char *v = argv[++i];
            if (!strcmp(v, "json")) json = true;
            else if (!strcmp(v, "table")) json = false;
            else {
                fprintf(stderr, "ailurus tune: --format must be table or json, not '%s'\n", v);
                return CLI_USAGE;
            }
        } else if (!strcmp(a, "--data-dir") && i + 1 < argc) {
            t.data_dir = argv[++i];
        } else if (!strcmp(a, "--root") && i + 1 < argc) {
            snprintf(g_root, sizeof(g_root), "%s", argv[++i]);
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return CLI_OK;
        } else {
            fprintf(stderr, "ailurus tune: unknown option '%s'\n", a);
            usage(stderr);
            return CLI_USAGE;
        }
    }
    t.ro_proc_sys = path_read_only("/proc/sys");
    t.ro_sys = path_read_only("/sys");
    bool container = in_container();
    find_disk(&t);

    struct tune_row rows[AL_ARRAY_SIZE(checks)];
    int failed = 0, differs = 0;
    for (size_t i = 0; i < AL_ARRAY_SIZE(checks); i++) {
        memset(&rows[i], 0, sizeof(rows[i]));
        checks[i].check(&t, &rows[i]);
        if (t.apply) run_apply(&t, &checks[i], &rows[i]);
        if (!strncmp(rows[i].status, "failed", 6)) failed++;
        if (!strcmp(rows[i].status, "differs")) differs++;
    }
    const char *env_note = NULL;
    if (t.ro_proc_sys || t.ro_sys)
        env_note = "/proc/sys or /sys is read-only here (a container): kernel settings must be "
                   "changed on the host, or per container with `docker run --sysctl` for "
                   "namespaced ones (net.core.somaxconn); limits with --ulimit.";
    else if (container)
        env_note = "running in a container: host-wide settings (swappiness, THP, governor, "
                   "scheduler, clock source) affect every container on the host.";

    if (json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < AL_ARRAY_SIZE(checks); i++)
            json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s, s:s}", "check",
                                                 checks[i].name, "current", rows[i].current,
                                                 "recommended", rows[i].recommended, "status",
                                                 rows[i].status, "note", rows[i].note));
        json_t *o = json_pack("{s:s, s:b, s:b, s:b, s:s, s:o}", "mode",
                              t.apply ? "apply" : "dry-run", "container", container,
                              "proc_sys_read_only", t.ro_proc_sys, "sys_read_only", t.ro_sys,
                              "data_disk", t.disk, "checks", arr);
        if (env_note) json_object_set_new(o, "environment_note", json_string(env_note));
        json_dumpf(o, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
        json_decref(o);
    } else {
        printf("%-22s %-34s %-28s %s\n", "CHECK", "CURRENT", "RECOMMENDED",
               t.apply ? "STATUS (applied)" : "STATUS (dry run)");
        for (size_t i = 0; i < AL_ARRAY_SIZE(checks); i++)
            printf("%-22s %-34.34s %-28.28s %s\n", checks[i].name, rows[i].current,
                   rows[i].recommended, rows[i].status);
        printf("\n");
        for (size_t i = 0; i < AL_ARRAY_SIZE(checks); i++)
            if (rows[i].note[0]) printf("  %s: %s\n", checks[i].name, rows[i].note);
        if (env_note) printf("\nnote: %s\n", env_note);
        if (!t.apply && differs)
            printf("\n%d setting(s) differ; run `ailurus tune --apply` as root to change them "
                   "(nothing persists across reboots: see docs/ARCHITECTURE.md).\n", differs);
    }
    return t.apply && failed ? CLI_FAILED : CLI_OK;
}
