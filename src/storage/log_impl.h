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
    bool finishing;  /* in the finish job in flight (log.c): not deleted, truncated or freed */
    uint64_t alloc;  /* bytes of file fallocated */
    uint64_t zeroed; /* [0, zeroed) is written (data or zero fill), or 0: unknown (log.c) */
    idx_ent *idx;
    uint32_t nidx, cidx;
    tidx_ent *tidx;
    uint32_t ntidx, ctidx;
    uint64_t last_idx_pos; /* position of the newest index entry */
    /* Write state: buf holds file bytes [bbase, size) (bbase 4 KiB aligned); fbuf holds the
     * oldest write in flight [fbase, fend) while this segment is being flushed (and the last
     * write's bytes after it completed); pbuf holds the second, pipelined write [pbase, pend)
     * while there is one, else it is a spare buffer with pbase == pend (see log.c "flush").
     * Each lives in a chunk (bch, fch, pch: cache.h, one ownership each, possibly the same
     * chunk) that never moves, so the batch cache points into them instead of copying (log.c
     * "write buffers"); bcap etc. count from the buffer's start to its chunk's end. */
    uint8_t *buf;
    size_t bcap;
    size_t bwant;    /* the capacity the write window asks for (seg_buf_cap) */
    storage_chunk *bch, *fch, *pch;
    uint64_t bbase;
    uint8_t *fbuf;
    size_t fcap;
    uint64_t fbase, fend;
    uint8_t *pbuf;
    size_t pcap;
    uint64_t pbase, pend;
    uint64_t trim_size; /* size at the last housekeeping (idle buffers are trimmed) */
    bool cleaned;    /* compaction: already compacted since it was sealed */
    uint64_t id;     /* unique in the log object (log->seg_ids): checkpoint jobs find it */
    /* Active-segment checkpoint (log_ckpt.c): the position the last one covered (when to
     * write the next), when it was started, and a bound on what a <stem>.ckpt file on disk
     * may cover: cutting the segment below ckpt_hi first removes the file durably. */
    uint64_t ckpt_at, ckpt_hi;
    uint64_t ckpt_t_ns;
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
    /* Raft logs (storage_log_compact_raft; reset to the single-node values by every step): */
    int64_t limit;  /* only segments whose last offset <= limit are compacted (commit index) */
    bool keep_all;  /* keep every batch (emptied if need be): Raft entries keep their offsets */
    uint64_t out_norec; /* keep_all: output bytes since the last batch holding a record */
} compact_state;

