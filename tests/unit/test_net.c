/*
 * test_net.c — the connection layer on the real io_uring back end over 127.0.0.1: responses in
 * request order when handlers finish out of order (deferred, completed later in reverse), no
 * bytes for "no response" requests, back-pressure (a connection stops being read at its
 * in-flight limit and resumes), frame-size errors close only the offending connection, and
 * shutdown with deferred requests outstanding frees everything (ASan checks), large frames
 * handed over without a copy, pooled requests reused clean, and gathered responses (records
 * by reference, io_sendmsg) byte-identical to the copying path, also when the client closes
 * in the middle of one.
 *
 * The server runs in the test's thread (io_poll loop); a client thread uses blocking sockets.
 * The dispatch function here is a test handler (the dispatcher itself is tested in
 * test_kafka_dispatch.c): it answers ApiVersions-v0-shaped responses whose correlation id the
 * client checks.
 */
#include "test.h"

#include "base/log.h"
#include "config/config.h"
#include "kafka/request.h"
#include "net/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_DEFERRED 100000

static kafka_req *deferred[MAX_DEFERRED];
static int n_deferred;
static bool hold_all;           /* defer every request until released */
static int bad_payload;         /* requests whose bytes after the header differ from
                                   put_big_request's pattern */
static int dispatched;          /* requests the server has taken */
static int client_done;         /* atomic: the client thread finished */
static int client_failed;       /* atomic */
static uint16_t port;

static void respond(kafka_req *r)
{
    kafka_ApiVersionsResponse p;
    kafka_ApiVersionsResponse_init(&p);
    p.ErrorCode = (int16_t)(r->correlation_id & 0x7fff);
    int rc = kafka_req_respond(r, &p);
    AL_ASSERT(rc == 0);
}

/* ---- gathered responses (records by reference) ---- */

#define FETCH_CORR_BASE 1000000 /* requests with corr >= this get a FetchResponse */
static int fetch_parts = 1500;          /* partitions per FetchResponse */
static size_t fetch_max_rec = 12000;    /* records of a partition: 0..this many bytes */
static int holds_made, holds_released;  /* record buffers handed to requests / released */
static uint8_t *fetch_expect[64];       /* the copying encoder's frame, per corr - BASE */
static size_t fetch_expect_len[64];
static int iov_responses;               /* responses that went out as gathered pieces */

/* Frees the expected frames a gathered-response test left. */
static void fetch_expect_free(void)
{
    for (int i = 0; i < 64; i++) {
        free(fetch_expect[i]);
        fetch_expect[i] = NULL;
    }
}

static void test_release(void *p)
{
    free(p);
    holds_released++;
}

/* Answers r with a FetchResponse v11 of fetch_parts partitions whose records (random sizes,
 * from 0 to fetch_max_rec bytes: some copied, most by reference) are malloc'd buffers held
 * by the request; records the frame the copying encoder makes of the same message. */
