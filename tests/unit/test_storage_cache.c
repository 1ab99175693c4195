/* test_storage_cache.c — the per-shard batch cache: hits and misses, replacement, the byte
 * bound with least-recently-used eviction, dropping ranges per log, and a random workload
 * checked against a simple reference (every hit returns exactly the bytes put). */
#include "storage_util.h"

#include "storage/cache.h"

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

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
