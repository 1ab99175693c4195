/*
 * test_storage_compact_raft.c — key compaction of Raft partition logs
 * (storage_log_compact_raft): only closed segments wholly at or below the commit index are
 * rewritten; every batch keeps its base offset, last offset and leader epoch (Raft term);
 * Raft control batches (NOOP, CONFIG, TRIM) stay byte for byte; the newest record of every
 * key survives; a suffix truncation and appends work on a compacted log; a follower that
 * appends the compacted leader's batches (what catch-up does) gets the same entries and the
 * same Kafka-visible records.
 */
#include "storage_util.h"

#include "raft/raft.h"
#include "raft/replica.h"
#include "storage/log_raft.h"

#include <string.h>

static storage_log_config raft_cfg(void)
{
    storage_log_config c;
    storage_log_config_default(&c);
    c.segment_bytes = 8192;
    c.fallocate_step = 16 * 1024;
    c.flush_bytes = 8 * 1024;
    c.index_interval_bytes = 1024;
    c.cleanup_policy = STORAGE_CLEANUP_COMPACT;
    return c;
}

/* One stored batch as a scan saw it. */
typedef struct sbatch {
    int64_t base, last;
    int32_t epoch;
    int16_t attributes;
    int32_t records;
    uint32_t crc;
    size_t size;
    int type; /* raft_batch_classify */
} sbatch;

#define MAXB 4096
#define NKEYS 8

typedef struct scan {
    sbatch b[MAXB];
    int n;
    /* per key: how many records with that key were seen, and the newest one's offset/value */
    int count[NKEYS];
    int64_t newest[NKEYS];
    bool tomb[NKEYS]; /* the newest record of the key is a tombstone */
    char val[NKEYS][32];
    int count_from_below[NKEYS]; /* records at or below `limit` */
    int64_t limit;
    uint64_t bytes;
} scan;

static int scan_fn(void *ctx, const uint8_t *batch, size_t size)
{
    scan *s = ctx;
    storage_batch_hdr h;
    if (storage_batch_parse_header(batch, size, &h) < 0 || s->n >= MAXB) return AL_ECORRUPT;
    sbatch *b = &s->b[s->n++];
    *b = (sbatch){h.base_offset, storage_batch_last_offset(&h), h.leader_epoch, h.attributes,
                  h.records_count, h.crc, size, raft_batch_classify(batch, size, NULL, NULL)};
    s->bytes += size;
    if (h.attributes & STORAGE_ATTR_CONTROL) return 0;
    const uint8_t *recs;
    size_t rlen;
    uint8_t *owned;
    int rc = storage_batch_records(batch, size, 0, &recs, &rlen, &owned);
    if (rc < 0) return rc;
    storage_record_iter it;
    storage_record r;
    storage_record_iter_init(&it, recs, rlen, h.records_count);
    while ((rc = storage_record_iter_next(&it, &r)) == 1) {
        int k = -1;
        if (r.key_len >= 2 && r.key[0] == 'k') k = atoi((const char *)r.key + 1) % NKEYS;
        if (k < 0) continue;
        int64_t off = h.base_offset + r.offset_delta;
        s->count[k]++;
        if (off <= s->limit) s->count_from_below[k]++;
        if (off > s->newest[k]) {
            s->newest[k] = off;
            s->tomb[k] = r.value_len < 0;
            size_t vl = (size_t)AL_MAX(0, AL_MIN(r.value_len, 31));
            if (vl) memcpy(s->val[k], r.value, vl);
            s->val[k][vl] = 0;
        }
    }
    free(owned);
    return rc < 0 ? rc : 0;
}

static void do_scan(storage_log *log, scan *s, int64_t limit)
{
    memset(s, 0, sizeof(*s));
    s->limit = limit;
    for (int k = 0; k < NKEYS; k++) s->newest[k] = -1;
    CHECK_EQ(storage_log_scan_sync(log, storage_log_start_offset(log), 0, scan_fn, s), 0);
}

