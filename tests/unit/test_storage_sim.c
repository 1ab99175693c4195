/*
 * test_storage_sim.c — the partition log on the simulated disk (io_sim): torn writes (the last
 * write cut at every byte boundary, and at random points over many seeds: recovery keeps every
 * acknowledged batch byte-identical and nothing corrupt), power loss with names not yet
 * durable, a failed fdatasync (log failed, nothing more acknowledged), ENOSPC on fallocate
 * and on write (appends refused with -ENOSPC, accepted again once space returns), and segment
 * rolls whose file create + directory fsync run as a job (crash at every step, a failed job,
 * rolls, truncation and close waiting for a job in flight), and rolls that take a spare file
 * made ahead (crash at every step, leftovers at open).
 */
#include "storage_util.h"

#include "base/crc32c.h"
#include "base/cursor.h"
#include "base/log.h"
#include "reactor/io_sim.h"

#include <fcntl.h>
#include <time.h>

#define LOG_DIR "/data/p0"

typedef struct sim_env {
    io_sim_world *w;
    io *io;
    storage_log *log;
    storage_log_config cfg;
    /* Every appended batch in order (stamped bytes), and how many are acknowledged. */
    uint8_t *bytes[512];
    size_t len[512];
    int64_t base[512];
    int64_t last[512];
    int n, acked;
    uint64_t rng;
} sim_env;

static void env_free(sim_env *e)
{
    if (e->log) storage_log_abandon(e->log);
    for (int i = 0; i < e->n; i++) free(e->bytes[i]);
    if (e->w) io_sim_world_destroy(e->w);
    memset(e, 0, sizeof(*e));
}

/* Steps the world until *flag is set or the world is idle (bounded). */
static int env_wait(sim_env *e, volatile int *flag)
{
    for (int i = 0; i < 1000000 && !*flag; i++)
        if (io_sim_world_step(e->w) <= 0) break;
    return *flag;
}

/* Opens (recovers) the log; a previous log object is abandoned (its process "died"). */
static long ckpt_opens; /* opens that resumed the active segment's scan at a checkpoint */

static int env_open(sim_env *e)
{
    if (e->log) storage_log_abandon(e->log);
    e->log = NULL;
    int rc = storage_log_open(e->io, LOG_DIR, &e->cfg, &e->log);
    if (rc == 0) {
        storage_log_buf_info bi;
        storage_log_buf_info_get(e->log, &bi);
        if (bi.ckpt_recovered_pos) ckpt_opens++;
    }
    return rc;
}

static void env_close(sim_env *e)
{
    storage_log_close(e->log);
    e->log = NULL;
}

static void env_init(sim_env *e, uint64_t seed)
{
    memset(e, 0, sizeof(*e));
    struct io_sim_opts o = {.seed = seed};
    AL_ASSERT(io_sim_world_create(&e->w, &o) == 0);
    e->io = io_sim_node_create(e->w, "n0");
    AL_ASSERT(e->io);
    AL_ASSERT(io_sim_fs_mkdir_p(e->io, LOG_DIR) == 0);
    storage_log_config_default(&e->cfg);
    e->cfg.segment_bytes = 24 * 1024;
    e->cfg.fallocate_step = 8 * 1024;
    e->cfg.flush_bytes = 1 << 30;
    e->cfg.index_interval_bytes = 512;
    e->cfg.ckpt_bytes = 1024; /* recovery checkpoints every KiB: exercised by every test */
    e->cfg.ckpt_ms = 5;
    e->rng = seed * 2654435761u + 1;
}

/* Appends one random batch; returns the append rc. */
static int env_append(sim_env *e, int32_t term)
{
    static uint8_t b[256 * 600];
    int n = 1 + (int)(su_rand(&e->rng) % 6);
    size_t len = su_batch(b, sizeof(b), n, NULL, su_rand(&e->rng), su_rand(&e->rng) % 400,
                          false, 1000 + e->n);
    storage_append_result r;
    int rc = storage_log_append(e->log, term, b, len, &r);
    if (rc == 0) {
        AL_ASSERT(e->n < 512);
        e->bytes[e->n] = malloc(len);
        memcpy(e->bytes[e->n], b, len);
        e->len[e->n] = len;
        e->base[e->n] = r.base_offset;
        e->last[e->n] = r.last_offset;
        e->n++;
    }
    return rc;
}

/* Drops model batches from index k on (they were refused or truncated). */
static void env_forget_from(sim_env *e, int k)
{
    while (e->n > k) free(e->bytes[--e->n]);
    if (e->acked > e->n) e->acked = e->n;
}

/* Waits for durability of everything appended; on success marks it acknowledged. */
static int env_sync(sim_env *e)
{
    if (e->n == 0) return 0;
    su_wait w = {.w = {.cb = su_wait_cb}};
    int rc = storage_log_flush_wait(e->log, storage_log_last_offset(e->log), &w.w);
    if (rc == 1) {
        e->acked = e->n;
        return 0;
    }
    if (rc < 0) return rc;
    if (!env_wait(e, &w.done)) return AL_ETIMEDOUT;
    if (w.res == 0) e->acked = e->n;
    return w.res;
}

/* Reads the whole reopened log; checks it is a prefix of the model holding at least every
 * acknowledged batch, byte for byte. Returns the number of batches found (or -1). */
static int env_verify(sim_env *e)
{
    int k = 0;
    int64_t off = storage_log_start_offset(e->log);
    for (int guard = 0; guard < 100000; guard++) {
        su_read sr = {0};
        sr.r.offset = off;
        sr.r.max_bytes = 4096;
        sr.r.cb = su_read_cb;
        int rc = storage_log_read(e->log, &sr.r);
        if (rc < 0) return -1;
        if (rc == 0 && !env_wait(e, &sr.done)) return -1;
        if (sr.r.res < 0) return -1;
        if (sr.r.len == 0) break;
        size_t pos = 0;
        while (pos < sr.r.len) {
            storage_batch_hdr h;
            int64_t sz = storage_batch_validate(sr.r.data + pos, sr.r.len - pos, 0, &h);
            if (sz < 0 || k >= e->n || (size_t)sz != e->len[k] || h.base_offset != e->base[k] ||
                memcmp(sr.r.data + pos, e->bytes[k], (size_t)sz) != 0) {
                fprintf(stderr, "    batch %d differs (acked %d, model %d)\n", k, e->acked, e->n);
                storage_read_release(&sr.r);
                return -1;
            }
            pos += (size_t)sz;
            k++;
        }
        off = sr.r.next_offset;
        storage_read_release(&sr.r);
    }
    if (k < e->acked) {
        fprintf(stderr, "    only %d batches recovered, %d acknowledged\n", k, e->acked);
        return -1;
    }
    /* The next offset continues right after the last recovered batch. */
    if (k > 0 && storage_log_high_offset(e->log) != e->last[k - 1] + 1) {
        fprintf(stderr, "    next offset %lld after last batch %lld\n",
                (long long)storage_log_high_offset(e->log), (long long)e->last[k - 1]);
        return -1;
    }
    return k;
}

/*
 * Builds the torn-write scenario for a seed: acknowledged groups of batches (with segment
 * rolls, term changes, housekeeping that closes segments, and suffix truncations), then a
 * group whose write has reached the disk but whose fdatasync has not completed; with
 * pipelined_tail, sometimes a further write is started behind it and the world stepped a few
 * times (two non-durable writes). Returns the length of the last non-durable write (0 if
 * none).
 */
static uint64_t torn_scenario2(sim_env *e, uint64_t seed, int32_t *term, bool pipelined_tail)
{
    env_init(e, seed);
    e->cfg.retention_ms = -1;
    AL_ASSERT(env_open(e) == 0);
    *term = 1;
    int groups = 2 + (int)(su_rand(&e->rng) % 8);
    for (int g = 0; g < groups; g++) {
        if (su_rand(&e->rng) % 5 == 0) (*term)++;
        int nb = 1 + (int)(su_rand(&e->rng) % 4);
        for (int i = 0; i < nb; i++) AL_ASSERT(env_append(e, *term) == 0);
        AL_ASSERT(env_sync(e) == 0);
        uint64_t r = su_rand(&e->rng) % 6;
        if (r == 0) {
            AL_ASSERT(storage_log_housekeep(e->log, 0, 1 << 20) >= 0); /* closes segments */
        } else if (r == 1 && e->n > 2) {
            int k = e->n - 1 - (int)(su_rand(&e->rng) % 2);
            AL_ASSERT(storage_log_truncate_suffix(e->log, e->base[k]) == 0);
            env_forget_from(e, k);
            (*term)++; /* as after a leader change */
        }
    }
    int nb = 1 + (int)(su_rand(&e->rng) % 4);
    for (int i = 0; i < nb; i++) AL_ASSERT(env_append(e, *term) == 0);
    su_wait w = {.w = {.cb = su_wait_cb}};
    AL_ASSERT(storage_log_flush_wait(e->log, storage_log_last_offset(e->log), &w.w) == 0);
    for (int i = 0; i < 100000 && !w.done; i++) {
        if (io_sim_last_write_len(e->io) > 0) break;
        if (io_sim_world_step(e->w) <= 0) break;
    }
    if (w.done && w.res == 0) e->acked = e->n;
    if (pipelined_tail && su_rand(&e->rng) % 2 == 0) {
        int before = e->n;
        int more = 1 + (int)(su_rand(&e->rng) % 3);
        for (int i = 0; i < more; i++) AL_ASSERT(env_append(e, *term) == 0);
        storage_log_flush(e->log);
        int steps = (int)(su_rand(&e->rng) % 6);
        for (int i = 0; i < steps; i++)
            if (io_sim_world_step(e->w) <= 0) break;
        /* Acknowledged only if its waiter said so before the crash. */
        if (w.done && w.res == 0) e->acked = before;
    }
    return io_sim_last_write_len(e->io);
}

