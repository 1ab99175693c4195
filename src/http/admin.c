/*
 * admin.c — the admin API's handlers and route table (see admin.h), its start-up on shard 0,
 * and the per-shard metrics collector. Data come from the config table (src/config), the
 * topic table and partition managers (src/cluster/data_plane.h) and the metrics registry.
 */
#include "http/admin.h"
#include "base/log.h"
#include "cli/version.h"
#include "cluster/cluster_admin.h"
#include "cluster/cluster_opsapi.h"
#include "cluster/data_plane.h"
#include "kafka/errors.h"
#include "metrics/metrics.h"

#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define COLLECT_NS (1000ull * 1000 * 1000)
#define STALL_NS (50ull * 1000 * 1000) /* a timer this late means the shard's loop stalled */
/* The lag probe: a timer every PROBE_ACTIVE_NS while the shard is working (its thread used
 * more than 1/PROBE_WORK_DIV of the time since the last probe) and for PROBE_QUIET_MAX probes
 * after, every PROBE_IDLE_NS when it is idle (4 wake-ups a second). */
#define PROBE_ACTIVE_NS (5ull * 1000 * 1000)
#define PROBE_IDLE_NS (250ull * 1000 * 1000)
#define PROBE_QUIET_MAX 20
#define PROBE_WORK_DIV 50

/* Keys that describe this node rather than the cluster (GET /v1/node_config; refused by PUT
 * /v1/cluster_config). Every other key of the config table is cluster-wide. */
static const char *const node_keys[] = {
    "node_id", "data_directory", "kafka_addr", "advertised_kafka_addr", "admin_addr",
    "rpc_addr", "advertised_rpc_addr", "seed_servers",
    "smp",     "memory",         "developer_mode",
};

/* Features this build implements (GET /v1/features). */
static const char *const features[] = {
    "kafka_api", "idempotent_producer", "consumer_groups", "admin_api", "prometheus_metrics",
    "group_commit", "topic_configs",
};

struct admin_state {
    al_config cfg;   /* this node's configuration plus accepted cluster-config changes */
    al_config start; /* the configuration the broker started with */
    char cluster_id[128];
    unsigned n_shards;
    int64_t config_version;
    int64_t start_ms;
    io *io; /* shard 0's io, for persisting cluster config (NULL: not persisted) */
};

static int g_ready;          /* atomic */
static char g_kafka_host[CONFIG_HOST_MAX]; /* written before g_ready is released */
static int g_kafka_port;
static uint16_t g_port;      /* atomic */
static pthread_once_t g_metrics_once = PTHREAD_ONCE_INIT;
static unsigned g_metrics_shards;

void admin_set_ready(bool ready)
{
    __atomic_store_n(&g_ready, ready ? 1 : 0, __ATOMIC_RELEASE);
}

void admin_node_ready(const char *kafka_host, int kafka_port)
{
    snprintf(g_kafka_host, sizeof(g_kafka_host), "%s", kafka_host ? kafka_host : "");
    g_kafka_port = kafka_port;
    admin_set_ready(true);
}

uint16_t admin_port(void)
{
    return __atomic_load_n(&g_port, __ATOMIC_ACQUIRE);
}

static bool in_list(const char *const *list, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(list[i], name)) return true;
    return false;
}

static bool is_node_key(const char *name)
{
    return in_list(node_keys, AL_ARRAY_SIZE(node_keys), name);
}

/* A key a PUT applies at once (config_key.live); the rest need a restart. */
static bool is_live_key(const char *name)
{
    const struct config_key *k = config_find(name);
    return k && k->live;
}

/* The cluster's data plane on this shard, when the admin API runs on shard 0 of a broker that
 * has one (changes then go through it to every shard); NULL for a state without an io (tests,
 * fuzzers), whose changes stay in st->cfg. */
static data_shard *admin_data(const struct admin_state *st)
{
    if (!st->io) return NULL;
    data_shard *ds = data_shard_self();
    return ds && ds->shard == 0 ? ds : NULL;
}

/* The configuration in effect (the data plane's authoritative copy, else the state's). */
static const al_config *admin_cfg(const struct admin_state *st)
{
    data_shard *ds = admin_data(st);
    return ds ? &ds->cluster_cfg : &st->cfg;
}

/* Config changes accepted so far, plus one. */
static int64_t admin_config_version(const struct admin_state *st)
{
    data_shard *ds = admin_data(st);
    return ds ? 1 + (int64_t)ds->cluster_cfg_version : st->config_version;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- config as JSON ---- */

/* The value of key k in c as a JSON value (new reference). */
static json_t *config_value_json(const al_config *c, const struct config_key *k)
{
    const void *field = (const char *)c + k->offset;
    char buf[CONFIG_PATH_MAX + 64];
    switch (k->type) {
    case CONFIG_INT:
    case CONFIG_BYTES: return json_integer(*(const int64_t *)field);
    case CONFIG_BOOL: return json_boolean(*(const bool *)field);
    default:
        config_format(c, k, buf, sizeof(buf));
        return json_string(buf);
    }
}

/* An object of every key (node: node keys only, else cluster keys only). */
static json_t *config_json(const al_config *c, bool node)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < config_key_count; i++) {
        const struct config_key *k = &config_keys[i];
        if (is_node_key(k->name) != node) continue;
        json_object_set_new(o, k->name, config_value_json(c, k));
    }
    return o;
}

