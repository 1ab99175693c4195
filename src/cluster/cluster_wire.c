/*
 * cluster_wire.c — the pure pieces of the node service (cluster.h): the partition Raft group id,
 * seed list parsing, and the payloads of RPC_T_JOIN and RPC_T_CONTROLLER (a topic operation
 * forwarded to the controller leader, and its answer). Big-endian; strings are u16 length +
 * bytes (no NUL inside); every payload starts with a format byte. Decoders are bounds-checked
 * and safe on any bytes.
 */
#include "cluster/cluster.h"

#include "base/cursor.h"
#include "cluster/data_plane.h"

#include <stdio.h>
#include <stdlib.h>

#define WIRE_FORMAT   1
#define OP_ITEMS_MAX  TOPIC_TABLE_MAX
#define OP_CONFIG_MAX CONTROLLER_CMD_CONFIGS_MAX

bool cluster_mode(const al_config *cfg)
{
    for (const char *p = cfg->seed_servers; *p; p++)
        if (*p != ' ' && *p != ',') return true;
    return false;
}

static uint64_t group_bits(const uint8_t id[16])
{
    uint64_t v = 0;
    for (int i = 0; i < 6; i++) v = (v << 8) | id[i];
    return v & ((1ull << 44) - 1);
}

uint64_t cluster_group_id(const uint8_t topic_id[16], int32_t partition)
{
    AL_ASSERT(partition >= 0 && partition < (1 << 20) - 1);
    return group_bits(topic_id) << 20 | (uint64_t)(partition + 1);
}

bool cluster_topic_id_collides(const topic_table *tt, const uint8_t id[16])
{
    uint64_t g = group_bits(id);
    for (int32_t i = 0; i < tt->n; i++) {
        const topic *t = topic_table_at(tt, i);
        if (memcmp(t->id, id, 16) && group_bits(t->id) == g) return true;
    }
    return false;
}

int cluster_parse_seeds(const char *list, char (*hosts)[CONFIG_HOST_MAX], uint16_t *ports,
                        int max)
{
    int n = 0;
    const char *p = list;
    for (int guard = 0; *p && guard < 4096; guard++) {
        while (*p == ' ' || *p == ',') p++;
        if (!*p) break;
        const char *end = p;
        while (*end && *end != ',' && *end != ' ') end++;
        const char *colon = NULL;
        for (const char *q = p; q < end; q++)
            if (*q == ':') colon = q;
        if (!colon || colon == p || colon + 1 == end || n >= max) return AL_EINVAL;
        size_t hl = (size_t)(colon - p);
        if (hl >= CONFIG_HOST_MAX) return AL_EINVAL;
        long port = 0;
        for (const char *q = colon + 1; q < end; q++) {
            if (*q < '0' || *q > '9') return AL_EINVAL;
            port = port * 10 + (*q - '0');
            if (port > 65535) return AL_EINVAL;
        }
        if (port == 0) return AL_EINVAL;
        memcpy(hosts[n], p, hl);
        hosts[n][hl] = 0;
        ports[n] = (uint16_t)port;
        n++;
        p = end;
    }
    return n;
}

/* ---- string helpers ---- */

static void wr_str(al_wr *w, const char *s, size_t max)
{
    size_t n = strnlen(s, max);
    if (n >= max || n > UINT16_MAX) {
        if (!w->err) w->err = AL_EINVAL;
        return;
    }
    al_wr_u16(w, (uint16_t)n);
    al_wr_bytes(w, s, n);
}

/* Reads a string of at most max - 1 bytes, no NUL inside, into out (max bytes). */
static void rd_str(al_rd *r, char *out, size_t max)
{
    out[0] = 0;
    uint16_t n = al_rd_u16(r);
    const uint8_t *p = al_rd_bytes(r, n);
    if (!p) return;
    if (n >= max || memchr(p, 0, n)) {
        al_rd_fail(r, AL_EMALFORMED);
        return;
    }
    memcpy(out, p, n);
    out[n] = 0;
}

