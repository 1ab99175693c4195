/*
 * log.c — the partition log: segments, append with offset assignment, group commit (one write
 * and one fdatasync per segment per flush, waiters woken up to the flushed offset), reads
 * (batch cache, unflushed memory, async O_DIRECT disk reads), recovery, suffix truncation,
 * start offset / retention, and the on-disk index and metadata formats. See log.h and
 * docs/ARCHITECTURE.md "## Storage".
 */
#include "storage/log_impl.h"

#include "base/crc32c.h"
#include "base/cursor.h"
#include "base/log.h"
#include "metrics/metrics.h"
#include "storage/batch.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#define META_MAGIC 0x414c4d54u  /* "ALMT" */
#define IDX_MAGIC 0x414c4958u   /* "ALIX" */
#define TIDX_MAGIC 0x414c5449u  /* "ALTI" */
#define FMT_VERSION 1u
#define SCAN_CHUNK (1u << 20) /* recovery scan read size */
#define SCAN_READ (4u << 20)  /* sequential read size of the header scan */
#define CLEAN_INDEX_MIN (8u << 20) /* clean close indexes active segments at least this big */
#define CACHE_REF_MIN 4096u /* appended batches at least this big are cached by reference */

enum { FS_IDLE, FS_FALLOC, FS_WRITE, FS_SYNC };

static void flush_kick(storage_log *log);
static void reads_unpark(storage_log *log);
static void trunc_try(storage_log *log);
static int log_truncate(storage_log *log, int64_t offset, int werr);
static void log_fail(storage_log *log, const char *what, int err);
static void waiters_wake(storage_log *log, int64_t upto, int err);
static void fin_kick(storage_log *log);

/* Off by default: measured in BENCHMARKS.md (2026-11-24, session 8, ha8): the broker flat out
 * gained with 16 MiB segments and lost with the default 128 MiB ones. */
#define SPARE_FILES_DEFAULT false /* see "spare files" */

void storage_log_config_default(storage_log_config *c)
{
    memset(c, 0, sizeof(*c));
    c->segment_bytes = 128u << 20;
    c->segment_ms = 7LL * 24 * 3600 * 1000;
    c->fallocate_step = 32u << 20;
    c->prezero_bytes = 2u << 20;
    c->retention_bytes = -1;
    c->retention_ms = 7LL * 24 * 3600 * 1000;
    c->cleanup_policy = STORAGE_CLEANUP_DELETE;
    c->delete_retention_ms = 24LL * 3600 * 1000;
    c->max_message_bytes = (1u << 20) + 12;
    c->flush_bytes = 1u << 20;
    c->index_interval_bytes = 4096;
    c->ckpt_bytes = 64u << 20;
    c->ckpt_ms = 10000;
    const char *ck = getenv("AILURUS_CKPT_BYTES"); /* for tests: checkpoints at small sizes */
    if (ck && *ck) c->ckpt_bytes = strtoull(ck, NULL, 0);
    c->spare_files = SPARE_FILES_DEFAULT;
    const char *sp = getenv("AILURUS_SPARE_FILES"); /* A/B runs of one binary */
    if (sp && *sp) c->spare_files = atoi(sp) != 0;
}

/* ---- small helpers ---- */

static void *aligned_alloc_raw(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, SEG_ALIGN, AL_ALIGN_UP(n, (size_t)SEG_ALIGN)) != 0) return NULL;
    return p;
}

int seg_idx_add(idx_ent **v, uint32_t *n, uint32_t *c, uint32_t rel, uint32_t pos)
{
    if (*n == *c) {
        uint32_t nc = *c ? *c * 2 : 64;
        idx_ent *nv = realloc(*v, nc * sizeof(**v));
        if (!nv) return -ENOMEM;
        *v = nv;
        *c = nc;
    }
    (*v)[(*n)++] = (idx_ent){rel, pos};
    return 0;
}

int seg_tidx_add(tidx_ent **v, uint32_t *n, uint32_t *c, int64_t ts, uint32_t rel)
{
    if (*n == *c) {
        uint32_t nc = *c ? *c * 2 : 64;
        tidx_ent *nv = realloc(*v, nc * sizeof(**v));
        if (!nv) return -ENOMEM;
        *v = nv;
        *c = nc;
    }
    (*v)[(*n)++] = (tidx_ent){ts, rel};
    return 0;
}

/* Records one batch (at pos, header h) in seg's indexes and summary fields. The indexes are
 * sparse: an entry that cannot be allocated is skipped (lookups then scan a little further),
 * so this never fails. */
static int seg_note_batch(storage_log *log, segment *seg, uint64_t pos,
                          const storage_batch_hdr *h)
{
    int64_t last = storage_batch_last_offset(h);
    if (h->max_timestamp > seg->max_ts) seg->max_ts = h->max_timestamp;
    if (seg->nidx == 0 || pos - seg->last_idx_pos >= log->cfg.index_interval_bytes) {
        uint32_t rel = (uint32_t)(h->base_offset - seg->base);
        if (seg_idx_add(&seg->idx, &seg->nidx, &seg->cidx, rel, (uint32_t)pos) == 0) {
            if (seg_tidx_add(&seg->tidx, &seg->ntidx, &seg->ctidx, seg->max_ts, rel) < 0)
                seg->nidx--; /* keep the two indexes on the same batches */
            else seg->last_idx_pos = pos;
        }
    }
    seg->last = last;
    return 0;
}

static void seg_path(const segment *seg, const char *ext, char *out, size_t n)
{
    snprintf(out, n, "%s%s", seg->stem, ext);
}

void seg_bufs_drop(segment *seg)
{
    storage_chunk_disown(seg->bch);
    storage_chunk_disown(seg->fch);
    storage_chunk_disown(seg->pch);
    seg->bch = seg->fch = seg->pch = NULL;
    seg->buf = seg->fbuf = seg->pbuf = NULL;
    seg->bcap = seg->fcap = seg->pcap = 0;
}

static void seg_free(segment *seg)
{
    free(seg->idx);
    free(seg->tidx);
    seg_bufs_drop(seg);
    free(seg);
}

static segment *seg_new(storage_log *log, int64_t base, int32_t term)
{
    segment *seg = calloc(1, sizeof(*seg));
    if (!seg) return NULL;
    seg->base = base;
    seg->term = term;
    seg->last = base - 1;
    seg->dlast = base - 1;
    seg->max_ts = INT64_MIN;
    seg->fd = -1;
    seg->created_ms = io_wall_ms(log->io);
    seg->id = ++log->seg_ids;
    snprintf(seg->stem, sizeof(seg->stem), "%s/%020" PRId64 "-%" PRId32, log->dir, base, term);
    return seg;
}

/*
 * Capacity for a segment write buffer that must hold `need` bytes (4 KiB multiple) and has
 * `cur` now. Sizing is by the write window rather than by doubling: a quiet log stays at
 * 16 KiB, then 64 KiB; a log that gathers more than that while one write is in flight is busy,
 * and its buffer jumps in one step to what a write normally takes (flush_bytes plus one
 * largest batch), so the append path copies the buffer at most once or twice in a segment's
 * life instead of at every doubling. Beyond the window (many requests arriving during one slow
 * write) it doubles. An idle log gives the memory back (seg_buf_trim).
 */
static size_t seg_buf_cap(const storage_log *log, size_t cur, size_t need)
{
    if (need <= SEG_BUF_MIN) return SEG_BUF_MIN;
    if (need <= SEG_BUF_QUIET) return SEG_BUF_QUIET;
    /* One batch is bounded by flush_bytes here, not by max_message_bytes: the partition
     * manager sets that to INT32_MAX (Produce checks the topic's limit), and a 2 GiB window
     * made every busy log reserve 2 GiB twice (seconds of shadow-memory set-up per buffer
     * under ASan; address space that 10,000 partitions cannot have). A larger batch still
     * fits: beyond the window the capacity doubles until it does. */
    size_t batch = AL_MIN((size_t)log->cfg.max_message_bytes, (size_t)log->cfg.flush_bytes);
    size_t window = (size_t)AL_ALIGN_UP(log->cfg.flush_bytes + batch + SEG_ALIGN,
                                        (uint64_t)SEG_ALIGN);
    size_t cap = AL_MAX(window, cur * 2);
    for (int guard = 0; cap < need && guard < 64; guard++) cap *= 2;
    AL_ASSERT(cap >= need);
    return cap;
}

/*
 * Write buffers. Each write buffer lives in a chunk (cache.h) that never moves: appends put
 * their batches into the batch cache by reference into it (storage_cache_put_chunk) rather
 * than by a second copy, and nothing is ever written over bytes the cache points to: a chunk
 * is reused from its start only while nothing else references it (storage_chunk_exclusive),
 * otherwise the appends after a write continue in the same chunk past the write's last block
 * (seg_next_buf), or in a new chunk once less than a window is left; a chunk the cache still
 * points into is then left to the cache (which counts all of it). A busy log's chunk is one
 * and a half write windows (chunk_cap), so that a chunk the cache pins serves more than one
 * write.
 */
static size_t chunk_cap(size_t want)
{
    return want > SEG_BUF_QUIET ? AL_ALIGN_UP(want + want / 2, (size_t)SEG_ALIGN) : want;
}

/* Installs ch (one ownership, moved to the segment) as the current buffer, from buf on. */
static void seg_buf_set(segment *seg, storage_chunk *ch, uint8_t *buf, uint64_t bbase)
{
    seg->bch = ch;
    seg->buf = buf;
    seg->bcap = (size_t)(ch->mem + ch->cap - buf);
    seg->bbase = bbase;
}

/* Makes sure seg->buf can hold file bytes up to `end` (one allocation and copy when it must
 * grow, sized by seg_buf_cap). Only called when seg->buf is not in flight (the in-flight copy
 * is fbuf). Returns 0 or -ENOMEM (the buffer is unchanged). */
static int seg_buf_reserve(storage_log *log, segment *seg, uint64_t end)
{
    size_t need = (size_t)(AL_ALIGN_UP(end, (uint64_t)SEG_ALIGN) - seg->bbase);
    if (need <= seg->bcap && seg->buf) return 0;
    /* Past the end of a chunk carved from (seg_next_buf) the window stays as it is. */
    size_t cap = need <= seg->bwant ? seg->bwant : seg_buf_cap(log, seg->bwant, need);
    /* bytes past size are zeroed when written */
    storage_chunk *ch = storage_chunk_new(chunk_cap(cap));
    if (!ch) return -ENOMEM;
    if (seg->buf && seg->size > seg->bbase) {
        memcpy(ch->mem, seg->buf, (size_t)(seg->size - seg->bbase));
        log->buf_regrows++;
    }
    storage_chunk_disown(seg->bch);
    seg_buf_set(seg, ch, ch->mem, seg->bbase);
    seg->bwant = cap;
    return 0;
}

/*
 * The buffer appends go to once the current one goes in flight up to file position wend: the
 * spare chunk (*spare, the last write's) when nothing else holds it (as before chunks: two
 * buffers taking turns, whose first bytes stay warm in the CPU caches); when something does
 * (the cache), the rest of the current chunk if a window (bwant) is left after the write's
 * last block (so the appends during this write never regrow it with a copy), else a new
 * chunk. The spare's ownership is used or dropped (*spare = NULL). Returns 0 or -ENOMEM
 * (nothing changed).
 */
static int seg_next_buf(segment *seg, storage_chunk **spare, uint64_t wend, storage_chunk **nch,
                        uint8_t **nbuf)
{
    size_t used = (size_t)(wend - seg->bbase);
    AL_ASSERT(used <= seg->bcap);
    storage_chunk *sp = *spare;
    bool pinned = sp && !storage_chunk_exclusive(sp);
    if (sp && !pinned && sp->cap >= seg->bwant) {
        *nch = sp;
        *nbuf = sp->mem;
    } else if (pinned && seg->bcap - used >= seg->bwant) {
        storage_chunk_own(seg->bch);
        *nch = seg->bch;
        *nbuf = seg->buf + used;
        storage_chunk_disown(sp);
    } else {
        storage_chunk *ch = storage_chunk_new(chunk_cap(seg->bwant));
        if (!ch) return -ENOMEM;
        storage_chunk_disown(sp);
        *nch = ch;
        *nbuf = ch->mem;
    }
    *spare = NULL;
    return 0;
}

/*
 * Gives an idle log's write memory back: when everything appended to the active segment is
 * durable, nothing is in flight and nothing was appended since the previous call, frees the
 * spare (last write's) buffer and shrinks the current one to SEG_BUF_MIN (it then holds at
 * most the partial tail block). Called from housekeeping, never on the append path.
 */
static void seg_buf_trim(storage_log *log, segment *seg)
{
    bool idle = seg->size == seg->trim_size;
    seg->trim_size = seg->size;
    if (!idle || log->wbusy || log->sbusy || log->npend || seg->finished ||
        seg->dsize != seg->size || seg->wsize != seg->size || !seg->buf)
        return;
    storage_chunk_disown(seg->fch);
    seg->fch = NULL;
    seg->fbuf = NULL;
    seg->fcap = 0;
    storage_chunk_disown(seg->pch);
    seg->pch = NULL;
    seg->pbuf = NULL;
    seg->pcap = 0;
    if (seg->bch->cap <= SEG_BUF_MIN) return;
    storage_chunk *ch = storage_chunk_new(SEG_BUF_MIN);
    if (!ch) return; /* keep the big one */
    AL_ASSERT(seg->size - seg->bbase <= SEG_ALIGN);
    memcpy(ch->mem, seg->buf, (size_t)(seg->size - seg->bbase));
    storage_chunk_disown(seg->bch);
    seg_buf_set(seg, ch, ch->mem, seg->bbase);
    seg->bwant = SEG_BUF_MIN;
}

/* Loads the partial tail block [align_down(size), size) of seg into a fresh write buffer. */
static int seg_load_tail(storage_log *log, segment *seg)
{
    uint64_t bb = AL_ALIGN_DOWN(seg->size, (uint64_t)SEG_ALIGN);
    storage_chunk *ch = storage_chunk_new(SEG_BUF_MIN);
    if (!ch) return -ENOMEM;
    if (seg->size > bb) {
        int rc = seg_read_sync(log, seg, bb, ch->mem, (size_t)(seg->size - bb));
        if (rc < 0) {
            storage_chunk_disown(ch);
            return rc;
        }
    }
    storage_chunk_disown(seg->bch);
    seg_buf_set(seg, ch, ch->mem, bb);
    seg->bwant = SEG_BUF_MIN;
    return 0;
}

int seg_read_sync(storage_log *log, segment *seg, uint64_t pos, void *dst, size_t len)
{
    if (pos + len > seg->size) return AL_ERANGE;
    uint8_t *out = dst;
    /* Bytes in the write buffer first (the newest copy). */
    if (seg->buf && pos + len > seg->bbase) {
        uint64_t from = AL_MAX(pos, seg->bbase);
        memcpy(out + (from - pos), seg->buf + (from - seg->bbase), (size_t)(pos + len - from));
        len = (size_t)(from - pos);
        if (!len) return 0;
    }
    /* Then the pipelined write's buffer [pbase, pend) (empty when there is none), then the
     * oldest write's: [fbase, fend), which with them covers everything below bbase that may
     * not be on disk (a flush in flight, or one that failed). */
    if (seg->pbuf && seg->pend > seg->pbase && pos + len > seg->pbase && pos + len <= seg->pend) {
        uint64_t from = AL_MAX(pos, seg->pbase);
        memcpy(out + (from - pos), seg->pbuf + (from - seg->pbase), (size_t)(pos + len - from));
        len = (size_t)(from - pos);
        if (!len) return 0;
    }
    if (seg->fbuf && pos + len > seg->fbase && pos + len <= seg->fend) {
        uint64_t from = AL_MAX(pos, seg->fbase);
        memcpy(out + (from - pos), seg->fbuf + (from - seg->fbase), (size_t)(pos + len - from));
        len = (size_t)(from - pos);
        if (!len) return 0;
    }
    /* The rest from disk through an aligned bounce buffer. */
    uint64_t a = AL_ALIGN_DOWN(pos, (uint64_t)SEG_ALIGN);
    uint64_t e = AL_ALIGN_UP(pos + len, (uint64_t)SEG_ALIGN);
    uint8_t *bounce = aligned_alloc_raw((size_t)(e - a));
    if (!bounce) return -ENOMEM;
    ssize_t r = io_fs_pread(log->io, seg->fd, bounce, (size_t)(e - a), a);
    int rc = 0;
    if (r < 0) rc = (int)r;
    else if ((uint64_t)r < pos + len - a) rc = -EIO;
    else memcpy(out, bounce + (pos - a), len);
    free(bounce);
    return rc;
}

/* Opens a data file with O_DIRECT; where the file system refuses O_DIRECT (tmpfs: EINVAL),
 * falls back to buffered I/O with a warning (fdatasync still makes it durable; the buffers
 * stay aligned either way). Returns the fd or -errno. */
int seg_open_data(storage_log *log, const char *path, int flags)
{
    int fd = io_fs_open(log->io, path, flags | O_DIRECT | O_CLOEXEC, 0644);
    if (fd == -EINVAL) {
        fd = io_fs_open(log->io, path, flags | O_CLOEXEC, 0644);
        if (fd >= 0 && !log->warned_no_direct) {
            log_warn("storage", "%s: O_DIRECT is not supported here; using buffered I/O", path);
            log->warned_no_direct = true;
        }
    }
    return fd;
}

/* ---- index files and metadata ---- */

