/*
 * partition_raft.h — partitions as Raft groups (cluster mode, issue 7): every partition a node
 * hosts is a raft_replica (src/raft/replica.h) whose log IS the partition log, plus the
 * per-shard machinery the replicas need and the node's leadership table.
 *
 * Per shard (created on the shard the first time it is needed): the heartbeat batcher and
 * action scratch all its replicas share, the decode scratch (raft_rx), a map group -> partition
 * and a 10 ms tick timer (tick every replica, then flush the heartbeat batches).
 *
 * Per node (shard 0): inbound partition Raft traffic. RPC_T_RAFT messages are routed by the
 * group in their header (raft_msg layout: version u8 | type u8 | flags u8 | group u64 ...) to
 * the shard that hosts it (from shard 0's topic table), copied over by a reactor message.
 * RPC_T_RAFT_HB batches are delivered on shard 0 and a copy goes to every other shard (each
 * skips groups it does not host). Every replica's messages leave through cluster_raft_send on
 * its own shard.
 *
 * Leadership: one table per node (src/cluster/leaders.h, under a mutex: every shard merges its
 * replicas' (leader, term, isr) into it every 200 ms and at once after a role change, and reads
 * it for Metadata). Shard 0 sends the entries this node leads to every peer every 200 ms and
 * at once on a change, and merges the peers' reports: over PR_RPC_LEADERS when the node
 * service gave it the endpoint (pr_node_rpc), otherwise on the partition channel as an
 * RPC_T_RAFT_HB message whose first byte is 0xA1 (a Raft message starts with its version, 1).
 * The ISR (leader's view) = the leader + the voters connected to this node
 * (cluster_view_brokers) whose match offset reached the commit index of the previous report
 * (~200 ms earlier).
 *
 * Activation: cluster mode is on once the node service (src/cluster/cluster.h) started on shard
 * 0 (cluster_active()), which happens before any partition of the controller's table is
 * opened; in single-node mode pr_enabled() is false and the partition manager opens plain
 * logs. Raft messages leave through cluster_raft_send and arrive through the receiver this
 * module installs with cluster_set_partition_rx. Liveness (for the ISR) is the node service's
 * view (cluster_view_brokers: connected peers).
 *
 * Threading: each function says where it runs. Replica callbacks run on the partition's shard.
 */
#ifndef AL_CLUSTER_PARTITION_RAFT_H
#define AL_CLUSTER_PARTITION_RAFT_H

#include "base/base.h"
#include "cluster/leaders.h"
#include "cluster/partition_manager.h"
#include "raft/replica.h"
#include "rpc/rpc.h"

/* Partition Raft groups are numbered by cluster_group_id (src/cluster/cluster.h). */

#define PR_RPC_LEADERS  (RPC_T_USER + 1) /* leadership reports between nodes (one-way) */
#define PR_TICK_MS      10
#define PR_REPORT_MS    200
#define PR_ELECTION_MS  1500
#define PR_HEARTBEAT_MS 150

/* Per-partition Raft state (pm_partition->pr; owned by this module). */
struct pr_part {
    pm_partition *p;
    uint64_t group;
    struct pr_shard *sh;
    struct pr_part *hnext;     /* the shard's group map */
    bool producers_stale;      /* became leader: rebuild producer state before the next
                                  produce (pm_rebuild_producers) */
    int64_t lead_offset;       /* log end (Raft) when the rebuild ran: batches below it
                                  come from previous leaderships */
    int64_t lead_ms;           /* ... and when (monotonic ms): producer_state_gap_at_handover
                                  answers retriable for PRODUCER_FENCE_MS after it */
    int64_t isr_mark;          /* commit index at the previous report */
    int32_t min_insync;        /* topic's min.insync.replicas, cached */
    uint64_t min_insync_ver;   /* topic table version it was read at */
    uint64_t min_insync_cfg;   /* ... and cluster-config version (broker default) */
};

/*
 * DeleteRecords on a Raft partition (its shard; the leader): replicates a TRIM batch asking
 * every replica to start its log at (Raft) offset (raft_batch_build_trim); once it commits,
 * the leader's replica has cut its prefix (rounded down to a batch base) and cb(ctx, 0, new log
 * start in Kafka offsets: pm_kafka_start) runs; followers cut theirs when they learn of the commit. cb(ctx, err, -1) on failure
 * after 0 was returned (RAFT_ELOST: leadership lost; AL_ECLOSED). Returns 0, or at once
 * RAFT_ENOTLEADER, RAFT_EBUSY, AL_EFULL, AL_EFAILED, -ENOMEM (cb not called).
 */
typedef void (*pr_trim_cb)(void *ctx, int err, int64_t low_watermark);
int pr_delete_records(pm_partition *p, int64_t offset, pr_trim_cb cb, void *ctx);

/* ---- node (shard 0) ---- */

/* Any shard: cluster mode is on (cluster_active(): the node service started). */
bool pr_enabled(void);
/* Any shard: this node's id (-1 before the node service started). */
int32_t pr_self(void);

/*
 * Shard 0: hands one received partition message to the replicas (buf is copied): RPC_T_RAFT
 * of a group != 0 to the shard hosting it, RPC_T_RAFT_HB to every shard. Returns 0,
 * AL_ENOTFOUND (no replica of that group on this node), AL_ECLOSED, or a decode error.
 */
int pr_deliver(uint16_t rpc_type, const uint8_t *buf, size_t len);

/* The cluster_raft_rx_fn given to cluster_set_partition_rx (src/cluster/cluster.h): done
 * automatically the first time a shard sets up partition replicas. */
void pr_cluster_rx(reactor_shard *shard0, uint16_t rpc_type, uint64_t group, const uint8_t *buf,
                   size_t len);

/*
 * Shard 0: the node's rpc endpoint for leadership gossip (PR_RPC_LEADERS: registers its
 * handler), or NULL before the endpoint stops. Without it each node only knows the
 * leadership of the partitions it hosts.
 */
void pr_node_rpc(rpc *r);

/* ---- partition manager hooks (the partition's shard) ---- */

/*
 * Opens p's log as a Raft replica in dir: group pr_group_id(t->id, p->partition), bootstrap
 * voters = the partition's assignment, the shard's batcher and scratch, timeouts
 * PR_ELECTION_MS / PR_HEARTBEAT_MS. Sets p->rr, p->pr and p->log (owned by the replica). cfg is
 * the log's configuration. Blocks (start-up/admin work). Returns 0 or the open error (p
 * unchanged).
 */
int pr_open(partition_manager *pm, pm_partition *p, const topic *t, const char *dir,
            const storage_log_config *cfg);

/* Closes p's replica (fails its waiters, flushes and closes the log) and clears p->rr, p->pr
 * and p->log. */
void pr_close(pm_partition *p);

/* ---- queries for the Kafka handlers ---- */

/* The partition's shard: whether this replica is the leader. */
bool pr_is_leader(const pm_partition *p);

/* The partition's shard, leader: replicas in sync (the leader included; see the file
 * comment). */
int pr_insync_count(const pm_partition *p);

/*
 * Any shard: what this node knows about group's leadership (its table, read under the
 * table's mutex): fills *out and returns true, or false when nothing is known.
 */
bool pr_leader_lookup(uint64_t group, ldr_entry *out);

/* Any shard: the shard that hosts (t, partition) on this node in cluster mode, else
 * topic_partition_shard's answer (so a request is routed somewhere that answers). */
unsigned pr_owner_shard(const topic *t, int32_t partition, uint32_t smp);

#endif
