/*
 * partition_raft.c — partitions as Raft replicas in cluster mode (see partition_raft.h): the
 * per-shard batcher/scratch/tick/group map, opening and closing replicas for the partition
 * manager, message routing from shard 0 to the owner shards, and the leadership reports.
 */
#include "cluster/partition_raft.h"

#include "base/cursor.h"
#include "base/log.h"
#include "cluster/cluster.h"
#include "cluster/data_plane.h"
#include "storage/log_raft.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#define PR_TICK_NS      ((uint64_t)PR_TICK_MS * 1000000u)
/* While a shard's followers are receiving entries, its timer runs every PR_FLUSH_NS to flush
 * the heartbeat batcher, which also holds the append responses a follower sends once its
 * flush completed: waiting for the next 10 ms tick would add up to 10 ms to every acks=all
 * answer. Otherwise (idle: heartbeats only) it runs every PR_TICK_NS. Replicas are ticked
 * every PR_TICK_NS either way. */
#define PR_FLUSH_NS     1000000u
#define PR_BUSY_NS      (100u * 1000000u) /* fast flushing this long after entries arrived */
#define PR_REPORT_NS    ((uint64_t)PR_REPORT_MS * 1000000u)
/* Retention of Raft partitions (pr_housekeep) runs this often on each shard. */
#define PR_HOUSEKEEP_NS (2000000000ull)
/* Compaction of a Raft partition per housekeeping pass: steps of this much input. */
#define PR_COMPACT_STEPS 8
#define PR_COMPACT_STEP_BYTES (1u << 20)
#define PR_MIN_PUSH_NS  (20u * 1000000u) /* rate limit of change-driven gossip */
#define PR_PEERS_MAX    256              /* live peers a shard keeps for the ISR */
#define PR_HB_DEST_MAX  64
#define PR_HB_ITEMS_MAX 1024
#define PR_PUMP_MAX     (1u << 22)       /* bound on map walks */
#define PR_GOSSIP_MARK  0xA1             /* byte 0 of a leadership report (not a Raft version) */

/* The node-wide state: the leadership table (any shard, under table_mu) and shard 0's
 * routing and gossip state. */
struct pr_node {
    pthread_mutex_t table_mu;
    ldr_table table; /* every shard merges into it and reads it, under table_mu */
    uint64_t last_gossip_ns;
    _Atomic bool dirty; /* the table changed since the last gossip */
    /* route: group -> owner shard on this node, rebuilt from the topic table */
    struct pr_route {
        uint64_t group;
        uint32_t shard;
    } *route;
    uint32_t route_cap;
    uint64_t route_version;
    bool route_built;
};

struct pr_shard {
    reactor_shard *rs;
    io *io;
    unsigned shard, smp;
    raft_hb_batcher hb;
    raft_scratch sc;
    raft_rx *rx;
    struct pr_part **buckets; /* group map */
    uint32_t nbuckets, n;
    reactor_timer tick;
    uint64_t last_tick_ns, last_report_ns;
    uint64_t last_housekeep_ns;
    uint64_t busy_until_ns; /* fast flushing until then (entries arrived) */
    bool report_now;
    bool stopping;
    uint8_t *rxbuf; /* mutable copy of a message being delivered */
    size_t rxcap;
    /* peers alive in the node's view (cluster_view_brokers), copied again whenever the view's
     * generation moved (pr_alive_sync) */
    int32_t alive[PR_PEERS_MAX];
    uint32_t n_alive;
    uint64_t alive_gen; /* cluster_view_generation() of the copy */
    bool alive_valid;
};

static _Atomic(rpc *) g_rpc; /* for leadership gossip (pr_node_rpc), shard 0 */
static _Atomic int32_t g_self = -1;
static _Atomic bool g_rx_set;
static struct pr_node g_node = {.table_mu = PTHREAD_MUTEX_INITIALIZER};
static _Thread_local struct pr_shard *tls_sh;

bool pr_enabled(void)
{
    return cluster_active();
}

int32_t pr_self(void)
{
    int32_t self = atomic_load(&g_self);
    if (self >= 0 || !cluster_active()) return self;
    int32_t ctl = -1;
    cluster_view_brokers(NULL, 0, &ctl, &self);
    if (self >= 0) atomic_store(&g_self, self);
    return self;
}

/* ---- the shard's state ---- */

static void pr_tick_fire(reactor_timer *t);
static void pr_housekeep_all(struct pr_shard *sh);

