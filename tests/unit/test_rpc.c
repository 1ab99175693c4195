/*
 * test_rpc.c — the node-to-node RPC transport (src/rpc/).
 *
 * Frame codec: round trips, every truncation, every header and payload corruption, limits,
 * HELLO and error payloads.
 *
 * Real sockets (io_uring, 127.0.0.1): a reactor of 2 shards runs in a helper thread; the test
 * thread drives it by running closures on a shard (on_shard) and checks results afterwards.
 * Three endpoints on shard 0 exchange many messages of random sizes (1 B .. 1 MiB), checked by
 * order and content; 200k small messages (rate, messages per write); calls answered at once,
 * later (out of order), with an error, or by nobody, by address; removing a peer ends its
 * calls (also from a call's own callback); answers through a small answer queue pause and
 * resume reading; calls to a dead address and to a peer that never answers time out, and the
 * queue to a dead peer refuses with AL_EFULL when full; a peer restarted on the same port is
 * reconnected to and traffic resumes; raw sockets sending garbage, bad checksums, an oversized
 * length, no HELLO or a wrong cluster id get their connection closed while real traffic goes
 * on; a wrong node id at an address is refused; the keepalive closes a silent server and a
 * silent client; sends and calls from shard 1 reach the peer (callbacks on shard 1).
 *
 * Simulator (io_sim): three nodes exchanging messages and calls with a hanging partition, a
 * failing one and optional connection resets, then healed; order, content and exactly-once
 * call completion are checked, the keepalive notices the hang, everything sent after healing
 * arrives; the same seed gives the same run (world hash). AL_TEST_SEED replays a seed (each
 * simulated seed is printed before it runs: AL_TEST_SEED=<it> AL_SIM_SEEDS=1 replays one);
 * AL_SIM_SEEDS=N runs more. AL_TEST_LOG=warn|debug shows the rpc log.
 */
#include "test.h"

#include "base/crc32c.h"
#include "base/cursor.h"
#include "base/log.h"
#include "reactor/reactor.h"
#include "rpc/rpc.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

enum { T_SEQ = RPC_T_USER, T_ECHO, T_PARK, T_FAIL, T_NOBODY, T_BIG };

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- the frame codec ---- */

static size_t mk_frame(uint8_t *buf, uint8_t flags, uint16_t type, uint64_t corr,
                       const void *p, uint32_t len)
{
    rpc_hdr_encode(buf, flags, type, corr, p, len);
    if (len) memcpy(buf + RPC_HDR_SIZE, p, len);
    return RPC_HDR_SIZE + len;
}

TEST(frame_codec)
{
    uint8_t payload[300], buf[400];
    for (int i = 0; i < 300; i++) payload[i] = (uint8_t)(i * 7 + 1);
    size_t n = mk_frame(buf, RPC_F_REQUEST, T_ECHO, 0x1122334455667788ull, payload, 300);
    rpc_hdr h;
    CHECK_EQ(rpc_frame_decode(buf, n, 0, &h), (int64_t)n);
    CHECK_EQ(h.flags, RPC_F_REQUEST);
    CHECK_EQ(h.type, T_ECHO);
    CHECK(h.corr == 0x1122334455667788ull);
    CHECK_EQ(h.len, 300);
    /* Every prefix: "need more", never an error. */
    for (size_t k = 0; k < n; k++) CHECK_EQ(rpc_frame_decode(buf, k, 0, &h), 0);
    /* Every single-bit flip is refused. */
    for (size_t k = 0; k < n; k++) {
        for (int bit = 0; bit < 8; bit += 3) {
            buf[k] ^= (uint8_t)(1u << bit);
            int64_t rc = rpc_frame_decode(buf, n, 0, &h);
            CHECK(rc < 0);
            if (k < 4) CHECK_EQ(rc, AL_EMALFORMED);
            else CHECK_EQ(rc, AL_ECORRUPT);
            buf[k] ^= (uint8_t)(1u << bit);
        }
    }
    /* Limits and fields, with valid checksums. */
    n = mk_frame(buf, 0, T_SEQ, 0, payload, 300);
    CHECK_EQ(rpc_frame_decode(buf, n, 299, &h), AL_ETOOLARGE);
    CHECK_EQ(rpc_frame_decode(buf, RPC_HDR_SIZE, 299, &h), AL_ETOOLARGE); /* header alone */
    CHECK_EQ(rpc_frame_decode(buf, n, 300, &h), (int64_t)n);
    buf[4] = 2; /* version 2 */
    al_put_be32(buf + 24, crc32c(0, buf, 24));
    CHECK_EQ(rpc_frame_decode(buf, n, 0, &h), AL_EUNSUPPORTED);
    mk_frame(buf, RPC_F_REQUEST | RPC_F_RESPONSE, T_SEQ, 0, payload, 0);
    CHECK_EQ(rpc_frame_decode(buf, RPC_HDR_SIZE, 0, &h), AL_EMALFORMED);
    mk_frame(buf, RPC_F_ERROR, T_SEQ, 0, payload, 0);
    CHECK_EQ(rpc_frame_decode(buf, RPC_HDR_SIZE, 0, &h), AL_EMALFORMED);
    mk_frame(buf, 0x40, T_SEQ, 0, payload, 0);
    CHECK_EQ(rpc_frame_decode(buf, RPC_HDR_SIZE, 0, &h), AL_EMALFORMED);
    mk_frame(buf, 0, 0, 0, payload, 0);
    CHECK_EQ(rpc_frame_decode(buf, RPC_HDR_SIZE, 0, &h), AL_EINVAL);
    mk_frame(buf, 0, RPC_T_MAX, 0, payload, 0);
    CHECK_EQ(rpc_frame_decode(buf, RPC_HDR_SIZE, 0, &h), AL_EINVAL);
    /* Wrong magic is refused from its first byte. */
    CHECK_EQ(rpc_frame_decode((const uint8_t *)"GET / HTTP/1.1", 1, 0, &h), AL_EMALFORMED);
    CHECK_EQ(rpc_frame_decode((const uint8_t *)"AL", 2, 0, &h), 0);
    /* An empty payload has crc 0. */
    n = mk_frame(buf, 0, T_SEQ, 5, NULL, 0);
    CHECK_EQ(rpc_frame_decode(buf, n, 0, &h), (int64_t)RPC_HDR_SIZE);

    /* HELLO and error payloads. */
    rpc_hello hi = {.min_version = 1, .max_version = 3, .node_id = 7};
    strcpy(hi.cluster_id, "cluster-a");
    strcpy(hi.addr, "10.1.2.3:33145");
    uint8_t hb[RPC_HELLO_MAX_SIZE];
    int hn = rpc_hello_encode(&hi, hb, sizeof(hb));
    CHECK(hn > 0);
    rpc_hello ho;
    CHECK_EQ(rpc_hello_decode(hb, (size_t)hn, &ho), 0);
    CHECK_EQ(ho.node_id, 7);
    CHECK_EQ(ho.max_version, 3);
    CHECK(!strcmp(ho.cluster_id, "cluster-a") && !strcmp(ho.addr, "10.1.2.3:33145"));
    for (int k = 0; k < hn; k++) CHECK(rpc_hello_decode(hb, (size_t)k, &ho) < 0);
    hb[0] = 9; /* min 0x901 > max 3 */
    CHECK_EQ(rpc_hello_decode(hb, (size_t)hn, &ho), AL_EMALFORMED);
    memset(hi.cluster_id, 'x', RPC_CLUSTER_ID_MAX + 1);
    hi.cluster_id[RPC_CLUSTER_ID_MAX + 1 - 1] = 'x';
    uint8_t eb[64];
    int en = rpc_error_encode(AL_ENOTFOUND, "no such thing", eb, sizeof(eb));
    CHECK(en > 0);
    int err;
    char text[8];
    CHECK_EQ(rpc_error_decode(eb, (size_t)en, &err, text, sizeof(text)), 0);
    CHECK_EQ(err, AL_ENOTFOUND);
    CHECK(!strcmp(text, "no such"));
    CHECK_EQ(rpc_error_decode(eb, 3, &err, NULL, 0), AL_EMALFORMED);
    en = rpc_error_encode(5, "positive", eb, sizeof(eb));
    CHECK_EQ(rpc_error_decode(eb, (size_t)en, &err, NULL, 0), AL_EMALFORMED);
}

/* ---- payloads: size and bytes derived from (seed, from, to, seq) ---- */

static uint64_t g_seed;
static size_t g_gap_max = 65536; /* largest payload in gaps mode */

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t pl_key(int32_t from, int32_t to, uint64_t seq)
{
    return mix(g_seed ^ mix((uint64_t)from * 1000003u + (uint64_t)to) ^ (seq * 0x5851f42dull));
}

