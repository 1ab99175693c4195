/*
 * controller_cmd.c — the binary encoding of controller commands (see controller.h for the
 * common header) and the record batch that carries them to Raft group 0.
 *
 * Bodies by type (strings: uvarint length + bytes, no NUL inside; configs: uvarint n, then
 * n x (key, value); removes: uvarint n, then n keys; assigns: uvarint n, then n x (u8 replicas,
 * replicas x (i32 node, u16 shard))):
 *   REGISTER_NODE, UPDATE_NODE  i32 node | kafka host | u16 port | rpc host | u16 port | rack |
 *                               u32 cores
 *   CREATE_TOPIC                name | id[16] | i32 partitions | i16 rf | u8 internal | configs |
 *                               assigns
 *   DELETE_TOPIC                name | id[16]
 *   CREATE_PARTITIONS           name | i32 new total | assigns (of the new partitions)
 *   REPLACE_TOPIC_CONFIGS       name | configs
 *   ALTER_TOPIC_CONFIGS         name | configs | removes
 *   SET_CLUSTER_CONFIG          configs | removes
 *   MOVE_PARTITION              name | i32 partition | assigns (exactly one)
 *   SET_MAINTENANCE             i32 node | u8 on
 *   DECOMMISSION/RECOMMISSION/REMOVE_NODE   i32 node
 *   SET_CLUSTER_ID              id[16]
 *   ALLOC_IDS                   i64 count
 * The decoder takes untrusted bytes: every count is bounded and checked against the bytes left
 * before anything is allocated, and trailing bytes are an error.
 */
#include "cluster/controller.h"

#include "base/cursor.h"
#include "cluster/controller_wire.h"
#include "storage/batch.h"

#include <stdlib.h>

/* Writes (or sizes) the whole command. Errors land in w->err. */
static void cmd_write(cw *w, const controller_cmd *c)
{
    if (c->type < 1 || c->type > CONTROLLER_CMD_TYPE_MAX) {
        w->err = AL_EINVAL;
        return;
    }
    cw_u8(w, CONTROLLER_CMD_FORMAT);
    cw_u8(w, c->type);
    cw_u32(w, (uint32_t)c->proposer);
    cw_u64(w, c->request_id);
    cw_u64(w, (uint64_t)c->ts_ms);
    const controller_broker *b = &c->broker;
    switch (c->type) {
    case CONTROLLER_CMD_REGISTER_NODE:
    case CONTROLLER_CMD_UPDATE_NODE:
        cw_u32(w, (uint32_t)b->node_id);
        cw_str(w, b->kafka_host, CONTROLLER_HOST_MAX);
        cw_u16(w, b->kafka_port);
        cw_str(w, b->rpc_host, CONTROLLER_HOST_MAX);
        cw_u16(w, b->rpc_port);
        cw_str(w, b->rack, CONTROLLER_RACK_MAX);
        cw_u32(w, b->cores);
        break;
    case CONTROLLER_CMD_CREATE_TOPIC:
        cw_str(w, c->name, sizeof(c->name));
        cw_put(w, c->topic_id, 16);
        cw_u32(w, (uint32_t)c->partitions);
        cw_u16(w, (uint16_t)c->replication_factor);
        cw_u8(w, c->internal ? 1 : 0);
        cw_configs(w, c->configs, c->n_configs);
        cw_assigns(w, c->assign, c->n_assign);
        break;
    case CONTROLLER_CMD_DELETE_TOPIC:
        cw_str(w, c->name, sizeof(c->name));
        cw_put(w, c->topic_id, 16);
        break;
    case CONTROLLER_CMD_CREATE_PARTITIONS:
        cw_str(w, c->name, sizeof(c->name));
        cw_u32(w, (uint32_t)c->partitions);
        cw_assigns(w, c->assign, c->n_assign);
        break;
    case CONTROLLER_CMD_REPLACE_TOPIC_CONFIGS:
        cw_str(w, c->name, sizeof(c->name));
        cw_configs(w, c->configs, c->n_configs);
        break;
    case CONTROLLER_CMD_ALTER_TOPIC_CONFIGS:
        cw_str(w, c->name, sizeof(c->name));
        cw_configs(w, c->configs, c->n_configs);
        cw_removes(w, c->removes, c->n_removes);
        break;
    case CONTROLLER_CMD_SET_CLUSTER_CONFIG:
        cw_configs(w, c->configs, c->n_configs);
        cw_removes(w, c->removes, c->n_removes);
        break;
    case CONTROLLER_CMD_MOVE_PARTITION:
        if (c->n_assign != 1) w->err = AL_EINVAL;
        cw_str(w, c->name, sizeof(c->name));
        cw_u32(w, (uint32_t)c->partition);
        cw_assigns(w, c->assign, c->n_assign);
        break;
    case CONTROLLER_CMD_SET_MAINTENANCE:
        cw_u32(w, (uint32_t)c->node_id);
        cw_u8(w, c->flag ? 1 : 0);
        break;
    case CONTROLLER_CMD_DECOMMISSION_NODE:
    case CONTROLLER_CMD_RECOMMISSION_NODE:
    case CONTROLLER_CMD_REMOVE_NODE:
        cw_u32(w, (uint32_t)c->node_id);
        break;
    case CONTROLLER_CMD_SET_CLUSTER_ID:
        cw_put(w, c->cluster_id, 16);
        break;
    case CONTROLLER_CMD_ALLOC_IDS:
        if (c->count < 0) w->err = AL_EINVAL;
        cw_u64(w, (uint64_t)c->count);
        break;
    default:
        w->err = AL_EINVAL;
    }
}

