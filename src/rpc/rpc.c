/*
 * rpc.c — the node-to-node RPC endpoint: listener, peer table, outbound and inbound
 * connections, HELLO, send queues, calls, cross-shard forwarding. See rpc.h for the contract;
 * the notes here are about the mechanics.
 *
 * Send queues (outq) are lists of chunks of whole frames (header + payload, copied in when
 * queued). A send writes everything queued that is not yet written (up to SEND_MAX, one
 * gathered sendmsg over the chunks), which is what batches messages. Queued bytes never move,
 * so appends go on while a send is in flight; emptied chunks return to a per-endpoint pool.
 * Completed bytes retire whole frames from the front (a partly written frame stays; on a new
 * connection it is written again from its start).
 *
 * A connection is freed only when none of its ops is pending and no dispatch loop is running
 * on it; the consequences of losing an outbound connection (failing written calls, dropping
 * one-way frames, backoff) happen at that point, when no send can still be reading the queue.
 * The endpoint itself is freed once stopped, with no connection, accept op or forwarded
 * message left, and not while one of its own functions is on the stack (r->depth).
 */
#include "rpc/rpc.h"

#include "base/cursor.h"
#include "base/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#define RBUF_MIN        (64u * 1024)
#define RBUF_SHRINK     (1u << 20)
#define CHUNK_SIZE      (1u << 20) /* standard send-queue chunk */
#define POOL_MAX        8u         /* spare chunks an endpoint keeps */
#define SEND_MAX        (4u << 20) /* bytes per gathered send */
#define SEND_IOV        64         /* chunks per gathered send */
#define PEERS_MAX       4096u
#define INBOUND_MAX     1024u
#define DISPATCH_MAX    100000     /* frames handled per receive before reading again */
#define CALLS_SCAN_MAX  (1u << 24) /* bound on call-list walks */
#define ACCEPT_RETRY_NS 10000000ull

typedef struct rpc_conn rpc_conn;
typedef struct rpc_peer rpc_peer;
typedef struct rpc_pcall rpc_pcall;

enum { SEND_Q, SEND_HELLO, SEND_PING };

/* A send queue is a list of chunks, each holding whole frames in [start, end); a frame never
 * spans two chunks. Appends go to the tail chunk (or a new one) and never move queued bytes,
 * so a send in flight reads them in place through an iovec. Emptied standard chunks go back
 * to the endpoint's pool: at a steady rate the queues reuse the same memory (no copies on
 * growth, no fresh pages). */
typedef struct oq_chunk {
    struct oq_chunk *next;
    size_t start, end, cap;
    uint8_t data[];
} oq_chunk;

typedef struct oq_pool {
    oq_chunk *spare; /* standard-size chunks not in use */
    uint32_t n;
} oq_pool;

typedef struct outq {
    oq_chunk *head, *tail;
    size_t len;     /* bytes of the queued frames */
    size_t sent;    /* bytes after the first frame's start already written on this connection */
    bool inflight;  /* a send is reading from the chunks */
    oq_pool *pool;  /* the endpoint's */
} outq;

enum peer_state { P_IDLE, P_CONNECTING, P_READY, P_BACKOFF };

struct rpc_pcall {
    rpc_pcall *prev, *next;
    rpc *r;
    rpc_peer *peer;  /* valid only while the call is on its peer's list */
    uint64_t corr;
    uint16_t type;
    bool written;
    uint32_t timeout_ms;
    rpc_call_cb cb;
    void *ctx;
    reactor_timer timer;
};

struct rpc_peer {
    rpc *r;
    int32_t node_id;     /* -1: known by address only */
    int32_t learned_id;  /* what its HELLO said (-1: not yet) */
    char host[64];
    uint16_t port;
    char addr[RPC_ADDR_MAX + 8];
    outq q;
    rpc_conn *conn;      /* the outbound connection (until freed) */
    enum peer_state state;
    reactor_timer timer; /* backoff */
    uint32_t backoff_ms;
    uint32_t fails;      /* failed attempts in a row */
    char refusal[640];   /* why the last HELLO was refused ("" if it was not) */
    bool removed;        /* out of the table; freed once its connection is */
    rpc_pcall *calls_head, *calls_tail;
    uint32_t ncalls;
    struct rpc_peer_stats st;
};

struct rpc_conn {
    rpc *r;
    rpc_conn *prev_in, *next_in; /* inbound list */
    rpc_peer *peer;              /* outbound: its peer; inbound: NULL */
    uint64_t id;
    int fd;
    bool inbound, ready, closing, close_after_flush, recv_paused;
    uint8_t sending;             /* what the pending send writes: SEND_Q, SEND_HELLO, SEND_PING */
    bool connect_pending, recv_pending, send_pending;
    int in_dispatch;
    int close_err;               /* why it closed (0: clean) */
    uint64_t last_recv_ns;       /* last bytes received (keepalive) */
    uint64_t last_send_ns;       /* last send completion that wrote bytes */
    uint64_t send_start_ns;      /* when the pending send was issued */
    uint64_t ping_written_ns;    /* when the last PING was fully written (0: never) */
    uint8_t ping_buf[RPC_HDR_SIZE]; /* a PING jumps the queue at the next frame boundary */
    size_t ping_sent;
    bool ping_queued;
    bool suspect;                /* the last keepalive tick found it silent */
    io_op connect_op, recv_op, send_op;
    reactor_timer timer;         /* connect + HELLO deadline */
    outq own_q;                  /* inbound: answers */
    outq *q;
    uint8_t hello_buf[RPC_HDR_SIZE + RPC_HELLO_MAX_SIZE];
    size_t hello_len, hello_sent;
    uint8_t *rbuf;
    size_t rcap, rpos, rlen;
    struct iovec siov[SEND_IOV]; /* the pending queue send's chunks */
    struct msghdr smsg;
    int32_t remote_id;
    char remote_addr[RPC_ADDR_MAX + 1];
};

struct rpc_handler {
    rpc_handler_fn fn;
    void *ctx;
};

struct rpc {
    reactor_shard *shard;
    io *io;
    unsigned shard_idx;
    int32_t node_id;
    char cluster_id[RPC_CLUSTER_ID_MAX + 1];
    char adv_addr[RPC_ADDR_MAX + 1];
    uint32_t max_frame;
    uint64_t queue_limit;
    uint32_t backoff_min_ms, backoff_max_ms, connect_timeout_ms, keepalive_ms;
    int lfd;
    uint16_t port;
    io_op accept_op;
    bool accept_pending;
    reactor_timer accept_timer;
    rpc_peer **peers;
    uint32_t npeers, peers_cap;
    rpc_conn *in_head;
    uint32_t nin;
    uint32_t nconns; /* all connection structs alive */
    struct rpc_handler handlers[RPC_T_MAX];
    uint64_t next_conn_id, next_corr;
    int depth;       /* rpc functions on the stack: do not free */
    int stopping;    /* read by other shards (atomic) */
    bool freed;
    void (*done)(void *arg);
    void *done_arg;
    int xinflight;   /* forwarded messages and calls not yet finished (atomic) */
    struct rpc_xcall *xret_head, *xret_tail; /* call results waiting for room in a ring */
    reactor_timer xret_timer;
    oq_pool pool;    /* spare send-queue chunks of every queue */
    struct rpc_stats st;
};

static void conn_flush(rpc_conn *c);
static void conn_maybe_free(rpc_conn *c);
static void conn_post_recv(rpc_conn *c);
static void conn_process(rpc_conn *c);
static void peer_kick(rpc_peer *p);
static void rpc_maybe_free(rpc *r);
static void xret_timer_cb(reactor_timer *t);

static uint64_t now_ns(rpc *r)
{
    return io_now_ns(r->io);
}

/* ---- send queues ---- */

static size_t outq_len(const outq *q)
{
    return q->len;
}

/* A chunk with room for need bytes: a spare standard one from the pool, else a new one
 * (standard size, or exactly need when a frame is larger). NULL: ENOMEM. */
static oq_chunk *chunk_take(outq *q, size_t need)
{
    oq_chunk *k = NULL;
    if (need <= CHUNK_SIZE && q->pool && q->pool->spare) {
        k = q->pool->spare;
        q->pool->spare = k->next;
        q->pool->n--;
    } else {
        size_t cap = AL_MAX(need, (size_t)CHUNK_SIZE);
        k = malloc(sizeof(*k) + cap);
        if (!k) return NULL;
        k->cap = cap;
    }
    k->next = NULL;
    k->start = k->end = 0;
    return k;
}

/* Gives a chunk no frame uses any more back to the pool (standard size, pool not full) or
 * frees it. */
static void chunk_release(outq *q, oq_chunk *k)
{
    if (k->cap == CHUNK_SIZE && q->pool && q->pool->n < POOL_MAX) {
        k->next = q->pool->spare;
        q->pool->spare = k;
        q->pool->n++;
    } else {
        free(k);
    }
}

/* Appends one frame (header + a copy of the payload) at the tail; never moves queued bytes,
 * so a send in flight is not disturbed. Returns 0 or -ENOMEM. */
static int outq_append(outq *q, uint8_t flags, uint16_t type, uint64_t corr, const void *payload,
                       size_t len)
{
    size_t fs = RPC_HDR_SIZE + len;
    oq_chunk *t = q->tail;
    if (!t || t->cap - t->end < fs) {
        t = chunk_take(q, fs);
        if (!t) return -ENOMEM;
        if (q->tail) q->tail->next = t;
        else q->head = t;
        q->tail = t;
    }
    rpc_hdr_encode(t->data + t->end, flags, type, corr, payload, (uint32_t)len);
    if (len) memcpy(t->data + t->end + RPC_HDR_SIZE, payload, len);
    t->end += fs;
    q->len += fs;
    return 0;
}

