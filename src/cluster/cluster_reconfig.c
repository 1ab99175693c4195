/*
 * cluster_reconfig.c — the per-shard driver of partition moves, maintenance drains and leader
 * balancing (see cluster_reconfig.h).
 */
#include "cluster/cluster_reconfig.h"

#include "base/log.h"
#include "cluster/cluster.h"
#include "cluster/cluster_opsapi.h"
#include "cluster/cluster_shutdown.h"
#include "cluster/data_plane.h"
#include "cluster/partition_raft.h"
#include "raft/raft.h"
#include "reactor/reactor.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define CR_UNASSIGNED_MAX 512 /* tracked unassigned replicas per shard */
#define CR_LEADERLESS_MAX 1024 /* tracked leaderless groups a draining shard holds back */
#define CR_WALK_MAX       (1u << 20)

static _Atomic bool g_balancer = true;

/* An open replica this node is no longer assigned: since when, and since when the group's
 * configuration no longer lists us (0: still does). */
struct cr_unassigned {
    uint64_t group;
    uint64_t since_ns, gone_ns;
    bool seen; /* found in the current walk */
};

/* A group whose draining replica here does not campaign while it has no leader: since when. */
struct cr_leaderless {
    uint64_t group;
    uint64_t since_ns;
    bool seen; /* found in the current walk */
};

struct cr_shard {
    reactor_shard *rs;
    reactor_timer timer; /* every CR_PERIOD_MS */
    uint64_t last_ns, last_balance_ns;
    uint64_t balance_ns; /* CR_BALANCE_MS, or AILURUS_BALANCE_MS (tests) */
    cluster_view_broker *view; /* [CLUSTER_VIEW_MAX] */
    int n_view;
    struct cr_unassigned un[CR_UNASSIGNED_MAX];
    uint32_t n_un;
    struct cr_leaderless ll[CR_LEADERLESS_MAX];
    uint32_t n_ll;
};

static _Thread_local struct cr_shard *tls_cr;

void cluster_reconfig_set_balancer(bool on)
{
    atomic_store(&g_balancer, on);
}

bool cluster_reconfig_balancer(void)
{
    return atomic_load(&g_balancer);
}

static bool conf_has(const raft_config *c, int32_t id)
{
    return raft_config_is_voter(c, id) || raft_config_is_learner(c, id);
}

static _Atomic bool g_ever_kept;

bool cluster_reconfig_keep(const pm_partition *p)
{
    if (!p->rr || raft_replica_failed(p->rr)) return false;
    bool keep = conf_has(raft_replica_membership(p->rr), pr_self());
    if (keep) atomic_store(&g_ever_kept, true);
    return keep;
}

bool cluster_reconfig_kept_any(void)
{
    return atomic_load(&g_ever_kept);
}

static const cluster_view_broker *view_find(const struct cr_shard *cs, int32_t id)
{
    for (int i = 0; i < cs->n_view; i++)
        if (cs->view[i].node_id == id) return &cs->view[i];
    return NULL;
}

/* Whether node id may lead: ACTIVE, connected (this node counts as connected) and not
 * shutting down. */
static bool may_lead(const struct cr_shard *cs, int32_t id)
{
    const cluster_view_broker *b = view_find(cs, id);
    return b && b->membership == CONTROLLER_NODE_ACTIVE && b->alive && !b->stopping;
}

static bool assign_has(const topic_assignment *a, int32_t id)
{
    for (int i = 0; i < a->n; i++)
        if (a->nodes[i] == id) return true;
    return false;
}

/* The first voter of the assignment (order = preference) other than self that may lead and
 * has the leader's whole committed log, or -1. */
static int32_t pick_leader(const struct cr_shard *cs, raft_replica *rr,
                           const topic_assignment *a, int32_t self)
{
    const raft_config *c = raft_replica_membership(rr);
    int64_t commit = raft_replica_commit(rr);
    for (int i = 0; i < a->n; i++) {
        int32_t id = a->nodes[i];
        if (id == self || !raft_config_is_voter(c, id) || !may_lead(cs, id)) continue;
        if (raft_replica_match(rr, id) >= commit) return id;
    }
    return -1;
}

