/* hmap.c — the intrusive chained hash table of hmap.h. */
#include "coord/hmap.h"

#include <stdlib.h>

static int hmap_grow(struct coord_hmap *m)
{
    size_t nb = m->nbuckets ? m->nbuckets * 2 : 16;
    struct coord_hnode **b = calloc(nb, sizeof(*b));
    if (!b) return -ENOMEM;
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct coord_hnode *n = m->buckets[i];
        while (n) {
            struct coord_hnode *next = n->next;
            size_t j = n->hash & (nb - 1);
            n->next = b[j];
            b[j] = n;
            n = next;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = nb;
    return 0;
}

int coord_hmap_insert(struct coord_hmap *m, struct coord_hnode *n, uint64_t hash)
{
    if (m->count + 1 > m->nbuckets) {
        int rc = hmap_grow(m);
        if (rc < 0 && m->nbuckets == 0) return rc; /* with buckets we can still chain longer */
    }
    n->hash = hash;
    size_t j = hash & (m->nbuckets - 1);
    n->next = m->buckets[j];
    m->buckets[j] = n;
    m->count++;
    return 0;
}

void coord_hmap_remove(struct coord_hmap *m, struct coord_hnode *n)
{
    AL_ASSERT(m->nbuckets);
    struct coord_hnode **pp = &m->buckets[n->hash & (m->nbuckets - 1)];
    while (*pp && *pp != n) pp = &(*pp)->next;
    AL_ASSERT(*pp == n);
    *pp = n->next;
    n->next = NULL;
    m->count--;
}

void coord_hmap_free(struct coord_hmap *m)
{
    free(m->buckets);
    m->buckets = NULL;
    m->nbuckets = 0;
    m->count = 0;
}

static struct coord_hnode *hmap_scan(const struct coord_hmap *m, size_t *b)
{
    for (; *b < m->nbuckets; (*b)++)
        if (m->buckets[*b]) return m->buckets[*b];
    return NULL;
}

struct coord_hnode *coord_hmap_first(const struct coord_hmap *m, size_t *b)
{
    *b = 0;
    return hmap_scan(m, b);
}

struct coord_hnode *coord_hmap_next(const struct coord_hmap *m, struct coord_hnode *n, size_t *b)
{
    if (n->next) return n->next;
    (*b)++;
    return hmap_scan(m, b);
}
