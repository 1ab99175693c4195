/*
 * kclient.c — the Kafka client connection (async on io.h), its blocking wrapper for tools, the
 * produce batch builder and the fetch record iterator. See kclient.h for the contracts.
 *
 * Wire handling: requests are encoded straight into a queue buffer; one send op at a time
 * drains the buffer being sent while new requests accumulate in the other (swap on
 * completion). Responses are read into one growing buffer, cut into frames, matched in order
 * against a ring of pending requests (Kafka answers a connection's requests in order) and
 * decoded into a per-connection arena that is reset after each callback.
 */
#include "client/kclient.h"

#include "base/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <lz4frame.h>
#include <snappy-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <zlib.h>
#include <zstd.h>

enum {
    KC_RBUF_INIT = 64 * 1024,
    KC_SBUF_INIT = 64 * 1024,
    KC_ERR_UNSUPPORTED_VERSION = 35,
};

struct kc_pending {
    int32_t corr;
    int16_t api_key;
    int16_t ver;
    uint64_t deadline;
    kclient_resp_cb cb;
    void *ctx;
};

struct kc_buf {
    uint8_t *p;
    size_t len, cap, off;
};

struct kclient {
    io *io;
    char client_id[128];
    char host[64];
    uint64_t timeout_ns;
    uint32_t max_inflight;
    uint32_t max_frame;
    int fd;
    bool open, closed, ready;
    bool conn_pending, recv_pending, send_pending, timer_pending;
    io_op conn_op, recv_op, send_op, timer_op;
    struct kc_buf rbuf, sbuf, qbuf;
    struct kc_pending *ring;
    uint32_t head, count;
    int32_t next_corr;
    int16_t versions[KAFKA_API_COUNT];
    kafka_arena arena;
    kclient_conn_cb conn_cb;
    void *conn_ctx;
    /* The raw body of the response being delivered (for the sync layer). */
    const uint8_t *cur_body;
    size_t cur_body_len;
};

static void kc_recv_arm(kclient *c);
static void kc_send_kick(kclient *c);
static void kc_fail_all(kclient *c, int err);

/* Grows b so that `need` more bytes fit after len. Returns 0 or -ENOMEM. */
static int kc_buf_reserve(struct kc_buf *b, size_t need)
{
    if (b->len + need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + need) cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) return -ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

int kclient_create(kclient **out, io *iop, const struct kclient_opts *opts)
{
    struct kclient_opts o = opts ? *opts : (struct kclient_opts){0};
    if (!iop) return AL_EINVAL;
    kclient *c = calloc(1, sizeof(*c));
    if (!c) return -ENOMEM;
    c->io = iop;
    snprintf(c->client_id, sizeof(c->client_id), "%s", o.client_id ? o.client_id
                                                                    : "ailurus-client");
    c->timeout_ns = (uint64_t)(o.timeout_ms ? o.timeout_ms : 30000) * 1000000ull;
    c->max_inflight = o.max_inflight ? o.max_inflight : 1024;
    c->max_frame = o.max_frame ? o.max_frame : 64u << 20;
    c->fd = -1;
    c->next_corr = 1;
    for (int i = 0; i < KAFKA_API_COUNT; i++) c->versions[i] = -1;
    c->ring = calloc(c->max_inflight, sizeof(*c->ring));
    if (!c->ring || kc_buf_reserve(&c->rbuf, KC_RBUF_INIT) ||
        kc_buf_reserve(&c->sbuf, KC_SBUF_INIT) || kc_buf_reserve(&c->qbuf, KC_SBUF_INIT)) {
        free(c->ring);
        free(c->rbuf.p);
        free(c->sbuf.p);
        free(c->qbuf.p);
        free(c);
        return -ENOMEM;
    }
    kafka_arena_init(&c->arena, (size_t)c->max_frame * 32 + 4096);
    *out = c;
    return 0;
}

bool kclient_ready(const kclient *c) { return c->ready && c->open && !c->closed; }

int16_t kclient_api_version(const kclient *c, int16_t api_key)
{
    if (api_key < 0 || api_key >= KAFKA_API_COUNT) return -1;
    return c->versions[api_key];
}

uint32_t kclient_inflight(const kclient *c) { return c->count; }

size_t kclient_queued_bytes(const kclient *c)
{
    return c->qbuf.len + (c->sbuf.len - c->sbuf.off);
}

bool kclient_busy(const kclient *c)
{
    return c->conn_pending || c->recv_pending || c->send_pending || c->timer_pending;
}

/* Closes the fd once no op refers to it any more (after kclient_close). */
static void kc_maybe_finish(kclient *c)
{
    if (c->closed && !kclient_busy(c) && c->fd >= 0) {
        io_close_now(c->io, c->fd);
        c->fd = -1;
    }
}

void kclient_close(kclient *c)
{
    if (c->closed) return;
    c->closed = true;
    c->open = false;
    c->ready = false;
    if (c->conn_pending) io_cancel(c->io, &c->conn_op);
    if (c->recv_pending) io_cancel(c->io, &c->recv_op);
    if (c->send_pending) io_cancel(c->io, &c->send_op);
    if (c->timer_pending) io_cancel(c->io, &c->timer_op);
    kc_fail_all(c, AL_ECLOSED);
    if (c->conn_cb) {
        kclient_conn_cb cb = c->conn_cb;
        c->conn_cb = NULL;
        cb(c, c->conn_ctx, AL_ECLOSED);
    }
    kc_maybe_finish(c);
}

void kclient_free(kclient *c)
{
    if (!c) return;
    AL_ASSERT(!kclient_busy(c));
    if (c->fd >= 0) io_close_now(c->io, c->fd);
    kafka_arena_free(&c->arena);
    free(c->ring);
    free(c->rbuf.p);
    free(c->sbuf.p);
    free(c->qbuf.p);
    free(c);
}

