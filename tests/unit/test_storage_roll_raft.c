/*
 * test_storage_roll_raft.c — segment rolls of a Raft partition log: an append rolls the active
 * segment when its batch would take it past segment.bytes (never splitting a batch: one
 * oversized batch gets a segment of its own), when the term changes (every segment holds one
 * term), and when the segment is older than segment.ms (sealed by housekeeping); new values
 * set at runtime (storage_log_set_roll, storage_log_housekeep_raft: a topic's AlterConfigs)
 * apply from the next append, also to an active segment already past a lowered size. Every
 * append is checked against a model of that rule; the segments survive a reopen unchanged, and
 * rolls stay right after a suffix truncation (a follower's conflicting tail) and after a
 * restart at a snapshot point (a snapshot install).
 */
#include "storage_util.h"

#include "raft/raft.h"
#include "raft/replica.h"
#include "storage/log_raft.h"

#include <string.h>
#include <time.h>

static storage_log_config roll_cfg(uint64_t segment_bytes)
{
    storage_log_config c;
    storage_log_config_default(&c);
    c.segment_bytes = segment_bytes;
    c.segment_ms = -1; /* age rolls only where a test turns them on */
    c.fallocate_step = 16 * 1024;
    c.flush_bytes = 8 * 1024;
    c.index_interval_bytes = 1024;
    c.retention_ms = -1;
    return c;
}

/* The test's model of the roll rule: the segment_bytes in effect, and how many appends
 * rolled as the model expected (a test that never rolls would prove nothing). */
typedef struct model {
    uint64_t limit;
    int rolls;
    int appends;
} model;

/* Whether an append of len bytes in term must start a new segment, from the active segment's
 * facts (or none). */
static bool model_rolls(const storage_log *log, const model *m, int32_t term, size_t len)
{
    int n = storage_log_segment_count(log);
    if (n == 0) return true;
    storage_segment_info a;
    AL_ASSERT(storage_log_segment_info(log, n - 1, &a) == 0);
    if (a.sealed || a.term != term) return true;
    return a.size > 0 && a.size + len > m->limit;
}

/* Appends buf (one batch, len bytes) in term and checks the roll decision against the model:
 * a roll makes a new segment starting at the batch, otherwise the batch extends the active
 * segment. */
static void append_checked(storage_log *log, model *m, int32_t term, uint8_t *buf, size_t len)
{
    bool roll = model_rolls(log, m, term, len);
    int n0 = storage_log_segment_count(log);
    storage_segment_info a0 = {0};
    if (n0) CHECK_EQ(storage_log_segment_info(log, n0 - 1, &a0), 0);
    storage_append_result res;
    CHECK_EQ(storage_log_append(log, term, buf, len, &res), 0);
    int n = storage_log_segment_count(log);
    storage_segment_info a;
    CHECK_EQ(storage_log_segment_info(log, n - 1, &a), 0);
    m->appends++;
    if (roll) {
        m->rolls++;
        /* an empty active segment is replaced rather than kept, so the count may not grow */
        CHECK(n == n0 + 1 || (n0 && a0.size == 0 && n == n0));
        CHECK_EQ(a.base, res.base_offset);
        CHECK_EQ(a.size, (uint64_t)len);
        CHECK_EQ(a.term, term);
    } else {
        CHECK_EQ(n, n0);
        CHECK_EQ(a.base, a0.base);
        CHECK_EQ(a.size, a0.size + len);
    }
    CHECK_EQ(a.last, res.last_offset);
}

/* Appends nb keyed batches of 1-40 records (a few hundred bytes to ~18 KiB, some larger than
 * the segment size) in term, each checked against the model. */
static void append_batches(storage_log *log, model *m, int32_t term, int nb, uint64_t *seed)
{
    static uint8_t b[64 * 1024];
    for (int i = 0; i < nb; i++) {
        uint64_t r = su_rand(seed);
        int n = (r % 16 == 0) ? 20 + (int)(r % 21) : 1 + (int)(r % 6);
        size_t vlen = 40 + (size_t)(su_rand(seed) % 400);
        size_t len = su_batch(b, sizeof(b), n, NULL, r % 1000000, vlen, false, 1000 + i);
        append_checked(log, m, term, b, len);
    }
}

/* Appends a Raft NOOP in term (a new leader's first entry), checked against the model. */
static void append_noop(storage_log *log, model *m, int32_t term)
{
    uint8_t b[RAFT_CTRL_BATCH_MAX];
    int n = raft_batch_build_control(b, sizeof(b), RAFT_ENTRY_NOOP, 0, term, NULL, 0);
    CHECK(n > 0);
    append_checked(log, m, term, b, (size_t)n);
}

