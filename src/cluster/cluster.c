/*
 * cluster.c — the node service on shard 0 in cluster mode (see cluster.h): the RPC endpoint,
 * the controller replica (Raft group 0) and its apply loop, the controller's topic table
 * installed on every shard, founding and joining, the peers given to rpc, the cluster view for
 * other shards, and the Raft transport glue for partition replicas.
 *
 * Everything runs from one 10 ms timer on shard 0 (tick the replica, apply what committed,
 * ship a changed topic table, leader duties, join progress, waiters) plus the rpc handlers.
 * Replica callbacks only record what changed; the timer acts on it, so nothing proposes from
 * inside the replica.
 */
#include "cluster/cluster_impl.h"
#include "cluster/cluster_groups.h"

#include "base/cursor.h"
#include "base/log.h"
#include "cluster/controller_place.h"
#include "kafka/errors.h"
#include "storage/log_raft.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define SLOW_NS            (100 * 1000000ull) /* leader duties, liveness, deadlines */
#define JOIN_RETRY_NS      (1000 * 1000000ull)
#define JOIN_HINT_NS       (50 * 1000000ull)  /* retry at once where a non-leader pointed */
#define JOIN_LOG_NS        (5000 * 1000000ull)
#define JOIN_CALL_MS       5000
#define PING_NS            (1000 * 1000000ull)
#define CONTROLLER_SEG     (16u << 20)
#define CONTROLLER_FALLOC  (1u << 20)
/* The controller log is trimmed (snapshot of the state + prefix truncation) once this many
 * offsets were applied past the last snapshot point; AILURUS_CONTROLLER_SNAPSHOT_EVERY
 * overrides it (tests). */
#define CONTROLLER_SNAPSHOT_EVERY 4096

cluster *g_cluster;

/* ---- process-wide pieces other shards read ---- */

static pthread_mutex_t g_view_mu = PTHREAD_MUTEX_INITIALIZER;
static cluster_view_broker *g_view;
static int g_view_n = -1; /* -1: not a cluster */
static int32_t g_view_controller = -1, g_view_self = -1;
static uint64_t g_view_gen;   /* atomic: bumped after a change of brokers or liveness */

static rpc *g_rpc;            /* atomic: the endpoint while it accepts sends */
static int g_rpc_users;       /* atomic: cluster_raft_send calls in progress */
static cluster_raft_rx_fn g_part_rx;
static int g_failed;          /* atomic: a fatal cluster error (start returns non-zero) */

bool cluster_active(void)
{
    return __atomic_load_n(&g_view_n, __ATOMIC_ACQUIRE) >= 0;
}

bool cluster_failed(void)
{
    return __atomic_load_n(&g_failed, __ATOMIC_ACQUIRE) != 0;
}

void cluster_set_partition_rx(cluster_raft_rx_fn fn)
{
    g_part_rx = fn;
}

int cluster_view_brokers(cluster_view_broker *out, int max, int32_t *controller,
                         int32_t *self_out)
{
    pthread_mutex_lock(&g_view_mu);
    int n = g_view_n;
    if (n > 0 && out && max > 0) memcpy(out, g_view, (size_t)AL_MIN(n, max) * sizeof(*out));
    if (controller) *controller = g_view_controller;
    if (self_out) *self_out = g_view_self;
    pthread_mutex_unlock(&g_view_mu);
    return n;
}

bool cluster_node_may_take_lead(int32_t id)
{
    bool ok = false;
    pthread_mutex_lock(&g_view_mu);
    for (int i = 0; i < g_view_n; i++)
        if (g_view[i].node_id == id) ok = g_view[i].alive && !g_view[i].stopping;
    pthread_mutex_unlock(&g_view_mu);
    return ok;
}

bool cluster_node_alive(int32_t id)
{
    bool alive = false;
    pthread_mutex_lock(&g_view_mu);
    for (int i = 0; i < g_view_n; i++)
        if (g_view[i].node_id == id) alive = g_view[i].alive;
    pthread_mutex_unlock(&g_view_mu);
    return alive;
}

int32_t cluster_active_brokers(void)
{
    pthread_mutex_lock(&g_view_mu);
    int32_t n = g_view_n < 0 ? -1 : 0;
    for (int i = 0; i < g_view_n; i++) n += g_view[i].membership == CONTROLLER_NODE_ACTIVE;
    pthread_mutex_unlock(&g_view_mu);
    return n;
}

int cluster_raft_send(reactor_shard *self, int32_t to, const uint8_t *buf, size_t len)
{
    __atomic_add_fetch(&g_rpc_users, 1, __ATOMIC_ACQ_REL);
    rpc *r = __atomic_load_n(&g_rpc, __ATOMIC_ACQUIRE);
    int rc = AL_ECLOSED;
    if (r) {
        uint16_t type = len > 1 && buf[1] == RAFT_MSG_HB_BATCH ? RPC_T_RAFT_HB : RPC_T_RAFT;
        rc = rpc_send_from(self, r, to, type, buf, len);
    }
    __atomic_sub_fetch(&g_rpc_users, 1, __ATOMIC_ACQ_REL);
    return rc;
}

/*
 * Whether peer id is alive: something arrived from it (pings every second, Raft traffic, a new
 * connection) within CLUSTER_LIVENESS_MS, and our outbound connection to it is up (HELLO done)
 * or has not failed since we last heard from it (a peer just learned from the state counts as
 * heard: registered brokers are alive until shown otherwise, as Kafka lists a broker once it
 * registered; a restarted peer's pings prove it alive while our reconnect backs off). A
 * SIGKILLed node drops at once (the connection closes, reconnects are refused); a silent or
 * cut-off one after the timeout. Records the rpc counters to notice movement (shard 0).
 */
static bool peer_alive(cluster *cl, int32_t id)
{
    struct rpc_peer_stats ps;
    if (rpc_peer_stats_get(cl->rpc, id, &ps) != 0) return false;
    uint64_t now = io_now_ns(cl->io);
    for (int32_t k = 0; k < cl->n_peers; k++) {
        struct cl_peer *p = &cl->peers[k];
        if (p->id != id) continue;
        uint64_t fails = ps.connect_errors + ps.disconnects;
        if (ps.msgs_in != p->msgs_in || ps.connects != p->connects) {
            p->heard_ns = now;
            p->msgs_in = ps.msgs_in;
            p->connects = ps.connects;
            /* a failure in the same window as the last messages may be its death: only
             * traffic in a window without new failures (or a live connection) clears it */
            if (ps.connected || fails == p->last_fails) p->fails = fails;
        }
        p->last_fails = fails;
        return (ps.connected || fails == p->fails) && p->heard_ns &&
               now - p->heard_ns <= (uint64_t)CLUSTER_LIVENESS_MS * 1000000ull;
    }
    return ps.connected; /* not a peer of ours yet (no address): rpc's word */
}

static bool peer_stopping(const cluster *cl, int32_t id)
{
    for (int32_t k = 0; k < cl->n_peers; k++)
        if (cl->peers[k].id == id) return cl->peers[k].stopping;
    return false;
}