static void pr_shard_free(struct pr_shard *sh)
{
    raft_hb_batcher_free(&sh->hb);
    raft_scratch_free(&sh->sc);
    free(sh->rx);
    free(sh->rxbuf);
    free(sh->buckets);
    if (tls_sh == sh) tls_sh = NULL;
    free(sh);
}

/* Shutdown hook: stop ticking; the memory goes with the last replica (pr_close). */
static void pr_shard_stop(reactor_shard *self, void *arg)
{
    struct pr_shard *sh = arg;
    reactor_timer_cancel(self, &sh->tick);
    sh->stopping = true;
    if (sh->shard == 0) atomic_store(&g_rpc, NULL);
    if (sh->n == 0) pr_shard_free(sh);
}

/* The calling shard's state, created on first use. NULL off shards or out of memory. */
static struct pr_shard *pr_shard_get(void)
{
    if (tls_sh) return tls_sh->stopping ? NULL : tls_sh;
    reactor_shard *rs = reactor_current();
    if (!rs) return NULL;
    struct pr_shard *sh = calloc(1, sizeof(*sh));
    if (!sh) return NULL;
    sh->rs = rs;
    sh->io = reactor_io(rs);
    sh->shard = reactor_shard_index(rs);
    sh->smp = reactor_shard_count(reactor_of(rs));
    sh->nbuckets = 64;
    sh->buckets = calloc(sh->nbuckets, sizeof(*sh->buckets));
    sh->rx = calloc(1, sizeof(*sh->rx));
    if (!sh->buckets || !sh->rx || raft_scratch_init(&sh->sc, 512, 2048) ||
        raft_hb_batcher_init(&sh->hb, pr_self(), PR_HB_DEST_MAX, PR_HB_ITEMS_MAX)) {
        free(sh->buckets);
        free(sh->rx);
        raft_scratch_free(&sh->sc);
        free(sh);
        return NULL;
    }
    if (reactor_on_shutdown(rs, pr_shard_stop, sh)) {
        log_error("raft", "shard %u: no room for a shutdown hook", sh->shard);
        pr_shard_free(sh);
        return NULL;
    }
    reactor_timer_init(&sh->tick, pr_tick_fire, sh);
    reactor_timer_add(rs, &sh->tick, io_now_ns(sh->io) + PR_FLUSH_NS, NULL);
    tls_sh = sh;
    if (!atomic_exchange(&g_rx_set, true)) cluster_set_partition_rx(pr_cluster_rx);
    return sh;
}

static uint32_t pr_bucket(const struct pr_shard *sh, uint64_t group)
{
    uint64_t g = group * 0x9e3779b97f4a7c15ull;
    return (uint32_t)(g >> 32) & (sh->nbuckets - 1);
}

static struct pr_part *pr_map_find(const struct pr_shard *sh, uint64_t group)
{
    for (struct pr_part *pp = sh->buckets[pr_bucket(sh, group)]; pp; pp = pp->hnext)
        if (pp->group == group) return pp;
    return NULL;
}

static int pr_map_add(struct pr_shard *sh, struct pr_part *pp)
{
    if (sh->n + 1 > sh->nbuckets) {
        uint32_t nb = sh->nbuckets * 2;
        struct pr_part **b = calloc(nb, sizeof(*b));
        if (!b) return -ENOMEM;
        struct pr_part **old = sh->buckets;
        uint32_t on = sh->nbuckets;
        sh->buckets = b;
        sh->nbuckets = nb;
        for (uint32_t i = 0; i < on; i++) {
            struct pr_part *x = old[i];
            while (x) {
                struct pr_part *next = x->hnext;
                uint32_t h = pr_bucket(sh, x->group);
                x->hnext = b[h];
                b[h] = x;
                x = next;
            }
        }
        free(old);
    }
    uint32_t h = pr_bucket(sh, pp->group);
    pp->hnext = sh->buckets[h];
    sh->buckets[h] = pp;
    sh->n++;
    return 0;
}

static void pr_map_remove(struct pr_shard *sh, struct pr_part *pp)
{
    struct pr_part **x = &sh->buckets[pr_bucket(sh, pp->group)];
    while (*x && *x != pp) x = &(*x)->hnext;
    AL_ASSERT(*x == pp);
    *x = pp->hnext;
    sh->n--;
}

/* ---- liveness ---- */

/* Refreshes the shard's set of live peers from the node service's view. The generation is read
 * first: a change after it is seen by the next pr_alive_sync. */
