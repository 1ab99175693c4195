/*
 * controller.c — the controller state (controller.h): brokers, topics with assignments, cluster
 * config; the deterministic apply of committed command batches with per-command results; the
 * checksummed snapshot codec; and the local reconciliation plan.
 *
 * Determinism: apply reads only the state and the command bytes (no clock, no randomness, no
 * allocation-dependent order), and every command is validated completely before anything is
 * changed, so a refused command leaves no trace but its result.
 */
#include "cluster/controller.h"

#include "base/crc32c.h"
#include "base/cursor.h"
#include "base/log.h"
#include "cluster/controller_wire.h"
#include "kafka/errors.h"
#include "storage/batch.h"

#include <stdlib.h>

#define SNAPSHOT_MAGIC 0x414c4353u /* "ALCS" */
enum { SNAPSHOT_HEADER = 14, APPLY_RECORDS_MAX = 64 << 20 };

static const uint8_t zero_id[16];

void controller_state_init(controller_state *st)
{
    memset(st, 0, sizeof(*st));
    st->applied_offset = -1;
    st->next_producer_id = 1;
    AL_ASSERT(topic_table_init(&st->topics, NULL, NULL) == 0);
}

void controller_state_free(controller_state *st)
{
    topic_table_free(&st->topics);
    free(st->brokers);
    free(st->configs);
    memset(st, 0, sizeof(*st));
    st->applied_offset = -1;
}

