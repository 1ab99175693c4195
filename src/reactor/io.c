/*
 * io.c — the back-end-independent half of the I/O interface (io.h): every public io_* call
 * checks its arguments, fills in the caller's io_op and dispatches through the back end's
 * function table (io_impl.h). Also here, written once on top of the io_fs_* primitives so both
 * back ends share them: the seeded PRNG (xoshiro256**), the durability ritual
 * io_fs_write_atomic, io_fs_read_all and the sorting of io_fs_list.
 */
#include "reactor/io_impl.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- common head, PRNG ---- */

uint64_t io_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void io_base_init(io *self, const struct io_backend_ops *ops, uint64_t seed)
{
    AL_ASSERT(self && ops);
    self->ops = ops;
    uint64_t s = seed;
    for (int i = 0; i < 4; i++) self->rng[i] = io_splitmix64(&s);
}

static inline uint64_t rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t io_random(io *self)
{
    uint64_t *s = self->rng;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

/* ---- lifecycle, loop, time ---- */

void io_destroy(io *self)
{
    if (self) self->ops->destroy(self);
}

int io_poll(io *self, uint64_t deadline_ns)
{
    return self->ops->poll(self, deadline_ns);
}

void io_wakeup(io *target)
{
    target->ops->wakeup(target);
}

uint64_t io_now_ns(io *self)
{
    return self->ops->now_ns(self);
}

int64_t io_wall_ms(io *self)
{
    return self->ops->wall_ms(self);
}

/* ---- asynchronous ops ---- */

/* Resets the public and private fields of op for a new submission of `kind`. The op must not
 * be in flight: reusing a pending op would corrupt the back end's bookkeeping. */
static void op_prep(io_op *op, uint8_t kind, int fd, void *buf, uint64_t len, uint64_t off)
{
    AL_ASSERT(op && op->cb);
    AL_ASSERT(!op->pending);
    op->res = 0;
    op->flags = 0;
    op->kind = kind;
    op->fd = fd;
    op->buf = buf;
    op->len = len;
    op->off = off;
    op->priv[0] = 0;
    op->priv[1] = 0;
}

int io_listen(io *self, const char *host, uint16_t port, bool reuseport, int backlog)
{
    return self->ops->listen(self, host, port, reuseport, backlog > 0 ? backlog : 1024);
}

int io_local_port(io *self, int fd)
{
    return self->ops->local_port(self, fd);
}

void io_accept(io *self, io_op *op, int lfd)
{
    op_prep(op, IO_OP_ACCEPT, lfd, NULL, 0, 0);
    self->ops->submit(self, op);
}

void io_connect(io *self, io_op *op, const char *host, uint16_t port)
{
    op_prep(op, IO_OP_CONNECT, -1, NULL, 0, 0);
    self->ops->connect(self, op, host ? host : "127.0.0.1", port);
}

void io_recv(io *self, io_op *op, int fd, void *buf, size_t len)
{
    op_prep(op, IO_OP_RECV, fd, buf, len, 0);
    self->ops->submit(self, op);
}

void io_send(io *self, io_op *op, int fd, const void *buf, size_t len)
{
    op_prep(op, IO_OP_SEND, fd, (void *)buf, len, 0);
    self->ops->submit(self, op);
}

void io_sendmsg(io *self, io_op *op, int fd, const struct msghdr *msg)
{
    AL_ASSERT(msg && msg->msg_iovlen >= 1 && msg->msg_iovlen <= IO_SENDMSG_IOV_MAX);
    uint64_t total = 0;
    for (size_t i = 0; i < msg->msg_iovlen; i++) total += msg->msg_iov[i].iov_len;
    op_prep(op, IO_OP_SENDMSG, fd, (void *)msg, total, 0);
    self->ops->submit(self, op);
}

void io_close(io *self, io_op *op, int fd)
{
    op_prep(op, IO_OP_CLOSE, fd, NULL, 0, 0);
    self->ops->submit(self, op);
}

void io_close_now(io *self, int fd)
{
    if (fd >= 0) self->ops->close_now(self, fd);
}

void io_cancel(io *self, io_op *op)
{
    if (op && op->pending) self->ops->cancel(self, op);
}

void io_open(io *self, io_op *op, const char *path, int flags, mode_t mode)
{
    op_prep(op, IO_OP_OPEN, -1, NULL, (uint64_t)(unsigned)flags, mode);
    self->ops->open(self, op, path, flags, mode);
}

void io_read(io *self, io_op *op, int fd, void *buf, size_t len, uint64_t off)
{
    op_prep(op, IO_OP_READ, fd, buf, len, off);
    self->ops->submit(self, op);
}

void io_write(io *self, io_op *op, int fd, const void *buf, size_t len, uint64_t off)
{
    op_prep(op, IO_OP_WRITE, fd, (void *)buf, len, off);
    self->ops->submit(self, op);
}

void io_write_dsync(io *self, io_op *op, int fd, const void *buf, size_t len, uint64_t off)
{
    op_prep(op, IO_OP_WRITE_DSYNC, fd, (void *)buf, len, off);
    self->ops->submit(self, op);
}

void io_fdatasync(io *self, io_op *op, int fd)
{
    op_prep(op, IO_OP_FDATASYNC, fd, NULL, 0, 0);
    self->ops->submit(self, op);
}

void io_fsync(io *self, io_op *op, int fd)
{
    op_prep(op, IO_OP_FSYNC, fd, NULL, 0, 0);
    self->ops->submit(self, op);
}

void io_fallocate(io *self, io_op *op, int fd, int mode, uint64_t off, uint64_t len)
{
    op_prep(op, IO_OP_FALLOCATE, fd, NULL, len, off);
    op->priv[0] = (uint64_t)(unsigned)mode;
    self->ops->submit(self, op);
}

void io_offload(io *self, io_op *op, io_offload_fn fn, void *arg)
{
    AL_ASSERT(fn);
    op_prep(op, IO_OP_OFFLOAD, -1, arg, 0, (uint64_t)(uintptr_t)fn);
    self->ops->offload(self, op);
}

int io_offload_finish(io *self, io_op *op)
{
    AL_ASSERT(op->kind == IO_OP_OFFLOAD && op->pending);
    return self->ops->offload_finish(self, op);
}

void io_timeout(io *self, io_op *op, uint64_t deadline_ns)
{
    op_prep(op, IO_OP_TIMEOUT, -1, NULL, 0, deadline_ns);
    self->ops->submit(self, op);
}

/* ---- synchronous file system ---- */

int io_fs_open(io *self, const char *path, int flags, mode_t mode)
{
    return self->ops->fs_open(self, path, flags, mode);
}

int io_fs_close(io *self, int fd)
{
    return self->ops->fs_close(self, fd);
}

ssize_t io_fs_pread(io *self, int fd, void *buf, size_t len, uint64_t off)
{
    return self->ops->fs_pread(self, fd, buf, len, off);
}

ssize_t io_fs_pwrite(io *self, int fd, const void *buf, size_t len, uint64_t off)
{
    return self->ops->fs_pwrite(self, fd, buf, len, off);
}

int io_fs_fsync(io *self, int fd)
{
    return self->ops->fs_fsync(self, fd, false);
}

int io_fs_fdatasync(io *self, int fd)
{
    return self->ops->fs_fsync(self, fd, true);
}

int io_fs_ftruncate(io *self, int fd, uint64_t len)
{
    return self->ops->fs_ftruncate(self, fd, len);
}

int io_fs_fallocate(io *self, int fd, int mode, uint64_t off, uint64_t len)
{
    return self->ops->fs_fallocate(self, fd, mode, off, len);
}

int64_t io_fs_size(io *self, int fd)
{
    return self->ops->fs_size(self, fd);
}

int io_fs_rename(io *self, const char *from, const char *to)
{
    return self->ops->fs_rename(self, from, to);
}

int io_fs_unlink(io *self, const char *path)
{
    return self->ops->fs_unlink(self, path);
}

int io_fs_mkdir(io *self, const char *path, mode_t mode)
{
    return self->ops->fs_mkdir(self, path, mode);
}

int io_fs_rmdir(io *self, const char *path)
{
    return self->ops->fs_rmdir(self, path);
}

int io_fs_fsync_dir(io *self, const char *path)
{
    return self->ops->fs_fsync_dir(self, path);
}

int io_fs_exists(io *self, const char *path)
{
    return self->ops->fs_exists(self, path);
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int io_fs_list(io *self, const char *dir, char ***names)
{
    *names = NULL;
    int n = self->ops->fs_list(self, dir, names);
    if (n > 1) al_sort(*names, (size_t)n, sizeof(char *), name_cmp);
    return n;
}

void io_fs_list_free(char **names, int n)
{
    if (!names) return;
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* Writes all of buf at off with io_fs_pwrite, looping over short writes (bounded: each pass
 * must make progress). Returns 0 or -errno. */
static int fs_pwrite_all(io *self, int fd, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    size_t done = 0;
    while (done < len) {
        ssize_t n = io_fs_pwrite(self, fd, p + done, len - done, off + done);
        if (n < 0) return (int)n;
        if (n == 0) return -EIO;
        done += (size_t)n;
    }
    return 0;
}

/* Copies the directory part of path into dir ("." if path has no slash, "/" for "/x"). */
static int path_dirname(const char *path, char *dir, size_t cap)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        if (cap < 2) return -ENAMETOOLONG;
        strcpy(dir, ".");
        return 0;
    }
    size_t n = (size_t)(slash - path);
    if (n == 0) n = 1; /* "/x" -> "/" */
    if (n + 1 > cap) return -ENAMETOOLONG;
    memcpy(dir, path, n);
    dir[n] = 0;
    return 0;
}

/*
 * The ritual: write path.tmp (created or truncated), fsync it, close it, rename it over path,
 * fsync the directory. On any failure before the rename the temp file is removed and the old
 * file is untouched; a failed directory fsync after the rename is reported (the new contents
 * may or may not survive a crash then, the old file is gone).
 */
int io_fs_write_atomic(io *self, const char *path, const void *data, size_t len)
{
    char tmp[4096], dir[4096];
    int fd = -1, err;
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) return -ENAMETOOLONG;
    err = path_dirname(path, dir, sizeof(dir));
    if (err) return err;

    fd = io_fs_open(self, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return fd;
    err = fs_pwrite_all(self, fd, data, len, 0);
    if (err) goto fail;
    err = io_fs_fsync(self, fd);
    if (err) goto fail;
    err = io_fs_close(self, fd);
    fd = -1;
    if (err) goto fail;
    err = io_fs_rename(self, tmp, path);
    if (err) goto fail;
    return io_fs_fsync_dir(self, dir);
fail:
    if (fd >= 0) io_fs_close(self, fd);
    io_fs_unlink(self, tmp);
    return err;
}

int io_fs_write_lazy(io *self, const char *path, const void *data, size_t len)
{
    int fd = io_fs_open(self, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return fd;
    int err = fs_pwrite_all(self, fd, data, len, 0);
    int cerr = io_fs_close(self, fd);
    if (!err) err = cerr;
    if (err) io_fs_unlink(self, path);
    return err;
}

int io_fs_read_all(io *self, const char *path, size_t max, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    int fd = io_fs_open(self, path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) return fd;
    uint8_t *buf = NULL;
    int err = 0;
    int64_t size = io_fs_size(self, fd);
    if (size < 0) {
        err = (int)size;
        goto out;
    }
    if ((uint64_t)size > max) {
        err = -EFBIG;
        goto out;
    }
    buf = malloc((size_t)size + 1);
    if (!buf) {
        err = -ENOMEM;
        goto out;
    }
    size_t got = 0;
    while (got < (size_t)size) {
        ssize_t n = io_fs_pread(self, fd, buf + got, (size_t)size - got, got);
        if (n < 0) {
            err = (int)n;
            goto out;
        }
        if (n == 0) break; /* shrank under us: return what is there */
        got += (size_t)n;
    }
    buf[got] = 0; /* convenience terminator for text files; not counted in *len */
    *out = buf;
    *len = got;
    buf = NULL;
out:
    free(buf);
    io_fs_close(self, fd);
    return err;
}
