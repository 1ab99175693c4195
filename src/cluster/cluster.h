/*
 * cluster.h — the node service of a multi-node cluster (issue 7, DESIGN.md §4): on shard 0 in
 * cluster mode (seed_servers set) it runs the node-to-node RPC endpoint (src/rpc/rpc.h), the
 * controller = Raft group 0 (a raft_replica whose log is <data_dir>/controller/) and its state
 * machine (src/cluster/controller.h), cluster formation (founding, joining through the seeds,
 * re-registering after a restart), the apply loop that installs the controller's topic table
 * on every shard, topic administration through the controller (proposed on the leader,
 * forwarded there from any other node), and a read-mostly view of the cluster (brokers,
 * controller id, liveness) for Metadata, DescribeCluster and the admin API.
 *
 * Modes: cluster_mode(cfg) is true when seed_servers is non-empty. Single-node mode never calls
 * anything here except the pure helpers and the view functions (which then say "not a
 * cluster").
 *
 * Pure helpers (any thread): cluster_group_id, the JOIN request/response encodings and the
 * encoding of topic operations forwarded to the controller leader (RPC_T_CONTROLLER). Their
 * decoders take untrusted bytes.
 *
 * Threading: cluster_start and everything the service does run on shard 0; cluster_view_*,
 * cluster_raft_send and cluster_topic_submit may be called from any shard (documented below).
 */
#ifndef AL_CLUSTER_CLUSTER_H
#define AL_CLUSTER_CLUSTER_H

#include "base/base.h"
#include "cluster/controller.h"
#include "config/config.h"
#include "reactor/reactor.h"

struct data_topic_op;
struct data_shard;

enum {
    CLUSTER_GROUP_CONTROLLER = 0,
    CLUSTER_SEEDS_MAX = 16,
    CLUSTER_VIEW_MAX = CONTROLLER_NODES_MAX,
    CLUSTER_JOIN_BROKERS_MAX = CONTROLLER_NODES_MAX,
    CLUSTER_ELECTION_MS = 1500,  /* controller and partitions: election timeout base */
    CLUSTER_HEARTBEAT_MS = 150,
    CLUSTER_TICK_MS = 10,
    CLUSTER_RPC_PING = 34, /* RPC_T_USER + 2: one-way liveness ping between nodes; its one
                            * byte: 1 = the sender is shutting down, 0 = it is not */
    CLUSTER_LIVENESS_MS = 3000, /* a peer heard from within this (pings: every 1 s) is alive */
};

/* True when cfg describes a cluster member (seed_servers is non-empty). */
bool cluster_mode(const al_config *cfg);

/*
 * The Raft group id of partition p of the topic with this id: ((first 6 bytes of the id as a
 * big-endian u48) & (2^44 - 1)) << 20 | (p + 1). Never 0 (group 0 is the controller) for
 * 0 <= p < 2^20 - 1. Two topics whose ids agree in those 44 bits would share groups: the
 * proposer of CREATE_TOPIC draws ids until cluster_topic_id_collides is false.
 */
uint64_t cluster_group_id(const uint8_t topic_id[16], int32_t partition);

/* True if id's 44 group bits equal those of a topic in tt (other than one with the same id). */
bool cluster_topic_id_collides(const topic_table *tt, const uint8_t id[16]);

/* Parses "host:port[,host:port...]" (spaces ignored) into hosts[i] (CONFIG_HOST_MAX) and
 * ports[i]. Returns the count (0..max) or AL_EINVAL (a malformed entry). */
int cluster_parse_seeds(const char *list, char (*hosts)[CONFIG_HOST_MAX], uint16_t *ports,
                        int max);

/* ---- JOIN (RPC_T_JOIN, a call to a seed or the controller leader) ---- */

typedef struct cluster_join_req {
    int32_t node_id;
    char kafka_host[CONTROLLER_HOST_MAX];
    uint16_t kafka_port;
    char rpc_host[CONTROLLER_HOST_MAX];
    uint16_t rpc_port;
    char rack[CONTROLLER_RACK_MAX];
    uint32_t cores;
} cluster_join_req;

typedef struct cluster_join_peer {
    int32_t node_id;
    char rpc_host[CONTROLLER_HOST_MAX];
    uint16_t rpc_port;
} cluster_join_peer;

