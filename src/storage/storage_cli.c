/*
 * storage_cli.c — `ailurus storage dump|check|bench`: the storage debug tool (in the spirit of
 * LMDB's mdb_dump/mdb_stat) and the storage benchmark.
 *
 *   dump DIR [--records]  prints every segment and batch (and records) of the log(s) under DIR
 *   check DIR             verifies every batch's CRC and structure, offset continuity, index
 *                         files and metadata; exit 0 if clean, 1 if anything is wrong
 *   bench --dir D --flush-bytes N --seconds S [--batch-bytes B] [--window-bytes W] [--logs L]
 *         [--segment-bytes N]
 *         [--split-sync 0|1] [--rate R] [--prezero-bytes Z] [--pipeline 0|1]
 *                         durable append throughput and latency of real logs on io_uring (L
 *                         logs on one io, appended to in turn, like one shard's partitions);
 *                         closed loop, or open loop at R batches/s (latency from each
 *                         batch's scheduled time); Z and --pipeline set the log config's
 *                         prezero_bytes and pipeline_writes (A/B of the write path)
 *   recover-bench --dir D [--mb N] [--crash 0|1] [--ckpt-mb C]
 *                         writes one N MiB segment (16 KiB batches of 1 KiB records), closes it
 *                         (or, --crash 1, abandons it durable but without a clean close, as
 *                         after SIGKILL), then times storage_log_open of it (recovery MB/s);
 *                         C: the log config's ckpt_bytes in MiB (recovery checkpoints; 0 off)
 *
 * dump and check never modify anything: they read the files directly (read-only), unlike
 * storage_log_open, which recovers (truncates a torn tail). DIR may be a log directory or a
 * directory containing log directories (searched three levels deep).
 */
#include "base/crc32c.h"
#include "base/cursor.h"
#include "base/log.h"
#include "cli/commands.h"
#include "reactor/io.h"
#include "storage/batch.h"
#include "storage/log.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define CLI_PATH 4096

typedef struct scan_opts {
    bool records; /* dump: print records too */
    bool quiet;   /* check: only problems and the summary */
} scan_opts;

typedef struct scan_totals {
    uint64_t segments, batches, records, bytes, problems;
} scan_totals;

/* Parses "<base:020>-<term>.log". */
static bool cli_seg_name(const char *name, int64_t *base, int32_t *term)
{
    size_t n = strlen(name);
    if (n < 26 || strcmp(name + n - 4, ".log") != 0 || name[20] != '-') return false;
    char *end;
    long long b = strtoll(name, &end, 10);
    if (end != name + 20 || b < 0) return false;
    long t = strtol(name + 21, &end, 10);
    if (strcmp(end, ".log") != 0 || t < 0) return false;
    *base = b;
    *term = (int32_t)t;
    return true;
}

static void problem(scan_totals *t, const char *fmt, const char *path, uint64_t pos,
                    const char *what)
{
    t->problems++;
    printf(fmt, path, pos, what);
}

/* Prints the records of one batch. */
static void dump_records(const uint8_t *b, size_t sz, const storage_batch_hdr *h)
{
    const uint8_t *recs;
    size_t rlen;
    uint8_t *owned;
    int rc = storage_batch_records(b, sz, 64u << 20, &recs, &rlen, &owned);
    if (rc < 0) {
        printf("      records: cannot decode: %s\n", al_strerror(rc));
        return;
    }
    storage_record_iter it;
    storage_record r;
    storage_record_iter_init(&it, recs, rlen, h->records_count);
    while ((rc = storage_record_iter_next(&it, &r)) == 1) {
        printf("      offset %" PRId64 " ts %" PRId64 " key ", h->base_offset + r.offset_delta,
               h->base_timestamp + r.timestamp_delta);
        if (r.key_len < 0) printf("null");
        else printf("\"%.*s\"", AL_MIN(r.key_len, 40), (const char *)r.key);
        if (r.value_len < 0) printf(" value null (tombstone)");
        else printf(" value %d bytes", r.value_len);
        printf(" headers %d\n", r.header_count);
    }
    if (rc < 0) printf("      records: malformed: %s\n", al_strerror(rc));
    free(owned);
}

