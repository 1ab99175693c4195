/* producer_state.c — producer ids, InitProducerId and per-partition idempotence state
 * (contracts in producer_state.h). */
#include "coord/producer_state.h"

#include <stdlib.h>

#include "base/crc32c.h"
#include "base/cursor.h"
#include "kafka/errors.h"

#define PRODUCER_EPOCH_EXHAUSTED 32766 /* Short.MaxValue - 1: bumping further needs a new id */

struct issued_id {
    struct coord_hnode node;
    int64_t id;
    int16_t epoch;
    int64_t last_used_ms;
};

void producer_ids_init(struct producer_ids *p, int64_t persisted_block_end, int64_t block_size,
                       int64_t expiration_ms)
{
    AL_ASSERT(block_size > 0 && persisted_block_end >= 0);
    memset(p, 0, sizeof(*p));
    p->next_id = persisted_block_end;
    p->block_end = persisted_block_end;
    p->block_size = block_size;
    p->expiration_ms = expiration_ms;
}

void producer_ids_destroy(struct producer_ids *p)
{
    size_t b;
    struct coord_hnode *n = coord_hmap_first(&p->issued, &b);
    while (n) {
        struct coord_hnode *next = coord_hmap_next(&p->issued, n, &b);
        free(AL_CONTAINER_OF(n, struct issued_id, node));
        n = next;
    }
    coord_hmap_free(&p->issued);
}

int producer_ids_alloc(struct producer_ids *p, int64_t *id)
{
    AL_ASSERT(p->next_id <= p->block_end);
    if (p->next_id == p->block_end) return AL_EFULL;
    *id = p->next_id++;
    return 0;
}

int64_t producer_ids_reservation(const struct producer_ids *p)
{
    AL_ASSERT(p->block_end <= INT64_MAX - p->block_size);
    return p->block_end + p->block_size;
}

int producer_ids_reserved(struct producer_ids *p, int64_t block_end)
{
    if (block_end <= p->block_end) return AL_EINVAL;
    p->block_end = block_end;
    return 0;
}

int producer_ids_grant(struct producer_ids *p, int64_t first, int64_t count)
{
    if (count < 1 || first < p->next_id || first > INT64_MAX - count) return AL_EINVAL;
    p->next_id = first;
    p->block_end = first + count;
    return 0;
}

static struct issued_id *issued_find(const struct producer_ids *p, int64_t id)
{
    uint64_t h = coord_hash_u64((uint64_t)id);
    for (struct coord_hnode *n = coord_hmap_bucket(&p->issued, h); n; n = n->next) {
        struct issued_id *e = AL_CONTAINER_OF(n, struct issued_id, node);
        if (n->hash == h && e->id == id) return e;
    }
    return NULL;
}

/* Allocates a new id and remembers it with epoch 0. */
static int issue_new(struct producer_ids *p, int64_t now_ms, int64_t *out_id, int16_t *out_epoch)
{
    struct issued_id *e = calloc(1, sizeof(*e));
    if (!e) return -ENOMEM;
    int64_t id;
    int rc = producer_ids_alloc(p, &id);
    if (rc < 0) goto err;
    e->id = id;
    e->epoch = 0;
    e->last_used_ms = now_ms;
    rc = coord_hmap_insert(&p->issued, &e->node, coord_hash_u64((uint64_t)id));
    if (rc < 0) goto err; /* the id is burnt, which is harmless: ids only need to be unique */
    *out_id = id;
    *out_epoch = 0;
    return 0;
err:
    free(e);
    return rc;
}

