/*
 * data_plane.c — start-up of the topic table and partition managers on the shards, reliable
 * cross-shard sends, and topic changes applied on shard 0 and copied to every shard (see
 * data_plane.h).
 */
#include "cluster/data_plane.h"

#include "base/log.h"
#include "cluster/cluster.h"
#include "config/config.h"
#include "metrics/metrics.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define DATA_RETRY_NS         (1000000ull)    /* retry queued sends after 1 ms */
#define DATA_HOUSEKEEP_NS     (5000000000ull) /* storage housekeeping every 5 s */
#define DATA_HOUSEKEEP_BUDGET (8u << 20)      /* compaction input per partition per round */
#define DATA_PENDING_MAX      1000000         /* bound on queued sends per shard */
#define DATA_CACHE_MIN        (16u << 20)
#define DATA_CACHE_MAX        (512u << 20)

static _Thread_local data_shard *tls_shard;
static _Thread_local bool tls_failed; /* lazy start failed on this shard: do not retry */

/* The process-wide data plane (set by data_plane_prepare, or lazily). */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct data_plane *g_dp;
static struct data_inflight *g_abandoned; /* requests left in flight at shutdown */

data_shard *data_shard_ensure(const struct al_config *cfg)
{
    if (tls_shard) return tls_shard;
    if (tls_failed) return NULL;
    reactor_shard *rs = reactor_current();
    if (!rs) return NULL;
    pthread_mutex_lock(&g_mu);
    struct data_plane *dp = g_dp;
    if (!dp && cfg) {
        struct data_plane *n = NULL;
        pthread_mutex_unlock(&g_mu); /* prepare takes the lock itself to publish */
        if (data_plane_prepare(cfg, &n)) {
            tls_failed = true;
            return NULL;
        }
        pthread_mutex_lock(&g_mu);
        dp = g_dp;
    }
    pthread_mutex_unlock(&g_mu);
    if (!dp) return NULL;
    if (data_shard_start(rs, dp)) {
        tls_failed = true;
        return NULL;
    }
    return tls_shard;
}

data_shard *data_shard_self(void)
{
    return tls_shard ? tls_shard : data_shard_ensure(NULL);
}

/* ---- start-up ---- */

static int data_plane_load(const struct al_config *cfg, struct data_plane **out);

int data_plane_prepare(const struct al_config *cfg, struct data_plane **out)
{
    /* One process-wide plane: two shards preparing lazily at once get the same one. */
    pthread_mutex_lock(&g_mu);
    int err = 0;
    if (!g_dp) err = data_plane_load(cfg, &g_dp);
    *out = g_dp;
    pthread_mutex_unlock(&g_mu);
    return err;
}

