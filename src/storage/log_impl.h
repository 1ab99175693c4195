/*
 * log_impl.h — private to src/storage: the in-memory shape of a partition log and its
 * segments, shared by log.c (append, flush, read, recovery, truncation, retention) and
 * compact.c (key-based compaction). Nothing outside src/storage includes this header.
 */
#ifndef AL_STORAGE_LOG_IMPL_H
#define AL_STORAGE_LOG_IMPL_H

#include "storage/log.h"

#include <limits.h>

#define SEG_ALIGN 4096u
#define SEG_PATH_MAX 4096
#define SEG_MAX 1000000 /* bound on segments per log */
#define SEG_BUF_MIN (16u << 10)   /* write buffer of a new or idle active segment */
#define SEG_BUF_QUIET (64u << 10) /* next step; above it, the write window (seg_buf_cap) */

/* Sparse offset index entry: offset relative to the segment base, byte position. */
typedef struct idx_ent {
    uint32_t rel;
    uint32_t pos;
} idx_ent;

/* Sparse time index entry: the running max timestamp up to and including the batch at rel. */
typedef struct tidx_ent {
    int64_t ts;
    uint32_t rel;
} tidx_ent;

typedef struct segment {
    int64_t base;    /* base offset (from the name) */
    int32_t term;    /* every batch's leader epoch */
    int64_t last;    /* last offset; base - 1 when empty */
    uint64_t size;   /* logical bytes appended */
    uint64_t dsize;  /* bytes durable (a batch boundary) */
    uint64_t wsize;  /* bytes handed to a write (>= dsize) */
    int64_t dlast;   /* last durable offset; base - 1 if none */
    int64_t max_ts;  /* newest batch maxTimestamp (INT64_MIN when empty) */
    int64_t created_ms; /* wall time the segment was created or opened (segment.ms) */
    int fd;
    bool sealed;     /* no more appends (rolled) */
    bool finished;   /* sealed, durable, trimmed, index files written, buffers freed */
    uint64_t alloc;  /* bytes of file fallocated */
    idx_ent *idx;
    uint32_t nidx, cidx;
    tidx_ent *tidx;
    uint32_t ntidx, ctidx;
    uint64_t last_idx_pos; /* position of the newest index entry */
    /* Write state: buf holds file bytes [bbase, size) (bbase 4 KiB aligned); fbuf holds the
     * in-flight write [fbase, fend) while this segment is being flushed. */
    uint8_t *buf;
    size_t bcap;
    uint64_t bbase;
    uint8_t *fbuf;
    size_t fcap;
    uint64_t fbase, fend;
    uint64_t trim_size; /* size at the last housekeeping (idle buffers are trimmed) */
    bool cleaned;    /* compaction: already compacted since it was sealed */
    char stem[SEG_PATH_MAX]; /* dir/<base:020>-<term> */
} segment;

/* Compaction progress (compact.c). */
typedef struct compact_state {
    int phase;          /* 0 idle, 1 building the key map, 2 rewriting */
    int seg;            /* segment index being processed */
    int nmapped;        /* segments covered by the map (phase 2 stops there) */
    uint64_t pos;       /* input position in that segment */
    int64_t upto;       /* map covers offsets < upto (start of the active segment) */
    void *map;          /* key -> newest offset */
    int out_fd;
    uint64_t out_size;
    uint8_t *out_buf;
    size_t out_len, out_cap;
    idx_ent *out_idx;
    uint32_t out_nidx, out_cidx;
    tidx_ent *out_tidx;
    uint32_t out_ntidx, out_ctidx;
    uint64_t out_last_idx_pos;
    int64_t out_last, out_max_ts;
    int64_t now_ms;
} compact_state;

struct storage_log {
    io *io;
    storage_log_config cfg;
    char dir[SEG_PATH_MAX - 128];
    segment **segs;
    int nsegs, csegs;
    int64_t start;   /* log start offset */
    int64_t high;    /* next offset to assign */
    int64_t durable; /* last durable offset */
    bool failed;
    bool nospace;
    uint64_t nospace_probe_ns;
    /* write stage (fallocate + write) */
    bool wbusy;
    int wstate;
    segment *wseg;
    int64_t wlast;    /* last offset the write covers */
    uint64_t wpos;    /* file position of the write in flight */
    uint64_t wtarget; /* fallocate target size in flight */
    io_op wop;
    /* sync stage */
    bool sbusy;
    segment *sseg;
    uint64_t send;    /* segment bytes durable once the sync completes */
    int64_t slast;
    io_op sop;
    uint64_t sync_t0_ns; /* operations: when the fdatasync in flight was issued (metrics) */
    /* completed writes not yet covered by an issued sync, oldest first */
    struct {
        segment *seg;
        uint64_t end;
        int64_t last;
    } pend[8];
    int npend;
    bool warned_no_direct, warned_no_falloc;
    int nospace_err;  /* a write hit ENOSPC: drop unflushed data once both stages are idle */
    storage_waiter *waiters;
    int reads_inflight;   /* disk reads in flight + parked reads */
    storage_read *parked; /* reads waiting for a sync (see read_run) */
    storage_truncation *trunc; /* an asynchronous truncation waiting for idle */
    compact_state cs;
    uint64_t buf_regrows; /* write buffers regrown with a copy (storage_log_buf_info_get) */
    bool no_cache_appends; /* storage_log_set_cache_appends(false) */
};

/* Synchronously copies len bytes at pos of seg (memory buffers or disk). Returns 0 or -errno /
 * AL_ERANGE (past size). Used off the data path: truncation, compaction, recovery. */
int seg_read_sync(storage_log *log, segment *seg, uint64_t pos, void *dst, size_t len);

/* Opens a segment data file (O_DIRECT, or buffered where unsupported). fd or -errno. */
int seg_open_data(storage_log *log, const char *path, int flags);

/* Index helpers shared with compaction. */
int seg_idx_add(idx_ent **v, uint32_t *n, uint32_t *c, uint32_t rel, uint32_t pos);
int seg_tidx_add(tidx_ent **v, uint32_t *n, uint32_t *c, int64_t ts, uint32_t rel);

/* Writes the .index and .timeindex files of a segment (atomic ritual). Returns 0 or -errno. */
int seg_write_indexes(storage_log *log, segment *seg);

/* Compaction step (compact.c): at most budget bytes of input. Returns 1 if more to do, 0 idle,
 * or negative. Frees its state on error. */
int log_compact_step(storage_log *log, int64_t now_ms, size_t budget);
void log_compact_reset(storage_log *log);

#endif
