/*
 * storage_util.h — helpers shared by the storage unit tests: building test batches with known
 * keys and values, driving an io until a condition holds, and a deterministic PRNG.
 * Header-only (static functions), included by tests/unit/test_storage_*.c.
 */
#ifndef AL_TEST_STORAGE_UTIL_H
#define AL_TEST_STORAGE_UTIL_H

#include "test.h"

#include "base/cursor.h"
#include "reactor/io.h"
#include "storage/batch.h"
#include "storage/log.h"

#include <stdio.h>
#include <stdlib.h>

static inline uint64_t su_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/*
 * Builds an uncompressed batch of n records into out (cap bytes): record i has key
 * "k<keys[i]>" (keys NULL: "k<i>"; keys[i] < 0: null key), value "v<tag>-<i>" padded to vlen
 * bytes (vlen < 0 with tomb: null values). Returns the batch size (asserts on overflow).
 */
static __attribute__((unused)) size_t su_batch(uint8_t *out, size_t cap, int n, const int *keys,
                                               uint64_t tag, size_t vlen, bool tomb, int64_t ts)
{
    storage_build_record recs[256];
    char kbuf[256][16];
    static char vbuf[256][512];
    AL_ASSERT(n > 0 && n <= 256 && vlen < 500);
    for (int i = 0; i < n; i++) {
        int k = keys ? keys[i] : i;
        int kl = snprintf(kbuf[i], sizeof(kbuf[i]), "k%d", k);
        int vl = snprintf(vbuf[i], sizeof(vbuf[i]), "v%llu-%d", (unsigned long long)tag, i);
        while ((size_t)vl < vlen) {
            vbuf[i][vl] = (char)('a' + (tag + (uint64_t)vl) % 26);
            vl++;
        }
        recs[i] = (storage_build_record){i, i, kbuf[i], k < 0 ? -1 : kl, vbuf[i],
                                         tomb ? -1 : vl, NULL, 0};
    }
    storage_build_params p = {0, 0, 0, -1, ts, ts + n - 1, -1, -1, -1};
    int64_t sz = storage_batch_build(out, cap, &p, recs, n);
    AL_ASSERT(sz > 0);
    return (size_t)sz;
}

/* The tests' one real io (io_uring), created on first use; exits 77 (skipped) where io_uring
 * cannot be set up. */
static __attribute__((unused)) io *su_test_io(void)
{
    static io *g;
    if (!g) {
        struct io_uring_opts o = {0};
        int rc = io_uring_create(&g, &o);
        if (rc < 0) {
            fprintf(stderr, "io_uring_create: %s\n", al_strerror(rc));
            exit(77);
        }
    }
    return g;
}

/* Polls io (real back end) until *flag becomes nonzero or timeout_ms passes. Returns *flag. */
static __attribute__((unused)) int su_poll_until(io *iop, volatile int *flag, int timeout_ms)
{
    uint64_t end = io_now_ns(iop) + (uint64_t)timeout_ms * 1000000ull;
    while (!*flag && io_now_ns(iop) < end) io_poll(iop, io_now_ns(iop) + 10000000ull);
    return *flag;
}

/* A waiter that counts completions and remembers the last result. */
typedef struct su_wait {
    storage_waiter w;
    int done;
    int res;
} su_wait;

static __attribute__((unused)) void su_wait_cb(storage_waiter *w)
{
    su_wait *sw = AL_CONTAINER_OF(w, su_wait, w);
    sw->done++;
    sw->res = w->res;
}

/* Makes everything appended to log durable (su_test_io's back end). Returns 0 or the flush's
 * error (AL_ETIMEDOUT after 10 s). */
static __attribute__((unused)) int su_flush_all(storage_log *log)
{
    su_wait w = {.w = {.cb = su_wait_cb}};
    int64_t last = storage_log_last_offset(log);
    if (last < storage_log_start_offset(log)) return 0;
    int rc = storage_log_flush_wait(log, last, &w.w);
    if (rc == 1) return 0;
    if (rc < 0) return rc;
    if (!su_poll_until(su_test_io(), &w.done, 10000)) return AL_ETIMEDOUT;
    return w.res;
}

/* A read that records completion. */
typedef struct su_read {
    storage_read r;
    int done;
} su_read;

static __attribute__((unused)) void su_read_cb(storage_read *r)
{
    AL_CONTAINER_OF(r, su_read, r)->done = 1;
}

#endif
