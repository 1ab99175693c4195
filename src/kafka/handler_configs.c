/*
 * handler_configs.c — DescribeConfigs v0-4, AlterConfigs v0-2 and IncrementalAlterConfigs v0-1
 * for TOPIC (2) and BROKER (4) resources.
 *
 * Topics: the entries, sources, synonyms and documentation come from cluster/topic_config (all
 * Kafka 3.8 topic keys); alterations are validated there on a copy of the topic's overrides (an
 * unknown key or bad value is INVALID_CONFIG with Kafka's message), and the resulting override
 * set is stored through data_topic_submit (shard 0, persisted in topics.json, copied to every
 * shard, applied to open partitions) before the answer. validate_only checks without storing.
 * Brokers: DescribeConfigs lists the broker keys with their defaults and this node's effective
 * settings; altering broker configs dynamically is not supported: INVALID_CONFIG (unknown key)
 * or INVALID_REQUEST naming the key.
 */
#include "kafka/handlers_data.h"

#include "base/log.h"
#include "cluster/data_plane.h"
#include "cluster/topic_config.h"
#include "config/config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

enum { RESOURCE_TOPIC = 2, RESOURCE_BROKER = 4 };

static kafka_str arena_strdup(kafka_arena *a, const char *s)
{
    if (!s) return (kafka_str){NULL, -1};
    size_t n = strlen(s);
    char *p = kafka_arena_alloc(a, n + 1);
    if (!p) return (kafka_str){NULL, -1};
    memcpy(p, s, n + 1);
    return (kafka_str){p, (int32_t)n};
}

/* Builds an owned override set from a topic's overrides. Returns 0 or -ENOMEM. */
static int set_from_topic(const topic *t, struct topic_config_set *s)
{
    topic_config_set_init(s);
    if (t->n_configs == 0) return 0;
    s->items = calloc((size_t)t->n_configs, sizeof(*s->items));
    if (!s->items) return -ENOMEM;
    for (int32_t i = 0; i < t->n_configs; i++) {
        s->items[i].key = strdup(t->configs[i].key);
        s->items[i].value = strdup(t->configs[i].value);
        s->n = i + 1;
        if (!s->items[i].key || !s->items[i].value) {
            topic_config_set_free(s);
            return -ENOMEM;
        }
    }
    return 0;
}

/* Copies a set into arena kv pairs. Returns the count or -ENOMEM/AL_EINVAL. */
static int set_to_kv(kafka_arena *a, const struct topic_config_set *s, topic_config_kv **out)
{
    *out = NULL;
    if (s->n > TOPIC_CONFIGS_MAX) return AL_EINVAL;
    topic_config_kv *kv = kafka_arena_alloc(a, sizeof(*kv) * (size_t)AL_MAX(s->n, 1));
    if (!kv) return -ENOMEM;
    for (int i = 0; i < s->n; i++) {
        if (strlen(s->items[i].key) >= sizeof(kv[i].key) ||
            strlen(s->items[i].value) >= sizeof(kv[i].value))
            return AL_EINVAL;
        strcpy(kv[i].key, s->items[i].key);
        strcpy(kv[i].value, s->items[i].value);
    }
    *out = kv;
    return s->n;
}

/* ---- DescribeConfigs ---- */

/* The broker's effective values for the broker keys we know, keyed by Kafka's names. */
static int broker_pairs(kafka_req *req, struct topic_config_pair *pairs, int cap)
{
    const al_config *c = req->broker->cfg;
    char buf[64];
    int n = 0;
#define ADD(k, v)                                                                                  \
    do {                                                                                           \
        if (n < cap)                                                                               \
            pairs[n++] = (struct topic_config_pair){(k), arena_strdup(&req->arena, (v)).ptr};      \
    } while (0)
    snprintf(buf, sizeof(buf), "%" PRId64, c->node_id);
    ADD("broker.id", buf);
    ADD("node.id", buf);
    snprintf(buf, sizeof(buf), "%s", c->auto_create_topics_enabled ? "true" : "false");
    ADD("auto.create.topics.enable", buf);
    snprintf(buf, sizeof(buf), "%" PRId64, c->default_topic_partitions);
    ADD("num.partitions", buf);
    snprintf(buf, sizeof(buf), "%" PRId64, c->default_topic_replications);
    ADD("default.replication.factor", buf);
    snprintf(buf, sizeof(buf), "%" PRId64, c->kafka_max_frame_bytes);
    ADD("socket.request.max.bytes", buf);
    snprintf(buf, sizeof(buf), "%" PRId64, c->connections_max_idle_ms);
    ADD("connections.max.idle.ms", buf);
    ADD("log.dirs", c->data_directory);
#undef ADD
    return n;
}

