/*
 * cluster_ops.c — topic administration through the controller (cluster.h): a topic op
 * (data_plane.h: create, delete, add partitions, replace/alter configs) submitted on any shard
 * goes to shard 0; on the controller leader it becomes controller commands (placement, a fresh
 * topic id, ...) proposed to group 0 in one batch, and completes with the per-command results
 * once they are applied and the new topic table is on every shard. On another node the op is
 * forwarded to the leader (RPC_T_CONTROLLER) and completes when this node has applied the
 * leader's last command too (bounded wait). No leader known: NOT_CONTROLLER (retriable).
 */
#include "cluster/cluster_impl.h"

#include "base/cursor.h"
#include "base/log.h"
#include "cluster/controller_place.h"
#include "kafka/errors.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#define FORWARD_TIMEOUT_MS 15000
#define FORWARD_APPLY_NS   (5000 * 1000000ull) /* wait for our own apply after the leader's */
#define TOPIC_ID_TRIES     64
#define DEFAULT_RF         3

int cl_item_err(int16_t kerr)
{
    switch (kerr) {
    case 0: return 0;
    case KAFKA_ERR_TOPIC_ALREADY_EXISTS: return AL_EEXISTS;
    case KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION: return AL_ENOTFOUND;
    default: return kafka_err_to_internal(kerr);
    }
}

static void op_fail_all(struct data_topic_op *op, int err)
{
    for (int32_t i = 0; i < op->n; i++)
        if (!op->items[i].err) op->items[i].err = err;
}

/* ---- building commands on the leader ---- */

/* What one op's proposal owns until its batch is built. */
struct build {
    controller_cmd *cmds;
    topic_assignment **assign;     /* per command, malloc'd or NULL */
    topic_config_kv **kv;          /* per command (SET_CONFIGS sets), or NULL */
    char (**removes)[TOPIC_CONFIG_KEY_MAX];
    int32_t n;
};

static void build_free(struct build *b, int32_t cap)
{
    for (int32_t i = 0; i < cap; i++) {
        if (b->assign) free(b->assign[i]);
        if (b->kv) free(b->kv[i]);
        if (b->removes) free(b->removes[i]);
    }
    free(b->cmds);
    free(b->assign);
    free(b->kv);
    free(b->removes);
}

/* A fresh topic id (UUID v4 bits) that shares no group ids with an existing topic. */
static int draw_topic_id(cluster *cl, uint8_t id[16])
{
    for (int t = 0; t < TOPIC_ID_TRIES; t++) {
        al_put_be64(id, io_random(cl->io));
        al_put_be64(id + 8, io_random(cl->io));
        id[6] = (uint8_t)((id[6] & 0x0f) | 0x40);
        id[8] = (uint8_t)((id[8] & 0x3f) | 0x80);
        if (!cluster_topic_id_collides(&cl->st.topics, id) &&
            !topic_table_find_id(&cl->st.topics, id))
            return 0;
    }
    return AL_EEXISTS;
}

/* Places n partitions with rf replicas into *out (malloc'd). 0 or an item error. */
static int place(cluster *cl, int32_t n, int16_t rf, topic_assignment **out)
{
    *out = NULL;
    if (n < 1 || n > TOPIC_PARTITIONS_MAX)
        return kafka_err_to_internal(KAFKA_ERR_INVALID_PARTITIONS);
    topic_assignment *a = calloc((size_t)n, sizeof(*a));
    if (!a) return -ENOMEM;
    int rc = controller_place(&cl->st, n, rf, a);
    if (rc) {
        free(a);
        return rc == -ENOMEM ? rc : kafka_err_to_internal(controller_place_kafka_error(rc));
    }
    *out = a;
    return 0;
}

/*
 * Fills command k of b with one item of cluster-configuration changes (SET_CLUSTER_CONFIG:
 * config-table key names; del[j] removes the override). Every key must exist and every value
 * parse (checked on a scratch configuration: what a node's own start-up sources make of it is
 * its business, config_with_overrides). Returns 0, AL_ENOTFOUND / AL_EINVAL, -ENOMEM.
 */
