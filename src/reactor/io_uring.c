/*
 * io_uring.c — the production back end of io.h on liburing: one ring per shard thread.
 *
 * - Ring set-up: IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN (completions are
 *   processed only when this thread enters the kernel to wait or reap), falling back to
 *   COOP_TASKRUN, then to no flags, on kernels that refuse them. CQ is 4x the SQ.
 * - Ops are queued as SQEs with user_data = the io_op pointer and submitted in io_poll (SQ
 *   full: submit and retry). An op that cannot get an SQE at all completes with -EBUSY from the
 *   next io_poll (through a local queue linked through op->off), never inline.
 * - Accept is multishot (IO_F_MORE while armed). If the kernel rejects multishot with -EINVAL
 *   the back end switches to single-shot accepts that it re-arms itself, so callers see the
 *   same IO_F_MORE contract either way (AILURUS_IO_NO_MULTISHOT=1 forces that mode).
 * - Accepted and connected sockets get TCP_NODELAY. Sends use MSG_NOSIGNAL.
 * - io_poll waits with io_uring_submit_and_wait_timeout (one syscall with EXT_ARG).
 * - io_wakeup: an eventfd whose 8-byte read is kept armed in the ring; io_wakeup writes to it
 *   (thread-safe), an atomic flag suppresses redundant writes until the read completes.
 * - io_fs_* are plain blocking system calls.
 * - io_offload: one worker thread per ring, started at the first job; jobs run in submission
 *   order; a finished job goes on a done list (mutex) and io_wakeup makes io_poll run its
 *   callback on the ring's thread.
 */
#include "reactor/io_impl.h"

#include "base/log.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define UD_WAKE   1ull /* the armed eventfd read */
#define UD_IGNORE 2ull /* cancel requests and other internal SQEs */

/* op->priv[0] bits for accept ops. */
#define ACC_MULTISHOT 1ull /* submitted as multishot */
#define ACC_GOT_ONE   2ull /* at least one connection came out of this op */

struct io_ur {
    struct io base;
    struct io_uring ring;
    int efd;
    bool efd_armed;
    bool multishot_accept; /* false after the kernel refused it once */
    int wake_pending;      /* atomic: a wakeup write is in flight */
    uint64_t efd_buf;
    io_op *fail_head;      /* ops that could not be queued; completed by the next io_poll */
    io_op *fail_tail;
    unsigned cq_entries;
    /* io_offload (ow_*): guarded by ow_mu, except ow_started (ring thread only). Queued and
     * done ops are linked through priv[1]; op->len is the job's state (OW_*). */
    pthread_mutex_t ow_mu;
    pthread_cond_t ow_work, ow_idle;
    pthread_t ow_thread;
    bool ow_started, ow_stop;
    io_op *ow_qhead, *ow_qtail, *ow_dhead, *ow_dtail;
    int ow_ndone; /* atomic: ops on the done list */
};

enum { OW_QUEUED = 1, OW_RUNNING, OW_DONE };

static inline struct io_ur *ur_of(io *self)
{
    return (struct io_ur *)self;
}

/* ---- submission ---- */

/* Returns a free SQE, submitting what is queued to make room if the SQ is full (bounded
 * retries). NULL if the kernel keeps refusing (e.g. -EBUSY with an overflowing CQ). */
static struct io_uring_sqe *ur_sqe(struct io_ur *u)
{
    for (int i = 0; i < 8; i++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
        if (sqe) return sqe;
        int r = io_uring_submit(&u->ring);
        if (r < 0 && r != -EBUSY && r != -EAGAIN && r != -EINTR) {
            log_error("io", "io_uring_submit: %s", strerror(-r));
            return NULL;
        }
    }
    return NULL;
}

/*
 * Singly linked op lists with head and tail. The link lives in a field the op does not use
 * while it is on that list: `off` for the fail list (a failed op's offset is spent), priv[1]
 * for the offload worker's queue and done list (`off` holds an offload job's function).
 */
enum op_link { OP_LINK_OFF, OP_LINK_PRIV1 };

static uint64_t *op_link(io_op *o, enum op_link l)
{
    return l == OP_LINK_OFF ? &o->off : &o->priv[1];
}

