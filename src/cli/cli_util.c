/*
 * cli_util.c — flags, tables/JSON output, progress bar, the CLI's Kafka session on top of
 * kclient_sync (bootstrap, per-broker connections, metadata, coordinator, exit codes) and the
 * tiny admin-API HTTP client shared by `ailurus topic|group|cluster` (see cli_util.h).
 */
#include "cli/cli_util.h"

#include "client/kclient.h"
#include "kafka/errors.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CLI_ARENA_LIMIT ((size_t)4 << 30)

void cli_opts_init(cli_opts *o)
{
    memset(o, 0, sizeof(*o));
    const char *env = getenv("AILURUS_BROKERS");
    o->brokers = env && *env ? env : "127.0.0.1:9092";
    o->admin_url = "http://127.0.0.1:9644";
    o->format = CLI_FMT_TABLE;
    o->timeout_ms = 10000;
}

int cli_err(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ailurus: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

static void flags_help(const cli_flag *flags, const char *usage)
{
    printf("%s\n\noptions:\n", usage);
    for (int i = 0; flags[i].lng && i < 128; i++) {
        char left[64];
        if (flags[i].shrt) snprintf(left, sizeof(left), "-%c, --%s", flags[i].shrt, flags[i].lng);
        else snprintf(left, sizeof(left), "    --%s", flags[i].lng);
        printf("  %-24s %s\n", left, flags[i].help ? flags[i].help : "");
    }
}

/* Stores value v into flag f. Returns 0 or CLI_USAGE (printed). */
static int flag_set(const cli_flag *f, const char *v)
{
    switch (f->kind) {
    case CLI_F_STR:
        *(const char **)f->dst = v;
        return 0;
    case CLI_F_INT: {
        char *end;
        errno = 0;
        long long n = strtoll(v, &end, 0);
        if (errno || end == v || *end)
            return cli_err(CLI_USAGE, "--%s expects an integer, got '%s'", f->lng, v);
        *(int64_t *)f->dst = n;
        return 0;
    }
    case CLI_F_LIST: {
        cli_list *l = f->dst;
        if (l->n >= CLI_LIST_MAX)
            return cli_err(CLI_USAGE, "--%s given more than %d times", f->lng, CLI_LIST_MAX);
        l->v[l->n++] = v;
        return 0;
    }
    default:
        *(bool *)f->dst = true;
        return 0;
    }
}

int cli_flags_parse(const cli_flag *flags, int argc, char **argv, const char **pos, int *npos,
                    int maxpos, cli_opts *o, const char *usage)
{
    *npos = 0;
    bool only_pos = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || a[0] != '-' || !a[1]) {
            if (*npos >= maxpos) {
                cli_err(CLI_USAGE, "unexpected argument '%s'", a);
                fprintf(stderr, "%s\n", usage);
                return CLI_USAGE;
            }
            pos[(*npos)++] = a;
            continue;
        }
        if (!strcmp(a, "--")) {
            only_pos = true;
            continue;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            flags_help(flags, usage);
            return -1;
        }
        const cli_flag *f = NULL;
        const char *val = NULL;
        if (a[1] == '-') {
            const char *name = a + 2, *eq = strchr(name, '=');
            size_t nl = eq ? (size_t)(eq - name) : strlen(name);
            for (int j = 0; flags[j].lng && j < 128; j++)
                if (strlen(flags[j].lng) == nl && !strncmp(flags[j].lng, name, nl)) f = &flags[j];
            if (eq) val = eq + 1;
        } else {
            for (int j = 0; flags[j].lng && j < 128; j++)
                if (flags[j].shrt == a[1]) f = &flags[j];
            if (f && a[2]) val = a + 2;
        }
        if (!f) {
            cli_err(CLI_USAGE, "unknown option '%s' (see --help)", a);
            fprintf(stderr, "%s\n", usage);
            return CLI_USAGE;
        }
        if (f->kind == CLI_F_BOOL) {
            if (val) return cli_err(CLI_USAGE, "--%s takes no value", f->lng);
            *(bool *)f->dst = true;
            continue;
        }
        if (!val) {
            if (i + 1 >= argc) return cli_err(CLI_USAGE, "--%s needs a value", f->lng);
            val = argv[++i];
        }
        int rc = flag_set(f, val);
        if (rc) return rc;
    }
    if (o && o->format_s) {
        if (!strcmp(o->format_s, "table")) o->format = CLI_FMT_TABLE;
        else if (!strcmp(o->format_s, "json")) o->format = CLI_FMT_JSON;
        else if (!strcmp(o->format_s, "text")) o->format = CLI_FMT_TEXT;
        else return cli_err(CLI_USAGE, "--format must be table, json or text, not '%s'",
                            o->format_s);
    }
    if (o && o->timeout_ms <= 0) return cli_err(CLI_USAGE, "--timeout must be > 0 ms");
    return 0;
}