#define LOG_FIN_MAX 16 /* segments per finish job and per delete job */

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
    /* write stage (fallocate + write): at most two writes in flight, the oldest in
     * ws[whead] (buffer seg->fbuf), a pipelined one in ws[!whead] (seg->pbuf); see log.c */
    bool wbusy;       /* a write slot is live or one of its operations is in flight */
    segment *wseg;    /* the segment being written */
    int whead;        /* index of the oldest live write slot */
    int wlive;        /* live write slots (0-2) */
    int wparts;       /* write-stage operations in flight */
    struct log_wslot {
        struct storage_log *log;
        bool live;       /* a write occupies this slot */
        int state;       /* FS_FALLOC or FS_WRITE: the main part's stage */
        bool main_busy;  /* the main part (fallocate, then write from mpos) is in flight */
        bool fix_wait;   /* the shared first block waits for the previous write to complete */
        bool fix_busy;   /* that block's write is in flight */
        uint64_t mpos;   /* file position of the main part's write in flight */
        uint64_t target; /* fallocate target size in flight */
        int64_t last;    /* last offset the write covers */
        uint64_t t0_ns;  /* operations: when it was issued (fsync latency metric) */
        io_op op, fop;   /* the main part, the shared block */
    } ws[2];
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
    uint64_t writes_pipelined;  /* writes started while another was in flight */
    uint64_t writes_shared_block; /* ...of which the first block waited for the previous one */
    bool no_cache_appends; /* storage_log_set_cache_appends(false) */
    /* Idle cache release (log_cache_idle): appends and reads count in touches; housekeeping
     * notes when they last moved (idle_since_ms) and drops the log's cache entries once the
     * cache's idle_ms passed; cache_held: the log put entries since its last drop. */
    uint64_t touches, touches_seen;
    int64_t idle_since_ms;
    bool idle_noted, cache_held;
    /* zero-fill ahead (cfg.prezero_bytes, log.c): one operation at a time on zseg, a
     * fallocate (zfalloc) or a durable write of zeros over [zoff, zend) */
    bool zbusy, zfalloc;
    bool zstop;          /* no more zero fill: closing, or an error disabled it */
    segment *zseg;
    uint64_t zoff, zend;
    io_op zop;
    uint64_t appended;   /* bytes appended since open (zero fill starts past prezero_bytes) */
    uint64_t zero_bytes; /* bytes zero-filled (storage_log_buf_info) */
    uint64_t zero_waits; /* writes that waited for a zero-fill write */
    uint64_t truncations; /* suffix truncations since open (storage_log_truncations) */
    /* Finishing sealed segments off the shard's thread (log.c, "finish jobs"): at most one
     * job in flight per log, over up to LOG_FIN_MAX segments flagged `finishing`. */
    bool fbusy;
    bool fin_want; /* a segment may have become finishable since the last fin_start (fin_kick) */
    bool fin_lazy; /* tests: fin_kick starts nothing (storage_log_set_finish_lazy) */
    struct log_fin {
        struct storage_log *log;
        io_op op;
        int n;
        segment *segs[LOG_FIN_MAX];
        int rc[LOG_FIN_MAX];
    } fin;
    uint64_t fin_jobs; /* finish jobs completed (storage_log_buf_info) */
    /* Deleting segments below the start offset off the shard's thread (log.c, "delete
     * jobs"): the segments are out of segs[] already; the job closes and unlinks them. */
    bool dbusy;
    struct log_del {
        struct storage_log *log;
        io_op op;
        int n;
        segment *segs[LOG_FIN_MAX];
    } del;
    uint64_t del_jobs; /* delete jobs completed (storage_log_buf_info) */
    uint64_t scanned_segs; /* segments recovery scanned at open (storage_log_buf_info) */
    /* Creating a rolled segment's file off the shard's thread (log.c, "roll jobs"): at most
     * one roll in flight per log, in two jobs: the file's create (its segment, the last in
     * segs[], has fd -1 until then), then the directory fsync (until then nothing in the
     * segment counts as durable: log->durable stops below its base). */
    bool cbusy;
    struct log_mk {
        struct storage_log *log;
        io_op op;
        int phase;      /* 1: the create job in flight, 2: the directory fsync job */
        segment *seg;   /* the new active segment (in segs[]) */
        segment *old;   /* an empty active segment it replaces (out of segs[]), or NULL */
        bool no_direct; /* set by the job: O_DIRECT was refused, the file is buffered */
        /* phase 3 (the roll took the spare file, log.c "spare files"): the job renames
         * spare-<spare_k>.seg to the segment's name, creates the next spare (next_fd) and
         * fsyncs the directory; nothing waits for it to count as durable. */
        int spare_k;
        bool make_next; /* create the next spare (cfg.spare_files) */
        int next_fd;
        bool next_no_direct;
    } mk;
    /* The spare file (log.c "spare files"): spare-<spare_k>.seg, empty, its name durable,
     * open as spare_fd (-1: none ready); the next roll takes it instead of creating a file. */
    int spare_fd;
    int spare_k;
    bool spare_no_direct;
    bool spbusy;    /* the job creating a spare is in flight (sp) */
    bool spare_off; /* creating a spare failed: this log makes no more (a warning said so) */
    struct log_spare {
        struct storage_log *log;
        io_op op;
        int k;
        bool no_direct;
    } sp;
    uint64_t spare_rolls; /* rolls that took a spare file (storage_log_buf_info) */
    uint64_t roll_jobs;  /* roll jobs completed (storage_log_buf_info) */
    uint64_t roll_waits; /* rolls that waited (blocking) for the previous roll's job */
    uint64_t seg_ids;  /* segment ids handed out (segment.id) */
    /* Active-segment checkpoints (log_ckpt.c): at most one job in flight per log. The
     * buffer holds the file being written: a header, the entries serialized so far (ckpt.nser
     * of segment ckpt.seg_id, kept between checkpoints: each one adds only new entries), the
     * CRC. Owned by the job while ckbusy. */
    bool ckbusy;
    struct log_ckpt {
        struct storage_log *log;
        io_op op;
        uint64_t seg_id;
        uint64_t pos;      /* P: the position the checkpoint covers */
        uint32_t n, nser;  /* entries in this checkpoint, entries serialized in buf */
        uint8_t *buf;
        size_t cap, len;
        char path[SEG_PATH_MAX + 16];
    } ckpt;
    uint64_t ckpt_jobs;          /* storage_log_buf_info */
    uint64_t ckpt_recovered_pos; /* storage_log_buf_info */
};