static void respond_fetch(kafka_req *r)
{
    int32_t k = r->correlation_id - FETCH_CORR_BASE;
    AL_ASSERT(k >= 0 && k < 64);
    r->api_key = KAFKA_API_FETCH;
    r->api_version = 11;
    kafka_FetchResponse *resp = kafka_arena_alloc(&r->arena, sizeof(*resp));
    kafka_FetchResponse_FetchableTopicResponse *t = kafka_arena_alloc(&r->arena, sizeof(*t));
    kafka_FetchResponse_PartitionData *pd =
        kafka_arena_alloc(&r->arena, sizeof(*pd) * (size_t)fetch_parts);
    AL_ASSERT(resp && t && pd);
    kafka_FetchResponse_init(resp);
    kafka_FetchResponse_FetchableTopicResponse_init(t);
    t->Topic = kafka_str_from("gathered");
    t->Partitions = pd;
    t->Partitions_count = fetch_parts;
    resp->Responses = t;
    resp->Responses_count = 1;
    uint64_t rng = (uint64_t)r->correlation_id * 0x9E3779B97F4A7C15ull | 1;
    for (int i = 0; i < fetch_parts; i++) {
        kafka_FetchResponse_PartitionData_init(&pd[i]);
        pd[i].PartitionIndex = i;
        pd[i].HighWatermark = i * 10;
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        size_t len = i % 5 == 2 ? 0 : (size_t)(rng % (fetch_max_rec + 1));
        if (!len) continue;
        uint8_t *b = malloc(len);
        AL_ASSERT(b);
        for (size_t j = 0; j < len; j++) b[j] = (uint8_t)(rng >> (j % 50)) ^ (uint8_t)j;
        AL_ASSERT(kafka_req_hold(r, b, test_release) == 0);
        holds_made++;
        pd[i].Records = (kafka_bytes){.ptr = b, .len = (int32_t)len};
    }
    int16_t hv = kafka_response_header_version(KAFKA_API_FETCH, 11);
    kafka_ResponseHeader h;
    kafka_ResponseHeader_init(&h);
    h.CorrelationId = r->correlation_id;
    size_t hs = kafka_ResponseHeader_size(hv, &h), bs = kafka_FetchResponse_size(11, resp);
    uint8_t *e = malloc(4 + hs + bs);
    AL_ASSERT(e);
    al_wr wr = al_wr_make(e, 4 + hs + bs);
    al_wr_u32(&wr, (uint32_t)(hs + bs));
    AL_ASSERT(kafka_ResponseHeader_encode(&wr, hv, &h) == 0);
    AL_ASSERT(kafka_FetchResponse_encode(&wr, 11, resp) == 0 && wr.p == e + 4 + hs + bs);
    free(fetch_expect[k]);
    fetch_expect_len[k] = 4 + hs + bs;
    __atomic_store_n(&fetch_expect[k], e, __ATOMIC_RELEASE);
    AL_ASSERT(kafka_req_respond(r, resp) == 0);
    if (r->resp_iov) iov_responses++;
}

/* Test handler: corr % 7 == 0 -> no response; corr % 3 == 0 (or hold_all) -> deferred;
 * corr >= FETCH_CORR_BASE -> a FetchResponse with records by reference. */
static void test_dispatch(kafka_req *r)
{
    r->state = KAFKA_REQ_RUNNING;
    r->in_dispatch = true;
    dispatched++;
    if (kafka_req_peek(r->frame, r->frame_len, &r->api_key, &r->api_version,
                       &r->correlation_id)) {
        kafka_req_fail(r, AL_ETRUNCATED, "short");
    } else {
        for (size_t i = 11; i < r->frame_len; i++) {
            if (r->frame[i] != (uint8_t)(r->correlation_id + (int32_t)i)) {
                bad_payload++;
                break;
            }
        }
        r->api_key = KAFKA_API_API_VERSIONS;
        r->api_version = 0;
        if (r->correlation_id >= FETCH_CORR_BASE) {
            respond_fetch(r);
        } else if (r->correlation_id % 7 == 0) {
            kafka_req_respond_none(r);
        } else if ((hold_all || r->correlation_id % 3 == 0) && n_deferred < MAX_DEFERRED) {
            r->state = KAFKA_REQ_DEFERRED;
            deferred[n_deferred++] = r;
        } else {
            respond(r);
        }
    }
    r->in_dispatch = false;
}

/* Completes deferred requests, newest first (the reverse of arrival). */
static void complete_deferred(void)
{
    while (n_deferred > 0) respond(deferred[--n_deferred]);
}

