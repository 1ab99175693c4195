/*
 * offset_translator.c — Raft offset <-> Kafka offset translation (see offset_translator.h).
 * Lookups are binary searches over the gap entries.
 */
#include "raft/offset_translator.h"

#include <stdlib.h>
#include <string.h>

#include "storage/batch.h"

void otx_init(otx *t, int64_t start, int64_t base_delta)
{
    memset(t, 0, sizeof(*t));
    t->start = start;
    t->base_delta = base_delta;
}

void otx_free(otx *t)
{
    free(t->e);
    memset(t, 0, sizeof(*t));
}

bool otx_is_gap(int16_t attributes, int64_t producer_id)
{
    return (attributes & STORAGE_ATTR_CONTROL) && !(attributes & STORAGE_ATTR_TRANSACTIONAL) &&
           producer_id == -1;
}

int otx_add_gap(otx *t, int64_t base, int64_t last)
{
    if (base < t->start || last < base || (t->n && base <= t->e[t->n - 1].last))
        return AL_ERANGE;
    if (t->n == t->cap) {
        uint32_t cap = t->cap ? t->cap * 2 : 8;
        otx_entry *e = realloc(t->e, sizeof(*e) * cap);
        if (!e) return -ENOMEM;
        t->e = e;
        t->cap = cap;
    }
    int64_t before = t->n ? t->e[t->n - 1].cum : t->base_delta;
    t->e[t->n++] = (otx_entry){.last = last, .cum = before + (last - base + 1)};
    return 0;
}

/* Entries whose last offset is below x. */
static uint32_t count_below(const otx *t, int64_t x)
{
    uint32_t lo = 0, hi = t->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (t->e[mid].last < x) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

void otx_truncate_suffix(otx *t, int64_t from)
{
    /* a gap batch is whole on either side of a batch boundary: last >= from means base >=
     * from, except for a cut inside it, which also removes it */
    t->n = count_below(t, from);
}

void otx_truncate_prefix(otx *t, int64_t start)
{
    if (start <= t->start) return;
    uint32_t k = count_below(t, start);
    if (k) {
        t->base_delta = t->e[k - 1].cum;
        memmove(&t->e[0], &t->e[k], sizeof(t->e[0]) * (t->n - k));
        t->n -= k;
    }
    t->start = start;
}

void otx_reset(otx *t, int64_t start, int64_t base_delta)
{
    t->n = 0;
    t->start = start;
    t->base_delta = base_delta;
}

int64_t otx_delta(const otx *t, int64_t x)
{
    uint32_t k = count_below(t, x);
    return k ? t->e[k - 1].cum : t->base_delta;
}

int64_t otx_to_raft(const otx *t, int64_t k)
{
    /* after entry i, the next Raft offset e[i].last + 1 has Kafka offset e[i].last + 1 -
     * e[i].cum (non-decreasing in i): take the last entry whose value is <= k */
    uint32_t lo = 0, hi = t->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (t->e[mid].last + 1 - t->e[mid].cum <= k) lo = mid + 1;
        else hi = mid;
    }
    return k + (lo ? t->e[lo - 1].cum : t->base_delta);
}
