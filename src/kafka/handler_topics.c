/*
 * handler_topics.c — the topic catalogue over the wire: Metadata v0-12 (this broker, every or
 * the named topics with their partitions led by this node, topic ids from v10, auto-creation
 * when auto_create_topics_enabled and the request allows it), CreateTopics v0-7 (defaults for
 * -1, replication factor 1 only, configs validated by cluster/topic_config, validate-only),
 * DeleteTopics v0-6 (by name, or by id from v6) and CreatePartitions v0-3. The defaults
 * (auto-create, partitions, replication factor) and the broker-level topic defaults reported in
 * CreateTopics v5+ are the live values of the shard's cluster_cfg (changed by AlterConfigs on
 * BROKER resources or the admin API).
 *
 * Changes go through data_topic_submit: applied on shard 0, persisted, copied to every shard
 * and their partitions opened or closed before the response is sent, so a client that gets a
 * success can produce to the topic at once, and the change survives a restart.
 */
#include "kafka/handlers_data.h"
#include "kafka/handlers.h"

#include "base/log.h"
#include "cluster/cluster.h"
#include "cluster/data_plane.h"
#include "config/config.h"
#include "cluster/topic_config.h"

#include <inttypes.h>
#include <stdio.h>

#define AUTHORIZED_OPS_OMITTED INT32_MIN

static kafka_str arena_strdup(kafka_arena *a, const char *s)
{
    size_t n = strlen(s);
    char *p = kafka_arena_alloc(a, n + 1);
    if (!p) return kafka_str_from("");
    memcpy(p, s, n + 1);
    kafka_str r = {p, (int32_t)n};
    return r;
}

/* Copies a wire string into a NUL-terminated buffer; false if it does not fit or is null. */
static bool str_to_buf(kafka_str s, char *buf, size_t cap)
{
    if (s.len < 0 || (size_t)s.len >= cap) return false;
    memcpy(buf, s.ptr, (size_t)s.len);
    buf[s.len] = 0;
    return true;
}

/* ---- Metadata ---- */

struct md_ctx {
    kafka_req *req;
    struct data_inflight inflight;
    struct data_topic_op op;
    struct data_topic_item *items;
    int32_t *item_of; /* per requested topic: index into items, or -1 */
};

static int md_fill_partitions(kafka_req *req, const topic *t,
                              kafka_MetadataResponse_MetadataResponseTopic *out)
{
    int32_t node = req->broker->node_id;
    kafka_MetadataResponse_MetadataResponsePartition *ps =
        kafka_arena_alloc(&req->arena, sizeof(*ps) * (size_t)t->partitions);
    int32_t *nodes = kafka_arena_alloc(&req->arena, sizeof(int32_t));
    if (!ps || !nodes) return -ENOMEM;
    nodes[0] = node;
    for (int32_t i = 0; i < t->partitions; i++) {
        kafka_MetadataResponse_MetadataResponsePartition_init(&ps[i]);
        ps[i].ErrorCode = 0;
        ps[i].PartitionIndex = i;
        ps[i].LeaderId = node;
        ps[i].LeaderEpoch = PM_LEADER_EPOCH;
        ps[i].ReplicaNodes_count = 1;
        ps[i].ReplicaNodes = nodes;
        ps[i].IsrNodes_count = 1;
        ps[i].IsrNodes = nodes;
        ps[i].OfflineReplicas_count = 0;
        if (kafka_metadata_partition(req, t, i, &ps[i]) < 0) return -ENOMEM; /* cluster */
    }
    out->Partitions = ps;
    out->Partitions_count = t->partitions;
    out->ErrorCode = 0;
    out->IsInternal = t->internal;
    memcpy(out->TopicId.b, t->id, 16);
    out->Name = arena_strdup(&req->arena, t->name);
    return 0;
}