/* Fails every pending request with err (callbacks run here). */
static void kc_fail_all(kclient *c, int err)
{
    for (uint32_t guard = 0; c->count > 0 && guard < c->max_inflight; guard++) {
        struct kc_pending p = c->ring[c->head];
        c->head = (c->head + 1) % c->max_inflight;
        c->count--;
        if (p.cb) p.cb(c, p.ctx, err, p.api_key, p.ver, NULL);
    }
}

/* A fatal connection error: log once, close. */
static void kc_fail(kclient *c, int err, const char *what)
{
    if (c->closed) return;
    log_debug("client", "%s:%s failed: %d (%s)", c->host, what, err,
              err < 0 && err > -4096 ? strerror(-err) : "protocol");
    /* The head request gets the specific error, the rest AL_ECLOSED. */
    if (c->count > 0 && err != AL_ECLOSED) {
        struct kc_pending p = c->ring[c->head];
        c->head = (c->head + 1) % c->max_inflight;
        c->count--;
        if (p.cb) p.cb(c, p.ctx, err, p.api_key, p.ver, NULL);
    }
    if (c->conn_cb) {
        kclient_conn_cb cb = c->conn_cb;
        c->conn_cb = NULL;
        cb(c, c->conn_ctx, err);
    }
    kclient_close(c);
}

/* ---- timer ---- */

static void kc_timer_cb(io_op *op)
{
    kclient *c = op->ctx;
    c->timer_pending = false;
    if (c->closed) {
        kc_maybe_finish(c);
        return;
    }
    if (c->count == 0) return;
    uint64_t now = io_now_ns(c->io);
    struct kc_pending *h = &c->ring[c->head];
    if (h->deadline <= now) {
        kc_fail(c, AL_ETIMEDOUT, "request timeout");
        return;
    }
    c->timer_pending = true;
    io_timeout(c->io, &c->timer_op, h->deadline);
}

static void kc_timer_arm(kclient *c)
{
    if (c->timer_pending || c->closed || c->count == 0) return;
    c->timer_pending = true;
    c->timer_op.cb = kc_timer_cb;
    c->timer_op.ctx = c;
    io_timeout(c->io, &c->timer_op, c->ring[c->head].deadline);
}

/* ---- sending ---- */

static void kc_send_cb(io_op *op)
{
    kclient *c = op->ctx;
    c->send_pending = false;
    if (c->closed) {
        kc_maybe_finish(c);
        return;
    }
    if (op->res <= 0) {
        kc_fail(c, op->res < 0 ? op->res : AL_ECLOSED, "send");
        return;
    }
    c->sbuf.off += (size_t)op->res;
    kc_send_kick(c);
}

/* Starts a send if none is in flight and bytes are waiting. */
static void kc_send_kick(kclient *c)
{
    if (c->send_pending || c->closed || !c->open) return;
    if (c->sbuf.off >= c->sbuf.len) {
        if (c->qbuf.len == 0) return;
        struct kc_buf t = c->sbuf;
        c->sbuf = c->qbuf;
        c->qbuf = t;
        c->qbuf.len = 0;
        c->qbuf.off = 0;
        c->sbuf.off = 0;
    }
    c->send_pending = true;
    c->send_op.cb = kc_send_cb;
    c->send_op.ctx = c;
    io_send(c->io, &c->send_op, c->fd, c->sbuf.p + c->sbuf.off, c->sbuf.len - c->sbuf.off);
}

int kclient_send_v(kclient *c, int16_t api_key, int16_t version, const void *req,
                   kclient_resp_cb cb, void *ctx)
{
    if (c->closed) return AL_ECLOSED;
    const struct kafka_api_info *info = kafka_api_info(api_key);
    if (!info || version < info->min_version || version > info->max_version)
        return AL_EUNSUPPORTED;
    bool no_resp = api_key == KAFKA_API_PRODUCE && ((const kafka_ProduceRequest *)req)->Acks == 0;
    if (!no_resp && c->count >= c->max_inflight) return AL_EFULL;
    kafka_RequestHeader h;
    kafka_RequestHeader_init(&h);
    h.RequestApiKey = api_key;
    h.RequestApiVersion = version;
    h.CorrelationId = c->next_corr;
    h.ClientId = kafka_str_from(c->client_id);
    int16_t hv = kafka_request_header_version(api_key, version);
    size_t hsz = kafka_RequestHeader_size(hv, &h);
    size_t bsz = kafka_request_size(api_key, version, req);
    if (bsz == 0) return AL_EINVAL;
    size_t total = 4 + hsz + bsz;
    if (total > INT32_MAX) return AL_ETOOLARGE;
    if (kc_buf_reserve(&c->qbuf, total)) return -ENOMEM;
    al_wr wr = al_wr_make(c->qbuf.p + c->qbuf.len, total);
    al_wr_i32(&wr, (int32_t)(total - 4));
    int rc = kafka_RequestHeader_encode(&wr, hv, &h);
    if (rc == 0) rc = kafka_request_encode(api_key, version, &wr, req);
    if (rc == 0 && wr.p != wr.end) rc = AL_EINVAL;
    if (rc < 0) return rc;
    c->qbuf.len += total;
    c->next_corr = c->next_corr == INT32_MAX ? 1 : c->next_corr + 1;
    if (!no_resp) {
        uint32_t slot = (c->head + c->count) % c->max_inflight;
        c->ring[slot] = (struct kc_pending){h.CorrelationId, api_key, version,
                                            io_now_ns(c->io) + c->timeout_ns, cb, ctx};
        c->count++;
        kc_timer_arm(c);
    }
    kc_send_kick(c);
    if (no_resp && cb) cb(c, ctx, 0, api_key, version, NULL);
    return 0;
}