/* Appends a control batch of type (NOOP / CONFIG) in term; CHECKs it. */
static void append_control(storage_log *log, int type, int32_t term)
{
    uint8_t b[RAFT_CTRL_BATCH_MAX];
    static const uint8_t conf[] = "membership-config-payload";
    int n = raft_batch_build_control(b, sizeof(b), type, 0, term,
                                     type == RAFT_ENTRY_CONFIG ? conf : NULL,
                                     type == RAFT_ENTRY_CONFIG ? sizeof(conf) : 0);
    CHECK(n > 0);
    storage_append_result res;
    CHECK_EQ(storage_log_append(log, term, b, (size_t)n, &res), 0);
}

/* Appends nb data batches of 1-4 records over NKEYS keys in term. */
static void append_data(storage_log *log, int32_t term, int nb, uint64_t *seed, int64_t ts)
{
    static uint8_t b[16384];
    for (int i = 0; i < nb; i++) {
        int n = 1 + (int)(su_rand(seed) % 4), keys[4];
        for (int j = 0; j < n; j++) keys[j] = (int)(su_rand(seed) % NKEYS);
        size_t len = su_batch(b, sizeof(b), n, keys, su_rand(seed) % 1000000, 40, false, ts);
        storage_append_result res;
        CHECK_EQ(storage_log_append(log, term, b, len, &res), 0);
    }
}

/* Builds a Raft-shaped log: terms 1..3, each opened by a NOOP, a CONFIG and a TRIM marker in
 * the middle, data batches of keyed records between them. */
static void build_log(storage_log *log, uint64_t seed)
{
    uint64_t s = seed | 1;
    append_control(log, RAFT_ENTRY_NOOP, 1);
    append_control(log, RAFT_ENTRY_CONFIG, 1);
    append_data(log, 1, 120, &s, 1000);
    uint8_t trim[128];
    int tn = raft_batch_build_trim(trim, sizeof(trim), 3);
    CHECK(tn > 0);
    storage_append_result res;
    CHECK_EQ(storage_log_append(log, 1, trim, (size_t)tn, &res), 0);
    append_data(log, 1, 60, &s, 2000);
    append_control(log, RAFT_ENTRY_NOOP, 2);
    append_data(log, 2, 150, &s, 3000);
    append_control(log, RAFT_ENTRY_NOOP, 3);
    append_data(log, 3, 80, &s, 4000);
    CHECK_EQ(su_flush_all(log), 0);
    int64_t ret;
    storage_log_config c = raft_cfg();
    CHECK_EQ(storage_log_housekeep_raft(log, 5000, &c, &ret), 0); /* finishes sealed segments */
    storage_log_finish_wait(log);                                  /* (off the thread) */
}

/* Runs compaction steps until idle. Returns the last result. */
static int compact_until_idle(storage_log *log, int64_t commit)
{
    storage_log_config c = raft_cfg();
    int rc = 0;
    for (int i = 0; i < 10000; i++) {
        rc = storage_log_compact_raft(log, 5000, &c, commit, 4096);
        if (rc <= 0) break;
    }
    return rc;
}

/* Offset of the last offset of segment i. */
static int64_t seg_last(storage_log *log, int i)
{
    storage_segment_info si;
    AL_ASSERT(storage_log_segment_info(log, i, &si) == 0);
    return si.last;
}