int producer_ids_init_producer(struct producer_ids *p, int64_t cur_id, int16_t cur_epoch,
                               int64_t now_ms, int64_t *out_id, int16_t *out_epoch,
                               int16_t *kafka_err)
{
    *kafka_err = KAFKA_ERR_NONE;
    *out_id = PRODUCER_NO_ID;
    *out_epoch = PRODUCER_NO_EPOCH;
    if ((cur_id == PRODUCER_NO_ID) != (cur_epoch == PRODUCER_NO_EPOCH)) {
        *kafka_err = KAFKA_ERR_INVALID_REQUEST;
        return 0;
    }
    if (cur_id == PRODUCER_NO_ID) return issue_new(p, now_ms, out_id, out_epoch);
    struct issued_id *e = issued_find(p, cur_id);
    if (!e) return issue_new(p, now_ms, out_id, out_epoch);
    if (e->epoch != cur_epoch) {
        *kafka_err = KAFKA_ERR_INVALID_PRODUCER_EPOCH;
        return 0;
    }
    if (e->epoch >= PRODUCER_EPOCH_EXHAUSTED) {
        int rc = issue_new(p, now_ms, out_id, out_epoch);
        if (rc < 0) return rc;
        coord_hmap_remove(&p->issued, &e->node);
        free(e);
        return 0;
    }
    e->epoch++;
    e->last_used_ms = now_ms;
    *out_id = e->id;
    *out_epoch = e->epoch;
    return 0;
}

int producer_ids_tick(struct producer_ids *p, int64_t now_ms)
{
    int removed = 0;
    size_t b;
    struct coord_hnode *n = coord_hmap_first(&p->issued, &b);
    while (n) {
        struct coord_hnode *next = coord_hmap_next(&p->issued, n, &b);
        struct issued_id *e = AL_CONTAINER_OF(n, struct issued_id, node);
        if (now_ms - e->last_used_ms >= p->expiration_ms) {
            coord_hmap_remove(&p->issued, n);
            free(e);
            removed++;
        }
        n = next;
    }
    return removed;
}

/* ---- per-partition state ---- */

void producer_state_init(struct producer_state *s, int64_t expiration_ms)
{
    memset(s, 0, sizeof(*s));
    s->expiration_ms = expiration_ms;
}

void producer_state_clear(struct producer_state *s)
{
    size_t b;
    struct coord_hnode *n = coord_hmap_first(&s->producers, &b);
    while (n) {
        struct coord_hnode *next = coord_hmap_next(&s->producers, n, &b);
        coord_hmap_remove(&s->producers, n);
        free(AL_CONTAINER_OF(n, struct producer_entry, node));
        n = next;
    }
}

void producer_state_destroy(struct producer_state *s)
{
    producer_state_clear(s);
    coord_hmap_free(&s->producers);
}

int32_t producer_seq_add(int32_t seq, int32_t n)
{
    AL_ASSERT(seq >= 0 && n >= 0);
    if (seq > INT32_MAX - n) return n - (INT32_MAX - seq) - 1;
    return seq + n;
}

const struct producer_entry *producer_state_find(const struct producer_state *s, int64_t pid)
{
    uint64_t h = coord_hash_u64((uint64_t)pid);
    for (struct coord_hnode *n = coord_hmap_bucket(&s->producers, h); n; n = n->next) {
        struct producer_entry *e = AL_CONTAINER_OF(n, struct producer_entry, node);
        if (n->hash == h && e->producer_id == pid) return e;
    }
    return NULL;
}

static bool seq_follows(int32_t last_seq, int32_t next_seq)
{
    return (int64_t)next_seq == (int64_t)last_seq + 1 || (next_seq == 0 && last_seq == INT32_MAX);
}

int producer_state_check(const struct producer_state *s, const struct producer_batch *b,
                         int64_t *dup_base_offset, int32_t *dup_last_delta)
{
    if (b->producer_id < 0) return PRODUCER_OK;
    if (b->record_count < 1 || b->base_seq < 0 || b->epoch < 0)
        return -KAFKA_ERR_INVALID_RECORD;
    int32_t last_seq = producer_seq_add(b->base_seq, b->record_count - 1);
    const struct producer_entry *e = producer_state_find(s, b->producer_id);
    if (!e || e->epoch == PRODUCER_NO_EPOCH) {
        if (s->strict_unknown && b->base_seq != 0) return -KAFKA_ERR_UNKNOWN_PRODUCER_ID;
        return PRODUCER_OK;
    }
    /* duplicates first, as Kafka's analyzeAndValidateProducerState does */
    if (b->epoch == e->epoch) {
        for (int i = 0; i < e->nbatches; i++) {
            const struct producer_batch_meta *m = &e->batches[i];
            if (m->first_seq == b->base_seq && m->last_seq == last_seq) {
                *dup_base_offset = m->base_offset;
                if (dup_last_delta) *dup_last_delta = m->last_offset_delta;
                return PRODUCER_DUPLICATE;
            }
        }
    }
    if (b->epoch < e->epoch) return -KAFKA_ERR_INVALID_PRODUCER_EPOCH;
    if (b->epoch > e->epoch) {
        if (b->base_seq != 0) return -KAFKA_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER;
        return PRODUCER_OK;
    }
    if (e->nbatches == 0) return PRODUCER_OK; /* epoch known, batches gone: accept */
    if (!seq_follows(e->batches[e->nbatches - 1].last_seq, b->base_seq))
        return -KAFKA_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER;
    return PRODUCER_OK;
}