int kclient_send(kclient *c, int16_t api_key, const void *req, kclient_resp_cb cb, void *ctx)
{
    int16_t v = kclient_api_version(c, api_key);
    if (v < 0) return c->closed ? AL_ECLOSED : AL_EUNSUPPORTED;
    return kclient_send_v(c, api_key, v, req, cb, ctx);
}

/* ---- receiving ---- */

/* Handles one complete response frame body (after the size). Returns 0 or an error that
 * closes the connection. */
static int kc_on_frame(kclient *c, const uint8_t *p, size_t len)
{
    if (c->count == 0 || len < 4) return AL_EMALFORMED;
    struct kc_pending pend = c->ring[c->head];
    if ((int32_t)al_be32(p) != pend.corr) return AL_EMALFORMED;
    c->head = (c->head + 1) % c->max_inflight;
    c->count--;
    al_rd rd = al_rd_make(p, len);
    kafka_ResponseHeader rh;
    kafka_arena_reset(&c->arena);
    int16_t hv = kafka_response_header_version(pend.api_key, pend.ver);
    int rc = kafka_ResponseHeader_decode(&rd, hv, &rh, &c->arena);
    if (rc < 0) return rc;
    const uint8_t *body = rd.p;
    size_t body_len = al_rd_left(&rd);
    void *resp = kafka_arena_alloc(&c->arena, kafka_response_struct_size(pend.api_key));
    if (!resp) return -ENOMEM;
    int16_t ver = pend.ver;
    rc = kafka_response_decode(pend.api_key, ver, &rd, resp, &c->arena);
    if (rc < 0 && pend.api_key == KAFKA_API_API_VERSIONS && ver > 0) {
        /* A broker that does not know our ApiVersions version answers in v0. */
        rd = al_rd_make(body, body_len);
        ver = 0;
        rc = kafka_response_decode(pend.api_key, ver, &rd, resp, &c->arena);
    }
    if (rc < 0) {
        if (pend.cb) pend.cb(c, pend.ctx, AL_EMALFORMED, pend.api_key, pend.ver, NULL);
        return AL_EMALFORMED;
    }
    c->cur_body = body;
    c->cur_body_len = body_len;
    if (pend.cb) pend.cb(c, pend.ctx, 0, pend.api_key, ver, resp);
    c->cur_body = NULL;
    return 0;
}

static void kc_recv_cb(io_op *op)
{
    kclient *c = op->ctx;
    c->recv_pending = false;
    if (c->closed) {
        kc_maybe_finish(c);
        return;
    }
    if (op->res <= 0) {
        kc_fail(c, op->res < 0 ? op->res : AL_ECLOSED, "recv");
        return;
    }
    c->rbuf.len += (size_t)op->res;
    size_t pos = 0;
    /* Bounded: every iteration consumes at least one 4-byte frame header. */
    while (!c->closed && c->rbuf.len - pos >= 4) {
        int32_t sz = (int32_t)al_be32(c->rbuf.p + pos);
        if (sz < 4 || (uint32_t)sz > c->max_frame) {
            kc_fail(c, AL_EMALFORMED, "frame size");
            return;
        }
        if (c->rbuf.len - pos - 4 < (size_t)sz) {
            if (pos == 0 && kc_buf_reserve(&c->rbuf, (size_t)sz + 4 - c->rbuf.len)) {
                kc_fail(c, -ENOMEM, "recv buffer");
                return;
            }
            break;
        }
        int rc = kc_on_frame(c, c->rbuf.p + pos + 4, (size_t)sz);
        if (c->closed) return; /* a callback closed us; the buffer is no longer ours to read */
        if (rc < 0) {
            kc_fail(c, rc, "response");
            return;
        }
        pos += 4 + (size_t)sz;
    }
    if (pos > 0) {
        memmove(c->rbuf.p, c->rbuf.p + pos, c->rbuf.len - pos);
        c->rbuf.len -= pos;
    }
    kc_recv_arm(c);
}

static void kc_recv_arm(kclient *c)
{
    if (c->recv_pending || c->closed) return;
    if (c->rbuf.cap - c->rbuf.len < 4096 && kc_buf_reserve(&c->rbuf, 4096)) {
        kc_fail(c, -ENOMEM, "recv buffer");
        return;
    }
    c->recv_pending = true;
    c->recv_op.cb = kc_recv_cb;
    c->recv_op.ctx = c;
    io_recv(c->io, &c->recv_op, c->fd, c->rbuf.p + c->rbuf.len, c->rbuf.cap - c->rbuf.len);
}

/* ---- connect and handshake ---- */

static void kc_handshake_cb(kclient *c, void *ctx, int err, int16_t api_key, int16_t ver,
                            const void *resp);

static int kc_send_api_versions(kclient *c, int16_t ver)
{
    kafka_ApiVersionsRequest r;
    kafka_ApiVersionsRequest_init(&r);
    if (ver >= 3) {
        r.ClientSoftwareName = kafka_str_from("ailurus-client");
        r.ClientSoftwareVersion = kafka_str_from("0.1");
    }
    return kclient_send_v(c, KAFKA_API_API_VERSIONS, ver, &r, kc_handshake_cb, NULL);
}

