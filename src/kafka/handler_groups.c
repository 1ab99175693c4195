/*
 * handler_groups.c — the consumer-group APIs on top of the coordinator logic in coord/group.h:
 * FindCoordinator 0-4, JoinGroup 0-5, SyncGroup 0-3, Heartbeat 0-3,
 * LeaveGroup 0-3, OffsetCommit 0-7, OffsetFetch 0-9, DescribeGroups 0-4, ListGroups 0-4,
 * DeleteGroups 0-2, OffsetDelete 0.
 *
 * Placement: a group lives on __consumer_offsets partition coord_partition_for(group) and is
 * served by the shard owning that partition (S), which holds one group_coordinator for all its
 * groups ("gshard", started lazily at its first group request: it replays the records of its
 * __consumer_offsets partitions through group_coordinator_load). The connection's shard (C)
 * decodes the request, copies what the coordinator needs into the request's arena, and sends
 * one job per group to S; S runs the coordinator call and fills the response (allocating from
 * the request's arena: C does not touch the request while it waits), then messages C, which
 * responds.
 *
 * Durability: records the coordinator emits (commits, group metadata) are appended to the
 * group's partition as one uncompressed batch per emit. Every coordinator call runs inside a
 * "scope" that collects the jobs it completed (JoinGroup/SyncGroup callbacks may complete other
 * members' requests); when the call emitted records, those jobs are released only after the
 * flush covering them returned, so nothing is acknowledged before it is on disk. A failed flush
 * turns the answers into COORDINATOR_NOT_AVAILABLE.
 *
 * Cluster mode (issue 7; __consumer_offsets partitions are Raft replicas, partition_raft.h):
 * FindCoordinator answers the node leading the group's partition (leadership table), and asks
 * the controller to create __consumer_offsets on first use. Only that leader coordinates the
 * group: elsewhere every group request gets NOT_COORDINATOR. Per partition the shard keeps a
 * state (struct gpart): when it becomes leader it waits until the commit index covers the log
 * found at election, then replays the committed records (COORDINATOR_LOAD_IN_PROGRESS, or the
 * API's loading answer, meanwhile); when it stops leading (or the term changes) the groups are
 * dropped, pending joins and syncs answered NOT_COORDINATOR. Records go through raft_replicate
 * and the scope's jobs are answered once they commit on a majority (struct gwait); a commit
 * lost with the leadership answers NOT_COORDINATOR. Leadership is looked at on every request
 * and every 100 ms tick.
 */
#include "kafka/handlers_data.h"

#include "base/log.h"
#include "cluster/cluster.h"
#include "cluster/data_plane.h"
#include "cluster/partition_raft.h"
#include "config/config.h"
#include "coord/group.h"
#include "coord/group_records.h"
#include "metrics/metrics.h"
#include "raft/replica.h"
#include "storage/batch.h"
#include "storage/log_raft.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#define GS_TICK_NS   (100ull * 1000000ull)
#define GS_MAX_PARTS 256 /* __consumer_offsets partitions tracked per scope */
#define GS_CREATE_NS (2000ull * 1000000ull) /* cluster: between asks to create the topic */

struct gctx;
struct gjob;
struct gshard;

typedef void (*gjob_run_fn)(struct gshard *gs, struct gjob *job);
typedef void (*gjob_fail_fn)(struct gjob *job, int16_t err);

/* One group's piece of a request, run on the group's shard. */
struct gjob {
    struct gctx *ctx;
    const char *group; /* NUL-terminated, in the request's arena */
    unsigned owner;
    gjob_run_fn run;
    gjob_fail_fn fail; /* overwrite the answer's error(s) */
    void *slot;        /* API-specific response piece */
    void *arg;         /* API-specific request piece */
    int64_t now_ms;
    bool any_part;     /* ListGroups: not about one group (no leadership check) */
    bool loading;      /* cluster: the group's partition is being loaded (set on S) */
    struct gjob *next_done;
};

/* A request on its connection's shard. */
struct gctx {
    kafka_req *req;
    unsigned conn_shard;
    int32_t pending;
    void *resp;
    struct data_inflight inflight;
    struct gjob *jobs;
    int32_t njobs;
    void (*finish)(struct gctx *ctx); /* before responding (ListGroups gathers), or NULL */
    void *finish_arg;                 /* for finish */
};

/*
 * Cluster mode: jobs waiting for the Raft commit of the records their call emitted. One
 * reference per raft_replicate in flight plus one held by the scope until it ends; the last
 * one out releases the jobs (with err, if any commit failed). Heap-owned: it outlives the shard's
 * coordinator if the replicas fail their waiters at shutdown.
 */
struct gwait {
    int refs;
    int16_t err;
    struct gjob *jobs;
};

/* One record batch being replicated (cluster mode). */
struct gcommit {
    raft_replicate_req q;
    struct gwait *w;
};

/* A coordinator call in progress on S: what it emitted and which jobs it completed. */
struct gscope {
    int64_t last[GS_MAX_PARTS]; /* last offset appended per __consumer_offsets partition */
    bool any;
    struct gjob *done;
    struct gwait *w; /* cluster mode: created by the first emit */
};

/*
 * Cluster mode: this shard's coordinator state of one __consumer_offsets partition it hosts.
 * NONE: not its leader (no groups held); WAIT: leader in `term`, waiting until the commit index
 * reaches wait_to (the log end when it became leader: everything before its term is then
 * committed); READY: the partition's groups were replayed (up to the commit index) in `term`.
 */
enum { GP_NONE = 0, GP_WAIT, GP_READY };
struct gpart {
    uint8_t state;
    int64_t term;
    int64_t wait_to;
};

struct gshard {
    data_shard *ds;
    struct group_coordinator c;
    reactor_timer tick;
    struct gscope *scope;
    uint8_t offsets_id[16];
    int32_t offsets_partitions;
    bool cluster; /* cluster mode: partitions are Raft replicas (see gpart) */
    struct gpart parts[GS_MAX_PARTS];
};

static _Thread_local struct gshard *tls_gs;
static _Thread_local bool tls_gs_failed;

/* ---- completion: S -> C ---- */

static void gctx_job_done_msg(reactor_shard *self, const struct reactor_msg *msg)
{
    struct gjob *job = msg->arg;
    struct gctx *ctx = job->ctx;
    AL_ASSERT(ctx->pending > 0);
    if (--ctx->pending > 0) return;
    data_inflight_remove(data_shard_self(), &ctx->inflight);
    if (ctx->finish) ctx->finish(ctx);
    kafka_req_respond(ctx->req, ctx->resp);
}

static void gjob_send_done(data_shard *ds, struct gjob *job)
{
    data_send(ds, job->ctx->conn_shard, gctx_job_done_msg, job, 0, 0);
}

/* Marks job complete in the current scope (or sends it at once outside a scope). */
static void gscope_complete(struct gshard *gs, struct gjob *job)
{
    if (gs->scope) {
        job->next_done = gs->scope->done;
        gs->scope->done = job;
    } else {
        gjob_send_done(gs->ds, job);
    }
}

struct gflush {
    struct gshard *gs;
    int pending;
    int failed;
    struct gjob *jobs;
    int32_t n;
    storage_waiter w[]; /* one per partition written */
};

static void gflush_release(struct gflush *f)
{
    data_shard *ds = data_shard_self();
    struct gjob *j = f->jobs;
    while (j) {
        struct gjob *next = j->next_done;
        if (f->failed && j->fail) j->fail(j, KAFKA_ERR_COORDINATOR_NOT_AVAILABLE);
        if (ds) gjob_send_done(ds, j);
        j = next;
    }
    free(f);
}

static void gflush_done(storage_waiter *w)
{
    struct gflush *f = w->ctx;
    if (w->res < 0) {
        f->failed = 1;
        log_warn("kafka", "__consumer_offsets flush failed: %s", al_strerror(w->res));
    }
    if (--f->pending == 0) gflush_release(f);
}

static void gscope_begin(struct gshard *gs, struct gscope *sc)
{
    AL_ASSERT(gs->scope == NULL);
    memset(sc, 0, sizeof(*sc));
    for (int i = 0; i < GS_MAX_PARTS; i++) sc->last[i] = -1;
    gs->scope = sc;
}

/* Cluster mode: the jobs of a gwait whose commits all finished. */
static void gwait_release(struct gwait *w)
{
    data_shard *ds = data_shard_self();
    struct gjob *j = w->jobs;
    while (j) {
        struct gjob *next = j->next_done;
        if (w->err && j->fail) j->fail(j, w->err);
        if (ds) gjob_send_done(ds, j);
        j = next;
    }
    free(w);
}

static void gwait_put(struct gwait *w)
{
    AL_ASSERT(w->refs > 0);
    if (--w->refs == 0) gwait_release(w);
}

/* raft_replicate's callback (the partition's shard): one emitted batch committed or failed. */
static void gcommit_done(raft_replicate_req *q)
{
    struct gcommit *gc = q->ctx;
    struct gwait *w = gc->w;
    if (q->res) {
        /* Leadership lost (the records may or may not commit) or the replica closed: the
         * client finds the coordinator again. A failed replica: not available. */
        int16_t err = q->res == RAFT_ELOST || q->res == AL_ECLOSED
                          ? KAFKA_ERR_NOT_COORDINATOR
                          : KAFKA_ERR_COORDINATOR_NOT_AVAILABLE;
        if (!w->err) w->err = err;
        log_info("kafka", "group records at %" PRId64 " not committed: %s", q->base_offset,
                 al_strerror(q->res));
    }
    free(gc);
    gwait_put(w);
}

/* Ends a scope: releases its completed jobs now, or after the flush (single node) or the Raft
 * commit (cluster mode) of what it emitted. */
static void gscope_end(struct gshard *gs, struct gscope *sc)
{
    gs->scope = NULL;
    if (sc->w) {
        AL_ASSERT(sc->w->jobs == NULL);
        sc->w->jobs = sc->done;
        gwait_put(sc->w); /* the scope's hold */
        return;
    }
    if (!sc->any) {
        struct gjob *j = sc->done;
        while (j) {
            struct gjob *next = j->next_done;
            gjob_send_done(gs->ds, j);
            j = next;
        }
        return;
    }
    int nparts = 0;
    for (int i = 0; i < GS_MAX_PARTS; i++) nparts += sc->last[i] >= 0;
    struct gflush *f = calloc(1, sizeof(*f) + sizeof(storage_waiter) * (size_t)nparts);
    AL_ASSERT(f != NULL);
    f->gs = gs;
    f->jobs = sc->done;
    f->pending = 1;
    int k = 0;
    for (int i = 0; i < GS_MAX_PARTS; i++) {
        if (sc->last[i] < 0) continue;
        pm_partition *p = pm_find(&gs->ds->pm, gs->offsets_id, i);
        if (!p) {
            f->failed = 1;
            continue;
        }
        storage_waiter *w = &f->w[k++];
        w->cb = gflush_done;
        w->ctx = f;
        w->offset = sc->last[i];
        int rc = storage_log_flush_wait(p->log, sc->last[i], w);
        if (rc == 0) {
            f->pending++;
        } else if (rc < 0) {
            f->failed = 1;
        }
        pm_refresh_hw(p);
    }
    if (--f->pending == 0) gflush_release(f);
}

