/* test_producer_state.c — producer id allocation and reservations, InitProducerId epoch bumps,
 * duplicate / out-of-order / epoch checks, sequence wraparound, expiry, and that state rebuilt
 * by replaying the log's batch headers equals the live state (seeded random workload). */
#include "test.h"

#include "base/crc32c.h"
#include "coord/producer_state.h"
#include "kafka/errors.h"

static struct producer_batch batch(int64_t pid, int16_t epoch, int32_t seq, int32_t n)
{
    struct producer_batch b = {pid, epoch, seq, n, 1000};
    return b;
}

TEST(ids_need_reservation_and_never_repeat_across_restart)
{
    struct producer_ids p;
    producer_ids_init(&p, 0, 3, 86400000);
    int64_t id;
    CHECK_EQ(producer_ids_alloc(&p, &id), AL_EFULL);
    int64_t res = producer_ids_reservation(&p);
    CHECK_EQ(res, 3);
    CHECK_EQ(producer_ids_reserved(&p, res), 0);
    CHECK_EQ(producer_ids_reserved(&p, res), AL_EINVAL);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(producer_ids_alloc(&p, &id), 0);
        CHECK_EQ(id, i);
    }
    CHECK_EQ(producer_ids_alloc(&p, &id), AL_EFULL);
    CHECK_EQ(producer_ids_reserved(&p, producer_ids_reservation(&p)), 0);
    CHECK_EQ(producer_ids_alloc(&p, &id), 0);
    CHECK_EQ(id, 3);
    int64_t persisted = p.block_end; /* 6 */
    producer_ids_destroy(&p);
    /* "restart": ids 4 and 5 were reserved but not used; they are skipped, never reissued */
    producer_ids_init(&p, persisted, 3, 86400000);
    CHECK_EQ(producer_ids_alloc(&p, &id), AL_EFULL);
    CHECK_EQ(producer_ids_reserved(&p, producer_ids_reservation(&p)), 0);
    CHECK_EQ(producer_ids_alloc(&p, &id), 0);
    CHECK_EQ(id, 6);
    producer_ids_destroy(&p);
}

TEST(grants_from_the_controller_replace_the_block_and_only_grow)
{
    struct producer_ids p;
    producer_ids_init(&p, 0, 1000, 86400000); /* cluster mode: nothing of its own */
    int64_t id;
    CHECK_EQ(producer_ids_alloc(&p, &id), AL_EFULL);
    CHECK_EQ(producer_ids_grant(&p, 1, 0), AL_EINVAL);
    CHECK_EQ(producer_ids_grant(&p, 1, 2), 0); /* ids 1, 2 */
    CHECK_EQ(producer_ids_alloc(&p, &id), 0);
    CHECK_EQ(id, 1);
    CHECK_EQ(producer_ids_grant(&p, 1, 5), AL_EINVAL); /* would repeat id 1 */
    CHECK_EQ(producer_ids_alloc(&p, &id), 0);
    CHECK_EQ(id, 2);
    CHECK_EQ(producer_ids_alloc(&p, &id), AL_EFULL);
    /* another node took 3..9: the next grant starts above them */
    CHECK_EQ(producer_ids_grant(&p, 10, 2), 0);
    int16_t epoch, kerr;
    CHECK_EQ(producer_ids_init_producer(&p, -1, -1, 0, &id, &epoch, &kerr), 0);
    CHECK_EQ(id, 10);
    CHECK_EQ(epoch, 0);
    CHECK_EQ(kerr, 0);
    CHECK_EQ(producer_ids_alloc(&p, &id), 0);
    CHECK_EQ(id, 11);
    CHECK_EQ(producer_ids_init_producer(&p, -1, -1, 0, &id, &epoch, &kerr), AL_EFULL);
    CHECK_EQ(producer_ids_grant(&p, INT64_MAX - 1, 2), AL_EINVAL); /* overflows */
    producer_ids_destroy(&p);
}

