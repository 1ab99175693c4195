/*
 * http_server.c — the HTTP server's I/O half (see http.h): a listener with a multishot
 * accept, one recv and at most one send in flight per connection (output handed over by
 * http_conn_take_output, so a send buffer never moves under the kernel), and one periodic
 * timer that enforces the idle and request timeouts. Everything runs on the owning shard's io.
 *
 * Lifetime: a connection is freed only from an op completion, once it is closing and none of
 * its ops is in flight; the server is freed the same way after http_server_stop.
 */
#include "http/http.h"
#include "base/log.h"

#include <stdlib.h>

#define RECV_BYTES 16384
#define TICK_NS (200ull * 1000 * 1000)

struct hconn {
    struct http_server *srv;
    struct hconn *prev, *next;
    int fd;
    http_conn *hc;
    io_op recv_op, send_op;
    bool recv_pending, send_pending, closing;
    char *sbuf; /* output being sent */
    size_t slen, soff;
    uint64_t last_ns;      /* last byte in or out */
    uint64_t req_start_ns; /* when the current partial request began (0: none) */
    char rbuf[RECV_BYTES];
};

struct http_server {
    io *io;
    int lfd;
    uint16_t port;
    http_router router;
    struct http_limits lim;
    io_op accept_op, timer_op;
    bool accept_pending, timer_pending, stopping;
    bool in_stop; /* inside http_server_stop: do not free yet */
    bool accept_retry; /* accept failed (EMFILE, ...): re-arm from the next tick, not at once */
    struct hconn *conns;
    uint32_t nconns;
    void (*done)(void *arg);
    void *done_arg;
};

static void conn_pump(struct hconn *c);
static void server_maybe_free(struct http_server *s);

/* ---- connections ---- */

static void conn_unlink_free(struct hconn *c)
{
    struct http_server *s = c->srv;
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->nconns--;
    http_conn_free(c->hc);
    free(c->sbuf);
    free(c);
}

/* Starts closing c: cancels its ops; the last completion frees it. */
static void conn_close(struct hconn *c)
{
    if (!c->closing) {
        c->closing = true;
        if (c->recv_pending) io_cancel(c->srv->io, &c->recv_op);
        if (c->send_pending) io_cancel(c->srv->io, &c->send_op);
    }
    if (c->recv_pending || c->send_pending) return;
    struct http_server *s = c->srv;
    if (c->fd >= 0) io_close_now(s->io, c->fd);
    c->fd = -1;
    conn_unlink_free(c);
    server_maybe_free(s);
}

static void on_send(io_op *op)
{
    struct hconn *c = op->ctx;
    c->send_pending = false;
    if (c->closing || op->res <= 0) {
        conn_close(c);
        return;
    }
    c->last_ns = io_now_ns(c->srv->io);
    c->soff += (size_t)op->res;
    if (c->soff >= c->slen) {
        free(c->sbuf);
        c->sbuf = NULL;
        c->slen = c->soff = 0;
    }
    conn_pump(c);
}

static void on_recv(io_op *op)
{
    struct hconn *c = op->ctx;
    c->recv_pending = false;
    if (c->closing || op->res <= 0) {
        conn_close(c);
        return;
    }
    uint64_t now = io_now_ns(c->srv->io);
    c->last_ns = now;
    if (!http_conn_mid_request(c->hc)) c->req_start_ns = now;
    http_conn_feed(c->hc, c->rbuf, (size_t)op->res);
    if (!http_conn_mid_request(c->hc)) c->req_start_ns = 0;
    conn_pump(c);
}

/* Sends queued output, reads more if wanted, closes when the exchange is over. Never frees c
 * unless no op is in flight (safe to call from completions and from notify). */
static void conn_pump(struct hconn *c)
{
    if (c->closing) return;
    io *ring = c->srv->io;
    if (!c->send_pending && !c->sbuf) c->sbuf = http_conn_take_output(c->hc, &c->slen);
    if (!c->send_pending && c->sbuf) {
        c->send_pending = true;
        io_send(ring, &c->send_op, c->fd, c->sbuf + c->soff, c->slen - c->soff);
        return; /* read again once the answer is out: bounds what a client can queue */
    }
    if (!c->send_pending && http_conn_done(c->hc)) {
        conn_close(c);
        return;
    }
    if (!c->recv_pending && http_conn_can_read(c->hc)) {
        c->recv_pending = true;
        io_recv(ring, &c->recv_op, c->fd, c->rbuf, sizeof(c->rbuf));
    }
}

static void on_output(http_conn *hc, void *arg)
{
    conn_pump(arg);
}

static void conn_open(struct http_server *s, int fd)
{
    struct hconn *c = calloc(1, sizeof(*c));
    if (c) c->hc = http_conn_new(&s->router, &s->lim, on_output, c);
    if (!c || !c->hc) {
        free(c);
        io_close_now(s->io, fd);
        return;
    }
    c->srv = s;
    c->fd = fd;
    c->recv_op = (io_op){.cb = on_recv, .ctx = c};
    c->send_op = (io_op){.cb = on_send, .ctx = c};
    c->last_ns = io_now_ns(s->io);
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    conn_pump(c);
}

