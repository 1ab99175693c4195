/*
 * http.h — the HTTP/1.1 server used by the admin API (and later the HTTP proxy and schema
 * registry), in three layers:
 *
 *   - the router: a table of (method, path pattern with {params}, handler);
 *   - the connection protocol (http_conn): bytes in, responses out, no I/O. It parses with
 *     Debian's libhttp-parser, enforces header/body/pipelining limits, dispatches each
 *     complete request to its route, and writes responses strictly in request order even when
 *     handlers answer asynchronously. This layer is what the fuzzer drives;
 *   - the server (http_server): listener, connections, timeouts on the shard's `io`.
 *
 * Handlers: `void fn(http_request *req, void *ctx)`. A handler must call exactly one of the
 * http_respond* functions for req, either before it returns or later (asynchronously, e.g.
 * after asking another shard) — always on the shard that owns the server. Until then the
 * request stays valid, even if the client disconnects (the answer is then discarded).
 *
 * Errors go out as JSON `{"message": "...", "code": N}`, as Redpanda's admin API does:
 * 400 malformed request, 404 no route, 405 route exists for another method (with Allow),
 * 408 request not completed in time, 413 body over the limit, 431 headers over the limit,
 * 500 handler failure, 503 not ready.
 */
#ifndef AL_HTTP_H
#define AL_HTTP_H

#include "base/base.h"
#include "reactor/io.h"

#include <http_parser.h>
#include <jansson.h>

#define HTTP_MAX_PARAMS 8

struct http_limits {
    uint32_t max_header_bytes;   /* request line + headers (default 16 KiB) */
    uint32_t max_headers;        /* default 64 */
    uint32_t max_body_bytes;     /* default 1 MiB */
    uint32_t max_pipelined;      /* requests parsed but not yet answered (default 16) */
    uint32_t idle_timeout_ms;    /* keep-alive connection with nothing pending (default 60 s) */
    uint32_t request_timeout_ms; /* from a request's first byte to its last (default 10 s) */
    uint32_t max_conns;          /* per server (default 256) */
};

/* Fills zero fields of l with the defaults above. */
void http_limits_defaults(struct http_limits *l);

typedef struct http_request http_request;
typedef void (*http_handler)(http_request *req, void *ctx);

struct http_route {
    enum http_method method; /* HTTP_GET also answers HEAD */
    const char *pattern;     /* "/v1/partitions/{namespace}/{topic}/{partition}" */
    http_handler fn;
};

typedef struct http_router {
    const struct http_route *routes;
    size_t nroutes;
    void *ctx; /* passed to every handler */
} http_router;

/* A parsed request. Fields are read-only for handlers and valid until the response. */
struct http_request {
    enum http_method method;
    const char *url;   /* as received */
    const char *path;  /* the path part, not decoded */
    const char *query; /* the query string without '?', "" if none */
    const char *body;  /* NUL-terminated for convenience; body_len excludes the NUL */
    size_t body_len;
    const char *params[HTTP_MAX_PARAMS]; /* percent-decoded {param} values, in pattern order */
    uint32_t nparams;
    const struct http_route *route;
    bool keep_alive;
};

/* Value of header `name` (case-insensitive) or NULL. */
const char *http_request_header(const http_request *req, const char *name);

/* Copies the percent-decoded value of query parameter `name` into buf (NUL-terminated).
 * Returns its length, AL_ENOTFOUND, or AL_ETOOLARGE if it does not fit. */
int http_request_query(const http_request *req, const char *name, char *buf, size_t cap);

/* Answers req with status and a copy of body (len bytes) as content_type. */
void http_respond(http_request *req, int status, const char *content_type, const void *body,
                  size_t len);

/* Same, taking ownership of the malloc'd body. */
void http_respond_take(http_request *req, int status, const char *content_type, char *body,
                       size_t len);

/* Answers with the JSON encoding of j (the reference is stolen). A failure to encode
 * answers 500. */
void http_respond_json(http_request *req, int status, json_t *j);

/* Answers {"message": <formatted>, "code": status}. */
AL_PRINTF(3, 4) void http_respond_error(http_request *req, int status, const char *fmt, ...);

/* Reason phrase of a status code ("Not Found"), "Unknown" if not known. */
const char *http_status_text(int status);

/*
 * Matches method and path against the router. On a match returns the route index and writes
 * the percent-decoded params into pbuf (pcap bytes) with pointers in params[]; returns -404 if
 * no pattern matches the path, -405 if some pattern matches for another method (allow then
 * holds a bitmask of 1 << method of the methods that would match), -400 for a malformed
 * percent-escape or params over pcap.
 */
int http_router_match(const http_router *r, enum http_method method, const char *path,
                      char *pbuf, size_t pcap, const char **params, uint32_t *nparams,
                      uint32_t *allow);

/* ---- the connection protocol (no I/O) ---- */

typedef struct http_conn http_conn;

/* Called when output became available outside of http_conn_feed (an asynchronous response). */
typedef void (*http_conn_notify)(http_conn *c, void *arg);

/* Creates a connection state. router and limits must outlive it. Returns NULL on ENOMEM. */
http_conn *http_conn_new(const http_router *router, const struct http_limits *lim,
                         http_conn_notify notify, void *arg);

/* Frees it. Requests whose handlers have not answered yet are orphaned: their answer, when
 * it comes, is discarded and the request freed then. */
void http_conn_free(http_conn *c);

/*
 * Feeds received bytes: parses, dispatches complete requests to handlers (which may answer at
 * once), and queues responses. Input beyond what can be parsed now (pipelining limit) is kept
 * and parsed as answers go out. Returns 0, or AL_ECLOSED once the connection accepts no more
 * input (an error response was queued, or a request asked to close): flush the output, then
 * close.
 */
int http_conn_feed(http_conn *c, const void *data, size_t len);

/* Takes the queued output (malloc'd, *len bytes; NULL if none). The caller frees it. */
char *http_conn_take_output(http_conn *c, size_t *len);

/* True if more input is wanted now (not closing, room in the pipeline and the buffer). */
bool http_conn_can_read(const http_conn *c);

/* True when nothing more will happen: closing, no request pending and no output queued. */
bool http_conn_done(const http_conn *c);

/* True while a request is partly received (for the request timeout). */
bool http_conn_mid_request(const http_conn *c);

/* Number of requests parsed and not yet answered. */
uint32_t http_conn_pending(const http_conn *c);

/* Queues an error response after the pending ones and stops reading (timeouts). */
void http_conn_fail(http_conn *c, int status, const char *message);

/* ---- the server on an io ---- */

typedef struct http_server http_server;

struct http_server_opts {
    const char *host; /* NULL or "" for all addresses */
    uint16_t port;    /* 0: any free port (see http_server_port) */
    bool reuseport;
    struct http_limits limits; /* zero fields take the defaults */
    http_router router;
};

/* Starts listening and serving on io (the calling shard). Returns 0 or -errno (bind). */
int http_server_start(io *io, const struct http_server_opts *opts, http_server **out);

/* The bound port. */
uint16_t http_server_port(const http_server *s);

/* Number of open connections. */
uint32_t http_server_conns(const http_server *s);

/* Stops accepting, closes every connection and frees the server once all of its ops have
 * completed, then calls done(arg) (may be NULL). Keep polling the io until then. */
void http_server_stop(http_server *s, void (*done)(void *arg), void *arg);

#endif