TEST(raft_compaction_below_commit_keeps_entries_and_control_batches)
{
    storage_log_config c = raft_cfg();
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/raftlog", test_tmpdir());
    storage_log *log = NULL;
    CHECK_EQ(storage_log_open(su_test_io(), dir, &c, &log), 0);
    build_log(log, test_seed());
    int nsegs = storage_log_segment_count(log);
    CHECK(nsegs >= 6);
    /* the commit index ends in the middle of the segments: the ones above stay untouched */
    int cseg = nsegs / 2;
    int64_t commit = seg_last(log, cseg) - 1; /* segment cseg is not wholly committed */
    static scan before, after;
    do_scan(log, &before, seg_last(log, cseg - 1));
    CHECK_EQ(compact_until_idle(log, commit), 0);
    do_scan(log, &after, seg_last(log, cseg - 1));
    CHECK_EQ(after.n, before.n);
    int ncontrol = 0, nempty = 0;
    for (int i = 0; i < before.n && i < after.n; i++) {
        const sbatch *x = &before.b[i], *y = &after.b[i];
        CHECK_EQ(y->base, x->base);
        CHECK_EQ(y->last, x->last);
        CHECK_EQ(y->epoch, x->epoch);
        CHECK_EQ(y->type, x->type);
        CHECK_EQ(storage_log_term_at(log, y->base), x->epoch);
        if (x->attributes & STORAGE_ATTR_CONTROL) { /* NOOP, CONFIG, TRIM: byte for byte */
            ncontrol++;
            CHECK_EQ(y->crc, x->crc);
            CHECK_EQ(y->size, x->size);
            CHECK_EQ(y->attributes, x->attributes);
        }
        if (x->last > seg_last(log, cseg - 1)) { /* not compacted: unchanged */
            CHECK_EQ(y->crc, x->crc);
            CHECK_EQ(y->size, x->size);
        }
        if (y->records == 0 && !(y->attributes & STORAGE_ATTR_CONTROL)) nempty++;
    }
    CHECK_EQ(ncontrol, 5); /* 3 NOOP, 1 CONFIG, 1 TRIM */
    CHECK(nempty > 0);
    CHECK(after.bytes < before.bytes);
    for (int k = 0; k < NKEYS; k++) {
        /* the newest record of every key survives with its value; below the compacted end
         * at most one record per key is left */
        CHECK_EQ(after.newest[k], before.newest[k]);
        CHECK(!strcmp(after.val[k], before.val[k]));
        if (before.count_from_below[k] > 2) CHECK(after.count[k] < before.count[k]);
    }
    CHECK_EQ(storage_log_segment_count(log), nsegs);
    /* compacted segments: no more than the newest record per key plus one kept record per
     * segment end (a Fetch to a segment's end always holds a record) */
    int below = 0, before_below = 0;
    for (int k = 0; k < NKEYS; k++) {
        below += after.count_from_below[k];
        before_below += before.count_from_below[k];
    }
    CHECK(below <= NKEYS + cseg);
    CHECK(below < before_below);
    for (int i = 0; i < cseg; i++) { /* each compacted segment's last data batch has a record */
        int64_t sl = seg_last(log, i);
        for (int j = 0; j < after.n; j++)
            if (after.b[j].last == sl && !(after.b[j].attributes & STORAGE_ATTR_CONTROL))
                CHECK(after.b[j].records > 0);
    }
    /* idle once done; a higher commit compacts more */
    CHECK_EQ(storage_log_compact_raft(log, 5000, &c, commit, 4096), 0);
    int64_t high = storage_log_high_offset(log);

    /* reopen: the rewritten segments and their indexes load, the entries are the same */
    storage_log_close(log);
    log = NULL;
    CHECK_EQ(storage_log_open(su_test_io(), dir, &c, &log), 0);
    CHECK_EQ(storage_log_high_offset(log), high);
    static scan again;
    do_scan(log, &again, seg_last(log, cseg - 1));
    CHECK_EQ(again.n, after.n);
    for (int i = 0; i < again.n && i < after.n; i++) {
        CHECK_EQ(again.b[i].base, after.b[i].base);
        CHECK_EQ(again.b[i].crc, after.b[i].crc);
    }

    /* a suffix truncation inside a compacted segment (storage level: finds batches through
     * the rewritten index) and an append after it */
    int64_t cut = after.b[after.n / 4].base;
    CHECK(cut <= seg_last(log, cseg - 1));
    CHECK_EQ(storage_log_truncate_suffix(log, cut), 0);
    CHECK_EQ(storage_log_last_offset(log), cut - 1);
    uint64_t s = 99;
    append_data(log, 4, 3, &s, 6000);
    CHECK_EQ(su_flush_all(log), 0);
    static scan tail;
    do_scan(log, &tail, -1);
    CHECK_EQ(tail.n, after.n / 4 + 3);
    for (int i = 0; i < after.n / 4 && i < tail.n; i++) CHECK_EQ(tail.b[i].crc, after.b[i].crc);
    CHECK_EQ(tail.b[after.n / 4].base, cut);
    CHECK_EQ(tail.b[after.n / 4].epoch, 4);
    CHECK_EQ(storage_log_term_at(log, cut), 4);
    storage_log_close(log);
}

