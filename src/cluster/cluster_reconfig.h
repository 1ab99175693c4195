/*
 * cluster_reconfig.h — the execution side of partition moves, maintenance mode and leader
 * balancing in cluster mode (issue 7). The controller only records WHERE a partition's
 * replicas should be (its assignment, changed by MOVE_PARTITION) and each broker's membership
 * (ACTIVE, DRAINING = maintenance, DECOMMISSIONING); every shard of every node runs this driver
 * over the partition replicas it hosts, every CR_PERIOD_MS (its own timer, started by the
 * shard's first pm_reconcile in cluster mode):
 *
 *   - Moves: the partition's Raft leader walks the group's membership toward the assignment
 *     one single-server change at a time: ADD_LEARNER a missing replica, PROMOTE a learner once
 *     its match offset reached the commit index, REMOVE a replica the assignment dropped (when
 *     that is the leader itself it first transfers leadership to a caught-up target voter).
 *     A new replica opens with an empty log (pm_reconcile) and catches up from the leader.
 *     A replica that is no longer assigned here stays open (pm_reconcile asks
 *     cluster_reconfig_keep) until its group's configuration no longer lists this node for
 *     CR_DROP_GRACE_MS (or, if it never heard of its removal, until it has been unassigned for
 *     CR_STALE_MS while another node leads the group); then it is closed and its directory is
 *     deleted. Everything is derived from the controller state and the Raft configs in the
 *     logs, so a restart mid-move simply resumes.
 *   - Maintenance / decommission: a leader on a DRAINING or DECOMMISSIONING node transfers the
 *     leadership to the first voter of the assignment that is ACTIVE and connected, and the
 *     node's replicas do not campaign (raft_replica_set_campaign, set every CR_PERIOD_MS by
 *     cluster_reconfig_may_campaign) while another voter may lead: it wins no election. If
 *     the group stays leaderless for CR_DRAIN_ELECT_MS anyway (the active voters cannot win,
 *     e.g. their logs are behind ours), it campaigns: availability beats draining, and the
 *     hand-over above moves the leadership on once an active voter has caught up.
 *   - Shutting down: "may lead" (above and below) also excludes a node whose pings say it is
 *     shutting down (cluster_view_broker.stopping); a node shutting down counts itself as
 *     draining and leaves its campaign flags to the controlled shutdown (cluster_shutdown.h).
 *   - Leader balancing: every CR_BALANCE_MS (AILURUS_BALANCE_MS in the environment, for
 *     tests) a leader whose partition's preferred leader (the
 *     first ACTIVE, connected voter in assignment order) is another node transfers the
 *     leadership there. Placement spreads preferred leaders evenly over nodes and shards, so
 *     this evens out leaders after restarts and failovers (Kafka's preferred-leader
 *     election; Redpanda's leader balancer has the same effect). cluster_reconfig_set_balancer
 *     turns it off.
 *
 * Threading: cluster_reconfig_attach/_tick run on every shard;
 * cluster_reconfig_keep on the partition's shard; the setters from any thread.
 */
#ifndef AL_CLUSTER_CLUSTER_RECONFIG_H
#define AL_CLUSTER_CLUSTER_RECONFIG_H

#include "base/base.h"
#include "cluster/partition_manager.h"
#include "raft/raft.h"

#define CR_PERIOD_MS     200
#define CR_DROP_GRACE_MS 2000
#define CR_STALE_MS      60000
#define CR_BALANCE_MS    10000
#define CR_DRAIN_ELECT_MS 5000 /* leaderless this long: a draining replica campaigns anyway */

/* The calling shard (pm_reconcile calls it): in cluster mode starts the shard's driver
 * timer (every CR_PERIOD_MS, stopped by a shutdown hook) the first time. */
void cluster_reconfig_attach(void);

/* The calling shard, cluster mode, now_ns = io_now_ns: runs the driver when CR_PERIOD_MS has
 * passed since its last run (cheap otherwise); the driver timer calls it. On shard 0 it also
 * runs the controller-side operations (cluster_opsapi_tick). */
void cluster_reconfig_tick(uint64_t now_ns);

/* The partition's shard: whether p (a replica no longer assigned to this node) must stay
 * open because its Raft group's configuration still lists this node. */
bool cluster_reconfig_keep(const pm_partition *p);

/* ---- the pure step of a move (any thread; unit-tested) ---- */

enum cr_step_op {
    CR_STEP_NONE = 0,        /* membership == assignment: nothing to do */
    CR_STEP_WAIT = 1,        /* a learner of the assignment is still catching up */
    CR_STEP_ADD_LEARNER = 2, /* node: add as a learner */
    CR_STEP_PROMOTE = 3,     /* node: learner -> voter */
    CR_STEP_REMOVE = 4,      /* node: remove (may be self: no voter can take over) */
    CR_STEP_TRANSFER = 5,    /* node: hand the leadership over (self leaves the group) */
};

typedef struct cr_step {
    int op; /* enum cr_step_op */
    int32_t node;
} cr_step;

/* What the step needs to know about the group's peers (the leader's view). */
typedef struct cr_peer_fns {
    int64_t (*match)(void *ctx, int32_t node); /* last offset known replicated on node */
    bool (*may_lead)(void *ctx, int32_t node); /* ACTIVE and connected */
    void *ctx;
} cr_peer_fns;

/*
 * The next single-server change the leader (self) of a group with membership c must make to
 * reach assignment a, commit = its commit index: add the first missing node as a learner;
 * promote a learner of a whose match reached commit (WAIT while one lags); remove learners,
 * then voters, a dropped; finally, if self was dropped, TRANSFER to the first voter of a (in
 * order) that may lead and is caught up, else REMOVE self. NONE when c's members == a's.
 */
cr_step cluster_reconfig_next_step(const raft_config *c, const topic_assignment *a,
                                   int32_t self, int64_t commit, const cr_peer_fns *f);

/*
 * Whether self may start elections in a group whose configuration is c (maintenance mode,
 * raft_replica_set_campaign): yes, unless self is draining (maintenance or decommissioning)
 * and another voter of c may lead (f->may_lead: ACTIVE and alive). When no other voter may
 * lead (all replicas draining, or the active ones down), availability beats draining: self
 * campaigns, and keeps the leadership until an ACTIVE voter can take it.
 */
bool cluster_reconfig_may_campaign(const raft_config *c, int32_t self, bool self_draining,
                                   const cr_peer_fns *f);

/* Any thread: whether cluster_reconfig_keep ever kept a replica open in this process (the
 * start-up sweep of moved-away copies, pm_sweep_unassigned, then stays off). */
bool cluster_reconfig_kept_any(void);

/* Any thread: enables / disables the periodic leader balancer (on by default). */
void cluster_reconfig_set_balancer(bool on);
bool cluster_reconfig_balancer(void);

#endif