/* ---- the coordinator's storage ---- */

/*
 * Cluster mode: replicates one batch of group records through the partition's Raft replica
 * (leader only; a direct append would fork the replica's log). The jobs of the current scope
 * are answered once it commits on a majority (gscope_end, gcommit_done). Refused (AL_ECLOSED)
 * unless the partition is READY in the replica's current term: groups loaded in an earlier
 * term must not write into a later one. Returns 0 or a negative error (the change is refused).
 */
static int gs_emit_raft(struct gshard *gs, pm_partition *p, int32_t part, uint8_t *buf,
                        size_t size)
{
    const struct gpart *g = &gs->parts[part];
    if (g->state != GP_READY || !pr_is_leader(p) || raft_replica_term(p->rr) != g->term)
        return AL_ECLOSED;
    struct gwait *w = gs->scope ? gs->scope->w : NULL;
    bool own = false;
    if (!w) {
        w = calloc(1, sizeof(*w));
        if (!w) return -ENOMEM;
        w->refs = 1; /* the scope's hold (or ours, outside a scope) */
        own = gs->scope == NULL;
        if (gs->scope) gs->scope->w = w;
    }
    struct gcommit *gc = calloc(1, sizeof(*gc));
    int rc = -ENOMEM;
    if (gc) {
        gc->w = w;
        gc->q.wait = RAFT_WAIT_COMMIT;
        gc->q.cb = gcommit_done;
        gc->q.ctx = gc;
        w->refs++;
        rc = raft_replicate(p->rr, buf, size, &gc->q);
        if (rc < 0) {
            w->refs--;
            free(gc);
        }
    }
    if (own) gwait_put(w);
    return rc < 0 ? rc : 0;
}

static int gs_emit(void *vctx, const char *group_id, const struct group_record *recs, int n)
{
    struct gshard *gs = vctx;
    if (n <= 0) return 0;
    int32_t part = coord_partition_for(group_id, strlen(group_id), gs->offsets_partitions);
    if (part < 0 || part >= GS_MAX_PARTS) return AL_EINVAL;
    pm_partition *p = pm_find(&gs->ds->pm, gs->offsets_id, part);
    if (!p) return AL_ENOTFOUND;
    storage_build_record *br = calloc((size_t)n, sizeof(*br));
    if (!br) return -ENOMEM;
    for (int i = 0; i < n; i++) {
        br[i].offset_delta = i;
        br[i].key = recs[i].key;
        br[i].key_len = (int32_t)recs[i].key_len;
        br[i].value = recs[i].value;
        br[i].value_len = recs[i].value ? (int32_t)recs[i].value_len : -1;
    }
    int64_t now = io_wall_ms(gs->ds->io);
    storage_build_params bp = {0, PM_LEADER_EPOCH, 0, -1, now, now, -1, -1, -1};
    size_t cap = storage_batch_build_size(br, n);
    uint8_t *buf = malloc(cap);
    int err = -ENOMEM;
    if (buf) {
        int64_t size = storage_batch_build(buf, cap, &bp, br, n);
        storage_append_result res;
        if (size >= 0 && p->rr) {
            err = gs_emit_raft(gs, p, part, buf, (size_t)size);
            free(buf);
            free(br);
            if (err)
                log_warn("kafka", "replicating group records of %s: %s", group_id,
                         al_strerror(err));
            return err;
        }
        err = size < 0 ? (int)size
                       : storage_log_append(p->log, PM_LEADER_EPOCH, buf, (size_t)size, &res);
        if (!err) {
            if (gs->scope) {
                gs->scope->last[part] = res.last_offset;
                gs->scope->any = true;
            } else {
                pm_note_append(p, res.last_offset);
            }
        }
    }
    free(buf);
    free(br);
    if (err) log_warn("kafka", "appending group records of %s: %s", group_id, al_strerror(err));
    return err;
}

struct gload_wait {
    bool done;
};

static void gload_read_done(storage_read *r)
{
    ((struct gload_wait *)r->ctx)->done = true;
}

/* Replays the records of one stored batch (header h, size bytes) through the coordinator;
 * control batches (Raft NOOP/CONFIG, transaction markers) are skipped. Counts records in *nrec.
 * Returns 0 or -ENOMEM (unreadable records are logged and skipped). */
static int gs_load_batch(struct gshard *gs, const pm_partition *p, const uint8_t *batch,
                         size_t size, const storage_batch_hdr *h, int64_t now, int64_t *nrec)
{
    const uint8_t *recs;
    size_t rlen;
    uint8_t *owned = NULL;
    if ((h->attributes & STORAGE_ATTR_CONTROL) ||
        storage_batch_records(batch, size, 64u << 20, &recs, &rlen, &owned) != 0)
        return 0;
    storage_record_iter it;
    storage_record rec;
    storage_record_iter_init(&it, recs, rlen, h->records_count);
    while (storage_record_iter_next(&it, &rec) == 1) {
        if (rec.key_len < 0) continue;
        int e = group_coordinator_load(&gs->c, rec.key, (size_t)rec.key_len,
                                       rec.value_len >= 0 ? rec.value : NULL,
                                       rec.value_len >= 0 ? (size_t)rec.value_len : 0, now);
        if (e == -ENOMEM) {
            free(owned);
            return e;
        }
        if (e)
            log_warn("kafka", "%s/%" PRId32 ": skipping an unreadable record: %s", p->topic,
                     p->partition, al_strerror(e));
        (*nrec)++;
    }
    free(owned);
    return 0;
}

/* Replays one partition's records through the coordinator (blocking, at start). */
static int gs_load_partition(struct gshard *gs, pm_partition *p, int64_t now)
{
    int64_t off = storage_log_start_offset(p->log);
    int64_t end = storage_log_high_offset(p->log);
    int64_t nrec = 0;
    for (int guard = 0; off < end && guard < 10000000; guard++) {
        struct gload_wait wait = {false};
        storage_read r;
        memset(&r, 0, sizeof(r));
        r.offset = off;
        r.max_bytes = 64u << 10;
        r.cb = gload_read_done;
        r.ctx = &wait;
        int rc = storage_log_read(p->log, &r);
        if (rc < 0) return rc;
        for (int i = 0; rc == 0 && !wait.done && i < 1000000; i++) {
            int pr = io_poll(gs->ds->io, UINT64_MAX);
            if (pr < 0) return pr;
        }
        if (r.res < 0 || r.len == 0) {
            int e = r.res;
            storage_read_release(&r);
            return e;
        }
        size_t pos = 0;
        while (pos + STORAGE_BATCH_HEADER <= r.len) {
            storage_batch_hdr h;
            if (storage_batch_parse_header(r.data + pos, r.len - pos, &h)) break;
            size_t size = storage_batch_size(&h);
            if (size > r.len - pos) break;
            int e = gs_load_batch(gs, p, r.data + pos, size, &h, now, &nrec);
            if (e) {
                storage_read_release(&r);
                return e;
            }
            pos += size;
        }
        int64_t next = r.next_offset;
        storage_read_release(&r);
        if (next <= off) break;
        off = next;
    }
    if (nrec)
        log_info("kafka", "%s/%" PRId32 ": %" PRId64 " group records loaded", p->topic,
                 p->partition, nrec);
    return 0;
}

/* ---- cluster mode: groups follow the leadership of their partition ---- */

struct gs_scan {
    struct gshard *gs;
    const pm_partition *p;
    int64_t upto; /* last offset to replay (the commit index) */
    int64_t now;
    int64_t nrec;
};

static int gs_scan_batch(void *ctx, const uint8_t *batch, size_t size)
{
    struct gs_scan *sc = ctx;
    storage_batch_hdr h;
    if (storage_batch_parse_header(batch, size, &h)) return AL_ECORRUPT;
    if (h.base_offset > sc->upto) return 1;
    return gs_load_batch(sc->gs, sc->p, batch, size, &h, sc->now, &sc->nrec);
}

/* Replays the committed records of partition `part` (its log up to the commit index), then
 * settles what they loaded. Blocks the shard on synchronous reads (a leadership change). */
static int gs_load_committed(struct gshard *gs, pm_partition *p, int32_t part)
{
    int64_t now = io_wall_ms(gs->ds->io);
    struct gs_scan sc = {gs, p, raft_replica_commit(p->rr), now, 0};
    int err = storage_log_scan_sync(p->log, storage_log_start_offset(p->log), 0, gs_scan_batch,
                                    &sc);
    group_coordinator_load_done(&gs->c, now);
    if (err) {
        log_error("kafka", "%s/%" PRId32 ": loading groups: %s; they are dropped until the next "
                  "leadership change", p->topic, part, al_strerror(err));
        group_coordinator_unload_partition(&gs->c, part, gs->offsets_partitions);
        return err;
    }
    log_info("kafka", "%s/%" PRId32 ": coordinator in term %" PRId64 ": %" PRId64
             " group records loaded up to offset %" PRId64, p->topic, part, gs->parts[part].term,
             sc.nrec, sc.upto);
    return 0;
}

/*
 * Brings partition `part`'s state up to date with its replica (cluster mode): a lost (or
 * changed-term) leadership drops its groups (pending joins and syncs answered NOT_COORDINATOR);
 * a new one waits for the commit index to cover the log found at election, then loads. Returns
 * the state (GP_*).
 */
static int gs_part_refresh(struct gshard *gs, int32_t part)
{
    struct gpart *g = &gs->parts[part];
    pm_partition *p = pm_find(&gs->ds->pm, gs->offsets_id, part);
    bool leader = p && p->rr && !p->removed && pr_is_leader(p);
    int64_t term = leader ? raft_replica_term(p->rr) : -1;
    if (g->state != GP_NONE && (!leader || term != g->term)) {
        if (g->state == GP_READY) {
            int n = group_coordinator_unload_partition(&gs->c, part, gs->offsets_partitions);
            log_info("kafka", "%s/%" PRId32 ": no longer coordinator (term %" PRId64
                     "): %d groups dropped", TOPIC_CONSUMER_OFFSETS, part, g->term, n);
        }
        g->state = GP_NONE;
    }
    if (!leader) return GP_NONE;
    if (g->state == GP_NONE) {
        g->state = GP_WAIT;
        g->term = term;
        g->wait_to = raft_replica_last_offset(p->rr);
    }
    if (g->state == GP_WAIT && raft_replica_commit(p->rr) >= g->wait_to) {
        int err = gs_load_committed(gs, p, part);
        g->state = err ? GP_NONE : GP_READY;
        if (err) g->term = -1;
    }
    return g->state;
}

