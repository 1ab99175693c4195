/*
 * cluster_groups.c — producer-id blocks from the controller (cluster_groups.h): an ALLOC_IDS
 * command proposed on the controller leader (forwarded there from any other node), answered
 * once it is committed and applied here, with the result the state machine recorded for it.
 */
#include "cluster/cluster_groups.h"

#include "base/cursor.h"
#include "base/log.h"
#include "cluster/cluster_impl.h"

#include <inttypes.h>
#include <stdlib.h>

#define ALLOC_TIMEOUT_MS 10000
#define ALLOC_APPLY_NS   (10000ull * 1000000ull) /* bound on the wait for our own apply */
#define ALLOC_WIRE_V     1

/* One allocation in progress on the leader (local or forwarded). */
struct cg_alloc {
    cluster *cl;
    raft_replicate_req q;
    cl_waiter w;
    uint64_t request_id;
    int64_t count;
    cluster_ids_cb cb; /* local requester, or NULL: remote (tok) */
    void *ctx;
    rpc_token tok;
};

static void cg_finish(struct cg_alloc *a, int err, int64_t first)
{
    if (a->cb) {
        a->cb(a->ctx, err, first, a->count);
    } else if (err) {
        rpc_reply_error(a->cl->rpc, a->tok, err, "producer id allocation failed");
    } else {
        uint8_t out[17];
        out[0] = ALLOC_WIRE_V;
        al_put_be64(out + 1, (uint64_t)first);
        al_put_be64(out + 9, (uint64_t)a->count);
        rpc_reply(a->cl->rpc, a->tok, out, sizeof(out));
    }
    free(a);
}

/* The command is applied on this node (or the wait ended): its recorded result. */
static void cg_applied(cl_waiter *w, bool timed_out)
{
    struct cg_alloc *a = AL_CONTAINER_OF(w, struct cg_alloc, w);
    controller_result r;
    if (!controller_result_find(&a->cl->st, a->cl->self, a->request_id, &r)) {
        cg_finish(a, timed_out ? AL_ETIMEDOUT : -EAGAIN, -1);
        return;
    }
    if (r.error) {
        log_warn("cluster", "ALLOC_IDS of %" PRId64 " ids refused by the controller: Kafka "
                 "error %d", a->count, (int)r.error);
        cg_finish(a, AL_EINVAL, -1);
        return;
    }
    cg_finish(a, 0, r.value);
}

static void cg_committed(raft_replicate_req *q)
{
    struct cg_alloc *a = q->ctx;
    cluster *cl = a->cl;
    if (q->res) {
        cg_finish(a, -EAGAIN, -1); /* leadership lost: may or may not commit; ask again */
        return;
    }
    a->w.offset = q->last_offset;
    a->w.deadline_ns = io_now_ns(cl->io) + ALLOC_APPLY_NS;
    a->w.fn = cg_applied;
    cl_waiter_add(cl, &a->w);
}

/* On the leader: proposes ALLOC_IDS for a (which it owns from here on). */
static void cg_propose(cluster *cl, struct cg_alloc *a)
{
    if (!cl_can_propose(cl)) {
        cg_finish(a, -EAGAIN, -1);
        return;
    }
    int64_t now = io_wall_ms(cl->io);
    controller_cmd c;
    memset(&c, 0, sizeof(c));
    c.type = CONTROLLER_CMD_ALLOC_IDS;
    c.proposer = cl->self;
    c.request_id = a->request_id = cl_request_id(cl);
    c.ts_ms = now;
    c.count = a->count;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = controller_batch_build(&c, 1, now, &buf, &len);
    if (rc) {
        cg_finish(a, rc, -1);
        return;
    }
    a->q.wait = RAFT_WAIT_COMMIT;
    a->q.cb = cg_committed;
    a->q.ctx = a;
    rc = raft_replicate(cl->ctl, buf, len, &a->q);
    free(buf);
    if (rc < 0) cg_finish(a, rc == RAFT_ENOTLEADER || rc == RAFT_EBUSY || rc == AL_EFULL
                                 ? -EAGAIN : rc,
                                 -1);
}