static size_t outq_frame_size(const uint8_t *f)
{
    return RPC_HDR_SIZE + al_be32(f + 16);
}

/* Fills iov with the queued bytes not yet written, from the head chunk on: at most niov
 * entries and max bytes. Returns the number of entries (0: nothing to send). */
static int outq_iov(const outq *q, struct iovec *iov, int niov, size_t max)
{
    int n = 0;
    size_t skip = q->sent, total = 0;
    for (oq_chunk *k = q->head; k && n < niov && total < max; k = k->next) {
        size_t have = k->end - k->start;
        if (skip >= have) { /* cannot be after frame retirement, but stay safe */
            skip -= have;
            continue;
        }
        size_t take = AL_MIN(have - skip, max - total);
        iov[n].iov_base = k->data + k->start + skip;
        iov[n].iov_len = take;
        n++;
        total += take;
        skip = 0;
    }
    return n;
}

/* A send from q completed with n bytes (n >= 0): retires the frames now fully written,
 * calling written(ctx, frame) for each, and releases emptied chunks. */
static void outq_sent(outq *q, size_t n, void (*written)(void *ctx, const uint8_t *f), void *ctx)
{
    q->inflight = false;
    q->sent += n;
    AL_ASSERT(q->sent <= outq_len(q));
    for (size_t i = 0; i < (size_t)1 << 40 && q->head && q->sent >= RPC_HDR_SIZE; i++) {
        oq_chunk *k = q->head;
        const uint8_t *f = k->data + k->start;
        size_t fs = outq_frame_size(f);
        AL_ASSERT(k->start + fs <= k->end);
        if (q->sent < fs) break;
        if (written) written(ctx, f);
        k->start += fs;
        q->sent -= fs;
        q->len -= fs;
        if (k->start == k->end) {
            q->head = k->next;
            if (!q->head) q->tail = NULL;
            chunk_release(q, k);
        }
    }
}

/* Keeps only the frames keep() accepts (no send may be in flight), compacting each chunk in
 * place. Returns frames dropped. */
static uint64_t outq_filter(outq *q, bool (*keep)(void *ctx, const uint8_t *f), void *ctx)
{
    AL_ASSERT(!q->inflight);
    q->sent = 0;
    uint64_t dropped = 0;
    oq_chunk *prev = NULL, *k = q->head;
    for (uint32_t c = 0; k && c < UINT32_MAX; c++) {
        size_t rd = k->start, wr = k->start;
        for (size_t i = 0; i < (size_t)1 << 40 && rd < k->end; i++) {
            size_t fs = outq_frame_size(k->data + rd);
            AL_ASSERT(rd + fs <= k->end);
            if (keep(ctx, k->data + rd)) {
                if (wr != rd) memmove(k->data + wr, k->data + rd, fs);
                wr += fs;
            } else {
                dropped++;
                q->len -= fs;
            }
            rd += fs;
        }
        k->end = wr;
        oq_chunk *next = k->next;
        if (k->start == k->end) {
            if (prev) prev->next = next;
            else q->head = next;
            if (q->tail == k) q->tail = prev;
            chunk_release(q, k);
        } else {
            prev = k;
        }
        k = next;
    }
    return dropped;
}

/* Frees every chunk, in flight or not (a crashed node's endpoint, or after the last send). */
static void outq_release(outq *q)
{
    for (oq_chunk *k = q->head, *next; k; k = next) {
        next = k->next;
        free(k);
    }
    q->head = q->tail = NULL;
    q->len = q->sent = 0;
    q->inflight = false;
}

static void outq_free(outq *q)
{
    AL_ASSERT(!q->inflight);
    oq_pool *pool = q->pool;
    for (oq_chunk *k = q->head, *next; k; k = next) {
        next = k->next;
        chunk_release(q, k);
    }
    memset(q, 0, sizeof(*q));
    q->pool = pool;
}

/* Frees the spare chunks of the pool. */
static void pool_free(oq_pool *pool)
{
    for (oq_chunk *k = pool->spare, *next; k; k = next) {
        next = k->next;
        free(k);
    }
    pool->spare = NULL;
    pool->n = 0;
}

/* ---- peers and calls ---- */

static rpc_peer *peer_by_id(rpc *r, int32_t id)
{
    if (id < 0) return NULL;
    for (uint32_t i = 0; i < r->npeers; i++)
        if (r->peers[i]->node_id == id) return r->peers[i];
    return NULL;
}

static rpc_peer *peer_by_addr(rpc *r, const char *host, uint16_t port)
{
    for (uint32_t i = 0; i < r->npeers; i++)
        if (r->peers[i]->port == port && !strcmp(r->peers[i]->host, host)) return r->peers[i];
    return NULL;
}

static void peer_timer_cb(reactor_timer *t);

/* Adds a peer entry (id -1: known by address only). Returns it, or NULL when the table is
 * full (PEERS_MAX) or memory ran out. */
static rpc_peer *peer_new(rpc *r, int32_t id, const char *host, uint16_t port)
{
    if (r->npeers >= PEERS_MAX) return NULL;
    if (r->npeers == r->peers_cap) {
        uint32_t ncap = r->peers_cap ? r->peers_cap * 2 : 16;
        rpc_peer **np = realloc(r->peers, ncap * sizeof(*np));
        if (!np) return NULL;
        r->peers = np;
        r->peers_cap = ncap;
    }
    rpc_peer *p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    p->r = r;
    p->node_id = id;
    p->learned_id = -1;
    snprintf(p->host, sizeof(p->host), "%s", host);
    p->port = port;
    snprintf(p->addr, sizeof(p->addr), "%s:%u", host, port);
    p->state = P_IDLE;
    p->backoff_ms = r->backoff_min_ms;
    p->q.pool = &r->pool;
    reactor_timer_init(&p->timer, peer_timer_cb, p);
    p->st.node = id;
    r->peers[r->npeers++] = p;
    r->st.peers = r->npeers;
    return p;
}

/* "node 3 (10.0.0.4:33145)" or "10.0.0.4:33145" for logs. */
static const char *peer_name(const rpc_peer *p, char *buf, size_t cap)
{
    int32_t id = p->node_id >= 0 ? p->node_id : p->learned_id;
    if (id >= 0) snprintf(buf, cap, "node %" PRId32 " (%s)", id, p->addr);
    else snprintf(buf, cap, "%s", p->addr);
    return buf;
}

static void call_unlink(rpc_pcall *k)
{
    rpc_peer *p = k->peer;
    if (k->prev) k->prev->next = k->next;
    else p->calls_head = k->next;
    if (k->next) k->next->prev = k->prev;
    else p->calls_tail = k->prev;
    k->prev = k->next = NULL;
    p->ncalls--;
}

/* The pending call of p with correlation id corr, or NULL (ended, or never ours). */
static rpc_pcall *call_find(rpc_peer *p, uint64_t corr)
{
    rpc_pcall *k = p->calls_head;
    for (uint32_t i = 0; k && i < CALLS_SCAN_MAX; i++, k = k->next)
        if (k->corr == corr) return k;
    return NULL;
}

/* Completes a call that is already unlinked (its peer may be gone): runs its callback and
 * frees it. */
static void call_finish(rpc_pcall *k, int err, int32_t from, const uint8_t *payload, size_t len,
                        const char *text)
{
    rpc *r = k->r;
    reactor_timer_cancel(r->shard, &k->timer);
    if (err == AL_ETIMEDOUT) r->st.call_timeouts++;
    else if (err) r->st.call_errors++;
    rpc_result res = {err, from, payload, len, text ? text : ""};
    k->cb(k->ctx, &res);
    free(k);
}

/* Moves the calls matching pred from p's list to a detached list (so their callbacks can run
 * after every state change, whatever the callbacks do). */
static rpc_pcall *calls_detach(rpc_peer *p, bool only_written)
{
    rpc_pcall *out = NULL, **tail = &out;
    rpc_pcall *k = p->calls_head;
    for (uint32_t i = 0; k && i < CALLS_SCAN_MAX; i++) {
        rpc_pcall *next = k->next;
        if (!only_written || k->written) {
            call_unlink(k);
            *tail = k;
            tail = &k->next;
        }
        k = next;
    }
    return out;
}

/* Completes every call of a detached list with err and text (callbacks may do anything). */
static void calls_fail(rpc_pcall *list, int err, const char *text)
{
    for (uint32_t i = 0; list && i < CALLS_SCAN_MAX; i++) {
        rpc_pcall *next = list->next;
        list->next = NULL;
        call_finish(list, err, -1, NULL, 0, text);
        list = next;
    }
}

/* A call's deadline: it ends with AL_ETIMEDOUT; a late answer is then ignored. */
static void call_timer_cb(reactor_timer *t)
{
    rpc_pcall *k = t->ctx;
    rpc *r = k->r;
    char name[160], text[256];
    snprintf(text, sizeof(text), "no answer from %s to a message of type %u within %" PRIu32
             " ms", peer_name(k->peer, name, sizeof(name)), k->type, k->timeout_ms);
    r->depth++;
    call_unlink(k);
    call_finish(k, AL_ETIMEDOUT, -1, NULL, 0, text);
    r->depth--;
    rpc_maybe_free(r);
}

/* ---- connections: life cycle ---- */

static void conn_timer_cb(reactor_timer *t);