static int data_plane_load(const struct al_config *cfg, struct data_plane **out)
{
    *out = NULL;
    struct data_plane *dp = calloc(1, sizeof(*dp));
    if (!dp) return -ENOMEM;
    dp->cfg = cfg;
    snprintf(dp->data_dir, sizeof(dp->data_dir), "%s", cfg->data_directory);
    io *ioh = NULL;
    topic_table tt;
    memset(&tt, 0, sizeof(tt));
    struct io_uring_opts o = {.entries = 16};
    int err = io_uring_create(&ioh, &o);
    if (err) goto out;
    err = io_fs_mkdir(ioh, dp->data_dir, 0755);
    if (err) {
        log_error("cluster", "cannot create the data directory %s: %s", dp->data_dir,
                  al_strerror(err));
        goto out;
    }
    char kdir[1100];
    snprintf(kdir, sizeof(kdir), "%s/kafka", dp->data_dir);
    err = io_fs_mkdir(ioh, kdir, 0755);
    if (err) goto out;
    err = topic_table_init(&tt, ioh, dp->data_dir);
    if (err) goto out;
    /* Cluster mode: the controller's table replaces topics.json (src/cluster/cluster.h). */
    bool cluster = cluster_mode(cfg);
    if (!cluster) err = topic_table_load(&tt);
    if (err) goto out;
    if (!cluster &&
        !topic_table_find(&tt, TOPIC_CONSUMER_OFFSETS, strlen(TOPIC_CONSUMER_OFFSETS))) {
        topic_config_kv kv[2] = {{"cleanup.policy", "compact"}, {"segment.bytes", "104857600"}};
        err = topic_table_create(&tt, TOPIC_CONSUMER_OFFSETS, TOPIC_CONSUMER_OFFSETS_PARTITIONS, 1,
                                 kv, 2, true, NULL);
        if (!err) err = topic_table_save(&tt);
        if (err) goto out;
        log_info("cluster", "created %s with %d partitions", TOPIC_CONSUMER_OFFSETS,
                 TOPIC_CONSUMER_OFFSETS_PARTITIONS);
    }
    err = topic_table_encode(&tt, &dp->table_blob, &dp->table_len);
    if (err) goto out;
    log_info("cluster", "%" PRId32 " topics loaded from %s", tt.n, tt.path);
out:
    topic_table_free(&tt);
    if (ioh) io_destroy(ioh);
    if (err) {
        free(dp->table_blob); /* not published: no lock needed (the caller holds it) */
        free(dp);
        return err;
    }
    *out = dp;
    return 0;
}

void data_plane_free(struct data_plane *dp)
{
    if (!dp) return;
    pthread_mutex_lock(&g_mu);
    if (g_dp == dp) g_dp = NULL;
    pthread_mutex_unlock(&g_mu);
    free(dp->table_blob);
    free(dp);
}

void data_inflight_add(data_shard *ds, struct data_inflight *node)
{
    node->cookie = ((uint64_t)ds->shard << 56) | ++ds->next_cookie;
    node->prev = NULL;
    node->next = ds->inflight;
    if (ds->inflight) ds->inflight->prev = node;
    ds->inflight = node;
}

void data_inflight_remove(data_shard *ds, struct data_inflight *node)
{
    if (node->prev)
        node->prev->next = node->next;
    else if (ds->inflight == node)
        ds->inflight = node->next;
    if (node->next) node->next->prev = node->prev;
    node->prev = node->next = NULL;
}

struct data_inflight *data_inflight_find(data_shard *ds, uint64_t cookie)
{
    for (struct data_inflight *n = ds->inflight; n; n = n->next)
        if (n->cookie == cookie) return n;
    return NULL;
}

static void data_shard_stop(reactor_shard *self, void *arg)
{
    data_shard *ds = arg;
    /* Answer or abandon the requests still in flight (bounded: each pass removes one). */
    for (int guard = 0; ds->inflight && guard < 10000000; guard++) {
        struct data_inflight *n = ds->inflight;
        if (n->on_shutdown && n->on_shutdown(n)) {
            if (ds->inflight == n) data_inflight_remove(ds, n); /* defensive */
            continue;
        }
        data_inflight_remove(ds, n);
        pthread_mutex_lock(&g_mu);
        n->next = g_abandoned;
        g_abandoned = n;
        pthread_mutex_unlock(&g_mu);
    }
    reactor_timer_cancel(self, &ds->retry_timer);
    reactor_timer_cancel(self, &ds->housekeep_timer);
    if (ds->trim_busy) io_offload_finish(ds->io, &ds->trim_op); /* it points into ds */
    pm_destroy(&ds->pm);
    topic_table_free(&ds->topics);
    while (ds->pending_head) {
        struct data_pending_msg *m = ds->pending_head;
        ds->pending_head = m->next;
        free(m);
    }
    if (ds->cache) storage_cache_destroy(ds->cache);
    free(ds->op_blob);
    tls_shard = NULL;
    free(ds);
}

/* The heap trim (base/heap.h) on the offload thread: it walks and locks the allocator's
 * arenas, and a trim gives back hundreds of MiB page by page. */