static void kc_handshake_cb(kclient *c, void *ctx, int err, int16_t api_key, int16_t ver,
                            const void *resp)
{
    AL_UNUSED(ctx);
    AL_UNUSED(api_key);
    if (err < 0) return; /* kc_fail/close reports to conn_cb */
    const kafka_ApiVersionsResponse *r = resp;
    if (r->ErrorCode == KC_ERR_UNSUPPORTED_VERSION && ver > 0) {
        int rc = kc_send_api_versions(c, 0);
        if (rc < 0) kc_fail(c, rc, "ApiVersions v0");
        return;
    }
    if (r->ErrorCode != 0) {
        kc_fail(c, AL_EUNSUPPORTED, "ApiVersions");
        return;
    }
    for (int32_t i = 0; i < r->ApiKeys_count; i++) {
        const kafka_ApiVersionsResponse_ApiVersion *k = &r->ApiKeys[i];
        const struct kafka_api_info *info = kafka_api_info(k->ApiKey);
        if (!info) continue;
        int16_t v = AL_MIN(info->max_version, k->MaxVersion);
        if (v < AL_MAX(info->min_version, k->MinVersion)) continue;
        c->versions[k->ApiKey] = v;
    }
    c->ready = true;
    if (c->conn_cb) {
        kclient_conn_cb cb = c->conn_cb;
        c->conn_cb = NULL;
        cb(c, c->conn_ctx, 0);
    }
}

static void kc_connect_cb(io_op *op)
{
    kclient *c = op->ctx;
    c->conn_pending = false;
    if (c->closed) {
        if (op->res >= 0) c->fd = op->res;
        kc_maybe_finish(c);
        return;
    }
    if (op->res < 0) {
        kc_fail(c, op->res, "connect");
        return;
    }
    c->fd = op->res;
    c->open = true;
    kc_recv_arm(c);
    int rc = kc_send_api_versions(c, 3);
    if (rc < 0) kc_fail(c, rc, "ApiVersions");
}

void kclient_connect(kclient *c, const char *host, uint16_t port, kclient_conn_cb cb,
                     void *ctx)
{
    AL_ASSERT(!c->conn_pending && !c->open && !c->closed);
    snprintf(c->host, sizeof(c->host), "%s:%u", host, port);
    c->conn_cb = cb;
    c->conn_ctx = ctx;
    c->conn_pending = true;
    c->conn_op.cb = kc_connect_cb;
    c->conn_op.ctx = c;
    io_connect(c->io, &c->conn_op, host, port);
}

/* ---- blocking API ---- */

struct kclient_sync {
    io *io;
    kclient *c;
    uint32_t timeout_ms;
    bool done;
    int err;
    int16_t ver;
    const void *resp;
    struct kc_buf body;
    kafka_arena arena;
    kafka_arena *keep_arena; /* kclient_sync_call_into: decode into the caller's arena ... */
    void *keep_resp;         /* ... and struct */
};

int kclient_parse_addr(const char *hp, char *host, size_t host_cap, uint16_t *port)
{
    if (!hp) return AL_EINVAL;
    const char *colon = strrchr(hp, ':');
    if (!colon || colon == hp) return AL_EINVAL;
    const char *h = hp;
    size_t hl = (size_t)(colon - hp);
    if (h[0] == '[') {
        if (hl < 2 || h[hl - 1] != ']') return AL_EINVAL;
        h++;
        hl -= 2;
    }
    if (hl == 0 || hl >= host_cap) return AL_EINVAL;
    char *end = NULL;
    long p = strtol(colon + 1, &end, 10);
    if (!end || *end || p <= 0 || p > 65535) return AL_EINVAL;
    memcpy(host, h, hl);
    host[hl] = 0;
    *port = (uint16_t)p;
    return 0;
}

static void ks_conn_cb(kclient *c, void *ctx, int err)
{
    AL_UNUSED(c);
    kclient_sync *s = ctx;
    s->done = true;
    s->err = err;
}

/* Polls s->io until s->done or the deadline. Returns 0 or AL_ETIMEDOUT / -errno. */
static int ks_wait(kclient_sync *s, uint64_t deadline)
{
    for (uint64_t guard = 0; !s->done && guard < (1ull << 40); guard++) {
        if (io_now_ns(s->io) >= deadline) return AL_ETIMEDOUT;
        int rc = io_poll(s->io, deadline);
        if (rc < 0 && rc != -EINTR) return rc;
    }
    return 0;
}

/* Closes s->c, polls until its ops are done and frees it (s->c becomes NULL). */
static void ks_drop_client(kclient_sync *s)
{
    if (!s->c) return;
    kclient_close(s->c);
    for (int guard = 0; kclient_busy(s->c) && guard < 100000; guard++)
        io_poll(s->io, io_now_ns(s->io) + 100000000ull);
    if (!kclient_busy(s->c)) kclient_free(s->c);
    s->c = NULL;
}

/* Creates s->c, connects it to the numeric host and waits for the handshake (until deadline).
 * Returns 0 or an error (s->c dropped again). */
static int ks_connect_one(kclient_sync *s, const char *host, uint16_t port, uint64_t deadline)
{
    struct kclient_opts o = {.timeout_ms = s->timeout_ms};
    int rc = kclient_create(&s->c, s->io, &o);
    if (rc < 0) return rc;
    s->done = false;
    s->err = 0;
    kclient_connect(s->c, host, port, ks_conn_cb, s);
    rc = ks_wait(s, deadline);
    if (rc == 0) rc = s->err;
    if (rc < 0) ks_drop_client(s);
    return rc;
}

/* Resolves a host name (blocking getaddrinfo) and tries each address in turn until one
 * connects or the deadline passes. Returns 0 or the last error (AL_ENOTFOUND: no address). */