/* ---- listener and timer ---- */

static void on_accept(io_op *op)
{
    struct http_server *s = op->ctx;
    if (!(op->flags & IO_F_MORE)) s->accept_pending = false;
    if (op->res >= 0) {
        if (s->stopping || s->nconns >= s->lim.max_conns) {
            io_close_now(s->io, op->res);
            if (!s->stopping) log_warn("http", "connection refused: %u open", s->nconns);
        } else {
            conn_open(s, op->res);
        }
    } else if (op->res != -ECANCELED && !s->stopping) {
        log_warn("http", "accept: %s (retrying in %llu ms)", al_strerror(op->res),
                 (unsigned long long)(TICK_NS / 1000000));
        if (!s->accept_pending) s->accept_retry = true;
    }
    if (!s->accept_pending && !s->stopping && !s->accept_retry) {
        s->accept_pending = true;
        io_accept(s->io, &s->accept_op, s->lfd);
    }
    server_maybe_free(s);
}

static void on_tick(io_op *op)
{
    struct http_server *s = op->ctx;
    s->timer_pending = false;
    if (s->stopping) {
        server_maybe_free(s);
        return;
    }
    uint64_t now = io_now_ns(s->io);
    if (s->accept_retry && !s->accept_pending) {
        s->accept_retry = false;
        s->accept_pending = true;
        io_accept(s->io, &s->accept_op, s->lfd);
    }
    uint64_t idle = (uint64_t)s->lim.idle_timeout_ms * 1000000ull;
    uint64_t reqt = (uint64_t)s->lim.request_timeout_ms * 1000000ull;
    struct hconn *c = s->conns;
    for (uint32_t i = 0; c && i < s->nconns + 1; i++) {
        struct hconn *next = c->next;
        if (!c->closing) {
            bool mid = http_conn_mid_request(c->hc);
            if (mid && c->req_start_ns && now - c->req_start_ns > reqt) {
                http_conn_fail(c->hc, 408, "request not completed in time");
                conn_pump(c);
            } else if (!mid && http_conn_pending(c->hc) == 0 && !c->send_pending &&
                       now - c->last_ns > idle) {
                conn_close(c);
            }
        }
        c = next;
    }
    s->timer_pending = true;
    io_timeout(s->io, &s->timer_op, now + TICK_NS);
}

int http_server_start(io *ring, const struct http_server_opts *opts, http_server **out)
{
    *out = NULL;
    struct http_server *s = calloc(1, sizeof(*s));
    if (!s) return -ENOMEM;
    s->io = ring;
    s->router = opts->router;
    s->lim = opts->limits;
    http_limits_defaults(&s->lim);
    int fd = io_listen(ring, opts->host, opts->port, opts->reuseport, 128);
    if (fd < 0) {
        free(s);
        return fd;
    }
    int port = io_local_port(ring, fd);
    if (port < 0) {
        io_close_now(ring, fd);
        free(s);
        return port;
    }
    s->lfd = fd;
    s->port = (uint16_t)port;
    s->accept_op = (io_op){.cb = on_accept, .ctx = s};
    s->timer_op = (io_op){.cb = on_tick, .ctx = s};
    s->accept_pending = true;
    io_accept(ring, &s->accept_op, fd);
    s->timer_pending = true;
    io_timeout(ring, &s->timer_op, io_now_ns(ring) + TICK_NS);
    *out = s;
    return 0;
}

uint16_t http_server_port(const http_server *s)
{
    return s->port;
}

uint32_t http_server_conns(const http_server *s)
{
    return s->nconns;
}

static void server_maybe_free(struct http_server *s)
{
    if (!s->stopping || s->in_stop || s->accept_pending || s->timer_pending || s->nconns) return;
    if (s->lfd >= 0) io_close_now(s->io, s->lfd);
    void (*done)(void *) = s->done;
    void *arg = s->done_arg;
    free(s);
    if (done) done(arg);
}

void http_server_stop(http_server *s, void (*done)(void *arg), void *arg)
{
    AL_ASSERT(!s->stopping);
    s->stopping = true;
    s->done = done;
    s->done_arg = arg;
    if (s->accept_pending) io_cancel(s->io, &s->accept_op);
    if (s->timer_pending) io_cancel(s->io, &s->timer_op);
    s->in_stop = true;
    struct hconn *c = s->conns;
    for (uint32_t i = 0; c && i < s->lim.max_conns + 1; i++) {
        struct hconn *next = c->next;
        conn_close(c); /* may free c, never s (in_stop) */
        c = next;
    }
    s->in_stop = false;
    server_maybe_free(s);
}