static int trim_job(io *iop, void *arg)
{
    (void)iop;
    size_t mib = heap_trim_check(arg) >> 20; /* released; AL_MIN evaluates twice */
    return (int)AL_MIN(mib, (size_t)INT32_MAX);
}

static void trim_cb(io_op *op)
{
    data_shard *ds = op->ctx;
    ds->trim_busy = false;
    metrics_gauge_set(metrics_local, M_HEAP_FREE_BYTES, (double)ds->trim.free_bytes);
    if (op->res <= 0) return;
    metrics_counter_add(metrics_local, M_HEAP_RELEASED_BYTES, (uint64_t)op->res << 20);
    log_info("memory", "gave %d MiB of freed heap memory back to the system (%.1f ms; "
             "heap_trim_threshold %zu MiB)", op->res, (double)ds->trim.last_trim_ns / 1e6,
             ds->trim.threshold >> 20);
}

/* Shard 0, at housekeeping: one look of the heap trim, unless one is still running. */
static void trim_kick(data_shard *ds)
{
    if (ds->shard != 0 || ds->trim_busy || !ds->cfg->heap_trim_threshold) return;
    ds->trim.threshold = (size_t)ds->cfg->heap_trim_threshold;
    ds->trim_busy = true;
    ds->trim_op.cb = trim_cb;
    ds->trim_op.ctx = ds;
    io_offload(ds->io, &ds->trim_op, trim_job, &ds->trim);
}

static void housekeep_fire(reactor_timer *t)
{
    data_shard *ds = t->ctx;
    int64_t now = io_wall_ms(ds->io);
    pm_housekeep(&ds->pm, now, DATA_HOUSEKEEP_BUDGET);
    trim_kick(ds);
    reactor_timer_add(ds->rs, &ds->housekeep_timer, io_now_ns(ds->io) + DATA_HOUSEKEEP_NS, NULL);
}

static void retry_fire(reactor_timer *t);

int data_shard_start(reactor_shard *self, struct data_plane *dp)
{
    data_shard *ds = calloc(1, sizeof(*ds));
    if (!ds) return -ENOMEM;
    ds->rs = self;
    ds->io = reactor_io(self);
    ds->shard = reactor_shard_index(self);
    ds->smp = reactor_shard_count(reactor_of(self));
    ds->cfg = dp->cfg;
    ds->dp = dp;
    reactor_timer_init(&ds->retry_timer, retry_fire, ds);
    reactor_timer_init(&ds->housekeep_timer, housekeep_fire, ds);
    size_t cache = (size_t)(dp->cfg->memory / (int64_t)ds->smp / 4);
    cache = AL_MAX(DATA_CACHE_MIN, AL_MIN(cache, (size_t)DATA_CACHE_MAX));
    int err = -ENOMEM;
    ds->cache = storage_cache_create(cache);
    if (!ds->cache) goto fail;
    storage_cache_set_idle_ms(ds->cache, dp->cfg->batch_cache_idle_ms);
    err = topic_table_init(&ds->topics, ds->shard == 0 ? ds->io : NULL,
                           ds->shard == 0 ? dp->data_dir : NULL);
    if (err) goto fail;
    if (ds->shard != 0) ds->topics.io = ds->io; /* randomness only; a replica never saves */
    err = topic_table_decode(&ds->topics, dp->table_blob, dp->table_len);
    if (err) goto fail;
    err = pm_init(&ds->pm, ds->io, ds->shard, ds->smp, dp->data_dir, ds->cache);
    if (err) goto fail;
    ds->pm.node_id = (int32_t)dp->cfg->node_id;
    ds->cluster_cfg = *dp->cfg;
    broker_config_defaults_build(&ds->cluster_cfg, &ds->defaults);
    pm_set_defaults(&ds->pm, &ds->defaults);
    err = pm_reconcile(&ds->pm, &ds->topics);
    if (err) goto fail;
    if (ds->shard == 0 && !cluster_mode(dp->cfg)) /* cluster: the controller's table sweeps */
        pm_sweep_deleted(&ds->pm, &ds->topics);   /* e.g. a crash mid-delete */
    err = reactor_on_shutdown(self, data_shard_stop, ds);
    if (err) goto fail;
    reactor_timer_add(self, &ds->housekeep_timer, io_now_ns(ds->io) + DATA_HOUSEKEEP_NS, NULL);
    tls_shard = ds;
    log_info("cluster", "shard %" PRIu32 ": %" PRIu32 " partitions open", ds->shard, ds->pm.count);
    return 0;
fail:
    log_error("cluster", "shard %" PRIu32 ": data plane start failed: %s", ds->shard,
              al_strerror(err));
    pm_destroy(&ds->pm);
    topic_table_free(&ds->topics);
    if (ds->cache) storage_cache_destroy(ds->cache);
    free(ds);
    return err;
}