static int md_respond(kafka_req *req)
{
    const kafka_MetadataRequest *in = req->msg;
    const struct kafka_broker *b = req->broker;
    data_shard *ds = data_shard_self();
    kafka_MetadataResponse out;
    kafka_MetadataResponse_init(&out);
    kafka_MetadataResponse_MetadataResponseBroker *brk =
        kafka_arena_alloc(&req->arena, sizeof(*brk));
    if (!brk) return -ENOMEM;
    kafka_MetadataResponse_MetadataResponseBroker_init(brk);
    brk->NodeId = b->node_id;
    brk->Host = kafka_str_from(b->advertised_host);
    brk->Port = b->advertised_port;
    brk->Rack.ptr = NULL;
    brk->Rack.len = -1;
    out.Brokers_count = 1;
    out.Brokers = brk;
    out.ClusterId = kafka_str_from(b->cluster_id);
    out.ControllerId = b->node_id;
    out.ClusterAuthorizedOperations = AUTHORIZED_OPS_OMITTED;
    if (kafka_metadata_cluster_brokers(req, &out) < 0) return -ENOMEM; /* cluster mode */

    bool all = in->Topics_count < 0 || (in->Topics_count == 0 && req->api_version == 0);
    int32_t n = all ? ds->topics.n : AL_MAX(in->Topics_count, 0);
    kafka_MetadataResponse_MetadataResponseTopic *ts =
        kafka_arena_alloc(&req->arena, sizeof(*ts) * (size_t)n);
    if (!ts) return -ENOMEM;
    for (int32_t i = 0; i < n; i++) {
        kafka_MetadataResponse_MetadataResponseTopic *o = &ts[i];
        kafka_MetadataResponse_MetadataResponseTopic_init(o);
        o->TopicAuthorizedOperations = AUTHORIZED_OPS_OMITTED;
        o->Partitions_count = 0;
        const topic *t;
        if (all) {
            t = topic_table_at(&ds->topics, i);
        } else {
            const kafka_MetadataRequest_MetadataRequestTopic *q = &in->Topics[i];
            if (q->Name.len < 0) {
                t = topic_table_find_id(&ds->topics, q->TopicId.b);
                if (!t) {
                    o->ErrorCode = KAFKA_ERR_UNKNOWN_TOPIC_ID;
                    o->TopicId = q->TopicId;
                    o->Name = req->api_version >= 12 ? q->Name : kafka_str_from("");
                    continue;
                }
            } else {
                t = topic_table_find(&ds->topics, q->Name.ptr, (size_t)q->Name.len);
                if (!t) {
                    o->Name = q->Name;
                    o->ErrorCode = topic_name_valid(q->Name.ptr, (size_t)q->Name.len)
                                       ? KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION
                                       : KAFKA_ERR_INVALID_TOPIC_EXCEPTION;
                    continue;
                }
            }
        }
        int rc = md_fill_partitions(req, t, o);
        if (rc) return rc;
    }
    out.Topics = ts;
    out.Topics_count = n;
    return kafka_req_respond(req, &out);
}

static void md_created(struct data_topic_op *op)
{
    struct md_ctx *ctx = op->ctx;
    data_inflight_remove(data_shard_self(), &ctx->inflight);
    for (int32_t i = 0; i < op->n; i++)
        if (op->items[i].err && op->items[i].err != AL_EEXISTS)
            log_warn("kafka", "auto-creating topic %s failed: %s", op->items[i].name,
                     al_strerror(op->items[i].err));
    int rc = md_respond(ctx->req);
    if (rc < 0 && ctx->req->state != KAFKA_REQ_DONE) kafka_req_fail(ctx->req, rc, "metadata");
}

