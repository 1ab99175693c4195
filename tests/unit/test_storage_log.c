/*
 * test_storage_log.c — the partition log on the io_uring back end in test_tmpdir(): empty log,
 * one batch, many batches with segment rolls during flushes, reads (cache, memory, disk),
 * validation, terms, truncation (to 0, inside the first segment), start offset, time lookup,
 * group commit coalescing, and retention and compaction against in-memory reference models.
 */
#include "storage_util.h"

#include "storage/cache.h"

#include <zstd.h>

#include <sys/stat.h>
#include <unistd.h>

static storage_log_config small_cfg(void)
{
    storage_log_config c;
    storage_log_config_default(&c);
    c.segment_bytes = 64 * 1024;
    c.fallocate_step = 16 * 1024;
    c.flush_bytes = 8 * 1024;
    c.index_interval_bytes = 1024;
    return c;
}

/* Expected contents: one stamped batch per entry. */
typedef struct model_batch {
    int64_t base, last;
    size_t len;
    uint8_t *bytes;
} model_batch;

typedef struct model {
    model_batch *v;
    int n, cap;
} model;

static void model_add(model *m, int64_t base, int64_t last, const void *b, size_t len)
{
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 64;
        m->v = realloc(m->v, (size_t)m->cap * sizeof(*m->v));
    }
    model_batch *mb = &m->v[m->n++];
    mb->base = base;
    mb->last = last;
    mb->len = len;
    mb->bytes = malloc(len);
    memcpy(mb->bytes, b, len);
}

static void model_truncate(model *m, int64_t offset)
{
    while (m->n && m->v[m->n - 1].last >= offset) free(m->v[--m->n].bytes);
}

static void model_free(model *m)
{
    for (int i = 0; i < m->n; i++) free(m->v[i].bytes);
    free(m->v);
    memset(m, 0, sizeof(*m));
}

/* Reads one request synchronously (polling for pending ones). Returns r->res or the error. */
static int read_once(storage_log *log, storage_read *r, int64_t offset, size_t max)
{
    su_read *sr = AL_CONTAINER_OF(r, su_read, r);
    sr->done = 0;
    r->offset = offset;
    r->max_bytes = max;
    r->cb = su_read_cb;
    int rc = storage_log_read(log, r);
    if (rc < 0) return rc;
    if (rc == 0 && !su_poll_until(su_test_io(), &sr->done, 10000)) return AL_ETIMEDOUT;
    return r->res;
}

/* Called by for_each_batch for each batch read back: its len bytes and its header. */
typedef void (*batch_fn)(void *ctx, const uint8_t *b, size_t len, const storage_batch_hdr *h);

/* Reads the log from offset `from` to its end, `max` bytes a read (at most 100000 reads),
 * CHECKs that every batch is valid and calls fn(ctx, ...) for each. Returns the offset where
 * the reads stopped: the log's high offset once everything was read. */
static int64_t for_each_batch(storage_log *log, int64_t from, size_t max, batch_fn fn, void *ctx)
{
    int64_t off = from;
    su_read sr;
    for (int guard = 0; guard < 100000; guard++) {
        CHECK_EQ(read_once(log, &sr.r, off, max), 0);
        if (sr.r.len == 0) break;
        for (size_t pos = 0; pos < sr.r.len;) {
            storage_batch_hdr h;
            int64_t sz = storage_batch_validate(sr.r.data + pos, sr.r.len - pos, 0, &h);
            CHECK(sz > 0);
            if (sz <= 0) break;
            fn(ctx, sr.r.data + pos, (size_t)sz, &h);
            pos += (size_t)sz;
        }
        off = sr.r.next_offset;
        storage_read_release(&sr.r);
    }
    return off;
}

struct model_cursor {
    const model *m;
    int k; /* the model batch the next one read must equal */
};

static void check_model_batch(void *ctx, const uint8_t *b, size_t len, const storage_batch_hdr *h)
{
    struct model_cursor *mc = ctx;
    CHECK(mc->k < mc->m->n);
    if (mc->k >= mc->m->n) return;
    const model_batch *want = &mc->m->v[mc->k++];
    CHECK_EQ(h->base_offset, want->base);
    CHECK_EQ(len, want->len);
    CHECK_MEM(b, want->bytes, AL_MIN(len, want->len));
}

/* Reads the whole log from `from` and compares it batch by batch with the model. */
static void check_log_equals(storage_log *log, const model *m, int64_t from)
{
    struct model_cursor mc = {m, 0};
    while (mc.k < m->n && m->v[mc.k].last < from) mc.k++;
    for_each_batch(log, from, 3000, check_model_batch, &mc);
    CHECK_EQ(mc.k, m->n);
}

/* Called by for_each_record for each record: its key's number (su_batch's keys are "k<N>"),
 * its offset and the record. */
typedef void (*record_fn)(void *ctx, int key, int64_t offset, const storage_record *r);

struct record_walk {
    record_fn fn;
    void *ctx;
    int64_t prev; /* last offset of the batch before */
};

static void walk_records(void *ctx, const uint8_t *b, size_t len, const storage_batch_hdr *h)
{
    struct record_walk *w = ctx;
    CHECK(h->base_offset > w->prev);
    w->prev = storage_batch_last_offset(h);
    const uint8_t *recs;
    size_t rlen;
    uint8_t *owned = NULL;
    int rc = storage_batch_records(b, len, 0, &recs, &rlen, &owned);
    CHECK_EQ(rc, 0);
    if (rc != 0) return;
    storage_record_iter it;
    storage_record r;
    storage_record_iter_init(&it, recs, rlen, h->records_count);
    while (storage_record_iter_next(&it, &r) == 1)
        w->fn(w->ctx, atoi((const char *)r.key + 1), h->base_offset + r.offset_delta, &r);
    free(owned);
}

/* Reads the whole log (compressed batches decompressed), CHECKs that batch offsets only grow
 * and calls fn(ctx, ...) for each record in offset order. Returns where the reads stopped (the
 * high offset once everything was read). */
static int64_t for_each_record(storage_log *log, record_fn fn, void *ctx)
{
    struct record_walk w = {fn, ctx, -1};
    return for_each_batch(log, 0, 1 << 16, walk_records, &w);
}

/* True if r's value is one su_batch wrote for tag ("v<tag>-..."). */
static bool value_has_tag(const storage_record *r, uint64_t tag)
{
    char want[32];
    int wl = snprintf(want, sizeof(want), "v%llu-", (unsigned long long)tag);
    return r->value_len >= wl && memcmp(r->value, want, (size_t)wl) == 0;
}

/* Appends one batch of n records, records it in the model. Returns the append rc. */
static int append_one(storage_log *log, model *m, int32_t term, int n, uint64_t tag,
                      size_t vlen, int64_t ts)
{
    static uint8_t b[256 * 600];
    size_t len = su_batch(b, sizeof(b), n, NULL, tag, vlen, false, ts);
    storage_append_result res;
    int rc = storage_log_append(log, term, b, len, &res);
    if (rc == 0) {
        AL_ASSERT(res.last_offset - res.base_offset == n - 1);
        model_add(m, res.base_offset, res.last_offset, b, len);
    }
    return rc;
}

