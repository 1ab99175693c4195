/*
 * cluster_admin.h — the admin API's cluster-mode answers (src/http/admin.c routes to these):
 * GET /v1/brokers (every broker of the controller state with its membership and whether this
 * node reaches it), GET /v1/brokers/{id}, and GET /v1/cluster/health_overview. They read the
 * node service's view (src/cluster/cluster.h), so they run on any shard.
 */
#ifndef AL_CLUSTER_CLUSTER_ADMIN_H
#define AL_CLUSTER_CLUSTER_ADMIN_H

#include "http/http.h"

/* In cluster mode answers GET /v1/brokers and returns true; false (nothing sent) otherwise. */
bool cluster_admin_brokers(http_request *req);

/* In cluster mode answers GET /v1/brokers/{id} (404 for an unknown id) and returns true. */
bool cluster_admin_broker(http_request *req, int64_t id);

/* GET /v1/cluster/health_overview: is_healthy (a controller is known and no node is down),
 * controller_id, all_nodes, nodes_down. A single node answers for itself. */
void cluster_admin_health(http_request *req, void *ctx);

#endif
