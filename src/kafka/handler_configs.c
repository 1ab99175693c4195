/*
 * handler_configs.c — DescribeConfigs v0-4, AlterConfigs v0-2 and IncrementalAlterConfigs v0-1
 * for TOPIC (2) and BROKER (4) resources.
 *
 * Topics: the entries, sources, synonyms and documentation come from cluster/topic_config (all
 * Kafka 3.8 topic keys); a value the topic does not override is inherited from the broker-level
 * default (source DYNAMIC_DEFAULT_BROKER_CONFIG when set through AlterConfigs or the admin API,
 * STATIC_BROKER_CONFIG from the config file, environment or flags, else DEFAULT_CONFIG).
 * Alterations are validated there on a copy of the topic's overrides (an unknown key or bad value
 * is INVALID_CONFIG with Kafka's message), and the resulting override set is stored through
 * data_topic_submit (shard 0, persisted in topics.json, copied to every shard, applied to open
 * partitions) before the answer. validate_only checks without storing.
 *
 * Brokers: resource name "" is the cluster-wide default (kafka-configs --entity-default), our
 * node id ("0") is this broker; on one node both name the same values, the broker's cluster
 * configuration (config/config.c), whose keys carry their Kafka names (config_key.kafka).
 * DescribeConfigs "" lists the values set dynamically (as Kafka); the node id lists every
 * broker key of cluster/topic_config's table with its value and source. Alterations accept the
 * live keys (config_key.live), validate them like the topic config they default
 * (broker_config_check) and against the config table (config_change on a copy), and go through
 * a DATA_OP_CLUSTER_CONFIG op: shard 0 applies them, saves cluster_config.json (the admin API's
 * store, config_save_admin), every shard adopts them and re-resolves its partitions, then the
 * request is answered. IncrementalAlterConfigs DELETE (and a key left out of a legacy
 * AlterConfigs, which replaces every dynamic value) restores the start-up value. An unknown key,
 * a key that needs a restart, or one this broker got from its environment or command line
 * (those win over stored changes at the next start) is INVALID_CONFIG naming the key.
 *
 * Cluster mode: the op goes to the controller (data_topic_hook: proposed on the controller
 * leader as SET_CLUSTER_CONFIG, forwarded there from any other node), so the values are
 * cluster-wide: every node, including one that was down or joins later, installs them when it
 * applies the command (src/cluster/cluster.c), and the answer waits until the command is
 * committed and installed on this node. The node id resource names this broker, as in Kafka
 * (clients send it to that broker), but the change applies to every node. No controller
 * leader reachable: NOT_CONTROLLER (retriable).
 */
#include "kafka/handlers_data.h"

#include "base/log.h"
#include "cluster/data_plane.h"
#include "cluster/topic_config.h"
#include "config/config.h"

#include <inttypes.h>
#include <stddef.h>
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

/* Copies a wire string to a NUL-terminated arena string (NULL for null or out of memory). */
static const char *arena_cstr(kafka_arena *a, kafka_str s)
{
    if (s.len < 0) return NULL;
    char *p = kafka_arena_alloc(a, (size_t)s.len + 1);
    if (!p) return NULL;
    memcpy(p, s.ptr, (size_t)s.len);
    p[s.len] = 0;
    return p;
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

/* True if the broker resource name designates this node ("" means the cluster default). */
static bool broker_name_ok(kafka_req *req, kafka_str name)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%" PRId32, req->broker->node_id);
    return name.len == 0 || (name.len == n && !memcmp(name.ptr, buf, (size_t)n));
}

/* ---- DescribeConfigs ---- */

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