static void op_push(io_op **head, io_op **tail, io_op *op, enum op_link l)
{
    *op_link(op, l) = 0;
    if (*tail) *op_link(*tail, l) = (uint64_t)(uintptr_t)op;
    else *head = op;
    *tail = op;
}

/* Unlinks op from a list; false if it is not on it. */
static bool op_unlink(io_op **head, io_op **tail, io_op *op, enum op_link l)
{
    io_op *prev = NULL;
    for (io_op *o = *head; o; prev = o, o = (io_op *)(uintptr_t)*op_link(o, l)) {
        if (o != op) continue;
        io_op *next = (io_op *)(uintptr_t)*op_link(o, l);
        if (prev) *op_link(prev, l) = (uint64_t)(uintptr_t)next;
        else *head = next;
        if (*tail == op) *tail = prev;
        *op_link(op, l) = 0;
        return true;
    }
    return false;
}

/* Completes op with err from the next io_poll (never inline: callers may hold state). */
static void ur_fail_later(struct io_ur *u, io_op *op, int err)
{
    op->res = err;
    op->pending = 1;
    op_push(&u->fail_head, &u->fail_tail, op, OP_LINK_OFF);
}

static void ur_prep_accept(struct io_ur *u, struct io_uring_sqe *sqe, io_op *op)
{
    if (u->multishot_accept) {
        io_uring_prep_multishot_accept(sqe, op->fd, NULL, NULL, SOCK_CLOEXEC);
        op->priv[0] |= ACC_MULTISHOT;
    } else {
        io_uring_prep_accept(sqe, op->fd, NULL, NULL, SOCK_CLOEXEC);
        op->priv[0] &= ~ACC_MULTISHOT;
    }
}

/* Fills sqe for op (every kind but CONNECT and OPEN, which prepare their own). */
static void ur_prep(struct io_ur *u, struct io_uring_sqe *sqe, io_op *op)
{
    switch (op->kind) {
    case IO_OP_ACCEPT: ur_prep_accept(u, sqe, op); break;
    case IO_OP_RECV: io_uring_prep_recv(sqe, op->fd, op->buf, op->len, 0); break;
    case IO_OP_SEND: io_uring_prep_send(sqe, op->fd, op->buf, op->len, MSG_NOSIGNAL); break;
    case IO_OP_SENDMSG:
        io_uring_prep_sendmsg(sqe, op->fd, (const struct msghdr *)op->buf, MSG_NOSIGNAL);
        break;
    case IO_OP_CLOSE: io_uring_prep_close(sqe, op->fd); break;
    case IO_OP_READ:
        io_uring_prep_read(sqe, op->fd, op->buf, (unsigned)op->len, op->off);
        break;
    case IO_OP_WRITE:
        io_uring_prep_write(sqe, op->fd, op->buf, (unsigned)op->len, op->off);
        break;
    case IO_OP_WRITE_DSYNC:
        io_uring_prep_write(sqe, op->fd, op->buf, (unsigned)op->len, op->off);
        sqe->rw_flags = RWF_DSYNC;
        break;
    case IO_OP_FDATASYNC: io_uring_prep_fsync(sqe, op->fd, IORING_FSYNC_DATASYNC); break;
    case IO_OP_FSYNC: io_uring_prep_fsync(sqe, op->fd, 0); break;
    case IO_OP_FALLOCATE:
        io_uring_prep_fallocate(sqe, op->fd, (int)op->priv[0], op->off, op->len);
        break;
    case IO_OP_TIMEOUT: {
        struct __kernel_timespec *ts = (struct __kernel_timespec *)op->priv;
        ts->tv_sec = (long long)(op->off / 1000000000ull);
        ts->tv_nsec = (long long)(op->off % 1000000000ull);
        /* Absolute, on CLOCK_MONOTONIC (the io_now_ns clock). */
        io_uring_prep_timeout(sqe, ts, 0, IORING_TIMEOUT_ABS);
        break;
    }
    default: AL_PANIC("io_uring: bad op kind %d", op->kind);
    }
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)op);
}

