/*
 * io.h — the one interface between Ailurus and the outside world: network, disk, time and
 * randomness. Every subsystem does its I/O through an `io` and nothing else, so the same code
 * runs on two back ends:
 *
 *   - io_uring (io_uring.c): production. One io_uring per shard.
 *   - the simulator (io_sim.c): tests. In-memory disk with crash and torn-write injection,
 *     in-memory network with delays, drops and partitions, a virtual clock and seeded
 *     randomness; many `io`s (nodes, shards) in one thread, fully deterministic for a seed.
 *
 * Threading: an `io` belongs to one thread (its shard) and every function here except
 * io_wakeup() must be called on that thread. Callbacks run on that thread, from io_poll().
 *
 * Asynchronous operations take a caller-owned `io_op` (embed it in your connection, segment,
 * ... struct; no allocation happens here). The op must stay alive and must not be reused until
 * its callback has run with IO_F_MORE clear. Results follow the kernel convention: res >= 0 is
 * success (bytes transferred, new fd, 0), res < 0 is -errno. Submission never fails: an op that
 * cannot be queued completes with its error through the callback.
 *
 * File descriptors are plain ints. On the simulator they are the simulator's own numbers and
 * mean nothing to the kernel, so callers must never pass them to raw system calls.
 *
 * Synchronous file-system calls (io_fs_*) exist for start-up, recovery and rare metadata
 * writes (the temp-file/fsync/rename ritual). They block the calling shard: never use them on a
 * request path.
 */
#ifndef AL_IO_H
#define AL_IO_H

#include "base/base.h"

#include <sys/socket.h>
#include <sys/types.h>

typedef struct io io;
typedef struct io_op io_op;
typedef void (*io_cb)(io_op *op);

enum io_op_kind {
    IO_OP_NONE = 0,
    IO_OP_ACCEPT,
    IO_OP_CONNECT,
    IO_OP_RECV,
    IO_OP_SEND,
    IO_OP_CLOSE,
    IO_OP_OPEN,
    IO_OP_READ,
    IO_OP_WRITE,
    IO_OP_FDATASYNC,
    IO_OP_FSYNC,
    IO_OP_FALLOCATE,
    IO_OP_TIMEOUT,
    IO_OP_CANCEL,
    IO_OP_WRITE_DSYNC,
    IO_OP_SENDMSG,
    IO_OP_OFFLOAD,
};

enum {
    IO_F_MORE = 1u << 0, /* res flag: a multishot op (accept) stays armed; more to come */
};

struct io_op {
    io_cb cb;       /* required: called once per completion (more for multishot) */
    void *ctx;      /* the caller's */
    int32_t res;    /* result, set before cb runs */
    uint32_t flags; /* IO_F_* set before cb runs */
    /* Private to the back end. */
    uint8_t kind;
    uint8_t pending;
    int fd;
    void *buf;
    uint64_t len;
    uint64_t off;
    uint64_t priv[2];
};

/* ---- lifecycle and the loop ---- */

struct io_uring_opts {
    unsigned entries;   /* submission queue size (default 1024 when 0) */
    bool sqpoll;        /* unused for now */
    uint64_t seed;      /* seed of io_random() (0: from the clock) */
};

/* Creates an io_uring back end for the calling thread. Returns 0 or -errno (ENOSYS, EPERM
 * where io_uring is disabled: the message printed by the caller should say so). */
int io_uring_create(io **out, const struct io_uring_opts *opts);

/* Frees the back end. All ops must have completed (or been cancelled and completed). */
void io_destroy(io *io);

/*
 * Submits queued ops, waits until at least one completion arrives, the monotonic clock reaches
 * deadline_ns (io_now_ns() scale; 0 means do not wait, UINT64_MAX means no deadline), or
 * io_wakeup() is called; then runs the callbacks of every completion that is ready. Returns
 * the number of callbacks run, or -errno on a back-end failure.
 */
int io_poll(io *io, uint64_t deadline_ns);

/* Thread-safe: makes a concurrent or next io_poll() on `target` return promptly. */
void io_wakeup(io *target);

/* ---- time and randomness ---- */

uint64_t io_now_ns(io *io);   /* monotonic nanoseconds */
int64_t io_wall_ms(io *io);   /* wall clock, milliseconds since the Unix epoch */
uint64_t io_random(io *io);   /* next value of this io's seeded PRNG */