static uint64_t torn_scenario(sim_env *e, uint64_t seed, int32_t *term)
{
    return torn_scenario2(e, seed, term, false);
}

/* Crashes keeping `keep` bytes of the last write, restarts, recovers and verifies; then
 * appends once more and checks that survives a clean power loss too. */
static int torn_check(sim_env *e, uint64_t keep, int32_t term)
{
    io_sim_crash_torn(e->io, keep);
    e->io = io_sim_restart(e->io);
    al_log_set_level(AL_LOG_ERROR);
    int rc = env_open(e);
    al_log_set_level(AL_LOG_INFO);
    if (rc < 0) return rc;
    int k = env_verify(e);
    if (k < 0) return -1;
    env_forget_from(e, k); /* what did not survive is gone for good */
    e->acked = k;
    if (env_append(e, term + 1) != 0 || env_sync(e) != 0) return -2;
    io_sim_crash(e->io);
    e->io = io_sim_restart(e->io);
    if (env_open(e) < 0) return -3;
    k = env_verify(e);
    if (k != e->n) return -4;
    env_close(e);
    return 0;
}

TEST(sim_torn_last_write_every_byte)
{
    uint64_t seed = test_seed();
    sim_env e;
    int32_t term;
    uint64_t len = torn_scenario(&e, seed, &term);
    env_free(&e);
    CHECK(len > 0);
    fprintf(stderr, "    last write %llu bytes\n", (unsigned long long)len);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (uint64_t keep = 0; keep <= len; keep++) {
        uint64_t l2 = torn_scenario(&e, seed, &term);
        CHECK_EQ(l2, len);
        int rc = torn_check(&e, keep, term);
        if (rc != 0) fprintf(stderr, "    keep %llu: rc %d\n", (unsigned long long)keep, rc);
        CHECK_EQ(rc, 0);
        env_free(&e);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (t1.tv_sec - t0.tv_sec > 40) {
            fprintf(stderr, "    time bound: stopped at keep %llu\n", (unsigned long long)keep);
            break;
        }
    }
}

TEST(sim_torn_random_points_many_seeds)
{
    uint64_t seed = test_seed();
    int runs = 0, torn = 0;
    ckpt_opens = 0;
    long acked = 0, appended = 0, recovered = 0, segs = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int s = 0; s < 10000; s++) {
        sim_env e;
        int32_t term;
        uint64_t sd = seed + (uint64_t)s * 7919;
        uint64_t len = torn_scenario2(&e, sd, &term, true);
        uint64_t keep = su_rand(&e.rng) % (len + 1);
        torn += len > 0;
        acked += e.acked;
        appended += e.n;
        segs += storage_log_segment_count(e.log);
        int rc = torn_check(&e, keep, term);
        recovered += rc == 0 ? e.n - 1 : 0; /* minus the batch torn_check appended */
        if (rc != 0)
            fprintf(stderr, "    seed %llu keep %llu: rc %d\n", (unsigned long long)sd,
                    (unsigned long long)keep, rc);
        CHECK_EQ(rc, 0);
        env_free(&e);
        runs++;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (t1.tv_sec - t0.tv_sec > 15) break;
    }
    fprintf(stderr, "    %d seeds (%d with a torn write), batches: %ld appended, %ld acknowledged, "
            "%ld recovered; %ld segments; %ld opens from a checkpoint\n", runs, torn, appended,
            acked, recovered, segs, ckpt_opens);
    CHECK(ckpt_opens > 0);
    CHECK(torn > runs / 2);
    CHECK(recovered >= acked);
}

/* Power loss with no torn write but a segment roll whose data never became durable. */
TEST(sim_crash_after_unflushed_roll)
{
    sim_env e;
    env_init(&e, test_seed() ^ 0x55);
    CHECK_EQ(env_open(&e), 0);
    for (int i = 0; i < 20; i++) CHECK_EQ(env_append(&e, 1), 0);
    CHECK_EQ(env_sync(&e), 0);
    for (int i = 0; i < 40; i++) CHECK_EQ(env_append(&e, i < 20 ? 1 : 2), 0);
    io_sim_crash(e.io);
    e.io = io_sim_restart(e.io);
    CHECK_EQ(env_open(&e), 0);
    int k = env_verify(&e);
    CHECK(k >= e.acked);
    env_forget_from(&e, k);
    CHECK_EQ(storage_log_high_offset(e.log), e.last[k - 1] + 1);
    CHECK_EQ(env_append(&e, 3), 0);
    CHECK_EQ(env_sync(&e), 0);
    CHECK_EQ(env_verify(&e), e.n);
    env_close(&e);
    env_free(&e);
}

TEST(sim_fdatasync_failure_fails_the_log)
{
    sim_env e;
    env_init(&e, test_seed() ^ 0x77);
    e.cfg.ckpt_bytes = 0; /* the injected fsync failure is for the data, not a checkpoint job */
    CHECK_EQ(env_open(&e), 0);
    for (int i = 0; i < 5; i++) CHECK_EQ(env_append(&e, 1), 0);
    CHECK_EQ(env_sync(&e), 0);
    int64_t durable = storage_log_durable_offset(e.log);
    for (int i = 0; i < 3; i++) CHECK_EQ(env_append(&e, 1), 0);
    io_sim_fault_at(e.io, IO_SIM_FAULT_FSYNC_EIO, 1);
    al_log_set_level(AL_LOG_OFF);
    int acked_before = e.acked;
    CHECK_EQ(env_sync(&e), AL_EFAILED);
    al_log_set_level(AL_LOG_INFO);
    CHECK_EQ(e.acked, acked_before);
    CHECK(storage_log_failed(e.log));
    CHECK_EQ(storage_log_durable_offset(e.log), durable);
    CHECK_EQ(env_append(&e, 1), AL_EFAILED);
    su_wait w = {.w = {.cb = su_wait_cb}};
    CHECK_EQ(storage_log_flush_wait(e.log, durable, &w.w), AL_EFAILED);
    env_close(&e);
    /* Restart: every acknowledged batch is there. */
    io_sim_crash(e.io);
    e.io = io_sim_restart(e.io);
    CHECK_EQ(env_open(&e), 0);
    CHECK(env_verify(&e) >= e.acked);
    env_close(&e);
    env_free(&e);
}

static void enospc_case(enum io_sim_fault f)
{
    sim_env e;
    env_init(&e, test_seed() ^ (uint64_t)f);
    e.cfg.fallocate_step = 4096;
    CHECK_EQ(env_open(&e), 0);
    for (int i = 0; i < 5; i++) CHECK_EQ(env_append(&e, 1), 0);
    CHECK_EQ(env_sync(&e), 0);
    int acked = e.acked;
    /* More than the fallocated tail holds, so the flush must grow the file. */
    for (int i = 0; i < 30; i++) CHECK_EQ(env_append(&e, 1), 0);
    io_sim_fault_set(e.io, f, 1000000);
    al_log_set_level(AL_LOG_ERROR);
    CHECK_EQ(env_sync(&e), -ENOSPC);
    CHECK(!storage_log_failed(e.log));
    env_forget_from(&e, acked); /* the unflushed appends were dropped */
    CHECK_EQ(storage_log_high_offset(e.log), storage_log_durable_offset(e.log) + 1);
    CHECK_EQ(env_append(&e, 1), -ENOSPC);
    /* Space comes back: after the probe interval appends are accepted and made durable. */
    io_sim_fault_set(e.io, f, 0);
    io_sim_world_run_until(e.w, io_sim_world_now(e.w) + 200000000ull, 0);
    int rc = 0;
    for (int i = 0; i < 8 && rc == 0; i++) rc = env_append(&e, 1);
    al_log_set_level(AL_LOG_INFO);
    CHECK_EQ(rc, 0);
    CHECK_EQ(env_sync(&e), 0);
    CHECK_EQ(env_verify(&e), e.n);
    env_close(&e);
    io_sim_crash(e.io);
    e.io = io_sim_restart(e.io);
    CHECK_EQ(env_open(&e), 0);
    CHECK_EQ(env_verify(&e), e.n);
    env_close(&e);
    env_free(&e);
}

TEST(sim_enospc_on_fallocate_refuses_then_recovers)
{
    enospc_case(IO_SIM_FAULT_FALLOCATE_ENOSPC);
}

TEST(sim_enospc_on_write_refuses_then_recovers)
{
    enospc_case(IO_SIM_FAULT_WRITE_ENOSPC);
}

/* A segment roll (new term) while the previous segment's write is in flight: both segments
 * become durable in order, and survive a power loss. */
