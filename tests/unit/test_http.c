/*
 * test_http.c — the HTTP layer: routing, the connection protocol (parsing, limits, pipelining
 * in order with asynchronous handlers, keep-alive and close, orphaned requests), and the
 * server on a real io_uring with client sockets on 127.0.0.1 (timeouts, many connections).
 */
#include "http/http.h"
#include "test.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- handlers ---- */

static http_request *parked[64];
static int nparked;

static void h_hello(http_request *req, void *ctx)
{
    http_respond(req, 200, "text/plain", "hello", 5);
}

static void h_echo(http_request *req, void *ctx)
{
    http_respond(req, 200, "application/octet-stream", req->body, req->body_len);
}

static void h_params(http_request *req, void *ctx)
{
    char out[512];
    int n = snprintf(out, sizeof(out), "%u:%s/%s/%s", req->nparams, req->params[0],
                     req->params[1], req->params[2]);
    http_respond(req, 200, "text/plain", out, (size_t)n);
}

static void h_park(http_request *req, void *ctx)
{
    AL_ASSERT(nparked < 64);
    parked[nparked++] = req;
}

static void h_query(http_request *req, void *ctx)
{
    char v[64];
    int n = http_request_query(req, "level", v, sizeof(v));
    if (n < 0) http_respond_error(req, 400, "no level");
    else http_respond(req, 200, "text/plain", v, (size_t)n);
}

static const struct http_route routes[] = {
    {HTTP_GET, "/hello", h_hello},
    {HTTP_POST, "/echo", h_echo},
    {HTTP_PUT, "/echo", h_echo},
    {HTTP_GET, "/v1/partitions/{namespace}/{topic}/{partition}", h_params},
    {HTTP_GET, "/park/{n}", h_park},
    {HTTP_GET, "/q", h_query},
};
static const http_router router = {routes, AL_ARRAY_SIZE(routes), NULL};

/* ---- router ---- */

TEST(router_match)
{
    char pbuf[256];
    const char *params[HTTP_MAX_PARAMS];
    uint32_t np, allow;
    CHECK_EQ(http_router_match(&router, HTTP_GET, "/hello", pbuf, sizeof(pbuf), params, &np,
                               &allow), 0);
    CHECK_EQ(http_router_match(&router, HTTP_HEAD, "/hello", pbuf, sizeof(pbuf), params, &np,
                               &allow), 0);
    CHECK_EQ(http_router_match(&router, HTTP_GET, "/hello/", pbuf, sizeof(pbuf), params, &np,
                               &allow), -404);
    CHECK_EQ(http_router_match(&router, HTTP_GET, "/nope", pbuf, sizeof(pbuf), params, &np,
                               &allow), -404);
    CHECK_EQ(http_router_match(&router, HTTP_DELETE, "/echo", pbuf, sizeof(pbuf), params, &np,
                               &allow), -405);
    CHECK_EQ(allow, (1u << HTTP_POST) | (1u << HTTP_PUT));
    int r = http_router_match(&router, HTTP_GET, "/v1/partitions/kafka/my%20topic/3", pbuf,
                              sizeof(pbuf), params, &np, &allow);
    CHECK_EQ(r, 3);
    CHECK_EQ(np, 3);
    CHECK(!strcmp(params[0], "kafka") && !strcmp(params[1], "my topic") &&
          !strcmp(params[2], "3"));
    CHECK_EQ(http_router_match(&router, HTTP_GET, "/v1/partitions/kafka//3", pbuf, sizeof(pbuf),
                               params, &np, &allow), -404);
    CHECK_EQ(http_router_match(&router, HTTP_GET, "/v1/partitions/kafka/a%2/3", pbuf,
                               sizeof(pbuf), params, &np, &allow), -400);
    CHECK_EQ(http_router_match(&router, HTTP_GET, "/v1/partitions/kafka/a%00b/3", pbuf,
                               sizeof(pbuf), params, &np, &allow), -400);
    CHECK_EQ(http_router_match(&router, HTTP_GET, "/v1/partitions/kafka/t/3/x", pbuf,
                               sizeof(pbuf), params, &np, &allow), -404);
}

/* ---- connection protocol ---- */

static struct http_limits lim;
static int notified;

