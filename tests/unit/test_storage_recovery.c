/*
 * test_storage_recovery.c — recovery speed-ups and the write buffer, checked for correctness:
 * the active segment's write buffer grows in one step to the write window and is given back
 * when idle; a clean close indexes a large active segment and the next open trusts it only
 * after checking its last batches (a tampered tail is still cut); a crash-recovered large
 * segment (scanned through the read-ahead) still cuts a torn or corrupt tail and stray bytes
 * after the end; storage_log_scan_headers returns exactly the stored batches (memory and
 * disk, across segments, early stop, errors); and torn last writes of a multi-MiB segment on
 * the simulated disk keep every acknowledged batch.
 */
#include "storage_util.h"

#include "base/log.h"
#include "reactor/io_sim.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- a model of what was appended ---- */

typedef struct mbatch {
    int64_t base, last, pid;
    size_t len;
    uint8_t *bytes;
} mbatch;

typedef struct model {
    mbatch *v;
    int n, cap;
} model;

static void model_free(model *m)
{
    for (int i = 0; i < m->n; i++) free(m->v[i].bytes);
    free(m->v);
    memset(m, 0, sizeof(*m));
}

static void model_cut(model *m, int k)
{
    while (m->n > k) free(m->v[--m->n].bytes);
}

/* Builds a batch of nrec records of vlen bytes each (producer pid, -1 for none), appends it
 * with term 1 and records it. Returns the append rc. */
static int append_batch(storage_log *log, model *m, int nrec, size_t vlen, int64_t pid)
{
    static uint8_t val[6u << 20];
    static uint8_t out[(6u << 20) + 4096];
    storage_build_record recs[64];
    AL_ASSERT(nrec > 0 && nrec <= 64 && vlen * (size_t)nrec <= sizeof(val));
    for (size_t i = 0; i < vlen * (size_t)nrec; i++) val[i] = (uint8_t)(i * 7 + (size_t)m->n);
    for (int i = 0; i < nrec; i++)
        recs[i] = (storage_build_record){i, i, "k", 1, val + (size_t)i * vlen, (int32_t)vlen,
                                         NULL, 0};
    storage_build_params p = {0, 0, 0, -1, 1000 + m->n, 1000 + m->n, pid, pid >= 0 ? 0 : -1,
                              pid >= 0 ? m->n : -1};
    int64_t sz = storage_batch_build(out, sizeof(out), &p, recs, nrec);
    AL_ASSERT(sz > 0);
    storage_append_result r;
    int rc = storage_log_append(log, 1, out, (size_t)sz, &r);
    if (rc < 0) return rc;
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 64;
        m->v = realloc(m->v, (size_t)m->cap * sizeof(*m->v));
        AL_ASSERT(m->v);
    }
    mbatch *b = &m->v[m->n++];
    b->base = r.base_offset;
    b->last = r.last_offset;
    b->pid = pid;
    b->len = (size_t)sz;
    b->bytes = malloc((size_t)sz);
    memcpy(b->bytes, out, (size_t)sz); /* stamped in place by the append */
    return 0;
}

/* Waits until everything appended is durable. Returns the waiter's result. */
static int sync_all(storage_log *log)
{
    su_wait w = {.w = {.cb = su_wait_cb}};
    int rc = storage_log_flush_wait(log, storage_log_last_offset(log), &w.w);
    if (rc == 1) return 0;
    if (rc < 0) return rc;
    if (!su_poll_until(su_test_io(), &w.done, 30000)) return AL_ETIMEDOUT;
    return w.res;
}

/* Reads the whole log and compares it with the first `expect` batches of the model, byte for
 * byte; also checks the next offset. Returns 0 or -1 (printing what differs). */
