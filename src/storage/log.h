/*
 * log.h — the partition log: a directory of segments holding Kafka record batches, with offsets
 * assigned on append, group-committed O_DIRECT writes, recovery at open, truncation, retention,
 * compaction and reads through the per-shard batch cache. Its interface is the one Raft needs.
 *
 * On disk (see docs/ARCHITECTURE.md, "## Storage"): in the log's directory,
 *   <base:020>-<term>.log        record batches as received (stamped), back to back, then zeros
 *   <base:020>-<term>.index      sparse offset index of a closed segment (written at close)
 *   <base:020>-<term>.timeindex  sparse time index of a closed segment (written at close)
 *   <base:020>-<term>.ckpt       recovery checkpoint of the active segment (log_ckpt.c)
 *   log_meta                     the log start offset (temp/fsync/rename/fsync-dir ritual)
 * Every segment holds batches of one term: an append with a new term rolls the segment.
 *
 * Threading: a log belongs to the shard whose `io` it was opened with. Every function must be
 * called on that shard; every callback runs on it (from io_poll). Nothing here blocks except
 * open/close, truncation, retention, compaction steps and segment roll/close, which use the
 * synchronous io_fs_* calls (metadata work, bounded).
 *
 * Errors: 0/count or negative (-errno or AL_E*). -ENOSPC from append means "disk full, retry
 * later" (Kafka: KAFKA_STORAGE_ERROR); AL_EFAILED means the log failed (a write or fdatasync
 * error) and refuses everything until reopened; nothing after the last good flush is ever
 * reported durable.
 */
#ifndef AL_STORAGE_LOG_H
#define AL_STORAGE_LOG_H

#include "base/base.h"
#include "reactor/io.h"
#include "storage/cache.h"

typedef struct storage_log storage_log;

enum storage_cleanup_policy {
    STORAGE_CLEANUP_DELETE = 1,
    STORAGE_CLEANUP_COMPACT = 2, /* compact,delete = both bits */
};

/* Per-log configuration (the topic's segment.bytes, segment.ms, retention.*, cleanup.policy,
 * delete.retention.ms, max.message.bytes and our own write parameters). */
typedef struct storage_log_config {
    uint64_t segment_bytes;        /* roll when a segment reaches this size (128 MiB) */
    int64_t segment_ms;            /* roll when the active segment is this old (7 days); <= 0 off */
    uint64_t fallocate_step;       /* grow data files ahead by this much (32 MiB), 4 KiB multiple */
    int64_t retention_bytes;       /* delete old segments beyond this total size; -1 off */
    int64_t retention_ms;          /* delete segments whose newest batch is older; -1 off (7 d) */
    int cleanup_policy;            /* STORAGE_CLEANUP_* bits (DELETE) */
    int64_t delete_retention_ms;   /* keep tombstones this long after compaction (1 day) */
    uint32_t max_message_bytes;    /* largest batch accepted (1 MiB + 12) */
    uint64_t flush_bytes;          /* start a flush when this much is unflushed (1 MiB) */
    uint32_t index_interval_bytes; /* one offset/time index entry per this many bytes (4 KiB) */
    bool split_sync;               /* false (default): each flush write is itself durable
                                    * (io_write_dsync); true: a plain write, then an fdatasync
                                    * pipelined with the next write (higher throughput on some
                                    * disks, about one more device round trip of latency) */
    bool pipeline_writes;          /* false (default): one durable write in flight per log;
                                    * true: a second may start while one is in flight (log.c
                                    * write_start_next; off by default: p50 lower but p99 and
                                    * CPU higher in the session-4 measurements, BENCHMARKS.md) */
    uint64_t prezero_bytes;        /* keep this much of the active segment's fallocated space
                                    * ahead of the appended data written with zeros (2 MiB;
                                    * 0 off): durable writes then land in written extents, with
                                    * no ext4 unwritten-extent conversion (journal commit) each
                                    * (log.c "zero-fill ahead") */
    uint64_t ckpt_bytes;           /* checkpoint the active segment's indexes every this many
                                    * bytes made durable (64 MiB; 0 off): a restart after a
                                    * crash scans only what follows (log_ckpt.c;
                                    * AILURUS_CKPT_BYTES in the environment sets the
                                    * default, for tests) */
    int64_t ckpt_ms;               /* ...or this often (10 s) once ckpt_bytes / 16 (at most
                                    * 4 MiB) more is durable; <= 0: by bytes only */
    bool spare_files;              /* false (default): a roll creates its file (roll jobs);
                                    * true: a busy log keeps the next segment's file ready, so
                                    * that a roll waits for no create or directory fsync (log.c
                                    * "spare files"; off by default, see BENCHMARKS.md
                                    * 2026-11-24 ha8; AILURUS_SPARE_FILES=0|1 in the
                                    * environment sets the default, for A/B runs) */
    storage_cache *cache;          /* the shard's batch cache, or NULL */
    uint64_t log_id;               /* key of this log in the cache (unique per shard) */
} storage_log_config;

