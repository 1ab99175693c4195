/*
 * khist.c — the log-linear latency histogram (see khist.h).
 */
#include "client/khist.h"

int khist_index(uint64_t v)
{
    if (v < KHIST_SUB) return (int)v;
    int k = 63 - __builtin_clzll(v);
    return (k - KHIST_SUB_BITS + 1) * KHIST_SUB +
           (int)((v >> (k - KHIST_SUB_BITS)) & (KHIST_SUB - 1));
}

uint64_t khist_bucket_low(int i)
{
    if (i < KHIST_SUB) return (uint64_t)i;
    int k = i / KHIST_SUB + KHIST_SUB_BITS - 1;
    return (1ull << k) | ((uint64_t)(i % KHIST_SUB) << (k - KHIST_SUB_BITS));
}

void khist_add(khist *h, uint64_t v)
{
    int i = khist_index(v);
    __atomic_store_n(&h->n[i], h->n[i] + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&h->count, h->count + 1, __ATOMIC_RELAXED);
    if (v > h->max) __atomic_store_n(&h->max, v, __ATOMIC_RELAXED);
}

void khist_merge(khist *into, const khist *from)
{
    for (int i = 0; i < KHIST_BUCKETS; i++) into->n[i] += from->n[i];
    into->count += from->count;
    if (from->max > into->max) into->max = from->max;
}

uint64_t khist_quantile(const khist *h, double q)
{
    uint64_t total = __atomic_load_n(&h->count, __ATOMIC_RELAXED);
    uint64_t mx = __atomic_load_n(&h->max, __ATOMIC_RELAXED);
    if (total == 0) return 0;
    if (q < 0) q = 0;
    if (q > 1) q = 1;
    double w = q * (double)total;
    uint64_t want = (uint64_t)w;
    if ((double)want < w) want++;
    if (want < 1) want = 1;
    uint64_t seen = 0;
    for (int i = 0; i < KHIST_BUCKETS; i++) {
        seen += __atomic_load_n(&h->n[i], __ATOMIC_RELAXED);
        if (seen >= want) {
            uint64_t hi = i + 1 < KHIST_BUCKETS ? khist_bucket_low(i + 1) - 1 : UINT64_MAX;
            return hi < mx ? hi : mx;
        }
    }
    return mx;
}