static int ks_connect_name(kclient_sync *s, const char *host, uint16_t port, uint64_t deadline)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(host, NULL, &hints, &res) || !res) return AL_ENOTFOUND;
    int rc = AL_ENOTFOUND, tried = 0;
    for (struct addrinfo *ai = res; ai && tried < 16; ai = ai->ai_next, tried++) {
        char num[INET6_ADDRSTRLEN];
        const void *a = ai->ai_family == AF_INET
                            ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
                            : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
        if (!inet_ntop(ai->ai_family, a, num, sizeof(num))) continue;
        rc = ks_connect_one(s, num, port, deadline);
        if (rc == 0 || rc == AL_ETIMEDOUT) break;
    }
    freeaddrinfo(res);
    return rc;
}

int kclient_sync_open(kclient_sync **out, const char *host_port, uint32_t timeout_ms)
{
    char host[256];
    uint16_t port;
    int rc = kclient_parse_addr(host_port, host, sizeof(host), &port);
    if (rc < 0) return rc;
    kclient_sync *s = calloc(1, sizeof(*s));
    if (!s) return -ENOMEM;
    s->timeout_ms = timeout_ms ? timeout_ms : 30000;
    kafka_arena_init(&s->arena, (size_t)2 << 30);
    rc = io_uring_create(&s->io, NULL);
    if (rc < 0) goto fail;
    uint64_t deadline = io_now_ns(s->io) + (uint64_t)s->timeout_ms * 1000000ull;
    uint8_t bin[16];
    if (inet_pton(AF_INET, host, bin) == 1 || inet_pton(AF_INET6, host, bin) == 1)
        rc = ks_connect_one(s, host, port, deadline);
    else rc = ks_connect_name(s, host, port, deadline);
    if (rc < 0) goto fail;
    *out = s;
    return 0;
fail:
    kclient_sync_close(s);
    return rc;
}

bool kclient_sync_ready(kclient_sync *s) { return s->c && kclient_ready(s->c); }

void kclient_sync_close(kclient_sync *s)
{
    if (!s) return;
    ks_drop_client(s);
    if (s->io) io_destroy(s->io);
    kafka_arena_free(&s->arena);
    free(s->body.p);
    free(s);
}

kclient *kclient_sync_client(kclient_sync *s) { return s->c; }

static void ks_resp_cb(kclient *c, void *ctx, int err, int16_t api_key, int16_t ver,
                       const void *resp)
{
    kclient_sync *s = ctx;
    s->done = true;
    s->err = err;
    s->ver = ver;
    if (err < 0 || !resp) return; /* failed, or acks=0 Produce (no response) */
    if (s->keep_arena) {
        /* The caller's arena holds the bytes and the decoded struct: kept as long as it is. */
        uint8_t *b = kafka_arena_alloc(s->keep_arena, c->cur_body_len + 1);
        if (!b) {
            s->err = -ENOMEM;
            return;
        }
        memcpy(b, c->cur_body, c->cur_body_len);
        kafka_response_init(api_key, s->keep_resp);
        al_rd rd = al_rd_make(b, c->cur_body_len);
        int rc = kafka_response_decode(api_key, ver, &rd, s->keep_resp, s->keep_arena);
        if (rc < 0) s->err = rc == -ENOMEM ? rc : AL_EMALFORMED;
        else s->resp = s->keep_resp;
        return;
    }
    /* Keep a copy of the body and decode it again so the result outlives the callback. */
    s->body.len = 0;
    if (kc_buf_reserve(&s->body, c->cur_body_len + 1)) {
        s->err = -ENOMEM;
        return;
    }
    memcpy(s->body.p, c->cur_body, c->cur_body_len);
    s->body.len = c->cur_body_len;
    kafka_arena_reset(&s->arena);
    void *r = kafka_arena_alloc(&s->arena, kafka_response_struct_size(api_key));
    if (!r) {
        s->err = -ENOMEM;
        return;
    }
    al_rd rd = al_rd_make(s->body.p, s->body.len);
    int rc = kafka_response_decode(api_key, ver, &rd, r, &s->arena);
    if (rc < 0) {
        s->err = rc;
        return;
    }
    s->resp = r;
}

/* Sends req at version v (< 0: negotiated) and waits for ks_resp_cb. Returns 0 or an error. */
static int ks_call(kclient_sync *s, int16_t api_key, int16_t v, const void *req)
{
    s->done = false;
    s->err = 0;
    s->resp = NULL;
    if (!s->c) return AL_ECLOSED;
    int rc = v < 0 ? kclient_send(s->c, api_key, req, ks_resp_cb, s)
                   : kclient_send_v(s->c, api_key, v, req, ks_resp_cb, s);
    if (rc < 0) return rc;
    /* The client's own timer fails the request at the timeout; wait a little longer. */
    uint64_t deadline = io_now_ns(s->io) + (uint64_t)s->timeout_ms * 1000000ull + 1000000000ull;
    rc = ks_wait(s, deadline);
    if (rc < 0) {
        kclient_close(s->c); /* runs ks_resp_cb with AL_ECLOSED */
        return rc;
    }
    return s->err < 0 ? s->err : 0;
}

int kclient_sync_call(kclient_sync *s, int16_t api_key, const void *req, const void **resp,
                      int16_t *ver)
{
    int rc = ks_call(s, api_key, -1, req);
    if (rc < 0) return rc;
    if (api_key == KAFKA_API_PRODUCE && !s->resp) {
        *resp = NULL; /* acks=0 */
        if (ver) *ver = s->ver;
        return 0;
    }
    *resp = s->resp;
    if (ver) *ver = s->ver;
    return 0;
}