/* Allocates a connection (no fd yet) and counts it against the endpoint's life. NULL: ENOMEM. */
static rpc_conn *conn_new(rpc *r, bool inbound)
{
    rpc_conn *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    c->r = r;
    c->id = ++r->next_conn_id;
    c->fd = -1;
    c->inbound = inbound;
    c->remote_id = -1;
    c->q = &c->own_q;
    c->own_q.pool = &r->pool;
    c->last_recv_ns = c->last_send_ns = now_ns(r);
    reactor_timer_init(&c->timer, conn_timer_cb, c);
    r->nconns++;
    return c;
}

/* Closes c: logs why (at `level`), cancels its ops; freed once they are done. */
static void conn_close(rpc_conn *c, int level, const char *why, int err)
{
    if (c->closing) return;
    rpc *r = c->r;
    c->closing = true;
    c->close_err = err ? err : AL_ECLOSED;
    char name[160];
    const char *who = c->peer ? peer_name(c->peer, name, sizeof(name)) : NULL;
    if (!who) {
        if (c->remote_id >= 0)
            snprintf(name, sizeof(name), "node %" PRId32 " (%s)", c->remote_id, c->remote_addr);
        else
            snprintf(name, sizeof(name), "an unidentified peer");
        who = name;
    }
    if (err)
        AL_LOG(level, "rpc", "closing %s connection %" PRIu64 " %s %s: %s (%s)",
               c->inbound ? "inbound" : "outbound", c->id, c->inbound ? "from" : "to", who, why,
               al_strerror(err));
    else
        AL_LOG(level, "rpc", "closing %s connection %" PRIu64 " %s %s: %s",
               c->inbound ? "inbound" : "outbound", c->id, c->inbound ? "from" : "to", who, why);
    reactor_timer_cancel(r->shard, &c->timer);
    if (c->connect_pending) io_cancel(r->io, &c->connect_op);
    if (c->recv_pending) io_cancel(r->io, &c->recv_op);
    if (c->send_pending) io_cancel(r->io, &c->send_op);
}

/* outq_filter predicate: keep the request frames of calls still waiting to be written. */
static bool keep_live_calls(void *ctx, const uint8_t *f)
{
    rpc_peer *p = ctx;
    if (!(f[5] & RPC_F_REQUEST)) return false;
    rpc_pcall *k = call_find(p, al_be64(f + 8));
    return k && !k->written;
}

/* Frees a peer with no connection and no calls. */
static void peer_free(rpc_peer *p)
{
    AL_ASSERT(p->conn == NULL && p->calls_head == NULL);
    reactor_timer_cancel(p->r->shard, &p->timer);
    outq_free(&p->q);
    free(p);
}

/* The outbound connection of p is gone (freed): fail written calls, drop one-way frames,
 * back off and reconnect if anything still waits. The calls' callbacks run last: they may do
 * anything, even remove p. */
static void peer_disconnected(rpc_peer *p, rpc_conn *c)
{
    rpc *r = p->r;
    bool was_ready = c->ready;
    p->conn = NULL;
    if (p->removed) {
        peer_free(p);
        return;
    }
    char name[160];
    peer_name(p, name, sizeof(name));
    if (was_ready) {
        p->st.disconnects++;
        p->fails = 0;
        p->backoff_ms = r->backoff_min_ms;
    } else {
        p->st.connect_errors++;
        p->fails++;
    }
    p->st.connected = false;
    /* A refused HELLO is a configuration problem, not a passing one: every call fails now. */
    bool refused = p->refusal[0] != 0;
    rpc_pcall *failed = calls_detach(p, !refused);
    p->st.dropped += outq_filter(&p->q, keep_live_calls, p);
    p->st.queued_bytes = outq_len(&p->q);
    if (r->stopping) {
        p->state = P_IDLE;
    } else {
        /* Jittered: a delay in [b/2, b], then the next one doubles (capped). */
        uint32_t b = p->backoff_ms;
        uint64_t delay_ms = b / 2 + (b ? io_random(r->io) % (b / 2 + 1) : 0);
        if (!was_ready) p->backoff_ms = AL_MIN(r->backoff_max_ms, AL_MAX(1u, b) * 2);
        if (!was_ready && p->fails == 1 && !refused)
            log_warn("rpc", "cannot reach %s: %s; retrying with backoff (up to %" PRIu32 " ms)",
                     name, al_strerror(c->close_err), r->backoff_max_ms);
        else if (!was_ready && !refused)
            log_debug("rpc", "still cannot reach %s (%" PRIu32 " attempts): %s", name, p->fails,
                      al_strerror(c->close_err));
        p->state = P_BACKOFF;
        reactor_timer_add(r->shard, &p->timer, now_ns(r) + delay_ms * 1000000ull, NULL);
    }
    char text[sizeof(p->refusal)];
    if (refused)
        memcpy(text, p->refusal, sizeof(text));
    else
        snprintf(text, sizeof(text), "the connection to %s broke after the request was sent (%s)",
                 name, al_strerror(c->close_err));
    p->refusal[0] = 0;
    calls_fail(failed, refused ? AL_EINVAL : AL_ECLOSED, text);
}

/* Frees c once it is closing with no op pending and no dispatch loop on it: closes the fd,
 * unlinks it, and for an outbound one applies the disconnect to its peer. May free the
 * endpoint (stopped, last connection): touch neither c nor r after calling it. */
static void conn_maybe_free(rpc_conn *c)
{
    if (!c->closing || c->connect_pending || c->recv_pending || c->send_pending ||
        c->in_dispatch)
        return;
    rpc *r = c->r;
    r->depth++;
    reactor_timer_cancel(r->shard, &c->timer);
    if (c->fd >= 0) io_close_now(r->io, c->fd);
    free(c->rbuf);
    if (c->inbound) {
        if (c->prev_in) c->prev_in->next_in = c->next_in;
        else r->in_head = c->next_in;
        if (c->next_in) c->next_in->prev_in = c->prev_in;
        r->nin--;
        r->st.conns_in_now = r->nin;
    }
    outq_free(&c->own_q);
    if (c->peer) {
        c->peer->q.inflight = false; /* its send is done */
        peer_disconnected(c->peer, c);
    }
    r->nconns--;
    free(c);
    r->depth--;
    rpc_maybe_free(r);
}

/* ---- connections: sending ---- */

static void out_frame_written(void *ctx, const uint8_t *f)
{
    rpc_conn *c = ctx;
    rpc *r = c->r;
    size_t fs = outq_frame_size(f);
    r->st.msgs_out++;
    r->st.bytes_out += fs;
    if (!c->peer) return;
    c->peer->st.msgs_out++;
    c->peer->st.bytes_out += fs;
    if (f[5] & RPC_F_REQUEST) {
        rpc_pcall *k = call_find(c->peer, al_be64(f + 8));
        if (k) k->written = true;
    }
}

/* A send completed: account the bytes (HELLO, PING or queue), then resume paused reading and
 * send more. A send error closes the connection. */
static void conn_on_send(io_op *op)
{
    rpc_conn *c = op->ctx;
    rpc *r = c->r;
    c->send_pending = false;
    int32_t res = op->res;
    if (res > 0) c->last_send_ns = now_ns(r);
    if (c->sending == SEND_HELLO) {
        if (res > 0) c->hello_sent += (size_t)res;
    } else if (c->sending == SEND_PING) {
        if (res > 0) c->ping_sent += (size_t)res;
        if (c->ping_sent == RPC_HDR_SIZE) {
            c->ping_queued = false;
            c->ping_sent = 0;
            c->ping_written_ns = now_ns(r);
            r->st.msgs_out++;
        }
    } else {
        outq_sent(c->q, res > 0 ? (size_t)res : 0, out_frame_written, c);
        if (c->peer) {
            c->peer->st.queued_bytes = outq_len(c->q);
            if (res > 0) c->peer->st.writes++;
        }
    }
    if (res < 0 && !c->closing) conn_close(c, AL_LOG_WARN, "send failed", res);
    if (c->closing) {
        conn_maybe_free(c);
        return;
    }
    r->depth++;
    if (c->recv_paused && outq_len(c->q) <= r->queue_limit) {
        c->recv_paused = false;
        conn_process(c);
        if (!c->closing) conn_post_recv(c);
    }
    if (!c->closing) conn_flush(c);
    r->depth--;
    conn_maybe_free(c);
}

/* Starts the next send if none is pending: the rest of the HELLO, else a queued PING at a
 * frame boundary, else everything queued and unwritten (at most SEND_MAX, one gathered send
 * over the queue's chunks). An inbound connection marked close_after_flush closes once its
 * queue is empty. */
static void conn_flush(rpc_conn *c)
{
    if (c->closing || c->send_pending || c->fd < 0) return;
    const uint8_t *p = NULL;
    size_t n = 0;
    if (!c->inbound && c->hello_sent < c->hello_len) {
        p = c->hello_buf + c->hello_sent;
        n = c->hello_len - c->hello_sent;
        c->sending = SEND_HELLO;
    } else if (c->ready && c->ping_queued && c->q->sent == 0) { /* at a frame boundary */
        p = c->ping_buf + c->ping_sent;
        n = RPC_HDR_SIZE - c->ping_sent;
        c->sending = SEND_PING;
    } else if (c->ready || c->inbound) {
        outq *q = c->q;
        size_t avail = outq_len(q) - q->sent;
        if (!avail) {
            if (c->close_after_flush) conn_close(c, AL_LOG_DEBUG, "refusal sent", 0);
            return;
        }
        int niov = outq_iov(q, c->siov, SEND_IOV, SEND_MAX);
        AL_ASSERT(niov > 0);
        memset(&c->smsg, 0, sizeof(c->smsg));
        c->smsg.msg_iov = c->siov;
        c->smsg.msg_iovlen = (size_t)niov;
        q->inflight = true;
        c->sending = SEND_Q;
    } else {
        return;
    }
    c->send_pending = true;
    c->send_start_ns = now_ns(c->r);
    c->send_op = (io_op){.cb = conn_on_send, .ctx = c};
    if (c->sending == SEND_Q) io_sendmsg(c->r->io, &c->send_op, c->fd, &c->smsg);
    else io_send(c->r->io, &c->send_op, c->fd, p, n);
}

