/*
 * test_offset_translator.c — the Raft <-> Kafka offset translator (src/raft/offset_translator.h)
 * against a brute-force model: a log of Raft offsets each marked data or gap, grown by appends
 * of data and gap batches and cut by suffix truncation (a follower's divergent suffix, which
 * may remove gap batches), prefix truncation (retention, DeleteRecords: the delta at the new
 * start is kept) and snapshot installs (reset to the leader's start and delta). After every
 * step every offset of the log (and around it) translates both ways as the model says.
 */
#include "raft/offset_translator.h"

#include "storage/batch.h"
#include "test.h"

#define MODEL_MAX 4096

struct model {
    bool gap[MODEL_MAX];   /* per Raft offset, the whole history from 0 */
    bool inner[MODEL_MAX]; /* inside a gap batch, not its first offset (never looked up) */
    int64_t start, end;  /* the log holds [start, end) */
};

/* Gap offsets below x in the model. */
static int64_t model_delta(const struct model *m, int64_t x)
{
    int64_t d = 0;
    for (int64_t i = 0; i < x && i < MODEL_MAX; i++) d += m->gap[i];
    return d;
}

/* Checks every offset of the log, and the offsets past its end. */
static void check_all(const otx *t, const struct model *m)
{
    CHECK_EQ(t->start, m->start);
    CHECK_EQ(t->base_delta, model_delta(m, m->start));
    for (int64_t x = m->start; x <= m->end + 2; x++) {
        int64_t k = x - model_delta(m, x < m->end ? x : m->end); /* nothing past the end */
        if (x < m->end && m->inner[x]) continue;
        CHECK_EQ(otx_to_kafka(t, x), k);
        if (x < m->end && !m->gap[x]) CHECK_EQ(otx_to_raft(t, k), x); /* data: exact inverse */
    }
    /* past the last data record: the offset after the log's trailing gaps */
    int64_t kend = m->end - model_delta(m, m->end);
    CHECK_EQ(otx_to_raft(t, kend), m->end);
}

TEST(empty_and_identity)
{
    otx t;
    otx_init(&t, 0, 0);
    for (int64_t x = 0; x < 100; x++) {
        CHECK_EQ(otx_to_kafka(&t, x), x);
        CHECK_EQ(otx_to_raft(&t, x), x);
    }
    otx_free(&t);
}

TEST(fresh_partition_noop_first)
{
    /* a new leader's NOOP at 0, then data 1..10 (two batches), a second NOOP at 11 (leader
     * change), a CONFIG at 12, data 13..14, a TRIM at 15 */
    otx t;
    otx_init(&t, 0, 0);
    CHECK_EQ(otx_add_gap(&t, 0, 0), 0);
    CHECK_EQ(otx_add_gap(&t, 11, 11), 0);
    CHECK_EQ(otx_add_gap(&t, 12, 12), 0);
    CHECK_EQ(otx_add_gap(&t, 15, 15), 0);
    CHECK_EQ(otx_add_gap(&t, 14, 14), AL_ERANGE); /* out of order */
    CHECK_EQ(otx_to_kafka(&t, 0), 0);
    CHECK_EQ(otx_to_kafka(&t, 1), 0);
    CHECK_EQ(otx_to_kafka(&t, 10), 9);
    CHECK_EQ(otx_to_kafka(&t, 11), 10);
    CHECK_EQ(otx_to_kafka(&t, 13), 10);
    CHECK_EQ(otx_to_kafka(&t, 14), 11);
    CHECK_EQ(otx_to_kafka(&t, 16), 12); /* high watermark after the TRIM: 12 records */
    CHECK_EQ(otx_to_raft(&t, 0), 1);
    CHECK_EQ(otx_to_raft(&t, 9), 10);
    CHECK_EQ(otx_to_raft(&t, 10), 13);
    CHECK_EQ(otx_to_raft(&t, 11), 14);
    CHECK_EQ(otx_to_raft(&t, 12), 16);
    /* DeleteRecords cut the prefix at 13: 3 gaps below it */
    otx_truncate_prefix(&t, 13);
    CHECK_EQ(t.base_delta, 3);
    CHECK_EQ(t.n, 1u);
    CHECK_EQ(otx_to_kafka(&t, 13), 10);
    CHECK_EQ(otx_to_raft(&t, 10), 13);
    /* a follower's suffix from 15 on was divergent: the TRIM goes */
    otx_truncate_suffix(&t, 15);
    CHECK_EQ(t.n, 0u);
    CHECK_EQ(otx_to_kafka(&t, 16), 13);
    otx_free(&t);
}

TEST(gap_classification)
{
    CHECK(otx_is_gap(STORAGE_ATTR_CONTROL, -1));
    CHECK(!otx_is_gap(STORAGE_ATTR_CONTROL | STORAGE_ATTR_TRANSACTIONAL, 7)); /* txn marker */
    CHECK(!otx_is_gap(STORAGE_ATTR_CONTROL | STORAGE_ATTR_TRANSACTIONAL, -1));
    CHECK(!otx_is_gap(0, -1));
    CHECK(!otx_is_gap(0, 5));
}

/* Random histories: appends, suffix and prefix truncation, installs; bounded by count. */
TEST(random_against_model)
{
    uint64_t seed = test_seed();
    srand((unsigned)seed);
    for (int round = 0; round < 200; round++) {
        static struct model m;
        memset(&m, 0, sizeof(m));
        otx t;
        otx_init(&t, 0, 0);
        for (int step = 0; step < 120 && m.end < MODEL_MAX - 16; step++) {
            int op = rand() % 100;
            if (op < 55) { /* data batch of 1..5 records */
                int n = 1 + rand() % 5;
                for (int i = 0; i < n; i++) m.gap[m.end + i] = m.inner[m.end + i] = false;
                m.end += n;
            } else if (op < 80) { /* a NOOP / CONFIG / TRIM (one offset; sometimes more) */
                int n = rand() % 8 ? 1 : 2;
                CHECK_EQ(otx_add_gap(&t, m.end, m.end + n - 1), 0);
                for (int i = 0; i < n; i++) m.gap[m.end + i] = true, m.inner[m.end + i] = i > 0;
                m.end += n;
            } else if (op < 88 && m.end > m.start) { /* suffix truncation */
                int64_t from = m.start + rand() % (m.end - m.start + 1);
                /* truncation is at a batch boundary: never inside a 2-offset gap batch */
                if (from < m.end && m.inner[from]) from--;
                otx_truncate_suffix(&t, from);
                m.end = from;
            } else if (op < 96 && m.end > m.start) { /* prefix truncation */
                int64_t s = m.start + rand() % (m.end - m.start + 1);
                if (s < m.end && m.inner[s]) s--;
                otx_truncate_prefix(&t, s);
                m.start = s;
            } else { /* install: the leader's log restarts later, its gaps below counted */
                int64_t s = m.end + rand() % 6;
                for (int64_t i = m.end; i < s; i++) m.gap[i] = rand() % 3 == 0, m.inner[i] = 0;
                otx_reset(&t, s, model_delta(&m, s));
                m.start = m.end = s;
            }
            check_all(&t, &m);
            if (test_failed_now) break;
        }
        otx_free(&t);
        if (test_failed_now) {
            printf("seed %" PRIu64 " round %d\n", seed, round);
            break;
        }
    }
}

int main(int argc, char **argv) { return test_main(argc, argv); }
