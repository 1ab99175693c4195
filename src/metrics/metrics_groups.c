/*
 * metrics_groups.c — consumer-group lag from a group coordinator's committed offsets and the
 * partitions' high-watermark gauges (which the owning shards publish; read here across shards
 * through the registry's relaxed atomics, see metrics.h). Called by the shard that runs a
 * coordinator; sets ailurus_kafka_consumer_group_{lag_sum,lag_max,partition_lag} on that shard
 * and removes the series of groups and partitions that went away.
 */
#include "metrics/metrics.h"
#include "coord/group.h"

#include <stdio.h>
#include <stdlib.h>

#define LAG_PERIOD_MS 1000
#define LAG_MAX_GROUPS 4096

/* One high watermark: key "topic\0partition\0". */
struct hw_ent {
    char *key;
    double hw;
};

struct hw_snap {
    struct hw_ent *v;
    size_t n, cap;
    bool oom;
};

static int hw_cmp(const void *a, const void *b)
{
    const char *x = ((const struct hw_ent *)a)->key, *y = ((const struct hw_ent *)b)->key;
    int c = strcmp(x, y);
    return c ? c : strcmp(x + strlen(x) + 1, y + strlen(y) + 1);
}

static void hw_visit(void *arg, const char *const *labels, double value)
{
    struct hw_snap *s = arg;
    if (s->oom) return;
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 256;
        struct hw_ent *nv = realloc(s->v, nc * sizeof(*nv));
        if (!nv) {
            s->oom = true;
            return;
        }
        s->v = nv;
        s->cap = nc;
    }
    size_t tl = strlen(labels[0]), pl = strlen(labels[1]);
    char *k = malloc(tl + pl + 2);
    if (!k) {
        s->oom = true;
        return;
    }
    memcpy(k, labels[0], tl + 1);
    memcpy(k + tl + 1, labels[1], pl + 1);
    s->v[s->n++] = (struct hw_ent){k, value};
}

static void hw_free(struct hw_snap *s)
{
    for (size_t i = 0; i < s->n; i++) free(s->v[i].key);
    free(s->v);
}

/* One group's committed partitions with their lag. */
struct lag_acc {
    const struct hw_snap *hw;
    char **topics;
    int32_t *parts;
    int64_t *lags;
    int n, cap;
    bool oom;
};

static void offset_visit(void *arg, const char *topic, int32_t partition, int64_t offset,
                         int32_t leader_epoch, const char *metadata)
{
    struct lag_acc *a = arg;
    if (a->oom || offset < 0) return;
    char part[16], key[512];
    snprintf(part, sizeof(part), "%d", partition);
    size_t tl = strlen(topic);
    if (tl + strlen(part) + 2 > sizeof(key)) return;
    memcpy(key, topic, tl + 1);
    memcpy(key + tl + 1, part, strlen(part) + 1);
    struct hw_ent probe = {key, 0};
    const struct hw_ent *e = al_search(&probe, a->hw->v, a->hw->n, sizeof(probe), hw_cmp);
    if (!e) return; /* partition not led here (or not yet collected): lag unknown */
    if (a->n == a->cap) {
        int nc = a->cap ? a->cap * 2 : 16;
        char **nt = realloc(a->topics, (size_t)nc * sizeof(*nt));
        if (nt) a->topics = nt;
        int32_t *np = nt ? realloc(a->parts, (size_t)nc * sizeof(*np)) : NULL;
        if (np) a->parts = np;
        int64_t *nl = np ? realloc(a->lags, (size_t)nc * sizeof(*nl)) : NULL;
        if (!nl) {
            a->oom = true;
            return;
        }
        a->lags = nl;
        a->cap = nc;
    }
    a->topics[a->n] = strdup(topic);
    if (!a->topics[a->n]) {
        a->oom = true;
        return;
    }
    a->parts[a->n] = partition;
    a->lags[a->n] = (int64_t)e->hw - offset;
    a->n++;
}

struct group_names {
    char **v;
    int n, cap;
};

static void group_visit(void *arg, const char *group_id, const char *protocol_type,
                        const char *state)
{
    struct group_names *g = arg;
    if (g->n >= LAG_MAX_GROUPS) return;
    if (g->n == g->cap) {
        int nc = g->cap ? g->cap * 2 : 16;
        char **nv = realloc(g->v, (size_t)nc * sizeof(*nv));
        if (!nv) return;
        g->v = nv;
        g->cap = nc;
    }
    char *s = strdup(group_id);
    if (s) g->v[g->n++] = s;
}