/* Converts a JSON value to the text config_set parses. Returns 0 or -1 (type not allowed). */
static int json_to_text(json_t *v, char *buf, size_t cap)
{
    if (json_is_integer(v)) snprintf(buf, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_boolean(v)) snprintf(buf, cap, "%s", json_is_true(v) ? "true" : "false");
    else if (json_is_string(v)) {
        if (json_string_length(v) >= cap) return -1;
        snprintf(buf, cap, "%s", json_string_value(v));
    } else return -1;
    return 0;
}

/* ---- handlers ---- */

static void h_ready(http_request *req, void *ctx)
{
    bool ready = __atomic_load_n(&g_ready, __ATOMIC_ACQUIRE) != 0;
    http_respond_json(req, ready ? 200 : 503,
                      json_pack("{s:s}", "status", ready ? "ready" : "booting"));
}

static json_t *broker_json(struct admin_state *st)
{
    const al_config *c = &st->cfg;
    bool known = __atomic_load_n(&g_ready, __ATOMIC_ACQUIRE) && g_kafka_port > 0;
    return json_pack("{s:I, s:I, s:s, s:b, s:s, s:s, s:i, s:s, s:i, s:I}", "node_id",
                     (json_int_t)c->node_id, "num_cores", (json_int_t)st->n_shards,
                     "membership_status", "active", "is_alive", 1, "version", AILURUS_VERSION,
                     "kafka_host", known ? g_kafka_host
                                         : c->advertised_kafka_addr.host[0]
                                             ? c->advertised_kafka_addr.host
                                             : c->kafka_addr.host,
                     "kafka_port", known ? g_kafka_port
                                         : (int)(c->advertised_kafka_addr.port
                                                     ? c->advertised_kafka_addr.port
                                                     : c->kafka_addr.port),
                     "admin_host", c->admin_addr.host, "admin_port", (int)admin_port(),
                     "uptime_ms", (json_int_t)(wall_ms() - st->start_ms));
}

static void h_brokers(http_request *req, void *ctx)
{
    if (cluster_admin_brokers(req)) return; /* cluster mode: every broker */
    json_t *a = json_array();
    json_array_append_new(a, broker_json(ctx));
    http_respond_json(req, 200, a);
}

/* Parses a non-negative decimal int32 (whole string). Returns it or -1. */
static int64_t parse_id(const char *s)
{
    int64_t v = 0;
    if (!*s || strlen(s) > 10) return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -1;
        v = v * 10 + (*s - '0');
    }
    return v <= INT32_MAX ? v : -1;
}

static void h_broker(http_request *req, void *ctx)
{
    struct admin_state *st = ctx;
    int64_t id = parse_id(req->params[0]);
    if (id < 0) {
        http_respond_error(req, 400, "broker id '%s' is not a non-negative integer",
                           req->params[0]);
        return;
    }
    if (cluster_admin_broker(req, id)) return; /* cluster mode */
    if (id != st->cfg.node_id) {
        http_respond_error(req, 404, "no broker with id %" PRId64, id);
        return;
    }
    http_respond_json(req, 200, broker_json(st));
}

static void h_cluster_config_get(http_request *req, void *ctx)
{
    http_respond_json(req, 200, config_json(admin_cfg(ctx), false));
}

static void h_node_config(http_request *req, void *ctx)
{
    struct admin_state *st = ctx;
    json_t *o = config_json(&st->cfg, true);
    json_object_set_new(o, "cluster_id", json_string(st->cluster_id));
    http_respond_json(req, 200, o);
}

/* Applies one key of a PUT to c (v NULL or null: remove, back to the start-up value); the
 * value's text goes to *text (cap CONFIG_PATH_MAX + 64) when non-NULL. Returns 0 or 400 with
 * msg set. */
static int cluster_config_apply(al_config *c, const al_config *start, const char *key, json_t *v,
                                char *text, char *msg, size_t cap)
{
    const struct config_key *k = config_find(key);
    if (!k) {
        snprintf(msg, cap, "unknown configuration key '%s'", key);
        return 400;
    }
    if (is_node_key(k->name)) {
        snprintf(msg, cap, "'%s' is a node property (see /v1/node_config), not a cluster one",
                 k->name);
        return 400;
    }
    char err[512];
    bool remove = !v || json_is_null(v);
    text[0] = 0;
    if (!remove && json_to_text(v, text, CONFIG_PATH_MAX + 64)) {
        snprintf(msg, cap, "'%s': value must be a string, integer or boolean", k->name);
        return 400;
    }
    if (config_change(c, start, k->name, remove ? NULL : text, err, sizeof(err))) {
        snprintf(msg, cap, "%s", err);
        return 400;
    }
    return 0;
}

/* A PUT going through the data plane (see admin_data): answered when every shard has it. */
struct config_put {
    struct data_topic_op op;
    struct data_topic_item item;
    struct admin_state *st;
    http_request *req;
    json_t *restart;
    int64_t old_level;
    bool del[CONFIG_KEYS_MAX];
    topic_config_kv kv[CONFIG_KEYS_MAX];
};