/* --- output --- */

/* Text of a JSON scalar or array (joined with ","), into buf. */
static const char *cell_text(json_t *v, char *buf, size_t cap)
{
    buf[0] = 0;
    if (!v || json_is_null(v)) return "-";
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_integer(v)) {
        snprintf(buf, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    } else if (json_is_real(v)) {
        snprintf(buf, cap, "%g", json_real_value(v));
    } else if (json_is_boolean(v)) {
        snprintf(buf, cap, "%s", json_is_true(v) ? "true" : "false");
    } else if (json_is_array(v)) {
        size_t i, off = 0;
        json_t *e;
        json_array_foreach(v, i, e) {
            char tmp[256];
            const char *t = cell_text(e, tmp, sizeof(tmp));
            int w = snprintf(buf + off, cap - off, "%s%s", i ? "," : "", t);
            if (w < 0 || (size_t)w >= cap - off) break;
            off += (size_t)w;
        }
    } else {
        char *d = json_dumps(v, JSON_COMPACT);
        snprintf(buf, cap, "%s", d ? d : "?");
        free(d);
    }
    return buf;
}

void cli_print_rows(const cli_opts *o, json_t *rows, const char *const *cols)
{
    if (o->format == CLI_FMT_JSON) {
        json_dumpf(rows, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
        return;
    }
    int nc = 0;
    size_t width[32];
    while (cols[nc] && nc < 32) {
        width[nc] = strlen(cols[nc]);
        nc++;
    }
    size_t i;
    json_t *row;
    char buf[1024];
    json_array_foreach(rows, i, row) {
        for (int c = 0; c < nc; c++) {
            size_t l = strlen(cell_text(json_object_get(row, cols[c]), buf, sizeof(buf)));
            if (l > width[c]) width[c] = l;
        }
    }
    for (int c = 0; c < nc; c++) {
        for (const char *p = cols[c]; *p; p++)
            putchar(*p == '_' ? ' ' : toupper((unsigned char)*p));
        if (c + 1 < nc) printf("%*s", (int)(width[c] - strlen(cols[c]) + 2), "");
    }
    putchar('\n');
    json_array_foreach(rows, i, row) {
        for (int c = 0; c < nc; c++) {
            const char *t = cell_text(json_object_get(row, cols[c]), buf, sizeof(buf));
            if (c + 1 < nc) printf("%-*s  ", (int)width[c], t);
            else printf("%s", t);
        }
        putchar('\n');
    }
}

void cli_print_object(const cli_opts *o, json_t *obj)
{
    if (o->format == CLI_FMT_JSON) {
        json_dumpf(obj, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
        return;
    }
    const char *key;
    json_t *v;
    size_t w = 0;
    json_object_foreach(obj, key, v) if (strlen(key) > w) w = strlen(key);
    char buf[1024];
    json_object_foreach(obj, key, v) {
        printf("%-*s  %s\n", (int)w + 1, key, cell_text(v, buf, sizeof(buf)));
    }
}

int64_t cli_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t cli_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void cli_progress(int64_t done, int64_t total, bool final)
{
    static int64_t last, start;
    int64_t now = cli_mono_ms();
    if (!start) start = now;
    if (!final && now - last < 100) return;
    last = now;
    int pct = total > 0 ? (int)(done * 100 / total) : 100;
    if (pct > 100) pct = 100;
    char bar[41];
    int fill = pct * 40 / 100;
    for (int i = 0; i < 40; i++) bar[i] = i < fill ? '#' : '.';
    bar[40] = 0;
    double secs = (double)(now - start) / 1000.0;
    double mbs = secs > 0 ? (double)done / 1048576.0 / secs : 0;
    fprintf(stderr, "\r[%s] %3d%% %.1f/%.1f MiB %.1f MiB/s", bar, pct, (double)done / 1048576.0,
            (double)total / 1048576.0, mbs);
    if (final) fputc('\n', stderr);
    fflush(stderr);
}

/* --- sockets --- */

/* Connects to host:port with a timeout; returns the fd or -errno. */
static int tcp_connect(const char *host, int port, int64_t timeout_ms)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    if (getaddrinfo(host, ps, &hints, &res) || !res) return -EHOSTUNREACH;
    int fd = -1, err = -ECONNREFUSED;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
            err = -errno;
            continue;
        }
        int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (rc < 0 && errno == EINPROGRESS) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            rc = poll(&p, 1, (int)timeout_ms);
            int se = 0;
            socklen_t sl = sizeof(se);
            if (rc == 1 && !getsockopt(fd, SOL_SOCKET, SO_ERROR, &se, &sl) && !se) rc = 0;
            else rc = -1, errno = rc == 0 ? ETIMEDOUT : (se ? se : ETIMEDOUT);
        }
        if (rc == 0) {
            int fl = fcntl(fd, F_GETFL);
            fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            struct timeval tv = {.tv_sec = timeout_ms / 1000,
                                 .tv_usec = (timeout_ms % 1000) * 1000};
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
            freeaddrinfo(res);
            return fd;
        }
        err = -errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return err;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    for (size_t guard = 0; len && guard < (1u << 30); guard++) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return w < 0 ? -errno : -EPIPE;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Splits "host:port" into host (cap bytes) and port. Returns 0 or -1. */