/* ---- sends ---- */

static void retry_fire(reactor_timer *t)
{
    data_shard *ds = t->ctx;
    for (uint32_t guard = 0; ds->pending_head && guard < DATA_PENDING_MAX; guard++) {
        struct data_pending_msg *m = ds->pending_head;
        int rc = reactor_send(ds->rs, m->to, &m->msg);
        if (rc == AL_EFULL) break;
        if (rc) log_warn("cluster", "dropping a message to shard %u: %s", m->to, al_strerror(rc));
        ds->pending_head = m->next;
        if (!ds->pending_head) ds->pending_tail = NULL;
        ds->pending_count--;
        free(m);
    }
    if (ds->pending_head)
        reactor_timer_add(ds->rs, &ds->retry_timer, io_now_ns(ds->io) + DATA_RETRY_NS, NULL);
}

int data_send(data_shard *ds, unsigned to, reactor_msg_fn fn, void *arg, uint64_t a, uint64_t b)
{
    struct reactor_msg msg = {fn, arg, a, b};
    if (!ds->pending_head) {
        int rc = reactor_send(ds->rs, to, &msg);
        if (rc != AL_EFULL) return rc;
    }
    /* Keep order behind what already waits. The queue is bounded by the requests in flight,
     * which the connection layer bounds; the assertion guards against a runaway. */
    AL_ASSERT(ds->pending_count < DATA_PENDING_MAX);
    struct data_pending_msg *m = malloc(sizeof(*m));
    AL_ASSERT(m != NULL);
    m->next = NULL;
    m->to = to;
    m->msg = msg;
    if (ds->pending_tail)
        ds->pending_tail->next = m;
    else
        ds->pending_head = m;
    ds->pending_tail = m;
    ds->pending_count++;
    if (!reactor_timer_armed(&ds->retry_timer))
        reactor_timer_add(ds->rs, &ds->retry_timer, io_now_ns(ds->io) + DATA_RETRY_NS, NULL);
    return 0;
}

/* ---- topic changes ---- */

static void op_start_next(data_shard *ds);

/* On the submitting shard: the op is complete everywhere. */
static void op_done_msg(reactor_shard *self, const struct reactor_msg *msg)
{
    struct data_topic_op *op = msg->arg;
    op->done(op);
}

/* On shard 0: one shard has applied the new table. */
static void op_ack_msg(reactor_shard *self, const struct reactor_msg *msg)
{
    data_shard *ds = data_shard_self();
    AL_ASSERT(ds && ds->shard == 0 && ds->op_running);
    AL_ASSERT(ds->op_acks_left > 0);
    if (--ds->op_acks_left > 0) return;
    struct data_topic_op *op = ds->op_running;
    ds->op_running = NULL;
    if (op->kind != DATA_OP_CLUSTER_CONFIG)
        pm_sweep_deleted(&ds->pm, &ds->topics); /* every shard has closed what was deleted */
    free(ds->op_blob);
    ds->op_blob = NULL;
    data_send(ds, op->from_shard, op_done_msg, op, 0, 0);
    op_start_next(ds);
}