/* Opens (creating) the log in test_tmpdir()/name with config c, and writes its path to dir
 * (n bytes) for reopen_log; CHECKs that it opened. Returns the log, NULL when it did not. */
static storage_log *open_log(char *dir, size_t n, const char *name, const storage_log_config *c)
{
    snprintf(dir, n, "%s/%s", test_tmpdir(), name);
    storage_log *log = NULL;
    CHECK_EQ(storage_log_open(su_test_io(), dir, c, &log), 0);
    return log;
}

/* Closes *log and opens it again from dir with c (what a restart does); CHECKs the open. */
static void reopen_log(storage_log **log, const char *dir, const storage_log_config *c)
{
    storage_log_close(*log);
    *log = NULL;
    CHECK_EQ(storage_log_open(su_test_io(), dir, c, log), 0);
}

TEST(log_empty_open_reopen)
{
    storage_log_config c = small_cfg();
    char dir[512];
    storage_log *log = open_log(dir, sizeof(dir), "empty", &c);
    CHECK_EQ(storage_log_high_offset(log), 0);
    CHECK_EQ(storage_log_last_offset(log), -1);
    CHECK_EQ(storage_log_last_term(log), -1);
    CHECK_EQ(storage_log_segment_count(log), 0);
    su_read sr;
    CHECK_EQ(read_once(log, &sr.r, 0, 100), 0);
    CHECK_EQ(sr.r.len, 0);
    CHECK_EQ(storage_log_term_at(log, 0), AL_ERANGE);
    CHECK_EQ(storage_log_truncate_suffix(log, 0), 0);
    CHECK_EQ(su_flush_all(log), 0);
    reopen_log(&log, dir, &c);
    CHECK_EQ(storage_log_high_offset(log), 0);
    storage_log_close(log);
}

TEST(log_one_batch_durable_and_reopened)
{
    storage_log_config c = small_cfg();
    char dir[512];
    storage_log *log = open_log(dir, sizeof(dir), "one", &c);
    model m = {0};
    CHECK_EQ(append_one(log, &m, 3, 5, 1, 10, 1000), 0);
    CHECK_EQ(storage_log_high_offset(log), 5);
    CHECK_EQ(storage_log_durable_offset(log), -1);
    CHECK_EQ(su_flush_all(log), 0);
    CHECK_EQ(storage_log_durable_offset(log), 4);
    CHECK_EQ(storage_log_term_at(log, 4), 3);
    check_log_equals(log, &m, 0);
    check_log_equals(log, &m, 3); /* inside the batch: the whole batch */
    reopen_log(&log, dir, &c);
    CHECK_EQ(storage_log_high_offset(log), 5);
    CHECK_EQ(storage_log_last_term(log), 3);
    CHECK_EQ(storage_log_durable_offset(log), 4);
    check_log_equals(log, &m, 0);
    storage_log_close(log);
    model_free(&m);
}

TEST(log_invalid_batches_refused_and_terms)
{
    storage_log_config c = small_cfg();
    char dir[512];
    storage_log *log = open_log(dir, sizeof(dir), "invalid", &c);
    model m = {0};
    uint8_t b[4096];
    size_t len = su_batch(b, sizeof(b), 3, NULL, 7, 0, false, 1);
    b[len - 1] ^= 1;
    storage_append_result res;
    CHECK_EQ(storage_log_append(log, 1, b, len, &res), AL_ECORRUPT);
    CHECK_EQ(storage_log_append(log, 1, b, len - 1, &res), AL_ETRUNCATED);
    CHECK_EQ(storage_log_high_offset(log), 0);
    CHECK_EQ(append_one(log, &m, 1, 2, 1, 0, 1), 0);
    CHECK_EQ(append_one(log, &m, 2, 2, 2, 0, 1), 0); /* new term: new segment */
    CHECK_EQ(storage_log_segment_count(log), 2);
    CHECK_EQ(append_one(log, &m, 1, 2, 3, 0, 1), AL_EINVAL); /* lower term */
    CHECK_EQ(storage_log_term_at(log, 1), 1);
    CHECK_EQ(storage_log_term_at(log, 2), 2);
    CHECK_EQ(storage_log_term_at(log, 4), AL_ERANGE);
    c.max_message_bytes = 100;
    reopen_log(&log, dir, &c);
    /* A clean close flushed what was appended. */
    CHECK_EQ(storage_log_high_offset(log), 4);
    CHECK_EQ(storage_log_last_term(log), 2);
    check_log_equals(log, &m, 0);
    len = su_batch(b, sizeof(b), 3, NULL, 7, 200, false, 1);
    CHECK_EQ(storage_log_append(log, 5, b, len, &res), AL_ETOOLARGE);
    storage_log_close(log);
    model_free(&m);
}

/*
 * storage_log_append_validated (the Produce path's append, whose CRC the handler checked): the
 * CRC is not checked again, but the framing still is (same errors as storage_log_append), and
 * the plain append still refuses a corrupt batch from any other caller. What it stores reads
 * back intact, CRC valid.
 */
TEST(log_append_validated_framing_and_plain_append_crc)
{
    storage_log_config c = small_cfg();
    c.max_message_bytes = 1000;
    char dir[512];
    storage_log *log = open_log(dir, sizeof(dir), "validated", &c);
    model m = {0};
    uint8_t b[4096], two[8192];
    storage_append_result res;
    size_t len = su_batch(b, sizeof(b), 3, NULL, 9, 10, false, 1);
    CHECK(storage_batch_validate(b, len, 0, NULL) == (int64_t)len);
    /* Framing errors, as storage_log_append reports them. */
    CHECK_EQ(storage_log_append_validated(log, 1, b, len - 1, &res), AL_ETRUNCATED);
    CHECK_EQ(storage_log_append_validated(log, 1, b, 0, &res), AL_EMALFORMED);
    b[STORAGE_BATCH_OFF_MAGIC] = 1;
    CHECK_EQ(storage_log_append_validated(log, 1, b, len, &res), AL_EMALFORMED);
    b[STORAGE_BATCH_OFF_MAGIC] = 2;
    size_t big = su_batch(two, sizeof(two), 3, NULL, 9, 400, false, 1);
    CHECK_EQ(storage_log_append_validated(log, 1, two, big, &res), AL_ETOOLARGE);
    CHECK_EQ(storage_log_high_offset(log), 0);
    /* Valid: stored, and read back with its CRC intact. */
    CHECK_EQ(storage_log_append_validated(log, 1, b, len, &res), 0);
    CHECK_EQ(res.base_offset, 0);
    CHECK_EQ(res.last_offset, 2);
    model_add(&m, res.base_offset, res.last_offset, b, len);
    /* Two batches in one buffer. */
    size_t l1 = su_batch(two, sizeof(two), 2, NULL, 10, 5, false, 2);
    size_t l2 = su_batch(two + l1, sizeof(two) - l1, 4, NULL, 11, 5, false, 3);
    CHECK_EQ(storage_log_append_validated(log, 1, two, l1 + l2, &res), 0);
    CHECK_EQ(res.batches, 2);
    CHECK_EQ(res.base_offset, 3);
    CHECK_EQ(res.last_offset, 8);
    model_add(&m, 3, 4, two, l1);
    model_add(&m, 5, 8, two + l1, l2);
    /* The plain append still checks the CRC itself. */
    len = su_batch(b, sizeof(b), 2, NULL, 12, 10, false, 4);
    b[len - 1] ^= 0x40;
    CHECK_EQ(storage_log_append(log, 1, b, len, &res), AL_ECORRUPT);
    CHECK_EQ(storage_log_high_offset(log), 9);
    check_log_equals(log, &m, 0);
    reopen_log(&log, dir, &c);
    check_log_equals(log, &m, 0);
    storage_log_close(log);
    model_free(&m);
}

