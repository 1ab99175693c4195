/*
 * cache.c — the per-shard batch cache: a chained hash table keyed by (log id, base offset) and an
 * intrusive LRU list, bounded by bytes. See cache.h.
 *
 * Entries are reference counted (atomic): the cache's own link is one reference, every
 * storage_cache_get_ref another. Removing an entry (eviction, replacement, drop, destroy)
 * unlinks it and drops the cache's reference; whoever drops the last one frees it, on any
 * thread. So a batch a Fetch response is sending from stays valid whatever the cache does.
 */
#include "storage/cache.h"

#include <stdlib.h>

typedef struct centry {
    struct centry *hnext;         /* hash chain */
    struct centry *prev, *next;   /* LRU list: head = most recent */
    uint64_t log_id;
    int64_t base, last;
    size_t len;
    uint32_t refs;                /* atomic: 1 for the cache's link + one per holder */
    uint8_t data[];
} centry;

struct storage_cache {
    centry **buckets;
    size_t nbuckets; /* power of two */
    centry *head, *tail;
    size_t bytes, max_bytes, entries;
    uint64_t hits, misses;
};

static size_t cache_hash(uint64_t log_id, int64_t base, size_t n)
{
    uint64_t h = log_id * 0x9E3779B97F4A7C15ull ^ (uint64_t)base * 0xC2B2AE3D27D4EB4Full;
    h ^= h >> 29;
    return (size_t)(h & (n - 1));
}

storage_cache *storage_cache_create(size_t max_bytes)
{
    storage_cache *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    c->nbuckets = 1024;
    c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
    if (!c->buckets) {
        free(c);
        return NULL;
    }
    c->max_bytes = max_bytes;
    return c;
}

static void lru_unlink(storage_cache *c, centry *e)
{
    if (e->prev) e->prev->next = e->next;
    else c->head = e->next;
    if (e->next) e->next->prev = e->prev;
    else c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_head(storage_cache *c, centry *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head) c->head->prev = e;
    c->head = e;
    if (!c->tail) c->tail = e;
}

void storage_cache_unref(storage_cache_ref *ref)
{
    if (!ref) return;
    centry *e = (centry *)ref;
    if (__atomic_sub_fetch(&e->refs, 1, __ATOMIC_ACQ_REL) == 0) free(e);
}

/* Unlinks e from its hash chain and the LRU list and drops the cache's reference (freeing it
 * unless a holder still has one). */
static void cache_remove(storage_cache *c, centry *e)
{
    centry **pp = &c->buckets[cache_hash(e->log_id, e->base, c->nbuckets)];
    while (*pp && *pp != e) pp = &(*pp)->hnext;
    AL_ASSERT(*pp == e);
    *pp = e->hnext;
    lru_unlink(c, e);
    c->bytes -= e->len;
    c->entries--;
    storage_cache_unref((storage_cache_ref *)e);
}

void storage_cache_destroy(storage_cache *c)
{
    if (!c) return;
    while (c->head) cache_remove(c, c->head);
    free(c->buckets);
    free(c);
}

/* Doubles the bucket array when the load passes 1 (best effort: stays as is on ENOMEM). */
static void cache_grow(storage_cache *c)
{
    if (c->entries < c->nbuckets || c->nbuckets >= ((size_t)1 << 24)) return;
    size_t n = c->nbuckets * 2;
    centry **nb = calloc(n, sizeof(*nb));
    if (!nb) return;
    for (size_t i = 0; i < c->nbuckets; i++) {
        centry *e = c->buckets[i];
        while (e) {
            centry *next = e->hnext;
            size_t h = cache_hash(e->log_id, e->base, n);
            e->hnext = nb[h];
            nb[h] = e;
            e = next;
        }
    }
    free(c->buckets);
    c->buckets = nb;
    c->nbuckets = n;
}

static centry *cache_find(storage_cache *c, uint64_t log_id, int64_t base)
{
    centry *e = c->buckets[cache_hash(log_id, base, c->nbuckets)];
    while (e && !(e->log_id == log_id && e->base == base)) e = e->hnext;
    return e;
}

int storage_cache_put(storage_cache *c, uint64_t log_id, int64_t base, int64_t last,
                      const void *batch, size_t len)
{
    if (len > c->max_bytes / 4) return 0;
    centry *old = cache_find(c, log_id, base);
    if (old) cache_remove(c, old);
    centry *e = malloc(sizeof(*e) + len);
    if (!e) return -ENOMEM;
    e->log_id = log_id;
    e->base = base;
    e->last = last;
    e->len = len;
    e->refs = 1;
    memcpy(e->data, batch, len);
    for (int guard = 0; c->bytes + len > c->max_bytes && c->tail; guard++) {
        AL_ASSERT(guard < 100000000);
        cache_remove(c, c->tail);
    }
    size_t h = cache_hash(log_id, base, c->nbuckets);
    e->hnext = c->buckets[h];
    c->buckets[h] = e;
    lru_push_head(c, e);
    c->bytes += len;
    c->entries++;
    cache_grow(c);
    return 0;
}

const uint8_t *storage_cache_get(storage_cache *c, uint64_t log_id, int64_t base, size_t *len,
                                 int64_t *last)
{
    centry *e = cache_find(c, log_id, base);
    if (!e) {
        c->misses++;
        return NULL;
    }
    c->hits++;
    lru_unlink(c, e);
    lru_push_head(c, e);
    *len = e->len;
    *last = e->last;
    return e->data;
}

const uint8_t *storage_cache_get_ref(storage_cache *c, uint64_t log_id, int64_t base,
                                     size_t *len, int64_t *last, storage_cache_ref **ref)
{
    const uint8_t *p = storage_cache_get(c, log_id, base, len, last);
    if (!p) return NULL;
    centry *e = AL_CONTAINER_OF(p, centry, data);
    __atomic_add_fetch(&e->refs, 1, __ATOMIC_RELAXED);
    *ref = (storage_cache_ref *)e;
    return p;
}

int storage_cache_drop(storage_cache *c, uint64_t log_id, int64_t from, int64_t to)
{
    int n = 0;
    centry *e = c->head;
    while (e) {
        centry *next = e->next;
        if (e->log_id == log_id && e->last >= from && e->base <= to) {
            cache_remove(c, e);
            n++;
        }
        e = next;
    }
    return n;
}

void storage_cache_stats_get(const storage_cache *c, storage_cache_stats *out)
{
    out->bytes = c->bytes;
    out->entries = c->entries;
    out->hits = c->hits;
    out->misses = c->misses;
}