static int rd_format(al_rd *r)
{
    uint8_t f = al_rd_u8(r);
    if (r->err) return r->err;
    if (f != WIRE_FORMAT) return f > WIRE_FORMAT ? AL_EUNSUPPORTED : AL_EMALFORMED;
    return 0;
}

static int64_t wr_result(const al_wr *w, const uint8_t *buf)
{
    if (w->err) return w->err == AL_EINVAL ? AL_EINVAL : AL_ETOOLARGE;
    return (int64_t)(w->p - buf);
}

/* ---- JOIN ---- */

int64_t cluster_join_req_encode(const cluster_join_req *q, uint8_t *buf, size_t cap)
{
    al_wr w = al_wr_make(buf, cap);
    al_wr_u8(&w, WIRE_FORMAT);
    al_wr_i32(&w, q->node_id);
    wr_str(&w, q->kafka_host, sizeof(q->kafka_host));
    al_wr_u16(&w, q->kafka_port);
    wr_str(&w, q->rpc_host, sizeof(q->rpc_host));
    al_wr_u16(&w, q->rpc_port);
    wr_str(&w, q->rack, sizeof(q->rack));
    al_wr_u32(&w, q->cores);
    return wr_result(&w, buf);
}

int cluster_join_req_decode(const uint8_t *buf, size_t len, cluster_join_req *out)
{
    memset(out, 0, sizeof(*out));
    al_rd r = al_rd_make(buf, len);
    int err = rd_format(&r);
    if (err) return err;
    out->node_id = al_rd_i32(&r);
    rd_str(&r, out->kafka_host, sizeof(out->kafka_host));
    out->kafka_port = al_rd_u16(&r);
    rd_str(&r, out->rpc_host, sizeof(out->rpc_host));
    out->rpc_port = al_rd_u16(&r);
    rd_str(&r, out->rack, sizeof(out->rack));
    out->cores = al_rd_u32(&r);
    if (r.err) return r.err;
    if (al_rd_left(&r) || out->node_id < 0) return AL_EMALFORMED;
    return 0;
}

size_t cluster_join_resp_size(const cluster_join_resp *r)
{
    return 64 + sizeof(r->message) + sizeof(r->leader_host) +
           (size_t)AL_MAX(r->n_brokers, 0) * (8 + CONTROLLER_HOST_MAX);
}

int64_t cluster_join_resp_encode(const cluster_join_resp *q, uint8_t *buf, size_t cap)
{
    if (q->n_brokers < 0 || q->n_brokers > CLUSTER_JOIN_BROKERS_MAX) return AL_EINVAL;
    al_wr w = al_wr_make(buf, cap);
    al_wr_u8(&w, WIRE_FORMAT);
    al_wr_i16(&w, q->error);
    wr_str(&w, q->message, sizeof(q->message));
    al_wr_i32(&w, q->leader_id);
    wr_str(&w, q->leader_host, sizeof(q->leader_host));
    al_wr_u16(&w, q->leader_port);
    al_wr_i64(&w, q->offset);
    al_wr_u8(&w, q->has_cluster_id ? 1 : 0);
    al_wr_bytes(&w, q->cluster_id, 16);
    al_wr_u32(&w, (uint32_t)q->n_brokers);
    for (int32_t i = 0; i < q->n_brokers; i++) {
        al_wr_i32(&w, q->brokers[i].node_id);
        wr_str(&w, q->brokers[i].rpc_host, sizeof(q->brokers[i].rpc_host));
        al_wr_u16(&w, q->brokers[i].rpc_port);
    }
    return wr_result(&w, buf);
}

