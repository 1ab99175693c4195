/*
 * codec.c — the decode arena and the test-filler primitives behind the generated Kafka codec
 * (see codec.h).
 */
#include "kafka/codec.h"

#include <stdlib.h>

#define KAFKA_ARENA_ALIGN 16
#define KAFKA_ARENA_BLOCK_MIN (16 * 1024)

struct kafka_arena_block {
    struct kafka_arena_block *next;
    size_t cap;  /* bytes in data[] */
    size_t used; /* bytes of data[] handed out */
    _Alignas(KAFKA_ARENA_ALIGN) uint8_t data[];
};

void kafka_arena_init(kafka_arena *a, size_t limit)
{
    a->head = NULL;
    a->cur = NULL;
    a->used = 0;
    a->limit = limit;
}

/* Returns a block (the current one, a kept one after it, or a new one) with room for n bytes,
 * or NULL when malloc fails. Walks at most the blocks already in the list. */
static struct kafka_arena_block *kafka_arena_block_for(kafka_arena *a, size_t n)
{
    struct kafka_arena_block *b = a->cur;
    if (b && b->cap - b->used >= n) return b;
    /* Reuse kept blocks after cur (emptied by a reset). */
    while (b && b->next) {
        b = b->next;
        b->used = 0;
        a->cur = b;
        if (b->cap >= n) return b;
    }
    size_t prev = b ? b->cap : 0;
    size_t grow = AL_MIN(prev * 2, (size_t)1 << 20);
    size_t cap = AL_MAX(AL_MAX(n, (size_t)KAFKA_ARENA_BLOCK_MIN), grow);
    struct kafka_arena_block *nb = malloc(sizeof(*nb) + cap);
    if (!nb) return NULL;
    nb->next = NULL;
    nb->cap = cap;
    nb->used = 0;
    if (b) b->next = nb;
    else a->head = nb;
    a->cur = nb;
    return nb;
}

void *kafka_arena_alloc(kafka_arena *a, size_t n)
{
    if (!a) return NULL; /* decoding arrays without an arena: AL_ETOOLARGE, not a crash */
    size_t need = AL_ALIGN_UP(n ? n : 1, (size_t)KAFKA_ARENA_ALIGN);
    if (need < n || need > a->limit - AL_MIN(a->used, a->limit)) return NULL;
    struct kafka_arena_block *b = kafka_arena_block_for(a, need);
    if (!b) return NULL;
    void *p = b->data + b->used;
    b->used += need;
    a->used += need;
    return p;
}

void kafka_arena_reset(kafka_arena *a)
{
    if (a->head) a->head->used = 0;
    a->cur = a->head;
    a->used = 0;
}

void kafka_arena_free(kafka_arena *a)
{
    struct kafka_arena_block *b = a->head;
    while (b) {
        struct kafka_arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
    a->cur = NULL;
    a->used = 0;
}

/* --- test filler primitives --- */

uint64_t kafka_fill_u64(kafka_filler *f)
{
    /* splitmix64 */
    uint64_t z = (f->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void *kafka_fill_alloc(kafka_filler *f, int32_t n, size_t size)
{
    AL_ASSERT(n >= 0);
    void *p = kafka_arena_alloc(f->arena, (size_t)n * size);
    AL_ASSERT(p != NULL);
    memset(p, 0, (size_t)n * size);
    return p;
}

void kafka_fill_str(kafka_filler *f, kafka_str *s, bool nullable)
{
    uint64_t r = kafka_fill_u64(f);
    if (nullable && f->nulls && r % 5 == 0) {
        s->ptr = NULL;
        s->len = -1;
        return;
    }
    int32_t len = 1 + (int32_t)((r >> 8) % 12);
    char *p = kafka_fill_alloc(f, len, 1);
    for (int32_t i = 0; i < len; i++) p[i] = (char)('a' + (kafka_fill_u64(f) % 26));
    s->ptr = p;
    s->len = len;
}

void kafka_fill_bytes(kafka_filler *f, kafka_bytes *b, bool nullable)
{
    uint64_t r = kafka_fill_u64(f);
    if (nullable && f->nulls && r % 5 == 0) {
        b->ptr = NULL;
        b->len = -1;
        return;
    }
    int32_t len = 1 + (int32_t)((r >> 8) % 24);
    uint8_t *p = kafka_fill_alloc(f, len, 1);
    for (int32_t i = 0; i < len; i++) p[i] = (uint8_t)kafka_fill_u64(f);
    b->ptr = p;
    b->len = len;
}

void kafka_fill_uuid(kafka_filler *f, kafka_uuid *u)
{
    uint64_t a = kafka_fill_u64(f), b = kafka_fill_u64(f) | 1; /* never all zero */
    memcpy(u->b, &a, 8);
    memcpy(u->b + 8, &b, 8);
}

int32_t kafka_fill_count(kafka_filler *f, bool nullable)
{
    uint64_t r = kafka_fill_u64(f);
    if (nullable && f->nulls && r % 5 == 0) return -1;
    int max = f->max_count > 0 ? f->max_count : 1;
    return 1 + (int32_t)((r >> 8) % (uint64_t)max);
}