/* Checks an index file against the batch starts found by the scan. */
static void check_index(io *iop, const char *stem, bool time, int64_t base, int32_t term,
                        int64_t last, uint64_t size, const uint64_t *starts,
                        const int64_t *bases, size_t nstarts, scan_totals *t,
                        const scan_opts *o)
{
    char path[CLI_PATH + 16];
    snprintf(path, sizeof(path), "%s%s", stem, time ? ".timeindex" : ".index");
    uint8_t *b = NULL;
    size_t len = 0;
    int rc = io_fs_read_all(iop, path, 256u << 20, &b, &len);
    if (rc == -ENOENT) {
        if (!o->quiet) printf("    %s: none (active segment, or rebuilt at recovery)\n", path);
        return;
    }
    const char *bad = NULL;
    if (rc < 0) bad = al_strerror(rc);
    else if (len < 52 || crc32c(0, b, len - 4) != al_be32(b + len - 4)) bad = "bad checksum";
    uint32_t cnt = 0;
    if (!bad) {
        al_rd rd = al_rd_make(b, len - 4);
        uint32_t magic = al_rd_u32(&rd);
        al_rd_u32(&rd);
        int64_t ib = al_rd_i64(&rd), il = al_rd_i64(&rd);
        uint64_t isz = al_rd_u64(&rd);
        al_rd_i64(&rd);
        cnt = al_rd_u32(&rd);
        int32_t it = (int32_t)al_rd_u32(&rd);
        if (magic != (time ? 0x414c5449u : 0x414c4958u)) bad = "bad magic";
        else if (ib != base || it != term) bad = "names another segment";
        else if (isz != size || il != last) bad = "stale (size or last offset differ from data)";
        else if (al_rd_left(&rd) != (size_t)cnt * (time ? 12 : 8)) bad = "bad entry count";
        for (uint32_t i = 0; !bad && !time && i < cnt; i++) {
            uint32_t rel = al_rd_u32(&rd), pos = al_rd_u32(&rd);
            /* The entry must point at a batch start holding that offset. */
            size_t lo = 0, hi = nstarts;
            while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (starts[mid] < pos) lo = mid + 1;
                else hi = mid;
            }
            if (lo >= nstarts || starts[lo] != pos || bases[lo] != base + rel)
                bad = "an entry does not point at its batch";
        }
    }
    if (bad) {
        t->problems++;
        printf("    PROBLEM %s: %s\n", path, bad);
    } else if (!o->quiet) {
        printf("    %s: %u entries, ok\n", path, cnt);
    }
    free(b);
}