/* Many batches of varied sizes with waiters; segments roll while flushes are in flight. */
TEST(log_roll_during_flush_and_reopen)
{
    storage_log_config c = small_cfg();
    char dir[512];
    storage_log *log = open_log(dir, sizeof(dir), "roll", &c);
    model m = {0};
    uint64_t s = test_seed() | 1;
    su_wait ws[64];
    memset(ws, 0, sizeof(ws));
    int nw = 0;
    for (int i = 0; i < 600; i++) {
        int n = 1 + (int)(su_rand(&s) % 20);
        CHECK_EQ(append_one(log, &m, 1, n, (uint64_t)i, su_rand(&s) % 300, 1000 + i), 0);
        if (i % 10 == 0 && nw < 64) {
            ws[nw].w.cb = su_wait_cb;
            int rc = storage_log_flush_wait(log, storage_log_last_offset(log), &ws[nw].w);
            CHECK(rc == 0 || rc == 1);
            if (rc == 1) ws[nw].done = 1;
            nw++;
        }
        if (i % 7 == 0) io_poll(su_test_io(), 0); /* let completions in while appending */
    }
    CHECK_EQ(su_flush_all(log), 0);
    for (int i = 0; i < nw; i++) {
        CHECK(su_poll_until(su_test_io(), &ws[i].done, 5000));
        CHECK_EQ(ws[i].res, 0);
    }
    CHECK(storage_log_segment_count(log) > 3);
    check_log_equals(log, &m, 0);
    check_log_equals(log, &m, m.v[m.n / 2].base + 1);
    reopen_log(&log, dir, &c);
    CHECK_EQ(storage_log_high_offset(log), m.v[m.n - 1].last + 1);
    check_log_equals(log, &m, 0);
    /* And again with a cache: reads served from it must be identical. */
    storage_log_close(log);
    c.cache = storage_cache_create(16 << 20);
    c.log_id = 1;
    CHECK_EQ(storage_log_open(su_test_io(), dir, &c, &log), 0);
    check_log_equals(log, &m, 0);
    check_log_equals(log, &m, 0);
    storage_cache_stats st;
    storage_cache_stats_get(c.cache, &st);
    CHECK(st.hits > 0);
    CHECK(st.bytes <= (16 << 20));
    storage_log_close(log);
    storage_cache_destroy(c.cache);
    model_free(&m);
}

/* storage_log_set_cache_appends(false) (a Raft follower): appends stay out of the cache, reads
 * are still right; switched on again (it leads), appends go in again. */
/* A roll's file create + directory fsync run as a job (log.c "roll jobs"): a close and a
 * suffix truncation right after a roll, job possibly still in flight, wait for it; everything
 * appended is there after a reopen. */
TEST(log_close_and_truncation_wait_for_the_roll_job)
{
    storage_log_config c = small_cfg();
    char dir[512];
    storage_log *log = open_log(dir, sizeof(dir), "rolljob", &c);
    model m = {0};
    for (int i = 0; i < 3; i++) CHECK_EQ(append_one(log, &m, 1, 2, i, 100, 1000 + i), 0);
    CHECK_EQ(su_flush_all(log), 0);
    CHECK_EQ(append_one(log, &m, 2, 2, 10, 100, 2000), 0); /* rolls: a job */
    CHECK_EQ(storage_log_segment_count(log), 2);
    CHECK_EQ(storage_log_truncate_suffix(log, m.v[m.n - 1].base), 0);
    m.n--;
    free(m.v[m.n].bytes);
    CHECK_EQ(storage_log_segment_count(log), 1);
    CHECK_EQ(append_one(log, &m, 3, 2, 11, 100, 3000), 0); /* rolls again */
    CHECK_EQ(append_one(log, &m, 3, 3, 12, 100, 3001), 0);
    storage_log_buf_info bi;
    storage_log_buf_info_get(log, &bi);
    CHECK(bi.roll_jobs >= 2); /* the first roll's and the truncated one's */
    reopen_log(&log, dir, &c); /* close at once: the job may be in flight */
    CHECK_EQ(storage_log_segment_count(log), 2);
    CHECK_EQ(storage_log_term_at(log, m.v[m.n - 1].base), 3);
    check_log_equals(log, &m, 0);
    storage_log_close(log);
    model_free(&m);
}

TEST(log_cache_appends_switch)
{
    char dir[512];
    storage_log_config c = small_cfg();
    c.cache = storage_cache_create(16 << 20);
    c.log_id = 7;
    storage_log *log = open_log(dir, sizeof(dir), "cache-switch", &c);
    if (!log) return;
    model m = {0};
    storage_cache_stats st;
    storage_log_set_cache_appends(log, false);
    for (int i = 0; i < 20; i++) CHECK_EQ(append_one(log, &m, 1, 3, (uint64_t)i, 100, 1000 + i), 0);
    storage_cache_stats_get(c.cache, &st);
    CHECK_EQ(st.entries, 0u);
    CHECK_EQ(su_flush_all(log), 0);
    check_log_equals(log, &m, 0);
    storage_cache_stats_get(c.cache, &st);
    size_t before = st.entries; /* reads may fill it from disk */
    storage_log_set_cache_appends(log, true);
    for (int i = 0; i < 5; i++) CHECK_EQ(append_one(log, &m, 1, 2, (uint64_t)i, 100, 2000 + i), 0);
    storage_cache_stats_get(c.cache, &st);
    CHECK_EQ(st.entries, before + 5);
    CHECK_EQ(su_flush_all(log), 0);
    check_log_equals(log, &m, 0);
    storage_log_close(log);
    storage_cache_destroy(c.cache);
    model_free(&m);
}

/* The cache's idle_ms (batch_cache_idle_ms): a log nobody appended to or read from for that
 * long drops its entries at housekeeping, and only its own; an append or a read restarts the
 * clock; reads after the drop come from disk, unchanged; 0 never drops. */
