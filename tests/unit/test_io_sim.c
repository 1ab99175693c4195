/*
 * test_io_sim.c — the deterministic simulator (io_sim.h): same seed -> same trace hash over a
 * run with network, disk and timers, different seeds differ; power loss drops non-durable
 * data and names and keeps durable ones; torn writes keep a prefix (exhaustively over cut
 * points); injected EIO/ENOSPC arrive; O_DIRECT alignment; partitions fail or hang traffic
 * and heal; the io_fs_write_atomic ritual under crashes; io_fs_* semantics.
 */
#include "test.h"

#include "base/base.h"
#include "reactor/io_sim.h"

#include <fcntl.h>
#include <stdlib.h>

static io_sim_world *world(uint64_t seed, bool torn)
{
    io_sim_world *w = NULL;
    struct io_sim_opts o = {.seed = seed, .torn_writes = torn};
    if (io_sim_world_create(&w, &o)) return NULL;
    return w;
}

/* Steps until *flag or the world is idle (bounded). Returns *flag. */
static int run_until_flag(io_sim_world *w, volatile int *flag)
{
    for (int i = 0; i < 1000000 && !*flag; i++)
        if (io_sim_world_step(w) <= 0) break;
    return *flag;
}

struct oneshot {
    io_op op;
    int done, res;
};

static void oneshot_cb(io_op *op)
{
    struct oneshot *o = op->ctx;
    o->done = 1;
    o->res = op->res;
}

static io_op *os(struct oneshot *o)
{
    memset(o, 0, sizeof(*o));
    o->op.cb = oneshot_cb;
    o->op.ctx = o;
    return &o->op;
}

/* Async helpers that run the world until the op completes; return res. */
static int a_open(io_sim_world *w, io *n, const char *path, int flags)
{
    struct oneshot o;
    io_open(n, os(&o), path, flags, 0644);
    return run_until_flag(w, &o.done) ? o.res : -9999;
}

static int a_write(io_sim_world *w, io *n, int fd, const void *buf, size_t len, uint64_t off)
{
    struct oneshot o;
    io_write(n, os(&o), fd, buf, len, off);
    return run_until_flag(w, &o.done) ? o.res : -9999;
}

static int a_read(io_sim_world *w, io *n, int fd, void *buf, size_t len, uint64_t off)
{
    struct oneshot o;
    io_read(n, os(&o), fd, buf, len, off);
    return run_until_flag(w, &o.done) ? o.res : -9999;
}

static int a_fdatasync(io_sim_world *w, io *n, int fd)
{
    struct oneshot o;
    io_fdatasync(n, os(&o), fd);
    return run_until_flag(w, &o.done) ? o.res : -9999;
}

/* Reads a whole file through io_fs_read_all into buf (cap); returns length or -errno. */
static long slurp(io *n, const char *path, uint8_t *buf, size_t cap)
{
    uint8_t *data;
    size_t len;
    int err = io_fs_read_all(n, path, cap, &data, &len);
    if (err) return err;
    memcpy(buf, data, len);
    free(data);
    return (long)len;
}

/* ---- disk ---- */

TEST(crash_keeps_durable_drops_rest)
{
    io_sim_world *w = world(test_seed(), false);
    CHECK(w);
    io *n = io_sim_node_create(w, "n0");
    CHECK(n);
    CHECK_EQ(io_sim_fs_mkdir_p(n, "/data/log"), 0);
    int fd = a_open(w, n, "/data/log/seg", O_CREAT | O_RDWR);
    CHECK(fd >= 0);
    CHECK_EQ(io_fs_fsync_dir(n, "/data/log"), 0); /* the name is durable */
    CHECK_EQ(a_write(w, n, fd, "AAAA", 4, 0), 4);
    CHECK_EQ(a_fdatasync(w, n, fd), 0);
    CHECK_EQ(a_write(w, n, fd, "BBBBBBBB", 8, 2), 8); /* not synced */
    uint8_t buf[64];
    CHECK_EQ(a_read(w, n, fd, buf, sizeof(buf), 0), 10);
    CHECK_MEM(buf, "AABBBBBBBB", 10);
    /* A file created, written and fsynced, but whose name was never made durable. */
    int fd2 = io_fs_open(n, "/data/log/other", O_CREAT | O_RDWR, 0644);
    CHECK(fd2 >= 0);
    CHECK_EQ(io_fs_pwrite(n, fd2, "xyz", 3, 0), 3);
    CHECK_EQ(io_fs_fsync(n, fd2), 0);
    /* A durable file unlinked without a directory fsync. */
    int fd3 = io_fs_open(n, "/data/keep", O_CREAT | O_RDWR, 0644);
    CHECK_EQ(io_fs_pwrite(n, fd3, "k", 1, 0), 1);
    CHECK_EQ(io_fs_fsync(n, fd3), 0);
    CHECK_EQ(io_fs_fsync_dir(n, "/data"), 0);
    CHECK_EQ(io_fs_unlink(n, "/data/keep"), 0);

    io_sim_crash(n);
    CHECK(io_sim_is_dead(n));
    CHECK_EQ(io_fs_exists(n, "/data"), -EIO); /* the dead io refuses */
    io *n2 = io_sim_restart(n);
    CHECK(n2 && n2 != n);
    CHECK_EQ(slurp(n2, "/data/log/seg", buf, sizeof(buf)), 4);
    CHECK_MEM(buf, "AAAA", 4);
    CHECK_EQ(io_fs_exists(n2, "/data/log/other"), 0);
    CHECK_EQ(slurp(n2, "/data/keep", buf, sizeof(buf)), 1);
    char **names;
    int cnt = io_fs_list(n2, "/data/log", &names);
    CHECK_EQ(cnt, 1);
    CHECK(!strcmp(names[0], "seg"));
    io_fs_list_free(names, cnt);
    io_sim_world_destroy(w);
}

/* io_write_dsync: durable once it completes (alone: not earlier plain writes); before it
 * completes a crash loses it or, torn, keeps a prefix of it. */
TEST(write_dsync_durable_at_completion)
{
    io_sim_world *w = world(test_seed(), false);
    CHECK(w);
    io *n = io_sim_node_create(w, "n0");
    int fd = a_open(w, n, "f", O_CREAT | O_RDWR);
    CHECK(fd >= 0);
    CHECK_EQ(io_fs_fsync_dir(n, "."), 0);
    struct oneshot o;
    io_write_dsync(n, os(&o), fd, "AAAA", 4, 0);
    CHECK_EQ(run_until_flag(w, &o.done), 1);
    CHECK_EQ(o.res, 4);
    CHECK_EQ(a_write(w, n, fd, "CC", 2, 100), 2); /* plain, never synced */
    io_write_dsync(n, os(&o), fd, "DD", 2, 0);
    CHECK_EQ(run_until_flag(w, &o.done), 1);
    CHECK_EQ(o.res, 2);
    io_sim_crash(n);
    n = io_sim_restart(n);
    CHECK(n);
    uint8_t got[256];
    CHECK_EQ(slurp(n, "f", got, sizeof(got)), 4);
    CHECK_MEM(got, "DDAA", 4);
    /* Crashes between the write half and the sync half: lost, or a torn prefix kept. */
    for (int keep = 0; keep <= 3; keep += 3) {
        fd = io_fs_open(n, "f", O_RDWR, 0644);
        CHECK(fd >= 0);
        io_write_dsync(n, os(&o), fd, "BBBB", 4, 4);
        for (int i = 0; i < 100000 && !o.done && io_sim_last_write_len(n) != 4; i++)
            if (io_sim_world_step(w) <= 0) break;
        CHECK(!o.done);
        CHECK_EQ(io_sim_last_write_len(n), 4);
        io_sim_crash_torn(n, (uint64_t)keep);
        n = io_sim_restart(n);
        CHECK(n);
        long len = slurp(n, "f", got, sizeof(got));
        CHECK_EQ(len, 4 + keep);
        CHECK_MEM(got, keep ? "DDAABBB" : "DDAA", (size_t)len);
        if (keep) { /* put the file back to 4 bytes, durably */
            CHECK((fd = io_fs_open(n, "f", O_RDWR, 0644)) >= 0);
            CHECK_EQ(io_fs_ftruncate(n, fd, 4), 0);
            CHECK_EQ(io_fs_fsync(n, fd), 0);
            CHECK_EQ(io_fs_close(n, fd), 0);
        }
    }
    io_sim_world_destroy(w);
}

