/*
 * controller_place.h — replica placement and the controller's operation plans, computed on the
 * proposer from a controller_state (src/cluster/controller.h) BEFORE proposing, so apply stays
 * deterministic: where a new topic's (or new partitions') replicas go, which moves even out
 * replicas and preferred leaders across nodes (`cluster partitions balance`), which replicas
 * must leave a decommissioning node, and which leaderships a node entering maintenance must
 * hand over.
 *
 * Load model: every stored assignment counts one replica on each of its nodes (and on that
 * node's shard), and one preferred leadership on its first node. Only ACTIVE nodes receive new
 * replicas or leaderships (DRAINING, DECOMMISSIONING and REMOVED nodes never do). Ties are
 * broken by a rotation over node order, so the results depend only on the state and the
 * arguments.
 *
 * All functions are pure (no I/O), run on the thread that owns the state, and allocate only
 * their outputs.
 */
#ifndef AL_CLUSTER_CONTROLLER_PLACE_H
#define AL_CLUSTER_CONTROLLER_PLACE_H

#include "cluster/controller.h"

/* A change of one partition's replica list (same set reordered = a leadership move). */
typedef struct controller_move {
    char topic[TOPIC_NAME_MAX + 1];
    int32_t partition;
    topic_assignment from, to;
} controller_move;

/* A leadership to hand over: from -> to (both replicas of the partition). */
typedef struct controller_leader_move {
    char topic[TOPIC_NAME_MAX + 1];
    int32_t partition;
    int32_t from, to;
} controller_leader_move;

/* Number of ACTIVE brokers. */
int32_t controller_active_nodes(const controller_state *st);

/*
 * The replication factor to use for a new topic: requested > 0 is returned as is (placement
 * refuses it if too large, as Kafka does); -1 means the default: min(default_rf, active nodes),
 * at least 1, where default_rf <= 0 means 3.
 */
int16_t controller_effective_rf(const controller_state *st, int16_t requested, int16_t default_rf);

/*
 * Chooses replicas for n new partitions with rf replicas each into out[0..n): distinct ACTIVE
 * nodes, in racks the partition does not use yet where possible (nodes without a rack never
 * conflict), then least-loaded first (replicas, then preferred leaderships), the least-led node
 * first (preferred leader), each replica on its node's least-loaded shard. Successive
 * partitions see the load of the earlier ones, so a topic on an empty cluster spreads within
 * +-1 per node and per shard. Returns 0, AL_EINVAL (n outside 1..TOPIC_PARTITIONS_MAX, rf
 * outside 1..TOPIC_REPLICAS_MAX), AL_ERANGE (rf > active nodes: INVALID_REPLICATION_FACTOR),
 * AL_ENOTFOUND (no active node), -ENOMEM.
 */
int controller_place(const controller_state *st, int32_t n, int16_t rf, topic_assignment *out);

/*
 * A balancing plan: moves that bring every ACTIVE node's replica count within 1 of the others
 * (a replica moves from the most to the least loaded node, never onto a node that already has
 * one of that partition, preferring partitions the plan has not changed yet and moves that
 * keep the partition's racks distinct), then preferred leaders within 1 where possible
 * (reordering a partition's replicas; else handing a led partition to a less leading node,
 * outright if both replica counts stay in range, or in exchange for one it follows). At most
 * max_moves partitions change. *out is malloc'd (NULL when *n == 0); each entry is the
 * partition's final list. Returns 0 or -ENOMEM / AL_EINVAL.
 */
int controller_balance_plan(const controller_state *st, int32_t max_moves,
                            controller_move **out, int32_t *n);

/*
 * The moves that empty node: each of its replicas goes to the least-loaded ACTIVE node not
 * already in that partition, a rack its other replicas do not use first (if node was the
 * preferred leader, the next replica becomes it). *unplaceable receives the number of its
 * replicas no node could take (the plan is then partial: more nodes are needed). Returns 0,
 * AL_ENOTFOUND (unknown node), -ENOMEM.
 */
int controller_decommission_plan(const controller_state *st, int32_t node,
                                 controller_move **out, int32_t *n, int32_t *unplaceable);

/*
 * The leaderships node must hand over before maintenance: for every partition it is a replica
 * of, the ACTIVE other replica with the fewest leaderships so far (the caller transfers only
 * where node currently leads). *stuck receives the number of partitions with no such replica.
 * Returns 0, AL_ENOTFOUND, -ENOMEM.
 */
int controller_maintenance_plan(const controller_state *st, int32_t node,
                                controller_leader_move **out, int32_t *n, int32_t *stuck);

/*
 * The moves that bring every partition of topic name with fewer than rf replicas up to
 * min(rf, ACTIVE nodes): its replicas stay, in order (the preferred leader does not change),
 * and each new one goes where a decommission move would send it (an ACTIVE node not in the
 * partition, a rack it does not use first, least loaded, its least-loaded shard; the load
 * includes the plan's earlier additions). Partitions at or above that size are left alone
 * (never lowered). *out is malloc'd (NULL when *n == 0). Returns 0, AL_ENOTFOUND (no such topic
 * with assignments), -ENOMEM. Used to re-replicate __consumer_offsets created early with a
 * smaller factor once nodes join.
 */
int controller_raise_rf_plan(const controller_state *st, const char *name, int16_t rf,
                             controller_move **out, int32_t *n);

/* The Kafka error for a placement error (AL_ERANGE -> INVALID_REPLICATION_FACTOR, ...). */
int16_t controller_place_kafka_error(int err);

#endif