/* Sizes: mostly small, some up to 64 KiB, about 1 in 64 up to max. At least min. */
static size_t pl_size(int32_t from, int32_t to, uint64_t seq, size_t min, size_t max)
{
    uint64_t k = mix(pl_key(from, to, seq));
    size_t s;
    switch (k % 64) {
    case 0: s = (size_t)(k >> 8) % max; break;
    case 1: case 2: case 3: case 4: case 5: s = (size_t)(k >> 8) % 65536; break;
    default: s = (size_t)(k >> 8) % 1024; break;
    }
    return AL_MIN(max, AL_MAX(min, s + 1));
}

static void pl_fill(uint8_t *buf, size_t len, int32_t from, int32_t to, uint64_t seq)
{
    uint64_t x = pl_key(from, to, seq);
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        memcpy(buf + i, &x, 8);
    }
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    for (; i < len; i++) buf[i] = (uint8_t)(x >> (8 * (i & 7)));
}

/* ---- test endpoints ---- */

#define MAXN 8
#define PL_MAX (1u << 20)

struct tep {
    rpc *r;
    int32_t id;
    uint16_t port;
    bool gaps;                     /* seq in the first 8 bytes; gaps allowed (lossy runs) */
    uint64_t next_seq[MAXN];       /* expected next sequence number from each node */
    uint64_t got[MAXN];
    uint64_t bytes;
    int errors;
    char err[200];
    rpc_token parked[256];
    uint8_t parked_tag[256];
    int nparked;
    int stopped;                   /* done callback ran */
    uint8_t *scratch;
};

static struct tep eps[MAXN];

static void tep_error(struct tep *e, const char *what)
{
    if (!e->errors++) snprintf(e->err, sizeof(e->err), "node %d: %s", e->id, what);
}

static void h_seq(rpc *r, void *ctx, const rpc_msg *m)
{
    struct tep *e = ctx;
    if (m->from < 0 || m->from >= MAXN) {
        tep_error(e, "message from an unknown node");
        return;
    }
    uint64_t seq = e->next_seq[m->from];
    if (e->gaps) {
        if (m->len < 8) {
            tep_error(e, "short message");
            return;
        }
        memcpy(&seq, m->payload, 8);
        if (seq < e->next_seq[m->from]) {
            tep_error(e, "message out of order or repeated");
            return;
        }
    }
    size_t want = pl_size(m->from, e->id, seq, e->gaps ? 8 : 1, e->gaps ? g_gap_max : PL_MAX);
    if (m->len != want) {
        char t[128];
        snprintf(t, sizeof(t), "from %d seq %" PRIu64 ": %zu bytes, expected %zu", m->from, seq,
                 m->len, want);
        tep_error(e, t);
        return;
    }
    if (!e->scratch) e->scratch = malloc(PL_MAX);
    pl_fill(e->scratch, want, m->from, e->id, seq);
    if (e->gaps) memcpy(e->scratch, &seq, 8);
    if (memcmp(e->scratch, m->payload, want) != 0) {
        tep_error(e, "payload differs");
        return;
    }
    e->next_seq[m->from] = seq + 1;
    e->got[m->from]++;
    e->bytes += m->len;
}

static void h_echo(rpc *r, void *ctx, const rpc_msg *m)
{
    struct tep *e = ctx;
    uint8_t *out = malloc(m->len + 4);
    for (size_t i = 0; i < m->len; i++) out[i] = m->payload[i] ^ 0x5a;
    al_put_be32(out + m->len, (uint32_t)e->id);
    if (rpc_reply(r, m->token, out, m->len + 4) != 0) tep_error(e, "reply failed");
    free(out);
}

static void h_park(rpc *r, void *ctx, const rpc_msg *m)
{
    struct tep *e = ctx;
    if (e->nparked >= 256 || m->len != 1) {
        rpc_reply_error(r, m->token, AL_EFULL, "parking full");
        return;
    }
    e->parked[e->nparked] = m->token;
    e->parked_tag[e->nparked++] = m->payload[0];
}

/* Answers with 48 KiB: the tag byte, then a pattern derived from it. */
static void h_big(rpc *r, void *ctx, const rpc_msg *m)
{
    struct tep *e = ctx;
    static uint8_t out[48 * 1024];
    uint8_t tag = m->len ? m->payload[0] : 0;
    for (size_t i = 0; i < sizeof(out); i++) out[i] = (uint8_t)(tag + i * 31);
    if (rpc_reply(r, m->token, out, sizeof(out)) != 0) tep_error(e, "big reply failed");
}

static void h_fail(rpc *r, void *ctx, const rpc_msg *m)
{
    rpc_reply_error(r, m->token, -EPERM, "this handler always refuses");
}

static void tep_done(void *arg)
{
    struct tep *e = arg;
    __atomic_store_n(&e->stopped, 1, __ATOMIC_RELEASE);
}

struct ep_opts {
    int32_t id;
    uint16_t port;
    const char *cluster;
    uint32_t connect_timeout_ms;
    uint32_t backoff_max_ms;
    uint64_t queue_bytes;
    const char *host;
    uint32_t keepalive_ms;
    bool gaps;
};

/* On the endpoint's shard: creates endpoint o->id. Returns 0 or the error. */
static int tep_create(reactor_shard *s, const struct ep_opts *o)
{
    struct tep *e = &eps[o->id];
    uint8_t *scratch = e->scratch;
    memset(e, 0, sizeof(*e));
    e->scratch = scratch;
    e->id = o->id;
    e->gaps = o->gaps; /* before any message can arrive */
    struct rpc_opts ro = {.shard = s, .node_id = o->id, .cluster_id = o->cluster,
                          .listen_host = o->host ? o->host : "127.0.0.1",
                          .listen_port = o->port,
                          .connect_timeout_ms = o->connect_timeout_ms,
                          .backoff_min_ms = 20, .backoff_max_ms = o->backoff_max_ms,
                          .peer_queue_bytes = o->queue_bytes,
                          .keepalive_ms = o->keepalive_ms};
    int err = rpc_create(&ro, &e->r);
    if (err) return err;
    e->port = rpc_port(e->r);
    rpc_handler_set(e->r, T_SEQ, h_seq, e);
    rpc_handler_set(e->r, T_ECHO, h_echo, e);
    rpc_handler_set(e->r, T_PARK, h_park, e);
    rpc_handler_set(e->r, T_FAIL, h_fail, e);
    rpc_handler_set(e->r, T_BIG, h_big, e);
    return 0;
}

/* ---- driving a reactor from the test thread ---- */

static reactor *R;
static reactor_shard *S[2];
static pthread_t R_thread;
static int R_ready;

struct job {
    void (*fn)(void *);
    void *arg;
    int done;
};

static void job_msg(reactor_shard *s, const struct reactor_msg *m)
{
    struct job *j = m->arg;
    j->fn(j->arg);
    __atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
}

/* Runs fn(arg) on shard i and waits for it. */
static void on_shard(unsigned i, void (*fn)(void *), void *arg)
{
    struct job j = {fn, arg, 0};
    struct reactor_msg m = {job_msg, &j, 0, 0};
    for (int k = 0; reactor_post(R, i, &m) == AL_EFULL && k < 100000; k++) usleep(100);
    for (int k = 0; !__atomic_load_n(&j.done, __ATOMIC_ACQUIRE) && k < 20000000; k++) usleep(20);
}

static int env_init(reactor_shard *s, void *arg)
{
    S[reactor_shard_index(s)] = s;
    R = reactor_of(s);
    __atomic_add_fetch(&R_ready, 1, __ATOMIC_ACQ_REL);
    return 0;
}

static void *env_thread(void *arg)
{
    struct reactor_opts o = {.n_shards = 2, .no_signals = true, .no_pin = true,
                             .seed = test_seed()};
    reactor_start_opts(&o, env_init, NULL);
    return NULL;
}

static void env_down(void);

static void env_up(void)
{
    if (R) env_down(); /* a failed test (CHECK jumps out) left its reactor running */
    g_seed = test_seed();
    R_ready = 0;
    AL_ASSERT(pthread_create(&R_thread, NULL, env_thread, NULL) == 0);
    for (int k = 0; __atomic_load_n(&R_ready, __ATOMIC_ACQUIRE) < 2 && k < 100000; k++)
        usleep(100);
    AL_ASSERT(R_ready == 2);
}

struct create_job {
    struct ep_opts o;
    int err;
};

static void create_fn(void *arg)
{
    struct create_job *c = arg;
    c->err = tep_create(S[0], &c->o);
}

