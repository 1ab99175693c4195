/*
 * log_ckpt.c — active-segment checkpoints (Kafka's recovery point): after a crash the open
 * scans the active segment only from the last checkpoint on instead of from its start.
 *
 * File <stem>.ckpt, big-endian:
 *   u32 magic "ALCK", u32 version, i64 base offset, u32 term, u32 n,
 *   u64 P (a batch boundary <= the durable size when it was written), i64 last offset at P,
 *   n x (u32 rel, u32 pos, i64 ts): the segment's sparse offset/time index entries below P,
 *   u32 CRC-32C of everything before it.
 *
 * Writing: after a sync makes more of the active segment durable (and at housekeeping), once
 * cfg.ckpt_bytes more is durable, or cfg.ckpt_ms passed with a little more durable, the shard
 * serializes the index entries that are new since the last checkpoint of this segment into
 * the job's buffer (the older ones stay there: each checkpoint costs the shard only its new
 * entries) and hands the buffer to one io_offload job per log, which adds the CRC and writes
 * the file with the atomic ritual (tmp, fsync, rename, directory fsync). Nothing blocks the
 * shard. The job's callback records the covered position in the segment (ckpt_at, ckpt_hi).
 *
 * Recovery (log.c seg_recover, last segment only, when it has no valid index files): a
 * checkpoint whose CRC, version, base and term match and whose P fits in the file gives the
 * indexes up to its newest entry E (position R < P); the scan starts at R with the state
 * after the batch before E, re-verifies every batch from R on (CRC, offsets continuing from
 * E, term) and must reach a batch boundary exactly at P with the recorded last offset, else
 * the checkpoint is dropped (logged, unlinked) and the segment scanned from 0. Batches after
 * P are checked and the tail cut exactly as in a full scan.
 *
 * What may be on disk after a crash between any two steps, and why it is safe:
 * - a checkpoint describes a prefix [0, P) of the data file that was durable when it was
 *   written; that prefix only changes by a truncation below P (log_truncate, Raft's
 *   restart/tail drop, which remove whole segments), and those remove the file first:
 *   log_ckpt_invalidate unlinks it and fsyncs the directory BEFORE the data file is cut
 *   (seg->ckpt_hi bounds what a file on disk may cover; a job in flight is waited for
 *   first). A crash before the unlink is durable leaves the old data and the old file: both
 *   valid. Whole segments removed take their .ckpt with them (seg_remove_files), and the
 *   directory fsync that follows every such removal comes before the same name could be
 *   created again, so a checkpoint never outlives its data file into a new one.
 * - a crash while the job runs leaves the old checkpoint or the new one (rename), or a
 *   .tmp that the open deletes.
 * - finishing a sealed segment (its index files take over) unlinks its checkpoint after the
 *   index files are durable, without a directory fsync: if the file comes back it belongs to
 *   a segment that is not the last one (the open deletes it, and remembers that a file might
 *   come back: ckpt_hi = max, so a later truncation removes it durably first) or that has
 *   index files (used instead). A job that completes after its segment was sealed and
 *   finished, or deleted, unlinks the file it wrote.
 * - checkpoints are only an optimisation: any doubt at open (bad CRC, version, identity, P
 *   beyond the file, a scan that does not pass through P with the recorded offset) ends in
 *   a full scan, logged with the reason.
 */
#include "storage/log_impl.h"

#include "base/crc32c.h"
#include "base/cursor.h"
#include "base/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#define CKPT_MAGIC 0x414c434bu /* "ALCK" */
#define CKPT_VERSION 1u
#define CKPT_HDR 40u
#define CKPT_ENT 16u
#define CKPT_MAX_FILE (64u << 20)

static void ckpt_path(const segment *seg, char *out, size_t n)
{
    snprintf(out, n, "%s.ckpt", seg->stem);
}

void seg_ckpt_unlink(io *iop, const segment *seg)
{
    char path[SEG_PATH_MAX + 16];
    ckpt_path(seg, path, sizeof(path));
    io_fs_unlink(iop, path);
}

static segment *seg_by_id(storage_log *log, uint64_t id)
{
    for (int i = log->nsegs - 1; i >= 0; i--)
        if (log->segs[i]->id == id) return log->segs[i];
    return NULL;
}

/* The job, off the shard: CRC, then the atomic write. Touches only the job's buffer. */
static int ckpt_job(io *iop, void *arg)
{
    struct log_ckpt *c = arg;
    al_put_be32(c->buf + c->len - 4, crc32c(0, c->buf, c->len - 4));
    return io_fs_write_atomic(iop, c->path, c->buf, c->len);
}

/* The job's result, on the shard. A job that never ran (-ECANCELED: crashed simulator io)
 * changes nothing. */