/* ---- network ---- */

/*
 * Creates a TCP listening socket bound to host:port (host NULL or "" for all addresses),
 * with SO_REUSEADDR and, if reuseport, SO_REUSEPORT (one listener per shard). Synchronous.
 * Returns the fd or -errno.
 */
int io_listen(io *io, const char *host, uint16_t port, bool reuseport, int backlog);

/* Returns the port a listening fd is bound to (useful after binding port 0), or -errno. */
int io_local_port(io *io, int fd);

/* Accepts connections on lfd; multishot where the kernel supports it (IO_F_MORE set while the
 * op stays armed). res = new connected fd (TCP_NODELAY set) or -errno. */
void io_accept(io *io, io_op *op, int lfd);

/* Creates a non-listening TCP socket and connects it to host:port. res = fd or -errno. The
 * host must be a numeric address (name resolution does not belong on a shard). */
void io_connect(io *io, io_op *op, const char *host, uint16_t port);

/* Receives up to len bytes. res = bytes (0 = peer closed) or -errno. */
void io_recv(io *io, io_op *op, int fd, void *buf, size_t len);

/* Sends up to len bytes. res = bytes sent (may be short) or -errno. */
void io_send(io *io, io_op *op, int fd, const void *buf, size_t len);

/*
 * Gathered send: sends up to the total length of msg->msg_iov[0..msg_iovlen) as one stream,
 * in iovec order (sendmsg(2) with MSG_NOSIGNAL; msg_name/msg_control must be NULL/0). msg, its
 * iovec array and every buffer it points to are the caller's and must stay valid and unchanged
 * until the callback has run. res = bytes sent (may be short, ending anywhere inside an iovec:
 * the caller advances through its iovecs and sends the rest) or -errno. msg_iovlen must be
 * 1..IO_SENDMSG_IOV_MAX.
 */
#define IO_SENDMSG_IOV_MAX 1024
void io_sendmsg(io *io, io_op *op, int fd, const struct msghdr *msg);

/* After a short gathered send of n bytes (n <= what msg holds): drops the fully sent iovecs
 * (and empty ones) from the front of msg->msg_iov by moving the pointer, and advances the base
 * and length of a partly sent first entry (the array is modified there). Returns the bytes
 * still to send (0: msg_iovlen is 0, nothing to send). */
static inline size_t io_iov_advance(struct msghdr *msg, size_t n)
{
    size_t left = 0;
    while (msg->msg_iovlen > 0 && n >= msg->msg_iov->iov_len) { /* bounded by msg_iovlen */
        n -= msg->msg_iov->iov_len;
        msg->msg_iov++;
        msg->msg_iovlen--;
    }
    if (msg->msg_iovlen > 0) {
        msg->msg_iov->iov_base = (uint8_t *)msg->msg_iov->iov_base + n;
        msg->msg_iov->iov_len -= n;
    }
    for (size_t i = 0; i < msg->msg_iovlen; i++) left += msg->msg_iov[i].iov_len;
    return left;
}

/* Closes fd (socket or file). */
void io_close(io *io, io_op *op, int fd);

/* Closes fd at once, synchronously (for error and shutdown paths). */
void io_close_now(io *io, int fd);

/* Cancels a pending op (best effort). The op's callback still runs (res = -ECANCELED if it
 * was cancelled). */
void io_cancel(io *io, io_op *op);

/* ---- files: asynchronous, for the data path ---- */

/* Opens path (flags as open(2): O_DIRECT, O_CREAT, ...). res = fd or -errno. The path is
 * copied before this returns. */
void io_open(io *io, io_op *op, const char *path, int flags, mode_t mode);

/* Reads/writes len bytes at off. With O_DIRECT, buf, len and off must be 4096-aligned.
 * res = bytes or -errno (ENOSPC, EIO, ...). */
void io_read(io *io, io_op *op, int fd, void *buf, size_t len, uint64_t off);
void io_write(io *io, io_op *op, int fd, const void *buf, size_t len, uint64_t off);

/* A write that is durable when it completes (pwritev2 with RWF_DSYNC: the data and the
 * metadata needed to read it back, as write + fdatasync of that range, in one device round
 * trip where the device supports FUA). Arguments and result as io_write; bytes reported
 * written (also by a short write) are durable. The simulator applies the write after one disk
 * latency (from then on it is the disk's last non-durable write, tearable by a crash) and
 * makes it durable and completes the op after a second one. */
