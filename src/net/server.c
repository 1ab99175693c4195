/*
 * server.c — listeners, connections and the in-order response pipeline of the Kafka front end.
 * See server.h for the behaviour; the notes here are about the mechanics.
 *
 * One driver, conn_pump(), does everything a connection can make progress on: cut and dispatch
 * the frames already buffered (while the back-pressure limits allow), send the head of the
 * pipeline if it is answered, post a receive if more bytes are wanted. Every event (receive,
 * send, a deferred completion, the shard budget freeing up) ends in conn_pump(). It is not
 * re-entered for one connection: a nested call (a handler completing an earlier request of the
 * same connection) only sets pump_again, and the outer call loops.
 *
 * Lifetime: a connection is freed when it is closing and neither its receive nor its send op is
 * pending (each is cancelled at close and completes with -ECANCELED or its result).
 */
#include "net/server.h"

#include "net/frame.h"

#include "base/log.h"
#include "config/config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#define RBUF_MIN      4096u        /* receive buffer to start with and shrink back to */
#define RBUF_SHRINK   (64u * 1024) /* shrink a buffer larger than this once it is mostly empty */
#define WBUF_CAP      (64u * 1024) /* gather buffer for pipelined small responses */
#define WBUF_DIRECT   (16u * 1024) /* a response this large is sent from its own buffer */
#define FRAME_STEAL_MIN (32u * 1024) /* a frame this large may take the receive buffer along */
#define FRAME_KEEP_MAX  (256u * 1024) /* largest fresh buffer after that */
#define FRAME_PREALLOC_MAX ((1u << 20) + (64u << 10)) /* frames this size: buffer grown at once */
#define PUMP_FRAMES   1024         /* frames cut per pump round before others get a turn */
#define PUMP_ROUNDS   (1 << 20)    /* bound on pump rounds (each consumes frames or ends) */
#define REJECT_LOG_NS 1000000000ull

struct net_conn {
    net_shard *sh;
    net_conn *prev, *next;   /* shard list */
    net_conn *pnext;         /* shard paused list */
    bool on_paused;
    uint64_t id;
    int fd;
    io_op recv_op;
    io_op send_op;
    bool recv_pending;
    bool send_pending;
    bool closing;
    bool in_pump;
    bool pump_again;
    uint8_t *wbuf;           /* small answered responses gathered into one send (WBUF_CAP) */
    size_t wpos, wlen;       /* sent / filled bytes of wbuf */
    bool sending_wbuf;       /* the pending send is from wbuf (else from the head's resp) */
    kafka_req *sending;      /* the req whose memory the pending send reads (NULL: wbuf) */
    kafka_req *orphan;       /* that req after the connection closed mid-send: freed once the
                                send has completed (its memory may still be read until then) */
    kafka_req *iov_req;      /* the req whose gathered response smsg walks */
    struct msghdr smsg;      /* what is left of iov_req's resp_iov (io_iov_advance) */
    struct msghdr smsg_op;   /* the pending sendmsg (smsg capped at IO_SENDMSG_IOV_MAX) */
    uint8_t *rbuf;
    size_t rcap;             /* capacity (counted in sh->bytes) */
    size_t rpos;             /* start of unconsumed bytes */
    size_t rlen;             /* end of received bytes */
    kafka_req *head, *tail;  /* pipeline, in arrival order */
    int64_t nreqs;
    int64_t bytes;           /* frames and responses of the pipeline */
    uint64_t next_seq;
    uint64_t last_active_ns;
};

static void conn_pump(net_conn *c);

/* ---- accounting ---- */

static void shard_add_bytes(net_shard *sh, int64_t d)
{
    sh->bytes += d;
    AL_ASSERT(sh->bytes >= 0);
}

/*
 * Resumes connections waiting for the shard budget, if it has room now (bounded). Not
 * re-entered (a nested call returns; the outer loop goes on), and not run while a loop over the
 * shard's connections holds a pointer to the next one (hold_resume): a resumed connection may
 * close and free itself.
 */
