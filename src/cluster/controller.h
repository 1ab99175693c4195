/*
 * controller.h — the controller's replicated state machine (Raft group 0, DESIGN.md §4): the
 * cluster state every node holds (brokers, the topic catalogue with replica assignments and
 * owning shards, cluster configuration overrides, cluster id, id counters), the commands that
 * change it, their versioned binary encoding inside Kafka record batches (what is proposed to
 * group 0 and stored in its log), the deterministic apply, a checksummed snapshot of the whole
 * state, and the local reconciliation plan (which partitions this node must host).
 *
 * Pure logic: no I/O, no clock, no randomness. Whatever is random or time-dependent (topic ids,
 * timestamps, placement) is decided by the proposer BEFORE proposing and carried in the
 * command, so applying the same committed batches in the same order gives byte-identical
 * states (controller_snapshot_encode) on every node.
 *
 * Threading: a controller_state is used by one thread (shard 0 in the broker). Nothing here
 * blocks.
 *
 * Command record value (big-endian, strings = uvarint length + bytes):
 *   u8 format (CONTROLLER_CMD_FORMAT) | u8 type | i32 proposer node | u64 request id |
 *   i64 timestamp ms | type-specific body (see controller_cmd.c)
 * One command per record; a batch may carry many (one per topic of a CreateTopics request, for
 * example). Each applied command records a result (a Kafka error code, 0 = success) under
 * (proposer, request id), readable by controller_result_find or through the apply callback.
 *
 * Snapshot: "ALCS" | u16 format | u32 body length | u32 crc32c(body) | body (controller.c).
 */
#ifndef AL_CLUSTER_CONTROLLER_H
#define AL_CLUSTER_CONTROLLER_H

#include "base/base.h"
#include "cluster/topic_table.h"
#include "reactor/io.h"

enum {
    CONTROLLER_SNAPSHOT_FILE_MAX = 1 << 30, /* bound on a snapshot file */
    CONTROLLER_CMD_FORMAT = 1,
    CONTROLLER_SNAPSHOT_FORMAT = 1,
    CONTROLLER_NODES_MAX = 256,       /* brokers ever registered (removed ones included) */
    CONTROLLER_HOST_MAX = 256,        /* bytes including the NUL */
    CONTROLLER_RACK_MAX = 64,         /* bytes including the NUL */
    CONTROLLER_CONFIGS_MAX = 512,     /* cluster config overrides */
    CONTROLLER_CMD_CONFIGS_MAX = 512, /* sets + removes in one command */
    CONTROLLER_RESULTS_MAX = 1024,    /* remembered command results (a ring) */
    CONTROLLER_CMDS_PER_BATCH = 1024, /* commands in one batch */
};

/* Broker membership. */
enum controller_membership {
    CONTROLLER_NODE_ACTIVE = 0,
    CONTROLLER_NODE_DRAINING = 1,        /* maintenance mode: no leaderships, no new replicas */
    CONTROLLER_NODE_DECOMMISSIONING = 2, /* its replicas are being moved away */
    CONTROLLER_NODE_REMOVED = 3,         /* decommissioned and empty; its id is never reused */
};

typedef struct controller_broker {
    int32_t node_id; /* >= 0 */
    char kafka_host[CONTROLLER_HOST_MAX];
    uint16_t kafka_port;
    char rpc_host[CONTROLLER_HOST_MAX];
    uint16_t rpc_port;
    char rack[CONTROLLER_RACK_MAX]; /* "" = none */
    uint32_t cores;                 /* shards, 1..TOPIC_SHARDS_MAX */
    uint8_t membership;             /* enum controller_membership */
    int64_t registered_ms;          /* timestamp of the first registration command */
    int64_t updated_ms;             /* of the last register/update/membership command */
} controller_broker;

/* The result of one applied command. */
typedef struct controller_result {
    int32_t proposer;
    uint64_t request_id;
    int64_t offset; /* log offset of the command's record */
    int16_t error;  /* Kafka error code, 0 = success */
    int64_t value;  /* ALLOC_IDS: first id of the block; otherwise 0 */
} controller_result;

typedef struct controller_state {
    int64_t applied_offset; /* last log offset applied, -1 for none */
    uint64_t version;       /* bumped by every command that changed the state */
    uint64_t config_version; /* bumped by every cluster config change */
    bool has_cluster_id;
    uint8_t cluster_id[16];
    int32_t next_node_id;     /* 1 + the largest node id ever registered */
    int64_t next_producer_id; /* first producer id not handed out yet */
    controller_broker *brokers; /* sorted by node id; malloc'd */
    int32_t n_brokers, cap_brokers;
    topic_table topics; /* every topic has stored assignments */
    topic_config_kv *configs; /* cluster config overrides, sorted by key; malloc'd */
    int32_t n_configs, cap_configs;
    /* Results of the last CONTROLLER_RESULTS_MAX commands (not part of the snapshot). */
    controller_result results[CONTROLLER_RESULTS_MAX];
    uint32_t n_results, results_head;
} controller_state;