/* Cluster mode: refreshes every partition of this shard (from the tick). */
static void gs_refresh_all(struct gshard *gs)
{
    for (int32_t i = 0; i < gs->offsets_partitions; i++) gs_part_refresh(gs, i);
}

static void gs_tick_fire(reactor_timer *t)
{
    struct gshard *gs = t->ctx;
    struct gscope sc;
    gscope_begin(gs, &sc);
    if (gs->cluster) gs_refresh_all(gs);
    group_coordinator_tick(&gs->c, io_wall_ms(gs->ds->io));
    gscope_end(gs, &sc);
    /* operations (src/metrics): consumer-group lag, at most once a second. */
    metrics_group_lag_update(&gs->c, io_wall_ms(gs->ds->io));
    reactor_timer_add(gs->ds->rs, &gs->tick, io_now_ns(gs->ds->io) + GS_TICK_NS, NULL);
}

static void gs_stop(reactor_shard *self, void *arg)
{
    struct gshard *gs = arg;
    reactor_timer_cancel(self, &gs->tick);
    struct gscope sc;
    gscope_begin(gs, &sc);
    group_coordinator_destroy(&gs->c); /* pending joins/syncs answered (messages dropped) */
    gs->scope = NULL;                  /* the shard stops: nothing more is sent */
    tls_gs = NULL;
    metrics_group_lag_forget(); /* operations: the lag bookkeeping of this shard */
    free(gs);
}

/* The calling shard's coordinator, started (and loaded) at first use. */
static struct gshard *gs_get(void)
{
    if (tls_gs) return tls_gs;
    if (tls_gs_failed) return NULL;
    data_shard *ds = data_shard_self();
    if (!ds) return NULL;
    const topic *t =
        topic_table_find(&ds->topics, TOPIC_CONSUMER_OFFSETS, strlen(TOPIC_CONSUMER_OFFSETS));
    if (!t) {
        if (!pr_enabled()) tls_gs_failed = true; /* cluster: created on first use, later */
        return NULL;
    }
    struct gshard *gs = calloc(1, sizeof(*gs));
    if (!gs) return NULL;
    gs->ds = ds;
    memcpy(gs->offsets_id, t->id, 16);
    gs->offsets_partitions = AL_MIN(t->partitions, GS_MAX_PARTS);
    gs->cluster = pr_enabled();
    struct group_config cfg;
    group_config_defaults(&cfg);
    group_coordinator_init(&gs->c, &cfg, gs_emit, gs, io_random(ds->io));
    int64_t now = io_wall_ms(ds->io);
    /* Cluster mode: nothing now; each partition loads when this node leads it. */
    for (int32_t i = 0; !gs->cluster && i < gs->offsets_partitions; i++) {
        pm_partition *p = pm_find(&ds->pm, t->id, i);
        if (!p) continue;
        int err = gs_load_partition(gs, p, now);
        if (err)
            log_error("kafka", "loading groups from %s/%" PRId32 ": %s", p->topic, i,
                      al_strerror(err));
    }
    if (!gs->cluster) group_coordinator_load_done(&gs->c, now);
    reactor_timer_init(&gs->tick, gs_tick_fire, gs);
    reactor_timer_add(ds->rs, &gs->tick, io_now_ns(ds->io) + GS_TICK_NS, NULL);
    reactor_on_shutdown(ds->rs, gs_stop, gs);
    tls_gs = gs;
    return gs;
}

/* On S: run one job inside a scope. */
static void gjob_run_msg(reactor_shard *self, const struct reactor_msg *msg)
{
    struct gjob *job = msg->arg;
    struct gshard *gs = gs_get();
    if (!gs) {
        data_shard *ds = data_shard_self();
        /* cluster mode, no __consumer_offsets yet: no groups to list */
        if (job->fail && !(job->any_part && pr_enabled()))
            job->fail(job, KAFKA_ERR_COORDINATOR_NOT_AVAILABLE);
        if (ds) gjob_send_done(ds, job);
        return;
    }
    job->now_ms = io_wall_ms(gs->ds->io);
    struct gscope sc;
    gscope_begin(gs, &sc);
    if (gs->cluster && !job->any_part) {
        /* Only the leader of the group's partition coordinates it (clients that asked another
         * node find the coordinator again); while it loads, each API's "loading" answer. */
        int32_t part = coord_partition_for(job->group, strlen(job->group),
                                           gs->offsets_partitions);
        int st = part >= 0 ? gs_part_refresh(gs, part) : GP_NONE;
        if (st == GP_NONE) {
            if (job->fail) job->fail(job, KAFKA_ERR_NOT_COORDINATOR);
            gscope_complete(gs, job);
            gscope_end(gs, &sc);
            return;
        }
        job->loading = st == GP_WAIT;
    }
    job->run(gs, job);
    gscope_end(gs, &sc);
}

/* Whether job must get its API's "coordinator loading" answer. */
static bool gs_loading(const struct gshard *gs, const struct gjob *job)
{
    return job->loading || group_coordinator_is_loading(&gs->c);
}

/* ---- request side helpers (C) ---- */

static const char *cstr(kafka_req *req, kafka_str s)
{
    if (s.len < 0) return NULL;
    char *p = kafka_arena_alloc(&req->arena, (size_t)s.len + 1);
    if (!p) return NULL;
    memcpy(p, s.ptr, (size_t)s.len);
    p[s.len] = 0;
    return p;
}

static kafka_str kstr(kafka_arena *a, const char *s)
{
    if (!s) return (kafka_str){NULL, -1};
    size_t n = strlen(s);
    char *p = kafka_arena_alloc(a, n + 1);
    if (!p) return (kafka_str){"", 0};
    memcpy(p, s, n + 1);
    return (kafka_str){p, (int32_t)n};
}

static kafka_bytes kbytes(kafka_arena *a, const uint8_t *b, size_t n)
{
    uint8_t *p = kafka_arena_alloc(a, n ? n : 1);
    if (!p) return (kafka_bytes){(const uint8_t *)"", 0};
    if (n) memcpy(p, b, n);
    return (kafka_bytes){p, (int32_t)n};
}

/* The owner shard of a group. */
static unsigned group_owner(data_shard *ds, const char *group)
{
    const topic *t =
        topic_table_find(&ds->topics, TOPIC_CONSUMER_OFFSETS, strlen(TOPIC_CONSUMER_OFFSETS));
    if (!t) return 0;
    int32_t part = coord_partition_for(group, strlen(group), AL_MIN(t->partitions, GS_MAX_PARTS));
    return pr_owner_shard(t, part, ds->smp); /* = data_owner on a single node */
}

static struct gctx *gctx_new(kafka_req *req, data_shard *ds, int32_t njobs, void *resp)
{
    struct gctx *ctx = kafka_arena_alloc(&req->arena, sizeof(*ctx));
    struct gjob *jobs = kafka_arena_alloc(&req->arena, sizeof(*jobs) * (size_t)AL_MAX(njobs, 1));
    if (!ctx || !jobs) return NULL;
    memset(ctx, 0, sizeof(*ctx));
    memset(jobs, 0, sizeof(*jobs) * (size_t)AL_MAX(njobs, 1));
    ctx->req = req;
    ctx->conn_shard = ds->shard;
    ctx->resp = resp;
    ctx->jobs = jobs;
    return ctx;
}

static struct gjob *gctx_add(struct gctx *ctx, data_shard *ds, const char *group, unsigned owner,
                             gjob_run_fn run, gjob_fail_fn fail, void *slot, void *arg)
{
    struct gjob *j = &ctx->jobs[ctx->njobs++];
    j->ctx = ctx;
    j->group = group;
    j->owner = owner;
    j->run = run;
    j->fail = fail;
    j->slot = slot;
    j->arg = arg;
    return j;
}

/* Sends every job (nothing fails after this). */
static int gctx_go(struct gctx *ctx, data_shard *ds)
{
    if (ctx->njobs == 0) {
        int rc = kafka_req_respond(ctx->req, ctx->resp);
        return rc < 0 ? rc : KAFKA_DONE;
    }
    data_inflight_add(ds, &ctx->inflight);
    ctx->pending = ctx->njobs;
    for (int32_t i = 0; i < ctx->njobs; i++)
        data_send(ds, ctx->jobs[i].owner, gjob_run_msg, &ctx->jobs[i], 0, 0);
    return KAFKA_DEFERRED;
}

/* ---- FindCoordinator ---- */

static _Atomic uint64_t g_co_asked_ns; /* cluster: last ask to create __consumer_offsets */

static void co_create_done(struct data_topic_op *op)
{
    int err = op->items[0].err;
    if (err && err != AL_EEXISTS)
        log_warn("kafka", "creating %s on first use: %s (asked again at the next "
                 "FindCoordinator)", TOPIC_CONSUMER_OFFSETS, al_strerror(err));
    free(op);
}

/*
 * Cluster mode, any shard: asks the controller to create __consumer_offsets (Kafka creates it
 * on first use): 16 partitions, compacted, replication factor min(3, active nodes). At most
 * one ask per GS_CREATE_NS per process; the controller refuses a second creation.
 */
static void co_create(data_shard *ds)
{
    uint64_t now = io_now_ns(ds->io);
    uint64_t last = atomic_load(&g_co_asked_ns);
    if (last && now - last < GS_CREATE_NS) return;
    if (!atomic_compare_exchange_strong(&g_co_asked_ns, &last, now)) return;
    struct data_topic_op *op = cluster_consumer_offsets_op();
    if (!op) return;
    op->done = co_create_done;
    log_info("kafka", "asking the controller to create %s (first use)", TOPIC_CONSUMER_OFFSETS);
    if (data_topic_submit(ds, op)) free(op);
}

struct coord_answer {
    int16_t err;
    int32_t node;
    kafka_str host;
    int32_t port;
};

/*
 * Cluster mode: the coordinator of group `key` is the node leading its __consumer_offsets
 * partition (this node's leadership table); COORDINATOR_NOT_AVAILABLE while no leader (or the
 * topic: its creation is asked for) is known, or while the table still names a leader this node
 * sees as down (its rpc connection is gone: the election follows). v[0..nv) is the view.
 */