/* The follower side of catch-up: a follower with an empty log appends the compacted leader's
 * batches as the replica's APPEND does (storage_log_append_validated with each entry's term).
 * Offsets, terms and Kafka-visible records are equal; the follower compacts to the same. */
struct copy_ctx {
    storage_log *to;
    int err;
};

static int copy_fn(void *ctx, const uint8_t *batch, size_t size)
{
    struct copy_ctx *cc = ctx;
    storage_batch_hdr h;
    storage_batch_parse_header(batch, size, &h);
    uint8_t *b = malloc(size);
    if (!b) return -ENOMEM;
    memcpy(b, batch, size);
    storage_append_result res;
    int rc = storage_log_append_validated(cc->to, h.leader_epoch, b, size, &res);
    if (rc == 0 && (res.base_offset != h.base_offset ||
                    res.last_offset != storage_batch_last_offset(&h)))
        rc = AL_EINVAL;
    free(b);
    return rc;
}

TEST(raft_compacted_leader_catch_up_of_empty_follower)
{
    storage_log_config c = raft_cfg();
    char dir[512], fdir[512];
    snprintf(dir, sizeof(dir), "%s/leader", test_tmpdir());
    snprintf(fdir, sizeof(fdir), "%s/follower", test_tmpdir());
    storage_log *log = NULL, *f = NULL;
    CHECK_EQ(storage_log_open(su_test_io(), dir, &c, &log), 0);
    CHECK_EQ(storage_log_open(su_test_io(), fdir, &c, &f), 0);
    build_log(log, test_seed() + 7);
    int64_t commit = storage_log_last_offset(log);
    CHECK_EQ(compact_until_idle(log, commit), 0);
    struct copy_ctx cc = {f, 0};
    CHECK_EQ(storage_log_scan_sync(log, 0, 0, copy_fn, &cc), 0);
    CHECK_EQ(su_flush_all(f), 0);
    CHECK_EQ(storage_log_high_offset(f), storage_log_high_offset(log));
    static scan a, b;
    do_scan(log, &a, commit);
    do_scan(f, &b, commit);
    CHECK_EQ(a.n, b.n);
    for (int i = 0; i < a.n && i < b.n; i++) {
        CHECK_EQ(a.b[i].base, b.b[i].base);
        CHECK_EQ(a.b[i].last, b.b[i].last);
        CHECK_EQ(a.b[i].epoch, b.b[i].epoch);
        CHECK_EQ(a.b[i].crc, b.b[i].crc); /* same bytes: same Kafka-visible records */
        CHECK_EQ(storage_log_term_at(f, b.b[i].base), a.b[i].epoch);
    }
    for (int k = 0; k < NKEYS; k++) {
        CHECK_EQ(a.newest[k], b.newest[k]);
        CHECK(!strcmp(a.val[k], b.val[k]));
    }
    /* the follower compacting its copy keeps it equal where both compacted */
    int64_t ret;
    CHECK_EQ(storage_log_housekeep_raft(f, 5000, &c, &ret), 0);
    storage_log_finish_wait(f);
    CHECK_EQ(compact_until_idle(f, commit), 0);
    do_scan(f, &b, commit);
    CHECK_EQ(a.n, b.n);
    for (int k = 0; k < NKEYS; k++) CHECK_EQ(a.newest[k], b.newest[k]);
    storage_log_close(f);
    storage_log_close(log);
}

