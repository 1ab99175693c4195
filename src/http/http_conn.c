/*
 * http_conn.c — the HTTP/1.1 connection protocol without I/O (see http.h): libhttp-parser
 * callbacks that collect one request at a time under limits, an in-order queue of requests
 * (pipelining), dispatch through the router, and response serialization.
 *
 * Parsing pauses after every complete message so that each request is dispatched outside the
 * parser's callbacks; a handler may therefore answer (and output be produced) re-entrantly.
 */
#include "http/http.h"
#include "metrics/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#define IN_BUFFER_MAX (64u * 1024u)

enum req_state { REQ_PARSING, REQ_WAITING, REQ_DISPATCHED, REQ_DONE };

struct req {
    http_request pub;
    http_conn *conn; /* NULL once orphaned */
    struct req *next;
    enum req_state state;
    /* Arena for the URL and headers: "url\0name\0value\0name\0value\0...". */
    char *arena;
    uint32_t arena_len, arena_cap;
    uint32_t url_len;
    uint32_t hdr_off[128]; /* name offsets (value follows the name's NUL) */
    uint32_t nhdr;
    bool in_value;
    char *path_copy;  /* NUL-terminated path and query split out of the URL */
    char *body;
    size_t body_len, body_cap;
    char params[1024];
    /* The response, serialized, once answered. */
    char *resp;
    size_t resp_len;
    bool close_after;
};

struct http_conn {
    const http_router *router;
    const struct http_limits *lim;
    http_conn_notify notify;
    void *arg;
    http_parser parser;
    struct req *head, *tail; /* in arrival order */
    uint32_t nqueue;         /* parsed or being parsed, not yet serialized */
    struct req *cur;         /* being parsed */
    char *in;                /* unparsed input */
    size_t in_off, in_len, in_cap;
    char *out;
    size_t out_len, out_cap;
    bool closing;   /* no more input accepted */
    bool parsing;   /* inside conn_parse (guards re-entry) */
    bool in_feed;   /* inside http_conn_feed: no notify needed */
    int fail_status;
    const char *fail_msg;
};

static const http_parser_settings settings;

void http_limits_defaults(struct http_limits *l)
{
    if (!l->max_header_bytes) l->max_header_bytes = 16 * 1024;
    if (!l->max_headers) l->max_headers = 64;
    if (l->max_headers > 128) l->max_headers = 128;
    if (!l->max_body_bytes) l->max_body_bytes = 1024 * 1024;
    if (!l->max_pipelined) l->max_pipelined = 16;
    if (!l->idle_timeout_ms) l->idle_timeout_ms = 60000;
    if (!l->request_timeout_ms) l->request_timeout_ms = 10000;
    if (!l->max_conns) l->max_conns = 256;
}

const char *http_status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

/* ---- small buffers ---- */

/* Appends n bytes to *buf (len, cap), growing it. Returns 0 or -ENOMEM. */
static int buf_append(char **buf, size_t *len, size_t *cap, const void *p, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t nc = *cap ? *cap : 256;
        while (nc < *len + n + 1) nc *= 2;
        char *nb = realloc(*buf, nc);
        if (!nb) return -ENOMEM;
        *buf = nb;
        *cap = nc;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
    (*buf)[*len] = 0;
    return 0;
}

static void req_free(struct req *r)
{
    if (!r) return;
    free(r->arena);
    free(r->path_copy);
    free(r->body);
    free(r->resp);
    free(r);
}

static void conn_fail(http_conn *c, int status, const char *msg)
{
    if (!c->fail_status) {
        c->fail_status = status;
        c->fail_msg = msg;
    }
}