static void log_step(const pm_partition *p, const char *what, int32_t node, int rc)
{
    if (rc == 0)
        log_info("cluster", "partition %s/%" PRId32 ": %s node %" PRId32, p->topic, p->partition,
                 what, node);
    else if (rc != RAFT_EBUSY && rc != RAFT_ENOTLEADER)
        log_warn("cluster", "partition %s/%" PRId32 ": cannot %s node %" PRId32 ": %s",
                 p->topic, p->partition, what, node, raft_strerror(rc));
}

cr_step cluster_reconfig_next_step(const raft_config *c, const topic_assignment *a,
                                   int32_t self, int64_t commit, const cr_peer_fns *f)
{
    cr_step st = {CR_STEP_NONE, -1};
    /* 1. add a missing replica as a learner */
    for (int i = 0; i < a->n; i++) {
        if (conf_has(c, a->nodes[i])) continue;
        return (cr_step){CR_STEP_ADD_LEARNER, a->nodes[i]};
    }
    /* 2. promote a caught-up learner of the assignment; wait for the others */
    bool waiting = false;
    for (int i = 0; i < c->n_learners; i++) {
        int32_t id = c->learners[i];
        if (!assign_has(a, id)) continue;
        if (f->match(f->ctx, id) >= commit) return (cr_step){CR_STEP_PROMOTE, id};
        waiting = true;
    }
    if (waiting) return (cr_step){CR_STEP_WAIT, -1};
    /* 3. remove what the assignment dropped: learners, then voters, ourselves last */
    for (int i = 0; i < c->n_learners; i++)
        if (!assign_has(a, c->learners[i])) return (cr_step){CR_STEP_REMOVE, c->learners[i]};
    bool self_out = false;
    for (int i = 0; i < c->n_voters; i++) {
        int32_t id = c->voters[i];
        if (assign_has(a, id)) continue;
        if (id == self) {
            self_out = true;
            continue;
        }
        return (cr_step){CR_STEP_REMOVE, id};
    }
    if (!self_out) return st;
    /* 4. we leave: hand the leadership to the first caught-up target voter that may lead */
    for (int i = 0; i < a->n; i++) {
        int32_t id = a->nodes[i];
        if (!raft_config_is_voter(c, id) || !f->may_lead(f->ctx, id)) continue;
        if (f->match(f->ctx, id) >= commit) return (cr_step){CR_STEP_TRANSFER, id};
    }
    return (cr_step){CR_STEP_REMOVE, self}; /* nobody to hand over to: the group re-elects */
}

bool cluster_reconfig_may_campaign(const raft_config *c, int32_t self, bool self_draining,
                                   const cr_peer_fns *f)
{
    if (!self_draining) return true;
    for (int i = 0; i < c->n_voters; i++)
        if (c->voters[i] != self && f->may_lead(f->ctx, c->voters[i])) return false;
    return true; /* nobody else can lead: availability beats draining */
}

struct peer_ctx {
    const struct cr_shard *cs;
    raft_replica *rr;
};

static int64_t peer_match(void *ctx, int32_t id)
{
    struct peer_ctx *pc = ctx;
    return raft_replica_match(pc->rr, id);
}

static bool peer_may_lead(void *ctx, int32_t id)
{
    struct peer_ctx *pc = ctx;
    return may_lead(pc->cs, id);
}

/*
 * The leader's step toward the assignment. Returns true while the membership differs from
 * the assignment (a move is in progress: no leadership balancing then).
 */
