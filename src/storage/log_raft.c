/*
 * log_raft.c — synchronous helpers the Raft replica needs from a partition log (see
 * log_raft.h): sync everything recovered at open, scan stored batches without the
 * asynchronous read path, restart an emptied log at a snapshot point, apply a topic's changed
 * roll settings to the open log, and key compaction below the commit index (compact.c with
 * Raft's rules). Uses the log's private shape (log_impl.h): read-only, except
 * storage_log_set_roll (the config's roll settings) and storage_log_drop_empty_tail and
 * storage_log_restart_at, which remove segments of an idle log.
 */
#include "storage/log_raft.h"

#include <stdio.h>
#include <stdlib.h>

#include "storage/batch.h"
#include "storage/log_impl.h"

int storage_log_sync_all(storage_log *log)
{
    for (int i = 0; i < log->nsegs; i++) {
        segment *seg = log->segs[i];
        if (seg->fd < 0 || seg->finished) continue;
        int rc = io_fs_fdatasync(log->io, seg->fd);
        if (rc < 0) return rc;
    }
    return 0;
}

/* Closes and unlinks seg's files and frees it. */
static void seg_drop(storage_log *log, segment *seg)
{
    AL_ASSERT(!seg->finishing); /* log_fin_wait first */
    seg_remove_files(log->io, seg);
    free(seg->idx);
    free(seg->tidx);
    seg_bufs_drop(seg);
    free(seg);
}

int storage_log_drop_empty_tail(storage_log *log)
{
    AL_ASSERT(!log->wbusy && !log->sbusy && !log->trunc && log->reads_inflight == 0);
    log_mk_wait(log);  /* a roll job may be creating the empty segment dropped here */
    log_ckpt_wait(log); /* a checkpoint job may write a dropped segment's file */
    log_fin_wait(log); /* a finish job may hold the segments dropped here */
    int dropped = 0;
    while (log->nsegs > 0) {
        segment *seg = log->segs[log->nsegs - 1];
        if (seg->last >= seg->base || seg->size > 0) break;
        seg_drop(log, seg);
        log->nsegs--;
        dropped++;
    }
    if (dropped) {
        int rc = io_fs_fsync_dir(log->io, log->dir);
        if (rc < 0) return rc;
    }
    return dropped;
}