enum controller_cmd_type {
    CONTROLLER_CMD_REGISTER_NODE = 1,   /* broker: new (active) or re-registering */
    CONTROLLER_CMD_UPDATE_NODE = 2,     /* broker: addresses/rack/cores of a known node */
    CONTROLLER_CMD_CREATE_TOPIC = 3,    /* topic + configs + assignments (partitions entries) */
    CONTROLLER_CMD_DELETE_TOPIC = 4,    /* name (+ id when not zero: only that incarnation) */
    CONTROLLER_CMD_CREATE_PARTITIONS = 5, /* name, partitions = new total, assignments of new */
    CONTROLLER_CMD_REPLACE_TOPIC_CONFIGS = 6, /* name, configs = the whole new set */
    CONTROLLER_CMD_ALTER_TOPIC_CONFIGS = 7,   /* name, configs = sets, removes = keys */
    CONTROLLER_CMD_SET_CLUSTER_CONFIG = 8,    /* configs = sets, removes = keys */
    CONTROLLER_CMD_MOVE_PARTITION = 9,  /* name, partition, assign[0] = new replica list */
    CONTROLLER_CMD_SET_MAINTENANCE = 10, /* node_id, flag: on (draining) / off (active) */
    CONTROLLER_CMD_DECOMMISSION_NODE = 11, /* node_id: active/draining -> decommissioning */
    CONTROLLER_CMD_RECOMMISSION_NODE = 12, /* node_id: decommissioning -> active */
    CONTROLLER_CMD_REMOVE_NODE = 13,       /* node_id: decommissioning and empty -> removed */
    CONTROLLER_CMD_SET_CLUSTER_ID = 14,    /* cluster_id (first one wins) */
    CONTROLLER_CMD_ALLOC_IDS = 15,         /* count producer ids; result value = first id */
    CONTROLLER_CMD_TYPE_MAX = 15,
};

/*
 * A decoded (or to-be-encoded) command. Only the fields of its type are meaningful; the rest
 * stay zero. configs / removes / assign are malloc'd by the decoder (controller_cmd_free) or
 * point to the caller's arrays when the caller builds a command to encode.
 */
typedef struct controller_cmd {
    uint8_t type; /* enum controller_cmd_type */
    int32_t proposer;
    uint64_t request_id;
    int64_t ts_ms;
    controller_broker broker; /* REGISTER/UPDATE (membership, times ignored) */
    int32_t node_id;          /* SET_MAINTENANCE, DECOMMISSION, RECOMMISSION, REMOVE */
    bool flag;                /* SET_MAINTENANCE: on */
    char name[TOPIC_NAME_MAX + 1];
    uint8_t topic_id[16];
    int32_t partitions; /* CREATE_TOPIC: count; CREATE_PARTITIONS: new total */
    int32_t partition;  /* MOVE_PARTITION */
    int16_t replication_factor;
    bool internal;
    int64_t count; /* ALLOC_IDS */
    uint8_t cluster_id[16];
    topic_config_kv *configs;
    int32_t n_configs;
    char (*removes)[TOPIC_CONFIG_KEY_MAX];
    int32_t n_removes;
    topic_assignment *assign;
    int32_t n_assign;
} controller_cmd;

/* --- commands and batches (controller_cmd.c) -------------------------------------------- */

/* Bytes controller_cmd_encode will write for c. */
size_t controller_cmd_size(const controller_cmd *c);

/*
 * Encodes c into buf (cap bytes). Returns the size written, AL_ETOOLARGE (cap too small) or
 * AL_EINVAL (c breaks a bound the decoder enforces: unknown type, a string too long, too many
 * configs/assignments, a count < 0). Any thread.
 */
int64_t controller_cmd_encode(const controller_cmd *c, uint8_t *buf, size_t cap);

/*
 * Decodes one command value (len bytes, untrusted) into *out, which owns its arrays afterwards
 * (controller_cmd_free, also after an error). Returns 0, AL_ETRUNCATED, AL_EMALFORMED (bad
 * format, type, string, count or trailing bytes), AL_EUNSUPPORTED (a newer format), -ENOMEM.
 * Structural checks only; whether the command makes sense is apply's job.
 */
int controller_cmd_decode(const uint8_t *buf, size_t len, controller_cmd *out);

/* Frees what controller_cmd_decode allocated and zeroes *c. */
void controller_cmd_free(controller_cmd *c);