static void coord_find_cluster(kafka_req *req, data_shard *ds, kafka_str key,
                               const cluster_view_broker *v, int nv, struct coord_answer *a)
{
    a->err = KAFKA_ERR_COORDINATOR_NOT_AVAILABLE;
    a->node = -1;
    a->host = kafka_str_from("");
    a->port = -1;
    const topic *t =
        topic_table_find(&ds->topics, TOPIC_CONSUMER_OFFSETS, strlen(TOPIC_CONSUMER_OFFSETS));
    if (!t) {
        co_create(ds);
        return;
    }
    int32_t part = coord_partition_for(key.ptr ? key.ptr : "", key.len > 0 ? (size_t)key.len : 0,
                                       AL_MIN(t->partitions, GS_MAX_PARTS));
    ldr_entry e;
    if (part < 0 || !pr_leader_lookup(cluster_group_id(t->id, part), &e) || e.leader < 0) return;
    for (int i = 0; i < nv; i++) {
        if (v[i].node_id != e.leader) continue;
        if (!v[i].alive) return; /* a dead leader until the election: ask again soon */
        a->err = 0;
        a->node = e.leader;
        a->host = kstr(&req->arena, v[i].kafka_host);
        a->port = v[i].kafka_port;
        return;
    }
}

/* Cluster mode: answers every key of the request (v0-3: one; v4+: the batch). */
static int find_coordinator_cluster(kafka_req *req, data_shard *ds,
                                    kafka_FindCoordinatorResponse *out)
{
    const kafka_FindCoordinatorRequest *in = req->msg;
    int max = cluster_view_brokers(NULL, 0, NULL, NULL);
    max = AL_MIN(AL_MAX(max, 0) + 4, CLUSTER_VIEW_MAX);
    cluster_view_broker *v = malloc(sizeof(*v) * (size_t)max);
    if (!v) return -ENOMEM;
    int nv = AL_MIN(AL_MAX(cluster_view_brokers(v, max, NULL, NULL), 0), max);
    struct coord_answer a;
    if (req->api_version < 4) {
        coord_find_cluster(req, ds, in->Key, v, nv, &a);
        out->ErrorCode = a.err;
        out->NodeId = a.node;
        out->Host = a.host;
        out->Port = a.port;
        free(v);
        return 0;
    }
    int32_t n = AL_MAX(in->CoordinatorKeys_count, 0);
    kafka_FindCoordinatorResponse_Coordinator *cs =
        kafka_arena_alloc(&req->arena, sizeof(*cs) * (size_t)AL_MAX(n, 1));
    if (!cs) {
        free(v);
        return -ENOMEM;
    }
    for (int32_t i = 0; i < n; i++) {
        kafka_FindCoordinatorResponse_Coordinator_init(&cs[i]);
        cs[i].Key = in->CoordinatorKeys[i];
        coord_find_cluster(req, ds, in->CoordinatorKeys[i], v, nv, &a);
        cs[i].ErrorCode = a.err;
        cs[i].NodeId = a.node;
        cs[i].Host = a.host;
        cs[i].Port = a.port;
    }
    out->Coordinators = cs;
    out->Coordinators_count = n;
    free(v);
    return 0;
}

/*
 * FindCoordinator. Single node: always this node. Cluster mode: the leader of the group's
 * __consumer_offsets partition (find_coordinator_cluster). Transaction coordinators: not yet.
 */
int kafka_handle_find_coordinator(kafka_req *req)
{
    const kafka_FindCoordinatorRequest *in = req->msg;
    const struct kafka_broker *b = req->broker;
    kafka_FindCoordinatorResponse out;
    kafka_FindCoordinatorResponse_init(&out);
    bool txn = in->KeyType != 0;
    int16_t err = txn ? KAFKA_ERR_COORDINATOR_NOT_AVAILABLE : 0; /* no transactions yet */
    const char *msg = txn ? "Transactions are not supported." : NULL;
    if (!txn && pr_enabled()) {
        data_shard *ds = data_shard_ensure(b->cfg);
        if (!ds) return AL_ECLOSED;
        int rc = find_coordinator_cluster(req, ds, &out);
        if (rc < 0) return rc;
        rc = kafka_req_respond(req, &out);
        return rc < 0 ? rc : KAFKA_DONE;
    }
    if (req->api_version < 4) {
        out.ErrorCode = err;
        out.ErrorMessage = kafka_str_from(msg);
        out.NodeId = err ? -1 : b->node_id;
        out.Host = kafka_str_from(err ? "" : b->advertised_host);
        out.Port = err ? -1 : b->advertised_port;
    } else {
        int32_t n = AL_MAX(in->CoordinatorKeys_count, 0);
        kafka_FindCoordinatorResponse_Coordinator *cs =
            kafka_arena_alloc(&req->arena, sizeof(*cs) * (size_t)AL_MAX(n, 1));
        if (!cs) return -ENOMEM;
        for (int32_t i = 0; i < n; i++) {
            kafka_FindCoordinatorResponse_Coordinator_init(&cs[i]);
            cs[i].Key = in->CoordinatorKeys[i];
            cs[i].ErrorCode = err;
            cs[i].ErrorMessage = kafka_str_from(msg);
            cs[i].NodeId = err ? -1 : b->node_id;
            cs[i].Host = kafka_str_from(err ? "" : b->advertised_host);
            cs[i].Port = err ? -1 : b->advertised_port;
        }
        out.Coordinators = cs;
        out.Coordinators_count = n;
    }
    int rc = kafka_req_respond(req, &out);
    return rc < 0 ? rc : KAFKA_DONE;
}

/* ---- JoinGroup ---- */

static void join_fill_error(kafka_JoinGroupResponse *r, int16_t err)
{
    r->ErrorCode = err;
    r->GenerationId = -1;
    r->Leader = kafka_str_from("");
    r->Members_count = 0;
}

static void join_fail(struct gjob *job, int16_t err)
{
    join_fill_error(job->slot, err);
}

static void join_cb(void *arg, const struct group_join_result *res)
{
    struct gjob *job = arg;
    kafka_req *req = job->ctx->req;
    kafka_JoinGroupResponse *r = job->slot;
    kafka_arena *a = &req->arena;
    r->ErrorCode = res->error;
    r->GenerationId = res->generation_id;
    if (req->api_version >= 7) r->ProtocolType = kstr(a, res->protocol_type);
    r->ProtocolName = req->api_version >= 7 ? kstr(a, res->protocol_name)
                                            : kstr(a, res->protocol_name ? res->protocol_name : "");
    r->Leader = kstr(a, res->leader ? res->leader : "");
    r->MemberId = kstr(a, res->member_id ? res->member_id : "");
    if (req->api_version >= 9) r->SkipAssignment = res->skip_assignment;
    r->Members_count = 0;
    if (res->nmembers > 0) {
        kafka_JoinGroupResponse_JoinGroupResponseMember *ms =
            kafka_arena_alloc(a, sizeof(*ms) * (size_t)res->nmembers);
        if (ms) {
            for (int i = 0; i < res->nmembers; i++) {
                kafka_JoinGroupResponse_JoinGroupResponseMember_init(&ms[i]);
                ms[i].MemberId = kstr(a, res->members[i].member_id);
                ms[i].GroupInstanceId = kstr(a, res->members[i].group_instance_id);
                ms[i].Metadata = kbytes(a, res->members[i].metadata, res->members[i].metadata_len);
            }
            r->Members = ms;
            r->Members_count = res->nmembers;
        } else {
            join_fill_error(r, KAFKA_ERR_UNKNOWN_SERVER_ERROR);
        }
    }
    gscope_complete(tls_gs, job);
}

static void join_run(struct gshard *gs, struct gjob *job)
{
    if (gs_loading(gs, job)) {
        join_fill_error(job->slot, KAFKA_ERR_COORDINATOR_LOAD_IN_PROGRESS);
        gscope_complete(gs, job);
        return;
    }
    group_join(&gs->c, job->arg, job->now_ms, join_cb, job);
}

int kafka_handle_join_group(kafka_req *req)
{
    const kafka_JoinGroupRequest *in = req->msg;
    data_shard *ds = data_shard_ensure(req->broker->cfg);
    if (!ds) return AL_ECLOSED;
    kafka_JoinGroupResponse *resp = kafka_arena_alloc(&req->arena, sizeof(*resp));
    struct group_join_request *jr = kafka_arena_alloc(&req->arena, sizeof(*jr));
    int32_t np = AL_MAX(in->Protocols_count, 0);
    struct group_protocol *ps = kafka_arena_alloc(&req->arena, sizeof(*ps) * (size_t)AL_MAX(np, 1));
    const char *group = cstr(req, in->GroupId);
    struct gctx *ctx = gctx_new(req, ds, 1, resp);
    if (!resp || !jr || !ps || !group || !ctx) return -ENOMEM;
    kafka_JoinGroupResponse_init(resp);
    join_fill_error(resp, 0);
    resp->MemberId = in->MemberId.len >= 0 ? in->MemberId : kafka_str_from("");
    memset(jr, 0, sizeof(*jr));
    jr->group_id = group;
    jr->member_id = in->MemberId.len >= 0 ? cstr(req, in->MemberId) : "";
    jr->group_instance_id = cstr(req, in->GroupInstanceId);
    jr->client_id = req->client_id.len >= 0 ? cstr(req, req->client_id) : "";
    jr->client_host = "/127.0.0.1";
    jr->session_timeout_ms = in->SessionTimeoutMs;
    jr->rebalance_timeout_ms =
        req->api_version >= 1 ? in->RebalanceTimeoutMs : in->SessionTimeoutMs;
    jr->protocol_type = in->ProtocolType.len >= 0 ? cstr(req, in->ProtocolType) : "";
    for (int32_t i = 0; i < np; i++) {
        ps[i].name = cstr(req, in->Protocols[i].Name);
        ps[i].metadata = in->Protocols[i].Metadata.ptr;
        ps[i].metadata_len =
            in->Protocols[i].Metadata.len > 0 ? (size_t)in->Protocols[i].Metadata.len : 0;
        if (!ps[i].name) return -ENOMEM;
    }
    jr->nprotocols = np;
    jr->protocols = ps;
    jr->require_known_member_id = req->api_version >= 4;
    jr->support_skip_assignment = req->api_version >= 9;
    if (!jr->member_id || !jr->client_id || !jr->protocol_type) return -ENOMEM;
    gctx_add(ctx, ds, group, group_owner(ds, group), join_run, join_fail, resp, jr);
    return gctx_go(ctx, ds);
}

/* ---- SyncGroup ---- */

static void sync_fail(struct gjob *job, int16_t err)
{
    kafka_SyncGroupResponse *r = job->slot;
    r->ErrorCode = err;
    r->Assignment = (kafka_bytes){(const uint8_t *)"", 0};
}