/* Scans one segment file read-only. prev_last: the previous segment's last offset. */
static void scan_segment(io *iop, const char *dir, const char *name, int64_t base, int32_t term,
                         int64_t *prev_last, bool dump, const scan_opts *o, scan_totals *t)
{
    char path[CLI_PATH + 300], stem[CLI_PATH + 300];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(stem, sizeof(stem), "%s/%.*s", dir, (int)(strlen(name) - 4), name);
    int fd = io_fs_open(iop, path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) {
        t->problems++;
        printf("  PROBLEM %s: cannot open: %s\n", path, al_strerror(fd));
        return;
    }
    int64_t fsize = io_fs_size(iop, fd);
    uint8_t *data = fsize > 0 ? malloc((size_t)fsize) : NULL;
    if (fsize > 0 && (!data || io_fs_pread(iop, fd, data, (size_t)fsize, 0) != fsize)) {
        t->problems++;
        printf("  PROBLEM %s: cannot read\n", path);
        free(data);
        io_fs_close(iop, fd);
        return;
    }
    io_fs_close(iop, fd);
    t->segments++;
    if (!o->quiet)
        printf("  segment %s: base %" PRId64 " term %" PRId32 " file size %" PRId64 "\n", name,
               base, term, fsize);
    if (*prev_last >= 0 && base != *prev_last + 1) {
        t->problems++;
        printf("  PROBLEM %s: base %" PRId64 " does not follow the previous last offset %" PRId64
               "\n", path, base, *prev_last);
    }
    size_t cap = 1024, n = 0;
    uint64_t *starts = malloc(cap * sizeof(*starts));
    int64_t *bases = malloc(cap * sizeof(*bases));
    uint64_t pos = 0;
    int64_t last = base - 1;
    for (uint64_t guard = 0; pos < (uint64_t)fsize && guard < (1ull << 40); guard++) {
        size_t left = (size_t)((uint64_t)fsize - pos);
        const uint8_t *p = data + pos;
        if (left >= 12 && al_be64(p) == 0 && al_be32(p + 8) == 0) {
            bool tail_zero = true;
            for (size_t k = 0; k < left; k++)
                if (p[k]) tail_zero = false;
            if (!tail_zero)
                problem(t, "  PROBLEM %s: non-zero bytes after the end of the batches at %" PRIu64
                        "%s\n", path, pos, "");
            else if (!o->quiet)
                printf("    %zu zero bytes of preallocated space at %" PRIu64 "\n", left, pos);
            break;
        }
        storage_batch_hdr h;
        int64_t sz = storage_batch_validate(p, left, 0, &h);
        if (sz < 0) {
            problem(t, "  PROBLEM %s: invalid batch at position %" PRIu64 ": %s (recovery would "
                    "truncate here)\n", path, pos, al_strerror((int)sz));
            break;
        }
        if (h.base_offset <= last || h.leader_epoch != term) {
            problem(t, "  PROBLEM %s: batch at %" PRIu64 " %s\n", path, pos,
                    h.base_offset <= last ? "does not increase the offset"
                                          : "has another term than its segment");
        }
        if (n == cap) {
            cap *= 2;
            starts = realloc(starts, cap * sizeof(*starts));
            bases = realloc(bases, cap * sizeof(*bases));
        }
        starts[n] = pos;
        bases[n++] = h.base_offset;
        if (dump) {
            printf("    batch @%" PRIu64 " offsets %" PRId64 "..%" PRId64 " records %" PRId32
                   " size %" PRId64 " epoch %" PRId32 " crc %08x ok codec %d%s%s ts %" PRId64
                   "..%" PRId64 " pid %" PRId64 "\n",
                   pos, h.base_offset, storage_batch_last_offset(&h), h.records_count, sz,
                   h.leader_epoch, h.crc, storage_batch_compression(&h),
                   h.attributes & STORAGE_ATTR_TRANSACTIONAL ? " txn" : "",
                   h.attributes & STORAGE_ATTR_CONTROL ? " control" : "", h.base_timestamp,
                   h.max_timestamp, h.producer_id);
            if (o->records) dump_records(p, (size_t)sz, &h);
        }
        last = storage_batch_last_offset(&h);
        t->batches++;
        t->records += (uint64_t)h.records_count;
        t->bytes += (uint64_t)sz;
        pos += (uint64_t)sz;
    }
    if (!o->quiet)
        printf("    %zu batches, offsets %" PRId64 "..%" PRId64 ", %" PRIu64 " bytes of data\n", n,
               base, last, pos);
    check_index(iop, stem, false, base, term, last, pos, starts, bases, n, t, o);
    check_index(iop, stem, true, base, term, last, pos, starts, bases, n, t, o);
    *prev_last = last;
    free(starts);
    free(bases);
    free(data);
}

/* Scans a directory: a log if it holds segments, else its subdirectories (depth-bounded). */
static int scan_dir(io *iop, const char *dir, bool dump, const scan_opts *o, scan_totals *t,
                    int depth)
{
    char **names = NULL;
    int n = io_fs_list(iop, dir, &names);
    if (n < 0) {
        printf("cannot list %s: %s\n", dir, al_strerror(n));
        t->problems++;
        return n;
    }
    bool is_log = false;
    for (int i = 0; i < n; i++) {
        int64_t b;
        int32_t tm;
        if (cli_seg_name(names[i], &b, &tm) || !strcmp(names[i], "log_meta")) is_log = true;
    }
    if (is_log) {
        printf("log %s\n", dir);
        char mp[CLI_PATH + 16];
        snprintf(mp, sizeof(mp), "%s/log_meta", dir);
        uint8_t *m = NULL;
        size_t ml = 0;
        int rc = io_fs_read_all(iop, mp, 4096, &m, &ml);
        if (rc == 0) {
            if (ml == 24 && al_be32(m) == 0x414c4d54u && crc32c(0, m, 20) == al_be32(m + 20))
                printf("  log_meta: start offset %" PRId64 "\n", (int64_t)al_be64(m + 8));
            else {
                t->problems++;
                printf("  PROBLEM %s: bad metadata file\n", mp);
            }
            free(m);
        } else if (!o->quiet) {
            printf("  log_meta: none (start offset 0)\n");
        }
        int64_t prev_last = -1;
        int32_t prev_term = -1;
        for (int i = 0; i < n; i++) {
            int64_t b;
            int32_t tm;
            if (!cli_seg_name(names[i], &b, &tm)) {
                size_t l = strlen(names[i]);
                bool known = !strcmp(names[i], "log_meta") ||
                             (l > 6 && !strcmp(names[i] + l - 6, ".index")) ||
                             (l > 10 && !strcmp(names[i] + l - 10, ".timeindex")) ||
                             (l > 5 && !strcmp(names[i] + l - 5, ".ckpt")) ||
                             (l > 4 && !strcmp(names[i] + l - 4, ".seg")); /* spare file */
                if (!known) printf("  note: unexpected file %s (removed at recovery if a "
                                   "leftover)\n", names[i]);
                continue;
            }
            if (tm < prev_term) {
                t->problems++;
                printf("  PROBLEM %s: term %d lower than the previous segment's %d\n", names[i],
                       tm, prev_term);
            }
            prev_term = tm;
            scan_segment(iop, dir, names[i], b, tm, &prev_last, dump, o, t);
        }
    } else if (depth < 3) {
        for (int i = 0; i < n; i++) {
            char sub[CLI_PATH];
            snprintf(sub, sizeof(sub), "%s/%s", dir, names[i]);
            char **x = NULL;
            int k = io_fs_list(iop, sub, &x);
            if (k >= 0) {
                io_fs_list_free(x, k);
                scan_dir(iop, sub, dump, o, t, depth + 1);
            }
        }
    }
    io_fs_list_free(names, n);
    return 0;
}