/*
 * The answer. error 0: registered; offset = the controller log offset of the registration
 * (the joiner is ready once it has applied that far), brokers = every registered node.
 * error NOT_CONTROLLER: leader_id (-1 unknown) and leader_host/port tell where to go.
 * Any other error (e.g. INVALID_REGISTRATION for a node id in use): message says why.
 */
typedef struct cluster_join_resp {
    int16_t error; /* Kafka error code */
    char message[256];
    int32_t leader_id;
    char leader_host[CONTROLLER_HOST_MAX];
    uint16_t leader_port;
    int64_t offset;
    bool has_cluster_id;
    uint8_t cluster_id[16];
    int32_t n_brokers;
    cluster_join_peer *brokers; /* encode: the caller's; decode: malloc'd (free()) */
} cluster_join_resp;

/* Encoders return the size written into buf[cap], or AL_ETOOLARGE / AL_EINVAL. */
int64_t cluster_join_req_encode(const cluster_join_req *q, uint8_t *buf, size_t cap);
/* Decoders: 0, AL_ETRUNCATED, AL_EMALFORMED, AL_EUNSUPPORTED (newer format), -ENOMEM. */
int cluster_join_req_decode(const uint8_t *buf, size_t len, cluster_join_req *out);
/* Bytes cluster_join_resp_encode needs for r (an upper bound). */
size_t cluster_join_resp_size(const cluster_join_resp *r);
int64_t cluster_join_resp_encode(const cluster_join_resp *r, uint8_t *buf, size_t cap);
int cluster_join_resp_decode(const uint8_t *buf, size_t len, cluster_join_resp *out);

/* ---- topic operations forwarded to the controller leader (RPC_T_CONTROLLER) ---- */

/*
 * Encodes op's kind and items (name, partitions, replication factor, configs with their
 * delete flags) into a malloc'd buffer. Returns 0, AL_EINVAL (bad kind or counts), -ENOMEM.
 */
int cluster_op_encode(const struct data_topic_op *op, uint8_t **out, size_t *len);

/*
 * Decodes a forwarded op into ONE malloc'd block (the op, its items, their configs and flags:
 * free(*out) frees everything). done/ctx are left NULL. Returns 0, AL_ETRUNCATED,
 * AL_EMALFORMED (bad kind, counts, strings), AL_EUNSUPPORTED, -ENOMEM.
 */
int cluster_op_decode(const uint8_t *buf, size_t len, struct data_topic_op **out);

/*
 * The leader's answer: per item err (internal code; a Kafka error from the controller is
 * kafka_err_to_internal), topic id, partitions and replication factor; plus the controller
 * offset the forwarding node waits for before it answers its client. Returns the malloc'd
 * encoding (0 / -ENOMEM), or decodes into op's items (which must be as many:
 * AL_EMALFORMED otherwise).
 */
int cluster_op_result_encode(const struct data_topic_op *op, int64_t offset, uint8_t **out,
                             size_t *len);
int cluster_op_result_decode(const uint8_t *buf, size_t len, struct data_topic_op *op,
                             int64_t *offset);

/*
 * The one DATA_OP_CREATE op for __consumer_offsets (Kafka's settings: cleanup.policy=compact,
 * segment.bytes=104857600, TOPIC_CONSUMER_OFFSETS_PARTITIONS partitions, replication factor -1 =
 * the controller's default). Used by the controller (cl_ensure_consumer_offsets, once 3 nodes are
 * active) and by FindCoordinator (first use). Returns ONE malloc'd block (the op, its item and
 * configs: free(op) frees everything; done/ctx are NULL for the caller to set) or NULL (-ENOMEM).
 * Any thread.
 */
struct data_topic_op *cluster_consumer_offsets_op(void);

/* ---- the service (shard 0) ---- */

struct cluster_start_opts {
    const al_config *cfg;
    unsigned smp;
    const char *kafka_host; /* advertised Kafka address of this node */
    uint16_t kafka_port;
    /* The Kafka cluster id buffer Metadata answers with: overwritten with the controller's
     * cluster id (UUID text) before on_ready runs. */
    char *cluster_id;
    size_t cluster_id_cap;
    /* Runs once on shard 0 when this node has joined the cluster and applied the controller
     * state up to its own registration (start.c then logs "ready"). */
    void (*on_ready)(void *arg);
    void *arg;
};