static void config_put_done(struct data_topic_op *op)
{
    struct config_put *p = op->ctx;
    data_shard *ds = data_shard_self();
    int err = p->item.err;
    if (err < KAFKA_EWIRE_BASE && err > KAFKA_EWIRE_BASE - 32768) { /* the controller's */
        json_decref(p->restart);
        int16_t code = kafka_err_from_internal(err);
        http_respond_error(p->req, code == KAFKA_ERR_NOT_CONTROLLER ? 503 : 500,
                           "the controller did not take the change: %s; nothing was changed%s",
                           kafka_err_name(code), code == KAFKA_ERR_NOT_CONTROLLER
                               ? " (no controller leader is reachable now: retry in a moment)"
                               : "");
    } else if (err == AL_EINVAL || err == AL_ENOTFOUND) { /* the controller leader refused */
        json_decref(p->restart);
        http_respond_error(p->req, 400, "the controller leader refused the change: %s",
                           al_strerror(err));
    } else if (err) {
        json_decref(p->restart);
        http_respond_error(p->req, 500, "cannot save the cluster config to %s/%s: %s; nothing "
                           "was changed", ds ? ds->cluster_cfg.data_directory : "?",
                           CONFIG_ADMIN_FILE, al_strerror(err));
    } else {
        if (ds && ds->cluster_cfg.log_level != p->old_level) {
            al_log_set_level((int)ds->cluster_cfg.log_level);
            p->st->cfg.log_level = ds->cluster_cfg.log_level;
        }
        int64_t version = admin_config_version(p->st);
        log_info("admin", "cluster config changed (version %" PRId64 ")", version);
        http_respond_json(p->req, 200, json_pack("{s:I, s:o, s:b}", "config_version",
                                                 (json_int_t)version, "restart_required",
                                                 p->restart, "dry_run", 0));
    }
    free(p);
}

/* Adds one change to a data-plane PUT. Returns 0 or 400 (too many keys) with msg set. */
static int config_put_add(struct config_put *p, const char *key, const char *text, bool del,
                          char *msg, size_t cap)
{
    int32_t j = p->item.n_configs;
    if (j >= CONFIG_KEYS_MAX || strlen(key) >= sizeof(p->kv[j].key) ||
        strlen(text) >= sizeof(p->kv[j].value)) {
        snprintf(msg, cap, "too many keys in one PUT (at most %d)", CONFIG_KEYS_MAX);
        return 400;
    }
    snprintf(p->kv[j].key, sizeof(p->kv[j].key), "%s", key);
    snprintf(p->kv[j].value, sizeof(p->kv[j].value), "%s", text);
    p->del[j] = del;
    p->item.n_configs = j + 1;
    return 0;
}

static void h_cluster_config_put(http_request *req, void *ctx)
{
    struct admin_state *st = ctx;
    json_error_t je;
    json_t *body = json_loadb(req->body, req->body_len, 0, &je);
    if (!body || !json_is_object(body)) {
        http_respond_error(req, 400, "body must be a JSON object {\"upsert\": {...}, "
                                     "\"remove\": [...]}%s%s", body ? "" : ": ",
                           body ? "" : je.text);
        json_decref(body);
        return;
    }
    json_t *ups = json_object_get(body, "upsert"), *rem = json_object_get(body, "remove");
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v) {
        if (strcmp(key, "upsert") && strcmp(key, "remove")) {
            http_respond_error(req, 400, "unexpected field '%s' (expected upsert, remove)",
                               key);
            json_decref(body);
            return;
        }
    }
    if ((ups && !json_is_object(ups)) || (rem && !json_is_array(rem))) {
        http_respond_error(req, 400, "upsert must be an object and remove an array");
        json_decref(body);
        return;
    }
    data_shard *ds = admin_data(st);
    al_config next = *admin_cfg(st);
    char msg[600], text[CONFIG_PATH_MAX + 64];
    json_t *restart = json_array();
    struct config_put *put = ds ? calloc(1, sizeof(*put)) : NULL;
    if (ds && !put) {
        snprintf(msg, sizeof(msg), "out of memory");
        goto invalid;
    }
    json_object_foreach(ups, key, v) {
        if (cluster_config_apply(&next, &st->start, key, v, text, msg, sizeof(msg)) ||
            (put && config_put_add(put, key, text, false, msg, sizeof(msg))))
            goto invalid;
        if (!is_live_key(key)) json_array_append_new(restart, json_string(key));
    }
    size_t i;
    json_array_foreach(rem, i, v) {
        if (!json_is_string(v)) {
            snprintf(msg, sizeof(msg), "remove[%zu] must be a key name", i);
            goto invalid;
        }
        if (cluster_config_apply(&next, &st->start, json_string_value(v), NULL, text, msg,
                                 sizeof(msg)) ||
            (put && config_put_add(put, json_string_value(v), "", true, msg, sizeof(msg))))
            goto invalid;
        if (!is_live_key(json_string_value(v)))
            json_array_append_new(restart, json_string(json_string_value(v)));
    }
    char dry[8];
    bool dry_run = http_request_query(req, "dry_run", dry, sizeof(dry)) >= 0 &&
                   !strcmp(dry, "true");
    json_decref(body);
    if (put && !dry_run) {
        /* Shard 0 applies, saves (config_save_admin) and copies it to every shard; answered
         * by config_put_done. */
        put->st = st;
        put->req = req;
        put->restart = restart;
        put->old_level = ds->cluster_cfg.log_level;
        snprintf(put->item.name, sizeof(put->item.name), "cluster_config");
        put->item.configs = put->kv;
        put->item.del = put->del;
        put->op = (struct data_topic_op){.kind = DATA_OP_CLUSTER_CONFIG, .items = &put->item,
                                         .n = 1, .done = config_put_done, .ctx = put};
        if (data_topic_submit(ds, &put->op) == 0) return;
        json_decref(restart);
        free(put);
        http_respond_error(req, 503, "shutting down");
        return;
    }
    free(put);
    if (!dry_run) {
        int prc = config_save_admin(st->io, &next);
        if (prc < 0) {
            json_decref(restart);
            http_respond_error(req, 500, "cannot save the cluster config to %s/%s: %s; nothing "
                               "was changed", next.data_directory, CONFIG_ADMIN_FILE,
                               al_strerror(prc));
            return;
        }
        bool level_changed = next.log_level != st->cfg.log_level;
        st->cfg = next;
        st->config_version++;
        if (level_changed) al_log_set_level((int)next.log_level);
        log_info("admin", "cluster config changed (version %" PRId64 ")", st->config_version);
    }
    http_respond_json(req, 200, json_pack("{s:I, s:o, s:b}", "config_version",
                                          (json_int_t)admin_config_version(st),
                                          "restart_required", restart, "dry_run", dry_run));
    return;