/* ---- connections: receiving ---- */

static void conn_on_recv(io_op *op);

/* Posts a receive into the free end of the buffer, unless an inbound connection's answers
 * are over the queue limit (then reading pauses until they are sent). */
static void conn_post_recv(rpc_conn *c)
{
    rpc *r = c->r;
    if (c->closing || c->recv_pending || c->recv_paused) return;
    if (c->inbound && outq_len(c->q) > r->queue_limit) {
        c->recv_paused = true; /* answers pile up: read more once they are sent */
        r->st.recv_pauses++;
        return;
    }
    AL_ASSERT(c->rlen < c->rcap);
    c->recv_pending = true;
    c->recv_op = (io_op){.cb = conn_on_recv, .ctx = c};
    io_recv(r->io, &c->recv_op, c->fd, c->rbuf + c->rlen, c->rcap - c->rlen);
}

/* Makes the receive buffer hold need bytes from rpos (compacting, growing at most twice as
 * far as what is already there). Returns 0 or -ENOMEM. */
static int conn_rbuf_room(rpc_conn *c, size_t need)
{
    size_t have = c->rlen - c->rpos;
    if (c->rpos > 0) {
        memmove(c->rbuf, c->rbuf + c->rpos, have);
        c->rlen = have;
        c->rpos = 0;
    }
    if (c->rcap >= need && c->rlen < c->rcap) return 0;
    size_t ncap = AL_MIN(need, AL_MAX((size_t)RBUF_MIN, 2 * AL_MAX(c->rcap, have)));
    if (ncap <= c->rlen) ncap = c->rlen + RBUF_MIN;
    uint8_t *nb = realloc(c->rbuf, ncap);
    if (!nb) return -ENOMEM;
    c->rbuf = nb;
    c->rcap = ncap;
    return 0;
}

/* Counts a received frame on the endpoint and on the sender's peer entry, if it has one. */
static void peer_count_in(rpc *r, rpc_conn *c, size_t fs)
{
    r->st.msgs_in++;
    r->st.bytes_in += fs;
    rpc_peer *p = c->peer ? c->peer : peer_by_id(r, c->remote_id);
    if (p) {
        p->st.msgs_in++;
        p->st.bytes_in += fs;
    }
}

/* Encodes this node's HELLO payload. Returns its size (or AL_ETOOLARGE for a short buf). */
static int hello_make(rpc *r, uint8_t *buf, size_t cap)
{
    rpc_hello h = {.min_version = RPC_VERSION, .max_version = RPC_VERSION,
                   .node_id = r->node_id};
    snprintf(h.cluster_id, sizeof(h.cluster_id), "%s", r->cluster_id);
    snprintf(h.addr, sizeof(h.addr), "%s", r->adv_addr);
    return rpc_hello_encode(&h, buf, cap);
}

/* Queues an error answer on inbound connection c. */
static void conn_answer_error(rpc_conn *c, uint16_t type, uint64_t corr, int err, const char *t)
{
    uint8_t buf[1100];
    int n = rpc_error_encode(err, t, buf, sizeof(buf));
    AL_ASSERT(n > 0);
    if (outq_append(c->q, RPC_F_RESPONSE | RPC_F_ERROR, type, corr, buf, (size_t)n) != 0)
        conn_close(c, AL_LOG_WARN, "out of memory queueing an answer", -ENOMEM);
}

/* Inbound: the first frame must be a HELLO request. */
static void conn_inbound_hello(rpc_conn *c, const rpc_hdr *h, const uint8_t *payload)
{
    rpc *r = c->r;
    if (h->type != RPC_T_HELLO || !(h->flags & RPC_F_REQUEST)) {
        r->st.frame_errors++;
        conn_close(c, AL_LOG_WARN, "the first message is not a HELLO", AL_EMALFORMED);
        return;
    }
    rpc_hello hi;
    int err = rpc_hello_decode(payload, h->len, &hi);
    if (err) {
        r->st.frame_errors++;
        conn_close(c, AL_LOG_WARN, "malformed HELLO", err);
        return;
    }
    c->remote_id = hi.node_id;
    snprintf(c->remote_addr, sizeof(c->remote_addr), "%s", hi.addr);
    char why[300] = "";
    if (hi.min_version > RPC_VERSION || hi.max_version < RPC_VERSION)
        snprintf(why, sizeof(why), "it speaks rpc protocol versions %u..%u, this node only %u",
                 hi.min_version, hi.max_version, RPC_VERSION);
    else if (hi.cluster_id[0] && r->cluster_id[0] && strcmp(hi.cluster_id, r->cluster_id))
        snprintf(why, sizeof(why),
                 "it belongs to cluster '%s', this node to cluster '%s' (check seed_servers)",
                 hi.cluster_id, r->cluster_id);
    if (why[0]) {
        r->st.hello_rejects++;
        log_warn("rpc", "refusing node %" PRId32 " (%s): %s", hi.node_id, hi.addr, why);
        conn_answer_error(c, RPC_T_HELLO, h->corr, AL_EINVAL, why);
        c->close_after_flush = true;
        reactor_timer_cancel(r->shard, &c->timer);
        return;
    }
    uint8_t buf[RPC_HELLO_MAX_SIZE];
    int n = hello_make(r, buf, sizeof(buf));
    AL_ASSERT(n > 0);
    if (outq_append(c->q, RPC_F_RESPONSE, RPC_T_HELLO, h->corr, buf, (size_t)n) != 0) {
        conn_close(c, AL_LOG_WARN, "out of memory", -ENOMEM);
        return;
    }
    c->ready = true;
    reactor_timer_add(r->shard, &c->timer, now_ns(r) + r->keepalive_ms * 500000ull, NULL);
    log_debug("rpc", "inbound connection %" PRIu64 " is node %" PRId32 " (%s)", c->id,
              hi.node_id, hi.addr);
}

/* Outbound: the answer to our HELLO. */
static void conn_outbound_hello(rpc_conn *c, const rpc_hdr *h, const uint8_t *payload)
{
    rpc *r = c->r;
    rpc_peer *p = c->peer;
    char name[160];
    peer_name(p, name, sizeof(name));
    if (h->type != RPC_T_HELLO || !(h->flags & RPC_F_RESPONSE)) {
        r->st.frame_errors++;
        conn_close(c, AL_LOG_WARN, "the first answer is not a HELLO", AL_EMALFORMED);
        return;
    }
    if (h->flags & RPC_F_ERROR) {
        int err;
        char text[300];
        rpc_error_decode(payload, h->len, &err, text, sizeof(text));
        r->st.hello_rejects++;
        log_error("rpc", "%s refused this node: %s", name, text);
        snprintf(p->refusal, sizeof(p->refusal), "%s refused this node: %s", name, text);
        conn_close(c, AL_LOG_DEBUG, "HELLO refused", AL_EINVAL);
        return;
    }
    rpc_hello hi;
    int err = rpc_hello_decode(payload, h->len, &hi);
    if (err) {
        r->st.frame_errors++;
        conn_close(c, AL_LOG_WARN, "malformed HELLO answer", err);
        return;
    }
    const char *why = NULL;
    char wbuf[300];
    if (hi.min_version > RPC_VERSION || hi.max_version < RPC_VERSION) {
        snprintf(wbuf, sizeof(wbuf), "it speaks rpc protocol versions %u..%u, this node only %u",
                 hi.min_version, hi.max_version, RPC_VERSION);
        why = wbuf;
    } else if (p->node_id >= 0 && hi.node_id != p->node_id) {
        snprintf(wbuf, sizeof(wbuf),
                 "it says it is node %" PRId32 " but the peer table has node %" PRId32
                 " at that address (check the addresses and node ids)", hi.node_id, p->node_id);
        why = wbuf;
    } else if (hi.cluster_id[0] && r->cluster_id[0] && strcmp(hi.cluster_id, r->cluster_id)) {
        snprintf(wbuf, sizeof(wbuf), "it belongs to cluster '%s', this node to cluster '%s'",
                 hi.cluster_id, r->cluster_id);
        why = wbuf;
    }
    if (why) {
        r->st.hello_rejects++;
        log_error("rpc", "refusing %s: %s", name, why);
        snprintf(p->refusal, sizeof(p->refusal), "refusing %s: %s", name, why);
        conn_close(c, AL_LOG_DEBUG, "HELLO mismatch", AL_EINVAL);
        return;
    }
    c->remote_id = hi.node_id;
    snprintf(c->remote_addr, sizeof(c->remote_addr), "%s", hi.addr);
    p->learned_id = hi.node_id;
    if (p->node_id < 0 && hi.node_id >= 0 && !peer_by_id(r, hi.node_id)) {
        p->node_id = hi.node_id;
        p->st.node = hi.node_id;
    }
    c->ready = true;
    p->state = P_READY;
    p->st.connects++;
    p->st.connected = true;
    if (p->fails) log_info("rpc", "connected to %s after %" PRIu32 " failed attempts",
                           peer_name(p, name, sizeof(name)), p->fails);
    else log_debug("rpc", "connected to %s", peer_name(p, name, sizeof(name)));
    p->fails = 0;
    p->backoff_ms = r->backoff_min_ms;
    reactor_timer_add(r->shard, &c->timer, now_ns(r) + r->keepalive_ms * 500000ull, NULL);
}

