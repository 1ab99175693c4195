/* test_producer_state_fence.c — refusal fences (coord/producer_state.h): a batch refused
 * unwritten makes a later in-flight batch of the same producer, which would find a sequence
 * gap, get the refusal's retriable error instead of OUT_OF_ORDER_SEQUENCE_NUMBER; the fence
 * is per partition and producer epoch, keeps the earliest refused sequence, lifts when a batch
 * is appended, expires, and the bounded table reuses its oldest slot. Ends with a seeded
 * random model check against the rule written out directly, and the new leader's rule for a
 * gap right behind a batch of a previous leadership (producer_state_gap_at_handover). */
#include "test.h"

#include "coord/producer_state.h"
#include "kafka/errors.h"

#define NL   KAFKA_ERR_NOT_LEADER_OR_FOLLOWER
#define NER  KAFKA_ERR_NOT_ENOUGH_REPLICAS
#define OOO  (-KAFKA_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER)

static struct producer_batch batch(int64_t pid, int16_t epoch, int32_t seq, int32_t n)
{
    struct producer_batch b = {pid, epoch, seq, n, 1000};
    return b;
}

/* What the Produce handler does with one batch: the state's verdict, then the fence for a gap.
 * Appends (records and lifts the fence) when the verdict is OK. Returns 0 (appended),
 * 1 (duplicate) or the negative Kafka error answered. */
static int produce(struct producer_state *s, struct producer_fences *t, uint64_t part,
                   struct producer_batch b, int64_t *next_off, int64_t now)
{
    int64_t dup = -1;
    int v = producer_state_check(s, &b, &dup, NULL);
    if (v == OOO) {
        int16_t f = producer_fences_gap(t, part, s, &b, now);
        if (f) v = -f;
    }
    if (v < 0) return v;
    if (v == PRODUCER_DUPLICATE) return 1;
    CHECK_EQ(producer_state_record(s, &b, *next_off), 0);
    producer_fences_clear(t, part, b.producer_id);
    *next_off += b.record_count;
    return 0;
}

TEST(fence_turns_the_gap_behind_a_refused_batch_into_its_retriable_error)
{
    static const uint8_t topic[16] = {1, 2, 3};
    uint64_t part = producer_fence_key(topic, 0);
    CHECK(part != 0);
    CHECK(part != producer_fence_key(topic, 1));
    struct producer_state s;
    producer_state_init(&s, 86400000);
    static struct producer_fences t; /* zeroed: every slot free */
    memset(&t, 0, sizeof(t));
    int64_t off = 0, now = 5000;
    CHECK_EQ(produce(&s, &t, part, batch(7, 0, 0, 10), &off, now), 0); /* seq 0..9 */
    /* R1 (10..10) refused unwritten (a transfer ran); R2..R4 were already in flight */
    struct producer_batch r1 = batch(7, 0, 10, 1);
    producer_fences_refused(&t, part, &r1, NL, now);
    CHECK_EQ(produce(&s, &t, part, batch(7, 0, 11, 10), &off, now + 1), -NL);
    CHECK_EQ(produce(&s, &t, part, batch(7, 0, 21, 5), &off, now + 2), -NL);
    /* another partition, another producer, another epoch: Kafka's answer */
    CHECK_EQ(producer_fences_gap(&t, producer_fence_key(topic, 1), &s, &r1, now), 0);
    CHECK_EQ(produce(&s, &t, producer_fence_key(topic, 1), batch(7, 0, 11, 1), &off, now), OOO);
    CHECK_EQ(produce(&s, &t, part, batch(8, 0, 0, 1), &off, now), 0);
    CHECK_EQ(produce(&s, &t, part, batch(8, 0, 5, 1), &off, now), OOO);
    CHECK_EQ(produce(&s, &t, part, batch(7, 1, 3, 1), &off, now), OOO); /* new epoch at 3 */
    /* the client retries in order: R1 appends and lifts the fence, R2 follows */
    CHECK_EQ(produce(&s, &t, part, batch(7, 0, 10, 1), &off, now + 3), 0);
    CHECK_EQ(produce(&s, &t, part, batch(7, 0, 11, 10), &off, now + 3), 0);
    CHECK_EQ(produce(&s, &t, part, batch(7, 0, 21, 5), &off, now + 3), 0);
    /* a real gap later (no refusal behind it) is OUT_OF_ORDER again */
    CHECK_EQ(produce(&s, &t, part, batch(7, 0, 30, 1), &off, now + 4), OOO);
    producer_state_destroy(&s);
}