invalid:
    free(put);
    json_decref(restart);
    json_decref(body);
    http_respond_error(req, 400, "%s", msg);
}

/* GET /v1/cluster_config/status: per node, the config version and the keys whose accepted
 * value differs from what the broker runs with (a restart applies them). */
static void h_cluster_config_status(http_request *req, void *ctx)
{
    struct admin_state *st = ctx;
    json_t *pending = json_array();
    char a[CONFIG_PATH_MAX + 64], b[CONFIG_PATH_MAX + 64];
    for (size_t i = 0; i < config_key_count; i++) {
        const struct config_key *k = &config_keys[i];
        if (is_node_key(k->name) || k->live) continue;
        config_format(admin_cfg(st), k, a, sizeof(a));
        config_format(&st->start, k, b, sizeof(b));
        if (strcmp(a, b)) json_array_append_new(pending, json_string(k->name));
    }
    bool restart = json_array_size(pending) > 0;
    json_t *node = json_pack("{s:I, s:I, s:b, s:o, s:[], s:[]}", "node_id",
                             (json_int_t)st->cfg.node_id, "config_version",
                             (json_int_t)admin_config_version(st), "restart", restart,
                             "restart_keys", pending, "invalid", "unknown");
    json_t *arr = json_array();
    json_array_append_new(arr, node);
    http_respond_json(req, 200, arr);
}

static const char *const type_names[] = {
    [CONFIG_INT] = "integer", [CONFIG_BYTES] = "bytes",   [CONFIG_BOOL] = "boolean",
    [CONFIG_STRING] = "string", [CONFIG_ENUM] = "enum", [CONFIG_ADDR] = "address",
};

/* GET /v1/cluster_config/schema: every cluster key with its type, default, bounds and doc. */
static void h_cluster_config_schema(http_request *req, void *ctx)
{
    json_t *props = json_object();
    for (size_t i = 0; i < config_key_count; i++) {
        const struct config_key *k = &config_keys[i];
        if (is_node_key(k->name)) continue;
        json_t *o = json_pack("{s:s, s:s, s:s, s:b}", "type", type_names[k->type], "default",
                              k->def, "description", k->doc ? k->doc : "", "needs_restart",
                              !k->live);
        if (k->kafka) json_object_set_new(o, "kafka_name", json_string(k->kafka));
        if (k->type == CONFIG_INT || k->type == CONFIG_BYTES) {
            json_object_set_new(o, "minimum", json_integer(k->min));
            json_object_set_new(o, "maximum", json_integer(k->max));
        }
        if (k->type == CONFIG_ENUM && k->allowed) {
            json_t *en = json_array();
            for (size_t e = 0; k->allowed[e] && e < 64; e++)
                json_array_append_new(en, json_string(k->allowed[e]));
            json_object_set_new(o, "enum", en);
        }
        json_object_set_new(props, k->name, o);
    }
    http_respond_json(req, 200, json_pack("{s:o}", "properties", props));
}

static void h_features(http_request *req, void *ctx)
{
    json_t *a = json_array();
    for (size_t i = 0; i < AL_ARRAY_SIZE(features); i++)
        json_array_append_new(a, json_pack("{s:s, s:s, s:b}", "name", features[i], "state",
                                           "active", "was_active", 1));
    http_respond_json(req, 200, json_pack("{s:i, s:i, s:o}", "cluster_version", 1,
                                          "node_latest_version", 1, "features", a));
}

static json_t *loggers_json(void)
{
    json_t *levels = json_array();
    for (int l = AL_LOG_TRACE; l <= AL_LOG_OFF; l++)
        json_array_append_new(levels, json_string(al_log_level_name(l)));
    return json_pack("{s:s, s:o}", "level", al_log_level_name(al_log_level), "levels", levels);
}

static void h_loggers_get(http_request *req, void *ctx)
{
    http_respond_json(req, 200, loggers_json());
}

/* Sets the global log level by name, keeping the admin's view of log_level in step. */
static int set_level(struct admin_state *st, const char *name)
{
    int level = al_log_level_parse(name);
    if (level < 0) return -1;
    al_log_set_level(level);
    st->cfg.log_level = level;
    data_shard *ds = admin_data(st);
    if (ds) ds->cluster_cfg.log_level = level; /* runtime only, as before: not saved */
    log_info("admin", "log level set to %s", al_log_level_name(level));
    return 0;
}