/* ---- bench ---- */

typedef struct bench {
    io *io;
    uint64_t *lat;     /* durable latency samples (ns) */
    size_t nlat, cap;
    uint64_t acked_bytes;
    uint64_t acked_batches;
    int failed;
} bench;

typedef struct bench_waiter {
    storage_waiter w;
    bench *b;
    uint64_t t0;
    size_t bytes;
    bool busy;
} bench_waiter;

static void bench_cb(storage_waiter *w)
{
    bench_waiter *bw = AL_CONTAINER_OF(w, bench_waiter, w);
    bench *b = bw->b;
    bw->busy = false;
    if (w->res < 0) {
        b->failed = w->res;
        return;
    }
    b->acked_bytes += bw->bytes;
    b->acked_batches++;
    if (b->nlat < b->cap) b->lat[b->nlat++] = io_now_ns(b->io) - bw->t0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Write-path options of the storage bench: the log config's split_sync, prezero_bytes (< 0:
 * the default) and pipeline_writes, and the open-loop rate in batches/s (0: closed loop). */
typedef struct bench_opts {
    bool split_sync, pipeline;
    int64_t prezero;
    double rate;
    uint64_t cache_mb; /* a batch cache of this many MiB for the logs (a shard's), 0: none */
    uint64_t segment_bytes; /* the logs' segment_bytes (0: 1 GiB, no roll in a run) */
} bench_opts;