/* Rebuilds the view from the state, the replica and rpc's liveness. */
static void view_update(cluster *cl)
{
    const controller_state *st = &cl->st;
    cluster_view_broker *v = calloc((size_t)AL_MAX(st->n_brokers, 1), sizeof(*v));
    if (!v) return; /* keep the old view */
    const raft_config *m = raft_replica_membership(cl->ctl);
    for (int32_t i = 0; i < st->n_brokers; i++) {
        const controller_broker *b = &st->brokers[i];
        cluster_view_broker *o = &v[i];
        o->node_id = b->node_id;
        memcpy(o->kafka_host, b->kafka_host, sizeof(o->kafka_host));
        o->kafka_port = b->kafka_port;
        memcpy(o->rpc_host, b->rpc_host, sizeof(o->rpc_host));
        o->rpc_port = b->rpc_port;
        memcpy(o->rack, b->rack, sizeof(o->rack));
        o->cores = b->cores;
        o->membership = b->membership;
        o->alive = b->node_id == cl->self || peer_alive(cl, b->node_id);
        o->stopping = b->node_id == cl->self ? cl->stopping_announced
                                             : peer_stopping(cl, b->node_id);
        o->voter = m && raft_config_is_voter(m, b->node_id);
        o->learner = m && raft_config_is_learner(m, b->node_id);
    }
    pthread_mutex_lock(&g_view_mu);
    cluster_view_broker *old = g_view;
    bool moved = g_view_n != st->n_brokers;
    for (int32_t i = 0; !moved && i < st->n_brokers; i++)
        moved = old[i].node_id != v[i].node_id || old[i].alive != v[i].alive ||
                old[i].stopping != v[i].stopping;
    g_view = v;
    g_view_n = st->n_brokers;
    g_view_controller = cl->leader;
    g_view_self = cl->self;
    /* bumped under the lock, after the new view is in place: a reader that saw the new number
     * and then copies the view gets this view or a newer one */
    if (moved) __atomic_add_fetch(&g_view_gen, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&g_view_mu);
    free(old);
}

uint64_t cluster_view_generation(void)
{
    return __atomic_load_n(&g_view_gen, __ATOMIC_ACQUIRE);
}

/* ---- small helpers ---- */

uint64_t cl_request_id(cluster *cl)
{
    return ++cl->next_request_id;
}

bool cl_can_propose(const cluster *cl)
{
    return cl->ctl && !cl->stopping && cl->role == RAFT_LEADER && cl->leader_ready;
}

bool cl_broker_rpc(const cluster *cl, int32_t id, char *host, size_t cap, uint16_t *port)
{
    const controller_broker *b = controller_broker_find(&cl->st, id);
    if (!b) return false;
    snprintf(host, cap, "%s", b->rpc_host);
    *port = b->rpc_port;
    return true;
}

void cl_waiter_add(cluster *cl, cl_waiter *w)
{
    w->next = cl->waiters;
    cl->waiters = w;
}

/* Runs the waiters the installed offset (or their deadline, or a stop) satisfies. */
static void waiters_run(cluster *cl, bool all)
{
    uint64_t now = io_now_ns(cl->io);
    for (int guard = 0; guard < 100000; guard++) {
        cl_waiter **pp = &cl->waiters, *w = NULL;
        bool timed_out = false;
        for (; *pp; pp = &(*pp)->next) {
            cl_waiter *c = *pp;
            timed_out = all || (c->deadline_ns && now >= c->deadline_ns);
            if (c->offset <= cl->installed_offset || timed_out) {
                w = c;
                *pp = c->next;
                break;
            }
        }
        if (!w) return;
        w->fn(w, timed_out && w->offset > cl->installed_offset);
    }
}

/* Tells rpc the address of every other broker whose address it does not have yet. */
static void peers_update(cluster *cl, const controller_state *st)
{
    for (int32_t i = 0; i < st->n_brokers; i++) {
        const controller_broker *b = &st->brokers[i];
        if (b->node_id == cl->self || b->membership == CONTROLLER_NODE_REMOVED) continue;
        struct cl_peer *p = NULL;
        for (int32_t k = 0; k < cl->n_peers; k++)
            if (cl->peers[k].id == b->node_id) p = &cl->peers[k];
        if (p && p->port == b->rpc_port && !strcmp(p->host, b->rpc_host)) continue;
        int rc = rpc_peer_set(cl->rpc, b->node_id, b->rpc_host, b->rpc_port);
        if (rc) {
            log_warn("cluster", "cannot set the address of node %" PRId32 " to %s:%u: %s",
                     b->node_id, b->rpc_host, b->rpc_port, al_strerror(rc));
            continue;
        }
        if (!p) {
            if (cl->n_peers == cl->cap_peers) {
                int32_t nc = cl->cap_peers ? cl->cap_peers * 2 : 8;
                struct cl_peer *np = realloc(cl->peers, (size_t)nc * sizeof(*np));
                if (!np) continue;
                cl->peers = np;
                cl->cap_peers = nc;
            }
            p = &cl->peers[cl->n_peers++];
            memset(p, 0, sizeof(*p));
            p->id = b->node_id;
            p->heard_ns = io_now_ns(cl->io); /* registered: alive until shown otherwise */
            struct rpc_peer_stats ps;
            if (rpc_peer_stats_get(cl->rpc, b->node_id, &ps) == 0)
                p->fails = p->last_fails = ps.connect_errors + ps.disconnects;
        }
        snprintf(p->host, sizeof(p->host), "%s", b->rpc_host);
        p->port = b->rpc_port;
        log_info("cluster", "peer node %" PRId32 " at %s:%u", b->node_id, b->rpc_host,
                 b->rpc_port);
    }
}

static void uuid_text(const uint8_t id[16], char *out, size_t cap)
{
    snprintf(out, cap,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", id[0],
             id[1], id[2], id[3], id[4], id[5], id[6], id[7], id[8], id[9], id[10], id[11],
             id[12], id[13], id[14], id[15]);
}

/* Parses the hex digits of a UUID-shaped text into 16 bytes. False if not 32 hex digits. */
static bool uuid_parse(const char *s, uint8_t out[16])
{
    int n = 0;
    for (; *s && n < 32; s++) {
        if (*s == '-') continue;
        int v = *s >= '0' && *s <= '9'   ? *s - '0'
                : *s >= 'a' && *s <= 'f' ? *s - 'a' + 10
                : *s >= 'A' && *s <= 'F' ? *s - 'A' + 10
                                         : -1;
        if (v < 0) return false;
        if (n % 2 == 0) out[n / 2] = (uint8_t)(v << 4);
        else out[n / 2] |= (uint8_t)v;
        n++;
    }
    return n == 32 && !*s;
}

/* Once the state has a cluster id: rpc's HELLO and the Kafka cluster id use it. */
static void cluster_id_publish(cluster *cl)
{
    if (cl->cid_published || !cl->st.has_cluster_id) return;
    char text[64];
    uuid_text(cl->st.cluster_id, text, sizeof(text));
    rpc_set_cluster_id(cl->rpc, text);
    if (cl->cid_buf && strcmp(cl->cid_buf, text)) snprintf(cl->cid_buf, cl->cid_cap, "%s", text);
    cl->cid_published = true;
}

/* ---- the topic table on every shard ---- */

/* The table (and configuration) being shipped when the service stopped: its last acks may
 * never arrive, so it stays reachable from here instead of being freed by one of them. */
static uint8_t *g_install_orphan;
static al_config *g_install_cfg_orphan;

