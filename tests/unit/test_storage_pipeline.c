/*
 * test_storage_pipeline.c — two durable writes in flight per log (log.c "flush") and the zero
 * fill ahead of the data (log.c "zero-fill ahead", cfg.prezero_bytes): on the
 * simulated disk, whose operations complete in random order (each draws its own latency) and
 * take effect only when they complete, batches are appended one by one while writes are in
 * flight, each with its own waiter; then the node loses power at a random point (sometimes
 * with a torn last write) or closes cleanly. Checks that acknowledgements come in offset
 * order, that every acknowledged batch is recovered byte for byte with nothing corrupt after
 * it, and that writes were really pipelined, including ones whose first block is shared with
 * the write before (the ordering hazard: issue that block before the previous write completed
 * and a reordered completion leaves the older block on disk, which this test catches). With
 * zero fill on, the same workload runs with zero writes in flight next to the data writes: a
 * data write reaching into a zero write in flight must wait for it (else a reordered
 * completion zeroes acknowledged bytes); and a crash after the zero fill but before the next
 * data recovers exactly the acknowledged batches.
 */
#include "storage_util.h"

#include "base/log.h"
#include "reactor/io_sim.h"

#include <time.h>

#define LOG_DIR "/data/p0"
#define MAXB 600

typedef struct pl_env {
    io_sim_world *w;
    io *io;
    storage_log *log;
    storage_log_config cfg;
    uint8_t *bytes[MAXB];
    size_t len[MAXB];
    int64_t base[MAXB], last[MAXB];
    su_wait wait[MAXB];
    int n;
    uint64_t rng;
} pl_env;

static void pl_free(pl_env *e)
{
    if (e->log) storage_log_abandon(e->log);
    for (int i = 0; i < e->n; i++) free(e->bytes[i]);
    if (e->w) io_sim_world_destroy(e->w);
    memset(e, 0, sizeof(*e));
}

static int pl_open(pl_env *e)
{
    if (e->log) storage_log_abandon(e->log);
    e->log = NULL;
    return storage_log_open(e->io, LOG_DIR, &e->cfg, &e->log);
}

/* Acknowledged batches: the longest prefix whose waiters reported success. Also checks that
 * no later batch was acknowledged before an earlier one (returns -1 then). */
static int pl_acked(const pl_env *e)
{
    int k = 0;
    while (k < e->n && e->wait[k].done && e->wait[k].res == 0) k++;
    for (int i = k; i < e->n; i++)
        if (e->wait[i].done && e->wait[i].res == 0) return -1;
    return k;
}

/* Appends one batch of random size (so that writes end anywhere in a block) and waits on it. */
static int pl_append(pl_env *e)
{
    static uint8_t b[64 * 600];
    int nrec = 1 + (int)(su_rand(&e->rng) % 8);
    size_t len = su_batch(b, sizeof(b), nrec, NULL, su_rand(&e->rng), su_rand(&e->rng) % 480,
                          false, 1000 + e->n);
    storage_append_result r;
    int rc = storage_log_append(e->log, 1, b, len, &r);
    if (rc < 0) return rc;
    AL_ASSERT(e->n < MAXB);
    int i = e->n++;
    e->bytes[i] = malloc(len);
    AL_ASSERT(e->bytes[i]);
    memcpy(e->bytes[i], b, len);
    e->len[i] = len;
    e->base[i] = r.base_offset;
    e->last[i] = r.last_offset;
    e->wait[i] = (su_wait){.w = {.cb = su_wait_cb}};
    rc = storage_log_flush_wait(e->log, r.last_offset, &e->wait[i].w);
    if (rc == 1) e->wait[i].done = 1;
    return rc < 0 ? rc : 0;
}

/* Reads the whole reopened log: a prefix of the model, byte for byte, holding at least
 * `acked` batches. Returns the number found or -1. */
