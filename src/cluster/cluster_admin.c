/*
 * cluster_admin.c — the admin API's cluster-mode endpoints (see cluster_admin.h), built from
 * the node service's view of the controller state.
 */
#include "cluster/cluster_admin.h"

#include "cluster/cluster.h"

#include <stdlib.h>

static const char *membership_name(uint8_t m)
{
    switch (m) {
    case CONTROLLER_NODE_ACTIVE: return "active";
    case CONTROLLER_NODE_DRAINING: return "draining";
    case CONTROLLER_NODE_DECOMMISSIONING: return "decommissioning";
    case CONTROLLER_NODE_REMOVED: return "removed";
    }
    return "unknown";
}

static json_t *broker_json(const cluster_view_broker *b, int32_t controller)
{
    json_t *o = json_pack("{s:i, s:i, s:s, s:b, s:s, s:i, s:s, s:i, s:b, s:b, s:b}", "node_id",
                          (int)b->node_id, "num_cores", (int)b->cores, "membership_status",
                          membership_name(b->membership), "is_alive", b->alive, "kafka_host",
                          b->kafka_host, "kafka_port", (int)b->kafka_port, "rpc_host",
                          b->rpc_host, "rpc_port", (int)b->rpc_port, "controller_voter",
                          b->voter, "controller_learner", b->learner, "is_controller",
                          b->node_id == controller);
    if (o && b->rack[0]) json_object_set_new(o, "rack", json_string(b->rack));
    return o;
}

/* The view (malloc'd, *n entries), or NULL when not in cluster mode / out of memory. */
static cluster_view_broker *view(int *n, int32_t *controller, int32_t *self)
{
    int max = cluster_view_brokers(NULL, 0, NULL, NULL); /* size first */
    if (max < 0) return NULL;
    max = AL_MIN(max + 4, CLUSTER_VIEW_MAX);
    cluster_view_broker *v = malloc(sizeof(*v) * (size_t)max);
    if (!v) return NULL;
    *n = cluster_view_brokers(v, max, controller, self);
    if (*n < 0) {
        free(v);
        return NULL;
    }
    *n = AL_MIN(*n, max);
    return v;
}

bool cluster_admin_brokers(http_request *req)
{
    int n;
    int32_t controller, self;
    cluster_view_broker *v = view(&n, &controller, &self);
    if (!v) return false;
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, broker_json(&v[i], controller));
    free(v);
    http_respond_json(req, 200, a);
    return true;
}

bool cluster_admin_broker(http_request *req, int64_t id)
{
    int n;
    int32_t controller, self;
    cluster_view_broker *v = view(&n, &controller, &self);
    if (!v) return false;
    for (int i = 0; i < n; i++) {
        if (v[i].node_id != id) continue;
        json_t *o = broker_json(&v[i], controller);
        free(v);
        http_respond_json(req, 200, o);
        return true;
    }
    free(v);
    http_respond_error(req, 404, "no broker with id %lld in the cluster", (long long)id);
    return true;
}

void cluster_admin_health(http_request *req, void *ctx)
{
    (void)ctx;
    int n;
    int32_t controller, self;
    cluster_view_broker *v = view(&n, &controller, &self);
    json_t *all = json_array(), *down = json_array();
    if (!v) { /* a single node: healthy when it answers */
        http_respond_json(req, 200, json_pack("{s:b, s:i, s:o, s:o}", "is_healthy", 1,
                                              "controller_id", -1, "all_nodes", all,
                                              "nodes_down", down));
        return;
    }
    for (int i = 0; i < n; i++) {
        if (v[i].membership == CONTROLLER_NODE_REMOVED) continue;
        json_array_append_new(all, json_integer(v[i].node_id));
        if (!v[i].alive) json_array_append_new(down, json_integer(v[i].node_id));
    }
    bool healthy = controller >= 0 && json_array_size(down) == 0 && n > 0;
    free(v);
    http_respond_json(req, 200, json_pack("{s:b, s:i, s:o, s:o}", "is_healthy", healthy,
                                          "controller_id", (int)controller, "all_nodes", all,
                                          "nodes_down", down));
}