TEST(torn_write_keeps_prefix_exhaustive)
{
    enum { BASE = 4096, NEW = 3000 };
    uint8_t base[BASE], neu[NEW], got[BASE + NEW], want[BASE + NEW];
    for (int i = 0; i < BASE; i++) base[i] = (uint8_t)(i * 3 + 1);
    for (int i = 0; i < NEW; i++) neu[i] = (uint8_t)(i * 7 + 200);
    io_sim_world *w = world(test_seed(), false);
    CHECK(w);
    io *n = io_sim_node_create(w, "n0");
    /* Every cut point in steps of 97 bytes, plus both ends: the file is the durable base
     * with exactly keep bytes of the torn write (which overlaps the end and extends it). */
    for (uint64_t keep = 0; keep <= NEW + 97; keep += 97) {
        uint64_t k = AL_MIN(keep, (uint64_t)NEW);
        if (keep > NEW) keep = NEW; /* the last round: the whole write */
        int fd = io_fs_open(n, "f", O_CREAT | O_RDWR | O_TRUNC, 0644);
        CHECK(fd >= 0);
        CHECK_EQ(io_fs_pwrite(n, fd, base, BASE, 0), BASE);
        CHECK_EQ(io_fs_fsync(n, fd), 0);
        CHECK_EQ(io_fs_fsync_dir(n, "."), 0);
        CHECK_EQ(io_fs_pwrite(n, fd, neu, NEW, BASE - 1000), NEW);
        CHECK_EQ(io_sim_last_write_len(n), NEW);
        io_sim_crash_torn(n, k);
        n = io_sim_restart(n);
        CHECK(n);
        long len = slurp(n, "f", got, sizeof(got));
        uint64_t want_len = AL_MAX((uint64_t)BASE, BASE - 1000 + k);
        CHECK_EQ(len, (long)want_len);
        memcpy(want, base, BASE);
        memcpy(want + BASE - 1000, neu, k);
        CHECK_MEM(got, want, want_len);
        if (keep == NEW) break;
    }
    io_sim_world_destroy(w);
}

TEST(torn_write_option_random_prefix)
{
    uint64_t seed = test_seed();
    int partial = 0;
    for (int round = 0; round < 40; round++) {
        io_sim_world *w = world(seed + (uint64_t)round, true);
        io *n = io_sim_node_create(w, "n0");
        int fd = io_fs_open(n, "f", O_CREAT | O_RDWR, 0644);
        CHECK_EQ(io_fs_fsync_dir(n, "."), 0);
        uint8_t data[1000];
        memset(data, 'x', sizeof(data));
        CHECK_EQ(io_fs_pwrite(n, fd, data, sizeof(data), 0), 1000);
        io_sim_crash(n);
        n = io_sim_restart(n);
        uint8_t got[1000];
        long len = slurp(n, "f", got, sizeof(got));
        CHECK(len >= 0 && len <= 1000);
        for (long i = 0; i < len; i++) CHECK_EQ(got[i], 'x');
        if (len > 0 && len < 1000) partial++;
        io_sim_world_destroy(w);
    }
    CHECK(partial > 20); /* the cut point really varies with the seed */
}

TEST(write_atomic_ritual_under_crash)
{
    io_sim_world *w = world(test_seed(), false);
    io *n = io_sim_node_create(w, "n0");
    CHECK_EQ(io_sim_fs_mkdir_p(n, "/meta"), 0);
    CHECK_EQ(io_fs_write_atomic(n, "/meta/state", "old", 3), 0);
    io_sim_crash(n);
    n = io_sim_restart(n);
    uint8_t buf[16];
    CHECK_EQ(slurp(n, "/meta/state", buf, sizeof(buf)), 3); /* the full ritual survives */
    CHECK_MEM(buf, "old", 3);

    /* The ritual interrupted by a failing fsync: error, old file untouched, no temp left. */
    io_sim_fault_at(n, IO_SIM_FAULT_FSYNC_EIO, 1);
    CHECK_EQ(io_fs_write_atomic(n, "/meta/state", "new!", 4), -EIO);
    CHECK_EQ(slurp(n, "/meta/state", buf, sizeof(buf)), 3);
    CHECK_EQ(io_fs_exists(n, "/meta/state.tmp"), 0);
    /* Failing write: same. */
    io_sim_fault_at(n, IO_SIM_FAULT_WRITE_ENOSPC, 1);
    CHECK_EQ(io_fs_write_atomic(n, "/meta/state", "new!", 4), -ENOSPC);
    CHECK_EQ(slurp(n, "/meta/state", buf, sizeof(buf)), 3);

    /* Crash after the rename but before the directory fsync: the rename is lost, the old
     * contents are back (what the ritual's last step protects against). */
    int fd = io_fs_open(n, "/meta/state.tmp", O_CREAT | O_WRONLY | O_TRUNC, 0644);
    CHECK_EQ(io_fs_pwrite(n, fd, "new!", 4, 0), 4);
    CHECK_EQ(io_fs_fsync(n, fd), 0);
    CHECK_EQ(io_fs_close(n, fd), 0);
    CHECK_EQ(io_fs_rename(n, "/meta/state.tmp", "/meta/state"), 0);
    CHECK_EQ(slurp(n, "/meta/state", buf, sizeof(buf)), 4);
    io_sim_crash(n);
    n = io_sim_restart(n);
    CHECK_EQ(slurp(n, "/meta/state", buf, sizeof(buf)), 3);
    CHECK_MEM(buf, "old", 3);

    /* And the complete ritual replaces it durably. */
    CHECK_EQ(io_fs_write_atomic(n, "/meta/state", "new!", 4), 0);
    io_sim_crash(n);
    n = io_sim_restart(n);
    CHECK_EQ(slurp(n, "/meta/state", buf, sizeof(buf)), 4);
    CHECK_MEM(buf, "new!", 4);
    CHECK_EQ(io_fs_exists(n, "/meta/state.tmp"), 0);
    io_sim_world_destroy(w);
}