static void pr_alive_refresh(struct pr_shard *sh)
{
    cluster_view_broker v[64];
    int32_t ctl = -1, self = -1;
    sh->alive_gen = cluster_view_generation();
    sh->alive_valid = true;
    int n = cluster_view_brokers(v, 64, &ctl, &self);
    sh->n_alive = 0;
    for (int i = 0; i < n && i < 64 && sh->n_alive < PR_PEERS_MAX; i++)
        if (v[i].alive) sh->alive[sh->n_alive++] = v[i].node_id;
}

/*
 * Brings the shard's copy of who is alive up to the view (one atomic load when nothing moved).
 * The ISR that decides acks=all against min.insync.replicas and the ISR that Metadata shows
 * (handle_metadata filters it by cluster_node_alive) must agree: a produce that follows a
 * Metadata answer without a peer must not count that peer in sync.
 */
static void pr_alive_sync(struct pr_shard *sh)
{
    if (!sh->alive_valid || sh->alive_gen != cluster_view_generation()) pr_alive_refresh(sh);
}

/* Whether node is this one or a peer connected to this node (as of the last refresh). */
static bool pr_alive(const struct pr_shard *sh, int32_t node)
{
    if (node == pr_self()) return true;
    for (uint32_t i = 0; i < sh->n_alive; i++)
        if (sh->alive[i] == node) return true;
    return false;
}

/* ---- sending ---- */

static void pr_send(struct pr_shard *sh, int32_t to, const uint8_t *buf, size_t len)
{
    if (to < 0 || sh->stopping) return;
    cluster_raft_send(sh->rs, to, buf, len); /* best effort: Raft resends what is lost */
}

static void pr_send_part(void *ctx, int32_t to, uint64_t group, const uint8_t *buf, size_t len)
{
    pm_partition *p = ctx;
    (void)group;
    if (p->pr) pr_send(p->pr->sh, to, buf, len);
}

static void pr_send_shard(void *ctx, int32_t to, uint64_t group, const uint8_t *buf,
                          size_t len)
{
    (void)group;
    pr_send(ctx, to, buf, len);
}

/* ---- replica callbacks ---- */

static void pr_on_commit(void *ctx, raft_replica *r, int64_t commit)
{
    pm_partition *p = ctx;
    (void)r;
    (void)commit;
    if (p->rr && !p->removed) pm_refresh_hw(p);
}

static void pr_on_role(void *ctx, raft_replica *r, int role, int64_t term, int32_t leader)
{
    pm_partition *p = ctx;
    (void)r;
    if (!p->pr) return;
    /* Only the leader serves Fetch: a follower's appends stay out of the shard's batch cache
     * (most of a follower's CPU at 3 nodes). Reads of a log whose cache lacks entries go on
     * past Raft NOOPs to data (storage_log_read), which the switch of 0c9e2ab lacked. */
    storage_log_set_cache_appends(raft_replica_log(r), role == RAFT_LEADER);
    if (role == RAFT_LEADER) p->pr->producers_stale = true;
    p->pr->sh->report_now = true;
    if (role != RAFT_LEADER && !p->removed) pm_wake_watches(p); /* waiters answer NOT_LEADER */
    log_info("raft", "%s/%" PRId32 ": %s in term %" PRId64 ", leader %" PRId32, p->topic,
             p->partition, raft_role_name(role), term, leader);
}

/* ---- opening and closing ---- */