TEST(fence_keeps_the_earliest_sequence_follows_the_latest_error_and_expires)
{
    static const uint8_t topic[16] = {9};
    uint64_t part = producer_fence_key(topic, 3);
    struct producer_state s;
    producer_state_init(&s, 86400000);
    static struct producer_fences t;
    memset(&t, 0, sizeof(t));
    int64_t off = 0, now = 100;
    CHECK_EQ(produce(&s, &t, part, batch(1, 2, 0, 4), &off, now), 0); /* 0..3 */
    struct producer_batch a = batch(1, 2, 4, 2), b = batch(1, 2, 6, 2);
    producer_fences_refused(&t, part, &a, NL, now);
    producer_fences_refused(&t, part, &b, NER, now + 10); /* later and further: seq stays 4 */
    CHECK_EQ(producer_fences_gap(&t, part, &s, &b, now + 20), NER);
    CHECK_EQ(producer_fences_gap(&t, part, &s, &a, now + 20), 0); /* not a gap behind 4 */
    /* the gap must start at or before the fence: expected 4 <= 4 < 8 */
    struct producer_batch c = batch(1, 2, 8, 1);
    CHECK_EQ(producer_fences_gap(&t, part, &s, &c, now + 20), NER);
    /* expiry, counted from the latest refusal */
    CHECK_EQ(producer_fences_gap(&t, part, &s, &c, now + 10 + PRODUCER_FENCE_MS - 1), NER);
    CHECK_EQ(producer_fences_gap(&t, part, &s, &c, now + 10 + PRODUCER_FENCE_MS), 0);
    /* a newer epoch's refusal replaces the fence; its gap is counted from sequence 0 */
    struct producer_batch e0 = batch(1, 3, 0, 1), e1 = batch(1, 3, 1, 1);
    producer_fences_refused(&t, part, &e0, NL, now);
    CHECK_EQ(producer_state_check(&s, &e1, &(int64_t){0}, NULL), OOO);
    CHECK_EQ(producer_fences_gap(&t, part, &s, &e1, now + 1), NL);
    CHECK_EQ(producer_fences_gap(&t, part, &s, &c, now + 1), 0); /* old epoch: no fence */
    /* non-idempotent batches and bad arguments record nothing */
    struct producer_batch plain = batch(-1, -1, -1, 1);
    producer_fences_refused(&t, part, &plain, NL, now);
    producer_fences_refused(&t, 0, &c, NL, now);
    producer_fences_refused(&t, part, &c, 0, now);
    int used = 0;
    for (int i = 0; i < PRODUCER_FENCES; i++) used += t.f[i].part != 0;
    CHECK_EQ(used, 1);
    CHECK_EQ((int)t.used, 1);
    producer_state_destroy(&s);
}

TEST(fence_table_is_bounded_and_reuses_the_slot_expiring_first)
{
    static const uint8_t topic[16] = {4};
    uint64_t part = producer_fence_key(topic, 0);
    struct producer_state s;
    producer_state_init(&s, 86400000);
    static struct producer_fences t;
    memset(&t, 0, sizeof(t));
    int64_t now = 1000;
    for (int64_t pid = 0; pid < PRODUCER_FENCES + 10; pid++) {
        struct producer_batch r = batch(pid, 0, 5, 1);
        producer_fences_refused(&t, part, &r, NL, now + pid);
    }
    /* the first ten (expiring first) were replaced; the rest still fence */
    for (int64_t pid = 0; pid < PRODUCER_FENCES + 10; pid++) {
        struct producer_batch later = batch(pid, 0, 6, 1);
        int16_t want = pid < 10 ? 0 : NL;
        CHECK_EQ(producer_fences_gap(&t, part, &s, &later, now + 100), want);
    }
    /* clearing frees the slot */
    producer_fences_clear(&t, part, 20);
    struct producer_batch l20 = batch(20, 0, 6, 1);
    CHECK_EQ(producer_fences_gap(&t, part, &s, &l20, now + 100), 0);
    producer_state_destroy(&s);
}

/* Seeded model check: random refusals, appends, gaps and clock steps for a few producers on
 * two partitions; every answer for a gap equals the rule computed from a plain record of the
 * refusals (bounded: 20000 steps, table large enough that no slot is evicted). */