TEST(faults_eio_enospc)
{
    io_sim_world *w = world(test_seed(), false);
    io *n = io_sim_node_create(w, "n0");
    int fd = a_open(w, n, "f", O_CREAT | O_RDWR);
    CHECK(fd >= 0);
    /* The 2nd fdatasync fails with EIO (async path); the data stays non-durable. */
    io_sim_fault_at(n, IO_SIM_FAULT_FSYNC_EIO, 2);
    CHECK_EQ(a_write(w, n, fd, "abc", 3, 0), 3);
    CHECK_EQ(a_fdatasync(w, n, fd), 0);
    CHECK_EQ(a_write(w, n, fd, "def", 3, 3), 3);
    CHECK_EQ(a_fdatasync(w, n, fd), -EIO);
    CHECK_EQ(a_fdatasync(w, n, fd), 0); /* one-shot */
    CHECK_EQ(io_sim_fault_count(n), 1);
    /* ENOSPC on every write and fallocate while set. */
    io_sim_fault_set(n, IO_SIM_FAULT_WRITE_ENOSPC, 1000000);
    CHECK_EQ(a_write(w, n, fd, "x", 1, 0), -ENOSPC);
    CHECK_EQ(io_fs_pwrite(n, fd, "x", 1, 0), -ENOSPC);
    io_sim_fault_set(n, IO_SIM_FAULT_WRITE_ENOSPC, 0);
    CHECK_EQ(a_write(w, n, fd, "x", 1, 0), 1);
    io_sim_fault_at(n, IO_SIM_FAULT_FALLOCATE_ENOSPC, 1);
    struct oneshot o;
    io_fallocate(n, os(&o), fd, 0, 0, 1 << 20);
    CHECK(run_until_flag(w, &o.done));
    CHECK_EQ(o.res, -ENOSPC);
    io_fallocate(n, os(&o), fd, 0, 0, 1 << 20);
    CHECK(run_until_flag(w, &o.done));
    CHECK_EQ(o.res, 0);
    CHECK_EQ(io_fs_size(n, fd), 1 << 20);
    io_fallocate(n, os(&o), fd, FALLOC_FL_KEEP_SIZE, 0, 2 << 20);
    CHECK(run_until_flag(w, &o.done));
    CHECK_EQ(io_fs_size(n, fd), 1 << 20);
    /* Read EIO by probability 1. */
    io_sim_fault_set(n, IO_SIM_FAULT_READ_EIO, 1000000);
    uint8_t b[4];
    CHECK_EQ(a_read(w, n, fd, b, 4, 0), -EIO);
    CHECK_EQ(io_sim_fault_count(n), 5);
    /* A 50% fault rate hits roughly half of many ops. */
    io_sim_fault_set(n, IO_SIM_FAULT_READ_EIO, 500000);
    int fails = 0;
    for (int i = 0; i < 400; i++)
        if (io_fs_pread(n, fd, b, 4, 0) == -EIO) fails++;
    CHECK(fails > 120 && fails < 280);
    io_sim_world_destroy(w);
}

TEST(odirect_alignment_and_latency)
{
    io_sim_world *w = NULL;
    struct io_sim_opts o = {.seed = test_seed(), .disk_latency_min_ns = 100000,
                            .disk_latency_max_ns = 300000};
    CHECK_EQ(io_sim_world_create(&w, &o), 0);
    io *n = io_sim_node_create(w, "n0");
    int fd = a_open(w, n, "d", O_CREAT | O_RDWR | O_DIRECT);
    CHECK(fd >= 0);
    uint8_t *buf = aligned_alloc(4096, 8192);
    memset(buf, 0x5a, 8192);
    uint64_t t0 = io_sim_world_now(w);
    CHECK_EQ(a_write(w, n, fd, buf, 8192, 4096), 8192);
    uint64_t dt = io_sim_world_now(w) - t0;
    CHECK(dt >= 100000 && dt <= 300000);
    CHECK_EQ(a_write(w, n, fd, buf + 1, 4096, 0), -EINVAL);
    CHECK_EQ(a_write(w, n, fd, buf, 4095, 0), -EINVAL);
    CHECK_EQ(a_write(w, n, fd, buf, 4096, 512), -EINVAL);
    CHECK_EQ(a_read(w, n, fd, buf + 8, 4096, 0), -EINVAL);
    CHECK_EQ(io_fs_pwrite(n, fd, buf, 100, 0), -EINVAL);
    CHECK_EQ(a_read(w, n, fd, buf, 8192, 0), 8192);
    for (int i = 0; i < 4096; i++) CHECK_EQ(buf[i], 0); /* the hole before the write */
    CHECK_EQ(buf[4096], 0x5a);
    free(buf);
    io_sim_world_destroy(w);
}

TEST(fs_namespace_semantics)
{
    io_sim_world *w = world(test_seed(), false);
    io *n = io_sim_node_create(w, "n0");
    CHECK_EQ(io_fs_mkdir(n, "/a/b", 0755), -ENOENT); /* parent missing */
    CHECK_EQ(io_fs_mkdir(n, "/a", 0755), 0);
    CHECK_EQ(io_fs_mkdir(n, "/a", 0755), 0);
    CHECK_EQ(io_fs_mkdir(n, "/a/b", 0755), 0);
    CHECK_EQ(io_fs_open(n, "/a/nope/f", O_CREAT | O_RDWR, 0644), -ENOENT);
    const char *names[] = {"z", "m", "b2", "a"};
    for (int i = 0; i < 4; i++) {
        char p[64];
        snprintf(p, sizeof(p), "/a/b/%s", names[i]);
        int fd = io_fs_open(n, p, O_CREAT | O_RDWR, 0644);
        CHECK(fd >= 0);
        CHECK_EQ(io_fs_close(n, fd), 0);
    }
    CHECK_EQ(io_fs_open(n, "/a/b/a", O_CREAT | O_EXCL | O_RDWR, 0644), -EEXIST);
    char **v;
    int cnt = io_fs_list(n, "/a/b", &v);
    CHECK_EQ(cnt, 4);
    CHECK(!strcmp(v[0], "a") && !strcmp(v[1], "b2") && !strcmp(v[2], "m") && !strcmp(v[3], "z"));
    io_fs_list_free(v, cnt);
    CHECK_EQ(io_fs_list(n, "/a", &v), 1);
    io_fs_list_free(v, 1);
    CHECK_EQ(io_fs_rmdir(n, "/a/b"), -ENOTEMPTY);
    CHECK_EQ(io_fs_unlink(n, "/a/b"), -EISDIR);
    CHECK_EQ(io_fs_rename(n, "/a/b", "/a/c"), 0); /* directory rename moves children */
    CHECK_EQ(io_fs_exists(n, "/a/c/m"), 1);
    CHECK_EQ(io_fs_exists(n, "/a/b/m"), 0);
    CHECK_EQ(io_fs_rename(n, "/a/c/m", "/a/c/z"), 0); /* replaces */
    CHECK_EQ(io_fs_list(n, "/a/c", &v), 3);
    io_fs_list_free(v, 3);
    int fd = io_fs_open(n, "/a/c/z", O_RDWR, 0);
    CHECK(fd >= 0);
    CHECK_EQ(io_fs_ftruncate(n, fd, 100), 0);
    CHECK_EQ(io_fs_size(n, fd), 100);
    CHECK_EQ(io_fs_close(n, fd), 0);
    CHECK_EQ(io_fs_close(n, fd), -EBADF);
    CHECK_EQ(io_fs_open(n, "/a/c/z", O_RDONLY | O_DIRECTORY, 0), -ENOTDIR);
    CHECK_EQ(io_fs_open(n, "/a/c", O_RDWR, 0), -EISDIR);
    CHECK_EQ(io_fs_fsync_dir(n, "/a/c/z"), -ENOTDIR);
    uint8_t *data;
    size_t len;
    CHECK_EQ(io_fs_read_all(n, "/a/c/z", 10, &data, &len), -EFBIG);
    CHECK_EQ(io_fs_read_all(n, "/a/c/q", 10, &data, &len), -ENOENT);
    io_sim_world_destroy(w);
}

