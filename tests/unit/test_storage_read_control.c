/*
 * test_storage_read_control.c — reads of a log whose batches include control batches without
 * records (a Raft NOOP at the start of every term: each term starts a segment) and whose batch
 * cache lacks some of its entries (a Raft follower does not cache its appends). A read must not
 * end on control batches alone while the log holds data after them: kafkajs advances only by
 * the records it is handed, so a Fetch answered with a lone NOOP is fetched again forever (the
 * follower-cache switch of 0c9e2ab lost a whole partition that way after a leader change).
 * Covers the disk, memory and cache paths, many NOOP-only segments in a row, a data batch over
 * the byte budget after a NOOP, and that the budget still holds once data is in. io_uring back
 * end in test_tmpdir().
 */
#include "storage_util.h"

#include "storage/cache.h"

static storage_log_config small_cfg(storage_cache *cache)
{
    storage_log_config c;
    storage_log_config_default(&c);
    c.segment_bytes = 64 * 1024;
    c.fallocate_step = 16 * 1024;
    c.flush_bytes = 1 << 20; /* nothing written before flush_all: the memory path first */
    c.index_interval_bytes = 1024;
    c.cache = cache;
    c.log_id = 11;
    return c;
}

/* Appends a Raft NOOP (control batch, no records) in term. Returns the append rc. */
static int append_noop(storage_log *log, int32_t term)
{
    uint8_t b[STORAGE_BATCH_HEADER + 16];
    storage_build_params p = {0, term, STORAGE_ATTR_CONTROL, 0, -1, -1, -1, -1, -1};
    int64_t sz = storage_batch_build(b, sizeof(b), &p, NULL, 0);
    AL_ASSERT(sz == STORAGE_BATCH_HEADER);
    storage_append_result res;
    return storage_log_append(log, term, b, (size_t)sz, &res);
}

/* Appends one data batch of n records with values of vlen bytes in term. */
static int append_data(storage_log *log, int32_t term, int n, size_t vlen, uint64_t tag)
{
    static uint8_t b[256 * 600];
    size_t len = su_batch(b, sizeof(b), n, NULL, tag, vlen, false, 1000);
    storage_append_result res;
    return storage_log_append(log, term, b, len, &res);
}

/* What one read returned: batches, the first data batch's base offset (-1: none), bytes. */
typedef struct read_shape {
    int batches;
    int64_t first_data;
    int64_t next;
    size_t len;
    int res;
} read_shape;

/* Reads once at offset (max bytes, polling a pending read), CHECKs the batches are valid and
 * consecutive from the one holding offset, and describes them. */
static read_shape read_at(storage_log *log, int64_t offset, size_t max)
{
    read_shape s = {0, -1, offset, 0, 0};
    su_read sr = {0};
    sr.r.offset = offset;
    sr.r.max_bytes = max;
    sr.r.cb = su_read_cb;
    int rc = storage_log_read(log, &sr.r);
    if (rc == 0 && !su_poll_until(su_test_io(), &sr.done, 10000)) rc = AL_ETIMEDOUT;
    s.res = rc < 0 ? rc : sr.r.res;
    if (s.res < 0) return s;
    int64_t expect = -1;
    for (size_t pos = 0; pos < sr.r.len;) {
        storage_batch_hdr h;
        int64_t sz = storage_batch_validate(sr.r.data + pos, sr.r.len - pos, 0, &h);
        CHECK(sz > 0);
        if (sz <= 0) break;
        if (expect >= 0) CHECK_EQ(h.base_offset, expect);
        expect = storage_batch_last_offset(&h) + 1;
        if (s.first_data < 0 && !(h.attributes & STORAGE_ATTR_CONTROL) && h.records_count > 0)
            s.first_data = h.base_offset;
        s.batches++;
        pos += (size_t)sz;
    }
    s.len = sr.r.len;
    s.next = sr.r.next_offset;
    if (sr.r.len) CHECK_EQ(s.next, expect);
    storage_read_release(&sr.r);
    return s;
}

/*
 * The log of a replica that followed in terms 1 and 2 and leads from term 3 (the cluster
 * case): term 1's leader wrote only its NOOP (offset 0) before losing the election; term 2
 * the same (offset 1); term 3's NOOP (offset 2) and data batches from offset 3 on. Each term
 * is a segment of its own. Appends of terms 1-2 are kept out of the cache (a follower);
 * cache_leader says whether term 3's are cached.
 */
static storage_log *open_terms_log(const char *name, storage_cache *cache, bool cache_leader)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/%s", test_tmpdir(), name);
    storage_log_config c = small_cfg(cache);
    storage_log *log = NULL;
    CHECK_EQ(storage_log_open(su_test_io(), dir, &c, &log), 0);
    if (!log) return NULL;
    storage_log_set_cache_appends(log, false);
    CHECK_EQ(append_noop(log, 1), 0);
    CHECK_EQ(append_noop(log, 2), 0);
    CHECK_EQ(append_noop(log, 3), 0);
    storage_log_set_cache_appends(log, cache_leader);
    for (int i = 0; i < 20; i++) CHECK_EQ(append_data(log, 3, 10, 50, (uint64_t)i), 0);
    CHECK_EQ(storage_log_segment_count(log), 3);
    return log;
}