TEST(sim_roll_in_the_middle_of_a_flush)
{
    sim_env e;
    env_init(&e, test_seed() ^ 0x99);
    CHECK_EQ(env_open(&e), 0);
    for (int i = 0; i < 4; i++) CHECK_EQ(env_append(&e, 1), 0);
    su_wait w1 = {.w = {.cb = su_wait_cb}};
    CHECK_EQ(storage_log_flush_wait(e.log, storage_log_last_offset(e.log), &w1.w), 0);
    /* The write is now in flight (nothing completes before the world steps). */
    CHECK_EQ(w1.done, 0);
    for (int i = 0; i < 4; i++) CHECK_EQ(env_append(&e, 2), 0); /* rolls: term 2 */
    CHECK_EQ(storage_log_segment_count(e.log), 2);
    su_wait w2 = {.w = {.cb = su_wait_cb}};
    CHECK_EQ(storage_log_flush_wait(e.log, storage_log_last_offset(e.log), &w2.w), 0);
    CHECK(env_wait(&e, &w2.done));
    CHECK(w1.done == 1 && w1.res == 0 && w2.res == 0);
    e.acked = e.n;
    CHECK_EQ(storage_log_durable_offset(e.log), storage_log_last_offset(e.log));
    storage_segment_info si;
    CHECK_EQ(storage_log_segment_info(e.log, 0, &si), 0);
    CHECK(si.sealed && si.durable_size == si.size);
    CHECK_EQ(storage_log_term_at(e.log, e.base[0]), 1);
    CHECK_EQ(storage_log_term_at(e.log, e.base[7]), 2);
    io_sim_crash(e.io);
    e.io = io_sim_restart(e.io);
    CHECK_EQ(env_open(&e), 0);
    CHECK_EQ(env_verify(&e), e.n);
    CHECK_EQ(storage_log_segment_count(e.log), 2);
    env_close(&e);
    env_free(&e);
}

/* segment.ms: the active segment rolls once it is old enough (virtual wall clock). */
TEST(sim_segment_rolls_by_age)
{
    sim_env e;
    env_init(&e, test_seed() ^ 0x31);
    e.cfg.segment_ms = 1000;
    e.cfg.segment_bytes = 1 << 30;
    e.cfg.retention_ms = -1; /* the test batches' timestamps are far in the past */
    CHECK_EQ(env_open(&e), 0);
    CHECK_EQ(env_append(&e, 1), 0);
    CHECK_EQ(env_append(&e, 1), 0);
    CHECK_EQ(storage_log_segment_count(e.log), 1);
    io_sim_world_run_until(e.w, io_sim_world_now(e.w) + 1500000000ull, 0);
    CHECK_EQ(env_append(&e, 1), 0);
    CHECK_EQ(storage_log_segment_count(e.log), 2);
    /* housekeep seals an old active segment without an append */
    io_sim_world_run_until(e.w, io_sim_world_now(e.w) + 1500000000ull, 0);
    CHECK_EQ(env_sync(&e), 0);
    CHECK_EQ(storage_log_housekeep(e.log, io_wall_ms(e.io), 1 << 20), 0);
    CHECK_EQ(env_append(&e, 1), 0);
    CHECK_EQ(storage_log_segment_count(e.log), 3);
    CHECK_EQ(env_sync(&e), 0);
    CHECK_EQ(env_verify(&e), e.n);
    env_close(&e);
    env_free(&e);
}

/* Index files that are missing, corrupt or stale are detected and rebuilt at recovery. */
TEST(sim_indexes_rebuilt_when_missing_or_inconsistent)
{
    sim_env e;
    env_init(&e, test_seed() ^ 0x42);
    e.cfg.segment_bytes = 8 * 1024;
    CHECK_EQ(env_open(&e), 0);
    for (int i = 0; i < 60; i++) CHECK_EQ(env_append(&e, 1), 0);
    CHECK_EQ(env_sync(&e), 0);
    int segs = storage_log_segment_count(e.log);
    CHECK(segs >= 4);
    char stems[3][512];
    for (int i = 0; i < 3; i++) {
        storage_segment_info si;
        CHECK_EQ(storage_log_segment_info(e.log, i, &si), 0);
        snprintf(stems[i], sizeof(stems[i]), "%s", si.path_stem);
    }
    env_close(&e);
    char path[2048];
    /* 0: index deleted; 1: index corrupted (a flipped byte); 2: timeindex truncated. */
    snprintf(path, sizeof(path), "%s.index", stems[0]);
    CHECK_EQ(io_fs_unlink(e.io, path), 0);
    snprintf(path, sizeof(path), "%s.index", stems[1]);
    int fd = io_fs_open(e.io, path, 2 /* O_RDWR */, 0);
    CHECK(fd >= 0);
    uint8_t byte = 0;
    CHECK_EQ(io_fs_pread(e.io, fd, &byte, 1, 30), 1);
    byte ^= 0x10;
    CHECK_EQ(io_fs_pwrite(e.io, fd, &byte, 1, 30), 1);
    io_fs_fsync(e.io, fd);
    io_fs_close(e.io, fd);
    snprintf(path, sizeof(path), "%s.timeindex", stems[2]);
    fd = io_fs_open(e.io, path, 2, 0);
    CHECK(fd >= 0);
    CHECK_EQ(io_fs_ftruncate(e.io, fd, 20), 0);
    io_fs_fsync(e.io, fd);
    io_fs_close(e.io, fd);
    CHECK_EQ(env_open(&e), 0);
    CHECK_EQ(storage_log_segment_count(e.log), segs);
    CHECK_EQ(env_verify(&e), e.n);
    /* Reads from inside every batch (through the rebuilt sparse index) find it. */
    for (int k = 0; k < e.n; k += 3) {
        su_read sr = {0};
        sr.r.offset = e.last[k];
        sr.r.max_bytes = 1;
        sr.r.cb = su_read_cb;
        int rc = storage_log_read(e.log, &sr.r);
        if (rc == 0) CHECK(env_wait(&e, &sr.done));
        CHECK(rc >= 0 && sr.r.res == 0 && sr.r.len == e.len[k]);
        CHECK_MEM(sr.r.data, e.bytes[k], e.len[k]);
        storage_read_release(&sr.r);
    }
    env_close(&e);
    /* The rebuilt files are valid now: a second open trusts them (same results). */
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s.index", stems[i]);
        CHECK_EQ(io_fs_exists(e.io, path), 1);
        snprintf(path, sizeof(path), "%s.timeindex", stems[i]);
        CHECK_EQ(io_fs_exists(e.io, path), 1);
    }
    CHECK_EQ(env_open(&e), 0);
    CHECK_EQ(env_verify(&e), e.n);
    env_close(&e);
    env_free(&e);
}

/* Sealed segments whose finishing completed, of the first n. */
static int env_finished(sim_env *e, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++) {
        storage_segment_info si;
        if (storage_log_segment_info(e->log, i, &si) == 0 && si.finished) k++;
    }
    return k;
}

/*
 * A finish job makes no sync call (the data is durable; the size and index files reach the
 * disk with the file system's next commit): the only syncs of the run are the rolls'
 * directory fsyncs. A power loss right after it loses the index files and the trimmed size;
 * recovery scans those segments and keeps every acknowledged batch. Index files that did
 * survive (a restart without power loss) are valid and trusted. (Finish jobs start as soon as
 * a sealed segment is durable, without housekeeping: sim_sealed_segments_finished_promptly.)
 */
TEST(sim_finish_jobs_sync_nothing_and_a_crash_rescans)
{
    sim_env e;
    env_init(&e, test_seed() ^ 0x5e);
    e.cfg.ckpt_bytes = 0; /* counts the finish jobs' syncs: no checkpoint jobs */
    e.cfg.segment_bytes = 8 * 1024;
    e.cfg.retention_ms = -1;
    CHECK_EQ(env_open(&e), 0);
    int segs = 0;
    for (int round = 0; round < 2; round++) {
        /* New sealed segments, durable data, not finished yet. */
        int had = storage_log_segment_count(e.log);
        storage_log_buf_info bi;
        storage_log_buf_info_get(e.log, &bi);
        uint64_t syncs = io_sim_fs_sync_count(e.io), rolls = bi.roll_jobs, jobs = bi.finish_jobs;
        for (int i = 0; i < 60; i++) CHECK_EQ(env_append(&e, 1), 0);
        CHECK_EQ(env_sync(&e), 0);
        segs = storage_log_segment_count(e.log);
        CHECK(segs >= had + 3);
        CHECK_EQ(storage_log_housekeep(e.log, io_wall_ms(e.io), 1 << 20), 0);
        for (int i = 0; i < 100000 && env_finished(&e, segs) < segs - 1; i++)
            if (io_sim_world_step(e.w) <= 0) break;
        CHECK_EQ(env_finished(&e, segs), segs - 1); /* every sealed one; not the active one */
        storage_log_buf_info_get(e.log, &bi);
        CHECK(bi.finish_jobs > jobs);
        CHECK(bi.roll_jobs >= rolls + 3);
        CHECK_EQ(io_sim_fs_sync_count(e.io) - syncs, bi.roll_jobs - rolls); /* one each */
        char path[2048];
        storage_segment_info si;
        CHECK_EQ(storage_log_segment_info(e.log, segs - 2, &si), 0);
        snprintf(path, sizeof(path), "%s.index", si.path_stem);
        CHECK_EQ(io_fs_exists(e.io, path), 1);
        if (round == 0) {
            /* The process restarts, the machine does not: the files are there and valid. */
            CHECK_EQ(env_open(&e), 0);
            storage_log_buf_info_get(e.log, &bi);
            CHECK_EQ(bi.scanned_segments, 1); /* only the active one (it has no index files) */
        } else {
            /* Power loss: nothing any finish job wrote was synced (round 0's index files were
             * trusted by the reopen, never rewritten), so every segment is scanned, and
             * every acknowledged batch is still there. */
            io_sim_crash(e.io);
            e.io = io_sim_restart(e.io);
            al_log_set_level(AL_LOG_ERROR);
            CHECK_EQ(env_open(&e), 0);
            storage_log_buf_info_get(e.log, &bi);
            CHECK_EQ(bi.scanned_segments, (uint64_t)segs);
        }
        CHECK_EQ(storage_log_segment_count(e.log), segs);
        CHECK_EQ(env_verify(&e), e.n);
    }
    env_close(&e);
    env_free(&e);
}