TEST(timeouts_and_cancel)
{
    io_sim_world *w = world(test_seed(), false);
    io *n = io_sim_node_create(w, "n0");
    struct oneshot a, b;
    uint64_t t0 = io_now_ns(n);
    io_timeout(n, os(&a), t0 + 5000000);
    io_timeout(n, os(&b), t0 + 9000000);
    CHECK(run_until_flag(w, &a.done));
    CHECK_EQ(a.res, -ETIME);
    CHECK_EQ(io_now_ns(n), t0 + 5000000); /* virtual: exactly on time */
    io_cancel(n, &b.op);
    CHECK(run_until_flag(w, &b.done));
    CHECK_EQ(b.res, -ECANCELED);
    CHECK_EQ(io_now_ns(n), t0 + 5000000);
    /* The stale event at t0 + 9 ms does nothing; the world goes idle after it. */
    for (int i = 0; i < 10 && io_sim_world_step(w) > 0; i++) {}
    CHECK_EQ(io_sim_world_step(w), 0);
    CHECK(io_wall_ms(n) > 1700000000000ll);
    io_sim_world_destroy(w);
}

/* ---- network ---- */

struct peer {
    io *n;
    int fd, got_eof, err;
    io_op rop, sop, aop;
    uint8_t rbuf[4096];
    uint64_t received;
    uint64_t last_recv_ns;
    int accepted_fd, n_accepted;
};

static void peer_recv_cb(io_op *op)
{
    struct peer *p = op->ctx;
    if (op->res < 0) {
        p->err = op->res;
        return;
    }
    if (op->res == 0) {
        p->got_eof = 1;
        return;
    }
    p->received += (uint64_t)op->res;
    p->last_recv_ns = io_now_ns(p->n);
    io_recv(p->n, &p->rop, p->fd, p->rbuf, sizeof(p->rbuf));
}

static void peer_accept_cb(io_op *op)
{
    struct peer *p = op->ctx;
    if (op->res < 0) {
        p->err = op->res;
        return;
    }
    if (p->n_accepted++ > 0) return; /* keep the first connection only */
    p->accepted_fd = op->res;
    p->fd = op->res;
    io_recv(p->n, &p->rop, p->fd, p->rbuf, sizeof(p->rbuf));
}

static void peer_init(struct peer *p, io *n)
{
    memset(p, 0, sizeof(*p));
    p->n = n;
    p->fd = -1;
    p->rop = (io_op){.cb = peer_recv_cb, .ctx = p};
    p->aop = (io_op){.cb = peer_accept_cb, .ctx = p};
}

/* Sets up a listener on b:port and a connection from a to it; returns a's fd. */
static int connect_pair(io_sim_world *w, io *a, io *b, struct peer *srv, uint16_t port)
{
    peer_init(srv, b);
    int lfd = io_listen(b, NULL, port, false, 16);
    if (lfd < 0) return lfd;
    io_accept(b, &srv->aop, lfd);
    struct oneshot c;
    io_connect(a, os(&c), io_sim_node_addr(b), port);
    if (!run_until_flag(w, &c.done)) return -9999;
    if (c.res < 0) return c.res;
    for (int i = 0; i < 1000 && !srv->n_accepted; i++) io_sim_world_step(w);
    return srv->n_accepted ? c.res : -9998;
}

static int send_all(io_sim_world *w, io *n, int fd, const uint8_t *buf, size_t len)
{
    size_t done = 0;
    for (int k = 0; k < 100000 && done < len; k++) {
        struct oneshot o;
        io_send(n, os(&o), fd, buf + done, len - done);
        if (!run_until_flag(w, &o.done)) return -9999;
        if (o.res < 0) return o.res;
        done += (size_t)o.res;
    }
    return (int)done;
}

TEST(network_delivery_order_and_eof)
{
    io_sim_world *w = world(test_seed(), false);
    io *a = io_sim_node_create(w, "a"), *b = io_sim_node_create(w, "b");
    CHECK(!strcmp(io_sim_node_addr(b), "10.0.0.2"));
    struct peer srv;
    int fd = connect_pair(w, a, b, &srv, 9092);
    CHECK(fd >= 0);
    /* 1 MiB in one go: sends are short (64 KiB max, 256 KiB window) and all arrive. */
    size_t len = 1 << 20;
    uint8_t *buf = malloc(len);
    for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)(i ^ (i >> 8));
    struct oneshot o;
    io_send(a, os(&o), fd, buf, len);
    CHECK(run_until_flag(w, &o.done));
    CHECK(o.res > 0 && o.res <= 65536);
    CHECK_EQ(send_all(w, a, fd, buf + o.res, len - (size_t)o.res), (int)(len - (size_t)o.res));
    io_close_now(a, fd);
    CHECK(run_until_flag(w, &srv.got_eof));
    CHECK_EQ(srv.received, len);
    CHECK_EQ(srv.err, 0);
    /* Connecting to a port nobody listens on is refused; unknown hosts are unreachable. */
    struct oneshot c;
    io_connect(a, os(&c), "10.0.0.2", 1234);
    CHECK(run_until_flag(w, &c.done));
    CHECK_EQ(c.res, -ECONNREFUSED);
    io_connect(a, os(&c), "10.9.9.9", 1234);
    CHECK(run_until_flag(w, &c.done));
    CHECK_EQ(c.res, -ENETUNREACH);
    io_connect(a, os(&c), "b", 9092); /* by name */
    CHECK(run_until_flag(w, &c.done));
    CHECK(c.res >= 0);
    free(buf);
    io_sim_world_destroy(w);
}

TEST(partition_fail_and_heal)
{
    io_sim_world *w = world(test_seed(), false);
    io *a = io_sim_node_create(w, "a"), *b = io_sim_node_create(w, "b");
    struct peer srv;
    int fd = connect_pair(w, a, b, &srv, 9000);
    CHECK(fd >= 0);
    struct peer cli;
    peer_init(&cli, a);
    cli.fd = fd;
    io_recv(a, &cli.rop, fd, cli.rbuf, sizeof(cli.rbuf));
    io_sim_partition(w, io_sim_node_id(a), io_sim_node_id(b), IO_SIM_PART_FAIL);
    CHECK(run_until_flag(w, &cli.err));
    CHECK_EQ(cli.err, -ECONNRESET);
    CHECK_EQ(srv.err, -ECONNRESET);
    struct oneshot c;
    io_connect(a, os(&c), "10.0.0.2", 9000);
    CHECK(run_until_flag(w, &c.done));
    CHECK_EQ(c.res, -EHOSTUNREACH);
    io_sim_heal(w, 0, 1);
    io_connect(a, os(&c), "10.0.0.2", 9000);
    CHECK(run_until_flag(w, &c.done));
    CHECK(c.res >= 0);
    io_sim_world_destroy(w);
}

TEST(partition_hang_delays_until_heal)
{
    io_sim_world *w = world(test_seed(), false);
    io *a = io_sim_node_create(w, "a"), *b = io_sim_node_create(w, "b");
    struct peer srv;
    int fd = connect_pair(w, a, b, &srv, 9000);
    CHECK(fd >= 0);
    io_sim_isolate(w, 1, IO_SIM_PART_HANG);
    uint8_t msg[100];
    memset(msg, 1, sizeof(msg));
    CHECK_EQ(send_all(w, a, fd, msg, sizeof(msg)), 100);
    uint64_t t0 = io_sim_world_now(w);
    CHECK(io_sim_world_run_until(w, t0 + 2000000000ull, 0) >= 0);
    CHECK_EQ(srv.received, 0); /* nothing crossed in 2 virtual seconds */
    CHECK_EQ(srv.err, 0);
    /* A connect hangs as well. */
    struct oneshot c;
    io_connect(a, os(&c), "10.0.0.2", 9000);
    CHECK(io_sim_world_run_until(w, t0 + 3000000000ull, 0) >= 0);
    CHECK(!c.done);
    io_sim_heal_all(w);
    CHECK(run_until_flag(w, &c.done));
    CHECK(c.res >= 0);
    for (int i = 0; i < 10000 && srv.received < 100; i++) io_sim_world_step(w);
    CHECK_EQ(srv.received, 100);
    CHECK(srv.last_recv_ns >= t0 + 3000000000ull);
    io_sim_world_destroy(w);
}