int pr_open(partition_manager *pm, pm_partition *p, const topic *t, const char *dir,
            const storage_log_config *cfg)
{
    struct pr_shard *sh = pr_shard_get();
    if (!sh) return -ENOMEM;
    struct pr_part *pp = calloc(1, sizeof(*pp));
    if (!pp) return -ENOMEM;
    pp->p = p;
    pp->sh = sh;
    pp->group = cluster_group_id(t->id, p->partition);
    pp->isr_mark = -1;
    pp->min_insync = 1;
    pp->producers_stale = true; /* no table yet: built from the log before the first append */
    if (pr_map_find(sh, pp->group)) {
        log_error("raft", "%s/%" PRId32 ": group %" PRIu64 " is open twice on shard %u", t->name,
                  p->partition, pp->group, sh->shard);
        free(pp);
        return AL_EEXISTS;
    }
    raft_replica_config rc;
    memset(&rc, 0, sizeof(rc));
    rc.dir = dir;
    rc.group = pp->group;
    rc.self = pr_self();
    topic_assignment a;
    topic_partition_assignment(t, p->partition, pr_self(), pm->smp, &a);
    for (int16_t i = 0; i < a.n && i < RAFT_MAX_NODES; i++)
        rc.bootstrap.voters[rc.bootstrap.n_voters++] = a.nodes[i];
    raft_options_default(&rc.raft);
    rc.raft.election_timeout_ms = PR_ELECTION_MS;
    rc.raft.heartbeat_ms = PR_HEARTBEAT_MS;
    /* A follower acknowledges after its flush (a few ms): 8 requests of one 64 KiB produce
     * batch each fill the window long before that, and the entries proposed meanwhile are then
     * read back from the log (a copy) when acks free it. The full window keeps them going out
     * as proposed, from the producer's buffer (bytes stay bounded by max_inflight_bytes). */
    rc.raft.max_inflight_msgs = RAFT_INFLIGHT_MAX;
    /* For tests: a small bound makes "too much uncommitted" (AL_EFULL) reachable. */
    const char *mu = getenv("AILURUS_RAFT_MAX_UNCOMMITTED");
    if (mu && *mu && atoll(mu) >= 0 && atoll(mu) <= UINT32_MAX)
        rc.raft.max_uncommitted = (uint32_t)atoll(mu);
    rc.raft.scratch = &sh->sc;
    sh->hb.self = pr_self();
    rc.log = *cfg;
    rc.hb = &sh->hb;
    rc.cb.send = pr_send_part;
    rc.cb.on_commit = pr_on_commit;
    rc.cb.on_role = pr_on_role;
    rc.cb.ctx = p;
    p->pr = pp;
    raft_replica *rr = NULL;
    int err = raft_replica_open(sh->io, &rc, &rr);
    if (!err) err = pr_map_add(sh, pp);
    if (err) {
        if (rr) raft_replica_close(rr);
        p->pr = NULL;
        free(pp);
        return err;
    }
    p->rr = rr;
    p->log = raft_replica_log(rr);
    storage_log_set_cache_appends(p->log, raft_replica_role(rr) == RAFT_LEADER);
    sh->report_now = true;
    log_info("raft", "%s/%" PRId32 ": replica of group %" PRIu64 " open (%d voters)", t->name,
             p->partition, pp->group, (int)rc.bootstrap.n_voters);
    return 0;
}

void pr_close(pm_partition *p)
{
    struct pr_part *pp = p->pr;
    if (!pp) return;
    struct pr_shard *sh = pp->sh;
    pr_map_remove(sh, pp);
    raft_replica *rr = p->rr;
    p->rr = NULL;
    p->pr = NULL;
    p->log = NULL;
    int err = raft_replica_close(rr);
    if (err)
        log_warn("raft", "%s/%" PRId32 ": closing the replica: %s", p->topic, p->partition,
                 al_strerror(err));
    free(pp);
    if (sh->stopping && sh->n == 0) pr_shard_free(sh);
}

/* ---- queries ---- */

bool pr_is_leader(const pm_partition *p)
{
    return p->rr && raft_replica_role(p->rr) == RAFT_LEADER;
}

/* Fills isr[] (the leader's view) and returns the count. */
static int pr_isr(const pm_partition *p, int32_t *isr, int cap)
{
    if (!pr_is_leader(p)) return 0;
    const struct pr_part *pp = p->pr;
    const raft_config *c = raft_replica_membership(p->rr);
    int n = 0;
    for (int i = 0; i < c->n_voters && n < cap; i++) {
        int32_t node = c->voters[i];
        if (node == pr_self() ||
            (pr_alive(pp->sh, node) && raft_replica_match(p->rr, node) >= pp->isr_mark))
            isr[n++] = node;
    }
    return n;
}

int pr_insync_count(const pm_partition *p)
{
    int32_t isr[RAFT_MAX_NODES];
    if (p->pr) pr_alive_sync(p->pr->sh);
    return pr_isr(p, isr, RAFT_MAX_NODES);
}

bool pr_leader_lookup(uint64_t group, ldr_entry *out)
{
    pthread_mutex_lock(&g_node.table_mu);
    const ldr_entry *e = ldr_get(&g_node.table, group);
    if (e) *out = *e;
    pthread_mutex_unlock(&g_node.table_mu);
    return e != NULL;
}

unsigned pr_owner_shard(const topic *t, int32_t partition, uint32_t smp)
{
    if (pr_enabled()) {
        int32_t s = topic_partition_local_shard(t, partition, pr_self(), smp);
        if (s >= 0) return (unsigned)s;
    }
    return topic_partition_shard(t->id, partition, smp);
}

/* ---- leadership reports ---- */

/* Merges reports (any shard). */
static void pr_merge_n(const ldr_entry *es, uint32_t n)
{
    pthread_mutex_lock(&g_node.table_mu);
    int err = g_node.table.slots ? 0 : ldr_init(&g_node.table);
    for (uint32_t i = 0; i < n && !err; i++) {
        int rc = ldr_merge(&g_node.table, &es[i]);
        if (rc > 0) g_node.dirty = true;
        if (rc < 0) err = rc;
    }
    pthread_mutex_unlock(&g_node.table_mu);
    if (err) log_warn("raft", "leadership table: %s", al_strerror(err));
}

