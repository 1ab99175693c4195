/*
 * test_http_sim.c — the HTTP server on the deterministic simulator (io_sim): many clients on
 * another node pipeline requests in random chunks to routes answered at once or later, and
 * must get every answer in order; partial requests get 408, idle connections are closed,
 * connection resets (net_drop_ppm) leave no connection behind, and a seed replays exactly
 * (same world hash). Seeds come from test_seed(); AL_TEST_SEED replays one.
 */
#include "http/http.h"
#include "reactor/io_sim.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>

#define NCLIENTS 8
#define NREQ 12

static http_request *parked[256];
static int nparked;

static void h_echo(http_request *req, void *ctx)
{
    http_respond(req, 200, "text/plain", req->params[0], strlen(req->params[0]));
}

static void h_park(http_request *req, void *ctx)
{
    if (nparked < 256) parked[nparked++] = req;
    else http_respond_error(req, 503, "full");
}

static const struct http_route routes[] = {
    {HTTP_GET, "/echo/{x}", h_echo},
    {HTTP_GET, "/park/{x}", h_park},
};

struct client {
    io *io;
    io_op op;      /* connect, then recv */
    io_op sop;     /* send */
    int fd;
    char out[2048];
    size_t out_len, out_off;
    char in[16384];
    size_t in_len;
    int id, nreq;
    bool done, reset, closed_by_server;
    uint64_t rng;
};

static uint64_t rnd(struct client *c)
{
    c->rng ^= c->rng << 13;
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    return c->rng;
}

static int count_responses(const struct client *c)
{
    int n = 0;
    for (const char *p = c->in; (p = memmem(p, c->in_len - (size_t)(p - c->in), "HTTP/1.1 ", 9));
         p += 9)
        n++;
    return n;
}

static void client_send_next(struct client *c);

static void on_client_send(io_op *op)
{
    struct client *c = op->ctx;
    if (op->res < 0) {
        c->reset = true;
        return;
    }
    c->out_off += (size_t)op->res;
    client_send_next(c);
}

static void client_send_next(struct client *c)
{
    if (c->out_off >= c->out_len || c->done) return;
    size_t chunk = 1 + rnd(c) % 97;
    if (chunk > c->out_len - c->out_off) chunk = c->out_len - c->out_off;
    io_send(c->io, &c->sop, c->fd, c->out + c->out_off, chunk);
}

static void on_client_recv(io_op *op)
{
    struct client *c = op->ctx;
    if (op->res <= 0) {
        if (op->res < 0) c->reset = true;
        else c->closed_by_server = true;
        c->done = true;
        io_close_now(c->io, c->fd);
        return;
    }
    c->in_len += (size_t)op->res;
    if (c->nreq > 0 && count_responses(c) >= c->nreq) {
        c->done = true;
        io_close_now(c->io, c->fd);
        return;
    }
    io_recv(c->io, &c->op, c->fd, c->in + c->in_len, sizeof(c->in) - 1 - c->in_len);
}

static void on_client_connect(io_op *op)
{
    struct client *c = op->ctx;
    if (op->res < 0) {
        c->reset = true;
        c->done = true;
        return;
    }
    c->fd = op->res;
    c->op.cb = on_client_recv;
    io_recv(c->io, &c->op, c->fd, c->in, sizeof(c->in) - 1);
    client_send_next(c);
}

static void client_start(struct client *c, io *cio, int id, int nreq, uint64_t seed)
{
    memset(c, 0, sizeof(*c));
    c->io = cio;
    c->id = id;
    c->nreq = nreq;
    c->fd = -1;
    c->rng = seed * 2654435761u + (uint64_t)id + 1;
    for (int j = 0; j < nreq; j++) {
        bool park = rnd(c) % 3 == 0;
        c->out_len += (size_t)snprintf(c->out + c->out_len, sizeof(c->out) - c->out_len,
                                       "GET /%s/c%d-r%d HTTP/1.1\r\nHost: s\r\n\r\n",
                                       park ? "park" : "echo", id, j);
    }
    c->op = (io_op){.cb = on_client_connect, .ctx = c};
    c->sop = (io_op){.cb = on_client_send, .ctx = c};
    io_connect(cio, &c->op, "10.0.0.1", 9644);
}

/* Answers parked requests, newest first (so answers complete out of order). */
static void answer_parked(void)
{
    while (nparked > 0) {
        http_request *r = parked[--nparked];
        http_respond(r, 200, "text/plain", r->params[0], strlen(r->params[0]));
    }
}

/* Every answer present is a 200 with the client's bodies in request order. */
static bool client_in_order(const struct client *c, int want)
{
    const char *p = c->in;
    for (int j = 0; j < want; j++) {
        char body[32];
        snprintf(body, sizeof(body), "\r\n\r\nc%d-r%d", c->id, j);
        const char *q = memmem(p, c->in_len - (size_t)(p - c->in), body, strlen(body));
        if (!q) return false;
        p = q + strlen(body);
    }
    return true;
}