/* Runs the handler of a one-way message or call; a call nobody handles is answered with
 * AL_ENOTFOUND, a one-way message nobody handles is counted and dropped. */
static void dispatch_message(rpc_conn *c, const rpc_hdr *h, const uint8_t *payload)
{
    rpc *r = c->r;
    struct rpc_handler *hd = &r->handlers[h->type];
    bool is_call = (h->flags & RPC_F_REQUEST) != 0;
    if (!hd->fn) {
        r->st.no_handler++;
        log_debug("rpc", "no handler for message type %u from node %" PRId32, h->type,
                  c->remote_id);
        if (is_call) {
            char t[128];
            snprintf(t, sizeof(t), "node %" PRId32 " has no handler for message type %u",
                     r->node_id, h->type);
            conn_answer_error(c, h->type, h->corr, AL_ENOTFOUND, t);
        }
        return;
    }
    rpc_msg m = {.from = c->remote_id, .type = h->type, .is_call = is_call,
                 .token = {c->id, h->corr, h->type}, .payload = payload, .len = h->len,
                 .from_addr = c->remote_addr};
    hd->fn(r, hd->ctx, &m);
}

/* Ends the call an answer belongs to (ignored if the call already ended). */
static void dispatch_response(rpc_conn *c, const rpc_hdr *h, const uint8_t *payload)
{
    rpc_pcall *k = call_find(c->peer, h->corr);
    if (!k) {
        log_debug("rpc", "answer %" PRIu64 " from node %" PRId32 " came after its call ended",
                  h->corr, c->remote_id);
        return;
    }
    call_unlink(k);
    if (h->flags & RPC_F_ERROR) {
        int err;
        char text[300];
        rpc_error_decode(payload, h->len, &err, text, sizeof(text));
        call_finish(k, err, c->remote_id, NULL, 0, text);
    } else {
        call_finish(k, 0, c->remote_id, payload, h->len, NULL);
    }
}

/* One received frame: HELLO first in both directions, then requests and one-way messages on
 * inbound connections, answers on outbound ones; anything else closes the connection. */
static void conn_dispatch(rpc_conn *c, const rpc_hdr *h, const uint8_t *payload)
{
    rpc *r = c->r;
    peer_count_in(r, c, RPC_HDR_SIZE + h->len);
    if (c->inbound) {
        if (!c->ready) {
            if (!c->close_after_flush) conn_inbound_hello(c, h, payload);
            conn_flush(c);
            return;
        }
        if ((h->flags & RPC_F_RESPONSE) || h->type == RPC_T_HELLO) {
            r->st.frame_errors++;
            conn_close(c, AL_LOG_WARN, "unexpected answer or HELLO on an inbound connection",
                       AL_EMALFORMED);
            return;
        }
        if (h->type == RPC_T_PING) {
            if ((h->flags & RPC_F_REQUEST) &&
                outq_append(c->q, RPC_F_RESPONSE, RPC_T_PING, h->corr, NULL, 0) != 0)
                conn_close(c, AL_LOG_WARN, "out of memory", -ENOMEM);
        } else {
            dispatch_message(c, h, payload);
        }
        conn_flush(c);
    } else {
        if (!c->ready) {
            conn_outbound_hello(c, h, payload);
            if (c->ready) conn_flush(c);
            return;
        }
        if (!(h->flags & RPC_F_RESPONSE) || h->type == RPC_T_HELLO) {
            r->st.frame_errors++;
            conn_close(c, AL_LOG_WARN, "a request on an outbound connection", AL_EMALFORMED);
            return;
        }
        if (h->type != RPC_T_PING) dispatch_response(c, h, payload); /* a PING answer: alive */
    }
}

/* Handles the complete frames in the receive buffer and makes room for the next. */
static void conn_process(rpc_conn *c)
{
    rpc *r = c->r;
    c->in_dispatch++;
    size_t need = RPC_HDR_SIZE;
    for (int i = 0; i < DISPATCH_MAX && !c->closing && !c->recv_paused; i++) {
        rpc_hdr h;
        int64_t n = rpc_frame_decode(c->rbuf + c->rpos, c->rlen - c->rpos, r->max_frame, &h);
        if (n < 0) {
            r->st.frame_errors++;
            const char *why = n == AL_ETOOLARGE      ? "frame length over max_frame_bytes"
                              : n == AL_ECORRUPT     ? "checksum mismatch"
                              : n == AL_EUNSUPPORTED ? "unsupported frame version"
                                                     : "malformed frame";
            conn_close(c, AL_LOG_WARN, why, (int)n);
            break;
        }
        if (n == 0) {
            if (c->rlen - c->rpos >= RPC_HDR_SIZE) need = RPC_HDR_SIZE + (size_t)h.len;
            break;
        }
        const uint8_t *payload = c->rbuf + c->rpos + RPC_HDR_SIZE;
        c->rpos += (size_t)n;
        conn_dispatch(c, &h, payload);
        if (c->inbound && outq_len(c->q) > r->queue_limit) {
            c->recv_paused = true;
            r->st.recv_pauses++;
        }
    }
    c->in_dispatch--;
    if (c->closing) return;
    if (c->rpos == c->rlen) {
        c->rpos = c->rlen = 0;
        if (c->rcap > RBUF_SHRINK) {
            free(c->rbuf);
            c->rbuf = malloc(RBUF_MIN);
            c->rcap = c->rbuf ? RBUF_MIN : 0;
            if (!c->rbuf) conn_close(c, AL_LOG_ERROR, "out of memory", -ENOMEM);
        }
    }
    if (!c->closing && conn_rbuf_room(c, need) != 0)
        conn_close(c, AL_LOG_ERROR, "out of memory for a receive buffer", -ENOMEM);
}

/* Bytes arrived (or EOF / an error, which close the connection): handle the frames. */
static void conn_on_recv(io_op *op)
{
    rpc_conn *c = op->ctx;
    rpc *r = c->r;
    c->recv_pending = false;
    if (op->res <= 0 || c->closing) {
        if (!c->closing) {
            if (op->res == 0) conn_close(c, AL_LOG_DEBUG, "the peer closed it", 0);
            else conn_close(c, AL_LOG_INFO, "receive failed", op->res);
        }
        conn_maybe_free(c);
        return;
    }
    c->rlen += (size_t)op->res;
    c->last_recv_ns = now_ns(r);
    r->depth++;
    conn_process(c);
    if (!c->closing) conn_post_recv(c);
    r->depth--;
    conn_maybe_free(c);
}

/* A connected socket: allocates the receive buffer, starts reading and sending. 0 or ENOMEM. */
static int conn_start_io(rpc_conn *c)
{
    c->rbuf = malloc(RBUF_MIN);
    if (!c->rbuf) return -ENOMEM;
    c->rcap = RBUF_MIN;
    conn_post_recv(c);
    conn_flush(c);
    return 0;
}

/* A ready connection's keepalive tick (every K/2): ping an idle peer, close a silent one. */
static void conn_keepalive(rpc_conn *c)
{
    rpc *r = c->r;
    uint64_t now = now_ns(r), k = r->keepalive_ms * 1000000ull;
    uint64_t quiet = now - c->last_recv_ns;
    /* Outbound: a PING written 2K ago is still unanswered (it jumps the queue, so a backlog
     * does not delay it much), or a send has made no progress for 2K (the peer stopped
     * reading). Inbound: nothing for 3K although the other side pings every K when idle. */
    bool unanswered = c->ping_written_ns > c->last_recv_ns && now - c->ping_written_ns >= 2 * k;
    bool stalled = c->send_pending &&
                   now - AL_MAX(c->send_start_ns, c->last_send_ns) >= 2 * k;
    bool silent = c->inbound ? quiet >= 3 * k : unanswered || stalled;
    if (silent && !c->suspect) {
        /* Look again after this shard has polled its completions once more: a shard that was
         * busy for a while runs its timers before the completions that piled up meanwhile. */
        c->suspect = true;
        reactor_timer_add(r->shard, &c->timer, now + k / 8, NULL);
        return;
    }
    c->suspect = false;
    if (silent) {
        char why[96];
        snprintf(why, sizeof(why), "%s for %" PRIu64 " ms (keepalive)",
                 c->inbound ? "nothing received" : stalled ? "no send progress"
                                                           : "no answer to a PING",
                 (c->inbound ? quiet : stalled ? now - AL_MAX(c->send_start_ns, c->last_send_ns)
                                               : now - c->ping_written_ns) / 1000000u);
        r->st.keepalive_closes++;
        conn_close(c, AL_LOG_WARN, why, AL_ETIMEDOUT);
        return;
    }
    if (!c->inbound && quiet >= k && !c->ping_queued && c->ping_written_ns <= c->last_recv_ns) {
        rpc_hdr_encode(c->ping_buf, RPC_F_REQUEST, RPC_T_PING, 0, NULL, 0);
        c->ping_queued = true;
        c->ping_sent = 0;
        conn_flush(c);
    }
    reactor_timer_add(r->shard, &c->timer, now + k / 2, NULL);
}