TEST(connection_drops_and_crash_resets_peers)
{
    io_sim_world *w = NULL;
    struct io_sim_opts o = {.seed = test_seed(), .net_drop_ppm = 1000000};
    CHECK_EQ(io_sim_world_create(&w, &o), 0);
    io *a = io_sim_node_create(w, "a"), *b = io_sim_node_create(w, "b");
    struct peer srv;
    int fd = connect_pair(w, a, b, &srv, 9000);
    CHECK(fd >= 0);
    CHECK_EQ(send_all(w, a, fd, (const uint8_t *)"hello", 5), 5);
    CHECK(run_until_flag(w, &srv.err));
    CHECK_EQ(srv.err, -ECONNRESET);
    CHECK_EQ(srv.received, 0);
    io_sim_world_destroy(w);

    /* A crashed peer: the survivor's pending recv gets -ECONNRESET, listeners are gone. */
    w = world(test_seed(), false);
    a = io_sim_node_create(w, "a");
    b = io_sim_node_create(w, "b");
    fd = connect_pair(w, a, b, &srv, 9000);
    CHECK(fd >= 0);
    struct peer cli;
    peer_init(&cli, a);
    cli.fd = fd;
    io_recv(a, &cli.rop, fd, cli.rbuf, sizeof(cli.rbuf));
    io_sim_crash(b);
    CHECK(run_until_flag(w, &cli.err));
    CHECK_EQ(cli.err, -ECONNRESET);
    b = io_sim_restart(b);
    struct oneshot c;
    io_connect(a, os(&c), "10.0.0.2", 9000);
    CHECK(run_until_flag(w, &c.done));
    CHECK_EQ(c.res, -ECONNREFUSED);
    io_sim_world_destroy(w);
}

/* ---- determinism over a mixed scenario ---- */

#define DN 3

struct dnode {
    io *n;
    io_op top, fop, aop, cop, sop, rop;
    int fd, lfd, sock, acc;
    int step;
    uint64_t writes, syncs, ticks, rx, tx;
    uint8_t buf[4096], rbuf[4096];
    uint64_t rng;
};

static struct dnode dn[DN];

static uint64_t d_rand(struct dnode *d)
{
    return io_random(d->n) ^ (d->rng = d->rng * 6364136223846793005ull + 1);
}

static void d_tick(io_op *op);

static void d_file_cb(io_op *op)
{
    struct dnode *d = op->ctx;
    if (op->kind == IO_OP_WRITE) {
        d->writes++;
        io_fdatasync(d->n, &d->fop, d->fd);
    } else {
        d->syncs++;
    }
}

static void d_send_cb(io_op *op)
{
    struct dnode *d = op->ctx;
    if (op->res > 0) d->tx += (uint64_t)op->res;
}

static void d_recv_cb(io_op *op)
{
    struct dnode *d = op->ctx;
    if (op->res <= 0) return;
    d->rx += (uint64_t)op->res;
    io_recv(d->n, &d->rop, d->acc, d->rbuf, sizeof(d->rbuf));
}

static void d_accept_cb(io_op *op)
{
    struct dnode *d = op->ctx;
    if (op->res < 0) return;
    if (d->acc < 0) {
        d->acc = op->res;
        io_recv(d->n, &d->rop, d->acc, d->rbuf, sizeof(d->rbuf));
    } else {
        io_close_now(d->n, op->res);
    }
}

static void d_connect_cb(io_op *op)
{
    struct dnode *d = op->ctx;
    d->sock = op->res >= 0 ? op->res : -1;
}

static void d_tick(io_op *op)
{
    struct dnode *d = op->ctx;
    d->ticks++;
    uint64_t r = d_rand(d);
    if (!d->fop.pending && (r & 3) == 0) {
        size_t len = 1 + (size_t)((r >> 8) % 4000);
        memset(d->buf, (int)(r >> 16), len);
        io_write(d->n, &d->fop, d->fd, d->buf, len, (r >> 20) % 100000);
    }
    if (d->sock >= 0 && !d->sop.pending && (r & 0x30) == 0) {
        size_t len = 1 + (size_t)((r >> 24) % 3000);
        io_send(d->n, &d->sop, d->sock, d->buf, len);
    }
    io_timeout(d->n, &d->top, io_now_ns(d->n) + 100000 + (r >> 40) % 900000);
}

static uint64_t det_run(uint64_t seed, uint64_t *events)
{
    io_sim_world *w = NULL;
    struct io_sim_opts o = {.seed = seed, .torn_writes = true};
    if (io_sim_world_create(&w, &o)) return 0;
    for (int i = 0; i < DN; i++) {
        struct dnode *d = &dn[i];
        memset(d, 0, sizeof(*d));
        char name[16];
        snprintf(name, sizeof(name), "node%d", i);
        d->n = io_sim_node_create(w, name);
        d->rng = seed + (uint64_t)i;
        d->fd = io_fs_open(d->n, "data", O_CREAT | O_RDWR, 0644);
        d->lfd = io_listen(d->n, NULL, 9092, false, 16);
        d->sock = d->acc = -1;
        d->top = (io_op){.cb = d_tick, .ctx = d};
        d->fop = (io_op){.cb = d_file_cb, .ctx = d};
        d->aop = (io_op){.cb = d_accept_cb, .ctx = d};
        d->cop = (io_op){.cb = d_connect_cb, .ctx = d};
        d->sop = (io_op){.cb = d_send_cb, .ctx = d};
        d->rop = (io_op){.cb = d_recv_cb, .ctx = d};
        io_accept(d->n, &d->aop, d->lfd);
        io_timeout(d->n, &d->top, io_now_ns(d->n) + 1000);
    }
    /* A ring: node i connects to node i+1. */
    for (int i = 0; i < DN; i++)
        io_connect(dn[i].n, &dn[i].cop, io_sim_node_addr(dn[(i + 1) % DN].n), 9092);
    uint64_t t0 = io_sim_world_now(w);
    *events = 0;
    for (int k = 0; k < 2000000; k++) {
        int r = io_sim_world_step(w);
        if (r <= 0) break;
        *events += (uint64_t)r;
        if (io_sim_world_now(w) > t0 + 500000000ull) break; /* half a virtual second */
        if (k == 20000) io_sim_partition(w, 0, 1, IO_SIM_PART_HANG);
        if (k == 40000) io_sim_heal_all(w);
    }
    uint64_t h = io_sim_world_hash(w);
    io_sim_world_destroy(w);
    return h;
}

TEST(same_seed_same_trace)
{
    uint64_t seed = test_seed(), e1, e2, e3;
    uint64_t h1 = det_run(seed, &e1);
    uint64_t rx1 = dn[1].rx, w1 = dn[0].writes;
    uint64_t h2 = det_run(seed, &e2);
    CHECK(h1 != 0);
    CHECK_EQ(h1, h2);
    CHECK_EQ(e1, e2);
    CHECK_EQ(dn[1].rx, rx1);
    CHECK_EQ(dn[0].writes, w1);
    CHECK(e1 > 10000);
    CHECK(rx1 > 0 && w1 > 0 && dn[0].syncs > 0);
    uint64_t h3 = det_run(seed + 1, &e3);
    CHECK(h3 != h1);
    printf("    sim: %" PRIu64 " events in 0.5 virtual s; node1 received %" PRIu64
           " bytes, node0 wrote %" PRIu64 " times\n", e1, rx1, w1);
}