/* Creates endpoint id on shard 0 (port 0: any). Returns the error. */
static int ep_up(const struct ep_opts *o)
{
    struct create_job c = {*o, 0};
    on_shard(0, create_fn, &c);
    return c.err;
}

static void stop_fn(void *arg)
{
    struct tep *e = arg;
    if (e->r) rpc_stop(e->r, tep_done, e);
    else e->stopped = 1;
}

/* Stops endpoint id and waits until it is freed. Returns true if it was. */
static bool ep_down(int32_t id)
{
    struct tep *e = &eps[id];
    if (!e->r) return true;
    on_shard(0, stop_fn, e);
    for (int k = 0; !__atomic_load_n(&e->stopped, __ATOMIC_ACQUIRE) && k < 5000; k++)
        usleep(1000);
    bool ok = __atomic_load_n(&e->stopped, __ATOMIC_ACQUIRE);
    if (ok) e->r = NULL;
    return ok;
}

static void env_down(void)
{
    for (int i = 0; i < MAXN; i++) {
        if (eps[i].r && !ep_down(i)) fprintf(stderr, "    endpoint %d did not stop\n", i);
        free(eps[i].scratch);
        eps[i].scratch = NULL;
    }
    reactor_stop(R);
    pthread_join(R_thread, NULL);
    R = NULL;
}

struct peer_job {
    int32_t at, node;
    const char *host;
    uint16_t port;
    int err;
};

static void peer_fn(void *arg)
{
    struct peer_job *p = arg;
    p->err = rpc_peer_set(eps[p->at].r, p->node, p->host, p->port);
}

static void remove_fn(void *arg)
{
    struct peer_job *p = arg;
    p->err = rpc_peer_remove(eps[p->at].r, p->node);
}

static int peer_set(int32_t at, int32_t node, const char *host, uint16_t port)
{
    struct peer_job p = {at, node, host, port, 0};
    on_shard(0, peer_fn, &p);
    return p.err;
}

static void mesh(const int32_t *ids, int n)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            if (i != j) AL_ASSERT(peer_set(ids[i], ids[j], "127.0.0.1", eps[ids[j]].port) == 0);
}

/* Evaluates cond on shard 0 every 2 ms until true or timeout_ms. */
struct cond_job {
    bool (*cond)(void *);
    void *arg;
    bool result;
};

static void cond_fn(void *arg)
{
    struct cond_job *c = arg;
    c->result = c->cond(c->arg);
}

static bool wait_for(bool (*cond)(void *), void *arg, uint64_t timeout_ms)
{
    uint64_t end = mono_ms() + timeout_ms;
    struct cond_job c = {cond, arg, false};
    for (int k = 0; k < 10000000; k++) {
        on_shard(0, cond_fn, &c);
        if (c.result || mono_ms() > end) break;
        usleep(2000);
    }
    return c.result;
}

/* ---- a message pump (a timer on a shard) ---- */

struct pump {
    reactor_timer t;
    reactor_shard *shard;
    int32_t from;
    int32_t to[MAXN];
    int nto;
    uint64_t per_pair;       /* messages per destination (UINT64_MAX: until stop) */
    uint64_t sent[MAXN];
    uint64_t full;
    int err;
    bool gaps, cross, stop, done;
    uint32_t per_tick;
    uint8_t *buf;
};

static void pump_cb(reactor_timer *t)
{
    struct pump *p = t->ctx;
    struct tep *e = &eps[p->from];
    bool more = false, full = false;
    for (int i = 0; i < p->nto && !p->stop && !p->err; i++) {
        int32_t to = p->to[i];
        for (uint32_t k = 0; k < p->per_tick && p->sent[to] < p->per_pair; k++) {
            uint64_t seq = p->sent[to];
            size_t len = pl_size(p->from, to, seq, p->gaps ? 8 : 1, p->gaps ? g_gap_max : PL_MAX);
            pl_fill(p->buf, len, p->from, to, seq);
            if (p->gaps) memcpy(p->buf, &seq, 8);
            int err = p->cross ? rpc_send_from(p->shard, e->r, to, T_SEQ, p->buf, len)
                               : rpc_send(e->r, to, T_SEQ, p->buf, len);
            if (err == AL_EFULL || err == AL_ECLOSED) { /* full, or the peer is in backoff */
                p->full++;
                full = true;
                break;
            }
            if (err) {
                p->err = err;
                break;
            }
            p->sent[to]++;
        }
        if (p->sent[to] < p->per_pair) more = true;
    }
    if (more && !p->stop && !p->err) {
        uint64_t now = io_now_ns(reactor_io(p->shard));
        reactor_timer_add(p->shard, t, now + (full || p->per_pair == UINT64_MAX ? 1000000 : 0),
                          NULL);
    } else {
        p->done = true;
        free(p->buf);
        p->buf = NULL;
    }
}

static void pump_start_fn(void *arg)
{
    struct pump *p = arg;
    p->buf = malloc(PL_MAX);
    reactor_timer_init(&p->t, pump_cb, p);
    reactor_timer_add(p->shard, &p->t, 0, NULL);
}

static void pump_stop_fn(void *arg)
{
    struct pump *p = arg;
    p->stop = true;
    if (reactor_timer_cancel(p->shard, &p->t)) {
        p->done = true;
        free(p->buf);
        p->buf = NULL;
    }
}

static void pump_start(struct pump *p, unsigned shard)
{
    p->shard = S[shard];
    on_shard(shard, pump_start_fn, p);
}

static void pump_stop(struct pump *p)
{
    on_shard(reactor_shard_index(p->shard), pump_stop_fn, p);
}

static bool got_n_from_1_at_2(void *arg)
{
    uint64_t n = *(uint64_t *)arg;
    return eps[2].got[1] >= n || eps[2].errors;
}

/* ---- ordered delivery ---- */

struct all_got {
    const int32_t *ids;
    int n;
    uint64_t per_pair;
    struct pump *pumps;
};

static bool all_received(void *arg)
{
    struct all_got *a = arg;
    for (int i = 0; i < a->n; i++) {
        struct tep *e = &eps[a->ids[i]];
        if (e->errors) return true; /* stop waiting: the check reports it */
        for (int j = 0; j < a->n; j++)
            if (i != j && e->got[a->ids[j]] < a->per_pair) return false;
    }
    return true;
}

struct stats_job {
    int32_t at, node;
    struct rpc_peer_stats ps;
    struct rpc_stats st;
    int err;
};

static void stats_fn(void *arg)
{
    struct stats_job *s = arg;
    rpc_stats_get(eps[s->at].r, &s->st);
    s->err = rpc_peer_stats_get(eps[s->at].r, s->node, &s->ps);
}

static struct stats_job stats(int32_t at, int32_t node)
{
    struct stats_job s = {at, node};
    on_shard(0, stats_fn, &s);
    return s;
}

TEST(ordered_delivery_random_sizes)
{
    env_up();
    int32_t ids[3] = {1, 2, 3};
    for (int i = 0; i < 3; i++) CHECK_EQ(ep_up(&(struct ep_opts){.id = ids[i]}), 0);
    mesh(ids, 3);
    static struct pump pumps[3];
    uint64_t per_pair = 1500;
    uint64_t t0 = mono_ms();
    for (int i = 0; i < 3; i++) {
        memset(&pumps[i], 0, sizeof(pumps[i]));
        pumps[i].from = ids[i];
        pumps[i].per_pair = per_pair;
        pumps[i].per_tick = 64;
        for (int j = 0; j < 3; j++)
            if (j != i) pumps[i].to[pumps[i].nto++] = ids[j];
        pump_start(&pumps[i], 0);
    }
    struct all_got a = {ids, 3, per_pair, pumps};
    bool ok = wait_for(all_received, &a, 40000);
    uint64_t ms = mono_ms() - t0;
    if (!ok) {
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) {
                if (i == j) continue;
                struct stats_job sj = stats(ids[i], ids[j]);
                fprintf(stderr, "    %d -> %d: sent %" PRIu64 ", got %" PRIu64 "; out %" PRIu64
                        " msgs, queued %" PRIu64 " B, connects %" PRIu64 ", disconnects %"
                        PRIu64 ", dropped %" PRIu64 ", keepalive closes at %d: %" PRIu64 "\n",
                        ids[i], ids[j], pumps[i].sent[ids[j]], eps[ids[j]].got[ids[i]],
                        sj.ps.msgs_out, sj.ps.queued_bytes, sj.ps.connects, sj.ps.disconnects,
                        sj.ps.dropped, ids[i], sj.st.keepalive_closes);
            }
    }
    uint64_t bytes = 0;
    for (int i = 0; i < 3; i++) {
        if (eps[ids[i]].errors) fprintf(stderr, "    %s\n", eps[ids[i]].err);
        CHECK_EQ(eps[ids[i]].errors, 0);
        CHECK_EQ(pumps[i].err, 0);
        bytes += eps[ids[i]].bytes;
    }
    CHECK(ok);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            if (i != j) CHECK_EQ(eps[ids[i]].got[ids[j]], per_pair);
    struct stats_job s = stats(1, 2);
    CHECK_EQ(s.err, 0);
    CHECK(s.ps.connected);
    CHECK_EQ(s.ps.connects, 1);
    CHECK(s.ps.msgs_out >= per_pair);
    CHECK_EQ(s.ps.disconnects, 0);
    CHECK_EQ(s.st.frame_errors, 0);
    /* Node 1 received from 2: counted on its peer entry for 2 (inbound connection). */
    CHECK(s.ps.msgs_in >= per_pair);
    printf("    %" PRIu64 " messages, %.1f MiB in %" PRIu64 " ms (%.0f MiB/s); %" PRIu64
           " sends refused as full\n", per_pair * 6, (double)bytes / 1048576.0, ms,
           (double)bytes / 1048576.0 / ((double)ms / 1000.0 + 1e-9),
           pumps[0].full + pumps[1].full + pumps[2].full);
    env_down();
}