/* Appends to the current request's arena, enforcing the header byte limit. */
static int arena_append(http_conn *c, struct req *r, const char *p, size_t n, bool nul)
{
    size_t need = (size_t)r->arena_len + n + (nul ? 1 : 0);
    if (need > c->lim->max_header_bytes) {
        conn_fail(c, 431, "request line and headers exceed the size limit");
        return -1;
    }
    size_t len = r->arena_len, cap = r->arena_cap;
    if (buf_append(&r->arena, &len, &cap, p, n) || (nul && buf_append(&r->arena, &len, &cap,
                                                                        "", 1))) {
        conn_fail(c, 500, "out of memory");
        return -1;
    }
    r->arena_len = (uint32_t)len;
    r->arena_cap = (uint32_t)cap;
    return 0;
}

/* ---- parser callbacks ---- */

static int on_message_begin(http_parser *p)
{
    http_conn *c = p->data;
    struct req *r = calloc(1, sizeof(*r));
    if (!r) {
        conn_fail(c, 500, "out of memory");
        return -1;
    }
    r->conn = c;
    r->state = REQ_PARSING;
    c->cur = r;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    http_conn *c = p->data;
    struct req *r = c->cur;
    if (arena_append(c, r, at, n, false)) return -1;
    r->url_len += (uint32_t)n;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    http_conn *c = p->data;
    struct req *r = c->cur;
    if (r->nhdr == 0 && r->url_len == r->arena_len) {
        if (arena_append(c, r, "", 0, true)) return -1; /* terminate the URL */
    }
    if (r->in_value || r->nhdr == 0) {
        if (r->nhdr > 0 && arena_append(c, r, "", 0, true)) return -1; /* end of value */
        if (r->nhdr >= c->lim->max_headers) {
            conn_fail(c, 431, "too many headers");
            return -1;
        }
        r->hdr_off[r->nhdr++] = r->arena_len;
        r->in_value = false;
    }
    return arena_append(c, r, at, n, false);
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    http_conn *c = p->data;
    struct req *r = c->cur;
    if (!r->in_value) {
        if (arena_append(c, r, "", 0, true)) return -1; /* end of name */
        r->in_value = true;
    }
    return arena_append(c, r, at, n, false);
}