/* ---- model check of the disk: random fs ops and crashes against a tiny reference model ---- */

#define MF 4      /* names d/f0..d/f3 */
#define MI 64     /* inodes the model may create per run */
#define MSZ 256   /* file size bound */

struct m_ino {
    uint8_t cur[MSZ], dur[MSZ];
    unsigned cur_len, dur_len;
};

struct model {
    struct m_ino ino[MI];
    int n_ino;
    int cur[MF], dur[MF]; /* name -> inode index or -1 */
    int lw_ino;           /* the last non-durable write (for torn crashes), -1: none */
    unsigned lw_off, lw_len;
};

static void m_path(char *buf, int f)
{
    snprintf(buf, 32, "/d/f%d", f);
}

/* Compares the simulated disk's current state with the model's current state. */
static int m_compare(io *n, struct model *m)
{
    for (int f = 0; f < MF; f++) {
        char p[32];
        m_path(p, f);
        uint8_t got[MSZ + 1];
        long len = slurp(n, p, got, sizeof(got));
        if (m->cur[f] < 0) {
            if (len != -ENOENT) return -1;
            continue;
        }
        struct m_ino *i = &m->ino[m->cur[f]];
        if (len != (long)i->cur_len || memcmp(got, i->cur, i->cur_len) != 0) return -2;
    }
    return 0;
}

TEST(disk_model_check_random_ops_and_crashes)
{
    uint64_t seed = test_seed();
    int crashes = 0;
    for (int run = 0; run < 60; run++) {
        io_sim_world *w = world(seed + (uint64_t)run * 7919, false);
        io *n = io_sim_node_create(w, "n");
        CHECK_EQ(io_sim_fs_mkdir_p(n, "/d"), 0);
        static struct model m;
        memset(&m, 0, sizeof(m));
        for (int f = 0; f < MF; f++) m.cur[f] = m.dur[f] = -1;
        m.lw_ino = -1;
        uint64_t r = seed ^ ((uint64_t)run << 32);
        for (int step = 0; step < 300 && m.n_ino < MI; step++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            unsigned op = (unsigned)(r >> 59) % 8, f = (unsigned)(r >> 40) % MF;
            unsigned g = (unsigned)(r >> 44) % MF;
            char p[32], q[32];
            m_path(p, (int)f);
            m_path(q, (int)g);
            if (op <= 2) { /* write (creating the file if needed) */
                int fd = io_fs_open(n, p, O_CREAT | O_RDWR, 0644);
                CHECK(fd >= 0);
                if (m.cur[f] < 0) m.cur[f] = m.n_ino++;
                struct m_ino *i = &m.ino[m.cur[f]];
                unsigned off = (unsigned)((r >> 20) % 200), len = 1 + (unsigned)((r >> 28) % 50);
                uint8_t data[64];
                memset(data, (int)(r >> 8) & 0xff, sizeof(data));
                CHECK_EQ(io_fs_pwrite(n, fd, data, len, off), len);
                if (off > i->cur_len && i->cur_len < MSZ)
                    memset(i->cur + i->cur_len, 0, off - i->cur_len);
                memcpy(i->cur + off, data, len);
                if (off + len > i->cur_len) i->cur_len = off + len;
                m.lw_ino = m.cur[f];
                m.lw_off = off;
                m.lw_len = len;
                CHECK_EQ(io_fs_close(n, fd), 0);
            } else if (op == 3) { /* fsync a file */
                if (m.cur[f] < 0) continue;
                int fd = io_fs_open(n, p, O_RDWR, 0);
                CHECK(fd >= 0);
                CHECK_EQ(io_fs_fdatasync(n, fd), 0);
                CHECK_EQ(io_fs_close(n, fd), 0);
                struct m_ino *i = &m.ino[m.cur[f]];
                memcpy(i->dur, i->cur, i->cur_len);
                i->dur_len = i->cur_len;
                if (m.lw_ino == m.cur[f]) m.lw_ino = -1;
            } else if (op == 4) { /* fsync the directory */
                CHECK_EQ(io_fs_fsync_dir(n, "/d"), 0);
                memcpy(m.dur, m.cur, sizeof(m.cur));
            } else if (op == 5) { /* rename f -> g */
                int rc = io_fs_rename(n, p, q);
                if (m.cur[f] < 0) {
                    CHECK_EQ(rc, -ENOENT);
                    continue;
                }
                CHECK_EQ(rc, 0);
                if (f != g) {
                    m.cur[g] = m.cur[f];
                    m.cur[f] = -1;
                }
            } else if (op == 6) { /* unlink */
                int rc = io_fs_unlink(n, p);
                CHECK_EQ(rc, m.cur[f] < 0 ? -ENOENT : 0);
                m.cur[f] = -1;
            } else { /* power loss, half the time tearing the last non-durable write */
                unsigned keep = 0;
                uint8_t torn[64];
                bool tear = (r >> 12) & 1;
                CHECK_EQ(io_sim_last_write_len(n), m.lw_ino >= 0 ? m.lw_len : 0);
                if (tear && m.lw_ino >= 0) {
                    keep = (unsigned)((r >> 14) % (m.lw_len + 1));
                    memcpy(torn, m.ino[m.lw_ino].cur + m.lw_off, keep);
                }
                if (tear) io_sim_crash_torn(n, keep);
                else io_sim_crash(n);
                n = io_sim_restart(n);
                CHECK(n);
                crashes++;
                memcpy(m.cur, m.dur, sizeof(m.cur));
                for (int k = 0; k < m.n_ino; k++) {
                    memcpy(m.ino[k].cur, m.ino[k].dur, m.ino[k].dur_len);
                    m.ino[k].cur_len = m.ino[k].dur_len;
                }
                bool reachable = false;
                for (int k = 0; k < MF; k++)
                    if (m.lw_ino >= 0 && m.dur[k] == m.lw_ino) reachable = true;
                if (keep > 0 && reachable) { /* the prefix reached the disk: now durable */
                    struct m_ino *i = &m.ino[m.lw_ino];
                    if (m.lw_off > i->cur_len)
                        memset(i->cur + i->cur_len, 0, m.lw_off - i->cur_len);
                    memcpy(i->cur + m.lw_off, torn, keep);
                    if (m.lw_off + keep > i->cur_len) i->cur_len = m.lw_off + keep;
                    memcpy(i->dur, i->cur, i->cur_len);
                    i->dur_len = i->cur_len;
                }
                m.lw_ino = -1;
            }
            CHECK_EQ(m_compare(n, &m), 0);
        }
        io_sim_world_destroy(w);
    }
    CHECK(crashes > 100);
}

/* ---- network chaos: byte streams stay intact (in order, no gaps or duplicates) while
 * connections are dropped, nodes partitioned (fail and hang) and healed at random ---- */

#define CN 3

struct cconn {
    io *n;
    int fd, dead, connecting;
    uint64_t id;         /* stream id: the pattern depends on it */
    uint64_t sent, recvd;
    io_op sop, rop, cop;
    uint8_t sbuf[2048], rbuf[2048];
    int bad;
};

