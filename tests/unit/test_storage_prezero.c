/*
 * test_storage_prezero.c — zero fill ahead (log.c "zero-fill ahead", cfg.prezero_bytes) on the
 * real disk through io_uring: once a log has appended prezero_bytes, its idle time writes
 * zeros over the fallocated space past the data, so that the file system holds written (not
 * "unwritten") extents there (FIEMAP, where the file system reports extents) that read as
 * zeros; appends go on into that space, a clean close waits for a zero write in flight, an
 * abandoned log (a simulated crash) does not leave one to complete into freed memory, and
 * every durable batch is recovered. The ordering and crash cases on the simulated disk are in
 * test_storage_pipeline.
 */
#include "storage_util.h"

#include "base/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* Appends n batches of 8 records (about 3.5 KiB each), then waits until the last is durable.
 * Returns 0 or a negative error. *last gets the last offset. */
static int append_durable(storage_log *log, int n, uint64_t tag, int64_t *last)
{
    static uint8_t b[8192];
    storage_append_result r = {0};
    for (int i = 0; i < n; i++) {
        size_t len = su_batch(b, sizeof(b), 8, NULL, tag + (uint64_t)i, 400, false, 1000 + i);
        int rc = storage_log_append(log, 1, b, len, &r);
        if (rc < 0) return rc;
    }
    *last = r.last_offset;
    su_wait w = {.w = {.cb = su_wait_cb}};
    int rc = storage_log_flush_wait(log, r.last_offset, &w.w);
    if (rc == 1) return 0;
    if (rc < 0) return rc;
    if (!su_poll_until(su_test_io(), &w.done, 30000)) return AL_ETIMEDOUT;
    return w.res;
}

/* Polls until the log reports at least `want` bytes zero-filled (or 30 s). Returns them. */
static uint64_t poll_zeroed(storage_log *log, uint64_t want)
{
    storage_log_buf_info bi = {0};
    uint64_t end = io_now_ns(su_test_io()) + 30000000000ull;
    for (int guard = 0; guard < 100000 && io_now_ns(su_test_io()) < end; guard++) {
        storage_log_buf_info_get(log, &bi);
        if (bi.zeroed >= want) break;
        io_poll(su_test_io(), io_now_ns(su_test_io()) + 10000000ull);
    }
    storage_log_buf_info_get(log, &bi);
    return bi.zeroed;
}

/* The path of the one data file in dir. Returns 0 or -1. */
static int data_file(const char *dir, char *out, size_t cap)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int found = -1;
    for (struct dirent *e; (e = readdir(d));) {
        size_t n = strlen(e->d_name);
        if (n > 4 && !strcmp(e->d_name + n - 4, ".log") && strlen(dir) + n + 2 <= cap) {
            memcpy(out, dir, strlen(dir));
            out[strlen(dir)] = '/';
            memcpy(out + strlen(dir) + 1, e->d_name, n + 1);
            found = 0;
        }
    }
    closedir(d);
    return found;
}

/* Checks [from, to) of the file: it reads as zeros and, where FIEMAP reports extents, none of
 * them is unwritten. Returns 0, or -1 with a message. */
static int check_zeroed_range(const char *path, uint64_t from, uint64_t to)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = 0;
    static uint8_t buf[65536];
    for (uint64_t pos = from; rc == 0 && pos < to;) {
        size_t n = (size_t)AL_MIN((uint64_t)sizeof(buf), to - pos);
        ssize_t r = pread(fd, buf, n, (off_t)pos);
        if (r != (ssize_t)n) {
            fprintf(stderr, "    short read at %llu\n", (unsigned long long)pos);
            rc = -1;
            break;
        }
        for (size_t i = 0; i < n; i++)
            if (buf[i]) {
                fprintf(stderr, "    non-zero byte at %llu\n", (unsigned long long)(pos + i));
                rc = -1;
                break;
            }
        pos += n;
    }
    enum { NEXT = 64 };
    struct fiemap *fm = calloc(1, sizeof(*fm) + NEXT * sizeof(struct fiemap_extent));
    AL_ASSERT(fm);
    fm->fm_start = from;
    fm->fm_length = to - from;
    fm->fm_flags = FIEMAP_FLAG_SYNC;
    fm->fm_extent_count = NEXT;
    if (rc == 0 && ioctl(fd, FS_IOC_FIEMAP, fm) == 0) {
        for (uint32_t i = 0; i < fm->fm_mapped_extents; i++) {
            struct fiemap_extent *x = &fm->fm_extents[i];
            if (x->fe_logical + x->fe_length <= from || x->fe_logical >= to) continue;
            if (x->fe_flags & FIEMAP_EXTENT_UNWRITTEN) {
                fprintf(stderr, "    unwritten extent at %llu (+%llu) inside [%llu, %llu)\n",
                        (unsigned long long)x->fe_logical, (unsigned long long)x->fe_length,
                        (unsigned long long)from, (unsigned long long)to);
                rc = -1;
            }
        }
        fprintf(stderr, "    FIEMAP: %u extents in the zeroed range, none unwritten: %s\n",
                fm->fm_mapped_extents, rc == 0 ? "yes" : "no");
    } else if (rc == 0) {
        fprintf(stderr, "    FIEMAP not available here (%s): contents checked only\n",
                strerror(errno));
    }
    free(fm);
    close(fd);
    return rc;
}