/* CPU time (user + system) of this process so far, in ms. */
static double bench_cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static int storage_bench(const char *dir, uint64_t flush_bytes, double seconds,
                         size_t batch_bytes, uint64_t window, int nlogs, const bench_opts *o)
{
    io *iop;
    struct io_uring_opts uo = {0};
    int rc = io_uring_create(&iop, &uo);
    if (rc < 0) {
        fprintf(stderr, "storage bench: io_uring unavailable: %s\n", al_strerror(rc));
        return CLI_FAILED;
    }
    char ldir[CLI_PATH];
    char cmd[CLI_PATH + 32];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'/ailurus-bench-log*", dir);
    if (system(cmd) != 0) fprintf(stderr, "storage bench: could not clear %s\n", dir);
    storage_log_config c;
    storage_log_config_default(&c);
    c.flush_bytes = flush_bytes;
    c.split_sync = o->split_sync;
    c.pipeline_writes = o->pipeline;
    if (o->prezero >= 0) c.prezero_bytes = (uint64_t)o->prezero;
    c.segment_bytes = o->segment_bytes ? o->segment_bytes : 1ull << 30;
    c.max_message_bytes = (uint32_t)AL_MAX(batch_bytes + 1024, (size_t)1 << 20);
    if (o->cache_mb) c.cache = storage_cache_create((size_t)o->cache_mb << 20);
    storage_log **logs = calloc((size_t)nlogs, sizeof(*logs));
    for (int i = 0; logs && i < nlogs; i++) {
        snprintf(ldir, sizeof(ldir), "%s/ailurus-bench-log%s%.0d", dir, i ? "-" : "", i);
        c.log_id = (uint64_t)i;
        if ((rc = storage_log_open(iop, ldir, &c, &logs[i])) < 0) {
            fprintf(stderr, "storage bench: open %s: %s\n", ldir, al_strerror(rc));
            while (i-- > 0) storage_log_close(logs[i]);
            free(logs);
            storage_cache_destroy(c.cache);
            io_destroy(iop);
            return CLI_FAILED;
        }
    }
    if (!logs) {
        storage_cache_destroy(c.cache);
        io_destroy(iop);
        return CLI_FAILED;
    }
    /* One batch with one record whose value fills batch_bytes; re-appended (restamped). */
    size_t vlen = batch_bytes > 100 ? batch_bytes - 100 : 1;
    uint8_t *val = malloc(vlen), *batch = malloc(batch_bytes + 256);
    for (size_t i = 0; i < vlen; i++) val[i] = (uint8_t)(i * 131 + 7);
    storage_build_record r = {0, 0, "bench", 5, val, (int32_t)vlen, NULL, 0};
    storage_build_params bp = {0, 0, 0, -1, 0, 0, -1, -1, -1};
    int64_t bsz = storage_batch_build(batch, batch_bytes + 256, &bp, &r, 1);
    AL_ASSERT(bsz > 0);
    size_t nw = (size_t)(window / (uint64_t)bsz) + 16 + (size_t)nlogs;
    bench_waiter *ws = calloc(nw, sizeof(*ws));
    bench b = {iop, NULL, 0, 1u << 22, 0, 0, 0};
    int next_log = 0;
    b.lat = malloc(b.cap * sizeof(*b.lat));
    uint64_t appended = 0;
    size_t next_w = 0;
    double cpu0 = bench_cpu_ms();
    uint64_t t_start = io_now_ns(iop), t_end = t_start + (uint64_t)(seconds * 1e9);
    uint64_t nsched = 0; /* open loop: batches scheduled so far */
    uint64_t call_ns = 0, call_max_ns = 0; /* time inside storage_log_append (the shard's) */
    while (io_now_ns(iop) < t_end && !b.failed) {
        /* Keep at most `window` bytes appended but not yet durable; open loop: only batches
         * whose scheduled time has come (a late one counts its latency from that time). */
        uint64_t due = 0;
        while (appended - b.acked_bytes < window && !ws[next_w].busy) {
            if (o->rate > 0) {
                due = t_start + (uint64_t)((double)nsched * 1e9 / o->rate);
                if (due > io_now_ns(iop)) break;
                nsched++;
            }
            storage_append_result res;
            storage_log *log = logs[next_log];
            next_log = (next_log + 1) % nlogs;
            uint64_t c0 = io_now_ns(iop);
            rc = storage_log_append(log, 1, batch, (size_t)bsz, &res);
            uint64_t cd = io_now_ns(iop) - c0;
            call_ns += cd;
            if (cd > call_max_ns) call_max_ns = cd;
            if (rc < 0) {
                b.failed = rc;
                break;
            }
            bench_waiter *w = &ws[next_w];
            next_w = (next_w + 1) % nw;
            w->b = &b;
            w->t0 = o->rate > 0 ? due : io_now_ns(iop);
            w->bytes = (size_t)bsz;
            w->busy = true;
            w->w.cb = bench_cb;
            appended += (uint64_t)bsz;
            rc = storage_log_flush_wait(log, res.last_offset, &w->w);
            if (rc == 1) bench_cb(&w->w);
            else if (rc < 0) b.failed = rc;
        }
        io_poll(iop, o->rate > 0 && due > 0 && due < t_end ? due : t_end);
    }
    double secs = (double)(io_now_ns(iop) - t_start) / 1e9;
    double cpu_ms = bench_cpu_ms() - cpu0;
    /* Drain. */
    for (int guard = 0; guard < 1000000; guard++) {
        bool busy = false;
        for (size_t i = 0; i < nw; i++) busy |= ws[i].busy;
        if (!busy || b.failed) break;
        io_poll(iop, UINT64_MAX);
    }
    if (b.failed) {
        fprintf(stderr, "storage bench: %s\n", al_strerror(b.failed));
        rc = CLI_FAILED;
    } else {
        al_sort(b.lat, b.nlat, sizeof(*b.lat), cmp_u64);
        double mbps = (double)b.acked_bytes / secs / 1e6;
        printf("storage_append_bytes %" PRIu64 "\n", b.acked_bytes);
        printf("storage_append_batches %" PRIu64 "\n", b.acked_batches);
        printf("storage_append_seconds %.3f\n", secs);
        printf("storage_append_MBps %.1f\n", mbps);
        if (b.nlat) {
            printf("storage_append_p50_us %.0f\n", (double)b.lat[b.nlat / 2] / 1e3);
            printf("storage_append_p99_us %.0f\n", (double)b.lat[b.nlat * 99 / 100] / 1e3);
            printf("storage_append_max_us %.0f\n", (double)b.lat[b.nlat - 1] / 1e3);
        }
        uint64_t zeroed = 0, zwaits = 0, piped = 0, regrows = 0, rolls = 0, spare = 0;
        uint64_t rwaits = 0;
        for (int i = 0; i < nlogs; i++) {
            storage_log_buf_info bi;
            storage_log_buf_info_get(logs[i], &bi);
            zeroed += bi.zeroed;
            zwaits += bi.zero_waits;
            piped += bi.pipelined;
            regrows += bi.regrows;
            rolls += bi.roll_jobs;
            spare += bi.spare_rolls;
            rwaits += bi.roll_waits;
        }
        printf("storage_roll_jobs %" PRIu64 "\n", rolls);
        printf("storage_roll_spare %" PRIu64 "\n", spare); /* rolls that took a spare file */
        printf("storage_roll_waits %" PRIu64 "\n", rwaits);
        printf("storage_zero_filled_bytes %" PRIu64 "\n", zeroed);
        printf("storage_zero_waits %" PRIu64 "\n", zwaits);
        printf("storage_writes_pipelined %" PRIu64 "\n", piped);
        printf("storage_buf_regrows %" PRIu64 "\n", regrows);
        int nsegs = 0;
        for (int i = 0; i < nlogs; i++) nsegs += storage_log_segment_count(logs[i]);
        printf("storage_segments %d\n", nsegs);
        /* Time the appending thread spent inside storage_log_append (a roll's blocking calls
         * show here): total and the longest call. */
        printf("storage_append_call_total_ms %.1f\n", (double)call_ns / 1e6);
        printf("storage_append_call_max_us %.0f\n", (double)call_max_ns / 1e3);
        /* This process's CPU (user + system, io_uring workers included) per MB appended during
         * the timed run: the append path's cost, cache copy included with --cache-mb. */
        printf("storage_append_cpu_ms_per_mb %.3f\n",
               appended ? cpu_ms / ((double)appended / 1e6) : 0.0);
        rc = CLI_OK;
    }
    for (int i = 0; i < nlogs; i++) storage_log_close(logs[i]);
    free(logs);
    storage_cache_destroy(c.cache);
    if (system(cmd) != 0) fprintf(stderr, "storage bench: could not remove %s\n", dir);
    free(b.lat);
    free(ws);
    free(val);
    free(batch);
    io_destroy(iop);
    return rc;
}