static int verify(storage_log *log, const model *m, int expect)
{
    int k = 0;
    int64_t off = storage_log_start_offset(log);
    for (int guard = 0; guard < 1000000; guard++) {
        su_read sr = {0};
        sr.r.offset = off;
        sr.r.max_bytes = 256 * 1024;
        sr.r.cb = su_read_cb;
        int rc = storage_log_read(log, &sr.r);
        if (rc < 0) return -1;
        if (rc == 0 && !su_poll_until(su_test_io(), &sr.done, 30000)) return -1;
        if (sr.r.res < 0) return -1;
        if (sr.r.len == 0) break;
        for (size_t pos = 0; pos < sr.r.len;) {
            storage_batch_hdr h;
            int64_t sz = storage_batch_validate(sr.r.data + pos, sr.r.len - pos, 0, &h);
            if (sz < 0 || k >= expect || (size_t)sz != m->v[k].len ||
                h.base_offset != m->v[k].base ||
                memcmp(sr.r.data + pos, m->v[k].bytes, (size_t)sz) != 0) {
                fprintf(stderr, "    batch %d differs (expected %d)\n", k, expect);
                storage_read_release(&sr.r);
                return -1;
            }
            pos += (size_t)sz;
            k++;
        }
        off = sr.r.next_offset;
        storage_read_release(&sr.r);
    }
    if (k != expect) {
        fprintf(stderr, "    %d batches read, %d expected\n", k, expect);
        return -1;
    }
    int64_t next = expect ? m->v[expect - 1].last + 1 : 0;
    if (storage_log_high_offset(log) != next) {
        fprintf(stderr, "    next offset %lld, expected %lld\n",
                (long long)storage_log_high_offset(log), (long long)next);
        return -1;
    }
    return 0;
}

static void log_dir(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", test_tmpdir(), name);
}

/* Path of the data (ext ".log") or index file of the segment with base offset base, term 1. */
static void seg_file(char *out, size_t n, const char *dir, int64_t base, const char *ext)
{
    snprintf(out, n, "%s/%020lld-1%s", dir, (long long)base, ext);
}

static int64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

/* Overwrites n bytes at off of path with `byte` (a crash or bit rot the log did not write). */
static void poke(const char *path, uint64_t off, uint8_t byte, size_t n)
{
    int fd = open(path, O_WRONLY);
    AL_ASSERT(fd >= 0);
    uint8_t b[8192];
    AL_ASSERT(n <= sizeof(b));
    memset(b, byte, n);
    AL_ASSERT(pwrite(fd, b, n, (off_t)off) == (ssize_t)n);
    AL_ASSERT(fsync(fd) == 0);
    close(fd);
}

/* File position of model batch k (all in one segment starting at batch 0). */
static uint64_t batch_pos(const model *m, int k)
{
    uint64_t pos = 0;
    for (int i = 0; i < k; i++) pos += m->v[i].len;
    return pos;
}

/* ---- the write buffer ---- */

/* Appends 896 KiB in 14 KiB batches, below flush_bytes and with no waiter: no write starts, so
 * all of it gathers in the write buffer (as during one long write). Checks the buffer holds it
 * within 4 MiB and reports it in *bi. */
static void wbuf_fill(storage_log *log, model *m, storage_log_buf_info *bi)
{
    for (int i = 0; i < 64; i++) CHECK_EQ(append_batch(log, m, 14, 1000, -1), 0);
    storage_log_buf_info_get(log, bi);
    fprintf(stderr, "    after 896 KiB: %llu buffer bytes, %llu regrows\n",
            (unsigned long long)bi->bytes, (unsigned long long)bi->regrows);
    CHECK(bi->bytes >= 896u << 10);
    CHECK(bi->bytes <= (4u << 20));
}

/* Closes log, opens dir again with c and checks it holds exactly model m. */
static void reopen_verify(storage_log *log, const char *dir, const storage_log_config *c,
                          const model *m)
{
    storage_log_close(log);
    log = NULL;
    CHECK_EQ(storage_log_open(su_test_io(), dir, c, &log), 0);
    if (log) {
        CHECK_EQ(verify(log, m, m->n), 0);
        storage_log_close(log);
    }
}

