/*
 * topic_table.h — the broker's catalogue of topics: name, topic id (random UUID), partition
 * count, replication factor, internal flag and per-topic config overrides (key -> value text),
 * each partition's replica assignment, plus the stable mapping of a partition to the shard that
 * owns it.
 *
 * Replica assignments (issue 7): a topic either has NO stored assignment (assign == NULL: the
 * single-node form every table had before the cluster; each partition's replicas are [self] and
 * its shard is topic_partition_shard(id, p, smp) with the running smp, so a restart with another
 * --smp still works), or one topic_assignment per partition (the cluster form, decided by the
 * controller, src/cluster/controller.h): the ordered replica node ids, first = preferred
 * leader, and the owning shard on each replica's node. topic_partition_assignment() and
 * topic_partition_local_shard() answer both forms the same way, so users need not care.
 *
 * Ownership model (thread-per-core, nothing shared mutable): shard 0 holds the authoritative
 * table and is the only one that mutates it (create/delete/add partitions/set configs), persists
 * it with topic_table_save() and then ships the encoded table (topic_table_encode) to every other
 * shard, which replaces its own read-only replica with topic_table_decode(). So every shard can
 * answer Metadata and route requests from its local copy without locks. A topic_table itself is
 * not thread-safe: one thread uses one table.
 *
 * Config values are stored as given: validating keys and values (unknown key -> INVALID_CONFIG)
 * is the caller's job (the Kafka handlers, through src/cluster/topic_config.h).
 *
 * On disk: <data_dir>/topics.json, written with io_fs_write_atomic. The file is one header line
 * "ailurus-topics 1 <crc32c hex> <json length>\n" followed by the JSON document, so a corrupt or
 * truncated file is detected at load (AL_ECORRUPT) instead of silently losing topics. A topic
 * with stored assignments has "assignments": [[[node, shard], ...] per partition]; files
 * written before assignments existed load unchanged (single-node form).
 */
#ifndef AL_CLUSTER_TOPIC_TABLE_H
#define AL_CLUSTER_TOPIC_TABLE_H

#include "base/base.h"
#include "reactor/io.h"

enum {
    TOPIC_NAME_MAX = 249,          /* Kafka's limit */
    TOPIC_PARTITIONS_MAX = 10000,  /* per topic */
    TOPIC_TABLE_MAX = 10000,       /* topics per broker */
    TOPIC_CONFIGS_MAX = 64,        /* overrides per topic */
    TOPIC_CONFIG_KEY_MAX = 128,    /* bytes including the NUL */
    TOPIC_CONFIG_VALUE_MAX = 1024, /* bytes including the NUL */
    TOPIC_FILE_MAX = 64 << 20,     /* bound on topics.json */
    TOPIC_REPLICAS_MAX = 16,       /* replicas per partition (= RAFT_MAX_NODES) */
    TOPIC_SHARDS_MAX = 1024,       /* bound on a node's shard count in an assignment */
};

/* The name and partition count of Kafka's group-offsets topic, created at start. */
#define TOPIC_CONSUMER_OFFSETS            "__consumer_offsets"
#define TOPIC_CONSUMER_OFFSETS_PARTITIONS 16

typedef struct topic_config_kv {
    char key[TOPIC_CONFIG_KEY_MAX];
    char value[TOPIC_CONFIG_VALUE_MAX];
} topic_config_kv;

/* One partition's replica assignment. */
typedef struct topic_assignment {
    int16_t n;                           /* replicas, 1..TOPIC_REPLICAS_MAX */
    int32_t nodes[TOPIC_REPLICAS_MAX];   /* distinct node ids >= 0; nodes[0] = preferred leader */
    uint16_t shards[TOPIC_REPLICAS_MAX]; /* owning shard on nodes[i], < TOPIC_SHARDS_MAX */
} topic_assignment;