static void shard_resume(net_shard *sh)
{
    if (sh->resuming || sh->hold_resume) return;
    sh->resuming = true;
    for (int i = 0; i < 100000 && sh->paused && sh->bytes < sh->srv->shard_max_bytes; i++) {
        net_conn *c = sh->paused;
        sh->paused = c->pnext;
        c->pnext = NULL;
        c->on_paused = false;
        conn_pump(c);
    }
    sh->resuming = false;
}

static void paused_remove(net_conn *c)
{
    if (!c->on_paused) return;
    net_conn **pp = &c->sh->paused;
    for (int i = 0; *pp && i < 10000000; i++, pp = &(*pp)->pnext) {
        if (*pp == c) {
            *pp = c->pnext;
            break;
        }
    }
    c->pnext = NULL;
    c->on_paused = false;
}

/* May this connection take another request? One request alone is always allowed. Records the
 * connection on the shard's paused list when the shard budget is what stops it. */
static bool conn_can_take(net_conn *c)
{
    net_server *srv = c->sh->srv;
    if (c->nreqs == 0) return true;
    if (c->nreqs >= srv->conn_max_reqs || c->bytes >= srv->conn_max_bytes) return false;
    if (c->sh->bytes >= srv->shard_max_bytes) {
        if (!c->on_paused) {
            c->on_paused = true;
            c->pnext = c->sh->paused;
            c->sh->paused = c;
        }
        return false;
    }
    return true;
}

/* ---- closing ---- */

static void conn_wbuf_release(net_conn *c);

static void conn_maybe_free(net_conn *c)
{
    if (!c->closing || c->recv_pending || c->send_pending || c->in_pump) return;
    net_shard *sh = c->sh;
    conn_wbuf_release(c);
    kafka_req_free(c->orphan); /* no send reads it any more */
    c->orphan = NULL;
    io_close_now(sh->io, c->fd);
    if (c->prev) c->prev->next = c->next;
    else sh->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    sh->nconns--;
    sh->closed++;
    free(c);
}

static void req_unlink_all(net_conn *c)
{
    kafka_req *r = c->head;
    for (int64_t i = 0; r && i <= c->nreqs; i++) {
        kafka_req *next = r->next;
        r->next = NULL;
        if (r->state == KAFKA_REQ_DONE && c->send_pending && r == c->sending) {
            c->orphan = r; /* the kernel may still read its response: freed after the send */
            c->sh->orphaned_sends++;
        } else if (r->state == KAFKA_REQ_DONE) {
            kafka_req_free(r);
        } else {
            r->owner = NULL; /* orphan: its completion frees it */
            /* The orphan keeps its frame until then; not counted against the shard any more. */
        }
        r = next;
    }
    c->head = c->tail = NULL;
    c->iov_req = NULL;
    shard_add_bytes(c->sh, -c->bytes);
    c->bytes = 0;
    c->nreqs = 0;
}

/* Closes the connection: logs once, drops the pipeline, cancels pending ops. `level` is the
 * log level of the line (debug for ordinary ends such as the peer closing). */
static void conn_close(net_conn *c, int level, const char *reason, int err)
{
    if (c->closing) return;
    c->closing = true;
    if (err) AL_LOG(level, "net", "closing connection %" PRIu64 ": %s (%s)", c->id, reason,
                    al_strerror(err));
    else AL_LOG(level, "net", "closing connection %" PRIu64 ": %s", c->id, reason);
    net_shard *sh = c->sh;
    paused_remove(c);
    req_unlink_all(c);
    free(c->rbuf);
    c->rbuf = NULL;
    shard_add_bytes(sh, -(int64_t)c->rcap);
    if (!c->send_pending) conn_wbuf_release(c); /* else when the cancelled send returns */
    c->rcap = c->rpos = c->rlen = 0;
    __atomic_sub_fetch(&sh->srv->connections, 1, __ATOMIC_RELAXED);
    if (c->recv_pending) io_cancel(sh->io, &c->recv_op);
    if (c->send_pending) io_cancel(sh->io, &c->send_op);
    conn_maybe_free(c);
    shard_resume(sh);
}