TEST(init_producer_id_new_bump_and_fence)
{
    struct producer_ids p;
    producer_ids_init(&p, 100, 1000, 1000);
    producer_ids_reserved(&p, producer_ids_reservation(&p));
    int64_t id, id2;
    int16_t ep, err;
    CHECK_EQ(producer_ids_init_producer(&p, -1, -1, 0, &id, &ep, &err), 0);
    CHECK_EQ(err, 0);
    CHECK_EQ(id, 100);
    CHECK_EQ(ep, 0);
    /* KIP-360 bump: same id, epoch + 1 */
    CHECK_EQ(producer_ids_init_producer(&p, id, 0, 10, &id2, &ep, &err), 0);
    CHECK_EQ(err, 0);
    CHECK_EQ(id2, id);
    CHECK_EQ(ep, 1);
    /* a stale epoch is refused */
    CHECK_EQ(producer_ids_init_producer(&p, id, 0, 20, &id2, &ep, &err), 0);
    CHECK_EQ(err, KAFKA_ERR_INVALID_PRODUCER_EPOCH);
    /* half-specified is an invalid request */
    CHECK_EQ(producer_ids_init_producer(&p, id, -1, 20, &id2, &ep, &err), 0);
    CHECK_EQ(err, KAFKA_ERR_INVALID_REQUEST);
    /* an id we do not know: a fresh one */
    CHECK_EQ(producer_ids_init_producer(&p, 5, 3, 20, &id2, &ep, &err), 0);
    CHECK_EQ(err, 0);
    CHECK_EQ(id2, 101);
    CHECK_EQ(ep, 0);
    /* exhausted epoch: a new id */
    int64_t id3;
    CHECK_EQ(producer_ids_init_producer(&p, -1, -1, 20, &id3, &ep, &err), 0);
    for (int i = 0; i < 32766; i++) {
        int64_t same;
        int16_t cur = ep;
        CHECK_EQ(producer_ids_init_producer(&p, id3, cur, 20, &same, &ep, &err), 0);
        CHECK_EQ(err, 0);
        if (cur < 32766) {
            CHECK_EQ(same, id3);
            CHECK_EQ(ep, cur + 1);
        } else {
            CHECK(same != id3);
            CHECK_EQ(ep, 0);
        }
    }
    /* expiry forgets ids unused for expiration_ms */
    CHECK(producer_ids_tick(&p, 10000) >= 3);
    CHECK_EQ(producer_ids_init_producer(&p, id, 1, 10001, &id2, &ep, &err), 0);
    CHECK(id2 != id);
    producer_ids_destroy(&p);
}

TEST(duplicates_in_window_gaps_and_old_duplicates)
{
    struct producer_state s;
    producer_state_init(&s, 1 << 30);
    int64_t off = 0, dup = -1;
    /* 7 batches of 2 records: seqs 0-1, 2-3, ..., 12-13 */
    for (int i = 0; i < 7; i++) {
        struct producer_batch b = batch(7, 0, i * 2, 2);
        CHECK_EQ(producer_state_check(&s, &b, &dup, NULL), PRODUCER_OK);
        CHECK_EQ(producer_state_record(&s, &b, off), 0);
        off += 2;
    }
    /* the last five (seq 4..13) are duplicates answered with their original offsets */
    for (int i = 2; i < 7; i++) {
        struct producer_batch b = batch(7, 0, i * 2, 2);
        int32_t delta = -1;
        CHECK_EQ(producer_state_check(&s, &b, &dup, &delta), PRODUCER_DUPLICATE);
        CHECK_EQ(dup, i * 2);
        CHECK_EQ(delta, 1);
    }
    /* older than the window: out of order, not duplicate */
    struct producer_batch old = batch(7, 0, 0, 2);
    CHECK_EQ(producer_state_check(&s, &old, &dup, NULL), -KAFKA_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER);
    /* same first seq but other length: not a duplicate -> out of order */
    struct producer_batch odd = batch(7, 0, 12, 1);
    CHECK_EQ(producer_state_check(&s, &odd, &dup, NULL), -KAFKA_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER);
    /* gap */
    struct producer_batch gap = batch(7, 0, 15, 1);
    CHECK_EQ(producer_state_check(&s, &gap, &dup, NULL), -KAFKA_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER);
    /* next in order */
    struct producer_batch next = batch(7, 0, 14, 1);
    CHECK_EQ(producer_state_check(&s, &next, &dup, NULL), PRODUCER_OK);
    /* non-idempotent batches are never checked */
    struct producer_batch plain = batch(-1, -1, -1, 5);
    CHECK_EQ(producer_state_check(&s, &plain, &dup, NULL), PRODUCER_OK);
    /* malformed */
    struct producer_batch bad = batch(7, 0, 14, 0);
    CHECK_EQ(producer_state_check(&s, &bad, &dup, NULL), -KAFKA_ERR_INVALID_RECORD);
    producer_state_destroy(&s);
}