typedef struct topic {
    char name[TOPIC_NAME_MAX + 1];
    uint8_t id[16];     /* UUID, never all zero */
    int32_t partitions; /* 1..TOPIC_PARTITIONS_MAX */
    int16_t replication_factor;
    bool internal;
    int64_t created_ms; /* wall clock at creation */
    int32_t n_configs;
    topic_config_kv *configs; /* n_configs entries, sorted by key; malloc'd */
    topic_assignment *assign; /* partitions entries (malloc'd), or NULL: single-node form */
} topic;

/* Everything that defines a new topic (topic_table_create_spec). */
typedef struct topic_spec {
    const char *name;
    int32_t partitions;
    int16_t replication_factor;
    bool internal;
    const uint8_t *id;  /* NULL or all zero: draw a random UUID */
    int64_t created_ms; /* < 0: the table's io wall clock (0 without io) */
    const topic_config_kv *configs;
    int32_t n_configs;
    const topic_assignment *assign; /* partitions entries, or NULL for the single-node form */
} topic_spec;

typedef struct topic_table {
    io *io;          /* for randomness, the clock and the file; may be NULL for replicas */
    char path[1024]; /* topics.json; "" for a replica that never saves */
    topic **topics;  /* sorted by name */
    int32_t n, cap;
    uint64_t version; /* bumped on every change; equal tables on all shards after a sync */
} topic_table;

/*
 * Returns true if name (len bytes) is a legal Kafka topic name: 1..249 chars of
 * [a-zA-Z0-9._-], not "." or "..".
 */
bool topic_name_valid(const char *name, size_t len);

/*
 * Initialises an empty table. data_dir NULL makes a replica that cannot save. io may be NULL
 * only for a replica (ids come from io_random). Returns 0 or -ENAMETOOLONG.
 */
int topic_table_init(topic_table *tt, io *ioh, const char *data_dir);

/* Frees every topic. The table may be initialised again. */
void topic_table_free(topic_table *tt);

/*
 * Loads <data_dir>/topics.json into the (empty) table. A missing file is an empty table (0).
 * Returns 0, AL_ECORRUPT (bad header, crc, JSON or a topic that breaks the table's rules, which
 * is also logged) or -errno. Shard 0, start-up only (blocking file I/O).
 */
int topic_table_load(topic_table *tt);

/* Writes the table durably (io_fs_write_atomic). Returns 0 or -errno/-ENOMEM. Shard 0. */
int topic_table_save(const topic_table *tt);

/*
 * Encodes the whole table as the file's bytes (header + JSON) into a malloc'd buffer the caller
 * frees. Returns 0 or -ENOMEM.
 */
int topic_table_encode(const topic_table *tt, uint8_t **out, size_t *len);

/* Replaces the contents of tt with the decoded buffer (all or nothing). Returns 0 or
 * AL_ECORRUPT / -ENOMEM; on error tt is unchanged. */
int topic_table_decode(topic_table *tt, const uint8_t *buf, size_t len);

/* Finds a topic by name (len bytes, not necessarily NUL-terminated). NULL if none. */
const topic *topic_table_find(const topic_table *tt, const char *name, size_t len);

/* Finds a topic by its 16-byte id. NULL if none (or the id is all zero). Linear. */
const topic *topic_table_find_id(const topic_table *tt, const uint8_t id[16]);

/* The i-th topic in name order (0 <= i < tt->n). */
static inline const topic *topic_table_at(const topic_table *tt, int32_t i)
{
    return tt->topics[i];
}

/*
 * Adds a topic. id NULL draws a random UUID (version 4 bits set). configs (n of them, keys
 * unique) are copied. Returns 0, AL_EINVAL (bad name, partitions outside 1..max, rf < 1,
 * too many or too long configs, duplicate keys), AL_EEXISTS, AL_EFULL (TOPIC_TABLE_MAX) or
 * -ENOMEM. Does not save.
 */
int topic_table_create(topic_table *tt, const char *name, int32_t partitions, int16_t rf,
                       const topic_config_kv *configs, int32_t n, bool internal, const uint8_t *id);