int producer_state_record(struct producer_state *s, const struct producer_batch *b,
                          int64_t base_offset)
{
    if (b->producer_id < 0) return 0;
    AL_ASSERT(b->record_count >= 1 && b->base_seq >= 0);
    struct producer_entry *e = (struct producer_entry *)producer_state_find(s, b->producer_id);
    if (!e) {
        e = calloc(1, sizeof(*e));
        if (!e) return -ENOMEM;
        e->producer_id = b->producer_id;
        e->epoch = PRODUCER_NO_EPOCH;
        uint64_t h = coord_hash_u64((uint64_t)b->producer_id);
        int rc = coord_hmap_insert(&s->producers, &e->node, h);
        if (rc < 0) {
            free(e);
            return rc;
        }
    }
    if (e->epoch != b->epoch) {
        e->epoch = b->epoch;
        e->nbatches = 0;
    }
    if (e->nbatches == PRODUCER_MAX_BATCHES) {
        memmove(&e->batches[0], &e->batches[1], sizeof(e->batches[0]) * (PRODUCER_MAX_BATCHES - 1));
        e->nbatches--;
    }
    struct producer_batch_meta *m = &e->batches[e->nbatches++];
    m->first_seq = b->base_seq;
    m->last_seq = producer_seq_add(b->base_seq, b->record_count - 1);
    m->base_offset = base_offset;
    m->last_offset_delta = b->record_count - 1;
    m->timestamp = b->max_timestamp;
    e->last_timestamp = b->max_timestamp;
    return 0;
}

int producer_state_tick(struct producer_state *s, int64_t now_ms)
{
    int removed = 0;
    size_t bk;
    struct coord_hnode *n = coord_hmap_first(&s->producers, &bk);
    while (n) {
        struct coord_hnode *next = coord_hmap_next(&s->producers, n, &bk);
        struct producer_entry *e = AL_CONTAINER_OF(n, struct producer_entry, node);
        if (now_ms - e->last_timestamp >= s->expiration_ms) {
            coord_hmap_remove(&s->producers, n);
            free(e);
            removed++;
        }
        n = next;
    }
    return removed;
}

/* ---- snapshot ---- */

#define SNAP_MAGIC   0x414c5053u /* "ALPS" */
#define SNAP_VERSION 1u
#define SNAP_HEAD    20 /* magic, version, end offset, count */
#define SNAP_ENTRY   19 /* id, epoch, nbatches, last timestamp */
#define SNAP_BATCH   28

