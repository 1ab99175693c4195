/*
 * data_plane.h — wires the topic table and the partition managers onto the reactor's shards:
 * start-up (load topics.json, create __consumer_offsets, open every shard's partitions), the
 * per-shard context the Kafka data-path handlers use, reliable cross-shard sends, and topic
 * changes (create, delete, add partitions, set configs) and cluster-configuration changes,
 * which run on shard 0, are persisted, and then copied to every shard's replica before the
 * caller is answered.
 *
 * Start-up, for src/cli/start.c:
 *   1. main thread, after the config is final and before reactor_start:
 *        struct data_plane *dp; data_plane_prepare(cfg, &dp);
 *   2. in every shard's reactor init function (on that shard):
 *        data_shard_start(self, dp);
 *   3. after reactor_start returned: data_plane_free(dp).
 * Shutdown hooks registered by data_shard_start close the shard's logs.
 *
 * Threading: data_plane_prepare/free on the main thread; everything else on a shard thread,
 * using that shard's data_shard (data_shard_self()).
 */
#ifndef AL_CLUSTER_DATA_PLANE_H
#define AL_CLUSTER_DATA_PLANE_H

#include "base/base.h"
#include "base/heap.h"
#include "cluster/partition_manager.h"
#include "cluster/topic_config.h"
#include "cluster/topic_table.h"
#include "config/config.h"
#include "reactor/reactor.h"

/* Broker-wide start-up state: read-only once the shards run. */
struct data_plane {
    const struct al_config *cfg;
    uint8_t *table_blob; /* encoded topic table at start */
    size_t table_len;
    char data_dir[1024];
};

/* A queued cross-shard message (when the ring was full). */
struct data_pending_msg {
    struct data_pending_msg *next;
    unsigned to;
    struct reactor_msg msg;
};

/*
 * A deferred request of the data-path handlers, registered on its connection's shard from
 * dispatch until it is answered: messages from other shards can find it by cookie (never by
 * pointer: it may be gone), and shutdown knows it. At shutdown on_shutdown (if set) may answer
 * it (returning true, after unregistering it); otherwise the request is abandoned: other shards
 * may still hold pointers into it while the process exits, so it is never freed, but kept on a
 * process-wide list (reachable, so leak checkers do not report it).
 */
struct data_inflight {
    struct data_inflight *prev, *next;
    uint64_t cookie;                                 /* unique on the shard; set by _add */
    bool (*on_shutdown)(struct data_inflight *node); /* may be NULL */
};

/* One shard's data-path state. */
typedef struct data_shard {
    reactor_shard *rs;
    io *io;
    uint32_t shard, smp;
    const struct al_config *cfg;
    struct data_plane *dp;
    topic_table topics; /* authoritative on shard 0, a replica elsewhere */
    /* The configuration in effect: the start-up one plus accepted cluster-config changes
     * (admin API, AlterConfigs on BROKER); authoritative on shard 0, a replica elsewhere.
     * Live keys (config_key.live) are read from here, never from cfg. */
    al_config cluster_cfg;
    uint64_t cluster_cfg_version;            /* cluster-config changes applied since start */
    struct broker_config_defaults defaults; /* cluster_cfg's topic defaults (pm resolves) */
    partition_manager pm;
    storage_cache *cache;
    struct data_pending_msg *pending_head, *pending_tail; /* sends waiting for ring space */
    struct data_inflight *inflight; /* parked requests of this shard's connections */
    uint64_t next_cookie;
    uint32_t pending_count;
    reactor_timer retry_timer;
    reactor_timer housekeep_timer;
    /* shard 0 only: the heap trim (base/heap.h) run on the offload thread at housekeeping */
    struct heap_trim trim;
    io_op trim_op;
    bool trim_busy;
    /* shard 0 only: topic changes are applied one at a time */
    struct data_topic_op *op_queue_head, *op_queue_tail;
    struct data_topic_op *op_running;
    uint32_t op_acks_left;
    uint8_t *op_blob;
    size_t op_blob_len;
} data_shard;

/*
 * Main thread: creates the data directory, loads <data_dir>/topics.json (creating the internal
 * topic __consumer_offsets on first start) and encodes it for the shards. Returns 0 or an error
 * (logged): a corrupt topics.json refuses to start.
 */
int data_plane_prepare(const struct al_config *cfg, struct data_plane **out);
void data_plane_free(struct data_plane *dp);

/*
 * On shard `self`, from its reactor init: builds the shard's topic table from the start-up
 * blob, creates its batch cache and opens (recovers) the partitions it owns. Returns 0 or an
 * error (logged); a non-zero result stops the reactor.
 */