static const char *pair_get(const struct topic_config_pair *p, int n, const char *key)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(p[i].key, key)) return p[i].value;
    return NULL;
}

static bool key_wanted(const kafka_DescribeConfigsRequest_DescribeConfigsResource *q,
                       const char *name)
{
    if (q->ConfigurationKeys_count < 0) return true; /* null: all */
    for (int32_t i = 0; i < q->ConfigurationKeys_count; i++) {
        kafka_str k = q->ConfigurationKeys[i];
        if (k.len >= 0 && (size_t)k.len == strlen(name) && !memcmp(k.ptr, name, (size_t)k.len))
            return true;
    }
    return false;
}

static int describe_topic(kafka_req *req, const topic *t,
                          const kafka_DescribeConfigsRequest_DescribeConfigsResource *q,
                          kafka_DescribeConfigsResponse_DescribeConfigsResult *r)
{
    const kafka_DescribeConfigsRequest *in = req->msg;
    int16_t v = req->api_version;
    size_t ndefs;
    const struct topic_config_def *defs = topic_config_defs(&ndefs);
    struct topic_config_set set;
    int rc = set_from_topic(t, &set);
    if (rc) return rc;
    struct topic_config_pair bp[16];
    int nbp = broker_pairs(req, bp, 16);
    kafka_DescribeConfigsResponse_DescribeConfigsResourceResult *cs =
        kafka_arena_alloc(&req->arena, sizeof(*cs) * ndefs);
    if (!cs) {
        topic_config_set_free(&set);
        return -ENOMEM;
    }
    int32_t n = 0;
    for (size_t i = 0; i < ndefs; i++) {
        if (!key_wanted(q, defs[i].name)) continue;
        struct topic_config_entry e;
        topic_config_describe(&set, bp, nbp, &defs[i], &e);
        kafka_DescribeConfigsResponse_DescribeConfigsResourceResult *c = &cs[n++];
        kafka_DescribeConfigsResponse_DescribeConfigsResourceResult_init(c);
        c->Name = kafka_str_from(e.name);
        c->Value = e.sensitive ? (kafka_str){NULL, -1} : arena_strdup(&req->arena, e.value);
        c->ReadOnly = e.read_only;
        if (v == 0) c->IsDefault = e.is_default;
        c->ConfigSource = e.source;
        c->IsSensitive = e.sensitive;
        c->ConfigType = e.type;
        c->Documentation =
            v >= 3 && in->IncludeDocumentation ? kafka_str_from(e.doc) : (kafka_str){NULL, -1};
        c->Synonyms_count = 0;
        if (v >= 1 && in->IncludeSynonyms && e.nsynonyms > 0) {
            kafka_DescribeConfigsResponse_DescribeConfigsSynonym *sy =
                kafka_arena_alloc(&req->arena, sizeof(*sy) * (size_t)e.nsynonyms);
            if (!sy) {
                topic_config_set_free(&set);
                return -ENOMEM;
            }
            for (int k = 0; k < e.nsynonyms; k++) {
                kafka_DescribeConfigsResponse_DescribeConfigsSynonym_init(&sy[k]);
                sy[k].Name = kafka_str_from(e.synonyms[k].name);
                sy[k].Value = arena_strdup(&req->arena, e.synonyms[k].value);
                sy[k].Source = e.synonyms[k].source;
            }
            c->Synonyms = sy;
            c->Synonyms_count = e.nsynonyms;
        }
    }
    topic_config_set_free(&set);
    r->Configs = cs;
    r->Configs_count = n;
    return 0;
}