/* Fills one result entry from e (synonyms copied when the request asks for them). */
static int describe_entry(kafka_req *req, const struct topic_config_entry *e,
                          kafka_DescribeConfigsResponse_DescribeConfigsResourceResult *c)
{
    const kafka_DescribeConfigsRequest *in = req->msg;
    int16_t v = req->api_version;
    kafka_DescribeConfigsResponse_DescribeConfigsResourceResult_init(c);
    c->Name = kafka_str_from(e->name);
    c->Value = e->sensitive ? (kafka_str){NULL, -1} : arena_strdup(&req->arena, e->value);
    c->ReadOnly = e->read_only;
    if (v == 0) c->IsDefault = e->is_default;
    c->ConfigSource = e->source;
    c->IsSensitive = e->sensitive;
    c->ConfigType = e->type;
    c->Documentation = v >= 3 && in->IncludeDocumentation && e->doc ? kafka_str_from(e->doc)
                                                                    : (kafka_str){NULL, -1};
    c->Synonyms_count = 0;
    if (v < 1 || !in->IncludeSynonyms || e->nsynonyms == 0) return 0;
    kafka_DescribeConfigsResponse_DescribeConfigsSynonym *sy =
        kafka_arena_alloc(&req->arena, sizeof(*sy) * (size_t)e->nsynonyms);
    if (!sy) return -ENOMEM;
    for (int k = 0; k < e->nsynonyms; k++) {
        kafka_DescribeConfigsResponse_DescribeConfigsSynonym_init(&sy[k]);
        sy[k].Name = kafka_str_from(e->synonyms[k].name);
        sy[k].Value = e->sensitive ? (kafka_str){NULL, -1}
                                   : arena_strdup(&req->arena, e->synonyms[k].value);
        sy[k].Source = e->synonyms[k].source;
    }
    c->Synonyms = sy;
    c->Synonyms_count = e->nsynonyms;
    return 0;
}

static int describe_topic(kafka_req *req, data_shard *ds, const topic *t,
                          const kafka_DescribeConfigsRequest_DescribeConfigsResource *q,
                          kafka_DescribeConfigsResponse_DescribeConfigsResult *r)
{
    size_t ndefs;
    const struct topic_config_def *defs = topic_config_defs(&ndefs);
    struct topic_config_set set;
    int rc = set_from_topic(t, &set);
    if (rc) return rc;
    kafka_DescribeConfigsResponse_DescribeConfigsResourceResult *cs =
        kafka_arena_alloc(&req->arena, sizeof(*cs) * ndefs);
    if (!cs) rc = -ENOMEM;
    int32_t n = 0;
    for (size_t i = 0; rc == 0 && i < ndefs; i++) {
        if (!key_wanted(q, defs[i].name)) continue;
        struct topic_config_entry e;
        topic_config_describe(&set, &ds->defaults, &defs[i], &e);
        rc = describe_entry(req, &e, &cs[n++]); /* copies the values out of set */
    }
    topic_config_set_free(&set);
    r->Configs = cs;
    r->Configs_count = n;
    return rc;
}

/*
 * The entry of broker key def: its value in the live configuration when a config-table key
 * carries its name, else the table's default. Synonyms as Kafka lists them for one name: the
 * dynamic value, the start-up (static) value, the default. per_node false (resource ""): only
 * dynamic values are listed; returns false for a key to leave out.
 */