int kafka_handle_metadata_topics(kafka_req *req)
{
    const kafka_MetadataRequest *in = req->msg;
    data_shard *ds = data_shard_ensure(req->broker->cfg);
    if (!ds) return kafka_handle_metadata(req); /* no data plane (off a shard): no topics */
    bool allow = req->api_version < 4 || in->AllowAutoTopicCreation;
    const al_config *cfg = &ds->cluster_cfg; /* live: changed by AlterConfigs / admin API */
    int32_t missing = 0;
    if (allow && cfg->auto_create_topics_enabled && in->Topics_count > 0) {
        for (int32_t i = 0; i < in->Topics_count; i++) {
            kafka_str nm = in->Topics[i].Name;
            if (nm.len > 0 && topic_name_valid(nm.ptr, (size_t)nm.len) &&
                !topic_table_find(&ds->topics, nm.ptr, (size_t)nm.len))
                missing++;
        }
    }
    if (missing == 0) {
        int rc = md_respond(req);
        return rc < 0 ? rc : KAFKA_DONE;
    }
    struct md_ctx *ctx = kafka_arena_alloc(&req->arena, sizeof(*ctx));
    struct data_topic_item *items =
        kafka_arena_alloc(&req->arena, sizeof(*items) * (size_t)missing);
    if (!ctx || !items) return -ENOMEM;
    memset(ctx, 0, sizeof(*ctx));
    memset(items, 0, sizeof(*items) * (size_t)missing);
    int32_t k = 0;
    for (int32_t i = 0; i < in->Topics_count && k < missing; i++) {
        kafka_str nm = in->Topics[i].Name;
        if (nm.len > 0 && topic_name_valid(nm.ptr, (size_t)nm.len) &&
            !topic_table_find(&ds->topics, nm.ptr, (size_t)nm.len)) {
            bool dup = false;
            for (int32_t j = 0; j < k; j++)
                if ((size_t)nm.len == strlen(items[j].name) &&
                    !memcmp(items[j].name, nm.ptr, (size_t)nm.len))
                    dup = true;
            if (dup) continue;
            str_to_buf(nm, items[k].name, sizeof(items[k].name));
            items[k].partitions = (int32_t)cfg->default_topic_partitions;
            items[k].replication_factor = cluster_active() ? -1 : 1; /* cluster: controller's */
            k++;
        }
    }
    ctx->req = req;
    ctx->items = items;
    ctx->op.kind = DATA_OP_CREATE;
    ctx->op.items = items;
    ctx->op.n = k;
    ctx->op.done = md_created;
    ctx->op.ctx = ctx;
    data_inflight_add(ds, &ctx->inflight);
    int rc = data_topic_submit(ds, &ctx->op);
    if (rc) return rc;
    return KAFKA_DEFERRED;
}

/* ---- CreateTopics ---- */

struct ct_ctx {
    kafka_req *req;
    struct data_inflight inflight;
    kafka_CreateTopicsResponse resp;
    struct data_topic_op op;
    int32_t *item_of; /* per response topic: index into op.items or -1 */
};

/* Fills the v5+ result fields (partitions, rf, config list) of a created or validated topic. */
static int ct_fill_configs(kafka_req *req, kafka_CreateTopicsResponse_CreatableTopicResult *r,
                           const topic_config_kv *kv, int32_t nkv)
{
    size_t ndefs;
    const struct topic_config_def *defs = topic_config_defs(&ndefs);
    data_shard *ds = data_shard_self();
    const struct broker_config_defaults *defaults = ds ? &ds->defaults : NULL;
    struct topic_config_set set;
    topic_config_set_init(&set);
    struct topic_config_owned *own =
        kafka_arena_alloc(&req->arena, sizeof(*own) * (size_t)AL_MAX(nkv, 1));
    kafka_CreateTopicsResponse_CreatableTopicConfigs *cs =
        kafka_arena_alloc(&req->arena, sizeof(*cs) * ndefs);
    if (!own || !cs) return -ENOMEM;
    for (int32_t i = 0; i < nkv; i++) {
        own[i].key = (char *)kv[i].key;
        own[i].value = (char *)kv[i].value;
    }
    set.n = nkv;
    set.items = own;
    for (size_t i = 0; i < ndefs; i++) {
        struct topic_config_entry e;
        topic_config_describe(&set, defaults, &defs[i], &e);
        kafka_CreateTopicsResponse_CreatableTopicConfigs_init(&cs[i]);
        cs[i].Name = kafka_str_from(e.name);
        cs[i].Value =
            e.sensitive || !e.value ? (kafka_str){NULL, -1} : arena_strdup(&req->arena, e.value);
        cs[i].ReadOnly = e.read_only;
        cs[i].ConfigSource = e.source;
        cs[i].IsSensitive = e.sensitive;
    }
    r->Configs = cs;
    r->Configs_count = (int32_t)ndefs;
    return 0;
}