static void ur_submit(io *self, io_op *op)
{
    struct io_ur *u = ur_of(self);
    if ((op->kind == IO_OP_READ || op->kind == IO_OP_WRITE || op->kind == IO_OP_WRITE_DSYNC) &&
        op->len > 0x7ffff000ull) {
        ur_fail_later(u, op, -EINVAL);
        return;
    }
    struct io_uring_sqe *sqe = ur_sqe(u);
    if (!sqe) {
        ur_fail_later(u, op, -EBUSY);
        return;
    }
    op->pending = 1;
    ur_prep(u, sqe, op);
}

/* Parses a numeric host into a sockaddr. Returns its length or -EINVAL. */
static int ur_sockaddr(const char *host, uint16_t port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (!host || !*host) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        a->sin_addr.s_addr = htonl(INADDR_ANY);
        return sizeof(*a);
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        return sizeof(*a4);
    }
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        return sizeof(*a6);
    }
    return -EINVAL;
}

static void ur_nodelay(int fd)
{
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/*
 * Connect: the socket is created synchronously, the connect goes through the ring. The
 * sockaddr must outlive the SQE: IPv4 fits in op->priv (16 bytes); IPv6 is malloc'd into
 * op->buf and freed on completion.
 */
static void ur_connect(io *self, io_op *op, const char *host, uint16_t port)
{
    struct io_ur *u = ur_of(self);
    struct sockaddr_storage ss;
    int alen = ur_sockaddr(host, port, &ss);
    if (alen < 0 || !host || !*host) {
        ur_fail_later(u, op, -EINVAL);
        return;
    }
    const struct sockaddr *sa;
    if (ss.ss_family == AF_INET) {
        AL_ASSERT(sizeof(struct sockaddr_in) <= sizeof(op->priv));
        memcpy(op->priv, &ss, sizeof(struct sockaddr_in));
        sa = (const struct sockaddr *)op->priv;
    } else {
        op->buf = malloc(sizeof(struct sockaddr_in6));
        if (!op->buf) {
            ur_fail_later(u, op, -ENOMEM);
            return;
        }
        memcpy(op->buf, &ss, sizeof(struct sockaddr_in6));
        sa = op->buf;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0) {
        int err = -errno;
        free(op->buf);
        op->buf = NULL;
        ur_fail_later(u, op, err);
        return;
    }
    ur_nodelay(fd);
    op->fd = fd;
    struct io_uring_sqe *sqe = ur_sqe(u);
    if (!sqe) {
        close(fd);
        op->fd = -1;
        free(op->buf);
        op->buf = NULL;
        ur_fail_later(u, op, -EBUSY);
        return;
    }
    op->pending = 1;
    io_uring_prep_connect(sqe, fd, sa, (socklen_t)alen);
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)op);
}

/* Open: the path is copied (strdup into op->buf, freed on completion). */
static void ur_open(io *self, io_op *op, const char *path, int flags, mode_t mode)
{
    struct io_ur *u = ur_of(self);
    op->buf = strdup(path);
    if (!op->buf) {
        ur_fail_later(u, op, -ENOMEM);
        return;
    }
    struct io_uring_sqe *sqe = ur_sqe(u);
    if (!sqe) {
        free(op->buf);
        op->buf = NULL;
        ur_fail_later(u, op, -EBUSY);
        return;
    }
    op->pending = 1;
    io_uring_prep_openat(sqe, AT_FDCWD, op->buf, flags, mode);
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)op);
}

static void ur_cancel(io *self, io_op *op)
{
    struct io_ur *u = ur_of(self);
    struct io_uring_sqe *sqe = ur_sqe(u);
    if (!sqe) return; /* best effort */
    io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)op, 0);
    io_uring_sqe_set_data64(sqe, UD_IGNORE);
}

static void ur_close_now(io *self, int fd)
{
    close(fd);
}

/* ---- io_offload ---- */

static void ur_wakeup(io *self);

static void ow_push(io_op **head, io_op **tail, io_op *op)
{
    op_push(head, tail, op, OP_LINK_PRIV1);
}

static bool ow_unlink(io_op **head, io_op **tail, io_op *op)
{
    return op_unlink(head, tail, op, OP_LINK_PRIV1);
}