/* The connection timer: the connect + HELLO deadline before ready, the keepalive after. */
static void conn_timer_cb(reactor_timer *t)
{
    rpc_conn *c = t->ctx;
    rpc *r = c->r;
    if (c->closing) return;
    r->depth++;
    if (c->ready) {
        conn_keepalive(c);
    } else {
        char why[96];
        snprintf(why, sizeof(why), "%s not done within %" PRIu32 " ms",
                 c->fd < 0 ? "connect" : "HELLO", r->connect_timeout_ms);
        conn_close(c, c->inbound ? AL_LOG_WARN : AL_LOG_DEBUG, why, AL_ETIMEDOUT);
    }
    r->depth--;
    conn_maybe_free(c);
}

/* ---- outbound connections ---- */

static void conn_on_connect(io_op *op)
{
    rpc_conn *c = op->ctx;
    rpc *r = c->r;
    c->connect_pending = false;
    if (op->res >= 0) {
        c->fd = op->res;
        if (!c->closing) {
            int n = hello_make(r, c->hello_buf + RPC_HDR_SIZE, RPC_HELLO_MAX_SIZE);
            AL_ASSERT(n > 0);
            rpc_hdr_encode(c->hello_buf, RPC_F_REQUEST, RPC_T_HELLO, 0,
                           c->hello_buf + RPC_HDR_SIZE, (uint32_t)n);
            c->hello_len = RPC_HDR_SIZE + (size_t)n;
            r->depth++;
            if (conn_start_io(c) != 0) conn_close(c, AL_LOG_ERROR, "out of memory", -ENOMEM);
            r->depth--;
        }
    } else if (!c->closing) {
        conn_close(c, AL_LOG_DEBUG, "connect failed", op->res);
    }
    conn_maybe_free(c);
}

/* Opens p's outbound connection if it has none, is not backing off, and something waits. */
static void peer_kick(rpc_peer *p)
{
    rpc *r = p->r;
    if (r->stopping || p->conn || p->state == P_BACKOFF) return;
    if (!outq_len(&p->q) && !p->calls_head) return;
    rpc_conn *c = conn_new(r, false);
    if (!c) return; /* retried on the next send */
    c->peer = p;
    c->q = &p->q;
    p->conn = c;
    p->state = P_CONNECTING;
    c->connect_pending = true;
    c->connect_op = (io_op){.cb = conn_on_connect, .ctx = c};
    io_connect(r->io, &c->connect_op, p->host, p->port);
    reactor_timer_add(r->shard, &c->timer, now_ns(r) + r->connect_timeout_ms * 1000000ull, NULL);
}

/* The backoff is over: connect again if anything waits. */
static void peer_timer_cb(reactor_timer *t)
{
    rpc_peer *p = t->ctx;
    if (p->state != P_BACKOFF) return;
    p->state = P_IDLE;
    p->r->depth++;
    peer_kick(p);
    p->r->depth--;
}

/* Queues a frame for p and gets it moving. */
static int peer_enqueue(rpc_peer *p, uint8_t flags, uint16_t type, uint64_t corr,
                        const void *payload, size_t len)
{
    rpc *r = p->r;
    /* A one-way message to a peer whose last connect failed (backoff) is dropped now: queued,
     * it would wait for the peer's return and arrive stale (a Raft append from before a log
     * cut, many megabytes of them); its senders resend what still matters. */
    if (corr == 0 && !p->conn && p->state == P_BACKOFF) {
        p->st.dropped++;
        return AL_ECLOSED;
    }
    size_t used = outq_len(&p->q);
    if (used > 0 && used + RPC_HDR_SIZE + len > r->queue_limit) {
        p->st.send_full++;
        return AL_EFULL;
    }
    int err = outq_append(&p->q, flags, type, corr, payload, len);
    if (err) return err;
    p->st.queued_bytes = outq_len(&p->q);
    if (p->conn) conn_flush(p->conn);
    else peer_kick(p);
    return 0;
}

/* ---- listener ---- */

static void accept_arm(rpc *r);

static void accept_timer_cb(reactor_timer *t)
{
    rpc *r = t->ctx;
    if (!r->stopping && !r->accept_pending) accept_arm(r);
}

/* A connection arrived on the listener (or the accept ended: re-armed, or closed when
 * stopping). New inbound connections must send HELLO within connect_timeout_ms. */
static void on_accept(io_op *op)
{
    rpc *r = op->ctx;
    if (!(op->flags & IO_F_MORE)) r->accept_pending = false;
    r->depth++;
    if (op->res >= 0) {
        int fd = op->res;
        rpc_conn *c = NULL;
        if (r->stopping) {
            io_close_now(r->io, fd);
        } else if (r->nin >= INBOUND_MAX || !(c = conn_new(r, true))) {
            log_warn("rpc", "refusing an inbound connection: %s", r->nin >= INBOUND_MAX
                     ? "too many inbound connections" : "out of memory");
            io_close_now(r->io, fd);
        } else {
            c->fd = fd;
            c->next_in = r->in_head;
            if (r->in_head) r->in_head->prev_in = c;
            r->in_head = c;
            r->nin++;
            r->st.conns_accepted++;
            r->st.conns_in_now = r->nin;
            reactor_timer_add(r->shard, &c->timer,
                              now_ns(r) + r->connect_timeout_ms * 1000000ull, NULL);
            if (conn_start_io(c) != 0) conn_close(c, AL_LOG_ERROR, "out of memory", -ENOMEM);
            conn_maybe_free(c);
        }
    } else if (op->res != -ECANCELED && !r->stopping) {
        log_warn("rpc", "accept on port %u failed: %s", r->port, al_strerror(op->res));
    }
    if (!r->accept_pending) {
        if (r->stopping) {
            if (r->lfd >= 0) io_close_now(r->io, r->lfd);
            r->lfd = -1;
        } else if (op->res < 0) {
            reactor_timer_add(r->shard, &r->accept_timer, now_ns(r) + ACCEPT_RETRY_NS, NULL);
        } else {
            accept_arm(r);
        }
    }
    r->depth--;
    rpc_maybe_free(r);
}

static void accept_arm(rpc *r)
{
    r->accept_pending = true;
    r->accept_op = (io_op){.cb = on_accept, .ctx = r};
    io_accept(r->io, &r->accept_op, r->lfd);
}

/* ---- the endpoint ---- */

static bool valid_cluster_id(const char *s)
{
    return !s || strlen(s) <= RPC_CLUSTER_ID_MAX;
}

int rpc_create(const struct rpc_opts *o, rpc **out)
{
    *out = NULL;
    if (!o || !o->shard || o->node_id < -1 || !valid_cluster_id(o->cluster_id) ||
        (o->advertised_addr && strlen(o->advertised_addr) > RPC_ADDR_MAX))
        return AL_EINVAL;
    rpc *r = calloc(1, sizeof(*r));
    if (!r) return -ENOMEM;
    r->shard = o->shard;
    r->io = reactor_io(o->shard);
    r->shard_idx = reactor_shard_index(o->shard);
    r->node_id = o->node_id;
    snprintf(r->cluster_id, sizeof(r->cluster_id), "%s", o->cluster_id ? o->cluster_id : "");
    r->max_frame = o->max_frame_bytes ? o->max_frame_bytes : RPC_MAX_FRAME_DEFAULT;
    r->queue_limit = o->peer_queue_bytes ? o->peer_queue_bytes : 64ull << 20;
    r->backoff_min_ms = o->backoff_min_ms ? o->backoff_min_ms : 50;
    r->backoff_max_ms = AL_MAX(r->backoff_min_ms, o->backoff_max_ms ? o->backoff_max_ms : 5000);
    r->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 3000;
    r->keepalive_ms = o->keepalive_ms ? o->keepalive_ms : 2000;
    reactor_timer_init(&r->accept_timer, accept_timer_cb, r);
    reactor_timer_init(&r->xret_timer, xret_timer_cb, r);
    const char *host = o->listen_host && *o->listen_host ? o->listen_host : NULL;
    int fd = io_listen(r->io, host, o->listen_port, false, 128);
    if (fd < 0) {
        log_error("rpc", "cannot listen on %s:%u: %s%s", host ? host : "0.0.0.0", o->listen_port,
                  al_strerror(fd), fd == -EADDRINUSE ? " (another process holds the rpc port: "
                                                       "stop it or change rpc_addr)" : "");
        free(r);
        return fd;
    }
    int port = io_local_port(r->io, fd);
    if (port < 0) {
        io_close_now(r->io, fd);
        free(r);
        return port;
    }
    r->lfd = fd;
    r->port = (uint16_t)port;
    if (o->advertised_addr)
        snprintf(r->adv_addr, sizeof(r->adv_addr), "%s", o->advertised_addr);
    else
        snprintf(r->adv_addr, sizeof(r->adv_addr), "%s:%u", host ? host : "127.0.0.1", r->port);
    accept_arm(r);
    log_debug("rpc", "node %" PRId32 " listening for rpc on port %u", r->node_id, r->port);
    *out = r;
    return 0;
}

uint16_t rpc_port(const rpc *r)
{
    return r->port;
}

int32_t rpc_node_id(const rpc *r)
{
    return r->node_id;
}

unsigned rpc_shard_index(const rpc *r)
{
    return r->shard_idx;
}

int rpc_set_node_id(rpc *r, int32_t node_id)
{
    if (node_id < -1) return AL_EINVAL;
    r->node_id = node_id;
    return 0;
}