/* Many small one-way messages (Raft-like): the rate, and how many share one write. */
TEST(small_messages_batched)
{
    env_up();
    int32_t ids[2] = {1, 2};
    g_gap_max = 64;
    CHECK_EQ(ep_up(&(struct ep_opts){.id = 1}), 0);
    CHECK_EQ(ep_up(&(struct ep_opts){.id = 2, .gaps = true}), 0);
    mesh(ids, 2);
    static struct pump p;
    memset(&p, 0, sizeof(p));
    p.from = 1;
    p.to[0] = 2;
    p.nto = 1;
    p.per_pair = 200000;
    p.per_tick = 256;
    p.gaps = true;
    uint64_t t0 = mono_ms();
    pump_start(&p, 0);
    uint64_t want = p.per_pair;
    bool ok = wait_for(got_n_from_1_at_2, &want, 40000);
    uint64_t ms = mono_ms() - t0;
    g_gap_max = 65536;
    CHECK(ok);
    CHECK_EQ(eps[2].errors, 0);
    CHECK_EQ(eps[2].got[1], want); /* nothing lost on a healthy connection */
    struct stats_job s = stats(1, 2);
    CHECK(s.ps.writes > 0 && s.ps.writes < s.ps.msgs_out);
    printf("    %" PRIu64 " messages of 8..64 B in %" PRIu64 " ms (%.0f k msgs/s), %.1f messages "
           "per write\n", want, ms, (double)want / ((double)ms + 1e-9),
           (double)s.ps.msgs_out / (double)s.ps.writes);
    env_down();
}

/* ---- calls ---- */

#define NCALLS 64

struct callrec {
    int n;             /* completions (must end at 1) */
    int err;
    int32_t from;
    uint8_t data[64];
    size_t len;
    char text[200];
    uint64_t at_ms;
    int shard;         /* where the callback ran */
};

static struct callrec recs[NCALLS];

static int32_t remove_in_cb = -1; /* >= 0: call_cb removes that peer of endpoint 1 */

static void call_cb(void *ctx, const rpc_result *res)
{
    struct callrec *c = ctx;
    if (remove_in_cb >= 0) {
        rpc_peer_remove(eps[1].r, remove_in_cb);
        remove_in_cb = -1;
    }
    c->n++;
    c->err = res->err;
    c->from = res->from;
    c->len = AL_MIN(res->len, sizeof(c->data));
    if (res->len) memcpy(c->data, res->payload, c->len);
    snprintf(c->text, sizeof(c->text), "%s", res->err_text);
    c->at_ms = mono_ms();
    c->shard = reactor_shard_id();
}

struct call_job {
    int32_t at, node;
    uint16_t type;
    uint8_t payload[16];
    size_t len;
    uint32_t timeout_ms;
    struct callrec *rec;
    const char *host;  /* non-NULL: rpc_call_addr */
    uint16_t port;
    int err;
};

static void call_fn(void *arg)
{
    struct call_job *j = arg;
    rpc *r = eps[j->at].r;
    if (j->host)
        j->err = rpc_call_addr(r, j->host, j->port, j->type, j->payload, j->len, j->timeout_ms,
                               call_cb, j->rec);
    else
        j->err = rpc_call(r, j->node, j->type, j->payload, j->len, j->timeout_ms, call_cb,
                          j->rec);
}

static int call(int32_t at, int32_t node, uint16_t type, const void *p, size_t len,
                uint32_t timeout_ms, struct callrec *rec)
{
    struct call_job j = {.at = at, .node = node, .type = type, .len = len,
                         .timeout_ms = timeout_ms, .rec = rec};
    memcpy(j.payload, p, len);
    memset(rec, 0, sizeof(*rec));
    on_shard(0, call_fn, &j);
    return j.err;
}

static bool recs_done(void *arg)
{
    int n = *(int *)arg;
    for (int i = 0; i < n; i++)
        if (recs[i].n == 0) return false;
    return true;
}

static void answer_parked_fn(void *arg)
{
    struct tep *e = arg;
    /* Newest first: answers leave in a different order than the requests came. */
    while (e->nparked > 0) {
        int i = --e->nparked;
        uint8_t out[2] = {e->parked_tag[i], 0xee};
        if (rpc_reply(e->r, e->parked[i], out, 2) != 0) tep_error(e, "deferred reply failed");
        /* A second answer to the same call is harmless: the caller has forgotten it. */
        rpc_reply(e->r, e->parked[i], out, 2);
    }
}

static bool parked_n(void *arg)
{
    int n = *(int *)arg;
    return eps[2].nparked + eps[3].nparked >= n;
}

static bool echo_works(int32_t from, int32_t to)
{
    struct callrec rec;
    if (call(from, to, T_ECHO, "z", 1, 5000, &recs[0]) != 0) return false;
    int n = 1;
    if (!wait_for(recs_done, &n, 10000)) return false;
    rec = recs[0];
    return rec.n == 1 && rec.err == 0 && rec.from == to;
}

TEST(calls_sync_deferred_errors)
{
    env_up();
    int32_t ids[3] = {1, 2, 3};
    for (int i = 0; i < 3; i++) CHECK_EQ(ep_up(&(struct ep_opts){.id = ids[i]}), 0);
    mesh(ids, 3);
    /* Answered at once: the payload comes back transformed, with the answering node. */
    for (int i = 0; i < 20; i++) {
        uint8_t p[3] = {(uint8_t)i, 1, 2};
        CHECK_EQ(call(1, i % 2 ? 2 : 3, T_ECHO, p, 3, 5000, &recs[i]), 0);
    }
    int n = 20;
    CHECK(wait_for(recs_done, &n, 10000));
    for (int i = 0; i < 20; i++) {
        int32_t to = i % 2 ? 2 : 3;
        CHECK_EQ(recs[i].n, 1);
        CHECK_EQ(recs[i].err, 0);
        CHECK_EQ(recs[i].from, to);
        CHECK_EQ(recs[i].len, 7);
        CHECK_EQ(recs[i].data[0], (uint8_t)i ^ 0x5a);
        CHECK_EQ(al_be32(recs[i].data + 3), (uint32_t)to);
    }
    /* Answered later, newest first. */
    for (int i = 0; i < 30; i++) {
        uint8_t tag = (uint8_t)(100 + i);
        CHECK_EQ(call(1, i % 2 ? 2 : 3, T_PARK, &tag, 1, 5000, &recs[i]), 0);
    }
    n = 30;
    CHECK(wait_for(parked_n, &n, 10000));
    on_shard(0, answer_parked_fn, &eps[2]);
    on_shard(0, answer_parked_fn, &eps[3]);
    CHECK(wait_for(recs_done, &n, 10000));
    for (int i = 0; i < 30; i++) {
        CHECK_EQ(recs[i].n, 1);
        CHECK_EQ(recs[i].err, 0);
        CHECK_EQ(recs[i].len, 2);
        CHECK_EQ(recs[i].data[0], 100 + i);
    }
    /* An error answer, and a type nobody handles. */
    CHECK_EQ(call(2, 3, T_FAIL, "x", 1, 5000, &recs[0]), 0);
    CHECK_EQ(call(2, 1, T_NOBODY, "x", 1, 5000, &recs[1]), 0);
    n = 2;
    CHECK(wait_for(recs_done, &n, 10000));
    CHECK_EQ(recs[0].err, -EPERM);
    CHECK(strstr(recs[0].text, "always refuses") != NULL);
    CHECK_EQ(recs[1].err, AL_ENOTFOUND);
    CHECK(strstr(recs[1].text, "no handler") != NULL);
    /* Unknown node, bad type, too large. */
    CHECK_EQ(call(1, 42, T_ECHO, "x", 1, 100, &recs[2]), AL_ENOTFOUND);
    CHECK_EQ(call(1, 2, 3, "x", 1, 100, &recs[2]), AL_EINVAL);
    /* A call by address: the answer names the node, which then has a peer entry. */
    struct call_job j = {.at = 3, .type = T_ECHO, .len = 1, .timeout_ms = 5000, .rec = &recs[0],
                         .host = "127.0.0.1", .port = eps[1].port};
    memset(&recs[0], 0, sizeof(recs[0]));
    on_shard(0, call_fn, &j);
    CHECK_EQ(j.err, 0);
    n = 1;
    CHECK(wait_for(recs_done, &n, 10000));
    CHECK_EQ(recs[0].err, 0);
    CHECK_EQ(recs[0].from, 1);
    /* Removing a peer ends its pending calls at once; adding it back works. */
    eps[2].nparked = 0;
    uint8_t tag = 9;
    CHECK_EQ(call(1, 2, T_PARK, &tag, 1, 8000, &recs[0]), 0);
    n = 1;
    int one_parked = 1;
    CHECK(wait_for(parked_n, &one_parked, 10000));
    struct peer_job pj = {.at = 1, .node = 2};
    on_shard(0, remove_fn, &pj);
    CHECK_EQ(pj.err, 0);
    CHECK(wait_for(recs_done, &n, 2000));
    CHECK_EQ(recs[0].err, AL_ECLOSED);
    CHECK(strstr(recs[0].text, "removed") != NULL);
    CHECK_EQ(call(1, 2, T_ECHO, "x", 1, 100, &recs[1]), AL_ENOTFOUND);
    CHECK_EQ(stats(1, 2).err, AL_ENOTFOUND);
    on_shard(0, remove_fn, &pj);
    CHECK_EQ(pj.err, AL_ENOTFOUND);
    CHECK_EQ(peer_set(1, 2, "127.0.0.1", eps[2].port), 0);
    CHECK(echo_works(1, 2));
    eps[2].nparked = 0; /* its connection is gone: a late answer would find nobody */
    for (int i = 0; i < 3; i++) CHECK_EQ(eps[ids[i]].errors, 0);
    env_down();
}

