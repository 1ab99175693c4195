/*
 * fuzz_io_sim.c — libFuzzer target for the simulator's disk (src/reactor/io_sim.c). Input: a
 * program of 4-byte instructions [op][path a][path b][arg] run on one node over a small set of
 * nested paths: mkdir, rmdir, create+write, truncate, fallocate, fsync, directory fsync,
 * rename (files and directories), unlink, power loss (plain or torn at a fuzzed cut). After
 * each instruction the namespace must be self-consistent: every listed name exists, every
 * existing path's parent is a directory, a file's contents read back at the size it reports,
 * and error codes are the documented ones. ASan/UBSan catch memory errors in the namespace and
 * crash code. Seeds: tests/fuzz/corpus/fuzz_io_sim/.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/log.h"
#include "reactor/io_sim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const paths[] = {"/a", "/a/b", "/a/b/c", "/a/f", "/a/b/g", "/x", "/x/y",
                                    "/a/b/c/h", "f", "/"};
#define NP (sizeof(paths) / sizeof(paths[0]))

/* The namespace invariants, checked from the root down. */
static void check_dir(io *n, const char *dir, int depth)
{
    if (depth > 8) return;
    char **names = NULL;
    int cnt = io_fs_list(n, dir, &names);
    AL_ASSERT(cnt >= 0);
    for (int i = 0; i < cnt; i++) {
        char p[512];
        if (!strcmp(dir, "/")) snprintf(p, sizeof(p), "/%s", names[i]);
        else snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
        AL_ASSERT(io_fs_exists(n, p) == 1);
        if (i > 0) AL_ASSERT(strcmp(names[i - 1], names[i]) < 0);
        int fd = io_fs_open(n, p, O_RDONLY, 0);
        AL_ASSERT(fd >= 0);
        int64_t sz = io_fs_size(n, fd);
        io_fs_close(n, fd);
        uint8_t *buf;
        size_t len;
        int rc = io_fs_read_all(n, p, 1 << 20, &buf, &len);
        if (rc == 0) {
            AL_ASSERT((int64_t)len == sz);
            free(buf);
        } else {
            check_dir(n, p, depth + 1); /* a directory: reading it fails */
        }
    }
    io_fs_list_free(names, cnt);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool quiet;
    if (!quiet) {
        al_log_set_level(AL_LOG_OFF);
        quiet = true;
    }
    io_sim_world *w;
    struct io_sim_opts o = {.seed = size};
    if (io_sim_world_create(&w, &o)) return 0;
    io *n = io_sim_node_create(w, "n");
    uint8_t block[512];
    for (size_t i = 0; i + 4 <= size && i < 4 * 400; i += 4) {
        unsigned op = data[i] % 12;
        const char *a = paths[data[i + 1] % NP], *b = paths[data[i + 2] % NP];
        unsigned arg = data[i + 3];
        int rc = 0, fd;
        switch (op) {
        case 0: rc = io_fs_mkdir(n, a, 0755); break;
        case 1: rc = io_fs_rmdir(n, a); break;
        case 2:
            fd = io_fs_open(n, a, O_CREAT | O_RDWR, 0644);
            if (fd >= 0) {
                memset(block, (int)arg, sizeof(block));
                AL_ASSERT(io_fs_pwrite(n, fd, block, 1 + arg, arg * 3) == (ssize_t)(1 + arg));
                io_fs_close(n, fd);
            } else {
                rc = fd;
            }
            break;
        case 3:
        case 4:
            fd = io_fs_open(n, a, O_RDWR, 0);
            if (fd >= 0) {
                if (op == 3) AL_ASSERT(io_fs_ftruncate(n, fd, arg * 7) == 0);
                else AL_ASSERT(io_fs_fallocate(n, fd, arg & 1 ? FALLOC_FL_KEEP_SIZE : 0, arg,
                                               arg * 5) == 0);
                io_fs_close(n, fd);
            }
            break;
        case 5:
            fd = io_fs_open(n, a, O_RDONLY, 0);
            if (fd >= 0) {
                AL_ASSERT(io_fs_fsync(n, fd) == 0);
                io_fs_close(n, fd);
            }
            break;
        case 6: rc = io_fs_fsync_dir(n, a); break;
        case 7: rc = io_fs_rename(n, a, b); break;
        case 8: rc = io_fs_unlink(n, a); break;
        case 9:
            io_sim_crash(n);
            n = io_sim_restart(n);
            AL_ASSERT(n);
            break;
        case 10:
            io_sim_crash_torn(n, arg);
            n = io_sim_restart(n);
            AL_ASSERT(n);
            break;
        default: {
            uint8_t *buf;
            size_t len;
            rc = io_fs_read_all(n, a, 1 << 20, &buf, &len);
            if (rc == 0) free(buf);
            break;
        }
        }
        AL_ASSERT(rc <= 0 && rc > -4096); /* 0 or a plain -errno */
        check_dir(n, "/", 0);
        check_dir(n, ".", 0);
    }
    io_sim_world_destroy(w);
    return 0;
}