TEST(log_cache_idle_release)
{
    char dir[512], dir2[512];
    storage_log_config c = small_cfg();
    c.cache = storage_cache_create(16 << 20);
    storage_cache_set_idle_ms(c.cache, 10000);
    c.log_id = 11;
    storage_log *log = open_log(dir, sizeof(dir), "cache-idle", &c);
    if (!log) return;
    storage_log_config c2 = c;
    c2.log_id = 12;
    storage_log *other = open_log(dir2, sizeof(dir2), "cache-idle-other", &c2);
    CHECK(other != NULL);
    model m = {0}, m2 = {0};
    for (int i = 0; i < 20; i++) CHECK_EQ(append_one(log, &m, 1, 3, (uint64_t)i, 100, 1000 + i), 0);
    for (int i = 0; i < 5; i++) CHECK_EQ(append_one(other, &m2, 1, 2, (uint64_t)i, 100, 1000 + i), 0);
    CHECK_EQ(su_flush_all(log), 0);
    CHECK_EQ(su_flush_all(other), 0);
    storage_cache_stats st;
    storage_cache_stats_get(c.cache, &st);
    CHECK_EQ(st.entries, 25u);
    int64_t now = 1000000;
    CHECK_EQ(storage_log_housekeep(log, now, 1 << 20), 0); /* notes the time */
    CHECK_EQ(storage_log_housekeep(log, now + 9999, 1 << 20), 0);
    storage_cache_stats_get(c.cache, &st);
    CHECK_EQ(st.entries, 25u); /* not yet */
    CHECK_EQ(append_one(log, &m, 1, 2, 99, 100, 5000), 0); /* touched: the clock restarts */
    CHECK_EQ(su_flush_all(log), 0);
    CHECK_EQ(storage_log_housekeep(log, now + 10000, 1 << 20), 0);
    CHECK_EQ(storage_log_housekeep(log, now + 19999, 1 << 20), 0);
    storage_cache_stats_get(c.cache, &st);
    CHECK_EQ(st.entries, 26u);
    CHECK_EQ(storage_log_housekeep(log, now + 20000, 1 << 20), 0); /* idle 10 s: dropped */
    storage_cache_stats_get(c.cache, &st);
    CHECK_EQ(st.entries, 5u); /* the other log's stay */
    check_log_equals(log, &m, 0); /* from disk, the same bytes */
    /* The read touched it (and put what it read back into the cache): no drop for 10 s. */
    storage_cache_stats_get(c.cache, &st);
    size_t refilled = st.entries;
    CHECK(refilled > 5u);
    CHECK_EQ(storage_log_housekeep(log, now + 25000, 1 << 20), 0);
    CHECK_EQ(storage_log_housekeep(log, now + 34999, 1 << 20), 0);
    storage_cache_stats_get(c.cache, &st);
    CHECK_EQ(st.entries, refilled);
    CHECK_EQ(storage_log_housekeep(log, now + 35000, 1 << 20), 0);
    storage_cache_stats_get(c.cache, &st);
    CHECK_EQ(st.entries, 5u);
    /* 0: never. */
    storage_cache_set_idle_ms(c.cache, 0);
    CHECK_EQ(storage_log_housekeep(other, now, 1 << 20), 0);
    CHECK_EQ(storage_log_housekeep(other, now + 3600000, 1 << 20), 0);
    storage_cache_stats_get(c.cache, &st);
    CHECK_EQ(st.entries, 5u);
    storage_log_close(log);
    storage_log_close(other);
    storage_cache_destroy(c.cache);
    model_free(&m);
    model_free(&m2);
}

/* Batches of 4 KiB and more are cached by reference into the write buffers' chunks: a
 * reference taken from the cache keeps its bytes, unchanged, through later appends and writes
 * (buffers reused or carved), segment rolls, a suffix truncation with appends over the dropped
 * positions, eviction, the log's close and the cache's destruction; the cache stays within its
 * budget throughout. (ASan: nothing read after it is freed, nothing leaks.) */
TEST(log_cache_refs_into_write_buffers_outlive_truncation_and_close)
{
    char dir[512];
    storage_log_config c = small_cfg();
    c.segment_bytes = 2u << 20;
    c.flush_bytes = 32 * 1024;
    const size_t budget = 1u << 20;
    c.cache = storage_cache_create(budget);
    c.log_id = 5;
    storage_log *log = open_log(dir, sizeof(dir), "cache-chunks", &c);
    if (!log) return;
    model m = {0};
    uint64_t s = test_seed() | 1;
    enum { HOLD = 32 };
    struct {
        storage_cache_ref *ref;
        const uint8_t *p;
        size_t len;
        uint8_t *want;
    } h[HOLD];
    memset(h, 0, sizeof(h));
    int taken = 0, truncs = 0;
    for (int i = 0; i < 600; i++) {
        /* 10-40 records of ~450 bytes: 4.5-18 KiB batches, all cached by reference */
        int n = 10 + (int)(su_rand(&s) % 31);
        CHECK_EQ(append_one(log, &m, 1, n, (uint64_t)i, 400 + su_rand(&s) % 100, 1000 + i), 0);
        int64_t base = m.v[m.n - 1].base;
        if (su_rand(&s) % 2 == 0) { /* hold it (replacing an older hold) */
            int k = (int)(su_rand(&s) % HOLD);
            if (h[k].ref) {
                CHECK_MEM(h[k].p, h[k].want, h[k].len);
                storage_cache_unref(h[k].ref);
                free(h[k].want);
                h[k].ref = NULL;
            }
            size_t len;
            int64_t last;
            const uint8_t *p = storage_cache_get_ref(c.cache, 5, base, &len, &last, &h[k].ref);
            CHECK(p != NULL);
            if (p) {
                CHECK_EQ(len, m.v[m.n - 1].len);
                CHECK_MEM(p, m.v[m.n - 1].bytes, len);
                h[k].p = p;
                h[k].len = len;
                h[k].want = malloc(len);
                memcpy(h[k].want, p, len);
                taken++;
            }
        }
        if (i % 5 == 0) storage_log_flush(log);
        if (i % 3 == 0) io_poll(su_test_io(), 0); /* writes complete while appending */
        if (i % 131 == 130) { /* truncate the last few batches; appends reuse their positions */
            CHECK_EQ(su_flush_all(log), 0);
            int64_t to = m.v[m.n - 1 - (int)(su_rand(&s) % 4)].base;
            int rc;
            for (int guard = 0; (rc = storage_log_truncate_suffix(log, to)) == AL_EFULL &&
                                guard < 100000; guard++) /* a zero fill in flight */
                io_poll(su_test_io(), io_now_ns(su_test_io()) + 1000000);
            CHECK_EQ(rc, 0);
            model_truncate(&m, to);
            truncs++;
        }
        for (int k = 0; k < HOLD; k++)
            if (h[k].ref) CHECK_MEM(h[k].p, h[k].want, h[k].len);
        /* Every cached batch still holds its bytes. */
        for (int k = 0; k < m.n; k++) {
            size_t len;
            int64_t last;
            const uint8_t *p = storage_cache_get(c.cache, 5, m.v[k].base, &len, &last);
            if (p) CHECK(len == m.v[k].len && memcmp(p, m.v[k].bytes, len) == 0);
        }
        storage_cache_stats st;
        storage_cache_stats_get(c.cache, &st);
        CHECK(st.bytes <= budget);
    }
    CHECK_EQ(su_flush_all(log), 0);
    CHECK(storage_log_segment_count(log) > 1);
    check_log_equals(log, &m, 0);
    storage_log_close(log); /* the cache still points into its chunks, and counts them */
    storage_cache_stats st;
    storage_cache_stats_get(c.cache, &st);
    CHECK(st.bytes <= budget);
    for (int k = 0; k < HOLD; k++)
        if (h[k].ref) CHECK_MEM(h[k].p, h[k].want, h[k].len);
    storage_cache_destroy(c.cache);
    for (int k = 0; k < HOLD; k++) {
        if (!h[k].ref) continue;
        CHECK_MEM(h[k].p, h[k].want, h[k].len);
        storage_cache_unref(h[k].ref);
        free(h[k].want);
    }
    printf("    %d references taken, %d truncations\n", taken, truncs);
    CHECK(taken > 50 && truncs >= 3);
    model_free(&m);
}

