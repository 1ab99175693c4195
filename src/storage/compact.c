/*
 * compact.c — key-based compaction for cleanup.policy=compact (and compact,delete). Runs in
 * bounded steps (storage_log_housekeep) so appends never wait behind it:
 *   phase 1: scan the closed segments and map every key to its newest offset;
 *   phase 2: rewrite each closed segment into <stem>.log.cleaned keeping, per key, only the
 *            record at its newest offset (records without a key are kept), dropping tombstones
 *            whose batch is older than delete.retention.ms; offsets are kept (batches keep their
 *            base offset and record offset deltas); then fsync, rename over the original,
 *            fsync the directory and rewrite the indexes. A segment's last batch is kept
 *            (emptied when none of its records survive) so segments keep their offset ranges.
 * The active segment is never compacted. Control batches are kept as they are. Survivors of
 * a partly kept batch are rebuilt into an uncompressed batch.
 */
#include "storage/log_impl.h"

#include "base/log.h"
#include "storage/batch.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- key map: open addressing, keys copied ---- */

typedef struct kslot {
    uint64_t hash;
    uint8_t *key; /* NULL: empty */
    int32_t klen;
    int64_t offset;
} kslot;

typedef struct kmap {
    kslot *slots;
    size_t cap, n, bytes;
} kmap;

static uint64_t key_hash(const uint8_t *k, int32_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (int32_t i = 0; i < n; i++) h = (h ^ k[i]) * 1099511628211ull;
    return h ? h : 1;
}

static void kmap_free(kmap *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->cap; i++) free(m->slots[i].key);
    free(m->slots);
    free(m);
}

static kslot *kmap_find(kmap *m, uint64_t h, const uint8_t *k, int32_t n)
{
    size_t i = h & (m->cap - 1);
    for (size_t probe = 0; probe < m->cap; probe++, i = (i + 1) & (m->cap - 1)) {
        kslot *s = &m->slots[i];
        if (!s->key) return s;
        if (s->hash == h && s->klen == n && memcmp(s->key, k, (size_t)n) == 0) return s;
    }
    AL_PANIC("compaction key map full");
}

static int kmap_grow(kmap *m)
{
    size_t nc = m->cap ? m->cap * 2 : 1024;
    kslot *ns = calloc(nc, sizeof(*ns));
    if (!ns) return -ENOMEM;
    kslot *old = m->slots;
    size_t oc = m->cap;
    m->slots = ns;
    m->cap = nc;
    for (size_t i = 0; i < oc; i++) {
        if (!old[i].key) continue;
        *kmap_find(m, old[i].hash, old[i].key, old[i].klen) = old[i];
    }
    free(old);
    return 0;
}

static int kmap_put(kmap *m, const uint8_t *k, int32_t n, int64_t offset)
{
    if ((m->n + 1) * 2 > m->cap && kmap_grow(m) < 0) return -ENOMEM;
    uint64_t h = key_hash(k, n);
    kslot *s = kmap_find(m, h, k, n);
    if (!s->key) {
        s->key = malloc(n ? (size_t)n : 1);
        if (!s->key) return -ENOMEM;
        memcpy(s->key, k, (size_t)n);
        s->klen = n;
        s->hash = h;
        m->n++;
        m->bytes += (size_t)n + sizeof(kslot);
        s->offset = offset;
    } else if (offset > s->offset) {
        s->offset = offset;
    }
    return 0;
}

static int64_t kmap_get(kmap *m, const uint8_t *k, int32_t n)
{
    kslot *s = kmap_find(m, key_hash(k, n), k, n);
    return s->key ? s->offset : -1;
}

/* Raft logs: most bytes of emptied batches in a row before one keeps a record (see
 * rewrite_batch). */
#define COMPACT_FILLER_BYTES (32u << 10)

/* ---- state ---- */

static int compact_step(storage_log *log, int64_t now_ms, size_t budget);

