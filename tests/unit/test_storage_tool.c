/* test_storage_tool.c — `ailurus storage check|dump` (cmd_storage) on real log directories:
 * a clean log checks clean; a flipped byte in a closed segment, a stale index and a bad
 * metadata file are each reported (exit 1); dump never modifies the files it reads. */
#include "storage_util.h"

#include "cli/commands.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

/* Runs cmd_storage with stdout silenced; returns its exit code. */
static int run_tool(const char *sub, const char *dir)
{
    char *argv[] = {"storage", (char *)sub, (char *)dir, NULL};
    fflush(stdout);
    int saved = dup(1);
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    int rc = cmd_storage(3, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    close(devnull);
    return rc;
}

static void flip_byte(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    AL_ASSERT(fd >= 0);
    uint8_t b;
    AL_ASSERT(pread(fd, &b, 1, off) == 1);
    b ^= 0x01;
    AL_ASSERT(pwrite(fd, &b, 1, off) == 1);
    close(fd);
}

static int64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

static void wait_cb(storage_waiter *w)
{
    *(int *)w->ctx = 1;
}

TEST(tool_check_clean_then_each_problem)
{
    io *uio;
    struct io_uring_opts o = {0};
    CHECK_EQ(io_uring_create(&uio, &o), 0);
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/toollog", test_tmpdir());
    storage_log_config c;
    storage_log_config_default(&c);
    c.segment_bytes = 8192;
    storage_log *log;
    CHECK_EQ(storage_log_open(uio, dir, &c, &log), 0);
    static uint8_t b[65536];
    for (int i = 0; i < 40; i++) {
        size_t n = su_batch(b, sizeof(b), 4, NULL, (uint64_t)i, 100, false, i);
        storage_append_result r;
        CHECK_EQ(storage_log_append(log, 1 + i / 20, b, n, &r), 0);
    }
    int done = 0;
    storage_waiter w = {.cb = wait_cb, .ctx = &done};
    CHECK(storage_log_flush_wait(log, storage_log_last_offset(log), &w) >= 0);
    CHECK(su_poll_until(uio, &done, 10000));
    CHECK_EQ(storage_log_set_start_offset(log, 3), 0);
    storage_segment_info s0, s1;
    CHECK(storage_log_segment_count(log) >= 3);
    CHECK_EQ(storage_log_segment_info(log, 0, &s0), 0);
    CHECK_EQ(storage_log_segment_info(log, 1, &s1), 0);
    char seg0[600], idx1[600], meta[600];
    snprintf(seg0, sizeof(seg0), "%s.log", s0.path_stem);
    snprintf(idx1, sizeof(idx1), "%s.index", s1.path_stem);
    snprintf(meta, sizeof(meta), "%s/log_meta", dir);
    storage_log_close(log);

    CHECK_EQ(run_tool("check", dir), CLI_OK);
    CHECK_EQ(run_tool("check", test_tmpdir()), CLI_OK); /* a directory of logs */
    int64_t before = file_size(seg0);
    CHECK_EQ(run_tool("dump", dir), CLI_OK);
    CHECK_EQ(file_size(seg0), before);

    flip_byte(seg0, 200); /* inside the first batch's CRC'd bytes */
    CHECK_EQ(run_tool("check", dir), CLI_FAILED);
    flip_byte(seg0, 200);
    CHECK_EQ(run_tool("check", dir), CLI_OK);

    flip_byte(idx1, 12); /* header: the index no longer matches (checksum) */
    CHECK_EQ(run_tool("check", dir), CLI_FAILED);
    flip_byte(idx1, 12);

    flip_byte(meta, 10);
    CHECK_EQ(run_tool("check", dir), CLI_FAILED);
    flip_byte(meta, 10);
    CHECK_EQ(run_tool("check", dir), CLI_OK);

    char *bad[] = {"storage", "frobnicate", dir, NULL};
    CHECK_EQ(cmd_storage(3, bad), CLI_USAGE);
    io_destroy(uio);
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