static int ow_run(io *self, io_op *op)
{
    io_offload_fn fn = (io_offload_fn)(uintptr_t)op->off;
    return fn(self, op->buf);
}

static void *ow_main(void *arg)
{
    struct io_ur *u = arg;
    pthread_setname_np(pthread_self(), "offload"); /* the shard's blocking jobs (io_offload) */
    pthread_mutex_lock(&u->ow_mu);
    for (;;) {
        while (!u->ow_qhead && !u->ow_stop) pthread_cond_wait(&u->ow_work, &u->ow_mu);
        io_op *op = u->ow_qhead;
        if (!op) break; /* stopping with nothing queued */
        ow_unlink(&u->ow_qhead, &u->ow_qtail, op);
        op->len = OW_RUNNING;
        pthread_mutex_unlock(&u->ow_mu);
        int res = ow_run(&u->base, op);
        pthread_mutex_lock(&u->ow_mu);
        op->res = res;
        op->len = OW_DONE;
        ow_push(&u->ow_dhead, &u->ow_dtail, op);
        __atomic_add_fetch(&u->ow_ndone, 1, __ATOMIC_SEQ_CST);
        pthread_cond_broadcast(&u->ow_idle);
        pthread_mutex_unlock(&u->ow_mu);
        ur_wakeup(&u->base);
        pthread_mutex_lock(&u->ow_mu);
    }
    pthread_mutex_unlock(&u->ow_mu);
    return NULL;
}

static void ur_offload(io *self, io_op *op)
{
    struct io_ur *u = ur_of(self);
    if (!u->ow_started) {
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old); /* signals stay with the process's threads */
        int r = pthread_create(&u->ow_thread, NULL, ow_main, u);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r != 0) { /* degrade to blocking, still completing from the next io_poll */
            log_error("io", "starting the offload thread: %s; running the job inline",
                      strerror(r));
            op->len = 0;
            ur_fail_later(u, op, ow_run(self, op));
            return;
        }
        u->ow_started = true;
    }
    op->pending = 1;
    pthread_mutex_lock(&u->ow_mu);
    op->len = OW_QUEUED;
    ow_push(&u->ow_qhead, &u->ow_qtail, op);
    pthread_cond_signal(&u->ow_work);
    pthread_mutex_unlock(&u->ow_mu);
}

static int ur_offload_finish(io *self, io_op *op)
{
    struct io_ur *u = ur_of(self);
    if (op->len == 0) { /* ran inline (no worker): waiting on the fail list */
        op_unlink(&u->fail_head, &u->fail_tail, op, OP_LINK_OFF);
        op->off = 0;
        op->pending = 0;
        return op->res;
    }
    pthread_mutex_lock(&u->ow_mu);
    int res;
    if (op->len == OW_QUEUED) {
        ow_unlink(&u->ow_qhead, &u->ow_qtail, op);
        op->len = OW_RUNNING;
        pthread_mutex_unlock(&u->ow_mu);
        res = ow_run(self, op);
        pthread_mutex_lock(&u->ow_mu);
    } else {
        /* Bounded by the job's own run time: the worker signals ow_idle when it finishes. */
        while (op->len == OW_RUNNING) pthread_cond_wait(&u->ow_idle, &u->ow_mu);
        res = op->res;
        if (op->len == OW_DONE && ow_unlink(&u->ow_dhead, &u->ow_dtail, op))
            __atomic_sub_fetch(&u->ow_ndone, 1, __ATOMIC_SEQ_CST);
    }
    op->len = 0;
    pthread_mutex_unlock(&u->ow_mu);
    op->pending = 0;
    op->res = res;
    return res;
}

/* Runs the callbacks of finished offload jobs. Returns how many. One op at a time off the done
 * list, under ow_mu: a callback may io_offload_finish (or free, after finishing it) a later
 * finished op - a storage log closed or truncated from a callback waits for its jobs - and
 * that op must still be on the list so that ur_offload_finish unlinks it and its callback does
 * not run. (Taking the whole list first ran such an op's callback anyway, on memory its owner
 * may have freed or reused.) Bounded by the ops there at the start: jobs finishing meanwhile
 * run at the next call. */