int cluster_join_resp_decode(const uint8_t *buf, size_t len, cluster_join_resp *out)
{
    memset(out, 0, sizeof(*out));
    al_rd r = al_rd_make(buf, len);
    int err = rd_format(&r);
    if (err) return err;
    out->error = al_rd_i16(&r);
    rd_str(&r, out->message, sizeof(out->message));
    out->leader_id = al_rd_i32(&r);
    rd_str(&r, out->leader_host, sizeof(out->leader_host));
    out->leader_port = al_rd_u16(&r);
    out->offset = al_rd_i64(&r);
    uint8_t has = al_rd_u8(&r);
    const uint8_t *cid = al_rd_bytes(&r, 16);
    uint32_t n = al_rd_u32(&r);
    if (r.err) return r.err;
    if (has > 1 || n > CLUSTER_JOIN_BROKERS_MAX || (size_t)n * 8 > al_rd_left(&r))
        return AL_EMALFORMED;
    out->has_cluster_id = has;
    memcpy(out->cluster_id, cid, 16);
    if (n) {
        out->brokers = calloc(n, sizeof(*out->brokers));
        if (!out->brokers) return -ENOMEM;
    }
    out->n_brokers = (int32_t)n;
    for (uint32_t i = 0; i < n; i++) {
        out->brokers[i].node_id = al_rd_i32(&r);
        rd_str(&r, out->brokers[i].rpc_host, sizeof(out->brokers[i].rpc_host));
        out->brokers[i].rpc_port = al_rd_u16(&r);
    }
    err = r.err ? r.err : al_rd_left(&r) ? AL_EMALFORMED : 0;
    if (err) {
        free(out->brokers);
        out->brokers = NULL;
        out->n_brokers = 0;
    }
    return err;
}

/* ---- forwarded topic operations ---- */

static bool op_kind_ok(int kind)
{
    return kind >= DATA_OP_CREATE && kind <= DATA_OP_CLUSTER_CONFIG;
}

int cluster_op_encode(const struct data_topic_op *op, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (!op_kind_ok((int)op->kind) || op->n < 0 || op->n > OP_ITEMS_MAX) return AL_EINVAL;
    size_t cap = 16;
    for (int32_t i = 0; i < op->n; i++) {
        const struct data_topic_item *it = &op->items[i];
        if (it->n_configs < 0 || it->n_configs > OP_CONFIG_MAX) return AL_EINVAL;
        cap += 16 + TOPIC_NAME_MAX + (size_t)it->n_configs *
                                         (5 + TOPIC_CONFIG_KEY_MAX + TOPIC_CONFIG_VALUE_MAX);
    }
    uint8_t *buf = malloc(cap);
    if (!buf) return -ENOMEM;
    al_wr w = al_wr_make(buf, cap);
    al_wr_u8(&w, WIRE_FORMAT);
    al_wr_u8(&w, (uint8_t)op->kind);
    al_wr_u32(&w, (uint32_t)op->n);
    for (int32_t i = 0; i < op->n; i++) {
        const struct data_topic_item *it = &op->items[i];
        wr_str(&w, it->name, sizeof(it->name));
        al_wr_i32(&w, it->partitions);
        al_wr_i16(&w, it->replication_factor);
        al_wr_u32(&w, (uint32_t)it->n_configs);
        for (int32_t c = 0; c < it->n_configs; c++) {
            wr_str(&w, it->configs[c].key, TOPIC_CONFIG_KEY_MAX);
            wr_str(&w, it->configs[c].value, TOPIC_CONFIG_VALUE_MAX);
            al_wr_u8(&w, it->del && it->del[c] ? 1 : 0);
        }
    }
    int64_t n = wr_result(&w, buf);
    if (n < 0) {
        free(buf);
        return (int)n;
    }
    *out = buf;
    *len = (size_t)n;
    return 0;
}

/* One pass over the items: with op NULL only counts configs (*n_items, *n_cfg) and checks
 * the structure; otherwise fills op's items from the arrays already laid out. */
static int op_items_pass(al_rd *r, uint32_t n, struct data_topic_op *op, topic_config_kv *kv,
                         bool *del, size_t *n_cfg)
{
    size_t total = 0;
    for (uint32_t i = 0; i < n && !r->err; i++) {
        struct data_topic_item tmp, *it = op ? &op->items[i] : &tmp;
        rd_str(r, it->name, sizeof(it->name));
        it->partitions = al_rd_i32(r);
        it->replication_factor = al_rd_i16(r);
        uint32_t nc = al_rd_u32(r);
        if (r->err) break;
        if (nc > OP_CONFIG_MAX || (size_t)nc * 5 > al_rd_left(r)) return AL_EMALFORMED;
        if (op) {
            it->configs = nc ? kv + total : NULL;
            it->del = nc ? del + total : NULL;
            it->n_configs = (int32_t)nc;
        }
        for (uint32_t c = 0; c < nc && !r->err; c++) {
            topic_config_kv scratch, *e = op ? &kv[total + c] : &scratch;
            rd_str(r, e->key, sizeof(e->key));
            rd_str(r, e->value, sizeof(e->value));
            uint8_t d = al_rd_u8(r);
            if (d > 1) return AL_EMALFORMED;
            if (op) del[total + c] = d;
        }
        total += nc;
    }
    if (r->err) return r->err;
    if (al_rd_left(r)) return AL_EMALFORMED;
    *n_cfg = total;
    return 0;
}

