/*
 * cache.h — the per-shard batch cache: copies of recent record batches keyed by (log id, base
 * offset), bounded by a byte budget with least-recently-used eviction. Appends put their batches
 * here and reads of recent data are served from it without touching the disk. One cache per
 * shard, shared by that shard's logs; not thread-safe (owned by the shard's thread).
 */
#ifndef AL_STORAGE_CACHE_H
#define AL_STORAGE_CACHE_H

#include "base/base.h"

typedef struct storage_cache storage_cache;

/* Creates a cache holding at most max_bytes of batch data (plus per-entry overhead).
 * Returns NULL when out of memory. */
storage_cache *storage_cache_create(size_t max_bytes);
void storage_cache_destroy(storage_cache *c);

/*
 * Copies one batch (len bytes, offsets base..last) into the cache under (log_id, base),
 * replacing an entry with that key; evicts least-recently-used entries to stay in budget. A
 * batch larger than a quarter of the budget is not cached. Returns 0, or -ENOMEM (nothing
 * changed).
 */
int storage_cache_put(storage_cache *c, uint64_t log_id, int64_t base, int64_t last,
                      const void *batch, size_t len);

/*
 * Looks up the batch whose base offset is `base`. On a hit returns a pointer to its bytes
 * (valid until the next put/drop on this cache; storage_cache_get_ref for longer) and sets
 * *len and *last; marks it recently used. Returns NULL on a miss.
 */
const uint8_t *storage_cache_get(storage_cache *c, uint64_t log_id, int64_t base, size_t *len,
                                 int64_t *last);

/*
 * Zero-copy reads: storage_cache_get that also takes a reference to the entry (*ref), so its
 * bytes stay valid and unchanged, even after the entry is evicted, replaced or dropped or the
 * cache destroyed, until storage_cache_unref(*ref). The cache's thread only; the entry's memory
 * counts in the budget only while it is in the cache.
 */
typedef struct storage_cache_ref storage_cache_ref;
const uint8_t *storage_cache_get_ref(storage_cache *c, uint64_t log_id, int64_t base,
                                     size_t *len, int64_t *last, storage_cache_ref **ref);
/* Drops a reference from storage_cache_get_ref (NULL: nothing). Any thread. */
void storage_cache_unref(storage_cache_ref *ref);

/* Drops every entry of log_id whose offsets overlap [from, to]. Returns how many. O(entries). */
int storage_cache_drop(storage_cache *c, uint64_t log_id, int64_t from, int64_t to);

/* How long a log may go untouched (no append, no read) before its housekeeping drops its
 * entries (storage_log_housekeep; 0: never, the default). */
void storage_cache_set_idle_ms(storage_cache *c, int64_t idle_ms);
int64_t storage_cache_idle_ms(const storage_cache *c);

/*
 * Write-buffer chunks: the active segment's write buffers (log.c) are carved from chunks that
 * never move, and an append puts a batch into the cache by reference into its chunk
 * (storage_cache_put_chunk) instead of by a second copy. A chunk is reference counted: each
 * holder on the log's side (an "owner": the current, in-flight and spare write buffers) holds
 * one reference, and so does every cache entry pointing into it (an entry stays alive while a
 * storage_cache_get_ref holds it, even out of the cache); the last reference frees it, on any
 * thread. Bytes a cache entry points to are never written again (the log only ever appends
 * past them, and reuses a chunk only when it holds the sole reference).
 *
 * Budget: while some owner holds a chunk, its memory is the log's write buffer anyway, and the
 * cache counts only its entries' batch bytes; once the last owner lets go
 * (storage_chunk_disown) while cache entries still point into it, the cache counts the whole
 * chunk (cap) until its last entry in the cache goes. The owner-side fields (owners, ncached,
 * cached_bytes, cache) belong to the shard's thread.
 */
typedef struct storage_chunk {
    uint32_t refs;        /* atomic: owners + cache entries alive (in the cache or held) */
    uint32_t owners;      /* log-side holders */
    uint32_t ncached;     /* entries in the cache pointing into this chunk */
    size_t cached_bytes;  /* their batch bytes */
    storage_cache *cache; /* the cache those entries are in (valid while ncached > 0) */
    size_t cap;
    uint8_t *mem;         /* cap bytes, 4 KiB aligned (O_DIRECT writes) */
} storage_chunk;

/* A chunk of cap bytes (4 KiB multiple) with one owner. NULL when out of memory. */
storage_chunk *storage_chunk_new(size_t cap);
/* Another owner (shard thread). */
void storage_chunk_own(storage_chunk *ch);
/* An owner lets go (NULL: nothing); the cache takes over counting it (see above), evicting to
 * stay in budget. Shard thread. */
void storage_chunk_disown(storage_chunk *ch);
/* True when the caller's ownership is the only reference: the chunk may be written over. */
bool storage_chunk_exclusive(const storage_chunk *ch);
/* The process-wide pool of freed big chunks (cache.c): storage_chunk_new calls of a pooled
 * size that found one / did not, and the bytes it holds now. Always 0 under ASan (no pool). */
void storage_chunk_pool_stats(uint64_t *hits, uint64_t *misses, size_t *bytes);

/*
 * storage_cache_put without the copy: the entry points to len bytes at p inside ch (an owner
 * holds ch; the bytes must never change while the chunk lives) and holds a reference to ch.
 * Same replacement, eviction and size rules as storage_cache_put. Returns 0, or -ENOMEM.
 */
int storage_cache_put_chunk(storage_cache *c, uint64_t log_id, int64_t base, int64_t last,
                            storage_chunk *ch, const uint8_t *p, size_t len);

/* Bytes counted against the budget (batch bytes, plus whole chunks pinned by the cache only,
 * see above), number of entries, hits and misses so far. */
typedef struct storage_cache_stats {
    size_t bytes, entries;
    uint64_t hits, misses;
} storage_cache_stats;
void storage_cache_stats_get(const storage_cache *c, storage_cache_stats *out);

#endif