static int build_cluster_config(struct data_topic_item *it, struct build *b, int32_t k)
{
    controller_cmd *c = &b->cmds[k];
    int32_t n = AL_MAX(it->n_configs, 0);
    if (n > CONTROLLER_CMD_CONFIGS_MAX) return AL_EINVAL;
    b->kv[k] = calloc((size_t)AL_MAX(n, 1), sizeof(topic_config_kv));
    b->removes[k] = calloc((size_t)AL_MAX(n, 1), TOPIC_CONFIG_KEY_MAX);
    al_config *scratch = malloc(sizeof(*scratch));
    int err = b->kv[k] && b->removes[k] && scratch ? 0 : -ENOMEM;
    if (scratch) config_init(scratch);
    c->type = CONTROLLER_CMD_SET_CLUSTER_CONFIG;
    for (int32_t j = 0; j < n && !err; j++) {
        const struct config_key *key = config_find(it->configs[j].key);
        if (!key) {
            err = AL_ENOTFOUND;
        } else if (it->del && it->del[j]) {
            snprintf(b->removes[k][c->n_removes++], TOPIC_CONFIG_KEY_MAX, "%s", key->name);
        } else {
            err = config_set(scratch, key->name, it->configs[j].value, CONFIG_SRC_ADMIN, NULL,
                             0);
            topic_config_kv *kv = &b->kv[k][c->n_configs++];
            snprintf(kv->key, sizeof(kv->key), "%s", key->name);
            snprintf(kv->value, sizeof(kv->value), "%s", it->configs[j].value);
        }
    }
    free(scratch);
    c->configs = b->kv[k];
    c->removes = b->removes[k];
    return err;
}

/* Fills command c (index k of b) for item it; returns 0 or the item's error. */
static int build_item(cluster *cl, enum data_topic_op_kind kind, struct data_topic_item *it,
                      struct build *b, int32_t k)
{
    controller_cmd *c = &b->cmds[k];
    snprintf(c->name, sizeof(c->name), "%s", it->name);
    const topic *t = topic_table_find(&cl->st.topics, it->name, strlen(it->name));
    switch (kind) {
    case DATA_OP_CREATE: {
        if (t) return AL_EEXISTS;
        int16_t rf = controller_effective_rf(&cl->st, it->replication_factor, DEFAULT_RF);
        int err = place(cl, it->partitions, rf, &b->assign[k]);
        if (!err) err = draw_topic_id(cl, c->topic_id);
        if (err) return err;
        c->type = CONTROLLER_CMD_CREATE_TOPIC;
        c->partitions = it->partitions;
        c->replication_factor = rf;
        c->internal = !strcmp(it->name, TOPIC_CONSUMER_OFFSETS); /* only we create it */
        c->configs = (topic_config_kv *)it->configs;
        c->n_configs = it->n_configs;
        c->assign = b->assign[k];
        c->n_assign = it->partitions;
        it->replication_factor = rf;
        memcpy(it->id, c->topic_id, 16);
        return 0;
    }
    case DATA_OP_DELETE:
        if (!t) return AL_ENOTFOUND;
        if (t->internal) return AL_EINVAL;
        c->type = CONTROLLER_CMD_DELETE_TOPIC;
        memcpy(c->topic_id, t->id, 16);
        return 0;
    case DATA_OP_ADD_PARTITIONS: {
        if (!t) return AL_ENOTFOUND;
        if (it->partitions <= t->partitions || it->partitions > TOPIC_PARTITIONS_MAX)
            return AL_EINVAL;
        int err = place(cl, it->partitions - t->partitions, t->replication_factor,
                        &b->assign[k]);
        if (err) return err;
        c->type = CONTROLLER_CMD_CREATE_PARTITIONS;
        c->partitions = it->partitions;
        c->assign = b->assign[k];
        c->n_assign = it->partitions - t->partitions;
        return 0;
    }
    case DATA_OP_REPLACE_CONFIGS:
        if (!t) return AL_ENOTFOUND;
        c->type = CONTROLLER_CMD_REPLACE_TOPIC_CONFIGS;
        c->configs = (topic_config_kv *)it->configs;
        c->n_configs = it->n_configs;
        return 0;
    case DATA_OP_SET_CONFIGS: {
        if (!t) return AL_ENOTFOUND;
        int32_t n = AL_MAX(it->n_configs, 0);
        b->kv[k] = calloc((size_t)AL_MAX(n, 1), sizeof(topic_config_kv));
        b->removes[k] = calloc((size_t)AL_MAX(n, 1), TOPIC_CONFIG_KEY_MAX);
        if (!b->kv[k] || !b->removes[k]) return -ENOMEM;
        c->type = CONTROLLER_CMD_ALTER_TOPIC_CONFIGS;
        for (int32_t i = 0; i < n; i++) {
            if (it->del && it->del[i])
                memcpy(b->removes[k][c->n_removes++], it->configs[i].key, TOPIC_CONFIG_KEY_MAX);
            else
                b->kv[k][c->n_configs++] = it->configs[i];
        }
        c->configs = b->kv[k];
        c->removes = b->removes[k];
        return 0;
    }
    case DATA_OP_CLUSTER_CONFIG: return build_cluster_config(it, b, k);
    }
    return AL_EINVAL;
}