static void ct_finish(struct ct_ctx *ctx)
{
    kafka_req *req = ctx->req;
    for (int32_t i = 0; i < ctx->resp.Topics_count; i++) {
        kafka_CreateTopicsResponse_CreatableTopicResult *r = &ctx->resp.Topics[i];
        int32_t k = ctx->item_of[i];
        if (k < 0) continue;
        struct data_topic_item *it = &ctx->op.items[k];
        const kafka_CreateTopicsRequest *in = req->msg;
        if (it->err == AL_EEXISTS) {
            r->ErrorCode = KAFKA_ERR_TOPIC_ALREADY_EXISTS;
            r->ErrorMessage = kafka_str_from("Topic already exists.");
        } else if (it->err) {
            r->ErrorCode = kafka_err_from_internal(it->err);
            bool wire = it->err < KAFKA_EWIRE_BASE; /* a Kafka code (the controller's) */
            r->ErrorMessage = arena_strdup(&req->arena, wire ? kafka_err_message(r->ErrorCode)
                                                             : al_strerror(it->err));
        } else {
            if (!in->validateOnly) memcpy(r->TopicId.b, it->id, 16);
            r->NumPartitions = it->partitions;
            r->ReplicationFactor = it->replication_factor;
            if (req->api_version >= 5 && ct_fill_configs(req, r, it->configs, it->n_configs) < 0) {
                kafka_req_fail(req, -ENOMEM, "create topics");
                return;
            }
        }
        if (r->ErrorCode) {
            r->NumPartitions = -1;
            r->ReplicationFactor = -1;
            r->Configs_count = -1;
        }
    }
    kafka_req_respond(req, &ctx->resp);
}

static void ct_done(struct data_topic_op *op)
{
    struct ct_ctx *ctx = op->ctx;
    data_inflight_remove(data_shard_self(), &ctx->inflight);
    ct_finish(ctx);
}