int producer_state_encode(const struct producer_state *s, int64_t end_offset, uint8_t **out,
                          size_t *len)
{
    size_t n = SNAP_HEAD + 4, bk;
    for (struct coord_hnode *h = coord_hmap_first(&s->producers, &bk); h;
         h = coord_hmap_next(&s->producers, h, &bk)) {
        const struct producer_entry *e = AL_CONTAINER_OF(h, struct producer_entry, node);
        n += SNAP_ENTRY + (size_t)e->nbatches * SNAP_BATCH;
        for (int i = 0; i < e->nbatches; i++)
            if (e->batches[i].base_offset >= end_offset) return AL_ERANGE;
    }
    uint8_t *b = malloc(n);
    if (!b) return -ENOMEM;
    al_wr wr = al_wr_make(b, n);
    al_wr_u32(&wr, SNAP_MAGIC);
    al_wr_u32(&wr, SNAP_VERSION);
    al_wr_i64(&wr, end_offset);
    al_wr_u32(&wr, (uint32_t)s->producers.count);
    for (struct coord_hnode *h = coord_hmap_first(&s->producers, &bk); h;
         h = coord_hmap_next(&s->producers, h, &bk)) {
        const struct producer_entry *e = AL_CONTAINER_OF(h, struct producer_entry, node);
        al_wr_i64(&wr, e->producer_id);
        al_wr_u16(&wr, (uint16_t)e->epoch);
        al_wr_u8(&wr, e->nbatches);
        al_wr_i64(&wr, e->last_timestamp);
        for (int i = 0; i < e->nbatches; i++) {
            const struct producer_batch_meta *m = &e->batches[i];
            al_wr_u32(&wr, (uint32_t)m->first_seq);
            al_wr_u32(&wr, (uint32_t)m->last_seq);
            al_wr_i64(&wr, m->base_offset);
            al_wr_u32(&wr, (uint32_t)m->last_offset_delta);
            al_wr_i64(&wr, m->timestamp);
        }
    }
    al_wr_u32(&wr, crc32c(0, b, n - 4));
    AL_ASSERT(!wr.err && wr.p == wr.end);
    *out = b;
    *len = n;
    return 0;
}

int producer_state_decode(struct producer_state *s, const uint8_t *b, size_t len,
                          int64_t *end_offset)
{
    AL_ASSERT(s->producers.count == 0);
    if (len < SNAP_HEAD + 4 || crc32c(0, b, len - 4) != al_be32(b + len - 4)) return AL_ECORRUPT;
    al_rd rd = al_rd_make(b, len - 4);
    uint32_t magic = al_rd_u32(&rd), ver = al_rd_u32(&rd);
    int64_t end = al_rd_i64(&rd);
    uint32_t count = al_rd_u32(&rd);
    if (magic != SNAP_MAGIC || ver != SNAP_VERSION || end < 0 ||
        count > al_rd_left(&rd) / SNAP_ENTRY)
        return AL_ECORRUPT;
    int rc = 0;
    for (uint32_t k = 0; k < count && rc == 0; k++) {
        int64_t pid = al_rd_i64(&rd);
        int16_t epoch = al_rd_i16(&rd);
        uint8_t nb = al_rd_u8(&rd);
        int64_t last_ts = al_rd_i64(&rd);
        if (rd.err || pid < 0 || epoch < PRODUCER_NO_EPOCH || nb > PRODUCER_MAX_BATCHES ||
            producer_state_find(s, pid)) {
            rc = AL_ECORRUPT;
            break;
        }
        struct producer_entry *e = calloc(1, sizeof(*e));
        if (!e) {
            rc = -ENOMEM;
            break;
        }
        e->producer_id = pid;
        e->epoch = epoch;
        e->last_timestamp = last_ts;
        for (int i = 0; i < nb; i++) {
            struct producer_batch_meta *m = &e->batches[i];
            m->first_seq = al_rd_i32(&rd);
            m->last_seq = al_rd_i32(&rd);
            m->base_offset = al_rd_i64(&rd);
            m->last_offset_delta = al_rd_i32(&rd);
            m->timestamp = al_rd_i64(&rd);
            /* Batches of one producer lie in the log oldest first, below the end. */
            if (m->first_seq < 0 || m->last_seq < 0 || m->last_offset_delta < 0 ||
                m->base_offset < 0 || m->base_offset >= end ||
                m->last_offset_delta > end - 1 - m->base_offset ||
                (i && m->base_offset <= e->batches[i - 1].base_offset))
                rc = AL_ECORRUPT;
        }
        e->nbatches = nb;
        if (rd.err) rc = AL_ECORRUPT;
        if (rc == 0) rc = coord_hmap_insert(&s->producers, &e->node, coord_hash_u64((uint64_t)pid));
        if (rc) free(e);
    }
    if (rc == 0 && (rd.err || al_rd_left(&rd) != 0)) rc = AL_ECORRUPT;
    if (rc) {
        producer_state_clear(s);
        return rc;
    }
    *end_offset = end;
    return 0;
}

/* ---- refusal fences ---- */