/* A key whose newest record is an expired tombstone (dropped) stays deleted: the records an
 * emptied batch keeps at segment ends (so a Fetch there holds a record) are tombstones. */
TEST(raft_compaction_expired_tombstone_stays_deleted)
{
    storage_log_config c = raft_cfg();
    c.delete_retention_ms = 100;
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/tomblog", test_tmpdir());
    storage_log *log = NULL;
    CHECK_EQ(storage_log_open(su_test_io(), dir, &c, &log), 0);
    append_control(log, RAFT_ENTRY_NOOP, 1);
    static uint8_t b[16384];
    storage_append_result res;
    int k0 = 0, k1 = 1;
    for (int i = 0; i < 200; i++) { /* key 0 only: every segment ends with a key-0 batch */
        size_t len = su_batch(b, sizeof(b), 1, &k0, (uint64_t)i, 60, false, 1000);
        CHECK_EQ(storage_log_append(log, 1, b, len, &res), 0);
    }
    size_t len = su_batch(b, sizeof(b), 1, &k0, 999, 0, true, 1000);
    CHECK_EQ(storage_log_append(log, 1, b, len, &res), 0);
    for (int i = 0; i < 200; i++) {
        len = su_batch(b, sizeof(b), 1, &k1, (uint64_t)i, 60, false, 1000);
        CHECK_EQ(storage_log_append(log, 1, b, len, &res), 0);
    }
    CHECK_EQ(su_flush_all(log), 0);
    int64_t ret;
    CHECK_EQ(storage_log_housekeep_raft(log, 5000, &c, &ret), 0);
    storage_log_finish_wait(log);
    static scan before, after;
    do_scan(log, &before, -1);
    CHECK(before.tomb[0]);
    int r = 1;
    for (int i = 0; i < 10000 && r > 0; i++)
        r = storage_log_compact_raft(log, 5000, &c, storage_log_last_offset(log), 4096);
    CHECK_EQ(r, 0);
    do_scan(log, &after, -1);
    CHECK(after.bytes < before.bytes);
    CHECK_EQ(after.n, before.n);
    /* replayed in order, key 0 ends deleted (its tombstone expired and went, and no older
     * value of it is left after its last tombstone), key 1 ends at its newest value */
    CHECK(after.newest[0] < 0 || after.tomb[0]);
    CHECK(after.count[0] < before.count[0]);
    CHECK_EQ(after.newest[1], before.newest[1]);
    CHECK(!strcmp(after.val[1], before.val[1]));
    storage_log_close(log);
}

/* Not the compact policy (or a read in flight): nothing happens. */
TEST(raft_compaction_needs_compact_policy)
{
    storage_log_config c = raft_cfg();
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/deletelog", test_tmpdir());
    storage_log *log = NULL;
    CHECK_EQ(storage_log_open(su_test_io(), dir, &c, &log), 0);
    build_log(log, test_seed() + 3);
    static scan before, after;
    do_scan(log, &before, -1);
    storage_log_config d = c;
    d.cleanup_policy = STORAGE_CLEANUP_DELETE;
    CHECK_EQ(storage_log_compact_raft(log, 5000, &d, storage_log_last_offset(log), 1 << 20), 0);
    /* commit below the first segment's end: nothing is eligible */
    CHECK_EQ(storage_log_compact_raft(log, 5000, &c, seg_last(log, 0) - 1, 1 << 20), 0);
    do_scan(log, &after, -1);
    CHECK_EQ(after.bytes, before.bytes);
    storage_log_close(log);
}

int main(int argc, char **argv) { return test_main(argc, argv); }