TEST(write_buffer_grows_in_one_step_and_is_trimmed_when_idle)
{
    char dir[512];
    log_dir(dir, sizeof(dir), "wbuf");
    storage_log_config c;
    storage_log_config_default(&c); /* flush_bytes 1 MiB */
    storage_log *log = NULL;
    CHECK_EQ(storage_log_open(su_test_io(), dir, &c, &log), 0);
    model m = {0};
    /* Doubling from 16 KiB would regrow 6 times; sizing by the write window, twice
     * (16 KiB -> 64 KiB -> window). */
    storage_log_buf_info bi;
    wbuf_fill(log, &m, &bi);
    CHECK(bi.regrows <= 2);
    /* Several writes while appending more: the spare buffer is as big, no further regrowth. */
    for (int r = 0; r < 8; r++) {
        for (int i = 0; i < 40; i++) CHECK_EQ(append_batch(log, &m, 14, 1000, -1), 0);
        storage_log_flush(log);
        for (int i = 0; i < 40; i++) CHECK_EQ(append_batch(log, &m, 14, 1000, -1), 0);
        CHECK_EQ(sync_all(log), 0);
    }
    storage_log_buf_info_get(log, &bi);
    CHECK(bi.regrows <= 2);
    /* Idle: the first housekeeping notes the size, the second (nothing appended since)
     * trims to the minimum; the tail block stays, so appends and reads go on correctly. */
    CHECK(storage_log_housekeep(log, 0, 1 << 20) >= 0);
    CHECK(storage_log_housekeep(log, 0, 1 << 20) >= 0);
    storage_log_buf_info_get(log, &bi);
    CHECK(bi.bytes <= 16u << 10);
    CHECK_EQ(verify(log, &m, m.n), 0);
    for (int i = 0; i < 5; i++) CHECK_EQ(append_batch(log, &m, 3, 333, -1), 0);
    CHECK_EQ(sync_all(log), 0);
    CHECK_EQ(verify(log, &m, m.n), 0);
    reopen_verify(log, dir, &c, &m);
    model_free(&m);
}

/* The partition manager opens logs with max_message_bytes = INT32_MAX (Produce checks the
 * topic's limit): the write window must not follow it (it did: every busy log reserved 2 GiB
 * twice). A batch larger than the window still fits. */
TEST(write_buffer_window_does_not_follow_an_unbounded_batch_limit)
{
    char dir[512];
    log_dir(dir, sizeof(dir), "wbuf-unbounded");
    storage_log_config c;
    storage_log_config_default(&c); /* flush_bytes 1 MiB */
    c.max_message_bytes = (uint32_t)INT32_MAX;
    storage_log *log = NULL;
    CHECK_EQ(storage_log_open(su_test_io(), dir, &c, &log), 0);
    model m = {0};
    storage_log_buf_info bi;
    wbuf_fill(log, &m, &bi);
    CHECK_EQ(sync_all(log), 0);
    /* One 3.5 MiB batch: beyond the window, the buffer doubles until it fits. */
    CHECK_EQ(append_batch(log, &m, 64, 56000, -1), 0);
    storage_log_buf_info_get(log, &bi);
    CHECK(bi.bytes <= (32u << 20));
    CHECK_EQ(sync_all(log), 0);
    CHECK_EQ(verify(log, &m, m.n), 0);
    reopen_verify(log, dir, &c, &m);
    model_free(&m);
}

/* ---- clean close: the active segment's index is trusted after a tail check ---- */