/* What this shard reported last time, to remove series of groups/partitions that are gone:
 * keys "group\0topic\0partition\0" (partition lag) and "group\0" (sum/max). */
struct reported {
    char **keys;
    int n, cap;
};
static _Thread_local struct reported tls_last;
static _Thread_local int64_t tls_last_ms = INT64_MIN;

static int str3_cmp(const void *a, const void *b)
{
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    for (int i = 0; i < 3; i++) {
        int c = strcmp(x, y);
        if (c || !*x) return c;
        x += strlen(x) + 1;
        y += strlen(y) + 1;
    }
    return 0;
}

static void rep_add(struct reported *r, const char *g, const char *t, const char *p)
{
    if (r->n == r->cap) {
        int nc = r->cap ? r->cap * 2 : 64;
        char **nk = realloc(r->keys, (size_t)nc * sizeof(*nk));
        if (!nk) return;
        r->keys = nk;
        r->cap = nc;
    }
    size_t gl = strlen(g) + 1, tl = t ? strlen(t) + 1 : 1, pl = p ? strlen(p) + 1 : 1;
    char *k = calloc(1, gl + tl + pl + 1);
    if (!k) return;
    memcpy(k, g, gl);
    if (t) memcpy(k + gl, t, tl);
    if (p) memcpy(k + gl + tl, p, pl);
    r->keys[r->n++] = k;
}

static void rep_free(struct reported *r)
{
    for (int i = 0; i < r->n; i++) free(r->keys[i]);
    free(r->keys);
    *r = (struct reported){0};
}

void metrics_group_lag_update(struct group_coordinator *c, int64_t now_ms)
{
    metrics *m = metrics_local;
    if (!m || (tls_last_ms != INT64_MIN && now_ms - tls_last_ms < LAG_PERIOD_MS)) return;
    tls_last_ms = now_ms;
    struct hw_snap hw = {0};
    metrics_gauge_visit(M_PARTITION_HIGH_WATERMARK, hw_visit, &hw);
    if (hw.oom) {
        hw_free(&hw);
        return;
    }
    al_sort(hw.v, hw.n, sizeof(*hw.v), hw_cmp);
    struct group_names groups = {0};
    group_list(c, NULL, 0, group_visit, &groups);
    struct reported now = {0};
    for (int g = 0; g < groups.n; g++) {
        struct lag_acc acc = {.hw = &hw};
        group_fetch_all_offsets(c, groups.v[g], offset_visit, &acc);
        if (!acc.oom && acc.n > 0) {
            metrics_group_lag_report(m, groups.v[g], (const char *const *)acc.topics, acc.parts,
                                     acc.lags, acc.n);
            rep_add(&now, groups.v[g], NULL, NULL);
            for (int i = 0; i < acc.n; i++) {
                char p[16];
                snprintf(p, sizeof(p), "%d", acc.parts[i]);
                rep_add(&now, groups.v[g], acc.topics[i], p);
            }
        }
        for (int i = 0; i < acc.n; i++) free(acc.topics[i]);
        free(acc.topics);
        free(acc.parts);
        free(acc.lags);
    }
    /* Remove what was reported last time and is not now. */
    al_sort(now.keys, (size_t)now.n, sizeof(char *), str3_cmp);
    for (int i = 0; i < tls_last.n; i++) {
        if (al_search(&tls_last.keys[i], now.keys, (size_t)now.n, sizeof(char *), str3_cmp))
            continue;
        const char *g = tls_last.keys[i], *t = g + strlen(g) + 1, *p = t + strlen(t) + 1;
        if (!*t) {
            metrics_series_remove(m, M_GROUP_LAG_SUM, (const char *const[]){g});
            metrics_series_remove(m, M_GROUP_LAG_MAX, (const char *const[]){g});
        } else {
            metrics_series_remove(m, M_GROUP_PARTITION_LAG, (const char *const[]){g, t, p});
        }
    }
    rep_free(&tls_last);
    tls_last = now;
    for (int g = 0; g < groups.n; g++) free(groups.v[g]);
    free(groups.v);
    hw_free(&hw);
}

void metrics_group_lag_forget(void)
{
    rep_free(&tls_last);
    tls_last_ms = INT64_MIN;
}