static int describe_broker(kafka_req *req,
                           const kafka_DescribeConfigsRequest_DescribeConfigsResource *q,
                           kafka_DescribeConfigsResponse_DescribeConfigsResult *r)
{
    const kafka_DescribeConfigsRequest *in = req->msg;
    int16_t v = req->api_version;
    size_t ndefs;
    const struct broker_config_def *defs = broker_config_defs(&ndefs);
    struct topic_config_pair bp[16];
    int nbp = broker_pairs(req, bp, 16);
    kafka_DescribeConfigsResponse_DescribeConfigsResourceResult *cs =
        kafka_arena_alloc(&req->arena, sizeof(*cs) * (ndefs + 1));
    if (!cs) return -ENOMEM;
    int32_t n = 0;
    for (size_t i = 0; i < ndefs; i++) {
        if (!key_wanted(q, defs[i].name)) continue;
        const char *val = pair_get(bp, nbp, defs[i].name);
        bool is_static = val != NULL;
        if (!val) val = defs[i].default_value;
        kafka_DescribeConfigsResponse_DescribeConfigsResourceResult *c = &cs[n++];
        kafka_DescribeConfigsResponse_DescribeConfigsResourceResult_init(c);
        c->Name = kafka_str_from(defs[i].name);
        c->Value = defs[i].sensitive ? (kafka_str){NULL, -1} : arena_strdup(&req->arena, val);
        c->ReadOnly = defs[i].read_only;
        if (v == 0) c->IsDefault = !is_static;
        c->ConfigSource =
            is_static ? TOPIC_CONFIG_SOURCE_STATIC_BROKER : TOPIC_CONFIG_SOURCE_DEFAULT;
        c->IsSensitive = defs[i].sensitive;
        c->ConfigType = (int8_t)defs[i].type;
        c->Documentation = v >= 3 && in->IncludeDocumentation ? kafka_str_from(defs[i].doc)
                                                              : (kafka_str){NULL, -1};
        c->Synonyms_count = 0;
        if (v >= 1 && in->IncludeSynonyms) {
            kafka_DescribeConfigsResponse_DescribeConfigsSynonym *sy =
                kafka_arena_alloc(&req->arena, sizeof(*sy));
            if (!sy) return -ENOMEM;
            kafka_DescribeConfigsResponse_DescribeConfigsSynonym_init(sy);
            sy->Name = c->Name;
            sy->Value = c->Value;
            sy->Source = c->ConfigSource;
            c->Synonyms = sy;
            c->Synonyms_count = 1;
        }
    }
    r->Configs = cs;
    r->Configs_count = n;
    return 0;
}

/* True if the broker resource name designates this node ("" means the cluster default). */
static bool broker_name_ok(kafka_req *req, kafka_str name)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%" PRId32, req->broker->node_id);
    return name.len == 0 || (name.len == n && !memcmp(name.ptr, buf, (size_t)n));
}

int kafka_handle_describe_configs(kafka_req *req)
{
    const kafka_DescribeConfigsRequest *in = req->msg;
    data_shard *ds = data_shard_ensure(req->broker->cfg);
    if (!ds) return AL_ECLOSED;
    kafka_DescribeConfigsResponse out;
    kafka_DescribeConfigsResponse_init(&out);
    int32_t n = AL_MAX(in->Resources_count, 0);
    kafka_DescribeConfigsResponse_DescribeConfigsResult *rs =
        kafka_arena_alloc(&req->arena, sizeof(*rs) * (size_t)n);
    if (!rs) return -ENOMEM;
    for (int32_t i = 0; i < n; i++) {
        const kafka_DescribeConfigsRequest_DescribeConfigsResource *q = &in->Resources[i];
        kafka_DescribeConfigsResponse_DescribeConfigsResult *r = &rs[i];
        kafka_DescribeConfigsResponse_DescribeConfigsResult_init(r);
        r->ResourceType = q->ResourceType;
        r->ResourceName = q->ResourceName;
        r->ErrorMessage = (kafka_str){NULL, -1};
        r->Configs_count = 0;
        int rc = 0;
        if (q->ResourceType == RESOURCE_TOPIC) {
            const topic *t = q->ResourceName.len > 0
                                 ? topic_table_find(&ds->topics, q->ResourceName.ptr,
                                                    (size_t)q->ResourceName.len)
                                 : NULL;
            if (!t) {
                r->ErrorCode = KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION;
                r->ErrorMessage = kafka_str_from("Topic does not exist.");
                continue;
            }
            rc = describe_topic(req, t, q, r);
        } else if (q->ResourceType == RESOURCE_BROKER) {
            if (!broker_name_ok(req, q->ResourceName)) {
                r->ErrorCode = KAFKA_ERR_INVALID_REQUEST;
                r->ErrorMessage = kafka_str_from("Unexpected broker id.");
                continue;
            }
            rc = describe_broker(req, q, r);
        } else {
            r->ErrorCode = KAFKA_ERR_INVALID_REQUEST;
            r->ErrorMessage = kafka_str_from("Unsupported resource type.");
            continue;
        }
        if (rc) return rc;
    }
    out.Results = rs;
    out.Results_count = n;
    int rc = kafka_req_respond(req, &out);
    return rc < 0 ? rc : KAFKA_DONE;
}