int kclient_sync_call_into(kclient_sync *s, int16_t api_key, int16_t max_version,
                           const void *req, void *resp, kafka_arena *arena, int16_t *ver)
{
    if (!s->c) return AL_ECLOSED;
    int16_t v = kclient_api_version(s->c, api_key);
    if (v < 0) return kclient_ready(s->c) ? AL_EUNSUPPORTED : AL_ECLOSED;
    if (max_version >= 0 && max_version < v) v = max_version;
    kafka_response_init(api_key, resp);
    s->keep_arena = arena;
    s->keep_resp = resp;
    int rc = ks_call(s, api_key, v, req);
    s->keep_arena = NULL;
    s->keep_resp = NULL;
    if (rc < 0) return rc;
    if (ver) *ver = s->ver;
    return 0;
}

static bool ks_str_eq(kafka_str a, const char *b)
{
    size_t n = strlen(b);
    return a.len >= 0 && (size_t)a.len == n && memcmp(a.ptr, b, n) == 0;
}

static void ks_format_addr(char *out, size_t cap, kafka_str host, int32_t port)
{
    bool v6 = host.len > 0 && memchr(host.ptr, ':', (size_t)host.len);
    snprintf(out, cap, v6 ? "[%.*s]:%d" : "%.*s:%d", host.len > 0 ? (int)host.len : 0,
             host.len > 0 ? host.ptr : "", (int)port);
}

int kclient_sync_leader(kclient_sync *s, const char *topic, int32_t partition, char *out,
                        size_t cap)
{
    kafka_MetadataRequest req;
    kafka_MetadataRequest_init(&req);
    kafka_MetadataRequest_MetadataRequestTopic t;
    kafka_MetadataRequest_MetadataRequestTopic_init(&t);
    t.Name = kafka_str_from(topic);
    req.Topics_count = 1;
    req.Topics = &t;
    req.AllowAutoTopicCreation = false;
    const void *rp;
    int rc = kclient_sync_call(s, KAFKA_API_METADATA, &req, &rp, NULL);
    if (rc < 0) return rc;
    const kafka_MetadataResponse *r = rp;
    for (int32_t i = 0; i < r->Topics_count; i++) {
        const kafka_MetadataResponse_MetadataResponseTopic *tp = &r->Topics[i];
        if (!ks_str_eq(tp->Name, topic)) continue;
        if (tp->ErrorCode) return tp->ErrorCode;
        for (int32_t j = 0; j < tp->Partitions_count; j++) {
            const kafka_MetadataResponse_MetadataResponsePartition *pp = &tp->Partitions[j];
            if (pp->PartitionIndex != partition) continue;
            if (pp->ErrorCode) return pp->ErrorCode;
            for (int32_t b = 0; b < r->Brokers_count; b++) {
                if (r->Brokers[b].NodeId != pp->LeaderId) continue;
                ks_format_addr(out, cap, r->Brokers[b].Host, r->Brokers[b].Port);
                return 0;
            }
            return AL_ENOTFOUND;
        }
    }
    return AL_ENOTFOUND;
}

int kclient_sync_coordinator(kclient_sync *s, const char *key, int8_t key_type, char *out,
                             size_t cap)
{
    kafka_FindCoordinatorRequest req;
    kafka_FindCoordinatorRequest_init(&req);
    int16_t v = kclient_api_version(s->c, KAFKA_API_FIND_COORDINATOR);
    if (v < 0) return AL_EUNSUPPORTED;
    kafka_str k = kafka_str_from(key);
    req.KeyType = key_type;
    if (v >= 4) {
        req.CoordinatorKeys_count = 1;
        req.CoordinatorKeys = &k;
    } else {
        req.Key = k;
    }
    const void *rp;
    int rc = kclient_sync_call(s, KAFKA_API_FIND_COORDINATOR, &req, &rp, NULL);
    if (rc < 0) return rc;
    const kafka_FindCoordinatorResponse *r = rp;
    if (v >= 4) {
        if (r->Coordinators_count < 1) return AL_ENOTFOUND;
        const kafka_FindCoordinatorResponse_Coordinator *co = &r->Coordinators[0];
        if (co->ErrorCode) return co->ErrorCode;
        ks_format_addr(out, cap, co->Host, co->Port);
        return 0;
    }
    if (r->ErrorCode) return r->ErrorCode;
    ks_format_addr(out, cap, r->Host, r->Port);
    return 0;
}

/* ---- record batches ---- */

int kclient_compression_parse(const char *name)
{
    static const char *names[] = {"none", "gzip", "snappy", "lz4", "zstd"};
    for (int i = 0; i < 5; i++)
        if (name && !strcmp(name, names[i])) return i;
    return AL_EINVAL;
}

/* Bytes the encoded headers of r take at most (count varint, then per header two length
 * varints and the bytes). */
static size_t kc_headers_bound(const kclient_record *r)
{
    if (r->header_count <= 0) return 0;
    size_t sz = 5;
    for (int32_t i = 0; i < r->header_count; i++)
        sz += 10 + (size_t)AL_MAX(r->headers[i].key_len, 0) +
              (size_t)(r->headers[i].value ? AL_MAX(r->headers[i].value_len, 0) : 0);
    return sz;
}

/* Builds the storage record list for recs (caller frees it and *hbuf, which holds the encoded
 * headers the list points into). Returns NULL on -ENOMEM. */