int kafka_handle_create_topics(kafka_req *req)
{
    const kafka_CreateTopicsRequest *in = req->msg;
    data_shard *ds = data_shard_ensure(req->broker->cfg);
    if (!ds) return AL_ECLOSED;
    const al_config *cfg = &ds->cluster_cfg; /* live: changed by AlterConfigs / admin API */
    struct ct_ctx *ctx = kafka_arena_alloc(&req->arena, sizeof(*ctx));
    int32_t n = AL_MAX(in->Topics_count, 0);
    kafka_CreateTopicsResponse_CreatableTopicResult *rs =
        kafka_arena_alloc(&req->arena, sizeof(*rs) * (size_t)n);
    struct data_topic_item *items = kafka_arena_alloc(&req->arena, sizeof(*items) * (size_t)n);
    int32_t *item_of = kafka_arena_alloc(&req->arena, sizeof(int32_t) * (size_t)n);
    if (!ctx || !rs || !items || !item_of) return -ENOMEM;
    memset(ctx, 0, sizeof(*ctx));
    memset(items, 0, sizeof(*items) * (size_t)n);
    ctx->req = req;
    ctx->item_of = item_of;
    kafka_CreateTopicsResponse_init(&ctx->resp);
    ctx->resp.Topics = rs;
    ctx->resp.Topics_count = n;
    int32_t k = 0;
    for (int32_t i = 0; i < n; i++) {
        const kafka_CreateTopicsRequest_CreatableTopic *q = &in->Topics[i];
        kafka_CreateTopicsResponse_CreatableTopicResult *r = &rs[i];
        kafka_CreateTopicsResponse_CreatableTopicResult_init(r);
        r->Name = q->Name;
        r->ErrorMessage = (kafka_str){NULL, -1};
        r->NumPartitions = -1;
        r->ReplicationFactor = -1;
        r->Configs_count = -1;
        item_of[i] = -1;
        /* A name given twice in one request: INVALID_REQUEST for every copy (as Kafka). */
        bool dup = false;
        for (int32_t j = 0; j < n; j++)
            if (j != i && kafka_str_equal(in->Topics[j].Name, q->Name)) dup = true;
        int32_t parts =
            q->NumPartitions == -1 ? (int32_t)cfg->default_topic_partitions : q->NumPartitions;
        int16_t rf = q->ReplicationFactor == -1 ? (int16_t)cfg->default_topic_replications
                                                : q->ReplicationFactor;
        if (cluster_active() && q->ReplicationFactor == -1) rf = -1; /* min(3, nodes) */
        char msg[256] = "";
        int16_t err = 0;
        if (dup) {
            err = KAFKA_ERR_INVALID_REQUEST;
            snprintf(msg, sizeof(msg),
                     "Create topics request from client contains a "
                     "duplicate topic name.");
        } else if (q->Name.len <= 0 || !topic_name_valid(q->Name.ptr, (size_t)q->Name.len)) {
            err = KAFKA_ERR_INVALID_TOPIC_EXCEPTION;
            snprintf(msg, sizeof(msg),
                     "Topic name is invalid: legal characters are "
                     "[a-zA-Z0-9._-], at most 249.");
        } else if (q->Assignments_count > 0) {
            bool ok = q->NumPartitions == -1 && q->ReplicationFactor == -1;
            for (int32_t a = 0; ok && a < q->Assignments_count; a++) {
                const kafka_CreateTopicsRequest_CreatableReplicaAssignment *as = &q->Assignments[a];
                ok = as->PartitionIndex == a && as->BrokerIds_count == 1 &&
                     as->BrokerIds[0] == req->broker->node_id;
            }
            if (!ok) {
                err = KAFKA_ERR_INVALID_REPLICA_ASSIGNMENT;
                snprintf(msg, sizeof(msg),
                         "Replica assignment must give every partition, in "
                         "order, the single broker %" PRId32 ".",
                         req->broker->node_id);
            }
            parts = q->Assignments_count;
            rf = 1;
        } else if (parts < 1 || parts > TOPIC_PARTITIONS_MAX) {
            err = KAFKA_ERR_INVALID_PARTITIONS;
            snprintf(msg, sizeof(msg), "Number of partitions must be between 1 and %d.",
                     TOPIC_PARTITIONS_MAX);
        } else if (rf != 1 && !cluster_active()) { /* cluster: the controller checks */
            err = KAFKA_ERR_INVALID_REPLICATION_FACTOR;
            snprintf(msg, sizeof(msg),
                     "Replication factor: %d larger than available brokers: "
                     "1.",
                     rf);
        } else if (cluster_active()) { /* this node's view; the controller decides */
            int32_t nodes = cluster_active_brokers();
            if (rf == -1) rf = (int16_t)AL_MAX(AL_MIN(3, nodes), 1); /* min(3, nodes) */
            if (rf < 1 || rf > nodes) {
                err = KAFKA_ERR_INVALID_REPLICATION_FACTOR;
                snprintf(msg, sizeof(msg),
                         "Replication factor: %d larger than available brokers: %" PRId32 ".",
                         rf, nodes);
            }
        }
        if (!err && topic_table_find(&ds->topics, q->Name.ptr, (size_t)q->Name.len)) {
            err = KAFKA_ERR_TOPIC_ALREADY_EXISTS;
            snprintf(msg, sizeof(msg), "Topic '%.*s' already exists.", (int)q->Name.len,
                     q->Name.ptr);
        }
        topic_config_kv *kv = NULL;
        int32_t nkv = 0;
        if (!err && q->Configs_count > 0) {
            if (q->Configs_count > TOPIC_CONFIGS_MAX) {
                err = KAFKA_ERR_INVALID_CONFIG;
                snprintf(msg, sizeof(msg), "Too many configs.");
            } else {
                kv = kafka_arena_alloc(&req->arena, sizeof(*kv) * (size_t)q->Configs_count);
                if (!kv) return -ENOMEM;
            }
            for (int32_t c = 0; !err && c < q->Configs_count; c++) {
                const kafka_CreateTopicsRequest_CreateableTopicConfig *cf = &q->Configs[c];
                if (cf->Value.len < 0) continue; /* null: not set */
                if (!str_to_buf(cf->Name, kv[nkv].key, sizeof(kv[nkv].key)) ||
                    !str_to_buf(cf->Value, kv[nkv].value, sizeof(kv[nkv].value))) {
                    err = KAFKA_ERR_INVALID_CONFIG;
                    snprintf(msg, sizeof(msg), "Config name or value too long.");
                    break;
                }
                bool twice = false;
                for (int32_t d = 0; d < nkv; d++)
                    if (!strcmp(kv[d].key, kv[nkv].key)) twice = true;
                if (twice) {
                    err = KAFKA_ERR_INVALID_REQUEST;
                    snprintf(msg, sizeof(msg), "Config %s given twice.", kv[nkv].key);
                    break;
                }
                if (topic_config_check(kv[nkv].key, kv[nkv].value, msg, sizeof(msg))) {
                    err = KAFKA_ERR_INVALID_CONFIG;
                    break;
                }
                nkv++;
            }
        }
        if (err) {
            r->ErrorCode = err;
            if (req->api_version >= 1) r->ErrorMessage = arena_strdup(&req->arena, msg);
            continue;
        }
        struct data_topic_item *it = &items[k];
        str_to_buf(q->Name, it->name, sizeof(it->name));
        it->partitions = parts;
        it->replication_factor = rf;
        it->configs = kv;
        it->n_configs = nkv;
        item_of[i] = k++;
    }
    ctx->op.kind = DATA_OP_CREATE;
    ctx->op.items = items;
    ctx->op.n = k;
    ctx->op.done = ct_done;
    ctx->op.ctx = ctx;
    if (k == 0 || in->validateOnly) {
        ct_finish(ctx);
        return KAFKA_DONE;
    }
    data_inflight_add(ds, &ctx->inflight);
    int rc = data_topic_submit(ds, &ctx->op);
    return rc ? rc : KAFKA_DEFERRED;
}