static bool stopped;
static void on_stopped(void *arg)
{
    stopped = true;
}

/* One scenario; returns the world hash. drops: net_drop_ppm. */
static uint64_t run_scenario(uint64_t seed, uint32_t drops)
{
    io_sim_world *w = NULL;
    struct io_sim_opts o = {.seed = seed, .net_drop_ppm = drops};
    AL_ASSERT(io_sim_world_create(&w, &o) == 0);
    io *srv_io = io_sim_node_create(w, "srv");
    io *cli_io = io_sim_node_create(w, "cli");
    AL_ASSERT(srv_io && cli_io);
    struct http_server_opts so = {.port = 9644,
                                  .router = {routes, AL_ARRAY_SIZE(routes), NULL}};
    so.limits.idle_timeout_ms = 2000;
    so.limits.request_timeout_ms = 1000;
    so.limits.max_pipelined = 4;
    http_server *s = NULL;
    CHECK_EQ(http_server_start(srv_io, &so, &s), 0);
    nparked = 0;

    static struct client cl[NCLIENTS];
    for (int i = 0; i < NCLIENTS; i++) client_start(&cl[i], cli_io, i, NREQ, seed);
    for (int steps = 0; steps < 200000; steps++) {
        int done = 0;
        for (int i = 0; i < NCLIENTS; i++) done += cl[i].done;
        if (done == NCLIENTS) break;
        if (io_sim_world_random(w) % 4 == 0) answer_parked();
        if (nparked > 0) {
            /* Async handlers answer later but promptly: while answers are parked, time moves
             * at most 1 ms a step, so it cannot jump to the server's request or idle timeout
             * (which would legitimately cut the connection) before they are given. */
            io_sim_world_run_until(w, io_sim_world_now(w) + 1000000, 1);
            continue;
        }
        if (io_sim_world_step(w) <= 0) break;
    }
    for (int i = 0; i < NCLIENTS; i++) {
        CHECK(cl[i].done);
        if (drops == 0) {
            CHECK(!cl[i].reset);
            CHECK_EQ(count_responses(&cl[i]), NREQ);
            CHECK(client_in_order(&cl[i], NREQ));
        } else {
            CHECK(client_in_order(&cl[i], count_responses(&cl[i]) > 0
                                              ? count_responses(&cl[i]) - 1 : 0));
        }
    }
    answer_parked();
    /* Clients closed: the server notices and drops every connection. */
    io_sim_world_run_until(w, io_sim_world_now(w) + 500000000ull, 100000);
    CHECK_EQ(http_server_conns(s), 0);

    if (drops == 0) {
        /* A partial request: 408 after the request timeout, then the server closes. */
        struct client *p = &cl[0];
        client_start(p, cli_io, 99, 0, seed);
        p->out_len = (size_t)snprintf(p->out, sizeof(p->out), "GET /echo/x HTTP/1.1\r\nHo");
        io_sim_world_run_until(w, io_sim_world_now(w) + 1500000000ull, 100000);
        CHECK(p->done && p->closed_by_server);
        CHECK(!strncmp(p->in, "HTTP/1.1 408 ", 13));
        /* An idle connection: closed after the idle timeout, not before. */
        struct client *q = &cl[1];
        client_start(q, cli_io, 98, 0, seed);
        q->out_len = 0;
        io_sim_world_run_until(w, io_sim_world_now(w) + 1500000000ull, 100000);
        CHECK(!q->done);
        io_sim_world_run_until(w, io_sim_world_now(w) + 1000000000ull, 100000);
        CHECK(q->done && q->closed_by_server && q->in_len == 0);
    }
    stopped = false;
    http_server_stop(s, on_stopped, NULL);
    for (int i = 0; i < 1000 && !stopped; i++) io_sim_world_step(w);
    CHECK(stopped);
    uint64_t h = io_sim_world_hash(w);
    io_sim_world_destroy(w);
    return h;
}

TEST(pipelined_clients_in_order)
{
    uint64_t seed = test_seed();
    uint64_t t0 = (uint64_t)time(NULL);
    for (uint64_t i = 0; i < 20 && (uint64_t)time(NULL) - t0 < 20; i++) run_scenario(seed + i, 0);
}

TEST(connection_resets_leave_nothing_behind)
{
    uint64_t seed = test_seed();
    uint64_t t0 = (uint64_t)time(NULL);
    for (uint64_t i = 0; i < 20 && (uint64_t)time(NULL) - t0 < 20; i++)
        run_scenario(seed + i, 30000);
}

TEST(same_seed_same_run)
{
    uint64_t seed = test_seed();
    CHECK(run_scenario(seed, 0) == run_scenario(seed, 0));
    CHECK(run_scenario(seed, 30000) == run_scenario(seed, 30000));
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