static int split_hostport(const char *s, size_t n, char *host, size_t cap, int *port)
{
    const char *colon = NULL;
    for (size_t i = 0; i < n; i++)
        if (s[i] == ':') colon = s + i;
    if (!colon || colon == s || (size_t)(colon - s) >= cap) return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    char ps[16];
    size_t pl = n - (size_t)(colon + 1 - s);
    if (!pl || pl >= sizeof(ps)) return -1;
    memcpy(ps, colon + 1, pl);
    ps[pl] = 0;
    char *end;
    long p = strtol(ps, &end, 10);
    if (*end || p <= 0 || p > 65535) return -1;
    *port = (int)p;
    return 0;
}

/* --- Kafka --- */

void *cli_alloc(cli_kafka *k, size_t n)
{
    void *p = kafka_arena_alloc(&k->arena, n);
    if (!p) {
        fprintf(stderr, "ailurus: out of memory (%zu bytes)\n", n);
        exit(CLI_FAILED);
    }
    return p;
}

char *cli_strdup_k(cli_kafka *k, kafka_str s)
{
    size_t n = s.len > 0 ? (size_t)s.len : 0;
    char *p = cli_alloc(k, n + 1);
    if (n) memcpy(p, s.ptr, n);
    p[n] = 0;
    return p;
}

const char *cli_kerr(int16_t code, kafka_str msg, char *buf, size_t cap)
{
    if (msg.len > 0)
        snprintf(buf, cap, "%s: %.*s", kafka_err_name(code), (int)msg.len, msg.ptr);
    else snprintf(buf, cap, "%s (%s)", kafka_err_name(code), kafka_err_message(code));
    return buf;
}

static void unreachable_msg(const char *where, int err)
{
    cli_err(CLI_UNREACHABLE, "broker %s unreachable (%s): is `ailurus start` running? "
            "Use --brokers HOST:PORT or set AILURUS_BROKERS", where, al_strerror(err));
}

/* The CLI exit code of a kclient error: the broker could not be reached or talked to
 * (network errors, timeouts, closed connections) is CLI_UNREACHABLE, the rest CLI_FAILED. */