int rpc_set_cluster_id(rpc *r, const char *cluster_id)
{
    if (!valid_cluster_id(cluster_id)) return AL_EINVAL;
    snprintf(r->cluster_id, sizeof(r->cluster_id), "%s", cluster_id ? cluster_id : "");
    return 0;
}

/* Frees the stopped endpoint once nothing refers to it any more (no connection, accept op,
 * forwarded message, and none of its functions on the stack), then runs the done callback. */
static void rpc_maybe_free(rpc *r)
{
    if (!r->stopping || r->freed || r->depth > 0 || r->accept_pending || r->nconns > 0 ||
        __atomic_load_n(&r->xinflight, __ATOMIC_ACQUIRE) > 0)
        return;
    r->freed = true;
    AL_ASSERT(r->xret_head == NULL);
    reactor_timer_cancel(r->shard, &r->accept_timer);
    reactor_timer_cancel(r->shard, &r->xret_timer);
    if (r->lfd >= 0) io_close_now(r->io, r->lfd);
    for (uint32_t i = 0; i < r->npeers; i++) peer_free(r->peers[i]);
    free(r->peers);
    pool_free(&r->pool);
    void (*done)(void *) = r->done;
    void *arg = r->done_arg;
    free(r);
    if (done) done(arg);
}

void rpc_stop(rpc *r, void (*done)(void *arg), void *arg)
{
    if (r->stopping) return;
    __atomic_store_n(&r->stopping, 1, __ATOMIC_SEQ_CST);
    r->done = done;
    r->done_arg = arg;
    r->depth++;
    reactor_timer_cancel(r->shard, &r->accept_timer);
    if (r->accept_pending) io_cancel(r->io, &r->accept_op);
    for (uint32_t i = 0; i < r->npeers; i++) {
        rpc_peer *p = r->peers[i];
        reactor_timer_cancel(r->shard, &p->timer);
        p->state = P_IDLE;
        if (p->conn) {
            conn_close(p->conn, AL_LOG_DEBUG, "endpoint stopping", 0);
            conn_maybe_free(p->conn);
        }
    }
    rpc_conn *c = r->in_head;
    for (uint32_t i = 0; c && i < INBOUND_MAX + 1; i++) {
        rpc_conn *next = c->next_in;
        conn_close(c, AL_LOG_DEBUG, "endpoint stopping", 0);
        conn_maybe_free(c);
        c = next;
    }
    for (uint32_t i = 0; i < r->npeers; i++) {
        rpc_peer *p = r->peers[i];
        calls_fail(calls_detach(p, false), AL_ECLOSED, "the rpc endpoint is stopping");
    }
    r->depth--;
    rpc_maybe_free(r);
}

int rpc_peer_set(rpc *r, int32_t node, const char *host, uint16_t port)
{
    if (r->stopping) return AL_ECLOSED;
    if (node < 0 || !host || !*host || strlen(host) >= sizeof(((rpc_peer *)0)->host) ||
        port == 0)
        return AL_EINVAL;
    rpc_peer *p = peer_by_id(r, node);
    if (p) {
        if (p->port == port && !strcmp(p->host, host)) return 0;
        log_info("rpc", "node %" PRId32 " moved from %s to %s:%u", node, p->addr, host, port);
        snprintf(p->host, sizeof(p->host), "%s", host);
        p->port = port;
        snprintf(p->addr, sizeof(p->addr), "%s:%u", host, port);
        if (p->conn) {
            r->depth++;
            conn_close(p->conn, AL_LOG_INFO, "its address changed", 0);
            conn_maybe_free(p->conn);
            r->depth--;
        }
        return 0;
    }
    p = peer_by_addr(r, host, port);
    if (p && p->node_id < 0) {
        p->node_id = node;
        p->st.node = node;
        return 0;
    }
    return peer_new(r, node, host, port) ? 0 : AL_EFULL;
}

int rpc_peer_remove(rpc *r, int32_t node)
{
    if (r->stopping) return AL_ECLOSED;
    rpc_peer *p = peer_by_id(r, node);
    if (!p) return AL_ENOTFOUND;
    for (uint32_t i = 0; i < r->npeers; i++) {
        if (r->peers[i] == p) {
            r->peers[i] = r->peers[--r->npeers];
            break;
        }
    }
    r->st.peers = r->npeers;
    p->removed = true;
    char name[160], text[220];
    snprintf(text, sizeof(text), "%s was removed from the peer table",
             peer_name(p, name, sizeof(name)));
    log_info("rpc", "%s", text);
    r->depth++;
    reactor_timer_cancel(r->shard, &p->timer);
    rpc_pcall *calls = calls_detach(p, false);
    if (p->conn) {
        rpc_conn *c = p->conn;
        conn_close(c, AL_LOG_DEBUG, "its node was removed", 0);
        conn_maybe_free(c); /* frees p with it when nothing is pending */
    } else {
        peer_free(p);
    }
    calls_fail(calls, AL_ECLOSED, text);
    r->depth--;
    rpc_maybe_free(r);
    return 0;
}

int rpc_handler_set(rpc *r, uint16_t type, rpc_handler_fn fn, void *ctx)
{
    if (type < RPC_T_RAFT || type >= RPC_T_MAX) return AL_EINVAL;
    r->handlers[type] = (struct rpc_handler){fn, fn ? ctx : NULL};
    return 0;
}

/* The inbound connection with that id, or NULL (closed and freed). */
static rpc_conn *inbound_by_id(rpc *r, uint64_t id)
{
    rpc_conn *c = r->in_head;
    for (uint32_t i = 0; c && i <= INBOUND_MAX; i++, c = c->next_in)
        if (c->id == id) return c;
    return NULL;
}

/* Queues an answer (ok: payload; else an error) on the call's connection. */
static int reply_queue(rpc *r, rpc_token t, bool ok, int err, const void *payload, size_t len,
                       const char *text)
{
    if (r->stopping) return AL_ECLOSED;
    rpc_conn *c = inbound_by_id(r, t.conn);
    if (!c || c->closing || !c->ready) return AL_ECLOSED;
    if (ok && len > r->max_frame) return AL_ETOOLARGE;
    uint16_t type = t.type >= RPC_T_RAFT && t.type < RPC_T_MAX ? t.type : RPC_T_USER;
    if (ok) {
        int e = outq_append(c->q, RPC_F_RESPONSE, type, t.corr, payload, len);
        if (e) return e;
    } else {
        conn_answer_error(c, type, t.corr, err < 0 ? err : AL_EFAILED, text);
        if (c->closing) return -ENOMEM;
    }
    if (!c->in_dispatch) conn_flush(c); /* else the dispatch loop flushes */
    return 0;
}

int rpc_reply(rpc *r, rpc_token t, const void *payload, size_t len)
{
    return reply_queue(r, t, true, 0, payload, len, NULL);
}

int rpc_reply_error(rpc *r, rpc_token t, int err, const char *text)
{
    return reply_queue(r, t, false, err, NULL, 0, text);
}

/* Common argument checks of sends and calls. */
static int send_check(rpc *r, uint16_t type, size_t len)
{
    if (r->stopping) return AL_ECLOSED;
    if (type < RPC_T_RAFT || type >= RPC_T_MAX) return AL_EINVAL;
    if (len > r->max_frame) return AL_ETOOLARGE;
    return 0;
}

int rpc_send(rpc *r, int32_t node, uint16_t type, const void *payload, size_t len)
{
    int err = send_check(r, type, len);
    if (err) return err;
    rpc_peer *p = peer_by_id(r, node);
    if (!p) return AL_ENOTFOUND;
    r->depth++;
    err = peer_enqueue(p, 0, type, 0, payload, len);
    r->depth--;
    return err;
}

/* Registers a call on p, queues its request and arms its deadline. 0 or the enqueue error
 * (then the call is forgotten and cb never runs). */
static int call_start(rpc *r, rpc_peer *p, uint16_t type, const void *payload, size_t len,
                      uint32_t timeout_ms, rpc_call_cb cb, void *ctx)
{
    rpc_pcall *k = calloc(1, sizeof(*k));
    if (!k) return -ENOMEM;
    k->r = r;
    k->peer = p;
    k->corr = ++r->next_corr;
    k->type = type;
    k->timeout_ms = timeout_ms ? timeout_ms : 10000;
    k->cb = cb;
    k->ctx = ctx;
    reactor_timer_init(&k->timer, call_timer_cb, k);
    /* Linked first: the frame's write (never inline, but keep the order obvious) finds it. */
    k->prev = p->calls_tail;
    if (p->calls_tail) p->calls_tail->next = k;
    else p->calls_head = k;
    p->calls_tail = k;
    p->ncalls++;
    r->depth++;
    int err = peer_enqueue(p, RPC_F_REQUEST, type, k->corr, payload, len);
    r->depth--;
    if (err) {
        call_unlink(k);
        free(k);
        return err;
    }
    r->st.calls++;
    reactor_timer_add(r->shard, &k->timer, now_ns(r) + k->timeout_ms * 1000000ull, NULL);
    return 0;
}

int rpc_call(rpc *r, int32_t node, uint16_t type, const void *payload, size_t len,
             uint32_t timeout_ms, rpc_call_cb cb, void *ctx)
{
    int err = send_check(r, type, len);
    if (err) return err;
    if (!cb) return AL_EINVAL;
    rpc_peer *p = peer_by_id(r, node);
    if (!p) return AL_ENOTFOUND;
    return call_start(r, p, type, payload, len, timeout_ms, cb, ctx);
}