uint64_t producer_fence_key(const uint8_t topic_id[16], int32_t partition)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (int i = 0; i < 16; i++) h = (h ^ topic_id[i]) * 1099511628211ULL;
    for (int i = 0; i < 4; i++)
        h = (h ^ (uint8_t)((uint32_t)partition >> (8 * i))) * 1099511628211ULL;
    return h ? h : 1;
}

static struct producer_fence *fence_find(const struct producer_fences *t, uint64_t part,
                                         int64_t producer_id)
{
    if (t->used == 0) return NULL; /* no fence anywhere: an append costs one load */
    for (int i = 0; i < PRODUCER_FENCES; i++) {
        const struct producer_fence *f = &t->f[i];
        if (f->part == part && f->producer_id == producer_id) return (struct producer_fence *)f;
    }
    return NULL;
}

void producer_fences_refused(struct producer_fences *t, uint64_t part,
                             const struct producer_batch *b, int16_t err, int64_t now_ms)
{
    if (b->producer_id < 0 || b->base_seq < 0 || err <= 0 || part == 0) return;
    struct producer_fence *f = fence_find(t, part, b->producer_id);
    if (f && f->until_ms > now_ms && f->epoch == b->epoch && f->seq <= b->base_seq) {
        f->err = err; /* the earlier refusal still marks the gap's start */
        f->until_ms = now_ms + PRODUCER_FENCE_MS;
        return;
    }
    if (!f) { /* a free or expired slot, else the one expiring first */
        f = &t->f[0];
        for (int i = 0; i < PRODUCER_FENCES; i++) {
            struct producer_fence *c = &t->f[i];
            if (c->part == 0 || c->until_ms <= now_ms) {
                f = c;
                break;
            }
            if (c->until_ms < f->until_ms) f = c;
        }
    }
    if (f->part == 0) t->used++;
    *f = (struct producer_fence){part, b->producer_id, b->epoch, err, b->base_seq,
                                 now_ms + PRODUCER_FENCE_MS};
}

int16_t producer_fences_gap(const struct producer_fences *t, uint64_t part,
                            const struct producer_state *s, const struct producer_batch *b,
                            int64_t now_ms)
{
    if (b->producer_id < 0) return 0;
    const struct producer_fence *f = fence_find(t, part, b->producer_id);
    if (!f || f->until_ms <= now_ms || f->epoch != b->epoch) return 0;
    const struct producer_entry *e = producer_state_find(s, b->producer_id);
    int64_t expected = 0; /* a newer epoch starts at sequence 0 */
    if (e && e->epoch == b->epoch && e->nbatches > 0)
        expected = (int64_t)e->batches[e->nbatches - 1].last_seq + 1;
    if (expected <= f->seq && f->seq < b->base_seq) return f->err;
    return 0;
}

bool producer_state_gap_at_handover(const struct producer_state *s,
                                    const struct producer_batch *b, int64_t since)
{
    if (b->producer_id < 0 || b->base_seq < 0) return false;
    const struct producer_entry *e = producer_state_find(s, b->producer_id);
    if (!e || e->nbatches == 0 || e->batches[e->nbatches - 1].base_offset >= since) return false;
    /* the gap's length in records: what a client can have had in flight is at most
     * PRODUCER_MAX_BATCHES - 1 batches ahead of b, of about the sizes it has been sending */
    int64_t gap;
    if (b->epoch > e->epoch)
        gap = b->base_seq; /* the new epoch's first batches, from sequence 0 */
    else if (b->epoch == e->epoch)
        gap = (int64_t)b->base_seq - ((int64_t)e->batches[e->nbatches - 1].last_seq + 1);
    else
        return false;
    int64_t most = b->record_count;
    for (int i = 0; i < e->nbatches; i++) {
        const struct producer_batch_meta *m = &e->batches[i];
        most = AL_MAX(most, (int64_t)m->last_offset_delta + 1);
    }
    return gap > 0 && gap <= (PRODUCER_MAX_BATCHES - 1) * most;
}

void producer_fences_clear(struct producer_fences *t, uint64_t part, int64_t producer_id)
{
    struct producer_fence *f = fence_find(t, part, producer_id);
    if (f) {
        memset(f, 0, sizeof(*f));
        t->used--;
    }
}