static bool drive_move(struct cr_shard *cs, pm_partition *p, const topic_assignment *a,
                       int32_t self)
{
    struct peer_ctx pc = {cs, p->rr};
    cr_peer_fns f = {peer_match, peer_may_lead, &pc};
    cr_step st = cluster_reconfig_next_step(raft_replica_membership(p->rr), a, self,
                                            raft_replica_commit(p->rr), &f);
    int rc = 0;
    switch (st.op) {
    case CR_STEP_NONE: return false;
    case CR_STEP_WAIT: return true;
    case CR_STEP_ADD_LEARNER:
        rc = raft_replica_change_membership(p->rr, RAFT_CONF_ADD_LEARNER, st.node);
        log_step(p, "move: add learner", st.node, rc);
        return true;
    case CR_STEP_PROMOTE:
        rc = raft_replica_change_membership(p->rr, RAFT_CONF_PROMOTE, st.node);
        log_step(p, "move: promote", st.node, rc);
        return true;
    case CR_STEP_REMOVE:
        rc = raft_replica_change_membership(p->rr, RAFT_CONF_REMOVE, st.node);
        log_step(p, st.node == self ? "move: remove (self, leader)" : "move: remove", st.node,
                 rc);
        return true;
    case CR_STEP_TRANSFER:
        rc = raft_replica_transfer_leadership(p->rr, st.node);
        log_step(p, "move: hand leadership (leaving) to", st.node, rc);
        return true;
    }
    return true;
}

/* Whether this node is draining (maintenance or decommissioning) in the shard's view, or
 * shutting down (its controlled shutdown hands its leaderships away meanwhile). */
static bool self_draining(const struct cr_shard *cs, int32_t self)
{
    const cluster_view_broker *me = view_find(cs, self);
    return cluster_shutdown_started() ||
           (me && (me->membership == CONTROLLER_NODE_DRAINING ||
                   me->membership == CONTROLLER_NODE_DECOMMISSIONING));
}

/* How long the group has been leaderless while held back here (0 on the first sight; the
 * table full: as if for ever, so the replica campaigns). */
static uint64_t leaderless_for(struct cr_shard *cs, uint64_t group, uint64_t now)
{
    for (uint32_t i = 0; i < cs->n_ll; i++) {
        if (cs->ll[i].group != group) continue;
        cs->ll[i].seen = true;
        return now - cs->ll[i].since_ns;
    }
    if (cs->n_ll >= CR_LEADERLESS_MAX) return UINT64_MAX;
    cs->ll[cs->n_ll++] = (struct cr_leaderless){group, now, true};
    return 0;
}

/* Any replica: allows or forbids its elections (cluster_reconfig_may_campaign; a group
 * leaderless for CR_DRAIN_ELECT_MS lets a draining replica campaign anyway). */
static void drive_campaign(struct cr_shard *cs, pm_partition *p, int32_t self, bool draining,
                           uint64_t now)
{
    if (cluster_shutdown_started()) return; /* the controlled shutdown stopped campaigning */
    struct peer_ctx pc = {cs, p->rr};
    cr_peer_fns f = {peer_match, peer_may_lead, &pc};
    bool may = cluster_reconfig_may_campaign(raft_replica_membership(p->rr), self, draining, &f);
    if (!may && raft_replica_leader(p->rr) < 0 &&
        leaderless_for(cs, raft_replica_group(p->rr), now) >= CR_DRAIN_ELECT_MS * 1000000ull)
        may = true;
    raft_replica_set_campaign(p->rr, may);
}

/* The leader: maintenance drain and preferred-leader balancing. */
static void drive_leadership(struct cr_shard *cs, pm_partition *p, const topic_assignment *a,
                             int32_t self, bool balance)
{
    if (self_draining(cs, self)) {
        int32_t to = pick_leader(cs, p->rr, a, self);
        if (to >= 0) {
            int rc = raft_replica_transfer_leadership(p->rr, to);
            log_step(p, cluster_shutdown_started() ? "shutdown: hand leadership to"
                                                   : "maintenance: hand leadership to",
                     to, rc);
        }
        return;
    }
    if (!balance) return;
    /* preferred = the first voter in assignment order that may lead */
    const raft_config *c = raft_replica_membership(p->rr);
    for (int i = 0; i < a->n; i++) {
        int32_t id = a->nodes[i];
        if (id == self) return; /* we are the preferred leader */
        if (!raft_config_is_voter(c, id) || !may_lead(cs, id)) continue;
        if (raft_replica_match(p->rr, id) < raft_replica_commit(p->rr)) return;
        int rc = raft_replica_transfer_leadership(p->rr, id);
        log_step(p, "balancer: hand leadership to preferred", id, rc);
        return;
    }
}