static void sync_cb(void *arg, const struct group_sync_result *res)
{
    struct gjob *job = arg;
    kafka_req *req = job->ctx->req;
    kafka_SyncGroupResponse *r = job->slot;
    r->ErrorCode = res->error;
    if (req->api_version >= 5) {
        r->ProtocolType = kstr(&req->arena, res->protocol_type);
        r->ProtocolName = kstr(&req->arena, res->protocol_name);
    }
    r->Assignment = kbytes(&req->arena, res->assignment, res->assignment ? res->assignment_len : 0);
    gscope_complete(tls_gs, job);
}

static void sync_run(struct gshard *gs, struct gjob *job)
{
    if (gs_loading(gs, job)) {
        sync_fail(job, KAFKA_ERR_REBALANCE_IN_PROGRESS);
        gscope_complete(gs, job);
        return;
    }
    group_sync(&gs->c, job->arg, job->now_ms, sync_cb, job);
}

int kafka_handle_sync_group(kafka_req *req)
{
    const kafka_SyncGroupRequest *in = req->msg;
    data_shard *ds = data_shard_ensure(req->broker->cfg);
    if (!ds) return AL_ECLOSED;
    kafka_SyncGroupResponse *resp = kafka_arena_alloc(&req->arena, sizeof(*resp));
    struct group_sync_request *sr = kafka_arena_alloc(&req->arena, sizeof(*sr));
    int32_t na = AL_MAX(in->Assignments_count, 0);
    struct group_assignment *as =
        kafka_arena_alloc(&req->arena, sizeof(*as) * (size_t)AL_MAX(na, 1));
    const char *group = cstr(req, in->GroupId);
    struct gctx *ctx = gctx_new(req, ds, 1, resp);
    if (!resp || !sr || !as || !group || !ctx) return -ENOMEM;
    kafka_SyncGroupResponse_init(resp);
    sync_fail(&(struct gjob){.slot = resp}, 0);
    memset(sr, 0, sizeof(*sr));
    sr->group_id = group;
    sr->member_id = cstr(req, in->MemberId);
    sr->group_instance_id = cstr(req, in->GroupInstanceId);
    sr->generation_id = in->GenerationId;
    sr->protocol_type = req->api_version >= 5 ? cstr(req, in->ProtocolType) : NULL;
    sr->protocol_name = req->api_version >= 5 ? cstr(req, in->ProtocolName) : NULL;
    for (int32_t i = 0; i < na; i++) {
        as[i].member_id = cstr(req, in->Assignments[i].MemberId);
        as[i].data = in->Assignments[i].Assignment.ptr;
        as[i].len =
            in->Assignments[i].Assignment.len > 0 ? (size_t)in->Assignments[i].Assignment.len : 0;
        if (!as[i].member_id) return -ENOMEM;
    }
    sr->nassignments = na;
    sr->assignments = as;
    if (!sr->member_id) return -ENOMEM;
    gctx_add(ctx, ds, group, group_owner(ds, group), sync_run, sync_fail, resp, sr);
    return gctx_go(ctx, ds);
}

/* ---- Heartbeat ---- */

struct hb_arg {
    const char *member_id, *instance_id;
    int32_t generation;
};

static void hb_fail(struct gjob *job, int16_t err)
{
    ((kafka_HeartbeatResponse *)job->slot)->ErrorCode = err;
}

static void hb_run(struct gshard *gs, struct gjob *job)
{
    struct hb_arg *a = job->arg;
    kafka_HeartbeatResponse *r = job->slot;
    r->ErrorCode = gs_loading(gs, job)
                       ? 0
                       : group_heartbeat(&gs->c, job->group, a->member_id, a->instance_id,
                                         a->generation, job->now_ms);
    gscope_complete(gs, job);
}

int kafka_handle_heartbeat(kafka_req *req)
{
    const kafka_HeartbeatRequest *in = req->msg;
    data_shard *ds = data_shard_ensure(req->broker->cfg);
    if (!ds) return AL_ECLOSED;
    kafka_HeartbeatResponse *resp = kafka_arena_alloc(&req->arena, sizeof(*resp));
    struct hb_arg *a = kafka_arena_alloc(&req->arena, sizeof(*a));
    const char *group = cstr(req, in->GroupId);
    struct gctx *ctx = gctx_new(req, ds, 1, resp);
    if (!resp || !a || !group || !ctx) return -ENOMEM;
    kafka_HeartbeatResponse_init(resp);
    a->member_id = cstr(req, in->MemberId);
    a->instance_id = cstr(req, in->GroupInstanceId);
    a->generation = in->GenerationId;
    if (!a->member_id) return -ENOMEM;
    gctx_add(ctx, ds, group, group_owner(ds, group), hb_run, hb_fail, resp, a);
    return gctx_go(ctx, ds);
}

/* ---- LeaveGroup ---- */

struct leave_arg {
    struct group_leave_member *members;
    int n;
};

static void leave_fail(struct gjob *job, int16_t err)
{
    kafka_LeaveGroupResponse *r = job->slot;
    r->ErrorCode = err;
}

static void leave_run(struct gshard *gs, struct gjob *job)
{
    struct leave_arg *a = job->arg;
    kafka_LeaveGroupResponse *r = job->slot;
    if (gs_loading(gs, job)) {
        r->ErrorCode = KAFKA_ERR_COORDINATOR_LOAD_IN_PROGRESS;
    } else {
        r->ErrorCode = group_leave(&gs->c, job->group, a->members, a->n, job->now_ms);
        for (int i = 0; i < r->Members_count; i++) r->Members[i].ErrorCode = a->members[i].error;
    }
    gscope_complete(gs, job);
}

int kafka_handle_leave_group(kafka_req *req)
{
    const kafka_LeaveGroupRequest *in = req->msg;
    data_shard *ds = data_shard_ensure(req->broker->cfg);
    if (!ds) return AL_ECLOSED;
    bool batch = req->api_version >= 3;
    int32_t n = batch ? AL_MAX(in->Members_count, 0) : 1;
    kafka_LeaveGroupResponse *resp = kafka_arena_alloc(&req->arena, sizeof(*resp));
    struct leave_arg *a = kafka_arena_alloc(&req->arena, sizeof(*a));
    struct group_leave_member *ms =
        kafka_arena_alloc(&req->arena, sizeof(*ms) * (size_t)AL_MAX(n, 1));
    kafka_LeaveGroupResponse_MemberResponse *rs =
        kafka_arena_alloc(&req->arena, sizeof(*rs) * (size_t)AL_MAX(n, 1));
    const char *group = cstr(req, in->GroupId);
    struct gctx *ctx = gctx_new(req, ds, 1, resp);
    if (!resp || !a || !ms || !rs || !group || !ctx) return -ENOMEM;
    kafka_LeaveGroupResponse_init(resp);
    for (int32_t i = 0; i < n; i++) {
        memset(&ms[i], 0, sizeof(ms[i]));
        if (batch) {
            ms[i].member_id =
                in->Members[i].MemberId.len >= 0 ? cstr(req, in->Members[i].MemberId) : "";
            ms[i].group_instance_id = cstr(req, in->Members[i].GroupInstanceId);
            kafka_LeaveGroupResponse_MemberResponse_init(&rs[i]);
            rs[i].MemberId = in->Members[i].MemberId;
            rs[i].GroupInstanceId = in->Members[i].GroupInstanceId;
        } else {
            ms[i].member_id = cstr(req, in->MemberId);
        }
        if (!ms[i].member_id) return -ENOMEM;
    }
    if (batch) {
        resp->Members = rs;
        resp->Members_count = n;
    }
    a->members = ms;
    a->n = n;
    gctx_add(ctx, ds, group, group_owner(ds, group), leave_run, leave_fail, resp, a);
    return gctx_go(ctx, ds);
}

/* ---- OffsetCommit ---- */

struct commit_arg {
    const char *member_id, *instance_id;
    int32_t generation;
    struct group_offset_commit *parts; /* the partitions of existing topics only */
    int n;
    int32_t *map; /* parts[i] answers flat[map[i]] */
    kafka_OffsetCommitResponse_OffsetCommitResponsePartition *flat;
};

/* Sets the answers of the committed partitions: each its own error, or err for all. The
 * partitions of unknown topics keep UNKNOWN_TOPIC_OR_PARTITION. */
static void commit_set_all(struct commit_arg *a, bool own, int16_t err)
{
    for (int i = 0; i < a->n; i++) a->flat[a->map[i]].ErrorCode = own ? a->parts[i].error : err;
}

static void commit_fail(struct gjob *job, int16_t err)
{
    commit_set_all(job->arg, false, err);
}

static void commit_run(struct gshard *gs, struct gjob *job)
{
    struct commit_arg *a = job->arg;
    if (gs_loading(gs, job)) {
        commit_set_all(a, false, KAFKA_ERR_COORDINATOR_LOAD_IN_PROGRESS);
    } else {
        int16_t err = group_commit_offsets(&gs->c, job->group, a->member_id, a->instance_id,
                                           a->generation, a->parts, a->n, job->now_ms);
        commit_set_all(a, err == 0, err);
    }
    gscope_complete(gs, job);
}

