/*
 * cluster_opsapi.c — cluster operations through the controller: command proposal (local on the
 * leader, else forwarded as CLUSTER_RPC_OPS), the admin endpoints and status views, and the
 * decommission driver (see cluster_opsapi.h).
 */
#include "cluster/cluster_opsapi.h"

#include "base/cursor.h"
#include "base/log.h"
#include "cluster/cluster_impl.h"
#include "cluster/cluster_reconfig.h"
#include "cluster/controller_place.h"
#include "cluster/partition_raft.h"
#include "kafka/errors.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OPS_CMDS_MAX CONTROLLER_CMDS_PER_BATCH

typedef void (*ops_done_fn)(void *ctx, int16_t kerr);

static void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static rpc *g_ops_rpc; /* the endpoint our handler is registered on (shard 0) */
static bool g_decom_busy;
static uint64_t g_decom_last_ns;
static bool g_swept;          /* the start-up sweep of moved-away copies ran */
static uint64_t g_joined_ns;  /* first tick that saw this node joined */

/* ---- proposing on the leader ---- */

struct ops_pend {
    cluster *cl;
    raft_replicate_req q;
    cl_waiter w;
    uint64_t req[OPS_CMDS_MAX];
    int32_t n;
    ops_done_fn done;
    void *ctx;
};

static void ops_applied(cl_waiter *w, bool timed_out)
{
    struct ops_pend *p = AL_CONTAINER_OF(w, struct ops_pend, w);
    int16_t kerr = 0;
    for (int32_t i = 0; i < p->n && !kerr; i++) {
        controller_result r;
        if (controller_result_find(&p->cl->st, p->cl->self, p->req[i], &r))
            kerr = r.error;
        else
            kerr = timed_out ? KAFKA_ERR_REQUEST_TIMED_OUT : KAFKA_ERR_UNKNOWN_SERVER_ERROR;
    }
    p->done(p->ctx, kerr);
    free(p);
}

static void ops_committed(raft_replicate_req *q)
{
    struct ops_pend *p = AL_CONTAINER_OF(q, struct ops_pend, q);
    if (q->res) {
        p->done(p->ctx, KAFKA_ERR_NOT_CONTROLLER);
        free(p);
        return;
    }
    p->w.offset = q->last_offset;
    p->w.deadline_ns = io_now_ns(p->cl->io) + CLUSTER_OPS_TIMEOUT_MS * 1000000ull;
    p->w.fn = ops_applied;
    cl_waiter_add(p->cl, &p->w);
}