static struct cr_unassigned *un_get(struct cr_shard *cs, uint64_t group, uint64_t now)
{
    for (uint32_t i = 0; i < cs->n_un; i++)
        if (cs->un[i].group == group) return &cs->un[i];
    if (cs->n_un >= CR_UNASSIGNED_MAX) return NULL;
    struct cr_unassigned *u = &cs->un[cs->n_un++];
    memset(u, 0, sizeof(*u));
    u->group = group;
    u->since_ns = now;
    return u;
}

/*
 * Whether the group's leader (per the leadership table) has let this node go although our
 * log never got the configuration entry that removed us (a removed follower is not sent it):
 * another node leads, its in-sync set lacks us and holds every assigned replica. The assigned
 * replicas then are voters in sync, a quorum of the final configuration, so dropping our copy
 * cannot lose an acknowledged record.
 */
static bool released_by_leader(uint64_t group, const topic_assignment *a, int32_t self)
{
    ldr_entry e;
    if (!pr_leader_lookup(group, &e) || e.leader < 0 || e.leader == self) return false;
    int in = 0;
    for (int k = 0; k < e.n_isr; k++) {
        if (e.isr[k] == self) return false;
        in += assign_has(a, e.isr[k]);
    }
    return in == a->n;
}

/* A replica not assigned here any more (not the leader): drop it once the group let it go. */
static void drive_unassigned(struct cr_shard *cs, pm_partition *p, const topic_assignment *a,
                             uint64_t now, int32_t self)
{
    uint64_t group = raft_replica_group(p->rr);
    struct cr_unassigned *u = un_get(cs, group, now);
    if (!u) return;
    u->seen = true;
    bool member = cluster_reconfig_keep(p);
    if (member && released_by_leader(group, a, self)) member = false;
    if (member) {
        u->gone_ns = 0;
        if (now - u->since_ns < CR_STALE_MS * 1000000ull) return;
        ldr_entry e;
        if (!pr_leader_lookup(group, &e) || e.leader < 0 || e.leader == self) return;
        log_info("cluster", "partition %s/%" PRId32 ": unassigned for %d s while node %" PRId32
                 " leads: dropping the stale replica", p->topic, p->partition,
                 CR_STALE_MS / 1000, e.leader);
    } else {
        if (!u->gone_ns) u->gone_ns = now;
        if (now - u->gone_ns < CR_DROP_GRACE_MS * 1000000ull) return;
    }
    if (pm_drop(p, true) != -EBUSY) u->group = 0; /* slot freed by the compaction below */
}

static void cr_timer_fire(reactor_timer *t)
{
    struct cr_shard *cs = t->ctx;
    uint64_t now = io_now_ns(reactor_io(cs->rs));
    cluster_reconfig_tick(now);
    if (tls_cr == cs) /* still running (the tick does not free it) */
        reactor_timer_add(cs->rs, &cs->timer, now + CR_PERIOD_MS * 1000000ull, NULL);
}

static _Thread_local bool tls_cr_done; /* the shard shut down: no driver any more */

/* Shutdown hook: frees the shard's driver state; later ticks find none and do nothing. */
static void cr_shard_stop(reactor_shard *self, void *arg)
{
    struct cr_shard *cs = arg;
    reactor_timer_cancel(self, &cs->timer);
    if (tls_cr == cs) tls_cr = NULL;
    tls_cr_done = true;
    free(cs->view);
    free(cs);
}

/* The calling shard's driver state, created on first use (NULL off shards, out of memory or
 * after the shard's shutdown). */