int kafka_handle_offset_commit(kafka_req *req)
{
    const kafka_OffsetCommitRequest *in = req->msg;
    data_shard *ds = data_shard_ensure(req->broker->cfg);
    if (!ds) return AL_ECLOSED;
    int16_t v = req->api_version;
    int32_t nt = AL_MAX(in->Topics_count, 0), np = 0;
    for (int32_t i = 0; i < nt; i++) np += AL_MAX(in->Topics[i].Partitions_count, 0);
    kafka_OffsetCommitResponse *resp = kafka_arena_alloc(&req->arena, sizeof(*resp));
    kafka_OffsetCommitResponse_OffsetCommitResponseTopic *tr =
        kafka_arena_alloc(&req->arena, sizeof(*tr) * (size_t)AL_MAX(nt, 1));
    kafka_OffsetCommitResponse_OffsetCommitResponsePartition *pr =
        kafka_arena_alloc(&req->arena, sizeof(*pr) * (size_t)AL_MAX(np, 1));
    struct commit_arg *a = kafka_arena_alloc(&req->arena, sizeof(*a));
    struct group_offset_commit *parts =
        kafka_arena_alloc(&req->arena, sizeof(*parts) * (size_t)AL_MAX(np, 1));
    int32_t *map = kafka_arena_alloc(&req->arena, sizeof(*map) * (size_t)AL_MAX(np, 1));
    const char *group = cstr(req, in->GroupId);
    struct gctx *ctx = gctx_new(req, ds, 1, resp);
    if (!resp || !tr || !pr || !a || !parts || !map || !group || !ctx) return -ENOMEM;
    kafka_OffsetCommitResponse_init(resp);
    resp->Topics = tr;
    resp->Topics_count = nt;
    int64_t now = io_wall_ms(ds->io);
    int k = 0, nk = 0;
    for (int32_t i = 0; i < nt; i++) {
        const kafka_OffsetCommitRequest_OffsetCommitRequestTopic *q = &in->Topics[i];
        const char *tname = cstr(req, q->Name);
        if (!tname) return -ENOMEM;
        /* Commits for topics that do not exist are refused, as Kafka does. */
        const topic *t = q->Name.len > 0 ? topic_table_find(&ds->topics, q->Name.ptr,
                                                            (size_t)q->Name.len)
                                         : NULL;
        kafka_OffsetCommitResponse_OffsetCommitResponseTopic_init(&tr[i]);
        tr[i].Name = q->Name;
        tr[i].Partitions = &pr[k];
        tr[i].Partitions_count = AL_MAX(q->Partitions_count, 0);
        for (int32_t j = 0; j < tr[i].Partitions_count; j++, k++) {
            const kafka_OffsetCommitRequest_OffsetCommitRequestPartition *qp = &q->Partitions[j];
            kafka_OffsetCommitResponse_OffsetCommitResponsePartition_init(&pr[k]);
            pr[k].PartitionIndex = qp->PartitionIndex;
            if (!t || qp->PartitionIndex < 0 || qp->PartitionIndex >= t->partitions) {
                pr[k].ErrorCode = KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION;
                continue;
            }
            struct group_offset_commit *c = &parts[nk];
            memset(c, 0, sizeof(*c));
            c->topic = tname;
            c->partition = qp->PartitionIndex;
            c->offset = qp->CommittedOffset;
            c->leader_epoch = v >= 6 ? qp->CommittedLeaderEpoch : -1;
            c->metadata = cstr(req, qp->CommittedMetadata);
            c->expire_ts =
                v >= 2 && v <= 4 && in->RetentionTimeMs > 0 ? now + in->RetentionTimeMs : 0;
            map[nk++] = k;
        }
    }
    a->member_id = v >= 1 && in->MemberId.len >= 0 ? cstr(req, in->MemberId) : "";
    a->instance_id = v >= 7 ? cstr(req, in->GroupInstanceId) : NULL;
    a->generation = v >= 1 ? in->GenerationIdOrMemberEpoch : -1;
    a->parts = parts;
    a->n = nk;
    a->map = map;
    a->flat = pr;
    if (!a->member_id) return -ENOMEM;
    gctx_add(ctx, ds, group, group_owner(ds, group), commit_run, commit_fail, resp, a);
    return gctx_go(ctx, ds);
}

/* ---- OffsetFetch (v0-7: one group; v8-9: batched groups, below) ---- */

struct fetch_all {
    kafka_req *req;
    kafka_OffsetFetchResponse *r;
    int32_t cap_t, cap_p;
};

static void ofetch_fail(struct gjob *job, int16_t err)
{
    kafka_OffsetFetchResponse *r = job->slot;
    r->ErrorCode = err;
    for (int32_t t = 0; t < r->Topics_count; t++)
        for (int32_t p = 0; p < r->Topics[t].Partitions_count; p++)
            r->Topics[t].Partitions[p].ErrorCode = err;
}

/* Appends one committed offset to the response (topics in order, grouped). */
static void ofetch_visit(void *arg, const char *topic_name, int32_t partition, int64_t offset,
                         int32_t leader_epoch, const char *metadata)
{
    struct fetch_all *fa = arg;
    kafka_OffsetFetchResponse *r = fa->r;
    kafka_arena *a = &fa->req->arena;
    kafka_OffsetFetchResponse_OffsetFetchResponseTopic *t =
        r->Topics_count ? &r->Topics[r->Topics_count - 1] : NULL;
    if (!t || (size_t)t->Name.len != strlen(topic_name) ||
        memcmp(t->Name.ptr, topic_name, (size_t)t->Name.len)) {
        if (r->Topics_count == fa->cap_t) {
            int32_t nc = fa->cap_t ? fa->cap_t * 2 : 8;
            kafka_OffsetFetchResponse_OffsetFetchResponseTopic *nt =
                kafka_arena_alloc(a, sizeof(*nt) * (size_t)nc);
            if (!nt) return;
            if (r->Topics_count) memcpy(nt, r->Topics, sizeof(*nt) * (size_t)r->Topics_count);
            r->Topics = nt;
            fa->cap_t = nc;
        }
        t = &r->Topics[r->Topics_count++];
        kafka_OffsetFetchResponse_OffsetFetchResponseTopic_init(t);
        t->Name = kstr(a, topic_name);
        t->Partitions_count = 0;
        t->Partitions = NULL;
        fa->cap_p = 0;
    }
    if (t->Partitions_count == fa->cap_p) {
        int32_t nc = fa->cap_p ? fa->cap_p * 2 : 16;
        kafka_OffsetFetchResponse_OffsetFetchResponsePartition *np =
            kafka_arena_alloc(a, sizeof(*np) * (size_t)nc);
        if (!np) return;
        if (t->Partitions_count)
            memcpy(np, t->Partitions, sizeof(*np) * (size_t)t->Partitions_count);
        t->Partitions = np;
        fa->cap_p = nc;
    }
    kafka_OffsetFetchResponse_OffsetFetchResponsePartition *p =
        &t->Partitions[t->Partitions_count++];
    kafka_OffsetFetchResponse_OffsetFetchResponsePartition_init(p);
    p->PartitionIndex = partition;
    p->CommittedOffset = offset;
    if (fa->req->api_version >= 5) p->CommittedLeaderEpoch = leader_epoch;
    p->Metadata = kstr(a, metadata ? metadata : "");
}

static void ofetch_run(struct gshard *gs, struct gjob *job)
{
    kafka_OffsetFetchResponse *r = job->slot;
    kafka_req *req = job->ctx->req;
    if (gs_loading(gs, job)) {
        ofetch_fail(job, KAFKA_ERR_COORDINATOR_LOAD_IN_PROGRESS);
        gscope_complete(gs, job);
        return;
    }
    struct group_offset_fetch *parts = job->arg;
    int16_t err;
    if (!parts) { /* all topics */
        struct fetch_all fa = {req, r, 0, 0};
        r->Topics_count = 0;
        err = group_fetch_all_offsets(&gs->c, job->group, ofetch_visit, &fa);
    } else {
        int32_t n = 0;
        for (int32_t t = 0; t < r->Topics_count; t++) n += r->Topics[t].Partitions_count;
        err = group_fetch_offsets(&gs->c, job->group, parts, n);
        int k = 0;
        for (int32_t t = 0; t < r->Topics_count; t++) {
            for (int32_t p = 0; p < r->Topics[t].Partitions_count; p++, k++) {
                kafka_OffsetFetchResponse_OffsetFetchResponsePartition *o =
                    &r->Topics[t].Partitions[p];
                o->CommittedOffset = parts[k].offset;
                if (req->api_version >= 5) o->CommittedLeaderEpoch = parts[k].leader_epoch;
                o->Metadata = kstr(&req->arena, parts[k].metadata ? parts[k].metadata : "");
                o->ErrorCode = err ? err : parts[k].error;
            }
        }
    }
    if (req->api_version >= 2) r->ErrorCode = err;
    gscope_complete(gs, job);
}

/* Shape of one group's fetch on C: one response topic, its partitions and fetch parts. */
struct ofetch_shape {
    kafka_OffsetFetchResponse_OffsetFetchResponseTopic *tr;
    kafka_OffsetFetchResponse_OffsetFetchResponsePartition *pr;
    struct group_offset_fetch *parts;
    int k; /* partitions filled so far */
};

/*
 * On C: adds requested topic `name` with partitions idx[0..count) to the shape at topic slot
 * `ti` (offsets -1, metadata "", no error: what an unknown group answers). Returns 0 or -ENOMEM.
 * The response keeps `name` (the request buffer outlives the response).
 */
static int ofetch_topic_add(kafka_req *req, struct ofetch_shape *sh, int32_t ti, kafka_str name,
                            int32_t count, const int32_t *idx)
{
    const char *tname = cstr(req, name);
    if (!tname) return -ENOMEM;
    kafka_OffsetFetchResponse_OffsetFetchResponseTopic *t = &sh->tr[ti];
    kafka_OffsetFetchResponse_OffsetFetchResponseTopic_init(t);
    t->Name = name;
    t->Partitions = &sh->pr[sh->k];
    t->Partitions_count = AL_MAX(count, 0);
    for (int32_t j = 0; j < t->Partitions_count; j++, sh->k++) {
        kafka_OffsetFetchResponse_OffsetFetchResponsePartition_init(&sh->pr[sh->k]);
        sh->pr[sh->k].PartitionIndex = idx[j];
        sh->pr[sh->k].CommittedOffset = -1;
        sh->pr[sh->k].Metadata = kafka_str_from("");
        memset(&sh->parts[sh->k], 0, sizeof(sh->parts[sh->k]));
        sh->parts[sh->k].topic = tname;
        sh->parts[sh->k].partition = idx[j];
    }
    return 0;
}

/* On C: allocates a shape for nt topics / np partitions in the request's arena. */
static int ofetch_shape_alloc(kafka_req *req, struct ofetch_shape *sh, int32_t nt, int32_t np)
{
    sh->tr = kafka_arena_alloc(&req->arena, sizeof(*sh->tr) * (size_t)AL_MAX(nt, 1));
    sh->pr = kafka_arena_alloc(&req->arena, sizeof(*sh->pr) * (size_t)AL_MAX(np, 1));
    sh->parts = kafka_arena_alloc(&req->arena, sizeof(*sh->parts) * (size_t)AL_MAX(np, 1));
    sh->k = 0;
    return sh->tr && sh->pr && sh->parts ? 0 : -ENOMEM;
}

/*
 * ---- OffsetFetch v8-9: batched groups (KIP-709) ----
 * Each group becomes one job with its own v7-shaped kafka_OffsetFetchResponse as the slot, run by
 * ofetch_run/ofetch_fail on the group's shard exactly like v0-7; when every job is back,
 * ofetch_gather (on C) copies the pieces into resp->Groups in request order. A group-level error
 * (COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, ...) is answered as Kafka 3.8 does:
 * the group's ErrorCode with no topics. An unknown group is not an error: -1 offsets with NONE
 * (explicit topics) or no topics (all topics).
 * v9's MemberId/MemberEpoch only apply to KIP-848 consumer groups; every group here is a classic
 * group, for which Kafka ignores them, so they are ignored (not validated).
 */
