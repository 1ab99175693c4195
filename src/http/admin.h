/*
 * admin.h — the admin API (Redpanda-style, port 9644 by default: config key admin_addr) served
 * by the HTTP server on shard 0, and the per-shard metrics collector.
 *
 * Endpoints (JSON unless noted; errors are {"message": ..., "code": N}):
 *   GET  /v1/status/ready                      200 {"status":"ready"} | 503 {"status":"booting"}
 *   GET  /v1/brokers, /v1/brokers/{id}          this node (one node until the controller lands)
 *   GET  /v1/cluster_config                     cluster-wide keys and values
 *   PUT  /v1/cluster_config[?dry_run=true]      {"upsert": {k: v}, "remove": [k]}, validated
 *                                               against src/config's table; 200
 *                                               {"config_version": N, "restart_required": [...]}
 *   GET  /v1/cluster_config/status              per node: config_version, restart needed, keys
 *   GET  /v1/cluster_config/schema              cluster keys: type, default, bounds, doc
 *   GET  /v1/node_config                        this node's effective configuration
 *   GET  /v1/partitions                         every partition: ns, topic, partition_id, core
 *   GET  /v1/partitions/{ns}/{topic}            the partitions of one topic
 *   GET  /v1/partitions/{ns}/{topic}/{p}        one partition, with offsets and size read on its
 *                                               owning shard (asynchronous, cross-shard)
 *   GET  /v1/features                           features this build has, all active
 *   GET  /v1/loggers ; PUT /v1/loggers {"level": "debug"}      the (global) log level
 *   PUT  /v1/config/log_level/{name}?level=L    Redpanda's form of the same (global) change
 *   GET  /metrics, /public_metrics              Prometheus text format 0.0.4
 *
 * Cluster-config changes are validated and kept by this node's admin API; log_level takes
 * effect at once, every other key is reported in restart_required (the broker reads its
 * configuration at start; there is no controller to replicate it yet).
 */
#ifndef AL_HTTP_ADMIN_H
#define AL_HTTP_ADMIN_H

#include "base/base.h"
#include "config/config.h"
#include "http/http.h"
#include "reactor/reactor.h"

/*
 * From each shard's reactor init function, on that shard: on the first call in the process
 * creates the metrics registry with n_shards instances; binds this thread's metrics instance;
 * starts this shard's metrics collector (a 1 s timer: utilisation, stalls, partition gauges,
 * memory); and on shard 0 starts the admin API on cfg->admin_addr. cfg and cluster_id must
 * outlive the reactor. Registers shutdown hooks that stop it all. Returns 0 or -ENOMEM. A
 * failure to bind the admin port is logged as an error and the broker runs without it.
 */
int admin_shard_start(reactor_shard *self, const al_config *cfg, const char *cluster_id,
                      unsigned n_shards);

/* Marks the node ready (GET /v1/status/ready answers 200). Any thread. */
void admin_set_ready(bool ready);

/* Marks the node ready and records the Kafka address it advertises (shown by /v1/brokers;
 * the configured port may have been 0). Any thread; host is copied. */
void admin_node_ready(const char *kafka_host, int kafka_port);

/* The admin API's bound port on this process (0 when not listening). Any thread. */
uint16_t admin_port(void);

/* The admin router (for tests that serve it on their own io). ctx: struct admin_state. */
struct admin_state;
/* Gives the state the io it persists accepted cluster-config changes with (PUT
 * /v1/cluster_config writes <data_directory>/cluster_config.json); without one, changes stay in
 * memory. Shard 0 only. */
void admin_state_set_io(struct admin_state *st, io *iop);

struct admin_state *admin_state_new(const al_config *cfg, const char *cluster_id,
                                    unsigned n_shards);
void admin_state_free(struct admin_state *st);
http_router admin_router(struct admin_state *st);

#endif