/* Closes because the dispatcher failed request r; the line names the request. */
static void conn_close_req(net_conn *c, const kafka_req *r)
{
    const struct kafka_api_info *ai = kafka_api_info(r->api_key);
    char why[256];
    if (r->frame_len < 8)
        snprintf(why, sizeof(why), "%s: frame of %zu bytes",
                 r->fail_reason ? r->fail_reason : "request failed", r->frame_len);
    else
        snprintf(why, sizeof(why), "%s: api key %d (%s) version %d, correlation id %d",
                 r->fail_reason ? r->fail_reason : "request failed", r->api_key,
                 ai ? ai->name : "unknown", r->api_version, r->correlation_id);
    conn_close(c, AL_LOG_WARN, why, r->fail);
}

/* ---- completion of requests ---- */

static void conn_on_req_done(kafka_req *r)
{
    net_conn *c = r->owner;
    if (!c) { /* the connection closed while the request was deferred */
        kafka_req_free(r);
        return;
    }
    c->bytes += (int64_t)r->resp_len;
    shard_add_bytes(c->sh, (int64_t)r->resp_len);
    if (r->in_dispatch) return; /* conn_cut_frames picks it up when kafka_dispatch returns */
    conn_pump(c);
}

/* Pops the head of the pipeline (answered and sent, or answered with no response). */
static void conn_pop_head(net_conn *c)
{
    kafka_req *r = c->head;
    c->head = r->next;
    if (!c->head) c->tail = NULL;
    c->nreqs--;
    int64_t b = (int64_t)(r->frame_len + r->resp_len);
    c->bytes -= b;
    shard_add_bytes(c->sh, -b);
    if (!r->no_response) c->sh->responses++;
    if (c->iov_req == r) c->iov_req = NULL; /* (a pooled req may come back at this address) */
    kafka_req_free(r);
}

static void conn_wbuf_release(net_conn *c)
{
    if (!c->wbuf) return;
    free(c->wbuf);
    c->wbuf = NULL;
    c->wpos = c->wlen = 0;
    shard_add_bytes(c->sh, -(int64_t)WBUF_CAP);
}

static void conn_on_send(io_op *op)
{
    net_conn *c = op->ctx;
    c->send_pending = false;
    c->sending = NULL;
    if (c->closing) {
        conn_maybe_free(c);
        return;
    }
    if (op->res <= 0) {
        conn_close(c, AL_LOG_INFO, "send failed", op->res ? op->res : -EPIPE);
        return;
    }
    if (c->sending_wbuf) {
        AL_ASSERT(c->wpos + (size_t)op->res <= c->wlen);
        c->wpos += (size_t)op->res;
    } else {
        kafka_req *r = c->head;
        AL_ASSERT(r && r->state == KAFKA_REQ_DONE && r->sent + (size_t)op->res <= r->resp_len);
        r->sent += (size_t)op->res;
        if (r->resp_iov) {
            AL_ASSERT(c->iov_req == r);
            size_t left = io_iov_advance(&c->smsg, (size_t)op->res);
            AL_ASSERT(left == r->resp_len - r->sent);
        }
    }
    c->last_active_ns = io_now_ns(c->sh->io);
    conn_pump(c);
}

static void conn_send(net_conn *c, const uint8_t *p, size_t n, bool from_wbuf)
{
    c->send_pending = true;
    c->sending_wbuf = from_wbuf;
    c->sending = from_wbuf ? NULL : c->head;
    c->sh->sends++;
    io_send(c->sh->io, &c->send_op, c->fd, p, n);
}

/* Sends (the rest of) the head's gathered response (resp_iov: records by reference) with one
 * sendmsg of at most IO_SENDMSG_IOV_MAX pieces; the completion advances through them. */