/* The shard's replicas' (leader, term, isr) into the node's table; advances each ISR mark. */
static void pr_report(struct pr_shard *sh)
{
    ldr_entry batch[64];
    uint32_t n = 0;
    for (uint32_t b = 0; b < sh->nbuckets; b++) {
        for (struct pr_part *pp = sh->buckets[b]; pp; pp = pp->hnext) {
            pm_partition *p = pp->p;
            if (!p->rr || p->removed) continue;
            ldr_entry *e = &batch[n++];
            memset(e, 0, sizeof(*e));
            e->group = pp->group;
            e->leader = raft_replica_leader(p->rr);
            e->term = raft_replica_term(p->rr);
            e->reporter = pr_self();
            if (e->leader == pr_self()) e->n_isr = (uint8_t)pr_isr(p, e->isr, LDR_ISR_MAX);
            pp->isr_mark = raft_replica_commit(p->rr);
            if (n == 64) {
                pr_merge_n(batch, n);
                n = 0;
            }
        }
    }
    if (n) pr_merge_n(batch, n);
}

static bool pr_keep_led(void *ctx, const ldr_entry *e)
{
    (void)ctx;
    return e->leader == pr_self() && e->reporter == pr_self();
}

/*
 * Without an endpoint of its own (pr_node_rpc), a report travels on the partition channel the
 * node service gives us: as an RPC_T_RAFT_HB message (cluster_raft_send picks the type from
 * byte 1 = RAFT_MSG_HB_BATCH) whose byte 0 is PR_GOSSIP_MARK instead of a Raft message
 * version, so pr_deliver tells the two apart; then the ldr_encode bytes.
 */
static void pr_gossip_partition_channel(struct pr_shard *sh, const uint8_t *msg, size_t len)
{
    cluster_view_broker v[64];
    int32_t ctl = -1, self = -1;
    int n = cluster_view_brokers(v, 64, &ctl, &self);
    uint8_t *buf = malloc(len + 2);
    if (!buf) return;
    buf[0] = PR_GOSSIP_MARK;
    buf[1] = RAFT_MSG_HB_BATCH;
    memcpy(buf + 2, msg, len);
    for (int i = 0; i < n && i < 64; i++)
        if (v[i].node_id != self && v[i].alive)
            cluster_raft_send(sh->rs, v[i].node_id, buf, len + 2); /* best effort */
    free(buf);
}

/* Shard 0: gossip the entries this node leads to every peer. */
static void pr_node_gossip(struct pr_shard *sh, uint64_t now)
{
    struct pr_node *nd = &g_node;
    nd->last_gossip_ns = now;
    rpc *r = atomic_load(&g_rpc);
    uint8_t *buf = NULL;
    size_t len = 0;
    pthread_mutex_lock(&nd->table_mu);
    nd->dirty = false;
    if (!nd->table.slots ||
        ldr_encode(&nd->table, pr_self(), pr_keep_led, NULL, &buf, &len) < 0)
        buf = NULL;
    pthread_mutex_unlock(&nd->table_mu);
    if (buf && r) {
        struct rpc_peer_stats ps;
        for (uint32_t i = 0; i < 4096 && rpc_peer_stats_at(r, i, &ps) == 0; i++)
            if (ps.node >= 0 && ps.node != pr_self())
                rpc_send(r, ps.node, PR_RPC_LEADERS, buf, len); /* dropped when full */
    } else if (buf) {
        pr_gossip_partition_channel(sh, buf, len);
    }
    free(buf);
}

/* Next timer run: in PR_FLUSH_NS while busy, else at the next tick. */
static void pr_tick_arm(struct pr_shard *sh, uint64_t now)
{
    uint64_t next = sh->last_tick_ns + PR_TICK_NS;
    if (now < sh->busy_until_ns) next = AL_MIN(next, now + PR_FLUSH_NS);
    reactor_timer_add(sh->rs, &sh->tick, AL_MAX(next, now + PR_FLUSH_NS), NULL);
}