static void install_ack_msg(reactor_shard *self, const struct reactor_msg *msg)
{
    cluster *cl = g_cluster;
    if (!cl || cl->install_blob != msg->arg) return; /* stopped: g_install_orphan keeps it */
    AL_ASSERT(cl->install_acks > 0);
    if (--cl->install_acks > 0) return;
    free(cl->install_blob);
    free(cl->install_cfg);
    cl->install_blob = NULL;
    cl->install_cfg = NULL;
    cl->install_busy = false;
    cl->installed_offset = AL_MAX(cl->installed_offset, cl->install_offset);
    /* Every shard closed what was deleted. Only once joined: before, the state may still be
     * catching up and lack topics whose data is here. */
    data_shard *ds = data_shard_self();
    if (ds && cl->joined) pm_sweep_deleted(&ds->pm, &ds->topics);
}

/* On every shard: adopt the controller's table (and the cluster configuration, msg->b when
 * not 0: as a DATA_OP_CLUSTER_CONFIG does in single-node mode) and open/close partitions and
 * re-resolve their settings to match. */
static void install_msg(reactor_shard *self, const struct reactor_msg *msg)
{
    data_shard *ds = data_shard_self();
    const al_config *cfg = (const al_config *)(uintptr_t)msg->b;
    if (ds && cfg) {
        ds->cluster_cfg = *cfg;
        ds->cluster_cfg_version++;
        broker_config_defaults_build(&ds->cluster_cfg, &ds->defaults);
        pm_set_defaults(&ds->pm, &ds->defaults);
    }
    if (ds) {
        int err = topic_table_decode(&ds->topics, msg->arg, (size_t)msg->a);
        if (err)
            log_error("cluster", "shard %u: cannot adopt the controller's topic table: %s",
                      reactor_shard_index(self), al_strerror(err));
        else
            pm_reconcile(&ds->pm, &ds->topics);
    }
    struct reactor_msg ack = {install_ack_msg, msg->arg, 0, 0};
    if (ds)
        data_send(ds, 0, install_ack_msg, msg->arg, 0, 0);
    else
        reactor_send(self, 0, &ack); /* no data plane here: best effort */
}

/* True when a and b have the same admin layer (keys with source ADMIN and their values). */
static bool admin_layer_equal(const al_config *a, const al_config *b)
{
    char x[CONFIG_PATH_MAX + 64], y[CONFIG_PATH_MAX + 64];
    for (size_t i = 0; i < config_key_count; i++) {
        bool aa = a->source[i] == CONFIG_SRC_ADMIN, bb = b->source[i] == CONFIG_SRC_ADMIN;
        if (aa != bb) return false;
        if (!aa) continue;
        config_format(a, &config_keys[i], x, sizeof(x));
        config_format(b, &config_keys[i], y, sizeof(y));
        if (strcmp(x, y)) return false;
    }
    return true;
}

/*
 * The configuration in effect under the controller's overrides (config_with_overrides of the
 * start-up one), malloc'd, or NULL (out of memory: retried next tick). Keeps the local copy
 * of the overrides (CONFIG_ADMIN_FILE, read at the next start before the controller log is
 * applied, so restart-only keys take effect) and the log level current.
 */
static al_config *config_compute(cluster *cl, const al_config *prev)
{
    int32_t n = cl->st.n_configs;
    al_config *c = malloc(sizeof(*c));
    const char **keys = calloc((size_t)AL_MAX(n, 1), sizeof(*keys));
    const char **vals = calloc((size_t)AL_MAX(n, 1), sizeof(*vals));
    if (!c || !keys || !vals) {
        free(c);
        c = NULL;
        goto out;
    }
    for (int32_t i = 0; i < n; i++) {
        keys[i] = cl->st.configs[i].key;
        vals[i] = cl->st.configs[i].value;
    }
    char err[512];
    int skipped = config_with_overrides(c, cl->cfg, keys, vals, n, err, sizeof(err));
    if (skipped)
        log_warn("cluster", "%d cluster configuration value(s) not applied on node %" PRId32
                 ": %s (this node keeps its start-up value; fix it with AlterConfigs or PUT "
                 "/v1/cluster_config)", skipped, cl->self, err);
    if (!admin_layer_equal(c, prev)) {
        int rc = config_save_admin(cl->io, c);
        if (rc)
            log_warn("cluster", "cannot save the local copy of the cluster configuration in "
                     "%s/%s: %s (it is re-read from the controller log at the next start)",
                     c->data_directory, CONFIG_ADMIN_FILE, al_strerror(rc));
    }
    if (c->log_level != prev->log_level) al_log_set_level((int)c->log_level);
    log_info("cluster", "node %" PRId32 ": cluster configuration version %" PRIu64
             " in effect (%" PRId32 " override(s))", cl->self, cl->st.config_version, n);
out:
    free(keys);
    free(vals);
    return c;
}

/* Ships the state's topic table (with the cluster configuration when that changed, and the
 * first time) when either changed; otherwise catches installed up. */
static void install_step(cluster *cl)
{
    if (cl->install_busy || cl->st.applied_offset < 0) return; /* shards start empty */
    bool cfg_same = cl->config_shipped && cl->st.config_version == cl->shipped_config_version;
    if (cl->shipped_any && cl->st.topics.version == cl->shipped_version && cfg_same) {
        cl->installed_offset = AL_MAX(cl->installed_offset, cl->st.applied_offset);
        return;
    }
    data_shard *ds = data_shard_self();
    uint8_t *blob = NULL;
    size_t len = 0;
    if (!ds || topic_table_encode(&cl->st.topics, &blob, &len)) return; /* retried next tick */
    al_config *cfg = NULL;
    if (!cfg_same && !(cfg = config_compute(cl, &ds->cluster_cfg))) {
        free(blob);
        return;
    }
    cl->install_blob = blob;
    cl->install_cfg = cfg;
    cl->install_busy = true;
    cl->install_acks = cl->smp;
    cl->install_offset = cl->st.applied_offset;
    cl->shipped_version = cl->st.topics.version;
    cl->shipped_any = true;
    if (cfg) {
        cl->shipped_config_version = cl->st.config_version;
        cl->config_shipped = true;
    }
    for (unsigned s = 0; s < cl->smp; s++)
        data_send(ds, s, install_msg, blob, len, (uint64_t)(uintptr_t)cfg);
}

/* ---- applying what group 0 committed ---- */

struct apply_ctx {
    cluster *cl;
    int64_t commit;
    int err;
};

static int apply_batch(void *arg, const uint8_t *batch, size_t size)
{
    struct apply_ctx *a = arg;
    if (size < 61) return AL_ECORRUPT;
    int64_t base = (int64_t)al_be64(batch);
    if (base > a->commit) return 1;
    int err = controller_apply(&a->cl->st, batch, size, NULL, NULL);
    if (err) a->err = err;
    return err;
}

/* Applies every committed batch not applied yet. A damaged log stops the node: going on
 * would let it diverge from the others. */
static void apply_committed(cluster *cl)
{
    int64_t commit = raft_replica_commit(cl->ctl);
    if (commit <= cl->st.applied_offset) return;
    uint64_t v0 = cl->st.version;
    struct apply_ctx a = {cl, commit, 0};
    int rc = storage_log_scan_sync(raft_replica_log(cl->ctl), cl->st.applied_offset + 1, 0,
                                   apply_batch, &a);
    if (rc < 0 || a.err) {
        log_error("cluster", "controller log: cannot apply the committed entries after offset "
                  "%" PRId64 ": %s; stopping (restore the node's controller directory from a "
                  "healthy node or wipe it and re-join)", cl->st.applied_offset,
                  al_strerror(a.err ? a.err : rc));
        __atomic_store_n(&g_failed, 1, __ATOMIC_RELEASE);
        cl->stopping = true;
        reactor_stop(reactor_of(cl->rs));
        return;
    }
    if (cl->st.applied_offset < commit) cl->st.applied_offset = commit; /* control tail */
    if (cl->st.version != v0) {
        peers_update(cl, &cl->st);
        cluster_id_publish(cl);
        view_update(cl);
    }
}