/* Fills *c with the defaults above. */
void storage_log_config_default(storage_log_config *c);

/*
 * Opens (creating if needed) the log in directory dir and recovers it: lists segments, loads
 * or rebuilds their indexes, scans the last segment's batches verifying every CRC (after a
 * crash, only those from its recovery checkpoint on, when it has a valid one), truncates a
 * torn or corrupt tail (logging what was cut), deletes leftovers and segments wholly below the
 * log start offset. The config is copied. Returns 0 and *out, or -errno / AL_ECORRUPT (metadata
 * unreadable) / -ENOMEM.
 */
int storage_log_open(io *iop, const char *dir, const storage_log_config *cfg,
                     storage_log **out);

/*
 * Closes the log: flushes everything appended and waits for it (polling io; waiters are
 * answered), unless the log failed; fails remaining waiters with AL_ECLOSED, closes files,
 * frees the log. Returns 0. Call when no reads are in flight, not from a log callback.
 */
int storage_log_close(storage_log *log);

/* Frees the log's memory without any I/O and without calling waiters: for a simulated crash
 * (the io is dead and the process, in effect, gone). The one exception: a zero-fill write in
 * flight (cfg.prezero_bytes) is waited for by polling the io (bounded; a dead io ends it at
 * once), so that a test may "crash" a log on a live io once its own writes are done. */
void storage_log_abandon(storage_log *log);

/* Result of an append: the offsets the batches got. */
typedef struct storage_append_result {
    int64_t base_offset;
    int64_t last_offset;
    int32_t batches;
} storage_append_result;

/*
 * Validates the batches in buf (len bytes, one or more whole magic-2 batches), stamps their
 * base offsets (consecutive from the log's next offset) and leader epoch = term, copies them
 * into the write buffer and the cache, and returns their offsets. Not durable yet: use
 * storage_log_flush_wait. term must be >= the last term; a new term rolls the segment.
 * buf is modified (stamped) in place. Errors: AL_EMALFORMED / AL_ECORRUPT / AL_ETRUNCATED /
 * AL_ETOOLARGE (bad batch: nothing stored), AL_EINVAL (term lower than the log's), -ENOSPC,
 * AL_EFAILED, -ENOMEM, or an error creating a new segment file.
 */
int storage_log_append(storage_log *log, int32_t term, void *buf, size_t len,
                       storage_append_result *res);

/*
 * storage_log_append for batches the caller has just checked in full with
 * storage_batch_validate (CRC included) and not changed since, other than through
 * storage_batch_set_crc: the CRC and the record parse are not repeated (the Produce path checks
 * them before idempotent-producer dedup). The framing (magic, lengths, counts, max.message.bytes)
 * is still checked, with the same errors; debug builds (AL_DEBUG) re-check everything and abort
 * on a broken promise. Any other caller must use storage_log_append.
 */
int storage_log_append_validated(storage_log *log, int32_t term, void *buf, size_t len,
                                 storage_append_result *res);

/* A durability waiter (caller-owned, stays alive until its callback ran). */
typedef struct storage_waiter storage_waiter;
struct storage_waiter {
    void (*cb)(storage_waiter *w); /* res = 0 (offset durable) or error */
    void *ctx;
    int64_t offset;
    int res;
    storage_waiter *next; /* private */
};

/*
 * Asks for w->cb once every offset <= offset is durable (written and fdatasync'ed), or with
 * an error when the log fails (AL_EFAILED), runs out of space before flushing it (-ENOSPC),
 * the offset is truncated away (AL_ERANGE) or the log closes (AL_ECLOSED). Starts a flush if
 * none runs. Returns 1 when already durable (callback not called), 0 when queued, or
 * AL_EFAILED / AL_ERANGE (offset beyond the last offset) without queueing.
 */
int storage_log_flush_wait(storage_log *log, int64_t offset, storage_waiter *w);

/* Starts a flush of everything appended, if none runs (no callback). */
void storage_log_flush(storage_log *log);

/* Whether appended batches are copied into the batch cache (cfg.cache; default yes). A Raft
 * follower serves no reads, so the cluster turns it off there and on again when the replica
 * leads: the copy and the memory go to the logs that serve Fetch. Disk reads still fill the
 * cache and truncations still drop from it, so switching is safe at any time. */
void storage_log_set_cache_appends(storage_log *log, bool on);