/* ---- recover-bench ---- */

static void recover_fill_cb(storage_waiter *w)
{
    *(int *)w->ctx = w->res < 0 ? w->res : 1;
}

/* Fills log with about mb MiB of 16 KiB batches of 1 KiB records, waiting for durability
 * every 8 MiB. Returns 0 or a negative error. */
static int recover_fill(io *iop, storage_log *log, uint64_t mb)
{
    enum { NREC = 15, VLEN = 1000 };
    static uint8_t val[VLEN];
    for (size_t i = 0; i < VLEN; i++) val[i] = (uint8_t)(i * 131 + 7);
    storage_build_record recs[NREC];
    for (int i = 0; i < NREC; i++)
        recs[i] = (storage_build_record){i, i, "key", 3, val, VLEN, NULL, 0};
    storage_build_params bp = {0, 0, 0, -1, io_wall_ms(iop), io_wall_ms(iop), -1, -1, -1};
    uint8_t *batch = malloc(32768);
    if (!batch) return -ENOMEM;
    int64_t bsz = storage_batch_build(batch, 32768, &bp, recs, NREC);
    AL_ASSERT(bsz > 0);
    uint64_t total = mb << 20, done = 0, since = 0;
    int rc = 0;
    for (uint64_t guard = 0; done < total && guard < (1ull << 32); guard++) {
        storage_append_result res;
        if ((rc = storage_log_append(log, 1, batch, (size_t)bsz, &res)) < 0) break;
        done += (uint64_t)bsz;
        since += (uint64_t)bsz;
        if (since >= (8u << 20) || done >= total) {
            int st = 0;
            storage_waiter w = {.cb = recover_fill_cb, .ctx = &st};
            rc = storage_log_flush_wait(log, res.last_offset, &w);
            if (rc < 0) break;
            for (int g = 0; rc == 0 && st == 0 && g < 1000000; g++) io_poll(iop, UINT64_MAX);
            if (rc == 1) st = 1;
            if (st < 0) {
                rc = st;
                break;
            }
            rc = 0;
            since = 0;
        }
    }
    free(batch);
    return rc;
}

