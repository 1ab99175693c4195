/*
 * cluster_shutdown.c — controlled shutdown of a cluster node (see cluster_shutdown.h): the
 * supervisor-thread side (posts the hand-over, sums the shards' reports, the deadline) and the
 * per-shard side (a timer re-walking the shard's Raft groups every CS_PERIOD_MS).
 */
#include "cluster/cluster_shutdown.h"

#include "base/log.h"
#include "cluster/cluster.h"
#include "cluster/cluster_impl.h"
#include "cluster/data_plane.h"
#include "cluster/partition_raft.h"
#include "raft/raft.h"
#include "raft/replica.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <time.h>

#define CS_PERIOD_MS  50
#define CS_MAX_SHARDS 256
#define CS_WALK_MAX   (1u << 20)

/* Per shard, written by that shard after each walk: leaderships held (bits 0-31) and, of
 * those, the ones with no alive voter to take them (bits 32-62); -1 = not reported yet. Then
 * g_unnamed: groups it handed over whose new leader this node does not name yet (written
 * before g_report, read after it). */
static _Atomic int64_t g_report[CS_MAX_SHARDS];
static _Atomic uint32_t g_unnamed[CS_MAX_SHARDS];
static _Atomic bool g_started;

struct cs_shard {
    reactor_shard *rs;
    reactor_timer timer;
    bool on, hooked;
    bool ctl_handed; /* shard 0: this node led the controller during the shutdown */
};
static _Thread_local struct cs_shard tls_cs;

bool cluster_shutdown_started(void)
{
    return atomic_load_explicit(&g_started, memory_order_acquire);
}

/* The voter of rr's group other than self that may take the lead (alive, not stopping) and
 * has the most of the log (the transfer waits until it has all of it), or -1. The group's
 * shard. */
static int32_t cs_pick(raft_replica *rr, int32_t self)
{
    const raft_config *c = raft_replica_membership(rr);
    int32_t best = -1;
    int64_t best_match = INT64_MIN;
    for (int i = 0; i < c->n_voters && i < RAFT_MAX_NODES; i++) {
        int32_t id = c->voters[i];
        if (id == self || !cluster_node_may_take_lead(id)) continue; /* not one stopping too */
        int64_t m = raft_replica_match(rr, id);
        if (best < 0 || m > best_match) {
            best = id;
            best_match = m;
        }
    }
    return best;
}

/* Whether this node's Metadata names a leader of rr's group other than self: the leadership
 * table for a partition, the cluster view for the controller (what clients are told). */
static bool cs_named_elsewhere(raft_replica *rr, int32_t self, bool controller)
{
    int32_t leader = -1;
    if (controller) {
        cluster_view_brokers(NULL, 0, &leader, NULL);
    } else {
        ldr_entry e;
        if (pr_leader_lookup(raft_replica_group(rr), &e)) leader = e.leader;
    }
    return leader >= 0 && leader != self;
}

/* One group (its shard): no more elections; a leader starts handing over (a transfer
 * already under way answers RAFT_EBUSY: fine) and is marked *handed. Adds to *led / *stuck
 * (no alive target); a group handed over whose new leader this node's Metadata does not name
 * yet adds to *unnamed (the node stays up until it does: it learns the new leader as the
 * other nodes do, from the new leader's first heartbeat and its gossip, so clients asking
 * any node meanwhile are sent to the new leader, not to a node about to go). */
static void cs_group(raft_replica *rr, int32_t self, bool controller, bool *handed,
                     uint32_t *led, uint32_t *stuck, uint32_t *unnamed)
{
    raft_replica_set_campaign(rr, false);
    if (raft_replica_role(rr) != RAFT_LEADER) {
        if (*handed && !cs_named_elsewhere(rr, self, controller)) (*unnamed)++;
        return;
    }
    *handed = true;
    (*led)++;
    int32_t to = cs_pick(rr, self);
    if (to < 0) {
        (*stuck)++;
        return;
    }
    int rc = raft_replica_transfer_leadership(rr, to);
    if (rc && rc != RAFT_EBUSY)
        log_debug("shutdown", "group %" PRIu64 ": leadership transfer to node %d: error %d",
                  raft_replica_group(rr), to, rc);
}

/* The calling shard: walks its partition replicas (shard 0: the controller too), then
 * publishes what it still leads. */
static void cs_walk(struct cs_shard *cs)
{
    uint32_t led = 0, stuck = 0, unnamed = 0;
    int32_t self = pr_self();
    data_shard *ds = data_shard_self();
    if (self >= 0 && ds) {
        partition_manager *pm = &ds->pm;
        uint32_t walked = 0;
        for (uint32_t b = 0; b < pm->nbuckets && walked < CS_WALK_MAX; b++) {
            for (pm_partition *p = pm->buckets[b]; p && walked++ < CS_WALK_MAX; p = p->hnext)
                if (p->rr && !p->removed && !raft_replica_failed(p->rr))
                    cs_group(p->rr, self, false, &p->cs_handed, &led, &stuck, &unnamed);
        }
    }
    cluster *cl = g_cluster;
    if (reactor_shard_index(cs->rs) == 0 && cl && cl->ctl && !cl->stopping &&
        !raft_replica_failed(cl->ctl))
        cs_group(cl->ctl, cl->self, true, &cs->ctl_handed, &led, &stuck, &unnamed);
    unsigned idx = reactor_shard_index(cs->rs);
    if (idx < CS_MAX_SHARDS) {
        atomic_store_explicit(&g_unnamed[idx], unnamed, memory_order_relaxed);
        atomic_store_explicit(&g_report[idx], (int64_t)stuck << 32 | led, memory_order_release);
    }
}