/* A read request (caller-owned). */
typedef struct storage_read storage_read;
struct storage_read {
    int64_t offset;    /* in: first offset wanted */
    size_t max_bytes;  /* in: byte budget; at least one whole batch is returned anyway */
    void (*cb)(storage_read *r); /* in: called when a pending read completes */
    void *ctx;
    int res;           /* out: 0 or error */
    uint8_t *data;     /* out: whole batches (malloc'd; storage_read_release frees) */
    size_t len;
    int64_t next_offset; /* out: offset after the last batch returned */
    /* private */
    storage_log *log;
    size_t dcap;       /* allocated size of data */
    io_op op;
    uint8_t *abuf;
    size_t acap;
    uint64_t apos;
    uint64_t ppos;
    int seg;
    int tries;
    int hops;          /* steps so far (cache run, memory or disk read of one segment) */
    bool has_data;     /* the output holds a batch with records that is not a control batch */
    storage_read *parked_next;
};

/*
 * Reads whole batches starting with the one holding r->offset (or the next existing one, after
 * compaction) up to r->max_bytes, at least one batch. A read does not end on control or empty
 * batches alone (a Raft NOOP at a term's start, a CONFIG, an emptied compacted batch) while the
 * log holds more: it goes on past segment ends and cache misses, over the budget if need be,
 * until it holds a batch with records (a client that advances by the records it gets, kafkajs,
 * would fetch the same offset forever), bounded by STORAGE_READ_HOPS_MAX steps. Returns 1 when done synchronously (from
 * the cache or unflushed memory; callback not called), 0 when pending (r->cb runs later: after
 * an async disk read, or, for not-yet-durable data no longer in memory, after the next sync), or
 * AL_ERANGE (offset below the log start) / AL_EFAILED. At or past the next offset: done with
 * len 0. Data is whatever was appended (durable or not): callers clamp to their high watermark.
 */
int storage_log_read(storage_log *log, storage_read *r);
#define STORAGE_READ_HOPS_MAX 4096
void storage_read_release(storage_read *r);

/* Term of the batch holding offset, or AL_ERANGE when offset is not in [first segment, last]. */
int64_t storage_log_term_at(storage_log *log, int64_t offset);

/*
 * Removes every batch from the one holding `offset` on (offsets >= offset are gone; a batch
 * straddling offset goes entirely). Waiters above the new end fail with AL_ERANGE. Durable on
 * return (files truncated and synced). Returns 0, AL_EFULL when a flush or read is in flight
 * (retry after it completes, or use storage_log_truncate_suffix_async), AL_ERANGE when
 * offset < log start, or -errno.
 */
int storage_log_truncate_suffix(storage_log *log, int64_t offset);

/* An asynchronous suffix truncation (caller-owned, alive until its callback ran). */
typedef struct storage_truncation storage_truncation;
struct storage_truncation {
    int64_t offset; /* in: first offset to remove */
    void (*cb)(storage_truncation *t); /* res = 0 or an error as storage_log_truncate_suffix */
    void *ctx;
    int res;
};

/*
 * storage_log_truncate_suffix for any moment (Raft followers): when nothing is in flight it
 * truncates at once and returns 1 (callback not called); otherwise it stops starting writes,
 * lets the write, sync and reads in flight finish, then truncates and calls t->cb (returns 0).
 * While one is pending, appends and other truncations get AL_EFULL; after its callback the
 * log takes appends at the new end. Errors without queueing: AL_EFAILED, AL_ERANGE (offset
 * below the log start), AL_EFULL (another pending), or a truncation error.
 */
int storage_log_truncate_suffix_async(storage_log *log, storage_truncation *t);

/*
 * Advances the log start offset (DeleteRecords): offsets below are no longer readable; whole
 * segments below are deleted. Persisted before return. offset may not pass the next offset.
 * Returns 0, AL_ERANGE, or -errno.
 */
int storage_log_set_start_offset(storage_log *log, int64_t offset);

int64_t storage_log_start_offset(const storage_log *log);
int64_t storage_log_last_offset(const storage_log *log);   /* -1 + start when empty */
int32_t storage_log_last_term(const storage_log *log);     /* -1 when no segment */
int64_t storage_log_high_offset(const storage_log *log);   /* next offset to assign */
int64_t storage_log_durable_offset(const storage_log *log); /* last durable offset */
uint64_t storage_log_size_bytes(const storage_log *log);
int storage_log_segment_count(const storage_log *log);
bool storage_log_failed(const storage_log *log);
/* How many suffix truncations (storage_log_truncate_suffix*, dropping unflushed appends
 * after ENOSPC) this log object went through since it was opened: state derived from the log
 * (producer state) is stale once this changes. */
uint64_t storage_log_truncations(const storage_log *log);
/* Tests only: true leaves finishing sealed segments to housekeeping (no finish job is started
 * as segments become durable, log.c fin_kick), so that a test controls when one is in flight. */
void storage_log_set_finish_lazy(storage_log *log, bool lazy);