static int pl_verify(pl_env *e, int acked)
{
    int k = 0;
    int64_t off = storage_log_start_offset(e->log);
    for (int guard = 0; guard < 100000; guard++) {
        su_read sr = {0};
        sr.r.offset = off;
        sr.r.max_bytes = 8192;
        sr.r.cb = su_read_cb;
        int rc = storage_log_read(e->log, &sr.r);
        if (rc < 0) return -1;
        for (int i = 0; rc == 0 && i < 1000000 && !sr.done; i++)
            if (io_sim_world_step(e->w) <= 0) break;
        if (rc == 0 && !sr.done) return -1;
        if (sr.r.res < 0) return -1;
        if (sr.r.len == 0) break;
        for (size_t pos = 0; pos < sr.r.len;) {
            storage_batch_hdr h;
            int64_t sz = storage_batch_validate(sr.r.data + pos, sr.r.len - pos, 0, &h);
            if (sz < 0 || k >= e->n || (size_t)sz != e->len[k] || h.base_offset != e->base[k] ||
                memcmp(sr.r.data + pos, e->bytes[k], (size_t)sz) != 0) {
                fprintf(stderr, "    batch %d differs (acked %d, appended %d)\n", k, acked,
                        e->n);
                storage_read_release(&sr.r);
                return -1;
            }
            pos += (size_t)sz;
            k++;
        }
        off = sr.r.next_offset;
        storage_read_release(&sr.r);
    }
    if (k < acked) {
        fprintf(stderr, "    only %d batches recovered, %d acknowledged\n", k, acked);
        return -1;
    }
    if (k > 0 && storage_log_high_offset(e->log) != e->last[k - 1] + 1) return -1;
    return k;
}

/* Steps the world until nothing is left to run (bounded). */
static void pl_quiesce(pl_env *e)
{
    for (int i = 0; i < 1000000; i++)
        if (io_sim_world_step(e->w) <= 0) break;
}

/* Totals over seeds: the logs' pipelining and zero-fill counters, batches acknowledged. */
typedef struct pl_tot {
    uint64_t pipe, shared, zeroed, zero_waits;
    long acked;
} pl_tot;

/* The run's configuration: small segments and allocation steps, writes for waiters only. */
static void pl_config(pl_env *e, bool pipeline, uint64_t prezero)
{
    storage_log_config_default(&e->cfg);
    e->cfg.segment_bytes = 160 * 1024; /* a roll or two per run */
    e->cfg.fallocate_step = 256 * 1024;
    e->cfg.flush_bytes = 1 << 30;      /* writes start for waiters only */
    e->cfg.index_interval_bytes = 1024;
    e->cfg.retention_ms = -1;
    e->cfg.pipeline_writes = pipeline;
    e->cfg.prezero_bytes = prezero;
}

static void pl_count(pl_env *e, pl_tot *t, int acked)
{
    storage_log_buf_info bi;
    storage_log_buf_info_get(e->log, &bi);
    t->pipe += bi.pipelined;
    t->shared += bi.shared_block;
    t->zeroed += bi.zeroed;
    t->zero_waits += bi.zero_waits;
    t->acked += acked;
}

/* One seed: appends while stepping the world, then a crash (or a clean close) and recovery.
 * prezero: cfg.prezero_bytes (0: no zero fill). Returns 0 or a negative step number; adds the
 * log's counters and the acknowledged batches to *t. */