static int kerr_code(int err)
{
    switch (err) {
    case AL_EUNSUPPORTED:
    case AL_EMALFORMED:
    case AL_EINVAL:
    case AL_ETOOLARGE:
    case -ENOMEM: return CLI_FAILED;
    default: return CLI_UNREACHABLE;
    }
}

/* "host:port" of c for kclient and messages (IPv6 in brackets). */
static void conn_addr(const cli_conn *c, char *out, size_t cap)
{
    bool v6 = strchr(c->host, ':') && c->host[0] != '[';
    snprintf(out, cap, v6 ? "[%s]:%d" : "%s:%d", c->host, c->port);
}

/* Connects c (kclient_sync: resolve, connect, ApiVersions) unless it is open; a connection
 * closed by a timeout or error is reopened. where names it in messages. Returns a CLI code. */
static int conn_ensure(cli_kafka *k, cli_conn *c, const char *where)
{
    if (c->ks && kclient_sync_ready(c->ks)) return CLI_OK;
    kclient_sync_close(c->ks);
    c->ks = NULL;
    char addr[300];
    conn_addr(c, addr, sizeof(addr));
    int64_t t = k->o->timeout_ms;
    int rc = kclient_sync_open(&c->ks, addr, (uint32_t)(t > UINT32_MAX ? UINT32_MAX : t));
    if (rc == 0) return CLI_OK;
    c->ks = NULL;
    if (kerr_code(rc) == CLI_FAILED)
        return cli_err(CLI_FAILED, "broker %s refused the ApiVersions handshake: %s", where,
                       al_strerror(rc));
    unreachable_msg(where, rc);
    return CLI_UNREACHABLE;
}

int cli_kafka_open(cli_kafka *k, const cli_opts *o)
{
    memset(k, 0, sizeof(*k));
    k->o = o;
    kafka_arena_init(&k->arena, CLI_ARENA_LIMIT);
    snprintf(k->boot_desc, sizeof(k->boot_desc), "%s", o->brokers);
    const char *s = o->brokers;
    int rc = CLI_UNREACHABLE, last_code = CLI_UNREACHABLE;
    for (int guard = 0; *s && guard < 64; guard++) {
        const char *comma = strchr(s, ',');
        size_t n = comma ? (size_t)(comma - s) : strlen(s);
        char host[256];
        int port;
        if (split_hostport(s, n, host, sizeof(host), &port))
            return cli_err(CLI_USAGE, "bad broker address '%.*s' (expected HOST:PORT)", (int)n, s);
        k->boot.node_id = -1;
        snprintf(k->boot.host, sizeof(k->boot.host), "%s", host);
        k->boot.port = port;
        char addr[300];
        conn_addr(&k->boot, addr, sizeof(addr));
        int64_t t = o->timeout_ms;
        rc = kclient_sync_open(&k->boot.ks, addr, (uint32_t)(t > UINT32_MAX ? UINT32_MAX : t));
        if (rc == 0) return CLI_OK;
        k->boot.ks = NULL;
        if (rc == AL_EINVAL)
            return cli_err(CLI_USAGE, "bad broker address '%s' (expected HOST:PORT)", addr);
        last_code = kerr_code(rc);
        if (last_code == CLI_FAILED)
            cli_err(CLI_FAILED, "broker %s refused the ApiVersions handshake: %s", addr,
                    al_strerror(rc));
        s = comma ? comma + 1 : s + n;
    }
    if (last_code == CLI_FAILED) return CLI_FAILED;
    unreachable_msg(k->boot_desc, rc < 0 ? rc : -EINVAL);
    return CLI_UNREACHABLE;
}

void cli_kafka_close(cli_kafka *k)
{
    kclient_sync_close(k->boot.ks);
    k->boot.ks = NULL;
    for (int i = 0; i < k->nnodes; i++) {
        kclient_sync_close(k->nodes[i].ks);
        k->nodes[i].ks = NULL;
    }
    k->nnodes = 0;
    kafka_arena_free(&k->arena);
}