int rpc_call_addr(rpc *r, const char *host, uint16_t port, uint16_t type, const void *payload,
                  size_t len, uint32_t timeout_ms, rpc_call_cb cb, void *ctx)
{
    int err = send_check(r, type, len);
    if (err) return err;
    if (!cb || !host || !*host || strlen(host) >= sizeof(((rpc_peer *)0)->host) || !port)
        return AL_EINVAL;
    rpc_peer *p = peer_by_addr(r, host, port);
    if (!p && !(p = peer_new(r, -1, host, port))) return AL_EFULL;
    return call_start(r, p, type, payload, len, timeout_ms, cb, ctx);
}

/* ---- sends from other shards ---- */

struct rpc_fwd {
    rpc *r;
    int32_t node;
    uint16_t type;
    size_t len;
    uint8_t data[];
};

/* On the rpc's shard: a message forwarded by rpc_send_from; its send result is only counted. */
static void fwd_arrived(reactor_shard *self, const struct reactor_msg *m)
{
    struct rpc_fwd *f = m->arg;
    rpc *r = f->r;
    AL_ASSERT(reactor_shard_index(self) == r->shard_idx);
    r->st.forwarded++;
    int err = rpc_send(r, f->node, f->type, f->data, f->len);
    if (err) r->st.forward_dropped++;
    free(f);
    __atomic_sub_fetch(&r->xinflight, 1, __ATOMIC_ACQ_REL);
    rpc_maybe_free(r);
}

int rpc_send_from(reactor_shard *self, rpc *r, int32_t node, uint16_t type, const void *payload,
                  size_t len)
{
    if (reactor_shard_index(self) == r->shard_idx) return rpc_send(r, node, type, payload, len);
    if (type < RPC_T_RAFT || type >= RPC_T_MAX) return AL_EINVAL;
    struct rpc_fwd *f = malloc(sizeof(*f) + len);
    if (!f) return -ENOMEM;
    f->r = r;
    f->node = node;
    f->type = type;
    f->len = len;
    if (len) memcpy(f->data, payload, len);
    __atomic_add_fetch(&r->xinflight, 1, __ATOMIC_ACQ_REL);
    struct reactor_msg m = {fwd_arrived, f, 0, 0};
    int err = reactor_send(self, r->shard_idx, &m);
    if (err) {
        __atomic_sub_fetch(&r->xinflight, 1, __ATOMIC_ACQ_REL);
        free(f);
    }
    return err;
}

/* ---- calls from other shards ---- */

struct rpc_xcall {
    rpc *r;
    struct rpc_xcall *next;  /* on r's return queue */
    unsigned origin;
    int32_t node;
    uint16_t type;
    uint32_t timeout_ms;
    rpc_call_cb cb;
    void *ctx;
    /* the result, carried back */
    int err;
    int32_t from;
    uint8_t *res;
    size_t res_len;
    char text[320];
    size_t len;
    uint8_t data[];
};

/* On the origin shard: the result is here. */
static void xcall_back(reactor_shard *self, const struct reactor_msg *m)
{
    struct rpc_xcall *x = m->arg;
    rpc_result res = {x->err, x->from, x->res, x->res_len, x->text};
    x->cb(x->ctx, &res);
    free(x->res);
    free(x);
}

/* On the rpc's shard: sends the result home, or queues it while the ring is full. */
static void xcall_return(rpc *r, struct rpc_xcall *x)
{
    struct reactor_msg m = {xcall_back, x, 0, 0};
    int err = r->xret_head ? AL_EFULL : reactor_send(r->shard, x->origin, &m);
    if (err == AL_EFULL) {
        x->next = NULL;
        if (r->xret_tail) r->xret_tail->next = x;
        else r->xret_head = x;
        r->xret_tail = x;
        if (!reactor_timer_armed(&r->xret_timer))
            reactor_timer_add(r->shard, &r->xret_timer, now_ns(r) + 1000000ull, NULL);
        return;
    }
    if (err) { /* the reactor is stopping: nobody is left to tell */
        free(x->res);
        free(x);
    }
    __atomic_sub_fetch(&r->xinflight, 1, __ATOMIC_ACQ_REL);
}

/* Retries sending queued call results home (the rings were full). */
static void xret_timer_cb(reactor_timer *t)
{
    rpc *r = t->ctx;
    for (int i = 0; i < 100000 && r->xret_head; i++) {
        struct rpc_xcall *x = r->xret_head;
        struct reactor_msg m = {xcall_back, x, 0, 0};
        int err = reactor_send(r->shard, x->origin, &m);
        if (err == AL_EFULL) break;
        r->xret_head = x->next;
        if (!r->xret_head) r->xret_tail = NULL;
        if (err) {
            free(x->res);
            free(x);
        }
        __atomic_sub_fetch(&r->xinflight, 1, __ATOMIC_ACQ_REL);
    }
    if (r->xret_head) reactor_timer_add(r->shard, &r->xret_timer, now_ns(r) + 1000000ull, NULL);
    rpc_maybe_free(r);
}

/* The forwarded call ended: copy the result and send it home. */
static void xcall_done(void *ctx, const rpc_result *res)
{
    struct rpc_xcall *x = ctx;
    x->err = res->err;
    x->from = res->from;
    snprintf(x->text, sizeof(x->text), "%s", res->err_text ? res->err_text : "");
    if (res->len) {
        x->res = malloc(res->len);
        if (x->res) {
            memcpy(x->res, res->payload, res->len);
            x->res_len = res->len;
        } else {
            x->err = -ENOMEM;
        }
    }
    xcall_return(x->r, x);
}

/* On the rpc's shard: a call forwarded from another shard. */
static void xcall_arrived(reactor_shard *self, const struct reactor_msg *m)
{
    struct rpc_xcall *x = m->arg;
    rpc *r = x->r;
    int err = rpc_call(r, x->node, x->type, x->data, x->len, x->timeout_ms, xcall_done, x);
    if (err) {
        x->err = err;
        x->from = -1;
        snprintf(x->text, sizeof(x->text), "the call could not be queued: %s",
                 al_strerror(err));
        xcall_return(r, x);
    }
    rpc_maybe_free(r);
}

int rpc_call_from(reactor_shard *self, rpc *r, int32_t node, uint16_t type, const void *payload,
                  size_t len, uint32_t timeout_ms, rpc_call_cb cb, void *ctx)
{
    if (reactor_shard_index(self) == r->shard_idx)
        return rpc_call(r, node, type, payload, len, timeout_ms, cb, ctx);
    if (!cb || type < RPC_T_RAFT || type >= RPC_T_MAX) return AL_EINVAL;
    struct rpc_xcall *x = calloc(1, sizeof(*x) + len);
    if (!x) return -ENOMEM;
    x->r = r;
    x->origin = reactor_shard_index(self);
    x->node = node;
    x->type = type;
    x->timeout_ms = timeout_ms;
    x->cb = cb;
    x->ctx = ctx;
    x->len = len;
    if (len) memcpy(x->data, payload, len);
    __atomic_add_fetch(&r->xinflight, 1, __ATOMIC_ACQ_REL);
    struct reactor_msg m = {xcall_arrived, x, 0, 0};
    int err = reactor_send(self, r->shard_idx, &m);
    if (err) {
        __atomic_sub_fetch(&r->xinflight, 1, __ATOMIC_ACQ_REL);
        free(x);
    }
    return err;
}

/* ---- after a simulated crash ---- */

/* Frees a connection's memory without any I/O (its node crashed). */
static void conn_free_crashed(rpc_conn *c)
{
    reactor_timer_cancel(c->r->shard, &c->timer);
    free(c->rbuf);
    outq_release(&c->own_q);
    free(c);
}

void rpc_free_crashed(rpc *r)
{
    for (rpc_conn *c = r->in_head, *next; c; c = next) {
        next = c->next_in;
        conn_free_crashed(c);
    }
    reactor_timer_cancel(r->shard, &r->accept_timer);
    reactor_timer_cancel(r->shard, &r->xret_timer);
    for (struct rpc_xcall *x = r->xret_head, *next; x; x = next) {
        next = x->next;
        free(x->res);
        free(x);
    }
    for (uint32_t i = 0; i < r->npeers; i++) {
        rpc_peer *p = r->peers[i];
        if (p->conn) conn_free_crashed(p->conn);
        for (rpc_pcall *k = p->calls_head, *next; k; k = next) {
            next = k->next;
            reactor_timer_cancel(r->shard, &k->timer);
            free(k);
        }
        reactor_timer_cancel(r->shard, &p->timer);
        outq_release(&p->q);
        free(p);
    }
    free(r->peers);
    pool_free(&r->pool);
    free(r);
}

/* ---- counters ---- */

void rpc_stats_get(rpc *r, struct rpc_stats *out)
{
    *out = r->st;
}

static void peer_stats_fill(rpc_peer *p, struct rpc_peer_stats *out)
{
    *out = p->st;
    out->node = p->node_id;
    snprintf(out->addr, sizeof(out->addr), "%s", p->addr);
    out->queued_bytes = outq_len(&p->q);
}

int rpc_peer_stats_get(rpc *r, int32_t node, struct rpc_peer_stats *out)
{
    rpc_peer *p = peer_by_id(r, node);
    if (!p) return AL_ENOTFOUND;
    peer_stats_fill(p, out);
    return 0;
}

int rpc_peer_stats_at(rpc *r, uint32_t i, struct rpc_peer_stats *out)
{
    if (i >= r->npeers) return AL_ENOTFOUND;
    peer_stats_fill(r->peers[i], out);
    return 0;
}
