/* test_storage_cache.c — the per-shard batch cache: hits and misses, replacement, the byte
 * bound with least-recently-used eviction, dropping ranges per log, a random workload
 * checked against a simple reference (every hit returns exactly the bytes put), and held
 * references (zero-copy Fetch) outliving eviction, replacement, drops and the cache. */
#include "storage_util.h"

#include "storage/cache.h"

#include <pthread.h>

TEST(cache_put_get_replace_drop)
{
    storage_cache *c = storage_cache_create(1 << 16);
    CHECK(c != NULL);
    uint8_t a[100], b[200];
    memset(a, 'a', sizeof(a));
    memset(b, 'b', sizeof(b));
    size_t len;
    int64_t last;
    CHECK(storage_cache_get(c, 1, 0, &len, &last) == NULL);
    CHECK_EQ(storage_cache_put(c, 1, 0, 4, a, sizeof(a)), 0);
    CHECK_EQ(storage_cache_put(c, 2, 0, 9, b, sizeof(b)), 0); /* same offset, other log */
    const uint8_t *p = storage_cache_get(c, 1, 0, &len, &last);
    CHECK(p && len == 100 && last == 4 && p[0] == 'a');
    p = storage_cache_get(c, 2, 0, &len, &last);
    CHECK(p && len == 200 && last == 9 && p[0] == 'b');
    CHECK_EQ(storage_cache_put(c, 1, 0, 7, b, 50), 0); /* replace */
    p = storage_cache_get(c, 1, 0, &len, &last);
    CHECK(p && len == 50 && last == 7 && p[0] == 'b');
    CHECK_EQ(storage_cache_put(c, 1, 8, 10, a, 10), 0);
    CHECK_EQ(storage_cache_drop(c, 1, 5, 100), 2); /* overlaps [0,7] and [8,10] */
    CHECK(storage_cache_get(c, 1, 0, &len, &last) == NULL);
    CHECK(storage_cache_get(c, 2, 0, &len, &last) != NULL);
    storage_cache_stats st;
    storage_cache_stats_get(c, &st);
    CHECK_EQ(st.entries, 1);
    CHECK_EQ(st.bytes, 200);
    /* Too large for a quarter of the budget: not cached, not an error. */
    static uint8_t big[1 << 15];
    CHECK_EQ(storage_cache_put(c, 3, 0, 0, big, sizeof(big)), 0);
    CHECK(storage_cache_get(c, 3, 0, &len, &last) == NULL);
    storage_cache_destroy(c);
}

TEST(cache_lru_eviction_within_bound)
{
    storage_cache *c = storage_cache_create(10000);
    uint8_t v[1000];
    memset(v, 7, sizeof(v));
    for (int i = 0; i < 10; i++) CHECK_EQ(storage_cache_put(c, 1, i * 10, i * 10 + 9, v, 1000), 0);
    size_t len;
    int64_t last;
    /* Touch entry 0 so entry 10 is the least recently used. */
    CHECK(storage_cache_get(c, 1, 0, &len, &last) != NULL);
    CHECK_EQ(storage_cache_put(c, 1, 100, 109, v, 1000), 0);
    CHECK(storage_cache_get(c, 1, 0, &len, &last) != NULL);
    CHECK(storage_cache_get(c, 1, 10, &len, &last) == NULL);
    storage_cache_stats st;
    storage_cache_stats_get(c, &st);
    CHECK(st.bytes <= 10000);
    CHECK_EQ(st.entries, 10);
    storage_cache_destroy(c);
}

TEST(cache_random_workload_against_reference)
{
    uint64_t s = test_seed() | 1;
    enum { KEYS = 512 };
    static uint8_t ref[KEYS][64];
    static size_t ref_len[KEYS];
    storage_cache *c = storage_cache_create(8192);
    for (int i = 0; i < 200000; i++) {
        int k = (int)(su_rand(&s) % KEYS);
        uint64_t op = su_rand(&s) % 10;
        size_t len;
        int64_t last;
        if (op < 5) {
            ref_len[k] = 1 + su_rand(&s) % 64;
            for (size_t j = 0; j < ref_len[k]; j++) ref[k][j] = (uint8_t)su_rand(&s);
            CHECK_EQ(storage_cache_put(c, (uint64_t)(k % 3), k, k, ref[k], ref_len[k]), 0);
        } else if (op < 9) {
            const uint8_t *p = storage_cache_get(c, (uint64_t)(k % 3), k, &len, &last);
            if (p) {
                CHECK_EQ(len, ref_len[k]);
                CHECK_EQ(last, k);
                CHECK_MEM(p, ref[k], len);
            }
        } else {
            storage_cache_drop(c, (uint64_t)(k % 3), k, k + 5);
            for (int j = k; j <= k + 5 && j < KEYS; j++)
                if (j % 3 == k % 3) CHECK(storage_cache_get(c, (uint64_t)(j % 3), j, &len,
                                                            &last) == NULL);
        }
        storage_cache_stats st;
        storage_cache_stats_get(c, &st);
        CHECK(st.bytes <= 8192);
    }
    storage_cache_destroy(c);
}