static bool broker_entry(kafka_req *req, data_shard *ds, const al_config *defaults,
                         const struct broker_config_def *def, bool per_node,
                         struct topic_config_entry *e)
{
    memset(e, 0, sizeof(*e));
    e->name = def->name;
    e->type = (int8_t)def->type;
    e->doc = def->doc;
    e->read_only = def->read_only;
    e->sensitive = def->sensitive;
    const struct config_key *k = config_find_kafka(def->name);
    int8_t src = k ? broker_config_source(&ds->cluster_cfg, k) : TOPIC_CONFIG_SOURCE_DEFAULT;
    if (!per_node && src != TOPIC_CONFIG_SOURCE_DYNAMIC_DEFAULT_BROKER) return false;
    if (!k) {
        e->synonyms[e->nsynonyms++] =
            (struct topic_config_synonym){def->name, def->default_value, src};
    } else {
        char buf[CONFIG_PATH_MAX + 64];
        if (src == TOPIC_CONFIG_SOURCE_DYNAMIC_DEFAULT_BROKER) {
            config_format(&ds->cluster_cfg, k, buf, sizeof(buf));
            e->synonyms[e->nsynonyms++] = (struct topic_config_synonym){
                def->name, arena_strdup(&req->arena, buf).ptr, src};
        }
        int8_t start_src = broker_config_source(ds->cfg, k);
        if (per_node && start_src == TOPIC_CONFIG_SOURCE_STATIC_BROKER) {
            config_format(ds->cfg, k, buf, sizeof(buf));
            e->synonyms[e->nsynonyms++] = (struct topic_config_synonym){
                def->name, arena_strdup(&req->arena, buf).ptr, start_src};
        }
        if (per_node) {
            config_format(defaults, k, buf, sizeof(buf));
            e->synonyms[e->nsynonyms++] = (struct topic_config_synonym){
                def->name, arena_strdup(&req->arena, buf).ptr, TOPIC_CONFIG_SOURCE_DEFAULT};
        }
    }
    e->value = e->synonyms[0].value;
    e->source = e->synonyms[0].source;
    e->is_default = e->source == TOPIC_CONFIG_SOURCE_DEFAULT;
    return true;
}