/*
 * Adds a topic from a full spec (topic_table_create is this with created_ms -1 and no
 * assignment). An assignment array must have spec->partitions valid entries
 * (topic_assignment_valid). Returns 0, AL_EINVAL, AL_EEXISTS (name or id), AL_EFULL or -ENOMEM;
 * on error the table is unchanged. Does not save.
 */
int topic_table_create_spec(topic_table *tt, const topic_spec *spec);

/* Whether a is a legal assignment: 1..TOPIC_REPLICAS_MAX distinct node ids >= 0, shards <
 * TOPIC_SHARDS_MAX. */
bool topic_assignment_valid(const topic_assignment *a);

/* Removes a topic. Returns 0 or AL_ENOTFOUND. Does not save. */
int topic_table_delete(topic_table *tt, const char *name);

/* Grows a topic to new_count partitions. Returns 0, AL_ENOTFOUND, AL_EINVAL (not larger,
 * or over TOPIC_PARTITIONS_MAX, or the topic has stored assignments: use
 * topic_table_add_partitions_assigned). Does not save. */
int topic_table_add_partitions(topic_table *tt, const char *name, int32_t new_count);

/*
 * Grows a topic with stored assignments to new_count partitions; added[0..new_count - old)
 * are the new partitions' assignments (copied). Returns 0, AL_ENOTFOUND, AL_EINVAL (not larger,
 * over the maximum, an invalid assignment, or the topic is in the single-node form), -ENOMEM;
 * on error the table is unchanged. Does not save.
 */
int topic_table_add_partitions_assigned(topic_table *tt, const char *name, int32_t new_count,
                                        const topic_assignment *added);

/*
 * Replaces the assignment of one partition of a topic with stored assignments (a replica
 * move). Returns 0, AL_ENOTFOUND (topic), AL_ERANGE (partition), AL_EINVAL (invalid
 * assignment or single-node form). Does not save.
 */
int topic_table_set_assignment(topic_table *tt, const char *name, int32_t partition,
                               const topic_assignment *a);

/*
 * Replaces all config overrides of a topic with configs[0..n) (AlterConfigs semantics).
 * Returns 0, AL_ENOTFOUND, AL_EINVAL, -ENOMEM. Does not save.
 */
int topic_table_replace_configs(topic_table *tt, const char *name, const topic_config_kv *configs,
                                int32_t n);

/*
 * Sets (value non-NULL) or removes (value NULL) one override (IncrementalAlterConfigs SET and
 * DELETE). Returns 0, AL_ENOTFOUND (no such topic), AL_EINVAL (too long, too many), -ENOMEM.
 * Removing a key that is not set is 0. Does not save.
 */
int topic_table_set_config(topic_table *tt, const char *name, const char *key, const char *value);

/* The override of key for topic t, or NULL when not set. */
const char *topic_config_value(const topic *t, const char *key);

/*
 * The shard that owns (topic id, partition) among smp shards: jump consistent hash of a hash of
 * the id and the partition, so it is stable across restarts and spreads partitions evenly.
 */
uint32_t topic_partition_shard(const uint8_t id[16], int32_t partition, uint32_t smp);

/*
 * Partition p's assignment (0 <= p < t->partitions) into *out: the stored one, or for the
 * single-node form replicas [self] on shard topic_partition_shard(t->id, p, smp).
 */
void topic_partition_assignment(const topic *t, int32_t p, int32_t self, uint32_t smp,
                                topic_assignment *out);

/*
 * The shard that hosts partition p on node self, or -1 when self is not one of its replicas
 * (single-node form: always topic_partition_shard(t->id, p, smp)). A stored shard >= smp (an
 * assignment made for a node that has since restarted with fewer cores) is folded to
 * shard % smp so the partition still has a home.
 */
int32_t topic_partition_local_shard(const topic *t, int32_t p, int32_t self, uint32_t smp);

/* Formats a topic id as 32 lowercase hex digits (out has >= 33 bytes). */
void topic_id_hex(const uint8_t id[16], char out[33]);

#endif
