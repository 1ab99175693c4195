/*
 * heap.h — giving freed heap memory back to the operating system.
 *
 * The broker keeps freed buffers in glibc's heap (cli/start.c sets M_MMAP_THRESHOLD and
 * M_TRIM_THRESHOLD high so the hot path reuses memory instead of faulting it in again), and
 * glibc only ever returns memory from the top of a heap. After a burst the process therefore
 * keeps hundreds of MiB it no longer uses mapped (1.4 GiB after make bench's flat-out runs,
 * issue 6), and on a virtual machine whose guest kernel samples page accessed bits (DAMON) that
 * mapped memory costs latency long after the burst (BENCHMARKS.md, session 9).
 *
 * heap_trim_check is the policy: one look at the allocator (mallinfo2) and the process's
 * resident memory. A trim, malloc_trim(0), releases every free page (MADV_DONTNEED), whatever
 * its place in the heap. It is due when
 * - the heap held at least `threshold` bytes of free memory at this look and the one before;
 * - the resident memory moved by less than threshold/2 between them: the memory is left over,
 *   not in use. Under a flat-out load it grows by hundreds of MiB between looks, and trims
 *   there (every look) cost 16% of the throughput in make bench's 16-partition run, as each
 *   released page is faulted in again;
 * - something is new since the last trim: the resident memory is at least `threshold` above
 *   what it left (memory touched again), or the heap's free bytes are at least `threshold`
 *   above what they were then (memory in use at that trim freed since, resident still: the
 *   batch cache dropping an idle partition's batches). The free bytes alone do not tell: they
 *   stay counted after their pages went back (a trim leaves the free chunks where they are).
 * Blocking (it walks and locks every arena): call it off the shards' threads.
 */
#ifndef AL_BASE_HEAP_H
#define AL_BASE_HEAP_H

#include "base/base.h"

struct heap_trim {
    size_t threshold;        /* bytes of free heap memory that make a trim due; 0: never */
    /* results, kept across calls */
    bool above;              /* the last look found at least threshold free */
    size_t rss_after;        /* resident bytes right after the last trim (0: none yet) */
    size_t free_after;       /* the heap's free bytes at the last trim */
    size_t rss_prev;         /* resident bytes at the last look */
    size_t free_bytes;       /* free bytes the allocator held at the last look */
    uint64_t trims;          /* malloc_trim calls made */
    uint64_t released_bytes; /* resident memory they gave back, summed */
    uint64_t last_trim_ns;   /* how long the last one took */
};

/* One look (see above). Returns the resident bytes released by a trim made now, else 0. */
size_t heap_trim_check(struct heap_trim *t);

/* This process's resident memory in bytes (/proc/self/statm), or 0 if it cannot be read. */
size_t heap_resident_bytes(void);

#endif