void log_compact_reset(storage_log *log)
{
    compact_state *cs = &log->cs;
    kmap_free(cs->map);
    if (cs->out_fd >= 0) io_fs_close(log->io, cs->out_fd);
    free(cs->out_buf);
    free(cs->out_idx);
    free(cs->out_tidx);
    memset(cs, 0, sizeof(*cs));
    cs->out_fd = -1;
}

/* Number of leading segments eligible for compaction (finished = closed and durable; on a
 * Raft log also wholly at or below the commit index). */
static int compactable(const storage_log *log)
{
    int n = 0;
    while (n < log->nsegs - 1 && log->segs[n]->finished && log->segs[n]->last <= log->cs.limit)
        n++;
    return n;
}

/* Reads the whole batch at pos of seg into *buf (grown as needed). Returns its size or error. */
static int64_t read_batch(storage_log *log, segment *seg, uint64_t pos, uint8_t **buf,
                          size_t *cap, storage_batch_hdr *h)
{
    uint8_t hb[STORAGE_BATCH_HEADER];
    int rc = seg_read_sync(log, seg, pos, hb, sizeof(hb));
    if (rc < 0) return rc;
    storage_batch_parse_header(hb, sizeof(hb), h);
    size_t sz = storage_batch_size(h);
    if (pos + sz > seg->size) return AL_ECORRUPT;
    if (sz > *cap) {
        uint8_t *nb = realloc(*buf, sz);
        if (!nb) return -ENOMEM;
        *buf = nb;
        *cap = sz;
    }
    if ((rc = seg_read_sync(log, seg, pos, *buf, sz)) < 0) return rc;
    int64_t v = storage_batch_validate(*buf, sz, 0, h);
    return v < 0 ? v : (int64_t)sz;
}

/* Phase 1 step: adds the keys of batches in [pos, ...) to the map, up to budget bytes. */
static int map_step(storage_log *log, size_t budget, uint8_t **buf, size_t *cap)
{
    compact_state *cs = &log->cs;
    size_t done = 0;
    while (done < budget && cs->seg < compactable(log)) {
        segment *seg = log->segs[cs->seg];
        if (cs->pos >= seg->size) {
            cs->seg++;
            cs->pos = 0;
            continue;
        }
        storage_batch_hdr h;
        int64_t sz = read_batch(log, seg, cs->pos, buf, cap, &h);
        if (sz < 0) return (int)sz;
        if (!(h.attributes & STORAGE_ATTR_CONTROL)) {
            const uint8_t *recs;
            size_t rlen;
            uint8_t *owned;
            int rc = storage_batch_records(*buf, (size_t)sz, 0, &recs, &rlen, &owned);
            if (rc < 0) return rc;
            storage_record_iter it;
            storage_record r;
            storage_record_iter_init(&it, recs, rlen, h.records_count);
            while ((rc = storage_record_iter_next(&it, &r)) == 1) {
                if (r.key_len < 0) continue;
                rc = kmap_put(cs->map, r.key, r.key_len, h.base_offset + r.offset_delta);
                if (rc < 0) break;
            }
            free(owned);
            if (rc < 0) return rc;
        }
        cs->pos += (uint64_t)sz;
        done += (size_t)sz;
    }
    if (cs->seg >= compactable(log)) {
        cs->nmapped = cs->seg; /* phase 2 rewrites exactly the segments the map covers */
        cs->phase = 2;
        cs->seg = 0;
        cs->pos = 0;
    }
    return 1;
}

static int out_append(compact_state *cs, const void *p, size_t n)
{
    if (cs->out_len + n > cs->out_cap) {
        size_t nc = cs->out_cap ? cs->out_cap : 1u << 20;
        while (nc < cs->out_len + n) nc *= 2;
        uint8_t *nb = realloc(cs->out_buf, nc);
        if (!nb) return -ENOMEM;
        cs->out_buf = nb;
        cs->out_cap = nc;
    }
    memcpy(cs->out_buf + cs->out_len, p, n);
    cs->out_len += n;
    return 0;
}