static void conn_send_iov(net_conn *c, kafka_req *r)
{
    if (c->iov_req != r) { /* first send of this response */
        AL_ASSERT(r->sent == 0);
        c->iov_req = r;
        c->smsg = (struct msghdr){.msg_iov = r->resp_iov, .msg_iovlen = (size_t)r->resp_iovcnt};
    }
    AL_ASSERT(c->smsg.msg_iovlen > 0);
    c->smsg_op = c->smsg;
    if (c->smsg_op.msg_iovlen > IO_SENDMSG_IOV_MAX) c->smsg_op.msg_iovlen = IO_SENDMSG_IOV_MAX;
    c->send_pending = true;
    c->sending_wbuf = false;
    c->sending = r;
    c->sh->sends++;
    c->sh->gathered_sends++;
    io_sendmsg(c->sh->io, &c->send_op, c->fd, &c->smsg_op);
}

/*
 * Sends what is answered at the head of the pipeline. A lone or large response goes out from
 * its own buffer; several small answered ones are gathered into wbuf and sent at once (one
 * send for a burst of pipelined answers). Returns false if the connection closed.
 */
static bool conn_flush(net_conn *c)
{
    if (c->send_pending) return true;
    if (c->wpos < c->wlen) { /* the rest of a gathered send */
        conn_send(c, c->wbuf + c->wpos, c->wlen - c->wpos, true);
        return true;
    }
    c->wpos = c->wlen = 0;
    bool popped = false;
    int64_t bound = c->nreqs + 1; /* the pipeline only shrinks in this loop */
    for (int64_t i = 0; c->head && i <= bound; i++) {
        kafka_req *r = c->head;
        if (r->state != KAFKA_REQ_DONE) break;
        if (r->fail) {
            if (c->wlen) break; /* send what was answered before it first */
            conn_close_req(c, r);
            return false;
        }
        if (r->no_response || r->sent == r->resp_len) {
            conn_pop_head(c);
            popped = true;
            continue;
        }
        size_t left = r->resp_len - r->sent;
        if (r->resp_iov) { /* records by reference: never copied into wbuf */
            if (c->wlen) break; /* send what was answered before it first */
            conn_send_iov(c, r);
            break;
        }
        bool next_done = r->next && r->next->state == KAFKA_REQ_DONE;
        if (c->wlen == 0 && (left >= WBUF_DIRECT || !next_done)) {
            conn_send(c, r->resp + r->sent, left, false);
            break;
        }
        if (c->wlen + left > WBUF_CAP) break;
        if (!c->wbuf) {
            c->wbuf = malloc(WBUF_CAP);
            if (!c->wbuf) {
                conn_send(c, r->resp + r->sent, left, false); /* no gathering, still correct */
                break;
            }
            shard_add_bytes(c->sh, (int64_t)WBUF_CAP);
        }
        memcpy(c->wbuf + c->wlen, r->resp + r->sent, left);
        c->wlen += left;
        r->sent = r->resp_len;
        conn_pop_head(c);
        popped = true;
    }
    if (c->wlen && !c->send_pending) conn_send(c, c->wbuf, c->wlen, true);
    if (!c->send_pending && c->wbuf) conn_wbuf_release(c); /* keep memory only while busy */
    if (popped) shard_resume(c->sh);
    return !c->closing;
}

/* ---- receiving and framing ---- */

static int conn_rbuf_reserve(net_conn *c, size_t need)
{
    if (c->rcap >= need) return 0;
    size_t cap = c->rcap ? c->rcap : RBUF_MIN;
    while (cap < need) cap = cap * 2 > need ? need : cap * 2;
    uint8_t *nb = realloc(c->rbuf, cap);
    if (!nb) return -ENOMEM;
    shard_add_bytes(c->sh, (int64_t)cap - (int64_t)c->rcap);
    c->rbuf = nb;
    c->rcap = cap;
    return 0;
}