static void h_loggers_put(http_request *req, void *ctx)
{
    json_error_t je;
    json_t *body = json_loadb(req->body, req->body_len, 0, &je);
    json_t *lv = body ? json_object_get(body, "level") : NULL;
    if (!json_is_string(lv)) {
        http_respond_error(req, 400,
                           "body must be {\"level\": \"trace|debug|info|warn|error|off\"}");
    } else if (set_level(ctx, json_string_value(lv))) {
        http_respond_error(req, 400, "unknown log level '%s' (trace, debug, info, warn, error, "
                                     "off)", json_string_value(lv));
    } else {
        http_respond_json(req, 200, loggers_json());
    }
    json_decref(body);
}

static void h_log_level_put(http_request *req, void *ctx)
{
    char level[32];
    if (http_request_query(req, "level", level, sizeof(level)) < 0) {
        http_respond_error(req, 400, "missing query parameter 'level'");
    } else if (set_level(ctx, level)) {
        http_respond_error(req, 400, "unknown log level '%s'", level);
    } else {
        /* The level is process-wide: every logger name changes together. */
        http_respond_json(req, 200, json_pack("{s:s, s:s, s:s}", "name", req->params[0],
                                              "level", level, "scope", "global"));
    }
}

static void respond_metrics(http_request *req, bool pub)
{
    char *text = NULL;
    size_t len = 0;
    int err = metrics_render(pub, &text, &len);
    if (err) {
        http_respond_error(req, 500, "cannot render metrics: %s", al_strerror(err));
        return;
    }
    http_respond_take(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}

static void h_metrics(http_request *req, void *ctx)
{
    respond_metrics(req, false);
}

static void h_public_metrics(http_request *req, void *ctx)
{
    respond_metrics(req, true);
}

/* ---- partitions ---- */

static json_t *partition_json(const data_shard *ds, const topic *t, int32_t p, int64_t node)
{
    return json_pack("{s:s, s:s, s:i, s:i, s:I, s:b}", "ns", "kafka", "topic", t->name,
                     "partition_id", p, "core", (int)data_owner(ds, t, p), "leader",
                     (json_int_t)node, "internal", t->internal);
}

/* The shard-0 data plane, or NULL after answering 503. */
static data_shard *data_or_503(http_request *req)
{
    data_shard *ds = data_shard_self();
    if (!ds) http_respond_error(req, 503, "the partition table is not available on this node");
    return ds;
}

static void h_partitions(http_request *req, void *ctx)
{
    struct admin_state *st = ctx;
    data_shard *ds = data_or_503(req);
    if (!ds) return;
    json_t *a = json_array();
    for (int32_t i = 0; i < ds->topics.n; i++) {
        const topic *t = topic_table_at(&ds->topics, i);
        for (int32_t p = 0; p < t->partitions; p++)
            json_array_append_new(a, partition_json(ds, t, p, st->cfg.node_id));
    }
    http_respond_json(req, 200, a);
}

/* Finds the topic named by params[0..1] (ns, topic) or answers 404. */
static const topic *topic_or_404(http_request *req, data_shard *ds)
{
    if (strcmp(req->params[0], "kafka")) {
        http_respond_error(req, 404, "unknown namespace '%s' (only 'kafka')", req->params[0]);
        return NULL;
    }
    const topic *t = topic_table_find(&ds->topics, req->params[1], strlen(req->params[1]));
    if (!t) http_respond_error(req, 404, "unknown topic '%s'", req->params[1]);
    return t;
}

static void h_topic_partitions(http_request *req, void *ctx)
{
    struct admin_state *st = ctx;
    data_shard *ds = data_or_503(req);
    if (!ds) return;
    const topic *t = topic_or_404(req, ds);
    if (!t) return;
    json_t *a = json_array();
    for (int32_t p = 0; p < t->partitions; p++)
        json_array_append_new(a, partition_json(ds, t, p, st->cfg.node_id));
    http_respond_json(req, 200, a);
}

/* A partition query travelling to the owning shard and back. */
struct part_query {
    http_request *req;
    unsigned from;
    uint8_t id[16];
    int32_t partition;
    json_t *base; /* built on shard 0, completed there */
    bool found;
    int64_t hw, start, last, high, durable;
    uint64_t size_bytes;
};

static void part_query_reply(reactor_shard *self, const struct reactor_msg *msg)
{
    struct part_query *q = msg->arg;
    if (!q->found) {
        json_decref(q->base);
        http_respond_error(q->req, 503, "partition is not open on its shard yet");
    } else {
        json_object_set_new(q->base, "high_watermark", json_integer(q->hw));
        json_object_set_new(q->base, "log_start_offset", json_integer(q->start));
        json_object_set_new(q->base, "last_offset", json_integer(q->last));
        json_object_set_new(q->base, "next_offset", json_integer(q->high));
        json_object_set_new(q->base, "durable_offset", json_integer(q->durable));
        json_object_set_new(q->base, "size_bytes", json_integer((json_int_t)q->size_bytes));
        json_object_set_new(q->base, "status", json_string("done"));
        http_respond_json(q->req, 200, q->base);
    }
    free(q);
}

static void part_query_run(reactor_shard *self, const struct reactor_msg *msg)
{
    struct part_query *q = msg->arg;
    data_shard *ds = data_shard_self();
    pm_partition *p = ds ? pm_find(&ds->pm, q->id, q->partition) : NULL;
    if (p && p->log) {
        q->found = true;
        q->hw = pm_kafka_hw(p); /* Kafka offsets; last/next/durable are log (Raft) offsets */
        q->start = pm_kafka_start(p);
        q->last = storage_log_last_offset(p->log);
        q->high = storage_log_high_offset(p->log);
        q->durable = storage_log_durable_offset(p->log);
        q->size_bytes = storage_log_size_bytes(p->log);
    }
    if (!ds || data_send(ds, q->from, part_query_reply, q, 0, 0)) {
        /* Stopping: the answer cannot travel back; the request is dropped with the shard. */
        log_warn("admin", "partition query dropped: shard stopping");
    }
}

static void h_partition(http_request *req, void *ctx)
{
    struct admin_state *st = ctx;
    data_shard *ds = data_or_503(req);
    if (!ds) return;
    const topic *t = topic_or_404(req, ds);
    if (!t) return;
    int64_t p = parse_id(req->params[2]);
    if (p < 0) {
        http_respond_error(req, 400, "partition '%s' is not a non-negative integer",
                           req->params[2]);
        return;
    }
    if (p >= t->partitions) {
        http_respond_error(req, 404, "topic '%s' has no partition %" PRId64 " (it has %d)",
                           t->name, p, t->partitions);
        return;
    }
    struct part_query *q = calloc(1, sizeof(*q));
    if (!q) {
        http_respond_error(req, 500, "out of memory");
        return;
    }
    q->req = req;
    q->from = ds->shard;
    memcpy(q->id, t->id, 16);
    q->partition = (int32_t)p;
    q->base = partition_json(ds, t, (int32_t)p, st->cfg.node_id);
    json_t *replicas = json_array();
    json_array_append_new(replicas, json_pack("{s:I, s:i}", "node_id",
                                              (json_int_t)st->cfg.node_id, "core",
                                              (int)data_owner(ds, t, (int32_t)p)));
    json_object_set_new(q->base, "replicas", replicas);
    if (data_send(ds, data_owner(ds, t, (int32_t)p), part_query_run, q, 0, 0)) {
        json_decref(q->base);
        free(q);
        http_respond_error(req, 503, "shutting down");
    }
}

static const struct http_route admin_routes[] = {
    /* cluster operations (src/cluster/cluster_opsapi.h) */
    {HTTP_POST, "/v1/partitions/{ns}/{topic}/{partition}/replicas", cluster_opsapi_move},
    {HTTP_GET, "/v1/partitions/reconfigurations", cluster_opsapi_reconfigurations},
    {HTTP_POST, "/v1/partitions/rebalance", cluster_opsapi_rebalance},
    {HTTP_GET, "/v1/brokers/{id}/maintenance", cluster_opsapi_maintenance_get},
    {HTTP_PUT, "/v1/brokers/{id}/maintenance", cluster_opsapi_maintenance_put},
    {HTTP_DELETE, "/v1/brokers/{id}/maintenance", cluster_opsapi_maintenance_delete},
    {HTTP_GET, "/v1/brokers/{id}/decommission", cluster_opsapi_decommission_get},
    {HTTP_PUT, "/v1/brokers/{id}/decommission", cluster_opsapi_decommission_put},
    {HTTP_PUT, "/v1/brokers/{id}/recommission", cluster_opsapi_recommission_put},
    {HTTP_GET, "/v1/cluster/leader_balancer", cluster_opsapi_balancer_get},
    {HTTP_PUT, "/v1/cluster/leader_balancer", cluster_opsapi_balancer_put},
    {HTTP_GET, "/v1/status/ready", h_ready},
    {HTTP_GET, "/v1/brokers", h_brokers},
    {HTTP_GET, "/v1/brokers/{id}", h_broker},
    {HTTP_GET, "/v1/cluster/health_overview", cluster_admin_health},
    {HTTP_GET, "/v1/cluster_config", h_cluster_config_get},
    {HTTP_PUT, "/v1/cluster_config", h_cluster_config_put},
    {HTTP_GET, "/v1/cluster_config/status", h_cluster_config_status},
    {HTTP_GET, "/v1/cluster_config/schema", h_cluster_config_schema},
    {HTTP_GET, "/v1/node_config", h_node_config},
    {HTTP_GET, "/v1/partitions", h_partitions},
    {HTTP_GET, "/v1/partitions/{ns}/{topic}", h_topic_partitions},
    {HTTP_GET, "/v1/partitions/{ns}/{topic}/{partition}", h_partition},
    {HTTP_GET, "/v1/features", h_features},
    {HTTP_GET, "/v1/loggers", h_loggers_get},
    {HTTP_PUT, "/v1/loggers", h_loggers_put},
    {HTTP_PUT, "/v1/config/log_level/{name}", h_log_level_put},
    {HTTP_GET, "/metrics", h_metrics},
    {HTTP_GET, "/public_metrics", h_public_metrics},
};

struct admin_state *admin_state_new(const al_config *cfg, const char *cluster_id,
                                    unsigned n_shards)
{
    struct admin_state *st = calloc(1, sizeof(*st));
    if (!st) return NULL;
    st->cfg = *cfg;
    st->start = *cfg;
    snprintf(st->cluster_id, sizeof(st->cluster_id), "%s", cluster_id ? cluster_id : "");
    st->n_shards = n_shards;
    st->config_version = 1;
    st->start_ms = wall_ms();
    return st;
}

void admin_state_set_io(struct admin_state *st, io *iop)
{
    st->io = iop;
}

void admin_state_free(struct admin_state *st)
{
    free(st);
}

http_router admin_router(struct admin_state *st)
{
    return (http_router){admin_routes, AL_ARRAY_SIZE(admin_routes), st};
}

/* ---- per-shard collector ---- */

/* The partitions a collector set gauges for in its last round ("topic\0partition\0"). */
struct seen_set {
    char **keys;
    uint32_t n, cap;
};

struct collector {
    reactor_shard *rs;
    reactor_timer timer;
    unsigned shard;
    char shard_label[12];
    uint64_t last_mono_ns, last_cpu_ns;
    metrics_series *util, *busy, *stalls, *lag;
    reactor_timer probe;  /* the lag probe (probe_tick) */
    uint64_t probe_cpu_ns, probe_wall_ns; /* the shard thread's CPU time, the clock at the last probe */
    uint32_t probe_quiet;                /* probes since the shard last worked */
    struct admin_state *admin; /* shard 0 */
    http_server *srv;          /* shard 0 */
    struct seen_set seen;      /* partitions with gauges */
};

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int key_cmp(const void *a, const void *b)
{
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    int c = strcmp(x, y);
    return c ? c : strcmp(x + strlen(x) + 1, y + strlen(y) + 1);
}

static void seen_free(struct seen_set *s)
{
    for (uint32_t i = 0; i < s->n; i++) free(s->keys[i]);
    free(s->keys);
    *s = (struct seen_set){0};
}

/* Adds "topic\0partition\0" to s. Returns 0 or -ENOMEM. */
static int seen_add(struct seen_set *s, const char *topic_name, const char *part)
{
    if (s->n == s->cap) {
        uint32_t nc = s->cap ? s->cap * 2 : 64;
        char **nk = realloc(s->keys, nc * sizeof(*nk));
        if (!nk) return -ENOMEM;
        s->keys = nk;
        s->cap = nc;
    }
    size_t tl = strlen(topic_name), pl = strlen(part);
    char *k = malloc(tl + pl + 2);
    if (!k) return -ENOMEM;
    memcpy(k, topic_name, tl + 1);
    memcpy(k + tl + 1, part, pl + 1);
    s->keys[s->n++] = k;
    return 0;
}

/* Sets the partition gauges of every partition this shard owns, and removes the series of
 * partitions that were there last round and are gone now (deleted topics). */
static void collect_partitions(struct seen_set *last)
{
    data_shard *ds = data_shard_self();
    if (!ds) return;
    partition_manager *pm = &ds->pm;
    struct seen_set now = {0};
    bool complete = true;
    for (uint32_t b = 0; pm->buckets && b < pm->nbuckets; b++) {
        uint32_t guard = 0;
        for (pm_partition *p = pm->buckets[b]; p && guard < 1u << 20; p = p->hnext, guard++) {
            if (!p->log || p->removed) continue;
            char part[16];
            snprintf(part, sizeof(part), "%d", p->partition);
            const char *l[] = {p->topic, part, NULL};
            metrics_gauge_set_l(metrics_local, M_PARTITION_HIGH_WATERMARK,
                                (double)pm_kafka_hw(p), l); /* Kafka offsets */
            metrics_gauge_set_l(metrics_local, M_PARTITION_LOG_START,
                                (double)pm_kafka_start(p), l);
            metrics_gauge_set_l(metrics_local, M_STORAGE_LOG_BYTES,
                                (double)storage_log_size_bytes(p->log), l);
            if (seen_add(&now, p->topic, part)) complete = false;
        }
    }
    if (complete) {
        al_sort(now.keys, now.n, sizeof(char *), key_cmp);
        for (uint32_t i = 0; i < last->n; i++) {
            if (al_search(&last->keys[i], now.keys, now.n, sizeof(char *), key_cmp)) continue;
            const char *k = last->keys[i];
            const char *l[] = {k, k + strlen(k) + 1, NULL};
            metrics_series_remove(metrics_local, M_PARTITION_HIGH_WATERMARK, l);
            metrics_series_remove(metrics_local, M_PARTITION_LOG_START, l);
            metrics_series_remove(metrics_local, M_STORAGE_LOG_BYTES, l);
        }
        seen_free(last);
        *last = now;
    } else {
        seen_free(&now); /* out of memory: keep the old set, retry next round */
    }
    if (ds->cache) {
        storage_cache_stats cs;
        storage_cache_stats_get(ds->cache, &cs);
        char sub[32];
        snprintf(sub, sizeof(sub), "batch_cache_shard%u", ds->shard);
        metrics_gauge_set(metrics_local, M_MEMORY_BYTES, (double)cs.bytes, sub);
    }
}

/*
 * The lag probe: how late a timer runs is what any timer-driven or completion-driven work on
 * the shard waits on top of its own time, from both causes: a long turn of the loop (ours:
 * a blocking call, a long callback) and the thread waiting for a CPU (the machine). Recorded
 * in ailurus_reactor_lag_seconds; over STALL_NS also counts a stall. /proc's schedstat of the
 * `shard-N` thread tells the two apart (its run-queue wait).
 */
static void probe_tick(reactor_timer *t)
{
    struct collector *c = t->ctx;
    uint64_t now = io_now_ns(reactor_io(c->rs));
    uint64_t late = now > t->deadline_ns ? now - t->deadline_ns : 0;
    metrics_series_observe(c->lag, late / 1000);
    if (late > STALL_NS) metrics_series_add(c->stalls, 1);
    uint64_t cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID); /* now is CLOCK_MONOTONIC already */
    bool worked = (cpu - c->probe_cpu_ns) * PROBE_WORK_DIV > now - c->probe_wall_ns;
    c->probe_cpu_ns = cpu;
    c->probe_wall_ns = now;
    if (!worked && c->probe_quiet <= PROBE_QUIET_MAX) c->probe_quiet++; /* saturates */
    if (worked) c->probe_quiet = 0;
    bool active = c->probe_quiet <= PROBE_QUIET_MAX;
    reactor_timer_add(c->rs, t, now + (active ? PROBE_ACTIVE_NS : PROBE_IDLE_NS), NULL);
}

