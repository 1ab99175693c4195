/*
 * test_reactor_io.c — the io_uring back end of io.h: O_DIRECT file ops, TCP echo over
 * 127.0.0.1 with multishot accept and partial sends, timeouts, cancel, cross-thread wakeup,
 * and the io_fs_* calls including the io_fs_write_atomic ritual. Prints echo figures.
 */
#include "test.h"

#include "base/base.h"
#include "reactor/io.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/vfs.h>
#include <stdlib.h>
#include <unistd.h>

static io *new_ring(void)
{
    io *r = NULL;
    struct io_uring_opts o = {.entries = 256, .seed = test_seed()};
    int err = io_uring_create(&r, &o);
    if (err) fprintf(stderr, "    io_uring_create: %s\n", strerror(-err));
    return r;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Polls until *flag is set or timeout_ms passes. Returns *flag. */
static int poll_until(io *r, volatile int *flag, unsigned timeout_ms)
{
    uint64_t end = mono_ns() + (uint64_t)timeout_ms * 1000000ull;
    while (!*flag && mono_ns() < end) {
        int n = io_poll(r, mono_ns() + 10000000ull);
        if (n < 0) return 0;
    }
    return *flag;
}

/* A one-shot op whose callback records the result and sets done. */
struct oneshot {
    io_op op;
    int done;
    int res;
};

static void oneshot_cb(io_op *op)
{
    struct oneshot *o = op->ctx;
    o->res = op->res;
    o->done = 1;
}

static struct oneshot *oneshot_init(struct oneshot *o)
{
    memset(o, 0, sizeof(*o));
    o->op.cb = oneshot_cb;
    o->op.ctx = o;
    return o;
}

TEST(create_and_time)
{
    io *r = new_ring();
    CHECK(r);
    uint64_t a = io_now_ns(r), b = io_now_ns(r);
    CHECK(b >= a);
    CHECK(io_wall_ms(r) > 1700000000000ll);
    CHECK(io_random(r) != io_random(r));
    CHECK(io_poll(r, 0) >= 0);
    io_destroy(r);
}

TEST(odirect_file_ops)
{
    io *r = new_ring();
    CHECK(r);
    char path[512];
    snprintf(path, sizeof(path), "%s/odirect.dat", test_tmpdir());
    struct oneshot o;
    io_open(r, &oneshot_init(&o)->op, path, O_RDWR | O_CREAT | O_DIRECT, 0644);
    CHECK(poll_until(r, &o.done, 5000));
    if (o.res == -EINVAL) { /* tmpfs and a few others refuse O_DIRECT */
        printf("    skipped: O_DIRECT unsupported on the filesystem of %s\n", test_tmpdir());
        io_destroy(r);
        return;
    }
    CHECK(o.res >= 0);
    int fd = o.res;

    io_fallocate(r, &oneshot_init(&o)->op, fd, 0, 0, 1 << 20);
    CHECK(poll_until(r, &o.done, 5000));
    CHECK_EQ(o.res, 0);
    CHECK_EQ(io_fs_size(r, fd), 1 << 20);

    uint8_t *wbuf = aligned_alloc(4096, 65536 + 4096);
    uint8_t *rbuf = aligned_alloc(4096, 65536);
    CHECK(wbuf && rbuf);
    for (int i = 0; i < 65536 + 4096; i++) wbuf[i] = (uint8_t)(i * 7 + 3);
    io_write(r, &oneshot_init(&o)->op, fd, wbuf, 65536, 8192);
    CHECK(poll_until(r, &o.done, 5000));
    CHECK_EQ(o.res, 65536);
    io_fdatasync(r, &oneshot_init(&o)->op, fd);
    CHECK(poll_until(r, &o.done, 5000));
    CHECK_EQ(o.res, 0);
    io_fsync(r, &oneshot_init(&o)->op, fd);
    CHECK(poll_until(r, &o.done, 5000));
    CHECK_EQ(o.res, 0);
    memset(rbuf, 0, 65536);
    io_read(r, &oneshot_init(&o)->op, fd, rbuf, 65536, 8192);
    CHECK(poll_until(r, &o.done, 5000));
    CHECK_EQ(o.res, 65536);
    CHECK_MEM(rbuf, wbuf, 65536);

    /* Misaligned buffer, length and offset: O_DIRECT refuses with -EINVAL (block-device
     * filesystems; tmpfs accepts O_DIRECT without alignment rules). */
    struct statfs sfs;
    if (statfs(test_tmpdir(), &sfs) == 0 && sfs.f_type == TMPFS_MAGIC) {
        printf("    tmpfs: O_DIRECT alignment is not enforced; misalignment checks skipped\n");
        goto close;
    }
    io_write(r, &oneshot_init(&o)->op, fd, wbuf + 1, 4096, 0);
    CHECK(poll_until(r, &o.done, 5000));
    CHECK_EQ(o.res, -EINVAL);
    io_write(r, &oneshot_init(&o)->op, fd, wbuf, 4096, 100);
    CHECK(poll_until(r, &o.done, 5000));
    CHECK_EQ(o.res, -EINVAL);
    io_write(r, &oneshot_init(&o)->op, fd, wbuf, 1000, 0);
    CHECK(poll_until(r, &o.done, 5000));
    CHECK_EQ(o.res, -EINVAL);

close:
    io_close(r, &oneshot_init(&o)->op, fd);
    CHECK(poll_until(r, &o.done, 5000));
    CHECK_EQ(o.res, 0);

    /* Opening a missing file reports -ENOENT through the callback. */
    snprintf(path, sizeof(path), "%s/missing/x", test_tmpdir());
    io_open(r, &oneshot_init(&o)->op, path, O_RDONLY, 0);
    CHECK(poll_until(r, &o.done, 5000));
    CHECK_EQ(o.res, -ENOENT);
    free(wbuf);
    free(rbuf);
    io_destroy(r);
}

TEST(fs_sync_calls_and_atomic_write)
{
    io *r = new_ring();
    CHECK(r);
    char dir[512], path[600], path2[600];
    snprintf(dir, sizeof(dir), "%s/fsdir", test_tmpdir());
    CHECK_EQ(io_fs_mkdir(r, dir, 0755), 0);
    CHECK_EQ(io_fs_mkdir(r, dir, 0755), 0); /* exists: still 0 */
    snprintf(path, sizeof(path), "%s/meta", dir);
    CHECK_EQ(io_fs_exists(r, path), 0);
    uint8_t *data = NULL;
    size_t len = 0;
    CHECK_EQ(io_fs_read_all(r, path, 100, &data, &len), -ENOENT);

    CHECK_EQ(io_fs_write_atomic(r, path, "hello", 5), 0);
    CHECK_EQ(io_fs_exists(r, path), 1);
    CHECK_EQ(io_fs_read_all(r, path, 100, &data, &len), 0);
    CHECK_EQ(len, 5);
    CHECK_MEM(data, "hello", 5);
    free(data);
    CHECK_EQ(io_fs_write_atomic(r, path, "second version", 14), 0);
    CHECK_EQ(io_fs_read_all(r, path, 100, &data, &len), 0);
    CHECK_EQ(len, 14);
    CHECK_MEM(data, "second version", 14);
    free(data);
    CHECK_EQ(io_fs_read_all(r, path, 10, &data, &len), -EFBIG);
    /* No temp file left behind. */
    snprintf(path2, sizeof(path2), "%s/meta.tmp", dir);
    CHECK_EQ(io_fs_exists(r, path2), 0);
    /* A failing ritual (directory in the way of the temp file) leaves the old file. */
    CHECK_EQ(io_fs_mkdir(r, path2, 0755), 0);
    CHECK(io_fs_write_atomic(r, path, "third", 5) < 0);
    CHECK_EQ(io_fs_read_all(r, path, 100, &data, &len), 0);
    CHECK_EQ(len, 14);
    free(data);
    CHECK_EQ(io_fs_rmdir(r, path2), 0);

    /* Sorted listing. */
    const char *names[] = {"zeta", "alpha", "mid", "beta"};
    for (int i = 0; i < 4; i++) {
        snprintf(path2, sizeof(path2), "%s/%s", dir, names[i]);
        int fd = io_fs_open(r, path2, O_CREAT | O_RDWR, 0644);
        CHECK(fd >= 0);
        CHECK_EQ(io_fs_pwrite(r, fd, "abc", 3, 10), 3);
        CHECK_EQ(io_fs_size(r, fd), 13);
        CHECK_EQ(io_fs_ftruncate(r, fd, 4), 0);
        CHECK_EQ(io_fs_fallocate(r, fd, 0, 0, 8192), 0);
        CHECK_EQ(io_fs_size(r, fd), 8192);
        CHECK_EQ(io_fs_fdatasync(r, fd), 0);
        CHECK_EQ(io_fs_close(r, fd), 0);
    }
    char **list = NULL;
    int n = io_fs_list(r, dir, &list);
    CHECK_EQ(n, 5);
    const char *want[] = {"alpha", "beta", "meta", "mid", "zeta"};
    for (int i = 0; i < 5; i++) CHECK(strcmp(list[i], want[i]) == 0);
    io_fs_list_free(list, n);
    snprintf(path2, sizeof(path2), "%s/alpha", dir);
    CHECK_EQ(io_fs_rename(r, path2, path), 0);
    CHECK_EQ(io_fs_unlink(r, path), 0);
    CHECK_EQ(io_fs_unlink(r, path), -ENOENT);
    CHECK_EQ(io_fs_fsync_dir(r, dir), 0);
    CHECK(io_fs_rmdir(r, dir) < 0); /* not empty */
    io_destroy(r);
}

TEST(timeout_and_cancel)
{
    io *r = new_ring();
    CHECK(r);
    struct oneshot a, b;
    uint64_t t0 = io_now_ns(r);
    io_timeout(r, &oneshot_init(&a)->op, t0 + 20000000ull);
    io_timeout(r, &oneshot_init(&b)->op, t0 + 60000000000ull);
    CHECK(poll_until(r, &a.done, 5000));
    CHECK_EQ(a.res, -ETIME);
    CHECK(io_now_ns(r) - t0 >= 20000000ull);
    CHECK(!b.done);
    io_cancel(r, &b.op);
    CHECK(poll_until(r, &b.done, 5000));
    CHECK_EQ(b.res, -ECANCELED);
    /* io_poll with a deadline returns near it when nothing happens. */
    uint64_t t1 = io_now_ns(r);
    CHECK(io_poll(r, t1 + 30000000ull) >= 0);
    CHECK(io_now_ns(r) - t1 >= 29000000ull);
    io_destroy(r);
}

struct waker {
    io *target;
    int delay_ms;
};

static void *waker_main(void *arg)
{
    struct waker *w = arg;
    usleep((useconds_t)w->delay_ms * 1000);
    io_wakeup(w->target);
    return NULL;
}

TEST(wakeup_from_other_thread)
{
    io *r = new_ring();
    CHECK(r);
    for (int i = 0; i < 3; i++) {
        struct waker w = {r, 30};
        pthread_t th;
        uint64_t t0 = io_now_ns(r);
        CHECK_EQ(pthread_create(&th, NULL, waker_main, &w), 0);
        io_poll(r, UINT64_MAX); /* returns only because of the wakeup */
        uint64_t dt = io_now_ns(r) - t0;
        pthread_join(th, NULL);
        CHECK(dt < 5000000000ull);
    }
    /* Many wakeups before a poll coalesce; the poll after them does not block. */
    for (int i = 0; i < 100; i++) io_wakeup(r);
    uint64_t t0 = io_now_ns(r);
    io_poll(r, t0 + 2000000000ull);
    CHECK(io_now_ns(r) - t0 < 1000000000ull);
    io_destroy(r);
}

/* ---- TCP echo ---- */

#define ECHO_CLIENTS 4
#define ECHO_BUF     (64 * 1024)

struct echo_srv_conn {
    io *r;
    io_op rop, sop;
    int fd;
    size_t have, sent;
    int open;
    uint8_t buf[ECHO_BUF];
};

struct echo_client {
    io *r;
    io_op cop, sop, rop;
    int fd, id;
    uint64_t total, spos, rpos, chunks;
    uint64_t chunk_len, chunk_off; /* the chunk in sbuf being sent, and how much went */
    uint64_t partial; /* sends that took less than asked */
    uint64_t rng;
    int failed, done;
    uint8_t sbuf[ECHO_BUF], rbuf[ECHO_BUF];
};

static struct echo_srv_conn srv_conns[ECHO_CLIENTS * 2];
static int srv_nconns, accept_more_seen, accept_final;

static uint8_t pattern(int id, uint64_t i)
{
    return (uint8_t)((i * 131u) ^ (i >> 9) ^ (uint64_t)(id * 17));
}

static void srv_recv_cb(io_op *op);

static void srv_send_cb(io_op *op)
{
    struct echo_srv_conn *c = op->ctx;
    if (op->res <= 0) {
        c->open = 0;
        return;
    }
    c->sent += (size_t)op->res;
    if (c->sent < c->have) io_send(c->r, &c->sop, c->fd, c->buf + c->sent, c->have - c->sent);
    else io_recv(c->r, &c->rop, c->fd, c->buf, sizeof(c->buf));
}

static void srv_recv_cb(io_op *op)
{
    struct echo_srv_conn *c = op->ctx;
    if (op->res <= 0) {
        io_close_now(c->r, c->fd);
        c->open = 0;
        return;
    }
    c->have = (size_t)op->res;
    c->sent = 0;
    io_send(c->r, &c->sop, c->fd, c->buf, c->have);
}

static void srv_accept_cb(io_op *op)
{
    io *r = op->ctx;
    if (op->flags & IO_F_MORE) accept_more_seen++;
    else accept_final++;
    if (op->res < 0) return;
    if (srv_nconns >= (int)AL_ARRAY_SIZE(srv_conns)) {
        io_close_now(r, op->res);
        return;
    }
    struct echo_srv_conn *c = &srv_conns[srv_nconns++];
    c->r = r;
    c->fd = op->res;
    c->open = 1;
    c->rop = (io_op){.cb = srv_recv_cb, .ctx = c};
    c->sop = (io_op){.cb = srv_send_cb, .ctx = c};
    io_recv(r, &c->rop, c->fd, c->buf, sizeof(c->buf));
}

static void cli_send_next(struct echo_client *c)
{
    if (c->spos >= c->total) return;
    /* Random chunk sizes from 1 byte to the whole buffer: many small and large messages. */
    c->rng = c->rng * 6364136223846793005ull + 1442695040888963407ull;
    uint64_t n = 1 + (c->rng >> 33) % ECHO_BUF;
    if ((c->rng >> 20) % 4 == 0) n = 1 + (c->rng >> 40) % 200;
    if (n > c->total - c->spos) n = c->total - c->spos;
    for (uint64_t i = 0; i < n; i++) c->sbuf[i] = pattern(c->id, c->spos + i);
    c->chunk_len = n;
    c->chunk_off = 0;
    c->chunks++;
    io_send(c->r, &c->sop, c->fd, c->sbuf, n);
}

static void cli_send_cb(io_op *op)
{
    struct echo_client *c = op->ctx;
    if (op->res <= 0) {
        c->failed = 1;
        return;
    }
    uint64_t sent = (uint64_t)op->res;
    c->spos += sent;
    c->chunk_off += sent;
    if (c->chunk_off < c->chunk_len) { /* partial send: the rest */
        c->partial++;
        io_send(c->r, &c->sop, c->fd, c->sbuf + c->chunk_off, c->chunk_len - c->chunk_off);
        return;
    }
    cli_send_next(c);
}

static void cli_recv_cb(io_op *op)
{
    struct echo_client *c = op->ctx;
    if (op->res <= 0) {
        c->failed = 1;
        return;
    }
    for (int i = 0; i < op->res; i++)
        if (c->rbuf[i] != pattern(c->id, c->rpos + (uint64_t)i)) {
            c->failed = 2;
            return;
        }
    c->rpos += (uint64_t)op->res;
    if (c->rpos >= c->total) {
        c->done = 1;
        return;
    }
    io_recv(c->r, &c->rop, c->fd, c->rbuf, sizeof(c->rbuf));
}

static void cli_connect_cb(io_op *op)
{
    struct echo_client *c = op->ctx;
    if (op->res < 0) {
        c->failed = 3;
        return;
    }
    c->fd = op->res;
    /* A small send buffer on half the clients: sends come back short (partial sends). */
    if (c->id % 2 == 0) {
        int sz = 4096;
        setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    }
    io_recv(c->r, &c->rop, c->fd, c->rbuf, sizeof(c->rbuf));
    cli_send_next(c);
}

static void run_echo(bool multishot)
{
    if (!multishot) setenv("AILURUS_IO_NO_MULTISHOT", "1", 1);
    io *r = new_ring();
    unsetenv("AILURUS_IO_NO_MULTISHOT");
    CHECK(r);
    int lfd = io_listen(r, "127.0.0.1", 0, false, 64);
    CHECK(lfd >= 0);
    int port = io_local_port(r, lfd);
    CHECK(port > 0);
    srv_nconns = accept_more_seen = accept_final = 0;
    io_op aop = {.cb = srv_accept_cb, .ctx = r};
    io_accept(r, &aop, lfd);

    static struct echo_client cl[ECHO_CLIENTS];
    uint64_t seed = test_seed();
    for (int i = 0; i < ECHO_CLIENTS; i++) {
        struct echo_client *c = &cl[i];
        memset(c, 0, sizeof(*c));
        c->r = r;
        c->id = i;
        c->fd = -1;
        c->total = 8u << 20; /* 8 MiB each way per client */
        c->rng = seed + (uint64_t)i;
        c->cop = (io_op){.cb = cli_connect_cb, .ctx = c};
        c->sop = (io_op){.cb = cli_send_cb, .ctx = c};
        c->rop = (io_op){.cb = cli_recv_cb, .ctx = c};
        io_connect(r, &c->cop, "127.0.0.1", (uint16_t)port);
    }
    uint64_t t0 = mono_ns(), end = t0 + 30000000000ull;
    int all = 0;
    while (!all && mono_ns() < end) {
        CHECK(io_poll(r, mono_ns() + 10000000ull) >= 0);
        all = 1;
        for (int i = 0; i < ECHO_CLIENTS; i++) {
            CHECK_EQ(cl[i].failed, 0);
            if (!cl[i].done) all = 0;
        }
    }
    double dt = (double)(mono_ns() - t0) / 1e9;
    CHECK(all);
    CHECK_EQ(srv_nconns, ECHO_CLIENTS);
    CHECK(accept_more_seen >= ECHO_CLIENTS); /* the accept stayed armed */
    uint64_t bytes = 0, chunks = 0, partial = 0;
    for (int i = 0; i < ECHO_CLIENTS; i++)
        bytes += cl[i].total, chunks += cl[i].chunks, partial += cl[i].partial;
    printf("    tcp echo (%s accept): %d clients, %" PRIu64 " messages (%" PRIu64 " partial "
           "sends), %.1f MiB echoed in %.2fs: %.0f MiB/s, %.0f msgs/s\n",
           multishot ? "multishot" : "single-shot", ECHO_CLIENTS, chunks, partial,
           (double)bytes / 1048576.0, dt,
           (double)bytes / 1048576.0 / dt, (double)chunks / dt);
    /* Partial sends are kernel-timing dependent: counted, not required. */

    /* Close the clients: the server sees EOF. Cancel the accept: final callback. */
    for (int i = 0; i < ECHO_CLIENTS; i++) io_close_now(r, cl[i].fd);
    io_cancel(r, &aop);
    volatile int fin = 0;
    for (int k = 0; k < 500 && !fin; k++) {
        io_poll(r, mono_ns() + 10000000ull);
        fin = accept_final > 0;
        for (int i = 0; i < srv_nconns; i++)
            if (srv_conns[i].open) fin = 0;
    }
    CHECK(fin);
    io_close_now(r, lfd);
    io_destroy(r);
}

TEST(tcp_echo_multishot_accept)
{
    run_echo(true);
}

TEST(tcp_echo_single_shot_accept_emulation)
{
    run_echo(false);
}

/* Far more ops than SQ entries before a poll: the back end submits to make room. */
TEST(sq_full_submits_and_retries)
{
    io *r = NULL;
    struct io_uring_opts o = {.entries = 8, .seed = 1};
    CHECK_EQ(io_uring_create(&r, &o), 0);
    enum { N = 300 };
    static struct oneshot t[N];
    uint64_t now = io_now_ns(r);
    for (int i = 0; i < N; i++) io_timeout(r, &oneshot_init(&t[i])->op, now + 1000000ull);
    int done = 0;
    uint64_t end = mono_ns() + 10000000000ull;
    while (done < N && mono_ns() < end) {
        CHECK(io_poll(r, mono_ns() + 10000000ull) >= 0);
        done = 0;
        for (int i = 0; i < N; i++) done += t[i].done;
    }
    CHECK_EQ(done, N);
    for (int i = 0; i < N; i++) CHECK_EQ(t[i].res, -ETIME);
    io_destroy(r);
}

/* A pending recv is cancelled; an async close completes. */
TEST(cancel_recv_and_async_close)
{
    io *r = new_ring();
    CHECK(r);
    int lfd = io_listen(r, "127.0.0.1", 0, false, 4);
    CHECK(lfd >= 0);
    struct oneshot c, a, rv, cl;
    io_accept(r, &oneshot_init(&a)->op, lfd);
    io_connect(r, &oneshot_init(&c)->op, "127.0.0.1", (uint16_t)io_local_port(r, lfd));
    CHECK(poll_until(r, &c.done, 5000));
    CHECK(c.res >= 0);
    CHECK(poll_until(r, &a.done, 5000));
    CHECK(a.res >= 0);
    CHECK(a.op.flags & IO_F_MORE);
    uint8_t buf[16];
    io_recv(r, &oneshot_init(&rv)->op, c.res, buf, sizeof(buf));
    CHECK_EQ(io_poll(r, io_now_ns(r) + 20000000ull), 0); /* nothing arrives */
    io_cancel(r, &rv.op);
    CHECK(poll_until(r, &rv.done, 5000));
    CHECK_EQ(rv.res, -ECANCELED);
    io_close(r, &oneshot_init(&cl)->op, c.res);
    CHECK(poll_until(r, &cl.done, 5000));
    CHECK_EQ(cl.res, 0);
    a.done = 0;
    io_cancel(r, &a.op);
    CHECK(poll_until(r, &a.done, 5000));
    CHECK_EQ(a.res, -ECANCELED);
    CHECK(!(a.op.flags & IO_F_MORE));
    io_close_now(r, lfd);
    io_destroy(r);
}

/* Ping-pong: one 64-byte message at a time, echoed back; prints the round-trip time. */
struct pingpong {
    io *r;
    io_op cop, sop, rop;
    int fd, failed;
    uint64_t rounds, target, got;
    uint8_t msg[64], back[64];
};

static void pp_send(struct pingpong *p)
{
    memset(p->msg, (int)(p->rounds & 0xff), sizeof(p->msg));
    p->got = 0;
    io_send(p->r, &p->sop, p->fd, p->msg, sizeof(p->msg));
}

static void pp_send_cb(io_op *op)
{
    struct pingpong *p = op->ctx;
    if (op->res != (int)sizeof(p->msg)) p->failed = 1; /* 64 bytes always fit */
}

static void pp_recv_cb(io_op *op)
{
    struct pingpong *p = op->ctx;
    if (op->res <= 0) {
        p->failed = 2;
        return;
    }
    for (int i = 0; i < op->res; i++)
        if (p->back[p->got + (uint64_t)i] != (uint8_t)(p->rounds & 0xff)) p->failed = 3;
    p->got += (uint64_t)op->res;
    if (p->got < sizeof(p->msg)) {
        io_recv(p->r, &p->rop, p->fd, p->back + p->got, sizeof(p->back) - p->got);
        return;
    }
    p->rounds++;
    if (p->rounds >= p->target) return;
    io_recv(p->r, &p->rop, p->fd, p->back, sizeof(p->back));
    pp_send(p);
}

static void pp_connect_cb(io_op *op)
{
    struct pingpong *p = op->ctx;
    if (op->res < 0) {
        p->failed = 4;
        return;
    }
    p->fd = op->res;
    io_recv(p->r, &p->rop, p->fd, p->back, sizeof(p->back));
    pp_send(p);
}

TEST(tcp_pingpong_latency)
{
    io *r = new_ring();
    CHECK(r);
    int lfd = io_listen(r, "127.0.0.1", 0, false, 16);
    CHECK(lfd >= 0);
    srv_nconns = accept_more_seen = accept_final = 0;
    io_op aop = {.cb = srv_accept_cb, .ctx = r};
    io_accept(r, &aop, lfd);
    static struct pingpong p;
    memset(&p, 0, sizeof(p));
    p.r = r;
    p.fd = -1;
    p.target = 20000;
    p.cop = (io_op){.cb = pp_connect_cb, .ctx = &p};
    p.sop = (io_op){.cb = pp_send_cb, .ctx = &p};
    p.rop = (io_op){.cb = pp_recv_cb, .ctx = &p};
    io_connect(r, &p.cop, "127.0.0.1", (uint16_t)io_local_port(r, lfd));
    uint64_t t0 = mono_ns(), end = t0 + 20000000000ull;
    while (p.rounds < p.target && !p.failed && mono_ns() < end)
        CHECK(io_poll(r, mono_ns() + 10000000ull) >= 0);
    double dt = (double)(mono_ns() - t0) / 1e9;
    CHECK_EQ(p.failed, 0);
    CHECK_EQ(p.rounds, p.target);
    printf("    tcp ping-pong (client and server on one ring): %" PRIu64 " round trips of 64 B "
           "in %.2fs = %.1f us/round trip\n", p.rounds, dt, dt * 1e6 / (double)p.rounds);
    io_close_now(r, p.fd);
    io_cancel(r, &aop);
    for (int k = 0; k < 200 && (!accept_final || srv_conns[0].open); k++)
        io_poll(r, mono_ns() + 10000000ull);
    CHECK(accept_final > 0);
    io_close_now(r, lfd);
    io_destroy(r);
}

TEST(connect_refused)
{
    io *r = new_ring();
    CHECK(r);
    /* Find a free port by binding and closing. */
    int lfd = io_listen(r, "127.0.0.1", 0, false, 1);
    CHECK(lfd >= 0);
    int port = io_local_port(r, lfd);
    io_close_now(r, lfd);
    struct oneshot o;
    io_connect(r, &oneshot_init(&o)->op, "127.0.0.1", (uint16_t)port);
    CHECK(poll_until(r, &o.done, 5000));
    CHECK_EQ(o.res, -ECONNREFUSED);
    io_connect(r, &oneshot_init(&o)->op, "not-an-address", 1);
    CHECK(poll_until(r, &o.done, 5000));
    CHECK_EQ(o.res, -EINVAL);
    io_destroy(r);
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}

/* io_sendmsg over 127.0.0.1: 8 MiB in 600 iovecs of random sizes (empty ones included) sent
 * by gathered sends advanced with io_iov_advance across short writes, received on the same
 * ring and compared byte for byte. */
struct gather_rx {
    io *r;
    io_op rop;
    int fd, err, eof;
    uint8_t *buf;
    size_t cap, got;
};

static void gather_rx_cb(io_op *op)
{
    struct gather_rx *g = op->ctx;
    if (op->res <= 0) {
        if (op->res < 0) g->err = op->res;
        else g->eof = 1;
        return;
    }
    g->got += (size_t)op->res;
    if (g->got >= g->cap) return;
    io_recv(g->r, &g->rop, g->fd, g->buf + g->got, AL_MIN(g->cap - g->got, (size_t)1 << 20));
}

TEST(sendmsg_gathered_loopback)
{
    io *r = new_ring();
    CHECK(r);
    int lfd = io_listen(r, "127.0.0.1", 0, false, 4);
    CHECK(lfd >= 0);
    struct oneshot c, a;
    io_accept(r, &oneshot_init(&a)->op, lfd);
    io_connect(r, &oneshot_init(&c)->op, "127.0.0.1", (uint16_t)io_local_port(r, lfd));
    CHECK(poll_until(r, &c.done, 5000));
    CHECK(c.res >= 0);
    CHECK(poll_until(r, &a.done, 5000));
    CHECK(a.res >= 0);
    enum { NV = 600 };
    size_t cap = 8u << 20;
    uint8_t *src = malloc(cap);
    struct gather_rx g = {.r = r, .fd = a.res, .buf = malloc(cap)};
    CHECK(src && g.buf);
    struct iovec iov[NV];
    uint64_t rng = test_seed() | 1;
    size_t total = 0;
    for (int i = 0; i < NV; i++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        size_t len = i % 9 == 4 ? 0 : (size_t)(rng % 27000);
        if (total + len > cap) len = 0;
        for (size_t j = 0; j < len; j++) src[total + j] = (uint8_t)((rng >> (j % 53)) ^ j);
        iov[i] = (struct iovec){.iov_base = src + total, .iov_len = len};
        total += len;
    }
    g.cap = total;
    g.rop = (io_op){.cb = gather_rx_cb, .ctx = &g};
    io_recv(r, &g.rop, g.fd, g.buf, AL_MIN(total, (size_t)1 << 20));
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = NV};
    size_t left = total;
    int sends = 0;
    uint64_t end = mono_ns() + 30000000000ull;
    for (int guard = 0; left > 0 && guard < 100000 && mono_ns() < end; guard++) {
        struct oneshot o;
        io_sendmsg(r, &oneshot_init(&o)->op, c.res, &msg);
        CHECK(poll_until(r, &o.done, 10000));
        CHECK(o.res > 0);
        sends++;
        size_t before = left;
        left = io_iov_advance(&msg, (size_t)o.res);
        CHECK_EQ(before - left, (size_t)o.res);
    }
    CHECK_EQ(left, 0);
    for (int k = 0; k < 3000 && g.got < total && !g.err && mono_ns() < end; k++)
        io_poll(r, mono_ns() + 10000000ull);
    CHECK_EQ(g.err, 0);
    CHECK_EQ(g.got, total);
    CHECK(memcmp(g.buf, src, total) == 0);
    printf("    sendmsg: %zu bytes in %d iovecs went out in %d gathered sends\n", total, NV,
           sends);
    io_close_now(r, c.res);
    io_close_now(r, a.res);
    io_cancel(r, &a.op);
    for (int k = 0; k < 100 && a.op.pending; k++) io_poll(r, mono_ns() + 10000000ull);
    io_close_now(r, lfd);
    free(src);
    free(g.buf);
    io_destroy(r);
}