/* Moves unconsumed bytes to the front; gives back memory after a large frame. */
static void conn_rbuf_compact(net_conn *c)
{
    if (c->rpos == 0) return;
    size_t left = c->rlen - c->rpos;
    if (left) memmove(c->rbuf, c->rbuf + c->rpos, left);
    c->rpos = 0;
    c->rlen = left;
    if (c->rcap > RBUF_SHRINK && left < RBUF_SHRINK / 2) {
        size_t cap = AL_MAX((size_t)RBUF_MIN, AL_ALIGN_UP(left, (size_t)RBUF_MIN));
        uint8_t *nb = realloc(c->rbuf, cap);
        if (nb) {
            shard_add_bytes(c->sh, (int64_t)cap - (int64_t)c->rcap);
            c->rbuf = nb;
            c->rcap = cap;
        }
    }
}

/*
 * Makes a request of the whole frame of `size` bytes at rbuf + rpos + 4 and consumes it. A
 * large frame at the start of the buffer with little after it takes the receive buffer itself
 * (no copy: the buffer was grown to hold just this frame) and the connection starts a fresh
 * small buffer with the few bytes that followed; otherwise the frame is copied out. Returns
 * the req, or NULL when out of memory (nothing consumed).
 */
static kafka_req *conn_take_frame(net_conn *c, size_t size)
{
    size_t after = c->rlen - c->rpos - 4 - size;
    if (c->rpos == 0 && size >= FRAME_STEAL_MIN && after <= RBUF_MIN) {
        /* The next frame is likely as large: a fresh buffer of this frame's size (up to
         * FRAME_KEEP_MAX) spares it the copies of growing from RBUF_MIN by doubling. It is
         * counted in the shard's bytes, and compaction shrinks it after smaller frames. */
        size_t ncap = AL_MAX((size_t)RBUF_MIN, AL_ALIGN_UP(AL_MIN(4 + size, (size_t)FRAME_KEEP_MAX),
                                                           (size_t)RBUF_MIN));
        uint8_t *nb = malloc(ncap);
        kafka_req *r = nb ? kafka_req_new_in(c->rbuf, c->rbuf + 4, size) : NULL;
        if (r) {
            memcpy(nb, c->rbuf + 4 + size, after);
            /* The old buffer's bytes now count as the request's frame (size, added by the
             * caller); the slack beyond it (< the buffer's last growth step) goes uncounted. */
            shard_add_bytes(c->sh, (int64_t)ncap - (int64_t)c->rcap);
            c->rbuf = nb;
            c->rcap = ncap;
            c->rpos = 0;
            c->rlen = after;
            c->sh->frames_handed_over++;
            return r;
        }
        free(nb);
    }
    kafka_req *r = kafka_req_new_copy(c->rbuf + c->rpos + 4, size);
    if (!r) return NULL;
    c->rpos += 4 + size;
    return r;
}

/* Cuts complete frames out of the buffer and dispatches them while the limits allow, at most
 * PUMP_FRAMES. Returns the number cut, or -1 if the connection closed. */
static int conn_cut_frames(net_conn *c)
{
    net_server *srv = c->sh->srv;
    int n = 0;
    for (; n < PUMP_FRAMES && !c->closing && c->rbuf; n++) {
        int32_t size;
        int64_t whole = net_frame_next(c->rbuf + c->rpos, c->rlen - c->rpos, srv->max_frame,
                                       &size);
        if (whole == AL_EMALFORMED) {
            char why[96];
            snprintf(why, sizeof(why), "negative frame size %d",
                     (int32_t)al_be32(c->rbuf + c->rpos));
            conn_close(c, AL_LOG_WARN, why, 0);
            return -1;
        }
        if (whole == AL_ETOOLARGE) {
            char why[160];
            snprintf(why, sizeof(why),
                     "frame of %u bytes exceeds kafka_max_frame_bytes (%" PRId64 ")",
                     al_be32(c->rbuf + c->rpos), srv->max_frame);
            conn_close(c, AL_LOG_WARN, why, 0);
            return -1;
        }
        if (whole == 0) break; /* more bytes needed: conn_read grows the buffer as they come */
        if (!conn_can_take(c)) break;
        kafka_req *r = conn_take_frame(c, (size_t)size);
        if (!r) {
            conn_close(c, AL_LOG_ERROR, "out of memory for a request", -ENOMEM);
            return -1;
        }
        r->broker = srv->broker;
        r->shard = c->sh->shard_id;
        r->owner = c;
        r->on_done = conn_on_req_done;
        r->seq = c->next_seq++;
        if (c->tail) c->tail->next = r;
        else c->head = r;
        c->tail = r;
        c->nreqs++;
        c->bytes += size;
        shard_add_bytes(c->sh, size);
        c->sh->requests++;
        srv->dispatch(r);
        if (r->state == KAFKA_REQ_DONE && r->fail) {
            conn_close_req(c, r);
            return -1;
        }
    }
    conn_rbuf_compact(c);
    return n;
}

