/*
 * cluster_impl.h — private to src/cluster/cluster*.c: the node service's state (one per
 * process, living on shard 0) and the functions its files share: the service core
 * (cluster.c: start/stop, controller replica, apply loop, table installs, join, view) and the
 * topic operations through the controller (cluster_ops.c).
 */
#ifndef AL_CLUSTER_CLUSTER_IMPL_H
#define AL_CLUSTER_CLUSTER_IMPL_H

#include "cluster/cluster.h"
#include "cluster/data_plane.h"
#include "raft/replica.h"
#include "rpc/rpc.h"

/* Something waiting until the controller state applied (and installed on every shard) up to
 * offset; fn runs once, on shard 0, with timed_out when deadline_ns (0: none) passed first or
 * the service stops. */
typedef struct cl_waiter cl_waiter;
struct cl_waiter {
    int64_t offset;
    uint64_t deadline_ns;
    void (*fn)(cl_waiter *w, bool timed_out);
    cl_waiter *next;
};

typedef struct cluster {
    reactor_shard *rs;
    io *io;
    const al_config *cfg;
    unsigned smp;
    int32_t self;
    char kafka_host[CONTROLLER_HOST_MAX];
    uint16_t kafka_port;
    char rpc_host[CONTROLLER_HOST_MAX]; /* advertised */
    uint16_t rpc_port;
    char *cid_buf;
    size_t cid_cap;
    void (*on_ready)(void *arg);
    void *ready_arg;

    char seed_hosts[CLUSTER_SEEDS_MAX][CONFIG_HOST_MAX];
    uint16_t seed_ports[CLUSTER_SEEDS_MAX];
    int n_seeds;
    bool founder; /* our advertised rpc address is the first seed */

    rpc *rpc;
    raft_replica *ctl;
    raft_rx *rx;
    uint8_t *rxbuf;
    size_t rxcap;
    controller_state st;
    reactor_timer tick;
    uint64_t last_slow_ns, last_ping_ns;
    bool stopping;
    bool stopping_announced; /* controlled shutdown started (cluster_announce_stopping) */

    /* role of group 0 */
    int role;
    int32_t leader;
    int64_t term;
    int64_t leader_from; /* leader: last log offset when elected */
    bool leader_ready;   /* leader: everything before our term is applied */

    /* founding: SET_CLUSTER_ID + REGISTER self, then __consumer_offsets (and raising its
     * replication factor as nodes join) */
    bool boot_busy, co_busy, co_rf_busy;

    /* joining / re-registering */
    bool joined, join_busy;
    int64_t join_offset; /* our registration's offset, -1 until known */
    uint64_t next_join_ns, last_join_log_ns;
    int join_seed;
    uint32_t join_failures;

    /* topic tables shipped to every shard */
    bool install_busy;
    uint32_t install_acks;
    uint8_t *install_blob;
    int64_t install_offset, installed_offset;
    int64_t snapshot_every; /* trim the controller log past this many applied offsets */
    uint64_t shipped_version;
    bool shipped_any;
    /* cluster configuration shipped with the table (config_with_overrides of cfg and the
     * controller's overrides) */
    al_config *install_cfg; /* being shipped, freed with install_blob */
    uint64_t shipped_config_version;
    bool config_shipped;

    cl_waiter *waiters;
    uint64_t next_request_id;
    bool cid_published;

    /* peers given to rpc (node id -> address), to call rpc_peer_set only on changes */
    struct cl_peer {
        int32_t id;
        char host[CONTROLLER_HOST_MAX];
        uint16_t port;
        uint64_t msgs_in, connects; /* rpc counters at the last look */
        uint64_t heard_ns;          /* when they last moved (0: never) */
        uint64_t fails;      /* connect errors + disconnects accepted as past (heard since) */
        uint64_t last_fails; /* ... at the previous look */
        bool stopping;       /* its pings say it is shutting down (controlled shutdown) */
    } *peers;
    int32_t n_peers, cap_peers;
} cluster;

/* The service (shard 0), or NULL before cluster_start / after stop. */
extern cluster *g_cluster;

/* cluster.c */
void cl_waiter_add(cluster *cl, cl_waiter *w);
/* A new request id for a command this node proposes. */
uint64_t cl_request_id(cluster *cl);
/* Whether this node can propose now (controller leader with everything before its term
 * applied). */
bool cl_can_propose(const cluster *cl);
/* The leader's rpc address from the state (false if unknown). */
bool cl_broker_rpc(const cluster *cl, int32_t id, char *host, size_t cap, uint16_t *port);

/* cluster_ops.c */
/* Runs op on this node (the leader): builds and proposes the commands, then calls
 * finish(cl, op, offset) once they are applied (offset = the controller offset of the last
 * command, or the applied offset when nothing was proposed). Items' err get the results. */
typedef void (*cl_op_finish_fn)(cluster *cl, struct data_topic_op *op, int64_t offset);
void cl_op_run_local(cluster *cl, struct data_topic_op *op, cl_op_finish_fn finish);
/* The RPC_T_CONTROLLER handler (a forwarded op, on the leader). */
void cl_op_rpc_handler(rpc *r, void *ctx, const rpc_msg *m);
/* Proposes __consumer_offsets when the state lacks it (leader only). */
void cl_ensure_consumer_offsets(cluster *cl);
/* Leader only: proposes the moves that give every __consumer_offsets partition min(3, ACTIVE
 * nodes) replicas (controller_raise_rf_plan) when it has fewer: created early (on first use
 * with 1 or 2 nodes), it is re-replicated as nodes join. One batch in flight at a time. */
void cl_consumer_offsets_rf(cluster *cl);
/* Item error for a controller result (a Kafka code). */
int cl_item_err(int16_t kerr);

#endif