static void collect_tick(reactor_timer *t)
{
    struct collector *c = t->ctx;
    uint64_t now = io_now_ns(reactor_io(c->rs));
    uint64_t mono = clock_ns(CLOCK_MONOTONIC), cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    if (c->last_mono_ns && mono > c->last_mono_ns) {
        uint64_t busy = cpu - c->last_cpu_ns;
        metrics_series_add(c->busy, busy / 1000);
        double u = (double)busy / (double)(mono - c->last_mono_ns);
        metrics_series_set(c->util, u > 1.0 ? 1.0 : u);
    }
    c->last_mono_ns = mono;
    c->last_cpu_ns = cpu;
    collect_partitions(&c->seen);
    if (c->shard == 0) {
        struct mallinfo2 mi = mallinfo2();
        metrics_gauge_set(metrics_local, M_MEMORY_BYTES, (double)mi.uordblks, "malloc_heap");
        metrics_gauge_set(metrics_local, M_UPTIME,
                          (double)(wall_ms() - (c->admin ? c->admin->start_ms : 0)) / 1000.0);
    }
    reactor_timer_add(c->rs, t, now + COLLECT_NS, NULL);
}

static void collector_stop(reactor_shard *self, void *arg)
{
    struct collector *c = arg;
    admin_set_ready(false); /* stopping: load balancers should stop sending */
    reactor_timer_cancel(self, &c->timer);
    reactor_timer_cancel(self, &c->probe);
    if (c->srv) http_server_stop(c->srv, NULL, NULL);
    /* The server frees itself when its ops complete (the shard polls after the hooks); no
     * request is dispatched after the stop, so the handlers' state can go now. */
    __atomic_store_n(&g_port, 0, __ATOMIC_RELEASE);
    admin_state_free(c->admin);
    seen_free(&c->seen);
    free(c);
}