static storage_build_record *kc_build_recs(const kclient_record *recs, int n, int64_t base_ts,
                                           uint8_t **hbuf)
{
    size_t hsz = 0;
    for (int i = 0; i < n; i++) hsz += kc_headers_bound(&recs[i]);
    storage_build_record *br = calloc((size_t)n, sizeof(*br));
    *hbuf = hsz ? malloc(hsz) : NULL;
    if (!br || (hsz && !*hbuf)) {
        free(br);
        free(*hbuf);
        *hbuf = NULL;
        return NULL;
    }
    al_wr wr = al_wr_make(*hbuf, hsz);
    for (int i = 0; i < n; i++) {
        br[i].offset_delta = i;
        br[i].timestamp_delta = recs[i].timestamp - base_ts;
        br[i].key = recs[i].key;
        br[i].key_len = recs[i].key ? recs[i].key_len : -1;
        br[i].value = recs[i].value;
        br[i].value_len = recs[i].value ? recs[i].value_len : -1;
        if (recs[i].header_count <= 0) continue;
        uint8_t *start = wr.p;
        al_wr_varint(&wr, recs[i].header_count);
        for (int32_t j = 0; j < recs[i].header_count; j++) {
            const kclient_header *h = &recs[i].headers[j];
            int32_t kl = AL_MAX(h->key_len, 0);
            al_wr_varint(&wr, kl);
            if (kl > 0) al_wr_bytes(&wr, h->key, (size_t)kl);
            int32_t vl = h->value ? h->value_len : -1;
            al_wr_varint(&wr, vl);
            if (vl > 0) al_wr_bytes(&wr, h->value, (size_t)vl);
        }
        br[i].headers = start;
        br[i].headers_size = (size_t)(wr.p - start);
    }
    AL_ASSERT(!wr.err);
    return br;
}

size_t kclient_batch_bound(const kclient_record *recs, int n)
{
    size_t sz = STORAGE_BATCH_HEADER;
    for (int i = 0; i < n; i++) {
        /* attributes, varints of length/deltas/key/value lengths, headers count */
        sz += 1 + 5 + 10 + 5 + 5 + 5 + 1 + kc_headers_bound(&recs[i]);
        if (recs[i].key) sz += (size_t)recs[i].key_len;
        if (recs[i].value) sz += (size_t)recs[i].value_len;
    }
    return sz;
}

static const uint8_t kc_xerial_magic[8] = {0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0};

/* Compresses src into dst (cap). Returns the compressed size, or -1 when it does not fit or
 * the codec fails (the caller then stores the records uncompressed). */