static int pl_run(uint64_t seed, bool pipeline, uint64_t prezero, pl_tot *t)
{
    pl_env e;
    memset(&e, 0, sizeof(e));
    struct io_sim_opts o = {.seed = seed, .torn_writes = seed % 2 == 0};
    AL_ASSERT(io_sim_world_create(&e.w, &o) == 0);
    e.io = io_sim_node_create(e.w, "n0");
    AL_ASSERT(e.io && io_sim_fs_mkdir_p(e.io, LOG_DIR) == 0);
    pl_config(&e, pipeline, prezero);
    e.rng = seed * 2654435761u + 7;
    int rc = -1;
    if (pl_open(&e) < 0) goto out;
    int nb = 20 + (int)(su_rand(&e.rng) % (MAXB - 40));
    for (int i = 0; i < nb; i++) {
        rc = -2;
        if (pl_append(&e) < 0) goto out;
        int steps = (int)(su_rand(&e.rng) % 4);
        for (int s = 0; s < steps; s++)
            if (io_sim_world_step(e.w) <= 0) break;
        rc = -3;
        if (pl_acked(&e) < 0) goto out;
    }
    bool clean = su_rand(&e.rng) % 4 == 0;
    if (clean) { /* everything is acknowledged, then a clean close */
        for (int i = 0; i < 1000000 && pl_acked(&e) < e.n; i++)
            if (io_sim_world_step(e.w) <= 0) break;
    } else {     /* a few more steps, then power loss wherever the writes are */
        int steps = (int)(su_rand(&e.rng) % 12);
        for (int s = 0; s < steps; s++)
            if (io_sim_world_step(e.w) <= 0) break;
    }
    int acked = pl_acked(&e);
    rc = -4;
    if (acked < 0 || (clean && acked != e.n)) goto out;
    pl_count(&e, t, acked);
    if (clean) {
        pl_quiesce(&e); /* a zero write may follow the last sync: the sim io runs it here */
        storage_log_close(e.log);
        e.log = NULL;
    }
    io_sim_crash(e.io);
    e.io = io_sim_restart(e.io);
    al_log_set_level(AL_LOG_ERROR);
    rc = pl_open(&e);
    al_log_set_level(AL_LOG_INFO);
    if (rc < 0) {
        rc = -5;
        goto out;
    }
    rc = pl_verify(&e, acked) < 0 ? -6 : 0;
out:
    pl_free(&e);
    return rc;
}

/* Runs pl_run over up to 2000 seeds (test_seed() + s * step), at most ~12 s: seed s pipelines
 * when pipe_odd_only is false or s is odd, and zero-fills 8-32 KiB ahead when zero_fill.
 * CHECKs every run; returns the number of seeds run. */
static int pl_seeds(uint64_t step, bool pipe_odd_only, bool zero_fill, pl_tot *t)
{
    uint64_t seed = test_seed();
    int runs = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int s = 0; s < 2000; s++) {
        uint64_t sd = seed + (uint64_t)s * step;
        bool pipeline = !pipe_odd_only || s % 2 == 1;
        int rc = pl_run(sd, pipeline, zero_fill ? 8192u * (uint64_t)(1 + s % 4) : 0, t);
        if (rc != 0) fprintf(stderr, "    seed %llu: rc %d\n", (unsigned long long)sd, rc);
        CHECK_EQ(rc, 0);
        runs++;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (t1.tv_sec - t0.tv_sec > 12) break;
    }
    return runs;
}

TEST(sim_pipelined_writes_keep_every_acknowledged_batch)
{
    pl_tot t = {0};
    int runs = pl_seeds(104729, false, false, &t);
    fprintf(stderr, "    %d seeds, %ld batches acknowledged and recovered, %llu writes pipelined "
            "(%llu sharing their first block)\n", runs, t.acked, (unsigned long long)t.pipe,
            (unsigned long long)t.shared);
    CHECK(runs >= 20);
    CHECK(t.pipe > 0);
    CHECK(t.shared > 0);
}

/* Zero fill ahead, with and without pipelining (alternate seeds): zero writes run next to the
 * data writes, and data writes catch up with zero writes in flight (zero_waits). */
TEST(sim_zero_fill_ahead_keeps_every_acknowledged_batch)
{
    pl_tot t = {0};
    int runs = pl_seeds(7919, true, true, &t);
    fprintf(stderr, "    %d seeds, %ld batches acknowledged and recovered, %llu bytes zero-filled, "
            "%llu write starts waited for a zero write, %llu writes pipelined\n", runs, t.acked,
            (unsigned long long)t.zeroed, (unsigned long long)t.zero_waits,
            (unsigned long long)t.pipe);
    CHECK(runs >= 20);
    CHECK(t.zeroed > 0);
    CHECK(t.zero_waits > 0);
}