/* Every read from an offset holding a NOOP reaches offset 3's data batch. */
static void check_reaches_data(storage_log *log, const char *what)
{
    for (int64_t off = 0; off <= 2; off++) {
        read_shape s = read_at(log, off, 1 << 20);
        CHECK_EQ(s.res, 0);
        if (s.first_data != 3)
            fprintf(stderr, "%s: a read at %lld returned %d batches, up to %lld, no data\n",
                    what, (long long)off, s.batches, (long long)s.next);
        CHECK_EQ(s.first_data, 3);
    }
}

TEST(read_noop_segments_memory_and_disk_no_cache)
{
    storage_log *log = open_terms_log("nocache", NULL, false);
    if (!log) return;
    check_reaches_data(log, "memory");
    CHECK_EQ(su_flush_all(log), 0);
    check_reaches_data(log, "disk");
    CHECK_EQ(storage_log_close(log), 0);
}

/* The follower-cache case exactly: term 3's appends cached, the NOOPs not; the first disk read
 * puts offset 0 into the cache, so the next read finds a cached run [0] that misses at 1. */
TEST(read_noop_segments_partly_cached)
{
    storage_cache *cache = storage_cache_create(16 << 20);
    storage_log *log = open_terms_log("partcache", cache, true);
    if (!log) goto out;
    check_reaches_data(log, "memory, data cached");
    CHECK_EQ(su_flush_all(log), 0);
    for (int round = 0; round < 3; round++) check_reaches_data(log, "disk/cache, data cached");
    CHECK_EQ(storage_log_close(log), 0);
out:
    storage_cache_destroy(cache);
}

TEST(read_noop_segments_nothing_cached)
{
    storage_cache *cache = storage_cache_create(16 << 20);
    storage_log *log = open_terms_log("allmiss", cache, false);
    if (!log) goto out;
    CHECK_EQ(su_flush_all(log), 0);
    for (int round = 0; round < 3; round++) check_reaches_data(log, "disk, then cache fills");
    CHECK_EQ(storage_log_close(log), 0);
out:
    storage_cache_destroy(cache);
}

/* 200 terms with a NOOP each (elections without data), then data: a read at 0 with a budget
 * smaller than one batch still reaches the data; and a data batch larger than the budget after
 * a NOOP comes whole. */
TEST(read_many_noop_segments_small_budget)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/many", test_tmpdir());
    storage_cache *cache = storage_cache_create(16 << 20);
    storage_log_config c = small_cfg(cache);
    storage_log *log = NULL;
    CHECK_EQ(storage_log_open(su_test_io(), dir, &c, &log), 0);
    if (!log) goto out;
    storage_log_set_cache_appends(log, false);
    enum { TERMS = 200 };
    for (int t = 1; t <= TERMS; t++) CHECK_EQ(append_noop(log, t), 0);
    CHECK_EQ(append_data(log, TERMS, 100, 400, 7), 0); /* ~45 KB */
    CHECK_EQ(append_data(log, TERMS, 10, 10, 8), 0);
    CHECK_EQ(storage_log_segment_count(log), TERMS);
    for (int pass = 0; pass < 2; pass++) { /* memory, then disk */
        read_shape s = read_at(log, 0, 100);
        CHECK_EQ(s.res, 0);
        CHECK_EQ(s.first_data, TERMS);
        CHECK_EQ(s.batches, TERMS + 1); /* the big batch whole, not the one after it */
        s = read_at(log, TERMS - 1, 100);
        CHECK_EQ(s.first_data, TERMS);
        CHECK_EQ(s.batches, 2);
        if (pass == 0) CHECK_EQ(su_flush_all(log), 0);
    }
    CHECK_EQ(storage_log_close(log), 0);
out:
    storage_cache_destroy(cache);
}

/* Without control batches a read keeps its budget: at most one batch past max_bytes, and it
 * stops at the end of a segment as before. */
TEST(read_budget_kept_once_data_is_in)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/budget", test_tmpdir());
    storage_log_config c = small_cfg(NULL);
    storage_log *log = NULL;
    CHECK_EQ(storage_log_open(su_test_io(), dir, &c, &log), 0);
    if (!log) return;
    CHECK_EQ(append_noop(log, 1), 0);
    for (int i = 0; i < 40; i++) CHECK_EQ(append_data(log, 1, 10, 100, (uint64_t)i), 0);
    size_t one = 0;
    for (int pass = 0; pass < 2; pass++) {
        read_shape s = read_at(log, 1, 3000);
        CHECK_EQ(s.res, 0);
        CHECK_EQ(s.first_data, 1);
        if (!one) one = s.len / (size_t)s.batches;
        CHECK(s.len <= 3000 + one);
        s = read_at(log, 0, 3000); /* the NOOP, then data within the budget */
        CHECK_EQ(s.first_data, 1);
        CHECK(s.len <= 3000 + one);
        if (pass == 0) CHECK_EQ(su_flush_all(log), 0);
    }
    CHECK_EQ(storage_log_close(log), 0);
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
