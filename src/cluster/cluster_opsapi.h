/*
 * cluster_opsapi.h — cluster operations through the controller (issue 7), the controller-side
 * half of cluster_reconfig.h: the admin API endpoints that propose MOVE_PARTITION,
 * SET_MAINTENANCE, DECOMMISSION_NODE / RECOMMISSION_NODE and replica balancing plans, their
 * status views, and the decommission driver (on the controller leader: moves a
 * decommissioning node's replicas away per controller_decommission_plan, then proposes
 * REMOVE_NODE once no partition lists it and no group still counts it).
 *
 * A command is proposed on the controller leader; on any other node it is forwarded to the
 * leader as CLUSTER_RPC_OPS (a call: u32 count | per command u32 length + controller_cmd
 * encoding; answer: i16 Kafka error | u16 length + message) and the HTTP answer waits for it.
 *
 * Endpoints (all on shard 0, where the admin API runs; outside cluster mode they answer 400):
 *   POST   /v1/partitions/{ns}/{topic}/{partition}/replicas  body [{"node_id":N,"core":C}...]
 *   GET    /v1/partitions/reconfigurations   partitions whose leader/ISR differ from their
 *                                             assignment (as this node's leadership table sees)
 *   POST   /v1/partitions/rebalance          replica balance plan (moves) -> {"moves": n}
 *   GET/PUT/DELETE /v1/brokers/{id}/maintenance
 *   GET/PUT /v1/brokers/{id}/decommission,  PUT /v1/brokers/{id}/recommission
 *   GET/PUT /v1/cluster/leader_balancer     {"enabled": bool} (this node's balancer)
 *
 * Start-up sweep: 5 s after this node joined, if no replica was kept open for a move, shard 0
 * deletes the directories of partitions this node is no longer a replica of (a move removed
 * it while it was down). Only with one shard for now: shard 0 cannot see the other shards'
 * open replicas.
 *
 * Threading: shard 0 only.
 */
#ifndef AL_CLUSTER_CLUSTER_OPSAPI_H
#define AL_CLUSTER_CLUSTER_OPSAPI_H

#include "base/base.h"
#include "http/http.h"

#define CLUSTER_RPC_OPS          36 /* RPC_T_USER + 4 */
#define CLUSTER_OPS_TIMEOUT_MS   15000
#define CLUSTER_OPS_DECOM_MS     1000
#define CLUSTER_OPS_MOVES_MAX    64 /* moves proposed per command batch */
#define CLUSTER_OPS_SWEEP_MS     5000 /* after joining: delete copies moved away meanwhile */

/* Shard 0, every CR_PERIOD_MS (cluster_reconfig_tick): registers the RPC handler once the
 * node service's endpoint exists, and runs the decommission driver on the leader. */
void cluster_opsapi_tick(uint64_t now_ns);

/* The admin API handlers (src/http/admin.c routes). */
void cluster_opsapi_move(http_request *req, void *ctx);
void cluster_opsapi_reconfigurations(http_request *req, void *ctx);
void cluster_opsapi_rebalance(http_request *req, void *ctx);
void cluster_opsapi_maintenance_get(http_request *req, void *ctx);
void cluster_opsapi_maintenance_put(http_request *req, void *ctx);
void cluster_opsapi_maintenance_delete(http_request *req, void *ctx);
void cluster_opsapi_decommission_get(http_request *req, void *ctx);
void cluster_opsapi_decommission_put(http_request *req, void *ctx);
void cluster_opsapi_recommission_put(http_request *req, void *ctx);
void cluster_opsapi_balancer_get(http_request *req, void *ctx);
void cluster_opsapi_balancer_put(http_request *req, void *ctx);

#endif