/* ---- running an op on the leader ---- */

struct pend {
    cluster *cl;
    raft_replicate_req q;
    cl_waiter w;
    struct data_topic_op *op;
    cl_op_finish_fn finish;
    int32_t *cmd_of;  /* per item: index of its command, -1 */
    uint64_t *req_id; /* per command */
};

static void pend_free(struct pend *p)
{
    free(p->cmd_of);
    free(p->req_id);
    free(p);
}

static void pend_applied(cl_waiter *w, bool timed_out)
{
    struct pend *p = AL_CONTAINER_OF(w, struct pend, w);
    cluster *cl = p->cl;
    for (int32_t i = 0; i < p->op->n; i++) {
        int32_t k = p->cmd_of[i];
        if (k < 0) continue;
        controller_result r;
        if (controller_result_find(&cl->st, cl->self, p->req_id[k], &r))
            p->op->items[i].err = cl_item_err(r.error);
        else
            p->op->items[i].err = kafka_err_to_internal(
                timed_out ? KAFKA_ERR_NOT_CONTROLLER : KAFKA_ERR_UNKNOWN_SERVER_ERROR);
    }
    p->finish(cl, p->op, w->offset);
    pend_free(p);
}

static void pend_committed(raft_replicate_req *q)
{
    struct pend *p = AL_CONTAINER_OF(q, struct pend, q);
    cluster *cl = p->cl;
    if (q->res) {
        for (int32_t i = 0; i < p->op->n; i++)
            if (p->cmd_of[i] >= 0)
                p->op->items[i].err = kafka_err_to_internal(KAFKA_ERR_NOT_CONTROLLER);
        p->finish(cl, p->op, cl->st.applied_offset);
        pend_free(p);
        return;
    }
    p->w.offset = q->last_offset;
    p->w.deadline_ns = 0;
    p->w.fn = pend_applied;
    cl_waiter_add(cl, &p->w);
}