static int ur_run_offloaded(struct io_ur *u)
{
    int left = __atomic_load_n(&u->ow_ndone, __ATOMIC_SEQ_CST);
    int n = 0;
    for (; left > 0; left--) {
        pthread_mutex_lock(&u->ow_mu);
        io_op *op = u->ow_dhead;
        if (op) {
            ow_unlink(&u->ow_dhead, &u->ow_dtail, op);
            __atomic_sub_fetch(&u->ow_ndone, 1, __ATOMIC_SEQ_CST);
            op->len = 0;
        }
        pthread_mutex_unlock(&u->ow_mu);
        if (!op) break;
        op->pending = 0;
        op->flags = 0;
        op->cb(op);
        n++;
    }
    return n;
}

static void ur_offload_stop(struct io_ur *u)
{
    if (u->ow_started) {
        pthread_mutex_lock(&u->ow_mu);
        u->ow_stop = true;
        pthread_cond_signal(&u->ow_work);
        pthread_mutex_unlock(&u->ow_mu);
        pthread_join(u->ow_thread, NULL); /* runs what is still queued first */
        u->ow_started = false;
    }
    pthread_mutex_destroy(&u->ow_mu);
    pthread_cond_destroy(&u->ow_work);
    pthread_cond_destroy(&u->ow_idle);
}

/* ---- completion ---- */

static void ur_arm_wake(struct io_ur *u)
{
    if (u->efd_armed) return;
    struct io_uring_sqe *sqe = ur_sqe(u);
    if (!sqe) return; /* retried at the next io_poll */
    io_uring_prep_read(sqe, u->efd, &u->efd_buf, sizeof(u->efd_buf), 0);
    io_uring_sqe_set_data64(sqe, UD_WAKE);
    u->efd_armed = true;
}

/* Handles one CQE. Returns 1 if a user callback ran, 0 otherwise. */
static int ur_complete(struct io_ur *u, uint64_t ud, int res, unsigned cflags)
{
    if (ud == UD_WAKE) {
        u->efd_armed = false;
        __atomic_store_n(&u->wake_pending, 0, __ATOMIC_SEQ_CST);
        return 0;
    }
    if (ud == UD_IGNORE || ud == LIBURING_UDATA_TIMEOUT || ud == 0) return 0;
    io_op *op = (io_op *)(uintptr_t)ud;
    uint32_t flags = 0;
    switch (op->kind) {
    case IO_OP_ACCEPT:
        if (res >= 0) {
            ur_nodelay(res);
            op->priv[0] |= ACC_GOT_ONE;
        }
        if (cflags & IORING_CQE_F_MORE) {
            flags = IO_F_MORE;
        } else if ((op->priv[0] & ACC_MULTISHOT) && res == -EINVAL &&
                   !(op->priv[0] & ACC_GOT_ONE)) {
            /* The kernel does not know multishot accept: re-arm single-shot silently. */
            log_info("io", "multishot accept unsupported; using single-shot accepts");
            u->multishot_accept = false;
            op->pending = 0;
            ur_submit(&u->base, op);
            return 0;
        } else if (!(op->priv[0] & ACC_MULTISHOT) && res >= 0) {
            /* Single-shot emulation of multishot: re-arm and report IO_F_MORE. */
            struct io_uring_sqe *sqe = ur_sqe(u);
            if (sqe) {
                ur_prep(u, sqe, op);
                flags = IO_F_MORE;
            }
        } else if ((op->priv[0] & ACC_MULTISHOT) && res >= 0) {
            /* Multishot ended (CQ overflow etc.) after a success: re-arm. */
            struct io_uring_sqe *sqe = ur_sqe(u);
            if (sqe) {
                ur_prep(u, sqe, op);
                flags = IO_F_MORE;
            }
        }
        break;
    case IO_OP_CONNECT:
        if (op->buf) {
            free(op->buf);
            op->buf = NULL;
        }
        if (res < 0) {
            if (op->fd >= 0) close(op->fd);
            op->fd = -1;
        } else {
            res = op->fd;
        }
        break;
    case IO_OP_OPEN:
        free(op->buf);
        op->buf = NULL;
        break;
    default: break;
    }
    op->res = res;
    op->flags = flags;
    if (!(flags & IO_F_MORE)) op->pending = 0;
    op->cb(op);
    return 1;
}