TEST(clean_close_indexes_active_segment_and_a_tampered_tail_is_still_cut)
{
    char dir[512], idx[700], data[700];
    log_dir(dir, sizeof(dir), "clean");
    storage_log_config c;
    storage_log_config_default(&c);
    storage_log *log = NULL;
    CHECK_EQ(storage_log_open(su_test_io(), dir, &c, &log), 0);
    model m = {0};
    for (int i = 0; i < 700; i++) CHECK_EQ(append_batch(log, &m, 15, 1000, -1), 0); /* ~10 MiB */
    CHECK_EQ(sync_all(log), 0);
    storage_log_close(log);
    seg_file(idx, sizeof(idx), dir, 0, ".index");
    seg_file(data, sizeof(data), dir, 0, ".log");
    CHECK(file_size(idx) > 0);                                 /* written at the clean close */
    CHECK_EQ(file_size(data), (int64_t)batch_pos(&m, m.n));    /* cut to its size */
    CHECK_EQ(storage_log_open(su_test_io(), dir, &c, &log), 0);
    CHECK_EQ(file_size(idx), -1); /* active again: its index files are stale and removed */
    CHECK_EQ(verify(log, &m, m.n), 0);
    for (int i = 0; i < 10; i++) CHECK_EQ(append_batch(log, &m, 15, 1000, -1), 0);
    CHECK_EQ(sync_all(log), 0);
    storage_log_close(log);
    CHECK_EQ(storage_log_open(su_test_io(), dir, &c, &log), 0);
    CHECK_EQ(verify(log, &m, m.n), 0);
    storage_log_close(log);
    /* A byte of the last batch changes after the clean close (the index still matches the
     * file's size): the tail check refuses the index, the scan cuts the bad batch. */
    CHECK(file_size(idx) > 0);
    poke(data, batch_pos(&m, m.n - 1) + 200, 0x5a, 1);
    al_log_set_level(AL_LOG_ERROR);
    CHECK_EQ(storage_log_open(su_test_io(), dir, &c, &log), 0);
    al_log_set_level(AL_LOG_INFO);
    CHECK_EQ(verify(log, &m, m.n - 1), 0);
    model_cut(&m, m.n - 1);
    /* The log goes on from there. */
    for (int i = 0; i < 3; i++) CHECK_EQ(append_batch(log, &m, 15, 1000, -1), 0);
    CHECK_EQ(sync_all(log), 0);
    storage_log_abandon(log); /* a crash this time: no index, a full scan */
    CHECK_EQ(storage_log_open(su_test_io(), dir, &c, &log), 0);
    CHECK_EQ(verify(log, &m, m.n), 0);
    storage_log_close(log);
    model_free(&m);
}

/* ---- crash recovery of a large segment (read-ahead scan) ---- */

/* Opens a fresh log in dir with about 3.5 MiB of durable batches in one segment, then
 * abandons it as a crash would. */
static void crashed_log(const char *dir, const storage_log_config *c, model *m)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    AL_ASSERT(system(cmd) == 0);
    storage_log *log = NULL;
    AL_ASSERT(storage_log_open(su_test_io(), dir, c, &log) == 0);
    for (int i = 0; i < 240; i++) AL_ASSERT(append_batch(log, m, 15, 1000, -1) == 0);
    AL_ASSERT(sync_all(log) == 0);
    storage_log_abandon(log);
}