static void pr_tick_fire(reactor_timer *t)
{
    struct pr_shard *sh = t->ctx;
    if (sh->stopping) return;
    uint64_t now = io_now_ns(sh->io);
    if (now - sh->last_tick_ns < PR_TICK_NS) {
        raft_replica_hb_flush(&sh->hb, pr_send_shard, sh);
        pr_tick_arm(sh, now);
        return;
    }
    sh->last_tick_ns = now;
    uint32_t walked = 0;
    for (uint32_t b = 0; b < sh->nbuckets && walked < PR_PUMP_MAX; b++) {
        for (struct pr_part *pp = sh->buckets[b]; pp && walked < PR_PUMP_MAX; pp = pp->hnext) {
            walked++;
            if (pp->p->rr && !pp->p->removed) raft_replica_tick(pp->p->rr);
        }
    }
    raft_replica_hb_flush(&sh->hb, pr_send_shard, sh);
    if (sh->report_now || now - sh->last_report_ns >= PR_REPORT_NS) {
        pr_alive_sync(sh);
        sh->report_now = false;
        sh->last_report_ns = now;
        pr_report(sh);
    }
    if (now - sh->last_housekeep_ns >= PR_HOUSEKEEP_NS) {
        sh->last_housekeep_ns = now;
        pr_housekeep_all(sh);
    }
    if (sh->shard == 0 &&
        ((g_node.dirty && now - g_node.last_gossip_ns >= PR_MIN_PUSH_NS) ||
         now - g_node.last_gossip_ns >= PR_REPORT_NS))
        pr_node_gossip(sh, now);
    pr_tick_arm(sh, now);
}

/*
 * Retention and compaction of one Raft partition: storage housekeeping that moves no start
 * itself, bounded compaction steps below the commit index (compact policy), then a
 * prefix truncation of the replica to where retention.ms / retention.bytes (the topic's
 * current settings) would start the log, but never beyond the commit index (each replica
 * applies its own retention, Redpanda's rule: an uncommitted entry is never cut). Followers
 * that fall behind the new start catch up by snapshot.
 */
static void pr_housekeep(pm_partition *p, int64_t now_ms)
{
    int64_t want = -1;
    int rc = storage_log_housekeep_raft(p->log, now_ms, &p->log_cfg, &want);
    if (rc < 0) {
        log_warn("raft", "%s/%" PRId32 ": housekeeping: %s", p->topic, p->partition,
                 al_strerror(rc));
        return;
    }
    /* compact policy: each replica compacts its own closed segments below its commit index,
     * keeping every batch's offsets and term (storage_log_compact_raft), a bounded amount of
     * input per pass (the shard blocks on these synchronous reads and writes) */
    for (int step = 0; step < PR_COMPACT_STEPS; step++) {
        rc = storage_log_compact_raft(p->log, now_ms, &p->log_cfg, raft_replica_commit(p->rr),
                                      PR_COMPACT_STEP_BYTES);
        if (rc <= 0) {
            if (rc < 0)
                log_warn("raft", "%s/%" PRId32 ": compaction: %s (retried at the next pass)",
                         p->topic, p->partition, al_strerror(rc));
            break;
        }
    }
    int64_t start = storage_log_start_offset(p->log);
    want = AL_MIN(want, raft_replica_commit(p->rr) + 1);
    if (want <= start) return;
    if (want <= storage_log_last_offset(p->log)) { /* segment bases are batch bases */
        int64_t base = storage_log_batch_base(p->log, want);
        if (base < 0) return;
        want = base;
    }
    if (want <= start) return;
    rc = raft_replica_prefix_truncate(p->rr, want, NULL, 0);
    if (rc == 0)
        log_info("raft", "%s/%" PRId32 ": retention moves the log start %" PRId64 " -> %" PRId64,
                 p->topic, p->partition, start, want);
    else if (rc != RAFT_EBUSY && rc != AL_ERANGE)
        log_warn("raft", "%s/%" PRId32 ": retention to %" PRId64 ": %s", p->topic,
                 p->partition, want, raft_strerror(rc));
}

static void pr_housekeep_all(struct pr_shard *sh)
{
    int64_t now_ms = io_wall_ms(sh->io);
    for (uint32_t b = 0; b < sh->nbuckets; b++)
        for (struct pr_part *pp = sh->buckets[b]; pp; pp = pp->hnext) {
            pm_partition *p = pp->p;
            if (p->rr && !p->removed && !p->busy && !raft_replica_failed(p->rr))
                pr_housekeep(p, now_ms);
        }
}

/* ---- DeleteRecords ---- */

struct pr_trim {
    raft_replicate_req q;
    pm_partition *p;
    pr_trim_cb cb;
    void *ctx;
    uint8_t batch[128];
};

static void pr_trim_done(raft_replicate_req *q)
{
    struct pr_trim *t = (struct pr_trim *)q;
    /* committed: the leader's replica cut its prefix before telling its waiters */
    int64_t low = q->res == 0 ? pm_kafka_start(t->p) : -1; /* in Kafka offsets */
    t->cb(t->ctx, q->res, low);
    free(t);
}