/*
 * On shard 0, from its reactor init, after the shard's data plane started: creates the RPC
 * endpoint on rpc_addr, opens the controller replica in <data_dir>/controller, scans its log
 * for peers, and starts founding or joining. Registers a shutdown hook. Returns 0 or an error
 * (logged: e.g. the RPC address is in use, the controller log is corrupt).
 */
int cluster_start(reactor_shard *self, const struct cluster_start_opts *o);

/*
 * From any shard, for data_topic_submit in cluster mode: runs the topic op through the
 * controller (see data_plane.h) and calls op->done on the submitting shard when the result is
 * known and applied on this node. Returns 0 (done will run) or AL_ECLOSED.
 */
int cluster_topic_submit(struct data_shard *ds, struct data_topic_op *op);

/* ---- the view (any thread) ---- */

typedef struct cluster_view_broker {
    int32_t node_id;
    char kafka_host[CONTROLLER_HOST_MAX];
    uint16_t kafka_port;
    char rpc_host[CONTROLLER_HOST_MAX];
    uint16_t rpc_port;
    char rack[CONTROLLER_RACK_MAX];
    uint32_t cores;
    uint8_t membership; /* enum controller_membership */
    bool alive;         /* this node, or connected through rpc (HELLO done) and heard from
                         * (any message) within CLUSTER_LIVENESS_MS */
    bool voter, learner; /* in the controller group's membership (as this node sees it) */
    bool stopping;       /* shutting down (controlled shutdown): this node since its hand-over
                          * started (cluster_shutdown_started), a peer since its ping said
                          * so; hand it no leadership (cluster_node_may_take_lead) */
} cluster_view_broker;

/* Whether node id is alive in the view (any thread; false for an unknown id or outside
 * cluster mode). */
bool cluster_node_alive(int32_t id);

/* Whether node id may be handed a leadership (any thread): alive in the view and not
 * shutting down (cluster_view_broker.stopping). */
bool cluster_node_may_take_lead(int32_t id);

/*
 * Shard 0 (the cluster's shard): this node's controlled shutdown started: tells every peer
 * at once (a CLUSTER_RPC_PING whose byte is 1; every later ping says it again) so that their
 * balancers and hand-overs stop picking this node, and marks this node stopping in the view.
 * A restarted process pings 0, which clears the mark on the peers.
 */
void cluster_announce_stopping(void);

/* The number of ACTIVE brokers in the view (any thread), -1 when not in cluster mode. */
int32_t cluster_active_brokers(void);

/* True once cluster_start ran in this process. */
bool cluster_active(void);

/* True after a fatal cluster error stopped the node (refused registration, a damaged
 * controller log): `ailurus start` then exits non-zero. */
bool cluster_failed(void);

/*
 * Copies up to max brokers of the controller state (node id order) into out. *controller gets
 * group 0's leader (-1 when none is known); self_out (may be NULL) this node's id. Returns the
 * number of brokers (may exceed max: only max copied), or -1 when not in cluster mode.
 */
int cluster_view_brokers(cluster_view_broker *out, int max, int32_t *controller,
                         int32_t *self_out);

/*
 * A number that changes whenever the view's set of brokers or any broker's liveness changes
 * (any thread, one atomic load): a reader that keeps a copy of who is alive (the partition
 * shards' ISR) refreshes it when this moved, so it never counts a peer as alive after a
 * Metadata answer from this node stopped listing it.
 */
uint64_t cluster_view_generation(void);

/*
 * For the partition replicas (part B, any shard): sends one encoded raft_msg to node `to` as
 * RPC_T_RAFT (or RPC_T_RAFT_HB for an HB_BATCH). Returns 0, AL_ECLOSED (no endpoint yet or
 * stopped) or rpc_send_from's errors. Best effort, like every Raft send.
 */
int cluster_raft_send(reactor_shard *self, int32_t to, const uint8_t *buf, size_t len);

/*
 * Installs the receiver of partition Raft traffic (part B): called on shard 0 for every
 * inbound RPC_T_RAFT message whose group is not 0 and every RPC_T_RAFT_HB message (buf valid
 * only during the call; copy to keep). Set it before the shards start (NULL: dropped).
 */
typedef void (*cluster_raft_rx_fn)(reactor_shard *shard0, uint16_t rpc_type, uint64_t group,
                                   const uint8_t *buf, size_t len);
void cluster_set_partition_rx(cluster_raft_rx_fn fn);

#endif