static void cs_timer_fire(reactor_timer *t)
{
    struct cs_shard *cs = t->ctx;
    if (!cs->on) return;
    cs_walk(cs);
    reactor_timer_add(cs->rs, &cs->timer,
                      io_now_ns(reactor_io(cs->rs)) + CS_PERIOD_MS * 1000000ull, NULL);
}

/* Shutdown hook: the walks end with the shard. */
static void cs_shard_stop(reactor_shard *self, void *arg)
{
    struct cs_shard *cs = arg;
    cs->on = false;
    reactor_timer_cancel(self, &cs->timer);
}

/* Cross-shard message (posted by the supervisor): start this shard's walks. */
static void cs_begin_msg(reactor_shard *self, const struct reactor_msg *msg)
{
    struct cs_shard *cs = &tls_cs;
    if (cs->on || reactor_stopping(reactor_of(self))) return;
    cs->rs = self;
    if (!cs->hooked) {
        if (reactor_on_shutdown(self, cs_shard_stop, cs)) {
            log_warn("shutdown", "no shutdown hook slot left: this shard keeps its leaderships");
            unsigned idx = reactor_shard_index(self);
            if (idx < CS_MAX_SHARDS) atomic_store(&g_report[idx], 0);
            return;
        }
        cs->hooked = true;
        reactor_timer_init(&cs->timer, cs_timer_fire, cs);
    }
    cs->on = true;
    if (reactor_shard_index(self) == 0) cluster_announce_stopping(); /* peers pick us no more */
    cs_timer_fire(&cs->timer);
}

static uint64_t cs_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

bool cluster_shutdown_pre_stop(reactor *r, bool first, void *arg)
{
    static uint64_t start_ms, deadline_ms, last_log_ms;
    uint64_t timeout_ms = arg ? *(const uint64_t *)arg : 0;
    unsigned n = AL_MIN(reactor_shard_count(r), (unsigned)CS_MAX_SHARDS);
    uint64_t now = cs_mono_ms();
    if (first) {
        if (timeout_ms == 0) return true;
        start_ms = now;
        deadline_ms = now + timeout_ms;
        last_log_ms = 0;
        for (unsigned i = 0; i < n; i++) {
            atomic_store(&g_unnamed[i], 0);
            atomic_store(&g_report[i], -1);
        }
        atomic_store_explicit(&g_started, true, memory_order_release);
        for (unsigned i = 0; i < n; i++) {
            struct reactor_msg m = {.fn = cs_begin_msg};
            if (reactor_post(r, i, &m)) atomic_store(&g_report[i], 0);
        }
        log_info("shutdown", "controlled shutdown: handing leaderships to other replicas "
                             "(up to %" PRIu64 " ms; a second signal stops at once)",
                 timeout_ms);
        return false;
    }
    uint32_t led = 0, stuck = 0, silent = 0, unnamed = 0;
    bool all = true;
    for (unsigned i = 0; i < n; i++) {
        int64_t v = atomic_load_explicit(&g_report[i], memory_order_acquire);
        if (v < 0) {
            all = false;
            silent++;
            continue;
        }
        led += (uint32_t)(v & 0xffffffff);
        stuck += (uint32_t)(v >> 32);
        unnamed += atomic_load_explicit(&g_unnamed[i], memory_order_relaxed);
    }
    if (all && led == stuck && unnamed == 0) {
        if (stuck)
            log_info("shutdown", "controlled shutdown: %u leaderships have no alive replica to "
                                 "take them; stopping after %" PRIu64 " ms",
                     stuck, now - start_ms);
        else
            log_info("shutdown", "controlled shutdown: leads nothing after %" PRIu64 " ms",
                     now - start_ms);
        return true;
    }
    if (now >= deadline_ms) {
        if (silent)
            log_warn("shutdown", "controlled shutdown: %u of %u shards never reported (busy or "
                                 "blocked) after %" PRIu64 " ms (controlled_shutdown_timeout_ms); "
                                 "the others still lead %u groups: stopping anyway",
                     silent, n, timeout_ms, led);
        else if (led > stuck)
            log_warn("shutdown", "controlled shutdown: still leading %u groups after %" PRIu64
                                 " ms (controlled_shutdown_timeout_ms): stopping anyway",
                     led, timeout_ms);
        else
            log_warn("shutdown", "controlled shutdown: %u groups handed over have no known "
                                 "new leader after %" PRIu64 " ms (controlled_shutdown_timeout_"
                                 "ms; is a majority of their replicas up?): stopping anyway",
                     unnamed, timeout_ms);
        return true;
    }
    if (all && now - last_log_ms >= 1000) {
        last_log_ms = now;
        if (led > stuck) log_info("shutdown", "handing over %u leaderships...", led - stuck);
        else log_info("shutdown", "waiting to learn the new leaders of %u groups...", unnamed);
    }
    return false;
}