int cluster_op_decode(const uint8_t *buf, size_t len, struct data_topic_op **out)
{
    *out = NULL;
    al_rd r = al_rd_make(buf, len);
    int err = rd_format(&r);
    if (err) return err;
    uint8_t kind = al_rd_u8(&r);
    uint32_t n = al_rd_u32(&r);
    if (r.err) return r.err;
    if (!op_kind_ok(kind) || n > OP_ITEMS_MAX || (size_t)n * 12 > al_rd_left(&r))
        return AL_EMALFORMED;
    al_rd first = r;
    size_t n_cfg = 0;
    err = op_items_pass(&first, n, NULL, NULL, NULL, &n_cfg);
    if (err) return err;
    size_t sz = sizeof(struct data_topic_op) + n * sizeof(struct data_topic_item) +
                n_cfg * (sizeof(topic_config_kv) + sizeof(bool));
    uint8_t *block = calloc(1, sz);
    if (!block) return -ENOMEM;
    struct data_topic_op *op = (struct data_topic_op *)block;
    op->items = (struct data_topic_item *)(block + sizeof(*op));
    topic_config_kv *kv = (topic_config_kv *)(op->items + n);
    bool *del = (bool *)(kv + n_cfg);
    op->kind = (enum data_topic_op_kind)kind;
    op->n = (int32_t)n;
    err = op_items_pass(&r, n, op, kv, del, &n_cfg);
    if (err) {
        free(block);
        return err;
    }
    *out = op;
    return 0;
}

int cluster_op_result_encode(const struct data_topic_op *op, int64_t offset, uint8_t **out,
                             size_t *len)
{
    size_t cap = 16 + (size_t)AL_MAX(op->n, 0) * 26;
    uint8_t *buf = malloc(cap);
    if (!buf) return -ENOMEM;
    al_wr w = al_wr_make(buf, cap);
    al_wr_u8(&w, WIRE_FORMAT);
    al_wr_i64(&w, offset);
    al_wr_u32(&w, (uint32_t)op->n);
    for (int32_t i = 0; i < op->n; i++) {
        al_wr_i32(&w, op->items[i].err);
        al_wr_bytes(&w, op->items[i].id, 16);
        al_wr_i32(&w, op->items[i].partitions);
        al_wr_i16(&w, op->items[i].replication_factor);
    }
    AL_ASSERT(!w.err);
    *out = buf;
    *len = (size_t)(w.p - buf);
    return 0;
}

int cluster_op_result_decode(const uint8_t *buf, size_t len, struct data_topic_op *op,
                             int64_t *offset)
{
    al_rd r = al_rd_make(buf, len);
    int err = rd_format(&r);
    if (err) return err;
    int64_t off = al_rd_i64(&r);
    uint32_t n = al_rd_u32(&r);
    if (r.err) return r.err;
    if (n != (uint32_t)op->n || (size_t)n * 26 != al_rd_left(&r)) return AL_EMALFORMED;
    for (uint32_t i = 0; i < n; i++) {
        int32_t e = al_rd_i32(&r);
        if (e > 0) return AL_EMALFORMED;
        op->items[i].err = e;
        memcpy(op->items[i].id, al_rd_bytes(&r, 16), 16);
        op->items[i].partitions = al_rd_i32(&r);
        op->items[i].replication_factor = al_rd_i16(&r);
    }
    *offset = off;
    return r.err;
}