size_t controller_cmd_size(const controller_cmd *c)
{
    cw w = {0};
    cmd_write(&w, c);
    return w.n;
}

int64_t controller_cmd_encode(const controller_cmd *c, uint8_t *buf, size_t cap)
{
    AL_ASSERT(buf != NULL);
    cw sz = {0};
    cmd_write(&sz, c); /* an invalid command is AL_EINVAL whatever the buffer */
    if (sz.err) return sz.err;
    cw w = {buf, buf + cap, 0, 0};
    cmd_write(&w, c);
    if (w.err) return w.err;
    return (int64_t)w.n;
}

/* ---- decoding ---- */

/* Reads a config list into c->configs (malloc'd). Returns 0 or -ENOMEM; format errors land
 * in rd->err. rd_removes and rd_assigns work the same way. */
static int rd_configs(al_rd *rd, controller_cmd *c)
{
    int32_t n = rd_count(rd, CONTROLLER_CMD_CONFIGS_MAX, 2);
    if (rd->err || n == 0) return 0;
    c->configs = calloc((size_t)n, sizeof(*c->configs));
    if (!c->configs) return -ENOMEM;
    for (int32_t i = 0; i < n && !rd->err; i++) {
        rd_str(rd, c->configs[i].key, TOPIC_CONFIG_KEY_MAX);
        rd_str(rd, c->configs[i].value, TOPIC_CONFIG_VALUE_MAX);
    }
    c->n_configs = n;
    return 0;
}

static int rd_removes(al_rd *rd, controller_cmd *c)
{
    int32_t n = rd_count(rd, CONTROLLER_CMD_CONFIGS_MAX, 1);
    if (rd->err || n == 0) return 0;
    c->removes = calloc((size_t)n, sizeof(*c->removes));
    if (!c->removes) return -ENOMEM;
    for (int32_t i = 0; i < n && !rd->err; i++) rd_str(rd, c->removes[i], TOPIC_CONFIG_KEY_MAX);
    c->n_removes = n;
    return 0;
}

static int rd_assigns(al_rd *rd, controller_cmd *c)
{
    int32_t n = rd_count(rd, TOPIC_PARTITIONS_MAX, 7);
    if (rd->err || n == 0) return 0;
    c->assign = calloc((size_t)n, sizeof(*c->assign));
    if (!c->assign) return -ENOMEM;
    c->n_assign = n;
    for (int32_t i = 0; i < n && !rd->err; i++) rd_assign_one(rd, &c->assign[i]);
    return 0;
}

/* Reads a REGISTER/UPDATE body. Format errors land in rd->err; always returns 0. */
static int rd_broker(al_rd *rd, controller_broker *b)
{
    b->node_id = al_rd_i32(rd);
    rd_str(rd, b->kafka_host, sizeof(b->kafka_host));
    b->kafka_port = al_rd_u16(rd);
    rd_str(rd, b->rpc_host, sizeof(b->rpc_host));
    b->rpc_port = al_rd_u16(rd);
    rd_str(rd, b->rack, sizeof(b->rack));
    b->cores = al_rd_u32(rd);
    return 0;
}