/* Held entries (storage_cache_get_ref): random puts, replacements, drops and evictions while
 * up to 64 references are held; every held batch keeps exactly its bytes until released
 * (ASan: released memory is never read, nothing leaks), and the budget counts only what is
 * in the cache. Half of the releases happen on another thread (a Fetch is released on the
 * connection's shard, not the cache's). */
struct held {
    storage_cache_ref *ref;
    const uint8_t *p;
    size_t len;
    uint8_t want[64];
};

struct unref_batch {
    storage_cache_ref *refs[64];
    int n;
};

static void *unref_thread(void *arg)
{
    struct unref_batch *b = arg;
    for (int i = 0; i < b->n; i++) storage_cache_unref(b->refs[i]);
    return NULL;
}

TEST(cache_refs_outlive_eviction_replace_drop_destroy)
{
    uint64_t s = test_seed() | 1;
    enum { KEYS = 256, HOLD = 64 };
    static uint8_t val[KEYS][64];
    static size_t val_len[KEYS];
    static struct held h[HOLD];
    memset(h, 0, sizeof(h));
    storage_cache *c = storage_cache_create(4096);
    int taken = 0, outlived = 0;
    for (int i = 0; i < 100000; i++) {
        int k = (int)(su_rand(&s) % KEYS);
        uint64_t op = su_rand(&s) % 10;
        size_t len;
        int64_t last;
        if (op < 5) {
            val_len[k] = 1 + su_rand(&s) % 64;
            for (size_t j = 0; j < val_len[k]; j++) val[k][j] = (uint8_t)su_rand(&s);
            CHECK_EQ(storage_cache_put(c, 1, k, k, val[k], val_len[k]), 0);
        } else if (op < 8) {
            struct held *x = &h[su_rand(&s) % HOLD];
            if (x->ref) {
                CHECK_MEM(x->p, x->want, x->len); /* still its bytes, whatever happened */
                if (!storage_cache_get(c, 1, (int64_t)(x - h), &len, &last)) outlived++;
                storage_cache_unref(x->ref);
                x->ref = NULL;
            }
            const uint8_t *p = storage_cache_get_ref(c, 1, k, &len, &last, &x->ref);
            if (p) {
                CHECK_EQ(len, val_len[k]);
                x->p = p;
                x->len = len;
                memcpy(x->want, p, len);
                taken++;
            }
        } else {
            storage_cache_drop(c, 1, k, k + 3);
        }
        storage_cache_stats st;
        storage_cache_stats_get(c, &st);
        CHECK(st.bytes <= 4096);
    }
    for (int i = 0; i < HOLD; i++)
        if (h[i].ref) CHECK_MEM(h[i].p, h[i].want, h[i].len);
    storage_cache_destroy(c); /* held entries survive the cache itself */
    struct unref_batch b = {.n = 0};
    for (int i = 0; i < HOLD; i++) {
        if (!h[i].ref) continue;
        CHECK_MEM(h[i].p, h[i].want, h[i].len);
        if (i % 2) b.refs[b.n++] = h[i].ref;
        else storage_cache_unref(h[i].ref);
    }
    pthread_t t;
    pthread_create(&t, NULL, unref_thread, &b);
    pthread_join(t, NULL);
    printf("    %d references taken, %d held past their entry's removal\n", taken, outlived);
    CHECK(taken > 1000 && outlived > 100);
}

/* Entries pointing into a write-buffer chunk (storage_cache_put_chunk): while an owner holds
 * the chunk they count their own bytes; once the last owner lets go, the cache counts the whole
 * chunk until its last entry goes, and evicts to stay in budget; a held entry keeps the chunk
 * (and its bytes) alive past its removal; the chunk is exclusive again once nothing points in.
 * (ASan: nothing is read after it is freed, nothing leaks.) */