/* Lets go of a segment's write buffers (their chunks live on while the cache points in). */
void seg_bufs_drop(segment *seg);

/* Synchronously copies len bytes at pos of seg (memory buffers or disk). Returns 0 or -errno /
 * AL_ERANGE (past size). Used off the data path: truncation, compaction, recovery. */
int seg_read_sync(storage_log *log, segment *seg, uint64_t pos, void *dst, size_t len);

/* Opens a segment data file (O_DIRECT, or buffered where unsupported). fd or -errno. */
int seg_open_data(storage_log *log, const char *path, int flags);

/* Index helpers shared with compaction. */
int seg_idx_add(idx_ent **v, uint32_t *n, uint32_t *c, uint32_t rel, uint32_t pos);
int seg_tidx_add(tidx_ent **v, uint32_t *n, uint32_t *c, int64_t ts, uint32_t rel);

/* Waits (blocking) for housekeeping's finish job in flight, if any, and applies it (log.c,
 * "finish jobs"): before anything frees or rewrites sealed segments. */
void log_fin_wait(storage_log *log);
/* Same for the delete job (log.c, "delete jobs"): its files are gone on return. */
void log_del_wait(storage_log *log);
/* Same for the roll job (log.c, "roll jobs"): the new active segment has its fd and its name
 * (or the log failed) on return. Before anything frees, truncates or drops the active segment. */
void log_mk_wait(storage_log *log);

/* Closes seg's fd (-1 after) and unlinks its .log, .index and .timeindex files through iop
 * (blocking; the delete job runs it off the shard). */
void seg_remove_files(io *iop, segment *seg);

/* Active-segment checkpoints (log_ckpt.c). */
/* Starts a checkpoint job for the active segment when due (after a sync, at housekeeping). */
void log_ckpt_maybe(storage_log *log);
/* Waits (blocking) for the checkpoint job in flight, if any, and applies its result. */
void log_ckpt_wait(storage_log *log);
/* Before seg is cut to pos: if a checkpoint file may cover more than pos, removes it durably
 * (unlink + directory fsync). Returns 0 or -errno (then the caller must not cut). */
int log_ckpt_invalidate(storage_log *log, segment *seg, uint64_t pos);
/* At open, for the last segment (not indexed) whose <stem>.ckpt exists: loads and checks it.
 * Returns 1 with seg's indexes, last, max_ts and last_idx_pos set up to the checkpoint's newest
 * index entry, *from = that entry's position (where the scan resumes), *pos and *last = the
 * position and last offset the scan must pass through for the checkpoint to count; 0 when
 * it cannot be used (logged: the caller scans in full), or -ENOMEM. */
int log_ckpt_load(storage_log *log, segment *seg, int64_t fsize, uint64_t *from,
                  uint64_t *pos, int64_t *last);
/* The scan from the checkpoint did not confirm it: logs, unlinks it (seg_recover). */
void log_ckpt_mismatch(storage_log *log, segment *seg);
/* Unlinks seg's checkpoint file through iop (no directory sync; see log_ckpt.c). */
void seg_ckpt_unlink(io *iop, const segment *seg);

/* Writes the .index and .timeindex files of a segment through iop: durable = the atomic
 * ritual (io_fs_write_atomic), else with no sync (io_fs_write_lazy; their reader checks them).
 * Returns 0 or -errno. */
int seg_write_indexes(storage_log *log, io *iop, segment *seg, bool durable);

/* Compaction step (compact.c): at most budget bytes of input. Returns 1 if more to do, 0 idle,
 * or negative. Frees its state on error. */
int log_compact_step(storage_log *log, int64_t now_ms, size_t budget);
void log_compact_reset(storage_log *log);

/* The same step for a Raft log: only segments wholly at or below max_offset (the replica's
 * commit index) and every batch kept with its offsets and leader epoch (see log_raft.h). */
int log_compact_step_raft(storage_log *log, int64_t now_ms, size_t budget, int64_t max_offset);

#endif