/* Completes the ops that could not be queued. Returns the number of callbacks run. One op at
 * a time off the list (as ur_run_offloaded, see there): a callback may take a later op back
 * (io_offload_finish of an inline-run job) or free it, which it must find on the list. Bounded
 * by the ops there at the start (callbacks may queue more: the next io_poll runs them). */
static int ur_run_failed(struct io_ur *u)
{
    int left = 0;
    for (io_op *o = u->fail_head; o; o = (io_op *)(uintptr_t)o->off) left++;
    int n = 0;
    for (; left > 0 && u->fail_head; left--) {
        io_op *op = u->fail_head;
        op_unlink(&u->fail_head, &u->fail_tail, op, OP_LINK_OFF);
        op->off = 0;
        op->pending = 0;
        op->flags = 0;
        if (op->kind == IO_OP_CONNECT) op->fd = -1;
        op->cb(op);
        n++;
    }
    return n;
}

static uint64_t ur_now_ns(io *self)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int64_t ur_wall_ms(io *self)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int ur_poll(io *self, uint64_t deadline_ns)
{
    struct io_ur *u = ur_of(self);
    int ran = ur_run_failed(u);
    ran += ur_run_offloaded(u);
    ur_arm_wake(u);
    int r;
    bool wait = ran == 0 && deadline_ns != 0 && io_uring_cq_ready(&u->ring) == 0;
    if (wait && deadline_ns != UINT64_MAX) {
        uint64_t now = ur_now_ns(self);
        if (deadline_ns <= now) wait = false;
        else {
            uint64_t d = deadline_ns - now;
            struct __kernel_timespec ts = {.tv_sec = (long long)(d / 1000000000ull),
                                           .tv_nsec = (long long)(d % 1000000000ull)};
            struct io_uring_cqe *cqe;
            r = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
            goto reap;
        }
    }
    if (wait) r = io_uring_submit_and_wait(&u->ring, 1);
    else r = io_uring_submit_and_get_events(&u->ring);
reap:
    if (r < 0 && r != -ETIME && r != -EINTR && r != -EBUSY && r != -EAGAIN) {
        log_error("io", "io_uring wait: %s", strerror(-r));
        return r;
    }
    /* Bounded: at most the CQ's worth per call so one busy ring cannot starve the caller. */
    for (unsigned i = 0; i < u->cq_entries; i++) {
        struct io_uring_cqe *cqe;
        if (io_uring_peek_cqe(&u->ring, &cqe) != 0) break;
        uint64_t ud = io_uring_cqe_get_data64(cqe);
        int res = cqe->res;
        unsigned cflags = cqe->flags;
        io_uring_cqe_seen(&u->ring, cqe);
        ran += ur_complete(u, ud, res, cflags);
    }
    ran += ur_run_offloaded(u); /* a job that finished while we waited (its wake-up) */
    return ran;
}

static void ur_wakeup(io *self)
{
    struct io_ur *u = ur_of(self);
    if (__atomic_exchange_n(&u->wake_pending, 1, __ATOMIC_SEQ_CST)) return;
    uint64_t one = 1;
    ssize_t n = write(u->efd, &one, sizeof(one));
    (void)n;
}

static void ur_destroy(io *self)
{
    struct io_ur *u = ur_of(self);
    ur_offload_stop(u);
    /* Make sure the kernel is done with efd_buf before freeing: cancel the armed read and
     * reap until its completion arrives (bounded). */
    if (u->efd_armed) {
        struct io_uring_sqe *sqe = ur_sqe(u);
        if (sqe) {
            io_uring_prep_cancel64(sqe, UD_WAKE, 0);
            io_uring_sqe_set_data64(sqe, UD_IGNORE);
        }
        for (int i = 0; i < 100 && u->efd_armed; i++) {
            struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 10000000};
            struct io_uring_cqe *cqe;
            io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
            while (io_uring_peek_cqe(&u->ring, &cqe) == 0) {
                if (io_uring_cqe_get_data64(cqe) == UD_WAKE) u->efd_armed = false;
                io_uring_cqe_seen(&u->ring, cqe);
            }
        }
    }
    io_uring_queue_exit(&u->ring);
    close(u->efd);
    free(u);
}