TEST(real_disk_zero_fill_writes_the_space_ahead_and_the_log_goes_on)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/prezero", test_tmpdir());
    storage_log_config c;
    storage_log_config_default(&c);
    c.prezero_bytes = 512 * 1024;
    c.fallocate_step = 1 << 20;
    storage_log *log = NULL;
    CHECK_EQ(storage_log_open(su_test_io(), dir, &c, &log), 0);
    /* ~700 KiB: past prezero_bytes, so the zero fill starts once the log is idle. */
    int64_t last = -1;
    CHECK_EQ(append_durable(log, 200, 1, &last), 0);
    uint64_t zeroed = poll_zeroed(log, c.prezero_bytes);
    CHECK(zeroed >= c.prezero_bytes);
    storage_segment_info si;
    CHECK_EQ(storage_log_segment_info(log, 0, &si), 0);
    char path[700];
    CHECK_EQ(data_file(dir, path, sizeof(path)), 0);
    uint64_t from = AL_ALIGN_UP(si.size, 4096ull);
    CHECK_EQ(check_zeroed_range(path, from, from + c.prezero_bytes), 0);
    /* Appends go on into the zeroed space (and beyond: another step is fallocated and
     * zero-filled as the log goes). */
    for (int round = 0; round < 4; round++) {
        CHECK_EQ(append_durable(log, 100, 1000 + (uint64_t)round * 100, &last), 0);
        poll_zeroed(log, zeroed + 1);
    }
    CHECK_EQ(storage_log_high_offset(log), last + 1);
    /* A clean close right after a durable write: a zero write may be in flight; close waits. */
    CHECK_EQ(append_durable(log, 20, 5000, &last), 0);
    storage_log_close(log);
    log = NULL;
    CHECK_EQ(storage_log_open(su_test_io(), dir, &c, &log), 0);
    CHECK_EQ(storage_log_high_offset(log), last + 1);
    /* A crash (abandon) right after a durable write, a zero write likely in flight: the io
     * goes on being polled afterwards, and nothing completes into the freed log. */
    CHECK_EQ(append_durable(log, 200, 6000, &last), 0);
    storage_log_abandon(log);
    log = NULL;
    for (int i = 0; i < 20; i++) io_poll(su_test_io(), io_now_ns(su_test_io()) + 5000000ull);
    al_log_set_level(AL_LOG_ERROR);
    CHECK_EQ(storage_log_open(su_test_io(), dir, &c, &log), 0);
    al_log_set_level(AL_LOG_INFO);
    CHECK_EQ(storage_log_high_offset(log), last + 1);
    storage_log_buf_info bi;
    storage_log_buf_info_get(log, &bi);
    fprintf(stderr, "    %llu bytes zero-filled before the first close; %lld offsets kept\n",
            (unsigned long long)zeroed, (long long)(last + 1));
    storage_log_close(log);
}

/* prezero_bytes 0: nothing is zero-filled (the old write path, for A/B). */
TEST(real_disk_zero_fill_off)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/prezero-off", test_tmpdir());
    storage_log_config c;
    storage_log_config_default(&c);
    c.prezero_bytes = 0;
    storage_log *log = NULL;
    CHECK_EQ(storage_log_open(su_test_io(), dir, &c, &log), 0);
    int64_t last = -1;
    CHECK_EQ(append_durable(log, 300, 1, &last), 0);
    for (int i = 0; i < 10; i++) io_poll(su_test_io(), io_now_ns(su_test_io()) + 5000000ull);
    storage_log_buf_info bi;
    storage_log_buf_info_get(log, &bi);
    CHECK_EQ(bi.zeroed, 0u);
    storage_log_close(log);
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