/* ---- founding ---- */

static void boot_done(raft_replicate_req *q)
{
    cluster *cl = q->ctx;
    if (q->res) {
        log_warn("cluster", "founding the cluster: the first controller entries did not "
                 "commit (%s); trying again", al_strerror(q->res));
    } else if (cl->join_offset < 0) {
        cl->join_offset = q->last_offset;
    }
    cl->boot_busy = false;
    free(q);
}

/* The founder's first leader term on an empty state: cluster id and our registration. */
static void boot_propose(cluster *cl)
{
    if (cl->boot_busy || cl->st.has_cluster_id || !cl->founder) return;
    controller_cmd c[2];
    memset(c, 0, sizeof(c));
    int64_t now = io_wall_ms(cl->io);
    c[0].type = CONTROLLER_CMD_SET_CLUSTER_ID;
    if (!cl->cid_buf || !uuid_parse(cl->cid_buf, c[0].cluster_id)) {
        uint64_t a = io_random(cl->io), b = io_random(cl->io);
        al_put_be64(c[0].cluster_id, a);
        al_put_be64(c[0].cluster_id + 8, b);
    }
    c[1].type = CONTROLLER_CMD_REGISTER_NODE;
    controller_broker *b = &c[1].broker;
    b->node_id = cl->self;
    snprintf(b->kafka_host, sizeof(b->kafka_host), "%s", cl->kafka_host);
    b->kafka_port = cl->kafka_port;
    snprintf(b->rpc_host, sizeof(b->rpc_host), "%s", cl->rpc_host);
    b->rpc_port = cl->rpc_port;
    b->cores = cl->smp;
    for (int i = 0; i < 2; i++) {
        c[i].proposer = cl->self;
        c[i].request_id = cl_request_id(cl);
        c[i].ts_ms = now;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    raft_replicate_req *q = calloc(1, sizeof(*q));
    if (!q || controller_batch_build(c, 2, now, &buf, &len)) {
        free(q);
        return;
    }
    q->wait = RAFT_WAIT_COMMIT;
    q->cb = boot_done;
    q->ctx = cl;
    int rc = raft_replicate(cl->ctl, buf, len, q);
    free(buf);
    if (rc < 0) {
        free(q);
        return;
    }
    cl->boot_busy = true;
    log_info("cluster", "founding a new cluster: node %" PRId32 " is its first controller",
             cl->self);
}

/* ---- leader duties ---- */

/* Adds registered brokers to group 0 as learners and promotes caught-up learners while there
 * are fewer voters than wanted (3, or 5 from 5 brokers). One change at a time. */
static void membership_step(cluster *cl)
{
    const raft_config *m = raft_replica_membership(cl->ctl);
    if (!m) return;
    int32_t active = 0;
    for (int32_t i = 0; i < cl->st.n_brokers; i++) {
        const controller_broker *b = &cl->st.brokers[i];
        if (b->membership == CONTROLLER_NODE_REMOVED) continue;
        active++;
        if (raft_config_is_voter(m, b->node_id) || raft_config_is_learner(m, b->node_id))
            continue;
        if (m->n_voters + m->n_learners >= RAFT_MAX_NODES) break;
        int rc = raft_replica_change_membership(cl->ctl, RAFT_CONF_ADD_LEARNER, b->node_id);
        if (rc == 0)
            log_info("cluster", "controller group: node %" PRId32 " added as a learner",
                     b->node_id);
        return;
    }
    int want = active >= 5 ? 5 : 3;
    if (m->n_voters >= want) return;
    int64_t commit = raft_replica_commit(cl->ctl);
    for (int i = 0; i < m->n_learners; i++) {
        int32_t id = m->learners[i];
        if (raft_replica_match(cl->ctl, id) < commit) continue;
        int rc = raft_replica_change_membership(cl->ctl, RAFT_CONF_PROMOTE, id);
        if (rc == 0)
            log_info("cluster", "controller group: node %" PRId32 " promoted to voter", id);
        return;
    }
}

/* ---- joining ---- */

static void join_fail(cluster *cl, const char *target, const char *why, uint64_t retry_ns)
{
    uint64_t now = io_now_ns(cl->io);
    cl->join_failures++;
    if (cl->join_failures == 1 || now - cl->last_join_log_ns >= JOIN_LOG_NS) {
        log_warn("cluster", "node %" PRId32 " cannot join the cluster through %s yet: %s "
                 "(attempt %" PRIu32 "); retrying (check that seed_servers points at running "
                 "nodes and that their rpc ports are reachable)", cl->self, target, why,
                 cl->join_failures);
        cl->last_join_log_ns = now;
    }
    cl->next_join_ns = now + retry_ns;
}

struct join_call {
    cluster *cl;
    char target[CONTROLLER_HOST_MAX + 16];
};

static void join_cb(void *ctx, const rpc_result *res)
{
    struct join_call *jc = ctx;
    cluster *cl = jc->cl;
    cl->join_busy = false;
    if (cl->stopping || cl->joined) goto out;
    if (res->err) {
        join_fail(cl, jc->target, res->err_text && *res->err_text ? res->err_text
                                                                   : al_strerror(res->err),
                  JOIN_RETRY_NS);
        goto out;
    }
    cluster_join_resp r;
    int err = cluster_join_resp_decode(res->payload, res->len, &r);
    if (err) {
        join_fail(cl, jc->target, "its answer does not decode", JOIN_RETRY_NS);
        goto out;
    }
    if (r.error == KAFKA_ERR_NOT_CONTROLLER) {
        if (r.leader_id >= 0 && r.leader_id != cl->self && r.leader_host[0]) {
            rpc_peer_set(cl->rpc, r.leader_id, r.leader_host, r.leader_port);
            cl->leader = r.leader_id; /* a hint: the replica will confirm */
            cl->next_join_ns = io_now_ns(cl->io) + JOIN_HINT_NS;
        } else {
            join_fail(cl, jc->target, "no controller leader is known there", JOIN_RETRY_NS);
        }
    } else if (r.error) {
        log_error("cluster", "node %" PRId32 " was refused by the cluster: %s (%s). Give every "
                  "node a distinct --node-id; stopping", cl->self, r.message,
                  kafka_err_name(r.error));
        __atomic_store_n(&g_failed, 1, __ATOMIC_RELEASE);
        cl->stopping = true;
        reactor_stop(reactor_of(cl->rs));
    } else {
        for (int32_t i = 0; i < r.n_brokers; i++)
            if (r.brokers[i].node_id != cl->self && r.brokers[i].rpc_host[0])
                rpc_peer_set(cl->rpc, r.brokers[i].node_id, r.brokers[i].rpc_host,
                             r.brokers[i].rpc_port);
        cl->join_offset = r.offset;
        log_info("cluster", "node %" PRId32 " registered with the controller (entry %" PRId64
                 "); catching up", cl->self, r.offset);
    }
    free(r.brokers);
out:
    free(jc);
}

static void join_req_fill(const cluster *cl, cluster_join_req *q)
{
    memset(q, 0, sizeof(*q));
    q->node_id = cl->self;
    snprintf(q->kafka_host, sizeof(q->kafka_host), "%s", cl->kafka_host);
    q->kafka_port = cl->kafka_port;
    snprintf(q->rpc_host, sizeof(q->rpc_host), "%s", cl->rpc_host);
    q->rpc_port = cl->rpc_port;
    q->cores = cl->smp;
}

static void self_register_done(raft_replicate_req *q)
{
    cluster *cl = q->ctx;
    cl->join_busy = false;
    if (q->res == 0 && cl->join_offset < 0) cl->join_offset = q->last_offset;
    free(q);
}

/* Proposes REGISTER_NODE for req (the leader). 0 (cb(q) runs) or an error. */
static int register_propose(cluster *cl, const cluster_join_req *r, raft_replicate_req *q)
{
    controller_cmd c;
    memset(&c, 0, sizeof(c));
    c.type = CONTROLLER_CMD_REGISTER_NODE;
    c.proposer = cl->self;
    c.request_id = cl_request_id(cl);
    c.ts_ms = io_wall_ms(cl->io);
    controller_broker *b = &c.broker;
    b->node_id = r->node_id;
    snprintf(b->kafka_host, sizeof(b->kafka_host), "%s", r->kafka_host);
    b->kafka_port = r->kafka_port;
    snprintf(b->rpc_host, sizeof(b->rpc_host), "%s", r->rpc_host);
    b->rpc_port = r->rpc_port;
    snprintf(b->rack, sizeof(b->rack), "%s", r->rack);
    b->cores = r->cores;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = controller_batch_build(&c, 1, c.ts_ms, &buf, &len);
    if (rc) return rc;
    q->wait = RAFT_WAIT_COMMIT;
    rc = raft_replicate(cl->ctl, buf, len, q);
    free(buf);
    return rc < 0 ? rc : 0;
}

/* One join attempt: register ourselves (we lead), ask the known leader, or ask a seed. */
static void join_step(cluster *cl)
{
    uint64_t now = io_now_ns(cl->io);
    if (cl->joined || cl->join_busy || cl->join_offset >= 0 || now < cl->next_join_ns) return;
    if (cl->role == RAFT_LEADER) {
        if (!cl->leader_ready || !cl->st.has_cluster_id) return; /* founding does it */
        raft_replicate_req *q = calloc(1, sizeof(*q));
        if (!q) return;
        cluster_join_req r;
        join_req_fill(cl, &r);
        q->cb = self_register_done;
        q->ctx = cl;
        if (register_propose(cl, &r, q)) {
            free(q);
            cl->next_join_ns = now + JOIN_HINT_NS;
            return;
        }
        cl->join_busy = true;
        return;
    }
    uint8_t buf[1024];
    cluster_join_req r;
    join_req_fill(cl, &r);
    int64_t n = cluster_join_req_encode(&r, buf, sizeof(buf));
    AL_ASSERT(n > 0);
    struct join_call *jc = calloc(1, sizeof(*jc));
    if (!jc) return;
    jc->cl = cl;
    int rc;
    if (cl->leader >= 0 && cl->leader != cl->self) { /* ENOTFOUND (no address): the seeds */
        snprintf(jc->target, sizeof(jc->target), "controller node %" PRId32, cl->leader);
        rc = rpc_call(cl->rpc, cl->leader, RPC_T_JOIN, buf, (size_t)n, JOIN_CALL_MS, join_cb,
                      jc);
        if (rc == 0) {
            cl->join_busy = true;
            return;
        }
    }
    /* The seeds other than ourselves, in turn. */
    for (int k = 0; k < cl->n_seeds; k++) {
        int i = (cl->join_seed + k) % cl->n_seeds;
        if (cl->seed_ports[i] == cl->rpc_port && !strcmp(cl->seed_hosts[i], cl->rpc_host))
            continue;
        cl->join_seed = i + 1;
        snprintf(jc->target, sizeof(jc->target), "seed %s:%u", cl->seed_hosts[i],
                 cl->seed_ports[i]);
        rc = rpc_call_addr(cl->rpc, cl->seed_hosts[i], cl->seed_ports[i], RPC_T_JOIN, buf,
                           (size_t)n, JOIN_CALL_MS, join_cb, jc);
        if (rc == 0) {
            cl->join_busy = true;
            return;
        }
        join_fail(cl, jc->target, al_strerror(rc), JOIN_RETRY_NS);
        break;
    }
    free(jc);
    if (!cl->join_busy) cl->next_join_ns = now + JOIN_RETRY_NS; /* e.g. only we are a seed */
}

/* Joined once our registration is applied and installed on every shard. */
static void join_check(cluster *cl)
{
    if (cl->joined || cl->join_offset < 0 || cl->installed_offset < cl->join_offset) return;
    if (!controller_broker_find(&cl->st, cl->self)) return;
    cl->joined = true;
    cluster_id_publish(cl);
    view_update(cl);
    log_info("cluster", "node %" PRId32 " joined the cluster (%" PRId32 " brokers, controller "
             "node %" PRId32 ")", cl->self, cl->st.n_brokers, cl->leader);
    if (cl->on_ready) cl->on_ready(cl->ready_arg);
}

/* ---- the JOIN handler (any node; acts on the leader) ---- */

struct join_pending {
    raft_replicate_req q;
    cluster *cl;
    rpc_token tok;
};

static void join_reply(cluster *cl, rpc_token tok, int16_t error, const char *msg,
                       int64_t offset)
{
    cluster_join_resp r;
    memset(&r, 0, sizeof(r));
    r.error = error;
    snprintf(r.message, sizeof(r.message), "%s", msg ? msg : "");
    r.leader_id = cl->role == RAFT_LEADER ? cl->self : cl->leader;
    if (r.leader_id >= 0 && r.leader_id != cl->self)
        cl_broker_rpc(cl, r.leader_id, r.leader_host, sizeof(r.leader_host), &r.leader_port);
    r.offset = offset;
    r.has_cluster_id = cl->st.has_cluster_id;
    memcpy(r.cluster_id, cl->st.cluster_id, 16);
    cluster_join_peer *peers = calloc((size_t)AL_MAX(cl->st.n_brokers, 1), sizeof(*peers));
    if (peers && error == 0) {
        for (int32_t i = 0; i < cl->st.n_brokers && i < CLUSTER_JOIN_BROKERS_MAX; i++) {
            peers[i].node_id = cl->st.brokers[i].node_id;
            memcpy(peers[i].rpc_host, cl->st.brokers[i].rpc_host, sizeof(peers[i].rpc_host));
            peers[i].rpc_port = cl->st.brokers[i].rpc_port;
            r.n_brokers = i + 1;
        }
    }
    r.brokers = peers;
    size_t cap = cluster_join_resp_size(&r);
    uint8_t *buf = malloc(cap);
    int64_t n = buf ? cluster_join_resp_encode(&r, buf, cap) : -ENOMEM;
    if (n > 0)
        rpc_reply(cl->rpc, tok, buf, (size_t)n);
    else
        rpc_reply_error(cl->rpc, tok, (int)n, "cannot encode the join answer");
    free(buf);
    free(peers);
}

static void join_committed(raft_replicate_req *q)
{
    struct join_pending *jp = (struct join_pending *)q;
    cluster *cl = jp->cl;
    /* rpc outlives the replica at stop (cluster_stop closes the replica first). */
    if (q->res == 0)
        join_reply(cl, jp->tok, 0, "", q->last_offset);
    else
        join_reply(cl, jp->tok, KAFKA_ERR_NOT_CONTROLLER,
                   q->res == AL_ECLOSED ? "the controller is stopping" : "leadership changed", -1);
    free(jp);
}

static void join_handler(rpc *r, void *ctx, const rpc_msg *m)
{
    cluster *cl = ctx;
    if (!m->is_call) return;
    cluster_join_req q;
    int err = cluster_join_req_decode(m->payload, m->len, &q);
    if (err) {
        rpc_reply_error(r, m->token, err, "malformed join request");
        return;
    }
    if (!cl_can_propose(cl)) {
        join_reply(cl, m->token, KAFKA_ERR_NOT_CONTROLLER, "not the controller leader", -1);
        return;
    }
    const controller_broker *b = controller_broker_find(&cl->st, q.node_id);
    bool same_addr = b && b->rpc_port == q.rpc_port && !strcmp(b->rpc_host, q.rpc_host);
    struct rpc_peer_stats ps;
    bool live = b && (q.node_id == cl->self ||
                      (rpc_peer_stats_get(r, q.node_id, &ps) == 0 && ps.connected));
    if (b && !same_addr && live) {
        char msg[256];
        snprintf(msg, sizeof(msg), "node id %" PRId32 " is already used by the live node at "
                 "%.80s:%u (this node is at %.80s:%u)", q.node_id, b->rpc_host, b->rpc_port,
                 q.rpc_host, q.rpc_port);
        log_warn("cluster", "refusing a registration: %s", msg);
        join_reply(cl, m->token, KAFKA_ERR_DUPLICATE_BROKER_REGISTRATION, msg, -1);
        return;
    }
    struct join_pending *jp = calloc(1, sizeof(*jp));
    if (!jp) {
        rpc_reply_error(r, m->token, -ENOMEM, "out of memory");
        return;
    }
    jp->cl = cl;
    jp->tok = m->token;
    jp->q.cb = join_committed;
    jp->q.ctx = jp;
    err = register_propose(cl, &q, &jp->q);
    if (err) {
        free(jp);
        join_reply(cl, m->token, KAFKA_ERR_NOT_CONTROLLER, al_strerror(err), -1);
        return;
    }
    log_info("cluster", "node %" PRId32 " (rpc %s:%u, kafka %s:%u) is registering", q.node_id,
             q.rpc_host, q.rpc_port, q.kafka_host, q.kafka_port);
}

/* ---- Raft transport for group 0, and inbound routing ---- */

static void ctl_send(void *ctx, int32_t to, uint64_t group, const uint8_t *buf, size_t len)
{
    cluster *cl = ctx;
    (void)group;
    if (cl->stopping) return;
    uint16_t type = len > 1 && buf[1] == RAFT_MSG_HB_BATCH ? RPC_T_RAFT_HB : RPC_T_RAFT;
    rpc_send(cl->rpc, to, type, buf, len); /* best effort: Raft retries */
}

static void ctl_on_commit(void *ctx, raft_replica *r, int64_t commit)
{
    (void)ctx, (void)r, (void)commit; /* the tick applies it */
}

/* A follower installed the leader's snapshot (it was too far behind a trimmed log): the state
 * is the snapshot's; the log suffix after it is applied by the tick as usual. A snapshot that
 * does not decode stops the node (going on would diverge). */
static void ctl_on_snapshot(void *ctx, raft_replica *r, int64_t offset, const uint8_t *data,
                            size_t len)
{
    cluster *cl = ctx;
    (void)r;
    int rc = controller_snapshot_decode(&cl->st, data, len);
    if (rc || cl->st.applied_offset != offset) {
        log_error("cluster", "controller: the leader's snapshot at %" PRId64 " is unusable (%s, "
                  "applied offset %" PRId64 "); stopping (wipe this node's controller "
                  "directory and re-join)", offset, rc ? al_strerror(rc) : "mismatch",
                  cl->st.applied_offset);
        __atomic_store_n(&g_failed, 1, __ATOMIC_RELEASE);
        cl->stopping = true;
        reactor_stop(reactor_of(cl->rs));
        return;
    }
    cl->shipped_any = false; /* ship the new topic table to the shards */
    peers_update(cl, &cl->st);
    cluster_id_publish(cl);
    view_update(cl);
    log_info("cluster", "controller: state loaded from the leader's snapshot at %" PRId64
             " (%" PRId32 " brokers, %" PRId32 " topics)", offset, cl->st.n_brokers,
             cl->st.topics.n);
}

/* Trims the controller log: once enough was applied past the snapshot point, the state (at
 * applied_offset, an entry end <= commit) becomes the snapshot and the log prefix up to it is
 * cut. A restart loads the snapshot, then applies the log suffix; a node too far behind gets
 * the snapshot from the leader. Not possible yet (not durable that far, busy): next tick. */
static void ctl_maybe_snapshot(cluster *cl)
{
    int64_t a = cl->st.applied_offset, snap = raft_replica_snapshot_offset(cl->ctl);
    if (a < 0 || a - snap < cl->snapshot_every || a > raft_replica_commit(cl->ctl)) return;
    uint8_t *buf = NULL;
    size_t len = 0;
    if (controller_snapshot_encode(&cl->st, &buf, &len)) return;
    int rc = raft_replica_prefix_truncate(cl->ctl, a + 1, buf, len);
    free(buf);
    if (rc == 0)
        log_info("cluster", "controller log trimmed: snapshot at %" PRId64 " (%zu bytes), the "
                 "log starts at %" PRId64, a, len, a + 1);
    else if (rc != RAFT_EBUSY && rc != AL_ERANGE)
        log_warn("cluster", "controller log: snapshot at %" PRId64 " failed: %s", a,
                 raft_strerror(rc));
}

static void ctl_on_role(void *ctx, raft_replica *r, int role, int64_t term, int32_t leader)
{
    cluster *cl = ctx;
    bool was_leader = cl->role == RAFT_LEADER;
    if (role == RAFT_LEADER && (!was_leader || term != cl->term)) {
        cl->leader_from = raft_replica_last_offset(r);
        cl->leader_ready = false;
    }
    if (leader != cl->leader || role != cl->role)
        log_info("cluster", "controller: node %" PRId32 " is %s in term %" PRId64
                 " (leader %" PRId32 ")", cl->self, raft_role_name(role), term, leader);
    int32_t before = cl->leader;
    cl->role = role;
    cl->term = term;
    cl->leader = role == RAFT_LEADER ? cl->self : leader;
    if (role != RAFT_LEADER) cl->leader_ready = false;
    /* Metadata names the controller from the view: a new one is published at once, not at the
     * next slow step (up to SLOW_NS later), so clients and a node's controlled shutdown
     * (cluster_shutdown.c waits for it) see the change without that lag. */
    if (cl->leader != before && cl->ctl && !cl->stopping) view_update(cl);
}

static raft_replica *ctl_lookup(void *ctx, uint64_t group)
{
    cluster *cl = ctx;
    return group == CLUSTER_GROUP_CONTROLLER ? cl->ctl : NULL;
}

static void raft_handler(rpc *r, void *ctx, const rpc_msg *m)
{
    cluster *cl = ctx;
    (void)r;
    if (m->len < 11 || cl->stopping) return;
    uint64_t group = al_be64(m->payload + 3);
    if (m->type == RPC_T_RAFT && group == CLUSTER_GROUP_CONTROLLER) {
        if (m->len > cl->rxcap) {
            size_t nc = AL_MAX(m->len, cl->rxcap * 2);
            uint8_t *nb = realloc(cl->rxbuf, nc);
            if (!nb) return;
            cl->rxbuf = nb;
            cl->rxcap = nc;
        }
        memcpy(cl->rxbuf, m->payload, m->len);
        raft_replica_deliver(cl->rx, cl->rxbuf, m->len, ctl_lookup, cl);
        return;
    }
    if (g_part_rx) g_part_rx(cl->rs, m->type, group, m->payload, m->len);
}

/* ---- the timer ---- */

/* Keeps an outbound connection to every peer (so liveness = rpc's "connected"): a small
 * one-way message each second; rpc's own keepalive then notices a dead peer. */
static void ping_peers(cluster *cl)
{
    uint64_t now = io_now_ns(cl->io);
    if (now - cl->last_ping_ns < PING_NS) return;
    cl->last_ping_ns = now;
    uint8_t b = cl->stopping_announced ? 1 : 0;
    for (int32_t i = 0; i < cl->n_peers; i++)
        rpc_send(cl->rpc, cl->peers[i].id, CLUSTER_RPC_PING, &b, 1);
}

/* Arriving is its liveness; its byte says whether the sender is shutting down. */
static void ping_handler(rpc *r, void *ctx, const rpc_msg *m)
{
    (void)r;
    cluster *cl = ctx;
    bool stopping = m->len >= 1 && m->payload[0] == 1;
    for (int32_t k = 0; k < cl->n_peers; k++) {
        struct cl_peer *p = &cl->peers[k];
        if (p->id != m->from || p->stopping == stopping) continue;
        p->stopping = stopping;
        log_info("cluster", "node %" PRId32 " %s", m->from,
                 stopping ? "is shutting down: it is handed no leadership"
                          : "is no longer shutting down (restarted)");
        if (!cl->stopping) view_update(cl); /* at once: balancers read the view */
    }
}

void cluster_announce_stopping(void)
{
    cluster *cl = g_cluster;
    if (!cl || cl->stopping || cl->stopping_announced) return;
    cl->stopping_announced = true;
    cl->last_ping_ns = 0; /* the next ping_peers sends at once */
    ping_peers(cl);
    view_update(cl);
}

static void slow_step(cluster *cl)
{
    ping_peers(cl);
    if (cl->role == RAFT_LEADER && cl->leader_ready) {
        cl_ensure_consumer_offsets(cl);
        cl_consumer_offsets_rf(cl);
    }
    view_update(cl);
}

static void tick_fire(reactor_timer *t)
{
    cluster *cl = t->ctx;
    if (cl->stopping) return;
    uint64_t now = io_now_ns(cl->io);
    int rc = raft_replica_tick(cl->ctl);
    if (rc == AL_EFAILED && !cl->stopping) {
        log_error("cluster", "the controller replica failed (its log or hard state could not "
                  "be written); stopping: check the disk of %s", cl->cfg->data_directory);
        __atomic_store_n(&g_failed, 1, __ATOMIC_RELEASE);
        cl->stopping = true;
        reactor_stop(reactor_of(cl->rs));
        return;
    }
    apply_committed(cl);
    if (cl->stopping) return;
    ctl_maybe_snapshot(cl);
    if (cl->role == RAFT_LEADER && !cl->leader_ready &&
        raft_replica_commit(cl->ctl) >= cl->leader_from &&
        cl->st.applied_offset >= cl->leader_from)
        cl->leader_ready = true;
    if (cl->role == RAFT_LEADER && cl->leader_ready) {
        boot_propose(cl);
        membership_step(cl); /* each tick: one change at a time, the next once committed */
    }
    install_step(cl);
    join_step(cl);
    join_check(cl);
    waiters_run(cl, false);
    if (now - cl->last_slow_ns >= SLOW_NS) {
        cl->last_slow_ns = now;
        slow_step(cl);
    }
    reactor_timer_add(cl->rs, &cl->tick, now + CLUSTER_TICK_MS * 1000000ull, NULL);
}

/* ---- start and stop ---- */

static void rpc_stopped(void *arg)
{
    (void)arg;
}

static void cluster_stop(reactor_shard *self, void *arg)
{
    cluster *cl = arg;
    cl->stopping = true;
    reactor_timer_cancel(self, &cl->tick);
    /* No new partition sends, then wait for those in progress (they are short). */
    __atomic_store_n(&g_rpc, NULL, __ATOMIC_RELEASE);
    for (int i = 0; i < 1000000 && __atomic_load_n(&g_rpc_users, __ATOMIC_ACQUIRE); i++) {
    }
    if (cl->ctl) raft_replica_close(cl->ctl); /* fails waiters: their callbacks run now */
    cl->ctl = NULL;
    waiters_run(cl, true);
    if (cl->install_blob) { /* acks may still read them */
        g_install_orphan = cl->install_blob;
        g_install_cfg_orphan = cl->install_cfg;
    }
    g_cluster = NULL;
    rpc_stop(cl->rpc, rpc_stopped, NULL);
    controller_state_free(&cl->st);
    free(cl->rx);
    free(cl->rxbuf);
    free(cl->peers);
    free(cl);
}

static int scan_batch(void *arg, const uint8_t *batch, size_t size)
{
    controller_apply(arg, batch, size, NULL, NULL); /* damaged or not: only a hint */
    return 0;
}

/* Reads every batch of the controller log (committed or not) into a scratch state to learn
 * the peers' addresses and the cluster id before the commit index is known: a whole cluster
 * restarting must be able to reach its peers to elect a leader. */
static void scan_peers(cluster *cl)
{
    if (raft_replica_last_offset(cl->ctl) < 0) return;
    controller_state tmp;
    controller_state_init(&tmp);
    size_t slen = 0;
    const uint8_t *snap = raft_replica_snapshot_data(cl->ctl, &slen);
    if (snap && slen && controller_snapshot_decode(&tmp, snap, slen))
        log_warn("cluster", "the controller snapshot does not decode: peers from the log only");
    int rc = storage_log_scan_sync(raft_replica_log(cl->ctl),
                                   raft_replica_snapshot_offset(cl->ctl) + 1, 0, scan_batch, &tmp);
    if (rc < 0)
        log_warn("cluster", "scanning the controller log for peers: %s", al_strerror(rc));
    peers_update(cl, &tmp);
    if (tmp.has_cluster_id) {
        char text[64];
        uuid_text(tmp.cluster_id, text, sizeof(text));
        rpc_set_cluster_id(cl->rpc, text);
    }
    log_info("cluster", "controller log holds %" PRId32 " brokers (up to offset %" PRId64 ")",
             tmp.n_brokers, tmp.applied_offset);
    controller_state_free(&tmp);
}

static int open_controller(cluster *cl)
{
    raft_replica_config c;
    memset(&c, 0, sizeof(c));
    char dir[CONFIG_PATH_MAX + 32];
    snprintf(dir, sizeof(dir), "%s/controller", cl->cfg->data_directory);
    c.dir = dir;
    c.group = CLUSTER_GROUP_CONTROLLER;
    c.self = cl->self;
    if (cl->founder) {
        c.bootstrap.n_voters = 1;
        c.bootstrap.voters[0] = cl->self;
    }
    raft_options_default(&c.raft);
    c.raft.election_timeout_ms = CLUSTER_ELECTION_MS;
    c.raft.heartbeat_ms = CLUSTER_HEARTBEAT_MS;
    c.raft.seed = io_random(cl->io);
    storage_log_config_default(&c.log);
    c.log.segment_bytes = CONTROLLER_SEG;
    c.log.fallocate_step = CONTROLLER_FALLOC;
    c.log.retention_bytes = -1;
    c.log.retention_ms = -1;
    c.log.cleanup_policy = 0;
    c.log.max_message_bytes = 64u << 20;
    c.cb = (raft_replica_callbacks){ctl_send, ctl_on_commit, ctl_on_role, cl, ctl_on_snapshot};
    int rc = raft_replica_open(cl->io, &c, &cl->ctl);
    if (rc) {
        log_error("cluster", "cannot open the controller log in %s: %s (a corrupt controller "
                  "log: restore it from a healthy node, or wipe the directory and re-join)",
                  dir, al_strerror(rc));
        return rc;
    }
    /* a trimmed log: the state starts from its snapshot, the suffix is applied as usual */
    size_t slen = 0;
    const uint8_t *snap = raft_replica_snapshot_data(cl->ctl, &slen);
    if (snap && slen) {
        rc = controller_snapshot_decode(&cl->st, snap, slen);
        if (rc || cl->st.applied_offset != raft_replica_snapshot_offset(cl->ctl)) {
            log_error("cluster", "the controller snapshot in %s is unusable (%s): restore the "
                      "directory from a healthy node, or wipe it and re-join", dir,
                      rc ? al_strerror(rc) : "its applied offset is not the snapshot point");
            return rc ? rc : AL_ECORRUPT;
        }
        log_info("cluster", "controller state loaded from its snapshot at %" PRId64
                 " (%" PRId32 " brokers, %" PRId32 " topics)", cl->st.applied_offset,
                 cl->st.n_brokers, cl->st.topics.n);
    }
    const char *every = getenv("AILURUS_CONTROLLER_SNAPSHOT_EVERY");
    cl->snapshot_every = every && atoll(every) > 0 ? atoll(every) : CONTROLLER_SNAPSHOT_EVERY;
    return 0;
}

/* Fills the addresses and the seed list; decides whether we found the cluster. */
static int cl_config(cluster *cl, const struct cluster_start_opts *o)
{
    const al_config *cfg = o->cfg;
    cl->self = (int32_t)cfg->node_id;
    snprintf(cl->kafka_host, sizeof(cl->kafka_host), "%s", o->kafka_host);
    cl->kafka_port = o->kafka_port;
    snprintf(cl->rpc_host, sizeof(cl->rpc_host), "%s", cfg->advertised_rpc_addr.host);
    cl->rpc_port = cfg->advertised_rpc_addr.port;
    if (!cl->rpc_port || !cfg->rpc_addr.port) {
        log_error("cluster", "cluster mode needs a fixed rpc port: rpc_addr is %s:%u "
                  "(set --rpc-addr host:port, the same one the other nodes' seed_servers name)",
                  cfg->rpc_addr.host, cfg->rpc_addr.port);
        return AL_EINVAL;
    }
    int n = cluster_parse_seeds(cfg->seed_servers, cl->seed_hosts, cl->seed_ports,
                                CLUSTER_SEEDS_MAX);
    if (n <= 0) {
        log_error("cluster", "seed_servers '%s' is not a list of host:port (at most %d)",
                  cfg->seed_servers, CLUSTER_SEEDS_MAX);
        return AL_EINVAL;
    }
    cl->n_seeds = n;
    cl->founder = cl->seed_ports[0] == cl->rpc_port && !strcmp(cl->seed_hosts[0], cl->rpc_host);
    return 0;
}

int cluster_start(reactor_shard *self, const struct cluster_start_opts *o)
{
    AL_ASSERT(reactor_shard_index(self) == 0 && !g_cluster);
    cluster *cl = calloc(1, sizeof(*cl));
    if (!cl) return -ENOMEM;
    cl->rs = self;
    cl->io = reactor_io(self);
    cl->cfg = o->cfg;
    cl->smp = o->smp;
    cl->cid_buf = o->cluster_id;
    cl->cid_cap = o->cluster_id_cap;
    cl->on_ready = o->on_ready;
    cl->ready_arg = o->arg;
    cl->role = RAFT_FOLLOWER;
    cl->leader = -1;
    cl->join_offset = -1;
    cl->installed_offset = -1;
    cl->next_request_id = io_random(cl->io) << 20; /* unique across restarts */
    controller_state_init(&cl->st);
    reactor_timer_init(&cl->tick, tick_fire, cl);
    int rc = cl_config(cl, o);
    if (rc) goto fail;
    cl->rx = calloc(1, sizeof(*cl->rx));
    if (!cl->rx) {
        rc = -ENOMEM;
        goto fail;
    }
    char adv[CONTROLLER_HOST_MAX + 8];
    snprintf(adv, sizeof(adv), "%s:%u", cl->rpc_host, cl->rpc_port);
    struct rpc_opts ro = {.shard = self,
                          .node_id = cl->self,
                          .listen_host = o->cfg->rpc_addr.host,
                          .listen_port = o->cfg->rpc_addr.port,
                          .advertised_addr = adv};
    rc = rpc_create(&ro, &cl->rpc);
    if (rc) {
        log_error("cluster", "cannot listen for rpc on %s:%u: %s", o->cfg->rpc_addr.host,
                  o->cfg->rpc_addr.port, al_strerror(rc));
        goto fail;
    }
    rc = open_controller(cl);
    if (rc) goto fail;
    scan_peers(cl);
    rpc_handler_set(cl->rpc, RPC_T_RAFT, raft_handler, cl);
    rpc_handler_set(cl->rpc, RPC_T_RAFT_HB, raft_handler, cl);
    rpc_handler_set(cl->rpc, RPC_T_JOIN, join_handler, cl);
    rpc_handler_set(cl->rpc, RPC_T_CONTROLLER, cl_op_rpc_handler, cl);
    rpc_handler_set(cl->rpc, CLUSTER_RPC_PING, ping_handler, cl);
    cluster_groups_rpc(cl->rpc); /* producer-id blocks for the other nodes (leader's side) */
    rc = reactor_on_shutdown(self, cluster_stop, cl);
    if (rc) goto fail;
    g_cluster = cl;
    __atomic_store_n(&g_rpc, cl->rpc, __ATOMIC_RELEASE);
    view_update(cl);
    reactor_timer_add(self, &cl->tick, io_now_ns(cl->io) + CLUSTER_TICK_MS * 1000000ull, NULL);
    log_info("cluster", "node %" PRId32 ": rpc on %s:%u (advertised %s), seeds %s; %s",
             cl->self, o->cfg->rpc_addr.host, rpc_port(cl->rpc), adv, o->cfg->seed_servers,
             cl->founder ? "first seed: founds the cluster if its controller log is empty"
                         : "joining through the seeds");
    return 0;
fail:
    if (cl->ctl) raft_replica_close(cl->ctl);
    if (cl->rpc) rpc_stop(cl->rpc, rpc_stopped, NULL);
    controller_state_free(&cl->st);
    free(cl->rx);
    free(cl);
    return rc;
}