/* io_offload: jobs run off the ring's thread, in order, their callbacks on the ring's thread
 * from io_poll; io_offload_finish takes a queued job back (runs it inline, no callback) or
 * waits for a running one. */
struct ojob {
    pthread_t ran_on;
    int order;
    unsigned sleep_ms;
    volatile int *gate; /* if set: spin (bounded) until *gate */
};
static int g_ojob_seq;

static int ojob_fn(io *r, void *arg)
{
    struct ojob *j = arg;
    j->ran_on = pthread_self();
    for (int i = 0; j->gate && !__atomic_load_n(j->gate, __ATOMIC_SEQ_CST) && i < 5000; i++)
        usleep(1000);
    if (j->sleep_ms) usleep(j->sleep_ms * 1000u);
    j->order = __atomic_add_fetch(&g_ojob_seq, 1, __ATOMIC_SEQ_CST);
    return 40 + j->order;
}

TEST(offload_jobs_run_off_thread_in_order)
{
    io *r = new_ring();
    CHECK(r);
    if (!r) return;
    g_ojob_seq = 0;
    enum { N = 8 };
    struct ojob jobs[N];
    struct oneshot os[N];
    for (int i = 0; i < N; i++) {
        jobs[i] = (struct ojob){.sleep_ms = i == 0 ? 20 : 0};
        io_offload(r, &oneshot_init(&os[i])->op, ojob_fn, &jobs[i]);
    }
    CHECK_EQ(os[0].done, 0); /* never inline */
    CHECK(poll_until(r, &os[N - 1].done, 10000));
    for (int i = 0; i < N; i++) {
        CHECK(os[i].done);
        CHECK_EQ(jobs[i].order, i + 1);
        CHECK_EQ(os[i].res, 40 + i + 1);
        CHECK(!pthread_equal(jobs[i].ran_on, pthread_self()));
    }

    /* finish: job A holds the worker (gated), job B is queued behind it. */
    volatile int gate = 0;
    struct ojob a = {.gate = &gate}, b = {0};
    struct oneshot oa, ob;
    io_offload(r, &oneshot_init(&oa)->op, ojob_fn, &a);
    io_offload(r, &oneshot_init(&ob)->op, ojob_fn, &b);
    usleep(20000);
    int rb = io_offload_finish(r, &ob.op); /* queued: runs here, now */
    CHECK(pthread_equal(b.ran_on, pthread_self()));
    CHECK_EQ(rb, 40 + b.order);
    CHECK_EQ(ob.op.pending, 0);
    __atomic_store_n(&gate, 1, __ATOMIC_SEQ_CST);
    int ra = io_offload_finish(r, &oa.op); /* running (or done): waited for */
    CHECK_EQ(ra, 40 + a.order);
    CHECK(!pthread_equal(a.ran_on, pthread_self()));
    for (int k = 0; k < 20; k++) io_poll(r, mono_ns() + 1000000ull);
    CHECK_EQ(oa.done, 0); /* finished ops never call back */
    CHECK_EQ(ob.done, 0);

    /* finish after completion, before io_poll ran the callback. */
    struct ojob c = {0};
    struct oneshot oc;
    io_offload(r, &oneshot_init(&oc)->op, ojob_fn, &c);
    for (int k = 0; k < 5000 && !c.order; k++) usleep(1000);
    usleep(2000);
    CHECK_EQ(io_offload_finish(r, &oc.op), 40 + c.order);
    for (int k = 0; k < 20; k++) io_poll(r, mono_ns() + 1000000ull);
    CHECK_EQ(oc.done, 0);

    /* destroy with a job queued: it still runs (the worker drains before it exits). */
    struct ojob d = {.sleep_ms = 5};
    struct oneshot od;
    io_offload(r, &oneshot_init(&od)->op, ojob_fn, &d);
    io_destroy(r);
    CHECK(d.order > 0);
}