/* ---- AlterConfigs and IncrementalAlterConfigs ---- */

/* One resource's answer slot; both alter responses have the same layout. */
struct alter_slot {
    int16_t *error;
    kafka_str *message;
};

struct alter_ctx {
    kafka_req *req;
    void *resp; /* kafka_AlterConfigsResponse or the incremental one */
    struct alter_slot *slots;
    int32_t *item_of;
    int32_t nres;
    struct data_topic_op op;
    struct data_inflight inflight;
};

static void alter_done(struct data_topic_op *op)
{
    struct alter_ctx *ctx = op->ctx;
    data_inflight_remove(data_shard_self(), &ctx->inflight);
    for (int32_t i = 0; i < ctx->nres; i++) {
        int32_t k = ctx->item_of[i];
        if (k < 0) continue;
        int err = op->items[k].err;
        if (err == AL_ENOTFOUND) {
            *ctx->slots[i].error = KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION;
        } else if (err) {
            *ctx->slots[i].error =
                err == AL_EINVAL ? KAFKA_ERR_INVALID_CONFIG : kafka_err_from_internal(err);
            *ctx->slots[i].message = arena_strdup(&ctx->req->arena, al_strerror(err));
        }
    }
    kafka_req_respond(ctx->req, ctx->resp);
}

/*
 * Common part: for resource i (type, name), checks it and, for a topic, computes the new
 * override set with `apply` (validating), queuing a REPLACE_CONFIGS item unless validate_only.
 */
typedef int (*alter_apply_fn)(kafka_req *req, int32_t i, struct topic_config_set *s,
                              bool validate_only, char *msg, size_t msglen);

static int alter_run(kafka_req *req, struct alter_ctx *ctx, const int8_t *types,
                     const kafka_str *names, bool validate_only, alter_apply_fn apply)
{
    data_shard *ds = data_shard_self();
    int32_t n = ctx->nres;
    struct data_topic_item *items = kafka_arena_alloc(&req->arena, sizeof(*items) * (size_t)n);
    ctx->item_of = kafka_arena_alloc(&req->arena, sizeof(int32_t) * (size_t)n);
    if (!items || !ctx->item_of) return -ENOMEM;
    memset(items, 0, sizeof(*items) * (size_t)n);
    int32_t k = 0;
    for (int32_t i = 0; i < n; i++) {
        ctx->item_of[i] = -1;
        char msg[512] = "";
        int16_t err = 0;
        if (types[i] == RESOURCE_BROKER) {
            if (!broker_name_ok(req, names[i])) {
                err = KAFKA_ERR_INVALID_REQUEST;
                snprintf(msg, sizeof(msg), "Unexpected broker id.");
            } else {
                /* Validate the keys the client names: unknown ones are INVALID_CONFIG. */
                int rc = apply(req, i, NULL, true, msg, sizeof(msg));
                err = rc == AL_ENOTFOUND ? KAFKA_ERR_INVALID_CONFIG : KAFKA_ERR_INVALID_REQUEST;
                if (rc != AL_ENOTFOUND)
                    snprintf(msg, sizeof(msg),
                             "Dynamic broker configuration changes are not "
                             "supported; set them in the broker's config file.");
            }
        } else if (types[i] != RESOURCE_TOPIC) {
            err = KAFKA_ERR_INVALID_REQUEST;
            snprintf(msg, sizeof(msg), "Unsupported resource type.");
        } else {
            const topic *t = names[i].len > 0
                                 ? topic_table_find(&ds->topics, names[i].ptr, (size_t)names[i].len)
                                 : NULL;
            if (!t) {
                err = KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION;
                snprintf(msg, sizeof(msg), "Topic does not exist.");
            } else {
                struct topic_config_set set;
                int rc = set_from_topic(t, &set);
                if (rc) return rc;
                rc = apply(req, i, &set, validate_only, msg, sizeof(msg));
                if (rc == -ENOMEM) {
                    topic_config_set_free(&set);
                    return rc;
                }
                if (rc) {
                    err = rc == AL_EINVAL && strstr(msg, "duplicate") ? KAFKA_ERR_INVALID_REQUEST
                                                                      : KAFKA_ERR_INVALID_CONFIG;
                } else if (!validate_only) {
                    topic_config_kv *kv;
                    int nkv = set_to_kv(&req->arena, &set, &kv);
                    if (nkv < 0) {
                        err = KAFKA_ERR_INVALID_CONFIG;
                        snprintf(msg, sizeof(msg), "Too many or too long configs.");
                    } else {
                        snprintf(items[k].name, sizeof(items[k].name), "%s", t->name);
                        items[k].configs = kv;
                        items[k].n_configs = nkv;
                        ctx->item_of[i] = k++;
                    }
                }
                topic_config_set_free(&set);
            }
        }
        if (err) {
            *ctx->slots[i].error = err;
            *ctx->slots[i].message = arena_strdup(&req->arena, msg);
        }
    }
    ctx->op.kind = DATA_OP_REPLACE_CONFIGS;
    ctx->op.items = items;
    ctx->op.n = k;
    ctx->op.done = alter_done;
    ctx->op.ctx = ctx;
    if (k == 0) {
        int rc = kafka_req_respond(req, ctx->resp);
        return rc < 0 ? rc : KAFKA_DONE;
    }
    data_inflight_add(ds, &ctx->inflight);
    int rc = data_topic_submit(ds, &ctx->op);
    return rc ? rc : KAFKA_DEFERRED;
}

