/*
 * leaders.c — the leadership table (see leaders.h): open-addressing map group -> (leader,
 * term, isr), the merge rules, and its wire encoding.
 */
#include "cluster/leaders.h"

#include "base/cursor.h"

#include <stdlib.h>

#define LDR_INIT_CAP 64u

static uint64_t ldr_hash(uint64_t g)
{
    g ^= g >> 33;
    g *= 0xff51afd7ed558ccdull;
    g ^= g >> 33;
    return g;
}

int ldr_init(ldr_table *t)
{
    memset(t, 0, sizeof(*t));
    t->slots = calloc(LDR_INIT_CAP, sizeof(*t->slots));
    if (!t->slots) return -ENOMEM;
    t->cap = LDR_INIT_CAP;
    return 0;
}

void ldr_free(ldr_table *t)
{
    free(t->slots);
    memset(t, 0, sizeof(*t));
}

/* The slot of group, or the empty slot where it would go. */
static ldr_entry *ldr_slot(const ldr_table *t, uint64_t group)
{
    uint32_t mask = t->cap - 1;
    uint32_t i = (uint32_t)ldr_hash(group) & mask;
    for (uint32_t probes = 0; probes < t->cap; probes++, i = (i + 1) & mask) {
        ldr_entry *s = &t->slots[i];
        if (s->group == group || s->group == 0) return s;
    }
    AL_PANIC("leaders: table full (cap %u)", t->cap); /* load <= 1/2 is kept by ldr_grow */
}

static int ldr_grow(ldr_table *t)
{
    uint32_t ncap = t->cap * 2;
    if (ncap > LDR_TABLE_MAX) return AL_EFULL;
    ldr_entry *old = t->slots;
    uint32_t ocap = t->cap;
    t->slots = calloc(ncap, sizeof(*t->slots));
    if (!t->slots) {
        t->slots = old;
        return -ENOMEM;
    }
    t->cap = ncap;
    for (uint32_t i = 0; i < ocap; i++)
        if (old[i].group) *ldr_slot(t, old[i].group) = old[i];
    free(old);
    return 0;
}

int ldr_merge(ldr_table *t, const ldr_entry *e)
{
    if (e->group == 0 || e->n_isr > LDR_ISR_MAX) return AL_EINVAL;
    ldr_entry *s = ldr_slot(t, e->group);
    if (s->group == 0) {
        if ((t->n + 1) * 2 > t->cap) {
            int err = ldr_grow(t);
            if (err) return err;
            s = ldr_slot(t, e->group);
        }
        *s = *e;
        t->n++;
        t->version++;
        return 1;
    }
    bool replace = false;
    if (e->term > s->term) {
        replace = true;
    } else if (e->term == s->term) {
        if (s->leader < 0 && e->leader >= 0) replace = true;
        else if (e->leader >= 0 && e->leader == s->leader && e->reporter == e->leader &&
                 (s->reporter != s->leader || s->n_isr != e->n_isr ||
                  memcmp(s->isr, e->isr, sizeof(int32_t) * e->n_isr)))
            replace = true;
    }
    if (!replace) return 0;
    *s = *e;
    t->version++;
    return 1;
}

const ldr_entry *ldr_get(const ldr_table *t, uint64_t group)
{
    if (!t->slots || group == 0) return NULL;
    ldr_entry *s = ldr_slot(t, group);
    return s->group ? s : NULL;
}

int ldr_copy(ldr_table *dst, const ldr_table *src)
{
    ldr_entry *slots = malloc(sizeof(*slots) * src->cap);
    if (!slots) return -ENOMEM;
    memcpy(slots, src->slots, sizeof(*slots) * src->cap);
    free(dst->slots);
    dst->slots = slots;
    dst->cap = src->cap;
    dst->n = src->n;
    dst->version = src->version;
    return 0;
}

enum { LDR_HDR = 4 + 2 + 4 + 4, LDR_FIXED = 8 + 4 + 8 + 1 };

int ldr_encode(const ldr_table *t, int32_t from, bool (*keep)(void *ctx, const ldr_entry *e),
               void *ctx, uint8_t **out, size_t *len)
{
    size_t size = LDR_HDR;
    uint32_t n = 0;
    for (uint32_t i = 0; i < t->cap; i++) {
        const ldr_entry *e = &t->slots[i];
        if (!e->group || (keep && !keep(ctx, e))) continue;
        size += LDR_FIXED + 4u * e->n_isr;
        n++;
    }
    uint8_t *buf = malloc(size);
    if (!buf) return -ENOMEM;
    al_wr wr = al_wr_make(buf, size);
    al_wr_u32(&wr, LDR_WIRE_MAGIC);
    al_wr_u16(&wr, LDR_WIRE_VERSION);
    al_wr_i32(&wr, from);
    al_wr_u32(&wr, n);
    for (uint32_t i = 0; i < t->cap; i++) {
        const ldr_entry *e = &t->slots[i];
        if (!e->group || (keep && !keep(ctx, e))) continue;
        al_wr_u64(&wr, e->group);
        al_wr_i32(&wr, e->leader);
        al_wr_i64(&wr, e->term);
        al_wr_u8(&wr, e->n_isr);
        for (uint8_t k = 0; k < e->n_isr; k++) al_wr_i32(&wr, e->isr[k]);
    }
    AL_ASSERT(wr.err == 0 && wr.p == buf + size);
    *out = buf;
    *len = size;
    return (int)n;
}

/* Reads one entry; the reader's sticky error reports a bad one. */
static void ldr_read_entry(al_rd *rd, int32_t from, ldr_entry *e)
{
    memset(e, 0, sizeof(*e));
    e->group = al_rd_u64(rd);
    e->leader = al_rd_i32(rd);
    e->term = al_rd_i64(rd);
    e->reporter = from;
    e->n_isr = al_rd_u8(rd);
    if (e->n_isr > LDR_ISR_MAX || (!rd->err && e->group == 0) || e->leader < -1 ||
        e->term < 0) {
        al_rd_fail(rd, AL_EMALFORMED);
        return;
    }
    for (uint8_t k = 0; k < e->n_isr; k++) e->isr[k] = al_rd_i32(rd);
}

int ldr_decode(const uint8_t *buf, size_t len,
               void (*fn)(void *ctx, int32_t from, const ldr_entry *e), void *ctx)
{
    al_rd rd = al_rd_make(buf, len);
    uint32_t magic = al_rd_u32(&rd);
    uint16_t ver = al_rd_u16(&rd);
    int32_t from = al_rd_i32(&rd);
    uint32_t n = al_rd_u32(&rd);
    if (rd.err) return rd.err;
    if (magic != LDR_WIRE_MAGIC || ver != LDR_WIRE_VERSION || from < 0 ||
        n > len / LDR_FIXED)
        return AL_EMALFORMED;
    /* Check the whole message before calling anyone. */
    ldr_entry e;
    for (uint32_t i = 0; i < n && !rd.err; i++) ldr_read_entry(&rd, from, &e);
    if (rd.err) return rd.err;
    if (al_rd_left(&rd)) return AL_EMALFORMED;
    rd = al_rd_make(buf + LDR_HDR, len - LDR_HDR);
    for (uint32_t i = 0; i < n; i++) {
        ldr_read_entry(&rd, from, &e);
        fn(ctx, from, &e);
    }
    return (int)n;
}