TEST(crash_recovery_of_a_large_segment_cuts_torn_corrupt_and_stray_bytes)
{
    char dir[512], data[700];
    log_dir(dir, sizeof(dir), "crash");
    seg_file(data, sizeof(data), dir, 0, ".log");
    storage_log_config c;
    storage_log_config_default(&c);
    storage_log *log = NULL;
    model m = {0};

    /* Nothing wrong: everything back, the preallocated zeros after the end are harmless. */
    crashed_log(dir, &c, &m);
    CHECK_EQ(storage_log_open(su_test_io(), dir, &c, &log), 0);
    CHECK_EQ(verify(log, &m, m.n), 0);
    storage_log_close(log);
    model_free(&m);

    /* Torn: the file ends in the middle of the last batch. */
    crashed_log(dir, &c, &m);
    CHECK_EQ(truncate(data, (off_t)(batch_pos(&m, m.n - 1) + m.v[m.n - 1].len / 2)), 0);
    al_log_set_level(AL_LOG_ERROR);
    CHECK_EQ(storage_log_open(su_test_io(), dir, &c, &log), 0);
    al_log_set_level(AL_LOG_INFO);
    CHECK_EQ(verify(log, &m, m.n - 1), 0);
    CHECK_EQ(file_size(data), (int64_t)batch_pos(&m, m.n - 1));
    storage_log_close(log);
    model_free(&m);

    /* Corrupt in the middle, past the first read-ahead block: cut there. */
    crashed_log(dir, &c, &m);
    int bad = 180; /* ~2.7 MiB in */
    poke(data, batch_pos(&m, bad) + 100, 0xff, 4);
    al_log_set_level(AL_LOG_ERROR);
    CHECK_EQ(storage_log_open(su_test_io(), dir, &c, &log), 0);
    al_log_set_level(AL_LOG_INFO);
    CHECK_EQ(verify(log, &m, bad), 0);
    storage_log_close(log);
    model_free(&m);

    /* Stray non-zero bytes after the end (an old torn write): cut away, so that later appends
     * of the same offsets can never be followed by them at recovery. */
    crashed_log(dir, &c, &m);
    uint64_t end = batch_pos(&m, m.n);
    int64_t fsz = file_size(data);
    CHECK(fsz > (int64_t)end);
    poke(data, AL_MIN(end + 5000, (uint64_t)fsz - 16), 0x33, 16);
    al_log_set_level(AL_LOG_ERROR);
    CHECK_EQ(storage_log_open(su_test_io(), dir, &c, &log), 0);
    al_log_set_level(AL_LOG_INFO);
    CHECK_EQ(file_size(data), (int64_t)end);
    CHECK_EQ(verify(log, &m, m.n), 0);
    for (int i = 0; i < 4; i++) CHECK_EQ(append_batch(log, &m, 15, 1000, -1), 0);
    CHECK_EQ(sync_all(log), 0);
    storage_log_abandon(log);
    CHECK_EQ(storage_log_open(su_test_io(), dir, &c, &log), 0);
    CHECK_EQ(verify(log, &m, m.n), 0);
    storage_log_close(log);
    model_free(&m);
}

/* ---- storage_log_scan_headers ---- */

typedef struct scan_got {
    int64_t base[4096];
    int64_t pid[4096];
    int n;
    int stop_after; /* > 0: return 1 after this many */
    int fail_after; /* > 0: return AL_EINVAL after this many */
} scan_got;

static int scan_cb(void *ctx, const storage_batch_hdr *h)
{
    scan_got *g = ctx;
    AL_ASSERT(g->n < 4096);
    g->base[g->n] = h->base_offset;
    g->pid[g->n] = h->producer_id;
    g->n++;
    if (g->fail_after && g->n >= g->fail_after) return AL_EINVAL;
    if (g->stop_after && g->n >= g->stop_after) return 1;
    return 0;
}

/* Scans from `from` and compares with the model's batches whose last offset >= from. */
static int scan_check(storage_log *log, const model *m, int64_t from)
{
    static scan_got g;
    memset(&g, 0, sizeof(g));
    int rc = storage_log_scan_headers(log, from, scan_cb, &g);
    if (rc != 0) {
        fprintf(stderr, "    scan from %lld: %d\n", (long long)from, rc);
        return -1;
    }
    int k = 0;
    for (int i = 0; i < m->n; i++) {
        if (m->v[i].last < from) continue;
        if (k >= g.n || g.base[k] != m->v[i].base || g.pid[k] != m->v[i].pid) {
            fprintf(stderr, "    scan from %lld: batch %d differs\n", (long long)from, i);
            return -1;
        }
        k++;
    }
    return k == g.n ? 0 : -1;
}