int pr_delete_records(pm_partition *p, int64_t offset, pr_trim_cb cb, void *ctx)
{
    if (!p->rr || p->removed) return RAFT_ENOTLEADER;
    struct pr_trim *t = calloc(1, sizeof(*t));
    if (!t) return -ENOMEM;
    int len = raft_batch_build_trim(t->batch, sizeof(t->batch), offset);
    if (len < 0) {
        free(t);
        return len;
    }
    t->p = p;
    t->cb = cb;
    t->ctx = ctx;
    t->q.wait = RAFT_WAIT_COMMIT;
    t->q.cb = pr_trim_done;
    t->q.ctx = t;
    int rc = raft_replicate(p->rr, t->batch, (size_t)len, &t->q);
    if (rc < 0) free(t);
    return rc < 0 ? rc : 0;
}

/* ---- receiving ---- */

static raft_replica *pr_lookup(void *ctx, uint64_t group)
{
    struct pr_shard *sh = ctx;
    struct pr_part *pp = group ? pr_map_find(sh, group) : NULL;
    return pp && pp->p->rr && !pp->p->removed ? pp->p->rr : NULL;
}

/* Delivers buf on this shard (through a mutable copy). */
static int pr_deliver_here(struct pr_shard *sh, const uint8_t *buf, size_t len)
{
    if (len > sh->rxcap) {
        uint8_t *n = realloc(sh->rxbuf, len);
        if (!n) return -ENOMEM;
        sh->rxbuf = n;
        sh->rxcap = len;
    }
    memcpy(sh->rxbuf, buf, len);
    if (len > 1 && buf[1] == RAFT_MSG_APPEND_REQ) { /* entries (heartbeats come batched) */
        uint64_t now = io_now_ns(sh->io);
        bool was_busy = now < sh->busy_until_ns;
        sh->busy_until_ns = now + PR_BUSY_NS;
        if (!was_busy) reactor_timer_add(sh->rs, &sh->tick, now + PR_FLUSH_NS, NULL);
    }
    int rc = raft_replica_deliver(sh->rx, sh->rxbuf, len, pr_lookup, sh);
    /* The batcher holds the append responses this delivery produced (the acks that move the
     * leader's commit): send them now rather than at the next tick. */
    raft_replica_hb_flush(&sh->hb, pr_send_shard, sh);
    return rc;
}

/* A message copy travelling to another shard. Copies in flight stay on a process-wide list
 * until delivered: one still in a ring when the reactor stops is dropped with the ring, and
 * the list keeps it reachable (not a leak) until the process exits. */
struct pr_fwd {
    struct pr_fwd *prev, *next;
    size_t len;
    uint8_t data[];
};
static pthread_mutex_t g_fwd_mu = PTHREAD_MUTEX_INITIALIZER;
static struct pr_fwd *g_fwd;

static void pr_fwd_unlink(struct pr_fwd *f)
{
    pthread_mutex_lock(&g_fwd_mu);
    if (f->prev) f->prev->next = f->next;
    else g_fwd = f->next;
    if (f->next) f->next->prev = f->prev;
    pthread_mutex_unlock(&g_fwd_mu);
}

static void pr_fwd_msg(reactor_shard *self, const struct reactor_msg *msg)
{
    (void)self;
    struct pr_fwd *f = msg->arg;
    pr_fwd_unlink(f);
    struct pr_shard *sh = pr_shard_get();
    if (sh) pr_deliver_here(sh, f->data, f->len);
    free(f);
}

static void pr_forward(data_shard *ds, unsigned to, const uint8_t *buf, size_t len)
{
    struct pr_fwd *f = malloc(sizeof(*f) + len);
    if (!f) return;
    f->len = len;
    memcpy(f->data, buf, len);
    f->prev = NULL;
    pthread_mutex_lock(&g_fwd_mu);
    f->next = g_fwd;
    if (g_fwd) g_fwd->prev = f;
    g_fwd = f;
    pthread_mutex_unlock(&g_fwd_mu);
    if (data_send(ds, to, pr_fwd_msg, f, 0, 0)) {
        pr_fwd_unlink(f);
        free(f);
    }
}

static void pr_merge_cb(void *ctx, int32_t from, const ldr_entry *e);

static uint32_t pr_route_hash(uint64_t g, uint32_t cap)
{
    return (uint32_t)((g * 0x9e3779b97f4a7c15ull) >> 32) & (cap - 1);
}