TEST(log_truncate_to_zero_and_inside_first_segment)
{
    storage_log_config c = small_cfg();
    char dir[512];
    storage_log *log = open_log(dir, sizeof(dir), "trunc", &c);
    model m = {0};
    uint64_t s = test_seed() | 1;
    for (int i = 0; i < 500; i++) CHECK_EQ(append_one(log, &m, 1, 3, i, 100, i), 0);
    CHECK_EQ(su_flush_all(log), 0);
    CHECK(storage_log_segment_count(log) > 2);
    /* Inside the first segment, in the middle of a batch. */
    int64_t cut = m.v[10].base + 1;
    CHECK_EQ(storage_log_truncate_suffix(log, cut), 0);
    model_truncate(&m, cut);
    CHECK_EQ(storage_log_segment_count(log), 1);
    CHECK_EQ(storage_log_high_offset(log), m.v[m.n - 1].last + 1);
    check_log_equals(log, &m, 0);
    /* Appends continue after the cut, in a new term. */
    for (int i = 0; i < 50; i++)
        CHECK_EQ(append_one(log, &m, 2, 2, 1000 + i, su_rand(&s) % 200, i), 0);
    CHECK_EQ(su_flush_all(log), 0);
    check_log_equals(log, &m, 0);
    reopen_log(&log, dir, &c);
    check_log_equals(log, &m, 0);
    /* Unflushed appends then a truncation of them. */
    for (int i = 0; i < 5; i++) CHECK_EQ(append_one(log, &m, 2, 2, 2000 + i, 50, i), 0);
    int64_t cut2 = m.v[m.n - 3].base;
    su_wait w = {.w = {.cb = su_wait_cb}};
    CHECK_EQ(storage_log_flush_wait(log, storage_log_last_offset(log), &w.w), 0);
    int rc;
    for (int guard = 0; (rc = storage_log_truncate_suffix(log, cut2)) == AL_EFULL &&
                        guard < 100000; guard++)
        io_poll(su_test_io(), io_now_ns(su_test_io()) + 1000000);
    CHECK_EQ(rc, 0);
    model_truncate(&m, cut2);
    check_log_equals(log, &m, 0);
    /* To zero. */
    CHECK_EQ(storage_log_truncate_suffix(log, 0), 0);
    model_truncate(&m, 0);
    CHECK_EQ(storage_log_high_offset(log), 0);
    CHECK_EQ(storage_log_segment_count(log), 0);
    reopen_log(&log, dir, &c);
    CHECK_EQ(storage_log_high_offset(log), 0);
    CHECK_EQ(append_one(log, &m, 4, 2, 1, 10, 1), 0);
    CHECK_EQ(m.v[0].base, 0);
    CHECK_EQ(su_flush_all(log), 0);
    check_log_equals(log, &m, 0);
    storage_log_close(log);
    model_free(&m);
}

TEST(log_start_offset_persisted_and_time_lookup)
{
    storage_log_config c = small_cfg();
    char dir[512];
    storage_log *log = open_log(dir, sizeof(dir), "start", &c);
    model m = {0};
    for (int i = 0; i < 300; i++) CHECK_EQ(append_one(log, &m, 1, 4, i, 200, 10000 + 10 * i), 0);
    CHECK_EQ(su_flush_all(log), 0);
    int segs = storage_log_segment_count(log);
    int64_t so = m.v[200].base + 2;
    CHECK_EQ(storage_log_set_start_offset(log, so), 0);
    CHECK(storage_log_segment_count(log) < segs);
    su_read sr;
    CHECK_EQ(read_once(log, &sr.r, so - 3, 100), AL_ERANGE);
    CHECK_EQ(storage_log_set_start_offset(log, storage_log_high_offset(log) + 1), AL_ERANGE);
    /* ListOffsets by time: never after the first batch with maxTimestamp >= ts. */
    int64_t t = 10000 + 10 * 250 + 2;
    int64_t o = storage_log_offset_for_time(log, t);
    CHECK(o <= m.v[250].base);
    CHECK(o >= so);
    CHECK_EQ(storage_log_offset_for_time(log, 1 << 30), storage_log_high_offset(log));
    reopen_log(&log, dir, &c);
    CHECK_EQ(storage_log_start_offset(log), so);
    check_log_equals(log, &m, so);
    storage_log_close(log);
    model_free(&m);
}

/* Counts flushes by watching the waiters: many appends with one waiter each, all answered by
 * far fewer flush rounds (group commit). */
TEST(log_group_commit_coalesces)
{
    storage_log_config c = small_cfg();
    c.flush_bytes = 1 << 30; /* only waiters trigger flushes */
    c.segment_bytes = 64 << 20;
    char dir[512];
    storage_log *log = open_log(dir, sizeof(dir), "group", &c);
    model m = {0};
    enum { N = 400 };
    static su_wait ws[N];
    memset(ws, 0, sizeof(ws));
    for (int i = 0; i < N; i++) {
        CHECK_EQ(append_one(log, &m, 1, 1, i, 100, i), 0);
        ws[i].w.cb = su_wait_cb;
        CHECK_EQ(storage_log_flush_wait(log, storage_log_last_offset(log), &ws[i].w), 0);
    }
    /* The first waiter started a flush of batch 0; the rest are covered by the next one. */
    CHECK(su_poll_until(su_test_io(), &ws[N - 1].done, 10000));
    for (int i = 0; i < N; i++) CHECK(ws[i].done == 1 && ws[i].res == 0);
    CHECK_EQ(storage_log_durable_offset(log), N - 1);
    storage_log_close(log);
    model_free(&m);
}

/* ---- retention and compaction against reference models ---- */