TEST(header_scan_returns_the_stored_batches)
{
    char dir[512], data[700];
    log_dir(dir, sizeof(dir), "scan");
    storage_log_config c;
    storage_log_config_default(&c);
    c.segment_bytes = 64 * 1024;
    c.max_message_bytes = 6u << 20;
    storage_log *log = NULL;
    CHECK_EQ(storage_log_open(su_test_io(), dir, &c, &log), 0);
    model m = {0};
    uint64_t seed = test_seed(), r = seed | 1;
    for (int i = 0; i < 300; i++) {
        int64_t pid = (int64_t)(su_rand(&r) % 4) - 1; /* -1 (none), 0, 1, 2 */
        CHECK_EQ(append_batch(log, &m, 1 + (int)(su_rand(&r) % 8), 50 + su_rand(&r) % 900, pid),
                 0);
        if (i == 150) CHECK_EQ(append_batch(log, &m, 1, 5u << 20, 7), 0); /* > one read */
        if (i % 37 == 0) CHECK_EQ(sync_all(log), 0);
    }
    CHECK_EQ(sync_all(log), 0);
    /* The last few only in memory (no write yet). */
    for (int i = 0; i < 5; i++) CHECK_EQ(append_batch(log, &m, 2, 100, 1), 0);
    CHECK(storage_log_segment_count(log) > 10);
    int64_t high = storage_log_high_offset(log);
    int64_t froms[] = {0, 1, m.v[40].base + 1, m.v[150].last, m.v[151].base, m.v[m.n - 3].base,
                       high - 1, high};
    for (size_t i = 0; i < AL_ARRAY_SIZE(froms); i++) CHECK_EQ(scan_check(log, &m, froms[i]), 0);
    /* Early stop and a callback error. */
    static scan_got g;
    memset(&g, 0, sizeof(g));
    g.stop_after = 3;
    CHECK_EQ(storage_log_scan_headers(log, 0, scan_cb, &g), 0);
    CHECK_EQ(g.n, 3);
    memset(&g, 0, sizeof(g));
    g.fail_after = 2;
    CHECK_EQ(storage_log_scan_headers(log, 0, scan_cb, &g), AL_EINVAL);
    CHECK_EQ(g.n, 2);
    storage_log_close(log);
    /* After a reopen, from disk (closed segments trusted through their indexes). */
    CHECK_EQ(storage_log_open(su_test_io(), dir, &c, &log), 0);
    for (size_t i = 0; i < AL_ARRAY_SIZE(froms); i++) CHECK_EQ(scan_check(log, &m, froms[i]), 0);
    /* A changed byte in a closed segment: the scan's CRC check says so. */
    seg_file(data, sizeof(data), dir, 0, ".log");
    poke(data, 70, 0x11, 1);
    memset(&g, 0, sizeof(g));
    CHECK_EQ(storage_log_scan_headers(log, 0, scan_cb, &g), AL_ECORRUPT);
    memset(&g, 0, sizeof(g));
    CHECK_EQ(storage_log_scan_headers(log, m.v[m.n - 1].base, scan_cb, &g), 0);
    CHECK_EQ(g.n, 1);
    storage_log_close(log);
    model_free(&m);
}

/* ---- torn last writes of a multi-MiB segment on the simulated disk ---- */

typedef struct sim_run {
    io_sim_world *w;
    io *io;
    storage_log *log;
    model m;
    int acked;
} sim_run;

static int sim_wait(sim_run *s, volatile int *flag)
{
    for (int i = 0; i < 1000000 && !*flag; i++)
        if (io_sim_world_step(s->w) <= 0) break;
    return *flag;
}

