/*
 * cluster_shutdown.h — controlled shutdown of a cluster node (issue 7): on the first
 * SIGINT/SIGTERM, before the shards stop, every shard stops campaigning in the Raft groups it
 * replicates and hands each leadership it holds to another voter (shard 0: the controller's
 * too), so clients see NOT_LEADER / NOT_COORDINATOR and move on instead of connection errors.
 * The peers are told at once (cluster_announce_stopping, from shard 0's first walk) and hand
 * this node no leadership meanwhile. No controller command. The reactor supervisor drives it through
 * reactor_opts.pre_stop (src/cli/start.c sets it in cluster mode).
 */
#ifndef AL_CLUSTER_CLUSTER_SHUTDOWN_H
#define AL_CLUSTER_CLUSTER_SHUTDOWN_H

#include "base/base.h"
#include "reactor/reactor.h"

/*
 * A reactor_opts.pre_stop (supervisor thread; arg: a uint64_t * holding the timeout in ms).
 * first: posts the hand-over to every shard (each then re-walks its groups every
 * CS_PERIOD_MS: no campaigning, transfer of every leadership to the voter furthest along
 * that may take it: alive, not stopping too) and starts the clock. Returns true (stop now)
 * once every shard reported that it leads nothing, or the timeout passed (logged with the
 * leaderships left), or at once when the timeout is 0. Logs progress ("handing over N leaderships...") about once a second.
 */
bool cluster_shutdown_pre_stop(reactor *r, bool first, void *arg);

/* Any thread: whether the hand-over has started in this process. */
bool cluster_shutdown_started(void);

#endif