TEST(log_retention_matches_model)
{
    storage_log_config c = small_cfg();
    c.retention_bytes = 150 * 1024;
    c.retention_ms = 5000;
    char dir[512];
    storage_log *log = open_log(dir, sizeof(dir), "retention", &c);
    model m = {0};
    int64_t now = 1000000;
    for (int round = 0; round < 10; round++) {
        for (int i = 0; i < 60; i++) CHECK_EQ(append_one(log, &m, 1, 2, i, 300, now + i), 0);
        CHECK_EQ(su_flush_all(log), 0);
        CHECK_EQ(storage_log_housekeep(log, now, 1 << 20), 0);
        /* Model: total size; the front closed segments go while the rest stays >= the bound. */
        CHECK(storage_log_size_bytes(log) >= (uint64_t)c.retention_bytes ||
              storage_log_start_offset(log) == 0);
        /* All retained data readable and equal to the model from the start offset. */
        check_log_equals(log, &m, storage_log_start_offset(log));
        now += 100;
    }
    int64_t so = storage_log_start_offset(log);
    CHECK(so > 0);
    /* Size bound: without the first segment the log would be under the limit. */
    CHECK(storage_log_size_bytes(log) < (uint64_t)c.retention_bytes + c.segment_bytes + 4096);
    /* Time: everything but the active segment expires. A delete job of the last round may
     * still be in flight (off the shard, behind other jobs): its segments go at a later pass,
     * so pass again until they did (bounded). */
    for (int k = 0; k < 2000; k++) {
        CHECK_EQ(storage_log_housekeep(log, now + 100000, 1 << 20), 0);
        if (storage_log_segment_count(log) == 1) break;
        io_poll(su_test_io(), io_now_ns(su_test_io()) + 1000000ull);
    }
    CHECK_EQ(storage_log_segment_count(log), 1);
    int64_t so2 = storage_log_start_offset(log);
    CHECK(so2 > so);
    reopen_log(&log, dir, &c);
    CHECK_EQ(storage_log_start_offset(log), so2);
    check_log_equals(log, &m, so2);
    storage_log_close(log);
    model_free(&m);
}

/* Reference model of compaction: key -> (newest offset, tombstone?). */
typedef struct kv_model {
    int64_t newest[64];
    bool tomb[64];
    uint64_t vtag[64];
} kv_model;

/* What one read pass of log_compaction_matches_model checks each record against. */
struct compacted_check {
    const kv_model *km;
    const int64_t *newest_below; /* [key]: its newest record below the active segment */
    int64_t active_base;
    int seen_newest[64];
};

static void check_compacted_record(void *ctx, int k, int64_t o, const storage_record *r)
{
    struct compacted_check *cc = ctx;
    const kv_model *km = cc->km;
    if (o == km->newest[k]) {
        cc->seen_newest[k]++;
        CHECK_EQ(r->value_len < 0, km->tomb[k]);
        if (!km->tomb[k]) CHECK(value_has_tag(r, km->vtag[k]));
    } else {
        /* An older record survives only in the uncompacted active segment. */
        CHECK(o < km->newest[k]);
        CHECK(o >= cc->active_base || o == cc->newest_below[k]);
    }
}

TEST(log_compaction_matches_model)
{
    storage_log_config c = small_cfg();
    c.cleanup_policy = STORAGE_CLEANUP_COMPACT;
    c.delete_retention_ms = 1000;
    char dir[512];
    storage_log *log = open_log(dir, sizeof(dir), "compact", &c);
    uint64_t s = test_seed() | 1;
    kv_model km;
    static int pair_key[4096];
    static int64_t pair_off[4096];
    int npairs = 0;
    for (int k = 0; k < 64; k++) km.newest[k] = -1;
    static uint8_t b[65536];
    int64_t ts = 100000;
    for (int i = 0; i < 400; i++) {
        int n = 1 + (int)(su_rand(&s) % 8);
        int keys[8];
        for (int j = 0; j < n; j++) keys[j] = (int)(su_rand(&s) % 64);
        bool tomb = su_rand(&s) % 10 == 0;
        size_t len = su_batch(b, sizeof(b), n, keys, (uint64_t)i, 100, tomb, ts);
        storage_append_result res;
        CHECK_EQ(storage_log_append(log, 1, b, len, &res), 0);
        for (int j = 0; j < n; j++) {
            if (npairs < 4096) {
                pair_key[npairs] = keys[j];
                pair_off[npairs++] = res.base_offset + j;
            }
            km.newest[keys[j]] = res.base_offset + j;
            km.tomb[keys[j]] = tomb;
            km.vtag[keys[j]] = (uint64_t)i;
        }
        if (i % 50 == 0) CHECK_EQ(su_flush_all(log), 0);
    }
    CHECK_EQ(su_flush_all(log), 0);
    int64_t high = storage_log_high_offset(log);
    uint64_t before = storage_log_size_bytes(log);
    /* In bounded steps: each step returns 1 while work remains. */
    int steps = 0, rc;
    CHECK(storage_log_housekeep(log, ts + 10, 16 * 1024) >= 0); /* finishes the sealed ones */
    storage_log_finish_wait(log);
    while ((rc = storage_log_housekeep(log, ts + 10, 16 * 1024)) == 1) steps++;
    CHECK_EQ(rc, 0);
    CHECK(steps > 2);
    CHECK(storage_log_size_bytes(log) < before);
    CHECK_EQ(storage_log_high_offset(log), high);
    /* The active segment is never compacted: find its base. Every key whose newest record is
     * in a compacted segment has exactly that record there; no record of a key older than its
     * newest survives in the compacted part; offsets only grow. */
    storage_segment_info si;
    CHECK_EQ(storage_log_segment_info(log, storage_log_segment_count(log) - 1, &si), 0);
    int64_t active_base = si.base;
    /* The newest record of each key below the active segment (the compacted part). */
    int64_t newest_below[64];
    for (int k = 0; k < 64; k++) newest_below[k] = -1;
    for (int i = 0; i < npairs; i++)
        if (pair_off[i] < active_base && pair_off[i] > newest_below[pair_key[i]])
            newest_below[pair_key[i]] = pair_off[i];
    for (int pass = 0; pass < 3; pass++) {
        struct compacted_check cc = {&km, newest_below, active_base, {0}};
        CHECK_EQ(for_each_record(log, check_compacted_record, &cc), high);
        const int *seen_newest = cc.seen_newest;
        for (int k = 0; k < 64; k++) {
            if (km.newest[k] < 0) continue;
            /* After the last pass, expired tombstones in the compacted part are gone. */
            bool gone = pass == 2 && km.tomb[k] && km.newest[k] < active_base;
            if (seen_newest[k] != (gone ? 0 : 1))
                fprintf(stderr, "key %d newest %lld tomb %d active_base %lld pass %d\n", k,
                        (long long)km.newest[k], km.tomb[k], (long long)active_base, pass);
            CHECK_EQ(seen_newest[k], gone ? 0 : 1);
        }
        /* Reopen and check again (indexes of compacted segments reloaded). */
        reopen_log(&log, dir, &c);
        CHECK_EQ(storage_log_high_offset(log), high);
        if (pass == 1) CHECK_EQ(storage_log_compact_all(log, ts + 100000), 0);
    }
    storage_log_close(log);
}

/* Recompresses the records of an uncompressed batch with zstd; returns the new size. */
static size_t zstd_batch(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
    memcpy(out, in, STORAGE_BATCH_HEADER);
    size_t c = ZSTD_compress(out + STORAGE_BATCH_HEADER, cap - STORAGE_BATCH_HEADER,
                             in + STORAGE_BATCH_HEADER, len - STORAGE_BATCH_HEADER, 1);
    AL_ASSERT(!ZSTD_isError(c));
    size_t total = STORAGE_BATCH_HEADER + c;
    al_put_be32(out + 8, (uint32_t)(total - 12));
    out[21] = 0;
    out[22] = STORAGE_COMP_ZSTD;
    storage_batch_set_crc(out, total);
    return total;
}

