/*
 * fuzz_rpc_frame.c — libFuzzer target for the RPC wire format and the endpoint's handling of
 * a hostile byte stream (src/rpc/).
 *
 * 1. The input is walked as a stream of frames with rpc_frame_decode (length limit from the
 *    first byte); each frame that decodes must re-encode to the same header, and HELLO and
 *    error payloads are decoded (a decoded HELLO must re-encode and decode to the same fields).
 * 2. A live endpoint on the simulator (io_sim, two nodes) is fed a stream derived from the
 *    input, either on an inbound connection (a raw client on node b writes it to the endpoint's
 *    listener) or as the answers on the endpoint's own outbound connection (a raw server on
 *    node b that the endpoint calls). Byte 0 picks: bit 0 structured (records
 *    [flags][type][len hi][len lo][payload] become frames with valid checksums, so the stream
 *    gets past HELLO; flags bit 7 corrupts the payload) or raw bytes; bit 1 the direction;
 *    bit 2 leaves out the valid HELLO the harness otherwise sends first. Handlers answer calls
 *    at once, with an error, or later (after the connection may be gone). The endpoint must
 *    neither crash nor break an assertion, and must stop cleanly (all memory freed: ASan).
 * Seeds: tests/fuzz/corpus/fuzz_rpc_frame/.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/cursor.h"
#include "base/log.h"
#include "reactor/io_sim.h"
#include "reactor/reactor.h"
#include "rpc/rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define STREAM_MAX (256u * 1024)

/* ---- 1. the decoder alone ---- */

static void decode_stream(const uint8_t *data, size_t size)
{
    size_t max = size ? (size_t)data[0] * 64 + 1 : 0;
    size_t off = 0;
    for (int i = 0; i < 100000 && off < size; i++) {
        rpc_hdr h;
        int64_t rc = rpc_frame_decode(data + off, size - off, max, &h);
        if (rc <= 0) break;
        AL_ASSERT((size_t)rc == RPC_HDR_SIZE + h.len && h.len <= max);
        const uint8_t *payload = data + off + RPC_HDR_SIZE;
        uint8_t hdr[RPC_HDR_SIZE];
        rpc_hdr_encode(hdr, h.flags, h.type, h.corr, payload, h.len);
        AL_ASSERT(memcmp(hdr, data + off, RPC_HDR_SIZE) == 0);
        if (h.type == RPC_T_HELLO && !(h.flags & RPC_F_ERROR)) {
            rpc_hello a, b;
            if (rpc_hello_decode(payload, h.len, &a) == 0) {
                uint8_t buf[RPC_HELLO_MAX_SIZE];
                int n = rpc_hello_encode(&a, buf, sizeof(buf));
                AL_ASSERT(n > 0);
                AL_ASSERT(rpc_hello_decode(buf, (size_t)n, &b) == 0);
                AL_ASSERT(a.node_id == b.node_id && a.min_version == b.min_version &&
                          a.max_version == b.max_version && !strcmp(a.addr, b.addr) &&
                          !strcmp(a.cluster_id, b.cluster_id));
            }
        }
        if (h.flags & RPC_F_ERROR) {
            int err;
            char text[64];
            if (rpc_error_decode(payload, h.len, &err, text, sizeof(text)) == 0)
                AL_ASSERT(err < 0 && strlen(text) < sizeof(text));
        }
        off += (size_t)rc;
    }
    rpc_hello hh;
    (void)rpc_hello_decode(data, size, &hh);
    int err;
    (void)rpc_error_decode(data, size, &err, NULL, 0);
}

/* ---- 2. a live endpoint ---- */

static uint8_t stream[STREAM_MAX];
static size_t stream_len;

static size_t put_frame(size_t at, uint8_t flags, uint16_t type, uint64_t corr,
                        const uint8_t *p, size_t len, bool corrupt)
{
    if (at + RPC_HDR_SIZE + len > STREAM_MAX) return at;
    rpc_hdr_encode(stream + at, flags, type, corr, p, (uint32_t)len);
    if (len) memcpy(stream + at + RPC_HDR_SIZE, p, len);
    if (corrupt && len) stream[at + RPC_HDR_SIZE + len / 2] ^= 0x41;
    return at + RPC_HDR_SIZE + len;
}

