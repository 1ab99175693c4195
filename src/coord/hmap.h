/*
 * hmap.h — a small intrusive chained hash table used by the coordinators (groups, members,
 * committed offsets, producer ids). Items embed a `struct coord_hnode`; the table stores only
 * pointers, so an item is allocated once by its owner and never moved. The caller computes the
 * hash and compares keys itself while walking a bucket (coord_hmap_bucket / node->next).
 *
 * Pure data structure: single-threaded, no I/O. Growth doubles the bucket array when the load
 * passes 1; that allocation happens only when the number of items grows, not per lookup.
 */
#ifndef AL_COORD_HMAP_H
#define AL_COORD_HMAP_H

#include "base/base.h"

struct coord_hnode {
    struct coord_hnode *next;
    uint64_t hash;
};

struct coord_hmap {
    struct coord_hnode **buckets;
    size_t nbuckets; /* a power of two, or 0 before the first insert */
    size_t count;
};

/* FNV-1a 64 over bytes; `seed` lets a caller combine several fields. */
static inline uint64_t coord_hash_bytes(uint64_t seed, const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t h = seed ? seed : 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ull;
    }
    return h;
}

static inline uint64_t coord_hash_str(uint64_t seed, const char *s)
{
    return coord_hash_bytes(seed, s, strlen(s) + 1); /* + NUL so "a","bc" != "ab","c" */
}

static inline uint64_t coord_hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* The first node of the bucket `hash` falls in (walk with ->next, compare hash then key). */
static inline struct coord_hnode *coord_hmap_bucket(const struct coord_hmap *m, uint64_t hash)
{
    if (!m->nbuckets) return NULL;
    return m->buckets[hash & (m->nbuckets - 1)];
}

/* Inserts `n` with `hash` (the caller has checked the key is not present). Returns 0 or
 * -ENOMEM (the table is unchanged then). */
int coord_hmap_insert(struct coord_hmap *m, struct coord_hnode *n, uint64_t hash);

/* Unlinks `n`, which must be in the table. */
void coord_hmap_remove(struct coord_hmap *m, struct coord_hnode *n);

/* Frees the bucket array (not the items). */
void coord_hmap_free(struct coord_hmap *m);

/* Iteration: for (it = coord_hmap_first(m, &b); it; it = coord_hmap_next(m, it, &b)).
 * Removing the current node during iteration is allowed if `next` was fetched first. */
struct coord_hnode *coord_hmap_first(const struct coord_hmap *m, size_t *b);
struct coord_hnode *coord_hmap_next(const struct coord_hmap *m, struct coord_hnode *n, size_t *b);

#endif