static void on_notify(http_conn *c, void *arg)
{
    notified++;
}

static http_conn *conn_new(void)
{
    lim = (struct http_limits){0};
    http_limits_defaults(&lim);
    nparked = 0;
    notified = 0;
    http_conn *c = http_conn_new(&router, &lim, on_notify, NULL);
    AL_ASSERT(c);
    return c;
}

/* Takes all output as a NUL-terminated string (static buffer). */
static const char *out_of(http_conn *c)
{
    static char buf[65536];
    size_t n;
    char *o = http_conn_take_output(c, &n);
    if (n >= sizeof(buf)) n = sizeof(buf) - 1;
    if (o) memcpy(buf, o, n);
    buf[o ? n : 0] = 0;
    free(o);
    return buf;
}

static int feed_str(http_conn *c, const char *s)
{
    return http_conn_feed(c, s, strlen(s));
}

TEST(conn_simple_get_keepalive)
{
    http_conn *c = conn_new();
    CHECK_EQ(feed_str(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
    const char *o = out_of(c);
    CHECK(!strncmp(o, "HTTP/1.1 200 OK\r\n", 17));
    CHECK(strstr(o, "Content-Length: 5\r\n") && strstr(o, "\r\n\r\nhello"));
    CHECK(!strstr(o, "Connection: close"));
    CHECK(http_conn_can_read(c) && !http_conn_done(c));
    CHECK_EQ(notified, 0); /* answered inside feed: no notify needed */
    /* Second request on the same connection, delivered one byte at a time. */
    const char *req = "GET /q?level=de%62ug&x=1 HTTP/1.1\r\nHost: x\r\n\r\n";
    for (size_t i = 0; req[i]; i++) CHECK_EQ(http_conn_feed(c, req + i, 1), 0);
    o = out_of(c);
    CHECK(strstr(o, "\r\n\r\ndebug") != NULL);
    http_conn_free(c);
}

TEST(conn_errors_are_json)
{
    static const struct {
        const char *req;
        int status;
        const char *msg;
    } cases[] = {
        {"GET /nope HTTP/1.1\r\n\r\n", 404, "no such endpoint"},
        {"DELETE /echo HTTP/1.1\r\n\r\n", 405, "not allowed"},
        {"GARBAGE\r\n\r\n", 400, "malformed request"},
        {"GET /hello HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 413, "size limit"},
        {"GET /v1/partitions/a/b%zz/1 HTTP/1.1\r\n\r\n", 400, "malformed path"},
        {"GET /q HTTP/1.1\r\n\r\n", 400, "no level"},
    };
    for (size_t i = 0; i < AL_ARRAY_SIZE(cases); i++) {
        http_conn *c = conn_new();
        feed_str(c, cases[i].req);
        const char *o = out_of(c);
        char want[64];
        snprintf(want, sizeof(want), "HTTP/1.1 %d ", cases[i].status);
        if (strncmp(o, want, strlen(want))) fprintf(stderr, "case %zu: %s\n", i, o);
        CHECK(!strncmp(o, want, strlen(want)));
        CHECK(strstr(o, "Content-Type: application/json"));
        const char *body = strstr(o, "\r\n\r\n");
        CHECK(body);
        json_error_t je;
        json_t *j = json_loads(body + 4, 0, &je);
        CHECK(j != NULL);
        CHECK_EQ(json_integer_value(json_object_get(j, "code")), cases[i].status);
        CHECK(strstr(json_string_value(json_object_get(j, "message")), cases[i].msg));
        json_decref(j);
        if (cases[i].status == 405) CHECK(strstr(o, "Allow: POST, PUT\r\n"));
        http_conn_free(c);
    }
}

TEST(conn_header_limits)
{
    http_conn *c = conn_new();
    char big[20000];
    int n = snprintf(big, sizeof(big), "GET /hello HTTP/1.1\r\nX-Big: ");
    memset(big + n, 'a', 17000);
    memcpy(big + n + 17000, "\r\n\r\n", 5);
    CHECK_EQ(feed_str(c, big), AL_ECLOSED);
    CHECK(!strncmp(out_of(c), "HTTP/1.1 431 ", 13));
    CHECK(http_conn_done(c));
    http_conn_free(c);

    c = conn_new();
    char many[8192];
    n = snprintf(many, sizeof(many), "GET /hello HTTP/1.1\r\n");
    for (int i = 0; i < 70; i++) n += snprintf(many + n, sizeof(many) - (size_t)n, "H%d: v\r\n", i);
    snprintf(many + n, sizeof(many) - (size_t)n, "\r\n");
    CHECK_EQ(feed_str(c, many), AL_ECLOSED);
    CHECK(strstr(out_of(c), "too many headers"));
    http_conn_free(c);
}

TEST(conn_body_and_headers)
{
    http_conn *c = conn_new();
    CHECK_EQ(feed_str(c, "POST /echo HTTP/1.1\r\nContent-Type: text/plain\r\nX-Empty:\r\n"
                         "Content-Length: 11\r\n\r\nhello"), 0);
    CHECK_EQ(out_of(c)[0], 0); /* body incomplete */
    CHECK(http_conn_mid_request(c));
    CHECK_EQ(feed_str(c, " world"), 0);
    const char *o = out_of(c);
    CHECK(strstr(o, "Content-Length: 11\r\n\r\nhello world"));
    CHECK(!http_conn_mid_request(c));
    /* Chunked bodies are decoded by the parser and limited the same way. */
    CHECK_EQ(feed_str(c, "PUT /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), 0);
    CHECK(strstr(out_of(c), "Content-Length: 5\r\n\r\nabcde"));
    http_conn_free(c);

    c = conn_new();
    lim.max_body_bytes = 4;
    CHECK_EQ(feed_str(c, "PUT /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), AL_ECLOSED);
    CHECK(!strncmp(out_of(c), "HTTP/1.1 413 ", 13));
    http_conn_free(c);
}

TEST(conn_close_and_http10_and_head)
{
    http_conn *c = conn_new();
    CHECK_EQ(feed_str(c, "GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n"
                         "GET /hello HTTP/1.1\r\n\r\n"),
             AL_ECLOSED);
    const char *o = out_of(c);
    CHECK(strstr(o, "Connection: close\r\n"));
    CHECK(strstr(o + 10, "HTTP/1.1") == NULL); /* the second request is never answered */
    CHECK(http_conn_done(c));
    http_conn_free(c);

    c = conn_new();
    CHECK_EQ(feed_str(c, "GET /hello HTTP/1.0\r\n\r\n"), AL_ECLOSED);
    CHECK(strstr(out_of(c), "Connection: close\r\n"));
    http_conn_free(c);

    c = conn_new();
    CHECK_EQ(feed_str(c, "GET /hello HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                         "\r\n\x81\x05hello"),
             AL_ECLOSED);
    o = out_of(c);
    CHECK(!strncmp(o, "HTTP/1.1 200 ", 13) && strstr(o, "Connection: close\r\n"));
    CHECK(http_conn_done(c));
    http_conn_free(c);

    c = conn_new();
    CHECK_EQ(feed_str(c, "HEAD /hello HTTP/1.1\r\n\r\n"), 0);
    o = out_of(c);
    CHECK(strstr(o, "Content-Length: 5\r\n\r\n") && !strstr(o, "hello"));
    http_conn_free(c);
}

TEST(conn_pipelining_in_order_with_async_answers)
{
    http_conn *c = conn_new();
    lim.max_pipelined = 3;
    char reqs[2048] = "";
    for (int i = 0; i < 6; i++)
        snprintf(reqs + strlen(reqs), sizeof(reqs) - strlen(reqs),
                 "GET /park/%d HTTP/1.1\r\n\r\n", i);
    strcat(reqs, "GET /hello HTTP/1.1\r\n\r\n");
    CHECK_EQ(feed_str(c, reqs), 0);
    CHECK_EQ(nparked, 3); /* the pipeline limit holds the rest back */
    CHECK(!http_conn_can_read(c));
    /* Answer out of order: nothing may go out before /park/0 is answered. */
    http_respond(parked[2], 200, "text/plain", "two", 3);
    http_respond(parked[1], 200, "text/plain", "one", 3);
    CHECK_EQ(out_of(c)[0], 0);
    CHECK_EQ(notified, 0);
    http_respond(parked[0], 200, "text/plain", "zero", 4);
    CHECK_EQ(notified, 1);
    const char *o = out_of(c);
    const char *z = strstr(o, "zero"), *on = strstr(o, "one"), *tw = strstr(o, "two");
    CHECK(z && on && tw && z < on && on < tw);
    CHECK_EQ(nparked, 6); /* freed slots let the remaining input be parsed */
    for (int i = 3; i < 6; i++) http_respond(parked[i], 200, "text/plain", "x", 1);
    o = out_of(c);
    CHECK(strstr(o, "\r\n\r\nhello")); /* the synchronous one after them */
    CHECK_EQ(http_conn_pending(c), 0);
    http_conn_free(c);
}

TEST(conn_orphaned_request)
{
    http_conn *c = conn_new();
    CHECK_EQ(feed_str(c, "GET /park/1 HTTP/1.1\r\n\r\n"), 0);
    CHECK_EQ(nparked, 1);
    http_conn_free(c); /* client went away while the handler works */
    http_respond_error(parked[0], 500, "late answer"); /* discarded, freed (ASan checks) */
}

TEST(conn_fail_timeout_after_pending)
{
    http_conn *c = conn_new();
    CHECK_EQ(feed_str(c, "GET /park/1 HTTP/1.1\r\n\r\nGET /hel"), 0);
    CHECK(http_conn_mid_request(c));
    http_conn_fail(c, 408, "request not completed in time");
    CHECK_EQ(out_of(c)[0], 0); /* waits for the parked answer */
    http_respond(parked[0], 200, "text/plain", "ok", 2);
    const char *o = out_of(c);
    CHECK(!strncmp(o, "HTTP/1.1 200 ", 13));
    CHECK(strstr(o, "HTTP/1.1 408 Request Timeout"));
    CHECK(http_conn_done(c));
    http_conn_free(c);
}

/* ---- the server on io_uring ---- */

static int client_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    AL_ASSERT(fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

/* Polls io until fd has `want` in its input (or closes: returns what was read, -1 on EOF
 * with nothing). Bounded by 5 s. */
static int client_read_until(io *ring, int fd, char *buf, size_t cap, const char *want)
{
    size_t n = 0;
    uint64_t deadline = io_now_ns(ring) + 5000000000ull;
    buf[0] = 0;
    while (io_now_ns(ring) < deadline) {
        io_poll(ring, io_now_ns(ring) + 2000000);
        ssize_t r = recv(fd, buf + n, cap - 1 - n, 0);
        if (r > 0) {
            n += (size_t)r;
            buf[n] = 0;
            if (want && strstr(buf, want)) return (int)n;
        } else if (r == 0) {
            return n ? (int)n : -1;
        }
    }
    return (int)n;
}

static bool stopped;
static void on_stopped(void *arg)
{
    stopped = true;
}

TEST(server_on_io_uring)
{
    io *ring = NULL;
    int err = io_uring_create(&ring, &(struct io_uring_opts){.entries = 256});
    if (err) {
        printf("    (io_uring unavailable: %s; skipped)\n", al_strerror(err));
        return;
    }
    nparked = 0;
    struct http_server_opts o = {.host = "127.0.0.1", .port = 0, .router = router};
    o.limits.idle_timeout_ms = 300;
    o.limits.request_timeout_ms = 300;
    http_server *s = NULL;
    CHECK_EQ(http_server_start(ring, &o, &s), 0);
    uint16_t port = http_server_port(s);
    CHECK(port > 0);
    char buf[8192];

    /* Keep-alive: two requests on one connection, then a pipelined pair. */
    int fd = client_connect(port);
    const char *r1 = "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n";
    CHECK(send(fd, r1, strlen(r1), 0) == (ssize_t)strlen(r1));
    CHECK(client_read_until(ring, fd, buf, sizeof(buf), "hello") > 0);
    CHECK(!strncmp(buf, "HTTP/1.1 200 OK", 15));
    const char *r2 = "POST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
                     "GET /hello HTTP/1.1\r\n\r\n";
    CHECK(send(fd, r2, strlen(r2), 0) == (ssize_t)strlen(r2));
    CHECK(client_read_until(ring, fd, buf, sizeof(buf), "hello") > 0);
    CHECK(strstr(buf, "abc") && strstr(buf, "abc") < strstr(buf, "hello"));
    CHECK_EQ(http_server_conns(s), 1);

    /* Idle timeout closes the connection. */
    CHECK_EQ(client_read_until(ring, fd, buf, sizeof(buf), NULL), -1);
    CHECK_EQ(http_server_conns(s), 0);
    close(fd);

    /* A partial request gets 408 and a close. */
    fd = client_connect(port);
    CHECK(send(fd, "GET /hel", 8, 0) == 8);
    CHECK(client_read_until(ring, fd, buf, sizeof(buf), "}") > 0);
    CHECK(!strncmp(buf, "HTTP/1.1 408 ", 13));
    close(fd);

    /* An asynchronous answer while the client waits, then many connections at once. */
    fd = client_connect(port);
    CHECK(send(fd, "GET /park/1 HTTP/1.1\r\n\r\n", 24, 0) == 24);
    for (int i = 0; i < 20 && nparked == 0; i++) io_poll(ring, io_now_ns(ring) + 5000000);
    CHECK_EQ(nparked, 1);
    http_respond(parked[0], 200, "text/plain", "later", 5);
    CHECK(client_read_until(ring, fd, buf, sizeof(buf), "later") > 0);
    close(fd);
    int fds[40];
    for (int i = 0; i < 40; i++) {
        fds[i] = client_connect(port);
        CHECK(send(fds[i], r1, strlen(r1), 0) > 0);
    }
    for (int i = 0; i < 40; i++)
        CHECK(client_read_until(ring, fds[i], buf, sizeof(buf), "hello") > 0);
    /* A request parked when the server stops: the connection closes, the answer is dropped. */
    nparked = 0;
    CHECK(send(fds[0], "GET /park/2 HTTP/1.1\r\n\r\n", 24, 0) == 24);
    for (int i = 0; i < 20 && nparked == 0; i++) io_poll(ring, io_now_ns(ring) + 5000000);
    CHECK_EQ(nparked, 1);
    stopped = false;
    http_server_stop(s, on_stopped, NULL);
    for (int i = 0; i < 200 && !stopped; i++) io_poll(ring, io_now_ns(ring) + 5000000);
    CHECK(stopped);
    http_respond(parked[0], 200, "text/plain", "gone", 4);
    for (int i = 0; i < 40; i++) close(fds[i]);
    io_destroy(ring);
}

/* Accept failing with EMFILE must not spin: the server retries from its tick and serves the
 * waiting clients once descriptors are available again. */
TEST(server_accept_retries_after_emfile)
{
    io *ring = NULL;
    if (io_uring_create(&ring, &(struct io_uring_opts){.entries = 64})) {
        printf("    (io_uring unavailable; skipped)\n");
        return;
    }
    struct http_server_opts o = {.host = "127.0.0.1", .port = 0, .router = router};
    http_server *s = NULL;
    CHECK_EQ(http_server_start(ring, &o, &s), 0);
    int fds[3];
    for (int i = 0; i < 3; i++) fds[i] = client_connect(http_server_port(s));
    struct rlimit old, low;
    CHECK_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
    int probe = open("/dev/null", O_RDONLY); /* the lowest free descriptor */
    CHECK(probe >= 0);
    close(probe);
    low = old;
    low.rlim_cur = (rlim_t)probe; /* no new descriptor can be created */
    CHECK_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
    int polls = 0;
    for (uint64_t end = io_now_ns(ring) + 300000000ull; io_now_ns(ring) < end; polls++)
        io_poll(ring, io_now_ns(ring) + 10000000);
    CHECK_EQ(http_server_conns(s), 0);
    CHECK(polls < 1000); /* waited on the tick, not a busy loop of failing accepts */
    CHECK_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
    char buf[4096];
    const char *r1 = "GET /hello HTTP/1.1\r\n\r\n";
    for (int i = 0; i < 3; i++) {
        CHECK(send(fds[i], r1, strlen(r1), 0) > 0);
        CHECK(client_read_until(ring, fds[i], buf, sizeof(buf), "hello") > 0);
        close(fds[i]);
    }
    stopped = false;
    http_server_stop(s, on_stopped, NULL);
    for (int i = 0; i < 200 && !stopped; i++) io_poll(ring, io_now_ns(ring) + 5000000);
    CHECK(stopped);
    io_destroy(ring);
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
