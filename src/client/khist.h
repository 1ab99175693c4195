/*
 * khist.h — an HDR-style log-linear latency histogram for load generators: 64 linear
 * sub-buckets per power of two (relative error under 1/64 = 1.6%), values 0 .. 2^64-1 (ns).
 * One writer thread per histogram; readers on other threads (progress lines) may read
 * concurrently through relaxed atomics and see a slightly stale but never torn count.
 * Fixed size (about 30 KiB), no allocation.
 */
#ifndef AL_CLIENT_KHIST_H
#define AL_CLIENT_KHIST_H

#include "base/base.h"

enum {
    KHIST_SUB_BITS = 6,
    KHIST_SUB = 1 << KHIST_SUB_BITS,
    KHIST_BUCKETS = (64 - KHIST_SUB_BITS) * KHIST_SUB + KHIST_SUB,
};

typedef struct khist {
    uint64_t n[KHIST_BUCKETS];
    uint64_t count, max;
} khist;

/* Bucket index of v, and the lowest value of bucket i (inverse up to the bucket width). */
int khist_index(uint64_t v);
uint64_t khist_bucket_low(int i);

/* Records one value (owning thread only). */
void khist_add(khist *h, uint64_t v);

/* Adds every count of `from` into `into` (both quiescent). */
void khist_merge(khist *into, const khist *from);

/* The value at quantile q in [0, 1]: the upper edge of the bucket holding the
 * ceil(q * count)-th smallest value, capped at the maximum; 0 when empty. Any thread. */
uint64_t khist_quantile(const khist *h, double q);

#endif