static struct cr_shard *cr_get(void)
{
    if (tls_cr) return tls_cr;
    if (tls_cr_done) return NULL;
    reactor_shard *rs = reactor_current();
    if (!rs) return NULL;
    struct cr_shard *cs = calloc(1, sizeof(*cs));
    if (!cs) return NULL;
    cs->view = calloc(CLUSTER_VIEW_MAX, sizeof(*cs->view));
    if (!cs->view || reactor_on_shutdown(rs, cr_shard_stop, cs)) {
        free(cs->view);
        free(cs);
        tls_cr_done = true; /* do not retry every tick */
        return NULL;
    }
    cs->rs = rs;
    const char *bm = getenv("AILURUS_BALANCE_MS"); /* for tests: a faster balancer */
    cs->balance_ns = (bm && atoll(bm) > 0 && atoll(bm) <= 3600000 ? (uint64_t)atoll(bm)
                                                                  : CR_BALANCE_MS) * 1000000ull;
    reactor_timer_init(&cs->timer, cr_timer_fire, cs);
    reactor_timer_add(rs, &cs->timer, io_now_ns(reactor_io(rs)) + CR_PERIOD_MS * 1000000ull,
                      NULL);
    tls_cr = cs;
    return cs;
}

void cluster_reconfig_attach(void)
{
    if (cluster_active()) cr_get();
}

void cluster_reconfig_tick(uint64_t now_ns)
{
    struct cr_shard *cs = cr_get();
    data_shard *ds = data_shard_self();
    if (!cs || !ds || !cluster_active()) return;
    if (cs->last_ns && now_ns - cs->last_ns < CR_PERIOD_MS / 2 * 1000000ull) return;
    if (!cs->last_ns) cs->last_balance_ns = now_ns;
    cs->last_ns = now_ns;
    if (ds->shard == 0) cluster_opsapi_tick(now_ns);
    int32_t self = pr_self(), ctl = -1;
    if (self < 0) return;
    int n = cluster_view_brokers(cs->view, CLUSTER_VIEW_MAX, &ctl, NULL);
    cs->n_view = n < 0 ? 0 : AL_MIN(n, CLUSTER_VIEW_MAX);
    bool balance = cluster_reconfig_balancer() &&
                   now_ns - cs->last_balance_ns >= cs->balance_ns;
    if (balance) cs->last_balance_ns = now_ns;
    for (uint32_t i = 0; i < cs->n_un; i++) cs->un[i].seen = false;
    for (uint32_t i = 0; i < cs->n_ll; i++) cs->ll[i].seen = false;
    bool draining = self_draining(cs, self);
    partition_manager *pm = &ds->pm;
    uint32_t walked = 0;
    for (uint32_t b = 0; b < pm->nbuckets && walked < CR_WALK_MAX; b++) {
        pm_partition *p = pm->buckets[b];
        while (p && walked++ < CR_WALK_MAX) {
            pm_partition *next = p->hnext;
            const topic *t = topic_table_find_id(&ds->topics, p->topic_id);
            if (p->rr && !p->removed && t && p->partition < t->partitions &&
                !raft_replica_failed(p->rr)) {
                topic_assignment a;
                topic_partition_assignment(t, p->partition, self, pm->smp, &a);
                drive_campaign(cs, p, self, draining, now_ns);
                bool leader = raft_replica_role(p->rr) == RAFT_LEADER;
                if (leader) {
                    if (!drive_move(cs, p, &a, self)) drive_leadership(cs, p, &a, self, balance);
                } else if (!assign_has(&a, self)) {
                    drive_unassigned(cs, p, &a, now_ns, self);
                }
            }
            p = next;
        }
    }
    /* forget entries of replicas that are gone */
    uint32_t k = 0;
    for (uint32_t i = 0; i < cs->n_un; i++)
        if (cs->un[i].seen && cs->un[i].group) cs->un[k++] = cs->un[i];
    cs->n_un = k;
    k = 0; /* and of groups that have a leader again (or are gone) */
    for (uint32_t i = 0; i < cs->n_ll; i++)
        if (cs->ll[i].seen) cs->ll[k++] = cs->ll[i];
    cs->n_ll = k;
}