static void conn_on_recv(io_op *op)
{
    net_conn *c = op->ctx;
    c->recv_pending = false;
    if (c->closing) {
        conn_maybe_free(c);
        return;
    }
    if (op->res == 0) {
        conn_close(c, c->rlen > c->rpos ? AL_LOG_INFO : AL_LOG_DEBUG,
                   c->rlen > c->rpos ? "peer closed in the middle of a frame" : "peer closed",
                   0);
        return;
    }
    if (op->res < 0) {
        conn_close(c, AL_LOG_INFO, "receive failed", op->res);
        return;
    }
    c->rlen += (size_t)op->res;
    c->last_active_ns = io_now_ns(c->sh->io);
    conn_pump(c);
}

/* Posts a receive if none is pending and the connection may take more. */
static void conn_read(net_conn *c)
{
    if (c->recv_pending || c->closing) return;
    if (!conn_can_take(c)) return;
    int32_t size = -1;
    if (c->rbuf && net_frame_next(c->rbuf + c->rpos, c->rlen - c->rpos, c->sh->srv->max_frame,
                                  &size) != 0)
        return; /* a whole frame (or a bad prefix) is waiting to be handled */
    if (conn_rbuf_reserve(c, RBUF_MIN)) {
        conn_close(c, AL_LOG_ERROR, "out of memory for a receive buffer", -ENOMEM);
        return;
    }
    if (c->rlen == c->rcap) conn_rbuf_compact(c);
    if (c->rlen == c->rcap) {
        /* A frame larger than the buffer is arriving (its size is known: the buffer holds more
         * than 4 bytes). Grow with the bytes received, never ahead of them by more than 2x, so
         * a size prefix alone cannot make us reserve a whole max-size frame. */
        AL_ASSERT(size > 0 && 4 + (size_t)size > c->rcap);
        /* Up to FRAME_PREALLOC_MAX (a Kafka client's default max.request.size with room), grow
         * to the whole frame at once: one copy of what is buffered instead of one per
         * doubling (a 1 MiB Produce request cost a third of the broker's CPU in realloc);
         * a size prefix alone thus claims at most that much, counted in the shard's bytes. */
        size_t whole = 4 + (size_t)size;
        size_t want = whole <= FRAME_PREALLOC_MAX ? whole : AL_MIN(c->rcap * 2, whole);
        if (conn_rbuf_reserve(c, want)) {
            conn_close(c, AL_LOG_ERROR, "out of memory for a receive buffer", -ENOMEM);
            return;
        }
    }
    c->recv_pending = true;
    io_recv(c->sh->io, &c->recv_op, c->fd, c->rbuf + c->rlen, c->rcap - c->rlen);
}

static void conn_pump(net_conn *c)
{
    if (c->in_pump) {
        c->pump_again = true;
        return;
    }
    c->in_pump = true;
    for (int round = 0; round < PUMP_ROUNDS; round++) {
        c->pump_again = false;
        if (c->closing) break;
        int cut = conn_cut_frames(c);
        if (cut < 0) break;
        if (!conn_flush(c)) break;
        conn_read(c);
        /* Go on while something asked for it, or while the buffer may hold more frames than
         * one round cuts (e.g. a burst of acks=0 requests: nothing else would wake us). */
        if (!c->pump_again && cut < PUMP_FRAMES) break;
    }
    c->in_pump = false;
    if (c->closing) conn_maybe_free(c);
}