/* On the leader: proposes cmds[0..n) (copied into the batch) and calls done once applied. */
static void ops_propose_local(cluster *cl, controller_cmd *cmds, int32_t n, ops_done_fn done,
                              void *ctx)
{
    if (n < 1 || n > OPS_CMDS_MAX) {
        done(ctx, KAFKA_ERR_INVALID_REQUEST);
        return;
    }
    struct ops_pend *p = calloc(1, sizeof(*p));
    if (!p) {
        done(ctx, KAFKA_ERR_UNKNOWN_SERVER_ERROR);
        return;
    }
    p->cl = cl;
    p->n = n;
    p->done = done;
    p->ctx = ctx;
    int64_t now = io_wall_ms(cl->io);
    for (int32_t i = 0; i < n; i++) {
        cmds[i].proposer = cl->self;
        cmds[i].request_id = p->req[i] = cl_request_id(cl);
        cmds[i].ts_ms = now;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = controller_batch_build(cmds, n, now, &buf, &len);
    if (!rc) {
        p->q.wait = RAFT_WAIT_COMMIT;
        p->q.cb = ops_committed;
        p->q.ctx = p;
        rc = raft_replicate(cl->ctl, buf, len, &p->q);
    }
    free(buf);
    if (rc == 0) return;
    free(p);
    done(ctx, rc == RAFT_ENOTLEADER ? KAFKA_ERR_NOT_CONTROLLER
                                    : rc == AL_EINVAL ? KAFKA_ERR_INVALID_REQUEST
                                                      : KAFKA_ERR_UNKNOWN_SERVER_ERROR);
}

/* ---- forwarding ---- */

struct ops_fwd {
    ops_done_fn done;
    void *ctx;
};

static void ops_fwd_cb(void *ctx, const rpc_result *res)
{
    struct ops_fwd *f = ctx;
    int16_t kerr = KAFKA_ERR_NOT_CONTROLLER;
    if (!res->err && res->len >= 2) kerr = (int16_t)al_be16(res->payload);
    f->done(f->ctx, kerr);
    free(f);
}

/* Encodes cmds into a malloc'd forward payload. 0, AL_EINVAL, -ENOMEM. */
static int ops_encode(const controller_cmd *cmds, int32_t n, uint8_t **out, size_t *len)
{
    size_t total = 4;
    for (int32_t i = 0; i < n; i++) total += 4 + controller_cmd_size(&cmds[i]);
    uint8_t *buf = malloc(total);
    if (!buf) return -ENOMEM;
    al_put_be32(buf, (uint32_t)n);
    size_t at = 4;
    for (int32_t i = 0; i < n; i++) {
        int64_t w = controller_cmd_encode(&cmds[i], buf + at + 4, total - at - 4);
        if (w < 0) {
            free(buf);
            return AL_EINVAL;
        }
        al_put_be32(buf + at, (uint32_t)w);
        at += 4 + (size_t)w;
    }
    *out = buf;
    *len = at;
    return 0;
}

/* Runs cmds through the controller: locally on the leader, else forwarded to it. done runs
 * exactly once (maybe before this returns). */
static void ops_submit(controller_cmd *cmds, int32_t n, ops_done_fn done, void *ctx)
{
    cluster *cl = g_cluster;
    if (!cl || cl->stopping) {
        done(ctx, KAFKA_ERR_NOT_CONTROLLER);
        return;
    }
    if (cl_can_propose(cl)) {
        ops_propose_local(cl, cmds, n, done, ctx);
        return;
    }
    if (cl->leader < 0 || cl->leader == cl->self || !cl->rpc) {
        done(ctx, KAFKA_ERR_NOT_CONTROLLER);
        return;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    struct ops_fwd *f = malloc(sizeof(*f));
    int rc = f ? ops_encode(cmds, n, &buf, &len) : -ENOMEM;
    if (!rc) {
        f->done = done;
        f->ctx = ctx;
        rc = rpc_call(cl->rpc, cl->leader, CLUSTER_RPC_OPS, buf, len, CLUSTER_OPS_TIMEOUT_MS,
                      ops_fwd_cb, f);
    }
    free(buf);
    if (rc == 0) return;
    free(f);
    done(ctx, rc == AL_EINVAL ? KAFKA_ERR_INVALID_REQUEST : KAFKA_ERR_NOT_CONTROLLER);
}

/* The leader's side of a forwarded batch. */
static void ops_rpc_done(void *ctx, int16_t kerr)
{
    rpc_token *tok = ctx;
    uint8_t out[2];
    put_be16(out, (uint16_t)kerr);
    if (g_ops_rpc) rpc_reply(g_ops_rpc, *tok, out, sizeof(out));
    free(tok);
}

static void ops_rpc_handler(rpc *r, void *ctx, const rpc_msg *m)
{
    cluster *cl = ctx;
    if (!m->is_call) return;
    controller_cmd *cmds = NULL;
    int32_t n = 0;
    int err = m->len >= 4 ? 0 : AL_ETRUNCATED;
    uint32_t count = err ? 0 : al_be32(m->payload);
    if (!err && (count < 1 || count > OPS_CMDS_MAX)) err = AL_EMALFORMED;
    if (!err) {
        cmds = calloc(count, sizeof(*cmds));
        if (!cmds) err = -ENOMEM;
    }
    size_t at = 4;
    for (uint32_t i = 0; !err && i < count; i++) {
        if (m->len - at < 4) {
            err = AL_ETRUNCATED;
            break;
        }
        uint32_t l = al_be32(m->payload + at);
        at += 4;
        if (l > m->len - at) {
            err = AL_ETRUNCATED;
            break;
        }
        err = controller_cmd_decode(m->payload + at, l, &cmds[i]);
        n = (int32_t)i + 1;
        at += l;
    }
    rpc_token *tok = err ? NULL : malloc(sizeof(*tok));
    if (!err && !tok) err = -ENOMEM;
    if (err) {
        rpc_reply_error(r, m->token, err, "malformed cluster operation");
    } else if (!cl_can_propose(cl)) {
        uint8_t out[2];
        put_be16(out, (uint16_t)KAFKA_ERR_NOT_CONTROLLER);
        rpc_reply(r, m->token, out, sizeof(out));
        free(tok);
    } else {
        *tok = m->token;
        ops_propose_local(cl, cmds, (int32_t)count, ops_rpc_done, tok);
    }
    for (int32_t i = 0; i < n; i++) controller_cmd_free(&cmds[i]);
    free(cmds);
}

/* ---- HTTP plumbing ---- */

/* Not in cluster mode (or not started): answers 400 and returns true. */
static bool not_cluster(http_request *req)
{
    cluster *cl = g_cluster;
    if (cl && cl->joined) return false;
    http_respond_error(req, 400, "not a cluster member (start the node with --seed-servers and "
                                 "wait until it joined)");
    return true;
}

static void http_done(void *ctx, int16_t kerr)
{
    http_request *req = ctx;
    if (!kerr) {
        http_respond_json(req, 200, json_pack("{s:b}", "accepted", 1));
        return;
    }
    int status = kerr == KAFKA_ERR_NOT_CONTROLLER || kerr == KAFKA_ERR_REQUEST_TIMED_OUT ? 503
                                                                                     : 400;
    http_respond_error(req, status, "the controller refused the operation: %s (%s)%s",
                       kafka_err_name(kerr), kafka_err_message(kerr),
                       status == 503 ? " - retry in a moment" : "");
}

/* Parses req's {id} parameter (the first). */
static bool param_node(http_request *req, uint32_t idx, int32_t *out)
{
    char *end = NULL;
    long v = idx < req->nparams ? strtol(req->params[idx], &end, 10) : -1;
    if (!end || *end || v < 0 || v > INT32_MAX) {
        http_respond_error(req, 400, "node id must be a non-negative integer");
        return false;
    }
    *out = (int32_t)v;
    return true;
}

static void submit_node_cmd(http_request *req, uint8_t type, bool flag)
{
    if (not_cluster(req)) return;
    int32_t id;
    if (!param_node(req, 0, &id)) return;
    if (!controller_broker_find(&g_cluster->st, id)) {
        http_respond_error(req, 404, "no broker with id %" PRId32 " in the cluster", id);
        return;
    }
    controller_cmd c = {.type = type, .node_id = id, .flag = flag};
    ops_submit(&c, 1, http_done, req);
}

/* ---- counting what a node still has ---- */

/* Partitions listing node in the state; leaders it holds per the leadership table; groups
 * whose ISR still lists it while it is not assigned (a move not finished). */
static void node_counts(const cluster *cl, int32_t node, int32_t *replicas, int32_t *leaders,
                        int32_t *lingering)
{
    *replicas = *leaders = *lingering = 0;
    for (int32_t i = 0; i < cl->st.topics.n; i++) {
        const topic *t = topic_table_at(&cl->st.topics, i);
        for (int32_t p = 0; t->assign && p < t->partitions; p++) {
            bool has = false;
            for (int r = 0; r < t->assign[p].n; r++) has |= t->assign[p].nodes[r] == node;
            *replicas += has;
            ldr_entry e;
            if (!pr_leader_lookup(cluster_group_id(t->id, p), &e)) continue;
            *leaders += e.leader == node;
            if (has) continue;
            for (int k = 0; k < e.n_isr; k++) *lingering += e.isr[k] == node;
        }
    }
}

static const char *membership_name(uint8_t m)
{
    switch (m) {
    case CONTROLLER_NODE_ACTIVE: return "active";
    case CONTROLLER_NODE_DRAINING: return "draining";
    case CONTROLLER_NODE_DECOMMISSIONING: return "decommissioning";
    case CONTROLLER_NODE_REMOVED: return "removed";
    }
    return "unknown";
}

/* ---- endpoints ---- */

void cluster_opsapi_maintenance_put(http_request *req, void *ctx)
{
    (void)ctx;
    submit_node_cmd(req, CONTROLLER_CMD_SET_MAINTENANCE, true);
}

void cluster_opsapi_maintenance_delete(http_request *req, void *ctx)
{
    (void)ctx;
    submit_node_cmd(req, CONTROLLER_CMD_SET_MAINTENANCE, false);
}

void cluster_opsapi_decommission_put(http_request *req, void *ctx)
{
    (void)ctx;
    submit_node_cmd(req, CONTROLLER_CMD_DECOMMISSION_NODE, false);
}

void cluster_opsapi_recommission_put(http_request *req, void *ctx)
{
    (void)ctx;
    submit_node_cmd(req, CONTROLLER_CMD_RECOMMISSION_NODE, false);
}

static void node_status(http_request *req, bool decom)
{
    if (not_cluster(req)) return;
    int32_t id;
    if (!param_node(req, 0, &id)) return;
    cluster *cl = g_cluster;
    const controller_broker *b = controller_broker_find(&cl->st, id);
    if (!b) {
        http_respond_error(req, 404, "no broker with id %" PRId32 " in the cluster", id);
        return;
    }
    int32_t replicas, leaders, lingering;
    node_counts(cl, id, &replicas, &leaders, &lingering);
    json_t *o;
    if (decom)
        o = json_pack("{s:i, s:s, s:i, s:i, s:b}", "node_id", (int)id, "status",
                      membership_name(b->membership), "replicas_left", (int)replicas,
                      "moves_in_progress", (int)lingering, "finished",
                      b->membership == CONTROLLER_NODE_REMOVED);
    else
        o = json_pack("{s:i, s:b, s:s, s:i, s:i, s:b}", "node_id", (int)id, "draining",
                      b->membership == CONTROLLER_NODE_DRAINING, "status",
                      membership_name(b->membership), "leaders", (int)leaders, "replicas",
                      (int)replicas, "finished",
                      b->membership == CONTROLLER_NODE_DRAINING && leaders == 0);
    http_respond_json(req, 200, o);
}

void cluster_opsapi_maintenance_get(http_request *req, void *ctx)
{
    (void)ctx;
    node_status(req, false);
}

void cluster_opsapi_decommission_get(http_request *req, void *ctx)
{
    (void)ctx;
    node_status(req, true);
}

void cluster_opsapi_move(http_request *req, void *ctx)
{
    (void)ctx;
    if (not_cluster(req)) return;
    cluster *cl = g_cluster;
    const char *name = req->params[1];
    char *end = NULL;
    long part = strtol(req->params[2], &end, 10);
    const topic *t = topic_table_find(&cl->st.topics, name, strlen(name));
    if (!t || !end || *end || part < 0 || part >= t->partitions || !t->assign) {
        http_respond_error(req, 404, "no partition %s/%s in the cluster", name, req->params[2]);
        return;
    }
    json_error_t jerr;
    json_t *body = json_loadb(req->body, req->body_len, 0, &jerr);
    size_t n = json_is_array(body) ? json_array_size(body) : 0;
    if (n < 1 || n > TOPIC_REPLICAS_MAX) {
        json_decref(body);
        http_respond_error(req, 400, "body must be a JSON array of 1..%d replicas "
                                     "[{\"node_id\": N, \"core\": C}, ...]", TOPIC_REPLICAS_MAX);
        return;
    }
    const topic_assignment *cur = &t->assign[part];
    topic_assignment a = {.n = (int16_t)n};
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(body, i);
        json_t *jn = json_object_get(e, "node_id"), *jc = json_object_get(e, "core");
        const controller_broker *b = json_is_integer(jn)
                                         ? controller_broker_find(&cl->st,
                                                                  (int32_t)json_integer_value(jn))
                                         : NULL;
        if (!b) {
            json_decref(body);
            http_respond_error(req, 400, "replica %zu: node_id missing or not a broker", i);
            return;
        }
        a.nodes[i] = b->node_id;
        int64_t core = -1;
        if (json_is_integer(jc)) core = json_integer_value(jc);
        for (int k = 0; core < 0 && k < cur->n; k++)
            if (cur->nodes[k] == b->node_id) core = cur->shards[k]; /* stays where it is */
        if (core < 0) core = part % (long)AL_MAX(b->cores, 1u);
        if (core >= (int64_t)AL_MAX(b->cores, 1u)) {
            json_decref(body);
            http_respond_error(req, 400, "replica %zu: node %" PRId32 " has %u cores", i,
                               b->node_id, b->cores);
            return;
        }
        a.shards[i] = (uint16_t)core;
    }
    json_decref(body);
    controller_cmd c = {.type = CONTROLLER_CMD_MOVE_PARTITION, .partition = (int32_t)part,
                        .assign = &a, .n_assign = 1};
    snprintf(c.name, sizeof(c.name), "%s", t->name);
    ops_submit(&c, 1, http_done, req);
}

void cluster_opsapi_reconfigurations(http_request *req, void *ctx)
{
    (void)ctx;
    if (not_cluster(req)) return;
    cluster *cl = g_cluster;
    json_t *arr = json_array();
    for (int32_t i = 0; i < cl->st.topics.n; i++) {
        const topic *t = topic_table_at(&cl->st.topics, i);
        for (int32_t p = 0; t->assign && p < t->partitions; p++) {
            const topic_assignment *a = &t->assign[p];
            ldr_entry e;
            bool known = pr_leader_lookup(cluster_group_id(t->id, p), &e);
            /* moving: the leader or an in-sync voter is not in the assignment (the leader
             * adds and promotes the new replicas before it removes the old ones, so that
             * holds until the last step); a replica merely down or lagging is not listed */
            bool moving = false;
            for (int k = -1; known && k < e.n_isr; k++) {
                int32_t id = k < 0 ? e.leader : e.isr[k];
                if (id < 0) continue;
                bool assigned = false;
                for (int r = 0; r < a->n; r++) assigned |= a->nodes[r] == id;
                moving |= !assigned;
            }
            if (!moving) continue;
            json_t *target = json_array(), *isr = json_array();
            for (int r = 0; r < a->n; r++)
                json_array_append_new(target, json_pack("{s:i, s:i}", "node_id",
                                                        (int)a->nodes[r], "core",
                                                        (int)a->shards[r]));
            for (int k = 0; known && k < e.n_isr; k++)
                json_array_append_new(isr, json_integer(e.isr[k]));
            json_array_append_new(arr, json_pack("{s:s, s:s, s:i, s:o, s:i, s:o}", "ns", "kafka",
                                                 "topic", t->name, "partition", (int)p,
                                                 "target_replicas", target, "leader",
                                                 known ? (int)e.leader : -1, "in_sync", isr));
        }
    }
    http_respond_json(req, 200, arr);
}

/* Proposes moves[0..n) in batches of CLUSTER_OPS_MOVES_MAX (the first batch only: the rest
 * follow on the next call, the plan being recomputed from the new state). */
static void propose_moves(const controller_move *moves, int32_t n, ops_done_fn done, void *ctx)
{
    n = AL_MIN(n, CLUSTER_OPS_MOVES_MAX);
    controller_cmd *cmds = calloc((size_t)AL_MAX(n, 1), sizeof(*cmds));
    if (!cmds) {
        done(ctx, KAFKA_ERR_UNKNOWN_SERVER_ERROR);
        return;
    }
    for (int32_t i = 0; i < n; i++) {
        cmds[i].type = CONTROLLER_CMD_MOVE_PARTITION;
        snprintf(cmds[i].name, sizeof(cmds[i].name), "%s", moves[i].topic);
        cmds[i].partition = moves[i].partition;
        cmds[i].assign = (topic_assignment *)&moves[i].to;
        cmds[i].n_assign = 1;
    }
    ops_submit(cmds, n, done, ctx);
    free(cmds);
}

struct rebalance_req {
    http_request *req;
    int32_t n;
};

static void rebalance_done(void *ctx, int16_t kerr)
{
    struct rebalance_req *r = ctx;
    if (kerr)
        http_done(r->req, kerr);
    else
        http_respond_json(r->req, 200, json_pack("{s:i}", "moves", (int)r->n));
    free(r);
}

void cluster_opsapi_rebalance(http_request *req, void *ctx)
{
    (void)ctx;
    if (not_cluster(req)) return;
    controller_move *moves = NULL;
    int32_t n = 0;
    int rc = controller_balance_plan(&g_cluster->st, CLUSTER_OPS_MOVES_MAX, &moves, &n);
    if (rc) {
        http_respond_error(req, 500, "cannot compute a balance plan: %s", al_strerror(rc));
        return;
    }
    if (n == 0) {
        http_respond_json(req, 200, json_pack("{s:i}", "moves", 0));
        return;
    }
    struct rebalance_req *r = malloc(sizeof(*r));
    if (!r) {
        free(moves);
        http_respond_error(req, 500, "out of memory");
        return;
    }
    r->req = req;
    r->n = AL_MIN(n, CLUSTER_OPS_MOVES_MAX);
    propose_moves(moves, n, rebalance_done, r);
    free(moves);
}

void cluster_opsapi_balancer_get(http_request *req, void *ctx)
{
    (void)ctx;
    http_respond_json(req, 200, json_pack("{s:b, s:i}", "enabled", cluster_reconfig_balancer(),
                                          "interval_ms", CR_BALANCE_MS));
}

void cluster_opsapi_balancer_put(http_request *req, void *ctx)
{
    (void)ctx;
    json_error_t jerr;
    json_t *body = json_loadb(req->body, req->body_len, 0, &jerr);
    json_t *en = json_object_get(body, "enabled");
    if (!json_is_boolean(en)) {
        json_decref(body);
        http_respond_error(req, 400, "body must be {\"enabled\": true|false}");
        return;
    }
    cluster_reconfig_set_balancer(json_is_true(en));
    json_decref(body);
    cluster_opsapi_balancer_get(req, ctx);
}

/* ---- decommission driver (controller leader) ---- */

static void decom_done(void *ctx, int16_t kerr)
{
    (void)ctx;
    g_decom_busy = false;
    if (kerr && kerr != KAFKA_ERR_NOT_CONTROLLER)
        log_warn("cluster", "decommission step refused by the controller: %s",
                 kafka_err_name(kerr));
}

static void decom_step(cluster *cl)
{
    for (int32_t i = 0; i < cl->st.n_brokers; i++) {
        const controller_broker *b = &cl->st.brokers[i];
        if (b->membership != CONTROLLER_NODE_DECOMMISSIONING) continue;
        int32_t replicas, leaders, lingering;
        node_counts(cl, b->node_id, &replicas, &leaders, &lingering);
        if (replicas > 0) {
            controller_move *moves = NULL;
            int32_t n = 0, stuck = 0;
            if (controller_decommission_plan(&cl->st, b->node_id, &moves, &n, &stuck)) return;
            if (n > 0) {
                log_info("cluster", "decommission of node %" PRId32 ": moving %" PRId32
                         " partitions (%" PRId32 " cannot be placed yet)", b->node_id, n, stuck);
                g_decom_busy = true;
                propose_moves(moves, n, decom_done, NULL);
            } else if (stuck) {
                log_warn("cluster", "decommission of node %" PRId32 ": %" PRId32 " replicas have "
                         "no node to go to: add a node or recommission", b->node_id, stuck);
            }
            free(moves);
            return;
        }
        if (leaders > 0 || lingering > 0) continue; /* moves still running */
        log_info("cluster", "decommission of node %" PRId32 ": empty, removing it", b->node_id);
        controller_cmd c = {.type = CONTROLLER_CMD_REMOVE_NODE, .node_id = b->node_id};
        g_decom_busy = true;
        ops_submit(&c, 1, decom_done, NULL);
        return;
    }
}

void cluster_opsapi_tick(uint64_t now_ns)
{
    cluster *cl = g_cluster;
    if (!cl || cl->stopping || !cl->rpc) return;
    if (g_ops_rpc != cl->rpc) {
        if (rpc_handler_set(cl->rpc, CLUSTER_RPC_OPS, ops_rpc_handler, cl) == 0)
            g_ops_rpc = cl->rpc;
    }
    if (!g_swept && cl->joined) {
        /* once, 5 s after joining: copies of partitions moved away while we were down */
        if (!g_joined_ns) g_joined_ns = now_ns;
        data_shard *ds = data_shard_self();
        if (now_ns - g_joined_ns >= CLUSTER_OPS_SWEEP_MS * 1000000ull && ds) {
            g_swept = true;
            if (!cluster_reconfig_kept_any() && cl->smp == 1)
                pm_sweep_unassigned(&ds->pm, &ds->topics);
        }
    }
    if (g_decom_busy || !cl_can_propose(cl)) return;
    /* a removed node leaves the controller group too (cluster.c then promotes a learner) */
    const raft_config *m = raft_replica_membership(cl->ctl);
    for (int32_t i = 0; m && i < cl->st.n_brokers; i++) {
        const controller_broker *b = &cl->st.brokers[i];
        if (b->membership != CONTROLLER_NODE_REMOVED ||
            (!raft_config_is_voter(m, b->node_id) && !raft_config_is_learner(m, b->node_id)))
            continue;
        int rc = raft_replica_change_membership(cl->ctl, RAFT_CONF_REMOVE, b->node_id);
        if (rc == 0)
            log_info("cluster", "controller group: removed node %" PRId32 " leaves it",
                     b->node_id);
        return;
    }
    if (now_ns - g_decom_last_ns < CLUSTER_OPS_DECOM_MS * 1000000ull) return;
    g_decom_last_ns = now_ns;
    decom_step(cl);
}