int data_shard_start(reactor_shard *self, struct data_plane *dp);

/* The calling shard's data_shard, or NULL (not a shard, or the data plane is not started).
 * If the shard has not started its data plane yet but the process has prepared one, starts it
 * here (see data_shard_ensure). */
data_shard *data_shard_self(void);

/*
 * Like data_shard_self, but also prepares the process-wide data plane from cfg on first use
 * (under a lock: the first shard to need it loads topics.json; blocking, once). This lets the
 * Kafka handlers work even when start-up did not call data_plane_prepare/data_shard_start:
 * each shard then starts its part lazily, at its first request or message. Returns NULL off
 * shards or when start-up failed (logged).
 */
data_shard *data_shard_ensure(const struct al_config *cfg);

/*
 * Sends fn(arg, a, b) to shard `to` (may be this shard: it then runs from the shard loop, never
 * from inside this call). Never fails: when the ring is full the message waits in a local
 * queue and is retried from a timer, in order. Returns 0 or AL_ECLOSED (stopping: dropped).
 */
int data_send(data_shard *ds, unsigned to, reactor_msg_fn fn, void *arg, uint64_t a, uint64_t b);

/* Registers a parked request (assigns node->cookie), unregisters it, finds it by cookie. */
void data_inflight_add(data_shard *ds, struct data_inflight *node);
void data_inflight_remove(data_shard *ds, struct data_inflight *node);
struct data_inflight *data_inflight_find(data_shard *ds, uint64_t cookie);

/* ---- topic changes (run on shard 0, then copied to every shard) ---- */

enum data_topic_op_kind {
    DATA_OP_CREATE = 1,
    DATA_OP_DELETE,
    DATA_OP_ADD_PARTITIONS,
    DATA_OP_REPLACE_CONFIGS, /* configs[0..n) replace all overrides */
    DATA_OP_SET_CONFIGS,     /* configs[i].value "" with del[i] set removes the key */
    DATA_OP_CLUSTER_CONFIG,  /* cluster configuration changes, see below */
};

/*
 * A batch of topic changes (caller-owned, stays alive until done runs). Every item is applied
 * in order on shard 0; items[i].err receives 0 or an AL_E* error. done(op) runs on the shard
 * that submitted, after every shard's replica has the result.
 */
struct data_topic_item {
    char name[TOPIC_NAME_MAX + 1];
    int32_t partitions; /* CREATE: count; ADD_PARTITIONS: new total */
    int16_t replication_factor;
    const topic_config_kv *configs;
    const bool *del; /* SET_CONFIGS: per config, true = remove the key */
    int32_t n_configs;
    int err;        /* out */
    uint8_t id[16]; /* out (CREATE): the new topic id */
};

struct data_topic_op {
    enum data_topic_op_kind kind;
    struct data_topic_item *items;
    int32_t n;
    void (*done)(struct data_topic_op *op);
    void *ctx;
    /* private */
    unsigned from_shard;
    struct data_topic_op *next;
};

/*
 * DATA_OP_CLUSTER_CONFIG: each item is a set of changes to the cluster configuration:
 * configs[j] = (config-table key, value text), del[j] true resets the key (config_change with
 * the start-up configuration). name, partitions and replication_factor are unused. On shard 0
 * the items are applied in order to a copy of its cluster_cfg; an item with a refused change
 * gets its error (AL_ENOTFOUND / AL_EINVAL) and changes nothing. If anything changed, the
 * result is saved with config_save_admin (a failure gives every applied item that error and
 * changes nothing), then every shard replaces its cluster_cfg, rebuilds its defaults and
 * re-resolves the settings of its partitions (pm_set_defaults + pm_reconcile) before done
 * runs. Callers validate first (config_change on a copy of their replica) to report messages.
 */

/* Submits op from the calling shard. Returns 0 (done will run) or AL_ECLOSED. */
int data_topic_submit(data_shard *ds, struct data_topic_op *op);

/* Cluster mode (src/cluster/cluster.h), set before the shards start: topic ops and
 * DATA_OP_CLUSTER_CONFIG go to the controller through this instead of shard 0 (cluster
 * configuration: SET_CLUSTER_CONFIG; every node installs the result, cluster.c). */
extern int (*data_topic_hook)(data_shard *ds, struct data_topic_op *op);

/* The partition's owning shard. */
static inline unsigned data_owner(const data_shard *ds, const topic *t, int32_t partition)
{
    return topic_partition_shard(t->id, partition, ds->smp);
}

#endif