static void ckpt_apply(storage_log *log, int rc)
{
    struct log_ckpt *c = &log->ckpt;
    AL_ASSERT(log->ckbusy);
    log->ckbusy = false;
    if (rc == -ECANCELED) return;
    segment *seg = seg_by_id(log, c->seg_id);
    if (!seg || seg->finished || seg->finishing) {
        /* Its segment was finished (index files) or deleted while the job ran: the file is
         * of no use, and must not outlive the segment. */
        io_fs_unlink(log->io, c->path);
        return;
    }
    seg->ckpt_at = AL_MAX(seg->ckpt_at, c->pos);
    if (rc < 0) {
        log_warn("storage", "%s: writing the recovery checkpoint: %s; a restart after a crash "
                 "scans the segment from an older point", c->path, al_strerror(rc));
        seg->ckpt_hi = AL_MAX(seg->ckpt_hi, c->pos); /* the rename may have happened */
        return;
    }
    /* The rename replaced any older file durably: this one is the only one. */
    seg->ckpt_hi = c->pos;
    log->ckpt_jobs++;
}

static void ckpt_done(io_op *op)
{
    storage_log *log = op->ctx;
    ckpt_apply(log, op->res);
}

void log_ckpt_wait(storage_log *log)
{
    if (!log->ckbusy) return;
    ckpt_apply(log, io_offload_finish(log->io, &log->ckpt.op));
}

void log_ckpt_maybe(storage_log *log)
{
    uint64_t every = log->cfg.ckpt_bytes;
    if (!every || log->ckbusy || log->failed || log->trunc || !log->nsegs) return;
    segment *seg = log->segs[log->nsegs - 1];
    struct log_ckpt *c = &log->ckpt;
    if (c->buf && c->seg_id != seg->id) { /* a previous segment's entries: give the memory back */
        free(c->buf);
        c->buf = NULL;
        c->cap = 0;
        c->nser = 0;
    }
    if (seg->sealed || seg->finished || seg->finishing) return;
    if (log->cbusy && log->mk.seg == seg) return; /* its name is not durable yet (roll jobs) */
    uint64_t now = io_now_ns(log->io);
    if (!seg->ckpt_t_ns) seg->ckpt_t_ns = now; /* the clock starts with the segment's data */
    uint64_t P = seg->dsize;
    if (P < every || P <= seg->ckpt_at || P > UINT32_MAX) return;
    uint64_t grown = P - seg->ckpt_at;
    uint64_t little = AL_MAX(AL_MIN(every / 16, (uint64_t)4 << 20), (uint64_t)1);
    bool due = grown >= every ||
               (log->cfg.ckpt_ms > 0 && grown >= little &&
                now - seg->ckpt_t_ns >= (uint64_t)log->cfg.ckpt_ms * 1000000u);
    if (!due) return;
    uint32_t n = seg->nidx;
    while (n && seg->idx[n - 1].pos >= P) n--;
    if (!n || seg->ntidx < n || seg->idx[0].pos != 0) return;
    if (c->seg_id != seg->id || c->nser > n) c->nser = 0;
    c->seg_id = seg->id;
    size_t need = CKPT_HDR + (size_t)n * CKPT_ENT + 4;
    if (need > CKPT_MAX_FILE) return;
    if (need > c->cap) {
        size_t nc = AL_MAX(need + need / 2, (size_t)4096);
        uint8_t *nb = realloc(c->buf, nc);
        if (!nb) return; /* a checkpoint is an optimisation: try again later */
        c->buf = nb;
        c->cap = nc;
    }
    for (uint32_t i = c->nser; i < n; i++) {
        if (seg->tidx[i].rel != seg->idx[i].rel) { /* the indexes went out of step: skip */
            c->nser = 0;
            return;
        }
        uint8_t *p = c->buf + CKPT_HDR + (size_t)i * CKPT_ENT;
        al_put_be32(p, seg->idx[i].rel);
        al_put_be32(p + 4, seg->idx[i].pos);
        al_put_be64(p + 8, (uint64_t)seg->tidx[i].ts);
    }
    c->nser = n;
    al_wr wr = al_wr_make(c->buf, CKPT_HDR);
    al_wr_u32(&wr, CKPT_MAGIC);
    al_wr_u32(&wr, CKPT_VERSION);
    al_wr_i64(&wr, seg->base);
    al_wr_u32(&wr, (uint32_t)seg->term);
    al_wr_u32(&wr, n);
    al_wr_u64(&wr, P);
    al_wr_i64(&wr, seg->dlast);
    AL_ASSERT(!wr.err);
    c->n = n;
    c->pos = P;
    c->len = need;
    c->log = log;
    ckpt_path(seg, c->path, sizeof(c->path));
    seg->ckpt_t_ns = now;
    log->ckbusy = true;
    c->op = (io_op){.cb = ckpt_done, .ctx = log};
    io_offload(log->io, &c->op, ckpt_job, c);
}