static int describe_broker(kafka_req *req, data_shard *ds,
                           const kafka_DescribeConfigsRequest_DescribeConfigsResource *q,
                           kafka_DescribeConfigsResponse_DescribeConfigsResult *r)
{
    size_t ndefs;
    const struct broker_config_def *defs = broker_config_defs(&ndefs);
    al_config *defaults = kafka_arena_alloc(&req->arena, sizeof(*defaults));
    kafka_DescribeConfigsResponse_DescribeConfigsResourceResult *cs =
        kafka_arena_alloc(&req->arena, sizeof(*cs) * ndefs);
    if (!defaults || !cs) return -ENOMEM;
    config_init(defaults);
    bool per_node = q->ResourceName.len > 0;
    int32_t n = 0;
    for (size_t i = 0; i < ndefs; i++) {
        if (!key_wanted(q, defs[i].name)) continue;
        struct topic_config_entry e;
        if (!broker_entry(req, ds, defaults, &defs[i], per_node, &e)) continue;
        int rc = describe_entry(req, &e, &cs[n++]);
        if (rc) return rc;
    }
    r->Configs = cs;
    r->Configs_count = n;
    return 0;
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
            rc = describe_topic(req, ds, t, q, r);
        } else if (q->ResourceType == RESOURCE_BROKER) {
            if (!broker_name_ok(req, q->ResourceName)) {
                r->ErrorCode = KAFKA_ERR_INVALID_REQUEST;
                r->ErrorMessage = kafka_str_from("Unexpected broker id.");
                continue;
            }
            rc = describe_broker(req, ds, q, r);
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

/*
 * Both alter responses have the same per-resource result; the incremental one is handled
 * through the legacy type (checked here), so one path assembles both answers.
 */
typedef kafka_AlterConfigsResponse_AlterConfigsResourceResponse alter_result;
typedef kafka_IncrementalAlterConfigsResponse_AlterConfigsResourceResponse alter_result_inc;
#define SAME_FIELD(f)                                                                              \
    (offsetof(alter_result, f) == offsetof(alter_result_inc, f) &&                                 \
     sizeof(((alter_result *)0)->f) == sizeof(((alter_result_inc *)0)->f))
_Static_assert(sizeof(alter_result) == sizeof(alter_result_inc) && SAME_FIELD(ErrorCode) &&
                   SAME_FIELD(ErrorMessage) && SAME_FIELD(ResourceType) &&
                   SAME_FIELD(ResourceName),
               "the two AlterConfigs results must share a layout");

/* One resource of either request, in one form: legacy configs become SET operations. */
struct alter_res {
    int8_t type;
    kafka_str name;
    int32_t n;
    struct topic_config_alter_op *ops;
};

struct alter_ctx {
    kafka_req *req;
    void *resp; /* kafka_AlterConfigsResponse or the incremental one */
    alter_result *results;
    struct alter_res *res;
    int32_t nres;
    bool replace; /* AlterConfigs: the listed configs replace every override / dynamic value */
    bool validate_only;
    int32_t *item_of; /* per resource: its item in op (topic) or cop (broker), or -1 */
    int pending;      /* ops submitted and not done */
    struct data_topic_op op;  /* topic override sets (DATA_OP_REPLACE_CONFIGS) */
    struct data_topic_op cop; /* broker changes (DATA_OP_CLUSTER_CONFIG) */
    struct data_inflight inflight;
};

static void alter_fail(alter_result *r, kafka_req *req, int16_t code, const char *msg)
{
    r->ErrorCode = code;
    r->ErrorMessage = arena_strdup(&req->arena, msg);
}

static void alter_done(struct data_topic_op *op)
{
    struct alter_ctx *ctx = op->ctx;
    if (--ctx->pending > 0) return;
    data_inflight_remove(data_shard_self(), &ctx->inflight);
    for (int32_t i = 0; i < ctx->nres; i++) {
        int32_t k = ctx->item_of[i];
        if (k < 0) continue;
        const struct data_topic_op *o = ctx->res[i].type == RESOURCE_BROKER ? &ctx->cop : &ctx->op;
        int err = o->items[k].err;
        if (err == AL_ENOTFOUND && o == &ctx->op)
            ctx->results[i].ErrorCode = KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION;
        else if (err)
            alter_fail(&ctx->results[i], ctx->req,
                       err == AL_EINVAL || err == AL_ENOTFOUND ? KAFKA_ERR_INVALID_CONFIG
                                                               : kafka_err_from_internal(err),
                       al_strerror(err));
    }
    kafka_req_respond(ctx->req, ctx->resp);
}

/* A topic resource: computes its new override set and queues it in items[*k]. Returns 0
 * (refusals recorded in r) or -ENOMEM. */
static int alter_topic(struct alter_ctx *ctx, int32_t i, struct data_topic_item *items, int32_t *k)
{
    kafka_req *req = ctx->req;
    const struct alter_res *q = &ctx->res[i];
    alter_result *r = &ctx->results[i];
    data_shard *ds = data_shard_self();
    const topic *t =
        q->name.len > 0 ? topic_table_find(&ds->topics, q->name.ptr, (size_t)q->name.len) : NULL;
    if (!t) {
        alter_fail(r, req, KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION, "Topic does not exist.");
        return 0;
    }
    struct topic_config_set set;
    int rc = set_from_topic(t, &set);
    if (rc) return rc;
    char msg[512] = "";
    if (ctx->replace) {
        struct topic_config_pair *pairs =
            kafka_arena_alloc(&req->arena, sizeof(*pairs) * (size_t)AL_MAX(q->n, 1));
        rc = pairs ? 0 : -ENOMEM;
        for (int32_t c = 0; pairs && c < q->n; c++)
            pairs[c] = (struct topic_config_pair){q->ops[c].key, q->ops[c].value};
        if (pairs)
            rc = topic_config_replace(&set, pairs, q->n, ctx->validate_only, msg, sizeof(msg));
    } else {
        rc = topic_config_alter_incremental(&set, q->ops, q->n, ctx->validate_only, msg,
                                            sizeof(msg));
    }
    if (rc == -ENOMEM) goto out;
    if (rc) {
        alter_fail(r, req, rc == AL_EINVAL && strstr(msg, "duplicate") ? KAFKA_ERR_INVALID_REQUEST
                                                                         : KAFKA_ERR_INVALID_CONFIG,
                   msg);
        rc = 0;
    } else if (!ctx->validate_only) {
        topic_config_kv *kv;
        int nkv = set_to_kv(&req->arena, &set, &kv);
        if (nkv == -ENOMEM) {
            rc = nkv;
        } else if (nkv < 0) {
            alter_fail(r, req, KAFKA_ERR_INVALID_CONFIG, "Too many or too long configs.");
        } else {
            snprintf(items[*k].name, sizeof(items[*k].name), "%s", t->name);
            items[*k].configs = kv;
            items[*k].n_configs = nkv;
            ctx->item_of[i] = (*k)++;
        }
    }
out:
    topic_config_set_free(&set);
    return rc;
}

/*
 * One change of a broker resource: checks it against the copy next of the live configuration
 * (applying it there) and returns the config-table key and value (NULL: reset). Returns 0, or
 * a Kafka error code with msg set.
 */
static int16_t broker_change(const struct topic_config_alter_op *o, al_config *next,
                             const al_config *start, const struct config_key **key,
                             const char **value, char *buf, size_t cap, char *msg, size_t msglen)
{
    const struct config_key *k = config_find_kafka(o->key);
    const struct broker_config_def *bd = broker_config_find(o->key);
    if (!k) {
        snprintf(msg, msglen, "Unknown broker configuration %s (the dynamic ones are listed by "
                 "DescribeConfigs with read_only false).", o->key);
        return KAFKA_ERR_INVALID_CONFIG;
    }
    if (!k->live) {
        snprintf(msg, msglen, "Cannot update these configs dynamically: Set(%s); set %s in the "
                 "broker's config file and restart it.", o->key, k->name);
        return KAFKA_ERR_INVALID_CONFIG;
    }
    uint8_t start_src = start->source[k - config_keys];
    if (o->op != TOPIC_CONFIG_OP_DELETE &&
        (start_src == CONFIG_SRC_ENV || start_src == CONFIG_SRC_FLAG)) {
        /* env and flags win over stored changes at the next start: refuse a silent revert */
        snprintf(msg, msglen, "%s is set by this broker's %s (%s), which would win again at its "
                 "next start; change it there, or remove it there to manage it dynamically.",
                 o->key, start_src == CONFIG_SRC_ENV ? "environment" : "command line", k->name);
        return KAFKA_ERR_INVALID_CONFIG;
    }
    *key = k;
    *value = NULL;
    switch (o->op) {
    case TOPIC_CONFIG_OP_SET:
        if (!o->value) {
            snprintf(msg, msglen, "Null value not supported for : %s", o->key);
            return KAFKA_ERR_INVALID_CONFIG;
        }
        *value = o->value;
        break;
    case TOPIC_CONFIG_OP_DELETE: break;
    case TOPIC_CONFIG_OP_APPEND:
    case TOPIC_CONFIG_OP_SUBTRACT: {
        if (!bd || bd->type != TOPIC_CONFIG_TYPE_LIST) {
            snprintf(msg, msglen, "Config value %s is not allowed for config key: %s",
                     o->op == TOPIC_CONFIG_OP_APPEND ? "append" : "subtract", o->key);
            return KAFKA_ERR_INVALID_CONFIG;
        }
        char cur[CONFIG_PATH_MAX + 64];
        config_format(next, k, cur, sizeof(cur));
        if (topic_config_list_apply(cur, o->value, o->op, buf, cap)) {
            snprintf(msg, msglen, "Invalid value %.64s for configuration %.64s",
                     o->value ? o->value : "null", o->key);
            return KAFKA_ERR_INVALID_CONFIG;
        }
        *value = buf;
        break;
    }
    default:
        snprintf(msg, msglen, "Unknown config operation %d for %s.", o->op, o->key);
        return KAFKA_ERR_INVALID_REQUEST;
    }
    if (*value && broker_config_check(o->key, *value, msg, msglen)) return KAFKA_ERR_INVALID_CONFIG;
    char err[512];
    if (config_change(next, start, k->name, *value, err, sizeof(err))) {
        snprintf(msg, msglen, "Invalid value %.64s for configuration %.64s: %.400s",
                 *value ? *value : "", o->key, err);
        return KAFKA_ERR_INVALID_CONFIG;
    }
    return 0;
}

/* Adds (key, value or reset) to the item's change list (capacity checked by the caller). */
static void item_add(struct data_topic_item *it, topic_config_kv *kv, bool *del, const char *key,
                     const char *value)
{
    int32_t j = it->n_configs++;
    snprintf(kv[j].key, sizeof(kv[j].key), "%s", key);
    snprintf(kv[j].value, sizeof(kv[j].value), "%s", value ? value : "");
    del[j] = value == NULL;
}

/* A broker resource: validates its changes on a copy of the live configuration and queues
 * them in items[*k]. Returns 0 (refusals recorded in r) or -ENOMEM. */
static int alter_broker(struct alter_ctx *ctx, int32_t i, struct data_topic_item *items,
                        int32_t *k)
{
    kafka_req *req = ctx->req;
    const struct alter_res *q = &ctx->res[i];
    alter_result *r = &ctx->results[i];
    data_shard *ds = data_shard_self();
    if (!broker_name_ok(req, q->name)) {
        alter_fail(r, req, KAFKA_ERR_INVALID_REQUEST, "Unexpected broker id.");
        return 0;
    }
    size_t cap = (size_t)q->n + config_key_count;
    al_config *next = kafka_arena_alloc(&req->arena, sizeof(*next));
    topic_config_kv *kv = kafka_arena_alloc(&req->arena, sizeof(*kv) * cap);
    bool *del = kafka_arena_alloc(&req->arena, sizeof(*del) * cap);
    if (!next || !kv || !del) return -ENOMEM;
    *next = ds->cluster_cfg;
    struct data_topic_item *it = &items[*k];
    it->n_configs = 0;
    char msg[600], buf[TOPIC_CONFIG_VALUE_MAX];
    for (int32_t c = 0; c < q->n; c++) {
        const struct topic_config_alter_op *o = &q->ops[c];
        if (ctx->replace && !o->value) continue; /* null: not set, as Kafka */
        for (int32_t d = 0; d < c; d++) {
            if (!strcmp(q->ops[d].key, o->key)) {
                snprintf(msg, sizeof(msg), "Error due to duplicate config keys: %s", o->key);
                alter_fail(r, req, KAFKA_ERR_INVALID_REQUEST, msg);
                return 0;
            }
        }
        const struct config_key *key;
        const char *value;
        int16_t err = broker_change(o, next, ds->cfg, &key, &value, buf, sizeof(buf), msg,
                                    sizeof(msg));
        if (err) {
            alter_fail(r, req, err, msg);
            return 0;
        }
        item_add(it, kv, del, key->name, value);
    }
    if (ctx->replace) { /* every other dynamic value goes back to its start-up value */
        for (size_t j = 0; j < config_key_count; j++) {
            const struct config_key *key = &config_keys[j];
            if (!key->kafka || !key->live || ds->cluster_cfg.source[j] != CONFIG_SRC_ADMIN)
                continue;
            bool listed = false;
            for (int32_t c = 0; c < q->n && !listed; c++)
                listed = q->ops[c].value && config_find_kafka(q->ops[c].key) == key;
            if (!listed) item_add(it, kv, del, key->name, NULL);
        }
    }
    if (ctx->validate_only || it->n_configs == 0) return 0;
    snprintf(it->name, sizeof(it->name), "broker %.*s", (int)q->name.len, q->name.ptr);
    it->configs = kv;
    it->del = del;
    ctx->item_of[i] = (*k)++;
    return 0;
}

/* Checks every resource and submits the changes (one op for topics, one for brokers); the
 * answer goes out when both are done. Returns a handler result. */
static int alter_run(struct alter_ctx *ctx)
{
    kafka_req *req = ctx->req;
    data_shard *ds = data_shard_self();
    int32_t n = ctx->nres;
    struct data_topic_item *items = kafka_arena_alloc(&req->arena, sizeof(*items) * (size_t)n);
    struct data_topic_item *bitems = kafka_arena_alloc(&req->arena, sizeof(*items) * (size_t)n);
    ctx->item_of = kafka_arena_alloc(&req->arena, sizeof(int32_t) * (size_t)n);
    if (!items || !bitems || !ctx->item_of) return -ENOMEM;
    memset(items, 0, sizeof(*items) * (size_t)n);
    memset(bitems, 0, sizeof(*bitems) * (size_t)n);
    int32_t k = 0, bk = 0;
    for (int32_t i = 0; i < n; i++) {
        ctx->item_of[i] = -1;
        int rc = 0;
        if (ctx->res[i].type == RESOURCE_TOPIC)
            rc = alter_topic(ctx, i, items, &k);
        else if (ctx->res[i].type == RESOURCE_BROKER)
            rc = alter_broker(ctx, i, bitems, &bk);
        else
            alter_fail(&ctx->results[i], req, KAFKA_ERR_INVALID_REQUEST,
                       "Unsupported resource type.");
        if (rc) return rc;
    }
    ctx->op = (struct data_topic_op){.kind = DATA_OP_REPLACE_CONFIGS, .items = items, .n = k,
                                     .done = alter_done, .ctx = ctx};
    ctx->cop = (struct data_topic_op){.kind = DATA_OP_CLUSTER_CONFIG, .items = bitems, .n = bk,
                                      .done = alter_done, .ctx = ctx};
    ctx->pending = (k > 0) + (bk > 0);
    if (ctx->pending == 0) {
        int rc = kafka_req_respond(req, ctx->resp);
        return rc < 0 ? rc : KAFKA_DONE;
    }
    data_inflight_add(ds, &ctx->inflight);
    int rc = k > 0 ? data_topic_submit(ds, &ctx->op) : 0;
    if (rc == 0 && bk > 0) rc = data_topic_submit(ds, &ctx->cop);
    return rc ? rc : KAFKA_DEFERRED;
}

/* Allocates the context and the common form of n resources, and initialises the results'
 * common fields from types/names. NULL: out of memory. */
static struct alter_ctx *alter_new(kafka_req *req, void *resp, alter_result *results, int32_t n)
{
    struct alter_ctx *ctx = kafka_arena_alloc(&req->arena, sizeof(*ctx));
    struct alter_res *res = kafka_arena_alloc(&req->arena, sizeof(*res) * (size_t)AL_MAX(n, 1));
    if (!ctx || !res || !resp || !results) return NULL;
    memset(ctx, 0, sizeof(*ctx));
    memset(res, 0, sizeof(*res) * (size_t)AL_MAX(n, 1));
    ctx->req = req;
    ctx->resp = resp;
    ctx->results = results;
    ctx->res = res;
    ctx->nres = n;
    return ctx;
}

/* Fills result i's common fields and allocates resource i's operations. -ENOMEM or 0. */
static int alter_res_init(struct alter_ctx *ctx, int32_t i, int8_t type, kafka_str name,
                          int32_t nconfigs)
{
    alter_result *r = &ctx->results[i];
    r->ErrorCode = 0;
    r->ErrorMessage = (kafka_str){NULL, -1};
    r->ResourceType = type;
    r->ResourceName = name;
    struct alter_res *q = &ctx->res[i];
    q->type = type;
    q->name = name;
    q->n = AL_MAX(nconfigs, 0);
    q->ops = kafka_arena_alloc(&ctx->req->arena, sizeof(*q->ops) * (size_t)AL_MAX(q->n, 1));
    return q->ops ? 0 : -ENOMEM;
}

/* Sets operation c of resource i from the wire (name, value copied). 0 or -ENOMEM. */
static int alter_op_set(struct alter_ctx *ctx, int32_t i, int32_t c, kafka_str name,
                        kafka_str value, int op)
{
    struct topic_config_alter_op *o = &ctx->res[i].ops[c];
    o->key = arena_cstr(&ctx->req->arena, name);
    o->value = arena_cstr(&ctx->req->arena, value);
    o->op = op;
    return o->key && (value.len < 0 || o->value) ? 0 : -ENOMEM;
}

int kafka_handle_alter_configs(kafka_req *req)
{
    const kafka_AlterConfigsRequest *in = req->msg;
    if (!data_shard_ensure(req->broker->cfg)) return AL_ECLOSED;
    int32_t n = AL_MAX(in->Resources_count, 0);
    kafka_AlterConfigsResponse *resp = kafka_arena_alloc(&req->arena, sizeof(*resp));
    alter_result *rs = kafka_arena_alloc(&req->arena, sizeof(*rs) * (size_t)AL_MAX(n, 1));
    struct alter_ctx *ctx = alter_new(req, resp, rs, n);
    if (!ctx) return -ENOMEM;
    kafka_AlterConfigsResponse_init(resp);
    resp->Responses = rs;
    resp->Responses_count = n;
    ctx->replace = true;
    ctx->validate_only = in->ValidateOnly;
    for (int32_t i = 0; i < n; i++) {
        const kafka_AlterConfigsRequest_AlterConfigsResource *q = &in->Resources[i];
        kafka_AlterConfigsResponse_AlterConfigsResourceResponse_init(&rs[i]);
        if (alter_res_init(ctx, i, q->ResourceType, q->ResourceName, q->Configs_count))
            return -ENOMEM;
        for (int32_t c = 0; c < ctx->res[i].n; c++)
            if (alter_op_set(ctx, i, c, q->Configs[c].Name, q->Configs[c].Value,
                             TOPIC_CONFIG_OP_SET))
                return -ENOMEM;
    }
    return alter_run(ctx);
}

int kafka_handle_incremental_alter_configs(kafka_req *req)
{
    const kafka_IncrementalAlterConfigsRequest *in = req->msg;
    if (!data_shard_ensure(req->broker->cfg)) return AL_ECLOSED;
    int32_t n = AL_MAX(in->Resources_count, 0);
    kafka_IncrementalAlterConfigsResponse *resp = kafka_arena_alloc(&req->arena, sizeof(*resp));
    alter_result *rs = kafka_arena_alloc(&req->arena, sizeof(*rs) * (size_t)AL_MAX(n, 1));
    struct alter_ctx *ctx = alter_new(req, resp, rs, n);
    if (!ctx) return -ENOMEM;
    kafka_IncrementalAlterConfigsResponse_init(resp);
    resp->Responses = (alter_result_inc *)rs; /* same layout (checked above) */
    resp->Responses_count = n;
    ctx->validate_only = in->ValidateOnly;
    for (int32_t i = 0; i < n; i++) {
        const kafka_IncrementalAlterConfigsRequest_AlterConfigsResource *q = &in->Resources[i];
        kafka_IncrementalAlterConfigsResponse_AlterConfigsResourceResponse_init(
            (alter_result_inc *)&rs[i]);
        if (alter_res_init(ctx, i, q->ResourceType, q->ResourceName, q->Configs_count))
            return -ENOMEM;
        for (int32_t c = 0; c < ctx->res[i].n; c++)
            if (alter_op_set(ctx, i, c, q->Configs[c].Name, q->Configs[c].Value,
                             q->Configs[c].ConfigOperation))
                return -ENOMEM;
    }
    return alter_run(ctx);
}