static void metrics_once(void)
{
    int rc = metrics_init(__atomic_load_n(&g_metrics_shards, __ATOMIC_ACQUIRE));
    if (rc) log_error("admin", "metrics registry: %s", al_strerror(rc));
}

int admin_shard_start(reactor_shard *self, const al_config *cfg, const char *cluster_id,
                      unsigned n_shards)
{
    unsigned unset = 0; /* the first shard here decides; all pass the same count */
    __atomic_compare_exchange_n(&g_metrics_shards, &unset, n_shards, false, __ATOMIC_ACQ_REL,
                                __ATOMIC_ACQUIRE);
    pthread_once(&g_metrics_once, metrics_once);
    unsigned idx = reactor_shard_index(self);
    metrics_bind(idx);
    struct collector *c = calloc(1, sizeof(*c));
    if (!c) return -ENOMEM;
    c->rs = self;
    c->shard = idx;
    snprintf(c->shard_label, sizeof(c->shard_label), "%u", idx);
    const char *sl[] = {c->shard_label, NULL};
    c->util = metrics_series_get(metrics_local, M_REACTOR_UTILIZATION, sl);
    c->busy = metrics_series_get(metrics_local, M_REACTOR_BUSY_SECONDS, sl);
    c->stalls = metrics_series_get(metrics_local, M_REACTOR_STALLS, sl);
    c->lag = metrics_series_get(metrics_local, M_REACTOR_LAG, sl);
    if (idx == 0) {
        metrics_gauge_set(metrics_local, M_BUILD_INFO, 1, AILURUS_VERSION);
        c->admin = admin_state_new(cfg, cluster_id, n_shards);
        if (c->admin) admin_state_set_io(c->admin, reactor_io(self));
        if (!c->admin) {
            free(c);
            return -ENOMEM;
        }
        struct http_server_opts o = {.host = cfg->admin_addr.host,
                                     .port = cfg->admin_addr.port,
                                     .router = admin_router(c->admin)};
        int rc = http_server_start(reactor_io(self), &o, &c->srv);
        if (rc) {
            log_error("admin", "admin API disabled: cannot listen on %s:%u: %s",
                      cfg->admin_addr.host, cfg->admin_addr.port, al_strerror(rc));
            c->srv = NULL;
        } else {
            __atomic_store_n(&g_port, http_server_port(c->srv), __ATOMIC_RELEASE);
            log_info("admin", "admin API listening on %s:%u", cfg->admin_addr.host,
                     http_server_port(c->srv));
        }
    }
    reactor_timer_init(&c->timer, collect_tick, c);
    int rc = reactor_timer_add(self, &c->timer, io_now_ns(reactor_io(self)) + COLLECT_NS, NULL);
    reactor_timer_init(&c->probe, probe_tick, c);
    if (rc == 0)
        rc = reactor_timer_add(self, &c->probe, io_now_ns(reactor_io(self)) + PROBE_IDLE_NS, NULL);
    if (rc == 0) rc = reactor_on_shutdown(self, collector_stop, c);
    if (rc) {
        reactor_timer_cancel(self, &c->timer);
        reactor_timer_cancel(self, &c->probe);
        if (c->srv) http_server_stop(c->srv, NULL, NULL);
        admin_state_free(c->admin);
        free(c);
        return rc;
    }
    return 0;
}