int seg_write_indexes(storage_log *log, io *iop, segment *seg, bool durable)
{
    int (*put)(io *, const char *, const void *, size_t) =
        durable ? io_fs_write_atomic : io_fs_write_lazy;
    char path[SEG_PATH_MAX + 16];
    size_t n = 48 + (size_t)seg->nidx * 8 + 4;
    size_t tn = 48 + (size_t)seg->ntidx * 12 + 4;
    uint8_t *b = malloc(AL_MAX(n, tn));
    if (!b) return -ENOMEM;
    al_wr wr = al_wr_make(b, n);
    al_wr_u32(&wr, IDX_MAGIC);
    al_wr_u32(&wr, FMT_VERSION);
    al_wr_i64(&wr, seg->base);
    al_wr_i64(&wr, seg->last);
    al_wr_u64(&wr, seg->size);
    al_wr_i64(&wr, seg->max_ts);
    al_wr_u32(&wr, seg->nidx);
    al_wr_u32(&wr, (uint32_t)seg->term);
    for (uint32_t i = 0; i < seg->nidx; i++) {
        al_wr_u32(&wr, seg->idx[i].rel);
        al_wr_u32(&wr, seg->idx[i].pos);
    }
    al_wr_u32(&wr, crc32c(0, b, n - 4));
    AL_ASSERT(!wr.err);
    seg_path(seg, ".index", path, sizeof(path));
    int rc = put(iop, path, b, n);
    if (rc == 0) {
        wr = al_wr_make(b, tn);
        al_wr_u32(&wr, TIDX_MAGIC);
        al_wr_u32(&wr, FMT_VERSION);
        al_wr_i64(&wr, seg->base);
        al_wr_i64(&wr, seg->last);
        al_wr_u64(&wr, seg->size);
        al_wr_i64(&wr, seg->max_ts);
        al_wr_u32(&wr, seg->ntidx);
        al_wr_u32(&wr, (uint32_t)seg->term);
        for (uint32_t i = 0; i < seg->ntidx; i++) {
            al_wr_i64(&wr, seg->tidx[i].ts);
            al_wr_u32(&wr, seg->tidx[i].rel);
        }
        al_wr_u32(&wr, crc32c(0, b, tn - 4));
        AL_ASSERT(!wr.err);
        seg_path(seg, ".timeindex", path, sizeof(path));
        rc = put(iop, path, b, tn);
    }
    free(b);
    return rc;
}

/* Loads one index file of seg and checks it against the data file size. Returns 0 or an
 * error (the caller rebuilds by scanning). */
static int seg_load_index_file(storage_log *log, segment *seg, bool time, int64_t fsize)
{
    char path[SEG_PATH_MAX + 16];
    seg_path(seg, time ? ".timeindex" : ".index", path, sizeof(path));
    uint8_t *b = NULL;
    size_t len = 0;
    int rc = io_fs_read_all(log->io, path, 64u << 20, &b, &len);
    if (rc < 0) return rc;
    rc = AL_ECORRUPT;
    if (len < 52 || crc32c(0, b, len - 4) != al_be32(b + len - 4)) goto out;
    al_rd rd = al_rd_make(b, len - 4);
    uint32_t magic = al_rd_u32(&rd), ver = al_rd_u32(&rd);
    int64_t base = al_rd_i64(&rd), last = al_rd_i64(&rd);
    uint64_t size = al_rd_u64(&rd);
    int64_t max_ts = al_rd_i64(&rd);
    uint32_t cnt = al_rd_u32(&rd), term = al_rd_u32(&rd);
    if (magic != (time ? TIDX_MAGIC : IDX_MAGIC) || ver != FMT_VERSION || base != seg->base ||
        (int32_t)term != seg->term || size != (uint64_t)fsize || last < base - 1 ||
        al_rd_left(&rd) != (size_t)cnt * (time ? 12 : 8) || (size == 0) != (cnt == 0))
        goto out;
    uint32_t prev_rel = 0;
    for (uint32_t i = 0; i < cnt; i++) {
        if (time) {
            int64_t ts = al_rd_i64(&rd);
            uint32_t rel = al_rd_u32(&rd);
            if ((i && rel <= prev_rel) || (int64_t)rel > last - base) goto out;
            if (seg_tidx_add(&seg->tidx, &seg->ntidx, &seg->ctidx, ts, rel) < 0) goto out;
            prev_rel = rel;
        } else {
            uint32_t rel = al_rd_u32(&rd), pos = al_rd_u32(&rd);
            if ((i && (rel <= prev_rel || pos <= seg->idx[i - 1].pos)) || pos >= size ||
                (int64_t)rel > last - base || (i == 0 && pos != 0))
                goto out;
            if (seg_idx_add(&seg->idx, &seg->nidx, &seg->cidx, rel, pos) < 0) goto out;
            prev_rel = rel;
        }
    }
    seg->last = last;
    seg->max_ts = max_ts;
    seg->size = size;
    rc = 0;
out:
    free(b);
    return rc;
}