int log_ckpt_invalidate(storage_log *log, segment *seg, uint64_t pos)
{
    AL_ASSERT(!log->ckbusy); /* log_ckpt_wait first */
    if (log->ckpt.seg_id == seg->id) log->ckpt.nser = 0; /* entries at and after pos go */
    seg->ckpt_at = AL_MIN(seg->ckpt_at, pos);
    if (seg->ckpt_hi <= pos) return 0; /* the file (if any) covers data that stays */
    char path[SEG_PATH_MAX + 16];
    ckpt_path(seg, path, sizeof(path));
    int rc = io_fs_unlink(log->io, path);
    if (rc == -ENOENT) rc = 0;
    if (rc == 0) rc = io_fs_fsync_dir(log->io, log->dir);
    if (rc < 0) {
        log_error("storage", "%s: removing the recovery checkpoint before a truncation: %s; "
                  "the truncation is not done", path, al_strerror(rc));
        return rc;
    }
    seg->ckpt_hi = 0;
    return 0;
}

/* Drops a checkpoint that cannot be used: logs why, unlinks it (no directory sync: the same
 * checks reject it if it comes back, and ckpt_hi = max makes a truncation remove it
 * durably first). */
static void ckpt_reject(storage_log *log, segment *seg, const char *why)
{
    log_warn("storage", "segment %s.log: ignoring its recovery checkpoint (%s); scanning the "
             "whole segment", seg->stem, why);
    seg_ckpt_unlink(log->io, seg);
    seg->ckpt_hi = UINT64_MAX;
    seg->ckpt_at = 0;
}

int log_ckpt_load(storage_log *log, segment *seg, int64_t fsize, uint64_t *from, uint64_t *pos,
                  int64_t *last)
{
    char path[SEG_PATH_MAX + 16];
    ckpt_path(seg, path, sizeof(path));
    uint8_t *b = NULL;
    size_t len = 0;
    int rc = io_fs_read_all(log->io, path, CKPT_MAX_FILE, &b, &len);
    if (rc == -ENOENT) return 0;
    if (rc == -ENOMEM) return rc;
    if (rc < 0) {
        ckpt_reject(log, seg, al_strerror(rc));
        return 0;
    }
    const char *why = NULL;
    if (len < CKPT_HDR + CKPT_ENT + 4 || crc32c(0, b, len - 4) != al_be32(b + len - 4)) {
        why = "bad length or CRC";
        goto bad;
    }
    al_rd rd = al_rd_make(b, len - 4);
    uint32_t magic = al_rd_u32(&rd), ver = al_rd_u32(&rd);
    int64_t base = al_rd_i64(&rd);
    uint32_t term = al_rd_u32(&rd), n = al_rd_u32(&rd);
    uint64_t P = al_rd_u64(&rd);
    int64_t L = al_rd_i64(&rd);
    if (magic != CKPT_MAGIC || ver != CKPT_VERSION) {
        why = "unknown format or version";
        goto bad;
    }
    if (base != seg->base || (int32_t)term != seg->term) {
        why = "it names another segment";
        goto bad;
    }
    if (P == 0 || P > (uint64_t)fsize || P > UINT32_MAX) {
        why = "its position is beyond the data file";
        goto bad;
    }
    if (n == 0 || al_rd_left(&rd) != (size_t)n * CKPT_ENT || L < base ||
        L - base > INT32_MAX) {
        why = "inconsistent header";
        goto bad;
    }
    seg->nidx = seg->ntidx = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t rel = al_rd_u32(&rd), p = al_rd_u32(&rd);
        int64_t ts = al_rd_i64(&rd);
        bool ok = i ? rel > seg->idx[i - 1].rel && p > seg->idx[i - 1].pos &&
                          ts >= seg->tidx[i - 1].ts
                    : p == 0;
        if (!ok || p >= P || (int64_t)rel > L - base) {
            why = "inconsistent index entries";
            goto bad;
        }
        if (seg_idx_add(&seg->idx, &seg->nidx, &seg->cidx, rel, p) < 0 ||
            seg_tidx_add(&seg->tidx, &seg->ntidx, &seg->ctidx, ts, rel) < 0) {
            free(b);
            seg->nidx = seg->ntidx = 0;
            return -ENOMEM;
        }
    }
    free(b);
    /* The state right before the newest entry's batch: the scan resumes with that batch
     * (which then adds no entry: it is the entry). Its running max timestamp already
     * includes that batch, which the rescan does not raise. */
    const idx_ent *e = &seg->idx[n - 1];
    seg->last = seg->base + e->rel - 1;
    seg->max_ts = seg->tidx[n - 1].ts;
    seg->last_idx_pos = e->pos;
    *from = e->pos;
    *pos = P;
    *last = L;
    return 1;
bad:
    free(b);
    seg->nidx = seg->ntidx = 0;
    ckpt_reject(log, seg, why);
    return 0;
}

/* Called by seg_recover when the scan from the checkpoint did not pass through its position
 * with its last offset: the data differs from what it describes. */
void log_ckpt_mismatch(storage_log *log, segment *seg)
{
    ckpt_reject(log, seg, "the data at its position does not match it");
}