struct cnode {
    io *n;
    int lfd;
    io_op aop;
    struct cconn in[64]; /* accepted streams */
    int n_in;
};

static struct cnode cnodes[CN];
static struct cconn cout[CN][CN]; /* cout[a][b]: a's stream to b */
static uint64_t chaos_resets, chaos_bytes;

static uint8_t cpat(uint64_t id, uint64_t pos)
{
    uint64_t x = (id + 1) * 0x9e3779b97f4a7c15ull + pos * 0xbf58476d1ce4e5b9ull;
    return (uint8_t)(x >> 56);
}

static void c_recv_cb(io_op *op)
{
    struct cconn *c = op->ctx;
    if (op->res <= 0) {
        if (op->res < 0) chaos_resets++;
        c->dead = 1;
        return;
    }
    for (int i = 0; i < op->res; i++) {
        /* The first 8 bytes of a stream carry its id. */
        uint64_t pos = c->recvd + (uint64_t)i;
        if (pos < 8) {
            c->id |= (uint64_t)c->rbuf[i] << (8 * pos);
            continue;
        }
        if (c->rbuf[i] != cpat(c->id, pos)) c->bad = 1;
    }
    c->recvd += (uint64_t)op->res;
    chaos_bytes += (uint64_t)op->res;
    io_recv(c->n, &c->rop, c->fd, c->rbuf, sizeof(c->rbuf));
}

static void c_accept_cb(io_op *op)
{
    struct cnode *cn = op->ctx;
    if (op->res < 0) return;
    if (cn->n_in >= 64) {
        io_close_now(cn->n, op->res);
        return;
    }
    struct cconn *c = &cn->in[cn->n_in++];
    memset(c, 0, sizeof(*c));
    c->n = cn->n;
    c->fd = op->res;
    c->rop = (io_op){.cb = c_recv_cb, .ctx = c};
    io_recv(c->n, &c->rop, c->fd, c->rbuf, sizeof(c->rbuf));
}

static void c_send_cb(io_op *op)
{
    struct cconn *c = op->ctx;
    if (op->res < 0) {
        chaos_resets++;
        c->dead = 1;
        return;
    }
    c->sent += (uint64_t)op->res;
}

static void c_connect_cb(io_op *op)
{
    struct cconn *c = op->ctx;
    c->connecting = 0;
    if (op->res < 0) {
        c->dead = 1;
        return;
    }
    c->fd = op->res;
    c->sent = 0;
}

static void c_send_some(struct cconn *c, uint64_t r)
{
    if (c->dead || c->connecting || c->fd < 0 || c->sop.pending) return;
    size_t len = 1 + (size_t)(r % sizeof(c->sbuf));
    for (size_t i = 0; i < len; i++) {
        uint64_t pos = c->sent + i;
        c->sbuf[i] = pos < 8 ? (uint8_t)(c->id >> (8 * pos)) : cpat(c->id, pos);
    }
    io_send(c->n, &c->sop, c->fd, c->sbuf, len);
}

TEST(network_chaos_streams_intact)
{
    io_sim_world *w = NULL;
    struct io_sim_opts o = {.seed = test_seed(), .net_drop_ppm = 2000};
    CHECK_EQ(io_sim_world_create(&w, &o), 0);
    memset(cnodes, 0, sizeof(cnodes));
    memset(cout, 0, sizeof(cout));
    chaos_resets = chaos_bytes = 0;
    for (int i = 0; i < CN; i++) {
        char name[16];
        snprintf(name, sizeof(name), "c%d", i);
        cnodes[i].n = io_sim_node_create(w, name);
        cnodes[i].lfd = io_listen(cnodes[i].n, NULL, 7000, false, 64);
        CHECK(cnodes[i].lfd >= 0);
        cnodes[i].aop = (io_op){.cb = c_accept_cb, .ctx = &cnodes[i]};
        io_accept(cnodes[i].n, &cnodes[i].aop, cnodes[i].lfd);
    }
    uint64_t next_id = 1, r = test_seed() | 1;
    int streams = 0;
    for (int step = 0; step < 30000; step++) {
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        int a = (int)(r % CN), b = (int)((r >> 8) % CN);
        struct cconn *c = &cout[a][b];
        if (a != b && !c->connecting && (c->fd <= 0 || c->dead) && streams < 60) {
            if (c->fd > 0) io_close_now(c->n, c->fd);
            memset(c, 0, sizeof(*c));
            c->n = cnodes[a].n;
            c->id = next_id++;
            c->connecting = 1;
            c->sop = (io_op){.cb = c_send_cb, .ctx = c};
            c->cop = (io_op){.cb = c_connect_cb, .ctx = c};
            io_connect(c->n, &c->cop, io_sim_node_addr(cnodes[b].n), 7000);
            streams++;
        } else if (a != b) {
            c_send_some(c, r >> 16);
        }
        unsigned ev = (unsigned)(r >> 40) % 1000;
        if (ev < 3) io_sim_partition(w, a, b, (r >> 50) & 1 ? IO_SIM_PART_HANG : IO_SIM_PART_FAIL);
        else if (ev < 9) io_sim_heal_all(w);
        for (int k = 0; k < 3; k++)
            if (io_sim_world_step(w) <= 0) break;
    }
    io_sim_heal_all(w);
    io_sim_world_run_until(w, io_sim_world_now(w) + 5000000000ull, 0);
    /* Every received stream is an intact prefix of what its sender sent. */
    uint64_t total_recv = 0;
    for (int i = 0; i < CN; i++)
        for (int k = 0; k < cnodes[i].n_in; k++) {
            struct cconn *in = &cnodes[i].in[k];
            CHECK_EQ(in->bad, 0);
            total_recv += in->recvd;
        }
    /* Streams still alive at the end delivered everything that was sent. */
    for (int a = 0; a < CN; a++)
        for (int b = 0; b < CN; b++) {
            struct cconn *c = &cout[a][b];
            if (a == b || c->dead || c->connecting || c->fd <= 0 || c->sent < 8) continue;
            bool found = false;
            for (int k = 0; k < cnodes[b].n_in; k++)
                if (cnodes[b].in[k].id == c->id) {
                    found = true;
                    CHECK_EQ(cnodes[b].in[k].recvd, c->sent);
                }
            CHECK(found);
        }
    CHECK(total_recv > 100000);
    CHECK(chaos_resets > 0);
    printf("    network chaos: %d streams, %" PRIu64 " bytes delivered intact, %" PRIu64
           " resets\n", streams, total_recv, chaos_resets);
    io_sim_world_destroy(w);
}

TEST(durable_dirents_option)
{
    io_sim_world *w = NULL;
    struct io_sim_opts o = {.seed = test_seed(), .durable_dirents = true};
    CHECK_EQ(io_sim_world_create(&w, &o), 0);
    io *n = io_sim_node_create(w, "n0");
    CHECK_EQ(io_fs_mkdir(n, "/x", 0755), 0);
    int fd = io_fs_open(n, "/x/f", O_CREAT | O_RDWR, 0644);
    CHECK_EQ(io_fs_pwrite(n, fd, "durable", 7, 0), 7);
    CHECK_EQ(io_fs_fsync(n, fd), 0); /* no directory fsync anywhere */
    CHECK_EQ(io_fs_rename(n, "/x/f", "/x/g"), 0);
    io_sim_crash(n);
    n = io_sim_restart(n);
    uint8_t buf[16];
    CHECK_EQ(slurp(n, "/x/g", buf, sizeof(buf)), 7);
    CHECK_MEM(buf, "durable", 7);
    CHECK_EQ(io_fs_exists(n, "/x/f"), 0);
    io_sim_world_destroy(w);
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}