struct ofetch_batch {
    kafka_OffsetFetchResponse *subs; /* one per group, request order */
    int32_t n;
};

/* On C, after the last job: builds resp->Groups from the per-group pieces. */
static void ofetch_gather(struct gctx *ctx)
{
    kafka_OffsetFetchResponse *resp = ctx->resp;
    struct ofetch_batch *b = ctx->finish_arg;
    kafka_arena *a = &ctx->req->arena;
    kafka_OffsetFetchResponse_OffsetFetchResponseGroup *g = resp->Groups;
    for (int32_t i = 0; i < b->n; i++) {
        const kafka_OffsetFetchResponse *s = &b->subs[i];
        g[i].ErrorCode = s->ErrorCode;
        g[i].Topics_count = 0;
        g[i].Topics = NULL;
        if (s->ErrorCode || s->Topics_count <= 0) continue;
        kafka_OffsetFetchResponse_OffsetFetchResponseTopics *ts =
            kafka_arena_alloc(a, sizeof(*ts) * (size_t)s->Topics_count);
        if (!ts) {
            g[i].ErrorCode = KAFKA_ERR_UNKNOWN_SERVER_ERROR;
            continue;
        }
        for (int32_t t = 0; t < s->Topics_count; t++) {
            const kafka_OffsetFetchResponse_OffsetFetchResponseTopic *st = &s->Topics[t];
            kafka_OffsetFetchResponse_OffsetFetchResponseTopics_init(&ts[t]);
            ts[t].Name = st->Name;
            ts[t].Partitions_count = 0;
            ts[t].Partitions = kafka_arena_alloc(
                a, sizeof(*ts[t].Partitions) * (size_t)AL_MAX(st->Partitions_count, 1));
            if (!ts[t].Partitions) {
                g[i].ErrorCode = KAFKA_ERR_UNKNOWN_SERVER_ERROR;
                break;
            }
            for (int32_t p = 0; p < st->Partitions_count; p++) {
                const kafka_OffsetFetchResponse_OffsetFetchResponsePartition *sp =
                    &st->Partitions[p];
                kafka_OffsetFetchResponse_OffsetFetchResponsePartitions *dp =
                    &ts[t].Partitions[p];
                kafka_OffsetFetchResponse_OffsetFetchResponsePartitions_init(dp);
                dp->PartitionIndex = sp->PartitionIndex;
                dp->CommittedOffset = sp->CommittedOffset;
                dp->CommittedLeaderEpoch = sp->CommittedLeaderEpoch;
                dp->Metadata = sp->Metadata;
                dp->ErrorCode = sp->ErrorCode;
            }
            ts[t].Partitions_count = st->Partitions_count;
        }
        if (g[i].ErrorCode) continue;
        g[i].Topics = ts;
        g[i].Topics_count = s->Topics_count;
    }
}

/* v8-9: one job per group of in->Groups, answered together in request order. */
static int ofetch_batched(kafka_req *req, data_shard *ds)
{
    const kafka_OffsetFetchRequest *in = req->msg;
    int32_t n = AL_MAX(in->Groups_count, 0);
    kafka_OffsetFetchResponse *resp = kafka_arena_alloc(&req->arena, sizeof(*resp));
    struct ofetch_batch *b = kafka_arena_alloc(&req->arena, sizeof(*b));
    kafka_OffsetFetchResponse *subs =
        kafka_arena_alloc(&req->arena, sizeof(*subs) * (size_t)AL_MAX(n, 1));
    kafka_OffsetFetchResponse_OffsetFetchResponseGroup *g =
        kafka_arena_alloc(&req->arena, sizeof(*g) * (size_t)AL_MAX(n, 1));
    struct gctx *ctx = gctx_new(req, ds, n, resp);
    if (!resp || !b || !subs || !g || !ctx) return -ENOMEM;
    kafka_OffsetFetchResponse_init(resp);
    resp->Groups = g;
    resp->Groups_count = n;
    b->subs = subs;
    b->n = n;
    ctx->finish = ofetch_gather;
    ctx->finish_arg = b;
    for (int32_t i = 0; i < n; i++) {
        const kafka_OffsetFetchRequest_OffsetFetchRequestGroup *q = &in->Groups[i];
        const char *group = cstr(req, q->GroupId);
        if (!group) return -ENOMEM;
        kafka_OffsetFetchResponse_OffsetFetchResponseGroup_init(&g[i]);
        g[i].GroupId = q->GroupId;
        kafka_OffsetFetchResponse_init(&subs[i]);
        struct group_offset_fetch *parts = NULL;
        if (q->Topics_count >= 0) {
            int32_t np = 0;
            for (int32_t t = 0; t < q->Topics_count; t++)
                np += AL_MAX(q->Topics[t].PartitionIndexes_count, 0);
            struct ofetch_shape sh;
            if (ofetch_shape_alloc(req, &sh, q->Topics_count, np) < 0) return -ENOMEM;
            for (int32_t t = 0; t < q->Topics_count; t++) {
                const kafka_OffsetFetchRequest_OffsetFetchRequestTopics *qt = &q->Topics[t];
                int rc = ofetch_topic_add(req, &sh, t, qt->Name, qt->PartitionIndexes_count,
                                          qt->PartitionIndexes);
                if (rc < 0) return rc;
            }
            subs[i].Topics = sh.tr;
            subs[i].Topics_count = q->Topics_count;
            parts = sh.parts;
        }
        gctx_add(ctx, ds, group, group_owner(ds, group), ofetch_run, ofetch_fail, &subs[i],
                 parts);
    }
    return gctx_go(ctx, ds);
}

/*
 * OffsetFetch handler, on the connection's shard. v0-7 fetch one group (one job on its shard);
 * v8-9 fetch a batch (ofetch_batched). Returns KAFKA_DEFERRED/KAFKA_DONE or a negative error.
 */
int kafka_handle_offset_fetch(kafka_req *req)
{
    const kafka_OffsetFetchRequest *in = req->msg;
    data_shard *ds = data_shard_ensure(req->broker->cfg);
    if (!ds) return AL_ECLOSED;
    if (req->api_version >= 8) return ofetch_batched(req, ds);
    kafka_OffsetFetchResponse *resp = kafka_arena_alloc(&req->arena, sizeof(*resp));
    const char *group = cstr(req, in->GroupId);
    struct gctx *ctx = gctx_new(req, ds, 1, resp);
    if (!resp || !group || !ctx) return -ENOMEM;
    kafka_OffsetFetchResponse_init(resp);
    struct group_offset_fetch *parts = NULL;
    if (in->Topics_count >= 0) {
        int32_t nt = in->Topics_count, np = 0;
        for (int32_t i = 0; i < nt; i++) np += AL_MAX(in->Topics[i].PartitionIndexes_count, 0);
        struct ofetch_shape sh;
        if (ofetch_shape_alloc(req, &sh, nt, np) < 0) return -ENOMEM;
        for (int32_t i = 0; i < nt; i++) {
            const kafka_OffsetFetchRequest_OffsetFetchRequestTopic *q = &in->Topics[i];
            int rc = ofetch_topic_add(req, &sh, i, q->Name, q->PartitionIndexes_count,
                                      q->PartitionIndexes);
            if (rc < 0) return rc;
        }
        resp->Topics = sh.tr;
        resp->Topics_count = nt;
        parts = sh.parts;
    }
    gctx_add(ctx, ds, group, group_owner(ds, group), ofetch_run, ofetch_fail, resp, parts);
    return gctx_go(ctx, ds);
}

/* ---- DescribeGroups ---- */

static void dg_fail(struct gjob *job, int16_t err)
{
    ((kafka_DescribeGroupsResponse_DescribedGroup *)job->slot)->ErrorCode = err;
}

static void dg_cb(void *arg, const struct group_description *d)
{
    struct gjob *job = arg;
    kafka_req *req = job->ctx->req;
    kafka_arena *a = &req->arena;
    kafka_DescribeGroupsResponse_DescribedGroup *g = job->slot;
    g->ErrorCode = d->error;
    g->GroupState = kstr(a, d->state);
    g->ProtocolType = kstr(a, d->protocol_type ? d->protocol_type : "");
    g->ProtocolData = kstr(a, d->protocol ? d->protocol : "");
    g->Members_count = 0;
    if (d->nmembers > 0) {
        kafka_DescribeGroupsResponse_DescribedGroupMember *ms =
            kafka_arena_alloc(a, sizeof(*ms) * (size_t)d->nmembers);
        if (!ms) {
            g->ErrorCode = KAFKA_ERR_UNKNOWN_SERVER_ERROR;
            return;
        }
        for (int i = 0; i < d->nmembers; i++) {
            const struct group_member_desc *m = &d->members[i];
            kafka_DescribeGroupsResponse_DescribedGroupMember_init(&ms[i]);
            ms[i].MemberId = kstr(a, m->member_id);
            if (req->api_version >= 4) ms[i].GroupInstanceId = kstr(a, m->group_instance_id);
            ms[i].ClientId = kstr(a, m->client_id ? m->client_id : "");
            ms[i].ClientHost = kstr(a, m->client_host ? m->client_host : "");
            ms[i].MemberMetadata = kbytes(a, m->metadata, m->metadata ? m->metadata_len : 0);
            ms[i].MemberAssignment =
                kbytes(a, m->assignment, m->assignment ? m->assignment_len : 0);
        }
        g->Members = ms;
        g->Members_count = d->nmembers;
    }
}

static void dg_run(struct gshard *gs, struct gjob *job)
{
    if (gs_loading(gs, job))
        dg_fail(job, KAFKA_ERR_COORDINATOR_LOAD_IN_PROGRESS);
    else
        group_describe(&gs->c, job->group, job->ctx->req->api_version, dg_cb, job);
    gscope_complete(gs, job);
}

int kafka_handle_describe_groups(kafka_req *req)
{
    const kafka_DescribeGroupsRequest *in = req->msg;
    data_shard *ds = data_shard_ensure(req->broker->cfg);
    if (!ds) return AL_ECLOSED;
    int32_t n = AL_MAX(in->Groups_count, 0);
    kafka_DescribeGroupsResponse *resp = kafka_arena_alloc(&req->arena, sizeof(*resp));
    kafka_DescribeGroupsResponse_DescribedGroup *gs =
        kafka_arena_alloc(&req->arena, sizeof(*gs) * (size_t)AL_MAX(n, 1));
    struct gctx *ctx = gctx_new(req, ds, n, resp);
    if (!resp || !gs || !ctx) return -ENOMEM;
    kafka_DescribeGroupsResponse_init(resp);
    resp->Groups = gs;
    resp->Groups_count = n;
    for (int32_t i = 0; i < n; i++) {
        const char *group = cstr(req, in->Groups[i]);
        if (!group) return -ENOMEM;
        kafka_DescribeGroupsResponse_DescribedGroup_init(&gs[i]);
        gs[i].GroupId = in->Groups[i];
        gs[i].GroupState = kafka_str_from("Dead");
        gs[i].ProtocolType = kafka_str_from("");
        gs[i].ProtocolData = kafka_str_from("");
        gs[i].AuthorizedOperations = INT32_MIN;
        gctx_add(ctx, ds, group, group_owner(ds, group), dg_run, dg_fail, &gs[i], NULL);
    }
    return gctx_go(ctx, ds);
}