int cli_kafka_call(cli_kafka *k, cli_conn *c, int16_t api, int16_t version, const void *req,
                   void *resp)
{
    if (!c) c = &k->boot;
    char where[300];
    conn_addr(c, where, sizeof(where));
    int rc = conn_ensure(k, c, where);
    if (rc) return rc;
    int16_t ver = version;
    int err = kclient_sync_call_into(c->ks, api, version, req, resp, &k->arena, &ver);
    if (err == 0) return CLI_OK;
    const struct kafka_api_info *ai = kafka_api_info(api);
    const char *name = ai ? ai->name : "this API";
    switch (err) {
    case AL_EUNSUPPORTED:
        return cli_err(CLI_FAILED, "broker %s does not support %s, which this command needs",
                       where, name);
    case AL_EMALFORMED:
        return cli_err(CLI_FAILED, "malformed response from %s (%s v%d)", where, name, ver);
    case AL_EINVAL:
    case AL_ETOOLARGE:
        return cli_err(CLI_FAILED, "cannot encode request (%s v%d): %s", name, ver,
                       al_strerror(err));
    case -ENOMEM: return cli_err(CLI_FAILED, "out of memory");
    default:
        unreachable_msg(where, err);
        return CLI_UNREACHABLE;
    }
}

int cli_kafka_metadata(cli_kafka *k, const char *const *topics, int ntopics)
{
    kafka_MetadataRequest req;
    kafka_MetadataRequest_init(&req);
    if (topics) {
        req.Topics_count = ntopics;
        req.Topics = cli_alloc(k, sizeof(*req.Topics) * (size_t)(ntopics ? ntopics : 1));
        for (int i = 0; i < ntopics; i++) {
            kafka_MetadataRequest_MetadataRequestTopic_init(&req.Topics[i]);
            req.Topics[i].Name = kafka_str_from(topics[i]);
        }
    } else {
        req.Topics_count = -1; /* all */
        req.Topics = NULL;
    }
    req.AllowAutoTopicCreation = false;
    kafka_MetadataResponse *md = cli_alloc(k, sizeof(*md));
    int rc = cli_kafka_call(k, NULL, KAFKA_API_METADATA, 9, &req, md);
    if (rc) return rc;
    k->md = md;
    for (int i = 0; i < md->Brokers_count; i++) {
        const kafka_MetadataResponse_MetadataResponseBroker *b = &md->Brokers[i];
        int j;
        for (j = 0; j < k->nnodes; j++)
            if (k->nodes[j].node_id == b->NodeId) break;
        if (j < k->nnodes || k->nnodes >= CLI_MAX_NODES) continue;
        cli_conn *c = &k->nodes[k->nnodes++];
        c->ks = NULL;
        c->node_id = b->NodeId;
        snprintf(c->host, sizeof(c->host), "%.*s", (int)(b->Host.len > 0 ? b->Host.len : 0),
                 b->Host.ptr ? b->Host.ptr : "");
        c->port = b->Port;
        /* the bootstrap connection is reused for the broker it points at */
        if (!strcmp(c->host, k->boot.host) && c->port == k->boot.port && k->boot.node_id < 0)
            k->boot.node_id = b->NodeId;
    }
    return CLI_OK;
}

cli_conn *cli_kafka_node(cli_kafka *k, int32_t node_id)
{
    if (node_id >= 0 && node_id == k->boot.node_id) return &k->boot;
    for (int i = 0; i < k->nnodes; i++) {
        if (k->nodes[i].node_id != node_id) continue;
        cli_conn *c = &k->nodes[i];
        char addr[300], where[320];
        conn_addr(c, addr, sizeof(addr));
        snprintf(where, sizeof(where), "%d at %s", node_id, addr);
        if ((k->last_err = conn_ensure(k, c, where))) return NULL;
        return c;
    }
    /* single-broker clusters may advertise an address we cannot match: use bootstrap */
    if (k->md && k->md->Brokers_count == 1 && k->md->Brokers[0].NodeId == node_id)
        return &k->boot;
    k->last_err = cli_err(CLI_FAILED, "broker %d is not in the cluster metadata (no leader?): "
                          "retry shortly", node_id);
    return NULL;
}