/* Sends 1 KiB messages to `node` until one is refused (at most 1000). */
struct fill_job {
    int32_t at, node;
    int accepted;
    int err;
};

static void fill_fn(void *arg)
{
    struct fill_job *f = arg;
    uint8_t kb[1024] = {0};
    for (int i = 0; i < 1000; i++) {
        f->err = rpc_send(eps[f->at].r, f->node, T_SEQ, kb, sizeof(kb));
        if (f->err) break;
        f->accepted++;
    }
}

/* Node 2's answer queues hold at most 64 KiB: with 64 calls of 48 KiB answers in flight it
 * stops reading, and resumes as answers leave; every call is answered intact. */
struct bigcalls {
    int err;
};

static void bigcalls_fn(void *arg)
{
    struct bigcalls *b = arg;
    memset(recs, 0, sizeof(recs));
    for (int i = 0; i < NCALLS && !b->err; i++) {
        uint8_t tag = (uint8_t)i;
        b->err = rpc_call(eps[1].r, 2, T_BIG, &tag, 1, 20000, call_cb, &recs[i]);
    }
}

TEST(answer_backpressure)
{
    env_up();
    int32_t ids[2] = {1, 2};
    CHECK_EQ(ep_up(&(struct ep_opts){.id = 1}), 0);
    CHECK_EQ(ep_up(&(struct ep_opts){.id = 2, .queue_bytes = 65536}), 0);
    mesh(ids, 2);
    struct bigcalls b = {0};
    on_shard(0, bigcalls_fn, &b);
    CHECK_EQ(b.err, 0);
    int n = NCALLS;
    CHECK(wait_for(recs_done, &n, 20000));
    for (int i = 0; i < NCALLS; i++) {
        CHECK_EQ(recs[i].n, 1);
        CHECK_EQ(recs[i].err, 0);
        CHECK_EQ(recs[i].len, 64); /* the record keeps the first 64 bytes */
        for (size_t k = 0; k < 64; k++) CHECK_EQ(recs[i].data[k], (uint8_t)(i + k * 31));
    }
    CHECK_EQ(eps[2].errors, 0);
    CHECK(stats(2, 1).st.recv_pauses > 0);
    env_down();
}

/* A port nothing listens on (bound, not listening: connects are refused). */
static int closed_port(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    AL_ASSERT(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    socklen_t l = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &l);
    *port = ntohs(a.sin_port);
    return fd;
}

TEST(call_to_dead_or_silent_peer_times_out)
{
    env_up();
    CHECK_EQ(ep_up(&(struct ep_opts){.id = 1, .connect_timeout_ms = 400, .backoff_max_ms = 200,
                                     .queue_bytes = 16384}),
             0);
    uint16_t dead, silent;
    int dfd = closed_port(&dead);
    int sfd = closed_port(&silent);
    CHECK_EQ(listen(sfd, 16), 0); /* accepts in the kernel, never answers */
    CHECK_EQ(peer_set(1, 5, "127.0.0.1", dead), 0);
    CHECK_EQ(peer_set(1, 6, "127.0.0.1", silent), 0);
    uint64_t t0 = mono_ms();
    CHECK_EQ(call(1, 5, T_ECHO, "a", 1, 700, &recs[0]), 0);
    CHECK_EQ(call(1, 6, T_ECHO, "b", 1, 300, &recs[1]), 0);
    int n = 2;
    CHECK(wait_for(recs_done, &n, 10000));
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(recs[i].n, 1);
        CHECK_EQ(recs[i].err, AL_ETIMEDOUT);
        CHECK(strstr(recs[i].text, "no answer") != NULL);
    }
    CHECK(recs[0].at_ms - t0 >= 690 && recs[0].at_ms - t0 < 3000);
    CHECK(recs[1].at_ms - t0 >= 290 && recs[1].at_ms - t0 < 3000);
    /* One-way sends to a dead peer are dropped while its reconnect backoff runs (AL_ECLOSED,
     * counted); between backoffs they queue behind the connect, bounded by peer_queue_bytes
     * (16 KiB): sends past it are refused. A queue filled once shows both. */
    struct fill_job fj = {0};
    int in_backoff = 0, filled = 0;
    uint64_t dropped0 = stats(1, 5).ps.dropped;
    for (int i = 0; i < 400 && !(in_backoff && filled); i++) {
        fj = (struct fill_job){.at = 1, .node = 5};
        on_shard(0, fill_fn, &fj);
        if (fj.err == AL_ECLOSED && fj.accepted == 0) in_backoff++;
        else if (fj.err == AL_EFULL) {
            CHECK(fj.accepted >= 14 && fj.accepted <= 16); /* 1 KiB + 28-byte header each */
            filled++;
        }
        usleep(5000);
    }
    CHECK(in_backoff > 0);
    CHECK(filled > 0);
    CHECK(stats(1, 5).ps.dropped >= dropped0 + (uint64_t)in_backoff);
    /* Refused connects were retried with backoff: several, but not a storm. */
    struct stats_job s = stats(1, 5);
    CHECK(s.ps.connect_errors >= 2 && s.ps.connect_errors < 60);
    CHECK(!s.ps.connected);
    CHECK_EQ(s.st.call_timeouts, 2);
    /* Removing a peer that cannot be reached ends its waiting call at once. */
    CHECK_EQ(call(1, 5, T_ECHO, "c", 1, 8000, &recs[0]), 0);
    usleep(30000);
    struct peer_job pj = {.at = 1, .node = 5};
    on_shard(0, remove_fn, &pj);
    CHECK_EQ(pj.err, 0);
    n = 1;
    CHECK(wait_for(recs_done, &n, 2000));
    CHECK_EQ(recs[0].err, AL_ECLOSED);
    /* A callback that removes the peer whose answer it is handling. */
    CHECK_EQ(peer_set(1, 1, "127.0.0.1", eps[1].port), 0); /* node 1 itself: answers */
    struct call_job j = {.at = 1, .node = 1, .type = T_NOBODY, .len = 1, .timeout_ms = 5000,
                         .rec = &recs[0]};
    memset(&recs[0], 0, sizeof(recs[0]));
    remove_in_cb = 1;
    on_shard(0, call_fn, &j);
    CHECK_EQ(j.err, 0);
    CHECK(wait_for(recs_done, &n, 5000));
    CHECK_EQ(recs[0].err, AL_ENOTFOUND);
    CHECK_EQ(stats(1, 1).err, AL_ENOTFOUND); /* removed by the callback */
    close(dfd);
    close(sfd);
    env_down();
}