/*
 * A sealed segment is finished (index files written, tail trimmed, write buffers released) by
 * a finish job started as soon as its bytes are durable, not at the next housekeeping pass:
 * many rolls with no housekeeping call leave at most a few sealed segments unfinished at any
 * time (those whose job is in flight or not durable yet), none once the log is idle, and no
 * write buffers but the active segment's. (Before, every sealed segment stayed unfinished, with
 * its buffers, until housekeeping: at most LOG_FIN_MAX per pass, every 5 s in the broker.)
 */
TEST(sim_sealed_segments_finished_promptly)
{
    sim_env e;
    env_init(&e, test_seed() ^ 0xf1a1);
    e.cfg.segment_bytes = 8 * 1024;
    e.cfg.retention_ms = -1;
    CHECK_EQ(env_open(&e), 0);
    int most = 0;
    storage_log_buf_info bi;
    /* Until 40 segments exist (batch sizes follow the seed: ~100 rounds make 40-46). */
    for (int g = 0; g < 400 && storage_log_segment_count(e.log) < 40; g++) {
        for (int i = 0; i < 4; i++) CHECK_EQ(env_append(&e, 1), 0);
        CHECK_EQ(env_sync(&e), 0);
        storage_log_buf_info_get(e.log, &bi);
        most = AL_MAX(most, bi.unfinished);
    }
    int segs = storage_log_segment_count(e.log);
    CHECK(segs >= 40);
    for (int i = 0; i < 100000; i++)
        if (io_sim_world_step(e.w) <= 0) break;
    storage_log_buf_info_get(e.log, &bi);
    fprintf(stderr, "    %d segments, %llu finish jobs, at most %d unfinished after a sync\n",
            segs, (unsigned long long)bi.finish_jobs, most);
    CHECK(most <= 4);
    CHECK_EQ(bi.unfinished, 0);
    CHECK_EQ(env_finished(&e, segs), segs - 1);
    CHECK_EQ(bi.sealed_bytes, 0);
    CHECK(bi.finish_jobs >= 2);
    env_close(&e);
    CHECK_EQ(env_open(&e), 0);
    CHECK_EQ(env_verify(&e), e.n);
    env_close(&e);
    env_free(&e);
}

/* A read of appended-but-not-durable data whose bytes were already written (and whose buffer
 * was recycled by the next write) waits for the sync, then returns the exact bytes. */
TEST(sim_read_of_written_unsynced_data_waits_for_the_sync)
{
    sim_env e;
    env_init(&e, test_seed() ^ 0x1234);
    e.cfg.segment_bytes = 1 << 20;
    CHECK_EQ(env_open(&e), 0);
    CHECK_EQ(env_append(&e, 1), 0);
    CHECK_EQ(env_sync(&e), 0);
    int first = e.n;
    uint64_t bytes = 0;
    while (bytes < 12000) {
        CHECK_EQ(env_append(&e, 1), 0);
        bytes += e.len[e.n - 1];
    }
    su_wait w = {.w = {.cb = su_wait_cb}};
    CHECK_EQ(storage_log_flush_wait(e.log, storage_log_last_offset(e.log), &w.w), 0);
    /* Step until that write completed (its fdatasync is now in flight or queued). */
    for (int i = 0; i < 100000 && !w.done && io_sim_last_write_len(e.io) == 0; i++)
        CHECK(io_sim_world_step(e.w) > 0);
    CHECK_EQ(w.done, 0);
    CHECK(io_sim_last_write_len(e.io) > 0);
    CHECK_EQ(env_append(&e, 1), 0);
    storage_log_flush(e.log); /* the next write recycles the first write's buffer */
    su_read sr = {0};
    sr.r.offset = e.base[first];
    sr.r.max_bytes = 1;
    sr.r.cb = su_read_cb;
    int rc = storage_log_read(e.log, &sr.r);
    CHECK(rc == 0 || rc == 1);
    if (rc == 0) CHECK(env_wait(&e, &sr.done));
    CHECK_EQ(sr.r.res, 0);
    CHECK_EQ(sr.r.len, e.len[first]);
    CHECK_MEM(sr.r.data, e.bytes[first], e.len[first]);
    storage_read_release(&sr.r);
    CHECK(env_wait(&e, &w.done));
    CHECK_EQ(env_sync(&e), 0);
    CHECK_EQ(env_verify(&e), e.n);
    env_close(&e);
    env_free(&e);
}

static void trunc_cb(storage_truncation *t)
{
    *(int *)t->ctx = 1;
}

/* A Raft-style truncation requested while a write and its sync are in flight: it waits for
 * them, truncates, and the log then takes the new term's appends; all survives a power loss. */
TEST(sim_async_truncation_while_flushing)
{
    sim_env e;
    env_init(&e, test_seed() ^ 0x7777);
    CHECK_EQ(env_open(&e), 0);
    for (int i = 0; i < 10; i++) CHECK_EQ(env_append(&e, 1), 0);
    CHECK_EQ(env_sync(&e), 0);
    for (int i = 0; i < 6; i++) CHECK_EQ(env_append(&e, 1), 0);
    su_wait w = {.w = {.cb = su_wait_cb}};
    CHECK_EQ(storage_log_flush_wait(e.log, storage_log_last_offset(e.log), &w.w), 0);
    /* In flight now; cut inside the already durable part. */
    int cut = 7;
    int done = 0;
    storage_truncation t = {.offset = e.last[cut], .cb = trunc_cb, .ctx = &done}; /* in it */
    CHECK_EQ(storage_log_truncate_suffix(e.log, t.offset), AL_EFULL);
    CHECK_EQ(storage_log_truncate_suffix_async(e.log, &t), 0);
    CHECK_EQ(env_append(&e, 2), AL_EFULL);
    storage_truncation t2 = {.offset = 1, .cb = trunc_cb, .ctx = &done};
    CHECK_EQ(storage_log_truncate_suffix_async(e.log, &t2), AL_EFULL);
    CHECK(env_wait(&e, &done));
    CHECK_EQ(t.res, 0);
    CHECK(w.done == 1); /* the waiter was answered: durable, or truncated away */
    env_forget_from(&e, cut); /* the batch holding the offset goes entirely */
    e.acked = e.n;
    CHECK_EQ(storage_log_high_offset(e.log), e.last[cut - 1] + 1);
    for (int i = 0; i < 5; i++) CHECK_EQ(env_append(&e, 2), 0);
    CHECK_EQ(env_sync(&e), 0);
    CHECK_EQ(env_verify(&e), e.n);
    /* Idle: done at once. */
    storage_truncation t3 = {.offset = e.base[e.n - 1], .cb = trunc_cb, .ctx = &done};
    CHECK_EQ(storage_log_truncate_suffix_async(e.log, &t3), 1);
    env_forget_from(&e, e.n - 1);
    io_sim_crash(e.io);
    e.io = io_sim_restart(e.io);
    CHECK_EQ(env_open(&e), 0);
    CHECK_EQ(env_verify(&e), e.n);
    CHECK_EQ(storage_log_high_offset(e.log), e.last[e.n - 1] + 1);
    env_close(&e);
    env_free(&e);
}

/*
 * Roll jobs (log.c "roll jobs"): a roll creates the next segment's file and fsyncs the
 * directory off the shard, and the segment's data is written only after both. Power loss at
 * every simulated step from the roll on - before the job ran (no file), after it (an empty
 * file), after the data write but before it is durable, after - recovers a prefix of the
 * model holding every acknowledged batch; the recovered log then takes a new term's appends
 * (an empty last segment left by the crash is replaced) and keeps them across a second crash.
 */
static const char *roll_path(sim_env *e, char *buf, size_t n)
{
    storage_segment_info si;
    AL_ASSERT(storage_log_segment_info(e->log, storage_log_segment_count(e->log) - 1, &si) == 0);
    snprintf(buf, n, "%s.log", si.path_stem);
    return buf;
}

/* After a crash and an open: the recovered log is a prefix of the model that holds every
 * acknowledged batch; it then takes new appends and keeps them across a second crash. Closes
 * and frees e. (A failed CHECK ends the test case: nothing after it runs.) */
static void verify_prefix_then_continue(sim_env *e)
{
    int k = env_verify(e);
    CHECK(k >= e->acked);
    env_forget_from(e, k);
    e->acked = k;
    CHECK_EQ(env_append(e, 3), 0);
    CHECK_EQ(env_sync(e), 0);
    io_sim_crash(e->io);
    e->io = io_sim_restart(e->io);
    CHECK_EQ(env_open(e), 0);
    CHECK_EQ(env_verify(e), e->n);
    env_close(e);
    env_free(e);
}