static void conn_new(net_shard *sh, int fd)
{
    net_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        log_error("net", "out of memory accepting a connection");
        io_close_now(sh->io, fd);
        __atomic_sub_fetch(&sh->srv->connections, 1, __ATOMIC_RELAXED);
        return;
    }
    c->sh = sh;
    c->fd = fd;
    c->id = __atomic_add_fetch(&sh->srv->next_conn_id, 1, __ATOMIC_RELAXED);
    c->recv_op.cb = conn_on_recv;
    c->recv_op.ctx = c;
    c->send_op.cb = conn_on_send;
    c->send_op.ctx = c;
    c->last_active_ns = io_now_ns(sh->io);
    c->next = sh->conns;
    if (sh->conns) sh->conns->prev = c;
    sh->conns = c;
    sh->nconns++;
    sh->accepted++;
    log_debug("net", "connection %" PRIu64 " accepted", c->id);
    conn_pump(c);
}

/* ---- listener and maintenance ---- */

static void shard_arm_accept(net_shard *sh);

static void shard_on_accept(io_op *op)
{
    net_shard *sh = op->ctx;
    if (!(op->flags & IO_F_MORE)) sh->accept_armed = false;
    if (op->res < 0) {
        if (sh->stopping || op->res == -ECANCELED) return;
        log_warn("net", "accept failed: %s", al_strerror(op->res));
        if (!sh->accept_armed) sh->accept_rearm = true; /* by the next sweep, not in a spin */
        return;
    }
    int fd = op->res;
    if (sh->stopping) {
        io_close_now(sh->io, fd);
        return;
    }
    if (__atomic_load_n(&sh->srv->hold, __ATOMIC_ACQUIRE)) {
        /* Not serving yet: as if the port were still closed (clients retry elsewhere). */
        io_close_now(sh->io, fd);
        uint64_t now = io_now_ns(sh->io);
        if (now - sh->last_reject_log_ns >= REJECT_LOG_NS) {
            sh->last_reject_log_ns = now;
            log_info("net", "connection closed: not serving Kafka clients until this node has "
                     "joined the cluster and caught up with the controller");
        }
        if (!sh->accept_armed) shard_arm_accept(sh);
        return;
    }
    int n = __atomic_add_fetch(&sh->srv->connections, 1, __ATOMIC_RELAXED);
    if (n > sh->srv->max_connections) {
        __atomic_sub_fetch(&sh->srv->connections, 1, __ATOMIC_RELAXED);
        io_close_now(sh->io, fd);
        uint64_t now = io_now_ns(sh->io);
        if (now - sh->last_reject_log_ns >= REJECT_LOG_NS) {
            sh->last_reject_log_ns = now;
            log_warn("net", "connection refused: max_connections (%" PRId64 ") reached",
                     sh->srv->max_connections);
        }
    } else {
        conn_new(sh, fd);
    }
    if (!sh->accept_armed && !sh->stopping) shard_arm_accept(sh);
}

static void shard_arm_accept(net_shard *sh)
{
    sh->accept_armed = true;
    sh->accept_rearm = false;
    io_accept(sh->io, &sh->accept_op, sh->lfd);
}

static uint64_t sweep_interval_ns(const net_server *srv)
{
    int64_t ms = srv->idle_ms > 0 ? srv->idle_ms / 4 : 1000;
    ms = AL_MAX(ms, 10);
    ms = AL_MIN(ms, 1000);
    return (uint64_t)ms * 1000000ull;
}