/* Splits the URL into path and query (into r->path_copy). Returns 0 or -1 (malformed). */
static int req_split_url(struct req *r)
{
    const char *url = r->arena;
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (r->url_len == 0 || http_parser_parse_url(url, r->url_len, 0, &u)) return -1;
    if (!(u.field_set & (1 << UF_PATH))) return -1;
    size_t plen = u.field_data[UF_PATH].len;
    size_t qlen = (u.field_set & (1 << UF_QUERY)) ? u.field_data[UF_QUERY].len : 0;
    r->path_copy = malloc(plen + qlen + 2);
    if (!r->path_copy) return -1;
    memcpy(r->path_copy, url + u.field_data[UF_PATH].off, plen);
    r->path_copy[plen] = 0;
    if (qlen) memcpy(r->path_copy + plen + 1, url + u.field_data[UF_QUERY].off, qlen);
    r->path_copy[plen + 1 + qlen] = 0;
    r->pub.path = r->path_copy;
    r->pub.query = r->path_copy + plen + 1;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    http_conn *c = p->data;
    struct req *r = c->cur;
    if (r->nhdr == 0 && r->url_len == r->arena_len) {
        if (arena_append(c, r, "", 0, true)) return -1;
    } else if (r->nhdr > 0) {
        if (!r->in_value && arena_append(c, r, "", 0, true)) return -1; /* name without value */
        if (arena_append(c, r, "", 0, true)) return -1;
    }
    r->pub.url = r->arena;
    if (req_split_url(r)) {
        conn_fail(c, 400, "malformed request target");
        return -1;
    }
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > c->lim->max_body_bytes) {
        conn_fail(c, 413, "request body exceeds the size limit");
        return -1;
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    http_conn *c = p->data;
    struct req *r = c->cur;
    if (r->body_len + n > c->lim->max_body_bytes) {
        conn_fail(c, 413, "request body exceeds the size limit");
        return -1;
    }
    if (buf_append(&r->body, &r->body_len, &r->body_cap, at, n)) {
        conn_fail(c, 500, "out of memory");
        return -1;
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    http_conn *c = p->data;
    struct req *r = c->cur;
    r->pub.method = (enum http_method)p->method;
    /* No protocol upgrades here: answer, then close (the parser stops at an upgrade). */
    r->pub.keep_alive = http_should_keep_alive(p) != 0 && !p->upgrade;
    r->pub.body = r->body ? r->body : "";
    r->pub.body_len = r->body_len;
    r->state = REQ_WAITING;
    if (c->tail) c->tail->next = r;
    else c->head = r;
    c->tail = r;
    c->nqueue++;
    c->cur = NULL;
    http_parser_pause(p, 1); /* dispatch outside the parser */
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- lifecycle ---- */

http_conn *http_conn_new(const http_router *router, const struct http_limits *lim,
                         http_conn_notify notify, void *arg)
{
    AL_ASSERT(router && lim && lim->max_pipelined > 0);
    http_conn *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    c->router = router;
    c->lim = lim;
    c->notify = notify;
    c->arg = arg;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    return c;
}

void http_conn_free(http_conn *c)
{
    if (!c) return;
    struct req *r = c->head;
    for (uint32_t i = 0; r && i <= c->lim->max_pipelined + 1; i++) {
        struct req *next = r->next;
        if (r->state == REQ_DISPATCHED) {
            r->conn = NULL; /* orphan: freed when its handler answers */
            r->next = NULL;
        } else {
            req_free(r);
        }
        r = next;
    }
    req_free(c->cur);
    free(c->in);
    free(c->out);
    free(c);
}

/* ---- responses ---- */

static void conn_flush(http_conn *c);
static void conn_parse(http_conn *c);

/* Serializes the response into r->resp (taking body). Returns 0 or -ENOMEM. */
static int resp_build(struct req *r, int status, const char *ctype, const char *extra,
                      const char *body, size_t len)
{
    char head[512];
    bool close = !r->pub.keep_alive || r->close_after;
    int hn = snprintf(head, sizeof(head),
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n",
                      status, http_status_text(status), ctype ? ctype : "application/json",
                      len, close ? "Connection: close\r\n" : "", extra ? extra : "");
    if (hn < 0 || (size_t)hn >= sizeof(head)) return -ENOMEM;
    bool head_only = r->pub.method == HTTP_HEAD;
    size_t total = (size_t)hn + (head_only ? 0 : len);
    char *out = malloc(total + 1);
    if (!out) return -ENOMEM;
    memcpy(out, head, (size_t)hn);
    if (!head_only && len) memcpy(out + hn, body, len);
    out[total] = 0;
    free(r->resp);
    r->resp = out;
    r->resp_len = total;
    return 0;
}

/* Records the answer to r and moves whatever is ready to the output. */
static void req_answer(struct req *r, int status, const char *ctype, const char *extra,
                       const char *body, size_t len)
{
    AL_ASSERT(r->state == REQ_DISPATCHED || r->state == REQ_WAITING);
    http_conn *c = r->conn;
    if (!c) { /* orphaned: the client went away */
        req_free(r);
        return;
    }
    if (resp_build(r, status, ctype, extra, body, len)) {
        static const char oom[] = "{\"message\": \"out of memory\", \"code\": 500}";
        r->close_after = true;
        if (resp_build(r, 500, NULL, NULL, oom, sizeof(oom) - 1)) r->resp_len = 0;
    }
    r->state = REQ_DONE;
    char code[8];
    snprintf(code, sizeof(code), "%d", status);
    metrics_counter_add(metrics_local, M_ADMIN_REQUESTS, 1, code);
    conn_flush(c);
}

void http_respond(http_request *req, int status, const char *content_type, const void *body,
                  size_t len)
{
    struct req *r = AL_CONTAINER_OF(req, struct req, pub);
    req_answer(r, status, content_type, NULL, body, len);
}

void http_respond_take(http_request *req, int status, const char *content_type, char *body,
                       size_t len)
{
    http_respond(req, status, content_type, body, len);
    free(body);
}

void http_respond_json(http_request *req, int status, json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    if (!s) {
        http_respond_error(req, 500, "could not encode the response");
        return;
    }
    http_respond_take(req, status, "application/json", s, strlen(s));
}

/* Builds {"message": msg, "code": status} into a malloc'd string (NULL on ENOMEM). */
static char *error_body(int status, const char *msg, size_t *len)
{
    json_t *j = json_pack("{s:s, s:i}", "message", msg, "code", status);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    *len = s ? strlen(s) : 0;
    return s;
}

static void req_answer_error(struct req *r, int status, const char *extra, const char *msg)
{
    size_t len;
    char *s = error_body(status, msg, &len);
    req_answer(r, status, "application/json", extra, s ? s : "", len);
    free(s);
}

void http_respond_error(http_request *req, int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    req_answer_error(AL_CONTAINER_OF(req, struct req, pub), status, NULL, msg);
}

/* After a response that closes the connection: the requests behind it are never answered on
 * the wire. Those whose handlers are still running become orphans; the rest are freed. */
static void conn_detach_rest(http_conn *c)
{
    struct req *r = c->head;
    for (uint32_t i = 0; r && i <= c->lim->max_pipelined + 1; i++) {
        struct req *next = r->next;
        r->next = NULL;
        if (r->state == REQ_DISPATCHED) r->conn = NULL;
        else req_free(r);
        r = next;
    }
    c->head = c->tail = NULL;
    c->nqueue = 0;
}

/* Moves answered requests at the head of the queue to the output, in order. */
static void conn_flush(http_conn *c)
{
    bool produced = false;
    for (uint32_t i = 0; c->head && c->head->state == REQ_DONE && i <= c->lim->max_pipelined + 1;
         i++) {
        struct req *r = c->head;
        if (r->resp_len &&
            buf_append(&c->out, &c->out_len, &c->out_cap, r->resp, r->resp_len) == 0)
            produced = true;
        bool close = !r->pub.keep_alive || r->close_after || !r->resp_len;
        c->head = r->next;
        if (!c->head) c->tail = NULL;
        c->nqueue--;
        req_free(r);
        if (close) {
            c->closing = true;
            conn_detach_rest(c);
        }
    }
    if (c->closing) { /* what follows a closing response is never answered */
        free(c->in);
        c->in = NULL;
        c->in_off = c->in_len = c->in_cap = 0;
    }
    if (produced && !c->in_feed && c->notify) c->notify(c, c->arg);
    if (!c->parsing && !c->closing) conn_parse(c);
}

/* ---- dispatch ---- */

static void req_dispatch(http_conn *c, struct req *r)
{
    http_request *q = &r->pub;
    uint32_t allow = 0;
    int ri = http_router_match(c->router, q->method, q->path, r->params, sizeof(r->params),
                               q->params, &q->nparams, &allow);
    r->state = REQ_DISPATCHED;
    if (ri == -404) {
        req_answer_error(r, 404, NULL, "no such endpoint");
        return;
    }
    if (ri == -405) {
        char extra[256] = "Allow: ";
        size_t n = strlen(extra);
        for (unsigned m = 0; m < 32 && n + 16 < sizeof(extra); m++)
            if (allow & (1u << m))
                n += (size_t)snprintf(extra + n, sizeof(extra) - n, "%s%s",
                                      n > 7 ? ", " : "", http_method_str((enum http_method)m));
        snprintf(extra + n, sizeof(extra) - n, "\r\n");
        char msg[64];
        snprintf(msg, sizeof(msg), "method %s not allowed here", http_method_str(q->method));
        req_answer_error(r, 405, extra, msg);
        return;
    }
    if (ri < 0) {
        req_answer_error(r, 400, NULL, "malformed path");
        return;
    }
    q->route = &c->router->routes[ri];
    q->route->fn(q, c->router->ctx);
}

/* Queues an error entry (the connection closes after it). */
static void conn_queue_error(http_conn *c, int status, const char *msg)
{
    struct req *r = calloc(1, sizeof(*r));
    if (!r) {
        c->closing = true;
        return;
    }
    r->conn = c;
    r->state = REQ_WAITING;
    r->close_after = true;
    r->pub.keep_alive = false;
    r->pub.method = HTTP_GET;
    if (c->tail) c->tail->next = r;
    else c->head = r;
    c->tail = r;
    c->nqueue++;
    c->closing = true;
    req_answer_error(r, status, NULL, msg);
}

/* Parses buffered input while the pipeline has room, dispatching each request. */
static void conn_parse(http_conn *c)
{
    if (c->parsing) return;
    c->parsing = true;
    for (uint32_t guard = 0; guard < 1u << 20 && !c->closing && c->in_off < c->in_len &&
                             c->nqueue < c->lim->max_pipelined;
         guard++) {
        size_t n = http_parser_execute(&c->parser, &settings, c->in + c->in_off,
                                       c->in_len - c->in_off);
        c->in_off += n;
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (e == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            struct req *r = c->tail;
            AL_ASSERT(r && r->state == REQ_WAITING);
            req_dispatch(c, r);
            continue;
        }
        if (e != HPE_OK) {
            req_free(c->cur);
            c->cur = NULL;
            int st = c->fail_status ? c->fail_status : 400;
            char msg[160];
            if (c->fail_msg) snprintf(msg, sizeof(msg), "%s", c->fail_msg);
            else snprintf(msg, sizeof(msg), "malformed request: %s", http_errno_description(e));
            conn_queue_error(c, st, msg);
            break;
        }
        if (n == 0) break;
    }
    if (c->in_off == c->in_len) c->in_off = c->in_len = 0;
    c->parsing = false;
}

int http_conn_feed(http_conn *c, const void *data, size_t len)
{
    if (c->closing) return AL_ECLOSED;
    if (c->in_off > 0 && c->in_off == c->in_len) c->in_off = c->in_len = 0;
    if (c->in_off > 0) { /* compact */
        memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
        c->in_len -= c->in_off;
        c->in_off = 0;
    }
    if (buf_append(&c->in, &c->in_len, &c->in_cap, data, len)) {
        conn_queue_error(c, 500, "out of memory");
        return AL_ECLOSED;
    }
    c->in_feed = true;
    conn_parse(c);
    c->in_feed = false;
    return c->closing ? AL_ECLOSED : 0;
}

char *http_conn_take_output(http_conn *c, size_t *len)
{
    char *o = c->out_len ? c->out : NULL;
    *len = o ? c->out_len : 0;
    if (o) {
        c->out = NULL;
        c->out_len = c->out_cap = 0;
    }
    return o;
}

bool http_conn_can_read(const http_conn *c)
{
    return !c->closing && c->nqueue < c->lim->max_pipelined &&
           c->in_len - c->in_off < IN_BUFFER_MAX;
}

bool http_conn_done(const http_conn *c)
{
    return c->closing && c->nqueue == 0 && c->out_len == 0;
}

bool http_conn_mid_request(const http_conn *c)
{
    return c->cur != NULL || c->in_len > c->in_off;
}

uint32_t http_conn_pending(const http_conn *c)
{
    return c->nqueue;
}

void http_conn_fail(http_conn *c, int status, const char *message)
{
    if (c->closing) return;
    req_free(c->cur);
    c->cur = NULL;
    bool was = c->in_feed;
    c->in_feed = false; /* the caller wants a notify for the queued output */
    conn_queue_error(c, status, message);
    c->in_feed = was;
}

/* ---- request accessors ---- */

const char *http_request_header(const http_request *req, const char *name)
{
    const struct req *r = AL_CONTAINER_OF(req, struct req, pub);
    for (uint32_t i = 0; i < r->nhdr; i++) {
        const char *n = r->arena + r->hdr_off[i];
        if (!strcasecmp(n, name)) return n + strlen(n) + 1;
    }
    return NULL;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into out (cap bytes, NUL-terminated); '+' is a space if plus.
 * Returns the length, -400 for a bad escape or an embedded NUL, AL_ETOOLARGE if too long. */
static int pct_decode(const char *s, size_t n, char *out, size_t cap, bool plus)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '%') {
            if (i + 2 >= n) return -400;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0) return -400;
            ch = (char)(hi * 16 + lo);
            if (ch == 0) return -400;
            i += 2;
        } else if (plus && ch == '+') {
            ch = ' ';
        }
        if (o + 1 >= cap) return AL_ETOOLARGE;
        out[o++] = ch;
    }
    if (o >= cap) return AL_ETOOLARGE;
    out[o] = 0;
    return (int)o;
}