static int out_flush(storage_log *log)
{
    compact_state *cs = &log->cs;
    if (!cs->out_len) return 0;
    ssize_t w = io_fs_pwrite(log->io, cs->out_fd, cs->out_buf, cs->out_len,
                             cs->out_size - cs->out_len);
    if (w < 0) return (int)w;
    if ((size_t)w != cs->out_len) return -EIO;
    cs->out_len = 0;
    return 0;
}

/* Writes one output batch and indexes it. */
static int out_batch(storage_log *log, segment *seg, const uint8_t *b, size_t n)
{
    compact_state *cs = &log->cs;
    storage_batch_hdr h;
    storage_batch_parse_header(b, n, &h);
    uint64_t pos = cs->out_size;
    if (h.max_timestamp > cs->out_max_ts) cs->out_max_ts = h.max_timestamp;
    if (cs->out_nidx == 0 || pos - cs->out_last_idx_pos >= log->cfg.index_interval_bytes) {
        uint32_t rel = (uint32_t)(h.base_offset - seg->base);
        if (seg_idx_add(&cs->out_idx, &cs->out_nidx, &cs->out_cidx, rel, (uint32_t)pos) < 0 ||
            seg_tidx_add(&cs->out_tidx, &cs->out_ntidx, &cs->out_ctidx, cs->out_max_ts, rel) < 0)
            return -ENOMEM;
        cs->out_last_idx_pos = pos;
    }
    cs->out_last = storage_batch_last_offset(&h);
    cs->out_size += n;
    int rc = out_append(cs, b, n);
    if (rc == 0 && cs->out_len >= (1u << 20)) rc = out_flush(log);
    return rc;
}

/* Filters one batch into the output. */
static int rewrite_batch(storage_log *log, segment *seg, uint8_t *b, size_t sz,
                         const storage_batch_hdr *h, bool seg_last)
{
    compact_state *cs = &log->cs;
    if (h->attributes & STORAGE_ATTR_CONTROL) return out_batch(log, seg, b, sz);
    const uint8_t *recs;
    size_t rlen;
    uint8_t *owned;
    int rc = storage_batch_records(b, sz, 0, &recs, &rlen, &owned);
    if (rc < 0) return rc;
    int n = h->records_count, kept = 0, last_i = -1;
    bool filler = false; /* keep[0] is a record turned into a tombstone (rebuild the batch) */
    storage_build_record *keep = calloc((size_t)(n ? n : 1), sizeof(*keep));
    if (!keep) {
        free(owned);
        return -ENOMEM;
    }
    bool old = cs->now_ms - h->max_timestamp > log->cfg.delete_retention_ms;
    storage_record_iter it;
    storage_record r;
    storage_record_iter_init(&it, recs, rlen, n);
    storage_build_record last = {0};
    while ((rc = storage_record_iter_next(&it, &r)) == 1) {
        last = (storage_build_record){r.offset_delta, r.timestamp_delta, r.key, r.key_len,
                                      r.value, r.value_len, r.headers, r.headers_size};
        last_i++;
        if (r.key_len >= 0) {
            int64_t newest = kmap_get(cs->map, r.key, r.key_len);
            /* Dropped only when a strictly newer record of the key exists. */
            if (newest > h->base_offset + r.offset_delta) continue;
            if (r.value_len < 0 && old) continue; /* expired tombstone */
        }
        keep[kept++] = (storage_build_record){r.offset_delta, r.timestamp_delta, r.key, r.key_len,
                                              r.value, r.value_len, r.headers, r.headers_size};
    }
    /* Raft logs keep every batch, so long runs of emptied batches appear. A Kafka client
     * that gets a Fetch answer holding only empty batches takes it for a record too large to
     * fetch (librdkafka doubles its fetch size, then reports MSG_SIZE_TOO_LARGE after 10 such
     * answers). So an emptied batch keeps its last record at the end of a segment and once
     * per COMPACT_FILLER_BYTES of output without a record: any read of at least that much,
     * and any read to a segment's end, holds a record. That record is superseded (a newer
     * one of its key exists: otherwise it would have been kept), so it is kept as a
     * tombstone of its key: a reader that replays the log in order still ends with the
     * newest value of every key, and a key whose newest record was an expired tombstone
     * (dropped) stays deleted rather than coming back with an old value. */
    if (rc == 0 && cs->keep_all && kept == 0 && last_i >= 0 && last.key_len >= 0 &&
        (seg_last || cs->out_norec >= COMPACT_FILLER_BYTES)) {
        last.value = NULL;
        last.value_len = -1;
        last.headers = NULL;
        last.headers_size = 0;
        keep[kept++] = last;
        filler = true;
    }
    if (rc == 0 && cs->keep_all) cs->out_norec = kept ? 0 : cs->out_norec + STORAGE_BATCH_HEADER;
    if (rc == 0) {
        if (kept == n && !owned && !filler) {
            rc = out_batch(log, seg, b, sz);
        } else if (kept > 0 || seg_last || cs->keep_all) {
            /* A segment's last batch stays, emptied if need be, so the segment keeps its last
             * offset (Kafka does the same). On a Raft log every batch stays: a batch is a Raft
             * entry, and replicas (compacted or not) must agree on entry boundaries and terms
             * for log matching and catch-up. */
            storage_build_params p = {h->base_offset, h->leader_epoch, h->attributes,
                                      h->last_offset_delta, h->base_timestamp, h->max_timestamp,
                                      h->producer_id, h->producer_epoch, h->base_sequence};
            size_t need = storage_batch_build_size(keep, kept);
            uint8_t *nb = malloc(need);
            if (!nb) rc = -ENOMEM;
            else {
                int64_t bs = storage_batch_build(nb, need, &p, keep, kept);
                rc = bs < 0 ? (int)bs : out_batch(log, seg, nb, (size_t)bs);
                free(nb);
            }
        }
    }
    free(keep);
    free(owned);
    return rc;
}