/* recover-bench: fill, close (or abandon), reopen and time the recovery. */
static int storage_recover_bench(const char *dir, uint64_t mb, bool crash, int64_t ckpt_mb)
{
    io *iop;
    struct io_uring_opts uo = {0};
    int rc = io_uring_create(&iop, &uo);
    if (rc < 0) {
        fprintf(stderr, "storage recover-bench: io_uring unavailable: %s\n", al_strerror(rc));
        return CLI_FAILED;
    }
    char ldir[CLI_PATH];
    char cmd[CLI_PATH + 32];
    snprintf(ldir, sizeof(ldir), "%s/ailurus-recover-bench", dir);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", ldir);
    if (system(cmd) != 0) fprintf(stderr, "storage recover-bench: could not clear %s\n", ldir);
    storage_log_config c;
    storage_log_config_default(&c);
    c.segment_bytes = (mb << 20) + (64u << 20);
    if (ckpt_mb >= 0) c.ckpt_bytes = (uint64_t)ckpt_mb << 20;
    storage_log *log = NULL;
    if ((rc = storage_log_open(iop, ldir, &c, &log)) < 0) goto fail;
    rc = recover_fill(iop, log, mb);
    int64_t last = storage_log_last_offset(log);
    uint64_t bytes = storage_log_size_bytes(log);
    if (crash) storage_log_abandon(log); /* durable, files as a SIGKILL leaves them */
    else storage_log_close(log);
    log = NULL;
    if (rc < 0) goto fail;
    uint64_t t0 = io_now_ns(iop);
    if ((rc = storage_log_open(iop, ldir, &c, &log)) < 0) goto fail;
    double secs = (double)(io_now_ns(iop) - t0) / 1e9;
    storage_log_buf_info bi;
    storage_log_buf_info_get(log, &bi);
    if (storage_log_last_offset(log) != last || storage_log_size_bytes(log) != bytes) {
        fprintf(stderr, "storage recover-bench: recovered last offset %" PRId64 " (%" PRIu64
                " bytes), expected %" PRId64 " (%" PRIu64 ")\n", storage_log_last_offset(log),
                storage_log_size_bytes(log), last, bytes);
        rc = AL_ECORRUPT;
    }
    storage_log_close(log);
    if (rc < 0) goto fail;
    printf("storage_recover_mode %s\n", crash ? "crash" : "clean");
    printf("storage_recover_bytes %" PRIu64 "\n", bytes);
    printf("storage_recover_seconds %.3f\n", secs);
    printf("storage_recover_from_checkpoint_pos %" PRIu64 "\n", bi.ckpt_recovered_pos);
    printf("storage_recover_MBps %.1f\n", (double)bytes / secs / 1e6);
    if (system(cmd) != 0) fprintf(stderr, "storage recover-bench: could not remove %s\n", ldir);
    io_destroy(iop);
    return CLI_OK;
fail:
    fprintf(stderr, "storage recover-bench: %s\n", al_strerror(rc));
    if (system(cmd) != 0) fprintf(stderr, "storage recover-bench: could not remove %s\n", ldir);
    io_destroy(iop);
    return CLI_FAILED;
}

static void storage_usage(FILE *f)
{
    fprintf(f, "usage: ailurus storage dump DIR [--records]\n"
               "       ailurus storage check DIR\n"
               "       ailurus storage bench --dir D [--flush-bytes N] [--seconds S] "
               "[--batch-bytes B]\n"
               "             [--window-bytes W]  (appended-not-durable bound, default 2 x N)\n"
               "             [--logs L]  (L logs appended to in turn, default 1)\n"
               "             [--split-sync 0|1]  (1: write then pipelined fdatasync instead of "
               "durable writes)\n"
               "             [--rate R]  (open loop, R batches/s; latency from the scheduled "
               "time)\n"
               "             [--prezero-bytes Z] [--pipeline 0|1]  (log config prezero_bytes, "
               "pipeline_writes)\n"
               "             [--cache-mb M]  (a batch cache of M MiB that appends go into, as a "
               "shard's)\n"
               "             [--segment-bytes N]  (segment size, default 1 GiB: no roll)\n"
               "       ailurus storage recover-bench --dir D [--mb N] [--crash 0|1]\n"
               "             [--ckpt-mb C]  (recovery checkpoint every C MiB durable; 0 off; "
               "default the log's)\n"
               "             (time to open a log with one N MiB segment, default 1024)\n"
               "dump/check read log directories (or directories of them) without changing "
               "anything;\ncheck exits 1 if any checksum, offset, index or metadata problem is "
               "found.\n");
}

