/*
 * fuzz_storage_recovery.c — libFuzzer target for segment recovery: random file contents must
 * never crash storage_log_open, and whatever it recovers must be a valid log.
 *
 * Input: [flags:1][data...]. The data becomes segment "00000000000000000000-1.log" of a log
 * directory on the simulated disk; flags bit 0 splits it into two segments (the second named
 * from flags: base = flags * 3, term 1 + (flags >> 4)); bit 1 also writes the first segment's
 * .index file from the data's last 120 bytes; bit 2 writes a log_meta file from the first 24
 * bytes. After recovery: every batch read back validates, offsets only grow, the next offset
 * follows the last batch, an append and its flush succeed, and a second recovery of the same
 * files agrees with the first. Seeds: tests/fuzz/corpus/fuzz_storage_recovery/.
 */
#include "base/log.h"
#include "reactor/io_sim.h"
#include "storage/batch.h"
#include "storage/log.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DIR "/d/log"

static void put_file(io *iop, const char *path, const uint8_t *p, size_t n)
{
    int fd = io_fs_open(iop, path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    AL_ASSERT(fd >= 0);
    if (n) AL_ASSERT(io_fs_pwrite(iop, fd, p, n, 0) == (ssize_t)n);
    io_fs_fsync(iop, fd);
    io_fs_close(iop, fd);
}

static void read_done(storage_read *r)
{
    *(int *)r->ctx = 1;
}

static void flush_done(storage_waiter *w)
{
    *(int *)w->ctx = w->res == 0 ? 1 : -1;
}

/* Reads the whole log; returns the number of batches and checks each. */
static int64_t verify(io_sim_world *w, storage_log *log)
{
    int64_t off = storage_log_start_offset(log), prev = -1, n = 0;
    for (int guard = 0; guard < 100000; guard++) {
        int done = 0;
        storage_read r = {.offset = off, .max_bytes = 65536, .cb = read_done, .ctx = &done};
        int rc = storage_log_read(log, &r);
        if (rc == 0) {
            for (int i = 0; i < 100000 && !done; i++)
                if (io_sim_world_step(w) <= 0) break;
            AL_ASSERT(done);
        }
        AL_ASSERT(rc >= 0 && r.res == 0); /* recovered data must read back cleanly */
        if (r.len == 0) break;
        size_t pos = 0;
        while (pos < r.len) {
            storage_batch_hdr h;
            int64_t sz = storage_batch_validate(r.data + pos, r.len - pos, 0, &h);
            AL_ASSERT(sz > 0);
            AL_ASSERT(h.base_offset > prev);
            prev = storage_batch_last_offset(&h);
            pos += (size_t)sz;
            n++;
        }
        AL_ASSERT(r.next_offset == prev + 1);
        off = r.next_offset;
        storage_read_release(&r);
    }
    if (prev >= 0) AL_ASSERT(storage_log_high_offset(log) == prev + 1);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (1u << 20)) return 0;
    al_log_set_level(AL_LOG_OFF);
    uint8_t flags = data[0];
    data++;
    size--;
    io_sim_world *w;
    struct io_sim_opts o = {.seed = flags};
    AL_ASSERT(io_sim_world_create(&w, &o) == 0);
    io *iop = io_sim_node_create(w, "n");
    AL_ASSERT(iop && io_sim_fs_mkdir_p(iop, DIR) == 0);
    size_t first = (flags & 1) ? size / 2 : size;
    put_file(iop, DIR "/00000000000000000000-1.log", data, first);
    if (flags & 1) {
        char name[128];
        snprintf(name, sizeof(name), DIR "/%020d-%d.log", flags * 3, 1 + (flags >> 4));
        put_file(iop, name, data + first, size - first);
    }
    if (flags & 2) {
        size_t k = AL_MIN(size, (size_t)120);
        put_file(iop, DIR "/00000000000000000000-1.index", data + size - k, k);
    }
    if ((flags & 4) && size >= 24) put_file(iop, DIR "/log_meta", data, 24);
    io_fs_fsync_dir(iop, DIR);

    storage_log_config c;
    storage_log_config_default(&c);
    c.segment_bytes = 1u << 16;
    c.fallocate_step = 4096;
    storage_log *log;
    if (storage_log_open(iop, DIR, &c, &log) == 0) {
        int64_t high = storage_log_high_offset(log);
        int64_t n = verify(w, log);
        storage_log_close(log);
        /* A second recovery of what the first left agrees with it. */
        AL_ASSERT(storage_log_open(iop, DIR, &c, &log) == 0);
        AL_ASSERT(storage_log_high_offset(log) == high);
        AL_ASSERT(verify(w, log) == n);
        /* And the log takes new data durably. */
        uint8_t b[256];
        storage_build_record r = {0, 0, "k", 1, "v", 1, NULL, 0};
        storage_build_params p = {0, 0, 0, -1, 0, 0, -1, -1, -1};
        int64_t bs = storage_batch_build(b, sizeof(b), &p, &r, 1);
        AL_ASSERT(bs > 0);
        storage_append_result res;
        int32_t term = storage_log_last_term(log);
        if (term < 1) term = 1;
        AL_ASSERT(storage_log_append(log, term, b, (size_t)bs, &res) == 0);
        AL_ASSERT(res.base_offset == high);
        int done = 0;
        storage_waiter wt = {.cb = flush_done, .ctx = &done};
        int rc = storage_log_flush_wait(log, res.last_offset, &wt);
        AL_ASSERT(rc == 0);
        for (int i = 0; i < 100000 && !done; i++)
            if (io_sim_world_step(w) <= 0) break;
        AL_ASSERT(done == 1);
        AL_ASSERT(verify(w, log) == n + 1);
        storage_log_close(log);
    }
    io_sim_world_destroy(w);
    return 0;
}