/* Byte position of the last sparse-index entry at or before offset in seg (0 if none). */
static uint64_t index_floor(const segment *seg, int64_t offset)
{
    int64_t rel = offset - seg->base;
    uint64_t pos = 0;
    int64_t lo = 0, hi = (int64_t)seg->nidx - 1;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if ((int64_t)seg->idx[mid].rel <= rel) {
            pos = seg->idx[mid].pos;
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    return pos;
}

/* Reads seg's bytes [pos, pos + n) into the scan buffer (grown as needed). */
static int chunk_read(storage_log *log, segment *seg, uint64_t pos, size_t n, uint8_t **buf,
                      size_t *cap)
{
    if (n > *cap) {
        uint8_t *nb = realloc(*buf, n);
        if (!nb) return -ENOMEM;
        *buf = nb;
        *cap = n;
    }
    return seg_read_sync(log, seg, pos, *buf, n);
}

int storage_log_scan_sync(storage_log *log, int64_t from, uint64_t max_batches,
                          int (*fn)(void *ctx, const uint8_t *batch, size_t size), void *ctx)
{
    enum { CHUNK = 64 * 1024 };
    uint8_t *buf = NULL;
    size_t cap = 0;
    uint64_t seen = 0;
    int rc = 0;
    int i = 0;
    while (i + 1 < log->nsegs && log->segs[i + 1]->base <= from) i++;
    for (; i < log->nsegs; i++) {
        segment *seg = log->segs[i];
        if (seg->last < from) continue;
        uint64_t pos = seg->base >= from ? 0 : index_floor(seg, from);
        /* the chunk in buf holds the segment's bytes [cpos, cpos + clen) */
        uint64_t cpos = pos;
        size_t clen = 0;
        while (pos + STORAGE_BATCH_HEADER <= seg->size) {
            if (pos + STORAGE_BATCH_HEADER > cpos + clen) { /* next chunk */
                cpos = pos;
                clen = (size_t)AL_MIN((uint64_t)CHUNK, seg->size - pos);
                if ((rc = chunk_read(log, seg, cpos, clen, &buf, &cap)) < 0) goto out;
            }
            storage_batch_hdr h;
            storage_batch_parse_header(buf + (pos - cpos), STORAGE_BATCH_HEADER, &h);
            if (h.batch_length < STORAGE_BATCH_HEADER - STORAGE_BATCH_LOG_OVERHEAD) {
                rc = AL_ECORRUPT;
                goto out;
            }
            size_t sz = storage_batch_size(&h);
            if (pos + sz > seg->size) {
                rc = AL_ECORRUPT;
                goto out;
            }
            if (pos + sz > cpos + clen) { /* the batch runs past the chunk: read it whole */
                cpos = pos;
                clen = (size_t)AL_MIN(AL_MAX((uint64_t)CHUNK, (uint64_t)sz), seg->size - pos);
                if ((rc = chunk_read(log, seg, cpos, clen, &buf, &cap)) < 0) goto out;
            }
            if (storage_batch_last_offset(&h) >= from) {
                rc = fn(ctx, buf + (pos - cpos), sz);
                if (rc != 0) {
                    if (rc > 0) rc = 0;
                    goto out;
                }
                if (max_batches && ++seen >= max_batches) goto out;
            }
            pos += sz;
        }
    }
out:
    free(buf);
    return rc;
}

int storage_log_restart_at(storage_log *log, int64_t offset)
{
    if (log->failed) return AL_EFAILED;
    if (log->wbusy || log->sbusy || log->zbusy || log->trunc || log->reads_inflight)
        return AL_EFULL;
    if (offset < log->start) return AL_EINVAL;
    log_mk_wait(log);  /* a roll job may be creating a segment dropped here */
    log_ckpt_wait(log); /* a checkpoint job may write a dropped segment's file */
    log_fin_wait(log); /* a finish job may hold the segments dropped here */
    log_del_wait(log); /* and a delete job's files go before the log restarts */
    log_compact_reset(log);
    for (int i = 0; i < log->nsegs; i++) seg_drop(log, log->segs[i]);
    bool had = log->nsegs > 0;
    log->nsegs = 0;
    log->npend = 0;
    log->high = offset;
    log->durable = offset - 1;
    if (log->cfg.cache) storage_cache_drop(log->cfg.cache, log->cfg.log_id, 0, INT64_MAX);
    /* nothing is left to become durable: fail whoever still waits */
    for (int guard = 0; log->waiters && guard < 1000000; guard++) {
        storage_waiter *w = log->waiters;
        log->waiters = w->next;
        w->next = NULL;
        w->res = AL_ERANGE;
        w->cb(w);
    }
    if (had) {
        int rc = io_fs_fsync_dir(log->io, log->dir);
        if (rc < 0) return rc;
    }
    /* persists the new start (log_meta) now that high allows it */
    return storage_log_set_start_offset(log, offset);
}

struct base_find {
    int64_t base;
};

static int base_fn(void *ctx, const uint8_t *batch, size_t size)
{
    struct base_find *b = ctx;
    storage_batch_hdr h;
    if (storage_batch_parse_header(batch, size, &h) < 0) return AL_ECORRUPT;
    b->base = h.base_offset;
    return 1;
}

int64_t storage_log_batch_base(storage_log *log, int64_t offset)
{
    if (offset < log->start || offset > storage_log_last_offset(log)) return AL_ERANGE;
    struct base_find b = {-1};
    int rc = storage_log_scan_sync(log, offset, 1, base_fn, &b);
    if (rc < 0) return rc;
    return b.base >= 0 ? b.base : AL_ERANGE;
}

bool storage_log_set_roll(storage_log *log, uint64_t segment_bytes, int64_t segment_ms)
{
    bool changed = false;
    if (segment_bytes && segment_bytes != log->cfg.segment_bytes) {
        log->cfg.segment_bytes = segment_bytes;
        changed = true;
    }
    if (segment_ms != log->cfg.segment_ms) {
        log->cfg.segment_ms = segment_ms;
        changed = true;
    }
    return changed;
}

int storage_log_housekeep_raft(storage_log *log, int64_t now_ms, const storage_log_config *rcfg,
                               int64_t *retention_start)
{
    /* the topic's current roll settings (normally applied already when the config changed) */
    storage_log_set_roll(log, rcfg->segment_bytes, rcfg->segment_ms);
    /* storage_log_housekeep with a retention that moves nothing: it still deletes segments
     * that fell below the start while reads held them */
    int policy = log->cfg.cleanup_policy;
    int64_t rb = log->cfg.retention_bytes, rms = log->cfg.retention_ms;
    log->cfg.cleanup_policy = STORAGE_CLEANUP_DELETE;
    log->cfg.retention_bytes = -1;
    log->cfg.retention_ms = -1;
    int rc = storage_log_housekeep(log, now_ms, 0);
    log->cfg.cleanup_policy = policy;
    log->cfg.retention_bytes = rb;
    log->cfg.retention_ms = rms;
    int64_t new_start = log->start;
    if (rcfg->cleanup_policy & STORAGE_CLEANUP_DELETE) {
        uint64_t total = storage_log_size_bytes(log);
        uint64_t pend = 0; /* ageless segments before this one, cut only with a later one */
        for (int i = 0; i < log->nsegs - 1; i++) {
            segment *seg = log->segs[i];
            if (seg->last < log->start) { /* already below the start, awaiting deletion */
                total -= AL_MIN(total, seg->size);
                continue;
            }
            if (!seg->sealed || seg->dsize != seg->size) break;
            uint64_t upto = pend + seg->size;
            bool by_size = rcfg->retention_bytes >= 0 && total >= upto &&
                           total - upto >= (uint64_t)rcfg->retention_bytes &&
                           total > (uint64_t)rcfg->retention_bytes;
            /* a segment of Raft control batches only (timestamps -1) has no age: it goes
             * with the next segment that expires, and never holds retention back */
            bool ageless = seg->max_ts < 0;
            bool by_time = rcfg->retention_ms >= 0 && !ageless &&
                           now_ms - seg->max_ts > rcfg->retention_ms;
            if (ageless && !by_size) {
                pend = upto;
                continue;
            }
            if (!by_size && !by_time) break;
            total -= AL_MIN(total, upto);
            pend = 0;
            new_start = AL_MAX(new_start, seg->last + 1);
        }
    }
    *retention_start = new_start;
    return rc;
}

int storage_log_compact_raft(storage_log *log, int64_t now_ms, const storage_log_config *rcfg,
                             int64_t max_offset, size_t budget_bytes)
{
    if (log->failed) return AL_EFAILED;
    if (!(rcfg->cleanup_policy & STORAGE_CLEANUP_COMPACT)) {
        if (log->cs.phase) log_compact_reset(log); /* the policy changed mid-round */
        return 0;
    }
    if (log->reads_inflight || log->trunc) return 0; /* retried at the next housekeeping */
    log->cfg.delete_retention_ms = rcfg->delete_retention_ms; /* the topic's current value */
    return log_compact_step_raft(log, now_ms, budget_bytes, max_offset);
}