void io_write_dsync(io *io, io_op *op, int fd, const void *buf, size_t len, uint64_t off);

void io_fdatasync(io *io, io_op *op, int fd);
void io_fsync(io *io, io_op *op, int fd);

/* fallocate(fd, mode, off, len); mode 0 grows the file, FALLOC_FL_KEEP_SIZE does not. */
void io_fallocate(io *io, io_op *op, int fd, int mode, uint64_t off, uint64_t len);

/* ---- blocking work off the shard's thread ---- */

/*
 * Blocking file-system work that io_uring has no op for, or that is a sequence of calls (the
 * atomic-write ritual, ftruncate + fdatasync, unlink + directory fsync): fn(io, arg) runs off
 * the calling thread (io_uring back end: one worker thread per io, jobs in submission order;
 * simulator: at a later simulated time, like a disk op) and op completes with res = fn's
 * return. fn may call io_fs_* on `io` and touch only memory the caller handed over and does
 * not change until the callback: it must not use the shard's other state.
 */
typedef int (*io_offload_fn)(io *io, void *arg);
void io_offload(io *io, io_op *op, io_offload_fn fn, void *arg);

/*
 * For close paths that cannot wait for a callback: makes sure an offloaded op's fn has run
 * and returns its result; the op's callback will not be called. A job not yet started runs
 * now on the calling thread; a running one is waited for (blocking). The op must be pending.
 */
int io_offload_finish(io *io, io_op *op);

/* ---- timers ---- */

/* Completes (res = -ETIME) when io_now_ns() >= deadline_ns, or -ECANCELED if cancelled.
 * The reactor keeps its own timer heap on top of io_poll deadlines; this op is for code that
 * wants a one-off timeout. */
void io_timeout(io *io, io_op *op, uint64_t deadline_ns);

/* ---- files: synchronous, for start-up, recovery and metadata only ---- */

int io_fs_open(io *io, const char *path, int flags, mode_t mode);   /* fd or -errno */
int io_fs_close(io *io, int fd);
ssize_t io_fs_pread(io *io, int fd, void *buf, size_t len, uint64_t off);
ssize_t io_fs_pwrite(io *io, int fd, const void *buf, size_t len, uint64_t off);
int io_fs_fsync(io *io, int fd);
int io_fs_fdatasync(io *io, int fd);
int io_fs_ftruncate(io *io, int fd, uint64_t len);
int io_fs_fallocate(io *io, int fd, int mode, uint64_t off, uint64_t len);
int64_t io_fs_size(io *io, int fd);                         /* file size or -errno */
int io_fs_rename(io *io, const char *from, const char *to);
int io_fs_unlink(io *io, const char *path);
int io_fs_mkdir(io *io, const char *path, mode_t mode);     /* 0 also if it exists */
int io_fs_rmdir(io *io, const char *path);
int io_fs_fsync_dir(io *io, const char *path);              /* open dir, fsync, close */
int io_fs_exists(io *io, const char *path);                 /* 1, 0 or -errno */

/* Lists the names in a directory (no "." or ".."), sorted by strcmp. On success *names is a
 * malloc'd array of malloc'd strings; free with io_fs_list_free. Returns the count or -errno. */
int io_fs_list(io *io, const char *dir, char ***names);
void io_fs_list_free(char **names, int n);

/*
 * The durability ritual for small metadata files, in one place: writes data to path.tmp,
 * fsyncs it, renames it over path and fsyncs the directory. Returns 0 or -errno; on failure
 * the old file (if any) is untouched.
 */
int io_fs_write_atomic(io *io, const char *path, const void *data, size_t len);

/* Writes data to path (created or truncated) with no sync: durable whenever the kernel writes
 * it back. Only for files whose reader checks them (CRC, sizes) and falls back when they are
 * missing, short or stale: a crash may leave any of those. Returns 0 or -errno. */
int io_fs_write_lazy(io *io, const char *path, const void *data, size_t len);

/* Reads a whole small file into a malloc'd buffer (*out, *len), at most max bytes.
 * Returns 0, -ENOENT, -EFBIG (over max) or -errno. */
int io_fs_read_all(io *io, const char *path, size_t max, uint8_t **out, size_t *len);

#endif