const kafka_MetadataResponse_MetadataResponseTopic *cli_md_topic(const cli_kafka *k,
                                                                 const char *topic)
{
    if (!k->md) return NULL;
    for (int i = 0; i < k->md->Topics_count; i++) {
        kafka_str n = k->md->Topics[i].Name;
        if (n.len == (int32_t)strlen(topic) && !memcmp(n.ptr, topic, (size_t)n.len))
            return &k->md->Topics[i];
    }
    return NULL;
}

cli_conn *cli_kafka_coordinator(cli_kafka *k, const char *group)
{
    if (!k->md && (k->last_err = cli_kafka_metadata(k, NULL, 0))) return NULL;
    kafka_FindCoordinatorRequest req;
    kafka_FindCoordinatorRequest_init(&req);
    req.Key = kafka_str_from(group);
    req.KeyType = 0;
    kafka_FindCoordinatorResponse resp;
    for (int attempt = 0; attempt < 20; attempt++) {
        if ((k->last_err = cli_kafka_call(k, NULL, KAFKA_API_FIND_COORDINATOR, 3, &req, &resp)))
            return NULL;
        if (!resp.ErrorCode) break;
        if (!kafka_err_retriable(resp.ErrorCode) || attempt == 19) {
            char eb[256];
            k->last_err = cli_err(CLI_FAILED, "cannot find the coordinator of group '%s': %s",
                                  group, cli_kerr(resp.ErrorCode, resp.ErrorMessage, eb,
                                                  sizeof(eb)));
            return NULL;
        }
        usleep(100000);
    }
    return cli_kafka_node(k, resp.NodeId);
}

/* --- HTTP --- */

int cli_http(const cli_opts *o, const char *method, const char *path, const char *body,
             int *status, char **resp_body)
{
    *resp_body = NULL;
    const char *u = o->admin_url;
    if (strncmp(u, "http://", 7))
        return cli_err(CLI_USAGE, "--admin-url must start with http:// (got '%s')", u);
    u += 7;
    size_t n = strcspn(u, "/");
    char host[256];
    int port;
    if (split_hostport(u, n, host, sizeof(host), &port))
        return cli_err(CLI_USAGE, "bad --admin-url '%s' (expected http://HOST:PORT)",
                       o->admin_url);
    int fd = tcp_connect(host, port, o->timeout_ms);
    if (fd < 0)
        return cli_err(CLI_UNREACHABLE, "admin API %s unreachable (%s): is `ailurus start` "
                       "running? Use --admin-url http://HOST:PORT", o->admin_url,
                       strerror(-fd));
    size_t bl = body ? strlen(body) : 0;
    char hdr[1024];
    int hl = snprintf(hdr, sizeof(hdr),
                      "%s %s HTTP/1.1\r\nHost: %.*s\r\nConnection: close\r\n"
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                      method, path, (int)n, u, bl);
    if (hl < 0 || (size_t)hl >= sizeof(hdr)) {
        close(fd);
        return cli_err(CLI_USAGE, "admin request path too long (%zu bytes)", strlen(path));
    }
    int rc = write_all(fd, hdr, (size_t)hl);
    if (!rc && bl) rc = write_all(fd, body, bl);
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap + 1);
    if (!buf) rc = -ENOMEM;
    for (int guard = 0; !rc && guard < 100000; guard++) {
        if (len == cap) {
            if (cap >= (64u << 20)) break;
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) {
                rc = -ENOMEM;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = recv(fd, buf + len, cap - len, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) rc = errno == EAGAIN ? -ETIMEDOUT : -errno;
        if (r <= 0) break;
        len += (size_t)r;
    }
    close(fd);
    if (rc) {
        free(buf);
        return cli_err(CLI_UNREACHABLE, "admin API %s: %s", o->admin_url, strerror(-rc));
    }
    buf[len] = 0;
    int st = 0;
    if (sscanf(buf, "HTTP/1.%*d %d", &st) != 1) {
        free(buf);
        return cli_err(CLI_FAILED, "admin API %s sent a malformed response", o->admin_url);
    }
    *status = st;
    char *b = strstr(buf, "\r\n\r\n");
    b = b ? b + 4 : buf + len;
    /* bodies are sent with Content-Length (not chunked) by our admin server */
    memmove(buf, b, strlen(b) + 1);
    *resp_body = buf;
    return CLI_OK;
}