TEST(sim_torn_last_write_of_a_large_segment)
{
    uint64_t seed = test_seed();
    storage_log_config c;
    storage_log_config_default(&c);
    c.flush_bytes = 1u << 30; /* writes only when waited for: groups are exact */
    int runs = 0, cut = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int s = 0; s < 1000; s++) {
        sim_run e = {0};
        uint64_t r = (seed + (uint64_t)s * 7919) | 1;
        struct io_sim_opts o = {.seed = seed + (uint64_t)s};
        AL_ASSERT(io_sim_world_create(&e.w, &o) == 0);
        e.io = io_sim_node_create(e.w, "n0");
        AL_ASSERT(e.io && io_sim_fs_mkdir_p(e.io, "/data/p0") == 0);
        CHECK_EQ(storage_log_open(e.io, "/data/p0", &c, &e.log), 0);
        /* 2-3 MiB acknowledged in groups, then a group whose write is in flight. */
        int groups = 6 + (int)(su_rand(&r) % 4);
        for (int g = 0; g <= groups; g++) {
            int nb = 10 + (int)(su_rand(&r) % 20);
            for (int i = 0; i < nb; i++)
                CHECK_EQ(append_batch(e.log, &e.m, 1 + (int)(su_rand(&r) % 15), 1000, -1), 0);
            su_wait w = {.w = {.cb = su_wait_cb}};
            CHECK_EQ(storage_log_flush_wait(e.log, storage_log_last_offset(e.log), &w.w), 0);
            if (g < groups) {
                CHECK(sim_wait(&e, &w.done));
                CHECK_EQ(w.res, 0);
                e.acked = e.m.n;
                continue;
            }
            for (int i = 0; i < 100000 && !w.done; i++) {
                if (io_sim_last_write_len(e.io) > 0) break;
                if (io_sim_world_step(e.w) <= 0) break;
            }
            if (w.done && w.res == 0) e.acked = e.m.n;
        }
        uint64_t len = io_sim_last_write_len(e.io);
        io_sim_crash_torn(e.io, len ? su_rand(&r) % (len + 1) : 0);
        storage_log_abandon(e.log);
        e.io = io_sim_restart(e.io);
        al_log_set_level(AL_LOG_ERROR);
        CHECK_EQ(storage_log_open(e.io, "/data/p0", &c, &e.log), 0);
        al_log_set_level(AL_LOG_INFO);
        /* Every acknowledged batch is there, in order, byte-identical; nothing else but a
         * prefix of the in-flight group. */
        int k = 0;
        int64_t off = 0;
        for (int guard = 0; guard < 100000; guard++) {
            su_read sr = {0};
            sr.r.offset = off;
            sr.r.max_bytes = 1 << 20;
            sr.r.cb = su_read_cb;
            int rc = storage_log_read(e.log, &sr.r);
            CHECK(rc >= 0);
            if (rc == 0) CHECK(sim_wait(&e, &sr.done));
            CHECK_EQ(sr.r.res, 0);
            if (sr.r.len == 0) break;
            for (size_t pos = 0; pos < sr.r.len && k < e.m.n;) {
                storage_batch_hdr h;
                int64_t sz = storage_batch_validate(sr.r.data + pos, sr.r.len - pos, 0, &h);
                CHECK(sz > 0);
                CHECK_EQ((size_t)sz, e.m.v[k].len);
                CHECK(memcmp(sr.r.data + pos, e.m.v[k].bytes, (size_t)sz) == 0);
                pos += (size_t)sz;
                k++;
            }
            off = sr.r.next_offset;
            storage_read_release(&sr.r);
        }
        CHECK(k >= e.acked);
        CHECK_EQ(storage_log_high_offset(e.log), k ? e.m.v[k - 1].last + 1 : 0);
        cut += k < e.m.n;
        storage_log_close(e.log);
        model_free(&e.m);
        io_sim_world_destroy(e.w);
        runs++;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (t1.tv_sec - t0.tv_sec > 10) break;
    }
    fprintf(stderr, "    %d seeds, %d with a cut tail\n", runs, cut);
    CHECK(runs > 0);
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