TEST(fence_matches_a_model_of_the_rule)
{
    uint64_t seed = test_seed();
    static const uint8_t topic[16] = {7, 7};
    uint64_t parts[2] = {producer_fence_key(topic, 0), producer_fence_key(topic, 1)};
    struct producer_state s[2];
    producer_state_init(&s[0], INT64_MAX / 4);
    producer_state_init(&s[1], INT64_MAX / 4);
    static struct producer_fences t;
    memset(&t, 0, sizeof(t));
    struct model {
        bool on;
        int16_t epoch, err;
        int32_t seq;
        int64_t until;
    } m[2][4];
    memset(m, 0, sizeof(m));
    int32_t next[2][4] = {{0}};
    int64_t off[2] = {0, 0}, now = 1;
    for (int step = 0; step < 20000; step++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        uint32_t r = (uint32_t)(seed >> 33);
        int pi = (int)(r & 1), pid = (int)((r >> 1) & 3), op = (int)((r >> 3) % 10);
        now += (int64_t)((r >> 8) % 700);
        struct model *mm = &m[pi][pid];
        int32_t n = 1 + (int32_t)((r >> 16) % 5);
        if (op < 4) { /* the next batch in order: appended */
            struct producer_batch b = batch(pid, 0, next[pi][pid], n);
            CHECK_EQ(produce(&s[pi], &t, parts[pi], b, &off[pi], now), 0);
            next[pi][pid] += n;
            mm->on = false;
        } else if (op < 7) { /* a batch refused unwritten: a retry of one before the expected
                                 sequence, the expected one, or one after it */
            int32_t seq = AL_MAX(next[pi][pid] - 1 + (int32_t)((r >> 20) % 4), 0);
            int16_t err = (r >> 24) & 1 ? NL : NER;
            struct producer_batch b = batch(pid, 0, seq, n);
            producer_fences_refused(&t, parts[pi], &b, err, now);
            if (mm->on && mm->until > now && mm->seq <= seq) {
                mm->err = err;
            } else {
                mm->on = true;
                mm->seq = seq;
                mm->err = err;
            }
            mm->until = now + PRODUCER_FENCE_MS;
        } else { /* a batch past a gap */
            int32_t seq = next[pi][pid] + 1 + (int32_t)((r >> 20) % 4);
            struct producer_batch b = batch(pid, 0, seq, n);
            int want = OOO;
            bool known = producer_state_find(&s[pi], pid) != NULL;
            if (!known) want = 0; /* unknown producers are accepted anywhere, as Kafka 3.8 */
            else if (mm->on && mm->until > now && next[pi][pid] <= mm->seq && mm->seq < seq)
                want = -mm->err;
            int got = produce(&s[pi], &t, parts[pi], b, &off[pi], now);
            CHECK_EQ(got, want);
            if (got == 0) { /* appended (an unknown producer): the model follows */
                next[pi][pid] = seq + n;
                mm->on = false;
            }
        }
        int used = 0; /* the table's count of used slots stays exact */
        for (int i = 0; i < PRODUCER_FENCES; i++) used += t.f[i].part != 0;
        CHECK_EQ((int)t.used, used);
    }
    producer_state_destroy(&s[0]);
    producer_state_destroy(&s[1]);
}

TEST(handover_gap_is_one_right_behind_a_batch_of_a_previous_leadership)
{
    struct producer_state s;
    producer_state_init(&s, 86400000);
    /* producer 7: seq 0..9 at offset 100 and 10..14 at 110, appended by the old leader */
    struct producer_batch b0 = batch(7, 2, 0, 10), b1 = batch(7, 2, 10, 5);
    CHECK_EQ(producer_state_record(&s, &b0, 100), 0);
    CHECK_EQ(producer_state_record(&s, &b1, 110), 0);
    int64_t since = 120; /* the log's end when this leadership began */
    struct producer_batch gap = batch(7, 2, 16, 1), next = batch(7, 2, 15, 1);
    int64_t dup = -1;
    CHECK_EQ(producer_state_check(&s, &gap, &dup, NULL), OOO);
    CHECK(producer_state_gap_at_handover(&s, &gap, since));
    CHECK(!producer_state_gap_at_handover(&s, &next, since)); /* no gap at all */
    struct producer_batch rewound = batch(7, 2, 3, 1), older = batch(7, 1, 20, 1);
    CHECK(!producer_state_gap_at_handover(&s, &rewound, since)); /* behind: a real error */
    CHECK(!producer_state_gap_at_handover(&s, &older, since));   /* an older epoch */
    struct producer_batch bumped = batch(7, 3, 4, 1), fresh = batch(7, 3, 0, 1);
    CHECK(producer_state_gap_at_handover(&s, &bumped, since)); /* newer epoch past 0 */
    CHECK(!producer_state_gap_at_handover(&s, &fresh, since));
    struct producer_batch unknown = batch(8, 0, 50, 1), plain = batch(-1, -1, -1, 1);
    CHECK(!producer_state_gap_at_handover(&s, &unknown, since));
    CHECK(!producer_state_gap_at_handover(&s, &plain, since));
    /* longer than what can be in flight (4 batches of at most 10 records): a real gap, as
     * when librdkafka skips batches that timed out unwritten */
    struct producer_batch far = batch(7, 2, 15 + 40, 1), edge = batch(7, 2, 15 + 41, 1);
    struct producer_batch far_epoch = batch(7, 3, 41, 1);
    CHECK(producer_state_gap_at_handover(&s, &far, since));
    CHECK(!producer_state_gap_at_handover(&s, &edge, since));
    CHECK(!producer_state_gap_at_handover(&s, &far_epoch, since));
    /* the last batch is this leadership's own (at or past since): a real gap */
    CHECK(!producer_state_gap_at_handover(&s, &gap, 110));
    CHECK_EQ(producer_state_record(&s, &next, 120), 0);
    struct producer_batch gap2 = batch(7, 2, 17, 1);
    CHECK_EQ(producer_state_check(&s, &gap2, &dup, NULL), OOO);
    CHECK(!producer_state_gap_at_handover(&s, &gap2, since));
    producer_state_destroy(&s);
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