/* ---- network set-up (synchronous) ---- */

static int ur_listen(io *self, const char *host, uint16_t port, bool reuseport, int backlog)
{
    struct sockaddr_storage ss;
    int alen = ur_sockaddr(host, port, &ss);
    if (alen < 0) return alen;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0) return -errno;
    int one = 1, err;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) goto fail;
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) goto fail;
    if (bind(fd, (struct sockaddr *)&ss, (socklen_t)alen) < 0) goto fail;
    if (listen(fd, backlog) < 0) goto fail;
    return fd;
fail:
    err = -errno;
    close(fd);
    return err;
}

static int ur_local_port(io *self, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return -errno;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -EAFNOSUPPORT;
}

/* ---- synchronous file system: plain system calls ---- */

static int fs_open(io *self, const char *path, int flags, mode_t mode)
{
    int fd = open(path, flags | O_CLOEXEC, mode);
    return fd < 0 ? -errno : fd;
}

static int fs_close(io *self, int fd)
{
    return close(fd) < 0 ? -errno : 0;
}

static ssize_t fs_pread(io *self, int fd, void *buf, size_t len, uint64_t off)
{
    for (int i = 0; i < 100; i++) {
        ssize_t n = pread(fd, buf, len, (off_t)off);
        if (n >= 0) return n;
        if (errno != EINTR) return -errno;
    }
    return -EINTR;
}

static ssize_t fs_pwrite(io *self, int fd, const void *buf, size_t len, uint64_t off)
{
    for (int i = 0; i < 100; i++) {
        ssize_t n = pwrite(fd, buf, len, (off_t)off);
        if (n >= 0) return n;
        if (errno != EINTR) return -errno;
    }
    return -EINTR;
}

static int fs_fsync(io *self, int fd, bool datasync)
{
    int r = datasync ? fdatasync(fd) : fsync(fd);
    return r < 0 ? -errno : 0;
}

static int fs_ftruncate(io *self, int fd, uint64_t len)
{
    return ftruncate(fd, (off_t)len) < 0 ? -errno : 0;
}

static int fs_fallocate(io *self, int fd, int mode, uint64_t off, uint64_t len)
{
    return fallocate(fd, mode, (off_t)off, (off_t)len) < 0 ? -errno : 0;
}

static int64_t fs_size(io *self, int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0) return -errno;
    return (int64_t)st.st_size;
}

static int fs_rename(io *self, const char *from, const char *to)
{
    return rename(from, to) < 0 ? -errno : 0;
}

static int fs_unlink(io *self, const char *path)
{
    return unlink(path) < 0 ? -errno : 0;
}

static int fs_mkdir(io *self, const char *path, mode_t mode)
{
    if (mkdir(path, mode) == 0) return 0;
    if (errno != EEXIST) return -errno;
    struct stat st;
    if (stat(path, &st) < 0) return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

static int fs_rmdir(io *self, const char *path)
{
    return rmdir(path) < 0 ? -errno : 0;
}

static int fs_fsync_dir(io *self, const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -errno;
    int err = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return err;
}

static int fs_exists(io *self, const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0) return 1;
    return errno == ENOENT ? 0 : -errno;
}

static int fs_list(io *self, const char *dir, char ***names)
{
    DIR *d = opendir(dir);
    if (!d) return -errno;
    char **v = NULL;
    int n = 0, cap = 0, err = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (n == cap) {
            if (cap >= (1 << 24)) {
                err = -E2BIG;
                break;
            }
            cap = cap ? cap * 2 : 16;
            char **nv = realloc(v, (size_t)cap * sizeof(char *));
            if (!nv) {
                err = -ENOMEM;
                break;
            }
            v = nv;
        }
        v[n] = strdup(e->d_name);
        if (!v[n]) {
            err = -ENOMEM;
            break;
        }
        n++;
    }
    closedir(d);
    if (err) {
        io_fs_list_free(v, n);
        return err;
    }
    *names = v;
    return n;
}