int http_request_query(const http_request *req, const char *name, char *buf, size_t cap)
{
    size_t nl = strlen(name);
    const char *q = req->query;
    while (q && *q) {
        const char *amp = strchr(q, '&');
        size_t seg = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', seg);
        size_t kl = eq ? (size_t)(eq - q) : seg;
        if (kl == nl && !memcmp(q, name, nl)) {
            const char *v = eq ? eq + 1 : q + seg;
            size_t vl = (size_t)(q + seg - v);
            int n = pct_decode(v, vl, buf, cap, true);
            return n == -400 ? AL_EMALFORMED : n;
        }
        q = amp ? amp + 1 : NULL;
    }
    return AL_ENOTFOUND;
}

/* ---- router ---- */

/* Matches one pattern against path; writes decoded params. Returns 1 match, 0 no match,
 * -400 malformed. */
static int pattern_match(const char *pat, const char *path, char *pbuf, size_t pcap,
                         const char **params, uint32_t *np)
{
    size_t used = 0;
    *np = 0;
    for (uint32_t guard = 0; guard < 64; guard++) {
        if (*pat != '/' || *path != '/') return *pat == *path; /* both ended */
        pat++;
        path++;
        const char *pe = strchrnul(pat, '/'), *se = strchrnul(path, '/');
        size_t pl = (size_t)(pe - pat), sl = (size_t)(se - path);
        if (pl >= 2 && pat[0] == '{' && pat[pl - 1] == '}') {
            if (sl == 0 || *np >= HTTP_MAX_PARAMS) return 0;
            int n = pct_decode(path, sl, pbuf + used, pcap - used, false);
            if (n < 0) return -400; /* bad escape, or params over pcap */
            params[(*np)++] = pbuf + used;
            used += (size_t)n + 1;
        } else if (pl != sl || memcmp(pat, path, pl)) {
            return 0;
        }
        pat = pe;
        path = se;
        if (!*pat && !*path) return 1;
    }
    return 0;
}

int http_router_match(const http_router *r, enum http_method method, const char *path,
                      char *pbuf, size_t pcap, const char **params, uint32_t *nparams,
                      uint32_t *allow)
{
    *allow = 0;
    *nparams = 0;
    bool path_seen = false;
    if (!path || path[0] != '/') return -404;
    for (size_t i = 0; i < r->nroutes; i++) {
        const struct http_route *rt = &r->routes[i];
        uint32_t np = 0;
        int m = pattern_match(rt->pattern, path, pbuf, pcap, params, &np);
        if (m < 0) return -400;
        if (m == 0) continue;
        bool same = rt->method == method || (rt->method == HTTP_GET && method == HTTP_HEAD);
        if (same) {
            *nparams = np;
            return (int)i;
        }
        path_seen = true;
        *allow |= 1u << (unsigned)rt->method;
        if (rt->method == HTTP_GET) *allow |= 1u << HTTP_HEAD;
    }
    return path_seen ? -405 : -404;
}