static int client_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int recv_all(int fd, uint8_t *p, size_t n)
{
    while (n) {
        ssize_t r = recv(fd, p, n, 0);
        if (r <= 0) return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* A minimal request frame (15 bytes): size 11, api key 18, version 0, correlation id, client
 * id "t". */
static size_t put_request(uint8_t *b, int32_t corr)
{
    static const uint8_t head[8] = {0, 0, 0, 11, 0, 18, 0, 0};
    memcpy(b, head, 8);
    al_put_be32(b + 8, (uint32_t)corr);
    b[12] = 0;
    b[13] = 1;
    b[14] = 't';
    return 15;
}

/* A request of 11 + extra bytes (15 + extra with its size): put_request's, then byte i of the
 * frame (after the size prefix) = corr + i, which test_dispatch checks. */
static size_t put_big_request(uint8_t *b, int32_t corr, size_t extra)
{
    put_request(b, corr);
    al_put_be32(b, (uint32_t)(11 + extra));
    for (size_t i = 11; i < 11 + extra; i++) b[4 + i] = (uint8_t)(corr + (int32_t)i);
    return 15 + extra;
}

/* Reads one response; returns its correlation id (and checks the echoed error code) or -1. */
static int32_t read_response(int fd)
{
    uint8_t hdr[4];
    if (recv_all(fd, hdr, 4)) return -1;
    uint32_t n = al_be32(hdr);
    if (n < 10 || n > 64) return -1;
    uint8_t body[64];
    if (recv_all(fd, body, n)) return -1;
    int32_t corr = (int32_t)al_be32(body);
    if (al_be16(body + 4) != (corr & 0x7fff)) return -1;
    return corr;
}

/* Reads the responses to requests 1..n in order; request i % 7 == 0 expects none (see
 * test_dispatch). Returns false (saying which) on the first one missing or out of order. */
static bool read_responses_in_order(int fd, int n)
{
    for (int i = 1; i <= n; i++) {
        if (i % 7 == 0) continue; /* no response expected */
        int32_t got = read_response(fd);
        if (got != i) {
            fprintf(stderr, "    expected response %d, got %d\n", i, got);
            return false;
        }
    }
    return true;
}

/* The end of every client thread: closes fd (if open), records a failure unless ok, and marks
 * the client done (what serve_until_client_done waits for). Returns NULL for the thread. */
static void *client_finish(int fd, bool ok)
{
    if (fd >= 0) close(fd);
    if (!ok) __atomic_store_n(&client_failed, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&client_done, 1, __ATOMIC_RELEASE);
    return NULL;
}

struct order_args {
    int nreq;
};

static void *client_order(void *arg)
{
    struct order_args *a = arg;
    int fd = client_connect();
    uint8_t *buf = malloc((size_t)a->nreq * 15);
    size_t len = 0;
    for (int i = 1; i <= a->nreq; i++) len += put_request(buf + len, i);
    bool ok = fd >= 0;
    /* Send in uneven chunks so frames straddle receives. */
    for (size_t off = 0; ok && off < len;) {
        size_t chunk = AL_MIN(len - off, (size_t)(1 + (off * 7919) % 3000));
        ok = send_all(fd, buf + off, chunk) == 0;
        off += chunk;
    }
    ok = ok && read_responses_in_order(fd, a->nreq);
    free(buf);
    return client_finish(fd, ok);
}

static al_config cfg;
static struct kafka_broker broker;
static net_server srv;
static net_shard shard;
static io *sio;

static void server_up_budget(int64_t max_reqs, int64_t shard_bytes)
{
    config_init(&cfg);
    CHECK_EQ(config_set(&cfg, "kafka_addr", "127.0.0.1:0", CONFIG_SRC_FLAG, NULL, 0), 0);
    cfg.kafka_conn_max_inflight_requests = max_reqs;
    cfg.kafka_shard_max_inflight_bytes = shard_bytes;
    cfg.kafka_conn_max_inflight_bytes = AL_MIN(cfg.kafka_conn_max_inflight_bytes, shard_bytes);
    cfg.kafka_max_frame_bytes = 4096;
    broker.cfg = &cfg;
    net_server_init(&srv, &cfg, &broker, test_dispatch);
    struct io_uring_opts o = {0};
    CHECK_EQ(io_uring_create(&sio, &o), 0);
    CHECK_EQ(net_shard_start(&shard, &srv, sio, 0), 0);
    port = shard.port;
    CHECK(port > 0);
    n_deferred = 0;
    dispatched = 0;
    hold_all = false;
    client_done = 0;
    client_failed = 0;
}

static void server_up(int64_t max_reqs)
{
    server_up_budget(max_reqs, 512LL << 20);
}

static void server_down(void)
{
    net_shard_stop(&shard);
    complete_deferred(); /* orphans: their completions free them */
    for (int i = 0; i < 1000 && !net_shard_idle(&shard); i++)
        io_poll(sio, io_now_ns(sio) + 5000000);
    CHECK(net_shard_idle(&shard));
    io_destroy(sio);
}

/* Polls until the client is done (bounded); each round completes what was deferred. */
static void serve_until_client_done(bool complete, double max_s)
{
    uint64_t end = io_now_ns(sio) + (uint64_t)(max_s * 1e9);
    while (!__atomic_load_n(&client_done, __ATOMIC_ACQUIRE) && io_now_ns(sio) < end) {
        io_poll(sio, io_now_ns(sio) + 2000000);
        if (complete) complete_deferred();
    }
    CHECK(__atomic_load_n(&client_done, __ATOMIC_ACQUIRE));
}

/* Serves (as serve_until_client_done) until client thread t is done, joins it and checks it
 * saw no failure. */
static void client_wait(pthread_t t, bool complete, double max_s)
{
    serve_until_client_done(complete, max_s);
    pthread_join(t, NULL);
    CHECK(!__atomic_load_n(&client_failed, __ATOMIC_ACQUIRE));
}

/* Runs fn(arg) as the client thread and serves until it is done (client_wait). */
static void run_client(void *(*fn)(void *), void *arg, bool complete, double max_s)
{
    pthread_t t;
    pthread_create(&t, NULL, fn, arg);
    client_wait(t, complete, max_s);
}

/* Polls (without completing anything) until the shard has closed n connections or max_s
 * seconds passed; the caller checks shard.closed. */
static void serve_until_closed(uint64_t n, double max_s)
{
    uint64_t end = io_now_ns(sio) + (uint64_t)(max_s * 1e9);
    while (shard.closed < n && io_now_ns(sio) < end) io_poll(sio, io_now_ns(sio) + 2000000);
}

TEST(responses_in_request_order)
{
    server_up(64);
    struct order_args a = {20000};
    uint64_t t0 = io_now_ns(sio);
    run_client(client_order, &a, true, 40);
    double secs = (double)(io_now_ns(sio) - t0) / 1e9;
    CHECK_EQ(dispatched, 20000);
    CHECK_EQ(shard.responses, 20000 - 20000 / 7);
    CHECK(shard.sends <= shard.responses);
    printf("    %d pipelined requests on one connection: %" PRIu64 " responses in %" PRIu64
           " sends, %.0f requests/s (figure, not a check)\n",
           dispatched, shard.responses, shard.sends, dispatched / secs);
    server_down();
}

TEST(backpressure_stops_reading_at_limit)
{
    server_up(4);
    hold_all = true;
    struct order_args a = {200};
    pthread_t t;
    pthread_create(&t, NULL, client_order, &a);
    /* With everything deferred, the connection must stop at 4 requests in flight. */
    uint64_t end = io_now_ns(sio) + 300000000ull;
    while (io_now_ns(sio) < end) io_poll(sio, io_now_ns(sio) + 2000000);
    CHECK(dispatched >= 1 && dispatched <= 4);
    /* no-response requests leave the pipeline at once, so a few more may be taken */
    hold_all = false;
    client_wait(t, true, 20);
    CHECK_EQ(dispatched, 200);
    server_down();
}

TEST(shard_budget_pauses_and_resumes)
{
    /* 64 KiB shard budget; requests are 11-byte frames, all held: the shard stops taking them
     * long before the client's 20000, then takes them all once answers drain the budget. */
    server_up_budget(100000, 64 * 1024);
    hold_all = true;
    struct order_args a = {20000};
    pthread_t t;
    pthread_create(&t, NULL, client_order, &a);
    uint64_t end = io_now_ns(sio) + 500000000ull;
    while (io_now_ns(sio) < end) io_poll(sio, io_now_ns(sio) + 2000000);
    int held = dispatched;
    CHECK(held > 100 && held < 10000);
    CHECK(shard.paused != NULL || shard.bytes >= 64 * 1024);
    hold_all = false;
    client_wait(t, true, 30);
    CHECK_EQ(dispatched, 20000);
    printf("    shard budget 64 KiB held %d requests before pausing\n", held);
    server_down();
}

/* A 256 KiB request (grows the receive buffer), then 30000 no-response requests and one more
 * request in one stream: the server must work through thousands of frames that one receive
 * brought in, with nothing else to wake it, and answer both requests in order. */
static void *client_no_response_burst(void *arg)
{
    (void)arg;
    int fd = client_connect();
    size_t big = 256 * 1024, n = 30000;
    uint8_t *b = calloc(1, 4 + big + (n + 1) * 15);
    put_request(b, 2);
    al_put_be32(b, (uint32_t)big); /* same header, padded body */
    size_t len = 4 + big;
    for (size_t i = 1; i <= n; i++) len += put_request(b + len, (int32_t)(7 * i));
    len += put_request(b + len, 5);
    bool ok = fd >= 0 && send_all(fd, b, len) == 0;
    ok = ok && read_response(fd) == 2 && read_response(fd) == 5;
    free(b);
    return client_finish(fd, ok);
}

TEST(burst_of_no_response_requests)
{
    server_up(100000);
    cfg.kafka_max_frame_bytes = 1 << 20;
    srv.max_frame = 1 << 20;
    run_client(client_no_response_burst, NULL, false, 20);
    CHECK_EQ(dispatched, 30002);
    server_down();
}

/* Large frames (which the server hands over in its receive buffer instead of copying) mixed
 * with small ones, sent in uneven chunks so that frames start mid-buffer and are followed by
 * the next frames' bytes; every response in order, every payload intact. */
static void *client_large_frames(void *arg)
{
    (void)arg;
    int fd = client_connect();
    enum { N = 120 };
    size_t cap = (size_t)N * (300u << 10);
    uint8_t *buf = malloc(cap);
    size_t len = 0;
    uint32_t rng = 12345;
    for (int i = 1; i <= N; i++) {
        rng = rng * 1103515245u + 12345u;
        size_t extra = (rng >> 8) % 4 == 0 ? 0 : (size_t)((rng >> 12) % (260u << 10));
        len += put_big_request(buf + len, i, extra);
    }
    bool ok = fd >= 0 && len <= cap;
    for (size_t off = 0; ok && off < len;) {
        rng = rng * 1103515245u + 12345u;
        size_t chunk = AL_MIN(len - off, (size_t)(1 + (rng >> 8) % (200u << 10)));
        ok = send_all(fd, buf + off, chunk) == 0;
        off += chunk;
    }
    ok = ok && read_responses_in_order(fd, N);
    free(buf);
    return client_finish(fd, ok);
}

TEST(large_frames_intact_and_in_order)
{
    server_up(100000);
    cfg.kafka_max_frame_bytes = 1 << 20;
    srv.max_frame = 1 << 20;
    bad_payload = 0;
    run_client(client_large_frames, NULL, true, 30);
    CHECK_EQ(dispatched, 120);
    CHECK_EQ(bad_payload, 0);
    CHECK(shard.frames_handed_over > 0); /* the no-copy path ran (and kept the bytes intact) */
    server_down();
    CHECK_EQ(shard.bytes, 0);
}

/* Requests come from a per-thread pool (kafka/dispatch.c): a reused one starts clean (no
 * response, state, arena use or frame left from before) whatever its previous life was
 * (answered large or small, failed, no response), and its frame is the new copy. */
static void pool_noop_done(kafka_req *r) { (void)r; }

TEST(request_pool_reuse_is_clean)
{
    uint8_t f[4096];
    for (int round = 0; round < 300; round++) {
        size_t len = (size_t)(8 + (round * 37) % 3000);
        for (size_t i = 0; i < len; i++) f[i] = (uint8_t)(round + (int)i);
        kafka_req *r = kafka_req_new_copy(f, len);
        CHECK(r != NULL);
        CHECK_EQ(r->frame_len, len);
        CHECK_MEM(r->frame, f, len);
        CHECK(r->resp == NULL && r->resp_len == 0 && r->state == KAFKA_REQ_NEW);
        CHECK(!r->no_response && r->fail == 0 && r->owner == NULL && r->next == NULL);
        CHECK_EQ(r->arena.used, 0);
        CHECK_EQ(r->client_id.len, -1);
        /* use the arena, then end the request one of four ways */
        CHECK(kafka_arena_alloc(&r->arena, (size_t)(round % 5) * 9000 + 1) != NULL);
        r->on_done = pool_noop_done;
        r->api_key = KAFKA_API_API_VERSIONS;
        r->api_version = 0;
        r->correlation_id = round;
        kafka_ApiVersionsResponse p;
        kafka_ApiVersionsResponse_init(&p);
        kafka_ApiVersionsResponse_ApiVersion keys[700];
        memset(keys, 0, sizeof(keys));
        p.ApiKeys = keys;
        p.ApiKeys_count = round % 3 == 0 ? 700 : 1; /* ~4 KiB or a few bytes */
        switch (round % 4) {
        case 0:
        case 1:
            CHECK_EQ(kafka_req_respond(r, &p), 0);
            CHECK(r->resp != NULL && r->resp_len > 4);
            CHECK_EQ((int32_t)al_be32(r->resp + 4), round);
            break;
        case 2: kafka_req_respond_none(r); break;
        default: kafka_req_fail(r, AL_EMALFORMED, "test"); break;
        }
        kafka_req_free(r);
    }
}

static void *client_bad_frames(void *arg)
{
    (void)arg;
    bool ok = true;
    int good = client_connect();
    uint8_t b[64];
    /* oversized (4096 max), negative size, then a short frame the handler fails */
    const uint8_t bad[3][8] = {{0, 0, 0x10, 0x01, 0, 0, 0, 0},
                               {0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 0},
                               {0, 0, 0, 3, 1, 2, 3, 0}};
    for (int k = 0; k < 3 && ok; k++) {
        int fd = client_connect();
        ok = fd >= 0 && send_all(fd, bad[k], k == 2 ? 7 : 8) == 0;
        /* the server closes it: recv returns 0 (or a reset) */
        ssize_t r = ok ? recv(fd, b, sizeof(b), 0) : -1;
        if (r > 0) ok = false;
        if (fd >= 0) close(fd);
        size_t n = put_request(b, 100 + k);
        ok = ok && send_all(good, b, n) == 0 && read_response(good) == 100 + k;
    }
    return client_finish(good, ok);
}

TEST(bad_frames_close_only_their_connection)
{
    server_up(16);
    run_client(client_bad_frames, NULL, true, 20);
    CHECK(shard.closed >= 3);
    server_down();
}

static void *client_send_and_leave(void *arg)
{
    (void)arg;
    int fd = client_connect();
    uint8_t b[15 * 10];
    size_t n = 0;
    for (int i = 1; i <= 10; i++) n += put_request(b + n, i * 3); /* all deferred */
    return client_finish(fd, fd >= 0 && send_all(fd, b, n) == 0);
}

TEST(deferred_requests_outlive_their_connection)
{
    server_up(64);
    run_client(client_send_and_leave, NULL, false, 10);
    /* Wait for the server to see the close while requests are still deferred. */
    serve_until_closed(1, 2);
    CHECK_EQ(shard.closed, 1);
    CHECK(n_deferred > 0);
    CHECK_EQ(shard.bytes, 0); /* orphans no longer count against the shard */
    complete_deferred();      /* completions of orphans are dropped and freed (ASan: no leak) */
    server_down();
}

struct gather_args {
    int nfetch;     /* FetchResponses to read in full and compare */
    bool leave;     /* then ask for one more, read a little of it and close */
};

/* Sends fetch-shaped requests (with small ones in between, which the server gathers or sends
 * around the large ones) and checks each response frame byte for byte against what the
 * copying encoder made of the same message. */
static void *client_gathered(void *arg)
{
    struct gather_args *a = arg;
    int fd = client_connect();
    bool ok = fd >= 0;
    uint8_t b[64];
    size_t cap = 64u << 20;
    uint8_t *got = malloc(cap);
    for (int i = 0; ok && i < a->nfetch; i++) {
        int32_t corr = FETCH_CORR_BASE + i;
        size_t n = put_request(b, corr);
        n += put_request(b + n, 7 * i + 1); /* a small one right behind it */
        ok = send_all(fd, b, n) == 0 && recv_all(fd, got, 4) == 0;
        size_t len = ok ? 4 + al_be32(got) : 0;
        ok = ok && len <= cap && recv_all(fd, got + 4, len - 4) == 0;
        const uint8_t *e = __atomic_load_n(&fetch_expect[i], __ATOMIC_ACQUIRE);
        if (ok && (!e || fetch_expect_len[i] != len || memcmp(e, got, len) != 0)) {
            fprintf(stderr, "    fetch response %d differs from the copying encoder's\n", i);
            ok = false;
        }
        ok = ok && read_response(fd) == 7 * i + 1;
    }
    if (ok && a->leave) {
        /* A second connection with a tiny receive window: once the large response has begun
         * (its send waits for room), a bad frame makes the server close the connection while
         * that send is in flight. */
        int lfd = socket(AF_INET, SOCK_STREAM, 0), small = 4096;
        setsockopt(lfd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
        struct timeval tv = {10, 0};
        setsockopt(lfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        ok = connect(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
        size_t n = put_request(b, FETCH_CORR_BASE + a->nfetch);
        ok = ok && send_all(lfd, b, n) == 0 && recv_all(lfd, got, 4) == 0;
        static const uint8_t oversized[8] = {0, 0, 0x10, 0x01, 0, 0, 0, 0};
        ok = ok && send_all(lfd, oversized, sizeof(oversized)) == 0;
        for (int k = 0; ok && k < 100000; k++) /* until the server's close reaches us */
            if (recv(lfd, got, 65536, 0) <= 0) break;
        close(lfd);
    }
    free(got);
    return client_finish(fd, ok);
}

/* Records by reference end to end: large FetchResponses (1500 partitions, ~7 MiB, more pieces
 * than one sendmsg takes) go out as gathered sends through short writes, byte-identical to
 * the copying path, in order with the small responses around them; every held buffer is
 * released once its response is sent. */
TEST(gathered_responses_byte_identical)
{
    server_up(16);
    holds_made = holds_released = iov_responses = 0;
    struct gather_args a = {.nfetch = 6};
    run_client(client_gathered, &a, true, 60);
    CHECK_EQ(iov_responses, 6);
    CHECK(shard.gathered_sends > 6); /* more pieces than one sendmsg takes, short writes */
    CHECK(holds_made > 6 * 1000);
    server_down();
    CHECK_EQ(holds_released, holds_made);
    fetch_expect_free();
}

/* The server closes a connection (bad frame) while a ~7 MiB gathered response is being sent
 * on it: the request (and the records the pending send reads) stays alive until the send
 * completes, then everything is released (ASan: no use after free, no leak). */
TEST(connection_closed_mid_gathered_send)
{
    int orphans = 0;
    for (int round = 0; round < 3; round++) {
        server_up(16);
        holds_made = holds_released = iov_responses = 0;
        struct gather_args a = {.nfetch = round, .leave = true};
        run_client(client_gathered, &a, true, 60);
        serve_until_closed(2, 5);
        CHECK_EQ(shard.closed, 2);
        CHECK_EQ(iov_responses, round + 1);
        server_down();
        CHECK_EQ(holds_released, holds_made);
        CHECK_EQ(shard.bytes, 0);
        orphans += shard.orphaned_sends;
    }
    printf("    %d of 3 closes came with a gathered send in flight\n", orphans);
    CHECK_EQ(orphans, 3);
    fetch_expect_free();
}

int main(int argc, char **argv)
{
    al_log_set_level(AL_LOG_ERROR);
    return test_main(argc, argv);
}
