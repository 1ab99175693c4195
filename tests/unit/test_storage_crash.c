/*
 * test_storage_crash.c — real crashes: a forked child runs a real log on the io_uring back end
 * in test_tmpdir(), appends batches, waits for durability and writes each acknowledged batch's
 * (base offset, size, CRC32C of its bytes) to a pipe. The parent SIGKILLs it at a random
 * moment (seeded; the seed is printed), reopens the log (recovery) and checks that every
 * acknowledged batch is there, byte-identical. The child also runs housekeeping now and then,
 * so crashes hit segments being closed (trimmed, index files written) too. Many rounds on the
 * same log, each round with a higher term, under a time bound.
 */
#include "storage_util.h"

#include "base/crc32c.h"
#include "base/log.h"

#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct ack_rec {
    int64_t base;
    uint32_t len;
    uint32_t crc;
} ack_rec;

static storage_log_config crash_cfg(void)
{
    storage_log_config c;
    storage_log_config_default(&c);
    c.segment_bytes = 512 * 1024;
    c.fallocate_step = 128 * 1024;
    c.flush_bytes = 64 * 1024;
    c.retention_ms = -1; /* the test batches carry tiny timestamps */
    return c;
}

static void child_wait_cb(storage_waiter *w)
{
    *(int *)w->ctx = w->res == 0 ? 1 : -1;
}

/* The child: appends forever (until killed), reporting acknowledged batches on fd. */
static AL_NORETURN void child_main(const char *dir, int fd, int32_t term, uint64_t seed)
{
    io *uio;
    struct io_uring_opts o = {0};
    if (io_uring_create(&uio, &o) < 0) _exit(3);
    storage_log_config c = crash_cfg();
    storage_log *log;
    if (storage_log_open(uio, dir, &c, &log) < 0) _exit(4);
    static uint8_t b[8][256 * 600];
    size_t len[8];
    int64_t base[8];
    uint64_t s = seed | 1;
    for (uint64_t i = 0;; i++) {
        int nb = 1 + (int)(su_rand(&s) % 8);
        for (int k = 0; k < nb; k++) {
            int n = 1 + (int)(su_rand(&s) % 100);
            len[k] = su_batch(b[k], sizeof(b[k]), n, NULL, su_rand(&s), su_rand(&s) % 400, false,
                              (int64_t)i);
            storage_append_result r;
            if (storage_log_append(log, term, b[k], len[k], &r) < 0) _exit(5);
            base[k] = r.base_offset;
        }
        int done = 0;
        storage_waiter w = {.cb = child_wait_cb, .ctx = &done};
        int rc = storage_log_flush_wait(log, storage_log_last_offset(log), &w);
        if (rc < 0) _exit(6);
        if (rc == 1) done = 1;
        for (int guard = 0; !done && guard < 1000000; guard++) io_poll(uio, UINT64_MAX);
        if (done != 1) _exit(7);
        for (int k = 0; k < nb; k++) {
            ack_rec a = {base[k], (uint32_t)len[k], crc32c(0, b[k], len[k])};
            if (write(fd, &a, sizeof(a)) != (ssize_t)sizeof(a)) _exit(8);
        }
        /* Now and then close rolled segments (trim, sync, index files), as a shard does. */
        if (i % 8 == 7 && storage_log_housekeep(log, io_wall_ms(uio), 1 << 20) < 0) _exit(9);
    }
}

/* Reads the whole log and checks every acknowledged record (sorted by offset). */
static int verify_log(io *uio, const char *dir, const ack_rec *acks, int nacks, int64_t *high)
{
    storage_log_config c = crash_cfg();
    storage_log *log;
    int rc = storage_log_open(uio, dir, &c, &log);
    if (rc < 0) return rc;
    int k = 0;
    int64_t off = 0;
    for (int guard = 0; guard < 10000000 && k < nacks; guard++) {
        su_read sr = {0};
        sr.r.offset = off;
        sr.r.max_bytes = 1 << 20;
        sr.r.cb = su_read_cb;
        rc = storage_log_read(log, &sr.r);
        if (rc == 0 && !su_poll_until(uio, &sr.done, 10000)) rc = AL_ETIMEDOUT;
        if (rc >= 0) rc = sr.r.res;
        if (rc < 0 || sr.r.len == 0) break;
        size_t pos = 0;
        while (pos < sr.r.len && k < nacks) {
            storage_batch_hdr h;
            int64_t sz = storage_batch_validate(sr.r.data + pos, sr.r.len - pos, 0, &h);
            if (sz < 0) {
                rc = (int)sz;
                break;
            }
            if (h.base_offset == acks[k].base) {
                if ((uint32_t)sz != acks[k].len ||
                    crc32c(0, sr.r.data + pos, (size_t)sz) != acks[k].crc) {
                    fprintf(stderr, "    batch at %lld differs\n", (long long)h.base_offset);
                    rc = AL_ECORRUPT;
                    break;
                }
                k++;
            } else if (h.base_offset > acks[k].base) {
                break;
            }
            pos += (size_t)sz;
        }
        off = sr.r.next_offset;
        storage_read_release(&sr.r);
        if (rc < 0) break;
    }
    *high = storage_log_high_offset(log);
    storage_log_close(log);
    if (rc < 0) return rc;
    if (k != nacks) {
        fprintf(stderr, "    acknowledged batch at %lld missing (%d of %d found)\n",
                (long long)acks[k].base, k, nacks);
        return AL_ENOTFOUND;
    }
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

TEST(crash_sigkill_keeps_every_acknowledged_batch)
{
    uint64_t seed = test_seed();
    uint64_t s = seed | 1;
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/crashlog", test_tmpdir());
    io *uio;
    struct io_uring_opts o = {0};
    CHECK_EQ(io_uring_create(&uio, &o), 0);
    int cap = 1 << 16, nacks = 0;
    ack_rec *acks = malloc((size_t)cap * sizeof(*acks));
    double t0 = now_s();
    int rounds = 0;
    for (int round = 0; round < 30 && now_s() - t0 < 35; round++) {
        int p[2];
        CHECK_EQ(pipe(p), 0);
        fflush(NULL);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            al_log_set_level(AL_LOG_ERROR);
            child_main(dir, p[1], round + 1, su_rand(&s) ^ (uint64_t)round);
        }
        close(p[1]);
        usleep((useconds_t)(20000 + su_rand(&s) % 400000));
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        CHECK(WIFSIGNALED(st)); /* the child never stops on its own */
        ack_rec a;
        int got = 0;
        while (read(p[0], &a, sizeof(a)) == (ssize_t)sizeof(a)) {
            if (nacks == cap) {
                cap *= 2;
                acks = realloc(acks, (size_t)cap * sizeof(*acks));
            }
            acks[nacks++] = a;
            got++;
        }
        close(p[0]);
        int64_t high = 0;
        al_log_set_level(AL_LOG_WARN);
        int rc = verify_log(uio, dir, acks, nacks, &high);
        al_log_set_level(AL_LOG_INFO);
        CHECK_EQ(rc, 0);
        CHECK(nacks == 0 || high > acks[nacks - 1].base);
        rounds++;
        if (round % 10 == 0)
            fprintf(stderr, "    round %d: %d acknowledged now, %d total, next offset %lld\n",
                    round, got, nacks, (long long)high);
    }
    fprintf(stderr, "    %d rounds, %d acknowledged batches verified\n", rounds, nacks);
    CHECK(rounds >= 5);
    CHECK(nacks > 0);
    free(acks);
    io_destroy(uio);
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