/* ---- DeleteTopics and CreatePartitions: one topic op, errors mapped per entry ---- */

/*
 * A DeleteTopics or CreatePartitions request waiting for its topic op: per response entry, the
 * op item it queued (item_of, -1: already answered) and its ErrorCode field (code_of).
 */
struct topic_op_ctx {
    kafka_req *req;
    struct data_inflight inflight;
    struct data_topic_op op;
    void *resp;
    int32_t nres;
    int32_t *item_of;
    int16_t **code_of;
    int16_t einval_code; /* what AL_EINVAL from the topic table means for this op */
};

/* Allocates the context and n items (zeroed, in the request's arena). NULL: out of memory. */
static struct topic_op_ctx *topic_op_new(kafka_req *req, void *resp, int32_t n,
                                         int16_t einval_code)
{
    struct topic_op_ctx *ctx = kafka_arena_alloc(&req->arena, sizeof(*ctx));
    struct data_topic_item *items = kafka_arena_alloc(&req->arena, sizeof(*items) * (size_t)n);
    int32_t *item_of = kafka_arena_alloc(&req->arena, sizeof(int32_t) * (size_t)n);
    int16_t **code_of = kafka_arena_alloc(&req->arena, sizeof(int16_t *) * (size_t)n);
    if (!ctx || !items || !item_of || !code_of) return NULL;
    memset(ctx, 0, sizeof(*ctx));
    memset(items, 0, sizeof(*items) * (size_t)n);
    for (int32_t i = 0; i < n; i++) item_of[i] = -1;
    *ctx = (struct topic_op_ctx){.req = req, .resp = resp, .nres = n, .item_of = item_of,
                                 .code_of = code_of, .einval_code = einval_code};
    ctx->op.items = items;
    return ctx;
}

