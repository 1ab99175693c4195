/*
 * controller_wire.h — private helpers shared by the controller's command codec
 * (controller_cmd.c) and its snapshot codec (controller.c): a writer that can also just count
 * (size first, then write with the same code), and bounded string/count readers on al_rd.
 * Not for use outside src/cluster/controller*.c.
 */
#ifndef AL_CLUSTER_CONTROLLER_WIRE_H
#define AL_CLUSTER_CONTROLLER_WIRE_H

#include "base/base.h"
#include "base/cursor.h"
#include "cluster/controller.h"

/* A writer that only counts when p is NULL (sizing) and writes otherwise. */
typedef struct cw {
    uint8_t *p, *end;
    size_t n;
    int err;
} cw;

static inline void cw_put(cw *w, const void *src, size_t k)
{
    w->n += k;
    if (!w->p) return;
    if (w->err || (size_t)(w->end - w->p) < k) {
        w->err = AL_ETOOLARGE;
        return;
    }
    if (k) memcpy(w->p, src, k);
    w->p += k;
}

static inline void cw_u8(cw *w, uint8_t v) { cw_put(w, &v, 1); }

static inline void cw_u16(cw *w, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    cw_put(w, b, 2);
}

static inline void cw_u32(cw *w, uint32_t v)
{
    uint8_t b[4];
    al_put_be32(b, v);
    cw_put(w, b, 4);
}

static inline void cw_u64(cw *w, uint64_t v)
{
    uint8_t b[8];
    al_put_be64(b, v);
    cw_put(w, b, 8);
}

static inline void cw_uvar(cw *w, uint64_t v)
{
    uint8_t b[10];
    al_wr wr = al_wr_make(b, sizeof(b));
    al_wr_uvarint64(&wr, v);
    cw_put(w, b, (size_t)(wr.p - b));
}

/* A NUL-terminated string of at most max - 1 bytes; longer is AL_EINVAL. */
static inline void cw_str(cw *w, const char *s, size_t max)
{
    size_t n = strnlen(s, max);
    if (n >= max) {
        w->err = AL_EINVAL;
        return;
    }
    cw_uvar(w, n);
    cw_put(w, s, n);
}

/* Reads a string into out (max bytes including the NUL). Malformed: too long or a NUL. */
static inline void rd_str(al_rd *rd, char *out, size_t max)
{
    out[0] = 0;
    uint64_t n = al_rd_uvarint64(rd);
    if (rd->err) return;
    if (n >= max) {
        al_rd_fail(rd, AL_EMALFORMED);
        return;
    }
    const uint8_t *p = al_rd_bytes(rd, (size_t)n);
    if (!p) return;
    if (memchr(p, 0, (size_t)n)) {
        al_rd_fail(rd, AL_EMALFORMED);
        return;
    }
    memcpy(out, p, (size_t)n);
    out[n] = 0;
}

/* Reads a count that must be <= max and whose items (>= min_item bytes each) fit the input. */
static inline int32_t rd_count(al_rd *rd, int32_t max, size_t min_item)
{
    uint64_t n = al_rd_uvarint64(rd);
    if (rd->err) return 0;
    if (n > (uint64_t)max || n * min_item > al_rd_left(rd)) {
        al_rd_fail(rd, AL_EMALFORMED);
        return 0;
    }
    return (int32_t)n;
}

static inline void cw_configs(cw *w, const topic_config_kv *kv, int32_t n)
{
    if (n < 0 || n > CONTROLLER_CMD_CONFIGS_MAX || (n > 0 && !kv)) {
        w->err = AL_EINVAL;
        return;
    }
    cw_uvar(w, (uint64_t)n);
    for (int32_t i = 0; i < n; i++) {
        cw_str(w, kv[i].key, TOPIC_CONFIG_KEY_MAX);
        cw_str(w, kv[i].value, TOPIC_CONFIG_VALUE_MAX);
    }
}

static inline void cw_removes(cw *w, char (*keys)[TOPIC_CONFIG_KEY_MAX], int32_t n)
{
    if (n < 0 || n > CONTROLLER_CMD_CONFIGS_MAX || (n > 0 && !keys)) {
        w->err = AL_EINVAL;
        return;
    }
    cw_uvar(w, (uint64_t)n);
    for (int32_t i = 0; i < n; i++) cw_str(w, keys[i], TOPIC_CONFIG_KEY_MAX);
}

static inline void cw_assigns(cw *w, const topic_assignment *a, int32_t n)
{
    if (n < 0 || n > TOPIC_PARTITIONS_MAX || (n > 0 && !a)) {
        w->err = AL_EINVAL;
        return;
    }
    cw_uvar(w, (uint64_t)n);
    for (int32_t i = 0; i < n; i++) {
        if (a[i].n < 1 || a[i].n > TOPIC_REPLICAS_MAX) {
            w->err = AL_EINVAL;
            return;
        }
        cw_u8(w, (uint8_t)a[i].n);
        for (int r = 0; r < a[i].n; r++) {
            cw_u32(w, (uint32_t)a[i].nodes[r]);
            cw_u16(w, a[i].shards[r]);
        }
    }
}

/* Reads one assignment (u8 replicas, replicas x (i32 node, u16 shard)); the replica count must
 * be 1..TOPIC_REPLICAS_MAX (anything else is AL_EMALFORMED in rd->err). */
static inline void rd_assign_one(al_rd *rd, topic_assignment *a)
{
    memset(a, 0, sizeof(*a));
    uint8_t k = al_rd_u8(rd);
    if (rd->err) return;
    if (k < 1 || k > TOPIC_REPLICAS_MAX) {
        al_rd_fail(rd, AL_EMALFORMED);
        return;
    }
    a->n = k;
    for (int r = 0; r < k; r++) {
        a->nodes[r] = al_rd_i32(rd);
        a->shards[r] = al_rd_u16(rd);
    }
}

#endif