/* Appends until the log has zero-filled ahead and everything is acknowledged and idle, then
 * appends more batches with no write started for them (no waiter; flush_bytes is huge), and
 * loses power (torn or not): exactly the acknowledged batches come back, the zeros after them
 * read as the end of the log, and the log goes on from there. */
TEST(sim_crash_after_zero_fill_before_data_recovers_exactly_the_acked_batches)
{
    uint64_t seed = test_seed();
    int runs = 0;
    uint64_t zeroed = 0;
    for (int s = 0; s < 40; s++) {
        uint64_t sd = seed + (uint64_t)s * 15485863;
        pl_env e;
        memset(&e, 0, sizeof(e));
        struct io_sim_opts o = {.seed = sd, .torn_writes = s % 2 == 0};
        AL_ASSERT(io_sim_world_create(&e.w, &o) == 0);
        e.io = io_sim_node_create(e.w, "n0");
        AL_ASSERT(e.io && io_sim_fs_mkdir_p(e.io, LOG_DIR) == 0);
        pl_config(&e, s % 3 == 0, 16384);
        e.cfg.segment_bytes = 1 << 20;
        e.cfg.fallocate_step = 64 * 1024;
        e.rng = sd * 2654435761u + 11;
        CHECK_EQ(pl_open(&e), 0);
        storage_log_buf_info bi = {0};
        for (int i = 0; i < 300 && bi.zeroed == 0; i++) {
            CHECK_EQ(pl_append(&e), 0);
            int steps = (int)(su_rand(&e.rng) % 4);
            for (int k = 0; k < steps; k++)
                if (io_sim_world_step(e.w) <= 0) break;
            if (i % 16 == 15) pl_quiesce(&e);
            storage_log_buf_info_get(e.log, &bi);
        }
        pl_quiesce(&e); /* the zero fill ahead completes, nothing is in flight */
        storage_log_buf_info_get(e.log, &bi);
        CHECK(bi.zeroed > 0);
        zeroed += bi.zeroed;
        int acked = pl_acked(&e);
        CHECK_EQ(acked, e.n);
        /* More data, never written: lost with the power, as it was never acknowledged. */
        int extra = 1 + (int)(su_rand(&e.rng) % 5);
        for (int i = 0; i < extra; i++) {
            static uint8_t b[64 * 600];
            size_t len = su_batch(b, sizeof(b), 3, NULL, su_rand(&e.rng), 100, false, 5000 + i);
            storage_append_result r;
            CHECK_EQ(storage_log_append(e.log, 1, b, len, &r), 0);
        }
        io_sim_crash(e.io);
        e.io = io_sim_restart(e.io);
        al_log_set_level(AL_LOG_ERROR);
        CHECK_EQ(pl_open(&e), 0);
        al_log_set_level(AL_LOG_INFO);
        CHECK_EQ(pl_verify(&e, acked), acked);
        /* The log goes on after the zeros: a new batch is durable and read back. */
        CHECK_EQ(pl_append(&e), 0);
        pl_quiesce(&e);
        CHECK_EQ(pl_acked(&e), e.n);
        storage_log_close(e.log);
        e.log = NULL;
        io_sim_crash(e.io);
        e.io = io_sim_restart(e.io);
        CHECK_EQ(pl_open(&e), 0);
        CHECK_EQ(pl_verify(&e, e.n), e.n);
        pl_free(&e);
        runs++;
    }
    fprintf(stderr, "    %d seeds, %llu bytes zero-filled before the crashes\n", runs,
            (unsigned long long)zeroed);
    CHECK(runs == 40);
}

/* The default (pipeline_writes off): the same workload never has two writes in flight. */
TEST(sim_default_keeps_one_write_in_flight)
{
    uint64_t seed = test_seed();
    pl_tot t = {0};
    for (int s = 0; s < 50; s++) {
        uint64_t sd = seed + (uint64_t)s * 104729;
        CHECK_EQ(pl_run(sd, false, 0, &t), 0);
    }
    CHECK(t.acked > 0);
    CHECK_EQ(t.pipe, 0u);
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