static void topic_op_done(struct data_topic_op *op)
{
    struct topic_op_ctx *ctx = op->ctx;
    data_inflight_remove(data_shard_self(), &ctx->inflight);
    for (int32_t i = 0; i < ctx->nres; i++) {
        int32_t k = ctx->item_of[i];
        if (k < 0) continue;
        int err = op->items[k].err;
        if (err == AL_ENOTFOUND)
            *ctx->code_of[i] = KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION;
        else if (err == AL_EINVAL)
            *ctx->code_of[i] = ctx->einval_code;
        else if (err)
            *ctx->code_of[i] = kafka_err_from_internal(err);
    }
    kafka_req_respond(ctx->req, ctx->resp);
}

/* Submits the ctx->op.n items queued as one op of kind, or answers at once when there are
 * none. Returns a handler result (KAFKA_DONE, KAFKA_DEFERRED or an error). */
static int topic_op_submit(data_shard *ds, struct topic_op_ctx *ctx, enum data_topic_op_kind kind)
{
    ctx->op.kind = kind;
    ctx->op.done = topic_op_done;
    ctx->op.ctx = ctx;
    if (ctx->op.n == 0) {
        int rc = kafka_req_respond(ctx->req, ctx->resp);
        return rc < 0 ? rc : KAFKA_DONE;
    }
    data_inflight_add(ds, &ctx->inflight);
    int rc = data_topic_submit(ds, &ctx->op);
    return rc ? rc : KAFKA_DEFERRED;
}

/* ---- DeleteTopics ---- */

int kafka_handle_delete_topics(kafka_req *req)
{
    const kafka_DeleteTopicsRequest *in = req->msg;
    data_shard *ds = data_shard_ensure(req->broker->cfg);
    if (!ds) return AL_ECLOSED;
    bool v6 = req->api_version >= 6;
    int32_t n = AL_MAX(v6 ? in->Topics_count : in->TopicNames_count, 0);
    kafka_DeleteTopicsResponse *resp = kafka_arena_alloc(&req->arena, sizeof(*resp));
    kafka_DeleteTopicsResponse_DeletableTopicResult *rs =
        kafka_arena_alloc(&req->arena, sizeof(*rs) * (size_t)n);
    /* an internal topic cannot be deleted (AL_EINVAL) */
    struct topic_op_ctx *ctx =
        resp && rs ? topic_op_new(req, resp, n, KAFKA_ERR_INVALID_TOPIC_EXCEPTION) : NULL;
    if (!ctx) return -ENOMEM;
    kafka_DeleteTopicsResponse_init(resp);
    resp->Responses = rs;
    resp->Responses_count = n;
    struct data_topic_item *items = ctx->op.items;
    int32_t k = 0;
    for (int32_t i = 0; i < n; i++) {
        kafka_DeleteTopicsResponse_DeletableTopicResult *r = &rs[i];
        kafka_DeleteTopicsResponse_DeletableTopicResult_init(r);
        r->ErrorMessage = (kafka_str){NULL, -1};
        ctx->code_of[i] = &r->ErrorCode;
        kafka_str name = v6 ? in->Topics[i].Name : in->TopicNames[i];
        const topic *t = NULL;
        if (name.len >= 0) {
            t = topic_table_find(&ds->topics, name.ptr, (size_t)name.len);
            r->Name = name;
        } else if (v6) {
            t = topic_table_find_id(&ds->topics, in->Topics[i].TopicId.b);
            r->TopicId = in->Topics[i].TopicId;
            r->Name = t ? arena_strdup(&req->arena, t->name) : (kafka_str){NULL, -1};
        }
        if (!t) {
            r->ErrorCode =
                name.len >= 0 ? KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION : KAFKA_ERR_UNKNOWN_TOPIC_ID;
            continue;
        }
        if (v6) memcpy(r->TopicId.b, t->id, 16);
        snprintf(items[k].name, sizeof(items[k].name), "%s", t->name);
        ctx->item_of[i] = k++;
    }
    ctx->op.n = k;
    return topic_op_submit(ds, ctx, DATA_OP_DELETE);
}

