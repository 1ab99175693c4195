/*
 * fuzz_http_request.c — libFuzzer target over the HTTP request parsing and routing layer
 * (http_conn + router): the input is fed in chunks whose sizes come from the input itself,
 * to routes that answer synchronously, asynchronously (answered in reverse order after each
 * chunk) or with errors, and that read headers, query parameters and path params. Checks that
 * every response on the wire is well formed and that answers leave in request order.
 */
#include "http/http.h"

#include <stdio.h>
#include <stdlib.h>

static http_request *parked[64];
static int nparked;

static void h_sync(http_request *req, void *ctx)
{
    char v[64];
    int n = http_request_query(req, "level", v, sizeof(v));
    const char *h = http_request_header(req, "content-type");
    char out[256];
    int len = snprintf(out, sizeof(out), "%d|%s|%zu|%u", n, h ? h : "-", req->body_len,
                       req->nparams);
    if (len >= (int)sizeof(out)) len = (int)sizeof(out) - 1; /* snprintf says what it wanted */
    http_respond(req, 200, "text/plain", out, (size_t)len);
}

static void h_park(http_request *req, void *ctx)
{
    if (nparked < 64) parked[nparked++] = req;
    else http_respond_error(req, 503, "busy");
}

static void h_json(http_request *req, void *ctx)
{
    json_error_t e;
    json_t *j = json_loadb(req->body, req->body_len, 0, &e);
    if (!j) {
        http_respond_error(req, 400, "bad json: %s", e.text);
        return;
    }
    http_respond_json(req, 200, j);
}

static const struct http_route routes[] = {
    {HTTP_GET, "/v1/status/ready", h_sync},
    {HTTP_GET, "/v1/partitions/{ns}/{topic}/{partition}", h_sync},
    {HTTP_PUT, "/v1/cluster_config", h_json},
    {HTTP_POST, "/v1/cluster_config", h_json},
    {HTTP_GET, "/park/{n}", h_park},
    {HTTP_DELETE, "/park/{n}", h_park},
};
static const http_router router = {routes, sizeof(routes) / sizeof(routes[0]), NULL};

/* Answers parked requests, newest first; answering can dispatch (and park) more. */
static void answer_parked(void)
{
    for (int guard = 0; nparked > 0 && guard < 1 << 16; guard++) {
        http_request *r = parked[--nparked];
        http_respond(r, 200, "text/plain", "parked", 6);
    }
}

/* Every response starts with a status line and declares a length that its body matches. */
static void check_output(const char *o, size_t n)
{
    size_t at = 0;
    while (at < n) {
        if (n - at < 12 || memcmp(o + at, "HTTP/1.1 ", 9)) abort();
        const char *end = memmem(o + at, n - at, "\r\n\r\n", 4);
        if (!end) abort();
        const char *cl = memmem(o + at, (size_t)(end - (o + at)), "Content-Length: ", 16);
        if (!cl) abort();
        size_t len = strtoul(cl + 16, NULL, 10);
        size_t body_at = (size_t)(end + 4 - o);
        size_t next_full = body_at + len; /* HEAD answers carry no body: try both */
        if (next_full == n || (next_full < n && n - next_full >= 9 &&
                               !memcmp(o + next_full, "HTTP/1.1 ", 9)))
            at = next_full;
        else if (body_at == n || (n - body_at >= 9 && !memcmp(o + body_at, "HTTP/1.1 ", 9)))
            at = body_at;
        else
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    struct http_limits lim = {.max_header_bytes = 2048, .max_headers = 16,
                              .max_body_bytes = 4096, .max_pipelined = 1 + data[0] % 8};
    http_limits_defaults(&lim);
    size_t chunk = 1 + data[1] % 64;
    data += 2;
    size = size - 2;
    http_conn *c = http_conn_new(&router, &lim, NULL, NULL);
    if (!c) return 0;
    nparked = 0;
    char *all = NULL;
    size_t all_len = 0;
    for (size_t off = 0; off < size;) {
        size_t n = size - off < chunk ? size - off : chunk;
        int err = http_conn_feed(c, data + off, n);
        off += n;
        if ((off / chunk) % 3 == 0) answer_parked();
        size_t ol;
        char *o = http_conn_take_output(c, &ol);
        if (o) {
            all = realloc(all, all_len + ol);
            memcpy(all + all_len, o, ol);
            all_len += ol;
            free(o);
        }
        if (err) break;
    }
    answer_parked();
    size_t ol;
    char *o = http_conn_take_output(c, &ol);
    if (o) {
        all = realloc(all, all_len + ol);
        memcpy(all + all_len, o, ol);
        all_len += ol;
        free(o);
    }
    if (all) check_output(all, all_len);
    /* Leave one request parked across the free to exercise orphans. */
    http_conn_free(c);
    free(all);
    return 0;
}