/* Proposes b's commands for p. 0, or an error for the items with commands. */
static int pend_propose(cluster *cl, struct pend *p, struct build *b)
{
    int64_t now = io_wall_ms(cl->io);
    for (int32_t k = 0; k < b->n; k++) {
        b->cmds[k].proposer = cl->self;
        b->cmds[k].request_id = p->req_id[k] = cl_request_id(cl);
        b->cmds[k].ts_ms = now;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = controller_batch_build(b->cmds, b->n, now, &buf, &len);
    if (rc) return rc;
    p->q.wait = RAFT_WAIT_COMMIT;
    p->q.cb = pend_committed;
    p->q.ctx = p;
    rc = raft_replicate(cl->ctl, buf, len, &p->q);
    free(buf);
    if (rc == RAFT_ENOTLEADER) return kafka_err_to_internal(KAFKA_ERR_NOT_CONTROLLER);
    return rc < 0 ? rc : 0;
}

void cl_op_run_local(cluster *cl, struct data_topic_op *op, cl_op_finish_fn finish)
{
    int32_t n = AL_MAX(op->n, 0);
    for (int32_t i = 0; i < n; i++) op->items[i].err = 0;
    if (!cl_can_propose(cl)) {
        op_fail_all(op, kafka_err_to_internal(KAFKA_ERR_NOT_CONTROLLER));
        finish(cl, op, cl->st.applied_offset);
        return;
    }
    struct pend *p = calloc(1, sizeof(*p));
    struct build b = {0};
    size_t m = (size_t)AL_MAX(n, 1);
    b.cmds = calloc(m, sizeof(*b.cmds));
    b.assign = calloc(m, sizeof(*b.assign));
    b.kv = calloc(m, sizeof(*b.kv));
    b.removes = calloc(m, sizeof(*b.removes));
    if (p) {
        p->cmd_of = calloc(m, sizeof(*p->cmd_of));
        p->req_id = calloc(m, sizeof(*p->req_id));
    }
    if (!p || !p->cmd_of || !p->req_id || !b.cmds || !b.assign || !b.kv || !b.removes) {
        op_fail_all(op, -ENOMEM);
        build_free(&b, 0);
        if (p) pend_free(p);
        finish(cl, op, cl->st.applied_offset);
        return;
    }
    p->cl = cl;
    p->op = op;
    p->finish = finish;
    for (int32_t i = 0; i < n; i++) {
        p->cmd_of[i] = -1;
        int err = build_item(cl, op->kind, &op->items[i], &b, b.n);
        if (err) {
            op->items[i].err = err;
            memset(&b.cmds[b.n], 0, sizeof(b.cmds[b.n]));
            continue;
        }
        p->cmd_of[i] = b.n++;
    }
    int err = b.n ? pend_propose(cl, p, &b) : 0;
    build_free(&b, n);
    if (b.n && !err) return; /* pend_committed runs */
    if (err)
        for (int32_t i = 0; i < n; i++)
            if (p->cmd_of[i] >= 0) op->items[i].err = err;
    finish(cl, op, cl->st.applied_offset);
    pend_free(p);
}

/* ---- __consumer_offsets ---- */

struct co_op_block {
    struct data_topic_op op; /* first: free(op) frees the block */
    struct data_topic_item item;
    topic_config_kv kv[2];
};

struct data_topic_op *cluster_consumer_offsets_op(void)
{
    struct co_op_block *o = calloc(1, sizeof(*o));
    if (!o) return NULL;
    snprintf(o->kv[0].key, sizeof(o->kv[0].key), "cleanup.policy");
    snprintf(o->kv[0].value, sizeof(o->kv[0].value), "compact");
    snprintf(o->kv[1].key, sizeof(o->kv[1].key), "segment.bytes");
    snprintf(o->kv[1].value, sizeof(o->kv[1].value), "104857600");
    o->op.kind = DATA_OP_CREATE;
    o->op.items = &o->item;
    o->op.n = 1;
    snprintf(o->item.name, sizeof(o->item.name), "%s", TOPIC_CONSUMER_OFFSETS);
    o->item.partitions = TOPIC_CONSUMER_OFFSETS_PARTITIONS;
    o->item.replication_factor = -1; /* the controller's default: min(3, active nodes) */
    o->item.configs = o->kv;
    o->item.n_configs = 2;
    return &o->op;
}

static void co_finish(cluster *cl, struct data_topic_op *op, int64_t offset)
{
    (void)offset;
    if (op->items[0].err && op->items[0].err != AL_EEXISTS)
        log_warn("cluster", "creating %s: %s (retrying)", TOPIC_CONSUMER_OFFSETS,
                 al_strerror(op->items[0].err));
    else if (!op->items[0].err)
        log_info("cluster", "created %s with %d partitions, replication factor %d",
                 TOPIC_CONSUMER_OFFSETS, TOPIC_CONSUMER_OFFSETS_PARTITIONS,
                 op->items[0].replication_factor);
    if (cl) cl->co_busy = false;
    free(op);
}

void cl_ensure_consumer_offsets(cluster *cl)
{
    if (cl->co_busy || !cl->st.has_cluster_id || cl->st.n_brokers == 0 ||
        topic_table_find(&cl->st.topics, TOPIC_CONSUMER_OFFSETS, strlen(TOPIC_CONSUMER_OFFSETS)))
        return;
    /* Not at founding (it would get RF 1 and could never fail over): once 3 nodes are active
     * (RF 3), or earlier on first use (FindCoordinator, src/kafka/handler_groups.c). */
    int32_t active = 0;
    for (int32_t i = 0; i < cl->st.n_brokers; i++)
        active += cl->st.brokers[i].membership == CONTROLLER_NODE_ACTIVE;
    if (active < 3) return;
    struct data_topic_op *op = cluster_consumer_offsets_op();
    if (!op) return;
    cl->co_busy = true;
    cl_op_run_local(cl, op, co_finish);
}

/* What raising __consumer_offsets' replication factor has in flight. */
struct co_rf {
    cluster *cl;
    raft_replicate_req q;
    cl_waiter w;
};

static void co_rf_applied(cl_waiter *w, bool timed_out)
{
    struct co_rf *r = AL_CONTAINER_OF(w, struct co_rf, w);
    (void)timed_out;
    r->cl->co_rf_busy = false;
    free(r);
}

static void co_rf_committed(raft_replicate_req *q)
{
    struct co_rf *r = AL_CONTAINER_OF(q, struct co_rf, q);
    cluster *cl = r->cl;
    if (q->res) { /* lost the leadership: the next leader plans again */
        cl->co_rf_busy = false;
        free(r);
        return;
    }
    r->w.offset = q->last_offset; /* busy until applied: the plan then sees the moves */
    r->w.deadline_ns = 0;
    r->w.fn = co_rf_applied;
    cl_waiter_add(cl, &r->w);
}

void cl_consumer_offsets_rf(cluster *cl)
{
    if (cl->co_rf_busy || !cl_can_propose(cl)) return;
    controller_move *mv = NULL;
    int32_t n = 0;
    if (controller_raise_rf_plan(&cl->st, TOPIC_CONSUMER_OFFSETS, 3, &mv, &n) || n == 0) {
        free(mv);
        return;
    }
    n = AL_MIN(n, CONTROLLER_CMDS_PER_BATCH);
    controller_cmd *cmds = calloc((size_t)n, sizeof(*cmds));
    struct co_rf *r = calloc(1, sizeof(*r));
    uint8_t *buf = NULL;
    size_t len = 0;
    int64_t now = io_wall_ms(cl->io);
    int rc = cmds && r ? 0 : -ENOMEM;
    for (int32_t i = 0; !rc && i < n; i++) {
        controller_cmd *c = &cmds[i];
        c->type = CONTROLLER_CMD_MOVE_PARTITION;
        c->proposer = cl->self;
        c->request_id = cl_request_id(cl);
        c->ts_ms = now;
        snprintf(c->name, sizeof(c->name), "%s", mv[i].topic);
        c->partition = mv[i].partition;
        c->assign = &mv[i].to;
        c->n_assign = 1;
    }
    if (!rc) rc = controller_batch_build(cmds, n, now, &buf, &len);
    if (!rc) {
        r->cl = cl;
        r->q.wait = RAFT_WAIT_COMMIT;
        r->q.cb = co_rf_committed;
        r->q.ctx = r;
        rc = raft_replicate(cl->ctl, buf, len, &r->q);
    }
    if (rc == 0) {
        cl->co_rf_busy = true;
        log_info("cluster", "%s: raising %" PRId32 " partitions to %d replicas (%" PRId32
                 " active nodes)", TOPIC_CONSUMER_OFFSETS, n, mv[0].to.n,
                 controller_active_nodes(&cl->st));
    } else {
        free(r);
    }
    free(buf);
    free(cmds);
    free(mv);
}

/* ---- forwarding to the leader, and the leader's side ---- */

static void done_msg(reactor_shard *self, const struct reactor_msg *msg)
{
    struct data_topic_op *op = msg->arg;
    op->done(op);
}

/* Completes a submitted op on its shard. */
static void local_finish(cluster *cl, struct data_topic_op *op, int64_t offset)
{
    (void)cl, (void)offset;
    data_shard *ds = data_shard_self();
    if (ds) data_send(ds, op->from_shard, done_msg, op, 0, 0);
}

struct fwd {
    cluster *cl;
    struct data_topic_op *op;
    cl_waiter w;
};

static void fwd_applied(cl_waiter *w, bool timed_out)
{
    struct fwd *f = AL_CONTAINER_OF(w, struct fwd, w);
    (void)timed_out; /* the leader applied it: answer even if we lag */
    local_finish(f->cl, f->op, w->offset);
    free(f);
}

static void fwd_cb(void *ctx, const rpc_result *res)
{
    struct fwd *f = ctx;
    cluster *cl = f->cl;
    int64_t offset = -1;
    int err = res->err;
    if (!err) err = cluster_op_result_decode(res->payload, res->len, f->op, &offset);
    if (err) {
        if (!cl->stopping)
            log_warn("cluster", "topic change forwarded to controller node %" PRId32
                     " failed: %s", res->from, res->err_text && *res->err_text
                                                   ? res->err_text : al_strerror(err));
        op_fail_all(f->op, kafka_err_to_internal(KAFKA_ERR_NOT_CONTROLLER));
        local_finish(cl, f->op, -1);
        free(f);
        return;
    }
    f->w.offset = offset;
    f->w.deadline_ns = io_now_ns(cl->io) + FORWARD_APPLY_NS;
    f->w.fn = fwd_applied;
    if (cl->stopping) {
        fwd_applied(&f->w, true);
        return;
    }
    cl_waiter_add(cl, &f->w);
}

static void forward(cluster *cl, struct data_topic_op *op)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    struct fwd *f = calloc(1, sizeof(*f));
    int rc = f ? cluster_op_encode(op, &buf, &len) : -ENOMEM;
    if (!rc) {
        f->cl = cl;
        f->op = op;
        rc = rpc_call(cl->rpc, cl->leader, RPC_T_CONTROLLER, buf, len, FORWARD_TIMEOUT_MS,
                      fwd_cb, f);
    }
    free(buf);
    if (rc == 0) return;
    free(f);
    op_fail_all(op, rc == AL_EINVAL || rc == -ENOMEM
                        ? rc : kafka_err_to_internal(KAFKA_ERR_NOT_CONTROLLER));
    local_finish(cl, op, -1);
}