/* Shard 0: rebuilds the group -> shard map from the topic table. */
static void pr_route_build(data_shard *ds)
{
    struct pr_node *nd = &g_node;
    uint64_t total = 0;
    for (int32_t i = 0; i < ds->topics.n; i++)
        total += (uint64_t)topic_table_at(&ds->topics, i)->partitions;
    uint32_t cap = 64;
    while (cap < total * 2 && cap < (1u << 26)) cap *= 2;
    struct pr_route *r = calloc(cap, sizeof(*r));
    if (!r) return;
    for (int32_t i = 0; i < ds->topics.n; i++) {
        const topic *t = topic_table_at(&ds->topics, i);
        for (int32_t p = 0; p < t->partitions; p++) {
            int32_t s = topic_partition_local_shard(t, p, pr_self(), ds->smp);
            if (s < 0) continue;
            uint64_t g = cluster_group_id(t->id, p);
            uint32_t h = pr_route_hash(g, cap);
            for (uint32_t k = 0; k < cap && r[h].group && r[h].group != g; k++)
                h = (h + 1) & (cap - 1);
            r[h] = (struct pr_route){g, (uint32_t)s};
        }
    }
    free(nd->route);
    nd->route = r;
    nd->route_cap = cap;
    nd->route_version = ds->topics.version;
    nd->route_built = true;
}

static int pr_route_find(uint64_t g)
{
    struct pr_node *nd = &g_node;
    if (!nd->route) return -1;
    uint32_t cap = nd->route_cap;
    uint32_t h = pr_route_hash(g, cap);
    for (uint32_t k = 0; k < cap && nd->route[h].group; k++, h = (h + 1) & (cap - 1))
        if (nd->route[h].group == g) return (int)nd->route[h].shard;
    return -1;
}

int pr_deliver(uint16_t rpc_type, const uint8_t *buf, size_t len)
{
    struct pr_shard *sh = pr_shard_get();
    data_shard *ds = data_shard_self();
    if (!sh || !ds || sh->shard != 0) return AL_ECLOSED;
    if (len < 11) return AL_ETRUNCATED;
    if (rpc_type == RPC_T_RAFT_HB && buf[0] == PR_GOSSIP_MARK) {
        int rc = ldr_decode(buf + 2, len - 2, pr_merge_cb, NULL);
        if (rc < 0) log_warn("raft", "bad leadership report: %s", al_strerror(rc));
        return rc < 0 ? rc : 0;
    }
    if (rpc_type == RPC_T_RAFT_HB) {
        for (unsigned s = 1; s < sh->smp; s++) pr_forward(ds, s, buf, len);
        int rc = pr_deliver_here(sh, buf, len);
        return rc == AL_ENOTFOUND ? 0 : rc;
    }
    uint64_t group = al_be64(buf + 3);
    if (group == 0) return AL_ENOTFOUND; /* the controller's: not ours */
    if (sh->smp == 1) return pr_deliver_here(sh, buf, len);
    if (!g_node.route_built || g_node.route_version != ds->topics.version) pr_route_build(ds);
    int s = pr_route_find(group);
    if (s < 0) {
        pr_route_build(ds); /* a table installed with an equal version: look once more */
        s = pr_route_find(group);
    }
    if (s < 0) return AL_ENOTFOUND;
    if (s == 0) return pr_deliver_here(sh, buf, len);
    pr_forward(ds, (unsigned)s, buf, len);
    return 0;
}

void pr_cluster_rx(reactor_shard *shard0, uint16_t rpc_type, uint64_t group, const uint8_t *buf,
                   size_t len)
{
    (void)shard0;
    (void)group;
    pr_deliver(rpc_type, buf, len);
}

static void pr_merge_cb(void *ctx, int32_t from, const ldr_entry *e)
{
    (void)ctx;
    (void)from;
    pr_merge_n(e, 1);
}

static void pr_rpc_leaders(rpc *r, void *ctx, const rpc_msg *m)
{
    (void)r;
    (void)ctx;
    int rc = ldr_decode(m->payload, m->len, pr_merge_cb, NULL);
    if (rc < 0)
        log_warn("raft", "bad leadership report from node %" PRId32 ": %s", m->from,
                 al_strerror(rc));
}

/* ---- node ---- */

void pr_node_rpc(rpc *r)
{
    rpc *old = atomic_exchange(&g_rpc, r);
    if (old && old != r) rpc_handler_set(old, PR_RPC_LEADERS, NULL, NULL);
    if (r) rpc_handler_set(r, PR_RPC_LEADERS, pr_rpc_leaders, NULL);
}
