/*
 * cache.c — the per-shard batch cache: a chained hash table keyed by (log id, base offset) and an
 * intrusive LRU list, bounded by bytes. See cache.h.
 *
 * Entries are reference counted (atomic): the cache's own link is one reference, every
 * storage_cache_get_ref another. Removing an entry (eviction, replacement, drop, destroy)
 * unlinks it and drops the cache's reference; whoever drops the last one frees it, on any
 * thread. So a batch a Fetch response is sending from stays valid whatever the cache does.
 *
 * An entry either owns a copy of its batch (data[]) or points into a write-buffer chunk
 * (storage_cache_put_chunk) and holds a reference to the chunk, dropped when the entry is
 * freed. Budget: see cache.h (a chunk's entries count their bytes while the log owns the chunk,
 * the whole chunk once it does not).
 */
#include "storage/cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct centry {
    struct centry *hnext;         /* hash chain */
    struct centry *prev, *next;   /* LRU list: head = most recent */
    uint64_t log_id;
    int64_t base, last;
    size_t len;
    uint32_t refs;                /* atomic: 1 for the cache's link + one per holder */
    const uint8_t *p;             /* the batch: data, or inside ch */
    storage_chunk *ch;            /* the chunk p points into (a reference), or NULL */
    uint8_t data[];
} centry;