static int meta_write(storage_log *log)
{
    uint8_t b[24];
    al_wr wr = al_wr_make(b, sizeof(b));
    al_wr_u32(&wr, META_MAGIC);
    al_wr_u32(&wr, FMT_VERSION);
    al_wr_i64(&wr, log->start);
    al_wr_u32(&wr, 0);
    al_wr_u32(&wr, crc32c(0, b, 20));
    char path[SEG_PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/log_meta", log->dir);
    return io_fs_write_atomic(log->io, path, b, sizeof(b));
}

static int meta_read(storage_log *log)
{
    char path[SEG_PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/log_meta", log->dir);
    uint8_t *b = NULL;
    size_t len = 0;
    int rc = io_fs_read_all(log->io, path, 4096, &b, &len);
    if (rc == -ENOENT) return 0;
    if (rc < 0) return rc;
    rc = AL_ECORRUPT;
    if (len == 24 && al_be32(b) == META_MAGIC && al_be32(b + 4) == FMT_VERSION &&
        crc32c(0, b, 20) == al_be32(b + 20)) {
        log->start = (int64_t)al_be64(b + 8);
        rc = log->start >= 0 ? 0 : AL_ECORRUPT;
    }
    free(b);
    return rc;
}

/* ---- segment lifecycle ---- */

/* Closes fd and unlinks the files of seg, then frees it. */
void seg_remove_files(io *iop, segment *seg)
{
    char path[SEG_PATH_MAX + 16];
    if (seg->fd >= 0) io_fs_close(iop, seg->fd);
    seg->fd = -1;
    static const char *const ext[] = {".log", ".index", ".timeindex", ".ckpt"};
    for (int k = 0; k < 4; k++) {
        seg_path(seg, ext[k], path, sizeof(path));
        io_fs_unlink(iop, path);
    }
}

static void seg_destroy_files(storage_log *log, segment *seg)
{
    AL_ASSERT(!seg->finishing); /* the finish job reads it: fin_wait first */
    seg_remove_files(log->io, seg);
    if (log->cfg.cache) storage_cache_drop(log->cfg.cache, log->cfg.log_id, seg->base, seg->last);
    seg_free(seg);
}

/*
 * The file half of finishing a sealed, durable segment: fix the file's final size (drop the
 * preallocated tail) and write its index files. Blocking system calls; reads only the
 * segment's immutable fields (fd, size, indexes), so it may run on the offload thread.
 *
 * `durable` = false (finish jobs) issues no sync at all: the data is durable already, and the
 * new size and the index files reach the disk with the file system's next commit. A crash
 * before that leaves the preallocated tail, or index files that are missing, short or stale;
 * seg_load_index_file refuses all of those (CRC over the file, size == the data file's size,
 * base and term), and recovery scans the segment instead. What that saves: 2 fsyncs, 2 directory
 * fsyncs and an fdatasync per segment, each a forced journal commit (a disk cache flush) that
 * the log's own durable writes queued behind: ~30 segments at once after a flat-out burst.
 * Close and compaction keep `durable` = true (the next start should not have to scan).
 */
static int seg_finish_files(storage_log *log, io *iop, segment *seg, bool durable)
{
    int rc = io_fs_ftruncate(iop, seg->fd, seg->size);
    if (rc == 0 && durable) rc = io_fs_fdatasync(iop, seg->fd);
    if (rc == 0) rc = seg_write_indexes(log, iop, seg, durable);
    if (rc == 0) seg_ckpt_unlink(iop, seg); /* the index files take over (log_ckpt.c) */
    return rc;
}

/* The memory half, on the shard: drop the buffers, mark it finished. Errors of the file half
 * are logged; the segment stays usable (indexes are rebuilt at recovery). */
static void seg_finish_mem(storage_log *log, segment *seg, int rc)
{
    if (rc < 0) log_warn("storage", "finishing segment %s: %s", seg->stem, al_strerror(rc));
    seg->alloc = seg->size;
    seg_bufs_drop(seg);
    seg->pbase = seg->pend = 0;
    seg->finished = true;
}

/* Finishes a sealed, fully durable segment on the calling thread (open and close paths). */
static void seg_finish(storage_log *log, segment *seg)
{
    AL_ASSERT(seg->sealed && seg->dsize == seg->size && !seg->finishing);
    seg_finish_mem(log, seg, seg_finish_files(log, log->io, seg, true));
}

static int segs_push(storage_log *log, segment *seg)
{
    if (log->nsegs == log->csegs) {
        if (log->csegs >= SEG_MAX) return AL_ETOOLARGE;
        int nc = log->csegs ? log->csegs * 2 : 8;
        segment **nv = realloc(log->segs, (size_t)nc * sizeof(*nv));
        if (!nv) return -ENOMEM;
        log->segs = nv;
        log->csegs = nc;
    }
    log->segs[log->nsegs++] = seg;
    return 0;
}

static void segs_remove_front(storage_log *log, int n)
{
    memmove(log->segs, log->segs + n, (size_t)(log->nsegs - n) * sizeof(*log->segs));
    log->nsegs -= n;
}

/*
 * ---- roll jobs ----
 *
 * A roll creates the next segment's file (open O_CREAT|O_TRUNC) and makes its name durable
 * (directory fsync): 1-2 ms each, far more behind a busy ext4 journal, so neither runs on the
 * shard. log_roll pushes the new segment at once (appends buffer into its memory as usual)
 * and hands the file work to io_offload in two jobs, one after the other: the create (its
 * callback sets the segment's fd; write_start does not write a segment without one), then the
 * directory fsync, which runs while the segment's first writes are in flight. Until that
 * second job's callback nothing in the segment counts as durable: its writes complete as usual
 * (seg->dsize, dlast: the bytes are on disk) but log->durable, and so every flush waiter, stays
 * below the segment's base (log_naming); the callback then moves it up to the segment's
 * durable end and wakes the waiters. So nothing is acknowledged before the segment's name is
 * durable (the synchronous roll's ordering) and the first writes do not wait for the
 * directory fsync. An empty active segment the roll replaces (a new term before any append)
 * leaves segs[] at once; the create job closes and unlinks its file first (the same directory
 * fsync covers both). At most one roll in flight per log: the new segment is always the last,
 * and a roll while the previous one's jobs are in flight waits for them (log_mk_wait, blocking:
 * the job not yet started runs inline; counted in roll_waits). Truncation, close, abandon and
 * Raft's restart/drop paths wait too. A failed job fails the log (log_fail); a crash before the
 * jobs ran leaves no file, an empty one, or one whose data was never acknowledged, which
 * recovery handles as any unflushed tail. A busy log's rolls skip both jobs' waits: they take
 * a spare file made ahead (see "spare files" below).
 */
static int mk_open_job(io *iop, void *arg)
{
    struct log_mk *m = arg;
    if (m->old) seg_remove_files(iop, m->old);
    char path[SEG_PATH_MAX + 16];
    seg_path(m->seg, ".log", path, sizeof(path));
    int flags = O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC;
    int fd = io_fs_open(iop, path, flags | O_DIRECT, 0644);
    if (fd == -EINVAL) { /* as seg_open_data: the file system refuses O_DIRECT */
        fd = io_fs_open(iop, path, flags, 0644);
        m->no_direct = fd >= 0;
    }
    return fd;
}

static int mk_dir_job(io *iop, void *arg)
{
    struct log_mk *m = arg;
    return io_fs_fsync_dir(iop, m->log->dir);
}

/* True while seg's name is not durable yet (its roll's directory fsync job in flight). */
static bool log_naming(const storage_log *log, const segment *seg)
{
    return log->cbusy && log->mk.seg == seg && log->mk.phase != 3;
}

/*
 * ---- spare files ----
 *
 * With the two jobs above a roll's segment counts as durable only after a directory fsync
 * that queues on the shard's one offload thread behind housekeeping's jobs, and its first
 * writes wait for the create. So a busy log keeps a spare file ready: spare-<k>.seg (k 0 or 1),
 * empty, created and its name made durable (directory fsync) by a job started when the active
 * segment passes half of segment_bytes, then by every roll that took one. A roll whose new
 * segment follows a segment holding data takes the spare's fd at once (spare_rolls): the
 * segment is written at once and counts as durable as soon as its writes are (no gate: the
 * file's name is durable already, and a durable write makes the data durable whatever the
 * file is called). Its job (phase 3, cbusy as any roll job) renames spare-<k>.seg to the
 * segment's name, creates spare-<1-k>.seg and fsyncs the directory; nothing waits for it but
 * the next roll, truncation, close and the Raft restart paths (log_mk_wait), as before.
 *
 * Crash at any point: a spare file holding a valid first batch (CRC) is the newest segment,
 * its rename not durable; recovery names it by that batch (base offset, leader epoch = the
 * segment's base and term), renames it and syncs the directory before anything new is
 * written, and the usual checks follow (a segment not continuing the previous one's last
 * offset is removed: data after a lost tail was never acknowledged). Any other spare file
 * (empty, zeros, a torn first batch: nothing in it was acknowledged) is deleted. Why this is
 * unambiguous: at most one spare file ever holds data (the next roll waits for the job whose
 * fsync made the previous rename durable), a spare is only taken when the segment before it
 * holds data (so no other file on disk has a base at or above the new segment's, which an
 * empty replaced segment would), the new spare's name differs from the one being renamed
 * (a create made durable before the rename cannot alias it), and a spare job starts only
 * with no roll job in flight. Clean close unlinks the spare (no sync: a spare that comes back
 * is empty and deleted at open). A failed spare create or fsync only stops spares for the log
 * (a warning; rolls then create files as above).
 */
static bool ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static void spare_path(const storage_log *log, int k, char *out, size_t cap)
{
    snprintf(out, cap, "%s/spare-%d.seg", log->dir, k);
}

static bool is_spare_name(const char *name)
{
    return strncmp(name, "spare-", 6) == 0 && ends_with(name, ".seg");
}

/* Creates (truncates) spare file k: fd or -errno; *no_direct when O_DIRECT was refused. */
static int spare_create(io *iop, const storage_log *log, int k, bool *no_direct)
{
    char path[SEG_PATH_MAX + 32];
    spare_path(log, k, path, sizeof(path));
    int flags = O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC;
    int fd = io_fs_open(iop, path, flags | O_DIRECT, 0644);
    *no_direct = false;
    if (fd == -EINVAL) {
        fd = io_fs_open(iop, path, flags, 0644);
        *no_direct = fd >= 0;
    }
    return fd;
}

/* The spare job: a spare file whose name is durable. fd or -errno. */
static int spare_job(io *iop, void *arg)
{
    struct log_spare *sp = arg;
    int fd = spare_create(iop, sp->log, sp->k, &sp->no_direct);
    if (fd < 0) return fd;
    int rc = io_fs_fsync_dir(iop, sp->log->dir);
    if (rc < 0) {
        io_fs_close(iop, fd);
        return rc;
    }
    return fd;
}

/* The roll job of a roll that took the spare (phase 3): the segment gets its name; the next
 * spare is created (its failure only leaves none: next_fd < 0); one directory fsync covers
 * both (see above for why the order within does not matter). */
static int mk_rename_job(io *iop, void *arg)
{
    struct log_mk *m = arg;
    char from[SEG_PATH_MAX + 32], to[SEG_PATH_MAX + 16];
    spare_path(m->log, m->spare_k, from, sizeof(from));
    seg_path(m->seg, ".log", to, sizeof(to));
    int rc = io_fs_rename(iop, from, to);
    if (rc < 0) return rc;
    if (m->make_next) m->next_fd = spare_create(iop, m->log, !m->spare_k, &m->next_no_direct);
    rc = io_fs_fsync_dir(iop, m->log->dir);
    if (rc < 0 && m->next_fd >= 0) {
        io_fs_close(iop, m->next_fd);
        m->next_fd = rc;
    }
    return rc;
}

static void spare_off(storage_log *log, int err)
{
    if (log->spare_off || err == -ECANCELED) return;
    log->spare_off = true;
    log_warn("storage", "log %s: creating a spare segment file: %s; rolls create their "
             "files", log->dir, al_strerror(err));
}

/* A spare ready (fd) or an error, from either job. */
static void spare_set(storage_log *log, int fd, int k, bool no_direct)
{
    if (fd < 0) {
        spare_off(log, fd);
        return;
    }
    AL_ASSERT(log->spare_fd < 0);
    log->spare_fd = fd;
    log->spare_k = k;
    log->spare_no_direct = no_direct;
}

/* The rename job's next spare (res: the job's result). */
static void spare_took_next(storage_log *log, int res)
{
    struct log_mk *m = &log->mk;
    if (res >= 0 && m->make_next) spare_set(log, m->next_fd, !m->spare_k, m->next_no_direct);
    m->next_fd = -1; /* on a failed job: closed by it, or never created */
}

static void sp_apply(storage_log *log, int res)
{
    AL_ASSERT(log->spbusy);
    log->spbusy = false;
    spare_set(log, res, log->sp.k, log->sp.no_direct);
}

static void sp_done(io_op *op)
{
    sp_apply(op->ctx, op->res);
}

static void log_spare_wait(storage_log *log)
{
    if (log->spbusy) sp_apply(log, io_offload_finish(log->io, &log->sp.op));
}

/* After an append: a busy log (active segment past half of segment_bytes) with no spare,
 * no spare job and no roll job in flight starts the spare job. */
static void log_spare_maybe(storage_log *log)
{
    if (!log->cfg.spare_files || log->spare_fd >= 0 || log->spbusy || log->cbusy ||
        log->spare_off || log->failed ||
        !log->nsegs || log->segs[log->nsegs - 1]->size < log->cfg.segment_bytes / 2)
        return;
    struct log_spare *sp = &log->sp;
    sp->log = log;
    sp->k = log->spare_k;
    sp->no_direct = false;
    sp->op = (io_op){.cb = sp_done, .ctx = log};
    log->spbusy = true;
    io_offload(log->io, &sp->op, spare_job, sp);
}

/* Close: the spare goes (no sync: one that comes back is deleted at open). */
static void log_spare_drop(storage_log *log, bool unlink_it)
{
    log_spare_wait(log);
    if (log->spare_fd < 0) return;
    io_fs_close(log->io, log->spare_fd);
    log->spare_fd = -1;
    if (!unlink_it) return;
    char path[SEG_PATH_MAX + 32];
    spare_path(log, log->spare_k, path, sizeof(path));
    io_fs_unlink(log->io, path);
}

static void mk_done(io_op *op);

static void mk_fail(storage_log *log, segment *seg, const char *step, int res)
{
    if (res >= 0 || res == -ECANCELED || log->failed) return;
    char what[SEG_PATH_MAX + 160];
    snprintf(what, sizeof(what), "creating segment file %s.log (%s); check the data "
             "directory's permissions, space and inodes", seg->stem, step);
    log_fail(log, what, res);
}

/* A job's result, on the shard (callback, or log_mk_wait with wait set: then the directory
 * fsync job runs inline too; waiters are not called here: mk_done, truncation or the next
 * roll's callback wake them). res -ECANCELED: the job never ran (crashed simulator io).
 * Returns true when log->durable moved up. */
static bool mk_apply(storage_log *log, int res, bool wait)
{
    struct log_mk *m = &log->mk;
    segment *seg = m->seg;
    AL_ASSERT(log->cbusy && seg);
    log->fin_want = true; /* the sealed segment waits for no roll job now (seg_finishable) */
    if (m->phase == 3) { /* the spare's rename (see "spare files"): nothing waited for it */
        log->cbusy = false;
        m->seg = NULL;
        log->roll_jobs++;
        spare_took_next(log, res);
        mk_fail(log, seg, "renaming the spare file to it, or the directory fsync", res);
        return false;
    }
    if (m->phase == 1) {
        AL_ASSERT(seg->fd < 0);
        if (m->old) {
            m->old->fd = -1; /* closed by the job, or never to be */
            seg_free(m->old);
            m->old = NULL;
        }
        if (m->no_direct && !log->warned_no_direct) {
            log->warned_no_direct = true;
            log_warn("storage", "O_DIRECT not supported for %s.log; using buffered I/O",
                     seg->stem);
        }
        if (res >= 0) {
            seg->fd = res;
            m->phase = 2;
            m->op = (io_op){.cb = mk_done, .ctx = log};
            io_offload(log->io, &m->op, mk_dir_job, m);
            if (!wait) return false;
            res = io_offload_finish(log->io, &m->op);
        }
    }
    log->cbusy = false;
    m->seg = NULL;
    log->roll_jobs++;
    mk_fail(log, seg, m->phase == 1 ? "open" : "directory fsync", res);
    /* Its writes that completed while the name was not durable count now (dsize 0: none did;
     * dlast is then base - 1, the previous segment's end, maybe not durable yet). Writes run
     * oldest segment first, so older segments are durable when this one has bytes durable. */
    if (res < 0 || log->failed || seg->dsize == 0 || seg->dlast <= log->durable) return false;
    log->durable = seg->dlast;
    return true;
}

static void mk_done(io_op *op)
{
    storage_log *log = op->ctx;
    mk_apply(log, op->res, false);
    if (log->failed) return;
    /* log->durable may have moved up here, or in a log_mk_wait that woke nobody */
    waiters_wake(log, log->durable, 0);
    if (log->parked) reads_unpark(log);
    if (!log->failed) flush_kick(log); /* writes of the new segment waited for its fd */
    log_spare_maybe(log); /* appends past half a segment found this job in flight */
    fin_kick(log); /* the segment this roll sealed, when durable already */
}

void log_mk_wait(storage_log *log)
{
    if (!log->cbusy) return;
    mk_apply(log, io_offload_finish(log->io, &log->mk.op), true);
}

/* Creates a new active segment at the next offset with `term` (its file by a roll job, see
 * above). Seals the current active segment, or replaces it when it is empty. Returns 0, 1 if
 * it waited for the previous roll's job (the caller kicks the flush for its waiters), or
 * -errno / AL_EFAILED. */
static int log_roll(storage_log *log, int32_t term)
{
    int waited = 0;
    if (log->cbusy) {
        log->roll_waits++;
        log_mk_wait(log);
        if (log->failed) return AL_EFAILED;
        waited = 1;
    }
    segment *seg = seg_new(log, log->high, term);
    if (!seg) return -ENOMEM;
    int rc = seg_buf_reserve(log, seg, SEG_ALIGN);
    segment *old = NULL;
    if (rc == 0 && log->nsegs) { /* an empty active segment is replaced, not kept (same base) */
        segment *a = log->segs[log->nsegs - 1];
        if (a->size == 0) {
            AL_ASSERT(!a->finishing && !(log->zbusy && log->zseg == a));
            old = a;
            log->nsegs--;
        }
    }
    if (rc == 0) rc = segs_push(log, seg); /* cannot fail when old left a slot */
    if (rc < 0) {
        seg_free(seg);
        return rc;
    }
    if (log->nsegs > 1) { /* finished by a finish job once durable (fin_kick) */
        log->segs[log->nsegs - 2]->sealed = true;
        log->fin_want = true;
    }
    struct log_mk *m = &log->mk;
    m->log = log;
    m->seg = seg;
    m->old = old;
    m->no_direct = false;
    m->next_fd = -1;
    m->op = (io_op){.cb = mk_done, .ctx = log};
    log->cbusy = true;
    if (log->spare_fd >= 0 && !old && log->nsegs > 1) { /* see "spare files" */
        seg->fd = log->spare_fd;
        log->spare_fd = -1;
        m->spare_k = log->spare_k;
        m->make_next = log->cfg.spare_files; /* the config may have changed since */
        m->phase = 3;
        log->spare_rolls++;
        io_offload(log->io, &m->op, mk_rename_job, m);
        return waited;
    }
    m->phase = 1;
    io_offload(log->io, &m->op, mk_open_job, m);
    return waited;
}

static bool seg_finishable(const storage_log *log, const segment *s)
{
    /* not while its roll job is in flight (a segment sealed by age right after its roll:
     * compaction must not rename over a file whose own rename is still to come) */
    return s->sealed && !s->finished && !s->finishing && s->dsize == s->size &&
           !(log->zbusy && log->zseg == s) && !(log->cbusy && log->mk.seg == s);
}

/* Finishes every sealed, fully durable segment on the calling thread (close, compaction of
 * everything); housekeeping uses finish jobs instead. */
static void log_finish_sealed(storage_log *log)
{
    for (int i = 0; i < log->nsegs; i++)
        if (seg_finishable(log, log->segs[i])) seg_finish(log, log->segs[i]);
}

/*
 * ---- finish jobs ----
 *
 * Finishing a sealed segment is ftruncate + fdatasync + two atomic index-file writes (each an
 * fsync, a rename and a directory fsync): 5+ blocking syncs per segment, ~30 ms per
 * housekeeping pass under a flat-out load, so they go to io_offload: one job
 * per log at a time, over up to LOG_FIN_MAX segments, each flagged `finishing` until the job's
 * callback runs on the shard (seg_finish_mem). While flagged, a segment is not deleted
 * (retention and log_delete_below_start stop before it; it goes at a later pass), truncated or
 * freed: truncation and close first wait for the job (fin_wait, blocking, rare paths).
 * Compaction only takes `finished` segments. The job reads only what a sealed segment never
 * changes (fd, size, indexes).
 *
 * A job starts as soon as a sealed segment is finishable (fin_kick): the events that can make
 * one so (a roll seals the previous segment, a segment's last bytes become durable, its roll
 * job or a zero-fill write completes, a finish job completes) set fin_want, and the
 * completions of the write, sync, roll, zero-fill and finish stages then start a job over
 * whatever is ready. Without that a flat-out run with 16 MiB segments (15-20 rolls a second)
 * kept ~100 sealed segments, each with its write buffers, unfinished until shutdown
 * (BENCHMARKS.md 2026-11-24 hf8). Housekeeping still starts one too (the fallback: an age
 * seal, or a segment that fin_want missed).
 */
static int fin_job(io *iop, void *arg)
{
    struct log_fin *f = arg;
    int first = 0;
    for (int i = 0; i < f->n; i++) {
        f->rc[i] = seg_finish_files(f->log, iop, f->segs[i], false);
        if (f->rc[i] < 0 && !first) first = f->rc[i];
    }
    return first;
}

/* The job's results, on the shard. A job that never ran (-ECANCELED: crashed simulator io)
 * leaves its segments unfinished. */
static void fin_apply(storage_log *log)
{
    struct log_fin *f = &log->fin;
    AL_ASSERT(log->fbusy);
    for (int i = 0; i < f->n; i++) {
        segment *seg = f->segs[i];
        AL_ASSERT(seg->finishing);
        seg->finishing = false;
        if (f->rc[i] != -ECANCELED) seg_finish_mem(log, seg, f->rc[i]);
    }
    f->n = 0;
    log->fbusy = false;
    log->fin_jobs++;
}

static void fin_done(io_op *op)
{
    storage_log *log = op->ctx;
    fin_apply(log);
    log->fin_want = true; /* the segments ready meanwhile, or beyond LOG_FIN_MAX */
    fin_kick(log);
}

static void fin_start(storage_log *log)
{
    if (log->fbusy || log->failed) return;
    struct log_fin *f = &log->fin;
    f->n = 0;
    for (int i = 0; i < log->nsegs && f->n < LOG_FIN_MAX; i++) {
        segment *s = log->segs[i];
        if (!seg_finishable(log, s)) continue;
        s->finishing = true;
        f->segs[f->n] = s;
        f->rc[f->n] = -ECANCELED; /* until the job ran */
        f->n++;
    }
    if (!f->n) return;
    f->log = log;
    log->fbusy = true;
    f->op = (io_op){.cb = fin_done, .ctx = log};
    io_offload(log->io, &f->op, fin_job, f);
}

/* Starts a finish job when a segment may have become finishable (fin_want) and none is in
 * flight. Not while a truncation waits (it would wait for the job). Reactor thread, from the
 * completions of the stages (never from the blocking wait paths). */
static void fin_kick(storage_log *log)
{
    if (!log->fin_want || log->fbusy || log->failed || log->trunc || log->fin_lazy) return;
    log->fin_want = false;
    fin_start(log);
}

/* Waits for the finish job in flight, if any (blocks the caller: truncation, close, Raft's
 * restart and tail drop). */
void log_fin_wait(storage_log *log)
{
    if (!log->fbusy) return;
    io_offload_finish(log->io, &log->fin.op);
    fin_apply(log);
    log->fin_want = true; /* starts nothing here: the next completion does (fin_kick) */
}

void storage_log_set_finish_lazy(storage_log *log, bool lazy)
{
    log->fin_lazy = lazy;
}

void storage_log_finish_wait(storage_log *log)
{
    log_fin_wait(log);
    if (!log->failed) log_finish_sealed(log);
}

/* ---- waiters ---- */

/* Wakes every waiter whose offset <= upto with res 0, or every waiter whose offset > upto with
 * err when err != 0. Callbacks run after the list is updated (they may re-enter). */
static void waiters_wake(storage_log *log, int64_t upto, int err)
{
    storage_waiter *ready = NULL, **tail = &ready, **pp = &log->waiters;
    while (*pp) {
        storage_waiter *w = *pp;
        bool hit = err ? w->offset > upto : w->offset <= upto;
        if (hit) {
            *pp = w->next;
            w->next = NULL;
            w->res = err;
            *tail = w;
            tail = &w->next;
        } else {
            pp = &w->next;
        }
    }
    while (ready) {
        storage_waiter *w = ready;
        ready = w->next;
        w->cb(w);
    }
}

/* ---- flush (group commit) ----
 *
 * A write stage: fallocate when the file must grow, then one O_DIRECT write of everything
 * appended to the oldest segment with unwritten bytes. By default that write is itself durable
 * (io_write_dsync, RWF_DSYNC): its completion makes everything it covers durable. While it is
 * in flight, a second write of what was appended since may start at once (cfg.pipeline_writes,
 * write_start_next:
 * two write slots, log->ws), so a batch no longer waits for the write in flight before its
 * own starts; the block the two share is written only after the older write completed, and
 * completions are applied oldest first. With cfg.split_sync the write is plain and a sync
 * stage follows (one fdatasync
 * covering every write that completed before it was issued); the next write may run while the
 * previous one's fdatasync is in flight, and durability is only reported by a sync issued
 * after the write completed. Completed-but-unsynced writes wait in log->pend (split_sync
 * only: with durable writes npend stays 0 and the sync stage idle). */

static bool log_busy(const storage_log *log)
{
    return log->wbusy || log->sbusy || log->zbusy;
}

/* Bytes appended but not yet handed to a write. */
static uint64_t log_unwritten(const storage_log *log)
{
    uint64_t n = 0;
    for (int i = log->nsegs - 1; i >= 0; i--) {
        segment *s = log->segs[i];
        if (s->wsize == s->size) break;
        n += s->size - s->wsize;
    }
    return n;
}

static void log_fail(storage_log *log, const char *what, int err)
{
    log_error("storage", "log %s failed: %s: %s; nothing after offset %" PRId64
              " will be acknowledged", log->dir, what, al_strerror(err), log->durable);
    log->failed = true;
    log->npend = 0;
    waiters_wake(log, log->durable, AL_EFAILED);
    if (log->parked) reads_unpark(log); /* they complete with AL_EFAILED */
    if (log->trunc) trunc_try(log);     /* completes with AL_EFAILED once idle */
}

static void sync_start(storage_log *log);
static void zero_kick(storage_log *log);
/*
 * How far to grow a segment's allocation so that it covers `need` bytes. Growth is adaptive:
 * the allocation doubles from 64 KiB up to the configured step (fallocate_step), then grows by
 * that step. A busy partition soon preallocates in large steps, while thousands of quiet
 * partitions each hold a small allocation instead of a full step apiece (10,000 partitions x
 * 32 MiB would need 312 GiB of disk).
 */
static uint64_t alloc_target(const storage_log *log, const segment *seg, uint64_t need)
{
    uint64_t max_step = AL_MAX(log->cfg.fallocate_step, (uint64_t)SEG_ALIGN);
    uint64_t step = AL_MIN(max_step, AL_MAX(seg->alloc, (uint64_t)64 << 10));
    step = AL_ALIGN_UP(step, (uint64_t)SEG_ALIGN);
    uint64_t target = AL_ALIGN_UP(need, step);
    AL_ASSERT(target >= need);
    return target;
}


static void write_start(storage_log *log);
static void write_start_next(storage_log *log);

/* True when a zero-fill write is in flight on seg below wend: a data write ending at wend
 * (4 KiB aligned) must not start before it completes (two O_DIRECT writes of one block in
 * flight land in either order; see "zero-fill ahead"). */
static bool zero_overlaps(const storage_log *log, const segment *seg, uint64_t wend)
{
    return log->zbusy && log->zseg == seg && !log->zfalloc && wend > log->zoff;
}

/* Runs a pending asynchronous truncation once nothing is in flight (no write, sync or read),
 * then calls its callback. */
static void trunc_try(storage_log *log)
{
    storage_truncation *t = log->trunc;
    if (!t || log_busy(log) || log->reads_inflight) return;
    log->trunc = NULL;
    if (log->failed) t->res = AL_EFAILED;
    else if (t->offset < log->start) t->res = AL_ERANGE;
    else if (t->offset >= log->high) t->res = 0;
    else t->res = log_truncate(log, t->offset, AL_ERANGE);
    t->cb(t);
}

/* Starts whatever stage is idle and has work: the sync of completed writes, and the next
 * write when someone waits or enough is unwritten. */
static void flush_kick(storage_log *log)
{
    if (log->trunc) {
        trunc_try(log);
        if (log->trunc) { /* waiting for idle: finish syncs, start no new write */
            if (!log->failed && !log->sbusy && log->npend) sync_start(log);
            return;
        }
    }
    if (log->failed) return;
    if (log->nospace_err) {
        if (log_busy(log)) return; /* drop unflushed data once both stages are idle */
        int err = log->nospace_err;
        log->nospace_err = 0;
        log->npend = 0;
        log->nospace = true;
        log->nospace_probe_ns = io_now_ns(log->io);
        log_warn("storage", "log %s: out of space (%s); dropping unflushed appends after %" PRId64,
                 log->dir, al_strerror(err), log->durable);
        int rc = log_truncate(log, log->durable + 1, -ENOSPC);
        if (rc < 0) log_fail(log, "dropping unflushed data", rc);
        return;
    }
    if (!log->sbusy && log->npend) sync_start(log);
    if (log->waiters || log_unwritten(log) >= log->cfg.flush_bytes) {
        if (!log->wbusy) write_start(log);
        else write_start_next(log);
    }
    zero_kick(log);
}

static void sync_cb(io_op *op)
{
    storage_log *log = op->ctx;
    segment *seg = log->sseg;
    AL_ASSERT(log->sbusy && seg);
    log->sbusy = false;
    log->sseg = NULL;
    if (log->failed) {
        if (log->trunc) trunc_try(log);
        return;
    }
    if (op->res < 0) {
        log_fail(log, "fdatasync", op->res);
        return;
    }
    AL_ASSERT(log->send >= seg->dsize && log->slast >= log->durable);
    /* operations (src/metrics): fsync latency and the size of this group commit. */
    metrics_histogram_observe(metrics_local, M_STORAGE_FSYNC_LATENCY,
                              (io_now_ns(log->io) - log->sync_t0_ns) / 1000);
    metrics_histogram_observe(metrics_local, M_STORAGE_GROUP_COMMIT_BYTES, log->send - seg->dsize);
    metrics_histogram_observe(metrics_local, M_STORAGE_GROUP_COMMIT_RECORDS,
                              (uint64_t)(log->slast - log->durable));
    seg->dsize = log->send;
    seg->dlast = log->slast;
    if (seg->sealed && seg->dsize == seg->size) log->fin_want = true;
    if (!log_naming(log, seg)) { /* else durable once its name is (mk_done) */
        log->durable = log->slast;
        waiters_wake(log, log->durable, 0);
    }
    if (log->parked) reads_unpark(log);
    flush_kick(log);
    log_ckpt_maybe(log); /* recovery checkpoint, when due (log_ckpt.c) */
    fin_kick(log);
}

/* Issues one fdatasync for the oldest segment with completed, unsynced writes. */
static void sync_start(storage_log *log)
{
    AL_ASSERT(!log->sbusy && log->npend > 0);
    segment *seg = log->pend[0].seg;
    int k = 0;
    while (k < log->npend && log->pend[k].seg == seg) k++;
    log->send = log->pend[k - 1].end;
    log->slast = log->pend[k - 1].last;
    memmove(log->pend, log->pend + k, (size_t)(log->npend - k) * sizeof(log->pend[0]));
    log->npend -= k;
    log->sbusy = true;
    log->sseg = seg;
    log->sop.cb = sync_cb;
    log->sop.ctx = log;
    log->sync_t0_ns = io_now_ns(log->io); /* operations: fsync latency metric */
    io_fdatasync(log->io, &log->sop, seg->fd);
}

/* Issues a data write of a slot (plain, or durable unless split_sync). */
static void write_issue(storage_log *log, io_op *op, segment *seg, const void *buf, size_t len,
                        uint64_t off)
{
    log->wparts++;
    if (log->cfg.split_sync) io_write(log->io, op, seg->fd, buf, len, off);
    else io_write_dsync(log->io, op, seg->fd, buf, len, off);
}

/* The buffer, its file base and the logical end of the write in slot s. */
static void wslot_range(const storage_log *log, const struct log_wslot *s, uint8_t **mem,
                        uint64_t *base, uint64_t *end)
{
    const segment *seg = log->wseg;
    bool head = s == &log->ws[log->whead];
    *mem = head ? seg->fbuf : seg->pbuf;
    *base = head ? seg->fbase : seg->pbase;
    *end = head ? seg->fend : seg->pend;
}

/* Issues (or re-issues after a short write) the main part of slot s from s->mpos. */
static void wslot_main_issue(storage_log *log, struct log_wslot *s)
{
    uint8_t *mem;
    uint64_t base, end;
    wslot_range(log, s, &mem, &base, &end);
    uint64_t wend = AL_ALIGN_UP(end, (uint64_t)SEG_ALIGN);
    s->main_busy = true;
    write_issue(log, &s->op, log->wseg, mem + (s->mpos - base), (size_t)(wend - s->mpos),
                s->mpos);
}

/* Issues the shared first block of slot s (the previous write has completed). */
static void wslot_fix_issue(storage_log *log, struct log_wslot *s)
{
    uint8_t *mem;
    uint64_t base, end;
    wslot_range(log, s, &mem, &base, &end);
    AL_ASSERT(s->fix_wait && end > base + SEG_ALIGN);
    s->fix_wait = false;
    s->fix_busy = true;
    write_issue(log, &s->fop, log->wseg, mem, SEG_ALIGN, base);
}

/* After an error: no slot stays live; the stage is idle once its operations in flight
 * complete (their buffers stay allocated until then). */
static void wslots_abort(storage_log *log)
{
    for (int i = 0; i < 2; i++) {
        log->ws[i].live = false;
        log->ws[i].fix_wait = false;
    }
    log->wlive = 0;
    log->wbusy = log->wparts > 0;
    if (!log->wbusy && log->wseg) {
        segment *seg = log->wseg;
        seg->pbase = seg->pend = 0; /* a pipelined write's buffer becomes the spare */
        log->wseg = NULL;
    }
}

/* Completes the oldest write while it has nothing in flight or waiting: its bytes are durable
 * (or, split_sync, written and queued for a sync). The pipelined write then becomes the oldest
 * (its buffer moves to fbuf, the completed write's buffer becomes the spare) and its shared
 * first block is issued now, after the write that also wrote that block completed. Wakes
 * waiters once, at the end (their callbacks may re-enter). */
static void wslots_complete(storage_log *log)
{
    segment *seg = log->wseg;
    bool advanced = false;
    for (int guard = 0; guard < 3 && log->wlive; guard++) {
        struct log_wslot *s = &log->ws[log->whead];
        AL_ASSERT(s->live);
        if (s->main_busy || s->fix_busy || s->fix_wait) break;
        s->live = false;
        log->wlive--;
        if (log->cfg.split_sync) {
            if (log->npend && log->pend[log->npend - 1].seg == seg) {
                log->pend[log->npend - 1].end = seg->fend;
                log->pend[log->npend - 1].last = s->last;
            } else {
                AL_ASSERT(log->npend < (int)AL_ARRAY_SIZE(log->pend));
                log->pend[log->npend++] = (typeof(log->pend[0])){seg, seg->fend, s->last};
            }
        } else {
            AL_ASSERT(log->npend == 0 && !log->sbusy);
            AL_ASSERT(seg->fend >= seg->dsize && s->last >= log->durable);
            /* operations (src/metrics): the durable write is this log's sync. */
            metrics_histogram_observe(metrics_local, M_STORAGE_FSYNC_LATENCY,
                                      (io_now_ns(log->io) - s->t0_ns) / 1000);
            metrics_histogram_observe(metrics_local, M_STORAGE_GROUP_COMMIT_BYTES,
                                      seg->fend - seg->dsize);
            metrics_histogram_observe(metrics_local, M_STORAGE_GROUP_COMMIT_RECORDS,
                                      (uint64_t)(s->last - log->durable));
            seg->dsize = seg->fend;
            seg->dlast = s->last;
            if (seg->sealed && seg->dsize == seg->size) log->fin_want = true;
            if (!log_naming(log, seg)) /* else durable once its name is (mk_done) */
                log->durable = s->last;
            advanced = true;
        }
        if (!log->wlive) break;
        /* Promote the pipelined write. */
        log->whead ^= 1;
        uint8_t *spare = seg->fbuf;
        size_t scap = seg->fcap;
        storage_chunk *sch = seg->fch;
        seg->fbuf = seg->pbuf;
        seg->fcap = seg->pcap;
        seg->fch = seg->pch;
        seg->fbase = seg->pbase;
        seg->fend = seg->pend;
        seg->pbuf = spare;
        seg->pcap = scap;
        seg->pch = sch;
        seg->pbase = seg->pend = 0;
        struct log_wslot *n = &log->ws[log->whead];
        if (n->fix_wait) wslot_fix_issue(log, n);
    }
    if (!log->wlive) log->wseg = NULL;
    log->wbusy = log->wlive > 0 || log->wparts > 0;
    if (advanced) {
        waiters_wake(log, log->durable, 0);
        if (log->parked) reads_unpark(log);
    }
    flush_kick(log);
    if (advanced) log_ckpt_maybe(log); /* recovery checkpoint, when due (log_ckpt.c) */
    fin_kick(log);
}

/* One operation of the write stage finished with res. Returns true when the caller goes on
 * with a success; false when it was handled here (the log failed, ran out of space, or an
 * error ended the stage). */
static bool wpart_done(storage_log *log, struct log_wslot *s, int res, const char *what)
{
    log->wparts--;
    if (log->failed || log->nospace_err || !s->live) {
        /* Aborted: the stage is idle once the last operation completes. */
        wslots_abort(log);
        if (!log->wbusy) {
            if (log->failed && log->trunc) trunc_try(log);
            else if (!log->failed) flush_kick(log);
        }
        return false;
    }
    if (res < 0) {
        if (res == -ENOSPC || res == -EDQUOT) {
            log->nospace_err = res;
            wslots_abort(log);
            flush_kick(log); /* drops unflushed data once the stage is idle */
        } else {
            wslots_abort(log);
            log_fail(log, what, res);
        }
        return false;
    }
    return true;
}

static void wslot_main_cb(io_op *op)
{
    struct log_wslot *s = op->ctx;
    storage_log *log = s->log;
    AL_ASSERT(s->main_busy && log->wseg);
    s->main_busy = false;
    if (op->res == -EOPNOTSUPP && s->state == FS_FALLOC) {
        /* No fallocate on this file system: the writes grow the file instead. */
        if (!log->warned_no_falloc)
            log_warn("storage", "log %s: fallocate is not supported here", log->dir);
        log->warned_no_falloc = true;
        op->res = 0;
    }
    if (op->res == 0 && s->state == FS_WRITE) op->res = -EIO; /* no progress */
    if (!wpart_done(log, s, op->res, s->state == FS_FALLOC ? "fallocate" : "write")) return;
    segment *seg = log->wseg;
    if (s->state == FS_FALLOC) {
        seg->alloc = AL_MAX(seg->alloc, s->target);
        s->state = FS_WRITE;
        wslot_main_issue(log, s);
        return;
    }
    uint8_t *mem;
    uint64_t base, end;
    wslot_range(log, s, &mem, &base, &end);
    uint64_t done = s->mpos + (uint64_t)op->res;
    if (done < AL_ALIGN_UP(end, (uint64_t)SEG_ALIGN)) {
        /* short write: continue from the block it stopped in */
        s->mpos = AL_ALIGN_DOWN(done, (uint64_t)SEG_ALIGN);
        wslot_main_issue(log, s);
        return;
    }
    wslots_complete(log);
}

static void wslot_fix_cb(io_op *op)
{
    struct log_wslot *s = op->ctx;
    storage_log *log = s->log;
    AL_ASSERT(s->fix_busy && log->wseg);
    s->fix_busy = false;
    /* One aligned block: anything short of it is an I/O error, not progress to resume. */
    if (op->res >= 0 && op->res != (int)SEG_ALIGN) op->res = -EIO;
    if (!wpart_done(log, s, op->res, "write")) return;
    wslots_complete(log);
}

/* Prepares slot i for a write of its segment; the caller issues it. */
static struct log_wslot *wslot_open(storage_log *log, int i, segment *seg)
{
    struct log_wslot *s = &log->ws[i];
    AL_ASSERT(!s->live && !s->main_busy && !s->fix_busy);
    *s = (struct log_wslot){.log = log, .live = true, .state = FS_WRITE, .last = seg->last,
                            .t0_ns = io_now_ns(log->io)};
    s->op.cb = wslot_main_cb;
    s->op.ctx = s;
    s->fop.cb = wslot_fix_cb;
    s->fop.ctx = s;
    log->wlive++;
    log->wbusy = true;
    log->wseg = seg;
    return s;
}

/* Starts one write with the write stage idle: everything appended to the oldest segment with
 * unwritten bytes. The current buffer goes in flight; the last write's buffer becomes current,
 * starting with a copy of the partial tail block. Appends arriving meanwhile go there and form
 * the next write (pipelined by write_start_next, or issued when this one completes). */
static void write_start(storage_log *log)
{
    if (log->wbusy || log->failed || log->nospace_err) return;
    if (log->npend == (int)AL_ARRAY_SIZE(log->pend)) return; /* let the syncs catch up */
    segment *seg = NULL;
    for (int i = 0; i < log->nsegs; i++) {
        if (log->segs[i]->size > log->segs[i]->wsize) {
            seg = log->segs[i];
            break;
        }
    }
    if (!seg) return;
    if (seg->fd < 0) return; /* its roll job is creating the file (mk_done kicks the flush) */
    if (zero_overlaps(log, seg, AL_ALIGN_UP(seg->size, (uint64_t)SEG_ALIGN))) {
        log->zero_waits++; /* started again when the zero write completes (zero_cb) */
        return;
    }
    uint64_t end = seg->size;
    uint64_t nb = AL_ALIGN_DOWN(end, (uint64_t)SEG_ALIGN);
    uint64_t wend = AL_ALIGN_UP(end, (uint64_t)SEG_ALIGN);
    uint8_t *cur = seg->buf;
    size_t ccap = seg->bcap;
    storage_chunk *cch = seg->bch;
    uint64_t cbase = seg->bbase;
    /* The next buffer (the spare, the rest of this chunk or a new one) gets at least a write
     * window now (nothing to copy yet) rather than letting the appends during this write grow
     * it with a copy (seg_next_buf). */
    storage_chunk *nch;
    uint8_t *nbuf;
    if (seg_next_buf(seg, &seg->fch, wend, &nch, &nbuf) < 0) {
        log_fail(log, "allocating a write buffer", -ENOMEM);
        return;
    }
    seg_buf_set(seg, nch, nbuf, nb);
    memset(seg->buf, 0, SEG_ALIGN);
    if (end > nb) memcpy(seg->buf, cur + (nb - cbase), (size_t)(end - nb));
    seg->fbuf = cur;
    seg->fcap = ccap;
    seg->fch = cch;
    seg->fbase = cbase;
    seg->fend = end;
    seg->wsize = end;
    memset(cur + (end - cbase), 0, (size_t)(wend - end));
    log->whead = 0;
    struct log_wslot *s = wslot_open(log, 0, seg);
    s->mpos = cbase;
    if (wend > seg->alloc) {
        s->target = alloc_target(log, seg, wend);
        s->state = FS_FALLOC;
        s->main_busy = true;
        log->wparts++;
        io_fallocate(log->io, &s->op, seg->fd, 0, seg->alloc, s->target - seg->alloc);
    } else {
        wslot_main_issue(log, s);
    }
}

/*
 * Starts a second write while one is in flight (durable writes only), so that a batch that
 * arrives during a write does not wait for it to finish before its own write starts.
 *
 * The hazard is the block the two writes share: the write in flight ends inside block B (its
 * partial tail, zero padded), and the next write's bytes begin in B. Two O_DIRECT writes of B
 * in flight at once may reach the device in either order (io_uring does not order them, nor
 * does the block layer), and a completion says nothing about the other write: if the older
 * one landed last, B would hold its version, without the newer bytes, after both completed,
 * and a batch acknowledged by the newer write would be lost. So the newer write is split:
 * its main part, from the first block boundary after B to its end, touches no block of the
 * write in flight and is issued now; B itself (with the newer bytes) is written only after
 * the older write completed (wslot_fix_issue from wslots_complete), so its version is the
 * last to land. The newer write counts as complete, and its batches durable, only when both
 * parts completed and the older write completed before them (completion runs oldest first).
 * A write that ends at a block boundary shares no block and has no second part.
 *
 * Only with cfg.pipeline_writes (off by default: in the session-4 measurements it lowered the
 * p50 but raised the p99, as the shared block's write queues behind the pipelined one at the
 * device, and the CPU per MB; BENCHMARKS.md). Not pipelined (the next write waits, as
 * before): split_sync (its fdatasync covers completed
 * writes only and has its own stage), a write needing fallocate (the file grows under the one
 * in flight), another segment, new bytes only inside B (nothing to gain), or two writes in
 * flight already (the window stays two buffers plus the current one).
 */
static void write_start_next(storage_log *log)
{
    if (!log->cfg.pipeline_writes || log->wlive != 1 || log->cfg.split_sync || log->failed ||
        log->nospace_err)
        return;
    segment *seg = log->wseg;
    struct log_wslot *h = &log->ws[log->whead];
    if (!seg || h->state != FS_WRITE || seg->wsize != seg->fend || seg->size <= seg->wsize)
        return;
    for (int i = 0; i < log->nsegs && log->segs[i] != seg; i++)
        if (log->segs[i]->size > log->segs[i]->wsize) return; /* an older segment first */
    uint64_t bb = AL_ALIGN_DOWN(seg->fend, (uint64_t)SEG_ALIGN);
    bool shared = seg->fend > bb;
    uint64_t x = shared ? bb + SEG_ALIGN : bb; /* first block the write in flight leaves */
    uint64_t end = seg->size;
    uint64_t wend = AL_ALIGN_UP(end, (uint64_t)SEG_ALIGN);
    if (end <= x || wend > seg->alloc) return;
    if (zero_overlaps(log, seg, wend)) {
        log->zero_waits++;
        return;
    }
    AL_ASSERT(seg->bbase == bb);
    uint8_t *cur = seg->buf;
    size_t ccap = seg->bcap;
    storage_chunk *cch = seg->bch;
    storage_chunk *nch;
    uint8_t *nbuf;
    if (seg_next_buf(seg, &seg->pch, wend, &nch, &nbuf) < 0) {
        log_fail(log, "allocating a write buffer", -ENOMEM);
        return;
    }
    uint64_t nb = AL_ALIGN_DOWN(end, (uint64_t)SEG_ALIGN);
    seg_buf_set(seg, nch, nbuf, nb);
    memset(seg->buf, 0, SEG_ALIGN);
    if (end > nb) memcpy(seg->buf, cur + (nb - bb), (size_t)(end - nb));
    seg->pbuf = cur;
    seg->pcap = ccap;
    seg->pch = cch;
    seg->pbase = bb;
    seg->pend = end;
    seg->wsize = end;
    memset(cur + (end - bb), 0, (size_t)(wend - end));
    struct log_wslot *s = wslot_open(log, log->whead ^ 1, seg);
    s->mpos = x;
    s->fix_wait = shared;
    log->writes_pipelined++;
    log->writes_shared_block += shared;
    wslot_main_issue(log, s);
}

/*
 * Zero-fill ahead. The active segment grows by fallocate (write_start, alloc_target), which on
 * ext4 leaves unwritten extents: each durable write into them converts extents, a metadata
 * change that costs a journal commit, and such writes serialize on the journal. A durable write
 * into written space within the file size needs no metadata (a FUA write). So while the log is
 * idle (no write, sync or waiter), one operation at a time keeps up to cfg.prezero_bytes of
 * fallocated space past the appended data written with zeros: a durable (RWF_DSYNC) write of
 * at most ZERO_CHUNK zeros from the static zero_fill buffer, or a fallocate of the next step
 * when the zeroed frontier reached the allocation (taking that off the write path too). The
 * bytes are those preallocated space reads as anyway, so recovery sees the same file: data,
 * then zeros it stops at (seg_scan). Bounded: only the active segment, within segment_bytes,
 * at most prezero_bytes ahead, never more disk than the allocation would take; only once the
 * log has appended prezero_bytes since open (quiet logs, thousands of them, zero nothing).
 *
 * Ordering: zero fill only starts at or after the aligned end of what was appended, so it
 * never covers a block a write in flight or done holds. A data write reaching into a zero
 * write in flight waits for it (zero_overlaps; counted in zero_waits), so its version lands
 * last. Errors only stop the zero fill (zstop) with a warning: the space stays unwritten or
 * zero, and writes go on as without it. Close, truncation, restart and segment finishing wait
 * for the operation (log_busy, or zseg checks).
 */
enum { ZERO_CHUNK = 256u << 10 };
static uint8_t zero_fill[ZERO_CHUNK] __attribute__((aligned(4096))); /* never written */

static void zero_cb(io_op *op)
{
    storage_log *log = op->ctx;
    segment *seg = log->zseg;
    AL_ASSERT(log->zbusy && seg);
    log->zbusy = false;
    log->zseg = NULL;
    int res = op->res;
    if (log->zfalloc) {
        if (res == 0) seg->alloc = AL_MAX(seg->alloc, log->zend);
    } else if (res > 0) {
        uint64_t done = AL_ALIGN_DOWN((uint64_t)res, (uint64_t)SEG_ALIGN);
        if (done) {
            seg->zeroed = AL_MAX(seg->zeroed, log->zoff + done);
            log->zero_bytes += done;
        } else {
            res = -EIO;
        }
    } else if (res == 0) {
        res = -EIO;
    }
    if (res < 0 && !log->zstop) {
        log->zstop = true;
        log_warn("storage", "log %s: zero fill ahead stopped (%s: %s); durable writes go on "
                 "into unwritten preallocated space", log->dir,
                 log->zfalloc ? "fallocate" : "write", al_strerror(res));
    }
    if (log->failed) {
        if (log->trunc) trunc_try(log);
        return;
    }
    bool sealed = seg->sealed; /* seg may go in flush_kick (a truncation) */
    flush_kick(log); /* a write that waited for this one, a truncation, or the next chunk */
    if (sealed) {
        log->fin_want = true; /* seg_finishable waits for no zero-fill write now */
        fin_kick(log);
    }
}

/* Starts the next zero-fill operation of the active segment when the log is idle and the
 * zeroed space ahead of the data is short of cfg.prezero_bytes (see above). Reactor thread. */
static void zero_kick(storage_log *log)
{
    if (!log->cfg.prezero_bytes || log->zbusy || log->zstop || log->failed || log->nospace ||
        log->nospace_err || log->trunc || log->wbusy || log->sbusy || log->npend ||
        log->waiters || !log->nsegs || log->appended < log->cfg.prezero_bytes)
        return;
    segment *seg = log->segs[log->nsegs - 1];
    if (seg->sealed || seg->finished || seg->size == 0 || seg->fd < 0) return;
    uint64_t dend = AL_ALIGN_UP(seg->size, (uint64_t)SEG_ALIGN);
    uint64_t zs = AL_MAX(seg->zeroed, dend);
    uint64_t limit = AL_ALIGN_UP(log->cfg.segment_bytes, (uint64_t)SEG_ALIGN);
    if (zs >= dend + log->cfg.prezero_bytes || zs >= limit) return;
    log->zop.cb = zero_cb;
    log->zop.ctx = log;
    log->zseg = seg;
    log->zbusy = true;
    if (zs >= seg->alloc) {
        log->zfalloc = true;
        log->zoff = seg->alloc;
        log->zend = alloc_target(log, seg, AL_MIN(zs + ZERO_CHUNK, limit));
        io_fallocate(log->io, &log->zop, seg->fd, 0, log->zoff, log->zend - log->zoff);
        return;
    }
    log->zfalloc = false;
    log->zoff = zs;
    log->zend = AL_MIN(AL_MIN(seg->alloc, zs + ZERO_CHUNK), limit);
    io_write_dsync(log->io, &log->zop, seg->fd, zero_fill, (size_t)(log->zend - zs), zs);
}

void storage_log_flush(storage_log *log)
{
    if (log->failed) return;
    if (!log->wbusy) write_start(log);
    else write_start_next(log);
}

void storage_log_set_cache_appends(storage_log *log, bool on)
{
    log->no_cache_appends = !on;
}

int storage_log_flush_wait(storage_log *log, int64_t offset, storage_waiter *w)
{
    if (log->failed) return AL_EFAILED;
    if (offset <= log->durable) return 1;
    if (offset >= log->high) return AL_ERANGE;
    w->offset = offset;
    w->res = 0;
    w->next = log->waiters;
    log->waiters = w;
    flush_kick(log);
    return 0;
}

/* ---- append ---- */

/* In the no-space state, probes (at most every 100 ms) whether space came back by growing the
 * active file. Returns 0 when appends may go on, -ENOSPC otherwise. */
static int nospace_probe(storage_log *log)
{
    uint64_t now = io_now_ns(log->io);
    if (now - log->nospace_probe_ns < 100000000ull && now >= log->nospace_probe_ns)
        return -ENOSPC;
    log->nospace_probe_ns = now;
    segment *seg = log->nsegs ? log->segs[log->nsegs - 1] : NULL;
    if (seg && !seg->finished && seg->fd >= 0) {
        uint64_t target = alloc_target(log, seg, seg->size + 1);
        if (target > seg->alloc) {
            int rc = io_fs_fallocate(log->io, seg->fd, 0, seg->alloc, target - seg->alloc);
            if (rc < 0 && rc != -EOPNOTSUPP) return -ENOSPC;
            if (rc == 0) seg->alloc = target;
        }
    }
    log_info("storage", "log %s: space is back, accepting appends", log->dir);
    log->nospace = false;
    return 0;
}

/* storage_log_append and storage_log_append_validated: `validated` skips the CRC and record
 * checks (the framing is still checked, so a caller's mistake cannot overrun buf). */
static int log_append(storage_log *log, int32_t term, void *buf, size_t len,
                      storage_append_result *res, bool validated)
{
    if (log->failed) return AL_EFAILED;
    int32_t cur_term = storage_log_last_term(log);
    if (term < cur_term || term < 0) return AL_EINVAL;
    int64_t nrec = 0;
    int nb;
    if (validated) {
        nb = storage_batches_frame_check(buf, len, log->cfg.max_message_bytes, &nrec);
        /* Debug builds hold the caller to its promise. */
        AL_DASSERT(nb < 0 || storage_batches_validate(buf, len, 0, NULL) == nb);
    } else {
        nb = storage_batches_validate(buf, len, log->cfg.max_message_bytes, &nrec);
    }
    if (nb < 0) return nb;
    if (log->trunc) return AL_EFULL;      /* a truncation is waiting to run first */
    if (log->nospace_err) return -ENOSPC; /* unflushed data is about to be dropped */
    if (log->nospace && nospace_probe(log) < 0) return -ENOSPC;
    segment *seg = log->nsegs ? log->segs[log->nsegs - 1] : NULL;
    bool roll = !seg || seg->sealed || term != seg->term ||
                (seg->size > 0 && seg->size + len > log->cfg.segment_bytes) ||
                (seg->size > 0 && seg->size + len > UINT32_MAX) || /* u32 index positions */
                (seg->size > 0 && log->cfg.segment_ms > 0 &&
                 io_wall_ms(log->io) - seg->created_ms >= log->cfg.segment_ms) ||
                log->high + nrec - seg->base > INT32_MAX;
    int rc;
    bool kick = false;
    if (roll) {
        if ((rc = log_roll(log, term)) < 0) return rc;
        kick = rc == 1 && log->waiters; /* it waited for a roll job: the old segment's
                                          writes may start now */
        seg = log->segs[log->nsegs - 1];
    }
    if ((rc = seg_buf_reserve(log, seg, seg->size + len)) < 0) return rc;
    uint8_t *p = buf;
    uint64_t pos = seg->size;
    res->base_offset = log->high;
    res->batches = nb;
    for (size_t off = 0; off < len;) {
        storage_batch_hdr h;
        storage_batch_parse_header(p + off, len - off, &h);
        size_t sz = storage_batch_size(&h);
        storage_batch_stamp(p + off, log->high, term);
        h.base_offset = log->high;
        h.leader_epoch = term;
        uint8_t *dst = seg->buf + (pos - seg->bbase);
        memcpy(dst, p + off, sz);
        seg_note_batch(log, seg, pos, &h);
        /* The cache points into the write buffer's chunk (never written over, see "write
         * buffers"); small batches get a copy, so that a quiet log's 4 KiB write blocks do not
         * pin whole chunks for a few bytes each. */
        if (log->cfg.cache && !log->no_cache_appends) {
            log->cache_held = true;
            if (sz >= CACHE_REF_MIN)
                storage_cache_put_chunk(log->cfg.cache, log->cfg.log_id, h.base_offset,
                                        storage_batch_last_offset(&h), seg->bch, dst, sz);
            else
                storage_cache_put(log->cfg.cache, log->cfg.log_id, h.base_offset,
                                  storage_batch_last_offset(&h), dst, sz);
        }
        log->high = storage_batch_last_offset(&h) + 1;
        pos += sz;
        off += sz;
    }
    seg->size = pos;
    log->appended += len;
    log->touches++;
    res->last_offset = log->high - 1;
    if (kick || log_unwritten(log) >= log->cfg.flush_bytes) flush_kick(log);
    if (seg->size >= log->cfg.segment_bytes / 2) log_spare_maybe(log);
    return 0;
}

int storage_log_append(storage_log *log, int32_t term, void *buf, size_t len,
                       storage_append_result *res)
{
    return log_append(log, term, buf, len, res, false);
}

int storage_log_append_validated(storage_log *log, int32_t term, void *buf, size_t len,
                                 storage_append_result *res)
{
    return log_append(log, term, buf, len, res, true);
}

/* ---- lookups ---- */

/* Index of the last segment whose base <= offset, or -1. */
static int seg_find(const storage_log *log, int64_t offset)
{
    int lo = 0, hi = log->nsegs - 1, ans = -1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (log->segs[mid]->base <= offset) {
            ans = mid;
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    return ans;
}

/* Byte position of the last index entry at or before offset (0 if none). */
static uint64_t seg_index_floor(const segment *seg, int64_t offset)
{
    int64_t rel = offset - seg->base;
    int64_t lo = 0, hi = (int64_t)seg->nidx - 1, ans = -1;
    while (lo <= hi) {
        int64_t mid = (lo + hi) / 2;
        if ((int64_t)seg->idx[mid].rel <= rel) {
            ans = mid;
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    return ans < 0 ? 0 : seg->idx[ans].pos;
}

int64_t storage_log_term_at(storage_log *log, int64_t offset)
{
    int i = seg_find(log, offset);
    if (i < 0 || offset > log->segs[i]->last) return AL_ERANGE;
    return log->segs[i]->term;
}

int64_t storage_log_offset_for_time(storage_log *log, int64_t ts)
{
    for (int i = 0; i < log->nsegs; i++) {
        segment *seg = log->segs[i];
        if (seg->last < log->start || seg->max_ts < ts) continue;
        for (uint32_t k = 0; k < seg->ntidx; k++) {
            if (seg->tidx[k].ts >= ts) {
                uint32_t rel = k ? seg->tidx[k - 1].rel : seg->tidx[k].rel;
                return AL_MAX(seg->base + rel, log->start);
            }
        }
        /* The max is reached after the last sparse entry. */
        if (seg->ntidx) return AL_MAX(seg->base + seg->tidx[seg->ntidx - 1].rel, log->start);
    }
    return log->high;
}

int64_t storage_log_start_offset(const storage_log *log) { return log->start; }
int64_t storage_log_last_offset(const storage_log *log) { return log->high - 1; }
int64_t storage_log_high_offset(const storage_log *log) { return log->high; }
int64_t storage_log_durable_offset(const storage_log *log) { return log->durable; }
bool storage_log_failed(const storage_log *log) { return log->failed; }
uint64_t storage_log_truncations(const storage_log *log) { return log->truncations; }
int storage_log_segment_count(const storage_log *log) { return log->nsegs; }

int32_t storage_log_last_term(const storage_log *log)
{
    return log->nsegs ? log->segs[log->nsegs - 1]->term : -1;
}

uint64_t storage_log_size_bytes(const storage_log *log)
{
    uint64_t n = 0;
    for (int i = 0; i < log->nsegs; i++) n += log->segs[i]->size;
    return n;
}

/* ---- reads ---- */

/* Makes room for n more bytes in r->data, growing it geometrically (a read of many small
 * batches must not copy the output once per batch). Returns 0 or -ENOMEM. */
static int read_out_reserve(storage_read *r, size_t n)
{
    if (r->len + n <= r->dcap) return 0;
    if (r->dcap == 0) { /* first reservation: exactly what is asked (often all there is) */
        r->data = malloc(n ? n : 1);
        if (!r->data) return -ENOMEM;
        r->dcap = n ? n : 1;
        return 0;
    }
    size_t cap = AL_MAX(r->dcap * 2, (size_t)64 << 10);
    while (cap < r->len + n) cap *= 2;
    uint8_t *nd = realloc(r->data, cap);
    if (!nd) return -ENOMEM;
    r->data = nd;
    r->dcap = cap;
    return 0;
}

static int read_out_append(storage_read *r, const void *p, size_t n)
{
    if (read_out_reserve(r, n) < 0) return -ENOMEM;
    memcpy(r->data + r->len, p, n);
    r->len += n;
    return 0;
}

/* Whether a batch holds records a client sees: neither a control batch (Raft NOOP/CONFIG/TRIM,
 * transaction markers) nor an empty one (a batch emptied by compaction). */
static bool read_is_data(const storage_batch_hdr *h)
{
    return !(h->attributes & STORAGE_ATTR_CONTROL) && h->records_count > 0;
}

/* Whether a batch of sz more bytes goes into r's output: any batch until it holds a data batch
 * (see storage_log_read), then while within max_bytes (the first batch always). */
static bool read_fits(const storage_read *r, size_t sz)
{
    return !r->has_data || r->len == 0 || r->len + sz <= r->max_bytes;
}

/* Notes the batch h just appended to r's output. */
static void read_took(storage_read *r, const storage_batch_hdr *h)
{
    r->next_offset = storage_batch_last_offset(h) + 1;
    if (read_is_data(h)) r->has_data = true;
}

/* Whether r is done after a step: it holds a data batch, it reached the log's end, or it has
 * taken STORAGE_READ_HOPS_MAX steps. */
static bool read_complete(const storage_log *log, const storage_read *r)
{
    return r->has_data || r->next_offset >= log->high || r->hops >= STORAGE_READ_HOPS_MAX;
}

/* Serves a read step from the cache: consecutive batches starting exactly at r->next_offset,
 * while they fit (read_fits). Returns 1 if at least one batch was served. */
static int read_from_cache(storage_log *log, storage_read *r)
{
    storage_cache *c = log->cfg.cache;
    /* Two passes: find the run of cached batches first, then size the output once and copy
     * (growing it batch by batch re-copied the output and faulted in pages twice). The
     * pointers stay valid: nothing is put into or dropped from the cache in between. */
    enum { RUN_MAX = 256 };
    const uint8_t *ptr[RUN_MAX];
    size_t len[RUN_MAX];
    size_t before = r->len;
    int64_t next = r->next_offset;
    bool data = r->has_data;
    for (int guard = 0; guard < 100000 && next < log->high;) {
        int n = 0;
        size_t total = 0;
        while (n < RUN_MAX && next < log->high &&
               (!data || r->len + total == 0 || r->len + total < r->max_bytes)) {
            int64_t last;
            storage_batch_hdr h;
            ptr[n] = storage_cache_get(c, log->cfg.log_id, next, &len[n], &last);
            if (!ptr[n]) break;
            if (!storage_batch_parse_header(ptr[n], len[n], &h) && read_is_data(&h)) data = true;
            total += len[n++];
            next = last + 1;
            guard++;
        }
        if (n == 0 || read_out_reserve(r, total) < 0) break;
        for (int i = 0; i < n; i++) {
            memcpy(r->data + r->len, ptr[i], len[i]);
            r->len += len[i];
        }
        r->next_offset = next;
        r->has_data = data;
        if (n < RUN_MAX || (data && r->len >= r->max_bytes)) break;
    }
    return r->len > before;
}

/* Synchronous read step of non-durable bytes of seg starting at batch boundary pos: the
 * batches from r->next_offset on while they fit (read_fits). */
static int read_from_memory(storage_log *log, segment *seg, uint64_t pos, storage_read *r)
{
    for (int guard = 0; pos < seg->size && guard < 10000000; guard++) {
        uint8_t hb[STORAGE_BATCH_HEADER];
        int rc = seg_read_sync(log, seg, pos, hb, sizeof(hb));
        if (rc < 0) return rc;
        storage_batch_hdr h;
        storage_batch_parse_header(hb, sizeof(hb), &h);
        size_t sz = storage_batch_size(&h);
        if (storage_batch_last_offset(&h) >= r->next_offset) {
            if (!read_fits(r, sz)) break;
            if (read_out_reserve(r, sz) < 0) return -ENOMEM;
            if ((rc = seg_read_sync(log, seg, pos, r->data + r->len, sz)) < 0) return rc;
            r->len += sz;
            read_took(r, &h);
            if (r->has_data && r->len >= r->max_bytes) break;
        }
        pos += sz;
    }
    return 0;
}

static void read_disk_issue(storage_log *log, storage_read *r, uint64_t pos, size_t want);
static int read_run(storage_log *log, storage_read *r);

static void read_finish(storage_log *log, storage_read *r, int res)
{
    log->reads_inflight--;
    free(r->abuf);
    r->abuf = NULL;
    r->acap = 0;
    r->res = res;
    if (res < 0) {
        free(r->data);
        r->data = NULL;
        r->len = 0;
        r->dcap = 0;
    }
    r->cb(r);
    if (log->trunc && !log->reads_inflight) flush_kick(log);
}

static void read_disk_cb(io_op *op)
{
    storage_read *r = op->ctx;
    storage_log *log = r->log;
    if (op->res < 0) {
        read_finish(log, r, op->res);
        return;
    }
    segment *seg = log->segs[r->seg];
    uint64_t valid_end = AL_MIN(r->apos + (uint64_t)op->res, seg->dsize);
    uint64_t pos = r->ppos; /* where parsing starts */
    int64_t from = r->next_offset;
    if (r->dcap == 0 && valid_end > pos && /* size the output once for what was read */
        read_out_reserve(r, (size_t)AL_MIN(valid_end - pos, (uint64_t)r->max_bytes)) < 0) {
        read_finish(log, r, -ENOMEM);
        return;
    }
    for (int guard = 0; pos < valid_end && guard < 10000000; guard++) {
        const uint8_t *p = r->abuf + (pos - r->apos);
        size_t avail = (size_t)(valid_end - pos);
        storage_batch_hdr h;
        if (avail < STORAGE_BATCH_HEADER ||
            storage_batch_size((storage_batch_parse_header(p, avail, &h), &h)) > avail) {
            if (!r->has_data && r->tries < 4) { /* first batch did not fit: read it whole */
                size_t need = avail < STORAGE_BATCH_HEADER ? 65536 : storage_batch_size(&h);
                read_disk_issue(log, r, pos, need);
                return;
            }
            break;
        }
        int64_t sz = storage_batch_validate(p, avail, 0, &h);
        if (sz < 0) {
            log_error("storage", "segment %s: batch at %" PRIu64 " fails its check on read: %s",
                      seg->stem, pos, al_strerror((int)sz));
            read_finish(log, r, AL_ECORRUPT);
            return;
        }
        if (storage_batch_last_offset(&h) >= r->next_offset) {
            if (!read_fits(r, (size_t)sz)) break;
            if (read_out_append(r, p, (size_t)sz) < 0) {
                read_finish(log, r, -ENOMEM);
                return;
            }
            if (log->cfg.cache) {
                log->cache_held = true;
                storage_cache_put(log->cfg.cache, log->cfg.log_id, h.base_offset,
                                  storage_batch_last_offset(&h), p, (size_t)sz);
            }
            read_took(r, &h);
            if (r->has_data && r->len >= r->max_bytes) break;
        }
        pos += (uint64_t)sz;
    }
    if (r->next_offset == from || read_complete(log, r)) {
        read_finish(log, r, 0);
        return;
    }
    /* control batches only so far (a segment holding a Raft NOOP): the next step */
    log->reads_inflight--;
    int rc = read_run(log, r);
    if (rc == 0) return; /* pending again (counted again) */
    log->reads_inflight++;
    read_finish(log, r, rc < 0 ? rc : 0);
}

static void read_disk_issue(storage_log *log, storage_read *r, uint64_t pos, size_t want)
{
    segment *seg = log->segs[r->seg];
    r->tries++;
    uint64_t a = AL_ALIGN_DOWN(pos, (uint64_t)SEG_ALIGN);
    uint64_t e = AL_ALIGN_UP(AL_MIN(pos + want, seg->dsize), (uint64_t)SEG_ALIGN);
    if (e <= a) e = a + SEG_ALIGN;
    size_t n = (size_t)(e - a);
    if (r->acap < n) {
        free(r->abuf);
        r->abuf = aligned_alloc_raw(n);
        r->acap = r->abuf ? n : 0;
        if (!r->abuf) {
            read_finish(log, r, -ENOMEM);
            return;
        }
    }
    r->apos = a;
    r->ppos = pos;
    r->op.cb = read_disk_cb;
    r->op.ctx = r;
    io_read(log->io, &r->op, seg->fd, r->abuf, n, a);
}

/* Runs a read from r->next_offset, step by step (a cache run, the memory or the disk of one
 * segment) until read_complete or a step adds nothing: returns 1 when done now, 0 when pending
 * (a disk read issued, or parked until its not-yet-durable bytes, no longer all in memory, are
 * durable and readable from disk), or a negative error (r's output released). A pending read
 * counts in reads_inflight; its disk callback runs the next steps. */
static int read_run(storage_log *log, storage_read *r)
{
    if (log->failed) {
        storage_read_release(r);
        return AL_EFAILED;
    }
    for (int guard = 0; guard <= STORAGE_READ_HOPS_MAX; guard++) {
        int64_t from = r->next_offset;
        if (from < log->start) { /* a prefix cut ran under a continued read: keep what it has */
            if (r->len) return 1;
            return AL_ERANGE;
        }
        if (from >= log->high || (r->len && read_complete(log, r))) return 1;
        r->hops++;
        if (log->cfg.cache && read_from_cache(log, r)) continue;
        int i = seg_find(log, from);
        if (i < 0) i = 0;
        while (i < log->nsegs && log->segs[i]->last < from) i++;
        if (i >= log->nsegs) return 1;
        segment *seg = log->segs[i];
        uint64_t pos = seg->base >= from ? 0 : seg_index_floor(seg, from);
        if (from > seg->dlast) { /* not durable yet: the bytes are in memory, or soon on disk */
            uint64_t start = AL_MAX(pos, seg->dsize);
            uint64_t mem_lo = seg->fbuf ? AL_MIN(seg->fbase, seg->bbase) : seg->bbase;
            if (start < mem_lo) { /* written, not yet synced, buffer recycled: wait for the sync */
                r->parked_next = log->parked;
                log->parked = r;
                log->reads_inflight++;
                return 0;
            }
            int rc = read_from_memory(log, seg, start, r);
            if (rc < 0) {
                storage_read_release(r);
                return rc;
            }
            if (r->next_offset == from) return 1;
            continue;
        }
        r->seg = i;
        r->tries = 0;
        log->reads_inflight++;
        size_t want = r->max_bytes + 2 * log->cfg.index_interval_bytes + STORAGE_BATCH_HEADER;
        read_disk_issue(log, r, pos, want);
        return 0;
    }
    return 1;
}

/* Re-runs every parked read (after a sync, a truncation or a failure); each completes, goes
 * to disk or parks again. Callbacks of reads that complete run here. */
static void reads_unpark(storage_log *log)
{
    storage_read *list = log->parked;
    log->parked = NULL;
    while (list) {
        storage_read *r = list;
        list = r->parked_next;
        r->parked_next = NULL;
        log->reads_inflight--;
        int rc = read_run(log, r);
        if (rc == 0) continue;
        r->res = rc < 0 ? rc : 0;
        if (rc < 0) storage_read_release(r);
        r->cb(r);
    }
}

int storage_log_read(storage_log *log, storage_read *r)
{
    log->touches++;
    r->data = NULL;
    r->len = 0;
    r->dcap = 0;
    r->res = 0;
    r->abuf = NULL;
    r->acap = 0;
    r->tries = 0;
    r->hops = 0;
    r->has_data = false;
    r->log = log;
    r->parked_next = NULL;
    memset(&r->op, 0, sizeof(r->op));
    r->next_offset = r->offset;
    return read_run(log, r);
}

void storage_read_release(storage_read *r)
{
    free(r->data);
    r->data = NULL;
    r->len = 0;
    r->dcap = 0;
}

/* ---- recovery ---- */

/* Returns 1 if the file bytes [from, to) (at most about SCAN_CHUNK, to <= file size) are all
 * zero, 0 if not, or -errno. Reads whole aligned blocks (the fd may be O_DIRECT). */
static int seg_range_is_zero(storage_log *log, int fd, uint64_t from, uint64_t to)
{
    uint64_t a = AL_ALIGN_DOWN(from, (uint64_t)SEG_ALIGN);
    uint64_t e = AL_ALIGN_UP(to, (uint64_t)SEG_ALIGN);
    uint8_t *b = aligned_alloc_raw((size_t)(e - a));
    if (!b) return -ENOMEM;
    ssize_t r = io_fs_pread(log->io, fd, b, (size_t)(e - a), a);
    int rc = 1;
    if (r < 0) rc = (int)r;
    else if ((uint64_t)r < to - a) rc = -EIO;
    for (uint64_t k = from - a; rc == 1 && k < to - a; k++)
        if (b[k]) rc = 0;
    free(b);
    return rc;
}

/* Scans seg's data file from position `from` (0, or a recovery checkpoint's newest index
 * entry, with seg's indexes and summary fields set up to it: log_ckpt_load), verifying every
 * batch, rebuilding indexes and summary fields. *hit is set when a batch ends exactly at
 * expect_pos with last offset expect_last (the checkpoint's position). Stops at the first zero header, torn or corrupt batch or offset discontinuity.
 * Sets seg->size to the valid length. *cut gets a reason when something non-zero was cut
 * (NULL otherwise). *tail_zero is set when everything from the valid end to the end of the
 * file was read and is zero. With tail != NULL, *tail gets a SEG_BUF_MIN write buffer holding
 * the partial block [align_down(size), size) when the scan has it in memory (else NULL), so
 * the active segment needs no further read. Returns 0 or -errno. */
static int seg_scan(storage_log *log, segment *seg, int64_t fsize, uint64_t from,
                    uint64_t expect_pos, int64_t expect_last, bool *hit, const char **cut,
                    bool *tail_zero, uint8_t **tail)
{
    size_t chunk = (size_t)AL_MIN((uint64_t)SCAN_CHUNK,
                                  AL_ALIGN_UP((uint64_t)fsize + 1, (uint64_t)SEG_ALIGN));
    size_t cap = chunk;
    uint8_t *b = aligned_alloc_raw(cap);
    if (!b) return -ENOMEM;
    uint64_t pos = from, cpos = 0, clen = 0; /* chunk [cpos, cpos+clen) */
    int rc = 0;
    *cut = NULL;
    *tail_zero = false;
    *hit = false;
    if (tail) *tail = NULL;
    if (from == 0) {
        seg->nidx = seg->ntidx = 0;
        seg->last = seg->base - 1;
        seg->max_ts = INT64_MIN;
    }
    for (uint64_t guard = 0; guard < (1ull << 40); guard++) {
        if (pos + STORAGE_BATCH_LOG_OVERHEAD > (uint64_t)fsize) {
            /* Fewer bytes left than a header: zeros (preallocated space) end the log cleanly;
             * anything else is a torn header. */
            if (pos < (uint64_t)fsize) {
                int z = seg_range_is_zero(log, seg->fd, pos, (uint64_t)fsize);
                if (z < 0) {
                    rc = z;
                    goto out;
                }
                if (!z) *cut = "a partial header at the end of the file";
            }
            *tail_zero = !*cut;
            break;
        }
        /* Make sure the header (and then the whole batch) is in the chunk. */
        size_t need = STORAGE_BATCH_HEADER;
        for (int pass = 0; pass < 2; pass++) {
            if (pos + need > cpos + clen && pos + need <= (uint64_t)fsize + SEG_ALIGN) {
                cpos = AL_ALIGN_DOWN(pos, (uint64_t)SEG_ALIGN);
                size_t want = (size_t)AL_ALIGN_UP(pos + need - cpos, (uint64_t)SEG_ALIGN);
                want = AL_MAX(want, chunk);
                if (want > cap) {
                    free(b);
                    b = aligned_alloc_raw(want);
                    cap = want;
                    if (!b) {
                        rc = -ENOMEM;
                        goto out;
                    }
                }
                ssize_t r = io_fs_pread(log->io, seg->fd, b, want, cpos);
                if (r < 0) {
                    rc = (int)r;
                    goto out;
                }
                clen = (uint64_t)r;
            }
            if (pass == 0) {
                storage_batch_hdr h0;
                uint64_t have = cpos + clen > pos ? cpos + clen - pos : 0;
                if (have < STORAGE_BATCH_LOG_OVERHEAD) break;
                storage_batch_parse_header(b + (pos - cpos), (size_t)have, &h0);
                if (h0.batch_length <= 0 || (uint64_t)h0.batch_length > (uint64_t)fsize) break;
                need = storage_batch_size(&h0);
            }
        }
        uint64_t have = cpos + clen > pos ? cpos + clen - pos : 0;
        const uint8_t *p = b + (pos - cpos);
        if (have >= STORAGE_BATCH_LOG_OVERHEAD && al_be64(p) == 0 && al_be32(p + 8) == 0) {
            /* Zeros: the clean end (preallocated space). Anything non-zero after? Cheap check
             * of the rest of this chunk only. */
            for (uint64_t k = pos - cpos; k < clen; k++)
                if (b[k]) {
                    *cut = "non-zero bytes after the end of the log";
                    break;
                }
            *tail_zero = !*cut && cpos + clen >= (uint64_t)fsize;
            break;
        }
        storage_batch_hdr h;
        int64_t sz = storage_batch_validate(p, (size_t)have, 0, &h);
        if (sz == AL_ETRUNCATED) {
            *cut = "a torn (incomplete) batch";
            break;
        }
        if (sz < 0) {
            *cut = sz == AL_ECORRUPT ? "a batch with a bad CRC" : "a malformed batch";
            break;
        }
        if (h.base_offset <= seg->last || h.base_offset < seg->base ||
            h.leader_epoch != seg->term || storage_batch_last_offset(&h) - seg->base > INT32_MAX ||
            pos + (uint64_t)sz > UINT32_MAX) {
            *cut = "a batch whose offset or term does not continue the segment";
            break;
        }
        if ((rc = seg_note_batch(log, seg, pos, &h)) < 0) goto out;
        pos += (uint64_t)sz;
        if (pos == expect_pos && seg->last == expect_last) *hit = true;
    }
    seg->size = pos;
    uint64_t bb = AL_ALIGN_DOWN(pos, (uint64_t)SEG_ALIGN);
    if (tail && bb >= cpos && pos <= cpos + clen) {
        *tail = aligned_alloc_raw(SEG_BUF_MIN);
        if (*tail) memcpy(*tail, b + (bb - cpos), (size_t)(pos - bb));
    }
out:
    free(b);
    return rc;
}

/* Parses "<base:020>-<term>.log"; returns 1 and fills base/term, 0 if not a segment name. */
static int parse_seg_name(const char *name, int64_t *base, int32_t *term)
{
    size_t n = strlen(name);
    if (n < 26 || strcmp(name + n - 4, ".log") != 0 || name[20] != '-') return 0;
    char *end;
    long long b = strtoll(name, &end, 10);
    if (end != name + 20 || b < 0) return 0;
    long t = strtol(name + 21, &end, 10);
    if (strcmp(end, ".log") != 0 || t < 0 || t > INT32_MAX) return 0;
    *base = b;
    *term = (int32_t)t;
    return 1;
}

/*
 * The last segment came with index files matching its size (a clean close wrote them, see
 * storage_log_close): checks that the batches from the newest index entry to the end are whole
 * and valid (CRC, records, offsets growing from that entry, the segment's term) and that the
 * last one ends exactly at the indexed size with the indexed last offset. Returns 0 if the
 * index can be trusted, AL_ECORRUPT if not (the caller scans everything), or -errno.
 */
static int seg_verify_tail(storage_log *log, segment *seg)
{
    if (seg->size == 0) return seg->last == seg->base - 1 ? 0 : AL_ECORRUPT;
    if (!seg->nidx) return AL_ECORRUPT;
    uint64_t from = seg->idx[seg->nidx - 1].pos;
    size_t len = (size_t)(seg->size - from);
    if (len > (size_t)log->cfg.index_interval_bytes + log->cfg.max_message_bytes + (64u << 20))
        return AL_ECORRUPT;
    uint8_t *b = malloc(len);
    if (!b) return -ENOMEM;
    int rc = seg_read_sync(log, seg, from, b, len);
    int64_t prev = seg->base + seg->idx[seg->nidx - 1].rel - 1;
    size_t off = 0;
    for (uint64_t guard = 0; rc == 0 && off < len && guard < (1ull << 32); guard++) {
        storage_batch_hdr h;
        int64_t sz = storage_batch_validate(b + off, len - off, 0, &h);
        if (sz < 0 || h.base_offset != prev + 1 || h.leader_epoch != seg->term) rc = AL_ECORRUPT;
        else {
            prev = storage_batch_last_offset(&h);
            off += (size_t)sz;
        }
    }
    if (rc == 0 && (off != len || prev != seg->last)) rc = AL_ECORRUPT;
    free(b);
    if (rc == 0) seg->last_idx_pos = from;
    return rc;
}

/* Unlinks seg's index files (stale: the segment is active again, or they did not match). */
static void seg_unlink_indexes(storage_log *log, segment *seg)
{
    char ip[SEG_PATH_MAX + 16];
    seg_path(seg, ".index", ip, sizeof(ip));
    io_fs_unlink(log->io, ip);
    seg_path(seg, ".timeindex", ip, sizeof(ip));
    io_fs_unlink(log->io, ip);
}

/*
 * Opens and recovers one segment found on disk. A closed segment, or the last one after a clean
 * close, whose index files match the data file is trusted (the last one only after
 * seg_verify_tail); anything else is scanned batch by batch. A tail of preallocated zeros is
 * left in place when it is short (read and checked instead of a truncate + fdatasync per log:
 * thousands of logs open at start-up); anything else after the valid end is cut.
 */
static int seg_recover(storage_log *log, segment *seg, bool is_last, bool has_ckpt,
                       bool *cut_any)
{
    char path[SEG_PATH_MAX + 16];
    seg_path(seg, ".log", path, sizeof(path));
    int fd = seg_open_data(log, path, O_RDWR);
    if (fd < 0) return fd;
    seg->fd = fd;
    int64_t fsize = io_fs_size(log->io, fd);
    if (fsize < 0) return (int)fsize;
    bool indexed = false;
    if (seg_load_index_file(log, seg, false, fsize) == 0) {
        uint32_t nidx = seg->nidx;
        if (seg_load_index_file(log, seg, true, fsize) == 0 && (nidx == 0) == (seg->ntidx == 0))
            indexed = true;
        if (indexed && is_last) {
            int vr = seg_verify_tail(log, seg);
            if (vr == -ENOMEM || (vr < 0 && vr != AL_ECORRUPT)) return vr;
            if (vr < 0) {
                log_warn("storage", "segment %s.log: its index files do not match its last "
                         "batches; scanning it", seg->stem);
                indexed = false;
            }
        }
        if (!indexed) {
            seg->nidx = seg->ntidx = 0;
            if (is_last) seg_unlink_indexes(log, seg);
        }
    }
    seg->finished = indexed; /* closed, trimmed, indexes on disk */
    /* A recovery checkpoint of a segment with valid index files is not needed; it may still
     * be on disk (kept: it stays valid), so a truncation must remove it first. */
    if (has_ckpt && indexed) seg->ckpt_hi = UINT64_MAX;
    if (!indexed) {
        log->scanned_segs++;
        seg->nidx = seg->ntidx = 0;
        const char *cut = NULL;
        bool tail_zero = false, hit = false;
        uint8_t *tail = NULL;
        /* The active segment after a crash: resume from its checkpoint (log_ckpt.c). */
        uint64_t from = 0, ck_pos = 0;
        int64_t ck_last = 0;
        int cr = has_ckpt && is_last ? log_ckpt_load(log, seg, fsize, &from, &ck_pos, &ck_last)
                                     : 0;
        if (cr < 0) return cr;
        int rc = seg_scan(log, seg, fsize, from, ck_pos, ck_last, &hit, &cut, &tail_zero,
                          is_last ? &tail : NULL);
        if (rc < 0) return rc;
        if (cr == 1 && !hit) { /* the data does not match it: scan everything */
            log_ckpt_mismatch(log, seg);
            free(tail);
            tail = NULL;
            rc = seg_scan(log, seg, fsize, 0, 0, 0, &hit, &cut, &tail_zero, &tail);
            if (rc < 0) return rc;
        } else if (cr == 1) {
            seg->ckpt_at = seg->ckpt_hi = ck_pos;
            log->ckpt_recovered_pos = from;
            log_info("storage", "segment %s.log: recovered from its checkpoint: scanned %" PRIu64
                     " of %" PRId64 " bytes, from position %" PRIu64, seg->stem,
                     seg->size - from, fsize, from);
        }
        if (cut) {
            log_warn("storage", "segment %s.log: cut %" PRId64 " bytes at position %" PRIu64
                     " (file size %" PRId64 "): %s; last offset kept %" PRId64,
                     seg->stem, fsize - (int64_t)seg->size, seg->size, fsize, cut, seg->last);
            *cut_any = true;
        }
        if (tail) { /* the active segment's write buffer, without reading its block again */
            storage_chunk *ch = storage_chunk_new(SEG_BUF_MIN);
            if (!ch) {
                free(tail);
                return -ENOMEM;
            }
            uint64_t bb = AL_ALIGN_DOWN(seg->size, (uint64_t)SEG_ALIGN);
            memcpy(ch->mem, tail, (size_t)(seg->size - bb)); /* the partial tail block */
            free(tail);
            storage_chunk_disown(seg->bch);
            seg_buf_set(seg, ch, ch->mem, bb);
            seg->bwant = SEG_BUF_MIN;
        }
        /* Zeros after the end stay as preallocated space (the scan usually read them). */
        bool keep_tail = !cut && (uint64_t)fsize > seg->size && tail_zero;
        if (!cut && !keep_tail && (uint64_t)fsize > seg->size &&
            (uint64_t)fsize - seg->size <= SCAN_CHUNK) {
            int z = seg_range_is_zero(log, fd, seg->size, (uint64_t)fsize);
            if (z < 0) return z;
            keep_tail = z == 1;
        }
        if ((uint64_t)fsize != seg->size && !keep_tail) {
            rc = io_fs_ftruncate(log->io, fd, seg->size);
            if (rc == 0) rc = io_fs_fdatasync(log->io, fd);
            if (rc < 0) return rc;
        }
        seg->alloc = keep_tail ? (uint64_t)fsize : seg->size;
        if (!is_last) {
            /* A closed segment without valid indexes: write them now. */
            char ip[SEG_PATH_MAX + 16];
            seg_path(seg, ".index", ip, sizeof(ip));
            io_fs_unlink(log->io, ip);
            seg_path(seg, ".timeindex", ip, sizeof(ip));
            io_fs_unlink(log->io, ip);
        }
    }
    seg->dsize = seg->size;
    seg->wsize = seg->size;
    seg->dlast = seg->last;
    if (indexed) seg->alloc = seg->size;
    return 0;
}

/*
 * A spare file found at open (see "spare files"): one whose first batch is whole and valid is
 * the newest segment (its roll's rename did not become durable): renamed to the name that
 * batch gives (base offset, leader epoch), *renamed set. Anything else was never acknowledged
 * and is unlinked. The caller syncs the directory before anything new is written. Returns 0,
 * AL_ECORRUPT if a file of that name exists already (cannot happen: at most one spare holds
 * data, and nothing at or above its base; the operator must look), or -errno.
 */
static int spare_recover(storage_log *log, const char *name, bool *renamed)
{
    char path[SEG_PATH_MAX + 300];
    snprintf(path, sizeof(path), "%s/%s", log->dir, name);
    int fd = seg_open_data(log, path, O_RDONLY);
    if (fd < 0) return fd;
    int64_t fsize = io_fs_size(log->io, fd);
    int rc = fsize < 0 ? (int)fsize : 0;
    storage_batch_hdr h;
    bool valid = false;
    uint8_t *b = NULL;
    size_t want = SEG_ALIGN;
    for (int pass = 0; rc == 0 && pass < 2 && fsize >= STORAGE_BATCH_HEADER; pass++) {
        b = aligned_alloc_raw(want);
        if (!b) {
            rc = -ENOMEM;
            break;
        }
        ssize_t r = io_fs_pread(log->io, fd, b, want, 0);
        if (r < 0) {
            rc = (int)r;
            break;
        }
        size_t got = (size_t)r;
        if (storage_batch_parse_header(b, got, &h) < 0 || h.batch_length <= 0) break;
        size_t sz = storage_batch_size(&h);
        if (sz > (uint64_t)fsize) break;
        if (sz <= got) {
            valid = storage_batch_validate(b, got, 0, &h) == (int64_t)sz;
            break;
        }
        free(b); /* the first batch is longer than a block: read it whole */
        b = NULL;
        want = AL_ALIGN_UP(sz, (size_t)SEG_ALIGN);
    }
    free(b);
    io_fs_close(log->io, fd);
    if (rc < 0) return rc;
    if (!valid || h.base_offset < 0 || h.leader_epoch < 0) {
        log_info("storage", "removing spare file %s (%" PRId64 " bytes, no batch)", path, fsize);
        return io_fs_unlink(log->io, path);
    }
    char to[SEG_PATH_MAX + 16];
    snprintf(to, sizeof(to), "%s/%020" PRId64 "-%" PRId32 ".log", log->dir, h.base_offset,
             h.leader_epoch);
    if ((rc = io_fs_exists(log->io, to)) != 0) {
        if (rc == 1)
            log_error("storage", "spare file %s holds the batch at offset %" PRId64 " but %s "
                      "exists: not opening the log", path, h.base_offset, to);
        return rc == 1 ? AL_ECORRUPT : rc;
    }
    log_info("storage", "spare file %s holds the segment at offset %" PRId64 " (term %" PRId32
             "), whose rename did not complete: renaming it to %s", path, h.base_offset,
             h.leader_epoch, to);
    if ((rc = io_fs_rename(log->io, path, to)) < 0) return rc;
    *renamed = true;
    return 0;
}

static int log_recover(storage_log *log)
{
    char **names = NULL;
    int n = io_fs_list(log->io, log->dir, &names);
    if (n < 0) return n;
    int rc = 0;
    bool cut_any = false;
    bool dir_changed = false; /* something was removed: sync the directory once at the end */
    /* Spare files first: one holding data becomes a segment (then the listing is redone). */
    bool renamed = false;
    for (int i = 0; i < n; i++) {
        if (!is_spare_name(names[i])) continue;
        if ((rc = spare_recover(log, names[i], &renamed)) < 0) goto out;
        dir_changed = true;
    }
    if (renamed) {
        io_fs_list_free(names, n);
        names = NULL;
        n = io_fs_list(log->io, log->dir, &names);
        if (n < 0) return n;
    }
    /* Leftovers of interrupted renames and compactions. */
    for (int i = 0; i < n; i++) {
        if (ends_with(names[i], ".tmp") || ends_with(names[i], ".cleaned")) {
            char path[SEG_PATH_MAX + 300];
            snprintf(path, sizeof(path), "%s/%s", log->dir, names[i]);
            log_info("storage", "removing leftover %s", path);
            io_fs_unlink(log->io, path);
            dir_changed = true;
        }
    }
    for (int i = 0; i < n; i++) {
        int64_t base;
        int32_t term;
        if (!parse_seg_name(names[i], &base, &term)) continue;
        segment *seg = seg_new(log, base, term);
        if (!seg) {
            rc = -ENOMEM;
            goto out;
        }
        if ((rc = segs_push(log, seg)) < 0) {
            seg_free(seg);
            goto out;
        }
    }
    /* Recovery checkpoints (log_ckpt.c): only the last segment's is of use; any other is a
     * leftover (its segment was finished or removed without a directory sync) and goes. */
    bool last_ckpt = false;
    for (int i = 0; i < n; i++) {
        if (!ends_with(names[i], ".ckpt")) continue;
        char lname[300];
        size_t ln = strlen(names[i]) - 5;
        int64_t base;
        int32_t term;
        if (ln + 5 > sizeof(lname)) continue;
        memcpy(lname, names[i], ln);
        memcpy(lname + ln, ".log", 5);
        segment *owner = NULL;
        if (parse_seg_name(lname, &base, &term))
            for (int k = 0; k < log->nsegs; k++)
                if (log->segs[k]->base == base && log->segs[k]->term == term)
                    owner = log->segs[k];
        if (owner && owner == log->segs[log->nsegs - 1]) {
            last_ckpt = true;
            continue;
        }
        char path[SEG_PATH_MAX + 300];
        snprintf(path, sizeof(path), "%s/%s", log->dir, names[i]);
        io_fs_unlink(log->io, path);
        if (owner) owner->ckpt_hi = UINT64_MAX; /* it might come back: see log_ckpt.c */
    }
    for (int i = 0; i < log->nsegs; i++) {
        segment *seg = log->segs[i];
        bool is_last = i == log->nsegs - 1;
        bool cut = false;
        if ((rc = seg_recover(log, seg, is_last, is_last && last_ckpt, &cut)) < 0) {
            log_error("storage", "recovering %s.log: %s", seg->stem, al_strerror(rc));
            goto out;
        }
        /* Segments must continue each other: a later one starts right after the previous
         * one's last offset (a gap means an unflushed tail was lost in between). */
        bool bad_order = i > 0 && (seg->base != log->segs[i - 1]->last + 1 ||
                                   seg->term < log->segs[i - 1]->term);
        if (bad_order) {
            log_info("storage", "segment %s.log does not continue the log (previous ends at %"
                     PRId64 "); removing it and every later segment", seg->stem,
                     log->segs[i - 1]->last);
            for (int k = log->nsegs - 1; k >= i; k--) seg_destroy_files(log, log->segs[k]);
            log->nsegs = i;
            dir_changed = true;
            if (i - 1 >= 0 && log->segs[i - 1]->sealed) log->segs[i - 1]->sealed = false;
            break;
        }
        if (cut && !is_last) {
            log_warn("storage", "segment %s.log was cut; removing the %d later segment(s)",
                     seg->stem, log->nsegs - 1 - i);
            for (int k = log->nsegs - 1; k > i; k--) seg_destroy_files(log, log->segs[k]);
            log->nsegs = i + 1;
            dir_changed = true;
            break;
        }
    }
    /* Segments wholly below the start offset (retention interrupted), never the last. */
    int drop = 0;
    while (drop < log->nsegs - 1 && log->segs[drop]->last < log->start) drop++;
    for (int k = 0; k < drop; k++) seg_destroy_files(log, log->segs[k]);
    if (drop) segs_remove_front(log, drop);
    /* Removals must be durable before new appends (a removed segment must not come back).
     * Unlinking the active segment's index files needs no sync: a stale index comes back only
     * with a data file of the size it records, i.e. with the data it describes. */
    if (dir_changed || drop) {
        rc = io_fs_fsync_dir(log->io, log->dir);
        if (rc < 0) goto out;
    }
    /* Empty closed segments in the middle carry nothing; keep the last (its term matters). */
    for (int i = 0; i < log->nsegs; i++) {
        segment *seg = log->segs[i];
        bool is_last = i == log->nsegs - 1;
        if (!is_last) {
            seg->sealed = true;
            if (!seg->finished) seg_finish(log, seg); /* scanned: write its indexes */
        } else {
            if (seg->finished) { /* indexed, but now the active segment: indexes go stale */
                seg_unlink_indexes(log, seg);
                seg->finished = false;
            }
            bool have_tail = seg->buf &&
                             seg->bbase == AL_ALIGN_DOWN(seg->size, (uint64_t)SEG_ALIGN);
            if (!have_tail && (rc = seg_load_tail(log, seg)) < 0) goto out;
        }
    }
    if (log->nsegs) {
        segment *last = log->segs[log->nsegs - 1];
        log->high = AL_MAX(last->last + 1, log->start);
    } else {
        log->high = log->start;
    }
    if (log->start > log->high) log->start = log->high;
    log->durable = log->high - 1;
    (void)cut_any;
out:
    io_fs_list_free(names, n);
    return rc;
}

int storage_log_open(io *iop, const char *dir, const storage_log_config *cfg,
                     storage_log **out)
{
    storage_log *log = calloc(1, sizeof(*log));
    if (!log) return -ENOMEM;
    log->io = iop;
    log->cfg = *cfg;
    if (!log->cfg.index_interval_bytes) log->cfg.index_interval_bytes = 4096;
    if (!log->cfg.flush_bytes) log->cfg.flush_bytes = 1u << 20;
    if (!log->cfg.segment_bytes) log->cfg.segment_bytes = 128u << 20;
    log->cfg.fallocate_step = AL_ALIGN_UP(AL_MAX(log->cfg.fallocate_step, (uint64_t)SEG_ALIGN),
                                          (uint64_t)SEG_ALIGN);
    snprintf(log->dir, sizeof(log->dir), "%s", dir);
    log->cs.out_fd = -1;
    log->spare_fd = -1;
    log->mk.next_fd = -1;
    int rc = io_fs_mkdir(iop, dir, 0755);
    if (rc == 0) rc = meta_read(log);
    if (rc == 0) rc = log_recover(log);
    if (rc < 0) {
        log->failed = true;
        storage_log_close(log);
        return rc;
    }
    log_debug("storage", "opened log %s: start %" PRId64 " next %" PRId64 ", %d segment(s)",
              dir, log->start, log->high, log->nsegs);
    *out = log;
    return 0;
}

/*
 * Clean close of a log whose active segment holds at least CLEAN_INDEX_MIN durable bytes: cut
 * the file to its size, fdatasync, write its index files, so the next open trusts them (after
 * checking the batches after the newest index entry) instead of reading the whole segment.
 * Smaller segments are cheaper to scan than these syncs. Errors are logged; the next open
 * then scans.
 */
static void log_close_index_active(storage_log *log)
{
    segment *a = log->segs[log->nsegs - 1];
    if (a->finished || a->size < CLEAN_INDEX_MIN || a->dsize != a->size) return;
    int rc = io_fs_ftruncate(log->io, a->fd, a->size);
    if (rc == 0) rc = io_fs_fdatasync(log->io, a->fd);
    if (rc == 0) rc = seg_write_indexes(log, log->io, a, true);
    if (rc < 0) {
        log_warn("storage", "closing %s.log: writing its index files: %s; the next start "
                 "scans it", a->stem, al_strerror(rc));
        seg_unlink_indexes(log, a);
    }
}

static void close_flush_cb(storage_waiter *w)
{
    *(int *)w->ctx = 1;
}

int storage_log_close(storage_log *log)
{
    /* A clean close makes everything appended durable first (unless the log failed). */
    log->zstop = true; /* no new zero fill; the one in flight is waited for below */
    int done = 0;
    storage_waiter w = {.cb = close_flush_cb, .ctx = &done};
    if (!log->failed && log->high - 1 > log->durable &&
        storage_log_flush_wait(log, log->high - 1, &w) == 0) {
        /* Poll only while something is in flight that can complete the flush. */
        for (int guard = 0;
             !done && (log_busy(log) || log->cbusy || log->reads_inflight) && guard < 1000000;
             guard++)
            io_poll(log->io, UINT64_MAX);
        if (!done) log_warn("storage", "log %s: closing before its final flush", log->dir);
    }
    for (int guard = 0; (log_busy(log) || log->reads_inflight) && guard < 1000000; guard++)
        io_poll(log->io, UINT64_MAX);
    if (log->trunc) trunc_try(log);
    AL_ASSERT(!log_busy(log));
    AL_ASSERT(log->reads_inflight == 0);
    log_mk_wait(log);
    log_spare_drop(log, true);
    log_ckpt_wait(log);
    log_fin_wait(log);
    log_del_wait(log);
    if (!log->failed) log_finish_sealed(log);
    if (!log->failed && log->nsegs) log_close_index_active(log);
    log_compact_reset(log);
    waiters_wake(log, INT64_MIN, AL_ECLOSED);
    for (int i = 0; i < log->nsegs; i++) {
        segment *seg = log->segs[i];
        if (seg->fd >= 0) io_fs_close(log->io, seg->fd);
        if (log->cfg.cache)
            storage_cache_drop(log->cfg.cache, log->cfg.log_id, seg->base, INT64_MAX);
        seg_free(seg);
    }
    free(log->ckpt.buf);
    free(log->segs);
    free(log);
    return 0;
}

void storage_log_abandon(storage_log *log)
{
    /* A zero-fill write may be in flight (it starts when the log goes idle, e.g. right after a
     * test's last sync): with a live io, wait for it (bounded) so that its completion does not
     * reach freed memory; failed first, so that completions start nothing new. A dead
     * (crashed) io completes nothing: the loop ends at its bound. */
    log->failed = true;
    log->zstop = true;
    uint64_t until = io_now_ns(log->io) + 5000000000ull;
    for (int guard = 0; log->zbusy && guard < 10000 && io_now_ns(log->io) < until; guard++)
        io_poll(log->io, io_now_ns(log->io) + 10000000ull);
    log_mk_wait(log); /* a dead io never runs these (-ECANCELED) */
    log_spare_drop(log, false); /* the file stays, as a SIGKILL leaves it */
    log_ckpt_wait(log); /* a dead io never runs these (-ECANCELED) */
    log_fin_wait(log);
    log_del_wait(log);
    compact_state *cs = &log->cs;
    free(cs->out_buf);
    free(cs->out_idx);
    free(cs->out_tidx);
    cs->out_fd = -1;
    cs->out_buf = NULL;
    cs->out_idx = NULL;
    cs->out_tidx = NULL;
    if (cs->map) {
        cs->phase = 0;
        log_compact_reset(log); /* frees the key map; out_fd is -1 so no I/O */
    }
    for (int i = 0; i < log->nsegs; i++) {
        if (log->cfg.cache)
            storage_cache_drop(log->cfg.cache, log->cfg.log_id, log->segs[i]->base, INT64_MAX);
        seg_free(log->segs[i]);
    }
    free(log->ckpt.buf);
    free(log->segs);
    free(log);
}

/* ---- truncation ---- */

/* Finds, in seg, the position of the batch holding the first offset >= offset, and the last
 * offset before it. Returns 0 or -errno. */
static int seg_find_batch(storage_log *log, segment *seg, int64_t offset, uint64_t *pos_out,
                          int64_t *prev_last)
{
    uint64_t pos = seg_index_floor(seg, offset);
    int64_t prev = seg->base - 1;
    /* prev before the floor: the index entry's batch base - 1 is a safe lower value only for
     * reporting; find the exact last offset by scanning from the floor. */
    for (uint32_t k = 0; k < seg->nidx; k++)
        if (seg->idx[k].pos == pos && pos) prev = seg->base + seg->idx[k].rel - 1;
    for (uint64_t guard = 0; pos < seg->size && guard < (1ull << 40); guard++) {
        uint8_t hb[STORAGE_BATCH_HEADER];
        int rc = seg_read_sync(log, seg, pos, hb, sizeof(hb));
        if (rc < 0) return rc;
        storage_batch_hdr h;
        storage_batch_parse_header(hb, sizeof(hb), &h);
        if (storage_batch_last_offset(&h) >= offset) break;
        prev = storage_batch_last_offset(&h);
        pos += storage_batch_size(&h);
    }
    *pos_out = pos;
    *prev_last = prev;
    return 0;
}

/* The max timestamp of seg's batches before position end (a batch boundary): the time index
 * entry of the newest index entry below end (its running max covers everything up to and
 * including its batch) and every batch from there to end, or, if the two indexes are not in
 * step there, every batch from 0. Returns 0 or -errno. */
static int seg_max_ts_before(storage_log *log, segment *seg, uint64_t end, int64_t *out)
{
    uint32_t k = seg->nidx;
    while (k && seg->idx[k - 1].pos >= end) k--;
    bool step = k && seg->ntidx >= k && seg->tidx[k - 1].rel == seg->idx[k - 1].rel;
    int64_t m = step ? seg->tidx[k - 1].ts : INT64_MIN;
    uint64_t p = step ? seg->idx[k - 1].pos : 0;
    for (uint64_t guard = 0; p < end && guard < (1ull << 40); guard++) {
        uint8_t hb[STORAGE_BATCH_HEADER];
        int rc = seg_read_sync(log, seg, p, hb, sizeof(hb));
        if (rc < 0) return rc;
        storage_batch_hdr h;
        storage_batch_parse_header(hb, sizeof(hb), &h);
        if (h.batch_length <= 0) return AL_ECORRUPT;
        if (h.max_timestamp > m) m = h.max_timestamp;
        p += storage_batch_size(&h);
    }
    *out = m;
    return 0;
}

/* Removes offsets >= offset (no flush in flight). Waiters above the new end get werr. */
static int log_truncate(storage_log *log, int64_t offset, int werr)
{
    AL_ASSERT(!log_busy(log));
    log_mk_wait(log); /* the active segment may go, or be cut: its file must exist */
    log_ckpt_wait(log);
    log_fin_wait(log);
    int rc = 0;
    bool dir_changed = false;
    log->truncations++;
    log->npend = 0; /* written-unsynced data at or above offset goes; below it is re-synced */
    while (log->nsegs > 0 && log->segs[log->nsegs - 1]->base >= offset) {
        seg_destroy_files(log, log->segs[log->nsegs - 1]);
        log->nsegs--;
        dir_changed = true;
    }
    if (log->nsegs > 0) {
        segment *seg = log->segs[log->nsegs - 1];
        if (seg->last >= offset) {
            uint64_t pos;
            int64_t prev;
            if ((rc = seg_find_batch(log, seg, offset, &pos, &prev)) < 0) return rc;
            /* The kept batches' max timestamp (retention.ms, the index files' header): the
             * newest time index entry alone misses the batches after it. */
            int64_t max_ts;
            if (seg_max_ts_before(log, seg, pos, &max_ts) < 0) /* a read failed: as before */
                max_ts = INT64_MIN;
            /* Keep the in-memory bytes of the new tail block before dropping anything. */
            uint64_t bb = AL_ALIGN_DOWN(pos, (uint64_t)SEG_ALIGN);
            storage_chunk *nch = storage_chunk_new(SEG_BUF_MIN);
            if (!nch) return -ENOMEM;
            uint8_t *nb = nch->mem;
            if (pos > bb && (rc = seg_read_sync(log, seg, bb, nb, (size_t)(pos - bb))) < 0) {
                storage_chunk_disown(nch);
                return rc;
            }
            /* A recovery checkpoint beyond pos goes durably first (log_ckpt.c). */
            if ((rc = log_ckpt_invalidate(log, seg, pos)) < 0) {
                storage_chunk_disown(nch);
                return rc;
            }
            rc = io_fs_ftruncate(log->io, seg->fd, pos);
            if (rc == 0) rc = io_fs_fdatasync(log->io, seg->fd);
            if (rc < 0) {
                storage_chunk_disown(nch);
                return rc;
            }
            seg->size = pos;
            seg->alloc = pos;
            seg->zeroed = 0;
            seg->wsize = AL_MIN(seg->wsize, pos);
            seg->last = prev;
            if (seg->dsize > pos) {
                seg->dsize = pos;
                seg->dlast = prev;
            }
            while (seg->nidx && seg->idx[seg->nidx - 1].pos >= pos) seg->nidx--;
            while (seg->ntidx && (int64_t)seg->tidx[seg->ntidx - 1].rel > prev - seg->base)
                seg->ntidx--;
            seg->last_idx_pos = seg->nidx ? seg->idx[seg->nidx - 1].pos : 0;
            seg->max_ts = max_ts != INT64_MIN ? max_ts
                          : seg->ntidx ? seg->tidx[seg->ntidx - 1].ts : INT64_MIN;
            /* New chunks: the cache may still point into the old ones (and a Fetch hold
             * them), and appends now go over the dropped bytes' positions. */
            seg_bufs_drop(seg);
            seg->pbase = seg->pend = 0;
            seg_buf_set(seg, nch, nb, bb);
            seg->bwant = SEG_BUF_MIN;
            if (seg->finished) {
                char ip[SEG_PATH_MAX + 16];
                seg_path(seg, ".index", ip, sizeof(ip));
                io_fs_unlink(log->io, ip);
                seg_path(seg, ".timeindex", ip, sizeof(ip));
                io_fs_unlink(log->io, ip);
                dir_changed = true;
            }
            seg->sealed = false;
            seg->finished = false;
        }
        log->high = seg->last + 1;
    } else {
        log->high = AL_MAX(offset, log->start);
    }
    if (log->high < log->start) log->high = log->start;
    if (log->durable > log->high - 1) log->durable = log->high - 1;
    if (dir_changed) io_fs_fsync_dir(log->io, log->dir);
    if (log->cfg.cache) storage_cache_drop(log->cfg.cache, log->cfg.log_id, offset, INT64_MAX);
    log_compact_reset(log);
    waiters_wake(log, log->high - 1, werr);
    waiters_wake(log, log->durable, 0); /* log_mk_wait above may have moved it up */
    if (log->parked) reads_unpark(log);
    return 0;
}

int storage_log_truncate_suffix_async(storage_log *log, storage_truncation *t)
{
    if (log->failed) return AL_EFAILED;
    if (log->trunc) return AL_EFULL;
    if (t->offset < log->start) return AL_ERANGE;
    t->res = 0;
    if (t->offset >= log->high) return 1;
    if (!log_busy(log) && !log->reads_inflight) {
        int rc = log_truncate(log, t->offset, AL_ERANGE);
        return rc < 0 ? rc : 1;
    }
    log->trunc = t;
    return 0;
}

int storage_log_truncate_suffix(storage_log *log, int64_t offset)
{
    if (log->failed) return AL_EFAILED;
    if (log_busy(log) || log->reads_inflight || log->trunc) return AL_EFULL;
    if (offset < log->start) return AL_ERANGE;
    if (offset >= log->high) return 0;
    return log_truncate(log, offset, AL_ERANGE);
}

/* ---- start offset and retention ---- */

/*
 * ---- delete jobs ----
 *
 * Segments below the start offset leave segs[] (and the cache) on the shard at once; closing
 * and unlinking their files and the directory fsync (2-5 ms of blocking syncs per pass) run as
 * one io_offload job per log at a time, which frees the segments in its callback. A crash
 * before the job ran leaves files below the durable start offset, which the next open deletes
 * (log_recover). Close and abandon wait for the job.
 */
static int del_job(io *iop, void *arg)
{
    struct log_del *d = arg;
    for (int i = 0; i < d->n; i++) seg_remove_files(iop, d->segs[i]);
    return io_fs_fsync_dir(iop, d->log->dir);
}

static void del_apply(storage_log *log, int rc)
{
    struct log_del *d = &log->del;
    AL_ASSERT(log->dbusy);
    if (rc < 0 && rc != -ECANCELED)
        log_warn("storage", "log %s: deleting %d segments below the start offset: %s (the "
                 "next open deletes what is left)", log->dir, d->n, al_strerror(rc));
    for (int i = 0; i < d->n; i++) {
        d->segs[i]->fd = -1; /* closed by the job, or (-ECANCELED) never to be */
        seg_free(d->segs[i]);
    }
    d->n = 0;
    log->dbusy = false;
    log->del_jobs++;
}

static void del_done(io_op *op)
{
    del_apply(op->ctx, op->res);
}

/* Waits for the delete job in flight, if any (blocks the caller: close, abandon, Raft's
 * restart_at). */
void log_del_wait(storage_log *log)
{
    if (!log->dbusy) return;
    del_apply(log, io_offload_finish(log->io, &log->del.op));
}

/* Deletes whole segments below the start offset that are safe to delete now (their files go
 * in a delete job; one at a time, the rest at a later pass). */
static void log_delete_below_start(storage_log *log)
{
    if (log->reads_inflight || log->dbusy) return;
    int drop = 0;
    while (drop < log->nsegs - 1 && drop < LOG_FIN_MAX) {
        segment *seg = log->segs[drop];
        if (seg->last >= log->start || !seg->sealed || seg->dsize != seg->size ||
            seg->finishing || (log->zbusy && log->zseg == seg))
            break;
        drop++;
    }
    if (!drop) return;
    if (log->cs.phase) log_compact_reset(log);
    struct log_del *d = &log->del;
    for (int k = 0; k < drop; k++) {
        segment *seg = log->segs[k];
        AL_ASSERT(!seg->finishing);
        if (log->cfg.cache)
            storage_cache_drop(log->cfg.cache, log->cfg.log_id, seg->base, seg->last);
        d->segs[k] = seg;
    }
    d->n = drop;
    d->log = log;
    segs_remove_front(log, drop);
    log->dbusy = true;
    d->op = (io_op){.cb = del_done, .ctx = log};
    io_offload(log->io, &d->op, del_job, d);
}

int storage_log_set_start_offset(storage_log *log, int64_t offset)
{
    if (offset > log->high || offset < 0) return AL_ERANGE;
    if (offset <= log->start) return 0;
    int64_t old = log->start;
    log->start = offset;
    int rc = meta_write(log);
    if (rc < 0) {
        log->start = old;
        return rc;
    }
    if (log->cfg.cache) storage_cache_drop(log->cfg.cache, log->cfg.log_id, 0, offset - 1);
    log_delete_below_start(log);
    return 0;
}

/* Retention: the new start offset implied by retention.bytes and retention.ms (whole closed
 * segments from the front). */
static int log_retention(storage_log *log, int64_t now_ms)
{
    int64_t new_start = log->start;
    uint64_t total = storage_log_size_bytes(log);
    for (int i = 0; i < log->nsegs - 1; i++) {
        segment *seg = log->segs[i];
        if (!seg->sealed || seg->dsize != seg->size || seg->finishing) break;
        bool by_size = log->cfg.retention_bytes >= 0 &&
                       total - seg->size >= (uint64_t)log->cfg.retention_bytes &&
                       total > (uint64_t)log->cfg.retention_bytes;
        bool by_time = log->cfg.retention_ms >= 0 && seg->max_ts != INT64_MIN &&
                       now_ms - seg->max_ts > log->cfg.retention_ms;
        if (!by_size && !by_time) break;
        total -= seg->size;
        new_start = AL_MAX(new_start, seg->last + 1);
    }
    if (new_start > log->start) {
        log_info("storage", "log %s: retention moves the start offset %" PRId64 " -> %" PRId64,
                 log->dir, log->start, new_start);
        return storage_log_set_start_offset(log, new_start);
    }
    log_delete_below_start(log);
    return 0;
}

/*
 * Idle cache release: a log nobody appended to or read from for the cache's idle_ms drops its
 * entries from the shard's batch cache, and with them the write-buffer chunks they pinned
 * (seg_buf_trim has let go of the log's own buffers by then). The cache's memory then follows
 * the logs in use: a finished burst's batches do not stay resident until newer appends evict
 * them (BENCHMARKS.md: on a machine whose memory monitor scans mapped pages, 512 MiB of them
 * cost the shard ~1 s of CPU per 10 s). A read after that comes from disk.
 */
static void log_cache_idle(storage_log *log, int64_t now_ms)
{
    if (log->touches != log->touches_seen || log->reads_inflight || !log->idle_noted) {
        log->touches_seen = log->touches;
        log->idle_since_ms = now_ms;
        log->idle_noted = true;
        return;
    }
    int64_t idle = log->cfg.cache ? storage_cache_idle_ms(log->cfg.cache) : 0;
    if (!log->cache_held || idle <= 0 || now_ms - log->idle_since_ms < idle) return;
    storage_cache_drop(log->cfg.cache, log->cfg.log_id, INT64_MIN, INT64_MAX);
    log->cache_held = false;
}

int storage_log_housekeep(storage_log *log, int64_t now_ms, size_t budget_bytes)
{
    if (log->failed) return AL_EFAILED;
    if (log->nsegs && log->cfg.segment_ms > 0) {
        segment *a = log->segs[log->nsegs - 1];
        if (!a->sealed && a->size > 0 && now_ms - a->created_ms >= log->cfg.segment_ms) {
            a->sealed = true; /* the next append rolls */
        }
    }
    fin_start(log);
    log_ckpt_maybe(log);
    if (log->nsegs) seg_buf_trim(log, log->segs[log->nsegs - 1]);
    log_cache_idle(log, now_ms);
    int rc = 0;
    if (log->cfg.cleanup_policy & STORAGE_CLEANUP_DELETE) rc = log_retention(log, now_ms);
    if (rc < 0) return rc;
    if ((log->cfg.cleanup_policy & STORAGE_CLEANUP_COMPACT) && !log->reads_inflight)
        return log_compact_step(log, now_ms, budget_bytes);
    return 0;
}

/* ---- header scan (state rebuilds) ---- */

int storage_log_scan_headers(storage_log *log, int64_t from, storage_header_cb cb, void *ctx)
{
    if (log->failed) return AL_EFAILED;
    if (log->trunc) return AL_EFULL;
    int first = seg_find(log, from);
    if (first < 0) first = 0;
    size_t cap = SCAN_READ;
    uint8_t *b = malloc(cap);
    if (!b) return -ENOMEM;
    int rc = 0;
    for (int i = first; i < log->nsegs && rc == 0; i++) {
        segment *seg = log->segs[i];
        uint64_t pos = i == first ? seg_index_floor(seg, from) : 0;
        /* One chunk at a time: every whole batch in it, then the next chunk starts at the
         * first batch that did not fit (a batch larger than the chunk grows the buffer). */
        for (uint64_t guard = 0; pos < seg->size && rc == 0 && guard < (1ull << 32); guard++) {
            size_t len = (size_t)AL_MIN((uint64_t)cap, seg->size - pos);
            if ((rc = seg_read_sync(log, seg, pos, b, len)) < 0) break;
            size_t off = 0;
            while (rc == 0 && off + STORAGE_BATCH_HEADER <= len) {
                storage_batch_hdr h;
                storage_batch_parse_header(b + off, len - off, &h);
                size_t sz = storage_batch_size(&h);
                if (h.batch_length <= 0 || h.magic != 2 || pos + off + sz > seg->size ||
                    sz < STORAGE_BATCH_HEADER) {
                    rc = AL_ECORRUPT;
                    break;
                }
                if (off + sz > len) break; /* read it with the next chunk */
                if (crc32c(0, b + off + STORAGE_BATCH_OFF_ATTR, sz - STORAGE_BATCH_OFF_ATTR) !=
                    h.crc) {
                    rc = AL_ECORRUPT;
                    break;
                }
                if (storage_batch_last_offset(&h) >= from) {
                    int r = cb(ctx, &h);
                    if (r) rc = r;
                }
                off += sz;
            }
            if (rc) break;
            if (off == 0) { /* one batch larger than the buffer (or a short header) */
                storage_batch_hdr h;
                if (len < STORAGE_BATCH_HEADER ||
                    storage_batch_parse_header(b, len, &h) < 0 || h.batch_length <= 0) {
                    rc = AL_ECORRUPT;
                    break;
                }
                size_t ncap = AL_ALIGN_UP(storage_batch_size(&h), (size_t)SEG_ALIGN);
                uint8_t *nb = ncap > cap ? malloc(ncap) : NULL;
                if (!nb) {
                    rc = ncap > cap ? -ENOMEM : AL_ECORRUPT;
                    break;
                }
                free(b);
                b = nb;
                cap = ncap;
                continue;
            }
            pos += off;
        }
    }
    free(b);
    return rc == 1 ? 0 : rc; /* 1: stopped early by cb */
}

/* Bytes of seg's write-buffer chunks, each once (buffers may share one). */
static uint64_t seg_buf_bytes(const segment *a)
{
    uint64_t n = 0;
    if (a->bch) n += a->bch->cap;
    if (a->fch && a->fch != a->bch) n += a->fch->cap;
    if (a->pch && a->pch != a->bch && a->pch != a->fch) n += a->pch->cap;
    return n;
}

void storage_log_buf_info_get(const storage_log *log, storage_log_buf_info *out)
{
    out->bytes = 0;
    out->regrows = log->buf_regrows;
    out->pipelined = log->writes_pipelined;
    out->shared_block = log->writes_shared_block;
    out->zeroed = log->zero_bytes;
    out->zero_waits = log->zero_waits;
    out->finish_jobs = log->fin_jobs;
    out->delete_jobs = log->del_jobs;
    out->scanned_segments = log->scanned_segs;
    out->roll_jobs = log->roll_jobs;
    out->roll_waits = log->roll_waits;
    out->spare_rolls = log->spare_rolls;
    out->spare_ready = log->spare_fd >= 0;
    out->ckpt_jobs = log->ckpt_jobs;
    out->ckpt_recovered_pos = log->ckpt_recovered_pos;
    out->unfinished = 0;
    out->sealed_bytes = 0;
    if (!log->nsegs) return;
    for (int i = 0; i < log->nsegs; i++) {
        const segment *s = log->segs[i];
        if (s->sealed && !s->finished) out->unfinished++;
        if (i < log->nsegs - 1) out->sealed_bytes += seg_buf_bytes(s);
    }
    out->bytes = seg_buf_bytes(log->segs[log->nsegs - 1]);
}

int storage_log_segment_info(const storage_log *log, int i, storage_segment_info *out)
{
    if (i < 0 || i >= log->nsegs) return AL_ERANGE;
    const segment *seg = log->segs[i];
    out->base = seg->base;
    out->last = seg->last;
    out->term = seg->term;
    out->size = seg->size;
    out->durable_size = seg->dsize;
    out->max_timestamp = seg->max_ts;
    out->index_entries = seg->nidx;
    out->sealed = seg->sealed;
    out->finished = seg->finished;
    out->path_stem = seg->stem;
    return 0;
}

int storage_log_compact_all(storage_log *log, int64_t now_ms)
{
    if (log->reads_inflight) return AL_EFULL;
    log_fin_wait(log);
    log_finish_sealed(log);
    log_compact_reset(log);
    for (int i = 0; i < log->nsegs; i++) log->segs[i]->cleaned = false;
    for (int guard = 0; guard < 10000000; guard++) {
        int rc = log_compact_step(log, now_ms, 1u << 20);
        if (rc <= 0) return rc;
    }
    return AL_ETIMEDOUT;
}