/* On every shard: adopt the new table (shard 0 already has it) and reconcile partitions. */
static void op_apply_msg(reactor_shard *self, const struct reactor_msg *msg)
{
    data_shard *ds = data_shard_self();
    AL_ASSERT(ds);
    if (ds->shard != 0) {
        const uint8_t *blob = msg->arg;
        int err = topic_table_decode(&ds->topics, blob, (size_t)msg->a);
        if (err)
            log_error("cluster", "shard %" PRIu32 ": cannot adopt the topic table: %s", ds->shard,
                      al_strerror(err));
    }
    pm_reconcile(&ds->pm, &ds->topics);
    data_send(ds, 0, op_ack_msg, NULL, 0, 0);
}

/* Applies one item to shard 0's table. */
static int op_apply_item(topic_table *tt, enum data_topic_op_kind kind, struct data_topic_item *it)
{
    switch (kind) {
    case DATA_OP_CREATE: {
        int err = topic_table_create(tt, it->name, it->partitions, it->replication_factor,
                                     it->configs, it->n_configs, false, NULL);
        if (!err) {
            const topic *t = topic_table_find(tt, it->name, strlen(it->name));
            memcpy(it->id, t->id, 16);
        }
        return err;
    }
    case DATA_OP_DELETE: {
        const topic *t = topic_table_find(tt, it->name, strlen(it->name));
        if (t && t->internal) return AL_EINVAL;
        return topic_table_delete(tt, it->name);
    }
    case DATA_OP_ADD_PARTITIONS:
        return topic_table_add_partitions(tt, it->name, it->partitions);
    case DATA_OP_REPLACE_CONFIGS:
        return topic_table_replace_configs(tt, it->name, it->configs, it->n_configs);
    case DATA_OP_SET_CONFIGS: {
        if (!topic_table_find(tt, it->name, strlen(it->name))) return AL_ENOTFOUND;
        for (int32_t i = 0; i < it->n_configs; i++) {
            bool del = it->del && it->del[i];
            int err = topic_table_set_config(tt, it->name, it->configs[i].key,
                                             del ? NULL : it->configs[i].value);
            if (err) return err;
        }
        return 0;
    }
    case DATA_OP_CLUSTER_CONFIG: break; /* not a topic change (op_start_config) */
    }
    return AL_EINVAL;
}

/* On every shard: adopt the new cluster configuration and re-resolve partition settings. */
static void op_config_apply_msg(reactor_shard *self, const struct reactor_msg *msg)
{
    data_shard *ds = data_shard_self();
    AL_ASSERT(ds);
    ds->cluster_cfg = *(const al_config *)msg->arg;
    ds->cluster_cfg_version++;
    broker_config_defaults_build(&ds->cluster_cfg, &ds->defaults);
    pm_set_defaults(&ds->pm, &ds->defaults);
    pm_reconcile(&ds->pm, &ds->topics);
    data_send(ds, 0, op_ack_msg, NULL, 0, 0);
}

/* Applies one item's changes to c. Returns 0 or the first refusal (c then unchanged). */
static int config_item_apply(al_config *c, const al_config *start, al_config *scratch,
                             const struct data_topic_item *it)
{
    *scratch = *c;
    for (int32_t j = 0; j < it->n_configs; j++) {
        bool del = it->del && it->del[j];
        int err = config_change(scratch, start, it->configs[j].key,
                                del ? NULL : it->configs[j].value, NULL, 0);
        if (err) return err;
    }
    *c = *scratch;
    return 0;
}

/* On shard 0: runs a DATA_OP_CLUSTER_CONFIG (see data_plane.h). Returns 0 when the new
 * configuration went out to every shard, else an error (items' err set). */