/* ---- ListGroups (every shard) ---- */

struct lg_slot {
    kafka_ListGroupsResponse_ListedGroup *groups;
    int32_t n, cap;
    int16_t err;
};

struct lg_visit_arg {
    kafka_req *req;
    struct lg_slot *slot;
};

static void lg_visit(void *arg, const char *group_id, const char *protocol_type, const char *state)
{
    struct lg_visit_arg *va = arg;
    struct lg_slot *s = va->slot;
    kafka_arena *a = &va->req->arena;
    if (s->n == s->cap) {
        int32_t nc = s->cap ? s->cap * 2 : 16;
        kafka_ListGroupsResponse_ListedGroup *ng = kafka_arena_alloc(a, sizeof(*ng) * (size_t)nc);
        if (!ng) return;
        if (s->n) memcpy(ng, s->groups, sizeof(*ng) * (size_t)s->n);
        s->groups = ng;
        s->cap = nc;
    }
    kafka_ListGroupsResponse_ListedGroup *g = &s->groups[s->n++];
    kafka_ListGroupsResponse_ListedGroup_init(g);
    g->GroupId = kstr(a, group_id);
    g->ProtocolType = kstr(a, protocol_type ? protocol_type : "");
    if (va->req->api_version >= 4) g->GroupState = kstr(a, state);
}

static void lg_fail(struct gjob *job, int16_t err)
{
    ((struct lg_slot *)job->slot)->err = err;
}

static void lg_run(struct gshard *gs, struct gjob *job)
{
    kafka_req *req = job->ctx->req;
    const kafka_ListGroupsRequest *in = req->msg;
    int ns = req->api_version >= 4 ? AL_MAX(in->StatesFilter_count, 0) : 0;
    const char **states = ns ? kafka_arena_alloc(&req->arena, sizeof(char *) * (size_t)ns) : NULL;
    for (int i = 0; states && i < ns; i++) states[i] = cstr(req, in->StatesFilter[i]);
    struct lg_visit_arg va = {req, job->slot};
    if (group_coordinator_is_loading(&gs->c))
        lg_fail(job, KAFKA_ERR_COORDINATOR_LOAD_IN_PROGRESS);
    else
        group_list(&gs->c, (const char *const *)states, states ? ns : 0, lg_visit, &va);
    gscope_complete(gs, job);
}

/* Gathers the shards' lists into the response (runs when the last job is in). */
static void lg_gather(struct gctx *ctx)
{
    kafka_ListGroupsResponse *r = ctx->resp;
    int32_t total = 0;
    for (int32_t i = 0; i < ctx->njobs; i++) {
        struct lg_slot *s = ctx->jobs[i].slot;
        total += s->n;
        if (s->err) r->ErrorCode = s->err;
    }
    kafka_ListGroupsResponse_ListedGroup *all =
        kafka_arena_alloc(&ctx->req->arena, sizeof(*all) * (size_t)AL_MAX(total, 1));
    if (!all) {
        r->ErrorCode = KAFKA_ERR_UNKNOWN_SERVER_ERROR;
        return;
    }
    int32_t k = 0;
    for (int32_t i = 0; i < ctx->njobs; i++) {
        struct lg_slot *s = ctx->jobs[i].slot;
        if (s->n) memcpy(&all[k], s->groups, sizeof(*all) * (size_t)s->n);
        k += s->n;
    }
    r->Groups = all;
    r->Groups_count = total;
}

int kafka_handle_list_groups(kafka_req *req)
{
    data_shard *ds = data_shard_ensure(req->broker->cfg);
    if (!ds) return AL_ECLOSED;
    kafka_ListGroupsResponse *resp = kafka_arena_alloc(&req->arena, sizeof(*resp));
    struct lg_slot *slots = kafka_arena_alloc(&req->arena, sizeof(*slots) * ds->smp);
    struct gctx *ctx = gctx_new(req, ds, (int32_t)ds->smp, resp);
    if (!resp || !slots || !ctx) return -ENOMEM;
    kafka_ListGroupsResponse_init(resp);
    memset(slots, 0, sizeof(*slots) * ds->smp);
    for (uint32_t s = 0; s < ds->smp; s++)
        gctx_add(ctx, ds, "", s, lg_run, lg_fail, &slots[s], NULL)->any_part = true;
    ctx->finish = lg_gather;
    return gctx_go(ctx, ds);
}

/* ---- DeleteGroups (one job per group) ---- */

static void delg_fail(struct gjob *job, int16_t err)
{
    ((kafka_DeleteGroupsResponse_DeletableGroupResult *)job->slot)->ErrorCode = err;
}

static void delg_run(struct gshard *gs, struct gjob *job)
{
    kafka_DeleteGroupsResponse_DeletableGroupResult *r = job->slot;
    r->ErrorCode = gs_loading(gs, job)
                       ? KAFKA_ERR_COORDINATOR_LOAD_IN_PROGRESS
                       : group_delete(&gs->c, job->group, job->now_ms);
    gscope_complete(gs, job);
}

int kafka_handle_delete_groups(kafka_req *req)
{
    const kafka_DeleteGroupsRequest *in = req->msg;
    data_shard *ds = data_shard_ensure(req->broker->cfg);
    if (!ds) return AL_ECLOSED;
    int32_t n = AL_MAX(in->GroupsNames_count, 0);
    kafka_DeleteGroupsResponse *resp = kafka_arena_alloc(&req->arena, sizeof(*resp));
    kafka_DeleteGroupsResponse_DeletableGroupResult *rs =
        kafka_arena_alloc(&req->arena, sizeof(*rs) * (size_t)AL_MAX(n, 1));
    struct gctx *ctx = gctx_new(req, ds, n, resp);
    if (!resp || !rs || !ctx) return -ENOMEM;
    kafka_DeleteGroupsResponse_init(resp);
    resp->Results = rs;
    resp->Results_count = n;
    for (int32_t i = 0; i < n; i++) {
        const char *group = cstr(req, in->GroupsNames[i]);
        if (!group) return -ENOMEM;
        kafka_DeleteGroupsResponse_DeletableGroupResult_init(&rs[i]);
        rs[i].GroupId = in->GroupsNames[i];
        gctx_add(ctx, ds, group, group_owner(ds, group), delg_run, delg_fail, &rs[i], NULL);
    }
    return gctx_go(ctx, ds);
}

/* ---- OffsetDelete ---- */

struct odel_arg {
    struct group_offset_delete *parts;
    int n;
};

static void odel_fail(struct gjob *job, int16_t err)
{
    ((kafka_OffsetDeleteResponse *)job->slot)->ErrorCode = err;
}

static void odel_run(struct gshard *gs, struct gjob *job)
{
    struct odel_arg *a = job->arg;
    kafka_OffsetDeleteResponse *r = job->slot;
    if (gs_loading(gs, job)) {
        r->ErrorCode = KAFKA_ERR_COORDINATOR_LOAD_IN_PROGRESS;
    } else {
        r->ErrorCode = group_delete_offsets(&gs->c, job->group, a->parts, a->n, job->now_ms);
        int k = 0;
        for (int32_t t = 0; t < r->Topics_count; t++)
            for (int32_t p = 0; p < r->Topics[t].Partitions_count; p++, k++)
                r->Topics[t].Partitions[p].ErrorCode = r->ErrorCode ? 0 : a->parts[k].error;
    }
    gscope_complete(gs, job);
}

int kafka_handle_offset_delete(kafka_req *req)
{
    const kafka_OffsetDeleteRequest *in = req->msg;
    data_shard *ds = data_shard_ensure(req->broker->cfg);
    if (!ds) return AL_ECLOSED;
    int32_t nt = AL_MAX(in->Topics_count, 0), np = 0;
    for (int32_t i = 0; i < nt; i++) np += AL_MAX(in->Topics[i].Partitions_count, 0);
    kafka_OffsetDeleteResponse *resp = kafka_arena_alloc(&req->arena, sizeof(*resp));
    kafka_OffsetDeleteResponse_OffsetDeleteResponseTopic *tr =
        kafka_arena_alloc(&req->arena, sizeof(*tr) * (size_t)AL_MAX(nt, 1));
    kafka_OffsetDeleteResponse_OffsetDeleteResponsePartition *pr =
        kafka_arena_alloc(&req->arena, sizeof(*pr) * (size_t)AL_MAX(np, 1));
    struct group_offset_delete *parts =
        kafka_arena_alloc(&req->arena, sizeof(*parts) * (size_t)AL_MAX(np, 1));
    struct odel_arg *a = kafka_arena_alloc(&req->arena, sizeof(*a));
    const char *group = cstr(req, in->GroupId);
    struct gctx *ctx = gctx_new(req, ds, 1, resp);
    if (!resp || !tr || !pr || !parts || !a || !group || !ctx) return -ENOMEM;
    kafka_OffsetDeleteResponse_init(resp);
    resp->Topics = tr;
    resp->Topics_count = nt;
    int k = 0;
    for (int32_t i = 0; i < nt; i++) {
        const kafka_OffsetDeleteRequest_OffsetDeleteRequestTopic *q = &in->Topics[i];
        const char *tname = cstr(req, q->Name);
        if (!tname) return -ENOMEM;
        kafka_OffsetDeleteResponse_OffsetDeleteResponseTopic_init(&tr[i]);
        tr[i].Name = q->Name;
        tr[i].Partitions = &pr[k];
        tr[i].Partitions_count = AL_MAX(q->Partitions_count, 0);
        for (int32_t j = 0; j < tr[i].Partitions_count; j++, k++) {
            kafka_OffsetDeleteResponse_OffsetDeleteResponsePartition_init(&pr[k]);
            pr[k].PartitionIndex = q->Partitions[j].PartitionIndex;
            parts[k].topic = tname;
            parts[k].partition = q->Partitions[j].PartitionIndex;
            parts[k].error = 0;
        }
    }
    a->parts = parts;
    a->n = k;
    gctx_add(ctx, ds, group, group_owner(ds, group), odel_run, odel_fail, resp, a);
    return gctx_go(ctx, ds);
}