/* ---- restart ---- */

static bool got_from_1_at_2(void *arg)
{
    uint64_t n = *(uint64_t *)arg;
    return eps[2].got[1] >= n || eps[2].errors;
}

TEST(peer_restart_reconnects)
{
    env_up();
    CHECK_EQ(ep_up(&(struct ep_opts){.id = 1}), 0);
    CHECK_EQ(ep_up(&(struct ep_opts){.id = 2, .gaps = true}), 0);
    int32_t ids[2] = {1, 2};
    mesh(ids, 2);
    static struct pump p;
    memset(&p, 0, sizeof(p));
    p.from = 1;
    p.to[0] = 2;
    p.nto = 1;
    p.per_pair = UINT64_MAX;
    p.per_tick = 20;
    p.gaps = true;
    pump_start(&p, 0);
    uint64_t want = 200;
    CHECK(wait_for(got_from_1_at_2, &want, 10000));
    CHECK_EQ(eps[2].errors, 0);
    uint16_t port2 = eps[2].port;
    CHECK(ep_down(2));
    usleep(100000); /* sends meanwhile go nowhere */
    int err = -1;
    for (int k = 0; k < 100 && err; k++) {
        err = ep_up(&(struct ep_opts){.id = 2, .port = port2, .gaps = true});
        if (err) usleep(50000);
    }
    CHECK_EQ(err, 0);
    CHECK(wait_for(got_from_1_at_2, &want, 10000));
    CHECK_EQ(eps[2].errors, 0);
    pump_stop(&p);
    struct stats_job s = stats(1, 2);
    CHECK(s.ps.connects >= 2);
    CHECK(s.ps.disconnects >= 1);
    CHECK(s.ps.connected);
    env_down();
}

/* ---- hostile input ---- */

static int raw_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(0x7f000001)};
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static bool raw_write(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
        if (k <= 0) return false;
        b += k;
        n -= (size_t)k;
    }
    return true;
}

/* Reads until the peer closes (true) or 5 s pass with nothing (false). */
static bool raw_closed_by_peer(int fd)
{
    uint8_t b[4096];
    for (int i = 0; i < 100000; i++) {
        ssize_t k = recv(fd, b, sizeof(b), 0);
        if (k == 0 || (k < 0 && errno == ECONNRESET)) return true;
        if (k < 0) return false;
    }
    return false;
}

/* Sends a HELLO and reads the answer's header and payload. Returns the answer's flags or -1. */
static int raw_hello(int fd, int32_t id, const char *cluster, uint8_t *ans, size_t *ans_len)
{
    rpc_hello h = {.min_version = 1, .max_version = 1, .node_id = id};
    snprintf(h.cluster_id, sizeof(h.cluster_id), "%s", cluster);
    strcpy(h.addr, "127.0.0.1:1");
    uint8_t buf[RPC_HDR_SIZE + RPC_HELLO_MAX_SIZE];
    int n = rpc_hello_encode(&h, buf + RPC_HDR_SIZE, RPC_HELLO_MAX_SIZE);
    rpc_hdr_encode(buf, RPC_F_REQUEST, RPC_T_HELLO, 0, buf + RPC_HDR_SIZE, (uint32_t)n);
    if (!raw_write(fd, buf, RPC_HDR_SIZE + (size_t)n)) return -1;
    size_t got = 0;
    rpc_hdr hd;
    for (int i = 0; i < 1000; i++) {
        ssize_t k = recv(fd, ans + got, 512 - got, 0);
        if (k <= 0) return -1;
        got += (size_t)k;
        int64_t rc = rpc_frame_decode(ans, got, 0, &hd);
        if (rc < 0) return -1;
        if (rc > 0) {
            *ans_len = (size_t)rc;
            return hd.flags;
        }
    }
    return -1;
}


TEST(hostile_input_closes_only_that_connection)
{
    env_up();
    int32_t ids[2] = {1, 2};
    CHECK_EQ(ep_up(&(struct ep_opts){.id = 1, .cluster = "c1"}), 0);
    CHECK_EQ(ep_up(&(struct ep_opts){.id = 2, .cluster = "c1"}), 0);
    mesh(ids, 2);
    CHECK(echo_works(1, 2));
    uint16_t port = eps[2].port;
    uint8_t ans[512];
    size_t alen;
    uint8_t frame[RPC_HDR_SIZE + 64];

    /* 1. Garbage. */
    int fd = raw_connect(port);
    CHECK(fd >= 0);
    CHECK(raw_write(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27));
    CHECK(raw_closed_by_peer(fd));
    close(fd);
    CHECK(echo_works(1, 2));

    /* 2. A good HELLO, then a frame whose payload checksum is wrong. */
    fd = raw_connect(port);
    CHECK_EQ(raw_hello(fd, 7, "c1", ans, &alen), RPC_F_RESPONSE);
    rpc_hello who;
    CHECK_EQ(rpc_hello_decode(ans + RPC_HDR_SIZE, alen - RPC_HDR_SIZE, &who), 0);
    CHECK_EQ(who.node_id, 2);
    CHECK(!strcmp(who.cluster_id, "c1"));
    size_t n = mk_frame(frame, 0, T_SEQ, 0, "payload!", 8);
    frame[RPC_HDR_SIZE + 3] ^= 1;
    CHECK(raw_write(fd, frame, n));
    CHECK(raw_closed_by_peer(fd));
    close(fd);

    /* 3. A good HELLO, then a header claiming 200 MiB (over the 128 MiB limit). */
    fd = raw_connect(port);
    CHECK_EQ(raw_hello(fd, 7, "", ans, &alen), RPC_F_RESPONSE);
    mk_frame(frame, 0, T_SEQ, 0, NULL, 0);
    al_put_be32(frame + 16, 200u << 20);
    al_put_be32(frame + 24, crc32c(0, frame, 24));
    CHECK(raw_write(fd, frame, RPC_HDR_SIZE));
    CHECK(raw_closed_by_peer(fd));
    close(fd);

    /* 4. A header checksum mismatch before any HELLO. */
    fd = raw_connect(port);
    mk_frame(frame, RPC_F_REQUEST, RPC_T_HELLO, 0, NULL, 0);
    frame[9] ^= 0x10;
    CHECK(raw_write(fd, frame, RPC_HDR_SIZE));
    CHECK(raw_closed_by_peer(fd));
    close(fd);

    /* 5. A valid frame that is not a HELLO first. */
    fd = raw_connect(port);
    n = mk_frame(frame, 0, T_SEQ, 0, "x", 1);
    CHECK(raw_write(fd, frame, n));
    CHECK(raw_closed_by_peer(fd));
    close(fd);

    /* 6. Another cluster: refused with a reason, then closed. */
    fd = raw_connect(port);
    CHECK_EQ(raw_hello(fd, 9, "c2", ans, &alen), RPC_F_RESPONSE | RPC_F_ERROR);
    int err;
    char text[200];
    CHECK_EQ(rpc_error_decode(ans + RPC_HDR_SIZE, alen - RPC_HDR_SIZE, &err, text, sizeof(text)),
             0);
    CHECK(strstr(text, "cluster 'c2'") != NULL);
    CHECK(raw_closed_by_peer(fd));
    close(fd);

    /* The real peer never noticed. */
    CHECK(echo_works(1, 2));
    CHECK(echo_works(2, 1));
    struct stats_job s = stats(2, 1);
    CHECK_EQ(s.st.frame_errors, 5); /* cases 1-5 */
    CHECK_EQ(s.st.hello_rejects, 1);
    s = stats(1, 2);
    CHECK_EQ(s.ps.connects, 1);
    CHECK_EQ(s.ps.disconnects, 0);
    env_down();
}