/* A finished job's callback may take back (io_offload_finish) a later finished job and free
 * its op, as storage_log_close/truncation do for a log's jobs: that op's callback must not run
 * afterwards. (io_poll used to take the whole done list first and ran it anyway: a use after
 * free under ASan, heap corruption otherwise.) */
struct ofin_ctx {
    io *r;
    struct oneshot *heap_b; /* finished and freed by a's callback */
    struct oneshot *c;      /* finished (not freed) by a's callback */
    int a_done, rb, rc;
};
static struct ofin_ctx g_ofin;

static void ofin_a_cb(io_op *op)
{
    g_ofin.a_done = 1;
    g_ofin.rb = io_offload_finish(g_ofin.r, &g_ofin.heap_b->op);
    free(g_ofin.heap_b);
    g_ofin.heap_b = NULL;
    g_ofin.rc = io_offload_finish(g_ofin.r, &g_ofin.c->op);
}

TEST(offload_callback_finishes_a_later_done_job)
{
    io *r = new_ring();
    CHECK(r);
    if (!r) return;
    g_ojob_seq = 0;
    struct ojob a = {0}, b = {0}, c = {0};
    struct oneshot oa, oc;
    struct oneshot *ob = calloc(1, sizeof(*ob));
    CHECK(ob);
    if (!ob) return;
    g_ofin = (struct ofin_ctx){.r = r, .heap_b = ob, .c = &oc};
    oneshot_init(&oa)->op.cb = ofin_a_cb;
    io_offload(r, &oa.op, ojob_fn, &a);
    io_offload(r, &oneshot_init(ob)->op, ojob_fn, &b);
    io_offload(r, &oneshot_init(&oc)->op, ojob_fn, &c);
    /* All three run and reach the done list before the first io_poll. */
    for (int k = 0; k < 5000 && !__atomic_load_n(&c.order, __ATOMIC_SEQ_CST); k++) usleep(1000);
    usleep(20000);
    for (int k = 0; k < 20; k++) io_poll(r, mono_ns() + 1000000ull);
    CHECK_EQ(g_ofin.a_done, 1);
    CHECK_EQ(g_ofin.rb, 40 + b.order);
    CHECK_EQ(g_ofin.rc, 40 + c.order);
    CHECK_EQ(oc.done, 0); /* finished: no callback */
    CHECK_EQ(oc.op.pending, 0);
    /* The ring still works: a new job completes through its callback. */
    struct ojob d = {0};
    struct oneshot od;
    io_offload(r, &oneshot_init(&od)->op, ojob_fn, &d);
    CHECK(poll_until(r, &od.done, 10000));
    CHECK_EQ(od.res, 40 + d.order);
    io_destroy(r);
}