/*
 * Builds an uncompressed magic-2 record batch (base offset 0, epoch 0: Raft stamps both) with
 * one record per command, value = the encoded command. *out is malloc'd (caller frees).
 * Returns 0, AL_EINVAL (n outside 1..CONTROLLER_CMDS_PER_BATCH or a bad command), -ENOMEM.
 */
int controller_batch_build(const controller_cmd *cmds, int32_t n, int64_t ts_ms, uint8_t **out,
                           size_t *len);

/* --- state and apply (controller.c) ----------------------------------------------------- */

void controller_state_init(controller_state *st);
void controller_state_free(controller_state *st);

/* The broker with this id, or NULL. */
const controller_broker *controller_broker_find(const controller_state *st, int32_t node_id);

/* The cluster config override of key, or NULL. */
const char *controller_config_value(const controller_state *st, const char *key);

/* Called once per applied command, in log order (c is valid only during the call; for a record
 * that did not decode, c is all zero and r->error is INVALID_REQUEST). */
typedef void (*controller_result_fn)(void *arg, const controller_cmd *c,
                                     const controller_result *r);

/*
 * Applies one committed batch (a Kafka record batch from group 0's log, len bytes). A batch
 * whose last offset is <= st->applied_offset was applied already (snapshot + log suffix) and is
 * skipped (0). Control batches advance applied_offset only. Each record is one command, applied
 * all or nothing; its result (Kafka error: UNKNOWN_TOPIC_OR_PARTITION, TOPIC_ALREADY_EXISTS,
 * INVALID_PARTITIONS, INVALID_REPLICATION_FACTOR, INVALID_REPLICA_ASSIGNMENT, INVALID_CONFIG,
 * BROKER_NOT_AVAILABLE, INVALID_REQUEST, INCONSISTENT_CLUSTER_ID, INVALID_REGISTRATION, ...)
 * is stored and passed to cb (may be NULL). A record that does not decode gets INVALID_REQUEST.
 * Returns 0, or AL_ECORRUPT / AL_EMALFORMED / AL_ETRUNCATED when the batch itself is invalid
 * (nothing applied: the log is damaged, the caller must not go on). Out of memory while
 * applying panics: a node that skipped a committed command would diverge from the others.
 */
int controller_apply(controller_state *st, const uint8_t *batch, size_t len,
                     controller_result_fn cb, void *arg);

/*
 * Finds the result of (proposer, request_id) among the last CONTROLLER_RESULTS_MAX commands.
 * Returns true and fills *out, or false (not applied yet, or forgotten).
 */
bool controller_result_find(const controller_state *st, int32_t proposer, uint64_t request_id,
                            controller_result *out);

/* --- snapshot (controller.c) ------------------------------------------------------------ */

/*
 * Encodes the whole state (not the results ring) into a malloc'd buffer. Equal states give
 * equal bytes. Returns 0 or -ENOMEM.
 */
int controller_snapshot_encode(const controller_state *st, uint8_t **out, size_t *len);

/*
 * Replaces st's contents with the decoded snapshot (untrusted bytes), all or nothing; the
 * results ring is cleared. Returns 0, AL_ECORRUPT (magic, checksum, structure or a rule the
 * state keeps, e.g. unsorted or duplicate entries), AL_EUNSUPPORTED (newer format), -ENOMEM.
 */
int controller_snapshot_decode(controller_state *st, const uint8_t *buf, size_t len);

/*
 * Writes the snapshot to path durably (io_fs_write_atomic: temp file, fsync, rename, fsync
 * dir). Returns 0 or -errno / -ENOMEM. Blocking file I/O: start-up or an occasional call on
 * the owning shard.
 */
int controller_snapshot_save(const controller_state *st, io *ioh, const char *path);

/*
 * Loads a snapshot file written by controller_snapshot_save into st (all or nothing).
 * Returns 0, -ENOENT (no file: st unchanged), AL_ECORRUPT / AL_EUNSUPPORTED (logged: do not
 * start from a damaged snapshot), -errno, -ENOMEM. Blocking file I/O, like save.
 */
int controller_snapshot_load(controller_state *st, io *ioh, const char *path);

/* --- local reconciliation (controller.c) ------------------------------------------------ */

/* One partition a node must host. topic points into the state: valid until the next apply. */
typedef struct controller_local_partition {
    const topic *topic;
    int32_t partition;
    uint32_t shard; /* owning shard on this node */
    topic_assignment replicas;
} controller_local_partition;

/*
 * The partitions node self must host (it is one of their replicas), in topic-name then
 * partition order, with their owning shard on self. *out is malloc'd (NULL when *n is 0).
 * Returns 0 or -ENOMEM.
 */
int controller_local_partitions(const controller_state *st, int32_t self,
                                controller_local_partition **out, int32_t *n);

#endif