TEST(epochs_old_new_and_first_seq_of_new_epoch)
{
    struct producer_state s;
    producer_state_init(&s, 1 << 30);
    int64_t dup;
    struct producer_batch b = batch(9, 3, 0, 4);
    CHECK_EQ(producer_state_record(&s, &b, 100), 0);
    struct producer_batch older = batch(9, 2, 4, 1);
    CHECK_EQ(producer_state_check(&s, &older, &dup, NULL), -KAFKA_ERR_INVALID_PRODUCER_EPOCH);
    /* an old-epoch retry of a batch we have is still fenced (duplicates need the same epoch) */
    struct producer_batch older_dup = batch(9, 2, 0, 4);
    CHECK_EQ(producer_state_check(&s, &older_dup, &dup, NULL), -KAFKA_ERR_INVALID_PRODUCER_EPOCH);
    struct producer_batch newer_bad = batch(9, 4, 4, 1);
    CHECK_EQ(producer_state_check(&s, &newer_bad, &dup, NULL),
             -KAFKA_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER);
    struct producer_batch newer = batch(9, 4, 0, 1);
    CHECK_EQ(producer_state_check(&s, &newer, &dup, NULL), PRODUCER_OK);
    CHECK_EQ(producer_state_record(&s, &newer, 104), 0);
    const struct producer_entry *e = producer_state_find(&s, 9);
    CHECK(e);
    CHECK_EQ(e->epoch, 4);
    CHECK_EQ(e->nbatches, 1); /* the new epoch cleared the old batches */
    /* unknown producer: any sequence accepted (Kafka 3.8), unless strict */
    struct producer_batch unk = batch(55, 0, 42, 1);
    CHECK_EQ(producer_state_check(&s, &unk, &dup, NULL), PRODUCER_OK);
    s.strict_unknown = true;
    CHECK_EQ(producer_state_check(&s, &unk, &dup, NULL), -KAFKA_ERR_UNKNOWN_PRODUCER_ID);
    unk.base_seq = 0;
    CHECK_EQ(producer_state_check(&s, &unk, &dup, NULL), PRODUCER_OK);
    producer_state_destroy(&s);
}

TEST(sequence_wraps_at_int32_max)
{
    CHECK_EQ(producer_seq_add(INT32_MAX, 1), 0);
    CHECK_EQ(producer_seq_add(INT32_MAX - 1, 3), 1);
    CHECK_EQ(producer_seq_add(5, 3), 8);
    struct producer_state s;
    producer_state_init(&s, 1 << 30);
    int64_t dup;
    struct producer_batch a = batch(1, 0, INT32_MAX - 2, 3); /* last seq INT32_MAX */
    CHECK_EQ(producer_state_record(&s, &a, 0), 0);
    struct producer_batch w = batch(1, 0, 0, 2);
    CHECK_EQ(producer_state_check(&s, &w, &dup, NULL), PRODUCER_OK);
    CHECK_EQ(producer_state_record(&s, &w, 3), 0);
    /* a batch spanning the wrap */
    struct producer_batch x = batch(2, 0, INT32_MAX - 1, 4); /* seqs MAX-1, MAX, 0, 1 */
    CHECK_EQ(producer_state_record(&s, &x, 10), 0);
    CHECK_EQ(producer_state_find(&s, 2)->batches[0].last_seq, 1);
    struct producer_batch y = batch(2, 0, 2, 1);
    CHECK_EQ(producer_state_check(&s, &y, &dup, NULL), PRODUCER_OK);
    CHECK_EQ(producer_state_check(&s, &x, &dup, NULL), PRODUCER_DUPLICATE);
    CHECK_EQ(dup, 10);
    producer_state_destroy(&s);
}

TEST(expiry_of_idle_producers)
{
    struct producer_state s;
    producer_state_init(&s, 1000);
    struct producer_batch a = batch(1, 0, 0, 1), b = batch(2, 0, 0, 1);
    a.max_timestamp = 100;
    b.max_timestamp = 900;
    producer_state_record(&s, &a, 0);
    producer_state_record(&s, &b, 1);
    CHECK_EQ(producer_state_tick(&s, 1099), 0);
    CHECK_EQ(producer_state_tick(&s, 1100), 1);
    CHECK(!producer_state_find(&s, 1));
    CHECK(producer_state_find(&s, 2));
    CHECK_EQ(producer_state_tick(&s, 1900), 1);
    CHECK_EQ(producer_state_count(&s), 0);
    producer_state_destroy(&s);
}