/* ---- forwarding (a node that is not the leader) ---- */

struct cg_fwd {
    int64_t count;
    cluster_ids_cb cb;
    void *ctx;
};

static void cg_fwd_done(void *ctx, const rpc_result *res)
{
    struct cg_fwd *f = ctx;
    int err = res->err;
    int64_t first = -1, count = 0;
    if (!err) {
        if (res->len != 17 || res->payload[0] != ALLOC_WIRE_V) {
            err = AL_EMALFORMED;
        } else {
            first = (int64_t)al_be64(res->payload + 1);
            count = (int64_t)al_be64(res->payload + 9);
            if (first < 1 || count != f->count) err = AL_EMALFORMED;
        }
    }
    if (err)
        log_warn("cluster", "producer ids from controller node %" PRId32 ": %s", res->from,
                 res->err_text && *res->err_text ? res->err_text : al_strerror(err));
    f->cb(f->ctx, err, first, count);
    free(f);
}

int cluster_alloc_producer_ids(int64_t count, cluster_ids_cb cb, void *ctx)
{
    cluster *cl = g_cluster;
    if (count < 1 || count > CLUSTER_IDS_MAX || !cb) return AL_EINVAL;
    if (!cl || cl->stopping) return AL_ECLOSED;
    if (cl_can_propose(cl)) {
        struct cg_alloc *a = calloc(1, sizeof(*a));
        if (!a) return -ENOMEM;
        a->cl = cl;
        a->count = count;
        a->cb = cb;
        a->ctx = ctx;
        cg_propose(cl, a);
        return 0;
    }
    if (cl->leader < 0 || cl->leader == cl->self) {
        cb(ctx, -EAGAIN, -1, count);
        return 0;
    }
    struct cg_fwd *f = calloc(1, sizeof(*f));
    if (!f) return -ENOMEM;
    f->count = count;
    f->cb = cb;
    f->ctx = ctx;
    uint8_t req[9];
    req[0] = ALLOC_WIRE_V;
    al_put_be64(req + 1, (uint64_t)count);
    int rc = rpc_call(cl->rpc, cl->leader, CLUSTER_RPC_ALLOC_IDS, req, sizeof(req),
                      ALLOC_TIMEOUT_MS, cg_fwd_done, f);
    if (rc) {
        free(f);
        cb(ctx, rc == AL_ENOTFOUND || rc == AL_EFULL ? -EAGAIN : rc, -1, count);
    }
    return 0;
}

/* The leader's side of a forwarded allocation. */
static void cg_rpc_handler(rpc *r, void *ctx, const rpc_msg *m)
{
    (void)ctx;
    if (!m->is_call) return;
    cluster *cl = g_cluster;
    if (m->len != 9 || m->payload[0] != ALLOC_WIRE_V) {
        rpc_reply_error(r, m->token, AL_EMALFORMED, "malformed producer id request");
        return;
    }
    int64_t count = (int64_t)al_be64(m->payload + 1);
    if (count < 1 || count > CLUSTER_IDS_MAX) {
        rpc_reply_error(r, m->token, AL_EINVAL, "producer id count out of range");
        return;
    }
    if (!cl || cl->stopping || !cl_can_propose(cl)) {
        rpc_reply_error(r, m->token, -EAGAIN, "not the controller leader");
        return;
    }
    struct cg_alloc *a = calloc(1, sizeof(*a));
    if (!a) {
        rpc_reply_error(r, m->token, -ENOMEM, "out of memory");
        return;
    }
    a->cl = cl;
    a->count = count;
    a->tok = m->token;
    cg_propose(cl, a);
}

void cluster_groups_rpc(rpc *r)
{
    rpc_handler_set(r, CLUSTER_RPC_ALLOC_IDS, cg_rpc_handler, NULL);
}
