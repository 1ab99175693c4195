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

/* Bytes of batch data held, number of entries, hits and misses so far. */
typedef struct storage_cache_stats {
    size_t bytes, entries;
    uint64_t hits, misses;
} storage_cache_stats;
void storage_cache_stats_get(const storage_cache *c, storage_cache_stats *out);

#endif