/* Replaces seg's data file with the cleaned output. */
static int swap_segment(storage_log *log, segment *seg)
{
    compact_state *cs = &log->cs;
    char from[SEG_PATH_MAX + 16], to[SEG_PATH_MAX + 16];
    int rc = out_flush(log);
    if (rc == 0) rc = io_fs_fsync(log->io, cs->out_fd);
    io_fs_close(log->io, cs->out_fd);
    cs->out_fd = -1;
    if (rc < 0) return rc;
    snprintf(from, sizeof(from), "%s.log.cleaned", seg->stem);
    snprintf(to, sizeof(to), "%s.log", seg->stem);
    if ((rc = io_fs_rename(log->io, from, to)) < 0) return rc;
    if ((rc = io_fs_fsync_dir(log->io, log->dir)) < 0) return rc;
    int fd = seg_open_data(log, to, O_RDWR);
    if (fd < 0) return fd;
    io_fs_close(log->io, seg->fd);
    seg->fd = fd;
    uint64_t old_size = seg->size;
    seg->size = seg->dsize = seg->wsize = seg->alloc = cs->out_size;
    if (cs->out_nidx) seg->last = seg->dlast = cs->out_last;
    seg->max_ts = cs->out_max_ts;
    free(seg->idx);
    free(seg->tidx);
    seg->idx = cs->out_idx;
    seg->nidx = cs->out_nidx;
    seg->cidx = cs->out_cidx;
    seg->tidx = cs->out_tidx;
    seg->ntidx = cs->out_ntidx;
    seg->ctidx = cs->out_ctidx;
    seg->last_idx_pos = cs->out_last_idx_pos;
    cs->out_idx = NULL;
    cs->out_tidx = NULL;
    cs->out_nidx = cs->out_cidx = cs->out_ntidx = cs->out_ctidx = 0;
    seg->cleaned = true;
    if (log->cfg.cache) storage_cache_drop(log->cfg.cache, log->cfg.log_id, seg->base, seg->last);
    log_debug("storage", "compacted %s.log: %" PRIu64 " -> %" PRIu64 " bytes", seg->stem,
              old_size, seg->size);
    return seg_write_indexes(log, log->io, seg, true);
}