/* Decodes the body of type c->type. Returns 0 or -ENOMEM (format errors land in rd->err). */
static int rd_body(al_rd *rd, controller_cmd *c)
{
    int err = 0;
    switch (c->type) {
    case CONTROLLER_CMD_REGISTER_NODE:
    case CONTROLLER_CMD_UPDATE_NODE:
        return rd_broker(rd, &c->broker);
    case CONTROLLER_CMD_CREATE_TOPIC: {
        rd_str(rd, c->name, sizeof(c->name));
        const uint8_t *id = al_rd_bytes(rd, 16);
        if (id) memcpy(c->topic_id, id, 16);
        c->partitions = al_rd_i32(rd);
        c->replication_factor = al_rd_i16(rd);
        uint8_t in = al_rd_u8(rd);
        if (in > 1) al_rd_fail(rd, AL_EMALFORMED);
        c->internal = in == 1;
        err = rd_configs(rd, c);
        if (!err) err = rd_assigns(rd, c);
        return err;
    }
    case CONTROLLER_CMD_DELETE_TOPIC: {
        rd_str(rd, c->name, sizeof(c->name));
        const uint8_t *id = al_rd_bytes(rd, 16);
        if (id) memcpy(c->topic_id, id, 16);
        return 0;
    }
    case CONTROLLER_CMD_CREATE_PARTITIONS:
        rd_str(rd, c->name, sizeof(c->name));
        c->partitions = al_rd_i32(rd);
        return rd_assigns(rd, c);
    case CONTROLLER_CMD_REPLACE_TOPIC_CONFIGS:
        rd_str(rd, c->name, sizeof(c->name));
        return rd_configs(rd, c);
    case CONTROLLER_CMD_ALTER_TOPIC_CONFIGS:
        rd_str(rd, c->name, sizeof(c->name));
        err = rd_configs(rd, c);
        if (!err) err = rd_removes(rd, c);
        return err;
    case CONTROLLER_CMD_SET_CLUSTER_CONFIG:
        err = rd_configs(rd, c);
        if (!err) err = rd_removes(rd, c);
        return err;
    case CONTROLLER_CMD_MOVE_PARTITION:
        rd_str(rd, c->name, sizeof(c->name));
        c->partition = al_rd_i32(rd);
        err = rd_assigns(rd, c);
        if (!err && !rd->err && c->n_assign != 1) al_rd_fail(rd, AL_EMALFORMED);
        return err;
    case CONTROLLER_CMD_SET_MAINTENANCE: {
        c->node_id = al_rd_i32(rd);
        uint8_t on = al_rd_u8(rd);
        if (on > 1) al_rd_fail(rd, AL_EMALFORMED);
        c->flag = on == 1;
        return 0;
    }
    case CONTROLLER_CMD_DECOMMISSION_NODE:
    case CONTROLLER_CMD_RECOMMISSION_NODE:
    case CONTROLLER_CMD_REMOVE_NODE:
        c->node_id = al_rd_i32(rd);
        return 0;
    case CONTROLLER_CMD_SET_CLUSTER_ID: {
        const uint8_t *id = al_rd_bytes(rd, 16);
        if (id) memcpy(c->cluster_id, id, 16);
        return 0;
    }
    case CONTROLLER_CMD_ALLOC_IDS:
        c->count = al_rd_i64(rd);
        if (c->count < 0) al_rd_fail(rd, AL_EMALFORMED);
        return 0;
    default:
        al_rd_fail(rd, AL_EMALFORMED);
        return 0;
    }
}

int controller_cmd_decode(const uint8_t *buf, size_t len, controller_cmd *out)
{
    memset(out, 0, sizeof(*out));
    al_rd rd = al_rd_make(buf, len);
    uint8_t format = al_rd_u8(&rd);
    if (rd.err) return rd.err;
    if (format > CONTROLLER_CMD_FORMAT) return AL_EUNSUPPORTED;
    if (format != CONTROLLER_CMD_FORMAT) return AL_EMALFORMED;
    out->type = al_rd_u8(&rd);
    out->proposer = al_rd_i32(&rd);
    out->request_id = al_rd_u64(&rd);
    out->ts_ms = al_rd_i64(&rd);
    if (rd.err) return rd.err;
    if (out->type < 1 || out->type > CONTROLLER_CMD_TYPE_MAX) return AL_EMALFORMED;
    int err = rd_body(&rd, out);
    if (err) return err;
    if (rd.err) return rd.err;
    if (al_rd_left(&rd)) return AL_EMALFORMED;
    return 0;
}

void controller_cmd_free(controller_cmd *c)
{
    free(c->configs);
    free(c->removes);
    free(c->assign);
    memset(c, 0, sizeof(*c));
}

/* ---- the batch ---- */

int controller_batch_build(const controller_cmd *cmds, int32_t n, int64_t ts_ms, uint8_t **out,
                           size_t *len)
{
    *out = NULL;
    *len = 0;
    if (n < 1 || n > CONTROLLER_CMDS_PER_BATCH) return AL_EINVAL;
    int err = -ENOMEM;
    size_t total = 0;
    for (int32_t i = 0; i < n; i++) total += controller_cmd_size(&cmds[i]);
    uint8_t *values = malloc(total ? total : 1);
    storage_build_record *recs = calloc((size_t)n, sizeof(*recs));
    uint8_t *batch = NULL;
    if (!values || !recs) goto out;
    size_t at = 0;
    for (int32_t i = 0; i < n; i++) {
        int64_t k = controller_cmd_encode(&cmds[i], values + at, total - at);
        if (k < 0) {
            err = k == AL_ETOOLARGE ? AL_EINVAL : (int)k;
            goto out;
        }
        recs[i].offset_delta = i;
        recs[i].key_len = -1;
        recs[i].value = values + at;
        recs[i].value_len = (int32_t)k;
        at += (size_t)k;
    }
    storage_build_params p = {.base_offset = 0,
                              .leader_epoch = 0,
                              .last_offset_delta = -1,
                              .base_timestamp = ts_ms,
                              .max_timestamp = ts_ms,
                              .producer_id = -1,
                              .producer_epoch = -1,
                              .base_sequence = -1};
    size_t cap = storage_batch_build_size(recs, (int)n);
    batch = malloc(cap);
    if (!batch) goto out;
    int64_t sz = storage_batch_build(batch, cap, &p, recs, (int)n);
    AL_ASSERT(sz > 0 && (size_t)sz <= cap);
    *out = batch;
    *len = (size_t)sz;
    batch = NULL;
    err = 0;
out:
    free(batch);
    free(recs);
    free(values);
    return err;
}