/* ---- CreatePartitions ---- */

int kafka_handle_create_partitions(kafka_req *req)
{
    const kafka_CreatePartitionsRequest *in = req->msg;
    data_shard *ds = data_shard_ensure(req->broker->cfg);
    if (!ds) return AL_ECLOSED;
    int32_t n = AL_MAX(in->Topics_count, 0);
    kafka_CreatePartitionsResponse *resp = kafka_arena_alloc(&req->arena, sizeof(*resp));
    kafka_CreatePartitionsResponse_CreatePartitionsTopicResult *rs =
        kafka_arena_alloc(&req->arena, sizeof(*rs) * (size_t)n);
    struct topic_op_ctx *ctx =
        resp && rs ? topic_op_new(req, resp, n, KAFKA_ERR_INVALID_PARTITIONS) : NULL;
    if (!ctx) return -ENOMEM;
    kafka_CreatePartitionsResponse_init(resp);
    resp->Results = rs;
    resp->Results_count = n;
    struct data_topic_item *items = ctx->op.items;
    int32_t k = 0;
    for (int32_t i = 0; i < n; i++) {
        const kafka_CreatePartitionsRequest_CreatePartitionsTopic *q = &in->Topics[i];
        kafka_CreatePartitionsResponse_CreatePartitionsTopicResult *r = &rs[i];
        kafka_CreatePartitionsResponse_CreatePartitionsTopicResult_init(r);
        r->Name = q->Name;
        r->ErrorMessage = (kafka_str){NULL, -1};
        ctx->code_of[i] = &r->ErrorCode;
        const topic *t = q->Name.len > 0
                             ? topic_table_find(&ds->topics, q->Name.ptr, (size_t)q->Name.len)
                             : NULL;
        if (!t) {
            r->ErrorCode = KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION;
            continue;
        }
        if (q->Count <= t->partitions || q->Count > TOPIC_PARTITIONS_MAX) {
            r->ErrorCode = KAFKA_ERR_INVALID_PARTITIONS;
            char msg[160];
            snprintf(msg, sizeof(msg),
                     "Topic currently has %" PRId32 " partitions, which is "
                     "higher than or equal to the requested %" PRId32 ".",
                     t->partitions, q->Count);
            r->ErrorMessage = arena_strdup(&req->arena, msg);
            continue;
        }
        if (q->Assignments_count > 0 && q->Assignments_count != q->Count - t->partitions) {
            r->ErrorCode = KAFKA_ERR_INVALID_REPLICA_ASSIGNMENT;
            continue;
        }
        if (in->ValidateOnly) continue;
        snprintf(items[k].name, sizeof(items[k].name), "%s", t->name);
        items[k].partitions = q->Count;
        ctx->item_of[i] = k++;
    }
    ctx->op.n = k;
    return topic_op_submit(ds, ctx, DATA_OP_ADD_PARTITIONS);
}