/* On shard 0: a submitted op. */
static void submit_msg(reactor_shard *self, const struct reactor_msg *msg)
{
    struct data_topic_op *op = msg->arg;
    cluster *cl = g_cluster;
    for (int32_t i = 0; i < op->n; i++) op->items[i].err = 0;
    if (cl && cl_can_propose(cl)) {
        cl_op_run_local(cl, op, local_finish);
    } else if (cl && !cl->stopping && cl->leader >= 0 && cl->leader != cl->self) {
        forward(cl, op);
    } else {
        op_fail_all(op, kafka_err_to_internal(KAFKA_ERR_NOT_CONTROLLER));
        data_shard *ds = data_shard_self();
        if (ds) data_send(ds, op->from_shard, done_msg, op, 0, 0);
    }
}

int cluster_topic_submit(data_shard *ds, struct data_topic_op *op)
{
    op->from_shard = ds->shard;
    op->next = NULL;
    return data_send(ds, 0, submit_msg, op, 0, 0);
}

/* The leader's answer to a forwarded op. */
static void remote_finish(cluster *cl, struct data_topic_op *op, int64_t offset)
{
    rpc_token *tok = op->ctx;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = cluster_op_result_encode(op, offset, &buf, &len);
    if (rc == 0)
        rpc_reply(cl->rpc, *tok, buf, len);
    else
        rpc_reply_error(cl->rpc, *tok, rc, "cannot encode the result");
    free(buf);
    free(tok);
    free(op);
}

void cl_op_rpc_handler(rpc *r, void *ctx, const rpc_msg *m)
{
    cluster *cl = ctx;
    if (!m->is_call) return;
    struct data_topic_op *op = NULL;
    int err = cluster_op_decode(m->payload, m->len, &op);
    rpc_token *tok = err ? NULL : malloc(sizeof(*tok));
    if (err || !tok) {
        free(op);
        rpc_reply_error(r, m->token, err ? err : -ENOMEM, "malformed controller request");
        return;
    }
    *tok = m->token;
    op->ctx = tok;
    cl_op_run_local(cl, op, remote_finish);
}