static int64_t kc_compress(int codec, const uint8_t *src, size_t n, uint8_t *dst, size_t cap)
{
    switch (codec) {
    case STORAGE_COMP_ZSTD: {
        size_t r = ZSTD_compress(dst, cap, src, n, 1);
        return ZSTD_isError(r) ? -1 : (int64_t)r;
    }
    case STORAGE_COMP_LZ4: {
        if (cap < LZ4F_compressFrameBound(n, NULL)) return -1;
        size_t r = LZ4F_compressFrame(dst, cap, src, n, NULL);
        return LZ4F_isError(r) ? -1 : (int64_t)r;
    }
    case STORAGE_COMP_GZIP: {
        z_stream zs;
        memset(&zs, 0, sizeof(zs));
        if (deflateInit2(&zs, 1, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK) return -1;
        zs.next_in = (Bytef *)(uintptr_t)src;
        zs.avail_in = (uInt)n;
        zs.next_out = dst;
        zs.avail_out = (uInt)cap;
        int rc = deflate(&zs, Z_FINISH);
        int64_t out = rc == Z_STREAM_END ? (int64_t)zs.total_out : -1;
        deflateEnd(&zs);
        return out;
    }
    case STORAGE_COMP_SNAPPY: {
        /* xerial framing, as the Java client writes: magic, version 1, compatible 1, then
         * blocks of (int32 length, raw snappy) of at most 32 KiB input each. */
        if (cap < 16) return -1;
        memcpy(dst, kc_xerial_magic, 8);
        al_put_be32(dst + 8, 1);
        al_put_be32(dst + 12, 1);
        size_t pos = 16;
        for (size_t off = 0; off < n;) {
            size_t bl = AL_MIN(n - off, (size_t)32768);
            if (cap - pos < 4 + snappy_max_compressed_length(bl)) return -1;
            size_t clen = cap - pos - 4;
            if (snappy_compress((const char *)src + off, bl, (char *)dst + pos + 4, &clen) !=
                SNAPPY_OK)
                return -1;
            al_put_be32(dst + pos, (uint32_t)clen);
            pos += 4 + clen;
            off += bl;
        }
        return (int64_t)pos;
    }
    default: return -1;
    }
}

int64_t kclient_batch_build(void *out, size_t cap, const kclient_record *recs, int n,
                            int compression)
{
    if (n < 1 || compression < 0 || compression > STORAGE_COMP_ZSTD) return AL_EINVAL;
    int64_t base_ts = recs[0].timestamp, max_ts = recs[0].timestamp;
    for (int i = 1; i < n; i++) {
        if (recs[i].timestamp < base_ts) base_ts = recs[i].timestamp;
        if (recs[i].timestamp > max_ts) max_ts = recs[i].timestamp;
    }
    uint8_t *hbuf = NULL;
    storage_build_record *br = kc_build_recs(recs, n, base_ts, &hbuf);
    if (!br) return -ENOMEM;
    storage_build_params p = {
        .base_offset = 0, .leader_epoch = -1, .attributes = 0, .last_offset_delta = -1,
        .base_timestamp = base_ts, .max_timestamp = max_ts, .producer_id = -1,
        .producer_epoch = -1, .base_sequence = -1,
    };
    int64_t rc;
    uint8_t *tmp = NULL, *ctmp = NULL;
    if (compression == STORAGE_COMP_NONE) {
        rc = storage_batch_build(out, cap, &p, br, n);
        goto done;
    }
    size_t usz = storage_batch_build_size(br, n);
    tmp = malloc(usz);
    if (!tmp) {
        rc = -ENOMEM;
        goto done;
    }
    rc = storage_batch_build(tmp, usz, &p, br, n);
    if (rc < 0) goto done;
    size_t rlen = (size_t)rc - STORAGE_BATCH_HEADER;
    /* Compress into scratch with room for the codec's worst case, keep it if smaller. */
    size_t ccap = rlen + rlen / 4 + 4096;
    ctmp = malloc(ccap);
    if (!ctmp) {
        rc = -ENOMEM;
        goto done;
    }
    int64_t clen = kc_compress(compression, tmp + STORAGE_BATCH_HEADER, rlen, ctmp, ccap);
    if (clen < 0 || (size_t)clen >= rlen || STORAGE_BATCH_HEADER + (size_t)clen > cap) {
        if ((size_t)rc > cap) {
            rc = AL_ETOOLARGE;
            goto done;
        }
        memcpy(out, tmp, (size_t)rc);
        goto done;
    }
    memcpy(out, tmp, STORAGE_BATCH_HEADER);
    memcpy((uint8_t *)out + STORAGE_BATCH_HEADER, ctmp, (size_t)clen);
    uint8_t *o = out;
    size_t total = STORAGE_BATCH_HEADER + (size_t)clen;
    al_put_be32(o + STORAGE_BATCH_OFF_LENGTH, (uint32_t)(total - STORAGE_BATCH_LOG_OVERHEAD));
    uint16_t attr = (uint16_t)((al_be16(o + STORAGE_BATCH_OFF_ATTR) &
                                ~STORAGE_ATTR_COMPRESSION_MASK) | compression);
    o[STORAGE_BATCH_OFF_ATTR] = (uint8_t)(attr >> 8);
    o[STORAGE_BATCH_OFF_ATTR + 1] = (uint8_t)attr;
    storage_batch_set_crc(out, total);
    rc = (int64_t)total;
done:
    free(ctmp);
    free(tmp);
    free(br);
    free(hbuf);
    return rc;
}

/* ---- fetch iteration ---- */

void kclient_fetch_iter_init(kclient_fetch_iter *it, const void *records, size_t len)
{
    memset(it, 0, sizeof(*it));
    it->p = records;
    it->end = it->p + (records ? len : 0);
    it->next_offset = -1;
}

void kclient_fetch_iter_free(kclient_fetch_iter *it)
{
    free(it->owned);
    it->owned = NULL;
    it->in_batch = false;
}

int kclient_fetch_iter_next(kclient_fetch_iter *it, kclient_fetched *out)
{
    if (it->err) return it->err;
    /* Bounded by the number of batches in the buffer (each step consumes one). */
    for (size_t guard = 0; guard < (size_t)(it->end - it->p) + 2; guard++) {
        if (it->in_batch) {
            storage_record rec;
            int r = storage_record_iter_next(&it->rit, &rec);
            if (r == 1) {
                out->offset = it->base_offset + rec.offset_delta;
                out->timestamp = it->log_append ? it->max_timestamp
                                                : it->base_timestamp + rec.timestamp_delta;
                out->key = rec.key;
                out->key_len = rec.key_len;
                out->value = rec.value;
                out->value_len = rec.value_len;
                out->headers = rec.headers;
                out->headers_size = rec.headers_size;
                out->header_count = rec.header_count;
                return 1;
            }
            kclient_fetch_iter_free(it);
            if (r < 0) return it->err = r;
        }
        size_t left = (size_t)(it->end - it->p);
        if (left < STORAGE_BATCH_HEADER) return 0;
        storage_batch_hdr h;
        storage_batch_parse_header(it->p, left, &h);
        if (h.batch_length < 0 || storage_batch_size(&h) > left) return 0; /* partial */
        size_t size = storage_batch_size(&h);
        int64_t v = storage_batch_validate(it->p, size, 0, &h);
        if (v < 0) return it->err = (int)v;
        const uint8_t *batch = it->p;
        it->p += size;
        it->next_offset = storage_batch_last_offset(&h) + 1;
        if (h.attributes & STORAGE_ATTR_CONTROL) continue;
        const uint8_t *recs;
        size_t rl;
        int rc = storage_batch_records(batch, size, 256u << 20, &recs, &rl, &it->owned);
        if (rc < 0) return it->err = rc;
        it->base_offset = h.base_offset;
        it->base_timestamp = h.base_timestamp;
        it->max_timestamp = h.max_timestamp;
        it->log_append = (h.attributes & STORAGE_ATTR_TIMESTAMP_LOG_APPEND) != 0;
        storage_record_iter_init(&it->rit, recs, rl, h.records_count);
        it->in_batch = true;
    }
    return 0;
}

void kclient_header_iter_init(kclient_header_iter *it, const kclient_fetched *f)
{
    it->rd = al_rd_make(f->headers, f->headers ? f->headers_size : 0);
    it->left = f->headers && f->headers_size ? al_rd_varint(&it->rd) : 0;
    if (it->rd.err || it->left < 0) it->left = -1;
}

int kclient_header_iter_next(kclient_header_iter *it, kclient_header *out)
{
    if (it->left < 0) return AL_EMALFORMED;
    if (it->left == 0) return 0;
    int32_t kl = al_rd_varint(&it->rd);
    const uint8_t *kp = kl > 0 ? al_rd_bytes(&it->rd, (size_t)kl) : NULL;
    int32_t vl = al_rd_varint(&it->rd);
    const uint8_t *vp = vl > 0 ? al_rd_bytes(&it->rd, (size_t)vl) : NULL;
    if (it->rd.err || kl < 0 || vl < -1) {
        it->left = -1;
        return AL_EMALFORMED;
    }
    it->left--;
    out->key = kp ? (const void *)kp : "";
    out->key_len = kl;
    out->value = vl < 0 ? NULL : vp ? (const void *)vp : "";
    out->value_len = vl;
    return 1;
}