static void shard_on_sweep(io_op *op)
{
    net_shard *sh = op->ctx;
    sh->sweep_armed = false;
    if (sh->stopping) return;
    uint64_t now = io_now_ns(sh->io);
    if (sh->srv->idle_ms > 0) {
        uint64_t idle_ns = (uint64_t)sh->srv->idle_ms * 1000000ull;
        net_conn *c = sh->conns;
        sh->hold_resume = true;
        for (int i = 0; c && i < 10000000; i++) {
            net_conn *next = c->next;
            if (!c->closing && c->nreqs == 0 && now - c->last_active_ns >= idle_ns)
                conn_close(c, AL_LOG_INFO, "idle longer than connections_max_idle_ms", 0);
            c = next;
        }
        sh->hold_resume = false;
        shard_resume(sh);
    }
    if (sh->accept_rearm && !sh->accept_armed) shard_arm_accept(sh);
    sh->sweep_armed = true;
    io_timeout(sh->io, &sh->sweep_op, now + sweep_interval_ns(sh->srv));
}

void net_server_init(net_server *srv, const struct al_config *cfg,
                     const struct kafka_broker *broker, net_dispatch_fn dispatch)
{
    memset(srv, 0, sizeof(*srv));
    srv->cfg = cfg;
    srv->broker = broker;
    srv->dispatch = dispatch ? dispatch : kafka_dispatch;
    srv->host = cfg->kafka_addr.host;
    srv->port = cfg->kafka_addr.port;
    srv->max_frame = cfg->kafka_max_frame_bytes;
    srv->max_connections = cfg->max_connections;
    srv->idle_ms = cfg->connections_max_idle_ms;
    srv->conn_max_reqs = cfg->kafka_conn_max_inflight_requests;
    srv->conn_max_bytes = cfg->kafka_conn_max_inflight_bytes;
    srv->shard_max_bytes = cfg->kafka_shard_max_inflight_bytes;
}

int net_shard_start(net_shard *sh, net_server *srv, io *iop, int shard_id)
{
    memset(sh, 0, sizeof(*sh));
    sh->srv = srv;
    sh->io = iop;
    sh->shard_id = shard_id;
    sh->lfd = -1;
    uint16_t port = __atomic_load_n(&srv->port, __ATOMIC_ACQUIRE);
    int fd = io_listen(iop, srv->host, port, true, 1024);
    if (fd < 0) {
        log_error("net", "cannot listen on %s:%u: %s", srv->host, port, al_strerror(fd));
        return fd;
    }
    sh->lfd = fd;
    if (port == 0) {
        int p = io_local_port(iop, fd);
        if (p <= 0) {
            io_close_now(iop, fd);
            sh->lfd = -1;
            return p < 0 ? p : -EINVAL;
        }
        port = (uint16_t)p;
        __atomic_store_n(&srv->port, port, __ATOMIC_RELEASE);
    }
    sh->port = port;
    sh->accept_op.cb = shard_on_accept;
    sh->accept_op.ctx = sh;
    sh->sweep_op.cb = shard_on_sweep;
    sh->sweep_op.ctx = sh;
    shard_arm_accept(sh);
    sh->sweep_armed = true;
    io_timeout(iop, &sh->sweep_op, io_now_ns(iop) + sweep_interval_ns(srv));
    log_debug("net", "shard %d listening on %s:%u", shard_id, srv->host, port);
    return 0;
}

void net_shard_stop(net_shard *sh)
{
    if (sh->stopping) return;
    sh->stopping = true;
    if (sh->accept_armed) io_cancel(sh->io, &sh->accept_op);
    if (sh->sweep_armed) io_cancel(sh->io, &sh->sweep_op);
    net_conn *c = sh->conns;
    sh->hold_resume = true;
    for (int i = 0; c && i < 10000000; i++) {
        net_conn *next = c->next;
        conn_close(c, AL_LOG_DEBUG, "shutting down", 0);
        c = next;
    }
    sh->hold_resume = false;
}

bool net_shard_idle(const net_shard *sh)
{
    bool idle = sh->stopping && !sh->accept_armed && !sh->sweep_armed && !sh->conns;
    if (idle && sh->lfd >= 0) {
        io_close_now(sh->io, sh->lfd);
        ((net_shard *)sh)->lfd = -1;
    }
    return idle;
}