TEST(hello_mismatch_refused_with_reason)
{
    env_up();
    CHECK_EQ(ep_up(&(struct ep_opts){.id = 1, .cluster = "c1"}), 0);
    CHECK_EQ(ep_up(&(struct ep_opts){.id = 2, .cluster = "c1"}), 0);
    CHECK_EQ(ep_up(&(struct ep_opts){.id = 4, .cluster = "other"}), 0);
    CHECK_EQ(peer_set(4, 1, "127.0.0.1", eps[1].port), 0);
    /* Node 4 of another cluster calls node 1: refused; the call fails with the reason. */
    uint64_t t0 = mono_ms();
    CHECK_EQ(call(4, 1, T_ECHO, "x", 1, 5000, &recs[0]), 0);
    /* Node 1 believes node 7 is at node 2's address: node 2's HELLO says otherwise. */
    CHECK_EQ(peer_set(1, 7, "127.0.0.1", eps[2].port), 0);
    CHECK_EQ(call(1, 7, T_ECHO, "x", 1, 5000, &recs[1]), 0);
    int n = 2;
    CHECK(wait_for(recs_done, &n, 10000));
    CHECK_EQ(recs[0].err, AL_EINVAL);
    CHECK(strstr(recs[0].text, "cluster") != NULL);
    CHECK_EQ(recs[1].err, AL_EINVAL);
    CHECK(strstr(recs[1].text, "node 2") != NULL);
    /* Refusals end the calls at once, not at their timeout. */
    CHECK(recs[0].at_ms - t0 < 3000 && recs[1].at_ms - t0 < 3000);
    struct stats_job s = stats(1, 7);
    CHECK(!s.ps.connected);
    CHECK(s.st.hello_rejects >= 2); /* 4's HELLO refused by 1, 2's answer refused by 1 */
    env_down();
}

/* ---- keepalive ---- */

/* Reads one whole frame from a blocking socket into buf. Returns its size or -1. */
static ssize_t raw_read_frame(int fd, uint8_t *buf, size_t cap)
{
    size_t got = 0;
    rpc_hdr h;
    for (int i = 0; i < 1000; i++) {
        int64_t rc = rpc_frame_decode(buf, got, 0, &h);
        if (rc > 0) return (ssize_t)rc;
        if (rc < 0 || got == cap) return -1;
        ssize_t k = recv(fd, buf + got, cap - got, 0);
        if (k <= 0) return -1;
        got += (size_t)k;
    }
    return -1;
}