/* Copies a wire string to a NUL-terminated arena string (NULL for null). */
static const char *arena_cstr(kafka_arena *a, kafka_str s)
{
    if (s.len < 0) return NULL;
    char *p = kafka_arena_alloc(a, (size_t)s.len + 1);
    if (!p) return NULL;
    memcpy(p, s.ptr, (size_t)s.len);
    p[s.len] = 0;
    return p;
}

static int alter_apply_legacy(kafka_req *req, int32_t i, struct topic_config_set *s,
                              bool validate_only, char *msg, size_t msglen)
{
    const kafka_AlterConfigsRequest *in = req->msg;
    const kafka_AlterConfigsRequest_AlterConfigsResource *q = &in->Resources[i];
    int32_t n = AL_MAX(q->Configs_count, 0);
    struct topic_config_pair *pairs =
        kafka_arena_alloc(&req->arena, sizeof(*pairs) * (size_t)AL_MAX(n, 1));
    if (!pairs) return -ENOMEM;
    for (int32_t c = 0; c < n; c++) {
        pairs[c].key = arena_cstr(&req->arena, q->Configs[c].Name);
        pairs[c].value = arena_cstr(&req->arena, q->Configs[c].Value);
        if (!pairs[c].key) return -ENOMEM;
    }
    if (!s) { /* broker: only report unknown keys */
        for (int32_t c = 0; c < n; c++) {
            if (!broker_config_find(pairs[c].key)) {
                snprintf(msg, msglen, "Unknown broker configuration %s.", pairs[c].key);
                return AL_ENOTFOUND;
            }
        }
        return AL_EINVAL;
    }
    return topic_config_replace(s, pairs, n, validate_only, msg, msglen);
}

int kafka_handle_alter_configs(kafka_req *req)
{
    const kafka_AlterConfigsRequest *in = req->msg;
    if (!data_shard_ensure(req->broker->cfg)) return AL_ECLOSED;
    struct alter_ctx *ctx = kafka_arena_alloc(&req->arena, sizeof(*ctx));
    kafka_AlterConfigsResponse *resp = kafka_arena_alloc(&req->arena, sizeof(*resp));
    int32_t n = AL_MAX(in->Resources_count, 0);
    kafka_AlterConfigsResponse_AlterConfigsResourceResponse *rs =
        kafka_arena_alloc(&req->arena, sizeof(*rs) * (size_t)n);
    struct alter_slot *slots = kafka_arena_alloc(&req->arena, sizeof(*slots) * (size_t)n);
    int8_t *types = kafka_arena_alloc(&req->arena, (size_t)AL_MAX(n, 1));
    kafka_str *names = kafka_arena_alloc(&req->arena, sizeof(*names) * (size_t)n);
    if (!ctx || !resp || !rs || !slots || !types || !names) return -ENOMEM;
    memset(ctx, 0, sizeof(*ctx));
    kafka_AlterConfigsResponse_init(resp);
    resp->Responses = rs;
    resp->Responses_count = n;
    for (int32_t i = 0; i < n; i++) {
        kafka_AlterConfigsResponse_AlterConfigsResourceResponse_init(&rs[i]);
        rs[i].ResourceType = in->Resources[i].ResourceType;
        rs[i].ResourceName = in->Resources[i].ResourceName;
        rs[i].ErrorMessage = (kafka_str){NULL, -1};
        slots[i].error = &rs[i].ErrorCode;
        slots[i].message = &rs[i].ErrorMessage;
        types[i] = in->Resources[i].ResourceType;
        names[i] = in->Resources[i].ResourceName;
    }
    ctx->req = req;
    ctx->resp = resp;
    ctx->slots = slots;
    ctx->nres = n;
    return alter_run(req, ctx, types, names, in->ValidateOnly, alter_apply_legacy);
}

