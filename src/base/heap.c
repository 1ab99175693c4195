/*
 * heap.c — giving freed heap memory back to the operating system. See heap.h.
 */
#include "base/heap.h"

#include <malloc.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

size_t heap_resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long size = 0, resident = 0;
    int n = fscanf(f, "%lu %lu", &size, &resident);
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    return n == 2 && page > 0 ? (size_t)resident * (size_t)page : 0;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

size_t heap_trim_check(struct heap_trim *t)
{
    struct mallinfo2 mi = mallinfo2();
    size_t before = heap_resident_bytes();
    size_t prev = t->rss_prev;
    t->free_bytes = mi.fordblks;
    t->rss_prev = before;
    bool above = t->threshold > 0 && mi.fordblks >= t->threshold;
    bool due = above && t->above;
    t->above = above;
    if (!due) return 0;
    size_t moved = before > prev ? before - prev : prev - before;
    if (moved >= t->threshold / 2) return 0; /* memory is being touched: busy, not left over */
    if (t->rss_after && before < t->rss_after + t->threshold &&
        mi.fordblks < t->free_after + t->threshold)
        return 0; /* nothing new: neither touched again nor freed since */
    uint64_t t0 = mono_ns();
    malloc_trim(0);
    t->last_trim_ns = mono_ns() - t0;
    size_t after = heap_resident_bytes();
    size_t released = before > after ? before - after : 0;
    t->rss_after = after;
    t->free_after = mi.fordblks;
    t->trims++;
    t->released_bytes += released;
    return released;
}
