/*
 * cluster_groups.h — what the Kafka coordinators need from the node service in cluster mode
 * (issue 7): producer ids unique across the cluster. InitProducerId hands out ids from blocks
 * the controller allocates (CONTROLLER_CMD_ALLOC_IDS, a committed command of Raft group 0: the
 * result value is the block's first id), so two nodes never give out the same id and a node
 * never reuses one after a restart (the controller's counter only grows).
 *
 * The controller leader proposes the command itself; any other node forwards the request to
 * it (CLUSTER_RPC_ALLOC_IDS, a call: request u8 version 1 | i64 count; answer u8 version 1 |
 * i64 first | i64 count, big-endian).
 *
 * Threading: shard 0 (where the node service lives); callbacks run there.
 */
#ifndef AL_CLUSTER_CLUSTER_GROUPS_H
#define AL_CLUSTER_CLUSTER_GROUPS_H

#include "base/base.h"
#include "rpc/rpc.h"

#define CLUSTER_RPC_ALLOC_IDS (RPC_T_USER + 3)
#define CLUSTER_IDS_MAX       (1 << 20) /* ids one request may ask for */

/* The outcome: err 0 and the block [first, first + count), or an error: AL_ECLOSED (not in
 * cluster mode, or the service stopped), -EAGAIN (no controller leader known, or it changed
 * before the command committed: retry), AL_ETIMEDOUT, AL_EINVAL, -ENOMEM, or the forwarded
 * call's transport error. */
typedef void (*cluster_ids_cb)(void *ctx, int err, int64_t first, int64_t count);

/*
 * Shard 0: allocates `count` (1..CLUSTER_IDS_MAX) producer ids from the controller. Returns 0
 * (cb runs once, later or before this returns) or AL_EINVAL / AL_ECLOSED (cb never runs).
 */
int cluster_alloc_producer_ids(int64_t count, cluster_ids_cb cb, void *ctx);

/* Shard 0, from cluster_start: registers the CLUSTER_RPC_ALLOC_IDS handler on the node's
 * endpoint (the leader's side of forwarded allocations). */
void cluster_groups_rpc(rpc *r);

#endif