static const struct io_backend_ops ur_ops = {
    .name = "io_uring",
    .destroy = ur_destroy,
    .poll = ur_poll,
    .wakeup = ur_wakeup,
    .now_ns = ur_now_ns,
    .wall_ms = ur_wall_ms,
    .listen = ur_listen,
    .local_port = ur_local_port,
    .submit = ur_submit,
    .connect = ur_connect,
    .open = ur_open,
    .cancel = ur_cancel,
    .close_now = ur_close_now,
    .offload = ur_offload,
    .offload_finish = ur_offload_finish,
    .fs_open = fs_open,
    .fs_close = fs_close,
    .fs_pread = fs_pread,
    .fs_pwrite = fs_pwrite,
    .fs_fsync = fs_fsync,
    .fs_ftruncate = fs_ftruncate,
    .fs_fallocate = fs_fallocate,
    .fs_size = fs_size,
    .fs_rename = fs_rename,
    .fs_unlink = fs_unlink,
    .fs_mkdir = fs_mkdir,
    .fs_rmdir = fs_rmdir,
    .fs_fsync_dir = fs_fsync_dir,
    .fs_exists = fs_exists,
    .fs_list = fs_list,
};

/* Tries ring set-ups from the most to the least capable. Returns 0 or -errno of the last. */
static int ur_ring_init(struct io_ur *u, unsigned entries)
{
    static const unsigned flag_sets[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_COOP_TASKRUN,
        0,
    };
    int r = -EINVAL;
    for (size_t i = 0; i < AL_ARRAY_SIZE(flag_sets); i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof(p));
        p.flags = flag_sets[i] | IORING_SETUP_CQSIZE;
        p.cq_entries = entries * 4;
        r = io_uring_queue_init_params(entries, &u->ring, &p);
        if (r == 0) {
            u->cq_entries = p.cq_entries;
            if (i > 0) log_info("io", "io_uring: using fallback ring flags 0x%x", p.flags);
            return 0;
        }
        if (r == -EPERM || r == -ENOSYS || r == -ENOMEM) break;
    }
    return r;
}

int io_uring_create(io **out, const struct io_uring_opts *opts)
{
    *out = NULL;
    struct io_uring_opts def = {0};
    if (!opts) opts = &def;
    unsigned entries = opts->entries ? opts->entries : 1024;
    struct io_ur *u = calloc(1, sizeof(*u));
    if (!u) return -ENOMEM;
    int r = ur_ring_init(u, entries);
    if (r < 0) {
        if (r == -EPERM || r == -ENOSYS)
            log_error("io",
                      "io_uring is disabled on this system (%s): check the sysctl "
                      "kernel.io_uring_disabled (set it to 0) and, in a container, the seccomp "
                      "profile (docker: --security-opt seccomp=unconfined or a profile that "
                      "allows io_uring_setup/io_uring_enter/io_uring_register)",
                      strerror(-r));
        else if (r == -ENOMEM)
            log_error("io", "io_uring_queue_init: out of memory (locked-memory limit? raise "
                            "ulimit -l or use fewer entries)");
        else log_error("io", "io_uring_queue_init: %s", strerror(-r));
        free(u);
        return r;
    }
    u->efd = eventfd(0, EFD_CLOEXEC);
    if (u->efd < 0) {
        r = -errno;
        io_uring_queue_exit(&u->ring);
        free(u);
        return r;
    }
    pthread_mutex_init(&u->ow_mu, NULL);
    pthread_cond_init(&u->ow_work, NULL);
    pthread_cond_init(&u->ow_idle, NULL);
    /* AILURUS_IO_NO_MULTISHOT=1 forces the single-shot accept emulation (tests, old kernels). */
    const char *nm = getenv("AILURUS_IO_NO_MULTISHOT");
    u->multishot_accept = !(nm && *nm && *nm != '0');
    uint64_t seed = opts->seed;
    if (!seed) seed = ur_now_ns(NULL) ^ ((uint64_t)(uintptr_t)u << 16);
    io_base_init(&u->base, &ur_ops, seed);
    *out = &u->base;
    return 0;
}