/* Builds the stream the raw side writes. */
static void build_stream(const uint8_t *data, size_t size, bool inbound)
{
    uint8_t mode = data[0];
    size_t at = 0;
    if (!(mode & 1)) { /* raw bytes */
        size_t n = AL_MIN(size - 1, (size_t)STREAM_MAX);
        memcpy(stream, data + 1, n);
        stream_len = n;
        return;
    }
    if (!(mode & 4)) {
        rpc_hello h = {.min_version = 1, .max_version = 1, .node_id = inbound ? 5 : 7};
        snprintf(h.addr, sizeof(h.addr), "10.0.0.2:9000");
        uint8_t buf[RPC_HELLO_MAX_SIZE];
        int n = rpc_hello_encode(&h, buf, sizeof(buf));
        at = put_frame(at, inbound ? RPC_F_REQUEST : RPC_F_RESPONSE, RPC_T_HELLO, 0, buf,
                       (size_t)n, false);
    }
    al_rd r = al_rd_make(data + 1, size - 1);
    for (int i = 0; i < 4096 && al_rd_left(&r) >= 4; i++) {
        uint8_t f = al_rd_u8(&r);
        uint8_t t = al_rd_u8(&r);
        size_t len = al_rd_u16(&r);
        len = AL_MIN(len, al_rd_left(&r));
        const uint8_t *p = al_rd_bytes(&r, len);
        static const uint8_t flag_map[8] = {0, RPC_F_REQUEST, RPC_F_RESPONSE,
                                            RPC_F_RESPONSE | RPC_F_ERROR, 0, RPC_F_REQUEST,
                                            RPC_F_RESPONSE, RPC_F_ERROR};
        at = put_frame(at, flag_map[f & 7], (uint16_t)(t % 40), (f >> 3) & 7, p, len, f & 0x80);
    }
    stream_len = at;
}

struct raw {
    io *io;
    io_op op, sop, rop, lop;
    int fd, lfd;
    size_t sent;
    uint8_t sink[4096];
    bool send_pending, recv_pending, accept_pending, connect_pending;
};

static struct raw rw;

static void raw_send_more(void);

static void raw_on_send(io_op *op)
{
    rw.send_pending = false;
    if (op->res <= 0) return;
    rw.sent += (size_t)op->res;
    raw_send_more();
}

static void raw_send_more(void)
{
    if (rw.fd < 0 || rw.send_pending || rw.sent >= stream_len) return;
    rw.send_pending = true;
    rw.sop = (io_op){.cb = raw_on_send};
    io_send(rw.io, &rw.sop, rw.fd, stream + rw.sent, stream_len - rw.sent);
}

static void raw_on_recv(io_op *op)
{
    rw.recv_pending = false;
    if (op->res <= 0) return;
    rw.recv_pending = true;
    rw.rop = (io_op){.cb = raw_on_recv};
    io_recv(rw.io, &rw.rop, rw.fd, rw.sink, sizeof(rw.sink));
}

static void raw_connected(int fd)
{
    rw.fd = fd;
    rw.recv_pending = true;
    rw.rop = (io_op){.cb = raw_on_recv};
    io_recv(rw.io, &rw.rop, rw.fd, rw.sink, sizeof(rw.sink));
    raw_send_more();
}

static void raw_on_connect(io_op *op)
{
    rw.connect_pending = false;
    if (op->res >= 0) raw_connected(op->res);
}

static void raw_on_accept(io_op *op)
{
    if (!(op->flags & IO_F_MORE)) rw.accept_pending = false;
    if (op->res < 0) return;
    if (rw.fd >= 0) {
        io_close_now(rw.io, op->res); /* one connection is enough */
        return;
    }
    raw_connected(op->res);
}

/* The endpoint's handlers. */
static rpc_token parked[16];
static int nparked;
static int stopped;
static int handled, answered; /* for FUZZ_RPC_VERBOSE=1 */

static void h_oneway(rpc *r, void *ctx, const rpc_msg *m)
{
    handled++;
    if (m->is_call) rpc_reply(r, m->token, m->payload, m->len);
}

static void h_echo(rpc *r, void *ctx, const rpc_msg *m)
{
    handled++;
    if (m->is_call) rpc_reply(r, m->token, m->payload, AL_MIN(m->len, (size_t)100));
    else rpc_send(r, 7, RPC_T_USER, m->payload, AL_MIN(m->len, (size_t)100));
}

static void h_park(rpc *r, void *ctx, const rpc_msg *m)
{
    handled++;
    if (!m->is_call) return;
    if (nparked < 16) parked[nparked++] = m->token;
    else rpc_reply_error(r, m->token, AL_EFULL, "full");
}

static void h_err(rpc *r, void *ctx, const rpc_msg *m)
{
    handled++;
    if (m->is_call) rpc_reply_error(r, m->token, -EPERM, "no");
}