/* Phase 2 step: rewrites up to budget bytes of input. */
static int rewrite_step(storage_log *log, size_t budget, uint8_t **buf, size_t *cap)
{
    compact_state *cs = &log->cs;
    size_t done = 0;
    int rc;
    while (done < budget) {
        if (cs->seg >= AL_MIN(cs->nmapped, compactable(log))) {
            kmap_free(cs->map);
            cs->map = NULL;
            cs->phase = 0;
            return 0;
        }
        segment *seg = log->segs[cs->seg];
        if (cs->out_fd < 0) {
            char path[SEG_PATH_MAX + 16];
            snprintf(path, sizeof(path), "%s.log.cleaned", seg->stem);
            cs->out_fd = io_fs_open(log->io, path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            if (cs->out_fd < 0) return cs->out_fd;
            cs->out_size = 0;
            cs->out_len = 0;
            cs->out_nidx = cs->out_ntidx = 0;
            cs->out_last_idx_pos = 0;
            cs->out_last = seg->base - 1;
            cs->out_max_ts = INT64_MIN;
        }
        if (cs->pos >= seg->size) {
            if ((rc = swap_segment(log, seg)) < 0) return rc;
            cs->seg++;
            cs->pos = 0;
            continue;
        }
        storage_batch_hdr h;
        int64_t sz = read_batch(log, seg, cs->pos, buf, cap, &h);
        if (sz < 0) return (int)sz;
        bool seg_last = cs->pos + (uint64_t)sz >= seg->size;
        if ((rc = rewrite_batch(log, seg, *buf, (size_t)sz, &h, seg_last)) < 0) return rc;
        cs->pos += (uint64_t)sz;
        done += (size_t)sz;
    }
    return 1;
}

int log_compact_step(storage_log *log, int64_t now_ms, size_t budget)
{
    log->cs.limit = INT64_MAX;
    log->cs.keep_all = false;
    return compact_step(log, now_ms, budget);
}

int log_compact_step_raft(storage_log *log, int64_t now_ms, size_t budget, int64_t max_offset)
{
    log->cs.limit = max_offset;
    log->cs.keep_all = true;
    return compact_step(log, now_ms, budget);
}

/* One bounded step with the limit and keep_all mode already set in log->cs. */
static int compact_step(storage_log *log, int64_t now_ms, size_t budget)
{
    compact_state *cs = &log->cs;
    if (log->failed) return AL_EFAILED;
    if (cs->phase == 0) {
        int n = compactable(log);
        bool dirty = false;
        for (int i = 0; i < n; i++) dirty |= !log->segs[i]->cleaned;
        if (!dirty) return 0;
        cs->map = calloc(1, sizeof(kmap));
        if (!cs->map) return -ENOMEM;
        cs->phase = 1;
        cs->seg = 0;
        cs->pos = 0;
        cs->now_ms = now_ms;
    }
    uint8_t *buf = NULL;
    size_t cap = 0;
    int rc = cs->phase == 1 ? map_step(log, budget, &buf, &cap)
                            : rewrite_step(log, budget, &buf, &cap);
    free(buf);
    if (rc < 0) {
        log_warn("storage", "compaction of %s stopped: %s", log->dir, al_strerror(rc));
        if (cs->out_fd >= 0) {
            char path[SEG_PATH_MAX + 16];
            io_fs_close(log->io, cs->out_fd);
            cs->out_fd = -1;
            if (cs->seg < log->nsegs) {
                snprintf(path, sizeof(path), "%s.log.cleaned", log->segs[cs->seg]->stem);
                io_fs_unlink(log->io, path);
            }
        }
        log_compact_reset(log);
    }
    return rc;
}