int cmd_storage(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        storage_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "bench")) {
        const char *dir = NULL;
        uint64_t flush = 1u << 20;
        double secs = 5;
        size_t bb = 16384;
        uint64_t window = 0;
        int nlogs = 1;
        bench_opts bo = {.prezero = -1};
        for (int i = 2; i < argc; i++) {
            const char *v = i + 1 < argc ? argv[i + 1] : NULL;
            if (!v) {
                storage_usage(stderr);
                return CLI_USAGE;
            }
            if (!strcmp(argv[i], "--dir")) dir = v;
            else if (!strcmp(argv[i], "--flush-bytes")) flush = strtoull(v, NULL, 0);
            else if (!strcmp(argv[i], "--seconds")) secs = atof(v);
            else if (!strcmp(argv[i], "--batch-bytes")) bb = (size_t)strtoull(v, NULL, 0);
            else if (!strcmp(argv[i], "--window-bytes")) window = strtoull(v, NULL, 0);
            else if (!strcmp(argv[i], "--logs")) nlogs = atoi(v);
            else if (!strcmp(argv[i], "--split-sync")) bo.split_sync = atoi(v) != 0;
            else if (!strcmp(argv[i], "--pipeline")) bo.pipeline = atoi(v) != 0;
            else if (!strcmp(argv[i], "--prezero-bytes")) bo.prezero = strtoll(v, NULL, 0);
            else if (!strcmp(argv[i], "--rate")) bo.rate = atof(v);
            else if (!strcmp(argv[i], "--cache-mb")) bo.cache_mb = strtoull(v, NULL, 0);
            else if (!strcmp(argv[i], "--segment-bytes")) bo.segment_bytes = strtoull(v, NULL, 0);
            else {
                storage_usage(stderr);
                return CLI_USAGE;
            }
            i++;
        }
        if (!dir || flush < 4096 || secs <= 0 || bb < 128 || bb > (64u << 20) || nlogs < 1 ||
            nlogs > 10000) {
            storage_usage(stderr);
            return CLI_USAGE;
        }
        if (!window) window = 2 * flush;
        if (bo.rate < 0 || bo.rate > 1e7) {
            storage_usage(stderr);
            return CLI_USAGE;
        }
        return storage_bench(dir, flush, secs, bb, window, nlogs, &bo);
    }
    if (!strcmp(sub, "recover-bench")) {
        const char *dir = NULL;
        uint64_t mb = 1024;
        bool crash = false;
        int64_t ckpt_mb = -1;
        for (int i = 2; i + 1 < argc; i += 2) {
            if (!strcmp(argv[i], "--dir")) dir = argv[i + 1];
            else if (!strcmp(argv[i], "--mb")) mb = strtoull(argv[i + 1], NULL, 0);
            else if (!strcmp(argv[i], "--crash")) crash = atoi(argv[i + 1]) != 0;
            else if (!strcmp(argv[i], "--ckpt-mb")) ckpt_mb = strtoll(argv[i + 1], NULL, 0);
            else dir = NULL, i = argc;
        }
        if (!dir || argc % 2 || mb < 1 || mb > (64u << 10)) {
            storage_usage(stderr);
            return CLI_USAGE;
        }
        return storage_recover_bench(dir, mb, crash, ckpt_mb);
    }
    bool dump = !strcmp(sub, "dump");
    if ((!dump && strcmp(sub, "check") != 0) || argc < 3) {
        storage_usage(stderr);
        return CLI_USAGE;
    }
    scan_opts o = {false, !dump};
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--records")) o.records = true;
        else if (!strcmp(argv[i], "--verbose")) o.quiet = false;
        else {
            storage_usage(stderr);
            return CLI_USAGE;
        }
    }
    io *iop;
    struct io_uring_opts uo = {0};
    int rc = io_uring_create(&iop, &uo);
    if (rc < 0) {
        fprintf(stderr, "storage: io_uring unavailable: %s\n", al_strerror(rc));
        return CLI_FAILED;
    }
    scan_totals t = {0};
    scan_dir(iop, argv[2], dump, &o, &t, 0);
    printf("%s: %" PRIu64 " segments, %" PRIu64 " batches, %" PRIu64 " records, %" PRIu64
           " bytes, %" PRIu64 " problem(s)\n",
           dump ? "dump" : "check", t.segments, t.batches, t.records, t.bytes, t.problems);
    io_destroy(iop);
    return t.problems ? CLI_FAILED : CLI_OK;
}