/* Counts, per key (0..nkeys-1, at most 32), the records read that are its newest
 * (newest[key]) and checks their values (tag[key], when tag is set); any other record must
 * stand at or above `newest_from` or belong to a key whose newest record does. */
struct newest_count {
    int nkeys;
    const int64_t *newest;
    const uint64_t *tag;
    int64_t newest_from;
    int found[32];
};

static void count_newest(void *ctx, int k, int64_t o, const storage_record *r)
{
    struct newest_count *nc = ctx;
    CHECK(k >= 0 && k < nc->nkeys);
    if (k < 0 || k >= nc->nkeys) return;
    if (o == nc->newest[k]) {
        if (nc->tag) CHECK(value_has_tag(r, nc->tag[k]));
        nc->found[k]++;
    } else {
        CHECK(o >= nc->newest_from || nc->newest[k] >= nc->newest_from);
    }
}

/* Compaction of compressed batches: survivors are decompressed and rebuilt; every key keeps
 * exactly its newest value; offsets are unchanged. */
TEST(log_compaction_of_compressed_batches)
{
    storage_log_config c = small_cfg();
    c.segment_bytes = 4096;
    c.cleanup_policy = STORAGE_CLEANUP_COMPACT | STORAGE_CLEANUP_DELETE;
    c.retention_ms = -1;
    char dir[512];
    storage_log *log = open_log(dir, sizeof(dir), "compact_zstd", &c);
    static uint8_t raw[65536], comp[65536];
    int64_t newest[8];
    int keys[5];
    for (int i = 0; i < 120; i++) {
        for (int j = 0; j < 5; j++) keys[j] = (i + j) % 8;
        size_t n = su_batch(raw, sizeof(raw), 5, keys, (uint64_t)i, 50, false, 1000 + i);
        size_t cn = zstd_batch(raw, n, comp, sizeof(comp));
        storage_append_result res;
        CHECK_EQ(storage_log_append(log, 1, comp, cn, &res), 0);
        for (int j = 0; j < 5; j++) newest[keys[j]] = res.base_offset + j;
    }
    CHECK_EQ(su_flush_all(log), 0);
    int64_t high = storage_log_high_offset(log);
    CHECK(storage_log_segment_count(log) > 3);
    CHECK_EQ(storage_log_compact_all(log, 5000), 0);
    CHECK_EQ(storage_log_high_offset(log), high);
    storage_segment_info si;
    CHECK_EQ(storage_log_segment_info(log, storage_log_segment_count(log) - 1, &si), 0);
    /* In the compacted part only a key's newest record below the active segment may remain;
     * the newest overall must be there exactly once. */
    struct newest_count nc = {8, newest, NULL, si.base, {0}};
    CHECK_EQ(for_each_record(log, count_newest, &nc), high);
    for (int k = 0; k < 8; k++) CHECK_EQ(nc.found[k], 1);
    storage_log_close(log);
}

/* Compaction steps interleaved with appends and segment rolls: records newer than the key map
 * are never dropped; every key's newest value survives. */
TEST(log_compaction_interleaved_with_appends)
{
    storage_log_config c = small_cfg();
    c.segment_bytes = 8192;
    c.cleanup_policy = STORAGE_CLEANUP_COMPACT;
    char dir[512];
    storage_log *log = open_log(dir, sizeof(dir), "compact_live", &c);
    uint64_t s = test_seed() | 1;
    int64_t newest[32];
    uint64_t tag[32];
    for (int k = 0; k < 32; k++) newest[k] = -1;
    static uint8_t b[65536];
    for (int i = 0; i < 600; i++) {
        int keys[4];
        int n = 1 + (int)(su_rand(&s) % 4);
        for (int j = 0; j < n; j++) keys[j] = (int)(su_rand(&s) % 32);
        size_t len = su_batch(b, sizeof(b), n, keys, (uint64_t)i, 60, false, 1000);
        storage_append_result res;
        CHECK_EQ(storage_log_append(log, 1, b, len, &res), 0);
        for (int j = 0; j < n; j++) {
            newest[keys[j]] = res.base_offset + j;
            tag[keys[j]] = (uint64_t)i;
        }
        if (i % 5 == 0) CHECK_EQ(su_flush_all(log), 0);
        if (i % 3 == 0) CHECK(storage_log_housekeep(log, 2000, 2048) >= 0);
    }
    CHECK_EQ(su_flush_all(log), 0);
    while (storage_log_housekeep(log, 2000, 4096) == 1) {}
    /* Older records may remain anywhere (newest_from 0): only the newest are counted. */
    struct newest_count nc = {32, newest, tag, 0, {0}};
    CHECK_EQ(for_each_record(log, count_newest, &nc), storage_log_high_offset(log));
    for (int k = 0; k < 32; k++)
        if (newest[k] >= 0) CHECK_EQ(nc.found[k], 1);
    storage_log_close(log);
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}

/* Polls the tests' io until the log's finish-job (or delete-job) count passes `after`
 * (bounded). Returns the count. */
static uint64_t wait_jobs(storage_log *log, uint64_t after, bool del)
{
    storage_log_buf_info bi;
    for (int k = 0; k < 5000; k++) {
        storage_log_buf_info_get(log, &bi);
        if ((del ? bi.delete_jobs : bi.finish_jobs) > after) break;
        io_poll(su_test_io(), io_now_ns(su_test_io()) + 1000000ull);
    }
    storage_log_buf_info_get(log, &bi);
    return del ? bi.delete_jobs : bi.finish_jobs;
}
#define wait_finish_jobs(log, after) wait_jobs((log), (after), false)

/* 1 if the segment's data file exists. */
static int seg_file_exists(const storage_segment_info *si)
{
    char path[700];
    snprintf(path, sizeof(path), "%s.log", si->path_stem);
    return access(path, F_OK) == 0;
}

/* Index of the first sealed segment that is not finished, or -1. */
static int first_unfinished(storage_log *log)
{
    for (int i = 0; i < storage_log_segment_count(log); i++) {
        storage_segment_info si;
        AL_ASSERT(storage_log_segment_info(log, i, &si) == 0);
        if (si.sealed && !si.finished) return i;
    }
    return -1;
}

/*
 * Housekeeping finishes sealed segments (trim, index files) off the shard's thread: they are
 * not finished when storage_log_housekeep returns, and are (file trimmed to size, index files
 * on disk) once io_poll has run the job's callback. While a job holds segments, retention does
 * not delete them (a later pass does), and a suffix truncation or a close waits for the job.
 * (Lazy: only housekeeping starts jobs here, so that the test knows when one is in flight;
 * by default they start as segments become durable, log_finish_jobs_start_without_housekeeping.)
 */
