/*
 * io_impl.h — private to src/reactor: the table of functions every io back end (io_uring.c,
 * io_sim.c) fills in, and the common head of every back end's io struct. io.c dispatches the
 * public io_* calls (io.h) through this table and implements what is back-end independent
 * (argument checks, the PRNG, io_fs_write_atomic, io_fs_read_all, sorting io_fs_list).
 *
 * Nothing outside src/reactor includes this header.
 */
#ifndef AL_IO_IMPL_H
#define AL_IO_IMPL_H

#include "reactor/io.h"

struct io_backend_ops {
    const char *name;
    void (*destroy)(io *io);
    int (*poll)(io *io, uint64_t deadline_ns);
    void (*wakeup)(io *io);
    uint64_t (*now_ns)(io *io);
    int64_t (*wall_ms)(io *io);

    int (*listen)(io *io, const char *host, uint16_t port, bool reuseport, int backlog);
    int (*local_port)(io *io, int fd);
    /* Queues an op whose kind, fd, buf, len and off io.c has already filled in (every kind but
     * CONNECT and OPEN, which have their own entries). Never fails synchronously. */
    void (*submit)(io *io, io_op *op);
    void (*connect)(io *io, io_op *op, const char *host, uint16_t port);
    void (*open)(io *io, io_op *op, const char *path, int flags, mode_t mode);
    void (*cancel)(io *io, io_op *op);
    void (*close_now)(io *io, int fd);
    /* io_offload: op->off = the function, op->buf = its argument (filled in by io.c). */
    void (*offload)(io *io, io_op *op);
    int (*offload_finish)(io *io, io_op *op);

    int (*fs_open)(io *io, const char *path, int flags, mode_t mode);
    int (*fs_close)(io *io, int fd);
    ssize_t (*fs_pread)(io *io, int fd, void *buf, size_t len, uint64_t off);
    ssize_t (*fs_pwrite)(io *io, int fd, const void *buf, size_t len, uint64_t off);
    int (*fs_fsync)(io *io, int fd, bool datasync);
    int (*fs_ftruncate)(io *io, int fd, uint64_t len);
    int (*fs_fallocate)(io *io, int fd, int mode, uint64_t off, uint64_t len);
    int64_t (*fs_size)(io *io, int fd);
    int (*fs_rename)(io *io, const char *from, const char *to);
    int (*fs_unlink)(io *io, const char *path);
    int (*fs_mkdir)(io *io, const char *path, mode_t mode);
    int (*fs_rmdir)(io *io, const char *path);
    int (*fs_fsync_dir)(io *io, const char *path);
    int (*fs_exists)(io *io, const char *path);
    /* Unsorted listing; io.c sorts it. Same ownership as io_fs_list. */
    int (*fs_list)(io *io, const char *dir, char ***names);
};

/* The first member of every back end's io struct. */
struct io {
    const struct io_backend_ops *ops;
    uint64_t rng[4]; /* xoshiro256** state */
};

/* Initialises the common head: the ops table and the PRNG seeded from `seed` by splitmix64. */
void io_base_init(io *io, const struct io_backend_ops *ops, uint64_t seed);

/* splitmix64 step: advances *state and returns the next value. Used to seed PRNGs. */
uint64_t io_splitmix64(uint64_t *state);

#endif