static void call_cb(void *ctx, const rpc_result *res)
{
    int *n = ctx;
    (*n)++;
    AL_ASSERT(res->err <= 0);
    if (res->err == 0 || (res->err != AL_ETIMEDOUT && res->err != AL_ECLOSED)) answered++;
}

static rpc *ep;
static int calls_done;

static int ep_init(reactor_shard *s, void *arg)
{
    struct rpc_opts o = {.shard = s, .node_id = 1, .listen_port = 33145, .cluster_id = "fz",
                         .max_frame_bytes = 64 * 1024, .peer_queue_bytes = 64 * 1024,
                         .connect_timeout_ms = 300, .backoff_max_ms = 200};
    int err = rpc_create(&o, &ep);
    if (err) return err;
    rpc_handler_set(ep, RPC_T_USER, h_oneway, NULL);
    rpc_handler_set(ep, RPC_T_USER + 1, h_echo, NULL);
    rpc_handler_set(ep, RPC_T_USER + 2, h_park, NULL);
    rpc_handler_set(ep, RPC_T_USER + 3, h_err, NULL);
    rpc_handler_set(ep, RPC_T_RAFT, h_oneway, NULL);
    return 0;
}

static void on_stopped(void *arg)
{
    stopped = 1;
}

static void run_endpoint(const uint8_t *data, size_t size)
{
    bool inbound = !(data[0] & 2);
    build_stream(data, size, inbound);
    io_sim_world *w;
    struct io_sim_opts wo = {.seed = data[0]};
    AL_ASSERT(io_sim_world_create(&w, &wo) == 0);
    reactor *re;
    nparked = 0;
    stopped = 0;
    calls_done = 0;
    handled = answered = 0;
    AL_ASSERT(reactor_create_sim(w, "a", 1, ep_init, NULL, &re) == 0);
    memset(&rw, 0, sizeof(rw));
    rw.fd = rw.lfd = -1;
    rw.io = io_sim_node_create(w, "b");
    AL_ASSERT(rw.io);
    int ncalls = 0;
    if (inbound) {
        rw.connect_pending = true;
        rw.op = (io_op){.cb = raw_on_connect};
        io_connect(rw.io, &rw.op, "10.0.0.1", 33145);
    } else {
        rw.lfd = io_listen(rw.io, NULL, 9000, false, 16);
        AL_ASSERT(rw.lfd >= 0);
        rw.accept_pending = true;
        rw.lop = (io_op){.cb = raw_on_accept};
        io_accept(rw.io, &rw.lop, rw.lfd);
        AL_ASSERT(rpc_peer_set(ep, 7, "10.0.0.2", 9000) == 0);
        for (int i = 0; i < 3; i++) {
            uint8_t p[4] = {1, 2, 3, (uint8_t)i};
            if (rpc_call(ep, 7, RPC_T_USER + (uint16_t)i, p, 4, 500, call_cb, &calls_done) == 0)
                ncalls++;
        }
        rpc_send(ep, 7, RPC_T_RAFT, "raft", 4);
    }
    io_sim_world_run_until(w, io_sim_world_now(w) + 2000000000ull, 200000);
    for (int i = 0; i < nparked; i++) {
        if (i % 2) rpc_reply(ep, parked[i], "late", 4);
        else rpc_reply_error(ep, parked[i], AL_EFAILED, "late error");
    }
    io_sim_world_run_until(w, io_sim_world_now(w) + 100000000ull, 100000);
    if (getenv("FUZZ_RPC_VERBOSE")) {
        struct rpc_stats st;
        rpc_stats_get(ep, &st);
        fprintf(stderr, "%s %s: %zu stream bytes, %d handled, %d/%d calls answered, %" PRIu64
                " frame errors, %" PRIu64 " HELLO refusals\n", inbound ? "inbound" : "outbound",
                data[0] & 1 ? "structured" : "raw", stream_len, handled, answered, ncalls,
                st.frame_errors, st.hello_rejects);
    }
    rpc_stop(ep, on_stopped, NULL);
    io_sim_world_run_until(w, io_sim_world_now(w) + 1000000000ull, 100000);
    AL_ASSERT(stopped);
    AL_ASSERT(calls_done == ncalls); /* every call ended exactly once */
    reactor_destroy_sim(re);
    io_sim_world_destroy(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool init;
    if (!init) {
        al_log_set_level(AL_LOG_OFF);
        init = true;
    }
    decode_stream(data, size);
    if (size >= 1) run_endpoint(data, size);
    return 0;
}