TEST(log_finish_jobs_run_off_the_thread)
{
    storage_log_config c = small_cfg();
    c.retention_ms = 5000;
    char dir[512];
    storage_log *log = open_log(dir, sizeof(dir), "finjobs", &c);
    storage_log_set_finish_lazy(log, true);
    model m = {0};
    int64_t now = 1000000;
    int tag = 0;
    for (int i = 0; i < 400; i++) CHECK_EQ(append_one(log, &m, 1, 2, tag++, 300, now), 0);
    CHECK_EQ(su_flush_all(log), 0);
    int nseg = storage_log_segment_count(log);
    CHECK(nseg > 3);
    storage_log_buf_info bi;
    storage_log_buf_info_get(log, &bi);
    uint64_t jobs = bi.finish_jobs;
    CHECK_EQ(storage_log_housekeep(log, now, 1 << 20), 0);
    CHECK_EQ(first_unfinished(log), 0); /* handed to the job; its callback has not run */
    jobs = wait_finish_jobs(log, jobs);
    CHECK_EQ(jobs, bi.finish_jobs + 1);
    CHECK_EQ(first_unfinished(log), -1);
    for (int i = 0; i + 1 < nseg; i++) {
        storage_segment_info si;
        CHECK_EQ(storage_log_segment_info(log, i, &si), 0);
        CHECK(si.finished);
        char path[700];
        snprintf(path, sizeof(path), "%s.log", si.path_stem);
        FILE *f = fopen(path, "rb");
        CHECK(f != NULL);
        fseek(f, 0, SEEK_END);
        CHECK_EQ((uint64_t)ftell(f), si.size); /* the preallocated tail is gone */
        fclose(f);
        snprintf(path, sizeof(path), "%s.index", si.path_stem);
        CHECK_EQ(access(path, F_OK), 0);
        snprintf(path, sizeof(path), "%s.timeindex", si.path_stem);
        CHECK_EQ(access(path, F_OK), 0);
    }
    check_log_equals(log, &m, 0);

    /* Retention with a job in flight: everything sealed has expired, but the segments the
     * job holds stay until a later pass. */
    for (int i = 0; i < 300; i++) CHECK_EQ(append_one(log, &m, 1, 2, tag++, 300, now), 0);
    CHECK_EQ(su_flush_all(log), 0);
    int fu = first_unfinished(log);
    CHECK(fu > 0);
    storage_segment_info held, gone;
    CHECK_EQ(storage_log_segment_info(log, fu, &held), 0);
    CHECK_EQ(storage_log_segment_info(log, 0, &gone), 0);
    char gone_stem[600];
    snprintf(gone_stem, sizeof(gone_stem), "%s", gone.path_stem);
    gone.path_stem = gone_stem;
    storage_log_buf_info_get(log, &bi);
    uint64_t dels = bi.delete_jobs;
    CHECK_EQ(storage_log_housekeep(log, now + 100000, 1 << 20), 0);
    CHECK_EQ(storage_log_start_offset(log), held.base); /* the finished ones went */
    CHECK_EQ(first_unfinished(log), 0);
    /* ... out of the log at once; their files go in a delete job, off the thread */
    dels = wait_jobs(log, dels, true);
    CHECK_EQ(seg_file_exists(&gone), 0);
    jobs = wait_finish_jobs(log, jobs);
    CHECK_EQ(first_unfinished(log), -1);
    CHECK_EQ(storage_log_segment_info(log, 0, &gone), 0);
    snprintf(gone_stem, sizeof(gone_stem), "%s", gone.path_stem);
    gone.path_stem = gone_stem; /* the segment itself is freed by its delete job */
    CHECK_EQ(seg_file_exists(&gone), 1);
    CHECK_EQ(storage_log_housekeep(log, now + 100000, 1 << 20), 0);
    CHECK_EQ(storage_log_segment_count(log), 1);
    dels = wait_jobs(log, dels, true);
    CHECK_EQ(seg_file_exists(&gone), 0);
    int64_t so = storage_log_start_offset(log);
    CHECK(so > held.base);

    /* A suffix truncation into a segment the job holds waits for the job first. */
    for (int i = 0; i < 300; i++) CHECK_EQ(append_one(log, &m, 2, 2, tag++, 300, now + 200000), 0);
    CHECK_EQ(su_flush_all(log), 0);
    CHECK_EQ(storage_log_housekeep(log, now + 200000, 1 << 20), 0);
    fu = first_unfinished(log);
    CHECK(fu >= 0);
    CHECK_EQ(storage_log_segment_info(log, fu, &held), 0);
    int64_t cut = -1;
    for (int k = 0; k < m.n; k++)
        if (m.v[k].base > held.base && m.v[k].last < held.last) cut = m.v[k].base;
    CHECK(cut > held.base);
    CHECK_EQ(storage_log_truncate_suffix(log, cut), 0);
    model_truncate(&m, cut);
    CHECK_EQ(storage_log_high_offset(log), cut);
    check_log_equals(log, &m, so);

    /* Close right after a job started: close waits for it; the reopened log is whole. */
    for (int i = 0; i < 300; i++) CHECK_EQ(append_one(log, &m, 2, 2, tag++, 300, now + 300000), 0);
    CHECK_EQ(su_flush_all(log), 0);
    CHECK_EQ(storage_log_housekeep(log, now + 300000, 1 << 20), 0);
    CHECK(first_unfinished(log) >= 0);
    reopen_log(&log, dir, &c);
    CHECK_EQ(storage_log_start_offset(log), so);
    check_log_equals(log, &m, so);
    storage_log_close(log);
    model_free(&m);
}

/* By default a sealed segment's finish job starts as soon as its bytes are durable: with no
 * housekeeping call, every sealed segment is finished (trimmed, index files on disk, no write
 * buffers) once the io has run the jobs. */
TEST(log_finish_jobs_start_without_housekeeping)
{
    storage_log_config c = small_cfg();
    char dir[512];
    storage_log *log = open_log(dir, sizeof(dir), "finprompt", &c);
    model m = {0};
    int tag = 0;
    for (int i = 0; i < 400; i++) CHECK_EQ(append_one(log, &m, 1, 2, tag++, 300, 1000000), 0);
    CHECK_EQ(su_flush_all(log), 0);
    int nseg = storage_log_segment_count(log);
    CHECK(nseg > 3);
    storage_log_buf_info bi;
    for (int k = 0; k < 5000; k++) {
        storage_log_buf_info_get(log, &bi);
        if (bi.unfinished == 0) break;
        io_poll(su_test_io(), io_now_ns(su_test_io()) + 1000000ull);
    }
    storage_log_buf_info_get(log, &bi);
    CHECK_EQ(bi.unfinished, 0);
    CHECK_EQ(first_unfinished(log), -1);
    CHECK(bi.finish_jobs >= 1);
    CHECK_EQ(bi.sealed_bytes, 0);
    for (int i = 0; i + 1 < nseg; i++) {
        storage_segment_info si;
        CHECK_EQ(storage_log_segment_info(log, i, &si), 0);
        CHECK(si.finished);
        char path[700];
        snprintf(path, sizeof(path), "%s.index", si.path_stem);
        CHECK_EQ(access(path, F_OK), 0);
    }
    check_log_equals(log, &m, 0);
    storage_log_close(log);
    model_free(&m);
}