TEST(keepalive_closes_silent_connections)
{
    env_up();
    CHECK_EQ(ep_up(&(struct ep_opts){.id = 1, .keepalive_ms = 200}), 0);
    uint16_t port;
    int lfd = closed_port(&port);
    CHECK_EQ(listen(lfd, 4), 0);
    struct timeval tv = {5, 0};
    setsockopt(lfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    CHECK_EQ(peer_set(1, 9, "127.0.0.1", port), 0);
    uint64_t t0 = mono_ms();
    CHECK_EQ(call(1, 9, T_ECHO, "q", 1, 10000, &recs[0]), 0);
    /* A server that answers the HELLO as node 9, then neither reads nor writes. */
    int fd = accept(lfd, NULL, NULL);
    CHECK(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    uint8_t buf[512];
    CHECK(raw_read_frame(fd, buf, sizeof(buf)) > 0);
    rpc_hello h = {.min_version = 1, .max_version = 1, .node_id = 9};
    strcpy(h.addr, "127.0.0.1:9");
    int n = rpc_hello_encode(&h, buf + RPC_HDR_SIZE, sizeof(buf) - RPC_HDR_SIZE);
    rpc_hdr_encode(buf, RPC_F_RESPONSE, RPC_T_HELLO, 0, buf + RPC_HDR_SIZE, (uint32_t)n);
    CHECK(raw_write(fd, buf, RPC_HDR_SIZE + (size_t)n));
    int one = 1;
    CHECK(wait_for(recs_done, &one, 8000));
    /* The request was written, so the call ends with the connection, long before its 10 s. */
    CHECK_EQ(recs[0].err, AL_ECLOSED);
    CHECK(recs[0].at_ms - t0 >= 350 && recs[0].at_ms - t0 < 4000);
    struct stats_job s = stats(1, 9);
    CHECK_EQ(s.st.keepalive_closes, 1);
    CHECK_EQ(s.ps.disconnects, 1);
    close(fd);
    close(lfd);
    /* A client that says HELLO and then nothing: closed after 3 keepalive periods. */
    fd = raw_connect(eps[1].port);
    size_t alen;
    CHECK_EQ(raw_hello(fd, 8, "", buf, &alen), RPC_F_RESPONSE);
    t0 = mono_ms();
    CHECK(raw_closed_by_peer(fd));
    CHECK(mono_ms() - t0 >= 500);
    close(fd);
    s = stats(1, 9);
    CHECK_EQ(s.st.keepalive_closes, 2);
    env_down();
}

/* ---- sends from another shard ---- */

static bool got_n_from_1(void *arg)
{
    uint64_t n = *(uint64_t *)arg;
    return eps[2].got[1] >= n || eps[2].errors;
}

/* On shard 1: NCALLS calls to node 2 through endpoint 1 (on shard 0). */
static int xcalls_err;

static void xcalls_fn(void *arg)
{
    reactor_shard *self = reactor_current();
    xcalls_err = 0;
    memset(recs, 0, sizeof(recs));
    for (int i = 0; i < NCALLS && !xcalls_err; i++) {
        uint8_t p[2] = {(uint8_t)i, 7};
        uint16_t type = i == NCALLS - 2 ? T_FAIL : T_ECHO;
        int32_t node = i == NCALLS - 1 ? 42 : 2;
        xcalls_err = rpc_call_from(self, eps[1].r, node, type, p, 2, 5000, call_cb, &recs[i]);
    }
}

TEST(sends_and_calls_from_another_shard)
{
    env_up();
    int32_t ids[2] = {1, 2};
    CHECK_EQ(ep_up(&(struct ep_opts){.id = 1}), 0);
    CHECK_EQ(ep_up(&(struct ep_opts){.id = 2}), 0);
    mesh(ids, 2);
    static struct pump p;
    memset(&p, 0, sizeof(p));
    p.from = 1;
    p.to[0] = 2;
    p.nto = 1;
    p.per_pair = 3000;
    p.per_tick = 128;
    p.cross = true;
    pump_start(&p, 1); /* on shard 1; the endpoints live on shard 0 */
    uint64_t want = p.per_pair;
    CHECK(wait_for(got_n_from_1, &want, 30000));
    CHECK_EQ(eps[2].errors, 0);
    CHECK_EQ(p.err, 0);
    CHECK_EQ(eps[2].got[1], want);
    struct stats_job s = stats(1, 2);
    CHECK_EQ(s.st.forwarded, want);
    CHECK_EQ(s.st.forward_dropped, 0);
    printf("    %" PRIu64 " messages forwarded from shard 1 (%" PRIu64 " ring-full retries)\n",
           want, p.full);
    /* Calls from shard 1: answered, refused by the peer, unknown node; callbacks on shard 1. */
    on_shard(1, xcalls_fn, NULL);
    CHECK_EQ(xcalls_err, 0);
    int n = NCALLS;
    CHECK(wait_for(recs_done, &n, 10000));
    for (int i = 0; i < NCALLS; i++) {
        CHECK_EQ(recs[i].n, 1);
        CHECK_EQ(recs[i].shard, 1);
        if (i == NCALLS - 1) {
            CHECK_EQ(recs[i].err, AL_ENOTFOUND);
        } else if (i == NCALLS - 2) {
            CHECK_EQ(recs[i].err, -EPERM);
            CHECK(strstr(recs[i].text, "always refuses") != NULL);
        } else {
            CHECK_EQ(recs[i].err, 0);
            CHECK_EQ(recs[i].from, 2);
            CHECK_EQ(recs[i].len, 6);
            CHECK_EQ(recs[i].data[0], (uint8_t)i ^ 0x5a);
        }
    }
    env_down();
}

/* ---- the simulator: 2 virtual seconds of messages (up to 8 KiB) and calls between 3 nodes;
 * nodes 1 and 2 cut by a hanging partition (bytes wait) from 0.3 s, nodes 0 and 1 by a failing
 * one (resets) from 0.7 s, all healed at 1.2 s; node 2 crashes at 1.4 s and restarts at 1.5 s;
 * optionally random connection resets ---- */

#define SIM_N 3

struct sim_node {
    io *io;
    reactor *re;
    rpc *r;
    int32_t id;
};

static struct sim_node sn[SIM_N];
static uint64_t sim_sent[SIM_N][SIM_N];
static struct callrec sim_recs[SIM_N][200];
static int sim_ncalls[SIM_N];

static int sim_init(reactor_shard *s, void *arg)
{
    struct sim_node *n = arg;
    struct ep_opts o = {.id = n->id, .port = 33145, .cluster = "sim", .host = "0.0.0.0",
                        .connect_timeout_ms = 500, .backoff_max_ms = 400, .keepalive_ms = 100};
    o.gaps = true;
    int err = tep_create(s, &o);
    if (err) return err;
    n->r = eps[n->id].r;
    return 0;
}

/* One scenario. Returns the world hash; failures are CHECKs. */
static uint64_t sim_run(uint64_t seed, uint32_t drop_ppm)
{
    g_seed = seed;
    g_gap_max = 8192;
    io_sim_world *w;
    struct io_sim_opts wo = {.seed = seed, .net_drop_ppm = drop_ppm};
    CHECK_EQ(io_sim_world_create(&w, &wo), 0);
    memset(sim_sent, 0, sizeof(sim_sent));
    memset(sim_recs, 0, sizeof(sim_recs));
    memset(sim_ncalls, 0, sizeof(sim_ncalls));
    char name[16];
    for (int i = 0; i < SIM_N; i++) {
        sn[i].id = i;
        snprintf(name, sizeof(name), "n%d", i);
        CHECK_EQ(reactor_create_sim(w, name, 1, sim_init, &sn[i], &sn[i].re), 0);
        sn[i].io = reactor_io(reactor_shard_at(sn[i].re, 0));
    }
    for (int i = 0; i < SIM_N; i++)
        for (int j = 0; j < SIM_N; j++)
            if (i != j) CHECK_EQ(rpc_peer_set(sn[i].r, j, io_sim_node_addr(sn[j].io), 33145), 0);
    uint8_t *buf = malloc(65536);
    uint64_t t0 = io_sim_world_now(w);
    /* 3 virtual seconds of traffic; a partition between 0 and 1 from 1.0 s to 1.6 s. */
    for (int step = 0; step < 2000; step++) {
        if (step == 300) io_sim_partition(w, 1, 2, IO_SIM_PART_HANG);
        if (step == 700) io_sim_partition(w, 0, 1, IO_SIM_PART_FAIL);
        if (step == 1200) io_sim_heal_all(w);
        if (step == 1400) { /* node 2 loses power; its calls die with it */
            io_sim_crash(sn[2].io);
            rpc_free_crashed(sn[2].r);
            reactor_destroy_sim(sn[2].re);
            sn[2].r = NULL;
            eps[2].r = NULL;
        }
        if (step == 1500) { /* ... and comes back on the same address, with no memory */
            CHECK(io_sim_restart(sn[2].io) != NULL);
            CHECK_EQ(reactor_create_sim(w, "n2", 1, sim_init, &sn[2], &sn[2].re), 0);
            sn[2].io = reactor_io(reactor_shard_at(sn[2].re, 0));
            for (int j = 0; j < 2; j++)
                CHECK_EQ(rpc_peer_set(sn[2].r, j, io_sim_node_addr(sn[j].io), 33145), 0);
            sim_ncalls[2] = 0;
            memset(sim_recs[2], 0, sizeof(sim_recs[2]));
        }
        bool down = step >= 1400 && step < 1500;
        for (int i = 0; i < SIM_N; i++) {
            if (down && i == 2) continue;
            for (int j = 0; j < SIM_N; j++) {
                if (i == j) continue;
                for (int k = 0; k < 2; k++) {
                    uint64_t seq = sim_sent[i][j];
                    size_t len = pl_size(i, j, seq, 8, g_gap_max);
                    pl_fill(buf, len, i, j, seq);
                    memcpy(buf, &seq, 8);
                    int err = rpc_send(sn[i].r, j, T_SEQ, buf, len);
                    if (err == AL_EFULL || err == AL_ECLOSED) break; /* full, or in backoff */
                    CHECK_EQ(err, 0);
                    sim_sent[i][j]++;
                }
            }
            if (step % 20 == 0 && sim_ncalls[i] < 200) {
                int32_t to = (int32_t)((i + 1 + step / 20 % 2) % SIM_N);
                uint8_t p[1] = {(uint8_t)step};
                struct callrec *c = &sim_recs[i][sim_ncalls[i]++];
                CHECK_EQ(rpc_call(sn[i].r, to, T_ECHO, p, 1, 300, call_cb, c), 0);
            }
        }
        io_sim_world_run_until(w, t0 + (uint64_t)(step + 1) * 1000000ull, 0);
    }
    /* Let everything settle (calls time out, connections come back). */
    io_sim_world_run_until(w, io_sim_world_now(w) + 2000000000ull, 0);
    for (int i = 0; i < SIM_N; i++) {
        if (eps[i].errors) fprintf(stderr, "    %s\n", eps[i].err);
        CHECK_EQ(eps[i].errors, 0);
        for (int k = 0; k < sim_ncalls[i]; k++) {
            CHECK_EQ(sim_recs[i][k].n, 1);
            int e = sim_recs[i][k].err;
            CHECK(e == 0 || e == AL_ETIMEDOUT || e == AL_ECLOSED);
        }
        for (int j = 0; j < SIM_N; j++)
            if (i != j) CHECK(eps[j].got[i] > 0 && eps[j].got[i] <= sim_sent[i][j]);
    }
    /* The hanging partition was noticed by the keepalive; the failing one reset connections;
     * all came back. */
    struct rpc_stats st1, st2;
    rpc_stats_get(sn[1].r, &st1);
    rpc_stats_get(sn[2].r, &st2);
    /* (With random resets the 1-2 connections may already be down when the hang starts.) */
    if (drop_ppm == 0) CHECK(st1.keepalive_closes >= 1); /* node 2 restarted: counters anew */
    struct rpc_peer_stats ps;
    CHECK_EQ(rpc_peer_stats_get(sn[0].r, 1, &ps), 0);
    CHECK(ps.disconnects + ps.connect_errors >= 1);
    /* After healing, with no resets, every further message arrives. */
    if (drop_ppm == 0) {
        uint64_t base[SIM_N][SIM_N];
        for (int i = 0; i < SIM_N; i++)
            for (int j = 0; j < SIM_N; j++) base[i][j] = eps[j].got[i];
        for (int i = 0; i < SIM_N; i++)
            for (int j = 0; j < SIM_N; j++)
                for (int k = 0; i != j && k < 50; k++) {
                    uint64_t seq = sim_sent[i][j];
                    size_t len = pl_size(i, j, seq, 8, g_gap_max);
                    pl_fill(buf, len, i, j, seq);
                    memcpy(buf, &seq, 8);
                    CHECK_EQ(rpc_send(sn[i].r, j, T_SEQ, buf, len), 0);
                    sim_sent[i][j]++;
                }
        io_sim_world_run_until(w, io_sim_world_now(w) + 1000000000ull, 0);
        for (int i = 0; i < SIM_N; i++)
            for (int j = 0; j < SIM_N; j++)
                if (i != j) CHECK_EQ(eps[j].got[i] - base[i][j], 50);
        for (int i = 0; i < SIM_N; i++)
            for (int j = 0; j < SIM_N; j++) {
                if (i == j) continue;
                CHECK_EQ(rpc_peer_stats_get(sn[i].r, j, &ps), 0);
                if (!ps.connected) fprintf(stderr, "    %d -> %d not connected\n", i, j);
                CHECK(ps.connected);
            }
    }
    free(buf);
    uint64_t h = io_sim_world_hash(w);
    int stopped = 0;
    for (int i = 0; i < SIM_N; i++) rpc_stop(sn[i].r, tep_done, &eps[i]);
    io_sim_world_run_until(w, io_sim_world_now(w) + 1000000000ull, 0);
    for (int i = 0; i < SIM_N; i++) stopped += eps[i].stopped;
    CHECK_EQ(stopped, SIM_N);
    for (int i = 0; i < SIM_N; i++) {
        reactor_destroy_sim(sn[i].re);
        eps[i].r = NULL;
        free(eps[i].scratch);
        eps[i].scratch = NULL;
    }
    io_sim_world_destroy(w);
    g_gap_max = 65536;
    return h;
}

TEST(sim_lossy_network)
{
    /* AL_SIM_SEEDS=N runs N seeds with no time bound (default: 20 seeds, at most 20 s). */
    uint64_t seed = test_seed();
    uint64_t t0 = mono_ms();
    const char *env = getenv("AL_SIM_SEEDS");
    uint64_t nseeds = env ? strtoull(env, NULL, 10) : 20;
    uint64_t budget_ms = env ? UINT64_MAX : 20000;
    for (uint64_t i = 0; i < nseeds && mono_ms() - t0 < budget_ms; i++) {
        uint64_t s = seed + i;
        fprintf(stderr, "    sim seed %" PRIu64 "\n", s);
        sim_run(s, i % 2 ? 2000 : 0);
    }
}

TEST(sim_same_seed_same_run)
{
    uint64_t seed = test_seed();
    CHECK(sim_run(seed, 2000) == sim_run(seed, 2000));
}

int main(int argc, char **argv)
{
    /* Refusals and closes are expected here: quiet unless asked (AL_TEST_LOG=debug). */
    const char *lv = getenv("AL_TEST_LOG");
    al_log_set_level(lv ? al_log_level_parse(lv) : AL_LOG_OFF);
    return test_main(argc, argv);
}