static uint64_t rnd(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

static bool entries_equal(const struct producer_entry *a, const struct producer_entry *b)
{
    if (a->epoch != b->epoch || a->nbatches != b->nbatches) return false;
    for (int i = 0; i < a->nbatches; i++)
        if (memcmp(&a->batches[i], &b->batches[i], sizeof(a->batches[i])) != 0) return false;
    return true;
}

/* Random clients (some retrying, some bumping epochs, some sending gaps) against a live state
 * that appends to a "log" of headers; replaying the log must rebuild the same state, and each
 * accepted batch must be exactly the next sequence (a reference model). */
TEST(replay_of_log_equals_live_state)
{
    uint64_t seed = test_seed();
    struct producer_state live;
    producer_state_init(&live, INT64_MAX / 2);
    enum { NPROD = 20, NOPS = 20000 };
    struct {
        int16_t epoch;
        int32_t next_seq;
    } model[NPROD];
    for (int i = 0; i < NPROD; i++) model[i].epoch = 0, model[i].next_seq = 0;
    static struct producer_batch log[NOPS];
    static int64_t log_off[NOPS];
    int nlog = 0;
    int64_t off = 0;
    time_t t0 = time(NULL);
    for (int op = 0; op < NOPS && time(NULL) - t0 < 20; op++) {
        int p = (int)(rnd(&seed) % NPROD);
        int kind = (int)(rnd(&seed) % 10);
        struct producer_batch b = batch(1000 + p, model[p].epoch, model[p].next_seq,
                                        1 + (int32_t)(rnd(&seed) % 4));
        b.max_timestamp = op;
        int64_t dup;
        if (kind == 0) b.epoch = (int16_t)(model[p].epoch + 1), b.base_seq = 0;
        if (kind == 1) b.base_seq = producer_seq_add(b.base_seq, 1 + (int32_t)(rnd(&seed) % 3));
        if (kind == 2 && nlog) { /* retry of a random earlier batch of this producer */
            int j = (int)(rnd(&seed) % (uint64_t)nlog);
            if (log[j].producer_id == b.producer_id) b = log[j];
        }
        int v = producer_state_check(&live, &b, &dup, NULL);
        bool expect_ok = b.epoch > model[p].epoch ? b.base_seq == 0
                         : b.epoch == model[p].epoch && b.base_seq == model[p].next_seq;
        if (v == PRODUCER_DUPLICATE) {
            CHECK(!expect_ok || b.epoch < model[p].epoch);
            bool found = false;
            for (int j = 0; j < nlog; j++)
                if (log_off[j] == dup && log[j].producer_id == b.producer_id &&
                    log[j].base_seq == b.base_seq && log[j].record_count == b.record_count)
                    found = true;
            CHECK(found);
            continue;
        }
        if (!producer_state_find(&live, b.producer_id)) expect_ok = true;
        CHECK_EQ(v == PRODUCER_OK, expect_ok);
        if (v != PRODUCER_OK) continue;
        CHECK_EQ(producer_state_record(&live, &b, off), 0);
        log[nlog] = b;
        log_off[nlog++] = off;
        off += b.record_count;
        model[p].epoch = b.epoch;
        model[p].next_seq = producer_seq_add(b.base_seq, b.record_count);
    }
    struct producer_state rebuilt;
    producer_state_init(&rebuilt, INT64_MAX / 2);
    for (int i = 0; i < nlog; i++)
        CHECK_EQ(producer_state_replay(&rebuilt, &log[i], log_off[i]), 0);
    CHECK_EQ(producer_state_count(&rebuilt), producer_state_count(&live));
    for (int p = 0; p < NPROD; p++) {
        const struct producer_entry *a = producer_state_find(&live, 1000 + p);
        const struct producer_entry *b = producer_state_find(&rebuilt, 1000 + p);
        CHECK_EQ(a != NULL, b != NULL);
        if (a) CHECK(entries_equal(a, b));
    }
    CHECK(nlog > 100);
    /* The clean close's snapshot of the live table decodes to the same table. */
    uint8_t *snap = NULL;
    size_t snap_len = 0;
    CHECK_EQ(producer_state_encode(&live, off, &snap, &snap_len), 0);
    struct producer_state loaded;
    producer_state_init(&loaded, INT64_MAX / 2);
    int64_t end = -1;
    CHECK_EQ(producer_state_decode(&loaded, snap, snap_len, &end), 0);
    CHECK_EQ(end, off);
    CHECK_EQ(producer_state_count(&loaded), producer_state_count(&live));
    for (int p = 0; p < NPROD; p++) {
        const struct producer_entry *a = producer_state_find(&live, 1000 + p);
        const struct producer_entry *b = producer_state_find(&loaded, 1000 + p);
        CHECK_EQ(a != NULL, b != NULL);
        if (a) CHECK(entries_equal(a, b) && a->last_timestamp == b->last_timestamp);
    }
    /* A table remembering a batch at or past the offset it is saved for is refused. */
    uint8_t *none = NULL;
    size_t none_len = 0;
    CHECK_EQ(producer_state_encode(&live, log_off[nlog - 1], &none, &none_len), AL_ERANGE);
    CHECK(none == NULL);
    free(snap);
    producer_state_destroy(&loaded);
    producer_state_destroy(&live);
    producer_state_destroy(&rebuilt);
}

/* Rewrites the snapshot's trailing CRC after a deliberate change (a "valid" bad snapshot). */
static void snap_recrc(uint8_t *b, size_t len)
{
    uint32_t c = crc32c(0, b, len - 4);
    for (int i = 0; i < 4; i++) b[len - 4 + i] = (uint8_t)(c >> (24 - 8 * i));
}

TEST(snapshot_corrupt_or_truncated_is_refused)
{
    struct producer_state s;
    producer_state_init(&s, 1000);
    for (int64_t pid = 1; pid <= 3; pid++)
        for (int32_t seq = 0; seq < 7; seq++) {
            struct producer_batch b = batch(pid, 2, seq * 2, 2);
            CHECK_EQ(producer_state_record(&s, &b, pid * 100 + seq * 2), 0);
        }
    uint8_t *snap = NULL;
    size_t len = 0;
    CHECK_EQ(producer_state_encode(&s, 1000, &snap, &len), 0);
    CHECK_EQ(len, 20 + 3 * (19 + 5 * 28) + 4);
    struct producer_state t;
    producer_state_init(&t, 1000);
    int64_t end = -1;
    /* Every flipped byte fails the CRC (or a field check); every shorter length fails. */
    for (size_t i = 0; i < len; i++) {
        snap[i] ^= 0x40;
        CHECK_EQ(producer_state_decode(&t, snap, len, &end), AL_ECORRUPT);
        CHECK_EQ(producer_state_count(&t), 0);
        snap[i] ^= 0x40;
    }
    for (size_t n = 0; n < len; n++)
        CHECK_EQ(producer_state_decode(&t, snap, n, &end), AL_ECORRUPT);
    /* Bad values under a good CRC: a count past the bytes, a sixth batch, a batch at the end
     * offset, batches out of order. The table is left empty each time. */
    uint8_t *bad = malloc(len);
    static const struct { size_t at; uint8_t v; } pokes[] = {
        {16, 0xff},           /* count */
        {20 + 10, 6},         /* nbatches of the first producer */
        {20 + 19 + 8, 0x03},  /* base offset of its first batch: 0x03xx... >= end */
        {20 + 19 + 28 + 15, 0x00}, /* second batch's base offset below the first's */
        {4 + 3, 2},           /* version */
    };
    for (size_t k = 0; k < sizeof(pokes) / sizeof(pokes[0]); k++) {
        memcpy(bad, snap, len);
        bad[pokes[k].at] = pokes[k].v;
        snap_recrc(bad, len);
        CHECK_EQ(producer_state_decode(&t, bad, len, &end), AL_ECORRUPT);
        CHECK_EQ(producer_state_count(&t), 0);
    }
    /* Random bytes with a valid CRC never crash and never leave a partial table. */
    uint64_t seed = test_seed();
    for (int r = 0; r < 20000; r++) {
        memcpy(bad, snap, len);
        int flips = 1 + (int)(rnd(&seed) % 4);
        for (int f = 0; f < flips; f++) bad[rnd(&seed) % (len - 4)] = (uint8_t)rnd(&seed);
        size_t n = 24 + (size_t)(rnd(&seed) % (len - 23));
        snap_recrc(bad, n);
        int rc = producer_state_decode(&t, bad, n, &end);
        CHECK(rc == 0 || rc == AL_ECORRUPT);
        if (rc) CHECK_EQ(producer_state_count(&t), 0);
        producer_state_clear(&t);
    }
    free(bad);
    /* The intact snapshot still loads. */
    CHECK_EQ(producer_state_decode(&t, snap, len, &end), 0);
    CHECK_EQ(end, 1000);
    CHECK_EQ(producer_state_count(&t), 3);
    const struct producer_entry *e = producer_state_find(&t, 2);
    CHECK(e && e->epoch == 2 && e->nbatches == 5);
    int64_t dup = -1;
    struct producer_batch retry = batch(2, 2, 12, 2);
    CHECK_EQ(producer_state_check(&t, &retry, &dup, NULL), PRODUCER_DUPLICATE);
    CHECK_EQ(dup, 212);
    free(snap);
    producer_state_destroy(&t);
    producer_state_destroy(&s);
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