/* Runs the roll scenario, crashing after `steps` world steps (-1: never). Returns 1 if the
 * flush of the rolled data completed before the crash, 0 if not (a failed check ends the test
 * case). */
static int roll_gated; /* steps where the segment had durable bytes but no durable name */

static int roll_crash_case(uint64_t seed, int steps, bool by_size)
{
    sim_env e;
    env_init(&e, seed);
    e.cfg.retention_ms = -1;
    CHECK_EQ(env_open(&e), 0);
    for (int i = 0; i < 6; i++) CHECK_EQ(env_append(&e, 1), 0);
    CHECK_EQ(env_sync(&e), 0);
    int segs = storage_log_segment_count(e.log);
    storage_log_buf_info bi;
    storage_log_buf_info_get(e.log, &bi);
    uint64_t jobs = bi.roll_jobs;
    if (by_size) { /* fill the segment until the next append rolls by size */
        for (int i = 0; i < 200 && storage_log_segment_count(e.log) == segs; i++)
            CHECK_EQ(env_append(&e, 1), 0);
    } else {
        CHECK_EQ(env_append(&e, 2), 0); /* a new term rolls */
    }
    CHECK_EQ(storage_log_segment_count(e.log), segs + 1);
    for (int i = 0; i < 3; i++) CHECK_EQ(env_append(&e, by_size ? 1 : 2), 0);
    /* The roll did not create the file on the calling thread: the job has not run yet. */
    char path[2048];
    CHECK_EQ(io_fs_exists(e.io, roll_path(&e, path, sizeof(path))), 0);
    su_wait w = {.w = {.cb = su_wait_cb}};
    CHECK_EQ(storage_log_flush_wait(e.log, storage_log_last_offset(e.log), &w.w), 0);
    for (int i = 0; (steps < 0 || i < steps) && !w.done && i < 100000; i++) {
        if (io_sim_world_step(e.w) <= 0) break;
        storage_segment_info si;
        CHECK_EQ(storage_log_segment_info(e.log, storage_log_segment_count(e.log) - 1, &si), 0);
        /* a write into the segment completed before its roll's directory fsync did: not
         * durable yet (the crash below must not lose anything acknowledged either way) */
        if (si.durable_size > 0 && storage_log_durable_offset(e.log) < si.base) roll_gated++;
    }
    int done = w.done && w.res == 0;
    if (done) {
        e.acked = e.n;
        CHECK_EQ(io_fs_exists(e.io, roll_path(&e, path, sizeof(path))), 1);
        storage_log_buf_info_get(e.log, &bi);
        CHECK_EQ(bi.roll_jobs, jobs + 1);
    }
    io_sim_crash(e.io);
    e.io = io_sim_restart(e.io);
    al_log_set_level(AL_LOG_ERROR);
    CHECK_EQ(env_open(&e), 0);
    al_log_set_level(AL_LOG_INFO);
    verify_prefix_then_continue(&e);
    return done;
}

TEST(sim_crash_at_every_step_of_a_roll)
{
    uint64_t seed0 = test_seed() ^ 0x4011;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int seeds = 0, cases = 0, before = 0, min_before = 1 << 30;
    for (int k = 0; k < 2000; k++) {
        uint64_t seed = seed0 + (uint64_t)k * 7919;
        for (int by_size = 0; by_size < 2; by_size++) {
            int b = 0;
            for (int steps = 0; steps < 400; steps++) {
                int rc = roll_crash_case(seed, steps, by_size);
                cases++;
                if (rc == 1) break; /* every later crash point comes after the flush */
                b++;
            }
            before += b;
            if (b < min_before) min_before = b;
        }
        seeds++;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (t1.tv_sec - t0.tv_sec > 5) break;
    }
    fprintf(stderr, "    %d seeds x (roll by term, by size): %d crash points, %d before the "
            "rolled data was durable; %d steps with durable bytes but no durable name\n",
            seeds, cases, before, roll_gated);
    CHECK(min_before >= 3); /* create pending, fsync pending, data written but not durable */
}

/* An fsync-class failure during a roll (its directory fsync or the first durable write
 * into the segment): the log fails (nothing after the roll is acknowledged), and a restart
 * recovers every acknowledged batch. */
TEST(sim_roll_job_failure_fails_the_log)
{
    sim_env e;
    env_init(&e, test_seed() ^ 0x4012);
    e.cfg.ckpt_bytes = 0; /* the injected fsync failure is for the roll job's */
    CHECK_EQ(env_open(&e), 0);
    for (int i = 0; i < 5; i++) CHECK_EQ(env_append(&e, 1), 0);
    CHECK_EQ(env_sync(&e), 0);
    int64_t durable = storage_log_durable_offset(e.log);
    /* The next fsync-class operation is the roll's directory fsync, or the durable half of
     * the first write into the new segment (they run at the same time): either fails the log,
     * and nothing in the segment was acknowledged. */
    io_sim_fault_at(e.io, IO_SIM_FAULT_FSYNC_EIO, 1);
    CHECK_EQ(env_append(&e, 2), 0);
    CHECK_EQ(env_append(&e, 2), 0);
    al_log_set_level(AL_LOG_OFF);
    CHECK_EQ(env_sync(&e), AL_EFAILED);
    /* the other operation may still be in flight (the close below does not step the world) */
    for (int i = 0; i < 100000 && io_sim_world_step(e.w) > 0; i++) {
    }
    al_log_set_level(AL_LOG_INFO);
    CHECK(io_sim_fault_count(e.io) >= 1);
    CHECK(storage_log_failed(e.log));
    CHECK_EQ(storage_log_durable_offset(e.log), durable);
    CHECK_EQ(env_append(&e, 2), AL_EFAILED);
    env_close(&e);
    io_sim_crash(e.io);
    e.io = io_sim_restart(e.io);
    CHECK_EQ(env_open(&e), 0);
    int k = env_verify(&e);
    CHECK(k >= e.acked);
    env_forget_from(&e, k);
    CHECK_EQ(env_append(&e, 3), 0);
    CHECK_EQ(env_sync(&e), 0);
    CHECK_EQ(env_verify(&e), e.n);
    env_close(&e);
    env_free(&e);
}

/* Rolls faster than the jobs run (each append rolls: tiny segments) wait for the previous
 * job; a suffix truncation with a job in flight waits for it too. */
TEST(sim_back_to_back_rolls_and_truncation_wait_for_the_job)
{
    sim_env e;
    env_init(&e, test_seed() ^ 0x4013);
    e.cfg.segment_bytes = 1024; /* every batch rolls */
    e.cfg.retention_ms = -1;
    CHECK_EQ(env_open(&e), 0);
    for (int i = 0; i < 8; i++) CHECK_EQ(env_append(&e, 1), 0);
    storage_log_buf_info bi;
    storage_log_buf_info_get(e.log, &bi);
    int segs = storage_log_segment_count(e.log);
    CHECK(segs >= 4); /* most batches do not fit one beside another */
    CHECK_EQ(bi.roll_waits, (uint64_t)(segs - 1)); /* each roll after the first waited */
    CHECK_EQ(env_sync(&e), 0);
    CHECK_EQ(env_verify(&e), e.n);
    /* A new term's segment whose job is in flight, truncated away before the job ran. */
    CHECK_EQ(env_append(&e, 2), 0);
    CHECK_EQ(storage_log_truncate_suffix(e.log, e.base[e.n - 1]), 0);
    env_forget_from(&e, e.n - 1);
    CHECK_EQ(storage_log_segment_count(e.log), segs);
    /* Another (the simulator's io_poll does not step the world, so the close with a job in
     * flight is test_storage_log's log_close_waits_for_the_roll_job). */
    CHECK_EQ(env_append(&e, 3), 0);
    CHECK_EQ(env_append(&e, 3), 0);
    CHECK_EQ(env_sync(&e), 0);
    env_close(&e);
    io_sim_crash(e.io);
    e.io = io_sim_restart(e.io);
    CHECK_EQ(env_open(&e), 0);
    CHECK_EQ(env_verify(&e), e.n);
    CHECK_EQ(storage_log_term_at(e.log, e.base[e.n - 1]), 3);
    env_close(&e);
    env_free(&e);
}

/*
 * Spare files (log.c "spare files"): a busy log keeps spare-<k>.seg ready (created, its name
 * durable) and a roll takes it: the segment's data counts as durable as soon as its writes are,
 * and the rename to the segment's name runs as a job nobody waits for. Power loss at every
 * simulated step from the roll to well after both the flush and the rename job (clean or with
 * the last write torn), rolled by size or by a new term, taking the spare made by the spare
 * job or the one made by a previous roll's job: recovery opens cleanly, leaves no
 * spare holding data, and returns a prefix of the model holding every acknowledged batch,
 * including batches acknowledged while the segment's file was still called spare-<k>.seg; the
 * recovered log then takes a new term's appends and keeps them across a second crash.
 */
static int spare_acked_unnamed; /* crash points with acknowledged data in an unnamed spare */

static bool spare_file_exists(sim_env *e)
{
    char **names = NULL;
    int n = io_fs_list(e->io, LOG_DIR, &names);
    bool found = false;
    for (int i = 0; i < n; i++)
        if (strncmp(names[i], "spare-", 6) == 0) found = true;
    if (n >= 0) io_fs_list_free(names, n);
    return found;
}