static int op_start_config(data_shard *ds, struct data_topic_op *op)
{
    al_config *next = malloc(2 * sizeof(*next)); /* [0] result, [1] scratch */
    if (!next) return -ENOMEM;
    next[0] = ds->cluster_cfg;
    bool changed = false;
    for (int32_t i = 0; i < op->n; i++) {
        op->items[i].err = config_item_apply(&next[0], ds->dp->cfg, &next[1], &op->items[i]);
        if (!op->items[i].err) changed = true;
    }
    int err = changed ? config_save_admin(ds->io, &next[0]) : 0;
    if (err) {
        log_error("cluster", "cannot save the cluster configuration in %s: %s",
                  ds->cluster_cfg.data_directory, al_strerror(err));
        for (int32_t i = 0; i < op->n; i++)
            if (!op->items[i].err) op->items[i].err = err;
        free(next);
        return err;
    }
    if (changed) log_info("cluster", "cluster configuration changed");
    ds->op_blob = (uint8_t *)next;
    ds->op_blob_len = sizeof(*next);
    ds->op_acks_left = ds->smp;
    for (uint32_t s = 0; s < ds->smp; s++)
        data_send(ds, s, op_config_apply_msg, ds->op_blob, 0, 0);
    return 0;
}

static void op_start_next(data_shard *ds)
{
    if (ds->op_running || !ds->op_queue_head) return;
    struct data_topic_op *op = ds->op_queue_head;
    ds->op_queue_head = op->next;
    if (!ds->op_queue_head) ds->op_queue_tail = NULL;
    ds->op_running = op;
    if (op->kind == DATA_OP_CLUSTER_CONFIG) {
        if (op_start_config(ds, op) == 0) return;
        ds->op_running = NULL;
        data_send(ds, op->from_shard, op_done_msg, op, 0, 0);
        op_start_next(ds);
        return;
    }

    uint8_t *before = NULL;
    size_t before_len = 0;
    int err = topic_table_encode(&ds->topics, &before, &before_len);
    uint64_t v0 = ds->topics.version;
    for (int32_t i = 0; i < op->n; i++)
        op->items[i].err = err ? err : op_apply_item(&ds->topics, op->kind, &op->items[i]);
    if (!err && ds->topics.version != v0) {
        err = topic_table_save(&ds->topics);
        if (err) {
            /* Not durable: undo, so no shard ever acts on a change that may not survive. */
            topic_table_decode(&ds->topics, before, before_len);
            for (int32_t i = 0; i < op->n; i++)
                if (!op->items[i].err) op->items[i].err = err;
        }
    }
    free(before);
    if (!err) err = topic_table_encode(&ds->topics, &ds->op_blob, &ds->op_blob_len);
    if (err) {
        ds->op_running = NULL;
        data_send(ds, op->from_shard, op_done_msg, op, 0, 0);
        op_start_next(ds);
        return;
    }
    ds->op_acks_left = ds->smp;
    for (uint32_t s = 0; s < ds->smp; s++)
        data_send(ds, s, op_apply_msg, ds->op_blob, ds->op_blob_len, 0);
}

/* On shard 0: queue an op. */
static void op_submit_msg(reactor_shard *self, const struct reactor_msg *msg)
{
    data_shard *ds = data_shard_self();
    struct data_topic_op *op = msg->arg;
    AL_ASSERT(ds && ds->shard == 0);
    op->next = NULL;
    if (ds->op_queue_tail)
        ds->op_queue_tail->next = op;
    else
        ds->op_queue_head = op;
    ds->op_queue_tail = op;
    op_start_next(ds);
}

int (*data_topic_hook)(data_shard *ds, struct data_topic_op *op);

int data_topic_submit(data_shard *ds, struct data_topic_op *op)
{
    if (data_topic_hook) return data_topic_hook(ds, op); /* cluster mode: the controller */
    op->from_shard = ds->shard;
    op->next = NULL;
    return data_send(ds, 0, op_submit_msg, op, 0, 0);
}