struct storage_cache {
    centry **buckets;
    size_t nbuckets; /* power of two */
    centry *head, *tail;
    size_t bytes, max_bytes, entries;
    uint64_t hits, misses;
    int64_t idle_ms; /* storage_cache_set_idle_ms */
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

/*
 * Freed big chunks (a busy log's write window) wait in a small process-wide pool for the next
 * storage_chunk_new of the same size: a busy log takes a new chunk every few MB while the
 * cache frees the oldest, and memory fresh from the allocator costs a page fault per 4 KiB on
 * first touch (most of the append path's time in a produce profile). Busy logs appended to in
 * turn retire and free their chunks at about the same time, so the pool holds up to
 * CHUNK_POOL_BYTES of them (idle memory outside any budget, as a malloc heap keeps freed
 * blocks). When it is full, a freed chunk takes the place of the oldest ones: the pool follows
 * the sizes in use now. (It used to refuse the newcomer instead, so after the write window
 * changed, e.g. from flat out to a lower rate, a pool full of the old size hit nothing and
 * every new chunk was fresh memory: 17% of the shard's time in page faults at 120 MB/s.)
 * Off under ASan, so that a chunk used after its last reference is caught.
 */
#if defined(__SANITIZE_ADDRESS__)
#define CHUNK_POOL_MAX 0
#else
#define CHUNK_POOL_MAX 64
#endif
#define CHUNK_POOL_BYTES ((size_t)64 << 20)
#define CHUNK_POOL_MIN (256u << 10) /* smaller chunks go back to malloc */

static struct {
    pthread_mutex_t mu;
    int n;
    size_t bytes;
    uint64_t hits, misses; /* storage_chunk_new of a pooled size (>= CHUNK_POOL_MIN) */
    storage_chunk *v[CHUNK_POOL_MAX + 1]; /* oldest first */
} chunk_pool = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void chunk_free(storage_chunk *ch)
{
    free(ch->mem);
    free(ch);
}

static storage_chunk *chunk_pool_take(size_t cap)
{
    if (CHUNK_POOL_MAX == 0 || cap < CHUNK_POOL_MIN) return NULL;
    storage_chunk *ch = NULL;
    pthread_mutex_lock(&chunk_pool.mu);
    for (int i = chunk_pool.n - 1; i >= 0; i--) { /* the newest: warmest in the caches */
        if (chunk_pool.v[i]->cap == cap) {
            ch = chunk_pool.v[i];
            memmove(&chunk_pool.v[i], &chunk_pool.v[i + 1],
                    (size_t)(chunk_pool.n - i - 1) * sizeof(chunk_pool.v[0]));
            chunk_pool.n--;
            chunk_pool.bytes -= cap;
            break;
        }
    }
    if (ch) chunk_pool.hits++;
    else chunk_pool.misses++;
    pthread_mutex_unlock(&chunk_pool.mu);
    return ch;
}

/* Keeps ch for reuse, dropping the oldest pooled chunks to make room; false: the caller frees
 * it (too small for the pool, or larger than the whole pool). */
static bool chunk_pool_put(storage_chunk *ch)
{
    if (CHUNK_POOL_MAX == 0 || ch->cap < CHUNK_POOL_MIN || ch->cap > CHUNK_POOL_BYTES)
        return false;
    storage_chunk *drop[CHUNK_POOL_MAX + 1];
    int ndrop = 0;
    pthread_mutex_lock(&chunk_pool.mu);
    while (chunk_pool.n > 0 && (chunk_pool.n >= CHUNK_POOL_MAX ||
                                chunk_pool.bytes + ch->cap > CHUNK_POOL_BYTES)) {
        storage_chunk *old = chunk_pool.v[0];
        memmove(&chunk_pool.v[0], &chunk_pool.v[1],
                (size_t)(chunk_pool.n - 1) * sizeof(chunk_pool.v[0]));
        chunk_pool.n--;
        chunk_pool.bytes -= old->cap;
        drop[ndrop++] = old;
    }
    chunk_pool.v[chunk_pool.n++] = ch;
    chunk_pool.bytes += ch->cap;
    pthread_mutex_unlock(&chunk_pool.mu);
    for (int i = 0; i < ndrop; i++) chunk_free(drop[i]); /* munmap outside the lock */
    return true;
}

void storage_chunk_pool_stats(uint64_t *hits, uint64_t *misses, size_t *bytes)
{
    pthread_mutex_lock(&chunk_pool.mu);
    *hits = chunk_pool.hits;
    *misses = chunk_pool.misses;
    *bytes = chunk_pool.bytes;
    pthread_mutex_unlock(&chunk_pool.mu);
}

storage_chunk *storage_chunk_new(size_t cap)
{
    AL_ASSERT(cap > 0 && cap % 4096 == 0);
    storage_chunk *ch = chunk_pool_take(cap);
    if (!ch) {
        ch = malloc(sizeof(*ch));
        if (!ch) return NULL;
        void *m = NULL;
        if (posix_memalign(&m, 4096, cap) != 0) {
            free(ch);
            return NULL;
        }
        ch->mem = m;
    }
    *ch = (storage_chunk){.refs = 1, .owners = 1, .cap = cap, .mem = ch->mem};
    return ch;
}

static void chunk_unref(storage_chunk *ch)
{
    if (__atomic_sub_fetch(&ch->refs, 1, __ATOMIC_ACQ_REL) == 0 && !chunk_pool_put(ch))
        chunk_free(ch);
}

void storage_chunk_own(storage_chunk *ch)
{
    AL_ASSERT(ch->owners > 0); /* a chunk no owner holds gets no new owner */
    ch->owners++;
    __atomic_add_fetch(&ch->refs, 1, __ATOMIC_RELAXED);
}

bool storage_chunk_exclusive(const storage_chunk *ch)
{
    return __atomic_load_n(&ch->refs, __ATOMIC_ACQUIRE) == 1;
}

void storage_cache_unref(storage_cache_ref *ref)
{
    if (!ref) return;
    centry *e = (centry *)ref;
    if (__atomic_sub_fetch(&e->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        if (e->ch) chunk_unref(e->ch);
        free(e);
    }
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
    storage_chunk *ch = e->ch;
    if (!ch) {
        c->bytes -= e->len;
    } else {
        AL_ASSERT(ch->cache == c && ch->ncached > 0 && ch->cached_bytes >= e->len);
        ch->ncached--;
        ch->cached_bytes -= e->len;
        if (ch->owners) c->bytes -= e->len;
        else if (!ch->ncached) c->bytes -= ch->cap; /* the last entry pinning it */
    }
    c->entries--;
    storage_cache_unref((storage_cache_ref *)e);
}

/* Evicts least-recently-used entries until `extra` more bytes fit in the budget (or the cache
 * is empty). */
static void cache_evict(storage_cache *c, size_t extra)
{
    for (int guard = 0; c->bytes + extra > c->max_bytes && c->tail; guard++) {
        AL_ASSERT(guard < 100000000);
        cache_remove(c, c->tail);
    }
}

void storage_chunk_disown(storage_chunk *ch)
{
    if (!ch) return;
    AL_ASSERT(ch->owners > 0);
    if (--ch->owners == 0 && ch->ncached) {
        storage_cache *c = ch->cache;
        AL_ASSERT(ch->cap >= ch->cached_bytes);
        c->bytes += ch->cap - ch->cached_bytes; /* the cache pins the whole chunk now */
        cache_evict(c, 0);
    }
    chunk_unref(ch);
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

/* Makes room for e (replacing an entry with its key) and links it as the most recent. */
static void cache_link(storage_cache *c, centry *e)
{
    centry *old = cache_find(c, e->log_id, e->base);
    if (old) cache_remove(c, old);
    cache_evict(c, e->len);
    size_t h = cache_hash(e->log_id, e->base, c->nbuckets);
    e->hnext = c->buckets[h];
    c->buckets[h] = e;
    lru_push_head(c, e);
    c->bytes += e->len;
    c->entries++;
    if (e->ch) {
        storage_chunk *ch = e->ch;
        AL_ASSERT(ch->owners > 0); /* while owned, an entry counts its own bytes */
        AL_ASSERT(ch->ncached == 0 || ch->cache == c);
        ch->cache = c;
        ch->ncached++;
        ch->cached_bytes += e->len;
    }
    cache_grow(c);
}

int storage_cache_put(storage_cache *c, uint64_t log_id, int64_t base, int64_t last,
                      const void *batch, size_t len)
{
    if (len > c->max_bytes / 4) return 0;
    centry *e = malloc(sizeof(*e) + len);
    if (!e) return -ENOMEM;
    *e = (centry){.log_id = log_id, .base = base, .last = last, .len = len, .refs = 1,
                  .p = e->data};
    memcpy(e->data, batch, len);
    cache_link(c, e);
    return 0;
}

int storage_cache_put_chunk(storage_cache *c, uint64_t log_id, int64_t base, int64_t last,
                            storage_chunk *ch, const uint8_t *p, size_t len)
{
    AL_ASSERT(p >= ch->mem && len <= ch->cap && (size_t)(p - ch->mem) <= ch->cap - len);
    if (len > c->max_bytes / 4) return 0;
    centry *e = malloc(sizeof(*e));
    if (!e) return -ENOMEM;
    *e = (centry){.log_id = log_id, .base = base, .last = last, .len = len, .refs = 1, .p = p,
                  .ch = ch};
    __atomic_add_fetch(&ch->refs, 1, __ATOMIC_RELAXED);
    cache_link(c, e);
    return 0;
}

/* Finds an entry, counting the hit or miss and marking it most recently used. */
static centry *cache_lookup(storage_cache *c, uint64_t log_id, int64_t base)
{
    centry *e = cache_find(c, log_id, base);
    if (!e) {
        c->misses++;
        return NULL;
    }
    c->hits++;
    lru_unlink(c, e);
    lru_push_head(c, e);
    return e;
}

const uint8_t *storage_cache_get(storage_cache *c, uint64_t log_id, int64_t base, size_t *len,
                                 int64_t *last)
{
    centry *e = cache_lookup(c, log_id, base);
    if (!e) return NULL;
    *len = e->len;
    *last = e->last;
    return e->p;
}

const uint8_t *storage_cache_get_ref(storage_cache *c, uint64_t log_id, int64_t base,
                                     size_t *len, int64_t *last, storage_cache_ref **ref)
{
    centry *e = cache_lookup(c, log_id, base);
    if (!e) return NULL;
    __atomic_add_fetch(&e->refs, 1, __ATOMIC_RELAXED);
    *ref = (storage_cache_ref *)e;
    *len = e->len;
    *last = e->last;
    return e->p;
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

void storage_cache_set_idle_ms(storage_cache *c, int64_t idle_ms)
{
    c->idle_ms = idle_ms > 0 ? idle_ms : 0;
}

int64_t storage_cache_idle_ms(const storage_cache *c)
{
    return c->idle_ms;
}

void storage_cache_stats_get(const storage_cache *c, storage_cache_stats *out)
{
    out->bytes = c->bytes;
    out->entries = c->entries;
    out->hits = c->hits;
    out->misses = c->misses;
}