/* Appends until the active segment is past half full (where the spare job starts), syncs, and
 * steps the world until the spare file is ready; bi gets the log's state then. */
static void fill_until_spare_ready(sim_env *e, storage_log_buf_info *bi)
{
    for (int i = 0; i < 200 && storage_log_size_bytes(e->log) < e->cfg.segment_bytes / 2 + 1024;
         i++)
        CHECK_EQ(env_append(e, 1), 0);
    CHECK_EQ(env_sync(e), 0);
    storage_log_buf_info_get(e->log, bi);
    for (int i = 0; i < 100000 && !bi->spare_ready; i++) {
        if (io_sim_world_step(e->w) <= 0) break;
        storage_log_buf_info_get(e->log, bi);
    }
    CHECK(bi->spare_ready);
}

/* Returns 1 if the flush of the rolled data completed before the crash, 0 if not, 2 if the
 * rename job had completed too (a failed check ends the test case). */
static int spare_crash_case(uint64_t seed, int steps, bool by_size, bool torn, bool twice)
{
    sim_env e;
    env_init(&e, seed);
    e.cfg.retention_ms = -1;
    e.cfg.spare_files = true;
    CHECK_EQ(env_open(&e), 0);
    for (int i = 0; i < 6; i++) CHECK_EQ(env_append(&e, 1), 0);
    CHECK_EQ(env_sync(&e), 0);
    /* Past half a segment: the spare job starts; let it (and the flush) complete. */
    storage_log_buf_info bi;
    fill_until_spare_ready(&e, &bi);
    if (twice) { /* first a roll that takes the spare and completes: its job made the next */
        int s0 = storage_log_segment_count(e.log);
        uint64_t j0 = bi.roll_jobs;
        for (int i = 0; i < 200 && storage_log_segment_count(e.log) == s0; i++)
            CHECK_EQ(env_append(&e, 1), 0);
        CHECK_EQ(env_sync(&e), 0);
        storage_log_buf_info_get(e.log, &bi);
        for (int i = 0; i < 100000 && (bi.roll_jobs == j0 || !bi.spare_ready); i++) {
            if (io_sim_world_step(e.w) <= 0) break;
            storage_log_buf_info_get(e.log, &bi);
        }
        CHECK(bi.spare_ready);
        CHECK_EQ(bi.spare_rolls, 1);
    }
    int segs = storage_log_segment_count(e.log);
    uint64_t spares = bi.spare_rolls, jobs = bi.roll_jobs;
    if (by_size) {
        for (int i = 0; i < 200 && storage_log_segment_count(e.log) == segs; i++)
            CHECK_EQ(env_append(&e, 1), 0);
    } else {
        CHECK_EQ(env_append(&e, 2), 0);
    }
    CHECK_EQ(storage_log_segment_count(e.log), segs + 1);
    storage_log_buf_info_get(e.log, &bi);
    CHECK_EQ(bi.spare_rolls, spares + 1); /* the roll took the spare */
    CHECK(!bi.spare_ready);
    for (int i = 0; i < 3; i++) CHECK_EQ(env_append(&e, by_size ? 1 : 2), 0);
    char path[2048];
    CHECK_EQ(io_fs_exists(e.io, roll_path(&e, path, sizeof(path))), 0); /* not renamed yet */
    su_wait w = {.w = {.cb = su_wait_cb}};
    CHECK_EQ(storage_log_flush_wait(e.log, storage_log_last_offset(e.log), &w.w), 0);
    int after = 0; /* steps after both the flush and the rename job completed */
    for (int i = 0; (steps < 0 || i < steps) && i < 100000 && after < 3; i++) {
        if (io_sim_world_step(e.w) <= 0) break;
        storage_log_buf_info_get(e.log, &bi);
        if (w.done && bi.roll_jobs > jobs) after++;
    }
    int done = w.done && w.res == 0;
    storage_log_buf_info_get(e.log, &bi);
    bool renamed = bi.roll_jobs > jobs;
    if (done) {
        e.acked = e.n;
        if (!renamed) spare_acked_unnamed++;
    }
    if (renamed) {
        CHECK_EQ(io_fs_exists(e.io, roll_path(&e, path, sizeof(path))), 1);
        CHECK(bi.spare_ready); /* the rename job made the next spare */
    }
    uint64_t len = io_sim_last_write_len(e.io);
    if (torn && len > 0) io_sim_crash_torn(e.io, su_rand(&e.rng) % (len + 1));
    else io_sim_crash(e.io);
    e.io = io_sim_restart(e.io);
    al_log_set_level(AL_LOG_ERROR);
    CHECK_EQ(env_open(&e), 0);
    al_log_set_level(AL_LOG_INFO);
    CHECK(!spare_file_exists(&e)); /* renamed (it held data) or removed */
    verify_prefix_then_continue(&e);
    return renamed && done ? 2 : done;
}

TEST(sim_crash_at_every_step_of_a_spare_roll)
{
    uint64_t seed0 = test_seed() ^ 0x5a7e;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int seeds = 0, cases = 0, before = 0;
    spare_acked_unnamed = 0;
    for (int k = 0; k < 2000; k++) {
        uint64_t seed = seed0 + (uint64_t)k * 7919;
        for (int mode = 0; mode < 8; mode++) {
            bool by_size = mode & 1, torn = mode & 2, twice = mode & 4;
            for (int steps = 0; steps < 400; steps++) {
                int rc = spare_crash_case(seed, steps, by_size, torn, twice);
                cases++;
                if (rc == 0) before++;
                if (rc == 2) break; /* every later crash point: flushed and renamed */
            }
        }
        seeds++;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        /* 5 s, longer (at most 30 s) until a crash point had acknowledged data in a spare not
         * yet renamed (a few seeds in a hundred have one; the ASan build runs fewer seeds) */
        if (t1.tv_sec - t0.tv_sec > (spare_acked_unnamed > 0 ? 5 : 30)) break;
    }
    fprintf(stderr, "    %d seeds x (by term, by size) x (clean, torn) x (first spare, the spare "
            "a roll's job made): %d crash points, %d before the flush; %d with acknowledged "
            "data in a spare not yet renamed\n",
            seeds, cases, before, spare_acked_unnamed);
    CHECK(spare_acked_unnamed > 0);
}

/* A clean close removes the spare; a spare left by a crash with nothing in it is deleted at
 * open, as is one whose first batch fails its CRC; one holding a valid batch that continues
 * the log becomes its newest segment, durably. */