/* Index of node_id in the sorted broker array, or -(insertion point) - 1. */
static int32_t broker_search(const controller_state *st, int32_t node_id)
{
    int32_t lo = 0, hi = st->n_brokers - 1;
    while (lo <= hi) {
        int32_t mid = lo + (hi - lo) / 2;
        int32_t m = st->brokers[mid].node_id;
        if (m == node_id) return mid;
        if (m < node_id)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -lo - 1;
}

const controller_broker *controller_broker_find(const controller_state *st, int32_t node_id)
{
    int32_t i = broker_search(st, node_id);
    return i >= 0 ? &st->brokers[i] : NULL;
}

/* Index of key in the sorted kv[0..n), or -(insertion point) - 1. */
static int32_t config_search(const topic_config_kv *kv, int32_t n, const char *key)
{
    int32_t lo = 0, hi = n - 1;
    while (lo <= hi) {
        int32_t mid = lo + (hi - lo) / 2;
        int c = strcmp(kv[mid].key, key);
        if (c == 0) return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -lo - 1;
}

const char *controller_config_value(const controller_state *st, const char *key)
{
    int32_t i = config_search(st->configs, st->n_configs, key);
    return i >= 0 ? st->configs[i].value : NULL;
}

bool controller_result_find(const controller_state *st, int32_t proposer, uint64_t request_id,
                            controller_result *out)
{
    /* Newest first: a re-used request id finds its latest result. */
    for (uint32_t k = 0; k < st->n_results; k++) {
        uint32_t i = (st->results_head + CONTROLLER_RESULTS_MAX - 1 - k) % CONTROLLER_RESULTS_MAX;
        const controller_result *r = &st->results[i];
        if (r->proposer == proposer && r->request_id == request_id) {
            *out = *r;
            return true;
        }
    }
    return false;
}

/* Remembers one command result, overwriting the oldest when the ring is full. */
static void result_push(controller_state *st, const controller_result *r)
{
    st->results[st->results_head] = *r;
    st->results_head = (st->results_head + 1) % CONTROLLER_RESULTS_MAX;
    if (st->n_results < CONTROLLER_RESULTS_MAX) st->n_results++;
}

/* An out-of-memory error while applying a committed command: stop rather than diverge. */
static void apply_oom_check(int err)
{
    if (err == -ENOMEM)
        AL_PANIC("controller: out of memory applying a committed command; stopping so this "
                 "node cannot diverge from the cluster (restart it with more memory)");
}

/* ---- validation helpers ---- */

/* Whether node may hold a replica on shard: registered, not removed, shard < its cores. */
static bool replica_ok(const controller_state *st, int32_t node, uint16_t shard)
{
    const controller_broker *b = controller_broker_find(st, node);
    return b && b->membership != CONTROLLER_NODE_REMOVED && shard < b->cores;
}

/* Whether a is a valid assignment over registered nodes, with exactly rf replicas (rf > 0). */
static bool assign_ok(const controller_state *st, const topic_assignment *a, int16_t rf)
{
    if (!topic_assignment_valid(a)) return false;
    if (rf > 0 && a->n != rf) return false;
    for (int i = 0; i < a->n; i++)
        if (!replica_ok(st, a->nodes[i], a->shards[i])) return false;
    return true;
}

/* Checks a set of config overrides: count, non-empty unique keys. */
static bool configs_ok(const topic_config_kv *kv, int32_t n, int32_t max)
{
    if (n < 0 || n > max) return false;
    for (int32_t i = 0; i < n; i++) {
        if (!kv[i].key[0]) return false;
        for (int32_t j = 0; j < i; j++)
            if (!strcmp(kv[i].key, kv[j].key)) return false;
    }
    return true;
}

static int kv_cmp(const void *a, const void *b)
{
    return strcmp(((const topic_config_kv *)a)->key, ((const topic_config_kv *)b)->key);
}

/*
 * Computes base (n entries, sorted) with sets applied then removes, into a malloc'd sorted
 * array *out (*n_out entries). Returns 0, AL_EINVAL (an empty key, or more than max), -ENOMEM.
 */
static int configs_merge(const topic_config_kv *base, int32_t n, const controller_cmd *c,
                         int32_t max, topic_config_kv **out, int32_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    size_t cap = (size_t)n + (size_t)c->n_configs + 1;
    topic_config_kv *m = malloc(cap * sizeof(*m));
    if (!m) return -ENOMEM;
    if (n) memcpy(m, base, (size_t)n * sizeof(*m));
    int32_t k = n;
    for (int32_t i = 0; i < c->n_configs; i++) {
        if (!c->configs[i].key[0]) goto inval;
        int32_t at = -1;
        for (int32_t j = 0; j < k; j++)
            if (!strcmp(m[j].key, c->configs[i].key)) at = j;
        if (at < 0) at = k++;
        m[at] = c->configs[i];
    }
    for (int32_t i = 0; i < c->n_removes; i++) {
        if (!c->removes[i][0]) goto inval;
        for (int32_t j = 0; j < k; j++) {
            if (strcmp(m[j].key, c->removes[i])) continue;
            m[j] = m[k - 1];
            k--;
            break;
        }
    }
    if (k > max) goto inval;
    al_sort(m, (size_t)k, sizeof(*m), kv_cmp);
    *out = m;
    *n_out = k;
    return 0;
inval:
    free(m);
    return AL_EINVAL;
}

/* ---- the commands ---- */

/* INVALID_REGISTRATION unless the broker has an id in [0, INT32_MAX) (next_node_id = id + 1
 * must fit), 1..TOPIC_SHARDS_MAX cores and both hosts; else 0. */
static int16_t broker_fields_check(const controller_broker *b)
{
    if (b->node_id < 0 || b->node_id == INT32_MAX || b->cores < 1 ||
        b->cores > TOPIC_SHARDS_MAX || !b->kafka_host[0] || !b->rpc_host[0])
        return KAFKA_ERR_INVALID_REGISTRATION;
    return 0;
}

/* REGISTER_NODE (new: ACTIVE, registered now; known: addresses, rack and cores refreshed;
 * removed: refused) and UPDATE_NODE (known nodes only). Returns the Kafka error. */
static int16_t apply_register(controller_state *st, const controller_cmd *c, bool update)
{
    const controller_broker *in = &c->broker;
    int16_t kerr = broker_fields_check(in);
    if (kerr) return kerr;
    int32_t i = broker_search(st, in->node_id);
    if (i < 0 && update) return KAFKA_ERR_BROKER_NOT_AVAILABLE;
    if (i >= 0) {
        controller_broker *b = &st->brokers[i];
        if (b->membership == CONTROLLER_NODE_REMOVED) return KAFKA_ERR_INVALID_REGISTRATION;
        memcpy(b->kafka_host, in->kafka_host, sizeof(b->kafka_host));
        memcpy(b->rpc_host, in->rpc_host, sizeof(b->rpc_host));
        memcpy(b->rack, in->rack, sizeof(b->rack));
        b->kafka_port = in->kafka_port;
        b->rpc_port = in->rpc_port;
        b->cores = in->cores;
        b->updated_ms = c->ts_ms;
        return 0;
    }
    if (st->n_brokers >= CONTROLLER_NODES_MAX) return KAFKA_ERR_INVALID_REGISTRATION;
    if (st->n_brokers == st->cap_brokers) {
        int32_t ncap = st->cap_brokers ? st->cap_brokers * 2 : 8;
        controller_broker *nb = realloc(st->brokers, (size_t)ncap * sizeof(*nb));
        if (!nb) apply_oom_check(-ENOMEM);
        st->brokers = nb;
        st->cap_brokers = ncap;
    }
    int32_t at = -i - 1;
    memmove(&st->brokers[at + 1], &st->brokers[at],
            (size_t)(st->n_brokers - at) * sizeof(*st->brokers));
    controller_broker *b = &st->brokers[at];
    *b = *in;
    b->kafka_host[CONTROLLER_HOST_MAX - 1] = 0;
    b->rpc_host[CONTROLLER_HOST_MAX - 1] = 0;
    b->rack[CONTROLLER_RACK_MAX - 1] = 0;
    b->membership = CONTROLLER_NODE_ACTIVE;
    b->registered_ms = c->ts_ms;
    b->updated_ms = c->ts_ms;
    st->n_brokers++;
    if (in->node_id >= st->next_node_id) st->next_node_id = in->node_id + 1;
    return 0;
}

/* CREATE_TOPIC: name, partitions, rf, a fresh non-zero id, configs and one valid assignment
 * of rf replicas per partition are checked before the table changes. Returns the Kafka error. */
static int16_t apply_create_topic(controller_state *st, const controller_cmd *c)
{
    if (!topic_name_valid(c->name, strlen(c->name))) return KAFKA_ERR_INVALID_TOPIC_EXCEPTION;
    if (topic_table_find(&st->topics, c->name, strlen(c->name)))
        return KAFKA_ERR_TOPIC_ALREADY_EXISTS;
    if (c->partitions < 1 || c->partitions > TOPIC_PARTITIONS_MAX)
        return KAFKA_ERR_INVALID_PARTITIONS;
    if (c->replication_factor < 1 || c->replication_factor > TOPIC_REPLICAS_MAX)
        return KAFKA_ERR_INVALID_REPLICATION_FACTOR;
    if (!memcmp(c->topic_id, zero_id, 16) || topic_table_find_id(&st->topics, c->topic_id))
        return KAFKA_ERR_INVALID_REQUEST;
    if (!configs_ok(c->configs, c->n_configs, TOPIC_CONFIGS_MAX) || c->n_removes)
        return KAFKA_ERR_INVALID_CONFIG;
    if (c->n_assign != c->partitions) return KAFKA_ERR_INVALID_REPLICA_ASSIGNMENT;
    for (int32_t p = 0; p < c->n_assign; p++)
        if (!assign_ok(st, &c->assign[p], c->replication_factor))
            return KAFKA_ERR_INVALID_REPLICA_ASSIGNMENT;
    topic_spec s = {.name = c->name,
                    .partitions = c->partitions,
                    .replication_factor = c->replication_factor,
                    .internal = c->internal,
                    .id = c->topic_id,
                    .created_ms = AL_MAX(c->ts_ms, 0),
                    .configs = c->configs,
                    .n_configs = c->n_configs,
                    .assign = c->assign};
    int err = topic_table_create_spec(&st->topics, &s);
    apply_oom_check(err);
    if (err == AL_EFULL) return KAFKA_ERR_POLICY_VIOLATION;
    if (err) return KAFKA_ERR_INVALID_REQUEST;
    return 0;
}

/* DELETE_TOPIC by name; a non-zero id must match the current topic. Returns the Kafka error. */
static int16_t apply_delete_topic(controller_state *st, const controller_cmd *c)
{
    const topic *t = topic_table_find(&st->topics, c->name, strlen(c->name));
    if (!t) return KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION;
    if (memcmp(c->topic_id, zero_id, 16) && memcmp(c->topic_id, t->id, 16))
        return KAFKA_ERR_UNKNOWN_TOPIC_ID;
    AL_ASSERT(topic_table_delete(&st->topics, c->name) == 0);
    return 0;
}

/* CREATE_PARTITIONS: grows to c->partitions with one assignment (rf replicas) per new
 * partition. Returns the Kafka error. */
static int16_t apply_create_partitions(controller_state *st, const controller_cmd *c)
{
    const topic *t = topic_table_find(&st->topics, c->name, strlen(c->name));
    if (!t) return KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION;
    if (c->partitions <= t->partitions || c->partitions > TOPIC_PARTITIONS_MAX)
        return KAFKA_ERR_INVALID_PARTITIONS;
    if (c->n_assign != c->partitions - t->partitions) return KAFKA_ERR_INVALID_REPLICA_ASSIGNMENT;
    for (int32_t p = 0; p < c->n_assign; p++)
        if (!assign_ok(st, &c->assign[p], t->replication_factor))
            return KAFKA_ERR_INVALID_REPLICA_ASSIGNMENT;
    int err = topic_table_add_partitions_assigned(&st->topics, c->name, c->partitions, c->assign);
    apply_oom_check(err);
    return err ? KAFKA_ERR_INVALID_REQUEST : 0;
}

/* REPLACE_TOPIC_CONFIGS (the whole set) or ALTER_TOPIC_CONFIGS (sets, then removes), all or
 * nothing. Returns the Kafka error. */
static int16_t apply_topic_configs(controller_state *st, const controller_cmd *c, bool replace)
{
    const topic *t = topic_table_find(&st->topics, c->name, strlen(c->name));
    if (!t) return KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION;
    topic_config_kv *m = NULL;
    int32_t n = 0;
    int err;
    if (replace) {
        if (c->n_removes || !configs_ok(c->configs, c->n_configs, TOPIC_CONFIGS_MAX))
            return KAFKA_ERR_INVALID_CONFIG;
        err = topic_table_replace_configs(&st->topics, c->name, c->configs, c->n_configs);
    } else {
        err = configs_merge(t->configs, t->n_configs, c, TOPIC_CONFIGS_MAX, &m, &n);
        if (!err) err = topic_table_replace_configs(&st->topics, c->name, m, n);
        free(m);
    }
    apply_oom_check(err);
    return err ? KAFKA_ERR_INVALID_CONFIG : 0;
}

/* SET_CLUSTER_CONFIG: sets then removes on the cluster overrides, all or nothing. */
static int16_t apply_cluster_config(controller_state *st, const controller_cmd *c)
{
    topic_config_kv *m = NULL;
    int32_t n = 0;
    int err = configs_merge(st->configs, st->n_configs, c, CONTROLLER_CONFIGS_MAX, &m, &n);
    apply_oom_check(err);
    if (err) return KAFKA_ERR_INVALID_CONFIG;
    free(st->configs);
    st->configs = m;
    st->n_configs = st->cap_configs = n;
    st->config_version++;
    return 0;
}

/* MOVE_PARTITION: replaces one partition's replica list with a valid one. */
static int16_t apply_move(controller_state *st, const controller_cmd *c)
{
    const topic *t = topic_table_find(&st->topics, c->name, strlen(c->name));
    if (!t || c->partition < 0 || c->partition >= t->partitions)
        return KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION;
    if (c->n_assign != 1 || !assign_ok(st, &c->assign[0], 0) || !t->assign)
        return KAFKA_ERR_INVALID_REPLICA_ASSIGNMENT;
    int err = topic_table_set_assignment(&st->topics, c->name, c->partition, &c->assign[0]);
    return err ? KAFKA_ERR_INVALID_REPLICA_ASSIGNMENT : 0;
}

/* Whether any partition lists node as a replica. */
static bool node_has_replicas(const controller_state *st, int32_t node)
{
    for (int32_t i = 0; i < st->topics.n; i++) {
        const topic *t = topic_table_at(&st->topics, i);
        for (int32_t p = 0; t->assign && p < t->partitions; p++)
            for (int r = 0; r < t->assign[p].n; r++)
                if (t->assign[p].nodes[r] == node) return true;
    }
    return false;
}

/* SET_MAINTENANCE, DECOMMISSION, RECOMMISSION and REMOVE_NODE: the membership transitions
 * (controller.h lists them); an impossible one is INVALID_REQUEST, removing a node that still
 * holds replicas REASSIGNMENT_IN_PROGRESS. Returns the Kafka error. */
static int16_t apply_membership(controller_state *st, const controller_cmd *c)
{
    int32_t i = broker_search(st, c->node_id);
    if (i < 0) return KAFKA_ERR_BROKER_NOT_AVAILABLE;
    controller_broker *b = &st->brokers[i];
    uint8_t from = b->membership, to = from;
    switch (c->type) {
    case CONTROLLER_CMD_SET_MAINTENANCE:
        if (from == CONTROLLER_NODE_ACTIVE || from == CONTROLLER_NODE_DRAINING)
            to = c->flag ? CONTROLLER_NODE_DRAINING : CONTROLLER_NODE_ACTIVE;
        else
            return KAFKA_ERR_INVALID_REQUEST;
        break;
    case CONTROLLER_CMD_DECOMMISSION_NODE:
        if (from == CONTROLLER_NODE_REMOVED) return KAFKA_ERR_INVALID_REQUEST;
        to = CONTROLLER_NODE_DECOMMISSIONING;
        break;
    case CONTROLLER_CMD_RECOMMISSION_NODE:
        if (from == CONTROLLER_NODE_ACTIVE) return 0;
        if (from != CONTROLLER_NODE_DECOMMISSIONING) return KAFKA_ERR_INVALID_REQUEST;
        to = CONTROLLER_NODE_ACTIVE;
        break;
    case CONTROLLER_CMD_REMOVE_NODE:
        if (from == CONTROLLER_NODE_REMOVED) return 0;
        if (from != CONTROLLER_NODE_DECOMMISSIONING) return KAFKA_ERR_INVALID_REQUEST;
        if (node_has_replicas(st, c->node_id)) return KAFKA_ERR_REASSIGNMENT_IN_PROGRESS;
        to = CONTROLLER_NODE_REMOVED;
        break;
    default:
        AL_PANIC("controller: membership command %u", c->type);
    }
    b->membership = to;
    b->updated_ms = c->ts_ms;
    return 0;
}

/* SET_CLUSTER_ID: the first non-zero id wins; the same id again is 0, another one
 * INCONSISTENT_CLUSTER_ID. */
static int16_t apply_cluster_id(controller_state *st, const controller_cmd *c)
{
    if (!memcmp(c->cluster_id, zero_id, 16)) return KAFKA_ERR_INVALID_REQUEST;
    if (st->has_cluster_id)
        return memcmp(st->cluster_id, c->cluster_id, 16) ? KAFKA_ERR_INCONSISTENT_CLUSTER_ID : 0;
    memcpy(st->cluster_id, c->cluster_id, 16);
    st->has_cluster_id = true;
    return 0;
}

/* ALLOC_IDS: hands out [next_producer_id, + count) in *value (count 1..2^30). */
static int16_t apply_alloc_ids(controller_state *st, const controller_cmd *c, int64_t *value)
{
    if (c->count < 1 || c->count > (1 << 30) || st->next_producer_id > INT64_MAX - c->count)
        return KAFKA_ERR_INVALID_REQUEST;
    *value = st->next_producer_id;
    st->next_producer_id += c->count;
    return 0;
}

/* Applies one decoded command; returns its Kafka error (0: applied, state version bumped). */
static int16_t apply_cmd(controller_state *st, const controller_cmd *c, int64_t *value)
{
    int16_t kerr;
    switch (c->type) {
    case CONTROLLER_CMD_REGISTER_NODE: kerr = apply_register(st, c, false); break;
    case CONTROLLER_CMD_UPDATE_NODE: kerr = apply_register(st, c, true); break;
    case CONTROLLER_CMD_CREATE_TOPIC: kerr = apply_create_topic(st, c); break;
    case CONTROLLER_CMD_DELETE_TOPIC: kerr = apply_delete_topic(st, c); break;
    case CONTROLLER_CMD_CREATE_PARTITIONS: kerr = apply_create_partitions(st, c); break;
    case CONTROLLER_CMD_REPLACE_TOPIC_CONFIGS: kerr = apply_topic_configs(st, c, true); break;
    case CONTROLLER_CMD_ALTER_TOPIC_CONFIGS: kerr = apply_topic_configs(st, c, false); break;
    case CONTROLLER_CMD_SET_CLUSTER_CONFIG: kerr = apply_cluster_config(st, c); break;
    case CONTROLLER_CMD_MOVE_PARTITION: kerr = apply_move(st, c); break;
    case CONTROLLER_CMD_SET_MAINTENANCE:
    case CONTROLLER_CMD_DECOMMISSION_NODE:
    case CONTROLLER_CMD_RECOMMISSION_NODE:
    case CONTROLLER_CMD_REMOVE_NODE: kerr = apply_membership(st, c); break;
    case CONTROLLER_CMD_SET_CLUSTER_ID: kerr = apply_cluster_id(st, c); break;
    case CONTROLLER_CMD_ALLOC_IDS: kerr = apply_alloc_ids(st, c, value); break;
    default: kerr = KAFKA_ERR_INVALID_REQUEST; break;
    }
    if (!kerr) st->version++;
    return kerr;
}

int controller_apply(controller_state *st, const uint8_t *batch, size_t len,
                     controller_result_fn cb, void *arg)
{
    storage_batch_hdr h;
    int64_t size = storage_batch_validate(batch, len, 0, &h);
    if (size < 0) return (int)size;
    if ((size_t)size != len) return AL_EMALFORMED;
    int64_t last = storage_batch_last_offset(&h);
    if (last <= st->applied_offset) return 0;
    if (h.attributes & STORAGE_ATTR_CONTROL) {
        st->applied_offset = last;
        return 0;
    }
    const uint8_t *recs;
    size_t recs_len;
    uint8_t *owned = NULL;
    int err = storage_batch_records(batch, len, APPLY_RECORDS_MAX, &recs, &recs_len, &owned);
    if (err) return err == -ENOMEM ? err : AL_EMALFORMED;
    /* Parse every record first: a batch that does not parse is refused as a whole. */
    storage_record_iter it;
    storage_record rec;
    storage_record_iter_init(&it, recs, recs_len, h.records_count);
    int k;
    for (int32_t i = 0; i <= h.records_count && (k = storage_record_iter_next(&it, &rec)) != 0;
         i++) {
        if (k < 0) {
            free(owned);
            return k;
        }
    }
    storage_record_iter_init(&it, recs, recs_len, h.records_count);
    for (int32_t i = 0; i < h.records_count && storage_record_iter_next(&it, &rec) == 1; i++) {
        int64_t off = h.base_offset + rec.offset_delta;
        if (off <= st->applied_offset) continue;
        controller_cmd c;
        memset(&c, 0, sizeof(c)); /* a null value never reaches the decoder */
        controller_result r = {.offset = off};
        int derr = rec.value_len < 0 ? AL_EMALFORMED
                                     : controller_cmd_decode(rec.value, (size_t)rec.value_len, &c);
        apply_oom_check(derr);
        if (derr) {
            r.error = KAFKA_ERR_INVALID_REQUEST;
        } else {
            r.proposer = c.proposer;
            r.request_id = c.request_id;
            r.error = apply_cmd(st, &c, &r.value);
        }
        result_push(st, &r);
        if (cb) cb(arg, &c, &r);
        controller_cmd_free(&c);
    }
    st->applied_offset = last;
    free(owned);
    return 0;
}

/* ---- snapshot ---- */

/* Writes (or sizes, see cw) the snapshot body: header fields, brokers, configs, topics. */
static void snap_write(cw *w, const controller_state *st)
{
    cw_u64(w, (uint64_t)st->applied_offset);
    cw_u64(w, st->version);
    cw_u64(w, st->config_version);
    cw_u8(w, st->has_cluster_id ? 1 : 0);
    cw_put(w, st->cluster_id, 16);
    cw_u32(w, (uint32_t)st->next_node_id);
    cw_u64(w, (uint64_t)st->next_producer_id);
    cw_u64(w, st->topics.version);
    cw_uvar(w, (uint64_t)st->n_brokers);
    for (int32_t i = 0; i < st->n_brokers; i++) {
        const controller_broker *b = &st->brokers[i];
        cw_u32(w, (uint32_t)b->node_id);
        cw_str(w, b->kafka_host, sizeof(b->kafka_host));
        cw_u16(w, b->kafka_port);
        cw_str(w, b->rpc_host, sizeof(b->rpc_host));
        cw_u16(w, b->rpc_port);
        cw_str(w, b->rack, sizeof(b->rack));
        cw_u32(w, b->cores);
        cw_u8(w, b->membership);
        cw_u64(w, (uint64_t)b->registered_ms);
        cw_u64(w, (uint64_t)b->updated_ms);
    }
    cw_configs(w, st->configs, st->n_configs);
    cw_uvar(w, (uint64_t)st->topics.n);
    for (int32_t i = 0; i < st->topics.n; i++) {
        const topic *t = topic_table_at(&st->topics, i);
        cw_str(w, t->name, sizeof(t->name));
        cw_put(w, t->id, 16);
        cw_u32(w, (uint32_t)t->partitions);
        cw_u16(w, (uint16_t)t->replication_factor);
        cw_u8(w, t->internal ? 1 : 0);
        cw_u64(w, (uint64_t)t->created_ms);
        cw_configs(w, t->configs, t->n_configs);
        cw_assigns(w, t->assign, t->assign ? t->partitions : 0);
    }
}

int controller_snapshot_encode(const controller_state *st, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    cw sz = {0};
    snap_write(&sz, st);
    AL_ASSERT(!sz.err);
    size_t total = SNAPSHOT_HEADER + sz.n;
    AL_ASSERT(sz.n <= UINT32_MAX);
    uint8_t *buf = malloc(total);
    if (!buf) return -ENOMEM;
    cw w = {buf + SNAPSHOT_HEADER, buf + total, 0, 0};
    snap_write(&w, st);
    AL_ASSERT(!w.err && w.n == sz.n);
    al_put_be32(buf, SNAPSHOT_MAGIC);
    buf[4] = 0;
    buf[5] = CONTROLLER_SNAPSHOT_FORMAT;
    al_put_be32(buf + 6, (uint32_t)sz.n);
    al_put_be32(buf + 10, crc32c(0, buf + SNAPSHOT_HEADER, sz.n));
    *out = buf;
    *len = total;
    return 0;
}

/* Reads configs (sorted strictly by key, non-empty keys) into a malloc'd array. */
static int snap_rd_configs(al_rd *rd, int32_t max, topic_config_kv **out, int32_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    int32_t n = rd_count(rd, max, 2);
    if (rd->err) return AL_ECORRUPT;
    if (n == 0) return 0;
    topic_config_kv *kv = calloc((size_t)n, sizeof(*kv));
    if (!kv) return -ENOMEM;
    for (int32_t i = 0; i < n && !rd->err; i++) {
        rd_str(rd, kv[i].key, sizeof(kv[i].key));
        rd_str(rd, kv[i].value, sizeof(kv[i].value));
        if (!rd->err && (!kv[i].key[0] || (i > 0 && strcmp(kv[i - 1].key, kv[i].key) >= 0)))
            al_rd_fail(rd, AL_ECORRUPT);
    }
    if (rd->err) {
        free(kv);
        return AL_ECORRUPT;
    }
    *out = kv;
    *n_out = n;
    return 0;
}

/* Reads one broker; ids must rise strictly (prev_id before). Returns 0 or AL_ECORRUPT. */
static int snap_rd_broker(al_rd *rd, controller_broker *b, int32_t prev_id)
{
    memset(b, 0, sizeof(*b));
    b->node_id = al_rd_i32(rd);
    rd_str(rd, b->kafka_host, sizeof(b->kafka_host));
    b->kafka_port = al_rd_u16(rd);
    rd_str(rd, b->rpc_host, sizeof(b->rpc_host));
    b->rpc_port = al_rd_u16(rd);
    rd_str(rd, b->rack, sizeof(b->rack));
    b->cores = al_rd_u32(rd);
    b->membership = al_rd_u8(rd);
    b->registered_ms = al_rd_i64(rd);
    b->updated_ms = al_rd_i64(rd);
    if (rd->err) return AL_ECORRUPT;
    if (b->node_id <= prev_id || b->cores < 1 || b->cores > TOPIC_SHARDS_MAX ||
        b->membership > CONTROLLER_NODE_REMOVED)
        return AL_ECORRUPT;
    return 0;
}

/* Reads one topic and adds it to st->topics (names must come in strictly rising order). */
static int snap_rd_topic(al_rd *rd, controller_state *st, char *prev_name)
{
    char name[TOPIC_NAME_MAX + 1];
    uint8_t id[16];
    rd_str(rd, name, sizeof(name));
    const uint8_t *idp = al_rd_bytes(rd, 16);
    if (idp) memcpy(id, idp, 16);
    int32_t partitions = al_rd_i32(rd);
    int16_t rf = al_rd_i16(rd);
    uint8_t internal = al_rd_u8(rd);
    int64_t created = al_rd_i64(rd);
    if (rd->err || internal > 1 || strcmp(prev_name, name) >= 0 || created < 0 ||
        !memcmp(id, zero_id, 16))
        return AL_ECORRUPT;
    topic_config_kv *kv = NULL;
    int32_t nkv = 0;
    topic_assignment *as = NULL;
    int err = snap_rd_configs(rd, TOPIC_CONFIGS_MAX, &kv, &nkv);
    if (err) return err;
    int32_t na = rd_count(rd, TOPIC_PARTITIONS_MAX, 7);
    err = AL_ECORRUPT;
    if (rd->err || (na != 0 && na != partitions)) goto out;
    if (na) {
        as = calloc((size_t)na, sizeof(*as));
        err = -ENOMEM;
        if (!as) goto out;
        err = AL_ECORRUPT;
        for (int32_t p = 0; p < na && !rd->err; p++) {
            rd_assign_one(rd, &as[p]);
            /* apply keeps every replica on a registered, not removed node */
            for (int r = 0; r < as[p].n && !rd->err; r++) {
                const controller_broker *b = controller_broker_find(st, as[p].nodes[r]);
                if (!b || b->membership == CONTROLLER_NODE_REMOVED) al_rd_fail(rd, AL_ECORRUPT);
            }
        }
        if (rd->err) goto out;
    }
    topic_spec s = {.name = name,
                    .partitions = partitions,
                    .replication_factor = rf,
                    .internal = internal == 1,
                    .id = id,
                    .created_ms = created,
                    .configs = kv,
                    .n_configs = nkv,
                    .assign = as};
    err = topic_table_create_spec(&st->topics, &s);
    if (err && err != -ENOMEM) err = AL_ECORRUPT;
    if (!err) strcpy(prev_name, name);
out:
    free(kv);
    free(as);
    return err;
}

/* Decodes a verified snapshot body into the empty state fresh. */
static int snap_read(al_rd *rd, controller_state *st)
{
    st->applied_offset = al_rd_i64(rd);
    st->version = al_rd_u64(rd);
    st->config_version = al_rd_u64(rd);
    uint8_t has = al_rd_u8(rd);
    const uint8_t *cid = al_rd_bytes(rd, 16);
    if (cid) memcpy(st->cluster_id, cid, 16);
    st->next_node_id = al_rd_i32(rd);
    st->next_producer_id = al_rd_i64(rd);
    uint64_t topics_version = al_rd_u64(rd);
    if (rd->err || has > 1 || st->applied_offset < -1 || st->next_node_id < 0 ||
        st->next_producer_id < 1 || (has == 1) != (memcmp(st->cluster_id, zero_id, 16) != 0))
        return AL_ECORRUPT;
    st->has_cluster_id = has == 1;
    int32_t nb = rd_count(rd, CONTROLLER_NODES_MAX, 30);
    if (rd->err) return AL_ECORRUPT;
    if (nb) {
        st->brokers = calloc((size_t)nb, sizeof(*st->brokers));
        if (!st->brokers) return -ENOMEM;
        st->cap_brokers = nb;
    }
    for (int32_t i = 0; i < nb; i++) {
        int err = snap_rd_broker(rd, &st->brokers[i], i ? st->brokers[i - 1].node_id : -1);
        if (err) return err;
        if (st->brokers[i].node_id >= st->next_node_id) return AL_ECORRUPT;
        st->n_brokers++;
    }
    int err = snap_rd_configs(rd, CONTROLLER_CONFIGS_MAX, &st->configs, &st->n_configs);
    if (err) return err;
    st->cap_configs = st->n_configs;
    int32_t nt = rd_count(rd, TOPIC_TABLE_MAX, 40);
    if (rd->err) return AL_ECORRUPT;
    char prev[TOPIC_NAME_MAX + 1] = "";
    for (int32_t i = 0; i < nt; i++) {
        err = snap_rd_topic(rd, st, prev);
        if (err) return err;
    }
    if (rd->err || al_rd_left(rd)) return AL_ECORRUPT;
    st->topics.version = topics_version;
    return 0;
}

int controller_snapshot_decode(controller_state *st, const uint8_t *buf, size_t len)
{
    if (len < SNAPSHOT_HEADER || al_be32(buf) != SNAPSHOT_MAGIC) return AL_ECORRUPT;
    uint16_t format = al_be16(buf + 4);
    if (format > CONTROLLER_SNAPSHOT_FORMAT) return AL_EUNSUPPORTED;
    if (format != CONTROLLER_SNAPSHOT_FORMAT) return AL_ECORRUPT;
    uint32_t body = al_be32(buf + 6);
    if ((size_t)body != len - SNAPSHOT_HEADER) return AL_ECORRUPT;
    if (crc32c(0, buf + SNAPSHOT_HEADER, body) != al_be32(buf + 10)) return AL_ECORRUPT;
    controller_state *fresh = malloc(sizeof(*fresh));
    if (!fresh) return -ENOMEM;
    controller_state_init(fresh);
    al_rd rd = al_rd_make(buf + SNAPSHOT_HEADER, body);
    int err = snap_read(&rd, fresh);
    if (err) {
        controller_state_free(fresh);
        free(fresh);
        return err;
    }
    controller_state_free(st);
    *st = *fresh; /* the results ring starts empty */
    free(fresh);
    return 0;
}

int controller_snapshot_save(const controller_state *st, io *ioh, const char *path)
{
    uint8_t *buf;
    size_t len;
    int err = controller_snapshot_encode(st, &buf, &len);
    if (err) return err;
    err = io_fs_write_atomic(ioh, path, buf, len);
    free(buf);
    if (err) log_error("cluster", "saving the controller snapshot %s failed: %s", path,
                       al_strerror(err));
    return err;
}

int controller_snapshot_load(controller_state *st, io *ioh, const char *path)
{
    uint8_t *buf;
    size_t len;
    int err = io_fs_read_all(ioh, path, CONTROLLER_SNAPSHOT_FILE_MAX, &buf, &len);
    if (err) return err;
    err = controller_snapshot_decode(st, buf, len);
    free(buf);
    if (err)
        log_error("cluster", "controller snapshot %s is unusable (%s): move it away to rebuild "
                  "the state from the controller log", path, al_strerror(err));
    return err;
}

/* ---- local reconciliation ---- */

int controller_local_partitions(const controller_state *st, int32_t self,
                                controller_local_partition **out, int32_t *n)
{
    *out = NULL;
    *n = 0;
    int32_t count = 0, cap = 0;
    controller_local_partition *v = NULL;
    for (int32_t i = 0; i < st->topics.n; i++) {
        const topic *t = topic_table_at(&st->topics, i);
        for (int32_t p = 0; p < t->partitions; p++) {
            topic_assignment a;
            topic_partition_assignment(t, p, self, 1, &a);
            int r = 0;
            while (r < a.n && a.nodes[r] != self) r++;
            if (r == a.n) continue;
            if (count == cap) {
                int32_t ncap = cap ? cap * 2 : 64;
                controller_local_partition *nv = realloc(v, (size_t)ncap * sizeof(*nv));
                if (!nv) {
                    free(v);
                    return -ENOMEM;
                }
                v = nv;
                cap = ncap;
            }
            v[count].topic = t;
            v[count].partition = p;
            v[count].shard = a.shards[r];
            v[count].replicas = a;
            count++;
        }
    }
    *out = v;
    *n = count;
    return 0;
}