/* A receiver that keeps every byte (for checking gathered sends byte for byte). */
struct keeper {
    io *n;
    int fd, eof, err;
    io_op rop, aop;
    uint8_t *buf;
    size_t cap, got;
};

static void keeper_recv_cb(io_op *op)
{
    struct keeper *k = op->ctx;
    if (op->res <= 0) {
        if (op->res < 0) k->err = op->res;
        else k->eof = 1;
        return;
    }
    k->got += (size_t)op->res;
    if (k->got >= k->cap) {
        k->err = -EOVERFLOW;
        return;
    }
    io_recv(k->n, &k->rop, k->fd, k->buf + k->got, k->cap - k->got);
}

static void keeper_accept_cb(io_op *op)
{
    struct keeper *k = op->ctx;
    if (op->res < 0 || k->fd >= 0) return;
    k->fd = op->res;
    io_recv(k->n, &k->rop, k->fd, k->buf, k->cap);
}

/* io_sendmsg: 300 iovecs of random sizes (empty ones included, 2.5 MiB in all) go out through
 * short gathered sends (64 KiB max per send, partial writes ending inside iovecs), advanced with
 * io_iov_advance, and arrive byte for byte in order; a send on a reset socket fails. */
TEST(sendmsg_gathered_partial_writes)
{
    io_sim_world *w = world(test_seed(), false);
    io *a = io_sim_node_create(w, "a"), *b = io_sim_node_create(w, "b");
    enum { NV = 300 };
    size_t cap = 4u << 20;
    struct keeper k = {.n = b, .fd = -1, .cap = cap};
    k.buf = malloc(cap);
    k.rop = (io_op){.cb = keeper_recv_cb, .ctx = &k};
    k.aop = (io_op){.cb = keeper_accept_cb, .ctx = &k};
    int lfd = io_listen(b, NULL, 9093, false, 4);
    CHECK(lfd >= 0);
    io_accept(b, &k.aop, lfd);
    struct oneshot c;
    io_connect(a, os(&c), io_sim_node_addr(b), 9093);
    CHECK(run_until_flag(w, &c.done));
    CHECK(c.res >= 0);
    uint64_t rng = test_seed() | 1;
    struct iovec iov[NV];
    uint8_t *src = malloc(cap), *expect = malloc(cap);
    size_t total = 0;
    for (int i = 0; i < NV; i++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        size_t len = i % 7 == 3 ? 0 : (size_t)(rng % 17000);
        for (size_t j = 0; j < len; j++) src[total + j] = (uint8_t)(rng >> (j % 56));
        iov[i] = (struct iovec){.iov_base = src + total, .iov_len = len};
        memcpy(expect + total, src + total, len);
        total += len;
    }
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = NV};
    size_t left = total, shorts = 0;
    for (int guard = 0; left > 0 && guard < 100000; guard++) {
        struct oneshot o;
        io_sendmsg(a, os(&o), c.res, &msg);
        CHECK(run_until_flag(w, &o.done));
        CHECK(o.res > 0);
        if ((size_t)o.res < left) shorts++;
        size_t before = left;
        left = io_iov_advance(&msg, (size_t)o.res);
        CHECK_EQ(before - left, (size_t)o.res);
    }
    CHECK_EQ(left, 0);
    CHECK(shorts > 10);
    for (int i = 0; i < 100000 && k.got < total && !k.err; i++) io_sim_world_step(w);
    CHECK_EQ(k.err, 0);
    CHECK_EQ(k.got, total);
    CHECK(memcmp(k.buf, expect, total) == 0);
    /* After the peer is gone the gathered send fails like a plain one. */
    io_close_now(b, k.fd);
    for (int i = 0; i < 1000; i++) io_sim_world_step(w);
    struct iovec one = {.iov_base = src, .iov_len = 100};
    struct msghdr m1 = {.msg_iov = &one, .msg_iovlen = 1};
    int res = 0;
    for (int guard = 0; guard < 100 && res >= 0; guard++) {
        struct oneshot o;
        io_sendmsg(a, os(&o), c.res, &m1);
        CHECK(run_until_flag(w, &o.done));
        res = o.res;
        one.iov_base = src;
        one.iov_len = 100;
        m1.msg_iov = &one;
        m1.msg_iovlen = 1;
    }
    CHECK(res < 0);
    io_close_now(a, c.res);
    free(src);
    free(expect);
    free(k.buf);
    io_sim_world_destroy(w);
}

/* io_offload on the simulator: the job runs at a later simulated time (never inline), through
 * the node's io_fs_* calls; a crash before that drops it (it never ran); io_offload_finish
 * runs a scheduled job now without a callback, or takes back a completed one's callback. */
static int g_off_runs;
static int off_job(io *n, void *arg)
{
    g_off_runs++;
    return io_fs_write_atomic(n, (const char *)arg, "job", 3);
}

static void no_poll_driver(io *n, void *arg)
{
    (void)n;
    (void)arg;
}

TEST(offload_runs_later_and_crash_drops_it)
{
    io_sim_world *w = world(test_seed(), false);
    io *n = io_sim_node_create(w, "n0");
    CHECK_EQ(io_sim_fs_mkdir_p(n, "/d"), 0);
    g_off_runs = 0;
    struct oneshot o;
    io_offload(n, os(&o), off_job, "/d/a");
    CHECK_EQ(g_off_runs, 0);
    CHECK(run_until_flag(w, &o.done));
    CHECK_EQ(o.res, 0);
    CHECK_EQ(g_off_runs, 1);
    uint8_t buf[8];
    CHECK_EQ(slurp(n, "/d/a", buf, sizeof(buf)), 3);

    /* Scheduled, then power loss: it never ran, nothing on disk. */
    io_offload(n, os(&o), off_job, "/d/b");
    io_sim_crash(n);
    n = io_sim_restart(n);
    for (int i = 0; i < 1000; i++)
        if (io_sim_world_step(w) <= 0) break;
    CHECK_EQ(g_off_runs, 1);
    CHECK_EQ(io_fs_exists(n, "/d/b"), 0);
    CHECK_EQ(io_fs_exists(n, "/d/a"), 1);

    /* finish while scheduled: runs now, no callback later. */
    io_offload(n, os(&o), off_job, "/d/c");
    CHECK_EQ(io_offload_finish(n, &o.op), 0);
    CHECK_EQ(g_off_runs, 2);
    CHECK_EQ(io_fs_exists(n, "/d/c"), 1);
    for (int i = 0; i < 1000; i++) {
        if (io_sim_world_step(w) <= 0) break;
        io_poll(n, 0);
    }
    CHECK_EQ(o.done, 0);
    CHECK_EQ(g_off_runs, 2);

    /* finish after it ran, before io_poll delivered the callback (a driver that does not
     * poll keeps the completion queued). */
    io_sim_node_set_driver(n, no_poll_driver, NULL);
    io_offload(n, os(&o), off_job, "/d/e");
    for (int i = 0; i < 100000 && g_off_runs < 3; i++)
        if (io_sim_world_step(w) <= 0) break;
    io_sim_node_set_driver(n, NULL, NULL);
    CHECK_EQ(g_off_runs, 3);
    CHECK_EQ(o.done, 0);
    CHECK_EQ(io_offload_finish(n, &o.op), 0);
    for (int i = 0; i < 1000; i++) {
        if (io_sim_world_step(w) <= 0) break;
        io_poll(n, 0);
    }
    CHECK_EQ(o.done, 0);
    io_sim_world_destroy(w);
}