TEST(sim_spare_file_leftovers)
{
    sim_env e;
    env_init(&e, test_seed() ^ 0x5a7f);
    e.cfg.retention_ms = -1;
    e.cfg.spare_files = true;
    CHECK_EQ(env_open(&e), 0);
    storage_log_buf_info bi;
    fill_until_spare_ready(&e, &bi);
    CHECK(spare_file_exists(&e));
    env_close(&e);
    CHECK(!spare_file_exists(&e)); /* a clean close unlinks it */
    /* A crash with a spare ready (empty): deleted at open. */
    CHECK_EQ(env_open(&e), 0);
    CHECK_EQ(env_append(&e, 1), 0); /* past half a segment still: the spare job starts */
    fill_until_spare_ready(&e, &bi);
    io_sim_crash(e.io);
    e.io = io_sim_restart(e.io);
    CHECK(spare_file_exists(&e));
    CHECK_EQ(env_open(&e), 0);
    CHECK(!spare_file_exists(&e));
    CHECK_EQ(env_verify(&e), e.n);
    /* Garbage in a spare (a batch header whose CRC does not match): deleted, not a segment. */
    int64_t high = storage_log_high_offset(e.log);
    env_close(&e);
    uint8_t junk[4096];
    memset(junk, 0, sizeof(junk));
    size_t jl = su_batch(junk, sizeof(junk), 2, NULL, 7, 100, false, 5);
    storage_batch_stamp(junk, high, 1);
    junk[jl / 2] ^= 0xff;
    int fd = io_fs_open(e.io, LOG_DIR "/spare-1.seg", O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    CHECK_EQ(io_fs_pwrite(e.io, fd, junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
    CHECK_EQ(io_fs_fsync(e.io, fd), 0);
    io_fs_close(e.io, fd);
    CHECK_EQ(io_fs_fsync_dir(e.io, LOG_DIR), 0);
    int segs = 0;
    CHECK_EQ(env_open(&e), 0);
    segs = storage_log_segment_count(e.log);
    CHECK(!spare_file_exists(&e));
    CHECK_EQ(env_verify(&e), e.n);
    /* The same batch intact, continuing the log: the newest segment whose rename was lost;
     * recovered as a segment named by it. */
    CHECK_EQ(storage_log_high_offset(e.log), high);
    env_close(&e);
    jl = su_batch(junk, sizeof(junk), 2, NULL, 7, 100, false, 5);
    storage_batch_stamp(junk, high, 1);
    memset(junk + jl, 0, sizeof(junk) - jl);
    AL_ASSERT(e.n < 512);
    e.bytes[e.n] = malloc(jl);
    memcpy(e.bytes[e.n], junk, jl);
    e.len[e.n] = jl;
    e.base[e.n] = high;
    e.last[e.n] = high + 1;
    e.n++;
    fd = io_fs_open(e.io, LOG_DIR "/spare-0.seg", O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    CHECK_EQ(io_fs_pwrite(e.io, fd, junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
    CHECK_EQ(io_fs_fsync(e.io, fd), 0);
    io_fs_close(e.io, fd);
    CHECK_EQ(io_fs_fsync_dir(e.io, LOG_DIR), 0);
    CHECK_EQ(env_open(&e), 0);
    CHECK(!spare_file_exists(&e));
    CHECK_EQ(storage_log_segment_count(e.log), segs + 1);
    CHECK_EQ(storage_log_high_offset(e.log), high + 2);
    CHECK_EQ(env_verify(&e), e.n);
    /* ...and its rename was made durable at open: it survives a power loss now. */
    io_sim_crash(e.io);
    e.io = io_sim_restart(e.io);
    CHECK_EQ(env_open(&e), 0);
    CHECK_EQ(env_verify(&e), e.n);
    CHECK_EQ(storage_log_segment_count(e.log), segs + 1);
    env_close(&e);
    env_free(&e);
}

/* Off by default: rolls by size with the world stepped between appends make no spare file. */
TEST(sim_spare_files_off_by_default)
{
    sim_env e;
    env_init(&e, test_seed() ^ 0x5a80);
    e.cfg.retention_ms = -1;
    CHECK(!e.cfg.spare_files || getenv("AILURUS_SPARE_FILES"));
    e.cfg.spare_files = false;
    CHECK_EQ(env_open(&e), 0);
    for (int i = 0; i < 120; i++) {
        CHECK_EQ(env_append(&e, 1), 0);
        if (i % 4 == 3) CHECK_EQ(env_sync(&e), 0);
    }
    CHECK_EQ(env_sync(&e), 0);
    storage_log_buf_info bi;
    storage_log_buf_info_get(e.log, &bi);
    CHECK(storage_log_segment_count(e.log) >= 3);
    CHECK_EQ(bi.spare_rolls, 0);
    CHECK(!bi.spare_ready);
    CHECK(!spare_file_exists(&e));
    env_close(&e);
    env_free(&e);
}

/* ---- recovery checkpoints (log_ckpt.c) ---- */

/* What recovery produced, through the public interface: offsets, every segment's summary and
 * index size, and time lookups over the whole range. */
typedef struct log_state {
    int64_t start, high;
    int nsegs;
    storage_segment_info seg[64];
    int64_t by_time[64];
} log_state;

static void state_get(storage_log *log, log_state *st)
{
    memset(st, 0, sizeof(*st));
    st->start = storage_log_start_offset(log);
    st->high = storage_log_high_offset(log);
    st->nsegs = storage_log_segment_count(log);
    AL_ASSERT(st->nsegs <= 64);
    for (int i = 0; i < st->nsegs; i++) {
        AL_ASSERT(storage_log_segment_info(log, i, &st->seg[i]) == 0);
        st->seg[i].path_stem = NULL;
    }
    for (int i = 0; i < 64; i++) st->by_time[i] = storage_log_offset_for_time(log, i * 40);
}

static bool state_eq(const log_state *a, const log_state *b)
{
    if (a->start != b->start || a->high != b->high || a->nsegs != b->nsegs) return false;
    for (int i = 0; i < a->nsegs; i++) {
        const storage_segment_info *x = &a->seg[i], *y = &b->seg[i];
        if (x->base != y->base || x->last != y->last || x->term != y->term ||
            x->size != y->size || x->max_timestamp != y->max_timestamp ||
            x->index_entries != y->index_entries) {
            fprintf(stderr, "    segment %d differs: last %lld/%lld size %llu/%llu max_ts "
                    "%lld/%lld entries %u/%u\n", i, (long long)x->last, (long long)y->last,
                    (unsigned long long)x->size, (unsigned long long)y->size,
                    (long long)x->max_timestamp, (long long)y->max_timestamp,
                    x->index_entries, y->index_entries);
            return false;
        }
    }
    return memcmp(a->by_time, b->by_time, sizeof(a->by_time)) == 0;
}

/* Appends one batch with a random timestamp (the running max in the time index then
 * matters). */
static int env_append_rts(sim_env *e, int32_t term)
{
    static uint8_t b[256 * 600];
    int n = 1 + (int)(su_rand(&e->rng) % 6);
    size_t len = su_batch(b, sizeof(b), n, NULL, su_rand(&e->rng), su_rand(&e->rng) % 400,
                          false, (int64_t)(su_rand(&e->rng) % 2500));
    storage_append_result r;
    int rc = storage_log_append(e->log, term, b, len, &r);
    if (rc == 0) {
        AL_ASSERT(e->n < 512);
        e->bytes[e->n] = malloc(len);
        memcpy(e->bytes[e->n], b, len);
        e->len[e->n] = len;
        e->base[e->n] = r.base_offset;
        e->last[e->n] = r.last_offset;
        e->n++;
    }
    return rc;
}

/* Path of the active segment's checkpoint file. */
static void ckpt_file(sim_env *e, char *out, size_t n)
{
    storage_segment_info si;
    AL_ASSERT(storage_log_segment_info(e->log, storage_log_segment_count(e->log) - 1, &si) == 0);
    snprintf(out, n, "%s.ckpt", si.path_stem);
}

static uint64_t ckpt_pos_of(sim_env *e)
{
    storage_log_buf_info bi;
    storage_log_buf_info_get(e->log, &bi);
    return bi.ckpt_recovered_pos;
}

/* Crashes, reopens (with whatever checkpoint is on disk), checks the model, and returns the
 * state; then drops the log, removes the checkpoint and reopens: a full scan of the same
 * files must give the same state. Returns the position the first open resumed at (0: none)
 * or -1 on a mismatch. */
static int64_t crash_and_compare(sim_env *e)
{
    io_sim_crash(e->io);
    e->io = io_sim_restart(e->io);
    al_log_set_level(AL_LOG_ERROR);
    int rc = env_open(e);
    al_log_set_level(AL_LOG_INFO);
    if (rc < 0) return -1;
    int64_t used = (int64_t)ckpt_pos_of(e);
    int k = env_verify(e);
    if (k < 0) return -1;
    env_forget_from(e, k);
    e->acked = k;
    log_state a, b;
    state_get(e->log, &a);
    char path[4200];
    ckpt_file(e, path, sizeof(path));
    storage_log_abandon(e->log);
    e->log = NULL;
    io_fs_unlink(e->io, path);
    al_log_set_level(AL_LOG_ERROR);
    rc = env_open(e);
    al_log_set_level(AL_LOG_INFO);
    if (rc < 0 || ckpt_pos_of(e) != 0) return -1;
    state_get(e->log, &b);
    if (!state_eq(&a, &b) || env_verify(e) != k) return -1;
    return used;
}

/* A checkpoint written while the log runs is used after a crash, and recovery from it gives
 * exactly what a full scan gives (indexes, summary, next offset, bytes). */
TEST(sim_ckpt_round_trip_equals_full_scan)
{
    sim_env e;
    env_init(&e, test_seed() ^ 0xc4c4);
    e.cfg.segment_bytes = 1 << 20;
    e.cfg.ckpt_bytes = 8192;
    CHECK_EQ(env_open(&e), 0);
    for (int g = 0; g < 30; g++) {
        for (int i = 0; i < 4; i++) CHECK_EQ(env_append_rts(&e, 1), 0);
        CHECK_EQ(env_sync(&e), 0);
    }
    for (int i = 0; i < 1000; i++) /* let the checkpoint job in flight complete */
        if (io_sim_world_step(e.w) <= 0) break;
    storage_log_buf_info bi;
    storage_log_buf_info_get(e.log, &bi);
    CHECK(bi.ckpt_jobs > 0);
    for (int i = 0; i < 3; i++) CHECK_EQ(env_append_rts(&e, 1), 0); /* not durable */
    int64_t used = crash_and_compare(&e);
    CHECK(used > 0);
    fprintf(stderr, "    %llu checkpoints written; recovery resumed at %lld of %llu bytes\n",
            (unsigned long long)bi.ckpt_jobs, (long long)used,
            (unsigned long long)storage_log_size_bytes(e.log));
    env_free(&e);
}

/* Checkpoints that must not be used: a flipped byte, a header naming another segment (CRC
 * recomputed), a recorded last offset the data does not have (CRC recomputed), a position
 * beyond the data file. Each is logged, removed, and the segment scanned in full. */
TEST(sim_ckpt_corrupt_or_stale_ignored)
{
    for (int variant = 0; variant < 4; variant++) {
        sim_env e;
        env_init(&e, test_seed() ^ (0xbad0 + (uint64_t)variant));
        e.cfg.segment_bytes = 1 << 20;
        e.cfg.ckpt_bytes = 8192;
        CHECK_EQ(env_open(&e), 0);
        for (int g = 0; g < 20; g++) {
            for (int i = 0; i < 4; i++) CHECK_EQ(env_append_rts(&e, 1), 0);
            CHECK_EQ(env_sync(&e), 0);
        }
        for (int i = 0; i < 1000; i++)
            if (io_sim_world_step(e.w) <= 0) break;
        char path[4200];
        ckpt_file(&e, path, sizeof(path));
        storage_log_abandon(e.log);
        e.log = NULL;
        uint8_t *b = NULL;
        size_t len = 0;
        CHECK_EQ(io_fs_read_all(e.io, path, 1 << 20, &b, &len), 0);
        CHECK(len > 60);
        if (variant == 0) b[len / 2] ^= 0x10;
        else if (variant == 1) al_put_be64(b + 8, 7);                    /* base offset */
        else if (variant == 2) al_put_be64(b + 32, al_be64(b + 32) - 1); /* last at P */
        else al_put_be64(b + 24, 1u << 30);                              /* P */
        if (variant) al_put_be32(b + len - 4, crc32c(0, b, len - 4));
        CHECK_EQ(io_fs_write_atomic(e.io, path, b, len), 0);
        free(b);
        al_log_set_level(AL_LOG_ERROR);
        CHECK_EQ(env_open(&e), 0);
        al_log_set_level(AL_LOG_INFO);
        CHECK_EQ(ckpt_pos_of(&e), 0);
        CHECK_EQ(io_fs_exists(e.io, path), 0); /* removed */
        CHECK_EQ(env_verify(&e), e.n);
        env_close(&e);
        env_free(&e);
    }
}

/* A truncation below a checkpoint removes it durably before cutting; new appends at the same
 * positions then recover correctly after a crash, from a newer checkpoint or a full scan. */
TEST(sim_ckpt_truncation_below_removes_it)
{
    sim_env e;
    env_init(&e, test_seed() ^ 0x7c7c);
    e.cfg.segment_bytes = 1 << 20;
    e.cfg.ckpt_bytes = 4096;
    e.cfg.ckpt_ms = 0;
    CHECK_EQ(env_open(&e), 0);
    for (int g = 0; g < 20; g++) {
        for (int i = 0; i < 4; i++) CHECK_EQ(env_append_rts(&e, 1), 0);
        CHECK_EQ(env_sync(&e), 0);
    }
    for (int i = 0; i < 1000; i++)
        if (io_sim_world_step(e.w) <= 0) break;
    char path[4200];
    ckpt_file(&e, path, sizeof(path));
    CHECK_EQ(io_fs_exists(e.io, path), 1);
    int cut = 5; /* far below the checkpoint */
    CHECK_EQ(storage_log_truncate_suffix(e.log, e.base[cut]), 0);
    env_forget_from(&e, cut);
    e.acked = e.n;
    CHECK_EQ(io_fs_exists(e.io, path), 0);
    /* A crash right after: the removal was durable. */
    io_sim_crash(e.io);
    e.io = io_sim_restart(e.io);
    CHECK_EQ(io_fs_exists(e.io, path), 0);
    CHECK_EQ(env_open(&e), 0);
    CHECK_EQ(env_verify(&e), e.n);
    /* Different batches over the same positions, same term; then crash and compare. */
    for (int g = 0; g < 10; g++) {
        for (int i = 0; i < 3; i++) CHECK_EQ(env_append_rts(&e, 1), 0);
        CHECK_EQ(env_sync(&e), 0);
    }
    int64_t used = crash_and_compare(&e);
    CHECK(used >= 0);
    env_close(&e);
    env_free(&e);
}

/* Finishing a rolled segment removes its checkpoint (its index files take over); a checkpoint
 * file of a segment that is not the last (one that came back after a crash) and one whose
 * segment is gone are deleted at open, and the last segment's is still used. */
TEST(sim_ckpt_removed_when_finished_and_leftovers_deleted)
{
    sim_env e;
    env_init(&e, test_seed() ^ 0xf1f1);
    e.cfg.segment_bytes = 1 << 20;
    e.cfg.ckpt_bytes = 4096;
    e.cfg.retention_ms = -1;
    CHECK_EQ(env_open(&e), 0);
    for (int g = 0; g < 10; g++) {
        for (int i = 0; i < 4; i++) CHECK_EQ(env_append_rts(&e, 1), 0);
        CHECK_EQ(env_sync(&e), 0);
    }
    for (int i = 0; i < 1000; i++)
        if (io_sim_world_step(e.w) <= 0) break;
    char first[4200];
    ckpt_file(&e, first, sizeof(first));
    CHECK_EQ(io_fs_exists(e.io, first), 1);
    uint8_t *b = NULL;
    size_t len = 0;
    CHECK_EQ(io_fs_read_all(e.io, first, 1 << 20, &b, &len), 0);
    /* A new term rolls; housekeeping finishes the first segment. */
    for (int g = 0; g < 10; g++) {
        for (int i = 0; i < 4; i++) CHECK_EQ(env_append_rts(&e, 2), 0);
        CHECK_EQ(env_sync(&e), 0);
    }
    CHECK_EQ(storage_log_segment_count(e.log), 2);
    CHECK_EQ(storage_log_housekeep(e.log, io_wall_ms(e.io), 1 << 20), 0);
    for (int i = 0; i < 100000 && env_finished(&e, 2) < 1; i++)
        if (io_sim_world_step(e.w) <= 0) break;
    CHECK_EQ(env_finished(&e, 2), 1);
    CHECK_EQ(io_fs_exists(e.io, first), 0);
    char second[4200];
    ckpt_file(&e, second, sizeof(second));
    CHECK_EQ(io_fs_exists(e.io, second), 1);
    /* The first segment's checkpoint comes back, and one of a segment that does not exist. */
    CHECK_EQ(io_fs_write_atomic(e.io, first, b, len), 0);
    char orphan[4200];
    snprintf(orphan, sizeof(orphan), "%s/%020d-%d.ckpt", LOG_DIR, 999999, 7);
    CHECK_EQ(io_fs_write_atomic(e.io, orphan, b, len), 0);
    free(b);
    io_sim_crash(e.io);
    e.io = io_sim_restart(e.io);
    al_log_set_level(AL_LOG_ERROR);
    CHECK_EQ(env_open(&e), 0);
    al_log_set_level(AL_LOG_INFO);
    CHECK(ckpt_pos_of(&e) > 0); /* the last segment's */
    CHECK_EQ(io_fs_exists(e.io, first), 0);
    CHECK_EQ(io_fs_exists(e.io, orphan), 0);
    CHECK_EQ(env_verify(&e), e.n);
    /* A truncation into the first segment (it becomes the last) works and survives a crash. */
    int cut = 20;
    CHECK_EQ(storage_log_truncate_suffix(e.log, e.base[cut]), 0);
    env_forget_from(&e, cut);
    e.acked = e.n;
    io_sim_crash(e.io);
    e.io = io_sim_restart(e.io);
    al_log_set_level(AL_LOG_ERROR);
    CHECK_EQ(env_open(&e), 0);
    al_log_set_level(AL_LOG_INFO);
    CHECK_EQ(env_verify(&e), e.n);
    env_close(&e);
    env_free(&e);
}

/* Random runs with checkpoints every few hundred bytes: appends, syncs, truncations (new
 * terms), rolls and finished segments, then a power loss at a random point (jobs in flight
 * vanish); recovery keeps every acknowledged batch and equals a full scan of the same files. */
TEST(sim_ckpt_random_crashes_equal_full_scan)
{
    uint64_t seed = test_seed();
    int runs = 0;
    long used = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int s = 0; s < 5000; s++) {
        sim_env e;
        uint64_t sd = seed + (uint64_t)s * 104729;
        env_init(&e, sd);
        e.cfg.retention_ms = -1;
        e.cfg.segment_bytes = 16384 + (su_rand(&e.rng) % 4) * 8192;
        e.cfg.ckpt_bytes = 256 + su_rand(&e.rng) % 2048;
        e.cfg.ckpt_ms = (int64_t)(su_rand(&e.rng) % 3);
        CHECK_EQ(env_open(&e), 0);
        int32_t term = 1;
        int groups = 3 + (int)(su_rand(&e.rng) % 12);
        for (int g = 0; g < groups && e.n < 400; g++) {
            int nb = 1 + (int)(su_rand(&e.rng) % 5);
            for (int i = 0; i < nb; i++) CHECK_EQ(env_append_rts(&e, term), 0);
            uint64_t r = su_rand(&e.rng) % 8;
            if (r < 5) {
                CHECK_EQ(env_sync(&e), 0);
            } else if (r == 5) {
                storage_log_flush(e.log);
                int steps = (int)(su_rand(&e.rng) % 8);
                for (int i = 0; i < steps; i++)
                    if (io_sim_world_step(e.w) <= 0) break;
            } else if (r == 6) {
                CHECK_EQ(env_sync(&e), 0);
                CHECK(storage_log_housekeep(e.log, io_wall_ms(e.io), 1 << 20) >= 0);
            } else if (e.n > 2) {
                CHECK_EQ(env_sync(&e), 0);
                int k = e.n - 1 - (int)(su_rand(&e.rng) % (uint64_t)AL_MIN(e.n - 1, 12));
                CHECK_EQ(storage_log_truncate_suffix(e.log, e.base[k]), 0);
                env_forget_from(&e, k);
                term++;
            }
            int steps = (int)(su_rand(&e.rng) % 4);
            for (int i = 0; i < steps; i++)
                if (io_sim_world_step(e.w) <= 0) break;
        }
        int64_t u = crash_and_compare(&e);
        if (u < 0) fprintf(stderr, "    seed %llu: mismatch\n", (unsigned long long)sd);
        CHECK(u >= 0);
        used += u > 0;
        env_free(&e);
        runs++;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (t1.tv_sec - t0.tv_sec > 10) break;
    }
    fprintf(stderr, "    %d runs, %ld recovered from a checkpoint\n", runs, used);
    CHECK(used > runs / 4);
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