TEST(cache_chunk_entries_budget_and_lifetime)
{
    storage_cache *c = storage_cache_create(100u << 10);
    storage_chunk *a = storage_chunk_new(64u << 10);
    CHECK(a != NULL && ((uintptr_t)a->mem % 4096) == 0);
    for (size_t i = 0; i < a->cap; i++) a->mem[i] = (uint8_t)(i * 7);
    CHECK(storage_chunk_exclusive(a));
    for (int k = 0; k < 3; k++)
        CHECK_EQ(storage_cache_put_chunk(c, 1, k * 10, k * 10 + 9, a, a->mem + k * 4096, 4000), 0);
    CHECK(!storage_chunk_exclusive(a));
    storage_cache_stats st;
    storage_cache_stats_get(c, &st);
    CHECK_EQ(st.bytes, 12000u);
    CHECK_EQ(st.entries, 3u);
    size_t len;
    int64_t last;
    storage_cache_ref *ref = NULL;
    const uint8_t *p = storage_cache_get_ref(c, 1, 10, &len, &last, &ref);
    CHECK(p == a->mem + 4096 && len == 4000 && last == 19);
    /* A dropped entry no longer counts; then the chunk is the cache's alone: all of it. */
    CHECK_EQ(storage_cache_drop(c, 1, 0, 0), 1);
    storage_cache_stats_get(c, &st);
    CHECK_EQ(st.bytes, 8000u);
    storage_chunk_own(a); /* two owners (a buffer carved from it), one lets go: still owned */
    storage_chunk_disown(a);
    storage_cache_stats_get(c, &st);
    CHECK_EQ(st.bytes, 8000u);
    storage_chunk_disown(a);
    storage_cache_stats_get(c, &st);
    CHECK_EQ(st.bytes, 64u << 10);
    /* A second chunk pushes the budget: the first one's entries (least recent) go. */
    storage_chunk *b = storage_chunk_new(64u << 10);
    memset(b->mem, 0xbb, b->cap);
    CHECK_EQ(storage_cache_put_chunk(c, 2, 0, 0, b, b->mem, 5000), 0);
    storage_cache_stats_get(c, &st);
    CHECK_EQ(st.bytes, (64u << 10) + 5000);
    storage_chunk_disown(b);
    storage_cache_stats_get(c, &st);
    CHECK_EQ(st.bytes, 64u << 10); /* a's entries evicted, b counted whole */
    CHECK_EQ(st.entries, 1u);
    CHECK(storage_cache_get(c, 1, 10, &len, &last) == NULL);
    CHECK(storage_cache_get(c, 2, 0, &len, &last) != NULL);
    /* The held entry of a outlived its eviction: its bytes are still there. */
    for (size_t i = 0; i < len && i < 4000; i++) CHECK_EQ(p[i], (uint8_t)((4096 + i) * 7));
    storage_cache_unref(ref); /* frees a */
    /* Replacing b's entry with a copy releases b (its last entry): budget back to the copy. */
    uint8_t v[100];
    memset(v, 1, sizeof(v));
    CHECK_EQ(storage_cache_put(c, 2, 0, 0, v, sizeof(v)), 0);
    storage_cache_stats_get(c, &st);
    CHECK_EQ(st.bytes, sizeof(v));
    /* Exclusive again once the cache lets go. */
    storage_chunk *d = storage_chunk_new(8192);
    CHECK_EQ(storage_cache_put_chunk(c, 3, 0, 0, d, d->mem, 4096), 0);
    CHECK(!storage_chunk_exclusive(d));
    CHECK_EQ(storage_cache_drop(c, 3, 0, 0), 1);
    CHECK(storage_chunk_exclusive(d));
    /* An entry held past the cache's destruction keeps its chunk. */
    CHECK_EQ(storage_cache_put_chunk(c, 3, 0, 0, d, d->mem, 4096), 0);
    memset(d->mem, 0xdd, 4096);
    p = storage_cache_get_ref(c, 3, 0, &len, &last, &ref);
    CHECK(p != NULL);
    storage_chunk_disown(d);
    storage_cache_destroy(c);
    for (size_t i = 0; i < 4096; i++) CHECK_EQ(p[i], 0xdd);
    storage_cache_unref(ref);
}

/* The pool of freed big chunks follows the size in use: after a run of one size fills it, a
 * run of another size is served from the pool once its first chunks have been freed (the
 * pool used to keep the old size and refuse the new one, so every chunk stayed fresh
 * memory). No pool under ASan: nothing to check there. */
TEST(chunk_pool_follows_the_size_in_use)
{
    uint64_t h0, m0;
    size_t bytes;
    storage_chunk_pool_stats(&h0, &m0, &bytes);
#if defined(__SANITIZE_ADDRESS__)
    CHECK_EQ(bytes, 0);
#else
    uint64_t h1, m1;
    enum { N = 40 };
    storage_chunk *v[N];
    const size_t old_cap = 3u << 20, new_cap = (3u << 20) + (1u << 20);
    /* Fill the pool with the old size (64 MiB: 21 of 3 MiB). */
    for (int i = 0; i < N; i++) CHECK((v[i] = storage_chunk_new(old_cap)) != NULL);
    for (int i = 0; i < N; i++) storage_chunk_disown(v[i]);
    storage_chunk_pool_stats(&h1, &m1, &bytes);
    CHECK(bytes >= (size_t)50 << 20);
    /* Then a log at another window: take one, free it, many times. */
    storage_chunk_pool_stats(&h0, &m0, &bytes);
    for (int r = 0; r < 100; r++) {
        storage_chunk *ch = storage_chunk_new(new_cap);
        CHECK(ch != NULL && ch->cap == new_cap);
        ch->mem[0] = (uint8_t)r;
        ch->mem[new_cap - 1] = (uint8_t)r;
        storage_chunk_disown(ch);
    }
    storage_chunk_pool_stats(&h1, &m1, &bytes);
    CHECK_EQ(m1 - m0, 1); /* only the first one was fresh memory */
    CHECK_EQ(h1 - h0, 99);
    CHECK(bytes <= (size_t)64 << 20);
    /* And the old size is served from what is left of it. */
    storage_chunk *o = storage_chunk_new(old_cap);
    CHECK(o != NULL);
    storage_chunk_disown(o);
    storage_chunk_pool_stats(&h0, &m0, &bytes);
    CHECK_EQ(h0 - h1, 1);
#endif
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