/* Per segment: batches, and whether every batch lies inside it (a roll never splits one). */
typedef struct seg_count {
    int64_t lo, hi; /* offsets of the segment */
    int batches;
    bool straddles;
} seg_count;

#define SEGS_MAX 512

typedef struct seg_scan {
    seg_count s[SEGS_MAX];
    int n;
} seg_scan;

static int count_fn(void *ctx, const uint8_t *batch, size_t size)
{
    seg_scan *ss = ctx;
    storage_batch_hdr h;
    if (storage_batch_parse_header(batch, size, &h) < 0) return AL_ECORRUPT;
    int64_t last = storage_batch_last_offset(&h);
    for (int i = 0; i < ss->n; i++) {
        seg_count *c = &ss->s[i];
        if (h.base_offset >= c->lo && h.base_offset <= c->hi) {
            c->batches++;
            if (last > c->hi) c->straddles = true;
            return 0;
        }
    }
    return AL_ECORRUPT; /* a batch outside every segment */
}

/*
 * Checks every segment of log: each starts where the previous one ended, holds batches of one
 * term, no batch runs past its end, and a closed segment based at or after offset `from` is at
 * most `limit` bytes unless it holds a single batch. Returns the number of segments.
 */
static int check_segments(storage_log *log, uint64_t limit, int64_t from)
{
    static seg_scan ss;
    memset(&ss, 0, sizeof(ss));
    int n = storage_log_segment_count(log);
    CHECK(n <= SEGS_MAX);
    int64_t next = -1;
    for (int i = 0; i < n && i < SEGS_MAX; i++) {
        storage_segment_info si;
        CHECK_EQ(storage_log_segment_info(log, i, &si), 0);
        if (next >= 0) CHECK_EQ(si.base, next);
        next = si.last + 1;
        ss.s[ss.n++] = (seg_count){si.base, si.last, 0, false};
        CHECK_EQ(storage_log_term_at(log, si.base), si.term);
    }
    CHECK_EQ(storage_log_scan_sync(log, storage_log_start_offset(log), 0, count_fn, &ss), 0);
    for (int i = 0; i < ss.n; i++) {
        storage_segment_info si;
        CHECK_EQ(storage_log_segment_info(log, i, &si), 0);
        CHECK(!ss.s[i].straddles);
        CHECK(ss.s[i].batches >= 1);
        if (i + 1 < ss.n && ss.s[i].batches > 1 && si.base >= from) CHECK(si.size <= limit);
    }
    return n;
}

/* Facts of every segment, to compare across a reopen. */
typedef struct seg_facts {
    int n;
    storage_segment_info s[SEGS_MAX];
} seg_facts;

static void facts_get(storage_log *log, seg_facts *f)
{
    f->n = storage_log_segment_count(log);
    for (int i = 0; i < f->n && i < SEGS_MAX; i++)
        CHECK_EQ(storage_log_segment_info(log, i, &f->s[i]), 0);
}

TEST(raft_log_rolls_at_segment_bytes_on_append)
{
    uint64_t seed = test_seed() | 1;
    storage_log_config c = roll_cfg(8192);
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/rolls", test_tmpdir());
    storage_log *log = NULL;
    CHECK_EQ(storage_log_open(su_test_io(), dir, &c, &log), 0);
    model m = {8192, 0, 0};
    append_noop(log, &m, 1);
    append_batches(log, &m, 1, 120, &seed);
    append_noop(log, &m, 2); /* a new term rolls however small the segment */
    append_batches(log, &m, 2, 80, &seed);
    CHECK_EQ(su_flush_all(log), 0);
    int n1 = check_segments(log, 8192, 0);
    CHECK(n1 >= 10);
    CHECK(m.rolls >= n1 - 1);
    /* the housekeeping pass finishes sealed segments: their files are trimmed to their data */
    int64_t ret;
    CHECK_EQ(storage_log_housekeep_raft(log, 5000, &c, &ret), 0);
    storage_log_finish_wait(log); /* the finish job (trim, index files) off the thread */
    CHECK_EQ(check_segments(log, 8192, 0), n1);
    for (int i = 0; i + 1 < n1; i++) {
        storage_segment_info si;
        CHECK_EQ(storage_log_segment_info(log, i, &si), 0);
        char path[600];
        snprintf(path, sizeof(path), "%s.log", si.path_stem);
        FILE *f = fopen(path, "rb");
        CHECK(f != NULL);
        if (f) {
            fseek(f, 0, SEEK_END);
            CHECK_EQ((uint64_t)ftell(f), si.size);
            fclose(f);
        }
    }
    CHECK_EQ(storage_log_close(log), 0);
}