/*
 * Calls cb(ctx, h) with the header of every batch whose last offset >= from, oldest first,
 * through the last appended one (durable or not): for rebuilding state at start-up or after a
 * leadership change (producer ids), not for the data path. Synchronous: reads the segments
 * sequentially in large aligned chunks (memory for data not yet on disk) and checks each
 * batch's framing and CRC. cb returns 0 to go on, 1 to stop early, or a negative error that
 * ends the scan with that result. Call from the log's shard with no truncation pending.
 * Returns 0, cb's error, AL_ECORRUPT (a stored batch fails its checks), -ENOMEM or -errno.
 */
struct storage_batch_hdr;
typedef int (*storage_header_cb)(void *ctx, const struct storage_batch_hdr *h);
int storage_log_scan_headers(storage_log *log, int64_t from, storage_header_cb cb, void *ctx);

/* Memory of the active segment's write buffers (for tests and metrics): bytes allocated now,
 * and how many times a buffer was regrown with a copy since the log was opened; and since the
 * log was opened, how many writes were started while another was in flight (pipelined), of
 * which how many shared their first block with it (that block written after it completed). */
typedef struct storage_log_buf_info {
    uint64_t bytes;
    uint64_t regrows;
    uint64_t pipelined;
    uint64_t shared_block;
    uint64_t zeroed;      /* bytes zero-filled ahead of the data (cfg.prezero_bytes) */
    uint64_t zero_waits;  /* write starts deferred: the write reached a zero write in flight */
    uint64_t finish_jobs; /* finish jobs completed (off the shard's thread; log.c) */
    uint64_t delete_jobs; /* jobs that deleted segments below the start offset (same) */
    uint64_t scanned_segments; /* segments the open scanned batch by batch (no valid indexes) */
    uint64_t roll_jobs;   /* segment rolls whose file create + directory fsync ran off the
                             shard's thread */
    uint64_t roll_waits;  /* rolls that waited (blocking) for the previous roll's job */
    uint64_t spare_rolls; /* rolls that took a ready spare file (no create, no directory
                             fsync before the segment's data counts as durable) */
    bool spare_ready;     /* a spare file is ready for the next roll */
    uint64_t ckpt_jobs;   /* active-segment checkpoints written (log_ckpt.c) */
    uint64_t ckpt_recovered_pos; /* the open resumed the active segment's scan at this
                                  * position thanks to its checkpoint (0: scanned in full) */
    int unfinished;       /* sealed segments not finished yet (now) */
    uint64_t sealed_bytes; /* write-buffer bytes held by segments other than the active (now) */
} storage_log_buf_info;
void storage_log_buf_info_get(const storage_log *log, storage_log_buf_info *out);

/* Facts about segment i (0 = oldest) for tools and tests. Returns 0 or AL_ERANGE. */
typedef struct storage_segment_info {
    int64_t base, last;
    int32_t term;
    uint64_t size, durable_size;
    int64_t max_timestamp;
    uint32_t index_entries;
    bool sealed;
    bool finished; /* trimmed, index files written (housekeeping's finish job completed) */
    const char *path_stem; /* dir/<base>-<term>, valid while the segment exists */
} storage_segment_info;
int storage_log_segment_info(const storage_log *log, int i, storage_segment_info *out);

/*
 * ListOffsets by time: the base offset of the first batch whose maxTimestamp >= ts, found
 * through the sparse time index: exact at index granularity, so it may return an earlier batch
 * within one index interval. Returns the next offset when no batch qualifies.
 */
int64_t storage_log_offset_for_time(storage_log *log, int64_t ts);

/*
 * Housekeeping, called periodically by the shard: rolls an over-age active segment, starts
 * finishing sealed segments (trim, index files: blocking syncs, so they run off the shard's
 * thread, io_offload; a segment counts as finished once the job's callback ran from io_poll),
 * applies retention (delete policy: by retention.bytes and retention.ms, whole closed
 * segments from the front, start offset persisted; a segment being finished goes at a later
 * pass) and runs one bounded compaction step (compact policy, over finished segments) of at
 * most budget_bytes of input. now_ms is the wall clock. Returns 1 if more compaction work
 * remains, 0 if idle, or -errno. Skips work that would touch segments while reads are in flight.
 */
int storage_log_housekeep(storage_log *log, int64_t now_ms, size_t budget_bytes);

/* Waits (blocking) for housekeeping's finish job in flight, if any, and finishes on the
 * calling thread every other sealed, durable segment: all of them are finished on return.
 * Tests and tools; truncation and close do what they need themselves. */
void storage_log_finish_wait(storage_log *log);

/* Runs a full compaction round over every closed segment now (tests, tools); returns 0 or
 * -errno. */
int storage_log_compact_all(storage_log *log, int64_t now_ms);

#endif