static int alter_apply_incremental(kafka_req *req, int32_t i, struct topic_config_set *s,
                                   bool validate_only, char *msg, size_t msglen)
{
    const kafka_IncrementalAlterConfigsRequest *in = req->msg;
    const kafka_IncrementalAlterConfigsRequest_AlterConfigsResource *q = &in->Resources[i];
    int32_t n = AL_MAX(q->Configs_count, 0);
    struct topic_config_alter_op *ops =
        kafka_arena_alloc(&req->arena, sizeof(*ops) * (size_t)AL_MAX(n, 1));
    if (!ops) return -ENOMEM;
    for (int32_t c = 0; c < n; c++) {
        ops[c].key = arena_cstr(&req->arena, q->Configs[c].Name);
        ops[c].value = arena_cstr(&req->arena, q->Configs[c].Value);
        ops[c].op = q->Configs[c].ConfigOperation;
        if (!ops[c].key) return -ENOMEM;
        if (ops[c].op < TOPIC_CONFIG_OP_SET || ops[c].op > TOPIC_CONFIG_OP_SUBTRACT) {
            snprintf(msg, msglen, "Unknown config operation %d for %s.", ops[c].op, ops[c].key);
            return AL_EINVAL;
        }
    }
    if (!s) {
        for (int32_t c = 0; c < n; c++) {
            if (!broker_config_find(ops[c].key)) {
                snprintf(msg, msglen, "Unknown broker configuration %s.", ops[c].key);
                return AL_ENOTFOUND;
            }
        }
        return AL_EINVAL;
    }
    return topic_config_alter_incremental(s, ops, n, validate_only, msg, msglen);
}

int kafka_handle_incremental_alter_configs(kafka_req *req)
{
    const kafka_IncrementalAlterConfigsRequest *in = req->msg;
    if (!data_shard_ensure(req->broker->cfg)) return AL_ECLOSED;
    struct alter_ctx *ctx = kafka_arena_alloc(&req->arena, sizeof(*ctx));
    kafka_IncrementalAlterConfigsResponse *resp = kafka_arena_alloc(&req->arena, sizeof(*resp));
    int32_t n = AL_MAX(in->Resources_count, 0);
    kafka_IncrementalAlterConfigsResponse_AlterConfigsResourceResponse *rs =
        kafka_arena_alloc(&req->arena, sizeof(*rs) * (size_t)n);
    struct alter_slot *slots = kafka_arena_alloc(&req->arena, sizeof(*slots) * (size_t)n);
    int8_t *types = kafka_arena_alloc(&req->arena, (size_t)AL_MAX(n, 1));
    kafka_str *names = kafka_arena_alloc(&req->arena, sizeof(*names) * (size_t)n);
    if (!ctx || !resp || !rs || !slots || !types || !names) return -ENOMEM;
    memset(ctx, 0, sizeof(*ctx));
    kafka_IncrementalAlterConfigsResponse_init(resp);
    resp->Responses = rs;
    resp->Responses_count = n;
    for (int32_t i = 0; i < n; i++) {
        kafka_IncrementalAlterConfigsResponse_AlterConfigsResourceResponse_init(&rs[i]);
        rs[i].ResourceType = in->Resources[i].ResourceType;
        rs[i].ResourceName = in->Resources[i].ResourceName;
        rs[i].ErrorMessage = (kafka_str){NULL, -1};
        slots[i].error = &rs[i].ErrorCode;
        slots[i].message = &rs[i].ErrorMessage;
        types[i] = in->Resources[i].ResourceType;
        names[i] = in->Resources[i].ResourceName;
    }
    ctx->req = req;
    ctx->resp = resp;
    ctx->slots = slots;
    ctx->nres = n;
    return alter_run(req, ctx, types, names, in->ValidateOnly, alter_apply_incremental);
}