TEST(raft_log_roll_size_changes_at_runtime_and_survives_reopen)
{
    uint64_t seed = test_seed() | 1;
    /* opened with the default (128 MiB): no size roll at all until the topic's value comes */
    storage_log_config c = roll_cfg(128u << 20);
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/runtime", test_tmpdir());
    storage_log *log = NULL;
    CHECK_EQ(storage_log_open(su_test_io(), dir, &c, &log), 0);
    model m = {128u << 20, 0, 0};
    append_noop(log, &m, 1);
    append_batches(log, &m, 1, 60, &seed);
    CHECK_EQ(storage_log_segment_count(log), 1);
    storage_segment_info a;
    CHECK_EQ(storage_log_segment_info(log, 0, &a), 0);
    CHECK(a.size > 16384);

    /* AlterConfigs lowers segment.bytes: the active segment, already far past it, rolls at
     * the very next append */
    CHECK(storage_log_set_roll(log, 4096, -1));
    CHECK(!storage_log_set_roll(log, 4096, -1)); /* the same values: nothing changed */
    CHECK(!storage_log_set_roll(log, 0, -1));    /* 0 keeps the size */
    m.limit = 4096;
    int rolls0 = m.rolls;
    append_batches(log, &m, 1, 1, &seed);
    CHECK_EQ(m.rolls, rolls0 + 1);
    CHECK_EQ(storage_log_segment_count(log), 2);
    CHECK_EQ(storage_log_segment_info(log, 1, &a), 0);
    int64_t changed_at = a.base;
    append_batches(log, &m, 1, 100, &seed);
    CHECK_EQ(su_flush_all(log), 0);
    /* every segment after the change holds at most the new size (or one batch) */
    CHECK(check_segments(log, 4096, changed_at) >= 10);

    /* the housekeeping pass carries the topic's values too (raised here) */
    storage_log_config topic = roll_cfg(16384);
    int64_t ret;
    CHECK_EQ(storage_log_housekeep_raft(log, 5000, &topic, &ret), 0);
    m.limit = 16384;
    append_noop(log, &m, 2);
    append_batches(log, &m, 2, 80, &seed);
    CHECK_EQ(su_flush_all(log), 0);
    int nb = storage_log_segment_count(log);

    /* reopen with the default config: the segments are the same ones, data intact */
    static seg_facts before, after;
    facts_get(log, &before);
    int64_t high = storage_log_high_offset(log);
    CHECK_EQ(storage_log_close(log), 0);
    log = NULL;
    CHECK_EQ(storage_log_open(su_test_io(), dir, &c, &log), 0);
    facts_get(log, &after);
    CHECK_EQ(after.n, before.n);
    for (int i = 0; i < after.n && i < before.n; i++) {
        CHECK_EQ(after.s[i].base, before.s[i].base);
        CHECK_EQ(after.s[i].last, before.s[i].last);
        CHECK_EQ(after.s[i].term, before.s[i].term);
        CHECK_EQ(after.s[i].size, before.s[i].size);
    }
    CHECK_EQ(storage_log_high_offset(log), high);
    CHECK_EQ(check_segments(log, 128u << 20, 0), nb);
    /* the replica applies the topic's value again after the open; rolls go on from there,
     * in the reopened active segment first */
    m.limit = 128u << 20;
    append_batches(log, &m, 2, 5, &seed);
    storage_log_set_roll(log, 2048, -1);
    m.limit = 2048;
    append_batches(log, &m, 2, 60, &seed);
    append_noop(log, &m, 3);
    append_batches(log, &m, 3, 20, &seed);
    CHECK_EQ(su_flush_all(log), 0);
    CHECK(storage_log_segment_count(log) >= nb + 20);
    check_segments(log, 2048, high + 1);
    CHECK_EQ(storage_log_close(log), 0);
}

TEST(raft_log_rolls_after_truncation_and_snapshot_restart)
{
    uint64_t seed = test_seed() | 1;
    storage_log_config c = roll_cfg(6000);
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/trunc", test_tmpdir());
    storage_log *log = NULL;
    CHECK_EQ(storage_log_open(su_test_io(), dir, &c, &log), 0);
    model m = {6000, 0, 0};
    append_noop(log, &m, 1);
    append_batches(log, &m, 1, 100, &seed);
    append_noop(log, &m, 2);
    append_batches(log, &m, 2, 40, &seed);
    CHECK_EQ(su_flush_all(log), 0);
    int n = check_segments(log, 6000, 0);
    CHECK(n >= 8);
    /* a follower's conflicting tail: cut in the middle of a term-1 segment (a batch boundary
     * inside it), then the new leader's entries (term 3) follow */
    storage_segment_info si;
    CHECK_EQ(storage_log_segment_info(log, n / 2, &si), 0);
    int64_t cut = storage_log_batch_base(log, si.base + (si.last - si.base) / 2);
    CHECK(cut >= si.base);
    CHECK_EQ(storage_log_truncate_suffix(log, cut), 0);
    CHECK_EQ(storage_log_high_offset(log), cut);
    append_noop(log, &m, 3); /* a new term: its own segment */
    append_batches(log, &m, 3, 60, &seed);
    CHECK_EQ(su_flush_all(log), 0);
    check_segments(log, 6000, 0);
    /* a cut at a segment's base leaves the previous (sealed) segment last: the same term's
     * next append starts a new segment rather than reopening it */
    n = storage_log_segment_count(log);
    CHECK_EQ(storage_log_segment_info(log, n - 2, &si), 0);
    int64_t base2 = si.base;
    CHECK_EQ(storage_log_segment_info(log, n - 1, &si), 0);
    CHECK_EQ(storage_log_truncate_suffix(log, si.base), 0);
    CHECK_EQ(storage_log_segment_count(log), n - 1);
    append_batches(log, &m, 3, 30, &seed);
    CHECK_EQ(su_flush_all(log), 0);
    CHECK_EQ(storage_log_term_at(log, base2), 3);
    check_segments(log, 6000, 0);
    /* a snapshot install empties the log and restarts it past the point: rolls as before.
     * Housekeeping first hands the sealed segments to a finish job (off the thread): the
     * restart must wait for it before it frees them (ASan catches the job reading them). */
    int64_t snap = storage_log_high_offset(log) + 1000;
    int64_t ret;
    CHECK_EQ(storage_log_housekeep_raft(log, 5000, &c, &ret), 0);
    CHECK_EQ(storage_log_restart_at(log, snap), 0);
    CHECK_EQ(storage_log_segment_count(log), 0);
    storage_log_set_roll(log, 3000, -1);
    m.limit = 3000;
    append_batches(log, &m, 4, 60, &seed);
    CHECK_EQ(su_flush_all(log), 0);
    CHECK_EQ(storage_log_segment_info(log, 0, &si), 0);
    CHECK_EQ(si.base, snap);
    CHECK(check_segments(log, 3000, 0) >= 5);
    CHECK(m.rolls > 20);
    CHECK_EQ(storage_log_close(log), 0);
}

TEST(raft_log_rolls_by_age_after_housekeeping)
{
    uint64_t seed = test_seed() | 1;
    storage_log_config c = roll_cfg(1u << 20);
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/age", test_tmpdir());
    storage_log *log = NULL;
    CHECK_EQ(storage_log_open(su_test_io(), dir, &c, &log), 0);
    model m = {1u << 20, 0, 0};
    append_noop(log, &m, 1);
    append_batches(log, &m, 1, 5, &seed);
    CHECK_EQ(storage_log_segment_count(log), 1); /* the NOOP and data of one term */
    /* age rolls off (segment.ms -1): housekeeping much later seals nothing */
    int64_t ret;
    int64_t now = io_wall_ms(su_test_io());
    CHECK_EQ(storage_log_housekeep_raft(log, now + 3600000, &c, &ret), 0);
    append_batches(log, &m, 1, 1, &seed);
    CHECK_EQ(storage_log_segment_count(log), 1);
    /* segment.ms 50 through the topic's config: the pass after 50 ms seals the active segment
     * and the next append rolls (the append's own age check would roll it too) */
    storage_log_config topic = c;
    topic.segment_ms = 50;
    int n0 = storage_log_segment_count(log);
    struct timespec ts = {0, 80 * 1000000L};
    nanosleep(&ts, NULL);
    CHECK_EQ(storage_log_housekeep_raft(log, io_wall_ms(su_test_io()), &topic, &ret), 0);
    storage_segment_info si;
    CHECK_EQ(storage_log_segment_info(log, n0 - 1, &si), 0);
    CHECK(si.sealed);
    append_batches(log, &m, 1, 1, &seed);
    CHECK_EQ(storage_log_segment_count(log), n0 + 1);
    CHECK_EQ(su_flush_all(log), 0);
    check_segments(log, 1u << 20, 0);
    CHECK_EQ(storage_log_close(log), 0);
}

int main(int argc, char **argv) { return test_main(argc, argv); }
